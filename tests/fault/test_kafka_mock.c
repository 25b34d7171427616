/* The librdkafka wrapper against librdkafka's mock cluster, for protocol
 * faults a real broker cannot produce on demand (STYLE.md, "Tests"). */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/config.h"
#include "infra/kafka.h"
#include "base/log.h"
#include "kafkatest.h"

/* Kafka protocol ApiKeys (rdkafka_protocol.h is not installed). */
#define API_PRODUCE 0
#define API_SYNC_GROUP 14

static kt_mock_t mock;
static ds_config_t cfg;
static bool cfg_loaded;

static void setup(void) {
    ds_log_init("test", getenv("DS_TEST_DEBUG") ? DS_LOG_DEBUG : DS_LOG_WARN);
    kt_mock_start(&mock);
}

static void teardown(void) {
    if (cfg_loaded) ds_config_close(&cfg);
    cfg_loaded = false;
    kt_mock_stop(&mock);
}

/* Loads a config pointing at the mock cluster, plus extra variables. */
static void load_cfg(const char *const *extra) {
    char err[512];
    char *envp[16];
    size_t n = 0;
    envp[n++] = mock.brokers;
    /* The mock coordinator waits up to session.timeout.ms - 1 s before it
     * completes a rebalance after a member left; keep that short. */
    envp[n++] = "KAFKA_SESSION_TIMEOUT_MS=3000";
    envp[n++] = "KAFKA_HEARTBEAT_INTERVAL_MS=500";
    if (getenv("DS_TEST_DEBUG")) envp[n++] = "KAFKA_DEBUG=cgrp,consumer,protocol";
    for (size_t i = 0; extra && extra[i] && n + 1 < DS_ARRAY_SIZE(envp); i++) envp[n++] = (char *)extra[i];
    envp[n] = NULL;
    cr_assert_eq(ds_config_load(&cfg, DS_SVC_FEATURE, envp, err, sizeof err), 0, "%s", err);
    cfg_loaded = true;
}

typedef struct {
    int calls;
    int err;
    int64_t offset;
    char errmsg[256];
} slot_t;

static int total_reports;
static slot_t null_slot; /* reports for messages sent with msg_opaque NULL */

static void record_cb(void *opaque, void *msg_opaque, int err, const char *errmsg,
                      const rd_kafka_message_t *m) {
    int *total = opaque;
    slot_t *s = msg_opaque ? msg_opaque : &null_slot;
    (*total)++;
    s->calls++;
    s->err = err;
    s->offset = m->offset;
    snprintf(s->errmsg, sizeof s->errmsg, "%s", errmsg);
}

static ds_producer_t *new_producer(void) {
    ds_producer_t *p = NULL;
    char err[512];
    cr_assert_eq(ds_producer_new(&p, &cfg, err, sizeof err), 0, "%s", err);
    total_reports = 0;
    ds_producer_set_delivery_cb(p, record_cb, &total_reports);
    return p;
}

static int send_text(ds_producer_t *p, const char *topic, const char *text, slot_t *slot) {
    const ds_event_meta_t meta = {.type = DS_CE_TYPE_OPPORTUNITY_CHANGED};
    return ds_producer_send(p, topic, "key", 3, text, strlen(text), &meta, slot);
}

static int64_t high_watermark(ds_producer_t *p, const char *topic) {
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(ds_producer_handle(p), topic, 0, &lo, &hi, 5000);
    cr_assert_eq(err, 0, "%s", rd_kafka_err2str(err));
    return hi;
}

TestSuite(kafka, .init = setup, .fini = teardown, .timeout = 60);

Test(kafka, retriable_produce_errors_deliver_exactly_once) {
    const char *topic = "retry.topic";
    cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, topic, 1, 1), 0);
    load_cfg(NULL);
    ds_producer_t *p = new_producer();

    /* The first three produce requests fail with a retriable error. */
    rd_kafka_mock_push_request_errors(mock.mc, API_PRODUCE, 3, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
    slot_t slots[5] = {0};
    for (int i = 0; i < 5; i++) {
        char text[16];
        snprintf(text, sizeof text, "m%d", i);
        cr_assert_eq(send_text(p, topic, text, &slots[i]), 0);
    }
    cr_assert_eq(ds_producer_flush(p, 20000), 0);
    cr_assert_eq(total_reports, 5);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(slots[i].calls, 1, "message %d: %d reports", i, slots[i].calls);
        cr_assert_eq(slots[i].err, 0, "message %d: %s", i, slots[i].errmsg);
        cr_assert_eq(slots[i].offset, i, "message %d at offset %ld", i, (long)slots[i].offset);
    }
    /* Exactly five records in the log: no duplicates from the retries. */
    cr_assert_eq(high_watermark(p, topic), 5);
    cr_assert_eq(ds_producer_fatal(p, NULL, 0), 0);
    ds_producer_destroy(p);
}

/* Produces one message while the broker answers with err; returns its
 * delivery report. */
static slot_t produce_against(ds_producer_t *p, const char *topic, rd_kafka_resp_err_t err) {
    rd_kafka_mock_push_request_errors(mock.mc, API_PRODUCE, 1, err);
    slot_t bad = {0};
    cr_assert_eq(send_text(p, topic, "refused", &bad), 0);
    cr_assert_eq(ds_producer_flush(p, 20000), 0);
    cr_assert_eq(bad.calls, 1);
    /* The error's text, never the payload (rd_kafka_message_errstr returns
     * the payload for a delivery report). */
    cr_assert_str_eq(bad.errmsg, rd_kafka_err2str(err));
    return bad;
}

Test(kafka, permanent_produce_error_reaches_delivery_cb) {
    const char *topic = "invalid.topic";
    cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, topic, 1, 1), 0);
    load_cfg(NULL);
    ds_producer_t *p = new_producer();

    slot_t bad = produce_against(p, topic, RD_KAFKA_RESP_ERR_INVALID_RECORD);
    cr_assert_eq(bad.err, DS_EIO, "err %d (%s)", bad.err, bad.errmsg);

    /* The failure was the message's: the producer goes on. */
    char why[512] = "";
    cr_assert_eq(ds_producer_fatal(p, why, sizeof why), 0, "%s", why);
    slot_t good = {0};
    int rc = send_text(p, topic, "accepted", &good);
    cr_assert_eq(rc, 0, "%s", ds_strerror(rc));
    cr_assert_eq(ds_producer_flush(p, 20000), 0);
    cr_assert_eq(good.calls, 1);
    cr_assert_eq(good.err, 0, "%s", good.errmsg);
    cr_assert_eq(high_watermark(p, topic), 1);
    ds_producer_destroy(p);
}

Test(kafka, authorization_error_reaches_delivery_cb) {
    const char *topic = "denied.topic";
    cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, topic, 1, 1), 0);
    load_cfg(NULL);
    ds_producer_t *p = new_producer();
    slot_t bad = produce_against(p, topic, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    cr_assert_eq(bad.err, DS_EAUTH, "err %d (%s)", bad.err, bad.errmsg);
    cr_assert_eq(ds_producer_fatal(p, NULL, 0), 0);
    ds_producer_destroy(p);
}

Test(kafka, stored_offsets_are_committed_on_close) {
    const char *topic = "store.topic";
    const char *topics[] = {topic};
    cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, topic, 1, 1), 0);
    load_cfg(NULL);
    ds_producer_t *p = new_producer();
    slot_t slots[10] = {0};
    for (int i = 0; i < 10; i++) {
        char text[16];
        snprintf(text, sizeof text, "m%d", i);
        cr_assert_eq(send_text(p, topic, text, &slots[i]), 0);
    }
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
    cr_assert_eq(total_reports, 10);

    char err[512];
    rd_kafka_message_t *msgs[10] = {0};
    ds_consumer_t *c = NULL;
    cr_assert_eq(ds_consumer_new(&c, &cfg, "store-group", topics, 1, err, sizeof err), 0, "%s", err);
    cr_assert_not(ds_consumer_assigned(c));
    size_t n = kt_consume_n(c, msgs, 4, 30000);
    cr_assert_eq(n, 4);
    cr_assert(ds_consumer_assigned(c));
    for (size_t i = 0; i < n; i++) cr_assert_eq(msgs[i]->offset, (int64_t)i);
    /* "Process" the four, then store: the next start is offset 4. */
    cr_assert_eq(ds_consumer_store(c, msgs, n), 0);
    ds_consumer_release(msgs, n);
    cr_assert_null(msgs[0]);
    cr_assert_eq(ds_consumer_close(c), 0);
    cr_assert_not(ds_consumer_assigned(c));
    ds_consumer_destroy(c);

    /* A new member of the same group resumes after the stored offset. */
    cr_assert_eq(ds_consumer_new(&c, &cfg, "store-group", topics, 1, err, sizeof err), 0, "%s", err);
    n = kt_consume_n(c, msgs, 6, 30000);
    cr_assert_eq(n, 6);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(msgs[i]->offset, (int64_t)(i + 4));
        char want[16];
        snprintf(want, sizeof want, "m%zu", i + 4);
        cr_assert_eq(msgs[i]->len, strlen(want));
        cr_assert(memcmp(msgs[i]->payload, want, msgs[i]->len) == 0);
    }
    ds_consumer_release(msgs, n);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
}

Test(kafka, unstored_batch_is_redelivered) {
    const char *topic = "redeliver.topic";
    const char *topics[] = {topic};
    cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, topic, 1, 1), 0);
    load_cfg(NULL);
    ds_producer_t *p = new_producer();
    slot_t slots[3] = {0};
    for (int i = 0; i < 3; i++) cr_assert_eq(send_text(p, topic, "x", &slots[i]), 0);
    cr_assert_eq(ds_producer_flush(p, 10000), 0);

    char err[512];
    rd_kafka_message_t *msgs[3] = {0};
    ds_consumer_t *c = NULL;
    cr_assert_eq(ds_consumer_new(&c, &cfg, "redeliver-group", topics, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kt_consume_n(c, msgs, 3, 30000), 3);
    /* The "database commit" failed: nothing stored. */
    ds_consumer_release(msgs, 3);
    ds_consumer_destroy(c);

    cr_assert_eq(ds_consumer_new(&c, &cfg, "redeliver-group", topics, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kt_consume_n(c, msgs, 1, 30000), 1);
    cr_assert_eq(msgs[0]->offset, 0);
    ds_consumer_release(msgs, 1);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
}

Test(kafka, pause_all_stops_fetching_until_resume) {
    const char *topic = "pause.topic";
    const char *topics[] = {topic};
    cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, topic, 2, 1), 0);
    load_cfg(NULL);
    ds_producer_t *p = new_producer();
    slot_t s1 = {0}, s2 = {0};
    cr_assert_eq(send_text(p, topic, "before", &s1), 0);
    cr_assert_eq(ds_producer_flush(p, 10000), 0);

    char err[512];
    rd_kafka_message_t *msgs[4] = {0};
    ds_consumer_t *c = NULL;
    cr_assert_eq(ds_consumer_new(&c, &cfg, "pause-group", topics, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kt_consume_n(c, msgs, 1, 30000), 1);
    ds_consumer_release(msgs, 1);

    cr_assert_eq(ds_consumer_pause_all(c), 0);
    cr_assert_eq(send_text(p, topic, "during", &s2), 0);
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
    /* Paused: a bounded poll returns nothing although a message is there. */
    cr_assert_eq(ds_consumer_poll_batch(c, msgs, 4, 1000), 0);
    cr_assert(ds_consumer_assigned(c));

    cr_assert_eq(ds_consumer_resume_all(c), 0);
    cr_assert_eq(kt_consume_n(c, msgs, 1, 30000), 1);
    cr_assert_eq(msgs[0]->len, strlen("during"));
    ds_consumer_release(msgs, 1);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
}

Test(kafka, headers_and_dlq_round_trip) {
    const char *topic = "dlq.src";
    const char *dlq_topics[] = {"dlq.src.dlq"};
    const char *src_topics[] = {topic};
    cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, topic, 1, 1), 0);
    cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, "dlq.src.dlq", 1, 1), 0);
    load_cfg(NULL);
    ds_producer_t *p = new_producer();
    const ds_event_meta_t meta = {
        .id = "4b1c2a7e-2f6d-4c63-9d8e-0a1b2c3d4e5f",
        .type = DS_CE_TYPE_FEATURES_READY,
        .traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    slot_t s = {0};
    cr_assert_eq(ds_producer_send(p, topic, "opp-1", 5, "\x01\x02", 2, &meta, &s), 0);
    cr_assert_eq(ds_producer_flush(p, 10000), 0);

    char err[512], buf[128];
    rd_kafka_message_t *msgs[1] = {0};
    ds_consumer_t *c = NULL;
    cr_assert_eq(ds_consumer_new(&c, &cfg, "dlq-group", src_topics, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kt_consume_n(c, msgs, 1, 30000), 1);
    cr_assert_eq(ds_kafka_header_get(msgs[0], DS_HDR_CE_ID, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, meta.id);
    cr_assert_eq(ds_kafka_header_get(msgs[0], DS_HDR_CE_SOURCE, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "/dealscore/feature");
    cr_assert_eq(ds_kafka_header_get(msgs[0], "nope", buf, sizeof buf), DS_ENOTFOUND);
    char tiny[4];
    cr_assert_eq(ds_kafka_header_get(msgs[0], DS_HDR_CE_TYPE, tiny, sizeof tiny), DS_EFULL);
    cr_assert_str_eq(tiny, "dea");

    /* The DLQ delivery report comes once, with msg_opaque NULL. */
    total_reports = 0;
    cr_assert_eq(ds_producer_send_dlq(p, msgs[0], "could not decode"), 0);
    ds_consumer_release(msgs, 1);
    ds_consumer_destroy(c);
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
    cr_assert_eq(total_reports, 1);
    cr_assert_eq(null_slot.calls, 1);
    cr_assert_eq(null_slot.err, 0, "%s", null_slot.errmsg);

    cr_assert_eq(ds_consumer_new(&c, &cfg, "dlq-reader", dlq_topics, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kt_consume_n(c, msgs, 1, 30000), 1);
    cr_assert_eq(msgs[0]->key_len, 5);
    cr_assert(memcmp(msgs[0]->key, "opp-1", 5) == 0);
    cr_assert_eq(msgs[0]->len, 2);
    cr_assert_eq(ds_kafka_header_get(msgs[0], DS_HDR_DLQ_ERROR, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "could not decode");
    cr_assert_eq(ds_kafka_header_get(msgs[0], DS_HDR_DLQ_TOPIC, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, topic);
    cr_assert_eq(ds_kafka_header_get(msgs[0], DS_HDR_DLQ_OFFSET, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "0");
    cr_assert_eq(ds_kafka_header_get(msgs[0], DS_HDR_TRACEPARENT, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, meta.traceparent);
    ds_consumer_release(msgs, 1);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
}

Test(kafka, ping_fails_when_the_broker_is_down) {
    load_cfg(NULL);
    ds_producer_t *p = new_producer();
    cr_assert_eq(ds_kafka_ping(ds_producer_handle(p), 5000), 0);
    cr_assert_eq(rd_kafka_mock_broker_set_down(mock.mc, 1), 0);
    cr_assert_neq(ds_kafka_ping(ds_producer_handle(p), 1000), 0);
    cr_assert_eq(rd_kafka_mock_broker_set_up(mock.mc, 1), 0);
    ds_producer_destroy(p);
}

/* Polls until the group's JoinGroup answer chose the assignor. */
static void await_assignor_chosen(ds_consumer_t *c) {
    rd_kafka_message_t *msgs[1];
    int64_t deadline = ds_mono_us() + 10 * 1000000LL;
    const char *protocol = rd_kafka_rebalance_protocol(ds_consumer_handle(c));
    while (strcmp(protocol, "COOPERATIVE") != 0 && ds_mono_us() < deadline) {
        cr_assert_eq(ds_consumer_poll_batch(c, msgs, 1, 50), 0);
        protocol = rd_kafka_rebalance_protocol(ds_consumer_handle(c));
    }
    cr_assert_str_eq(protocol, "COOPERATIVE");
}

/* A worker stopped while it joins the group: librdkafka 2.0.2 aborts in
 * rd_kafka_destroy when the JoinGroup answer came and the SyncGroup answer
 * did not (issue 4312). Here no SyncGroup succeeds before the consumer's
 * wait for it ends. */
Test(kafka, a_member_stopped_before_its_first_assignment_exits_cleanly) {
    const char *topic = "join.topic";
    const char *topics[] = {topic};
    cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, topic, 1, 1), 0);
    /* 120 failed SyncGroups, each answered after 100 ms and followed by a
     * new join: none succeeds within the consumer's 10 s wait. */
    for (int i = 0; i < 120; i++)
        cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(
                         mock.mc, 1, API_SYNC_GROUP, 1, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, 100),
                     0);
    load_cfg(NULL);
    char err[512];
    ds_consumer_t *c = NULL;
    cr_assert_eq(ds_consumer_new(&c, &cfg, "join-group", topics, 1, err, sizeof err), 0, "%s", err);
    await_assignor_chosen(c);
    cr_assert_eq(ds_consumer_rebalances(c), 0u);
    /* Returns: the member left the group, its handle is kept until exit. */
    ds_consumer_destroy(c);
}
