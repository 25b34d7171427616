/* The benchmark programs' shared library (tools/bench/perf): the HTTP
 * client against a server in a thread, Prometheus sums, figures, processes
 * and option helpers. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loopback.h"
#include "perf.h"
#include "base/common.h"

extern char **environ;

/* ---- a scripted HTTP server ------------------------------------------------ */

/* Answers every request with resp; closes the connection after
 * per_conn requests; stops after total requests. Keeps the requests. */
typedef struct {
    int lfd, port;
    const char *resp;
    int per_conn, total;
    int conns;
    char reqs[8][1024];
    int nreqs;
    pthread_t th;
} server_t;

static void *serve(void *arg) {
    server_t *s = arg;
    while (s->nreqs < s->total) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) break;
        s->conns++;
        for (int k = 0; k < s->per_conn && s->nreqs < s->total; k++) {
            char buf[1024];
            size_t len = 0;
            for (;;) {
                ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
                if (r <= 0) break;
                len += (size_t)r;
                buf[len] = '\0';
                if (loopback_request_complete(buf, len)) break;
            }
            if (!len) break;
            memcpy(s->reqs[s->nreqs++ % 8], buf, len + 1);
            /* In two pieces, so the client has to put the response together. */
            size_t n = strlen(s->resp), half = n / 2;
            send(fd, s->resp, half, MSG_NOSIGNAL);
            usleep(1000);
            send(fd, s->resp + half, n - half, MSG_NOSIGNAL);
        }
        close(fd);
    }
    return NULL;
}

static void server_start(server_t *s, const char *resp, int per_conn, int total) {
    memset(s, 0, sizeof *s);
    s->resp = resp;
    s->per_conn = per_conn;
    s->total = total;
    s->lfd = loopback_listen(&s->port);
    pthread_create(&s->th, NULL, serve, s);
}

static void server_stop(server_t *s) {
    pthread_join(s->th, NULL);
    close(s->lfd);
}

#define METRICS_PAGE                                                                                         \
    "# TYPE dealscore_consumer_lag gauge\n"                                                                  \
    "dealscore_consumer_lag{topic=\"a\",partition=\"0\"} 3\n"                                                \
    "dealscore_consumer_lag{topic=\"b\",partition=\"1\"} 4.5\n"                                              \
    "dealscore_consumer_lag_seconds 100\n"                                                                   \
    "dealscore_other 7\n"

Test(bench, conn_gets_and_posts_on_one_connection) {
    static const char resp[] = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                               "Retry-After: 2\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
    server_t s;
    server_start(&s, resp, 2, 2);
    perf_conn_t c = {.fd = -1, .port = s.port};
    snprintf(c.host, sizeof c.host, "127.0.0.1");
    cr_assert_eq(perf_conn_request(&c, "/readyz", NULL, NULL, 0), 202);
    cr_assert_eq(c.body_len, 11);
    cr_assert(strncmp(c.body, "{\"ok\":true}", 11) == 0);
    cr_assert_eq(c.retry_after, 2);
    cr_assert_eq(perf_conn_request(&c, "/v1/opportunities", "tok", "[1,2]", 5), 202);
    perf_conn_close(&c);
    server_stop(&s);
    cr_assert_eq(s.conns, 1, "keep-alive: one connection for both requests");
    cr_assert_str_eq(s.reqs[0], "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    cr_assert_str_eq(s.reqs[1],
                     "POST /v1/opportunities HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok\r\n"
                     "Content-Type: application/json\r\nContent-Length: 5\r\n\r\n[1,2]");
}

Test(bench, conn_reconnects_when_the_server_closed_it) {
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    server_t s;
    server_start(&s, resp, 1, 2);
    perf_conn_t c = {.fd = -1, .port = s.port};
    snprintf(c.host, sizeof c.host, "127.0.0.1");
    cr_assert_eq(perf_conn_request(&c, "/a", NULL, NULL, 0), 200);
    cr_assert_eq(perf_conn_request(&c, "/b", NULL, NULL, 0), 200);
    cr_assert_eq(c.retry_after, 0);
    perf_conn_close(&c);
    server_stop(&s);
    cr_assert_eq(s.conns, 2);
    cr_assert(strncmp(s.reqs[1], "GET /b ", 7) == 0);
}

/* A server answering METRICS_PAGE twice, one request a connection; resp
 * (512 bytes) holds the response meanwhile, url (64) gets its base URL. */
static void metrics_server(server_t *s, char *resp, char *url) {
    snprintf(resp, 512, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(METRICS_PAGE),
             METRICS_PAGE);
    server_start(s, resp, 1, 2);
    snprintf(url, 64, "http://localhost:%d/", s->port);
}

/* The quiet wait reads the workers' lag and the extra condition once a
 * second and needs both quiet twice in a row: a condition that turns true
 * at its second call makes three calls; a worker that keeps a lag makes it
 * give up at the timeout with the lag it read. */
static bool true_from_second(void *ctx) { return ++*(int *)ctx >= 2; }

Test(bench, wait_quiet_needs_two_quiet_reads_and_gives_up_at_the_timeout) {
    int calls = 0;
    double lag = -1;
    cr_assert(perf_wait_quiet(NULL, 0, 30, true_from_second, &calls, &lag));
    cr_expect_eq(calls, 3);
    cr_expect_eq(lag, 0);

    char resp[512], url[64];
    server_t s;
    metrics_server(&s, resp, url);
    const char *urls[] = {url, NULL};
    int64_t t0 = ds_mono_us();
    cr_expect_not(perf_wait_quiet(urls, 2, 1.0, NULL, NULL, &lag));
    cr_expect_eq(lag, 7.5, "the last lag read");
    cr_expect_lt(ds_mono_us() - t0, 3000000);
    server_stop(&s);
    cr_expect_eq(s.nreqs, 2);
}

Test(bench, conn_fails_without_a_server) {
    server_t s;
    server_start(&s, "", 0, 0); /* a port that was free a moment ago */
    server_stop(&s);
    perf_conn_t c = {.fd = -1, .port = s.port};
    snprintf(c.host, sizeof c.host, "127.0.0.1");
    cr_assert_eq(perf_conn_request(&c, "/", NULL, NULL, 0), -1);
    cr_assert_eq(c.fd, -1);
    snprintf(c.host, sizeof c.host, "not-an-address");
    cr_assert_eq(perf_conn_request(&c, "/", NULL, NULL, 0), -1);
    perf_conn_close(&c);
}

Test(bench, workers_lag_sums_the_answering_workers) {
    char resp[512], url[64];
    server_t s;
    metrics_server(&s, resp, url);
    const char *urls[] = {url, NULL, "ftp://x", url};
    double lag = perf_workers_lag(urls, 4); /* once: the assertion macros evaluate twice */
    cr_assert_float_eq(lag, 15.0, 1e-9);
    server_stop(&s);
}

Test(bench, metric_sum_matches_exact_names_and_labels) {
    const char *p = METRICS_PAGE;
    size_t n = strlen(p);
    cr_assert_float_eq(perf_metric_sum(p, n, "dealscore_consumer_lag", NULL), 7.5, 1e-9);
    cr_assert_float_eq(perf_metric_sum(p, n, "dealscore_consumer_lag", "topic=\"b\""), 4.5, 1e-9);
    cr_assert_float_eq(perf_metric_sum(p, n, "dealscore_consumer_lag_seconds", NULL), 100, 1e-9);
    cr_assert_float_eq(perf_metric_sum(p, n, "dealscore_other", NULL), 7, 1e-9);
    cr_assert_float_eq(perf_metric_sum(p, n, "dealscore_missing", NULL), 0, 1e-9);
    /* The last line needs no newline. */
    cr_assert_float_eq(perf_metric_sum("x 1\nx 2", 7, "x", NULL), 3, 1e-9);
}

Test(bench, parse_url) {
    char host[128];
    int port = 0;
    cr_assert_eq(perf_parse_url("http://localhost:8080", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 8080);
    cr_assert_eq(perf_parse_url("http://10.0.0.2:81/", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "10.0.0.2");
    cr_assert_eq(port, 81);
    cr_assert_eq(perf_parse_url(NULL, host, sizeof host, &port), -1);
    cr_assert_eq(perf_parse_url("https://h:1", host, sizeof host, &port), -1);
    cr_assert_eq(perf_parse_url("http://h", host, sizeof host, &port), -1);
    cr_assert_eq(perf_parse_url("http://h:0", host, sizeof host, &port), -1);
    cr_assert_eq(perf_parse_url("http://h:65536", host, sizeof host, &port), -1);
}

Test(bench, percentiles_and_medians) {
    int64_t v[] = {9000, 1000, 5000, 3000, 7000, 2000, 4000, 6000, 8000, 10000};
    qsort(v, 10, sizeof *v, perf_cmp_i64);
    cr_assert_eq(v[0], 1000);
    cr_assert_eq(v[9], 10000);
    /* Nearest rank: ceil(p / 100 * n). */
    cr_assert_float_eq(perf_pct_ms(v, 10, 50), 5.0, 1e-12);
    cr_assert_float_eq(perf_pct_ms(v, 10, 95), 10.0, 1e-12);
    cr_assert_float_eq(perf_pct_ms(v, 10, 99), 10.0, 1e-12);
    cr_assert_float_eq(perf_pct_ms(v, 10, 0), 1.0, 1e-12);
    cr_assert_float_eq(perf_pct_ms(v, 1, 99), 1.0, 1e-12);
    cr_assert(isnan(perf_pct_ms(v, 0, 50)));
    double d[] = {3, 1, 2, 10};
    cr_assert_float_eq(perf_median(d, 4), 2.5, 1e-12);
    cr_assert_float_eq(perf_median(d, 3), 2, 1e-12);
    cr_assert_eq(d[0], 3, "the input stays as it was");
    cr_assert(isnan(perf_median(d, 0)));
    qsort(d, 4, sizeof *d, perf_cmp_dbl);
    cr_assert(d[0] == 1 && d[1] == 2 && d[2] == 3 && d[3] == 10);
    char la[64];
    perf_loadavg(la, sizeof la);
    double a, b, c;
    cr_assert_eq(sscanf(la, "%lf %lf %lf", &a, &b, &c), 3, "%s", la);
}

Test(bench, parse_numbers) {
    long l = 7;
    cr_assert(ds_parse_long("42", 1, 100, &l));
    cr_assert_eq(l, 42);
    cr_assert_not(ds_parse_long("0", 1, 100, &l));
    cr_assert_not(ds_parse_long("101", 1, 100, &l));
    cr_assert_not(ds_parse_long("4x", 1, 100, &l));
    cr_assert_not(ds_parse_long("", 1, 100, &l));
    cr_assert_not(ds_parse_long("99999999999999999999999", 0, LONG_MAX, &l));
    cr_assert_eq(l, 42);
    double d = 0;
    cr_assert(perf_parse_double("0.5", 0.1, 3600, &d));
    cr_assert_float_eq(d, 0.5, 1e-12);
    cr_assert_not(perf_parse_double("nan", 0, 1, &d));
    cr_assert_not(perf_parse_double("0.05", 0.1, 3600, &d));
    cr_assert_not(perf_parse_double("1s", 0, 10, &d));
}

Test(bench, environ_with_replaces_and_appends) {
    setenv("DS_BENCH_TEST_A", "old", 1);
    setenv("DS_BENCH_TEST_AB", "keep", 1);
    const char *mine[] = {"DS_BENCH_TEST_A=new", "DS_BENCH_TEST_C=c"};
    char **envp = perf_environ_with(mine, 2);
    size_t n = 0, a = 0, ab = 0;
    while (envp[n]) {
        if (strncmp(envp[n], "DS_BENCH_TEST_A=", 16) == 0) a++;
        if (strcmp(envp[n], "DS_BENCH_TEST_AB=keep") == 0) ab++;
        n++;
    }
    size_t ne = 0;
    while (environ[ne]) ne++;
    cr_assert_eq(n, ne - 1 + 2);
    cr_assert_eq(a, 1);
    cr_assert_eq(ab, 1);
    cr_assert_str_eq(envp[n - 2], "DS_BENCH_TEST_A=new");
    cr_assert_str_eq(envp[n - 1], "DS_BENCH_TEST_C=c");
    free(envp);
}

Test(bench, run_cmd_last_line_and_work_dir) {
    char dir[PATH_MAX], err[512];
    bool made = false;
    cr_assert_eq(perf_work_dir(NULL, "ds-test-bench", dir, sizeof dir, &made, err, sizeof err), 0, "%s", err);
    cr_assert(made);
    cr_assert(strncmp(dir, "/tmp/ds-test-bench-", 19) == 0, "%s", dir);
    /* An existing directory is fine when given. */
    char again[PATH_MAX];
    cr_assert_eq(perf_work_dir(dir, "x", again, sizeof again, &made, err, sizeof err), 0);
    cr_assert_not(made);
    cr_assert_str_eq(again, dir);
    char bad[64];
    cr_assert_eq(perf_work_dir("/nonexistent/x", "x", bad, sizeof bad, &made, err, sizeof err), -1);
    cr_assert(strstr(err, "cannot create"), "%s", err);

    char out[PATH_MAX + 16], errp[PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(errp, sizeof errp, "%s/err", dir);
    char *argv[] = {"/bin/sh", "-c", "printf 'first\\nlast one\\n\\n'; echo oops >&2; exit 3", NULL};
    cr_assert_eq(perf_run_cmd(argv, out, errp, err, sizeof err), 3);
    cr_assert_str_eq(err, "");
    char line[8];
    perf_last_line(out, line, sizeof line);
    cr_assert_str_eq(line, "last on", "cut to the buffer");
    perf_last_line(errp, line, sizeof line);
    cr_assert_str_eq(line, "oops");
    perf_last_line("/nonexistent", line, sizeof line);
    cr_assert_str_eq(line, "");
    char *nope[] = {"/nonexistent/prog", NULL};
    cr_assert_eq(perf_run_cmd(nope, NULL, NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "could not run /nonexistent/prog"), "%s", err);
    unlink(out);
    unlink(errp);
    cr_assert_eq(rmdir(dir), 0);

    char self[PATH_MAX];
    cr_assert_eq(perf_self_dir(self, sizeof self), 0);
    cr_assert(strstr(self, "/tests"), "%s", self);
}

static void *count_up(void *arg) {
    __atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
    return NULL;
}

Test(bench, run_threads_joins_every_thread) {
    int n = 0;
    perf_run_threads(5, count_up, &n);
    cr_assert_eq(n, 5);
}

Test(bench, step_by_is_a_factor_or_an_increment) {
    double factor = 0, add = 0;
    cr_assert(perf_parse_step_by("1.5", &factor, &add));
    cr_assert_float_eq(factor, 1.5, 1e-9);
    cr_assert_float_eq(add, 0, 1e-9);
    cr_assert_float_eq(perf_step_next(1000, factor, add), 1500, 1e-9);
    cr_assert(perf_parse_step_by("+250", &factor, &add));
    cr_assert_float_eq(factor, 1, 1e-9);
    cr_assert_float_eq(add, 250, 1e-9);
    cr_assert_float_eq(perf_step_next(1000, factor, add), 1250, 1e-9);
    cr_assert_not(perf_parse_step_by("1", &factor, &add));
    cr_assert_not(perf_parse_step_by("+0", &factor, &add));
    cr_assert_not(perf_parse_step_by("x2", &factor, &add));
    cr_assert_not(perf_parse_step_by(NULL, &factor, &add));
}

/* A step at rate r with every change scored, p99 p99 ms, and the backlog
 * going from b0 to b1. */
static perf_step_t step(double r, double p99, long b0, long b1) {
    return (perf_step_t){.rate = r,
                         .achieved = r,
                         .sent = (long)r * 60,
                         .done = (long)r * 60,
                         .p50_ms = p99 / 2,
                         .p99_ms = p99,
                         .backlog_start = b0,
                         .backlog_end = b1};
}

Test(bench, steps_stop_at_the_first_step_that_is_not_sustained) {
    perf_step_t s[] = {step(500, 200, 80, 90), step(1000, 400, 300, 700), step(2000, 999, 500, 400),
                       step(4000, 1000, 900, 900), step(8000, 300, 0, 0)};
    /* 1000/s: the backlog grew by 400, under half a second of arrivals (500). */
    cr_assert_eq(perf_steps_highest(s, 5), 2);
    cr_assert_eq(perf_steps_highest(s, 2), 1);
    cr_assert_eq(perf_steps_highest(s, 0), -1);

    perf_step_t grew[] = {step(500, 200, 0, 10), step(1000, 300, 100, 601)};
    cr_assert(perf_step_backlog_grew(&grew[1]));
    cr_assert_eq(perf_steps_highest(grew, 2), 0);

    perf_step_t lost = step(500, 200, 0, 0);
    lost.done--;
    cr_assert_eq(perf_steps_highest(&lost, 1), -1);
    perf_step_t refused = step(500, 200, 0, 0);
    refused.errors = 1;
    cr_assert_not(perf_step_sustained(&refused));
    perf_step_t slow_sender = step(500, 200, 0, 0);
    slow_sender.achieved = 440;
    cr_assert_not(perf_step_sustained(&slow_sender));
}

/* The memory figures come from /proc: this process's resident size grows
 * by the 32 MB it touches, and its peak is never under it; a process that
 * does not exist gives -1 and NaN. */
Test(bench, proc_memory_reads_the_resident_size_and_its_peak) {
    double rss0, peak0, rss1, peak1;
    cr_assert_eq(perf_proc_memory(getpid(), &rss0, &peak0), 0);
    cr_expect_gt(rss0, 0.0);
    cr_expect_geq(peak0, rss0);
    size_t n = 32u << 20;
    char *block = malloc(n);
    cr_assert_not_null(block);
    memset(block, 1, n);
    cr_assert_eq(perf_proc_memory(getpid(), &rss1, &peak1), 0);
    cr_expect_geq(rss1, rss0 + 31.0, "%.1f MB resident after %.1f MB + 32", rss1, rss0);
    cr_expect_geq(peak1, rss1);
    free(block);
    cr_expect_eq(perf_proc_memory(999999999, &rss1, &peak1), -1);
    cr_expect(isnan(rss1) && isnan(peak1));
}

/* The CPU line finds each part by the port it listens on: this process
 * while it listens on an ephemeral port, nobody for the port of a
 * connection or once the socket is closed. */
Test(bench, port_pid_finds_the_process_listening_on_a_port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    int port = ntohs(a.sin_port);
    cr_expect_eq(perf_port_pid(port), -1, "a bound socket that does not listen is nobody's server");
    cr_assert_eq(listen(fd, 1), 0);
    cr_expect_eq(perf_port_pid(port), getpid());
    /* A connection's own port is not a server's. */
    int client = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in c = {0};
    socklen_t clen = sizeof c;
    cr_assert_eq(connect(client, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(client, (struct sockaddr *)&c, &clen), 0);
    cr_expect_eq(perf_port_pid(ntohs(c.sin_port)), -1);
    close(client);
    close(fd);
    cr_expect_eq(perf_port_pid(port), -1);
}

/* Burns CPU until this process has used at least s seconds of it. */
static void burn_cpu(double s) {
    volatile unsigned long x = 0;
    while (perf_self_cpu_s() < s)
        for (int i = 0; i < 100000; i++) x += (unsigned long)i;
}

/* Postgres's CPU is its postmaster's tree: the CPU of a child that ran and
 * was reaped counts in the parent's tree, not in the parent's own; a
 * process that has gone gives NaN. */
Test(bench, tree_cpu_counts_the_reaped_children) {
    double own0 = perf_proc_cpu_s(getpid()), tree0 = perf_tree_cpu_s(getpid());
    cr_assert(!isnan(own0) && !isnan(tree0));
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        burn_cpu(0.3);
        _exit(0);
    }
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    double own1 = perf_proc_cpu_s(getpid()), tree1 = perf_tree_cpu_s(getpid());
    /* /proc counts in clock ticks (10 ms): each of the two readings may be
     * up to a tick short of the CPU getrusage saw in the child. */
    cr_expect_geq(tree1 - tree0, 0.25, "tree grew %.3f s", tree1 - tree0);
    cr_expect_lt(own1 - own0, 0.2, "own grew %.3f s", own1 - own0);
    cr_expect(isnan(perf_proc_cpu_s(child)));
}
