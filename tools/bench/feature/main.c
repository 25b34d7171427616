/* dealscore-bench-feature: opportunities/s through the feature worker from a
 * pre-filled topic. Fills an org with the CRM simulator's data (through
 * dealscore-ingest import), produces one OpportunityChanged per opportunity
 * onto a fresh topic prefix's opportunity.changed while no worker reads it,
 * then starts build/bin/dealscore-feature on that prefix (a fresh group, a
 * given DEALSCORE_BATCH_SIZE) and measures the time until every opportunity
 * has its features_snapshot row, and, from the worker's /metrics, the share
 * of time in loading, computing and writing and the mean batch size.
 * With --changes K the topic holds K events per opportunity (a burst the
 * worker coalesces), and --worker benchmark or scoring measures that worker
 * instead. Each trial also reads the worker's memory (VmRSS, VmHWM).
 * A measurement program, not a test: it prints figures and asserts nothing.
 *
 *   eval "$(deploy/local/stack env)"
 *   build/bin/dealscore-bench-feature [--opportunities 10000] [--batch-sizes 500,2000] [--repeat 3]
 *
 * See README.md next to this file. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "perf.h"
#include "base/common.h"
#include "base/config.h"
#include "infra/kafka.h"
#include "base/log.h"
#include "dealscore/v1/events.pb-c.h"
#include "domain/features.h"

extern char **environ;

#define PROG "dealscore-bench-feature"
#define MAX_BATCH_SIZES 8

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

/* ---- small helpers --------------------------------------------------------- */

static void sleep_us(int64_t us) {
    if (us <= 0) return;
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL); /* an interrupting signal ends the wait early, as it should */
}

/* A free TCP port on 127.0.0.1 (the kernel's pick; free again at once). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* ---- processes --------------------------------------------------------------- */

/* Runs argv, stdout and stderr into files (NULL: inherited); its exit
 * status, or -1. */
static int run_cmd(char *const argv[], const char *out_path, const char *err_path) {
    char why[PATH_MAX + 256];
    int rc = perf_run_cmd(argv, out_path, err_path, why, sizeof why);
    if (why[0]) fprintf(stderr, PROG ": %s\n", why);
    return rc;
}

/* SIGTERM, up to timeout_s for a clean exit, then SIGKILL. */
static void stop_child(pid_t pid, int timeout_s) {
    kill(pid, SIGTERM);
    for (int i = 0; i < timeout_s * 20; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) return;
        sleep_us(50000);
    }
    fprintf(stderr, PROG ": the worker did not stop within %d s; killing it\n", timeout_s);
    kill(pid, SIGKILL);
    perf_wait_exit(pid);
}

static void print_file_tail(const char *path, int lines) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char **ring = ds_calloc((size_t)lines, sizeof *ring);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        free(ring[n % lines]);
        ring[n % lines] = ds_strdup(line);
        n++;
    }
    fclose(f);
    for (int i = n > lines ? n - lines : 0; i < n; i++) fprintf(stderr, "  | %s", ring[i % lines]);
    for (int i = 0; i < lines; i++) free(ring[i]);
    free(ring);
}

/* ---- the run ------------------------------------------------------------------ */

typedef struct {
    ds_config_t cfg;
    PGconn *db;
    char bin_dir[PATH_MAX];
    char work_dir[PATH_MAX];
    bool own_work_dir, keep;
    char runid[16];
    char slug[80];
    char org_id[37];
    long nopps, seed, changes;
    const char *worker; /* the measured worker: feature, benchmark or scoring */
    int repeat, batch_sizes[MAX_BATCH_SIZES], nbatch_sizes;
    double settle_s, timeout_s;
    bool fresh;
    const char *worker_urls[3];
    /* the org's opportunities */
    char (*opp_ids)[37];
    char (*acc_ids)[37];
    size_t nids;
} bench_t;

typedef struct {
    int batch_size, rep;
    bool done, timed_out;
    long snapshots, skipped, db_rows, dead_letters;
    double messages;
    double rss_ready, rss_end, rss_peak; /* the worker's VmRSS when ready and at the end, its VmHWM, MB */
    double produce_s, startup_s, secs, secs_from_start;
    double load, compute, write, produce, batch_secs, batches, batch_msgs, batches_timed;
} trial_t;

static PGresult *query(bench_t *b, const char *sql, int n, const char *const *v) {
    PGresult *r = PQexecParams(b->db, sql, n, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, PROG ": query failed: %s", PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

static long outbox_unsent(bench_t *b) {
    PGresult *r = query(b, "select count(*) from dealscore_internal.outbox", 0, NULL);
    long n = r ? atol(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
}

/* Waits until the import's events are relayed and the stack's own workers
 * are idle, so they do not compete with the measured worker. Without a relay
 * (stack up infra) the outbox never drains: a count that stays put for 5 s
 * counts as settled too. */
static void settle(bench_t *b) {
    if (b->settle_s <= 0) return;
    int64_t t0 = ds_mono_us();
    int quiet = 0, still = 0;
    long unsent = -1, prev = -2;
    double lag = 0;
    while (!interrupted && (double)(ds_mono_us() - t0) / 1e6 < b->settle_s) {
        unsent = outbox_unsent(b);
        lag = perf_workers_lag(b->worker_urls, DS_ARRAY_SIZE(b->worker_urls));
        still = unsent == prev ? still + 1 : 0;
        prev = unsent;
        quiet = (unsent == 0 || still >= 5) && lag == 0 ? quiet + 1 : 0;
        if (quiet >= 2) break;
        sleep_us(1000000);
    }
    double s = (double)(ds_mono_us() - t0) / 1e6;
    if (quiet >= 2)
        fprintf(stderr, PROG ": outbox %s and the stack's workers idle after %.1f s\n",
                unsent == 0 ? "drained" : "not relayed (no relay running?)", s);
    else
        fprintf(stderr, PROG ": still %ld unsent outbox rows and worker lag %.0f after %.0f s; going on\n",
                unsent, lag, s);
}

/* Finds the org, or fills it: dealscore-sim, token create, import. */
static int prepare_org(bench_t *b) {
    const char *v[] = {b->slug};
    PGresult *r =
        query(b,
              "select o.id::text, (select count(*) from public.opportunities p where p.org_id = o.id"
              " and not p.placeholder) from public.orgs o where o.slug = $1",
              1, v);
    if (!r) return -1;
    long have = PQntuples(r) ? atol(PQgetvalue(r, 0, 1)) : -1;
    if (have > 0) {
        snprintf(b->org_id, sizeof b->org_id, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        printf("org %s: reusing its %ld opportunities (import skipped; --fresh imports into a new org)\n",
               b->slug, have);
        return 0;
    }
    PQclear(r);
    char exe[PATH_MAX + 32], out[PATH_MAX + 32], err[PATH_MAX + 32], dir[PATH_MAX + 32], n[32], seed[32];
    snprintf(dir, sizeof dir, "%s/sim", b->work_dir);
    snprintf(n, sizeof n, "%ld", b->nopps);
    snprintf(seed, sizeof seed, "%ld", b->seed);
    snprintf(exe, sizeof exe, "%s/dealscore-sim", b->bin_dir);
    snprintf(out, sizeof out, "%s/sim.out", b->work_dir);
    snprintf(err, sizeof err, "%s/sim.err", b->work_dir);
    fprintf(stderr, PROG ": simulating %ld opportunities (seed %ld)\n", b->nopps, b->seed);
    char *sim_argv[] = {exe, "--seed", seed, "--opportunities", n, "--out", dir, NULL};
    int64_t t0 = ds_mono_us();
    int rc = run_cmd(sim_argv, out, err);
    if (rc != 0) {
        fprintf(stderr, PROG ": dealscore-sim failed (exit %d):\n", rc);
        print_file_tail(err, 20);
        return -1;
    }
    double sim_s = (double)(ds_mono_us() - t0) / 1e6;
    snprintf(exe, sizeof exe, "%s/dealscore-ingest", b->bin_dir);
    snprintf(out, sizeof out, "%s/token.out", b->work_dir);
    snprintf(err, sizeof err, "%s/token.err", b->work_dir);
    char *tok_argv[] = {exe, "token", "create", "--org", b->slug, NULL};
    if ((rc = run_cmd(tok_argv, out, err)) != 0) {
        fprintf(stderr, PROG ": dealscore-ingest token create --org %s failed (exit %d):\n", b->slug, rc);
        print_file_tail(err, 20);
        return -1;
    }
    char f[4][PATH_MAX + 48];
    static const char *const names[] = {"accounts", "opportunities", "interactions", "transcripts"};
    for (int i = 0; i < 4; i++) snprintf(f[i], sizeof f[i], "%s/%s.csv", dir, names[i]);
    snprintf(out, sizeof out, "%s/import.out", b->work_dir);
    snprintf(err, sizeof err, "%s/import.err", b->work_dir);
    fprintf(stderr, PROG ": importing into org %s (slow: ~25 rows per opportunity)\n", b->slug);
    char *imp_argv[] = {
        exe,  "import",         "--org", b->slug,         "--accounts", f[0],      "--opportunities",
        f[1], "--interactions", f[2],    "--transcripts", f[3],         "--quiet", NULL};
    t0 = ds_mono_us();
    rc = run_cmd(imp_argv, out, err);
    double imp_s = (double)(ds_mono_us() - t0) / 1e6;
    char summary[512];
    perf_last_line(out, summary, sizeof summary);
    if (rc != 0) {
        fprintf(stderr, PROG ": dealscore-ingest import exited %d (%s):\n", rc, summary);
        print_file_tail(err, 20);
        if (rc != 1) return -1; /* 1: some rows rejected; measure the rest */
    }
    printf("org %s: simulated in %.1f s, imported in %.1f s: %s\n", b->slug, sim_s, imp_s, summary);
    r = query(b, "select id::text from public.orgs where slug = $1", 1, v);
    if (!r || PQntuples(r) != 1) {
        PQclear(r);
        fprintf(stderr, PROG ": org %s not found after the import\n", b->slug);
        return -1;
    }
    snprintf(b->org_id, sizeof b->org_id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!b->keep) {
        for (int i = 0; i < 4; i++) unlink(f[i]);
        char truth[PATH_MAX + 64];
        snprintf(truth, sizeof truth, "%s/sim/truth.csv", b->work_dir);
        unlink(truth);
        rmdir(dir);
    }
    return 0;
}

static int load_ids(bench_t *b) {
    const char *v[] = {b->org_id};
    PGresult *r = query(b,
                        "select id::text, coalesce(account_id::text, '') from public.opportunities"
                        " where org_id = $1::uuid and not placeholder order by id",
                        1, v);
    if (!r) return -1;
    b->nids = (size_t)PQntuples(r);
    b->opp_ids = ds_calloc(b->nids ? b->nids : 1, sizeof *b->opp_ids);
    b->acc_ids = ds_calloc(b->nids ? b->nids : 1, sizeof *b->acc_ids);
    for (size_t i = 0; i < b->nids; i++) {
        snprintf(b->opp_ids[i], 37, "%s", PQgetvalue(r, (int)i, 0));
        snprintf(b->acc_ids[i], 37, "%s", PQgetvalue(r, (int)i, 1));
    }
    PQclear(r);
    r = query(b,
              "select (select count(*) from public.interactions where org_id = $1::uuid),"
              " (select count(*) from public.transcripts where org_id = $1::uuid),"
              " (select count(*) from public.opportunity_history where org_id = $1::uuid)",
              1, v);
    if (r) {
        printf("org %s: %zu opportunities, %s interactions (%.1f per opportunity), %s transcripts, %s "
               "history rows\n",
               b->slug, b->nids, PQgetvalue(r, 0, 0),
               b->nids ? atof(PQgetvalue(r, 0, 0)) / (double)b->nids : 0.0, PQgetvalue(r, 0, 1),
               PQgetvalue(r, 0, 2));
        PQclear(r);
    }
    return b->nids ? 0 : -1;
}

typedef struct {
    atomic_long ok, failed;
} dr_t;

static void on_delivery(void *opaque, void *msg_opaque, int err, const char *errmsg,
                        const rd_kafka_message_t *m) {
    (void)msg_opaque;
    (void)m;
    dr_t *dr = opaque;
    if (err == 0) {
        atomic_fetch_add(&dr->ok, 1);
    } else if (atomic_fetch_add(&dr->failed, 1) == 0) {
        fprintf(stderr, PROG ": a message was not delivered: %s\n", errmsg);
    }
}

/* A config for the trial's topic prefix (the rest from the environment). */
static int trial_config(ds_config_t *cfg, const char *prefix, char *err, size_t errsz) {
    char *pv = ds_asprintf("DEALSCORE_TOPIC_PREFIX=%s", prefix);
    char **envp = perf_environ_with((const char *const *)&pv, 1);
    int rc = ds_config_load(cfg, DS_SVC_FEATURE, envp, err, errsz);
    free(pv);
    free(envp);
    return rc;
}

/* The input topic of the measured worker, and its output topic (NULL: none). */
static const char *input_topic(const bench_t *b) {
    return strcmp(b->worker, "scoring") == 0 ? DS_TOPIC_FEATURES_READY : DS_TOPIC_OPPORTUNITY_CHANGED;
}

static const char *output_topic(const bench_t *b) {
    return strcmp(b->worker, "feature") == 0   ? DS_TOPIC_FEATURES_READY
           : strcmp(b->worker, "scoring") == 0 ? DS_TOPIC_PREDICTION_MADE
                                               : NULL;
}

/* Packs the measured worker's input event for opportunity i at at_us into
 * buf: an OpportunityChanged, or for scoring a FeaturesReady with every
 * feature of the engine, as the feature worker sends it (the deal scores
 * from its org's model or prior; the values are made up, the size is a
 * real event's). */
static size_t pack_event(const bench_t *b, size_t i, int64_t at_us, char *eid, uint8_t *buf, size_t size) {
    size_t len;
    if (strcmp(b->worker, "scoring") == 0) {
        Dealscore__V1__FeaturesReady ev = DEALSCORE__V1__FEATURES_READY__INIT;
        Dealscore__V1__Feature feats[DS_FEATURE_COUNT], *fp[DS_FEATURE_COUNT];
        for (int f = 0; f < DS_FEATURE_COUNT; f++) {
            dealscore__v1__feature__init(&feats[f]);
            feats[f].name = (char *)ds_feature_name(f);
            feats[f].value = (double)((i * 31 + (size_t)f * 7) % 100) / 10.0;
            fp[f] = &feats[f];
        }
        ev.event_id = eid;
        ev.causation_id = eid;
        ev.org_id = (char *)b->org_id;
        ev.opportunity_id = (char *)b->opp_ids[i];
        ev.as_of_us = at_us;
        ev.feature_version = DS_FEATURE_VERSION;
        ev.n_features = DS_FEATURE_COUNT;
        ev.features = fp;
        len = dealscore__v1__features_ready__get_packed_size(&ev);
        ds_assert(len <= size);
        return dealscore__v1__features_ready__pack(&ev, buf);
    }
    Dealscore__V1__OpportunityChanged ev = DEALSCORE__V1__OPPORTUNITY_CHANGED__INIT;
    ev.event_id = eid;
    ev.org_id = (char *)b->org_id;
    ev.opportunity_id = (char *)b->opp_ids[i];
    ev.account_id = (char *)b->acc_ids[i];
    ev.kind = DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_RESCORE_REQUESTED;
    ev.occurred_at_us = at_us;
    ev.source = "bench";
    ev.source_hash = "";
    len = dealscore__v1__opportunity_changed__get_packed_size(&ev);
    ds_assert(len <= size);
    return dealscore__v1__opportunity_changed__pack(&ev, buf);
}

/* Produces --changes input events per opportunity to the prefix's input
 * topic, round by round (every opportunity's first change, then every
 * second one ...), round k occurring k - changes + 1 microseconds before
 * as_of_us (the last at as_of_us). Returns 0 or -1. */
static int fill_topic(bench_t *b, const ds_config_t *cfg, int64_t as_of_us, double *secs) {
    char err[512];
    char *topic = ds_config_topic(cfg, input_topic(b));
    /* The output topic too, as in a running system: left to the broker's
     * auto-creation on the first produce, it holds up the worker's first
     * batch for ~0.5 s (creation, leader election, metadata refresh). */
    char *ready = ds_config_topic(cfg, output_topic(b) ? output_topic(b) : input_topic(b));
    const char *topics[] = {topic, ready};
    size_t ntopics = output_topic(b) ? 2 : 1;
    int rc = -1;
    ds_producer_t *p = NULL;
    dr_t dr = {0};
    if (ds_kafka_ensure_topics(cfg, topics, ntopics, cfg->topic_partitions, cfg->topic_replication, 15000,
                               err, sizeof err) != 0) {
        fprintf(stderr, PROG ": could not create topics %s and %s: %s\n", topic, ready, err);
        goto out;
    }
    if (ds_producer_new(&p, cfg, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": could not create the Kafka producer: %s\n", err);
        goto out;
    }
    ds_producer_set_delivery_cb(p, on_delivery, &dr);
    ds_producer_set_full_timeout(p, 60000);
    int64_t t0 = ds_mono_us();
    uint8_t buf[4096];
    for (size_t j = 0; j < b->nids * (size_t)b->changes; j++) {
        size_t i = j % b->nids;
        int64_t at_us = as_of_us - (b->changes - 1 - (long)(j / b->nids));
        char eid[37];
        ds_uuid4(eid);
        size_t len = pack_event(b, i, at_us, eid, buf, sizeof buf);
        ds_event_meta_t meta = {.id = eid,
                                .type = strcmp(b->worker, "scoring") == 0 ? DS_CE_TYPE_FEATURES_READY
                                                                          : DS_CE_TYPE_OPPORTUNITY_CHANGED,
                                .time_us = at_us,
                                .source = "/dealscore/bench-feature"};
        int r = ds_producer_send(p, topic, b->opp_ids[i], strlen(b->opp_ids[i]), buf, len, &meta, NULL);
        if (r != 0) {
            fprintf(stderr, PROG ": could not produce to %s: %s\n", topic, ds_strerror(r));
            goto out;
        }
        if (j % 1000 == 999) ds_producer_poll(p, 0);
    }
    if (ds_producer_flush(p, 60000) != 0) {
        fprintf(stderr, PROG ": the events were not all delivered within 60 s\n");
        goto out;
    }
    *secs = (double)(ds_mono_us() - t0) / 1e6;
    if (atomic_load(&dr.failed) == 0) rc = 0;
out:
    ds_producer_destroy(p);
    free(topic);
    free(ready);
    return rc;
}

/* Deletes the trial's topics (the Kafka admin API); failures only warn. */
static void delete_topics(const ds_config_t *cfg) {
    static const char *const bases[] = {DS_TOPIC_OPPORTUNITY_CHANGED, DS_TOPIC_FEATURES_READY,
                                        DS_TOPIC_PREDICTION_MADE};
    char err[512];
    rd_kafka_conf_t *conf = NULL;
    if (ds_kafka_conf_new(&conf, cfg, err, sizeof err) != 0) return;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    conf = NULL; /* now owned by rk */
    char *names[6];
    rd_kafka_DeleteTopic_t *del[6];
    for (int i = 0; i < 3; i++) {
        names[2 * i] = ds_config_topic(cfg, bases[i]);
        names[2 * i + 1] = ds_asprintf("%s%s", names[2 * i], DS_TOPIC_DLQ_SUFFIX);
    }
    for (int i = 0; i < 6; i++) del[i] = rd_kafka_DeleteTopic_new(names[i]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, del, 6, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    if (!ev)
        fprintf(stderr, PROG ": deleting the trial's topics timed out\n");
    else
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy_array(del, 6);
    for (int i = 0; i < 6; i++) free(names[i]);
    rd_kafka_destroy(rk);
}

/* Reads the worker's /metrics into t. The deals done (t->snapshots) are the
 * feature worker's snapshots, the scoring worker's predictions, or the
 * benchmark worker's events / --changes. */
static int scrape(const bench_t *b, perf_conn_t *c, trial_t *t) {
    if (perf_conn_request(c, "/metrics", NULL, NULL, 0) != 200) return -1;
    const char *p = c->body;
    size_t n = c->body_len;
    t->messages = perf_metric_sum(p, n, "dealscore_worker_messages_total", NULL);
    if (strcmp(b->worker, "feature") == 0)
        t->snapshots = (long)perf_metric_sum(p, n, "dealscore_feature_snapshots_total", NULL);
    else if (strcmp(b->worker, "scoring") == 0)
        t->snapshots = (long)perf_metric_sum(p, n, "dealscore_predictions_total", "path=\"worker\"");
    else
        t->snapshots = (long)(t->messages / (double)b->changes);
    t->skipped = (long)perf_metric_sum(p, n, "dealscore_feature_skipped_total", NULL);
    t->dead_letters = (long)perf_metric_sum(p, n, "dealscore_worker_dead_letters_total", NULL);
    t->load = perf_metric_sum(p, n, "dealscore_feature_phase_seconds_total", "phase=\"load\"");
    t->compute = perf_metric_sum(p, n, "dealscore_feature_phase_seconds_total", "phase=\"compute\"");
    t->write = perf_metric_sum(p, n, "dealscore_feature_phase_seconds_total", "phase=\"write\"");
    t->produce = perf_metric_sum(p, n, "dealscore_feature_phase_seconds_total", "phase=\"produce\"");
    t->batch_secs = perf_metric_sum(p, n, "dealscore_worker_batch_seconds_sum", NULL);
    t->batches_timed = perf_metric_sum(p, n, "dealscore_worker_batch_seconds_count", NULL);
    t->batches = perf_metric_sum(p, n, "dealscore_worker_batch_size_count", NULL);
    t->batch_msgs = perf_metric_sum(p, n, "dealscore_worker_batch_size_sum", NULL);
    return 0;
}

/* Watches the worker until it is ready (Postgres and Kafka reachable and
 * partitions assigned: from then on it only consumes; its VmRSS then is
 * rss_ready), then until it has consumed every event, finished every batch
 * and every opportunity has its snapshot (its prediction, for scoring), up
 * to --timeout or an interruption; sets *t_ready and *t_done when reached.
 * Returns -1 when the worker exited. */
static int watch_worker(bench_t *b, pid_t pid, perf_conn_t *c, const char *logp, trial_t *t, int64_t t_spawn,
                        int64_t *t_ready, int64_t *t_done) {
    long target = (long)b->nids;
    int64_t deadline = t_spawn + (int64_t)(b->timeout_s * 1e6);
    while (!interrupted && ds_mono_us() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, PROG ": the %s worker exited early; its log (%s):\n", b->worker, logp);
            print_file_tail(logp, 20);
            return -1;
        }
        if (!*t_ready) {
            if (perf_conn_request(c, "/readyz", NULL, NULL, 0) == 200) {
                *t_ready = ds_mono_us();
                double peak;
                perf_proc_memory(pid, &t->rss_ready, &peak);
            }
            sleep_us(10000);
            continue;
        }
        if (scrape(b, c, t) == 0 && t->snapshots + t->skipped >= target &&
            t->messages >= (double)target * (double)b->changes && t->batches_timed >= t->batches) {
            *t_done = ds_mono_us();
            break;
        }
        sleep_us(50000);
    }
    return 0;
}

/* One trial: a fresh prefix and group, the topic filled, then the worker
 * started and watched until every opportunity has its snapshot. */
static int run_trial(bench_t *b, int batch_size, int rep, trial_t *t) {
    char prefix[96], err[512];
    /* Under the configured prefix, so several environments can share a cluster. */
    snprintf(prefix, sizeof prefix, "%.40sbf%s.b%d.r%d.", b->cfg.topic_prefix, b->runid, batch_size, rep);
    ds_config_t cfg;
    if (trial_config(&cfg, prefix, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return -1;
    }
    memset(t, 0, sizeof *t);
    t->batch_size = batch_size;
    t->rep = rep;
    /* Every trial computes as of its own instant, so its rows are its own
     * (features_snapshot is keyed by opportunity, as_of and version). */
    int64_t as_of = ds_now_us() - 1000000;
    char as_of_s[40];
    ds_format_time_us(as_of, as_of_s, sizeof as_of_s);
    int rc = -1;
    pid_t pid = -1;
    perf_conn_t c = {.fd = -1};
    fprintf(stderr, PROG ": batch %d, rep %d: filling %sopportunity.changed with %zu events\n", batch_size,
            rep, prefix, b->nids * (size_t)b->changes);
    if (fill_topic(b, &cfg, as_of, &t->produce_s) != 0) goto out;

    int port = free_port();
    if (port <= 0) {
        fprintf(stderr, PROG ": no free port for the worker's HTTP server\n");
        goto out;
    }
    snprintf(c.host, sizeof c.host, "127.0.0.1");
    c.port = port;
    char exe[PATH_MAX + 32], logp[PATH_MAX + 64];
    snprintf(exe, sizeof exe, "%s/dealscore-%s", b->bin_dir, b->worker);
    snprintf(logp, sizeof logp, "%s/%s-b%d-r%d.log", b->work_dir, b->worker, batch_size, rep);
    char *mine[] = {ds_asprintf("DEALSCORE_TOPIC_PREFIX=%s", prefix),
                    ds_asprintf("DEALSCORE_GROUP_ID=bench-%s-%s", b->worker, prefix),
                    ds_asprintf("DEALSCORE_BATCH_SIZE=%d", batch_size),
                    ds_asprintf("DEALSCORE_HTTP_ADDR=127.0.0.1:%d", port),
                    ds_strdup("DEALSCORE_LOG_LEVEL=warn")};
    char **envp = perf_environ_with((const char *const *)mine, DS_ARRAY_SIZE(mine));
    char *argv[] = {exe, NULL};
    int64_t t_spawn = ds_mono_us(), t_ready = 0, t_done = 0;
    char why[PATH_MAX + 256];
    pid = perf_spawn(argv, envp, NULL, logp, why, sizeof why);
    for (size_t j = 0; j < DS_ARRAY_SIZE(mine); j++) free(mine[j]);
    free(envp);
    if (pid < 0) {
        fprintf(stderr, PROG ": %s\n", why);
        goto out;
    }

    long target = (long)b->nids;
    if (watch_worker(b, pid, &c, logp, t, t_spawn, &t_ready, &t_done) != 0) {
        pid = -1;
        goto out;
    }
    if (interrupted) goto out;
    t->done = t_done != 0;
    t->timed_out = !t->done;
    if (!t_ready) t_ready = t_spawn;
    if (!t_done) {
        t_done = ds_mono_us();
        fprintf(stderr, PROG ": batch %d, rep %d: timed out after %.0f s with %ld of %ld snapshots\n",
                batch_size, rep, b->timeout_s, t->snapshots, target);
    }
    /* The snapshot counter moves when a batch's transaction commits; the
     * batch's time is recorded after its features.ready are delivered. */
    for (int i = 0; i < 100 && scrape(b, &c, t) == 0 && t->batches_timed < t->batches; i++) sleep_us(50000);
    perf_proc_memory(pid, &t->rss_end, &t->rss_peak);
    t->startup_s = (double)(t_ready - t_spawn) / 1e6;
    t->secs = (double)(t_done - t_ready) / 1e6;
    t->secs_from_start = (double)(t_done - t_spawn) / 1e6;
    perf_conn_close(&c);
    stop_child(pid, 30);
    pid = -1;

    const char *v[] = {b->org_id, as_of_s};
    PGresult *r = query(
        b,
        "select count(*) from public.features_snapshot where org_id = $1::uuid and as_of = $2::timestamptz",
        2, v);
    t->db_rows = strcmp(b->worker, "feature") != 0 ? t->snapshots : r ? atol(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    if (!b->keep) {
        /* The earlier changes' snapshots too (up to 1,000 changes: 1 ms). */
        PQclear(query(b,
                      "delete from public.features_snapshot where org_id = $1::uuid"
                      " and as_of between $2::timestamptz - interval '1 ms' and $2::timestamptz",
                      2, v));
        delete_topics(&cfg);
    }
    rc = 0;
out:
    perf_conn_close(&c);
    if (pid > 0) stop_child(pid, 30);
    ds_config_close(&cfg);
    return rc;
}

/* ---- main ------------------------------------------------------------------------- */

static void usage(FILE *out) {
    fprintf(out,
            "usage: " PROG " [options]\n"
            "\n"
            "Measures opportunities/s through the feature worker from a pre-filled topic, Postgres\n"
            "and Kafka real. Fills an org with dealscore-sim's data through dealscore-ingest import\n"
            "(or reuses the org if it already holds opportunities), produces one OpportunityChanged\n"
            "per opportunity to a fresh topic prefix with no worker reading it, then starts\n"
            "dealscore-feature on that prefix (fresh group, DEALSCORE_BATCH_SIZE as given) and times\n"
            "how long until every opportunity has its features_snapshot row. Reports opportunities/s,\n"
            "the share of the worker's batch time in loading, computing and writing, the mean\n"
            "batch size (from the worker's /metrics) and its memory (VmRSS, VmHWM).\n"
            "\n"
            "Options:\n"
            "  --opportunities N   opportunities to simulate and import (default 10000; the import\n"
            "                      writes ~25 rows per opportunity and takes minutes at 10000)\n"
            "  --seed N            simulator seed (default 1)\n"
            "  --changes K         events per opportunity in the topic, the last one latest\n"
            "                      (default 1; 2000 opportunities x 50: a 100,000-message burst\n"
            "                      over 2,000 deals)\n"
            "  --worker NAME       the worker measured: feature (default), benchmark (same input)\n"
            "                      or scoring (fed FeaturesReady events carrying every feature, values\n"
            "                      made up); opps/s\n"
            "                      then counts predictions, or events / --changes for benchmark\n"
            "  --org SLUG          the org (default bf-<N>-s<seed>); reused when it holds opportunities\n"
            "  --fresh             import into a new org (slug with a run id) even if one exists\n"
            "  --batch-sizes LIST  DEALSCORE_BATCH_SIZE values to try (default 500,2000)\n"
            "  --repeat N          trials per batch size; medians are reported (default 3)\n"
            "  --timeout S         give up on a trial after S seconds (default 600)\n"
            "  --settle S          wait up to S s after the import for the outbox to drain and the\n"
            "                      stack's workers to go idle (default 600; 0: do not wait)\n"
            "  --bin-dir DIR       where dealscore-sim, -ingest and the worker are (default\n"
            "                      $DEALSCORE_BIN_DIR, else this program's directory)\n"
            "  --work-dir DIR      simulator files and worker logs (default a new /tmp directory)\n"
            "  --keep              keep the work directory, the trial topics and the snapshot rows\n"
            "  --help              this text\n"
            "\n"
            "Environment (eval \"$(deploy/local/stack env)\"): DEALSCORE_DATABASE_URL,\n"
            "DEALSCORE_KAFKA_BROKERS, DEALSCORE_TOPIC_PARTITIONS, KAFKA_* (as the services);\n"
            "DEALSCORE_FEATURE_URL, DEALSCORE_SCORING_URL, DEALSCORE_BENCHMARK_URL (the stack's\n"
            "workers, whose lag --settle waits for); DEALSCORE_BIN_DIR. The trial's topic prefix,\n"
            "group, batch size and HTTP address are set for the started worker.\n"
            "Exit status: 0 after printing the figures, 2 bad usage or settings, 1 a step failed.\n");
}

static void remove_work_dir(bench_t *b) {
    static const char *const files[] = {"sim.out",   "sim.err",    "token.out",
                                        "token.err", "import.out", "import.err"};
    char path[PATH_MAX + 64];
    for (size_t i = 0; i < DS_ARRAY_SIZE(files); i++) {
        snprintf(path, sizeof path, "%s/%s", b->work_dir, files[i]);
        unlink(path);
    }
    for (int i = 0; i < b->nbatch_sizes; i++)
        for (int r = 1; r <= b->repeat; r++) {
            snprintf(path, sizeof path, "%s/%s-b%d-r%d.log", b->work_dir, b->worker, b->batch_sizes[i], r);
            unlink(path);
        }
    rmdir(b->work_dir);
}

static double share(double part, const trial_t *t) {
    double total = t->batch_secs > 0 ? t->batch_secs : t->load + t->compute + t->write + t->produce;
    return total > 0 ? 100.0 * part / total : NAN;
}

/* A phase of main returns GO_ON to let the next one run, or the exit status. */
#define GO_ON (-1)

/* One run of the program: the bench, the options only main reads, and the
 * trials. */
typedef struct {
    bench_t b;
    const char *bin_dir, *work_dir, *org, *sizes;
    char la0[64]; /* load average at the start */
    long ncpu;
    trial_t *trials;
    size_t ntrials;
} prog_t;

/* Applies one option; returns the complaint about its value, or NULL. */
static const char *apply_option(void *ctx, int c) {
    prog_t *p = ctx;
    bench_t *b = &p->b;
    long v;
    switch (c) {
    case 'o':
        if (!ds_parse_long(optarg, 1, 10000000, &b->nopps)) return "--opportunities must be 1 to 10000000";
        break;
    case 'e':
        if (!ds_parse_long(optarg, 0, LONG_MAX, &b->seed)) return "--seed must be a number >= 0";
        break;
    case 'c':
        if (!ds_parse_long(optarg, 1, 1000, &b->changes)) return "--changes must be 1 to 1000";
        break;
    case 'W':
        if (strcmp(optarg, "feature") != 0 && strcmp(optarg, "benchmark") != 0 &&
            strcmp(optarg, "scoring") != 0)
            return "--worker must be feature, benchmark or scoring";
        b->worker = optarg;
        break;
    case 'g': p->org = optarg; break;
    case 'f': b->fresh = true; break;
    case 'b': p->sizes = optarg; break;
    case 'n':
        if (!ds_parse_long(optarg, 1, 100, &v)) return "--repeat must be 1 to 100";
        b->repeat = (int)v;
        break;
    case 't':
        if (!ds_parse_long(optarg, 1, 86400, &v)) return "--timeout must be 1 to 86400 seconds";
        b->timeout_s = (double)v;
        break;
    case 'S':
        if (!ds_parse_long(optarg, 0, 86400, &v)) return "--settle must be 0 to 86400 seconds";
        b->settle_s = (double)v;
        break;
    case 'B': p->bin_dir = optarg; break;
    case 'w': p->work_dir = optarg; break;
    case 'k': b->keep = true; break;
    }
    return NULL;
}

static int parse_options(prog_t *p, int argc, char **argv) {
    static const struct option opts[] = {
        {"opportunities", 1, 0, 'o'}, {"seed", 1, 0, 'e'},    {"changes", 1, 0, 'c'},
        {"worker", 1, 0, 'W'},        {"org", 1, 0, 'g'},     {"fresh", 0, 0, 'f'},
        {"batch-sizes", 1, 0, 'b'},   {"repeat", 1, 0, 'n'},  {"timeout", 1, 0, 't'},
        {"settle", 1, 0, 'S'},        {"bin-dir", 1, 0, 'B'}, {"work-dir", 1, 0, 'w'},
        {"keep", 0, 0, 'k'},          {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    bench_t *b = &p->b;
    int rc = perf_parse_options(argc, argv, opts, PROG, usage, apply_option, p);
    if (rc != GO_ON) return rc;
    for (const char *s = p->sizes; *s;) {
        char *end;
        long n = strtol(s, &end, 10);
        if (end == s || n < 1 || n > 100000 || (*end && *end != ',') || b->nbatch_sizes == MAX_BATCH_SIZES) {
            fprintf(stderr,
                    PROG ": --batch-sizes must be up to %d numbers from 1 to 100000, comma-separated\n",
                    MAX_BATCH_SIZES);
            return 2;
        }
        b->batch_sizes[b->nbatch_sizes++] = (int)n;
        s = *end ? end + 1 : end;
    }
    return GO_ON;
}

/* The programs the bench runs, the services' settings and the org's slug. */
static int check_settings(prog_t *p) {
    bench_t *b = &p->b;
    if (p->bin_dir && *p->bin_dir)
        snprintf(b->bin_dir, sizeof b->bin_dir, "%s", p->bin_dir);
    else if (perf_self_dir(b->bin_dir, sizeof b->bin_dir) != 0) {
        fprintf(stderr, PROG ": cannot find my own directory; give --bin-dir\n");
        return 2;
    }
    const char *needed[] = {"sim", "ingest", b->worker};
    for (size_t i = 0; i < DS_ARRAY_SIZE(needed); i++) {
        char exe[PATH_MAX + 32];
        snprintf(exe, sizeof exe, "%s/dealscore-%s", b->bin_dir, needed[i]);
        if (access(exe, X_OK) != 0) {
            fprintf(stderr,
                    PROG ": %s is not an executable (build it, or give --bin-dir / DEALSCORE_BIN_DIR)\n",
                    exe);
            return 2;
        }
    }
    char err[512];
    if (ds_config_load(&b->cfg, DS_SVC_FEATURE, environ, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 2;
    }
    ds_log_init("bench-feature", DS_LOG_WARN);
    b->worker_urls[0] = getenv("DEALSCORE_FEATURE_URL");
    b->worker_urls[1] = getenv("DEALSCORE_SCORING_URL");
    b->worker_urls[2] = getenv("DEALSCORE_BENCHMARK_URL");
    snprintf(b->runid, sizeof b->runid, "%08x", (unsigned)(ds_now_us() & 0xffffffff));
    if (p->org && *p->org)
        snprintf(b->slug, sizeof b->slug, "%s", p->org);
    else if (b->fresh)
        snprintf(b->slug, sizeof b->slug, "bf-%ld-s%ld-%s", b->nopps, b->seed, b->runid);
    else
        snprintf(b->slug, sizeof b->slug, "bf-%ld-s%ld", b->nopps, b->seed);
    return GO_ON;
}

/* Postgres, Kafka answering, and the work directory. */
static int connect_stack(prog_t *p) {
    bench_t *b = &p->b;
    char err[512];
    b->db = PQconnectdb(b->cfg.database_url);
    if (PQstatus(b->db) != CONNECTION_OK) {
        fprintf(stderr, PROG ": could not connect to Postgres: %s", PQerrorMessage(b->db));
        return 1;
    }
    rd_kafka_conf_t *conf = NULL;
    if (ds_kafka_conf_new(&conf, &b->cfg, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, PROG ": could not create a Kafka client: %s\n", err);
        return 1;
    }
    int pr = ds_kafka_ping(rk, 10000);
    rd_kafka_destroy(rk);
    if (pr != 0) {
        fprintf(stderr, PROG ": Kafka at %s does not answer: %s\n", b->cfg.kafka_brokers, ds_strerror(pr));
        return 1;
    }
    bool made = false;
    if (perf_work_dir(p->work_dir, "dealscore-bench-feature", b->work_dir, sizeof b->work_dir, &made, err,
                      sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    b->own_work_dir = made && !b->keep;
    return GO_ON;
}

/* The org with its opportunities, and a quiet stack. */
static int prepare(prog_t *p) {
    bench_t *b = &p->b;
    perf_loadavg(p->la0, sizeof p->la0);
    p->ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf(PROG ": run %s; %ld CPUs; load average %s\n", b->runid, p->ncpu, p->la0);
    fflush(stdout);
    if (prepare_org(b) != 0 || load_ids(b) != 0) return 1;
    fflush(stdout);
    settle(b);
    return GO_ON;
}

/* The figures of a trial that the tables show. */
enum {
    M_RATE,
    M_SECS,
    M_LOAD,
    M_COMPUTE,
    M_WRITE,
    M_OTHER,
    M_MEAN_BATCH,
    M_BUSY_RATE,
    M_PRODUCE,
    M_RSS_READY,
    M_RSS_END,
    M_RSS_PEAK,
    M_N
};

static double trial_metric(const trial_t *t, int m) {
    switch (m) {
    case M_RATE: return t->secs > 0 ? (double)t->snapshots / t->secs : 0;
    case M_SECS: return t->secs;
    case M_LOAD: return share(t->load, t);
    case M_COMPUTE: return share(t->compute, t);
    case M_WRITE: return share(t->write, t);
    case M_OTHER:
        return 100.0 - share(t->load, t) - share(t->compute, t) - share(t->write, t) - share(t->produce, t);
    case M_MEAN_BATCH: return t->batches > 0 ? t->batch_msgs / t->batches : 0;
    case M_PRODUCE: return share(t->produce, t);
    case M_RSS_READY: return t->rss_ready;
    case M_RSS_END: return t->rss_end;
    case M_RSS_PEAK: return t->rss_peak;
    default: return t->batch_secs > 0 ? (double)t->snapshots / t->batch_secs : NAN;
    }
}

static void print_trial(const trial_t *t) {
    printf("%6d %4d %7ld %7.2fs %7.2fs %7.2fs %9.0f %5.1f%% %7.1f%% %5.1f%% %7.1f%% %5.1f%% %10.1f %11.0f "
           "%5.0f/%4.0f/%4.0f%s\n",
           t->batch_size, t->rep, t->snapshots, t->produce_s, t->startup_s, t->secs, trial_metric(t, M_RATE),
           trial_metric(t, M_LOAD), trial_metric(t, M_COMPUTE), trial_metric(t, M_WRITE),
           trial_metric(t, M_PRODUCE), trial_metric(t, M_OTHER), trial_metric(t, M_MEAN_BATCH),
           trial_metric(t, M_BUSY_RATE), t->rss_ready, t->rss_end, t->rss_peak,
           t->timed_out ? "  TIMED OUT" : "");
    if (t->db_rows != t->snapshots || t->skipped || t->dead_letters)
        printf("       note: %ld snapshot rows in the database, %ld skipped, %ld dead letters\n", t->db_rows,
               t->skipped, t->dead_letters);
    fflush(stdout);
}

static int run_trials(prog_t *p) {
    bench_t *b = &p->b;
    p->trials = ds_calloc((size_t)(b->nbatch_sizes * b->repeat), sizeof *p->trials);
    printf("\n%6s %4s %7s %8s %8s %8s %9s %6s %8s %6s %8s %6s %10s %11s %15s\n", "batch", "rep", "opps",
           "fill", "startup", "seconds", "opps/s", "load", "compute", "write", "produce", "other",
           "mean batch", "busy opps/s", "MB ready/end/pk");
    for (int r = 1; r <= b->repeat && !interrupted; r++) {
        /* Alternate the batch sizes within a repetition, so slow drifts of the
         * shared machine's load hit each size alike. */
        for (int i = 0; i < b->nbatch_sizes && !interrupted; i++) {
            trial_t *t = &p->trials[p->ntrials];
            if (run_trial(b, b->batch_sizes[i], r, t) != 0) return 1;
            if (interrupted) break;
            p->ntrials++;
            print_trial(t);
        }
    }
    if (interrupted) {
        fprintf(stderr, PROG ": interrupted\n");
        return 1;
    }
    return GO_ON;
}

/* The medians per batch size and the target. */
static int print_medians(prog_t *p) {
    const bench_t *b = &p->b;
    char la1[64];
    perf_loadavg(la1, sizeof la1);
    printf("\nmedians of %d trial%s per batch size (%zu opportunities; load average at start %s, at end %s; "
           "%ld CPUs):\n",
           b->repeat, b->repeat > 1 ? "s" : "", b->nids, p->la0, la1, p->ncpu);
    printf("%6s %9s %9s %6s %8s %6s %8s %6s %10s %11s %15s\n", "batch", "opps/s", "seconds", "load",
           "compute", "write", "produce", "other", "mean batch", "busy opps/s", "MB ready/end/pk");
    double best = 0;
    int best_size = 0;
    double *x = ds_calloc((size_t)b->repeat, sizeof *x);
    for (int i = 0; i < b->nbatch_sizes; i++) {
        double m[M_N];
        for (int f = 0; f < M_N; f++) {
            size_t n = 0;
            for (size_t k = 0; k < p->ntrials; k++)
                if (p->trials[k].batch_size == b->batch_sizes[i]) x[n++] = trial_metric(&p->trials[k], f);
            m[f] = perf_median(x, n);
        }
        printf("%6d %9.0f %8.2fs %5.1f%% %7.1f%% %5.1f%% %7.1f%% %5.1f%% %10.1f %11.0f %5.0f/%4.0f/%4.0f\n",
               b->batch_sizes[i], m[M_RATE], m[M_SECS], m[M_LOAD], m[M_COMPUTE], m[M_WRITE], m[M_PRODUCE],
               m[M_OTHER], m[M_MEAN_BATCH], m[M_BUSY_RATE], m[M_RSS_READY], m[M_RSS_END], m[M_RSS_PEAK]);
        if (m[M_RATE] > best) best = m[M_RATE], best_size = b->batch_sizes[i];
    }
    free(x);
    printf("\ntarget: >= 5,000 opportunities/s on 2 cores: best median %.0f opportunities/s (batch %d) on "
           "%ld CPUs: %s\n",
           best, best_size, p->ncpu, best >= 5000 ? "met" : "NOT met");
    return GO_ON;
}

static int print_notes(void) {
    printf("notes: opps/s = opportunities / seconds from the worker's /readyz (consumer assigned) until its\n"
           "  snapshot counter reached every opportunity (polled every 50 ms); startup (process start to\n"
           "  ready: connect, topic check, group join) is not included. load/compute/write/other are\n"
           "  shares of the worker's batch time (dealscore_worker_batch_seconds_sum): load = reading the\n"
           "  raw rows, compute = features + JSON + packing features.ready, write = waiting for the\n"
           "  features_snapshot INSERTs and COMMIT (the part not overlapped with loading and computing\n"
           "  the next chunk), produce = handing features.ready to the producer, other = decoding,\n"
           "  coalescing, waiting for the deliveries, storing offsets. fill = producing the trial's\n"
           "  events to the input topic (before the worker starts). busy opps/s =\n"
           "  opportunities / batch time (the rate without idle polling; it also counts publishing the\n"
           "  last batch's features.ready after its snapshots committed, so with one or two batches it\n"
           "  can come out below opps/s). With --changes 1, one event per opportunity, so nothing\n"
           "  coalesces. MB ready/end/pk = the worker's VmRSS when it was ready (before its first\n"
           "  batch), VmRSS once every event was processed, and VmHWM, its peak resident size\n"
           "  (/proc/<pid>/status). The stack's Postgres and Kafka (and whatever else runs) share the\n"
           "  CPUs.\n");
    return 0;
}

static void prog_close(prog_t *p) {
    bench_t *b = &p->b;
    free(p->trials);
    free(b->opp_ids);
    free(b->acc_ids);
    if (b->own_work_dir) remove_work_dir(b);
    PQfinish(b->db);
    ds_config_close(&b->cfg);
}

int main(int argc, char **argv) {
    prog_t p = {.b = {.nopps = 10000,
                      .seed = 1,
                      .changes = 1,
                      .worker = "feature",
                      .repeat = 3,
                      .settle_s = 600,
                      .timeout_s = 600},
                .bin_dir = getenv("DEALSCORE_BIN_DIR"),
                .sizes = "500,2000"};
    int rc = parse_options(&p, argc, argv);
    if (rc != GO_ON) return rc;
    rc = check_settings(&p);
    if (rc != GO_ON) return rc;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = connect_stack(&p);
    if (rc == GO_ON) rc = prepare(&p);
    if (rc == GO_ON) rc = run_trials(&p);
    if (rc == GO_ON) rc = print_medians(&p);
    if (rc == GO_ON) rc = print_notes();
    prog_close(&p);
    return rc;
}
