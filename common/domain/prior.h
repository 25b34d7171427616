/* Cold-start priors: the score of a deal while its org has no active model,
 * from the best source there is, in this order (ds_prior_score):
 *
 * 1. history: the org's own stage win rates (ds_stage_prior_t, smoothed
 *    toward the org's win rate), once the org has enough closed deals;
 *    model version "prior:history";
 * 2. crm: the CRM's own probability of the deal's stage (Salesforce's
 *    Probability, HubSpot's hs_deal_stage_probability, the record field
 *    stage_probability), when the deal has one; "prior:crm";
 * 3. ladder: the org's stage ladder (`dealscore-scoring ladder set`), or the
 *    default ladder by stage order; "prior:ladder".
 *
 * A ladder holds one probability per open stage index 0 .. n-1 (the
 * engine's stage_index; closed stages share index n), non-decreasing: priors
 * rise with stage order. The default ladder runs linearly from
 * DS_LADDER_DEFAULT_LOW at the first open stage to DS_LADDER_DEFAULT_HIGH at
 * the last (default stage order: prospecting 0.05, qualification 0.2,
 * discovery 0.35, demo 0.5, proposal 0.65, negotiation 0.8). A closed deal's
 * prior is its outcome (won 1, lost 0) whatever the source.
 *
 * Pure functions on plain data; a built ladder is read-only. */
#ifndef DEALSCORE_PRIOR_H
#define DEALSCORE_PRIOR_H

#include <stddef.h>

#include "domain/features.h"
#include "domain/model.h"

#define DS_PRIOR_VERSION_HISTORY "prior:history"
#define DS_PRIOR_VERSION_CRM "prior:crm"
#define DS_PRIOR_VERSION_LADDER "prior:ladder"

/* The contribution name of a CRM probability in a prior's explanation (not
 * an engine feature; the stage's is "stage_index"). */
#define DS_PRIOR_CRM_FEATURE "crm_stage_probability"

#define DS_LADDER_DEFAULT_LOW 0.05
#define DS_LADDER_DEFAULT_HIGH 0.8
/* Open stages a ladder holds at most; stages beyond count as the last. */
#define DS_LADDER_MAX 64

typedef enum { DS_PRIOR_HISTORY = 0, DS_PRIOR_CRM, DS_PRIOR_LADDER } ds_prior_source_t;

/* "prior:history", "prior:crm", "prior:ladder". */
const char *ds_prior_version(ds_prior_source_t source);

/* Probabilities of the open stages 0 .. n-1, non-decreasing. */
typedef struct {
    size_t n;
    double p[DS_LADDER_MAX];
} ds_ladder_t;

/* The default ladder over n_open open stages (capped at DS_LADDER_MAX):
 * p[i] = LOW + (HIGH - LOW) * i / (n_open - 1); one stage gets LOW. */
void ds_ladder_default(size_t n_open, ds_ladder_t *out);

/* One rung an org set: the open stage index and its probability. */
typedef struct {
    int stage;
    double p;
} ds_ladder_rung_t;

/* The org's ladder over n_open open stages from the rungs it set: each
 * stage set takes its probability; a stage not set takes the default
 * ladder's value clamped between the nearest set rungs below and above it
 * (so the ladder still rises). Returns 0, or DS_EINVAL with errstr: a stage
 * outside 0 .. n_open-1, a stage twice, p outside [0, 1], or a rung below
 * one of a lower stage ("the ladder falls from 0.4 at stage 2 to 0.3 at
 * stage 4"). */
int ds_ladder_set(const ds_ladder_rung_t *rungs, size_t n, size_t n_open, ds_ladder_t *out, char *errstr,
                  size_t errstr_size);

/* The org's stage win rates as a ladder over n_open open stages:
 * ds_stage_prior_predict per stage seen, made non-decreasing by
 * pool-adjacent-violators weighted by each stage's count; a stage never
 * seen gets the value of the stage before it, or of the first stage seen
 * (all the org rate when none was seen). */
void ds_ladder_from_stage_prior(const ds_stage_prior_t *sp, size_t n_open, ds_ladder_t *out);

/* The mean of the ladder's rungs (0.5 for an empty ladder): the baseline
 * the stage moves a ladder or CRM prior from in its explanation. */
double ds_ladder_mean(const ds_ladder_t *l);

/* What an org scores with while it has no model. */
typedef struct {
    const ds_ladder_t *history; /* the org's stage win rates; NULL without enough closed deals */
    double history_rate;        /* the org's win rate (history's baseline) */
    const ds_ladder_t *ladder;  /* the org's or the default; never NULL */
} ds_prior_chain_t;

/* One deal. */
typedef struct {
    double stage_index;     /* the engine's stage_index; NaN when unknown */
    double crm_probability; /* in [0, 1]; NaN (or outside [0, 1]) when the CRM gave none */
    ds_outcome_t outcome;
} ds_prior_input_t;

typedef struct {
    ds_prior_source_t source;
    double p;        /* the prior probability */
    double baseline; /* history: the org's win rate; crm and ladder: ds_ladder_mean */
} ds_prior_score_t;

/* The deal's prior from the first source of the chain that applies. On a
 * ladder (history's or the org's) an unknown stage takes the first rung
 * (history: the org's win rate) and a stage at or past n the last rung. */
void ds_prior_score(const ds_prior_chain_t *chain, const ds_prior_input_t *in, ds_prior_score_t *out);

#endif
