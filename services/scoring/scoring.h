/* dealscore-scoring: features.ready -> predictions (+ history) -> prediction.made,
 * POST /api/predict, and the train and rescore subcommands. */
#ifndef DS_SCORING_H
#define DS_SCORING_H

#include <pthread.h>

#include "store/feature_loader.h"
#include "infra/pg.h"
#include "runtime/service.h"
#include "domain/reasons.h"
#include "scorer.h"

/* A prediction_history row as read (text values, NULL proba for none). */
typedef struct {
    const char *proba, *contributions, *version;
} scoring_history_row_t;

/* One opportunity to persist and publish. */
typedef struct {
    const char *org_id;
    const char *opp_id;
    const char *account_id; /* may be NULL */
    int64_t as_of_us;
    const char *causation_id; /* the FeaturesReady event, or NULL */
    const char *traceparent;  /* may be NULL */
    const double *values;     /* DS_FEATURE_COUNT engine values */
    const char *meddicc_json; /* features_snapshot.meddicc, may be NULL */
    /* For the prior chain: the CRM's stage probability (when has_crm) and
     * the deal's outcome (zeroed: none, open), which also says whether the
     * deal has risks (deal_risks.h). */
    bool has_crm;
    double crm_probability;
    ds_outcome_t outcome;
    /* For the reasons' texts (domain/reasons.h), each NULL when unknown:
     * the deal as the CRM sent it. */
    const char *currency, *stage, *industry, *region, *size_band, *product_category, *persona;
    /* The deal's two latest history rows, newest first, and whether the
     * newest is as of this score: the previous score is the newest unless
     * that is this very score (a replay), then the one before. Read with
     * the deal when the caller does (scoring_persist_opts_t.history_read),
     * else by scoring_persist; they point into a result that lives until it
     * returns. */
    scoring_history_row_t history[2];
    bool history_at_as_of;
    /* filled by scoring_persist */
    score_t score;
    /* The amount quartiles (p25, median, p75) of the won deals of the
     * deal's benchmark cohort, when has_cohort (for the amount's reason);
     * read with the history rows. */
    bool has_cohort;
    double cohort_amount[3];
    double previous; /* NaN without a previous prediction */
    /* "Why did it move" (scorer_change_named; none without a previous
     * score, nor for an unchanged item); names may point into prev_text,
     * which the item owns. */
    ds_contrib_change_t *changes;
    size_t n_changes;
    char *prev_text;
    /* The previous score's contributions (names in prev_text), read for
     * every item, turned into changes only for the items written. */
    ds_named_contrib_t *prev_contribs;
    size_t n_prev_contribs;
    char version[64];
    /* The drivers' and changes' labels and display values point here. */
    ds_reason_t *reasons;
    const ds_stage_list_t *stages; /* the org's, while scoring_persist runs */
    char prev_version[64];         /* the previous score's model version, "" without one */
    bool drivers_changed;          /* the top drivers name other features than the previous score's */
    bool unchanged; /* only_moved and nothing moved: none of the deal's derived rows was written */
} scoring_item_t;

/* Scores items[0..n) of one or more orgs (scorer and org caches given),
 * reads their previous predictions, and writes prediction_history and
 * predictions in one transaction, once more after a unique violation (a
 * replay, or a deal's first score racing another's). Returns 0 or a pg
 * class (DS_ERETRY for a database that is away). */
int scoring_persist(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, int top_k, scoring_item_t *items,
                    size_t n, char *errstr, size_t errstr_size);
/* Where scoring_persist_stats spent its time, added to (microseconds):
 * scoring (TreeSHAP, drivers), reading the previous scores, building the
 * statements' JSON, and the history + predictions transaction. */
typedef struct {
    int64_t us_score, us_previous, us_json, us_write;
} scoring_stats_t;
/* A statement with its parameters (as PQexecParams takes them). */
typedef struct {
    const char *sql;
    int nparams;
    const char *const *values;
    const int *lengths, *formats;
} scoring_stmt_t;
/* Builds a statement over the items that are written (it->unchanged is
 * set by then), run inside the write transaction before the history
 * insert; returns NULL for none. The statement lives until the next call.
 * plain: the first pass, whose rows cannot exist yet (no ON CONFLICT
 * needed); a unique violation from it makes a second pass. */
typedef const scoring_stmt_t *(*scoring_first_fn)(void *ud, const scoring_item_t *items, size_t n,
                                                  bool plain);
typedef struct {
    scoring_stats_t *stats; /* timings added here, or NULL */
    scoring_first_fn first; /* or NULL */
    void *first_ud;
    /* Set when a unique violation made a second pass (a replay, a chunk an
     * interrupted rescore committed, or two first scores of one deal at
     * once), or NULL. */
    bool *rewritten;
    /* Writes only the scores that moved (a rescore): a first score, another
     * model version, a probability that moved by more than min_change from
     * the previous score, or other top drivers. The rest are marked
     * unchanged: one rule for every row derived from a score, so they write
     * no history, predictions or deal_risks row (nor first's row, nor an
     * event: the caller skips them). Without it every score is written. */
    bool only_moved;
    double min_change;
    /* The items carry their history rows and cohort already (the worker
     * reads them with the deals): no read of them. */
    bool history_read;
} scoring_persist_opts_t;
/* scoring_persist with options (o may be NULL). Both write the history
 * rows with a plain INSERT first and, after a unique violation, score and
 * write the items again with ON CONFLICT. */
int scoring_persist_opts(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, int top_k,
                         scoring_item_t *items, size_t n, const scoring_persist_opts_t *o, char *errstr,
                         size_t errstr_size);
void scoring_item_clear(scoring_item_t *it);
/* Takes what the prior chain and the reasons' texts need beyond the
 * features from the deal's raw rows (the loader's): the CRM's stage
 * probability, the outcome, the currency, stage and firmographics. */
void scoring_item_from_raw(scoring_item_t *it, const ds_opp_raw_t *raw);
/* Packs the PredictionMade event of a persisted item (caller frees *buf). */
void scoring_event(const scoring_item_t *it, uint8_t **buf, size_t *len, char event_id[37]);

void scoring_worker(ds_service_t *svc, void *state);
int scoring_init(ds_service_t *svc, void **state, char *errstr, size_t errstr_size);
void scoring_stopping(ds_service_t *svc, void *state);
void scoring_fini(ds_service_t *svc, void *state);

/* "dealscore-scoring <cmd>: <message> (see --help)" on stderr; returns 2,
 * the exit status of bad usage. */
int scoring_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int scoring_cmd_train(const ds_config_t *cfg, int argc, char **argv);
int scoring_cmd_rescore(const ds_config_t *cfg, int argc, char **argv);
int scoring_cmd_forecast_backtest(const ds_config_t *cfg, int argc, char **argv);
int scoring_cmd_ladder(const ds_config_t *cfg, int argc, char **argv);
/* lexicon import --org SLUG FILE.csv: the org's MEDDICC phrases (lexicon.c). */
int scoring_cmd_lexicon(const ds_config_t *cfg, int argc, char **argv);

#endif
