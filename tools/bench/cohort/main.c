/* dealscore-bench-cohort: the benchmark worker's cohort queries under load.
 *
 *   dealscore-bench-cohort generate --org SLUG --opportunities N [--db URL]
 *       adds an org with N synthetic opportunities (N/4 accounts, the
 *       simulator's category mix and amount scale, ~2 years of history;
 *       stage history for closed deals, interactions and a MEDDICC snapshot
 *       for won deals) to a migrated database, then VACUUM ANALYZE.
 *   dealscore-bench-cohort run --org SLUG [--samples 500] [--map 20000]
 *       [--explain] [--db URL]
 *       1. latency of one uncached cohort computation (the cohort query and
 *          its upsert in one transaction, as the worker runs it) for random
 *          open opportunities at the full level and at the widest level
 *          (industry only): p50, p90, p99, computations/s on one connection;
 *       2. mapping: clears the org's cached cohorts and maps up to --map
 *          open opportunities in batches of 500 as the worker does
 *          (opportunities/s, computations/s, cache hit ratio);
 *       3. --explain: EXPLAIN (ANALYZE, BUFFERS) of the full-level query.
 * The database is DEALSCORE_DATABASE_URL unless --db is given. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"
#include "benchmark/cohort.h"
#include "base/common.h"
#include "base/log.h"
#include "infra/pg.h"

static const char *const gen_sql[] = {
    /* $1 org id, $2 opportunities */
    "insert into public.accounts (org_id, external_id, name, industry, region, size_band, created_at,"
    " source_hash)"
    " select $1::uuid, 'acc-' || g, 'Account ' || g,"
    "  case when r1 < 0.20 then 'software' when r1 < 0.35 then 'financial_services'"
    "   when r1 < 0.47 then 'healthcare' when r1 < 0.62 then 'manufacturing' when r1 < 0.74 then 'retail'"
    "   when r1 < 0.82 then 'education' when r1 < 0.90 then 'public_sector' else 'media' end,"
    "  case when r2 < 0.45 then 'na' when r2 < 0.75 then 'emea' when r2 < 0.90 then 'apac' else 'latam' end,"
    "  case when r3 < 0.50 then 'smb' when r3 < 0.85 then 'mid_market' else 'enterprise' end,"
    "  now() - interval '1000 days', 'bench'"
    " from (select g, random() as r1, random() as r2, random() as r3"
    "  from generate_series(1, greatest($2::int / 4, 1)) g) x",

    "create temp table bench_acc as select row_number() over (order by id) as rn, id, size_band"
    " from public.accounts where org_id = $1::uuid and $2::int > 0",

    "insert into public.opportunities (org_id, external_id, account_id, account_external_id, owner_id,"
    " product_category, persona, amount, currency, stage, created_at, close_date, closed_at, outcome,"
    " source_hash)"
    " select $1::uuid, 'opp-' || x.g, a.id, null, 'owner-' || (x.g % 100), x.prod, x.per, am.amount, 'USD',"
    "  case oc.outcome when 'won' then 'closed_won' when 'lost' then 'closed_lost'"
    "   else (array['prospecting', 'qualification', 'discovery', 'demo', 'proposal', 'negotiation'])"
    "    [1 + floor(x.rs * 6)::int] end,"
    "  x.created, (x.created + x.cycle)::date,"
    "  case when oc.outcome <> 'open' then x.created + x.cycle end, oc.outcome, 'bench'"
    " from (select g, 1 + abs(hashint4(g)) % (select count(*) from bench_acc) as rn,"
    "  case when r1 < 0.35 then 'core_platform' when r1 < 0.55 then 'analytics' when r1 < 0.75 then "
    "'security'"
    "   when r1 < 0.90 then 'integrations' else 'services' end as prod,"
    "  case when r1 < 0.35 then 1.0 when r1 < 0.55 then 0.7 when r1 < 0.75 then 0.9 when r1 < 0.90 then 0.5"
    "   else 0.4 end as pf,"
    "  case when r2 < 0.22 then 'it_director' when r2 < 0.37 then 'cto' when r2 < 0.52 then 'cfo'"
    "   when r2 < 0.74 then 'vp_sales' when r2 < 0.92 then 'operations' else 'procurement' end as per,"
    "  now() - random() * interval '730 days' as created,"
    "  (20 + -ln(1 - random()) * 60) * interval '1 day' as cycle,"
    "  sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) as z, random() as rw, random() as rs"
    "  from (select g, random() as r1, random() as r2 from generate_series(1, $2::int) g) y) x"
    " join bench_acc a using (rn)"
    " cross join lateral (select case when x.created + x.cycle < now()"
    "  then case when x.rw < 0.3 then 'won' else 'lost' end else 'open' end as outcome) oc"
    " cross join lateral (select round((case a.size_band when 'smb' then 15000 when 'mid_market' then 60000"
    "  else 240000 end) * x.pf * exp(0.6 * x.z)) as amount) am",

    "insert into public.opportunity_history (org_id, opportunity_id, field, old_value, new_value, changed_at)"
    " select o.org_id, o.id, 'stage', v.old,"
    "  case when v.new = 'closed' then 'closed_' || o.outcome else v.new end,"
    "  o.created_at + (o.closed_at - o.created_at) * v.f"
    " from public.opportunities o"
    " cross join (values (null, 'prospecting', 0.0), ('prospecting', 'proposal', 0.4),"
    "  ('proposal', 'closed', 1.0)) as v(old, new, f)"
    " where o.org_id = $1::uuid and o.outcome <> 'open' and $2::int > 0",

    "insert into public.interactions (org_id, external_id, opportunity_id, opportunity_external_id, type,"
    " occurred_at, source_hash)"
    " select o.org_id, o.external_id || '-i' || k, o.id, o.external_id,"
    "  (array['email', 'email', 'email', 'phone', 'meeting', 'meeting', 'demo', 'support'])"
    "   [1 + floor(random() * 8)::int],"
    "  o.created_at + (o.closed_at - o.created_at) * random(), 'bench'"
    " from public.opportunities o"
    " cross join lateral generate_series(1, 3 + abs(hashtext(o.external_id)) % 10) k"
    " where o.org_id = $1::uuid and o.outcome = 'won' and $2::int > 0",

    "insert into public.features_snapshot (org_id, opportunity_id, as_of, feature_version, features, meddicc)"
    " select o.org_id, o.id, o.closed_at, 'bench', '{}'::jsonb,"
    "  (select jsonb_object_agg(e, jsonb_build_object('present', random() < 0.5))"
    "   from unnest(array['metrics', 'economic_buyer', 'decision_criteria', 'decision_process',"
    "    'paper_process', 'identify_pain', 'champion', 'competition']) e where o.id is not null)"
    " from public.opportunities o where o.org_id = $1::uuid and o.outcome = 'won' and $2::int > 0",

    "drop table bench_acc",
};

static const char *const vacuum_sql[] = {
    "vacuum analyze public.accounts",
    "vacuum analyze public.opportunities",
    "vacuum analyze public.opportunity_history",
    "vacuum analyze public.interactions",
    "vacuum analyze public.features_snapshot",
    "vacuum analyze public.benchmarks_cached",
    "vacuum analyze public.opportunity_benchmarks",
};

typedef struct {
    const char *cmd;
    const char *org;
    const char *db;
    long opportunities;
    int samples;
    int map;
    bool explain;
} opts_t;

static int usage(void) {
    fprintf(stderr,
            "usage: dealscore-bench-cohort generate --org SLUG --opportunities N [--db URL]\n"
            "       dealscore-bench-cohort run --org SLUG [--samples N] [--map N] [--explain] [--db URL]\n");
    return 2;
}

static PGresult *must(PGconn *c, const char *sql, int n, const char *const *v) {
    PGresult *r = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "query failed: %s%.300s\n", PQresultErrorMessage(r), sql);
        exit(1);
    }
    return r;
}

static double secs(int64_t us) { return (double)us / 1e6; }

static int generate(PGconn *c, const opts_t *o) {
    const char *v[] = {o->org};
    PGresult *r = must(c,
                       "insert into public.orgs (slug, name, settings) values ($1, $1,"
                       " jsonb_build_object('benchmark_months', 12, 'benchmark_min_cohort', 10,"
                       "  'benchmark_amount_band', 0.2))"
                       " returning id::text",
                       1, v);
    char org_id[40];
    snprintf(org_id, sizeof org_id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    char n[24];
    snprintf(n, sizeof n, "%ld", o->opportunities);
    const char *p[] = {org_id, n};
    for (size_t i = 0; i < DS_ARRAY_SIZE(gen_sql); i++) {
        int64_t t0 = ds_mono_us();
        PQclear(must(c, gen_sql[i], strncmp(gen_sql[i], "drop", 4) == 0 ? 0 : 2, p));
        fprintf(stderr, "step %zu/%zu: %.1f s\n", i + 1, DS_ARRAY_SIZE(gen_sql), secs(ds_mono_us() - t0));
    }
    for (size_t i = 0; i < DS_ARRAY_SIZE(vacuum_sql); i++) PQclear(must(c, vacuum_sql[i], 0, NULL));
    r = must(c,
             "select (select count(*) from public.accounts where org_id = $1::uuid),"
             " count(*), count(*) filter (where outcome = 'open'), count(*) filter (where outcome = 'won'),"
             " count(*) filter (where outcome = 'lost')"
             " from public.opportunities where org_id = $1::uuid",
             1, p);
    printf("org %s (%s): %s accounts, %s opportunities (%s open, %s won, %s lost)\n", o->org, org_id,
           PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
           PQgetvalue(r, 0, 4));
    PQclear(r);
    return 0;
}

static double pct(const double *sorted, int n, double p) {
    if (n == 0) return NAN;
    double pos = p * (n - 1);
    int lo = (int)floor(pos), hi = (int)ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

typedef struct {
    char *ind, *prod, *reg, *per;
    double amount;
    bool has_amount;
} sample_t;

static void latency(cohort_engine_t *e, const char *org_id, sample_t *s, int n, cohort_level_t level) {
    double *lat = ds_calloc((size_t)n, sizeof *lat), *qlat = ds_calloc((size_t)n, sizeof *qlat);
    int64_t t_all = ds_mono_us();
    long long won_sum = 0, closed_sum = 0;
    char err[512];
    for (int i = 0; i < n; i++) {
        cohort_attrs_t a = {s[i].ind, s[i].prod, s[i].reg, s[i].per, s[i].has_amount, s[i].amount};
        int64_t won = 0, closed = 0, t0 = ds_mono_us();
        if (cohort_compute_one(e, org_id, &a, level, &won, &closed, err, sizeof err) != 0) {
            fprintf(stderr, "cohort query failed: %s\n", err);
            exit(1);
        }
        lat[i] = (double)(ds_mono_us() - t0) / 1000.0;
        qlat[i] = (double)cohort_engine_last_query_us(e) / 1000.0;
        won_sum += won;
        closed_sum += closed;
    }
    double total = secs(ds_mono_us() - t_all);
    qsort(lat, (size_t)n, sizeof *lat, perf_cmp_dbl);
    qsort(qlat, (size_t)n, sizeof *qlat, perf_cmp_dbl);
    printf("  %s level: %d cohorts, mean %.1f won / %.1f closed deals each\n"
           "    query ms       p50 %6.2f p90 %6.2f p99 %6.2f max %6.2f\n"
           "    transaction ms p50 %6.2f p90 %6.2f p99 %6.2f max %6.2f; %.0f computations/s\n",
           cohort_level_name(level), n, (double)won_sum / n, (double)closed_sum / n, pct(qlat, n, 0.5),
           pct(qlat, n, 0.9), pct(qlat, n, 0.99), qlat[n - 1], pct(lat, n, 0.5), pct(lat, n, 0.9),
           pct(lat, n, 0.99), lat[n - 1], n / total);
    free(lat);
    free(qlat);
}

static void explain(PGconn *c, const char *org_id, const sample_t *s) {
    cohort_settings_t set = {12, 10, 0.2};
    cohort_band_t band;
    cohort_band_of(&set, s->has_amount, s->amount, &band);
    cohort_attrs_t a = {s->ind, s->prod, s->reg, s->per, s->has_amount, s->amount};
    char *key = cohort_key(&a, COHORT_FULL, &band, 12);
    unsigned mask = (s->ind ? 0u : 1u) | (s->prod ? 0u : 2u) | (s->reg ? 0u : 4u) | (s->per ? 0u : 8u);
    char *sql = cohort_query_sql(COHORT_FULL, mask);
    char *ex = ds_asprintf("explain (analyze, buffers) %s", sql);
    const char *v[13] = {org_id,  key,    "0",    s->ind,
                         s->prod, s->reg, s->per, band.lo,
                         band.hi, "12",   "full", "{industry,product_category,region,persona}",
                         "10"};
    printf("\nEXPLAIN (ANALYZE, BUFFERS) of the full-level cohort query, key %s:\n\n", key);
    PQclear(must(c, "begin", 0, NULL));
    PGresult *r = must(c, ex, 13, v);
    for (int i = 0; i < PQntuples(r); i++) printf("%s\n", PQgetvalue(r, i, 0));
    PQclear(r);
    PQclear(must(c, "rollback", 0, NULL));
    free(ex);
    free(sql);
    free(key);
}

/* Prints the org's size and sets org_id; returns -1 without such an org. */
static int find_org(PGconn *c, const char *slug, char org_id[40]) {
    const char *v[] = {slug};
    PGresult *r = must(c, "select id::text from public.orgs where slug = $1", 1, v);
    if (PQntuples(r) != 1) {
        fprintf(stderr, "no org %s\n", slug);
        return -1;
    }
    snprintf(org_id, 40, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    const char *p[] = {org_id};
    r = must(c,
             "select count(*), count(*) filter (where outcome = 'open') from public.opportunities where "
             "org_id = $1",
             1, p);
    printf("org %s: %s opportunities, %s open\n", slug, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    PQclear(r);
    return 0;
}

/* Up to n random open opportunities' cohort attributes; sets *count. */
static sample_t *load_samples(PGconn *c, const char *org_id, int n, int *count) {
    char ns[16];
    snprintf(ns, sizeof ns, "%d", n);
    const char *ps[] = {org_id, ns};
    PGresult *r = must(c,
                       "select a.industry, o.product_category, a.region, o.persona, o.amount::float8"
                       " from public.opportunities o left join public.accounts a on a.id = o.account_id"
                       " where o.org_id = $1::uuid and o.outcome = 'open' and not o.placeholder"
                       " order by random() limit $2::int",
                       2, ps);
    *count = PQntuples(r);
    sample_t *s = ds_calloc((size_t)*count + 1, sizeof *s);
    for (int i = 0; i < *count; i++) {
        s[i].ind = PQgetisnull(r, i, 0) ? NULL : ds_strdup(PQgetvalue(r, i, 0));
        s[i].prod = PQgetisnull(r, i, 1) ? NULL : ds_strdup(PQgetvalue(r, i, 1));
        s[i].reg = PQgetisnull(r, i, 2) ? NULL : ds_strdup(PQgetvalue(r, i, 2));
        s[i].per = PQgetisnull(r, i, 3) ? NULL : ds_strdup(PQgetvalue(r, i, 3));
        s[i].has_amount = !PQgetisnull(r, i, 4);
        s[i].amount = s[i].has_amount ? atof(PQgetvalue(r, i, 4)) : 0;
    }
    PQclear(r);
    return s;
}

static void samples_free(sample_t *s, int n) {
    for (int i = 0; i < n; i++) {
        free(s[i].ind);
        free(s[i].prod);
        free(s[i].reg);
        free(s[i].per);
    }
    free(s);
}

/* Part 2: maps up to n open opportunities from an empty cache, in batches
 * of 500 as the worker does. */
static int measure_mapping(PGconn *c, cohort_engine_t *e, const char *org_id, int n) {
    printf("\n2. mapping open opportunities from an empty cache (batches of 500, as the worker):\n");
    const char *p[] = {org_id};
    PQclear(must(c, "delete from public.opportunity_benchmarks where org_id = $1", 1, p));
    PQclear(must(c, "delete from public.benchmarks_cached where org_id = $1", 1, p));
    char nm[16], err[512];
    snprintf(nm, sizeof nm, "%d", n);
    const char *pm[] = {org_id, nm};
    PGresult *r =
        must(c,
             "select id::text from public.opportunities where org_id = $1::uuid and outcome = 'open'"
             " order by id limit $2::int",
             2, pm);
    int m = PQntuples(r);
    const char **ids = ds_calloc((size_t)m + 1, sizeof *ids);
    for (int i = 0; i < m; i++) ids[i] = PQgetvalue(r, i, 0);
    cohort_stats_t st = {0};
    int64_t t0 = ds_mono_us();
    double *bl = ds_calloc((size_t)m / 500 + 2, sizeof *bl);
    int nb = 0;
    for (int i = 0; i < m; i += 500) {
        int k = m - i < 500 ? m - i : 500;
        int64_t b0 = ds_mono_us();
        if (cohort_apply(e, org_id, ids + i, (size_t)k, &st, err, sizeof err) != 0) {
            fprintf(stderr, "mapping failed: %s\n", err);
            return 1;
        }
        bl[nb++] = (double)(ds_mono_us() - b0) / 1000.0;
    }
    double total = secs(ds_mono_us() - t0);
    qsort(bl, (size_t)nb, sizeof *bl, perf_cmp_dbl);
    printf("  %d opportunities in %.1f s: %.0f opportunities/s; %zu cohort computations (%.0f/s),"
           " %zu cache hits, %zu misses (hit ratio %.2f); %zu mappings written;"
           " batch of 500 ms p50 %.0f p99 %.0f\n",
           m, total, m / total, st.computed, st.computed / total, st.hits, st.misses,
           st.hits + st.misses ? (double)st.hits / (double)(st.hits + st.misses) : 0, st.mapped,
           pct(bl, nb, 0.5), pct(bl, nb, 0.99));
    free(bl);
    free(ids);
    PQclear(r);
    r = must(c,
             "select match_level, count(*) from public.opportunity_benchmarks where org_id = $1"
             " group by 1 order by 2 desc",
             1, p);
    printf("  match levels:");
    for (int i = 0; i < PQntuples(r); i++) printf(" %s %s", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    printf("\n");
    PQclear(r);
    return 0;
}

static void print_prepared(ds_pg_t *pg) {
    PGresult *r = must(ds_pg_conn(pg),
                       "select count(*), coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)"
                       " from pg_prepared_statements where name like 'bench_cohort_%'",
                       0, NULL);
    printf("\n  cohort statements prepared: %s, executions with a generic plan %s, with a custom plan %s\n",
           PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    PQclear(r);
}

static int run_bench(PGconn *c, const opts_t *o) {
    char org_id[40];
    if (find_org(c, o->org, org_id) != 0) return 1;
    int n;
    sample_t *s = load_samples(c, org_id, o->samples, &n);
    if (n == 0) {
        fprintf(stderr, "the org has no open opportunities\n");
        free(s);
        return 1;
    }
    ds_pg_t *pg = NULL;
    char err[512];
    if (ds_pg_new(&pg, o->db, "dealscore-bench-cohort", err, sizeof err) != 0 ||
        ds_pg_ensure(pg, 10000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    cohort_settings_t defaults = {12, 10, 0.2};
    cohort_engine_t *e = cohort_engine_new(pg, &defaults, NULL);

    printf("\n1. one uncached cohort computation (query + upsert + commit, one connection):\n");
    /* A first pass warms Postgres's buffers and the prepared statements, as a
     * running worker has them. */
    latency(e, org_id, s, n < 50 ? n : 50, COHORT_FULL);
    latency(e, org_id, s, n, COHORT_FULL);
    latency(e, org_id, s, n, COHORT_INDUSTRY_PRODUCT);
    latency(e, org_id, s, n, COHORT_INDUSTRY);
    if (o->map > 0 && measure_mapping(c, e, org_id, o->map) != 0) return 1;
    print_prepared(pg);
    if (o->explain) explain(c, org_id, &s[0]);
    cohort_engine_destroy(e);
    ds_pg_destroy(pg);
    samples_free(s, n);
    return 0;
}

int main(int argc, char **argv) {
    opts_t o = {.samples = 500, .map = 20000, .db = getenv("DEALSCORE_DATABASE_URL")};
    if (argc < 2) return usage();
    o.cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--org") && val)
            o.org = argv[++i];
        else if (!strcmp(a, "--db") && val)
            o.db = argv[++i];
        else if (!strcmp(a, "--opportunities") && val)
            o.opportunities = atol(argv[++i]);
        else if (!strcmp(a, "--samples") && val)
            o.samples = atoi(argv[++i]);
        else if (!strcmp(a, "--map") && val)
            o.map = atoi(argv[++i]);
        else if (!strcmp(a, "--explain"))
            o.explain = true;
        else
            return usage();
    }
    if (!o.org || !o.db || !*o.db) return usage();
    ds_log_init("bench-cohort", DS_LOG_WARN);
    PGconn *c = NULL;
    char err[512];
    if (ds_pg_connect_app(&c, o.db, "dealscore-bench-cohort", 10000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "could not connect: %s\n", err);
        return 1;
    }
    int rc;
    if (!strcmp(o.cmd, "generate") && o.opportunities > 0)
        rc = generate(c, &o);
    else if (!strcmp(o.cmd, "run") && o.samples > 0)
        rc = run_bench(c, &o);
    else
        rc = usage();
    PQfinish(c);
    return rc;
}
