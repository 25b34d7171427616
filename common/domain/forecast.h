/* The forecast of a set of open deals: the won amount S = sum of X_i a_i,
 * X_i ~ Bernoulli(p_i) independent (a Poisson-binomial over amounts), with
 * p_i the deals' calibrated probabilities and a_i their amounts. Its
 * expectation and a band between two quantiles (P10 and P90), exactly by a
 * convolution over amount buckets or by the normal approximation the SQL
 * view public.forecast uses. Quantile q of S: the smallest s with
 * P(S <= s) >= q. Pure code, no I/O. */
#ifndef DEALSCORE_FORECAST_H
#define DEALSCORE_FORECAST_H

#include <stdbool.h>
#include <stddef.h>

/* z of the standard normal at 0.9: the view's P90 is mean + z sd. */
#define DS_FORECAST_Z90 1.2815515655446004
/* The exact computation refuses more buckets than this. */
#define DS_FORECAST_MAX_BUCKETS 1000000

typedef struct {
    size_t n;        /* deals */
    double amount;   /* sum of amounts */
    double expected; /* sum of p * amount */
    double p10, p90; /* the band */
} ds_forecast_t;

/* The exact band: each amount rounded to the nearest multiple of bucket
 * (> 0; 1 keeps whole amounts exact), the distribution of S convolved
 * deal by deal. NaN probabilities or amounts count as 0. Returns 0, or
 * DS_EINVAL (bucket <= 0, or more than DS_FORECAST_MAX_BUCKETS buckets). */
int ds_forecast_exact(const double *p, const double *amount, size_t n, double bucket, ds_forecast_t *out);

/* The normal approximation: mean +- DS_FORECAST_Z90 * sd with
 * sd^2 = sum p (1 - p) a^2, clipped to [0, sum a]. */
void ds_forecast_normal(const double *p, const double *amount, size_t n, ds_forecast_t *out);

/* One month of a backtest: the forecast made at its start for the deals
 * expected to close in it, and what they won. */
typedef struct {
    char month[16];      /* "2026-03" */
    ds_forecast_t exact; /* with buckets of amount / 2000 */
    ds_forecast_t normal;
    double actual;       /* won amount of those deals (their amount at the month's start) */
    double won_in_month; /* of which closed won within the month */
    bool inside;         /* exact.p10 <= actual <= exact.p90 */
} ds_forecast_month_t;

/* Share of months whose actual lies inside the band (NaN for n = 0). */
double ds_forecast_coverage(const ds_forecast_month_t *m, size_t n);

/* Mean |normal - exact| of P10 and P90 as a share of the exact band's
 * width, over the months with a band (NaN for none). */
double ds_forecast_approx_error(const ds_forecast_month_t *m, size_t n);

#endif
