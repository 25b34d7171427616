/* The forecast view under RLS, as Supabase applies it: per org, owner and
 * close month or quarter, the open scored deals' count, amount, expected
 * won amount and P10-P90 band of what they win within their close month
 * (q = p * the org's in-month rate of the deal's stage; the normal
 * approximation of domain/forecast.h, compared here with
 * ds_forecast_normal_groups on the same q, a quarter's months each with
 * a theta of its own); another org's user reads none of it nor its
 * rates, anon nothing at all. */
#include <criterion/criterion.h>
#include <math.h>

#include "pgtest.h"
#include "proc.h"
#include "domain/forecast.h"

#define ORG_A "a0000000-0000-4000-8000-000000000001"
#define ORG_B "b0000000-0000-4000-8000-000000000001"

#define ORG_SHOCK 0.01

static pgt_db_t db;
static PGconn *conn;

/* Org A: ann's deals close in March (0.5 x 100, 0.2 x 200) and February
 * (0.9 x 300), in stage "Proposal" whose in-month rate is 0.5: q = 0.25,
 * 0.1, 0.45; bob's in March (0.6 x 1000), February (0.9 x 2000) and
 * January (0.5 x 1000) in "negotiation", which has no rate of its own:
 * the org's, 0.8, q = 0.48, 0.72 and 0.4; a won deal and an open deal
 * without a close date are left out; the org's month-level variance is
 * 0.01; its rates are the same at 0 to 3 months ahead. Org B: one deal
 * (0.3 x 400) whose close date is in next month, 1 month ahead, where its
 * org's rate is 0.5 (0.9 in this month): q = 0.15, no month-level
 * variance. */
static const char FIXTURE[] =
    "insert into orgs (id, slug, name) values ('" ORG_A "', 'org-a', 'A'), ('" ORG_B "', 'org-b', 'B');"
    "create temp table fx (org uuid, ext text, owner text, stage text, amount numeric, close date,"
    " outcome text, p float8);"
    "insert into fx values"
    " ('" ORG_A "', 'a1', 'ann', 'Proposal', 100, '2027-03-05', 'open', 0.5),"
    " ('" ORG_A "', 'a2', 'ann', 'Proposal', 200, '2027-03-31', 'open', 0.2),"
    " ('" ORG_A "', 'a3', 'ann', 'Proposal', 300, '2027-02-01', 'open', 0.9),"
    " ('" ORG_A "', 'a4', 'bob', 'negotiation', 1000, '2027-03-15', 'open', 0.6),"
    " ('" ORG_A "', 'a7', 'bob', 'negotiation', 2000, '2027-02-10', 'open', 0.9),"
    " ('" ORG_A "', 'a8', 'bob', 'negotiation', 1000, '2027-01-20', 'open', 0.5),"
    " ('" ORG_A "', 'a5', 'bob', 'proposal', 5000, '2027-03-15', 'won', 0.99),"
    " ('" ORG_A "', 'a6', 'bob', 'proposal', 7000, null, 'open', 0.5),"
    " ('" ORG_B "', 'b1', 'cy', 'proposal', 400, date_trunc('month', now()) + interval '1 month 9 days',"
    "  'open', 0.3);"
    "insert into opportunities (org_id, external_id, owner_id, stage, created_at, amount, close_date,"
    " outcome, source_hash) select org, ext, owner, stage, '2027-01-01Z', amount, close, outcome, 'h'"
    " from fx;"
    "insert into predictions (org_id, opportunity_id, as_of, model_version, proba_close)"
    " select o.org_id, o.id, now(), 'm1', fx.p from fx join opportunities o on o.external_id = fx.ext;"
    "drop table fx;"
    "insert into forecast_rates (org_id, months_ahead, stage, deals, expected, won, rate, shock_var)"
    " select v.org::uuid, h, v.stage, 10, 1000, 500, v.rate, v.shock from (values ('" ORG_A
    "', '', 0.8, 0.01),"
    " ('" ORG_A "', 'proposal', 0.5, 0)) v(org, stage, rate, shock) cross join generate_series(0, 3) h;"
    "insert into forecast_rates (org_id, months_ahead, stage, deals, expected, won, rate) values"
    " ('" ORG_B "', 0, '', 5, 500, 400, 0.9), ('" ORG_B "', 1, '', 5, 500, 250, 0.5);";

static void setup(void) {
    pgt_db_create(&db);
    pgt_migrate_ok(&db);
    conn = pgt_connect_db(&db);
    pgt_exec(conn, FIXTURE);
}

static void teardown(void) {
    PQfinish(conn);
    pgt_db_drop(&db);
}

TestSuite(forecast, .init = setup, .fini = teardown, .timeout = 120);

static void begin_as(const char *role, const char *org) {
    pgt_exec(conn, "begin");
    pgt_execf(conn, "set local role %s", role);
    pgt_execf(conn,
              "select set_config('request.jwt.claims', '{\"sub\": \"c0000000-0000-4000-8000-000000000001\","
              " \"role\": \"%s\", \"app_metadata\": {\"org_id\": \"%s\"}}', true)",
              role, org);
}

/* One row of the view as "deals amount expected p10 p90", or NULL. */
static char *row(const char *where) {
    return pgt_valuef(conn,
                      "select deals || ' ' || amount || ' ' || round(expected_won::numeric, 6) || ' '"
                      " || round(won_p10::numeric, 6) || ' ' || round(won_p90::numeric, 6)"
                      " from forecast where %s",
                      where);
}

/* The row's figures as ds_forecast_normal_groups computes them, the deal
 * i in group[i] (its close month's index in the quarter; NULL: one),
 * every group with the month-level variance shock_var. */
static void expect_row(const char *where, const double *p, const double *a, const size_t *group, size_t n,
                       double shock_var) {
    ds_forecast_t f;
    const double shock[3] = {shock_var, shock_var, shock_var};
    ds_forecast_normal_groups(p, a, group, n, shock, 3, &f);
    char *want = pgt_fmt("%zu %g %.6f %.6f %.6f", n, f.amount, f.expected, f.p10, f.p90);
    char *got = row(where);
    cr_expect_str_eq(got ? got : "(none)", want, "%s", where);
    free(got);
    free(want);
}

Test(forecast, per_owner_month_and_quarter_for_the_users_org) {
    begin_as("authenticated", ORG_A);
    cr_expect_eq(pgt_longf(conn, "select count(*) from forecast where org_id <> '" ORG_A "'"), 0);
    const double q_ann_mar[] = {0.25, 0.1}, a_ann_mar[] = {100, 200};
    expect_row("owner_id = 'ann' and period = 'month' and period_start = '2027-03-01'", q_ann_mar, a_ann_mar,
               NULL, 2, ORG_SHOCK);
    /* Ann's quarter: the three deals of the hand-computed exact band in
     * tests/unit/test_forecast.c (a_month_whose_deals_slip), expected 180,
     * March's two and February's one. */
    const double q_ann_q[] = {0.25, 0.1, 0.45}, a_ann_q[] = {100, 200, 300};
    const size_t g_ann_q[] = {0, 0, 1};
    expect_row("owner_id = 'ann' and period = 'quarter' and period_start = '2027-01-01'", q_ann_q, a_ann_q,
               g_ann_q, 3, ORG_SHOCK);
    cr_expect_eq(pgt_longf(conn, "select round(expected_won)::int from forecast where owner_id = 'ann'"
                                 " and period = 'quarter'"),
                 180);
    /* Bob's quarter by hand: January (q 0.4 on 1000), February (0.72 on
     * 2000) and March (0.48 on 1000), each month's variance sum (q - q^2
     * (1 + s)) a^2 + s mean^2 with s = 0.01: 238,400 + 1,600, 785,664 +
     * 20,736 and 247,296 + 2,304, 1,296,000 in all; 2320 -+
     * 1.2815515655446004 x sqrt(1,296,000). One theta shared by the
     * quarter would give 1,325,184. */
    char *bob_q = row("owner_id = 'bob' and period = 'quarter' and period_start = '2027-01-01'");
    cr_expect_str_eq(bob_q ? bob_q : "(none)", "3 4000 2320.000000 861.056121 3778.943879");
    free(bob_q);
    const double q_mar[] = {0.25, 0.1, 0.48}, a_mar[] = {100, 200, 1000};
    expect_row("all_owners and period = 'month' and period_start = '2027-03-01'", q_mar, a_mar, NULL, 3,
               ORG_SHOCK);
    const double q_q1[] = {0.25, 0.1, 0.45, 0.48, 0.72, 0.4}, a_q1[] = {100, 200, 300, 1000, 2000, 1000};
    const size_t g_q1[] = {0, 0, 1, 0, 1, 2};
    expect_row("all_owners and period = 'quarter' and period_start = '2027-01-01'", q_q1, a_q1, g_q1, 6,
               ORG_SHOCK);
    /* Months: ann February and March, bob January to March, and the
     * org's three. */
    cr_expect_eq(pgt_longf(conn, "select count(*) from forecast where period = 'month'"), 8);
    pgt_exec(conn, "rollback");
}

Test(forecast, another_orgs_user_and_anon_see_none_of_it) {
    begin_as("authenticated", ORG_B);
    cr_expect_eq(pgt_longf(conn, "select count(*) from forecast where org_id = '" ORG_A "'"), 0);
    cr_expect_eq(pgt_longf(conn, "select count(*) from forecast where period = 'month'"), 2,
                 "org B's own month: cy's row and the org's");
    const double q_b[] = {0.15}, a_b[] = {400};
    expect_row("all_owners and period = 'month'", q_b, a_b, NULL, 1, 0);
    cr_expect_eq(pgt_longf(conn, "select count(*) from forecast_rates"), 2, "org B's own rates only");
    pgt_exec(conn, "rollback");
    begin_as("anon", ORG_A);
    char *state = pgt_try(conn, "select count(*) from forecast");
    cr_expect_str_eq(state ? state : "(read)", "42501", "anon reads the forecast");
    free(state);
    pgt_exec(conn, "rollback");
}

/* forecast-backtest on org A's deals: one of 200 forecast for February
 * (close date 02-20 on 02-01) that won on 02-10, and three open on
 * 2026-03-01 with March close dates: 100 won on 03-20, 300 lost on 03-28,
 * 50 won on 04-10 (its close date moved then, so it is no April forecast
 * either). February has no month before it with forecast deals and is not
 * replayed; March's forecast holds the three (450), with rates learnt from
 * February; they won 100 within the month and 50 after it. The command
 * stores the rates of all the months in place of the fixture's: 300 won
 * within their close month at 0 months ahead (bt0 in February, bt1 in
 * March), 100 at 1 month ahead (bt1, forecast on 02-01 for March), all in
 * stage proposal; at 2 and 3 months ahead the org's rows have no deals
 * and the rate a month nearer. */
Test(forecast, backtest_replays_a_month_against_what_it_won) {
    pgt_exec(
        conn,
        "insert into opportunities (org_id, external_id, owner_id, stage, created_at, amount, close_date,"
        " outcome, closed_at, source_hash) values"
        " ('" ORG_A
        "', 'bt0', 'ann', 'closed_won', '2026-01-15Z', 200, '2026-02-10', 'won', '2026-02-10Z', 'h'),"
        " ('" ORG_A
        "', 'bt1', 'ann', 'closed_won', '2026-02-01Z', 100, '2026-03-20', 'won', '2026-03-20Z', 'h'),"
        " ('" ORG_A
        "', 'bt2', 'ann', 'closed_lost', '2026-02-01Z', 300, '2026-03-28', 'lost', '2026-03-28Z', 'h'),"
        " ('" ORG_A
        "', 'bt3', 'ann', 'closed_won', '2026-02-01Z', 50, '2026-04-10', 'won', '2026-04-10Z', 'h');"
        "insert into opportunity_history (org_id, opportunity_id, field, old_value, new_value, changed_at)"
        " select o.org_id, o.id, f.field, f.old, f.new, f.at::timestamptz from opportunities o"
        " cross join lateral (select o.created_at::text as at0, case o.external_id when 'bt0' then"
        "  '2026-02-20' when 'bt1' then '2026-03-15' else '2026-03-25' end as close0) c"
        " cross join lateral (values ('stage', null, 'proposal', c.at0), ('amount', null, o.amount::text, "
        "c.at0),"
        "  ('close_date', null, c.close0, c.at0),"
        "  ('close_date', c.close0, o.close_date::text, o.closed_at::text),"
        "  ('stage', 'proposal', o.stage, o.closed_at::text)) as f(field, old, new, at)"
        " where o.external_id in ('bt0', 'bt1', 'bt2', 'bt3')");
    char *bin = proc_bin("dealscore-scoring");
    char *env0 = pgt_fmt("DEALSCORE_DATABASE_URL=%s", db.conninfo);
    char *argv[] = {bin, "forecast-backtest", "--org", "org-a", "--months", "240", NULL};
    char *envp[] = {env0, NULL};
    char *out = NULL, *err = NULL;
    int rc = proc_run(argv, envp, &out, &err, 60000);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    char *line = strstr(out, "\n2026-03 ");
    cr_assert_not_null(line, "no March row: %s", out);
    char month[16], inside[8];
    size_t deals;
    double amount, expected, p10, p90, actual, won_later;
    cr_assert_eq(sscanf(line + 1, "%15s %zu %lf %lf %lf %lf %lf %7s %lf", month, &deals, &amount, &expected,
                        &p10, &p90, &actual, inside, &won_later),
                 9, "%s", out);
    cr_expect_eq(deals, 3);
    cr_expect_eq(amount, 450);
    cr_expect_eq(actual, 100);
    cr_expect_eq(won_later, 50);
    cr_expect(expected > 0 && expected < 450 && p10 <= expected && expected <= p90, "%s", out);
    cr_expect_null(strstr(out, "\n2026-04 "), "April had no deal whose close date was in it: %s", out);
    /* The stored rates: (won + 5 m prior) / (expected + 5 m), m = expected /
     * deals; the org's ('') with prior 1 at 0 months ahead and the org's
     * rate a month nearer after; the stage index of proposal with the org's
     * rate as prior, under each name of the org's list with that index
     * (Salesforce's "Id. Decision Makers" shares it); the fixture's rows
     * are replaced. */
    char *rates = pgt_valuef(
        conn,
        "select string_agg(format('%%s %%s %%s %%s', months_ahead, stage, round(won)::bigint,"
        " round((rate - case deals when 0 then prior"
        " else (won + 5 * expected / deals * prior) / (expected + 5 * expected / deals) end)::numeric, 12)),"
        " ', ' order by months_ahead, stage) from (select f.*, case when stage <> '' then (select rate from"
        " forecast_rates g where g.org_id = f.org_id and g.months_ahead = f.months_ahead and g.stage = '')"
        " when months_ahead = 0 then 1 else (select rate from forecast_rates g where g.org_id = f.org_id"
        " and g.months_ahead = f.months_ahead - 1 and g.stage = '') end as prior"
        " from forecast_rates f where org_id = '" ORG_A "') r");
    cr_expect_str_eq(rates ? rates : "(none)",
                     "0  300 0.000000000000, 0 id_decision_makers 300 0.000000000000,"
                     " 0 proposal 300 0.000000000000, 1  100 0.000000000000,"
                     " 1 id_decision_makers 100 0.000000000000, 1 proposal 100 0.000000000000,"
                     " 2  0 0.000000000000, 3  0 0.000000000000");
    free(rates);
    cr_expect_str_eq(inside, p10 <= 100 && 100 <= p90 ? "yes" : "no");
    cr_expect_not_null(strstr(out, "band P10-P90 holds the actual in"), "%s", out);
    /* The horizons' summary: the March forecast made on 02-01 (bt1, 1 month
     * ahead) has no earlier 1-month-ahead forecast to learn its rate from. */
    cr_expect_not_null(strstr(out, "\n0 months ahead        1       "), "%s", out);
    cr_expect_not_null(strstr(out, "\n1 month ahead         0       0"), "%s", out);
    cr_expect_null(strstr(out, "\n2026-02 "), "February had no month before it to learn from: %s", out);
    free(out);
    free(err);
    /* Bad usage: exit 2, naming the option. */
    char *bad[] = {bin, "forecast-backtest", "--org", "org-a", "--months", "0", NULL};
    rc = proc_run(bad, envp, &out, &err, 60000);
    cr_expect_eq(rc, 2);
    cr_expect_not_null(strstr(err, "--months must be 1-240"), "%s", err);
    free(out);
    free(err);
    free(env0);
    free(bin);
}
