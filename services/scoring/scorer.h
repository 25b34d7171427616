/* The scorer: each org's active model (or, while the org has none, its
 * cold-start prior chain: domain/prior.h), loaded from the models table and
 * cached; scoring one feature vector into a calibrated probability, exact
 * TreeSHAP drivers and the named contributions stored for the next "why did
 * it move". Used by the worker, /api/predict and rescore, so they can never
 * disagree. */
#ifndef DS_SCORER_H
#define DS_SCORER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/feature_loader.h"
#include "domain/features.h"
#include "domain/model.h"
#include "domain/prior.h"
#include "infra/pg.h"

typedef struct {
    char org_id[37];
    char version[64];  /* model version, or "prior" (each score names its source) */
    ds_model_t *model; /* NULL: the prior chain */
    ds_calib_t *calib;
    int *map; /* model column -> engine feature index */
    size_t nf;
    /* The prior chain: the org's stage win rates (has_history: enough
     * closed deals), and its ladder (set, or the default). */
    bool has_history;
    double history_rate;
    ds_ladder_t history, ladder;
    char *prior_key; /* what the stage win rates were fitted on (scorer.c's prior_key) */
} scorer_org_t;

typedef struct scorer_s scorer_t;

/* prior_min_closed: closed deals an org needs before its own stage win
 * rates are its prior (DEALSCORE_PRIOR_MIN_CLOSED). */
scorer_t *scorer_new(int ttl_ms, int prior_min_closed);
/* A scorer whose risk rules and thresholds are reloaded risks_ttl_ms after
 * they were loaded, off the caller's loop on a connection to url
 * (deal_risks_cache_new). For the worker. */
scorer_t *scorer_new_refreshing(int ttl_ms, int prior_min_closed, int risks_ttl_ms, const char *url);
void scorer_destroy(scorer_t *s);
/* The org's scorer, loaded when missing, stale or invalidated. A model the
 * engine cannot supply features for is refused with a log line; the org
 * keeps what it had (or the stage prior). Returns 0 or a pg error class. */
int scorer_get(scorer_t *s, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *org,
               const scorer_org_t **out, char *errstr, size_t errstr_size);
/* Forgets the org's model and risk thresholds (after NOTIFY
 * dealscore_models); NULL forgets every org's. */
void scorer_invalidate(scorer_t *s, const char *org_id);
/* What scorer_get read since scorer_new: model_reads counts the reads of
 * an active model's artifact (a stale org whose model version is unchanged
 * reads none), prior_fits the fits of an org's stage win rates from its
 * closed deals' history (a stale org whose closed deals are unchanged
 * fits none). */
typedef struct {
    uint64_t model_reads, prior_fits;
} scorer_stats_t;
scorer_stats_t scorer_stats(const scorer_t *s);
/* The orgs' risk rules and thresholds (deal_risks.h), kept with the scorer. */
struct deal_risks_cache_s *scorer_risks(scorer_t *s);

/* What the prior chain needs of a deal beyond its features. */
typedef struct {
    double crm_probability; /* opportunities.stage_probability; NaN when none */
    ds_outcome_t outcome;
} score_input_t;

typedef struct {
    double proba;
    double margin;
    bool is_prior;
    const char *version; /* a prior's source ("prior:ladder" ...); NULL: the org's model */
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
 * into out[n]; in[n] gives each deal's CRM probability and outcome for the
 * prior chain (NULL: none, open). top_k drivers each way. Returns 0 or
 * DS_EFATAL with errstr. Free each result with score_clear. */
int scorer_score(const scorer_org_t *o, const double *values, const score_input_t *in, size_t n, int top_k,
                 score_t *out, char *errstr, size_t errstr_size);
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
