/* The messages a worker holds for one process call. A plain batch holds
 * every message; a burst holds, per coalescing key (the deal), only the
 * message that counts and hands back the ones it makes redundant, so its
 * memory grows with the deals, not with the messages. Whatever it holds or
 * hands back, it remembers per partition the offset to store once the batch
 * is processed, and every message's publication time (for the age
 * histogram: 8 bytes a message). */
#ifndef DEALSCORE_BATCH_H
#define DEALSCORE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "base/strindex.h"
#include "infra/kafka.h"

typedef struct {
    char *topic;
    int32_t partition;
    int64_t next; /* the highest offset taken + 1 */
} ds_batch_mark_t;

typedef struct {
    rd_kafka_message_t **msgs; /* held, for process: the caller's array */
    size_t n;
    size_t taken;   /* messages taken since the reset: held or handed back */
    size_t bytes;   /* the held messages' payloads and keys */
    int64_t *ranks; /* per held message, when it has a key */
    char **keys;    /* per held message: its key (owned), or NULL */
    ds_strindex_t bykey;
    ds_batch_mark_t *marks;
    size_t nmarks;
    int64_t *stamps; /* publication times (ms) of the messages taken; -1 unknown */
    size_t stamps_cap;
} ds_batch_t;

/* An empty batch holding into msgs (room for cap messages). */
void ds_batch_init(ds_batch_t *b, rd_kafka_message_t **msgs, size_t cap);
/* Forgets what was held (without releasing the messages) and the marks. */
void ds_batch_reset(ds_batch_t *b);
void ds_batch_close(ds_batch_t *b);

/* Takes m, consumed from topic (m->partition, m->offset) and published at
 * stamp_ms (-1: unknown). With key NULL, holds it. Else, if a message with
 * the same key is held, keeps the one of higher rank (m on a tie: the newer
 * one) and returns the other, which the caller releases; returns NULL when m
 * is held (a new key, or no key). The caller keeps b->n below cap. */
rd_kafka_message_t *ds_batch_take(ds_batch_t *b, rd_kafka_message_t *m, const char *topic, int64_t stamp_ms,
                                  const char *key, int64_t rank);
/* Per partition taken, the next offset to read (new; the caller destroys it). */
rd_kafka_topic_partition_list_t *ds_batch_offsets(const ds_batch_t *b);

#endif
