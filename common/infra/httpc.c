/* The HTTP client on libcurl; see httpc.h for the contract. Each handle runs
 * its easy handle on a multi handle of its own: the multi keeps the
 * connections between requests, and curl_multi_wakeup lets ds_httpc_cancel
 * interrupt a request that waits on the network. */
#include "infra/httpc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_BODY ((size_t)16 << 20)
/* The longest curl_multi_poll wait; a cancel wakes it earlier. */
#define POLL_MS 1000

struct ds_httpc_s {
    CURLM *multi;
    CURL *easy;
    struct curl_slist *hdrs; /* the running request's headers */
    ds_httpc_resp_t *resp;   /* the response being read */
    size_t max_body;
    bool too_big;
    int sock;
    atomic_bool cancelled;
    char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
    ds_httpc_t *h = arg;
    size_t len = size * n;
    if (len > h->max_body - h->resp->body.len) {
        h->too_big = true;
        return 0; /* fails the transfer with CURLE_WRITE_ERROR */
    }
    ds_sb_put(&h->resp->body, p, len);
    return len;
}

/* Keeps the header block of the last response only: a redirect or an
 * interim 1xx response starts a new one. */
static size_t on_header(char *p, size_t size, size_t n, void *arg) {
    ds_httpc_t *h = arg;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        h->resp->headers.len = 0;
        h->resp->body.len = 0;
    }
    ds_sb_put(&h->resp->headers, p, len);
    return len;
}

/* Trust: opts' CA file, else the OpenSSL variables, else curl's defaults
 * (the system's store). */
static CURLcode set_trust(CURL *e, const char *ca_file) {
    const char *file = ca_file, *dir = NULL;
    CURLcode rc = CURLE_OK;
    if (!file) {
        file = getenv("SSL_CERT_FILE");
        dir = getenv("SSL_CERT_DIR");
    }
    if (file && *file) rc = curl_easy_setopt(e, CURLOPT_CAINFO, file);
    if (!rc && ca_file) rc = curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    if (!rc && dir && *dir) rc = curl_easy_setopt(e, CURLOPT_CAPATH, dir);
    return rc;
}

static CURLcode set_options(ds_httpc_t *h, const ds_httpc_opts_t *o) {
    CURL *e = h->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                                        \
    if (!rc) rc = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, h->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, h);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, h);
    SET(CURLOPT_CONNECTTIMEOUT_MS,
        (long)(o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS));
    SET(CURLOPT_TIMEOUT_MS, (long)(o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS));
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->max_body);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, o->max_redirects > 0 ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, (long)o->max_redirects);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (o->proxy) SET(CURLOPT_PROXY, o->proxy);
    if (o->user_agent) SET(CURLOPT_USERAGENT, o->user_agent);
#undef SET
    if (!rc) rc = set_trust(e, o->ca_file);
    return rc;
}

int ds_httpc_new(ds_httpc_t **hp, const ds_httpc_opts_t *opts, char *errstr, size_t errstr_size) {
    static const ds_httpc_opts_t defaults = {0};
    const ds_httpc_opts_t *o = opts ? opts : &defaults;
    *hp = NULL;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        snprintf(errstr, errstr_size, "could not initialise libcurl: %s", curl_easy_strerror(global_rc));
        return DS_EIO;
    }
    ds_httpc_t *h = ds_calloc(1, sizeof *h);
    h->sock = -1;
    h->max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
    atomic_init(&h->cancelled, false);
    h->multi = curl_multi_init();
    h->easy = curl_easy_init();
    if (!h->multi || !h->easy) {
        snprintf(errstr, errstr_size, "could not create a curl handle");
        goto fail;
    }
    CURLcode rc = set_options(h, o);
    if (rc != CURLE_OK) {
        /* Strings are copied by curl_easy_setopt, so only an unsupported
         * option or a libcurl without TLS lands here. */
        snprintf(errstr, errstr_size, "could not set up the HTTP client: %s", curl_easy_strerror(rc));
        goto fail;
    }
    *hp = h;
    return 0;
fail:
    ds_httpc_destroy(h);
    return DS_EIO;
}

void ds_httpc_destroy(ds_httpc_t *h) {
    if (!h) return;
    /* The easy handle goes first: the connections it used are in the
     * multi's pool, which closes them. */
    curl_easy_cleanup(h->easy);
    curl_multi_cleanup(h->multi);
    curl_slist_free_all(h->hdrs);
    free(h);
}

void ds_httpc_cancel(ds_httpc_t *h) {
    atomic_store(&h->cancelled, true);
    curl_multi_wakeup(h->multi);
}

int ds_httpc_socket(ds_httpc_t *h) { return h->sock; }

void ds_httpc_resp_clear(ds_httpc_resp_t *r) {
    if (!r) return;
    free(r->headers.p);
    free(r->body.p);
    memset(r, 0, sizeof *r);
}

const char *ds_httpc_header(const ds_httpc_resp_t *r, const char *name, char *buf, size_t bufsz) {
    size_t nlen = strlen(name);
    const char *p = r->headers.p, *end = p ? p + r->headers.len : NULL;
    if (!p || bufsz == 0) return NULL;
    /* The first line is the status line; headers follow. */
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        p++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            size_t n = (size_t)(ve - v) < bufsz - 1 ? (size_t)(ve - v) : bufsz - 1;
            memcpy(buf, v, n);
            buf[n] = '\0';
            return buf;
        }
    }
    return NULL;
}

/* True when headers (NULL-terminated) has one called name (a "Name:" prefix). */
static bool has_header(const char *const *headers, const char *name) {
    size_t n = strlen(name);
    for (; headers && *headers; headers++)
        if (strncasecmp(*headers, name, n) == 0 && (*headers)[n] == ':') return true;
    return false;
}

/* The request's header list: the caller's, no Expect, and no Content-Type
 * but the caller's (curl would label a body as a form). */
static void set_headers(ds_httpc_t *h, const ds_httpc_req_t *req, bool with_body) {
    curl_slist_free_all(h->hdrs);
    h->hdrs = NULL;
    for (const char *const *p = req->headers; p && *p; p++) h->hdrs = curl_slist_append(h->hdrs, *p);
    if (!has_header(req->headers, "Expect")) h->hdrs = curl_slist_append(h->hdrs, "Expect:");
    if (with_body && !has_header(req->headers, "Content-Type"))
        h->hdrs = curl_slist_append(h->hdrs, "Content-Type:");
    if (!h->hdrs) ds_panic("out of memory");
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->hdrs);
}

/* Method and body. Returns whether a body is sent. Options stay set from
 * one request to the next, so each request sets all of them. */
static bool set_method(CURL *e, const ds_httpc_req_t *req) {
    const char *m = req->method ? req->method : req->body ? "POST" : "GET";
    bool get = strcmp(m, "GET") == 0, head = strcmp(m, "HEAD") == 0;
    const void *body = req->body;
    if (!body && !get && !head) body = ""; /* Content-Length: 0 */
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    if (head) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    bool plain = head || strcmp(m, body ? "POST" : "GET") == 0;
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, plain ? NULL : m);
    return body != NULL;
}

static int map_error(ds_httpc_t *h, CURLcode cc, char *errstr, size_t errstr_size) {
    const char *why = h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc);
    if (h->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(errstr, errstr_size, "response body is larger than %zu bytes", h->max_body);
        return DS_EINVAL;
    }
    if (cc == CURLE_ABORTED_BY_CALLBACK || atomic_load(&h->cancelled)) {
        snprintf(errstr, errstr_size, "request cancelled");
        return DS_ESHUTDOWN;
    }
    snprintf(errstr, errstr_size, "%s", why);
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT: return DS_ETIMEDOUT;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return DS_EINVAL;
    default: return DS_EIO;
    }
}

/* Runs the easy handle on the multi until it is done or cancelled. Returns
 * curl's result; h->sock gets the kept connection's socket or -1. */
static CURLcode run(ds_httpc_t *h) {
    CURLcode cc = CURLE_ABORTED_BY_CALLBACK;
    int running = 1;
    h->sock = -1;
    if (curl_multi_add_handle(h->multi, h->easy) != CURLM_OK) return CURLE_FAILED_INIT;
    while (!atomic_load(&h->cancelled)) {
        if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
            cc = CURLE_FAILED_INIT;
            break;
        }
        int left;
        CURLMsg *msg = curl_multi_info_read(h->multi, &left);
        if (msg && msg->msg == CURLMSG_DONE) {
            cc = msg->data.result;
            curl_socket_t s = CURL_SOCKET_BAD;
            /* Asked before the removal: the answer needs the multi. */
            if (cc == CURLE_OK && curl_easy_getinfo(h->easy, CURLINFO_ACTIVESOCKET, &s) == CURLE_OK)
                h->sock = s == CURL_SOCKET_BAD ? -1 : (int)s;
            break;
        }
        if (curl_multi_poll(h->multi, NULL, 0, POLL_MS, NULL) != CURLM_OK) {
            cc = CURLE_FAILED_INIT;
            break;
        }
    }
    curl_multi_remove_handle(h->multi, h->easy);
    return cc;
}

static void resp_reset(ds_httpc_resp_t *r) {
    r->status = 0;
    r->headers.len = 0;
    r->body.len = 0;
    ds_sb_put(&r->headers, "", 0);
    ds_sb_put(&r->body, "", 0);
}

int ds_httpc_request(ds_httpc_t *h, const ds_httpc_req_t *req, ds_httpc_resp_t *resp, char *errstr,
                     size_t errstr_size) {
    resp_reset(resp);
    h->resp = resp;
    h->too_big = false;
    h->errbuf[0] = '\0';
    curl_easy_setopt(h->easy, CURLOPT_URL, req->url);
    set_headers(h, req, set_method(h->easy, req));
    CURLcode cc = run(h);
    h->resp = NULL;
    if (cc != CURLE_OK) {
        resp_reset(resp);
        return map_error(h, cc, errstr, errstr_size);
    }
    long status = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    resp->status = (int)status;
    return 0;
}

int ds_httpc_connect(ds_httpc_t *h, const char *url, char *errstr, size_t errstr_size) {
    /* A copy of the handle, so the connection is closed with it and never
     * offered to a request. */
    CURL *e = curl_easy_duphandle(h->easy);
    if (!e) ds_panic("out of memory");
    h->errbuf[0] = '\0';
    h->too_big = false;
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* forgets the last request's body pointer */
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(e, CURLOPT_URL, url);
    CURLcode cc = atomic_load(&h->cancelled) ? CURLE_ABORTED_BY_CALLBACK : curl_easy_perform(e);
    curl_easy_cleanup(e);
    return cc == CURLE_OK ? 0 : map_error(h, cc, errstr, errstr_size);
}

/* ---------------------------------------------------------------- URLs -- */

static int url_part(CURLU *u, CURLUPart what, char **out) {
    return curl_url_get(u, what, out, 0) == CURLUE_OK ? 0 : -1;
}

int ds_httpc_url_parse(const char *url, ds_httpc_url_t *u, char *errstr, size_t errstr_size) {
    memset(u, 0, sizeof *u);
    if (strncasecmp(url, "https://", 8) != 0 && strncasecmp(url, "http://", 7) != 0) {
        snprintf(errstr, errstr_size, "URL must start with http:// or https://");
        return DS_EINVAL;
    }
    CURLU *cu = curl_url();
    char *host = NULL, *port = NULL, *user = NULL, *password = NULL;
    int rc = DS_EINVAL;
    if (!cu) ds_panic("out of memory");
    CURLUcode uc = curl_url_set(cu, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        snprintf(errstr, errstr_size, "invalid URL: %s", curl_url_strerror(uc));
        goto out;
    }
    if (url_part(cu, CURLUPART_USER, &user) == 0 || url_part(cu, CURLUPART_PASSWORD, &password) == 0) {
        snprintf(errstr, errstr_size, "URL has a user name or password");
        goto out;
    }
    if (url_part(cu, CURLUPART_HOST, &host) != 0 || !*host ||
        curl_url_get(cu, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        snprintf(errstr, errstr_size, "URL has no host");
        goto out;
    }
    u->port = atoi(port);
    if (u->port < 1 || u->port > 65535) {
        snprintf(errstr, errstr_size, "URL has an invalid port");
        goto out;
    }
    size_t hl = strlen(host);
    const char *h = host;
    if (hl >= 2 && host[0] == '[') { /* an IPv6 address */
        h++;
        hl -= 2;
    }
    if (hl >= sizeof u->host) {
        snprintf(errstr, errstr_size, "URL host is longer than %zu bytes", sizeof u->host - 1);
        goto out;
    }
    memcpy(u->host, h, hl);
    u->tls = strncasecmp(url, "https://", 8) == 0;
    rc = 0;
out:
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_free(password);
    curl_url_cleanup(cu);
    return rc;
}
