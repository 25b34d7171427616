/* The benchmark worker: coalesces a batch of opportunity.changed events per
 * opportunity, and per org applies them in one transaction (cohort_apply):
 * open opportunities are mapped to their cohort, closed ones unmapped, and
 * the cached cohorts a closed deal belongs to are recomputed. A second
 * thread refreshes cached cohorts older than DEALSCORE_BENCH_REFRESH_S and
 * sweeps for open opportunities that have no mapping yet. */
#include "benchmark.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cohort.h"
#include "base/common.h"
#include "base/log.h"
#include "infra/event.h"
#include "infra/pg.h"
#include "runtime/worker.h"

/* Cached rows recomputed per refresh round, opportunities per sweep step. */
#define REFRESH_ROWS_PER_ROUND 200
#define SWEEP_CHUNK 1000

typedef struct {
    ds_service_t *svc;
    ds_pg_t *pg;
    cohort_engine_t *eng;
    ds_metric_t *m_coalesce, *m_skipped, *m_fatal, *m_activity, *m_settled, *m_settled_n;
    unsigned rebalances; /* ds_worker_rebalances when the settled deals were last valid */
} bench_state_t;

typedef struct {
    ds_service_t *svc;
    cohort_metrics_t cm;
    cohort_settings_t defaults;
    ds_metric_t *m_rounds, *m_round_s, *m_sweeps;
} refresh_ctx_t;

static int cmp_change(const void *a, const void *b) {
    const benchmark_change_t *x = a, *y = b;
    int c = strcasecmp(x->org_id, y->org_id);
    return c ? c : strcasecmp(x->opp_id, y->opp_id);
}

size_t benchmark_decode(ds_worker_item_t *items, size_t n, Dealscore__V1__OpportunityChanged **evs,
                        benchmark_change_t *ch) {
    size_t nch = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].status = ds_event_decode_opportunity_changed(items[i].msg, &evs[i], NULL, items[i].error,
                                                              sizeof items[i].error);
        if (items[i].status != 0) continue;
        /* Every kind can change what the benchmark needs (attributes,
         * outcome, the account's industry or region, interactions of a
         * closed deal), and the work reads the current rows, so the kinds
         * coalesce into one change per opportunity. One whose events were
         * all interactions or transcripts keeps its mapping if it is open
         * and mapped (cohort_apply_changes). */
        bool activity = evs[i]->kind == DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_INTERACTION_ADDED ||
                        evs[i]->kind == DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_TRANSCRIPT_ADDED;
        ch[nch++] = (benchmark_change_t){evs[i]->org_id, evs[i]->opportunity_id, activity};
    }
    qsort(ch, nch, sizeof *ch, cmp_change);
    size_t uniq = 0;
    for (size_t i = 0; i < nch; i++) {
        if (uniq == 0 || cmp_change(&ch[uniq - 1], &ch[i]) != 0)
            ch[uniq++] = ch[i];
        else
            ch[uniq - 1].activity_only = ch[uniq - 1].activity_only && ch[i].activity_only;
    }
    return uniq;
}

/* A burst holds one change per deal: the work reads the deal's current rows,
 * and of its changes only whether every one was activity counts
 * (benchmark_decode), so a change of another kind outranks activity. */
static int coalesce(void *ud, const rd_kafka_message_t *m, char *key, size_t keysz, int64_t *rank) {
    (void)ud;
    Dealscore__V1__OpportunityChanged *ev = NULL;
    char err[64];
    if (ds_event_decode_opportunity_changed(m, &ev, NULL, err, sizeof err) != 0) return DS_EINVAL;
    *rank = ev->kind == DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_INTERACTION_ADDED ||
                    ev->kind == DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_TRANSCRIPT_ADDED
                ? 0
                : 1;
    int len = snprintf(key, keysz, "%s/%s", ev->org_id, ev->opportunity_id);
    for (char *c = key; len > 0 && (size_t)len < keysz && *c; c++) *c = (char)tolower((unsigned char)*c);
    ds_event_opportunity_changed_free(ev);
    return len > 0 && (size_t)len < keysz ? 0 : DS_EINVAL;
}

static int process(ds_worker_t *w, void *ud, ds_worker_item_t *items, size_t n, char *errstr, size_t errsz) {
    bench_state_t *st = ud;
    unsigned rb = ds_worker_rebalances(w);
    if (rb != st->rebalances) {
        /* Another consumer may have changed our deals meanwhile. */
        cohort_engine_forget(st->eng);
        st->rebalances = rb;
    }
    Dealscore__V1__OpportunityChanged **evs = ds_calloc(n, sizeof *evs);
    benchmark_change_t *ch = ds_calloc(n, sizeof *ch);
    int rc = DS_OK;
    size_t nch = benchmark_decode(items, n, evs, ch);
    if (nch) ds_metric_set(st->m_coalesce, (double)n / (double)nch);
    if (nch == 0) goto out;

    rc = ds_pg_ensure(st->pg, 2000, NULL, errstr, errsz);
    if (rc != 0) {
        rc = DS_ERETRY;
        goto out;
    }
    const char **ids = ds_calloc(nch, sizeof *ids);
    bool *activity = ds_calloc(nch, sizeof *activity);
    for (size_t i = 0; i < nch && rc == 0;) {
        size_t j = i, k = 0;
        while (j < nch && strcasecmp(ch[j].org_id, ch[i].org_id) == 0) {
            activity[k] = ch[j].activity_only;
            ids[k++] = ch[j++].opp_id;
        }
        cohort_stats_t stats = {0};
        char err[512];
        int r = cohort_apply_changes(st->eng, ch[i].org_id, ids, activity, k, &stats, err, sizeof err);
        if (r == DS_ERETRY || !ds_pg_is_connected(st->pg)) {
            if (!ds_pg_is_connected(st->pg)) ds_pg_reset(st->pg);
            snprintf(errstr, errsz, "%s", err);
            rc = DS_ERETRY;
        } else if (r != 0) {
            /* The same events would fail the same way: dead-letter this
             * org's events and go on with the others. */
            ds_metric_add(st->m_fatal, 1);
            for (size_t x = 0; x < n; x++) {
                if (!evs[x] || items[x].status != 0 || strcasecmp(evs[x]->org_id, ch[i].org_id) != 0)
                    continue;
                items[x].status = DS_EINVAL;
                snprintf(items[x].error, sizeof items[x].error, "benchmark failed: %.200s", err);
            }
        } else {
            ds_metric_add(st->m_skipped, (double)stats.skipped);
            ds_metric_add(st->m_activity, (double)(stats.activity + stats.settled));
            ds_metric_add(st->m_settled, (double)stats.settled);
            ds_debug("org %s: %zu changes, %zu computed (%zu hits, %zu misses), %zu refreshed, %zu mapped, "
                     "%zu unmapped",
                     ch[i].org_id, k, stats.computed, stats.hits, stats.misses, stats.refreshed, stats.mapped,
                     stats.unmapped);
        }
        i = j;
    }
    ds_metric_set(st->m_settled_n, (double)cohort_engine_settled(st->eng));
    free(ids);
    free(activity);
out:
    for (size_t i = 0; i < n; i++) ds_event_opportunity_changed_free(evs[i]);
    free(evs);
    free(ch);
    return rc;
}

/* Sleeps up to ms, waking within 50 ms of a stop. */
static void nap(const ds_service_t *svc, int ms) {
    for (int slept = 0; slept < ms && !ds_service_stopping(svc); slept += 50) {
        int step = ms - slept < 50 ? ms - slept : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The periodic refresh: every round recomputes up to REFRESH_ROWS_PER_ROUND
 * cached cohorts not refreshed for bench_refresh_s (oldest first), then
 * takes one step of the sweep for unmapped open opportunities; a sweep
 * starts at startup and again every bench_refresh_s. Rounds run back to
 * back while there is a backlog, else every bench_refresh_s / 10 (0.2 to
 * 60 s). */
static void *refresh_main(void *arg) {
    refresh_ctx_t *rc = arg;
    ds_service_t *svc = rc->svc;
    const int refresh_s = svc->cfg->bench_refresh_s;
    int idle_ms = refresh_s * 100;
    if (idle_ms < 200) idle_ms = 200;
    if (idle_ms > 60000) idle_ms = 60000;
    ds_pg_t *pg = NULL;
    char err[512];
    if (ds_pg_new(&pg, svc->cfg->database_url, "dealscore-benchmark-refresh", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    cohort_engine_t *eng = cohort_engine_new(pg, &rc->defaults, &rc->cm);
    char cursor[37] = "";
    bool sweeping = true;
    int64_t next_sweep = 0;
    while (!ds_service_stopping(svc)) {
        if (ds_pg_ensure(pg, 2000, NULL, err, sizeof err) != 0) {
            nap(svc, idle_ms);
            continue;
        }
        int64_t t0 = ds_mono_us();
        cohort_stats_t stats = {0};
        int done = 0;
        bool busy = false;
        int r = cohort_refresh_stale(eng, refresh_s, REFRESH_ROWS_PER_ROUND, &done, &stats, err, sizeof err);
        if (r != 0) {
            ds_warn("periodic benchmark refresh failed: %s", err);
            if (!ds_pg_is_connected(pg)) ds_pg_reset(pg);
        }
        busy = r == 0 && done == REFRESH_ROWS_PER_ROUND;
        if (!sweeping && ds_mono_us() >= next_sweep) sweeping = true;
        if (sweeping && r == 0 && !ds_service_stopping(svc)) {
            bool finished = false;
            r = cohort_sweep_step(eng, cursor, SWEEP_CHUNK, &finished, &stats, err, sizeof err);
            if (r != 0) {
                ds_warn("benchmark sweep failed: %s", err);
                if (!ds_pg_is_connected(pg)) ds_pg_reset(pg);
            } else if (finished) {
                sweeping = false;
                next_sweep = ds_mono_us() + (int64_t)refresh_s * 1000000;
                ds_metric_add(rc->m_sweeps, 1);
            } else {
                busy = true;
            }
        }
        ds_metric_add(rc->m_rounds, 1);
        ds_metric_observe(rc->m_round_s, (double)(ds_mono_us() - t0) / 1e6);
        if (stats.computed || stats.mapped || stats.deleted)
            ds_debug("refresh round: %d stale rows, %zu computed, %zu mapped, %zu dropped", done,
                     stats.computed, stats.mapped, stats.deleted);
        nap(svc, r != 0 ? idle_ms : busy ? 0 : idle_ms);
    }
    cohort_engine_destroy(eng);
    ds_pg_destroy(pg);
    return NULL;
}

void benchmark_worker(ds_service_t *svc, void *state) {
    (void)state;
    const ds_config_t *cfg = svc->cfg;
    ds_metrics_t *m = svc->metrics;
    refresh_ctx_t rctx = {.svc = svc};
    rctx.defaults =
        (cohort_settings_t){.months = cfg->bench_months, .min_won = cfg->bench_min_won, .band = 0.2};
    cohort_metrics_register(m, &rctx.cm);
    rctx.m_rounds = ds_metrics_counter(m, "benchmark_refresh_rounds_total", "Periodic refresh rounds", NULL);
    rctx.m_round_s = ds_metrics_histogram(m, "benchmark_refresh_round_seconds", "Time of one refresh round",
                                          NULL, ds_metrics_latency_buckets, ds_metrics_latency_nbuckets);
    rctx.m_sweeps = ds_metrics_counter(m, "benchmark_sweeps_total",
                                       "Completed sweeps for open opportunities without a mapping", NULL);

    bench_state_t st = {.svc = svc};
    char err[256];
    if (ds_pg_new(&st.pg, cfg->database_url, "dealscore-benchmark", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    st.eng = cohort_engine_new(st.pg, &rctx.defaults, &rctx.cm);
    st.m_coalesce =
        ds_metrics_gauge(m, "benchmark_coalescing_ratio", "Events per opportunity in the last batch", NULL);
    st.m_skipped =
        ds_metrics_counter(m, "benchmark_skipped_total",
                           "Changes of unknown or placeholder opportunities or unknown orgs", NULL);
    st.m_activity =
        ds_metrics_counter(m, "benchmark_activity_only_total",
                           "Open, mapped opportunities whose changes in a batch were only interactions or"
                           " transcripts: their mapping stands, no walk",
                           NULL);
    st.m_settled =
        ds_metrics_counter(m, "benchmark_settled_total",
                           "Activity-only changes of open deals this worker had mapped: handled without a"
                           " transaction (counted in activity_only_total too)",
                           NULL);
    st.m_settled_n =
        ds_metrics_gauge(m, "benchmark_settled_deals",
                         "Open, mapped deals the worker remembers (forgotten on a rebalance)", NULL);
    st.m_fatal =
        ds_metrics_counter(m, "benchmark_failed_orgs_total",
                           "Org groups of a batch dead-lettered after a permanent database error", NULL);

    pthread_t refresher;
    bool refreshing = false;
    if (cfg->bench_refresh_s > 0) {
        if (pthread_create(&refresher, NULL, refresh_main, &rctx) == 0)
            refreshing = true;
        else
            ds_error("could not start the periodic benchmark refresh thread");
    }
    static const char *const topics[] = {DS_TOPIC_OPPORTUNITY_CHANGED};
    ds_worker_def_t def = {.name = "benchmark",
                           .topics = topics,
                           .ntopics = 1,
                           .process = process,
                           .ud = &st,
                           .coalesce = coalesce,
                           .whole_bursts = true};
    ds_worker_run(svc, &def);
    if (refreshing) pthread_join(refresher, NULL);
    cohort_engine_destroy(st.eng);
    ds_pg_destroy(st.pg);
}
