/* The benchmark programs' HTTP connection (over ds_httpc) and Prometheus
 * sums; see perf.h. */
#include "perf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"

/* A stack that does not answer within this is broken, not slow. */
#define REQUEST_TIMEOUT_MS 120000
#define MAX_BODY ((size_t)64 << 20)

void perf_conn_close(perf_conn_t *c) {
    ds_httpc_destroy(c->http);
    c->http = NULL;
    ds_httpc_resp_clear(&c->resp);
    free(c->url.p);
    free(c->auth.p);
    c->url = c->auth = (ds_sb_t){0};
    c->fd = -1;
    c->body = NULL;
    c->body_len = 0;
}

/* The client, made on first use: no proxy (the stack is local, and a proxy
 * would be measured with it). */
static int conn_client(perf_conn_t *c) {
    struct in_addr a;
    char err[256];
    if (inet_pton(AF_INET, c->host, &a) != 1) return -1;
    if (c->http) return 0;
    ds_httpc_opts_t o = {.timeout_ms = REQUEST_TIMEOUT_MS, .max_body = MAX_BODY, .proxy = ""};
    return ds_httpc_new(&c->http, &o, err, sizeof err) == 0 ? 0 : -1;
}

int perf_conn_request(perf_conn_t *c, const char *path, const char *auth, const char *body, size_t len) {
    char host[160], err[256], ra[16];
    c->body = NULL;
    c->body_len = 0;
    c->retry_after = 0;
    if (conn_client(c) != 0) {
        c->fd = -1;
        return -1;
    }
    /* The same request bytes as a hand-written client (Host without the
     * port, no Accept), so figures compare with earlier runs. */
    snprintf(host, sizeof host, "Host: %s", c->host);
    c->url.len = 0;
    ds_sb_printf(&c->url, "http://%s:%d%s", c->host, c->port, path);
    c->auth.len = 0;
    ds_sb_printf(&c->auth, "Authorization: Bearer %s", auth ? auth : "");
    const char *get_hdrs[] = {host, "Accept:", NULL};
    const char *post_hdrs[] = {host, c->auth.p, "Content-Type: application/json", "Accept:", NULL};
    ds_httpc_req_t req = {
        .url = c->url.p, .headers = body ? post_hdrs : get_hdrs, .body = body, .body_len = body ? len : 0};
    if (ds_httpc_request(c->http, &req, &c->resp, err, sizeof err) != 0) {
        c->fd = -1;
        return -1;
    }
    c->fd = ds_httpc_socket(c->http);
    c->body = c->resp.body.p;
    c->body_len = c->resp.body.len;
    if (ds_httpc_header(&c->resp, "retry-after", ra, sizeof ra)) c->retry_after = atoi(ra);
    return c->resp.status;
}

int perf_parse_url(const char *url, char *host, size_t hostsz, int *port) {
    char h[128];
    int p;
    if (!url || sscanf(url, "http://%127[^:/]:%d", h, &p) != 2 || p <= 0 || p > 65535) return -1;
    snprintf(host, hostsz, "%s", strcmp(h, "localhost") ? h : "127.0.0.1");
    *port = p;
    return 0;
}

double perf_metric_sum(const char *page, size_t len, const char *name, const char *label) {
    double sum = 0;
    size_t nl = strlen(name);
    const char *p = page, *end = page + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl && strncmp(p, name, nl) == 0 && (p[nl] == '{' || p[nl] == ' ')) {
            const char *v = p[nl] == '{' ? memchr(p, '}', (size_t)(eol - p)) : p + nl;
            bool match = !label || (memmem(p, (size_t)(eol - p), label, strlen(label)) != NULL);
            if (v && match) sum += strtod(v + 1, NULL);
        }
        p = eol + 1;
    }
    return sum;
}

bool perf_wait_quiet(const char *const *urls, size_t n, double timeout_s, bool (*also)(void *ctx), void *ctx,
                     double *lag) {
    int64_t t0 = ds_mono_us();
    int quiet = 0;
    for (;;) {
        double l = perf_workers_lag(urls, n);
        if (lag) *lag = l;
        bool ok = also ? also(ctx) : true; /* called every round: it may report what it saw */
        quiet = l == 0 && ok ? quiet + 1 : 0;
        if (quiet >= 2) return true;
        if ((double)(ds_mono_us() - t0) / 1e6 >= timeout_s) return false;
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL); /* the gauges' refresh interval */
    }
}

double perf_workers_metric(const char *const *urls, size_t n, const char *name) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        perf_conn_t c = {.fd = -1};
        if (perf_parse_url(urls[i], c.host, sizeof c.host, &c.port) != 0) continue;
        if (perf_conn_request(&c, "/metrics", NULL, NULL, 0) == 200)
            sum += perf_metric_sum(c.body, c.body_len, name, NULL);
        perf_conn_close(&c);
    }
    return sum;
}

double perf_workers_lag(const char *const *urls, size_t n) {
    return perf_workers_metric(urls, n, "dealscore_consumer_lag");
}
