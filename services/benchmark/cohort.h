/* Cohort benchmarks: which closed deals an opportunity is compared with, the
 * canonical key of that cohort, and the SQL that computes and caches its
 * aggregates (Postgres does the set work; this file orchestrates).
 *
 * Cohort. For an opportunity O of org G, the cohort at level L is G's closed
 * deals (outcome won or lost) with
 *   - O's industry (level 0..3), product category (0..2), region (0..1) and
 *     persona (0) — a NULL attribute matches NULL, any other value matches
 *     exactly (case-sensitive);
 *   - an amount in O's amount band (below);
 *   - closed_at >= window_start = midnight UTC of the computation day minus N
 *     months (N = orgs.settings.benchmark_months, else DEALSCORE_BENCH_MONTHS).
 * Metrics come from the cohort's won deals; the win rate is won / (won + lost).
 * Levels: 0 "full", 1 "industry_product_region" (persona relaxed), 2
 * "industry_product" (region relaxed too), 3 "industry" (product relaxed too).
 * An opportunity takes the first level, from 0, whose cohort has at least
 * min_won won deals (orgs.settings.benchmark_min_cohort, else
 * DEALSCORE_BENCH_MIN_WON); if none has, level 3, marked insufficient.
 *
 * Amount band (anchored, so nearby amounts share a cached row). With band b
 * (orgs.settings.benchmark_amount_band, default 0.2) the grid ratio is
 * g = 1 + b/4 (1.05). An amount a >= 1 lies in cell k = floor(log_g a), and
 * the cohort range of cell k is [lo, hi) with
 *   lo = (1 - b) * g^k      rounded down to cents,
 *   hi = (1 + b) * g^(k+1)  rounded up to cents.
 * Tolerance: the range always contains [(1-b)a, (1+b)a] (every deal within
 * ±20 % is in), and never reaches beyond [(1-b)a/g, (1+b)a*g) — at b = 0.2,
 * deals from 0.762a to 1.26a may be in; a deal at 0.80a..1.20a always is.
 * Amounts below 1 form cell -1 with range [0, 1+b). An opportunity without an
 * amount is compared with deals of any amount ("amt=any").
 *
 * Key: "v1|ind=<v>|prod=<v>|reg=<v>|per=<v>|amt=[lo,hi)|m=<N>", relaxed
 * attributes left out; values are percent-encoded except [A-Za-z0-9._-],
 * NULL is "~".
 *
 * Caching. benchmarks_cached holds one row per evaluated cohort key (the
 * levels an opportunity walked through, sufficient or not). A row is
 * recomputed when a deal inside it closes, reopens or changes after close,
 * and by the periodic refresh (oldest refreshed_at first); as_of changes
 * only when the result changes, so replays leave rows as they were.
 * opportunity_benchmarks maps each open opportunity to its chosen row.
 *
 * Concurrency: every unit of work runs in one transaction holding a
 * transaction-level advisory lock on the org, so two threads or two
 * instances never interleave their reads and writes of one org's rows.
 *
 * Blocking calls on a ds_pg_t: use from a worker thread. */
#ifndef DS_BENCHMARK_COHORT_H
#define DS_BENCHMARK_COHORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/metrics.h"
#include "infra/pg.h"

typedef enum {
    COHORT_FULL = 0,
    COHORT_INDUSTRY_PRODUCT_REGION = 1,
    COHORT_INDUSTRY_PRODUCT = 2,
    COHORT_INDUSTRY = 3,
    COHORT_LEVELS = 4,
} cohort_level_t;

typedef struct {
    int months;  /* window in months, 1..120 */
    int min_won; /* won deals a level needs */
    double band; /* relative amount band, 0.01..0.9 */
} cohort_settings_t;

typedef struct {
    const char *industry; /* NULL: unknown */
    const char *product;
    const char *region;
    const char *persona;
    bool has_amount;
    double amount;
} cohort_attrs_t;

typedef struct {
    int64_t cell;   /* grid cell; -1 below 1; INT64_MIN for "any" */
    char lo[40];    /* numeric text */
    char hi[40];    /* numeric text, "Infinity" for "any" */
    char label[96]; /* "[7704.50,12134.58)" or "any" */
} cohort_band_t;

#define COHORT_BAND_ANY INT64_MIN

/* "full", "industry_product_region", "industry_product", "industry". */
const char *cohort_level_name(cohort_level_t level);

/* The band of an amount (or "any" without one). */
void cohort_band_of(const cohort_settings_t *s, bool has_amount, double amount, cohort_band_t *out);
/* Every band whose range contains amount, plus "any": the cells a closed
 * deal belongs to. Returns how many were written (at most max). */
size_t cohort_bands_containing(const cohort_settings_t *s, double amount, cohort_band_t *out, size_t max);

/* The canonical key; the caller frees it. */
char *cohort_key(const cohort_attrs_t *a, cohort_level_t level, const cohort_band_t *b, int months);

/* ---- the engine ------------------------------------------------------------ */

typedef struct {
    ds_metric_t *computed;  /* cohort queries run */
    ds_metric_t *hits;      /* walk steps answered by a cached row */
    ds_metric_t *misses;    /* walk steps that had to compute */
    ds_metric_t *query_s;   /* histogram: seconds per cohort query */
    ds_metric_t *mapped;    /* opportunity mappings written (changed) */
    ds_metric_t *refreshed; /* cached rows recomputed because of a change or age */
    ds_metric_t *flips;     /* rows whose sufficiency changed */
    ds_metric_t *deleted;   /* cached rows dropped (unreferenced) */
} cohort_metrics_t;

typedef struct {
    size_t computed, hits, misses, mapped, unmapped, refreshed, flips, deleted, skipped;
    size_t activity; /* open, mapped deals whose changes were interactions or transcripts only */
    size_t settled;  /* of those, deals known settled: no transaction (cohort_apply_changes) */
} cohort_stats_t;

typedef struct cohort_engine_s cohort_engine_t;

/* Creates an engine on pg (borrowed, used only by the caller's thread).
 * defaults apply where an org's settings lack a key; metrics may be NULL
 * (every member may be NULL). Free with cohort_engine_destroy. */
cohort_engine_t *cohort_engine_new(ds_pg_t *pg, const cohort_settings_t *defaults,
                                   const cohort_metrics_t *metrics);
void cohort_engine_destroy(cohort_engine_t *e);
/* Registers the engine's metrics in m (names dealscore_benchmark_*). */
void cohort_metrics_register(ds_metrics_t *m, cohort_metrics_t *out);

/* Applies changes of the opportunities ids (UUID text) of org_id, in one
 * transaction: open ones are (re)mapped to their cohort, closed ones lose
 * their mapping, and the cached cohorts that contain a closed (or reopened)
 * deal are recomputed, remapping the opportunities whose level that changes.
 * Unknown ids, placeholders and ids of another org are skipped.
 * Returns 0, DS_ERETRY (transient; the transaction was rolled back) or
 * DS_EFATAL (the same input would fail again), with errstr. stats may be
 * NULL; counts add up. */
int cohort_apply(cohort_engine_t *e, const char *org_id, const char *const *ids, size_t n,
                 cohort_stats_t *stats, char *errstr, size_t errstr_size);
/* cohort_apply where activity_only[i] says that ids[i] only gained
 * interactions or transcripts: its attributes and outcome did not change,
 * so an open deal that is mapped keeps its mapping and is not walked again
 * (a closed or reopened one still recomputes its cohorts: their
 * interactions-before-close count it). activity_only may be NULL. */
int cohort_apply_changes(cohort_engine_t *e, const char *org_id, const char *const *ids,
                         const bool *activity_only, size_t n, cohort_stats_t *stats, char *errstr,
                         size_t errstr_size);
/* With activity_only, the engine remembers the deals its committed
 * transactions left open, mapped and never reopened ("settled", up to about
 * half a million, then it starts over): a later activity-only change of one
 * needs no transaction and is only counted (stats->settled). That holds only
 * while every change of those deals comes through this engine: forget
 * everything when the consumer's partitions move (ds_worker_rebalances). No
 * path unmaps an open deal, so the sweep and the refresh need no hook. */
void cohort_engine_forget(cohort_engine_t *e);
/* How many deals the engine holds settled. */
size_t cohort_engine_settled(const cohort_engine_t *e);

/* One round of the periodic refresh: recomputes up to limit cached rows not
 * refreshed for refresh_s seconds (oldest first; drops rows no mapping can
 * use) and remaps the opportunities whose level changes. *done is the number
 * of rows handled. Returns as cohort_apply. */
int cohort_refresh_stale(cohort_engine_t *e, int refresh_s, int limit, int *done, cohort_stats_t *stats,
                         char *errstr, size_t errstr_size);

/* One step of the sweep that maps open opportunities that have no mapping
 * (and drops mappings of closed ones): looks at up to chunk opportunities
 * with id > cursor (a UUID text, "" to start) and advances cursor (37 bytes);
 * *finished is set when the sweep reached the end (cursor is then ""). */
int cohort_sweep_step(cohort_engine_t *e, char cursor[37], int chunk, bool *finished, cohort_stats_t *stats,
                      char *errstr, size_t errstr_size);

/* Computes and caches one cohort outside any walk (benchmarks, tests): the
 * cohort of attrs at level in the org's settings. Runs in its own
 * transaction. *won and *closed may be NULL. */
int cohort_compute_one(cohort_engine_t *e, const char *org_id, const cohort_attrs_t *attrs,
                       cohort_level_t level, int64_t *won, int64_t *closed, char *errstr, size_t errstr_size);

/* Microseconds the last cohort query took (the statement alone, without
 * the transaction around it), 0 before the first. */
int64_t cohort_engine_last_query_us(const cohort_engine_t *e);

/* The SQL text of the cohort query for a level with the given NULL pattern
 * (bit 0 industry, 1 product, 2 region, 3 persona is NULL); parameters as in
 * cohort.c. The caller frees it. For EXPLAIN in the benchmark program. */
char *cohort_query_sql(cohort_level_t level, unsigned null_mask);

#endif
