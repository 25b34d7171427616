/* The librdkafka wrapper without a broker: configuration, trace context,
 * headers, and the flush policy against librdkafka's in-process mock
 * cluster. */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "base/config.h"
#include "infra/kafka.h"
#include "base/log.h"
#include "kafkatest.h"

static ds_config_t cfg;
static bool cfg_loaded;

static void load(char **envp) {
    char err[256];
    int rc = ds_config_load(&cfg, DS_SVC_FEATURE, envp, err, sizeof err);
    cr_assert_eq(rc, 0, "config: %s", err);
    cfg_loaded = true;
}

static void teardown(void) {
    if (cfg_loaded) ds_config_close(&cfg);
    cfg_loaded = false;
}

static void setup(void) { ds_log_init("test", DS_LOG_WARN); }

static void conf_get(rd_kafka_conf_t *conf, const char *name, char *buf, size_t bufsz) {
    size_t sz = bufsz;
    cr_assert_eq(rd_kafka_conf_get(conf, name, buf, &sz), RD_KAFKA_CONF_OK, "%s", name);
}

TestSuite(kafka, .init = setup, .fini = teardown);

Test(kafka, conf_passes_kafka_props_through) {
    char *envp[] = {
        "DEALSCORE_KAFKA_BROKERS=broker-a:9092,broker-b:9093",
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        "KAFKA_SASL_MECHANISMS=SCRAM-SHA-512",
        "KAFKA_SOCKET_NAGLE_DISABLE=false", /* overrides our default */
        "KAFKA_STATISTICS_INTERVAL_MS=1234",
        NULL,
    };
    load(envp);
    rd_kafka_conf_t *conf = NULL;
    char err[512], buf[256];
    cr_assert_eq(ds_kafka_conf_new(&conf, &cfg, err, sizeof err), 0, "%s", err);
    conf_get(conf, "bootstrap.servers", buf, sizeof buf);
    cr_assert_str_eq(buf, "broker-a:9092,broker-b:9093");
    conf_get(conf, "client.id", buf, sizeof buf);
    cr_assert_str_eq(buf, "dealscore-feature");
    conf_get(conf, "security.protocol", buf, sizeof buf);
    cr_assert_str_eq(buf, "sasl_ssl");
    conf_get(conf, "sasl.mechanisms", buf, sizeof buf);
    cr_assert_str_eq(buf, "SCRAM-SHA-512");
    conf_get(conf, "socket.nagle.disable", buf, sizeof buf);
    cr_assert_str_eq(buf, "false");
    conf_get(conf, "statistics.interval.ms", buf, sizeof buf);
    cr_assert_str_eq(buf, "1234");
    rd_kafka_conf_destroy(conf);
}

Test(kafka, conf_has_latency_defaults) {
    char *envp[] = {"DEALSCORE_KAFKA_BROKERS=127.0.0.1:1", NULL};
    load(envp);
    rd_kafka_conf_t *conf = NULL;
    char err[512], buf[256];
    cr_assert_eq(ds_kafka_conf_new(&conf, &cfg, err, sizeof err), 0, "%s", err);
    conf_get(conf, "socket.nagle.disable", buf, sizeof buf);
    cr_assert_str_eq(buf, "true");
    rd_kafka_conf_destroy(conf);
}

Test(kafka, conf_names_unknown_property) {
    char *envp[] = {"DEALSCORE_KAFKA_BROKERS=127.0.0.1:1", "KAFKA_NO_SUCH_THING=1", NULL};
    load(envp);
    rd_kafka_conf_t *conf = (rd_kafka_conf_t *)1;
    char err[512] = "";
    cr_assert_eq(ds_kafka_conf_new(&conf, &cfg, err, sizeof err), DS_EINVAL);
    cr_assert_null(conf);
    cr_assert(strstr(err, "KAFKA_NO_SUCH_THING"), "errstr: %s", err);
    cr_assert(strstr(err, "no.such.thing"), "errstr: %s", err);
}

Test(kafka, conf_names_bad_value_without_printing_it) {
    char *envp[] = {"DEALSCORE_KAFKA_BROKERS=127.0.0.1:1", "KAFKA_SOCKET_NAGLE_DISABLE=maybe", NULL};
    load(envp);
    rd_kafka_conf_t *conf = NULL;
    char err[512] = "";
    cr_assert_eq(ds_kafka_conf_new(&conf, &cfg, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "KAFKA_SOCKET_NAGLE_DISABLE"), "errstr: %s", err);
    cr_assert(strstr(err, "socket.nagle.disable"), "errstr: %s", err);
}

Test(kafka, producer_new_reports_bad_property) {
    char *envp[] = {"DEALSCORE_KAFKA_BROKERS=127.0.0.1:1", "KAFKA_LINGER_MS=-5", NULL};
    load(envp);
    ds_producer_t *p = (ds_producer_t *)1;
    char err[512] = "";
    cr_assert_eq(ds_producer_new(&p, &cfg, err, sizeof err), DS_EINVAL);
    cr_assert_null(p);
    cr_assert(strstr(err, "KAFKA_LINGER_MS"), "errstr: %s", err);
}

Test(kafka, producer_cannot_turn_off_idempotence) {
    /* The forced settings are applied after KAFKA_*, so at-least-once
     * without duplicates cannot be configured away. */
    char *envp[] = {"DEALSCORE_KAFKA_BROKERS=127.0.0.1:1", "KAFKA_ENABLE_IDEMPOTENCE=false", NULL};
    load(envp);
    ds_producer_t *p = NULL;
    char err[512] = "", buf[64];
    cr_assert_eq(ds_producer_new(&p, &cfg, err, sizeof err), 0, "%s", err);
    size_t sz = sizeof buf;
    const rd_kafka_conf_t *conf = rd_kafka_conf(ds_producer_handle(p));
    cr_assert_eq(rd_kafka_conf_get(conf, "enable.idempotence", buf, &sz), RD_KAFKA_CONF_OK);
    cr_assert_str_eq(buf, "true");
    sz = sizeof buf;
    cr_assert_eq(rd_kafka_conf_get(conf, "linger.ms", buf, &sz), RD_KAFKA_CONF_OK);
    cr_assert_str_eq(buf, "20");
    ds_producer_destroy(p);
}

Test(kafka, flush_lingers_only_while_events_come_fast) {
    /* At least one more event due within the linger: 200/s and 5 ms. */
    cr_assert_eq(ds_producer_flush_linger_ms(200, 5), 5);
    cr_assert_eq(ds_producer_flush_linger_ms(5000, 5), 5);
    cr_assert_eq(ds_producer_flush_linger_ms(199, 5), 0);
    cr_assert_eq(ds_producer_flush_linger_ms(50, 20), 20);
    cr_assert_eq(ds_producer_flush_linger_ms(49, 20), 0);
    cr_assert_eq(ds_producer_flush_linger_ms(-1, 5), 0, "an unknown rate sends at once");
    cr_assert_eq(ds_producer_flush_linger_ms(0, 5), 0);
    cr_assert_eq(ds_producer_flush_linger_ms(100000, 0), 0, "0 turns the linger off");
}

static void nap_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sends n events to topic and flushes; returns the flush's milliseconds. */
static int64_t send_and_flush(ds_producer_t *p, const char *topic, int n) {
    ds_event_meta_t meta = {.type = DS_CE_TYPE_OPPORTUNITY_CHANGED};
    for (int i = 0; i < n; i++) cr_assert_eq(ds_producer_send(p, topic, "k", 1, "v", 1, &meta, NULL), 0);
    int64_t t0 = ds_mono_us();
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
    cr_assert_eq(ds_producer_pending(p), 0, "a flush returns once everything is delivered");
    return (ds_mono_us() - t0) / 1000;
}

/* The mock cluster with topic "t" (one partition). */
static void mock_start(kt_mock_t *m) {
    kt_mock_start(m);
    cr_assert_eq(rd_kafka_mock_topic_create(m->mc, "t", 1, 1), 0);
}

Test(kafka, flush_lingers_while_the_process_produces_fast) {
    char err[512];
    kt_mock_t m;
    mock_start(&m);
    /* A linger long enough to tell from a delivery on a loaded machine, and
     * librdkafka's own linger longer still, so that only the flush's policy
     * decides when the events go. Lingering needs 4 events a second. */
    char *envp[] = {m.brokers, "DEALSCORE_FLUSH_LINGER_MS=250", "KAFKA_LINGER_MS=5000", NULL};
    load(envp);
    ds_producer_t *p = NULL;
    cr_assert_eq(ds_producer_new(&p, &cfg, err, sizeof err), 0, "%s", err);
    send_and_flush(p, "t", 1); /* connected, the producer id obtained, the first rate sample */
    nap_ms(300);
    /* 40 events over the last 300 ms: more than 4 a second. */
    int64_t ms = send_and_flush(p, "t", 40);
    cr_assert_geq(ms, 250, "a fast producer's flush lingers (took %lld ms)", (long long)ms);
    nap_ms(1500);
    /* 1 event in 1.5 s since the last sample: slow, sent at once. */
    ms = send_and_flush(p, "t", 1);
    cr_assert_lt(ms, 250, "a slow producer's flush sends at once (took %lld ms)", (long long)ms);
    ds_producer_destroy(p);
    kt_mock_stop(&m);
}

/* librdkafka 2.0 (Debian 12) aborts in rd_kafka_destroy when a
 * cooperative-sticky member is closed after its JoinGroup and before its
 * first SyncGroup answer (assertion "assignor_state", librdkafka issue
 * 4312, fixed in 2.2.1): a worker stopped while it joins the group. The
 * mock broker holds the SyncGroup answer for 3 s to open that window. */
enum { KAFKA_API_SYNC_GROUP = 14 }; /* the protocol's ApiKey */
Test(kafka, a_consumer_closed_while_it_joins_the_group_exits_cleanly, .timeout = 60) {
    char err[512];
    kt_mock_t m;
    mock_start(&m);
    cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(m.mc, 1, KAFKA_API_SYNC_GROUP, 1,
                                                              RD_KAFKA_RESP_ERR_NO_ERROR, 3000),
                 0);
    char *envp[] = {m.brokers, NULL};
    load(envp);
    ds_consumer_t *c = NULL;
    const char *topics[] = {"t"};
    cr_assert_eq(ds_consumer_new(&c, &cfg, "joining", topics, 1, err, sizeof err), 0, "%s", err);
    rd_kafka_message_t *msgs[4];
    int64_t deadline = ds_mono_us() + 20 * 1000000LL;
    char *member = NULL;
    while (ds_mono_us() < deadline) {
        int n = ds_consumer_poll_batch(c, msgs, 4, 50);
        if (n > 0) ds_consumer_release(msgs, (size_t)n);
        member = rd_kafka_memberid(ds_consumer_handle(c));
        if (member && member[0]) break;
        rd_kafka_mem_free(NULL, member);
        member = NULL;
    }
    cr_assert(member && member[0], "the consumer never joined the group");
    rd_kafka_mem_free(NULL, member);
    cr_assert_eq(ds_consumer_rebalances(c), 0u, "the SyncGroup answer is still held back");
    ds_consumer_destroy(c); /* aborts the test process without the fix */
    kt_mock_stop(&m);
}

Test(kafka, consumer_needs_topics) {
    char *envp[] = {"DEALSCORE_KAFKA_BROKERS=127.0.0.1:1", NULL};
    load(envp);
    ds_consumer_t *c = (ds_consumer_t *)1;
    char err[512] = "";
    cr_assert_eq(ds_consumer_new(&c, &cfg, NULL, NULL, 0, err, sizeof err), DS_EINVAL);
    cr_assert_null(c);
}

Test(kafka, destroy_null_is_noop) {
    ds_producer_destroy(NULL);
    ds_consumer_destroy(NULL);
}

static void assert_traceparent_shape(const char *t) {
    cr_assert_eq(strlen(t), 55, "%s", t);
    cr_assert(strncmp(t, "00-", 3) == 0, "%s", t);
    cr_assert_eq(t[35], '-');
    cr_assert_eq(t[52], '-');
    cr_assert_str_eq(t + 53, "01");
    for (int i = 3; i < 55; i++) {
        if (i == 35 || i == 52) continue;
        cr_assert(strchr("0123456789abcdef", t[i]) && t[i], "bad char at %d: %s", i, t);
    }
    cr_assert(ds_event_traceparent_valid(t), "%s", t);
}

Test(kafka, traceparent_new_is_valid_and_random) {
    char a[DS_TRACEPARENT_SIZE], b[DS_TRACEPARENT_SIZE];
    ds_event_traceparent_new(a);
    ds_event_traceparent_new(b);
    assert_traceparent_shape(a);
    assert_traceparent_shape(b);
    cr_assert_str_neq(a, b);
}

Test(kafka, traceparent_validation) {
    cr_assert(ds_event_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    cr_assert(ds_event_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    cr_assert_not(ds_event_traceparent_valid(NULL));
    cr_assert_not(ds_event_traceparent_valid(""));
    /* all-zero trace-id and parent-id are invalid */
    cr_assert_not(ds_event_traceparent_valid("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    cr_assert_not(ds_event_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    /* uppercase, wrong version, wrong length, wrong separators */
    cr_assert_not(ds_event_traceparent_valid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    cr_assert_not(ds_event_traceparent_valid("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    cr_assert_not(ds_event_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011"));
    cr_assert_not(ds_event_traceparent_valid("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

Test(kafka, traceparent_child_keeps_trace_id) {
    const char *parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    char child[DS_TRACEPARENT_SIZE];
    ds_event_traceparent_child(parent, child);
    assert_traceparent_shape(child);
    cr_assert(strncmp(child, parent, 36) == 0, "trace-id changed: %s", child);
    cr_assert(strncmp(child + 36, parent + 36, 16) != 0, "parent-id kept: %s", child);

    ds_event_traceparent_child("garbage", child);
    assert_traceparent_shape(child);
    ds_event_traceparent_child(NULL, child);
    assert_traceparent_shape(child);
}
