/* The model layer of scoring: XGBoost wrapper, calibration, drivers and the
 * stage prior (see model.h). */
#include "domain/model.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <xgboost/c_api.h>

#include "base/common.h"
#include "base/sb.h"
#include "domain/features.h"
#include "base/log.h"
#include "base/strindex.h"
#include "domain/treeshap.h"

#define ERR(...)                                                                                             \
    do {                                                                                                     \
        if (errstr && errstr_size) snprintf(errstr, errstr_size, __VA_ARGS__);                               \
    } while (0)

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- model ---------------------------------------------------------------- */

struct ds_model {
    BoosterHandle bst;
    size_t n_features;
    char **names;
    ds_treeshap_t *ts; /* our engine over the same trees; NULL: XGBoost predicts */
};

/* XGBoost's own message of the last failed call on this thread. */
static int xgb_fail(char *errstr, size_t errstr_size, const char *what) {
    const char *msg = XGBGetLastError();
    ERR("%s: %s", what, msg && *msg ? msg : "unknown XGBoost error");
    return DS_EFATAL;
}

void ds_model_params_default(ds_model_params_t *p) {
    *p = (ds_model_params_t){.n_trees = 300,
                             .max_depth = 6,
                             .eta = 0.05,
                             .min_child_weight = 1.0,
                             .subsample = 0.8,
                             .seed = 0,
                             .nthread = 0};
}

static int check_params(const ds_model_params_t *p, char *errstr, size_t errstr_size) {
    if (p->n_trees < 1 || p->n_trees > 100000) {
        ERR("n_trees %d is outside 1 .. 100000", p->n_trees);
        return DS_EINVAL;
    }
    if (p->max_depth < 1 || p->max_depth > 30) {
        ERR("max_depth %d is outside 1 .. 30", p->max_depth);
        return DS_EINVAL;
    }
    if (!(p->eta > 0 && p->eta <= 1)) {
        ERR("eta %g is outside (0, 1]", p->eta);
        return DS_EINVAL;
    }
    if (!(p->min_child_weight >= 0 && isfinite(p->min_child_weight))) {
        ERR("min_child_weight %g is negative or not finite", p->min_child_weight);
        return DS_EINVAL;
    }
    if (!(p->subsample > 0 && p->subsample <= 1)) {
        ERR("subsample %g is outside (0, 1]", p->subsample);
        return DS_EINVAL;
    }
    if (p->seed < 0 || p->nthread < 0) {
        ERR("seed and nthread must not be negative");
        return DS_EINVAL;
    }
    return 0;
}

static int set_param(BoosterHandle bst, const char *name, const char *value, char *errstr,
                     size_t errstr_size) {
    if (XGBoosterSetParam(bst, name, value) != 0) {
        char what[96];
        snprintf(what, sizeof what, "could not set %s=%s", name, value);
        return xgb_fail(errstr, errstr_size, what);
    }
    return 0;
}

/* Checks the training input: names present and distinct, labels 0 or 1,
 * weights finite, not negative and not all 0. */
static int check_training_set(size_t n_rows, size_t n_features, const char *const *names, const float *label,
                              const float *weight, char *errstr, size_t errstr_size) {
    if (n_rows == 0 || n_features == 0 || n_features > INT_MAX) {
        ERR("training needs at least one row and one feature (got %zu x %zu)", n_rows, n_features);
        return DS_EINVAL;
    }
    for (size_t j = 0; j < n_features; j++) {
        if (!names[j] || !*names[j]) {
            ERR("feature %zu has no name", j);
            return DS_EINVAL;
        }
        for (size_t k = 0; k < j; k++) {
            if (strcmp(names[j], names[k]) == 0) {
                ERR("feature name '%s' appears twice", names[j]);
                return DS_EINVAL;
            }
        }
    }
    double wsum = 0;
    for (size_t i = 0; i < n_rows; i++) {
        if (!(label[i] == 0.0f || label[i] == 1.0f)) {
            ERR("row %zu: label %g is not 0 or 1", i, (double)label[i]);
            return DS_EINVAL;
        }
        if (weight) {
            if (!isfinite(weight[i]) || weight[i] < 0) {
                ERR("row %zu: weight %g is negative or not finite", i, (double)weight[i]);
                return DS_EINVAL;
            }
            wsum += weight[i];
        }
    }
    if (weight && wsum <= 0) {
        ERR("every weight is 0");
        return DS_EINVAL;
    }
    return 0;
}

static int set_int_param(BoosterHandle bst, const char *name, int value, char *errstr, size_t errstr_size) {
    char v[32];
    snprintf(v, sizeof v, "%d", value);
    return set_param(bst, name, v, errstr, errstr_size);
}

/* Every digit a double has, so the booster trains on exactly p's value. */
static int set_double_param(BoosterHandle bst, const char *name, double value, char *errstr,
                            size_t errstr_size) {
    char v[64];
    snprintf(v, sizeof v, "%.17g", value);
    return set_param(bst, name, v, errstr, errstr_size);
}

/* The booster's parameters: the objective, hist trees, and p's. */
static int set_params(BoosterHandle bst, const ds_model_params_t *p, char *errstr, size_t errstr_size) {
    if (set_param(bst, "objective", "binary:logistic", errstr, errstr_size) ||
        set_param(bst, "tree_method", "hist", errstr, errstr_size) ||
        set_int_param(bst, "max_depth", p->max_depth, errstr, errstr_size) ||
        set_double_param(bst, "eta", p->eta, errstr, errstr_size) ||
        set_double_param(bst, "min_child_weight", p->min_child_weight, errstr, errstr_size) ||
        set_double_param(bst, "subsample", p->subsample, errstr, errstr_size) ||
        set_int_param(bst, "seed", p->seed, errstr, errstr_size) ||
        set_int_param(bst, "nthread", p->nthread, errstr, errstr_size))
        return DS_EFATAL;
    return 0;
}

/* The trained booster as a model loaded from its JSON: reloading drops the
 * training state (gradients, histogram cuts, the DMatrix cache) and makes
 * a fresh model behave exactly as a loaded one. */
static int reload_trained(BoosterHandle bst, int nthread, ds_model_t **out, char *errstr,
                          size_t errstr_size) {
    bst_ulong len = 0;
    const char *raw = NULL;
    if (XGBoosterSaveModelToBuffer(bst, "{\"format\":\"json\"}", &len, &raw) != 0)
        return xgb_fail(errstr, errstr_size, "could not serialize the trained model");
    /* Copy before the next XGBoost call reuses the buffer. */
    char *buf = ds_malloc((size_t)len + 1);
    memcpy(buf, raw, (size_t)len);
    buf[len] = '\0';
    int rc = ds_model_load(buf, (size_t)len, nthread, out, errstr, errstr_size);
    free(buf);
    return rc == DS_EINVAL ? DS_EFATAL : rc;
}

int ds_model_train(const ds_model_params_t *p, const float *x, size_t n_rows, size_t n_features,
                   const char *const *names, const float *label, const float *weight, ds_model_t **out,
                   char *errstr, size_t errstr_size) {
    if (!p || !x || !names || !label || !out) {
        ERR("missing parameters, matrix, names, labels or output");
        return DS_EINVAL;
    }
    *out = NULL;
    int rc = check_params(p, errstr, errstr_size);
    if (rc == 0) rc = check_training_set(n_rows, n_features, names, label, weight, errstr, errstr_size);
    if (rc) return rc;

    DMatrixHandle dtrain = NULL;
    BoosterHandle bst = NULL;
    rc = DS_EFATAL;
    if (XGDMatrixCreateFromMat(x, (bst_ulong)n_rows, (bst_ulong)n_features, NAN, &dtrain) != 0) {
        xgb_fail(errstr, errstr_size, "could not build the training matrix");
        goto done;
    }
    if (XGDMatrixSetFloatInfo(dtrain, "label", label, (bst_ulong)n_rows) != 0 ||
        (weight && XGDMatrixSetFloatInfo(dtrain, "weight", weight, (bst_ulong)n_rows) != 0) ||
        XGDMatrixSetStrFeatureInfo(dtrain, "feature_name", (const char **)names, (bst_ulong)n_features) !=
            0) {
        xgb_fail(errstr, errstr_size, "could not set labels, weights or feature names");
        goto done;
    }
    if (XGBoosterCreate(&dtrain, 1, &bst) != 0) {
        xgb_fail(errstr, errstr_size, "could not create the booster");
        goto done;
    }
    if (set_params(bst, p, errstr, errstr_size)) goto done;
    for (int it = 0; it < p->n_trees; it++) {
        if (XGBoosterUpdateOneIter(bst, it, dtrain) != 0) {
            xgb_fail(errstr, errstr_size, "training failed");
            goto done;
        }
    }
    /* The booster takes no names from the DMatrix by itself (the Python
     * package copies them too); they must be in the artifact. */
    if (XGBoosterSetStrFeatureInfo(bst, "feature_name", (const char **)names, (bst_ulong)n_features) != 0) {
        xgb_fail(errstr, errstr_size, "could not store the feature names");
        goto done;
    }
    rc = reload_trained(bst, p->nthread, out, errstr, errstr_size);

done:
    if (bst) XGBoosterFree(bst);
    if (dtrain) XGDMatrixFree(dtrain);
    return rc;
}

int ds_model_save(const ds_model_t *m, char **buf, size_t *len, char *errstr, size_t errstr_size) {
    if (!m || !buf || !len) {
        ERR("missing model or output");
        return DS_EINVAL;
    }
    bst_ulong n = 0;
    const char *raw = NULL;
    if (XGBoosterSaveModelToBuffer(m->bst, "{\"format\":\"json\"}", &n, &raw) != 0)
        return xgb_fail(errstr, errstr_size, "could not serialize the model");
    *buf = ds_malloc((size_t)n + 1);
    memcpy(*buf, raw, (size_t)n);
    (*buf)[n] = '\0';
    *len = (size_t)n;
    return 0;
}

/* The objective's name from the booster's JSON configuration, or NULL. */
static char *objective_name(BoosterHandle bst) {
    bst_ulong len = 0;
    const char *cfg = NULL;
    if (XGBoosterSaveJsonConfig(bst, &len, &cfg) != 0) return NULL;
    json_t *root = json_loadb(cfg, (size_t)len, 0, NULL);
    const char *name = json_string_value(
        json_object_get(json_object_get(json_object_get(root, "learner"), "objective"), "name"));
    char *copy = name ? ds_strdup(name) : NULL;
    json_decref(root);
    return copy;
}

/* Builds our TreeSHAP engine from the booster's own JSON (whatever format
 * the artifact came in). A model the engine does not handle still works,
 * through XGBoost, only slower: say so once. */
static void build_treeshap(ds_model_t *m) {
    bst_ulong len = 0;
    const char *raw = NULL;
    char err[256] = "";
    if (XGBoosterSaveModelToBuffer(m->bst, "{\"format\":\"json\"}", &len, &raw) != 0) {
        ds_warn("could not build the TreeSHAP engine, XGBoost explains scores: %s", XGBGetLastError());
        return;
    }
    if (ds_treeshap_new(raw, (size_t)len, DS_TREESHAP_TABLE_BITS, &m->ts, err, sizeof err) != 0) {
        ds_warn("could not build the TreeSHAP engine, XGBoost explains scores: %s", err);
        return;
    }
    if (ds_treeshap_n_features(m->ts) != m->n_features) {
        ds_warn("could not build the TreeSHAP engine, XGBoost explains scores: %zu features in "
                "the trees for %zu in the model",
                ds_treeshap_n_features(m->ts), m->n_features);
        ds_treeshap_destroy(m->ts);
        m->ts = NULL;
    }
}

int ds_model_load(const void *buf, size_t len, int nthread, ds_model_t **out, char *errstr,
                  size_t errstr_size) {
    if (!buf || !len || !out || nthread < 0) {
        ERR("missing or empty model artifact");
        return DS_EINVAL;
    }
    *out = NULL;
    BoosterHandle bst = NULL;
    ds_model_t *m = NULL;
    char *objective = NULL;
    int rc = DS_EINVAL;
    if (XGBoosterCreate(NULL, 0, &bst) != 0) {
        rc = xgb_fail(errstr, errstr_size, "could not create a booster");
        goto fail;
    }
    if (XGBoosterLoadModelFromBuffer(bst, buf, (bst_ulong)len) != 0) {
        xgb_fail(errstr, errstr_size, "could not read the model artifact");
        goto fail;
    }
    char v[32];
    snprintf(v, sizeof v, "%d", nthread);
    if (XGBoosterSetParam(bst, "nthread", v) != 0) {
        rc = xgb_fail(errstr, errstr_size, "could not set nthread");
        goto fail;
    }
    objective = objective_name(bst);
    if (!objective || strcmp(objective, "binary:logistic") != 0) {
        ERR("model objective is %s, not binary:logistic", objective ? objective : "unknown");
        goto fail;
    }
    bst_ulong n_features = 0, n_names = 0;
    const char **names = NULL;
    if (XGBoosterGetNumFeature(bst, &n_features) != 0 ||
        XGBoosterGetStrFeatureInfo(bst, "feature_name", &n_names, &names) != 0) {
        xgb_fail(errstr, errstr_size, "could not read the model's features");
        goto fail;
    }
    if (n_names == 0) {
        ERR("model has no feature names: dealscore maps features by name");
        goto fail;
    }
    if (n_names != n_features) {
        ERR("model has %llu feature names for %llu features", (unsigned long long)n_names,
            (unsigned long long)n_features);
        goto fail;
    }
    m = ds_calloc(1, sizeof *m);
    m->bst = bst;
    bst = NULL; /* now owned by m */
    m->n_features = (size_t)n_features;
    m->names = ds_calloc(m->n_features, sizeof *m->names);
    for (size_t j = 0; j < m->n_features; j++) m->names[j] = ds_strdup(names[j]);

    /* Warm-up: the first prediction configures the learner lazily (and
     * mutates it); do it now, on this thread, so concurrent predictions
     * later only read. */
    float *row = ds_malloc(m->n_features * sizeof *row);
    for (size_t j = 0; j < m->n_features; j++) row[j] = NAN;
    double margin;
    rc = ds_model_predict_margin_xgb(m, row, 1, &margin, errstr, errstr_size);
    free(row);
    if (rc) goto fail;
    build_treeshap(m);
    free(objective);
    *out = m;
    return 0;

fail:
    free(objective);
    ds_model_destroy(m);
    if (bst) XGBoosterFree(bst);
    return rc;
}

void ds_model_destroy(ds_model_t *m) {
    if (!m) return;
    if (m->bst) XGBoosterFree(m->bst);
    ds_treeshap_destroy(m->ts);
    if (m->names)
        for (size_t j = 0; j < m->n_features; j++) free(m->names[j]);
    free(m->names);
    free(m);
}

size_t ds_model_n_features(const ds_model_t *m) { return m->n_features; }

const char *const *ds_model_feature_names(const ds_model_t *m, size_t *n) {
    if (n) *n = m->n_features;
    return (const char *const *)m->names;
}

int ds_model_feature_map(const ds_model_t *m, const char *const *engine_names, size_t n, int *map,
                         char *errstr, size_t errstr_size) {
    if (!m || !map || (n && !engine_names) || n > INT_MAX) {
        ERR("missing model, engine names or map");
        return DS_EINVAL;
    }
    for (size_t j = 0; j < m->n_features; j++) {
        map[j] = -1;
        for (size_t i = 0; i < n; i++) {
            if (engine_names[i] && strcmp(engine_names[i], m->names[j]) == 0) {
                map[j] = (int)i;
                break;
            }
        }
        if (map[j] < 0) {
            ERR("model feature '%s' is not computed by the feature engine", m->names[j]);
            return DS_EINVAL;
        }
    }
    return 0;
}

/* One prediction of the given XGBoost type on a fresh DMatrix (XGBoost
 * caches predictions per DMatrix, and a fresh one per call keeps threads
 * apart). Copies n_rows * cols values into out_f or out_d. */
static int predict(const ds_model_t *m, const float *x, size_t n_rows, int type, size_t cols, float *out_f,
                   double *out_d, char *errstr, size_t errstr_size) {
    if (!m || !x || !n_rows || (!out_f && !out_d)) {
        ERR("missing model, rows or output");
        return DS_EINVAL;
    }
    DMatrixHandle dm = NULL;
    if (XGDMatrixCreateFromMat(x, (bst_ulong)n_rows, (bst_ulong)m->n_features, NAN, &dm) != 0)
        return xgb_fail(errstr, errstr_size, "could not build the prediction matrix");
    char cfg[128];
    snprintf(cfg, sizeof cfg,
             "{\"type\":%d,\"training\":false,\"iteration_begin\":0,\"iteration_end\":0,"
             "\"strict_shape\":false}",
             type);
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0;
    const float *res = NULL;
    int rc = 0;
    if (XGBoosterPredictFromDMatrix(m->bst, dm, cfg, &shape, &dim, &res) != 0) {
        rc = xgb_fail(errstr, errstr_size, "prediction failed");
        goto done;
    }
    size_t total = 1;
    for (bst_ulong d = 0; d < dim; d++) total *= (size_t)shape[d];
    if (dim < 1 || shape[0] != n_rows || total != n_rows * cols) {
        ERR("prediction has an unexpected shape (%llu dimensions, %zu values for %zu x %zu)",
            (unsigned long long)dim, total, n_rows, cols);
        rc = DS_EFATAL;
        goto done;
    }
    if (out_f)
        memcpy(out_f, res, total * sizeof *out_f);
    else
        for (size_t i = 0; i < total; i++) out_d[i] = (double)res[i];
done:
    XGDMatrixFree(dm);
    return rc;
}

int ds_model_predict_margin_xgb(const ds_model_t *m, const float *x, size_t n_rows, double *out, char *errstr,
                                size_t errstr_size) {
    return predict(m, x, n_rows, 1, 1, NULL, out, errstr, errstr_size);
}

int ds_model_predict_margin(const ds_model_t *m, const float *x, size_t n_rows, double *out, char *errstr,
                            size_t errstr_size) {
    if (!m || !m->ts) return ds_model_predict_margin_xgb(m, x, n_rows, out, errstr, errstr_size);
    if (!x || !n_rows || !out) {
        ERR("missing model, rows or output");
        return DS_EINVAL;
    }
    ds_treeshap_margin(m->ts, x, n_rows, out);
    return 0;
}

int ds_model_predict_proba(const ds_model_t *m, const float *x, size_t n_rows, double *out, char *errstr,
                           size_t errstr_size) {
    int rc = ds_model_predict_margin(m, x, n_rows, out, errstr, errstr_size);
    if (rc) return rc;
    for (size_t i = 0; i < n_rows; i++) out[i] = sigmoid(out[i]);
    return 0;
}

int ds_model_contribs_xgb(const ds_model_t *m, const float *x, size_t n_rows, float *out, char *errstr,
                          size_t errstr_size) {
    if (!m) return DS_EINVAL;
    return predict(m, x, n_rows, 2, m->n_features + 1, out, NULL, errstr, errstr_size);
}

int ds_model_contribs(const ds_model_t *m, const float *x, size_t n_rows, float *out, char *errstr,
                      size_t errstr_size) {
    if (!m || !m->ts) return ds_model_contribs_xgb(m, x, n_rows, out, errstr, errstr_size);
    if (!x || !n_rows || !out) {
        ERR("missing model, rows or output");
        return DS_EINVAL;
    }
    ds_treeshap_contribs(m->ts, x, n_rows, out);
    return 0;
}

bool ds_model_has_treeshap(const ds_model_t *m) { return m && m->ts; }

void ds_contribs_mean_abs(const float *contribs, size_t n_rows, size_t n_features, double *out) {
    for (size_t j = 0; j < n_features; j++) out[j] = 0;
    if (!n_rows) return;
    for (size_t r = 0; r < n_rows; r++) {
        const float *row = contribs + r * (n_features + 1);
        for (size_t j = 0; j < n_features; j++) out[j] += fabs((double)row[j]);
    }
    for (size_t j = 0; j < n_features; j++) out[j] /= (double)n_rows;
}

/* ---- calibration ---------------------------------------------------------- */

/* Validates a calibration fold; counts weighted positives and negatives. */
static int check_fold(const double *margin, const double *label, const double *weight, size_t n, double *pos,
                      double *neg, char *errstr, size_t errstr_size) {
    if (!margin || !label || n < 2) {
        ERR("calibration needs at least 2 rows");
        return DS_EINVAL;
    }
    *pos = *neg = 0;
    for (size_t i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0;
        if (!(label[i] == 0.0 || label[i] == 1.0)) {
            ERR("calibration row %zu: label %g is not 0 or 1", i, label[i]);
            return DS_EINVAL;
        }
        if (!isfinite(w) || w < 0) {
            ERR("calibration row %zu: weight %g is negative or not finite", i, w);
            return DS_EINVAL;
        }
        if (!isfinite(margin[i])) {
            ERR("calibration row %zu: margin is not finite", i);
            return DS_EINVAL;
        }
        if (label[i] == 1.0)
            *pos += w;
        else
            *neg += w;
    }
    if (*pos <= 0 || *neg <= 0) {
        ERR("calibration fold has no %s", *pos <= 0 ? "won deals" : "lost deals");
        return DS_EINVAL;
    }
    return 0;
}

/* ln(1 + e^f) without overflow. */
static double log1pexp(double f) { return f > 0 ? f + log1p(exp(-f)) : log1p(exp(f)); }

static double platt_loss(double a, double b, const double *margin, const double *t, const double *weight,
                         size_t n) {
    double loss = 0;
    for (size_t i = 0; i < n; i++) {
        double f = a * margin[i] + b, w = weight ? weight[i] : 1.0;
        loss += w * (log1pexp(f) - t[i] * f);
    }
    return loss;
}

int ds_calib_fit_platt(const double *margin, const double *label, const double *weight, size_t n,
                       ds_calib_t **out, char *errstr, size_t errstr_size) {
    if (!out) return DS_EINVAL;
    *out = NULL;
    double pos, neg;
    int rc = check_fold(margin, label, weight, n, &pos, &neg, errstr, errstr_size);
    if (rc) return rc;
    double hi = (pos + 1) / (pos + 2), lo = 1 / (neg + 2);
    double *t = ds_malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) t[i] = label[i] == 1.0 ? hi : lo;

    /* Margins are already log-odds: start from the identity. */
    double a = 1, b = 0, loss = platt_loss(a, b, margin, t, weight, n);
    for (int it = 0; it < 100; it++) {
        double ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
        for (size_t i = 0; i < n; i++) {
            double w = weight ? weight[i] : 1.0, mi = margin[i];
            double p = sigmoid(a * mi + b), d = w * (p - t[i]), h = w * p * (1 - p);
            ga += d * mi;
            gb += d;
            haa += h * mi * mi;
            hab += h * mi;
            hbb += h;
        }
        /* A tiny ridge keeps the 2x2 system solvable when every margin is
         * equal (then a is not identified and stays where it is). */
        haa += 1e-12;
        hbb += 1e-12;
        double det = haa * hbb - hab * hab;
        if (!(det > 0)) break;
        double da = -(hbb * ga - hab * gb) / det, db = -(haa * gb - hab * ga) / det;
        double slope = ga * da + gb * db, step = 1, next = loss;
        while (step > 1e-12) {
            next = platt_loss(a + step * da, b + step * db, margin, t, weight, n);
            if (next <= loss + 1e-4 * step * slope) break;
            step /= 2;
        }
        if (step <= 1e-12) break;
        a += step * da;
        b += step * db;
        double moved = fabs(step * da) + fabs(step * db);
        loss = next;
        if (moved < 1e-12 * (1 + fabs(a) + fabs(b))) break;
    }
    free(t);
    if (!(a > 0) || !isfinite(a) || !isfinite(b)) {
        ERR("platt slope %g is not positive: the model does not rank the calibration fold", a);
        return DS_EINVAL;
    }
    ds_calib_t *cal = ds_calloc(1, sizeof *cal);
    cal->method = DS_CALIB_PLATT;
    cal->a = a;
    cal->b = b;
    *out = cal;
    return 0;
}

typedef struct {
    double x, y, w;
} xyw_t;

static int cmp_xyw(const void *pa, const void *pb) {
    double a = ((const xyw_t *)pa)->x, b = ((const xyw_t *)pb)->x;
    return (a > b) - (a < b);
}

static double clip_prob(double p) {
    return fmin(fmax(p, DS_CALIB_ISOTONIC_EPS), 1.0 - DS_CALIB_ISOTONIC_EPS);
}

int ds_calib_fit_isotonic(const double *margin, const double *label, const double *weight, size_t n,
                          ds_calib_t **out, char *errstr, size_t errstr_size) {
    if (!out) return DS_EINVAL;
    *out = NULL;
    double pos, neg;
    int rc = check_fold(margin, label, weight, n, &pos, &neg, errstr, errstr_size);
    if (rc) return rc;
    xyw_t *pts = ds_malloc(n * sizeof *pts);
    for (size_t i = 0; i < n; i++) pts[i] = (xyw_t){sigmoid(margin[i]), label[i], weight ? weight[i] : 1.0};
    qsort(pts, n, sizeof *pts, cmp_xyw);

    /* Pool equal x (sum of w*y in .y, sum of w in .w), dropping weightless
     * points, then pool adjacent violators. A block is [lo, hi] of the
     * pooled points with the block's sums. */
    typedef struct {
        double wy, w, x_lo, x_hi;
    } block_t;
    block_t *blk = ds_malloc(n * sizeof *blk);
    size_t nb = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double wy = 0, w = 0;
        while (j < n && pts[j].x == pts[i].x) {
            wy += pts[j].w * pts[j].y;
            w += pts[j].w;
            j++;
        }
        if (w > 0) {
            blk[nb++] = (block_t){wy, w, pts[i].x, pts[i].x};
            /* Merge while the previous block's mean is >= the last one's:
             * equal means merge too, which only removes breakpoints. */
            while (nb >= 2 && blk[nb - 2].wy * blk[nb - 1].w >= blk[nb - 1].wy * blk[nb - 2].w) {
                blk[nb - 2].wy += blk[nb - 1].wy;
                blk[nb - 2].w += blk[nb - 1].w;
                blk[nb - 2].x_hi = blk[nb - 1].x_hi;
                nb--;
            }
        }
        i = j;
    }
    free(pts);
    ds_calib_t *cal = ds_calloc(1, sizeof *cal);
    cal->method = DS_CALIB_ISOTONIC;
    cal->x = ds_malloc(2 * nb * sizeof *cal->x);
    cal->y = ds_malloc(2 * nb * sizeof *cal->y);
    for (size_t b = 0; b < nb; b++) {
        double y = clip_prob(blk[b].wy / blk[b].w);
        cal->x[cal->n] = blk[b].x_lo;
        cal->y[cal->n++] = y;
        if (blk[b].x_hi > blk[b].x_lo) {
            cal->x[cal->n] = blk[b].x_hi;
            cal->y[cal->n++] = y;
        }
    }
    free(blk);
    *out = cal;
    return 0;
}

int ds_calib_fit(const double *margin, const double *label, const double *weight, size_t n, ds_calib_t **out,
                 char *errstr, size_t errstr_size) {
    if (n >= DS_CALIB_ISOTONIC_MIN_ROWS)
        return ds_calib_fit_isotonic(margin, label, weight, n, out, errstr, errstr_size);
    return ds_calib_fit_platt(margin, label, weight, n, out, errstr, errstr_size);
}

double ds_calib_apply(const ds_calib_t *cal, double margin) {
    if (!cal) return sigmoid(margin);
    if (cal->method == DS_CALIB_PLATT) return sigmoid(cal->a * margin + cal->b);
    double x = sigmoid(margin);
    if (isnan(x)) return NAN;
    if (x <= cal->x[0]) return cal->y[0];
    if (x >= cal->x[cal->n - 1]) return cal->y[cal->n - 1];
    /* The last breakpoint with x[lo] <= x; then x < x[lo + 1]. */
    size_t lo = 0, hi = cal->n - 1;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (cal->x[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    double t = (x - cal->x[lo]) / (cal->x[lo + 1] - cal->x[lo]);
    return cal->y[lo] + t * (cal->y[lo + 1] - cal->y[lo]);
}

const char *ds_calib_method_name(ds_calib_method_t method) {
    return method == DS_CALIB_PLATT ? "platt" : method == DS_CALIB_ISOTONIC ? "isotonic" : "none";
}

/* o as compact JSON in a string of ours (ds_malloc'd: the caller frees it);
 * o is released. */
static char *take_compact_json(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    ds_assert(s);
    char *copy = ds_strdup(s);
    free(s);
    return copy;
}

char *ds_calib_to_json(const ds_calib_t *cal) {
    json_t *o = json_object();
    json_object_set_new(o, "method", json_string(ds_calib_method_name(cal->method)));
    if (cal->method == DS_CALIB_PLATT) {
        json_object_set_new(o, "a", json_real(cal->a));
        json_object_set_new(o, "b", json_real(cal->b));
    } else {
        json_t *x = json_array(), *y = json_array();
        for (size_t i = 0; i < cal->n; i++) {
            json_array_append_new(x, json_real(cal->x[i]));
            json_array_append_new(y, json_real(cal->y[i]));
        }
        json_object_set_new(o, "x", x);
        json_object_set_new(o, "y", y);
    }
    /* jansson prints reals with 17 significant digits: exact round trip. */
    return take_compact_json(o);
}

int ds_calib_from_json(const char *text, ds_calib_t **out, char *errstr, size_t errstr_size) {
    if (!text || !out) {
        ERR("missing calibration JSON");
        return DS_EINVAL;
    }
    *out = NULL;
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    if (!json_is_object(o)) {
        ERR("calibration is not a JSON object: %s", o ? "wrong type" : jerr.text);
        json_decref(o);
        return DS_EINVAL;
    }
    ds_calib_t *cal = ds_calloc(1, sizeof *cal);
    const char *method = json_string_value(json_object_get(o, "method"));
    int rc = DS_EINVAL;
    if (method && strcmp(method, "platt") == 0) {
        json_t *a = json_object_get(o, "a"), *b = json_object_get(o, "b");
        cal->method = DS_CALIB_PLATT;
        cal->a = json_number_value(a);
        cal->b = json_number_value(b);
        if (!json_is_number(a) || !json_is_number(b) || !(cal->a > 0) || !isfinite(cal->a) ||
            !isfinite(cal->b)) {
            ERR("platt calibration needs numbers a > 0 and b");
            goto done;
        }
    } else if (method && strcmp(method, "isotonic") == 0) {
        json_t *x = json_object_get(o, "x"), *y = json_object_get(o, "y");
        cal->method = DS_CALIB_ISOTONIC;
        if (!json_is_array(x) || !json_is_array(y) || json_array_size(x) != json_array_size(y) ||
            json_array_size(x) == 0) {
            ERR("isotonic calibration needs arrays x and y of one non-zero length");
            goto done;
        }
        cal->n = json_array_size(x);
        cal->x = ds_malloc(cal->n * sizeof *cal->x);
        cal->y = ds_malloc(cal->n * sizeof *cal->y);
        for (size_t i = 0; i < cal->n; i++) {
            json_t *xi = json_array_get(x, i), *yi = json_array_get(y, i);
            cal->x[i] = json_number_value(xi);
            cal->y[i] = json_number_value(yi);
            if (!json_is_number(xi) || !json_is_number(yi) || !(cal->x[i] >= 0 && cal->x[i] <= 1) ||
                !(cal->y[i] >= 0 && cal->y[i] <= 1)) {
                ERR("isotonic breakpoint %zu is not a pair of numbers in [0, 1]", i);
                goto done;
            }
            if (i && !(cal->x[i] > cal->x[i - 1])) {
                ERR("isotonic x is not strictly increasing at %zu", i);
                goto done;
            }
            if (i && cal->y[i] < cal->y[i - 1]) {
                ERR("isotonic y decreases at %zu", i);
                goto done;
            }
        }
    } else {
        ERR("unknown calibration method %s", method ? method : "(none)");
        goto done;
    }
    rc = 0;
    *out = cal;
    cal = NULL; /* now owned by the caller */
done:
    ds_calib_destroy(cal);
    json_decref(o);
    return rc;
}

void ds_calib_destroy(ds_calib_t *cal) {
    if (!cal) return;
    free(cal->x);
    free(cal->y);
    free(cal);
}

/* ---- drivers ---------------------------------------------------------------- */

static const char *label_of(const char *name) {
    if (strcmp(name, DS_CONTRIB_BIAS_NAME) == 0) return "Model baseline";
    const char *label = ds_feature_label(ds_feature_index(name));
    return label ? label : name;
}

typedef struct {
    int idx;
    double c;
} idx_contrib_t;

/* Largest |c| first, then lower index. */
static int cmp_abs_desc(const void *pa, const void *pb) {
    const idx_contrib_t *a = pa, *b = pb;
    double x = fabs(a->c), y = fabs(b->c);
    if (x != y) return x > y ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

int ds_drivers_top(const float *contribs, size_t n_features, const float *values, const char *const *names,
                   const ds_calib_t *cal, size_t k, ds_driver_t *pos, size_t *n_pos, ds_driver_t *neg,
                   size_t *n_neg) {
    if (!contribs || !names || !n_pos || !n_neg || (k && (!pos || !neg)) || n_features > INT_MAX)
        return DS_EINVAL;
    *n_pos = *n_neg = 0;
    double margin = 0;
    for (size_t j = 0; j <= n_features; j++) {
        if (!isfinite(contribs[j])) return DS_EINVAL;
        margin += contribs[j];
    }
    for (size_t j = 0; j < n_features; j++)
        if (!names[j]) return DS_EINVAL;
    idx_contrib_t *p = ds_malloc((n_features ? n_features : 1) * sizeof *p);
    idx_contrib_t *q = ds_malloc((n_features ? n_features : 1) * sizeof *q);
    size_t np = 0, nq = 0;
    for (size_t j = 0; j < n_features; j++) {
        if (contribs[j] > 0) p[np++] = (idx_contrib_t){(int)j, contribs[j]};
        if (contribs[j] < 0) q[nq++] = (idx_contrib_t){(int)j, contribs[j]};
    }
    qsort(p, np, sizeof *p, cmp_abs_desc);
    qsort(q, nq, sizeof *q, cmp_abs_desc);
    double p_now = ds_calib_apply(cal, margin);
    for (int side = 0; side < 2; side++) {
        idx_contrib_t *src = side ? q : p;
        size_t n = side ? nq : np;
        ds_driver_t *dst = side ? neg : pos;
        size_t *count = side ? n_neg : n_pos;
        for (size_t i = 0; i < n && i < k; i++) {
            int j = src[i].idx;
            dst[i] = (ds_driver_t){.feature = j,
                                   .name = names[j],
                                   .label = label_of(names[j]),
                                   .value = values ? (double)values[j] : NAN,
                                   .contribution = src[i].c,
                                   .pp = 100.0 * (p_now - ds_calib_apply(cal, margin - src[i].c))};
            (*count)++;
        }
    }
    free(p);
    free(q);
    return 0;
}

/* Whether a name is missing or repeated (a string index rather than a sort:
 * a sort cost ~250 strcmp calls per 46-name list, twice per score of a
 * rescore). */
static int has_duplicate(const ds_named_contrib_t *a, size_t n) {
    if (n < 2) return n == 1 && !a[0].name;
    ds_strindex_t seen;
    ds_strindex_init(&seen, n);
    int dup = 0;
    for (size_t i = 0; i < n && !dup; i++)
        dup = !a[i].name || ds_strindex_add(&seen, a[i].name, (int)i) != (int)i;
    ds_strindex_free(&seen);
    return dup;
}

/* Largest |change| first, then name. */
static int cmp_change(const void *pa, const void *pb) {
    const ds_contrib_change_t *a = pa, *b = pb;
    double x = fabs(a->change), y = fabs(b->change);
    if (x != y) return x > y ? -1 : 1;
    return strcmp(a->name, b->name);
}

int ds_drivers_diff(const ds_named_contrib_t *prev, size_t n_prev, const ds_named_contrib_t *cur,
                    size_t n_cur, size_t k, ds_contrib_change_t *out, size_t *n_out) {
    if ((n_prev && !prev) || (n_cur && !cur) || (k && !out) || !n_out) return DS_EINVAL;
    *n_out = 0;
    if (has_duplicate(prev, n_prev) || has_duplicate(cur, n_cur)) return DS_EINVAL;
    size_t total = n_prev + n_cur;
    ds_contrib_change_t *all = ds_malloc((total ? total : 1) * sizeof *all);
    bool *matched = ds_calloc(n_prev ? n_prev : 1, sizeof *matched);
    size_t m = 0;
    for (size_t i = 0; i < n_cur; i++) {
        double before = NAN;
        /* Same model, same order: the name at the same place matches first. */
        size_t j0 = i < n_prev ? i : 0;
        for (size_t t = 0; t < n_prev; t++) {
            size_t j = (j0 + t) % n_prev;
            if (strcmp(prev[j].name, cur[i].name) == 0) {
                before = prev[j].contribution;
                matched[j] = true;
                break;
            }
        }
        all[m++] = (ds_contrib_change_t){.name = cur[i].name,
                                         .value = NAN,
                                         .previous = before,
                                         .current = cur[i].contribution,
                                         .change = cur[i].contribution - (isnan(before) ? 0 : before)};
    }
    for (size_t j = 0; j < n_prev; j++)
        if (!matched[j])
            all[m++] = (ds_contrib_change_t){.name = prev[j].name,
                                             .value = NAN,
                                             .previous = prev[j].contribution,
                                             .current = NAN,
                                             .change = -prev[j].contribution};
    free(matched);
    /* Drop zero (and non-finite) changes, then rank; labels only for the
     * ones kept (a label is a lookup by name). */
    size_t kept = 0;
    for (size_t i = 0; i < m; i++)
        if (all[i].change != 0 && isfinite(all[i].change)) all[kept++] = all[i];
    qsort(all, kept, sizeof *all, cmp_change);
    for (size_t i = 0; i < kept && i < k; i++) {
        out[*n_out] = all[i];
        out[*n_out].label = label_of(all[i].name);
        (*n_out)++;
    }
    free(all);
    return 0;
}

/* ---- drivers as JSON text ------------------------------------------------- */

/* A double exactly: 17 significant digits; null when not finite. */
static void sb_double(ds_sb_t *b, double v) {
    if (!isfinite(v)) {
        ds_sb_puts(b, "null");
        return;
    }
    char num[32];
    int n = ds_fmt_g(num, v, 17);
    ds_sb_put(b, num, (size_t)n);
}

/* A value of the scores: contributions and feature values are floats, for
 * which 9 significant digits are exact; other values (probabilities, pp,
 * the stage prior's contributions) keep 17. */
static void sb_real(ds_sb_t *b, double v) {
    if (isfinite(v) && (double)(float)v == v) {
        char num[32];
        int n = ds_fmt_g(num, v, 9);
        ds_sb_put(b, num, (size_t)n);
    } else {
        sb_double(b, v);
    }
}

/* The start of a driver or change object: {"feature":name,"label":label,
 * the label falling back to the name, then "display" when there is one. */
static void sb_feature_open(ds_sb_t *b, const char *name, const char *label, const char *display) {
    ds_sb_puts(b, "{\"feature\":");
    ds_sb_json_str(b, name);
    ds_sb_puts(b, ",\"label\":");
    ds_sb_json_str(b, label ? label : name);
    if (display) {
        ds_sb_puts(b, ",\"display\":");
        ds_sb_json_str(b, display);
    }
}

/* ,"key":v with v as sb_real writes it. */
static void sb_field(ds_sb_t *b, const char *key, double v) {
    ds_sb_put(b, ",\"", 2);
    ds_sb_puts(b, key);
    ds_sb_put(b, "\":", 2);
    sb_real(b, v);
}

static void sb_driver_list(ds_sb_t *b, const ds_driver_t *d, size_t n) {
    ds_sb_put(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        char num[32];
        if (i) ds_sb_put(b, ",", 1);
        sb_feature_open(b, d[i].name, d[i].label, d[i].display);
        ds_sb_put(b, num, (size_t)snprintf(num, sizeof num, ",\"index\":%d", d[i].feature));
        sb_field(b, "value", d[i].value);
        sb_field(b, "contribution", d[i].contribution);
        sb_field(b, "pp", d[i].pp);
        ds_sb_put(b, "}", 1);
    }
    ds_sb_put(b, "]", 1);
}

void ds_drivers_write(ds_sb_t *b, const ds_driver_t *pos, size_t n_pos, const ds_driver_t *neg,
                      size_t n_neg) {
    ds_sb_puts(b, "{\"positive\":");
    sb_driver_list(b, pos, n_pos);
    ds_sb_puts(b, ",\"negative\":");
    sb_driver_list(b, neg, n_neg);
    ds_sb_put(b, "}", 1);
}

void ds_drivers_diff_write(ds_sb_t *b, const ds_contrib_change_t *c, size_t n) {
    ds_sb_put(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i) ds_sb_put(b, ",", 1);
        sb_feature_open(b, c[i].name, c[i].label, c[i].display);
        if (c[i].display) sb_field(b, "value", c[i].value);
        sb_field(b, "previous", c[i].previous);
        sb_field(b, "current", c[i].current);
        sb_field(b, "change", c[i].change);
        ds_sb_put(b, "}", 1);
    }
    ds_sb_put(b, "]", 1);
}

void ds_score_change_write(ds_sb_t *b, double previous_proba, double proba, const ds_contrib_change_t *c,
                           size_t n) {
    ds_sb_puts(b, "{\"previous_proba\":");
    sb_double(b, previous_proba);
    ds_sb_puts(b, ",\"delta\":");
    sb_double(b, proba - previous_proba);
    ds_sb_puts(b, ",\"drivers\":");
    ds_drivers_diff_write(b, c, n);
    ds_sb_put(b, "}", 1);
}

void ds_contribs_write(ds_sb_t *b, const ds_named_contrib_t *c, size_t n) {
    ds_sb_put(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i) ds_sb_put(b, ",", 1);
        ds_sb_json_str(b, c[i].name);
        ds_sb_put(b, ":", 1);
        sb_real(b, c[i].contribution);
    }
    ds_sb_put(b, "}", 1);
}

static char *skip_ws(char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 0;
}

/* Writes code point u as UTF-8 at w; returns the byte after it. */
static char *put_utf8(char *w, unsigned u) {
    if (u < 0x80) {
        *w++ = (char)u;
    } else if (u < 0x800) {
        *w++ = (char)(0xc0 | (u >> 6));
        *w++ = (char)(0x80 | (u & 0x3f));
    } else if (u < 0x10000) {
        *w++ = (char)(0xe0 | (u >> 12));
        *w++ = (char)(0x80 | ((u >> 6) & 0x3f));
        *w++ = (char)(0x80 | (u & 0x3f));
    } else {
        *w++ = (char)(0xf0 | (u >> 18));
        *w++ = (char)(0x80 | ((u >> 12) & 0x3f));
        *w++ = (char)(0x80 | ((u >> 6) & 0x3f));
        *w++ = (char)(0x80 | (u & 0x3f));
    }
    return w;
}

/* Reads the JSON string at *pp (past its opening quote), unescaping it in
 * place (the text never grows: an escape is longer than what it stands
 * for) and NUL-terminating it. Returns its start, *pp past the closing
 * quote, or NULL for a malformed string or an escaped NUL. */
static char *parse_string(char **pp) {
    char *p = *pp, *w = p, *start = p;
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') break;
        if (c < 0x20) return NULL; /* the end of the text, or a raw control character */
        if (c != '\\') {
            *w++ = *p++;
            continue;
        }
        p++;
        switch (*p++) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned u, lo;
            if (hex4(p, &u) != 0 || u == 0) return NULL;
            p += 4;
            if (u >= 0xd800 && u <= 0xdbff) {
                if (p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                    return NULL;
                p += 6;
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            } else if (u >= 0xdc00 && u <= 0xdfff) {
                return NULL;
            }
            w = put_utf8(w, u);
            break;
        }
        default: return NULL;
        }
    }
    *w = '\0';
    *pp = p + 1;
    return start;
}

/* Appends the digits at *p to *m (counting them in *nd, at most 19 kept
 * exactly; more set *nd past 19), moves *p past them and returns how many. */
static int take_digits(char **p, uint64_t *m, int *nd) {
    int n = 0;
    for (; **p >= '0' && **p <= '9'; (*p)++, n++) {
        if (*nd == 0 && **p == '0') continue; /* leading zeros are not significant */
        if (++*nd <= 19) *m = *m * 10 + (uint64_t)(**p - '0');
    }
    return n;
}

/* Reads a JSON number at *pp (the grammar of RFC 8259, nothing strtod
 * would take beyond it: no inf, nan or hex). The stored contributions have
 * at most 17 significant digits and small exponents: such a number is its
 * digits as an integer m <= 2^53 times or over a power of ten <= 1e22, both
 * exact doubles, and one IEEE multiplication or division rounds it exactly
 * as strtod does (Clinger's fast path); anything else goes to strtod. */
static int parse_number(char **pp, double *out) {
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    char *p = *pp, *s = p;
    bool neg = *p == '-';
    if (neg) p++;
    uint64_t m = 0;
    int nd = 0, exp10 = 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        take_digits(&p, &m, &nd);
    } else {
        return -1;
    }
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) return -1;
        exp10 -= take_digits(&p, &m, &nd);
    }
    bool exact = nd <= 19;
    if (*p == 'e' || *p == 'E') {
        p++;
        bool eneg = *p == '-';
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return -1;
        int e = 0;
        for (; *p >= '0' && *p <= '9'; p++)
            if (e < 10000) e = e * 10 + (*p - '0');
        exp10 += eneg ? -e : e;
    }
    if (exact && m <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)m;
        v = exp10 < 0 ? v / pow10[-exp10] : v * pow10[exp10];
        *out = neg ? -v : v;
    } else {
        *out = strtod(s, NULL);
    }
    *pp = p;
    return 0;
}

int ds_contribs_parse(char *text, ds_named_contrib_t **out, size_t *n) {
    size_t cap = 64, k = 0;
    ds_named_contrib_t *a = ds_malloc(cap * sizeof *a);
    char *p = skip_ws(text);
    *out = NULL;
    *n = 0;
    if (*p++ != '{') goto fail;
    p = skip_ws(p);
    if (*p == '}') {
        p++;
        goto done;
    }
    for (;;) {
        p = skip_ws(p);
        if (*p++ != '"') goto fail;
        char *name = parse_string(&p);
        if (!name) goto fail;
        p = skip_ws(p);
        if (*p++ != ':') goto fail;
        p = skip_ws(p);
        double v;
        if (parse_number(&p, &v) != 0) goto fail;
        if (k == cap) {
            cap *= 2;
            a = ds_realloc(a, cap * sizeof *a);
        }
        a[k++] = (ds_named_contrib_t){name, v};
        p = skip_ws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ == '}') break;
        goto fail;
    }
done:
    if (*skip_ws(p) != '\0') goto fail;
    *out = a;
    *n = k;
    return 0;
fail:
    free(a);
    return DS_EINVAL;
}

/* ---- stage prior (cold start) ---------------------------------------------- */

/* Stage indexes are small (the org's stage list); this bounds allocations. */
#define MAX_STAGES 1000

struct ds_stage_prior {
    double m, org_rate, n, wins;
    size_t n_stages;      /* highest seen stage + 1 */
    double *n_s, *wins_s; /* weighted counts per stage */
};

static ds_stage_prior_t *prior_new(double m, size_t n_stages) {
    ds_stage_prior_t *sp = ds_calloc(1, sizeof *sp);
    sp->m = m;
    sp->n_stages = n_stages;
    sp->n_s = ds_calloc(n_stages ? n_stages : 1, sizeof *sp->n_s);
    sp->wins_s = ds_calloc(n_stages ? n_stages : 1, sizeof *sp->wins_s);
    return sp;
}

int ds_stage_prior_fit(const int *stage, const double *won, const double *weight, size_t n, double m,
                       ds_stage_prior_t **out, char *errstr, size_t errstr_size) {
    if (!out) return DS_EINVAL;
    *out = NULL;
    if (!stage || !won || n == 0) {
        ERR("the stage prior needs at least one closed checkpoint");
        return DS_EINVAL;
    }
    if (!(m >= 0) || !isfinite(m)) {
        ERR("smoothing %g is negative or not finite", m);
        return DS_EINVAL;
    }
    int max_stage = -1;
    for (size_t i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0;
        if (!(won[i] == 0.0 || won[i] == 1.0)) {
            ERR("row %zu: outcome %g is not 0 or 1", i, won[i]);
            return DS_EINVAL;
        }
        if (!isfinite(w) || w < 0) {
            ERR("row %zu: weight %g is negative or not finite", i, w);
            return DS_EINVAL;
        }
        if (stage[i] >= MAX_STAGES) {
            ERR("row %zu: stage index %d is not below %d", i, stage[i], MAX_STAGES);
            return DS_EINVAL;
        }
        if (stage[i] > max_stage) max_stage = stage[i];
    }
    ds_stage_prior_t *sp = prior_new(m, (size_t)(max_stage + 1));
    for (size_t i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0;
        sp->n += w;
        sp->wins += w * won[i];
        if (stage[i] >= 0) {
            sp->n_s[stage[i]] += w;
            sp->wins_s[stage[i]] += w * won[i];
        }
    }
    if (!(sp->n > 0)) {
        ds_stage_prior_destroy(sp);
        ERR("the stage prior's rows weigh nothing");
        return DS_EINVAL;
    }
    sp->org_rate = sp->wins / sp->n;
    *out = sp;
    return 0;
}

double ds_stage_prior_predict(const ds_stage_prior_t *sp, int stage) {
    if (stage < 0 || (size_t)stage >= sp->n_stages || !(sp->n_s[stage] > 0)) return sp->org_rate;
    return (sp->wins_s[stage] + sp->m * sp->org_rate) / (sp->n_s[stage] + sp->m);
}

double ds_stage_prior_org_rate(const ds_stage_prior_t *sp) { return sp->org_rate; }

double ds_stage_prior_count(const ds_stage_prior_t *sp, int stage) {
    if (stage < 0 || (size_t)stage >= sp->n_stages) return 0;
    return sp->n_s[stage];
}

char *ds_stage_prior_to_json(const ds_stage_prior_t *sp) {
    json_t *o = json_object(), *stages = json_array();
    json_object_set_new(o, "version", json_string(DS_STAGE_PRIOR_VERSION));
    json_object_set_new(o, "m", json_real(sp->m));
    json_object_set_new(o, "org_rate", json_real(sp->org_rate));
    json_object_set_new(o, "n", json_real(sp->n));
    json_object_set_new(o, "wins", json_real(sp->wins));
    for (size_t s = 0; s < sp->n_stages; s++) {
        if (!(sp->n_s[s] > 0)) continue;
        json_t *e = json_object();
        json_object_set_new(e, "stage", json_integer((json_int_t)s));
        json_object_set_new(e, "n", json_real(sp->n_s[s]));
        json_object_set_new(e, "wins", json_real(sp->wins_s[s]));
        json_object_set_new(e, "p", json_real(ds_stage_prior_predict(sp, (int)s)));
        json_array_append_new(stages, e);
    }
    json_object_set_new(o, "stages", stages);
    return take_compact_json(o);
}

int ds_stage_prior_from_json(const char *text, ds_stage_prior_t **out, char *errstr, size_t errstr_size) {
    if (!text || !out) {
        ERR("missing stage prior JSON");
        return DS_EINVAL;
    }
    *out = NULL;
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    ds_stage_prior_t *sp = NULL;
    int rc = DS_EINVAL;
    if (!json_is_object(o)) {
        ERR("stage prior is not a JSON object: %s", o ? "wrong type" : jerr.text);
        goto done;
    }
    const char *version = json_string_value(json_object_get(o, "version"));
    if (!version || strcmp(version, DS_STAGE_PRIOR_VERSION) != 0) {
        ERR("stage prior version is not %s", DS_STAGE_PRIOR_VERSION);
        goto done;
    }
    json_t *jm = json_object_get(o, "m"), *jrate = json_object_get(o, "org_rate");
    json_t *jn = json_object_get(o, "n"), *jwins = json_object_get(o, "wins");
    json_t *stages = json_object_get(o, "stages");
    double m = json_number_value(jm), rate = json_number_value(jrate);
    if (!json_is_number(jm) || !json_is_number(jrate) || !json_is_array(stages) || !(m >= 0) ||
        !isfinite(m) || !(rate >= 0 && rate <= 1)) {
        ERR("stage prior needs m >= 0, org_rate in [0, 1] and a stages array");
        goto done;
    }
    size_t n_stages = 0, i;
    json_t *e;
    json_array_foreach(stages, i, e) {
        json_t *js = json_object_get(e, "stage");
        if (!json_is_integer(js) || json_integer_value(js) < 0 || json_integer_value(js) >= MAX_STAGES) {
            ERR("stage prior entry %zu has no stage index in 0 .. %d", i, MAX_STAGES - 1);
            goto done;
        }
        if ((size_t)json_integer_value(js) + 1 > n_stages) n_stages = (size_t)json_integer_value(js) + 1;
    }
    sp = prior_new(m, n_stages);
    sp->org_rate = rate;
    sp->n = json_number_value(jn);
    sp->wins = json_number_value(jwins);
    json_array_foreach(stages, i, e) {
        json_t *jsn = json_object_get(e, "n"), *jsw = json_object_get(e, "wins");
        size_t s = (size_t)json_integer_value(json_object_get(e, "stage"));
        double ns = json_number_value(jsn), ws = json_number_value(jsw);
        if (!json_is_number(jsn) || !json_is_number(jsw) || !(ns >= 0) || !isfinite(ns) ||
            !(ws >= 0 && ws <= ns)) {
            ERR("stage prior entry %zu needs 0 <= wins <= n", i);
            goto done;
        }
        sp->n_s[s] = ns;
        sp->wins_s[s] = ws;
    }
    rc = 0;
    *out = sp;
    sp = NULL; /* now owned by the caller */
done:
    ds_stage_prior_destroy(sp);
    json_decref(o);
    return rc;
}

void ds_stage_prior_destroy(ds_stage_prior_t *sp) {
    if (!sp) return;
    free(sp->n_s);
    free(sp->wins_s);
    free(sp);
}
