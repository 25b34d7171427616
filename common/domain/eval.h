/* Evaluation metrics of a probabilistic binary classifier: ROC AUC, PR AUC
 * (average precision), log loss, Brier score, expected calibration error,
 * reliability bins and ROC curve points. The trainer computes them for the
 * model and for the stage-prior baseline on the same test window.
 *
 * Pure in-memory code: no I/O, no global state, safe from any thread.
 *
 * Common conventions of every function below:
 * - score / p: one value per row. "score" may be any finite number (AUC,
 *   AP and the ROC curve only use its order); "p" must be a probability in
 *   [0, 1].
 * - label: 0 (lost) or 1 (won), as double; anything else is invalid.
 * - weight: optional sample weights (NULL means every row weighs 1); each
 *   must be finite and >= 0. Every sum, mean and rate below is weighted.
 * - The double-returning functions return NaN when the figure is undefined
 *   (n == 0, zero total weight, or for AUC / AP a class with zero weight) or
 *   the input is invalid; ds_eval_metrics says which input was bad.
 */
#ifndef DEALSCORE_EVAL_H
#define DEALSCORE_EVAL_H

#include <jansson.h>
#include <stddef.h>

/* Bins of the expected calibration error: 10 of equal width on [0, 1]. */
#define DS_EVAL_ECE_BINS 10
/* At most this many ROC points are kept for plots (ds_eval_roc_curve). */
#define DS_EVAL_ROC_MAX_POINTS 200
/* Log loss clips p into [eps, 1 - eps] so a confident mistake costs ~34.5
 * instead of infinity (the clip scikit-learn used by default). */
#define DS_EVAL_LOG_LOSS_EPS 1e-15

/* One bin of a reliability diagram: rows whose p lies in [lo, hi) (the last
 * bin also takes p == 1). mean_predicted and observed_rate are NaN when the
 * bin's weight is 0. */
typedef struct {
    double lo, hi;
    double mean_predicted; /* weighted mean of p */
    double observed_rate;  /* weighted share of label 1 */
    double weight;         /* sum of the bin's weights (== count unweighted) */
    size_t count;          /* rows in the bin */
} ds_eval_bin_t;

/* One point of a ROC curve: the rates when rows with score >= threshold are
 * called positive. The first point is (0, 0) with threshold +inf. */
typedef struct {
    double fpr, tpr, threshold;
} ds_roc_point_t;

/* Every scalar figure of one sample. NaN marks an undefined figure. */
typedef struct {
    size_t n;             /* rows */
    double weight;        /* total weight (== n unweighted) */
    double positive_rate; /* weighted share of label 1 */
    double roc_auc;
    double pr_auc; /* average precision */
    double log_loss;
    double brier;
    double ece;
} ds_eval_metrics_t;

/* ROC AUC: the probability that a random positive outranks a random
 * negative, ties counting one half (the Mann-Whitney statistic with average
 * ranks). Weighted pairs: each (positive i, negative j) pair weighs w_i w_j.
 * O(n log n). */
double ds_eval_roc_auc(const double *score, const double *label, const double *weight, size_t n);

/* Average precision, the PR AUC as scikit-learn's average_precision_score
 * defines it: sum over thresholds (distinct scores, descending; tied rows
 * form one threshold) of (R_k - R_{k-1}) * P_k, without interpolation. */
double ds_eval_average_precision(const double *score, const double *label, const double *weight, size_t n);

/* Mean of -(y ln p + (1 - y) ln(1 - p)) with p clipped to
 * [DS_EVAL_LOG_LOSS_EPS, 1 - DS_EVAL_LOG_LOSS_EPS]. */
double ds_eval_log_loss(const double *p, const double *label, const double *weight, size_t n);

/* Mean of (p - y)^2. */
double ds_eval_brier(const double *p, const double *label, const double *weight, size_t n);

/* Expected calibration error over DS_EVAL_ECE_BINS equal-width bins:
 * sum over non-empty bins of (bin weight / total weight) *
 * |mean predicted - observed rate|. Bin i holds p in [i/10, (i+1)/10); the
 * last bin also holds p == 1. */
double ds_eval_ece(const double *p, const double *label, const double *weight, size_t n);

/* Fills bins[0 .. n_bins-1] with the reliability diagram of n_bins
 * equal-width bins on [0, 1] (same binning rule as ds_eval_ece). Returns 0,
 * or DS_EINVAL for invalid input or n_bins == 0 (bins untouched). */
int ds_eval_reliability(const double *p, const double *label, const double *weight, size_t n, size_t n_bins,
                        ds_eval_bin_t *bins);

/* The ROC curve: one point per distinct score (descending), starting at
 * (0, 0) and ending at (1, 1). When there are more than max_points points,
 * keeps max_points spread evenly along the curve (by fpr + tpr), always
 * including both ends. out has room for max_points (>= 2). Returns 0 and
 * sets *n_out, or DS_EINVAL for invalid input, max_points < 2 or a class
 * with zero weight. */
int ds_eval_roc_curve(const double *score, const double *label, const double *weight, size_t n,
                      size_t max_points, ds_roc_point_t *out, size_t *n_out);

/* Computes every field of *out for probabilities p. Returns 0 (undefined
 * figures are NaN; n == 0 gives all NaN with n 0), or DS_EINVAL with a
 * sentence in errstr naming the first bad row (label not 0/1, p outside
 * [0, 1] or NaN, negative or non-finite weight); *out is then all NaN. */
int ds_eval_metrics(const double *p, const double *label, const double *weight, size_t n,
                    ds_eval_metrics_t *out, char *errstr, size_t errstr_size);

/* Sets every figure of *m to NaN and n to 0 ("not computed"). */
void ds_eval_metrics_clear(ds_eval_metrics_t *m);

/* {"n":..,"weight":..,"positive_rate":..,"roc_auc":..,"pr_auc":..,
 * "log_loss":..,"brier":..,"ece":..}, NaN as null. New reference; never
 * NULL. */
json_t *ds_eval_metrics_json(const ds_eval_metrics_t *m);

/* [{"lo":..,"hi":..,"mean_predicted":..,"observed_rate":..,"weight":..,
 * "count":..}, ...]. New reference; never NULL. */
json_t *ds_eval_bins_json(const ds_eval_bin_t *bins, size_t n_bins);

/* [{"fpr":..,"tpr":..,"threshold":..}, ...], an infinite threshold as null.
 * New reference; never NULL. */
json_t *ds_eval_roc_json(const ds_roc_point_t *points, size_t n_points);

/* A JSON number, or null when v is NaN or infinite (jansson refuses those).
 * New reference; never NULL. Shared by the model report and drivers. */
json_t *ds_eval_json_number(double v);

#endif
