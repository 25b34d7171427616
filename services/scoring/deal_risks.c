/* Deal risks: the org's rules and learned thresholds, and each scored open
 * deal's risks with what-ifs, as rows of public.deal_risks. */
#include "deal_risks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/log.h"
#include "base/sb.h"
#include "base/strindex.h"
#include "domain/risks.h"
#include "store/refresh_cache.h"

struct deal_risks_cache_s {
    ds_refresh_cache_t *orgs; /* org id -> org_risks_t */
};

/* An org's configuration and the strings it points to. */
typedef struct {
    ds_risk_config_t cfg;
    char *owned[2 * DS_RISK_RULE_COUNT + DS_RISK_MAX_STAGES];
    size_t n_owned;
} org_risks_t;

static void org_risks_free(void *p) {
    org_risks_t *o = p;
    if (!o) return;
    for (size_t i = 0; i < o->n_owned; i++) free(o->owned[i]);
    free(o);
}

static const char *own(org_risks_t *o, const char *s) {
    ds_assert(o->n_owned < DS_ARRAY_SIZE(o->owned));
    char *copy = ds_strdup(s);
    o->owned[o->n_owned++] = copy;
    return copy;
}

/* ---- an org's rules and won deals --------------------------------------------- */

static const char *sql_rules = "select rule, enabled, param, fallback, min_won_deals, action"
                               " from public.risk_rules where org_id is null or org_id = $1::uuid"
                               " order by org_id nulls first";

/* Each stage visit of a won deal that ended: the stage and its days. */
static const char *sql_visits =
    "select v.new_value, extract(epoch from v.left_at - v.changed_at) / 86400 from ("
    " select h.new_value, h.changed_at,"
    "  lead(h.changed_at) over (partition by h.opportunity_id order by h.changed_at, h.id) as left_at"
    " from public.opportunity_history h join public.opportunities o on o.id = h.opportunity_id"
    " where o.org_id = $1::uuid and o.outcome = 'won' and not o.placeholder and h.field = 'stage'"
    "  and h.new_value is not null) v"
    " where v.left_at is not null";

/* Each won deal's close-date pushes before it closed (the closing change
 * sets the close date to the day it closed: not a push). */
static const char *sql_pushes =
    "select o.id::text, count(h.id) filter (where h.old_value is not null and h.new_value > h.old_value"
    "  and h.changed_at < coalesce(o.closed_at, 'infinity'))"
    " from public.opportunities o left join public.opportunity_history h"
    "  on h.opportunity_id = o.id and h.field = 'close_date'"
    " where o.org_id = $1::uuid and o.outcome = 'won' and not o.placeholder group by o.id";

/* Each call transcript of the won deals, in time order, with the stage the
 * deal was in then (its first stage for a call before any stage change):
 * scanned with the org's lexicon, they give the stage of each deal's first
 * call and of the first evidence of each element. */
static const char *sql_calls =
    "select t.opportunity_id::text, t.text, coalesce("
    "  (select h.new_value from public.opportunity_history h where h.opportunity_id = t.opportunity_id"
    "   and h.field = 'stage' and h.changed_at <= t.occurred_at order by h.changed_at desc, h.id desc limit "
    "1),"
    "  (select h.new_value from public.opportunity_history h where h.opportunity_id = t.opportunity_id"
    "   and h.field = 'stage' order by h.changed_at, h.id limit 1))"
    " from public.transcripts t join public.opportunities o on o.id = t.opportunity_id"
    " where o.org_id = $1::uuid and o.outcome = 'won' and not o.placeholder"
    " order by t.occurred_at, t.id";

static void load_rules(org_risks_t *o, const PGresult *r, ds_risk_rule_t *rules) {
    memcpy(rules, ds_risk_rules_default(), DS_RISK_RULE_COUNT * sizeof *rules);
    /* Defaults first, then the org's rows, each replacing its rule. */
    for (int i = 0; i < PQntuples(r); i++) {
        int k = ds_risk_rule_parse(PQgetvalue(r, i, 0));
        if (k < 0) continue;
        rules[k].enabled = PQgetvalue(r, i, 1)[0] == 't';
        rules[k].param = strtod(PQgetvalue(r, i, 2), NULL);
        rules[k].fallback = strtod(PQgetvalue(r, i, 3), NULL);
        rules[k].min_won_deals = (int)strtol(PQgetvalue(r, i, 4), NULL, 10);
        rules[k].action = own(o, PQgetvalue(r, i, 5));
    }
}

/* The stage index of a stage name, remembering the org's name for it. */
static int stage_of(org_risks_t *o, const ds_org_ctx_t *oc, const char *name) {
    int s = oc && oc->stages ? ds_stage_list_index(oc->stages, name) : -1;
    if (s >= 0 && s < DS_RISK_MAX_STAGES && !o->cfg.stage_names[s] && o->n_owned < DS_ARRAY_SIZE(o->owned))
        o->cfg.stage_names[s] = own(o, name);
    return s;
}

/* Fits the thresholds from the three result sets of the won deals. */
/* The stage of each won deal's first call (first_call) and first evidence
 * of each element (first), -1 none, from sql_calls' rows in time order. */
static void scan_calls(org_risks_t *o, const ds_org_ctx_t *oc, const PGresult *calls, ds_strindex_t *byid,
                       size_t nw, int *first, int *first_call) {
    const ds_meddicc_lexicon_t *lex = oc && oc->lexicon ? oc->lexicon : ds_meddicc_lexicon_default();
    for (size_t i = 0; i < nw * DS_MEDDICC_COUNT; i++) first[i] = -1;
    for (size_t i = 0; i < nw; i++) first_call[i] = -1;
    for (int i = 0; i < PQntuples(calls); i++) {
        int d = ds_strindex_find(byid, PQgetvalue(calls, i, 0));
        if (d < 0 || PQgetisnull(calls, i, 2)) continue;
        int s = stage_of(o, oc, PQgetvalue(calls, i, 2));
        if (first_call[d] < 0) first_call[d] = s;
        ds_meddicc_result_t res;
        ds_meddicc_result_init(&res);
        ds_meddicc_scan(lex, NULL, PQgetvalue(calls, i, 1), (size_t)PQgetlength(calls, i, 1), &res);
        for (int el = 0; el < DS_MEDDICC_COUNT; el++)
            if (res.present[el] && first[(size_t)d * DS_MEDDICC_COUNT + (size_t)el] < 0)
                first[(size_t)d * DS_MEDDICC_COUNT + (size_t)el] = s;
    }
}

static void fit_won(org_risks_t *o, const ds_org_ctx_t *oc, const ds_risk_rule_t *rules, PGresult *visits,
                    PGresult *pushes, PGresult *calls) {
    size_t nv = (size_t)PQntuples(visits), nw = (size_t)PQntuples(pushes);
    int *vs = ds_calloc(nv + 1, sizeof *vs), *pu = ds_calloc(nw + 1, sizeof *pu);
    double *vd = ds_calloc(nv + 1, sizeof *vd);
    int *first = ds_malloc((nw + 1) * DS_MEDDICC_COUNT * sizeof *first);
    int *first_call = ds_malloc((nw + 1) * sizeof *first_call);
    const char *names[DS_RISK_MAX_STAGES] = {0};
    for (size_t i = 0; i < nv; i++) {
        vs[i] = stage_of(o, oc, PQgetvalue(visits, (int)i, 0));
        vd[i] = strtod(PQgetvalue(visits, (int)i, 1), NULL);
    }
    ds_strindex_t byid;
    ds_strindex_init(&byid, nw + 1);
    for (size_t i = 0; i < nw; i++) {
        ds_strindex_add(&byid, PQgetvalue(pushes, (int)i, 0), (int)i);
        pu[i] = (int)strtol(PQgetvalue(pushes, (int)i, 1), NULL, 10);
    }
    scan_calls(o, oc, calls, &byid, nw, first, first_call);
    ds_risk_won_t won = {.n_won = nw,
                         .visit_stage = vs,
                         .visit_days = vd,
                         .n_visits = nv,
                         .pushes = pu,
                         .first_stage = first,
                         .first_call = first_call};
    memcpy(names, o->cfg.stage_names, sizeof names);
    ds_risk_config_fit(&o->cfg, rules, &won);
    memcpy(o->cfg.stage_names, names, sizeof names);
    ds_strindex_free(&byid);
    free(vs);
    free(vd);
    free(pu);
    free(first);
    free(first_call);
}

/* Stages the won deals did not name get the default stage names. */
static void default_stage_names(org_risks_t *o) {
    static const char *const names[] = {"prospecting", "qualification", "discovery",
                                        "demo",        "proposal",      "negotiation"};
    for (size_t s = 0; s < DS_ARRAY_SIZE(names); s++)
        if (!o->cfg.stage_names[s]) o->cfg.stage_names[s] = names[s];
}

static int load_org(ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *oc, org_risks_t **out, char *errstr,
                    size_t errsz) {
    const char *v[] = {org_id};
    const char *sql[] = {sql_rules, sql_visits, sql_pushes, sql_calls};
    PGresult *r[4] = {0};
    int rc = DS_OK;
    for (int q = 0; q < 4 && rc == 0; q++)
        rc = ds_pg_exec_params(pg, sql[q], 1, v, NULL, NULL, &r[q], errstr, errsz);
    if (rc == 0) {
        org_risks_t *o = ds_calloc(1, sizeof *o);
        ds_risk_rule_t rules[DS_RISK_RULE_COUNT];
        load_rules(o, r[0], rules);
        fit_won(o, oc, rules, r[1], r[2], r[3]);
        default_stage_names(o);
        ds_debug("org %s: risk thresholds from %zu won deals", org_id, o->cfg.n_won);
        *out = o;
    }
    for (int q = 0; q < 4; q++) PQclear(r[q]);
    return rc;
}

/* The cache's load callback: the org's stage order and lexicon (its own
 * copy: this may run on the refresher's thread, away from the worker's
 * org cache), then its rules and won deals. */
static int org_risks_load(ds_pg_t *pg, const char *org_id, void *ud, void **out, char *errstr, size_t errsz) {
    (void)ud;
    ds_org_ctx_t *oc = NULL;
    org_risks_t *o = NULL;
    int rc = ds_org_ctx_load(pg, org_id, false, &oc, errstr, errsz);
    if (rc == 0) rc = load_org(pg, org_id, oc, &o, errstr, errsz);
    ds_org_ctx_destroy(oc);
    *out = o;
    return rc;
}

deal_risks_cache_t *deal_risks_cache_new(int ttl_ms, const char *refresh_url) {
    deal_risks_cache_t *c = ds_calloc(1, sizeof *c);
    ds_refresh_def_t def = {
        .ttl_ms = ttl_ms, .load = org_risks_load, .free_value = org_risks_free, .what = "risk thresholds"};
    c->orgs = refresh_url ? ds_refresh_cache_new_refreshing(&def, refresh_url, "dealscore-risk-thresholds")
                          : ds_refresh_cache_new(&def);
    return c;
}

void deal_risks_cache_destroy(deal_risks_cache_t *c) {
    if (!c) return;
    ds_refresh_cache_destroy(c->orgs);
    free(c);
}

void deal_risks_cache_invalidate(deal_risks_cache_t *c, const char *org_id) {
    ds_refresh_cache_invalidate(c->orgs, org_id);
}

void deal_risks_cache_await_refreshes(deal_risks_cache_t *c) { ds_refresh_cache_await_refreshes(c->orgs); }

int deal_risks_config(deal_risks_cache_t *c, ds_pg_t *pg, const char *org_id, const ds_risk_config_t **out,
                      char *errstr, size_t errstr_size) {
    void *o = NULL;
    int rc = ds_refresh_cache_get(c->orgs, pg, org_id, &o, errstr, errstr_size);
    if (rc == 0) *out = &((org_risks_t *)o)->cfg;
    return rc;
}

/* ---- the batch's deals ---------------------------------------------------------- */

/* Each risk's what-if: the org's model and calibration on the resolved
 * vector. The stage prior reads only the stage, which no resolution
 * changes: its what-if is the score itself. */
static int what_ifs(const scorer_org_t *so, const ds_risk_config_t *cfg, const scoring_item_t *it,
                    ds_risk_t *risks, size_t nr, char *errstr, size_t errsz) {
    double resolved[DS_FEATURE_COUNT];
    float *x = so->model ? ds_malloc(nr * so->nf * sizeof *x) : NULL;
    for (size_t k = 0; k < nr; k++) {
        risks[k].what_if = it->score.proba;
        if (!x) continue;
        ds_risk_resolved(cfg, &risks[k], it->values, resolved);
        for (size_t j = 0; j < so->nf; j++) x[k * so->nf + j] = (float)resolved[so->map[j]];
    }
    int rc = DS_OK;
    if (x && nr) {
        double *margin = ds_malloc(nr * sizeof *margin);
        rc = ds_model_predict_margin(so->model, x, nr, margin, errstr, errsz);
        for (size_t k = 0; rc == 0 && k < nr; k++) {
            ds_risk_resolved(cfg, &risks[k], it->values, resolved);
            /* A resolution no model feature sees keeps the score exactly. */
            if (memcmp(resolved, it->values, sizeof resolved) != 0)
                risks[k].what_if = ds_calib_apply(so->calib, margin[k]);
        }
        free(margin);
    }
    free(x);
    return rc == 0 ? DS_OK : DS_EFATAL;
}

static void add_row(deal_risks_batch_t *b, const scoring_item_t *it, const ds_risk_t *risks, size_t nr,
                    ds_sb_t *js) {
    ds_pgarray_uuid(&b->cols[0], it->org_id);
    ds_pgarray_uuid(&b->cols[1], it->opp_id);
    if (it->account_id)
        ds_pgarray_uuid(&b->cols[2], it->account_id);
    else
        ds_pgarray_null(&b->cols[2]);
    ds_pgarray_timestamptz(&b->cols[3], it->as_of_us);
    ds_pgarray_text(&b->cols[4], it->version, strlen(it->version));
    ds_pgarray_float8(&b->cols[5], it->score.proba);
    js->len = 0;
    ds_risks_write(js, risks, nr, it->score.proba);
    ds_pgarray_jsonb(&b->cols[6], js->p, js->len);
    b->n_open++;
}

static void batch_begin(deal_risks_batch_t *b) {
    static const uint32_t oids[DEAL_RISKS_COLS] = {
        DS_OID_UUID, DS_OID_UUID, DS_OID_UUID, DS_OID_TIMESTAMPTZ, DS_OID_TEXT, DS_OID_FLOAT8, DS_OID_JSONB};
    memset(b, 0, sizeof *b);
    for (int c = 0; c < DEAL_RISKS_COLS; c++) ds_pgarray_begin(&b->cols[c], oids[c]);
    ds_pgarray_begin(&b->closed, DS_OID_UUID);
}

/* The risks of one open deal into the batch. */
static int deal_row(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, deal_risks_cache_t *cache,
                    const scoring_item_t *it, deal_risks_batch_t *out, ds_sb_t *js, char *errstr,
                    size_t errsz) {
    const ds_risk_config_t *cfg = NULL;
    const ds_org_ctx_t *oc = NULL;
    const scorer_org_t *so = NULL;
    int rc = deal_risks_config(cache, pg, it->org_id, &cfg, errstr, errsz);
    if (rc == 0) rc = ds_org_cache_get(orgs, pg, it->org_id, &oc, errstr, errsz);
    if (rc == 0) rc = scorer_get(scorer, pg, it->org_id, oc, &so, errstr, errsz);
    if (rc != 0) return rc;
    ds_risk_t risks[DS_RISK_MAX];
    size_t nr = ds_risks_eval(cfg, it->values, risks);
    rc = what_ifs(so, cfg, it, risks, nr, errstr, errsz);
    if (rc != 0) return rc;
    ds_risks_rank(risks, nr);
    add_row(out, it, risks, nr, js);
    return DS_OK;
}

int deal_risks_build(ds_pg_t *pg, ds_org_cache_t *orgs, scorer_t *scorer, deal_risks_cache_t *cache,
                     const scoring_item_t *items, size_t n, deal_risks_batch_t *out, char *errstr,
                     size_t errsz) {
    batch_begin(out);
    size_t written = 0;
    for (size_t i = 0; i < n; i++) written += !items[i].unchanged;
    if (written == 0) return DS_OK;
    int rc = DS_OK;
    ds_sb_t js = {0};
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (items[i].unchanged) continue; /* its row stays that of its last written score */
        /* The outcome every scoring path read with the deal (no path scores
         * a placeholder); a deal deleted since gets no row (the write's
         * check). */
        if (items[i].outcome != DS_OUTCOME_OPEN) {
            ds_pgarray_uuid(&out->closed, items[i].opp_id);
            out->n_closed++;
            continue;
        }
        rc = deal_row(pg, orgs, scorer, cache, &items[i], out, &js, errstr, errsz);
    }
    free(js.p);
    return rc;
}

static const char *sql_forget = "delete from public.deal_risks where opportunity_id = any($1::uuid[])";

void deal_risks_params(deal_risks_batch_t *b, const char **values, int *lengths, int *formats) {
    ds_pgarray_params(b->cols, DEAL_RISKS_COLS, values, lengths, formats);
}

void deal_risks_add_forget(deal_risks_batch_t *b, ds_pg_batch_t *pb) {
    if (!b->n_closed) return;
    ds_pgarray_params(&b->closed, 1, &b->closed_value, &b->closed_length, &b->closed_format);
    ds_pg_batch_add_params_ref(pb, sql_forget, 1, &b->closed_value, &b->closed_length, &b->closed_format,
                               NULL);
}

void deal_risks_batch_free(deal_risks_batch_t *b) {
    for (int c = 0; c < DEAL_RISKS_COLS; c++) ds_pgarray_free(&b->cols[c]);
    ds_pgarray_free(&b->closed);
    memset(b, 0, sizeof *b);
}
