/* Reasons in words (domain/reasons.h): the exact label and display value of
 * each kind of feature, with and without what is known around it. */
#include <criterion/criterion.h>
#include <math.h>

#include "domain/reasons.h"

static ds_reason_t r;

#define EXPECT(name, value, ctx, want_label, want_display)                                                   \
    do {                                                                                                     \
        ds_reason((name), (value), (ctx), &r);                                                               \
        cr_expect_str_eq(r.label, (want_label), "%s label", (name));                                         \
        cr_expect_str_eq(r.display, (want_display), "%s display", (name));                                   \
    } while (0)

Test(reasons, amount_with_currency_and_cohort_quartiles) {
    ds_reason_ctx_t c;
    ds_reason_ctx_init(&c);
    double v = log1p(285000);
    EXPECT("amount_log", v, &c, "Amount", "285,000");
    c.currency = "USD";
    EXPECT("amount_log", v, &c, "Amount", "$285,000");
    c.amount_p25 = 90000;
    c.amount_median = 150000;
    c.amount_p75 = 240000;
    EXPECT("amount_log", v, &c, "Amount", "$285,000 (above 75 % of similar won deals)");
    EXPECT("amount_log", log1p(200000), &c, "Amount", "$200,000 (above half of similar won deals)");
    EXPECT("amount_log", log1p(100000), &c, "Amount", "$100,000 (below half of similar won deals)");
    EXPECT("amount_log", log1p(1500), &c, "Amount", "$1,500 (below 75 % of similar won deals)");
    c.currency = "eur";
    EXPECT("amount_log", log1p(999), &c, "Amount", "\u20ac999 (below 75 % of similar won deals)");
    c.currency = "CHF";
    c.amount_p25 = c.amount_median = c.amount_p75 = NAN;
    EXPECT("amount_log", log1p(1234567), &c, "Amount", "1,234,567 CHF");
    EXPECT("amount_log", NAN, &c, "Amount", "not set");
    /* A driver's value went through float: the deal's double is used. */
    double values[DS_FEATURE_COUNT];
    for (int i = 0; i < DS_FEATURE_COUNT; i++) values[i] = NAN;
    values[DS_F_AMOUNT_LOG] = log1p(285001);
    c.values = values;
    c.currency = "GBP";
    EXPECT("amount_log", (float)log1p(285001), &c, "Amount", "\u00a3285,001");
    EXPECT("amount_change_ratio", 1.2, NULL, "Amount since first entered", "up 20 %");
    EXPECT("amount_change_ratio", 0.85, NULL, "Amount since first entered", "down 15 %");
    EXPECT("amount_change_ratio", 1.0, NULL, "Amount since first entered", "unchanged");
}

Test(reasons, stage_with_its_days) {
    double values[DS_FEATURE_COUNT];
    for (int i = 0; i < DS_FEATURE_COUNT; i++) values[i] = NAN;
    ds_reason_ctx_t c;
    ds_reason_ctx_init(&c);
    EXPECT("stage_index", 4, &c, "Stage", "Proposal");
    c.values = values;
    values[DS_F_DAYS_IN_STAGE] = 41.3;
    EXPECT("stage_index", 4, &c, "Stage", "Proposal for 41 days");
    values[DS_F_DAYS_IN_STAGE] = 0.2;
    EXPECT("stage_index", 4, &c, "Stage", "Proposal since today");
    values[DS_F_DAYS_IN_STAGE] = 1;
    c.stage = "Proposal/Price Quote"; /* not the default list's stage 4: its own name is not used */
    EXPECT("stage_index", 4, &c, "Stage", "Proposal for 1 day");
    c.stage = "PROPOSAL";
    EXPECT("stage_index", 4, &c, "Stage", "PROPOSAL for 1 day");
    EXPECT("stage_index", NAN, NULL, "Stage", "unknown");
    EXPECT("days_in_stage", 41.3, NULL, "Time in stage", "41 days");
    EXPECT("stage_regressions", 0, NULL, "Stage moved back", "never");
    EXPECT("stage_regressions", 2, NULL, "Stage moved back", "2 times");
}

Test(reasons, dates_and_durations) {
    EXPECT("days_open", 41.6, NULL, "Open for", "42 days");
    EXPECT("days_open", 0.5, NULL, "Open for", "less than a day");
    EXPECT("days_to_close", 12.2, NULL, "Close date", "in 12 days");
    EXPECT("days_to_close", 0.4, NULL, "Close date", "today");
    EXPECT("days_to_close", -3, NULL, "Close date", "3 days overdue");
    EXPECT("days_to_close", -1, NULL, "Close date", "1 day overdue");
    EXPECT("days_to_close", NAN, NULL, "Close date", "not set");
    EXPECT("close_date_pushes", 0, NULL, "Close date pushed", "never");
    EXPECT("close_date_pushes", 1, NULL, "Close date pushed", "1 time");
    EXPECT("close_date_pushes", 3, NULL, "Close date pushed", "3 times");
}

Test(reasons, activity) {
    EXPECT("days_since_last_meeting", 12, NULL, "Last meeting", "12 days ago");
    EXPECT("days_since_last_meeting", 0.3, NULL, "Last meeting", "today");
    EXPECT("days_since_last_meeting", NAN, NULL, "Last meeting", "none yet");
    EXPECT("days_since_last_interaction", 1, NULL, "Last interaction", "1 day ago");
    EXPECT("n_email_14d", 3, NULL, "Emails, last 14 days", "3 emails");
    EXPECT("n_phone_30d", 1, NULL, "Calls, last 30 days", "1 call");
    EXPECT("n_meeting_all", 0, NULL, "Meetings, all time", "none");
    EXPECT("n_demo_14d", 2, NULL, "Demos, last 14 days", "2 demos");
    EXPECT("n_support_all", 4, NULL, "Support contacts, all time", "4 support contacts");
    EXPECT("meeting_minutes_30d", 90, NULL, "Meeting time, last 30 days", "90 minutes");
    EXPECT("meeting_minutes_30d", 0, NULL, "Meeting time, last 30 days", "none");
    EXPECT("velocity_14d", 2.5, NULL, "Activity, last 14 days", "up 150 % on the 14 days before");
    EXPECT("velocity_14d", 0.4, NULL, "Activity, last 14 days", "down 60 % on the 14 days before");
    EXPECT("velocity_14d", 1.0, NULL, "Activity, last 14 days", "as in the 14 days before");
}

Test(reasons, account_owner_and_firmographics) {
    double values[DS_FEATURE_COUNT];
    for (int i = 0; i < DS_FEATURE_COUNT; i++) values[i] = NAN;
    ds_reason_ctx_t c;
    ds_reason_ctx_init(&c);
    c.values = values;
    values[DS_F_ACCOUNT_CLOSED_DEALS] = 4;
    values[DS_F_OWNER_CLOSED_DEALS] = 0;
    EXPECT("account_win_rate", 0.62, &c, "Account's win rate", "62 % (4 closed before)");
    EXPECT("owner_win_rate", 0.4, &c, "Owner's win rate", "40 % (the org's; none closed before)");
    EXPECT("owner_win_rate", NAN, NULL, "Owner's win rate", "no history");
    EXPECT("account_win_rate", 0.5, NULL, "Account's win rate", "50 %");
    EXPECT("account_closed_deals", 4, &c, "Account's closed deals", "4 deals");
    EXPECT("owner_closed_deals", 1, NULL, "Owner's closed deals", "1 deal");
    EXPECT("owner_closed_deals", 0, NULL, "Owner's closed deals", "none");
    c.industry = "Software";
    c.region = "EMEA";
    c.size_band = "mid";
    c.product_category = "Analytics";
    c.persona = "CFO";
    EXPECT("industry_code", 123, &c, "Industry", "Software");
    EXPECT("region_code", 7, &c, "Region", "EMEA");
    EXPECT("size_band_code", 9, &c, "Company size", "mid");
    EXPECT("product_category_code", 1, &c, "Product", "Analytics");
    EXPECT("persona_code", 2, &c, "Buyer persona", "CFO");
    EXPECT("industry_code", NAN, NULL, "Industry", "not set");
}

Test(reasons, meddicc_and_transcripts) {
    EXPECT("meddicc_champion", 0, NULL, "Champion", "none identified yet");
    EXPECT("meddicc_champion", 1, NULL, "Champion", "identified");
    EXPECT("meddicc_metrics", 1, NULL, "Metrics", "identified");
    EXPECT("meddicc_economic_buyer", 0, NULL, "Economic buyer", "none identified yet");
    EXPECT("meddicc_decision_criteria", 0, NULL, "Decision criteria", "none identified yet");
    EXPECT("meddicc_decision_process", 1, NULL, "Decision process", "identified");
    EXPECT("meddicc_paper_process", 0, NULL, "Paper process", "none identified yet");
    EXPECT("meddicc_identify_pain", 1, NULL, "Pain", "identified");
    EXPECT("meddicc_competition", 1, NULL, "Competition", "identified");
    EXPECT("meddicc_coverage", 5, NULL, "MEDDICC coverage", "5 of 8 elements");
    EXPECT("n_transcripts", 3, NULL, "Call transcripts", "3 transcripts");
    EXPECT("n_transcripts", 0, NULL, "Call transcripts", "none");
    EXPECT("buyer_contacts", 0, NULL, "Buyer contacts engaged", "none known");
    EXPECT("buyer_contacts", 1, NULL, "Buyer contacts engaged", "only one so far");
    EXPECT("buyer_contacts", 3, NULL, "Buyer contacts engaged", "3 people");
}

Test(reasons, prior_and_unknown_names) {
    EXPECT("crm_stage_probability", 0.3, NULL, "CRM stage probability", "30 %");
    EXPECT("_bias", NAN, NULL, "Baseline", "every deal's starting point");
    EXPECT("favourite_colour", 2.5, NULL, "favourite_colour", "2.5");
    EXPECT("favourite_colour", NAN, NULL, "favourite_colour", "unknown");
}

Test(reasons, peers_and_replies) {
    ds_reason_ctx_t c;
    ds_reason_ctx_init(&c);
    EXPECT("segment_win_rate", 0.344, &c, "Win rate of similar deals",
           "34 % of deals of its industry and product");
    EXPECT("amount_vs_cohort", log(1.35), &c, "Amount against similar deals",
           "35 % above the usual amount of deals of its size and product");
    c.industry = "Software";
    c.size_band = "enterprise";
    c.product_category = "analytics";
    EXPECT("segment_win_rate", 0.344, &c, "Win rate of similar deals", "34 % of Software analytics deals");
    EXPECT("segment_win_rate", NAN, &c, "Win rate of similar deals", "no history");
    EXPECT("amount_vs_cohort", log(0.6), &c, "Amount against similar deals",
           "40 % below the usual amount of enterprise analytics deals");
    EXPECT("amount_vs_cohort", log(1.02), &c, "Amount against similar deals",
           "about the usual amount of enterprise analytics deals");
    EXPECT("amount_vs_cohort", log(2.5), &c, "Amount against similar deals",
           "2.5 times the usual amount of enterprise analytics deals");
    EXPECT("amount_vs_cohort", NAN, &c, "Amount against similar deals", "no similar deals closed yet");
    EXPECT("email_reply_rate", 0.6, NULL, "Email replies", "60 % of emails answered");
}

Test(reasons, engagement_of_earlier_deals) {
    EXPECT("account_reply_rate", 0.554, NULL, "Account's email replies",
           "55 % of emails answered on earlier deals");
    EXPECT("account_reply_rate", NAN, NULL, "Account's email replies", "no history");
    EXPECT("owner_reply_rate", 0.48, NULL, "Owner's email replies",
           "48 % of emails answered on earlier deals");
    EXPECT("owner_reply_rate", NAN, NULL, "Owner's email replies", "no history");
    EXPECT("owner_activity_rate", 0.8125, NULL, "Owner's activity",
           "0.8 interactions a working day on earlier deals");
    EXPECT("owner_activity_rate", NAN, NULL, "Owner's activity", "no history");
}

Test(reasons, every_engine_feature_has_a_label_and_a_display) {
    for (int i = 0; i < DS_FEATURE_COUNT; i++) {
        ds_reason(ds_feature_name(i), 1, NULL, &r);
        cr_expect(r.label[0] && r.display[0], "%s", ds_feature_name(i));
        cr_expect_str_neq(r.label, ds_feature_name(i), "%s has a label of its own", ds_feature_name(i));
    }
}
