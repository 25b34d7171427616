/* Supabase session JWT verification: key sets from a JWKS (inline, file or
 * URL), HS256/RS256/ES256 signatures with OpenSSL, claim checks. See
 * jwt.h for the rules and why OpenSSL is used directly. */
#include "infra/jwt.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

#include "base/log.h"
#include "infra/httpc.h"

#define REFRESH_US (600LL * 1000000)     /* periodic JWKS refetch */
#define RETRY_MIN_US (30LL * 1000000)    /* first retry after a failed fetch */
#define KID_REFETCH_US (30LL * 1000000)  /* unknown-kid refetch rate limit */
#define FETCH_TIMEOUT_US (5LL * 1000000) /* whole fetch: resolve, connect, TLS, read */
#define MAX_JWKS_BYTES (1024 * 1024)

/* ------------------------------------------------------------ base64url -- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *ds_jwt_b64url_encode(const void *buf, size_t len) {
    const unsigned char *p = buf;
    char *out = ds_malloc(len / 3 * 4 + 5);
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = B64URL[w >> 18 & 63];
        out[o++] = B64URL[w >> 12 & 63];
        out[o++] = B64URL[w >> 6 & 63];
        out[o++] = B64URL[w & 63];
    }
    if (len - i == 1) {
        uint32_t w = (uint32_t)p[i] << 16;
        out[o++] = B64URL[w >> 18 & 63];
        out[o++] = B64URL[w >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t w = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = B64URL[w >> 18 & 63];
        out[o++] = B64URL[w >> 12 & 63];
        out[o++] = B64URL[w >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

static int b64url_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int ds_jwt_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen) {
    *out = NULL;
    *outlen = 0;
    if (len % 4 == 1) return DS_EINVAL;
    unsigned char *buf = ds_malloc(len / 4 * 3 + 3);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) goto bad;
        acc = (acc << 6 | (uint32_t)v) & 0x3fff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    /* Unused trailing bits must be zero: otherwise several texts decode to
     * the same bytes and a changed signature could still verify. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) goto bad;
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
bad:
    free(buf);
    return DS_EINVAL;
}

/* ------------------------------------------------------------- key sets -- */

enum { KTY_RSA = 1, KTY_EC = 2 };

typedef struct {
    char *kid; /* NULL when the JWK has none */
    int kty;
    EVP_PKEY *pkey;
} jwk_t;

/* Immutable once published; freed when the last reference goes. */
typedef struct {
    atomic_int refs;
    size_t n;
    jwk_t *keys;
} keyset_t;

static keyset_t *keyset_new(void) {
    keyset_t *ks = ds_calloc(1, sizeof *ks);
    atomic_init(&ks->refs, 1);
    return ks;
}

static void keyset_put(keyset_t *ks) {
    if (!ks || atomic_fetch_sub(&ks->refs, 1) != 1) return;
    for (size_t i = 0; i < ks->n; i++) {
        free(ks->keys[i].kid);
        EVP_PKEY_free(ks->keys[i].pkey);
    }
    free(ks->keys);
    free(ks);
}

static const jwk_t *keyset_find(const keyset_t *ks, const char *kid) {
    for (size_t i = 0; i < ks->n; i++)
        if (ks->keys[i].kid && strcmp(ks->keys[i].kid, kid) == 0) return &ks->keys[i];
    return NULL;
}

/* Decodes the base64url member name of jwk; NULL when absent or invalid. */
static unsigned char *jwk_bytes(json_t *jwk, const char *name, size_t *len) {
    const char *s = json_string_value(json_object_get(jwk, name));
    unsigned char *out;
    if (!s || !*s || ds_jwt_b64url_decode(s, strlen(s), &out, len) != 0) return NULL;
    return out;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld) {
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_from_jwk(json_t *jwk, const char **why) {
    size_t nlen = 0, elen = 0;
    unsigned char *n = jwk_bytes(jwk, "n", &nlen), *e = jwk_bytes(jwk, "e", &elen);
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;
    if (!n || !e || elen > 8) {
        *why = "n or e missing or not base64url";
        goto out;
    }
    bn_n = BN_bin2bn(n, (int)nlen, NULL);
    bn_e = BN_bin2bn(e, (int)elen, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (!bn_n || !bn_e || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)) {
        *why = "could not build the key parameters";
        goto out;
    }
    if (!(pkey = pkey_fromdata("RSA", bld))) {
        *why = "OpenSSL refused the key";
        goto out;
    }
    if (EVP_PKEY_get_bits(pkey) < 2048) {
        *why = "RSA key shorter than 2048 bits";
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return pkey;
}

static EVP_PKEY *ec_from_jwk(json_t *jwk, const char **why) {
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    size_t xlen = 0, ylen = 0;
    unsigned char *x = NULL, *y = NULL, pub[65];
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *check = NULL;
    if (!crv || strcmp(crv, "P-256") != 0) {
        *why = "crv is not P-256";
        goto out;
    }
    x = jwk_bytes(jwk, "x", &xlen);
    y = jwk_bytes(jwk, "y", &ylen);
    if (!x || !y || xlen != 32 || ylen != 32) {
        *why = "x or y missing or not 32 bytes";
        goto out;
    }
    pub[0] = 0x04; /* uncompressed point */
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub)) {
        *why = "could not build the key parameters";
        goto out;
    }
    if (!(pkey = pkey_fromdata("EC", bld))) {
        *why = "OpenSSL refused the key (point not on the curve?)";
        goto out;
    }
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1) {
        *why = "point is not a valid P-256 public key";
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(check);
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return pkey;
}

/* Loads one JWK into k. Returns 0, or -1 with why set (the key is skipped). */
static int jwk_load(json_t *jwk, jwk_t *k, const char **why) {
    memset(k, 0, sizeof *k);
    if (!json_is_object(jwk)) {
        *why = "not a JSON object";
        return -1;
    }
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    const char *alg = json_string_value(json_object_get(jwk, "alg"));
    json_t *kid = json_object_get(jwk, "kid");
    if (kid && !json_is_string(kid)) {
        *why = "kid is not a string";
        return -1;
    }
    if (use && strcmp(use, "sig") != 0) {
        *why = "use is not sig";
        return -1;
    }
    if (!kty) {
        *why = "no kty";
        return -1;
    }
    if (strcmp(kty, "RSA") == 0) {
        if (alg && strcmp(alg, "RS256") != 0) {
            *why = "RSA key for an alg other than RS256";
            return -1;
        }
        k->kty = KTY_RSA;
        k->pkey = rsa_from_jwk(jwk, why);
    } else if (strcmp(kty, "EC") == 0) {
        if (alg && strcmp(alg, "ES256") != 0) {
            *why = "EC key for an alg other than ES256";
            return -1;
        }
        k->kty = KTY_EC;
        k->pkey = ec_from_jwk(jwk, why);
    } else {
        *why = "kty is neither RSA nor EC";
        return -1;
    }
    if (!k->pkey) {
        ERR_clear_error();
        return -1;
    }
    if (kid) k->kid = ds_strdup(json_string_value(kid));
    return 0;
}

/* Parses a JWKS ({"keys": [...]}) or a single JWK. Unusable keys are
 * skipped with a warning. Returns 0 and a new key set, or DS_EINVAL. */
static int keyset_parse(const char *text, size_t len, keyset_t **out, char *errstr, size_t errstr_size) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys;
    *out = NULL;
    if (!json_is_object(root)) {
        snprintf(errstr, errstr_size, "JWKS is not a JSON object: %s", root ? "wrong type" : jerr.text);
        json_decref(root);
        return DS_EINVAL;
    }
    keys = json_object_get(root, "keys");
    bool single = !keys && json_object_get(root, "kty");
    if (!single && !json_is_array(keys)) {
        snprintf(errstr, errstr_size, "JWKS has no \"keys\" array");
        json_decref(root);
        return DS_EINVAL;
    }
    size_t n = single ? 1 : json_array_size(keys);
    keyset_t *ks = keyset_new();
    ks->keys = ds_calloc(n, sizeof *ks->keys);
    for (size_t i = 0; i < n; i++) {
        json_t *jwk = single ? root : json_array_get(keys, i);
        const char *why = "invalid";
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        jwk_t k;
        if (jwk_load(jwk, &k, &why) != 0) {
            ds_warn("skipping JWK %zu (kid %s): %s", i, kid ? kid : "none", why);
            continue;
        }
        if (k.kid && keyset_find(ks, k.kid)) {
            ds_warn("skipping JWK %zu: duplicate kid %s", i, k.kid);
            free(k.kid);
            EVP_PKEY_free(k.pkey);
            continue;
        }
        ks->keys[ks->n++] = k;
    }
    json_decref(root);
    *out = ks;
    return 0;
}

/* ------------------------------------------------------------- verifier -- */

enum { SRC_NONE, SRC_INLINE, SRC_FILE, SRC_URL };

/* Identity of a file's content as stat() shows it. */
typedef struct {
    bool missing;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} fsig_t;

struct ds_jwt_verifier_s {
    int src;
    unsigned char *secret;
    size_t secret_len;

    pthread_mutex_t mu; /* guards everything below */
    keyset_t *keys;     /* never NULL */

    /* SRC_FILE */
    char *path;
    fsig_t fsig;
    bool fsig_valid;
    pthread_mutex_t reload_mu; /* one reload at a time */

    /* SRC_URL */
    char *url;
    char *origin; /* scheme://host:port, for the log */
    ds_httpc_t *httpc;
    pthread_t thread;
    bool thread_started;
    pthread_cond_t cond;      /* wakes the fetch thread */
    pthread_cond_t done_cond; /* first fetch attempt finished */
    bool stop, wake, first_done;
    int64_t last_kid_refetch_us; /* monotonic; 0: never */
    char last_err[320];
};

static keyset_t *keys_get(ds_jwt_verifier_t *v) {
    pthread_mutex_lock(&v->mu);
    keyset_t *ks = v->keys;
    atomic_fetch_add(&ks->refs, 1);
    pthread_mutex_unlock(&v->mu);
    return ks;
}

static void keys_swap(ds_jwt_verifier_t *v, keyset_t *ks) {
    pthread_mutex_lock(&v->mu);
    keyset_t *old = v->keys;
    v->keys = ks;
    pthread_mutex_unlock(&v->mu);
    keyset_put(old);
}

size_t ds_jwt_verifier_key_count(ds_jwt_verifier_t *v) {
    keyset_t *ks = keys_get(v);
    size_t n = ks->n;
    keyset_put(ks);
    return n;
}

bool ds_jwt_verifier_has_secret(const ds_jwt_verifier_t *v) { return v->secret != NULL; }

/* --------------------------------------------------------------- files -- */

static fsig_t fsig_of(const struct stat *st) {
    fsig_t s = {0};
    s.dev = st->st_dev;
    s.ino = st->st_ino;
    s.size = st->st_size;
    s.mtime = st->st_mtim;
    return s;
}

static bool fsig_eq(const fsig_t *a, const fsig_t *b) {
    if (a->missing || b->missing) return a->missing == b->missing;
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Reads a whole regular file (at most MAX_JWKS_BYTES) and the stat() of its
 * content; *stable is false when it changed while being read. */
static int read_jwks_file(const char *path, char **buf, size_t *len, fsig_t *sig, bool *stable, char *errstr,
                          size_t errstr_size) {
    struct stat st, st2;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *buf = NULL;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(errstr, errstr_size, "could not open JWKS file %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return DS_EIO;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > MAX_JWKS_BYTES) {
        snprintf(errstr, errstr_size, "JWKS file %s is not a regular file of at most %d bytes", path,
                 MAX_JWKS_BYTES);
        close(fd);
        return DS_EINVAL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *b = ds_malloc(cap + 1);
    for (;;) {
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            snprintf(errstr, errstr_size, "could not read JWKS file %s: %s", path, strerror(errno));
            free(b);
            close(fd);
            return DS_EIO;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n == cap) { /* grew while we read: read no more than the limit */
            if (cap > MAX_JWKS_BYTES) break;
            cap *= 2;
            b = ds_realloc(b, cap + 1);
        }
    }
    b[n] = '\0';
    *stable = fstat(fd, &st2) == 0 && st2.st_size == st.st_size && st2.st_mtim.tv_sec == st.st_mtim.tv_sec &&
              st2.st_mtim.tv_nsec == st.st_mtim.tv_nsec && (off_t)n == st.st_size;
    close(fd);
    *sig = fsig_of(&st);
    *buf = b;
    *len = n;
    return 0;
}

/* Re-reads the JWKS file when its stat() changed. A file that cannot be read
 * or parsed leaves the last good key set in place; its stat() is recorded
 * anyway so a broken file is reported once, not on every request. */
static void maybe_reload_file(ds_jwt_verifier_t *v) {
    struct stat st;
    fsig_t now = {.missing = true};
    if (stat(v->path, &st) == 0) now = fsig_of(&st);
    pthread_mutex_lock(&v->mu);
    bool same = v->fsig_valid && fsig_eq(&now, &v->fsig);
    pthread_mutex_unlock(&v->mu);
    if (same) return;

    pthread_mutex_lock(&v->reload_mu);
    pthread_mutex_lock(&v->mu);
    same = v->fsig_valid && fsig_eq(&now, &v->fsig);
    pthread_mutex_unlock(&v->mu);
    if (!same) {
        char err[256], *buf = NULL;
        size_t len = 0;
        fsig_t sig = now;
        bool stable = true;
        keyset_t *ks = NULL;
        int rc = now.missing ? DS_EIO : read_jwks_file(v->path, &buf, &len, &sig, &stable, err, sizeof err);
        if (now.missing) snprintf(err, sizeof err, "JWKS file %s is missing", v->path);
        if (rc == 0 && stable) rc = keyset_parse(buf, len, &ks, err, sizeof err);
        if (rc == 0 && !stable) {
            /* Being written right now: look again on the next request. */
            free(buf);
            pthread_mutex_unlock(&v->reload_mu);
            return;
        }
        free(buf);
        if (rc == 0) {
            ds_info("reloaded JWKS file %s: %zu keys", v->path, ks->n);
            keys_swap(v, ks);
        } else {
            ds_warn("keeping the previous JWT keys: %s", err);
        }
        pthread_mutex_lock(&v->mu);
        v->fsig = sig;
        v->fsig_valid = true;
        pthread_mutex_unlock(&v->mu);
    }
    pthread_mutex_unlock(&v->reload_mu);
}

/* ---------------------------------------------------------- URL source -- */

/* GETs the JWKS URL into resp. Returns 0, or a DS_E with errstr set. */
static int http_get(ds_jwt_verifier_t *v, ds_httpc_resp_t *resp, char *errstr, size_t errstr_size) {
    static const char *const headers[] = {"Accept: application/json", NULL};
    ds_httpc_req_t req = {.url = v->url, .headers = headers};
    char why[256];
    int rc = ds_httpc_request(v->httpc, &req, resp, why, sizeof why);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "could not fetch the JWKS: %s", why);
    } else if (resp->status != 200) {
        snprintf(errstr, errstr_size, "JWKS request answered HTTP %d", resp->status);
        rc = DS_EIO;
    }
    return rc;
}

/* One fetch: GET, parse, swap. Returns 0 or a DS_E with last_err set. */
static int fetch_once(ds_jwt_verifier_t *v) {
    char err[320] = "";
    ds_httpc_resp_t resp = {0};
    keyset_t *ks = NULL;
    int rc = http_get(v, &resp, err, sizeof err);
    if (rc == 0) rc = keyset_parse(resp.body.p, resp.body.len, &ks, err, sizeof err);
    ds_httpc_resp_clear(&resp);
    if (rc == 0) {
        ds_debug("fetched JWKS from %s: %zu keys", v->origin, ks->n);
        keys_swap(v, ks);
    }
    pthread_mutex_lock(&v->mu);
    snprintf(v->last_err, sizeof v->last_err, "%s", rc == 0 ? "" : err);
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static void mono_deadline(struct timespec *ts, int64_t at_us) {
    ts->tv_sec = (time_t)(at_us / 1000000);
    ts->tv_nsec = (long)(at_us % 1000000) * 1000;
}

/* The fetch thread: fetches at start, every REFRESH_US after a success, with
 * backoff after a failure, and when ds_jwt_verify asks (unknown kid). */
static void *fetch_main(void *arg) {
    ds_jwt_verifier_t *v = arg;
    sigset_t all;
    /* Signals go to the service's own threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    int64_t next = 0, backoff = RETRY_MIN_US;
    pthread_mutex_lock(&v->mu);
    while (!v->stop) {
        int64_t now = ds_mono_us();
        if (!v->wake && now < next) {
            struct timespec ts;
            mono_deadline(&ts, next);
            pthread_cond_timedwait(&v->cond, &v->mu, &ts);
            continue;
        }
        v->wake = false;
        pthread_mutex_unlock(&v->mu);
        int rc = fetch_once(v);
        pthread_mutex_lock(&v->mu);
        if (rc == 0) {
            next = ds_mono_us() + REFRESH_US;
            backoff = RETRY_MIN_US;
        } else {
            if (v->first_done && rc != DS_ESHUTDOWN)
                ds_warn("keeping the previous JWT keys: %s (retry in %llds)", v->last_err,
                        (long long)(backoff / 1000000));
            next = ds_mono_us() + backoff;
            backoff = backoff * 2 > REFRESH_US ? REFRESH_US : backoff * 2;
        }
        if (!v->first_done) {
            v->first_done = true;
            pthread_cond_broadcast(&v->done_cond);
        }
    }
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

/* Asks the fetch thread for a refetch, at most once per KID_REFETCH_US. */
static void request_refetch(ds_jwt_verifier_t *v) {
    if (v->src != SRC_URL) return;
    int64_t now = ds_mono_us();
    pthread_mutex_lock(&v->mu);
    if (v->last_kid_refetch_us == 0 || now - v->last_kid_refetch_us >= KID_REFETCH_US) {
        v->last_kid_refetch_us = now;
        v->wake = true;
        pthread_cond_signal(&v->cond);
    }
    pthread_mutex_unlock(&v->mu);
}

/* -------------------------------------------------------- construction -- */

/* Checks the URL and sets up the client the fetch thread uses. */
static int url_source_init(ds_jwt_verifier_t *v, const char *url, char *errstr, size_t errstr_size) {
    ds_httpc_url_t u;
    char why[160];
    if (ds_httpc_url_parse(url, &u, why, sizeof why) != 0) {
        snprintf(errstr, errstr_size, "invalid JWKS URL: %s", why);
        return DS_EINVAL;
    }
    bool v6 = strchr(u.host, ':') != NULL;
    v->url = ds_strdup(url);
    v->origin =
        ds_asprintf("%s://%s%s%s:%d", u.tls ? "https" : "http", v6 ? "[" : "", u.host, v6 ? "]" : "", u.port);
    if (!u.tls && strcmp(u.host, "127.0.0.1") != 0 && strcmp(u.host, "::1") != 0 &&
        strcasecmp(u.host, "localhost") != 0)
        ds_warn("JWKS URL uses plain http to %s: keys can be replaced in transit", u.host);
    ds_httpc_opts_t o = {.connect_timeout_ms = FETCH_TIMEOUT_US / 1000,
                         .timeout_ms = FETCH_TIMEOUT_US / 1000,
                         .max_body = MAX_JWKS_BYTES,
                         .user_agent = "dealscore-jwks/1"};
    if (ds_httpc_new(&v->httpc, &o, why, sizeof why) != 0) {
        snprintf(errstr, errstr_size, "could not set up the JWKS client: %s", why);
        return DS_EINVAL;
    }
    return 0;
}

int ds_jwt_verifier_new(ds_jwt_verifier_t **vp, const char *jwks, const char *hs256_secret, char *errstr,
                        size_t errstr_size) {
    *vp = NULL;
    if (jwks)
        while (isspace((unsigned char)*jwks)) jwks++;
    if (jwks && !*jwks) jwks = NULL;
    if (hs256_secret && !*hs256_secret) hs256_secret = NULL;
    if (!jwks && !hs256_secret) {
        snprintf(errstr, errstr_size, "no JWKS and no HS256 secret configured");
        return DS_EINVAL;
    }
    if (hs256_secret && strlen(hs256_secret) < DS_JWT_MIN_SECRET_LEN) {
        snprintf(errstr, errstr_size, "the HS256 secret is shorter than %d bytes", DS_JWT_MIN_SECRET_LEN);
        return DS_EINVAL;
    }

    ds_jwt_verifier_t *v = ds_calloc(1, sizeof *v);
    pthread_condattr_t ca;
    int rc = 0;
    pthread_mutex_init(&v->mu, NULL);
    pthread_mutex_init(&v->reload_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->cond, &ca);
    pthread_cond_init(&v->done_cond, &ca);
    pthread_condattr_destroy(&ca);
    v->keys = keyset_new();
    if (hs256_secret) {
        v->secret_len = strlen(hs256_secret);
        v->secret = (unsigned char *)ds_strndup(hs256_secret, v->secret_len);
    }

    if (!jwks) {
        v->src = SRC_NONE;
    } else if (jwks[0] == '{') {
        keyset_t *ks;
        v->src = SRC_INLINE;
        if ((rc = keyset_parse(jwks, strlen(jwks), &ks, errstr, errstr_size)) != 0) goto fail;
        keys_swap(v, ks);
    } else if (strncasecmp(jwks, "http://", 7) == 0 || strncasecmp(jwks, "https://", 8) == 0) {
        v->src = SRC_URL;
        if ((rc = url_source_init(v, jwks, errstr, errstr_size)) != 0) goto fail;
        if (pthread_create(&v->thread, NULL, fetch_main, v) != 0) {
            snprintf(errstr, errstr_size, "could not start the JWKS fetch thread");
            rc = DS_EINVAL;
            goto fail;
        }
        v->thread_started = true;
        struct timespec ts;
        mono_deadline(&ts, ds_mono_us() + FETCH_TIMEOUT_US + 1000000);
        pthread_mutex_lock(&v->mu);
        while (!v->first_done)
            if (pthread_cond_timedwait(&v->done_cond, &v->mu, &ts) == ETIMEDOUT) break;
        if (v->keys->n == 0)
            ds_warn("no JWT keys from %s yet (%s); retrying in the background", v->origin,
                    v->last_err[0] ? v->last_err : "fetch still running or empty key set");
        pthread_mutex_unlock(&v->mu);
    } else {
        char *buf;
        size_t len;
        fsig_t sig;
        bool stable;
        keyset_t *ks;
        v->src = SRC_FILE;
        v->path = ds_strdup(jwks);
        if ((rc = read_jwks_file(v->path, &buf, &len, &sig, &stable, errstr, errstr_size)) != 0) {
            rc = DS_EINVAL;
            goto fail;
        }
        rc = keyset_parse(buf, len, &ks, errstr, errstr_size);
        free(buf);
        if (rc != 0) goto fail;
        keys_swap(v, ks);
        if (stable) {
            v->fsig = sig;
            v->fsig_valid = true;
        }
    }
    if (v->src != SRC_NONE && v->src != SRC_URL && v->keys->n == 0)
        ds_warn("the JWKS has no usable keys: RS256/ES256 tokens will be refused");
    *vp = v;
    return 0;
fail:
    ds_jwt_verifier_destroy(v);
    return rc;
}

void ds_jwt_verifier_destroy(ds_jwt_verifier_t *v) {
    if (!v) return;
    if (v->thread_started) {
        pthread_mutex_lock(&v->mu);
        v->stop = true;
        pthread_cond_signal(&v->cond);
        pthread_mutex_unlock(&v->mu);
        ds_httpc_cancel(v->httpc); /* a fetch in progress returns at once */
        pthread_join(v->thread, NULL);
    }
    ds_httpc_destroy(v->httpc);
    free(v->url);
    free(v->origin);
    keyset_put(v->keys);
    if (v->secret) {
        OPENSSL_cleanse(v->secret, v->secret_len);
        free(v->secret);
    }
    free(v->path);
    pthread_cond_destroy(&v->cond);
    pthread_cond_destroy(&v->done_cond);
    pthread_mutex_destroy(&v->reload_mu);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

/* -------------------------------------------------------- verification -- */

void ds_jwt_claims_clear(ds_jwt_claims_t *c) {
    if (!c) return;
    free(c->sub);
    free(c->role);
    free(c->email);
    free(c->org_id);
    free(c->claims_json);
    memset(c, 0, sizeof *c);
}

/* A JSON number as whole seconds, clamped far from int64 overflow. */
static int64_t json_seconds(const json_t *j) {
    const double lim = 4e18;
    if (json_is_integer(j)) {
        json_int_t i = json_integer_value(j);
        return i > (json_int_t)lim ? (int64_t)lim : i < -(json_int_t)lim ? -(int64_t)lim : i;
    }
    double d = floor(json_real_value(j));
    return d > lim ? (int64_t)lim : d < -lim ? -(int64_t)lim : (int64_t)d;
}

static bool aud_ok(const json_t *aud) {
    if (json_is_string(aud)) return strcmp(json_string_value(aud), "authenticated") == 0;
    if (!json_is_array(aud)) return false;
    for (size_t i = 0; i < json_array_size(aud); i++) {
        const char *s = json_string_value(json_array_get(aud, i));
        if (s && strcmp(s, "authenticated") == 0) return true;
    }
    return false;
}

/* Checks the claims and fills out. Returns NULL or the reason. */
static const char *check_claims(json_t *p, int64_t now, ds_jwt_claims_t *out) {
    json_t *exp = json_object_get(p, "exp"), *nbf = json_object_get(p, "nbf"),
           *iat = json_object_get(p, "iat");
    if (!exp) return "exp is missing";
    if (!json_is_number(exp)) return "exp is not a number";
    if (nbf && !json_is_number(nbf)) return "nbf is not a number";
    if (iat && !json_is_number(iat)) return "iat is not a number";
    int64_t e = json_seconds(exp);
    if (e + DS_JWT_LEEWAY_S < now) return "token expired";
    if (nbf && json_seconds(nbf) - DS_JWT_LEEWAY_S > now) return "token not yet valid";
    if (iat && json_seconds(iat) - DS_JWT_LEEWAY_S > now) return "token issued in the future";
    if (!aud_ok(json_object_get(p, "aud"))) return "aud is not authenticated";
    const char *role = json_string_value(json_object_get(p, "role"));
    if (!role || strcmp(role, "authenticated") != 0) return "role is not authenticated";
    const char *sub = json_string_value(json_object_get(p, "sub"));
    if (!sub || !*sub) return "sub is missing";

    out->sub = ds_strdup(sub);
    out->role = ds_strdup(role);
    out->exp = e;
    const char *email = json_string_value(json_object_get(p, "email"));
    if (email && *email) out->email = ds_strdup(email);
    out->is_anonymous = json_is_true(json_object_get(p, "is_anonymous"));
    json_t *am = json_object_get(p, "app_metadata");
    if (json_is_object(am)) {
        const char *org = json_string_value(json_object_get(am, "org_id"));
        if (org && ds_uuid_valid(org)) {
            out->org_id = ds_strdup(org);
            for (char *c = out->org_id; *c; c++) *c = (char)tolower((unsigned char)*c);
        }
        json_t *sc = json_object_get(am, "account_scoped");
        const char *scs = json_string_value(sc);
        out->account_scoped =
            sc && !json_is_null(sc) && !json_is_false(sc) && !(scs && strcmp(scs, "false") == 0);
    }
    return NULL;
}

/* Verifies an ES256 raw r||s signature (JWS) by converting it to the DER
 * form OpenSSL verifies. */
static bool es256_to_der(const unsigned char *sig, unsigned char **der, int *derlen) {
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    *der = NULL;
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return false;
    }
    *derlen = i2d_ECDSA_SIG(es, der);
    ECDSA_SIG_free(es);
    return *derlen > 0;
}

static bool pkey_verify(EVP_PKEY *pkey, const unsigned char *sig, size_t siglen, const char *input,
                        size_t inlen) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
              EVP_DigestVerify(md, sig, siglen, (const unsigned char *)input, inlen) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

enum { ALG_HS256 = 1, ALG_RS256, ALG_ES256 };

/* A token being verified: its three decoded parts and what the header
 * says. */
typedef struct {
    const char *token;
    size_t inlen; /* of the signing input "header.payload" at token */
    unsigned char *hdr, *pay, *sig, *der;
    size_t hlen, plen, slen;
    json_t *h, *p;
    int alg;
    const char *algs, *kid; /* in h */
    keyset_t *ks;
} jws_t;

static void jws_free(jws_t *t) {
    keyset_put(t->ks);
    json_decref(t->h);
    json_decref(t->p);
    free(t->hdr);
    free(t->pay);
    free(t->sig);
    OPENSSL_free(t->der);
}

/* Splits the compact serialization and decodes its three parts. Returns
 * NULL or the reason. */
static const char *decode_parts(jws_t *t, const char *token) {
    size_t len = token ? strnlen(token, DS_JWT_MAX_TOKEN_LEN + 1) : 0;
    if (len == 0) return "malformed token: empty";
    if (len > DS_JWT_MAX_TOKEN_LEN) return "malformed token: too long";
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return "malformed token: not three parts";
    if (ds_jwt_b64url_decode(token, (size_t)(d1 - token), &t->hdr, &t->hlen) != 0 ||
        ds_jwt_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &t->pay, &t->plen) != 0 ||
        ds_jwt_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), &t->sig, &t->slen) != 0)
        return "malformed token: invalid base64url";
    t->token = token;
    t->inlen = (size_t)(d2 - token);
    return NULL;
}

/* The header: which algorithm, which key. Returns NULL or the reason. */
static const char *read_header(jws_t *t) {
    t->h =
        memchr(t->hdr, 0, t->hlen) ? NULL : json_loadb((char *)t->hdr, t->hlen, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(t->h)) return "malformed token: header is not a JSON object";
    const char *algs = json_string_value(json_object_get(t->h, "alg"));
    json_t *kidj = json_object_get(t->h, "kid"), *typ = json_object_get(t->h, "typ");
    if (!algs) return "malformed token: header has no alg";
    if (strcasecmp(algs, "none") == 0) return "alg none is not accepted";
    if (strcmp(algs, "HS256") == 0)
        t->alg = ALG_HS256;
    else if (strcmp(algs, "RS256") == 0)
        t->alg = ALG_RS256;
    else if (strcmp(algs, "ES256") == 0)
        t->alg = ALG_ES256;
    else
        return "unsupported alg";
    if (json_object_get(t->h, "crit")) return "crit header is not supported";
    if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
        return "typ is not JWT";
    if (kidj && !json_is_string(kidj)) return "malformed token: kid is not a string";
    t->algs = algs;
    t->kid = json_string_value(kidj);
    return NULL;
}

/* The HMAC over the signing input with the shared secret. */
static const char *verify_hs256(ds_jwt_verifier_t *v, jws_t *t) {
    if (!v->secret) return "HS256 is not accepted: no shared secret configured";
    if (t->kid && v->src != SRC_NONE) {
        /* An HS256 token naming one of the asymmetric keys is the classic
         * confusion attack (public key used as HMAC secret). */
        if (v->src == SRC_FILE) maybe_reload_file(v);
        t->ks = keys_get(v);
        if (keyset_find(t->ks, t->kid)) return "alg does not match the key type";
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), v->secret, (int)v->secret_len, (const unsigned char *)t->token, t->inlen, mac,
              &maclen) ||
        t->slen != maclen || CRYPTO_memcmp(mac, t->sig, maclen) != 0)
        return "bad signature";
    return NULL;
}

/* An RS256 or ES256 signature with the JWKS key the token names (or the
 * only one); an unknown kid asks for a refetch. */
static const char *verify_jwks(ds_jwt_verifier_t *v, jws_t *t) {
    if (v->src == SRC_NONE) return "RS256 and ES256 are not accepted: no JWKS configured";
    if (v->src == SRC_FILE) maybe_reload_file(v);
    keyset_t *ks = t->ks = keys_get(v);
    const jwk_t *k;
    if (ks->n == 0) {
        request_refetch(v);
        return "no signing keys available";
    }
    if (t->kid) {
        if (!(k = keyset_find(ks, t->kid))) {
            request_refetch(v);
            return "unknown kid";
        }
    } else if (ks->n == 1) {
        k = &ks->keys[0];
    } else {
        return "token has no kid and several keys are configured";
    }
    if (k->kty != (t->alg == ALG_RS256 ? KTY_RSA : KTY_EC)) return "alg does not match the key type";
    const unsigned char *vs = t->sig;
    size_t vslen = t->slen;
    if (t->alg == ALG_ES256) {
        int derlen = 0;
        if (t->slen != 64 || !es256_to_der(t->sig, &t->der, &derlen)) return "bad signature encoding";
        vs = t->der;
        vslen = (size_t)derlen;
    }
    if (!pkey_verify(k->pkey, vs, vslen, t->token, t->inlen)) return "bad signature";
    return NULL;
}

/* The payload's claims into out (which takes the payload's text). */
static const char *read_claims(jws_t *t, int64_t now_s, ds_jwt_claims_t *out) {
    t->p =
        memchr(t->pay, 0, t->plen) ? NULL : json_loadb((char *)t->pay, t->plen, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(t->p)) return "malformed token: payload is not a JSON object";
    const char *why = check_claims(t->p, now_s, out);
    if (why) return why;
    snprintf(out->alg, sizeof out->alg, "%s", t->algs);
    out->claims_json = (char *)t->pay; /* NUL-terminated by the decoder */
    t->pay = NULL;
    return NULL;
}

int ds_jwt_verify(ds_jwt_verifier_t *v, const char *token, int64_t now_s, ds_jwt_claims_t *out, char *errstr,
                  size_t errstr_size) {
    ds_assert(v);
    memset(out, 0, sizeof *out);
    jws_t t = {0};
    const char *why = decode_parts(&t, token);
    if (!why) why = read_header(&t);
    /* The signature over the ASCII "header.payload", before the payload is
     * parsed at all. */
    if (!why) why = t.alg == ALG_HS256 ? verify_hs256(v, &t) : verify_jwks(v, &t);
    if (!why) why = read_claims(&t, now_s, out);
    if (why) {
        ds_jwt_claims_clear(out);
        snprintf(errstr, errstr_size, "%s", why);
    }
    jws_free(&t);
    return why ? DS_EAUTH : 0;
}

/* ------------------------------------------------------- HTTP helpers -- */

const char *ds_jwt_bearer_token(const char *a) {
    if (!a) return NULL;
    while (*a == ' ' || *a == '\t') a++;
    if (strncasecmp(a, "bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t')) return NULL;
    a += 6;
    while (*a == ' ' || *a == '\t') a++;
    return *a ? a : NULL;
}

void ds_jwt_www_authenticate(const char *reason, char *buf, size_t bufsz) {
    if (!reason) {
        snprintf(buf, bufsz, "Bearer realm=\"dealscore\"");
        return;
    }
    char clean[128];
    size_t i = 0;
    for (; reason[i] && i < sizeof clean - 1; i++) {
        unsigned char c = (unsigned char)reason[i];
        clean[i] = c == '"' || c == '\\' ? '\'' : c < 0x20 || c >= 0x7f ? ' ' : (char)c;
    }
    clean[i] = '\0';
    snprintf(buf, bufsz, "Bearer realm=\"dealscore\", error=\"invalid_token\", error_description=\"%s\"",
             clean);
}

/* ------------------------------------------------------------- signing -- */

static bool is_json_object(const char *s) {
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
    bool ok = json_is_object(j);
    json_decref(j);
    return ok;
}

/* "b64(header).b64(claims)" as a new string. */
static char *signing_input(const char *header, const char *claims) {
    char *h = ds_jwt_b64url_encode(header, strlen(header));
    char *c = ds_jwt_b64url_encode(claims, strlen(claims));
    char *in = ds_asprintf("%s.%s", h, c);
    free(h);
    free(c);
    return in;
}

static char *join_signature(char *input, const unsigned char *sig, size_t siglen) {
    char *s = ds_jwt_b64url_encode(sig, siglen);
    char *tok = ds_asprintf("%s.%s", input, s);
    free(s);
    free(input);
    return tok;
}

int ds_jwt_sign_hs256(const char *secret, const char *claims_json, char **out) {
    *out = NULL;
    if (!secret || !claims_json || !is_json_object(claims_json)) return DS_EINVAL;
    char *in = signing_input("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims_json);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)in, strlen(in), mac, &maclen)) {
        free(in);
        return DS_EINVAL;
    }
    *out = join_signature(in, mac, maclen);
    return 0;
}

static bool is_p256(EVP_PKEY *key) {
    char group[64];
    return EVP_PKEY_is_a(key, "EC") &&
           EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) == 1 &&
           strcmp(group, "prime256v1") == 0;
}

int ds_jwt_sign_with_key(EVP_PKEY *key, const char *alg, const char *kid, const char *claims_json,
                         char **out) {
    *out = NULL;
    if (!key || !alg || !claims_json || !is_json_object(claims_json)) return DS_EINVAL;
    bool es = strcmp(alg, "ES256") == 0;
    if (es ? !is_p256(key) : strcmp(alg, "RS256") != 0 || !EVP_PKEY_is_a(key, "RSA")) return DS_EINVAL;
    json_t *hj = json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT");
    if (kid) json_object_set_new(hj, "kid", json_string(kid));
    char *header = json_dumps(hj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hj);
    char *in = signing_input(header, claims_json);
    free(header);

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *sig = NULL, raw[64];
    size_t siglen = 0;
    int rc = DS_EINVAL;
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (unsigned char *)in, strlen(in)) != 1)
        goto out;
    sig = ds_malloc(siglen);
    if (EVP_DigestSign(md, sig, &siglen, (unsigned char *)in, strlen(in)) != 1) goto out;
    if (es) {
        /* OpenSSL gives DER; JWS wants r and s as two 32-byte numbers. */
        const unsigned char *pp = sig;
        ECDSA_SIG *esig = d2i_ECDSA_SIG(NULL, &pp, (long)siglen);
        const BIGNUM *r, *s;
        if (!esig) goto out;
        ECDSA_SIG_get0(esig, &r, &s);
        bool ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
        ECDSA_SIG_free(esig);
        if (!ok) goto out;
        *out = join_signature(in, raw, 64);
    } else {
        *out = join_signature(in, sig, siglen);
    }
    in = NULL;
    rc = 0;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    free(sig);
    free(in);
    return rc;
}

/* base64url of a big number, left-padded with zeros to pad bytes (0: none). */
static char *bn_b64url(const BIGNUM *bn, int pad) {
    int n = pad ? pad : BN_num_bytes(bn);
    unsigned char *b = ds_malloc((size_t)n + 1);
    char *s = NULL;
    if (BN_bn2binpad(bn, b, n) == n) s = ds_jwt_b64url_encode(b, (size_t)n);
    free(b);
    return s;
}

int ds_jwt_public_jwk(EVP_PKEY *key, const char *kid, char **out) {
    BIGNUM *a = NULL, *b = NULL;
    char *sa = NULL, *sb = NULL;
    json_t *j = NULL;
    *out = NULL;
    if (!key) return DS_EINVAL;
    if (EVP_PKEY_is_a(key, "RSA")) {
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &a) == 1 &&
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &b) == 1 && (sa = bn_b64url(a, 0)) &&
            (sb = bn_b64url(b, 0)))
            j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "use", "sig", "alg", "RS256", "n", sa,
                          "e", sb);
    } else if (is_p256(key)) {
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &a) == 1 &&
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &b) == 1 && (sa = bn_b64url(a, 32)) &&
            (sb = bn_b64url(b, 32)))
            j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "use", "sig", "alg", "ES256", "crv",
                          "P-256", "x", sa, "y", sb);
    }
    if (j && kid) json_object_set_new(j, "kid", json_string(kid));
    if (j) *out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    BN_free(a);
    BN_free(b);
    free(sa);
    free(sb);
    ERR_clear_error();
    return *out ? 0 : DS_EINVAL;
}
