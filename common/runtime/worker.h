/* The consume -> write -> produce loop that every Kafka worker shares
 * (feature, scoring, benchmark): batches, dead letters, retries with
 * backoff while partitions are paused, downstream deliveries awaited before
 * offsets are stored, metrics, and the shutdown order of STYLE.md. Runs on
 * the service's worker thread (ds_service_def_t.worker). */
#ifndef DEALSCORE_WORKER_H
#define DEALSCORE_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "infra/kafka.h"
#include "runtime/service.h"

typedef struct ds_worker_s ds_worker_t;

/* One consumed message and what became of it. */
typedef struct {
    rd_kafka_message_t *msg;
    /* Set by process: 0 handled, or DS_EINVAL / DS_EFATAL to send the
     * message to <topic>.dlq with error as the dlq_error header. */
    int status;
    char error[256];
} ds_worker_item_t;

typedef struct {
    const char *name;          /* for logs and metric labels: "feature" */
    const char *const *topics; /* base names to consume (the prefix is added) */
    size_t ntopics;
    /* Handles a batch, at most DEALSCORE_BATCH_SIZE messages: a burst
     * comes as several calls, one per slice of that size, unless
     * whole_bursts. Returns 0 when
     * every item is handled (each item's status says ok or dead letter);
     * DS_ERETRY to have the whole batch retried after a backoff (nothing
     * is stored; partitions are paused meanwhile), with the reason in
     * errstr; any other code stops the worker (the service exits
     * non-zero). Must be idempotent: a batch may be processed more than
     * once. */
    int (*process)(ds_worker_t *w, void *ud, ds_worker_item_t *items, size_t n, char *errstr,
                   size_t errstr_size);
    void *ud;
    /* Optional: lets a burst hold one message per deal (runtime/batch.h).
     * Writes m's coalescing key (its deal) into key and returns 0 with
     * *rank: of two messages of one key the burst keeps the one of higher
     * rank (the newer on a tie) and releases the other, so everything
     * process needs of a deal must be in the message of highest rank.
     * Nonzero: m is held as it is (process judges it, e.g. dead-letters
     * it). NULL: a burst holds every message. */
    int (*coalesce)(void *ud, const rd_kafka_message_t *m, char *key, size_t keysz, int64_t *rank);
    /* Optional: called after a poll that found nothing, so at least every
     * 100 ms while the input is idle: for what must not wait for the next
     * message (hearing the database's notifications). */
    void (*idle)(void *ud);
    /* A burst goes to process in one call: for a worker whose work is per
     * org rather than per deal (the benchmark worker recomputes an org's
     * cohorts once per call), slices would repeat that work per slice. */
    bool whole_bursts;
} ds_worker_def_t;

/* Room for a coalescing key: a deal's ids with a separator. */
#define DS_WORKER_KEY_SIZE 96

/* Consumes until the service stops. Returns after the consumer has closed
 * (offsets committed, group left). */
void ds_worker_run(ds_service_t *svc, const ds_worker_def_t *def);

/* Produces a downstream event as part of the current batch: the batch's
 * offsets are stored only after every such message is acknowledged (a
 * failed delivery makes the batch retry). Arguments as ds_producer_send.
 * Returns 0 or its error. */
int ds_worker_produce(ds_worker_t *w, const char *topic, const void *key, size_t keylen, const void *payload,
                      size_t len, const ds_event_meta_t *meta);

ds_service_t *ds_worker_service(ds_worker_t *w);
/* ds_consumer_rebalances of the worker's consumer: a process that remembers
 * something about the keys it consumed forgets it when this moves (another
 * consumer may have had the partition meanwhile). */
unsigned ds_worker_rebalances(ds_worker_t *w);
/* The full name of a topic (prefix included); owned by the worker. */
const char *ds_worker_topic(ds_worker_t *w, const char *base);

#endif
