/* Reasons in words: a driver's or a change's feature, as a rep reads it. For
 * every feature of the engine (and the two names a prior's explanation
 * uses, crm_stage_probability and _bias) a short display label and a
 * display value built from the raw value and what is known around it:
 *
 *   amount_log 12.56              Amount: $285,000 (above 75 % of similar won deals)
 *   stage_index 4                 Stage: Proposal for 41 days
 *   days_since_last_meeting 12    Last meeting: 12 days ago
 *   meddicc_champion 0            Champion: none identified yet
 *
 * The label reads before ": ", the display after it. Pure functions: no
 * allocation, no I/O; the texts are deterministic (tests/unit/
 * test_reasons.c has each kind). */
#ifndef DEALSCORE_REASONS_H
#define DEALSCORE_REASONS_H

#include "domain/features.h"

#define DS_REASON_LABEL_MAX 64
#define DS_REASON_DISPLAY_MAX 160

/* What a text may use beyond the feature's own value. Every member is
 * optional (ds_reason_ctx_init: nothing known). */
typedef struct {
    const double *values;          /* the deal's engine features (DS_FEATURE_COUNT), or NULL */
    const char *currency;          /* ISO code of the deal's amount ("USD", "eur"), or NULL */
    const char *stage;             /* the deal's stage as the CRM names it, or NULL */
    const ds_stage_list_t *stages; /* the org's stage order (NULL: the default) */
    const char *industry, *region, *size_band, *product_category, *persona; /* as the CRM sent them */
    double amount_p25, amount_median, amount_p75; /* of similar won deals (the cohort); NaN unknown */
    double crm_probability;                       /* the CRM's stage probability; NaN unknown */
} ds_reason_ctx_t;

void ds_reason_ctx_init(ds_reason_ctx_t *ctx);

typedef struct {
    char label[DS_REASON_LABEL_MAX];
    char display[DS_REASON_DISPLAY_MAX];
} ds_reason_t;

/* The label and display value of feature name with raw value (NaN:
 * missing). Where ctx->values holds the feature, that double is used (a
 * driver's value went through float). A name the engine does not know
 * gets itself as label and the number as display. */
void ds_reason(const char *name, double value, const ds_reason_ctx_t *ctx, ds_reason_t *out);

#endif
