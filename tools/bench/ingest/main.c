/* dealscore-bench-ingest: records/s that ingest accepts through batched
 * webhook POSTs (arrays of --batch records, --concurrency keep-alive
 * connections), through single-record POSTs at a fixed rate (latency of the
 * HTTP round trip) and through `dealscore-ingest import` (CSV), against the
 * ceiling: the same rows upserted by plain multi-row
 * INSERT ... ON CONFLICT (org_id, external_id) DO UPDATE statements of 500
 * rows straight into the tables over one libpq connection. Every path writes
 * into a fresh org, so every record inserts. A measurement program, not a
 * test: it prints figures and asserts nothing.
 *
 *   eval "$(deploy/local/stack env)"
 *   build/bin/dealscore-bench-ingest [--opportunities 20000] [--interactions 100000]
 *       [--concurrency 4] [--rate 500] [--seconds 10] [--repeat 1] ...
 *
 * See README.md next to this file. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "perf.h"
#include "base/common.h"
#include "base/config.h"
#include "base/log.h"

extern char **environ;

#define PROG "dealscore-bench-ingest"
#define CEILING_ROWS 500

/* ---- small helpers --------------------------------------------------------- */

static void sleep_us(int64_t us) {
    if (us <= 0) return;
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* splitmix64: the data are the same for the same --seed. */
static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int64_t rnd_range(uint64_t *s, int64_t lo, int64_t hi) {
    return lo + (int64_t)(rnd(s) % (uint64_t)(hi - lo + 1));
}

/* ---- the data ----------------------------------------------------------------- */

static const char *const stages[] = {"prospecting", "qualification", "discovery",
                                     "demo",        "proposal",      "negotiation"};
static const char *const products[] = {"core_platform", "analytics", "security", "integrations", "services"};
static const char *const personas[] = {"it_director", "cto", "cfo", "vp_sales", "operations", "procurement"};

typedef struct {
    char ext[24], created[40], close_date[16], amount[24], owner[24];
    const char *stage, *product, *persona, *currency;
    char *json;
    size_t json_len;
} opp_rec_t;

typedef struct {
    char ext[64], occurred[40], duration[16], meta[128];
    size_t opp;
    const char *type, *channel, *outcome;
    bool has_duration;
    char *json;
    size_t json_len;
} int_rec_t;

typedef struct {
    opp_rec_t *opps;
    size_t nopps;
    int_rec_t *ints;
    size_t nints;
} dataset_t;

static void format_date(int64_t us, char *out, size_t n) {
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d", &tm);
}

/* Opportunities in open stages (the ceiling writes outcome 'open' too) and no
 * account reference, so neither path creates placeholder accounts. */
static void dataset_generate(dataset_t *d, size_t nopps, size_t nints, uint64_t seed) {
    const int64_t day = 86400LL * 1000000;
    const int64_t base = 1735689600LL * 1000000; /* 2025-01-01T00:00:00Z */
    int64_t *created = ds_calloc(nopps, sizeof *created);
    d->nopps = nopps;
    d->nints = nints;
    d->opps = ds_calloc(nopps, sizeof *d->opps);
    d->ints = ds_calloc(nints, sizeof *d->ints);
    char buf[1024];
    for (size_t i = 0; i < nopps; i++) {
        opp_rec_t *o = &d->opps[i];
        created[i] = base + rnd_range(&seed, 0, 365 * day);
        snprintf(o->ext, sizeof o->ext, "o%zu", i);
        ds_format_time_us(created[i], o->created, sizeof o->created);
        format_date(created[i] + rnd_range(&seed, 30, 120) * day, o->close_date, sizeof o->close_date);
        snprintf(o->amount, sizeof o->amount, "%lld", (long long)rnd_range(&seed, 10, 2000) * 100);
        snprintf(o->owner, sizeof o->owner, "owner-%lld", (long long)rnd_range(&seed, 1, 50));
        o->stage = stages[rnd(&seed) % DS_ARRAY_SIZE(stages)];
        o->product = products[rnd(&seed) % DS_ARRAY_SIZE(products)];
        o->persona = personas[rnd(&seed) % DS_ARRAY_SIZE(personas)];
        o->currency = "USD";
        int n =
            snprintf(buf, sizeof buf,
                     "{\"external_id\":\"%s\",\"stage\":\"%s\",\"created_at\":\"%s\",\"changed_at\":\"%s\","
                     "\"owner_id\":\"%s\",\"product_category\":\"%s\",\"persona\":\"%s\",\"amount\":%s,"
                     "\"currency\":\"%s\",\"close_date\":\"%s\"}",
                     o->ext, o->stage, o->created, o->created, o->owner, o->product, o->persona, o->amount,
                     o->currency, o->close_date);
        o->json = ds_strndup(buf, (size_t)n);
        o->json_len = (size_t)n;
    }
    for (size_t j = 0; j < nints; j++) {
        int_rec_t *it = &d->ints[j];
        it->opp = (size_t)(rnd(&seed) % nopps);
        const opp_rec_t *o = &d->opps[it->opp];
        snprintf(it->ext, sizeof it->ext, "%s-i%zu", o->ext, j);
        ds_format_time_us(created[it->opp] + rnd_range(&seed, 0, 60 * day), it->occurred,
                          sizeof it->occurred);
        unsigned r = (unsigned)(rnd(&seed) % 100);
        bool out = rnd(&seed) % 2;
        if (r < 45) {
            it->type = "email", it->channel = "email", it->outcome = out ? "sent" : "replied";
        } else if (r < 65) {
            it->type = "phone", it->channel = "phone", it->outcome = out ? "connected" : "voicemail";
        } else if (r < 82) {
            it->type = "meeting", it->channel = out ? "video" : "in_person", it->outcome = "held";
        } else if (r < 92) {
            it->type = "demo", it->channel = "video", it->outcome = "held";
        } else {
            it->type = "support", it->channel = "portal", it->outcome = out ? "resolved" : "open";
        }
        it->has_duration = strcmp(it->type, "email") != 0;
        if (it->has_duration)
            snprintf(it->duration, sizeof it->duration, "%lld", (long long)rnd_range(&seed, 5, 90));
        snprintf(it->meta, sizeof it->meta,
                 "{\"direction\":\"%s\",\"subject\":\"Touch %zu\",\"attendees\":%lld}",
                 out ? "outbound" : "inbound", j, (long long)rnd_range(&seed, 1, 6));
        int n = snprintf(buf, sizeof buf,
                         "{\"external_id\":\"%s\",\"opportunity_external_id\":\"%s\",\"type\":\"%s\","
                         "\"channel\":\"%s\",\"occurred_at\":\"%s\",%s%s%s\"outcome\":\"%s\",\"meta\":%s}",
                         it->ext, o->ext, it->type, it->channel, it->occurred,
                         it->has_duration ? "\"duration_min\":" : "", it->has_duration ? it->duration : "",
                         it->has_duration ? "," : "", it->outcome, it->meta);
        it->json = ds_strndup(buf, (size_t)n);
        it->json_len = (size_t)n;
    }
    free(created);
}

static void dataset_close(dataset_t *d) {
    for (size_t i = 0; i < d->nopps; i++) free(d->opps[i].json);
    for (size_t j = 0; j < d->nints; j++) free(d->ints[j].json);
    free(d->opps);
    free(d->ints);
}

/* ---- the run ----------------------------------------------------------------- */

typedef struct {
    ds_config_t cfg;
    PGconn *db;
    dataset_t data;
    char host[128];
    int port;
    char bin_dir[PATH_MAX];
    char work_dir[PATH_MAX];
    bool own_work_dir;
    char runid[16];
    int concurrency, batch, single_threads, repeat, warmup;
    double rate, seconds, settle_s;
    bool do_ceiling, do_batch, do_single, do_csv;
    const char *worker_urls[3];
} bench_t;

/* Runs argv with stdout and stderr into files (NULL: inherited). Returns the
 * exit status, or -1 if it could not run or was killed. */
static int run_cmd(char *const argv[], const char *out_path, const char *err_path) {
    char why[PATH_MAX + 256];
    int rc = perf_run_cmd(argv, out_path, err_path, why, sizeof why);
    if (why[0]) fprintf(stderr, PROG ": %s\n", why);
    return rc;
}

static void print_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) fprintf(stderr, "  | %s", line);
    fclose(f);
}

/* Creates org slug with `dealscore-ingest token create`; token and org id
 * out. Returns 0 or -1 (with a message printed). */
static int org_create(bench_t *b, const char *slug, char *token, size_t tokensz, char org_id[37]) {
    char exe[PATH_MAX + 32], out[PATH_MAX + 64], err[PATH_MAX + 64];
    snprintf(exe, sizeof exe, "%s/dealscore-ingest", b->bin_dir);
    snprintf(out, sizeof out, "%s/token.out", b->work_dir);
    snprintf(err, sizeof err, "%s/token.err", b->work_dir);
    char *argv[] = {exe, "token", "create", "--org", (char *)slug, NULL};
    int rc = run_cmd(argv, out, err);
    perf_last_line(out, token, tokensz);
    if (rc != 0 || !token[0]) {
        fprintf(stderr, PROG ": dealscore-ingest token create --org %s failed (exit %d):\n", slug, rc);
        print_file(err);
        return -1;
    }
    const char *v[] = {slug};
    PGresult *res =
        PQexecParams(b->db, "select id::text from public.orgs where slug = $1", 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(stderr, PROG ": org %s not found after token create: %s", slug, PQerrorMessage(b->db));
        PQclear(res);
        return -1;
    }
    snprintf(org_id, 37, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

/* Rows the org holds: real opportunities and interactions. */
static void org_counts(bench_t *b, const char *org_id, long *opps, long *ints) {
    const char *v[] = {org_id};
    PGresult *res = PQexecParams(
        b->db,
        "select (select count(*) from public.opportunities where org_id = $1::uuid"
        " and not placeholder), (select count(*) from public.interactions where org_id = $1::uuid)",
        1, NULL, v, NULL, NULL, 0);
    *opps = *ints = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        *opps = atol(PQgetvalue(res, 0, 0));
        *ints = atol(PQgetvalue(res, 0, 1));
    }
    PQclear(res);
}

/* A count(*) query's answer, -1 on error. */
static long count_of(bench_t *b, const char *sql) {
    PGresult *res = PQexec(b->db, sql);
    long n = PQresultStatus(res) == PGRES_TUPLES_OK ? atol(PQgetvalue(res, 0, 0)) : -1;
    PQclear(res);
    return n;
}

/* Waits until the outbox is empty, the stack's workers have no lag and no
 * autovacuum worker runs (twice in a row, the lag gauge is refreshed once a
 * second), then writes the machine's dirty pages out (sync), so one phase's
 * events and their aftermath do not load the machine during the next phase,
 * the ceiling included. Without the sync, the kernel writes a batched
 * phase's Kafka segments back 30 s later, during the single-record phase,
 * and its commits wait behind that writeback: p99 44-84 ms against 4 ms. */
typedef struct {
    bench_t *b;
    long unsent, vacuums;
} db_quiet_t;

/* No unsent outbox row and no autovacuum worker (they follow a phase's
 * writes); the counts stay in q for the message. */
static bool db_quiet(void *ctx) {
    db_quiet_t *q = ctx;
    q->unsent = count_of(q->b, "select count(*) from dealscore_internal.outbox");
    q->vacuums =
        count_of(q->b, "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'");
    return q->unsent == 0 && q->vacuums == 0;
}

static void settle(bench_t *b, const char *after) {
    if (b->settle_s <= 0) return;
    int64_t t0 = ds_mono_us();
    db_quiet_t q = {b, 0, 0};
    double lag = 0;
    bool quiet =
        perf_wait_quiet(b->worker_urls, DS_ARRAY_SIZE(b->worker_urls), b->settle_s, db_quiet, &q, &lag);
    double s = (double)(ds_mono_us() - t0) / 1e6;
    int64_t t1 = ds_mono_us();
    sync();
    double sync_s = (double)(ds_mono_us() - t1) / 1e6;
    if (quiet)
        fprintf(stderr,
                PROG ": after %s: outbox drained, workers and autovacuum idle after %.1f s;"
                     " dirty pages written in %.1f s\n",
                after, s, sync_s);
    else
        fprintf(
            stderr,
            PROG
            ": after %s: still %ld unsent outbox rows, worker lag %.0f, %ld autovacuum workers after %.0f s;"
            " going on\n",
            after, q.unsent, lag, q.vacuums, s);
}

/* ---- webhooks ------------------------------------------------------------------ */

typedef struct {
    const char *path;
    const char *body;
    size_t len;
    int nrec;
} job_t;

typedef struct {
    bench_t *b;
    const char *token;
    const job_t *jobs;
    size_t njobs;
    atomic_size_t next;
    atomic_long retries, errors, records;
    atomic_int shown;
    /* single-record phase only */
    double rate;
    int64_t start_us;
    int64_t *lat_send, *lat_due;
    int *status;
} wave_t;

/* POSTs one job, retrying 503 (after Retry-After, at most 1 s) and lost
 * connections for up to a minute. Returns the final status. */
static int post_job(wave_t *w, perf_conn_t *c, const job_t *j) {
    int64_t t0 = ds_mono_us();
    int st;
    for (;;) {
        st = perf_conn_request(c, j->path, w->token, j->body, j->len);
        if (st == 202) return st;
        if ((st != 503 && st != -1) || ds_mono_us() - t0 > 60 * 1000000LL) break;
        atomic_fetch_add(&w->retries, 1);
        sleep_us(st == 503 && c->retry_after > 0 ? (c->retry_after > 1 ? 1000000 : c->retry_after * 1000000LL)
                                                 : 50000);
    }
    if (atomic_fetch_add(&w->shown, 1) == 0)
        fprintf(stderr, PROG ": POST %s gave HTTP %d: %.*s\n", j->path, st, (int)(c->body ? c->body_len : 0),
                c->body ? c->body : "");
    return st;
}

static void *batch_worker(void *arg) {
    wave_t *w = arg;
    perf_conn_t c = {.fd = -1, .port = w->b->port};
    snprintf(c.host, sizeof c.host, "%s", w->b->host);
    for (;;) {
        size_t i = atomic_fetch_add(&w->next, 1);
        if (i >= w->njobs) break;
        if (post_job(w, &c, &w->jobs[i]) == 202)
            atomic_fetch_add(&w->records, w->jobs[i].nrec);
        else
            atomic_fetch_add(&w->errors, 1);
    }
    perf_conn_close(&c);
    return NULL;
}

/* Builds JSON array bodies of up to per records of one kind. */
static job_t *make_batches(const char *path, char *const *jsons, const size_t *lens, size_t n, int per,
                           size_t *njobs, char ***bufs) {
    size_t nj = (n + (size_t)per - 1) / (size_t)per;
    job_t *jobs = ds_calloc(nj ? nj : 1, sizeof *jobs);
    *bufs = ds_calloc(nj ? nj : 1, sizeof **bufs);
    for (size_t k = 0; k < nj; k++) {
        size_t lo = k * (size_t)per, hi = lo + (size_t)per < n ? lo + (size_t)per : n, len = 2;
        for (size_t i = lo; i < hi; i++) len += lens[i] + 1;
        char *body = ds_malloc(len + 1), *p = body;
        *p++ = '[';
        for (size_t i = lo; i < hi; i++) {
            if (i > lo) *p++ = ',';
            memcpy(p, jsons[i], lens[i]);
            p += lens[i];
        }
        *p++ = ']';
        *p = '\0';
        jobs[k] = (job_t){path, body, (size_t)(p - body), (int)(hi - lo)};
        (*bufs)[k] = body;
    }
    *njobs = nj;
    return jobs;
}

typedef struct {
    double secs;
    long records;
    long retries;
    long errors;
    long db_opps, db_ints;
    /* single-record phase */
    double achieved, p50, p95, p99, max, due_p99;
} result_t;

/* Phase (a): every opportunity, then every interaction (so none arrives
 * before its opportunity), in arrays of --batch over --concurrency
 * connections. */
static int phase_batch(bench_t *b, int rep, result_t *res) {
    char slug[80], token[256], org_id[37];
    if (rep > 0)
        snprintf(slug, sizeof slug, "bi-%s-r%d-batch", b->runid, rep);
    else
        snprintf(slug, sizeof slug, "bi-%s-w%d-batch", b->runid, 1 - rep); /* a warm-up pass */
    if (org_create(b, slug, token, sizeof token, org_id) != 0) return -1;
    dataset_t *d = &b->data;
    char **oj = ds_calloc(d->nopps, sizeof *oj), **ij = ds_calloc(d->nints ? d->nints : 1, sizeof *ij);
    size_t *ol = ds_calloc(d->nopps, sizeof *ol), *il = ds_calloc(d->nints ? d->nints : 1, sizeof *il);
    for (size_t i = 0; i < d->nopps; i++) oj[i] = d->opps[i].json, ol[i] = d->opps[i].json_len;
    for (size_t i = 0; i < d->nints; i++) ij[i] = d->ints[i].json, il[i] = d->ints[i].json_len;
    size_t nj[2];
    char **bufs[2];
    job_t *jobs[2] = {make_batches("/v1/opportunities", oj, ol, d->nopps, b->batch, &nj[0], &bufs[0]),
                      make_batches("/v1/interactions", ij, il, d->nints, b->batch, &nj[1], &bufs[1])};
    wave_t w = {.b = b, .token = token};
    int64_t t0 = ds_mono_us();
    for (int k = 0; k < 2; k++) {
        w.jobs = jobs[k];
        w.njobs = nj[k];
        atomic_store(&w.next, 0);
        perf_run_threads(b->concurrency, batch_worker, &w);
    }
    res->secs = (double)(ds_mono_us() - t0) / 1e6;
    res->records = atomic_load(&w.records);
    res->retries = atomic_load(&w.retries);
    res->errors = atomic_load(&w.errors);
    org_counts(b, org_id, &res->db_opps, &res->db_ints);
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < nj[k]; i++) free(bufs[k][i]);
        free(bufs[k]);
        free(jobs[k]);
    }
    free(oj), free(ij), free(ol), free(il);
    return 0;
}

static void *single_worker(void *arg) {
    wave_t *w = arg;
    perf_conn_t c = {.fd = -1, .port = w->b->port};
    snprintf(c.host, sizeof c.host, "%s", w->b->host);
    for (;;) {
        size_t i = atomic_fetch_add(&w->next, 1);
        if (i >= w->njobs) break;
        /* Open loop: request i is due at start + i / rate, whatever the
         * latency of the others. */
        int64_t due = w->start_us + (int64_t)((double)i * 1e6 / w->rate);
        sleep_us(due - ds_mono_us());
        int64_t sent = ds_mono_us();
        int st = post_job(w, &c, &w->jobs[i]);
        int64_t done = ds_mono_us();
        w->lat_send[i] = done - sent;
        w->lat_due[i] = done - (due > sent ? sent : due);
        w->status[i] = st;
        if (st == 202)
            atomic_fetch_add(&w->records, 1);
        else
            atomic_fetch_add(&w->errors, 1);
    }
    perf_conn_close(&c);
    return NULL;
}

/* Phase (b): rate x seconds single-record POSTs (one JSON object each) of
 * the records in CRM order: an opportunity, then its interactions. */
static int phase_single(bench_t *b, int rep, result_t *res) {
    char slug[80], token[256], org_id[37];
    snprintf(slug, sizeof slug, "bi-%s-r%d-single", b->runid, rep);
    if (org_create(b, slug, token, sizeof token, org_id) != 0) return -1;
    dataset_t *d = &b->data;
    size_t n = (size_t)(b->rate * b->seconds), total = d->nopps + d->nints;
    if (n > total) n = total;
    if (n < 1) n = 1;
    /* Interactions grouped by opportunity (counting sort). */
    size_t *start = ds_calloc(d->nopps + 1, sizeof *start),
           *order = ds_calloc(d->nints ? d->nints : 1, sizeof *order);
    for (size_t j = 0; j < d->nints; j++) start[d->ints[j].opp + 1]++;
    for (size_t i = 0; i < d->nopps; i++) start[i + 1] += start[i];
    size_t *fill = ds_calloc(d->nopps, sizeof *fill);
    for (size_t j = 0; j < d->nints; j++) order[start[d->ints[j].opp] + fill[d->ints[j].opp]++] = j;
    free(fill);
    job_t *jobs = ds_calloc(n, sizeof *jobs);
    size_t k = 0;
    for (size_t i = 0; i < d->nopps && k < n; i++) {
        jobs[k++] = (job_t){"/v1/opportunities", d->opps[i].json, d->opps[i].json_len, 1};
        for (size_t x = start[i]; x < start[i + 1] && k < n; x++) {
            const int_rec_t *it = &d->ints[order[x]];
            jobs[k++] = (job_t){"/v1/interactions", it->json, it->json_len, 1};
        }
    }
    free(start);
    free(order);
    wave_t w = {.b = b, .token = token, .jobs = jobs, .njobs = n, .rate = b->rate};
    w.lat_send = ds_calloc(n, sizeof(int64_t));
    w.lat_due = ds_calloc(n, sizeof(int64_t));
    w.status = ds_calloc(n, sizeof(int));
    w.start_us = ds_mono_us() + 20000;
    perf_run_threads(b->single_threads, single_worker, &w);
    int64_t end = ds_mono_us();
    res->secs = (double)(end - w.start_us) / 1e6;
    res->records = atomic_load(&w.records);
    res->retries = atomic_load(&w.retries);
    res->errors = atomic_load(&w.errors);
    res->achieved = (double)n / res->secs;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (w.status[i] == 202) w.lat_send[m] = w.lat_send[i], w.lat_due[m] = w.lat_due[i], m++;
    qsort(w.lat_send, m, sizeof(int64_t), perf_cmp_i64);
    qsort(w.lat_due, m, sizeof(int64_t), perf_cmp_i64);
    res->p50 = perf_pct_ms(w.lat_send, m, 50);
    res->p95 = perf_pct_ms(w.lat_send, m, 95);
    res->p99 = perf_pct_ms(w.lat_send, m, 99);
    res->max = m ? (double)w.lat_send[m - 1] / 1000.0 : NAN;
    res->due_p99 = perf_pct_ms(w.lat_due, m, 99);
    org_counts(b, org_id, &res->db_opps, &res->db_ints);
    free(w.lat_send);
    free(w.lat_due);
    free(w.status);
    free(jobs);
    return 0;
}

/* ---- CSV import ---------------------------------------------------------------- */

static int write_csv(bench_t *b) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/opportunities.csv", b->work_dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, PROG ": cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "external_id,stage,created_at,changed_at,owner_id,product_category,persona,amount,currency,"
               "close_date\n");
    for (size_t i = 0; i < b->data.nopps; i++) {
        const opp_rec_t *o = &b->data.opps[i];
        fprintf(f, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", o->ext, o->stage, o->created, o->created, o->owner,
                o->product, o->persona, o->amount, o->currency, o->close_date);
    }
    if (fclose(f) != 0) return -1;
    snprintf(path, sizeof path, "%s/interactions.csv", b->work_dir);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, PROG ": cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f,
            "external_id,opportunity_external_id,type,channel,occurred_at,duration_min,outcome,meta_json\n");
    for (size_t j = 0; j < b->data.nints; j++) {
        const int_rec_t *it = &b->data.ints[j];
        fprintf(f, "%s,%s,%s,%s,%s,%s,%s,\"", it->ext, b->data.opps[it->opp].ext, it->type, it->channel,
                it->occurred, it->has_duration ? it->duration : "", it->outcome);
        for (const char *p = it->meta; *p; p++) {
            if (*p == '"') fputc('"', f);
            fputc(*p, f);
        }
        fputs("\"\n", f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* Phase (c): `dealscore-ingest import` of the same rows, wall clock
 * (process start included: a few milliseconds). */
static int phase_csv(bench_t *b, int rep, result_t *res, char *summary, size_t sumsz) {
    char slug[80], token[256], org_id[37];
    snprintf(slug, sizeof slug, "bi-%s-r%d-csv", b->runid, rep);
    if (org_create(b, slug, token, sizeof token, org_id) != 0) return -1;
    char exe[PATH_MAX + 32], opps[PATH_MAX + 32], ints[PATH_MAX + 32], out[PATH_MAX + 32], err[PATH_MAX + 32];
    snprintf(exe, sizeof exe, "%s/dealscore-ingest", b->bin_dir);
    snprintf(opps, sizeof opps, "%s/opportunities.csv", b->work_dir);
    snprintf(ints, sizeof ints, "%s/interactions.csv", b->work_dir);
    snprintf(out, sizeof out, "%s/import.out", b->work_dir);
    snprintf(err, sizeof err, "%s/import.err", b->work_dir);
    char *argv[] = {exe,  "import",         "--org", slug,      "--opportunities",
                    opps, "--interactions", ints,    "--quiet", NULL};
    int64_t t0 = ds_mono_us();
    int rc = run_cmd(argv, out, err);
    res->secs = (double)(ds_mono_us() - t0) / 1e6;
    perf_last_line(out, summary, sumsz);
    org_counts(b, org_id, &res->db_opps, &res->db_ints);
    res->records = res->db_opps + res->db_ints;
    if (rc != 0) {
        fprintf(stderr, PROG ": dealscore-ingest import exited %d:\n", rc);
        print_file(err);
        res->errors = 1;
    }
    return 0;
}

/* ---- the ceiling ---------------------------------------------------------------- */

static int exec_chunk(PGconn *db, const char *sql, int nparams, const char *const *vals, PGresult **out) {
    PGresult *r = PQexecParams(db, sql, nparams, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, PROG ": ceiling insert failed: %s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

/* "insert ... values (<row 1>), (<row 2>) ..." where each row is fmt with
 * its parameters numbered from 2 ($1 is the org id). */
static char *build_insert(const char *head, const char *const *casts, int ncols, const char *consts,
                          size_t rows, const char *tail) {
    size_t cap = strlen(head) + strlen(tail) + rows * (size_t)(ncols * 24 + 64) + 64, len = 0;
    char *sql = ds_malloc(cap);
    len += (size_t)snprintf(sql + len, cap - len, "%s", head);
    int p = 2;
    for (size_t r = 0; r < rows; r++) {
        len += (size_t)snprintf(sql + len, cap - len, "%s($1::uuid", r ? "," : "");
        for (int c = 0; c < ncols; c++)
            len += (size_t)snprintf(sql + len, cap - len, ",$%d%s", p++, casts[c]);
        len += (size_t)snprintf(sql + len, cap - len, "%s)", consts);
    }
    snprintf(sql + len, cap - len, "%s", tail);
    return sql;
}

/* Phase (d): opportunities first (RETURNING their ids), then interactions
 * referencing them, 500 rows per statement, each statement its own
 * transaction, one connection. source_hash is computed as ingest does (a
 * SHA-256 of the record), inside the timing. */
static int phase_ceiling(bench_t *b, int rep, result_t *res) {
    char slug[80], token[256], org_id[37];
    snprintf(slug, sizeof slug, "bi-%s-r%d-ceiling", b->runid, rep);
    if (org_create(b, slug, token, sizeof token, org_id) != 0) return -1;
    dataset_t *d = &b->data;
    static const char *const ocasts[] = {
        "", "", "", "", "::numeric", "", "", "::timestamptz", "::date", "", "::timestamptz"};
    static const char *const icasts[] = {"",          "::uuid", "",        "", "", "::timestamptz",
                                         "::numeric", "",       "::jsonb", ""};
    const char *ohead =
        "insert into public.opportunities as o (org_id, external_id, owner_id, product_category,"
        " persona, amount, currency, stage, created_at, close_date, source_hash, changed_at,"
        " outcome, placeholder) values ";
    const char *otail = " on conflict (org_id, external_id) do update set owner_id = excluded.owner_id,"
                        " product_category = excluded.product_category, persona = excluded.persona,"
                        " amount = excluded.amount, currency = excluded.currency, stage = excluded.stage,"
                        " created_at = excluded.created_at, close_date = excluded.close_date,"
                        " source_hash = excluded.source_hash, changed_at = excluded.changed_at,"
                        " outcome = excluded.outcome, placeholder = false, ingested_at = now()"
                        " returning o.id::text, o.external_id";
    const char *ihead = "insert into public.interactions as t (org_id, external_id, opportunity_id,"
                        " opportunity_external_id, type, channel, occurred_at, duration_min, outcome, meta,"
                        " source_hash) values ";
    const char *itail =
        " on conflict (org_id, external_id) do update set opportunity_id = excluded.opportunity_id,"
        " opportunity_external_id = excluded.opportunity_external_id, type = excluded.type,"
        " channel = excluded.channel, occurred_at = excluded.occurred_at,"
        " duration_min = excluded.duration_min, outcome = excluded.outcome, meta = excluded.meta,"
        " source_hash = excluded.source_hash, ingested_at = now()";
    char(*opp_ids)[37] = ds_calloc(d->nopps, sizeof *opp_ids);
    char(*hash)[65] = ds_calloc(CEILING_ROWS, sizeof *hash);
    const char **vals = ds_calloc(1 + CEILING_ROWS * 11, sizeof *vals);
    vals[0] = org_id;
    char *sql_full_o = build_insert(ohead, ocasts, 11, ",'open',false", CEILING_ROWS, otail);
    char *sql_full_i = build_insert(ihead, icasts, 10, "", CEILING_ROWS, itail);
    int rc = 0;
    int64_t t0 = ds_mono_us();
    for (size_t lo = 0; lo < d->nopps && rc == 0; lo += CEILING_ROWS) {
        size_t n = d->nopps - lo < CEILING_ROWS ? d->nopps - lo : CEILING_ROWS, p = 1;
        for (size_t i = 0; i < n; i++) {
            const opp_rec_t *o = &d->opps[lo + i];
            ds_sha256_hex(o->json, o->json_len, hash[i]);
            const char *row[] = {o->ext,   o->owner,   o->product,    o->persona, o->amount, o->currency,
                                 o->stage, o->created, o->close_date, hash[i],    o->created};
            memcpy(&vals[p], row, sizeof row);
            p += 11;
        }
        char *sql =
            n == CEILING_ROWS ? sql_full_o : build_insert(ohead, ocasts, 11, ",'open',false", n, otail);
        PGresult *r = NULL;
        rc = exec_chunk(b->db, sql, (int)p, vals, &r);
        if (sql != sql_full_o) free(sql);
        if (rc == 0) {
            for (int t = 0; t < PQntuples(r); t++) {
                size_t k = strtoul(PQgetvalue(r, t, 1) + 1, NULL, 10); /* "o<index>" */
                if (k < d->nopps) snprintf(opp_ids[k], 37, "%s", PQgetvalue(r, t, 0));
            }
            PQclear(r);
        }
    }
    for (size_t lo = 0; lo < d->nints && rc == 0; lo += CEILING_ROWS) {
        size_t n = d->nints - lo < CEILING_ROWS ? d->nints - lo : CEILING_ROWS, p = 1;
        for (size_t i = 0; i < n; i++) {
            const int_rec_t *it = &d->ints[lo + i];
            ds_sha256_hex(it->json, it->json_len, hash[i]);
            const char *row[] = {it->ext,
                                 opp_ids[it->opp],
                                 d->opps[it->opp].ext,
                                 it->type,
                                 it->channel,
                                 it->occurred,
                                 it->has_duration ? it->duration : NULL,
                                 it->outcome,
                                 it->meta,
                                 hash[i]};
            memcpy(&vals[p], row, sizeof row);
            p += 10;
        }
        char *sql = n == CEILING_ROWS ? sql_full_i : build_insert(ihead, icasts, 10, "", n, itail);
        rc = exec_chunk(b->db, sql, (int)p, vals, NULL);
        if (sql != sql_full_i) free(sql);
    }
    res->secs = (double)(ds_mono_us() - t0) / 1e6;
    res->records = rc == 0 ? (long)(d->nopps + d->nints) : 0;
    res->errors = rc != 0;
    org_counts(b, org_id, &res->db_opps, &res->db_ints);
    free(sql_full_o);
    free(sql_full_i);
    free(vals);
    free(hash);
    free(opp_ids);
    return rc;
}

/* ---- report ---------------------------------------------------------------------- */

enum { P_CEILING, P_BATCH, P_SINGLE, P_CSV, P_N };

static void print_row(const char *label, const result_t *r, double ceiling_rate, const char *note) {
    double rate = r->secs > 0 ? (double)r->records / r->secs : 0;
    printf("  %-34s %9ld %9.2f %11.0f %9.1f%%   %s\n", label, r->records, r->secs, rate,
           ceiling_rate > 0 ? 100.0 * rate / ceiling_rate : NAN, note);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: " PROG " [options]\n"
            "\n"
            "Measures records/s accepted by ingest through batched webhook POSTs, single-record\n"
            "POSTs at a fixed rate (latency p50/p95/p99 of the HTTP round trip) and CSV import\n"
            "(dealscore-ingest import), against the ceiling: the same rows upserted by plain\n"
            "multi-row INSERT ... ON CONFLICT (org_id, external_id) DO UPDATE statements of %d\n"
            "rows over one libpq connection. Each path writes into a fresh org (token create), so\n"
            "every record inserts. Runs against a running stack (deploy/local/stack up).\n"
            "\n"
            "Options:\n"
            "  --opportunities N   opportunities generated (default 20000)\n"
            "  --interactions N    interactions generated, spread over the opportunities (default 100000)\n"
            "  --batch N           records per batched webhook array (default 100)\n"
            "  --concurrency C     keep-alive connections (threads) for the batched webhooks (default 4)\n"
            "  --rate R            single-record POSTs per second (default 500)\n"
            "  --seconds S         duration of the single-record phase (default 10)\n"
            "  --single-threads T  sender threads of the single-record phase (default 64); a\n"
            "                      thread waits for each response, so threads / latency caps the rate\n"
            "  --repeat N          repetitions of every phase, each into fresh orgs; medians (default 1)\n"
            "  --phases LIST       subset of ceiling,batch,single,csv (default all)\n"
            "  --warmup N          untimed passes of the batched webhooks before the repetitions, each\n"
            "                      into a fresh org, so the broker's JIT, Postgres's caches and the\n"
            "                      workers are warm (default 1; 0: none); their figure is printed\n"
            "                      and not counted\n"
            "  --settle S          wait up to S s before each phase for the outbox to drain, the\n"
            "                      stack's workers and autovacuum to go idle (default 300; 0: do\n"
            "                      not wait)\n"
            "  --seed N            data seed (default 1)\n"
            "  --url URL           ingest base URL (default $DEALSCORE_INGEST_URL)\n"
            "  --bin-dir DIR       where dealscore-ingest is (default $DEALSCORE_BIN_DIR, else\n"
            "                      this program's directory)\n"
            "  --work-dir DIR      where the CSV files go (default a new /tmp directory, removed)\n"
            "  --help              this text\n"
            "\n"
            "Environment: DEALSCORE_DATABASE_URL (the stack's database), DEALSCORE_INGEST_URL,\n"
            "DEALSCORE_FEATURE_URL, DEALSCORE_SCORING_URL, DEALSCORE_BENCHMARK_URL (workers whose\n"
            "consumer lag --settle waits for), DEALSCORE_BIN_DIR: eval \"$(deploy/local/stack env)\".\n"
            "Exit status: 0 after printing the figures, 2 bad usage or settings, 1 the stack failed.\n",
            CEILING_ROWS);
}

static void remove_work_dir(bench_t *b) {
    static const char *const files[] = {"opportunities.csv", "interactions.csv", "import.out",
                                        "import.err",        "token.out",        "token.err"};
    char path[PATH_MAX + 32];
    for (size_t i = 0; i < DS_ARRAY_SIZE(files); i++) {
        snprintf(path, sizeof path, "%s/%s", b->work_dir, files[i]);
        unlink(path);
    }
    rmdir(b->work_dir);
}

/* ---- the program ------------------------------------------------------------------ */

/* A phase of main returns GO_ON to let the next one run, or the exit status. */
#define GO_ON (-1)

/* One run of the program: the bench, the options that only main reads, and
 * the results of every repetition. */
typedef struct {
    bench_t b;
    long nopps, nints, seed;
    const char *url, *bin_dir, *work_dir;
    char la0[64]; /* load average at the start */
    long ncpu;
    int warmups;
    result_t (*res)[P_N]; /* [repetition][phase] */
    char csv_summary[512];
} prog_t;

/* Applies one option; returns the complaint about its value, or NULL. */
static const char *apply_option(void *ctx, int c) {
    prog_t *p = ctx;
    bench_t *b = &p->b;
    long v;
    switch (c) {
    case 'o':
        if (!ds_parse_long(optarg, 1, 100000000, &p->nopps)) return "--opportunities must be 1 to 100000000";
        break;
    case 'i':
        if (!ds_parse_long(optarg, 0, 1000000000, &p->nints)) return "--interactions must be 0 to 1000000000";
        break;
    case 'b':
        if (!ds_parse_long(optarg, 1, 100000, &v)) return "--batch must be 1 to 100000";
        b->batch = (int)v;
        break;
    case 'c':
        if (!ds_parse_long(optarg, 1, 1024, &v)) return "--concurrency must be 1 to 1024";
        b->concurrency = (int)v;
        break;
    case 'r':
        if (!perf_parse_double(optarg, 1, 100000, &b->rate)) return "--rate must be 1 to 100000";
        break;
    case 's':
        if (!perf_parse_double(optarg, 0.1, 3600, &b->seconds)) return "--seconds must be 0.1 to 3600";
        break;
    case 'T':
        if (!ds_parse_long(optarg, 1, 1024, &v)) return "--single-threads must be 1 to 1024";
        b->single_threads = (int)v;
        break;
    case 'n':
        if (!ds_parse_long(optarg, 1, 100, &v)) return "--repeat must be 1 to 100";
        b->repeat = (int)v;
        break;
    case 'W':
        if (!ds_parse_long(optarg, 0, 100, &v)) return "--warmup must be 0 to 100";
        b->warmup = (int)v;
        break;
    case 'S':
        if (!perf_parse_double(optarg, 0, 86400, &b->settle_s)) return "--settle must be 0 to 86400 seconds";
        break;
    case 'e':
        if (!ds_parse_long(optarg, 0, LONG_MAX, &p->seed)) return "--seed must be a number >= 0";
        break;
    case 'u': p->url = optarg; break;
    case 'B': p->bin_dir = optarg; break;
    case 'w': p->work_dir = optarg; break;
    case 'p':
        b->do_ceiling = strstr(optarg, "ceiling") != NULL;
        b->do_batch = strstr(optarg, "batch") != NULL;
        b->do_single = strstr(optarg, "single") != NULL;
        b->do_csv = strstr(optarg, "csv") != NULL;
        if (!b->do_ceiling && !b->do_batch && !b->do_single && !b->do_csv)
            return "--phases: give some of ceiling,batch,single,csv";
        break;
    }
    return NULL;
}

static int parse_options(prog_t *p, int argc, char **argv) {
    static const struct option opts[] = {{"opportunities", 1, 0, 'o'},
                                         {"interactions", 1, 0, 'i'},
                                         {"batch", 1, 0, 'b'},
                                         {"concurrency", 1, 0, 'c'},
                                         {"rate", 1, 0, 'r'},
                                         {"seconds", 1, 0, 's'},
                                         {"single-threads", 1, 0, 'T'},
                                         {"repeat", 1, 0, 'n'},
                                         {"phases", 1, 0, 'p'},
                                         {"settle", 1, 0, 'S'},
                                         {"seed", 1, 0, 'e'},
                                         {"url", 1, 0, 'u'},
                                         {"bin-dir", 1, 0, 'B'},
                                         {"work-dir", 1, 0, 'w'},
                                         {"help", 0, 0, 'h'},
                                         {"warmup", 1, 0, 'W'},
                                         {0, 0, 0, 0}};
    return perf_parse_options(argc, argv, opts, PROG, usage, apply_option, p);
}

/* The ingest URL, dealscore-ingest and the services' settings. */
static int check_settings(prog_t *p) {
    bench_t *b = &p->b;
    if (!p->url || !*p->url) p->url = "http://127.0.0.1:8080";
    if (perf_parse_url(p->url, b->host, sizeof b->host, &b->port) != 0) {
        fprintf(stderr, PROG ": the ingest URL must be http://HOST:PORT, not \"%s\"\n", p->url);
        return 2;
    }
    if (p->bin_dir && *p->bin_dir)
        snprintf(b->bin_dir, sizeof b->bin_dir, "%s", p->bin_dir);
    else if (perf_self_dir(b->bin_dir, sizeof b->bin_dir) != 0) {
        fprintf(stderr, PROG ": cannot find my own directory; give --bin-dir\n");
        return 2;
    }
    char exe[PATH_MAX + 32];
    snprintf(exe, sizeof exe, "%s/dealscore-ingest", b->bin_dir);
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, PROG ": %s is not an executable (build it, or give --bin-dir / DEALSCORE_BIN_DIR)\n",
                exe);
        return 2;
    }
    char err[512];
    if (ds_config_load(&b->cfg, DS_SVC_FEATURE, environ, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 2;
    }
    ds_log_init("bench-ingest", DS_LOG_WARN);
    b->worker_urls[0] = getenv("DEALSCORE_FEATURE_URL");
    b->worker_urls[1] = getenv("DEALSCORE_SCORING_URL");
    b->worker_urls[2] = getenv("DEALSCORE_BENCHMARK_URL");
    return GO_ON;
}

/* Postgres, a ready ingest, and the work directory. */
static int connect_stack(prog_t *p) {
    bench_t *b = &p->b;
    b->db = PQconnectdb(b->cfg.database_url);
    if (PQstatus(b->db) != CONNECTION_OK) {
        fprintf(stderr, PROG ": could not connect to Postgres: %s", PQerrorMessage(b->db));
        return 1;
    }
    perf_conn_t probe = {.fd = -1, .port = b->port};
    snprintf(probe.host, sizeof probe.host, "%s", b->host);
    int st = perf_conn_request(&probe, "/readyz", NULL, NULL, 0);
    perf_conn_close(&probe);
    if (st != 200) {
        fprintf(stderr, PROG ": ingest at %s is not ready (GET /readyz: %d); start the stack first\n", p->url,
                st);
        return 1;
    }
    char err[512];
    if (perf_work_dir(p->work_dir, "dealscore-bench-ingest", b->work_dir, sizeof b->work_dir,
                      &b->own_work_dir, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    snprintf(b->runid, sizeof b->runid, "%08x", (unsigned)(ds_now_us() & 0xffffffff));
    return GO_ON;
}

/* The records every phase sends (and the CSV files of the csv phase). */
static int generate_data(prog_t *p) {
    bench_t *b = &p->b;
    perf_loadavg(p->la0, sizeof p->la0);
    p->ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    dataset_generate(&b->data, (size_t)p->nopps, (size_t)p->nints, (uint64_t)p->seed);
    long total = p->nopps + p->nints;
    printf(PROG ": %ld opportunities + %ld interactions = %ld records; run %s; %ld CPUs; load average %s\n",
           p->nopps, p->nints, total, b->runid, p->ncpu, p->la0);
    fflush(stdout);
    if (b->do_csv && write_csv(b) != 0) return 1;
    return GO_ON;
}

/* Warm-up passes (rep 0, -1, ...: orgs of their own), printed, not counted:
 * the first pass on a fresh stack runs while the broker's JIT compiles and
 * Postgres's caches fill, which neither a long-running stack nor the
 * ceiling (no Kafka) has. */
static int warm_up(prog_t *p) {
    bench_t *b = &p->b;
    p->warmups = b->do_batch || b->do_single || b->do_csv ? b->warmup : 0;
    for (int k = 0; k < p->warmups; k++) {
        result_t w = {0};
        settle(b, k ? "the previous warm-up" : "the start");
        fprintf(stderr, PROG ": warm-up %d: webhooks, arrays of %d over %d connections\n", k + 1, b->batch,
                b->concurrency);
        if (phase_batch(b, -k, &w) != 0) return 1;
        printf(
            "warm-up %d (not counted): webhook arrays of %d, %d conns: %ld records in %.2f s, %.0f records/s,"
            " 503/retries %ld, errors %ld\n",
            k + 1, b->batch, b->concurrency, w.records, w.secs, w.secs > 0 ? (double)w.records / w.secs : 0,
            w.retries, w.errors);
        fflush(stdout);
    }
    return GO_ON;
}

/* The phases of one repetition, each after the stack settled. */
static int run_repetition(prog_t *p, int rep, result_t *r) {
    bench_t *b = &p->b;
    if (b->do_ceiling) {
        /* The previous repetition's events may still be being consumed
         * (a ceiling run beside them comes out 2-3x slower than the
         * first repetition's). */
        if (rep > 1 || p->warmups > 0) settle(b, rep > 1 ? "the previous repetition" : "the warm-up");
        fprintf(stderr, PROG ": rep %d: ceiling (multi-row INSERT ... ON CONFLICT)\n", rep);
        if (phase_ceiling(b, rep, &r[P_CEILING]) != 0) return 1;
    }
    if (b->do_batch) {
        settle(b, "the previous phase");
        fprintf(stderr, PROG ": rep %d: webhooks, arrays of %d over %d connections\n", rep, b->batch,
                b->concurrency);
        if (phase_batch(b, rep, &r[P_BATCH]) != 0) return 1;
    }
    if (b->do_single) {
        settle(b, "the batched webhooks");
        fprintf(stderr, PROG ": rep %d: webhooks, single records at %.0f/s for %.0f s\n", rep, b->rate,
                b->seconds);
        if (phase_single(b, rep, &r[P_SINGLE]) != 0) return 1;
    }
    if (b->do_csv) {
        settle(b, "the single-record webhooks");
        fprintf(stderr, PROG ": rep %d: CSV import\n", rep);
        if (phase_csv(b, rep, &r[P_CSV], p->csv_summary, sizeof p->csv_summary) != 0) return 1;
    }
    return GO_ON;
}

/* The table of one repetition: a row per phase run. */
static void print_repetition(const bench_t *b, int rep, const result_t *r) {
    printf("repetition %d:\n", rep);
    printf("  %-34s %9s %9s %11s %10s   %s\n", "path", "records", "seconds", "records/s", "vs ceiling",
           "notes");
    double crate =
        b->do_ceiling && r[P_CEILING].secs > 0 ? (double)r[P_CEILING].records / r[P_CEILING].secs : 0;
    bool on[P_N] = {b->do_ceiling, b->do_batch, b->do_single, b->do_csv};
    char note[256], label[64];
    for (int p = 0; p < P_N; p++) {
        const result_t *x = &r[p];
        if (!on[p]) continue;
        switch (p) {
        case P_CEILING:
            snprintf(label, sizeof label, "ceiling: INSERT..ON CONFLICT x%d", CEILING_ROWS);
            break;
        case P_BATCH:
            snprintf(label, sizeof label, "webhook arrays of %d, %d conns", b->batch, b->concurrency);
            break;
        case P_SINGLE: snprintf(label, sizeof label, "webhook single records @%.0f/s", b->rate); break;
        default: snprintf(label, sizeof label, "csv import"); break;
        }
        int n = snprintf(note, sizeof note, "db rows %ld+%ld", x->db_opps, x->db_ints);
        if (p == P_BATCH || p == P_SINGLE)
            n += snprintf(note + n, sizeof note - (size_t)n, ", 503/retries %ld, errors %ld", x->retries,
                          x->errors);
        if (p == P_SINGLE)
            snprintf(note + n, sizeof note - (size_t)n, ", p50 %.1f p95 %.1f p99 %.1f max %.1f ms", x->p50,
                     x->p95, x->p99, x->max);
        if (p == P_CSV && x->errors) snprintf(note + n, sizeof note - (size_t)n, ", import FAILED");
        print_row(label, x, crate, note);
    }
    fflush(stdout);
}

static int run_repetitions(prog_t *p) {
    p->res = ds_calloc((size_t)p->b.repeat, sizeof *p->res);
    for (int rep = 1; rep <= p->b.repeat; rep++) {
        if (run_repetition(p, rep, p->res[rep - 1]) != GO_ON) return 1;
        print_repetition(&p->b, rep, p->res[rep - 1]);
    }
    return GO_ON;
}

/* The median over the repetitions of the single-record phase's double at
 * offset off of result_t. */
static double single_median(const prog_t *p, size_t off, double *tmp) {
    for (int k = 0; k < p->b.repeat; k++)
        tmp[k] = *(const double *)((const char *)&p->res[k][P_SINGLE] + off);
    return perf_median(tmp, (size_t)p->b.repeat);
}

/* The medians over the repetitions, and the two targets. */
static int print_medians(prog_t *p) {
    const bench_t *b = &p->b;
    double med_rate[P_N] = {0}, med_secs[P_N] = {0};
    double *tmp = ds_calloc((size_t)b->repeat, sizeof *tmp),
           *tmp2 = ds_calloc((size_t)b->repeat, sizeof *tmp2);
    for (int ph = 0; ph < P_N; ph++) {
        for (int k = 0; k < b->repeat; k++) {
            const result_t *x = &p->res[k][ph];
            tmp[k] = x->secs > 0 ? (double)x->records / x->secs : 0;
            tmp2[k] = x->secs;
        }
        med_rate[ph] = perf_median(tmp, (size_t)b->repeat);
        med_secs[ph] = perf_median(tmp2, (size_t)b->repeat);
    }
    double p50 = single_median(p, offsetof(result_t, p50), tmp),
           p95 = single_median(p, offsetof(result_t, p95), tmp),
           p99 = single_median(p, offsetof(result_t, p99), tmp),
           due99 = single_median(p, offsetof(result_t, due_p99), tmp),
           ach = single_median(p, offsetof(result_t, achieved), tmp);
    char la1[64];
    perf_loadavg(la1, sizeof la1);
    printf("\nmedians of %d repetition%s (load average at start %s, at end %s, %ld CPUs):\n", b->repeat,
           b->repeat > 1 ? "s" : "", p->la0, la1, p->ncpu);
    printf("  %-34s %9s %9s %11s %10s\n", "path", "records", "seconds", "records/s", "vs ceiling");
    const char *labels[P_N] = {"ceiling (multi-row INSERT)", "webhook, batched", "webhook, single records",
                               "csv import"};
    bool on[P_N] = {b->do_ceiling, b->do_batch, b->do_single, b->do_csv};
    for (int ph = 0; ph < P_N; ph++) {
        if (!on[ph]) continue;
        double ratio =
            b->do_ceiling && med_rate[P_CEILING] > 0 ? 100.0 * med_rate[ph] / med_rate[P_CEILING] : NAN;
        printf("  %-34s %9ld %9.2f %11.0f %9.1f%%\n", labels[ph], p->res[0][ph].records, med_secs[ph],
               med_rate[ph], ratio);
    }
    printf("\n");
    if (b->do_batch && b->do_ceiling) {
        double ratio = 100.0 * med_rate[P_BATCH] / med_rate[P_CEILING];
        printf("target: batched webhooks >= 50%% of the ceiling: %.1f%% (%.0f vs %.0f records/s): %s\n",
               ratio, med_rate[P_BATCH], med_rate[P_CEILING], ratio >= 50 ? "met" : "NOT met");
    }
    if (b->do_single)
        printf("target: single-record POSTs p99 < 10 ms at 500 req/s: p50 %.1f, p95 %.1f, p99 %.1f ms (p99 "
               "from the "
               "scheduled send %.1f ms) at %.0f req/s achieved (--rate %.0f): %s\n",
               p50, p95, p99, due99, ach, b->rate,
               b->rate < 500
                   ? (p99 < 10 ? "met below the target rate only" : "NOT met, even below the target rate")
               : p99 < 10 && ach >= 0.95 * 500 ? "met"
                                               : "NOT met");
    if (b->do_single && ach < 0.95 * b->rate)
        printf("note: the single-record senders could not keep %.0f req/s (each of the %d threads waits for "
               "its\n"
               "  response): the service's latency times the rate exceeded the threads; the p99 from the\n"
               "  scheduled send shows the backlog that built up\n",
               b->rate, b->single_threads);
    free(tmp);
    free(tmp2);
    return GO_ON;
}

static int print_notes(const prog_t *p) {
    if (p->b.do_csv && p->csv_summary[0]) printf("csv import's own summary (last run): %s\n", p->csv_summary);
    printf("note: the webhook and CSV paths validate each record and write, in the same transaction, the\n"
           "  raw row plus its opportunity_history and outbox rows; the relay then publishes the outbox to\n"
           "  Kafka and the stack's workers consume the events, on the same machine. The ceiling writes\n"
           "  only the raw rows (one connection, %d rows a statement, no history, no outbox, no events).\n"
           "  Phases run one after the other, each into a fresh org; between them the program waits for\n"
           "  the outbox to drain and the workers to go idle (--settle).\n",
           CEILING_ROWS);
    return 0;
}

static void prog_close(prog_t *p) {
    bench_t *b = &p->b;
    free(p->res);
    if (b->own_work_dir) remove_work_dir(b);
    dataset_close(&b->data);
    PQfinish(b->db);
    ds_config_close(&b->cfg);
}

int main(int argc, char **argv) {
    prog_t p = {.b = {.concurrency = 4,
                      .batch = 100,
                      .single_threads = 64,
                      .repeat = 1,
                      .warmup = 1,
                      .rate = 500,
                      .seconds = 10,
                      .settle_s = 300,
                      .do_ceiling = true,
                      .do_batch = true,
                      .do_single = true,
                      .do_csv = true},
                .nopps = 20000,
                .nints = 100000,
                .seed = 1,
                .url = getenv("DEALSCORE_INGEST_URL"),
                .bin_dir = getenv("DEALSCORE_BIN_DIR")};
    int rc = parse_options(&p, argc, argv);
    if (rc != GO_ON) return rc;
    rc = check_settings(&p);
    if (rc != GO_ON) return rc;
    rc = connect_stack(&p);
    if (rc == GO_ON) rc = generate_data(&p);
    if (rc == GO_ON) rc = warm_up(&p);
    if (rc == GO_ON) rc = run_repetitions(&p);
    if (rc == GO_ON) rc = print_medians(&p);
    if (rc == GO_ON) rc = print_notes(&p);
    prog_close(&p);
    return rc;
}
