/* The bounded work queue (base/queue.h): order, bounds, shutdown, and many
 * threads on both sides. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "base/common.h"
#include "base/queue.h"

#define ITEM(n) ((void *)(uintptr_t)(n))

Test(queue, keeps_order_and_refuses_past_capacity) {
    ds_queue_t *q = ds_queue_new(3);
    for (uintptr_t i = 1; i <= 3; i++) cr_assert_eq(ds_queue_try_push(q, ITEM(i)), 0);
    cr_assert_eq(ds_queue_try_push(q, ITEM(4)), DS_EFULL);
    cr_assert_eq(ds_queue_len(q), 3);
    void *got[8];
    cr_assert_eq(ds_queue_pop(q, got, 2), 2);
    cr_assert(got[0] == ITEM(1) && got[1] == ITEM(2));
    /* The ring wraps around. */
    cr_assert_eq(ds_queue_try_push(q, ITEM(4)), 0);
    cr_assert_eq(ds_queue_push(q, ITEM(5)), 0);
    cr_assert_eq(ds_queue_pop(q, got, 8), 3);
    cr_assert(got[0] == ITEM(3) && got[1] == ITEM(4) && got[2] == ITEM(5));
    cr_assert_eq(ds_queue_try_pop(q, got, 8), 0);
    cr_assert_eq(ds_queue_len(q), 0);
    ds_queue_destroy(q);
    ds_queue_destroy(NULL);
}

Test(queue, shutdown_refuses_pushes_and_lets_consumers_drain) {
    ds_queue_t *q = ds_queue_new(4);
    cr_assert_eq(ds_queue_push(q, ITEM(1)), 0);
    cr_assert_eq(ds_queue_push(q, ITEM(2)), 0);
    ds_queue_shutdown(q);
    ds_queue_shutdown(q);
    cr_assert_eq(ds_queue_push(q, ITEM(3)), DS_ESHUTDOWN);
    cr_assert_eq(ds_queue_try_push(q, ITEM(3)), DS_ESHUTDOWN);
    void *got[4];
    cr_assert_eq(ds_queue_pop(q, got, 1), 1);
    cr_assert_eq(got[0], ITEM(1));
    cr_assert_eq(ds_queue_pop(q, got, 4), 1);
    cr_assert_eq(got[0], ITEM(2));
    /* Empty and shut down: pop returns at once. */
    cr_assert_eq(ds_queue_pop(q, got, 4), 0);
    ds_queue_destroy(q);
}

static void *pop_one(void *arg) {
    void *got = NULL;
    size_t n = ds_queue_pop(arg, &got, 1);
    return n ? got : ITEM(0xdead);
}

static void *push_seven(void *arg) { return ITEM((uintptr_t)-ds_queue_push(arg, ITEM(7))); }

Test(queue, a_waiting_consumer_gets_the_next_item_or_the_shutdown) {
    ds_queue_t *q = ds_queue_new(2);
    pthread_t t;
    pthread_create(&t, NULL, pop_one, q);
    cr_assert_eq(ds_queue_push(q, ITEM(42)), 0);
    void *r;
    pthread_join(t, &r);
    cr_assert_eq(r, ITEM(42));

    pthread_create(&t, NULL, pop_one, q);
    ds_queue_shutdown(q);
    pthread_join(t, &r);
    cr_assert_eq(r, ITEM(0xdead), "pop on an empty queue that shut down takes nothing");
    ds_queue_destroy(q);
}

Test(queue, a_producer_waits_for_room_or_the_shutdown) {
    ds_queue_t *q = ds_queue_new(1);
    cr_assert_eq(ds_queue_push(q, ITEM(1)), 0);
    pthread_t t;
    pthread_create(&t, NULL, push_seven, q);
    void *got[1];
    /* Taking 1 makes room for 7, whenever the producer gets there. */
    cr_assert_eq(ds_queue_pop(q, got, 1), 1);
    cr_assert_eq(got[0], ITEM(1));
    cr_assert_eq(ds_queue_pop(q, got, 1), 1);
    cr_assert_eq(got[0], ITEM(7));
    void *r;
    pthread_join(t, &r);
    cr_assert_eq(r, ITEM(0));

    /* Full again: the waiting producer gives up when the queue shuts down. */
    cr_assert_eq(ds_queue_push(q, ITEM(1)), 0);
    pthread_create(&t, NULL, push_seven, q);
    ds_queue_shutdown(q);
    pthread_join(t, &r);
    cr_assert_eq(r, ITEM((uintptr_t)-DS_ESHUTDOWN));
    cr_assert_eq(ds_queue_len(q), 1);
    ds_queue_destroy(q);
}

enum { PRODUCERS = 4, CONSUMERS = 3, PER_PRODUCER = 20000 };

typedef struct {
    ds_queue_t *q;
    int id;
    unsigned char *seen; /* PRODUCERS * PER_PRODUCER counters, one per item */
    pthread_mutex_t *mu;
    size_t taken;
} side_t;

static void *producer(void *arg) {
    side_t *s = arg;
    for (uintptr_t i = 0; i < PER_PRODUCER; i++)
        cr_assert_eq(ds_queue_push(s->q, ITEM((uintptr_t)s->id * PER_PRODUCER + i + 1)), 0);
    return NULL;
}

static void *consumer(void *arg) {
    side_t *s = arg;
    void *got[7];
    size_t n;
    uintptr_t last[PRODUCERS] = {0};
    while ((n = ds_queue_pop(s->q, got, DS_ARRAY_SIZE(got))) > 0) {
        for (size_t i = 0; i < n; i++) {
            uintptr_t v = (uintptr_t)got[i] - 1;
            /* One producer's items reach any one consumer in order. */
            uintptr_t from = v / PER_PRODUCER;
            cr_assert(v + 1 > last[from]);
            last[from] = v + 1;
            pthread_mutex_lock(s->mu);
            s->seen[v]++;
            pthread_mutex_unlock(s->mu);
        }
        s->taken += n;
    }
    return NULL;
}

Test(queue, many_producers_and_consumers_move_every_item_once) {
    ds_queue_t *q = ds_queue_new(8);
    unsigned char *seen = ds_calloc(PRODUCERS * PER_PRODUCER, 1);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    side_t p[PRODUCERS], c[CONSUMERS];
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        c[i] = (side_t){q, i, seen, &mu, 0};
        pthread_create(&ct[i], NULL, consumer, &c[i]);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (side_t){q, i, seen, &mu, 0};
        pthread_create(&pt[i], NULL, producer, &p[i]);
    }
    for (int i = 0; i < PRODUCERS; i++) pthread_join(pt[i], NULL);
    ds_queue_shutdown(q);
    size_t total = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        pthread_join(ct[i], NULL);
        total += c[i].taken;
    }
    cr_assert_eq(total, PRODUCERS * PER_PRODUCER);
    for (size_t i = 0; i < PRODUCERS * PER_PRODUCER; i++) cr_assert_eq(seen[i], 1, "item %zu", i);
    free(seen);
    ds_queue_destroy(q);
}
