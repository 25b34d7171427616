/* The model layer of scoring, pure C on in-memory data (no Postgres, no
 * Kafka):
 * - ds_model_t: gradient-boosted trees through XGBoost's C API: train,
 *   save/load as XGBoost JSON, margins, probabilities and exact TreeSHAP
 *   contributions, and the mapping of the model's features onto the feature
 *   engine's by name;
 * - ds_calib_t: Platt scaling or isotonic regression fitted on a held-out
 *   fold, as JSON;
 * - drivers: the top positive and negative contributions of one score, and
 *   the per-feature change of contributions between two scores ("why did it
 *   move"), with deterministic JSON;
 * - ds_stage_prior_t: the cold-start model, smoothed historical win rates
 *   per stage (model version "stage-prior").
 *
 * Shapes: a feature matrix is dense, row-major float, n_rows x n_features,
 * NaN for missing (the engine's NaN). Margins are log-odds. Contributions
 * are n_rows x (n_features + 1) floats, the last column of a row being the
 * bias; a row's contributions sum to its margin.
 *
 * Engines: XGBoost trains, saves and loads. Margins and contributions come
 * from our own engine over the same trees (treeshap.h), built
 * when the model is loaded: exact TreeSHAP at a fraction of XGBoost's cost,
 * equal to XGBoost's pred_contribs to float rounding (tests/unit/
 * test_treeshap.c). A model that engine does not handle (logged once at
 * load) is served by XGBoost. The _xgb functions always ask XGBoost.
 *
 * Threads: a trained or loaded ds_model_t is read-only; every prediction
 * function may run on any number of threads at once on the same model
 * (XGBoost >= 1.4 predicts thread-safely; each call builds its own DMatrix,
 * which also avoids XGBoost's per-DMatrix prediction cache, and nothing sets
 * a parameter after ds_model_load returns; our engine is read-only). ds_calib_t
 * and ds_stage_prior_t are read-only after they are built, too.
 */
#ifndef DEALSCORE_MODEL_H
#define DEALSCORE_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/common.h"
#include "base/sb.h"

/* ---- model ---------------------------------------------------------------- */

typedef struct ds_model ds_model_t;

/* Training parameters. Set defaults with ds_model_params_default. */
typedef struct {
    int n_trees;             /* boosting rounds, 1 .. 100000 */
    int max_depth;           /* 1 .. 30 */
    double eta;              /* learning rate, (0, 1] */
    double min_child_weight; /* >= 0 */
    double subsample;        /* row share per tree, (0, 1] */
    int seed;                /* >= 0; with the same data and params the model is the same */
    int nthread;             /* training and prediction threads; 0 = all cores (OpenMP) */
} ds_model_params_t;

/* 300 trees, depth 6, eta 0.05, min_child_weight 1, subsample 0.8, seed 0,
 * nthread 0. The objective is always binary:logistic, tree_method hist. */
void ds_model_params_default(ds_model_params_t *p);

/* Trains a binary:logistic model (tree_method hist) on x (n_rows x
 * n_features, NaN missing), label (0 or 1 per row) and weight (NULL = 1 per
 * row, else finite >= 0), with names[n_features] as the model's feature
 * names (unique, non-empty, stored in the model). The result is the trained
 * booster saved to JSON and loaded again (ds_model_load with p->nthread),
 * so a model in hand behaves exactly like one read back from the registry.
 * Returns 0 and sets *out (free with ds_model_destroy), or DS_EINVAL (bad
 * argument, named in errstr) or DS_EFATAL (XGBoost failed; its message is in
 * errstr). */
int ds_model_train(const ds_model_params_t *p, const float *x, size_t n_rows, size_t n_features,
                   const char *const *names, const float *label, const float *weight, ds_model_t **out,
                   char *errstr, size_t errstr_size);

/* Serializes the model as XGBoost JSON (XGBoosterSaveModelToBuffer with
 * {"format":"json"}): the file XGBoost's Python package loads as it is
 * (xgboost.Booster(model_file=...)), with the feature names under
 * learner.feature_names. Returns 0 and sets *buf (NUL-terminated, caller
 * frees with free()) and *len (without the NUL), or DS_EFATAL. */
int ds_model_save(const ds_model_t *m, char **buf, size_t *len, char *errstr, size_t errstr_size);

/* Loads a model saved by ds_model_save (or by XGBoost itself, JSON or UBJSON)
 * from buf[0 .. len-1], sets its prediction threads (nthread, 0 = all cores)
 * and runs one warm-up prediction so that XGBoost's lazy configuration
 * happens here, on one thread, and never during concurrent predictions.
 * Returns 0 and sets *out (free with ds_model_destroy), or DS_EINVAL with a
 * sentence in errstr: unreadable artifact, objective other than
 * binary:logistic, no feature names, or names not matching the feature
 * count. */
int ds_model_load(const void *buf, size_t len, int nthread, ds_model_t **out, char *errstr,
                  size_t errstr_size);

/* Frees the model; does nothing with NULL. No prediction may be running. */
void ds_model_destroy(ds_model_t *m);

/* The number of features the model takes (the columns of its matrices). */
size_t ds_model_n_features(const ds_model_t *m);

/* The model's feature names in column order; sets *n to their count. The
 * array and strings belong to the model (valid until ds_model_destroy). */
const char *const *ds_model_feature_names(const ds_model_t *m, size_t *n);

/* Maps the model's features onto the engine's by name: for each model
 * column j, map[j] = i such that engine_names[i] is the model's name j
 * (map has room for ds_model_n_features(m)). Pass the engine's catalog
 * (ds_feature_name(0 .. DS_FEATURE_COUNT-1)) to build a scoring row as
 * row[j] = (float)vec.values[map[j]]. Returns 0, or DS_EINVAL with errstr
 * naming the first model feature the engine cannot supply ("model feature
 * 'x' is not computed by the feature engine"): the scorer refuses such a
 * model. */
int ds_model_feature_map(const ds_model_t *m, const char *const *engine_names, size_t n, int *map,
                         char *errstr, size_t errstr_size);

/* Margins (log-odds, before calibration) of n_rows rows of x
 * (ds_model_n_features columns) into out[n_rows]: the base margin plus the
 * leaf values, summed in double. Returns 0, or DS_EINVAL (NULL pointer,
 * n_rows 0) or DS_EFATAL (XGBoost's message in errstr). */
int ds_model_predict_margin(const ds_model_t *m, const float *x, size_t n_rows, double *out, char *errstr,
                            size_t errstr_size);

/* The same margins from XGBoost itself (summed in float). Errors as
 * ds_model_predict_margin. */
int ds_model_predict_margin_xgb(const ds_model_t *m, const float *x, size_t n_rows, double *out, char *errstr,
                                size_t errstr_size);

/* Uncalibrated probabilities 1 / (1 + exp(-margin)) into out[n_rows].
 * Errors as ds_model_predict_margin. */
int ds_model_predict_proba(const ds_model_t *m, const float *x, size_t n_rows, double *out, char *errstr,
                           size_t errstr_size);

/* Exact (path-dependent) TreeSHAP contributions, XGBoost's prediction type
 * 2, into out[n_rows * (n_features + 1)]: row r's contribution of feature j
 * is out[r * (n_features + 1) + j], its bias out[r * (n_features + 1) +
 * n_features]; the row sums to its margin (within float rounding). Cost
 * grows with trees x leaves x depth per row (see treeshap.h and
 * tools/bench/model). Errors as ds_model_predict_margin. */
int ds_model_contribs(const ds_model_t *m, const float *x, size_t n_rows, float *out, char *errstr,
                      size_t errstr_size);

/* The same contributions from XGBoost itself (XGBoosterPredictFromDMatrix,
 * type 2): the reference the tests and benchmarks compare with; trees x
 * leaves x depth^2 per row. Errors as ds_model_predict_margin. */
int ds_model_contribs_xgb(const ds_model_t *m, const float *x, size_t n_rows, float *out, char *errstr,
                          size_t errstr_size);

/* True when margins and contributions come from our engine, false when
 * the model falls back to XGBoost. */
bool ds_model_has_treeshap(const ds_model_t *m);

/* Mean |contribution| per feature (bias excluded) over n_rows rows of
 * contributions as ds_model_contribs returns them, into out[n_features]:
 * the global importance the model report shows. */
void ds_contribs_mean_abs(const float *contribs, size_t n_rows, size_t n_features, double *out);

/* ---- calibration ---------------------------------------------------------- */

typedef enum {
    DS_CALIB_PLATT = 1,    /* p = 1 / (1 + exp(-(a * margin + b))), a > 0 */
    DS_CALIB_ISOTONIC = 2, /* p = piecewise-linear non-decreasing f(sigmoid(margin)) */
} ds_calib_method_t;

/* ds_calib_fit picks isotonic regression when the calibration fold has at
 * least this many rows (enough to estimate a free-form monotone curve), and
 * Platt's two-parameter sigmoid below it. */
#define DS_CALIB_ISOTONIC_MIN_ROWS 1000
/* Isotonic outputs are clipped into [eps, 1 - eps]: a finite fold never
 * justifies certainty (and log loss would punish it without limit). */
#define DS_CALIB_ISOTONIC_EPS 1e-3

/* A fitted calibration. Plain data, read-only once built; free with
 * ds_calib_destroy. */
typedef struct {
    ds_calib_method_t method;
    double a, b; /* Platt */
    size_t n;    /* isotonic breakpoints */
    double *x;   /* raw probabilities sigmoid(margin), strictly increasing */
    double *y;   /* calibrated probabilities at x, non-decreasing */
} ds_calib_t;

/* Fits Platt scaling on held-out margins and labels (0/1; weight NULL = 1):
 * minimizes the weighted log loss of sigmoid(a * margin + b) by Newton's
 * method with backtracking, against Platt's smoothed targets (N+ + 1) /
 * (N+ + 2) for positives and 1 / (N- + 2) for negatives (weighted counts),
 * which keeps a and b finite on separable folds. Returns 0 and sets *out,
 * or DS_EINVAL with errstr: fewer than 2 rows, a class missing, bad label,
 * weight or margin, or a slope a <= 0 (the model does not rank the fold:
 * a decreasing calibration would turn every driver around). */
int ds_calib_fit_platt(const double *margin, const double *label, const double *weight, size_t n,
                       ds_calib_t **out, char *errstr, size_t errstr_size);

/* Fits isotonic regression of the labels on sigmoid(margin) by
 * pool-adjacent-violators (weighted; equal x values pooled first). Each
 * pooled block of constant value contributes its lowest and highest x as
 * breakpoints, so applying it interpolates linearly between blocks and is
 * constant beyond the ends; values are clipped to [DS_CALIB_ISOTONIC_EPS,
 * 1 - DS_CALIB_ISOTONIC_EPS]. Returns 0 and sets *out, or DS_EINVAL as
 * ds_calib_fit_platt (no slope condition). */
int ds_calib_fit_isotonic(const double *margin, const double *label, const double *weight, size_t n,
                          ds_calib_t **out, char *errstr, size_t errstr_size);

/* Isotonic when n >= DS_CALIB_ISOTONIC_MIN_ROWS, Platt otherwise. */
int ds_calib_fit(const double *margin, const double *label, const double *weight, size_t n, ds_calib_t **out,
                 char *errstr, size_t errstr_size);

/* The calibrated probability of a margin; with cal NULL, the plain sigmoid.
 * Non-decreasing in margin for every calibration this module builds or
 * parses, so a positive contribution never lowers the probability. */
double ds_calib_apply(const ds_calib_t *cal, double margin);

/* "platt" or "isotonic". */
const char *ds_calib_method_name(ds_calib_method_t method);

/* {"method":"platt","a":..,"b":..} or {"method":"isotonic","x":[..],
 * "y":[..]}, numbers at full precision (parsing gives the same doubles).
 * Returns a string the caller frees with free(); never NULL. */
char *ds_calib_to_json(const ds_calib_t *cal);

/* Parses ds_calib_to_json's output. Returns 0 and sets *out, or DS_EINVAL
 * with errstr (bad JSON, unknown method, a <= 0, x not strictly increasing,
 * y not non-decreasing or outside [0, 1], lengths differ or are 0). */
int ds_calib_from_json(const char *json, ds_calib_t **out, char *errstr, size_t errstr_size);

/* Frees the calibration; does nothing with NULL. */
void ds_calib_destroy(ds_calib_t *cal);

/* ---- drivers ---------------------------------------------------------------- */

/* The name under which the bias (the model's base margin) appears in named
 * contributions (ds_contribs_write); no engine feature starts with '_'. */
#define DS_CONTRIB_BIAS_NAME "_bias"

/* One driver of a score.
 * pp, the contribution in percentage points, is defined as the change in
 * calibrated probability from removing the contribution from the margin:
 *     pp = 100 * (P(margin) - P(margin - contribution)),
 * with P = ds_calib_apply (the plain sigmoid without a calibration). It has
 * the contribution's sign (P is non-decreasing; 0 where an isotonic
 * calibration is flat), and is exact for one driver taken alone; the pp of
 * several drivers need not add up, because P is not linear. */
typedef struct {
    int feature;         /* column in the model (index into the contribution row) */
    const char *name;    /* the model's feature name (borrowed from names) */
    const char *label;   /* the engine catalog's label, or the name when the engine lacks it; a
                          * caller may point it at a reason's label (domain/reasons.h) */
    const char *display; /* the value in words (a reason's display), or NULL */
    double value;        /* the feature's value in the row; NaN when missing */
    double contribution; /* log-odds */
    double pp;           /* percentage points, see above */
} ds_driver_t;

/* The top-k positive and top-k negative drivers of one row of
 * contributions (n_features + 1 floats, bias last, as ds_model_contribs).
 * values: the row's feature values in model order (NULL: every value NaN);
 * names: the model's feature names (ds_model_feature_names); cal: the
 * calibration for pp (NULL = sigmoid). Positive drivers are sorted by
 * contribution descending, negative ones ascending (most negative first);
 * equal contributions go by feature index, lower first; zero contributions
 * are neither. pos and neg have room for k each; *n_pos and *n_neg get
 * their counts (<= k). Returns 0, or DS_EINVAL for a NULL required pointer
 * or a non-finite contribution. */
int ds_drivers_top(const float *contribs, size_t n_features, const float *values, const char *const *names,
                   const ds_calib_t *cal, size_t k, ds_driver_t *pos, size_t *n_pos, ds_driver_t *neg,
                   size_t *n_neg);

/* A named contribution, as stored with a prediction. */
typedef struct {
    const char *name;
    double contribution;
} ds_named_contrib_t;

/* One feature's change of contribution between two scores. */
typedef struct {
    const char *name;    /* borrowed from the inputs */
    const char *label;   /* as ds_driver_t's; "Model baseline" for DS_CONTRIB_BIAS_NAME */
    const char *display; /* as ds_driver_t's; NULL from ds_drivers_diff */
    double value;        /* the feature's current value; NaN from ds_drivers_diff */
    double previous;     /* NaN when the previous score had no such feature */
    double current;      /* NaN when the current score has no such feature */
    double change;       /* current - previous, a missing side counting as 0 */
} ds_contrib_change_t;

/* "Why did the score move": the per-feature change of contribution from
 * prev (n_prev entries, e.g. from ds_contribs_parse of the previous
 * prediction; the model may have changed, so features are matched by name
 * and may be missing on either side) to cur; the top k by |change|
 * descending, ties by name (strcmp), zero changes left out. With both sides
 * carrying the bias (DS_CONTRIB_BIAS_NAME), the changes of all features add
 * up to the change of the margin. When there is no previous score at all,
 * there is no move to explain: do not call this. out has room for k;
 * *n_out gets the count. Returns 0, or DS_EINVAL for a NULL required
 * pointer, a NULL name, or a name twice on one side. */
int ds_drivers_diff(const ds_named_contrib_t *prev, size_t n_prev, const ds_named_contrib_t *cur,
                    size_t n_cur, size_t k, ds_contrib_change_t *out, size_t *n_out);

/* ---- drivers as JSON text ---------------------------------------------------
 * One writer of the documents predictions and prediction_history store (and
 * /api/predict answers with), one reader of the stored contributions. Text
 * goes straight into a ds_sb_t: a nightly rescore writes three documents
 * per deal for a million deals, and building and dumping jansson trees would be
 * most of its CPU. Numbers: float values (contributions, feature values)
 * with the 9 significant digits that keep them exact, others (probability
 * points, a stage prior's contributions) with 17; NaN and infinities as
 * null. */

/* Appends {"positive":[D,..],"negative":[D,..]} to b, D = {"feature":name,
 * "label":label (the name without one),"display":..(only with one),
 * "index":..,"value":..|null,"contribution":..,"pp":..}, in the order
 * given. */
void ds_drivers_write(ds_sb_t *b, const ds_driver_t *pos, size_t n_pos, const ds_driver_t *neg, size_t n_neg);

/* Appends [{"feature":name,"label":..,"display":..,"value":..|null,
 * "previous":..|null,"current":..|null,"change":..}, ...] to b, in the
 * order given ("display" and "value" only on entries with a display). */
void ds_drivers_diff_write(ds_sb_t *b, const ds_contrib_change_t *changes, size_t n);

/* Appends a score's change, the one shape predictions.change,
 * prediction_history.change and /api/predict's "change" have (and
 * prediction.made's PredictionChange carries field for field):
 * {"previous_proba":p|null,"delta":proba-p|null,"drivers":[..]}, drivers as
 * ds_drivers_diff_write writes them. previous_proba NaN: no previous score
 * (null, null, and the drivers given, normally none). */
void ds_score_change_write(ds_sb_t *b, double previous_proba, double proba,
                           const ds_contrib_change_t *changes, size_t n);

/* Appends {"<name>":contribution, ...} to b in the order given: a score's
 * contributions by feature name, "_bias" (DS_CONTRIB_BIAS_NAME) last as
 * the scorer has them, stored as the next score's "previous". */
void ds_contribs_write(ds_sb_t *b, const ds_named_contrib_t *c, size_t n);

/* Reads an object of numbers, as ds_contribs_write writes it or as
 * Postgres prints it back from jsonb (spaces after ':' and ','), into a new
 * array *out of *n entries (free it with free()). The text is modified in
 * place: the names are unescaped into it and point into it. Returns 0, or
 * DS_EINVAL (*out NULL) for anything else: a value that is not a number,
 * nesting, an escaped NUL, text after the object. */
int ds_contribs_parse(char *text, ds_named_contrib_t **out, size_t *n);

/* ---- stage prior (cold start) ---------------------------------------------- */

/* The model version of scores made by the stage prior. */
#define DS_STAGE_PRIOR_VERSION "stage-prior"
/* Pseudo-count m of p(stage) = (wins_s + m * org_rate) / (n_s + m). */
#define DS_STAGE_PRIOR_SMOOTHING 10.0

typedef struct ds_stage_prior ds_stage_prior_t;

/* Fits the stage prior on the checkpoints of closed deals: stage[i] is the
 * stage index at the checkpoint (the engine's stage_index; negative for
 * unknown, which counts towards the org rate only), won[i] 1 or 0, weight
 * NULL = 1. p(stage) = (wins_s + m * org_rate) / (n_s + m) with weighted
 * counts and org_rate the weighted win rate over all rows. m >= 0 (use
 * DS_STAGE_PRIOR_SMOOTHING). Returns 0 and sets *out (free with
 * ds_stage_prior_destroy), or DS_EINVAL with errstr (no rows or zero total
 * weight, bad label or weight, m < 0 or not finite). */
int ds_stage_prior_fit(const int *stage, const double *won, const double *weight, size_t n, double m,
                       ds_stage_prior_t **out, char *errstr, size_t errstr_size);

/* p(stage); the org rate for a stage never seen in training or negative.
 * Convert the engine's float stage_index with NaN -> -1. */
double ds_stage_prior_predict(const ds_stage_prior_t *sp, int stage);

/* The weighted org win rate. */
double ds_stage_prior_org_rate(const ds_stage_prior_t *sp);

/* The stage's weighted count of rows (0 for a stage never seen or
 * negative). */
double ds_stage_prior_count(const ds_stage_prior_t *sp, int stage);

/* {"version":"stage-prior","m":..,"org_rate":..,"n":..,"stages":[{"stage":0,
 * "n":..,"wins":..,"p":..},...]} with stages ascending, numbers at full
 * precision. Returns a string the caller frees with free(); never NULL. */
char *ds_stage_prior_to_json(const ds_stage_prior_t *sp);

/* Parses ds_stage_prior_to_json's output (p is recomputed from n, wins, m
 * and org_rate). Returns 0 and sets *out, or DS_EINVAL with errstr. */
int ds_stage_prior_from_json(const char *json, ds_stage_prior_t **out, char *errstr, size_t errstr_size);

/* Frees the prior; does nothing with NULL. */
void ds_stage_prior_destroy(ds_stage_prior_t *sp);

#endif
