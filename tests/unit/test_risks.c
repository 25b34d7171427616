/* Deal risk rules: each rule on small hand-made feature vectors, the
 * thresholds learned from won deals, the resolved vectors, the ranking and
 * the JSON, and the defaults against the migration. */
#include <criterion/criterion.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "domain/risks.h"

/* An open deal in stage 4 with two recorded calls that found every MEDDICC
 * element and three buyer contacts, 10 days in stage, no pushes and steady engagement: no rule
 * fires on it. */
static void healthy(double *v) {
    for (int f = 0; f < DS_FEATURE_COUNT; f++) v[f] = 0;
    v[DS_F_STAGE_INDEX] = 4;
    v[DS_F_N_TRANSCRIPTS] = 2;
    v[DS_F_BUYER_CONTACTS] = 3;
    v[DS_F_DAYS_IN_STAGE] = 10;
    v[DS_F_VELOCITY_14D] = 1;
    for (int el = 0; el < DS_MEDDICC_COUNT; el++) v[DS_F_MEDDICC_METRICS + el] = 1;
    v[DS_F_MEDDICC_COVERAGE] = 8;
}

static ds_risk_config_t defaults(void) {
    ds_risk_config_t cfg;
    ds_risk_config_fit(&cfg, ds_risk_rules_default(), NULL);
    return cfg;
}

Test(risks, a_healthy_deal_has_none) {
    double v[DS_FEATURE_COUNT];
    healthy(v);
    ds_risk_config_t cfg = defaults();
    ds_risk_t r[DS_RISK_MAX];
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
}

Test(risks, missing_champion_past_the_default_stage) {
    double v[DS_FEATURE_COUNT];
    healthy(v);
    v[DS_F_MEDDICC_CHAMPION] = 0;
    v[DS_F_MEDDICC_COVERAGE] = 7;
    ds_risk_config_t cfg = defaults();
    cfg.stage_names[3] = "demo";
    cfg.stage_names[4] = "proposal";
    ds_risk_t r[DS_RISK_MAX];
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 1);
    cr_assert_eq(r[0].rule, DS_RISK_MEDDICC_MISSING);
    cr_assert_eq(r[0].element, DS_MEDDICC_CHAMPION);
    cr_assert_str_eq(
        r[0].evidence,
        "No champion identified yet in proposal (2 recorded calls); expected from demo on (default: too few "
        "won deals)");
    cr_assert_str_eq(r[0].action, "Establish the champion with the buyer before the deal moves on");
    /* Before the expected stage it is not a risk; nor is it without a
     * recorded call, which alone could show the element. */
    v[DS_F_STAGE_INDEX] = 2;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
    v[DS_F_STAGE_INDEX] = 4;
    v[DS_F_N_TRANSCRIPTS] = 0;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
    v[DS_F_N_TRANSCRIPTS] = 2;
    double out[DS_FEATURE_COUNT];
    v[DS_F_STAGE_INDEX] = 4;
    ds_risks_eval(&cfg, v, r);
    ds_risk_resolved(&cfg, &r[0], v, out);
    cr_assert_eq(out[DS_F_MEDDICC_CHAMPION], 1);
    cr_assert_eq(out[DS_F_MEDDICC_COVERAGE], 8);
    for (int f = 0; f < DS_FEATURE_COUNT; f++)
        if (f != DS_F_MEDDICC_CHAMPION && f != DS_F_MEDDICC_COVERAGE)
            cr_assert_eq(out[f], v[f], "feature %d", f);
}

/* Ten won deals: the champion first seen in stages 1,1,2,2,2,3,-,-,-,- (4
 * never): 20 % by 1, 50 % by 2. Economic buyer never: never expected. */
Test(risks, meddicc_stage_learned_from_won_deals) {
    ds_risk_rule_t rules[DS_RISK_RULE_COUNT];
    memcpy(rules, ds_risk_rules_default(), sizeof rules);
    rules[DS_RISK_MEDDICC_MISSING].min_won_deals = 10;
    int first[10 * DS_MEDDICC_COUNT];
    static const int champ[10] = {1, 1, 2, 2, 2, 3, -1, -1, -1, -1};
    for (int d = 0; d < 10; d++)
        for (int el = 0; el < DS_MEDDICC_COUNT; el++)
            first[d * DS_MEDDICC_COUNT + el] = el == DS_MEDDICC_CHAMPION         ? champ[d]
                                               : el == DS_MEDDICC_ECONOMIC_BUYER ? -1
                                                                                 : 0;
    ds_risk_won_t won = {.n_won = 10, .first_stage = first};
    ds_risk_config_t cfg;
    ds_risk_config_fit(&cfg, rules, &won);
    cr_assert_eq(cfg.meddicc_stage[DS_MEDDICC_CHAMPION], 2);
    cr_assert_float_eq(cfg.meddicc_share[DS_MEDDICC_CHAMPION], 0.5, 1e-12);
    cr_assert_eq(cfg.meddicc_stage[DS_MEDDICC_ECONOMIC_BUYER], INT_MAX);
    cr_assert_eq(cfg.meddicc_stage[DS_MEDDICC_METRICS], 0);

    double v[DS_FEATURE_COUNT];
    healthy(v);
    v[DS_F_STAGE_INDEX] = 2;
    v[DS_F_MEDDICC_CHAMPION] = 0;
    v[DS_F_MEDDICC_ECONOMIC_BUYER] = 0;
    ds_risk_t r[DS_RISK_MAX];
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 1);
    cr_assert_str_eq(r[0].evidence,
                     "No champion identified yet in stage 2 (2 recorded calls); 50 % of won deals with a "
                     "recorded call had it by stage 2");
    /* Nine won deals are too few for min_won_deals 10: the fallback (3). */
    won.n_won = 9;
    ds_risk_config_fit(&cfg, rules, &won);
    cr_assert_eq(cfg.meddicc_stage[DS_MEDDICC_CHAMPION], 3);
    cr_assert(isnan(cfg.meddicc_share[DS_MEDDICC_CHAMPION]));
}

/* Won deals never recorded say nothing of their elements: of 40 won deals
 * only 20 had a call, 12 of them (60 %) showing the champion by stage 2
 * (first calls: 10 in stage 1, 10 in stage 2). Against all 40 (30 %) the
 * element would never be expected. */
Test(risks, meddicc_shares_count_the_won_deals_with_a_recorded_call) {
    enum { N = 40 };
    ds_risk_rule_t rules[DS_RISK_RULE_COUNT];
    memcpy(rules, ds_risk_rules_default(), sizeof rules);
    int first[N * DS_MEDDICC_COUNT], call[N];
    for (int d = 0; d < N; d++) {
        call[d] = d < 10 ? 1 : d < 20 ? 2 : -1;
        for (int el = 0; el < DS_MEDDICC_COUNT; el++) first[d * DS_MEDDICC_COUNT + el] = -1;
        /* The champion: 4 deals in stage 1, 8 more in stage 2, all recorded. */
        if (d < 4) first[d * DS_MEDDICC_COUNT + DS_MEDDICC_CHAMPION] = 1;
        if (d >= 10 && d < 18) first[d * DS_MEDDICC_COUNT + DS_MEDDICC_CHAMPION] = 2;
    }
    ds_risk_won_t won = {.n_won = N, .first_stage = first, .first_call = call};
    ds_risk_config_t cfg;
    ds_risk_config_fit(&cfg, rules, &won);
    /* Stage 1: 4 of 10 recorded (too few: 20 needed); stage 2: 12 of 20. */
    cr_assert_eq(cfg.meddicc_stage[DS_MEDDICC_CHAMPION], 2);
    cr_assert_float_eq(cfg.meddicc_share[DS_MEDDICC_CHAMPION], 0.6, 1e-12);
    cr_assert_eq(cfg.meddicc_stage[DS_MEDDICC_METRICS], INT_MAX);
    won.first_call = NULL;
    ds_risk_config_fit(&cfg, rules, &won);
    cr_assert_eq(cfg.meddicc_stage[DS_MEDDICC_CHAMPION], INT_MAX, "12 of 40 is not half");
    /* Fewer than 20 recorded won deals: the fallback stage. */
    for (int d = 10; d < 20; d++) call[d] = -1;
    won.first_call = call;
    ds_risk_config_fit(&cfg, rules, &won);
    cr_assert_eq(cfg.meddicc_stage[DS_MEDDICC_CHAMPION], 3);
    cr_assert(isnan(cfg.meddicc_share[DS_MEDDICC_CHAMPION]));
}

Test(risks, stalled_against_the_won_deals_median) {
    ds_risk_rule_t rules[DS_RISK_RULE_COUNT];
    memcpy(rules, ds_risk_rules_default(), sizeof rules);
    rules[DS_RISK_STALLED].min_won_deals = 3;
    /* Stage 4: 8, 12, 20 days (median 12); stage 3 two visits only. */
    static const int vs[] = {4, 4, 4, 3, 3};
    static const double vd[] = {20, 8, 12, 5, 7};
    ds_risk_won_t won = {.n_won = 3, .visit_stage = vs, .visit_days = vd, .n_visits = 5};
    ds_risk_config_t cfg;
    ds_risk_config_fit(&cfg, rules, &won);
    cr_assert_float_eq(cfg.stall_median[4], 12, 1e-12);
    cr_assert_float_eq(cfg.stall_days[4], 12, 1e-12);
    cr_assert(isnan(cfg.stall_days[3]));
    cfg.stage_names[4] = "proposal";

    double v[DS_FEATURE_COUNT];
    healthy(v);
    v[DS_F_DAYS_IN_STAGE] = 12; /* at the median: not stalled */
    ds_risk_t r[DS_RISK_MAX];
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
    v[DS_F_DAYS_IN_STAGE] = 41.5;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 1);
    cr_assert_eq(r[0].rule, DS_RISK_STALLED);
    cr_assert_str_eq(r[0].evidence, "41 days in proposal; won deals' median there is 12 days");
    double out[DS_FEATURE_COUNT];
    ds_risk_resolved(&cfg, &r[0], v, out);
    cr_assert_eq(out[DS_F_DAYS_IN_STAGE], 12);
    /* Stage 3 has too few visits: the 30-day fallback. */
    v[DS_F_STAGE_INDEX] = 3;
    v[DS_F_DAYS_IN_STAGE] = 30;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
    v[DS_F_DAYS_IN_STAGE] = 31;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 1);
    cr_assert_str_eq(r[0].evidence, "31 days in stage 3; over the 30-day default (too few won deals)");
    ds_risk_resolved(&cfg, &r[0], v, out);
    cr_assert_eq(out[DS_F_DAYS_IN_STAGE], 30);
}

Test(risks, close_date_pushes_default_and_learned) {
    ds_risk_config_t cfg = defaults();
    double v[DS_FEATURE_COUNT];
    healthy(v);
    v[DS_F_CLOSE_DATE_PUSHES] = 1;
    ds_risk_t r[DS_RISK_MAX];
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
    v[DS_F_CLOSE_DATE_PUSHES] = 2;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 1);
    cr_assert_str_eq(r[0].evidence, "Close date pushed 2 times (flagged from 2)");
    double out[DS_FEATURE_COUNT];
    ds_risk_resolved(&cfg, &r[0], v, out);
    cr_assert_eq(out[DS_F_CLOSE_DATE_PUSHES], 0);

    /* Five won deals pushed 0,0,1,2,3 times: the 80th percentile (nearest
     * rank 4 of 5) is 2, so 3 pushes are flagged and 2 are not. */
    ds_risk_rule_t rules[DS_RISK_RULE_COUNT];
    memcpy(rules, ds_risk_rules_default(), sizeof rules);
    rules[DS_RISK_CLOSE_DATE_PUSHED].min_won_deals = 5;
    static const int pushes[] = {3, 0, 2, 1, 0};
    ds_risk_won_t won = {.n_won = 5, .pushes = pushes};
    ds_risk_config_fit(&cfg, rules, &won);
    cr_assert_eq(cfg.max_pushes, 2);
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
    v[DS_F_CLOSE_DATE_PUSHES] = 3;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 1);
    cr_assert_str_eq(r[0].evidence, "Close date pushed 3 times; 80 % of won deals had at most 2");
}

Test(risks, engagement_down_and_restored) {
    ds_risk_config_t cfg = defaults();
    double v[DS_FEATURE_COUNT];
    healthy(v);
    /* Last 14 days: 1 email; the 14 days before: 5 interactions, so
     * velocity = (1 + 1) / (5 + 1) = 1/3. 30-day counts: 4 emails, 2 calls. */
    v[DS_F_N_EMAIL_14D] = 1;
    v[DS_F_N_EMAIL_30D] = 4;
    v[DS_F_N_EMAIL_ALL] = 9;
    v[DS_F_N_PHONE_30D] = 2;
    v[DS_F_N_PHONE_ALL] = 2;
    v[DS_F_VELOCITY_14D] = 2.0 / 6.0;
    ds_risk_t r[DS_RISK_MAX];
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 1);
    cr_assert_eq(r[0].rule, DS_RISK_ENGAGEMENT_DOWN);
    cr_assert_str_eq(r[0].evidence, "1 interaction in the last 14 days against 5 in the 14 days before");
    double out[DS_FEATURE_COUNT];
    ds_risk_resolved(&cfg, &r[0], v, out);
    cr_assert_eq(out[DS_F_N_EMAIL_14D], 3);
    cr_assert_eq(out[DS_F_N_EMAIL_30D], 6);
    cr_assert_eq(out[DS_F_N_EMAIL_ALL], 11);
    cr_assert_eq(out[DS_F_N_PHONE_14D], 2);
    cr_assert_eq(out[DS_F_N_PHONE_30D], 4);
    cr_assert_eq(out[DS_F_N_PHONE_ALL], 4);
    cr_assert_eq(out[DS_F_VELOCITY_14D], 1);
    /* Exactly 0.5 is not below the threshold. */
    v[DS_F_VELOCITY_14D] = 0.5;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
}

Test(risks, single_contact_from_its_stage_on) {
    ds_risk_config_t cfg = defaults();
    double v[DS_FEATURE_COUNT];
    healthy(v);
    ds_risk_t r[DS_RISK_MAX];
    v[DS_F_BUYER_CONTACTS] = 2;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
    v[DS_F_BUYER_CONTACTS] = 0;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0, "no known contact flags nothing");
    v[DS_F_BUYER_CONTACTS] = 1;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 1);
    cr_assert_str_eq(r[0].evidence, "1 buyer contact engaged so far, in stage 4");
    /* Resolved: a second contact engaged, nothing else changed. */
    double out[DS_FEATURE_COUNT];
    ds_risk_resolved(&cfg, &r[0], v, out);
    cr_assert_eq(out[DS_F_BUYER_CONTACTS], 2);
    for (int f = 0; f < DS_FEATURE_COUNT; f++)
        if (f != DS_F_BUYER_CONTACTS) cr_assert_eq(out[f], v[f], "feature %d", f);
    v[DS_F_STAGE_INDEX] = 1; /* before discovery one contact is normal */
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0);
    /* An org that tolerates two contacts wants a third. */
    v[DS_F_STAGE_INDEX] = 4;
    v[DS_F_BUYER_CONTACTS] = 2;
    cfg.rules[DS_RISK_SINGLE_CONTACT].param = 2;
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 1);
    ds_risk_resolved(&cfg, &r[0], v, out);
    cr_assert_eq(out[DS_F_BUYER_CONTACTS], 3);
}

Test(risks, disabled_rule_and_unknown_stage) {
    ds_risk_rule_t rules[DS_RISK_RULE_COUNT];
    memcpy(rules, ds_risk_rules_default(), sizeof rules);
    rules[DS_RISK_CLOSE_DATE_PUSHED].enabled = false;
    ds_risk_config_t cfg;
    ds_risk_config_fit(&cfg, rules, NULL);
    double v[DS_FEATURE_COUNT];
    healthy(v);
    v[DS_F_CLOSE_DATE_PUSHES] = 5;
    v[DS_F_STAGE_INDEX] = NAN;
    v[DS_F_MEDDICC_CHAMPION] = 0;
    v[DS_F_DAYS_IN_STAGE] = 100;
    ds_risk_t r[DS_RISK_MAX];
    cr_assert_eq(ds_risks_eval(&cfg, v, r), 0, "stage rules need a stage; pushes are off");
}

Test(risks, ranked_by_what_if_and_written_as_json) {
    ds_risk_config_t cfg = defaults();
    double v[DS_FEATURE_COUNT];
    healthy(v);
    v[DS_F_MEDDICC_CHAMPION] = 0;
    v[DS_F_DAYS_IN_STAGE] = 45;
    ds_risk_t r[DS_RISK_MAX];
    size_t n = ds_risks_eval(&cfg, v, r);
    cr_assert_eq(n, 2);
    r[0].what_if = 0.30; /* champion */
    r[1].what_if = 0.42; /* stall */
    ds_risks_rank(r, n);
    cr_assert_eq(r[0].rule, DS_RISK_STALLED);
    ds_sb_t b = {0};
    ds_risks_write(&b, r, n, 0.25);
    ds_sb_putc(&b, '\0');
    cr_assert_str_eq(
        b.p,
        "[{\"rule\":\"stalled\",\"element\":null,\"evidence\":\"45 days in stage 4; over the 30-day default "
        "(too "
        "few won deals)\",\"action\":\"Agree a dated next step with the buyer that moves the deal to the "
        "next "
        "stage\",\"what_if\":0.4200,\"gain\":0.1700},"
        "{\"rule\":\"meddicc_missing\",\"element\":\"champion\",\"evidence\":\"No champion identified yet in "
        "stage 4 (2 recorded calls); expected from stage 3 on (default: too few won "
        "deals)\",\"action\":\"Establish the "
        "champion "
        "with the buyer before the deal moves on\",\"what_if\":0.3000,\"gain\":0.0500}]");
    free(b.p);
}

/* The default rows of the migration equal ds_risk_rules_default. */
Test(risks, default_rules_match_migration) {
    glob_t g;
    cr_assert_eq(glob(DS_SOURCE_DIR "/sql/migrations/*_deal_risks.sql", 0, NULL, &g), 0);
    FILE *f = fopen(g.gl_pathv[0], "r");
    cr_assert_not_null(f);
    char *sql = NULL;
    size_t cap = 0;
    ssize_t len = getdelim(&sql, &cap, '\0', f);
    fclose(f);
    globfree(&g);
    cr_assert_gt(len, 0);
    const ds_risk_rule_t *d = ds_risk_rules_default();
    for (int i = 0; i < DS_RISK_RULE_COUNT; i++) {
        char row[400];
        char p[32], fb[32];
        ds_fmt_g(p, d[i].param, 6);
        ds_fmt_g(fb, d[i].fallback, 6);
        snprintf(row, sizeof row, "(null, '%s', %s, %s, %s, %d,\n     '%s')", ds_risk_rule_name(i),
                 d[i].enabled ? "true" : "false", strcmp(p, "1") == 0 && i == DS_RISK_STALLED ? "1.0" : p, fb,
                 d[i].min_won_deals, d[i].action);
        cr_expect_not_null(strstr(sql, row), "the migration lacks %s", row);
    }
    cr_assert_eq(ds_risk_rule_parse("stalled"), DS_RISK_STALLED);
    cr_assert_eq(ds_risk_rule_parse("nope"), -1);
    free(sql);
}
