/* dealscore-bench-e2e: streams opportunity changes through the webhook API at
 * given rates and measures, per change, the time from the HTTP 202 to the
 * prediction.made event of a score that covers it (the predictions row is
 * committed before that event is produced), and per stage: to
 * opportunity.changed (outbox relay), features.ready and prediction.made.
 * Prints p50/p95/p99 per rate and the highest rate whose backlog drained.
 * A measurement program, not a test: it asserts nothing.
 *
 *   eval "$(deploy/local/stack env)"
 *   build/bin/dealscore-bench-e2e --token TOKEN [--rates 100,500,1000] [--seconds 10]
 *       [--opportunities 2000] [--threads 8] [--drain 10]
 *       [--batch 1] [--step-from R0 [--step-by F|+N] [--step-seconds 60] [--max-rate R]]
 * The step mode raises the rate until p99 reaches 1 s or the backlog grows
 * and prints the highest sustained rate (perf_steps_highest, perf.h).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "perf.h"
#include "base/common.h"
#include "base/config.h"
#include "infra/kafka.h"
#include "base/log.h"
#include "dealscore/v1/events.pb-c.h"

extern char **environ;

/* ---- changes and their timings ------------------------------------------------- */

enum { ST_CHANGED = 0, ST_FEATURES, ST_PREDICTION, ST_N };

typedef struct {
    int opp;             /* index into opps */
    int64_t as_of_us;    /* changed_at we sent = the as_of of the covering events */
    int64_t accepted_us; /* monotonic time of the 202 */
    int64_t done_us[ST_N];
    int status;
} change_t;

typedef struct {
    char ext[48];
    char id[37];
    char *fields; /* --existing: the deal's other fields as JSON members, or NULL */
    int stage0;   /* --existing: index of its current stage */
    int moves;
    /* pending changes of this opportunity, in as_of order (indexes) */
    int *pend;
    size_t npend, cap;
    size_t first[ST_N]; /* first pending index not yet covered, per stage */
} opp_t;

/* An opportunity's id and its index in run_t.opps, sorted by id. */
typedef struct {
    char id[37];
    int k;
} opp_key_t;

typedef struct {
    const char *host;
    int port;
    const char *token;
    opp_t *opps;
    size_t nopps;
    opp_key_t *by_id;
    change_t *ch;
    size_t nch;
    atomic_size_t next;
    int64_t start_mono;
    double rate;
    int batch;
    pthread_mutex_t mu;
    atomic_long errors;
    atomic_int stop;
} run_t;

static const char *stages[] = {"prospecting", "qualification", "discovery",
                               "demo",        "proposal",      "negotiation"};

/* Writes change i as one webhook record into out (cap bytes); returns its
 * length. The change happens now (never in the future: the workers take
 * min(change time, now) as the as_of). */
static size_t format_change(run_t *r, size_t i, char *out, size_t cap) {
    change_t *ch = &r->ch[i];
    opp_t *o = &r->opps[ch->opp];
    __atomic_store_n(&ch->as_of_us, ds_now_us(), __ATOMIC_RELEASE);
    char at[40];
    ds_format_time_us(ch->as_of_us, at, sizeof at);
    /* Every change moves the deal one stage on (and back from the last
     * open one), so no change repeats the deal's previous record: a
     * repeat would be a no-op for ingest, with no event to wait for. */
    int k = __atomic_add_fetch(&o->moves, 1, __ATOMIC_RELAXED);
    int st = (o->stage0 + k) % 10;
    st = st < 6 ? st : 10 - st;
    int n;
    if (o->fields)
        n = snprintf(out, cap, "{\"external_id\":\"%s\",\"stage\":\"%s\",%s,\"changed_at\":\"%s\"}", o->ext,
                     stages[st], o->fields, at);
    else
        n = snprintf(out, cap,
                     "{\"external_id\":\"%s\",\"stage\":\"%s\",\"created_at\":\"2026-01-01T00:00:00Z\","
                     "\"amount\":%zu,\"account_external_id\":\"bench-acc-%d\",\"changed_at\":\"%s\"}",
                     o->ext, stages[st], 1000 + (i % 997) * 10, ch->opp % 50, at);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Sends changes from..to-1 in one request (an array when --batch > 1) and
 * notes the 202 of each. */
static void send_changes(run_t *r, perf_conn_t *c, size_t from, size_t to, char *body, size_t cap) {
    size_t len = 0;
    if (r->batch > 1) body[len++] = '[';
    for (size_t i = from; i < to; i++) {
        if (i > from) body[len++] = ',';
        len += format_change(r, i, body + len, cap - len - 1);
    }
    if (r->batch > 1) body[len++] = ']';
    int status = perf_conn_request(c, "/v1/opportunities", r->token, body, len);
    int64_t accepted = ds_mono_us();
    for (size_t i = from; i < to; i++) {
        r->ch[i].accepted_us = accepted;
        r->ch[i].status = status;
    }
    if (status != 202) atomic_fetch_add(&r->errors, (long)(to - from));
}

static void *sender(void *arg) {
    run_t *r = arg;
    perf_conn_t c = {.fd = -1, .port = r->port};
    snprintf(c.host, sizeof c.host, "%s", r->host);
    size_t batch = (size_t)r->batch, cap = batch * 1024 + 2;
    char *body = ds_malloc(cap);
    for (;;) {
        size_t i = atomic_fetch_add(&r->next, batch);
        if (i >= r->nch || atomic_load(&r->stop)) break;
        size_t to = i + batch < r->nch ? i + batch : r->nch;
        /* Open loop: change i is due at start + i / rate; a batch goes
         * when its last change is due. */
        int64_t due = r->start_mono + (int64_t)((double)(to - 1) * 1e6 / r->rate);
        int64_t now = ds_mono_us();
        if (due > now) {
            struct timespec ts = {(due - now) / 1000000, ((due - now) % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
        send_changes(r, &c, i, to, body, cap);
    }
    free(body);
    perf_conn_close(&c);
    return NULL;
}

/* Consumes prediction.made (and with --hops the topics before it) and marks
 * changes covered. */
typedef struct {
    ds_consumer_t *c;
    run_t *r;
    char *topic[ST_N];
    atomic_int stop;
    atomic_long covered;
} watcher_t;

static int cmp_opp_key(const void *a, const void *b) {
    return strcmp(((const opp_key_t *)a)->id, ((const opp_key_t *)b)->id);
}

/* Sorts the opportunities' ids for opp_find: a linear search per event
 * cost the watcher more than the workers' hops at thousands a second. */
static void index_opps(run_t *r) {
    r->by_id = ds_calloc(r->nopps + 1, sizeof *r->by_id);
    for (size_t i = 0; i < r->nopps; i++) {
        snprintf(r->by_id[i].id, sizeof r->by_id[i].id, "%s", r->opps[i].id);
        r->by_id[i].k = (int)i;
    }
    qsort(r->by_id, r->nopps, sizeof *r->by_id, cmp_opp_key);
}

static int opp_find(run_t *r, const char *id, size_t len) {
    opp_key_t key = {.k = -1};
    if (len >= sizeof key.id) return -1;
    memcpy(key.id, id, len);
    const opp_key_t *hit = bsearch(&key, r->by_id, r->nopps, sizeof *r->by_id, cmp_opp_key);
    return hit ? hit->k : -1;
}

static void cover(watcher_t *w, int stage, const char *opp_id, size_t len, int64_t as_of, int64_t now) {
    run_t *r = w->r;
    if (!r) return;
    int k = opp_find(r, opp_id, len);
    if (k < 0) return;
    opp_t *o = &r->opps[k];
    pthread_mutex_lock(&r->mu);
    while (o->first[stage] < o->npend) {
        change_t *ch = &r->ch[o->pend[o->first[stage]]];
        int64_t at = __atomic_load_n(&ch->as_of_us, __ATOMIC_ACQUIRE);
        if (at == 0 || at > as_of) break; /* not sent yet, or a later change */
        ch->done_us[stage] = now;
        o->first[stage]++;
        if (stage == ST_PREDICTION) atomic_fetch_add(&w->covered, 1);
    }
    pthread_mutex_unlock(&r->mu);
}

static void *watch(void *arg) {
    watcher_t *w = arg;
    rd_kafka_message_t *msgs[256];
    while (!atomic_load(&w->stop)) {
        /* What is ready, at once: waiting to fill a batch would add that
         * wait to the times measured. */
        int n = ds_consumer_poll_ready(w->c, msgs, 256, 100, 0);
        int64_t now = ds_mono_us();
        for (int i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            const char *t = rd_kafka_topic_name(m->rkt);
            if (!strcmp(t, w->topic[ST_CHANGED])) {
                Dealscore__V1__OpportunityChanged *e =
                    dealscore__v1__opportunity_changed__unpack(NULL, m->len, m->payload);
                if (e)
                    cover(w, ST_CHANGED, e->opportunity_id, strlen(e->opportunity_id), e->occurred_at_us,
                          now);
                dealscore__v1__opportunity_changed__free_unpacked(e, NULL);
            } else if (!strcmp(t, w->topic[ST_FEATURES])) {
                Dealscore__V1__FeaturesReady *e =
                    dealscore__v1__features_ready__unpack(NULL, m->len, m->payload);
                if (e) cover(w, ST_FEATURES, e->opportunity_id, strlen(e->opportunity_id), e->as_of_us, now);
                dealscore__v1__features_ready__free_unpacked(e, NULL);
            } else {
                Dealscore__V1__PredictionMade *e =
                    dealscore__v1__prediction_made__unpack(NULL, m->len, m->payload);
                if (e)
                    cover(w, ST_PREDICTION, e->opportunity_id, strlen(e->opportunity_id), e->as_of_us, now);
                dealscore__v1__prediction_made__free_unpacked(e, NULL);
            }
        }
        if (n > 0) ds_consumer_release(msgs, (size_t)n);
    }
    return NULL;
}

static void usage(void) {
    fprintf(
        stderr,
        "usage: dealscore-bench-e2e --token TOKEN [--url URL] [--rates R1,R2,...] [--seconds S]\n"
        "       [--opportunities N] [--threads T] [--drain S] [--existing] [--hops]\n"
        "       [--batch B] [--step-from R0 [--step-by F|+N] [--step-seconds S] [--max-rate R]]\n"
        "       [--backlog N]\n"
        "--batch sends B changes (1-1000, at most N; 1) of distinct deals per request, as a JSON array, "
        "when\n"
        "the last one is due; latencies count from that request's 202.\n"
        "--step-from replaces --rates: steps of --step-seconds (60) from R0 changes/s, each rate F times\n"
        "(1.5) or N more than the last, up to --max-rate (100000); it stops at the first step with p99 of\n"
        "1 s or more, a change not scored within --drain, or a backlog (changes accepted, not yet scored)\n"
        "that grew by more than half a second of arrivals between 1 s into the step and its end, and\n"
        "prints the highest sustained rate.\n"
        "--backlog N replaces --rates: a bulk import. It sends N changes as fast as ingest takes them and\n"
        "reports how fast the stack drained them (changes / (last prediction - first 202)).\n"
        "Every mode prints, per row, the batches the workers gathered as a burst meanwhile (the sum of\n"
        "their dealscore_worker_burst_batches_total): none is expected in an ordinary flow; and the CPU\n"
        "per change, from the row's first change to its drain, of the stack's processes that run on this\n"
        "machine (the broker, Postgres and each of its backends by application_name, the workers, each\n"
        "found by the port it listens on) and of this program; then the WAL and the buffers per change\n"
        "that Postgres counted (pg_stat_wal, pg_stat_database), which do not move with the load.\n"
        "Changes accepted and not scored within --drain are named on stderr: how many, when they were\n"
        "sent, and the first one's deal and time.\n"
        "--existing moves up to N open deals of the token's org one stage at a time instead of\n"
        "creating N new ones.\n"
        "--hops also times each hop (relay, feature, scoring): the program then consumes\n"
        "opportunity.changed and features.ready as well as prediction.made, which costs the broker a\n"
        "fetch per produce of each; without it those columns show -.\n"
        "Settings from the environment as the services (DEALSCORE_DATABASE_URL, DEALSCORE_KAFKA_BROKERS,\n"
        "DEALSCORE_TOPIC_PREFIX); --url defaults to $DEALSCORE_INGEST_URL. Before the first rate it waits\n"
        "until the workers at DEALSCORE_FEATURE_URL, DEALSCORE_SCORING_URL and DEALSCORE_BENCHMARK_URL\n"
        "(those set) report no consumer lag.\n");
}

/* Postgres's client backends by application name (pg_stat_activity) with
 * their CPU: noted at a row's start, printed per change at its end. */
typedef struct {
    int pid;
    char app[64];
    double start_s;
} backend_t;

typedef struct {
    backend_t *v;
    size_t n;
} backends_t;

/* What Postgres has done, counted where it does not depend on the load:
 * the WAL the whole cluster has written (pg_stat_wal: bytes, records,
 * full-page images) and the buffers the database's sessions touched
 * (pg_stat_database: hits and reads). */
typedef struct {
    double wal_bytes, wal_records, wal_fpi, buffers;
    bool ok;
} pg_work_t;

/* A phase returns GO_ON to let the next one run, or the exit status. */
#define GO_ON (-1)

/* One run of the program. */
typedef struct {
    const char *url, *token, *rates;
    double seconds, drain;
    int nopps, nthreads;
    bool existing;
    bool hops; /* --hops: the watcher consumes every topic of the path, not only the last */
    /* step mode (--step-from > 0) */
    double step_from, step_factor, step_add, step_seconds, max_rate;
    long backlog;           /* --backlog N (> 0): the bulk mode */
    const char *workers[3]; /* base URLs of the workers whose /metrics are read */
    size_t nworkers;
    char host[128];
    int port;
    ds_config_t cfg;
    bool cfg_loaded;
    char runid[9];
    PGconn *db;
    perf_cpu_t cpu;          /* the stack's processes on this machine */
    bool local_db;           /* Postgres runs here: its backends are counted */
    backends_t pg_start;     /* its backends at the start of a row */
    pg_work_t pg_work_start; /* what Postgres had done at the start of a row */
    run_t r;
    watcher_t w;
    pthread_t watch_thread;
    bool watching;
} bench_t;

static int parse_options(bench_t *b, int argc, char **argv) {
    static const struct option opts[] = {{"token", 1, 0, 't'},
                                         {"url", 1, 0, 'u'},
                                         {"rates", 1, 0, 'r'},
                                         {"seconds", 1, 0, 's'},
                                         {"opportunities", 1, 0, 'o'},
                                         {"threads", 1, 0, 'n'},
                                         {"drain", 1, 0, 'd'},
                                         {"help", 0, 0, 'h'},
                                         {"existing", 0, 0, 'e'},
                                         {"step-from", 1, 0, 'F'},
                                         {"step-by", 1, 0, 'B'},
                                         {"step-seconds", 1, 0, 'S'},
                                         {"max-rate", 1, 0, 'M'},
                                         {"batch", 1, 0, 'b'},
                                         {"backlog", 1, 0, 'K'},
                                         {"hops", 0, 0, 'H'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': b->token = optarg; break;
        case 'u': b->url = optarg; break;
        case 'r': b->rates = optarg; break;
        case 's': b->seconds = atof(optarg); break;
        case 'o': b->nopps = atoi(optarg); break;
        case 'n': b->nthreads = atoi(optarg); break;
        case 'd': b->drain = atof(optarg); break;
        case 'e': b->existing = true; break;
        case 'H': b->hops = true; break;
        case 'F': b->step_from = atof(optarg); break;
        case 'B':
            if (!perf_parse_step_by(optarg, &b->step_factor, &b->step_add)) {
                fprintf(stderr, "dealscore-bench-e2e: --step-by must be a factor above 1 or +N\n");
                return 2;
            }
            break;
        case 'S': b->step_seconds = atof(optarg); break;
        case 'M': b->max_rate = atof(optarg); break;
        case 'b': b->r.batch = atoi(optarg); break;
        case 'K': b->backlog = atol(optarg); break;
        case 'h': usage(); return 0;
        default: usage(); return 2;
        }
    }
    if (!b->token || !b->url || b->nopps < 1 || b->nthreads < 1 || b->seconds <= 0 || b->step_from < 0 ||
        b->step_seconds < 1 || b->max_rate <= 0 || b->backlog < 0 || b->r.batch < 1 || b->r.batch > 1000 ||
        b->r.batch > b->nopps) {
        usage();
        return 2;
    }
    if (perf_parse_url(b->url, b->host, sizeof b->host, &b->port) != 0) {
        fprintf(stderr, "dealscore-bench-e2e: --url must be http://HOST:PORT\n");
        return 2;
    }
    return GO_ON;
}

/* The stack's processes that run on this machine, for the CPU line of each
 * row: the broker (the first of DEALSCORE_KAFKA_BROKERS), Postgres with
 * its backends, and the workers, each by the port it listens on. */
static void find_stack_processes(bench_t *b) {
    const char *broker = b->cfg.kafka_brokers, *colon = broker ? strchr(broker, ':') : NULL;
    if (colon) perf_cpu_add(&b->cpu, "kafka", atoi(colon + 1), false);
    const char *host = PQhost(b->db);
    b->local_db = !host || !*host || host[0] == '/' || strncmp(host, "127.", 4) == 0 ||
                  strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0;
    if (b->local_db) perf_cpu_add(&b->cpu, "postgres", atoi(PQport(b->db)), true);
    perf_cpu_add_url(&b->cpu, "ingest", b->url);
    perf_cpu_add_url(&b->cpu, "feature", getenv("DEALSCORE_FEATURE_URL"));
    perf_cpu_add_url(&b->cpu, "scoring", getenv("DEALSCORE_SCORING_URL"));
    perf_cpu_add_url(&b->cpu, "benchmark", getenv("DEALSCORE_BENCHMARK_URL"));
    perf_cpu_add_url(&b->cpu, "notify", getenv("DEALSCORE_NOTIFY_URL"));
}

static backends_t backends_now(PGconn *db) {
    backends_t bs = {0};
    PGresult *res = PQexec(db, "select pid, application_name from pg_stat_activity"
                               " where backend_type = 'client backend' and pid <> pg_backend_pid()");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) {
        bs.v = ds_calloc((size_t)PQntuples(res), sizeof *bs.v);
        for (int i = 0; i < PQntuples(res); i++) {
            backend_t *e = &bs.v[bs.n++];
            e->pid = atoi(PQgetvalue(res, i, 0));
            snprintf(e->app, sizeof e->app, "%s", PQgetvalue(res, i, 1));
            e->start_s = perf_proc_cpu_s(e->pid);
        }
    }
    PQclear(res);
    return bs;
}

/* What the live backends of one application_name used over a row. */
typedef struct {
    char app[64];
    double used_s;
} app_cpu_t;

static int cmp_app_cpu(const void *x, const void *y) {
    double a = ((const app_cpu_t *)x)->used_s, b = ((const app_cpu_t *)y)->used_s;
    return (a < b) - (a > b);
}

/* One line: the CPU per change since start of the backends now alive, by
 * application name, largest first (a backend that started meanwhile counts
 * whole; one that ended is in the postgres total only). */
static void print_backends(PGconn *db, const backends_t *start, double changes) {
    backends_t end = backends_now(db);
    app_cpu_t *apps = ds_calloc(end.n + 1, sizeof *apps);
    size_t napps = 0;
    for (size_t i = 0; i < end.n; i++) {
        double before = 0;
        for (size_t j = 0; j < start->n; j++)
            if (start->v[j].pid == end.v[i].pid && !isnan(start->v[j].start_s)) before = start->v[j].start_s;
        double used = isnan(end.v[i].start_s) ? 0 : end.v[i].start_s - before;
        size_t k = 0;
        while (k < napps && strcmp(apps[k].app, end.v[i].app) != 0) k++;
        if (k == napps) snprintf(apps[napps++].app, sizeof apps->app, "%s", end.v[i].app);
        apps[k].used_s += used;
    }
    qsort(apps, napps, sizeof *apps, cmp_app_cpu);
    printf("  of which Postgres backends by application_name, µs per change:");
    double rest = 0;
    for (size_t k = 0; k < napps; k++) {
        double us = apps[k].used_s * 1e6 / changes;
        if (us >= 5 && apps[k].app[0])
            printf(" %s %.0f,", apps[k].app, us);
        else
            rest += us;
    }
    printf(" others %.0f\n", rest);
    free(apps);
    free(end.v);
}

static pg_work_t pg_work_now(PGconn *db) {
    pg_work_t w = {0};
    PGresult *res =
        PQexec(db, "select w.wal_bytes, w.wal_records, w.wal_fpi, d.blks_hit + d.blks_read"
                   " from pg_stat_wal w, pg_stat_database d where d.datname = current_database()");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        w.wal_bytes = atof(PQgetvalue(res, 0, 0));
        w.wal_records = atof(PQgetvalue(res, 0, 1));
        w.wal_fpi = atof(PQgetvalue(res, 0, 2));
        w.buffers = atof(PQgetvalue(res, 0, 3));
        w.ok = true;
    }
    PQclear(res);
    return w;
}

/* One line: what Postgres did per change since start, for every session
 * (the workers, autovacuum, anyone else). Unlike CPU time it does not
 * depend on the machine's load: what a change of the stored documents,
 * an index or a plan saves shows here in one run. */
static void print_pg_work(PGconn *db, const pg_work_t *start, double changes) {
    pg_work_t end = pg_work_now(db);
    if (!start->ok || !end.ok) return;
    printf("  Postgres per change: %.0f bytes of WAL in %.1f records (%.3f full-page images), %.1f buffers\n",
           (end.wal_bytes - start->wal_bytes) / changes, (end.wal_records - start->wal_records) / changes,
           (end.wal_fpi - start->wal_fpi) / changes, (end.buffers - start->buffers) / changes);
}

static void cpu_start(bench_t *b) {
    perf_cpu_start(&b->cpu);
    b->pg_work_start = pg_work_now(b->db);
    if (b->local_db) b->pg_start = backends_now(b->db);
}

/* Prints the CPU lines of a row of changes. */
static void cpu_print(bench_t *b, double changes) {
    perf_cpu_print(&b->cpu, stdout, changes);
    if (b->local_db && changes > 0) print_backends(b->db, &b->pg_start, changes);
    if (changes > 0) print_pg_work(b->db, &b->pg_work_start, changes);
    free(b->pg_start.v);
    b->pg_start = (backends_t){0};
}

/* The services' settings, and the database. */
static int connect_db(bench_t *b) {
    char err[512];
    /* Only new events matter: a fresh group starting at the end. */
    static const char *const latest[] = {"KAFKA_AUTO_OFFSET_RESET=latest"};
    char **envp = perf_environ_with(latest, 1);
    int rc = ds_config_load(&b->cfg, DS_SVC_FEATURE, envp, err, sizeof err);
    free(envp);
    if (rc != 0) {
        fprintf(stderr, "dealscore-bench-e2e: %s\n", err);
        return 2;
    }
    b->cfg_loaded = true;
    ds_log_init("bench-e2e", DS_LOG_WARN);
    b->db = PQconnectdb(b->cfg.database_url);
    if (PQstatus(b->db) != CONNECTION_OK) {
        fprintf(stderr, "dealscore-bench-e2e: %s", PQerrorMessage(b->db));
        return 1;
    }
    find_stack_processes(b);
    return GO_ON;
}

/* --existing: up to --opportunities open deals of the token's org, newest
 * first, with their other fields so that a change resends them. */
static int load_existing_opps(bench_t *b) {
    run_t *r = &b->r;
    char hash[65], lim[16];
    ds_sha256_hex(b->token, strlen(b->token), hash);
    snprintf(lim, sizeof lim, "%d", b->nopps);
    const char *qv[] = {hash, lim};
    PGresult *res = PQexecParams(
        b->db,
        "select o.external_id, o.id, o.stage, json_build_object('created_at', o.created_at,"
        " 'account_external_id', o.account_external_id, 'owner_id', o.owner_id, 'product_category',"
        " o.product_category, 'persona', o.persona, 'amount', o.amount, 'currency', o.currency,"
        " 'close_date', o.close_date)::text"
        " from opportunities o join dealscore_internal.ingest_tokens t on t.org_id = o.org_id"
        " where t.token_hash = $1 and o.outcome = 'open' and not o.placeholder"
        " order by o.created_at desc limit $2::int",
        2, NULL, qv, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0) {
        fprintf(stderr, "dealscore-bench-e2e: no open deals found for this token's org\n");
        PQclear(res);
        return 1;
    }
    r->nopps = (size_t)PQntuples(res);
    for (size_t i = 0; i < r->nopps; i++) {
        opp_t *o = &r->opps[i];
        snprintf(o->ext, sizeof o->ext, "%s", PQgetvalue(res, (int)i, 0));
        snprintf(o->id, sizeof o->id, "%s", PQgetvalue(res, (int)i, 1));
        for (int k = 0; k < 6; k++)
            if (!strcmp(PQgetvalue(res, (int)i, 2), stages[k])) o->stage0 = k;
        /* {"a":..,"b":..} -> "a":..,"b":.. (nulls dropped by the webhook as absent) */
        const char *js = PQgetvalue(res, (int)i, 3);
        o->fields = ds_strndup(js + 1, strlen(js) - 2);
    }
    PQclear(res);
    return GO_ON;
}

/* Creates the new opportunities through the webhook, 500 a request. */
static int post_new_opps(bench_t *b) {
    run_t *r = &b->r;
    perf_conn_t cn = {.fd = -1, .port = b->port};
    snprintf(cn.host, sizeof cn.host, "%s", b->host);
    size_t cap = 256 * 1024;
    char *body = ds_malloc(cap);
    int rc = GO_ON;
    for (size_t i = 0; i < r->nopps && rc == GO_ON; i += 500) {
        size_t len = 0;
        body[len++] = '[';
        for (size_t k = i; k < r->nopps && k < i + 500; k++)
            len += (size_t)snprintf(
                body + len, cap - len,
                "%s{\"external_id\":\"%s\",\"stage\":\"prospecting\",\"created_at\":"
                "\"2026-01-01T00:00:00Z\",\"amount\":5000,\"account_external_id\":\"bench-acc-%zu\","
                "\"changed_at\":\"2026-01-01T00:00:00Z\"}",
                k > i ? "," : "", r->opps[k].ext, k % 50);
        body[len++] = ']';
        int st = perf_conn_request(&cn, "/v1/opportunities", b->token, body, len);
        if (st != 202) {
            fprintf(stderr, "dealscore-bench-e2e: creating opportunities failed with HTTP %d\n", st);
            rc = 1;
        }
    }
    free(body);
    perf_conn_close(&cn);
    return rc;
}

/* Creates the opportunities, finds their ids, and waits until they are
 * scored: the creations are a burst for the workers, to be worked off
 * before the measurement. */
static int create_opps(bench_t *b) {
    run_t *r = &b->r;
    int rc = post_new_opps(b);
    if (rc != GO_ON) return rc;
    char like[64];
    snprintf(like, sizeof like, "bench-%s-%%", b->runid);
    const char *pv[] = {like};
    PGresult *res = PQexecParams(b->db, "select external_id, id from opportunities where external_id like $1",
                                 1, NULL, pv, NULL, NULL, 0);
    for (int i = 0; i < PQntuples(res); i++) {
        size_t k = strtoul(strrchr(PQgetvalue(res, i, 0), '-') + 1, NULL, 10);
        if (k < r->nopps) snprintf(r->opps[k].id, sizeof r->opps[k].id, "%s", PQgetvalue(res, i, 1));
    }
    PQclear(res);
    int64_t t0 = ds_mono_us();
    long scored = 0;
    while (ds_mono_us() - t0 < (int64_t)(b->drain * 1e6) + 60000000) {
        res =
            PQexecParams(b->db,
                         "select count(*) from predictions p join opportunities o on o.id = p.opportunity_id"
                         " where o.external_id like $1",
                         1, NULL, pv, NULL, NULL, 0);
        scored = PQresultStatus(res) == PGRES_TUPLES_OK ? atol(PQgetvalue(res, 0, 0)) : -1;
        PQclear(res);
        if (scored < 0 || scored >= (long)r->nopps) break;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    printf("dealscore-bench-e2e: %ld of %zu new opportunities scored %.1f s after their creation\n", scored,
           r->nopps, (double)(ds_mono_us() - t0) / 1e6);
    return GO_ON;
}

static int prepare_opps(bench_t *b) {
    run_t *r = &b->r;
    r->host = b->host;
    r->port = b->port;
    r->token = b->token;
    r->nopps = (size_t)b->nopps;
    r->opps = ds_calloc(r->nopps, sizeof *r->opps);
    snprintf(b->runid, sizeof b->runid, "%08x", (unsigned)(ds_now_us() & 0xffffffff));
    for (size_t i = 0; i < r->nopps; i++)
        snprintf(r->opps[i].ext, sizeof r->opps[i].ext, "bench-%s-%zu", b->runid, i);
    return b->existing ? load_existing_opps(b) : create_opps(b);
}

/* Measure the ordinary flow, not the digestion of what came before (an
 * import, the creations above, a model's rescore): wait until the stack's
 * workers report no consumer lag, twice in a row. */
static void wait_for_quiet_workers(bench_t *b) {
    const char *urls[] = {getenv("DEALSCORE_FEATURE_URL"), getenv("DEALSCORE_SCORING_URL"),
                          getenv("DEALSCORE_BENCHMARK_URL")};
    for (size_t i = 0; i < 3; i++)
        if (urls[i] && *urls[i]) b->workers[b->nworkers++] = urls[i];
    if (!b->nworkers) return;
    int64_t t0 = ds_mono_us();
    double lag = 0;
    if (perf_wait_quiet(b->workers, b->nworkers, b->drain + 60, NULL, NULL, &lag))
        printf("dealscore-bench-e2e: the workers had no backlog after %.1f s\n",
               (double)(ds_mono_us() - t0) / 1e6);
    else
        printf("dealscore-bench-e2e: the workers still lag %.0f messages after %.0f s; going on\n", lag,
               (double)(ds_mono_us() - t0) / 1e6);
}

/* Batches the workers gathered as a burst so far. */
static long burst_batches(const bench_t *b) {
    return (long)perf_workers_metric(b->workers, b->nworkers, "dealscore_worker_burst_batches_total");
}

/* Moves the watcher to the end of each partition it was assigned, as the
 * broker reports it now. A fresh group starts at the end anyway, but only
 * once its first fetch has asked where the end is, after the assignment:
 * the events of the first changes, sent meanwhile, were skipped (4 to 11
 * changes in the first 10 ms of a run at 500/s, never scored as far as
 * the run could tell). Returns 0 or -1. */
static int watch_from_the_end(watcher_t *w) {
    rd_kafka_t *rk = ds_consumer_handle(w->c);
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts) return -1;
    int rc = parts->cnt > 0 ? 0 : -1;
    for (int i = 0; i < parts->cnt && rc == 0; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (rd_kafka_query_watermark_offsets(rk, p->topic, p->partition, &lo, &hi, 5000) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
            rc = -1;
        p->offset = hi;
    }
    rd_kafka_error_t *err = rc == 0 ? rd_kafka_seek_partitions(rk, parts, 5000) : NULL;
    if (err) {
        rc = -1;
        rd_kafka_error_destroy(err);
    }
    for (int i = 0; i < parts->cnt && rc == 0; i++)
        if (parts->elems[i].err) rc = -1;
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

/* Starts the watcher thread once its consumer has its assignment and is at
 * the end of it, so that no event is missed: on prediction.made, and with
 * --hops on the two topics before it as well. */
static int start_watcher(bench_t *b) {
    watcher_t *w = &b->w;
    char err[512];
    w->topic[ST_CHANGED] = ds_config_topic(&b->cfg, DS_TOPIC_OPPORTUNITY_CHANGED);
    w->topic[ST_FEATURES] = ds_config_topic(&b->cfg, DS_TOPIC_FEATURES_READY);
    w->topic[ST_PREDICTION] = ds_config_topic(&b->cfg, DS_TOPIC_PREDICTION_MADE);
    char group[64];
    snprintf(group, sizeof group, "bench-e2e-%s", b->runid);
    const char *const *topics = (const char *const *)(b->hops ? w->topic : &w->topic[ST_PREDICTION]);
    if (ds_consumer_new(&w->c, &b->cfg, group, topics, b->hops ? ST_N : 1, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-bench-e2e: %s\n", err);
        return 1;
    }
    pthread_create(&b->watch_thread, NULL, watch, w);
    b->watching = true;
    for (int i = 0; i < 300 && !ds_consumer_assigned(w->c); i++) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    if (watch_from_the_end(w) != 0) {
        fprintf(stderr, "dealscore-bench-e2e: could not move the event watcher to the end of its topics\n");
        return 1;
    }
    return GO_ON;
}

/* n changes, round robin over the opportunities, none sent yet. */
static void plan_changes(bench_t *b, size_t n, double rate) {
    run_t *r = &b->r;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->nopps; i++) {
        r->opps[i].npend = 0;
        memset(r->opps[i].first, 0, sizeof r->opps[i].first);
    }
    free(r->ch);
    r->ch = ds_calloc(n, sizeof *r->ch);
    r->nch = n;
    for (size_t i = 0; i < n; i++) {
        r->ch[i].opp = (int)(i % r->nopps);
        r->ch[i].as_of_us = 0; /* set when sent */
        opp_t *o = &r->opps[r->ch[i].opp];
        if (o->npend == o->cap) o->pend = ds_realloc(o->pend, (o->cap = o->cap * 2 + 16) * sizeof(int));
        o->pend[o->npend++] = (int)i;
    }
    atomic_store(&r->next, 0);
    atomic_store(&r->errors, 0);
    atomic_store(&b->w.covered, 0);
    r->rate = rate;
    r->start_mono = ds_mono_us() + 10000;
    b->w.r = r;
    pthread_mutex_unlock(&r->mu);
}

/* Names, on stderr, the changes accepted but not scored within the drain:
 * how many, when they were sent in the rate's run, and the first one. */
static void report_unscored(const run_t *r, size_t n) {
    size_t count = 0, first = 0, last = 0;
    for (size_t i = 0; i < n; i++) {
        const change_t *ch = &r->ch[i];
        if (ch->status != 202 || ch->done_us[ST_PREDICTION]) continue;
        if (!count++) first = i;
        last = i;
    }
    if (!count) return;
    const change_t *ch = &r->ch[first];
    char at[40];
    ds_format_time_us(ch->as_of_us, at, sizeof at);
    fprintf(stderr,
            "dealscore-bench-e2e: %zu changes not scored within the drain, sent %.3f to %.3f s into the "
            "run; the first: %s as of %s\n",
            count, (double)(ch->accepted_us - r->start_mono) / 1e6,
            (double)(r->ch[last].accepted_us - r->start_mono) / 1e6, r->opps[ch->opp].ext, at);
}

/* Sends n changes at rate and waits up to --drain for their predictions;
 * returns the monotonic time when the last one was sent. */
static int64_t send_and_drain(bench_t *b, double rate, size_t n) {
    run_t *r = &b->r;
    plan_changes(b, n, rate);
    perf_run_threads(b->nthreads, sender, r);
    int64_t sent_end = ds_mono_us();
    long ok = (long)n - atomic_load(&r->errors);
    while (atomic_load(&b->w.covered) < ok && ds_mono_us() - sent_end < (int64_t)(b->drain * 1e6)) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    pthread_mutex_lock(&r->mu);
    report_unscored(r, n);
    pthread_mutex_unlock(&r->mu);
    return sent_end;
}

/* Sends one rate's changes, waits up to --drain for their predictions and
 * prints the table row; returns true when every change was scored at the
 * rate asked. */
static bool measure_rate(bench_t *b, double rate) {
    run_t *r = &b->r;
    size_t n = (size_t)(rate * b->seconds);
    long bursts0 = burst_batches(b);
    cpu_start(b);
    int64_t sent_end = send_and_drain(b, rate, n);
    long bursts = burst_batches(b) - bursts0;
    double achieved = (double)n / ((double)(sent_end - r->start_mono) / 1e6);
    long ok = (long)n - atomic_load(&r->errors);
    pthread_mutex_lock(&r->mu);
    int64_t *lat = ds_calloc(n + 1, sizeof *lat), *hop[ST_N];
    size_t nl = 0, nh[ST_N] = {0};
    for (int s = 0; s < ST_N; s++) hop[s] = ds_calloc(n + 1, sizeof(int64_t));
    for (size_t i = 0; i < n; i++) {
        if (r->ch[i].status != 202) continue;
        /* Each hop from the stage before it (the first from the 202), for
         * changes seen at both ends. An event can be read a moment before
         * the sender thread noted its 202: count that as no delay. */
        for (int s = 0; s < ST_N; s++) {
            int64_t from = s == 0 ? r->ch[i].accepted_us : r->ch[i].done_us[s - 1];
            if (!r->ch[i].done_us[s] || !from) continue;
            int64_t d = r->ch[i].done_us[s] - from;
            hop[s][nh[s]++] = d > 0 ? d : 0;
        }
        if (r->ch[i].done_us[ST_PREDICTION]) {
            int64_t d = r->ch[i].done_us[ST_PREDICTION] - r->ch[i].accepted_us;
            lat[nl++] = d > 0 ? d : 0;
        }
    }
    b->w.r = NULL;
    pthread_mutex_unlock(&r->mu);
    qsort(lat, nl, sizeof *lat, perf_cmp_i64);
    for (int s = 0; s < ST_N; s++) qsort(hop[s], nh[s], sizeof(int64_t), perf_cmp_i64);
    long backlog = ok - (long)nl;
    printf("%8.0f %8zu %8zu %7ld | %9.1f %9.1f %9.1f |", achieved, n, nl, atomic_load(&r->errors),
           perf_pct_ms(lat, nl, 50), perf_pct_ms(lat, nl, 95), perf_pct_ms(lat, nl, 99));
    for (int s = 0; s < ST_N; s++) {
        if (b->hops)
            printf(" %6.1f %6.1f", perf_pct_ms(hop[s], nh[s], 50), perf_pct_ms(hop[s], nh[s], 99));
        else
            printf(" %6s %6s", "-", "-");
    }
    printf(" | %6ld | %ld%s\n", bursts, backlog,
           achieved < rate * 0.9 ? " (sender could not keep the rate)" : "");
    cpu_print(b, (double)ok);
    fflush(stdout);
    free(lat);
    for (int s = 0; s < ST_N; s++) free(hop[s]);
    return backlog == 0 && atomic_load(&r->errors) == 0 && achieved >= rate * 0.9;
}

/* The table, one row per rate of --rates, and the highest rate passed. */
static int measure_rates(bench_t *b) {
    printf("dealscore-bench-e2e: %zu opportunities, %d sender threads, %.0f s per rate, drain %.0f s\n",
           b->r.nopps, b->nthreads, b->seconds, b->drain);
    printf("%8s %8s %8s %7s | %9s %9s %9s | %13s %13s %13s | %6s | %s\n", "", "", "", "", "", "", "", "relay",
           "feature", "scoring", "", "");
    printf("%8s %8s %8s %7s | %9s %9s %9s | %6s %6s %6s %6s %6s %6s | %6s | %s\n", "rate/s", "sent", "done",
           "errors", "p50 ms", "p95 ms", "p99 ms", "p50", "p99", "p50", "p99", "p50", "p99", "bursts",
           "backlog");
    double best = 0;
    char *rates = ds_strdup(b->rates), *rest = rates, *tok;
    while ((tok = strsep(&rest, ",")) != NULL) {
        double rate = atof(tok);
        if (rate <= 0) continue;
        if (measure_rate(b, rate)) best = rate;
    }
    free(rates);
    printf("highest rate with every change scored within the drain time: %.0f changes/s\n", best);
    return 0;
}

/* ---- step mode: the highest sustained rate ------------------------------------ */

/* Changes accepted by t (monotonic) whose prediction had not come by t. */
static long backlog_at(const run_t *r, int64_t t) {
    long n = 0;
    for (size_t i = 0; i < r->nch; i++) {
        const change_t *ch = &r->ch[i];
        if (ch->status != 202 || ch->accepted_us > t) continue;
        if (!ch->done_us[ST_PREDICTION] || ch->done_us[ST_PREDICTION] > t) n++;
    }
    return n;
}

/* The step's end-to-end percentiles and its backlog one second after its
 * first change (the pipeline filled) and when its last change was sent. */
static void step_figures(bench_t *b, int64_t sent_end, perf_step_t *s) {
    run_t *r = &b->r;
    pthread_mutex_lock(&r->mu);
    int64_t *lat = ds_calloc(r->nch + 1, sizeof *lat);
    size_t nl = 0;
    for (size_t i = 0; i < r->nch; i++) {
        if (r->ch[i].status != 202 || !r->ch[i].done_us[ST_PREDICTION]) continue;
        int64_t d = r->ch[i].done_us[ST_PREDICTION] - r->ch[i].accepted_us;
        lat[nl++] = d > 0 ? d : 0;
    }
    int64_t warm = r->start_mono + 1000000;
    s->backlog_start = backlog_at(r, warm < sent_end ? warm : r->start_mono);
    s->backlog_end = backlog_at(r, sent_end);
    b->w.r = NULL;
    pthread_mutex_unlock(&r->mu);
    qsort(lat, nl, sizeof *lat, perf_cmp_i64);
    s->done = (long)nl;
    s->p50_ms = perf_pct_ms(lat, nl, 50);
    s->p99_ms = perf_pct_ms(lat, nl, 99);
    free(lat);
}

/* Runs one step of --step-seconds at rate and prints its row. */
static perf_step_t measure_step(bench_t *b, double rate) {
    run_t *r = &b->r;
    perf_step_t s = {.rate = rate, .sent = (long)(rate * b->step_seconds)};
    long bursts0 = burst_batches(b);
    cpu_start(b);
    int64_t sent_end = send_and_drain(b, rate, (size_t)s.sent);
    long bursts = burst_batches(b) - bursts0;
    s.achieved = (double)s.sent / ((double)(sent_end - r->start_mono) / 1e6);
    s.errors = atomic_load(&r->errors);
    step_figures(b, sent_end, &s);
    char load[64];
    perf_loadavg(load, sizeof load);
    printf("%8.0f %8.0f %8ld %8ld %7ld | %9.1f %9.1f | %8ld %8ld %-5s | %-3s | %6ld | %s\n", s.rate,
           s.achieved, s.sent, s.done, s.errors, s.p50_ms, s.p99_ms, s.backlog_start, s.backlog_end,
           perf_step_backlog_grew(&s) ? "grew" : "flat", perf_step_sustained(&s) ? "yes" : "no", bursts,
           load);
    cpu_print(b, (double)(s.sent - s.errors));
    fflush(stdout);
    return s;
}

/* Raises the rate from --step-from by --step-by until a step is not
 * sustained or --max-rate is passed, and prints the highest sustained one. */
static int measure_steps(bench_t *b) {
    printf("dealscore-bench-e2e: %zu opportunities, %d sender threads, %.0f s per step, drain %.0f s\n",
           b->r.nopps, b->nthreads, b->step_seconds, b->drain);
    printf("%8s %8s %8s %8s %7s | %9s %9s | %8s %8s %-5s | %-3s | %6s | %s\n", "rate/s", "sent/s", "sent",
           "done", "errors", "p50 ms", "p99 ms", "backlog0", "backlog1", "lag", "ok", "bursts",
           "load average");
    perf_step_t steps[64];
    size_t n = 0;
    for (double rate = b->step_from; rate <= b->max_rate && n < 64;
         rate = perf_step_next(rate, b->step_factor, b->step_add)) {
        steps[n] = measure_step(b, rate);
        if (!perf_step_sustained(&steps[n++])) break;
    }
    long best = perf_steps_highest(steps, n);
    if (best < 0)
        printf("highest sustained rate: none (%.0f changes/s was not sustained)\n", b->step_from);
    else
        printf("highest sustained rate: %.0f changes/s (p99 %.0f ms)%s\n", steps[best].rate,
               steps[best].p99_ms, (size_t)best + 1 == n ? "; every step up to --max-rate sustained" : "");
    return 0;
}

/* ---- bulk mode: a backlog and how fast it drains ------------------------------- */

/* The last prediction's time of the changes accepted, 0 if none came. */
static int64_t last_prediction(const run_t *r) {
    int64_t last = 0;
    for (size_t i = 0; i < r->nch; i++)
        if (r->ch[i].status == 202 && r->ch[i].done_us[ST_PREDICTION] > last)
            last = r->ch[i].done_us[ST_PREDICTION];
    return last;
}

/* Sends --backlog changes as fast as ingest takes them (a bulk import: the
 * workers see a flood, then nothing) and prints how fast they were scored. */
static int measure_backlog(bench_t *b) {
    run_t *r = &b->r;
    size_t n = (size_t)b->backlog;
    long bursts0 = burst_batches(b);
    char load0[64], load1[64];
    perf_loadavg(load0, sizeof load0);
    cpu_start(b);
    int64_t sent_end = send_and_drain(b, 1e9, n);
    long bursts = burst_batches(b) - bursts0;
    perf_loadavg(load1, sizeof load1);
    pthread_mutex_lock(&r->mu);
    int64_t last = last_prediction(r);
    long done = atomic_load(&b->w.covered), errors = atomic_load(&r->errors);
    b->w.r = NULL;
    pthread_mutex_unlock(&r->mu);
    double send_s = (double)(sent_end - r->start_mono) / 1e6;
    double drain_s = last ? (double)(last - r->start_mono) / 1e6 : 0;
    printf("dealscore-bench-e2e: backlog of %zu changes over %zu opportunities, %d a request\n", n, r->nopps,
           r->batch);
    printf("sent in %.1f s (%.0f changes/s), %ld errors; %ld scored, the last %.1f s after the first was "
           "sent: %.0f changes/s drained; %ld batches gathered as a burst; load average %s -> %s\n",
           send_s, (double)n / send_s, errors, done, drain_s, drain_s > 0 ? (double)done / drain_s : 0.0,
           bursts, load0, load1);
    cpu_print(b, (double)(n - (size_t)errors));
    return done == (long)n - errors ? 0 : 1;
}

static void bench_close(bench_t *b) {
    if (b->watching) {
        atomic_store(&b->w.stop, 1);
        pthread_join(b->watch_thread, NULL);
        ds_consumer_close(b->w.c);
    }
    ds_consumer_destroy(b->w.c);
    for (int s = 0; s < ST_N; s++) free(b->w.topic[s]);
    for (size_t i = 0; b->r.opps && i < b->r.nopps; i++) {
        free(b->r.opps[i].pend);
        free(b->r.opps[i].fields);
    }
    free(b->r.opps);
    free(b->r.by_id);
    free(b->r.ch);
    pthread_mutex_destroy(&b->r.mu);
    PQfinish(b->db);
    if (b->cfg_loaded) ds_config_close(&b->cfg);
}

int main(int argc, char **argv) {
    bench_t b = {.url = getenv("DEALSCORE_INGEST_URL"),
                 .rates = "100,250,500,1000",
                 .seconds = 10,
                 .drain = 10,
                 .nopps = 2000,
                 .nthreads = 32,
                 .step_factor = 1.5,
                 .step_seconds = 60,
                 .max_rate = 100000,
                 .r.batch = 1};
    pthread_mutex_init(&b.r.mu, NULL);
    int rc = parse_options(&b, argc, argv);
    if (rc == GO_ON) rc = connect_db(&b);
    if (rc == GO_ON) rc = prepare_opps(&b);
    if (rc == GO_ON) {
        wait_for_quiet_workers(&b);
        rc = start_watcher(&b);
    }
    if (rc == GO_ON) {
        index_opps(&b.r);
        rc = b.backlog > 0 ? measure_backlog(&b) : b.step_from > 0 ? measure_steps(&b) : measure_rates(&b);
    }
    bench_close(&b);
    return rc;
}
