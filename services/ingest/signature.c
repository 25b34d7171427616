/* Signed webhooks: the HMAC check and the replay reservations. */
#include "signature.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
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
    size_t tslen = strlen(ts), msglen = tslen + 1 + body_len;
    char *msg = ds_malloc(msglen);
    memcpy(msg, ts, tslen);
    msg[tslen] = '.';
    if (body_len) memcpy(msg + tslen + 1, body, body_len);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, msglen, mac, &maclen);
    free(msg);
    char want[65];
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        want[2 * i] = digits[mac[i] >> 4];
        want[2 * i + 1] = digits[mac[i] & 15];
    }
    want[64] = '\0';
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

int signature_reserve(ds_pg_t *pg, const char *hex, int ttl_s, char *errstr, size_t errstr_size) {
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    const char *v[] = {hex, ttl};
    PGresult *res = NULL;
    /* One statement: of concurrent inserts of one signature, one wins and
     * the others wait for it and then see it. An expired reservation of the
     * same value is taken over. */
    int rc = ds_pg_exec_params(pg,
                               "insert into dealscore_internal.ingest_signatures as s (signature, expires_at)"
                               " values ($1, now() + make_interval(secs => $2::int))"
                               " on conflict (signature) do update set expires_at = excluded.expires_at"
                               " where s.expires_at < now() returning 1",
                               2, v, NULL, NULL, &res, errstr, errstr_size);
    if (rc != 0) return rc;
    rc = PQntuples(res) == 1 ? 1 : 0;
    PQclear(res);
    return rc;
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
