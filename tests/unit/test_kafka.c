/* The librdkafka wrapper without a broker: configuration, trace context,
 * headers. */
#include <criterion/criterion.h>
#include <string.h>

#include "base/common.h"
#include "base/config.h"
#include "infra/kafka.h"
#include "base/log.h"

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
