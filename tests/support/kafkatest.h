/* Helpers for the Kafka tests (integration against the real broker, fault
 * against librdkafka's mock cluster). Header-only. */
#ifndef DS_TEST_KAFKATEST_H
#define DS_TEST_KAFKATEST_H

#include <criterion/criterion.h>

#include <stdio.h>

#include "base/common.h"
#include "infra/kafka.h"

#include <librdkafka/rdkafka_mock.h> /* after rdkafka.h, which infra/kafka.h includes */

/* librdkafka's in-process mock cluster of one broker, hosted by a handle
 * that connects nowhere; brokers holds "DEALSCORE_KAFKA_BROKERS=<its
 * address>" for a test's environment. */
typedef struct {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    char brokers[256];
} kt_mock_t;

static inline void kt_mock_start(kt_mock_t *m) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err), RD_KAFKA_CONF_OK);
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(m->rk, "%s", err);
    m->mc = rd_kafka_mock_cluster_new(m->rk, 1);
    cr_assert_not_null(m->mc);
    snprintf(m->brokers, sizeof m->brokers, "DEALSCORE_KAFKA_BROKERS=%s",
             rd_kafka_mock_cluster_bootstraps(m->mc));
}

static inline void kt_mock_stop(kt_mock_t *m) {
    if (m->mc) rd_kafka_mock_cluster_destroy(m->mc);
    if (m->rk) rd_kafka_destroy(m->rk);
    m->mc = NULL;
    m->rk = NULL;
}

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
