/* The libpq wrapper (pg.h): connecting with retry, error classes, sessions
 * that re-prepare after a reconnect, transactions with retry, pipelined
 * batches, array literals and notifications. */
#include "infra/pg.h"
#include "base/log.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_APP_NAME "dealscore"
#define DEFAULT_TRY_MS 10000

/* ---- small helpers ------------------------------------------------------ */

static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...) {
    if (!errstr || errstr_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* Turns a multi-line libpq message into one line: newlines and tabs become
 * spaces, runs of spaces collapse, and trailing spaces go. */
static void one_line(char *s) {
    char *w = s;
    bool space = false;
    for (char *r = s; *r; r++) {
        char c = *r;
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
        if (c == ' ') {
            if (space || w == s) continue;
            space = true;
        } else {
            space = false;
        }
        *w++ = c;
    }
    while (w > s && w[-1] == ' ') w--;
    *w = '\0';
}

/* Replaces every occurrence of secret in s (of size cap) with "***". */
static void mask_secret(char *s, size_t cap, const char *secret) {
    size_t sl = secret ? strlen(secret) : 0;
    if (sl == 0) return;
    char *p;
    while ((p = strstr(s, secret)) != NULL) {
        size_t tail = strlen(p + sl);
        if (sl >= 3) {
            memcpy(p, "***", 3);
            memmove(p + 3, p + sl, tail + 1);
        } else {
            /* A short secret grows to "***": make room, truncating at cap. */
            size_t off = (size_t)(p - s);
            if (off + 3 >= cap) {
                *p = '\0';
                return;
            }
            size_t keep = tail;
            if (off + 3 + keep + 1 > cap) keep = cap - off - 3 - 1;
            memmove(p + 3, p + sl, keep);
            p[3 + keep] = '\0';
            memcpy(p, "***", 3);
        }
    }
}

/* Finds the password in a URI ("postgresql://user:pw@host") or a key=value
 * string ("password=pw", "password = 'p w'") as written, so it can be masked
 * in messages about a string that does not parse. Returns a new string or
 * NULL. */
static char *raw_password(const char *url) {
    if (!url) return NULL;
    const char *sep = strstr(url, "://");
    if (sep && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)) {
        const char *start = sep + 3;
        const char *p = start;
        while (*p && *p != '@' && *p != '/') p++;
        if (*p != '@') return NULL;
        const char *colon = memchr(start, ':', (size_t)(p - start));
        if (!colon || colon + 1 == p) return NULL;
        return ds_strndup(colon + 1, (size_t)(p - colon - 1));
    }
    const char *p = url;
    while ((p = strstr(p, "password")) != NULL) {
        const char *q = p + 8;
        while (*q == ' ' || *q == '\t') q++;
        if (*q != '=') {
            p += 8;
            continue;
        }
        q++;
        while (*q == ' ' || *q == '\t') q++;
        const char *end;
        if (*q == '\'') {
            q++;
            end = q;
            while (*end && *end != '\'') {
                if (*end == '\\' && end[1]) end++;
                end++;
            }
        } else {
            end = q;
            while (*end && *end != ' ' && *end != '\t') end++;
        }
        if (end == q) return NULL;
        return ds_strndup(q, (size_t)(end - q));
    }
    return NULL;
}

static const char *opt_val(const PQconninfoOption *opts, const char *key) {
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, key) == 0) return o->val && *o->val ? o->val : NULL;
    return NULL;
}

static PQconninfoOption *parse_url(const char *url, char *errstr, size_t errstr_size) {
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url ? url : "", &msg);
    if (opts) return opts;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", msg ? msg : "out of memory");
    if (msg) PQfreemem(msg);
    one_line(buf);
    char *pw = raw_password(url);
    mask_secret(buf, sizeof buf, pw);
    free(pw);
    seterr(errstr, errstr_size, "invalid database url: %s", buf);
    return NULL;
}

int ds_pg_url_check(const char *url, char *errstr, size_t errstr_size) {
    if (!url) {
        seterr(errstr, errstr_size, "invalid database url: none given");
        return DS_EINVAL;
    }
    PQconninfoOption *opts = parse_url(url, errstr, errstr_size);
    if (!opts) return DS_EINVAL;
    PQconninfoFree(opts);
    return DS_OK;
}

char *ds_pg_url_describe(const char *url) {
    PQconninfoOption *opts = parse_url(url, NULL, 0);
    if (!opts) return ds_strdup("(invalid database url)");
    const char *user = opt_val(opts, "user");
    const char *host = opt_val(opts, "host");
    const char *port = opt_val(opts, "port");
    const char *db = opt_val(opts, "dbname");
    if (!host) host = opt_val(opts, "hostaddr");
    char *s = ds_asprintf("%s%s%s%s%s%s%s", user ? user : "", user ? "@" : "", host ? host : "(default host)",
                          port ? ":" : "", port ? port : "", db ? "/" : "", db ? db : "");
    PQconninfoFree(opts);
    return s;
}

/* Appends key='value' (quoted for conninfo) to *buf. */
static void append_kv(char **buf, size_t *len, size_t *cap, const char *key, const char *val) {
    size_t need = strlen(key) + 2 * strlen(val) + 5;
    if (*len + need + 1 > *cap) {
        while (*len + need + 1 > *cap) *cap = *cap ? *cap * 2 : 256;
        *buf = ds_realloc(*buf, *cap);
    }
    char *w = *buf + *len;
    if (*len) *w++ = ' ';
    w += sprintf(w, "%s='", key);
    for (const char *r = val; *r; r++) {
        if (*r == '\'' || *r == '\\') *w++ = '\\';
        *w++ = *r;
    }
    *w++ = '\'';
    *w = '\0';
    *len = (size_t)(w - *buf);
}

char *ds_pg_url_with(const char *url, const char *const *keys, const char *const *values, size_t n,
                     char *errstr, size_t errstr_size) {
    PQconninfoOption *opts = parse_url(url, errstr, errstr_size);
    if (!opts) return NULL;
    size_t len = 0, cap = 256;
    char *buf = ds_malloc(cap);
    buf[0] = '\0';
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        const char *val = o->val;
        for (size_t i = 0; i < n; i++)
            if (strcmp(keys[i], o->keyword) == 0) val = values[i];
        if (val) append_kv(&buf, &len, &cap, o->keyword, val);
    }
    /* Keys libpq does not know are added as given, so the next parse
     * reports them. */
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (const PQconninfoOption *o = opts; o->keyword; o++)
            if (strcmp(keys[i], o->keyword) == 0) known = true;
        if (!known && values[i]) append_kv(&buf, &len, &cap, keys[i], values[i]);
    }
    PQconninfoFree(opts);
    return buf;
}

/* ---- backoff ------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int ds_pg_backoff_ms(int attempt, uint64_t *seed) {
    int d = DS_PG_BACKOFF_MAX_MS;
    if (attempt < 0) attempt = 0;
    if (attempt < 16) {
        long v = (long)DS_PG_BACKOFF_BASE_MS << attempt;
        if (v < DS_PG_BACKOFF_MAX_MS) d = (int)v;
    }
    int half = d / 2;
    return half + (int)(splitmix64(seed) % (uint64_t)(d - half + 1));
}

static uint64_t fresh_seed(const void *salt) {
    return (uint64_t)ds_mono_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)salt;
}

/* Waits ms milliseconds, looking at *stop every 20 ms. Returns 0, or
 * DS_ESHUTDOWN as soon as *stop is set. */
static int wait_ms(int ms, const volatile int *stop) {
    int64_t end = ds_mono_us() + (int64_t)ms * 1000;
    for (;;) {
        if (stop && *stop) return DS_ESHUTDOWN;
        int64_t left = end - ds_mono_us();
        if (left <= 0) return DS_OK;
        if (left > 20000) left = 20000;
        struct timespec ts = {0, (long)left * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- connecting --------------------------------------------------------- */

/* Routes server notices and warnings through ds_log instead of libpq's
 * default, which prints to stderr and would break the JSON lines. */
static void notice_receiver(void *arg, const PGresult *res) {
    (void)arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    char buf[512];
    ds_pg_error_text(res, NULL, buf, sizeof buf);
    if (sev && strcmp(sev, "WARNING") == 0)
        ds_warn("postgres warning: %s", buf);
    else
        ds_debug("postgres %s: %s", sev ? sev : "notice", buf);
}

/* One connection try with libpq's non-blocking API, so that *stop and the
 * deadline are honoured while the server does not answer (libpq ignores
 * connect_timeout in this mode). */
static int connect_once(PGconn **out, const char *const *kw, const char *const *vals, int64_t deadline_us,
                        const volatile int *stop, char *msg, size_t msg_size) {
    PGconn *conn = PQconnectStartParams(kw, vals, 1);
    if (!conn) ds_panic("out of memory starting a postgres connection");
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (PQstatus(conn) == CONNECTION_BAD) st = PGRES_POLLING_FAILED;
    for (;;) {
        if (st == PGRES_POLLING_OK && PQstatus(conn) == CONNECTION_OK) {
            PQsetNoticeReceiver(conn, notice_receiver, NULL);
            *out = conn;
            return DS_OK;
        }
        if (st == PGRES_POLLING_FAILED || st == PGRES_POLLING_OK) {
            snprintf(msg, msg_size, "%s", PQerrorMessage(conn));
            one_line(msg);
            if (!*msg) snprintf(msg, msg_size, "connection failed");
            PQfinish(conn);
            return DS_ERETRY;
        }
        if (stop && *stop) {
            snprintf(msg, msg_size, "stopped while connecting");
            PQfinish(conn);
            return DS_ESHUTDOWN;
        }
        int64_t left = deadline_us - ds_mono_us();
        if (left <= 0) {
            snprintf(msg, msg_size, "timeout expired");
            PQfinish(conn);
            return DS_ERETRY;
        }
        int sock = PQsocket(conn);
        if (sock < 0) {
            st = PQconnectPoll(conn);
            continue;
        }
        struct pollfd pfd = {sock, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int timeout = left > 100000 ? 100 : (int)((left + 999) / 1000);
        int n = poll(&pfd, 1, timeout);
        if (n < 0 && errno != EINTR) {
            snprintf(msg, msg_size, "poll: %s", strerror(errno));
            PQfinish(conn);
            return DS_ERETRY;
        }
        if (n > 0) st = PQconnectPoll(conn);
    }
}

int ds_pg_connect_app(PGconn **out, const char *url, const char *app_name, int max_wait_ms,
                      const volatile int *stop, char *errstr, size_t errstr_size) {
    *out = NULL;
    PQconninfoOption *opts = parse_url(url, errstr, errstr_size);
    if (!opts) return DS_EINVAL;
    int try_ms = DEFAULT_TRY_MS;
    const char *ct = opt_val(opts, "connect_timeout");
    if (ct && atoi(ct) > 0) try_ms = atoi(ct) * 1000;
    PQconninfoFree(opts);

    /* Settings before "dbname" are defaults: the expanded URL overrides
     * them. The keepalives find a dead peer within about a minute instead of
     * the kernel's two hours. */
    const char *kw[] = {"application_name", "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "dbname",          NULL};
    const char *vals[] = {app_name ? app_name : DEFAULT_APP_NAME, "30", "10", "3", url, NULL};

    int64_t start = ds_mono_us();
    int64_t deadline = start + (int64_t)max_wait_ms * 1000;
    uint64_t seed = fresh_seed(out);
    char msg[512] = "";
    char *desc = ds_pg_url_describe(url);
    int rc;
    for (int attempt = 0;; attempt++) {
        int64_t try_deadline = ds_mono_us() + (int64_t)try_ms * 1000;
        if (max_wait_ms > 0 && try_deadline > deadline) try_deadline = deadline;
        rc = connect_once(out, kw, vals, try_deadline, stop, msg, sizeof msg);
        if (rc == DS_OK) break;
        if (rc == DS_ESHUTDOWN) {
            seterr(errstr, errstr_size, "could not connect to postgres at %s: stopped", desc);
            break;
        }
        ds_warn("could not connect to postgres at %s (try %d): %s", desc, attempt + 1, msg);
        int delay = ds_pg_backoff_ms(attempt, &seed);
        if (max_wait_ms == 0 || (max_wait_ms > 0 && ds_mono_us() + (int64_t)delay * 1000 >= deadline)) {
            seterr(errstr, errstr_size, "could not connect to postgres at %s after %d tries: %s", desc,
                   attempt + 1, msg);
            rc = DS_ERETRY;
            break;
        }
        if (wait_ms(delay, stop) != DS_OK) {
            seterr(errstr, errstr_size, "could not connect to postgres at %s: stopped", desc);
            rc = DS_ESHUTDOWN;
            break;
        }
    }
    free(desc);
    return rc;
}

int ds_pg_connect(PGconn **out, const char *url, int max_wait_ms, const volatile int *stop, char *errstr,
                  size_t errstr_size) {
    return ds_pg_connect_app(out, url, NULL, max_wait_ms, stop, errstr, errstr_size);
}

/* ---- error classes ------------------------------------------------------ */

int ds_pg_classify_sqlstate(const char *s) {
    if (!s || strlen(s) != 5) return DS_EFATAL;
    if (s[0] == '0' && (s[1] == '0' || s[1] == '1' || s[1] == '2')) return DS_OK;
    static const char *retry_classes[] = {"08", "53", "58"};
    for (size_t i = 0; i < DS_ARRAY_SIZE(retry_classes); i++)
        if (strncmp(s, retry_classes[i], 2) == 0) return DS_ERETRY;
    static const char *retry_codes[] = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"};
    for (size_t i = 0; i < DS_ARRAY_SIZE(retry_codes); i++)
        if (strcmp(s, retry_codes[i]) == 0) return DS_ERETRY;
    return DS_EFATAL;
}

int ds_pg_classify(const PGresult *res, const PGconn *conn) {
    if (res) {
        switch (PQresultStatus(res)) {
        case PGRES_EMPTY_QUERY:
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_COPY_OUT:
        case PGRES_COPY_IN:
        case PGRES_COPY_BOTH:
        case PGRES_SINGLE_TUPLE:
        case PGRES_NONFATAL_ERROR:
        case PGRES_PIPELINE_SYNC: return DS_OK;
        default: break;
        }
    }
    if (conn && PQstatus(conn) != CONNECTION_OK) return DS_ERETRY;
    if (!res) return DS_ERETRY;
    switch (PQresultStatus(res)) {
    case PGRES_BAD_RESPONSE: return DS_ERETRY;
    case PGRES_PIPELINE_ABORTED: return DS_EFATAL;
    default: {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        return state ? ds_pg_classify_sqlstate(state) : DS_EFATAL;
    }
    }
}

char *ds_pg_error_text(const PGresult *res, const PGconn *conn, char *buf, size_t buf_size) {
    if (!buf || buf_size == 0) return buf;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg || !*msg) msg = res ? PQresultErrorMessage(res) : "";
    if ((!msg || !*msg) && conn) msg = PQerrorMessage(conn);
    if (!msg || !*msg) {
        if (res && PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
            msg = "skipped after an earlier error in the pipeline";
        else if (!res && !conn)
            msg = "no connection to postgres";
        else if (res && ds_pg_classify(res, NULL) == DS_OK)
            msg = "no error";
        else
            msg = "unknown error";
    }
    if (state && *state)
        snprintf(buf, buf_size, "%s (SQLSTATE %s)", msg, state);
    else
        snprintf(buf, buf_size, "%s", msg);
    one_line(buf);
    return buf;
}

int ds_pg_prepare(PGconn *conn, const char *name, const char *sql, int nparams, char *errstr,
                  size_t errstr_size) {
    PGresult *r = PQprepare(conn, name, sql, nparams < 0 ? 0 : nparams, NULL);
    int rc = ds_pg_classify(r, conn);
    if (rc != DS_OK) {
        char buf[512];
        seterr(errstr, errstr_size, "could not prepare statement %s: %s", name,
               ds_pg_error_text(r, conn, buf, sizeof buf));
    }
    PQclear(r);
    return rc;
}

/* ---- sessions ----------------------------------------------------------- */

typedef struct {
    char *name;
    char *sql;
    int nparams;
    bool prepared; /* on the current connection */
    bool on_use;   /* registered by ds_pg_prepared: prepared at its first use on a connection */
    uint64_t hash; /* of sql */
} stmt_t;

typedef struct {
    char *name;
    bool active; /* LISTEN done on the current connection */
} chan_t;

struct ds_pg_s {
    char *url;
    char *app_name;
    PGconn *conn;
    uint64_t generation;
    uint64_t seed;
    stmt_t *stmts;
    size_t nstmts, stmts_cap;
    chan_t *chans;
    size_t nchans, chans_cap;
    bool sent;        /* ds_pg_send_params sent a command whose result is unread */
    size_t nauto;     /* statements prepared on use registered */
    PGresult *failed; /* the error ds_pg_send_params met before sending, for ds_pg_send_wait */
};

int ds_pg_new(ds_pg_t **out, const char *url, const char *app_name, char *errstr, size_t errstr_size) {
    *out = NULL;
    int rc = ds_pg_url_check(url, errstr, errstr_size);
    if (rc != DS_OK) return rc;
    ds_pg_t *pg = ds_calloc(1, sizeof *pg);
    pg->url = ds_strdup(url);
    pg->app_name = ds_strdup(app_name ? app_name : DEFAULT_APP_NAME);
    pg->seed = fresh_seed(pg);
    *out = pg;
    return DS_OK;
}

void ds_pg_reset(ds_pg_t *pg) {
    if (!pg) return;
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    pg->sent = false;
    PQclear(pg->failed);
    pg->failed = NULL;
    for (size_t i = 0; i < pg->nstmts; i++) pg->stmts[i].prepared = false;
    for (size_t i = 0; i < pg->nchans; i++) pg->chans[i].active = false;
}

void ds_pg_destroy(ds_pg_t *pg) {
    if (!pg) return;
    ds_pg_reset(pg);
    for (size_t i = 0; i < pg->nstmts; i++) {
        free(pg->stmts[i].name);
        free(pg->stmts[i].sql);
    }
    free(pg->stmts);
    for (size_t i = 0; i < pg->nchans; i++) free(pg->chans[i].name);
    free(pg->chans);
    free(pg->url);
    free(pg->app_name);
    free(pg);
}

/* FNV-1a. */
static uint64_t text_hash(const char *s) {
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static stmt_t *find_stmt(const ds_pg_t *pg, const char *name) {
    for (size_t i = 0; i < pg->nstmts; i++)
        if (strcmp(pg->stmts[i].name, name) == 0) return &pg->stmts[i];
    return NULL;
}

int ds_pg_add_statement(ds_pg_t *pg, const char *name, const char *sql, int nparams) {
    if (!name || !*name || !sql) return DS_EINVAL;
    stmt_t *st = find_stmt(pg, name);
    if (st) return strcmp(st->sql, sql) == 0 && st->nparams == nparams ? DS_OK : DS_EINVAL;
    if (pg->nstmts == pg->stmts_cap) {
        pg->stmts_cap = pg->stmts_cap ? pg->stmts_cap * 2 : 8;
        pg->stmts = ds_realloc(pg->stmts, pg->stmts_cap * sizeof *pg->stmts);
    }
    pg->stmts[pg->nstmts++] =
        (stmt_t){.name = ds_strdup(name), .sql = ds_strdup(sql), .nparams = nparams, .hash = text_hash(sql)};
    return DS_OK;
}

/* Prepares st on the connection; true when it is prepared there. A
 * statement of that name already there (42P05: the caller prepared it by
 * hand) counts as prepared. Otherwise *failed holds the result (NULL when
 * libpq gave none), for the caller to clear. */
static bool prepare_stmt(ds_pg_t *pg, stmt_t *st, PGresult **failed) {
    PGresult *r = PQprepare(pg->conn, st->name, st->sql, st->nparams < 0 ? 0 : st->nparams, NULL);
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (PQresultStatus(r) == PGRES_COMMAND_OK ||
        (state && strcmp(state, "42P05") == 0 && PQstatus(pg->conn) == CONNECTION_OK)) {
        PQclear(r);
        st->prepared = true;
        return true;
    }
    *failed = r;
    return false;
}

/* A statement run with parameters unnamed is parsed and planned at every
 * run; the workers run the same few texts for every batch, and planning
 * was about a sixth of their statements' time in Postgres (bench-e2e on the
 * demo org, pg_stat_statements with track_planning). Prepared, a statement
 * is planned once per connection (or, when Postgres finds a custom plan
 * cheaper, as before). Every text with parameters run through a session is
 * prepared on first use, up to AUTO_MAX texts a session: statements built
 * at run time stay unnamed once that many are prepared. */
#define AUTO_MAX 64

/* The name of sql's statement prepared on the connection (preparing it
 * now if needed), or NULL: run it unnamed. When the statement does not
 * prepare, *failed (if failed is not NULL, else it is cleared) holds the
 * error, the one running it would give: inside a transaction the failure
 * aborted it, so running it unnamed would only say so. */
static const char *prepare_on_use(ds_pg_t *pg, const char *sql, int nparams, PGresult **failed) {
    if (!sql || nparams <= 0 || !pg->conn || PQstatus(pg->conn) != CONNECTION_OK ||
        PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF || pg->sent)
        return NULL;
    uint64_t h = text_hash(sql);
    stmt_t *st = NULL;
    for (size_t i = 0; i < pg->nstmts && !st; i++)
        if (pg->stmts[i].on_use && pg->stmts[i].hash == h && pg->stmts[i].nparams == nparams &&
            strcmp(pg->stmts[i].sql, sql) == 0)
            st = &pg->stmts[i];
    if (!st) {
        if (pg->nauto >= AUTO_MAX) return NULL;
        char name[32];
        snprintf(name, sizeof name, "ds_auto_%zu", pg->nauto++);
        if (ds_pg_add_statement(pg, name, sql, nparams) != DS_OK) return NULL;
        st = &pg->stmts[pg->nstmts - 1];
        st->on_use = true;
    }
    PGresult *r = NULL;
    if (!st->prepared && !prepare_stmt(pg, st, &r)) {
        /* The next use tries again. */
        if (failed)
            *failed = r;
        else
            PQclear(r);
        return NULL;
    }
    return st->name;
}

const char *ds_pg_prepared(ds_pg_t *pg, const char *sql, int nparams) {
    return prepare_on_use(pg, sql, nparams, NULL);
}

PGconn *ds_pg_conn(const ds_pg_t *pg) { return pg ? pg->conn : NULL; }

bool ds_pg_is_connected(const ds_pg_t *pg) { return pg && pg->conn && PQstatus(pg->conn) == CONNECTION_OK; }

uint64_t ds_pg_generation(const ds_pg_t *pg) { return pg->generation; }

int ds_pg_socket(const ds_pg_t *pg) { return pg && pg->conn ? PQsocket(pg->conn) : -1; }

/* Prepares the registered statements the connection does not have yet
 * (those prepared on use wait for their use). */
static int prepare_pending(ds_pg_t *pg, char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < pg->nstmts; i++) {
        stmt_t *st = &pg->stmts[i];
        if (st->prepared || st->on_use) continue;
        PGresult *r = NULL;
        if (!prepare_stmt(pg, st, &r)) {
            int rc = ds_pg_classify(r, pg->conn);
            char buf[512];
            seterr(errstr, errstr_size, "could not prepare statement %s: %s", st->name,
                   ds_pg_error_text(r, pg->conn, buf, sizeof buf));
            PQclear(r);
            return rc;
        }
    }
    return DS_OK;
}

static int listen_one(ds_pg_t *pg, chan_t *ch, char *errstr, size_t errstr_size) {
    char *ident = PQescapeIdentifier(pg->conn, ch->name, strlen(ch->name));
    if (!ident) {
        char buf[512];
        seterr(errstr, errstr_size, "could not listen on %s: %s", ch->name,
               ds_pg_error_text(NULL, pg->conn, buf, sizeof buf));
        return ds_pg_is_connected(pg) ? DS_EFATAL : DS_ERETRY;
    }
    char *sql = ds_asprintf("LISTEN %s", ident);
    PQfreemem(ident);
    PGresult *r = PQexec(pg->conn, sql);
    free(sql);
    int rc = ds_pg_classify(r, pg->conn);
    if (rc != DS_OK) {
        char buf[512];
        seterr(errstr, errstr_size, "could not listen on %s: %s", ch->name,
               ds_pg_error_text(r, pg->conn, buf, sizeof buf));
    } else {
        ch->active = true;
    }
    PQclear(r);
    return rc;
}

/* LISTEN is transactional, so channels are set up only outside a
 * transaction; otherwise a rollback would undo it unnoticed. */
static int listen_pending(ds_pg_t *pg, char *errstr, size_t errstr_size) {
    if (PQtransactionStatus(pg->conn) != PQTRANS_IDLE) return DS_OK;
    for (size_t i = 0; i < pg->nchans; i++) {
        if (pg->chans[i].active) continue;
        int rc = listen_one(pg, &pg->chans[i], errstr, errstr_size);
        if (rc != DS_OK) return rc;
    }
    return DS_OK;
}

int ds_pg_ensure(ds_pg_t *pg, int max_wait_ms, const volatile int *stop, char *errstr, size_t errstr_size) {
    if (pg->conn && (PQstatus(pg->conn) != CONNECTION_OK || PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF))
        ds_pg_reset(pg);
    if (!pg->conn) {
        int rc = ds_pg_connect_app(&pg->conn, pg->url, pg->app_name, max_wait_ms, stop, errstr, errstr_size);
        if (rc != DS_OK) return rc;
        pg->generation++;
        if (pg->generation > 1) {
            char *desc = ds_pg_url_describe(pg->url);
            ds_info("reconnected to postgres at %s", desc);
            free(desc);
        }
    }
    int rc = prepare_pending(pg, errstr, errstr_size);
    if (rc == DS_OK) rc = listen_pending(pg, errstr, errstr_size);
    return rc;
}

/* Checks that statements can be sent now: a healthy connection that no
 * batch is using. */
static int check_usable(ds_pg_t *pg, char *errstr, size_t errstr_size) {
    if (!pg->conn) {
        seterr(errstr, errstr_size, "no connection to postgres");
        return DS_ERETRY;
    }
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        char buf[512];
        seterr(errstr, errstr_size, "connection to postgres lost: %s",
               ds_pg_error_text(NULL, pg->conn, buf, sizeof buf));
        return DS_ERETRY;
    }
    if (PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF) {
        seterr(errstr, errstr_size, "a batch is running on this connection");
        return DS_EINVAL;
    }
    if (pg->sent) {
        seterr(errstr, errstr_size, "a command sent on this connection was not waited for");
        return DS_EINVAL;
    }
    return DS_OK;
}

static int take_result(ds_pg_t *pg, PGresult *r, PGresult **res, char *errstr, size_t errstr_size) {
    int rc = ds_pg_classify(r, pg->conn);
    if (rc != DS_OK) {
        char buf[512];
        seterr(errstr, errstr_size, "%s", ds_pg_error_text(r, pg->conn, buf, sizeof buf));
        PQclear(r);
        r = NULL;
    }
    if (res)
        *res = r;
    else
        PQclear(r);
    return rc;
}

int ds_pg_exec(ds_pg_t *pg, const char *sql, PGresult **res, char *errstr, size_t errstr_size) {
    if (res) *res = NULL;
    int rc = check_usable(pg, errstr, errstr_size);
    if (rc != DS_OK) return rc;
    return take_result(pg, PQexec(pg->conn, sql), res, errstr, errstr_size);
}

int ds_pg_exec_params(ds_pg_t *pg, const char *sql, int nparams, const char *const *values,
                      const int *lengths, const int *formats, PGresult **res, char *errstr,
                      size_t errstr_size) {
    if (res) *res = NULL;
    int rc = check_usable(pg, errstr, errstr_size);
    if (rc != DS_OK) return rc;
    PGresult *r = NULL;
    const char *name = prepare_on_use(pg, sql, nparams, &r);
    if (!r)
        r = name ? PQexecPrepared(pg->conn, name, nparams, values, lengths, formats, 0)
                 : PQexecParams(pg->conn, sql, nparams, NULL, values, lengths, formats, 0);
    return take_result(pg, r, res, errstr, errstr_size);
}

int ds_pg_send_params(ds_pg_t *pg, const char *sql, int nparams, const char *const *values,
                      const int *lengths, const int *formats, char *errstr, size_t errstr_size) {
    int rc = check_usable(pg, errstr, errstr_size);
    if (rc != DS_OK) return rc;
    /* Blocking mode: returns once the whole command is written, and the
     * server reads all of it before it answers, so this cannot deadlock. */
    PGresult *failed = NULL;
    const char *name = prepare_on_use(pg, sql, nparams, &failed);
    if (failed) {
        pg->failed = failed; /* what ds_pg_send_wait returns */
        pg->sent = true;
        return DS_OK;
    }
    if (!(name ? PQsendQueryPrepared(pg->conn, name, nparams, values, lengths, formats, 0)
               : PQsendQueryParams(pg->conn, sql, nparams, NULL, values, lengths, formats, 0))) {
        char buf[512];
        seterr(errstr, errstr_size, "%s", ds_pg_error_text(NULL, pg->conn, buf, sizeof buf));
        return PQstatus(pg->conn) == CONNECTION_OK ? DS_EFATAL : DS_ERETRY;
    }
    pg->sent = true;
    return DS_OK;
}

int ds_pg_send_wait(ds_pg_t *pg, PGresult **res, char *errstr, size_t errstr_size) {
    if (res) *res = NULL;
    if (!pg->sent) {
        seterr(errstr, errstr_size, "no command was sent on this connection");
        return DS_EINVAL;
    }
    pg->sent = false;
    if (pg->failed) {
        PGresult *failed = pg->failed;
        pg->failed = NULL;
        return take_result(pg, failed, res, errstr, errstr_size);
    }
    if (!pg->conn) {
        seterr(errstr, errstr_size, "no connection to postgres");
        return DS_ERETRY;
    }
    /* One command gives one result, then NULL; keep the first. */
    PGresult *first = PQgetResult(pg->conn), *more;
    while ((more = PQgetResult(pg->conn)) != NULL) PQclear(more);
    return take_result(pg, first, res, errstr, errstr_size);
}

int ds_pg_exec_prepared(ds_pg_t *pg, const char *name, int nparams, const char *const *values,
                        const int *lengths, const int *formats, PGresult **res, char *errstr,
                        size_t errstr_size) {
    if (res) *res = NULL;
    int rc = check_usable(pg, errstr, errstr_size);
    if (rc != DS_OK) return rc;
    stmt_t *st = find_stmt(pg, name);
    if (st && st->nparams >= 0 && st->nparams != nparams) {
        seterr(errstr, errstr_size, "statement %s takes %d parameters, not %d", name, st->nparams, nparams);
        return DS_EINVAL;
    }
    if (st && !st->prepared) {
        rc = prepare_pending(pg, errstr, errstr_size);
        if (rc != DS_OK) return rc;
    }
    PGresult *r = PQexecPrepared(pg->conn, name, nparams, values, lengths, formats, 0);
    return take_result(pg, r, res, errstr, errstr_size);
}

/* ---- transactions ------------------------------------------------------- */

/* Leaves the connection outside any transaction, or drops it. */
static void rollback_quietly(ds_pg_t *pg) {
    if (!ds_pg_is_connected(pg)) return;
    if (PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF) {
        ds_pg_reset(pg);
        return;
    }
    PGTransactionStatusType ts = PQtransactionStatus(pg->conn);
    if (ts == PQTRANS_IDLE) return;
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR) {
        ds_pg_reset(pg);
        return;
    }
    PGresult *r = PQexec(pg->conn, "ROLLBACK");
    if (ds_pg_classify(r, pg->conn) != DS_OK) {
        char buf[512];
        ds_warn("could not roll back, dropping the connection: %s",
                ds_pg_error_text(r, pg->conn, buf, sizeof buf));
        ds_pg_reset(pg);
    }
    PQclear(r);
}

static int tx_attempt(ds_pg_t *pg, ds_pg_tx_fn fn, void *ud, char *errstr, size_t errstr_size) {
    int rc = ds_pg_exec(pg, "BEGIN", NULL, errstr, errstr_size);
    if (rc == DS_OK) rc = fn(pg, ud, errstr, errstr_size);
    if (rc > 0) rc = DS_OK;
    if (rc == DS_OK) {
        if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK &&
            PQtransactionStatus(pg->conn) == PQTRANS_INERROR) {
            seterr(errstr, errstr_size, "transaction failed but its body returned success");
            rc = DS_EFATAL;
        } else {
            PGresult *r = NULL;
            rc = ds_pg_exec(pg, "COMMIT", &r, errstr, errstr_size);
            if (rc == DS_OK && strcmp(PQcmdStatus(r), "ROLLBACK") == 0) {
                seterr(errstr, errstr_size, "transaction was rolled back at commit");
                rc = DS_EFATAL;
            }
            PQclear(r);
            if (rc == DS_OK) return DS_OK;
        }
    }
    if (errstr && errstr_size && !*errstr) seterr(errstr, errstr_size, "%s", ds_strerror(rc));
    rollback_quietly(pg);
    return rc;
}

int ds_pg_tx_run(ds_pg_t *pg, ds_pg_tx_fn fn, void *ud, int max_attempts, const volatile int *stop,
                 char *errstr, size_t errstr_size) {
    char local[512];
    if (!errstr || errstr_size == 0) {
        errstr = local;
        errstr_size = sizeof local;
    }
    for (int attempt = 1;; attempt++) {
        errstr[0] = '\0';
        int rc = ds_pg_ensure(pg, 0, stop, errstr, errstr_size);
        if (rc == DS_OK) rc = tx_attempt(pg, fn, ud, errstr, errstr_size);
        if (rc == DS_OK) return DS_OK;
        if (rc != DS_ERETRY) return rc;
        if (!ds_pg_is_connected(pg)) ds_pg_reset(pg);
        char last[512];
        snprintf(last, sizeof last, "%s", errstr);
        if (max_attempts > 0 && attempt >= max_attempts) {
            seterr(errstr, errstr_size, "gave up after %d attempts: %s", attempt, last);
            return DS_ERETRY;
        }
        if (stop && *stop) {
            seterr(errstr, errstr_size, "stopped before retrying: %s", last);
            return DS_ESHUTDOWN;
        }
        int delay = ds_pg_backoff_ms(attempt - 1, &pg->seed);
        ds_warn("transaction failed (attempt %d), retrying in %d ms: %s", attempt, delay, last);
        if (wait_ms(delay, stop) != DS_OK) {
            seterr(errstr, errstr_size, "stopped before retrying: %s", last);
            return DS_ESHUTDOWN;
        }
    }
}

/* ---- batches ------------------------------------------------------------ */

typedef struct {
    bool prepared;    /* name is a prepared statement, else text is SQL */
    const char *text; /* statement name or SQL */
    int nparams;
    const char **values;
    int *lengths;
    int *formats;
    void *tag;
} bstmt_t;

/* Statement copies live in a chain of blocks, freed together. */
typedef struct block_s {
    struct block_s *next;
    size_t used, cap;
    char data[];
} block_t;

struct ds_pg_batch_s {
    ds_pg_t *pg;
    bstmt_t *st;
    size_t n, cap;
    block_t *blocks;
    int sync_every;
    bool ran;
    char sqlstate[6];
};

static void *batch_alloc(ds_pg_batch_t *b, size_t size) {
    size = (size + 7) & ~(size_t)7;
    block_t *blk = b->blocks;
    if (!blk || blk->cap - blk->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        blk = ds_malloc(sizeof *blk + cap);
        blk->next = b->blocks;
        blk->used = 0;
        blk->cap = cap;
        b->blocks = blk;
    }
    void *p = blk->data + blk->used;
    blk->used += size;
    return p;
}

static char *batch_strdup(ds_pg_batch_t *b, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = batch_alloc(b, n);
    memcpy(p, s, n);
    return p;
}

int ds_pg_batch_begin(ds_pg_t *pg, ds_pg_batch_t **out) {
    ds_pg_batch_t *b = ds_calloc(1, sizeof *b);
    b->pg = pg;
    b->sync_every = DS_PG_BATCH_SYNC_EVERY;
    *out = b;
    return DS_OK;
}

void ds_pg_batch_set_sync_every(ds_pg_batch_t *b, int n) { b->sync_every = n > 0 ? n : 1; }

size_t ds_pg_batch_count(const ds_pg_batch_t *b) { return b->n; }

const char *ds_pg_batch_sqlstate(const ds_pg_batch_t *b) { return b->sqlstate; }

void ds_pg_batch_end(ds_pg_batch_t *b) {
    if (!b) return;
    for (block_t *blk = b->blocks, *next; blk; blk = next) {
        next = blk->next;
        free(blk);
    }
    free(b->st);
    free(b);
}

static int batch_add(ds_pg_batch_t *b, bool prepared, bool borrow, const char *text, int nparams,
                     const char *const *values, const int *lengths, const int *formats, void *tag) {
    if (!text || nparams < 0 || (nparams > 0 && !values) || b->ran) return DS_EINVAL;
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->st = ds_realloc(b->st, b->cap * sizeof *b->st);
    }
    bstmt_t *s = &b->st[b->n];
    *s = (bstmt_t){.prepared = prepared, .nparams = nparams, .tag = tag};
    s->text = batch_strdup(b, text);
    if (nparams > 0) {
        s->values = batch_alloc(b, (size_t)nparams * sizeof *s->values);
        if (formats) {
            s->formats = batch_alloc(b, (size_t)nparams * sizeof *s->formats);
            memcpy(s->formats, formats, (size_t)nparams * sizeof *formats);
        }
        if (lengths) {
            s->lengths = batch_alloc(b, (size_t)nparams * sizeof *s->lengths);
            memcpy(s->lengths, lengths, (size_t)nparams * sizeof *lengths);
        }
        for (int i = 0; i < nparams; i++) {
            if (!values[i]) {
                s->values[i] = NULL;
            } else if (borrow) {
                if (formats && formats[i] == 1 && (!lengths || lengths[i] < 0)) return DS_EINVAL;
                s->values[i] = (char *)values[i];
            } else if (formats && formats[i] == 1) {
                if (!lengths || lengths[i] < 0) return DS_EINVAL;
                char *v = batch_alloc(b, (size_t)lengths[i] + 1);
                memcpy(v, values[i], (size_t)lengths[i]);
                s->values[i] = v;
            } else {
                s->values[i] = batch_strdup(b, values[i]);
            }
        }
    }
    b->n++;
    return DS_OK;
}

int ds_pg_batch_add_prepared(ds_pg_batch_t *b, const char *name, int nparams, const char *const *values,
                             const int *lengths, const int *formats, void *tag) {
    const stmt_t *st = name ? find_stmt(b->pg, name) : NULL;
    if (st && st->nparams >= 0 && st->nparams != nparams) return DS_EINVAL;
    return batch_add(b, true, false, name, nparams, values, lengths, formats, tag);
}

int ds_pg_batch_add_params_ref(ds_pg_batch_t *b, const char *sql, int nparams, const char *const *values,
                               const int *lengths, const int *formats, void *tag) {
    return batch_add(b, false, true, sql, nparams, values, lengths, formats, tag);
}

int ds_pg_batch_add_params(ds_pg_batch_t *b, const char *sql, int nparams, const char *const *values,
                           const int *lengths, const int *formats, void *tag) {
    return batch_add(b, false, false, sql, nparams, values, lengths, formats, tag);
}

int ds_pg_batch_add_sql(ds_pg_batch_t *b, const char *sql, void *tag) {
    return batch_add(b, false, false, sql, 0, NULL, NULL, NULL, tag);
}

/* State of one ds_pg_batch_run. */
typedef struct {
    ds_pg_batch_t *b;
    PGconn *conn;
    ds_pg_batch_cb cb;
    void *ud;
    bool cb_failed;
    size_t sent; /* statements handed to libpq */
    size_t rd;   /* statements whose results are complete */
    bool have;   /* the result of statement rd came, its NULL has not */
    size_t syncs_sent;
    size_t syncs_read;
    int err; /* class of the first failure */
    char *errstr;
    size_t errstr_size;
} run_t;

static void note_error(run_t *rs, size_t idx, int rc, const PGresult *r, const char *msg) {
    if (rs->err != DS_OK) return;
    rs->err = rc;
    char buf[512];
    if (!msg) msg = ds_pg_error_text(r, rs->conn, buf, sizeof buf);
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(rs->b->sqlstate, sizeof rs->b->sqlstate, "%s", state ? state : "");
    seterr(rs->errstr, rs->errstr_size, "statement %zu: %s", idx, msg);
}

static void note_conn_error(run_t *rs, size_t idx) {
    char buf[512];
    note_error(rs, idx, PQstatus(rs->conn) == CONNECTION_OK ? DS_EFATAL : DS_ERETRY, NULL,
               ds_pg_error_text(NULL, rs->conn, buf, sizeof buf));
}

/* Index of the last statement before sync number i, plus one. */
static size_t sync_boundary(const ds_pg_batch_t *b, size_t i) {
    size_t v = (i + 1) * (size_t)b->sync_every;
    return v < b->n ? v : b->n;
}

/* Reads every result that has arrived, without blocking. libpq yields each
 * statement's result followed by a NULL, and a PGRES_PIPELINE_SYNC (no NULL
 * after it) for each sync. Returns 0, or -1 when the run cannot go on. */
static int drain(run_t *rs) {
    PGconn *conn = rs->conn;
    if (!PQconsumeInput(conn)) {
        note_conn_error(rs, rs->rd);
        return -1;
    }
    for (;;) {
        bool want_sync =
            !rs->have && rs->syncs_read < rs->syncs_sent && rs->rd == sync_boundary(rs->b, rs->syncs_read);
        if (!want_sync && rs->rd >= rs->sent) return 0;
        if (PQisBusy(conn)) return 0;
        PGresult *r = PQgetResult(conn);
        if (want_sync) {
            if (r && PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
                rs->syncs_read++;
                PQclear(r);
                continue;
            }
            note_error(rs, rs->rd, DS_EFATAL, NULL, "unexpected result where a sync was due");
            PQclear(r);
            return -1;
        }
        if (!r) {
            if (rs->have) {
                rs->rd++;
                rs->have = false;
                continue;
            }
            if (PQstatus(conn) != CONNECTION_OK) {
                note_conn_error(rs, rs->rd);
            } else {
                note_error(rs, rs->rd, DS_EFATAL, NULL, "result missing in the pipeline");
            }
            return -1;
        }
        int rc = ds_pg_classify(r, conn);
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            note_error(rs, rs->rd, DS_EFATAL, NULL, "unexpected sync in the pipeline");
            PQclear(r);
            return -1;
        }
        if (rc != DS_OK) note_error(rs, rs->rd, rc, r, NULL);
        if (!rs->have && rs->cb && !rs->cb_failed) {
            int crc = rs->cb(rs->ud, rs->b->st[rs->rd].tag, r, rc);
            if (crc < 0) {
                rs->cb_failed = true;
                char msg[128];
                snprintf(msg, sizeof msg, "callback failed: %s", ds_strerror(crc));
                note_error(rs, rs->rd, crc, NULL, msg);
            }
        }
        PQclear(r);
        rs->have = true;
        if (PQstatus(conn) != CONNECTION_OK) {
            note_conn_error(rs, rs->rd);
            return -1;
        }
    }
}

static int send_one(run_t *rs, const bstmt_t *s) {
    if (s->prepared)
        return PQsendQueryPrepared(rs->conn, s->text, s->nparams, s->values, s->lengths, s->formats, 0);
    return PQsendQueryParams(rs->conn, s->text, s->nparams, NULL, s->values, s->lengths, s->formats, 0);
}

int ds_pg_batch_run(ds_pg_batch_t *b, ds_pg_batch_cb cb, void *ud, char *errstr, size_t errstr_size) {
    ds_pg_t *pg = b->pg;
    b->sqlstate[0] = '\0';
    if (b->ran) {
        seterr(errstr, errstr_size, "batch already ran");
        return DS_EINVAL;
    }
    b->ran = true;
    int rc = check_usable(pg, errstr, errstr_size);
    if (rc == DS_OK) rc = prepare_pending(pg, errstr, errstr_size);
    if (rc != DS_OK || b->n == 0) return rc;
    /* Outside a transaction only: a statement that does not prepare aborts
     * nothing then, and the pipeline gives its error in its place. */
    for (size_t i = 0; i < b->n && PQtransactionStatus(pg->conn) == PQTRANS_IDLE; i++) {
        bstmt_t *s = &b->st[i];
        const char *name = s->prepared ? NULL : ds_pg_prepared(pg, s->text, s->nparams);
        if (!name) continue;
        s->text = batch_strdup(b, name);
        s->prepared = true;
    }

    run_t rs = {.b = b, .conn = pg->conn, .cb = cb, .ud = ud, .errstr = errstr, .errstr_size = errstr_size};
    PGconn *conn = pg->conn;
    bool owns_tx = PQtransactionStatus(conn) == PQTRANS_IDLE;
    if (!PQenterPipelineMode(conn) || PQsetnonblocking(conn, 1) != 0) {
        note_conn_error(&rs, 0);
        goto out;
    }

    size_t since_sync = 0;
    bool want_write = false;
    for (;;) {
        while (!want_write && rs.sent < b->n) {
            if (!send_one(&rs, &b->st[rs.sent])) {
                note_conn_error(&rs, rs.sent);
                goto out;
            }
            rs.sent++;
            if (++since_sync == (size_t)b->sync_every || rs.sent == b->n) {
                if (!PQpipelineSync(conn)) {
                    note_conn_error(&rs, rs.sent - 1);
                    goto out;
                }
                rs.syncs_sent++;
                since_sync = 0;
                int f = PQflush(conn);
                if (f < 0) {
                    note_conn_error(&rs, rs.sent - 1);
                    goto out;
                }
                want_write = f == 1;
                break; /* read what has come before sending more */
            }
        }
        if (drain(&rs) < 0) goto out;
        if (rs.sent == b->n && !want_write && rs.rd == b->n && rs.syncs_read == rs.syncs_sent) break;
        if (!want_write && rs.sent < b->n) continue;
        /* Wait for results and, while libpq still holds unsent data, for
         * room to send it: reading while flushing is what keeps a full send
         * buffer from deadlocking against a server blocked on its own. */
        struct pollfd pfd = {PQsocket(conn), (short)(POLLIN | (want_write ? POLLOUT : 0)), 0};
        if (poll(&pfd, 1, -1) < 0) {
            if (errno == EINTR) continue;
            note_error(&rs, rs.rd, DS_ERETRY, NULL, strerror(errno));
            goto out;
        }
        if (want_write) {
            int f = PQflush(conn);
            if (f < 0) {
                note_conn_error(&rs, rs.rd);
                goto out;
            }
            want_write = f == 1;
        }
    }

out:
    if (PQstatus(conn) != CONNECTION_OK) {
        /* Never leave a broken connection in pipeline mode behind. */
        ds_pg_reset(pg);
    } else if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF && !PQexitPipelineMode(conn)) {
        ds_warn("could not leave pipeline mode, dropping the connection: %s", PQerrorMessage(conn));
        ds_pg_reset(pg);
    } else {
        PQsetnonblocking(conn, 0);
        if (owns_tx && PQtransactionStatus(conn) == PQTRANS_INERROR) rollback_quietly(pg);
    }
    return rs.err;
}

/* ---- arrays ------------------------------------------------------------- */

char *ds_pg_array_text(const char *const *vals, size_t n) {
    size_t len = 3; /* braces and NUL */
    for (size_t i = 0; i < n; i++) {
        len += 1; /* comma */
        if (!vals[i]) {
            len += 4;
            continue;
        }
        len += 2;
        for (const char *p = vals[i]; *p; p++) len += (*p == '"' || *p == '\\') ? 2 : 1;
    }
    char *out = ds_malloc(len);
    char *w = out;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i) *w++ = ',';
        if (!vals[i]) {
            memcpy(w, "NULL", 4);
            w += 4;
            continue;
        }
        *w++ = '"';
        for (const char *p = vals[i]; *p; p++) {
            if (*p == '"' || *p == '\\') *w++ = '\\';
            *w++ = *p;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return out;
}

/* ---- notifications ------------------------------------------------------ */

int ds_pg_listen(ds_pg_t *pg, const char *channel, char *errstr, size_t errstr_size) {
    if (!channel || !*channel) {
        seterr(errstr, errstr_size, "empty channel name");
        return DS_EINVAL;
    }
    chan_t *ch = NULL;
    for (size_t i = 0; i < pg->nchans; i++)
        if (strcmp(pg->chans[i].name, channel) == 0) ch = &pg->chans[i];
    if (!ch) {
        if (pg->nchans == pg->chans_cap) {
            pg->chans_cap = pg->chans_cap ? pg->chans_cap * 2 : 4;
            pg->chans = ds_realloc(pg->chans, pg->chans_cap * sizeof *pg->chans);
        }
        ch = &pg->chans[pg->nchans++];
        *ch = (chan_t){.name = ds_strdup(channel)};
    }
    if (ch->active || !pg->conn) return DS_OK;
    int rc = check_usable(pg, errstr, errstr_size);
    if (rc != DS_OK) return rc;
    if (PQtransactionStatus(pg->conn) != PQTRANS_IDLE) return DS_OK; /* at the next ensure */
    return listen_one(pg, ch, errstr, errstr_size);
}

int ds_pg_notifies(ds_pg_t *pg, ds_pg_notify_cb cb, void *ud) {
    if (!ds_pg_is_connected(pg)) return DS_ERETRY;
    if (!PQconsumeInput(pg->conn)) return DS_ERETRY;
    int n = 0;
    PGnotify *nt;
    while ((nt = PQnotifies(pg->conn)) != NULL) {
        if (cb) cb(ud, nt->relname, nt->extra ? nt->extra : "", nt->be_pid);
        PQfreemem(nt);
        n++;
    }
    return n;
}
