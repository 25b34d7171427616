/* The tests' HTTP calls to a service on 127.0.0.1: one ds_httpc request
 * (common/infra/httpc.h) on a fresh client each, so every call opens its
 * own connection. */
#ifndef DS_TEST_HTTPC_H
#define DS_TEST_HTTPC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infra/httpc.h"

typedef struct {
    int status;    /* -1 when the request failed (no connection, timeout) */
    char *headers; /* the status line and header lines, each ending in "\r\n" */
    char *body;    /* NUL-terminated */
    size_t body_len;
} httpc_resp_t;

static inline void httpc_free(httpc_resp_t *r) {
    free(r->headers);
    free(r->body);
    r->headers = r->body = NULL;
}

/* Sends method path with optional extra header lines ("Name: v\r\n...") and
 * body to 127.0.0.1:port; waits at most timeout_ms for the whole response. */
static inline httpc_resp_t httpc_request(int port, const char *method, const char *path,
                                         const char *extra_headers, const char *body, size_t body_len,
                                         int timeout_ms) {
    httpc_resp_t r = {-1, NULL, NULL, 0};
    char *lines = ds_strdup(extra_headers ? extra_headers : "");
    const char *headers[32];
    size_t n = 0;
    for (char *line = lines, *next; *line && n < DS_ARRAY_SIZE(headers) - 1; line = next) {
        next = strstr(line, "\r\n");
        if (next) {
            *next = '\0';
            next += 2;
        } else {
            next = line + strlen(line);
        }
        if (*line) headers[n++] = line;
    }
    headers[n] = NULL;
    char *url = ds_asprintf("http://127.0.0.1:%d%s", port, path);
    ds_httpc_opts_t o = {.timeout_ms = timeout_ms, .proxy = ""};
    ds_httpc_req_t req = {
        .method = method, .url = url, .headers = headers, .body = body, .body_len = body_len};
    ds_httpc_resp_t resp = {0};
    ds_httpc_t *h = NULL;
    char err[256];
    if (ds_httpc_new(&h, &o, err, sizeof err) == 0 &&
        ds_httpc_request(h, &req, &resp, err, sizeof err) == 0) {
        r.status = resp.status;
        r.body_len = resp.body.len;
        r.headers = ds_sb_take(&resp.headers);
        r.body = ds_sb_take(&resp.body);
    }
    ds_httpc_resp_clear(&resp);
    ds_httpc_destroy(h);
    free(url);
    free(lines);
    return r;
}

static inline httpc_resp_t httpc_get(int port, const char *path) {
    return httpc_request(port, "GET", path, NULL, NULL, 0, 3000);
}

/* Returns the value of a header (case-insensitive) copied into buf, or NULL. */
static inline const char *httpc_header(const httpc_resp_t *r, const char *name, char *buf, size_t bufsz) {
    if (!r->headers) return NULL;
    ds_httpc_resp_t v = {.headers = {.p = r->headers, .len = strlen(r->headers)}};
    return ds_httpc_header(&v, name, buf, bufsz);
}

#endif
