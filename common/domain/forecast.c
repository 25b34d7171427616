/* Forecast bands: exact convolution over amount buckets, normal approximation. */
#include "domain/forecast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

static double clean(double v) { return isfinite(v) && v > 0 ? v : 0; }

static void totals(const double *p, const double *amount, size_t n, ds_forecast_t *out) {
    memset(out, 0, sizeof *out);
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        double pi = clean(p[i]) > 1 ? 1 : clean(p[i]), a = clean(amount[i]);
        out->amount += a;
        out->expected += pi * a;
    }
}

/* The smallest bucket k with cdf(k) >= q (a tolerance for rounding). */
static size_t quantile(const double *dist, size_t nb, double q) {
    double cdf = 0;
    for (size_t k = 0; k < nb; k++) {
        cdf += dist[k];
        if (cdf >= q - 1e-12) return k;
    }
    return nb - 1;
}

int ds_forecast_exact(const double *p, const double *amount, size_t n, double bucket, ds_forecast_t *out) {
    if (!(bucket > 0)) return DS_EINVAL;
    totals(p, amount, n, out);
    size_t *units = ds_malloc((n + 1) * sizeof *units);
    size_t nb = 1;
    for (size_t i = 0; i < n; i++) {
        double u = round(clean(amount[i]) / bucket);
        if (u > DS_FORECAST_MAX_BUCKETS || (double)nb + u > DS_FORECAST_MAX_BUCKETS) {
            free(units);
            return DS_EINVAL;
        }
        units[i] = (size_t)u;
        nb += units[i];
    }
    /* dist[k] = P(S = k buckets), one deal at a time, from the top down so
     * that each deal is added once. */
    double *dist = ds_calloc(nb, sizeof *dist);
    dist[0] = 1;
    size_t top = 0;
    for (size_t i = 0; i < n; i++) {
        double pi = clean(p[i]) > 1 ? 1 : clean(p[i]);
        size_t u = units[i];
        if (u == 0 || pi == 0) continue;
        for (size_t k = top + 1; k-- > 0;) {
            dist[k + u] += pi * dist[k];
            dist[k] *= 1 - pi;
        }
        top += u;
    }
    out->p10 = (double)quantile(dist, top + 1, 0.1) * bucket;
    out->p90 = (double)quantile(dist, top + 1, 0.9) * bucket;
    free(dist);
    free(units);
    return DS_OK;
}

void ds_forecast_normal(const double *p, const double *amount, size_t n, ds_forecast_t *out) {
    totals(p, amount, n, out);
    double var = 0;
    for (size_t i = 0; i < n; i++) {
        double pi = clean(p[i]) > 1 ? 1 : clean(p[i]), a = clean(amount[i]);
        var += pi * (1 - pi) * a * a;
    }
    double sd = sqrt(var);
    out->p10 = fmax(0, out->expected - DS_FORECAST_Z90 * sd);
    out->p90 = fmin(out->amount, out->expected + DS_FORECAST_Z90 * sd);
}

double ds_forecast_coverage(const ds_forecast_month_t *m, size_t n) {
    if (n == 0) return NAN;
    size_t in = 0;
    for (size_t i = 0; i < n; i++) in += m[i].inside;
    return (double)in / (double)n;
}

double ds_forecast_approx_error(const ds_forecast_month_t *m, size_t n) {
    double sum = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        double width = m[i].exact.p90 - m[i].exact.p10;
        if (!(width > 0)) continue;
        sum +=
            (fabs(m[i].normal.p10 - m[i].exact.p10) + fabs(m[i].normal.p90 - m[i].exact.p90)) / (2 * width);
        k++;
    }
    return k ? sum / (double)k : NAN;
}
