/* CRM records as ingest accepts them (DESIGN.md, "Records"): parsing and
 * validation from JSON objects (webhooks) or string fields (CSV), the
 * Salesforce and HubSpot field-mapping profiles, and the canonical form whose SHA-256 is
 * the record's source_hash. Pure functions: no I/O. */
#ifndef DS_INGEST_RECORD_H
#define DS_INGEST_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum { REC_ACCOUNT = 0, REC_OPPORTUNITY, REC_INTERACTION, REC_TRANSCRIPT, REC_KIND_COUNT } rec_kind_t;

/* "accounts", "opportunities", "interactions", "transcripts". */
const char *rec_kind_plural(rec_kind_t kind);
/* Parses the plural name; returns -1 when unknown. */
int rec_kind_parse(const char *plural);

typedef struct {
    rec_kind_t kind;
    char *external_id;
    /* account */
    char *name, *industry, *region, *size_band;
    /* opportunity */
    char *account_external_id, *owner_id, *product_category, *persona, *currency, *stage;
    char *outcome; /* open, won, lost, or NULL (derive from the stage) */
    double amount;
    bool has_amount;
    double stage_probability; /* the CRM's probability of the stage, 0 .. 1 */
    bool has_stage_probability;
    char close_date[11];  /* YYYY-MM-DD or "" */
    int64_t closed_at_us; /* 0 = absent (also for created_at etc.) */
    int64_t changed_at_us;
    /* account and opportunity */
    int64_t created_at_us;
    /* interaction and transcript */
    char *opportunity_external_id;
    char *type;             /* email, phone, meeting, demo, support */
    char *channel, *result; /* result = the interaction's "outcome" field */
    int64_t occurred_at_us;
    double duration_min;
    bool has_duration;
    char *meta_json; /* compact JSON object text, or NULL */
    char *text;
    /* canonical form */
    char source_hash[65];
} record_t;

typedef struct {
    int index; /* record index in the request, or CSV line number */
    char field[48];
    char problem[160];
} rec_problem_t;

typedef struct {
    rec_problem_t *items;
    size_t n, cap;
    size_t max; /* stop collecting after this many (0 = 1000) */
} rec_problems_t;

void rec_problems_add(rec_problems_t *p, int index, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void rec_problems_free(rec_problems_t *p);
/* [{index, field, problem}, ...] */
json_t *rec_problems_json(const rec_problems_t *p);

typedef enum {
    PROFILE_NATIVE = 0,
    PROFILE_SALESFORCE,
    PROFILE_HUBSPOT,
} rec_profile_t;

/* Salesforce field names that vary between orgs. */
typedef struct {
    const char *product_field; /* default "Product_Category__c" */
    const char *persona_field; /* default "Persona__c" */
    const char *region_field;  /* default "BillingCountry" */
} sf_fields_t;

/* HubSpot property names that vary between portals. */
typedef struct {
    const char *product_field; /* deal property, default "pipeline" */
    const char *persona_field; /* deal property, default none */
    const char *region_field;  /* company property, default "country" */
} hs_fields_t;

/* Parses one record of kind from obj. With strings_ok, numbers may be given
 * as strings (CSV). Appends every problem found to problems (with index) and
 * returns how many were added; on 0 rec is filled (free with
 * record_clear) and its source_hash is set. */
int record_parse(rec_kind_t kind, const json_t *obj, int index, bool strings_ok, record_t *rec,
                 rec_problems_t *problems);

/* Maps a raw Salesforce record (Opportunity, Account, Task or Event) onto
 * the native field names (Probability, 0 .. 100, becomes stage_probability,
 * 0 .. 1). Returns a new object (caller decrefs). */
json_t *record_from_salesforce(rec_kind_t kind, const json_t *sf, const sf_fields_t *f);

/* Maps a HubSpot object as n8n's HubSpot node returns it (a deal, a
 * company, or an engagement for interactions and transcripts; legacy and
 * CRM v3 shapes) onto the native field names (hubspot.c). Returns a new
 * object (caller decrefs). */
json_t *record_from_hubspot(rec_kind_t kind, const json_t *hs, const hs_fields_t *f);

/* The canonical JSON text of rec (sorted keys, normalized values, no
 * changed_at): equal records give equal text. Caller frees. */
char *record_canonical(const record_t *rec);

void record_clear(record_t *rec);

/* Outcome for a stage when a record gives none: the org's stage_outcome
 * mapping (a JSON object stage -> "won"/"lost"/"open", may be NULL) first,
 * then "closed won"/"closed_won"/"won" → won, "closed lost"/... → lost
 * (case-insensitive), else open. */
const char *record_stage_outcome(const char *stage, const json_t *stage_outcome);

#endif
