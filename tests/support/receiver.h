/* A webhook receiver for the tests of outbound events: an HTTP/1.1 server
 * on 127.0.0.1 (tests/support/loopback.h), a thread per connection, that
 * keeps every request it gets (path, content type, signature headers, body)
 * and answers with the statuses the test scripts. Plain sockets rather than
 * common/infra/http: h2o keeps recycled buffers in thread-local lists, which
 * a server thread that ends before the test leaves behind as leaks for
 * LeakSanitizer. Header-only. */
#ifndef DS_TEST_RECEIVER_H
#define DS_TEST_RECEIVER_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "loopback.h"
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

#define RECEIVER_MAX_CONNS 64

typedef struct {
    int fd, port;
    atomic_int stop;
    pthread_t acceptor;
    pthread_t conns[RECEIVER_MAX_CONNS];
    int conn_fds[RECEIVER_MAX_CONNS];
    int nconns;
    pthread_mutex_t mu;
    recv_req_t *reqs;
    size_t n, cap;
    int script[16]; /* statuses of the first requests, then default_status */
    size_t nscript;
    int default_status;
    atomic_int delay_ms; /* the time each answer takes (a slow receiver) */
} receiver_t;

typedef struct {
    receiver_t *rv;
    int fd;
} receiver_conn_t;

/* The value of header name (lowercase, with the colon) in the header block
 * head, blanks trimmed, into out. */
static inline void receiver_header(const char *head, const char *name, char *out, size_t outsz) {
    out[0] = '\0';
    const char *p = strcasestr(head, name);
    if (!p) return;
    p += strlen(name);
    while (*p == ' ') p++;
    size_t n = strcspn(p, "\r\n");
    snprintf(out, outsz, "%.*s", (int)n, p);
}

/* Records the whole request in buf[0..len) and returns the status to answer. */
static inline int receiver_record(receiver_t *rv, const char *buf, size_t head_len, size_t body_len) {
    recv_req_t r = {0};
    char *head = strndup(buf, head_len);
    sscanf(head, "%*s %127s", r.path);
    receiver_header(head, "\r\ncontent-type:", r.content_type, sizeof r.content_type);
    receiver_header(head, "\r\nx-dealscore-timestamp:", r.timestamp, sizeof r.timestamp);
    receiver_header(head, "\r\nx-dealscore-signature:", r.signature, sizeof r.signature);
    free(head);
    r.body_len = body_len;
    r.body = malloc(body_len + 1);
    memcpy(r.body, buf + head_len, body_len);
    r.body[body_len] = '\0';
    pthread_mutex_lock(&rv->mu);
    r.answered = rv->n < rv->nscript ? rv->script[rv->n] : rv->default_status;
    if (rv->n == rv->cap) {
        rv->cap = rv->cap ? 2 * rv->cap : 64;
        rv->reqs = realloc(rv->reqs, rv->cap * sizeof *rv->reqs);
    }
    rv->reqs[rv->n++] = r;
    pthread_mutex_unlock(&rv->mu);
    return r.answered;
}

/* Serves one keep-alive connection until the client closes it or the
 * receiver stops. */
static inline void *receiver_conn_main(void *arg) {
    receiver_conn_t *c = arg;
    receiver_t *rv = c->rv;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    while (!atomic_load(&rv->stop)) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t got = read(c->fd, buf + len, cap - len);
        if (got <= 0) break;
        len += (size_t)got;
        buf[len] = '\0';
        while (loopback_request_complete(buf, len)) {
            size_t head_len = (size_t)(strstr(buf, "\r\n\r\n") + 4 - buf);
            const char *cl = strcasestr(buf, "content-length:");
            size_t body_len = cl && (size_t)(cl - buf) < head_len ? strtoul(cl + 15, NULL, 10) : 0;
            int status = receiver_record(rv, buf, head_len, body_len);
            int delay = atomic_load(&rv->delay_ms);
            if (delay > 0) {
                /* A slow receiver, not a synchronisation: the answer takes this long. */
                struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
            char resp[128];
            int n = snprintf(resp, sizeof resp,
                             "HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n%s",
                             status, status < 300 ? "ok" : "no");
            if (write(c->fd, resp, (size_t)n) != n) break;
            memmove(buf, buf + head_len + body_len, len - head_len - body_len);
            len -= head_len + body_len;
            buf[len] = '\0';
        }
    }
    free(buf);
    free(c);
    return NULL;
}

static inline void *receiver_accept_main(void *arg) {
    receiver_t *rv = arg;
    while (!atomic_load(&rv->stop)) {
        struct pollfd p = {.fd = rv->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(rv->fd, NULL, NULL);
        if (fd < 0) continue;
        if (rv->nconns == RECEIVER_MAX_CONNS) {
            close(fd);
            continue;
        }
        receiver_conn_t *c = malloc(sizeof *c);
        c->rv = rv;
        c->fd = fd;
        rv->conn_fds[rv->nconns] = fd;
        pthread_create(&rv->conns[rv->nconns++], NULL, receiver_conn_main, c);
    }
    return NULL;
}

/* Starts rv answering default_status (after the statuses of script, if
 * any, for the first requests). */
static inline void receiver_start(receiver_t *rv, int default_status) {
    memset(rv, 0, sizeof *rv);
    pthread_mutex_init(&rv->mu, NULL);
    rv->default_status = default_status;
    rv->fd = loopback_listen(&rv->port);
    pthread_create(&rv->acceptor, NULL, receiver_accept_main, rv);
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
    atomic_store(&rv->stop, 1);
    pthread_join(rv->acceptor, NULL);
    for (int i = 0; i < rv->nconns; i++) {
        pthread_join(rv->conns[i], NULL);
        close(rv->conn_fds[i]);
    }
    close(rv->fd);
    for (size_t i = 0; i < rv->n; i++) free(rv->reqs[i].body);
    free(rv->reqs);
    pthread_mutex_destroy(&rv->mu);
}

#endif
