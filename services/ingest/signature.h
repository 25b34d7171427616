/* Signed webhooks: the check of X-Dealscore-Timestamp and
 * X-Dealscore-Signature against a token's secret, and replay protection.
 * A verified signature is reserved in Postgres (dealscore_internal.
 * ingest_signatures) when it is checked, so concurrent copies of one request,
 * a restarted ingest and every replica see it; the reservation is released
 * when the request's write fails, so the sender's retry gets in. */
#ifndef DS_INGEST_SIGNATURE_H
#define DS_INGEST_SIGNATURE_H

#include <stddef.h>
#include <stdint.h>

#include "infra/pg.h"

typedef enum {
    SIG_OK = 0,
    SIG_MISSING, /* a header is absent */
    SIG_EXPIRED, /* the timestamp is not a Unix time within window_s of now */
    SIG_BAD,     /* the signature does not match the body */
} sig_verdict_t;

/* Checks sig ("sha256=<64 hex>" or "<64 hex>", any case) as the HMAC-SHA256
 * with secret of "<ts>.<body>", and ts within window_s seconds of now_s. The
 * headers may be NULL or of any length. On SIG_OK, hex holds the signature
 * in lowercase (the replay key); otherwise hex is an empty string. */
sig_verdict_t signature_check(const char *secret, const char *ts, const char *sig, const char *body,
                              size_t body_len, int64_t now_s, int window_s, char hex[65]);

/* Reserves hex for ttl_s seconds. Returns 1 when reserved, 0 when it is
 * already reserved (a replay), or a negative pg class with errstr. */
int signature_reserve(ds_pg_t *pg, const char *hex, int ttl_s, char *errstr, size_t errstr_size);
/* Releases a reservation. Returns 0 or a negative pg class with errstr. */
int signature_release(ds_pg_t *pg, const char *hex, char *errstr, size_t errstr_size);
/* Deletes expired reservations. Returns 0 or a negative pg class. */
int signature_prune(ds_pg_t *pg, char *errstr, size_t errstr_size);

#endif
