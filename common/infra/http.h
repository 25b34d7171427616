/* HTTP server on a libuv loop through libh2o. Handlers run on the loop
 * thread; a handler may respond later from the same thread, and work done on
 * other threads is answered through the deferred responses below. */
#ifndef DEALSCORE_HTTP_H
#define DEALSCORE_HTTP_H

#include <stddef.h>
#include <uv.h>
#ifndef H2O_USE_LIBUV
#define H2O_USE_LIBUV 1
#endif
#include <h2o.h>
#include <jansson.h>

typedef struct ds_http_s ds_http_t;

/* Returns 0 when the handler responded or will respond, -1 to fall through
 * to the next route (404 at the end). */
typedef int (*ds_http_handler_fn)(void *ud, h2o_req_t *req);

/* Creates a server for host:port on loop; max_body bounds request bodies
 * (h2o answers 413 above it). Free with ds_http_destroy. */
ds_http_t *ds_http_new(uv_loop_t *loop, const char *host, int port, size_t max_body);
/* Registers a handler for a path prefix; call before ds_http_start. */
void ds_http_route(ds_http_t *h, const char *path, ds_http_handler_fn fn, void *ud);
/* Serves the fixed document body[0..len) (not copied: it must outlive the
 * server) at exactly path to GET and HEAD (405 to other methods), e.g. an
 * API description embedded at build time. Call before ds_http_start. */
void ds_http_route_document(ds_http_t *h, const char *path, const char *content_type, const char *body,
                            size_t len);
/* Binds and listens. Returns 0, or DS_EIO with the reason in errstr. */
int ds_http_start(ds_http_t *h, char *errstr, size_t errstr_size);
/* The port actually bound (useful with port 0 in tests). */
int ds_http_port(const ds_http_t *h);
/* Stops accepting connections and asks open ones to close. */
void ds_http_stop(ds_http_t *h);
/* Open client connections. */
int ds_http_connections(const ds_http_t *h);
/* Disposes the h2o context (closing its own timers); call once, on the loop
 * thread, when shutting down, before closing the remaining handles. */
void ds_http_close_context(ds_http_t *h);
/* Frees the server; call after the loop has run its close callbacks. NULL-safe. */
void ds_http_destroy(ds_http_t *h);

/* Responses. body is copied into the request's pool; content_type NULL
 * sends none (204). */
void ds_http_respond(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len);
/* Sends obj as JSON and drops one reference to it. */
void ds_http_respond_json(h2o_req_t *req, int status, json_t *obj);
/* {"error": code, "message": message} with the given status. */
void ds_http_respond_error(h2o_req_t *req, int status, const char *code, const char *message);
/* Adds a response header before responding (name and value are copied). */
void ds_http_add_header(h2o_req_t *req, const char *name, const char *value);

/* ---- deferred responses ----------------------------------------------------
 * A handler that gives a request's work to another thread keeps the request
 * with ds_http_defer. The thread calls ds_http_deferred_done when the work is
 * finished, and the loop thread then calls the finish function, which
 * answers the request if its client is still there: a request whose client
 * went away meanwhile has been freed by h2o, and finish gets NULL. */

typedef struct ds_http_deferred_s ds_http_deferred_t;
typedef struct ds_http_pending_s ds_http_pending_t;

/* Runs on the loop thread once per deferred job, after ds_http_deferred_done.
 * req is the request to answer (exactly once, with ds_http_respond*), or
 * NULL when the client went away or the server is shutting down. job is the
 * caller's, to free here. */
typedef void (*ds_http_finish_fn)(void *ud, void *job, h2o_req_t *req);

/* Hands finished jobs back to loop's thread through a uv_async_t, which the
 * loop's shutdown closes like every other handle. Free with
 * ds_http_deferred_destroy. */
ds_http_deferred_t *ds_http_deferred_new(uv_loop_t *loop, ds_http_finish_fn finish, void *ud);
/* Loop thread, in a handler that returns 0: keeps req open for job. Returns
 * the handle to pass to ds_http_deferred_done exactly once. */
ds_http_pending_t *ds_http_defer(ds_http_deferred_t *d, h2o_req_t *req, void *job);
/* Any thread: p's job is finished; the loop thread will call finish for it
 * (p is freed after that). */
void ds_http_deferred_done(ds_http_deferred_t *d, ds_http_pending_t *p);
/* Loop thread: calls finish now for every job done so far (at shutdown,
 * once the worker threads have stopped). */
void ds_http_deferred_flush(ds_http_deferred_t *d);
/* After the loop has closed its handles: calls finish with req NULL for the
 * jobs done but not finished, then frees d. Jobs never marked done are not
 * seen. NULL does nothing. */
void ds_http_deferred_destroy(ds_http_deferred_t *d);

/* ---- CORS ------------------------------------------------------------------
 * Cross-origin calls from browser apps on a list of origins (exact match of
 * scheme://host[:port], case-insensitive). A route that takes them calls
 * ds_http_cors first in its handler. */

typedef struct ds_http_cors_s ds_http_cors_t;

/* origins: comma-separated, spaces around commas ignored (as
 * DEALSCORE_CORS_ORIGINS, which the config checks); NULL or empty: none.
 * methods and headers: what a preflight allows ("POST", "Authorization,
 * Content-Type"); max_age_s: how long a browser may keep a preflight's
 * answer. Free with ds_http_cors_destroy (NULL-safe). */
ds_http_cors_t *ds_http_cors_new(const char *origins, const char *methods, const char *headers,
                                 int max_age_s);
void ds_http_cors_destroy(ds_http_cors_t *c);
/* A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
 * answered here and 1 returned: 204 with Access-Control-Allow-Origin (the
 * origin), -Allow-Methods, -Allow-Headers, -Max-Age for a listed origin;
 * 403 {"error":"origin_not_allowed",...} with no Access-Control-* header
 * otherwise. Any other request gets Access-Control-Allow-Origin for a listed
 * Origin (nothing for another) and 0 is returned: the handler goes on. With
 * any origin listed, every answer carries Vary: Origin, so that no cache
 * serves one origin's answer to another. */
int ds_http_cors(const ds_http_cors_t *c, h2o_req_t *req);

/* Returns true when the request's method is m ("GET", "POST", ...). */
int ds_http_method_is(const h2o_req_t *req, const char *m);
/* Copies a request header value into buf; returns its length or -1 when absent. */
int ds_http_header(const h2o_req_t *req, const char *name, char *buf, size_t bufsz);

/* The longest Authorization header the services accept, in bytes (a session
 * JWT is 1-2 KiB). A longer one is refused with 401, never cut. */
#define DS_HTTP_AUTHORIZATION_MAX 8192
/* The message of that 401. */
#define DS_HTTP_AUTHORIZATION_TOO_LONG "the Authorization header is longer than 8192 bytes"

/* Returns 1 when the Content-Type value names the media type type (such as
 * "application/json"), in any case, alone or followed by parameters
 * ("application/json; charset=utf-8"); 0 otherwise, and for NULL. So
 * "application/jsonp" and "application/json x" are not application/json. */
int ds_http_media_type_is(const char *value, const char *type);

/* Finds the parameter name in the query string q[0..len) (without the '?';
 * "a=1&b=2"), names and values percent-decoded, '+' a space. Copies the
 * decoded value into buf (cut at bufsz - 1 and NUL-terminated) and returns
 * its whole decoded length, which may hold NUL bytes; DS_ENOTFOUND when the
 * parameter is absent, DS_EINVAL when the query has a malformed escape. A parameter
 * given twice is DS_EINVAL too: which one counts would be a guess. */
int ds_http_query_param(const char *q, size_t len, const char *name, char *buf, size_t bufsz);

#endif
