/* Unit tests for the libpq wrapper that need no server: error classes,
 * error text, array literals, the backoff schedule, URL handling, and how
 * connecting gives up against a port nobody listens on. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "infra/pg.h"

static void quiet(void) { ds_log_init("test", DS_LOG_ERROR); }

TestSuite(pg, .init = quiet);

Test(pg, classify_sqlstate_retryable) {
    const char *codes[] = {"08000", "08003", "08006", "08001", "08004", "08P01", "40001",
                           "40P01", "53000", "53100", "53200", "53300", "53400", "57P01",
                           "57P02", "57P03", "55P03", "58000", "58030", "58P01"};
    for (size_t i = 0; i < DS_ARRAY_SIZE(codes); i++)
        cr_expect_eq(ds_pg_classify_sqlstate(codes[i]), DS_ERETRY, "%s should be retryable", codes[i]);
}

Test(pg, classify_sqlstate_fatal) {
    const char *codes[] = {"22001", "22012", "22P02", "23505", "23503", "23502", "23514",
                           "42601", "42P01", "42501", "42703", "25P02", "40002", "40003",
                           "55000", "55006", "57014", "57000", "XX000", "0A000", "P0001"};
    for (size_t i = 0; i < DS_ARRAY_SIZE(codes); i++)
        cr_expect_eq(ds_pg_classify_sqlstate(codes[i]), DS_EFATAL, "%s should be fatal", codes[i]);
}

Test(pg, classify_sqlstate_success_and_malformed) {
    cr_expect_eq(ds_pg_classify_sqlstate("00000"), DS_OK);
    cr_expect_eq(ds_pg_classify_sqlstate("01000"), DS_OK);
    cr_expect_eq(ds_pg_classify_sqlstate("02000"), DS_OK);
    cr_expect_eq(ds_pg_classify_sqlstate(NULL), DS_EFATAL);
    cr_expect_eq(ds_pg_classify_sqlstate(""), DS_EFATAL);
    cr_expect_eq(ds_pg_classify_sqlstate("08"), DS_EFATAL);
    cr_expect_eq(ds_pg_classify_sqlstate("0800"), DS_EFATAL);
    cr_expect_eq(ds_pg_classify_sqlstate("080000"), DS_EFATAL);
}

Test(pg, classify_results_by_status) {
    struct {
        ExecStatusType st;
        int want;
    } cases[] = {
        {PGRES_COMMAND_OK, DS_OK},
        {PGRES_TUPLES_OK, DS_OK},
        {PGRES_EMPTY_QUERY, DS_OK},
        {PGRES_PIPELINE_SYNC, DS_OK},
        {PGRES_BAD_RESPONSE, DS_ERETRY},
        {PGRES_PIPELINE_ABORTED, DS_EFATAL},
        /* An error libpq made up itself has no SQLSTATE. */
        {PGRES_FATAL_ERROR, DS_EFATAL},
    };
    for (size_t i = 0; i < DS_ARRAY_SIZE(cases); i++) {
        PGresult *r = PQmakeEmptyPGresult(NULL, cases[i].st);
        cr_assert_not_null(r);
        cr_expect_eq(ds_pg_classify(r, NULL), cases[i].want, "status %s", PQresStatus(cases[i].st));
        PQclear(r);
    }
    /* No result at all: the connection is unusable. */
    cr_expect_eq(ds_pg_classify(NULL, NULL), DS_ERETRY);
}

Test(pg, classify_bad_connection_is_retryable) {
    /* A connection that failed: every error on it is transient. */
    PGconn *c = PQconnectdb("host=/nonexistent-ds-dir port=1 connect_timeout=1");
    cr_assert_eq(PQstatus(c), CONNECTION_BAD);
    PGresult *err = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    PGresult *ok = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
    cr_expect_eq(ds_pg_classify(err, c), DS_ERETRY);
    cr_expect_eq(ds_pg_classify(NULL, c), DS_ERETRY);
    cr_expect_eq(ds_pg_classify(ok, c), DS_OK);

    char buf[512];
    ds_pg_error_text(NULL, c, buf, sizeof buf);
    cr_expect_null(strchr(buf, '\n'), "one line: %s", buf);
    cr_expect_null(strchr(buf, '\t'), "one line: %s", buf);
    cr_expect(strstr(buf, "nonexistent-ds-dir") != NULL, "libpq's message: %s", buf);
    PQclear(err);
    PQclear(ok);
    PQfinish(c);
}

Test(pg, error_text_without_anything) {
    char buf[128];
    cr_expect_str_eq(ds_pg_error_text(NULL, NULL, buf, sizeof buf), "no connection to postgres");
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_PIPELINE_ABORTED);
    cr_expect(strstr(ds_pg_error_text(r, NULL, buf, sizeof buf), "skipped") != NULL, "%s", buf);
    PQclear(r);
    char tiny[8];
    ds_pg_error_text(NULL, NULL, tiny, sizeof tiny);
    cr_expect_eq(strlen(tiny), sizeof tiny - 1);
}

Test(pg, array_text_quotes_and_escapes) {
    const char *vals[] = {"plain", "say \"hi\"", "back\\slash", "a,b",  "{braces}", NULL,
                          "",      "NULL",       " x ",         "\\\"", "ünïcödé",  "new\nline"};
    char *s = ds_pg_array_text(vals, DS_ARRAY_SIZE(vals));
    cr_expect_str_eq(s, "{\"plain\",\"say \\\"hi\\\"\",\"back\\\\slash\",\"a,b\",\"{braces}\","
                        "NULL,\"\",\"NULL\",\" x \",\"\\\\\\\"\",\"ünïcödé\",\"new\nline\"}");
    free(s);
}

Test(pg, array_text_empty_and_single_null) {
    char *s = ds_pg_array_text(NULL, 0);
    cr_expect_str_eq(s, "{}");
    free(s);
    const char *one[] = {NULL};
    s = ds_pg_array_text(one, 1);
    cr_expect_str_eq(s, "{NULL}");
    free(s);
    const char *empty[] = {""};
    s = ds_pg_array_text(empty, 1);
    cr_expect_str_eq(s, "{\"\"}");
    free(s);
}

Test(pg, backoff_doubles_to_five_seconds_with_jitter) {
    uint64_t seed = 42;
    for (int round = 0; round < 200; round++) {
        for (int a = 0; a < 12; a++) {
            int cap = 100 << a;
            if (cap > 5000) cap = 5000;
            int d = ds_pg_backoff_ms(a, &seed);
            cr_assert(d >= cap / 2 && d <= cap, "attempt %d: %d not in [%d, %d]", a, d, cap / 2, cap);
        }
    }
    /* Huge and negative attempts stay in range. */
    int d = ds_pg_backoff_ms(1000000, &seed);
    cr_expect(d >= 2500 && d <= 5000);
    d = ds_pg_backoff_ms(-3, &seed);
    cr_expect(d >= 50 && d <= 100);
}

Test(pg, backoff_is_deterministic_per_seed) {
    uint64_t s1 = 7, s2 = 7, s3 = 8;
    int same = 1, differs = 0;
    for (int a = 0; a < 10; a++) {
        int x = ds_pg_backoff_ms(a, &s1), y = ds_pg_backoff_ms(a, &s2), z = ds_pg_backoff_ms(a, &s3);
        if (x != y) same = 0;
        if (x != z) differs = 1;
    }
    cr_expect(same, "the same seed gives the same schedule");
    cr_expect(differs, "another seed gives another schedule");
}

Test(pg, url_check_accepts_uris_and_conninfo) {
    char err[256] = "";
    cr_expect_eq(ds_pg_url_check("postgresql://postgres@127.0.0.1:5432/postgres", err, sizeof err), DS_OK,
                 "%s", err);
    cr_expect_eq(ds_pg_url_check("postgres://u:p@h/db?sslmode=disable&connect_timeout=3", err, sizeof err),
                 DS_OK, "%s", err);
    cr_expect_eq(ds_pg_url_check("host=localhost port=5432 dbname=x user=y", err, sizeof err), DS_OK, "%s",
                 err);
}

Test(pg, url_check_rejects_garbage_without_leaking_the_password) {
    char err[256] = "";
    cr_expect_eq(ds_pg_url_check("not a url", err, sizeof err), DS_EINVAL);
    cr_expect(strstr(err, "invalid database url") != NULL, "%s", err);
    cr_expect_eq(ds_pg_url_check("postgresql://u:pw@h/db?nosuchparam=1", err, sizeof err), DS_EINVAL);
    cr_expect(strstr(err, "nosuchparam") != NULL, "%s", err);
    /* libpq quotes the bad token, which here is the password. */
    cr_expect_eq(ds_pg_url_check("postgresql://u:%zzs3cret@h/db", err, sizeof err), DS_EINVAL);
    cr_expect_null(strstr(err, "s3cret"), "password leaked: %s", err);
    cr_expect_eq(ds_pg_url_check(NULL, err, sizeof err), DS_EINVAL);
}

Test(pg, url_describe_leaves_out_the_password) {
    char *d = ds_pg_url_describe("postgresql://alice:s3cret@db.example:6543/sales");
    cr_expect_str_eq(d, "alice@db.example:6543/sales");
    free(d);
    d = ds_pg_url_describe("host=/run/pg dbname=x password=s3cret");
    cr_expect_str_eq(d, "/run/pg/x");
    free(d);
    d = ds_pg_url_describe("not a url");
    cr_expect_str_eq(d, "(invalid database url)");
    free(d);
}

Test(pg, url_with_replaces_and_removes_settings) {
    char err[256];
    const char *keys[] = {"dbname", "password", "sslmode"};
    const char *vals[] = {"other db", NULL, "disable"};
    char *ci = ds_pg_url_with("postgresql://u:pw@h:1234/first", keys, vals, 3, err, sizeof err);
    cr_assert_not_null(ci, "%s", err);
    char *d = ds_pg_url_describe(ci);
    cr_expect_str_eq(d, "u@h:1234/other db");
    free(d);
    cr_expect_null(strstr(ci, "pw"), "%s", ci);
    cr_expect(strstr(ci, "sslmode='disable'") != NULL, "%s", ci);
    cr_expect_eq(ds_pg_url_check(ci, err, sizeof err), DS_OK, "%s", err);
    free(ci);
    cr_expect_null(ds_pg_url_with("not a url", keys, vals, 3, err, sizeof err));
}

/* A loopback port nobody listens on: connecting is refused at once. */
static int dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

Test(pg, connect_gives_up_after_max_wait) {
    char url[128], err[512] = "";
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres", dead_port());
    PGconn *c = (PGconn *)1;
    int64_t t0 = ds_mono_us();
    int rc = ds_pg_connect(&c, url, 700, NULL, err, sizeof err);
    int64_t ms = (ds_mono_us() - t0) / 1000;
    cr_expect_eq(rc, DS_ERETRY, "%s", ds_strerror(rc));
    cr_expect_null(c);
    cr_expect(ms < 1500, "took %lld ms", (long long)ms);
    /* 50-100, 100-200, 200-400 ms: at least three tries fit in 700 ms. */
    int tries = 0;
    const char *p = strstr(err, "after ");
    cr_assert_not_null(p, "%s", err);
    tries = atoi(p + 6);
    cr_expect(tries >= 3, "%d tries: %s", tries, err);
}

Test(pg, connect_zero_wait_tries_once) {
    char url[128], err[512] = "";
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres", dead_port());
    PGconn *c = NULL;
    cr_expect_eq(ds_pg_connect(&c, url, 0, NULL, err, sizeof err), DS_ERETRY);
    cr_expect(strstr(err, "after 1 tries") != NULL, "%s", err);
    cr_expect(strstr(err, "127.0.0.1") != NULL, "%s", err);
}

Test(pg, connect_honours_stop) {
    char url[128], err[512] = "";
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres", dead_port());
    volatile int stop = 1;
    PGconn *c = NULL;
    cr_expect_eq(ds_pg_connect(&c, url, -1, &stop, err, sizeof err), DS_ESHUTDOWN);
    cr_expect_null(c);
}

Test(pg, connect_rejects_bad_url_without_retrying) {
    char err[256] = "";
    PGconn *c = NULL;
    int64_t t0 = ds_mono_us();
    cr_expect_eq(ds_pg_connect(&c, "not a url", -1, NULL, err, sizeof err), DS_EINVAL);
    cr_expect((ds_mono_us() - t0) < 1000000);
}

static int never_called(void *ud, void *tag, const PGresult *res, int err) {
    (void)ud, (void)tag, (void)res, (void)err;
    cr_expect_fail("callback called");
    return 0;
}

Test(pg, session_without_connection) {
    ds_pg_t *pg = NULL;
    char err[256] = "";
    cr_expect_eq(ds_pg_new(&pg, "not a url", NULL, err, sizeof err), DS_EINVAL);
    cr_expect_null(pg);
    cr_assert_eq(ds_pg_new(&pg, "postgresql://postgres@127.0.0.1:1/x", "t", err, sizeof err), DS_OK);
    cr_expect_not(ds_pg_is_connected(pg));
    cr_expect_eq(ds_pg_socket(pg), -1);
    cr_expect_eq(ds_pg_generation(pg), 0);

    cr_expect_eq(ds_pg_add_statement(pg, "s1", "SELECT $1::int", 1), DS_OK);
    cr_expect_eq(ds_pg_add_statement(pg, "s1", "SELECT $1::int", 1), DS_OK);
    cr_expect_eq(ds_pg_add_statement(pg, "s1", "SELECT $1::bigint", 1), DS_EINVAL);

    PGresult *r = (PGresult *)1;
    cr_expect_eq(ds_pg_exec(pg, "SELECT 1", &r, err, sizeof err), DS_ERETRY);
    cr_expect_null(r);
    cr_expect_str_eq(err, "no connection to postgres");

    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    const char *v[] = {"1"};
    cr_expect_eq(ds_pg_batch_add_prepared(b, "s1", 2, v, NULL, NULL, NULL), DS_EINVAL);
    cr_expect_eq(ds_pg_batch_add_prepared(b, "s1", 1, v, NULL, NULL, NULL), DS_OK);
    cr_expect_eq(ds_pg_batch_add_sql(b, "COMMIT", NULL), DS_OK);
    cr_expect_eq(ds_pg_batch_count(b), 2);
    cr_expect_eq(ds_pg_batch_run(b, never_called, NULL, err, sizeof err), DS_ERETRY);
    cr_expect_str_eq(ds_pg_batch_sqlstate(b), "");
    ds_pg_batch_end(b);
    ds_pg_batch_end(NULL);

    cr_expect_eq(ds_pg_listen(pg, "", err, sizeof err), DS_EINVAL);
    cr_expect_eq(ds_pg_listen(pg, "chan", err, sizeof err), DS_OK);
    cr_expect_eq(ds_pg_notifies(pg, NULL, NULL), DS_ERETRY);
    ds_pg_destroy(pg);
    ds_pg_destroy(NULL);
}

static int tx_never(ds_pg_t *pg, void *ud, char *errstr, size_t sz) {
    (void)pg, (void)ud, (void)errstr, (void)sz;
    cr_expect_fail("transaction body ran without a connection");
    return 0;
}

Test(pg, tx_run_without_server_gives_up) {
    char url[128], err[512] = "";
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres", dead_port());
    ds_pg_t *pg = NULL;
    cr_assert_eq(ds_pg_new(&pg, url, NULL, err, sizeof err), DS_OK);
    cr_expect_eq(ds_pg_tx_run(pg, tx_never, NULL, 2, NULL, err, sizeof err), DS_ERETRY);
    cr_expect(strstr(err, "gave up after 2 attempts") != NULL, "%s", err);
    volatile int stop = 1;
    cr_expect_eq(ds_pg_tx_run(pg, tx_never, NULL, 0, &stop, err, sizeof err), DS_ESHUTDOWN);
    ds_pg_destroy(pg);
}
