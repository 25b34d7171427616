/* Scoring through the real Kafka and Postgres: cold start with the org's
 * stage win rates (prior:history), previous_proba from the earlier score, hot swap to a newly
 * activated model (and refusal of one whose features the engine cannot
 * supply), and POST /api/predict: JWT checks, RLS (cross-org and
 * cross-account answer 404), errors. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>

#include "dstest.h"
#include "scoring/scorer.h"
#include "scoring/scoring.h"
#include "domain/features.h"
#include "infra/jwt.h"
#include "domain/model.h"
#include "dealscore/v1/events.pb-c.h"

#define SECRET "test-secret-for-hs256-that-is-long-enough-0123456789"

static dst_t S; /* scoring (its port is the API) */
static dst_t F; /* feature */
static dst_t I; /* ingest */

static void setup(void) {
    dst_setup(&S);
    dst_env_add(&S, "SUPABASE_JWT_SECRET=%s", SECRET);
    dst_env_add(&S, "DEALSCORE_CORS_ORIGINS=%s", "https://app.example.com, http://127.0.0.1:3000");
    /* Five closed deals are enough history here (the default wants 20). */
    dst_env_add(&S, "DEALSCORE_PRIOR_MIN_CLOSED=5");
    free(dst_token(&S, "acme", NULL));
    /* History for the stage prior: 3 deals reached demo (2 won), 2 reached proposal (2 won). */
    static const char *const deals[][3] = {{"H1", "won", "demo"},
                                           {"H2", "won", "demo"},
                                           {"H3", "lost", "demo"},
                                           {"H4", "won", "proposal"},
                                           {"H5", "won", "proposal"}};
    dst_seed_closed_deals(&S, deals, 5);
    dst_start_pipeline(&S, &F, &I);
}

static void teardown(void) { dst_teardown_pipeline(&S, &F, &I); }

TestSuite(scoring, .init = setup, .fini = teardown, .timeout = 180);

static void post_ok(const char *path, const char *body) { dst_post_accepted(&I, path, body); }

/* Consumes prediction.made until one for opp with as_of at_us arrives. */
static Dealscore__V1__PredictionMade *await_prediction(ds_consumer_t *c, const char *opp, int64_t at_us) {
    long long deadline = proc_now_ms() + 30000;
    while (proc_now_ms() < deadline) {
        rd_kafka_message_t *m[1];
        dst_consume(c, m, 1, 30000);
        Dealscore__V1__PredictionMade *pm =
            dealscore__v1__prediction_made__unpack(NULL, m[0]->len, m[0]->payload);
        ds_consumer_release(m, 1);
        cr_assert(pm, "prediction.made decodes");
        if (strcmp(pm->opportunity_id, opp) == 0 && pm->as_of_us == at_us) return pm;
        dealscore__v1__prediction_made__free_unpacked(pm, NULL);
    }
    cr_fatal("no prediction.made for %s", opp);
    return NULL;
}

/* A JSON document SQL gives (numbers as reals, so 1 and 1.0 compare equal). */
static json_t *json_of_sql(PGconn *db, const char *sql) {
    char *text = pgt_valuef(db, "%s", sql);
    json_t *j = json_loads(text, JSON_DECODE_INT_AS_REAL, NULL);
    cr_assert(j, "not JSON: %s", text);
    free(text);
    return j;
}

static json_t *json_real_or_null(double v) { return isnan(v) ? json_null() : json_real(v); }

/* prediction.made's change as the JSON document it mirrors. */
static json_t *json_of_event_change(const Dealscore__V1__PredictionChange *c) {
    cr_assert(c, "prediction.made carries a change");
    json_t *drivers = json_array();
    for (size_t i = 0; i < c->n_drivers; i++) {
        const Dealscore__V1__DriverChange *d = c->drivers[i];
        json_t *e = json_pack("{s:s, s:s, s:o, s:o, s:f}", "feature", d->feature, "label", d->label,
                              "previous", json_real_or_null(d->previous), "current",
                              json_real_or_null(d->current), "change", d->change);
        /* The words and the raw value beside them, as the JSON has them. */
        if (d->display[0]) {
            json_object_set_new(e, "display", json_string(d->display));
            json_object_set_new(e, "value", json_real_or_null(d->value));
        }
        json_array_append_new(drivers, e);
    }
    return json_pack("{s:o, s:o, s:o}", "previous_proba",
                     c->has_previous ? json_real(c->previous_proba) : json_null(), "delta",
                     c->has_previous ? json_real(c->delta) : json_null(), "drivers", drivers);
}

/* One shape for a score's change: the predictions row, the history row of
 * that score (as_of_sql, an SQL timestamptz) and the event carry the same
 * document. */
static void expect_one_change_shape(PGconn *db, const Dealscore__V1__PredictionMade *pm, const char *opp,
                                    const char *as_of_sql) {
    char *q = pgt_fmt("select change::text from predictions where opportunity_id = '%s'", opp);
    json_t *row = json_of_sql(db, q);
    free(q);
    q = pgt_fmt("select change::text from prediction_history where opportunity_id = '%s' and as_of = %s", opp,
                as_of_sql);
    json_t *hist = json_of_sql(db, q);
    free(q);
    json_t *ev = json_of_event_change(pm->change);
    char *a = json_dumps(row, JSON_SORT_KEYS), *b = json_dumps(hist, JSON_SORT_KEYS),
         *c = json_dumps(ev, JSON_SORT_KEYS);
    cr_expect(json_equal(row, hist), "predictions %s, prediction_history %s", a, b);
    cr_expect(json_equal(row, ev), "predictions %s, prediction.made %s", a, c);
    if (pm->has_previous)
        cr_expect(fabs(json_real_value(json_object_get(row, "delta")) -
                       (pm->proba_close - pm->previous_proba)) < 1e-15,
                  "%s", a);
    free(a);
    free(b);
    free(c);
    json_decref(row);
    json_decref(hist);
    json_decref(ev);
}

static const char *OPP_DEMO =
    "{\"external_id\":\"OPP-1\",\"stage\":\"demo\",\"created_at\":\"2026-03-01T00:00:00Z\","
    "\"changed_at\":\"2026-03-02T00:00:00Z\",\"account_external_id\":\"ACC-1\"}";
static const char *OPP_PROPOSAL =
    "{\"external_id\":\"OPP-1\",\"stage\":\"proposal\",\"created_at\":\"2026-03-01T00:00:00Z\","
    "\"changed_at\":\"2026-03-09T00:00:00Z\",\"account_external_id\":\"ACC-1\"}";

Test(scoring, cold_start_scores_with_the_stage_prior_and_keeps_the_previous_score) {
    ds_consumer_t *c = dst_consumer(&S, "prediction.made");
    post_ok("/v1/opportunities", OPP_DEMO);
    PGconn *db = pgt_connect_db(&S.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    Dealscore__V1__PredictionMade *pm = await_prediction(c, opp, 1772409600LL * 1000000); /* 2026-03-02 */
    cr_expect_str_eq(pm->model_version, "prior:history");
    cr_expect(!pm->has_previous);
    /* Smoothed: (wins_s + m * org) / (n_s + m) with m = 10 and the org rate
     * (4 wins + 1 pseudo) / (5 deals + 2 pseudo) = 5/7; demo: 2 of 3 (the
     * rates rise from demo to proposal: nothing to pool). */
    double org = 5.0 / 7.0;
    double p_demo = (2 + 10 * org) / (3 + 10);
    cr_expect(fabs(pm->proba_close - p_demo) < 1e-9, "demo prior %.12f, expected %.12f", pm->proba_close,
              p_demo);
    double first = pm->proba_close;
    expect_one_change_shape(db, pm, opp, "'2026-03-02Z'");
    dealscore__v1__prediction_made__free_unpacked(pm, NULL);
    cr_expect_eq(pgt_longf(db,
                           "select count(*) from predictions where opportunity_id = '%s' and change ="
                           " '{\"previous_proba\": null, \"delta\": null, \"drivers\": []}'::jsonb",
                           opp),
                 1, "a first score has nothing that moved it");
    cr_expect_eq(pgt_longf(db,
                           "select count(*) from predictions where opportunity_id = '%s' and is_prior"
                           " and model_version = 'prior:history' and previous_proba is null",
                           opp),
                 1);

    post_ok("/v1/opportunities", OPP_PROPOSAL);
    pm = await_prediction(c, opp, 1773014400LL * 1000000); /* 2026-03-09 */
    double p_prop = (2 + 10 * org) / (2 + 10);
    cr_expect(fabs(pm->proba_close - p_prop) < 1e-9, "proposal prior %.12f, expected %.12f", pm->proba_close,
              p_prop);
    cr_expect(pm->has_previous);
    cr_expect(fabs(pm->previous_proba - first) < 1e-12);
    char *prev = pgt_valuef(db, "select previous_proba from predictions where opportunity_id = '%s'", opp);
    cr_expect(fabs(strtod(prev, NULL) - first) < 1e-12, "predictions.previous_proba %s", prev);
    cr_expect_eq(pgt_longf(db, "select count(*) from prediction_history where opportunity_id = '%s'", opp),
                 2);
    /* The change names the stage as what moved the score. */
    cr_expect_eq(pgt_longf(db,
                           "select count(*) from predictions where opportunity_id = '%s'"
                           " and change->'drivers'->0->>'feature' = 'stage_index'",
                           opp),
                 1);
    expect_one_change_shape(db, pm, opp, "'2026-03-09Z'");
    dealscore__v1__prediction_made__free_unpacked(pm, NULL);
    free(prev);
    free(opp);
    PQfinish(db);
    ds_consumer_destroy(c);
}

#define LATEST_SCORE                                                                                         \
    "select (as_of, model_version, proba_close, previous_proba, top_features, change)::text"                 \
    " from predictions where opportunity_id = '%s'"

/* A replayed features.ready (the scoring worker stopped after its commit,
 * before its offsets) scores the same as_of again: its history row exists,
 * so the batch's plain insert fails and the batch is written again with
 * ON CONFLICT DO NOTHING. One history row, the latest score as it was, and
 * the same prediction.made again (same event id). */
Test(scoring, a_replayed_features_ready_writes_no_second_row_and_is_published_again) {
    ds_consumer_t *cf = dst_consumer(&S, "features.ready");
    ds_consumer_t *cp = dst_consumer(&S, "prediction.made");
    post_ok("/v1/opportunities", OPP_DEMO);
    PGconn *db = pgt_connect_db(&S.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    int64_t at = 1772409600LL * 1000000; /* 2026-03-02 */
    rd_kafka_message_t *fr[1];
    dst_consume(cf, fr, 1, 30000);
    Dealscore__V1__PredictionMade *pm = await_prediction(cp, opp, at);
    char *row = pgt_valuef(db, LATEST_SCORE, opp);
    char headers_id[64];
    cr_assert_eq(ds_kafka_header_get(fr[0], "ce_id", headers_id, sizeof headers_id), 0);
    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&S, &cfg);
    char *topic = pgt_fmt("%sfeatures.ready", S.prefix);
    ds_event_meta_t meta = {.id = headers_id, .type = DS_CE_TYPE_FEATURES_READY, .time_us = at};
    cr_assert_eq(ds_producer_send(p, topic, opp, strlen(opp), fr[0]->payload, fr[0]->len, &meta, NULL), 0);
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
    Dealscore__V1__PredictionMade *again = await_prediction(cp, opp, at);
    cr_expect_str_eq(again->event_id, pm->event_id);
    cr_expect_eq(again->proba_close, pm->proba_close);
    cr_expect_eq(pgt_longf(db, "select count(*) from prediction_history where opportunity_id = '%s'", opp),
                 1);
    char *row2 = pgt_valuef(db, LATEST_SCORE, opp);
    cr_expect_str_eq(row2, row);
    dealscore__v1__prediction_made__free_unpacked(pm, NULL);
    dealscore__v1__prediction_made__free_unpacked(again, NULL);
    ds_consumer_release(fr, 1);
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(topic);
    free(row);
    free(row2);
    free(opp);
    PQfinish(db);
    ds_consumer_destroy(cf);
    ds_consumer_destroy(cp);
}

/* Consumes features.ready until the one of opp as of at_us arrives; the
 * caller releases it. */
static rd_kafka_message_t *await_features(ds_consumer_t *c, const char *opp, int64_t at_us) {
    long long deadline = proc_now_ms() + 30000;
    while (proc_now_ms() < deadline) {
        rd_kafka_message_t *m[1];
        dst_consume(c, m, 1, 30000);
        Dealscore__V1__FeaturesReady *ev =
            dealscore__v1__features_ready__unpack(NULL, m[0]->len, m[0]->payload);
        cr_assert(ev, "features.ready decodes");
        bool match = strcmp(ev->opportunity_id, opp) == 0 && ev->as_of_us == at_us;
        dealscore__v1__features_ready__free_unpacked(ev, NULL);
        if (match) return m[0];
        ds_consumer_release(m, 1);
    }
    cr_fatal("no features.ready for %s", opp);
    return NULL;
}

/* Sends a features.ready message again, as a redelivery would. */
static void replay_features_ready(const rd_kafka_message_t *fr, const char *opp, int64_t at) {
    char id[64];
    cr_assert_eq(ds_kafka_header_get(fr, "ce_id", id, sizeof id), 0);
    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&S, &cfg);
    char *topic = pgt_fmt("%sfeatures.ready", S.prefix);
    ds_event_meta_t meta = {.id = id, .type = DS_CE_TYPE_FEATURES_READY, .time_us = at};
    cr_assert_eq(ds_producer_send(p, topic, opp, strlen(opp), fr->payload, fr->len, &meta, NULL), 0);
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(topic);
}

/* A replay of a deal's second score: its own history row is the latest, so
 * the previous score is the row before it (the worker reads that one only
 * then), the same as when it was first scored. */
Test(scoring, a_replayed_second_score_keeps_the_first_as_its_previous) {
    ds_consumer_t *cf = dst_consumer(&S, "features.ready");
    ds_consumer_t *cp = dst_consumer(&S, "prediction.made");
    post_ok("/v1/opportunities", OPP_DEMO);
    PGconn *db = pgt_connect_db(&S.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    int64_t at1 = 1772409600LL * 1000000, at2 = 1773014400LL * 1000000; /* 2026-03-02, 2026-03-09 */
    Dealscore__V1__PredictionMade *first = await_prediction(cp, opp, at1);
    post_ok("/v1/opportunities", OPP_PROPOSAL);
    Dealscore__V1__PredictionMade *second = await_prediction(cp, opp, at2);
    cr_assert(second->has_previous);
    cr_expect_eq(second->previous_proba, first->proba_close);
    rd_kafka_message_t *fr[1] = {await_features(cf, opp, at2)};
    char *row = pgt_valuef(db, LATEST_SCORE, opp);
    replay_features_ready(fr[0], opp, at2);
    Dealscore__V1__PredictionMade *again = await_prediction(cp, opp, at2);
    cr_expect_str_eq(again->event_id, second->event_id);
    cr_expect(again->has_previous, "the replay found no previous score");
    cr_expect_eq(again->previous_proba, first->proba_close);
    cr_expect_eq(again->change->n_drivers, second->change->n_drivers);
    char *row2 = pgt_valuef(db, LATEST_SCORE, opp);
    cr_expect_str_eq(row2, row);
    cr_expect_eq(pgt_longf(db, "select count(*) from prediction_history where opportunity_id = '%s'", opp),
                 2);
    dealscore__v1__prediction_made__free_unpacked(first, NULL);
    dealscore__v1__prediction_made__free_unpacked(second, NULL);
    dealscore__v1__prediction_made__free_unpacked(again, NULL);
    ds_consumer_release(fr, 1);
    free(row);
    free(row2);
    free(opp);
    PQfinish(db);
    ds_consumer_destroy(cf);
    ds_consumer_destroy(cp);
}

/* Registers a model trained on synthetic rows with the engine's names (the
 * first one takes stage_index as its signal), active unless told. */
static void register_model(PGconn *db, const char *version, const char *bad_feature) {
    enum { N = 400, NF = 3 };
    const char *names[NF] = {"stage_index", "days_open", bad_feature ? bad_feature : "amount_log"};
    float x[N * NF], y[N];
    for (int i = 0; i < N; i++) {
        x[i * NF] = (float)(i % 6);
        x[i * NF + 1] = (float)(i % 50);
        x[i * NF + 2] = (float)(i % 7);
        y[i] = (i % 6) >= 3 ? ((i % 5) != 0) : ((i % 5) == 0);
    }
    ds_model_params_t p;
    ds_model_params_default(&p);
    p.n_trees = 20;
    p.max_depth = 3;
    p.nthread = 1;
    ds_model_t *m = NULL;
    char err[256];
    cr_assert_eq(ds_model_train(&p, x, N, NF, names, y, NULL, &m, err, sizeof err), 0, "%s", err);
    char *buf = NULL;
    size_t len = 0;
    cr_assert_eq(ds_model_save(m, &buf, &len, err, sizeof err), 0, "%s", err);
    size_t elen = 0;
    unsigned char *esc = PQescapeByteaConn(db, (unsigned char *)buf, len, &elen);
    pgt_execf(db, "update models set status = 'retired' where org_id = '%s' and status = 'active'", S.org_id);
    pgt_execf(db,
              "insert into models (org_id, version, feature_names, artifact, status)"
              " values ('%s', '%s', array['%s','%s','%s'], '%s'::bytea, 'active')",
              S.org_id, version, names[0], names[1], names[2], esc);
    PQfreemem(esc);
    free(buf);
    ds_model_destroy(m);
}

Test(scoring, hot_swap_to_a_new_model_and_refusal_of_an_unsupported_one) {
    ds_consumer_t *c = dst_consumer(&S, "prediction.made");
    post_ok("/v1/opportunities", OPP_DEMO);
    PGconn *db = pgt_connect_db(&S.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    Dealscore__V1__PredictionMade *pm = await_prediction(c, opp, 1772409600LL * 1000000);
    cr_expect_str_eq(pm->model_version, "prior:history");
    dealscore__v1__prediction_made__free_unpacked(pm, NULL);

    register_model(db, "m-test-1", NULL);
    post_ok("/v1/opportunities", OPP_PROPOSAL);
    pm = await_prediction(c, opp, 1773014400LL * 1000000);
    cr_expect_str_eq(pm->model_version, "m-test-1",
                     "the worker swapped to the activated model without a restart");
    cr_expect(pm->n_top_drivers > 0, "a trained model explains its score");
    dealscore__v1__prediction_made__free_unpacked(pm, NULL);
    /* TreeSHAP: the stored contributions add up to the margin of the score. */
    char *sum =
        pgt_valuef(db,
                   "select sum(value::float8) from prediction_history h, json_each_text(h.contributions)"
                   " where h.opportunity_id = '%s' and h.model_version = 'm-test-1'",
                   opp);
    char *proba = pgt_valuef(db, "select proba_close from predictions where opportunity_id = '%s'", opp);
    double margin = strtod(sum, NULL), p = strtod(proba, NULL);
    cr_expect(fabs(1.0 / (1.0 + exp(-margin)) - p) < 1e-5, "sigmoid(sum of contributions) %.8f vs proba %.8f",
              1.0 / (1.0 + exp(-margin)), p);
    free(sum);
    free(proba);

    /* A model with a feature the engine does not compute is refused. */
    register_model(db, "m-test-bad", "favourite_colour");
    post_ok("/v1/opportunities",
            "{\"external_id\":\"OPP-1\",\"stage\":\"negotiation\",\"created_at\":\"2026-03-01T00:00:00Z\","
            "\"changed_at\":\"2026-03-15T00:00:00Z\",\"account_external_id\":\"ACC-1\"}");
    pm = await_prediction(c, opp, 1773532800LL * 1000000); /* 2026-03-15 */
    cr_expect_str_eq(pm->model_version, "m-test-1", "the refused model is not used");
    dealscore__v1__prediction_made__free_unpacked(pm, NULL);
    char *log = proc_slurp(S.log);
    cr_expect(strstr(log, "refusing model m-test-bad") && strstr(log, "favourite_colour"),
              "a clear log line names the model and the feature");
    free(log);
    free(opp);
    PQfinish(db);
    ds_consumer_destroy(c);
}

/* A connection for calling the scorer directly, its statements registered. */
static ds_pg_t *scorer_pg(void) {
    ds_pg_t *pg = NULL;
    char err[512];
    cr_assert_eq(ds_pg_new(&pg, S.db.conninfo, "test", err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_pg_ensure(pg, 5000, NULL, err, sizeof err), 0, "%s", err);
    scorer_register(pg);
    return pg;
}

static const scorer_org_t *scorer_org(scorer_t *s, ds_pg_t *pg) {
    const scorer_org_t *so = NULL;
    char err[512];
    cr_assert_eq(scorer_get(s, pg, S.org_id, NULL, &so, err, sizeof err), 0, "%s", err);
    return so;
}

/* Scores the n deals ids of the org as of at_us in one scoring_persist
 * call on pg. */
static void persist_many(ds_pg_t *pg, char **ids, size_t n, int64_t at_us) {
    static double values[DS_FEATURE_COUNT];
    ds_org_cache_t *orgs = ds_org_cache_new(60000);
    scorer_t *s = scorer_new(60000, 5);
    scoring_item_t *items = calloc(n, sizeof *items);
    for (size_t i = 0; i < n; i++)
        items[i] = (scoring_item_t){
            .org_id = S.org_id, .opp_id = ids[i], .as_of_us = at_us, .values = values, .stage = "demo"};
    char err[512];
    cr_assert_eq(scoring_persist(pg, orgs, s, 5, items, n, err, sizeof err), 0, "%s", err);
    for (size_t i = 0; i < n; i++) scoring_item_clear(&items[i]);
    free(items);
    scorer_destroy(s);
    ds_org_cache_destroy(orgs);
}

/* n new deals of the org, external ids prefix1 .. prefixN; their ids in
 * ids (pointing into the result, which the caller clears). */
static PGresult *insert_deals(PGconn *db, const char *prefix, int n, char **ids) {
    pgt_execf(db,
              "insert into opportunities (org_id, external_id, stage, created_at)"
              " select '%s', '%s' || g, 'demo', '2026-01-01Z' from generate_series(1, %d) g",
              S.org_id, prefix, n);
    char *sql =
        pgt_fmt("select id::text from opportunities where external_id like '%s%%' order by id", prefix);
    PGresult *r = pgt_query(db, sql);
    free(sql);
    cr_assert_eq(PQntuples(r), n);
    for (int i = 0; i < n; i++) ids[i] = PQgetvalue(r, i, 0);
    return r;
}

/* The predictions of the deals of external id prefix% as of at_s (epoch
 * seconds). */
static long long predictions_as_of(PGconn *db, const char *prefix, long long at_s) {
    return pgt_longf(db,
                     "select count(*) from predictions p join opportunities o on o.id = p.opportunity_id"
                     " where o.external_id like '%s%%' and p.as_of = to_timestamp(%lld)",
                     prefix, at_s);
}

/* A batch's write joins the batch to what it updated by hashing, never
 * row by row: a worker that fell behind gathers thousands of scores into
 * one batch, and comparing every score with every other made a batch of
 * 20,000 take 24 s instead of 1 (the nested-loop plans a long-lived
 * session's generic plan chose for the predictions and deal_risks rows
 * that were not updated). Counted as the rows the plans' join filters
 * threw away, which grows with the square of the batch when it happens. */
Test(scoring, a_large_batch_is_written_with_work_linear_in_its_size) {
    enum { N = 1500 };
    PGconn *db = pgt_connect_db(&S.db);
    char *ids[N];
    PGresult *r = insert_deals(db, "L", N, ids);
    ds_pg_t *pg = scorer_pg();
    persist_many(pg, ids, N, 1780000000000000LL); /* every deal's first score: inserted */
    cr_assert_eq(predictions_as_of(db, "L", 1780000000), N);

    pgt_plans_t plans;
    pgt_plans_watch(ds_pg_conn(pg), &plans);
    persist_many(pg, ids, N, 1780000060000000LL); /* a minute later: every row updated */
    cr_assert_gt(pgt_plans_count(&plans), 0, "auto_explain reported the plans");
    cr_expect_eq(predictions_as_of(db, "L", 1780000060), N, "every prediction moved to the new score");
    long long thrown = pgt_plans_join_filter_max(&plans);
    cr_expect_lt(thrown, N, "a join compared %lld row pairs for a batch of %d", thrown, N);
    free(plans.text);
    ds_pg_destroy(pg);
    PQclear(r);
    PQfinish(db);
}

/* A burst's batch is written without a temporary file: the write
 * materializes its rows with their documents, and thousands of them in one
 * statement went past work_mem, to a file written and read back for each
 * part of the statement (WRITE_CHUNK in score_worker.c). temp_file_limit
 * makes a spill an error. */
Test(scoring, a_bursts_batch_is_written_without_a_temporary_file) {
    enum { N = 3000 };
    PGconn *db = pgt_connect_db(&S.db);
    char *ids[N];
    PGresult *r = insert_deals(db, "T", N, ids);
    ds_pg_t *pg = scorer_pg();
    /* This test's scores carry smaller documents than a trained model's
     * (about 6 KB a score): work_mem shrinks with them, from 4 MB. */
    pgt_exec(ds_pg_conn(pg), "set work_mem = '1MB'; set temp_file_limit = '64kB'");
    persist_many(pg, ids, N, 1780000000000000LL);
    persist_many(pg, ids, N, 1780000060000000LL);
    cr_expect_eq(predictions_as_of(db, "T", 1780000060), N);
    cr_expect_eq(pgt_longf(db, "select count(*) from prediction_history h join opportunities o"
                               " on o.id = h.opportunity_id where o.external_id like 'T%%'"),
                 2 * N, "both scores of every deal are in the history");
    ds_pg_destroy(pg);
    PQclear(r);
    PQfinish(db);
}

/* A burst over more deals than a batch is scored a batch at a time, so
 * that the worker's memory is a batch's, not the burst's: 60 deals'
 * features.ready wait in the topic, the worker (batches of 10) gathers them
 * as one burst and the worker loop hands it to the scoring in 6 slices of
 * 10, each scored, written and published in turn. Scored whole, it was one
 * slice of 60 (tried). */
Test(scoring, a_burst_is_scored_a_batch_at_a_time) {
    enum { N = 60, B = 10 };
    PGconn *db = pgt_connect_db(&S.db);
    char *ids[N];
    PGresult *r = insert_deals(db, "S", N, ids);
    dst_stop(&S);
    dst_env_set(&S, "DEALSCORE_BATCH_SIZE", "10");
    /* The first poll fills its batch from the backlog, which starts the burst. */
    dst_env_set(&S, "DEALSCORE_BATCH_WAIT_MS", "1000");
    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&S, &cfg);
    char *topic = pgt_fmt("%sfeatures.ready", S.prefix);
    for (int i = 0; i < N; i++) {
        char eid[40];
        snprintf(eid, sizeof eid, "5c0f4a52-9d55-4c38-b2c1-43a1c1f0%04d", i);
        Dealscore__V1__FeaturesReady ev = DEALSCORE__V1__FEATURES_READY__INIT;
        ev.event_id = eid;
        ev.org_id = S.org_id;
        ev.opportunity_id = ids[i];
        ev.as_of_us = 1780000000000000LL;
        uint8_t buf[256];
        size_t len = dealscore__v1__features_ready__pack(&ev, buf);
        ds_event_meta_t meta = {.id = eid, .type = DS_CE_TYPE_FEATURES_READY, .time_us = ev.as_of_us};
        cr_assert_eq(ds_producer_send(p, topic, ids[i], strlen(ids[i]), buf, len, &meta, NULL), 0);
    }
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
    dst_start(&S, "scoring");
    dst_wait_metric(&S, "dealscore_worker_batch_size_count{worker=\"scoring\"}", 1.0);
    cr_expect_eq(predictions_as_of(db, "S", 1780000000), N, "every deal scored");
    cr_expect_eq(dst_metric(&S, "dealscore_worker_burst_batches_total{worker=\"scoring\"}"), 1.0);
    cr_expect_eq(dst_metric(&S, "dealscore_worker_batch_size_count{worker=\"scoring\"}"), 1.0,
                 "one batch: the burst");
    cr_expect_eq(dst_metric(&S, "dealscore_scoring_batch_seconds_count"), (double)(N / B),
                 "scored in slices");
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(topic);
    PQclear(r);
    PQfinish(db);
}

/* A stale org whose active model is unchanged keeps it without reading its
 * artifact again; a newly activated model is read and scores. */
Test(scoring, a_stale_org_rereads_its_model_only_when_another_is_active) {
    PGconn *db = pgt_connect_db(&S.db);
    register_model(db, "m-read-1", NULL);
    ds_pg_t *pg = scorer_pg();
    scorer_t *s = scorer_new(0, 5); /* every get finds the org stale */
    const scorer_org_t *first = scorer_org(s, pg);
    cr_expect_str_eq(first->version, "m-read-1");
    cr_expect_eq(scorer_stats(s).model_reads, 1);

    const scorer_org_t *again = scorer_org(s, pg);
    cr_expect_eq(again, first, "the same model stays");
    cr_expect_eq(scorer_stats(s).model_reads, 1, "its artifact is not read again");

    register_model(db, "m-read-2", NULL);
    cr_expect_str_eq(scorer_org(s, pg)->version, "m-read-2");
    cr_expect_eq(scorer_stats(s).model_reads, 2);
    scorer_destroy(s);
    ds_pg_destroy(pg);
    PQfinish(db);
}

/* A stale org without a model keeps its stage win rates while its closed
 * deals are the same; a deal closed meanwhile refits them. */
Test(scoring, a_stale_org_refits_its_prior_only_when_a_deal_closed) {
    ds_pg_t *pg = scorer_pg();
    scorer_t *s = scorer_new(0, 5); /* every get finds the org stale */
    const scorer_org_t *first = scorer_org(s, pg);
    cr_assert(first->has_history, "five closed deals, four won");
    double rate = first->history_rate;
    cr_expect_eq(scorer_org(s, pg)->history_rate, rate);
    cr_expect_eq(scorer_stats(s).prior_fits, 1, "the same closed deals are not fitted again");

    static const char *const lost[][3] = {{"H6", "lost", "proposal"}};
    dst_seed_closed_deals(&S, lost, 1);
    const scorer_org_t *refit = scorer_org(s, pg);
    cr_expect_eq(scorer_stats(s).prior_fits, 2);
    cr_expect_lt(refit->history_rate, rate, "the lost deal lowers the org's win rate");
    scorer_destroy(s);
    ds_pg_destroy(pg);
}

static char *token_sub(const char *sub, const char *org, const char *extra_claims, long exp_offset) {
    char *claims = pgt_fmt("{\"sub\":\"%s\",\"role\":\"authenticated\","
                           "\"aud\":\"authenticated\",\"iat\":%ld,\"exp\":%ld,"
                           "\"app_metadata\":{\"org_id\":\"%s\"%s}}",
                           sub, (long)time(NULL) - 10, (long)time(NULL) + exp_offset, org,
                           extra_claims ? extra_claims : "");
    char *t = NULL;
    cr_assert_eq(ds_jwt_sign_hs256(SECRET, claims, &t), 0);
    free(claims);
    return t;
}

static char *token(const char *org, const char *extra_claims, long exp_offset) {
    return token_sub("7d8f0a1e-0000-4000-8000-000000000001", org, extra_claims, exp_offset);
}

static httpc_resp_t predict(const char *jwt, const char *body) {
    char *hdr = jwt ? pgt_fmt("Content-Type: application/json\r\nAuthorization: Bearer %s\r\n", jwt)
                    : strdup("Content-Type: application/json\r\n");
    httpc_resp_t r = httpc_request(S.port, "POST", "/api/predict", hdr, body, strlen(body), 15000);
    free(hdr);
    return r;
}

/* One call of concurrent_first_scores_all_answer_200. */
typedef struct {
    const char *jwt, *body;
    int status;
} predict_call_t;

static void *predict_call(void *arg) {
    predict_call_t *c = arg;
    httpc_resp_t r = predict(c->jwt, c->body);
    c->status = r.status;
    httpc_free(&r);
    return NULL;
}

/* Calls that score a deal for the first time at once, one per API thread:
 * their inserts of its predictions and deal_risks rows can meet in the
 * realtime identity indexes, which ON CONFLICT (opportunity_id) does not
 * arbitrate. Postgres then raises a unique violation, and the call that
 * met it must score again rather than answer 500. */
Test(scoring, concurrent_first_scores_all_answer_200) {
    enum { DEALS = 40, CALLS = 4 };
    PGconn *db = pgt_connect_db(&S.db);
    char *ids[DEALS];
    PGresult *r = insert_deals(db, "RACE-", DEALS, ids);
    char *jwt = token(S.org_id, NULL, 3600);
    int failed = 0, last = 200;
    for (int d = 0; d < DEALS; d++) {
        char *body = pgt_fmt("{\"opportunity_id\":\"%s\"}", ids[d]);
        predict_call_t calls[CALLS];
        pthread_t th[CALLS];
        for (int c = 0; c < CALLS; c++) {
            calls[c] = (predict_call_t){.jwt = jwt, .body = body};
            cr_assert_eq(pthread_create(&th[c], NULL, predict_call, &calls[c]), 0);
        }
        for (int c = 0; c < CALLS; c++) {
            pthread_join(th[c], NULL);
            if (calls[c].status != 200) {
                failed++;
                last = calls[c].status;
            }
        }
        free(body);
    }
    cr_expect_eq(failed, 0, "%d of %d calls failed (the last with %d)", failed, DEALS * CALLS, last);
    char *n = pgt_valuef(db, "select count(*) from predictions where opportunity_id in"
                             " (select id from opportunities where external_id like 'RACE-%%')");
    cr_expect_str_eq(n, "40");
    free(n);
    free(jwt);
    PQclear(r);
    PQfinish(db);
}

Test(scoring, api_predict_scores_visible_opportunities_and_hides_the_rest) {
    post_ok("/v1/opportunities", OPP_DEMO);
    PGconn *db = pgt_connect_db(&S.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    char *acc = pgt_valuef(db, "select id from accounts where external_id = 'ACC-1'");
    char *body = pgt_fmt("{\"opportunity_id\":\"%s\"}", opp);

    char *ok = token(S.org_id, NULL, 3600);
    httpc_resp_t r = predict(ok, body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    cr_assert(j);
    cr_expect_str_eq(json_string_value(json_object_get(j, "opportunity_id")), opp);
    cr_expect_str_eq(json_string_value(json_object_get(j, "model_version")), "prior:history");
    double p = json_real_value(json_object_get(j, "proba_close"));
    cr_expect(p > 0 && p < 1);
    cr_expect(json_is_object(json_object_get(json_object_get(j, "meddicc"), "champion")));
    cr_expect(json_is_array(json_object_get(json_object_get(j, "drivers"), "positive")));
    /* Its change is the document stored in predictions and the history. */
    char *q = pgt_fmt("select change::text from predictions where opportunity_id = '%s'", opp);
    json_t *row = json_of_sql(db, q);
    free(q);
    q = pgt_fmt("select change::text from prediction_history where opportunity_id = '%s' and as_of = '%s'",
                opp, json_string_value(json_object_get(j, "as_of")));
    json_t *hist = json_of_sql(db, q);
    free(q);
    char *change_text = json_dumps(json_object_get(j, "change"), 0);
    json_t *api_change = json_loads(change_text, JSON_DECODE_INT_AS_REAL, NULL);
    free(change_text);
    cr_expect(json_equal(api_change, row), "%s", r.body);
    cr_expect(json_equal(api_change, hist), "%s", r.body);
    cr_expect(json_is_array(json_object_get(api_change, "drivers")), "%s", r.body);
    json_decref(api_change);
    json_decref(row);
    json_decref(hist);
    cr_expect(json_is_null(json_object_get(j, "benchmark")), "no cohort yet: benchmark is null");
    json_decref(j);
    httpc_free(&r);
    /* Once the benchmark worker has placed it in a cohort, the body carries it. */
    pgt_execf(db,
              "insert into benchmarks_cached (org_id, cohort_key, as_of, match_level, cohort_size, metrics)"
              " values ('%s', 'v1|test', '2026-11-01T00:00:00Z', 'full', 12, '{\"win_rate\": 0.25}')",
              S.org_id);
    pgt_execf(
        db,
        "insert into opportunity_benchmarks (org_id, opportunity_id, account_id, cohort_key, match_level)"
        " values ('%s', '%s', '%s', 'v1|test', 'industry')",
        S.org_id, opp, acc);
    r = predict(ok, body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = json_loads(r.body, 0, NULL);
    json_t *bm = json_object_get(j, "benchmark");
    cr_expect_str_eq(json_string_value(json_object_get(bm, "cohort_key")), "v1|test", "%s", r.body);
    cr_expect_str_eq(json_string_value(json_object_get(bm, "match_level")), "industry", "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(bm, "cohort_size")), 12, "%s", r.body);
    cr_expect_eq(json_real_value(json_object_get(json_object_get(bm, "metrics"), "win_rate")), 0.25, "%s",
                 r.body);
    json_decref(j);
    httpc_free(&r);
    /* It persisted like the worker. */
    cr_expect_geq(pgt_longf(db, "select count(*) from prediction_history where opportunity_id = '%s'", opp),
                  1);

    /* Another org's user: 404, exactly like a missing opportunity. */
    char *other = token("3f1c2b8e-1111-4a2b-9c3d-5e6f7a8b9c0d", NULL, 3600);
    httpc_resp_t r1 = predict(other, body);
    httpc_resp_t r2 = predict(ok, "{\"opportunity_id\":\"00000000-0000-4000-8000-000000000000\"}");
    cr_expect_eq(r1.status, 404, "%s", r1.body);
    cr_expect_eq(r2.status, 404, "%s", r2.body);
    cr_expect_str_eq(r1.body, r2.body, "cross-org and missing look the same");
    httpc_free(&r1);
    httpc_free(&r2);

    /* Account-scoped user: only member accounts. */
    char *scoped = token(S.org_id, ",\"account_scoped\":true", 3600);
    r = predict(scoped, body);
    cr_expect_eq(r.status, 404, "not a member yet: %s", r.body);
    httpc_free(&r);
    pgt_execf(db,
              "insert into account_members (org_id, account_id, user_id) values ('%s', '%s',"
              " '7d8f0a1e-0000-4000-8000-000000000001')",
              S.org_id, acc);
    r = predict(scoped, body);
    cr_expect_eq(r.status, 200, "member: %s", r.body);
    httpc_free(&r);

    /* By the CRM's id: the same deal, under the same rules. */
    r = predict(ok, "{\"external_id\":\" OPP-1 \"}");
    cr_expect_eq(r.status, 200, "%s", r.body);
    j = json_loads(r.body, 0, NULL);
    cr_expect_str_eq(json_string_value(json_object_get(j, "opportunity_id")), opp, "%s", r.body);
    json_decref(j);
    httpc_free(&r);
    r1 = predict(other, "{\"external_id\":\"OPP-1\"}");
    r2 = predict(ok, "{\"external_id\":\"OPP-404\"}");
    cr_expect_eq(r1.status, 404, "another org's deal by external id: %s", r1.body);
    cr_expect_eq(r2.status, 404, "%s", r2.body);
    cr_expect_str_eq(r1.body, r2.body, "cross-org and missing look the same");
    httpc_free(&r1);
    httpc_free(&r2);
    char *both = pgt_fmt("{\"opportunity_id\":\"%s\",\"external_id\":\"OPP-1\"}", opp);
    const char *bad[][2] = {
        {both,
         "{\"error\":\"invalid_request\",\"message\":\"external_id cannot be given with opportunity_id "
         "(give one of them)\",\"errors\":[{\"field\":\"external_id\",\"problem\":\"cannot be given with "
         "opportunity_id (give one of them)\"}]}\n"},
        {"{}", "{\"error\":\"invalid_request\",\"message\":\"opportunity_id is required (or external_id)\","
               "\"errors\":[{\"field\":\"opportunity_id\",\"problem\":\"is required (or external_id)\"}]}\n"},
        {"{\"external_id\":[1]}",
         "{\"error\":\"invalid_request\",\"message\":\"external_id must be a string\","
         "\"errors\":[{\"field\":\"external_id\",\"problem\":\"must be a string\"}]}\n"},
        {"{\"external_id\":\"  \"}",
         "{\"error\":\"invalid_request\",\"message\":\"external_id is required\","
         "\"errors\":[{\"field\":\"external_id\",\"problem\":\"is required\"}]}\n"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = predict(ok, bad[i][0]);
        cr_expect_eq(r.status, 400, "%s: %s", bad[i][0], r.body);
        cr_expect_str_eq(r.body, bad[i][1], "%s", bad[i][0]);
        httpc_free(&r);
    }
    free(both);

    /* Errors. */
    r = predict(NULL, body);
    cr_expect_eq(r.status, 401);
    char wa[256];
    cr_expect(httpc_header(&r, "www-authenticate", wa, sizeof wa) != NULL);
    httpc_free(&r);
    char *expired = token(S.org_id, NULL, -3600);
    r = predict(expired, body);
    cr_expect_eq(r.status, 401, "expired: %s", r.body);
    httpc_free(&r);
    /* Tampered payload: another org spliced into a valid token. */
    char *tampered = strdup(ok);
    char *dot1 = strchr(tampered, '.'), *dot2 = strchr(dot1 + 1, '.');
    char *fake_claims =
        pgt_fmt("{\"sub\":\"x\",\"role\":\"authenticated\",\"aud\":\"authenticated\",\"exp\":%ld,"
                "\"app_metadata\":{\"org_id\":\"%s\"}}",
                (long)time(NULL) + 3600, S.org_id);
    char *fake_b64 = ds_jwt_b64url_encode(fake_claims, strlen(fake_claims));
    char *forged = pgt_fmt("%.*s.%s%s", (int)(dot1 - tampered), tampered, fake_b64, dot2);
    r = predict(forged, body);
    cr_expect_eq(r.status, 401, "tampered: %s", r.body);
    httpc_free(&r);
    /* alg: none. */
    char *none_hdr = ds_jwt_b64url_encode("{\"alg\":\"none\",\"typ\":\"JWT\"}", 27);
    char *none = pgt_fmt("%s.%s.", none_hdr, fake_b64);
    r = predict(none, body);
    cr_expect_eq(r.status, 401, "alg none: %s", r.body);
    httpc_free(&r);
    r = predict(ok, "{\"opportunity_id\":42}");
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(strstr(r.body, "opportunity_id"), "%s", r.body);
    httpc_free(&r);
    r = predict(ok, "not json");
    cr_expect_eq(r.status, 400, "%s", r.body);
    httpc_free(&r);
    char *hdr = pgt_fmt("Content-Type: text/plain\r\nAuthorization: Bearer %s\r\n", ok);
    r = httpc_request(S.port, "POST", "/api/predict", hdr, body, strlen(body), 10000);
    cr_expect_eq(r.status, 415, "%s", r.body);
    httpc_free(&r);
    free(hdr);
    r = httpc_get(S.port, "/api/predict");
    cr_expect_eq(r.status, 405, "%s", r.body);
    httpc_free(&r);
    size_t big = 70000;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = '\0';
    huge[0] = '{';
    huge[big - 1] = '}';
    r = predict(ok, huge);
    cr_expect_eq(r.status, 413, "%d", r.status);
    httpc_free(&r);
    free(huge);

    free(none_hdr);
    free(none);
    free(fake_claims);
    free(fake_b64);
    free(forged);
    free(tampered);
    free(expired);
    free(scoped);
    free(other);
    free(ok);
    free(body);
    free(acc);
    free(opp);
    PQfinish(db);
}

Test(scoring, a_features_ready_with_malformed_ids_goes_to_the_dlq) {
    /* 36 characters but not a UUID: let through, the database would refuse
     * the cast and the batch would be retried for ever. */
    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&S, &cfg);
    ds_consumer_t *dlq = dst_consumer(&S, "features.ready.dlq");
    char *topic = pgt_fmt("%sfeatures.ready", S.prefix);
    const char *bad = "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz";
    Dealscore__V1__FeaturesReady fr = DEALSCORE__V1__FEATURES_READY__INIT;
    fr.event_id = "e";
    fr.causation_id = "";
    fr.org_id = S.org_id;
    fr.opportunity_id = (char *)bad;
    fr.feature_version = DS_FEATURE_VERSION;
    uint8_t buf[256];
    size_t len = dealscore__v1__features_ready__pack(&fr, buf);
    ds_event_meta_t meta = {.type = DS_CE_TYPE_FEATURES_READY};
    cr_assert_eq(ds_producer_send(p, topic, bad, strlen(bad), buf, len, &meta, NULL), 0);
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
    rd_kafka_message_t *m[1];
    dst_consume(dlq, m, 1, 30000);
    char h[256];
    cr_assert_eq(ds_kafka_header_get(m[0], "dlq_error", h, sizeof h), 0);
    cr_expect(strstr(h, "UUID") != NULL, "dlq_error: %s", h);
    ds_consumer_release(m, 1);
    ds_consumer_destroy(dlq);
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(topic);
}

/* Hostile but validly signed or oversized requests: each a clear 4xx, and
 * no body ever carries the database's words. */
Test(scoring, api_predict_refuses_hostile_requests_with_clear_errors) {
    post_ok("/v1/opportunities", OPP_DEMO);
    PGconn *db = pgt_connect_db(&S.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    char *body = pgt_fmt("{\"opportunity_id\":\"%s\"}", opp);
    /* A sub that is no UUID, account-scoped: Postgres refused it in the
     * membership check and the 500 echoed its error. */
    const char *subs[] = {"not-a-uuid", "7d8f0a1e-0000-4000-8000-00000000000g", ""};
    for (size_t i = 0; i < PGT_N(subs); i++) {
        char *t = token_sub(subs[i], S.org_id, ",\"account_scoped\":true", 3600);
        httpc_resp_t r = predict(t, body);
        cr_expect_eq(r.status, 401, "sub '%s': %d %s", subs[i], r.status, r.body);
        cr_expect(r.body && !strstr(r.body, "uuid:") && !strstr(r.body, "invalid input syntax"), "%s",
                  r.body);
        httpc_free(&r);
        free(t);
    }
    char *t = token_sub("not-a-uuid", S.org_id, ",\"account_scoped\":true", 3600);
    httpc_resp_t r = predict(t, body);
    json_t *j = json_loads(r.body, 0, NULL);
    cr_expect_str_eq(json_string_value(json_object_get(j, "error")), "invalid_token", "%s", r.body);
    cr_expect_str_eq(json_string_value(json_object_get(j, "message")), "the token's sub is not a UUID", "%s",
                     r.body);
    json_decref(j);
    httpc_free(&r);
    free(t);
    /* application/jsonp is not application/json (a prefix matched). */
    char *ok = token(S.org_id, NULL, 3600);
    char *hdr = pgt_fmt("Content-Type: application/jsonp\r\nAuthorization: Bearer %s\r\n", ok);
    r = httpc_request(S.port, "POST", "/api/predict", hdr, body, strlen(body), 10000);
    cr_expect_eq(r.status, 415, "%s", r.body);
    httpc_free(&r);
    free(hdr);
    hdr = pgt_fmt("Content-Type: application/json; charset=utf-8\r\nAuthorization: Bearer %s\r\n", ok);
    r = httpc_request(S.port, "POST", "/api/predict", hdr, body, strlen(body), 15000);
    cr_expect_eq(r.status, 200, "%s", r.body);
    httpc_free(&r);
    free(hdr);
    /* An Authorization header over the 8 KiB limit: a 401 that says so (it
     * was cut and refused as "not three parts"). */
    char *pad = malloc(9000);
    memset(pad, 'A', 8999);
    pad[8999] = '\0';
    char *longtok = pgt_fmt("%s%s", ok, pad);
    r = predict(longtok, body);
    cr_expect_eq(r.status, 401, "%s", r.body);
    cr_expect(r.body && strstr(r.body, "longer than 8192 bytes"), "%s", r.body);
    httpc_free(&r);
    free(longtok);
    free(pad);
    free(ok);
    free(body);
    free(opp);
    PQfinish(db);
}

/* A browser app on a listed origin may call /api/predict (preflight, then
 * the call with its grant); another origin's preflight is refused. */
Test(scoring, api_predict_answers_browsers_of_listed_origins_only) {
    httpc_resp_t r = httpc_request(S.port, "OPTIONS", "/api/predict",
                                   "Origin: http://127.0.0.1:3000\r\nAccess-Control-Request-Method: POST\r\n"
                                   "Access-Control-Request-Headers: authorization,content-type\r\n",
                                   NULL, 0, 10000);
    char v[5][128];
    cr_assert_eq(r.status, 204, "%s", r.headers);
    cr_expect_str_eq(httpc_header(&r, "access-control-allow-origin", v[0], 128), "http://127.0.0.1:3000");
    cr_expect_str_eq(httpc_header(&r, "access-control-allow-methods", v[1], 128), "POST");
    cr_expect_str_eq(httpc_header(&r, "access-control-allow-headers", v[2], 128),
                     "Authorization, Content-Type");
    cr_expect_str_eq(httpc_header(&r, "access-control-max-age", v[3], 128), "600");
    cr_expect_str_eq(httpc_header(&r, "vary", v[4], 128), "Origin");
    httpc_free(&r);

    char *ok = token(S.org_id, NULL, 3600);
    char *hdr = pgt_fmt("Origin: http://127.0.0.1:3000\r\nContent-Type: application/json\r\n"
                        "Authorization: Bearer %s\r\n",
                        ok);
    const char *missing = "{\"opportunity_id\":\"00000000-0000-4000-8000-000000000000\"}";
    r = httpc_request(S.port, "POST", "/api/predict", hdr, missing, strlen(missing), 10000);
    cr_expect_eq(r.status, 404, "%s", r.body);
    cr_expect_str_eq(httpc_header(&r, "access-control-allow-origin", v[0], 128), "http://127.0.0.1:3000",
                     "errors carry the grant too: the page can read them");
    cr_expect_str_eq(httpc_header(&r, "vary", v[4], 128), "Origin");
    httpc_free(&r);

    r = httpc_request(S.port, "OPTIONS", "/api/predict",
                      "Origin: http://127.0.0.1:3001\r\nAccess-Control-Request-Method: POST\r\n", NULL, 0,
                      10000);
    cr_expect_eq(r.status, 403, "%s", r.headers);
    cr_expect(!strcasestr(r.headers, "\naccess-control-"), "%s", r.headers);
    cr_expect_str_eq(
        r.body, "{\"error\":\"origin_not_allowed\",\"message\":\"this origin may not call the API from a "
                "browser (DEALSCORE_CORS_ORIGINS)\"}\n");
    httpc_free(&r);
    free(hdr);
    free(ok);
}

/* Every entry of a drivers list or of a change's drivers carries "label"
 * and "display" beside its raw "value"; returns the display of feature
 * (NULL when the list lacks it). */
static const char *expect_words(json_t *list, const char *feature, const char *where) {
    const char *found = NULL;
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d) {
        const char *f = json_string_value(json_object_get(d, "feature"));
        cr_expect(json_is_string(json_object_get(d, "label")), "%s: %s has a label", where, f);
        cr_expect(json_is_string(json_object_get(d, "display")), "%s: %s has a display", where, f);
        cr_expect(json_object_get(d, "value") != NULL, "%s: %s keeps its raw value", where, f);
        if (f && strcmp(f, feature) == 0) found = json_string_value(json_object_get(d, "display"));
    }
    return found;
}

Test(scoring, drivers_and_what_moved_read_in_words) {
    PGconn *db = pgt_connect_db(&S.db);
    register_model(db, "m-words", NULL);
    ds_consumer_t *c = dst_consumer(&S, "prediction.made");
    post_ok("/v1/opportunities",
            "{\"external_id\":\"OPP-W\",\"stage\":\"demo\",\"created_at\":\"2026-03-01T00:00:00Z\","
            "\"changed_at\":\"2026-03-02T00:00:00Z\",\"amount\":285000,\"currency\":\"USD\"}");
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-W'");
    dealscore__v1__prediction_made__free_unpacked(await_prediction(c, opp, 1772409600LL * 1000000), NULL);
    post_ok("/v1/opportunities",
            "{\"external_id\":\"OPP-W\",\"stage\":\"proposal\",\"created_at\":\"2026-03-01T00:00:00Z\","
            "\"changed_at\":\"2026-03-09T00:00:00Z\",\"amount\":285000,\"currency\":\"USD\"}");
    dealscore__v1__prediction_made__free_unpacked(await_prediction(c, opp, 1773014400LL * 1000000), NULL);

    /* The stored row: drivers and what moved the score, in words. */
    char *q = pgt_fmt("select json_build_object('drivers', top_features, 'change', change)"
                      " from predictions where opportunity_id = '%s'",
                      opp);
    json_t *row = json_of_sql(db, q);
    free(q);
    json_t *drivers = json_object_get(row, "drivers"), *all = json_array();
    json_array_extend(all, json_object_get(drivers, "positive"));
    json_array_extend(all, json_object_get(drivers, "negative"));
    cr_expect_gt(json_array_size(all), 0, "the model explains its score");
    const char *stage = expect_words(all, "stage_index", "predictions drivers");
    cr_expect(stage && strcmp(stage, "proposal since today") == 0, "stage: %s", stage ? stage : "(none)");
    const char *amount = expect_words(all, "amount_log", "predictions drivers");
    if (amount) cr_expect_str_eq(amount, "$285,000");
    const char *open = expect_words(all, "days_open", "predictions drivers");
    if (open) cr_expect_str_eq(open, "8 days");
    json_t *moved = json_object_get(json_object_get(row, "change"), "drivers");
    stage = expect_words(moved, "stage_index", "predictions change");
    cr_expect(stage && strcmp(stage, "proposal since today") == 0, "moved: %s", stage ? stage : "(none)");
    /* prediction_history keeps the same change. */
    q = pgt_fmt("select change::text from prediction_history where opportunity_id = '%s'"
                " order by as_of desc limit 1",
                opp);
    json_t *hist = json_of_sql(db, q);
    free(q);
    expect_words(json_object_get(hist, "drivers"), "stage_index", "prediction_history change");

    /* /api/predict answers with the same words. */
    char *body = pgt_fmt("{\"opportunity_id\":\"%s\"}", opp), *jwt = token(S.org_id, NULL, 3600);
    httpc_resp_t r = predict(jwt, body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *api = json_array();
    json_array_extend(api, json_object_get(json_object_get(j, "drivers"), "positive"));
    json_array_extend(api, json_object_get(json_object_get(j, "drivers"), "negative"));
    amount = expect_words(api, "amount_log", "/api/predict drivers");
    if (amount) cr_expect_str_eq(amount, "$285,000");
    expect_words(json_object_get(json_object_get(j, "change"), "drivers"), "stage_index",
                 "/api/predict change");
    json_decref(j);
    httpc_free(&r);
    json_decref(api);
    json_decref(hist);
    json_decref(all);
    json_decref(row);
    free(body);
    free(jwt);
    free(opp);
    PQfinish(db);
    ds_consumer_destroy(c);
}
