/* The validation-free half of ingest's core: idempotent upserts of parsed
 * records into the raw layer, with opportunity_history and outbox rows in
 * the same statements, shared by webhooks and CSV import. Every call blocks:
 * use it from a database thread, never from the HTTP loop. */
#ifndef DS_INGEST_STORE_H
#define DS_INGEST_STORE_H

#include <jansson.h>

#include "infra/pg.h"
#include "record.h"

/* Registers the upsert statements on pg (call once per session). */
void store_register(ds_pg_t *pg);

typedef struct {
    int changed;   /* records that inserted or changed a row */
    int unchanged; /* records equal to what was stored (same source_hash) */
    int events;    /* outbox rows written */
} store_counts_t;

typedef struct {
    const char *org_id;
    const char *source;          /* "webhook", "csv", "salesforce", "hubspot" */
    const char *traceparent;     /* carried to the events; NULL: none */
    const json_t *stage_outcome; /* the org's stage -> outcome map, may be NULL */
    int64_t now_us;              /* ingest time, for changes without changed_at */
} store_ctx_t;

/* What one record's upsert did, filled in by the batch callback. */
typedef struct {
    int changed, events;
    int done;
} store_tag_t;

/* A set of records to store in one transaction: the records of several
 * requests (each with its own context) or one CSV chunk. Records apply as
 * if one after the other in the order added, with the kinds in
 * parent-to-child order (accounts, opportunities, interactions,
 * transcripts): one statement per kind, plus one more for every repeat of
 * an external id. Free with store_set_destroy. */
typedef struct store_set_s store_set_t;

store_set_t *store_set_new(void);
/* Adds recs[0..n) under ctx (copied; the strings it points to, recs and
 * tags must live until the batch ran). tags must have room for n entries;
 * they are zeroed here. */
void store_set_add(store_set_t *s, const store_ctx_t *ctx, const record_t *recs, size_t n, store_tag_t *tags);
/* Queues the set's statements on b. Returns 0, or DS_EINVAL for a record
 * of no known kind. After ds_pg_batch_run (with store_batch_cb),
 * store_collect adds up what happened. */
int store_set_queue(store_set_t *s, ds_pg_batch_t *b);
/* Frees the set (after the batch ran); NULL does nothing. */
void store_set_destroy(store_set_t *s);

/* The batch callback to pass to ds_pg_batch_run for statements queued by
 * store_set_queue (ud unused; other statements have a NULL tag). */
int store_batch_cb(void *ud, void *tag, const PGresult *res, int err);
void store_collect(const store_tag_t *tags, size_t n, store_counts_t *counts);

/* Looks up an org by slug; creates it when create is true. Returns 0 with
 * the id in org_id (37 bytes), DS_ENOTFOUND, or a pg error class. */
int store_org_by_slug(ds_pg_t *pg, const char *slug, bool create, char org_id[37], char *errstr,
                      size_t errstr_size);
/* Reads the org's settings.stage_outcome map (a new reference, or NULL). */
json_t *store_org_stage_outcome(ds_pg_t *pg, const char *org_id);

#endif
