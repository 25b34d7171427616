/* Model registry cache and scoring. */
#include "scorer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/sb.h"
#include "base/log.h"
#include "base/ttlcache.h"
#include "deal_risks.h"

struct scorer_s {
    ds_ttlcache_t *orgs;       /* org id -> scorer_org_t */
    deal_risks_cache_t *risks; /* the orgs' risk rules and thresholds */
    int prior_min_closed;
    scorer_stats_t stats;
};

/* Frees a scorer_org_t (the cache's free callback). */
static void org_free(void *p) {
    scorer_org_t *o = p;
    if (!o) return;
    ds_model_destroy(o->model);
    ds_calib_destroy(o->calib);
    free(o->map);
    free(o->prior_key);
    free(o);
}

static scorer_t *scorer_with(int ttl_ms, int prior_min_closed, deal_risks_cache_t *risks) {
    scorer_t *s = ds_calloc(1, sizeof *s);
    s->orgs = ds_ttlcache_new(ttl_ms, org_free);
    s->risks = risks;
    s->prior_min_closed = prior_min_closed;
    return s;
}

scorer_t *scorer_new(int ttl_ms, int prior_min_closed) {
    return scorer_with(ttl_ms, prior_min_closed, deal_risks_cache_new(DEAL_RISKS_TTL_MS, NULL));
}

scorer_t *scorer_new_refreshing(int ttl_ms, int prior_min_closed, int risks_ttl_ms, const char *url) {
    return scorer_with(ttl_ms, prior_min_closed, deal_risks_cache_new(risks_ttl_ms, url));
}

void scorer_destroy(scorer_t *s) {
    if (!s) return;
    ds_ttlcache_destroy(s->orgs);
    deal_risks_cache_destroy(s->risks);
    free(s);
}

void scorer_invalidate(scorer_t *s, const char *org_id) {
    ds_ttlcache_invalidate(s->orgs, org_id);
    /* A new model was trained on newer won deals: so are the thresholds. */
    deal_risks_cache_invalidate(s->risks, org_id);
}

deal_risks_cache_t *scorer_risks(scorer_t *s) { return s->risks; }

scorer_stats_t scorer_stats(const scorer_t *s) { return s->stats; }

void scorer_register(ds_pg_t *pg) {
    ds_pg_add_statement(pg, "ds_active_version",
                        "select version, artifact is not null from public.models"
                        " where org_id = $1::uuid and status = 'active'",
                        1);
    ds_pg_add_statement(pg, "ds_active_model",
                        "select version, artifact, calibration::text from public.models"
                        " where org_id = $1::uuid and status = 'active'",
                        1);
    ds_pg_add_statement(
        pg, "ds_stage_reached",
        "select h.new_value, bool_or(o.outcome = 'won'), h.opportunity_id"
        " from public.opportunity_history h join public.opportunities o on o.id = h.opportunity_id"
        " where o.org_id = $1::uuid and o.outcome <> 'open' and h.field = 'stage'"
        " and h.new_value is not null"
        " group by h.opportunity_id, h.new_value order by h.opportunity_id",
        1);
    ds_pg_add_statement(pg, "ds_closed_deals_key",
                        "select count(*), count(*) filter (where outcome = 'won'),"
                        " coalesce(sum(extract(epoch from closed_at)), 0)"
                        " from public.opportunities where org_id = $1::uuid and outcome <> 'open'",
                        1);
    ds_pg_add_statement(
        pg, "ds_stage_ladder",
        "select stage, probability from dealscore_internal.stage_ladders where org_id = $1::uuid", 1);
}

/* The stage win rates of an org's closed deals: for every closed deal and
 * every stage it reached, (stage, won); p(stage) smoothed toward the org's
 * win rate (ds_stage_prior_fit). Sets *closed, *won_deals to the numbers
 * of closed and won deals. */
static ds_stage_prior_t *fit_history(const char *org_id, const ds_org_ctx_t *org, PGresult *r, int *closed,
                                     int *won_deals) {
    int n = PQntuples(r);
    int *stage = ds_calloc((size_t)n + 2, sizeof *stage);
    double *won = ds_calloc((size_t)n + 2, sizeof *won);
    /* One pseudo win and one pseudo loss keep the org rate away from 0 and 1
     * when an org has closed only a handful of deals. */
    stage[0] = stage[1] = -1;
    won[0] = 1;
    won[1] = 0;
    size_t k = 2;
    *closed = *won_deals = 0;
    for (int i = 0; i < n; i++) {
        stage[k] = org && org->stages ? ds_stage_list_index(org->stages, PQgetvalue(r, i, 0)) : -1;
        won[k] = PQgetvalue(r, i, 1)[0] == 't' ? 1.0 : 0.0;
        if (i == 0 || strcmp(PQgetvalue(r, i, 2), PQgetvalue(r, i - 1, 2)) != 0) {
            (*closed)++;
            *won_deals += won[k] == 1.0;
        }
        k++;
    }
    ds_stage_prior_t *sp = NULL;
    char err[256];
    if (ds_stage_prior_fit(stage, won, NULL, k, DS_STAGE_PRIOR_SMOOTHING, &sp, err, sizeof err) != 0) {
        ds_warn("org %s: could not fit the stage prior: %s", org_id, err);
        /* The two pseudo rows alone: an even prior. */
        ds_stage_prior_fit(stage, won, NULL, 2, DS_STAGE_PRIOR_SMOOTHING, &sp, err, sizeof err);
    }
    free(stage);
    free(won);
    return sp;
}

/* The org's ladder rows mapped onto its stage order (ds_ladder_set); a
 * stage the order no longer has, or a ladder that no longer rises, is
 * logged and the default ladder stands in. */
static void set_ladder(const char *org_id, const ds_stage_list_t *stages, size_t n_open, PGresult *r,
                       ds_ladder_t *out) {
    int n = PQntuples(r);
    ds_ladder_rung_t *rungs = ds_calloc((size_t)n + 1, sizeof *rungs);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        int idx = ds_stage_list_index(stages, PQgetvalue(r, i, 0));
        if (idx < 0 || (size_t)idx >= n_open) {
            ds_warn("org %s: ladder stage '%s' is not an open stage of the org; ignored", org_id,
                    PQgetvalue(r, i, 0));
            continue;
        }
        rungs[k++] = (ds_ladder_rung_t){idx, strtod(PQgetvalue(r, i, 1), NULL)};
    }
    char err[256];
    ds_ladder_default(n_open, out);
    if (k && ds_ladder_set(rungs, k, n_open, out, err, sizeof err) != 0) {
        ds_warn("org %s: the stage ladder is unusable (%s); using the default", org_id, err);
        ds_ladder_default(n_open, out);
    }
    free(rungs);
}

/* What an org's stage prior is fitted on, as text into *out: its closed
 * deals (their number, the won ones, the sum of their closing times; read
 * from the closed-deal index alone) and the stage order they are counted
 * in. A deal that closes, reopens or changes outcome changes it. */
static int prior_key(ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *org, char **out, char *errstr,
                     size_t errsz) {
    const char *v[] = {org_id};
    PGresult *r = NULL;
    int rc = ds_pg_exec_prepared(pg, "ds_closed_deals_key", 1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    ds_sb_t b = {0};
    ds_sb_printf(&b, "%s/%s/%s", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    PQclear(r);
    const char *name;
    int index = 0;
    for (size_t i = 0; org && org->stages && (name = ds_stage_list_at(org->stages, i, &index)); i++)
        ds_sb_printf(&b, "|%s=%d", name, index);
    *out = ds_sb_take(&b);
    return DS_OK;
}

/* The org's stage win rates once it has min_closed closed deals with wins
 * and losses among them. */
static int fit_prior(scorer_t *s, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *org, size_t n_open,
                     scorer_org_t *o, char *errstr, size_t errsz) {
    const char *v[] = {org_id};
    PGresult *r = NULL;
    int rc = ds_pg_exec_prepared(pg, "ds_stage_reached", 1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    s->stats.prior_fits++;
    int closed = 0, won = 0;
    ds_stage_prior_t *sp = fit_history(org_id, org, r, &closed, &won);
    PQclear(r);
    o->has_history = closed >= s->prior_min_closed && won > 0 && won < closed;
    if (o->has_history) {
        ds_ladder_from_stage_prior(sp, n_open, &o->history);
        o->history_rate = ds_stage_prior_org_rate(sp);
    }
    ds_stage_prior_destroy(sp);
    ds_info("org %s scores with its prior: %s (%d closed deals)", org_id,
            o->has_history ? DS_PRIOR_VERSION_HISTORY : "CRM probability, else ladder", closed);
    return DS_OK;
}

/* The cold-start chain: the org's stage win rates, kept from old's prior
 * while its closed deals are the same (prior_key), and its ladder. */
static int load_prior(scorer_t *s, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *org,
                      const scorer_org_t *old, scorer_org_t *o, char *errstr, size_t errsz) {
    const ds_stage_list_t *stages = org && org->stages ? org->stages : ds_stage_list_default();
    size_t n_open = (size_t)ds_stage_list_max_index(stages);
    int rc = prior_key(pg, org_id, org, &o->prior_key, errstr, errsz);
    if (rc != 0) return rc;
    if (old && !old->model && old->prior_key && strcmp(old->prior_key, o->prior_key) == 0) {
        o->has_history = old->has_history;
        o->history = old->history;
        o->history_rate = old->history_rate;
    } else if ((rc = fit_prior(s, pg, org_id, org, n_open, o, errstr, errsz)) != 0) {
        return rc;
    }
    const char *v[] = {org_id};
    PGresult *r = NULL;
    rc = ds_pg_exec_prepared(pg, "ds_stage_ladder", 1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    set_ladder(org_id, stages, n_open, r, &o->ladder);
    PQclear(r);
    return DS_OK;
}

/* The active model's artifact and calibration into o (o->model stays NULL
 * without one, or when the model is refused). */
static int load_model(scorer_t *s, ds_pg_t *pg, const char *org_id, const scorer_org_t *old, scorer_org_t *o,
                      char *errstr, size_t errsz) {
    const char *v[] = {org_id};
    PGresult *r = NULL;
    int rc = ds_pg_exec_prepared(pg, "ds_active_model", 1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 1)) {
        const char *version = PQgetvalue(r, 0, 0);
        s->stats.model_reads++;
        size_t blen = 0;
        unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &blen);
        char err[512];
        ds_model_t *m = NULL;
        int *map = NULL;
        ds_calib_t *cal = NULL;
        bool ok = bytes && ds_model_load(bytes, blen, 1, &m, err, sizeof err) == 0;
        if (ok) {
            const char *names[DS_FEATURE_COUNT];
            for (int i = 0; i < DS_FEATURE_COUNT; i++) names[i] = ds_feature_name(i);
            map = ds_calloc(ds_model_n_features(m), sizeof *map);
            ok = ds_model_feature_map(m, names, DS_FEATURE_COUNT, map, err, sizeof err) == 0;
        }
        if (ok && !PQgetisnull(r, 0, 2))
            ok = ds_calib_from_json(PQgetvalue(r, 0, 2), &cal, err, sizeof err) == 0;
        if (bytes) PQfreemem(bytes);
        if (!ok) {
            ds_error("refusing model %s of org %s: %s; keeping %s", version, org_id, err,
                     old ? old->version : "the prior");
            ds_model_destroy(m);
            free(map);
            ds_calib_destroy(cal);
        } else {
            o->model = m;
            o->map = map;
            o->nf = ds_model_n_features(m);
            o->calib = cal;
            snprintf(o->version, sizeof o->version, "%s", version);
            ds_info("org %s scores with model %s (%zu features)", org_id, version, o->nf);
        }
    }
    PQclear(r);
    return DS_OK;
}

/* Whether the org's active model is the one old scores with, by its
 * version alone: the artifact (hundreds of kB) is read only when it is not. */
static int same_model(ds_pg_t *pg, const char *org_id, const scorer_org_t *old, bool *same, char *errstr,
                      size_t errsz) {
    *same = false;
    if (!old || !old->model) return DS_OK;
    const char *v[] = {org_id};
    PGresult *r = NULL;
    int rc = ds_pg_exec_prepared(pg, "ds_active_version", 1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    *same =
        PQntuples(r) == 1 && PQgetvalue(r, 0, 1)[0] == 't' && strcmp(PQgetvalue(r, 0, 0), old->version) == 0;
    PQclear(r);
    return DS_OK;
}

/* The org's scorer into *out; 1 when old stays (the same model, or a
 * refused one), else 0 or a pg error class. */
static int load_org(scorer_t *s, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *org,
                    const scorer_org_t *old, scorer_org_t **out, char *errstr, size_t errsz) {
    bool same = false;
    int rc = same_model(pg, org_id, old, &same, errstr, errsz);
    if (rc != 0) return rc;
    if (same) return 1;
    scorer_org_t *o = ds_calloc(1, sizeof *o);
    snprintf(o->org_id, sizeof o->org_id, "%s", org_id);
    rc = load_model(s, pg, org_id, old, o, errstr, errsz);
    if (rc != 0) {
        free(o);
        return rc;
    }
    if (!o->model && old && old->model) {
        /* A refused model keeps the previous one. */
        free(o);
        return 1;
    }
    if (!o->model) {
        rc = load_prior(s, pg, org_id, org, old, o, errstr, errsz);
        if (rc != 0) {
            org_free(o);
            return rc;
        }
        snprintf(o->version, sizeof o->version, "prior");
    }
    *out = o;
    return DS_OK;
}

int scorer_get(scorer_t *s, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *org,
               const scorer_org_t **out, char *errstr, size_t errstr_size) {
    int64_t now = ds_mono_us();
    scorer_org_t *o = ds_ttlcache_get(s->orgs, org_id, now);
    if (o) {
        *out = o;
        return DS_OK;
    }
    scorer_org_t *old = ds_ttlcache_peek(s->orgs, org_id);
    int rc = load_org(s, pg, org_id, org, old, &o, errstr, errstr_size);
    if (rc == 1) { /* the same model, or a refused one: keep what the org had */
        ds_ttlcache_put(s->orgs, org_id, old, now);
        *out = old;
        return DS_OK;
    }
    if (rc != 0) return rc;
    ds_ttlcache_put(s->orgs, org_id, o, ds_mono_us());
    *out = o;
    return DS_OK;
}

void score_clear(score_t *s) {
    free(s->pos);
    free(s->neg);
    free(s->contribs);
    memset(s, 0, sizeof *s);
}

void score_drivers_write(ds_sb_t *b, const score_t *s) {
    ds_drivers_write(b, s->pos, s->n_pos, s->neg, s->n_neg);
}

static double logit(double p) {
    if (p < 1e-6) p = 1e-6;
    if (p > 1 - 1e-6) p = 1 - 1e-6;
    return log(p / (1 - p));
}

/* A prior's explanation: the bias is the source's baseline (the org's win
 * rate, or the ladder's mean rung) and the stage (or the CRM's probability)
 * moves it to the prior. */
static void score_prior(const scorer_org_t *o, const double *values, const score_input_t *in, score_t *out) {
    ds_prior_chain_t chain = {o->has_history ? &o->history : NULL, o->history_rate, &o->ladder};
    ds_prior_input_t pin = {values[DS_F_STAGE_INDEX], in ? in->crm_probability : NAN,
                            in ? in->outcome : DS_OUTCOME_OPEN};
    ds_prior_score_t ps;
    ds_prior_score(&chain, &pin, &ps);
    bool crm = ps.source == DS_PRIOR_CRM;
    const char *name = crm ? DS_PRIOR_CRM_FEATURE : ds_feature_name(DS_F_STAGE_INDEX);
    double bias = logit(ps.baseline), c = logit(ps.p) - bias;
    out->proba = ps.p;
    out->margin = logit(ps.p);
    out->is_prior = true;
    out->version = ds_prior_version(ps.source);
    out->contribs = ds_malloc(2 * sizeof *out->contribs);
    out->contribs[0] = (ds_named_contrib_t){name, c};
    out->contribs[1] = (ds_named_contrib_t){DS_CONTRIB_BIAS_NAME, bias};
    out->n_contribs = 2;
    ds_driver_t d = {.feature = crm ? -1 : DS_F_STAGE_INDEX,
                     .name = name,
                     .label = crm ? "CRM stage probability" : ds_feature_label(DS_F_STAGE_INDEX),
                     .value = crm ? pin.crm_probability : pin.stage_index,
                     .contribution = c,
                     .pp = 100.0 * (ps.p - ps.baseline)};
    if (c > 0) {
        out->pos = ds_malloc(sizeof *out->pos);
        out->pos[0] = d;
        out->n_pos = 1;
    } else if (c < 0) {
        out->neg = ds_malloc(sizeof *out->neg);
        out->neg[0] = d;
        out->n_neg = 1;
    }
}

int scorer_score(const scorer_org_t *o, const double *values, const score_input_t *in, size_t n, int top_k,
                 score_t *out, char *errstr, size_t errstr_size) {
    memset(out, 0, n * sizeof *out);
    if (!o->model) {
        for (size_t r = 0; r < n; r++)
            score_prior(o, values + r * DS_FEATURE_COUNT, in ? &in[r] : NULL, &out[r]);
        return DS_OK;
    }
    size_t nf = o->nf;
    float *x = ds_malloc(n * nf * sizeof *x);
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < nf; j++) x[r * nf + j] = (float)values[r * DS_FEATURE_COUNT + o->map[j]];
    float *contribs = ds_malloc(n * (nf + 1) * sizeof *contribs);
    int rc = ds_model_contribs(o->model, x, n, contribs, errstr, errstr_size);
    if (rc != 0) {
        free(x);
        free(contribs);
        return DS_EFATAL;
    }
    size_t nnames = 0;
    const char *const *names = ds_model_feature_names(o->model, &nnames);
    size_t k = (size_t)top_k;
    for (size_t r = 0; r < n; r++) {
        const float *row = contribs + r * (nf + 1);
        double margin = 0;
        for (size_t j = 0; j <= nf; j++) margin += row[j];
        out[r].margin = margin;
        out[r].proba = ds_calib_apply(o->calib, margin);
        ds_driver_t *pos = ds_calloc(k + 1, sizeof *pos), *neg = ds_calloc(k + 1, sizeof *neg);
        size_t np = 0, nn = 0;
        ds_drivers_top(row, nf, x + r * nf, names, o->calib, k, pos, &np, neg, &nn);
        out[r].pos = pos;
        out[r].n_pos = np;
        out[r].neg = neg;
        out[r].n_neg = nn;
        ds_named_contrib_t *nc = ds_malloc((nf + 1) * sizeof *nc);
        for (size_t j = 0; j < nf; j++) nc[j] = (ds_named_contrib_t){names[j], row[j]};
        nc[nf] = (ds_named_contrib_t){DS_CONTRIB_BIAS_NAME, row[nf]};
        out[r].contribs = nc;
        out[r].n_contribs = nf + 1;
    }
    free(x);
    free(contribs);
    return DS_OK;
}

void scorer_change_named(const ds_named_contrib_t *prev, size_t n_prev, const ds_named_contrib_t *cur,
                         size_t n_cur, int top_k, ds_contrib_change_t **out, size_t *n_out) {
    ds_contrib_change_t *ch = ds_calloc((size_t)top_k + 1, sizeof *ch);
    size_t n = 0, kept = 0;
    if (ds_drivers_diff(prev, n_prev, cur, n_cur, (size_t)top_k, ch, &n) == 0) {
        /* Contributions are stored with 9 significant digits: changes
         * below that are rounding, not movement. */
        for (size_t i = 0; i < n; i++)
            if (fabs(ch[i].change) >= 1e-6) ch[kept++] = ch[i];
    }
    if (kept == 0) {
        free(ch);
        ch = NULL;
    }
    *out = ch;
    *n_out = kept;
}
