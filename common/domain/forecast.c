/* Forecast bands: exact convolution over amount buckets, normal approximation. */
#include "domain/forecast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

static double clean(double v) { return isfinite(v) && v > 0 ? v : 0; }

static double prob(double p) { return clean(p) > 1 ? 1 : clean(p); }

static void totals(const double *p, const double *amount, size_t n, ds_forecast_t *out) {
    memset(out, 0, sizeof *out);
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        double pi = prob(p[i]), a = clean(amount[i]);
        out->amount += a;
        out->expected += pi * a;
        out->var += pi * (1 - pi) * a * a;
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

/* The 3-point law of the month's common factor theta: mean 1, variance
 * shock_var (Gauss-Hermite: 1 -+ sqrt(3 shock_var) with weight 1/6 each,
 * 1 with 2/3). */
static const double SHOCK_W[3] = {1.0 / 6, 2.0 / 3, 1.0 / 6},
                    SHOCK_Z[3] = {-1.7320508075688772, 0, 1.7320508075688772};

/* dist[k] += w * P(S = k buckets | theta), one deal at a time from the top
 * down so that each deal is added once; work holds nb doubles. */
static void convolve(const double *p, const size_t *units, size_t n, double theta, double w, double *work,
                     size_t nb, double *dist) {
    memset(work, 0, nb * sizeof *work);
    work[0] = 1;
    size_t top = 0;
    for (size_t i = 0; i < n; i++) {
        double pi = prob(theta * prob(p[i]));
        size_t u = units[i];
        if (u == 0 || pi == 0) continue;
        for (size_t k = top + 1; k-- > 0;) {
            work[k + u] += pi * work[k];
            work[k] *= 1 - pi;
        }
        top += u;
    }
    for (size_t k = 0; k <= top; k++) dist[k] += w * work[k];
}

int ds_forecast_exact(const double *p, const double *amount, size_t n, double bucket, double shock_var,
                      ds_forecast_t *out) {
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
    double *dist = ds_calloc(nb, sizeof *dist), *work = ds_malloc(nb * sizeof *work);
    double sd = sqrt(ds_forecast_shock_clip(shock_var));
    for (int j = 0; j < 3; j++)
        if (sd > 0 || j == 1)
            convolve(p, units, n, 1 + SHOCK_Z[j] * sd, sd > 0 ? SHOCK_W[j] : 1, work, nb, dist);
    out->p10 = (double)quantile(dist, nb, 0.1) * bucket;
    out->p90 = (double)quantile(dist, nb, 0.9) * bucket;
    free(work);
    free(dist);
    free(units);
    return DS_OK;
}

void ds_forecast_normal(const double *p, const double *amount, size_t n, double shock_var,
                        ds_forecast_t *out) {
    totals(p, amount, n, out);
    double t2 = ds_forecast_shock_clip(shock_var), var = out->var + t2 * out->expected * out->expected;
    for (size_t i = 0; i < n; i++) {
        double pi = prob(p[i]), a = clean(amount[i]);
        var -= t2 * pi * pi * a * a;
    }
    double sd = sqrt(fmax(0, var));
    out->p10 = fmax(0, out->expected - DS_FORECAST_Z90 * sd);
    out->p90 = fmin(out->amount, out->expected + DS_FORECAST_Z90 * sd);
}

double ds_forecast_shock_clip(double shock_var) {
    return isfinite(shock_var) && shock_var > 0 ? fmin(shock_var, DS_FORECAST_SHOCK_MAX) : 0;
}

double ds_forecast_shock_var(const double *expected, const double *var, const double *actual, size_t n) {
    double excess = 0, scale = 0;
    for (size_t j = 0; j < n; j++) {
        double d = actual[j] - expected[j];
        excess += d * d - var[j];
        scale += expected[j] * expected[j];
    }
    return scale > 0 ? ds_forecast_shock_clip(excess / scale) : 0;
}

void ds_forecast_tally_add(ds_forecast_tally_t *t, double p, double amount, bool won_in_month) {
    t->deals += prob(p);
    t->expected += prob(p) * clean(amount);
    t->won += won_in_month ? clean(amount) : 0;
}

double ds_forecast_rate(const ds_forecast_tally_t *t, double prior) {
    if (!(t->deals > 0 && t->expected > 0)) return prior;
    double m = t->expected / t->deals;
    return (t->won + DS_FORECAST_RATE_PRIOR * m * prior) / (t->expected + DS_FORECAST_RATE_PRIOR * m);
}

double ds_forecast_in_month(double p, double rate) {
    double q = clean(p) * clean(rate);
    return q > 1 ? 1 : q;
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
