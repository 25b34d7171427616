/* What a worker's batch holds (runtime/batch.h): one message per deal in a
 * burst, the offsets to store, every message's publication time. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "runtime/batch.h"

enum { DEALS = 3, ROUNDS = 40, N = DEALS * ROUNDS };

/* Hand-made messages: message i is change i / DEALS of deal i % DEALS, in
 * partition i % 2 at offset 100 + i, published at 1000 + i ms. */
static rd_kafka_message_t msgs[N];

static void make_messages(void) {
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < N; i++) {
        msgs[i].partition = i % 2;
        msgs[i].offset = 100 + i;
    }
}

/* A burst of 120 changes to 3 deals holds 3 messages, each deal's latest
 * (the highest rank: here the change's order), and hands back the other 117
 * as they are superseded; the offsets to store are the highest of each
 * partition + 1, whatever was released; every message's time is kept. */
Test(batch, a_burst_holds_the_latest_change_of_each_deal) {
    make_messages();
    rd_kafka_message_t *held[N];
    ds_batch_t b;
    ds_batch_init(&b, held, N);
    int released[N] = {0};
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "deal-%d", i % DEALS);
        rd_kafka_message_t *spare = ds_batch_take(&b, &msgs[i], "t", 1000 + i, key, i / DEALS);
        if (spare) released[spare - msgs]++;
    }
    cr_assert_eq(b.n, DEALS);
    cr_expect_eq(b.taken, N);
    for (int d = 0; d < DEALS; d++)
        cr_expect_eq(b.msgs[d], &msgs[(ROUNDS - 1) * DEALS + d], "deal-%d's latest", d);
    for (int i = 0; i < N; i++)
        cr_expect_eq(released[i], i < (ROUNDS - 1) * DEALS ? 1 : 0, "message %d released once, or held", i);
    rd_kafka_topic_partition_list_t *offs = ds_batch_offsets(&b);
    cr_assert_eq(offs->cnt, 2);
    for (int p = 0; p < 2; p++) {
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(offs, "t", p);
        cr_assert_not_null(tp);
        cr_expect_eq(tp->offset, 100 + N - 2 + p + 1, "partition %d: after its last message", p);
    }
    rd_kafka_topic_partition_list_destroy(offs);
    for (int i = 0; i < N; i++) cr_expect_eq(b.stamps[i], 1000 + i);
    ds_batch_close(&b);
}

/* Of two changes to a deal, one of lower rank than the held one is handed
 * back at once (an older state arriving later), and an equal rank replaces
 * it (the newer wins a tie). Messages without a key are all held. */
Test(batch, a_lower_rank_is_released_and_a_tie_goes_to_the_newer) {
    make_messages();
    rd_kafka_message_t *held[4];
    ds_batch_t b;
    ds_batch_init(&b, held, 4);
    cr_expect_null(ds_batch_take(&b, &msgs[0], "t", -1, "a", 5));
    cr_expect_eq(ds_batch_take(&b, &msgs[1], "t", -1, "a", 4), &msgs[1], "older state: released");
    cr_expect_eq(ds_batch_take(&b, &msgs[2], "t", -1, "a", 5), &msgs[0], "a tie: the newer is held");
    cr_expect_null(ds_batch_take(&b, &msgs[3], "t", -1, NULL, 0));
    cr_expect_null(ds_batch_take(&b, &msgs[4], "t", -1, NULL, 0));
    cr_assert_eq(b.n, 3);
    cr_expect_eq(b.msgs[0], &msgs[2]);
    cr_expect_eq(b.msgs[1], &msgs[3]);
    cr_expect_eq(b.msgs[2], &msgs[4]);
    ds_batch_reset(&b);
    cr_expect_eq(b.n, 0);
    cr_expect_null(ds_batch_take(&b, &msgs[5], "t", -1, "a", 0), "a reset forgets the keys");
    ds_batch_close(&b);
}

/* The batch counts the bytes it holds (payload and key), so that a burst
 * can end at DEALSCORE_BURST_MAX_KB: a message handed back takes its bytes
 * with it, the one that replaces it brings its own, a reset forgets them. */
Test(batch, it_counts_the_bytes_it_holds) {
    make_messages();
    for (int i = 0; i < 4; i++) {
        msgs[i].len = (size_t)(100 * (i + 1));
        msgs[i].key_len = 10;
    }
    rd_kafka_message_t *held[4];
    ds_batch_t b;
    ds_batch_init(&b, held, 4);
    cr_expect_null(ds_batch_take(&b, &msgs[0], "t", -1, "a", 1));
    cr_expect_null(ds_batch_take(&b, &msgs[1], "t", -1, "b", 1));
    cr_expect_eq(b.bytes, 110 + 210);
    cr_expect_eq(ds_batch_take(&b, &msgs[2], "t", -1, "a", 2), &msgs[0], "a's newer change replaces it");
    cr_expect_eq(b.bytes, 310 + 210);
    cr_expect_eq(ds_batch_take(&b, &msgs[3], "t", -1, "b", 0), &msgs[3], "an older state is handed back");
    cr_expect_eq(b.bytes, 310 + 210);
    ds_batch_reset(&b);
    cr_expect_eq(b.bytes, 0);
    ds_batch_close(&b);
}
