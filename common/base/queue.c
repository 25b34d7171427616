/* A ring of pointers under one mutex. */
#include "base/queue.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/common.h"

struct ds_queue_s {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void **ring;
    size_t cap, head, len;
    bool shut;
};

ds_queue_t *ds_queue_new(size_t capacity) {
    ds_assert(capacity >= 1);
    ds_queue_t *q = ds_calloc(1, sizeof *q);
    q->ring = ds_calloc(capacity, sizeof *q->ring);
    q->cap = capacity;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return q;
}

void ds_queue_destroy(ds_queue_t *q) {
    if (!q) return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q->ring);
    free(q);
}

/* Appends under q->mu, waiting for room when wait is set. */
static int push(ds_queue_t *q, void *item, bool wait) {
    pthread_mutex_lock(&q->mu);
    while (wait && q->len == q->cap && !q->shut) pthread_cond_wait(&q->not_full, &q->mu);
    int rc = q->shut ? DS_ESHUTDOWN : q->len == q->cap ? DS_EFULL : 0;
    if (rc == 0) {
        q->ring[(q->head + q->len++) % q->cap] = item;
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int ds_queue_push(ds_queue_t *q, void *item) { return push(q, item, true); }

int ds_queue_try_push(ds_queue_t *q, void *item) { return push(q, item, false); }

static size_t pop(ds_queue_t *q, void **items, size_t max, bool wait) {
    ds_assert(max >= 1); /* 0 items taken means "shut down" */
    pthread_mutex_lock(&q->mu);
    while (wait && q->len == 0 && !q->shut) pthread_cond_wait(&q->not_empty, &q->mu);
    size_t n = 0;
    while (n < max && q->len > 0) {
        items[n++] = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
    }
    /* Room for n more: wake that many producers (all of them, simply). */
    if (n) pthread_cond_broadcast(&q->not_full);
    /* Another consumer may take what this one left. */
    if (q->len) pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t ds_queue_pop(ds_queue_t *q, void **items, size_t max) { return pop(q, items, max, true); }

size_t ds_queue_try_pop(ds_queue_t *q, void **items, size_t max) { return pop(q, items, max, false); }

void ds_queue_shutdown(ds_queue_t *q) {
    pthread_mutex_lock(&q->mu);
    q->shut = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

size_t ds_queue_len(ds_queue_t *q) {
    pthread_mutex_lock(&q->mu);
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}
