/* The point-in-time feature engine: hand-computed values for every family,
 * the point-in-time property, outcome blindness, encodings and JSON. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "domain/features.h"

#define DAY DS_US_PER_DAY
#define HOUR (DS_US_PER_DAY / 24)

/* ---- fixture ------------------------------------------------------------- */

typedef struct {
    ds_opp_history_t hist[32];
    size_t n_hist;
    ds_interaction_t inter[64];
    size_t n_inter;
    ds_transcript_t tr[8];
    size_t n_tr;
    ds_closed_deal_t deals[32];
    size_t n_deals;
    ds_opp_raw_t raw;
    int64_t t0, as_of;
} fixture_t;

static const ds_hist_value_t NONE_VALUE = {NULL, NAN, DS_TIME_NONE};

static void add_stage(fixture_t *f, const char *old_v, const char *new_v, int64_t at) {
    ds_opp_history_t *h = &f->hist[f->n_hist++];
    *h = (ds_opp_history_t){DS_HIST_STAGE, NONE_VALUE, NONE_VALUE, at};
    h->old_value.stage = old_v;
    h->new_value.stage = new_v;
}

static void add_amount(fixture_t *f, double old_v, double new_v, int64_t at) {
    ds_opp_history_t *h = &f->hist[f->n_hist++];
    *h = (ds_opp_history_t){DS_HIST_AMOUNT, NONE_VALUE, NONE_VALUE, at};
    h->old_value.amount = old_v;
    h->new_value.amount = new_v;
}

static void add_close(fixture_t *f, int64_t old_v, int64_t new_v, int64_t at) {
    ds_opp_history_t *h = &f->hist[f->n_hist++];
    *h = (ds_opp_history_t){DS_HIST_CLOSE_DATE, NONE_VALUE, NONE_VALUE, at};
    h->old_value.close_date_us = old_v;
    h->new_value.close_date_us = new_v;
}

static void add_inter(fixture_t *f, ds_interaction_type_t type, int64_t at, double minutes) {
    f->inter[f->n_inter++] = (ds_interaction_t){type, at, minutes};
}

static void add_tr(fixture_t *f, const char *id, int64_t at, const char *text) {
    f->tr[f->n_tr++] = (ds_transcript_t){id, at, text, strlen(text)};
}

static void add_deal(fixture_t *f, const char *acct, const char *owner, int64_t at, bool won) {
    f->deals[f->n_deals++] = (ds_closed_deal_t){acct, owner, at, won};
}

/* The opportunity every family test uses; as_of is day 40.5. */
static void fixture_init(fixture_t *f) {
    memset(f, 0, sizeof *f);
    cr_assert_eq(ds_parse_time_us("2026-01-01T00:00:00Z", &f->t0), DS_OK);
    const int64_t t0 = f->t0;
    f->as_of = t0 + 40 * DAY + 12 * HOUR;
    ds_opp_raw_init(&f->raw);
    f->raw.opportunity_id = "opp-1";
    f->raw.external_id = "SF-1";
    f->raw.account_id = "A1";
    f->raw.owner_id = "O1";
    f->raw.created_at_us = t0;
    f->raw.changed_at_us = t0 + 50 * DAY;
    f->raw.stage = "negotiation"; /* current values: never used, every field has history */
    f->raw.amount = 99999;
    f->raw.close_date_us = t0 + 90 * DAY;
    f->raw.product_category = "Software";
    f->raw.persona = "CFO";
    f->raw.industry = "Financial Services";
    f->raw.region = "EMEA";
    f->raw.size_band = "Mid-Market";

    add_stage(f, NULL, "prospecting", t0);
    add_stage(f, "prospecting", "discovery", t0 + 10 * DAY);
    add_stage(f, "discovery", "qualification", t0 + 20 * DAY); /* a regression, 2 -> 1 */
    add_stage(f, "qualification", "proposal", t0 + 30 * DAY);
    add_stage(f, "proposal", "negotiation", t0 + 50 * DAY); /* after as_of */
    add_amount(f, NAN, 10000, t0);
    add_amount(f, 10000, 15000, t0 + 25 * DAY);
    add_amount(f, 15000, 99999, t0 + 45 * DAY); /* after as_of */
    add_close(f, DS_TIME_NONE, t0 + 60 * DAY, t0);
    add_close(f, t0 + 60 * DAY, t0 + 75 * DAY, t0 + 15 * DAY); /* a push */
    add_close(f, t0 + 75 * DAY, t0 + 70 * DAY, t0 + 28 * DAY); /* pulled in: no push */
    add_close(f, t0 + 70 * DAY, t0 + 90 * DAY, t0 + 50 * DAY); /* a push after as_of */
    cr_assert_eq(ds_opp_history_set(&f->hist[f->n_hist++], "outcome", "open", "won", t0 + 50 * DAY), DS_OK);

    /* Ages at as_of in days after each. */
    add_inter(f, DS_INTERACTION_EMAIL, t0 + 40 * DAY, NAN);            /* 0.5 */
    add_inter(f, DS_INTERACTION_EMAIL, t0 + 30 * DAY, NAN);            /* 10.5 */
    add_inter(f, DS_INTERACTION_EMAIL, t0 + 20 * DAY, NAN);            /* 20.5 */
    add_inter(f, DS_INTERACTION_EMAIL, t0 + 5 * DAY, NAN);             /* 35.5 */
    add_inter(f, DS_INTERACTION_PHONE, t0 + 27 * DAY, 20);             /* 13.5 */
    add_inter(f, DS_INTERACTION_PHONE, t0 + 26 * DAY + 12 * HOUR, 10); /* 14.0: not in 14 d */
    add_inter(f, DS_INTERACTION_MEETING, t0 + 38 * DAY, 45);           /* 2.5 */
    add_inter(f, DS_INTERACTION_MEETING, t0 + 35 * DAY, NAN);          /* 5.5, no duration */
    add_inter(f, DS_INTERACTION_MEETING, t0 + 15 * DAY, 60);           /* 25.5 */
    add_inter(f, DS_INTERACTION_MEETING, t0 + 2 * DAY, 30);            /* 38.5 */
    add_inter(f, DS_INTERACTION_DEMO, t0 + 12 * DAY, 90);              /* 28.5 */
    add_inter(f, DS_INTERACTION_SUPPORT, t0 + 39 * DAY, NAN);          /* 1.5 */
    add_inter(f, DS_INTERACTION_OTHER, t0 + 40 * DAY + 6 * HOUR, NAN); /* 0.25 */
    add_inter(f, DS_INTERACTION_EMAIL, t0 + 41 * DAY, NAN);            /* after as_of */
    add_inter(f, DS_INTERACTION_MEETING, t0 + 45 * DAY, 600);          /* after as_of */

    add_tr(f, "t1", t0 + 5 * DAY, "Dana is our champion. We have no budget yet.");
    add_tr(f, "t2", t0 + 50 * DAY, "The CFO will sign off. Our ROI case is clear."); /* later */
    add_tr(f, "t3", t0 + 20 * DAY, "Legal review is next; procurement wants the MSA.");

    add_deal(f, "A1", "O1", t0 - 100 * DAY, true);
    add_deal(f, "A1", "O2", t0 - 50 * DAY, false);
    add_deal(f, "A1", "O1", t0 + 10 * DAY, true);
    add_deal(f, "A2", "O1", t0 - 30 * DAY, true);
    add_deal(f, "A2", "O2", t0 - 20 * DAY, false);
    add_deal(f, "A3", "O1", t0 - 10 * DAY, false);
    add_deal(f, "A1", "O1", f->as_of, true);       /* at as_of: not before it */
    add_deal(f, "A1", "O1", t0 + 45 * DAY, false); /* after as_of */
}

static void compute(fixture_t *f, int64_t as_of, ds_feature_vec_t *out) {
    f->raw.history = f->hist;
    f->raw.n_history = f->n_hist;
    f->raw.interactions = f->inter;
    f->raw.n_interactions = f->n_inter;
    f->raw.transcripts = f->tr;
    f->raw.n_transcripts = f->n_tr;
    ds_winrate_ctx_t *wr = NULL;
    cr_assert_eq(ds_winrate_ctx_new(f->deals, f->n_deals, DS_WINRATE_SMOOTHING, &wr), DS_OK);
    cr_assert_eq(ds_features_compute(&f->raw, as_of, wr, NULL, out), DS_OK);
    ds_winrate_ctx_destroy(wr);
}

static double val(const ds_feature_vec_t *v, const char *name) {
    int i = ds_feature_index(name);
    cr_assert_geq(i, 0, "no feature %s", name);
    return v->values[i];
}

/* NaN-aware bitwise comparison of two whole vectors and their evidence. */
static void assert_same_vec(const ds_feature_vec_t *a, const ds_feature_vec_t *b, const char *what) {
    for (int i = 0; i < DS_FEATURE_COUNT; i++) {
        double x = a->values[i], y = b->values[i];
        bool same = (isnan(x) && isnan(y)) || memcmp(&x, &y, sizeof x) == 0;
        cr_assert(same, "%s changed %s: %.17g vs %.17g", what, ds_feature_name(i), x, y);
    }
    char *ja = ds_meddicc_result_to_json(&a->meddicc), *jb = ds_meddicc_result_to_json(&b->meddicc);
    cr_assert_str_eq(ja, jb, "%s changed the MEDDICC evidence", what);
    free(ja);
    free(jb);
}

/* ---- families -------------------------------------------------------------- */

Test(features, temporal_family_hand_computed) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    /* as_of - created_at = 40 d 12 h. */
    cr_assert_eq(val(&v, "days_open"), 40.5);
    /* Close date in force: day 70 (set on day 28); 70 - 40.5. */
    cr_assert_eq(val(&v, "days_to_close"), 29.5);
    /* 60 -> 75 is a push; 75 -> 70 is not; 70 -> 90 comes after as_of. */
    cr_assert_eq(val(&v, "close_date_pushes"), 1);
    /* proposal since day 30: 40.5 - 30. */
    cr_assert_eq(val(&v, "days_in_stage"), 10.5);
    cr_assert_eq(val(&v, "stage_index"), 4); /* proposal */
    /* discovery (2) -> qualification (1). */
    cr_assert_eq(val(&v, "stage_regressions"), 1);
    /* 15000 in force (day 25); ln(1 + 15000). */
    cr_assert_eq(val(&v, "amount_log"), log1p(15000.0));
    cr_assert_float_eq(val(&v, "amount_log"), 9.61587214452889, 1e-12);
    /* 15000 / 10000 (the creation row's amount). */
    cr_assert_eq(val(&v, "amount_change_ratio"), 1.5);
}

Test(features, interaction_family_hand_computed) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    /* Windows are (as_of - 14 d, as_of] and (as_of - 30 d, as_of]. */
    cr_assert_eq(val(&v, "n_email_14d"), 2); /* ages 0.5, 10.5 */
    cr_assert_eq(val(&v, "n_email_30d"), 3); /* + 20.5 */
    cr_assert_eq(val(&v, "n_email_all"), 4); /* + 35.5; the day-41 email is after as_of */
    cr_assert_eq(val(&v, "n_phone_14d"), 1); /* 13.5; 14.0 is outside */
    cr_assert_eq(val(&v, "n_phone_30d"), 2);
    cr_assert_eq(val(&v, "n_phone_all"), 2);
    cr_assert_eq(val(&v, "n_meeting_14d"), 2); /* 2.5, 5.5 */
    cr_assert_eq(val(&v, "n_meeting_30d"), 3); /* + 25.5 */
    cr_assert_eq(val(&v, "n_meeting_all"), 4); /* + 38.5 */
    cr_assert_eq(val(&v, "n_demo_14d"), 0);
    cr_assert_eq(val(&v, "n_demo_30d"), 1); /* 28.5 < 30 */
    cr_assert_eq(val(&v, "n_demo_all"), 1);
    cr_assert_eq(val(&v, "n_support_14d"), 1);
    cr_assert_eq(val(&v, "n_support_30d"), 1);
    cr_assert_eq(val(&v, "n_support_all"), 1);
    /* The latest is the "other" one at day 40.25. */
    cr_assert_eq(val(&v, "days_since_last_interaction"), 0.25);
    cr_assert_eq(val(&v, "days_since_last_meeting"), 2.5); /* day 38 */
    /* 45 + 0 (no duration) + 60; the day-2 meeting is 38.5 days old. */
    cr_assert_eq(val(&v, "meeting_minutes_30d"), 105);
    /* Last 14 d (age < 14): emails 0.5, 10.5, phone 13.5, meetings 2.5, 5.5,
     * support 1.5, other 0.25 = 7. Prior 14 d (14 <= age < 28): email 20.5,
     * phone 14.0, meeting 25.5 = 3 (the demo at 28.5 is out). (7+1)/(3+1). */
    cr_assert_eq(val(&v, "velocity_14d"), 2.0);
}

Test(features, firmographic_family_hand_computed) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    /* FNV-1a 64 of the normalized value, top 24 bits (computed offline). */
    cr_assert_eq(val(&v, "industry_code"), 9124623);         /* "financial services" */
    cr_assert_eq(val(&v, "region_code"), 8825501);           /* "emea" */
    cr_assert_eq(val(&v, "size_band_code"), 3906510);        /* "mid market" */
    cr_assert_eq(val(&v, "product_category_code"), 5215397); /* "software" */
    cr_assert_eq(val(&v, "persona_code"), 16115216);         /* "cfo" */
    /* Closed strictly before as_of: six deals, wins on days -100, 10, -30:
     * org rate (3 + 1) / (6 + 2) = 0.5. A1: won -100, lost -50, won 10 ->
     * (2 + 5 * 0.5) / (3 + 5) = 0.5625. O1: won -100, won 10, won -30,
     * lost -10 -> (3 + 2.5) / (4 + 5) = 5.5 / 9. The deal closed exactly at
     * as_of and the one on day 45 do not count. */
    cr_assert_eq(val(&v, "account_win_rate"), 0.5625);
    cr_assert_eq(val(&v, "account_closed_deals"), 3);
    cr_assert_eq(val(&v, "owner_win_rate"), 5.5 / 9.0);
    cr_assert_eq(val(&v, "owner_closed_deals"), 4);

    /* A new owner and account get the org rate, not 0 or 1. */
    f.raw.owner_id = "O-new";
    f.raw.account_id = "A-new";
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "owner_win_rate"), 0.5);
    cr_assert_eq(val(&v, "owner_closed_deals"), 0);
    cr_assert_eq(val(&v, "account_win_rate"), 0.5);
    /* No account: missing. */
    f.raw.account_id = NULL;
    f.raw.industry = "  ";
    compute(&f, f.as_of, &v);
    cr_assert(isnan(val(&v, "account_win_rate")));
    cr_assert(isnan(val(&v, "account_closed_deals")));
    cr_assert(isnan(val(&v, "industry_code")));
    /* No win-rate context at all: every rate is missing. */
    cr_assert_eq(ds_features_compute(&f.raw, f.as_of, NULL, NULL, &v), DS_OK);
    cr_assert(isnan(val(&v, "owner_win_rate")));
    cr_assert(isnan(val(&v, "owner_closed_deals")));
}

Test(features, meddicc_family_hand_computed) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    /* t1 (day 5): champion; "no budget" is no default phrase. t3 (day 20):
     * legal review, procurement, msa. t2 (day 50) is after as_of. */
    cr_assert_eq(val(&v, "meddicc_champion"), 1);
    cr_assert_eq(val(&v, "meddicc_paper_process"), 1);
    cr_assert_eq(val(&v, "meddicc_economic_buyer"), 0);
    cr_assert_eq(val(&v, "meddicc_metrics"), 0);
    cr_assert_eq(val(&v, "meddicc_decision_criteria"), 0);
    cr_assert_eq(val(&v, "meddicc_decision_process"), 0);
    cr_assert_eq(val(&v, "meddicc_identify_pain"), 0);
    cr_assert_eq(val(&v, "meddicc_competition"), 0);
    cr_assert_eq(val(&v, "meddicc_coverage"), 2);
    cr_assert_eq(val(&v, "n_transcripts"), 2);
    /* "Dana is our " is 12 bytes. */
    const ds_meddicc_result_t *m = &v.meddicc;
    cr_assert_str_eq(m->evidence[DS_MEDDICC_CHAMPION][0].transcript_id, "t1");
    cr_assert_eq(m->evidence[DS_MEDDICC_CHAMPION][0].start, 12);
    cr_assert_eq(m->evidence[DS_MEDDICC_CHAMPION][0].end, 20);
    cr_assert_eq(m->n_matches[DS_MEDDICC_PAPER_PROCESS], 3);
    cr_assert_str_eq(m->evidence[DS_MEDDICC_PAPER_PROCESS][0].transcript_id, "t3");
    cr_assert_str_eq(m->evidence[DS_MEDDICC_PAPER_PROCESS][0].phrase, "legal review");
    /* No transcripts: flags 0 and a count of 0 tell "nothing heard". */
    f.n_tr = 0;
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "meddicc_coverage"), 0);
    cr_assert_eq(val(&v, "n_transcripts"), 0);
    /* A lexicon passed in is used instead of the default. */
    ds_meddicc_phrase_t rows[] = {{"economic_buyer", "budget", false}};
    ds_meddicc_lexicon_t *lex = NULL;
    char err[64];
    cr_assert_eq(ds_meddicc_lexicon_new(rows, 1, &lex, err, sizeof err), DS_OK);
    fixture_init(&f);
    add_tr(&f, "t4", f.t0 + 6 * DAY, "The budget is approved.");
    f.raw.transcripts = f.tr;
    f.raw.n_transcripts = f.n_tr;
    f.raw.history = f.hist;
    f.raw.n_history = f.n_hist;
    cr_assert_eq(ds_features_compute(&f.raw, f.as_of, NULL, lex, &v), DS_OK);
    cr_assert_eq(val(&v, "meddicc_economic_buyer"), 1); /* t4, not t1's negated "no budget" */
    cr_assert_str_eq(v.meddicc.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].transcript_id, "t4");
    cr_assert_eq(val(&v, "meddicc_coverage"), 1);
    ds_meddicc_lexicon_destroy(lex);
}

/* ---- point in time ------------------------------------------------------------ */

typedef void (*mutation_fn)(fixture_t *f);

static void future_interactions(fixture_t *f) {
    add_inter(f, DS_INTERACTION_EMAIL, f->as_of + 1, NAN);
    add_inter(f, DS_INTERACTION_MEETING, f->as_of + 2 * DAY, 60);
    add_inter(f, DS_INTERACTION_DEMO, f->as_of + 1, 30);
}
static void future_stage_change(fixture_t *f) {
    add_stage(f, "negotiation", "closed_won", f->as_of + 1);
    add_stage(f, "closed_won", "discovery", f->as_of + DAY); /* even a regression */
}
static void future_amount_change(fixture_t *f) { add_amount(f, 99999, 1, f->as_of + 1); }
static void future_close_date_change(fixture_t *f) {
    add_close(f, f->t0 + 90 * DAY, f->t0 + 400 * DAY, f->as_of + 1);
}
static void future_transcript(fixture_t *f) {
    add_tr(f, "t9", f->as_of + 1,
           "Our champion and the economic buyer agreed the ROI, decision criteria, decision "
           "process, procurement, pain point and competitor.");
}
static void future_closed_deals(fixture_t *f) {
    add_deal(f, "A1", "O1", f->as_of, false);
    add_deal(f, "A1", "O1", f->as_of + 1, false);
    add_deal(f, "A9", "O9", f->as_of + DAY, true); /* moves only the org rate */
}
static void later_current_values(fixture_t *f) {
    f->raw.stage = "closed_lost";
    f->raw.amount = 1;
    f->raw.close_date_us = f->as_of + 1;
    f->raw.changed_at_us = f->as_of + 1;
}

Test(features, future_facts_change_nothing) {
    static const struct {
        const char *what;
        mutation_fn fn;
    } muts[] = {
        {"an interaction after as_of", future_interactions},
        {"a stage change after as_of", future_stage_change},
        {"an amount change after as_of", future_amount_change},
        {"a close date change after as_of", future_close_date_change},
        {"a transcript after as_of", future_transcript},
        {"a deal closed at or after as_of", future_closed_deals},
        {"current values changed after as_of", later_current_values},
    };
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t base, v;
    compute(&f, f.as_of, &base);
    for (size_t i = 0; i < DS_ARRAY_SIZE(muts); i++) {
        fixture_init(&f);
        muts[i].fn(&f);
        compute(&f, f.as_of, &v);
        assert_same_vec(&base, &v, muts[i].what);
    }
    /* All of them at once. */
    fixture_init(&f);
    for (size_t i = 0; i < DS_ARRAY_SIZE(muts); i++) muts[i].fn(&f);
    compute(&f, f.as_of, &v);
    assert_same_vec(&base, &v, "every later fact");
}

Test(features, facts_at_as_of_count) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t before, v;
    compute(&f, f.as_of, &before);
    add_inter(&f, DS_INTERACTION_EMAIL, f.as_of, NAN);
    add_stage(&f, "proposal", "negotiation", f.as_of);
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "n_email_14d"), val(&before, "n_email_14d") + 1);
    cr_assert_eq(val(&v, "days_since_last_interaction"), 0);
    cr_assert_eq(val(&v, "stage_index"), 5);
    cr_assert_eq(val(&v, "days_in_stage"), 0);
}

Test(features, time_travel_through_the_history) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t v;
    /* Day 12: discovery since day 10, close date pushed once to day 75. */
    compute(&f, f.t0 + 12 * DAY, &v);
    cr_assert_eq(val(&v, "stage_index"), 2);
    cr_assert_eq(val(&v, "days_in_stage"), 2);
    cr_assert_eq(val(&v, "stage_regressions"), 0);
    cr_assert_eq(val(&v, "close_date_pushes"), 0); /* the push is on day 15 */
    cr_assert_eq(val(&v, "days_to_close"), 48);    /* 60 - 12 */
    cr_assert_eq(val(&v, "amount_change_ratio"), 1);
    cr_assert_eq(val(&v, "n_transcripts"), 1);
    cr_assert_eq(val(&v, "account_closed_deals"), 3); /* days -100, -50, 10 */
    /* Day 60: every later change is in force. */
    compute(&f, f.t0 + 60 * DAY, &v);
    cr_assert_eq(val(&v, "stage_index"), 5); /* negotiation since day 50 */
    cr_assert_eq(val(&v, "days_in_stage"), 10);
    cr_assert_eq(val(&v, "close_date_pushes"), 2); /* 60 -> 75, 70 -> 90 */
    cr_assert_eq(val(&v, "amount_change_ratio"), 9.9999);
    cr_assert_eq(val(&v, "meddicc_economic_buyer"), 1); /* t2: the CFO */
    cr_assert_eq(val(&v, "meddicc_metrics"), 1);        /* t2: ROI */
    /* Before the creation rows: every history field is unknown. */
    compute(&f, f.t0 - DAY, &v);
    cr_assert_eq(val(&v, "days_open"), -1);
    cr_assert(isnan(val(&v, "stage_index")));
    cr_assert(isnan(val(&v, "days_in_stage")));
    cr_assert(isnan(val(&v, "amount_log")));
    cr_assert(isnan(val(&v, "amount_change_ratio")));
    cr_assert(isnan(val(&v, "days_to_close")));
    cr_assert(isnan(val(&v, "days_since_last_interaction")));
    cr_assert_eq(val(&v, "velocity_14d"), 1); /* (0 + 1) / (0 + 1) */
}

Test(features, outcome_never_changes_features) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t base, v;
    compute(&f, f.as_of, &base);
    static const ds_outcome_t outcomes[] = {DS_OUTCOME_WON, DS_OUTCOME_LOST, DS_OUTCOME_OPEN};
    for (size_t i = 0; i < DS_ARRAY_SIZE(outcomes); i++) {
        fixture_init(&f);
        f.raw.outcome = outcomes[i];
        f.raw.closed_at_us = f.t0 + 3 * DAY; /* even a closed_at before as_of */
        ds_opp_history_set(&f.hist[f.n_hist++], "outcome", "open",
                           outcomes[i] == DS_OUTCOME_WON ? "won" : "lost", f.t0 + 3 * DAY);
        compute(&f, f.as_of, &v);
        assert_same_vec(&base, &v, "the outcome");
    }
    /* A closed stage reveals closedness, never which way: closed_won and
     * closed_lost share index 6 and give identical vectors. */
    ds_feature_vec_t won, lost;
    fixture_init(&f);
    add_stage(&f, "proposal", "Closed Won", f.t0 + 40 * DAY);
    compute(&f, f.as_of, &won);
    fixture_init(&f);
    add_stage(&f, "proposal", "closed_lost", f.t0 + 40 * DAY);
    compute(&f, f.as_of, &lost);
    assert_same_vec(&won, &lost, "won vs lost");
    cr_assert_eq(val(&won, "stage_index"), 6);
}

Test(features, input_order_does_not_matter) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t base, v;
    compute(&f, f.as_of, &base);
    /* Reverse every array. */
    fixture_init(&f);
    for (size_t i = 0; i < f.n_hist / 2; i++) {
        ds_opp_history_t t = f.hist[i];
        f.hist[i] = f.hist[f.n_hist - 1 - i];
        f.hist[f.n_hist - 1 - i] = t;
    }
    for (size_t i = 0; i < f.n_inter / 2; i++) {
        ds_interaction_t t = f.inter[i];
        f.inter[i] = f.inter[f.n_inter - 1 - i];
        f.inter[f.n_inter - 1 - i] = t;
    }
    ds_transcript_t t = f.tr[0];
    f.tr[0] = f.tr[2];
    f.tr[2] = t;
    for (size_t i = 0; i < f.n_deals / 2; i++) {
        ds_closed_deal_t d = f.deals[i];
        f.deals[i] = f.deals[f.n_deals - 1 - i];
        f.deals[f.n_deals - 1 - i] = d;
    }
    compute(&f, f.as_of, &v);
    assert_same_vec(&base, &v, "reordering the input");
}

/* ---- fallbacks and edge cases ---------------------------------------------------- */

Test(features, current_values_without_history) {
    fixture_t f;
    fixture_init(&f);
    f.n_hist = 0;
    f.raw.stage = "Demo";
    f.raw.amount = 20000;
    f.raw.close_date_us = f.t0 + 50 * DAY;
    f.raw.changed_at_us = f.t0 + 10 * DAY;
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "stage_index"), 3);
    cr_assert_eq(val(&v, "days_in_stage"), 40.5); /* since created_at */
    cr_assert_eq(val(&v, "amount_log"), log1p(20000.0));
    cr_assert_eq(val(&v, "amount_change_ratio"), 1);
    cr_assert_eq(val(&v, "days_to_close"), 9.5); /* 50 - 40.5 */
    /* Last changed after as_of: the current values may not be as_of's. */
    f.raw.changed_at_us = f.as_of + 1;
    compute(&f, f.as_of, &v);
    cr_assert(isnan(val(&v, "stage_index")));
    cr_assert(isnan(val(&v, "days_in_stage")));
    cr_assert(isnan(val(&v, "amount_log")));
    cr_assert(isnan(val(&v, "days_to_close")));
    /* Unknown changed_at: trusted. An unknown stage name: no index. */
    f.raw.changed_at_us = DS_TIME_NONE;
    f.raw.stage = "Legal Limbo";
    compute(&f, f.as_of, &v);
    cr_assert(isnan(val(&v, "stage_index")));
    cr_assert_eq(val(&v, "days_in_stage"), 40.5);
}

Test(features, old_value_before_first_change) {
    fixture_t f;
    fixture_init(&f);
    f.n_hist = 0;
    /* Only a change after as_of is recorded: its old value was in force. */
    add_stage(&f, "discovery", "proposal", f.as_of + DAY);
    add_amount(&f, 8000, 9000, f.as_of + DAY);
    add_close(&f, f.t0 + 45 * DAY, f.t0 + 80 * DAY, f.as_of + DAY);
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "stage_index"), 2);
    cr_assert_eq(val(&v, "days_in_stage"), 40.5);
    cr_assert_eq(val(&v, "amount_log"), log1p(8000.0));
    cr_assert_eq(val(&v, "amount_change_ratio"), 1);
    cr_assert_eq(val(&v, "days_to_close"), 4.5);
    cr_assert_eq(val(&v, "close_date_pushes"), 0);
    /* A change at as_of from an old value counts as a push and a base. */
    add_close(&f, f.t0 + 45 * DAY, f.t0 + 50 * DAY, f.as_of);
    add_amount(&f, 8000, 4000, f.as_of);
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "close_date_pushes"), 1);
    cr_assert_eq(val(&v, "amount_change_ratio"), 0.5); /* 4000 / 8000 */
    /* A creation row (no old value) after as_of: unknown before it. */
    f.n_hist = 0;
    add_stage(&f, NULL, "discovery", f.as_of + DAY);
    compute(&f, f.as_of, &v);
    cr_assert(isnan(val(&v, "stage_index")));
    cr_assert(isnan(val(&v, "days_in_stage")));
    /* Repeating the stage in force does not restart days_in_stage. */
    f.n_hist = 0;
    add_stage(&f, NULL, "discovery", f.t0);
    add_stage(&f, "discovery", "DISCOVERY", f.t0 + 20 * DAY);
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "days_in_stage"), 40.5);
}

Test(features, custom_stage_list) {
    const ds_stage_def_t defs[] = {{"Lead", 0}, {"Qualified Lead", 1}, {"Won", 2}, {"Lost", 2}};
    ds_stage_list_t *sl = NULL;
    char err[128];
    cr_assert_eq(ds_stage_list_new(defs, 4, &sl, err, sizeof err), DS_OK, "%s", err);
    cr_assert_eq(ds_stage_list_index(sl, "qualified-lead"), 1);
    cr_assert_eq(ds_stage_list_index(sl, " WON "), 2);
    cr_assert_eq(ds_stage_list_index(sl, "proposal"), -1);
    cr_assert_eq(ds_stage_list_index(ds_stage_list_default(), "Closed Lost"), 6);
    cr_assert_eq(ds_stage_list_index(ds_stage_list_default(), "negotiation"), 5);
    cr_assert_eq(ds_stage_list_index(ds_stage_list_default(), ""), -1);
    fixture_t f;
    fixture_init(&f);
    f.n_hist = 0;
    add_stage(&f, NULL, "Qualified Lead", f.t0);
    add_stage(&f, "Qualified Lead", "Lead", f.t0 + DAY);
    f.raw.stages = sl;
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "stage_index"), 0);
    cr_assert_eq(val(&v, "stage_regressions"), 1);
    ds_stage_list_destroy(sl);

    const ds_stage_def_t dup[] = {{"Won", 1}, {"won", 2}};
    cr_assert_eq(ds_stage_list_new(dup, 2, &sl, err, sizeof err), DS_EINVAL);
    cr_assert_not_null(strstr(err, "twice"), "%s", err);
    const ds_stage_def_t neg[] = {{"a", -1}};
    cr_assert_eq(ds_stage_list_new(neg, 1, &sl, err, sizeof err), DS_EINVAL);
    const ds_stage_def_t empty[] = {{" - ", 1}};
    cr_assert_eq(ds_stage_list_new(empty, 1, &sl, err, sizeof err), DS_EINVAL);
    ds_stage_list_destroy(NULL);
    ds_stage_list_destroy((ds_stage_list_t *)ds_stage_list_default());
}

Test(features, unseen_categories_get_valid_codes) {
    static const char *const values[] = {"Quantum Basket Weaving", "x", "Ünïcode Großhandel", "a\"b\\c", "9"};
    for (size_t i = 0; i < DS_ARRAY_SIZE(values); i++) {
        double c = ds_feature_category_code(values[i]);
        cr_assert(isfinite(c), "%s", values[i]);
        cr_assert(c >= 0 && c < 16777216 && c == floor(c), "%s: %f", values[i], c);
        cr_assert_eq((double)(float)c, c, "%s is not exact in float32", values[i]);
        cr_assert_eq(ds_feature_category_code(values[i]), c, "not stable");
    }
    /* Case, surrounding space, '_' and '-' do not matter. */
    double mm = ds_feature_category_code("mid market");
    cr_assert_eq(mm, 3906510);
    cr_assert_eq(ds_feature_category_code("Mid-Market"), mm);
    cr_assert_eq(ds_feature_category_code("  MID_MARKET "), mm);
    cr_assert_eq(ds_feature_category_code("mid \t market"), mm);
    cr_assert_neq(ds_feature_category_code("midmarket"), mm);
    cr_assert_eq(ds_feature_category_code("retail"), 6338541);
    cr_assert_neq(ds_feature_category_code("Retail"), ds_feature_category_code("Software"));
    cr_assert(isnan(ds_feature_category_code(NULL)));
    cr_assert(isnan(ds_feature_category_code("")));
    cr_assert(isnan(ds_feature_category_code(" _-")));
    /* Through the engine: an industry never seen before still gets a code. */
    fixture_t f;
    fixture_init(&f);
    f.raw.industry = "Asteroid Mining";
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "industry_code"), ds_feature_category_code("asteroid mining"));
}

Test(features, history_rows_from_text) {
    ds_opp_history_t h;
    int64_t at = 1000;
    /* The text ingest stores: numeric::text, date::text. */
    cr_assert_eq(ds_opp_history_set(&h, "amount", "10000.00", "12500.50", at), DS_OK);
    cr_assert_eq(h.field, DS_HIST_AMOUNT);
    cr_assert_eq(h.old_value.amount, 10000);
    cr_assert_eq(h.new_value.amount, 12500.5);
    cr_assert_eq(h.changed_at_us, at);
    cr_assert_eq(ds_opp_history_set(&h, "close_date", NULL, "2026-03-31", at), DS_OK);
    int64_t d;
    ds_parse_time_us("2026-03-31T00:00:00Z", &d);
    cr_assert_eq(h.new_value.close_date_us, d);
    cr_assert_eq(h.old_value.close_date_us, DS_TIME_NONE);
    cr_assert_eq(ds_opp_history_set(&h, "stage", "", "discovery", at), DS_OK);
    cr_assert_null(h.old_value.stage);
    cr_assert_str_eq(h.new_value.stage, "discovery");
    cr_assert_eq(ds_opp_history_set(&h, "outcome", "open", "won", at), DS_OK);
    cr_assert_eq(h.field, DS_HIST_IGNORED);
    cr_assert_eq(ds_opp_history_set(&h, "probability", "1", "2", at), DS_EINVAL);
    cr_assert_eq(ds_opp_history_set(&h, "amount", NULL, "12k", at), DS_EINVAL);
    cr_assert_eq(ds_opp_history_set(&h, "close_date", NULL, "soon", at), DS_EINVAL);
    cr_assert_eq(ds_interaction_type_parse("Meeting"), DS_INTERACTION_MEETING);
    cr_assert_eq(ds_interaction_type_parse("support"), DS_INTERACTION_SUPPORT);
    cr_assert_eq(ds_interaction_type_parse("sms"), DS_INTERACTION_OTHER);
    cr_assert_eq(ds_interaction_type_parse(NULL), DS_INTERACTION_OTHER);
}

/* The buyer's answers: emails answered against emails left unanswered;
 * other types and emails that ask nothing (inbound, sent) do not count. */
Test(features, email_reply_rate_hand_computed) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "email_reply_rate"), 0.5); /* no answers known: (0 + 1) / (0 + 2) */
    f.inter[0].answer = DS_ANSWER_YES;              /* email, 0.5 days before as_of */
    f.inter[1].answer = DS_ANSWER_NO;               /* email, 10.5 */
    f.inter[2].answer = DS_ANSWER_YES;              /* email, 20.5 */
    f.inter[4].answer = DS_ANSWER_NO;               /* a call: not an email */
    f.inter[13].answer = DS_ANSWER_NO;              /* an email after as_of */
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "email_reply_rate"), 0.6); /* (2 + 1) / (3 + 2) */
    compute(&f, f.t0 + 15 * DAY, &v);               /* only the email of day 5, which asked nothing */
    cr_assert_eq(val(&v, "email_reply_rate"), 0.5);

    cr_assert_eq(ds_interaction_answer_parse("replied"), DS_ANSWER_YES);
    cr_assert_eq(ds_interaction_answer_parse("Connected"), DS_ANSWER_YES);
    cr_assert_eq(ds_interaction_answer_parse("held"), DS_ANSWER_YES);
    cr_assert_eq(ds_interaction_answer_parse("no_reply"), DS_ANSWER_NO);
    cr_assert_eq(ds_interaction_answer_parse("No Reply"), DS_ANSWER_NO);
    cr_assert_eq(ds_interaction_answer_parse("no-show"), DS_ANSWER_NO);
    cr_assert_eq(ds_interaction_answer_parse("voicemail"), DS_ANSWER_NO);
    cr_assert_eq(ds_interaction_answer_parse("sent"), DS_ANSWER_NONE);
    cr_assert_eq(ds_interaction_answer_parse("received"), DS_ANSWER_NONE);
    cr_assert_eq(ds_interaction_answer_parse("replied to everyone"), DS_ANSWER_NONE);
    cr_assert_eq(ds_interaction_answer_parse(""), DS_ANSWER_NONE);
    cr_assert_eq(ds_interaction_answer_parse(NULL), DS_ANSWER_NONE);
}

/* The deal beside its peers, from deals closed strictly before as_of: the
 * industry and product's smoothed win rate, and ln(amount) against the
 * mean ln(amount) of the size band and product's deals. */
Test(features, peers_hand_computed) {
    fixture_t f;
    fixture_init(&f); /* Financial Services, Software, Mid-Market; 15,000 at as_of */
    f.n_deals = 0;
    const char *fs = "Financial Services", *sw = "Software", *mm = "Mid-Market";
    f.deals[f.n_deals++] = (ds_closed_deal_t){"A1", "O1", f.t0 - 100 * DAY, true, fs, sw, mm, 20000};
    f.deals[f.n_deals++] =
        (ds_closed_deal_t){"A2", "O2", f.t0 - 50 * DAY, false, fs, sw, "Enterprise", 80000};
    f.deals[f.n_deals++] = (ds_closed_deal_t){"A3", "O1", f.t0 + 30 * DAY, false, "Retail", sw, mm, 5000};
    f.deals[f.n_deals++] = (ds_closed_deal_t){"A4", "O2", f.t0 + 35 * DAY, true, fs, sw, mm, 0};
    f.deals[f.n_deals++] = (ds_closed_deal_t){"A5", "O1", f.as_of, true, fs, sw, mm, 1e6}; /* at as_of */
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    /* Segment: 2 wins of 3 (A1, A2, A4); org: 2 of 4, (2 + 1) / (4 + 2) = 0.5;
     * (2 + 5 * 0.5) / (3 + 5) = 0.5625. */
    cr_assert_eq(val(&v, "segment_win_rate"), 0.5625);
    /* Cohort: A1 and A3 (A4 has no amount > 0): mean ln = ln(10,000). */
    cr_assert_float_eq(val(&v, "amount_vs_cohort"), log(1.5), 1e-12);
    compute(&f, f.t0 + 26 * DAY, &v); /* 15,000; A1 alone in the cohort, A1 and A2 in the segment */
    cr_assert_float_eq(val(&v, "amount_vs_cohort"), log(15000.0 / 20000.0), 1e-12);
    /* org (1 + 1) / (2 + 2) = 0.5; (1 + 2.5) / (2 + 5) = 0.5 */
    cr_assert_eq(val(&v, "segment_win_rate"), 0.5);
    compute(&f, f.t0 - 200 * DAY, &v); /* nothing closed yet */
    cr_assert(isnan(val(&v, "amount_vs_cohort")));
    cr_assert_eq(val(&v, "segment_win_rate"), 0.5);
    f.raw.size_band = "";
    f.raw.industry = NULL;
    compute(&f, f.as_of, &v);
    cr_assert(isnan(val(&v, "amount_vs_cohort")));
    cr_assert(isnan(val(&v, "segment_win_rate")));

    ds_winrate_ctx_t *wr = NULL;
    cr_assert_eq(ds_winrate_ctx_new(f.deals, f.n_deals, DS_WINRATE_SMOOTHING, &wr), DS_OK);
    double mean_log;
    uint32_t n;
    cr_assert_eq(ds_amount_cohort(wr, mm, sw, f.as_of + 1, &mean_log, &n), DS_OK);
    cr_assert_eq(n, 3); /* A1, A3, A5 */
    cr_assert_float_eq(mean_log, (log(20000.0) + log(5000.0) + log(1e6)) / 3, 1e-12);
    cr_assert_eq(ds_amount_cohort(wr, "Enterprise", "Services", f.as_of, &mean_log, &n), DS_OK);
    cr_assert_eq(n, 0);
    cr_assert(isnan(mean_log));
    cr_assert_eq(ds_amount_cohort(wr, "", sw, f.as_of, &mean_log, &n), DS_EINVAL);
    ds_winrate_t r;
    cr_assert_eq(ds_winrate_segment(wr, fs, NULL, f.as_of, &r), DS_EINVAL);
    cr_assert_eq(ds_winrate_segment(wr, "Retail", sw, f.as_of, &r), DS_OK);
    cr_assert_eq(r.closed, 1);
    cr_assert_eq(r.wins, 0);
    ds_winrate_ctx_destroy(wr);
}

/* The account's and owner's engagement, from their deals closed strictly
 * before as_of: working days Monday to Friday (UTC) between creation and
 * close, interactions, emails answered of those answered or not. */
Test(features, engagement_hand_computed) {
    fixture_t f;
    fixture_init(&f); /* account A1, owner O1; t0 = 2026-01-01, a Thursday */
    const int64_t t0 = f.t0;
    f.n_deals = 0;
    /* Thursday to the next Thursday: Thu, Fri, Mon, Tue, Wed = 5 days. */
    f.deals[f.n_deals++] =
        (ds_closed_deal_t){"A1", "O1", t0 + 7 * DAY, true, NULL, NULL, NULL, NAN, true, t0, 10, 3, 4};
    /* Friday 00:00 to Sunday 12:00: the Friday, 1 day. */
    f.deals[f.n_deals++] = (ds_closed_deal_t){
        "A1", "O2", t0 + 10 * DAY + 12 * HOUR, false, NULL, NULL, NULL, NAN, true, t0 + 8 * DAY, 4, 0, 2};
    /* Friday 12:00 to Monday 06:00: 0.5 + 0.25 days. */
    f.deals[f.n_deals++] = (ds_closed_deal_t){"A2", "O1", t0 + 4 * DAY + 6 * HOUR, false, NULL, NULL, NULL,
                                              NAN,  true, t0 + DAY + 12 * HOUR,    3,     1,    1};
    /* Closed after as_of, and one without activity: neither counts. */
    f.deals[f.n_deals++] =
        (ds_closed_deal_t){"A1", "O1", t0 + 41 * DAY, true, NULL, NULL, NULL, NAN, true, t0, 100, 50, 50};
    f.deals[f.n_deals++] = (ds_closed_deal_t){"A1", "O1", t0 + 2 * DAY, false};
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    /* Org: 6.75 working days, 17 interactions, 4 of 7 emails answered:
     * (17 + 1) / (6.75 + 1) = 18 / 7.75 and (4 + 1) / (7 + 2) = 5 / 9.
     * O1: 5.75 days, 13 interactions, 4 of 5 answered. A1: 3 of 6. */
    const double org_activity = 18 / 7.75, org_reply = 5.0 / 9.0;
    cr_assert_float_eq(val(&v, "owner_activity_rate"), (13 + 20 * org_activity) / (5.75 + 20), 1e-12);
    cr_assert_float_eq(val(&v, "owner_reply_rate"), (4 + 10 * org_reply) / (5 + 10.0), 1e-12);
    cr_assert_float_eq(val(&v, "account_reply_rate"), (3 + 10 * org_reply) / (6 + 10.0), 1e-12);

    ds_winrate_ctx_t *wr = NULL;
    cr_assert_eq(ds_winrate_ctx_new(f.deals, f.n_deals, DS_WINRATE_SMOOTHING, &wr), DS_OK);
    ds_engagement_t e;
    ds_engagement_org(wr, f.as_of, &e);
    cr_assert_eq(e.deals, 3);
    cr_assert_float_eq(e.workdays, 6.75, 1e-12);
    cr_assert_eq(e.interactions, 17);
    cr_assert_eq(e.answered, 4);
    cr_assert_eq(e.asked, 7);
    cr_assert_eq(ds_engagement_owner(wr, "O1", f.as_of, &e), DS_OK);
    cr_assert_eq(e.deals, 2);
    cr_assert_float_eq(e.workdays, 5.75, 1e-12);
    /* Strictly before: at t0 + 7 days the first deal has not closed yet. */
    cr_assert_eq(ds_engagement_owner(wr, "O1", t0 + 7 * DAY, &e), DS_OK);
    cr_assert_eq(e.deals, 1);
    cr_assert_eq(e.interactions, 3);
    /* An owner without closed deals gets the org's rates. */
    cr_assert_eq(ds_engagement_owner(wr, "O-new", f.as_of, &e), DS_OK);
    cr_assert_eq(e.deals, 0);
    cr_assert_float_eq(e.activity_rate, org_activity, 1e-12);
    cr_assert_float_eq(e.reply_rate, org_reply, 1e-12);
    cr_assert_eq(ds_engagement_account(wr, "", f.as_of, &e), DS_EINVAL);
    cr_assert_eq(ds_engagement_owner(wr, NULL, f.as_of, &e), DS_EINVAL);
    ds_winrate_ctx_destroy(wr);

    /* No account, no context: missing. */
    f.raw.account_id = NULL;
    compute(&f, f.as_of, &v);
    cr_assert(isnan(val(&v, "account_reply_rate")));
    cr_assert_eq(ds_features_compute(&f.raw, f.as_of, NULL, NULL, &v), DS_OK);
    cr_assert(isnan(val(&v, "owner_activity_rate")));
    cr_assert(isnan(val(&v, "owner_reply_rate")));
}

Test(features, winrate_smoothing_and_strict_before) {
    const ds_closed_deal_t deals[] = {
        {"A", "O", 100, true}, {"A", "O", 200, false},         {"B", NULL, 200, true},
        {"", "O", 300, true},  {"A", "O", DS_TIME_NONE, true}, /* ignored */
    };
    ds_winrate_ctx_t *wr = NULL;
    cr_assert_eq(ds_winrate_ctx_new(deals, 5, 5.0, &wr), DS_OK);
    ds_winrate_t r;
    ds_winrate_org(wr, 200, &r); /* only the deal at 100 */
    cr_assert_eq(r.closed, 1);
    cr_assert_eq(r.wins, 1);
    cr_assert_eq(r.rate, 2.0 / 3.0); /* (1 + 1) / (1 + 2) */
    ds_winrate_org(wr, 301, &r);     /* 4 deals, 3 wins: (3 + 1) / (4 + 2) */
    cr_assert_eq(r.rate, 4.0 / 6.0);
    cr_assert_eq(ds_winrate_account(wr, "A", 201, &r), DS_OK);
    /* A: 1 win of 2; org before 201: 2 wins of 3 -> (2+1)/(3+2) = 0.6;
     * (1 + 5 * 0.6) / (2 + 5) = 4 / 7. */
    cr_assert_eq(r.closed, 2);
    cr_assert_float_eq(r.rate, 4.0 / 7.0, 1e-15);
    cr_assert_eq(ds_winrate_owner(wr, "O", 301, &r), DS_OK);
    cr_assert_eq(r.closed, 3); /* 100, 200, 300 */
    cr_assert_eq(r.wins, 2);
    cr_assert_eq(ds_winrate_account(wr, "", 301, &r), DS_EINVAL);
    cr_assert_eq(ds_winrate_owner(wr, NULL, 301, &r), DS_EINVAL);
    cr_assert_eq(ds_winrate_account(wr, "Z", 0, &r), DS_OK);
    cr_assert_eq(r.rate, 0.5); /* nothing closed yet: (0 + 1) / (0 + 2) */
    ds_winrate_ctx_destroy(wr);
    /* m = 0 is the raw rate; an unknown key then falls back to the org. */
    cr_assert_eq(ds_winrate_ctx_new(deals, 5, 0, &wr), DS_OK);
    cr_assert_eq(ds_winrate_account(wr, "A", 201, &r), DS_OK);
    cr_assert_eq(r.rate, 0.5);
    cr_assert_eq(ds_winrate_account(wr, "Z", 201, &r), DS_OK);
    cr_assert_eq(r.rate, 0.6);
    ds_winrate_ctx_destroy(wr);
    cr_assert_eq(ds_winrate_ctx_new(deals, 5, -1, &wr), DS_EINVAL);
    cr_assert_eq(ds_winrate_ctx_new(deals, 5, NAN, &wr), DS_EINVAL);
    cr_assert_eq(ds_winrate_ctx_new(NULL, 0, 5, &wr), DS_OK);
    ds_winrate_org(wr, 1000, &r);
    cr_assert_eq(r.rate, 0.5);
    ds_winrate_ctx_destroy(wr);
    ds_winrate_ctx_destroy(NULL);
}

Test(features, invalid_input) {
    ds_feature_vec_t v;
    cr_assert_eq(ds_features_compute(NULL, 0, NULL, NULL, &v), DS_EINVAL);
    for (int i = 0; i < DS_FEATURE_COUNT; i++) cr_assert(isnan(v.values[i]));
    ds_opp_raw_t raw;
    ds_opp_raw_init(&raw);
    raw.n_interactions = 3; /* with a NULL array */
    cr_assert_eq(ds_features_compute(&raw, 0, NULL, NULL, &v), DS_EINVAL);
    cr_assert_eq(ds_features_compute(&raw, 0, NULL, NULL, NULL), DS_EINVAL);
    /* An empty opportunity is fine: counts 0, the rest missing. */
    ds_opp_raw_init(&raw);
    cr_assert_eq(ds_features_compute(&raw, 0, NULL, NULL, &v), DS_OK);
    cr_assert(isnan(v.values[DS_F_DAYS_OPEN]));
    cr_assert_eq(v.values[DS_F_N_EMAIL_ALL], 0);
    cr_assert_eq(v.values[DS_F_MEDDICC_COVERAGE], 0);
}

/* Buyer contacts: the transcripts' speakers but the rep (a line's text
 * before ':' of 1 to 60 bytes, case and spaces aside) and the contacts the
 * interactions name, up to as_of. */
Test(features, buyer_contacts_hand_computed) {
    fixture_t f;
    fixture_init(&f);
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    cr_assert_eq(val(&v, "buyer_contacts"), 0, "no speaker, no named contact");
    fixture_init(&f);
    add_tr(&f, "s1", f.t0 + 5 * DAY,
           "Rep: Hello.\nMaria: Our pain is the close.\n  maria : Still me.\nSALES REP: Noted.\n"
           "Tom: Security signs off.\nThe agenda: pricing, then scope.");
    add_tr(&f, "s2", f.t0 + 50 * DAY, "Priya: I joined after as_of."); /* later */
    add_tr(&f, "s3", f.t0 + 6 * DAY,
           "A line with no colon at all\n"
           "This speaker label is far too long to be a name, over sixty bytes: no.");
    f.inter[f.n_inter++] = (ds_interaction_t){DS_INTERACTION_EMAIL, f.t0 + 7 * DAY, NAN, "TOM"};
    f.inter[f.n_inter++] =
        (ds_interaction_t){DS_INTERACTION_MEETING, f.t0 + 8 * DAY, 30, "dana@buyer.example"};
    f.inter[f.n_inter++] = (ds_interaction_t){DS_INTERACTION_PHONE, f.t0 + 45 * DAY, 5, "lee@buyer.example"};
    compute(&f, f.as_of, &v);
    /* maria, tom, "the agenda" (a label is what it looks like), dana. */
    cr_assert_eq(val(&v, "buyer_contacts"), 4);
}

/* ---- catalog and JSON ----------------------------------------------------------- */

Test(features, catalog_lists_every_feature) {
    char *js = ds_features_catalog_json();
    char *again = ds_features_catalog_json();
    cr_assert_str_eq(js, again);
    json_error_t jerr;
    json_t *root = json_loads(js, 0, &jerr);
    cr_assert_not_null(root, "%s", jerr.text);
    cr_assert_str_eq(json_string_value(json_object_get(root, "version")), DS_FEATURE_VERSION);
    cr_assert_str_eq(DS_FEATURE_VERSION, "fv4");
    cr_assert_eq(json_integer_value(json_object_get(root, "count")), DS_FEATURE_COUNT);
    json_t *stages = json_object_get(root, "default_stage_order");
    cr_assert_eq(json_integer_value(json_object_get(stages, "closed_lost")), 6);
    json_t *feats = json_object_get(root, "features");
    cr_assert_eq(json_array_size(feats), DS_FEATURE_COUNT);
    static const char *const families[] = {"temporal", "interaction", "firmographic", "meddicc"};
    int per_family[4] = {0};
    for (int i = 0; i < DS_FEATURE_COUNT; i++) {
        json_t *f = json_array_get(feats, i);
        const char *name = json_string_value(json_object_get(f, "name"));
        cr_assert_eq(json_integer_value(json_object_get(f, "index")), i);
        cr_assert_str_eq(name, ds_feature_name(i));
        cr_assert_eq(ds_feature_index(name), i);
        cr_assert_str_eq(json_string_value(json_object_get(f, "label")), ds_feature_label(i));
        for (const char *p = name; *p; p++)
            cr_assert((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_',
                      "%s is not snake_case", name);
        for (int j = 0; j < i; j++) cr_assert_str_neq(name, ds_feature_name(j));
        const char *fam = json_string_value(json_object_get(f, "family"));
        int k = 0;
        while (k < 4 && strcmp(fam, families[k]) != 0) k++;
        cr_assert_lt(k, 4, "unknown family %s", fam);
        per_family[k]++;
        cr_assert_gt(strlen(json_string_value(json_object_get(f, "unit"))), 0);
        cr_assert_gt(strlen(json_string_value(json_object_get(f, "missing"))), 0);
    }
    cr_assert_eq(per_family[0], 8);
    cr_assert_eq(per_family[1], 21);
    cr_assert_eq(per_family[2], 14);
    cr_assert_eq(per_family[3], 10);
    cr_assert_eq(ds_feature_index("no_such_feature"), -1);
    cr_assert_eq(ds_feature_index(NULL), -1);
    cr_assert_null(ds_feature_name(DS_FEATURE_COUNT));
    json_decref(root);
    free(js);
    free(again);
}

Test(features, json_parses_and_is_deterministic) {
    fixture_t f;
    fixture_init(&f);
    f.raw.region = NULL; /* a null in the output */
    ds_feature_vec_t v;
    compute(&f, f.as_of, &v);
    v.values[DS_F_MEETING_MINUTES_30D] = 0.1; /* shortest round trip: "0.1" */
    v.values[DS_F_VELOCITY_14D] = -0.0;       /* "0" */
    v.values[DS_F_STAGE_REGRESSIONS] = -3.25; /* "-3.25" */
    v.values[DS_F_N_DEMO_ALL] = 1e20;         /* "1e+20" */
    v.values[DS_F_N_DEMO_30D] = 1.0 / 3.0;    /* 16-17 digits, read back exactly below */
    char *a = ds_features_to_json(&v), *b = ds_features_to_json(&v);
    cr_assert_str_eq(a, b);
    const char *prefix = "{\"days_open\":40.5,\"days_to_close\":29.5,\"close_date_pushes\":1,";
    cr_assert_eq(strncmp(a, prefix, strlen(prefix)), 0, "%s", a);
    cr_assert_not_null(strstr(a, "\"region_code\":null"), "%s", a);
    cr_assert_not_null(strstr(a, "\"meeting_minutes_30d\":0.1,"), "%s", a);
    cr_assert_not_null(strstr(a, "\"velocity_14d\":0,"), "%s", a);
    cr_assert_not_null(strstr(a, "\"stage_regressions\":-3.25,"), "%s", a);
    cr_assert_not_null(strstr(a, "\"n_demo_all\":1e+20,"), "%s", a);
    cr_assert_not_null(strstr(a, "\"n_demo_30d\":0.3333333333333333,"), "%s", a);
    cr_assert_not_null(strstr(a, "\"industry_code\":9124623,"), "%s", a);
    json_error_t jerr;
    json_t *root = json_loads(a, 0, &jerr);
    cr_assert_not_null(root, "%s", jerr.text);
    cr_assert_eq(json_object_size(root), DS_FEATURE_COUNT);
    /* Every value reads back bit for bit (NaN as null). */
    for (int i = 0; i < DS_FEATURE_COUNT; i++) {
        json_t *x = json_object_get(root, ds_feature_name(i));
        cr_assert_not_null(x, "%s missing", ds_feature_name(i));
        if (isnan(v.values[i])) {
            cr_assert(json_is_null(x), "%s", ds_feature_name(i));
        } else {
            cr_assert_eq(json_number_value(x), v.values[i], "%s", ds_feature_name(i));
        }
    }
    json_decref(root);
    free(a);
    free(b);
    /* The evidence JSON of the same vector parses too. */
    char *m = ds_meddicc_result_to_json(&v.meddicc);
    root = json_loads(m, 0, &jerr);
    cr_assert_not_null(root, "%s", jerr.text);
    json_t *ev = json_array_get(json_object_get(json_object_get(root, "champion"), "evidence"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "transcript_id")), "t1");
    json_decref(root);
    free(m);
}
