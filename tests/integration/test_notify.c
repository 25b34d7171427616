/* dealscore-notify against the real Postgres and Kafka: subscriptions made
 * with its command line, PredictionMade events produced by the test, and a
 * receiver (tests/support/receiver.h) that records what arrives and answers
 * with the statuses the test scripts. Short backoff settings keep the
 * retries within a second. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <openssl/hmac.h>

#include "dealscore/v1/events.pb-c.h"
#include "dstest.h"
#include "receiver.h"

#define OPP_A "a0000000-0000-4000-8000-000000000101"

static dst_t T;
static receiver_t RV;
static ds_config_t pcfg;
static ds_producer_t *prod;
static char *topic;
static PGconn *db;
static char org_acme[40], org_globex[40];

static void setup(void) {
    dst_setup(&T);
    dst_env_add(&T, "DEALSCORE_BATCH_WAIT_MS=20");
    dst_env_add(&T, "DEALSCORE_NOTIFY_RETRY_BASE_MS=200");
    dst_env_add(&T, "DEALSCORE_NOTIFY_RETRY_MAX_MS=400");
    dst_env_add(&T, "DEALSCORE_NOTIFY_POLL_MS=100");
    dst_env_add(&T, "DEALSCORE_NOTIFY_TIMEOUT_MS=1000");
    dst_env_add(&T, "DEALSCORE_NOTIFY_MAX_ATTEMPTS=3");
    prod = dst_producer(&T, &pcfg);
    topic = ds_config_topic(&pcfg, DS_TOPIC_PREDICTION_MADE);
    db = pgt_connect_db(&T.db);
    pgt_exec(db, "insert into orgs (slug) values ('acme'), ('globex')");
    char *a = pgt_valuef(db, "select id from orgs where slug = 'acme'");
    char *g = pgt_valuef(db, "select id from orgs where slug = 'globex'");
    snprintf(org_acme, sizeof org_acme, "%s", a);
    snprintf(org_globex, sizeof org_globex, "%s", g);
    free(a);
    free(g);
    pgt_execf(db,
              "insert into opportunities (id, org_id, external_id, stage, created_at)"
              " values ('" OPP_A "', '%s', '006A', 'discovery', '2026-11-01T09:00:00Z')",
              org_acme);
    receiver_start(&RV, 200);
}

static void teardown(void) {
    dst_stop(&T);
    receiver_stop(&RV);
    PQfinish(db);
    ds_producer_destroy(prod);
    free(topic);
    ds_config_close(&pcfg);
    dst_teardown(&T);
}

TestSuite(notify, .init = setup, .fini = teardown, .timeout = 180);

/* Runs dealscore-notify with args; returns its exit code, stdout in *out and
 * stderr in *err (the caller frees both). */
static int cli(char **out, char **err, const char *a1, const char *a2, const char *a3, const char *a4,
               const char *a5, const char *a6, const char *a7, const char *a8) {
    char *bin = proc_bin("dealscore-notify");
    char *argv[] = {bin,        (char *)a1, (char *)a2, (char *)a3, (char *)a4,
                    (char *)a5, (char *)a6, (char *)a7, (char *)a8, NULL};
    int rc = proc_run(argv, T.env, out, err, 30000);
    free(bin);
    return rc;
}

typedef struct {
    char id[40];
    char secret[80];
} sub_t;

/* subscription add for org slug to the receiver's path, with min_change. */
static sub_t add_subscription(const char *slug, const char *path, const char *min_change) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", RV.port, path);
    char *out = NULL, *err = NULL;
    int rc = cli(&out, &err, "subscription", "add", "--org", slug, "--url", url, "--min-change", min_change);
    cr_assert_eq(rc, 0, "subscription add exited %d: %s", rc, err);
    sub_t s = {0};
    cr_assert_eq(sscanf(out, "id=%39s\nsecret=%79s", s.id, s.secret), 2, "output: %s", out);
    cr_assert(ds_uuid_valid(s.id), "id %s", s.id);
    cr_assert_eq(strlen(s.secret), 64);
    free(out);
    free(err);
    return s;
}

/* Produces a PredictionMade of opp (in org) with two drivers; prev NaN for
 * a first score. */
static void produce(const char *org, const char *opp, const char *event_id, double proba, double prev) {
    Dealscore__V1__PredictionMade pm = DEALSCORE__V1__PREDICTION_MADE__INIT;
    Dealscore__V1__Driver d1 = DEALSCORE__V1__DRIVER__INIT, d2 = DEALSCORE__V1__DRIVER__INIT;
    d1.name = "days_in_stage";
    d1.value = 12;
    d1.contribution = -0.5;
    d2.name = "stage_index";
    d2.value = 3;
    d2.contribution = 0.25;
    Dealscore__V1__Driver *drivers[] = {&d2, &d1};
    pm.event_id = (char *)event_id;
    pm.org_id = (char *)org;
    pm.opportunity_id = (char *)opp;
    pm.as_of_us = 1796000000000000LL;
    pm.model_version = "m7";
    pm.proba_close = proba;
    pm.has_previous = !isnan(prev);
    pm.previous_proba = prev;
    pm.n_top_drivers = 2;
    pm.top_drivers = drivers;
    Dealscore__V1__PredictionChange change = DEALSCORE__V1__PREDICTION_CHANGE__INIT;
    Dealscore__V1__DriverChange moved = DEALSCORE__V1__DRIVER_CHANGE__INIT;
    Dealscore__V1__DriverChange *movedp[] = {&moved};
    if (!isnan(prev)) {
        moved.feature = "stage_index";
        moved.label = "Stage";
        moved.previous = 0.125;
        moved.current = 0.25;
        moved.change = 0.125;
        change.has_previous = true;
        change.previous_proba = prev;
        change.delta = proba - prev;
        change.drivers = movedp;
        change.n_drivers = 1;
        pm.change = &change;
    }
    uint8_t buf[1024];
    size_t len = dealscore__v1__prediction_made__pack(&pm, buf);
    ds_event_meta_t meta = {.id = event_id, .type = DS_CE_TYPE_PREDICTION_MADE};
    cr_assert_eq(ds_producer_send(prod, topic, opp, strlen(opp), buf, len, &meta, NULL), 0);
}

static void flush(void) { cr_assert_eq(ds_producer_flush(prod, 10000), 0); }

/* The receiver's request i checked: signed with secret over its exact body
 * (HMAC-SHA256 of "<timestamp>.<body>" computed here with OpenSSL), sent as
 * a CloudEvent; returns its body parsed (the caller decrefs it). */
static json_t *verified(size_t i, const char *secret, recv_req_t *out) {
    recv_req_t r = receiver_get(&RV, i);
    cr_assert_str_eq(r.content_type, "application/cloudevents+json");
    long long ts = strtoll(r.timestamp, NULL, 10);
    cr_assert_lt(llabs(ts - (long long)time(NULL)), 60, "timestamp %s", r.timestamp);
    char *msg = pgt_fmt("%s.%s", r.timestamp, r.body);
    unsigned char mac[32];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, strlen(msg), mac, &maclen);
    char want[80] = "sha256=";
    for (int k = 0; k < 32; k++) sprintf(want + 7 + 2 * k, "%02x", mac[k]);
    cr_assert_str_eq(r.signature, want, "signature of body %s", r.body);
    free(msg);
    json_error_t je;
    json_t *ev = json_loads(r.body, 0, &je);
    cr_assert(ev, "body is not JSON: %s", r.body);
    if (out)
        *out = r;
    else
        free(r.body);
    return ev;
}

static const char *jstr(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    cr_assert(s, "no string %s", key);
    return s;
}

Test(notify, a_delivered_event_is_the_signed_cloudevent_of_the_prediction) {
    sub_t s = add_subscription("acme", "/hooks/acme", "0.05");
    dst_start(&T, "notify");
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000001", 0.75, 0.625);
    flush();
    cr_assert_eq(receiver_wait(&RV, 1, 20000), 1);
    recv_req_t r;
    json_t *ev = verified(0, s.secret, &r);
    cr_assert_str_eq(r.path, "/hooks/acme");
    /* The body, byte for byte: only the id and the time are not known
     * before (the id is the delivery's, the time the message's). */
    const char *id = jstr(ev, "id"), *time_s = jstr(ev, "time");
    char *want = pgt_fmt(
        "{\"specversion\":\"1.0\",\"type\":\"com.dealscore.score.changed\",\"source\":\"/dealscore\","
        "\"id\":\"%s\",\"time\":\"%s\",\"subject\":\"" OPP_A "\",\"datacontenttype\":\"application/json\","
        "\"data\":{\"org_id\":\"%s\",\"opportunity_id\":\"" OPP_A "\",\"external_id\":\"006A\","
        "\"probability\":0.75,\"previous_probability\":0.625,\"model_version\":\"m7\","
        "\"as_of\":\"2026-11-30T00:53:20.000000Z\",\"scored_at\":\"%s\","
        "\"prediction_event_id\":\"e0000000-0000-4000-8000-000000000001\",\"drivers\":{\"positive\":["
        "{\"feature\":\"stage_index\",\"label\":\"Stage\",\"value\":3,\"contribution\":0.25}],\"negative\":["
        "{\"feature\":\"days_in_stage\",\"label\":\"Days in current stage\",\"value\":12,"
        "\"contribution\":-0.5}]},\"change\":{\"previous_proba\":0.625,\"delta\":0.125,\"drivers\":["
        "{\"feature\":\"stage_index\",\"label\":\"Stage\",\"previous\":0.125,\"current\":0.25,\"change\":0."
        "125}]}}}",
        id, time_s, org_acme, time_s);
    cr_assert_str_eq(r.body, want);
    int64_t t_us;
    cr_assert_eq(ds_parse_time_us(time_s, &t_us), 0, "time %s", time_s);
    cr_assert_lt(llabs((long long)(t_us / 1000000) - (long long)time(NULL)), 60);
    /* The delivery row: the same id, delivered at the first try. */
    cr_assert_eq(dst_wait_count(&T,
                                "select count(*) from dealscore_internal.notify_deliveries"
                                " where status = 'delivered' and attempts = 1 and last_status = 200",
                                1, 10000),
                 1);
    char *row_id = pgt_valuef(db, "select id from dealscore_internal.notify_deliveries");
    cr_assert_str_eq(row_id, id);
    dst_wait_metric(&T, "dealscore_notify_delivered_total", 1);
    cr_assert_eq(dst_metric(&T, "dealscore_notify_attempts_total{class=\"2xx\"}"), 1);
    cr_assert_eq(dst_metric(&T, "dealscore_notify_events_total"), 1);
    free(row_id);
    free(want);
    free(r.body);
    json_decref(ev);
}

Test(notify, a_receiver_answering_500_then_200_gets_the_event_again_with_the_same_id) {
    RV.script[0] = 500;
    RV.nscript = 1;
    sub_t s = add_subscription("acme", "/h", "0");
    dst_start(&T, "notify");
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000002", 0.5, NAN);
    flush();
    cr_assert_eq(receiver_wait(&RV, 2, 20000), 2);
    json_t *first = verified(0, s.secret, NULL), *second = verified(1, s.secret, NULL);
    cr_assert_str_eq(jstr(first, "id"), jstr(second, "id"));
    cr_assert(json_is_null(json_object_get(json_object_get(second, "data"), "previous_probability")));
    cr_assert_eq(dst_wait_count(&T,
                                "select count(*) from dealscore_internal.notify_deliveries"
                                " where status = 'delivered' and attempts = 2 and last_status = 200"
                                " and last_error is null",
                                1, 10000),
                 1);
    dst_wait_metric(&T, "dealscore_notify_delivered_total", 1);
    cr_assert_eq(dst_metric(&T, "dealscore_notify_attempts_total{class=\"5xx\"}"), 1);
    cr_assert_eq(dst_metric(&T, "dealscore_notify_attempts_total{class=\"2xx\"}"), 1);
    cr_assert_eq(receiver_count(&RV), 2);
    json_decref(first);
    json_decref(second);
}

Test(notify, small_changes_and_other_orgs_events_make_no_delivery) {
    add_subscription("acme", "/acme", "0.05");
    add_subscription("globex", "/globex", "0");
    dst_start(&T, "notify");
    /* One partition key: the marker is processed after the small change. */
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000003", 0.62, 0.60);
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000004", 0.40, 0.62);
    flush();
    cr_assert_eq(receiver_wait(&RV, 1, 20000), 1);
    recv_req_t r = receiver_get(&RV, 0);
    cr_assert_str_eq(r.path, "/acme");
    cr_assert(strstr(r.body, "\"prediction_event_id\":\"e0000000-0000-4000-8000-000000000004\""), "%s",
              r.body);
    free(r.body);
    /* The marker's row exists, so the batch of the small change is done. */
    cr_assert_eq(dst_count(&T, "select count(*) from dealscore_internal.notify_deliveries"), 1);
    cr_assert_eq(receiver_count(&RV), 1);
}

/* Request bodies' ids, each once, into a JSON object id -> true. */
static size_t distinct_ids(json_t *seen) {
    size_t n = receiver_count(&RV);
    for (size_t i = 0; i < n; i++) {
        recv_req_t r = receiver_get(&RV, i);
        json_t *ev = json_loads(r.body, 0, NULL);
        cr_assert(ev);
        json_object_set_new(seen, jstr(json_object_get(ev, "data"), "prediction_event_id"), json_true());
        json_decref(ev);
        free(r.body);
    }
    return json_object_size(seen);
}

Test(notify, nothing_is_lost_across_a_kill_9) {
    enum { N = 200 };
    add_subscription("acme", "/h", "0");
    dst_env_add(&T, "DEALSCORE_NOTIFY_CONCURRENCY=2");
    dst_env_add(&T, "DEALSCORE_BATCH_SIZE=10");
    dst_env_add(&T, "DEALSCORE_BURST_BATCH_SIZE=1");
    /* The killed consumer leaves the group when its session times out
     * (the broker's smallest): the restarted one gets the partitions then. */
    dst_env_add(&T, "KAFKA_SESSION_TIMEOUT_MS=6000");
    RV.delay_ms = 5; /* about 400 events/s: the kill comes mid-way */
    dst_start(&T, "notify");
    char ids[N][37];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "e0000000-0000-4000-8000-%012d", 1000 + i);
        char opp[37];
        snprintf(opp, sizeof opp, "a0000000-0000-4000-8000-%012d", 5000 + i);
        produce(org_acme, opp, ids[i], 0.3, 0.2);
    }
    flush();
    cr_assert_geq(receiver_wait(&RV, N / 4, 20000), N / 4);
    kill(T.pid, SIGKILL);
    cr_assert_eq(proc_wait(T.pid, 5000), 128 + SIGKILL);
    T.pid = 0;
    size_t before = receiver_count(&RV);
    cr_assert_lt(before, N, "every event arrived before the kill: nothing was tested");
    dst_start(&T, "notify");
    json_t *seen = json_object();
    long long deadline = proc_now_ms() + 30000;
    while (distinct_ids(seen) < N && proc_now_ms() < deadline) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    cr_assert_eq(json_object_size(seen), N, "the receiver saw %zu of %d events", json_object_size(seen), N);
    for (int i = 0; i < N; i++) cr_assert(json_object_get(seen, ids[i]), "event %s never arrived", ids[i]);
    cr_assert_eq(dst_wait_count(&T,
                                "select count(*) from dealscore_internal.notify_deliveries"
                                " where status = 'delivered'",
                                N, 20000),
                 N);
    cr_assert_eq(dst_count(&T, "select count(*) from dealscore_internal.notify_deliveries"), N);
    json_decref(seen);
}

Test(notify, the_command_line_adds_lists_and_removes_subscriptions) {
    sub_t a = add_subscription("acme", "/one", "0.05");
    sub_t b = add_subscription("acme", "/two", "0.1");
    char *out = NULL, *err = NULL;
    cr_assert_eq(cli(&out, &err, "subscription", "list", "--org", "acme", NULL, NULL, NULL, NULL), 0, "%s",
                 err);
    cr_assert(strstr(out, a.id) && strstr(out, b.id), "%s", out);
    cr_assert(strstr(out, "score.changed\t0.1\t"), "%s", out);
    cr_assert_null(strstr(out, a.secret), "list shows a secret: %s", out);
    free(out);
    free(err);

    cr_assert_eq(cli(&out, &err, "subscription", "remove", a.id, NULL, NULL, NULL, NULL, NULL), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(cli(&out, &err, "subscription", "list", "--org", "acme", NULL, NULL, NULL, NULL), 0);
    cr_assert(strstr(out, b.id) && !strstr(out, a.id), "%s", out);
    free(out);
    free(err);
    cr_assert_eq(cli(&out, &err, "subscription", "remove", a.id, NULL, NULL, NULL, NULL, NULL), 1);
    cr_assert(strstr(err, "no active subscription"), "%s", err);
    free(out);
    free(err);

    /* Bad arguments: exit 2, a line naming the option, nothing stored. */
    cr_assert_eq(
        cli(&out, &err, "subscription", "add", "--org", "acme", "--url", "http://x/", "--min-change", "1.5"),
        2);
    cr_assert(strstr(err, "--min-change"), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(cli(&out, &err, "subscription", "add", "--org", "acme", "--url", "ftp://x/", NULL, NULL), 2);
    cr_assert(strstr(err, "--url"), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(cli(&out, &err, "subscription", "add", "--org", "nosuch", "--url", "http://x/", NULL, NULL),
                 1);
    cr_assert(strstr(err, "no org \"nosuch\""), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(dst_count(&T, "select count(*) from dealscore_internal.notify_subscriptions"), 2);
}

Test(notify, a_failed_delivery_is_listed_and_replayed_with_the_same_id) {
    receiver_set_default(&RV, 503);
    sub_t s = add_subscription("acme", "/h", "0");
    dst_start(&T, "notify");
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000005", 0.9, 0.1);
    flush();
    /* DEALSCORE_NOTIFY_MAX_ATTEMPTS=3: three tries, then failed. */
    cr_assert_eq(dst_wait_count(&T,
                                "select count(*) from dealscore_internal.notify_deliveries"
                                " where status = 'failed' and attempts = 3 and last_status = 503",
                                1, 20000),
                 1);
    cr_assert_eq(receiver_count(&RV), 3);
    dst_wait_metric(&T, "dealscore_notify_failed_total", 1);
    char *id = pgt_valuef(db, "select id from dealscore_internal.notify_deliveries");
    char *out = NULL, *err = NULL;
    cr_assert_eq(cli(&out, &err, "deliveries", "list", "--org", "acme", "--failed", NULL, NULL, NULL), 0,
                 "%s", err);
    cr_assert(strstr(out, id) && strstr(out, "\tfailed\t3\t503\t"), "%s", out);
    free(out);
    free(err);

    receiver_set_default(&RV, 200);
    cr_assert_eq(cli(&out, &err, "deliveries", "replay", id, NULL, NULL, NULL, NULL, NULL), 0, "%s", err);
    cr_assert_str_eq(out, "replayed 1\n");
    free(out);
    free(err);
    cr_assert_eq(receiver_wait(&RV, 4, 20000), 4);
    json_t *ev = verified(3, s.secret, NULL);
    cr_assert_str_eq(jstr(ev, "id"), id);
    cr_assert_eq(dst_wait_count(&T,
                                "select count(*) from dealscore_internal.notify_deliveries"
                                " where status = 'delivered' and attempts = 1",
                                1, 10000),
                 1);
    cr_assert_eq(cli(&out, &err, "deliveries", "list", "--org", "acme", "--failed", NULL, NULL, NULL), 0);
    cr_assert_null(strstr(out, id), "%s", out);
    free(out);
    free(err);
    json_decref(ev);
    free(id);
}

Test(notify, a_receiver_that_does_not_answer_in_time_gets_the_event_again) {
    sub_t s = add_subscription("acme", "/slow", "0");
    RV.delay_ms = 1500; /* past DEALSCORE_NOTIFY_TIMEOUT_MS=1000 */
    dst_start(&T, "notify");
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000006", 0.3, 0.2);
    flush();
    cr_assert_eq(receiver_wait(&RV, 1, 20000), 1);
    RV.delay_ms = 0;
    cr_assert_eq(receiver_wait(&RV, 2, 20000), 2);
    json_t *first = verified(0, s.secret, NULL), *second = verified(1, s.secret, NULL);
    cr_assert_str_eq(jstr(first, "id"), jstr(second, "id"));
    cr_assert_eq(dst_wait_count(&T,
                                "select count(*) from dealscore_internal.notify_deliveries"
                                " where status = 'delivered' and attempts = 2",
                                1, 10000),
                 1);
    dst_wait_metric(&T, "dealscore_notify_delivered_total", 1);
    cr_assert_eq(dst_metric(&T, "dealscore_notify_attempts_total{class=\"timeout\"}"), 1);
    json_decref(first);
    json_decref(second);
}

Test(notify, a_410_gone_deactivates_the_subscription_and_fails_its_deliveries) {
    receiver_set_default(&RV, 410);
    sub_t s = add_subscription("acme", "/gone", "0");
    dst_start(&T, "notify");
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000007", 0.3, 0.2);
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000008", 0.5, 0.3);
    flush();
    cr_assert_eq(dst_wait_count(&T,
                                "select count(*) from dealscore_internal.notify_deliveries"
                                " where status = 'failed'",
                                2, 20000),
                 2);
    char *q = pgt_fmt("select count(*) from dealscore_internal.notify_subscriptions"
                      " where id = '%s' and not active",
                      s.id);
    cr_assert_eq(dst_count(&T, q), 1);
    free(q);
    /* Tried at most once each: a 410 is not retried. */
    cr_assert_eq(
        dst_count(&T, "select count(*) from dealscore_internal.notify_deliveries where attempts > 1"), 0);
    cr_assert_leq(receiver_count(&RV), 2);
    char *out = NULL, *err = NULL;
    cr_assert_eq(cli(&out, &err, "subscription", "list", "--org", "acme", NULL, NULL, NULL, NULL), 0);
    cr_assert_null(strstr(out, s.id), "%s", out);
    free(out);
    free(err);
}

Test(notify, a_payload_that_is_no_prediction_goes_to_the_dead_letters) {
    add_subscription("acme", "/h", "0");
    dst_start(&T, "notify");
    ds_consumer_t *dlq = dst_consumer(&T, DS_TOPIC_PREDICTION_MADE DS_TOPIC_DLQ_SUFFIX);
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x01};
    ds_event_meta_t meta = {.type = DS_CE_TYPE_PREDICTION_MADE};
    cr_assert_eq(ds_producer_send(prod, topic, "k", 1, garbage, sizeof garbage, &meta, NULL), 0);
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000009", 0.3, 0.2);
    flush();
    rd_kafka_message_t *m[1];
    dst_consume(dlq, m, 1, 20000);
    cr_assert_eq(m[0]->len, sizeof garbage);
    cr_assert_eq(memcmp(m[0]->payload, garbage, sizeof garbage), 0);
    rd_kafka_message_destroy(m[0]);
    cr_assert_eq(receiver_wait(&RV, 1, 20000), 1, "the good event after it is delivered");
    ds_consumer_destroy(dlq);
}

Test(notify, removing_a_subscription_fails_its_pending_deliveries) {
    receiver_set_default(&RV, 500);
    sub_t s = add_subscription("acme", "/h", "0");
    dst_env_add(&T, "DEALSCORE_NOTIFY_RETRY_BASE_MS=60000"); /* the retry stays pending */
    dst_env_add(&T, "DEALSCORE_NOTIFY_RETRY_MAX_MS=60000");
    dst_start(&T, "notify");
    produce(org_acme, OPP_A, "e0000000-0000-4000-8000-000000000010", 0.3, 0.2);
    flush();
    cr_assert_eq(dst_wait_count(&T,
                                "select count(*) from dealscore_internal.notify_deliveries"
                                " where status = 'pending' and attempts = 1 and last_status = 500",
                                1, 20000),
                 1);
    char *out = NULL, *err = NULL;
    cr_assert_eq(cli(&out, &err, "subscription", "remove", s.id, NULL, NULL, NULL, NULL, NULL), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(dst_count(&T, "select count(*) from dealscore_internal.notify_deliveries"
                               " where status = 'failed' and last_error = 'subscription removed'"),
                 1);
    /* A delivery of a removed subscription is not replayed. */
    char *id = pgt_valuef(db, "select id from dealscore_internal.notify_deliveries");
    cr_assert_eq(cli(&out, &err, "deliveries", "replay", id, NULL, NULL, NULL, NULL, NULL), 1);
    cr_assert(strstr(err, "of an active subscription"), "%s", err);
    free(out);
    free(err);
    free(id);
}
