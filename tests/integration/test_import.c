/* dealscore-ingest import against a fresh migrated database per test: exact
 * rows from a clean fixture set (history of a deal rebuilt from change
 * rows), a re-import that changes nothing, a dirty set whose problems are
 * reported by file and line while the other rows are imported, exit codes,
 * column aliases and unknown columns, parents arriving after children,
 * flat memory on a large file, and an import that survives its Postgres
 * session being killed. Needs DEALSCORE_DATABASE_URL (a superuser URL). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "pgtest.h"
#include "proc.h"

#define FIXTURES DS_SOURCE_DIR "/tests/fixtures/import"
#define RUN_TIMEOUT_MS 120000

static pgt_db_t db;
static PGconn *conn;
static char *env_url;
static char tmpdir[64];

static void setup(void) {
    unsetenv("DEALSCORE_CSV_ALIASES");
    pgt_db_create(&db);
    pgt_migrate_ok(&db);
    conn = pgt_connect_db(&db);
    env_url = pgt_fmt("DEALSCORE_DATABASE_URL=%s", db.conninfo);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ds-import-XXXXXX");
    if (!mkdtemp(tmpdir)) cr_fatal("mkdtemp: %s", strerror(errno));

    /* The org comes from the token command, as an operator would make it. */
    char *bin = proc_bin("dealscore-ingest");
    char *argv[] = {bin, "token", "create", "--org", "acme", NULL};
    char *env[] = {env_url, NULL};
    char *out = NULL, *err = NULL;
    int rc = proc_run(argv, env, &out, &err, RUN_TIMEOUT_MS);
    if (rc != 0) cr_fatal("token create exited %d:\n%s%s", rc, out, err);
    free(out);
    free(err);
    free(bin);
}

static void teardown(void) {
    if (tmpdir[0]) {
        DIR *d = opendir(tmpdir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char *p = pgt_fmt("%s/%s", tmpdir, e->d_name);
            unlink(p);
            free(p);
        }
        if (d) closedir(d);
        rmdir(tmpdir);
    }
    PQfinish(conn);
    pgt_db_drop(&db);
    free(env_url);
}

TestSuite(import, .init = setup, .fini = teardown, .timeout = 240);

typedef struct {
    int rc;
    char *out, *err;
} run_t;

static void run_free(run_t *r) {
    free(r->out);
    free(r->err);
}

/* Runs `dealscore-ingest import ARGS...` (NULL-terminated) in directory dir,
 * so reports name the files as given; extra_env may add variables. */
static run_t run_import_env(const char *dir, char *const *extra_env, ...) {
    char *argv[32];
    size_t n = 0;
    argv[n++] = proc_bin("dealscore-ingest");
    argv[n++] = "import";
    va_list ap;
    va_start(ap, extra_env);
    for (char *a; (a = va_arg(ap, char *)) && n < 31;) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char *env[8];
    size_t ne = 0;
    env[ne++] = env_url;
    for (char *const *e = extra_env; e && *e && ne < 7; e++) env[ne++] = *e;
    env[ne] = NULL;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) cr_fatal("getcwd: %s", strerror(errno));
    if (chdir(dir) != 0) cr_fatal("chdir %s: %s", dir, strerror(errno));
    run_t r = {0};
    r.rc = proc_run(argv, env, &r.out, &r.err, RUN_TIMEOUT_MS);
    if (chdir(cwd) != 0) cr_fatal("chdir back: %s", strerror(errno));
    free(argv[0]);
    if (r.rc < 0) cr_fatal("import did not finish in time:\n%s%s", r.out, r.err);
    return r;
}
#define run_import(dir, ...) run_import_env(dir, NULL, __VA_ARGS__, NULL)

static run_t import_all(const char *set) {
    char *dir = pgt_fmt("%s/%s", FIXTURES, set);
    run_t r =
        run_import(dir, "--org", "acme", "--transcripts", "transcripts.csv", "--interactions",
                   "interactions.csv", "--opportunities", "opportunities.csv", "--accounts", "accounts.csv");
    free(dir);
    return r;
}

static bool has_prefix_line(const char *text, const char *prefix) {
    return pgt_count_lines(text, prefix) > 0;
}

/* Problem lines: "FILE:LINE: FIELD: PROBLEM" for any *.csv file, not
 * warnings. */
static int count_problems(const char *text) {
    int n = 0;
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        char *line = strndup(l, len);
        const char *csv = strstr(line, ".csv:");
        if (csv && csv[5] >= '0' && csv[5] <= '9' && !strstr(line, ": warning: ")) n++;
        free(line);
        if (!nl) break;
        l = nl + 1;
    }
    return n;
}

static long long count(const char *table) {
    return pgt_longf(conn, "select count(*) from %s%s", strchr(table, '.') ? "" : "public.", table);
}

#define expect_line(text, line)                                                                              \
    cr_expect(pgt_has_line((text), (line)), "missing line \"%s\" in:\n%s", (line), (text))
#define expect_prefix(text, prefix)                                                                          \
    cr_expect(has_prefix_line((text), (prefix)), "no line starting \"%s\" in:\n%s", (prefix), (text))

Test(import, clean_files_give_exact_rows_and_history) {
    run_t r = import_all("clean");
    cr_assert_eq(r.rc, 0, "exit %d\nstdout:\n%s\nstderr:\n%s", r.rc, r.out, r.err);
    expect_prefix(r.out, "accounts.csv: 3 rows: 3 imported (3 changed, 0 unchanged, 0 events), 0 rejected");
    expect_prefix(r.out,
                  "opportunities.csv: 9 rows: 9 imported (9 changed, 0 unchanged, 9 events), 0 rejected");
    expect_prefix(r.out,
                  "interactions.csv: 6 rows: 6 imported (6 changed, 0 unchanged, 6 events), 0 rejected");
    expect_prefix(r.out,
                  "transcripts.csv: 2 rows: 2 imported (2 changed, 0 unchanged, 2 events), 0 rejected");
    expect_prefix(r.out, "imported 20 records (20 changed, 0 unchanged, 17 events), 0 rejected, in ");
    cr_expect_eq(count_problems(r.err), 0, "unexpected problems:\n%s", r.err);

    cr_expect_eq(count("accounts"), 3);
    cr_expect_eq(count("opportunities"), 3);
    cr_expect_eq(count("interactions"), 6);
    cr_expect_eq(count("transcripts"), 2);
    cr_expect_eq(count("opportunity_history"), 19);
    /* accounts came first (no deals to announce); every other row is one event */
    cr_expect_eq(count("dealscore_internal.outbox"), 17);
    cr_expect_eq(pgt_longf(conn, "select count(*) from dealscore_internal.outbox where source = 'csv'"), 17);
    cr_expect_eq(pgt_longf(conn, "select count(*) from public.opportunities where placeholder"), 0);
    cr_expect_eq(pgt_longf(conn, "select count(*) from public.accounts where placeholder"), 0);

    /* opp-1's history, rebuilt from its five change rows. */
    PGresult *h = pgt_query(
        conn, "select h.field || '|' || coalesce(h.old_value, '-') || '|' || coalesce(h.new_value, '-')"
              " || '|' || to_char(h.changed_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
              " from public.opportunity_history h join public.opportunities o on o.id = h.opportunity_id"
              " where o.external_id = 'opp-1' order by h.changed_at, h.id");
    static const char *const want[] = {
        "stage|-|prospecting|2025-02-01T10:00:00Z",
        "amount|-|10000|2025-02-01T10:00:00Z",
        "close_date|-|2025-06-30|2025-02-01T10:00:00Z",
        "stage|prospecting|qualification|2025-02-10T10:00:00Z",
        "amount|10000|12000|2025-02-12T11:30:00Z",
        "close_date|2025-06-30|2025-07-31|2025-03-01T09:00:00Z",
        "stage|qualification|closed_won|2025-04-15T16:00:00Z",
        "close_date|2025-07-31|2025-04-15|2025-04-15T16:00:00Z",
        "outcome|open|won|2025-04-15T16:00:00Z",
    };
    cr_assert_eq(PQntuples(h), (int)PGT_N(want), "opp-1 has %d history rows", PQntuples(h));
    for (int i = 0; i < PQntuples(h); i++)
        cr_expect_str_eq(PQgetvalue(h, i, 0), want[i], "history row %d", i);
    PQclear(h);

    /* The final state is the last change row. */
    char *st =
        pgt_valuef(conn, "select stage || '|' || outcome || '|' || amount::text || '|' ||"
                         " close_date::text || '|' || a.name from public.opportunities o"
                         " join public.accounts a on a.id = o.account_id where o.external_id = 'opp-1'");
    cr_expect_str_eq(st, "closed_won|won|12000|2025-04-15|Acme, Inc.");
    free(st);
    /* Quoted fields: doubled quotes, commas and embedded newlines survive. */
    char *name = pgt_valuef(conn, "select name from public.accounts where external_id = 'acc-2'");
    cr_expect_str_eq(name, "Globex \"Global\" Corp");
    free(name);
    char *text = pgt_valuef(conn, "select text from public.transcripts where external_id = 'opp-1-t2'");
    cr_expect_str_eq(text, "Rep: Here is the demo.\nMaria: \"This is exactly what we need,\" said our CFO.");
    free(text);
    char *meta =
        pgt_valuef(conn, "select meta->>'subject' from public.interactions where external_id = 'opp-1-i1'");
    cr_expect_str_eq(meta, "Intro, pricing");
    free(meta);
    /* The buyer contact the meta names, in the column the feature loader reads. */
    char *contacts = pgt_valuef(conn, "select string_agg(external_id || '=' || coalesce(contact, '-'), ','"
                                      " order by external_id) from public.interactions");
    cr_expect_str_eq(contacts, "opp-1-i1=-,opp-1-i2=-,opp-1-i3=-,opp-2-i1=-,opp-2-i2=c-42,opp-3-i1=-");
    free(contacts);
    run_free(&r);
}

Test(import, reimport_changes_nothing) {
    run_t r = import_all("clean");
    cr_assert_eq(r.rc, 0, "first import exit %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    long long hist = count("opportunity_history"), outbox = count("dealscore_internal.outbox");
    char *before =
        pgt_valuef(conn, "select string_agg(source_hash || ingested_at::text, ',' order by external_id)"
                         " from public.opportunities");

    r = import_all("clean");
    cr_assert_eq(r.rc, 0, "second import exit %d:\n%s%s", r.rc, r.out, r.err);
    expect_prefix(r.out, "opportunities.csv: 9 rows: 9 imported (0 changed, 9 unchanged");
    expect_prefix(r.out, "imported 20 records (0 changed, 20 unchanged, 0 events), 0 rejected, in ");
    cr_expect_eq(count("opportunity_history"), hist);
    cr_expect_eq(count("dealscore_internal.outbox"), outbox);
    char *after =
        pgt_valuef(conn, "select string_agg(source_hash || ingested_at::text, ',' order by external_id)"
                         " from public.opportunities");
    cr_expect_str_eq(after, before, "re-import rewrote opportunity rows");
    free(before);
    free(after);
    run_free(&r);
}

Test(import, dirty_rows_are_reported_by_line_and_the_rest_imported) {
    run_t r = import_all("dirty");
    cr_assert_eq(r.rc, 1, "exit %d\nstdout:\n%s\nstderr:\n%s", r.rc, r.out, r.err);
    /* One line per problem, FILE:LINE where the record starts (header = 1). */
    static const char *const want[] = {
        "accounts.csv:3: external_id: ", /* blank key */
        "accounts.csv:4: created_at: ",  /* month 13 */
        "accounts.csv:7: record: has 7 fields but the header has 6",
        "opportunities.csv:3: amount: ",     /* negative */
        "opportunities.csv:4: outcome: ",    /* unknown enum */
        "opportunities.csv:5: created_at: ", /* "yesterday" */
        "opportunities.csv:5: close_date: ", /* February 30 */
        "opportunities.csv:7: stage: ",      /* blank required */
        "opportunities.csv:7: amount: ",     /* not a number */
        /* year 0000: Postgres refused it and the import echoed its error
         * (rejected_by_database) until the date parser refused it (issue 20) */
        "opportunities.csv:8: created_at: ",
        "interactions.csv:3: opportunity_external_id: ",
        "interactions.csv:3: type: ",
        "interactions.csv:3: duration_min: ",
        "interactions.csv:5: meta_json: ",
        /* after a three-line quoted transcript */
        "transcripts.csv:5: occurred_at: ",
        "transcripts.csv:6: opportunity_external_id: ",
        /* after a quoted field with a blank line inside */
        "transcripts.csv:9: text: ",
        /* blank line 11 between records, then a stray quote */
        "transcripts.csv:12: record: is not valid CSV",
        "transcripts.csv:14: record: is not valid CSV: a quoted field is never closed",
    };
    for (size_t i = 0; i < PGT_N(want); i++) expect_prefix(r.err, want[i]);
    cr_expect_eq(count_problems(r.err), (int)PGT_N(want), "problem lines:\n%s", r.err);
    expect_line(r.err, "opportunities.csv:4: outcome: must be one of open, won, lost");
    expect_line(r.err, "opportunities.csv:3: amount: must be >= 0");

    expect_prefix(r.out, "accounts.csv: 6 rows: 3 imported (2 changed, 1 unchanged, 0 events), 3 rejected");
    expect_prefix(r.out,
                  "opportunities.csv: 8 rows: 3 imported (3 changed, 0 unchanged, 3 events), 5 rejected");
    expect_prefix(r.out,
                  "interactions.csv: 5 rows: 3 imported (2 changed, 1 unchanged, 2 events), 2 rejected");
    expect_prefix(r.out,
                  "transcripts.csv: 8 rows: 3 imported (3 changed, 0 unchanged, 3 events), 5 rejected");
    expect_prefix(r.out, "imported 12 records (10 changed, 2 unchanged, 8 events), 15 rejected, in ");

    /* acc-1, acc-3 and the placeholder for acc-2 that opp-7 names */
    cr_expect_eq(count("accounts"), 3);
    cr_expect_eq(pgt_longf(conn, "select count(*) from public.accounts where placeholder"), 1);
    cr_expect_eq(pgt_longf(conn, "select count(*) from public.opportunities where not placeholder"), 2);
    cr_expect_eq(count("opportunities"), 2);
    cr_expect_eq(count("interactions"), 2);
    cr_expect_eq(count("transcripts"), 3);
    cr_expect_eq(count("dealscore_internal.outbox"), 8);
    char *stage = pgt_valuef(conn, "select stage from public.opportunities where external_id = 'opp-1'");
    cr_expect_str_eq(stage, "qualification");
    free(stage);
    char *t1 = pgt_valuef(conn, "select text from public.transcripts where external_id = 'opp-1-t1'");
    cr_expect_str_eq(t1, "Rep: Thanks, everyone.\nMaria: We need \"real\" numbers,\nby Friday.");
    free(t1);
    cr_expect_eq(pgt_longf(conn, "select count(*) from public.transcripts where external_id = 'opp-1-t7'"),
                 1);
    run_free(&r);
}

Test(import, errors_option_writes_csv) {
    char *dir = pgt_fmt("%s/dirty", FIXTURES);
    char *path = pgt_fmt("%s/errors.csv", tmpdir);
    run_t r = run_import(dir, "--org", "acme", "--accounts", "accounts.csv", "--errors", path);
    cr_assert_eq(r.rc, 1, "exit %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect_eq(count_problems(r.err), 0, "problems went to stderr too:\n%s", r.err);
    char *csv = proc_slurp(path);
    expect_line(csv, "file,line,field,problem");
    expect_line(csv, "\"accounts.csv\",3,\"external_id\",\"is required\"");
    expect_line(csv, "\"accounts.csv\",7,\"record\",\"has 7 fields but the header has 6\"");
    expect_prefix(csv, "\"accounts.csv\",4,\"created_at\",\"must be an ISO 8601");
    cr_expect_eq(pgt_count_lines(csv, "\"accounts.csv\","), 3, "%s", csv);
    free(csv);
    free(path);
    free(dir);
    run_free(&r);
}

Test(import, nothing_imported_exits_2) {
    char *dir = pgt_fmt("%s/allbad", FIXTURES);
    run_t r = run_import(dir, "--org", "acme", "--opportunities", "opportunities.csv");
    cr_expect_eq(r.rc, 2, "exit %d:\n%s%s", r.rc, r.out, r.err);
    expect_prefix(r.err, "opportunities.csv:2: created_at: ");
    expect_prefix(r.err, "opportunities.csv:3: external_id: ");
    expect_prefix(r.err, "opportunities.csv:4: amount: ");
    expect_prefix(r.out, "imported 0 records (0 changed, 0 unchanged, 0 events), 3 rejected");
    cr_expect_eq(count("opportunities"), 0);
    free(dir);
    run_free(&r);
}

Test(import, aliases_map_columns_and_unknown_columns_warn) {
    char *dir = pgt_fmt("%s/aliases", FIXTURES);
    /* " Id " and "Account_ID" through the built-in aliases, "Deal Stage"
     * through --alias, "Rep" through the environment; CRLF line ends. */
    char *env[] = {"DEALSCORE_CSV_ALIASES=rep=owner_id, crm_x = persona", NULL};
    run_t r = run_import_env(dir, env, "--org", "acme", "--alias", "Deal Stage=stage", "--opportunities",
                             "opportunities.csv", NULL);
    cr_assert_eq(r.rc, 0, "exit %d:\n%s%s", r.rc, r.out, r.err);
    expect_line(r.err,
                "opportunities.csv:1: warning: column \"Notes\" is not a field of opportunities; ignored");
    cr_expect_eq(pgt_count_lines(r.err, "opportunities.csv:1: warning:"), 1, "%s", r.err);
    char *row = pgt_valuef(conn, "select string_agg(external_id || '|' || account_external_id || '|' ||"
                                 " stage || '|' || amount::text || '|' || owner_id, ',' order by external_id)"
                                 " from public.opportunities where not placeholder");
    cr_expect_str_eq(row, "opp-a1|acc-1|prospecting|100|own-7,opp-a2|acc-1|demo|250.5|own-8");
    free(row);
    run_free(&r);

    /* Without the alias the required stage column is missing: nothing imported. */
    r = run_import_env(dir, env, "--org", "acme", "--opportunities", "opportunities.csv", NULL);
    cr_expect_eq(r.rc, 2, "exit %d:\n%s%s", r.rc, r.out, r.err);
    expect_prefix(r.err, "opportunities.csv:1: stage: required column is missing");
    expect_line(
        r.err,
        "opportunities.csv:1: warning: column \"Deal Stage\" is not a field of opportunities; ignored");
    run_free(&r);

    /* A bad alias is a usage error. */
    r = run_import(dir, "--org", "acme", "--alias", "x=nosuchfield", "--opportunities", "opportunities.csv");
    cr_expect_eq(r.rc, 2, "exit %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    free(dir);
}

Test(import, stage_probability_column_is_the_crms_share) {
    char *dir = pgt_fmt("%s/probability", FIXTURES);
    run_t r = run_import(dir, "--org", "acme", "--opportunities", "opportunities.csv");
    cr_expect_eq(r.rc, 1, "exit %d:\n%s%s", r.rc, r.out, r.err);
    expect_prefix(r.err, "opportunities.csv:4: stage_probability: must be between 0 and 1");
    char *row =
        pgt_valuef(conn, "select string_agg(external_id || '|' || coalesce(stage_probability::text, '-'),"
                         " ',' order by external_id) from public.opportunities");
    cr_expect_str_eq(row, "opp-p1|0.2,opp-p2|-");
    free(row);
    run_free(&r);
    free(dir);
}

Test(import, change_rows_older_than_applied_ones_are_skipped) {
    char *path = pgt_fmt("%s/opportunities.csv", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    fprintf(f, "external_id,stage,created_at,amount,changed_at\n"
               "opp-x,prospecting,2025-01-01T00:00:00Z,100,2025-01-01T00:00:00Z\n"
               ",,,,\n"
               "opp-x,demo,2025-01-01T00:00:00Z,100,2025-01-03T00:00:00Z\n"
               "opp-x,qualification,2025-01-01T00:00:00Z,100,2025-01-02T00:00:00Z\n");
    fclose(f);
    run_t r = run_import(tmpdir, "--org", "acme", "--opportunities", "opportunities.csv");
    cr_assert_eq(r.rc, 0, "exit %d:\n%s%s", r.rc, r.out, r.err);
    /* the row of empty cells is not a row; the late, older change is skipped */
    expect_prefix(r.out, "opportunities.csv: 3 rows: 3 imported (2 changed, 1 unchanged of which 1 older "
                         "than applied changes, 2 events), 0 rejected");
    char *st = pgt_valuef(conn, "select stage from public.opportunities where external_id = 'opp-x'");
    cr_expect_str_eq(st, "demo");
    free(st);
    char *h =
        pgt_valuef(conn, "select string_agg(field || ':' || coalesce(old_value, '-') || '>' || new_value,"
                         " ',' order by changed_at, id) from public.opportunity_history");
    cr_expect_str_eq(h, "stage:->prospecting,amount:->100,stage:prospecting>demo");
    free(h);
    run_free(&r);

    /* With one record per transaction the older row meets the stored
     * history instead of its chunk: the same result. */
    r = run_import(tmpdir, "--org", "acme", "--batch", "1", "--opportunities", "opportunities.csv");
    cr_assert_eq(r.rc, 0, "exit %d:\n%s%s", r.rc, r.out, r.err);
    expect_prefix(r.out, "opportunities.csv: 3 rows: 3 imported (0 changed, 3 unchanged of which 2 older "
                         "than applied changes, 0 events), 0 rejected");
    cr_expect_eq(count("opportunity_history"), 3);
    run_free(&r);
    free(path);
}

Test(import, bom_duplicate_columns_and_bad_bytes) {
    char *path = pgt_fmt("%s/accounts.csv", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    /* A UTF-8 byte order mark, a second id column, Latin-1 bytes, a NUL. */
    fprintf(f, "\xEF\xBB\xBF"
               "External_ID,name,id\n"
               "acc-1,Caf\xC3\xA9 Ltd,x\n"
               "acc-2,Caf\xE9 Ltd,y\n");
    fwrite("acc-3,A\0B,z\n", 1, 12, f);
    fclose(f);
    run_t r = run_import(tmpdir, "--org", "acme", "--accounts", "accounts.csv");
    cr_assert_eq(r.rc, 1, "exit %d:\n%s%s", r.rc, r.out, r.err);
    expect_line(
        r.err, "accounts.csv:1: warning: column \"id\" is external_id, like column \"External_ID\"; ignored");
    expect_line(r.err, "accounts.csv:3: name: is not valid UTF-8");
    expect_line(r.err, "accounts.csv:4: name: contains a NUL byte");
    char *name = pgt_valuef(conn, "select name from public.accounts where external_id = 'acc-1'");
    cr_expect_str_eq(name, "Caf\xC3\xA9 Ltd");
    free(name);
    cr_expect_eq(count("accounts"), 1);
    run_free(&r);
    free(path);
}

Test(import, parents_may_arrive_after_children) {
    char *dir = pgt_fmt("%s/clean", FIXTURES);
    run_t r = run_import(dir, "--org", "acme", "--interactions", "interactions.csv");
    cr_assert_eq(r.rc, 0, "exit %d:\n%s%s", r.rc, r.out, r.err);
    /* Children of unknown deals wait on placeholders and publish nothing yet. */
    expect_prefix(r.out, "imported 6 records (6 changed, 0 unchanged, 0 events), 0 rejected");
    cr_expect_eq(pgt_longf(conn, "select count(*) from public.opportunities where placeholder"), 3);
    run_free(&r);
    r = run_import(dir, "--org", "acme", "--opportunities", "opportunities.csv", "--accounts",
                   "accounts.csv");
    cr_assert_eq(r.rc, 0, "exit %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect_eq(pgt_longf(conn, "select count(*) from public.opportunities where placeholder"), 0);
    cr_expect_eq(pgt_longf(conn, "select count(*) from public.interactions i join public.opportunities o"
                                 " on o.id = i.opportunity_id and o.external_id = i.opportunity_external_id"),
                 6);
    cr_expect_eq(count("opportunity_history"), 19);
    run_free(&r);
    free(dir);
}

Test(import, bad_invocations_exit_2) {
    char *dir = pgt_fmt("%s/clean", FIXTURES);
    run_t r = run_import(dir, "--org", "nosuchorg", "--accounts", "accounts.csv");
    cr_expect_eq(r.rc, 2, "unknown org: exit %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.err, "no org with slug \"nosuchorg\"") != NULL, "%s", r.err);
    run_free(&r);

    r = run_import(dir, "--org", "acme", "--accounts", "accounts.csv", "--opportunities", "missing.csv");
    cr_expect_eq(r.rc, 2, "unreadable file: exit %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.err, "cannot read missing.csv") != NULL, "%s", r.err);
    run_free(&r);
    cr_expect_eq(count("accounts"), 0, "a missing file must stop the import before it starts");

    r = run_import(dir, "--org", "acme");
    cr_expect_eq(r.rc, 2, "no files: exit %d", r.rc);
    run_free(&r);
    r = run_import(dir, "--accounts", "accounts.csv");
    cr_expect_eq(r.rc, 2, "no org: exit %d", r.rc);
    run_free(&r);
    r = run_import(dir, "--org", "acme", "--accounts", "accounts.csv", "--bogus");
    cr_expect_eq(r.rc, 2, "unknown option: exit %d", r.rc);
    run_free(&r);

    r = run_import(dir, "--help");
    cr_expect_eq(r.rc, 0);
    expect_prefix(r.out, "usage: dealscore-ingest import --org SLUG");
    cr_expect(strstr(r.out, "FILE:LINE: FIELD: PROBLEM") != NULL, "%s", r.out);
    run_free(&r);
    free(dir);
}

/* Runs argv with env and returns its exit status and peak RSS in KiB. */
static int run_rss(char *const argv[], char *const env[], long *maxrss_kb) {
    pid_t pid = fork();
    if (pid == 0) {
        for (char *const *e = env; e && *e; e++) putenv(*e);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid) cr_fatal("wait4: %s", strerror(errno));
    *maxrss_kb = ru.ru_maxrss;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* accounts.csv with n rows: every 100th valid, the others without a name,
 * each with a quoted two-line field to make the file big. */
static char *write_accounts(const char *name, long n) {
    char *path = pgt_fmt("%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    fprintf(f, "external_id,name,industry,region,size_band,created_at,comment\n");
    for (long i = 0; i < n; i++)
        fprintf(f,
                "acc-%07ld,%s,software,na,smb,2025-01-01T00:00:00Z,\"a note, quoted\nover two lines "
                "with some padding to make the file larger than the read block\"\n",
                i, i % 100 == 0 ? "\"Name, Inc.\"" : "");
    fclose(f);
    return path;
}

Test(import, memory_stays_flat_on_large_files) {
    char *small = write_accounts("small.csv", 20000);
    char *large = write_accounts("large.csv", 200000);
    char *bin = proc_bin("dealscore-ingest");
    /* Under ASan, freed memory sits in a quarantine that would look like
     * growth; a plain build ignores the variable. */
    const char *asan = getenv("ASAN_OPTIONS");
    char *asan_env =
        pgt_fmt("ASAN_OPTIONS=%s%squarantine_size_mb=0", asan ? asan : "", asan && *asan ? ":" : "");
    char *env[] = {env_url, asan_env, NULL};
    long rss_small, rss_large;
    char *a1[] = {bin,        "import",    "--org",      "acme", "--quiet",
                  "--errors", "/dev/null", "--accounts", small,  NULL};
    int rc = run_rss(a1, env, &rss_small);
    cr_assert_eq(rc, 1, "small import exit %d", rc);
    char *a2[] = {bin,        "import",    "--org",      "acme", "--quiet",
                  "--errors", "/dev/null", "--accounts", large,  NULL};
    rc = run_rss(a2, env, &rss_large);
    cr_assert_eq(rc, 1, "large import exit %d", rc);
    cr_expect_eq(count("accounts"), 2000);
    cr_log_info("peak RSS: %ld KiB for 20000 rows, %ld KiB for 200000 rows", rss_small, rss_large);
    /* Ten times the rows (about 30 MB of CSV), the same memory. */
    cr_expect(rss_large < rss_small + 4096, "peak RSS grew from %ld KiB to %ld KiB", rss_small, rss_large);
    free(asan_env);
    free(bin);
    free(small);
    free(large);
}

/* n opportunities and per_opp interactions each, for the outage test. */
static void write_deals(const char *opp_path, const char *int_path, int n, int per_opp) {
    FILE *o = fopen(opp_path, "w"), *it = fopen(int_path, "w");
    cr_assert(o && it);
    fprintf(o, "external_id,stage,created_at,amount\n");
    fprintf(it, "external_id,opportunity_external_id,type,occurred_at,duration_min\n");
    for (int i = 0; i < n; i++) {
        fprintf(o, "opp-%d,prospecting,2025-01-01T00:00:00Z,%d\n", i, 1000 + i);
        for (int j = 0; j < per_opp; j++)
            fprintf(it, "opp-%d-i%d,opp-%d,meeting,2025-02-%02dT10:00:00Z,%d\n", i, j, i, 1 + j % 28, j);
    }
    fclose(o);
    fclose(it);
}

Test(import, survives_losing_its_postgres_session) {
    char *opp = pgt_fmt("%s/opportunities.csv", tmpdir), *ints = pgt_fmt("%s/interactions.csv", tmpdir);
    char *errp = pgt_fmt("%s/stderr", tmpdir), *outp = pgt_fmt("%s/stdout", tmpdir);
    write_deals(opp, ints, 100, 80);
    char *bin = proc_bin("dealscore-ingest");
    char *argv[] = {bin, "import",         "--org", "acme", "--batch", "20", "--opportunities",
                    opp, "--interactions", ints,    NULL};
    char *env[] = {env_url, NULL};
    pid_t pid = proc_spawn(argv, env, outp, errp);

    /* Once interactions are being stored, kill the importer's session. */
    long long deadline = pgt_now_ms() + 60000;
    bool killed = false;
    while (!killed && pgt_now_ms() < deadline) {
        if (count("interactions") > 0)
            killed = pgt_longf(conn, "select count(*) from (select pg_terminate_backend(pid) from"
                                     " pg_stat_activity where application_name = 'dealscore-ingest-import'"
                                     " and datname = current_database()) t") > 0;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            cr_fatal("the import finished before it could be interrupted");
        struct timespec ts = {0, 2 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    cr_assert(killed, "never saw the importer's session");
    int rc = proc_wait(pid, RUN_TIMEOUT_MS);
    char *out = proc_slurp(outp), *err = proc_slurp(errp);
    cr_assert_eq(rc, 0, "exit %d\nstdout:\n%s\nstderr:\n%s", rc, out, err);
    /* Depending on when the session died, the next statement failed (and
     * the chunk was retried) or the next ds_pg_ensure reconnected first. */
    cr_expect(strstr(err, "postgres is unavailable") || strstr(err, "reconnected to postgres"),
              "no sign of a reconnect:\n%s", err);
    if (strstr(err, "postgres is unavailable"))
        cr_expect(strstr(err, "postgres is reachable again") != NULL, "no recovery notice:\n%s", err);
    expect_prefix(out, "imported 8100 records (");
    /* Every row once, every event once: a retried chunk changes nothing. */
    cr_expect_eq(count("opportunities"), 100);
    cr_expect_eq(count("interactions"), 8000);
    cr_expect_eq(count("dealscore_internal.outbox"), 8100);
    free(out);
    free(err);
    free(bin);
    free(opp);
    free(ints);
    free(errp);
    free(outp);
}
