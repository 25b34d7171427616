/* The scorer: each org's active model (or the stage prior while the org has
 * none), loaded from the models table and cached; scoring one feature vector
 * into a calibrated probability, exact TreeSHAP drivers and the named
 * contributions stored for the next "why did it move". Used by the worker,
 * /api/predict and rescore, so they can never disagree. */
#ifndef DS_SCORER_H
#define DS_SCORER_H

#include <jansson.h>
#include <stdbool.h>

#include "store/feature_loader.h"
#include "domain/features.h"
#include "domain/model.h"
#include "infra/pg.h"

typedef struct {
    char org_id[37];
    char version[64];  /* model version, or "stage-prior" */
    ds_model_t *model; /* NULL: stage prior */
    ds_calib_t *calib;
    int *map; /* model column -> engine feature index */
    size_t nf;
    ds_stage_prior_t *prior;
} scorer_org_t;

typedef struct scorer_s scorer_t;

scorer_t *scorer_new(int ttl_ms);
void scorer_destroy(scorer_t *s);
/* The org's scorer, loaded when missing, stale or invalidated. A model the
 * engine cannot supply features for is refused with a log line; the org
 * keeps what it had (or the stage prior). Returns 0 or a pg error class. */
int scorer_get(scorer_t *s, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *org,
               const scorer_org_t **out, char *errstr, size_t errstr_size);
/* Forgets the org (after NOTIFY dealscore_models); NULL forgets every org. */
void scorer_invalidate(scorer_t *s, const char *org_id);
/* The orgs' risk rules and thresholds (deal_risks.h), kept with the scorer. */
struct deal_risks_cache_s *scorer_risks(scorer_t *s);

typedef struct {
    double proba;
    double margin;
    bool is_prior;
    /* The top drivers each way (ds_drivers_top's order); names and labels
     * borrowed like contribs'. score_drivers_write gives them as JSON. */
    ds_driver_t *pos, *neg;
    size_t n_pos, n_neg;
    /* Every feature's log-odds contribution and "_bias" last, in the
     * model's order (what prediction_history.contributions stores). The
     * names point into the scorer's model or are static: valid while the
     * scorer keeps the org. */
    ds_named_contrib_t *contribs;
    size_t n_contribs;
} score_t;

/* Scores rows of engine feature values (n rows of DS_FEATURE_COUNT doubles)
 * into out[n]. top_k drivers each way. Returns 0 or DS_EFATAL with errstr.
 * Free each result with score_clear. */
int scorer_score(const scorer_org_t *o, const double *values, size_t n, int top_k, score_t *out, char *errstr,
                 size_t errstr_size);
void score_clear(score_t *s);
/* Appends {"positive":[..],"negative":[..]} to b (ds_drivers_write). */
void score_drivers_write(ds_sb_t *b, const score_t *s);

/* "Why did it move": the change of contributions between a previous
 * score's named contributions and the current ones, top k by |change|
 * (changes below the stored precision left out), into *out (a new array,
 * NULL when nothing moved; free() it) and *n. */
void scorer_change_named(const ds_named_contrib_t *prev, size_t n_prev, const ds_named_contrib_t *cur,
                         size_t n_cur, int top_k, ds_contrib_change_t **out, size_t *n);

/* Registers the statements scorer_get uses on pg. */
void scorer_register(ds_pg_t *pg);

#endif
