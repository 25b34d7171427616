/* Helpers for the Kafka tests (integration against the real broker, fault
 * against librdkafka's mock cluster). Header-only. */
#ifndef DS_TEST_KAFKATEST_H
#define DS_TEST_KAFKATEST_H

#include <criterion/criterion.h>

#include "base/common.h"
#include "infra/kafka.h"

/* Polls until want messages arrived or timeout_ms passed; returns the count
 * (fewer than want is not a failure: tests use it to see nothing more
 * comes). A poll error fails the test. */
static inline size_t kt_consume_n(ds_consumer_t *c, rd_kafka_message_t **msgs, size_t want, int timeout_ms) {
    int64_t deadline = ds_mono_us() + (int64_t)timeout_ms * 1000;
    size_t n = 0;
    while (n < want && ds_mono_us() < deadline) {
        int r = ds_consumer_poll_batch(c, msgs + n, want - n, 200);
        cr_assert_geq(r, 0, "poll_batch: %s", ds_strerror(r));
        n += (size_t)r;
    }
    return n;
}

#endif
