/* The cold-start prior chain (domain/prior.h): the default ladder, an org's
 * ladder, the stage win rates made monotone, and the order of the sources,
 * with exact values. */
#include <criterion/criterion.h>
#include <math.h>

#include "base/common.h"
#include "domain/prior.h"

#define EPS 1e-12

static void expect_ladder(const ds_ladder_t *l, const double *want, size_t n) {
    cr_assert_eq(l->n, n);
    for (size_t i = 0; i < n; i++)
        cr_expect(fabs(l->p[i] - want[i]) < EPS, "rung %zu: %.17g, expected %.17g", i, l->p[i], want[i]);
}

Test(prior, default_ladder_rises_linearly_from_low_to_high) {
    ds_ladder_t l;
    ds_ladder_default(6, &l); /* the default stage order: prospecting .. negotiation */
    const double want[] = {0.05, 0.2, 0.35, 0.5, 0.65, 0.8};
    expect_ladder(&l, want, 6);
    ds_ladder_default(8, &l); /* the default org settings: Salesforce's eight open stages */
    cr_expect(fabs(l.p[2] - (0.05 + 0.75 * 2 / 7)) < EPS);
    cr_expect(fabs(l.p[7] - 0.8) < EPS);
    ds_ladder_default(1, &l);
    const double one[] = {0.05};
    expect_ladder(&l, one, 1);
    ds_ladder_default(0, &l);
    cr_expect_eq(l.n, 0);
    cr_expect(fabs(ds_ladder_mean(&l) - 0.5) < EPS);
    ds_ladder_default(1000, &l);
    cr_expect_eq(l.n, DS_LADDER_MAX);
}

Test(prior, org_ladder_fills_unset_stages_from_the_default_between_neighbours) {
    ds_ladder_rung_t r[] = {{4, 0.6}, {2, 0.1}}; /* proposal, discovery; any order */
    ds_ladder_t l;
    char err[256] = "";
    cr_assert_eq(ds_ladder_set(r, 2, 6, &l, err, sizeof err), 0, "%s", err);
    /* 0: default .05 under .1; 1: default .2 capped at discovery's .1;
     * 3: default .5 between .1 and .6; 5: default .8 above .6. */
    const double want[] = {0.05, 0.1, 0.1, 0.5, 0.6, 0.8};
    expect_ladder(&l, want, 6);
    cr_expect(fabs(ds_ladder_mean(&l) - 2.15 / 6) < EPS);
}

Test(prior, org_ladder_refuses_what_does_not_rise_or_does_not_fit) {
    ds_ladder_t l;
    char err[256] = "";
    ds_ladder_rung_t falls[] = {{2, 0.5}, {4, 0.3}};
    cr_expect_eq(ds_ladder_set(falls, 2, 6, &l, err, sizeof err), DS_EINVAL);
    cr_expect_str_eq(err, "the ladder falls from 0.5 at stage 2 to 0.3 at stage 4");
    ds_ladder_rung_t closed[] = {{6, 1.0}};
    cr_expect_eq(ds_ladder_set(closed, 1, 6, &l, err, sizeof err), DS_EINVAL);
    cr_expect_str_eq(err, "stage index 6 is not an open stage (0 .. 5)");
    ds_ladder_rung_t over[] = {{1, 1.5}};
    cr_expect_eq(ds_ladder_set(over, 1, 6, &l, err, sizeof err), DS_EINVAL);
    cr_expect_str_eq(err, "probability 1.5 at stage 1 is outside [0, 1]");
    ds_ladder_rung_t twice[] = {{1, 0.1}, {1, 0.2}};
    cr_expect_eq(ds_ladder_set(twice, 2, 6, &l, err, sizeof err), DS_EINVAL);
    cr_expect_str_eq(err, "stage 1 is given twice");
    ds_ladder_rung_t flat[] = {{1, 0.3}, {3, 0.3}};
    cr_expect_eq(ds_ladder_set(flat, 2, 6, &l, err, sizeof err), 0, "an equal rung still rises: %s", err);
}

Test(prior, stage_win_rates_are_pooled_into_a_rising_ladder) {
    /* Unsmoothed (m = 0): stage 0 wins 1 of 4, stage 1 2 of 2, stage 2 1
     * of 2, stage 3 none seen, stage 4 1 of 1. Stages 1 and 2 fall (1 then
     * 0.5) and pool to (2 + 1) / 4 = 0.75; stage 3 takes it. */
    int stage[] = {0, 0, 0, 0, 1, 1, 2, 2, 4};
    double won[] = {1, 0, 0, 0, 1, 1, 1, 0, 1};
    ds_stage_prior_t *sp = NULL;
    char err[256];
    cr_assert_eq(ds_stage_prior_fit(stage, won, NULL, 9, 0, &sp, err, sizeof err), 0, "%s", err);
    ds_ladder_t l;
    ds_ladder_from_stage_prior(sp, 5, &l);
    const double want[] = {0.25, 0.75, 0.75, 0.75, 1.0};
    expect_ladder(&l, want, 5);
    ds_stage_prior_destroy(sp);

    /* Smoothed (m = 10) toward the org rate 2/3, first stage seen is 2:
     * stages 0 and 1 take its value (1 + 10 * 2/3) / (2 + 10). */
    int s2[] = {2, 2, 3};
    double w2[] = {1, 0, 1};
    cr_assert_eq(ds_stage_prior_fit(s2, w2, NULL, 3, 10, &sp, err, sizeof err), 0, "%s", err);
    ds_ladder_from_stage_prior(sp, 4, &l);
    double p2 = (1 + 10 * 2.0 / 3) / 12, p3 = (1 + 10 * 2.0 / 3) / 11;
    const double want2[] = {p2, p2, p2, p3};
    expect_ladder(&l, want2, 4);
    ds_stage_prior_destroy(sp);
}

static ds_prior_score_t score(const ds_prior_chain_t *c, double stage, double crm, ds_outcome_t outcome) {
    ds_prior_input_t in = {stage, crm, outcome};
    ds_prior_score_t out;
    ds_prior_score(c, &in, &out);
    return out;
}

Test(prior, the_chain_takes_history_then_the_crm_then_the_ladder) {
    ds_ladder_t ladder, history = {.n = 3, .p = {0.3, 0.4, 0.7}};
    ds_ladder_default(6, &ladder);
    ds_prior_chain_t with_history = {&history, 0.45, &ladder};
    ds_prior_score_t s = score(&with_history, 2, 0.9, DS_OUTCOME_OPEN);
    cr_expect_eq(s.source, DS_PRIOR_HISTORY, "the org's own rates come first, before the CRM's");
    cr_expect(fabs(s.p - 0.7) < EPS && fabs(s.baseline - 0.45) < EPS);
    cr_expect(fabs(score(&with_history, NAN, NAN, DS_OUTCOME_OPEN).p - 0.45) < EPS, "unknown: org rate");
    cr_expect(fabs(score(&with_history, 9, NAN, DS_OUTCOME_OPEN).p - 0.7) < EPS, "past the ladder: last");

    ds_prior_chain_t cold = {NULL, NAN, &ladder};
    s = score(&cold, 2, 0.4, DS_OUTCOME_OPEN);
    cr_expect_eq(s.source, DS_PRIOR_CRM);
    cr_expect(fabs(s.p - 0.4) < EPS);
    cr_expect(fabs(s.baseline - 2.55 / 6) < EPS, "baseline: the ladder's mean rung");
    cr_expect_eq(score(&cold, 2, 0, DS_OUTCOME_OPEN).source, DS_PRIOR_CRM, "0 is a probability too");
    cr_expect_eq(score(&cold, 2, 1.5, DS_OUTCOME_OPEN).source, DS_PRIOR_LADDER, "outside [0, 1]: none");

    ds_prior_score_t discovery = score(&cold, 2, NAN, DS_OUTCOME_OPEN);
    ds_prior_score_t proposal = score(&cold, 4, NAN, DS_OUTCOME_OPEN);
    cr_expect_eq(discovery.source, DS_PRIOR_LADDER);
    cr_expect(fabs(discovery.p - 0.35) < EPS && fabs(proposal.p - 0.65) < EPS);
    cr_expect(proposal.p > discovery.p, "priors rise with stage order");
    cr_expect(fabs(score(&cold, NAN, NAN, DS_OUTCOME_OPEN).p - 0.05) < EPS, "unknown stage: first rung");
    cr_expect(fabs(score(&cold, 6, NAN, DS_OUTCOME_OPEN).p - 0.8) < EPS, "closed index, open deal: last");
}

Test(prior, a_closed_deal_scores_its_outcome) {
    ds_ladder_t ladder;
    ds_ladder_default(6, &ladder);
    ds_prior_chain_t cold = {NULL, NAN, &ladder};
    ds_prior_score_t won = score(&cold, 6, NAN, DS_OUTCOME_WON), lost = score(&cold, 6, 0.3, DS_OUTCOME_LOST);
    cr_expect(won.p == 1.0 && won.source == DS_PRIOR_LADDER);
    cr_expect(lost.p == 0.0 && lost.source == DS_PRIOR_CRM);
}

Test(prior, versions_name_the_source) {
    cr_expect_str_eq(ds_prior_version(DS_PRIOR_HISTORY), "prior:history");
    cr_expect_str_eq(ds_prior_version(DS_PRIOR_CRM), "prior:crm");
    cr_expect_str_eq(ds_prior_version(DS_PRIOR_LADDER), "prior:ladder");
}
