/* A bounded FIFO of pointers between threads (one mutex, two condition
 * variables). Producers push, waiting while it is full or failing at once
 * (try_push, for a loop thread that must not block); consumers pop one or
 * several items, waiting while it is empty. Shutting it down refuses new
 * items and wakes everyone: consumers take what is left, then pop returns
 * 0. The items stay the caller's. The hand-offs of the ingest validator and
 * writer, of /api/predict and of the rescore workers. */
#ifndef DEALSCORE_QUEUE_H
#define DEALSCORE_QUEUE_H

#include <stddef.h>

typedef struct ds_queue_s ds_queue_t;

/* A queue of at most capacity (>= 1) items. Free with ds_queue_destroy. */
ds_queue_t *ds_queue_new(size_t capacity);
/* Frees q; items still in it are not touched. NULL does nothing. */
void ds_queue_destroy(ds_queue_t *q);
/* Appends item, waiting while q is full. Returns 0, or DS_ESHUTDOWN once q
 * is shut down (item not taken). */
int ds_queue_push(ds_queue_t *q, void *item);
/* Appends item without waiting. Returns 0, DS_EFULL or DS_ESHUTDOWN. */
int ds_queue_try_push(ds_queue_t *q, void *item);
/* Takes up to max items, oldest first, into items, waiting while q is empty
 * and not shut down. Returns how many; 0 only once q is shut down and empty. */
size_t ds_queue_pop(ds_queue_t *q, void **items, size_t max);
/* Takes up to max items without waiting; 0 when q is empty. */
size_t ds_queue_try_pop(ds_queue_t *q, void **items, size_t max);
/* Refuses further pushes and wakes every waiting thread. Idempotent. */
void ds_queue_shutdown(ds_queue_t *q);
/* Items in q now. */
size_t ds_queue_len(ds_queue_t *q);

#endif
