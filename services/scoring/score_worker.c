/* The scoring worker and the persistence every scoring path shares. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/sb.h"
#include "base/log.h"
#include "infra/pgarray.h"
#include "base/strindex.h"
#include "dealscore/v1/events.pb-c.h"
#include "deal_risks.h"
#include "runtime/worker.h"
#include "scoring.h"

/* What a score needs of a deal's history, for x(id, at): the latest
 * history row (h) through the unique index (opportunity_id, as_of,
 * model_version) scanned backwards and, only when that one is as of this
 * score (a replay, or another model's score of the same features), the row
 * before it (h2); and the amount quartiles (p25, median, p75) of its
 * benchmark cohort's won deals, for the amount's reason. The score's model
 * version, which says whether h is this very score, is known only once
 * the deal is scored (history_pick), so the worker reads all this with the
 * deal, before scoring it, in one statement. Every scoring path (worker,
 * rescore, /api/predict) gets the cohort here, so their texts cannot
 * differ. HISTORY_COLS are the columns history_take reads. */
#define HISTORY_COLS                                                                                         \
    " h.proba_close, h.contributions::text, h.model_version, h.as_of = x.at,"                                \
    " h2.proba_close, h2.contributions::text, h2.model_version, c.p25, c.median, c.p75"
#define HISTORY_JOINS                                                                                        \
    " left join lateral (select as_of, proba_close, contributions, model_version"                            \
    "  from public.prediction_history where opportunity_id = x.id"                                           \
    "  order by as_of desc, model_version desc limit 1) h on true"                                           \
    " left join lateral (select proba_close, contributions, model_version from public.prediction_history"    \
    "  where opportunity_id = x.id and h.as_of = x.at"                                                       \
    "  order by as_of desc, model_version desc offset 1 limit 1) h2 on true"                                 \
    " left join lateral (select (bc.metrics -> 'amount' ->> 'p25')::float8 as p25,"                          \
    "  (bc.metrics -> 'amount' ->> 'median')::float8 as median,"                                             \
    "  (bc.metrics -> 'amount' ->> 'p75')::float8 as p75"                                                    \
    "  from public.opportunity_benchmarks ob join public.benchmarks_cached bc"                               \
    "  on bc.org_id = ob.org_id and bc.cohort_key = ob.cohort_key where ob.opportunity_id = x.id) c on true"
#define HISTORY_NCOLS 10

/* The history of each opportunity of $1 as of $2 (HISTORY_COLS from column
 * 1); n is its place in $1, from 1. */
static const char *sql_history =
    "select x.n," HISTORY_COLS
    " from unnest($1::uuid[], $2::timestamptz[]) with ordinality as x(id, at, n)" HISTORY_JOINS;

/* One statement for the whole batch and the three tables, the columns as
 * binary arrays (pgbin.h): the server parses each JSON value once and
 * nothing around it. x holds the rows whose deal exists, looked up once
 * (the history, predictions and deal_risks rows of a score are written
 * together or not at all); the data-modifying parts see the same snapshot.
 * $1 .. $7 are the history's columns, $8 .. $12 what predictions adds (its
 * change document is the history's), $13 .. $19 deal_risks'. A deal's
 * predictions row moves forward in as_of only, with an UPDATE: ON
 * CONFLICT DO UPDATE locks the row first, a WAL record of its own. The
 * other rows are inserted with ON CONFLICT: a deal without a row gets one,
 * and a row newer than the score is only locked. Those other rows are the
 * batch's deals NOT IN what the UPDATE returned, a subplan Postgres hashes
 * whatever its estimates: with NOT EXISTS, the generic plan of a
 * long-lived session (which expects a batch of one row) joined them in a
 * nested loop, comparing every deal of the batch with every updated one,
 * and a backlog's batch of 20,000 took 24 s instead of 1 (the same in
 * deal_risks.h; test_scoring.c, a_large_batch_is_written_...). */
#define SQL_ROWS_DEAL_EXISTS DS_SQL_WHERE_DEAL_EXISTS("x.opportunity_id", "x.org_id")
#define SQL_ROWS_RISKS DEAL_RISKS_SQL_WRITE_OF("x")
#define SQL_ROWS                                                                                             \
    "with x as (select x.*, x.change::jsonb as change_b"                                                     \
    "  from unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::float8[], $6::json[],"         \
    "  $7::json[], $8::uuid[], $9::float8[], $10::jsonb[], $11::jsonb[], $12::bool[])"                       \
    "  as x(org_id, opportunity_id, as_of, model_version, proba_close, contributions, change, account_id,"   \
    "  previous_proba, top_features, meddicc, is_prior)" SQL_ROWS_DEAL_EXISTS "), " SQL_ROWS_RISKS ","       \
    " pu as (update public.predictions p set account_id = x.account_id, as_of = x.as_of,"                    \
    "  model_version = x.model_version, proba_close = x.proba_close, previous_proba = x.previous_proba,"     \
    "  top_features = x.top_features, change = x.change_b, meddicc = x.meddicc, is_prior = x.is_prior,"      \
    "  updated_at = now() from x where p.opportunity_id = x.opportunity_id and p.as_of <= x.as_of"           \
    "  returning p.opportunity_id),"                                                                         \
    " pi as (insert into public.predictions as p (org_id, opportunity_id, account_id, as_of, model_version," \
    "  proba_close, previous_proba, top_features, change, meddicc, is_prior, updated_at)"                    \
    "  select org_id, opportunity_id, account_id, as_of, model_version, proba_close, previous_proba,"        \
    "  top_features, change_b, meddicc, is_prior, now() from x"                                              \
    "  where x.opportunity_id not in (select opportunity_id from pu)"                                        \
    "  on conflict (opportunity_id) do update set account_id = excluded.account_id,"                         \
    "  as_of = excluded.as_of, model_version = excluded.model_version, proba_close = excluded.proba_close,"  \
    "  previous_proba = excluded.previous_proba, top_features = excluded.top_features,"                      \
    "  change = excluded.change, meddicc = excluded.meddicc, is_prior = excluded.is_prior,"                  \
    "  updated_at = now() where p.as_of <= excluded.as_of)"                                                  \
    " insert into public.prediction_history (org_id, opportunity_id, as_of, model_version, proba_close,"     \
    "  contributions, change)"                                                                               \
    " select org_id, opportunity_id, as_of, model_version, proba_close, contributions, change from x"
static const char *sql_rows = SQL_ROWS " on conflict (opportunity_id, as_of, model_version) do nothing";
/* Without the speculative insertion of ON CONFLICT (an index probe and one
 * more WAL record per row): for history rows that cannot exist yet. */
static const char *sql_rows_plain = SQL_ROWS;

#define SCORE_COLS 12 /* $1 .. $12 of sql_rows */
#define ROWS_PARAMS (SCORE_COLS + DEAL_RISKS_COLS)

void scoring_item_clear(scoring_item_t *it) {
    score_clear(&it->score);
    free(it->changes);
    free(it->prev_text);
    free(it->prev_contribs);
    free(it->reasons);
    it->reasons = NULL;
    it->changes = NULL;
    it->n_changes = 0;
    it->prev_text = NULL;
    it->prev_contribs = NULL;
    it->n_prev_contribs = 0;
}

void scoring_item_from_raw(scoring_item_t *it, const ds_opp_raw_t *raw) {
    it->has_crm = raw->stage_probability >= 0 && raw->stage_probability <= 1;
    it->crm_probability = raw->stage_probability;
    it->outcome = raw->outcome;
    it->currency = raw->currency;
    it->stage = raw->stage;
    it->industry = raw->industry;
    it->region = raw->region;
    it->size_band = raw->size_band;
    it->product_category = raw->product_category;
    it->persona = raw->persona;
}

/* The drivers and changes of a scored item in words: a reason per entry,
 * its label and display pointed at from the entry; a change's value is
 * the feature's current value. */
static void explain(scoring_item_t *it, const ds_stage_list_t *stages) {
    ds_reason_ctx_t ctx;
    ds_reason_ctx_init(&ctx);
    ctx.values = it->values;
    ctx.stages = stages;
    ctx.currency = it->currency;
    ctx.stage = it->stage;
    ctx.industry = it->industry;
    ctx.region = it->region;
    ctx.size_band = it->size_band;
    ctx.product_category = it->product_category;
    ctx.persona = it->persona;
    ctx.crm_probability = it->has_crm ? it->crm_probability : NAN;
    if (it->has_cohort) {
        ctx.amount_p25 = it->cohort_amount[0];
        ctx.amount_median = it->cohort_amount[1];
        ctx.amount_p75 = it->cohort_amount[2];
    }
    score_t *sc = &it->score;
    size_t n = sc->n_pos + sc->n_neg + it->n_changes, k = 0;
    it->reasons = ds_malloc((n ? n : 1) * sizeof *it->reasons);
    ds_driver_t *sides[2] = {sc->pos, sc->neg};
    size_t counts[2] = {sc->n_pos, sc->n_neg};
    for (int side = 0; side < 2; side++) {
        for (size_t i = 0; i < counts[side]; i++, k++) {
            ds_driver_t *d = &sides[side][i];
            ds_reason(d->name, d->value, &ctx, &it->reasons[k]);
            d->label = it->reasons[k].label;
            d->display = it->reasons[k].display;
        }
    }
    for (size_t i = 0; i < it->n_changes; i++, k++) {
        ds_contrib_change_t *c = &it->changes[i];
        int f = ds_feature_index(c->name);
        c->value = f >= 0                                       ? it->values[f]
                   : strcmp(c->name, DS_PRIOR_CRM_FEATURE) == 0 ? ctx.crm_probability
                                                                : NAN;
        ds_reason(c->name, c->value, &ctx, &it->reasons[k]);
        c->label = it->reasons[k].label;
        c->display = it->reasons[k].display;
    }
}

static int cmp_org(const void *a, const void *b) {
    const scoring_item_t *const *x = a, *const *y = b;
    return strcmp((*x)->org_id, (*y)->org_id);
}

static bool on_side(const ds_named_contrib_t *c, bool neg) {
    if (c->name[0] == '_' && strcmp(c->name, DS_CONTRIB_BIAS_NAME) == 0) return false;
    return neg ? c->contribution < 0 : c->contribution > 0;
}

/* The k-th largest |contribution| of one side of prev (0 when the side has
 * fewer than k: all of them are among its top k), and the side's count in
 * *had. A contribution is among the side's k largest (fewer than k larger
 * ones, as ds_drivers_top picks the drivers) exactly when it is at least
 * that large. */
static double side_kth(const ds_named_contrib_t *prev, size_t np, bool neg, size_t k, size_t *had) {
    *had = 0;
    if (k == 0) return 0;
    double small[16], *top = k <= DS_ARRAY_SIZE(small) ? small : ds_malloc(k * sizeof *top);
    size_t n = 0;
    for (size_t j = 0; j < np; j++) {
        if (!on_side(&prev[j], neg)) continue;
        ++*had;
        double a = fabs(prev[j].contribution);
        if (n == k && a <= top[k - 1]) continue;
        size_t at = n < k ? n++ : k - 1;
        while (at > 0 && top[at - 1] < a) {
            top[at] = top[at - 1];
            at--;
        }
        top[at] = a;
    }
    double kth = n == k ? top[k - 1] : 0;
    if (top != small) free(top);
    return kth;
}

/* prev's entry of a driver: at the driver's column first (the same model
 * writes its contributions in column order), else by name. */
static const ds_named_contrib_t *prev_entry(const ds_named_contrib_t *prev, size_t np, const ds_driver_t *d) {
    size_t at = d->feature >= 0 ? (size_t)d->feature : np;
    if (at < np && strcmp(prev[at].name, d->name) == 0) return &prev[at];
    for (size_t j = 0; j < np; j++)
        if (strcmp(prev[j].name, d->name) == 0) return &prev[j];
    return NULL;
}

/* Whether the top drivers of cur, each way, name other features than the
 * previous contributions' top k (their order does not count). */
static bool drivers_differ(const ds_named_contrib_t *prev, size_t np, const score_t *cur, int top_k) {
    size_t k = top_k > 0 ? (size_t)top_k : 0;
    for (int neg = 0; neg < 2; neg++) {
        const ds_driver_t *side = neg ? cur->neg : cur->pos;
        size_t n = neg ? cur->n_neg : cur->n_pos, had = 0;
        double kth = side_kth(prev, np, neg, k, &had);
        if ((had < k ? had : k) != n) return true;
        for (size_t i = 0; i < n; i++) {
            const ds_named_contrib_t *own = prev_entry(prev, np, &side[i]);
            if (!own || !on_side(own, neg) || fabs(own->contribution) < kth) return true;
        }
    }
    return false;
}

/* The previous score's stored contributions (text, may be NULL), kept
 * with the item (names point into it->prev_text), and whether the top
 * drivers changed since. */
static void previous_from_text(scoring_item_t *it, const char *prev_text, int top_k) {
    const score_t *cur = &it->score;
    it->drivers_changed = true;
    if (!prev_text || !cur->contribs) return;
    it->prev_text = ds_strdup(prev_text);
    if (ds_contribs_parse(it->prev_text, &it->prev_contribs, &it->n_prev_contribs) == 0)
        it->drivers_changed = drivers_differ(it->prev_contribs, it->n_prev_contribs, cur, top_k);
}

/* "Why did it move": from the previous contributions to the current ones,
 * into it->changes. Only for what is written or sent: a nightly rescore
 * writes a few percent of its scores. */
static void changes_from_previous(scoring_item_t *it, int top_k) {
    if (!it->prev_contribs) return;
    scorer_change_named(it->prev_contribs, it->n_prev_contribs, it->score.contribs, it->score.n_contribs,
                        top_k, &it->changes, &it->n_changes);
}

/* only_moved: marks the scores that did not move (see scoring_persist_opts_t). */
static void mark_unchanged(scoring_item_t *items, size_t n, double min_change) {
    for (size_t i = 0; i < n; i++) {
        scoring_item_t *it = &items[i];
        it->unchanged = !isnan(it->previous) && strcmp(it->prev_version, it->version) == 0 &&
                        fabs(it->score.proba - it->previous) <= min_change && !it->drivers_changed;
    }
}

int scoring_persist(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, int top_k, scoring_item_t *items,
                    size_t n, char *errstr, size_t errsz) {
    return scoring_persist_opts(pg, orgs, scorer, top_k, items, n, NULL, errstr, errsz);
}

/* Scores the items per org, one model call per org. */
static int score_by_org(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, int top_k, scoring_item_t *items,
                        size_t n, char *errstr, size_t errsz) {
    scoring_item_t **order = ds_calloc(n, sizeof *order);
    for (size_t i = 0; i < n; i++) order[i] = &items[i];
    qsort(order, n, sizeof *order, cmp_org);
    int rc = DS_OK;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t j = i;
        while (j < n && strcmp(order[j]->org_id, order[i]->org_id) == 0) j++;
        const ds_org_ctx_t *oc = NULL;
        const scorer_org_t *so = NULL;
        rc = ds_org_cache_get(orgs, pg, order[i]->org_id, &oc, errstr, errsz);
        if (rc == 0) rc = scorer_get(scorer, pg, order[i]->org_id, oc, &so, errstr, errsz);
        if (rc != 0) break;
        size_t m = j - i;
        double *vals = ds_malloc(m * DS_FEATURE_COUNT * sizeof *vals);
        score_t *sc = ds_calloc(m, sizeof *sc);
        score_input_t *in = ds_calloc(m, sizeof *in);
        for (size_t k = 0; k < m; k++) {
            const scoring_item_t *it = order[i + k];
            memcpy(vals + k * DS_FEATURE_COUNT, it->values, DS_FEATURE_COUNT * sizeof *vals);
            in[k] = (score_input_t){it->has_crm ? it->crm_probability : NAN, it->outcome};
        }
        rc = scorer_score(so, vals, in, m, top_k, sc, errstr, errsz);
        for (size_t k = 0; k < m; k++) {
            order[i + k]->score = sc[k];
            order[i + k]->stages = oc->stages;
            snprintf(order[i + k]->version, sizeof order[i + k]->version, "%s",
                     sc[k].version ? sc[k].version : so->version);
        }
        free(vals);
        free(sc);
        free(in);
        i = j;
    }
    free(order);
    return rc;
}

static const char *col_or_null(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* The HISTORY_COLS of a row, from column col0, into the item (pointing
 * into r). */
static void history_take(scoring_item_t *it, const PGresult *r, int row, int col0) {
    for (int k = 0; k < 2; k++) {
        int c = col0 + 4 * k; /* h at col0, h2 at col0 + 4 */
        it->history[k] = (scoring_history_row_t){col_or_null(r, row, c), col_or_null(r, row, c + 1),
                                                 col_or_null(r, row, c + 2)};
    }
    it->history_at_as_of = !PQgetisnull(r, row, col0 + 3) && PQgetvalue(r, row, col0 + 3)[0] == 't';
    const int q0 = col0 + 7;
    it->has_cohort = !PQgetisnull(r, row, q0) && !PQgetisnull(r, row, q0 + 1) && !PQgetisnull(r, row, q0 + 2);
    for (int q = 0; q < 3 && it->has_cohort; q++)
        it->cohort_amount[q] = strtod(PQgetvalue(r, row, q0 + q), NULL);
}

/* The history rows and cohort of every item (sql_history, history_take):
 * *r holds them until the caller PQclears it. */
static int load_history(ds_pg_t *pg, scoring_item_t *items, size_t n, PGresult **r, char *errstr,
                        size_t errsz) {
    ds_pgarray_t a[2] = {{0}};
    ds_pgarray_begin(&a[0], DS_OID_UUID);
    ds_pgarray_begin(&a[1], DS_OID_TIMESTAMPTZ);
    for (size_t i = 0; i < n; i++) {
        ds_pgarray_uuid(&a[0], items[i].opp_id);
        ds_pgarray_timestamptz(&a[1], items[i].as_of_us);
        memset(items[i].history, 0, sizeof items[i].history);
        items[i].history_at_as_of = false;
        items[i].has_cohort = false;
    }
    const char *pv[2];
    int pl[2], pf[2];
    ds_pgarray_params(a, 2, pv, pl, pf);
    int rc = ds_pg_exec_params(pg, sql_history, 2, pv, pl, pf, r, errstr, errsz);
    for (int c = 0; c < 2; c++) ds_pgarray_free(&a[c]);
    if (rc != 0) return rc;
    for (int row = 0; row < PQntuples(*r); row++) {
        long long place = strtoll(PQgetvalue(*r, row, 0), NULL, 10) - 1;
        if (place >= 0 && (size_t)place < n) history_take(&items[place], *r, row, 1);
    }
    return DS_OK;
}

/* The previous score of a scored item: the latest history row that is not
 * this very score (a replay must find the same previous score as the first
 * time), its contributions and whether the drivers changed since. Without
 * one there is nothing to explain: no changes. */
static void history_pick(scoring_item_t *it, int top_k) {
    it->previous = NAN;
    it->prev_version[0] = '\0';
    it->unchanged = false;
    const scoring_history_row_t *h = &it->history[0];
    if (h->proba && it->history_at_as_of && h->version && strcmp(h->version, it->version) == 0) h++;
    if (!h->proba) return;
    it->previous = strtod(h->proba, NULL);
    snprintf(it->prev_version, sizeof it->prev_version, "%s", h->version ? h->version : "");
    previous_from_text(it, h->contributions, top_k);
}

/* The columns $1 .. $12 of sql_rows, one element per item that is not
 * unchanged (the caller frees them with ds_pgarray_free). */
static void build_rows(const scoring_item_t *items, size_t n, ds_pgarray_t c[SCORE_COLS]) {
    static const uint32_t oids[SCORE_COLS] = {DS_OID_UUID,   DS_OID_UUID,  DS_OID_TIMESTAMPTZ, DS_OID_TEXT,
                                              DS_OID_FLOAT8, DS_OID_JSON,  DS_OID_JSON,        DS_OID_UUID,
                                              DS_OID_FLOAT8, DS_OID_JSONB, DS_OID_JSONB,       DS_OID_BOOL};
    for (int k = 0; k < SCORE_COLS; k++) ds_pgarray_begin(&c[k], oids[k]);
    ds_sb_t js = {0};
    for (size_t i = 0; i < n; i++) {
        const scoring_item_t *it = &items[i];
        if (it->unchanged) continue;
        ds_pgarray_uuid(&c[0], it->org_id);
        ds_pgarray_uuid(&c[1], it->opp_id);
        ds_pgarray_timestamptz(&c[2], it->as_of_us);
        ds_pgarray_text(&c[3], it->version, strlen(it->version));
        ds_pgarray_float8(&c[4], it->score.proba);
        js.len = 0;
        ds_contribs_write(&js, it->score.contribs, it->score.n_contribs);
        ds_pgarray_json(&c[5], js.p, js.len);
        /* The same change document in the history and the latest row. */
        js.len = 0;
        ds_score_change_write(&js, it->previous, it->score.proba, it->changes, it->n_changes);
        ds_pgarray_json(&c[6], js.p, js.len);
        if (it->account_id)
            ds_pgarray_uuid(&c[7], it->account_id);
        else
            ds_pgarray_null(&c[7]);
        if (isnan(it->previous))
            ds_pgarray_null(&c[8]);
        else
            ds_pgarray_float8(&c[8], it->previous);
        js.len = 0;
        score_drivers_write(&js, &it->score);
        ds_pgarray_jsonb(&c[9], js.p, js.len);
        /* The MEDDICC evidence is JSON text already (the engine's or the
         * stored snapshot's). */
        ds_pgarray_jsonb(&c[10], it->meddicc_json, it->meddicc_json ? strlen(it->meddicc_json) : 0);
        ds_pgarray_bool(&c[11], it->score.is_prior);
    }
    free(js.p);
}

/* The rows statement's slices: at most WRITE_CHUNK scores each. The
 * statement materializes its rows (x) with their documents, about 6 KB a
 * score; past work_mem (4 MB by default) Postgres spills them to a
 * temporary file and reads them back for every part of the statement. A
 * burst's batch of 15,000 scores in one statement spilled 30 MB a batch
 * and cost the scoring backend 300 µs a change against 131 in slices
 * (services/scoring/README.md, "The worker's write"). */
#define WRITE_CHUNK 256

/* One slice: its parameters, which must live until the pipeline has run. */
typedef struct {
    ds_pgarray_t cols[SCORE_COLS];
    deal_risks_batch_t risks;
    const char *v[ROWS_PARAMS];
    int l[ROWS_PARAMS], f[ROWS_PARAMS];
} write_chunk_t;

/* One pipelined transaction: first, each chunk's rows of the three tables
 * and the risks of its deals no longer open; none when there is nothing to
 * write. The history rows with a plain INSERT when plain; *conflict is set
 * on a unique violation. */
static int write_rows(ds_pg_t *pg, bool plain, bool *conflict, const scoring_stmt_t *first,
                      write_chunk_t *chunks, size_t nchunks, char *errstr, size_t errsz) {
    bool any = first != NULL;
    for (size_t k = 0; k < nchunks; k++) any = any || chunks[k].cols[0].n;
    if (!any) return DS_OK;
    ds_pg_batch_t *b = NULL;
    ds_pg_batch_begin(pg, &b);
    ds_pg_batch_add_sql(b, "BEGIN", NULL);
    if (first)
        ds_pg_batch_add_params_ref(b, first->sql, first->nparams, first->values, first->lengths,
                                   first->formats, NULL);
    for (size_t k = 0; k < nchunks; k++) {
        write_chunk_t *c = &chunks[k];
        if (c->cols[0].n) {
            ds_pgarray_params(c->cols, SCORE_COLS, c->v, c->l, c->f);
            deal_risks_params(&c->risks, c->v + SCORE_COLS, c->l + SCORE_COLS, c->f + SCORE_COLS);
            ds_pg_batch_add_params_ref(b, plain ? sql_rows_plain : sql_rows, ROWS_PARAMS, c->v, c->l, c->f,
                                       NULL);
        }
        deal_risks_add_forget(&c->risks, b);
    }
    ds_pg_batch_add_sql(b, "COMMIT", NULL);
    int rc = ds_pg_batch_run(b, NULL, NULL, errstr, errsz);
    if (rc != 0 && strcmp(ds_pg_batch_sqlstate(b), "23505") == 0) *conflict = true;
    ds_pg_batch_end(b);
    return rc;
}

/* The items' rows in chunks of WRITE_CHUNK (*out, *nout; free with
 * free_chunks, also after a failure). */
static int build_chunks(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, const scoring_item_t *items,
                        size_t n, write_chunk_t **out, size_t *nout, char *errstr, size_t errsz) {
    size_t nchunks = (n + WRITE_CHUNK - 1) / WRITE_CHUNK;
    write_chunk_t *chunks = ds_calloc(nchunks ? nchunks : 1, sizeof *chunks);
    *out = chunks;
    *nout = 0;
    for (size_t k = 0; k < nchunks; k++) {
        size_t at = k * WRITE_CHUNK, m = n - at < WRITE_CHUNK ? n - at : WRITE_CHUNK;
        *nout = k + 1;
        int rc = deal_risks_build(pg, orgs, scorer, scorer_risks(scorer), items + at, m, &chunks[k].risks,
                                  errstr, errsz);
        if (rc != 0) return rc;
        build_rows(items + at, m, chunks[k].cols);
    }
    return DS_OK;
}

static void free_chunks(write_chunk_t *chunks, size_t n) {
    for (size_t k = 0; k < n; k++) {
        deal_risks_batch_free(&chunks[k].risks);
        for (int c = 0; c < SCORE_COLS; c++) ds_pgarray_free(&chunks[k].cols[c]);
    }
    free(chunks);
}

/* One pass of scoring_persist_opts: the history rows plainly inserted when
 * plain, *conflict set on a unique violation. */
static int persist_once(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, int top_k, scoring_item_t *items,
                        size_t n, const scoring_persist_opts_t *o, bool plain, bool *conflict, char *errstr,
                        size_t errsz) {
    int64_t t0 = ds_mono_us();
    int rc = score_by_org(pg, orgs, scorer, top_k, items, n, errstr, errsz);
    if (rc != 0) return rc;
    int64_t t1 = ds_mono_us();
    PGresult *history = NULL;
    if (!o->history_read) rc = load_history(pg, items, n, &history, errstr, errsz);
    if (rc != 0) return rc;
    for (size_t i = 0; i < n; i++) {
        history_pick(&items[i], top_k);
        /* history_pick kept what it needs; the rows go with the result. */
        if (history) memset(items[i].history, 0, sizeof items[i].history);
    }
    PQclear(history);
    int64_t t2 = ds_mono_us();
    if (o->only_moved) mark_unchanged(items, n, o->min_change);
    /* Changes and words only for what is written or sent. */
    for (size_t i = 0; i < n; i++) {
        if (items[i].unchanged) continue;
        changes_from_previous(&items[i], top_k);
        explain(&items[i], items[i].stages);
    }
    write_chunk_t *chunks;
    size_t nchunks;
    rc = build_chunks(pg, orgs, scorer, items, n, &chunks, &nchunks, errstr, errsz);
    if (rc != 0) {
        free_chunks(chunks, nchunks);
        return rc;
    }
    const scoring_stmt_t *first = o->first ? o->first(o->first_ud, items, n, plain) : NULL;
    int64_t t3 = ds_mono_us();
    rc = write_rows(pg, plain, conflict, first, chunks, nchunks, errstr, errsz);
    free_chunks(chunks, nchunks);
    if (o->stats) {
        int64_t t4 = ds_mono_us();
        o->stats->us_score += t1 - t0;
        o->stats->us_previous += t2 - t1;
        o->stats->us_json += t3 - t2;
        o->stats->us_write += t4 - t3;
    }
    return rc;
}

/* The history rows go in with a plain INSERT: a score's row exists
 * already only when its features.ready is replayed (or an interrupted
 * rescore committed its chunk), and ON CONFLICT would insert every row
 * speculatively (a WAL record more per row) for that. A replay fails with
 * a unique violation and is scored again with ON CONFLICT DO NOTHING. So
 * is a deal's first score that met another writer's (the worker's, an API
 * call's) in the realtime identity index of predictions or deal_risks: ON
 * CONFLICT (opportunity_id) does not arbitrate that index, so Postgres
 * raises the violation there instead of taking the conflict path, and the
 * second pass finds the row and updates it (test_scoring.c,
 * concurrent_first_scores_all_answer_200). */
int scoring_persist_opts(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, int top_k,
                         scoring_item_t *items, size_t n, const scoring_persist_opts_t *o, char *errstr,
                         size_t errsz) {
    static const scoring_persist_opts_t none = {0};
    if (!o) o = &none;
    if (o->rewritten) *o->rewritten = false;
    if (n == 0) return DS_OK;
    bool conflict = false;
    int rc = persist_once(pg, orgs, scorer, top_k, items, n, o, true, &conflict, errstr, errsz);
    if (!conflict) return rc;
    if (o->rewritten) *o->rewritten = true;
    for (size_t k = 0; k < n; k++) scoring_item_clear(&items[k]);
    conflict = false;
    return persist_once(pg, orgs, scorer, top_k, items, n, o, false, &conflict, errstr, errsz);
}

#define EVENT_MAX_CHANGES 64

/* The event's change, field for field as ds_score_change_write writes it
 * (moved and mp: room for EVENT_MAX_CHANGES, borrowed by change). */
static void event_change(const scoring_item_t *it, Dealscore__V1__PredictionChange *change,
                         Dealscore__V1__DriverChange *moved, Dealscore__V1__DriverChange **mp) {
    change->has_previous = !isnan(it->previous);
    change->previous_proba = it->previous;
    change->delta = it->score.proba - it->previous;
    size_t nc = it->n_changes < EVENT_MAX_CHANGES ? it->n_changes : EVENT_MAX_CHANGES;
    for (size_t i = 0; i < nc; i++) {
        const ds_contrib_change_t *c = &it->changes[i];
        dealscore__v1__driver_change__init(&moved[i]);
        moved[i].feature = (char *)c->name;
        moved[i].label = (char *)(c->label ? c->label : c->name);
        moved[i].previous = c->previous;
        moved[i].current = c->current;
        moved[i].change = c->change;
        moved[i].display = (char *)(c->display ? c->display : "");
        moved[i].value = c->value;
        mp[i] = &moved[i];
    }
    change->n_drivers = nc;
    change->drivers = mp;
}

void scoring_event(const scoring_item_t *it, uint8_t **buf, size_t *len, char event_id[37]) {
    char seed[200];
    snprintf(seed, sizeof seed, "prediction.made:%s:%lld:%s", it->opp_id, (long long)it->as_of_us,
             it->version);
    ds_uuid_derived(seed, event_id);
    Dealscore__V1__PredictionMade pm = DEALSCORE__V1__PREDICTION_MADE__INIT;
    pm.event_id = event_id;
    pm.causation_id = (char *)(it->causation_id ? it->causation_id : "");
    pm.org_id = (char *)it->org_id;
    pm.opportunity_id = (char *)it->opp_id;
    pm.as_of_us = it->as_of_us;
    pm.model_version = (char *)it->version;
    pm.proba_close = it->score.proba;
    pm.has_previous = !isnan(it->previous);
    pm.previous_proba = it->previous;
    size_t nd = 0;
    Dealscore__V1__Driver drv[64];
    Dealscore__V1__Driver *dp[64];
    const ds_driver_t *sides[2] = {it->score.pos, it->score.neg};
    size_t counts[2] = {it->score.n_pos, it->score.n_neg};
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < counts[s] && nd < 64; i++) {
            const ds_driver_t *d = &sides[s][i];
            dealscore__v1__driver__init(&drv[nd]);
            drv[nd].name = (char *)d->name;
            drv[nd].value = isfinite(d->value) ? d->value : NAN;
            drv[nd].contribution = d->contribution;
            dp[nd] = &drv[nd];
            nd++;
        }
    }
    pm.n_top_drivers = nd;
    pm.top_drivers = dp;
    Dealscore__V1__PredictionChange change = DEALSCORE__V1__PREDICTION_CHANGE__INIT;
    Dealscore__V1__DriverChange moved[EVENT_MAX_CHANGES];
    Dealscore__V1__DriverChange *mp[EVENT_MAX_CHANGES];
    event_change(it, &change, moved, mp);
    pm.change = &change;
    *len = dealscore__v1__prediction_made__get_packed_size(&pm);
    *buf = ds_malloc(*len ? *len : 1);
    dealscore__v1__prediction_made__pack(&pm, *buf);
}

/* ---- the worker ------------------------------------------------------------ */

typedef struct {
    ds_service_t *svc;
    ds_pg_t *pg;
    ds_org_cache_t *orgs;
    scorer_t *scorer;
    uint64_t generation;
    ds_metric_t *m_predictions, *m_score_secs, *m_model_changes;
} worker_state_t;

static void on_notify(void *ud, const char *channel, const char *payload, int pid) {
    (void)channel;
    (void)pid;
    worker_state_t *st = ud;
    ds_info("model change for org %s: reloading", payload);
    scorer_invalidate(st->scorer, payload && *payload ? payload : NULL);
    ds_metric_add(st->m_model_changes, 1);
}

/* Between messages: a model activated while the input is quiet is heard
 * now, not with the org's next change. */
static void idle(void *ud) {
    worker_state_t *st = ud;
    if (ds_pg_is_connected(st->pg)) ds_pg_notifies(st->pg, on_notify, st);
}

/* One poll batch of features.ready: the events, and the items to score
 * (one per opportunity, its latest state). */
typedef struct {
    Dealscore__V1__FeaturesReady **evs;
    size_t n;
    scoring_item_t *its;
    size_t nit;
    double *vals;
    char (*tps)[DS_TRACEPARENT_SIZE];
    ds_strindex_t byopp; /* opportunity id -> its place in its */
    PGresult *r;         /* the deals and their history (sql_deals); its point into it */
} score_batch_t;

static void batch_init(score_batch_t *sb, size_t n) {
    memset(sb, 0, sizeof *sb);
    sb->n = n;
    sb->evs = ds_calloc(n, sizeof *sb->evs);
    sb->its = ds_calloc(n, sizeof *sb->its);
    sb->vals = ds_malloc(n * DS_FEATURE_COUNT * sizeof *sb->vals);
    sb->tps = ds_calloc(n, sizeof *sb->tps);
    ds_strindex_init(&sb->byopp, n);
}

static void batch_close(score_batch_t *sb) {
    for (size_t k = 0; k < sb->nit; k++) scoring_item_clear(&sb->its[k]);
    PQclear(sb->r);
    for (size_t i = 0; i < sb->n; i++)
        if (sb->evs[i]) dealscore__v1__features_ready__free_unpacked(sb->evs[i], NULL);
    ds_strindex_free(&sb->byopp);
    free(sb->evs);
    free(sb->its);
    free(sb->vals);
    free(sb->tps);
}

/* Decodes the messages (a bad one gets DS_EINVAL) and keeps the latest
 * state of each opportunity as an item. */
static void decode_and_coalesce(score_batch_t *sb, ds_worker_item_t *items) {
    for (size_t i = 0; i < sb->n; i++) {
        rd_kafka_message_t *m = items[i].msg;
        Dealscore__V1__FeaturesReady *ev = sb->evs[i] =
            dealscore__v1__features_ready__unpack(NULL, m->len, m->payload);
        if (!ev || !ds_uuid_valid(ev->opportunity_id) || !ds_uuid_valid(ev->org_id)) {
            items[i].status = DS_EINVAL;
            snprintf(items[i].error, sizeof items[i].error,
                     "payload is not a dealscore.v1.FeaturesReady with UUID ids");
            continue;
        }
        size_t k = (size_t)ds_strindex_add(&sb->byopp, ev->opportunity_id, (int)sb->nit);
        if (k < sb->nit && ev->as_of_us < sb->its[k].as_of_us) continue; /* an older state: superseded */
        if (k == sb->nit) sb->nit++;
        scoring_item_t *it = &sb->its[k];
        it->org_id = ev->org_id;
        it->opp_id = ev->opportunity_id;
        it->as_of_us = ev->as_of_us;
        it->causation_id = ev->event_id;
        double *v = sb->vals + k * DS_FEATURE_COUNT;
        for (int f = 0; f < DS_FEATURE_COUNT; f++) v[f] = NAN;
        for (size_t f = 0; f < ev->n_features; f++) {
            int idx = ds_feature_index(ev->features[f]->name);
            if (idx >= 0) v[idx] = ev->features[f]->value;
        }
        it->values = v;
        char tp[DS_TRACEPARENT_SIZE];
        ds_event_traceparent_child(ds_kafka_header_get(m, DS_HDR_TRACEPARENT, tp, sizeof tp) == 0 ? tp : NULL,
                                   sb->tps[k]);
        it->traceparent = sb->tps[k];
    }
}

static ds_outcome_t outcome_parse(const char *s) {
    return strcmp(s, "won") == 0    ? DS_OUTCOME_WON
           : strcmp(s, "lost") == 0 ? DS_OUTCOME_LOST
                                    : DS_OUTCOME_OPEN;
}

/* The deals of the items as of their features (x(id, at, n): n is the
 * item's place, from 1), with the history HISTORY_JOINS reads, in one
 * statement: columns 1 .. 11 are the deal's (attach_deal), then
 * HISTORY_COLS. */
static const char *sql_deals =
    "select x.n, o.account_id, f.meddicc::text, o.stage_probability, o.outcome, o.currency, o.stage,"
    " a.industry, a.region, a.size_band, o.product_category, o.persona," HISTORY_COLS
    " from unnest($1::uuid[], $2::timestamptz[]) with ordinality as x(id, at, n)"
    " join public.opportunities o on o.id = x.id"
    " left join public.accounts a on a.id = o.account_id"
    " left join public.features_snapshot f on f.opportunity_id = x.id"
    " and f.as_of = x.at and f.feature_version = $3::text" HISTORY_JOINS;
#define DEALS_HISTORY_COL 12

/* Columns 1 .. 11 of sql_deals: the account id, the MEDDICC evidence of
 * the scored snapshot, what the prior chain needs (the CRM's stage
 * probability, the outcome) and what the reasons' texts use. */
static void attach_deal(scoring_item_t *it, const PGresult *r, int row) {
    it->account_id = col_or_null(r, row, 1);
    it->meddicc_json = col_or_null(r, row, 2);
    it->has_crm = !PQgetisnull(r, row, 3);
    it->crm_probability = it->has_crm ? strtod(PQgetvalue(r, row, 3), NULL) : NAN;
    it->outcome = outcome_parse(PQgetvalue(r, row, 4));
    it->currency = col_or_null(r, row, 5);
    it->stage = col_or_null(r, row, 6);
    it->industry = col_or_null(r, row, 7);
    it->region = col_or_null(r, row, 8);
    it->size_band = col_or_null(r, row, 9);
    it->product_category = col_or_null(r, row, 10);
    it->persona = col_or_null(r, row, 11);
}

/* Reads the deals of the items with their history (sql_deals, kept in
 * sb->r, which the items point into); items of opportunities that no
 * longer exist are dropped. */
static int attach_deals(worker_state_t *st, score_batch_t *sb, char *errstr, size_t errsz) {
    size_t nit = sb->nit;
    scoring_item_t *its = sb->its;
    ds_pgarray_t a[3] = {{0}};
    ds_pgarray_begin(&a[0], DS_OID_UUID);
    ds_pgarray_begin(&a[1], DS_OID_TIMESTAMPTZ);
    for (size_t k = 0; k < nit; k++) {
        ds_pgarray_uuid(&a[0], its[k].opp_id);
        ds_pgarray_timestamptz(&a[1], its[k].as_of_us);
    }
    const char *pv[3];
    int pl[3], pf[3];
    ds_pgarray_params(a, 2, pv, pl, pf);
    pv[2] = DS_FEATURE_VERSION;
    pl[2] = 0;
    pf[2] = 0;
    int rc = ds_pg_exec_params(st->pg, sql_deals, 3, pv, pl, pf, &sb->r, errstr, errsz);
    for (int c = 0; c < 2; c++) ds_pgarray_free(&a[c]);
    if (rc != 0) return rc;
    PGresult *r = sb->r;
    int *rowof = ds_malloc(nit * sizeof *rowof);
    for (size_t k = 0; k < nit; k++) rowof[k] = -1;
    for (int row = 0; row < PQntuples(r); row++) {
        long long k = strtoll(PQgetvalue(r, row, 0), NULL, 10) - 1;
        if (k >= 0 && (size_t)k < nit && rowof[k] < 0) rowof[k] = row;
    }
    size_t kept = 0;
    for (size_t k = 0; k < nit; k++) {
        int row = rowof[k];
        if (row < 0) continue;
        attach_deal(&its[k], r, row);
        history_take(&its[k], r, row, DEALS_HISTORY_COL);
        its[kept++] = its[k];
    }
    free(rowof);
    sb->nit = kept;
    return DS_OK;
}

/* prediction.made for every item written. */
static int publish_predictions(ds_worker_t *w, const score_batch_t *sb, char *errstr, size_t errsz) {
    const char *topic = ds_worker_topic(w, DS_TOPIC_PREDICTION_MADE);
    for (size_t k = 0; k < sb->nit; k++) {
        const scoring_item_t *it = &sb->its[k];
        uint8_t *buf = NULL;
        size_t len = 0;
        char eid[37];
        scoring_event(it, &buf, &len, eid);
        ds_event_meta_t meta = {.id = eid,
                                .source = "/dealscore/scoring",
                                .type = DS_CE_TYPE_PREDICTION_MADE,
                                .time_us = it->as_of_us,
                                .traceparent = it->traceparent};
        int rc = ds_worker_produce(w, topic, it->opp_id, strlen(it->opp_id), buf, len, &meta);
        free(buf);
        if (rc != 0) {
            snprintf(errstr, errsz, "could not produce prediction.made");
            return DS_ERETRY;
        }
    }
    return DS_OK;
}

/* Scores and writes the batch, its history read with the deals. */
static int persist_batch(worker_state_t *st, score_batch_t *sb, char *errstr, size_t errsz) {
    const scoring_persist_opts_t o = {.history_read = true};
    return scoring_persist_opts(st->pg, st->orgs, st->scorer, st->svc->cfg->top_k, sb->its, sb->nit, &o,
                                errstr, errsz);
}

static int process(ds_worker_t *w, void *ud, ds_worker_item_t *items, size_t n, char *errstr, size_t errsz) {
    worker_state_t *st = ud;
    int rc = ds_pg_ensure(st->pg, 2000, NULL, errstr, errsz);
    if (rc != 0) return DS_ERETRY;
    if (ds_pg_generation(st->pg) != st->generation) {
        /* A new connection may have missed notifications. */
        st->generation = ds_pg_generation(st->pg);
        scorer_invalidate(st->scorer, NULL);
    }
    ds_pg_notifies(st->pg, on_notify, st);

    score_batch_t sb;
    batch_init(&sb, n);
    decode_and_coalesce(&sb, items);
    if (sb.nit && attach_deals(st, &sb, errstr, errsz) != 0) {
        if (!ds_pg_is_connected(st->pg)) ds_pg_reset(st->pg);
        rc = DS_ERETRY;
        goto out;
    }
    if (sb.nit) {
        int64_t t0 = ds_mono_us();
        rc = persist_batch(st, &sb, errstr, errsz);
        ds_metric_observe(st->m_score_secs, (double)(ds_mono_us() - t0) / 1e6);
        if (rc != 0) {
            if (!ds_pg_is_connected(st->pg)) ds_pg_reset(st->pg);
            /* A database error on our own rows is not the message's fault:
             * retry rather than drop; the log says why. */
            if (rc == DS_EFATAL) rc = DS_ERETRY;
            goto out;
        }
        ds_metric_add(st->m_predictions, (double)sb.nit);
        rc = publish_predictions(w, &sb, errstr, errsz);
    }
out:
    batch_close(&sb);
    return rc;
}

/* A burst holds, per deal, the features with the latest as_of (the newer
 * on a tie), as decode_and_coalesce keeps: the message carries them all. */
static int coalesce(void *ud, const rd_kafka_message_t *m, char *key, size_t keysz, int64_t *rank) {
    (void)ud;
    Dealscore__V1__FeaturesReady *ev = dealscore__v1__features_ready__unpack(NULL, m->len, m->payload);
    int rc = ev && ds_uuid_valid(ev->opportunity_id) && ds_uuid_valid(ev->org_id) ? 0 : DS_EINVAL;
    if (rc == 0) {
        *rank = ev->as_of_us;
        snprintf(key, keysz, "%s", ev->opportunity_id);
    }
    if (ev) dealscore__v1__features_ready__free_unpacked(ev, NULL);
    return rc;
}

void scoring_worker(ds_service_t *svc, void *state) {
    (void)state;
    worker_state_t st = {.svc = svc};
    char err[256];
    if (ds_pg_new(&st.pg, svc->cfg->database_url, "dealscore-scoring", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    ds_pg_listen(st.pg, "dealscore_models", err, sizeof err);
    scorer_register(st.pg);
    /* The stage order only: the features come computed, so the closed
     * deals' win rates and engagement, most of a context's reload, would
     * be read every minute for nothing. */
    st.orgs = ds_org_cache_new_refreshing(60000, svc->cfg->database_url, false);
    st.scorer = scorer_new_refreshing(60000, svc->cfg->prior_min_closed, svc->cfg->risk_ttl_s * 1000,
                                      svc->cfg->database_url);
    st.m_predictions =
        ds_metrics_counter(svc->metrics, "predictions_total", "Predictions written", "path=\"worker\"");
    st.m_score_secs =
        ds_metrics_histogram(svc->metrics, "scoring_batch_seconds", "Scoring and persisting one batch", NULL,
                             ds_metrics_latency_buckets, ds_metrics_latency_nbuckets);
    st.m_model_changes = ds_metrics_counter(svc->metrics, "model_changes_total",
                                            "Active-model changes heard; the org's model and risk thresholds "
                                            "reload at its next score",
                                            NULL);
    static const char *const topics[] = {DS_TOPIC_FEATURES_READY};
    ds_worker_def_t def = {.name = "scoring",
                           .topics = topics,
                           .ntopics = 1,
                           .process = process,
                           .ud = &st,
                           .coalesce = coalesce,
                           .idle = idle};
    ds_worker_run(svc, &def);
    scorer_destroy(st.scorer);
    ds_org_cache_destroy(st.orgs);
    ds_pg_destroy(st.pg);
}
