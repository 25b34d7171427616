/* Cohort benchmarks: keys, amount bands, and the transactions that compute,
 * cache and map cohorts (see cohort.h for the definitions). */
#include "cohort.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/sb.h"
#include "base/log.h"
#include "base/strindex.h"
#include "base/uuidset.h"

static const char *const level_names[COHORT_LEVELS] = {"full", "industry_product_region", "industry_product",
                                                       "industry"};
static const char *const level_matched[COHORT_LEVELS] = {"{industry,product_category,region,persona}",
                                                         "{industry,product_category,region}",
                                                         "{industry,product_category}", "{industry}"};

const char *cohort_level_name(cohort_level_t level) {
    return level >= 0 && level < COHORT_LEVELS ? level_names[level] : "?";
}

/* ---- small containers ------------------------------------------------------ */

typedef struct {
    char **v;
    size_t n, cap;
} strv_t;

/* Takes ownership of s. */
static void strv_push(strv_t *s, char *str) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = ds_realloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = str;
}

static void strv_free(strv_t *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* Won counts by cohort key for one transaction: the keys are copies kept in
 * keys, found through the string index. */
typedef struct {
    strv_t keys;
    int64_t *won; /* won[i] belongs to keys.v[i] */
    ds_strindex_t index;
} kmap_t;

static int64_t *kmap_find(kmap_t *m, const char *key) {
    int i = ds_strindex_find(&m->index, key);
    return i < 0 ? NULL : &m->won[i];
}

static void kmap_put(kmap_t *m, const char *key, int64_t v) {
    int64_t *p = kmap_find(m, key);
    if (p) {
        *p = v;
        return;
    }
    strv_push(&m->keys, ds_strdup(key));
    m->won = ds_realloc(m->won, m->keys.cap * sizeof *m->won);
    m->won[m->keys.n - 1] = v;
    ds_strindex_add(&m->index, m->keys.v[m->keys.n - 1], (int)m->keys.n - 1);
}

static void kmap_free(kmap_t *m) {
    strv_free(&m->keys);
    free(m->won);
    ds_strindex_free(&m->index);
}

/* ---- bands and keys ---------------------------------------------------------- */

static double grid_ratio(const cohort_settings_t *s) { return 1.0 + s->band / 4.0; }

static void band_any(cohort_band_t *out) {
    out->cell = COHORT_BAND_ANY;
    snprintf(out->lo, sizeof out->lo, "0");
    snprintf(out->hi, sizeof out->hi, "Infinity");
    snprintf(out->label, sizeof out->label, "any");
}

static void band_cell(const cohort_settings_t *s, int64_t k, cohort_band_t *out) {
    double b = s->band, g = grid_ratio(s);
    double lo, hi;
    if (k < 0) {
        lo = 0;
        hi = 1.0 + b;
    } else {
        lo = (1.0 - b) * pow(g, (double)k);
        hi = (1.0 + b) * pow(g, (double)(k + 1));
    }
    out->cell = k < 0 ? -1 : k;
    /* Whole cents: lo down and hi up keep [(1-b)a, (1+b)a] inside the range. */
    snprintf(out->lo, sizeof out->lo, "%.2f", floor(lo * 100.0) / 100.0);
    snprintf(out->hi, sizeof out->hi, "%.2f", ceil(hi * 100.0) / 100.0);
    snprintf(out->label, sizeof out->label, "[%s,%s)", out->lo, out->hi);
}

void cohort_band_of(const cohort_settings_t *s, bool has_amount, double amount, cohort_band_t *out) {
    if (!has_amount || !isfinite(amount) || amount < 0) {
        band_any(out);
        return;
    }
    if (amount < 1.0) {
        band_cell(s, -1, out);
        return;
    }
    double g = grid_ratio(s);
    int64_t k = (int64_t)floor(log(amount) / log(g));
    /* log() rounding can be off by one at a cell edge: settle on the cell
     * whose edges (as pow computes them) hold the amount. */
    while (k > 0 && pow(g, (double)k) > amount) k--;
    while (pow(g, (double)(k + 1)) <= amount) k++;
    band_cell(s, k, out);
}

size_t cohort_bands_containing(const cohort_settings_t *s, double amount, cohort_band_t *out, size_t max) {
    size_t n = 0;
    if (isfinite(amount) && amount >= 0) {
        double b = s->band, g = grid_ratio(s);
        cohort_band_t cb;
        band_cell(s, -1, &cb);
        if (n < max && amount < strtod(cb.hi, NULL)) out[n++] = cb;
        if (amount > 0) {
            int64_t kmin = (int64_t)floor(log(amount / (1.0 + b)) / log(g)) - 2;
            int64_t kmax = (int64_t)floor(log(amount / (1.0 - b)) / log(g)) + 2;
            if (kmin < 0) kmin = 0;
            for (int64_t k = kmin; k <= kmax && n < max; k++) {
                band_cell(s, k, &cb);
                if (strtod(cb.lo, NULL) <= amount && amount < strtod(cb.hi, NULL)) out[n++] = cb;
            }
        }
    }
    if (n < max) band_any(&out[n++]);
    return n;
}

static void put_value(ds_sb_t *b, const char *v) {
    if (!v) {
        ds_sb_puts(b, "~");
        return;
    }
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (isalnum(*p) || *p == '.' || *p == '_' || *p == '-') {
            ds_sb_put(b, (const char *)p, 1);
        } else {
            char hex[4];
            snprintf(hex, sizeof hex, "%%%02X", *p);
            ds_sb_puts(b, hex);
        }
    }
}

char *cohort_key(const cohort_attrs_t *a, cohort_level_t level, const cohort_band_t *band, int months) {
    ds_sb_t b = {0};
    ds_sb_puts(&b, "v1|ind=");
    put_value(&b, a->industry);
    if (level <= COHORT_INDUSTRY_PRODUCT) {
        ds_sb_puts(&b, "|prod=");
        put_value(&b, a->product);
    }
    if (level <= COHORT_INDUSTRY_PRODUCT_REGION) {
        ds_sb_puts(&b, "|reg=");
        put_value(&b, a->region);
    }
    if (level == COHORT_FULL) {
        ds_sb_puts(&b, "|per=");
        put_value(&b, a->persona);
    }
    ds_sb_printf(&b, "|amt=%s|m=%d", band->label, months);
    return ds_sb_take(&b);
}

/* ---- SQL ------------------------------------------------------------------- */

/* The cohort query: computes one cohort's aggregates and upserts its cached
 * row in one statement. Parameters:
 *   $1 org, $2 key, $3 level, $4 industry, $5 product, $6 region, $7 persona
 *   (NULL when relaxed), $8 amount lo, $9 amount hi ('Infinity' for any),
 *   $10 months, $11 level name, $12 matched attributes (text[]), $13 min_won.
 * Returns the new won count, the closed count, and the won count the row had
 * before (NULL when it is new). Percentiles are percentile_cont (linear
 * interpolation between the closest ranks). */
static const char *const sql_cohort_head =
    "with p as ("
    " select (date_trunc('day', now() at time zone 'UTC') - make_interval(months => $10::int))"
    " at time zone 'UTC' as since),"
    " prev as (select b.won_count from public.benchmarks_cached b"
    "  where b.org_id = $1::uuid and b.cohort_key = $2::text),"
    " c as materialized ("
    " select o.id, o.outcome, o.closed_amount as amount, o.created_at, o.closed_at"
    " from public.opportunities o"
    " left join public.accounts a on a.org_id = o.org_id and a.id = o.account_id"
    " where o.org_id = $1::uuid and o.outcome in ('won', 'lost')"
    " and o.closed_amount >= $8::numeric and o.closed_amount < $9::numeric"
    " and o.closed_at >= (select since from p)";

static const char *const sql_cohort_tail =
    "),"
    " w as materialized (select id, amount, created_at, closed_at from c where outcome = 'won'),"
    /* Interactions of each type up to the close, per won deal (zero included). */
    " ic as ("
    " select i.opportunity_id as id, i.type, count(*) as n"
    " from w join public.interactions i on i.opportunity_id = w.id and i.occurred_at <= w.closed_at"
    " group by 1, 2),"
    " it as ("
    " select jsonb_object_agg(x.type, x.med) as j from ("
    "  select t.type, percentile_cont(0.5) within group (order by coalesce(ic.n, 0)::float8) as med"
    "  from w cross join (values ('email'), ('phone'), ('meeting'), ('demo'), ('support')) as t(type)"
    "  left join ic on ic.id = w.id and ic.type = t.type"
    "  group by t.type) x),"
    /* Time in each stage: from one stage change to the next (the last one
     * until the close), cut at the close; before the first change the
     * deal was in its old_value since creation. */
    " hs as ("
    " select w.id, w.created_at, w.closed_at, h.old_value, h.new_value, h.changed_at,"
    "  lead(h.changed_at) over (partition by w.id order by h.changed_at, h.id) as nxt,"
    "  row_number() over (partition by w.id order by h.changed_at, h.id) as rn"
    " from w join public.opportunity_history h on h.opportunity_id = w.id and h.field = 'stage'),"
    " seg as ("
    " select id, new_value as stage, changed_at as t0, least(coalesce(nxt, closed_at), closed_at) as t1"
    " from hs where new_value is not null"
    " union all"
    " select id, old_value, created_at, least(changed_at, closed_at) from hs"
    " where rn = 1 and old_value is not null and created_at is not null),"
    " sd as ("
    " select jsonb_object_agg(x.stage, jsonb_build_object('median_days', round(x.med::numeric, 3),"
    "  'deals', x.deals)) as j from ("
    "  select d.stage, count(*) as deals, percentile_cont(0.5) within group (order by d.days) as med"
    "  from (select id, stage, sum(extract(epoch from t1 - t0))::float8 / 86400.0 as days"
    "   from seg where t1 > t0 group by id, stage) d"
    "  group by d.stage) x),"
    /* MEDDICC: the latest feature snapshot of each won deal, when it has one. */
    " md as ("
    " select s.meddicc from w cross join lateral ("
    "  select f.meddicc from public.features_snapshot f where f.opportunity_id = w.id"
    "  order by f.as_of desc, f.id desc limit 1) s"
    " where s.meddicc is not null),"
    " el as (select unnest(array['metrics', 'economic_buyer', 'decision_criteria', 'decision_process',"
    "  'paper_process', 'identify_pain', 'champion', 'competition']) as el),"
    " mc as (select md.meddicc, (select count(*) from el"
    "  where md.meddicc -> el.el ->> 'present' = 'true')::float8 as cov from md),"
    " me as (select jsonb_build_object("
    "  'deals_with_snapshot', (select count(*) from mc),"
    "  'coverage_median', (select percentile_cont(0.5) within group (order by cov) from mc),"
    "  'coverage_share', (select round((avg(cov) / 8.0)::numeric, 4) from mc),"
    "  'elements', (select jsonb_object_agg(y.el, y.share) from ("
    "   select el.el, round(avg(case when mc.meddicc -> el.el ->> 'present' = 'true'"
    "    then 1 else 0 end), 4) as share"
    "   from mc cross join el group by el.el) y)) as j),"
    " agg as ("
    " select count(*) filter (where outcome = 'won') as won,"
    "  count(*) filter (where outcome = 'lost') as lost,"
    "  percentile_cont(array[0.25, 0.5, 0.75]::float8[]) within group (order by amount::float8)"
    "   filter (where outcome = 'won') as amt,"
    "  percentile_cont(array[0.25, 0.5, 0.75]::float8[]) within group"
    "   (order by extract(epoch from closed_at - created_at)::float8 / 86400.0)"
    "   filter (where outcome = 'won') as cyc"
    " from c),"
    " m as ("
    " select won, lost, jsonb_build_object("
    "  'won', won, 'lost', lost, 'closed', won + lost,"
    "  'win_rate', case when won + lost > 0 then round(won::numeric / (won + lost), 4) end,"
    "  'amount', case when won > 0 then jsonb_build_object('p25', round(amt[1]::numeric, 2),"
    "   'median', round(amt[2]::numeric, 2), 'p75', round(amt[3]::numeric, 2)) end,"
    "  'cycle_days', case when won > 0 then jsonb_build_object('p25', round(cyc[1]::numeric, 3),"
    "   'median', round(cyc[2]::numeric, 3), 'p75', round(cyc[3]::numeric, 3)) end,"
    "  'interactions_before_close', (select j from it),"
    "  'stage_days', (select j from sd),"
    "  'meddicc', (select j from me),"
    "  'level', $11::text,"
    "  'matched', to_jsonb($12::text[]),"
    "  'min_won', $13::int,"
    "  'sufficient', won >= $13::int,"
    "  'window', jsonb_build_object('months', $10::int, 'from',"
    "   to_char((select since from p) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')),"
    "  'amount_band', jsonb_build_object('lo', $8::numeric, 'hi',"
    "   case when $9::numeric = 'Infinity' then null else $9::numeric end)) as metrics"
    " from agg),"
    " ins as ("
    " insert into public.benchmarks_cached as b (org_id, cohort_key, as_of, match_level, cohort_size,"
    "  metrics, level, industry, product_category, region, persona, amount_lo, amount_hi,"
    "  window_months, window_start, won_count, refreshed_at)"
    " select $1::uuid, $2::text, now(), $11::text, (m.won + m.lost)::int, m.metrics, $3::smallint,"
    "  $4::text, $5::text, $6::text, $7::text, $8::numeric, $9::numeric, $10::int,"
    "  (select since from p), m.won::int, now()"
    " from m"
    " on conflict (org_id, cohort_key) do update set"
    "  as_of = case when b.metrics is distinct from excluded.metrics"
    "   or b.cohort_size is distinct from excluded.cohort_size"
    "   or b.match_level is distinct from excluded.match_level then excluded.as_of else b.as_of end,"
    "  match_level = excluded.match_level, cohort_size = excluded.cohort_size,"
    "  metrics = excluded.metrics, level = excluded.level, industry = excluded.industry,"
    "  product_category = excluded.product_category, region = excluded.region,"
    "  persona = excluded.persona, amount_lo = excluded.amount_lo, amount_hi = excluded.amount_hi,"
    "  window_months = excluded.window_months, window_start = excluded.window_start,"
    "  won_count = excluded.won_count, refreshed_at = excluded.refreshed_at"
    " returning b.won_count, b.cohort_size)"
    " select ins.won_count, ins.cohort_size, (select won_count from prev) from ins";

char *cohort_query_sql(cohort_level_t level, unsigned null_mask) {
    ds_sb_t b = {0};
    ds_sb_puts(&b, sql_cohort_head);
    ds_sb_puts(&b, null_mask & 1 ? " and a.industry is null" : " and a.industry = $4::text");
    if (level <= COHORT_INDUSTRY_PRODUCT)
        ds_sb_puts(&b,
                   null_mask & 2 ? " and o.product_category is null" : " and o.product_category = $5::text");
    if (level <= COHORT_INDUSTRY_PRODUCT_REGION)
        ds_sb_puts(&b, null_mask & 4 ? " and a.region is null" : " and a.region = $6::text");
    if (level == COHORT_FULL)
        ds_sb_puts(&b, null_mask & 8 ? " and o.persona is null" : " and o.persona = $7::text");
    ds_sb_puts(&b, sql_cohort_tail);
    return b.p;
}

/* The org lock, generic plans until the first cohort query, and the org's
 * settings. Generic plans: the statements of every transaction look their
 * rows up by key (sql_load), so one cached plan serves every org, where
 * planning them anew cost more than running them. The settings (months,
 * min_won, band), each NULL unless it is a JSON number, and found: the org
 * exists; one row either way, so the lock is always taken. */
static const char *const sql_lock =
    "select pg_advisory_xact_lock(hashtextextended('dealscore.benchmark:' || $1::text, 0)),"
    " set_config('plan_cache_mode', 'force_generic_plan', true), s.months, s.min_won, s.band, s.found"
    " from (values (1)) v left join lateral (select true as found,"
    "  case when jsonb_typeof(o.settings -> 'benchmark_months') = 'number'"
    "   then (o.settings ->> 'benchmark_months')::float8 end as months,"
    "  case when jsonb_typeof(o.settings -> 'benchmark_min_cohort') = 'number'"
    "   then (o.settings ->> 'benchmark_min_cohort')::float8 end as min_won,"
    "  case when jsonb_typeof(o.settings -> 'benchmark_amount_band') = 'number'"
    "   then (o.settings ->> 'benchmark_amount_band')::float8 end as band"
    "  from public.orgs o where o.id = $1::uuid) s on true";

/* Custom plans for the rest of the transaction, set before its first cohort
 * query (or org count): a generic plan of the cohort query cannot see how
 * many accounts share the industry and region, and probes accounts once per
 * candidate deal (at 1M deals per org: 20-80 ms) where the custom plan
 * hash-joins (8-12 ms + 3 ms planning). Only then: the statements of every
 * transaction (bench_lock, bench_load, bench_map, bench_lookup) keep
 * their cached generic plans, as custom ones cost more to plan than to run
 * (bench_load: about 1.9 ms of planning per batch at load 15). */
static const char *const sql_custom_plans = "select set_config('plan_cache_mode', 'force_custom_plan', true)";

/* Opportunities with what the cohort needs. reopened: the outcome went back
 * to open at some point, so the deal may still sit in cached cohorts. Each
 * row is looked up by its key (OFFSET 0 keeps the lateral subqueries apart,
 * so no plan can scan the org's deals instead: a generic plan did, 1,350
 * buffers a call against 90, for an org its statistics had not seen). */
static const char *const sql_load =
    "select o.id::text, o.account_id::text, o.outcome, o.placeholder, a.industry,"
    " o.product_category, a.region, o.persona, o.amount::float8, ob.cohort_key,"
    " exists (select 1 from public.opportunity_history h where h.opportunity_id = o.id"
    "  and h.field = 'outcome' and h.new_value = 'open'),"
    " ob.match_level, ob.account_id::text, ob.org_id = o.org_id"
    " from (select distinct unnest($2::uuid[]) as id) k"
    " cross join lateral (select * from public.opportunities o"
    "  where o.id = k.id and o.org_id = $1::uuid offset 0) o"
    " left join lateral (select * from public.accounts a"
    "  where a.id = o.account_id offset 0) a on a.org_id = o.org_id"
    " left join lateral (select * from public.opportunity_benchmarks ob"
    "  where ob.opportunity_id = o.id offset 0) ob on true"
    " order by o.id";

/* Won deals of the org in the window, counted up to $3: every cohort is a
 * subset of these (cohort_query_sql adds conditions, never removes one). */
static const char *const sql_org_won =
    "select count(*) from (select 1 from public.opportunities o where o.org_id = $1::uuid and o.outcome = "
    "'won'"
    " and o.closed_at >= (date_trunc('day', now() at time zone 'UTC') - make_interval(months => $2::int))"
    " at time zone 'UTC' limit $3::int) x";

/* The statements that read rows of an org by a list of cohort keys probe
 * the index once per distinct key (COHORT_KEYS_PROBE). The form "cohort_key
 * = any($2)" let a generic plan made while the table was small keep reading
 * every row of the org and testing it against the list (an import: 1,400
 * rows, 954 buffers a call against 60), until the table was next analyzed.
 * alias is the table's; the rest of its conditions follow. */
#define COHORT_KEYS_PROBE(table, alias)                                                                      \
    " from (select distinct unnest($2::text[]) as key) k cross join lateral (select * from " table " " alias \
    " where " alias ".org_id = $1::uuid and " alias ".cohort_key = k.key"

static const char *const sql_lookup = "select b.cohort_key, b.won_count" COHORT_KEYS_PROBE(
    "public.benchmarks_cached", "b") " and b.won_count is not null offset 0) b";

#define ROW_COLS                                                                                             \
    "cohort_key, level, industry, product_category, region, persona, amount_lo::text,"                       \
    " amount_hi::text, won_count, window_months, (metrics ->> 'min_won')"

static const char *const sql_rows =
    "select " ROW_COLS COHORT_KEYS_PROBE("public.benchmarks_cached", "b") " offset 0) b";

static const char *const sql_stale = "select org_id::text, " ROW_COLS " from public.benchmarks_cached"
                                     " where refreshed_at < now() - make_interval(secs => $1::int)"
                                     " order by refreshed_at limit $2::int";

static const char *const sql_mapped_to =
    "select ob.opportunity_id::text" COHORT_KEYS_PROBE("public.opportunity_benchmarks", "ob") " offset 0) ob";

/* Maps the deals that still exist in the org (each looked up by its key,
 * as sql_load does). A mapping that moved is updated with an UPDATE: ON
 * CONFLICT DO UPDATE locks the row first, a WAL record of its own. The
 * others are inserted with ON CONFLICT: a deal without a mapping gets one,
 * and one that did not move is only locked. */
static const char *const sql_map =
    "with x as (select x.* from unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[])"
    " as x(id, acc, key, lvl) cross join lateral (select 1 from public.opportunities o"
    "  where o.id = x.id and o.org_id = $1::uuid offset 0) d),"
    " moved as (update public.opportunity_benchmarks ob set org_id = $1::uuid, account_id = x.acc,"
    "  cohort_key = x.key, match_level = x.lvl, updated_at = now() from x where ob.opportunity_id = x.id"
    "  and (ob.org_id, ob.account_id, ob.cohort_key, ob.match_level) is distinct from"
    "  ($1::uuid, x.acc, x.key, x.lvl) returning ob.opportunity_id)"
    " insert into public.opportunity_benchmarks as ob (org_id, opportunity_id, account_id,"
    " cohort_key, match_level)"
    " select $1::uuid, x.id, x.acc, x.key, x.lvl from x"
    " where not exists (select from moved m where m.opportunity_id = x.id)"
    " on conflict (opportunity_id) do update set org_id = excluded.org_id,"
    "  account_id = excluded.account_id, cohort_key = excluded.cohort_key,"
    "  match_level = excluded.match_level, updated_at = now()"
    " where (ob.org_id, ob.account_id, ob.cohort_key, ob.match_level) is distinct from"
    "  (excluded.org_id, excluded.account_id, excluded.cohort_key, excluded.match_level)";

static const char *const sql_unmap = "delete from public.opportunity_benchmarks where org_id = $1::uuid"
                                     " and opportunity_id = any($2::uuid[])";

static const char *const sql_drop_row =
    "delete from public.benchmarks_cached where org_id = $1::uuid and cohort_key = $2::text";

static const char *const sql_sweep =
    "select o.id::text, o.org_id::text,"
    " (o.outcome = 'open' and not o.placeholder) <> (ob.opportunity_id is not null)"
    " from (select id, org_id, outcome, placeholder from public.opportunities"
    "  where id > $1::uuid order by id limit $2::int) o"
    " left join public.opportunity_benchmarks ob on ob.opportunity_id = o.id"
    " order by o.id";

/* ---- the engine ------------------------------------------------------------ */

#define SETTLED_MAX ((size_t)1 << 19) /* deals; 16 MB of slots at most */

struct cohort_engine_s {
    ds_pg_t *pg;
    cohort_settings_t defaults;
    cohort_metrics_t m;
    uint64_t registered[COHORT_LEVELS]; /* bit per null mask: statement registered */
    int64_t last_query_us;
    /* The transaction in progress. */
    char org[37];
    cohort_settings_t set;
    bool custom_plans; /* bench_custom_plans ran in this transaction */
    /* The transaction's writes whose results only count (bench_map,
     * bench_unmap): sent with its COMMIT, in one round trip; NULL for none.
     * Their counts go to tail_st. */
    ds_pg_batch_t *tail;
    cohort_stats_t *tail_st;
    /* Open, never reopened deals that a committed cohort_apply_changes left
     * mapped. */
    ds_uuidset_t settled;
};

typedef struct {
    char *id, *account_id;
    char *industry, *product, *region, *persona;
    char *mapped_key;
    /* The stored mapping's level and account, and whether it is of the
     * deal's org (bench_map rewrites it unless all match the walk's). */
    char *mapped_level, *mapped_account;
    bool mapped_same_org;
    bool open, placeholder, reopened, has_amount;
    bool activity_only; /* only interactions or transcripts changed */
    double amount;
} opp_t;

typedef struct {
    opp_t *v;
    size_t n, cap;
} oppv_t;

/* A cached row as stored. */
typedef struct {
    char *key;
    int level; /* -1 when the row carries no definition */
    char *industry, *product, *region, *persona;
    char *lo, *hi;
    int64_t won;     /* -1 when null */
    int months;      /* 0 when null */
    int64_t min_won; /* metrics.min_won, -1 when absent */
} row_t;

static void metric_add(ds_metric_t *m, double v) {
    if (m) ds_metric_add(m, v);
}

void cohort_metrics_register(ds_metrics_t *m, cohort_metrics_t *out) {
    out->computed = ds_metrics_counter(m, "benchmark_cohorts_computed_total",
                                       "Cohort queries run (aggregates computed and cached)", NULL);
    out->hits = ds_metrics_counter(m, "benchmark_cache_hits_total",
                                   "Cohort levels an opportunity walk found in benchmarks_cached", NULL);
    out->misses = ds_metrics_counter(m, "benchmark_cache_misses_total",
                                     "Cohort levels an opportunity walk had to compute", NULL);
    out->query_s = ds_metrics_histogram(m, "benchmark_query_seconds", "Time of one cohort query", NULL,
                                        ds_metrics_latency_buckets, ds_metrics_latency_nbuckets);
    out->mapped = ds_metrics_counter(m, "benchmark_mappings_written_total",
                                     "Opportunity to cohort mappings inserted or changed", NULL);
    out->refreshed = ds_metrics_counter(m, "benchmark_cohorts_refreshed_total",
                                        "Cached cohorts recomputed after a deal changed or by age", NULL);
    out->flips = ds_metrics_counter(m, "benchmark_sufficiency_changes_total",
                                    "Cached cohorts that crossed the minimum number of won deals", NULL);
    out->deleted = ds_metrics_counter(m, "benchmark_cohorts_dropped_total",
                                      "Cached cohorts dropped because no mapping can use them", NULL);
}

cohort_engine_t *cohort_engine_new(ds_pg_t *pg, const cohort_settings_t *defaults,
                                   const cohort_metrics_t *metrics) {
    cohort_engine_t *e = ds_calloc(1, sizeof *e);
    e->pg = pg;
    e->defaults = *defaults;
    if (metrics) e->m = *metrics;
    ds_pg_add_statement(pg, "bench_lock", sql_lock, 1);
    ds_pg_add_statement(pg, "bench_custom_plans", sql_custom_plans, 0);
    ds_pg_add_statement(pg, "bench_load", sql_load, 2);
    ds_pg_add_statement(pg, "bench_lookup", sql_lookup, 2);
    ds_pg_add_statement(pg, "bench_org_won", sql_org_won, 3);
    ds_pg_add_statement(pg, "bench_rows", sql_rows, 2);
    ds_pg_add_statement(pg, "bench_stale", sql_stale, 2);
    ds_pg_add_statement(pg, "bench_mapped_to", sql_mapped_to, 2);
    ds_pg_add_statement(pg, "bench_map", sql_map, 5);
    ds_pg_add_statement(pg, "bench_unmap", sql_unmap, 2);
    ds_pg_add_statement(pg, "bench_drop_row", sql_drop_row, 2);
    ds_pg_add_statement(pg, "bench_sweep", sql_sweep, 2);
    return e;
}

void cohort_engine_destroy(cohort_engine_t *e) {
    if (!e) return;
    ds_uuidset_clear(&e->settled);
    free(e);
}

void cohort_engine_forget(cohort_engine_t *e) { ds_uuidset_clear(&e->settled); }

size_t cohort_engine_settled(const cohort_engine_t *e) { return e->settled.n; }

int64_t cohort_engine_last_query_us(const cohort_engine_t *e) { return e->last_query_us; }

static int run(cohort_engine_t *e, const char *name, int n, const char *const *vals, PGresult **res,
               char *err, size_t esz) {
    return ds_pg_exec_prepared(e->pg, name, n, vals, NULL, NULL, res, err, esz);
}

static char *dup_or_null(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? NULL : ds_strdup(PQgetvalue(r, row, col));
}

static void opp_free(opp_t *o) {
    free(o->id);
    free(o->account_id);
    free(o->industry);
    free(o->product);
    free(o->region);
    free(o->persona);
    free(o->mapped_key);
    free(o->mapped_level);
    free(o->mapped_account);
}

static void oppv_free(oppv_t *v) {
    for (size_t i = 0; i < v->n; i++) opp_free(&v->v[i]);
    free(v->v);
    memset(v, 0, sizeof *v);
}

static void row_free(row_t *r) {
    free(r->key);
    free(r->industry);
    free(r->product);
    free(r->region);
    free(r->persona);
    free(r->lo);
    free(r->hi);
}

static cohort_attrs_t opp_attrs(const opp_t *o) {
    cohort_attrs_t a = {o->industry, o->product, o->region, o->persona, o->has_amount, o->amount};
    return a;
}

static cohort_attrs_t row_attrs(const row_t *r) {
    cohort_attrs_t a = {r->industry, r->product, r->region, r->persona, false, 0};
    return a;
}

/* The band a row was computed for, rebuilt from its stored edges. */
static void row_band(const row_t *r, cohort_band_t *b) {
    if (!r->hi || strcmp(r->hi, "Infinity") == 0) {
        band_any(b);
        return;
    }
    b->cell = 0;
    snprintf(b->lo, sizeof b->lo, "%s", r->lo ? r->lo : "0");
    snprintf(b->hi, sizeof b->hi, "%s", r->hi);
    snprintf(b->label, sizeof b->label, "[%s,%s)", b->lo, b->hi);
}

/* True when the row's band is a cell of the org's current grid. */
static bool row_band_current(const cohort_engine_t *e, const row_t *r) {
    if (!r->hi || strcmp(r->hi, "Infinity") == 0) return true;
    double lo = strtod(r->lo ? r->lo : "0", NULL), b = e->set.band, g = grid_ratio(&e->set);
    cohort_band_t cb;
    if (lo <= 0) {
        band_cell(&e->set, -1, &cb);
    } else {
        double k = log(lo / (1.0 - b)) / log(g);
        band_cell(&e->set, (int64_t)llround(k), &cb);
    }
    return strcmp(cb.lo, r->lo ? r->lo : "") == 0 && strcmp(cb.hi, r->hi) == 0;
}

static void parse_rows(const PGresult *res, int col0, row_t **out, size_t *n) {
    int nr = PQntuples(res);
    row_t *rows = ds_calloc(nr ? (size_t)nr : 1, sizeof *rows);
    for (int i = 0; i < nr; i++) {
        row_t *r = &rows[i];
        r->key = ds_strdup(PQgetvalue(res, i, col0));
        r->level = PQgetisnull(res, i, col0 + 1) ? -1 : atoi(PQgetvalue(res, i, col0 + 1));
        r->industry = dup_or_null(res, i, col0 + 2);
        r->product = dup_or_null(res, i, col0 + 3);
        r->region = dup_or_null(res, i, col0 + 4);
        r->persona = dup_or_null(res, i, col0 + 5);
        r->lo = dup_or_null(res, i, col0 + 6);
        r->hi = dup_or_null(res, i, col0 + 7);
        r->won = PQgetisnull(res, i, col0 + 8) ? -1 : atoll(PQgetvalue(res, i, col0 + 8));
        r->months = PQgetisnull(res, i, col0 + 9) ? 0 : atoi(PQgetvalue(res, i, col0 + 9));
        r->min_won = PQgetisnull(res, i, col0 + 10) ? -1 : atoll(PQgetvalue(res, i, col0 + 10));
    }
    *out = rows;
    *n = (size_t)nr;
}

/* Appends the deals of a bench_load result to v. */
static void parse_opps(const PGresult *res, oppv_t *v) {
    int nr = PQntuples(res);
    for (int i = 0; i < nr; i++) {
        if (v->n == v->cap) {
            v->cap = v->cap ? v->cap * 2 : 16;
            v->v = ds_realloc(v->v, v->cap * sizeof *v->v);
        }
        opp_t *o = &v->v[v->n++];
        memset(o, 0, sizeof *o);
        o->id = ds_strdup(PQgetvalue(res, i, 0));
        o->account_id = dup_or_null(res, i, 1);
        o->open = strcmp(PQgetvalue(res, i, 2), "open") == 0;
        o->placeholder = PQgetvalue(res, i, 3)[0] == 't';
        o->industry = dup_or_null(res, i, 4);
        o->product = dup_or_null(res, i, 5);
        o->region = dup_or_null(res, i, 6);
        o->persona = dup_or_null(res, i, 7);
        o->has_amount = !PQgetisnull(res, i, 8);
        o->amount = o->has_amount ? strtod(PQgetvalue(res, i, 8), NULL) : 0;
        o->mapped_key = dup_or_null(res, i, 9);
        o->reopened = PQgetvalue(res, i, 10)[0] == 't';
        o->mapped_level = dup_or_null(res, i, 11);
        o->mapped_account = dup_or_null(res, i, 12);
        o->mapped_same_org = PQgetvalue(res, i, 13)[0] == 't';
    }
}

/* ---- transactions -------------------------------------------------------------- */

static void rollback(cohort_engine_t *e) {
    ds_pg_batch_end(e->tail);
    e->tail = NULL;
    if (!ds_pg_is_connected(e->pg)) return;
    char err[128];
    if (ds_pg_exec(e->pg, "ROLLBACK", NULL, err, sizeof err) != 0) ds_pg_reset(e->pg);
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The results begin_org reads: the lock's row (the settings) and the
 * loaded deals. */
typedef enum { BEGIN_LOCK = 1, BEGIN_LOAD } begin_tag_t;
typedef struct {
    cohort_engine_t *e;
    bool *found;
    oppv_t *v;
} begin_ctx_t;

static int on_begin_result(void *ud, void *tag, const PGresult *res, int err) {
    begin_ctx_t *c = ud;
    cohort_settings_t *set = &c->e->set;
    if (err != 0) return 0; /* the run fails with it */
    if ((intptr_t)tag == BEGIN_LOAD) {
        parse_opps(res, c->v);
    } else if ((intptr_t)tag == BEGIN_LOCK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 5)) {
        *c->found = true;
        if (!PQgetisnull(res, 0, 2)) set->months = (int)clampd(floor(atof(PQgetvalue(res, 0, 2))), 1, 120);
        if (!PQgetisnull(res, 0, 3))
            set->min_won = (int)clampd(floor(atof(PQgetvalue(res, 0, 3))), 1, 1000000);
        if (!PQgetisnull(res, 0, 4)) set->band = clampd(atof(PQgetvalue(res, 0, 4)), 0.01, 0.9);
    }
    return 0;
}

/* BEGIN, the org lock and its settings (one statement) and, when n > 0,
 * the deals ids (bench_load, appended to v) in one round trip: they run one
 * after the other, so the load reads what the lock holder before us
 * committed. *found is false for an unknown org (the transaction is open
 * either way, unless a statement failed). */
static int begin_org(cohort_engine_t *e, const char *org_id, const char *const *ids, size_t n, oppv_t *v,
                     bool *found, char *err, size_t esz) {
    snprintf(e->org, sizeof e->org, "%s", org_id);
    e->custom_plans = false;
    e->set = e->defaults;
    *found = false;
    const char *vals[] = {org_id, NULL};
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(e->pg, &b);
    ds_pg_batch_add_sql(b, "BEGIN", NULL);
    ds_pg_batch_add_prepared(b, "bench_lock", 1, vals, NULL, NULL, (void *)(intptr_t)BEGIN_LOCK);
    if (n > 0) {
        char *arr = ds_pg_array_text(ids, n);
        vals[1] = arr;
        ds_pg_batch_add_prepared(b, "bench_load", 2, vals, NULL, NULL, (void *)(intptr_t)BEGIN_LOAD);
        free(arr); /* copied by the batch */
    }
    begin_ctx_t ctx = {e, found, v};
    int rc = ds_pg_batch_run(b, on_begin_result, &ctx, err, esz);
    ds_pg_batch_end(b);
    return rc;
}

/* Queues a write of the transaction, sent with its COMMIT; its row count
 * is added to *count (st->mapped or st->unmapped). */
static void queue_tail(cohort_engine_t *e, const char *name, int n, const char *const *vals,
                       cohort_stats_t *st, size_t *count) {
    if (!e->tail) ds_pg_batch_begin(e->pg, &e->tail);
    e->tail_st = st;
    ds_pg_batch_add_prepared(e->tail, name, n, vals, NULL, NULL, count);
}

static int on_tail_result(void *ud, void *tag, const PGresult *res, int err) {
    cohort_engine_t *e = ud;
    if (err != 0 || !tag) return 0;
    size_t rows = (size_t)atoll(PQcmdTuples((PGresult *)res));
    *(size_t *)tag += rows;
    if (tag == &e->tail_st->mapped) metric_add(e->m.mapped, (double)rows);
    return 0;
}

/* COMMIT, after the queued writes (queue_tail), in one round trip. */
static int commit(cohort_engine_t *e, char *err, size_t esz) {
    if (!e->tail) return ds_pg_exec(e->pg, "COMMIT", NULL, err, esz);
    ds_pg_batch_t *b = e->tail;
    e->tail = NULL;
    ds_pg_batch_add_sql(b, "COMMIT", NULL);
    int rc = ds_pg_batch_run(b, on_tail_result, e, err, esz);
    ds_pg_batch_end(b);
    return rc;
}

/* Switches the transaction to custom plans, once. */
static int use_custom_plans(cohort_engine_t *e, char *err, size_t esz) {
    if (e->custom_plans) return 0;
    int rc = run(e, "bench_custom_plans", 0, NULL, NULL, err, esz);
    if (rc == 0) e->custom_plans = true;
    return rc;
}

/* Runs the cohort query. *prev is the won count before (-1 for a new row). */
static int compute(cohort_engine_t *e, const cohort_attrs_t *a, cohort_level_t level,
                   const cohort_band_t *band, const char *key, int64_t *won, int64_t *closed, int64_t *prev,
                   char *err, size_t esz) {
    const char *ind = a->industry;
    const char *prod = level <= COHORT_INDUSTRY_PRODUCT ? a->product : NULL;
    const char *reg = level <= COHORT_INDUSTRY_PRODUCT_REGION ? a->region : NULL;
    const char *per = level == COHORT_FULL ? a->persona : NULL;
    unsigned mask = (ind ? 0u : 1u) | (level <= COHORT_INDUSTRY_PRODUCT && !prod ? 2u : 0u) |
                    (level <= COHORT_INDUSTRY_PRODUCT_REGION && !reg ? 4u : 0u) |
                    (level == COHORT_FULL && !per ? 8u : 0u);
    char name[32];
    snprintf(name, sizeof name, "bench_cohort_%d_%u", (int)level, mask);
    if (!(e->registered[level] & (1ull << mask))) {
        char *sql = cohort_query_sql(level, mask);
        ds_pg_add_statement(e->pg, name, sql, 13);
        free(sql);
        e->registered[level] |= 1ull << mask;
    }
    char lvl[8], months[16], minw[24];
    snprintf(lvl, sizeof lvl, "%d", (int)level);
    snprintf(months, sizeof months, "%d", e->set.months);
    snprintf(minw, sizeof minw, "%d", e->set.min_won);
    const char *v[13] = {e->org,
                         key,
                         lvl,
                         ind,
                         prod,
                         reg,
                         per,
                         band->lo,
                         band->hi,
                         months,
                         level_names[level],
                         level_matched[level],
                         minw};
    int rc = use_custom_plans(e, err, esz);
    if (rc != 0) return rc;
    PGresult *res = NULL;
    int64_t t0 = ds_mono_us();
    rc = run(e, name, 13, v, &res, err, esz);
    e->last_query_us = ds_mono_us() - t0;
    if (e->m.query_s) ds_metric_observe(e->m.query_s, (double)e->last_query_us / 1e6);
    if (rc != 0) return rc;
    metric_add(e->m.computed, 1);
    if (won) *won = atoll(PQgetvalue(res, 0, 0));
    if (closed) *closed = atoll(PQgetvalue(res, 0, 1));
    if (prev) *prev = PQgetisnull(res, 0, 2) ? -1 : atoll(PQgetvalue(res, 0, 2));
    PQclear(res);
    return 0;
}

/* Loads opportunities of the org by id into v (appending). */
static int load_opps(cohort_engine_t *e, const char *const *ids, size_t n, oppv_t *v, char *err, size_t esz) {
    if (n == 0) return 0;
    char *arr = ds_pg_array_text(ids, n);
    const char *vals[] = {e->org, arr};
    PGresult *res = NULL;
    int rc = run(e, "bench_load", 2, vals, &res, err, esz);
    free(arr);
    if (rc != 0) return rc;
    parse_opps(res, v);
    PQclear(res);
    return 0;
}

static bool oppv_has(const oppv_t *v, const char *id) {
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->v[i].id, id) == 0) return true;
    return false;
}

/* Recomputes the given rows (which must carry a definition). Keys of rows
 * whose sufficiency changed are added to flipped. */
static int recompute_rows(cohort_engine_t *e, row_t *rows, size_t n, strv_t *flipped, cohort_stats_t *st,
                          char *err, size_t esz) {
    for (size_t i = 0; i < n; i++) {
        row_t *r = &rows[i];
        if (r->level < 0 || r->level >= COHORT_LEVELS) continue; /* not ours: no definition */
        cohort_attrs_t a = row_attrs(r);
        cohort_band_t band;
        row_band(r, &band);
        int64_t won = 0, prev = -1;
        int rc = compute(e, &a, (cohort_level_t)r->level, &band, r->key, &won, NULL, &prev, err, esz);
        if (rc != 0) return rc;
        st->computed++;
        st->refreshed++;
        metric_add(e->m.refreshed, 1);
        int64_t before = prev >= 0 ? prev : r->won;
        bool flip = (before >= e->set.min_won) != (won >= e->set.min_won) ||
                    (r->min_won >= 0 && r->min_won != e->set.min_won);
        if (flip) {
            st->flips++;
            metric_add(e->m.flips, 1);
            strv_push(flipped, ds_strdup(r->key));
        }
    }
    return 0;
}

/* Keys of the row's cohort at its level and every coarser level (same band):
 * the mappings that may have walked through it end at one of these. */
static void row_projections(const cohort_engine_t *e, const row_t *r, strv_t *out) {
    if (r->level < 0) {
        strv_push(out, ds_strdup(r->key));
        return;
    }
    cohort_attrs_t a = row_attrs(r);
    cohort_band_t band;
    row_band(r, &band);
    for (int l = r->level; l < COHORT_LEVELS; l++)
        strv_push(out, cohort_key(&a, (cohort_level_t)l, &band, r->months > 0 ? r->months : e->set.months));
}

/* An open deal is walked unless only its activity changed and it is mapped
 * already (its attributes, and so its cohort, are what they were). */
static bool needs_walk(const opp_t *o) {
    return o->open && !o->placeholder && !(o->activity_only && o->mapped_key && !o->reopened);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The won count of one level of a walk: the batch's cached rows, else the
 * cohort query (whose row is cached then). */
static int level_won(cohort_engine_t *e, kmap_t *cache, const cohort_attrs_t *a, cohort_level_t level,
                     const cohort_band_t *band, const char *key, int64_t *w, cohort_stats_t *st, char *err,
                     size_t esz) {
    int64_t *won = kmap_find(cache, key);
    if (won) {
        *w = *won;
        st->hits++;
        metric_add(e->m.hits, 1);
        return 0;
    }
    int rc = compute(e, a, level, band, key, w, NULL, NULL, err, esz);
    if (rc != 0) return rc;
    kmap_put(cache, key, *w);
    st->computed++;
    st->misses++;
    metric_add(e->m.misses, 1);
    return 0;
}

/* Walks each open opportunity of v through the levels (cached rows first,
 * computing the missing ones) and writes the mappings that changed. */
/* The cached won counts of the keys (what bench_lookup finds) into cache. */
static int lookup_cached(cohort_engine_t *e, char **keys, size_t n, kmap_t *cache, char *err, size_t esz) {
    char *arr = ds_pg_array_text((const char *const *)keys, n);
    const char *vals[] = {e->org, arr};
    PGresult *res = NULL;
    int rc = run(e, "bench_lookup", 2, vals, &res, err, esz);
    free(arr);
    if (rc != 0) return rc;
    for (int i = 0; i < PQntuples(res); i++)
        kmap_put(cache, PQgetvalue(res, i, 0), atoll(PQgetvalue(res, i, 1)));
    PQclear(res);
    return 0;
}

/* Chooses the level of o's cohort (keys: its key per level) and sets *level.
 * *org_won is the org's won deals in the window, counted once when first
 * needed (-1 before). */
static int choose_level(cohort_engine_t *e, kmap_t *cache, const opp_t *o, char **keys, int64_t *org_won,
                        cohort_stats_t *st, int *level, char *err, size_t esz) {
    cohort_attrs_t a = opp_attrs(o);
    cohort_band_t band;
    cohort_band_of(&e->set, o->has_amount, o->amount, &band);
    /* Every narrower cohort is a subset of the widest one (the same window
     * and band, more attributes matched), and every cohort a subset of the
     * org's won deals in the window. So when the widest is cached and has
     * too few won deals, or the whole org has, none has enough: map to the
     * widest without computing the others (a young org: one cohort query
     * per band instead of four, and after the first deal of a band none).
     * Otherwise walk from the most specific level. */
    int64_t *widest = kmap_find(cache, keys[COHORT_INDUSTRY]);
    int rc = 0;
    if (!widest && *org_won < 0) {
        char mo[16], lim[24];
        snprintf(mo, sizeof mo, "%d", e->set.months);
        snprintf(lim, sizeof lim, "%d", e->set.min_won);
        const char *ov[] = {e->org, mo, lim};
        PGresult *r = NULL;
        rc = use_custom_plans(e, err, esz);
        if (rc == 0) rc = run(e, "bench_org_won", 3, ov, &r, err, esz);
        if (rc != 0) return rc;
        *org_won = atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    int l = COHORT_INDUSTRY;
    int64_t w = 0;
    if (widest && *widest < e->set.min_won) {
        st->hits++;
        metric_add(e->m.hits, 1);
    } else if (!widest && *org_won < e->set.min_won) {
        rc = level_won(e, cache, &a, COHORT_INDUSTRY, &band, keys[COHORT_INDUSTRY], &w, st, err, esz);
    } else {
        for (l = 0; l < COHORT_LEVELS; l++) {
            rc = level_won(e, cache, &a, (cohort_level_t)l, &band, keys[l], &w, st, err, esz);
            if (rc != 0 || w >= e->set.min_won) break;
        }
        if (l == COHORT_LEVELS) l = COHORT_INDUSTRY; /* nothing sufficient: the widest */
    }
    *level = l;
    return rc;
}

static bool same_or_null(const char *a, const char *b) { return a && b ? strcmp(a, b) == 0 : a == b; }

/* Whether o's stored mapping is the one its walk chose: bench_map would
 * change nothing, but lock the row and write WAL for the lock. */
static bool mapping_unchanged(const opp_t *o, const char *key, const char *level) {
    return o->mapped_key && o->mapped_same_org && strcmp(o->mapped_key, key) == 0 &&
           same_or_null(o->mapped_level, level) && same_or_null(o->mapped_account, o->account_id);
}

/* Queues the n mappings (bench_map) for the COMMIT, which counts those
 * that changed: nothing the transaction does after the walk reads them. */
static void write_mappings(cohort_engine_t *e, const char **ids, const char **accs, const char **chosen,
                           const char **lvls, size_t n, cohort_stats_t *st) {
    char *a_ids = ds_pg_array_text(ids, n), *a_acc = ds_pg_array_text(accs, n);
    char *a_key = ds_pg_array_text(chosen, n), *a_lvl = ds_pg_array_text(lvls, n);
    const char *mv[] = {e->org, a_ids, a_acc, a_key, a_lvl};
    queue_tail(e, "bench_map", 5, mv, st, &st->mapped);
    free(a_ids);
    free(a_acc);
    free(a_key);
    free(a_lvl);
}

static int walk_and_map(cohort_engine_t *e, oppv_t *v, cohort_stats_t *st, char *err, size_t esz) {
    size_t nopen = 0;
    for (size_t i = 0; i < v->n; i++) nopen += needs_walk(&v->v[i]);
    if (nopen == 0) return 0;
    /* Every level's key of every deal to walk. */
    char **keys = ds_calloc(nopen * COHORT_LEVELS, sizeof *keys);
    opp_t **opps = ds_calloc(nopen, sizeof *opps);
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++) {
        opp_t *o = &v->v[i];
        if (!needs_walk(o)) continue;
        cohort_attrs_t a = opp_attrs(o);
        cohort_band_t band;
        cohort_band_of(&e->set, o->has_amount, o->amount, &band);
        for (int l = 0; l < COHORT_LEVELS; l++)
            keys[k * COHORT_LEVELS + (size_t)l] = cohort_key(&a, (cohort_level_t)l, &band, e->set.months);
        opps[k++] = o;
    }
    kmap_t cache = {0};
    int rc = lookup_cached(e, keys, nopen * COHORT_LEVELS, &cache, err, esz);
    int64_t org_won = -1; /* not counted yet */
    const char **ids = ds_calloc(nopen, sizeof *ids);
    const char **accs = ds_calloc(nopen, sizeof *accs);
    const char **chosen = ds_calloc(nopen, sizeof *chosen);
    const char **lvls = ds_calloc(nopen, sizeof *lvls);
    size_t nmap = 0;
    for (size_t j = 0; j < nopen && rc == 0; j++) {
        int l;
        rc = choose_level(e, &cache, opps[j], &keys[j * COHORT_LEVELS], &org_won, st, &l, err, esz);
        if (rc != 0) break;
        const char *key = keys[j * COHORT_LEVELS + (size_t)l];
        if (mapping_unchanged(opps[j], key, level_names[l])) continue;
        ids[nmap] = opps[j]->id;
        accs[nmap] = opps[j]->account_id;
        chosen[nmap] = key;
        lvls[nmap++] = level_names[l];
    }
    if (rc == 0 && nmap) write_mappings(e, ids, accs, chosen, lvls, nmap, st);
    free(ids);
    free(accs);
    free(chosen);
    free(lvls);
    for (size_t i = 0; i < nopen * COHORT_LEVELS; i++) free(keys[i]);
    free(keys);
    free(opps);
    kmap_free(&cache);
    return rc;
}

/* Adds to v the open opportunities mapped to a projection of a flipped row,
 * so their walk is redone. */
static int add_affected(cohort_engine_t *e, const strv_t *flipped, oppv_t *v, char *err, size_t esz) {
    if (flipped->n == 0) return 0;
    /* The rows as stored now (after the recomputation) give the projections. */
    char *arr = ds_pg_array_text((const char *const *)flipped->v, flipped->n);
    const char *vals[] = {e->org, arr};
    PGresult *res = NULL;
    int rc = run(e, "bench_rows", 2, vals, &res, err, esz);
    free(arr);
    if (rc != 0) return rc;
    row_t *rows = NULL;
    size_t nrows = 0;
    parse_rows(res, 0, &rows, &nrows);
    PQclear(res);
    strv_t proj = {0};
    for (size_t i = 0; i < nrows; i++) row_projections(e, &rows[i], &proj);
    /* Keys of flipped rows already dropped still name their mappings. */
    for (size_t i = 0; i < flipped->n; i++) strv_push(&proj, ds_strdup(flipped->v[i]));
    for (size_t i = 0; i < nrows; i++) row_free(&rows[i]);
    free(rows);
    arr = ds_pg_array_text((const char *const *)proj.v, proj.n);
    const char *mv[] = {e->org, arr};
    rc = run(e, "bench_mapped_to", 2, mv, &res, err, esz);
    free(arr);
    strv_free(&proj);
    if (rc != 0) return rc;
    strv_t ids = {0};
    for (int i = 0; i < PQntuples(res); i++)
        if (!oppv_has(v, PQgetvalue(res, i, 0))) strv_push(&ids, ds_strdup(PQgetvalue(res, i, 0)));
    PQclear(res);
    rc = load_opps(e, (const char *const *)ids.v, ids.n, v, err, esz);
    strv_free(&ids);
    return rc;
}

/* The work of cohort_apply inside its transaction, on the deals of ids that
 * begin_org loaded into v (the walk may add deals to it). With
 * activity_only, the open, never reopened deals of the batch (mapped once
 * this commits) go to *settling. */
static int apply_locked(cohort_engine_t *e, oppv_t *vp, const char *const *ids, const bool *activity_only,
                        size_t n, strv_t *settling, cohort_stats_t *st, char *err, size_t esz) {
    oppv_t v = *vp;
    strv_t containing = {0}, flipped = {0}, unmap = {0};
    row_t *rows = NULL;
    size_t nrows = 0;
    int rc = 0;
    st->skipped += n - v.n;
    size_t nbatch = v.n;
    if (activity_only) {
        /* The ids whose changes were activity only, sorted, to mark the
         * loaded deals. */
        const char **act = ds_calloc(n ? n : 1, sizeof *act);
        size_t na = 0;
        for (size_t i = 0; i < n; i++)
            if (activity_only[i]) act[na++] = ids[i];
        qsort(act, na, sizeof *act, cmp_str);
        for (size_t i = 0; i < nbatch; i++) {
            const char *id = v.v[i].id;
            v.v[i].activity_only = na && bsearch(&id, act, na, sizeof *act, cmp_str) != NULL;
            if (v.v[i].open && !v.v[i].placeholder && !needs_walk(&v.v[i])) st->activity++;
            /* Open and never reopened: mapped once this commits (the walk
             * maps every open deal it sees). */
            if (v.v[i].open && !v.v[i].placeholder && !v.v[i].reopened) strv_push(settling, ds_strdup(id));
        }
        free(act);
    }

    /* Cached cohorts that may hold a deal of the batch: it is closed, or was
     * closed before. A deal is in a cohort when its attributes match at the
     * cohort's level and its amount is in the cohort's band. */
    for (size_t i = 0; i < nbatch; i++) {
        opp_t *o = &v.v[i];
        if (o->placeholder) continue;
        if (!o->open || o->reopened) {
            cohort_attrs_t a = opp_attrs(o);
            cohort_band_t bands[24];
            size_t nb = o->has_amount ? cohort_bands_containing(&e->set, o->amount, bands, 24) : 0;
            if (!o->has_amount) band_any(&bands[nb++]);
            for (size_t b = 0; b < nb; b++)
                for (int l = 0; l < COHORT_LEVELS; l++)
                    strv_push(&containing, cohort_key(&a, (cohort_level_t)l, &bands[b], e->set.months));
        }
        if ((!o->open || o->placeholder) && o->mapped_key) strv_push(&unmap, ds_strdup(o->id));
    }
    if (containing.n) {
        char *arr = ds_pg_array_text((const char *const *)containing.v, containing.n);
        const char *vals[] = {e->org, arr};
        PGresult *res = NULL;
        rc = run(e, "bench_rows", 2, vals, &res, err, esz);
        free(arr);
        if (rc != 0) goto out;
        parse_rows(res, 0, &rows, &nrows);
        PQclear(res);
        rc = recompute_rows(e, rows, nrows, &flipped, st, err, esz);
        if (rc != 0) goto out;
    }
    rc = add_affected(e, &flipped, &v, err, esz);
    if (rc != 0) goto out;
    rc = walk_and_map(e, &v, st, err, esz);
    if (rc != 0) goto out;
    if (unmap.n) {
        /* With the COMMIT: nothing after it reads the mappings. */
        char *arr = ds_pg_array_text((const char *const *)unmap.v, unmap.n);
        const char *vals[] = {e->org, arr};
        queue_tail(e, "bench_unmap", 2, vals, st, &st->unmapped);
        free(arr);
    }
out:
    for (size_t i = 0; i < nrows; i++) row_free(&rows[i]);
    free(rows);
    strv_free(&containing);
    strv_free(&flipped);
    strv_free(&unmap);
    *vp = v;
    return rc;
}

int cohort_apply(cohort_engine_t *e, const char *org_id, const char *const *ids, size_t n,
                 cohort_stats_t *stats, char *errstr, size_t errstr_size) {
    return cohort_apply_changes(e, org_id, ids, NULL, n, stats, errstr, errstr_size);
}

int cohort_apply_changes(cohort_engine_t *e, const char *org_id, const char *const *ids,
                         const bool *activity_only, size_t n, cohort_stats_t *stats, char *errstr,
                         size_t errstr_size) {
    cohort_stats_t local = {0};
    cohort_stats_t *st = stats ? stats : &local;
    /* Activity of a settled deal: nothing can have moved it or its cohorts
     * (it is open, so no cached cohort counts it), so no transaction at all.
     * Every other id leaves the settled set until its transaction commits. */
    const char **rest = NULL;
    bool *rest_act = NULL;
    if (activity_only) {
        rest = ds_calloc(n ? n : 1, sizeof *rest);
        rest_act = ds_calloc(n ? n : 1, sizeof *rest_act);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (activity_only[i] && ds_uuidset_has(&e->settled, ids[i])) {
                st->settled++;
                continue;
            }
            ds_uuidset_remove(&e->settled, ids[i]);
            rest[k] = ids[i];
            rest_act[k++] = activity_only[i];
        }
        ids = rest;
        activity_only = rest_act;
        n = k;
    }
    strv_t settling = {0};
    int rc = 0;
    if (n > 0) {
        bool found = false;
        oppv_t v = {0};
        rc = begin_org(e, org_id, ids, n, &v, &found, errstr, errstr_size);
        if (rc == 0) {
            if (found)
                rc = apply_locked(e, &v, ids, activity_only, n, &settling, st, errstr, errstr_size);
            else
                st->skipped += n;
        }
        oppv_free(&v);
        if (rc == 0) rc = commit(e, errstr, errstr_size);
        if (rc != 0) rollback(e);
        if (rc == 0)
            for (size_t i = 0; i < settling.n; i++) {
                /* Bounded memory: when full, start over (the next changes take the long way). */
                if (e->settled.n >= SETTLED_MAX) ds_uuidset_clear(&e->settled);
                ds_uuidset_add(&e->settled, settling.v[i]);
            }
    }
    strv_free(&settling);
    free(rest);
    free(rest_act);
    return rc;
}

/* Refreshes the stale rows of one org (rows[0..n) all of e->org). */
static int refresh_org_locked(cohort_engine_t *e, row_t *rows, size_t n, cohort_stats_t *st, char *err,
                              size_t esz) {
    strv_t flipped = {0};
    oppv_t v = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        row_t *r = &rows[i];
        bool current = r->level >= 0 && r->months == e->set.months && row_band_current(e, r);
        bool used = false;
        if (current) {
            strv_t proj = {0};
            row_projections(e, r, &proj);
            char *arr = ds_pg_array_text((const char *const *)proj.v, proj.n);
            const char *vals[] = {e->org, arr};
            PGresult *res = NULL;
            rc = run(e, "bench_mapped_to", 2, vals, &res, err, esz);
            free(arr);
            strv_free(&proj);
            if (rc != 0) break;
            used = PQntuples(res) > 0;
            PQclear(res);
        }
        if (current && used) {
            rc = recompute_rows(e, r, 1, &flipped, st, err, esz);
            continue;
        }
        /* A row of older settings or that no mapping can reach: drop it;
         * opportunities still mapped to it (older settings) walk again. */
        const char *vals[] = {e->org, r->key};
        rc = run(e, "bench_drop_row", 2, vals, NULL, err, esz);
        if (rc != 0) break;
        st->deleted++;
        metric_add(e->m.deleted, 1);
        if (!current) strv_push(&flipped, ds_strdup(r->key));
    }
    if (rc == 0) rc = add_affected(e, &flipped, &v, err, esz);
    if (rc == 0) rc = walk_and_map(e, &v, st, err, esz);
    strv_free(&flipped);
    oppv_free(&v);
    return rc;
}

static int cmp_org_rows(const void *a, const void *b) {
    const char *const *x = a, *const *y = b;
    return strcmp(*x, *y);
}

int cohort_refresh_stale(cohort_engine_t *e, int refresh_s, int limit, int *done, cohort_stats_t *stats,
                         char *errstr, size_t errstr_size) {
    cohort_stats_t local = {0};
    cohort_stats_t *st = stats ? stats : &local;
    *done = 0;
    char secs[16], lim[16];
    snprintf(secs, sizeof secs, "%d", refresh_s);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *vals[] = {secs, lim};
    PGresult *res = NULL;
    int rc = run(e, "bench_stale", 2, vals, &res, errstr, errstr_size);
    if (rc != 0) return rc;
    size_t n = 0;
    row_t *rows = NULL;
    parse_rows(res, 1, &rows, &n);
    /* Group by org: sort indexes by org id. */
    char **orgs = ds_calloc(n ? n : 1, sizeof *orgs);
    size_t *idx = ds_calloc(n ? n : 1, sizeof *idx);
    for (size_t i = 0; i < n; i++) orgs[i] = ds_strdup(PQgetvalue(res, (int)i, 0));
    PQclear(res);
    typedef struct {
        char *org;
        size_t i;
    } pair_t;
    pair_t *pairs = ds_calloc(n ? n : 1, sizeof *pairs);
    for (size_t i = 0; i < n; i++) pairs[i] = (pair_t){orgs[i], i};
    qsort(pairs, n, sizeof *pairs, cmp_org_rows);
    for (size_t i = 0; i < n; i++) idx[i] = pairs[i].i;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t j = i;
        while (j < n && strcmp(orgs[idx[j]], orgs[idx[i]]) == 0) j++;
        row_t *group = ds_calloc(j - i, sizeof *group);
        for (size_t k = i; k < j; k++) group[k - i] = rows[idx[k]];
        bool found = false;
        rc = begin_org(e, orgs[idx[i]], NULL, 0, NULL, &found, errstr, errstr_size);
        if (rc == 0) rc = refresh_org_locked(e, group, j - i, st, errstr, errstr_size);
        if (rc == 0) rc = commit(e, errstr, errstr_size);
        if (rc != 0) rollback(e);
        if (rc == 0) *done += (int)(j - i);
        free(group);
        i = j;
    }
    for (size_t i = 0; i < n; i++) {
        row_free(&rows[i]);
        free(orgs[i]);
    }
    free(rows);
    free(orgs);
    free(idx);
    free(pairs);
    return rc;
}

int cohort_sweep_step(cohort_engine_t *e, char cursor[37], int chunk, bool *finished, cohort_stats_t *stats,
                      char *errstr, size_t errstr_size) {
    char lim[16];
    snprintf(lim, sizeof lim, "%d", chunk);
    const char *vals[] = {cursor[0] ? cursor : "00000000-0000-0000-0000-000000000000", lim};
    PGresult *res = NULL;
    int rc = run(e, "bench_sweep", 2, vals, &res, errstr, errstr_size);
    if (rc != 0) return rc;
    int nr = PQntuples(res);
    *finished = nr < chunk;
    /* Opportunities that need work, grouped by org (rows come in id order). */
    typedef struct {
        const char *org, *id;
    } need_t;
    need_t *need = ds_calloc(nr ? (size_t)nr : 1, sizeof *need);
    size_t nn = 0;
    for (int i = 0; i < nr; i++)
        if (PQgetvalue(res, i, 2)[0] == 't')
            need[nn++] = (need_t){PQgetvalue(res, i, 1), PQgetvalue(res, i, 0)};
    const char **ids = ds_calloc(nn ? nn : 1, sizeof *ids);
    bool *taken = ds_calloc(nn ? nn : 1, sizeof *taken);
    for (size_t i = 0; i < nn && rc == 0; i++) {
        if (taken[i]) continue;
        size_t k = 0;
        for (size_t j = i; j < nn; j++)
            if (!taken[j] && strcmp(need[j].org, need[i].org) == 0) {
                ids[k++] = need[j].id;
                taken[j] = true;
            }
        rc = cohort_apply(e, need[i].org, ids, k, stats, errstr, errstr_size);
    }
    if (rc == 0) {
        if (*finished)
            cursor[0] = '\0';
        else
            snprintf(cursor, 37, "%s", PQgetvalue(res, nr - 1, 0));
    }
    free(ids);
    free(taken);
    free(need);
    PQclear(res);
    return rc;
}

int cohort_compute_one(cohort_engine_t *e, const char *org_id, const cohort_attrs_t *attrs,
                       cohort_level_t level, int64_t *won, int64_t *closed, char *errstr,
                       size_t errstr_size) {
    bool found = false;
    int rc = begin_org(e, org_id, NULL, 0, NULL, &found, errstr, errstr_size);
    if (rc == 0 && !found) {
        snprintf(errstr, errstr_size, "no org %s", org_id);
        rc = DS_EINVAL;
    }
    if (rc == 0) {
        cohort_band_t band;
        cohort_band_of(&e->set, attrs->has_amount, attrs->amount, &band);
        cohort_attrs_t a = *attrs;
        if (level > COHORT_FULL) a.persona = NULL;
        if (level > COHORT_INDUSTRY_PRODUCT_REGION) a.region = NULL;
        if (level > COHORT_INDUSTRY_PRODUCT) a.product = NULL;
        char *key = cohort_key(&a, level, &band, e->set.months);
        rc = compute(e, &a, level, &band, key, won, closed, NULL, errstr, errstr_size);
        free(key);
    }
    if (rc == 0) rc = commit(e, errstr, errstr_size);
    if (rc != 0) rollback(e);
    return rc;
}
