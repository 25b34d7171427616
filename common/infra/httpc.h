/* The HTTP client: one libcurl easy handle per ds_httpc_t, so connections
 * stay alive between the requests made on it (HTTP/1.1 keep-alive; HTTP/2
 * over TLS when the server offers it).
 *
 * What every handle does:
 * - proxies from the environment (http_proxy, https_proxy, no_proxy, as
 *   curl reads them) unless opts.proxy says otherwise;
 * - https verifies the server's certificate and its host name against the
 *   system's trust store; SSL_CERT_FILE and SSL_CERT_DIR replace its file and
 *   directory as they do for OpenSSL, and opts.ca_file replaces both;
 *   TLS 1.2 at least;
 * - http and https only, for the request and for redirects, which are
 *   followed only when opts.max_redirects allows;
 * - a connect timeout and a whole-request timeout, a limit on the response
 *   body, no `Expect: 100-continue` (a round trip per large body), no signal
 *   handlers (safe on any thread).
 *
 * A non-2xx status is a response, not an error: the request returns 0 and
 * the caller reads status, headers and body.
 *
 * Threads: a handle serves one request at a time, from any one thread at a
 * time; ds_httpc_cancel may be called from any thread. Use one handle per
 * thread for parallel requests. */
#ifndef DEALSCORE_HTTPC_H
#define DEALSCORE_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

#include "base/common.h"
#include "base/sb.h"

typedef struct ds_httpc_s ds_httpc_t;

/* Zeroed fields take the default given. */
typedef struct {
    int connect_timeout_ms; /* TCP and TLS set-up; 0: 10 s */
    int timeout_ms;         /* the whole request, connect to last byte; 0: 30 s */
    size_t max_body;        /* a longer response body fails the request; 0: 16 MiB */
    int max_redirects;      /* redirects followed; 0: none (a 3xx is the response) */
    const char *ca_file;    /* PEM certificates to trust instead of the system's; NULL: system */
    const char *proxy;      /* NULL: from the environment; "": none; else the proxy's URL */
    const char *user_agent; /* NULL: no User-Agent header */
} ds_httpc_opts_t;

typedef struct {
    const char *method; /* NULL: POST when body is set, else GET */
    const char *url;    /* absolute http:// or https:// URL */
    /* "Name: value" strings, NULL-terminated (NULL: none). They replace a
     * header curl would send (Host, Accept, Content-Type); "Name:" with no
     * value removes it. */
    const char *const *headers;
    const void *body; /* NULL: no body (an empty one for methods other than GET and HEAD) */
    size_t body_len;
} ds_httpc_req_t;

/* A response; {0} is empty. The request overwrites it and reuses its
 * buffers, so a loop over one response allocates nothing in the steady
 * state. The caller owns it and frees it with ds_httpc_resp_clear. */
typedef struct {
    int status;      /* of the final response (after redirects); 0 before any */
    ds_sb_t headers; /* its status line and header lines, each ending in "\r\n" */
    ds_sb_t body;    /* NUL-terminated after body.len bytes, never NULL after a request */
} ds_httpc_resp_t;

/* A URL as ds_httpc_url_parse reads it. */
typedef struct {
    bool tls;       /* https */
    char host[256]; /* a name or an address, without IPv6 brackets */
    int port;       /* given or the scheme's default */
} ds_httpc_url_t;

/* Creates a handle with opts (NULL: all defaults; the strings are copied).
 * Returns 0 and sets *h, or DS_EIO with the reason in errstr when curl
 * cannot be set up. Free with ds_httpc_destroy. */
int ds_httpc_new(ds_httpc_t **h, const ds_httpc_opts_t *opts, char *errstr, size_t errstr_size);
/* Closes the handle's connections and frees it. NULL-safe. No request may
 * be running on it. */
void ds_httpc_destroy(ds_httpc_t *h);

/* Sends req and reads the whole response into *resp, reusing an open
 * connection to the same host when there is one (a reused connection found
 * closed is replaced once, by curl). Returns 0 with resp->status set
 * whatever the status, or a negative DS_E* with the reason in errstr and
 * resp->status 0:
 * - DS_ETIMEDOUT: the connect or the whole-request timeout passed;
 * - DS_EINVAL: a malformed or non-http(s) URL, or a response body larger
 *   than opts.max_body;
 * - DS_ESHUTDOWN: ds_httpc_cancel was called;
 * - DS_EIO: anything else (resolving, connecting, TLS, the protocol). */
int ds_httpc_request(ds_httpc_t *h, const ds_httpc_req_t *req, ds_httpc_resp_t *resp, char *errstr,
                     size_t errstr_size);
/* Opens a connection to url's server (through the proxy when one is used)
 * and closes it, sending no request: a check that something listens.
 * Returns 0, or a DS_E* as ds_httpc_request does. */
int ds_httpc_connect(ds_httpc_t *h, const char *url, char *errstr, size_t errstr_size);
/* Makes the request running on h (within a few milliseconds) and every later
 * one fail with DS_ESHUTDOWN. Any thread; h stays valid until destroyed. */
void ds_httpc_cancel(ds_httpc_t *h);
/* The socket of the connection the last request used while it is still
 * open and kept for the next request, else -1. For tests and diagnostics. */
int ds_httpc_socket(ds_httpc_t *h);

/* Frees the response's buffers and zeroes it. NULL-safe. */
void ds_httpc_resp_clear(ds_httpc_resp_t *r);
/* The value of the first header called name (any case) of r, blanks around
 * it trimmed, copied into buf (cut to bufsz - 1 bytes): buf, or NULL when r
 * has no such header. */
const char *ds_httpc_header(const ds_httpc_resp_t *r, const char *name, char *buf, size_t bufsz);

/* Checks that url is an absolute http:// or https:// URL with a host, a
 * port from 1 to 65535 and no user name or password (those would end up in
 * logs), and fills *u. Returns 0, or DS_EINVAL with the reason in errstr. */
int ds_httpc_url_parse(const char *url, ds_httpc_url_t *u, char *errstr, size_t errstr_size);

#endif
