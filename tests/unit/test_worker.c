/* The workers' shared loop (runtime/worker.h) against librdkafka's
 * in-process mock cluster: what it does while a batch's downstream events
 * are still being delivered. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/common.h"
#include "base/config.h"
#include "base/log.h"
#include "infra/kafka.h"
#include "runtime/metrics.h"
#include "runtime/service.h"
#include "runtime/worker.h"
#include "dstest.h"
#include "kafkatest.h"

enum { KAFKA_API_PRODUCE = 0 }; /* the protocol's ApiKey */
#define INPUT_MESSAGES 3
#define GROUP "dealscore-feature" /* the worker's default group */

static kt_mock_t mock;
static ds_config_t cfg;
static ds_service_t svc;

/* What the process callback saw. */
typedef struct {
    atomic_int batches;
    /* Downstream events not yet acknowledged when each batch began. */
    int undelivered_at[INPUT_MESSAGES + 1];
} probe_t;

static void setup(void) {
    char err[512];
    ds_log_init("test", DS_LOG_WARN);
    kt_mock_start(&mock);
    const char *topics[] = {"in", "in.dlq", "out"};
    for (size_t i = 0; i < DS_ARRAY_SIZE(topics); i++)
        cr_assert_eq(rd_kafka_mock_topic_create(mock.mc, topics[i], 1, 1), 0);
    /* One message a batch and no bursts, so that each input message is a batch
     * of its own. */
    char *envp[] = {mock.brokers, "DEALSCORE_BATCH_SIZE=1", "DEALSCORE_BURST_BATCH_SIZE=1", NULL};
    cr_assert_eq(ds_config_load(&cfg, DS_SVC_FEATURE, envp, err, sizeof err), 0, "%s", err);
    svc.cfg = &cfg;
    svc.metrics = ds_metrics_new();
    cr_assert_eq(ds_producer_new(&svc.producer, &cfg, err, sizeof err), 0, "%s", err);
}

static void teardown(void) {
    ds_producer_destroy(svc.producer);
    ds_metrics_destroy(svc.metrics);
    ds_config_close(&cfg);
    kt_mock_stop(&mock);
}

TestSuite(worker, .init = setup, .fini = teardown, .timeout = 60);

/* Sends count messages to "in" and waits until they are acknowledged. */
static void send_input(int count) {
    for (int i = 0; i < count; i++) {
        char key[16];
        snprintf(key, sizeof key, "deal-%d", i);
        ds_event_meta_t meta = {.type = "test.input"};
        cr_assert_eq(ds_producer_send(svc.producer, "in", key, strlen(key), "x", 1, &meta, NULL), 0);
    }
    cr_assert_eq(ds_producer_flush(svc.producer, 10000), 0);
}

/* Waits up to 30 s until the worker's thread has counted want in *n. */
static void await_count(atomic_int *n, int want) {
    int64_t deadline = ds_mono_us() + 30 * 1000000LL;
    while (atomic_load(n) < want && ds_mono_us() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Produces one "out" event per message, noting first how many of the
 * events of earlier batches were still undelivered. */
static int forward(ds_worker_t *w, void *ud, ds_worker_item_t *items, size_t n, char *errstr,
                   size_t errstr_size) {
    (void)errstr;
    (void)errstr_size;
    probe_t *p = ud;
    int batch = atomic_load(&p->batches);
    if (batch < INPUT_MESSAGES + 1) p->undelivered_at[batch] = ds_producer_pending(svc.producer);
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_message_t *m = items[i].msg;
        ds_event_meta_t meta = {.type = "test.output"};
        int rc = ds_worker_produce(w, ds_worker_topic(w, "out"), m->key, m->key_len, "y", 1, &meta);
        if (rc != 0) return rc;
    }
    atomic_fetch_add(&p->batches, 1);
    return 0;
}

static void *run_worker(void *arg) {
    static const char *const topics[] = {"in"};
    ds_worker_def_t def = {.name = "test", .topics = topics, .ntopics = 1, .process = forward, .ud = arg};
    ds_worker_run(&svc, &def);
    return NULL;
}

/* The offset the worker's group committed on "in" partition 0, asked by a
 * client of the group that does not subscribe: a subscribing one would be
 * joining the group while it asks. */
static int64_t committed_offset(void) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mock.mc), err,
                                   sizeof err),
                 RD_KAFKA_CONF_OK, "%s", err);
    cr_assert_eq(rd_kafka_conf_set(conf, "group.id", GROUP, err, sizeof err), RD_KAFKA_CONF_OK, "%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, "in", 0);
    cr_assert_eq(rd_kafka_committed(rk, parts, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    int64_t offset = parts->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(rk);
    return offset;
}

static int64_t end_offset(const char *topic) {
    int64_t lo = 0, hi = 0;
    cr_assert_eq(
        rd_kafka_query_watermark_offsets(ds_producer_handle(svc.producer), topic, 0, &lo, &hi, 10000),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    return hi;
}

/* The mock broker holds the answer to the worker's first produce request
 * for 5 s: the batches behind the first are processed meanwhile, and every
 * offset is still committed only once its batch's event is in. */
Test(worker, processes_the_next_batch_while_the_last_ones_events_are_delivered) {
    send_input(INPUT_MESSAGES);
    cr_assert_eq(rd_kafka_mock_broker_push_request_error_rtts(mock.mc, 1, KAFKA_API_PRODUCE, 1,
                                                              RD_KAFKA_RESP_ERR_NO_ERROR, 5000),
                 0);
    probe_t probe = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_worker, &probe), 0);
    await_count(&probe.batches, INPUT_MESSAGES);
    int64_t deadline = ds_mono_us() + 30 * 1000000LL;
    cr_assert_eq(atomic_load(&probe.batches), INPUT_MESSAGES, "every input message was processed");
    cr_assert_eq(probe.undelivered_at[0], 0);
    cr_assert_geq(probe.undelivered_at[1], 1, "the second batch began while the first one's event was held");
    while (end_offset("out") < INPUT_MESSAGES && ds_mono_us() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&svc.stopping, 1);
    pthread_join(th, NULL);
    cr_assert_eq(end_offset("out"), INPUT_MESSAGES, "one event per input message, none lost or doubled");
    cr_assert_eq(committed_offset(), INPUT_MESSAGES, "the offsets of every batch were committed on close");
}

/* The sizes of the process calls. */
typedef struct {
    atomic_int calls, messages, largest;
} sizes_t;

static int record_size(ds_worker_t *w, void *ud, ds_worker_item_t *items, size_t n, char *errstr,
                       size_t errstr_size) {
    (void)w;
    (void)items;
    (void)errstr;
    (void)errstr_size;
    sizes_t *s = ud;
    atomic_fetch_add(&s->calls, 1);
    atomic_fetch_add(&s->messages, (int)n);
    if ((int)n > atomic_load(&s->largest)) atomic_store(&s->largest, (int)n);
    return 0;
}

static int key_of(void *ud, const rd_kafka_message_t *m, char *key, size_t keysz, int64_t *rank) {
    (void)ud;
    snprintf(key, keysz, "%.*s", (int)m->key_len, (const char *)m->key);
    *rank = m->offset;
    return 0;
}

static void *run_sizing_worker(void *arg) {
    static const char *const topics[] = {"in"};
    ds_worker_def_t def = {.name = "test",
                           .topics = topics,
                           .ntopics = 1,
                           .process = record_size,
                           .ud = arg,
                           .coalesce = key_of};
    ds_worker_run(&svc, &def);
    return NULL;
}

/* The value of the sample name{labels} in the service's metrics, or -1. */
static double metric_value(const char *sample) {
    char *text = ds_metrics_render(svc.metrics);
    double v = dst_metric_in(text, sample);
    free(text);
    return v;
}

/* A burst over many distinct deals ends once it holds DEALSCORE_BURST_MAX_KB
 * of messages (here 1 KB: 18 messages of 50 bytes and a 7-byte key), well
 * before DEALSCORE_BURST_BATCH_SIZE: its memory is bounded by bytes. It
 * gathers a batch (10) at most per poll, so it stops within a poll of the
 * bound, and the process callback gets it in slices of a batch. Without the
 * bound, the 100 messages waiting were one batch. */
Test(worker, a_burst_ends_once_it_holds_its_bytes_and_is_processed_a_batch_at_a_time) {
    char err[512];
    ds_config_close(&cfg);
    char *envp[] = {mock.brokers,
                    "DEALSCORE_BATCH_SIZE=10",
                    "DEALSCORE_BATCH_WAIT_MS=1000",
                    "DEALSCORE_BURST_BATCH_SIZE=1000",
                    "DEALSCORE_BURST_MAX_KB=1",
                    NULL};
    cr_assert_eq(ds_config_load(&cfg, DS_SVC_FEATURE, envp, err, sizeof err), 0, "%s", err);
    enum { COUNT = 100 };
    char payload[50];
    memset(payload, 'x', sizeof payload);
    for (int i = 0; i < COUNT; i++) {
        char key[16];
        snprintf(key, sizeof key, "deal%03d", i);
        ds_event_meta_t meta = {.type = "test.input"};
        cr_assert_eq(
            ds_producer_send(svc.producer, "in", key, strlen(key), payload, sizeof payload, &meta, NULL), 0);
    }
    cr_assert_eq(ds_producer_flush(svc.producer, 10000), 0);
    sizes_t sizes = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_sizing_worker, &sizes), 0);
    await_count(&sizes.messages, COUNT);
    atomic_store(&svc.stopping, 1);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&sizes.messages), COUNT, "every message was processed once");
    cr_expect_leq(atomic_load(&sizes.largest), 10, "the process callback got slices of a batch at most");
    double batches = metric_value("dealscore_worker_batch_size_count{worker=\"test\"}");
    cr_expect_geq(metric_value("dealscore_worker_burst_batches_total{worker=\"test\"}"), 1.0,
                  "the backlog started a burst");
    cr_expect_geq(batches, 4.0, "bursts of 18 to 27 messages: at least 4 batches");
    cr_expect_eq(metric_value("dealscore_worker_batch_size_bucket{worker=\"test\",le=\"50\"}"), batches,
                 "no batch held more than 50 messages");
}
