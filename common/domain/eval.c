/* Evaluation metrics of a probabilistic binary classifier (see
 * eval.h). Sums run in double over rows in input order, or
 * in score order where ranks matter, so results are deterministic. */
#include "domain/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/common.h"

typedef struct {
    double score, label, weight;
} row_t;

static double weight_of(const double *weight, size_t i) { return weight ? weight[i] : 1.0; }

/* Checks one row; returns NULL when valid or a static reason. */
static const char *bad_row(const double *score, const double *label, const double *weight, size_t i,
                           int need_prob) {
    double s = score[i], y = label[i], w = weight_of(weight, i);
    if (!(y == 0.0 || y == 1.0)) return "label is not 0 or 1";
    if (!isfinite(w) || w < 0) return "weight is negative or not finite";
    if (need_prob) {
        if (!(s >= 0.0 && s <= 1.0)) return "probability is outside [0, 1]";
    } else if (!isfinite(s)) {
        return "score is not finite";
    }
    return NULL;
}

static int valid(const double *score, const double *label, const double *weight, size_t n, int need_prob) {
    if (n && (!score || !label)) return 0;
    for (size_t i = 0; i < n; i++)
        if (bad_row(score, label, weight, i, need_prob)) return 0;
    return 1;
}

/* Ascending by score. Ties keep no particular order: every user below
 * treats a run of equal scores as one group. */
static int cmp_row_asc(const void *a, const void *b) {
    double x = ((const row_t *)a)->score, y = ((const row_t *)b)->score;
    return (x > y) - (x < y);
}

static row_t *sorted_rows(const double *score, const double *label, const double *weight, size_t n) {
    row_t *rows = ds_malloc((n ? n : 1) * sizeof *rows);
    for (size_t i = 0; i < n; i++) rows[i] = (row_t){score[i], label[i], weight_of(weight, i)};
    qsort(rows, n, sizeof *rows, cmp_row_asc);
    return rows;
}

double ds_eval_roc_auc(const double *score, const double *label, const double *weight, size_t n) {
    if (!n || !valid(score, label, weight, n, 0)) return NAN;
    row_t *rows = sorted_rows(score, label, weight, n);
    /* Walk groups of equal scores upwards: each positive of a group beats
     * every negative below it and ties half of the group's negatives. */
    double neg_below = 0, pos_total = 0, sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double gpos = 0, gneg = 0;
        while (j < n && rows[j].score == rows[i].score) {
            if (rows[j].label == 1.0)
                gpos += rows[j].weight;
            else
                gneg += rows[j].weight;
            j++;
        }
        sum += gpos * (neg_below + 0.5 * gneg);
        neg_below += gneg;
        pos_total += gpos;
        i = j;
    }
    free(rows);
    if (pos_total <= 0 || neg_below <= 0) return NAN;
    return sum / (pos_total * neg_below);
}

double ds_eval_average_precision(const double *score, const double *label, const double *weight, size_t n) {
    if (!n || !valid(score, label, weight, n, 0)) return NAN;
    row_t *rows = sorted_rows(score, label, weight, n);
    double pos_total = 0;
    for (size_t i = 0; i < n; i++)
        if (rows[i].label == 1.0) pos_total += rows[i].weight;
    double ap = NAN;
    if (pos_total > 0) {
        double tp = 0, fp = 0, recall_prev = 0;
        ap = 0;
        /* Descending thresholds: from the top of the ascending order. */
        for (size_t end = n; end > 0;) {
            size_t start = end;
            double s = rows[end - 1].score;
            while (start > 0 && rows[start - 1].score == s) {
                start--;
                if (rows[start].label == 1.0)
                    tp += rows[start].weight;
                else
                    fp += rows[start].weight;
            }
            double recall = tp / pos_total;
            if (tp + fp > 0 && recall > recall_prev) ap += (recall - recall_prev) * (tp / (tp + fp));
            recall_prev = recall;
            end = start;
        }
    }
    free(rows);
    return ap;
}

double ds_eval_log_loss(const double *p, const double *label, const double *weight, size_t n) {
    if (!n || !valid(p, label, weight, n, 1)) return NAN;
    double sum = 0, wsum = 0;
    for (size_t i = 0; i < n; i++) {
        double q = fmin(fmax(p[i], DS_EVAL_LOG_LOSS_EPS), 1.0 - DS_EVAL_LOG_LOSS_EPS);
        double w = weight_of(weight, i);
        sum += -w * (label[i] == 1.0 ? log(q) : log1p(-q));
        wsum += w;
    }
    return wsum > 0 ? sum / wsum : NAN;
}

double ds_eval_brier(const double *p, const double *label, const double *weight, size_t n) {
    if (!n || !valid(p, label, weight, n, 1)) return NAN;
    double sum = 0, wsum = 0;
    for (size_t i = 0; i < n; i++) {
        double w = weight_of(weight, i), d = p[i] - label[i];
        sum += w * d * d;
        wsum += w;
    }
    return wsum > 0 ? sum / wsum : NAN;
}

static size_t bin_of(double p, size_t n_bins) {
    size_t b = (size_t)(p * (double)n_bins);
    return b >= n_bins ? n_bins - 1 : b;
}

/* Accumulates bins without validating (callers did). */
static void fill_bins(const double *p, const double *label, const double *weight, size_t n, size_t n_bins,
                      ds_eval_bin_t *bins) {
    double *sum_p = ds_calloc(n_bins, sizeof *sum_p);
    double *sum_y = ds_calloc(n_bins, sizeof *sum_y);
    for (size_t b = 0; b < n_bins; b++)
        bins[b] =
            (ds_eval_bin_t){(double)b / (double)n_bins, (double)(b + 1) / (double)n_bins, NAN, NAN, 0, 0};
    for (size_t i = 0; i < n; i++) {
        size_t b = bin_of(p[i], n_bins);
        double w = weight_of(weight, i);
        sum_p[b] += w * p[i];
        sum_y[b] += w * label[i];
        bins[b].weight += w;
        bins[b].count++;
    }
    for (size_t b = 0; b < n_bins; b++) {
        if (bins[b].weight > 0) {
            bins[b].mean_predicted = sum_p[b] / bins[b].weight;
            bins[b].observed_rate = sum_y[b] / bins[b].weight;
        }
    }
    free(sum_p);
    free(sum_y);
}

double ds_eval_ece(const double *p, const double *label, const double *weight, size_t n) {
    if (!n || !valid(p, label, weight, n, 1)) return NAN;
    ds_eval_bin_t bins[DS_EVAL_ECE_BINS];
    fill_bins(p, label, weight, n, DS_EVAL_ECE_BINS, bins);
    double total = 0, ece = 0;
    for (size_t b = 0; b < DS_EVAL_ECE_BINS; b++) total += bins[b].weight;
    if (total <= 0) return NAN;
    for (size_t b = 0; b < DS_EVAL_ECE_BINS; b++)
        if (bins[b].weight > 0)
            ece += bins[b].weight / total * fabs(bins[b].mean_predicted - bins[b].observed_rate);
    return ece;
}

int ds_eval_reliability(const double *p, const double *label, const double *weight, size_t n, size_t n_bins,
                        ds_eval_bin_t *bins) {
    if (!n_bins || !bins || !valid(p, label, weight, n, 1)) return DS_EINVAL;
    fill_bins(p, label, weight, n, n_bins, bins);
    return 0;
}

int ds_eval_roc_curve(const double *score, const double *label, const double *weight, size_t n,
                      size_t max_points, ds_roc_point_t *out, size_t *n_out) {
    if (max_points < 2 || !out || !n_out || !n || !valid(score, label, weight, n, 0)) return DS_EINVAL;
    row_t *rows = sorted_rows(score, label, weight, n);
    double pos_total = 0, neg_total = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].label == 1.0)
            pos_total += rows[i].weight;
        else
            neg_total += rows[i].weight;
    }
    if (pos_total <= 0 || neg_total <= 0) {
        free(rows);
        return DS_EINVAL;
    }
    /* Every point of the full curve, descending thresholds. */
    ds_roc_point_t *all = ds_malloc((n + 1) * sizeof *all);
    size_t m = 0;
    all[m++] = (ds_roc_point_t){0, 0, INFINITY};
    double tp = 0, fp = 0;
    for (size_t end = n; end > 0;) {
        size_t start = end;
        double s = rows[end - 1].score;
        while (start > 0 && rows[start - 1].score == s) {
            start--;
            if (rows[start].label == 1.0)
                tp += rows[start].weight;
            else
                fp += rows[start].weight;
        }
        all[m++] = (ds_roc_point_t){fp / neg_total, tp / pos_total, s};
        end = start;
    }
    free(rows);
    /* tp and fp summed in another order than the totals, so the last point
     * can miss (1, 1) by a rounding error: pin it. */
    all[m - 1].fpr = 1.0;
    all[m - 1].tpr = 1.0;
    size_t k = 0;
    if (m <= max_points) {
        for (size_t i = 0; i < m; i++) out[k++] = all[i];
    } else {
        /* Targets evenly spaced in fpr + tpr (0 .. 2), which grows along the
         * curve: take the first point reaching each target, once. */
        size_t i = 0;
        for (size_t j = 0; j < max_points; j++) {
            double target = 2.0 * (double)j / (double)(max_points - 1);
            while (i < m - 1 && all[i].fpr + all[i].tpr < target) i++;
            if (k == 0 || out[k - 1].threshold != all[i].threshold) out[k++] = all[i];
        }
        if (out[k - 1].threshold != all[m - 1].threshold) {
            if (k == max_points) k--;
            out[k++] = all[m - 1];
        }
    }
    free(all);
    *n_out = k;
    return 0;
}

void ds_eval_metrics_clear(ds_eval_metrics_t *m) {
    *m = (ds_eval_metrics_t){0, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
}

int ds_eval_metrics(const double *p, const double *label, const double *weight, size_t n,
                    ds_eval_metrics_t *out, char *errstr, size_t errstr_size) {
    if (!out) return DS_EINVAL;
    ds_eval_metrics_clear(out);
    if (n && (!p || !label)) {
        if (errstr_size) snprintf(errstr, errstr_size, "missing probabilities or labels");
        return DS_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *why = bad_row(p, label, weight, i, 1);
        if (why) {
            if (errstr_size) snprintf(errstr, errstr_size, "row %zu: %s", i, why);
            return DS_EINVAL;
        }
    }
    if (!n) return 0;
    double wsum = 0, pos = 0;
    for (size_t i = 0; i < n; i++) {
        wsum += weight_of(weight, i);
        pos += weight_of(weight, i) * label[i];
    }
    out->n = n;
    out->weight = wsum;
    out->positive_rate = wsum > 0 ? pos / wsum : NAN;
    out->roc_auc = ds_eval_roc_auc(p, label, weight, n);
    out->pr_auc = ds_eval_average_precision(p, label, weight, n);
    out->log_loss = ds_eval_log_loss(p, label, weight, n);
    out->brier = ds_eval_brier(p, label, weight, n);
    out->ece = ds_eval_ece(p, label, weight, n);
    return 0;
}

json_t *ds_eval_json_number(double v) {
    if (!isfinite(v)) return json_null();
    json_t *j = json_real(v);
    ds_assert(j);
    return j;
}

json_t *ds_eval_metrics_json(const ds_eval_metrics_t *m) {
    json_t *o = json_object();
    json_object_set_new(o, "n", json_integer((json_int_t)m->n));
    json_object_set_new(o, "weight", ds_eval_json_number(m->weight));
    json_object_set_new(o, "positive_rate", ds_eval_json_number(m->positive_rate));
    json_object_set_new(o, "roc_auc", ds_eval_json_number(m->roc_auc));
    json_object_set_new(o, "pr_auc", ds_eval_json_number(m->pr_auc));
    json_object_set_new(o, "log_loss", ds_eval_json_number(m->log_loss));
    json_object_set_new(o, "brier", ds_eval_json_number(m->brier));
    json_object_set_new(o, "ece", ds_eval_json_number(m->ece));
    return o;
}

json_t *ds_eval_bins_json(const ds_eval_bin_t *bins, size_t n_bins) {
    json_t *a = json_array();
    for (size_t i = 0; i < n_bins; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "lo", ds_eval_json_number(bins[i].lo));
        json_object_set_new(o, "hi", ds_eval_json_number(bins[i].hi));
        json_object_set_new(o, "mean_predicted", ds_eval_json_number(bins[i].mean_predicted));
        json_object_set_new(o, "observed_rate", ds_eval_json_number(bins[i].observed_rate));
        json_object_set_new(o, "weight", ds_eval_json_number(bins[i].weight));
        json_object_set_new(o, "count", json_integer((json_int_t)bins[i].count));
        json_array_append_new(a, o);
    }
    return a;
}

json_t *ds_eval_roc_json(const ds_roc_point_t *points, size_t n_points) {
    json_t *a = json_array();
    for (size_t i = 0; i < n_points; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "fpr", ds_eval_json_number(points[i].fpr));
        json_object_set_new(o, "tpr", ds_eval_json_number(points[i].tpr));
        json_object_set_new(o, "threshold", ds_eval_json_number(points[i].threshold));
        json_array_append_new(a, o);
    }
    return a;
}
