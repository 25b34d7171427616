/* dealscore-scoring rescore: the nightly re-score of every open opportunity
 * (a Kubernetes CronJob). Walks the open, non-placeholder opportunities of
 * one org (or of every org) in (org_id, id) order in chunks; each chunk goes
 * through the same loader, feature engine, scorer and persistence as the
 * worker and /api/predict, all as of the run's as_of.
 *
 * Threads: the main thread pages through the ids (keyset on (org_id, id)),
 * hands chunks to --workers worker threads (each with its own Postgres
 * session, org cache and scorer: loading, features, TreeSHAP and writing all
 * run in parallel), and records the progress in dealscore_internal.rescore_runs once
 * a chunk and every chunk before it are committed. An interrupted run
 * resumes after the last recorded opportunity; chunks that were committed
 * beyond it are scored again with the same as_of, which writes nothing new
 * (prediction_history is unique on opportunity, as_of and model version). */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "infra/kafka.h"
#include "base/log.h"
#include "base/queue.h"
#include "infra/pgarray.h"
#include "scoring.h"

#define RESCORE_DEFAULT_CHUNK 2000
#define RESCORE_MAX_CHUNK 50000
#define RESCORE_DEFAULT_WORKERS 2
#define RESCORE_MAX_WORKERS 64
#define RESCORE_ATTEMPTS 6
#define RESCORE_RESUME_HOURS 24
#define RESCORE_PROGRESS_US 2000000
#define RESCORE_MAX_VERSIONS 8
#define RESCORE_DEFAULT_MIN_CHANGE 0.005
#define RESCORE_MIN_CHANGE_ENV "DEALSCORE_RESCORE_MIN_CHANGE"
#define ZERO_UUID "00000000-0000-0000-0000-000000000000"

/* Set by SIGTERM/SIGINT: stop after the chunks in hand. sig_atomic_t is an
 * int here, the type ds_pg_ensure takes its stop flag as. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

typedef struct {
    const char *org;
    int chunk;
    int workers;
    bool restart;
    bool publish;
    bool snapshot;
    double min_change; /* a score is written when it moved by more (or its drivers changed) */
} rescore_opts_t;

/* What a worker did, summed over the workers at the end. */
typedef struct {
    long long changed; /* first score, or the probability moved */
    long long
        written; /* rows written: first score, other model, moved by more than min_change, other drivers */
    long long prior;     /* scored with a cold-start prior */
    long long published; /* prediction.made queued */
    char versions[RESCORE_MAX_VERSIONS][64];
    long long version_n[RESCORE_MAX_VERSIONS];
    int n_versions;
    int64_t us_load, us_features, us_snapshot;
    long long conflicts; /* chunks written again with ON CONFLICT (committed before, by an interrupted run) */
    scoring_stats_t persist; /* score, previous scores, JSON, history + predictions */
} tally_t;

/* One chunk of the walk. */
typedef struct job_s {
    struct job_s *next_flight; /* in seq order, until recorded */
    long long seq;
    PGresult *keys; /* id, org_id, account_id (freed by the worker) */
    size_t n_keys;
    char last_org[37], last_id[37];
    /* set by the worker under the pool lock */
    int status; /* 0 pending, 1 done, -1 failed */
    size_t scored;
    char errstr[512];
} job_t;

typedef struct pool_s pool_t;

typedef struct {
    pool_t *pool;
    pthread_t thread;
    ds_pg_t *pg;
    ds_org_cache_t *orgs;
    scorer_t *scorer;
    uint64_t generation;
    tally_t tally;
} worker_t;

struct pool_s {
    const ds_config_t *cfg;
    const rescore_opts_t *o;
    int64_t as_of_us;
    ds_producer_t *producer; /* NULL: no events */
    char *topic;
    long long delivery_failed; /* delivery callback, on the polling thread */
    ds_queue_t *queue;         /* chunks waiting for a worker */
    pthread_mutex_t mu;        /* the jobs' status; cond: a job finished */
    pthread_cond_t cond;
    worker_t *workers;
    int n_workers;
};

/* ---- a worker: load, features, score, write ------------------------------------------ */

typedef struct {
    ds_opp_batch_t *batch;
    scoring_item_t *items;
    size_t n;
    double *values;
    char **mjson;
} chunk_t;

static void chunk_clear(chunk_t *c) {
    for (size_t i = 0; i < c->n; i++) {
        scoring_item_clear(&c->items[i]);
        free(c->mjson[i]);
    }
    free(c->items);
    free(c->values);
    free(c->mjson);
    ds_opp_batch_destroy(c->batch);
    memset(c, 0, sizeof *c);
}

/* Loads the job's opportunities and computes their features as of the
 * run's as_of. Returns 0 or a pg error class. */
static int chunk_build(worker_t *wk, job_t *job, chunk_t *c, char *errstr, size_t errsz) {
    pool_t *p = wk->pool;
    size_t n = job->n_keys;
    int64_t t0 = ds_mono_us();
    const char **ids = ds_calloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = PQgetvalue(job->keys, (int)i, 0);
    int rc = ds_opp_batch_load(wk->pg, ids, n, &c->batch, errstr, errsz);
    free(ids);
    if (rc != 0) return rc;
    int64_t t1 = ds_mono_us();
    wk->tally.us_load += t1 - t0;
    c->items = ds_calloc(n, sizeof *c->items);
    c->values = ds_malloc(n * DS_FEATURE_COUNT * sizeof *c->values);
    c->mjson = ds_calloc(n, sizeof *c->mjson);
    for (size_t i = 0; i < n; i++) {
        const char *id = PQgetvalue(job->keys, (int)i, 0), *org = PQgetvalue(job->keys, (int)i, 1);
        int bi = ds_opp_batch_find(c->batch, id);
        if (bi < 0 || ds_opp_batch_placeholder(c->batch, (size_t)bi)) continue; /* gone meanwhile */
        const ds_org_ctx_t *oc = NULL;
        rc = ds_org_cache_get(wk->orgs, wk->pg, org, &oc, errstr, errsz);
        if (rc != 0) return rc;
        ds_opp_raw_t *raw = ds_opp_batch_raw(c->batch, (size_t)bi);
        raw->stages = oc->stages;
        double *vals = c->values + c->n * DS_FEATURE_COUNT;
        ds_feature_vec_t vec;
        if (ds_features_compute(raw, p->as_of_us, oc->winrate, oc->lexicon, &vec) != 0) continue;
        memcpy(vals, vec.values, sizeof vec.values);
        /* The MEDDICC evidence borrows the batch's transcripts: serialize now. */
        c->mjson[c->n] = ds_meddicc_result_to_json(&vec.meddicc);
        scoring_item_t *it = &c->items[c->n];
        it->org_id = org;
        it->opp_id = id;
        it->account_id = PQgetisnull(job->keys, (int)i, 2) ? NULL : PQgetvalue(job->keys, (int)i, 2);
        it->as_of_us = p->as_of_us;
        it->values = vals;
        it->meddicc_json = c->mjson[c->n];
        scoring_item_from_raw(it, raw);
        c->n++;
    }
    wk->tally.us_features += ds_mono_us() - t1;
    return 0;
}

#define SQL_SNAPSHOT                                                                                         \
    "insert into public.features_snapshot (org_id, opportunity_id, as_of, feature_version, features, "       \
    "meddicc)"                                                                                               \
    " select x.o, x.i, $5::timestamptz, $6, x.f, x.m"                                                        \
    " from unnest($1::uuid[], $2::uuid[], $3::json[], $4::json[]) as x(o, i, f, "                            \
    "m)" DS_SQL_WHERE_DEAL_EXISTS("x.i", "x.o")
static const char *sql_snapshot =
    SQL_SNAPSHOT " on conflict (opportunity_id, as_of, feature_version) do nothing";
static const char *sql_snapshot_plain = SQL_SNAPSHOT;

/* The feature vectors of the chunk's written scores as one statement over
 * binary arrays (pgbin.h), built by scoring_persist_opts once it knows
 * which scores are written (snapshot_first) and run in their write
 * transaction: a score that is not written stores no snapshot either. */
typedef struct {
    worker_t *wk;
    ds_pgarray_t a[4];
    char asof[40];
    const char *v[6];
    int lens[6], fmts[6];
    scoring_stmt_t stmt;
} snapshot_stmt_t;

static void snapshots_free(snapshot_stmt_t *s) {
    for (int k = 0; k < 4; k++) ds_pgarray_free(&s->a[k]);
}

static const scoring_stmt_t *snapshot_first(void *ud, const scoring_item_t *items, size_t n, bool plain) {
    snapshot_stmt_t *s = ud;
    int64_t t0 = ds_mono_us();
    snapshots_free(s);
    ds_pgarray_t *a = s->a;
    ds_pgarray_begin(&a[0], DS_OID_UUID);
    ds_pgarray_begin(&a[1], DS_OID_UUID);
    ds_pgarray_begin(&a[2], DS_OID_JSON);
    ds_pgarray_begin(&a[3], DS_OID_JSON);
    for (size_t i = 0; i < n; i++) {
        if (items[i].unchanged) continue;
        ds_pgarray_uuid(&a[0], items[i].org_id);
        ds_pgarray_uuid(&a[1], items[i].opp_id);
        char *features = ds_features_values_to_json(items[i].values);
        ds_pgarray_json(&a[2], features, strlen(features));
        free(features);
        ds_pgarray_json(&a[3], items[i].meddicc_json, strlen(items[i].meddicc_json));
    }
    ds_format_time_us(s->wk->pool->as_of_us, s->asof, sizeof s->asof);
    s->v[4] = s->asof;
    s->v[5] = DS_FEATURE_VERSION;
    ds_pgarray_params(a, 4, s->v, s->lens, s->fmts);
    s->stmt = (scoring_stmt_t){plain ? sql_snapshot_plain : sql_snapshot, 6, s->v, s->lens, s->fmts};
    s->wk->tally.us_snapshot += ds_mono_us() - t0;
    return a[0].n ? &s->stmt : NULL;
}

static void count_version(tally_t *t, const char *version) {
    for (int i = 0; i < t->n_versions; i++)
        if (strcmp(t->versions[i], version) == 0) {
            t->version_n[i]++;
            return;
        }
    if (t->n_versions < RESCORE_MAX_VERSIONS) {
        snprintf(t->versions[t->n_versions], sizeof t->versions[0], "%s", version);
        t->version_n[t->n_versions++] = 1;
    }
}

/* Events for the scores written: best effort, the rows are what counts. */
static void publish(worker_t *wk, const chunk_t *c) {
    pool_t *p = wk->pool;
    for (size_t i = 0; i < c->n; i++) {
        const scoring_item_t *it = &c->items[i];
        count_version(&wk->tally, it->version);
        if (it->score.is_prior) wk->tally.prior++;
        if (isnan(it->previous) || fabs(it->score.proba - it->previous) > 1e-12) wk->tally.changed++;
        if (it->unchanged) continue;
        wk->tally.written++;
        if (!p->producer) continue;
        uint8_t *buf = NULL;
        size_t len = 0;
        char eid[37];
        scoring_event(it, &buf, &len, eid);
        ds_event_meta_t meta = {.id = eid,
                                .source = "/dealscore/scoring/rescore",
                                .type = DS_CE_TYPE_PREDICTION_MADE,
                                .time_us = it->as_of_us};
        if (ds_producer_send(p->producer, p->topic, it->opp_id, strlen(it->opp_id), buf, len, &meta, NULL) ==
            0)
            wk->tally.published++;
        free(buf);
    }
}

static void backoff(int attempt, uint64_t *seed) {
    int ms = ds_pg_backoff_ms(attempt, seed) * 4;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* backoff before the retry */
}

/* The workers' session settings for this batch job:
 * - synchronous_commit off: a chunk's commit need not wait for its WAL
 *   flush. A crash of Postgres can lose the last chunks committed, never a
 *   part of one, and the run's progress row (written after them, by another
 *   session, so later in the WAL) is lost with them: the next run resumes
 *   before them and scores them again with the same as_of.
 * - no parallel workers: the rescore's own workers already use the cores.
 * - random_page_cost 1.1 (cached or SSD data): at ~2 % of an org per chunk
 *   the default 4 made the loader's "= any($1)" reads full scans of
 *   interactions and history (~5x the time of the index scans). */
static const char *sql_session = "select set_config('synchronous_commit', 'off', false), "
                                 "set_config('max_parallel_workers_per_gather', '0', false),"
                                 " set_config('random_page_cost', '1.1', false)";

/* Does one job, retrying the whole chunk while the database is away.
 * Returns 0 or the error class of the last attempt (errstr). */
static int do_job(worker_t *wk, job_t *job, char *errstr, size_t errsz) {
    pool_t *p = wk->pool;
    uint64_t seed = (uint64_t)ds_now_us() ^ (uint64_t)job->seq;
    int rc = DS_ERETRY;
    for (int attempt = 0; attempt < RESCORE_ATTEMPTS; attempt++) {
        if (attempt) {
            ds_warn("rescore: chunk %lld failed (%s); retrying", job->seq, errstr);
            backoff(attempt, &seed);
            if (!ds_pg_is_connected(wk->pg)) ds_pg_reset(wk->pg);
        }
        rc = ds_pg_ensure(wk->pg, 10000, NULL, errstr, errsz);
        if (rc != 0) continue;
        if (ds_pg_generation(wk->pg) != wk->generation) {
            /* A new session may have missed model changes. */
            if (wk->generation) {
                ds_org_cache_clear(wk->orgs);
                scorer_invalidate(wk->scorer, NULL);
            }
            rc = ds_pg_exec_params(wk->pg, sql_session, 0, NULL, NULL, NULL, NULL, errstr, errsz);
            if (rc != 0) continue;
            wk->generation = ds_pg_generation(wk->pg);
        }
        chunk_t c = {0};
        rc = chunk_build(wk, job, &c, errstr, errsz);
        if (rc == 0 && c.n > 0) {
            /* A chunk is new unless an interrupted run committed it beyond
             * its recorded progress: then it is written a second time. */
            snapshot_stmt_t snap = {.wk = wk};
            bool rewritten = false;
            scoring_persist_opts_t po = {.stats = &wk->tally.persist,
                                         .first = p->o->snapshot ? snapshot_first : NULL,
                                         .first_ud = &snap,
                                         .rewritten = &rewritten,
                                         .only_moved = true,
                                         .min_change = p->o->min_change};
            rc = scoring_persist_opts(wk->pg, wk->orgs, wk->scorer, p->cfg->top_k, c.items, c.n, &po, errstr,
                                      errsz);
            if (rewritten) wk->tally.conflicts++;
            snapshots_free(&snap);
        }
        if (rc == 0) {
            publish(wk, &c);
            job->scored = c.n;
            chunk_clear(&c);
            return 0;
        }
        chunk_clear(&c);
        /* A permanent error on a healthy session will not go away. */
        if (rc != DS_ERETRY && ds_pg_is_connected(wk->pg)) break;
    }
    return rc;
}

static void *worker_main(void *arg) {
    worker_t *wk = arg;
    pool_t *p = wk->pool;
    void *item;
    while (ds_queue_pop(p->queue, &item, 1)) {
        job_t *job = item;
        char err[512] = "";
        int rc = do_job(wk, job, err, sizeof err);
        PQclear(job->keys);
        job->keys = NULL;

        pthread_mutex_lock(&p->mu);
        job->status = rc == 0 ? 1 : -1;
        snprintf(job->errstr, sizeof job->errstr, "%s", err);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

static void on_delivery(void *opaque, void *msg_opaque, int err, const char *errmsg,
                        const rd_kafka_message_t *m) {
    (void)msg_opaque;
    (void)m;
    pool_t *p = opaque;
    if (err != 0 && p->delivery_failed++ == 0) ds_warn("rescore: prediction.made not delivered: %s", errmsg);
}

/* ---- the command ------------------------------------------------------------------------ */

#define usage_error(...) scoring_usage_error("rescore", __VA_ARGS__)

static void help(FILE *out) {
    fprintf(out,
            "usage: dealscore-scoring rescore [--org SLUG] [options]\n"
            "\n"
            "Re-scores every open opportunity (of one org, or of every org) with the org's\n"
            "active model or its cold-start prior, through the same feature engine and scorer as\n"
            "the worker, all as of the run's start. Resumes the latest unfinished run of the\n"
            "same scope started within %d hours. SIGTERM or SIGINT stops after the chunks in\n"
            "hand; the next run resumes there.\n"
            "\n"
            "  --org SLUG     only this org (default: every org)\n"
            "  --chunk N      opportunities per chunk (default %d)\n"
            "  --workers N    chunks scored in parallel, one Postgres session each (default %d)\n"
            "  --restart      abandon an unfinished run and start over\n"
            "  --no-publish   do not publish prediction.made for the scores that moved\n"
            "  --no-snapshot  do not store the written scores' features in features_snapshot\n"
            "  --min-change P write a score (its predictions, prediction_history, deal_risks\n"
            "                 and features_snapshot rows, and its prediction.made) only when\n"
            "                 it is a first score, of another model, moved by more than P from\n"
            "                 the previous one, or its top drivers changed; 0 to 1 (default\n"
            "                 %s, else %g)\n"
            "\n"
            "Progress goes to stderr every 2 s, the summary to stdout.\n"
            "Exit status: 0 finished, 1 failed or interrupted (resumable), 2 bad usage.\n",
            RESCORE_RESUME_HOURS, RESCORE_DEFAULT_CHUNK, RESCORE_DEFAULT_WORKERS, RESCORE_MIN_CHANGE_ENV,
            RESCORE_DEFAULT_MIN_CHANGE);
}

static bool parse_int(const char *s, long min, long max, int *out) {
    long v;
    if (!ds_parse_long(s, min, max, &v)) return false;
    *out = (int)v;
    return true;
}

static bool parse_proba(const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = s && *s ? strtod(s, &end) : NAN;
    if (errno || !end || *end || !(v >= 0 && v <= 1)) return false;
    *out = v;
    return true;
}

static int exec(ds_pg_t *pg, const char *sql, int n, const char *const *v, PGresult **r, char *err,
                size_t errsz) {
    return ds_pg_exec_params(pg, sql, n, v, NULL, NULL, r, err, errsz);
}

static const char *sql_lock =
    "select pg_try_advisory_lock(hashtext('dealscore.rescore'), hashtext(coalesce($1, '*')))";

/* Ordered by the uuid columns (o.id, not the text output column "id"), so
 * that each page is a short walk of opportunities_open_rescore_idx rather
 * than a sort of every open opportunity. */
static const char *sql_page_org =
    "select o.id::text, o.org_id::text, o.account_id::text from public.opportunities o"
    " where o.org_id = $1::uuid and o.outcome = 'open' and not o.placeholder and o.id > $2::uuid"
    " order by o.org_id, o.id limit $3::int";
static const char *sql_page_all =
    "select o.id::text, o.org_id::text, o.account_id::text from public.opportunities o"
    " where o.outcome = 'open' and not o.placeholder and (o.org_id, o.id) > ($1::uuid, $2::uuid)"
    " order by o.org_id, o.id limit $3::int";

/* The main thread's session with retries (paging and progress). */
static int main_exec(ds_pg_t *pg, const char *scope, const char *sql, int n, const char *const *v,
                     PGresult **r, char *err, size_t errsz) {
    uint64_t seed = (uint64_t)ds_now_us();
    uint64_t gen = ds_pg_generation(pg);
    int rc = DS_ERETRY;
    for (int attempt = 0; attempt < RESCORE_ATTEMPTS; attempt++) {
        if (attempt) {
            ds_warn("rescore: %s; retrying", err);
            backoff(attempt, &seed);
            if (!ds_pg_is_connected(pg)) ds_pg_reset(pg);
        }
        rc = ds_pg_ensure(pg, 10000, NULL, err, errsz);
        if (rc != 0) continue;
        if (ds_pg_generation(pg) != gen) {
            /* A new session has lost the advisory lock: take it again. */
            PGresult *lr = NULL;
            const char *lv[] = {scope};
            rc = exec(pg, sql_lock, 1, lv, &lr, err, errsz);
            if (rc != 0) continue;
            bool again = PQgetvalue(lr, 0, 0)[0] == 't';
            PQclear(lr);
            if (!again) {
                snprintf(err, errsz, "another rescore took over while the database was away");
                return DS_EFATAL;
            }
            gen = ds_pg_generation(pg);
        }
        rc = exec(pg, sql, n, v, r, err, errsz);
        if (rc == 0 || (rc != DS_ERETRY && ds_pg_is_connected(pg))) break;
    }
    return rc;
}

/* Each chunk allocates and frees megabytes (the statements' binary arrays,
 * libpq's buffers and results) in every worker thread. With glibc's
 * defaults the freed top of a thread's arena goes back to the kernel and
 * the next chunk faults it in again, zeroed: in a perf profile of a 1M run
 * the page clearing and the copies into fresh pages take ~13 % of the
 * process. Keeping up to 512 MB and serving blocks under 32 MB from the
 * arenas saves ~10 s of the process's ~95 s of CPU in a 1M run. */
static void keep_freed_memory(void) {
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
}

/* A phase of the command returns RESCORE_GO_ON to let the next one run, or
 * the exit status to stop with (its message printed). */
#define RESCORE_GO_ON (-1)
#define rescore_fail(...) (fprintf(stderr, "dealscore-scoring rescore: " __VA_ARGS__), 1)

/* One run of the command, what each phase leaves for the next ones. */
typedef struct {
    const ds_config_t *cfg;
    rescore_opts_t o;
    char err[1024];
    ds_pg_t *pg; /* the main thread's session: paging, progress, the lock */
    char org_id[37];
    const char *scope; /* org_id, or NULL for every org */
    long long run_id;
    bool resumed;
    long long scored; /* by the run, in this process and before */
    long long total;
    char asof_text[40];
    pool_t pool;
    int started; /* worker threads */
    /* the walk */
    char cur_org[37], cur_id[37]; /* the last opportunity handed out */
    job_t *flight_head, *flight_tail;
    int in_flight;
    long long seq, done_here;
    int64_t t0, last_progress;
    double secs; /* of the walk, the workers joined */
    bool end, failed, finished;
    char fail_text[600];
} rescore_t;

static void rescore_init(rescore_t *rs, const ds_config_t *cfg) {
    memset(rs, 0, sizeof *rs);
    rs->cfg = cfg;
    rs->o = (rescore_opts_t){.chunk = RESCORE_DEFAULT_CHUNK,
                             .workers = RESCORE_DEFAULT_WORKERS,
                             .publish = true,
                             .snapshot = true,
                             .min_change = RESCORE_DEFAULT_MIN_CHANGE};
    rs->pool.cfg = cfg;
    rs->pool.o = &rs->o;
    pthread_mutex_init(&rs->pool.mu, NULL);
    pthread_cond_init(&rs->pool.cond, NULL);
}

static int parse_options(rescore_t *rs, int argc, char **argv) {
    static const struct option opts[] = {{"org", required_argument, 0, 'o'},
                                         {"chunk", required_argument, 0, 'c'},
                                         {"workers", required_argument, 0, 'w'},
                                         {"restart", no_argument, 0, 'r'},
                                         {"no-publish", no_argument, 0, 'P'},
                                         {"no-snapshot", no_argument, 0, 'N'},
                                         {"min-change", required_argument, 0, 'm'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    rescore_opts_t *o = &rs->o;
    const char *env_min = getenv(RESCORE_MIN_CHANGE_ENV);
    if (env_min && !parse_proba(env_min, &o->min_change))
        return usage_error("%s must be a number from 0 to 1", RESCORE_MIN_CHANGE_ENV);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(stdout); return 0;
        case 'o': o->org = optarg; break;
        case 'c':
            if (!parse_int(optarg, 1, RESCORE_MAX_CHUNK, &o->chunk))
                return usage_error("--chunk must be a number from 1 to %d", RESCORE_MAX_CHUNK);
            break;
        case 'w':
            if (!parse_int(optarg, 1, RESCORE_MAX_WORKERS, &o->workers))
                return usage_error("--workers must be a number from 1 to %d", RESCORE_MAX_WORKERS);
            break;
        case 'r': o->restart = true; break;
        case 'P': o->publish = false; break;
        case 'N': o->snapshot = false; break;
        case 'm':
            if (!parse_proba(optarg, &o->min_change))
                return usage_error("--min-change must be a number from 0 to 1");
            break;
        case ':': return usage_error("%s needs a value", argv[optind - 1]);
        default: return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);
    return RESCORE_GO_ON;
}

static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* Connects, looks up --org and takes the scope's lock: one rescore per
 * scope at a time (held by this session). */
static int connect_and_lock(rescore_t *rs) {
    PGresult *r = NULL;
    if (ds_pg_new(&rs->pg, rs->cfg->database_url, "dealscore-scoring-rescore", rs->err, sizeof rs->err) !=
            0 ||
        ds_pg_ensure(rs->pg, 30000, (const volatile int *)&stop_requested, rs->err, sizeof rs->err) != 0)
        return rescore_fail("could not connect to Postgres: %s\n", rs->err);
    if (rs->o.org) {
        const char *v[] = {rs->o.org};
        if (exec(rs->pg, "select id::text from public.orgs where slug = $1", 1, v, &r, rs->err,
                 sizeof rs->err) != 0)
            return rescore_fail("could not look up the org: %s\n", rs->err);
        if (PQntuples(r) != 1) {
            PQclear(r);
            return rescore_fail("no org \"%s\"\n", rs->o.org);
        }
        snprintf(rs->org_id, sizeof rs->org_id, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        rs->scope = rs->org_id;
    }
    if (exec(rs->pg, sql_lock, 1, &rs->scope, &r, rs->err, sizeof rs->err) != 0)
        return rescore_fail("could not take the rescore lock: %s\n", rs->err);
    bool locked = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!locked)
        return rescore_fail("another rescore of %s is running\n", rs->o.org ? rs->o.org : "every org");
    return RESCORE_GO_ON;
}

/* Abandons a run too old to resume (or every one, --restart) and reads
 * the latest unfinished run of the scope: where it got to. */
static int find_unfinished_run(rescore_t *rs) {
    PGresult *r = NULL;
    char hours[16];
    snprintf(hours, sizeof hours, "%d", RESCORE_RESUME_HOURS);
    const char *av[] = {rs->scope, rs->o.restart ? "true" : "false", hours};
    if (exec(rs->pg,
             "update dealscore_internal.rescore_runs set finished_at = now(), updated_at = now(), status = "
             "'abandoned'"
             " where org_id is not distinct from $1::uuid and finished_at is null"
             " and ($2::boolean or started_at <= now() - make_interval(hours => $3::int))",
             3, av, NULL, rs->err, sizeof rs->err) != 0 ||
        exec(rs->pg,
             "select id, (extract(epoch from as_of) * 1000000)::bigint, coalesce(last_org_id, org_id)::text,"
             " last_opportunity_id::text, scored,"
             " to_char(started_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
             " from dealscore_internal.rescore_runs where org_id is not distinct from $1::uuid and "
             "finished_at is null"
             " order by started_at desc, id desc limit 1",
             1, &rs->scope, &r, rs->err, sizeof rs->err) != 0)
        return rescore_fail("could not read the runs: %s\n", rs->err);
    snprintf(rs->cur_org, sizeof rs->cur_org, "%s", rs->o.org ? rs->org_id : ZERO_UUID);
    snprintf(rs->cur_id, sizeof rs->cur_id, "%s", ZERO_UUID);
    rs->resumed = PQntuples(r) == 1;
    if (rs->resumed) {
        rs->run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        rs->pool.as_of_us = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        if (!PQgetisnull(r, 0, 3)) {
            if (!PQgetisnull(r, 0, 2)) snprintf(rs->cur_org, sizeof rs->cur_org, "%s", PQgetvalue(r, 0, 2));
            snprintf(rs->cur_id, sizeof rs->cur_id, "%s", PQgetvalue(r, 0, 3));
        }
        rs->scored = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
        fprintf(stderr, "rescore: resuming run %lld started %s after %lld opportunities\n", rs->run_id,
                PQgetvalue(r, 0, 5), rs->scored);
    }
    PQclear(r);
    return RESCORE_GO_ON;
}

/* Counts what is left to score and, unless resuming, starts a run (its
 * as_of is the database's now). */
static int start_run(rescore_t *rs) {
    PGresult *r = NULL;
    const char *cv[] = {rs->cur_org, rs->cur_id};
    if (exec(rs->pg,
             rs->o.org
                 ? "select count(*) from public.opportunities where org_id = $1::uuid and outcome = 'open'"
                   " and not placeholder and id > $2::uuid"
                 : "select count(*) from public.opportunities where outcome = 'open' and not placeholder"
                   " and (org_id, id) > ($1::uuid, $2::uuid)",
             2, cv, &r, rs->err, sizeof rs->err) != 0)
        return rescore_fail("could not count open opportunities: %s\n", rs->err);
    rs->total = rs->scored + strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (!rs->resumed) {
        char tot[32];
        snprintf(tot, sizeof tot, "%lld", rs->total);
        const char *iv[] = {rs->scope, tot};
        if (exec(rs->pg,
                 "insert into dealscore_internal.rescore_runs (org_id, total) values ($1::uuid, $2::bigint)"
                 " returning id, (extract(epoch from as_of) * 1000000)::bigint",
                 2, iv, &r, rs->err, sizeof rs->err) != 0)
            return rescore_fail("could not start a run: %s\n", rs->err);
        rs->run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        rs->pool.as_of_us = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        PQclear(r);
    }
    ds_format_time_us(rs->pool.as_of_us, rs->asof_text, sizeof rs->asof_text);
    return RESCORE_GO_ON;
}

/* The producer of prediction.made (--no-publish: none); without Kafka the
 * run goes on without events. */
static void open_producer(rescore_t *rs) {
    pool_t *pool = &rs->pool;
    const ds_config_t *cfg = rs->cfg;
    if (!rs->o.publish) return;
    pool->topic = ds_config_topic(cfg, DS_TOPIC_PREDICTION_MADE);
    const char *topics[] = {pool->topic};
    if (ds_kafka_ensure_topics(cfg, topics, 1, cfg->topic_partitions, cfg->topic_replication, 10000, rs->err,
                               sizeof rs->err) != 0 ||
        ds_producer_new(&pool->producer, cfg, rs->err, sizeof rs->err) != 0) {
        ds_warn("rescore: Kafka is not usable (%s): prediction.made will not be published", rs->err);
        pool->producer = NULL;
    } else {
        ds_producer_set_delivery_cb(pool->producer, on_delivery, pool);
    }
}

/* --workers threads, each with its own session, org cache and scorer,
 * taking chunks from the pool's queue. */
static int start_workers(rescore_t *rs) {
    pool_t *pool = &rs->pool;
    /* At most workers + 1 chunks are in flight (walk), so a push never waits. */
    pool->queue = ds_queue_new((size_t)rs->o.workers + 1);
    pool->n_workers = rs->o.workers;
    pool->workers = ds_calloc((size_t)rs->o.workers, sizeof *pool->workers);
    for (int i = 0; i < rs->o.workers; i++) {
        worker_t *wk = &pool->workers[i];
        wk->pool = pool;
        if (ds_pg_new(&wk->pg, rs->cfg->database_url, "dealscore-scoring-rescore", rs->err, sizeof rs->err) !=
            0)
            return rescore_fail("%s\n", rs->err);
        scorer_register(wk->pg);
        wk->orgs = ds_org_cache_new(3600 * 1000);
        wk->scorer = scorer_new(60000, rs->cfg->prior_min_closed);
    }
    for (int i = 0; i < rs->o.workers; i++) {
        if (pthread_create(&pool->workers[i].thread, NULL, worker_main, &pool->workers[i]) != 0)
            ds_panic("could not start a rescore worker thread");
        rs->started++;
    }
    return RESCORE_GO_ON;
}

/* Lets the workers finish the chunks they hold and joins them. */
static void stop_workers(rescore_t *rs) {
    pool_t *pool = &rs->pool;
    ds_queue_shutdown(pool->queue);
    for (int i = 0; i < rs->started; i++) pthread_join(pool->workers[i].thread, NULL);
    rs->started = 0;
}

static void fail_once(rescore_t *rs, const char *fmt, const char *why) {
    if (rs->failed) return;
    rs->failed = true;
    snprintf(rs->fail_text, sizeof rs->fail_text, fmt, why);
}

/* Records the chunks that are committed, in order: the run resumes after
 * the last one whose predecessors are all committed too. A failed chunk
 * fails the run. Prints the progress every 2 s. */
static void record_progress(rescore_t *rs) {
    pool_t *pool = &rs->pool;
    long long advanced = 0;
    bool moved = false;
    char rec_org[37] = "", rec_id[37] = "";
    pthread_mutex_lock(&pool->mu);
    while (rs->flight_head && rs->flight_head->status == 1) {
        job_t *j = rs->flight_head;
        advanced += (long long)j->scored;
        moved = true;
        snprintf(rec_org, sizeof rec_org, "%s", j->last_org);
        snprintf(rec_id, sizeof rec_id, "%s", j->last_id);
        rs->flight_head = j->next_flight;
        if (!rs->flight_head) rs->flight_tail = NULL;
        rs->in_flight--;
        free(j);
    }
    for (job_t *j = rs->flight_head; j; j = j->next_flight)
        if (j->status < 0) fail_once(rs, "%s", j->errstr);
    pthread_mutex_unlock(&pool->mu);
    if (moved) {
        rs->scored += advanced;
        rs->done_here += advanced;
        char id[32], sc[32];
        snprintf(id, sizeof id, "%lld", rs->run_id);
        snprintf(sc, sizeof sc, "%lld", rs->scored);
        const char *v[] = {id, rec_org, rec_id, sc};
        if (main_exec(rs->pg, rs->scope,
                      "update dealscore_internal.rescore_runs set last_org_id = $2::uuid, "
                      "last_opportunity_id = $3::uuid,"
                      " scored = $4::bigint, updated_at = now() where id = $1::bigint",
                      4, v, NULL, rs->err, sizeof rs->err) != 0)
            fail_once(rs, "could not record the progress: %.500s", rs->err);
    }
    int64_t now = ds_mono_us();
    if (now - rs->last_progress >= RESCORE_PROGRESS_US) {
        rs->last_progress = now;
        fprintf(stderr, "rescore: %lld/%lld (%.0f/s)\n", rs->scored, rs->total,
                (double)rs->done_here / ((double)(now - rs->t0) / 1e6));
    }
    if (pool->producer) ds_producer_poll(pool->producer, 0);
}

/* Hands out nothing more; chunks no worker has taken are dropped. */
static void drop_queued(rescore_t *rs) {
    pool_t *pool = &rs->pool;
    void *q;
    while (ds_queue_try_pop(pool->queue, &q, 1)) {
        pthread_mutex_lock(&pool->mu);
        ((job_t *)q)->status = 2;
        pthread_mutex_unlock(&pool->mu);
    }
}

/* Reads the next page of opportunities and queues it as a chunk; the end
 * of the walk sets rs->end, a failure rs->failed. */
static void queue_next_chunk(rescore_t *rs) {
    pool_t *pool = &rs->pool;
    PGresult *r = NULL;
    char lim[16];
    snprintf(lim, sizeof lim, "%d", rs->o.chunk);
    const char *v[] = {rs->o.org ? rs->org_id : rs->cur_org, rs->cur_id, lim};
    if (main_exec(rs->pg, rs->scope, rs->o.org ? sql_page_org : sql_page_all, 3, v, &r, rs->err,
                  sizeof rs->err) != 0) {
        PQclear(r);
        rs->failed = true;
        snprintf(rs->fail_text, sizeof rs->fail_text, "could not read opportunities: %.500s", rs->err);
        return;
    }
    size_t n = (size_t)PQntuples(r);
    if (n == 0) {
        rs->end = true;
        PQclear(r);
        return;
    }
    job_t *j = ds_calloc(1, sizeof *j);
    j->seq = rs->seq++;
    j->keys = r; /* now the job's */
    j->n_keys = n;
    snprintf(j->last_id, sizeof j->last_id, "%s", PQgetvalue(j->keys, (int)n - 1, 0));
    snprintf(j->last_org, sizeof j->last_org, "%s", PQgetvalue(j->keys, (int)n - 1, 1));
    snprintf(rs->cur_org, sizeof rs->cur_org, "%s", j->last_org);
    snprintf(rs->cur_id, sizeof rs->cur_id, "%s", j->last_id);
    pthread_mutex_lock(&pool->mu);
    if (rs->flight_tail)
        rs->flight_tail->next_flight = j;
    else
        rs->flight_head = j;
    rs->flight_tail = j;
    rs->in_flight++;
    pthread_mutex_unlock(&pool->mu);
    ds_queue_push(pool->queue, j);
}

/* Waits for a chunk to finish, waking every 200 ms for signals. Returns
 * false when the walk is over: nothing is being scored and nothing is
 * left to record or hand out. */
static bool wait_for_chunk(rescore_t *rs, bool stopping) {
    pool_t *pool = &rs->pool;
    pthread_mutex_lock(&pool->mu);
    bool busy = false;
    for (job_t *j = rs->flight_head; j; j = j->next_flight) busy |= j->status == 0;
    bool head_done = rs->flight_head && rs->flight_head->status == 1; /* record it first */
    if (head_done || (!busy && (rs->end || stopping))) {
        pthread_mutex_unlock(&pool->mu);
        return head_done;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 200 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&pool->cond, &pool->mu, &ts);
    pthread_mutex_unlock(&pool->mu);
    return true;
}

/* Pages through the open opportunities, keeping up to workers + 1 chunks
 * in flight, and records the progress, until the end, a failure or a
 * signal; then stops the workers. */
static int walk(rescore_t *rs) {
    fprintf(stderr, "rescore: run %lld, %s, as of %s: %lld open opportunities, %d workers, chunks of %d\n",
            rs->run_id, rs->o.org ? rs->o.org : "every org", rs->asof_text, rs->total, rs->o.workers,
            rs->o.chunk);
    rs->t0 = rs->last_progress = ds_mono_us();
    for (;;) {
        record_progress(rs);
        bool stopping = rs->failed || stop_requested;
        if (stopping) {
            drop_queued(rs);
        } else if (!rs->end && rs->in_flight < rs->o.workers + 1) {
            queue_next_chunk(rs);
            continue;
        }
        if (!wait_for_chunk(rs, stopping)) break;
    }
    rs->finished = rs->end && !rs->failed && !stop_requested && !rs->flight_head;
    stop_workers(rs);
    rs->secs = (double)(ds_mono_us() - rs->t0) / 1e6;
    return RESCORE_GO_ON;
}

/* Marks a finished run, reports a failure and flushes prediction.made. */
static int close_run(rescore_t *rs) {
    if (rs->finished) {
        char id[32];
        snprintf(id, sizeof id, "%lld", rs->run_id);
        const char *v[] = {id};
        if (main_exec(rs->pg, rs->scope,
                      "update dealscore_internal.rescore_runs set finished_at = now(), updated_at = now(), "
                      "status = 'finished'"
                      " where id = $1::bigint",
                      1, v, NULL, rs->err, sizeof rs->err) != 0) {
            snprintf(rs->fail_text, sizeof rs->fail_text, "could not mark the run finished: %.500s", rs->err);
            rs->finished = false;
            rs->failed = true;
        }
    }
    if (rs->failed) fprintf(stderr, "dealscore-scoring rescore: %s\n", rs->fail_text);
    ds_producer_t *producer = rs->pool.producer;
    if (producer && ds_producer_flush(producer, 30000) != 0)
        ds_warn("rescore: %d prediction.made messages still undelivered", ds_producer_pending(producer));
    return RESCORE_GO_ON;
}

static void tally_add(tally_t *sum, const tally_t *t) {
    sum->changed += t->changed;
    sum->written += t->written;
    sum->prior += t->prior;
    sum->published += t->published;
    sum->us_load += t->us_load;
    sum->us_features += t->us_features;
    sum->us_snapshot += t->us_snapshot;
    sum->conflicts += t->conflicts;
    sum->persist.us_score += t->persist.us_score;
    sum->persist.us_previous += t->persist.us_previous;
    sum->persist.us_json += t->persist.us_json;
    sum->persist.us_write += t->persist.us_write;
    for (int k = 0; k < t->n_versions; k++)
        for (long long m = 0; m < t->version_n[k]; m++) count_version(sum, t->versions[k]);
}

/* The summary on stdout (the workers' times in the log); returns the exit
 * status. */
static int print_summary(const rescore_t *rs) {
    const pool_t *pool = &rs->pool;
    double secs = rs->secs;
    tally_t sum = {0};
    for (int i = 0; i < pool->n_workers; i++) tally_add(&sum, &pool->workers[i].tally);
    printf(
        "rescore: run %lld %s: %lld opportunities scored as of %s (%lld in this process, %.1f s, %.0f/s)\n",
        rs->run_id,
        rs->finished ? "finished"
        : rs->failed ? "failed"
                     : "interrupted",
        rs->scored, rs->asof_text, rs->done_here, secs, secs > 0 ? (double)rs->done_here / secs : 0.0);
    printf("rescore: %lld changed, %lld written (moved by more than %g, other drivers or model, or first)",
           sum.changed, sum.written, rs->o.min_change);
    if (sum.prior) printf(", %lld with a cold-start prior", sum.prior);
    for (int i = 0; i < sum.n_versions; i++)
        printf("%s%s %lld", i ? ", " : "; models: ", sum.versions[i], sum.version_n[i]);
    printf("\n");
    if (rs->o.publish)
        printf("rescore: %lld prediction.made published%s%s\n", sum.published,
               pool->producer ? "" : " (Kafka unavailable)",
               pool->delivery_failed ? ", some not delivered (see the log)" : "");
    if (!rs->finished) printf("rescore: the next run resumes after %lld opportunities\n", rs->scored);
    ds_info(
        "rescore: worker seconds (summed): load %.2f, features %.2f, snapshots %.2f, scoring %.2f,"
        " previous %.2f, json %.2f, writing %.2f; %lld chunks written again over an earlier attempt's rows",
        (double)sum.us_load / 1e6, (double)sum.us_features / 1e6, (double)sum.us_snapshot / 1e6,
        (double)sum.persist.us_score / 1e6, (double)sum.persist.us_previous / 1e6,
        (double)sum.persist.us_json / 1e6, (double)sum.persist.us_write / 1e6, sum.conflicts);
    fflush(stdout);
    return rs->finished ? 0 : 1;
}

static void rescore_close(rescore_t *rs) {
    pool_t *pool = &rs->pool;
    if (rs->started) stop_workers(rs);
    while (rs->flight_head) {
        job_t *j = rs->flight_head;
        rs->flight_head = j->next_flight;
        PQclear(j->keys);
        free(j);
    }
    ds_producer_destroy(pool->producer);
    free(pool->topic);
    for (int i = 0; pool->workers && i < pool->n_workers; i++) {
        scorer_destroy(pool->workers[i].scorer);
        ds_org_cache_destroy(pool->workers[i].orgs);
        ds_pg_destroy(pool->workers[i].pg);
    }
    free(pool->workers);
    ds_pg_destroy(rs->pg);
    ds_queue_destroy(pool->queue);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cond);
}

int scoring_cmd_rescore(const ds_config_t *cfg, int argc, char **argv) {
    keep_freed_memory();
    rescore_t *rs = ds_malloc(sizeof *rs);
    rescore_init(rs, cfg);
    int rc = parse_options(rs, argc, argv);
    if (rc == RESCORE_GO_ON) {
        catch_signals();
        rc = connect_and_lock(rs);
    }
    if (rc == RESCORE_GO_ON) rc = find_unfinished_run(rs);
    if (rc == RESCORE_GO_ON) rc = start_run(rs);
    if (rc == RESCORE_GO_ON) {
        open_producer(rs);
        rc = start_workers(rs);
    }
    if (rc == RESCORE_GO_ON) rc = walk(rs);
    if (rc == RESCORE_GO_ON) rc = close_run(rs);
    if (rc == RESCORE_GO_ON) rc = print_summary(rs);
    rescore_close(rs);
    free(rs);
    return rc;
}
