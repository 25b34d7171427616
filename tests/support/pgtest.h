/* Helpers for the Postgres integration tests (test_schema, test_rls,
 * test_realtime): a fresh database per test, sql/migrate run as a child
 * process with a deadline, and query helpers that fail the test with the
 * server's message. Header-only: every function is static inline, because
 * each test executable is built from one .c file.
 *
 * The tests read DEALSCORE_DATABASE_URL, a superuser URL of the server to use
 * (for example postgresql://postgres@127.0.0.1:5432/postgres); each test
 * creates its own database ds_test_<random> there and drops it afterwards. */
#ifndef DS_TEST_PGTEST_H
#define DS_TEST_PGTEST_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <libpq-fe.h>

/* The old-style assertion API has no cr_fatal (only criterion/new/assert.h
 * does); cr_assert_fail is the same thing: fail and abort the test. */
#ifndef cr_fatal
#define cr_fatal(...) cr_assert_fail(__VA_ARGS__)
#endif

#define PGT_N(a) (sizeof(a) / sizeof((a)[0]))

/* Default deadline for a sql/migrate run. */
#define PGT_MIGRATE_TIMEOUT_MS 120000

typedef struct {
    char name[64];  /* ds_test_<hex> */
    char *conninfo; /* key=value conninfo of the test database */
    bool created;
} pgt_db_t;

static inline long long pgt_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline char *pgt_vfmt(const char *fmt, va_list ap) {
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) abort();
    return s;
}

/* printf into a new string; the caller frees it. */
static inline __attribute__((format(printf, 1, 2))) char *pgt_fmt(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = pgt_vfmt(fmt, ap);
    va_end(ap);
    return s;
}

/* The superuser URL from DEALSCORE_DATABASE_URL; fails the test if unset. */
static inline const char *pgt_admin_url(void) {
    const char *url = getenv("DEALSCORE_DATABASE_URL");
    if (!url || !*url)
        cr_fatal("DEALSCORE_DATABASE_URL is not set: the integration tests need a superuser "
                 "url of a postgres server (tests/run sets it)");
    return url;
}

/* Appends key='value' to a conninfo string, quoting as libpq wants. */
static inline void pgt_conninfo_append(char **ci, const char *key, const char *val) {
    size_t n = strlen(*ci), vl = strlen(val);
    char *out = malloc(n + strlen(key) + 2 * vl + 8);
    if (!out) abort();
    char *p = out + sprintf(out, "%s%s%s='", *ci, n ? " " : "", key);
    for (const char *v = val; *v; v++) {
        if (*v == '\'' || *v == '\\') *p++ = '\\';
        *p++ = *v;
    }
    *p++ = '\'';
    *p = '\0';
    free(*ci);
    *ci = out;
}

/* url (a URI or key=value string) with its database replaced by dbname, as a
 * new key=value conninfo string the caller frees. */
static inline char *pgt_conninfo_for(const char *url, const char *dbname) {
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &err);
    if (!opts) {
        char *msg = pgt_fmt("%s", err ? err : "out of memory");
        PQfreemem(err);
        cr_fatal("cannot parse DEALSCORE_DATABASE_URL: %s", msg);
    }
    char *ci = calloc(1, 1);
    if (!ci) abort();
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || strcmp(o->keyword, "dbname") == 0) continue;
        pgt_conninfo_append(&ci, o->keyword, o->val);
    }
    pgt_conninfo_append(&ci, "dbname", dbname);
    PQconninfoFree(opts);
    return ci;
}

/* Connects or fails the test. The caller PQfinish()es the connection. */
static inline PGconn *pgt_connect(const char *conninfo) {
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        char *msg = pgt_fmt("%s", PQerrorMessage(c));
        PQfinish(c);
        cr_fatal("could not connect to postgres: %s", msg);
    }
    PQsetNoticeProcessor(c, NULL, NULL);
    return c;
}

static inline PGconn *pgt_connect_db(const pgt_db_t *db) { return pgt_connect(db->conninfo); }

/* Runs sql (one or more statements); fails the test unless it succeeds.
 * Returns the last result; the caller PQclear()s it. */
static inline PGresult *pgt_query(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char *msg = pgt_fmt("%s", PQresultErrorMessage(r));
        PQclear(r);
        cr_fatal("query failed: %s\nquery: %.400s", msg, sql);
    }
    return r;
}

static inline void pgt_exec(PGconn *c, const char *sql) { PQclear(pgt_query(c, sql)); }

static inline __attribute__((format(printf, 2, 3))) void pgt_execf(PGconn *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *sql = pgt_vfmt(fmt, ap);
    va_end(ap);
    pgt_exec(c, sql);
    free(sql);
}

/* Runs a query returning one value; returns it as a new string (NULL for SQL
 * NULL). Fails the test on error or when there is not exactly one value. */
static inline __attribute__((format(printf, 2, 3))) char *pgt_valuef(PGconn *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *sql = pgt_vfmt(fmt, ap);
    va_end(ap);
    PGresult *r = pgt_query(c, sql);
    if (PQntuples(r) != 1 || PQnfields(r) != 1) {
        int rows = PQntuples(r);
        PQclear(r);
        cr_fatal("expected one value, got %d rows from: %.400s", rows, sql);
    }
    char *v = PQgetisnull(r, 0, 0) ? NULL : pgt_fmt("%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    free(sql);
    return v;
}

/* Like pgt_valuef, for an integer value (SQL NULL fails the test). */
static inline __attribute__((format(printf, 2, 3))) long long pgt_longf(PGconn *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *sql = pgt_vfmt(fmt, ap);
    va_end(ap);
    char *v = pgt_valuef(c, "%s", sql);
    if (!v) cr_fatal("expected a number, got null from: %.400s", sql);
    long long n = strtoll(v, NULL, 10);
    free(v);
    free(sql);
    return n;
}

/* Runs sql expecting it to fail; returns the SQLSTATE as a new string, or
 * NULL if the statement succeeded. */
static inline char *pgt_try(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    char *state = NULL;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        state = pgt_fmt("%s", s ? s : "?????");
    }
    PQclear(r);
    return state;
}

/* Creates a fresh database ds_test_<random> and fills in db. */
static inline void pgt_db_create(pgt_db_t *db) {
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) cr_fatal("getrandom failed");
    memset(db, 0, sizeof *db);
    snprintf(db->name, sizeof db->name, "ds_test_%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5]);
    PGconn *admin = pgt_connect(pgt_admin_url());
    pgt_execf(admin, "create database %s", db->name);
    PQfinish(admin);
    db->created = true;
    db->conninfo = pgt_conninfo_for(pgt_admin_url(), db->name);
}

/* Drops the database (forcing its sessions off). Safe to call twice and on a
 * database that was never created; reports but does not fail on error, since
 * it runs in fixtures' fini. */
static inline void pgt_db_drop(pgt_db_t *db) {
    if (db->created) {
        const char *url = getenv("DEALSCORE_DATABASE_URL");
        PGconn *admin = url ? PQconnectdb(url) : NULL;
        if (admin && PQstatus(admin) == CONNECTION_OK) {
            char *sql = pgt_fmt("drop database if exists %s with (force)", db->name);
            PGresult *r = PQexec(admin, sql);
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                fprintf(stderr, "could not drop test database %s: %s", db->name, PQresultErrorMessage(r));
            PQclear(r);
            free(sql);
        }
        PQfinish(admin);
        db->created = false;
    }
    free(db->conninfo);
    db->conninfo = NULL;
}

/* A child process whose stdout and stderr are captured through a pipe. */
typedef struct {
    pid_t pid;
    int fd;
    char *out;
    size_t len;
} pgt_proc_t;

/* Starts argv[0] with argv; env_unset lists variables removed in the child
 * (NULL-terminated, may be NULL). Fails the test if it cannot start. */
static inline void pgt_proc_start(pgt_proc_t *p, char *const argv[], const char *const *env_unset) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) cr_fatal("pipe failed: %s", strerror(errno));
    memset(p, 0, sizeof *p);
    p->pid = fork();
    if (p->pid < 0) cr_fatal("fork failed: %s", strerror(errno));
    if (p->pid == 0) {
        for (const char *const *e = env_unset; e && *e; e++) unsetenv(*e);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    p->fd = fds[0];
}

/* Collects the output until EOF and the exit status, within timeout_ms.
 * Returns the exit status (128+signal if killed); on timeout kills the child
 * and fails the test. p->out holds the output (NUL-terminated); free it
 * with pgt_proc_close. */
static inline int pgt_proc_wait(pgt_proc_t *p, int timeout_ms) {
    long long deadline = pgt_now_ms() + timeout_ms;
    size_t cap = 4096;
    p->out = malloc(cap);
    if (!p->out) abort();
    p->len = 0;
    for (;;) {
        long long left = deadline - pgt_now_ms();
        if (left <= 0) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            close(p->fd);
            p->out[p->len] = '\0';
            cr_fatal("child process did not finish within %d ms; output so far:\n%s", timeout_ms, p->out);
        }
        struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;
        if (cap - p->len < 1024) {
            cap *= 2;
            p->out = realloc(p->out, cap);
            if (!p->out) abort();
        }
        ssize_t got = read(p->fd, p->out + p->len, cap - p->len - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        p->len += (size_t)got;
    }
    p->out[p->len] = '\0';
    close(p->fd);
    p->fd = -1;
    int st = 0;
    if (waitpid(p->pid, &st, 0) != p->pid) cr_fatal("waitpid failed: %s", strerror(errno));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static inline void pgt_proc_close(pgt_proc_t *p) {
    free(p->out);
    p->out = NULL;
}

/* Starts sql/migrate on db with extra arguments (NULL-terminated list, may be
 * NULL), in the default shim mode (DEALSCORE_APPLY_SHIM and
 * DEALSCORE_MIGRATIONS_DIR are removed from its environment). */
static inline void pgt_migrate_start(pgt_proc_t *p, const pgt_db_t *db, const char *const *extra) {
    static const char *const unset[] = {"DEALSCORE_APPLY_SHIM", "DEALSCORE_MIGRATIONS_DIR", "PGOPTIONS",
                                        NULL};
    const char *argv[16];
    size_t n = 0;
    argv[n++] = DS_SOURCE_DIR "/sql/migrate";
    for (const char *const *e = extra; e && *e && n < 14; e++) argv[n++] = *e;
    argv[n++] = db->conninfo;
    argv[n] = NULL;
    pgt_proc_start(p, (char *const *)argv, unset);
}

/* Runs sql/migrate to completion; returns its exit status, output in p->out. */
static inline int pgt_migrate(pgt_proc_t *p, const pgt_db_t *db, const char *const *extra) {
    pgt_migrate_start(p, db, extra);
    return pgt_proc_wait(p, PGT_MIGRATE_TIMEOUT_MS);
}

/* Migrates db (shim included) or fails the test with migrate's output. */
static inline void pgt_migrate_ok(const pgt_db_t *db) {
    pgt_proc_t p;
    int rc = pgt_migrate(&p, db, NULL);
    if (rc != 0) {
        char *out = pgt_fmt("%s", p.out);
        pgt_proc_close(&p);
        cr_fatal("sql/migrate exited with %d:\n%s", rc, out);
    }
    pgt_proc_close(&p);
}

/* Counts the lines of text that start with prefix. */
static inline int pgt_count_lines(const char *text, const char *prefix) {
    int n = 0;
    size_t pl = strlen(prefix);
    for (const char *l = text; l && *l;) {
        if (strncmp(l, prefix, pl) == 0) n++;
        const char *nl = strchr(l, '\n');
        if (!nl) break;
        l = nl + 1;
    }
    return n;
}

/* True if text has a line equal to line. */
static inline bool pgt_has_line(const char *text, const char *line) {
    size_t ll = strlen(line);
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len == ll && strncmp(l, line, ll) == 0) return true;
        if (!nl) break;
        l = nl + 1;
    }
    return false;
}

/* Waits up to timeout_ms for a notification on c; returns it (PQfreemem it)
 * or NULL at the deadline. */
static inline PGnotify *pgt_wait_notify(PGconn *c, int timeout_ms) {
    long long deadline = pgt_now_ms() + timeout_ms;
    for (;;) {
        if (!PQconsumeInput(c)) cr_fatal("connection lost: %s", PQerrorMessage(c));
        PGnotify *n = PQnotifies(c);
        if (n) return n;
        long long left = deadline - pgt_now_ms();
        if (left <= 0) return NULL;
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        poll(&pfd, 1, (int)left);
    }
}

/* ---- the work of a session's statements ---------------------------------
 *
 * pgt_plans_watch makes the server send c, as a notice, the executed plan of
 * every statement c runs from then on (auto_explain, JSON, with row
 * counts), under generic plans as a long-lived worker session gets them.
 * pgt_plans_join_filter_max then gives the largest "Rows Removed by Join
 * Filter" of any node: the row pairs a join compared and threw away. A
 * batch joined to itself through a nested loop makes that grow with the
 * square of the batch; hashed joins keep it near zero. */
typedef struct {
    char *text; /* the notices, concatenated */
    size_t len;
} pgt_plans_t;

static inline void pgt_plans_keep(void *arg, const PGresult *r) {
    pgt_plans_t *p = arg;
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!msg) return;
    size_t n = strlen(msg);
    p->text = realloc(p->text, p->len + n + 2);
    memcpy(p->text + p->len, msg, n);
    p->len += n;
    p->text[p->len++] = '\n';
    p->text[p->len] = '\0';
}

static inline void pgt_plans_watch(PGconn *c, pgt_plans_t *p) {
    memset(p, 0, sizeof *p);
    pgt_exec(c, "load 'auto_explain'");
    pgt_exec(c, "set auto_explain.log_min_duration = 0");
    pgt_exec(c, "set auto_explain.log_analyze = on");
    pgt_exec(c, "set auto_explain.log_timing = off");
    pgt_exec(c, "set auto_explain.log_format = 'json'");
    pgt_exec(c, "set auto_explain.log_level = 'notice'");
    pgt_exec(c, "set plan_cache_mode = force_generic_plan");
    PQsetNoticeReceiver(c, pgt_plans_keep, p);
}

static inline long long pgt_plans_join_filter_max(const pgt_plans_t *p) {
    static const char key[] = "\"Rows Removed by Join Filter\":";
    long long max = 0;
    for (const char *s = p->text; s && (s = strstr(s, key)); s += sizeof key - 1) {
        long long v = strtoll(s + sizeof key - 1, NULL, 10);
        if (v > max) max = v;
    }
    return max;
}

static inline int pgt_plans_count(const pgt_plans_t *p) {
    int n = 0;
    for (const char *s = p->text; s && (s = strstr(s, "\"Plan\":")); s++) n++;
    return n;
}

#endif
