/* Our own tree engine over an XGBoost binary:logistic gbtree model: margins
 * and exact path-dependent TreeSHAP contributions, with the semantics of
 * XGBoost's pred_contribs (prediction type 2), at a fraction of its cost.
 *
 * The trees are read once from the model's JSON (XGBoosterSaveModelToBuffer
 * with {"format":"json"}) into flat arrays. For a row, a split sends the row
 * left when x < split_condition (both as float) and a missing value (NaN)
 * the default_left way; the cover of a node is its sum_hessian.
 *
 * Algorithm. For a leaf l with value v, let P be the distinct features on
 * its path; for j in P, z_j is the product of cover(child) / cover(parent)
 * over the path's splits on j, and o_j is 1 when the row satisfies all of
 * them (else 0). Path-dependent TreeSHAP (Lundberg et al. 2020) gives
 *     phi_i += v (o_i - z_i) sum_{S in P\{i}, o_S = 1} w(|S|, |P|) prod_{j in P\S\{i}} z_j,
 * w(s, d) = s! (d - s - 1)! / d!. Since o is 0 or 1, the sum depends only
 * on the set B of satisfied features, and, with
 *     G(A) = sum_{S in A} w(|S|, d) prod_{j in P\S} z_j = int_0^1 prod_{j in A} (t + (1 - t) z_j)
 *                                                        prod_{j in P\A} (1 - t) z_j dt / (1 - t),
 * an unsatisfied feature gets -v G(B) and a satisfied one
 * v (1 - z_i) / z_i G(B\{i}) (the idea of Fast TreeSHAP v2, Yang 2021).
 * G over every subset of P is precomputed per leaf (2^|P| doubles, by
 * Gauss-Legendre quadrature, exact for these polynomials), so a row costs
 * one comparison per split and one table read per (leaf, path feature):
 * O(leaves x depth) per tree instead of XGBoost's O(leaves x depth^2).
 * Leaves with more path features than the table allows (or a zero cover
 * ratio) are computed per row by quadrature of prod_{j != i} (o_j t +
 * (1 - t) z_j) instead, O(leaves x depth^2 / 2), still exact.
 *
 * Output: contributions are n_rows x (n_features + 1), bias last (the base
 * margin plus every tree's expected value); accumulated in double, stored
 * as float. A row's contributions sum to its margin to double rounding
 * before the float conversion.
 *
 * Threads: a built engine is read-only; every function may run on any
 * number of threads at once on the same engine. Each call allocates its
 * scratch once (nothing per row).
 */
#ifndef DEALSCORE_TREESHAP_H
#define DEALSCORE_TREESHAP_H

#include <stddef.h>

typedef struct ds_treeshap ds_treeshap_t;

/* Leaves with at most this many distinct features on their path get a
 * precomputed table (2^bits doubles each); deeper ones are computed per
 * row. */
#define DS_TREESHAP_TABLE_BITS 10
/* At most this many table doubles per engine (128 MiB); leaves beyond it
 * are computed per row. */
#define DS_TREESHAP_TABLE_BUDGET ((size_t)16 << 20)
/* The deepest path the engine accepts. */
#define DS_TREESHAP_MAX_DEPTH 63

/* What a built engine holds (for benchmarks and tests). */
typedef struct {
    size_t n_trees;
    size_t n_nodes; /* reachable nodes, all trees */
    size_t n_leaves;
    size_t n_table_leaves; /* leaves with a precomputed table */
    size_t n_row_leaves;   /* leaves with path features, computed per row */
    size_t table_bytes;
    int max_depth; /* longest root-to-leaf path, in splits */
} ds_treeshap_stats_t;

/* Builds the engine from an XGBoost model's JSON json[0 .. len-1]
 * (gbtree, objective binary:logistic, one output, numerical splits only).
 * table_bits: as DS_TREESHAP_TABLE_BITS (pass that), 0 .. 20; 0 computes
 * every leaf per row. Returns 0 and sets *out (free with
 * ds_treeshap_destroy), or DS_EINVAL with a sentence in errstr: not JSON,
 * a model the engine does not handle (another booster or objective,
 * categorical splits, vector leaves, several outputs), or inconsistent
 * trees (array lengths, child indexes, feature indexes, covers that are
 * not positive, paths deeper than DS_TREESHAP_MAX_DEPTH). */
int ds_treeshap_new(const char *json, size_t len, int table_bits, ds_treeshap_t **out, char *errstr,
                    size_t errstr_size);

/* Frees the engine; does nothing with NULL. */
void ds_treeshap_destroy(ds_treeshap_t *ts);

/* The number of feature columns (the model's num_feature). */
size_t ds_treeshap_n_features(const ds_treeshap_t *ts);

/* The bias: the base margin logit(base_score) plus the sum of the trees'
 * expected values (cover-weighted means of their leaves). */
double ds_treeshap_bias(const ds_treeshap_t *ts);

/* Copies what the engine holds into *out. */
void ds_treeshap_stats(const ds_treeshap_t *ts, ds_treeshap_stats_t *out);

/* Margins (log-odds) of n_rows rows of x (row-major float, n_features
 * columns, NaN missing) into out[n_rows]: the base margin plus each tree's
 * leaf value, summed in double. Cannot fail; n_rows 0 does nothing. */
void ds_treeshap_margin(const ds_treeshap_t *ts, const float *x, size_t n_rows, double *out);

/* Exact path-dependent TreeSHAP contributions of n_rows rows of x into
 * out[n_rows * (n_features + 1)], bias last. Rows go through the trees in
 * blocks, so one call with many rows costs less per row than many calls
 * with one; a row's result does not depend on the batch it comes in. Cannot
 * fail (scratch comes from ds_malloc); n_rows 0 does nothing. */
void ds_treeshap_contribs(const ds_treeshap_t *ts, const float *x, size_t n_rows, float *out);

#endif
