/* Row-level security, checked the way Supabase applies it: in a transaction,
 * SET LOCAL ROLE authenticated (or anon) and the JWT claims in the setting
 * request.jwt.claims. Every table with an org_id column is found in the
 * catalog, so a new tenant table cannot slip past these tests: the fixture
 * must give it rows of both orgs, and the checks run on it. */
#include "pgtest.h"

#define ORG_A "a0000000-0000-4000-8000-000000000001"
#define ORG_B "b0000000-0000-4000-8000-000000000001"
#define ACC_A1 "a0000000-0000-4000-8000-0000000000a1"
#define ACC_A2 "a0000000-0000-4000-8000-0000000000a2"
#define ACC_B1 "b0000000-0000-4000-8000-0000000000b1"
#define OPP_A1 "a0000000-0000-4000-8000-00000000a001"
#define OPP_A2 "a0000000-0000-4000-8000-00000000a002"
#define OPP_B1 "b0000000-0000-4000-8000-00000000b001"
#define USER_U "c0000000-0000-4000-8000-000000000001" /* member of A1 */
#define USER_V "c0000000-0000-4000-8000-000000000002" /* member of A2 */
#define USER_W "c0000000-0000-4000-8000-000000000003" /* member of B1 */
#define USER_X "c0000000-0000-4000-8000-000000000004" /* member of nothing */

/* Rows for orgs A and B in every tenant table: org A has two accounts with
 * one opportunity each, org B one. A new tenant table needs rows here. */
static const char FIXTURE[] =
    "create temp table fx (org uuid, acc uuid, opp uuid, n text);"
    "insert into fx values ('" ORG_A "', '" ACC_A1 "', '" OPP_A1 "', 'a1'),"
    " ('" ORG_A "', '" ACC_A2 "', '" OPP_A2 "', 'a2'),"
    " ('" ORG_B "', '" ACC_B1 "', '" OPP_B1 "', 'b1');"
    "insert into orgs (id, slug, name) values ('" ORG_A "', 'org-a', 'Org A'),"
    " ('" ORG_B "', 'org-b', 'Org B');"
    "insert into accounts (id, org_id, external_id, name, industry, source_hash)"
    " select acc, org, 'acc-' || n, 'Account ' || n, 'software', 'h' from fx;"
    "insert into opportunities (id, org_id, external_id, account_id, account_external_id,"
    " stage, created_at, amount, source_hash)"
    " select opp, org, 'opp-' || n, acc, 'acc-' || n, 'Prospecting',"
    " now() - interval '30 days', 1000, 'h' from fx;"
    "insert into opportunity_history (org_id, opportunity_id, field, old_value, new_value,"
    " changed_at) select org, opp, 'stage', null, 'Prospecting', now() - interval '30 days'"
    " from fx;"
    "insert into interactions (org_id, external_id, opportunity_id, opportunity_external_id,"
    " type, occurred_at) select org, 'int-' || n, opp, 'opp-' || n, 'email',"
    " now() - interval '1 day' from fx;"
    "insert into transcripts (org_id, external_id, opportunity_id, opportunity_external_id,"
    " occurred_at, text) select org, 'tr-' || n, opp, 'opp-' || n, now(),"
    " 'we are also evaluating other vendors' from fx;"
    "insert into features_snapshot (org_id, opportunity_id, as_of, feature_version, features)"
    " select org, opp, now(), 'v1', '{\"days_open\": 30}' from fx;"
    "insert into predictions (org_id, opportunity_id, account_id, as_of, model_version,"
    " proba_close) select org, opp, acc, now(), 'stage-prior', 0.3 from fx;"
    "insert into prediction_history (org_id, opportunity_id, as_of, model_version, proba_close)"
    " select org, opp, now(), 'stage-prior', 0.3 from fx;"
    "insert into opportunity_benchmarks (org_id, opportunity_id, account_id, cohort_key,"
    " match_level) select org, opp, acc, 'software|x', 'full' from fx;"
    "insert into dealscore_internal.outbox (org_id, opportunity_id, account_id, kind)"
    " select org, opp, acc, 'opportunity.changed' from fx;"
    "insert into dealscore_internal.outbox (org_id, opportunity_id, account_id, kind)"
    " select org, null, acc, 'account.updated' from fx;"
    "insert into account_members (org_id, account_id, user_id) values"
    " ('" ORG_A "', '" ACC_A1 "', '" USER_U "'), ('" ORG_A "', '" ACC_A2 "', '" USER_V "'),"
    " ('" ORG_B "', '" ACC_B1 "', '" USER_W "');"
    "insert into benchmarks_cached (org_id, cohort_key, as_of, match_level, cohort_size)"
    " select distinct org, 'software|x', now(), 'full', 10 from fx;"
    "insert into models (org_id, version, feature_names, status)"
    " select distinct org, 'v1', '{days_open}'::text[], 'active' from fx;"
    "insert into dealscore_internal.ingest_tokens (org_id, token_hash, name)"
    " select distinct org, 'hash-' || org, 'n8n' from fx;"
    "insert into meddicc_lexicon (org_id, element, phrase)"
    " select distinct org, 'champion', 'our internal friend' from fx;"
    "insert into deal_risks (org_id, opportunity_id, account_id, as_of, model_version, proba_close, risks)"
    " select org, opp, acc, now(), 'stage-prior', 0.3, '[{\"rule\": \"stalled\"}]' from fx;"
    "insert into risk_rules (org_id, rule, param, fallback, action)"
    " select distinct org, 'stalled', 1.5, 45, 'Call the buyer' from fx;"
    "insert into forecast_rates (org_id, months_ahead, stage, deals, expected, won, rate)"
    " select distinct org, 0, '', 10, 1000, 500, 0.5 from fx;"
    "drop table fx;";

/* Tables without an account or opportunity that account-scoped users still
 * see (org-wide data), and those they never see. A new org-wide table must
 * be put in one of the two lists. */
static const char *const ORG_WIDE_VISIBLE[] = {"benchmarks_cached", "models", "meddicc_lexicon", "risk_rules",
                                               "forecast_rates"};
static const char *const ORG_WIDE_HIDDEN[] = {"ingest_tokens"};

/* What only the workers use: no API role may read or write any of it. */
static const char *const INTERNAL[] = {"dealscore_internal.outbox", "dealscore_internal.ingest_tokens",
                                       "dealscore_internal.rescore_runs",
                                       "dealscore_internal.ingest_signatures"};

static pgt_db_t db;
static PGconn *conn;

typedef struct {
    char name[64];
    bool has_account;     /* an account_id column */
    bool has_opportunity; /* an opportunity_id column */
} table_t;

static table_t tables[64];
static int ntables;

static void setup(void) {
    pgt_db_create(&db);
    pgt_migrate_ok(&db);
    conn = pgt_connect_db(&db);
    pgt_exec(conn, FIXTURE);

    PGresult *r = pgt_query(conn, "select c.relname,"
                                  "  exists (select 1 from pg_attribute a where a.attrelid = c.oid"
                                  "          and a.attname = 'account_id' and not a.attisdropped),"
                                  "  exists (select 1 from pg_attribute a where a.attrelid = c.oid"
                                  "          and a.attname = 'opportunity_id' and not a.attisdropped)"
                                  " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                                  " where n.nspname = 'public' and c.relkind in ('r', 'p')"
                                  "   and exists (select 1 from pg_attribute a where a.attrelid = c.oid"
                                  "               and a.attname = 'org_id' and not a.attisdropped)"
                                  " order by 1");
    ntables = PQntuples(r);
    cr_assert_leq(ntables, 64, "too many tenant tables for the test");
    /* 15 until outbox and ingest_tokens left public for dealscore_internal. */
    cr_assert_geq(ntables, 13, "expected at least 13 tenant tables, found %d", ntables);
    for (int i = 0; i < ntables; i++) {
        snprintf(tables[i].name, sizeof tables[i].name, "%s", PQgetvalue(r, i, 0));
        tables[i].has_account = PQgetvalue(r, i, 1)[0] == 't';
        tables[i].has_opportunity = PQgetvalue(r, i, 2)[0] == 't';
    }
    PQclear(r);

    /* The fixture must cover every tenant table, for both orgs. */
    for (int i = 0; i < ntables; i++) {
        const char *t = tables[i].name;
        cr_assert_gt(pgt_longf(conn, "select count(*) from public.%s where org_id = '" ORG_A "'", t), 0,
                     "the fixture has no rows of org A in %s: add them to FIXTURE", t);
        cr_assert_gt(pgt_longf(conn, "select count(*) from public.%s where org_id = '" ORG_B "'", t), 0,
                     "the fixture has no rows of org B in %s: add them to FIXTURE", t);
    }
}

static void teardown(void) {
    PQfinish(conn);
    conn = NULL;
    pgt_db_drop(&db);
}

TestSuite(rls, .init = setup, .fini = teardown, .timeout = 240);

/* Runs sql as role with the given JWT claims, inside a transaction that is
 * rolled back. Returns the first value of the result as a number, or the
 * number of rows a write affected; on error returns -1 and, if sqlstate is
 * not NULL, stores the SQLSTATE (caller frees). */
static long long as_user(const char *role, const char *claims, const char *sql, char **sqlstate) {
    pgt_exec(conn, "begin");
    pgt_execf(conn, "set local role %s", role);
    const char *params[1] = {claims};
    PGresult *r = PQexecParams(conn, "select set_config('request.jwt.claims', $1, true)", 1, NULL, params,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        cr_fatal("could not set the jwt claims: %s", PQresultErrorMessage(r));
    PQclear(r);

    long long v = -1;
    r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) >= 1 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else if (st == PGRES_COMMAND_OK)
        v = strtoll(PQcmdTuples(r), NULL, 10);
    else if (st == PGRES_TUPLES_OK)
        cr_fatal("unexpected result shape from: %s", sql);
    else if (sqlstate) {
        const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        *sqlstate = pgt_fmt("%s", s ? s : "?????");
    } else {
        cr_fatal("query as %s failed: %s\nquery: %s\nclaims: %s", role, PQresultErrorMessage(r), sql, claims);
    }
    PQclear(r);
    pgt_exec(conn, "rollback");
    return v;
}

/* count(*) of table where cond, as the user and as the superuser. */
static long long user_count(const char *claims, const char *table, const char *cond) {
    char *sql = pgt_fmt("select count(*) from public.%s where %s", table, cond);
    long long n = as_user("authenticated", claims, sql, NULL);
    free(sql);
    return n;
}

static long long su_count(const char *table, const char *cond) {
    return pgt_longf(conn, "select count(*) from public.%s where %s", table, cond);
}

static char *claims_for(const char *user, const char *org, bool scoped) {
    return pgt_fmt("{\"sub\": \"%s\", \"role\": \"authenticated\", \"aud\": \"authenticated\","
                   " \"app_metadata\": {\"org_id\": \"%s\"%s}}",
                   user, org, scoped ? ", \"account_scoped\": true" : "");
}

static bool in_list(const char *name, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0) return true;
    return false;
}

Test(rls, user_sees_all_of_own_org_and_nothing_of_another) {
    char *claims = claims_for(USER_U, ORG_A, false);
    for (int i = 0; i < ntables; i++) {
        const char *t = tables[i].name;
        long long own = su_count(t, "org_id = '" ORG_A "'");
        long long shared = su_count(t, "org_id is null");
        cr_expect_eq(user_count(claims, t, "org_id = '" ORG_B "'"), 0,
                     "a user of org A sees rows of org B in %s", t);
        cr_expect_eq(user_count(claims, t, "org_id = '" ORG_A "'"), own,
                     "a user of org A does not see all of org A's rows in %s", t);
        cr_expect_eq(user_count(claims, t, "true"), own + shared,
                     "a user of org A sees rows of no org or another org in %s", t);
    }
    cr_expect_eq(user_count(claims, "orgs", "true"), 1, "a user sees another org");
    cr_expect_eq(user_count(claims, "orgs", "id = '" ORG_A "'"), 1, "a user cannot see the org");
    free(claims);

    /* The same from org B's side. */
    claims = claims_for(USER_W, ORG_B, false);
    for (int i = 0; i < ntables; i++) {
        const char *t = tables[i].name;
        cr_expect_eq(user_count(claims, t, "org_id = '" ORG_A "'"), 0,
                     "a user of org B sees rows of org A in %s", t);
        cr_expect_eq(user_count(claims, t, "org_id = '" ORG_B "'"), su_count(t, "org_id = '" ORG_B "'"),
                     "a user of org B does not see all of org B's rows in %s", t);
    }
    cr_expect_eq(user_count(claims, "orgs", "id = '" ORG_B "'"), 1);
    cr_expect_eq(user_count(claims, "orgs", "true"), 1);
    free(claims);
}

/* Rows of org A an account-scoped member of account A1 may see; NULL when the
 * table's rows are all hidden from account-scoped users. */
static char *scoped_visible_cond(const table_t *t) {
    if (strcmp(t->name, "accounts") == 0) return pgt_fmt("org_id = '" ORG_A "' and id = '" ACC_A1 "'");
    if (t->has_opportunity && t->has_account)
        return pgt_fmt("org_id = '" ORG_A "' and (opportunity_id = '" OPP_A1 "'"
                       " or (opportunity_id is null and account_id = '" ACC_A1 "'))");
    if (t->has_opportunity) return pgt_fmt("org_id = '" ORG_A "' and opportunity_id = '" OPP_A1 "'");
    if (t->has_account) return pgt_fmt("org_id = '" ORG_A "' and account_id = '" ACC_A1 "'");
    if (in_list(t->name, ORG_WIDE_VISIBLE, PGT_N(ORG_WIDE_VISIBLE)))
        return pgt_fmt("org_id = '" ORG_A "' or org_id is null");
    if (in_list(t->name, ORG_WIDE_HIDDEN, PGT_N(ORG_WIDE_HIDDEN))) return NULL;
    cr_fatal("table %s has neither account_id nor opportunity_id: decide whether account-scoped "
             "users see it and add it to ORG_WIDE_VISIBLE or ORG_WIDE_HIDDEN",
             t->name);
    return NULL;
}

Test(rls, account_scoped_user_sees_only_member_accounts) {
    char *claims = claims_for(USER_U, ORG_A, true);
    for (int i = 0; i < ntables; i++) {
        const table_t *t = &tables[i];
        char *cond = scoped_visible_cond(t);
        long long want = cond ? su_count(t->name, cond) : 0;
        if (cond && (t->has_account || t->has_opportunity || !strcmp(t->name, "accounts")))
            cr_assert_gt(want, 0, "the fixture has no rows of account A1 in %s", t->name);
        long long got = user_count(claims, t->name, "true");
        cr_expect_eq(got, want, "an account-scoped user sees %lld rows of %s, want %lld", got, t->name, want);
        if (cond)
            cr_expect_eq(user_count(claims, t->name, cond), want,
                         "an account-scoped user does not see its member rows of %s", t->name);
        free(cond);
        if (t->has_opportunity) {
            cr_expect_eq(user_count(claims, t->name, "opportunity_id = '" OPP_A2 "'"), 0,
                         "an account-scoped user sees %s of a non-member account", t->name);
        }
        if (t->has_account) {
            cr_expect_eq(user_count(claims, t->name, "account_id = '" ACC_A2 "'"), 0,
                         "an account-scoped user sees %s of a non-member account", t->name);
        }
    }
    cr_expect_eq(user_count(claims, "orgs", "true"), 1, "an account-scoped user lost its org");
    free(claims);

    /* The policy follows the opportunity, not a stale copy of its account:
     * a prediction of A2's deal that claims to be A1's stays hidden. */
    pgt_exec(conn, "update predictions set account_id = '" ACC_A1 "'"
                   " where opportunity_id = '" OPP_A2 "'");
    claims = claims_for(USER_U, ORG_A, true);
    cr_expect_eq(user_count(claims, "predictions", "opportunity_id = '" OPP_A2 "'"), 0,
                 "a stale account_id on predictions widened access");
    free(claims);
    pgt_exec(conn, "update predictions set account_id = '" ACC_A2 "'"
                   " where opportunity_id = '" OPP_A2 "'");

    /* Moving the deal to a member account makes its rows visible. */
    pgt_exec(conn, "update opportunities set account_id = '" ACC_A1 "'"
                   " where id = '" OPP_A2 "'");
    claims = claims_for(USER_U, ORG_A, true);
    cr_expect_eq(user_count(claims, "interactions", "opportunity_id = '" OPP_A2 "'"), 1,
                 "rows of a deal moved into a member account stay hidden");
    free(claims);
}

Test(rls, account_scoped_user_without_membership_sees_no_deals) {
    /* X is a member of nothing; U is a member of A1 but claims org B, where
     * it is a member of nothing either. */
    const char *const users[][2] = {{USER_X, ORG_A}, {USER_U, ORG_B}};
    for (size_t u = 0; u < PGT_N(users); u++) {
        char *claims = claims_for(users[u][0], users[u][1], true);
        for (int i = 0; i < ntables; i++) {
            const table_t *t = &tables[i];
            if (!t->has_account && !t->has_opportunity && strcmp(t->name, "accounts") != 0) continue;
            cr_expect_eq(user_count(claims, t->name, "true"), 0,
                         "an account-scoped user with no membership in %s sees rows of %s", users[u][1],
                         t->name);
        }
        free(claims);
    }
}

Test(rls, scoped_flag_values) {
    /* account_scoped false or absent: unscoped; any other value: scoped. */
    static const char *const unscoped[] = {"false", "null", "\"false\""};
    static const char *const scoped[] = {"true", "\"true\"", "1", "\"yes\""};
    long long all = su_count("opportunities", "org_id = '" ORG_A "'");
    for (size_t i = 0; i < PGT_N(unscoped) + PGT_N(scoped); i++) {
        bool is_scoped = i >= PGT_N(unscoped);
        const char *v = is_scoped ? scoped[i - PGT_N(unscoped)] : unscoped[i];
        char *claims = pgt_fmt("{\"sub\": \"" USER_U "\", \"role\": \"authenticated\","
                               " \"app_metadata\": {\"org_id\": \"" ORG_A "\","
                               " \"account_scoped\": %s}}",
                               v);
        cr_expect_eq(user_count(claims, "opportunities", "true"), is_scoped ? 1 : all,
                     "account_scoped = %s is treated as %s", v, is_scoped ? "unscoped" : "scoped");
        free(claims);
    }
}

Test(rls, user_without_a_valid_org_sees_nothing) {
    static const char *const claims[] = {
        "{}",
        "{\"sub\": \"" USER_U "\", \"role\": \"authenticated\"}",
        "{\"sub\": \"" USER_U "\", \"role\": \"authenticated\", \"app_metadata\": {}}",
        "{\"sub\": \"" USER_U "\", \"role\": \"authenticated\","
        " \"app_metadata\": {\"org_id\": \"not-a-uuid\"}}",
        /* user_metadata is writable by the user: it must not count. */
        "{\"sub\": \"" USER_U "\", \"role\": \"authenticated\","
        " \"user_metadata\": {\"org_id\": \"" ORG_A "\"}}",
    };
    for (size_t c = 0; c < PGT_N(claims); c++) {
        for (int i = 0; i < ntables; i++)
            cr_expect_eq(user_count(claims[c], tables[i].name, "org_id is not null"), 0,
                         "claims %s see rows of %s", claims[c], tables[i].name);
        cr_expect_eq(user_count(claims[c], "orgs", "true"), 0, "claims %s see an org", claims[c]);
    }
}

Test(rls, anon_sees_nothing) {
    /* Even with an org in its claims. */
    const char *claims = "{\"role\": \"anon\", \"app_metadata\": {\"org_id\": \"" ORG_A "\"}}";
    for (int i = -1; i < ntables; i++) {
        const char *t = i < 0 ? "orgs" : tables[i].name;
        char *sql = pgt_fmt("select count(*) from public.%s", t);
        char *state = NULL;
        long long n = as_user("anon", claims, sql, &state);
        if (state)
            cr_expect_str_eq(state, "42501", "anon reading %s failed with %s, not a privilege error", t,
                             state);
        else
            cr_expect_eq(n, 0, "anon sees %lld rows of %s", n, t);
        free(state);
        free(sql);
    }
}

Test(rls, api_users_cannot_write) {
    char *claims = claims_for(USER_U, ORG_A, false);
    static const char *const roles[] = {"authenticated", "anon"};
    for (size_t r = 0; r < PGT_N(roles); r++) {
        for (int i = -1; i < ntables; i++) {
            const char *t = i < 0 ? "orgs" : tables[i].name;
            /* One column a table of rows has (a generated column, e.g.
             * interactions.contact, refuses select * before any privilege). */
            const char *col = i < 0 ? "id" : "org_id";
            char *stmts[3] = {
                pgt_fmt("insert into public.%s (%s) select %s from public.%s", t, col, col, t),
                pgt_fmt("update public.%s set %s = %s", t, col, col),
                pgt_fmt("delete from public.%s", t),
            };
            for (int s = 0; s < 3; s++) {
                char *state = NULL;
                long long n = as_user(roles[r], claims, stmts[s], &state);
                cr_expect(state || n == 0, "%s changed %lld rows: %s", roles[r], n, stmts[s]);
                if (state)
                    cr_expect_str_eq(state, "42501", "%s: %s failed with %s, not a privilege error", roles[r],
                                     stmts[s], state);
                free(state);
                free(stmts[s]);
            }
        }
    }
    free(claims);
}

/* The outbox (event rows) and the ingest tokens were readable through
 * Supabase's REST API; now neither API role can touch any internal table,
 * whatever its claims. */
Test(rls, internal_tables_are_out_of_reach_of_api_users) {
    char *claims = claims_for(USER_U, ORG_A, false);
    static const char *const roles[] = {"authenticated", "anon"};
    for (size_t r = 0; r < PGT_N(roles); r++) {
        for (size_t i = 0; i < PGT_N(INTERNAL); i++) {
            cr_expect_gt(pgt_longf(conn, "select count(*) + 1 from %s", INTERNAL[i]), 0);
            char *stmts[2] = {pgt_fmt("select count(*) from %s", INTERNAL[i]),
                              pgt_fmt("delete from %s", INTERNAL[i])};
            for (int s = 0; s < 2; s++) {
                char *state = NULL;
                as_user(roles[r], claims, stmts[s], &state);
                cr_expect(state && strcmp(state, "42501") == 0, "%s: %s gave %s, not a privilege error",
                          roles[r], stmts[s], state ? state : "no error");
                free(state);
                free(stmts[s]);
            }
        }
        cr_expect_eq(pgt_longf(conn, "select has_schema_privilege('%s', 'dealscore_internal', 'usage')::int",
                               roles[r]),
                     0, "%s may use the schema dealscore_internal", roles[r]);
    }
    free(claims);
}
