/* A tiny blocking HTTP/1.1 client for tests: one request per connection. */
#ifndef DS_TEST_HTTPC_H
#define DS_TEST_HTTPC_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int status;        /* -1 when the connection failed */
    char *headers;     /* raw header block, lowercase not guaranteed */
    char *body;        /* NUL-terminated */
    size_t body_len;
} httpc_resp_t;

static inline void httpc_free(httpc_resp_t *r) {
    free(r->headers);
    free(r->body);
    r->headers = r->body = NULL;
}

/* Sends method path with optional extra header lines ("Name: v\r\n...") and
 * body to 127.0.0.1:port; waits at most timeout_ms. */
static inline httpc_resp_t httpc_request(int port, const char *method, const char *path,
                                         const char *extra_headers, const char *body,
                                         size_t body_len, int timeout_ms) {
    httpc_resp_t r = {-1, NULL, NULL, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return r;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return r;
    }
    size_t hcap = 1024 + (extra_headers ? strlen(extra_headers) : 0) + strlen(path);
    char *req = malloc(hcap + body_len);
    int n = snprintf(req, hcap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
                     method, path, extra_headers ? extra_headers : "", body_len);
    if (body_len) memcpy(req + n, body, body_len);
    size_t total = (size_t)n + body_len, off = 0;
    while (off < total) {
        ssize_t w = send(fd, req + off, total - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    free(req);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, timeout_ms) <= 0) break;
        if (len + 2048 > cap) buf = realloc(buf, cap *= 2);
        ssize_t rd = recv(fd, buf + len, cap - len - 1, 0);
        if (rd <= 0) break;
        len += (size_t)rd;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) == 0 && sep) {
        r.status = atoi(buf + 9);
        r.headers = strndup(buf, (size_t)(sep - buf));
        r.body_len = len - (size_t)(sep + 4 - buf);
        r.body = malloc(r.body_len + 1);
        memcpy(r.body, sep + 4, r.body_len);
        r.body[r.body_len] = '\0';
        /* Undo chunked transfer encoding if present. */
        if (strcasestr(r.headers, "transfer-encoding: chunked")) {
            char *in = r.body, *out = malloc(r.body_len + 1);
            size_t olen = 0;
            for (;;) {
                size_t sz = strtoul(in, &in, 16);
                in = strstr(in, "\r\n");
                if (!in || sz == 0) break;
                in += 2;
                memcpy(out + olen, in, sz);
                olen += sz;
                in += sz + 2;
            }
            out[olen] = '\0';
            free(r.body);
            r.body = out;
            r.body_len = olen;
        }
    }
    free(buf);
    return r;
}

static inline httpc_resp_t httpc_get(int port, const char *path) {
    return httpc_request(port, "GET", path, NULL, NULL, 0, 3000);
}

/* Returns the value of a header (case-insensitive) copied into buf, or NULL. */
static inline const char *httpc_header(const httpc_resp_t *r, const char *name, char *buf,
                                       size_t bufsz) {
    if (!r->headers) return NULL;
    size_t nl = strlen(name);
    for (const char *p = r->headers; (p = strstr(p, "\r\n")); ) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            p += nl + 1;
            while (*p == ' ') p++;
            size_t i = 0;
            while (p[i] && p[i] != '\r' && i + 1 < bufsz) { buf[i] = p[i]; i++; }
            buf[i] = '\0';
            return buf;
        }
    }
    return NULL;
}

#endif
