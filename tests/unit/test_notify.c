/* The parts of dealscore-notify that do no I/O: the CloudEvent a prediction
 * makes, which changes make one, the backoff between tries and the outcome
 * classes of the metrics. */
#include <criterion/criterion.h>
#include <math.h>

#include "base/common.h"
#include "base/sb.h"
#include "notify/notify.h"

static Dealscore__V1__PredictionMade prediction(double proba, double prev) {
    Dealscore__V1__PredictionMade pm = DEALSCORE__V1__PREDICTION_MADE__INIT;
    pm.event_id = "e0000000-0000-4000-8000-000000000001";
    pm.org_id = "a0000000-0000-4000-8000-00000000000a";
    pm.opportunity_id = "a0000000-0000-4000-8000-000000000101";
    pm.as_of_us = 1796000000123456LL;
    pm.model_version = "stage-prior";
    pm.proba_close = proba;
    pm.has_previous = !isnan(prev);
    pm.previous_proba = prev;
    return pm;
}

Test(notify, an_event_without_previous_score_external_id_or_drivers_has_nulls_and_empty_lists) {
    Dealscore__V1__PredictionMade pm = prediction(0.1, NAN);
    notify_event_ctx_t ctx = {.id = "d0000000-0000-4000-8000-000000000001",
                              .source = "/dealscore",
                              .scored_at_us = 1796000001000000LL};
    ds_sb_t b = {0};
    notify_event_write(&b, &pm, &ctx);
    cr_assert_str_eq(b.p,
                     "{\"specversion\":\"1.0\",\"type\":\"com.dealscore.score.changed\",\"source\":"
                     "\"/dealscore\",\"id\":\"d0000000-0000-4000-8000-000000000001\",\"time\":"
                     "\"2026-11-30T00:53:21.000000Z\",\"subject\":\"a0000000-0000-4000-8000-000000000101\","
                     "\"datacontenttype\":\"application/json\",\"data\":{\"org_id\":"
                     "\"a0000000-0000-4000-8000-00000000000a\",\"opportunity_id\":"
                     "\"a0000000-0000-4000-8000-000000000101\",\"external_id\":null,\"probability\":0.1,"
                     "\"previous_probability\":null,\"model_version\":\"stage-prior\",\"as_of\":"
                     "\"2026-11-30T00:53:20.123456Z\",\"scored_at\":\"2026-11-30T00:53:21.000000Z\","
                     "\"prediction_event_id\":\"e0000000-0000-4000-8000-000000000001\",\"drivers\":"
                     "{\"positive\":[],\"negative\":[]},\"change\":null}}");
    ds_sb_free(&b);
}

Test(notify, drivers_keep_their_names_values_and_labels_and_strings_are_escaped) {
    Dealscore__V1__PredictionMade pm = prediction(1.0 / 3.0, 0.25);
    Dealscore__V1__Driver d1 = DEALSCORE__V1__DRIVER__INIT, d2 = DEALSCORE__V1__DRIVER__INIT;
    d1.name = "amount_log";
    d1.value = NAN;
    d1.contribution = 0.125;
    d2.name = "not_a \"feature\"";
    d2.value = -2.5;
    d2.contribution = -1e-9;
    Dealscore__V1__Driver *drivers[] = {&d1, &d2};
    pm.top_drivers = drivers;
    pm.n_top_drivers = 2;
    notify_event_ctx_t ctx = {.id = "x", .source = "s", .external_id = "006\n\"A\"", .scored_at_us = 0};
    ds_sb_t b = {0};
    notify_event_write(&b, &pm, &ctx);
    cr_assert(strstr(b.p, "\"external_id\":\"006\\u000a\\\"A\\\"\""), "%s", b.p);
    cr_assert(strstr(b.p, "\"probability\":0.3333333333333333,\"previous_probability\":0.25,"), "%s", b.p);
    cr_assert(strstr(b.p,
                     "\"drivers\":{\"positive\":[{\"feature\":\"amount_log\",\"label\":\"Deal amount (log)\","
                     "\"value\":null,\"contribution\":0.125}],\"negative\":[{\"feature\":"
                     "\"not_a \\\"feature\\\"\",\"label\":\"not_a \\\"feature\\\"\",\"value\":-2.5,"
                     "\"contribution\":-1e-09}]}"),
              "%s", b.p);
    ds_sb_free(&b);
}

Test(notify, the_change_since_the_previous_score_is_shaped_as_predictions_change) {
    Dealscore__V1__PredictionMade pm = prediction(0.5, 0.25);
    Dealscore__V1__PredictionChange change = DEALSCORE__V1__PREDICTION_CHANGE__INIT;
    Dealscore__V1__DriverChange moved = DEALSCORE__V1__DRIVER_CHANGE__INIT;
    moved.feature = "days_in_stage";
    moved.label = "Days in current stage";
    moved.previous = 0.125;
    moved.current = -0.375;
    moved.change = -0.5;
    Dealscore__V1__DriverChange *movedp[] = {&moved};
    change.has_previous = true;
    change.previous_proba = 0.25;
    change.delta = 0.25;
    change.drivers = movedp;
    change.n_drivers = 1;
    pm.change = &change;
    notify_event_ctx_t ctx = {.id = "x", .source = "s", .scored_at_us = 0};
    ds_sb_t b = {0};
    notify_event_write(&b, &pm, &ctx);
    cr_assert(strstr(b.p,
                     "\"negative\":[]},\"change\":{\"previous_proba\":0.25,\"delta\":0.25,\"drivers\":["
                     "{\"feature\":\"days_in_stage\",\"label\":\"Days in current stage\",\"previous\":0.125,"
                     "\"current\":-0.375,\"change\":-0.5}]}}}"),
              "%s", b.p);
    /* With its words, as predictions.change has them. */
    moved.label = "Time in stage";
    moved.display = "41 days";
    moved.value = 41;
    b.len = 0;
    notify_event_write(&b, &pm, &ctx);
    cr_assert(strstr(b.p, "\"drivers\":[{\"feature\":\"days_in_stage\",\"label\":\"Time in stage\","
                          "\"display\":\"41 days\",\"value\":41,\"previous\":0.125,\"current\":-0.375,"
                          "\"change\":-0.5}]}}}"),
              "%s", b.p);
    ds_sb_free(&b);
}

Test(notify, a_change_of_at_least_the_minimum_or_a_first_score_makes_an_event) {
    Dealscore__V1__PredictionMade pm = prediction(0.45, 0.40);
    cr_assert(notify_change_matters(&pm, 0.05), "0.45 - 0.40 rounds to 0.04999999999999999");
    cr_assert_not(notify_change_matters(&pm, 0.06));
    pm = prediction(0.30, 0.40);
    cr_assert(notify_change_matters(&pm, 0.1), "a drop counts as much as a rise");
    cr_assert_not(notify_change_matters(&pm, 0.11));
    pm = prediction(0.5, NAN);
    cr_assert(notify_change_matters(&pm, 1));
    pm = prediction(0.5, 0.5);
    cr_assert(notify_change_matters(&pm, 0), "a minimum of 0 takes every score");
}

Test(notify, the_backoff_doubles_up_to_its_cap_with_the_upper_half_random) {
    uint64_t seed = 42;
    int64_t lo[6] = {0}, hi[6] = {0};
    for (int a = 1; a <= 5; a++) {
        lo[a] = INT64_MAX;
        for (int k = 0; k < 2000; k++) {
            int64_t w = notify_backoff_ms(a, 1000, 5000, &seed);
            if (w < lo[a]) lo[a] = w;
            if (w > hi[a]) hi[a] = w;
        }
    }
    /* 1000, 2000, 4000, then the cap of 5000; each from half to all of it. */
    int64_t want[6] = {0, 1000, 2000, 4000, 5000, 5000};
    for (int a = 1; a <= 5; a++) {
        cr_assert_geq(lo[a], want[a] / 2, "try %d: %lld", a, (long long)lo[a]);
        cr_assert_leq(hi[a], want[a], "try %d: %lld", a, (long long)hi[a]);
        cr_assert_lt(lo[a], want[a] / 2 + want[a] / 20, "try %d: no jitter near the bottom", a);
        cr_assert_gt(hi[a], want[a] - want[a] / 20, "try %d: no jitter near the top", a);
    }
    cr_assert_eq(notify_backoff_ms(1000, 1000, 900000, &seed) <= 900000, 1, "no overflow after many tries");
}

Test(notify, outcomes_are_classed_by_status_timeout_or_error) {
    cr_assert_str_eq(notify_outcome_class(0, 204), "2xx");
    cr_assert_str_eq(notify_outcome_class(0, 301), "3xx");
    cr_assert_str_eq(notify_outcome_class(0, 410), "4xx");
    cr_assert_str_eq(notify_outcome_class(0, 503), "5xx");
    cr_assert_str_eq(notify_outcome_class(DS_ETIMEDOUT, 0), "timeout");
    cr_assert_str_eq(notify_outcome_class(DS_EIO, 0), "error");
    cr_assert_str_eq(notify_outcome_class(0, 999), "error");
}
