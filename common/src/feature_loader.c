/* Batch loader for the feature engine. Strings in the raw structs point into
 * the PGresults the batch keeps until it is destroyed. */
#include "dealscore/feature_loader.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dealscore/common.h"
#include "dealscore/log.h"

#define US(col) "(extract(epoch from " col ") * 1000000)::bigint"

/* ---- org cache ------------------------------------------------------------ */

struct ds_org_cache_s {
    ds_org_ctx_t **orgs;
    size_t n, cap;
    int ttl_ms;
};

ds_org_cache_t *ds_org_cache_new(int ttl_ms) {
    ds_org_cache_t *c = ds_calloc(1, sizeof *c);
    c->ttl_ms = ttl_ms;
    return c;
}

static void org_ctx_free(ds_org_ctx_t *o) {
    if (!o) return;
    ds_winrate_ctx_destroy(o->winrate);
    if (o->lexicon_owned) ds_meddicc_lexicon_destroy((ds_meddicc_lexicon_t *)o->lexicon);
    ds_stage_list_destroy(o->stages);
    free(o);
}

void ds_org_cache_clear(ds_org_cache_t *c) {
    for (size_t i = 0; i < c->n; i++) org_ctx_free(c->orgs[i]);
    c->n = 0;
}

void ds_org_cache_destroy(ds_org_cache_t *c) {
    if (!c) return;
    ds_org_cache_clear(c);
    free(c->orgs);
    free(c);
}

static int64_t col_i64(const PGresult *r, int row, int col, int64_t none) {
    if (PQgetisnull(r, row, col)) return none;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *col_str(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static const char *const default_stages[] = {"prospecting", "qualification", "discovery", "demo",
                                             "proposal",    "negotiation",   "closed_won", "closed_lost"};
static const int default_stage_index[] = {0, 1, 2, 3, 4, 5, 6, 6};

static bool is_closed_stage(const char *name, json_t *outcomes) {
    json_t *o = outcomes ? json_object_get(outcomes, name) : NULL;
    if (json_is_string(o)) return strcmp(json_string_value(o), "open") != 0;
    char norm[64];
    size_t k = 0;
    for (const char *p = name; *p && k + 1 < sizeof norm; p++)
        norm[k++] = (*p == ' ' || *p == '-') ? '_' : (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    norm[k] = '\0';
    return !strcmp(norm, "closed_won") || !strcmp(norm, "closed_lost");
}

/* The org's stage order (open stages in order, closed ones sharing the next
 * index), then the default stages the org's list does not name. */
static ds_stage_list_t *build_stages(json_t *order, json_t *outcomes) {
    ds_stage_def_t defs[128];
    size_t n = 0, open = 0;
    char err[256];
    if (json_is_array(order)) {
        size_t i;
        json_t *v;
        json_array_foreach(order, i, v) {
            if (!json_is_string(v) || n >= 64 || is_closed_stage(json_string_value(v), outcomes)) continue;
            defs[n].name = json_string_value(v);
            defs[n++].index = (int)open++;
        }
        json_array_foreach(order, i, v) {
            if (!json_is_string(v) || n >= 64 || !is_closed_stage(json_string_value(v), outcomes)) continue;
            defs[n].name = json_string_value(v);
            defs[n++].index = (int)open;
        }
    }
    ds_stage_list_t *org = NULL;
    if (n && ds_stage_list_new(defs, n, &org, err, sizeof err) != 0) {
        ds_warn("the org's stage_order is unusable (%s); using the default", err);
        n = 0;
        org = NULL;
    }
    for (size_t i = 0; i < DS_ARRAY_SIZE(default_stages); i++) {
        if (org && ds_stage_list_index(org, default_stages[i]) >= 0) continue;
        defs[n].name = default_stages[i];
        defs[n++].index = default_stage_index[i];
    }
    ds_stage_list_destroy(org);
    ds_stage_list_t *all = NULL;
    if (ds_stage_list_new(defs, n, &all, err, sizeof err) != 0) {
        ds_warn("could not build the stage list: %s", err);
        return NULL;
    }
    return all;
}

static int load_org(ds_pg_t *pg, const char *org_id, ds_org_ctx_t **out, char *errstr, size_t errsz) {
    const char *v[] = {org_id};
    PGresult *r = NULL;
    int rc = ds_pg_exec_params(pg,
                               "select coalesce(account_id::text, ''), coalesce(owner_id, ''), " US("closed_at")
                               ", outcome = 'won' from public.opportunities"
                               " where org_id = $1::uuid and outcome <> 'open' and closed_at is not null"
                               " and not placeholder",
                               1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    ds_org_ctx_t *o = ds_calloc(1, sizeof *o);
    snprintf(o->org_id, sizeof o->org_id, "%s", org_id);
    int nd = PQntuples(r);
    ds_closed_deal_t *deals = ds_calloc((size_t)nd + 1, sizeof *deals);
    for (int i = 0; i < nd; i++) {
        deals[i].account_id = PQgetvalue(r, i, 0);
        deals[i].owner_id = PQgetvalue(r, i, 1);
        deals[i].closed_at_us = col_i64(r, i, 2, DS_TIME_NONE);
        deals[i].won = PQgetvalue(r, i, 3)[0] == 't';
    }
    ds_winrate_ctx_new(deals, (size_t)nd, DS_WINRATE_SMOOTHING, &o->winrate);
    free(deals);
    PQclear(r);

    rc = ds_pg_exec_params(pg,
                           "select element, phrase, weight = 0 from public.meddicc_lexicon"
                           " where org_id is null or org_id = $1::uuid order by org_id nulls first, element, phrase",
                           1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) {
        org_ctx_free(o);
        return rc;
    }
    int nl = PQntuples(r);
    o->lexicon = ds_meddicc_lexicon_default();
    if (nl > 0) {
        ds_meddicc_phrase_t *rows = ds_calloc((size_t)nl, sizeof *rows);
        for (int i = 0; i < nl; i++) {
            rows[i].element = PQgetvalue(r, i, 0);
            rows[i].phrase = PQgetvalue(r, i, 1);
            rows[i].disabled = PQgetvalue(r, i, 2)[0] == 't';
        }
        ds_meddicc_lexicon_t *lex = NULL;
        char lerr[256];
        if (ds_meddicc_lexicon_new(rows, (size_t)nl, &lex, lerr, sizeof lerr) == 0) {
            o->lexicon = lex;
            o->lexicon_owned = true;
        } else {
            ds_warn("org %s: MEDDICC lexicon rejected (%s); using the default", org_id, lerr);
        }
        free(rows);
    }
    PQclear(r);

    rc = ds_pg_exec_params(pg, "select settings->'stage_order', settings->'stage_outcome' from public.orgs where id = $1::uuid",
                           1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) {
        org_ctx_free(o);
        return rc;
    }
    json_t *order = NULL, *outcomes = NULL;
    if (PQntuples(r) == 1) {
        if (!PQgetisnull(r, 0, 0)) order = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
        if (!PQgetisnull(r, 0, 1)) outcomes = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    }
    PQclear(r);
    o->stages = build_stages(order, outcomes);
    json_decref(order);
    json_decref(outcomes);
    o->loaded_mono_us = ds_mono_us();
    *out = o;
    return DS_OK;
}

int ds_org_cache_get(ds_org_cache_t *c, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t **out,
                     char *errstr, size_t errstr_size) {
    size_t i;
    for (i = 0; i < c->n; i++)
        if (strcmp(c->orgs[i]->org_id, org_id) == 0) break;
    if (i < c->n && ds_mono_us() - c->orgs[i]->loaded_mono_us < (int64_t)c->ttl_ms * 1000) {
        *out = c->orgs[i];
        return DS_OK;
    }
    ds_org_ctx_t *o = NULL;
    int rc = load_org(pg, org_id, &o, errstr, errstr_size);
    if (rc != 0) return rc;
    if (i < c->n) {
        org_ctx_free(c->orgs[i]);
        c->orgs[i] = o;
    } else {
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 8;
            c->orgs = ds_realloc(c->orgs, c->cap * sizeof *c->orgs);
        }
        c->orgs[c->n++] = o;
    }
    *out = o;
    return DS_OK;
}

/* ---- opportunity batches ---------------------------------------------------- */

typedef struct {
    ds_opp_raw_t raw;
    const char *org_id;
    bool placeholder;
} opp_entry_t;

struct ds_opp_batch_s {
    PGresult *res[4];
    opp_entry_t *opps;
    size_t n;
    ds_opp_history_t *hist;
    ds_interaction_t *inter;
    ds_transcript_t *trans;
    /* id -> index, open addressing */
    int *slots;
    size_t nslots;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int ds_opp_batch_find(const ds_opp_batch_t *b, const char *opp_id) {
    if (!b->nslots) return -1;
    size_t mask = b->nslots - 1;
    for (size_t i = hash_str(opp_id) & mask;; i = (i + 1) & mask) {
        int k = b->slots[i];
        if (k < 0) return -1;
        if (strcmp(b->opps[k].raw.opportunity_id, opp_id) == 0) return k;
    }
}

size_t ds_opp_batch_count(const ds_opp_batch_t *b) { return b->n; }
ds_opp_raw_t *ds_opp_batch_raw(ds_opp_batch_t *b, size_t i) { return &b->opps[i].raw; }
const char *ds_opp_batch_org(const ds_opp_batch_t *b, size_t i) { return b->opps[i].org_id; }
bool ds_opp_batch_placeholder(const ds_opp_batch_t *b, size_t i) { return b->opps[i].placeholder; }

void ds_opp_batch_destroy(ds_opp_batch_t *b) {
    if (!b) return;
    for (int i = 0; i < 4; i++) PQclear(b->res[i]);
    free(b->opps);
    free(b->hist);
    free(b->inter);
    free(b->trans);
    free(b->slots);
    free(b);
}

/* Groups rows (already sorted by their opportunity id column 0) onto their
 * opportunities: sets *start and *count per opportunity through the
 * callback-free pattern of two passes. */
static int row_owner(const ds_opp_batch_t *b, const PGresult *r, int row) {
    return ds_opp_batch_find(b, PQgetvalue(r, row, 0));
}

int ds_opp_batch_load(ds_pg_t *pg, const char *const *opp_ids, size_t n, ds_opp_batch_t **out,
                      char *errstr, size_t errstr_size) {
    ds_opp_batch_t *b = ds_calloc(1, sizeof *b);
    char *arr = ds_pg_array_text(opp_ids, n);
    const char *v[] = {arr};
    int rc;
    static const char *sql[4] = {
        "select o.id, o.org_id, o.external_id, o.account_id, o.owner_id, " US("o.created_at") ","
        " o.stage, o.amount, " US("o.close_date") ", o.product_category, o.persona,"
        " a.industry, a.region, a.size_band, o.placeholder, o.outcome, " US("o.closed_at")
        " from public.opportunities o left join public.accounts a on a.id = o.account_id"
        " where o.id = any($1::uuid[])",
        "select opportunity_id, field, old_value, new_value, " US("changed_at")
        " from public.opportunity_history where opportunity_id = any($1::uuid[])"
        " order by opportunity_id, changed_at, id",
        "select opportunity_id, type, " US("occurred_at") ", duration_min"
        " from public.interactions where opportunity_id = any($1::uuid[]) order by opportunity_id, occurred_at",
        "select opportunity_id, id, " US("occurred_at") ", text"
        " from public.transcripts where opportunity_id = any($1::uuid[]) order by opportunity_id, occurred_at",
    };
    for (int q = 0; q < 4; q++) {
        rc = ds_pg_exec_params(pg, sql[q], 1, v, NULL, NULL, &b->res[q], errstr, errstr_size);
        if (rc != 0) {
            free(arr);
            ds_opp_batch_destroy(b);
            return rc;
        }
    }
    free(arr);
    PGresult *r = b->res[0];
    b->n = (size_t)PQntuples(r);
    b->opps = ds_calloc(b->n + 1, sizeof *b->opps);
    b->nslots = 16;
    while (b->nslots < b->n * 2) b->nslots *= 2;
    b->slots = ds_malloc(b->nslots * sizeof(int));
    for (size_t i = 0; i < b->nslots; i++) b->slots[i] = -1;
    for (size_t i = 0; i < b->n; i++) {
        opp_entry_t *e = &b->opps[i];
        ds_opp_raw_init(&e->raw);
        int row = (int)i;
        e->raw.opportunity_id = PQgetvalue(r, row, 0);
        e->org_id = PQgetvalue(r, row, 1);
        e->raw.external_id = PQgetvalue(r, row, 2);
        e->raw.account_id = col_str(r, row, 3);
        e->raw.owner_id = col_str(r, row, 4);
        e->raw.created_at_us = col_i64(r, row, 5, DS_TIME_NONE);
        e->raw.stage = col_str(r, row, 6);
        e->raw.amount = PQgetisnull(r, row, 7) ? NAN : strtod(PQgetvalue(r, row, 7), NULL);
        e->raw.close_date_us = col_i64(r, row, 8, DS_TIME_NONE);
        e->raw.product_category = col_str(r, row, 9);
        e->raw.persona = col_str(r, row, 10);
        e->raw.industry = col_str(r, row, 11);
        e->raw.region = col_str(r, row, 12);
        e->raw.size_band = col_str(r, row, 13);
        e->placeholder = PQgetvalue(r, row, 14)[0] == 't';
        const char *oc = PQgetvalue(r, row, 15);
        e->raw.outcome = !strcmp(oc, "won") ? DS_OUTCOME_WON : !strcmp(oc, "lost") ? DS_OUTCOME_LOST : DS_OUTCOME_OPEN;
        e->raw.closed_at_us = col_i64(r, row, 16, DS_TIME_NONE);
        size_t mask = b->nslots - 1;
        size_t s = hash_str(e->raw.opportunity_id) & mask;
        while (b->slots[s] >= 0) s = (s + 1) & mask;
        b->slots[s] = (int)i;
    }
    /* History. Rows are sorted by opportunity, so each one's rows are contiguous. */
    r = b->res[1];
    int nh = PQntuples(r);
    b->hist = ds_calloc((size_t)nh + 1, sizeof *b->hist);
    for (int row = 0; row < nh; row++) {
        int k = row_owner(b, r, row);
        if (k < 0) continue;
        ds_opp_raw_t *raw = &b->opps[k].raw;
        ds_opp_history_t *h = &b->hist[row];
        if (ds_opp_history_set(h, PQgetvalue(r, row, 1), col_str(r, row, 2), col_str(r, row, 3),
                               col_i64(r, row, 4, DS_TIME_NONE)) != 0)
            h->field = DS_HIST_IGNORED;
        if (!raw->history) raw->history = h;
        raw->n_history++;
    }
    r = b->res[2];
    int ni = PQntuples(r);
    b->inter = ds_calloc((size_t)ni + 1, sizeof *b->inter);
    for (int row = 0; row < ni; row++) {
        int k = row_owner(b, r, row);
        if (k < 0) continue;
        ds_opp_raw_t *raw = &b->opps[k].raw;
        ds_interaction_t *it = &b->inter[row];
        it->type = ds_interaction_type_parse(PQgetvalue(r, row, 1));
        it->occurred_at_us = col_i64(r, row, 2, DS_TIME_NONE);
        it->duration_min = PQgetisnull(r, row, 3) ? NAN : strtod(PQgetvalue(r, row, 3), NULL);
        if (!raw->interactions) raw->interactions = it;
        raw->n_interactions++;
    }
    r = b->res[3];
    int nt = PQntuples(r);
    b->trans = ds_calloc((size_t)nt + 1, sizeof *b->trans);
    for (int row = 0; row < nt; row++) {
        int k = row_owner(b, r, row);
        if (k < 0) continue;
        ds_opp_raw_t *raw = &b->opps[k].raw;
        ds_transcript_t *t = &b->trans[row];
        t->id = PQgetvalue(r, row, 1);
        t->occurred_at_us = col_i64(r, row, 2, DS_TIME_NONE);
        t->text = PQgetvalue(r, row, 3);
        t->text_len = (size_t)PQgetlength(r, row, 3);
        if (!raw->transcripts) raw->transcripts = t;
        raw->n_transcripts++;
    }
    *out = b;
    return DS_OK;
}
