/* What a worker's batch holds, coalesced per key in a burst. */
#include "runtime/batch.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

void ds_batch_init(ds_batch_t *b, rd_kafka_message_t **msgs, size_t cap) {
    memset(b, 0, sizeof *b);
    b->msgs = msgs;
    b->ranks = ds_malloc(cap * sizeof *b->ranks);
    b->keys = ds_calloc(cap, sizeof *b->keys);
}

void ds_batch_reset(ds_batch_t *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->keys[i]);
        b->keys[i] = NULL;
    }
    for (size_t i = 0; i < b->nmarks; i++) free(b->marks[i].topic);
    ds_strindex_free(&b->bykey);
    b->n = b->taken = b->nmarks = b->bytes = 0;
}

void ds_batch_close(ds_batch_t *b) {
    ds_batch_reset(b);
    free(b->ranks);
    free(b->keys);
    free(b->marks);
    free(b->stamps);
}

static void mark(ds_batch_t *b, const char *topic, int32_t partition, int64_t offset) {
    for (size_t i = 0; i < b->nmarks; i++) {
        ds_batch_mark_t *k = &b->marks[i];
        if (k->partition != partition || strcmp(k->topic, topic) != 0) continue;
        if (offset + 1 > k->next) k->next = offset + 1;
        return;
    }
    b->marks = ds_realloc(b->marks, (b->nmarks + 1) * sizeof *b->marks);
    b->marks[b->nmarks++] = (ds_batch_mark_t){ds_strdup(topic), partition, offset + 1};
}

static void stamp(ds_batch_t *b, int64_t stamp_ms) {
    if (b->taken == b->stamps_cap) {
        b->stamps_cap = b->stamps_cap ? b->stamps_cap * 2 : 1024;
        b->stamps = ds_realloc(b->stamps, b->stamps_cap * sizeof *b->stamps);
    }
    b->stamps[b->taken++] = stamp_ms;
}

static size_t message_bytes(const rd_kafka_message_t *m) { return m->len + m->key_len; }

rd_kafka_message_t *ds_batch_take(ds_batch_t *b, rd_kafka_message_t *m, const char *topic, int64_t stamp_ms,
                                  const char *key, int64_t rank) {
    mark(b, topic, m->partition, m->offset);
    stamp(b, stamp_ms);
    int at = key ? ds_strindex_find(&b->bykey, key) : -1;
    if (at < 0) {
        b->bytes += message_bytes(m);
        b->msgs[b->n] = m;
        b->ranks[b->n] = rank;
        if (key) {
            b->keys[b->n] = ds_strdup(key);
            ds_strindex_add(&b->bykey, b->keys[b->n], (int)b->n);
        }
        b->n++;
        return NULL;
    }
    if (rank < b->ranks[at]) return m;
    rd_kafka_message_t *old = b->msgs[at];
    b->bytes = b->bytes - message_bytes(old) + message_bytes(m);
    b->msgs[at] = m;
    b->ranks[at] = rank;
    return old;
}

rd_kafka_topic_partition_list_t *ds_batch_offsets(const ds_batch_t *b) {
    rd_kafka_topic_partition_list_t *offs =
        rd_kafka_topic_partition_list_new((int)(b->nmarks ? b->nmarks : 1));
    for (size_t i = 0; i < b->nmarks; i++)
        rd_kafka_topic_partition_list_add(offs, b->marks[i].topic, b->marks[i].partition)->offset =
            b->marks[i].next;
    return offs;
}
