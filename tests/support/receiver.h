/* A webhook receiver for the tests of outbound events: an HTTP server
 * (common/infra/http.h) on 127.0.0.1 on a loop thread of its own, that keeps
 * every request it gets (path, signature headers, body) and answers with the
 * statuses the test scripts. Header-only. */
#ifndef DS_TEST_RECEIVER_H
#define DS_TEST_RECEIVER_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "infra/http.h"
#include "proc.h"

typedef struct {
    char path[128];
    char content_type[128];
    char timestamp[64];
    char signature[128];
    char *body; /* NUL-terminated */
    size_t body_len;
    int answered; /* the status the receiver answered */
} recv_req_t;

typedef struct {
    uv_loop_t loop;
    ds_http_t *http;
    uv_async_t stop;
    pthread_t th;
    int port;
    pthread_mutex_t mu;
    recv_req_t *reqs;
    size_t n, cap;
    int script[16]; /* statuses of the first requests, then default_status */
    size_t nscript;
    int default_status;
    int delay_ms; /* the time each answer takes (a slow receiver) */
} receiver_t;

static inline int receiver_on_request(void *ud, h2o_req_t *req) {
    receiver_t *rv = ud;
    recv_req_t r = {0};
    snprintf(r.path, sizeof r.path, "%.*s", (int)req->path.len, req->path.base);
    ds_http_header(req, "content-type", r.content_type, sizeof r.content_type);
    ds_http_header(req, "x-dealscore-timestamp", r.timestamp, sizeof r.timestamp);
    ds_http_header(req, "x-dealscore-signature", r.signature, sizeof r.signature);
    r.body_len = req->entity.len;
    r.body = malloc(r.body_len + 1);
    if (r.body_len) memcpy(r.body, req->entity.base, r.body_len);
    r.body[r.body_len] = '\0';
    pthread_mutex_lock(&rv->mu);
    r.answered = rv->n < rv->nscript ? rv->script[rv->n] : rv->default_status;
    int delay = rv->delay_ms;
    if (rv->n == rv->cap) {
        rv->cap = rv->cap ? 2 * rv->cap : 64;
        rv->reqs = realloc(rv->reqs, rv->cap * sizeof *rv->reqs);
    }
    rv->reqs[rv->n++] = r;
    pthread_mutex_unlock(&rv->mu);
    if (delay > 0) {
        /* A slow receiver, not a synchronisation: the answer takes this long. */
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    ds_http_respond(req, r.answered, "text/plain", r.answered < 300 ? "ok" : "try again",
                    r.answered < 300 ? 2 : 9);
    return 0;
}

static inline void receiver_close_cb(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static inline void receiver_on_stop(uv_async_t *a) {
    receiver_t *rv = a->data;
    ds_http_stop(rv->http);
    ds_http_close_context(rv->http);
    uv_walk(&rv->loop, receiver_close_cb, NULL);
}

static inline void *receiver_main(void *arg) {
    receiver_t *rv = arg;
    uv_run(&rv->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Starts rv answering default_status (after the statuses of script, if
 * any, for the first requests). */
static inline void receiver_start(receiver_t *rv, int default_status) {
    memset(rv, 0, sizeof *rv);
    char err[256];
    pthread_mutex_init(&rv->mu, NULL);
    rv->default_status = default_status;
    cr_assert_eq(uv_loop_init(&rv->loop), 0);
    rv->http = ds_http_new(&rv->loop, "127.0.0.1", 0, 1 << 20);
    ds_http_route(rv->http, "/", receiver_on_request, rv);
    cr_assert_eq(ds_http_start(rv->http, err, sizeof err), 0, "%s", err);
    rv->port = ds_http_port(rv->http);
    rv->stop.data = rv;
    uv_async_init(&rv->loop, &rv->stop, receiver_on_stop);
    pthread_create(&rv->th, NULL, receiver_main, rv);
}

static inline void receiver_set_default(receiver_t *rv, int status) {
    pthread_mutex_lock(&rv->mu);
    rv->default_status = status;
    pthread_mutex_unlock(&rv->mu);
}

static inline size_t receiver_count(receiver_t *rv) {
    pthread_mutex_lock(&rv->mu);
    size_t n = rv->n;
    pthread_mutex_unlock(&rv->mu);
    return n;
}

/* A copy of request i (the caller frees its body). */
static inline recv_req_t receiver_get(receiver_t *rv, size_t i) {
    pthread_mutex_lock(&rv->mu);
    cr_assert_lt(i, rv->n);
    recv_req_t r = rv->reqs[i];
    r.body = strdup(r.body);
    pthread_mutex_unlock(&rv->mu);
    return r;
}

/* Polls until rv has at least n requests or timeout_ms passed; returns the
 * count, for the caller to assert on. */
static inline size_t receiver_wait(receiver_t *rv, size_t n, int timeout_ms) {
    long long deadline = proc_now_ms() + timeout_ms;
    size_t got;
    while ((got = receiver_count(rv)) < n && proc_now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    return got;
}

static inline void receiver_stop(receiver_t *rv) {
    uv_async_send(&rv->stop);
    pthread_join(rv->th, NULL);
    ds_http_destroy(rv->http);
    uv_loop_close(&rv->loop);
    for (size_t i = 0; i < rv->n; i++) free(rv->reqs[i].body);
    free(rv->reqs);
    pthread_mutex_destroy(&rv->mu);
}

#endif
