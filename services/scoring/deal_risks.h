/* The risks of scored deals (domain/risks.h) in public.deal_risks: per org,
 * the rules (risk_rules, defaults and the org's rows) and the thresholds
 * learned from its won deals, cached; per scored open deal, the risks with
 * their what-if probabilities (the org's model on the resolved feature
 * vector), ranked, written in the prediction's transaction. A deal that is
 * no longer open loses its row. */
#ifndef DS_DEAL_RISKS_H
#define DS_DEAL_RISKS_H

#include "domain/risks.h"
#include "infra/pg.h"
#include "infra/pgarray.h"
#include "scoring.h"

/* An org's rules and thresholds are reloaded after this long
 * (the worker's: DEALSCORE_RISK_TTL_S). */
#define DEAL_RISKS_TTL_MS (10 * 60 * 1000)

typedef struct deal_risks_cache_s deal_risks_cache_t;

/* A cache of the orgs' rules and thresholds, reloaded ttl_ms after they
 * were loaded. With refresh_url, a stale org is reloaded on a thread and
 * connection (to refresh_url) of its own while its scores go on with the
 * stale thresholds (common/store/refresh_cache.h): the reload reads every
 * won deal's stage visits, pushes and calls and scans their transcripts
 * (about 300 ms on an org of 6,000 deals), which on the worker's loop held
 * every batch of the org behind it. Without, on the caller's connection.
 * Free with deal_risks_cache_destroy. */
deal_risks_cache_t *deal_risks_cache_new(int ttl_ms, const char *refresh_url);
/* Does nothing with NULL. */
void deal_risks_cache_destroy(deal_risks_cache_t *c);
/* Forgets an org's rules and thresholds (NULL: every org's), and any reload
 * of them under way: the next score reloads them on its own connection,
 * with the won deals and rules of then. */
void deal_risks_cache_invalidate(deal_risks_cache_t *c, const char *org_id);
/* The org's rules and thresholds in *out (valid until the next call for
 * the org, invalidate or destroy), loaded on pg when missing (and when
 * stale, without refresh_url). Returns 0 or a pg error class with errstr. */
int deal_risks_config(deal_risks_cache_t *c, ds_pg_t *pg, const char *org_id, const ds_risk_config_t **out,
                      char *errstr, size_t errstr_size);
/* Waits until the reloads asked for so far are done. */
void deal_risks_cache_await_refreshes(deal_risks_cache_t *c);

#define DEAL_RISKS_COLS 7

/* The open deals' rows of a scores' write (score_worker.c), as the CTEs
 * rk, ru and ri of its statement: the parameters are $13 .. $19 (the
 * columns of deal_risks_params), and only the deals named in the relation
 * ok (a column opportunity_id) are written, those the write found to
 * exist, so that each deal is looked up once per transaction. A row is
 * updated only when something in it changed, with an UPDATE: ON CONFLICT
 * DO UPDATE locks the row first, a WAL record of its own. The others are
 * inserted with ON CONFLICT: a deal without a row gets one, and a row that
 * did not change is only locked, as ON CONFLICT does. They are found with
 * NOT IN, a hashed subplan (why: SQL_ROWS in score_worker.c). */
#define DEAL_RISKS_SET(src)                                                                                  \
    "account_id = " src ".account_id, as_of = " src ".as_of, model_version = " src ".model_version,"         \
    " proba_close = " src ".proba_close, risks = " src ".risks, updated_at = now()"
#define DEAL_RISKS_MOVED(src)                                                                                \
    "d.as_of <= " src ".as_of and (d.account_id, d.model_version, d.proba_close, d.risks)"                   \
    " is distinct from (" src ".account_id, " src ".model_version, " src ".proba_close, " src ".risks)"
#define DEAL_RISKS_SET_K DEAL_RISKS_SET("k")
#define DEAL_RISKS_MOVED_K DEAL_RISKS_MOVED("k")
#define DEAL_RISKS_SET_EXCLUDED DEAL_RISKS_SET("excluded")
#define DEAL_RISKS_MOVED_EXCLUDED DEAL_RISKS_MOVED("excluded")
#define DEAL_RISKS_SQL_WRITE_OF(ok)                                                                          \
    "rk as (select * from unnest($13::uuid[], $14::uuid[], $15::uuid[], $16::timestamptz[], $17::text[],"    \
    "  $18::float8[], $19::jsonb[]) as k(org_id, opportunity_id, account_id, as_of, model_version,"          \
    "  proba_close, risks) where k.opportunity_id in (select opportunity_id from " ok ")),"                  \
    " ru as (update public.deal_risks d set " DEAL_RISKS_SET_K " from rk k"                                  \
    "  where d.opportunity_id = k.opportunity_id and " DEAL_RISKS_MOVED_K " returning d.opportunity_id),"    \
    " ri as (insert into public.deal_risks as d (org_id, opportunity_id, account_id, as_of, model_version,"  \
    "  proba_close, risks, updated_at)"                                                                      \
    "  select org_id, opportunity_id, account_id, as_of, model_version, proba_close, risks, now() from rk k" \
    "  where k.opportunity_id not in (select opportunity_id from ru)"                                        \
    "  on conflict (opportunity_id) do update set " DEAL_RISKS_SET_EXCLUDED                                  \
    "  where " DEAL_RISKS_MOVED_EXCLUDED ")"

/* The statements' parameters for one batch of items. */
typedef struct {
    ds_pgarray_t cols[DEAL_RISKS_COLS]; /* the open deals' rows (none: empty arrays) */
    ds_pgarray_t closed;                /* ids of deals that are not open */
    size_t n_open, n_closed;
    const char *closed_value;
    int closed_length, closed_format;
} deal_risks_batch_t;

/* Evaluates the risks of the items whose deal is open (their outcome, as
 * read with the deal; their orgs' scorers from scorer) and fills
 * *out (free with deal_risks_batch_free, also after a failure). Items must
 * be scored; unchanged ones are left out (their deal keeps the row of its
 * last written score). Returns 0 or a pg error class with errstr. */
int deal_risks_build(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, deal_risks_cache_t *cache,
                     const scoring_item_t *items, size_t n, deal_risks_batch_t *out, char *errstr,
                     size_t errstr_size);
/* Fills the DEAL_RISKS_COLS parameters of DEAL_RISKS_SQL_WRITE_OF (the
 * arrays must outlive the run). */
void deal_risks_params(deal_risks_batch_t *b, const char **values, int *lengths, int *formats);
/* Adds the delete of the rows of deals no longer open to a write
 * transaction, when there are any (the array must outlive the run). */
void deal_risks_add_forget(deal_risks_batch_t *b, ds_pg_batch_t *pb);
void deal_risks_batch_free(deal_risks_batch_t *b);

#endif
