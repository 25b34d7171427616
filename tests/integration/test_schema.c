/* sql/migrate and the data model on a fresh database: migrating twice,
 * concurrent runs, a failing migration, the tables and their privileges,
 * constraints, and the model-activation notification. */
#include <dirent.h>
#include <sys/stat.h>

#include "pgtest.h"

static pgt_db_t db;

static void setup(void) { pgt_db_create(&db); }

static void teardown(void) { pgt_db_drop(&db); }

TestSuite(schema, .init = setup, .fini = teardown, .timeout = 240);

/* The migration files of sql/migrations, sorted; returns how many. */
static int migration_files(char names[][128], int max) {
    DIR *d = opendir(DS_SOURCE_DIR "/sql/migrations");
    cr_assert_not_null(d, "cannot open sql/migrations");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".sql") != 0) continue;
        cr_assert_lt(n, max, "too many migration files for the test");
        cr_assert_lt(l, (size_t)128, "migration file name too long: %s", e->d_name);
        strcpy(names[n++], e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    return n;
}

Test(schema, migrate_twice_applies_everything_once) {
    char files[64][128];
    int nfiles = migration_files(files, 64);
    cr_assert_gt(nfiles, 0, "no migration files found");

    pgt_proc_t p;
    int rc = pgt_migrate(&p, &db, NULL);
    cr_assert_eq(rc, 0, "first migrate exited with %d:\n%s", rc, p.out);
    for (int i = 0; i < nfiles; i++) {
        char *line = pgt_fmt("applied %s", files[i]);
        cr_assert(pgt_has_line(p.out, line), "first run did not print '%s':\n%s", line, p.out);
        free(line);
    }
    char *summary = pgt_fmt("%d migration(s) applied", nfiles);
    cr_assert(pgt_has_line(p.out, summary), "first run did not print '%s':\n%s", summary, p.out);
    free(summary);
    pgt_proc_close(&p);

    PGconn *c = pgt_connect_db(&db);
    cr_assert_eq(pgt_longf(c, "select count(*) from public.schema_migrations"), nfiles,
                 "schema_migrations does not have one row per migration file");
    for (int i = 0; i < nfiles; i++) {
        char version[15];
        memcpy(version, files[i], 14);
        version[14] = '\0';
        cr_assert_eq(
            pgt_longf(c, "select count(*) from public.schema_migrations where version = '%s'", version), 1,
            "migration %s is not recorded", files[i]);
    }
    char *applied_at = pgt_valuef(c, "select max(applied_at)::text from public.schema_migrations");

    rc = pgt_migrate(&p, &db, NULL);
    cr_assert_eq(rc, 0, "second migrate exited with %d:\n%s", rc, p.out);
    cr_assert_eq(pgt_count_lines(p.out, "applied 2"), 0, "second run applied something:\n%s", p.out);
    cr_assert(pgt_has_line(p.out, "nothing to apply"), "second run did not say so:\n%s", p.out);
    pgt_proc_close(&p);

    cr_assert_eq(pgt_longf(c, "select count(*) from public.schema_migrations"), nfiles,
                 "second run changed schema_migrations");
    char *applied_at2 = pgt_valuef(c, "select max(applied_at)::text from public.schema_migrations");
    cr_assert_str_eq(applied_at2, applied_at, "second run re-applied a migration");
    free(applied_at);
    free(applied_at2);
    PQfinish(c);
}

Test(schema, concurrent_runs_apply_each_file_once) {
    char files[64][128];
    int nfiles = migration_files(files, 64);

    pgt_proc_t a, b;
    pgt_migrate_start(&a, &db, NULL);
    pgt_migrate_start(&b, &db, NULL);
    int rca = pgt_proc_wait(&a, PGT_MIGRATE_TIMEOUT_MS);
    int rcb = pgt_proc_wait(&b, PGT_MIGRATE_TIMEOUT_MS);
    cr_assert_eq(rca, 0, "first concurrent migrate exited with %d:\n%s", rca, a.out);
    cr_assert_eq(rcb, 0, "second concurrent migrate exited with %d:\n%s", rcb, b.out);
    for (int i = 0; i < nfiles; i++) {
        char *line = pgt_fmt("applied %s", files[i]);
        int times = pgt_has_line(a.out, line) + pgt_has_line(b.out, line);
        cr_assert_eq(times, 1, "%s was applied %d times:\n--- a\n%s--- b\n%s", files[i], times, a.out, b.out);
        free(line);
    }
    pgt_proc_close(&a);
    pgt_proc_close(&b);

    PGconn *c = pgt_connect_db(&db);
    cr_assert_eq(pgt_longf(c, "select count(*) from public.schema_migrations"), nfiles,
                 "schema_migrations does not have one row per migration file");
    PQfinish(c);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

Test(schema, failing_migration_exits_nonzero_and_keeps_nothing_of_it) {
    char dir[] = "/tmp/ds-migrate-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    char *ok = pgt_fmt("%s/20000101000000_first.sql", dir);
    char *bad = pgt_fmt("%s/20000101000001_second.sql", dir);
    char *later = pgt_fmt("%s/20000101000002_third.sql", dir);
    write_file(ok, "create table public.t_first (id int);\n");
    write_file(bad, "create table public.t_second (id int);\nselect 1 / 0;\n");
    write_file(later, "create table public.t_third (id int);\n");

    const char *args[] = {"--dir", dir, NULL};
    pgt_proc_t p;
    int rc = pgt_migrate(&p, &db, args);
    cr_assert_neq(rc, 0, "migrate succeeded although a migration fails:\n%s", p.out);
    cr_assert(pgt_has_line(p.out, "applied 20000101000000_first.sql"),
              "the good migration before the failing one was not applied:\n%s", p.out);
    cr_assert_eq(pgt_count_lines(p.out, "applied 20000101000001"), 0,
                 "the failing migration was reported applied:\n%s", p.out);
    cr_assert_eq(pgt_count_lines(p.out, "applied 20000101000002"), 0,
                 "a migration after the failing one was applied:\n%s", p.out);
    cr_assert_not_null(strstr(p.out, "division by zero"), "the error is not shown:\n%s", p.out);
    pgt_proc_close(&p);

    PGconn *c = pgt_connect_db(&db);
    cr_assert_eq(pgt_longf(c, "select count(*) from public.schema_migrations"), 1,
                 "only the first migration may be recorded");
    char *t1 = pgt_valuef(c, "select to_regclass('public.t_first')::text");
    char *t2 = pgt_valuef(c, "select to_regclass('public.t_second')::text");
    char *t3 = pgt_valuef(c, "select to_regclass('public.t_third')::text");
    cr_assert_not_null(t1, "t_first is missing");
    cr_assert_null(t2, "the failing migration was not rolled back");
    cr_assert_null(t3, "a migration after the failing one ran");
    free(t1);

    /* Once fixed, the rest applies. */
    write_file(bad, "create table public.t_second (id int);\n");
    rc = pgt_migrate(&p, &db, args);
    cr_assert_eq(rc, 0, "migrate after the fix exited with %d:\n%s", rc, p.out);
    cr_assert(pgt_has_line(p.out, "applied 20000101000001_second.sql"), "%s", p.out);
    cr_assert(pgt_has_line(p.out, "applied 20000101000002_third.sql"), "%s", p.out);
    cr_assert_eq(pgt_count_lines(p.out, "applied 20000101000000"), 0, "%s", p.out);
    pgt_proc_close(&p);
    cr_assert_eq(pgt_longf(c, "select count(*) from public.schema_migrations"), 3);
    PQfinish(c);

    unlink(ok);
    unlink(bad);
    unlink(later);
    rmdir(dir);
    free(ok);
    free(bad);
    free(later);
}

Test(schema, rejects_bad_file_names_and_missing_database) {
    char dir[] = "/tmp/ds-migrate-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    char *bad = pgt_fmt("%s/2000_short.sql", dir);
    write_file(bad, "select 1;\n");
    const char *args[] = {"--dir", dir, NULL};
    pgt_proc_t p;
    int rc = pgt_migrate(&p, &db, args);
    cr_assert_neq(rc, 0, "a bad file name was accepted:\n%s", p.out);
    cr_assert_not_null(strstr(p.out, "bad migration file name"), "%s", p.out);
    pgt_proc_close(&p);
    unlink(bad);
    rmdir(dir);
    free(bad);

    /* No URL and no DEALSCORE_DATABASE_URL. */
    static const char *const unset[] = {"DEALSCORE_DATABASE_URL", NULL};
    char *const argv[] = {DS_SOURCE_DIR "/sql/migrate", NULL};
    pgt_proc_start(&p, argv, unset);
    rc = pgt_proc_wait(&p, 30000);
    cr_assert_neq(rc, 0, "migrate without a database succeeded:\n%s", p.out);
    cr_assert_not_null(strstr(p.out, "DEALSCORE_DATABASE_URL"), "%s", p.out);
    pgt_proc_close(&p);
}

/* Every table of the design exists, every table with an org_id has RLS, and
 * the API roles have exactly the privileges they should. */
Test(schema, tables_rls_and_privileges) {
    pgt_migrate_ok(&db);
    PGconn *c = pgt_connect_db(&db);

    static const char *const tables[] = {"orgs",
                                         "accounts",
                                         "opportunities",
                                         "opportunity_history",
                                         "interactions",
                                         "transcripts",
                                         "features_snapshot",
                                         "predictions",
                                         "prediction_history",
                                         "benchmarks_cached",
                                         "opportunity_benchmarks",
                                         "models",
                                         "dealscore_internal.outbox",
                                         "dealscore_internal.ingest_tokens",
                                         "meddicc_lexicon",
                                         "account_members",
                                         "schema_migrations"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char *t = pgt_valuef(c, "select to_regclass('%s%s')::text", strchr(tables[i], '.') ? "" : "public.",
                             tables[i]);
        cr_assert_not_null(t, "table %s is missing", tables[i]);
        free(t);
    }

    PGresult *r = pgt_query(c, "select c.relname, c.relrowsecurity,"
                               "  exists (select 1 from pg_attribute a where a.attrelid = c.oid"
                               "          and a.attname = 'org_id' and not a.attisdropped),"
                               "  has_table_privilege('anon', c.oid, 'select,insert,update,delete'),"
                               "  has_table_privilege('authenticated', c.oid, 'insert,update,delete'),"
                               "  has_any_column_privilege('authenticated', c.oid, 'select')"
                               " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                               " where n.nspname = 'public' and c.relkind in ('r', 'p')"
                               " order by 1");
    /* 17 until outbox and ingest_tokens left public for dealscore_internal. */
    cr_assert_geq(PQntuples(r), 15, "expected at least 15 tables in public");
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        bool rls = PQgetvalue(r, i, 1)[0] == 't';
        bool has_org = PQgetvalue(r, i, 2)[0] == 't';
        bool anon_any = PQgetvalue(r, i, 3)[0] == 't';
        bool auth_write = PQgetvalue(r, i, 4)[0] == 't';
        bool auth_read = PQgetvalue(r, i, 5)[0] == 't';
        cr_expect(rls, "table %s has no row level security", name);
        cr_expect(!anon_any, "anon has privileges on %s", name);
        cr_expect(!auth_write, "authenticated may write to %s", name);
        bool tenant = has_org || strcmp(name, "orgs") == 0;
        if (tenant)
            cr_expect(auth_read, "authenticated cannot read tenant table %s", name);
        else
            cr_expect(strcmp(name, "schema_migrations") == 0,
                      "table %s has no org_id: every tenant row needs one", name);
        if (has_org) {
            /* Every tenant table has a select policy for authenticated. */
            long long pol = pgt_longf(c,
                                      "select count(*) from pg_policies where schemaname = 'public'"
                                      " and tablename = '%s' and cmd = 'SELECT'"
                                      " and 'authenticated' = any (roles)",
                                      name);
            cr_expect_eq(pol, 1, "table %s has %lld select policies for authenticated", name, pol);
        }
    }
    PQclear(r);

    /* Write policies would let API users write. */
    cr_assert_eq(pgt_longf(c, "select count(*) from pg_policies where schemaname = 'public'"
                              " and cmd <> 'SELECT'"),
                 0, "a table has a write policy");
    /* Token hashes and secrets are never readable by API users; since the
     * tokens left public (issue 20), no column of them is. */
    cr_assert_eq(pgt_longf(c, "select has_column_privilege('authenticated',"
                              " 'dealscore_internal.ingest_tokens', 'token_hash', 'select')::int"),
                 0, "authenticated can read ingest_tokens.token_hash");
    char *cols =
        pgt_valuef(c, "select string_agg(attname, ',' order by attname)"
                      " from pg_attribute where attrelid = 'dealscore_internal.ingest_tokens'::regclass"
                      " and attnum > 0 and not attisdropped"
                      " and has_column_privilege('authenticated', attrelid, attnum, 'select')");
    cr_assert_null(cols, "authenticated can read these ingest_tokens columns: %s", cols);
    /* The policy helpers: security definer, stable, fixed search_path. */
    r = pgt_query(c, "select p.proname, p.prosecdef, p.provolatile, p.proconfig::text"
                     " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
                     " where n.nspname = 'dealscore' order by 1");
    cr_assert_geq(PQntuples(r), 4, "the policy helper functions are missing");
    for (int i = 0; i < PQntuples(r); i++) {
        cr_expect_eq(PQgetvalue(r, i, 1)[0], 't', "%s is not security definer", PQgetvalue(r, i, 0));
        cr_expect_eq(PQgetvalue(r, i, 2)[0], 's', "%s is not stable", PQgetvalue(r, i, 0));
        cr_expect_not_null(strstr(PQgetvalue(r, i, 3), "search_path"), "%s has no fixed search_path",
                           PQgetvalue(r, i, 0));
    }
    PQclear(r);

    /* service_role bypasses RLS (the workers' role on the shim). */
    cr_assert_eq(pgt_longf(c, "select rolbypassrls::int from pg_roles where rolname = 'service_role'"), 1,
                 "service_role does not bypass row level security");
    cr_assert_eq(pgt_longf(c, "select has_table_privilege('service_role', 'public.predictions',"
                              " 'select,insert,update,delete')::int"),
                 1, "service_role cannot write predictions");
    PQfinish(c);
}

static const char *const ORG_A = "a0000000-0000-4000-8000-000000000001";
static const char *const ORG_B = "b0000000-0000-4000-8000-000000000001";

static void insert_orgs_and_deals(PGconn *c) {
    pgt_execf(c, "insert into orgs (id, slug) values ('%s', 'org-a'), ('%s', 'org-b')", ORG_A, ORG_B);
    pgt_execf(c,
              "insert into accounts (id, org_id, external_id, name) values"
              " ('a0000000-0000-4000-8000-0000000000a1', '%s', 'acc-1', 'Acme'),"
              " ('b0000000-0000-4000-8000-0000000000b1', '%s', 'acc-1', 'Bolt')",
              ORG_A, ORG_B);
    pgt_execf(c,
              "insert into opportunities (id, org_id, external_id, account_id, stage, created_at)"
              " values ('a0000000-0000-4000-8000-00000000a001', '%s', 'opp-1',"
              "         'a0000000-0000-4000-8000-0000000000a1', 'Prospecting', now()),"
              "        ('b0000000-0000-4000-8000-00000000b001', '%s', 'opp-1',"
              "         'b0000000-0000-4000-8000-0000000000b1', 'Prospecting', now())",
              ORG_A, ORG_B);
}

static void expect_sqlstate(PGconn *c, const char *sql, const char *want, const char *why) {
    char *got = pgt_try(c, sql);
    cr_assert_not_null(got, "%s: the statement succeeded: %s", why, sql);
    cr_assert_str_eq(got, want, "%s: sqlstate %s, want %s: %s", why, got, want, sql);
    free(got);
}

Test(schema, constraints_keep_the_data_consistent) {
    pgt_migrate_ok(&db);
    PGconn *c = pgt_connect_db(&db);
    insert_orgs_and_deals(c);

    expect_sqlstate(c,
                    "insert into accounts (org_id, external_id, name) values"
                    " ('a0000000-0000-4000-8000-000000000001', 'acc-1', 'dup')",
                    "23505", "natural key (org_id, external_id)");
    expect_sqlstate(c,
                    "update opportunities set outcome = 'maybe'"
                    " where external_id = 'opp-1'",
                    "23514", "outcome must be open, won or lost");
    expect_sqlstate(c, "update opportunities set amount = -1 where external_id = 'opp-1'", "23514",
                    "amount must not be negative");
    expect_sqlstate(c,
                    "insert into opportunities (org_id, external_id) values"
                    " ('a0000000-0000-4000-8000-000000000001', 'opp-2')",
                    "23514", "a real opportunity needs stage and created_at");
    pgt_exec(c, "insert into opportunities (org_id, external_id, placeholder) values"
                " ('a0000000-0000-4000-8000-000000000001', 'opp-2', true)");
    expect_sqlstate(c,
                    "insert into interactions (org_id, external_id, opportunity_id,"
                    " opportunity_external_id, type, occurred_at) values"
                    " ('a0000000-0000-4000-8000-000000000001', 'i-1',"
                    " 'a0000000-0000-4000-8000-00000000a001', 'opp-1', 'fax', now())",
                    "23514", "interaction type");
    /* A row of org B may not point at org A's opportunity. */
    expect_sqlstate(c,
                    "insert into interactions (org_id, external_id, opportunity_id,"
                    " opportunity_external_id, type, occurred_at) values"
                    " ('b0000000-0000-4000-8000-000000000001', 'i-1',"
                    " 'a0000000-0000-4000-8000-00000000a001', 'opp-1', 'email', now())",
                    "23503", "cross-org reference");
    expect_sqlstate(c,
                    "insert into opportunity_history (org_id, opportunity_id, field, new_value,"
                    " changed_at) values ('a0000000-0000-4000-8000-000000000001',"
                    " 'a0000000-0000-4000-8000-00000000a001', 'owner', 'x', now())",
                    "23514", "history field");
    expect_sqlstate(c,
                    "insert into predictions (org_id, opportunity_id, as_of, model_version,"
                    " proba_close) values ('a0000000-0000-4000-8000-000000000001',"
                    " 'a0000000-0000-4000-8000-00000000a001', now(), 'm1', 1.5)",
                    "23514", "probability range");

    /* At most one active model per org. */
    pgt_exec(c, "insert into models (org_id, version, feature_names, status) values"
                " ('a0000000-0000-4000-8000-000000000001', 'v1', '{a}', 'active'),"
                " ('a0000000-0000-4000-8000-000000000001', 'v2', '{a}', 'candidate'),"
                " ('b0000000-0000-4000-8000-000000000001', 'v1', '{a}', 'active')");
    expect_sqlstate(c,
                    "update models set status = 'active' where version = 'v2'"
                    " and org_id = 'a0000000-0000-4000-8000-000000000001'",
                    "23505", "a second active model");
    pgt_exec(c, "begin;"
                "update models set status = 'retired' where version = 'v1'"
                " and org_id = 'a0000000-0000-4000-8000-000000000001';"
                "update models set status = 'active' where version = 'v2'"
                " and org_id = 'a0000000-0000-4000-8000-000000000001';"
                "commit");

    /* Idempotent upsert by natural key: an unchanged re-send changes nothing. */
    const char *upsert = "insert into accounts (org_id, external_id, name, source_hash) values"
                         " ('a0000000-0000-4000-8000-000000000001', 'acc-9', 'Nine', 'h1')"
                         " on conflict (org_id, external_id) do update set name = excluded.name,"
                         " source_hash = excluded.source_hash"
                         " where accounts.source_hash is distinct from excluded.source_hash"
                         " returning id";
    PGresult *r = pgt_query(c, upsert);
    cr_assert_eq(PQntuples(r), 1, "first upsert returned no row");
    PQclear(r);
    r = pgt_query(c, upsert);
    cr_assert_eq(PQntuples(r), 0, "an unchanged re-send was treated as a change");
    PQclear(r);

    /* Default org settings carry the stage mapping and the benchmark window. */
    char *won = pgt_valuef(c, "select settings->'stage_outcome'->>'Closed Won' from orgs"
                              " where slug = 'org-a'");
    cr_assert_not_null(won, "default settings lack stage_outcome");
    cr_assert_str_eq(won, "won");
    free(won);
    cr_assert_eq(pgt_longf(c, "select (settings->>'benchmark_months')::int from orgs"
                              " where slug = 'org-a'"),
                 12);
    PQfinish(c);
}

/* The HOT updates of opp-1 of ORG_A that the update set made: the
 * backend's count, not flushed yet, before and after it. */
static long long hot_updates_of(PGconn *c, const char *set) {
    static const char count[] = "select pg_stat_get_xact_tuples_hot_updated('opportunities'::regclass)";
    pgt_exec(c, "begin");
    long long before = pgt_longf(c, count);
    pgt_execf(c, "update opportunities set %s where id = 'a0000000-0000-4000-8000-00000000a001'", set);
    long long hot = pgt_longf(c, count) - before;
    pgt_exec(c, "commit");
    return hot;
}

/* An open deal's amount edit leaves every index alone (a HOT update: no
 * index names the amount of an open deal), and a closed deal's amount is
 * in the cohort indexes, which find it by its new value. */
Test(schema, an_open_deals_amount_edit_is_a_hot_update) {
    pgt_migrate_ok(&db);
    PGconn *c = pgt_connect_db(&db);
    insert_orgs_and_deals(c);
    cr_expect_eq(hot_updates_of(c, "amount = 25000"), 1, "the open deal's amount edit");
    cr_expect_eq(hot_updates_of(c, "amount = 26000, outcome = 'won', closed_at = now()"), 0,
                 "closing the deal moves it into the cohort indexes");
    cr_expect_eq(hot_updates_of(c, "amount = 27000"), 0, "a closed deal's amount is indexed");
    pgt_exec(c, "set enable_seqscan = off");
    cr_expect_eq(
        pgt_longf(c,
                  "select count(*) from opportunities where org_id = '%s' and outcome in ('won', 'lost')"
                  " and closed_amount >= 27000 and closed_amount < 27001",
                  ORG_A),
        1);
    PQfinish(c);
}

/* Deleting an org takes its raw rows, its deals' history and its outbox
 * events with it (neither the outbox nor the history has a foreign key:
 * triggers do that), and leaves the other org's alone. */
Test(schema, deleting_an_org_removes_its_rows_and_events) {
    pgt_migrate_ok(&db);
    PGconn *c = pgt_connect_db(&db);
    insert_orgs_and_deals(c);
    pgt_execf(c,
              "insert into dealscore_internal.outbox (org_id, opportunity_id, account_id, kind) values"
              " ('%s', 'a0000000-0000-4000-8000-00000000a001', null, 'opportunity_upserted'),"
              " ('%s', 'a0000000-0000-4000-8000-00000000a001', null, 'stage_changed'),"
              " ('%s', 'b0000000-0000-4000-8000-00000000b001', null, 'opportunity_upserted')",
              ORG_A, ORG_A, ORG_B);
    cr_assert_eq(pgt_longf(c, "select count(*) from dealscore_internal.outbox"), 3);
    pgt_execf(c,
              "insert into opportunity_history (org_id, opportunity_id, field, new_value, changed_at) values"
              " ('%s', 'a0000000-0000-4000-8000-00000000a001', 'stage', 'Prospecting', now()),"
              " ('%s', 'b0000000-0000-4000-8000-00000000b001', 'stage', 'Prospecting', now())",
              ORG_A, ORG_B);
    pgt_execf(c, "delete from orgs where id = '%s'", ORG_A);
    cr_expect_eq(pgt_longf(c, "select count(*) from opportunity_history where org_id = '%s'", ORG_A), 0,
                 "the deleted org's deal history stayed");
    cr_expect_eq(pgt_longf(c, "select count(*) from opportunity_history where org_id = '%s'", ORG_B), 1,
                 "the other org's deal history went too");
    cr_expect_eq(pgt_longf(c, "select count(*) from dealscore_internal.outbox where org_id = '%s'", ORG_A), 0,
                 "the deleted org's events stayed in the outbox");
    cr_expect_eq(pgt_longf(c, "select count(*) from dealscore_internal.outbox where org_id = '%s'", ORG_B), 1,
                 "the other org's event went too");
    cr_expect_eq(pgt_longf(c, "select count(*) from opportunities where org_id = '%s'", ORG_A), 0);
    cr_expect_eq(pgt_longf(c, "select count(*) from accounts where org_id = '%s'", ORG_B), 1);
    PQfinish(c);
}

Test(schema, default_lexicon_covers_every_meddicc_element) {
    pgt_migrate_ok(&db);
    PGconn *c = pgt_connect_db(&db);
    static const char *const elements[] = {"metrics",          "economic_buyer", "decision_criteria",
                                           "decision_process", "paper_process",  "identify_pain",
                                           "champion",         "competition"};
    for (size_t i = 0; i < sizeof elements / sizeof elements[0]; i++) {
        long long n = pgt_longf(c,
                                "select count(*) from meddicc_lexicon where org_id is null"
                                " and element = '%s' and weight > 0",
                                elements[i]);
        cr_expect_geq(n, 3, "default lexicon has only %lld phrases for %s", n, elements[i]);
    }
    cr_assert_eq(pgt_longf(c, "select count(distinct element) from meddicc_lexicon"
                              " where org_id is null"),
                 8, "the default lexicon has elements outside MEDDICC");
    PQfinish(c);
}

Test(schema, activating_a_model_notifies_its_org) {
    pgt_migrate_ok(&db);
    PGconn *c = pgt_connect_db(&db);
    PGconn *listener = pgt_connect_db(&db);
    insert_orgs_and_deals(c);
    pgt_exec(listener, "listen dealscore_models; listen ds_test_barrier");

    /* A candidate is not news. Notifications of one session arrive in commit
     * order, so a barrier sent after a change proves it notified nothing. */
    pgt_exec(c, "insert into models (org_id, version, feature_names) values"
                " ('a0000000-0000-4000-8000-000000000001', 'v1', '{a}')");
    pgt_exec(c, "select pg_notify('ds_test_barrier', 'x')");
    PGnotify *n = pgt_wait_notify(listener, 10000);
    cr_assert_not_null(n, "the barrier notification did not arrive");
    cr_assert_str_eq(n->relname, "ds_test_barrier", "inserting a candidate model notified");
    PQfreemem(n);

    pgt_exec(c, "update models set status = 'active' where version = 'v1'");
    n = pgt_wait_notify(listener, 10000);
    cr_assert_not_null(n, "no notification within 10 s after activating a model");
    cr_assert_str_eq(n->relname, "dealscore_models");
    cr_assert_str_eq(n->extra, ORG_A, "the payload is not the model's org id");
    PQfreemem(n);

    /* Changes that do not activate a model stay silent. */
    pgt_exec(c, "update models set metrics = '{\"auc\": 0.8}' where version = 'v1'");
    pgt_exec(c, "update models set status = 'active' where version = 'v1'");
    pgt_exec(c, "insert into models (org_id, version, feature_names) values"
                " ('a0000000-0000-4000-8000-000000000001', 'v2', '{a}')");
    pgt_exec(c, "select pg_notify('ds_test_barrier', 'x')");
    n = pgt_wait_notify(listener, 10000);
    cr_assert_not_null(n, "the barrier notification did not arrive");
    cr_assert_str_eq(n->relname, "ds_test_barrier", "a change that activates nothing notified");
    PQfreemem(n);

    /* Inserting a model that is active right away notifies too. */
    pgt_exec(c, "insert into models (org_id, version, feature_names, status) values"
                " ('b0000000-0000-4000-8000-000000000001', 'v1', '{a}', 'active')");
    n = pgt_wait_notify(listener, 10000);
    cr_assert_not_null(n, "no notification after inserting an active model");
    cr_assert_str_eq(n->relname, "dealscore_models");
    cr_assert_str_eq(n->extra, ORG_B);
    PQfreemem(n);

    PQfinish(listener);
    PQfinish(c);
}

/* Upgrading to the lean outbox (20261127000100) on a database with events in
 * it: an unsent event keeps its kind, time, source, hash and trace context
 * as columns; an event already sent is removed; both versions' inserts
 * work (a rolling upgrade runs both for a while). */
Test(schema, outbox_upgrade_keeps_unsent_events_and_drops_sent_ones) {
    static const char *lean = "20261127000100_outbox_lean.sql";
    static char names[256][128];
    int n = migration_files(names, 256);
    char dir[] = "/tmp/ds-migrate-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    int linked = 0;
    for (int i = 0; i < n && strcmp(names[i], lean) < 0; i++, linked++) {
        char *src = pgt_fmt(DS_SOURCE_DIR "/sql/migrations/%s", names[i]);
        char *dst = pgt_fmt("%s/%s", dir, names[i]);
        cr_assert_eq(symlink(src, dst), 0, "symlink %s", dst);
        free(src);
        free(dst);
    }
    cr_assert(linked > 0 && linked < n, "the lean outbox migration is missing");
    const char *args[] = {"--dir", dir, NULL};
    pgt_proc_t p;
    int rc = pgt_migrate(&p, &db, args);
    cr_assert_eq(rc, 0, "migrate up to the lean outbox exited with %d:\n%s", rc, p.out);
    pgt_proc_close(&p);

    PGconn *c = pgt_connect_db(&db);
    insert_orgs_and_deals(c);
    pgt_execf(c,
              "insert into outbox (org_id, opportunity_id, kind, payload, headers, key, sent_at) values"
              " ('%s', 'a0000000-0000-4000-8000-00000000a001', 'stage_changed', '',"
              "  '{\"event_id\": \"e0000000-0000-4000-8000-000000000001\","
              "    \"occurred_at\": \"2026-03-01T09:00:00+00:00\", \"source\": \"webhook\","
              "    \"source_hash\": \"abc\", \"traceparent\": null}', "
              "'a0000000-0000-4000-8000-00000000a001', null),"
              " ('%s', 'a0000000-0000-4000-8000-00000000a001', 'opportunity_upserted', '',"
              "  '{\"occurred_at\": \"2026-02-01T09:00:00+00:00\", \"source\": \"csv\"}',"
              "  'a0000000-0000-4000-8000-00000000a001', now())",
              ORG_A, ORG_A);

    pgt_migrate_ok(&db);
    cr_expect_eq(pgt_longf(c, "select count(*) from dealscore_internal.outbox"), 1,
                 "the sent event was kept");
    char *row =
        pgt_valuef(c, "select kind || '|' || to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI')"
                      " || '|' || source || '|' || source_hash || '|' || coalesce(traceparent, '-')"
                      " from dealscore_internal.outbox");
    cr_expect_str_eq(row, "stage_changed|2026-03-01 09:00|webhook|abc|-");
    free(row);
    /* An ingest pod of the previous version, still running during a rolling
     * upgrade, writes as it did; a new one leaves the old columns alone. */
    pgt_execf(
        c,
        "insert into dealscore_internal.outbox (org_id, opportunity_id, kind, payload, headers, key) values"
        " ('%s', 'a0000000-0000-4000-8000-00000000a001', 'stage_changed', '', '{\"source\": \"webhook\"}',"
        "  'a0000000-0000-4000-8000-00000000a001')",
        ORG_A);
    pgt_execf(c,
              "insert into dealscore_internal.outbox (org_id, opportunity_id, kind, source) values"
              " ('%s', 'a0000000-0000-4000-8000-00000000a001', 'stage_changed', 'webhook')",
              ORG_A);
    cr_expect_eq(pgt_longf(c, "select count(*) from dealscore_internal.outbox"), 3);
    PQfinish(c);
    for (int i = 0; i < linked; i++) {
        char *dst = pgt_fmt("%s/%s", dir, names[i]);
        unlink(dst);
        free(dst);
    }
    rmdir(dir);
}

/* The tables that hold a deal's history and what the workers derived from
 * it, and a row of each for org and deal. */
static const char *const derived_tables[] = {"opportunity_history", "features_snapshot",      "predictions",
                                             "prediction_history",  "opportunity_benchmarks", "deal_risks"};

static void insert_derived_rows(PGconn *c, const char *org, const char *opp) {
    static const char *const values[] = {
        "(org_id, opportunity_id, field, new_value, changed_at) values ('%s', '%s', 'stage', 'Prospecting', "
        "now())",
        "(org_id, opportunity_id, as_of, feature_version, features) values ('%s', '%s', now(), 'v1', '{}')",
        "(org_id, opportunity_id, as_of, model_version, proba_close) values ('%s', '%s', now(), 'm1', 0.5)",
        "(org_id, opportunity_id, as_of, model_version, proba_close) values ('%s', '%s', now(), 'm1', 0.5)",
        "(org_id, opportunity_id, cohort_key, match_level) values ('%s', '%s', 'k', 'industry')",
        "(org_id, opportunity_id, as_of, model_version, proba_close) values ('%s', '%s', now(), 'm1', 0.5)"};
    for (size_t t = 0; t < sizeof values / sizeof values[0]; t++) {
        char fmt[300];
        snprintf(fmt, sizeof fmt, "insert into %s %s", derived_tables[t], values[t]);
        pgt_execf(c, fmt, org, opp);
    }
}

/* Expects where_fmt (one %s, filled with arg) to match no row of each
 * derived table, and one row to be left in each. */
static void expect_derived_rows_gone(PGconn *c, const char *where_fmt, const char *arg, const char *what) {
    for (size_t t = 0; t < sizeof derived_tables / sizeof derived_tables[0]; t++) {
        char where[200];
        snprintf(where, sizeof where, where_fmt, arg);
        cr_expect_eq(pgt_longf(c, "select count(*) from %s where %s", derived_tables[t], where), 0,
                     "the %s's %s rows stayed", what, derived_tables[t]);
        cr_expect_eq(pgt_longf(c, "select count(*) from %s", derived_tables[t]), 1,
                     "another %s's %s rows went too", what, derived_tables[t]);
    }
}

/* A deal's history and the rows the workers derived from it have no
 * foreign key (a check and a row lock per row); deleting the deal removes
 * them all, and only them; deleting the org removes what is left of its
 * (rows a worker wrote for a deal deleted under it match no deal delete). */
Test(schema, deleting_an_opportunity_removes_its_history_and_derived_rows) {
    pgt_migrate_ok(&db);
    PGconn *c = pgt_connect_db(&db);
    insert_orgs_and_deals(c);
    const char *a = "a0000000-0000-4000-8000-00000000a001", *b = "b0000000-0000-4000-8000-00000000b001";
    insert_derived_rows(c, ORG_A, a);
    insert_derived_rows(c, ORG_B, b);
    cr_expect_eq(pgt_longf(c,
                           "select count(*) from pg_constraint where contype = 'f'"
                           " and confrelid = 'public.opportunities'::regclass and conrelid = any(array["
                           "'opportunity_history', 'features_snapshot', 'predictions', 'prediction_history',"
                           " 'opportunity_benchmarks']::regclass[])"),
                 0, "no foreign key locks the deal for each derived row");
    pgt_execf(c, "delete from opportunities where id = '%s'", a);
    expect_derived_rows_gone(c, "opportunity_id = '%s'", a, "deleted deal");
    insert_derived_rows(c, ORG_A, a); /* as a worker racing the delete would */
    pgt_execf(c, "delete from orgs where id = '%s'", ORG_A);
    expect_derived_rows_gone(c, "org_id = '%s'", ORG_A, "deleted org");
    PQfinish(c);
}

/* The customer's app objects' privileges, policies and public's default
 * privileges, one line each, sorted. */
static char *app_privileges(PGconn *c) {
    return pgt_valuef(
        c, "select string_agg(x, E'\\n' order by x) from ("
           " select 'rel ' || c.relname || ' ' || a.grantor::regrole::text || ' ' || a.grantee::regrole::text"
           "   || ' ' || a.privilege_type || ' ' || a.is_grantable::text"
           " from pg_class c, aclexplode(coalesce(c.relacl, acldefault((case c.relkind when 'S' then 's'"
           "   else 'r' end)::\"char\", c.relowner))) a"
           " where c.relnamespace = 'public'::regnamespace and c.relname in ('todos', 'todos_id_seq', "
           "'todo_counts')"
           "   and a.grantee <> 0"
           " union all"
           " select 'pol ' || tablename || ' ' || policyname || ' ' || cmd || ' ' || roles::text || ' '"
           "   || coalesce(qual, '') || ' ' || coalesce(with_check, '')"
           " from pg_policies where schemaname = 'public' and tablename = 'todos'"
           " union all"
           " select 'rls ' || relrowsecurity::text from pg_class where oid = 'public.todos'::regclass"
           " union all"
           " select 'def ' || d.defaclobjtype::text || ' ' || d.defaclrole::regrole::text || ' '"
           "   || a.grantee::regrole::text || ' ' || a.privilege_type || ' ' || a.is_grantable::text"
           " from pg_default_acl d, aclexplode(d.defaclacl) a"
           " where d.defaclnamespace = 'public'::regnamespace and a.grantee <> 0) t(x)");
}

/* The rows appended at every change (a deal's history, its feature
 * snapshots and its scores) are read by deal, never by id: each row writes
 * no index entry for its id alone. Deleting a deal still works with the
 * tables in a publication (their replica identity is the whole row). */
Test(schema, appended_rows_index_no_id_and_deleting_a_deal_replicates) {
    pgt_migrate_ok(&db);
    PGconn *c = pgt_connect_db(&db);
    static const char *const appended[] = {"opportunity_history", "features_snapshot", "prediction_history"};
    for (size_t t = 0; t < PGT_N(appended); t++)
        cr_expect_eq(
            pgt_longf(c,
                      "select count(*) from pg_index i join pg_attribute a on a.attrelid = i.indrelid"
                      " and a.attnum = i.indkey[0] where i.indrelid = 'public.%s'::regclass"
                      " and i.indnatts = 1 and a.attname = 'id'",
                      appended[t]),
            0, "%s writes an index entry per row for its id", appended[t]);
    insert_orgs_and_deals(c);
    const char *a = "a0000000-0000-4000-8000-00000000a001";
    insert_derived_rows(c, ORG_A, a);
    insert_derived_rows(c, ORG_B, "b0000000-0000-4000-8000-00000000b001");
    pgt_exec(c, "create publication appended_rows for table opportunity_history, features_snapshot,"
                " prediction_history");
    char *err = pgt_try(c, "delete from opportunities where id = 'a0000000-0000-4000-8000-00000000a001'");
    cr_expect_null(err, "deleting a deal failed with %s", err ? err : "");
    free(err);
    expect_derived_rows_gone(c, "opportunity_id = '%s'", a, "deleted deal");
    pgt_exec(c, "drop publication appended_rows");
    PQfinish(c);
}

/* A change of a deal's stage (no indexed column) keeps the new version on
 * the deal's page, a HOT update that writes no index entry, even where the
 * deals were stored one after the other: each page keeps room for it. */
Test(schema, a_stage_change_of_densely_stored_deals_is_hot) {
    pgt_migrate_ok(&db);
    PGconn *c = pgt_connect_db(&db);
    insert_orgs_and_deals(c);
    pgt_execf(c,
              "insert into opportunities (org_id, external_id, account_id, stage, created_at, amount,"
              " source_hash, changed_at)"
              " select '%s', 'dense-' || g, 'a0000000-0000-4000-8000-0000000000a1', 'discovery', now(),"
              " 1000 + g, md5(g::text), now() from generate_series(1, 300) g",
              ORG_A);
    /* One deal of each page but the last (which may have room anyway). */
    pgt_exec(c, "create temp table moved as select id from (select distinct on ((ctid::text::point)[0]) id,"
                " (ctid::text::point)[0] as page from opportunities where external_id like 'dense-%'"
                " order by (ctid::text::point)[0]) p"
                " where page < (select max((ctid::text::point)[0]) from opportunities)");
    long long pages = pgt_longf(c, "select count(*) from moved");
    cr_assert_geq(pages, 2, "the deals fill %lld pages: too few to tell", pages + 1);
    pgt_exec(c, "begin");
    pgt_exec(c, "update opportunities o set stage = 'negotiation', source_hash = md5(o.id::text),"
                " changed_at = now(), ingested_at = now() from moved m where o.id = m.id");
    cr_expect_eq(pgt_longf(c, "select pg_stat_get_xact_tuples_hot_updated('public.opportunities'::regclass)"),
                 pages, "not every stage change of the %lld full pages was HOT", pages);
    pgt_exec(c, "commit");
    PQfinish(c);
}

/* A Supabase project that also hosts the customer's app: installing
 * dealscore (twice) leaves the app's grants, policies and public's default
 * privileges exactly as they were (20261126000300 revoked anon's and
 * authenticated's grants on every table in public), keeps dealscore's
 * internal tables out of the API roles' reach, and leaves every table and
 * view a frontend reads readable under its RLS. */
Test(schema, a_shared_supabase_project_keeps_the_apps_grants_and_policies) {
    char dir[] = "/tmp/ds-migrate-shim-XXXXXX";
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    const char *shim_only[] = {"--shim", "--dir", dir, NULL};
    pgt_proc_t p;
    int rc = pgt_migrate(&p, &db, shim_only);
    cr_assert_eq(rc, 0, "the shim alone: exit %d:\n%s", rc, p.out);
    pgt_proc_close(&p);
    rmdir(dir);

    PGconn *c = pgt_connect_db(&db);
    /* The app as Supabase sets it up: default privileges for the API roles,
     * then its own narrower grants and policies. */
    pgt_exec(
        c,
        "alter default privileges in schema public grant all on tables to anon, authenticated, service_role;"
        "alter default privileges in schema public grant all on sequences to anon, authenticated,"
        " service_role;"
        "create table public.todos (id bigserial primary key, owner uuid not null, body text);"
        "revoke all on public.todos from anon;"
        "grant select on public.todos to anon;"
        "revoke delete on public.todos from authenticated;"
        "alter table public.todos enable row level security;"
        "create policy todos_own on public.todos for all to authenticated"
        " using (owner = auth.uid()) with check (owner = auth.uid());"
        "create policy todos_read on public.todos for select to anon using (true);"
        "create view public.todo_counts as select owner, count(*) from public.todos group by owner;"
        "revoke all on public.todo_counts from anon;");
    char *before = app_privileges(c);
    cr_assert_not_null(before);
    cr_assert(strstr(before, " authenticated SELECT") && strstr(before, "pol todos todos_own"),
              "the fixture grants authenticated and has a policy: %s", before);

    pgt_migrate_ok(&db);
    pgt_migrate_ok(&db);
    char *after = app_privileges(c);
    cr_expect_str_eq(after, before, "the app's privileges changed:\n--- before\n%s\n--- after\n%s", before,
                     after);

    /* dealscore's internals: no API role can read them. */
    static const char *const internal[] = {"dealscore_internal.outbox",
                                           "dealscore_internal.ingest_tokens",
                                           "dealscore_internal.rescore_runs",
                                           "dealscore_internal.ingest_signatures",
                                           "dealscore_internal.notify_subscriptions",
                                           "dealscore_internal.notify_deliveries"};
    for (size_t i = 0; i < PGT_N(internal); i++)
        for (int r = 0; r < 2; r++)
            cr_expect_eq(pgt_longf(c, "select has_table_privilege('%s', '%s', 'select')::int",
                                   r ? "anon" : "authenticated", internal[i]),
                         0, "%s can read %s", r ? "anon" : "authenticated", internal[i]);
    cr_expect_null(pgt_valuef(c, "select string_agg(relname, ',') from pg_class"
                                 " where relnamespace = 'public'::regnamespace"
                                 " and relname in ('outbox', 'ingest_tokens')"),
                   "internal tables left in public");

    /* Every table and view of dealscore in public: authenticated reads its
     * own org's rows through RLS, and only those. */
    insert_orgs_and_deals(c);
    PGresult *res =
        pgt_query(c, "select c.relname from pg_class c where c.relnamespace = 'public'::regnamespace"
                     " and c.relkind in ('r', 'p', 'v')"
                     " and c.relname not in ('todos', 'todo_counts', 'schema_migrations')"
                     " order by 1");
    cr_assert_geq(PQntuples(res), 15, "dealscore's frontend tables and views");
    for (int i = 0; i < PQntuples(res); i++) {
        const char *rel = PQgetvalue(res, i, 0);
        pgt_exec(c, "begin");
        pgt_exec(c, "set local role authenticated");
        pgt_execf(
            c,
            "select set_config('request.jwt.claims', '{\"sub\": \"c0000000-0000-4000-8000-000000000001\","
            " \"role\": \"authenticated\", \"app_metadata\": {\"org_id\": \"%s\"}}', true)",
            ORG_A);
        char *sql = pgt_fmt("select count(*) from public.%s", rel);
        char *state = pgt_try(c, sql);
        cr_expect_null(state, "authenticated cannot read %s: %s", rel, state);
        bool failed = state != NULL;
        free(state);
        free(sql);
        if (!failed &&
            (strcmp(rel, "opportunities") == 0 || strcmp(rel, "accounts") == 0 || strcmp(rel, "orgs") == 0))
            cr_expect_eq(pgt_longf(c, "select count(*) from public.%s", rel), 1, "%s: only org A's row", rel);
        pgt_exec(c, "rollback");
    }
    PQclear(res);
    free(before);
    free(after);
    PQfinish(c);
}

/* The migration to one change shape wraps a predictions row's old drivers
 * array in {"previous_proba", "delta", "drivers"}, gives a first score
 * nulls and no drivers, and copies the latest score's document into its
 * history row (older history rows keep null). */
Test(schema, change_shape_migration_wraps_stored_changes) {
    const char *shape = "20261206004200_prediction_change_shape.sql";
    char dir[] = "/tmp/ds-migrate-shape-XXXXXX";
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    char files[64][128];
    int nfiles = migration_files(files, 64);
    for (int i = 0; i < nfiles && strcmp(files[i], shape) < 0; i++) {
        char *from = pgt_fmt("%s/sql/migrations/%s", DS_SOURCE_DIR, files[i]);
        char *to = pgt_fmt("%s/%s", dir, files[i]);
        cr_assert_eq(symlink(from, to), 0, "symlink %s", to);
        free(from);
        free(to);
    }
    const char *before[] = {"--shim", "--dir", dir, NULL};
    pgt_proc_t p;
    cr_assert_eq(pgt_migrate(&p, &db, before), 0, "%s", p.out);
    pgt_proc_close(&p);
    PGconn *c = pgt_connect_db(&db);
    /* clang-format off */
    pgt_exec(c,
        "insert into orgs (id, slug, name) values ('11111111-1111-4111-8111-111111111111', 'o', 'O');"
        "insert into opportunities (id, org_id, external_id, stage, created_at) values"
        " ('22222222-2222-4222-8222-222222222221', '11111111-1111-4111-8111-111111111111', 'A', 'demo', '2026-01-01Z'),"
        " ('22222222-2222-4222-8222-222222222222', '11111111-1111-4111-8111-111111111111', 'B', 'demo', '2026-01-01Z');"
        "insert into predictions (org_id, opportunity_id, as_of, model_version, proba_close, previous_proba, change)"
        " values ('11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222221', '2026-02-01Z', 'v1',"
        "  0.75, 0.5, '[{\"feature\": \"stage_index\", \"label\": \"Stage\", \"previous\": 0.25, \"current\": 1.25, \"change\": 1}]'),"
        " ('11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222', '2026-02-01Z', 'v1',"
        "  0.25, null, '[]');"
        "insert into prediction_history (org_id, opportunity_id, as_of, model_version, proba_close) values"
        " ('11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222221', '2026-01-15Z', 'v1', 0.5),"
        " ('11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222221', '2026-02-01Z', 'v1', 0.75);");
    /* clang-format on */
    const char *all[] = {"--shim", NULL};
    cr_assert_eq(pgt_migrate(&p, &db, all), 0, "%s", p.out);
    pgt_proc_close(&p);
    char *a = pgt_valuef(c, "select change::text from predictions where opportunity_id ="
                            " '22222222-2222-4222-8222-222222222221'");
    cr_expect_str_eq(
        a, "{\"delta\": 0.25, \"drivers\": [{\"label\": \"Stage\", \"change\": 1, \"current\": 1.25,"
           " \"feature\": \"stage_index\", \"previous\": 0.25}], \"previous_proba\": 0.5}");
    char *b = pgt_valuef(c, "select change::text from predictions where opportunity_id ="
                            " '22222222-2222-4222-8222-222222222222'");
    cr_expect_str_eq(b, "{\"delta\": null, \"drivers\": [], \"previous_proba\": null}");
    char *h =
        pgt_valuef(c, "select coalesce(string_agg(coalesce(change::text, 'null'), ' | ' order by as_of), '')"
                      " from prediction_history");
    char *want = pgt_fmt("null | %s", a);
    cr_expect_str_eq(h, want, "the latest history row has the predictions row's document");
    free(want);
    free(h);
    free(b);
    free(a);
    PQfinish(c);
}
