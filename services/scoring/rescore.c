/* dealscore-scoring rescore: the nightly re-score of every open opportunity
 * (a Kubernetes CronJob). Walks the open, non-placeholder opportunities of
 * one org (or of every org) in (org_id, id) order in chunks; each chunk goes
 * through the same loader, feature engine, scorer and persistence as the
 * worker and /api/predict. Progress is stored in dealscore.rescore_runs
 * after every chunk, so an interrupted run resumes where it stopped.
 *
 * Two threads share the work: a fetch thread (its own Postgres session)
 * loads the next chunk's raw rows and computes its features while the main
 * thread scores and writes the chunk before it. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dealscore/common.h"
#include "dealscore/kafka.h"
#include "dealscore/log.h"
#include "scoring.h"

#define RESCORE_DEFAULT_CHUNK 2000
#define RESCORE_MAX_CHUNK 50000
#define RESCORE_ATTEMPTS 6
#define RESCORE_RESUME_HOURS 24
#define RESCORE_PROGRESS_US 2000000
#define ZERO_UUID "00000000-0000-0000-0000-000000000000"

/* Set by SIGTERM/SIGINT: stop after the chunk in hand. An int, because
 * ds_pg_ensure and ds_pg_tx_run take the stop flag as const volatile int *. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

typedef struct {
    const char *org;
    int chunk;
    bool restart;
    bool publish;
    bool snapshot;
} rescore_opts_t;

/* One chunk: the keyset page, its raw rows and features, ready to score. */
typedef struct {
    PGresult *keys; /* id, org_id, account_id */
    ds_opp_batch_t *batch;
    scoring_item_t *items;
    size_t n;
    double *values;
    char **fjson, **mjson;
    char last_org[37], last_id[37];
    bool end; /* the walk is over (no chunk) */
    int err;  /* fetch failed: the error class, message in errstr */
    char errstr[512];
} chunk_t;

typedef struct {
    const ds_config_t *cfg;
    const rescore_opts_t *o;
    const char *org_id; /* NULL: every org */
    int64_t as_of_us;
    /* fetch thread */
    ds_pg_t *pg;
    ds_org_cache_t *orgs;
    uint64_t generation;
    char cur_org[37], cur_id[37];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    chunk_t *ready; /* the next chunk, handed to the main thread */
    bool taken;     /* the main thread wants another */
    bool quit;
} fetcher_t;

static void chunk_destroy(chunk_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        scoring_item_clear(&c->items[i]);
        free(c->fjson ? c->fjson[i] : NULL);
        free(c->mjson ? c->mjson[i] : NULL);
    }
    free(c->items);
    free(c->values);
    free(c->fjson);
    free(c->mjson);
    ds_opp_batch_destroy(c->batch);
    PQclear(c->keys);
    free(c);
}

static const char *sql_page_org =
    "select id::text, org_id::text, account_id::text from public.opportunities"
    " where org_id = $1::uuid and outcome = 'open' and not placeholder and id > $2::uuid"
    " order by id limit $3::int";
static const char *sql_page_all =
    "select id::text, org_id::text, account_id::text from public.opportunities"
    " where outcome = 'open' and not placeholder and (org_id, id) > ($1::uuid, $2::uuid)"
    " order by org_id, id limit $3::int";

/* Reads the next page after (cur_org, cur_id) and computes its features as
 * of the run's as_of. Returns 0 with *out (end set when nothing is left), or
 * a pg error class with the message in errstr. */
static int fetch_once(fetcher_t *f, chunk_t **out, char *errstr, size_t errsz) {
    chunk_t *c = ds_calloc(1, sizeof *c);
    char lim[16];
    snprintf(lim, sizeof lim, "%d", f->o->chunk);
    const char *v[] = {f->org_id ? f->org_id : f->cur_org, f->cur_id, lim};
    int rc = ds_pg_exec_params(f->pg, f->org_id ? sql_page_org : sql_page_all, 3, v, NULL, NULL, &c->keys, errstr, errsz);
    if (rc != 0) goto fail;
    size_t n = (size_t)PQntuples(c->keys);
    if (n == 0) {
        c->end = true;
        *out = c;
        return 0;
    }
    const char **ids = ds_calloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = PQgetvalue(c->keys, (int)i, 0);
    rc = ds_opp_batch_load(f->pg, ids, n, &c->batch, errstr, errsz);
    free(ids);
    if (rc != 0) goto fail;
    c->items = ds_calloc(n, sizeof *c->items);
    c->values = ds_malloc(n * DS_FEATURE_COUNT * sizeof *c->values);
    c->fjson = ds_calloc(n, sizeof *c->fjson);
    c->mjson = ds_calloc(n, sizeof *c->mjson);
    for (size_t i = 0; i < n; i++) {
        const char *id = PQgetvalue(c->keys, (int)i, 0), *org = PQgetvalue(c->keys, (int)i, 1);
        int bi = ds_opp_batch_find(c->batch, id);
        if (bi < 0 || ds_opp_batch_placeholder(c->batch, (size_t)bi)) continue; /* gone or changed meanwhile */
        const ds_org_ctx_t *oc = NULL;
        rc = ds_org_cache_get(f->orgs, f->pg, org, &oc, errstr, errsz);
        if (rc != 0) goto fail;
        ds_opp_raw_t *raw = ds_opp_batch_raw(c->batch, (size_t)bi);
        raw->stages = oc->stages;
        double *vals = c->values + c->n * DS_FEATURE_COUNT;
        ds_feature_vec_t vec;
        if (ds_features_compute(raw, f->as_of_us, oc->winrate, oc->lexicon, &vec) != 0) continue;
        memcpy(vals, vec.values, sizeof vec.values);
        if (f->o->snapshot) c->fjson[c->n] = ds_features_to_json(&vec);
        /* The MEDDICC evidence borrows the batch's transcripts: serialize now. */
        c->mjson[c->n] = ds_meddicc_result_to_json(&vec.meddicc);
        scoring_item_t *it = &c->items[c->n++];
        it->org_id = org;
        it->opp_id = id;
        it->account_id = PQgetisnull(c->keys, (int)i, 2) ? NULL : PQgetvalue(c->keys, (int)i, 2);
        it->as_of_us = f->as_of_us;
        it->values = vals;
        it->meddicc_json = c->mjson[c->n - 1];
    }
    snprintf(c->last_id, sizeof c->last_id, "%s", PQgetvalue(c->keys, (int)n - 1, 0));
    snprintf(c->last_org, sizeof c->last_org, "%s", PQgetvalue(c->keys, (int)n - 1, 1));
    *out = c;
    return 0;
fail:
    chunk_destroy(c);
    return rc;
}

/* The next chunk with retries on a database that is away. */
static chunk_t *fetch_next(fetcher_t *f) {
    char err[512] = "";
    int rc = DS_ERETRY;
    uint64_t seed = (uint64_t)ds_now_us();
    for (int attempt = 0; attempt < RESCORE_ATTEMPTS && !stop_requested; attempt++) {
        if (attempt) {
            ds_warn("rescore: reading the next chunk failed (%s); retrying", err);
            struct timespec ts = {0, 0};
            int ms = ds_pg_backoff_ms(attempt, &seed) * 4;
            ts.tv_sec = ms / 1000;
            ts.tv_nsec = (long)(ms % 1000) * 1000000L;
            nanosleep(&ts, NULL); /* backoff before the retry */
            if (!ds_pg_is_connected(f->pg)) ds_pg_reset(f->pg);
        }
        rc = ds_pg_ensure(f->pg, 10000, (const volatile int *)&stop_requested, err, sizeof err);
        if (rc != 0) continue;
        if (ds_pg_generation(f->pg) != f->generation) {
            /* A new session: the cached org contexts may be stale. */
            if (f->generation) ds_org_cache_clear(f->orgs);
            f->generation = ds_pg_generation(f->pg);
        }
        chunk_t *c = NULL;
        rc = fetch_once(f, &c, err, sizeof err);
        if (rc == 0) return c;
        if (rc != DS_ERETRY && ds_pg_is_connected(f->pg)) break;
    }
    chunk_t *c = ds_calloc(1, sizeof *c);
    c->err = rc ? rc : DS_ESHUTDOWN;
    snprintf(c->errstr, sizeof c->errstr, "%s", stop_requested && !err[0] ? "stopped" : err);
    return c;
}

/* The fetch thread: keeps one chunk ready ahead of the main thread. */
static void *fetch_main(void *arg) {
    fetcher_t *f = arg;
    for (;;) {
        chunk_t *c = fetch_next(f);
        bool last = c->end || c->err;
        if (!last) {
            snprintf(f->cur_org, sizeof f->cur_org, "%s", c->last_org);
            snprintf(f->cur_id, sizeof f->cur_id, "%s", c->last_id);
        }
        pthread_mutex_lock(&f->mu);
        while (f->ready && !f->quit) pthread_cond_wait(&f->cond, &f->mu);
        if (f->quit) {
            pthread_mutex_unlock(&f->mu);
            chunk_destroy(c);
            break;
        }
        f->ready = c;
        pthread_cond_broadcast(&f->cond);
        /* Wait until the main thread takes it and asks for more. */
        while (!f->taken && !f->quit) pthread_cond_wait(&f->cond, &f->mu);
        f->taken = false;
        bool quit = f->quit || last;
        pthread_mutex_unlock(&f->mu);
        if (quit) break;
    }
    return NULL;
}

static chunk_t *take_chunk(fetcher_t *f) {
    pthread_mutex_lock(&f->mu);
    while (!f->ready) pthread_cond_wait(&f->cond, &f->mu);
    chunk_t *c = f->ready;
    f->ready = NULL;
    f->taken = true;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->mu);
    return c;
}

/* ---- the main thread: scoring, writing, progress ---------------------------------------- */

typedef struct {
    ds_pg_t *pg;
    ds_org_cache_t *orgs;
    scorer_t *scorer;
    const ds_config_t *cfg;
    const rescore_opts_t *o;
    long long run_id;
    long long scored;   /* by this run, including earlier attempts of it */
    long long changed;  /* probability moved (or first score) in this process */
    long long prior;    /* scored with the stage prior in this process */
    long long published, delivery_failed;
    ds_producer_t *producer;
    char *topic;
    char versions[8][64];
    long long version_n[8];
    int n_versions;
} writer_t;

static const char *sql_snapshot =
    "insert into public.features_snapshot (org_id, opportunity_id, as_of, feature_version, features, meddicc)"
    " select u.o, u.i, $3::timestamptz, $4, u.f::jsonb, u.m::jsonb"
    " from unnest($1::uuid[], $2::uuid[], $5::text[], $6::text[]) as u(o, i, f, m)"
    " on conflict (opportunity_id, as_of, feature_version) do nothing";

static int write_snapshots(writer_t *w, chunk_t *c, char *errstr, size_t errsz) {
    const char **orgs = ds_calloc(c->n + 1, sizeof *orgs), **ids = ds_calloc(c->n + 1, sizeof *ids);
    for (size_t i = 0; i < c->n; i++) {
        orgs[i] = c->items[i].org_id;
        ids[i] = c->items[i].opp_id;
    }
    char asof[40];
    ds_format_time_us(c->items[0].as_of_us, asof, sizeof asof);
    char *a1 = ds_pg_array_text(orgs, c->n), *a2 = ds_pg_array_text(ids, c->n),
         *a5 = ds_pg_array_text((const char *const *)c->fjson, c->n),
         *a6 = ds_pg_array_text((const char *const *)c->mjson, c->n);
    const char *v[] = {a1, a2, asof, DS_FEATURE_VERSION, a5, a6};
    int rc = ds_pg_exec_params(w->pg, sql_snapshot, 6, v, NULL, NULL, NULL, errstr, errsz);
    free(a1);
    free(a2);
    free(a5);
    free(a6);
    free(orgs);
    free(ids);
    return rc;
}

static void on_delivery(void *opaque, void *msg_opaque, int err, const char *errmsg, const rd_kafka_message_t *m) {
    (void)msg_opaque;
    (void)m;
    writer_t *w = opaque;
    if (err != 0) {
        if (w->delivery_failed++ == 0) ds_warn("rescore: prediction.made not delivered: %s", errmsg);
    }
}

static void count_version(writer_t *w, const char *version) {
    for (int i = 0; i < w->n_versions; i++)
        if (strcmp(w->versions[i], version) == 0) {
            w->version_n[i]++;
            return;
        }
    if (w->n_versions < 8) {
        snprintf(w->versions[w->n_versions], sizeof w->versions[0], "%s", version);
        w->version_n[w->n_versions++] = 1;
    }
}

/* Scores and writes one chunk, then records the progress. Returns 0 or a
 * pg error class; retried by the caller. */
static int write_chunk(writer_t *w, chunk_t *c, char *errstr, size_t errsz) {
    int rc;
    if (c->n > 0) {
        if (w->o->snapshot && (rc = write_snapshots(w, c, errstr, errsz)) != 0) return rc;
        for (size_t i = 0; i < c->n; i++) scoring_item_clear(&c->items[i]);
        rc = scoring_persist(w->pg, w->orgs, w->scorer, w->cfg->top_k, c->items, c->n, errstr, errsz);
        if (rc != 0) return rc;
    }
    char id[32], scored[32];
    snprintf(id, sizeof id, "%lld", w->run_id);
    snprintf(scored, sizeof scored, "%lld", w->scored + (long long)c->n);
    const char *v[] = {id, c->last_org, c->last_id, scored};
    return ds_pg_exec_params(w->pg,
                             "update dealscore.rescore_runs set last_org_id = $2::uuid, last_opportunity_id = $3::uuid,"
                             " scored = $4::bigint, updated_at = now() where id = $1::bigint",
                             4, v, NULL, NULL, NULL, errstr, errsz);
}

static void publish_chunk(writer_t *w, const chunk_t *c) {
    for (size_t i = 0; i < c->n; i++) {
        const scoring_item_t *it = &c->items[i];
        count_version(w, it->version);
        if (it->score.is_prior) w->prior++;
        bool moved = isnan(it->previous) || fabs(it->score.proba - it->previous) > 1e-9;
        if (!moved) continue;
        w->changed++;
        if (!w->producer) continue;
        uint8_t *buf = NULL;
        size_t len = 0;
        char eid[37];
        scoring_event(it, &buf, &len, eid);
        ds_event_meta_t meta = {.id = eid, .source = "/dealscore/scoring/rescore", .type = DS_CE_TYPE_PREDICTION_MADE,
                                .time_us = it->as_of_us};
        if (ds_producer_send(w->producer, w->topic, it->opp_id, strlen(it->opp_id), buf, len, &meta, NULL) == 0)
            w->published++;
        else
            w->delivery_failed++;
        free(buf);
    }
    if (w->producer) ds_producer_poll(w->producer, 0);
}

/* ---- the command ---------------------------------------------------------------------- */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dealscore-scoring rescore: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    return 2;
}

static void help(FILE *out) {
    fprintf(out,
            "usage: dealscore-scoring rescore [--org SLUG] [options]\n"
            "\n"
            "Re-scores every open opportunity (of one org, or of every org) with the org's\n"
            "active model or the stage prior, through the same feature engine and scorer as\n"
            "the worker, all as of the run's start. Resumes the latest unfinished run of the\n"
            "same scope started within %d hours. SIGTERM or SIGINT stops after the current\n"
            "chunk; the next run resumes there.\n"
            "\n"
            "  --org SLUG     only this org (default: every org)\n"
            "  --chunk N      opportunities per chunk (default %d)\n"
            "  --restart      abandon an unfinished run and start over\n"
            "  --no-publish   do not publish prediction.made for the scores that moved\n"
            "  --no-snapshot  do not store the feature vectors in features_snapshot\n"
            "\n"
            "Progress goes to stderr every 2 s, the summary to stdout.\n"
            "Exit status: 0 finished, 1 failed or interrupted (resumable), 2 bad usage.\n",
            RESCORE_RESUME_HOURS, RESCORE_DEFAULT_CHUNK);
}

static int query_one(ds_pg_t *pg, const char *sql, int n, const char *const *v, PGresult **r, char *err, size_t errsz) {
    return ds_pg_exec_params(pg, sql, n, v, NULL, NULL, r, err, errsz);
}

int scoring_cmd_rescore(const ds_config_t *cfg, int argc, char **argv) {
    rescore_opts_t o = {.chunk = RESCORE_DEFAULT_CHUNK, .publish = true, .snapshot = true};
    static const struct option opts[] = {{"org", required_argument, 0, 'o'},
                                         {"chunk", required_argument, 0, 'c'},
                                         {"restart", no_argument, 0, 'r'},
                                         {"no-publish", no_argument, 0, 'P'},
                                         {"no-snapshot", no_argument, 0, 'N'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(stdout); return 0;
        case 'o': o.org = optarg; break;
        case 'c': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > RESCORE_MAX_CHUNK)
                return usage_error("--chunk must be a number from 1 to %d", RESCORE_MAX_CHUNK);
            o.chunk = (int)v;
            break;
        }
        case 'r': o.restart = true; break;
        case 'P': o.publish = false; break;
        case 'N': o.snapshot = false; break;
        case ':': return usage_error("%s needs a value", argv[optind - 1]);
        default: return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int rc = 1;
    char err[1024];
    char org_id[37] = "";
    writer_t w = {.cfg = cfg, .o = &o};
    fetcher_t f = {.cfg = cfg, .o = &o};
    bool fetch_started = false;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cond, NULL);
    PGresult *r = NULL;

    if (ds_pg_new(&w.pg, cfg->database_url, "dealscore-scoring-rescore", err, sizeof err) != 0 ||
        ds_pg_ensure(w.pg, 30000, (const volatile int *)&stop_requested, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring rescore: could not connect to Postgres: %s\n", err);
        goto out;
    }
    scorer_register(w.pg);
    if (o.org) {
        const char *v[] = {o.org};
        if (query_one(w.pg, "select id::text from public.orgs where slug = $1", 1, v, &r, err, sizeof err) != 0) {
            fprintf(stderr, "dealscore-scoring rescore: could not look up the org: %s\n", err);
            goto out;
        }
        if (PQntuples(r) != 1) {
            fprintf(stderr, "dealscore-scoring rescore: no org \"%s\"\n", o.org);
            goto out;
        }
        snprintf(org_id, sizeof org_id, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        r = NULL;
    }
    const char *scope[] = {o.org ? org_id : NULL};

    /* One rescore per scope at a time (held for this session). */
    if (query_one(w.pg, "select pg_try_advisory_lock(hashtext('dealscore.rescore'), hashtext(coalesce($1, '*')))", 1,
                  scope, &r, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring rescore: could not take the rescore lock: %s\n", err);
        goto out;
    }
    bool locked = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    r = NULL;
    if (!locked) {
        fprintf(stderr, "dealscore-scoring rescore: another rescore of %s is running\n", o.org ? o.org : "every org");
        goto out;
    }

    /* Resume or start a run. */
    char resume_hours[16];
    snprintf(resume_hours, sizeof resume_hours, "%d", RESCORE_RESUME_HOURS);
    if (query_one(w.pg,
                  "update dealscore.rescore_runs set finished_at = now(), status = 'abandoned'"
                  " where org_id is not distinct from $1::uuid and finished_at is null and ($2::boolean"
                  " or started_at <= now() - make_interval(hours => $3::int))",
                  3, (const char *const[]){scope[0], o.restart ? "true" : "false", resume_hours}, NULL, err,
                  sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring rescore: could not read the runs: %s\n", err);
        goto out;
    }
    if (query_one(w.pg,
                  "select id, (extract(epoch from as_of) * 1000000)::bigint, coalesce(last_org_id, org_id)::text,"
                  " last_opportunity_id::text, scored, to_char(started_at at time zone 'UTC',"
                  " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                  " from dealscore.rescore_runs where org_id is not distinct from $1::uuid and finished_at is null"
                  " order by started_at desc, id desc limit 1",
                  1, scope, &r, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring rescore: could not read the runs: %s\n", err);
        goto out;
    }
    snprintf(f.cur_org, sizeof f.cur_org, "%s", o.org ? org_id : ZERO_UUID);
    snprintf(f.cur_id, sizeof f.cur_id, "%s", ZERO_UUID);
    bool resumed = PQntuples(r) == 1;
    if (resumed) {
        w.run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        f.as_of_us = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        if (!PQgetisnull(r, 0, 3)) {
            if (!PQgetisnull(r, 0, 2)) snprintf(f.cur_org, sizeof f.cur_org, "%s", PQgetvalue(r, 0, 2));
            snprintf(f.cur_id, sizeof f.cur_id, "%s", PQgetvalue(r, 0, 3));
        }
        w.scored = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
        fprintf(stderr, "rescore: resuming run %lld started %s after %lld opportunities\n", w.run_id,
                PQgetvalue(r, 0, 5), w.scored);
    }
    PQclear(r);
    r = NULL;
    /* What is left, for the progress line. */
    const char *cv[] = {f.cur_org, f.cur_id};
    if (query_one(w.pg,
                  o.org ? "select count(*) from public.opportunities where org_id = $1::uuid and outcome = 'open'"
                          " and not placeholder and id > $2::uuid"
                        : "select count(*) from public.opportunities where outcome = 'open' and not placeholder"
                          " and (org_id, id) > ($1::uuid, $2::uuid)",
                  2, cv, &r, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring rescore: could not count open opportunities: %s\n", err);
        goto out;
    }
    long long remaining = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    r = NULL;
    long long total = w.scored + remaining;
    if (!resumed) {
        char tot[32];
        snprintf(tot, sizeof tot, "%lld", total);
        const char *iv[] = {scope[0], tot};
        if (query_one(w.pg,
                      "insert into dealscore.rescore_runs (org_id, total) values ($1::uuid, $2::bigint)"
                      " returning id, (extract(epoch from as_of) * 1000000)::bigint",
                      2, iv, &r, err, sizeof err) != 0) {
            fprintf(stderr, "dealscore-scoring rescore: could not start a run: %s\n", err);
            goto out;
        }
        w.run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        f.as_of_us = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        PQclear(r);
        r = NULL;
    }
    char asof_text[40];
    ds_format_time_us(f.as_of_us, asof_text, sizeof asof_text);

    /* Events for the scores that moved (best effort: the rows are what counts). */
    if (o.publish) {
        w.topic = ds_config_topic(cfg, DS_TOPIC_PREDICTION_MADE);
        const char *topics[] = {w.topic};
        if (ds_kafka_ensure_topics(cfg, topics, 1, cfg->topic_partitions, cfg->topic_replication, 10000, err,
                                   sizeof err) != 0 ||
            ds_producer_new(&w.producer, cfg, err, sizeof err) != 0) {
            ds_warn("rescore: Kafka is not usable (%s): prediction.made will not be published", err);
            w.producer = NULL;
        } else {
            ds_producer_set_delivery_cb(w.producer, on_delivery, &w);
        }
    }

    w.orgs = ds_org_cache_new(3600 * 1000);
    w.scorer = scorer_new(60000);
    f.org_id = o.org ? org_id : NULL;
    f.orgs = ds_org_cache_new(3600 * 1000);
    if (ds_pg_new(&f.pg, cfg->database_url, "dealscore-scoring-rescore-fetch", err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring rescore: %s\n", err);
        goto out;
    }
    if (pthread_create(&f.thread, NULL, fetch_main, &f) != 0) ds_panic("could not start the fetch thread");
    fetch_started = true;

    fprintf(stderr, "rescore: run %lld, %s, as of %s: %lld open opportunities%s\n", w.run_id,
            o.org ? o.org : "every org", asof_text, total, resumed ? " in scope" : "");
    int64_t t0 = ds_mono_us(), last_progress = t0;
    long long done_here = 0;
    bool finished = false, failed = false;
    uint64_t seed = (uint64_t)t0;
    while (!stop_requested) {
        chunk_t *ch = take_chunk(&f);
        if (ch->err) {
            fprintf(stderr, "dealscore-scoring rescore: could not read opportunities: %s\n", ch->errstr);
            failed = ch->err != DS_ESHUTDOWN;
            chunk_destroy(ch);
            break;
        }
        if (ch->end) {
            chunk_destroy(ch);
            finished = true;
            break;
        }
        int wrc = DS_ERETRY;
        for (int attempt = 0; attempt < RESCORE_ATTEMPTS; attempt++) {
            if (attempt) {
                ds_warn("rescore: writing a chunk failed (%s); retrying", err);
                int ms = ds_pg_backoff_ms(attempt, &seed) * 4;
                struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
                nanosleep(&ts, NULL); /* backoff before the retry */
                if (!ds_pg_is_connected(w.pg)) ds_pg_reset(w.pg);
                if (ds_pg_ensure(w.pg, 10000, NULL, err, sizeof err) != 0) continue;
                /* A new session has lost the advisory lock: take it again. */
                if (query_one(w.pg,
                              "select pg_try_advisory_lock(hashtext('dealscore.rescore'), hashtext(coalesce($1, '*')))",
                              1, scope, &r, err, sizeof err) != 0)
                    continue;
                bool again = PQgetvalue(r, 0, 0)[0] == 't';
                PQclear(r);
                r = NULL;
                if (!again) {
                    snprintf(err, sizeof err, "another rescore took over the scope");
                    wrc = DS_EFATAL;
                    break;
                }
                ds_org_cache_clear(w.orgs);
                scorer_invalidate(w.scorer, NULL);
            }
            wrc = write_chunk(&w, ch, err, sizeof err);
            if (wrc == 0 || (wrc != DS_ERETRY && ds_pg_is_connected(w.pg))) break;
        }
        if (wrc != 0) {
            fprintf(stderr, "dealscore-scoring rescore: could not write a chunk: %s\n", err);
            chunk_destroy(ch);
            failed = true;
            break;
        }
        publish_chunk(&w, ch);
        w.scored += (long long)ch->n;
        done_here += (long long)ch->n;
        chunk_destroy(ch);
        int64_t now = ds_mono_us();
        if (now - last_progress >= RESCORE_PROGRESS_US) {
            last_progress = now;
            fprintf(stderr, "rescore: %lld/%lld (%.0f/s)\n", w.scored, total,
                    (double)done_here / ((double)(now - t0) / 1e6));
        }
    }
    /* Stop the fetch thread (it may be waiting to hand over a chunk). */
    pthread_mutex_lock(&f.mu);
    f.quit = true;
    pthread_cond_broadcast(&f.cond);
    pthread_mutex_unlock(&f.mu);
    pthread_join(f.thread, NULL);
    fetch_started = false;
    chunk_destroy(f.ready);
    f.ready = NULL;

    double secs = (double)(ds_mono_us() - t0) / 1e6;
    if (finished) {
        char id[32];
        snprintf(id, sizeof id, "%lld", w.run_id);
        const char *v[] = {id};
        if (query_one(w.pg,
                      "update dealscore.rescore_runs set finished_at = now(), updated_at = now(), status = 'finished'"
                      " where id = $1::bigint",
                      1, v, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "dealscore-scoring rescore: could not mark the run finished: %s\n", err);
            finished = false;
            failed = true;
        }
    }
    if (w.producer) {
        if (ds_producer_flush(w.producer, 30000) != 0)
            ds_warn("rescore: %d prediction.made messages still undelivered", ds_producer_pending(w.producer));
    }
    printf("rescore: run %lld %s: %lld opportunities scored as of %s (%lld in this process, %.1f s, %.0f/s)\n",
           w.run_id, finished ? "finished" : failed ? "failed" : "interrupted", w.scored, asof_text, done_here, secs,
           secs > 0 ? (double)done_here / secs : 0.0);
    printf("rescore: %lld changed", w.changed);
    if (w.prior) printf(", %lld with the stage prior", w.prior);
    for (int i = 0; i < w.n_versions; i++) printf("%s%s %lld", i ? ", " : "; models: ", w.versions[i], w.version_n[i]);
    printf("\n");
    if (o.publish)
        printf("rescore: %lld prediction.made published%s\n", w.published, w.producer ? "" : " (Kafka unavailable)");
    if (!finished && !failed) printf("rescore: the next run resumes after %lld opportunities\n", w.scored);
    fflush(stdout);
    rc = finished ? 0 : 1;

out:
    PQclear(r);
    if (fetch_started) {
        pthread_mutex_lock(&f.mu);
        f.quit = true;
        pthread_cond_broadcast(&f.cond);
        pthread_mutex_unlock(&f.mu);
        pthread_join(f.thread, NULL);
        chunk_destroy(f.ready);
    }
    ds_producer_destroy(w.producer);
    free(w.topic);
    scorer_destroy(w.scorer);
    ds_org_cache_destroy(w.orgs);
    ds_org_cache_destroy(f.orgs);
    ds_pg_destroy(f.pg);
    ds_pg_destroy(w.pg);
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cond);
    return rc;
}
