/* Helpers for tests that run a dealscore service against a fresh migrated
 * database and the real Kafka: start/stop the binary, make a token, POST
 * JSON, and consume what it published. Header-only (one .c per test). */
#ifndef DS_TEST_DSTEST_H
#define DS_TEST_DSTEST_H

#include "httpc.h"
#include "pgtest.h"
#include "proc.h"
#include "tcpproxy.h"

#include "base/common.h"
#include "base/config.h"
#include "infra/kafka.h"
#include "infra/pg.h"

typedef struct {
    pgt_db_t db;
    char prefix[48]; /* topic prefix unique to this test */
    int port;
    pid_t pid;
    char log[96];
    char token[96];
    char org_id[40];
    char *env[16]; /* environment given to the service */
    size_t nenv;
    ds_config_t cfgs[8]; /* configs of consumers made by dst_consumer */
    int ncfgs;
} dst_t;

static inline void dst_env_add(dst_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void dst_env_add(dst_t *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = pgt_vfmt(fmt, ap);
    va_end(ap);
    if (t->nenv + 1 >= PGT_N(t->env)) cr_fatal("too many env entries");
    t->env[t->nenv++] = s;
    t->env[t->nenv] = NULL;
}

/* Replaces the setting name (or adds it) in the service's environment. */
static inline void dst_env_set(dst_t *t, const char *name, const char *value) {
    size_t n = strlen(name);
    for (size_t i = 0; i < t->nenv; i++) {
        if (strncmp(t->env[i], name, n) == 0 && t->env[i][n] == '=') {
            free(t->env[i]);
            t->env[i] = pgt_fmt("%s=%s", name, value);
            return;
        }
    }
    dst_env_add(t, "%s=%s", name, value);
}

/* Unique topic prefix, free HTTP port and the service's environment, for
 * the database t->db already holds. */
static inline void dst_setup_service(dst_t *t) {
    unsigned char rnd[4];
    if (getrandom(rnd, sizeof rnd, 0) != 4) cr_fatal("getrandom");
    snprintf(t->prefix, sizeof t->prefix, "t%02x%02x%02x%02x.", rnd[0], rnd[1], rnd[2], rnd[3]);
    t->port = proc_free_port();
    const char *brokers = getenv("DEALSCORE_KAFKA_BROKERS");
    if (!brokers || !*brokers) cr_fatal("DEALSCORE_KAFKA_BROKERS must be set (tests/run sets it)");
    dst_env_add(t, "DEALSCORE_DATABASE_URL=%s", t->db.conninfo);
    dst_env_add(t, "DEALSCORE_KAFKA_BROKERS=%s", brokers);
    dst_env_add(t, "DEALSCORE_TOPIC_PREFIX=%s", t->prefix);
    dst_env_add(t, "DEALSCORE_HTTP_ADDR=127.0.0.1:%d", t->port);
    dst_env_add(t, "DEALSCORE_TOPIC_PARTITIONS=%d", 2);
}

/* Fresh migrated database, unique topic prefix, free HTTP port. */
static inline void dst_setup(dst_t *t) {
    memset(t, 0, sizeof *t);
    pgt_db_create(&t->db);
    pgt_migrate_ok(&t->db);
    dst_setup_service(t);
}

/* A second service on the same database and topics as t (another port).
 * Tear it down before t; it never drops the database. */
static inline void dst_clone(dst_t *c, const dst_t *t) {
    memset(c, 0, sizeof *c);
    c->db = t->db;
    c->db.conninfo = strdup(t->db.conninfo);
    c->db.created = false;
    snprintf(c->prefix, sizeof c->prefix, "%s", t->prefix);
    snprintf(c->token, sizeof c->token, "%s", t->token);
    snprintf(c->org_id, sizeof c->org_id, "%s", t->org_id);
    c->port = proc_free_port();
    const char *brokers = getenv("DEALSCORE_KAFKA_BROKERS");
    dst_env_add(c, "DEALSCORE_DATABASE_URL=%s", c->db.conninfo);
    dst_env_add(c, "DEALSCORE_KAFKA_BROKERS=%s", brokers ? brokers : "");
    dst_env_add(c, "DEALSCORE_TOPIC_PREFIX=%s", c->prefix);
    dst_env_add(c, "DEALSCORE_HTTP_ADDR=127.0.0.1:%d", c->port);
    dst_env_add(c, "DEALSCORE_TOPIC_PARTITIONS=%d", 2);
}

/* A producer for the test's topics (caller destroys it and closes cfg). */
static inline ds_producer_t *dst_producer(dst_t *t, ds_config_t *cfg) {
    char *envp[3] = {pgt_fmt("DEALSCORE_KAFKA_BROKERS=%s", getenv("DEALSCORE_KAFKA_BROKERS")),
                     pgt_fmt("DEALSCORE_TOPIC_PREFIX=%s", t->prefix), NULL};
    char err[256];
    if (ds_config_load(cfg, DS_SVC_FEATURE, envp, err, sizeof err) != 0) cr_fatal("%s", err);
    free(envp[0]);
    free(envp[1]);
    ds_producer_t *p = NULL;
    if (ds_producer_new(&p, cfg, err, sizeof err) != 0) cr_fatal("%s", err);
    return p;
}

/* Runs `dealscore-ingest token create --org slug [extra]` and keeps the
 * token (last line of stdout). Returns the whole stdout (caller frees). */
static inline char *dst_token(dst_t *t, const char *slug, const char *extra) {
    char *bin = proc_bin("dealscore-ingest");
    char *argv[] = {bin, "token", "create", "--org", (char *)slug, (char *)extra, NULL};
    char *out = NULL, *err = NULL;
    int rc = proc_run(argv, t->env, &out, &err, 30000);
    if (rc != 0) cr_fatal("token create exited %d: %s", rc, err);
    char *last = out + strlen(out);
    while (last > out && last[-1] == '\n') *--last = '\0';
    char *nl = strrchr(out, '\n');
    snprintf(t->token, sizeof t->token, "%s", nl ? nl + 1 : out);
    free(bin);
    free(err);
    PGconn *c = pgt_connect_db(&t->db);
    char *id = pgt_valuef(c, "select id from orgs where slug = '%s'", slug);
    snprintf(t->org_id, sizeof t->org_id, "%s", id ? id : "");
    free(id);
    PQfinish(c);
    return out;
}

/* Starts dealscore-<svc> with the test environment, its log in t->log,
 * without waiting for it. */
static inline void dst_spawn(dst_t *t, const char *svc) {
    char *name = pgt_fmt("dealscore-%s", svc);
    char *bin = proc_bin(name);
    snprintf(t->log, sizeof t->log, "/tmp/ds-test-%s-%d.log", svc, t->port);
    char *argv[] = {bin, NULL};
    t->pid = proc_spawn(argv, t->env, NULL, t->log);
    free(bin);
    free(name);
}

/* Starts dealscore-<svc> with the test environment and waits until path
 * ("/readyz", or "/healthz" for a service whose dependency is down on
 * purpose) answers 200. */
static inline void dst_start_until(dst_t *t, const char *svc, const char *path) {
    dst_spawn(t, svc);
    long long deadline = proc_now_ms() + 30000;
    while (proc_now_ms() < deadline) {
        httpc_resp_t r = httpc_get(t->port, path);
        int st = r.status;
        httpc_free(&r);
        if (st == 200) return;
        if (proc_wait(t->pid, 0) >= 0) break;
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    char *log = proc_slurp(t->log);
    cr_fatal("%s did not answer %s with 200; log:\n%s", svc, path, log);
}

/* Starts dealscore-<svc> and waits for /readyz. */
static inline void dst_start(dst_t *t, const char *svc) { dst_start_until(t, svc, "/readyz"); }

/* Routes the service's database connections through a loopback proxy px
 * (started here) that the test can cut with tcpproxy_set_up. */
static inline void dst_db_through_proxy(dst_t *t, tcpproxy_t *px) {
    char host[256] = "127.0.0.1", port[16] = "5432", err[256];
    PQconninfoOption *opts = PQconninfoParse(t->db.conninfo, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val || !*o->val) continue;
        if (!strcmp(o->keyword, "host")) snprintf(host, sizeof host, "%s", o->val);
        if (!strcmp(o->keyword, "port")) snprintf(port, sizeof port, "%s", o->val);
    }
    PQconninfoFree(opts);
    cr_assert_eq(tcpproxy_start(px, host, port), 0);
    char pport[16];
    snprintf(pport, sizeof pport, "%d", px->port);
    const char *keys[] = {"host", "port", "hostaddr"};
    const char *vals[] = {"127.0.0.1", pport, NULL};
    char *via = ds_pg_url_with(t->db.conninfo, keys, vals, 3, err, sizeof err);
    cr_assert(via, "%s", err);
    dst_env_set(t, "DEALSCORE_DATABASE_URL", via);
    free(via);
}

/* SIGTERM and expect exit 0 within 5 s. */
static inline void dst_stop(dst_t *t) {
    if (t->pid <= 0) return;
    kill(t->pid, SIGTERM);
    int rc = proc_wait(t->pid, 5000);
    if (rc < 0) {
        kill(t->pid, SIGKILL);
        proc_wait(t->pid, 5000);
    }
    char *log = proc_slurp(t->log);
    cr_expect_eq(rc, 0, "service exit code %d after SIGTERM; log:\n%s", rc, log);
    free(log);
    t->pid = 0;
}

static inline void dst_teardown(dst_t *t) {
    if (t->pid > 0) dst_stop(t);
    if (t->log[0]) unlink(t->log);
    pgt_db_drop(&t->db);
    for (size_t i = 0; i < t->nenv; i++) free(t->env[i]);
    t->nenv = 0;
    for (int i = 0; i < t->ncfgs; i++) ds_config_close(&t->cfgs[i]);
    t->ncfgs = 0;
}

/* POSTs body to path with the test's token (or auth when not NULL). */
static inline httpc_resp_t dst_post(dst_t *t, const char *path, const char *body, const char *auth,
                                    const char *extra_headers) {
    char *bearer = pgt_fmt("Bearer %s", t->token);
    char *hdr = pgt_fmt("Content-Type: application/json\r\nAuthorization: %s\r\n%s", auth ? auth : bearer,
                        extra_headers ? extra_headers : "");
    httpc_resp_t r = httpc_request(t->port, "POST", path, hdr, body, strlen(body), 10000);
    free(hdr);
    free(bearer);
    return r;
}

/* A consumer of <prefix><base> in a fresh group, from the beginning. */
static inline ds_consumer_t *dst_consumer(dst_t *t, const char *base) {
    char *envp[4] = {NULL};
    envp[0] = pgt_fmt("DEALSCORE_KAFKA_BROKERS=%s", getenv("DEALSCORE_KAFKA_BROKERS"));
    envp[1] = pgt_fmt("DEALSCORE_TOPIC_PREFIX=%s", t->prefix);
    /* Kept until dst_teardown: the consumer may keep pointers into it. */
    if (t->ncfgs >= (int)PGT_N(t->cfgs)) cr_fatal("too many consumers in one test");
    ds_config_t *cfgp = &t->cfgs[t->ncfgs++];
#define cfg (*cfgp)
    char err[256];
    if (ds_config_load(&cfg, DS_SVC_FEATURE, envp, err, sizeof err) != 0) cr_fatal("%s", err);
    free(envp[0]);
    free(envp[1]);
    char *topic = ds_config_topic(&cfg, base);
    const char *topics[] = {topic};
    /* The topic may not exist yet when nothing was published: create it. */
    if (ds_kafka_ensure_topics(&cfg, topics, 1, 2, 1, 10000, err, sizeof err) != 0)
        cr_fatal("could not create %s: %s", topic, err);
    char group[64];
    snprintf(group, sizeof group, "%stest-%d", t->prefix, rand());
    ds_consumer_t *c = NULL;
    if (ds_consumer_new(&c, &cfg, group, topics, 1, err, sizeof err) != 0) cr_fatal("%s", err);
#undef cfg
    free(topic);
    return c;
}

/* Collects exactly n messages within timeout_ms (fails the test otherwise). */
static inline void dst_consume(ds_consumer_t *c, rd_kafka_message_t **msgs, size_t n, int timeout_ms) {
    size_t got = 0;
    long long deadline = proc_now_ms() + timeout_ms;
    while (got < n && proc_now_ms() < deadline) {
        int k = ds_consumer_poll_batch(c, msgs + got, n - got, 200);
        if (k > 0) got += (size_t)k;
    }
    if (got != n) cr_fatal("consumed %zu of %zu messages within %d ms", got, n, timeout_ms);
}

/* A sample's value in Prometheus text ("name" or "name{labels}" exactly
 * as printed), or -1 when it is not there (or text is NULL). */
static inline double dst_metric_in(const char *text, const char *name) {
    char pat[200];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = text ? strstr(text, pat) : NULL;
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

/* A sample's value from the service's /metrics, as dst_metric_in. */
static inline double dst_metric(dst_t *t, const char *name) {
    httpc_resp_t r = httpc_get(t->port, "/metrics");
    double v = dst_metric_in(r.body, name);
    httpc_free(&r);
    return v;
}

/* Polls the service's /metrics until the sample reaches at_least (30 s). */
static inline void dst_wait_metric(dst_t *t, const char *name, double at_least) {
    long long deadline = proc_now_ms() + 30000;
    while (dst_metric(t, name) < at_least) {
        cr_assert_lt(proc_now_ms(), deadline, "%s did not reach %g in 30 s", name, at_least);
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
}

/* Polls the service's /metrics until the sample equals want or timeout_ms
 * have passed; returns the last value, for the caller to assert on. */
static inline double dst_wait_metric_eq(dst_t *t, const char *name, double want, int timeout_ms) {
    long long deadline = proc_now_ms() + timeout_ms;
    double v;
    while ((v = dst_metric(t, name)) != want && proc_now_ms() < deadline) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    return v;
}

static inline long long dst_count(dst_t *t, const char *sql) {
    PGconn *c = pgt_connect_db(&t->db);
    long long n = pgt_longf(c, "%s", sql);
    PQfinish(c);
    return n;
}

/* Polls a count query until it returns want or timeout_ms have passed;
 * returns the last count, for the caller to assert on. */
static inline long long dst_wait_count(dst_t *t, const char *sql, long long want, int timeout_ms) {
    long long deadline = proc_now_ms() + timeout_ms, n;
    while ((n = dst_count(t, sql)) != want && proc_now_ms() < deadline) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    return n;
}

/* POSTs body to the ingest t with the test's token and asserts its 202. */
static inline void dst_post_accepted(dst_t *t, const char *path, const char *body) {
    httpc_resp_t r = dst_post(t, path, body, NULL, NULL);
    cr_assert_eq(r.status, 202, "%s: %s", path, r.body);
    httpc_free(&r);
}

/* Closed deals of t's org as history for the stage prior: each row is
 * {external id, "won" or "lost", the stage it reached}. */
static inline void dst_seed_closed_deals(dst_t *t, const char *const deals[][3], int n) {
    PGconn *db = pgt_connect_db(&t->db);
    for (int i = 0; i < n; i++) {
        pgt_execf(db,
                  "insert into opportunities (org_id, external_id, stage, created_at, outcome, closed_at)"
                  " values ('%s', '%s', 'closed_%s', '2025-01-01Z', '%s', '2025-06-01Z')",
                  t->org_id, deals[i][0], deals[i][1], deals[i][1]);
        pgt_execf(
            db,
            "insert into opportunity_history (org_id, opportunity_id, field, new_value, changed_at)"
            " select org_id, id, 'stage', '%s', '2025-02-01Z' from opportunities where external_id = '%s'",
            deals[i][2], deals[i][0]);
    }
    PQfinish(db);
}

/* The scoring pipeline on s's database and topics: s (set up and given its
 * org by the caller) runs scoring, f the feature worker and i ingest. */
static inline void dst_start_pipeline(dst_t *s, dst_t *f, dst_t *i) {
    dst_start(s, "scoring");
    dst_clone(f, s);
    dst_start(f, "feature");
    dst_clone(i, s);
    dst_start(i, "ingest");
}

static inline void dst_teardown_pipeline(dst_t *s, dst_t *f, dst_t *i) {
    dst_teardown(i);
    dst_teardown(f);
    dst_teardown(s);
}

#endif
