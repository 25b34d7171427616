/* Our TreeSHAP engine against XGBoost's own pred_contribs: random models
 * (depth 4, 6 and 10, several feature counts, base_score not 0.5, NaN in
 * the data, hist and exact splits) explained on random rows, rows with
 * NaNs and rows exactly on (and just below) split thresholds, with the
 * precomputed tables and with the per-row path; plus hand-made trees with
 * known values. No services. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xgboost/c_api.h>

#include "base/common.h"
#include "domain/model.h"
#include "domain/treeshap.h"
#include "rng.h"

#define TOL 1e-5

/* Continuous, integer (many ties, so thresholds fall on data values) and
 * binary columns, nan_rate missing; the label mixes interactions so the
 * trees reuse features along their paths. */
static void make_data(size_t n, size_t nf, double nan_rate, uint64_t seed, float *x, float *y) {
    rng_t r = {seed};
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * nf;
        for (size_t j = 0; j < nf; j++) {
            double u = rng_u(&r);
            switch (j % 3) {
            case 0: row[j] = (float)(4 * u - 2); break;
            case 1: row[j] = (float)floor(10 * u); break;
            default: row[j] = u < 0.4 ? 1.0f : 0.0f; break;
            }
            if (rng_u(&r) < nan_rate) row[j] = NAN;
        }
        double v[4];
        for (int k = 0; k < 4; k++) {
            float f = row[(size_t)k % nf];
            v[k] = isnan(f) ? 0.5 : f;
        }
        double z = sin(2 * v[0]) + (v[1] > 4 ? 1.0 : -0.5) * (v[2] > 0.5 ? 1.5 : -0.7) - 0.6 * v[0] * v[3] +
                   0.1 * (v[1] - 5);
        if (nf > 5 && !isnan(row[5])) z += 0.4 * row[5];
        y[i] = rng_u(&r) < 1 / (1 + exp(-z)) ? 1.0f : 0.0f;
    }
}

static char **make_names(size_t nf) {
    char **names = calloc(nf, sizeof *names);
    for (size_t j = 0; j < nf; j++) names[j] = ds_asprintf("f%zu", j);
    return names;
}

static void free_names(char **names, size_t nf) {
    for (size_t j = 0; j < nf; j++) free(names[j]);
    free(names);
}

typedef struct {
    int depth, trees;
    double base_score;
    const char *tree_method;
    const char *booster;
    double min_child_weight;
    double gamma; /* > 0: pruning, which leaves deleted nodes in the arrays */
} train_t;

/* Trains through XGBoost's C API and returns the model's JSON (caller
 * frees), feature names included so ds_model_load takes it. */
static char *train_json(const train_t *t, const float *x, const float *y, size_t n, size_t nf, size_t *len) {
    DMatrixHandle dm;
    BoosterHandle bst;
    cr_assert_eq(XGDMatrixCreateFromMat(x, n, nf, NAN, &dm), 0);
    cr_assert_eq(XGDMatrixSetFloatInfo(dm, "label", y, n), 0);
    cr_assert_eq(XGBoosterCreate(&dm, 1, &bst), 0);
    char v[64];
    cr_assert_eq(XGBoosterSetParam(bst, "objective", "binary:logistic"), 0);
    cr_assert_eq(XGBoosterSetParam(bst, "booster", t->booster ? t->booster : "gbtree"), 0);
    cr_assert_eq(XGBoosterSetParam(bst, "tree_method", t->tree_method), 0);
    snprintf(v, sizeof v, "%d", t->depth);
    cr_assert_eq(XGBoosterSetParam(bst, "max_depth", v), 0);
    snprintf(v, sizeof v, "%.17g", t->base_score);
    cr_assert_eq(XGBoosterSetParam(bst, "base_score", v), 0);
    snprintf(v, sizeof v, "%.17g", t->min_child_weight);
    cr_assert_eq(XGBoosterSetParam(bst, "min_child_weight", v), 0);
    snprintf(v, sizeof v, "%.17g", t->gamma);
    cr_assert_eq(XGBoosterSetParam(bst, "gamma", v), 0);
    cr_assert_eq(XGBoosterSetParam(bst, "eta", "0.3"), 0);
    cr_assert_eq(XGBoosterSetParam(bst, "nthread", "1"), 0);
    cr_assert_eq(XGBoosterSetParam(bst, "seed", "3"), 0);
    for (int it = 0; it < t->trees; it++) cr_assert_eq(XGBoosterUpdateOneIter(bst, it, dm), 0);
    char **names = make_names(nf);
    cr_assert_eq(XGBoosterSetStrFeatureInfo(bst, "feature_name", (const char **)names, nf), 0);
    free_names(names, nf);
    bst_ulong blen;
    const char *raw;
    cr_assert_eq(XGBoosterSaveModelToBuffer(bst, "{\"format\":\"json\"}", &blen, &raw), 0);
    char *out = ds_strndup(raw, blen);
    *len = blen;
    XGBoosterFree(bst);
    XGDMatrixFree(dm);
    return out;
}

/* Evaluation rows: n_random fresh random rows (with NaNs), then, for up to
 * n_thr splits of the model, a random row put exactly on the split's
 * threshold and one just below it. Returns the row count; *out is freed by
 * the caller. */
static size_t make_eval_rows(const char *json, size_t nf, size_t n_random, size_t n_thr, uint64_t seed,
                             float **out) {
    float *x = malloc((n_random + 2 * n_thr) * nf * sizeof *x), *y = malloc(n_random * sizeof *y);
    make_data(n_random, nf, 0.15, seed, x, y);
    free(y);
    json_t *root = json_loads(json, 0, NULL);
    cr_assert(root);
    json_t *trees = json_object_get(
        json_object_get(json_object_get(json_object_get(root, "learner"), "gradient_booster"), "model"),
        "trees");
    size_t n = n_random, ti;
    json_t *tree;
    json_array_foreach(trees, ti, tree) {
        json_t *lc = json_object_get(tree, "left_children");
        for (size_t i = 0; i < json_array_size(lc) && n + 2 <= n_random + 2 * n_thr; i++) {
            if (json_integer_value(json_array_get(lc, i)) < 0) continue;
            size_t f = (size_t)json_integer_value(json_array_get(json_object_get(tree, "split_indices"), i));
            float thr =
                (float)json_number_value(json_array_get(json_object_get(tree, "split_conditions"), i));
            for (int k = 0; k < 2; k++) {
                float *row = x + n * nf;
                memcpy(row, x + ((n * 7919) % n_random) * nf, nf * sizeof *row);
                row[f] = k ? nextafterf(thr, -INFINITY) : thr;
                n++;
            }
        }
    }
    json_decref(root);
    *out = x;
    return n;
}

typedef struct {
    double contrib, margin_ours, margin_xgb, sum;
} worst_t;

static void track(double *worst, double d) {
    if (!(d <= *worst)) *worst = d;
}

/* Our engine (through the model layer, and directly with table_bits) against
 * XGBoost on rows x: every contribution within TOL of XGBoost's, the bias
 * included, and each row's contributions summing to the margin. */
static worst_t check_against_xgboost(const char *json, size_t len, const float *x, size_t n, size_t nf,
                                     int table_bits) {
    ds_model_t *m = NULL;
    char err[512] = "";
    cr_assert_eq(ds_model_load(json, len, 1, &m, err, sizeof err), 0, "%s", err);
    cr_assert(ds_model_has_treeshap(m), "the engine refused the model");
    cr_assert_eq(ds_model_n_features(m), nf);
    size_t stride = nf + 1;
    float *ref = malloc(n * stride * sizeof *ref), *ours = malloc(n * stride * sizeof *ours);
    float *direct = malloc(n * stride * sizeof *direct);
    double *mx = malloc(n * sizeof *mx), *mo = malloc(n * sizeof *mo);
    cr_assert_eq(ds_model_contribs_xgb(m, x, n, ref, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_model_contribs(m, x, n, ours, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_model_predict_margin_xgb(m, x, n, mx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_model_predict_margin(m, x, n, mo, err, sizeof err), 0, "%s", err);
    ds_treeshap_t *ts = NULL;
    cr_assert_eq(ds_treeshap_new(json, len, table_bits, &ts, err, sizeof err), 0, "%s", err);
    ds_treeshap_contribs(ts, x, n, direct);
    worst_t w = {0};
    for (size_t r = 0; r < n; r++) {
        double sum = 0;
        for (size_t j = 0; j < stride; j++) {
            double a = ref[r * stride + j], b = ours[r * stride + j], c = direct[r * stride + j];
            track(&w.contrib, fabs(a - b));
            track(&w.contrib, fabs(a - c));
            cr_assert(fabs(a - b) <= TOL && fabs(a - c) <= TOL,
                      "row %zu column %zu: XGBoost %.9g, ours %.9g, table_bits %d %.9g", r, j, a, b,
                      table_bits, c);
            sum += b;
        }
        track(&w.margin_ours, fabs(mo[r] - mx[r]));
        track(&w.sum, fabs(sum - mo[r]));
        track(&w.margin_xgb, fabs(sum - mx[r]));
        cr_assert(fabs(mo[r] - mx[r]) <= TOL, "row %zu: margin %.9g, XGBoost's %.9g", r, mo[r], mx[r]);
        cr_assert(fabs(sum - mo[r]) <= TOL && fabs(sum - mx[r]) <= TOL,
                  "row %zu: contributions sum to %.9g, margin %.9g (XGBoost %.9g)", r, sum, mo[r], mx[r]);
    }
    ds_treeshap_destroy(ts);
    ds_model_destroy(m);
    free(ref);
    free(ours);
    free(direct);
    free(mx);
    free(mo);
    return w;
}

/* Returns the model's JSON, for checks of its own. */
static char *run_case(const train_t *t, size_t nf, uint64_t seed) {
    size_t n_train = 1500;
    float *x = malloc(n_train * nf * sizeof *x), *y = malloc(n_train * sizeof *y);
    make_data(n_train, nf, 0.15, seed, x, y);
    size_t len;
    char *json = train_json(t, x, y, n_train, nf, &len);
    float *ev;
    size_t n = make_eval_rows(json, nf, 400, 300, seed + 1, &ev);
    /* Every row with a NaN somewhere, and an all-NaN row. */
    for (size_t j = 0; j < nf; j++) ev[(n - 1) * nf + j] = NAN;
    size_t with_nan = 0;
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < nf; j++)
            if (isnan(ev[r * nf + j])) {
                with_nan++;
                break;
            }
    cr_assert(with_nan > n / 4, "too few rows with missing values: %zu of %zu", with_nan, n);
    ds_treeshap_t *ts = NULL;
    char err[256];
    cr_assert_eq(ds_treeshap_new(json, len, DS_TREESHAP_TABLE_BITS, &ts, err, sizeof err), 0, "%s", err);
    ds_treeshap_stats_t st;
    ds_treeshap_stats(ts, &st);
    ds_treeshap_destroy(ts);
    cr_assert_eq(st.n_trees, (size_t)t->trees);
    worst_t a = check_against_xgboost(json, len, ev, n, nf, DS_TREESHAP_TABLE_BITS);
    worst_t b = check_against_xgboost(json, len, ev, n, nf, 0);
    cr_log_info("%d trees depth %d (%s, max path %d, %zu leaves, %zu tabled), %zu features, "
                "base_score %g, %zu rows: max |ours - XGBoost| %.2g (per-row path %.2g), margin "
                "%.2g, |sum - margin| %.2g",
                t->trees, t->depth, t->tree_method, st.max_depth, st.n_leaves, st.n_table_leaves, nf,
                t->base_score, n, a.contrib, b.contrib, a.margin_ours, a.sum);
    free(ev);
    free(x);
    free(y);
    return json;
}

Test(treeshap, depth4_matches_xgboost) {
    size_t nfs[] = {3, 8, 30};
    for (size_t i = 0; i < DS_ARRAY_SIZE(nfs); i++) {
        train_t t = {
            .depth = 4, .trees = 60, .base_score = 0.3, .tree_method = "hist", .min_child_weight = 1};
        free(run_case(&t, nfs[i], 100 + i));
    }
}

Test(treeshap, depth6_matches_xgboost) {
    size_t nfs[] = {3, 8, 30};
    for (size_t i = 0; i < DS_ARRAY_SIZE(nfs); i++) {
        train_t t = {
            .depth = 6, .trees = 80, .base_score = 0.72, .tree_method = "hist", .min_child_weight = 0.5};
        free(run_case(&t, nfs[i], 200 + i));
    }
}

Test(treeshap, exact_splits_match_xgboost) {
    /* tree_method exact splits halfway between data values; small covers
     * with min_child_weight 0; gamma makes the pruner delete nodes, which
     * stay in the arrays, unreachable. */
    train_t t = {.depth = 6,
                 .trees = 40,
                 .base_score = 0.2,
                 .tree_method = "exact",
                 .min_child_weight = 0,
                 .gamma = 0.5};
    char *json = run_case(&t, 8, 300);
    json_t *root = json_loads(json, 0, NULL);
    json_t *trees = json_object_get(
        json_object_get(json_object_get(json_object_get(root, "learner"), "gradient_booster"), "model"),
        "trees");
    long deleted = 0;
    size_t ti;
    json_t *tree;
    json_array_foreach(trees, ti, tree) {
        deleted +=
            atol(json_string_value(json_object_get(json_object_get(tree, "tree_param"), "num_deleted")));
    }
    cr_assert(deleted > 0, "no tree has deleted nodes");
    cr_log_info("%ld deleted nodes", deleted);
    json_decref(root);
    free(json);
}

Test(treeshap, deep_trees_match_xgboost) {
    /* Depth 10 paths: some leaves beyond the default table size go per
     * row even with tables on. */
    train_t t = {.depth = 12, .trees = 15, .base_score = 0.55, .tree_method = "hist", .min_child_weight = 0};
    free(run_case(&t, 30, 400));
}

Test(treeshap, single_row_equals_batch) {
    size_t nf = 8, n_train = 1000;
    float *x = malloc(n_train * nf * sizeof *x), *y = malloc(n_train * sizeof *y);
    make_data(n_train, nf, 0.15, 5, x, y);
    train_t t = {.depth = 6, .trees = 30, .base_score = 0.4, .tree_method = "hist", .min_child_weight = 1};
    size_t len;
    char *json = train_json(&t, x, y, n_train, nf, &len);
    ds_treeshap_t *ts = NULL;
    char err[256];
    cr_assert_eq(ds_treeshap_new(json, len, DS_TREESHAP_TABLE_BITS, &ts, err, sizeof err), 0, "%s", err);
    size_t n = 100, stride = nf + 1;
    float *batch = malloc(n * stride * sizeof *batch), one[9];
    double *margin = malloc(n * sizeof *margin), m1;
    ds_treeshap_contribs(ts, x, n, batch);
    ds_treeshap_margin(ts, x, n, margin);
    for (size_t r = 0; r < n; r++) {
        ds_treeshap_contribs(ts, x + r * nf, 1, one);
        ds_treeshap_margin(ts, x + r * nf, 1, &m1);
        cr_assert(memcmp(one, batch + r * stride, stride * sizeof *one) == 0, "row %zu", r);
        cr_assert(m1 == margin[r]);
    }
    ds_treeshap_destroy(ts);
    free(batch);
    free(margin);
    free(json);
    free(x);
    free(y);
}

/* ---- hand-made trees ------------------------------------------------------------ */

/* A model JSON with the given trees (each a JSON object text). */
static char *model_json(const char *trees, int nf, const char *base_score) {
    return ds_asprintf(
        "{\"learner\":{\"objective\":{\"name\":\"binary:logistic\"},"
        "\"learner_model_param\":{\"base_score\":\"%s\",\"num_class\":\"0\",\"num_feature\":\"%d\","
        "\"num_target\":\"1\"},\"gradient_booster\":{\"name\":\"gbtree\",\"model\":{"
        "\"trees\":[%s]}}}}",
        base_score, nf, trees);
}

Test(treeshap, stump_hand_computed) {
    /* x0 < 1 (missing: right) -> 0.5 with cover 3, else -1 with cover 1.
     * E = (3 * 0.5 - 1) / 4 = 0.125; phi_0 = f(x) - E. */
    const char *tree = "{\"left_children\":[1,-1,-1],\"right_children\":[2,-1,-1],\"split_indices\":[0,0,0],"
                       "\"split_conditions\":[1.0,0.5,-1.0],\"default_left\":[0,0,0],"
                       "\"sum_hessian\":[4.0,3.0,1.0]}";
    char *json = model_json(tree, 2, "5E-1");
    ds_treeshap_t *ts = NULL;
    char err[256];
    cr_assert_eq(ds_treeshap_new(json, strlen(json), DS_TREESHAP_TABLE_BITS, &ts, err, sizeof err), 0, "%s",
                 err);
    cr_assert_float_eq(ds_treeshap_bias(ts), 0.125, 1e-12);
    float x[4 * 2] = {0.5f, 7, 1.0f, 7, NAN, NAN, 0.99999994f, 0};
    float c[4 * 3];
    double mg[4];
    ds_treeshap_contribs(ts, x, 4, c);
    ds_treeshap_margin(ts, x, 4, mg);
    double want[4] = {0.5, -1, -1, 0.5}; /* on the threshold: right; NaN: default right */
    for (int r = 0; r < 4; r++) {
        cr_assert_float_eq(mg[r], want[r], 1e-12, "row %d", r);
        cr_assert_float_eq(c[r * 3 + 0], want[r] - 0.125, 1e-7, "row %d", r);
        cr_assert_eq(c[r * 3 + 1], 0.0f);
        cr_assert_float_eq(c[r * 3 + 2], 0.125f, 1e-7);
    }
    ds_treeshap_destroy(ts);
    free(json);
    /* XGBoost 2 writes base_score as a vector. */
    json = model_json(tree, 2, "[5E-1]");
    cr_assert_eq(ds_treeshap_new(json, strlen(json), DS_TREESHAP_TABLE_BITS, &ts, err, sizeof err), 0, "%s",
                 err);
    cr_assert_float_eq(ds_treeshap_bias(ts), 0.125, 1e-12);
    ds_treeshap_destroy(ts);
    free(json);
}

/* Shapley values by brute force over coalitions, for the path-dependent
 * game v(S) = sum over leaves of value * prod over the path's splits of
 * (feature in S ? [row goes that way] : cover ratio). */
static double game(const int *lc, const int *rc, const int *fi, const float *thr, const int *dl,
                   const double *hess, const float *val, int node, const float *x, unsigned S) {
    if (lc[node] < 0) return val[node];
    int f = fi[node];
    if (S & (1u << f)) {
        int left = isnan(x[f]) ? dl[node] : x[f] < thr[node];
        return game(lc, rc, fi, thr, dl, hess, val, left ? lc[node] : rc[node], x, S);
    }
    return (hess[lc[node]] * game(lc, rc, fi, thr, dl, hess, val, lc[node], x, S) +
            hess[rc[node]] * game(lc, rc, fi, thr, dl, hess, val, rc[node], x, S)) /
           hess[node];
}

Test(treeshap, repeated_features_and_zero_cover_match_brute_force) {
    /* Depth 3 with feature 0 twice on a path and a child of cover 0 (so its
     * leaf cannot use a table and goes per row). */
    int lc[] = {1, 3, 5, -1, 7, -1, -1, -1, -1};
    int rc[] = {2, 4, 6, -1, 8, -1, -1, -1, -1};
    int fi[] = {0, 1, 0, 0, 0, 0, 0, 0, 0};
    float thr[] = {0.5f, 2.0f, 0.75f, 0.1f, 1.5f, 0.2f, -0.3f, 0.9f, -0.6f};
    int dl[] = {1, 0, 1, 0, 1, 0, 0, 0, 0};
    double hess[] = {10, 6, 4, 2.5, 3.5, 0, 4, 1.5, 2};
    /* Node 4 splits on 0 again below node 0's split on 0. */
    fi[4] = 0;
    /* Leaves: 3, 5, 6, 7, 8. */
    const int nf = 3;
    char tree[2048];
    size_t off = 0;
#define ARR(name, fmt, a)                                                                                    \
    do {                                                                                                     \
        off += (size_t)snprintf(tree + off, sizeof tree - off, "\"%s\":[", name);                            \
        for (int i = 0; i < 9; i++)                                                                          \
            off += (size_t)snprintf(tree + off, sizeof tree - off, fmt "%s", a[i], i < 8 ? "," : "],");      \
    } while (0)
    off += (size_t)snprintf(tree + off, sizeof tree - off, "{");
    ARR("left_children", "%d", lc);
    ARR("right_children", "%d", rc);
    ARR("split_indices", "%d", fi);
    ARR("split_conditions", "%.9g", (double)thr);
    ARR("default_left", "%d", dl);
    ARR("sum_hessian", "%.17g", hess);
#undef ARR
    tree[off - 1] = '}';
    char *json = model_json(tree, nf, "2.5E-1");
    ds_treeshap_t *ts[2] = {NULL, NULL};
    char err[256];
    for (int k = 0; k < 2; k++)
        cr_assert_eq(
            ds_treeshap_new(json, strlen(json), k ? 0 : DS_TREESHAP_TABLE_BITS, &ts[k], err, sizeof err), 0,
            "%s", err);
    ds_treeshap_stats_t st;
    ds_treeshap_stats(ts[0], &st);
    cr_assert_eq(st.n_leaves, 5);
    cr_assert_eq(st.n_row_leaves, 1, "the leaf below the zero cover goes per row");
    float val[9];
    for (int i = 0; i < 9; i++) val[i] = thr[i];
    rng_t r = {17};
    const float picks[] = {0.5f, 0.75f, 2.0f, 1.5f, 0.1f, NAN, -1.0f, 3.0f, 0.3f};
    for (int it = 0; it < 300; it++) {
        float x[3];
        for (int j = 0; j < nf; j++) x[j] = picks[(int)(rng_u(&r) * 9)];
        /* Exact Shapley values of the game. */
        double want[3] = {0, 0, 0};
        int fact[4] = {1, 1, 2, 6};
        for (int i = 0; i < nf; i++) {
            for (unsigned S = 0; S < 8; S++) {
                if (S & (1u << i)) continue;
                int s = __builtin_popcount(S);
                double w = (double)fact[s] * fact[nf - s - 1] / fact[nf];
                want[i] += w * (game(lc, rc, fi, thr, dl, hess, val, 0, x, S | (1u << i)) -
                                game(lc, rc, fi, thr, dl, hess, val, 0, x, S));
            }
        }
        double full = game(lc, rc, fi, thr, dl, hess, val, 0, x, 7);
        double e = game(lc, rc, fi, thr, dl, hess, val, 0, x, 0);
        for (int k = 0; k < 2; k++) {
            float c[4];
            double mg;
            ds_treeshap_contribs(ts[k], x, 1, c);
            ds_treeshap_margin(ts[k], x, 1, &mg);
            double base = log(0.25 / 0.75);
            cr_assert_float_eq(mg, base + full, 1e-9);
            cr_assert_float_eq(c[3], base + e, 1e-6);
            for (int i = 0; i < nf; i++)
                cr_assert_float_eq(c[i], want[i], 1e-6, "x (%g, %g, %g) feature %d: %.9g vs %.9g", x[0], x[1],
                                   x[2], i, c[i], want[i]);
        }
    }
    ds_treeshap_destroy(ts[0]);
    ds_treeshap_destroy(ts[1]);
    free(json);
}

Test(treeshap, refuses_what_it_cannot_explain) {
    char err[256];
    ds_treeshap_t *ts = NULL;
    cr_assert_eq(ds_treeshap_new("{", 1, 10, &ts, err, sizeof err), DS_EINVAL);
    cr_assert(ts == NULL && err[0]);
    const char *stump = "{\"left_children\":[1,-1,-1],\"right_children\":[2,-1,-1],\"split_indices\":[5,0,0],"
                        "\"split_conditions\":[1.0,0.5,-1.0],\"default_left\":[0,0,0],"
                        "\"sum_hessian\":[4.0,3.0,1.0]}";
    char *json = model_json(stump, 2, "5E-1");
    cr_assert_eq(ds_treeshap_new(json, strlen(json), 10, &ts, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "split feature 5"), "%s", err);
    free(json);
    const char *cycle = "{\"left_children\":[1,2,-1],\"right_children\":[2,2,-1],\"split_indices\":[0,0,0],"
                        "\"split_conditions\":[1.0,0.5,-1.0],\"default_left\":[0,0,0],"
                        "\"sum_hessian\":[4.0,3.0,1.0]}";
    json = model_json(cycle, 2, "5E-1");
    cr_assert_eq(ds_treeshap_new(json, strlen(json), 10, &ts, err, sizeof err), DS_EINVAL);
    free(json);

    /* A dart booster: the engine refuses it, the model layer still loads it
     * and explains through XGBoost. */
    size_t nf = 4, n = 300;
    float *x = malloc(n * nf * sizeof *x), *y = malloc(n * sizeof *y);
    make_data(n, nf, 0.1, 9, x, y);
    train_t t = {.depth = 3,
                 .trees = 5,
                 .base_score = 0.5,
                 .tree_method = "hist",
                 .booster = "dart",
                 .min_child_weight = 1};
    size_t len;
    json = train_json(&t, x, y, n, nf, &len);
    cr_assert_eq(ds_treeshap_new(json, len, 10, &ts, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "dart"), "%s", err);
    ds_model_t *m = NULL;
    cr_assert_eq(ds_model_load(json, len, 1, &m, err, sizeof err), 0, "%s", err);
    cr_assert(!ds_model_has_treeshap(m));
    float *a = malloc(n * (nf + 1) * sizeof *a), *b = malloc(n * (nf + 1) * sizeof *b);
    cr_assert_eq(ds_model_contribs(m, x, n, a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds_model_contribs_xgb(m, x, n, b, err, sizeof err), 0, "%s", err);
    cr_assert(memcmp(a, b, n * (nf + 1) * sizeof *a) == 0);
    ds_model_destroy(m);
    free(a);
    free(b);
    free(json);
    free(x);
    free(y);
}
