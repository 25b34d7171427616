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
    cr_assert_eq(ds_forecast_exact(P3, A3, 3, 1, &f), 0);
    cr_assert_eq(f.n, 3);
    cr_assert_float_eq(f.amount, 600, 1e-9);
    cr_assert_float_eq(f.expected, 360, 1e-9);
    cr_assert_eq(f.p10, 300);
    cr_assert_eq(f.p90, 500);
    /* Buckets of 100 give the same band. */
    cr_assert_eq(ds_forecast_exact(P3, A3, 3, 100, &f), 0);
    cr_assert_eq(f.p10, 300);
    cr_assert_eq(f.p90, 500);
}

Test(forecast, three_deals_normal) {
    ds_forecast_t f;
    ds_forecast_normal(P3, A3, 3, &f);
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
    ds_forecast_normal(p, a, 1, &f);
    cr_assert_eq(f.p10, 0);
    double up = 50 + DS_FORECAST_Z90 * sqrt(0.05 * 0.95) * 1000;
    cr_assert_float_eq(f.p90, up, 1e-9);
    const double p2[] = {0.99}, a2[] = {1000};
    ds_forecast_normal(p2, a2, 1, &f);
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
    cr_assert_eq(ds_forecast_exact(p, a, N, 1000, &f), 0);
    cr_assert_eq(f.p10, want[0], "p10 %g, enumeration %g", f.p10, want[0]);
    cr_assert_eq(f.p90, want[1], "p90 %g, enumeration %g", f.p90, want[1]);
}

Test(forecast, rejects_bad_buckets) {
    ds_forecast_t f;
    cr_assert_eq(ds_forecast_exact(P3, A3, 3, 0, &f), DS_EINVAL);
    const double big[] = {1e12};
    cr_assert_eq(ds_forecast_exact(P3, big, 1, 1, &f), DS_EINVAL);
}

Test(forecast, coverage_counts_months_inside) {
    ds_forecast_month_t m[4] = {{.inside = true}, {.inside = false}, {.inside = true}, {.inside = true}};
    cr_assert_float_eq(ds_forecast_coverage(m, 4), 0.75, 1e-12);
    cr_assert(isnan(ds_forecast_coverage(m, 0)));
}

/* The model report's backtest section: chart, table, coverage, JSON. */
Test(forecast, report_carries_the_backtest) {
    ds_forecast_month_t m[2] = {0};
    snprintf(m[0].month, sizeof m[0].month, "2026-01");
    snprintf(m[1].month, sizeof m[1].month, "2026-02");
    ds_forecast_exact(P3, A3, 3, 1, &m[0].exact);
    ds_forecast_normal(P3, A3, 3, &m[0].normal);
    m[1] = (ds_forecast_month_t){.exact = m[0].exact, .normal = m[0].normal};
    snprintf(m[1].month, sizeof m[1].month, "2026-02");
    m[0].actual = 400;
    m[0].inside = true;
    m[1].actual = 100;
    ds_report_t r = {.backtest = m, .n_backtest = 2};
    char *html = ds_report_html(&r);
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
    json_decref(j);
    /* Without months the section is left out. */
    r.n_backtest = 0;
    html = ds_report_html(&r);
    cr_assert_null(strstr(html, "Forecast backtest"));
    free(html);
}
