/* The benchmark programs' HTTP client and Prometheus sums; see bench.h. */
#include "perf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/common.h"

static int conn_open(perf_conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1) return -1;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

void perf_conn_close(perf_conn_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = c->rlen = 0;
}

int perf_conn_request(perf_conn_t *c, const char *path, const char *auth, const char *body,
                          size_t len) {
    char head[4096]; /* a session JWT makes the Authorization line long */
    int n;
    if (body)
        n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     path, c->host, auth ? auth : "", len);
    else
        n = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, c->host);
    if (n < 0 || (size_t)n >= sizeof head) return -1;
    if (!body) len = 0;
    c->body = NULL;
    c->body_len = 0;
    c->retry_after = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (c->fd < 0 && conn_open(c) != 0) {
            if (c->fd >= 0) close(c->fd);
            c->fd = -1;
            return -1;
        }
        struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, len}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = body ? 2 : 1};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w != (ssize_t)((size_t)n + len)) {
            close(c->fd);
            c->fd = -1;
            continue;
        }
        c->rlen = 0;
        for (;;) {
            if (c->rcap - c->rlen < 4096) c->rbuf = ds_realloc(c->rbuf, c->rcap = c->rcap * 2 + 8192);
            ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen - 1, 0);
            if (r <= 0) break;
            c->rlen += (size_t)r;
            c->rbuf[c->rlen] = '\0';
            char *hend = strstr(c->rbuf, "\r\n\r\n");
            if (!hend) continue;
            char *cl = strcasestr(c->rbuf, "content-length:");
            size_t blen = cl && cl < hend ? strtoul(cl + 15, NULL, 10) : 0;
            if (c->rlen >= (size_t)(hend + 4 - c->rbuf) + blen) {
                c->body = hend + 4;
                c->body_len = blen;
                char *ra = strcasestr(c->rbuf, "retry-after:");
                if (ra && ra < hend) c->retry_after = atoi(ra + 12);
                return atoi(c->rbuf + 9);
            }
        }
        close(c->fd);
        c->fd = -1;
    }
    return -1;
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

bool perf_wait_quiet(const char *const *urls, size_t n, double timeout_s, bool (*also)(void *ctx),
                         void *ctx, double *lag) {
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

double perf_workers_lag(const char *const *urls, size_t n) {
    double lag = 0;
    for (size_t i = 0; i < n; i++) {
        perf_conn_t c = {.fd = -1};
        if (perf_parse_url(urls[i], c.host, sizeof c.host, &c.port) != 0) continue;
        if (perf_conn_request(&c, "/metrics", NULL, NULL, 0) == 200)
            lag += perf_metric_sum(c.body, c.body_len, "dealscore_consumer_lag", NULL);
        perf_conn_close(&c);
    }
    return lag;
}
