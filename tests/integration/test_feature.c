/* The feature worker through the real Kafka and Postgres: a webhook change
 * yields features.ready for that opportunity; a replayed event gives the same
 * snapshot and no duplicate; a poison message lands in the DLQ with the error
 * header and the next message is processed. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>

#include "dstest.h"
#include "store/feature_loader.h"
#include "domain/features.h"
#include "dealscore/v1/events.pb-c.h"

static dst_t T; /* the feature worker */
static dst_t I; /* ingest, same database and topics */

static void setup(void) {
    dst_setup(&T);
    free(dst_token(&T, "acme", NULL));
    dst_start(&T, "feature");
}

static void teardown(void) {
    if (I.nenv) dst_teardown(&I);
    memset(&I, 0, sizeof I);
    dst_teardown(&T);
}

TestSuite(feature, .init = setup, .fini = teardown, .timeout = 120);

static double feature_value(const Dealscore__V1__FeaturesReady *fr, const char *name) {
    for (size_t i = 0; i < fr->n_features; i++)
        if (strcmp(fr->features[i]->name, name) == 0) return fr->features[i]->value;
    cr_fatal("feature %s missing from features.ready", name);
    return NAN;
}

Test(feature, webhook_change_yields_features_ready) {
    dst_clone(&I, &T);
    dst_start(&I, "ingest");
    ds_consumer_t *c = dst_consumer(&T, "features.ready");
    ds_consumer_t *oc = dst_consumer(&T, "opportunity.changed");
    httpc_resp_t r =
        dst_post(&I, "/v1/opportunities",
                 "{\"external_id\":\"OPP-1\",\"stage\":\"proposal\",\"created_at\":\"2026-03-01T00:00:00Z\","
                 "\"amount\":999,\"changed_at\":\"2026-03-11T00:00:00Z\",\"close_date\":\"2026-03-31\"}",
                 NULL, NULL);
    cr_assert_eq(r.status, 202, "%s", r.body);
    httpc_free(&r);
    r = dst_post(&I, "/v1/transcripts",
                 "{\"external_id\":\"TR-1\",\"opportunity_external_id\":\"OPP-1\",\"occurred_at\":\"2026-03-"
                 "12T00:00:00Z\","
                 "\"text\":\"Dana is our champion. We have not found the economic buyer.\"}",
                 NULL, NULL);
    cr_assert_eq(r.status, 202, "%s", r.body);
    httpc_free(&r);
    PGconn *db = pgt_connect_db(&T.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    /* The transcript's opportunity.changed event, as the relay published it. */
    char ev2[37] = "";
    for (int seen = 0; seen < 2 && !ev2[0]; seen++) {
        rd_kafka_message_t *m[1];
        dst_consume(oc, m, 1, 30000);
        Dealscore__V1__OpportunityChanged *oe =
            dealscore__v1__opportunity_changed__unpack(NULL, m[0]->len, m[0]->payload);
        cr_assert(oe, "opportunity.changed decodes");
        if (oe->kind == DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_TRANSCRIPT_ADDED)
            snprintf(ev2, sizeof ev2, "%s", oe->event_id);
        dealscore__v1__opportunity_changed__free_unpacked(oe, NULL);
        ds_consumer_release(m, 1);
    }
    cr_assert(ev2[0], "the transcript's opportunity.changed event");
    ds_consumer_destroy(oc);
    /* Both events may be coalesced into one computation or come one by one:
     * read until the transcript's event has been accounted for. */
    Dealscore__V1__FeaturesReady *last = NULL;
    long long deadline = proc_now_ms() + 30000;
    while (proc_now_ms() < deadline) {
        rd_kafka_message_t *m[1];
        dst_consume(c, m, 1, 30000);
        cr_assert_eq(m[0]->key_len, strlen(opp));
        cr_assert(memcmp(m[0]->key, opp, m[0]->key_len) == 0);
        if (last) dealscore__v1__features_ready__free_unpacked(last, NULL);
        last = dealscore__v1__features_ready__unpack(NULL, m[0]->len, m[0]->payload);
        cr_assert(last, "features.ready decodes");
        char h[64];
        cr_expect_eq(ds_kafka_header_get(m[0], "ce_type", h, sizeof h), 0);
        cr_expect_str_eq(h, "dealscore.features.ready.v1");
        ds_consumer_release(m, 1);
        if (strcmp(last->causation_id, ev2) == 0) break;
    }
    cr_assert(last && strcmp(last->causation_id, ev2) == 0,
              "a features.ready caused by the transcript event");
    cr_expect_str_eq(last->opportunity_id, opp);
    cr_expect_str_eq(last->org_id, T.org_id);
    cr_expect_str_eq(last->feature_version, DS_FEATURE_VERSION);
    cr_expect_eq(last->as_of_us, 1773273600LL * 1000000); /* 2026-03-12T00:00:00Z: the transcript */
    cr_expect_eq(last->n_features, (size_t)DS_FEATURE_COUNT);
    cr_expect_eq(feature_value(last, "stage_index"), 4.0); /* proposal */
    cr_expect_eq(feature_value(last, "days_open"), 11.0);
    cr_expect_eq(feature_value(last, "days_to_close"), 19.0);
    cr_expect_eq(feature_value(last, "meddicc_champion"), 1.0);
    cr_expect_eq(feature_value(last, "meddicc_economic_buyer"), 0.0, "negated mention does not count");
    cr_expect(last->meddicc && last->meddicc->champion && !last->meddicc->economic_buyer);
    cr_expect_eq(last->meddicc->coverage, 1);
    dealscore__v1__features_ready__free_unpacked(last, NULL);
    /* The snapshot row holds the same values and the evidence span. */
    cr_expect_eq(pgt_longf(db,
                           "select count(*) from features_snapshot where opportunity_id = '%s'"
                           " and as_of = '2026-03-12T00:00:00Z' and (features->>'stage_index')::int = 4"
                           " and meddicc->'champion'->'evidence'->0->>'start' = '12'"
                           " and meddicc->'champion'->'evidence'->0->>'end' = '20'"
                           " and meddicc->'champion'->'evidence'->0->>'transcript_id' is not null",
                           opp),
                 1);
    free(opp);
    PQfinish(db);
    ds_consumer_destroy(c);
}

static void produce_change(ds_producer_t *p, const char *topic, const char *event_id, const char *org,
                           const char *opp, int64_t at_us) {
    Dealscore__V1__OpportunityChanged ev = DEALSCORE__V1__OPPORTUNITY_CHANGED__INIT;
    ev.event_id = (char *)event_id;
    ev.org_id = (char *)org;
    ev.opportunity_id = (char *)opp;
    ev.account_id = "";
    ev.kind = DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_STAGE_CHANGED;
    ev.occurred_at_us = at_us;
    ev.source = "test";
    ev.source_hash = "";
    uint8_t buf[512];
    size_t len = dealscore__v1__opportunity_changed__pack(&ev, buf);
    ds_event_meta_t meta = {.id = event_id, .type = DS_CE_TYPE_OPPORTUNITY_CHANGED, .time_us = at_us};
    cr_assert_eq(ds_producer_send(p, topic, opp, strlen(opp), buf, len, &meta, NULL), 0);
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
}

static char *insert_opportunity(PGconn *db, const char *ext) {
    pgt_execf(db,
              "insert into opportunities (org_id, external_id, stage, created_at, amount)"
              " values ('%s', '%s', 'demo', '2026-01-01T00:00:00Z', 5000)",
              T.org_id, ext);
    return pgt_valuef(db, "select id from opportunities where external_id = '%s'", ext);
}

/* A connection to the worker's database for the store's own calls. */
static ds_pg_t *connect_store(void) {
    ds_pg_t *pg = NULL;
    char err[512];
    cr_assert_eq(ds_pg_new(&pg, T.db.conninfo, "test", err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_pg_ensure(pg, 5000, NULL, err, sizeof err), 0, "%s", err);
    return pg;
}

Test(feature, replayed_event_gives_the_same_snapshot_and_no_duplicate) {
    PGconn *db = pgt_connect_db(&T.db);
    char *opp = insert_opportunity(db, "OPP-R");
    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&T, &cfg);
    char *topic = pgt_fmt("%sopportunity.changed", T.prefix);
    ds_consumer_t *c = dst_consumer(&T, "features.ready");
    const char *eid = "0b7f4a52-9d55-4c38-b2c1-43a1c1f0a001";
    produce_change(p, topic, eid, T.org_id, opp, 1770000000LL * 1000000);
    rd_kafka_message_t *m[2];
    dst_consume(c, m, 1, 30000);
    char *features1 =
        pgt_valuef(db, "select features::text from features_snapshot where opportunity_id = '%s'", opp);
    produce_change(p, topic, eid, T.org_id, opp, 1770000000LL * 1000000);
    dst_consume(c, m + 1, 1, 30000);
    cr_expect_eq(pgt_longf(db, "select count(*) from features_snapshot where opportunity_id = '%s'", opp), 1);
    char *features2 =
        pgt_valuef(db, "select features::text from features_snapshot where opportunity_id = '%s'", opp);
    cr_expect_str_eq(features2, features1);
    /* The re-published features.ready is the same event (same id). */
    char id1[64], id2[64];
    cr_assert_eq(ds_kafka_header_get(m[0], "ce_id", id1, sizeof id1), 0);
    cr_assert_eq(ds_kafka_header_get(m[1], "ce_id", id2, sizeof id2), 0);
    cr_expect_str_eq(id1, id2);
    cr_expect(m[0]->len == m[1]->len && memcmp(m[0]->payload, m[1]->payload, m[0]->len) == 0,
              "identical payloads");
    ds_consumer_release(m, 2);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(features1);
    free(features2);
    free(topic);
    free(opp);
    PQfinish(db);
}

Test(feature, poison_message_goes_to_dlq_and_the_next_is_processed) {
    PGconn *db = pgt_connect_db(&T.db);
    char *opp = insert_opportunity(db, "OPP-P");
    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&T, &cfg);
    char *topic = pgt_fmt("%sopportunity.changed", T.prefix);
    ds_consumer_t *dlq = dst_consumer(&T, "opportunity.changed.dlq");
    ds_consumer_t *ready = dst_consumer(&T, "features.ready");
    /* Same key as the good one: same partition, so it really comes first. */
    const char junk[] = "\xff\xff\xff this is not protobuf";
    ds_event_meta_t meta = {.type = DS_CE_TYPE_OPPORTUNITY_CHANGED};
    cr_assert_eq(ds_producer_send(p, topic, opp, strlen(opp), junk, sizeof junk - 1, &meta, NULL), 0);
    produce_change(p, topic, "0b7f4a52-9d55-4c38-b2c1-43a1c1f0a002", T.org_id, opp, 1770000000LL * 1000000);
    rd_kafka_message_t *m[1];
    dst_consume(dlq, m, 1, 30000);
    cr_expect_eq(m[0]->len, sizeof junk - 1);
    cr_expect(memcmp(m[0]->payload, junk, m[0]->len) == 0, "the DLQ holds the original bytes");
    char h[256];
    cr_assert_eq(ds_kafka_header_get(m[0], "dlq_error", h, sizeof h), 0);
    cr_expect(strstr(h, "OpportunityChanged") != NULL, "dlq_error says why: %s", h);
    cr_assert_eq(ds_kafka_header_get(m[0], "dlq_topic", h, sizeof h), 0);
    cr_expect_str_eq(h, topic);
    ds_consumer_release(m, 1);
    dst_consume(ready, m, 1, 30000);
    Dealscore__V1__FeaturesReady *fr = dealscore__v1__features_ready__unpack(NULL, m[0]->len, m[0]->payload);
    cr_assert(fr);
    cr_expect_str_eq(fr->opportunity_id, opp);
    dealscore__v1__features_ready__free_unpacked(fr, NULL);
    ds_consumer_release(m, 1);
    ds_consumer_destroy(dlq);
    ds_consumer_destroy(ready);
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(topic);
    free(opp);
    PQfinish(db);
}

Test(feature, catalog_lists_every_feature) {
    char *bin = proc_bin("dealscore-feature");
    char *argv[] = {bin, "catalog", NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(proc_run(argv, NULL, &out, &err, 10000), 0, "%s", err);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert(j, "catalog is JSON: %s", out);
    json_t *feats = json_object_get(j, "features");
    cr_expect_eq(json_array_size(feats), (size_t)DS_FEATURE_COUNT);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(feats, 0), "name")), "days_open");
    json_decref(j);
    free(out);
    free(err);
    free(bin);
}

/* A batch bigger than DEALSCORE_FEATURE_CHUNK is loaded and written chunk by
 * chunk (one chunk's INSERT runs while the next one loads): every snapshot
 * still lands, in one transaction, and changes of unknown deals in between
 * are skipped. */
Test(feature, chunked_batch_writes_every_snapshot_in_one_transaction) {
    dst_stop(&T);
    dst_env_set(&T, "DEALSCORE_FEATURE_CHUNK", "2");
    dst_env_set(&T, "DEALSCORE_BATCH_WAIT_MS", "2000");
    PGconn *db = pgt_connect_db(&T.db);
    enum { N = 7 };
    char *opps[N];
    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&T, &cfg);
    char *topic = pgt_fmt("%sopportunity.changed", T.prefix);
    /* All events are in the topic before the worker starts: one batch. */
    for (int i = 0; i < N; i++) {
        char ext[32], eid[40];
        snprintf(ext, sizeof ext, "OPP-C%d", i);
        opps[i] = insert_opportunity(db, ext);
        snprintf(eid, sizeof eid, "0b7f4a52-9d55-4c38-b2c1-43a1c1f0b%03d", i);
        if (i == 3)
            produce_change(p, topic, "0b7f4a52-9d55-4c38-b2c1-43a1c1f0b999", T.org_id,
                           "7d1f0000-0000-4000-8000-000000000001", 1770000000LL * 1000000); /* unknown */
        produce_change(p, topic, eid, T.org_id, opps[i], 1770000000LL * 1000000 + i);
    }
    pgt_execf(db,
              "insert into interactions (org_id, opportunity_id, opportunity_external_id, external_id, type,"
              " occurred_at, duration_min) values ('%s', '%s', 'OPP-C5', 'I-1', 'meeting', "
              "'2026-01-20T00:00:00Z', 45)",
              T.org_id, opps[5]);
    ds_consumer_t *c = dst_consumer(&T, "features.ready");
    dst_start(&T, "feature");
    int seen[N] = {0};
    for (int got = 0; got < N; got++) {
        rd_kafka_message_t *m[1];
        dst_consume(c, m, 1, 30000);
        Dealscore__V1__FeaturesReady *fr =
            dealscore__v1__features_ready__unpack(NULL, m[0]->len, m[0]->payload);
        cr_assert(fr);
        for (int i = 0; i < N; i++)
            if (strcmp(fr->opportunity_id, opps[i]) == 0) {
                seen[i]++;
                cr_expect_eq(fr->as_of_us, 1770000000LL * 1000000 + i);
                cr_expect_eq(feature_value(fr, "n_meeting_all"), i == 5 ? 1.0 : 0.0);
            }
        dealscore__v1__features_ready__free_unpacked(fr, NULL);
        ds_consumer_release(m, 1);
    }
    for (int i = 0; i < N; i++) cr_expect_eq(seen[i], 1, "one features.ready for OPP-C%d", i);
    cr_expect_eq(pgt_longf(db, "select count(*) from features_snapshot where org_id = '%s'", T.org_id), N);
    /* computed_at is the transaction's start: one value for the whole batch. */
    cr_expect_eq(pgt_longf(db,
                           "select count(distinct computed_at) from features_snapshot where org_id = '%s'",
                           T.org_id),
                 1);
    cr_expect_eq(
        pgt_longf(db,
                  "select count(*) from features_snapshot where opportunity_id = '%s'"
                  " and (features->>'n_meeting_all')::int = 1 and (features->>'stage_index')::int = 3",
                  opps[5]),
        1);
    for (int i = 0; i < N; i++) free(opps[i]);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(topic);
    PQfinish(db);
}

/* A backlog for the burst tests: the feature worker stopped and set up with
 * the given batch and burst settings, BACKLOG_DEALS deals named
 * <ext_prefix><i>, and BACKLOG_ROUNDS changes to each waiting in the topic,
 * change r of deal i at BACKLOG_BASE + r * BACKLOG_DEALS + i. */
enum { BACKLOG_DEALS = 5, BACKLOG_ROUNDS = 20 };
#define BACKLOG_BASE (1770000000LL * 1000000)

typedef struct {
    PGconn *db;
    ds_config_t cfg;
    ds_producer_t *p;
    char *topic;
    char *opps[BACKLOG_DEALS];
} backlog_t;

static void backlog_start(backlog_t *b, const char *batch_size, const char *quiet_ms, const char *wait_ms,
                          const char *ext_prefix, const char *eid_prefix) {
    dst_stop(&T);
    dst_env_set(&T, "DEALSCORE_BATCH_SIZE", batch_size);
    dst_env_set(&T, "DEALSCORE_BURST_QUIET_MS", quiet_ms);
    dst_env_set(&T, "DEALSCORE_BURST_WAIT_MS", wait_ms);
    /* The first poll fills its batch from the backlog: by default it takes
     * only what the first fetch brought, which may be one partition's part. */
    dst_env_set(&T, "DEALSCORE_BATCH_WAIT_MS", "1000");
    b->db = pgt_connect_db(&T.db);
    for (int i = 0; i < BACKLOG_DEALS; i++) {
        char ext[32];
        snprintf(ext, sizeof ext, "%s%d", ext_prefix, i);
        b->opps[i] = insert_opportunity(b->db, ext);
    }
    b->p = dst_producer(&T, &b->cfg);
    b->topic = pgt_fmt("%sopportunity.changed", T.prefix);
    for (int r = 0; r < BACKLOG_ROUNDS; r++)
        for (int i = 0; i < BACKLOG_DEALS; i++) {
            char eid[48];
            snprintf(eid, sizeof eid, "%s%04d", eid_prefix, r * BACKLOG_DEALS + i);
            produce_change(b->p, b->topic, eid, T.org_id, b->opps[i], BACKLOG_BASE + r * BACKLOG_DEALS + i);
        }
}

static void backlog_free(backlog_t *b) {
    for (int i = 0; i < BACKLOG_DEALS; i++) free(b->opps[i]);
    ds_producer_destroy(b->p);
    ds_config_close(&b->cfg);
    free(b->topic);
    PQfinish(b->db);
}

/* A poll that comes back full (DEALSCORE_BATCH_SIZE=1 here) makes the batch
 * go on gathering as a burst: the 100 changes waiting in the topic, 20 to
 * each of 5 deals, become one batch and one computation per deal, each as
 * of that deal's latest change. Without bursts they would be 100 batches and
 * 100 snapshots. */
Test(feature, a_full_poll_gathers_the_burst_into_one_coalesced_batch) {
    enum { D = BACKLOG_DEALS, R = BACKLOG_ROUNDS };
    backlog_t b;
    backlog_start(&b, "1", "1000", "20000", "OPP-B", "5e1f4a52-9d55-4c38-b2c1-43a1c1f0");
    ds_consumer_t *c = dst_consumer(&T, "features.ready");
    dst_start(&T, "feature");
    int seen[D] = {0};
    for (int got = 0; got < D; got++) {
        rd_kafka_message_t *m[1];
        dst_consume(c, m, 1, 30000);
        Dealscore__V1__FeaturesReady *fr =
            dealscore__v1__features_ready__unpack(NULL, m[0]->len, m[0]->payload);
        cr_assert(fr);
        for (int i = 0; i < D; i++)
            if (strcmp(fr->opportunity_id, b.opps[i]) == 0) {
                seen[i]++;
                cr_expect_eq(fr->as_of_us, BACKLOG_BASE + (R - 1) * D + i, "OPP-B%d as of its latest change",
                             i);
            }
        dealscore__v1__features_ready__free_unpacked(fr, NULL);
        ds_consumer_release(m, 1);
    }
    for (int i = 0; i < D; i++) cr_expect_eq(seen[i], 1, "one features.ready for OPP-B%d", i);
    /* The worker counts a batch once its events are acknowledged, which
     * can be after this consumer has read them. */
    dst_wait_metric(&T, "dealscore_worker_batch_size_count{worker=\"feature\"}", 1.0);
    cr_expect_eq(dst_metric(&T, "dealscore_worker_messages_total{worker=\"feature\"}"), (double)(R * D));
    cr_expect_eq(dst_metric(&T, "dealscore_worker_batch_size_count{worker=\"feature\"}"), 1.0);
    cr_expect_eq(dst_metric(&T, "dealscore_worker_burst_batches_total{worker=\"feature\"}"), 1.0);
    /* Every message's age from publication to its stored batch is observed
     * once (the end-to-end latency's part in this worker). */
    dst_wait_metric(&T, "dealscore_worker_event_age_seconds_count{worker=\"feature\"}", (double)(R * D));
    cr_expect_eq(dst_metric(&T, "dealscore_worker_event_age_seconds_count{worker=\"feature\"}"),
                 (double)(R * D));
    cr_expect_gt(dst_metric(&T, "dealscore_worker_event_age_seconds_sum{worker=\"feature\"}"), 0.0);
    cr_expect_eq(pgt_longf(b.db, "select count(*) from features_snapshot where org_id = '%s'", T.org_id), D);
    ds_consumer_destroy(c);
    backlog_free(&b);
}

/* Past DEALSCORE_BURST_WAIT_MS (here 0: a plain burst would end at once),
 * a flood keeps the burst gathering: the backlog comes faster than a batch
 * (1 message here) per quiet window, so the 100 changes become one batch,
 * which ends when the input pauses. With DEALSCORE_BURST_FLOOD_MS=0 this
 * test fails: the changes become many batches and snapshots (tried). */
Test(feature, a_flood_keeps_the_burst_gathering_past_its_wait) {
    enum { D = BACKLOG_DEALS, R = BACKLOG_ROUNDS };
    backlog_t b;
    backlog_start(&b, "1", "500", "0", "OPP-F", "9d2e4a52-9d55-4c38-b2c1-43a1c1f0");
    dst_env_set(&T, "DEALSCORE_BURST_FLOOD_MS", "20000");
    dst_start(&T, "feature");
    dst_wait_metric(&T, "dealscore_worker_batch_size_count{worker=\"feature\"}", 1.0);
    cr_expect_eq(dst_metric(&T, "dealscore_worker_messages_total{worker=\"feature\"}"), (double)(R * D));
    char sql[200];
    snprintf(sql, sizeof sql, "select count(*) from features_snapshot where org_id = '%s'", T.org_id);
    cr_assert_eq(dst_wait_count(&T, sql, D, 10000), D, "one snapshot per deal");
    cr_expect_eq(dst_metric(&T, "dealscore_worker_batch_size_count{worker=\"feature\"}"), 1.0);
    cr_expect_eq(dst_metric(&T, "dealscore_worker_burst_batches_total{worker=\"feature\"}"), 1.0);
    backlog_free(&b);
}

/* A burst ends when the backlog is drained and the input slows to its
 * ordinary flow, even though that flow never pauses for a whole quiet window
 * (a change every ~175 ms against 500 ms): a change of that flow is computed
 * while the flow goes on, long before the burst's 60 s cap. */
Test(feature, a_burst_ends_when_the_input_slows_to_a_trickle) {
    backlog_t b;
    backlog_start(&b, "50", "500", "60000", "OPP-T", "7b3f4a52-9d55-4c38-b2c1-43a1c1f0");
    char *flow = insert_opportunity(b.db, "OPP-FLOW");
    ds_consumer_t *c = dst_consumer(&T, "features.ready");
    dst_start(&T, "feature");
    bool computed = false;
    int sent = 0;
    for (long long until = proc_now_ms() + 30000; !computed && proc_now_ms() < until; sent++) {
        char eid[48];
        snprintf(eid, sizeof eid, "7b3f4a52-9d55-4c38-b2c1-43a1c1f1%04d", sent % 10000);
        produce_change(b.p, b.topic, eid, T.org_id, flow, BACKLOG_BASE + 1000 + sent);
        rd_kafka_message_t *m[16];
        int got = ds_consumer_poll_batch(c, m, 16, 150); /* the flow's pace */
        cr_assert_geq(got, 0, "polling features.ready failed");
        for (int k = 0; k < got; k++) {
            Dealscore__V1__FeaturesReady *fr =
                dealscore__v1__features_ready__unpack(NULL, m[k]->len, m[k]->payload);
            cr_assert(fr);
            if (strcmp(fr->opportunity_id, flow) == 0) computed = true;
            dealscore__v1__features_ready__free_unpacked(fr, NULL);
        }
        ds_consumer_release(m, (size_t)got);
    }
    cr_assert(computed, "no change of the flow was computed in 30 s (%d sent): the burst waited for its cap",
              sent);
    cr_expect_geq(dst_metric(&T, "dealscore_worker_burst_batches_total{worker=\"feature\"}"), 1.0,
                  "the backlog was gathered as a burst");
    free(flow);
    ds_consumer_destroy(c);
    backlog_free(&b);
}

/* Bursts are for backlogs, not for an ordinary flow that fills a poll:
 * pairs of changes, each pair a full poll (DEALSCORE_BATCH_SIZE=2) with
 * nothing behind it, are computed as they come, one batch each and no
 * burst. A backlog that builds while the worker is frozen (SIGSTOP), 100
 * changes behind a full poll, is gathered as a burst (the clearing time
 * allowed is 1 ms here, so that any backlog of more than a batch is one),
 * and each deal ends as of its latest change. */
Test(feature, an_ordinary_flow_is_not_gathered_but_a_backlog_is) {
    enum { PAIRS = 5, BACKLOG = 100 };
    dst_stop(&T);
    dst_env_set(&T, "DEALSCORE_BATCH_SIZE", "2");
    /* Long enough for a pair to fill a poll; short enough for the worker
     * to leave its group within dst_stop's 5 s (a poll waits out its wait):
     * killed, it would hold the next test's group join for its session. */
    dst_env_set(&T, "DEALSCORE_BATCH_WAIT_MS", "1000");
    dst_env_set(&T, "DEALSCORE_BURST_BACKLOG_MS", "1");
    PGconn *db = pgt_connect_db(&T.db);
    char *opps[2] = {insert_opportunity(db, "OPP-O0"), insert_opportunity(db, "OPP-O1")};
    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&T, &cfg);
    char *topic = pgt_fmt("%sopportunity.changed", T.prefix);
    ds_consumer_t *c = dst_consumer(&T, "features.ready");
    dst_start(&T, "feature");
    int sent = 0;
    for (int r = 0; r < PAIRS; r++) {
        for (int i = 0; i < 2; i++, sent++) {
            char eid[40];
            snprintf(eid, sizeof eid, "4c1d4a52-9d55-4c38-b2c1-43a1c1f0%04d", sent);
            produce_change(p, topic, eid, T.org_id, opps[i], BACKLOG_BASE + sent);
        }
        rd_kafka_message_t *m[2];
        dst_consume(c, m, 2, 30000);
        ds_consumer_release(m, 2);
    }
    /* Counted once the events are acknowledged: maybe after they were read. */
    dst_wait_metric(&T, "dealscore_worker_batch_size_count{worker=\"feature\"}", (double)PAIRS);
    cr_expect_eq(dst_metric(&T, "dealscore_worker_messages_total{worker=\"feature\"}"), (double)sent);
    cr_expect_eq(dst_metric(&T, "dealscore_worker_batch_size_count{worker=\"feature\"}"), (double)PAIRS);
    cr_expect_eq(dst_metric(&T, "dealscore_worker_burst_batches_total{worker=\"feature\"}"), 0.0,
                 "full polls of an ordinary flow are no burst");
    kill(T.pid, SIGSTOP);
    for (int k = 0; k < BACKLOG; k++, sent++) {
        char eid[40];
        snprintf(eid, sizeof eid, "4c1d4a52-9d55-4c38-b2c1-43a1c1f0%04d", sent);
        produce_change(p, topic, eid, T.org_id, opps[k % 2], BACKLOG_BASE + sent);
    }
    kill(T.pid, SIGCONT);
    dst_wait_metric(&T, "dealscore_worker_messages_total{worker=\"feature\"}", (double)sent);
    cr_expect_geq(dst_metric(&T, "dealscore_worker_burst_batches_total{worker=\"feature\"}"), 1.0,
                  "the backlog is gathered");
    for (int i = 0; i < 2; i++) {
        char sql[300];
        snprintf(sql, sizeof sql,
                 "select count(*) from features_snapshot where opportunity_id = '%s'"
                 " and as_of = to_timestamp(%lld / 1e6)",
                 opps[i], BACKLOG_BASE + sent - 2 + i);
        cr_expect_eq(dst_wait_count(&T, sql, 1, 10000), 1, "OPP-O%d as of its latest change", i);
    }
    for (int i = 0; i < 2; i++) free(opps[i]);
    ds_consumer_destroy(c);
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(topic);
    PQfinish(db);
}

/* The lag gauge counts what is not consumed yet. A worker restarted on a
 * topic it has consumed, with nothing new in it, has no position on its
 * partitions until a message comes: its committed offsets stand in, so it
 * reports no lag, not the topic's whole history (which would keep
 * dealscore-bench-ingest's settle waiting its full 300 s after a restart).
 * The gauge is updated once a second; the readings span three updates. */
Test(feature, a_restarted_idle_worker_reports_no_lag) {
    enum { D = BACKLOG_DEALS, R = BACKLOG_ROUNDS };
    const char *lag = "dealscore_consumer_lag{worker=\"feature\"}";
    backlog_t b;
    backlog_start(&b, "500", "100", "1000", "OPP-L", "3c9e4a52-9d55-4c38-b2c1-43a1c1f0");
    dst_start(&T, "feature");
    dst_wait_metric(&T, "dealscore_worker_messages_total{worker=\"feature\"}", (double)(R * D));
    double v = dst_wait_metric_eq(&T, lag, 0, 10000);
    cr_assert_eq(v, 0, "lag %g after consuming the backlog", v);
    dst_stop(&T);
    dst_start(&T, "feature");
    int readings = 0;
    for (long long until = proc_now_ms() + 3000; proc_now_ms() < until; readings++) {
        v = dst_metric(&T, lag);
        cr_assert_eq(v, 0, "a restarted idle worker reports lag %g (the topic holds %d consumed messages)", v,
                     R * D);
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    cr_expect_gt(readings, 10);
    cr_expect_eq(dst_metric(&T, "dealscore_worker_messages_total{worker=\"feature\"}"), 0.0,
                 "nothing is consumed again");
    backlog_free(&b);
}

/* SIGTERM while a burst is gathering (here it would wait a minute for the
 * input to pause) stops the gathering at once: the batch in hand is
 * computed and written, and the worker exits 0 within dst_stop's 5 s. */
Test(feature, sigterm_ends_a_gathering_burst_and_finishes_its_batch) {
    dst_stop(&T);
    dst_env_set(&T, "DEALSCORE_BATCH_SIZE", "1");
    dst_env_set(&T, "DEALSCORE_BURST_QUIET_MS", "60000");
    dst_env_set(&T, "DEALSCORE_BURST_WAIT_MS", "60000");
    PGconn *db = pgt_connect_db(&T.db);
    char *opps[2] = {insert_opportunity(db, "OPP-S0"), insert_opportunity(db, "OPP-S1")};
    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&T, &cfg);
    char *topic = pgt_fmt("%sopportunity.changed", T.prefix);
    for (int i = 0; i < 10; i++) {
        char eid[40];
        snprintf(eid, sizeof eid, "6a2f4a52-9d55-4c38-b2c1-43a1c1f0%04d", i);
        produce_change(p, topic, eid, T.org_id, opps[i % 2], 1770000000LL * 1000000 + i);
    }
    dst_start_until(&T, "feature", "/healthz");
    /* The first poll (1 message) was full: the other 9 are being gathered
     * (the gauge can reach 9 at most, and goes back to 0 when it ends). */
    dst_wait_metric(&T, "dealscore_worker_burst_gathering{worker=\"feature\"}", 9);
    /* The lag counts the 10 messages in hand while the burst gathers (it
     * stayed at its value from before the burst, 0, until it ended). */
    dst_wait_metric(&T, "dealscore_consumer_lag{worker=\"feature\"}", 10);
    cr_expect_eq(pgt_longf(db, "select count(*) from features_snapshot where org_id = '%s'", T.org_id), 0,
                 "nothing is computed while the burst gathers");
    dst_stop(&T); /* expects exit 0 within 5 s */
    cr_expect_eq(pgt_longf(db, "select count(*) from features_snapshot where org_id = '%s'", T.org_id), 2);
    for (int i = 0; i < 2; i++)
        cr_expect_eq(pgt_longf(db,
                               "select count(*) from features_snapshot where opportunity_id = '%s'"
                               " and as_of = to_timestamp(%lld / 1e6)",
                               opps[i], 1770000000LL * 1000000 + 8 + i),
                     1, "OPP-S%d as of its latest change", i);
    for (int i = 0; i < 2; i++) free(opps[i]);
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(topic);
    PQfinish(db);
}

/* The org context reads each closed deal's activity for its owner's and
 * account's engagement: interactions, and emails answered of those
 * answered or not, over the working days from creation to close. */
Test(feature, org_context_reads_the_engagement_of_closed_deals) {
    PGconn *db = pgt_connect_db(&T.db);
    pgt_execf(
        db,
        "insert into opportunities (org_id, external_id, owner_id, stage, created_at, closed_at, outcome)"
        " values ('%s', 'OPP-E', 'owner-e', 'closed_lost', '2026-01-01T00:00:00Z',"
        " '2026-01-08T00:00:00Z', 'lost')",
        T.org_id);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-E'");
    pgt_execf(db,
              "insert into interactions (org_id, opportunity_id, opportunity_external_id, external_id, type,"
              " occurred_at, outcome) values"
              " ('%s', '%s', 'OPP-E', 'I-E1', 'email', '2026-01-02T10:00:00Z', 'replied'),"
              " ('%s', '%s', 'OPP-E', 'I-E2', 'email', '2026-01-05T10:00:00Z', 'No Reply'),"
              " ('%s', '%s', 'OPP-E', 'I-E3', 'email', '2026-01-06T10:00:00Z', 'sent'),"
              " ('%s', '%s', 'OPP-E', 'I-E4', 'phone', '2026-01-07T10:00:00Z', 'connected')",
              T.org_id, opp, T.org_id, opp, T.org_id, opp, T.org_id, opp);
    ds_pg_t *pg = connect_store();
    char err[512];
    ds_org_cache_t *cache = ds_org_cache_new(0);
    const ds_org_ctx_t *ctx = NULL;
    cr_assert_eq(ds_org_cache_get(cache, pg, T.org_id, &ctx, err, sizeof err), 0, "%s", err);
    ds_engagement_t e;
    int64_t after = 1768000000LL * 1000000; /* 2026-01-09 */
    cr_assert_eq(ds_engagement_owner(ctx->winrate, "owner-e", after, &e), DS_OK);
    cr_expect_eq(e.deals, 1);
    cr_expect_eq(e.workdays, 5.0); /* Thursday to Thursday */
    cr_expect_eq(e.interactions, 4);
    cr_expect_eq(e.answered, 1);
    cr_expect_eq(e.asked, 2);
    ds_org_cache_destroy(cache);
    ds_pg_destroy(pg);
    free(opp);
    PQfinish(db);
}

/* A worker's cache reloads a stale org off the caller's path: the get that
 * finds it stale returns the context it had at once, and once the reload is
 * done the next get returns one that counts the deal closed meanwhile. */
Test(feature, refreshing_org_cache_serves_the_stale_context_until_reloaded) {
    PGconn *db = pgt_connect_db(&T.db);
    const char *insert = "insert into opportunities (org_id, external_id, owner_id, stage, created_at,"
                         " closed_at, outcome) values ('%s', '%s', 'owner-r', 'closed_lost',"
                         " '2026-01-01T00:00:00Z', '2026-01-08T00:00:00Z', 'lost')";
    pgt_execf(db, insert, T.org_id, "OPP-R1");
    ds_pg_t *pg = connect_store();
    char err[512];
    ds_org_cache_t *cache = ds_org_cache_new_refreshing(0, T.db.conninfo, true);
    int64_t after = 1768000000LL * 1000000; /* 2026-01-09 */
    const ds_org_ctx_t *first = NULL, *ctx = NULL;
    ds_engagement_t e;
    cr_assert_eq(ds_org_cache_get(cache, pg, T.org_id, &first, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_engagement_owner(first->winrate, "owner-r", after, &e), DS_OK);
    cr_expect_eq(e.deals, 1);

    pgt_execf(db, insert, T.org_id, "OPP-R2");
    cr_assert_eq(ds_org_cache_get(cache, pg, T.org_id, &ctx, err, sizeof err), 0, "%s", err);
    cr_expect_eq(ctx, first, "the stale context, not one loaded on the caller's connection");
    ds_org_cache_await_refreshes(cache);
    cr_assert_eq(ds_org_cache_get(cache, pg, T.org_id, &ctx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_engagement_owner(ctx->winrate, "owner-r", after, &e), DS_OK);
    cr_expect_eq(e.deals, 2, "the deal closed meanwhile reaches the context");
    ds_org_cache_destroy(cache);
    ds_pg_destroy(pg);
    PQfinish(db);
}

/* The scoring worker's cache holds no closed deals: the stage order and
 * the lexicon alone, reloaded as the feature worker's is. */
Test(feature, a_cache_without_closed_deals_holds_the_stages_alone) {
    PGconn *db = pgt_connect_db(&T.db);
    pgt_execf(
        db,
        "insert into opportunities (org_id, external_id, owner_id, stage, created_at, closed_at, outcome)"
        " values ('%s', 'OPP-C', 'owner-c', 'closed_won', '2026-01-01T00:00:00Z',"
        " '2026-01-08T00:00:00Z', 'won')",
        T.org_id);
    ds_pg_t *pg = connect_store();
    char err[512];
    ds_org_cache_t *cache = ds_org_cache_new_refreshing(0, T.db.conninfo, false);
    const ds_org_ctx_t *ctx = NULL;
    cr_assert_eq(ds_org_cache_get(cache, pg, T.org_id, &ctx, err, sizeof err), 0, "%s", err);
    cr_expect_null(ctx->winrate, "no closed deals were read");
    cr_assert_not_null(ctx->stages);
    cr_expect_eq(ds_stage_list_index(ctx->stages, "proposal"), 4, "the stage order is there");
    ds_org_cache_await_refreshes(cache);
    cr_assert_eq(ds_org_cache_get(cache, pg, T.org_id, &ctx, err, sizeof err), 0, "%s", err);
    cr_expect_null(ctx->winrate, "nor by a reload");
    ds_org_cache_destroy(cache);
    ds_pg_destroy(pg);
    PQfinish(db);
}

/* The loader sends its four queries in one pipeline: a failing query is
 * reported with its class and leaves the connection usable; duplicate ids
 * load once; a send followed by a recv is the same as a load. */
Test(feature, loader_pipeline_reports_errors_and_stays_usable) {
    PGconn *db = pgt_connect_db(&T.db);
    char *opp = insert_opportunity(db, "OPP-L");
    pgt_execf(db,
              "insert into interactions (org_id, opportunity_id, opportunity_external_id, external_id, type,"
              " occurred_at, duration_min, outcome) values ('%s', '%s', 'OPP-L', 'I-L', 'demo', "
              "'2026-01-05T00:00:00Z',"
              " 30, 'held')",
              T.org_id, opp);
    ds_pg_t *pg = connect_store();
    char err[512];
    ds_opp_batch_t *b = NULL;
    const char *bad[] = {"not-a-uuid"};
    cr_expect_eq(ds_opp_batch_load(pg, bad, 1, &b, err, sizeof err), DS_EFATAL);
    cr_expect_null(b);
    cr_expect(strstr(err, "uuid") != NULL, "the error says why: %s", err);
    const char *ids[] = {opp, "7d1f0000-0000-4000-8000-000000000002", opp};
    cr_assert_eq(ds_opp_batch_send(pg, ids, 3, &b, err, sizeof err), 0, "%s", err);
    /* While the queries are out, the connection takes nothing else. */
    cr_expect_eq(ds_pg_exec(pg, "select 1", NULL, err, sizeof err), DS_EINVAL);
    cr_assert_eq(ds_opp_batch_recv(pg, b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_opp_batch_count(b), 1);
    int i = ds_opp_batch_find(b, opp);
    cr_assert_eq(i, 0);
    const ds_opp_raw_t *raw = ds_opp_batch_raw(b, 0);
    cr_expect_eq(raw->n_interactions, 1);
    cr_expect_eq(raw->interactions[0].type, DS_INTERACTION_DEMO);
    cr_expect_eq(raw->interactions[0].occurred_at_us, 1767571200LL * 1000000); /* 2026-01-05 */
    cr_expect_eq(raw->interactions[0].duration_min, 30.0);
    cr_expect_eq(raw->interactions[0].answer, DS_ANSWER_YES); /* outcome "held" */
    cr_expect_eq(raw->created_at_us, 1767225600LL * 1000000); /* 2026-01-01 */
    cr_expect_eq(raw->amount, 5000.0);
    cr_expect_str_eq(raw->stage, "demo");
    cr_expect_str_eq(ds_opp_batch_org(b, 0), T.org_id);
    ds_opp_batch_destroy(b);
    cr_expect_eq(ds_pg_exec(pg, "select 1", NULL, err, sizeof err), 0, "%s", err);

    /* History and interactions arrive as arrays per deal: each deal gets its
     * own rows, NULLs stay NULLs, history in (changed_at, id) order. */
    char *opp2 = insert_opportunity(db, "OPP-M");
    char *opp3 = insert_opportunity(db, "OPP-N"); /* no child rows */
    pgt_execf(db,
              "insert into interactions (org_id, opportunity_id, opportunity_external_id, external_id, type,"
              " occurred_at, duration_min) values"
              " ('%s', '%s', 'OPP-M', 'I-M1', 'email', '2026-01-02T00:00:00Z', null),"
              " ('%s', '%s', 'OPP-M', 'I-M2', 'meeting', '2026-01-03T12:00:00Z', 45.5),"
              " ('%s', '%s', 'OPP-M', 'I-M3', 'support', '2026-01-04T00:00:00Z', 0)",
              T.org_id, opp2, T.org_id, opp2, T.org_id, opp2);
    pgt_execf(db,
              "insert into opportunity_history (org_id, opportunity_id, field, old_value, new_value, "
              "changed_at) values"
              " ('%s', '%s', 'amount', '100', '200', '2026-01-03T00:00:00Z'),"
              " ('%s', '%s', 'stage', 'prospecting', 'discovery', '2026-01-02T00:00:00Z'),"
              " ('%s', '%s', 'stage', 'discovery', 'demo', '2026-01-03T00:00:00Z'),"
              " ('%s', '%s', 'close_date', null, '2026-03-01', '2026-01-01T00:00:00Z')",
              T.org_id, opp2, T.org_id, opp2, T.org_id, opp2, T.org_id, opp2);
    const char *ids2[] = {opp3, opp2, opp};
    cr_assert_eq(ds_opp_batch_load(pg, ids2, 3, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_opp_batch_count(b), 3);
    const ds_opp_raw_t *none = ds_opp_batch_raw(b, (size_t)ds_opp_batch_find(b, opp3));
    cr_expect_eq(none->n_interactions, 0);
    cr_expect_eq(none->n_history, 0);
    const ds_opp_raw_t *one = ds_opp_batch_raw(b, (size_t)ds_opp_batch_find(b, opp));
    cr_expect_eq(one->n_interactions, 1);
    cr_expect_eq(one->n_history, 0);
    const ds_opp_raw_t *m = ds_opp_batch_raw(b, (size_t)ds_opp_batch_find(b, opp2));
    cr_assert_eq(m->n_interactions, 3);
    double minutes = 0;
    int nulls = 0, types = 0;
    for (size_t k = 0; k < 3; k++) {
        if (isnan(m->interactions[k].duration_min))
            nulls++;
        else
            minutes += m->interactions[k].duration_min;
        types |= 1 << m->interactions[k].type;
        if (m->interactions[k].type == DS_INTERACTION_MEETING)
            cr_expect_eq(m->interactions[k].occurred_at_us, 1767441600LL * 1000000); /* 2026-01-03T12:00Z */
    }
    cr_expect_eq(nulls, 1);
    cr_expect_eq(minutes, 45.5);
    cr_expect_eq(types,
                 1 << DS_INTERACTION_EMAIL | 1 << DS_INTERACTION_MEETING | 1 << DS_INTERACTION_SUPPORT);
    cr_assert_eq(m->n_history, 4);
    cr_expect_eq(m->history[0].field, DS_HIST_CLOSE_DATE);
    cr_expect_eq(m->history[0].old_value.close_date_us, DS_TIME_NONE);
    cr_expect_eq(m->history[0].new_value.close_date_us, 1772323200LL * 1000000); /* 2026-03-01 */
    cr_expect_eq(m->history[1].field, DS_HIST_STAGE);
    cr_expect_str_eq(m->history[1].old_value.stage, "prospecting");
    cr_expect_str_eq(m->history[1].new_value.stage, "discovery");
    /* Same time: insertion (id) order. */
    cr_expect_eq(m->history[2].field, DS_HIST_AMOUNT);
    cr_expect_eq(m->history[2].old_value.amount, 100.0);
    cr_expect_eq(m->history[2].new_value.amount, 200.0);
    cr_expect_str_eq(m->history[3].new_value.stage, "demo");
    cr_expect_eq(m->history[3].changed_at_us, 1767398400LL * 1000000); /* 2026-01-03 */
    ds_opp_batch_destroy(b);
    free(opp2);
    free(opp3);
    ds_pg_destroy(pg);
    free(opp);
    PQfinish(db);
}

/* The contact an interaction names (meta contact_email, else contact_id,
 * else contact) reaches the engine through the interactions' contact
 * column, which Postgres keeps in step with meta, also when meta changes. */
Test(feature, loader_reads_the_contact_each_interaction_names) {
    PGconn *db = pgt_connect_db(&T.db);
    char *opp = insert_opportunity(db, "OPP-K");
    pgt_execf(db,
              "insert into interactions (org_id, opportunity_id, opportunity_external_id, external_id, type,"
              " occurred_at, meta) values"
              " ('%s', '%s', 'OPP-K', 'I-K1', 'email', '2026-01-02T00:00:00Z',"
              "  '{\"contact_email\": \"ana@acme.test\", \"contact_id\": \"c-9\"}'),"
              " ('%s', '%s', 'OPP-K', 'I-K2', 'email', '2026-01-03T00:00:00Z', '{\"contact_id\": \"c-7\"}'),"
              " ('%s', '%s', 'OPP-K', 'I-K3', 'phone', '2026-01-04T00:00:00Z', '{\"contact\": \"Bo\"}'),"
              " ('%s', '%s', 'OPP-K', 'I-K4', 'phone', '2026-01-05T00:00:00Z', '{\"subject\": \"Hi\"}')",
              T.org_id, opp, T.org_id, opp, T.org_id, opp, T.org_id, opp);
    ds_pg_t *pg = connect_store();
    char err[512];
    const char *ids[] = {opp};
    const char *want[] = {"ana@acme.test", "c-7", "Bo", NULL};
    for (int round = 0; round < 2; round++) {
        ds_opp_batch_t *b = NULL;
        cr_assert_eq(ds_opp_batch_load(pg, ids, 1, &b, err, sizeof err), 0, "%s", err);
        const ds_opp_raw_t *raw = ds_opp_batch_raw(b, 0);
        cr_assert_eq(raw->n_interactions, 4);
        for (size_t k = 0; k < 4; k++) {
            /* 2026-01-02 + k days */
            size_t day = (size_t)((raw->interactions[k].occurred_at_us / 1000000 - 1767312000LL) / 86400);
            cr_assert_lt(day, 4);
            const char *c = raw->interactions[k].contact;
            if (want[day])
                cr_expect(c && strcmp(c, want[day]) == 0, "interaction %zu names %s, not %s", day, want[day],
                          c ? c : "(none)");
            else
                cr_expect_null(c, "interaction %zu names no contact, not %s", day, c);
        }
        ds_opp_batch_destroy(b);
        /* A changed meta changes the contact. */
        pgt_execf(db, "update interactions set meta = '{\"contact\": \"Cy\"}' where external_id = 'I-K4'");
        want[3] = "Cy";
    }
    ds_pg_destroy(pg);
    free(opp);
    PQfinish(db);
}
