/* Deal risks: rules over one open deal's feature vector that flag what puts
 * it at risk, with the evidence, a suggested action, and the feature vector
 * the deal would have if the risk were resolved (the scorer turns that into
 * the what-if probability that ranks the suggestions).
 *
 * The rules and their parameters are data: public.risk_rules holds a
 * default row per rule (org_id null) and an org's row replaces the default
 * of the same rule (like the MEDDICC lexicon). ds_risk_rules_default gives
 * the same defaults (a unit test compares them with the migration).
 *
 * | rule              | param                                   | fallback (too few won deals)  |
 * |-------------------|-----------------------------------------|-------------------------------|
 * | meddicc_missing   | share of won deals with a recorded call  | stage index from which every  |
 * |                   | by a stage that have an element by then, | element is expected (3, demo) |
 * |                   | for it to be expected there (0.5)        |                               |
 * | stalled           | multiple of the won deals' median days   | days in stage (30)            |
 * |                   | in the deal's stage (1.0)                |                               |
 * | close_date_pushed | quantile of won deals' pushes; flagged   | pushes (2)                    |
 * |                   | above it, at least 1 (0.8)               |                               |
 * | engagement_down   | velocity_14d below this (0.5)            | (not learned)                 |
 * | single_contact    | at most this many buyer contacts engaged | from this stage index on (2)  |
 * |                   | (buyer_contacts, 1; 0 is none known)     |                               |
 *
 * Learned thresholds need min_won_deals won deals (20 by default) with the
 * data in question; else the fallback applies, and the evidence says which.
 * MEDDICC elements are known only from call transcripts: the shares count
 * the won deals that had a recorded call by the stage (a deal never
 * recorded says nothing of its elements), and a deal without a transcript
 * is not flagged.
 * Pure code: no I/O, no global mutable state. */
#ifndef DEALSCORE_RISKS_H
#define DEALSCORE_RISKS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/sb.h"
#include "domain/features.h"
#include "domain/meddicc.h"

typedef enum {
    DS_RISK_MEDDICC_MISSING,
    DS_RISK_STALLED,
    DS_RISK_CLOSE_DATE_PUSHED,
    DS_RISK_ENGAGEMENT_DOWN,
    DS_RISK_SINGLE_CONTACT,
    DS_RISK_RULE_COUNT
} ds_risk_rule_id_t;

/* Stage indexes the thresholds cover (open stages of any org fit). */
#define DS_RISK_MAX_STAGES 32
/* At most one risk per rule, one per MEDDICC element. */
#define DS_RISK_MAX (DS_RISK_RULE_COUNT - 1 + DS_MEDDICC_COUNT)

/* One row of risk_rules. action is borrowed (static or the caller's). */
typedef struct {
    bool enabled;
    double param, fallback;
    int min_won_deals;
    const char *action;
} ds_risk_rule_t;

/* "stalled" -> DS_RISK_STALLED; -1 when unknown. Names are static. */
int ds_risk_rule_parse(const char *name);
const char *ds_risk_rule_name(int rule);
/* The default rules, indexed by ds_risk_rule_id_t. Static. */
const ds_risk_rule_t *ds_risk_rules_default(void);

/* What the org's won deals say, for learning thresholds. Arrays borrowed. */
typedef struct {
    size_t n_won;
    /* Each won deal's stage visits that ended: stage index and days. */
    const int *visit_stage;
    const double *visit_days;
    size_t n_visits;
    /* Close-date pushes of each won deal (n_won values, or NULL). */
    const int *pushes;
    /* Per won deal (n_won rows of DS_MEDDICC_COUNT): the stage index it
     * was in when the element was first detected, -1 never. NULL: unknown. */
    const int *first_stage;
    /* Per won deal (n_won values): the stage index it was in at its first
     * call transcript, -1 none. NULL: every won deal counts as recorded
     * from the first stage on. */
    const int *first_call;
} ds_risk_won_t;

/* The thresholds in force for one org, and where each came from. */
typedef struct {
    ds_risk_rule_t rules[DS_RISK_RULE_COUNT];
    int meddicc_stage[DS_MEDDICC_COUNT];     /* expected from this stage index; INT_MAX never */
    double meddicc_share[DS_MEDDICC_COUNT];  /* share of recorded won deals with it by then; NaN: fallback */
    double stall_days[DS_RISK_MAX_STAGES];   /* flagged beyond; NaN: the fallback days */
    double stall_median[DS_RISK_MAX_STAGES]; /* won deals' median; NaN: not learned */
    double max_pushes;                       /* flagged when pushes > this */
    bool pushes_learned;
    size_t n_won;
    const char *stage_names[DS_RISK_MAX_STAGES]; /* borrowed; NULL: "stage N" */
} ds_risk_config_t;

/* Fills cfg from the rules (DS_RISK_RULE_COUNT rows, e.g. the defaults
 * with an org's rows put over them) and the won deals (may be NULL). */
void ds_risk_config_fit(ds_risk_config_t *cfg, const ds_risk_rule_t *rules, const ds_risk_won_t *won);

/* One flagged risk. */
typedef struct {
    int rule;
    int element; /* DS_MEDDICC_* for meddicc_missing, else -1 */
    char evidence[200];
    char action[200]; /* the rule's action, "{element}" replaced */
    double what_if;   /* filled by the caller: the probability if resolved */
} ds_risk_t;

/* The deal's risks given its engine feature values, at most DS_RISK_MAX
 * into out. Returns the count. */
size_t ds_risks_eval(const ds_risk_config_t *cfg, const double *values, ds_risk_t *out);

/* The feature vector with the risk resolved: out = values with a MEDDICC
 * element detected (and coverage + 1), days in stage at the won deals'
 * median (or the threshold), no pushes, the last 14 days' interactions
 * back at the level of the days before, one buyer contact more than the
 * rule allows (both DS_FEATURE_COUNT). */
void ds_risk_resolved(const ds_risk_config_t *cfg, const ds_risk_t *risk, const double *values, double *out);

/* Sorts risks by what_if - proba, largest first (ties: rule order). */
void ds_risks_rank(ds_risk_t *risks, size_t n);

/* Appends the JSON array of risks to b:
 * [{"rule","element"|null,"evidence","action","what_if","gain"},...] with
 * gain = what_if - proba, 4 decimals. */
void ds_risks_write(ds_sb_t *b, const ds_risk_t *risks, size_t n, double proba);

#endif
