/* dealscore-scoring lexicon import: an org's MEDDICC phrases from CSV land
 * in meddicc_lexicon under its org id (weight 0 switches a phrase off), a
 * second import updates the same rows, and a file with one bad row writes
 * nothing and names each bad row and column. */
#include <criterion/criterion.h>

#include "pgtest.h"
#include "proc.h"

static pgt_db_t db;
static PGconn *conn;
static char dir[] = "/tmp/ds-lexicon-XXXXXX";

static void setup(void) {
    pgt_db_create(&db);
    pgt_migrate_ok(&db);
    conn = pgt_connect_db(&db);
    pgt_exec(conn, "insert into orgs (slug, name) values ('acme', 'Acme'), ('other', 'Other')");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    PQfinish(conn);
    pgt_db_drop(&db);
    char *cmd = pgt_fmt("rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
    free(cmd);
}

TestSuite(lexicon_import, .init = setup, .fini = teardown, .timeout = 120);

static char *write_csv(const char *name, const char *text) {
    char *path = pgt_fmt("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int import(const char *org, const char *path, char **out, char **err) {
    char *bin = proc_bin("dealscore-scoring");
    char *url = pgt_fmt("DEALSCORE_DATABASE_URL=%s", db.conninfo);
    char *argv[] = {bin, "lexicon", "import", "--org", (char *)org, (char *)path, NULL};
    char *env[] = {url, NULL};
    int rc = proc_run(argv, env, out, err, 60000);
    free(bin);
    free(url);
    return rc;
}

static char *org_rows(void) {
    return pgt_valuef(conn,
                      "select coalesce(string_agg(o.slug || ':' || element || ':' || phrase || ':' || weight,"
                      " ' | ' order by element, phrase), '') from meddicc_lexicon l join orgs o"
                      " on o.id = l.org_id");
}

Test(lexicon_import, rows_land_under_the_org_and_a_second_import_updates_them) {
    char *path = write_csv("acme.csv", "Element,Phrase,Weight\n"
                                       "champion,\"our sponsor, Dana\",1\n"
                                       "Economic Buyer,holds the purse strings,\n"
                                       "identify_pain,manual process,0\n");
    char *out = NULL, *err = NULL;
    cr_assert_eq(import("acme", path, &out, &err), 0, "stderr: %s", err);
    cr_expect(strstr(out, "3 phrases imported") && strstr(out, "(3 added, 0 updated)"), "stdout: %s", out);
    char *rows = org_rows();
    cr_expect_str_eq(rows,
                     "acme:champion:our sponsor, Dana:1 | acme:economic_buyer:holds the purse strings:1 |"
                     " acme:identify_pain:manual process:0");
    free(rows);
    free(out);
    free(err);
    char *again = write_csv("again.csv", "element,phrase,weight\nchampion,\"OUR SPONSOR, dana\",0.5\n");
    cr_assert_eq(import("acme", again, &out, &err), 0, "stderr: %s", err);
    cr_expect(strstr(out, "(0 added, 1 updated)"), "stdout: %s", out);
    cr_expect_eq(pgt_longf(conn, "select count(*) from meddicc_lexicon where org_id is not null"), 3);
    char *w =
        pgt_valuef(conn, "select phrase || ':' || weight from meddicc_lexicon where element = 'champion'"
                         " and org_id is not null");
    cr_expect_str_eq(w, "OUR SPONSOR, dana:0.5");
    free(w);
    free(out);
    free(err);
    free(path);
    free(again);
}

Test(lexicon_import, a_bad_row_writes_nothing_and_is_named) {
    long long before = pgt_longf(conn, "select count(*) from meddicc_lexicon");
    char *path = write_csv("bad.csv", "element,phrase,weight\n"
                                      "champion,our sponsor,1\n"
                                      "budget,owns it,1\n"
                                      "metrics,,1\n"
                                      "competition,rival,-1\n"
                                      "champion,Our Sponsor,1\n");
    char *out = NULL, *err = NULL;
    cr_assert_eq(import("acme", path, &out, &err), 1);
    cr_expect(strstr(err, "row 3: element: not a MEDDICC element"), "stderr: %s", err);
    cr_expect(strstr(err, "row 4: phrase: empty phrase"), "stderr: %s", err);
    cr_expect(strstr(err, "row 5: weight: must be a number >= 0"), "stderr: %s", err);
    cr_expect(strstr(err, "row 6: phrase: repeats row 2"), "stderr: %s", err);
    cr_expect(strstr(err, "4 problem(s)") && strstr(err, "nothing written"), "stderr: %s", err);
    cr_expect_eq(pgt_longf(conn, "select count(*) from meddicc_lexicon"), before);
    free(out);
    free(err);
    char *nohdr = write_csv("nohdr.csv", "element,words\nchampion,x\n");
    cr_assert_eq(import("acme", nohdr, &out, &err), 1);
    cr_expect(strstr(err, "row 1: header: needs the columns element and phrase"), "stderr: %s", err);
    free(out);
    free(err);
    cr_assert_eq(import("nobody", path, &out, &err), 1);
    cr_expect_eq(pgt_longf(conn, "select count(*) from meddicc_lexicon"), before);
    free(out);
    free(err);
    free(path);
    free(nohdr);
}
