/* The model report: what `dealscore-scoring train` shows about a trained
 * model, as one self-contained HTML page (inline CSS and SVG drawn here, no
 * scripts, fonts, images or links to anything outside the file) and as JSON
 * with the same figures.
 *
 * The page shows: the activation decision and why; overall metrics of the
 * model against the stage-prior baseline (and the active model, when there
 * is one) on the test window; a reliability diagram (model, stage prior,
 * diagonal); ROC curves (model, stage prior); the top features by mean
 * |SHAP|; and tables per checkpoint and per segment (industry, region, ...).
 *
 * ds_report_t is plain data the trainer fills: every pointer is borrowed for
 * the duration of the call, any string may be NULL (shown as "-" or left
 * out), and any array may be empty. Figures come from dealscore/
 * metrics_eval.h; NaN means "not computed" and prints as "-" (null in JSON).
 */
#ifndef DEALSCORE_REPORT_H
#define DEALSCORE_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "domain/eval.h"
#include "domain/forecast.h"

/* The feature chart shows at most this many features (the JSON has all). */
#define DS_REPORT_TOP_FEATURES 20

/* One row of a breakdown table: a subset of the test window. */
typedef struct {
    const char *key;         /* "day 30", "software", "EMEA" */
    ds_eval_metrics_t model; /* the model's calibrated probabilities on the subset */
    ds_eval_metrics_t prior; /* the stage prior's on the same rows */
} ds_report_row_t;

/* A breakdown table, e.g. per checkpoint or per industry. */
typedef struct {
    const char *title;      /* "Per checkpoint" */
    const char *key_header; /* "Checkpoint" */
    const ds_report_row_t *rows;
    size_t n_rows;
} ds_report_table_t;

/* A feature's global importance. */
typedef struct {
    const char *name;     /* the model's feature name */
    const char *label;    /* human label (NULL: the name) */
    double mean_abs_shap; /* mean |contribution| in log-odds over the test rows */
} ds_report_feature_t;

typedef struct {
    const char *title; /* NULL: "dealscore model report" */
    const char *model_version;
    const char *org;             /* slug */
    const char *generated_at;    /* RFC 3339 */
    const char *feature_version; /* DS_FEATURE_VERSION */
    const char *params;          /* "300 trees, depth 6, eta 0.05, ..." */
    const char *calibration;     /* "isotonic on 4,210 rows" */
    const char *train_window;    /* "closed 2024-01-01 .. 2025-06-30" */
    const char *test_window;
    size_t n_train, n_calib, n_test; /* rows (checkpoints) */

    /* Overall, on the test window. */
    ds_eval_metrics_t model, prior;
    bool has_active; /* an active model was scored on the same window */
    const char *active_version;
    ds_eval_metrics_t active;

    /* Reliability bins (ds_eval_reliability) and ROC points
     * (ds_eval_roc_curve) of the model and of the stage prior. */
    const ds_eval_bin_t *model_bins;
    size_t n_model_bins;
    const ds_eval_bin_t *prior_bins;
    size_t n_prior_bins;
    const ds_roc_point_t *model_roc;
    size_t n_model_roc;
    const ds_roc_point_t *prior_roc;
    size_t n_prior_roc;

    /* Any order: the report sorts by mean_abs_shap descending (ties by
     * name) and charts the top DS_REPORT_TOP_FEATURES. */
    const ds_report_feature_t *features;
    size_t n_features;

    /* Breakdown tables in display order: per checkpoint, per industry, per
     * region, ... */
    const ds_report_table_t *tables;
    size_t n_tables;

    /* The forecast backtest with this model on the test window's months
     * (by horizon, then oldest first, as forecast_backtest gives them;
     * none: the section is left out). The chart and the month table show
     * the months forecast at their start (0 months ahead). */
    const ds_forecast_month_t *backtest;
    size_t n_backtest;

    /* Whether the new model becomes active, and why in one or two
     * sentences ("beats the active model's log loss on the same window"). */
    bool activate;
    const char *decision_reason;
} ds_report_t;

/* The page as a NUL-terminated string the caller frees with free(); never
 * NULL. Deterministic: the same report gives the same bytes. */
char *ds_report_html(const ds_report_t *r);

/* Writes ds_report_html to path (created or truncated). Returns 0, or
 * DS_EINVAL (NULL argument) or DS_EIO with errstr naming the path and the
 * reason. */
int ds_report_write_html(const char *path, const ds_report_t *r, char *errstr, size_t errstr_size);

/* The same figures as JSON:
 * {"title","model_version","org","generated_at","feature_version","params",
 *  "calibration","train_window","test_window",
 *  "rows":{"train","calibration","test"},
 *  "overall":{"model":M,"stage_prior":M,"active":M|null,"active_version"},
 *  "reliability":{"model":[bins],"stage_prior":[bins]},
 *  "roc":{"model":[points],"stage_prior":[points]},
 *  "features":[{"name","label","mean_abs_shap"}] (sorted as charted, all),
 *  "tables":[{"title","key","rows":[{"key","model":M,"stage_prior":M}]}],
 *  "decision":{"activate":bool,"reason"},
 *  "forecast_backtest":{"coverage","approx_error","months":[{"month","deals","amount",
 *    "expected","p10","p90","normal_p10","normal_p90","actual","won_later","inside"}],
 *    "horizons":[{"horizon","periods","inside","coverage","mean_expected","mean_actual",
 *    "approx_error"}]} (coverage, approx_error and months: 0 months ahead; horizons: each of
 *    ds_forecast_horizon_name's five, in order)}
 * with M as ds_eval_metrics_json. New reference; never NULL. */
json_t *ds_report_json(const ds_report_t *r);

/* Writes ds_report_json to path, indented, reals with 10 significant
 * digits. Returns 0, or DS_EINVAL / DS_EIO as ds_report_write_html. */
int ds_report_write_json(const char *path, const ds_report_t *r, char *errstr, size_t errstr_size);

#endif
