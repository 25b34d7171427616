/* Deal risks through the real workers: a deal without a champion, stalled
 * in its stage, gets exactly those two risks in deal_risks, each with a
 * what-if above its score equal to the model's probability on the
 * resolved features, ranked by gain; a user of another org reads none of
 * them under RLS; an org's own rule applies with its next model; a deal
 * that closes loses its row; a deal with one buyer
 * contact gets the model's probability with a second one as its what-if;
 * the worker's cache of an org's thresholds reloads them off its loop. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>

#include "dstest.h"
#include "domain/features.h"
#include "domain/model.h"
#include "scoring/deal_risks.h"

static dst_t S; /* scoring */
static dst_t F; /* feature */
static dst_t I; /* ingest */

enum { NF = 3 };
static const char *const model_names[NF] = {"stage_index", "days_in_stage", "meddicc_champion"};
static const char *const contact_names[NF] = {"stage_index", "days_in_stage", "buyer_contacts"};

/* A model over names where the third feature above low (a champion past
 * 0, or a second buyer contact past 1) and a fresh stage (<= 30 days)
 * raise the odds. */
static ds_model_t *train_model(const char *const names[NF], int low) {
    enum { N = 600 };
    float x[N * NF], y[N];
    for (int i = 0; i < N; i++) {
        int days = i % 61, up = (i / 61) % 2;
        x[i * NF] = (float)(i % 6);
        x[i * NF + 1] = (float)days;
        x[i * NF + 2] = (float)(low + up);
        int score = up * 2 + (days <= 30);
        y[i] = score == 3   ? (i % 7 != 0)
               : score == 2 ? (i % 2 == 0)
               : score == 1 ? (i % 3 == 0)
                            : (i % 9 == 0);
    }
    ds_model_params_t p;
    ds_model_params_default(&p);
    p.n_trees = 20;
    p.max_depth = 3;
    p.nthread = 1;
    ds_model_t *m = NULL;
    char err[256];
    cr_assert_eq(ds_model_train(&p, x, N, NF, names, y, NULL, &m, err, sizeof err), 0, "%s", err);
    return m;
}

static void register_model(PGconn *db, ds_model_t *m, const char *const names[NF]) {
    char *buf = NULL, err[256];
    size_t len = 0, elen = 0;
    cr_assert_eq(ds_model_save(m, &buf, &len, err, sizeof err), 0, "%s", err);
    unsigned char *esc = PQescapeByteaConn(db, (unsigned char *)buf, len, &elen);
    pgt_execf(db,
              "insert into models (org_id, version, feature_names, artifact, status)"
              " values ('%s', 'm-risks', array['%s','%s','%s'], '%s'::bytea, 'active')",
              S.org_id, names[0], names[1], names[2], esc);
    PQfreemem(esc);
    free(buf);
}

static double model_proba(ds_model_t *m, double stage, double days, double third) {
    float x[NF] = {(float)stage, (float)days, (float)third};
    double margin = 0;
    char err[256];
    cr_assert_eq(ds_model_predict_margin(m, x, 1, &margin, err, sizeof err), 0, "%s", err);
    return 1.0 / (1.0 + exp(-margin));
}

static void setup(void) {
    dst_setup(&S);
    free(dst_token(&S, "acme", NULL));
    dst_start_pipeline(&S, &F, &I);
}

static void teardown(void) { dst_teardown_pipeline(&S, &F, &I); }

TestSuite(risks, .init = setup, .fini = teardown, .timeout = 180);

static void post_ok(const char *path, const char *body) { dst_post_accepted(&I, path, body); }

/* Every MEDDICC element but the champion, from two buyer contacts. */
static const char *TRANSCRIPT =
    "{\"external_id\":\"T-1\",\"opportunity_external_id\":\"OPP-R\",\"occurred_at\":\"2026-10-21T10:00:00Z\","
    "\"text\":\"Rep: Thanks for joining.\\nMaria: Our pain point is the month end close. The ROI has to be "
    "clear. I am the budget holder. Our decision criteria are written down. The decision process ends in "
    "procurement. We are also evaluating other vendors.\\nTom: Security signs off after that.\"}";

/* Reads the deal's risks (JSON array text) once the transcript's score is
 * stored. */
static json_t *await_risks(PGconn *db, const char *opp, const char *as_of) {
    char *sql =
        pgt_fmt("select count(*) from deal_risks where opportunity_id = '%s' and as_of = '%s'", opp, as_of);
    if (dst_wait_count(&S, sql, 1, 30000) != 1) {
        char *seen =
            pgt_valuef(db, "select string_agg(as_of::text || ' ' || risks::text, '; ') from deal_risks");
        char *pred =
            pgt_valuef(db, "select string_agg(as_of::text || ' ' || proba_close, '; ') from predictions");
        char *log = proc_slurp(S.log);
        cr_fatal("no deal_risks row as of %s; rows: %s; predictions: %s; scoring log:\n%s", as_of, seen, pred,
                 log);
    }
    free(sql);
    char *text = pgt_valuef(db, "select risks::text from deal_risks where opportunity_id = '%s'", opp);
    json_t *j = json_loads(text, 0, NULL);
    cr_assert(json_is_array(j), "risks is an array: %s", text);
    free(text);
    return j;
}

static long long as_user(PGconn *db, const char *org, const char *sql) {
    pgt_exec(db, "begin");
    pgt_exec(db, "set local role authenticated");
    pgt_execf(db,
              "select set_config('request.jwt.claims', '{\"sub\": \"c0000000-0000-4000-8000-000000000001\","
              " \"role\": \"authenticated\", \"app_metadata\": {\"org_id\": \"%s\"}}', true)",
              org);
    long long n = pgt_longf(db, "%s", sql);
    pgt_exec(db, "rollback");
    return n;
}

Test(risks, a_deal_without_a_champion_stalled_in_proposal) {
    PGconn *db = pgt_connect_db(&S.db);
    ds_model_t *m = train_model(model_names, 0);
    register_model(db, m, model_names);
    post_ok("/v1/opportunities",
            "[{\"external_id\":\"OPP-R\",\"stage\":\"discovery\",\"created_at\":\"2026-09-01T00:00:00Z\","
            "\"changed_at\":\"2026-09-01T00:00:00Z\",\"amount\":50000},"
            "{\"external_id\":\"OPP-R\",\"stage\":\"proposal\",\"created_at\":\"2026-09-01T00:00:00Z\","
            "\"changed_at\":\"2026-09-03T00:00:00Z\",\"amount\":50000}]");
    post_ok("/v1/transcripts", TRANSCRIPT);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-R'");
    /* As of the transcript: 48 days in proposal (entered 09-03), champion
     * missing, the seven other elements found, two buyer contacts. */
    json_t *risks = await_risks(db, opp, "2026-10-21T10:00:00Z");
    char *dump = json_dumps(risks, 0);
    cr_assert_eq(json_array_size(risks), 2, "exactly two risks: %s", dump);
    char *pt = pgt_valuef(db, "select proba_close from deal_risks where opportunity_id = '%s'", opp);
    double p = strtod(pt, NULL);
    double p_expect = model_proba(m, 4, 48.416667, 0);
    cr_expect(fabs(p - p_expect) < 1e-6, "score %.8f, the model says %.8f", p, p_expect);
    /* The fallback thresholds apply (no won deals): champion from demo on,
     * stalled past 30 days; resolved: champion 1, or 30 days in stage. */
    double want_champ = model_proba(m, 4, 48.416667, 1), want_stall = model_proba(m, 4, 30, 0);
    cr_assert_gt(want_champ, p);
    cr_assert_gt(want_stall, p);
    bool champ_first = want_champ > want_stall;
    json_t *champ = json_array_get(risks, champ_first ? 0 : 1),
           *stall = json_array_get(risks, champ_first ? 1 : 0);
    cr_expect_str_eq(json_string_value(json_object_get(champ, "rule")), "meddicc_missing", "%s", dump);
    cr_expect_str_eq(json_string_value(json_object_get(champ, "element")), "champion", "%s", dump);
    cr_expect_str_eq(
        json_string_value(json_object_get(champ, "evidence")),
        "No champion identified yet in proposal (1 recorded call); expected from demo on (default: too few "
        "won deals)");
    cr_expect_str_eq(json_string_value(json_object_get(champ, "action")),
                     "Establish the champion with the buyer before the deal moves on");
    cr_expect_str_eq(json_string_value(json_object_get(stall, "rule")), "stalled", "%s", dump);
    cr_expect_str_eq(json_string_value(json_object_get(stall, "evidence")),
                     "48 days in proposal; over the 30-day default (too few won deals)");
    double wc = json_number_value(json_object_get(champ, "what_if"));
    double ws = json_number_value(json_object_get(stall, "what_if"));
    cr_expect(fabs(wc - want_champ) < 6e-5, "champion what-if %.4f, the model says %.6f", wc, want_champ);
    cr_expect(fabs(ws - want_stall) < 6e-5, "stall what-if %.4f, the model says %.6f", ws, want_stall);
    cr_expect(fabs(json_number_value(json_object_get(champ, "gain")) - (want_champ - p)) < 1e-4, "%s", dump);

    /* RLS: org A's user reads the row, another org's user none of it. */
    char *sql = pgt_fmt("select count(*) from deal_risks where opportunity_id = '%s'", opp);
    cr_expect_eq(as_user(db, S.org_id, sql), 1);
    cr_expect_eq(as_user(db, "3f1c2b8e-1111-4a2b-9c3d-5e6f7a8b9c0d", "select count(*) from deal_risks"), 0);
    free(sql);

    /* The org's own rule (the champion expected from negotiation on) and a
     * new active model: the worker hears of the model while idle and
     * reloads the org's risk thresholds with it, so the next score follows
     * the rule. */
    double heard = dst_metric(&S, "dealscore_model_changes_total");
    pgt_execf(db,
              "insert into risk_rules (org_id, rule, param, fallback, action)"
              " values ('%s', 'meddicc_missing', 0.5, 5, 'Establish the {element}')",
              S.org_id);
    pgt_execf(db, "update models set status = 'retired', version = 'm-risks-0' where org_id = '%s'",
              S.org_id);
    register_model(db, m, model_names);
    dst_wait_metric(&S, "dealscore_model_changes_total", heard + 1);
    post_ok("/v1/interactions",
            "{\"external_id\":\"I-R\",\"opportunity_external_id\":\"OPP-R\",\"type\":\"email\","
            "\"occurred_at\":\"2026-10-22T10:00:00Z\"}");
    json_t *later = await_risks(db, opp, "2026-10-22T10:00:00Z");
    char *ldump = json_dumps(later, 0);
    cr_expect_eq(json_array_size(later), 1, "only the stall: %s", ldump);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(later, 0), "rule")), "stalled", "%s",
                     ldump);
    free(ldump);
    json_decref(later);

    /* Won: the deal is no longer open and its risks go. */
    post_ok(
        "/v1/opportunities",
        "{\"external_id\":\"OPP-R\",\"stage\":\"closed_won\",\"created_at\":\"2026-09-01T00:00:00Z\","
        "\"changed_at\":\"2026-10-25T00:00:00Z\",\"closed_at\":\"2026-10-25T00:00:00Z\",\"amount\":50000}");
    sql = pgt_fmt("select count(*) from deal_risks where opportunity_id = '%s'", opp);
    cr_expect_eq(dst_wait_count(&S, sql, 0, 30000), 0, "a won deal keeps its risks");
    free(sql);
    free(pt);
    free(dump);
    json_decref(risks);
    ds_model_destroy(m);
    free(opp);
    PQfinish(db);
}

/* One buyer contact: the speakers other than "Rep" of the deal's
 * transcripts are its contacts (buyer_contacts); the what-if is the
 * model's probability with a second one engaged. */
Test(risks, a_deal_with_one_buyer_contact) {
    PGconn *db = pgt_connect_db(&S.db);
    ds_model_t *m = train_model(contact_names, 1);
    register_model(db, m, contact_names);
    post_ok("/v1/opportunities",
            "[{\"external_id\":\"OPP-S\",\"stage\":\"discovery\",\"created_at\":\"2026-09-01T00:00:00Z\","
            "\"changed_at\":\"2026-09-01T00:00:00Z\",\"amount\":20000},"
            "{\"external_id\":\"OPP-S\",\"stage\":\"proposal\",\"created_at\":\"2026-09-01T00:00:00Z\","
            "\"changed_at\":\"2026-10-20T00:00:00Z\",\"amount\":20000}]");
    post_ok(
        "/v1/transcripts",
        "{\"external_id\":\"T-S\",\"opportunity_external_id\":\"OPP-S\","
        "\"occurred_at\":\"2026-10-21T10:00:00Z\",\"text\":\"Rep: Thanks for joining.\\nMaria: Our pain "
        "point is the month end close. The ROI has to be clear. I am the budget holder. Our decision "
        "criteria are written down. The decision process ends in procurement. We are also evaluating other "
        "vendors. I will be your internal advocate.\\nRep: Great.\"}");
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-S'");
    json_t *risks = await_risks(db, opp, "2026-10-21T10:00:00Z");
    char *dump = json_dumps(risks, 0);
    cr_assert_eq(json_array_size(risks), 1, "one risk: %s", dump);
    json_t *r = json_array_get(risks, 0);
    cr_expect_str_eq(json_string_value(json_object_get(r, "rule")), "single_contact", "%s", dump);
    cr_expect_str_eq(json_string_value(json_object_get(r, "evidence")),
                     "1 buyer contact engaged so far, in proposal");
    /* As of the transcript: 1.416667 days in proposal (entered 10-20). */
    double p = model_proba(m, 4, 1.416667, 1), want = model_proba(m, 4, 1.416667, 2);
    cr_assert_gt(want, p + 0.01, "the model rewards a second contact");
    char *pt = pgt_valuef(db, "select proba_close from deal_risks where opportunity_id = '%s'", opp);
    cr_expect(fabs(strtod(pt, NULL) - p) < 1e-6, "score %s, the model says %.8f", pt, p);
    double w = json_number_value(json_object_get(r, "what_if"));
    cr_expect(fabs(w - want) < 6e-5, "what-if %.4f, the model says %.6f: %s", w, want, dump);
    cr_expect(fabs(json_number_value(json_object_get(r, "gain")) - (want - p)) < 1e-4, "%s", dump);
    free(pt);
    free(dump);
    json_decref(risks);
    ds_model_destroy(m);
    free(opp);
    PQfinish(db);
}

static ds_pg_t *connect_store(void) {
    ds_pg_t *pg = NULL;
    char err[512];
    cr_assert_eq(ds_pg_new(&pg, S.db.conninfo, "test", err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_pg_ensure(pg, 5000, NULL, err, sizeof err), 0, "%s", err);
    return pg;
}

/* The org's own stalled rule, with param (and the default's fallback). */
static void set_stalled_param(PGconn *db, double param) {
    pgt_execf(
        db,
        "insert into risk_rules (org_id, rule, param, fallback, action) values ('%s', 'stalled', %g, 30,"
        " 'Agree a next step') on conflict (org_id, rule) do update set param = excluded.param",
        S.org_id, param);
}

static double stalled_param(deal_risks_cache_t *cache, ds_pg_t *pg, const ds_risk_config_t **cfg) {
    char err[512];
    cr_assert_eq(deal_risks_config(cache, pg, S.org_id, cfg, err, sizeof err), 0, "%s", err);
    return (*cfg)->rules[DS_RISK_STALLED].param;
}

/* The worker's cache reloads a stale org's thresholds off the caller's
 * path: the score that finds them stale gets the ones it had at once, and
 * once the reload is done the next one gets the rule changed meanwhile. */
Test(risks, refreshing_thresholds_serve_the_stale_ones_until_reloaded) {
    PGconn *db = pgt_connect_db(&S.db);
    ds_pg_t *pg = connect_store();
    deal_risks_cache_t *cache = deal_risks_cache_new(0, S.db.conninfo); /* every get finds them stale */
    const ds_risk_config_t *first = NULL, *cfg = NULL;
    set_stalled_param(db, 1.25);
    cr_expect_eq(stalled_param(cache, pg, &first), 1.25, "a missing org loads at once");
    set_stalled_param(db, 1.5);
    cr_expect_eq(stalled_param(cache, pg, &cfg), 1.25);
    cr_expect_eq(cfg, first, "the stale thresholds, not ones loaded on the caller's connection");
    deal_risks_cache_await_refreshes(cache);
    cr_expect_eq(stalled_param(cache, pg, &cfg), 1.5, "the rule changed meanwhile reaches the thresholds");
    deal_risks_cache_destroy(cache);
    ds_pg_destroy(pg);
    PQfinish(db);
}

/* Waits until a backend of application_name waits for a lock. */
static void await_lock_wait(PGconn *db, const char *app) {
    long long deadline = proc_now_ms() + 10000;
    while (pgt_longf(db,
                     "select count(*) from pg_stat_activity where application_name = '%s'"
                     " and wait_event_type = 'Lock'",
                     app) == 0) {
        cr_assert_lt(proc_now_ms(), deadline, "%s never waited for the lock", app);
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
}

/* An org invalidated (its model changed) loads its thresholds again on the
 * caller's connection, with the rules of then: a reload under way, which
 * read the rules before they changed, is not kept. */
Test(risks, invalidated_thresholds_load_again_and_drop_a_reload_under_way) {
    PGconn *db = pgt_connect_db(&S.db), *locker = pgt_connect_db(&S.db);
    ds_pg_t *pg = connect_store();
    deal_risks_cache_t *cache = deal_risks_cache_new(0, S.db.conninfo);
    const ds_risk_config_t *cfg = NULL;
    set_stalled_param(db, 1.25);
    cr_expect_eq(stalled_param(cache, pg, &cfg), 1.25);
    /* The reload reads the rules, then waits for the won deals' history. */
    pgt_execf(locker, "begin");
    pgt_execf(locker, "lock table opportunity_history in access exclusive mode");
    cr_expect_eq(stalled_param(cache, pg, &cfg), 1.25);
    await_lock_wait(db, "dealscore-risk-thresholds");
    set_stalled_param(db, 1.5);
    deal_risks_cache_invalidate(cache, S.org_id);
    pgt_execf(locker, "commit");
    deal_risks_cache_await_refreshes(cache);
    cr_expect_eq(stalled_param(cache, pg, &cfg), 1.5, "the reload that read 1.25 was kept");
    deal_risks_cache_destroy(cache);
    ds_pg_destroy(pg);
    PQfinish(locker);
    PQfinish(db);
}
