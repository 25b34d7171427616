/* Margins and exact path-dependent TreeSHAP over an XGBoost model's trees
 * (see treeshap.h for the algorithm). */
#include "domain/treeshap.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

#define ERR(...)                                                                                             \
    do {                                                                                                     \
        if (errstr && errstr_size) snprintf(errstr, errstr_size, __VA_ARGS__);                               \
    } while (0)

/* Rows processed together, tree by tree: one tree's nodes and tables stay
 * in cache while every row of the block goes through it. */
#define BLOCK_ROWS 32
/* Gauss-Legendre rules with 1 .. MAX_POINTS points; ceil(d / 2) points
 * integrate the degree d - 1 polynomials of a path of d features exactly. */
#define MAX_POINTS ((DS_TREESHAP_MAX_DEPTH + 2) / 2)
#define GL_INDEX(m) ((size_t)(m) * ((m)-1) / 2)
/* A leaf whose table index means "computed per row". */
#define NO_TABLE SIZE_MAX

typedef struct {
    uint32_t n_internal, n_leaves;
    size_t node_off; /* first internal node in the node arrays */
    size_t leaf_off; /* first leaf in the leaf arrays */
} tree_t;

struct ds_treeshap {
    size_t n_features;
    double base_margin, bias;
    size_t n_trees;
    tree_t *trees;
    /* Internal nodes, tree by tree, each tree's in breadth-first order (a
     * parent before its children). Node ids inside a tree: internal nodes
     * 0 .. n_internal-1, then leaves n_internal .. n_internal+n_leaves-1. */
    int32_t *feat;
    float *thr;
    uint8_t *dleft;
    uint8_t *pos;    /* position of the node's feature among its path's distinct features */
    uint32_t *child; /* left child 2 i, right child 2 i + 1 */
    /* Leaves, tree by tree, depth-first. */
    double *value;
    uint8_t *nu;  /* distinct features on the path */
    size_t *uoff; /* first of them in the path arrays */
    size_t *toff; /* table offset, or NO_TABLE */
    /* Path features of each leaf, by position. */
    int32_t *ufeat;
    double *uz;    /* z: product of the cover ratios of the path's splits on the feature */
    double *ucoef; /* table leaves: {-1, 1 / z - 1}, the factor of G when unsatisfied, satisfied */
    size_t n_path;
    double *tables;
    size_t max_tree_nodes, max_tree_leaves;
    int max_nu;
    double gl_t[GL_INDEX(MAX_POINTS + 1)], gl_w[GL_INDEX(MAX_POINTS + 1)];
    ds_treeshap_stats_t stats;
};

/* The m-point Gauss-Legendre rule on [0, 1]: nodes t, weights w. */
static void gauss_legendre(int m, double *t, double *w) {
    for (int i = 0; i < m; i++) {
        double x = cos(M_PI * (i + 0.75) / (m + 0.5)), p1 = 0, dp = 1;
        for (int iter = 0; iter < 100; iter++) {
            double p0 = 1;
            p1 = x;
            for (int k = 2; k <= m; k++) {
                double p2 = ((2.0 * k - 1) * x * p1 - (k - 1.0) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            dp = m * (x * p1 - p0) / (x * x - 1);
            double dx = p1 / dp;
            x -= dx;
            if (fabs(dx) < 1e-16) break;
        }
        t[i] = (1 - x) / 2;
        w[i] = 1 / ((1 - x * x) * dp * dp);
    }
}

/* ---- building --------------------------------------------------------------- */

typedef struct {
    ds_treeshap_t *ts;
    int table_bits;
    size_t table_cap, path_cap;
    double *scratch; /* 2^table_bits doubles */
    /* The tree being built. */
    const json_t *lc, *rc, *si, *sc, *dl, *hess;
    size_t n;
    uint32_t *newid;
    uint32_t n_internal, leaf_next;
    size_t node_off, leaf_off;
    double expected; /* the tree's cover-weighted mean leaf value */
    /* The path to the current node. */
    int32_t pfeat[DS_TREESHAP_MAX_DEPTH + 1];
    double pz[DS_TREESHAP_MAX_DEPTH + 1];
} build_t;

static long long int_at(const json_t *a, size_t i) { return json_integer_value(json_array_get(a, i)); }
static double num_at(const json_t *a, size_t i) { return json_number_value(json_array_get(a, i)); }

static void path_reserve(build_t *b, size_t more) {
    ds_treeshap_t *ts = b->ts;
    if (ts->n_path + more <= b->path_cap) return;
    while (ts->n_path + more > b->path_cap) b->path_cap = b->path_cap ? 2 * b->path_cap : 1024;
    ts->ufeat = ds_realloc(ts->ufeat, b->path_cap * sizeof *ts->ufeat);
    ts->uz = ds_realloc(ts->uz, b->path_cap * sizeof *ts->uz);
    ts->ucoef = ds_realloc(ts->ucoef, 2 * b->path_cap * sizeof *ts->ucoef);
}

/* Fills the leaf's table: T[A] = v G(A) for every subset A of its d path
 * positions (bit j of A = position j), by the quadrature of
 * prod_{j in A} (t + (1 - t) z_j) prod_{j not in A} (1 - t) z_j / (1 - t),
 * a polynomial of degree d - 1 for every A but the full set (never read). */
static void fill_table(const ds_treeshap_t *ts, double v, const double *z, int d, double *t_out,
                       double *scratch) {
    size_t size_all = (size_t)1 << d;
    int m = (d + 1) / 2;
    const double *gt = ts->gl_t + GL_INDEX(m), *gw = ts->gl_w + GL_INDEX(m);
    memset(t_out, 0, size_all * sizeof *t_out);
    for (int k = 0; k < m; k++) {
        double t = gt[k];
        scratch[0] = v * gw[k] / (1 - t);
        size_t size = 1;
        for (int j = 0; j < d; j++) {
            double on = t + (1 - t) * z[j], off = (1 - t) * z[j];
            for (size_t a = 0; a < size; a++) {
                scratch[a + size] = scratch[a] * on;
                scratch[a] *= off;
            }
            size *= 2;
        }
        for (size_t a = 0; a < size_all; a++) t_out[a] += scratch[a];
    }
}

static void add_leaf(build_t *b, size_t node, int nu) {
    ds_treeshap_t *ts = b->ts;
    size_t li = b->leaf_off + (b->newid[node] - b->n_internal);
    double v = (double)(float)num_at(b->sc, node);
    ts->value[li] = v;
    ts->nu[li] = (uint8_t)nu;
    ts->uoff[li] = ts->n_path;
    ts->toff[li] = NO_TABLE;
    path_reserve(b, (size_t)nu);
    double zprod = 1;
    bool positive = true;
    for (int p = 0; p < nu; p++) {
        ts->ufeat[ts->n_path + p] = b->pfeat[p];
        ts->uz[ts->n_path + p] = b->pz[p];
        ts->ucoef[2 * (ts->n_path + p)] = -1;
        ts->ucoef[2 * (ts->n_path + p) + 1] = b->pz[p] > 0 ? (1 - b->pz[p]) / b->pz[p] : 0;
        zprod *= b->pz[p];
        if (!(b->pz[p] > 0)) positive = false;
    }
    ts->n_path += (size_t)nu;
    b->expected += v * zprod;
    ts->stats.n_leaves++;
    if (nu > ts->max_nu) ts->max_nu = nu;
    if (nu == 0) return;
    size_t size = (size_t)1 << (nu < 62 ? nu : 62);
    size_t used = ts->stats.table_bytes / sizeof(double);
    if (nu <= b->table_bits && positive && used + size <= DS_TREESHAP_TABLE_BUDGET) {
        if (used + size > b->table_cap) {
            while (used + size > b->table_cap) b->table_cap = b->table_cap ? 2 * b->table_cap : 4096;
            ts->tables = ds_realloc(ts->tables, b->table_cap * sizeof *ts->tables);
        }
        fill_table(ts, v, b->pz, nu, ts->tables + used, b->scratch);
        ts->toff[li] = used;
        ts->stats.table_bytes += size * sizeof(double);
        ts->stats.n_table_leaves++;
    } else {
        ts->stats.n_row_leaves++;
    }
}

/* Walks the tree depth-first from node, nu distinct features on the path so
 * far, numbering leaves in visiting order and recording each leaf's path. */
static int walk(build_t *b, size_t node, int depth, int nu, char *errstr, size_t errstr_size) {
    ds_treeshap_t *ts = b->ts;
    if (int_at(b->lc, node) < 0) {
        b->newid[node] = b->n_internal + b->leaf_next++;
        add_leaf(b, node, nu);
        if (depth > ts->stats.max_depth) ts->stats.max_depth = depth;
        return 0;
    }
    if (depth >= DS_TREESHAP_MAX_DEPTH) {
        ERR("a tree is deeper than %d splits", DS_TREESHAP_MAX_DEPTH);
        return DS_EINVAL;
    }
    int32_t f = (int32_t)int_at(b->si, node);
    int p = 0;
    while (p < nu && b->pfeat[p] != f) p++;
    ts->pos[b->node_off + b->newid[node]] = (uint8_t)p;
    double cover = num_at(b->hess, node);
    size_t kids[2] = {(size_t)int_at(b->lc, node), (size_t)int_at(b->rc, node)};
    for (int c = 0; c < 2; c++) {
        double saved = p < nu ? b->pz[p] : 1;
        b->pfeat[p] = f;
        b->pz[p] = saved * (num_at(b->hess, kids[c]) / cover);
        int rc = walk(b, kids[c], depth + 1, p < nu ? nu : nu + 1, errstr, errstr_size);
        b->pz[p] = saved;
        if (rc) return rc;
    }
    return 0;
}

/* Points b at the tree's node arrays and checks their shape; sets *n
 * and *st (split types, or NULL). */
static int read_arrays(build_t *b, const json_t *tree, size_t ti, size_t *n, const json_t **st, char *errstr,
                       size_t errstr_size) {
    b->lc = json_object_get(tree, "left_children");
    b->rc = json_object_get(tree, "right_children");
    b->si = json_object_get(tree, "split_indices");
    b->sc = json_object_get(tree, "split_conditions");
    b->dl = json_object_get(tree, "default_left");
    b->hess = json_object_get(tree, "sum_hessian");
    *st = json_object_get(tree, "split_type");
    const json_t *cat = json_object_get(tree, "categories_nodes");
    *n = json_array_size(b->lc);
    if (*n == 0 || json_array_size(b->rc) != *n || json_array_size(b->si) != *n ||
        json_array_size(b->sc) != *n || json_array_size(b->dl) != *n || json_array_size(b->hess) != *n ||
        (*st && json_array_size(*st) != *n)) {
        ERR("tree %zu: node arrays missing or of different lengths", ti);
        return DS_EINVAL;
    }
    if (json_array_size(cat) > 0) {
        ERR("tree %zu has categorical splits", ti);
        return DS_EINVAL;
    }
    const json_t *tp = json_object_get(tree, "tree_param");
    const char *slv = json_string_value(json_object_get(tp, "size_leaf_vector"));
    if (slv && strcmp(slv, "0") != 0) {
        ERR("tree %zu has vector leaves", ti);
        return DS_EINVAL;
    }
    return 0;
}

/* Validates every node, reachable or not (deleted nodes stay in the
 * arrays). */
static int check_nodes(build_t *b, size_t n, const json_t *st, size_t ti, char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < n; i++) {
        long long l = int_at(b->lc, i), r = int_at(b->rc, i);
        if (!json_is_integer(json_array_get(b->lc, i)) || !json_is_integer(json_array_get(b->rc, i)) ||
            !json_is_number(json_array_get(b->sc, i)) || !json_is_number(json_array_get(b->hess, i))) {
            ERR("tree %zu node %zu: malformed", ti, i);
            return DS_EINVAL;
        }
        if (l < 0) continue;
        long long f = int_at(b->si, i);
        double h = num_at(b->hess, i);
        if (l == 0 || r <= 0 || (size_t)l >= n || (size_t)r >= n || l == r) {
            ERR("tree %zu node %zu: bad children %lld, %lld", ti, i, l, r);
            return DS_EINVAL;
        }
        if (!json_is_integer(json_array_get(b->si, i)) || f < 0 || (size_t)f >= b->ts->n_features) {
            ERR("tree %zu node %zu: split feature %lld outside 0 .. %zu", ti, i, f, b->ts->n_features - 1);
            return DS_EINVAL;
        }
        if (!(h > 0) || !isfinite(h) || !(num_at(b->hess, (size_t)l) >= 0) ||
            !(num_at(b->hess, (size_t)r) >= 0) || !isfinite(num_at(b->hess, (size_t)l)) ||
            !isfinite(num_at(b->hess, (size_t)r))) {
            ERR("tree %zu node %zu: cover (sum_hessian) not positive", ti, i);
            return DS_EINVAL;
        }
        if (st && int_at(st, i) != 0) {
            ERR("tree %zu has categorical splits", ti);
            return DS_EINVAL;
        }
    }
    return 0;
}

/* Breadth-first from the root: internal nodes get ids (b->newid) in that
 * order, and queue[0 .. *tail) holds the nodes in it; a node seen twice
 * means the arrays are not a tree. Counts the internal nodes and leaves. */
static int number_nodes(build_t *b, size_t ti, uint32_t *queue, size_t *tail, uint32_t *ni, uint32_t *nl,
                        char *errstr, size_t errstr_size) {
    uint8_t *seen = ds_calloc(b->n, 1);
    size_t head = 0;
    int rc = 0;
    *tail = 0;
    queue[(*tail)++] = 0;
    seen[0] = 1;
    while (head < *tail && rc == 0) {
        size_t i = queue[head++];
        if (int_at(b->lc, i) < 0) {
            (*nl)++;
            continue;
        }
        b->newid[i] = (*ni)++;
        size_t kids[2] = {(size_t)int_at(b->lc, i), (size_t)int_at(b->rc, i)};
        for (int c = 0; c < 2 && rc == 0; c++) {
            if (seen[kids[c]]) {
                ERR("tree %zu: node %zu is reached twice", ti, kids[c]);
                rc = DS_EINVAL;
                break;
            }
            seen[kids[c]] = 1;
            queue[(*tail)++] = (uint32_t)kids[c];
        }
    }
    free(seen);
    return rc;
}

/* The split of every internal node, at its new id. */
static void store_splits(build_t *b, const uint32_t *queue, size_t tail) {
    ds_treeshap_t *ts = b->ts;
    for (size_t q = 0; q < tail; q++) {
        size_t i = queue[q];
        if (int_at(b->lc, i) < 0) continue;
        size_t k = b->node_off + b->newid[i];
        ts->feat[k] = (int32_t)int_at(b->si, i);
        ts->thr[k] = (float)num_at(b->sc, i);
        json_t *d = json_array_get(b->dl, i);
        ts->dleft[k] = (uint8_t)(json_is_true(d) || (json_is_integer(d) && json_integer_value(d)));
        ts->child[2 * k] = b->newid[int_at(b->lc, i)];
        ts->child[2 * k + 1] = b->newid[int_at(b->rc, i)];
    }
}

static int add_tree(build_t *b, const json_t *tree, size_t ti, char *errstr, size_t errstr_size) {
    ds_treeshap_t *ts = b->ts;
    size_t n;
    const json_t *st;
    int rc = read_arrays(b, tree, ti, &n, &st, errstr, errstr_size);
    if (rc == 0) rc = check_nodes(b, n, st, ti, errstr, errstr_size);
    if (rc) return rc;
    uint32_t *queue = ds_malloc(n * sizeof *queue);
    b->newid = ds_malloc(n * sizeof *b->newid);
    b->n = n;
    size_t tail = 0;
    uint32_t ni = 0, nl = 0;
    rc = number_nodes(b, ti, queue, &tail, &ni, &nl, errstr, errstr_size);
    if (rc) goto done;
    tree_t *t = &ts->trees[ti];
    t->n_internal = ni;
    t->n_leaves = nl;
    t->node_off = b->node_off;
    t->leaf_off = b->leaf_off;
    b->n_internal = ni;
    b->leaf_next = 0;
    b->expected = 0;
    rc = walk(b, 0, 0, 0, errstr, errstr_size);
    if (rc) goto done;
    store_splits(b, queue, tail);
    ts->bias += b->expected;
    b->node_off += ni;
    b->leaf_off += nl;
    ts->stats.n_nodes += ni + nl;
    if (ni + nl > ts->max_tree_nodes) ts->max_tree_nodes = ni + nl;
    if (nl > ts->max_tree_leaves) ts->max_tree_leaves = nl;
done:
    free(queue);
    free(b->newid);
    b->newid = NULL;
    return rc;
}

static const char *param_str(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* Checks that the model is one binary:logistic gbtree with one output and
 * reads its base score, feature count and trees (in root). */
static int read_learner(const json_t *root, double *base, long long *nf, const json_t **trees, char *errstr,
                        size_t errstr_size) {
    const json_t *learner = json_object_get(root, "learner");
    const json_t *mp = json_object_get(learner, "learner_model_param");
    const json_t *gb = json_object_get(learner, "gradient_booster");
    const char *objective = json_string_value(json_object_get(json_object_get(learner, "objective"), "name"));
    const char *booster = param_str(gb, "name");
    if (!objective || strcmp(objective, "binary:logistic") != 0) {
        ERR("objective %s is not binary:logistic", objective ? objective : "(none)");
        return DS_EINVAL;
    }
    if (!booster || strcmp(booster, "gbtree") != 0) {
        ERR("booster %s is not gbtree", booster ? booster : "(none)");
        return DS_EINVAL;
    }
    const char *s_base = param_str(mp, "base_score"), *s_nf = param_str(mp, "num_feature");
    const char *s_class = param_str(mp, "num_class"), *s_target = param_str(mp, "num_target");
    char *end = NULL;
    /* XGBoost 2 writes a vector, "[5E-1]". */
    bool vec = s_base && *s_base == '[';
    *base = s_base ? strtod(s_base + vec, &end) : NAN;
    if (vec && end && *end == ']') end++;
    if (!s_base || *end || !(*base > 0 && *base < 1)) {
        ERR("base_score %s is not a probability", s_base ? s_base : "(none)");
        return DS_EINVAL;
    }
    *nf = s_nf ? strtoll(s_nf, &end, 10) : -1;
    if (!s_nf || *end || *nf < 1 || *nf > INT32_MAX) {
        ERR("num_feature %s is not a positive count", s_nf ? s_nf : "(none)");
        return DS_EINVAL;
    }
    if ((s_class && strcmp(s_class, "0") != 0 && strcmp(s_class, "1") != 0) ||
        (s_target && strcmp(s_target, "1") != 0)) {
        ERR("model has several outputs (num_class %s, num_target %s)", s_class ? s_class : "-",
            s_target ? s_target : "-");
        return DS_EINVAL;
    }
    const json_t *model = json_object_get(gb, "model");
    const json_t *info = json_object_get(model, "tree_info");
    *trees = json_object_get(model, "trees");
    if (!json_is_array(*trees) || (info && json_array_size(info) != json_array_size(*trees))) {
        ERR("model has no trees array");
        return DS_EINVAL;
    }
    for (size_t i = 0; i < json_array_size(info); i++) {
        if (json_integer_value(json_array_get(info, i)) != 0) {
            ERR("tree %zu belongs to output %lld", i, json_integer_value(json_array_get(info, i)));
            return DS_EINVAL;
        }
    }
    return 0;
}

/* An engine for the trees, its node arrays sized for every node of them
 * (reachable nodes are at most that many). */
static ds_treeshap_t *engine_new(const json_t *trees, long long nf, double base) {
    ds_treeshap_t *ts = ds_calloc(1, sizeof *ts);
    ts->n_features = (size_t)nf;
    /* XGBoost's margin of base_score under the logistic link. */
    ts->base_margin = -log(1.0 / (double)(float)base - 1.0);
    ts->bias = ts->base_margin;
    ts->n_trees = json_array_size(trees);
    ts->trees = ds_calloc(ts->n_trees ? ts->n_trees : 1, sizeof *ts->trees);
    for (int m = 1; m <= MAX_POINTS; m++) gauss_legendre(m, ts->gl_t + GL_INDEX(m), ts->gl_w + GL_INDEX(m));
    size_t total = 0;
    for (size_t i = 0; i < ts->n_trees; i++) {
        const json_t *tree = json_array_get(trees, i);
        total += json_array_size(json_object_get(tree, "left_children"));
    }
    size_t cap = total ? total : 1;
    ts->feat = ds_malloc(cap * sizeof *ts->feat);
    ts->thr = ds_malloc(cap * sizeof *ts->thr);
    ts->dleft = ds_malloc(cap * sizeof *ts->dleft);
    ts->pos = ds_malloc(cap * sizeof *ts->pos);
    ts->child = ds_malloc(2 * cap * sizeof *ts->child);
    ts->value = ds_malloc(cap * sizeof *ts->value);
    ts->nu = ds_malloc(cap * sizeof *ts->nu);
    ts->uoff = ds_malloc(cap * sizeof *ts->uoff);
    ts->toff = ds_malloc(cap * sizeof *ts->toff);
    return ts;
}

int ds_treeshap_new(const char *json, size_t len, int table_bits, ds_treeshap_t **out, char *errstr,
                    size_t errstr_size) {
    if (!out) return DS_EINVAL;
    *out = NULL;
    if (!json || !len || table_bits < 0 || table_bits > 20) {
        ERR("missing model JSON or table bits outside 0 .. 20");
        return DS_EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    ds_treeshap_t *ts = NULL;
    build_t b = {0};
    if (!root) {
        ERR("model is not JSON: %s", jerr.text);
        goto fail;
    }
    double base;
    long long nf;
    const json_t *trees;
    if (read_learner(root, &base, &nf, &trees, errstr, errstr_size) != 0) goto fail;
    ts = engine_new(trees, nf, base);
    b.ts = ts;
    b.table_bits = table_bits;
    b.scratch = ds_malloc(((size_t)1 << table_bits) * sizeof *b.scratch);
    for (size_t i = 0; i < ts->n_trees; i++)
        if (add_tree(&b, json_array_get(trees, i), i, errstr, errstr_size) != 0) goto fail;
    ts->stats.n_trees = ts->n_trees;
    if (ts->tables) /* give back what the doubling reserved */
        ts->tables = ds_realloc(ts->tables, ts->stats.table_bytes);
    free(b.scratch);
    json_decref(root);
    *out = ts;
    return 0;

fail:
    free(b.scratch);
    ds_treeshap_destroy(ts);
    json_decref(root);
    return DS_EINVAL;
}

void ds_treeshap_destroy(ds_treeshap_t *ts) {
    if (!ts) return;
    free(ts->trees);
    free(ts->feat);
    free(ts->thr);
    free(ts->dleft);
    free(ts->pos);
    free(ts->child);
    free(ts->value);
    free(ts->nu);
    free(ts->uoff);
    free(ts->toff);
    free(ts->ufeat);
    free(ts->uz);
    free(ts->ucoef);
    free(ts->tables);
    free(ts);
}

size_t ds_treeshap_n_features(const ds_treeshap_t *ts) { return ts->n_features; }

double ds_treeshap_bias(const ds_treeshap_t *ts) { return ts->bias; }

void ds_treeshap_stats(const ds_treeshap_t *ts, ds_treeshap_stats_t *out) { *out = ts->stats; }

/* ---- prediction -------------------------------------------------------------- */

/* 1 when the row goes left: x < threshold, or missing and default left.
 * Without a branch: NaN is rare but not predictable. */
static inline unsigned goes_left(float v, float thr, uint8_t dleft) {
    return (unsigned)(v < thr) | ((unsigned)isnan(v) & dleft);
}

void ds_treeshap_margin(const ds_treeshap_t *ts, const float *x, size_t n_rows, double *out) {
    size_t nf = ts->n_features;
    for (size_t r = 0; r < n_rows; r++) out[r] = ts->base_margin;
    for (size_t r0 = 0; r0 < n_rows; r0 += BLOCK_ROWS) {
        size_t r1 = r0 + BLOCK_ROWS < n_rows ? r0 + BLOCK_ROWS : n_rows;
        for (size_t t = 0; t < ts->n_trees; t++) {
            const tree_t *tr = &ts->trees[t];
            const int32_t *feat = ts->feat + tr->node_off;
            const float *thr = ts->thr + tr->node_off;
            const uint8_t *dl = ts->dleft + tr->node_off;
            const uint32_t *child = ts->child + 2 * tr->node_off;
            const double *value = ts->value + tr->leaf_off;
            uint32_t ni = tr->n_internal;
            for (size_t r = r0; r < r1; r++) {
                const float *row = x + r * nf;
                uint32_t n = 0;
                /* An index, not a branch: the way a row goes is not
                 * predictable. */
                while (n < ni) n = child[2 * n + (goes_left(row[feat[n]], thr[n], dl[n]) ^ 1)];
                out[r] += value[n - ni];
            }
        }
    }
}

/* One per-row leaf: phi_i += v (o_i - z_i) int_0^1 prod_{j != i} q_j(t) dt
 * with q_j = o_j t + (1 - t) z_j, by quadrature (prefix and suffix
 * products, no division). q, pre and acc have room for d + 1 doubles. */
static void leaf_by_quadrature(const ds_treeshap_t *ts, double v, uint64_t set, const int32_t *f,
                               const double *z, int d, double *ph, double *q, double *pre, double *acc) {
    int m = (d + 1) / 2;
    const double *gt = ts->gl_t + GL_INDEX(m), *gw = ts->gl_w + GL_INDEX(m);
    for (int j = 0; j < d; j++) acc[j] = 0;
    for (int k = 0; k < m; k++) {
        double t = gt[k];
        pre[0] = 1;
        for (int j = 0; j < d; j++) {
            q[j] = ((set >> j) & 1 ? t : 0) + (1 - t) * z[j];
            pre[j + 1] = pre[j] * q[j];
        }
        double s = gw[k];
        for (int j = d - 1; j >= 0; j--) {
            acc[j] += pre[j] * s;
            s *= q[j];
        }
    }
    for (int j = 0; j < d; j++) ph[f[j]] += v * ((double)((set >> j) & 1) - z[j]) * acc[j];
}

void ds_treeshap_contribs(const ds_treeshap_t *ts, const float *x, size_t n_rows, float *out) {
    size_t nf = ts->n_features, stride = nf + 1;
    double *phi = ds_malloc(BLOCK_ROWS * stride * sizeof *phi);
    uint64_t *mask = ds_malloc((ts->max_tree_nodes ? ts->max_tree_nodes : 1) * sizeof *mask);
    /* The satisfied set of each table leaf for each row of the block. */
    uint32_t *lset = ds_malloc((ts->max_tree_leaves ? ts->max_tree_leaves : 1) * BLOCK_ROWS * sizeof *lset);
    size_t qn = (size_t)ts->max_nu + 1;
    double *q = ds_malloc(3 * qn * sizeof *q), *pre = q + qn, *acc = q + 2 * qn;
    for (size_t r0 = 0; r0 < n_rows; r0 += BLOCK_ROWS) {
        size_t r1 = r0 + BLOCK_ROWS < n_rows ? r0 + BLOCK_ROWS : n_rows, nr = r1 - r0;
        memset(phi, 0, nr * stride * sizeof *phi);
        for (size_t t = 0; t < ts->n_trees; t++) {
            const tree_t *tr = &ts->trees[t];
            const int32_t *feat = ts->feat + tr->node_off;
            const float *thr = ts->thr + tr->node_off;
            const uint8_t *dl = ts->dleft + tr->node_off, *pos = ts->pos + tr->node_off;
            const uint32_t *child = ts->child + 2 * tr->node_off;
            size_t lo = tr->leaf_off;
            uint32_t ni = tr->n_internal, nl = tr->n_leaves;
            /* Row by row: where the row satisfies each leaf's path; the
             * per-row leaves right away. */
            for (size_t r = 0; r < nr; r++) {
                const float *row = x + (r0 + r) * nf;
                /* Bit p of a node's mask: the row satisfies every split on
                 * the path's p-th distinct feature so far. */
                mask[0] = ~(uint64_t)0;
                for (uint32_t i = 0; i < ni; i++) {
                    uint64_t go = (uint64_t)goes_left(row[feat[i]], thr[i], dl[i]);
                    uint64_t m = mask[i], bit = (uint64_t)1 << pos[i];
                    mask[child[2 * i]] = m & ~((go ^ 1) << pos[i]);
                    mask[child[2 * i + 1]] = m & ~(go * bit);
                }
                for (uint32_t l = 0; l < nl; l++) {
                    int d = ts->nu[lo + l];
                    uint64_t set = mask[ni + l] & (((uint64_t)1 << d) - 1);
                    if (ts->toff[lo + l] != NO_TABLE) {
                        lset[(size_t)l * BLOCK_ROWS + r] = (uint32_t)set;
                    } else if (d > 0) {
                        size_t u = ts->uoff[lo + l];
                        leaf_by_quadrature(ts, ts->value[lo + l], set, ts->ufeat + u, ts->uz + u, d,
                                           phi + r * stride, q, pre, acc);
                    }
                }
            }
            /* Leaf by leaf, every row: consecutive updates go to different
             * rows, so they do not wait for each other. Unsatisfied
             * features get -v G(B), satisfied ones v (1 - z) / z G(B \ {i}):
             * the bit picks the factor and, since B \ {i} = B when i is
             * unsatisfied, the table entry too, without a branch on the
             * row's (unpredictable) bits. */
            for (uint32_t l = 0; l < nl; l++) {
                size_t toff = ts->toff[lo + l];
                if (toff == NO_TABLE) continue;
                int d = ts->nu[lo + l];
                const double *tab = ts->tables + toff, *cf = ts->ucoef + 2 * ts->uoff[lo + l];
                const int32_t *f = ts->ufeat + ts->uoff[lo + l];
                const uint32_t *sets = lset + (size_t)l * BLOCK_ROWS;
                for (size_t r = 0; r < nr; r++) {
                    uint32_t set = sets[r];
                    double *ph = phi + r * stride;
                    for (int p = 0; p < d; p++)
                        ph[f[p]] += cf[2 * p + ((set >> p) & 1)] * tab[set & ~((uint32_t)1 << p)];
                }
            }
        }
        for (size_t r = 0; r < nr; r++) {
            const double *ph = phi + r * stride;
            float *o = out + (r0 + r) * stride;
            for (size_t j = 0; j < nf; j++) o[j] = (float)ph[j];
            o[nf] = (float)ts->bias;
        }
    }
    free(q);
    free(lset);
    free(mask);
    free(phi);
}
