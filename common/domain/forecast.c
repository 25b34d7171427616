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

/* A deal's amount in buckets: u whole ones and a fraction f of the next. */
typedef struct {
    size_t u;
    double f;
} units_t;

/* dist[k] += w * P(S = k buckets | theta) over group g's deals (all when
 * group is NULL), one deal at a time from the top down so that each deal
 * is added once (a won deal adds u buckets with weight 1 - f, u + 1 with
 * f); work holds nb doubles. Returns the top bucket reached. */
static size_t convolve(const double *p, const units_t *units, const size_t *group, size_t g, size_t n,
                       double theta, double w, double *work, size_t nb, double *dist) {
    memset(work, 0, nb * sizeof *work);
    work[0] = 1;
    size_t top = 0;
    for (size_t i = 0; i < n; i++) {
        double pi = prob(theta * prob(p[i])), f = units[i].f;
        size_t u = units[i].u;
        if ((u == 0 && f == 0) || pi == 0 || (group && group[i] != g)) continue;
        for (size_t k = top + 1; k-- > 0;) {
            double x = work[k];
            work[k] = (1 - pi) * x;
            work[k + u] += pi * (1 - f) * x;
            if (f > 0) work[k + u + 1] += pi * f * x;
        }
        top += u + (f > 0);
    }
    for (size_t k = 0; k <= top; k++) dist[k] += w * work[k];
    return top;
}

/* Group g's distribution, theta mixed on its 3-point law, into gd (nb
 * doubles); returns its top bucket. */
static size_t group_dist(const double *p, const units_t *units, const size_t *group, size_t g, size_t n,
                         double shock_var, double *work, size_t nb, double *gd) {
    memset(gd, 0, nb * sizeof *gd);
    double sd = sqrt(ds_forecast_shock_clip(shock_var));
    size_t top = 0;
    for (int j = 0; j < 3; j++)
        if (sd > 0 || j == 1) {
            size_t t =
                convolve(p, units, group, g, n, 1 + SHOCK_Z[j] * sd, sd > 0 ? SHOCK_W[j] : 1, work, nb, gd);
            top = t > top ? t : top;
        }
    return top;
}

/* Each amount in buckets into units (n + 1; a fraction within 1e-9 of a
 * whole bucket is none), or false past the limit; *nb the buckets of the
 * whole sum. */
static bool bucket_units(const double *amount, size_t n, double bucket, units_t *units, size_t *nb) {
    *nb = 1;
    for (size_t i = 0; i < n; i++) {
        double x = clean(amount[i]) / bucket, u = round(x), f = x - u;
        if (f < -1e-9) u -= 1;
        f = fabs(x - u) < 1e-9 ? 0 : x - u;
        if (u + 1 > DS_FORECAST_MAX_BUCKETS || (double)*nb + u + 1 > DS_FORECAST_MAX_BUCKETS) return false;
        units[i] = (units_t){(size_t)u, f};
        *nb += units[i].u + (f > 0);
    }
    return true;
}

int ds_forecast_exact_groups(const double *p, const double *amount, const size_t *group, size_t n,
                             const double *shock_var, size_t n_groups, double bucket, ds_forecast_t *out) {
    if (!(bucket > 0) || n_groups == 0) return DS_EINVAL;
    for (size_t i = 0; group && i < n; i++)
        if (group[i] >= n_groups) return DS_EINVAL;
    totals(p, amount, n, out);
    units_t *units = ds_malloc((n + 1) * sizeof *units);
    size_t nb;
    if (!bucket_units(amount, n, bucket, units, &nb)) {
        free(units);
        return DS_EINVAL;
    }
    double *dist = ds_calloc(nb, sizeof *dist), *gd = ds_malloc(nb * sizeof *gd),
           *work = ds_malloc(nb * sizeof *work), *sum = ds_malloc(nb * sizeof *sum);
    dist[0] = 1;
    size_t top = 0;
    for (size_t g = 0; g < n_groups; g++) {
        size_t gtop = group_dist(p, units, group, g, n, shock_var[g], work, nb, gd);
        memset(sum, 0, (top + gtop + 1) * sizeof *sum);
        for (size_t i = 0; i <= top; i++)
            for (size_t j = 0; dist[i] != 0 && j <= gtop; j++) sum[i + j] += dist[i] * gd[j];
        double *t = dist;
        dist = sum;
        sum = t;
        top += gtop;
    }
    out->p10 = (double)quantile(dist, top + 1, 0.1) * bucket;
    out->p90 = (double)quantile(dist, top + 1, 0.9) * bucket;
    free(sum);
    free(work);
    free(gd);
    free(dist);
    free(units);
    return DS_OK;
}

int ds_forecast_exact(const double *p, const double *amount, size_t n, double bucket, double shock_var,
                      ds_forecast_t *out) {
    return ds_forecast_exact_groups(p, amount, NULL, n, &shock_var, 1, bucket, out);
}

void ds_forecast_normal_groups(const double *p, const double *amount, const size_t *group, size_t n,
                               const double *shock_var, size_t n_groups, ds_forecast_t *out) {
    totals(p, amount, n, out);
    double *mean = ds_calloc(n_groups + 1, sizeof *mean), var = out->var;
    for (size_t i = 0; i < n; i++) {
        size_t g = group ? group[i] : 0;
        ds_assert(g < n_groups);
        double pi = prob(p[i]), a = clean(amount[i]), t2 = ds_forecast_shock_clip(shock_var[g]);
        var -= t2 * pi * pi * a * a;
        mean[g] += pi * a;
    }
    for (size_t g = 0; g < n_groups; g++) var += ds_forecast_shock_clip(shock_var[g]) * mean[g] * mean[g];
    free(mean);
    double sd = sqrt(fmax(0, var));
    out->p10 = fmax(0, out->expected - DS_FORECAST_Z90 * sd);
    out->p90 = fmin(out->amount, out->expected + DS_FORECAST_Z90 * sd);
}

void ds_forecast_normal(const double *p, const double *amount, size_t n, double shock_var,
                        ds_forecast_t *out) {
    ds_forecast_normal_groups(p, amount, NULL, n, &shock_var, 1, out);
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

size_t ds_forecast_horizon(const ds_forecast_month_t *m, size_t n, int horizon,
                           const ds_forecast_month_t **first) {
    size_t i = 0, k = 0;
    while (i < n && m[i].horizon != horizon) i++;
    while (i + k < n && m[i + k].horizon == horizon) k++;
    *first = k ? &m[i] : NULL;
    return k;
}

void ds_forecast_judge(const ds_forecast_month_t *m, size_t n, ds_forecast_judged_t *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        out->periods++;
        out->inside += m[i].inside;
        out->expected += m[i].exact.expected;
        out->actual += m[i].actual;
    }
    out->expected = n ? out->expected / (double)n : NAN;
    out->actual = n ? out->actual / (double)n : NAN;
}

_Static_assert(DS_FORECAST_HORIZONS == 5, "a name per horizon");

const char *ds_forecast_horizon_name(int horizon) {
    static const char *const names[DS_FORECAST_HORIZONS] = {"0 months ahead", "1 month ahead",
                                                            "2 months ahead", "3 months ahead", "quarter"};
    return horizon >= 0 && horizon < DS_FORECAST_HORIZONS ? names[horizon] : "";
}
