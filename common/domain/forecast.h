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

/* The exact band: each amount in buckets (> 0; 1 keeps whole amounts
 * exact), a = (u + f) bucket with 0 <= f < 1 winning u buckets with
 * weight 1 - f and u + 1 with weight f, so the mean stays exact (rounded
 * to the nearest bucket, deals under half a bucket would count for
 * nothing: a 20,000-deal org's quarter, 2,000 deals in buckets of 1/2000
 * of its amount, had its band 10 % low), the distribution of S convolved
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

/* A quarter's forecast: its deals in groups (group[i] < n_groups, the
 * close month's index in the quarter), each group with a theta of its own
 * (variance shock_var[g], that of its months ahead), the thetas
 * independent, as each month's variance is estimated from that month's
 * own errors and nothing estimates a link between months (the backtest's
 * quarters: 38 of 50 actuals inside the band, mean squared standardized
 * error 0.98; services/scoring/README.md). The exact band convolves the
 * groups' distributions (each as ds_forecast_exact's); the normal one
 * sums the groups' variances:
 *   sd^2 = sum_g [sum_{i in g} (p - p^2 (1 + s_g)) a^2 + s_g mean_g^2].
 * One group is ds_forecast_exact / ds_forecast_normal. */
int ds_forecast_exact_groups(const double *p, const double *amount, const size_t *group, size_t n,
                             const double *shock_var, size_t n_groups, double bucket, ds_forecast_t *out);
void ds_forecast_normal_groups(const double *p, const double *amount, const size_t *group, size_t n,
                               const double *shock_var, size_t n_groups, ds_forecast_t *out);

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

/* What a backtest row judges: the forecast made at a month's start for
 * its close month 0 .. DS_FORECAST_AHEAD - 1 months ahead (the view's
 * month rows), or for the quarter starting then (its quarter rows). */
#define DS_FORECAST_QUARTER DS_FORECAST_AHEAD
#define DS_FORECAST_HORIZONS (DS_FORECAST_AHEAD + 1)

/* One period of a backtest: the forecast made at a month's start for the
 * deals expected to close in the period (their probabilities of winning
 * within their close month), and what they won within it. */
typedef struct {
    char month[16];      /* the period judged: "2026-03", or "2026-Q1" */
    int horizon;         /* months ahead 0 .. DS_FORECAST_AHEAD - 1, or DS_FORECAST_QUARTER */
    ds_forecast_t exact; /* with buckets of amount / 2000 */
    ds_forecast_t normal;
    double actual;    /* amount of those deals won within their close month (amount at the forecast) */
    double won_later; /* amount of those deals that closed won after it */
    double shock_var; /* the month-level variance the band was made with (a quarter: its first month's) */
    bool inside;      /* exact.p10 <= actual <= exact.p90 */
} ds_forecast_month_t;

/* Share of months whose actual lies inside the band (NaN for n = 0). */
double ds_forecast_coverage(const ds_forecast_month_t *m, size_t n);

/* Mean |normal - exact| of P10 and P90 as a share of the exact band's
 * width, over the months with a band (NaN for none). */
double ds_forecast_approx_error(const ds_forecast_month_t *m, size_t n);

/* The rows of m (sorted by horizon) with this horizon: the first into
 * *first (NULL for none), returns how many. */
size_t ds_forecast_horizon(const ds_forecast_month_t *m, size_t n, int horizon,
                           const ds_forecast_month_t **first);

/* One horizon's figures: periods judged, inside the band, mean expected
 * and mean actual (NaN without periods). */
typedef struct {
    size_t periods, inside;
    double expected, actual;
} ds_forecast_judged_t;

void ds_forecast_judge(const ds_forecast_month_t *m, size_t n, ds_forecast_judged_t *out);

/* "0 months ahead" ... "3 months ahead", "quarter" ("" out of range). */
const char *ds_forecast_horizon_name(int horizon);

#endif
