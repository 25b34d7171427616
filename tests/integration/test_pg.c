/* Integration tests for the libpq wrapper against a real Postgres
 * (DEALSCORE_DATABASE_URL, a superuser URL). Each test gets a fresh database
 * with one table, items(id int primary key, v text not null), and a second
 * plain connection ("admin") to set things up, look at the results and
 * terminate the wrapper's backend. Nothing sleeps to synchronise: waits are
 * pg_terminate_backend(pid, timeout) and poll() with a deadline. */
#include <criterion/criterion.h>

#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "pgtest.h"
#include "tcpproxy.h"

#include "base/log.h"
#include "infra/pg.h"
#include "infra/pgarray.h"

static pgt_db_t db;
static PGconn *admin;

static void setup(void) {
    ds_log_init("test_pg", DS_LOG_WARN);
    pgt_db_create(&db);
    admin = pgt_connect_db(&db);
    pgt_exec(admin, "create table items (id int primary key, v text not null)");
}

static void teardown(void) {
    if (admin) PQfinish(admin);
    admin = NULL;
    pgt_db_drop(&db);
}

TestSuite(pg, .init = setup, .fini = teardown, .timeout = 120);

#define INS_SQL "insert into items (id, v) values ($1::int, $2::text)"
#define UPSERT_SQL                                                                                           \
    "insert into items (id, v) values ($1::int, $2::text) "                                                  \
    "on conflict (id) do update set v = excluded.v returning (xmax = 0) as inserted"

/* A session on the test database, connected. */
static ds_pg_t *session(void) {
    ds_pg_t *pg = NULL;
    char err[512] = "";
    cr_assert_eq(ds_pg_new(&pg, db.conninfo, "test_pg", err, sizeof err), DS_OK, "%s", err);
    cr_assert_eq(ds_pg_add_statement(pg, "ins", INS_SQL, 2), DS_OK);
    cr_assert_eq(ds_pg_add_statement(pg, "upsert", UPSERT_SQL, 2), DS_OK);
    cr_assert_eq(ds_pg_ensure(pg, 10000, NULL, err, sizeof err), DS_OK, "%s", err);
    return pg;
}

/* Terminates the session's backend from the admin connection and waits
 * (inside the server) until it is gone. */
static void kill_backend(ds_pg_t *pg) {
    int pid = PQbackendPID(ds_pg_conn(pg));
    cr_assert(pid > 0);
    char *ok = pgt_valuef(admin, "select pg_terminate_backend(%d, 10000)", pid);
    cr_assert_str_eq(ok, "t", "backend %d did not terminate", pid);
    free(ok);
}

static long long count_items(void) { return pgt_longf(admin, "select count(*) from items"); }

/* ---- connecting --------------------------------------------------------- */

/* A TCP proxy on loopback that closes the first `refuse` connections at once
 * (the server "goes away" during the handshake) and forwards the next one to
 * the real server, so connecting must retry to succeed. */
typedef struct {
    int lfd;
    int port;
    int refuse;
    int accepted;
    char host[256]; /* upstream: a host name or a socket directory */
    char port_s[16];
    pthread_t thread;
} proxy_t;

static int upstream_connect(const proxy_t *p) {
    if (p->host[0] == '/') {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char *path = pgt_fmt("%s/.s.PGSQL.%s", p->host, p->port_s);
        if (strlen(path) >= sizeof sa.sun_path) {
            free(path);
            return -1;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        free(path);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return fd;
        if (fd >= 0) close(fd);
        return -1;
    }
    return tcpproxy_connect(p->host, p->port_s);
}

static bool copy_some(int from, int to) {
    char buf[16384];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0) return false;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0) return false;
        off += w;
    }
    return true;
}

static void *proxy_main(void *arg) {
    proxy_t *p = arg;
    for (;;) {
        int c = accept(p->lfd, NULL, NULL);
        if (c < 0) return NULL;
        int n = __atomic_add_fetch(&p->accepted, 1, __ATOMIC_SEQ_CST);
        if (n <= p->refuse) {
            close(c);
            continue;
        }
        int u = upstream_connect(p);
        if (u >= 0) {
            struct pollfd pf[2] = {{c, POLLIN, 0}, {u, POLLIN, 0}};
            for (;;) {
                if (poll(pf, 2, -1) < 0) break;
                if (pf[0].revents && !copy_some(c, u)) break;
                if (pf[1].revents && !copy_some(u, c)) break;
            }
            close(u);
        }
        close(c);
        return NULL; /* one proxied session is all a test needs */
    }
}

static void proxy_start(proxy_t *p, int refuse) {
    memset(p, 0, sizeof *p);
    p->refuse = refuse;
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(db.conninfo, &err);
    cr_assert_not_null(opts, "%s", err ? err : "");
    snprintf(p->host, sizeof p->host, "/var/run/postgresql");
    snprintf(p->port_s, sizeof p->port_s, "5432");
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val) continue;
        if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0)
            snprintf(p->host, sizeof p->host, "%s", o->val);
        if (strcmp(o->keyword, "port") == 0) snprintf(p->port_s, sizeof p->port_s, "%s", o->val);
    }
    PQconninfoFree(opts);

    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(p->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(p->lfd, 16), 0);
    socklen_t len = sizeof sa;
    cr_assert_eq(getsockname(p->lfd, (struct sockaddr *)&sa, &len), 0);
    p->port = ntohs(sa.sin_port);
    cr_assert_eq(pthread_create(&p->thread, NULL, proxy_main, p), 0);
}

static void proxy_stop(proxy_t *p) {
    /* The thread returns after its session ends; shutdown() also wakes an
     * accept() that is still waiting. */
    shutdown(p->lfd, SHUT_RDWR);
    pthread_join(p->thread, NULL);
    close(p->lfd);
}

Test(pg, connect_with_retry_succeeds) {
    proxy_t px;
    proxy_start(&px, 2);
    char port[16], err[512] = "";
    snprintf(port, sizeof port, "%d", px.port);
    /* One TCP connection per try: no SSL or GSS negotiation retries. */
    const char *keys[] = {"host", "hostaddr", "port", "sslmode", "gssencmode"};
    const char *vals[] = {"127.0.0.1", NULL, port, "disable", "disable"};
    char *url = ds_pg_url_with(db.conninfo, keys, vals, 5, err, sizeof err);
    cr_assert_not_null(url, "%s", err);

    PGconn *c = NULL;
    int rc = ds_pg_connect_app(&c, url, "retry-test", 20000, NULL, err, sizeof err);
    cr_assert_eq(rc, DS_OK, "%s: %s", ds_strerror(rc), err);
    PGresult *r = PQexec(c, "select current_setting('application_name'), current_database()");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "retry-test");
    cr_expect_str_eq(PQgetvalue(r, 0, 1), db.name);
    PQclear(r);
    PQfinish(c);
    proxy_stop(&px);
    cr_expect_eq(px.accepted, 3, "two refused tries and one that worked, not %d", px.accepted);
    free(url);
}

Test(pg, connect_sets_application_name_unless_the_url_does) {
    char err[512] = "";
    PGconn *c = NULL;
    cr_assert_eq(ds_pg_connect(&c, db.conninfo, 5000, NULL, err, sizeof err), DS_OK, "%s", err);
    char *app =
        pgt_valuef(admin, "select application_name from pg_stat_activity where pid = %d", PQbackendPID(c));
    cr_expect_str_eq(app, "dealscore");
    free(app);
    PQfinish(c);

    const char *keys[] = {"application_name"};
    const char *vals[] = {"from-url"};
    char *url = ds_pg_url_with(db.conninfo, keys, vals, 1, err, sizeof err);
    cr_assert_eq(ds_pg_connect_app(&c, url, "ignored", 5000, NULL, err, sizeof err), DS_OK, "%s", err);
    cr_expect_str_eq(PQparameterStatus(c, "application_name"), "from-url");
    PQfinish(c);
    free(url);
}

Test(pg, ensure_keeps_a_healthy_connection) {
    ds_pg_t *pg = session();
    char err[512] = "";
    int pid = PQbackendPID(ds_pg_conn(pg));
    cr_expect_eq(ds_pg_generation(pg), 1);
    cr_expect_eq(ds_pg_ensure(pg, 0, NULL, err, sizeof err), DS_OK, "%s", err);
    volatile int stop = 1; /* a stopping service can still use its connection */
    cr_expect_eq(ds_pg_ensure(pg, 0, &stop, err, sizeof err), DS_OK, "%s", err);
    cr_expect_eq(PQbackendPID(ds_pg_conn(pg)), pid);
    cr_expect_eq(ds_pg_generation(pg), 1);
    cr_expect(ds_pg_socket(pg) >= 0);
    ds_pg_destroy(pg);
}

/* ---- error classes from a real server ------------------------------------ */

Test(pg, classify_real_server_errors) {
    ds_pg_t *pg = session();
    char err[512] = "";
    PGresult *r = NULL;
    cr_expect_eq(ds_pg_exec(pg, "select 1/0", &r, err, sizeof err), DS_EFATAL);
    cr_expect_null(r);
    cr_expect(strstr(err, "division by zero (SQLSTATE 22012)") != NULL, "%s", err);
    cr_expect_eq(ds_pg_exec(pg, "selec 1", NULL, err, sizeof err), DS_EFATAL);
    cr_expect(strstr(err, "42601") != NULL, "%s", err);
    const char *v[] = {"1", NULL};
    cr_expect_eq(ds_pg_exec_prepared(pg, "ins", 2, v, NULL, NULL, NULL, err, sizeof err), DS_EFATAL);
    cr_expect(strstr(err, "23502") != NULL, "%s", err);
    cr_expect_eq(ds_pg_exec_prepared(pg, "ins", 1, v, NULL, NULL, NULL, err, sizeof err), DS_EINVAL);

    /* A lock held elsewhere: 55P03 lock_not_available is transient. */
    pgt_exec(admin, "begin; lock table items in access exclusive mode");
    cr_assert_eq(ds_pg_exec(pg, "begin", NULL, err, sizeof err), DS_OK, "%s", err);
    cr_expect_eq(ds_pg_exec(pg, "lock table items in access share mode nowait", NULL, err, sizeof err),
                 DS_ERETRY);
    cr_expect(strstr(err, "55P03") != NULL, "%s", err);
    cr_expect_eq(ds_pg_exec(pg, "rollback", NULL, err, sizeof err), DS_OK, "%s", err);
    pgt_exec(admin, "rollback");

    cr_expect_eq(ds_pg_exec(pg, "select 42", &r, err, sizeof err), DS_OK, "%s", err);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "42");
    PQclear(r);
    ds_pg_destroy(pg);
}

/* ---- reconnects --------------------------------------------------------- */

Test(pg, prepared_statements_survive_reconnect) {
    ds_pg_t *pg = session();
    char err[512] = "";
    cr_assert_eq(ds_pg_add_statement(pg, "plus1", "select $1::int + 1", 1), DS_OK);
    const char *v[] = {"41"};
    PGresult *r = NULL;
    cr_assert_eq(ds_pg_exec_prepared(pg, "plus1", 1, v, NULL, NULL, &r, err, sizeof err), DS_OK, "%s", err);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "42");
    PQclear(r);

    kill_backend(pg);
    int rc = ds_pg_exec_prepared(pg, "plus1", 1, v, NULL, NULL, &r, err, sizeof err);
    cr_expect_eq(rc, DS_ERETRY, "%s: %s", ds_strerror(rc), err);
    cr_expect_not(ds_pg_is_connected(pg));
    /* Without ds_pg_ensure nothing reconnects behind the caller's back. */
    cr_expect_eq(ds_pg_exec(pg, "select 1", NULL, err, sizeof err), DS_ERETRY);

    ds_pg_reset(pg);
    cr_assert_eq(ds_pg_ensure(pg, 10000, NULL, err, sizeof err), DS_OK, "%s", err);
    cr_expect_eq(ds_pg_generation(pg), 2);
    cr_assert_eq(ds_pg_exec(pg, "select string_agg(name, ',' order by name) from pg_prepared_statements", &r,
                            err, sizeof err),
                 DS_OK, "%s", err);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "ins,plus1,upsert");
    PQclear(r);
    cr_assert_eq(ds_pg_exec_prepared(pg, "plus1", 1, v, NULL, NULL, &r, err, sizeof err), DS_OK, "%s", err);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "42");
    PQclear(r);
    ds_pg_destroy(pg);
}

/* How many statements of the connection are prepared with this text. */
static int prepared_count(ds_pg_t *pg, const char *text) {
    char *sql = ds_asprintf("select count(*) from pg_prepared_statements where statement = '%s'", text);
    PGresult *r = NULL;
    char err[512] = "";
    cr_assert_eq(ds_pg_exec(pg, sql, &r, err, sizeof err), DS_OK, "%s", err);
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    free(sql);
    return n;
}

#define TWICE_SQL "select $1::int * 2"

Test(pg, statements_with_parameters_are_planned_once_per_connection) {
    ds_pg_t *pg = session();
    char err[512] = "";
    const char *v[] = {"21"};
    PGresult *r = NULL;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(ds_pg_exec_params(pg, TWICE_SQL, 1, v, NULL, NULL, &r, err, sizeof err), DS_OK, "%s",
                     err);
        cr_expect_str_eq(PQgetvalue(r, 0, 0), "42");
        PQclear(r);
    }
    cr_assert_eq(ds_pg_send_params(pg, TWICE_SQL, 1, v, NULL, NULL, err, sizeof err), DS_OK, "%s", err);
    cr_assert_eq(ds_pg_send_wait(pg, &r, err, sizeof err), DS_OK, "%s", err);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "42");
    PQclear(r);
    ds_pg_batch_t *b = NULL;
    cr_assert_eq(ds_pg_batch_begin(pg, &b), DS_OK);
    cr_assert_eq(ds_pg_batch_add_params(b, TWICE_SQL, 1, v, NULL, NULL, NULL), DS_OK);
    cr_assert_eq(ds_pg_batch_run(b, NULL, NULL, err, sizeof err), DS_OK, "%s", err);
    ds_pg_batch_end(b);
    cr_expect_eq(prepared_count(pg, TWICE_SQL), 1, "one statement for every way of running the text");

    /* A new connection prepares it again at its first use. */
    ds_pg_reset(pg);
    cr_assert_eq(ds_pg_ensure(pg, 10000, NULL, err, sizeof err), DS_OK, "%s", err);
    cr_expect_eq(prepared_count(pg, TWICE_SQL), 0);
    cr_assert_eq(ds_pg_exec_params(pg, TWICE_SQL, 1, v, NULL, NULL, &r, err, sizeof err), DS_OK, "%s", err);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "42");
    PQclear(r);
    cr_expect_eq(prepared_count(pg, TWICE_SQL), 1);
    ds_pg_destroy(pg);
}

Test(pg, a_statement_that_does_not_prepare_gives_its_own_error) {
    ds_pg_t *pg = session();
    char err[512] = "";
    const char *v[] = {"1"};
    for (int i = 0; i < 2; i++) {
        int rc = ds_pg_exec_params(pg, "select v from no_such_table where id = $1::int", 1, v, NULL, NULL,
                                   NULL, err, sizeof err);
        cr_expect_eq(rc, DS_EFATAL, "%s", ds_strerror(rc));
        cr_expect(strstr(err, "relation \"no_such_table\" does not exist (SQLSTATE 42P01)"), "%s", err);
    }
    /* Inside a transaction too (a failed preparation aborts it: running the
     * statement then would only say so), sent or run. */
    cr_assert_eq(ds_pg_exec(pg, "begin", NULL, err, sizeof err), DS_OK, "%s", err);
    cr_assert_eq(ds_pg_send_params(pg, "select v from no_such_table where id = $1::int", 1, v, NULL, NULL,
                                   err, sizeof err),
                 DS_OK, "%s", err);
    cr_expect_eq(ds_pg_send_wait(pg, NULL, err, sizeof err), DS_EFATAL);
    cr_expect(strstr(err, "(SQLSTATE 42P01)"), "%s", err);
    cr_assert_eq(ds_pg_exec(pg, "rollback", NULL, err, sizeof err), DS_OK, "%s", err);
    cr_assert_eq(ds_pg_exec(pg, "begin", NULL, err, sizeof err), DS_OK, "%s", err);
    cr_expect_eq(ds_pg_exec_params(pg, "select v from no_such_table where id = $1::int", 1, v, NULL, NULL,
                                   NULL, err, sizeof err),
                 DS_EFATAL);
    cr_expect(strstr(err, "(SQLSTATE 42P01)"), "%s", err);
    cr_assert_eq(ds_pg_exec(pg, "rollback", NULL, err, sizeof err), DS_OK, "%s", err);
    /* The session stays usable: nothing left to prepare at the next ensure. */
    cr_assert_eq(ds_pg_ensure(pg, 10000, NULL, err, sizeof err), DS_OK, "%s", err);
    PGresult *r = NULL;
    cr_assert_eq(ds_pg_exec_params(pg, TWICE_SQL, 1, v, NULL, NULL, &r, err, sizeof err), DS_OK, "%s", err);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "2");
    PQclear(r);
    ds_pg_destroy(pg);
}

typedef struct {
    int attempts;
    int first_rc;
} kill_ud_t;

/* Inserts rows 1 and 2; on the first attempt the backend is terminated
 * between the two, so that attempt must fail as transient and roll back. */
static int tx_two_rows(ds_pg_t *pg, void *arg, char *errstr, size_t sz) {
    kill_ud_t *u = arg;
    u->attempts++;
    const char *v1[] = {"1", "one"};
    int rc = ds_pg_exec_prepared(pg, "ins", 2, v1, NULL, NULL, NULL, errstr, sz);
    if (rc != DS_OK) return rc;
    if (u->attempts == 1) kill_backend(pg);
    const char *v2[] = {"2", "two"};
    rc = ds_pg_exec_prepared(pg, "ins", 2, v2, NULL, NULL, NULL, errstr, sz);
    if (u->attempts == 1) u->first_rc = rc;
    return rc;
}

Test(pg, tx_run_retries_after_terminate_backend) {
    ds_pg_t *pg = session();
    char err[512] = "";
    kill_ud_t u = {0};
    int rc = ds_pg_tx_run(pg, tx_two_rows, &u, 5, NULL, err, sizeof err);
    cr_assert_eq(rc, DS_OK, "%s: %s", ds_strerror(rc), err);
    cr_expect_eq(u.first_rc, DS_ERETRY);
    cr_expect_eq(u.attempts, 2);
    cr_expect_eq(ds_pg_generation(pg), 2);
    cr_expect_eq(count_items(), 2);
    cr_expect_eq(PQtransactionStatus(ds_pg_conn(pg)), PQTRANS_IDLE);
    ds_pg_destroy(pg);
}

static int tx_fatal(ds_pg_t *pg, void *arg, char *errstr, size_t sz) {
    int *attempts = arg;
    (*attempts)++;
    const char *v1[] = {"1", "one"};
    int rc = ds_pg_exec_prepared(pg, "ins", 2, v1, NULL, NULL, NULL, errstr, sz);
    if (rc != DS_OK) return rc;
    return ds_pg_exec_prepared(pg, "ins", 2, v1, NULL, NULL, NULL, errstr, sz); /* duplicate */
}

static int tx_swallow(ds_pg_t *pg, void *arg, char *errstr, size_t sz) {
    (void)arg;
    ds_pg_exec(pg, "select 1/0", NULL, errstr, sz);
    return DS_OK; /* pretends all went well on a failed transaction */
}

Test(pg, tx_run_does_not_retry_fatal_errors) {
    ds_pg_t *pg = session();
    char err[512] = "";
    int attempts = 0;
    cr_expect_eq(ds_pg_tx_run(pg, tx_fatal, &attempts, 5, NULL, err, sizeof err), DS_EFATAL);
    cr_expect_eq(attempts, 1);
    cr_expect(strstr(err, "23505") != NULL, "%s", err);
    cr_expect_eq(count_items(), 0);
    cr_expect_eq(PQtransactionStatus(ds_pg_conn(pg)), PQTRANS_IDLE);
    cr_expect_eq(ds_pg_tx_run(pg, tx_swallow, NULL, 5, NULL, err, sizeof err), DS_EFATAL);
    cr_expect_eq(PQtransactionStatus(ds_pg_conn(pg)), PQTRANS_IDLE);
    ds_pg_destroy(pg);
}

/* ---- pipelined batches -------------------------------------------------- */

typedef struct {
    int n;
    const char *suffix;
    int results, inserted, updated, errors;
    bool order_ok;
} up_t;

static int up_cb(void *ud, void *tag, const PGresult *res, int err) {
    up_t *u = ud;
    if ((intptr_t)tag != u->results) u->order_ok = false;
    u->results++;
    if (err != DS_OK) {
        u->errors++;
        return 0;
    }
    if (PQntuples(res) != 1) return DS_EFATAL;
    if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
        u->inserted++;
    else
        u->updated++;
    return 0;
}

static int tx_upsert(ds_pg_t *pg, void *arg, char *errstr, size_t sz) {
    up_t *u = arg;
    u->results = u->inserted = u->updated = u->errors = 0;
    u->order_ok = true;
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    for (int i = 0; i < u->n; i++) {
        char id[16], v[64];
        snprintf(id, sizeof id, "%d", i);
        snprintf(v, sizeof v, "item %d %s", i, u->suffix);
        const char *vals[] = {id, v};
        cr_assert_eq(ds_pg_batch_add_prepared(b, "upsert", 2, vals, NULL, NULL, (void *)(intptr_t)i), DS_OK);
    }
    int rc = ds_pg_batch_run(b, up_cb, u, errstr, sz);
    ds_pg_batch_end(b);
    return rc;
}

Test(pg, batch_of_10000_upserts_lands_exactly) {
    ds_pg_t *pg = session();
    char err[512] = "";
    up_t u = {.n = 10000, .suffix = "a"};
    cr_assert_eq(ds_pg_tx_run(pg, tx_upsert, &u, 3, NULL, err, sizeof err), DS_OK, "%s", err);
    cr_expect_eq(u.results, 10000);
    cr_expect(u.order_ok, "callbacks in statement order");
    cr_expect_eq(u.inserted, 10000);
    cr_expect_eq(u.updated, 0);
    cr_expect_eq(count_items(), 10000);
    cr_expect_eq(pgt_longf(admin, "select count(*) from items where v = 'item ' || id || ' a'"), 10000);

    /* The same keys again: every row updated, none added. */
    u.suffix = "b";
    cr_assert_eq(ds_pg_tx_run(pg, tx_upsert, &u, 3, NULL, err, sizeof err), DS_OK, "%s", err);
    cr_expect_eq(u.updated, 10000);
    cr_expect_eq(u.inserted, 0);
    cr_expect_eq(count_items(), 10000);
    cr_expect_eq(pgt_longf(admin, "select count(*) from items where v like '%% b'"), 10000);
    ds_pg_destroy(pg);
}

typedef struct {
    int results, ok, failed, aborted;
} tally_t;

static int tally_cb(void *ud, void *tag, const PGresult *res, int err) {
    (void)tag;
    tally_t *t = ud;
    t->results++;
    if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
        t->aborted++;
    else if (err == DS_OK)
        t->ok++;
    else
        t->failed++;
    return 0;
}

Test(pg, batch_error_in_transaction_rolls_back_everything) {
    ds_pg_t *pg = session();
    char err[512] = "";
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    cr_assert_eq(ds_pg_batch_add_sql(b, "BEGIN", NULL), DS_OK);
    for (int i = 0; i < 10000; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i == 5000 ? 10 : i); /* row 5000 repeats id 10 */
        const char *vals[] = {id, "x"};
        cr_assert_eq(ds_pg_batch_add_prepared(b, "ins", 2, vals, NULL, NULL, NULL), DS_OK);
    }
    cr_assert_eq(ds_pg_batch_add_sql(b, "COMMIT", NULL), DS_OK);
    cr_expect_eq(ds_pg_batch_count(b), 10002);

    tally_t t = {0};
    int rc = ds_pg_batch_run(b, tally_cb, &t, err, sizeof err);
    cr_expect_eq(rc, DS_EFATAL, "%s: %s", ds_strerror(rc), err);
    cr_expect_str_eq(ds_pg_batch_sqlstate(b), "23505");
    cr_expect(strstr(err, "statement 5001: ") != NULL, "%s", err);
    cr_expect(strstr(err, "(SQLSTATE 23505)") != NULL, "%s", err);
    cr_expect_eq(t.results, 10002, "every statement reports its result");
    /* BEGIN and rows 0-4999 succeed; row 5000 fails and the rest of its
     * sync interval (statements 5000-5499) is skipped. In each of the ten
     * later intervals the first statement fails (25P02, the transaction is
     * aborted) and the others are skipped, the COMMIT among them, so the
     * batch rolls back the transaction it opened. */
    cr_expect_eq(t.ok, 5001, "%d ok", t.ok);
    cr_expect_eq(t.failed, 1 + 10, "%d failed", t.failed);
    cr_expect_eq(t.aborted, 498 + 9 * 499 + 1, "%d aborted", t.aborted);
    ds_pg_batch_end(b);

    cr_expect_eq(count_items(), 0);
    cr_expect(ds_pg_is_connected(pg));
    cr_expect_eq(PQtransactionStatus(ds_pg_conn(pg)), PQTRANS_IDLE);
    cr_expect_eq(ds_pg_exec(pg, "select 1", NULL, err, sizeof err), DS_OK, "%s", err);
    ds_pg_destroy(pg);
}

/* Error before the COMMIT's sync interval: the transaction is left failed
 * in the server, and the batch that opened it must roll it back. */
Test(pg, batch_rolls_back_its_own_failed_transaction) {
    ds_pg_t *pg = session();
    char err[512] = "";
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    ds_pg_batch_set_sync_every(b, 2);
    ds_pg_batch_add_sql(b, "BEGIN", NULL);
    const char *ok[] = {"1", "one"}, *bad[] = {"2", NULL};
    ds_pg_batch_add_prepared(b, "ins", 2, ok, NULL, NULL, NULL);
    ds_pg_batch_add_prepared(b, "ins", 2, bad, NULL, NULL, NULL);
    ds_pg_batch_add_sql(b, "COMMIT", NULL);
    cr_expect_eq(ds_pg_batch_run(b, NULL, NULL, err, sizeof err), DS_EFATAL);
    cr_expect_str_eq(ds_pg_batch_sqlstate(b), "23502");
    cr_expect_eq(ds_pg_batch_run(b, NULL, NULL, err, sizeof err), DS_EINVAL, "runs only once");
    ds_pg_batch_end(b);
    cr_expect_eq(PQtransactionStatus(ds_pg_conn(pg)), PQTRANS_IDLE);
    cr_expect_eq(count_items(), 0);
    ds_pg_destroy(pg);
}

static int tx_batch_with_bad_row(ds_pg_t *pg, void *arg, char *errstr, size_t sz) {
    int *attempts = arg;
    (*attempts)++;
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    for (int i = 0; i < 3000; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        const char *vals[] = {id, i == 1234 ? NULL : "x"};
        ds_pg_batch_add_prepared(b, "ins", 2, vals, NULL, NULL, NULL);
    }
    int rc = ds_pg_batch_run(b, NULL, NULL, errstr, sz);
    ds_pg_batch_end(b);
    return rc;
}

Test(pg, batch_inside_tx_run_is_atomic) {
    ds_pg_t *pg = session();
    char err[512] = "";
    int attempts = 0;
    cr_expect_eq(ds_pg_tx_run(pg, tx_batch_with_bad_row, &attempts, 5, NULL, err, sizeof err), DS_EFATAL);
    cr_expect_eq(attempts, 1);
    cr_expect(strstr(err, "statement 1234: ") != NULL, "%s", err);
    cr_expect(strstr(err, "23502") != NULL, "%s", err);
    cr_expect_eq(count_items(), 0);
    ds_pg_destroy(pg);
}

typedef struct {
    int results;
    size_t bytes;
} big_t;

static int big_cb(void *ud, void *tag, const PGresult *res, int err) {
    (void)tag;
    big_t *b = ud;
    b->results++;
    if (err == DS_OK && PQntuples(res) == 1) b->bytes += strlen(PQgetvalue(res, 0, 0));
    return 0;
}

/* Large parameters and large results with one sync at the end: in blocking
 * mode both sides would fill their send buffers and wait for each other. */
Test(pg, batch_with_big_rows_does_not_deadlock) {
    ds_pg_t *pg = session();
    char err[512] = "";
    enum { N = 2000, SZ = 16384 };
    char *big = malloc(SZ + 1);
    memset(big, 'y', SZ);
    big[SZ] = '\0';
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    ds_pg_batch_set_sync_every(b, N + 2);
    ds_pg_batch_add_sql(b, "BEGIN", NULL);
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        const char *vals[] = {id, big};
        ds_pg_batch_add_params(b, "insert into items (id, v) values ($1::int, $2::text) returning v", 2, vals,
                               NULL, NULL, NULL);
    }
    ds_pg_batch_add_sql(b, "COMMIT", NULL);
    free(big);
    big_t r = {0};
    cr_assert_eq(ds_pg_batch_run(b, big_cb, &r, err, sizeof err), DS_OK, "%s", err);
    ds_pg_batch_end(b);
    cr_expect_eq(r.results, N + 2);
    cr_expect_eq(r.bytes, (size_t)N * SZ);
    cr_expect_eq(count_items(), N);
    ds_pg_destroy(pg);
}

static int stop_at_3(void *ud, void *tag, const PGresult *res, int err) {
    (void)res, (void)err;
    int *calls = ud;
    (*calls)++;
    return (intptr_t)tag == 3 ? DS_ECONFLICT : 0;
}

Test(pg, batch_callback_failure_is_reported) {
    ds_pg_t *pg = session();
    char err[512] = "";
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    ds_pg_batch_set_sync_every(b, 1);
    for (int i = 0; i < 10; i++)
        ds_pg_batch_add_params(b, "select 1", 0, NULL, NULL, NULL, (void *)(intptr_t)i);
    int calls = 0;
    cr_expect_eq(ds_pg_batch_run(b, stop_at_3, &calls, err, sizeof err), DS_ECONFLICT);
    cr_expect_eq(calls, 4, "no calls after the callback failed");
    cr_expect(strstr(err, "statement 3: callback failed") != NULL, "%s", err);
    ds_pg_batch_end(b);
    cr_expect_eq(ds_pg_exec(pg, "select 1", NULL, err, sizeof err), DS_OK, "%s", err);
    ds_pg_destroy(pg);
}

Test(pg, batch_reports_lost_connection_as_retry) {
    ds_pg_t *pg = session();
    char err[512] = "";
    kill_backend(pg);
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    for (int i = 0; i < 100; i++) ds_pg_batch_add_sql(b, "select 1", NULL);
    /* The connection still looks fine to libpq until it is used. */
    int rc = ds_pg_batch_run(b, NULL, NULL, err, sizeof err);
    cr_expect_eq(rc, DS_ERETRY, "%s: %s", ds_strerror(rc), err);
    ds_pg_batch_end(b);
    cr_expect_not(ds_pg_is_connected(pg));
    cr_assert_eq(ds_pg_ensure(pg, 10000, NULL, err, sizeof err), DS_OK, "%s", err);
    cr_expect_eq(ds_pg_exec(pg, "select 1", NULL, err, sizeof err), DS_OK, "%s", err);
    ds_pg_destroy(pg);
}

/* ---- arrays ------------------------------------------------------------- */

Test(pg, array_literal_roundtrips_through_unnest) {
    ds_pg_t *pg = session();
    char err[512] = "";
    const char *vals[] = {"plain",    "say \"hi\"", "back\\slash", "a,b",  "{braces}", NULL,
                          "",         "NULL",       " padded ",    "\\\"", "ünïcödé",  "tab\tnew\nline",
                          "'single'", "}{",         "\\N"};
    size_t n = DS_ARRAY_SIZE(vals);
    char *lit = ds_pg_array_text(vals, n);
    const char *params[] = {lit};
    PGresult *r = NULL;
    cr_assert_eq(ds_pg_exec_params(pg,
                                   "select v, v is null from unnest($1::text[]) "
                                   "with ordinality as t(v, i) order by i",
                                   1, params, NULL, NULL, &r, err, sizeof err),
                 DS_OK, "%s", err);
    free(lit);
    cr_assert_eq((size_t)PQntuples(r), n);
    for (size_t i = 0; i < n; i++) {
        if (!vals[i]) {
            cr_expect(PQgetisnull(r, (int)i, 0), "element %zu is NULL", i);
        } else {
            cr_expect_not(PQgetisnull(r, (int)i, 0), "element %zu", i);
            cr_expect_str_eq(PQgetvalue(r, (int)i, 0), vals[i], "element %zu", i);
        }
    }
    PQclear(r);

    /* The bulk-upsert shape: parallel arrays into one statement. */
    enum { ROWS = 1000 };
    char *ids[ROWS], *texts[ROWS];
    for (int i = 0; i < ROWS; i++) {
        ids[i] = ds_asprintf("%d", i);
        texts[i] = ds_asprintf("row \"%d\", {%d}\\", i, i);
    }
    char *a1 = ds_pg_array_text((const char *const *)ids, ROWS);
    char *a2 = ds_pg_array_text((const char *const *)texts, ROWS);
    const char *p2[] = {a1, a2};
    cr_assert_eq(ds_pg_exec_params(pg,
                                   "insert into items (id, v) select * from unnest($1::int[], "
                                   "$2::text[]) on conflict (id) do update set v = excluded.v",
                                   2, p2, NULL, NULL, &r, err, sizeof err),
                 DS_OK, "%s", err);
    cr_expect_str_eq(PQcmdTuples(r), "1000");
    PQclear(r);
    cr_expect_eq(pgt_longf(admin, "select count(*) from items "
                                  "where v = format('row \"%%s\", {%%s}\\', id, id)"),
                 ROWS);
    for (int i = 0; i < ROWS; i++) {
        free(ids[i]);
        free(texts[i]);
    }
    free(a1);
    free(a2);
    ds_pg_destroy(pg);
}

Test(pg, binary_arrays_roundtrip_through_unnest) {
    ds_pg_t *pg = session();
    char err[512] = "";
    enum { COLS = 6, ROWS = 3 };
    ds_pgarray_t a[COLS] = {{0}};
    static const uint32_t oids[COLS] = {DS_OID_UUID, DS_OID_TIMESTAMPTZ, DS_OID_FLOAT8,
                                        DS_OID_BOOL, DS_OID_TEXT,        DS_OID_JSONB};
    for (int c = 0; c < COLS; c++) ds_pgarray_begin(&a[c], oids[c]);
    /* Row 1: ordinary values; row 2: extremes; row 3: NULLs where a column allows. */
    ds_pgarray_uuid(&a[0], "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    ds_pgarray_timestamptz(&a[1], 1764115200123456LL); /* 2025-11-26T00:00:00.123456Z */
    ds_pgarray_float8(&a[2], 0.1);
    ds_pgarray_bool(&a[3], true);
    ds_pgarray_text(&a[4], "m20261126T095059Z", 17);
    const char *doc = "{\"b\": [1, 2.5], \"a\": \"x\\\"y\"}";
    ds_pgarray_jsonb(&a[5], doc, strlen(doc));
    ds_pgarray_uuid(&a[0], "FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF");
    ds_pgarray_timestamptz(&a[1], -1000000LL); /* before 1970 and before 2000 */
    ds_pgarray_float8(&a[2], -1.0 / 3.0);
    ds_pgarray_bool(&a[3], false);
    ds_pgarray_text(&a[4], "ünï \"q\" ,{}", strlen("ünï \"q\" ,{}"));
    ds_pgarray_jsonb(&a[5], "[]", 2);
    ds_pgarray_null(&a[0]);
    ds_pgarray_null(&a[1]);
    ds_pgarray_null(&a[2]);
    ds_pgarray_null(&a[3]);
    ds_pgarray_text(&a[4], NULL, 0);
    ds_pgarray_jsonb(&a[5], NULL, 0);
    const char *v[COLS];
    int lens[COLS], fmts[COLS];
    for (int c = 0; c < COLS; c++) {
        ds_pgarray_finish(&a[c]);
        cr_expect_eq(a[c].n, (size_t)ROWS);
        v[c] = a[c].p;
        lens[c] = (int)a[c].len;
        fmts[c] = 1;
    }
    PGresult *r = NULL;
    cr_assert_eq(
        ds_pg_exec_params(pg,
                          "select u::text, to_char(t at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'),"
                          " f = 0.1::float8, f = -1::float8 / 3, b::text, x, j::text, i"
                          " from unnest($1::uuid[], $2::timestamptz[], $3::float8[], $4::bool[],"
                          " $5::text[], $6::jsonb[]) with ordinality as z(u, t, f, b, x, j, i) order by i",
                          COLS, v, lens, fmts, &r, err, sizeof err),
        DS_OK, "%s", err);
    for (int c = 0; c < COLS; c++) ds_pgarray_free(&a[c]);
    cr_assert_eq(PQntuples(r), ROWS);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    cr_expect_str_eq(PQgetvalue(r, 0, 1), "2025-11-26T00:00:00.123456");
    cr_expect_str_eq(PQgetvalue(r, 0, 2), "t", "0.1 arrives bit-exact");
    cr_expect_str_eq(PQgetvalue(r, 0, 4), "true");
    cr_expect_str_eq(PQgetvalue(r, 0, 5), "m20261126T095059Z");
    cr_expect_str_eq(PQgetvalue(r, 0, 6), "{\"a\": \"x\\\"y\", \"b\": [1, 2.5]}");
    cr_expect_str_eq(PQgetvalue(r, 1, 0), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    cr_expect_str_eq(PQgetvalue(r, 1, 1), "1969-12-31T23:59:59.000000");
    cr_expect_str_eq(PQgetvalue(r, 1, 3), "t", "-1/3 arrives bit-exact");
    cr_expect_str_eq(PQgetvalue(r, 1, 4), "false");
    cr_expect_str_eq(PQgetvalue(r, 1, 5), "ünï \"q\" ,{}");
    cr_expect_str_eq(PQgetvalue(r, 1, 6), "[]");
    for (int c = 0; c < 7; c++) cr_expect(PQgetisnull(r, 2, c), "row 3, column %d is NULL", c + 1);
    PQclear(r);

    /* Invalid JSON in a jsonb element is the server's error, not a crash. */
    ds_pgarray_t bad = {0};
    ds_pgarray_begin(&bad, DS_OID_JSONB);
    ds_pgarray_jsonb(&bad, "{nope", 5);
    ds_pgarray_finish(&bad);
    const char *bv[] = {bad.p};
    const int bl[] = {(int)bad.len}, bf[] = {1};
    cr_expect_neq(ds_pg_exec_params(pg, "select count(*) from unnest($1::jsonb[])", 1, bv, bl, bf, NULL, err,
                                    sizeof err),
                  DS_OK);
    cr_expect(strstr(err, "json") != NULL, "the error names JSON: %s", err);
    ds_pgarray_free(&bad);
    ds_pg_destroy(pg);
}

/* Parameters queued by reference (not copied) go out as they are when the
 * batch runs; json elements are stored verbatim (key order, spacing), and
 * an invalid one fails the transaction with nothing written. */
Test(pg, batch_by_reference_sends_the_callers_arrays) {
    ds_pg_t *pg = session();
    char err[512] = "";
    cr_assert_eq(
        ds_pg_exec(pg, "create table bt (id uuid primary key, d json, note text)", NULL, err, sizeof err),
        DS_OK, "%s", err);
    enum { ROWS = 3000 };
    ds_pgarray_t a[2] = {{0}};
    ds_pgarray_begin(&a[0], DS_OID_UUID);
    ds_pgarray_begin(&a[1], DS_OID_JSON);
    for (int i = 0; i < ROWS; i++) {
        char id[37], doc[64];
        snprintf(id, sizeof id, "00000000-0000-4000-8000-%012d", i + 1);
        int n = snprintf(doc, sizeof doc, "{\"z\":%d,  \"a\":[1,2.50]}", i);
        ds_pgarray_uuid(&a[0], id);
        if (i == 7)
            ds_pgarray_null(&a[1]);
        else
            ds_pgarray_json(&a[1], doc, (size_t)n);
    }
    for (int c = 0; c < 2; c++) ds_pgarray_finish(&a[c]);
    const char *v[3] = {a[0].p, a[1].p, NULL};
    int lens[3] = {(int)a[0].len, (int)a[1].len, 0}, fmts[3] = {1, 1, 0};
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    cr_assert_eq(ds_pg_batch_add_sql(b, "BEGIN", NULL), DS_OK);
    cr_assert_eq(ds_pg_batch_add_params_ref(b,
                                            "insert into bt (id, d, note) select x.i, x.d, $3"
                                            " from unnest($1::uuid[], $2::json[]) as x(i, d)",
                                            3, v, lens, fmts, NULL),
                 DS_OK);
    cr_assert_eq(ds_pg_batch_add_sql(b, "COMMIT", NULL), DS_OK);
    cr_assert_eq(ds_pg_batch_run(b, NULL, NULL, err, sizeof err), DS_OK, "%s", err);
    ds_pg_batch_end(b);
    PGresult *r = NULL;
    cr_assert_eq(ds_pg_exec(pg,
                            "select count(*), count(d), count(note), min(d::text) filter (where id ="
                            " '00000000-0000-4000-8000-000000000043'), sum((d->>'z')::int)"
                            " from bt",
                            &r, err, sizeof err),
                 DS_OK, "%s", err);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "3000");
    cr_expect_str_eq(PQgetvalue(r, 0, 1), "2999", "one NULL element");
    cr_expect_str_eq(PQgetvalue(r, 0, 2), "0", "a NULL parameter");
    cr_expect_str_eq(PQgetvalue(r, 0, 3), "{\"z\":42,  \"a\":[1,2.50]}", "json keeps the text as sent");
    cr_expect_str_eq(PQgetvalue(r, 0, 4), "4498493", "0 + ... + 2999 - 7");
    PQclear(r);

    /* An invalid document: the server's error, the transaction rolled back. */
    ds_pgarray_t bad[2] = {{0}};
    ds_pgarray_begin(&bad[0], DS_OID_UUID);
    ds_pgarray_begin(&bad[1], DS_OID_JSON);
    ds_pgarray_uuid(&bad[0], "00000000-0000-4000-8000-999999999999");
    ds_pgarray_json(&bad[1], "{nope", 5);
    for (int c = 0; c < 2; c++) ds_pgarray_finish(&bad[c]);
    const char *bv[3] = {bad[0].p, bad[1].p, "x"};
    int bl[3] = {(int)bad[0].len, (int)bad[1].len, 1};
    ds_pg_batch_begin(pg, &b);
    ds_pg_batch_add_sql(b, "BEGIN", NULL);
    ds_pg_batch_add_params_ref(b,
                               "insert into bt (id, d, note) select x.i, x.d, $3"
                               " from unnest($1::uuid[], $2::json[]) as x(i, d)",
                               3, bv, bl, fmts, NULL);
    ds_pg_batch_add_sql(b, "COMMIT", NULL);
    cr_expect_eq(ds_pg_batch_run(b, NULL, NULL, err, sizeof err), DS_EFATAL);
    cr_expect_str_eq(ds_pg_batch_sqlstate(b), "22P02", "%s", err);
    ds_pg_batch_end(b);
    cr_expect_eq(PQtransactionStatus(ds_pg_conn(pg)), PQTRANS_IDLE);
    cr_assert_eq(ds_pg_exec(pg, "select count(*) from bt", &r, err, sizeof err), DS_OK, "%s", err);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "3000");
    PQclear(r);
    for (int c = 0; c < 2; c++) {
        ds_pgarray_free(&a[c]);
        ds_pgarray_free(&bad[c]);
    }
    ds_pg_destroy(pg);
}

/* ---- notifications ------------------------------------------------------ */

typedef struct {
    int count;
    char channel[64];
    char payload[64];
    int pid;
} note_t;

static void note_cb(void *ud, const char *channel, const char *payload, int be_pid) {
    note_t *n = ud;
    n->count++;
    snprintf(n->channel, sizeof n->channel, "%s", channel);
    snprintf(n->payload, sizeof n->payload, "%s", payload);
    n->pid = be_pid;
}

/* Polls the session's socket until a notification arrives or 10 s pass. */
static void wait_note(ds_pg_t *pg, note_t *n) {
    long long deadline = pgt_now_ms() + 10000;
    for (;;) {
        int got = ds_pg_notifies(pg, note_cb, n);
        cr_assert(got >= 0, "connection lost");
        if (n->count > 0) return;
        long long left = deadline - pgt_now_ms();
        cr_assert(left > 0, "no notification within 10 s");
        struct pollfd pfd = {ds_pg_socket(pg), POLLIN, 0};
        poll(&pfd, 1, (int)left);
    }
}

/* Polls until ds_pg_notifies notices the connection is gone: the server's
 * goodbye message and the end of the stream may take two reads. */
static void wait_lost(ds_pg_t *pg) {
    long long deadline = pgt_now_ms() + 10000;
    while (ds_pg_notifies(pg, NULL, NULL) >= 0) {
        long long left = deadline - pgt_now_ms();
        cr_assert(left > 0, "the lost connection went unnoticed for 10 s");
        struct pollfd pfd = {ds_pg_socket(pg), POLLIN, 0};
        poll(&pfd, 1, (int)left);
    }
    cr_expect_not(ds_pg_is_connected(pg));
}

Test(pg, listen_notify_delivers_payload) {
    ds_pg_t *pg = session();
    char err[512] = "";
    cr_assert_eq(ds_pg_listen(pg, "Model Swap", err, sizeof err), DS_OK, "%s", err);
    pgt_exec(admin, "select pg_notify('Model Swap', 'v42')");
    note_t n = {0};
    wait_note(pg, &n);
    cr_expect_eq(n.count, 1);
    cr_expect_str_eq(n.channel, "Model Swap");
    cr_expect_str_eq(n.payload, "v42");
    cr_expect_eq(n.pid, PQbackendPID(admin));

    /* After a reconnect the session listens again by itself. */
    kill_backend(pg);
    wait_lost(pg);
    cr_assert_eq(ds_pg_ensure(pg, 10000, NULL, err, sizeof err), DS_OK, "%s", err);
    pgt_exec(admin, "notify \"Model Swap\", 'v43'");
    n = (note_t){0};
    wait_note(pg, &n);
    cr_expect_str_eq(n.payload, "v43");
    ds_pg_destroy(pg);
}
