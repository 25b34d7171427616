/* Evaluation metrics against values computed by hand on small arrays. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "domain/eval.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define NEAR(x, y)                                                                                           \
    cr_assert(fabs((x) - (y)) < 1e-12, "%s = %.17g, expected %.17g", #x, (double)(x), (double)(y))

Test(metrics_eval, roc_auc_hand_computed) {
    double s[] = {0.1, 0.4, 0.35, 0.8}, y[] = {0, 0, 1, 1};
    NEAR(ds_eval_roc_auc(s, y, NULL, 4), 0.75);
    /* Perfect and reversed rankings. */
    double s2[] = {0.1, 0.2, 0.3, 0.4}, y2[] = {0, 0, 1, 1}, y3[] = {1, 1, 0, 0};
    NEAR(ds_eval_roc_auc(s2, y2, NULL, 4), 1.0);
    NEAR(ds_eval_roc_auc(s2, y3, NULL, 4), 0.0);
    /* Margins work as well as probabilities: only the order counts. */
    double m[] = {-3, 2, 1, 7};
    NEAR(ds_eval_roc_auc(m, y, NULL, 4), 0.75);
}

Test(metrics_eval, roc_auc_ties_count_half) {
    /* Positive 0.5 vs negative 0.2: 1; vs negative 0.5: 1/2; positive 0.9
     * beats both: 2. (1 + 0.5 + 2) / 4. */
    double s[] = {0.2, 0.5, 0.5, 0.9}, y[] = {0, 1, 0, 1};
    NEAR(ds_eval_roc_auc(s, y, NULL, 4), 0.875);
    /* Every score equal: 0.5. */
    double c[] = {0.3, 0.3, 0.3, 0.3, 0.3};
    double yc[] = {1, 0, 1, 0, 0};
    NEAR(ds_eval_roc_auc(c, yc, NULL, 5), 0.5);
}

Test(metrics_eval, roc_auc_weights_equal_duplicated_rows) {
    double s[] = {0.1, 0.4, 0.35, 0.8}, y[] = {0, 0, 1, 1}, w[] = {1, 2, 1, 1};
    /* Pairs: 0.35 beats 0.1 (1 x 1), loses to 0.4 (weight 2); 0.8 beats
     * both (1 x 3). 4 / (2 x 3). */
    NEAR(ds_eval_roc_auc(s, y, w, 4), 4.0 / 6.0);
    double sd[] = {0.1, 0.4, 0.4, 0.35, 0.8}, yd[] = {0, 0, 0, 1, 1};
    NEAR(ds_eval_roc_auc(sd, yd, NULL, 5), 4.0 / 6.0);
    /* A zero weight removes the row. */
    double w0[] = {1, 0, 1, 1};
    NEAR(ds_eval_roc_auc(s, y, w0, 4), 1.0);
}

Test(metrics_eval, roc_auc_undefined_is_nan) {
    double s[] = {0.1, 0.4}, one[] = {1, 1}, bad[] = {0, 2};
    cr_assert(isnan(ds_eval_roc_auc(s, one, NULL, 2)));
    cr_assert(isnan(ds_eval_roc_auc(s, bad, NULL, 2)));
    cr_assert(isnan(ds_eval_roc_auc(s, one, NULL, 0)));
    double sn[] = {NAN, 0.2}, y[] = {0, 1};
    cr_assert(isnan(ds_eval_roc_auc(sn, y, NULL, 2)));
}

Test(metrics_eval, average_precision_hand_computed) {
    /* Thresholds 0.8: P 1, R 1/2; 0.4: R stays; 0.35: P 2/3, R 1. */
    double s[] = {0.1, 0.4, 0.35, 0.8}, y[] = {0, 0, 1, 1};
    NEAR(ds_eval_average_precision(s, y, NULL, 4), 0.5 * 1.0 + 0.5 * 2.0 / 3.0);
    /* A tie is one threshold: 0.8 holds a positive and a negative (P 1/2,
     * R 1/2), 0.3 the other positive (P 2/3, R 1). */
    double s2[] = {0.8, 0.8, 0.3}, y2[] = {1, 0, 1};
    NEAR(ds_eval_average_precision(s2, y2, NULL, 3), 0.5 * 0.5 + 0.5 * 2.0 / 3.0);
    /* Weighted: the negative at 0.8 weighs 3: P at 0.8 is 1/4. */
    double w2[] = {1, 3, 1};
    NEAR(ds_eval_average_precision(s2, y2, w2, 3), 0.5 * 0.25 + 0.5 * 2.0 / 5.0);
    double none[] = {0, 0, 0};
    cr_assert(isnan(ds_eval_average_precision(s2, none, NULL, 3)));
}

Test(metrics_eval, log_loss_and_brier_hand_computed) {
    double p[] = {0.9, 0.2, 0.6}, y[] = {1, 0, 0};
    NEAR(ds_eval_log_loss(p, y, NULL, 3), -(log(0.9) + log(0.8) + log(0.4)) / 3);
    NEAR(ds_eval_brier(p, y, NULL, 3), (0.01 + 0.04 + 0.36) / 3);
    double w[] = {2, 1, 1};
    NEAR(ds_eval_log_loss(p, y, w, 3), -(2 * log(0.9) + log(0.8) + log(0.4)) / 4);
    NEAR(ds_eval_brier(p, y, w, 3), (0.02 + 0.04 + 0.36) / 4);
}

Test(metrics_eval, log_loss_is_clipped) {
    double p[] = {1.0, 0.0}, y[] = {0, 1};
    double ll = ds_eval_log_loss(p, y, NULL, 2);
    cr_assert(isfinite(ll));
    /* p = 1 for a loss costs -ln(1 - (1 - eps)): eps up to double rounding. */
    double want = (-log(DS_EVAL_LOG_LOSS_EPS) - log1p(-(1.0 - DS_EVAL_LOG_LOSS_EPS))) / 2;
    cr_assert(fabs(ll - want) < 1e-9, "log loss %.17g, want %.17g", ll, want);
    cr_assert(fabs(ll - 34.5) < 0.2);
    double good[] = {1.0, 0.0}, yg[] = {1, 0};
    cr_assert(ds_eval_log_loss(good, yg, NULL, 2) < 1e-14);
    double out_of_range[] = {1.2, 0.5};
    cr_assert(isnan(ds_eval_log_loss(out_of_range, yg, NULL, 2)));
}

Test(metrics_eval, ece_hand_computed) {
    /* Bin 0: {0.05} predicted 0.05, observed 0 -> 0.05 x 1.
     * Bin 1: {0.15, 0.15} predicted 0.15, observed 0.5 -> 0.35 x 2.
     * Bin 9: {0.95, 1.0} predicted 0.975, observed 1 -> 0.025 x 2. */
    double p[] = {0.05, 0.15, 0.15, 0.95, 1.0}, y[] = {0, 1, 0, 1, 1};
    NEAR(ds_eval_ece(p, y, NULL, 5), (0.05 + 0.7 + 0.05) / 5);
    /* Perfectly calibrated in every bin. */
    double q[] = {0.5, 0.5, 0.25, 0.25, 0.25, 0.25}, yq[] = {1, 0, 1, 0, 0, 0};
    NEAR(ds_eval_ece(q, yq, NULL, 6), 0.0);
    /* Weights weigh bins: bin 1 weighs 4 of 6. */
    double w[] = {1, 2, 2, 0.5, 0.5};
    NEAR(ds_eval_ece(p, y, w, 5), (1 * 0.05 + 4 * 0.35 + 1 * 0.025) / 6);
}

Test(metrics_eval, reliability_bins) {
    double p[] = {0.05, 0.15, 0.15, 0.95, 1.0, 0.1}, y[] = {0, 1, 0, 1, 1, 0};
    ds_eval_bin_t b[10];
    cr_assert_eq(ds_eval_reliability(p, y, NULL, 6, 10, b), 0);
    NEAR(b[0].lo, 0.0);
    NEAR(b[0].hi, 0.1);
    cr_assert_eq(b[0].count, 1);
    NEAR(b[0].mean_predicted, 0.05);
    NEAR(b[0].observed_rate, 0.0);
    /* 0.1 opens bin 1. */
    cr_assert_eq(b[1].count, 3);
    NEAR(b[1].mean_predicted, (0.15 + 0.15 + 0.1) / 3);
    NEAR(b[1].observed_rate, 1.0 / 3);
    cr_assert_eq(b[5].count, 0);
    cr_assert(isnan(b[5].mean_predicted) && isnan(b[5].observed_rate));
    cr_assert_eq(b[9].count, 2); /* 1.0 lands in the last bin */
    NEAR(b[9].mean_predicted, 0.975);
    NEAR(b[9].observed_rate, 1.0);
    /* Two bins. */
    ds_eval_bin_t h[2];
    cr_assert_eq(ds_eval_reliability(p, y, NULL, 6, 2, h), 0);
    cr_assert_eq(h[0].count, 4);
    cr_assert_eq(h[1].count, 2);
    cr_assert_eq(ds_eval_reliability(p, y, NULL, 6, 0, h), DS_EINVAL);
}

Test(metrics_eval, roc_curve_points) {
    double s[] = {0.1, 0.4, 0.35, 0.8}, y[] = {0, 0, 1, 1};
    ds_roc_point_t pts[8];
    size_t n = 0;
    cr_assert_eq(ds_eval_roc_curve(s, y, NULL, 4, 8, pts, &n), 0);
    cr_assert_eq(n, 5);
    double want[5][3] = {{0, 0, INFINITY}, {0, 0.5, 0.8}, {0.5, 0.5, 0.4}, {0.5, 1, 0.35}, {1, 1, 0.1}};
    for (size_t i = 0; i < 5; i++) {
        NEAR(pts[i].fpr, want[i][0]);
        NEAR(pts[i].tpr, want[i][1]);
        cr_assert(pts[i].threshold == want[i][2]);
    }
    /* The trapezoids under the points give the AUC back. */
    double auc = 0;
    for (size_t i = 1; i < n; i++) auc += (pts[i].fpr - pts[i - 1].fpr) * (pts[i].tpr + pts[i - 1].tpr) / 2;
    NEAR(auc, 0.75);
    double one[] = {1, 1, 1, 1};
    cr_assert_eq(ds_eval_roc_curve(s, one, NULL, 4, 8, pts, &n), DS_EINVAL);
}

Test(metrics_eval, roc_curve_is_downsampled) {
    size_t n = 20000;
    double *s = malloc(n * sizeof *s), *y = malloc(n * sizeof *y);
    uint64_t x = 42;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0;
        y[i] = (i % 3 == 0);
        s[i] = u + 0.3 * y[i];
    }
    ds_roc_point_t pts[DS_EVAL_ROC_MAX_POINTS];
    size_t k = 0;
    cr_assert_eq(ds_eval_roc_curve(s, y, NULL, n, DS_EVAL_ROC_MAX_POINTS, pts, &k), 0);
    cr_assert(k <= DS_EVAL_ROC_MAX_POINTS && k > DS_EVAL_ROC_MAX_POINTS / 2, "k %zu", k);
    cr_assert(pts[0].fpr == 0 && pts[0].tpr == 0);
    cr_assert(pts[k - 1].fpr == 1 && pts[k - 1].tpr == 1);
    double auc = 0;
    for (size_t i = 1; i < k; i++) {
        cr_assert(pts[i].fpr >= pts[i - 1].fpr && pts[i].tpr >= pts[i - 1].tpr);
        cr_assert(pts[i].threshold < pts[i - 1].threshold);
        auc += (pts[i].fpr - pts[i - 1].fpr) * (pts[i].tpr + pts[i - 1].tpr) / 2;
    }
    /* A 200-point curve is close to the exact AUC. */
    double exact = ds_eval_roc_auc(s, y, NULL, n);
    cr_assert(fabs(auc - exact) < 0.01, "downsampled %g vs exact %g", auc, exact);
    free(s);
    free(y);
}

Test(metrics_eval, metrics_struct_and_errors) {
    double p[] = {0.1, 0.4, 0.35, 0.8}, y[] = {0, 0, 1, 1};
    ds_eval_metrics_t m;
    char err[128] = "";
    cr_assert_eq(ds_eval_metrics(p, y, NULL, 4, &m, err, sizeof err), 0);
    cr_assert_eq(m.n, 4);
    NEAR(m.weight, 4);
    NEAR(m.positive_rate, 0.5);
    NEAR(m.roc_auc, 0.75);
    NEAR(m.pr_auc, 0.5 + 0.5 * 2.0 / 3.0);
    NEAR(m.brier, (0.01 + 0.16 + 0.4225 + 0.04) / 4);
    NEAR(m.log_loss, -(log(0.9) + log(0.6) + log(0.35) + log(0.8)) / 4);
    cr_assert(isfinite(m.ece));

    double bad[] = {0, 0, 0.5, 1};
    cr_assert_eq(ds_eval_metrics(p, bad, NULL, 4, &m, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "row 2") && strstr(err, "label"), "%s", err);
    cr_assert(isnan(m.roc_auc) && m.n == 0);
    double pbad[] = {0.1, 1.5, 0.3, 0.2};
    cr_assert_eq(ds_eval_metrics(pbad, y, NULL, 4, &m, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "row 1"), "%s", err);
    double wbad[] = {1, 1, -1, 1};
    cr_assert_eq(ds_eval_metrics(p, y, wbad, 4, &m, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "weight"), "%s", err);

    /* One class only: AUC and AP undefined, the rest defined. */
    double won[] = {1, 1, 1, 1};
    cr_assert_eq(ds_eval_metrics(p, won, NULL, 4, &m, err, sizeof err), 0);
    cr_assert(isnan(m.roc_auc));
    NEAR(m.pr_auc, 1.0); /* every threshold is all positives */
    cr_assert(isfinite(m.log_loss) && isfinite(m.brier));
    cr_assert_eq(ds_eval_metrics(NULL, NULL, NULL, 0, &m, err, sizeof err), 0);
    cr_assert(m.n == 0 && isnan(m.log_loss));
}

Test(metrics_eval, json_uses_null_for_nan) {
    ds_eval_metrics_t m;
    ds_eval_metrics_clear(&m);
    m.n = 3;
    m.roc_auc = 0.75;
    json_t *j = ds_eval_metrics_json(&m);
    cr_assert_eq(json_integer_value(json_object_get(j, "n")), 3);
    cr_assert(json_real_value(json_object_get(j, "roc_auc")) == 0.75);
    cr_assert(json_is_null(json_object_get(j, "log_loss")));
    char *s = json_dumps(j, JSON_COMPACT);
    cr_assert_str_eq(s, "{\"n\":3,\"weight\":null,\"positive_rate\":null,\"roc_auc\":0.75,"
                        "\"pr_auc\":null,\"log_loss\":null,\"brier\":null,\"ece\":null}");
    free(s);
    json_decref(j);

    ds_roc_point_t pts[] = {{0, 0, INFINITY}, {1, 1, 0.1}};
    j = ds_eval_roc_json(pts, 2);
    cr_assert(json_is_null(json_object_get(json_array_get(j, 0), "threshold")));
    json_decref(j);
}
