/* The benchmark worker against the real Postgres and Kafka: fixture rows
 * inserted with SQL, OpportunityChanged events produced by the test, the
 * results read back from benchmarks_cached and opportunity_benchmarks.
 *
 * Expected aggregates are computed by hand in the comments. Percentiles are
 * Postgres percentile_cont (linear interpolation between closest ranks):
 * of n sorted values, the p-quantile sits at position p*(n-1).
 *
 * The amount band of 10000 (band 0.2, grid g = 1.05, cohort.h): cell
 * k = floor(ln 10000 / ln 1.05) = 188, range [0.8*1.05^188, 1.2*1.05^189)
 * = [7703.32, 12132.74) in cents (lo down, hi up).
 *
 * The topic has one partition here, so events are processed in the order
 * they are produced: waiting for the effect of the last one means every
 * earlier one is done. */
#include <criterion/criterion.h>

#include "dstest.h"
#include "benchmark/cohort.h"
#include "infra/pg.h"
#include "dealscore/v1/events.pb-c.h"

#define ORG_A "a0000000-0000-4000-8000-00000000000a"
#define ORG_B "b0000000-0000-4000-8000-00000000000b"
#define ACC1 "a0000000-0000-4000-8000-0000000000c1" /* software, emea */
#define ACC2 "a0000000-0000-4000-8000-0000000000c2" /* software, na */
#define ACC3 "a0000000-0000-4000-8000-0000000000c3" /* retail, emea */
#define ACC_B "b0000000-0000-4000-8000-0000000000c1"
#define OPP(n) "a0000000-0000-4000-8000-000000000" #n
#define T_ID OPP(100)   /* the open opportunity benchmarked */
#define T_NEAR OPP(101) /* open, 10050: same amount cell as T */
#define W1 OPP(201)
#define O1 OPP(301)     /* open, 11000, same attributes: closes won later */
#define Y_OPEN OPP(401) /* open, in ACC2 (for the account-scoped user) */
#define OPP_B "b0000000-0000-4000-8000-000000000100"
#define USER_U "c0000000-0000-4000-8000-000000000001" /* member of ACC1 */

#define KEY_T "v1|ind=software|prod=analytics|reg=emea|per=cfo|amt=[7703.32,12132.74)|m=12"

static dst_t T;
static ds_config_t pcfg;
static bool pcfg_loaded;
static ds_producer_t *prod;
static char *topic;
static PGconn *db;

static void setup(void) {
    dst_setup(&T);
    /* Later entries win over dst_setup's. */
    dst_env_add(&T, "DEALSCORE_TOPIC_PARTITIONS=1");
    dst_env_add(&T, "DEALSCORE_BATCH_WAIT_MS=20");
    char brokers[512], pfx[96], err[256];
    snprintf(brokers, sizeof brokers, "DEALSCORE_KAFKA_BROKERS=%s", getenv("DEALSCORE_KAFKA_BROKERS"));
    snprintf(pfx, sizeof pfx, "DEALSCORE_TOPIC_PREFIX=%s", T.prefix);
    char *envp[] = {brokers, pfx, NULL};
    if (ds_config_load(&pcfg, DS_SVC_FEATURE, envp, err, sizeof err) != 0) cr_fatal("%s", err);
    pcfg_loaded = true;
    if (ds_producer_new(&prod, &pcfg, err, sizeof err) != 0) cr_fatal("%s", err);
    topic = ds_config_topic(&pcfg, DS_TOPIC_OPPORTUNITY_CHANGED);
    db = pgt_connect_db(&T.db);
    pgt_exec(db, "set timezone to 'UTC'");
}

static void teardown(void) {
    if (db) PQfinish(db);
    db = NULL;
    if (prod) ds_producer_destroy(prod);
    prod = NULL;
    free(topic);
    topic = NULL;
    if (pcfg_loaded) ds_config_close(&pcfg);
    pcfg_loaded = false;
    dst_teardown(&T);
}

TestSuite(benchmark, .init = setup, .fini = teardown, .timeout = 180);

/* Starts the worker; refresh_s 0 turns the periodic refresh off. */
static void start(int refresh_s) {
    dst_env_add(&T, "DEALSCORE_BENCH_REFRESH_S=%d", refresh_s);
    dst_start(&T, "benchmark");
}

/* Produces an OpportunityChanged (event_id fixed so a replay is the same
 * message) and waits for the broker's acknowledgement. */
static void publish(const char *event_id, const char *org, const char *opp, Dealscore__V1__ChangeKind kind) {
    Dealscore__V1__OpportunityChanged ev = DEALSCORE__V1__OPPORTUNITY_CHANGED__INIT;
    ev.event_id = (char *)event_id;
    ev.org_id = (char *)org;
    ev.opportunity_id = (char *)opp;
    ev.account_id = "";
    ev.kind = kind;
    ev.occurred_at_us = ds_now_us();
    ev.source = "test";
    ev.source_hash = "";
    size_t len = dealscore__v1__opportunity_changed__get_packed_size(&ev);
    uint8_t *buf = malloc(len ? len : 1);
    dealscore__v1__opportunity_changed__pack(&ev, buf);
    ds_event_meta_t meta = {.id = event_id, .type = DS_CE_TYPE_OPPORTUNITY_CHANGED};
    cr_assert_eq(ds_producer_send(prod, topic, opp, strlen(opp), buf, len, &meta, NULL), 0);
    free(buf);
    cr_assert_eq(ds_producer_flush(prod, 10000), 0, "event not acknowledged");
}

#define UPSERTED DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_OPPORTUNITY_UPSERTED
#define OUTCOME_SET DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_OUTCOME_SET

/* Polls a one-value query until it returns want (as text) or 30 s pass. */
static void wait_value(const char *want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wait_value(const char *want, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *sql = pgt_vfmt(fmt, ap);
    va_end(ap);
    long long deadline = proc_now_ms() + 30000;
    char *got = NULL;
    for (;;) {
        free(got);
        got = pgt_valuef(db, "%s", sql);
        if (got && strcmp(got, want) == 0) break;
        if (proc_now_ms() > deadline) {
            char *log = proc_slurp(T.log);
            cr_fatal("waited 30 s for %s, last %s, from: %s\nservice log:\n%s", want, got ? got : "null", sql,
                     log);
        }
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    free(got);
    free(sql);
}

/* One value of the cached row for key, as text ("" for SQL NULL). */
static char *row_value(const char *key, const char *expr) {
    char *v = pgt_valuef(db, "select (%s)::text from benchmarks_cached where cohort_key = '%s'", expr, key);
    return v ? v : strdup("");
}

static void expect_row(const char *key, const char *expr, const char *want) {
    char *v = row_value(key, expr);
    cr_expect_str_eq(v, want, "%s of %s", expr, key);
    free(v);
}

static double metric(const char *name) { return dst_metric(&T, name); }

/* ---- fixtures ------------------------------------------------------------ */

/* Org A (window 12 months, min 3 won deals, band 0.2) with T and the deals
 * around it. Deals of T's full cohort (software/emea/analytics/cfo):
 *
 *   deal amount    outcome closed           cycle  in?
 *   W1   8000.00   won     now-5d           10d    yes (-20 % exactly)
 *   W2   12000.00  won     now-10d          20d    yes (+20 % exactly)
 *   W3   7703.32   won     now-15d          30d    yes (= lo)
 *   W4   12132.73  won     now-20d          40d    yes (hi - 0.01)
 *   W5   10000     won     since+1min       50d    yes (just inside the window)
 *   L1   9000      lost    now-15d          30d    yes
 *   X1   7703.31   won     now-5d           10d    no (lo - 0.01)
 *   X2   12132.74  won     now-5d           10d    no (= hi)
 *   X3   10000     won     since-1min       10d    no (just outside the window)
 *   X4   7500      won     now-5d           10d    no (-25 %)
 *   X5   12700     won     now-5d           10d    no (+27 %)
 *   L2   9000      lost    since-1d         10d    no (window)
 *   Y1..Y4 won 10000 with one attribute different: no
 *   O1   11000     open                             no (open)
 *
 * since = midnight UTC today minus 12 months. */
/* clang-format off */
static void fixture_org_a(void) {
    pgt_exec(db,
             "create temp table fx_t as select now() as now,"
             " (date_trunc('day', now() at time zone 'UTC') - interval '12 months') at time zone 'UTC' as since;"
             "insert into orgs (id, slug, name, settings) values ('" ORG_A "', 'org-a', 'Org A',"
             " jsonb_build_object('benchmark_months', 12, 'benchmark_min_cohort', 3, 'benchmark_amount_band', 0.2));"
             "insert into accounts (id, org_id, external_id, name, industry, region) values"
             " ('" ACC1 "', '" ORG_A "', 'acc-1', 'Acc 1', 'software', 'emea'),"
             " ('" ACC2 "', '" ORG_A "', 'acc-2', 'Acc 2', 'software', 'na'),"
             " ('" ACC3 "', '" ORG_A "', 'acc-3', 'Acc 3', 'retail', 'emea');"
             "insert into opportunities (id, org_id, external_id, account_id, product_category, persona,"
             " amount, stage, created_at, closed_at, outcome)"
             " select v.id::uuid, '" ORG_A "', v.ext, v.acc::uuid, v.prod, v.per, v.amount,"
             "  case v.outcome when 'won' then 'Closed Won' when 'lost' then 'Closed Lost' else 'Proposal' end,"
             "  coalesce(v.closed, f.now) - v.cycle, v.closed, v.outcome"
             " from fx_t f cross join (values"
             "  ('" T_ID "', 'T', '" ACC1 "', 'analytics', 'cfo', 10000.00, 'open', null::timestamptz, interval '30 days'),"
             "  ('" OPP(201) "', 'W1', '" ACC1 "', 'analytics', 'cfo', 8000.00, 'won', (select now from fx_t) - interval '5 days', interval '10 days'),"
             "  ('" OPP(202) "', 'W2', '" ACC1 "', 'analytics', 'cfo', 12000.00, 'won', (select now from fx_t) - interval '10 days', interval '20 days'),"
             "  ('" OPP(203) "', 'W3', '" ACC1 "', 'analytics', 'cfo', 7703.32, 'won', (select now from fx_t) - interval '15 days', interval '30 days'),"
             "  ('" OPP(204) "', 'W4', '" ACC1 "', 'analytics', 'cfo', 12132.73, 'won', (select now from fx_t) - interval '20 days', interval '40 days'),"
             "  ('" OPP(205) "', 'W5', '" ACC1 "', 'analytics', 'cfo', 10000.00, 'won', (select since from fx_t) + interval '1 minute', interval '50 days'),"
             "  ('" OPP(211) "', 'L1', '" ACC1 "', 'analytics', 'cfo', 9000.00, 'lost', (select now from fx_t) - interval '15 days', interval '30 days'),"
             "  ('" OPP(221) "', 'X1', '" ACC1 "', 'analytics', 'cfo', 7703.31, 'won', (select now from fx_t) - interval '5 days', interval '10 days'),"
             "  ('" OPP(222) "', 'X2', '" ACC1 "', 'analytics', 'cfo', 12132.74, 'won', (select now from fx_t) - interval '5 days', interval '10 days'),"
             "  ('" OPP(223) "', 'X3', '" ACC1 "', 'analytics', 'cfo', 10000.00, 'won', (select since from fx_t) - interval '1 minute', interval '10 days'),"
             "  ('" OPP(224) "', 'X4', '" ACC1 "', 'analytics', 'cfo', 7500.00, 'won', (select now from fx_t) - interval '5 days', interval '10 days'),"
             "  ('" OPP(225) "', 'X5', '" ACC1 "', 'analytics', 'cfo', 12700.00, 'won', (select now from fx_t) - interval '5 days', interval '10 days'),"
             "  ('" OPP(226) "', 'L2', '" ACC1 "', 'analytics', 'cfo', 9000.00, 'lost', (select since from fx_t) - interval '1 day', interval '10 days'),"
             "  ('" OPP(231) "', 'Y1', '" ACC2 "', 'analytics', 'cfo', 10000.00, 'won', (select now from fx_t) - interval '5 days', interval '10 days'),"
             "  ('" OPP(232) "', 'Y2', '" ACC1 "', 'analytics', 'cto', 10000.00, 'won', (select now from fx_t) - interval '5 days', interval '10 days'),"
             "  ('" OPP(233) "', 'Y3', '" ACC1 "', 'security', 'cfo', 10000.00, 'won', (select now from fx_t) - interval '5 days', interval '10 days'),"
             "  ('" OPP(234) "', 'Y4', '" ACC3 "', 'analytics', 'cfo', 10000.00, 'won', (select now from fx_t) - interval '5 days', interval '10 days'),"
             "  ('" T_NEAR "', 'T-near', '" ACC1 "', 'analytics', 'cfo', 10050.00, 'open', null, interval '20 days'),"
             "  ('" O1 "', 'O1', '" ACC1 "', 'analytics', 'cfo', 11000.00, 'open', null, interval '20 days'),"
             "  ('" Y_OPEN "', 'Y-open', '" ACC2 "', 'analytics', 'cfo', 10000.00, 'open', null, interval '20 days')"
             " ) as v(id, ext, acc, prod, per, amount, outcome, closed, cycle);"
             /* Interactions: per won deal before (or at) the close, by type:
              *   W1 email 2, meeting 1 (+1 email after the close, not counted)
              *   W2 email 4, phone 1, meeting 1
              *   W3 none
              *   W4 email 1, meeting 2, demo 1
              *   W5 email 3
              *   X1 email 10 (outside the cohort)
              * medians over W1..W5: email [0,1,2,3,4] -> 2, phone [0,0,0,0,1] -> 0,
              * meeting [0,0,1,1,2] -> 1, demo 0, support 0. */
             "insert into interactions (org_id, external_id, opportunity_id, opportunity_external_id, type, occurred_at)"
             " select o.org_id, o.external_id || '-' || v.type || '-' || g || v.tag, o.id, o.external_id, v.type,"
             "  o.closed_at + v.off"
             " from (values ('W1', 'email', 2, interval '-1 day', ''), ('W1', 'meeting', 1, interval '-1 day', ''),"
             "  ('W1', 'email', 1, interval '1 hour', 'late'), ('W2', 'email', 4, interval '-2 days', ''),"
             "  ('W2', 'phone', 1, interval '-2 days', ''), ('W2', 'meeting', 1, interval '0', ''),"
             "  ('W4', 'email', 1, interval '-1 day', ''), ('W4', 'meeting', 2, interval '-3 days', ''),"
             "  ('W4', 'demo', 1, interval '-3 days', ''), ('W5', 'email', 3, interval '-1 day', ''),"
             "  ('X1', 'email', 10, interval '-1 day', '')) as v(ext, type, n, off, tag)"
             " join opportunities o on o.org_id = '" ORG_A "' and o.external_id = v.ext"
             " cross join generate_series(1, v.n) as g;"
             /* Stage history (C = created_at):
              *   W1 (10 d): Prospecting C, Proposal C+4d, Closed Won at close
              *      -> Prospecting 4, Proposal 6
              *   W2 (20 d): Prospecting C, Proposal C+10d -> 10, 10
              *   W3 (30 d): Qualification -> Prospecting at C+2d, Proposal C+6d
              *      -> Qualification 2 (from creation), Prospecting 4, Proposal 24
              *   W4: no history
              *   W5 (50 d): Prospecting C, Proposal C+20d, Prospecting C+30d,
              *      Proposal C+35d -> Prospecting 20+5 = 25, Proposal 10+15 = 25
              * medians: Prospecting [4,4,10,25] -> 7 (4 deals),
              * Proposal [6,10,24,25] -> 17 (4 deals), Qualification [2] -> 2. */
             "insert into opportunity_history (org_id, opportunity_id, field, old_value, new_value, changed_at)"
             " select o.org_id, o.id, 'stage', v.old, v.new, coalesce(o.created_at + v.off, o.closed_at)"
             " from (values ('W1', null, 'Prospecting', interval '0', 1), ('W1', 'Prospecting', 'Proposal', interval '4 days', 2),"
             "  ('W1', 'Proposal', 'Closed Won', null, 3),"
             "  ('W2', null, 'Prospecting', interval '0', 1), ('W2', 'Prospecting', 'Proposal', interval '10 days', 2),"
             "  ('W2', 'Proposal', 'Closed Won', null, 3),"
             "  ('W3', 'Qualification', 'Prospecting', interval '2 days', 1), ('W3', 'Prospecting', 'Proposal', interval '6 days', 2),"
             "  ('W3', 'Proposal', 'Closed Won', null, 3),"
             "  ('W5', null, 'Prospecting', interval '0', 1), ('W5', 'Prospecting', 'Proposal', interval '20 days', 2),"
             "  ('W5', 'Proposal', 'Prospecting', interval '30 days', 3), ('W5', 'Prospecting', 'Proposal', interval '35 days', 4),"
             "  ('W5', 'Proposal', 'Closed Won', null, 5)) as v(ext, old, new, off, seq)"
             " join opportunities o on o.org_id = '" ORG_A "' and o.external_id = v.ext"
             " order by v.ext, v.seq;"
             /* MEDDICC: latest snapshot per won deal.
              *   W1 metrics, economic_buyer, champion (3)
              *   W2 champion (1)
              *   W3 all 8 in an older snapshot; latest: champion, metrics,
              *      economic_buyer, decision_criteria, decision_process (5)
              *   W4 latest snapshot without MEDDICC; W5 none
              * -> 3 deals with a snapshot, coverage [1,3,5] median 3,
              * share 9/24 = 0.375; champion 1, metrics 0.6667,
              * economic_buyer 0.6667, decision_criteria 0.3333,
              * decision_process 0.3333, the others 0. */
             "create temp table fx_el as select unnest(array['metrics', 'economic_buyer', 'decision_criteria',"
             " 'decision_process', 'paper_process', 'identify_pain', 'champion', 'competition']) as el;"
             "insert into features_snapshot (org_id, opportunity_id, as_of, feature_version, features, meddicc)"
             " select o.org_id, o.id, o.closed_at - v.age, 'v1', '{}'::jsonb,"
             "  case when v.present is null then null else"
             "  (select jsonb_object_agg(el, jsonb_build_object('present', el = any(v.present), 'matches', 0,"
             "   'evidence', '[]'::jsonb)) from fx_el) end"
             " from (values ('W1', array['metrics', 'economic_buyer', 'champion'], interval '1 day'),"
             "  ('W2', array['champion'], interval '1 day'),"
             "  ('W3', array['metrics', 'economic_buyer', 'decision_criteria', 'decision_process', 'paper_process',"
             "   'identify_pain', 'champion', 'competition'], interval '5 days'),"
             "  ('W3', array['champion', 'metrics', 'economic_buyer', 'decision_criteria', 'decision_process'], interval '1 day'),"
             "  ('W4', null, interval '1 day')) as v(ext, present, age)"
             " join opportunities o on o.org_id = '" ORG_A "' and o.external_id = v.ext;");
}

/* ---- tests --------------------------------------------------------------- */

Test(benchmark, aggregates_hand_computed) {
    fixture_org_a();
    start(0);
    publish("e0000000-0000-4000-8000-000000000001", ORG_A, T_ID, UPSERTED);
    publish("e0000000-0000-4000-8000-000000000002", ORG_A, T_NEAR, UPSERTED);
    wait_value("2", "select count(*) from opportunity_benchmarks");

    /* Both opportunities share one cached row: T-near (10050) is in T's cell. */
    cr_assert_eq(pgt_longf(db, "select count(*) from opportunity_benchmarks where cohort_key = '" KEY_T "'"
                               " and match_level = 'full' and account_id = '" ACC1 "'"),
                 2, "both opportunities map to %s", KEY_T);
    cr_assert_eq(pgt_longf(db, "select count(*) from benchmarks_cached"), 1, "one cached cohort");
    cr_expect_eq(metric("dealscore_benchmark_cohorts_computed_total"), 1);
    cr_expect_eq(metric("dealscore_benchmark_cache_hits_total"), 1);

    expect_row(KEY_T, "match_level", "full");
    expect_row(KEY_T, "cohort_size", "6");
    expect_row(KEY_T, "won_count", "5");
    expect_row(KEY_T, "metrics->>'won'", "5");
    expect_row(KEY_T, "metrics->>'lost'", "1");
    expect_row(KEY_T, "metrics->>'closed'", "6");
    expect_row(KEY_T, "metrics->>'win_rate'", "0.8333");
    /* Won amounts [7703.32, 8000, 10000, 12000, 12132.73]: quartiles at
     * positions 1, 2, 3. */
    expect_row(KEY_T, "(metrics->'amount'->>'p25')::numeric", "8000.00");
    expect_row(KEY_T, "(metrics->'amount'->>'median')::numeric", "10000.00");
    expect_row(KEY_T, "(metrics->'amount'->>'p75')::numeric", "12000.00");
    /* Cycle days [10, 20, 30, 40, 50]. */
    expect_row(KEY_T, "(metrics->'cycle_days'->>'p25')::numeric", "20.000");
    expect_row(KEY_T, "(metrics->'cycle_days'->>'median')::numeric", "30.000");
    expect_row(KEY_T, "(metrics->'cycle_days'->>'p75')::numeric", "40.000");
    expect_row(KEY_T, "metrics->'interactions_before_close'",
               "{\"demo\": 0, \"email\": 2, \"phone\": 0, \"meeting\": 1, \"support\": 0}");
    expect_row(KEY_T, "(metrics->'stage_days'->'Prospecting'->>'median_days')::numeric", "7.000");
    expect_row(KEY_T, "metrics->'stage_days'->'Prospecting'->>'deals'", "4");
    expect_row(KEY_T, "(metrics->'stage_days'->'Proposal'->>'median_days')::numeric", "17.000");
    expect_row(KEY_T, "metrics->'stage_days'->'Proposal'->>'deals'", "4");
    expect_row(KEY_T, "(metrics->'stage_days'->'Qualification'->>'median_days')::numeric", "2.000");
    expect_row(KEY_T, "metrics->'stage_days' ? 'Closed Won'", "false");
    expect_row(KEY_T, "metrics->'meddicc'->>'deals_with_snapshot'", "3");
    expect_row(KEY_T, "metrics->'meddicc'->>'coverage_median'", "3");
    expect_row(KEY_T, "metrics->'meddicc'->>'coverage_share'", "0.3750");
    expect_row(KEY_T, "metrics->'meddicc'->'elements'",
               "{\"metrics\": 0.6667, \"champion\": 1.0000, \"competition\": 0.0000, "
               "\"identify_pain\": 0.0000, \"paper_process\": 0.0000, \"economic_buyer\": 0.6667, "
               "\"decision_process\": 0.3333, \"decision_criteria\": 0.3333}");
    expect_row(KEY_T, "metrics->'matched'", "[\"industry\", \"product_category\", \"region\", \"persona\"]");
    expect_row(KEY_T, "metrics->>'sufficient'", "true");
    expect_row(KEY_T, "metrics->'amount_band'", "{\"hi\": 12132.74, \"lo\": 7703.32}");
    expect_row(KEY_T, "metrics->'window'->>'months'", "12");
    char *since = pgt_valuef(db, "select to_char(since at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') from fx_t");
    expect_row(KEY_T, "metrics->'window'->>'from'", since);
    expect_row(KEY_T, "window_start = (select since from fx_t)", "true");
    free(since);
    /* The definition the row is recomputed from. */
    expect_row(KEY_T, "array[level::text, industry, product_category, region, persona, amount_lo::text,"
                      " amount_hi::text, window_months::text]",
               "{0,software,analytics,emea,cfo,7703.32,12132.74,12}");
    /* The frontend's view joins both. */
    cr_expect_eq(pgt_longf(db, "select count(*) from opportunity_benchmark_summaries where opportunity_id = '" T_ID "'"
                               " and summary->>'won' = '5' and summary->>'match_level' = 'full'"
                               " and (summary->>'win_rate')::numeric = 0.8333"),
                 1);
}

/* Relaxation: persona, then region, then product; min 2 won deals. All
 * deals are won, 10000, closed 5 days ago.
 *   D1 software/emea analytics cto     D2 software/emea analytics cfo
 *   D3 software/na   security  cfo     D4 software/na   security  vp_sales
 *   D5 software/na   analytics cfo
 * and two open deals R1, R2 retail/emea services cfo (they close won in
 * another test). Targets (open, 10000):
 *   T1 software/emea analytics cfo: full {D2} 1 -> no persona {D1, D2} 2
 *      (D5 differs in region: relaxing region first would give {D2, D5})
 *   T2 software/emea security cfo: full 0, no persona 0 -> industry and
 *      product {D3, D4} 2
 *   T3 software/emea integrations cfo: 0, 0, 0 -> industry {D1..D5} 5
 *   T4 retail/emea services cfo: nothing anywhere -> industry, insufficient */
static void fixture_relax(void) {
    pgt_exec(db,
             "insert into orgs (id, slug, name, settings) values ('" ORG_A "', 'org-a', 'Org A',"
             " jsonb_build_object('benchmark_months', 12, 'benchmark_min_cohort', 2, 'benchmark_amount_band', 0.2));"
             "insert into accounts (id, org_id, external_id, name, industry, region) values"
             " ('" ACC1 "', '" ORG_A "', 'acc-1', 'Acc 1', 'software', 'emea'),"
             " ('" ACC2 "', '" ORG_A "', 'acc-2', 'Acc 2', 'software', 'na'),"
             " ('" ACC3 "', '" ORG_A "', 'acc-3', 'Acc 3', 'retail', 'emea');"
             "insert into opportunities (id, org_id, external_id, account_id, product_category, persona,"
             " amount, stage, created_at, closed_at, outcome)"
             " select v.id::uuid, '" ORG_A "', v.ext, v.acc::uuid, v.prod, v.per, 10000,"
             "  case when v.won then 'Closed Won' else 'Proposal' end, now() - interval '40 days',"
             "  case when v.won then now() - interval '5 days' end, case when v.won then 'won' else 'open' end"
             " from (values"
             "  ('" OPP(501) "', 'D1', '" ACC1 "', 'analytics', 'cto', true),"
             "  ('" OPP(502) "', 'D2', '" ACC1 "', 'analytics', 'cfo', true),"
             "  ('" OPP(503) "', 'D3', '" ACC2 "', 'security', 'cfo', true),"
             "  ('" OPP(504) "', 'D4', '" ACC2 "', 'security', 'vp_sales', true),"
             "  ('" OPP(505) "', 'D5', '" ACC2 "', 'analytics', 'cfo', true),"
             "  ('" OPP(511) "', 'R1', '" ACC3 "', 'services', 'cfo', false),"
             "  ('" OPP(512) "', 'R2', '" ACC3 "', 'services', 'cfo', false),"
             "  ('" OPP(601) "', 'T1', '" ACC1 "', 'analytics', 'cfo', false),"
             "  ('" OPP(602) "', 'T2', '" ACC1 "', 'security', 'cfo', false),"
             "  ('" OPP(603) "', 'T3', '" ACC1 "', 'integrations', 'cfo', false),"
             "  ('" OPP(604) "', 'T4', '" ACC3 "', 'services', 'cfo', false)"
             " ) as v(id, ext, acc, prod, per, won);");
}

#define AMT "amt=[7703.32,12132.74)|m=12"
/* clang-format on */

static void publish_targets(void) {
    publish("e0000000-0000-4000-8000-000000000601", ORG_A, OPP(601), UPSERTED);
    publish("e0000000-0000-4000-8000-000000000602", ORG_A, OPP(602), UPSERTED);
    publish("e0000000-0000-4000-8000-000000000603", ORG_A, OPP(603), UPSERTED);
    publish("e0000000-0000-4000-8000-000000000604", ORG_A, OPP(604), UPSERTED);
    wait_value("4", "select count(*) from opportunity_benchmarks");
}

static void expect_mapping(const char *opp, const char *key, const char *level) {
    char *got = pgt_valuef(db,
                           "select cohort_key || ' ' || match_level from opportunity_benchmarks"
                           " where opportunity_id = '%s'",
                           opp);
    char *want = pgt_fmt("%s %s", key, level);
    cr_expect_str_eq(got ? got : "(none)", want, "mapping of %s", opp);
    free(got);
    free(want);
}

Test(benchmark, relaxation_order_and_match_level) {
    fixture_relax();
    start(0);
    publish_targets();

    expect_mapping(OPP(601), "v1|ind=software|prod=analytics|reg=emea|" AMT, "industry_product_region");
    expect_row("v1|ind=software|prod=analytics|reg=emea|" AMT, "won_count", "2");
    expect_row("v1|ind=software|prod=analytics|reg=emea|" AMT, "metrics->'matched'",
               "[\"industry\", \"product_category\", \"region\"]");
    /* The insufficient full level T1 walked through is cached too. */
    expect_row("v1|ind=software|prod=analytics|reg=emea|per=cfo|" AMT, "won_count", "1");
    expect_row("v1|ind=software|prod=analytics|reg=emea|per=cfo|" AMT, "metrics->>'sufficient'", "false");

    expect_mapping(OPP(602), "v1|ind=software|prod=security|" AMT, "industry_product");
    expect_row("v1|ind=software|prod=security|" AMT, "won_count", "2");
    expect_row("v1|ind=software|prod=security|" AMT, "metrics->'matched'",
               "[\"industry\", \"product_category\"]");

    expect_mapping(OPP(603), "v1|ind=software|" AMT, "industry");
    expect_row("v1|ind=software|" AMT, "won_count", "5");
    expect_row("v1|ind=software|" AMT, "cohort_size", "5");
    expect_row("v1|ind=software|" AMT, "metrics->>'sufficient'", "true");

    expect_mapping(OPP(604), "v1|ind=retail|" AMT, "industry");
    expect_row("v1|ind=retail|" AMT, "won_count", "0");
    expect_row("v1|ind=retail|" AMT, "metrics->>'sufficient'", "false");
    expect_row("v1|ind=retail|" AMT, "metrics->'amount'", "null");
    /* Walked: T1 2 levels, T2 3, T3 4, T4 4; shared rows counted once. */
    cr_expect_eq(pgt_longf(db, "select count(*) from benchmarks_cached"), 13);

    /* Another retail deal in the same band, with another product and
     * persona: the widest retail cohort is cached and not sufficient, so no
     * narrower one can be (they are subsets): mapped there, no cohort query. */
    double computed = metric("dealscore_benchmark_cohorts_computed_total");
    pgt_exec(db, "insert into opportunities (id, org_id, external_id, account_id, product_category, persona,"
                 " amount, stage, created_at, outcome) values ('" OPP(
                     606) "', '" ORG_A "', 'T6', '" ACC3 "',"
                          " 'analytics', 'cto', 10000, 'Proposal', now() - interval '40 days', 'open')");
    publish("e0000000-0000-4000-8000-000000000606", ORG_A, OPP(606), UPSERTED);
    wait_value("1", "select count(*) from opportunity_benchmarks where opportunity_id = '" OPP(606) "'");
    expect_mapping(OPP(606), "v1|ind=retail|" AMT, "industry");
    cr_expect_eq(metric("dealscore_benchmark_cohorts_computed_total"), computed);
    cr_expect_eq(pgt_longf(db, "select count(*) from benchmarks_cached"), 13);
}

#define INTERACTION DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_INTERACTION_ADDED

/* Interactions of an open deal that is mapped leave its mapping alone (its
 * attributes did not change), a change of the deal itself remaps it, and an
 * open deal without a mapping is mapped whatever the change. A deal the
 * worker itself mapped is "settled": its interactions cost no transaction,
 * until a restart or a rebalance makes the worker forget. */
Test(benchmark, activity_of_a_mapped_open_deal_keeps_its_mapping) {
    fixture_relax();
    start(0);
    publish_targets();
    expect_mapping(OPP(601), "v1|ind=software|prod=analytics|reg=emea|" AMT, "industry_product_region");
    cr_expect_eq(metric("dealscore_benchmark_settled_deals"), 4);

    /* T1 moves to another product behind the worker's back: an interaction
     * event does not walk it again (the worker mapped it: settled). */
    pgt_exec(db, "update opportunities set product_category = 'security' where id = '" OPP(601) "'");
    publish("e0000000-0000-4000-8000-000000000701", ORG_A, OPP(601), INTERACTION);
    dst_wait_metric(&T, "dealscore_benchmark_activity_only_total", 1);
    cr_expect_eq(metric("dealscore_benchmark_activity_only_total"), 1);
    cr_expect_eq(metric("dealscore_benchmark_settled_total"), 1);
    expect_mapping(OPP(601), "v1|ind=software|prod=analytics|reg=emea|" AMT, "industry_product_region");

    /* The deal's own change remaps it. */
    publish("e0000000-0000-4000-8000-000000000702", ORG_A, OPP(601), UPSERTED);
    wait_value("v1|ind=software|prod=security|" AMT,
               "select cohort_key from opportunity_benchmarks where opportunity_id = '" OPP(601) "'");
    expect_mapping(OPP(601), "v1|ind=software|prod=security|" AMT, "industry_product");

    /* An open deal the worker never saw, without a mapping, is mapped on an
     * interaction too. */
    pgt_exec(db, "insert into opportunities (id, org_id, external_id, account_id, product_category, persona,"
                 " amount, stage, created_at, outcome) values ('" OPP(
                     605) "', '" ORG_A "', 'T5', '" ACC3 "',"
                          " 'services', 'cfo', 10000, 'Proposal', now() - interval '40 days', 'open')");
    publish("e0000000-0000-4000-8000-000000000703", ORG_A, OPP(605), INTERACTION);
    wait_value("1", "select count(*) from opportunity_benchmarks where opportunity_id = '" OPP(605) "'");
    expect_mapping(OPP(605), "v1|ind=retail|" AMT, "industry");
    cr_expect_eq(metric("dealscore_benchmark_activity_only_total"), 1);

    /* A mapping deleted behind the worker's back: the settled deal's
     * interaction does not look (the sweep would restore it); after a
     * restart the worker looks again and maps it. */
    pgt_exec(db, "delete from opportunity_benchmarks where opportunity_id = '" OPP(604) "'");
    publish("e0000000-0000-4000-8000-000000000704", ORG_A, OPP(604), INTERACTION);
    dst_wait_metric(&T, "dealscore_benchmark_settled_total", 2);
    cr_expect_eq(
        dst_count(&T, "select count(*) from opportunity_benchmarks where opportunity_id = '" OPP(604) "'"),
        0);
    dst_stop(&T);
    start(0);
    publish("e0000000-0000-4000-8000-000000000705", ORG_A, OPP(604), INTERACTION);
    wait_value("1", "select count(*) from opportunity_benchmarks where opportunity_id = '" OPP(604) "'");
    expect_mapping(OPP(604), "v1|ind=retail|" AMT, "industry");
    cr_expect_eq(metric("dealscore_benchmark_settled_total"), 0);
}

/* A change that leaves a deal in its cohort writes nothing: its mapping
 * row is neither updated nor locked (a lock is a WAL record too). */
Test(benchmark, a_change_that_keeps_the_cohort_leaves_the_mapping_untouched) {
    fixture_relax();
    start(0);
    publish_targets();
    const char *batches = "dealscore_worker_batch_seconds_count{worker=\"benchmark\"}";
    double before = metric(batches), written = metric("dealscore_benchmark_mappings_written_total");
    pgt_exec(db, "update opportunities set stage = 'Negotiation' where id = '" OPP(601) "'");
    publish("e0000000-0000-4000-8000-000000000711", ORG_A, OPP(601), UPSERTED);
    dst_wait_metric(&T, batches, before + 1);
    expect_mapping(OPP(601), "v1|ind=software|prod=analytics|reg=emea|" AMT, "industry_product_region");
    cr_expect_eq(metric("dealscore_benchmark_mappings_written_total"), written);
    char *xmax =
        pgt_valuef(db, "select xmax::text from opportunity_benchmarks where opportunity_id = '%s'", OPP(601));
    cr_expect_str_eq(xmax ? xmax : "(none)", "0", "the mapping row was locked or updated");
    free(xmax);
}

/* A transaction that runs no cohort query keeps the generic plans Postgres
 * caches for its statements: only a cohort query (or the org count) turns
 * the transaction to custom plans, which cost more to plan than the other
 * statements cost to run. */
Test(benchmark, a_transaction_without_cohort_queries_keeps_generic_plans) {
    fixture_relax();
    char err[256];
    ds_pg_t *pg = NULL;
    cr_assert_eq(ds_pg_new(&pg, T.db.conninfo, "test-benchmark", err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_pg_ensure(pg, 5000, NULL, err, sizeof err), 0, "%s", err);
    cohort_engine_t *eng =
        cohort_engine_new(pg, &(cohort_settings_t){.months = 12, .min_won = 2, .band = 0.2}, NULL);
    const char *ids[] = {OPP(601)};
    /* The first computes the cohorts, the others find them cached. */
    for (int i = 0; i < 8; i++) {
        cohort_stats_t st = {0};
        cr_assert_eq(cohort_apply(eng, ORG_A, ids, 1, &st, err, sizeof err), 0, "%s", err);
        if (i > 0) cr_assert_eq(st.computed, 0);
    }
    expect_mapping(OPP(601), "v1|ind=software|prod=analytics|reg=emea|" AMT, "industry_product_region");
    PGresult *res = NULL;
    cr_assert_eq(ds_pg_exec(pg, "select generic_plans from pg_prepared_statements where name = 'bench_load'",
                            &res, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(PQntuples(res), 1);
    cr_expect_gt(atoi(PQgetvalue(res, 0, 0)), 0, "bench_load was planned anew for every transaction");
    PQclear(res);
    cohort_engine_destroy(eng);
    ds_pg_destroy(pg);
}

/* An org without enough won deals in the window (none here): no cohort can
 * be sufficient, so each deal maps to its widest cohort, computed once per
 * band, and the narrower ones are not computed at all. */
Test(benchmark, young_org_maps_to_the_widest_cohort_with_one_query_per_band) {
    pgt_exec(db,
             "insert into orgs (id, slug, name) values ('" ORG_B "', 'org-b', 'Org B');"
             "insert into accounts (id, org_id, external_id, name, industry, region) values"
             " ('" ACC_B "', '" ORG_B "', 'acc-1', 'B 1', 'software', 'emea');"
             "insert into opportunities (id, org_id, external_id, account_id, product_category, persona,"
             " amount, stage, created_at, outcome) values"
             " ('b0000000-0000-4000-8000-000000000101', '" ORG_B "', 'Y1', '" ACC_B "', 'analytics', 'cfo',"
             "  10000, 'Proposal', now() - interval '10 days', 'open'),"
             " ('b0000000-0000-4000-8000-000000000102', '" ORG_B "', 'Y2', '" ACC_B "', 'security', 'cto',"
             "  10050, 'Proposal', now() - interval '10 days', 'open'),"
             " ('b0000000-0000-4000-8000-000000000103', '" ORG_B "', 'Y3', '" ACC_B "', 'analytics', 'cfo',"
             "  500000, 'Proposal', now() - interval '10 days', 'open'),"
             /* lost deals count toward the cohort's size, not its won deals */
             " (gen_random_uuid(), '" ORG_B "', 'L1', '" ACC_B "', 'analytics', 'cfo', 10000, 'Closed Lost',"
             "  now() - interval '10 days', 'lost');"
             "update opportunities set closed_at = now() - interval '1 day' where external_id = 'L1'");
    start(0);
    publish("e0000000-0000-4000-8000-000000000801", ORG_B, "b0000000-0000-4000-8000-000000000101", UPSERTED);
    publish("e0000000-0000-4000-8000-000000000802", ORG_B, "b0000000-0000-4000-8000-000000000102", UPSERTED);
    publish("e0000000-0000-4000-8000-000000000803", ORG_B, "b0000000-0000-4000-8000-000000000103", UPSERTED);
    wait_value("3", "select count(*) from opportunity_benchmarks");
    expect_mapping("b0000000-0000-4000-8000-000000000101", "v1|ind=software|" AMT, "industry");
    expect_mapping("b0000000-0000-4000-8000-000000000102", "v1|ind=software|" AMT, "industry");
    cr_expect_eq(pgt_longf(db, "select count(*) from opportunity_benchmarks where match_level = 'industry'"),
                 3);
    cr_expect_eq(pgt_longf(db, "select count(*) from benchmarks_cached"), 2, "one widest cohort per band");
    cr_expect_eq(pgt_longf(db, "select count(*) from benchmarks_cached where level = 3"), 2);
    expect_row("v1|ind=software|" AMT, "won_count", "0");
    expect_row("v1|ind=software|" AMT, "cohort_size", "1");
    expect_row("v1|ind=software|" AMT, "metrics->>'sufficient'", "false");
    cr_expect_eq(metric("dealscore_benchmark_cohorts_computed_total"), 2);
}

/* A deal of T's cohort closes won: the cached cohort counts it, T's mapping
 * stays, the closed deal loses its own mapping. */
Test(benchmark, won_deal_updates_cached_cohort) {
    fixture_org_a();
    start(0);
    publish("e0000000-0000-4000-8000-000000000001", ORG_A, T_ID, UPSERTED);
    publish("e0000000-0000-4000-8000-000000000003", ORG_A, O1, UPSERTED);
    wait_value("2", "select count(*) from opportunity_benchmarks");
    expect_row(KEY_T, "won_count", "5");
    char *as_of = row_value(KEY_T, "as_of");
    char *ob = pgt_valuef(
        db, "select updated_at::text from opportunity_benchmarks where opportunity_id = '" T_ID "'");

    pgt_exec(
        db,
        "update opportunities set outcome = 'won', stage = 'Closed Won', closed_at = now() - interval '1 "
        "hour'"
        " where id = '" O1 "';"
        "insert into opportunity_history (org_id, opportunity_id, field, old_value, new_value, changed_at)"
        " values ('" ORG_A "', '" O1 "', 'outcome', 'open', 'won', now() - interval '1 hour');");
    publish("e0000000-0000-4000-8000-000000000004", ORG_A, O1, OUTCOME_SET);
    wait_value("6", "select won_count::text from benchmarks_cached where cohort_key = '" KEY_T "'");
    expect_row(KEY_T, "cohort_size", "7");
    expect_row(KEY_T, "metrics->>'win_rate'", "0.8571"); /* 6 / 7 */
    /* Won amounts now [7703.32, 8000, 10000, 11000, 12000, 12132.73]:
     * median at position 2.5 = 10500. */
    expect_row(KEY_T, "(metrics->'amount'->>'median')::numeric", "10500.00");
    char *as_of2 = row_value(KEY_T, "as_of");
    cr_expect_eq(pgt_longf(db,
                           "select count(*) from benchmarks_cached where cohort_key = '" KEY_T "'"
                           " and as_of > '%s'",
                           as_of),
                 1, "as_of did not move: %s -> %s", as_of, as_of2);
    cr_expect_eq(pgt_longf(db, "select count(*) from opportunity_benchmarks where opportunity_id = '" O1 "'"),
                 0, "the closed deal keeps its mapping");
    char *ob2 = pgt_valuef(
        db, "select updated_at::text from opportunity_benchmarks where opportunity_id = '" T_ID "'");
    cr_expect_str_eq(ob2, ob, "T's mapping was rewritten although its cohort key did not change");
    free(as_of);
    free(as_of2);
    free(ob);
    free(ob2);
}

/* Deals closing make a cohort sufficient: the opportunities whose walk ended
 * at a wider level move to it. */
Test(benchmark, closing_deals_remaps_when_cohort_becomes_sufficient) {
    fixture_relax();
    start(0);
    publish_targets();
    expect_mapping(OPP(604), "v1|ind=retail|" AMT, "industry");
    pgt_exec(db, "update opportunities set outcome = 'won', stage = 'Closed Won', closed_at = now() - "
                 "interval '1 hour'"
                 " where external_id in ('R1', 'R2');");
    publish("e0000000-0000-4000-8000-000000000511", ORG_A, OPP(511), OUTCOME_SET);
    publish("e0000000-0000-4000-8000-000000000512", ORG_A, OPP(512), OUTCOME_SET);
    wait_value("full",
               "select match_level from opportunity_benchmarks where opportunity_id = '" OPP(604) "'");
    expect_mapping(OPP(604), "v1|ind=retail|prod=services|reg=emea|per=cfo|" AMT, "full");
    expect_row("v1|ind=retail|prod=services|reg=emea|per=cfo|" AMT, "won_count", "2");
    expect_row("v1|ind=retail|" AMT, "won_count", "2");
    /* Nobody else moved. */
    expect_mapping(OPP(601), "v1|ind=software|prod=analytics|reg=emea|" AMT, "industry_product_region");
    expect_mapping(OPP(603), "v1|ind=software|" AMT, "industry");
    cr_expect_geq(metric("dealscore_benchmark_sufficiency_changes_total"), 1);
}

static char *snapshot(void) {
    return pgt_valuef(
        db,
        "select coalesce(string_agg(x, E'\\n' order by x), '') from ("
        " select concat_ws(' ', cohort_key, as_of, match_level, cohort_size, won_count, metrics::text) x"
        "  from benchmarks_cached"
        " union all select concat_ws(' ', opportunity_id, account_id, cohort_key, match_level, updated_at)"
        "  from opportunity_benchmarks) s");
}

/* Reprocessing the same events leaves every row as it was (only
 * refreshed_at, the bookkeeping of the last recomputation, moves). */
Test(benchmark, replay_is_idempotent) {
    fixture_org_a();
    start(0);
    static const char *const ev[][2] = {{"e0000000-0000-4000-8000-000000000001", T_ID},
                                        {"e0000000-0000-4000-8000-000000000003", O1},
                                        {"e0000000-0000-4000-8000-000000000005", W1}};
    publish(ev[0][0], ORG_A, ev[0][1], UPSERTED);
    publish(ev[1][0], ORG_A, ev[1][1], UPSERTED);
    wait_value("2", "select count(*) from opportunity_benchmarks");
    /* W1's event recomputes the cohorts it is in (T's among them). */
    char *r0 = row_value(KEY_T, "refreshed_at");
    publish(ev[2][0], ORG_A, ev[2][1], OUTCOME_SET);
    wait_value("t", "select refreshed_at > '%s' from benchmarks_cached where cohort_key = '" KEY_T "'", r0);
    char *before = snapshot();
    char *r1 = row_value(KEY_T, "refreshed_at");
    double computed = metric("dealscore_benchmark_cohorts_computed_total");

    publish(ev[0][0], ORG_A, ev[0][1], UPSERTED);
    publish(ev[1][0], ORG_A, ev[1][1], UPSERTED);
    publish(ev[2][0], ORG_A, ev[2][1], OUTCOME_SET);
    wait_value("t", "select refreshed_at > '%s' from benchmarks_cached where cohort_key = '" KEY_T "'", r1);
    char *after = snapshot();
    cr_expect_str_eq(after, before, "rows changed on replay");
    /* The replayed upserts were answered from the cache; only W1's cohorts
     * were recomputed. */
    cr_expect_eq(metric("dealscore_benchmark_cohorts_computed_total"), computed + 1);
    cr_expect_eq(pgt_longf(db, "select count(*) from opportunity_benchmarks"), 2);
    free(r0);
    free(r1);
    free(before);
    free(after);
}

static long long as_user(const char *claims, const char *sql) {
    pgt_exec(db, "begin");
    pgt_exec(db, "set local role authenticated");
    const char *params[1] = {claims};
    PGresult *r =
        PQexecParams(db, "select set_config('request.jwt.claims', $1, true)", 1, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    long long n = pgt_longf(db, "%s", sql);
    pgt_exec(db, "rollback");
    return n;
}

static char *claims_for(const char *user, const char *org, bool scoped) {
    return pgt_fmt("{\"sub\": \"%s\", \"role\": \"authenticated\", \"app_metadata\": {\"org_id\": \"%s\"%s}}",
                   user, org, scoped ? ", \"account_scoped\": true" : "");
}

Test(benchmark, rls_hides_other_orgs_benchmarks) {
    fixture_org_a();
    /* Org B's one won deal is enough for its cohorts (min 1), so its walk
     * computes T's key too. */
    pgt_exec(db,
             "insert into orgs (id, slug, name, settings) values ('" ORG_B "', 'org-b', 'Org B',"
             " '{\"benchmark_min_cohort\": 1}');"
             "insert into accounts (id, org_id, external_id, name, industry, region) values"
             " ('" ACC_B "', '" ORG_B "', 'acc-1', 'B 1', 'software', 'emea');"
             "insert into opportunities (id, org_id, external_id, account_id, product_category, persona,"
             " amount, stage, created_at, closed_at, outcome) values"
             " ('" OPP_B "', '" ORG_B "', 'T', '" ACC_B "', 'analytics', 'cfo', 10000, 'Proposal',"
             "  now() - interval '10 days', null, 'open'),"
             " (gen_random_uuid(), '" ORG_B "', 'W', '" ACC_B "', 'analytics', 'cfo', 10000, 'Closed Won',"
             "  now() - interval '10 days', now() - interval '1 day', 'won');"
             "insert into account_members (org_id, account_id, user_id) values"
             " ('" ORG_A "', '" ACC1 "', '" USER_U "');");
    start(0);
    publish("e0000000-0000-4000-8000-000000000001", ORG_A, T_ID, UPSERTED);
    publish("e0000000-0000-4000-8000-000000000006", ORG_A, Y_OPEN, UPSERTED);
    publish("e0000000-0000-4000-8000-000000000007", ORG_B, OPP_B, UPSERTED);
    wait_value("3", "select count(*) from opportunity_benchmarks");
    /* Both orgs have a row under the same key: the key is per org. */
    cr_assert_eq(
        pgt_longf(db, "select count(distinct org_id) from benchmarks_cached where cohort_key = '" KEY_T "'"),
        2);

    char *a = claims_for(USER_U, ORG_A, false);
    cr_expect_eq(as_user(a, "select count(*) from opportunity_benchmark_summaries"), 2);
    cr_expect_eq(
        as_user(a, "select count(*) from opportunity_benchmark_summaries where org_id = '" ORG_B "'"), 0);
    cr_expect_eq(as_user(a, "select count(*) from opportunity_benchmarks where org_id = '" ORG_B "'"), 0);
    cr_expect_eq(as_user(a, "select count(*) from benchmarks_cached where org_id = '" ORG_B "'"), 0);
    cr_expect_eq(as_user(a, "select count(*) from benchmarks_cached"),
                 pgt_longf(db, "select count(*) from benchmarks_cached where org_id = '" ORG_A "'"));
    /* T (full level, 5 won) and Y-open (software/na: industry and product,
     * W1..W5 + Y1 + Y2 = 7 won). */
    cr_expect_eq(as_user(a, "select count(*) from opportunity_benchmark_summaries where summary->>'won' = '5'"
                            " and opportunity_id = '" T_ID "'"),
                 1);
    cr_expect_eq(as_user(a, "select count(*) from opportunity_benchmark_summaries where summary->>'won' = '7'"
                            " and summary->>'match_level' = 'industry_product'"),
                 1);
    free(a);

    /* An account-scoped user sees the benchmark of their account's
     * opportunity only, and the org-wide cohort rows. */
    char *u = claims_for(USER_U, ORG_A, true);
    cr_expect_eq(as_user(u, "select count(*) from opportunity_benchmark_summaries"), 1);
    cr_expect_eq(
        as_user(u, "select count(*) from opportunity_benchmark_summaries where opportunity_id = '" T_ID "'"),
        1);
    cr_expect_eq(as_user(u, "select count(*) from benchmarks_cached where org_id = '" ORG_B "'"), 0);
    free(u);

    char *b = claims_for(USER_U, ORG_B, false);
    cr_expect_eq(as_user(b, "select count(*) from opportunity_benchmark_summaries"), 1);
    cr_expect_eq(
        as_user(b, "select count(*) from opportunity_benchmark_summaries where org_id = '" ORG_A "'"), 0);
    cr_expect_eq(as_user(b, "select count(*) from benchmarks_cached where org_id = '" ORG_A "'"), 0);
    free(b);

    /* anon sees nothing at all. */
    pgt_exec(db, "begin; set local role anon");
    char *st = pgt_try(db, "select count(*) from opportunity_benchmark_summaries");
    cr_expect_not_null(st, "anon can read the benchmark view");
    free(st);
    pgt_exec(db, "rollback");
}

/* The periodic refresh ages windows without any event, and its sweep maps
 * open opportunities that never had one. */
Test(benchmark, periodic_refresh_ages_window_and_maps_unmapped) {
    fixture_org_a();
    start(1);
    publish("e0000000-0000-4000-8000-000000000001", ORG_A, T_ID, UPSERTED);
    wait_value("5", "select won_count::text from benchmarks_cached where cohort_key = '" KEY_T "'");
    /* W1 now closed before the window, as if time had passed. */
    pgt_exec(db, "update opportunities set closed_at = (select since from fx_t) - interval '1 day'"
                 " where id = '" W1 "'");
    wait_value("4", "select won_count::text from benchmarks_cached where cohort_key = '" KEY_T "'");
    /* T-near, O1 and Y-open had no event: the sweep maps them. */
    wait_value("4", "select count(*) from opportunity_benchmarks");
    expect_mapping(T_NEAR, KEY_T, "full");
    cr_expect_geq(metric("dealscore_benchmark_refresh_rounds_total"), 1);
}

/* Undecodable events go to the DLQ; unknown orgs or opportunities are
 * skipped; later events are still processed. */
Test(benchmark, bad_events_dead_lettered_unknown_skipped) {
    fixture_org_a();
    start(0);
    ds_consumer_t *dlq = dst_consumer(&T, "opportunity.changed.dlq");
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x01, 0x02};
    ds_event_meta_t meta = {.type = DS_CE_TYPE_OPPORTUNITY_CHANGED};
    cr_assert_eq(ds_producer_send(prod, topic, "k", 1, garbage, sizeof garbage, &meta, NULL), 0);
    publish("e0000000-0000-4000-8000-000000000008", "d0000000-0000-4000-8000-000000000001",
            "d0000000-0000-4000-8000-000000000002", UPSERTED);
    publish("e0000000-0000-4000-8000-000000000009", ORG_A, "not-a-uuid", UPSERTED);
    publish("e0000000-0000-4000-8000-000000000001", ORG_A, T_ID, UPSERTED);
    wait_value("1", "select count(*) from opportunity_benchmarks");
    rd_kafka_message_t *msgs[2];
    dst_consume(dlq, msgs, 2, 30000);
    for (int i = 0; i < 2; i++) {
        char err[256];
        cr_expect_eq(ds_kafka_header_get(msgs[i], DS_HDR_DLQ_ERROR, err, sizeof err), 0);
        rd_kafka_message_destroy(msgs[i]);
    }
    cr_expect_geq(metric("dealscore_benchmark_skipped_total"), 1);
    ds_consumer_close(dlq);
    ds_consumer_destroy(dlq);
}
