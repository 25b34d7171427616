/* The librdkafka wrapper against the real broker in DEALSCORE_KAFKA_BROKERS:
 * events and headers round-trip byte for byte, dead letters, and offsets
 * stored only for processed messages. Each test uses its own topics. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/config.h"
#include "infra/event.h"
#include "infra/kafka.h"
#include "base/log.h"
#include "dealscore/v1/events.pb-c.h"
#include "kafkatest.h"

static ds_config_t cfg;
static bool cfg_loaded;
static char prefix[64]; /* "dstest.<8 hex>." unique per test */

static void setup(void) {
    char brokers[512], err[512], uuid[37];
    ds_log_init("test", getenv("DS_TEST_DEBUG") ? DS_LOG_DEBUG : DS_LOG_WARN);
    const char *b = getenv("DEALSCORE_KAFKA_BROKERS");
    if (!b || !*b) cr_assert_fail("DEALSCORE_KAFKA_BROKERS must be set (tests/run sets it)");
    snprintf(brokers, sizeof brokers, "DEALSCORE_KAFKA_BROKERS=%s", b);
    char *envp[] = {brokers, NULL};
    cr_assert_eq(ds_config_load(&cfg, DS_SVC_FEATURE, envp, err, sizeof err), 0, "%s", err);
    cfg_loaded = true;
    ds_uuid4(uuid);
    snprintf(prefix, sizeof prefix, "dstest.%.8s.", uuid);
}

static void teardown(void) {
    if (cfg_loaded) ds_config_close(&cfg);
    cfg_loaded = false;
}

TestSuite(kafka, .init = setup, .fini = teardown, .timeout = 120);

/* A topic named for this test; the caller frees it. */
static char *topic_name(const char *base) { return ds_asprintf("%s%s", prefix, base); }

static void ensure(const char *const *topics, size_t n, int partitions) {
    char err[512];
    int rc = ds_kafka_ensure_topics(&cfg, topics, n, partitions, 1, 30000, err, sizeof err);
    cr_assert_eq(rc, 0, "ensure_topics: %s", err);
}

typedef struct {
    int calls;
    int err;
    int32_t partition;
    int64_t offset;
    char errmsg[256];
} slot_t;

static void record_cb(void *opaque, void *msg_opaque, int err, const char *errmsg,
                      const rd_kafka_message_t *m) {
    (void)opaque;
    slot_t *s = msg_opaque;
    if (!s) return;
    s->calls++;
    s->err = err;
    s->partition = m->partition;
    s->offset = m->offset;
    snprintf(s->errmsg, sizeof s->errmsg, "%s", errmsg);
}

static ds_producer_t *new_producer(void) {
    ds_producer_t *p = NULL;
    char err[512];
    cr_assert_eq(ds_producer_new(&p, &cfg, err, sizeof err), 0, "%s", err);
    ds_producer_set_delivery_cb(p, record_cb, NULL);
    return p;
}

static ds_consumer_t *new_consumer(const char *group, const char *topic) {
    ds_consumer_t *c = NULL;
    char err[512];
    const char *topics[] = {topic};
    cr_assert_eq(ds_consumer_new(&c, &cfg, group, topics, 1, err, sizeof err), 0, "%s", err);
    return c;
}

static void assert_header(const rd_kafka_message_t *m, const char *name, const char *want) {
    char buf[512];
    int rc = ds_kafka_header_get(m, name, buf, sizeof buf);
    cr_assert_eq(rc, 0, "header %s: %s", name, ds_strerror(rc));
    cr_assert_str_eq(buf, want, "header %s", name);
}

/* Every header of m, in order, must be exactly names[i] = values[i]. */
static void assert_headers_exactly(const rd_kafka_message_t *m, const char *const *names,
                                   const char *const *values, size_t n) {
    rd_kafka_headers_t *hdrs = NULL;
    cr_assert_eq(rd_kafka_message_headers(m, &hdrs), 0);
    cr_assert_eq(rd_kafka_header_cnt(hdrs), n);
    for (size_t i = 0; i < n; i++) {
        const char *name;
        const void *val;
        size_t size;
        cr_assert_eq(rd_kafka_header_get_all(hdrs, i, &name, &val, &size), 0);
        cr_assert_str_eq(name, names[i]);
        cr_assert_eq(size, strlen(values[i]), "header %s size", name);
        cr_assert(memcmp(val, values[i], size) == 0, "header %s value", name);
    }
}

Test(kafka, opportunity_changed_round_trips_byte_identical) {
    char *topic = topic_name(DS_TOPIC_OPPORTUNITY_CHANGED);
    const char *topics[] = {topic};
    ensure(topics, 1, 3);
    ensure(topics, 1, 3); /* an existing topic is success */

    ds_producer_t *p = new_producer();
    cr_assert_eq(ds_kafka_ping(ds_producer_handle(p), 10000), 0);

    Dealscore__V1__OpportunityChanged ev = DEALSCORE__V1__OPPORTUNITY_CHANGED__INIT;
    ev.event_id = "0b7e4d52-5b8c-4b53-9a43-3f0f4a6b2c11";
    ev.org_id = "7d9a4c58-8a5c-4f0e-a1a8-96b8f3e0d001";
    ev.opportunity_id = "c3f1e2d4-1111-4222-8333-944455556666";
    ev.account_id = "a1a1a1a1-2222-4333-8444-555566667777";
    ev.kind = DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_STAGE_CHANGED;
    ev.occurred_at_us = 1795650000123456;
    ev.source = "webhook";
    ev.source_hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    size_t len = dealscore__v1__opportunity_changed__get_packed_size(&ev);
    uint8_t *payload = ds_malloc(len);
    cr_assert_eq(dealscore__v1__opportunity_changed__pack(&ev, payload), len);

    const char *trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const int64_t at = 1795650000654321;
    const ds_event_meta_t meta = {
        .id = ev.event_id,
        .source = "/dealscore/ingest",
        .type = DS_CE_TYPE_OPPORTUNITY_CHANGED,
        .time_us = at,
        .traceparent = trace,
    };
    /* The second event has no id, time or trace: the producer makes them. */
    const ds_event_meta_t bare = {.type = DS_CE_TYPE_OPPORTUNITY_CHANGED};
    slot_t s1 = {0}, s2 = {0};
    const char *key = ev.opportunity_id;
    cr_assert_eq(ds_producer_send(p, topic, key, strlen(key), payload, len, &meta, &s1), 0);
    cr_assert_eq(ds_producer_send(p, topic, key, strlen(key), payload, len, &bare, &s2), 0);
    cr_assert_eq(ds_producer_flush(p, 30000), 0);
    cr_assert_eq(s1.calls, 1);
    cr_assert_eq(s1.err, 0, "%s", s1.errmsg);
    cr_assert_eq(s2.err, 0, "%s", s2.errmsg);
    cr_assert_eq(s1.partition, s2.partition, "one key, one partition");

    char group[128];
    snprintf(group, sizeof group, "%sgroup", prefix);
    ds_consumer_t *c = new_consumer(group, topic);
    rd_kafka_message_t *msgs[2] = {0};
    cr_assert_eq(kt_consume_n(c, msgs, 2, 60000), 2);
    cr_assert(ds_consumer_assigned(c));

    const rd_kafka_message_t *m = msgs[0];
    cr_assert_eq(m->offset, s1.offset);
    cr_assert_eq(m->key_len, strlen(key));
    cr_assert(memcmp(m->key, key, m->key_len) == 0);
    cr_assert_eq(m->len, len);
    cr_assert(memcmp(m->payload, payload, len) == 0, "payload bytes differ");
    char at_text[40];
    ds_format_time_us(at, at_text, sizeof at_text);
    const char *names[] = {DS_HDR_CE_SPECVERSION, DS_HDR_CE_ID,        DS_HDR_CE_SOURCE,  DS_HDR_CE_TYPE,
                           DS_HDR_CE_TIME,        DS_HDR_CONTENT_TYPE, DS_HDR_TRACEPARENT};
    const char *values[] = {"1.0",
                            ev.event_id,
                            "/dealscore/ingest",
                            DS_CE_TYPE_OPPORTUNITY_CHANGED,
                            at_text,
                            "application/protobuf",
                            trace};
    /* A header read leaves every header readable again, as received. */
    assert_header(m, DS_HDR_TRACEPARENT, trace);
    assert_header(m, DS_HDR_CE_ID, ev.event_id);
    assert_headers_exactly(m, names, values, DS_ARRAY_SIZE(names));

    Dealscore__V1__OpportunityChanged *back =
        dealscore__v1__opportunity_changed__unpack(NULL, m->len, m->payload);
    cr_assert_not_null(back);
    cr_assert_str_eq(back->event_id, ev.event_id);
    cr_assert_str_eq(back->opportunity_id, ev.opportunity_id);
    cr_assert_eq(back->kind, ev.kind);
    cr_assert_eq(back->occurred_at_us, ev.occurred_at_us);
    cr_assert_str_eq(back->source_hash, ev.source_hash);
    dealscore__v1__opportunity_changed__free_unpacked(back, NULL);

    /* Generated attributes: a UUID, a valid new trace, the time of sending. */
    char buf[128];
    m = msgs[1];
    cr_assert_eq(ds_kafka_header_get(m, DS_HDR_CE_ID, buf, sizeof buf), 0);
    cr_assert_eq(strlen(buf), 36);
    cr_assert_str_neq(buf, ev.event_id);
    cr_assert_eq(ds_kafka_header_get(m, DS_HDR_TRACEPARENT, buf, sizeof buf), 0);
    cr_assert(ds_event_traceparent_valid(buf), "%s", buf);
    cr_assert_str_neq(buf, trace);
    assert_header(m, DS_HDR_CE_SOURCE, "/dealscore/feature");
    cr_assert_eq(ds_kafka_header_get(m, DS_HDR_CE_TIME, buf, sizeof buf), 0);
    int64_t sent_us = 0;
    cr_assert_eq(ds_parse_time_us(buf, &sent_us), 0, "%s", buf);
    cr_assert_lt(llabs(ds_now_us() - sent_us), 120LL * 1000000);

    ds_consumer_release(msgs, 2);
    cr_assert_eq(ds_consumer_close(c), 0);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
    free(payload);
    free(topic);
}

/* The workers' decode of opportunity.changed (infra/event.h): a good event
 * comes back with the next hop's trace (same trace id, new parent id); a
 * payload that is not the message, or ids that are not UUIDs, come back as
 * DS_EINVAL with the dead letter's reason. */
Test(kafka, decode_opportunity_changed_checks_payload_ids_and_trace) {
    char *topic = topic_name(DS_TOPIC_OPPORTUNITY_CHANGED);
    const char *topics[] = {topic};
    ensure(topics, 1, 1);

    Dealscore__V1__OpportunityChanged ev = DEALSCORE__V1__OPPORTUNITY_CHANGED__INIT;
    ev.event_id = "0b7e4d52-5b8c-4b53-9a43-3f0f4a6b2c11";
    ev.org_id = "7d9a4c58-8a5c-4f0e-a1a8-96b8f3e0d001";
    ev.opportunity_id = "c3f1e2d4-1111-4222-8333-944455556666";
    ev.kind = DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_INTERACTION_ADDED;
    ev.occurred_at_us = 1795650000123456;
    uint8_t good[256], bad_ids[256];
    size_t good_len = dealscore__v1__opportunity_changed__pack(&ev, good);
    ev.org_id = "not-a-uuid";
    size_t bad_ids_len = dealscore__v1__opportunity_changed__pack(&ev, bad_ids);
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x07};

    const char *trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const ds_event_meta_t meta = {.type = DS_CE_TYPE_OPPORTUNITY_CHANGED, .traceparent = trace};
    ds_producer_t *p = new_producer();
    const char *key = ev.opportunity_id;
    cr_assert_eq(ds_producer_send(p, topic, key, strlen(key), good, good_len, &meta, NULL), 0);
    cr_assert_eq(ds_producer_send(p, topic, key, strlen(key), garbage, sizeof garbage, &meta, NULL), 0);
    cr_assert_eq(ds_producer_send(p, topic, key, strlen(key), bad_ids, bad_ids_len, &meta, NULL), 0);
    cr_assert_eq(ds_producer_flush(p, 30000), 0);

    char group[128];
    snprintf(group, sizeof group, "%sdecoder", prefix);
    ds_consumer_t *c = new_consumer(group, topic);
    rd_kafka_message_t *msgs[3] = {0};
    cr_assert_eq(kt_consume_n(c, msgs, 3, 60000), 3);

    Dealscore__V1__OpportunityChanged *out = NULL;
    char tp[DS_TRACEPARENT_SIZE], err[256] = "";
    cr_assert_eq(ds_event_decode_opportunity_changed(msgs[0], &out, tp, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(out->event_id, "0b7e4d52-5b8c-4b53-9a43-3f0f4a6b2c11");
    cr_assert_str_eq(out->org_id, "7d9a4c58-8a5c-4f0e-a1a8-96b8f3e0d001");
    cr_assert_str_eq(out->opportunity_id, key);
    cr_assert_eq(out->kind, DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_INTERACTION_ADDED);
    cr_assert_eq(out->occurred_at_us, 1795650000123456);
    cr_assert(ds_event_traceparent_valid(tp), "%s", tp);
    cr_assert(strncmp(tp, trace, 36) == 0, "same trace id: %s", tp);
    cr_assert_str_neq(tp, trace, "a new parent id");
    ds_event_opportunity_changed_free(out);
    /* Without a traceparent buffer the event decodes all the same. */
    cr_assert_eq(ds_event_decode_opportunity_changed(msgs[0], &out, NULL, err, sizeof err), 0);
    ds_event_opportunity_changed_free(out);

    out = (Dealscore__V1__OpportunityChanged *)&ev; /* must be reset */
    cr_assert_eq(ds_event_decode_opportunity_changed(msgs[1], &out, tp, err, sizeof err), DS_EINVAL);
    cr_assert_null(out);
    cr_assert_str_eq(err, "payload is not a dealscore.v1.OpportunityChanged");
    cr_assert_eq(ds_event_decode_opportunity_changed(msgs[2], &out, tp, err, sizeof err), DS_EINVAL);
    cr_assert_null(out);
    cr_assert_str_eq(err, "opportunity_id and org_id must be UUIDs");
    ds_event_opportunity_changed_free(NULL);

    ds_consumer_release(msgs, 3);
    cr_assert_eq(ds_consumer_close(c), 0);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
    free(topic);
}

Test(kafka, dlq_gets_message_with_error_headers) {
    char *topic = topic_name(DS_TOPIC_FEATURES_READY);
    char *dlq = ds_asprintf("%s%s", topic, DS_TOPIC_DLQ_SUFFIX);
    const char *topics[] = {topic, dlq};
    ensure(topics, 2, 1);

    ds_producer_t *p = new_producer();
    const ds_event_meta_t meta = {
        .id = "5e0f1d3c-0000-4000-8000-000000000001",
        .type = DS_CE_TYPE_FEATURES_READY,
        .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    };
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x07};
    slot_t s = {0};
    cr_assert_eq(ds_producer_send(p, topic, "opp-9", 5, garbage, sizeof garbage, &meta, &s), 0);
    cr_assert_eq(ds_producer_flush(p, 30000), 0);
    cr_assert_eq(s.err, 0, "%s", s.errmsg);

    char group[128];
    snprintf(group, sizeof group, "%sworker", prefix);
    ds_consumer_t *c = new_consumer(group, topic);
    rd_kafka_message_t *msgs[1] = {0};
    cr_assert_eq(kt_consume_n(c, msgs, 1, 60000), 1);
    /* The worker cannot decode it: dead-letter it, then move on. */
    cr_assert_null(dealscore__v1__features_ready__unpack(NULL, msgs[0]->len, msgs[0]->payload));
    cr_assert_eq(ds_producer_send_dlq(p, msgs[0], "could not decode FeaturesReady"), 0);
    cr_assert_eq(ds_producer_flush(p, 30000), 0);
    cr_assert_eq(ds_consumer_store(c, msgs, 1), 0);
    int64_t src_offset = msgs[0]->offset;
    ds_consumer_release(msgs, 1);
    ds_consumer_destroy(c);

    snprintf(group, sizeof group, "%sdlq-reader", prefix);
    c = new_consumer(group, dlq);
    cr_assert_eq(kt_consume_n(c, msgs, 1, 60000), 1);
    const rd_kafka_message_t *m = msgs[0];
    cr_assert_eq(m->key_len, 5);
    cr_assert(memcmp(m->key, "opp-9", 5) == 0);
    cr_assert_eq(m->len, sizeof garbage);
    cr_assert(memcmp(m->payload, garbage, sizeof garbage) == 0);
    assert_header(m, DS_HDR_CE_ID, meta.id);
    assert_header(m, DS_HDR_CE_TYPE, DS_CE_TYPE_FEATURES_READY);
    assert_header(m, DS_HDR_TRACEPARENT, meta.traceparent);
    assert_header(m, DS_HDR_CONTENT_TYPE, DS_CE_CONTENT_TYPE);
    assert_header(m, DS_HDR_DLQ_ERROR, "could not decode FeaturesReady");
    assert_header(m, DS_HDR_DLQ_TOPIC, topic);
    assert_header(m, DS_HDR_DLQ_PARTITION, "0");
    char off[32], buf[64];
    snprintf(off, sizeof off, "%lld", (long long)src_offset);
    assert_header(m, DS_HDR_DLQ_OFFSET, off);
    cr_assert_eq(ds_kafka_header_get(m, DS_HDR_DLQ_TIME, buf, sizeof buf), 0);
    int64_t us = 0;
    cr_assert_eq(ds_parse_time_us(buf, &us), 0, "%s", buf);
    ds_consumer_release(msgs, 1);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
    free(dlq);
    free(topic);
}

Test(kafka, restart_resumes_after_last_stored_offset) {
    char *topic = topic_name(DS_TOPIC_PREDICTION_MADE);
    const char *topics[] = {topic};
    ensure(topics, 1, 1);

    ds_producer_t *p = new_producer();
    slot_t slots[10] = {0};
    const ds_event_meta_t meta = {.type = DS_CE_TYPE_PREDICTION_MADE};
    for (int i = 0; i < 10; i++) {
        char text[16];
        snprintf(text, sizeof text, "p%d", i);
        cr_assert_eq(ds_producer_send(p, topic, "k", 1, text, strlen(text), &meta, &slots[i]), 0);
    }
    cr_assert_eq(ds_producer_flush(p, 30000), 0);
    for (int i = 0; i < 10; i++) cr_assert_eq(slots[i].err, 0, "%s", slots[i].errmsg);

    char group[128];
    snprintf(group, sizeof group, "%sscorer", prefix);
    ds_consumer_t *c = new_consumer(group, topic);
    rd_kafka_message_t *msgs[10] = {0};
    cr_assert_eq(kt_consume_n(c, msgs, 10, 60000), 10);
    /* Only the first six were processed (their DB commit succeeded) before
     * the worker stopped; the other four were in hand, never stored. */
    cr_assert_eq(ds_consumer_store(c, msgs, 3), 0);
    cr_assert_eq(ds_consumer_store(c, msgs + 3, 3), 0);
    ds_consumer_release(msgs, 10);
    cr_assert_eq(ds_consumer_close(c), 0);
    ds_consumer_destroy(c);

    c = new_consumer(group, topic);
    size_t n = kt_consume_n(c, msgs, 4, 60000);
    cr_assert_eq(n, 4);
    for (size_t i = 0; i < n; i++) {
        char want[16];
        snprintf(want, sizeof want, "p%zu", i + 6);
        cr_assert_eq(msgs[i]->offset, slots[i + 6].offset);
        cr_assert_eq(msgs[i]->len, strlen(want));
        cr_assert(memcmp(msgs[i]->payload, want, msgs[i]->len) == 0);
    }
    /* Nothing older comes back. */
    cr_assert_eq(ds_consumer_poll_batch(c, msgs + 4, 6, 500), 0);
    ds_consumer_release(msgs, n);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
    free(topic);
}

/* A worker's poll: the first message, then what follows, up to max and in
 * partition order; nothing when the topic has no more. */
Test(kafka, poll_ready_takes_up_to_max_in_order) {
    char *topic = topic_name(DS_TOPIC_FEATURES_READY);
    const char *topics[] = {topic};
    ensure(topics, 1, 1);
    ds_producer_t *p = new_producer();
    slot_t slots[5] = {0};
    const ds_event_meta_t meta = {.type = DS_CE_TYPE_FEATURES_READY};
    for (int i = 0; i < 5; i++) {
        char text[16];
        snprintf(text, sizeof text, "f%d", i);
        cr_assert_eq(ds_producer_send(p, topic, "k", 1, text, strlen(text), &meta, &slots[i]), 0);
    }
    cr_assert_eq(ds_producer_flush(p, 30000), 0);
    char group[128];
    snprintf(group, sizeof group, "%sready", prefix);
    ds_consumer_t *c = new_consumer(group, topic);
    rd_kafka_message_t *msgs[6] = {0};
    cr_assert_eq(ds_consumer_poll_ready(c, msgs, 3, 60000, 60000), 3, "a full batch of three");
    cr_assert_eq(ds_consumer_poll_ready(c, msgs + 3, 2, 60000, 60000), 2, "the other two");
    for (int i = 0; i < 5; i++) cr_expect_eq(msgs[i]->offset, slots[i].offset, "message %d in order", i);
    cr_assert_eq(ds_consumer_poll_ready(c, msgs + 5, 1, 500, 0), 0, "nothing more");
    ds_consumer_release(msgs, 5);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
    free(topic);
}
