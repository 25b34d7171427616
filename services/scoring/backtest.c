/* The forecast backtest over point-in-time features. */
#include "backtest.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/sb.h"
#include "scoring.h"

#define BACKTEST_LOAD_BATCH 1000
/* The exact band's amount buckets: the month's amount / this. */
#define BACKTEST_BUCKETS 2000.0
/* Stages with their own in-month rate: indexes 0 .. this - 1. */
#define BACKTEST_RATE_STAGES 16
/* Close months 0 .. this - 1 months ahead of the month start have rates of
 * their own (DS_FORECAST_AHEAD: the view's months further out take the
 * last). */
#define BACKTEST_AHEAD DS_FORECAST_AHEAD

/* One deal in one month's forecast. */
typedef struct {
    size_t month; /* the month at whose start it was forecast */
    size_t ahead; /* its close month: month + ahead */
    double amount, p;
    float *x; /* the model's columns, or NULL */
    int stage;
    bool won_in_month, won_later;
} bt_row_t;

typedef struct {
    const backtest_model_t *m;
    int64_t *starts; /* month starts, and one past the last */
    size_t nm;
    size_t first; /* the first replayed month; those before feed the rates only */
    bt_row_t *rows;
    size_t nr, cap;
    size_t *cell; /* rows sorted by (month, ahead): cell k * BACKTEST_AHEAD + h starts at
                   * rows[cell[...]], ends at the next cell's start */
} bt_t;

static int64_t month_start(int64_t us, int add) {
    int64_t y;
    unsigned mo, d;
    ds_civil_from_days(us >= 0 ? us / DS_US_PER_DAY : -((-us + DS_US_PER_DAY - 1) / DS_US_PER_DAY), &y, &mo,
                       &d);
    int64_t m0 = y * 12 + (int64_t)mo - 1 + add;
    return ds_days_from_civil(m0 / 12, (unsigned)(m0 % 12) + 1, 1) * DS_US_PER_DAY;
}

/* The deals open at some month start of the range. */
static const char *sql_deals =
    "select id::text, outcome, coalesce((extract(epoch from closed_at) * 1000000)::bigint, 0)"
    " from public.opportunities where org_id = $1::uuid and not placeholder"
    " and created_at < to_timestamp($3::float8 / 1000000)"
    " and (closed_at is null or closed_at > to_timestamp($2::float8 / 1000000))"
    " order by id";

/* Adds the deal's rows: at each month start while it is open, when its
 * close date as known then falls in the month or one of the
 * BACKTEST_AHEAD - 1 after it within the range (an overdue close date is
 * no forecast). */
static void add_deal(bt_t *bt, ds_opp_raw_t *raw, const ds_org_ctx_t *oc, const char *outcome,
                     int64_t closed_us) {
    raw->stages = oc->stages;
    bool resolved = strcmp(outcome, "open") != 0, won = strcmp(outcome, "won") == 0;
    for (size_t k = 0; k < bt->nm; k++) {
        int64_t t = bt->starts[k];
        if (raw->created_at_us > t || (resolved && closed_us <= t)) continue;
        ds_feature_vec_t vec;
        if (ds_features_compute(raw, t, oc->winrate, oc->lexicon, &vec) != 0) continue;
        double dtc = vec.values[DS_F_DAYS_TO_CLOSE], al = vec.values[DS_F_AMOUNT_LOG];
        double close_at = (double)t + dtc * (double)DS_US_PER_DAY;
        size_t c = k;
        while (c < bt->nm && c < k + BACKTEST_AHEAD && close_at >= (double)bt->starts[c + 1]) c++;
        if (!isfinite(dtc) || !isfinite(al) || close_at < (double)t || c == bt->nm || c == k + BACKTEST_AHEAD)
            continue;
        int64_t begin = bt->starts[c], end = bt->starts[c + 1];
        if (bt->nr == bt->cap) {
            bt->cap = bt->cap ? bt->cap * 2 : 1024;
            bt->rows = ds_realloc(bt->rows, bt->cap * sizeof *bt->rows);
        }
        bt_row_t *r = &bt->rows[bt->nr++];
        memset(r, 0, sizeof *r);
        r->month = k;
        r->ahead = c - k;
        r->amount = expm1(al);
        r->won_in_month = won && closed_us >= begin && closed_us < end;
        r->won_later = won && closed_us >= end;
        double si = vec.values[DS_F_STAGE_INDEX];
        r->stage = isnan(si) ? -1 : (int)si;
        if (bt->m->model) {
            r->x = ds_malloc(bt->m->nf * sizeof *r->x);
            for (size_t j = 0; j < bt->m->nf; j++) r->x[j] = (float)vec.values[bt->m->cols[j]];
        }
    }
}

static int load_rows(bt_t *bt, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *oc, char *errstr,
                     size_t errsz) {
    char from[32], to[32];
    snprintf(from, sizeof from, "%lld", (long long)bt->starts[0]);
    snprintf(to, sizeof to, "%lld", (long long)bt->starts[bt->nm]);
    const char *v[] = {org_id, from, to};
    PGresult *r = NULL;
    int rc = ds_pg_exec_params(pg, sql_deals, 3, v, NULL, NULL, &r, errstr, errsz);
    size_t nd = rc == 0 ? (size_t)PQntuples(r) : 0;
    for (size_t b = 0; rc == 0 && b < nd; b += BACKTEST_LOAD_BATCH) {
        size_t m = nd - b < BACKTEST_LOAD_BATCH ? nd - b : BACKTEST_LOAD_BATCH;
        const char **ids = ds_calloc(m, sizeof *ids);
        for (size_t k = 0; k < m; k++) ids[k] = PQgetvalue(r, (int)(b + k), 0);
        ds_opp_batch_t *batch = NULL;
        rc = ds_opp_batch_load(pg, ids, m, &batch, errstr, errsz);
        for (size_t k = 0; rc == 0 && k < m; k++) {
            int bi = ds_opp_batch_find(batch, ids[k]);
            if (bi < 0) continue;
            add_deal(bt, ds_opp_batch_raw(batch, (size_t)bi), oc, PQgetvalue(r, (int)(b + k), 1),
                     strtoll(PQgetvalue(r, (int)(b + k), 2), NULL, 10));
        }
        ds_opp_batch_destroy(batch);
        free(ids);
    }
    PQclear(r);
    return rc;
}

/* Every row's probability, in one model call. */
static int score_rows(bt_t *bt, char *errstr, size_t errsz) {
    const backtest_model_t *m = bt->m;
    if (!m->model) {
        for (size_t i = 0; i < bt->nr; i++) {
            int stage = bt->rows[i].stage;
            ds_prior_input_t in = {stage < 0 ? NAN : stage, NAN, DS_OUTCOME_OPEN};
            ds_prior_score_t ps;
            ds_prior_score(&m->prior, &in, &ps);
            bt->rows[i].p = ps.p;
        }
        return DS_OK;
    }
    if (bt->nr == 0) return DS_OK;
    float *x = ds_malloc(bt->nr * m->nf * sizeof *x);
    double *margin = ds_malloc(bt->nr * sizeof *margin);
    for (size_t i = 0; i < bt->nr; i++) memcpy(x + i * m->nf, bt->rows[i].x, m->nf * sizeof *x);
    int rc = ds_model_predict_margin(m->model, x, bt->nr, margin, errstr, errsz);
    for (size_t i = 0; rc == 0 && i < bt->nr; i++) bt->rows[i].p = ds_calib_apply(m->calib, margin[i]);
    free(x);
    free(margin);
    return rc == 0 ? DS_OK : DS_EFATAL;
}

/* The in-month rates from the rows whose close month ended before month k
 * started, per months ahead: the org's (shrunk toward 1 at 0 months ahead,
 * toward the rate one month nearer after) and each stage's (toward the
 * org's). */
typedef struct {
    ds_forecast_tally_t stage[BACKTEST_AHEAD][BACKTEST_RATE_STAGES], org[BACKTEST_AHEAD];
    double stage_rate[BACKTEST_AHEAD][BACKTEST_RATE_STAGES], org_rate[BACKTEST_AHEAD];
} bt_rates_t;

static void rates_before(const bt_t *bt, size_t k, bt_rates_t *rt) {
    memset(rt, 0, sizeof *rt);
    for (size_t i = 0; i < bt->nr; i++) {
        const bt_row_t *r = &bt->rows[i];
        if (r->month + r->ahead >= k) continue;
        ds_forecast_tally_add(&rt->org[r->ahead], r->p, r->amount, r->won_in_month);
        if (r->stage >= 0 && r->stage < BACKTEST_RATE_STAGES)
            ds_forecast_tally_add(&rt->stage[r->ahead][r->stage], r->p, r->amount, r->won_in_month);
    }
    for (size_t h = 0; h < BACKTEST_AHEAD; h++) {
        rt->org_rate[h] = ds_forecast_rate(&rt->org[h], h ? rt->org_rate[h - 1] : 1);
        for (size_t s = 0; s < BACKTEST_RATE_STAGES; s++)
            rt->stage_rate[h][s] = ds_forecast_rate(&rt->stage[h][s], rt->org_rate[h]);
    }
}

static int row_order(const void *x, const void *y) {
    const bt_row_t *a = x, *b = y;
    size_t ka = a->month * BACKTEST_AHEAD + a->ahead, kb = b->month * BACKTEST_AHEAD + b->ahead;
    return ka < kb ? -1 : ka > kb;
}

/* Sorts the rows by (month, ahead) and indexes the cells. */
static void index_rows(bt_t *bt) {
    qsort(bt->rows, bt->nr, sizeof *bt->rows, row_order);
    size_t nc = bt->nm * BACKTEST_AHEAD;
    bt->cell = ds_malloc((nc + 1) * sizeof *bt->cell);
    for (size_t c = 0, i = 0; c <= nc; c++) {
        while (i < bt->nr && bt->rows[i].month * BACKTEST_AHEAD + bt->rows[i].ahead < c) i++;
        bt->cell[c] = i;
    }
}

/* The deals forecast at month k's start for h months ahead (from *n on):
 * q (with the rates of h), amounts, their group g, and what they won into
 * fm's actual and won_later; returns the new *n. q, a and g hold a row
 * each. */
static size_t cell_deals(const bt_t *bt, size_t k, size_t h, const bt_rates_t *rt, size_t g, size_t n,
                         double *q, double *a, size_t *group, ds_forecast_month_t *fm) {
    size_t c = k * BACKTEST_AHEAD + h;
    for (size_t i = bt->cell[c]; i < bt->cell[c + 1]; i++) {
        const bt_row_t *r = &bt->rows[i];
        bool own = r->stage >= 0 && r->stage < BACKTEST_RATE_STAGES;
        q[n] = ds_forecast_in_month(r->p, own ? rt->stage_rate[h][r->stage] : rt->org_rate[h]);
        a[n] = r->amount;
        group[n++] = g;
        if (r->won_in_month) fm->actual += r->amount;
        if (r->won_later) fm->won_later += r->amount;
    }
    return n;
}

/* The month-level variance at h months ahead of the forecasts whose close
 * month ended before month k started, under rt. */
static double shock_before(const bt_t *bt, size_t k, size_t h, const bt_rates_t *rt, double *q, double *a,
                           size_t *group) {
    double *e = ds_malloc((k + 1) * sizeof *e), *v = ds_malloc((k + 1) * sizeof *v),
           *won = ds_malloc((k + 1) * sizeof *won);
    size_t nm = 0;
    for (size_t j = 0; j + h < k; j++) {
        ds_forecast_month_t fm = {0};
        size_t n = cell_deals(bt, j, h, rt, 0, 0, q, a, group, &fm);
        if (n == 0) continue;
        ds_forecast_normal(q, a, n, 0, &fm.normal);
        e[nm] = fm.normal.expected;
        v[nm] = fm.normal.var;
        won[nm++] = fm.actual;
    }
    double shock = ds_forecast_shock_var(e, v, won, nm);
    free(e);
    free(v);
    free(won);
    return shock;
}

/* The forecasts made at month k's start, with the rates and the
 * month-level variances learnt before it: q, a and group hold a row each,
 * shock the variance per months ahead. */
typedef struct {
    bt_rates_t rt;
    double shock[BACKTEST_AHEAD];
    double *q, *a;
    size_t *group;
} bt_at_t;

static void at_month(const bt_t *bt, size_t k, bt_at_t *at) {
    rates_before(bt, k, &at->rt);
    for (size_t h = 0; h < BACKTEST_AHEAD; h++)
        at->shock[h] = shock_before(bt, k, h, &at->rt, at->q, at->a, at->group);
}

static void period_name(const bt_t *bt, size_t k, int horizon, char *name, size_t size) {
    int64_t y;
    unsigned mo, d;
    size_t c = horizon == DS_FORECAST_QUARTER ? k : k + (size_t)horizon;
    ds_civil_from_days(bt->starts[c] / DS_US_PER_DAY, &y, &mo, &d);
    if (horizon == DS_FORECAST_QUARTER)
        snprintf(name, size, "%04d-Q%u", (int)(y % 10000), (mo + 2) / 3 % 10);
    else
        snprintf(name, size, "%04d-%02u", (int)(y % 10000), mo % 100);
}

/* The forecast made at month k's start for horizon (a close month h
 * months ahead, or the quarter starting at k: its three months, each with
 * its own theta) into *fm; false when there is none: no deal, no past
 * forecast at that distance to learn the rates from, or k starts no
 * quarter whose three months are loaded. */
static bool forecast_period(const bt_t *bt, size_t k, int horizon, const bt_at_t *at,
                            ds_forecast_month_t *fm) {
    memset(fm, 0, sizeof *fm);
    fm->horizon = horizon;
    bool quarter = horizon == DS_FORECAST_QUARTER;
    size_t h0 = quarter ? 0 : (size_t)horizon, h1 = quarter ? 3 : h0 + 1, n = 0;
    if (quarter) {
        int64_t y;
        unsigned mo, d;
        ds_civil_from_days(bt->starts[k] / DS_US_PER_DAY, &y, &mo, &d);
        if (mo % 3 != 1 || k + 3 > bt->nm) return false;
    }
    for (size_t h = h0; h < h1; h++) {
        if (!(at->rt.org[h].deals > 0)) return false;
        n = cell_deals(bt, k, h, &at->rt, h - h0, n, at->q, at->a, at->group, fm);
    }
    fm->shock_var = at->shock[h0];
    size_t ng = h1 - h0;
    ds_forecast_normal_groups(at->q, at->a, at->group, n, at->shock + h0, ng, &fm->normal);
    if (n == 0 || !(fm->normal.amount > 0) ||
        ds_forecast_exact_groups(at->q, at->a, at->group, n, at->shock + h0, ng,
                                 fm->normal.amount / BACKTEST_BUCKETS, &fm->exact) != 0)
        return false;
    period_name(bt, k, horizon, fm->month, sizeof fm->month);
    fm->inside = fm->exact.p10 <= fm->actual && fm->actual <= fm->exact.p90;
    return true;
}

/* Stores the in-month rates and the month-level variance of every loaded
 * month into forecast_rates, which the view forecast applies: the org's
 * (stage '', with the variance) and each stage name of the org's list with
 * its index's rate. */
static const char *sql_store_rates =
    "with r as (select * from unnest($2::int[], $3::text[], $4::float8[], $5::float8[], $6::float8[],"
    "  $7::float8[]) as r(months_ahead, stage, deals, expected, won, rate)),"
    " up as (insert into public.forecast_rates (org_id, months_ahead, stage, deals, expected, won, rate,"
    "  shock_var) select $1::uuid, months_ahead, stage, deals, expected, won, rate,"
    "  case stage when '' then ($8::float8[])[months_ahead + 1] else 0 end from r"
    "  on conflict (org_id, months_ahead, stage) do update set deals = excluded.deals,"
    "  expected = excluded.expected, won = excluded.won, rate = excluded.rate,"
    "  shock_var = excluded.shock_var, updated_at = now() returning 1)"
    " delete from public.forecast_rates f where org_id = $1::uuid and not exists"
    "  (select 1 from r where r.months_ahead = f.months_ahead and r.stage = f.stage)";

static void rate_element(ds_sb_t *arr, size_t ahead, const char *name, const ds_forecast_tally_t *t,
                         double rate) {
    const char *sep = arr[0].len == 0 ? "{" : ",";
    ds_sb_printf(&arr[0], "%s%zu", sep, ahead);
    ds_sb_printf(&arr[1], "%s\"%s\"", sep, name);
    ds_sb_printf(&arr[2], "%s%.17g", sep, t->deals);
    ds_sb_printf(&arr[3], "%s%.17g", sep, t->expected);
    ds_sb_printf(&arr[4], "%s%.17g", sep, t->won);
    ds_sb_printf(&arr[5], "%s%.17g", sep, rate);
}

static int store_rates(const bt_t *bt, ds_pg_t *pg, const char *org_id, const ds_stage_list_t *stages,
                       char *errstr, size_t errsz) {
    bt_at_t at = {.q = ds_malloc((bt->nr + 1) * sizeof *at.q),
                  .a = ds_malloc((bt->nr + 1) * sizeof *at.a),
                  .group = ds_malloc((bt->nr + 1) * sizeof *at.group)};
    at_month(bt, bt->nm, &at);
    const bt_rates_t *rt = &at.rt;
    ds_sb_t arr[7] = {0};
    for (size_t h = 0; h < BACKTEST_AHEAD; h++) {
        ds_sb_printf(&arr[6], "%s%.17g", h ? "," : "{", at.shock[h]);
        rate_element(arr, h, "", &rt->org[h], rt->org_rate[h]);
        int index;
        const char *name;
        for (size_t i = 0; (name = ds_stage_list_at(stages ? stages : ds_stage_list_default(), i, &index));
             i++)
            if (index < BACKTEST_RATE_STAGES && rt->stage[h][index].deals > 0)
                rate_element(arr, h, name, &rt->stage[h][index], rt->stage_rate[h][index]);
    }
    for (int k = 0; k < 7; k++) ds_sb_putc(&arr[k], '}');
    const char *v[] = {org_id, arr[0].p, arr[1].p, arr[2].p, arr[3].p, arr[4].p, arr[5].p, arr[6].p};
    PGresult *r = NULL;
    int rc = ds_pg_exec_params(pg, sql_store_rates, 8, v, NULL, NULL, &r, errstr, errsz);
    PQclear(r);
    for (int k = 0; k < 7; k++) free(arr[k].p);
    free(at.q);
    free(at.a);
    free(at.group);
    return rc;
}

/* The replayed periods with deals, by horizon, then month; out holds
 * nm * DS_FORECAST_HORIZONS. */
static size_t aggregate(const bt_t *bt, ds_forecast_month_t *out) {
    size_t n_out = 0, nk = bt->nm - bt->first;
    bt_at_t *at = ds_calloc(nk, sizeof *at);
    double *q = ds_malloc((bt->nr + 1) * sizeof *q), *a = ds_malloc((bt->nr + 1) * sizeof *a);
    size_t *group = ds_malloc((bt->nr + 1) * sizeof *group);
    for (size_t k = 0; k < nk; k++) {
        at[k] = (bt_at_t){.q = q, .a = a, .group = group};
        at_month(bt, bt->first + k, &at[k]);
    }
    for (int h = 0; h < DS_FORECAST_HORIZONS; h++)
        for (size_t k = 0; k < nk; k++) n_out += forecast_period(bt, bt->first + k, h, &at[k], &out[n_out]);
    free(q);
    free(a);
    free(group);
    free(at);
    return n_out;
}

int forecast_backtest(ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *oc, const backtest_model_t *m,
                      int64_t from_us, int64_t to_us, bool store, ds_forecast_month_t **out, size_t *n,
                      char *errstr, size_t errsz) {
    *out = NULL;
    *n = 0;
    bt_t bt = {.m = m};
    int64_t first = month_start(from_us, from_us == month_start(from_us, 0) ? 0 : 1);
    for (int64_t t = first; t < to_us; t = month_start(t, 1)) bt.nm++;
    if (bt.nm == 0) return DS_OK;
    bt.first = BACKTEST_HISTORY_MONTHS;
    bt.nm += bt.first;
    first = month_start(first, -BACKTEST_HISTORY_MONTHS);
    bt.starts = ds_malloc((bt.nm + 1) * sizeof *bt.starts);
    bt.starts[0] = first;
    for (size_t k = 1; k <= bt.nm; k++) bt.starts[k] = month_start(bt.starts[k - 1], 1);
    int rc = load_rows(&bt, pg, org_id, oc, errstr, errsz);
    if (rc == 0) rc = score_rows(&bt, errstr, errsz);
    if (rc == 0) {
        index_rows(&bt);
        *out = ds_calloc(bt.nm * DS_FORECAST_HORIZONS, sizeof **out);
        *n = aggregate(&bt, *out);
    }
    if (rc == 0 && store) rc = store_rates(&bt, pg, org_id, oc->stages, errstr, errsz);
    for (size_t i = 0; i < bt.nr; i++) free(bt.rows[i].x);
    free(bt.rows);
    free(bt.cell);
    free(bt.starts);
    return rc;
}

static void print_periods(FILE *f, const ds_forecast_month_t *m, size_t n) {
    fprintf(f, "%-7s %6s %13s %13s %13s %13s %13s %6s %13s\n", "month", "deals", "amount", "expected", "p10",
            "p90", "actual", "inside", "won_later");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%-7s %6zu %13.0f %13.0f %13.0f %13.0f %13.0f %6s %13.0f\n", m[i].month, m[i].exact.n,
                m[i].exact.amount, m[i].exact.expected, m[i].exact.p10, m[i].exact.p90, m[i].actual,
                m[i].inside ? "yes" : "no", m[i].won_later);
}

void forecast_backtest_print(FILE *f, const ds_forecast_month_t *m, size_t n) {
    const ds_forecast_month_t *h0, *hq;
    size_t n0 = ds_forecast_horizon(m, n, 0, &h0), nq = ds_forecast_horizon(m, n, DS_FORECAST_QUARTER, &hq);
    print_periods(f, h0, n0);
    size_t in = 0;
    for (size_t i = 0; i < n0; i++) in += h0[i].inside;
    fprintf(f,
            "band P10-P90 holds the actual in %zu of %zu months (%.1f %%); the normal approximation's "
            "P10/P90 are off the exact ones by %.1f %% of the band's width on average; month-level "
            "variance %.4f\n",
            in, n0, 100 * ds_forecast_coverage(h0, n0), 100 * ds_forecast_approx_error(h0, n0),
            n0 ? h0[n0 - 1].shock_var : 0.0);
    if (nq) {
        fprintf(
            f,
            "\nquarters, forecast at their start (each month with its months-ahead rates and variance):\n");
        print_periods(f, hq, nq);
    }
    fprintf(f, "\n%-15s %7s %7s %9s %13s %13s %13s %9s\n", "forecast", "periods", "inside", "coverage",
            "mean expected", "mean actual", "normal error", "variance");
    for (int h = 0; h < DS_FORECAST_HORIZONS; h++) {
        const ds_forecast_month_t *hm;
        size_t nh = ds_forecast_horizon(m, n, h, &hm);
        ds_forecast_judged_t j;
        ds_forecast_judge(hm, nh, &j);
        fprintf(f, "%-15s %7zu %7zu %7.1f %% %13.0f %13.0f %11.1f %% %9.4f\n", ds_forecast_horizon_name(h),
                j.periods, j.inside, 100 * ds_forecast_coverage(hm, nh), j.expected, j.actual,
                100 * ds_forecast_approx_error(hm, nh), nh ? hm[nh - 1].shock_var : 0.0);
    }
}

/* ---- dealscore-scoring forecast-backtest ---------------------------------------- */

static void help(FILE *out) {
    fprintf(out,
            "usage: dealscore-scoring forecast-backtest --org SLUG [--months N]\n"
            "\n"
            "Replays N months (default 24) that ended at least %d days ago with its active model (or its\n"
            "cold-start prior): at each month's start, the deals open then whose close date as known\n"
            "then falls in the month, scored on their features as of that moment. Each wins\n"
            "within the month with q = p x the in-month rate of its stage, learnt from the\n"
            "forecast deals of the months before (from %d months before the first replayed\n"
            "one; a month with none before it is not replayed); the expected won amount and\n"
            "the exact P10-P90 band (with the month-level variance of the months before)\n"
            "against what those deals won within the month (actual; won_later: what they won\n"
            "after it). Then stores the rates and the variance of all those months in\n"
            "forecast_rates, which the view forecast applies to today's open deals. Months\n"
            "before the model's test window replay deals it was trained on; train's report\n"
            "shows the months after its training fold.\n"
            "\n"
            "  --org SLUG     the org (required)\n"
            "  --months N     months to replay (1-240)\n"
            "\n"
            "Exit status: 0 done, 1 failure, 2 bad usage.\n",
            BACKTEST_SETTLE_DAYS, BACKTEST_HISTORY_MONTHS);
}

static int run_backtest(const ds_config_t *cfg, const char *org, int months) {
    char err[1024], org_id[37];
    ds_pg_t *pg = NULL;
    PGresult *r = NULL;
    const char *v[] = {org};
    if (ds_pg_new(&pg, cfg->database_url, "dealscore-scoring-backtest", err, sizeof err) != 0 ||
        ds_pg_ensure(pg, 30000, NULL, err, sizeof err) != 0 ||
        ds_pg_exec_params(pg, "select id::text from public.orgs where slug = $1", 1, v, NULL, NULL, &r, err,
                          sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring forecast-backtest: could not read the org: %s\n", err);
        ds_pg_destroy(pg);
        return 1;
    }
    if (PQntuples(r) != 1) {
        fprintf(stderr, "dealscore-scoring forecast-backtest: no org \"%s\"\n", org);
        PQclear(r);
        ds_pg_destroy(pg);
        return 1;
    }
    snprintf(org_id, sizeof org_id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    ds_org_cache_t *orgs = ds_org_cache_new(3600 * 1000);
    scorer_t *scorer = scorer_new(3600 * 1000, cfg->prior_min_closed);
    scorer_register(pg);
    const ds_org_ctx_t *oc = NULL;
    const scorer_org_t *so = NULL;
    ds_forecast_month_t *m = NULL;
    size_t n = 0;
    int rc = ds_org_cache_get(orgs, pg, org_id, &oc, err, sizeof err);
    if (rc == 0) rc = scorer_get(scorer, pg, org_id, oc, &so, err, sizeof err);
    if (rc == 0) {
        backtest_model_t bm = {
            .model = so->model,
            .calib = so->calib,
            .cols = so->map,
            .nf = so->nf,
            .prior = {so->has_history ? &so->history : NULL, so->history_rate, &so->ladder}};
        int64_t to = month_start(ds_now_us() - BACKTEST_SETTLE_DAYS * DS_US_PER_DAY, 0);
        rc = forecast_backtest(pg, org_id, oc, &bm, month_start(to, -months), to, true, &m, &n, err,
                               sizeof err);
        if (rc == 0) {
            printf("forecast backtest of org %s with %s\n", org, so->version);
            forecast_backtest_print(stdout, m, n);
        }
    }
    if (rc != 0) fprintf(stderr, "dealscore-scoring forecast-backtest: %s\n", err);
    free(m);
    scorer_destroy(scorer);
    ds_org_cache_destroy(orgs);
    ds_pg_destroy(pg);
    return rc == 0 ? 0 : 1;
}

int scoring_cmd_forecast_backtest(const ds_config_t *cfg, int argc, char **argv) {
    static const struct option opts[] = {{"org", required_argument, 0, 'o'},
                                         {"months", required_argument, 0, 'm'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *org = NULL;
    long months = 24;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c == 'h') {
            help(stdout);
            return 0;
        }
        if (c == 'o')
            org = optarg;
        else if (c == 'm' && !ds_parse_long(optarg, 1, 240, &months))
            return scoring_usage_error("forecast-backtest", "--months must be 1-240, not \"%s\"", optarg);
        else if (c != 'm')
            return scoring_usage_error("forecast-backtest", "unknown or incomplete option \"%s\"",
                                       argv[optind - 1]);
    }
    if (!org || !*org) return scoring_usage_error("forecast-backtest", "--org is required");
    if (optind < argc)
        return scoring_usage_error("forecast-backtest", "unexpected argument \"%s\"", argv[optind]);
    return run_backtest(cfg, org, (int)months);
}
