/* The HTTP client (common/infra/httpc.h) against a scripted HTTP/1.1 server
 * on 127.0.0.1 that this file runs in a thread: requests as the server
 * sees them, responses as the caller sees them, keep-alive, timeouts, the
 * body limit, cancelling, redirects and proxies from the environment. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "infra/httpc.h"
#include "loopback.h"

/* ---- a scripted server ------------------------------------------------------ */

/* Answers each request on one connection after another, keeping the
 * connection open, with the response routes gives for its path (a path not
 * listed gets a 404); a NULL response never answers. Keeps the requests. */
typedef struct {
    const char *path;
    const char *resp;
} route_t;

typedef struct {
    int lfd, port;
    const route_t *routes;
    pthread_t th;
    atomic_bool stop;
    atomic_int conns, nreqs;
    char reqs[8][2048];
} server_t;

/* Waits up to 50 ms for fd to become readable; false when s is stopping. */
static bool readable(server_t *s, int fd) {
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0) return true;
    }
    return false;
}

/* Reads one request (headers and a Content-Length body) into buf. Returns
 * its length, or 0 when the client closed the connection. */
static size_t read_request(server_t *s, int fd, char *buf, size_t cap) {
    size_t len = 0;
    while (readable(s, fd)) {
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0) return 0;
        len += (size_t)r;
        buf[len] = '\0';
        if (loopback_request_complete(buf, len)) return len;
    }
    return 0;
}

static const char *route(server_t *s, const char *req) {
    const char *sp = strchr(req, ' ');
    size_t plen = sp ? strcspn(sp + 1, " ") : 0;
    for (const route_t *r = s->routes; sp && r->path; r++)
        if (strlen(r->path) == plen && strncmp(sp + 1, r->path, plen) == 0) return r->resp;
    return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
}

static void *serve(void *arg) {
    server_t *s = arg;
    char buf[65536];
    while (readable(s, s->lfd)) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) continue;
        atomic_fetch_add(&s->conns, 1);
        size_t len;
        while ((len = read_request(s, fd, buf, sizeof buf)) > 0) {
            int n = atomic_load(&s->nreqs);
            size_t keep = len < sizeof s->reqs[0] - 1 ? len : sizeof s->reqs[0] - 1;
            memcpy(s->reqs[n % 8], buf, keep);
            s->reqs[n % 8][keep] = '\0';
            atomic_store(&s->nreqs, n + 1);
            const char *resp = route(s, buf);
            if (!resp) {
                while (readable(s, fd)) { /* never answers; waits for the client to go */
                    if (recv(fd, buf, sizeof buf, 0) <= 0) break;
                }
                break;
            }
            send(fd, resp, strlen(resp), MSG_NOSIGNAL);
        }
        close(fd);
    }
    return NULL;
}

static void server_start(server_t *s, const route_t *routes) {
    memset(s, 0, sizeof *s);
    s->routes = routes;
    s->lfd = loopback_listen(&s->port);
    cr_assert_eq(pthread_create(&s->th, NULL, serve, s), 0);
}

static void server_stop(server_t *s) {
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static ds_httpc_t *client(const ds_httpc_opts_t *o) {
    ds_httpc_t *h = NULL;
    char err[256];
    cr_assert_eq(ds_httpc_new(&h, o, err, sizeof err), 0, "%s", err);
    return h;
}

static char *url(const server_t *s, const char *path) {
    return ds_asprintf("http://127.0.0.1:%d%s", s->port, path);
}

/* A test's server, client and response. */
typedef struct {
    server_t s;
    ds_httpc_t *h;
    ds_httpc_resp_t r;
    char err[256];
} fx_t;

static void fx_start(fx_t *f, const route_t *routes, const ds_httpc_opts_t *o) {
    server_start(&f->s, routes);
    f->h = client(o);
    f->r = (ds_httpc_resp_t){0};
    f->err[0] = '\0';
}

/* GETs path from the test's server into f->r. */
static int fx_get(fx_t *f, const char *path) {
    char *u = url(&f->s, path);
    ds_httpc_req_t req = {.url = u};
    int rc = ds_httpc_request(f->h, &req, &f->r, f->err, sizeof f->err);
    free(u);
    return rc;
}

/* Frees the client and the response and stops the server (its counts
 * stay readable). */
static void fx_stop(fx_t *f) {
    ds_httpc_resp_clear(&f->r);
    ds_httpc_destroy(f->h);
    f->h = NULL;
    server_stop(&f->s);
}

/* ---- requests and responses ------------------------------------------------- */

static const route_t routes[] = {
    {"/echo", "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Reply:  yes \r\n"
              "Content-Length: 11\r\n\r\n{\"ok\":true}"},
    {"/missing", "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                 "Content-Length: 17\r\n\r\n{\"error\":\"nope\"}\n"},
    {"/chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"},
    {"/big", "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n"},
    {"/big-chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "258\r\n................................................................"
                     "................................................................"
                     "................................................................"
                     "................................................................"
                     "................................................................"
                     "................................................................"
                     "................................................................"
                     "................................................................"
                     "................................................................"
                     "........................\r\n0\r\n\r\n"},
    {"/moved", "HTTP/1.1 302 Found\r\nLocation: /echo\r\nContent-Length: 5\r\n\r\nmoved"},
    {"/slow", NULL},
    {NULL, NULL},
};

Test(httpc, get_and_post_send_headers_and_read_status_headers_and_body) {
    fx_t f;
    ds_httpc_opts_t o = {.user_agent = "dealscore-test/1"};
    fx_start(&f, routes, &o);
    ds_httpc_resp_t *r = &f.r;
    server_t *s = &f.s;
    char v[64];
    char *u = url(s, "/echo");

    const char *get_hdrs[] = {"Accept: application/json", "X-Trace: t-1", NULL};
    ds_httpc_req_t get = {.url = u, .headers = get_hdrs};
    cr_assert_eq(ds_httpc_request(f.h, &get, r, f.err, sizeof f.err), 0, "%s", f.err);
    cr_assert_eq(r->status, 201);
    cr_assert_str_eq(r->body.p, "{\"ok\":true}");
    cr_assert_eq(r->body.len, 11);
    cr_assert_str_eq(ds_httpc_header(r, "x-reply", v, sizeof v), "yes");
    cr_assert_str_eq(ds_httpc_header(r, "Content-Type", v, sizeof v), "application/json");
    cr_assert_null(ds_httpc_header(r, "X-Missing", v, sizeof v));
    cr_assert(strncmp(r->headers.p, "HTTP/1.1 201 Created\r\n", 22) == 0, "%s", r->headers.p);

    const char *post_hdrs[] = {"Authorization: Bearer tok", "Content-Type: application/json", NULL};
    ds_httpc_req_t post = {.url = u, .headers = post_hdrs, .body = "[1,2]", .body_len = 5};
    cr_assert_eq(ds_httpc_request(f.h, &post, r, f.err, sizeof f.err), 0, "%s", f.err);
    cr_assert_eq(r->status, 201);
    cr_assert_str_eq(r->body.p, "{\"ok\":true}");

    ds_httpc_req_t put = {.method = "PUT", .url = u, .body = "x", .body_len = 1};
    cr_assert_eq(ds_httpc_request(f.h, &put, r, f.err, sizeof f.err), 0, "%s", f.err);
    ds_httpc_req_t del = {.method = "DELETE", .url = u};
    cr_assert_eq(ds_httpc_request(f.h, &del, r, f.err, sizeof f.err), 0, "%s", f.err);
    cr_assert_eq(r->status, 201);
    ds_httpc_resp_clear(r); /* before fx_stop's: twice is harmless */
    fx_stop(&f);

    cr_assert_eq(atomic_load(&s->nreqs), 4);
    char host[64];
    snprintf(host, sizeof host, "Host: 127.0.0.1:%d\r\n", s->port);
    cr_assert(strncmp(s->reqs[0], "GET /echo HTTP/1.1\r\n", 20) == 0, "%s", s->reqs[0]);
    cr_assert(strstr(s->reqs[0], host), "%s", s->reqs[0]);
    cr_assert(strstr(s->reqs[0], "\r\nAccept: application/json\r\n"), "%s", s->reqs[0]);
    cr_assert(strstr(s->reqs[0], "\r\nX-Trace: t-1\r\n"), "%s", s->reqs[0]);
    cr_assert(strstr(s->reqs[0], "\r\nUser-Agent: dealscore-test/1\r\n"), "%s", s->reqs[0]);
    cr_assert(strncmp(s->reqs[1], "POST /echo HTTP/1.1\r\n", 21) == 0, "%s", s->reqs[1]);
    cr_assert(strstr(s->reqs[1], "\r\nAuthorization: Bearer tok\r\n"), "%s", s->reqs[1]);
    cr_assert(strstr(s->reqs[1], "\r\nContent-Type: application/json\r\n"), "%s", s->reqs[1]);
    cr_assert(strstr(s->reqs[1], "\r\nContent-Length: 5\r\n\r\n[1,2]"), "%s", s->reqs[1]);
    cr_assert_null(strcasestr(s->reqs[1], "Expect:"), "%s", s->reqs[1]);
    cr_assert(strncmp(s->reqs[2], "PUT /echo HTTP/1.1\r\n", 20) == 0, "%s", s->reqs[2]);
    cr_assert(strstr(s->reqs[2], "\r\nContent-Length: 1\r\n\r\nx"), "%s", s->reqs[2]);
    cr_assert_null(strcasestr(s->reqs[2], "Content-Type"), "no form type for a body: %s", s->reqs[2]);
    cr_assert(strncmp(s->reqs[3], "DELETE /echo HTTP/1.1\r\n", 23) == 0, "%s", s->reqs[3]);
    cr_assert(strstr(s->reqs[3], "\r\nContent-Length: 0\r\n"), "%s", s->reqs[3]);
    free(u);
}

/* A non-2xx status is a response, not an error: its body comes back like
 * any other; a chunked body comes back decoded. */
Test(httpc, a_non_2xx_status_and_a_chunked_body_are_responses_with_their_bodies) {
    static const struct {
        const char *path;
        int status;
        const char *body;
    } cases[] = {
        {"/missing", 404, "{\"error\":\"nope\"}\n"},
        {"/chunked", 200, "hello, world"},
    };
    fx_t f;
    fx_start(&f, routes, NULL);
    for (size_t i = 0; i < DS_ARRAY_SIZE(cases); i++) {
        cr_assert_eq(fx_get(&f, cases[i].path), 0, "%s: %s", cases[i].path, f.err);
        cr_assert_eq(f.r.status, cases[i].status, "%s", cases[i].path);
        cr_assert_str_eq(f.r.body.p, cases[i].body);
        cr_assert_eq(f.r.body.len, strlen(cases[i].body));
    }
    fx_stop(&f);
}

Test(httpc, two_requests_share_one_connection) {
    fx_t f;
    fx_start(&f, routes, NULL);
    cr_assert_eq(ds_httpc_socket(f.h), -1);
    cr_assert_eq(fx_get(&f, "/echo"), 0, "%s", f.err);
    int sock = ds_httpc_socket(f.h);
    cr_assert_geq(sock, 0, "the connection is kept");
    cr_assert_eq(fx_get(&f, "/echo"), 0, "%s", f.err);
    cr_assert_eq(ds_httpc_socket(f.h), sock);
    cr_assert_eq(f.r.status, 201);
    fx_stop(&f);
    cr_assert_eq(atomic_load(&f.s.nreqs), 2);
    cr_assert_eq(atomic_load(&f.s.conns), 1, "keep-alive: one connection for both requests");
}

Test(httpc, times_out_against_a_server_that_never_answers) {
    fx_t f;
    ds_httpc_opts_t o = {.timeout_ms = 300};
    fx_start(&f, routes, &o);
    int64_t t0 = ds_mono_us();
    cr_assert_eq(fx_get(&f, "/slow"), DS_ETIMEDOUT, "%s", f.err);
    int64_t took = ds_mono_us() - t0;
    cr_assert_geq(took, 250000, "took %lld us: curl rounds its timers to milliseconds", (long long)took);
    cr_assert_lt(took, 3000000, "took %lld us", (long long)took);
    cr_assert_eq(f.r.status, 0);
    cr_assert(strstr(f.err, "timed out"), "%s", f.err);
    fx_stop(&f);
    cr_assert_eq(atomic_load(&f.s.nreqs), 1);
}

Test(httpc, refuses_a_body_over_the_size_limit) {
    fx_t f;
    ds_httpc_opts_t o = {.max_body = 500};
    fx_start(&f, routes, &o);
    /* Announced by Content-Length, and only found out while reading. */
    const char *paths[] = {"/big", "/big-chunked"};
    for (size_t i = 0; i < 2; i++) {
        f.err[0] = '\0';
        cr_assert_eq(fx_get(&f, paths[i]), DS_EINVAL, "%s", paths[i]);
        cr_assert_str_eq(f.err, "response body is larger than 500 bytes");
        cr_assert_eq(f.r.status, 0);
        cr_assert_eq(f.r.body.len, 0);
    }
    /* The handle still works. */
    cr_assert_eq(fx_get(&f, "/echo"), 0, "%s", f.err);
    cr_assert_eq(f.r.status, 201);
    fx_stop(&f);
}

typedef struct {
    ds_httpc_t *h;
    int64_t at_us;
} canceller_t;

static void *cancel_soon(void *arg) {
    canceller_t *c = arg;
    usleep(200 * 1000);
    c->at_us = ds_mono_us();
    ds_httpc_cancel(c->h);
    return NULL;
}

Test(httpc, cancel_interrupts_a_waiting_request_at_once) {
    fx_t f;
    fx_start(&f, routes, NULL); /* the 30 s default timeout */
    canceller_t c = {.h = f.h};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cancel_soon, &c), 0);
    cr_assert_eq(fx_get(&f, "/slow"), DS_ESHUTDOWN, "%s", f.err);
    int64_t late = ds_mono_us() - c.at_us;
    pthread_join(th, NULL);
    cr_assert_lt(late, 100000, "returned %lld us after the cancel", (long long)late);
    cr_assert_str_eq(f.err, "request cancelled");
    /* Later requests fail at once. */
    cr_assert_eq(fx_get(&f, "/echo"), DS_ESHUTDOWN);
    fx_stop(&f);
    cr_assert_eq(atomic_load(&f.s.nreqs), 1);
}

Test(httpc, fails_to_connect_where_nothing_listens) {
    ds_httpc_t *h = client(NULL);
    ds_httpc_resp_t r = {0};
    char err[256];
    char *u = ds_asprintf("http://127.0.0.1:%d/", loopback_free_port());
    ds_httpc_req_t req = {.url = u};
    cr_assert_eq(ds_httpc_request(h, &req, &r, err, sizeof err), DS_EIO);
    cr_assert(strstr(err, "onnect"), "%s", err);
    cr_assert_eq(ds_httpc_connect(h, u, err, sizeof err), DS_EIO);
    cr_assert_eq(ds_httpc_socket(h), -1);
    ds_httpc_req_t ftp = {.url = "ftp://127.0.0.1/x"};
    cr_assert_eq(ds_httpc_request(h, &ftp, &r, err, sizeof err), DS_EINVAL, "%s", err);
    ds_httpc_resp_clear(&r);
    ds_httpc_destroy(h);
    free(u);
}

Test(httpc, connect_opens_a_connection_and_sends_nothing) {
    fx_t f;
    fx_start(&f, routes, NULL);
    char *u = url(&f.s, "/");
    cr_assert_eq(ds_httpc_connect(f.h, u, f.err, sizeof f.err), 0, "%s", f.err);
    for (int i = 0; i < 200 && atomic_load(&f.s.conns) == 0; i++) usleep(10 * 1000);
    fx_stop(&f);
    cr_assert_eq(atomic_load(&f.s.conns), 1);
    cr_assert_eq(atomic_load(&f.s.nreqs), 0);
    free(u);
}

Test(httpc, follows_redirects_only_when_allowed) {
    fx_t f;
    char v[64];
    fx_start(&f, routes, NULL);
    cr_assert_eq(fx_get(&f, "/moved"), 0, "%s", f.err);
    cr_assert_eq(f.r.status, 302);
    cr_assert_str_eq(f.r.body.p, "moved");
    cr_assert_str_eq(ds_httpc_header(&f.r, "location", v, sizeof v), "/echo");
    ds_httpc_destroy(f.h);

    ds_httpc_opts_t o = {.max_redirects = 2};
    f.h = client(&o);
    cr_assert_eq(fx_get(&f, "/moved"), 0, "%s", f.err);
    cr_assert_eq(f.r.status, 201);
    cr_assert_str_eq(f.r.body.p, "{\"ok\":true}");
    cr_assert_null(ds_httpc_header(&f.r, "location", v, sizeof v), "the final response's headers");
    fx_stop(&f);
    cr_assert_eq(atomic_load(&f.s.nreqs), 3);
    cr_assert(strncmp(f.s.reqs[2], "GET /echo HTTP/1.1\r\n", 20) == 0, "%s", f.s.reqs[2]);
}

/* The server stands in for a proxy: it gets the absolute URL. */
static const route_t proxy_routes[] = {
    {"http://jwks.example.invalid/keys", "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nproxied"},
    {NULL, NULL},
};

Test(httpc, uses_the_proxy_from_the_environment_unless_told_not_to) {
    server_t s;
    server_start(&s, proxy_routes);
    char *proxy = ds_asprintf("http://127.0.0.1:%d", s.port);
    setenv("http_proxy", proxy, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    ds_httpc_resp_t r = {0};
    char err[256];
    ds_httpc_req_t req = {.url = "http://jwks.example.invalid/keys"};
    ds_httpc_t *h = client(NULL);
    cr_assert_eq(ds_httpc_request(h, &req, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body.p, "proxied");
    ds_httpc_destroy(h);

    ds_httpc_opts_t none = {.proxy = "", .connect_timeout_ms = 2000};
    h = client(&none);
    cr_assert_neq(ds_httpc_request(h, &req, &r, err, sizeof err), 0, "no proxy: the name does not resolve");
    ds_httpc_destroy(h);
    ds_httpc_resp_clear(&r);
    server_stop(&s);
    cr_assert_eq(atomic_load(&s.nreqs), 1);
    cr_assert(strncmp(s.reqs[0], "GET http://jwks.example.invalid/keys HTTP/1.1\r\n", 46) == 0, "%s",
              s.reqs[0]);
    unsetenv("http_proxy");
    free(proxy);
}

Test(httpc, url_parse_takes_http_and_https_urls_only) {
    ds_httpc_url_t u;
    char err[256];
    cr_assert_eq(
        ds_httpc_url_parse("https://project.supabase.co/auth/v1/.well-known/jwks.json", &u, err, sizeof err),
        0, "%s", err);
    cr_assert(u.tls);
    cr_assert_str_eq(u.host, "project.supabase.co");
    cr_assert_eq(u.port, 443);
    cr_assert_eq(ds_httpc_url_parse("http://[::1]:8080/x?y=1", &u, err, sizeof err), 0, "%s", err);
    cr_assert_not(u.tls);
    cr_assert_str_eq(u.host, "::1");
    cr_assert_eq(u.port, 8080);
    cr_assert_eq(ds_httpc_url_parse("HTTP://LOCALHOST", &u, err, sizeof err), 0, "%s", err);
    cr_assert_eq(u.port, 80);

    const char *bad[] = {"ftp://example.com/x", "example.com/x",         "http://",
                         "http://user@host/x",  "http://user:pw@host/x", "https://host:99999/x",
                         "https://host:0/x",    "http://ho st/x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(ds_httpc_url_parse(bad[i], &u, err, sizeof err), DS_EINVAL, "%s", bad[i]);
        cr_assert(err[0], "a reason for %s", bad[i]);
    }
}
