/* HTTP server: libh2o on the service's libuv loop. */
#include "infra/http.h"
#include "base/common.h"
#include "base/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    h2o_handler_t super;
    ds_http_handler_fn fn;
    void *ud;
} route_handler_t;

struct ds_http_s {
    uv_loop_t *loop;
    char *host;
    int port;
    h2o_globalconf_t config;
    h2o_hostconf_t *hostconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    int ctx_inited;
    int listening;
    int nconns;
};

typedef struct {
    h2o_handler_t super;
    const char *path, *content_type, *body;
    size_t len;
} document_handler_t;

/* Each accepted connection remembers its server so closing can count down. */
typedef struct {
    uv_tcp_t tcp;
    ds_http_t *server;
} conn_t;

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
    route_handler_t *rh = (route_handler_t *)self;
    return rh->fn(rh->ud, req);
}

static int on_document(h2o_handler_t *self, h2o_req_t *req) {
    document_handler_t *d = (document_handler_t *)self;
    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len, d->path, strlen(d->path))) return -1;
    if (!ds_http_method_is(req, "GET") && !ds_http_method_is(req, "HEAD")) {
        ds_http_add_header(req, "allow", "GET, HEAD");
        ds_http_respond_error(req, 405, "method_not_allowed", "use GET");
        return 0;
    }
    ds_http_respond(req, 200, d->content_type, d->body, d->len);
    return 0;
}

ds_http_t *ds_http_new(uv_loop_t *loop, const char *host, int port, size_t max_body) {
    ds_http_t *h = ds_calloc(1, sizeof *h);
    h->loop = loop;
    h->host = ds_strdup(host);
    h->port = port;
    h2o_config_init(&h->config);
    h->config.max_request_entity_size = max_body;
    h->config.server_name = h2o_iovec_init(H2O_STRLIT("dealscore"));
    h->hostconf = h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    return h;
}

void ds_http_route(ds_http_t *h, const char *path, ds_http_handler_fn fn, void *ud) {
    h2o_pathconf_t *pc = h2o_config_register_path(h->hostconf, path, 0);
    route_handler_t *rh = (route_handler_t *)h2o_create_handler(pc, sizeof *rh);
    rh->super.on_req = on_req;
    rh->fn = fn;
    rh->ud = ud;
}

static void on_conn_close(uv_handle_t *handle) {
    conn_t *c = (conn_t *)handle;
    if (c->server) c->server->nconns--;
    free(c);
}

static void on_accept(uv_stream_t *listener, int status) {
    ds_http_t *h = listener->data;
    if (status != 0) return;
    conn_t *c = ds_calloc(1, sizeof *c);
    uv_tcp_t *conn = &c->tcp;
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, on_conn_close);
        return;
    }
    c->server = h;
    h->nconns++;
    uv_tcp_nodelay(conn, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, on_conn_close);
    h2o_accept(&h->accept_ctx, sock);
}

int ds_http_start(ds_http_t *h, char *errstr, size_t errstr_size) {
    struct sockaddr_storage ss;
    int r;
    if (strchr(h->host, ':'))
        r = uv_ip6_addr(h->host, h->port, (struct sockaddr_in6 *)&ss);
    else
        r = uv_ip4_addr(strcmp(h->host, "localhost") == 0 ? "127.0.0.1" : h->host, h->port,
                        (struct sockaddr_in *)&ss);
    if (r != 0) {
        snprintf(errstr, errstr_size, "invalid listen address %s:%d: %s", h->host, h->port, uv_strerror(r));
        return DS_EINVAL;
    }
    h2o_context_init(&h->ctx, h->loop, &h->config);
    h->ctx_inited = 1;
    h->accept_ctx.ctx = &h->ctx;
    h->accept_ctx.hosts = h->config.hosts;
    uv_tcp_init(h->loop, &h->listener);
    h->listener.data = h;
    h->listening = 1;
    if ((r = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&h->listener, 256, on_accept)) != 0) {
        snprintf(errstr, errstr_size, "could not listen on %s:%d: %s", h->host, h->port, uv_strerror(r));
        return DS_EIO;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &len) == 0) {
        if (bound.ss_family == AF_INET)
            h->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else if (bound.ss_family == AF_INET6)
            h->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    return DS_OK;
}

int ds_http_port(const ds_http_t *h) { return h->port; }

int ds_http_connections(const ds_http_t *h) { return h ? h->nconns : 0; }

void ds_http_stop(ds_http_t *h) {
    if (!h) return;
    if (h->listening && !uv_is_closing((uv_handle_t *)&h->listener))
        uv_close((uv_handle_t *)&h->listener, NULL);
    /* h2o_context_request_shutdown is not used: in libh2o 2.2 it arms a timer that
     * h2o_context_dispose then asserts on; connections close on their own. */
    (void)0;
}

void ds_http_close_context(ds_http_t *h) {
    if (!h || !h->ctx_inited) return;
    /* h2o asserts that no connection still uses the context; after a forced
     * shutdown with connections open, leave it (the process is exiting). */
    if (h->nconns > 0) {
        h->ctx_inited = 0;
        return;
    }
    h2o_context_dispose(&h->ctx);
    h->ctx_inited = 0;
}

void ds_http_destroy(ds_http_t *h) {
    if (!h) return;
    ds_http_close_context(h);
    h2o_config_dispose(&h->config);
    free(h->host);
    free(h);
}

void ds_http_add_header(h2o_req_t *req, const char *name, const char *value) {
    size_t nl = strlen(name), vl = strlen(value);
    char *n = h2o_mem_alloc_pool(&req->pool, nl);
    char *v = h2o_mem_alloc_pool(&req->pool, vl);
    memcpy(n, name, nl);
    memcpy(v, value, vl);
    h2o_add_header_by_str(&req->pool, &req->res.headers, n, nl, 1, NULL, v, vl);
}

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

void ds_http_respond(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len) {
    req->res.status = status;
    req->res.reason = reason(status);
    if (content_type)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                       strlen(content_type));
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t buf = h2o_strdup(&req->pool, body, len);
    req->res.content_length = len;
    h2o_start_response(req, &generator);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

void ds_http_respond_json(h2o_req_t *req, int status, json_t *obj) {
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s) s = ds_strdup("{}");
    size_t n = strlen(s);
    char *body = ds_malloc(n + 2);
    memcpy(body, s, n);
    body[n] = '\n';
    ds_http_respond(req, status, "application/json", body, n + 1);
    free(body);
    free(s);
}

void ds_http_respond_error(h2o_req_t *req, int status, const char *code, const char *message) {
    ds_http_respond_json(req, status, json_pack("{s:s, s:s}", "error", code, "message", message));
}

/* ---- deferred responses ---------------------------------------------------- */

struct ds_http_deferred_s {
    uv_async_t async;
    ds_http_finish_fn finish;
    void *ud;
    pthread_mutex_t mu; /* the done list */
    ds_http_pending_t *done_head, *done_tail;
};

/* Lives in the request's pool, so h2o tells it (dispose) when the request
 * goes away: the client left, or the response was sent. */
typedef struct {
    ds_http_pending_t *p;
} req_link_t;

struct ds_http_pending_s {
    ds_http_pending_t *next;
    void *job;
    h2o_req_t *req; /* NULL once the request went away; loop thread only */
    req_link_t *link;
};

static void on_req_dispose(void *arg) {
    req_link_t *link = arg;
    if (link->p) {
        link->p->req = NULL;
        link->p->link = NULL;
    }
}

/* Calls finish for the list from p on; respond false hands NULL for every
 * request. */
static void finish_list(ds_http_deferred_t *d, ds_http_pending_t *p, bool respond) {
    while (p) {
        ds_http_pending_t *next = p->next;
        h2o_req_t *req = p->req;
        /* Unlink first: responding may dispose the request at once. */
        if (p->link) p->link->p = NULL;
        d->finish(d->ud, p->job, respond ? req : NULL);
        free(p);
        p = next;
    }
}

static ds_http_pending_t *take_done(ds_http_deferred_t *d) {
    pthread_mutex_lock(&d->mu);
    ds_http_pending_t *p = d->done_head;
    d->done_head = d->done_tail = NULL;
    pthread_mutex_unlock(&d->mu);
    return p;
}

static void on_done_async(uv_async_t *a) {
    ds_http_deferred_t *d = a->data;
    finish_list(d, take_done(d), true);
}

ds_http_deferred_t *ds_http_deferred_new(uv_loop_t *loop, ds_http_finish_fn finish, void *ud) {
    ds_http_deferred_t *d = ds_calloc(1, sizeof *d);
    d->finish = finish;
    d->ud = ud;
    pthread_mutex_init(&d->mu, NULL);
    uv_async_init(loop, &d->async, on_done_async);
    d->async.data = d;
    return d;
}

ds_http_pending_t *ds_http_defer(ds_http_deferred_t *d, h2o_req_t *req, void *job) {
    (void)d;
    ds_http_pending_t *p = ds_calloc(1, sizeof *p);
    p->job = job;
    p->req = req;
    p->link = h2o_mem_alloc_shared(&req->pool, sizeof *p->link, on_req_dispose);
    p->link->p = p;
    return p;
}

void ds_http_deferred_done(ds_http_deferred_t *d, ds_http_pending_t *p) {
    p->next = NULL;
    pthread_mutex_lock(&d->mu);
    if (d->done_tail)
        d->done_tail->next = p;
    else
        d->done_head = p;
    d->done_tail = p;
    pthread_mutex_unlock(&d->mu);
    uv_async_send(&d->async);
}

void ds_http_deferred_flush(ds_http_deferred_t *d) { finish_list(d, take_done(d), true); }

void ds_http_deferred_destroy(ds_http_deferred_t *d) {
    if (!d) return;
    /* The loop is closed: any request still linked is gone with it. */
    finish_list(d, take_done(d), false);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

int ds_http_method_is(const h2o_req_t *req, const char *m) {
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

int ds_http_header(const h2o_req_t *req, const char *name, char *buf, size_t bufsz) {
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0) return -1;
    const h2o_iovec_t *v = &req->headers.entries[i].value;
    size_t n = v->len < bufsz - 1 ? v->len : bufsz - 1;
    memcpy(buf, v->base, n);
    buf[n] = '\0';
    return (int)v->len;
}

int ds_http_media_type_is(const char *value, const char *type) {
    if (!value) return 0;
    size_t n = strlen(type);
    while (*value == ' ' || *value == '\t') value++;
    if (strncasecmp(value, type, n) != 0) return 0;
    const char *p = value + n;
    while (*p == ' ' || *p == '\t') p++;
    return *p == '\0' || *p == ';';
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..n) into out (out may be NULL to only validate), writing at
 * most outsz - 1 bytes. Returns the decoded length or -1 on a bad escape. */
static ssize_t query_decode(const char *s, size_t n, char *out, size_t outsz) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (out && k + 1 < outsz) out[k] = c;
        k++;
    }
    if (out && outsz) out[k < outsz ? k : outsz - 1] = '\0';
    return (ssize_t)k;
}

int ds_http_query_param(const char *q, size_t len, const char *name, char *buf, size_t bufsz) {
    size_t nlen = strlen(name);
    int found = DS_ENOTFOUND;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && q[end] != '&') end++;
        size_t eq = i;
        while (eq < end && q[eq] != '=') eq++;
        char key[64];
        ssize_t klen = query_decode(q + i, eq - i, key, sizeof key);
        ssize_t vlen = eq < end ? query_decode(q + eq + 1, end - eq - 1, NULL, 0) : 0;
        if (klen < 0 || vlen < 0) return DS_EINVAL;
        if ((size_t)klen == nlen && memcmp(key, name, nlen) == 0) {
            if (found >= 0) return DS_EINVAL;
            found = (int)(eq < end ? query_decode(q + eq + 1, end - eq - 1, buf, bufsz) : 0);
            if (eq >= end && bufsz) buf[0] = '\0';
        }
        i = end + 1;
    }
    return found;
}

void ds_http_route_document(ds_http_t *h, const char *path, const char *content_type, const char *body,
                            size_t len) {
    h2o_pathconf_t *pc = h2o_config_register_path(h->hostconf, path, 0);
    document_handler_t *d = (document_handler_t *)h2o_create_handler(pc, sizeof *d);
    d->super.on_req = on_document;
    d->path = path;
    d->content_type = content_type;
    d->body = body;
    d->len = len;
}

/* ---- CORS ---------------------------------------------------------------- */

struct ds_http_cors_s {
    char **origins;
    size_t n;
    char *methods, *headers, max_age[16];
};

ds_http_cors_t *ds_http_cors_new(const char *origins, const char *methods, const char *headers,
                                 int max_age_s) {
    ds_http_cors_t *c = ds_calloc(1, sizeof *c);
    c->methods = ds_strdup(methods);
    c->headers = ds_strdup(headers);
    snprintf(c->max_age, sizeof c->max_age, "%d", max_age_s);
    for (const char *p = origins ? origins : ""; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t len = strcspn(p, ", ");
        if (len == 0) break;
        c->origins = ds_realloc(c->origins, (c->n + 1) * sizeof *c->origins);
        c->origins[c->n++] = ds_strndup(p, len);
        p += len;
    }
    return c;
}

void ds_http_cors_destroy(ds_http_cors_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) free(c->origins[i]);
    free(c->origins);
    free(c->methods);
    free(c->headers);
    free(c);
}

/* The request's Origin when it is listed (into buf), else NULL. */
static const char *cors_listed_origin(const ds_http_cors_t *c, const h2o_req_t *req, char *buf,
                                      size_t bufsz) {
    int len = ds_http_header(req, "origin", buf, bufsz);
    if (len < 0 || (size_t)len >= bufsz) return NULL;
    for (size_t i = 0; i < c->n; i++)
        if (strcasecmp(c->origins[i], buf) == 0) return buf;
    return NULL;
}

int ds_http_cors(const ds_http_cors_t *c, h2o_req_t *req) {
    if (!c || c->n == 0) return 0;
    char buf[512], ignored[8];
    const char *origin = cors_listed_origin(c, req, buf, sizeof buf);
    ds_http_add_header(req, "vary", "Origin");
    int preflight = ds_http_method_is(req, "OPTIONS") &&
                    ds_http_header(req, "origin", ignored, sizeof ignored) >= 0 &&
                    ds_http_header(req, "access-control-request-method", ignored, sizeof ignored) >= 0;
    if (preflight && !origin) {
        ds_http_respond_error(req, 403, "origin_not_allowed",
                              "this origin may not call the API from a browser (DEALSCORE_CORS_ORIGINS)");
        return 1;
    }
    if (origin) ds_http_add_header(req, "access-control-allow-origin", origin);
    if (!preflight) return 0;
    ds_http_add_header(req, "access-control-allow-methods", c->methods);
    ds_http_add_header(req, "access-control-allow-headers", c->headers);
    ds_http_add_header(req, "access-control-max-age", c->max_age);
    ds_http_respond(req, 204, NULL, "", 0);
    return 1;
}
