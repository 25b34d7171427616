/* Loads what the feature engine needs from Postgres: the raw rows of a
 * batch of opportunities in four queries whatever the batch size, and per
 * org context (closed deals for prior win rates, the MEDDICC lexicon, the
 * stage order) cached for a while. Shared by the feature worker,
 * /api/predict and the trainer. Blocking: use from a worker thread. */
#ifndef DEALSCORE_FEATURE_LOADER_H
#define DEALSCORE_FEATURE_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/features.h"
#include "domain/meddicc.h"
#include "infra/pg.h"

/* ---- per-org context ------------------------------------------------------ */

typedef struct {
    char org_id[37];
    ds_winrate_ctx_t *winrate;
    const ds_meddicc_lexicon_t *lexicon; /* owned unless it is the default */
    ds_stage_list_t *stages;             /* the org's stage order merged with the default */
    bool lexicon_owned;
} ds_org_ctx_t;

/* Loads org_id's context on pg, uncached: with its closed deals when
 * with_closed, else winrate is NULL (the lexicon and stage order alone, a
 * few rows). Returns 0 and *out (free with ds_org_ctx_destroy), or a pg
 * error class (DS_ERETRY, DS_EFATAL) with errstr. */
int ds_org_ctx_load(ds_pg_t *pg, const char *org_id, bool with_closed, ds_org_ctx_t **out, char *errstr,
                    size_t errstr_size);
/* Does nothing with NULL. */
void ds_org_ctx_destroy(ds_org_ctx_t *o);

typedef struct ds_org_cache_s ds_org_cache_t;

/* A cache of org contexts refreshed after ttl_ms (closed deals change as
 * deals close; a deal closed within the ttl is missing from prior win rates
 * until the refresh). Free with ds_org_cache_destroy. */
ds_org_cache_t *ds_org_cache_new(int ttl_ms);
void ds_org_cache_destroy(ds_org_cache_t *c);
/* A cache that reloads a stale org on a thread of its own, with its own
 * connection to url, and serves the stale context until the reload is done
 * (refresh_cache.h): the caller's loop never waits for a reload, whose
 * closed-deal counts grow with the org (44 ms for the demo's 1,331 closed
 * deals). Only a missing org is loaded on the caller's connection. A
 * failed reload keeps the context the org has for another ttl_ms. Without
 * with_closed, a context has no closed deals (winrate NULL), as
 * ds_org_ctx_load: for a worker that computes no features. For the
 * workers. */
ds_org_cache_t *ds_org_cache_new_refreshing(int ttl_ms, const char *url, bool with_closed);
/* Returns the org's context in *out (valid until the next call for the
 * same org or destroy), loading it when missing or stale (a refreshing
 * cache: when missing). Returns 0 or a pg error class (DS_ERETRY, DS_EFATAL)
 * with errstr. */
int ds_org_cache_get(ds_org_cache_t *c, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t **out,
                     char *errstr, size_t errstr_size);
/* Waits until the reloads asked for so far are done; the next
 * ds_org_cache_get of each org takes its reloaded context. */
void ds_org_cache_await_refreshes(ds_org_cache_t *c);
/* Forgets every cached org (e.g. after a reconnect). */
void ds_org_cache_clear(ds_org_cache_t *c);

/* ---- opportunity batches -------------------------------------------------- */

typedef struct ds_opp_batch_s ds_opp_batch_t;

/* Loads the opportunities with the given ids (UUID text; unknown ids are
 * skipped) with their account, history, interactions and transcripts, in four
 * queries sent together. Returns 0 and *out (free with ds_opp_batch_destroy), or a pg error
 * class with errstr. */
int ds_opp_batch_load(ds_pg_t *pg, const char *const *opp_ids, size_t n, ds_opp_batch_t **out, char *errstr,
                      size_t errstr_size);
/* ds_opp_batch_load in two halves, so the caller can work while Postgres
 * answers: send writes the four queries (pipeline mode) and returns *out,
 * whose results recv then reads. Nothing else may run on pg in between
 * (other calls on it fail with DS_EINVAL). On failure either drops pg's
 * connection if its state is unknown (ds_pg_ensure reconnects) and returns
 * a pg error class with errstr; after a failed recv the caller still
 * destroys the batch. */
int ds_opp_batch_send(ds_pg_t *pg, const char *const *opp_ids, size_t n, ds_opp_batch_t **out, char *errstr,
                      size_t errstr_size);
int ds_opp_batch_recv(ds_pg_t *pg, ds_opp_batch_t *b, char *errstr, size_t errstr_size);
size_t ds_opp_batch_count(const ds_opp_batch_t *b);
/* The i-th loaded opportunity; raw->stages is NULL (set it from the org). */
ds_opp_raw_t *ds_opp_batch_raw(ds_opp_batch_t *b, size_t i);
const char *ds_opp_batch_org(const ds_opp_batch_t *b, size_t i);
/* True for a placeholder row (referenced before the CRM sent it). */
bool ds_opp_batch_placeholder(const ds_opp_batch_t *b, size_t i);
/* Index of an opportunity id, or -1. */
int ds_opp_batch_find(const ds_opp_batch_t *b, const char *opp_id);
void ds_opp_batch_destroy(ds_opp_batch_t *b);

#endif
