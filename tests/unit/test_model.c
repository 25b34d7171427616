/* The model layer: XGBoost wrapper (TreeSHAP additivity and agreement with
 * XGBoost, the engine itself being tested in test_treeshap.c; save/load,
 * feature mapping, threads), calibration, drivers, the stage prior and the
 * model report. No services. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xgboost/c_api.h>

#include "base/common.h"
#include "base/sb.h"
#include "domain/features.h"
#include "domain/eval.h"
#include "domain/model.h"
#include "domain/report.h"
#include "rng.h"

/* ---- synthetic data ---------------------------------------------------------- */

#define NROWS 2000
#define NF 5

/* Engine names, so labels and the feature map have something to find. */
static const char *const NAMES[NF] = {"days_open", "stage_index", "n_meeting_30d", "amount_log",
                                      "meddicc_champion"};

static double rng_normal(rng_t *r) {
    double u = rng_u(r), v = rng_u(r);
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

static double sigm(double x) { return 1 / (1 + exp(-x)); }

/* y depends on features 0 and 1 only; feature 2 is 10 % missing. */
static void make_data(size_t n, uint64_t seed, float *x, float *y) {
    rng_t r = {seed};
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * NF;
        for (int j = 0; j < NF; j++) row[j] = (float)(2 * rng_u(&r) - 1);
        if (rng_u(&r) < 0.1) row[2] = NAN;
        double logit = 2.5 * row[0] - 2.0 * row[1] + 0.3;
        y[i] = rng_u(&r) < sigm(logit) ? 1.0f : 0.0f;
    }
}

typedef struct {
    float x[NROWS * NF], y[NROWS];
    ds_model_t *m;
} fixture_t;

static fixture_t *fx;

static ds_model_t *train_small(const float *x, const float *y, size_t n, int nthread) {
    ds_model_params_t p;
    ds_model_params_default(&p);
    p.n_trees = 40;
    p.max_depth = 4;
    p.eta = 0.2;
    p.nthread = nthread;
    ds_model_t *m = NULL;
    char err[256] = "";
    int rc = ds_model_train(&p, x, n, NF, NAMES, y, NULL, &m, err, sizeof err);
    cr_assert_eq(rc, 0, "train: %s", err);
    return m;
}

static void setup(void) {
    fx = calloc(1, sizeof *fx);
    make_data(NROWS, 7, fx->x, fx->y);
    fx->m = train_small(fx->x, fx->y, NROWS, 1);
}

static void teardown(void) {
    ds_model_destroy(fx->m);
    free(fx);
}

/* ---- model ------------------------------------------------------------------- */

Test(model, treeshap_sums_to_margin, .init = setup, .fini = teardown) {
    double *margin = malloc(NROWS * sizeof *margin);
    float *c = malloc(NROWS * (NF + 1) * sizeof *c);
    char err[256] = "";
    cr_assert_eq(ds_model_predict_margin(fx->m, fx->x, NROWS, margin, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_model_contribs(fx->m, fx->x, NROWS, c, err, sizeof err), 0, "%s", err);
    for (size_t i = 0; i < NROWS; i++) {
        double sum = 0;
        for (int j = 0; j <= NF; j++) sum += c[i * (NF + 1) + j];
        cr_assert(fabs(sum - margin[i]) < 1e-5, "row %zu: sum %.9g vs margin %.9g", i, sum, margin[i]);
    }
    /* The model learned something: y depends on features 0 and 1. */
    double *proba = malloc(NROWS * sizeof *proba), *yd = malloc(NROWS * sizeof *yd);
    cr_assert_eq(ds_model_predict_proba(fx->m, fx->x, NROWS, proba, err, sizeof err), 0);
    for (size_t i = 0; i < NROWS; i++) {
        cr_assert(fabs(proba[i] - sigm(margin[i])) < 1e-12);
        yd[i] = fx->y[i];
    }
    cr_assert(ds_eval_roc_auc(proba, yd, NULL, NROWS) > 0.8);
    free(margin);
    free(c);
    free(proba);
    free(yd);
}

Test(model, contribs_are_xgboost_type2_with_bias_last, .init = setup, .fini = teardown) {
    /* XGBoost's own type-2 output on the same artifact, loaded directly. */
    char *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    cr_assert_eq(ds_model_save(fx->m, &buf, &len, err, sizeof err), 0, "%s", err);
    BoosterHandle bst;
    DMatrixHandle dm;
    cr_assert_eq(XGBoosterCreate(NULL, 0, &bst), 0);
    cr_assert_eq(XGBoosterLoadModelFromBuffer(bst, buf, len), 0);
    cr_assert_eq(XGDMatrixCreateFromMat(fx->x, NROWS, NF, NAN, &dm), 0);
    const bst_ulong *shape;
    bst_ulong dim;
    const float *ref;
    cr_assert_eq(XGBoosterPredictFromDMatrix(bst, dm,
                                             "{\"type\":2,\"training\":false,\"iteration_begin\":0,"
                                             "\"iteration_end\":0,\"strict_shape\":false}",
                                             &shape, &dim, &ref),
                 0);
    cr_assert_eq(dim, 2);
    cr_assert_eq(shape[0], NROWS);
    cr_assert_eq(shape[1], NF + 1);
    /* ds_model_contribs_xgb is XGBoost's output as it is; ds_model_contribs
     * (our engine, tests/unit/test_treeshap.c) equals it to float rounding. */
    float *c = malloc(NROWS * (NF + 1) * sizeof *c);
    cr_assert(ds_model_has_treeshap(fx->m));
    cr_assert_eq(ds_model_contribs_xgb(fx->m, fx->x, NROWS, c, err, sizeof err), 0);
    cr_assert(memcmp(c, ref, NROWS * (NF + 1) * sizeof *c) == 0, "contributions differ");
    cr_assert_eq(ds_model_contribs(fx->m, fx->x, NROWS, c, err, sizeof err), 0);
    for (size_t i = 0; i < NROWS * (NF + 1); i++)
        cr_assert(fabs(c[i] - ref[i]) <= 1e-5, "cell %zu: ours %.9g, XGBoost %.9g", i, c[i], ref[i]);
    XGDMatrixFree(dm);
    XGBoosterFree(bst);
    free(buf);

    /* The bias column is last: the same for every row (the expected
     * margin), and column j is feature j: 0 and 1 carry the signal, with
     * the signs of the generating logit. */
    double mean_abs[NF];
    ds_contribs_mean_abs(c, NROWS, NF, mean_abs);
    for (size_t i = 1; i < NROWS; i++) cr_assert(c[i * (NF + 1) + NF] == c[NF]);
    for (int j = 2; j < NF; j++) {
        cr_assert(mean_abs[0] > 5 * mean_abs[j], "feature 0 %g vs %d %g", mean_abs[0], j, mean_abs[j]);
        cr_assert(mean_abs[1] > 5 * mean_abs[j], "feature 1 %g vs %d %g", mean_abs[1], j, mean_abs[j]);
    }
    double cov0 = 0, cov1 = 0;
    for (size_t i = 0; i < NROWS; i++) {
        cov0 += c[i * (NF + 1) + 0] * fx->x[i * NF + 0];
        cov1 += c[i * (NF + 1) + 1] * fx->x[i * NF + 1];
    }
    cr_assert(cov0 > 0 && cov1 < 0);
    free(c);
}

Test(model, save_load_round_trip_predicts_identically, .init = setup, .fini = teardown) {
    char *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    cr_assert_eq(ds_model_save(fx->m, &buf, &len, err, sizeof err), 0, "%s", err);
    cr_assert_eq(strlen(buf), len);
    ds_model_t *m2 = NULL;
    cr_assert_eq(ds_model_load(buf, len, 2, &m2, err, sizeof err), 0, "%s", err);
    size_t n = 0;
    const char *const *names = ds_model_feature_names(m2, &n);
    cr_assert_eq(n, NF);
    for (int j = 0; j < NF; j++) cr_assert_str_eq(names[j], NAMES[j]);

    double *a = malloc(NROWS * sizeof *a), *b = malloc(NROWS * sizeof *b);
    cr_assert_eq(ds_model_predict_margin(fx->m, fx->x, NROWS, a, err, sizeof err), 0);
    cr_assert_eq(ds_model_predict_margin(m2, fx->x, NROWS, b, err, sizeof err), 0);
    cr_assert(memcmp(a, b, NROWS * sizeof *a) == 0, "margins differ after reload");
    float *ca = malloc(NROWS * (NF + 1) * sizeof *ca), *cb = malloc(NROWS * (NF + 1) * sizeof *cb);
    cr_assert_eq(ds_model_contribs(fx->m, fx->x, NROWS, ca, err, sizeof err), 0);
    cr_assert_eq(ds_model_contribs(m2, fx->x, NROWS, cb, err, sizeof err), 0);
    cr_assert(memcmp(ca, cb, NROWS * (NF + 1) * sizeof *ca) == 0, "contributions differ");

    /* Saving the loaded model gives the same bytes. */
    char *buf2 = NULL;
    size_t len2 = 0;
    cr_assert_eq(ds_model_save(m2, &buf2, &len2, err, sizeof err), 0);
    cr_assert_eq(len2, len);
    cr_assert(memcmp(buf, buf2, len) == 0);
    free(buf2);
    free(a);
    free(b);
    free(ca);
    free(cb);
    free(buf);
    ds_model_destroy(m2);
}

Test(model, saved_json_has_learner_and_feature_names, .init = setup, .fini = teardown) {
    char *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    cr_assert_eq(ds_model_save(fx->m, &buf, &len, err, sizeof err), 0, "%s", err);
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    cr_assert(root, "artifact is not JSON: %s", jerr.text);
    json_t *learner = json_object_get(root, "learner");
    cr_assert(json_is_object(learner));
    json_t *names = json_object_get(learner, "feature_names");
    cr_assert_eq(json_array_size(names), NF);
    for (int j = 0; j < NF; j++) cr_assert_str_eq(json_string_value(json_array_get(names, j)), NAMES[j]);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(learner, "objective"), "name")),
                     "binary:logistic");
    json_t *trees =
        json_object_get(json_object_get(json_object_get(learner, "gradient_booster"), "model"), "trees");
    cr_assert_eq(json_array_size(trees), 40);
    json_decref(root);
    free(buf);
}

Test(model, same_seed_same_model) {
    float *x = malloc(NROWS * NF * sizeof *x), *y = malloc(NROWS * sizeof *y);
    make_data(NROWS, 11, x, y);
    ds_model_t *a = train_small(x, y, NROWS, 1), *b = train_small(x, y, NROWS, 2);
    char *ba, *bb, err[256];
    size_t la, lb;
    cr_assert_eq(ds_model_save(a, &ba, &la, err, sizeof err), 0);
    cr_assert_eq(ds_model_save(b, &bb, &lb, err, sizeof err), 0);
    cr_assert(la == lb && memcmp(ba, bb, la) == 0, "training is not reproducible");
    free(ba);
    free(bb);
    ds_model_destroy(a);
    ds_model_destroy(b);
    free(x);
    free(y);
}

Test(model, feature_map_by_name, .init = setup, .fini = teardown) {
    const char *engine[DS_FEATURE_COUNT];
    for (int i = 0; i < DS_FEATURE_COUNT; i++) engine[i] = ds_feature_name(i);
    int map[NF];
    char err[256] = "";
    cr_assert_eq(ds_model_feature_map(fx->m, engine, DS_FEATURE_COUNT, map, err, sizeof err), 0, "%s", err);
    for (int j = 0; j < NF; j++) cr_assert_eq(map[j], ds_feature_index(NAMES[j]));

    /* An engine that lacks one of the model's features: refused, named. */
    const char *fewer[] = {"meddicc_champion", "amount_log", "days_open", "stage_index"};
    cr_assert_eq(ds_model_feature_map(fx->m, fewer, 4, map, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "'n_meeting_30d'"), "%s", err);
}

Test(model, feature_map_refuses_unknown_feature) {
    float *x = malloc(400 * NF * sizeof *x), *y = malloc(400 * sizeof *y);
    make_data(400, 3, x, y);
    const char *names[NF] = {"days_open", "crystal_ball_score", "stage_index", "amount_log", "n_transcripts"};
    ds_model_params_t p;
    ds_model_params_default(&p);
    p.n_trees = 5;
    p.nthread = 1;
    ds_model_t *m = NULL;
    char err[256] = "";
    cr_assert_eq(ds_model_train(&p, x, 400, NF, names, y, NULL, &m, err, sizeof err), 0, "%s", err);
    const char *engine[DS_FEATURE_COUNT];
    for (int i = 0; i < DS_FEATURE_COUNT; i++) engine[i] = ds_feature_name(i);
    int map[NF];
    cr_assert_eq(ds_model_feature_map(m, engine, DS_FEATURE_COUNT, map, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "'crystal_ball_score'"), "%s", err);
    ds_model_destroy(m);
    free(x);
    free(y);
}

Test(model, train_and_load_reject_bad_input) {
    float x[4 * NF] = {0}, y[4] = {0, 1, 0, 2};
    ds_model_params_t p;
    ds_model_params_default(&p);
    ds_model_t *m = NULL;
    char err[256] = "";
    cr_assert_eq(ds_model_train(&p, x, 4, NF, NAMES, y, NULL, &m, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "row 3"), "%s", err);
    y[3] = 1;
    const char *dup[NF] = {"a", "b", "a", "c", "d"};
    cr_assert_eq(ds_model_train(&p, x, 4, NF, dup, y, NULL, &m, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "'a'"), "%s", err);
    p.max_depth = 0;
    cr_assert_eq(ds_model_train(&p, x, 4, NF, NAMES, y, NULL, &m, err, sizeof err), DS_EINVAL);
    cr_assert(m == NULL);

    cr_assert_eq(ds_model_load("not a model", 11, 1, &m, err, sizeof err), DS_EINVAL);
    cr_assert(m == NULL && err[0]);

    /* A regression model has the wrong objective for probabilities. */
    DMatrixHandle dm;
    BoosterHandle bst;
    float xr[8] = {1, 2, 3, 4, 5, 6, 7, 8}, yr[4] = {1, 2, 3, 4};
    cr_assert_eq(XGDMatrixCreateFromMat(xr, 4, 2, NAN, &dm), 0);
    cr_assert_eq(XGDMatrixSetFloatInfo(dm, "label", yr, 4), 0);
    cr_assert_eq(XGBoosterCreate(&dm, 1, &bst), 0);
    cr_assert_eq(XGBoosterSetParam(bst, "objective", "reg:squarederror"), 0);
    cr_assert_eq(XGBoosterUpdateOneIter(bst, 0, dm), 0);
    bst_ulong len;
    const char *raw;
    cr_assert_eq(XGBoosterSaveModelToBuffer(bst, "{\"format\":\"json\"}", &len, &raw), 0);
    char *copy = strndup(raw, len);
    cr_assert_eq(ds_model_load(copy, len, 1, &m, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "objective"), "%s", err);

    /* A binary model without feature names cannot be mapped: refused. */
    cr_assert_eq(XGBoosterFree(bst), 0);
    float yb[4] = {0, 1, 0, 1};
    cr_assert_eq(XGDMatrixSetFloatInfo(dm, "label", yb, 4), 0);
    cr_assert_eq(XGBoosterCreate(&dm, 1, &bst), 0);
    cr_assert_eq(XGBoosterSetParam(bst, "objective", "binary:logistic"), 0);
    cr_assert_eq(XGBoosterUpdateOneIter(bst, 0, dm), 0);
    cr_assert_eq(XGBoosterSaveModelToBuffer(bst, "{\"format\":\"json\"}", &len, &raw), 0);
    free(copy);
    copy = strndup(raw, len);
    cr_assert_eq(ds_model_load(copy, len, 1, &m, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "feature names"), "%s", err);
    free(copy);
    XGBoosterFree(bst);
    XGDMatrixFree(dm);
}

Test(model, missing_values_predict) {
    /* Rows of NaN (the engine's missing) predict and explain: the bias
     * carries the whole margin... or the default branches do. */
    fixture_t *f = calloc(1, sizeof *f);
    make_data(NROWS, 5, f->x, f->y);
    ds_model_t *m = train_small(f->x, f->y, NROWS, 1);
    float rows[2 * NF];
    for (int j = 0; j < 2 * NF; j++) rows[j] = NAN;
    rows[NF + 0] = 0.9f;
    double margin[2];
    float c[2 * (NF + 1)];
    char err[256] = "";
    cr_assert_eq(ds_model_predict_margin(m, rows, 2, margin, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_model_contribs(m, rows, 2, c, err, sizeof err), 0, "%s", err);
    for (int r = 0; r < 2; r++) {
        double sum = 0;
        for (int j = 0; j <= NF; j++) sum += c[r * (NF + 1) + j];
        cr_assert(fabs(sum - margin[r]) < 1e-5);
    }
    cr_assert(margin[1] > margin[0], "a high feature 0 raises the score");
    ds_model_destroy(m);
    free(f);
}

typedef struct {
    const ds_model_t *m;
    const float *x;
    size_t n;
    const float *want;
    int ok;
} thread_arg_t;

static void *predict_thread(void *p) {
    thread_arg_t *a = p;
    float *c = malloc(a->n * (NF + 1) * sizeof *c);
    char err[256];
    a->ok = 1;
    for (int rep = 0; rep < 5; rep++) {
        /* Alternate batch and single-row calls. */
        if (ds_model_contribs(a->m, a->x, a->n, c, err, sizeof err) != 0 ||
            memcmp(c, a->want, a->n * (NF + 1) * sizeof *c) != 0)
            a->ok = 0;
        for (size_t i = 0; i < a->n; i += 37) {
            if (ds_model_contribs(a->m, a->x + i * NF, 1, c, err, sizeof err) != 0 ||
                memcmp(c, a->want + i * (NF + 1), (NF + 1) * sizeof *c) != 0)
                a->ok = 0;
        }
    }
    free(c);
    return NULL;
}

Test(model, concurrent_predictions_agree, .init = setup, .fini = teardown) {
    /* A loaded model with 2 threads per call, shared by 4 callers. */
    char *buf, err[256];
    size_t len;
    cr_assert_eq(ds_model_save(fx->m, &buf, &len, err, sizeof err), 0);
    ds_model_t *m = NULL;
    cr_assert_eq(ds_model_load(buf, len, 2, &m, err, sizeof err), 0, "%s", err);
    free(buf);
    size_t n = 500;
    float *want = malloc(n * (NF + 1) * sizeof *want);
    cr_assert_eq(ds_model_contribs(m, fx->x, n, want, err, sizeof err), 0);
    pthread_t t[4];
    thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg_t){m, fx->x, n, want, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, predict_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_assert(args[i].ok, "thread %d saw different contributions", i);
    }
    free(want);
    ds_model_destroy(m);
}

/* ---- calibration ------------------------------------------------------------- */

Test(model, platt_recovers_a_and_b) {
    /* 50k rows: the standard error of a and b is about 0.01. */
    size_t n = 50000;
    double *m = malloc(n * sizeof *m), *y = malloc(n * sizeof *y);
    rng_t r = {99};
    for (size_t i = 0; i < n; i++) {
        m[i] = 1.5 * rng_normal(&r);
        y[i] = rng_u(&r) < sigm(0.6 * m[i] - 0.4) ? 1 : 0;
    }
    ds_calib_t *cal = NULL;
    char err[256] = "";
    cr_assert_eq(ds_calib_fit_platt(m, y, NULL, n, &cal, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cal->method, DS_CALIB_PLATT);
    cr_assert(fabs(cal->a - 0.6) < 0.05, "a = %g", cal->a);
    cr_assert(fabs(cal->b + 0.4) < 0.05, "b = %g", cal->b);
    cr_assert(fabs(ds_calib_apply(cal, 1.0) - sigm(cal->a + cal->b)) < 1e-15);

    /* JSON round trip: the same function. */
    char *js = ds_calib_to_json(cal);
    cr_assert(strstr(js, "\"method\":\"platt\""), "%s", js);
    ds_calib_t *back = NULL;
    cr_assert_eq(ds_calib_from_json(js, &back, err, sizeof err), 0, "%s", err);
    cr_assert(back->a == cal->a && back->b == cal->b);
    free(js);
    ds_calib_destroy(back);
    ds_calib_destroy(cal);

    /* A model that ranks backwards gets no (decreasing) calibration. */
    for (size_t i = 0; i < n; i++) m[i] = -m[i];
    cr_assert_eq(ds_calib_fit_platt(m, y, NULL, n, &cal, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "slope"), "%s", err);
    free(m);
    free(y);
}

Test(model, isotonic_is_monotone_and_reduces_log_loss) {
    /* Overconfident margins: 3x the true log-odds, shifted. */
    size_t n = 5000;
    double *m = malloc(2 * n * sizeof *m), *y = malloc(2 * n * sizeof *y);
    rng_t r = {123};
    for (size_t i = 0; i < 2 * n; i++) {
        double z = 1.2 * rng_normal(&r);
        y[i] = rng_u(&r) < sigm(z) ? 1 : 0;
        m[i] = 3 * z + 1;
    }
    ds_calib_t *cal = NULL;
    char err[256] = "";
    cr_assert_eq(ds_calib_fit_isotonic(m, y, NULL, n, &cal, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cal->method, DS_CALIB_ISOTONIC);
    for (size_t i = 1; i < cal->n; i++) {
        cr_assert(cal->x[i] > cal->x[i - 1]);
        cr_assert(cal->y[i] >= cal->y[i - 1]);
    }
    double prev = -1;
    for (double g = -40; g <= 40; g += 0.01) {
        double p = ds_calib_apply(cal, g);
        cr_assert(p >= prev, "not monotone at %g", g);
        cr_assert(p >= DS_CALIB_ISOTONIC_EPS && p <= 1 - DS_CALIB_ISOTONIC_EPS);
        prev = p;
    }
    /* On the other half: better log loss than the raw sigmoid. */
    double *raw = malloc(n * sizeof *raw), *calp = malloc(n * sizeof *calp);
    for (size_t i = 0; i < n; i++) {
        raw[i] = sigm(m[n + i]);
        calp[i] = ds_calib_apply(cal, m[n + i]);
    }
    double ll_raw = ds_eval_log_loss(raw, y + n, NULL, n);
    double ll_cal = ds_eval_log_loss(calp, y + n, NULL, n);
    cr_assert(ll_cal < ll_raw - 0.05, "isotonic %g vs raw %g", ll_cal, ll_raw);
    cr_assert(ds_eval_ece(calp, y + n, NULL, n) < ds_eval_ece(raw, y + n, NULL, n));

    /* JSON round trip: identical outputs. */
    char *js = ds_calib_to_json(cal);
    ds_calib_t *back = NULL;
    cr_assert_eq(ds_calib_from_json(js, &back, err, sizeof err), 0, "%s", err);
    cr_assert_eq(back->n, cal->n);
    for (double g = -10; g <= 10; g += 0.05) cr_assert(ds_calib_apply(back, g) == ds_calib_apply(cal, g));
    free(js);
    ds_calib_destroy(back);
    ds_calib_destroy(cal);
    free(m);
    free(y);
    free(raw);
    free(calp);
}

Test(model, isotonic_pav_hand_computed) {
    /* Labels along increasing margins 0 1 0 1 1: the violating pair (1, 0)
     * pools to 0.5, and the two 1s form one block. */
    double m[] = {-2, -1, 0, 1, 2}, y[] = {0, 1, 0, 1, 1};
    ds_calib_t *cal = NULL;
    char err[256];
    cr_assert_eq(ds_calib_fit_isotonic(m, y, NULL, 5, &cal, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cal->n, 5);
    double wx[] = {sigm(-2), sigm(-1), sigm(0), sigm(1), sigm(2)};
    double wy[] = {DS_CALIB_ISOTONIC_EPS, 0.5, 0.5, 1 - DS_CALIB_ISOTONIC_EPS, 1 - DS_CALIB_ISOTONIC_EPS};
    for (int i = 0; i < 5; i++) {
        cr_assert(fabs(cal->x[i] - wx[i]) < 1e-15);
        cr_assert(fabs(cal->y[i] - wy[i]) < 1e-15, "y[%d] = %g", i, cal->y[i]);
    }
    /* Halfway between breakpoints 0 and 1 in probability. */
    double mid = log(((wx[0] + wx[1]) / 2) / (1 - (wx[0] + wx[1]) / 2));
    cr_assert(fabs(ds_calib_apply(cal, mid) - (wy[0] + wy[1]) / 2) < 1e-9);
    cr_assert(ds_calib_apply(cal, -50) == wy[0] && ds_calib_apply(cal, 50) == wy[4]);
    ds_calib_destroy(cal);

    /* Weights: a heavy 0 at -1 outweighs the 1 before it. */
    double m2[] = {-2, -1}, y2[] = {1, 0}, w2[] = {1, 3};
    cr_assert_eq(ds_calib_fit_isotonic(m2, y2, w2, 2, &cal, err, sizeof err), 0);
    cr_assert_eq(cal->n, 2);
    cr_assert(fabs(cal->y[0] - 0.25) < 1e-15 && fabs(cal->y[1] - 0.25) < 1e-15);
    ds_calib_destroy(cal);
}

Test(model, calib_fit_chooses_by_fold_size) {
    size_t n = 1000;
    double *m = malloc(n * sizeof *m), *y = malloc(n * sizeof *y);
    rng_t r = {5};
    for (size_t i = 0; i < n; i++) {
        m[i] = rng_normal(&r);
        y[i] = rng_u(&r) < sigm(m[i]) ? 1 : 0;
    }
    ds_calib_t *cal = NULL;
    char err[256];
    cr_assert_eq(ds_calib_fit(m, y, NULL, n - 1, &cal, err, sizeof err), 0);
    cr_assert_eq(cal->method, DS_CALIB_PLATT);
    ds_calib_destroy(cal);
    cr_assert_eq(ds_calib_fit(m, y, NULL, n, &cal, err, sizeof err), 0);
    cr_assert_eq(cal->method, DS_CALIB_ISOTONIC);
    ds_calib_destroy(cal);
    double one[] = {1, 1, 1};
    cr_assert_eq(ds_calib_fit(m, one, NULL, 3, &cal, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "lost"), "%s", err);
    free(m);
    free(y);
}

Test(model, calib_json_rejects_bad_input) {
    ds_calib_t *cal = NULL;
    char err[256];
    const char *bad[] = {
        "nope",
        "{\"method\":\"beta\"}",
        "{\"method\":\"platt\",\"a\":-1,\"b\":0}",
        "{\"method\":\"platt\",\"a\":1}",
        "{\"method\":\"isotonic\",\"x\":[0.1,0.2],\"y\":[0.5]}",
        "{\"method\":\"isotonic\",\"x\":[0.2,0.1],\"y\":[0.1,0.2]}",
        "{\"method\":\"isotonic\",\"x\":[0.1,0.2],\"y\":[0.3,0.2]}",
        "{\"method\":\"isotonic\",\"x\":[],\"y\":[]}",
        "{\"method\":\"isotonic\",\"x\":[0.1,0.2],\"y\":[0.3,1.2]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(ds_calib_from_json(bad[i], &cal, err, sizeof err), DS_EINVAL, "accepted %s", bad[i]);
        cr_assert(cal == NULL);
    }
    cr_assert_eq(
        ds_calib_from_json("{\"method\":\"isotonic\",\"x\":[0.5],\"y\":[0.25]}", &cal, err, sizeof err), 0,
        "%s", err);
    cr_assert(ds_calib_apply(cal, -3) == 0.25 && ds_calib_apply(cal, 3) == 0.25);
    ds_calib_destroy(cal);
    cr_assert(ds_calib_apply(NULL, 0) == 0.5);
}

/* ---- drivers ----------------------------------------------------------------- */

Test(model, drivers_sorted_k_each_way_ties_by_index) {
    const char *names[] = {"days_open",  "stage_index",      "n_meeting_30d",
                           "amount_log", "meddicc_champion", "unknown_x"};
    /* Ties: 0 and 2 at +0.5. Margin: 0.5 - 0.25 + 0.5 + 0 - 0.75 + 0.125 + bias 0.375 = 0.5. */
    float c[] = {0.5f, -0.25f, 0.5f, 0.0f, -0.75f, 0.125f, 0.375f};
    float v[] = {12, 3, NAN, 9.5f, 1, 7};
    ds_driver_t pos[10], neg[10];
    size_t np, nn;
    cr_assert_eq(ds_drivers_top(c, 6, v, names, NULL, 2, pos, &np, neg, &nn), 0);
    cr_assert_eq(np, 2);
    cr_assert_eq(nn, 2);
    cr_assert_eq(pos[0].feature, 0);
    cr_assert_eq(pos[1].feature, 2);
    cr_assert_eq(neg[0].feature, 4);
    cr_assert_eq(neg[1].feature, 1);
    cr_assert_str_eq(pos[0].name, "days_open");
    cr_assert_str_eq(pos[0].label, "Days open");
    cr_assert(pos[0].value == 12 && isnan(pos[1].value));
    cr_assert(pos[0].contribution == 0.5 && neg[0].contribution == -0.75);
    /* pp = 100 (P(0.5) - P(0.5 - c)). */
    cr_assert(fabs(pos[0].pp - 100 * (sigm(0.5) - sigm(0.0))) < 1e-12);
    cr_assert(fabs(neg[0].pp - 100 * (sigm(0.5) - sigm(1.25))) < 1e-12);
    cr_assert(neg[0].pp < 0);

    /* k larger than what there is: 3 positive, 2 negative, the zero
     * contribution in neither; unknown names label as themselves. */
    cr_assert_eq(ds_drivers_top(c, 6, NULL, names, NULL, 10, pos, &np, neg, &nn), 0);
    cr_assert_eq(np, 3);
    cr_assert_eq(nn, 2);
    cr_assert_eq(pos[2].feature, 5);
    cr_assert_str_eq(pos[2].label, "unknown_x");
    cr_assert(isnan(pos[0].value));

    /* With a calibration, pp follows it. */
    ds_calib_t cal = {.method = DS_CALIB_PLATT, .a = 0.5, .b = -1};
    cr_assert_eq(ds_drivers_top(c, 6, v, names, &cal, 1, pos, &np, neg, &nn), 0);
    cr_assert(fabs(pos[0].pp - 100 * (sigm(0.5 * 0.5 - 1) - sigm(0.5 * 0.0 - 1))) < 1e-12);

    /* JSON: deterministic, NaN as null. The value 12 is written as the
     * stored documents have it, "12" (jansson's tree printed "12.0"). */
    cr_assert_eq(ds_drivers_top(c, 6, v, names, NULL, 2, pos, &np, neg, &nn), 0);
    ds_sb_t b1 = {0}, b2 = {0};
    ds_drivers_write(&b1, pos, np, neg, nn);
    ds_drivers_write(&b2, pos, np, neg, nn);
    char *s1 = b1.p, *s2 = b2.p;
    cr_assert_str_eq(s1, s2);
    cr_assert(strncmp(s1,
                      "{\"positive\":[{\"feature\":\"days_open\",\"label\":\"Days open\","
                      "\"index\":0,\"value\":12,\"contribution\":0.5,\"pp\":",
                      88) == 0,
              "%s", s1);
    json_t *j = json_loads(s1, 0, NULL);
    cr_assert_not_null(j, "%s", s1);
    json_t *second = json_array_get(json_object_get(j, "positive"), 1);
    cr_assert(json_is_null(json_object_get(second, "value")));
    cr_assert_str_eq(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "negative"), 0), "feature")),
        "meddicc_champion");
    free(s1);
    free(s2);
    json_decref(j);
}

Test(model, drivers_from_model_rows, .init = setup, .fini = teardown) {
    /* On real contributions: every positive driver above every negative,
     * each pp has its contribution's sign. */
    float c[10 * (NF + 1)];
    char err[256];
    cr_assert_eq(ds_model_contribs(fx->m, fx->x, 10, c, err, sizeof err), 0);
    size_t n;
    const char *const *names = ds_model_feature_names(fx->m, &n);
    for (int r = 0; r < 10; r++) {
        ds_driver_t pos[3], neg[3];
        size_t np, nn;
        cr_assert_eq(ds_drivers_top(c + r * (NF + 1), NF, fx->x + r * NF, names, NULL, 3, pos, &np, neg, &nn),
                     0);
        for (size_t i = 0; i < np; i++) {
            cr_assert(pos[i].contribution > 0 && pos[i].pp > 0);
            if (i) cr_assert(pos[i].contribution <= pos[i - 1].contribution);
        }
        for (size_t i = 0; i < nn; i++) {
            cr_assert(neg[i].contribution < 0 && neg[i].pp < 0);
            if (i) cr_assert(neg[i].contribution >= neg[i - 1].contribution);
        }
    }
}

Test(model, move_diff_hand_made) {
    /* Exactly representable values, so the tie below is exact. */
    ds_named_contrib_t prev[] = {
        {"amount_log", 0.25}, {"stage_index", -0.125}, {"days_open", 0.5}, {DS_CONTRIB_BIAS_NAME, 0.125}};
    ds_named_contrib_t cur[] = {{"amount_log", 0.75},
                                {"stage_index", -0.125},
                                {"n_meeting_30d", -0.625},
                                {DS_CONTRIB_BIAS_NAME, 0.25}};
    ds_contrib_change_t out[8];
    size_t n = 0;
    cr_assert_eq(ds_drivers_diff(prev, 4, cur, 4, 8, out, &n), 0);
    /* n_meeting_30d -0.625 (new), then the tie at |0.5| by name: amount_log
     * +0.5, days_open -0.5 (gone), then the bias +0.125; stage_index did
     * not move. */
    cr_assert_eq(n, 4);
    cr_assert_str_eq(out[0].name, "n_meeting_30d");
    cr_assert(out[0].change == -0.625 && isnan(out[0].previous) && out[0].current == -0.625);
    cr_assert_str_eq(out[0].label, "Meetings, last 30 days");
    cr_assert_str_eq(out[1].name, "amount_log");
    cr_assert(out[1].change == 0.5 && out[1].previous == 0.25 && out[1].current == 0.75);
    cr_assert_str_eq(out[2].name, "days_open");
    cr_assert(out[2].change == -0.5 && isnan(out[2].current));
    cr_assert_str_eq(out[3].name, DS_CONTRIB_BIAS_NAME);
    cr_assert_str_eq(out[3].label, "Model baseline");
    /* The changes add up to the move of the margin: 0.25 - 0.75. */
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += out[i].change;
    cr_assert(sum == -0.5);

    /* Top 2. */
    cr_assert_eq(ds_drivers_diff(prev, 4, cur, 4, 2, out, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(out[1].name, "amount_log");

    ds_sb_t sb = {0};
    ds_drivers_diff_write(&sb, out, n);
    char *s = sb.p;
    cr_assert_str_eq(s, "[{\"feature\":\"n_meeting_30d\",\"label\":\"Meetings, last 30 days\","
                        "\"previous\":null,\"current\":-0.625,\"change\":-0.625},"
                        "{\"feature\":\"amount_log\",\"label\":\"Deal amount (log)\","
                        "\"previous\":0.25,\"current\":0.75,\"change\":0.5}]");
    free(s);
    /* The score's change: the probabilities around the same list. */
    sb = (ds_sb_t){0};
    ds_score_change_write(&sb, 0.25, 0.375, out, 1);
    cr_assert_str_eq(sb.p,
                     "{\"previous_proba\":0.25,\"delta\":0.125,\"drivers\":[{\"feature\":\"n_meeting_30d\","
                     "\"label\":\"Meetings, last 30 days\",\"previous\":null,\"current\":-0.625,"
                     "\"change\":-0.625}]}");
    sb.len = 0;
    ds_score_change_write(&sb, NAN, 0.375, NULL, 0);
    cr_assert_str_eq(sb.p, "{\"previous_proba\":null,\"delta\":null,\"drivers\":[]}");
    free(sb.p);

    ds_named_contrib_t dup[] = {{"a", 1}, {"a", 2}};
    cr_assert_eq(ds_drivers_diff(dup, 2, cur, 4, 2, out, &n), DS_EINVAL);
}

Test(model, move_diff_matches_names_in_any_order) {
    /* The same names in the same order (one model), and shuffled (another
     * model's order): the same changes either way. */
    ds_named_contrib_t cur[] = {{"a", 1.0}, {"b", 2.0}, {"c", -3.0}, {"d", 0.5}};
    ds_named_contrib_t same[] = {{"a", 0.5}, {"b", 2.0}, {"c", -1.0}, {"d", 0.25}};
    ds_named_contrib_t shuffled[] = {{"d", 0.25}, {"c", -1.0}, {"a", 0.5}, {"b", 2.0}};
    ds_contrib_change_t x[4], y[4];
    size_t nx = 0, ny = 0;
    cr_assert_eq(ds_drivers_diff(same, 4, cur, 4, 4, x, &nx), 0);
    cr_assert_eq(ds_drivers_diff(shuffled, 4, cur, 4, 4, y, &ny), 0);
    cr_assert_eq(nx, 3);
    cr_assert_eq(ny, 3);
    const char *want[] = {"c", "a", "d"};
    double change[] = {-2.0, 0.5, 0.25};
    for (size_t i = 0; i < 3; i++) {
        cr_expect_str_eq(x[i].name, want[i]);
        cr_expect_str_eq(y[i].name, want[i]);
        cr_expect(x[i].change == change[i] && y[i].change == change[i]);
        cr_expect_str_eq(x[i].label, want[i]); /* not engine features: the name */
    }
    /* A name twice, not next to each other, or a NULL name: refused. */
    ds_named_contrib_t dup[] = {{"b", 1}, {"a", 2}, {"b", 3}};
    cr_expect_eq(ds_drivers_diff(cur, 4, dup, 3, 4, x, &nx), DS_EINVAL);
    ds_named_contrib_t null_name[] = {{"a", 1}, {NULL, 2}};
    cr_expect_eq(ds_drivers_diff(null_name, 2, cur, 4, 4, x, &nx), DS_EINVAL);

    /* Long lists (past the first table of the duplicate check): distinct
     * names pass, one name again far from the first does not, whichever
     * list it is in. */
    enum { N = 150 };
    static char names[N][8];
    ds_named_contrib_t big[N], big_prev[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "f%d", i);
        big[i] = (ds_named_contrib_t){names[i], i};
        big_prev[i] = (ds_named_contrib_t){names[i], i - 1};
    }
    ds_contrib_change_t many[N];
    size_t nm = 0;
    cr_expect_eq(ds_drivers_diff(big_prev, N, big, N, N, many, &nm), 0);
    cr_expect_eq(nm, N);
    big[N - 3].name = names[7];
    cr_expect_eq(ds_drivers_diff(big_prev, N, big, N, N, many, &nm), DS_EINVAL);
    cr_expect_eq(ds_drivers_diff(big, N, big_prev, N, N, many, &nm), DS_EINVAL);
}

Test(model, contribs_json_round_trip) {
    ds_named_contrib_t c[] = {{"days_open", 0.5f}, {"stage_index", -0.25f}, {DS_CONTRIB_BIAS_NAME, 0.125f}};
    ds_sb_t sb = {0};
    ds_contribs_write(&sb, c, 3);
    char *s = sb.p;
    cr_assert_str_eq(s, "{\"days_open\":0.5,\"stage_index\":-0.25,\"_bias\":0.125}");
    ds_named_contrib_t *nc = NULL;
    size_t n = 0;
    cr_assert_eq(ds_contribs_parse(s, &nc, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(nc[0].name, "days_open");
    cr_assert_str_eq(nc[2].name, DS_CONTRIB_BIAS_NAME);
    cr_assert(nc[1].contribution == -0.25 && nc[2].contribution == 0.125);
    free(nc);
    free(s);
    char bad[] = "{\"a\":\"x\"}";
    cr_assert_eq(ds_contribs_parse(bad, &nc, &n), DS_EINVAL);
}

Test(model, contribs_round_trip_every_name_and_float_exactly) {
    /* Names the writer must escape; floats whose 9 digits are exact, a
     * double that needs 17, and NaN, written as null (which the reader
     * refuses, as the stored contributions never hold one). */
    ds_named_contrib_t c[] = {{"plain", 0.1f},
                              {"quote\"back\\slash", -3.4028235e38f},
                              {"tab\tnew\nline\x01", 1e-45f},
                              {"caf\xc3\xa9 \xf0\x9f\x93\x88", 0.1},
                              {DS_CONTRIB_BIAS_NAME, -0.0f}};
    ds_sb_t sb = {0};
    ds_contribs_write(&sb, c, DS_ARRAY_SIZE(c));
    ds_named_contrib_t *back = NULL;
    size_t n = 0;
    cr_assert_eq(ds_contribs_parse(sb.p, &back, &n), 0, "%s", sb.p);
    cr_assert_eq(n, DS_ARRAY_SIZE(c));
    for (size_t i = 0; i < n; i++) {
        cr_expect_str_eq(back[i].name, c[i].name);
        /* A float comes back as the float it was; the double 0.1 exactly. */
        if (i == 3)
            cr_expect(back[i].contribution == c[i].contribution, "%.17g", back[i].contribution);
        else
            cr_expect((float)back[i].contribution == (float)c[i].contribution, "%s: %.17g", c[i].name,
                      back[i].contribution);
    }
    free(back);
    free(sb.p);

    ds_named_contrib_t nan_one[] = {{"x", NAN}};
    ds_sb_t nb = {0};
    ds_contribs_write(&nb, nan_one, 1);
    cr_assert_str_eq(nb.p, "{\"x\":null}");
    cr_assert_eq(ds_contribs_parse(nb.p, &back, &n), DS_EINVAL);
    cr_assert_null(back);
    free(nb.p);
}

/* The reader's numbers are strtod's to the bit, for what the writer prints
 * (9 and 17 significant digits) and for forms it never prints. */
Test(model, contribs_parse_numbers_are_strtods) {
    static const char *const fixed[] = {"0",
                                        "-0",
                                        "0.5",
                                        "-1",
                                        "1E2",
                                        "2.5e-3",
                                        "123456789",
                                        "0.000123",
                                        "1.50",
                                        "9007199254740993",
                                        "1e22",
                                        "1e23",
                                        "1.5e-22",
                                        "4.9e-324",
                                        "1.7976931348623157e308",
                                        "1e-400",
                                        "0.1",
                                        "3.4028235e+38",
                                        "100000000000000000000001",
                                        "0.30000000000000004",
                                        "1.0000000000000000000000000001"};
    uint64_t state = 88172645463325252ULL;
    for (int i = 0; i < 200000 + (int)DS_ARRAY_SIZE(fixed); i++) {
        char num[64];
        if (i < (int)DS_ARRAY_SIZE(fixed)) {
            snprintf(num, sizeof num, "%s", fixed[i]);
        } else {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            double d;
            uint64_t bits = state;
            memcpy(&d, &bits, sizeof d);
            if (!isfinite(d)) continue;
            if (i % 3 == 0)
                d = (double)(float)(ldexp((double)(state >> 11), -53) * 8 - 4); /* a contribution */
            snprintf(num, sizeof num, i % 2 ? "%.9g" : "%.17g", d);
        }
        char doc[96];
        snprintf(doc, sizeof doc, "{\"x\":%s}", num);
        ds_named_contrib_t *nc = NULL;
        size_t n = 0;
        cr_assert_eq(ds_contribs_parse(doc, &nc, &n), 0, "%s", num);
        double want = strtod(num, NULL);
        cr_assert(memcmp(&nc[0].contribution, &want, sizeof want) == 0, "%s: %.17g, strtod %.17g", num,
                  nc[0].contribution, want);
        free(nc);
    }
}

Test(model, contribs_parse_reads_jsonb_text_and_refuses_the_rest) {
    /* As Postgres prints a jsonb object back, with \u escapes (a surrogate
     * pair among them) as any JSON writer may use. */
    char jsonb[] = " {\"a\": 0.5, \"\\u00e9t\\u00e9\": -1, \"\\ud83d\\udcc8\": 2.5e-3, \"_bias\": 1E2} ";
    ds_named_contrib_t *nc = NULL;
    size_t n = 0;
    cr_assert_eq(ds_contribs_parse(jsonb, &nc, &n), 0);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(nc[1].name, "\xc3\xa9t\xc3\xa9");
    cr_assert_str_eq(nc[2].name, "\xf0\x9f\x93\x88");
    cr_assert(nc[0].contribution == 0.5 && nc[1].contribution == -1 && nc[2].contribution == 2.5e-3 &&
              nc[3].contribution == 100);
    free(nc);
    char empty[] = "{}";
    cr_assert_eq(ds_contribs_parse(empty, &nc, &n), 0);
    cr_assert_eq(n, 0);
    free(nc);

    const char *bad[] = {"",
                         "[]",
                         "{\"a\":1",
                         "{\"a\":1,}",
                         "{\"a\":{}}",
                         "{\"a\":null}",
                         "{\"a\":-inf}",
                         "{\"a\":0x10}",
                         "{\"a\":1.}",
                         "{\"a\":01}",
                         "{\"a\":1} x",
                         "{\"a\\u0000\":1}",
                         "{\"\\udc00\":1}",
                         "{\"a\\q\":1}",
                         "{\"a\tb\":1}",
                         "{a:1}"};
    for (size_t i = 0; i < DS_ARRAY_SIZE(bad); i++) {
        char *t = ds_strdup(bad[i]);
        nc = (ds_named_contrib_t *)1;
        cr_expect_eq(ds_contribs_parse(t, &nc, &n), DS_EINVAL, "%s", bad[i]);
        cr_expect_null(nc, "%s", bad[i]);
        free(t);
    }
}

/* ---- stage prior --------------------------------------------------------------- */

Test(model, stage_prior_hand_computed) {
    int stage[] = {0, 0, 0, 1, 1, 2, -1};
    double won[] = {0, 0, 1, 1, 1, 0, 1};
    ds_stage_prior_t *sp = NULL;
    char err[256];
    cr_assert_eq(ds_stage_prior_fit(stage, won, NULL, 7, 2.0, &sp, err, sizeof err), 0, "%s", err);
    double org = 4.0 / 7;
    cr_assert(fabs(ds_stage_prior_org_rate(sp) - org) < 1e-15);
    cr_assert(fabs(ds_stage_prior_predict(sp, 0) - (1 + 2 * org) / 5) < 1e-15);
    cr_assert(fabs(ds_stage_prior_predict(sp, 1) - (2 + 2 * org) / 4) < 1e-15);
    cr_assert(fabs(ds_stage_prior_predict(sp, 2) - (0 + 2 * org) / 3) < 1e-15);
    cr_assert(ds_stage_prior_predict(sp, 5) == ds_stage_prior_org_rate(sp));
    cr_assert(ds_stage_prior_predict(sp, -1) == ds_stage_prior_org_rate(sp));

    char *js = ds_stage_prior_to_json(sp);
    json_t *j = json_loads(js, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(j, "version")), "stage-prior");
    cr_assert_eq(json_array_size(json_object_get(j, "stages")), 3);
    json_decref(j);
    ds_stage_prior_t *back = NULL;
    cr_assert_eq(ds_stage_prior_from_json(js, &back, err, sizeof err), 0, "%s", err);
    for (int s = -1; s < 5; s++) cr_assert(ds_stage_prior_predict(back, s) == ds_stage_prior_predict(sp, s));
    free(js);
    ds_stage_prior_destroy(back);
    ds_stage_prior_destroy(sp);

    /* Weights count like repeated rows. */
    int st2[] = {0, 0};
    double w2[] = {3, 1}, won2[] = {1, 0};
    cr_assert_eq(ds_stage_prior_fit(st2, won2, w2, 2, 0, &sp, err, sizeof err), 0);
    cr_assert(ds_stage_prior_predict(sp, 0) == 0.75);
    ds_stage_prior_destroy(sp);

    double badwon[] = {0.5};
    cr_assert_eq(ds_stage_prior_fit(st2, badwon, NULL, 1, 2, &sp, err, sizeof err), DS_EINVAL);
    cr_assert_eq(ds_stage_prior_fit(st2, won2, NULL, 0, 2, &sp, err, sizeof err), DS_EINVAL);
    cr_assert_eq(ds_stage_prior_from_json("{\"version\":\"v2\"}", &sp, err, sizeof err), DS_EINVAL);
    cr_assert(sp == NULL);
}

/* ---- report -------------------------------------------------------------------- */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

Test(model, report_html_and_json, .init = setup, .fini = teardown) {
    /* A real model against a crude prior on the training data. */
    size_t n = NROWS;
    double *p = malloc(n * sizeof *p), *prior = malloc(n * sizeof *prior), *y = malloc(n * sizeof *y);
    char err[256];
    cr_assert_eq(ds_model_predict_proba(fx->m, fx->x, n, p, err, sizeof err), 0);
    for (size_t i = 0; i < n; i++) {
        y[i] = fx->y[i];
        prior[i] = fx->x[i * NF + 1] < 0 ? 0.6 : 0.4;
    }
    ds_report_t r = {0};
    r.model_version = "m-2025-01-01 <test> & co";
    r.org = "acme";
    r.params = "40 trees, depth 4";
    r.n_train = n;
    r.n_test = n;
    cr_assert_eq(ds_eval_metrics(p, y, NULL, n, &r.model, err, sizeof err), 0);
    cr_assert_eq(ds_eval_metrics(prior, y, NULL, n, &r.prior, err, sizeof err), 0);
    ds_eval_bin_t mb[10], pb[10];
    ds_eval_reliability(p, y, NULL, n, 10, mb);
    ds_eval_reliability(prior, y, NULL, n, 10, pb);
    r.model_bins = mb;
    r.n_model_bins = 10;
    r.prior_bins = pb;
    r.n_prior_bins = 10;
    ds_roc_point_t mr[DS_EVAL_ROC_MAX_POINTS], pr[DS_EVAL_ROC_MAX_POINTS];
    ds_eval_roc_curve(p, y, NULL, n, DS_EVAL_ROC_MAX_POINTS, mr, &r.n_model_roc);
    ds_eval_roc_curve(prior, y, NULL, n, DS_EVAL_ROC_MAX_POINTS, pr, &r.n_prior_roc);
    r.model_roc = mr;
    r.prior_roc = pr;
    float *c = malloc(n * (NF + 1) * sizeof *c);
    cr_assert_eq(ds_model_contribs(fx->m, fx->x, n, c, err, sizeof err), 0);
    double mean_abs[NF];
    ds_contribs_mean_abs(c, n, NF, mean_abs);
    ds_report_feature_t feats[NF];
    for (int j = 0; j < NF; j++)
        feats[j] = (ds_report_feature_t){NAMES[j], ds_feature_label(ds_feature_index(NAMES[j])), mean_abs[j]};
    r.features = feats;
    r.n_features = NF;
    ds_report_row_t rows[2] = {{"day 30", r.model, r.prior}, {"day 60", r.model, r.prior}};
    ds_report_row_t seg[1] = {{"Software", r.model, r.prior}};
    ds_report_table_t tables[2] = {{"Per checkpoint", "Checkpoint", rows, 2},
                                   {"Per industry", "Industry", seg, 1}};
    r.tables = tables;
    r.n_tables = 2;
    r.activate = true;
    r.decision_reason = "no active model; beats the stage prior's log loss";

    char dir[] = "/tmp/ds-report-XXXXXX";
    cr_assert(mkdtemp(dir));
    char html_path[64], json_path[64];
    snprintf(html_path, sizeof html_path, "%s/report.html", dir);
    snprintf(json_path, sizeof json_path, "%s/report.json", dir);
    cr_assert_eq(ds_report_write_html(html_path, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_report_write_json(json_path, &r, err, sizeof err), 0, "%s", err);

    char *html = slurp(html_path);
    cr_assert(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    cr_assert(strstr(html, "<svg"));
    cr_assert(strstr(html, "</html>"));
    cr_assert_null(strstr(html, "http://"));
    cr_assert_null(strstr(html, "https://"));
    cr_assert_null(strstr(html, "<script"));
    cr_assert(strstr(html, "m-2025-01-01 &lt;test&gt; &amp; co"), "escaped version");
    cr_assert(strstr(html, "Days open"));
    cr_assert(strstr(html, "Per industry"));
    cr_assert(strstr(html, "Activate this model"));
    /* Deterministic. */
    char *again = ds_report_html(&r);
    cr_assert_str_eq(html, again);
    free(again);

    char *js = slurp(json_path);
    json_error_t jerr;
    json_t *j = json_loads(js, 0, &jerr);
    cr_assert(j, "report JSON: %s", jerr.text);
    cr_assert(json_is_true(json_object_get(json_object_get(j, "decision"), "activate")));
    json_t *overall = json_object_get(j, "overall");
    cr_assert(fabs(json_real_value(json_object_get(json_object_get(overall, "model"), "roc_auc")) -
                   r.model.roc_auc) < 1e-9);
    cr_assert(json_is_null(json_object_get(overall, "active")));
    json_t *f0 = json_array_get(json_object_get(j, "features"), 0);
    const char *top = json_string_value(json_object_get(f0, "name"));
    cr_assert(strcmp(top, "days_open") == 0 || strcmp(top, "stage_index") == 0, "top %s", top);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(j, "roc"), "model")), r.n_model_roc);
    cr_assert_eq(json_array_size(json_object_get(json_array_get(json_object_get(j, "tables"), 0), "rows")),
                 2);
    json_decref(j);
    free(js);
    free(html);

    /* An unwritable path is an I/O error naming the path. */
    cr_assert_eq(ds_report_write_html("/nonexistent-dir/r.html", &r, err, sizeof err), DS_EIO);
    cr_assert(strstr(err, "/nonexistent-dir/r.html"), "%s", err);
    unlink(html_path);
    unlink(json_path);
    rmdir(dir);
    free(p);
    free(prior);
    free(y);
    free(c);
}

Test(model, drivers_and_changes_carry_their_words_beside_the_value) {
    ds_driver_t d = {.feature = 6,
                     .name = "amount_log",
                     .label = "Amount",
                     .display = "$285,000 (above 75 % of similar won deals)",
                     .value = 12.5,
                     .contribution = 0.5,
                     .pp = 12.5};
    ds_sb_t sb = {0};
    ds_drivers_write(&sb, &d, 1, NULL, 0);
    cr_assert_str_eq(sb.p, "{\"positive\":[{\"feature\":\"amount_log\",\"label\":\"Amount\","
                           "\"display\":\"$285,000 (above 75 % of similar won deals)\",\"index\":6,"
                           "\"value\":12.5,\"contribution\":0.5,\"pp\":12.5}],\"negative\":[]}");
    ds_contrib_change_t c = {.name = "days_since_last_meeting",
                             .label = "Last meeting",
                             .display = "12 days ago",
                             .value = 12,
                             .previous = NAN,
                             .current = -0.25,
                             .change = -0.25};
    sb.len = 0;
    ds_drivers_diff_write(&sb, &c, 1);
    cr_assert_str_eq(sb.p, "[{\"feature\":\"days_since_last_meeting\",\"label\":\"Last meeting\","
                           "\"display\":\"12 days ago\",\"value\":12,\"previous\":null,\"current\":-0.25,"
                           "\"change\":-0.25}]");
    free(sb.p);
}
