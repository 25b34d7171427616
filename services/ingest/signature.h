/* Signed webhooks: the check of X-Dealscore-Timestamp and
 * X-Dealscore-Signature against a token's secret, and replay protection.
 * A verified signature is reserved in Postgres (dealscore_internal.
 * ingest_signatures) when it is checked, so concurrent copies of one request,
 * a restarted ingest and every replica see it; the reservation is released
 * when the request's write fails, so the sender's retry gets in, and keeps
 * the request's answer when it commits, so that a repeat of the request
 * (its answer lost in transit) gets that answer again. */
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

/* What a reservation attempt found. */
typedef enum {
    SIG_RESERVED = 0, /* reserved for this request */
    SIG_IN_FLIGHT,    /* a copy of this request holds it; its answer is not known yet */
    SIG_ANSWERED,     /* a copy of this request committed: status and response hold its answer */
    SIG_OTHER,        /* held for another request, or by a version that kept no request digest */
} sig_state_t;

typedef struct {
    sig_state_t state;
    int status;     /* SIG_ANSWERED: the HTTP status given */
    char *response; /* SIG_ANSWERED: the JSON body given (caller frees) */
} sig_reservation_t;

/* Reserves hex for the request whose digest is request_sha256, for lease_s
 * seconds (a reservation whose holder died is taken over after that), or
 * reports who holds it (out). Returns 0 with out filled, or a negative pg
 * class with errstr. */
int signature_reserve(ds_pg_t *pg, const char *hex, const char *request_sha256, int lease_s,
                      sig_reservation_t *out, char *errstr, size_t errstr_size);
/* Queues on b the statement that records the answer of hex's request
 * (status, response: JSON text) and keeps the reservation for ttl_s
 * seconds: run it in the transaction that stores the request's records. */
int signature_answer_queue(ds_pg_batch_t *b, const char *hex, int status, const char *response, int ttl_s);
/* Releases a reservation. Returns 0 or a negative pg class with errstr. */
int signature_release(ds_pg_t *pg, const char *hex, char *errstr, size_t errstr_size);
/* Deletes expired reservations. Returns 0 or a negative pg class. */
int signature_prune(ds_pg_t *pg, char *errstr, size_t errstr_size);

#endif
