/* Signed webhooks: the HMAC check and the replay reservations. */
#include "signature.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/common.h"

/* A Unix time in decimal digits, at most 18 of them (no sign, no space). */
static int parse_unix_time(const char *s, int64_t *out) {
    size_t n = strlen(s);
    if (n == 0 || n > 18) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

sig_verdict_t signature_check(const char *secret, const char *ts, const char *sig, const char *body,
                              size_t body_len, int64_t now_s, int window_s, char hex[65]) {
    hex[0] = '\0';
    if (!sig || !ts) return SIG_MISSING;
    int64_t t;
    if (parse_unix_time(ts, &t) != 0 || t < now_s - window_s || t > now_s + window_s) return SIG_EXPIRED;
    const char *given = strncasecmp(sig, "sha256=", 7) == 0 ? sig + 7 : sig;
    char want[65];
    ds_signature_hex(secret, ts, body, body_len, want);
    /* Only a value of exactly 64 characters is read; the comparison takes
     * the same time whatever its content. */
    char lower[65] = "";
    size_t glen = strnlen(given, 65);
    if (glen == 64)
        for (size_t i = 0; i <= 64; i++) lower[i] = (char)tolower((unsigned char)given[i]);
    if (glen != 64 || CRYPTO_memcmp(lower, want, 64) != 0) return SIG_BAD;
    memcpy(hex, want, 65);
    return SIG_OK;
}

/* The holder of hex, when the insert found one. */
static int reservation_read(ds_pg_t *pg, const char *hex, const char *request_sha256, sig_reservation_t *out,
                            char *errstr, size_t errstr_size) {
    const char *v[] = {hex};
    PGresult *res = NULL;
    int rc = ds_pg_exec_params(pg,
                               "select request_sha256, status, response"
                               " from dealscore_internal.ingest_signatures where signature = $1",
                               1, v, NULL, NULL, &res, errstr, errstr_size);
    if (rc != 0) return rc;
    /* Released since the insert saw it: its holder failed, and a retry
     * will get in. */
    if (PQntuples(res) == 0)
        out->state = SIG_IN_FLIGHT;
    else if (PQgetisnull(res, 0, 0) || strcmp(PQgetvalue(res, 0, 0), request_sha256) != 0)
        out->state = SIG_OTHER;
    else if (PQgetisnull(res, 0, 1) || PQgetisnull(res, 0, 2))
        out->state = SIG_IN_FLIGHT;
    else {
        out->state = SIG_ANSWERED;
        out->status = atoi(PQgetvalue(res, 0, 1));
        out->response = ds_strdup(PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    return 0;
}

int signature_reserve(ds_pg_t *pg, const char *hex, const char *request_sha256, int lease_s,
                      sig_reservation_t *out, char *errstr, size_t errstr_size) {
    memset(out, 0, sizeof *out);
    char lease[16];
    snprintf(lease, sizeof lease, "%d", lease_s);
    const char *v[] = {hex, lease, request_sha256};
    PGresult *res = NULL;
    /* One statement: of concurrent inserts of one signature, one wins and
     * the others wait for it and then see it. An expired reservation of the
     * same value is taken over. */
    int rc = ds_pg_exec_params(pg,
                               "insert into dealscore_internal.ingest_signatures as s"
                               " (signature, expires_at, request_sha256)"
                               " values ($1, now() + make_interval(secs => $2::int), $3)"
                               " on conflict (signature) do update set expires_at = excluded.expires_at,"
                               " request_sha256 = excluded.request_sha256, status = null, response = null"
                               " where s.expires_at < now() returning 1",
                               3, v, NULL, NULL, &res, errstr, errstr_size);
    if (rc != 0) return rc;
    bool reserved = PQntuples(res) == 1;
    PQclear(res);
    if (reserved) {
        out->state = SIG_RESERVED;
        return 0;
    }
    return reservation_read(pg, hex, request_sha256, out, errstr, errstr_size);
}

int signature_answer_queue(ds_pg_batch_t *b, const char *hex, int status, const char *response, int ttl_s) {
    char st[16], ttl[16];
    snprintf(st, sizeof st, "%d", status);
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    const char *v[] = {hex, st, response, ttl};
    return ds_pg_batch_add_params(b,
                                  "update dealscore_internal.ingest_signatures set status = $2::int,"
                                  " response = $3, expires_at = now() + make_interval(secs => $4::int)"
                                  " where signature = $1",
                                  4, v, NULL, NULL, NULL);
}

int signature_release(ds_pg_t *pg, const char *hex, char *errstr, size_t errstr_size) {
    const char *v[] = {hex};
    return ds_pg_exec_params(pg, "delete from dealscore_internal.ingest_signatures where signature = $1", 1,
                             v, NULL, NULL, NULL, errstr, errstr_size);
}

int signature_prune(ds_pg_t *pg, char *errstr, size_t errstr_size) {
    return ds_pg_exec(pg, "delete from dealscore_internal.ingest_signatures where expires_at < now()", NULL,
                      errstr, errstr_size);
}
