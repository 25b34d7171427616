/* The HTTP layer's deferred responses (infra/http.h): a request kept open
 * while a worker thread works is answered from the loop thread (a real
 * server on 127.0.0.1 and an ephemeral port, the client on a thread of its
 * own), and one that went away meanwhile is finished without a request. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "base/common.h"
#include "base/log.h"
#include "base/queue.h"
#include "httpc.h"
#include "infra/http.h"

typedef struct {
    char body[64];
    ds_http_pending_t *pending;
} job_t;

static struct {
    uv_loop_t loop;
    ds_http_t *http;
    ds_http_deferred_t *deferred;
    ds_queue_t *work; /* jobs for the worker thread */
    pthread_t worker, client;
    uv_async_t stop; /* the client thread is done */
    uv_timer_t idle; /* polls for the last connection to close */
    int port, finished, finished_without_req, deferred_count;
    httpc_resp_t resp[8];
    ds_http_cors_t *cors, *no_cors;
} t;

static void finish(void *ud, void *job, h2o_req_t *req) {
    cr_assert_eq(ud, &t);
    job_t *j = job;
    t.finished++;
    if (req)
        ds_http_respond(req, 200, "text/plain", j->body, strlen(j->body));
    else
        t.finished_without_req++;
    free(j);
}

/* Upper-cases each job's body on a thread of its own. */
static void *worker(void *arg) {
    (void)arg;
    void *item;
    while (ds_queue_pop(t.work, &item, 1)) {
        job_t *j = item;
        for (char *c = j->body; *c; c++) *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        ds_http_deferred_done(t.deferred, j->pending);
    }
    return NULL;
}

static int on_work(void *ud, h2o_req_t *req) {
    (void)ud;
    job_t *j = ds_calloc(1, sizeof *j);
    snprintf(j->body, sizeof j->body, "%.*s", (int)req->entity.len, req->entity.base ? req->entity.base : "");
    j->pending = ds_http_defer(t.deferred, req, j);
    t.deferred_count++;
    cr_assert_eq(ds_queue_push(t.work, j), 0);
    return 0;
}

/* A route open to two origins, and one with CORS configured with none. */
static int on_cors(void *ud, h2o_req_t *req) {
    (void)ud;
    if (ds_http_cors(t.cors, req)) return 0;
    ds_http_respond(req, 200, "text/plain", "ok", 2);
    return 0;
}

static int on_closed(void *ud, h2o_req_t *req) {
    (void)ud;
    if (ds_http_cors(t.no_cors, req)) return 0;
    ds_http_respond(req, 200, "text/plain", "ok", 2);
    return 0;
}

static void close_cb(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Closes the context once the server's last connection is gone: the client
 * has read its last answer, but the server may not have seen the close yet,
 * and a context closed under an open connection is left to the process. */
static void close_when_idle(uv_timer_t *timer) {
    if (ds_http_connections(t.http) > 0) return;
    uv_timer_stop(timer);
    ds_http_close_context(t.http);
    uv_walk(&t.loop, close_cb, NULL);
}

static void on_stop(uv_async_t *a) {
    (void)a;
    ds_http_stop(t.http);
    uv_timer_init(&t.loop, &t.idle);
    uv_timer_start(&t.idle, close_when_idle, 0, 1);
}

static void setup(void) {
    char err[256];
    ds_log_init("test", DS_LOG_WARN);
    memset(&t, 0, sizeof t);
    cr_assert_eq(uv_loop_init(&t.loop), 0);
    t.http = ds_http_new(&t.loop, "127.0.0.1", 0, 1 << 16);
    ds_http_route(t.http, "/work", on_work, NULL);
    ds_http_route(t.http, "/cors", on_cors, NULL);
    ds_http_route(t.http, "/closed", on_closed, NULL);
    cr_assert_eq(ds_http_start(t.http, err, sizeof err), 0, "%s", err);
    t.port = ds_http_port(t.http);
    t.deferred = ds_http_deferred_new(&t.loop, finish, &t);
    t.cors = ds_http_cors_new(" https://app.example.com, http://localhost:3000", "POST",
                              "Authorization, Content-Type", 600);
    t.no_cors = ds_http_cors_new(NULL, "POST", "Authorization, Content-Type", 600);
    t.work = ds_queue_new(16);
    uv_async_init(&t.loop, &t.stop, on_stop);
    pthread_create(&t.worker, NULL, worker, NULL);
}

/* Runs the loop until the client thread asked it to stop and every handle
 * closed, then frees everything. */
static void run_and_close(void) {
    uv_run(&t.loop, UV_RUN_DEFAULT);
    pthread_join(t.client, NULL);
    ds_queue_shutdown(t.work);
    pthread_join(t.worker, NULL);
    ds_http_deferred_destroy(t.deferred);
    ds_http_destroy(t.http);
    cr_assert_eq(uv_loop_close(&t.loop), 0);
    ds_queue_destroy(t.work);
    ds_http_cors_destroy(t.cors);
    ds_http_cors_destroy(t.no_cors);
}

static void *three_requests(void *arg) {
    (void)arg;
    const char *bodies[] = {"alpha", "beta", "gamma"};
    for (int i = 0; i < 3; i++)
        t.resp[i] = httpc_request(t.port, "POST", "/work", NULL, bodies[i], strlen(bodies[i]), 5000);
    uv_async_send(&t.stop);
    return NULL;
}

Test(http, a_deferred_request_is_answered_when_its_worker_is_done, .init = setup) {
    pthread_create(&t.client, NULL, three_requests, NULL);
    run_and_close();
    const char *want[] = {"ALPHA", "BETA", "GAMMA"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(t.resp[i].status, 200, "request %d", i);
        cr_assert_str_eq(t.resp[i].body, want[i]);
    }
    cr_assert_eq(t.deferred_count, 3);
    cr_assert_eq(t.finished, 3);
    cr_assert_eq(t.finished_without_req, 0);
    for (int i = 0; i < 3; i++) httpc_free(&t.resp[i]);
}

/* Without a server: a request is its memory pool as far as the deferred
 * responses are concerned, and clearing the pool is what h2o does when the
 * request goes away (its client left, or the server closed it). */
static void close_loop(void) {
    uv_walk(&t.loop, close_cb, NULL);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&t.loop), 0);
}

static void bare_setup(void) {
    memset(&t, 0, sizeof t);
    cr_assert_eq(uv_loop_init(&t.loop), 0);
    t.deferred = ds_http_deferred_new(&t.loop, finish, &t);
}

static void *done_from_a_thread(void *arg) {
    ds_http_deferred_done(t.deferred, arg);
    return NULL;
}

Test(http, a_request_that_went_away_finishes_without_it, .init = bare_setup) {
    h2o_req_t req;
    memset(&req, 0, sizeof req);
    h2o_mem_init_pool(&req.pool);
    job_t *j = ds_calloc(1, sizeof *j);
    j->pending = ds_http_defer(t.deferred, &req, j);
    h2o_mem_clear_pool(&req.pool); /* the client left while the job ran */
    pthread_t th;
    pthread_create(&th, NULL, done_from_a_thread, j->pending);
    pthread_join(th, NULL);
    ds_http_deferred_flush(t.deferred);
    cr_assert_eq(t.finished, 1);
    cr_assert_eq(t.finished_without_req, 1);
    close_loop();
    ds_http_deferred_destroy(t.deferred);
    cr_assert_eq(t.finished, 1, "finished once");
}

Test(http, jobs_done_when_the_loop_closed_finish_without_their_request, .init = bare_setup) {
    h2o_req_t req;
    memset(&req, 0, sizeof req);
    h2o_mem_init_pool(&req.pool);
    job_t *a = ds_calloc(1, sizeof *a), *b = ds_calloc(1, sizeof *b);
    a->pending = ds_http_defer(t.deferred, &req, a);
    b->pending = ds_http_defer(t.deferred, &req, b);
    ds_http_deferred_done(t.deferred, a->pending);
    ds_http_deferred_done(t.deferred, b->pending);
    /* The loop closes before it ran the hand-back. */
    close_loop();
    cr_assert_eq(t.finished, 0);
    ds_http_deferred_destroy(t.deferred);
    cr_assert_eq(t.finished, 2);
    cr_assert_eq(t.finished_without_req, 2);
    /* The request going away later touches nothing that was freed. */
    h2o_mem_clear_pool(&req.pool);
    ds_http_deferred_destroy(NULL);
}

/* ---- CORS ---- */

#define PREFLIGHT                                                                                            \
    "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization,content-type\r\n"

static void *cors_requests(void *arg) {
    (void)arg;
    t.resp[0] = httpc_request(t.port, "OPTIONS", "/cors", "Origin: http://localhost:3000\r\n" PREFLIGHT, NULL,
                              0, 5000);
    t.resp[1] = httpc_request(t.port, "OPTIONS", "/cors", "Origin: https://evil.example.com\r\n" PREFLIGHT,
                              NULL, 0, 5000);
    t.resp[2] = httpc_request(t.port, "POST", "/cors", "Origin: https://APP.example.com\r\n", "{}", 2, 5000);
    t.resp[3] = httpc_request(t.port, "POST", "/cors", "Origin: http://localhost:3001\r\n", "{}", 2, 5000);
    t.resp[4] = httpc_request(t.port, "POST", "/cors", NULL, "{}", 2, 5000);
    t.resp[5] = httpc_request(t.port, "OPTIONS", "/closed", "Origin: http://localhost:3000\r\n" PREFLIGHT,
                              NULL, 0, 5000);
    t.resp[6] = httpc_request(t.port, "POST", "/closed", "Origin: http://localhost:3000\r\n", "{}", 2, 5000);
    uv_async_send(&t.stop);
    return NULL;
}

static const char *header(int i, const char *name) {
    static char buf[8][256];
    return httpc_header(&t.resp[i], name, buf[i], sizeof buf[i]);
}

static int has_cors_headers(int i) { return strcasestr(t.resp[i].headers, "\naccess-control-") != NULL; }

Test(http, cors_answers_listed_origins_only, .init = setup) {
    pthread_create(&t.client, NULL, cors_requests, NULL);
    run_and_close();
    /* A listed origin's preflight: 204 and exactly what it may send. */
    cr_assert_eq(t.resp[0].status, 204, "%s", t.resp[0].headers);
    cr_expect_str_eq(header(0, "access-control-allow-origin"), "http://localhost:3000");
    cr_expect_str_eq(header(0, "access-control-allow-methods"), "POST");
    cr_expect_str_eq(header(0, "access-control-allow-headers"), "Authorization, Content-Type");
    cr_expect_str_eq(header(0, "access-control-max-age"), "600");
    cr_expect_str_eq(header(0, "vary"), "Origin");
    cr_expect_eq(t.resp[0].body_len, 0);
    /* Another origin's preflight: refused, not one Access-Control-* header. */
    cr_assert_eq(t.resp[1].status, 403, "%s", t.resp[1].headers);
    cr_expect(!has_cors_headers(1), "%s", t.resp[1].headers);
    cr_expect(strstr(t.resp[1].body, "\"error\":\"origin_not_allowed\""), "%s", t.resp[1].body);
    cr_expect_str_eq(header(1, "vary"), "Origin");
    /* The actual request of a listed origin (origins compare case-insensitively). */
    cr_assert_eq(t.resp[2].status, 200);
    cr_expect_str_eq(header(2, "access-control-allow-origin"), "https://APP.example.com");
    cr_expect_str_eq(header(2, "vary"), "Origin");
    cr_expect(!header(2, "access-control-allow-methods"), "%s", t.resp[2].headers);
    /* Another origin, and no origin: answered, without a grant. */
    cr_assert_eq(t.resp[3].status, 200);
    cr_expect(!has_cors_headers(3), "%s", t.resp[3].headers);
    cr_expect_str_eq(header(3, "vary"), "Origin");
    cr_assert_eq(t.resp[4].status, 200);
    cr_expect(!has_cors_headers(4), "%s", t.resp[4].headers);
    /* No origin listed: CORS stays out of it altogether. */
    cr_expect_eq(t.resp[5].status, 200, "the handler answers the OPTIONS itself");
    cr_expect(!has_cors_headers(5), "%s", t.resp[5].headers);
    cr_expect(!header(5, "vary"), "%s", t.resp[5].headers);
    cr_expect(!has_cors_headers(6), "%s", t.resp[6].headers);
    for (int i = 0; i < 7; i++) httpc_free(&t.resp[i]);
}
