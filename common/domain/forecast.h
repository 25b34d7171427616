/* The forecast of a set of open deals: the won amount S = sum of X_i a_i,
 * X_i ~ Bernoulli(theta p_i) independent given theta (a Poisson-binomial
 * over amounts), with p_i the deals' probabilities, a_i their amounts and
 * theta a factor common to the month's deals (mean 1, variance shock_var:
 * the month-to-month error of the model and the rates below, which the
 * deals share; 0 gives the plain Poisson-binomial). Its expectation and a
 * band between two quantiles (P10 and P90), exactly by a convolution over
 * amount buckets (theta on a 3-point law with that mean and variance) or
 * by the normal approximation the SQL view public.forecast uses. Quantile
 * q of S: the smallest s with P(S <= s) >= q. Pure code, no I/O. */
#ifndef DEALSCORE_FORECAST_H
#define DEALSCORE_FORECAST_H

#include <stdbool.h>
#include <stddef.h>

/* z of the standard normal at 0.9: the view's P90 is mean + z sd. */
#define DS_FORECAST_Z90 1.2815515655446004
/* shock_var is clipped to [0, this], so that theta >= 0 on its law. */
#define DS_FORECAST_SHOCK_MAX (1.0 / 3)
/* The exact computation refuses more buckets than this. */
#define DS_FORECAST_MAX_BUCKETS 1000000

typedef struct {
    size_t n;        /* deals */
    double amount;   /* sum of amounts */
    double expected; /* sum of p * amount */
    double var;      /* the Poisson-binomial variance sum p (1 - p) amount^2 */
    double p10, p90; /* the band */
} ds_forecast_t;

/* The exact band: each amount rounded to the nearest multiple of bucket
 * (> 0; 1 keeps whole amounts exact), the distribution of S convolved
 * deal by deal for each of theta's points 1 - sqrt(3 shock_var) (weight
 * 1/6), 1 (2/3), 1 + sqrt(3 shock_var) (1/6), theta p_i clipped to 1, and
 * mixed. NaN probabilities or amounts count as 0. Returns 0, or DS_EINVAL
 * (bucket <= 0, or more than DS_FORECAST_MAX_BUCKETS buckets). */
int ds_forecast_exact(const double *p, const double *amount, size_t n, double bucket, double shock_var,
                      ds_forecast_t *out);

/* The normal approximation: mean +- DS_FORECAST_Z90 * sd, clipped to
 * [0, sum a], with mean = sum p a and
 * sd^2 = sum (p - p^2 (1 + shock_var)) a^2 + shock_var mean^2. */
void ds_forecast_normal(const double *p, const double *amount, size_t n, double shock_var,
                        ds_forecast_t *out);

/* shock_var clipped to [0, DS_FORECAST_SHOCK_MAX] (NaN: 0). */
double ds_forecast_shock_clip(double shock_var);

/* The month-level variance from past months' forecasts (expected E_j and
 * Poisson-binomial variance V_j of each) and actuals A_j, by moments:
 * sum ((A_j - E_j)^2 - V_j) / sum E_j^2, clipped (0 without months). */
double ds_forecast_shock_var(const double *expected, const double *var, const double *actual, size_t n);

/* The month's won amount counts a deal only if it closes won within the
 * month its close date names; a calibrated p is the chance it wins at all.
 * A deal forecast for a month slips (closes won later) or is lost, so the
 * probability the forecast sums is q = min(1, p * rate), rate the org's
 * in-month rate: over past forecast deals (open at a month's start, close
 * date in that month), the amount won within the month per unit of their
 * expected amount sum p a. Where p is calibrated, rate = P(closes within
 * the close month | won), amount-weighted (big deals close more slowly); it
 * also absorbs the model's bias on these deals. Each stage has its own
 * rate, shrunk toward the org's by DS_FORECAST_RATE_PRIOR expected wins of
 * the group's mean size m = sum p a / sum p; the org's is shrunk toward 1
 * (no history: q = p):
 *   rate = (won amount + PRIOR m prior) / (sum p a + PRIOR m),
 *   prior 1 for the org, the org's rate for a stage. */
#define DS_FORECAST_RATE_PRIOR 5.0
/* The rates are kept per months ahead, 0 .. this - 1: the close month
 * against the month of the forecast (further out: the last). A deal whose
 * close date is months ahead is less likely to win in that very month:
 * on 20,000 simulated deals, 36 % of the amount the won ones were worth
 * was won within the close month at 0 months ahead, 24 % at 1, 18 % at
 * 2, 10 % at 3. Each months-ahead org rate is shrunk toward the one a
 * month nearer. */
#define DS_FORECAST_AHEAD 4

/* Past forecast deals of one group: the sum of their p, of p * amount, and
 * the amount of those that won within the close month. */
typedef struct {
    double deals, expected, won;
} ds_forecast_tally_t;

/* Adds one past forecast deal (p clipped to [0, 1], NaN p or amount as 0). */
void ds_forecast_tally_add(ds_forecast_tally_t *t, double p, double amount, bool won_in_month);

/* The rate above with this prior (the prior itself for an empty tally). */
double ds_forecast_rate(const ds_forecast_tally_t *t, double prior);

/* q = p * rate clipped to [0, 1] (NaN p: 0). */
double ds_forecast_in_month(double p, double rate);

/* One month of a backtest: the forecast made at its start for the deals
 * expected to close in it (their probabilities of winning within it), and
 * what they won within it. */
typedef struct {
    char month[16];      /* "2026-03" */
    ds_forecast_t exact; /* with buckets of amount / 2000 */
    ds_forecast_t normal;
    double actual;    /* amount of those deals that closed won within the month (their amount at its start) */
    double won_later; /* amount of those deals that closed won after it */
    double shock_var; /* the month-level variance the band was made with */
    bool inside;      /* exact.p10 <= actual <= exact.p90 */
} ds_forecast_month_t;

/* Share of months whose actual lies inside the band (NaN for n = 0). */
double ds_forecast_coverage(const ds_forecast_month_t *m, size_t n);

/* Mean |normal - exact| of P10 and P90 as a share of the exact band's
 * width, over the months with a band (NaN for none). */
double ds_forecast_approx_error(const ds_forecast_month_t *m, size_t n);

#endif
