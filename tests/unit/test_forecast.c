/* Forecast bands: the exact Poisson-binomial over amounts on hand-computed
 * cases and against enumeration, the normal approximation, coverage. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/common.h"
#include "domain/forecast.h"
#include "domain/report.h"

/* p = 0.5, 0.2, 0.9 on 100, 200, 300: S is 0 (0.04), 100 (0.04), 200
 * (0.01), 300 (0.01 + 0.36), 400 (0.36), 500 (0.09), 600 (0.09); the CDF
 * passes 0.1 at 300 (0.46) and 0.9 at 500 (0.91). */
static const double P3[] = {0.5, 0.2, 0.9}, A3[] = {100, 200, 300};

Test(forecast, three_deals_exact) {
    ds_forecast_t f;
    cr_assert_eq(ds_forecast_exact(P3, A3, 3, 1, 0, &f), 0);
    cr_assert_eq(f.n, 3);
    cr_assert_float_eq(f.amount, 600, 1e-9);
    cr_assert_float_eq(f.expected, 360, 1e-9);
    cr_assert_eq(f.p10, 300);
    cr_assert_eq(f.p90, 500);
    /* Buckets of 100 give the same band. */
    cr_assert_eq(ds_forecast_exact(P3, A3, 3, 100, 0, &f), 0);
    cr_assert_eq(f.p10, 300);
    cr_assert_eq(f.p90, 500);
}

Test(forecast, three_deals_normal) {
    ds_forecast_t f;
    ds_forecast_normal(P3, A3, 3, 0, &f);
    /* var = .25 * 100^2 + .16 * 200^2 + .09 * 300^2 = 17000. */
    double sd = sqrt(17000.0);
    cr_assert_float_eq(f.expected, 360, 1e-9);
    cr_assert_float_eq(f.p10, 360 - DS_FORECAST_Z90 * sd, 1e-9);
    cr_assert_float_eq(f.p90, 360 + DS_FORECAST_Z90 * sd, 1e-9);
    cr_assert_float_eq(f.p10, 192.906119, 1e-6);
}

Test(forecast, normal_band_is_clipped_to_what_can_be_won) {
    const double p[] = {0.05}, a[] = {1000};
    ds_forecast_t f;
    ds_forecast_normal(p, a, 1, 0, &f);
    cr_assert_eq(f.p10, 0);
    double up = 50 + DS_FORECAST_Z90 * sqrt(0.05 * 0.95) * 1000;
    cr_assert_float_eq(f.p90, up, 1e-9);
    const double p2[] = {0.99}, a2[] = {1000};
    ds_forecast_normal(p2, a2, 1, 0, &f);
    cr_assert_eq(f.p90, 1000);
}

/* Ten deals: the exact band equals the quantiles of all 1024 outcomes. */
Test(forecast, exact_matches_enumeration) {
    enum { N = 10 };
    double p[N], a[N];
    unsigned s = 7;
    for (int i = 0; i < N; i++) {
        s = s * 1103515245u + 12345u;
        p[i] = (double)(s >> 16 & 0x3ff) / 1024.0;
        s = s * 1103515245u + 12345u;
        a[i] = (double)(1 + (s >> 16) % 50) * 1000;
    }
    double sums[1 << N], probs[1 << N];
    for (int m = 0; m < (1 << N); m++) {
        sums[m] = 0;
        probs[m] = 1;
        for (int i = 0; i < N; i++) {
            bool won = m >> i & 1;
            sums[m] += won ? a[i] : 0;
            probs[m] *= won ? p[i] : 1 - p[i];
        }
    }
    double q[2] = {0.1, 0.9}, want[2];
    for (int k = 0; k < 2; k++) {
        double best = INFINITY;
        for (int m = 0; m < (1 << N); m++) {
            double cdf = 0;
            for (int j = 0; j < (1 << N); j++)
                if (sums[j] <= sums[m]) cdf += probs[j];
            if (cdf >= q[k] - 1e-12 && sums[m] < best) best = sums[m];
        }
        want[k] = best;
    }
    ds_forecast_t f;
    cr_assert_eq(ds_forecast_exact(p, a, N, 1000, 0, &f), 0);
    cr_assert_eq(f.p10, want[0], "p10 %g, enumeration %g", f.p10, want[0]);
    cr_assert_eq(f.p90, want[1], "p90 %g, enumeration %g", f.p90, want[1]);
}

Test(forecast, rejects_bad_buckets) {
    ds_forecast_t f;
    cr_assert_eq(ds_forecast_exact(P3, A3, 3, 0, 0, &f), DS_EINVAL);
    const double big[] = {1e12};
    cr_assert_eq(ds_forecast_exact(P3, big, 1, 1, 0, &f), DS_EINVAL);
}

/* Six past forecast deals of 100 with p 1, 1.5 (counts as 1), 1, 1, 1
 * and a NaN p (0) on 300: expected 500 (5 deals of mean size 100); two
 * won 200 within their close month. The org's rate is (200 + 5 * 100 * 1)
 * / (500 + 5 * 100) = 0.7. A stage with two deals of 200 at p 0.5 (one
 * deal of 200 expected), one won: (200 + 5 * 200 * 0.7) / (200 + 5 * 200)
 * = 0.75. */
Test(forecast, in_month_rate_shrinks_toward_the_orgs) {
    const double p[] = {1, 1.5, 1, 1, 1, NAN}, a[] = {100, 100, 100, 100, 100, 300};
    const bool won[] = {true, false, true, false, false, false};
    ds_forecast_tally_t org = {0}, stage = {0};
    for (size_t i = 0; i < 6; i++) ds_forecast_tally_add(&org, p[i], a[i], won[i]);
    cr_assert_float_eq(org.deals, 5, 1e-12);
    cr_assert_float_eq(org.expected, 500, 1e-12);
    cr_assert_float_eq(org.won, 200, 1e-12);
    double org_rate = ds_forecast_rate(&org, 1);
    cr_assert_float_eq(org_rate, 0.7, 1e-12);
    ds_forecast_tally_add(&stage, 0.5, 200, true);
    ds_forecast_tally_add(&stage, 0.5, 200, false);
    cr_assert_float_eq(ds_forecast_rate(&stage, org_rate), 0.75, 1e-12);
    /* No history: the rate is the prior, and q = p. */
    ds_forecast_tally_t none = {0};
    cr_assert_float_eq(ds_forecast_rate(&none, 1), 1, 1e-12);
    cr_assert_float_eq(ds_forecast_in_month(0.6, 0.5), 0.3, 1e-12);
    cr_assert_float_eq(ds_forecast_in_month(0.9, 1.5), 1, 1e-12);
    cr_assert_float_eq(ds_forecast_in_month(NAN, 0.5), 0, 1e-12);
}

/* Two past months: expected 100 and 200 with Poisson-binomial variances
 * 100 and 400, actuals 110 and 170: ((10^2 - 100) + (30^2 - 400)) /
 * (100^2 + 200^2) = 500 / 50000 = 0.01. */
Test(forecast, month_level_variance_by_moments) {
    const double e[] = {100, 200}, v[] = {100, 400}, won[] = {110, 170};
    cr_assert_float_eq(ds_forecast_shock_var(e, v, won, 2), 0.01, 1e-12);
    const double close[] = {100, 200};
    cr_assert_eq(ds_forecast_shock_var(e, v, close, 2), 0, "less spread than the Poisson-binomial: 0");
    const double far[] = {1000, 2000};
    cr_assert_float_eq(ds_forecast_shock_var(e, v, far, 2), DS_FORECAST_SHOCK_MAX, 1e-12);
    cr_assert_eq(ds_forecast_shock_var(e, v, won, 0), 0);
}

/* Three deals of 100 at q 0.18. Alone: S = 0 (0.551368), 100 (0.363096),
 * so P(S <= 100) = 0.914464 and P90 = 100. With a month-level variance
 * of 1/3, theta is 0 (1/6), 1 (2/3) or 2 (1/6, q 0.36: P(S <= 100) =
 * 0.262144 + 0.442368): P(S <= 100) = 1/6 + 2/3 0.914464 + 1/6 0.704512
 * = 0.893728, so P90 = 200; P(S = 0) = 0.577936 keeps P10 at 0. */
Test(forecast, a_shared_error_widens_the_exact_band) {
    const double q[] = {0.18, 0.18, 0.18}, a[] = {100, 100, 100};
    ds_forecast_t f;
    cr_assert_eq(ds_forecast_exact(q, a, 3, 1, 0, &f), 0);
    cr_assert_eq(f.p10, 0);
    cr_assert_eq(f.p90, 100);
    cr_assert_eq(ds_forecast_exact(q, a, 3, 1, 1.0 / 3, &f), 0);
    cr_assert_float_eq(f.expected, 54, 1e-9);
    cr_assert_eq(f.p10, 0);
    cr_assert_eq(f.p90, 200);
    cr_assert_eq(ds_forecast_exact(q, a, 3, 1, 5, &f), 0);
    cr_assert_eq(f.p90, 200, "clipped to 1/3");
}

/* P3 with a month-level variance of 0.01: sd^2 = (0.5 - 0.25 x 1.01) 100^2
 * + (0.2 - 0.04 x 1.01) 200^2 + (0.9 - 0.81 x 1.01) 300^2 + 0.01 x 360^2
 * = 2475 + 6384 + 7371 + 1296 = 17526. */
Test(forecast, a_shared_error_widens_the_normal_band) {
    ds_forecast_t f;
    ds_forecast_normal(P3, A3, 3, 0.01, &f);
    cr_assert_float_eq(f.var, 17000, 1e-9);
    cr_assert_float_eq(f.p10, 360 - DS_FORECAST_Z90 * sqrt(17526.0), 1e-9);
    cr_assert_float_eq(f.p90, 360 + DS_FORECAST_Z90 * sqrt(17526.0), 1e-9);
}

/* P3's deals at an in-month rate of 0.5: q = 0.25, 0.1, 0.45 on 100, 200,
 * 300. S is 0 (0.37125), 100 (0.12375), 200 (0.04125), 300 (0.01375 +
 * 0.30375), 400 (0.10125), 500 (0.03375), 600 (0.01125); the CDF passes
 * 0.1 at 0 and 0.9 at 400 (0.955); expected 25 + 20 + 135 = 180. */
Test(forecast, a_month_whose_deals_slip) {
    double q[3];
    for (size_t i = 0; i < 3; i++) q[i] = ds_forecast_in_month(P3[i], 0.5);
    ds_forecast_t f;
    cr_assert_eq(ds_forecast_exact(q, A3, 3, 1, 0, &f), 0);
    cr_assert_float_eq(f.expected, 180, 1e-9);
    cr_assert_eq(f.p10, 0);
    cr_assert_eq(f.p90, 400);
}

/* A quarter of three deals over two months, each month's theta on its
 * 3-point law with variance 1/3 (0, 1, 2 with weights 1/6, 2/3, 1/6).
 * The first month has q 1/4 on 100: 0 (3/4), 100 (1/4). The second has
 * q 1/2 on 100 twice: 0 (1/6 + 2/3 x 1/4 = 1/3), 100 (2/3 x 1/2 = 1/3),
 * 200 (2/3 x 1/4 + 1/6 = 1/3). Independent months: 0 (1/4), 100 (1/3),
 * 200 (1/3), 300 (1/12); the CDF passes 0.1 at 0 and 0.9 at 200 (11/12).
 * One theta shared by the quarter: P(S <= 200) = 1/6 + 2/3 x 15/16 + 1/6
 * x 1/2 = 7/8, so P90 = 300. */
static const double QQ[] = {0.25, 0.5, 0.5}, QA[] = {100, 100, 100};
static const size_t QG[] = {0, 1, 1};

Test(forecast, a_quarters_months_have_thetas_of_their_own) {
    const double shock[] = {1.0 / 3, 1.0 / 3};
    ds_forecast_t f;
    cr_assert_eq(ds_forecast_exact_groups(QQ, QA, QG, 3, shock, 2, 1, &f), 0);
    cr_assert_float_eq(f.expected, 125, 1e-9);
    cr_assert_eq(f.p10, 0);
    cr_assert_eq(f.p90, 200);
    cr_assert_eq(ds_forecast_exact_groups(QQ, QA, QG, 3, shock, 2, 100, &f), 0);
    cr_assert_eq(f.p90, 200, "buckets of 100");
    cr_assert_eq(ds_forecast_exact(QQ, QA, 3, 1, 1.0 / 3, &f), 0);
    cr_assert_eq(f.p90, 300, "one theta shared by the quarter");
    /* Without a month-level variance the groups change nothing: the plain
     * Poisson-binomial, 0 (3/16), 100 (7/16), 200 (5/16), 300 (1/16). */
    const double none[] = {0, 0};
    cr_assert_eq(ds_forecast_exact_groups(QQ, QA, QG, 3, none, 2, 1, &f), 0);
    cr_assert_eq(f.p10, 0);
    cr_assert_eq(f.p90, 200);
    const size_t bad[] = {0, 2, 1};
    cr_assert_eq(ds_forecast_exact_groups(QQ, QA, bad, 3, shock, 2, 1, &f), DS_EINVAL);
}

/* The same quarter's normal band: each month's variance sum (q - q^2 (1 +
 * s)) a^2 + s mean^2 with s = 1/3: (1/4 - 1/12) 100^2 + 25^2 / 3 = 1875,
 * 2 (1/2 - 1/3) 100^2 + 100^2 / 3 = 20000 / 3; the quarter's 25625 / 3.
 * One shared theta: 5000 + 125^2 / 3 = 30625 / 3. */
Test(forecast, a_quarters_normal_band_sums_its_months) {
    const double shock[] = {1.0 / 3, 1.0 / 3};
    ds_forecast_t f;
    ds_forecast_normal_groups(QQ, QA, QG, 3, shock, 2, &f);
    cr_assert_float_eq(f.expected, 125, 1e-9);
    cr_assert_float_eq(f.p10, 125 - DS_FORECAST_Z90 * sqrt(25625.0 / 3), 1e-9);
    cr_assert_float_eq(f.p90, 125 + DS_FORECAST_Z90 * sqrt(25625.0 / 3), 1e-9);
    cr_assert_float_eq(f.p90, 243.443, 1e-3);
    ds_forecast_normal(QQ, QA, 3, 1.0 / 3, &f);
    cr_assert_float_eq(f.p90, 125 + DS_FORECAST_Z90 * sqrt(30625.0 / 3), 1e-9);
}

/* Ten deals of 40 at p 0.5 in buckets of 100: each won deal adds a bucket
 * with weight 0.4, none with 0.6, so S / 100 is Binomial(10, 0.2): P(0) =
 * 0.107 >= 0.1, P(S <= 300) = 0.879, P(S <= 400) = 0.967; the mean stays
 * 200 where rounding each deal to the nearest bucket made S = 0. Buckets
 * of 1: 40 x Binomial(10, 0.5), P(<= 2 wins) = 0.055, P(<= 3) = 0.172,
 * P(<= 6) = 0.828, P(<= 7) = 0.945. */
Test(forecast, small_deals_keep_their_weight_in_coarse_buckets) {
    double p[10], a[10];
    for (int i = 0; i < 10; i++) p[i] = 0.5, a[i] = 40;
    ds_forecast_t f;
    cr_assert_eq(ds_forecast_exact(p, a, 10, 100, 0, &f), 0);
    cr_assert_float_eq(f.expected, 200, 1e-9);
    cr_assert_eq(f.p10, 0);
    cr_assert_eq(f.p90, 400);
    cr_assert_eq(ds_forecast_exact(p, a, 10, 1, 0, &f), 0);
    cr_assert_eq(f.p10, 120);
    cr_assert_eq(f.p90, 280);
}

/* Backtest rows sorted by horizon: each horizon's slice and its figures. */
Test(forecast, judges_each_horizon) {
    ds_forecast_month_t m[4] = {
        {.horizon = 0, .inside = true, .exact = {.expected = 100}, .actual = 90},
        {.horizon = 0, .inside = false, .exact = {.expected = 300}, .actual = 10},
        {.horizon = 2, .inside = true, .exact = {.expected = 50}, .actual = 40},
        {.horizon = DS_FORECAST_QUARTER, .inside = true, .exact = {.expected = 500}, .actual = 600},
    };
    const ds_forecast_month_t *first;
    cr_assert_eq(ds_forecast_horizon(m, 4, 0, &first), 2);
    cr_assert_eq(first, &m[0]);
    ds_forecast_judged_t j;
    ds_forecast_judge(first, 2, &j);
    cr_assert_eq(j.periods, 2);
    cr_assert_eq(j.inside, 1);
    cr_assert_float_eq(j.expected, 200, 1e-12);
    cr_assert_float_eq(j.actual, 50, 1e-12);
    cr_assert_eq(ds_forecast_horizon(m, 4, 1, &first), 0);
    cr_assert_null(first);
    ds_forecast_judge(first, 0, &j);
    cr_assert_eq(j.periods, 0);
    cr_assert(isnan(j.expected));
    cr_assert_eq(ds_forecast_horizon(m, 4, DS_FORECAST_QUARTER, &first), 1);
    cr_assert_eq(first, &m[3]);
    cr_assert_str_eq(ds_forecast_horizon_name(1), "1 month ahead");
    cr_assert_str_eq(ds_forecast_horizon_name(3), "3 months ahead");
    cr_assert_str_eq(ds_forecast_horizon_name(DS_FORECAST_QUARTER), "quarter");
    cr_assert_str_eq(ds_forecast_horizon_name(7), "");
}

Test(forecast, coverage_counts_months_inside) {
    ds_forecast_month_t m[4] = {{.inside = true}, {.inside = false}, {.inside = true}, {.inside = true}};
    cr_assert_float_eq(ds_forecast_coverage(m, 4), 0.75, 1e-12);
    cr_assert(isnan(ds_forecast_coverage(m, 0)));
}

/* The model report's backtest section: chart, table, coverage, JSON. */
Test(forecast, report_carries_the_backtest) {
    ds_forecast_month_t m[3] = {0};
    snprintf(m[0].month, sizeof m[0].month, "2026-01");
    snprintf(m[1].month, sizeof m[1].month, "2026-02");
    ds_forecast_exact(P3, A3, 3, 1, 0, &m[0].exact);
    ds_forecast_normal(P3, A3, 3, 0, &m[0].normal);
    m[1] = (ds_forecast_month_t){.exact = m[0].exact, .normal = m[0].normal};
    snprintf(m[1].month, sizeof m[1].month, "2026-02");
    m[0].actual = 400;
    m[0].inside = true;
    m[1].actual = 100;
    m[2] = (ds_forecast_month_t){
        .horizon = DS_FORECAST_QUARTER, .exact = m[0].exact, .actual = 400, .inside = true};
    snprintf(m[2].month, sizeof m[2].month, "2026-Q1");
    ds_report_t r = {.backtest = m, .n_backtest = 3};
    char *html = ds_report_html(&r);
    cr_assert_not_null(strstr(html, "<tr><th>0 months ahead</th><td>2</td><td>1 (50 %)</td><td>360</td>"
                                    "<td>250</td></tr>"),
                       "%s", html);
    cr_assert_not_null(strstr(html, "<tr><th>quarter</th><td>1</td><td>1 (100 %)</td><td>360</td>"
                                    "<td>400</td></tr>"));
    cr_assert_null(strstr(html, "2026-Q1"), "the chart and the month table show 0 months ahead");
    cr_assert_not_null(strstr(html, "they won in 1 of 2 months (50 %)"), "%s", html);
    cr_assert_not_null(strstr(html, "aria-label=\"Forecast backtest\""));
    cr_assert_not_null(strstr(html,
                              "<tr><th>2026-02</th><td>3</td><td>600</td><td>360</td><td>300</td><td>500</td>"
                              "<td>100</td><td>no</td></tr>"));
    free(html);
    json_t *j = ds_report_json(&r);
    json_t *bt = json_object_get(j, "forecast_backtest");
    cr_assert_float_eq(json_number_value(json_object_get(bt, "coverage")), 0.5, 1e-12);
    json_t *m0 = json_array_get(json_object_get(bt, "months"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(m0, "month")), "2026-01");
    cr_assert_float_eq(json_number_value(json_object_get(m0, "p90")), 500, 1e-12);
    cr_assert(json_is_true(json_object_get(m0, "inside")));
    cr_assert_eq(json_array_size(json_object_get(bt, "months")), 2);
    json_t *hs = json_object_get(bt, "horizons");
    cr_assert_eq(json_array_size(hs), DS_FORECAST_HORIZONS);
    json_t *hq = json_array_get(hs, DS_FORECAST_QUARTER);
    cr_assert_str_eq(json_string_value(json_object_get(hq, "horizon")), "quarter");
    cr_assert_eq(json_integer_value(json_object_get(hq, "periods")), 1);
    cr_assert_float_eq(json_number_value(json_object_get(hq, "mean_actual")), 400, 1e-12);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(hs, 1), "periods")), 0);
    json_decref(j);
    /* Without months the section is left out. */
    r.n_backtest = 0;
    html = ds_report_html(&r);
    cr_assert_null(strstr(html, "Forecast backtest"));
    free(html);
}
