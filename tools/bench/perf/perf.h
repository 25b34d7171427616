/* What the benchmark programs (tools/bench/) share: a keep-alive HTTP
 * connection over ds_httpc, sums over a Prometheus page, percentiles and medians,
 * child processes, option and environment helpers. Measurement programs
 * only: nothing here is built into a service. */
#ifndef PERF_H
#define PERF_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "infra/httpc.h"

/* ---- HTTP (http.c) ---------------------------------------------------------- */

/* One keep-alive connection to host:port, over ds_httpc (infra/httpc.h);
 * {.fd = -1} with host and port set is closed. Not for concurrent use: one
 * per thread. */
typedef struct {
    int fd;         /* the open connection's socket; -1 when there is none */
    char host[128]; /* IPv4 address as text */
    int port;
    const char *body; /* the last response's body, inside resp */
    size_t body_len;
    int retry_after; /* seconds, from the last response; 0 if none */
    /* Kept between requests: the client, the response, the URL and the
     * Authorization line. */
    ds_httpc_t *http;
    ds_httpc_resp_t resp;
    ds_sb_t url, auth;
} perf_conn_t;

/* Sends one request (a POST of body as JSON with the bearer token auth, or
 * a GET when body is NULL), opening the connection if needed, and reads the
 * whole response. A send that fails on a reused connection is tried once
 * more on a new one. Returns the HTTP status, or -1 when the connection
 * failed. */
int perf_conn_request(perf_conn_t *c, const char *path, const char *auth, const char *body, size_t len);
/* Closes the connection and frees the client; c can be used again. */
void perf_conn_close(perf_conn_t *c);

/* Parses "http://HOST:PORT[/]" ("localhost" becomes 127.0.0.1). Returns 0,
 * or -1 for NULL or anything else. */
int perf_parse_url(const char *url, char *host, size_t hostsz, int *port);

/* Sums the samples of metric name (exact name, any labels) whose line
 * contains label (NULL: every sample) in a Prometheus text page. */
double perf_metric_sum(const char *page, size_t len, const char *name, const char *label);

/* Sum of metric name (e.g. dealscore_worker_burst_batches_total) over the
 * workers at urls (base URLs, NULL entries skipped) that answer GET
 * /metrics. */
double perf_workers_metric(const char *const *urls, size_t n, const char *name);

/* Sum of dealscore_consumer_lag over the workers at urls, as above. */
double perf_workers_lag(const char *const *urls, size_t n);

/* Waits until the stack is quiet: the workers at urls (NULL entries
 * skipped) report no consumer lag and also(ctx) (NULL: no other condition)
 * holds, twice in a row one second apart (the workers refresh their lag
 * gauge once a second), or timeout_s has passed. True when quiet; *lag (if
 * not NULL) gets the last lag read. */
bool perf_wait_quiet(const char *const *urls, size_t n, double timeout_s, bool (*also)(void *ctx), void *ctx,
                     double *lag);

/* ---- figures (bench_stats.c) ------------------------------------------------- */

/* qsort comparators. */
int perf_cmp_i64(const void *a, const void *b);
int perf_cmp_dbl(const void *a, const void *b);

/* Nearest-rank percentile p (0-100) of n sorted microsecond values, in
 * milliseconds; NaN when n is 0. */
double perf_pct_ms(const int64_t *sorted_us, size_t n, double p);

/* Median of n values (v is left as it is); NaN when n is 0. */
double perf_median(const double *v, size_t n);

/* The three load averages as "0.52 0.58 0.59", or "unknown". */
void perf_loadavg(char *out, size_t n);

/* ---- processes (bench_proc.c) ------------------------------------------------ */

/* Starts argv[0] (a path) with envp, stdout and stderr into the files
 * out_path and err_path (created or truncated; NULL: inherited). Returns the
 * pid, or -1 with errstr set (it is "" otherwise). */
pid_t perf_spawn(char *const argv[], char *const envp[], const char *out_path, const char *err_path,
                 char *errstr, size_t errstr_size);
/* Waits for pid; returns its exit status, or -1 if it was killed. */
int perf_wait_exit(pid_t pid);
/* perf_spawn with this process's environment, then perf_wait_exit:
 * -1 with errstr set when it could not start, -1 with errstr "" when it
 * was killed. */
int perf_run_cmd(char *const argv[], const char *out_path, const char *err_path, char *errstr,
                 size_t errstr_size);

/* Runs fn(arg) on n threads and joins them. */
void perf_run_threads(int n, void *(*fn)(void *), void *arg);

/* The last non-empty line of a file (without its newline, cut to n - 1
 * bytes), or "". */
void perf_last_line(const char *path, char *out, size_t n);

/* Memory of process pid from /proc/<pid>/status, in MB: VmRSS (resident
 * now) and VmHWM (the peak resident since it started). Returns 0, or -1
 * (both NaN) when the process or the lines are missing. */
int perf_proc_memory(pid_t pid, double *rss_mb, double *peak_mb);

/* The directory of this program's executable. Returns 0, or -1. */
int perf_self_dir(char *out, size_t n);

/* Makes the work directory: given (which may exist already) or, when given
 * is NULL, a new "/tmp/<name>-XXXXXX" (*made set). Returns 0, or -1 with
 * errstr set. */
int perf_work_dir(const char *given, const char *name, char *out, size_t n, bool *made, char *errstr,
                  size_t errstr_size);

/* ---- CPU of the stack's processes (cpu.c) ------------------------------------ */

/* The process on this machine that listens on TCP port (IPv4 or IPv6),
 * found through /proc/net/tcp and each process's open sockets; -1 when
 * none is found (not listening, another machine, another user's process). */
pid_t perf_port_pid(int port);
/* utime + stime of process pid in seconds; NaN once it has gone. */
double perf_proc_cpu_s(pid_t pid);
/* A server and its children, as Postgres's: pid's own CPU and that of its
 * reaped children (cutime, cstime) plus that of its live children. */
double perf_tree_cpu_s(pid_t pid);
/* This process's CPU (getrusage). */
double perf_self_cpu_s(void);

#define PERF_CPU_MAX_PARTS 8

typedef struct {
    char name[32];
    pid_t pid;
    bool tree; /* count its children too */
    double start_s;
} perf_cpu_part_t;

/* CPU per change of the stack's parts that run on this machine, each
 * found by the port it listens on, and of this program. */
typedef struct {
    perf_cpu_part_t part[PERF_CPU_MAX_PARTS];
    size_t n;
    double self_start_s;
} perf_cpu_t;

/* Adds the process listening on port as part name (tree: with its
 * children); nothing when no process is found, the port is 0 or the
 * process is in the account already. */
void perf_cpu_add(perf_cpu_t *a, const char *name, int port, bool tree);
/* perf_cpu_add for the port of a base URL (NULL or unparsable: nothing). */
void perf_cpu_add_url(perf_cpu_t *a, const char *name, const char *url);
/* Notes every part's CPU (and this program's) now. */
void perf_cpu_start(perf_cpu_t *a);
/* Prints one line: each part's CPU since perf_cpu_start in µs per change,
 * this program's and the total. */
void perf_cpu_print(const perf_cpu_t *a, FILE *out, double changes);

/* ---- options and environment (bench_opts.c) ---------------------------------- */

/* Parses argv's long options (opts, getopt_long with no short ones): --help
 * ('h') prints usage(stdout); every other option goes to apply(ctx, c, optarg
 * in the global), which returns NULL or a complaint about the value. Returns
 * -1 when every option was taken, else the exit status: 0 after --help, 2
 * after a line on stderr, starting "prog: ", for a missing value, an unknown
 * option, a complaint or a stray argument. */
int perf_parse_options(int argc, char **argv, const struct option *opts, const char *prog,
                       void (*usage)(FILE *out), const char *(*apply)(void *ctx, int c), void *ctx);

/* A number as strtod reads it, in [lo, hi], into *out; false, *out
 * untouched, for anything else (whole numbers: ds_parse_long, common.h). */
bool perf_parse_double(const char *s, double lo, double hi, double *out);

/* This process's environment without the variables that assignments
 * ("NAME=value") name, followed by assignments. The caller frees the array
 * with free(); the strings stay borrowed from environ and assignments. */
char **perf_environ_with(const char *const *assignments, size_t n);

/* ---- step mode of a sustained-throughput run (steps.c) ------------------------ */

/* A step is sustained when its p99 stays under this, */
#define PERF_STEP_MAX_P99_MS 1000.0
/* and its backlog (changes accepted but not yet scored) grows by at most
 * this many seconds of arrivals between the step's start and end. */
#define PERF_STEP_BACKLOG_SLACK_S 0.5

/* One step's figures. */
typedef struct {
    double rate;     /* changes/s asked */
    double achieved; /* changes/s sent */
    long sent, done, errors;
    double p50_ms, p99_ms; /* end to end, over the changes done */
    long backlog_start, backlog_end;
} perf_step_t;

/* "F" (a factor, 1.01-1000) or "+N" (an increment, >= 1) into *factor and
 * *add (the other one 1 or 0). False, nothing set, for anything else. */
bool perf_parse_step_by(const char *s, double *factor, double *add);
/* The rate of the step after one at rate. */
double perf_step_next(double rate, double factor, double add);
/* True when the step's backlog grew by more than PERF_STEP_BACKLOG_SLACK_S
 * seconds of its rate (at least one change). */
bool perf_step_backlog_grew(const perf_step_t *s);
/* True when every change was sent at 90 % of the rate or more, accepted
 * and scored, with p99 under PERF_STEP_MAX_P99_MS and no growing backlog. */
bool perf_step_sustained(const perf_step_t *s);
/* The index of the last step of the sustained run that starts the list
 * (the run stops at the first step that is not), or -1 when the first one
 * is not. */
long perf_steps_highest(const perf_step_t *steps, size_t n);

#endif
