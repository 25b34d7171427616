/* dealscore-bench-notify: how fast dealscore-notify delivers. For each
 * value of --concurrency it starts dealscore-notify (topics of a prefix of
 * its own), subscribes a receiver of its own (an HTTP server on
 * 127.0.0.1 that answers 200 after --delay-ms), produces --events
 * PredictionMade events, and prints deliveries per second and the latency
 * from each event's publication to its arrival (p50/p95/p99). A
 * measurement program: it asserts nothing.
 *
 *   eval "$(deploy/local/stack env)"
 *   build/bin/dealscore-bench-notify [--events 5000] [--concurrency 1,4,16] [--delay-ms 0]
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "perf.h"
#include "base/common.h"
#include "base/config.h"
#include "dealscore/v1/events.pb-c.h"
#include "infra/http.h"
#include "infra/kafka.h"

/* The receiver: arrival times of the events (microseconds after their
 * publication), on a loop thread of its own. */
typedef struct {
    uv_loop_t loop;
    ds_http_t *http;
    uv_async_t stop;
    pthread_t th;
    int port, delay_ms;
    pthread_mutex_t mu;
    int64_t *lat_us;
    size_t n, cap;
} receiver_t;

typedef struct {
    uv_timer_t timer;
    h2o_req_t *req;
} later_t;

static void answer(h2o_req_t *req) { ds_http_respond(req, 200, "text/plain", "ok", 2); }

static void on_later(uv_timer_t *t) {
    later_t *l = t->data;
    answer(l->req);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static int on_event(void *ud, h2o_req_t *req) {
    receiver_t *rv = ud;
    int64_t now = ds_now_us(), at = 0;
    const char *p = memmem(req->entity.base, req->entity.len, "\"scored_at\":\"", 13);
    char ts[40] = "";
    if (p) snprintf(ts, sizeof ts, "%.27s", p + 13);
    pthread_mutex_lock(&rv->mu);
    if (rv->n < rv->cap && ds_parse_time_us(ts, &at) == 0) rv->lat_us[rv->n++] = now - at;
    pthread_mutex_unlock(&rv->mu);
    if (rv->delay_ms <= 0) {
        answer(req);
        return 0;
    }
    /* A receiver that takes delay_ms to answer, without holding the loop. */
    later_t *l = ds_calloc(1, sizeof *l);
    l->req = req;
    uv_timer_init(&rv->loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, on_later, (uint64_t)rv->delay_ms, 0);
    return 0;
}

static void close_cb(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_stop(uv_async_t *a) {
    receiver_t *rv = a->data;
    ds_http_stop(rv->http);
    ds_http_close_context(rv->http);
    uv_walk(&rv->loop, close_cb, NULL);
}

static void *receiver_main(void *arg) {
    receiver_t *rv = arg;
    uv_run(&rv->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int receiver_start(receiver_t *rv, size_t cap, int delay_ms) {
    char err[256];
    memset(rv, 0, sizeof *rv);
    pthread_mutex_init(&rv->mu, NULL);
    rv->cap = cap;
    rv->delay_ms = delay_ms;
    rv->lat_us = ds_calloc(cap, sizeof *rv->lat_us);
    uv_loop_init(&rv->loop);
    rv->http = ds_http_new(&rv->loop, "127.0.0.1", 0, 1 << 20);
    ds_http_route(rv->http, "/", on_event, rv);
    if (ds_http_start(rv->http, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-bench-notify: receiver: %s\n", err);
        return -1;
    }
    rv->port = ds_http_port(rv->http);
    rv->stop.data = rv;
    uv_async_init(&rv->loop, &rv->stop, on_stop);
    pthread_create(&rv->th, NULL, receiver_main, rv);
    return 0;
}

static void receiver_stop(receiver_t *rv) {
    uv_async_send(&rv->stop);
    pthread_join(rv->th, NULL);
    ds_http_destroy(rv->http);
    uv_loop_close(&rv->loop);
    free(rv->lat_us);
    pthread_mutex_destroy(&rv->mu);
}

static size_t received(receiver_t *rv) {
    pthread_mutex_lock(&rv->mu);
    size_t n = rv->n;
    pthread_mutex_unlock(&rv->mu);
    return n;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs sql with one text parameter (may be NULL); returns the first value
 * (caller frees) or NULL, printing the error. */
static char *query1(PGconn *db, const char *sql, const char *param) {
    const char *v[] = {param};
    PGresult *res = PQexecParams(db, sql, param ? 1 : 0, NULL, param ? v : NULL, NULL, NULL, 0);
    char *out = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
        out = ds_strdup(PQgetvalue(res, 0, 0));
    else if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(stderr, "dealscore-bench-notify: %s", PQerrorMessage(db));
    PQclear(res);
    return out;
}

/* A port of 127.0.0.1 nothing listens on (bound, read and closed). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

typedef struct {
    int events, delay_ms;
    const char *concurrency;
    const char *bin_dir;
} opts_t;

/* Starts dealscore-notify for prefix with concurrency c; waits for /readyz. */
static pid_t start_notify(const opts_t *o, const char *prefix, int c, int port, const char *log) {
    char a_prefix[96], a_addr[64], a_conc[64];
    snprintf(a_prefix, sizeof a_prefix, "DEALSCORE_TOPIC_PREFIX=%s", prefix);
    snprintf(a_addr, sizeof a_addr, "DEALSCORE_HTTP_ADDR=127.0.0.1:%d", port);
    snprintf(a_conc, sizeof a_conc, "DEALSCORE_NOTIFY_CONCURRENCY=%d", c);
    const char *assign[] = {a_prefix, a_addr, a_conc, "DEALSCORE_LOG_LEVEL=warn",
                            "DEALSCORE_TOPIC_PARTITIONS=6"};
    char **envp = perf_environ_with(assign, DS_ARRAY_SIZE(assign));
    char *bin = ds_asprintf("%s/dealscore-notify", o->bin_dir), err[256];
    char *argv[] = {bin, NULL};
    pid_t pid = perf_spawn(argv, envp, NULL, log, err, sizeof err);
    free(envp);
    free(bin);
    if (pid < 0) {
        fprintf(stderr, "dealscore-bench-notify: %s\n", err);
        return -1;
    }
    perf_conn_t conn = {.fd = -1, .host = "127.0.0.1", .port = port};
    for (int i = 0; i < 600 && perf_conn_request(&conn, "/readyz", NULL, NULL, 0) != 200; i++) sleep_ms(100);
    perf_conn_close(&conn);
    return pid;
}

/* Produces n PredictionMade events of org to prefix's prediction.made. */
static int produce(const char *prefix, const char *org, int n) {
    char a_prefix[96], err[256];
    snprintf(a_prefix, sizeof a_prefix, "DEALSCORE_TOPIC_PREFIX=%s", prefix);
    const char *assign[] = {a_prefix};
    char **envp = perf_environ_with(assign, 1);
    ds_config_t cfg;
    ds_producer_t *p = NULL;
    int rc = ds_config_load(&cfg, DS_SVC_FEATURE, envp, err, sizeof err);
    free(envp);
    if (rc == 0) rc = ds_producer_new(&p, &cfg, err, sizeof err);
    char *topic = rc == 0 ? ds_config_topic(&cfg, DS_TOPIC_PREDICTION_MADE) : NULL;
    for (int i = 0; i < n && rc == 0; i++) {
        char ev[37], opp[37];
        ds_uuid4(ev);
        ds_uuid4(opp);
        Dealscore__V1__PredictionMade pm = DEALSCORE__V1__PREDICTION_MADE__INIT;
        pm.event_id = ev;
        pm.org_id = (char *)org;
        pm.opportunity_id = opp;
        pm.as_of_us = ds_now_us();
        pm.model_version = "bench";
        pm.proba_close = 0.5;
        uint8_t buf[256];
        size_t len = dealscore__v1__prediction_made__pack(&pm, buf);
        ds_event_meta_t meta = {.id = ev, .type = DS_CE_TYPE_PREDICTION_MADE};
        rc = ds_producer_send(p, topic, opp, strlen(opp), buf, len, &meta, NULL);
    }
    if (rc == 0) rc = ds_producer_flush(p, 60000);
    if (rc != 0) fprintf(stderr, "dealscore-bench-notify: could not produce: %s\n", err);
    ds_producer_destroy(p);
    free(topic);
    if (cfg.service_name) ds_config_close(&cfg);
    return rc;
}

/* One run at concurrency c; prints its line. */
static int run(const opts_t *o, PGconn *db, const char *org, int c) {
    receiver_t rv;
    if (receiver_start(&rv, (size_t)o->events, o->delay_ms) != 0) return 1;
    char prefix[48], url[64], sub_sql[512];
    snprintf(prefix, sizeof prefix, "bnotify%08x.", (unsigned)(ds_now_us() & 0xffffffff));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", rv.port);
    snprintf(sub_sql, sizeof sub_sql,
             "insert into dealscore_internal.notify_subscriptions (org_id, url, secret)"
             " values ('%s', $1, 'bench') returning id",
             org);
    int port = free_port();
    char log[96];
    snprintf(log, sizeof log, "/tmp/dealscore-bench-notify-%d.log", c);
    char *sub = query1(db, sub_sql, url);
    pid_t pid = sub ? start_notify(o, prefix, c, port, log) : -1;
    int rc = pid > 0 ? 0 : 1;
    int64_t t0 = ds_mono_us();
    if (rc == 0) rc = produce(prefix, org, o->events);
    while (rc == 0 && received(&rv) < (size_t)o->events && ds_mono_us() - t0 < 300000000LL) sleep_ms(10);
    double secs = (double)(ds_mono_us() - t0) / 1e6;
    size_t n = received(&rv);
    if (rc == 0) {
        qsort(rv.lat_us, n, sizeof *rv.lat_us, perf_cmp_i64);
        printf("%11d %8zu %8.2f %10.0f | %8.1f %8.1f %8.1f\n", c, n, secs, (double)n / secs,
               perf_pct_ms(rv.lat_us, n, 50), perf_pct_ms(rv.lat_us, n, 95), perf_pct_ms(rv.lat_us, n, 99));
        fflush(stdout);
    }
    if (pid > 0) {
        kill(pid, SIGTERM);
        perf_wait_exit(pid);
    }
    if (sub) free(query1(db, "delete from dealscore_internal.notify_subscriptions where id = $1::uuid", sub));
    free(sub);
    receiver_stop(&rv);
    return rc;
}

static void usage(FILE *out) {
    fprintf(out, "usage: dealscore-bench-notify [--events N] [--concurrency C1,C2,...] [--delay-ms D]\n"
                 "  --events N        PredictionMade events per run (default 5000)\n"
                 "  --concurrency L   DEALSCORE_NOTIFY_CONCURRENCY of each run (default 1,4,16)\n"
                 "  --delay-ms D      the receiver's time to answer, milliseconds (default 0)\n"
                 "DEALSCORE_DATABASE_URL (a migrated database), DEALSCORE_KAFKA_BROKERS and\n"
                 "DEALSCORE_BIN_DIR (default: this program's directory) from the environment:\n"
                 "  eval \"$(deploy/local/stack env)\"\n");
}

static const char *apply(void *ctx, int c) {
    opts_t *o = ctx;
    long v;
    switch (c) {
    case 'e':
        if (!ds_parse_long(optarg, 1, 10000000, &v)) return "--events: a number from 1 to 10000000";
        o->events = (int)v;
        return NULL;
    case 'c': o->concurrency = optarg; return NULL;
    case 'd':
        if (!ds_parse_long(optarg, 0, 60000, &v)) return "--delay-ms: a number from 0 to 60000";
        o->delay_ms = (int)v;
        return NULL;
    default: return "unknown option";
    }
}

int main(int argc, char **argv) {
    static const struct option long_opts[] = {{"events", 1, 0, 'e'},
                                              {"concurrency", 1, 0, 'c'},
                                              {"delay-ms", 1, 0, 'd'},
                                              {"help", 0, 0, 'h'},
                                              {0, 0, 0, 0}};
    opts_t o = {.events = 5000, .concurrency = "1,4,16"};
    int rc = perf_parse_options(argc, argv, long_opts, "dealscore-bench-notify", usage, apply, &o);
    if (rc >= 0) return rc;
    char self[512];
    const char *bin = getenv("DEALSCORE_BIN_DIR");
    if (!bin || !*bin) bin = perf_self_dir(self, sizeof self) == 0 ? self : "build/bin";
    o.bin_dir = bin;
    const char *db_url = getenv("DEALSCORE_DATABASE_URL");
    PGconn *db = PQconnectdb(db_url ? db_url : "");
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "dealscore-bench-notify: could not connect to DEALSCORE_DATABASE_URL: %s",
                PQerrorMessage(db));
        PQfinish(db);
        return 1;
    }
    char *org = query1(db,
                       "insert into public.orgs (slug) values ('bench-notify') on conflict (slug)"
                       " do update set slug = excluded.slug returning id",
                       NULL);
    char load[64];
    perf_loadavg(load, sizeof load);
    printf("dealscore-bench-notify: %d events per run, receiver answers 200 after %d ms; load %s\n", o.events,
           o.delay_ms, load);
    printf("%11s %8s %8s %10s | %8s %8s %8s\n", "concurrency", "events", "seconds", "events/s", "p50 ms",
           "p95 ms", "p99 ms");
    char *list = ds_strdup(o.concurrency), *rest = list, *tok;
    rc = org ? 0 : 1;
    while (rc == 0 && (tok = strsep(&rest, ",")) != NULL) {
        long c;
        if (!ds_parse_long(tok, 1, 256, &c)) {
            fprintf(stderr, "dealscore-bench-notify: --concurrency: \"%s\" is not from 1 to 256\n", tok);
            rc = 2;
            break;
        }
        rc = run(&o, db, org, (int)c);
    }
    free(list);
    free(org);
    PQfinish(db);
    return rc;
}
