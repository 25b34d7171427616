/* Every binary: --help, bad settings, health and readiness against the real
 * Postgres and Kafka, 503 while a dependency is down, clean SIGTERM. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "httpc.h"
#include "proc.h"

static const char *services[] = {"ingest", "feature", "scoring", "benchmark"};

static const char *need_env(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) cr_assert_fail("%s must be set (tests/run sets it)", name);
    return v;
}

typedef struct {
    pid_t pid;
    int port;
    char errlog[64];
} running_t;

/* Starts dealscore-<svc> on port with topics under prefix (NULL: one of its
 * own) and one extra setting (may be NULL). */
static running_t start_on(const char *svc, const char *db_url, const char *topic_prefix, const char *extra,
                          int port) {
    running_t r = {0};
    r.port = port;
    snprintf(r.errlog, sizeof r.errlog, "/tmp/ds-svc-%s-%d.log", svc, r.port);
    char *bin = NULL, *binname = NULL;
    if (asprintf(&binname, "dealscore-%s", svc) < 0) abort();
    bin = proc_bin(binname);
    char *argv[] = {bin, NULL};
    static char addr[64], db[512], brokers[512], prefix[64];
    snprintf(addr, sizeof addr, "DEALSCORE_HTTP_ADDR=127.0.0.1:%d", r.port);
    snprintf(db, sizeof db, "DEALSCORE_DATABASE_URL=%s", db_url);
    snprintf(brokers, sizeof brokers, "DEALSCORE_KAFKA_BROKERS=%s", need_env("DEALSCORE_KAFKA_BROKERS"));
    if (topic_prefix)
        snprintf(prefix, sizeof prefix, "DEALSCORE_TOPIC_PREFIX=%s", topic_prefix);
    else
        snprintf(prefix, sizeof prefix, "DEALSCORE_TOPIC_PREFIX=svctest%d.", r.port);
    char *env[] = {addr, db, brokers, prefix, "DEALSCORE_TOPIC_PARTITIONS=1", (char *)extra, NULL};
    r.pid = proc_spawn(argv, env, NULL, r.errlog);
    free(bin);
    free(binname);
    return r;
}

static running_t start_env(const char *svc, const char *db_url, const char *topic_prefix, const char *extra) {
    return start_on(svc, db_url, topic_prefix, extra, proc_free_port());
}

static running_t start(const char *svc, const char *db_url) { return start_env(svc, db_url, NULL, NULL); }

/* Polls path until it answers want, or the deadline passes. */
static int wait_status(int port, const char *path, int want, int timeout_ms) {
    long long deadline = proc_now_ms() + timeout_ms;
    int last = -1;
    while (proc_now_ms() < deadline) {
        httpc_resp_t r = httpc_get(port, path);
        last = r.status;
        httpc_free(&r);
        if (last == want) return last;
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    return last;
}

static void stop_and_expect_clean_exit(running_t *r) {
    kill(r->pid, SIGTERM);
    long long t0 = proc_now_ms();
    int rc = proc_wait(r->pid, 5000);
    long long took = proc_now_ms() - t0;
    if (rc < 0) {
        kill(r->pid, SIGKILL);
        proc_wait(r->pid, 5000);
    }
    char *log = proc_slurp(r->errlog);
    cr_expect_eq(rc, 0, "exit code %d after SIGTERM (%lld ms); log:\n%s", rc, took, log);
    cr_expect(strstr(log, "\"level\":\"info\",\"msg\":\"stopped (exit code 0)\"") != NULL,
              "log should end with the stop line:\n%s", log);
    free(log);
    unlink(r->errlog);
}

Test(services, help_lists_every_setting) {
    for (size_t i = 0; i < 4; i++) {
        char *binname = NULL;
        if (asprintf(&binname, "dealscore-%s", services[i]) < 0) abort();
        char *bin = proc_bin(binname);
        char *argv[] = {bin, "--help", NULL};
        char *out = NULL, *err = NULL;
        int rc = proc_run(argv, NULL, &out, &err, 10000);
        cr_assert_eq(rc, 0, "%s --help exited %d: %s", services[i], rc, err);
        const char *vars[] = {"DEALSCORE_DATABASE_URL",
                              "DEALSCORE_KAFKA_BROKERS",
                              "DEALSCORE_TOPIC_PREFIX",
                              "DEALSCORE_HTTP_ADDR",
                              "DEALSCORE_LOG_LEVEL",
                              "KAFKA_<PROPERTY>",
                              "/readyz"};
        for (size_t v = 0; v < sizeof vars / sizeof vars[0]; v++)
            cr_assert(strstr(out, vars[v]), "%s --help lacks %s:\n%s", services[i], vars[v], out);
        if (strcmp(services[i], "scoring") == 0) {
            cr_assert(strstr(out, "SUPABASE_JWKS") && strstr(out, "SUPABASE_JWT_SECRET"), "%s", out);
            cr_assert(strstr(out, "127.0.0.1:8081"), "scoring default address: %s", out);
        }
        free(out);
        free(err);
        free(bin);
        free(binname);
    }
}

Test(services, bad_settings_exit_nonzero_naming_the_variable) {
    struct {
        char *setting;
        const char *var;
    } cases[] = {
        {"DEALSCORE_HTTP_ADDR=127.0.0.1:65536", "DEALSCORE_HTTP_ADDR"},
        {"DEALSCORE_KAFKA_BROKERS=broker-without-port", "DEALSCORE_KAFKA_BROKERS"},
        {"DEALSCORE_DATABASE_URL=postgresql://u@h:notaport/db", "DEALSCORE_DATABASE_URL"},
        {"DEALSCORE_LOG_LEVEL=chatty", "DEALSCORE_LOG_LEVEL"},
    };
    for (size_t i = 0; i < 4; i++) {
        char *binname = NULL;
        if (asprintf(&binname, "dealscore-%s", services[i]) < 0) abort();
        char *bin = proc_bin(binname);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            char *argv[] = {bin, NULL};
            char *env[] = {cases[c].setting, NULL};
            char *out = NULL, *err = NULL;
            int rc = proc_run(argv, env, &out, &err, 10000);
            cr_assert_eq(rc, 2, "%s with %s exited %d", services[i], cases[c].setting, rc);
            cr_assert(strstr(err, cases[c].var), "%s: message should name %s: %s", services[i], cases[c].var,
                      err);
            cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line expected: %s", err);
            free(out);
            free(err);
        }
        free(bin);
        free(binname);
    }
}

Test(services, healthy_ready_metrics_and_clean_sigterm, .timeout = 120) {
    const char *db = need_env("DEALSCORE_DATABASE_URL");
    running_t r[4];
    for (size_t i = 0; i < 4; i++) r[i] = start(services[i], db);
    for (size_t i = 0; i < 4; i++) {
        cr_expect_eq(wait_status(r[i].port, "/healthz", 200, 15000), 200, "%s /healthz", services[i]);
        int st = wait_status(r[i].port, "/readyz", 200, 30000);
        if (st != 200) {
            char *log = proc_slurp(r[i].errlog);
            cr_expect_eq(st, 200, "%s /readyz answered %d; log:\n%s", services[i], st, log);
            free(log);
        }
        httpc_resp_t m = httpc_get(r[i].port, "/metrics");
        cr_expect_eq(m.status, 200);
        cr_expect(m.body && strstr(m.body, "dealscore_up 1\n"), "%s /metrics: %s", services[i], m.body);
        cr_expect(m.body && strstr(m.body, "# TYPE dealscore_ready gauge"), "%s", m.body);
        httpc_free(&m);
        httpc_resp_t nf = httpc_get(r[i].port, "/nope");
        cr_expect_eq(nf.status, 404, "%s unknown path", services[i]);
        httpc_free(&nf);
    }
    for (size_t i = 0; i < 4; i++) stop_and_expect_clean_exit(&r[i]);
}

Test(services, not_ready_while_postgres_is_unreachable, .timeout = 60) {
    /* Nothing listens on this port: the probe fails, /healthz still answers. */
    char db[128];
    snprintf(db, sizeof db, "postgresql://postgres@127.0.0.1:%d/postgres", proc_free_port());
    running_t r = start("feature", db);
    cr_expect_eq(wait_status(r.port, "/healthz", 200, 15000), 200);
    /* Give the probe a full round; readiness must stay 503 all along. */
    long long until = proc_now_ms() + 2500;
    while (proc_now_ms() < until) {
        httpc_resp_t rr = httpc_get(r.port, "/readyz");
        cr_expect_eq(rr.status, 503, "readyz while postgres is down: %d %s", rr.status, rr.body);
        cr_expect(rr.body && strstr(rr.body, "\"postgres\":false"), "%s", rr.body);
        httpc_free(&rr);
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL); /* sampling interval */
    }
    stop_and_expect_clean_exit(&r);
}

Test(services, not_ready_while_kafka_is_unreachable, .timeout = 60) {
    const char *db = need_env("DEALSCORE_DATABASE_URL");
    char brokers[64];
    snprintf(brokers, sizeof brokers, "127.0.0.1:%d", proc_free_port());
    setenv("DEALSCORE_KAFKA_BROKERS_SAVED", need_env("DEALSCORE_KAFKA_BROKERS"), 1);
    setenv("DEALSCORE_KAFKA_BROKERS", brokers, 1);
    running_t r = start("scoring", db);
    setenv("DEALSCORE_KAFKA_BROKERS", getenv("DEALSCORE_KAFKA_BROKERS_SAVED"), 1);
    cr_expect_eq(wait_status(r.port, "/healthz", 200, 15000), 200);
    /* Postgres becomes ready; Kafka never does. */
    long long deadline = proc_now_ms() + 10000;
    bool pg_seen = false;
    while (proc_now_ms() < deadline && !pg_seen) {
        httpc_resp_t rr = httpc_get(r.port, "/readyz");
        cr_expect_eq(rr.status, 503, "%s", rr.body);
        pg_seen = rr.body && strstr(rr.body, "\"postgres\":true") && strstr(rr.body, "\"kafka\":false");
        httpc_free(&rr);
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    cr_expect(pg_seen, "readyz should report postgres up and kafka down");
    stop_and_expect_clean_exit(&r);
}

/* A port another process listens on: the service says which setting and
 * exits 1 (a replica started beside another on the same port must not
 * crash). */
Test(services, a_taken_port_exits_1_naming_the_setting, .timeout = 120) {
    const char *db = need_env("DEALSCORE_DATABASE_URL");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(fd, 1), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    for (size_t i = 0; i < 4; i++) {
        running_t r = start_on(services[i], db, NULL, NULL, ntohs(sa.sin_port));
        int rc = proc_wait(r.pid, 25000);
        if (rc < 0) { /* still running: it hung */
            kill(r.pid, SIGKILL);
            proc_wait(r.pid, 5000);
        }
        char *log = proc_slurp(r.errlog);
        cr_expect_eq(rc, 1, "%s exited %d on a taken port; log:\n%s", services[i], rc, log);
        cr_expect(strstr(log, "address already in use (DEALSCORE_HTTP_ADDR)") != NULL, "%s", log);
        cr_expect(strstr(log, "\"msg\":\"stopped (exit code 1)\"") != NULL, "%s", log);
        free(log);
        unlink(r.errlog);
    }
    close(fd);
}

/* DEALSCORE_METRICS_ADDR moves /metrics to a listener of its own (a port a
 * NetworkPolicy opens to the scraper only): the public port no longer
 * serves it, and only /metrics is served on the metrics port. */
Test(services, metrics_on_a_listener_of_their_own, .timeout = 60) {
    const char *db = need_env("DEALSCORE_DATABASE_URL");
    for (size_t i = 0; i < 4; i++) {
        int mport = proc_free_port();
        char extra[64];
        snprintf(extra, sizeof extra, "DEALSCORE_METRICS_ADDR=127.0.0.1:%d", mport);
        running_t r = start_env(services[i], db, NULL, extra);
        cr_expect_eq(wait_status(r.port, "/healthz", 200, 15000), 200, "%s /healthz", services[i]);
        cr_expect_eq(wait_status(mport, "/metrics", 200, 15000), 200, "%s metrics port", services[i]);
        httpc_resp_t m = httpc_get(mport, "/metrics");
        cr_expect(m.body && strstr(m.body, "dealscore_up 1\n"), "%s /metrics: %s", services[i], m.body);
        httpc_free(&m);
        httpc_resp_t pub = httpc_get(r.port, "/metrics");
        cr_expect_eq(pub.status, 404, "%s still serves /metrics on the public port", services[i]);
        httpc_free(&pub);
        httpc_resp_t other = httpc_get(mport, "/readyz");
        cr_expect_eq(other.status, 404, "%s serves /readyz on the metrics port", services[i]);
        httpc_free(&other);
        stop_and_expect_clean_exit(&r);
    }
}

/* /api/predict must stay in its Service through rebalances and when there
 * are more scoring replicas than partitions: scoring's readiness does not
 * need a partition. Two scoring processes share a one-partition topic, so
 * one of them has no assignment; both must answer /readyz 200. */
Test(services, scoring_is_ready_without_a_partition, .timeout = 90) {
    const char *db = need_env("DEALSCORE_DATABASE_URL");
    char prefix[48];
    snprintf(prefix, sizeof prefix, "svcidle%d.", proc_free_port());
    running_t a = start_env("scoring", db, prefix, NULL);
    cr_assert_eq(wait_status(a.port, "/readyz", 200, 30000), 200,
                 "the first scoring process never got ready");
    running_t b = start_env("scoring", db, prefix, NULL);
    long long deadline = proc_now_ms() + 30000;
    int sa = -1, sb = -1;
    while (proc_now_ms() < deadline) {
        httpc_resp_t ra = httpc_get(a.port, "/readyz"), rb = httpc_get(b.port, "/readyz");
        sa = ra.status;
        sb = rb.status;
        httpc_free(&ra);
        httpc_free(&rb);
        if (sa == 200 && sb == 200) break;
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    cr_expect(sa == 200 && sb == 200,
              "with one partition for two scoring processes /readyz answered %d and %d", sa, sb);
    stop_and_expect_clean_exit(&b);
    stop_and_expect_clean_exit(&a);
}
