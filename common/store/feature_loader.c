/* Batch loader for the feature engine. Strings in the raw structs point into
 * the PGresults the batch keeps until it is destroyed. */
#include "store/feature_loader.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/common.h"
#include "base/log.h"
#include "base/strindex.h"
#include "store/refresh_cache.h"

#define US(col) "(extract(epoch from " col ") * 1000000)::bigint"

/* ---- org cache ------------------------------------------------------------ */

struct ds_org_cache_s {
    ds_refresh_cache_t *orgs; /* org id -> ds_org_ctx_t */
};

void ds_org_ctx_destroy(ds_org_ctx_t *o) {
    if (!o) return;
    ds_winrate_ctx_destroy(o->winrate);
    if (o->lexicon_owned) ds_meddicc_lexicon_destroy((ds_meddicc_lexicon_t *)o->lexicon);
    ds_stage_list_destroy(o->stages);
    free(o);
}

/* The cache's free callback. */
static void org_ctx_free(void *p) { ds_org_ctx_destroy(p); }

/* The cache's load callback: the context, with its closed deals when ud is
 * non-NULL. */
static int org_ctx_load(ds_pg_t *pg, const char *org_id, void *ud, void **out, char *errstr, size_t errsz) {
    ds_org_ctx_t *o = NULL;
    int rc = ds_org_ctx_load(pg, org_id, ud != NULL, &o, errstr, errsz);
    *out = o;
    return rc;
}

static ds_refresh_def_t org_cache_def(int ttl_ms, bool with_closed) {
    static char closed; /* its address says "with closed deals" */
    return (ds_refresh_def_t){.ttl_ms = ttl_ms,
                              .load = org_ctx_load,
                              .free_value = org_ctx_free,
                              .ud = with_closed ? &closed : NULL,
                              .what = "context"};
}

ds_org_cache_t *ds_org_cache_new(int ttl_ms) {
    ds_org_cache_t *c = ds_calloc(1, sizeof *c);
    ds_refresh_def_t def = org_cache_def(ttl_ms, true);
    c->orgs = ds_refresh_cache_new(&def);
    return c;
}

ds_org_cache_t *ds_org_cache_new_refreshing(int ttl_ms, const char *url, bool with_closed) {
    ds_org_cache_t *c = ds_calloc(1, sizeof *c);
    ds_refresh_def_t def = org_cache_def(ttl_ms, with_closed);
    c->orgs = ds_refresh_cache_new_refreshing(&def, url, "dealscore-org-context");
    return c;
}

void ds_org_cache_clear(ds_org_cache_t *c) { ds_refresh_cache_invalidate(c->orgs, NULL); }

void ds_org_cache_await_refreshes(ds_org_cache_t *c) { ds_refresh_cache_await_refreshes(c->orgs); }

void ds_org_cache_destroy(ds_org_cache_t *c) {
    if (!c) return;
    ds_refresh_cache_destroy(c->orgs);
    free(c);
}

int ds_org_cache_get(ds_org_cache_t *c, ds_pg_t *pg, const char *org_id, const ds_org_ctx_t **out,
                     char *errstr, size_t errstr_size) {
    void *o = NULL;
    int rc = ds_refresh_cache_get(c->orgs, pg, org_id, &o, errstr, errstr_size);
    if (rc == 0) *out = o;
    return rc;
}

static int64_t col_i64(const PGresult *r, int row, int col, int64_t none) {
    if (PQgetisnull(r, row, col)) return none;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *const default_stages[] = {"prospecting", "qualification", "discovery",  "demo",
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

/* A closed, non-placeholder deal (opportunities o). */
#define CLOSED_DEAL "o.outcome <> 'open' and o.closed_at is not null and not o.placeholder"

/* The org's closed deals in id order (the id last), and their interactions
 * counted by type and outcome in the same order. The counts walk the
 * closed deals and reach each one's interactions through the
 * opportunity_id index (LATERAL ... OFFSET 0, as the loader's reads): a
 * join on the org's interactions let the planner, with statistics from
 * before an import, loop over all of them once per closed deal (8.9 s on
 * the demo's 1,330 closed deals, against 44 ms this way). */
#define CLOSED_AT_US US("o.closed_at")
#define CREATED_AT_US US("o.created_at")
static const char closed_deals_sql[] =
    "select coalesce(o.account_id::text, ''), coalesce(o.owner_id, ''), " CLOSED_AT_US ","
    " o.outcome = 'won', coalesce(a.industry, ''), coalesce(o.product_category, ''),"
    " coalesce(a.size_band, ''), o.amount::float8, " CREATED_AT_US ", o.id::text"
    " from public.opportunities o left join public.accounts a on a.id = o.account_id"
    " where o.org_id = $1::uuid and " CLOSED_DEAL " order by o.id";
static const char closed_activity_sql[] =
    "select o.id::text, i.type, coalesce(i.outcome, ''), count(*)"
    " from public.opportunities o cross join lateral (select type, outcome from public.interactions i"
    " where i.opportunity_id = o.id offset 0) i"
    " where o.org_id = $1::uuid and " CLOSED_DEAL " group by o.id, 2, 3 order by o.id";

/* Folds the interaction counts (opportunity id, type, outcome, count; in
 * id order like the deals' rows, id in column 9) into the deals. */
static void add_closed_activity(ds_closed_deal_t *deals, PGresult *r, PGresult *act) {
    int nd = PQntuples(r), na = PQntuples(act), d = 0;
    for (int i = 0; i < na; i++) {
        const char *id = PQgetvalue(act, i, 0);
        while (d < nd && strcmp(PQgetvalue(r, d, 9), id) < 0) d++;
        if (d == nd) break;
        if (strcmp(PQgetvalue(r, d, 9), id) != 0) continue;
        uint32_t n = (uint32_t)strtoul(PQgetvalue(act, i, 3), NULL, 10);
        deals[d].interactions += n;
        if (ds_interaction_type_parse(PQgetvalue(act, i, 1)) != DS_INTERACTION_EMAIL) continue;
        ds_interaction_answer_t ans = ds_interaction_answer_parse(PQgetvalue(act, i, 2));
        if (ans == DS_ANSWER_NONE) continue;
        deals[d].emails_asked += n;
        deals[d].emails_answered += ans == DS_ANSWER_YES ? n : 0;
    }
}

/* The org's closed deals into o->winrate. */
static int load_closed(ds_pg_t *pg, const char *org_id, ds_org_ctx_t *o, char *errstr, size_t errsz) {
    const char *v[] = {org_id};
    PGresult *r = NULL;
    int rc = ds_pg_exec_params(pg, closed_deals_sql, 1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    PGresult *act = NULL;
    rc = ds_pg_exec_params(pg, closed_activity_sql, 1, v, NULL, NULL, &act, errstr, errsz);
    if (rc != 0) {
        PQclear(r);
        return rc;
    }
    int nd = PQntuples(r);
    ds_closed_deal_t *deals = ds_calloc((size_t)nd + 1, sizeof *deals);
    for (int i = 0; i < nd; i++) {
        deals[i].account_id = PQgetvalue(r, i, 0);
        deals[i].owner_id = PQgetvalue(r, i, 1);
        deals[i].closed_at_us = col_i64(r, i, 2, DS_TIME_NONE);
        deals[i].won = PQgetvalue(r, i, 3)[0] == 't';
        deals[i].industry = PQgetvalue(r, i, 4);
        deals[i].product_category = PQgetvalue(r, i, 5);
        deals[i].size_band = PQgetvalue(r, i, 6);
        deals[i].amount = PQgetisnull(r, i, 7) ? NAN : strtod(PQgetvalue(r, i, 7), NULL);
        deals[i].created_at_us = col_i64(r, i, 8, DS_TIME_NONE);
        deals[i].has_activity = true;
    }
    add_closed_activity(deals, r, act);
    PQclear(act);
    ds_winrate_ctx_new(deals, (size_t)nd, DS_WINRATE_SMOOTHING, &o->winrate);
    free(deals);
    PQclear(r);
    return DS_OK;
}

/* The org's MEDDICC lexicon into o (the default when it has no rows). */
static int load_lexicon(ds_pg_t *pg, const char *org_id, ds_org_ctx_t *o, char *errstr, size_t errsz) {
    const char *v[] = {org_id};
    PGresult *r = NULL;
    int rc = ds_pg_exec_params(
        pg,
        "select element, phrase, weight = 0 from public.meddicc_lexicon"
        " where org_id is null or org_id = $1::uuid order by org_id nulls first, element, phrase",
        1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
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
    return DS_OK;
}

/* The org's stage order into o->stages. */
static int load_stages(ds_pg_t *pg, const char *org_id, ds_org_ctx_t *o, char *errstr, size_t errsz) {
    const char *v[] = {org_id};
    PGresult *r = NULL;
    int rc = ds_pg_exec_params(
        pg, "select settings->'stage_order', settings->'stage_outcome' from public.orgs where id = $1::uuid",
        1, v, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    json_t *order = NULL, *outcomes = NULL;
    if (PQntuples(r) == 1) {
        if (!PQgetisnull(r, 0, 0)) order = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
        if (!PQgetisnull(r, 0, 1)) outcomes = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    }
    PQclear(r);
    o->stages = build_stages(order, outcomes);
    json_decref(order);
    json_decref(outcomes);
    return DS_OK;
}

int ds_org_ctx_load(ds_pg_t *pg, const char *org_id, bool with_closed, ds_org_ctx_t **out, char *errstr,
                    size_t errstr_size) {
    ds_org_ctx_t *o = ds_calloc(1, sizeof *o);
    snprintf(o->org_id, sizeof o->org_id, "%s", org_id);
    int rc = with_closed ? load_closed(pg, org_id, o, errstr, errstr_size) : DS_OK;
    if (rc == 0) rc = load_lexicon(pg, org_id, o, errstr, errstr_size);
    if (rc == 0) rc = load_stages(pg, org_id, o, errstr, errstr_size);
    if (rc != 0) {
        ds_org_ctx_destroy(o);
        return rc;
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
    ds_strindex_t index; /* opportunity id -> its place in opps; keys NULL until built */
    size_t nids;         /* distinct ids asked for */
    bool sent;           /* ds_opp_batch_send done, ds_opp_batch_recv not yet */
};

int ds_opp_batch_find(const ds_opp_batch_t *b, const char *opp_id) {
    return b->index.keys ? ds_strindex_find(&b->index, opp_id) : -1;
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
    ds_strindex_free(&b->index);
    free(b);
}

/* ---- binary columns -------------------------------------------------------------
 *
 * The queries return binary results (resultFormat 1): timestamps arrive as
 * the server's int64 microseconds since 2000-01-01 and need no formatting on
 * the server nor parsing here, numbers as float8, text as its bytes. Every
 * column's type is checked once per result, so a schema change fails the
 * load with a message instead of misreading bytes. */

#define PG_OID_BOOL 16
#define PG_OID_INT8 20
#define PG_OID_TEXT 25
#define PG_OID_FLOAT8 701
#define PG_OID_DATE 1082
#define PG_OID_TIMESTAMPTZ 1184
#define PG_OID_INT8_ARRAY 1016
#define PG_OID_TEXT_ARRAY 1009
#define PG_OID_FLOAT8_ARRAY 1022
#define PG_OID_TIMESTAMPTZ_ARRAY 1185
/* 2000-01-01 minus 1970-01-01, the Postgres epoch in Unix time. */
#define PG_EPOCH_DAYS 10957
#define PG_EPOCH_US ((int64_t)PG_EPOCH_DAYS * DS_US_PER_DAY)

static uint64_t be64(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | u[i];
    return v;
}

static uint32_t be32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* Microseconds since the Unix epoch; NULL and +-infinity are DS_TIME_NONE. */
static int64_t bin_ts(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col)) return DS_TIME_NONE;
    int64_t v = (int64_t)be64(PQgetvalue(r, row, col));
    if (v == INT64_MAX || v == INT64_MIN) return DS_TIME_NONE;
    return v + PG_EPOCH_US;
}

/* A date as its midnight UTC (what extract(epoch from date) gives). */
static int64_t bin_date(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col)) return DS_TIME_NONE;
    int32_t d = (int32_t)be32(PQgetvalue(r, row, col));
    if (d == INT32_MAX || d == INT32_MIN) return DS_TIME_NONE;
    return ((int64_t)d + PG_EPOCH_DAYS) * DS_US_PER_DAY;
}

static double bin_f8(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col)) return NAN;
    uint64_t u = be64(PQgetvalue(r, row, col));
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static int64_t bin_i8(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? -1 : (int64_t)be64(PQgetvalue(r, row, col));
}

static bool bin_bool(const PGresult *r, int row, int col) {
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] != 0;
}

static int check_types(const PGresult *r, const unsigned *oids, int n, int q, char *errstr, size_t errsz) {
    if (PQnfields(r) != n) {
        snprintf(errstr, errsz, "loader query %d returned %d columns, not %d", q, PQnfields(r), n);
        return DS_EFATAL;
    }
    for (int c = 0; c < n; c++)
        if (PQftype(r, c) != oids[c] || PQfformat(r, c) != 1) {
            snprintf(errstr, errsz, "loader query %d: column %d has type oid %u, not %u", q, c,
                     (unsigned)PQftype(r, c), oids[c]);
            return DS_EFATAL;
        }
    return DS_OK;
}

/* Each query walks the id array (with its 1-based position n) and reaches
 * every table through its opportunity_id index: LATERAL ... OFFSET 0 keeps
 * the planner from turning that into a hash join over a scan of the whole
 * table, which it prefers for a few thousand ids and which costs a full read
 * of the table per batch once the tables are large. Child rows carry n
 * instead of the opportunity's UUID, so grouping them needs no lookup.
 * History and interactions (~6 and ~15 rows a deal) come as one row per
 * deal with a binary array per column (the aggregate keeps the planner on
 * the index as OFFSET 0 does): a 1M-deal rescore reads ~20M child rows,
 * and a row costs the server and libpq more than an array element. The
 * arrays of one row list the same rows in the same order (one aggregation
 * over one scan). A deal without rows has no row. Both reads are
 * index-only scans (covering indexes; the interaction's contact is a
 * column Postgres generates from its meta). */
static const char *const load_sql[4] = {
    "select k.n, o.id::text, o.org_id::text, o.external_id, o.account_id::text, o.owner_id, o.created_at,"
    " o.stage, o.amount::float8, o.close_date, o.product_category, o.persona, a.industry, a.region,"
    " a.size_band, o.placeholder, o.outcome, o.closed_at, o.stage_probability, o.currency"
    " from unnest($1::uuid[]) with ordinality as k(id, n)"
    " cross join lateral (select * from public.opportunities o where o.id = k.id offset 0) o"
    " left join lateral (select * from public.accounts a where a.id = o.account_id offset 0) a on true",
    "select k.n, h.f, h.o, h.v, h.c, h.i"
    " from unnest($1::uuid[]) with ordinality as k(id, n)"
    " cross join lateral (select array_agg(field) f, array_agg(old_value) o, array_agg(new_value) v,"
    " array_agg(changed_at) c, array_agg(id) i from public.opportunity_history h"
    " where h.opportunity_id = k.id) h where h.f is not null",
    "select k.n, i.t, i.o, i.d, i.c, i.r"
    " from unnest($1::uuid[]) with ordinality as k(id, n)"
    " cross join lateral (select array_agg(type) t, array_agg(occurred_at) o, "
    "array_agg(duration_min::float8) d,"
    " array_agg(contact) c,"
    " array_agg(outcome) r"
    " from public.interactions i where i.opportunity_id = k.id) i where i.t is not null",
    "select k.n, t.id::text, t.occurred_at, t.text"
    " from unnest($1::uuid[]) with ordinality as k(id, n)"
    " cross join lateral (select id, occurred_at, text from public.transcripts t"
    " where t.opportunity_id = k.id offset 0) t",
};

static const unsigned load_types0[] = {PG_OID_INT8,   PG_OID_TEXT,        PG_OID_TEXT,        PG_OID_TEXT,
                                       PG_OID_TEXT,   PG_OID_TEXT,        PG_OID_TIMESTAMPTZ, PG_OID_TEXT,
                                       PG_OID_FLOAT8, PG_OID_DATE,        PG_OID_TEXT,        PG_OID_TEXT,
                                       PG_OID_TEXT,   PG_OID_TEXT,        PG_OID_TEXT,        PG_OID_BOOL,
                                       PG_OID_TEXT,   PG_OID_TIMESTAMPTZ, PG_OID_FLOAT8,      PG_OID_TEXT};
static const unsigned load_types1[] = {PG_OID_INT8,       PG_OID_TEXT_ARRAY,        PG_OID_TEXT_ARRAY,
                                       PG_OID_TEXT_ARRAY, PG_OID_TIMESTAMPTZ_ARRAY, PG_OID_INT8_ARRAY};
static const unsigned load_types2[] = {PG_OID_INT8,         PG_OID_TEXT_ARRAY, PG_OID_TIMESTAMPTZ_ARRAY,
                                       PG_OID_FLOAT8_ARRAY, PG_OID_TEXT_ARRAY, PG_OID_TEXT_ARRAY};
static const unsigned load_types3[] = {PG_OID_INT8, PG_OID_TEXT, PG_OID_TIMESTAMPTZ, PG_OID_TEXT};

/* ---- binary arrays: a one-dimensional array column as (pointer, length)
 * elements, length -1 for NULL. ---------------------------------------------------- */

typedef struct {
    char *p;
    int len;
} arr_elem_t;

typedef struct {
    arr_elem_t *e;
    size_t n, cap;
} arr_t;

/* Parses the array of (row, col) into a->e (a->n elements), checking the
 * element type and every length against the value's size. Text elements
 * are then NUL-terminated in place (arr_terminate). Returns 0, or -1 for a
 * malformed value. */
static int arr_parse(const PGresult *r, int row, int col, uint32_t elem_oid, arr_t *a) {
    a->n = 0;
    if (PQgetisnull(r, row, col)) return 0;
    char *p = PQgetvalue(r, row, col), *end = p + PQgetlength(r, row, col);
    if (end - p < 12) return -1;
    int32_t ndim = (int32_t)be32(p);
    if (be32(p + 8) != elem_oid || ndim < 0 || ndim > 1) return -1;
    p += 12;
    if (ndim == 0) return 0;
    if (end - p < 8) return -1;
    int32_t count = (int32_t)be32(p);
    p += 8;
    if (count < 0) return -1;
    if ((size_t)count > a->cap) {
        a->cap = (size_t)count;
        a->e = ds_realloc(a->e, a->cap * sizeof *a->e);
    }
    for (int32_t i = 0; i < count; i++) {
        if (end - p < 4) return -1;
        int32_t len = (int32_t)be32(p);
        p += 4;
        if (len < -1 || (len > 0 && end - p < len)) return -1;
        a->e[i] = (arr_elem_t){len < 0 ? NULL : p, len};
        if (len > 0) p += len;
    }
    a->n = (size_t)count;
    return p == end ? 0 : -1;
}

/* NUL-terminates every text element in place: the byte after an element
 * is the next one's length (already read by arr_parse) or libpq's
 * terminator after the value. */
static void arr_terminate(arr_t *a) {
    for (size_t i = 0; i < a->n; i++)
        if (a->e[i].p) a->e[i].p[a->e[i].len] = '\0';
}

static int64_t arr_ts(const arr_elem_t *e) {
    if (e->len != 8) return DS_TIME_NONE;
    int64_t v = (int64_t)be64(e->p);
    if (v == INT64_MAX || v == INT64_MIN) return DS_TIME_NONE;
    return v + PG_EPOCH_US;
}

static double arr_f8(const arr_elem_t *e) {
    if (e->len != 8) return NAN;
    uint64_t u = be64(e->p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static int64_t arr_i8(const arr_elem_t *e) { return e->len == 8 ? (int64_t)be64(e->p) : -1; }

/* The element count of a one-dimensional array column, from its header. */
static size_t arr_count(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) < 20) return 0;
    const char *p = PQgetvalue(r, row, col);
    int32_t ndim = (int32_t)be32(p), n = (int32_t)be32(p + 12);
    return ndim == 1 && n > 0 ? (size_t)n : 0;
}

static const char *bin_str(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* The entry of a child row (its opportunity's position in column 0), or -1. */
static int row_entry(const PGresult *r, int row, const int *pos_entry, size_t npos) {
    int64_t n = bin_i8(r, row, 0);
    return n >= 1 && (size_t)n <= npos ? pos_entry[n - 1] : -1;
}

/* Counting sort of a child result's rows by their opportunity: first[k] is
 * where entry k's rows start in the returned order (rows keep their result
 * order within an entry). Rows of unknown positions get no place. */
static int *group_rows(const PGresult *r, const int *pos_entry, size_t npos, size_t nent, size_t *first,
                       size_t *count) {
    int nr = PQntuples(r);
    int *owner = ds_malloc(((size_t)nr + 1) * sizeof *owner);
    memset(count, 0, nent * sizeof *count);
    for (int row = 0; row < nr; row++) {
        int64_t n = bin_i8(r, row, 0);
        int k = n >= 1 && (size_t)n <= npos ? pos_entry[n - 1] : -1;
        owner[row] = k;
        if (k >= 0) count[k]++;
    }
    size_t at = 0;
    for (size_t k = 0; k < nent; k++) {
        first[k] = at;
        at += count[k];
    }
    /* order[i] = the row that goes to place i */
    int *order = ds_malloc((at + 1) * sizeof *order);
    size_t *fill = ds_calloc(nent + 1, sizeof *fill);
    for (int row = 0; row < nr; row++) {
        int k = owner[row];
        if (k < 0) continue;
        order[first[k] + fill[k]++] = row;
    }
    free(fill);
    free(owner);
    return order;
}

/* The distinct ids of opp_ids, in their first order (a position is one
 * opportunity), as an array literal; their count in *nids. */
static char *distinct_ids(const char *const *opp_ids, size_t n, size_t *nids) {
    ds_strindex_t seen;
    ds_strindex_init(&seen, n);
    const char **ids = ds_calloc(n + 1, sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ds_strindex_add(&seen, opp_ids[i], (int)k) == (int)k) ids[k++] = opp_ids[i];
    ds_strindex_free(&seen);
    char *arr = ds_pg_array_text(ids, k);
    free(ids);
    *nids = k;
    return arr;
}

static int build_batch(ds_opp_batch_t *b, char *errstr, size_t errsz);

int ds_opp_batch_send(ds_pg_t *pg, const char *const *opp_ids, size_t n, ds_opp_batch_t **out, char *errstr,
                      size_t errstr_size) {
    *out = NULL;
    PGconn *conn = ds_pg_conn(pg);
    if (!ds_pg_is_connected(pg)) {
        snprintf(errstr, errstr_size, "no connection to postgres");
        return DS_ERETRY;
    }
    if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF) {
        snprintf(errstr, errstr_size, "a batch is running on this connection");
        return DS_EINVAL;
    }
    ds_opp_batch_t *b = ds_calloc(1, sizeof *b);
    char *arr = distinct_ids(opp_ids, n, &b->nids);
    const char *v[] = {arr};
    const char *names[4]; /* prepared before the pipeline starts: planned once per connection */
    for (int q = 0; q < 4; q++) names[q] = ds_pg_prepared(pg, load_sql[q], 1);
    bool ok = PQenterPipelineMode(conn) && PQsetnonblocking(conn, 1) == 0;
    for (int q = 0; q < 4 && ok; q++)
        ok = (names[q] ? PQsendQueryPrepared(conn, names[q], 1, v, NULL, NULL, 1)
                       : PQsendQueryParams(conn, load_sql[q], 1, NULL, v, NULL, NULL, 1)) == 1;
    ok = ok && PQpipelineSync(conn) == 1;
    free(arr);
    /* Non-blocking until everything is written, reading whatever the server
     * answers meanwhile: a full send buffer can never wait on a full
     * receive buffer. */
    while (ok) {
        int f = PQflush(conn);
        if (f <= 0) {
            ok = f == 0;
            break;
        }
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN | POLLOUT};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR) ok = false;
        if (ok && (pfd.revents & POLLIN)) ok = PQconsumeInput(conn) == 1;
    }
    if (ok) ok = PQsetnonblocking(conn, 0) == 0;
    if (!ok) {
        char buf[512];
        snprintf(errstr, errstr_size, "could not send the loader queries: %s",
                 ds_pg_error_text(NULL, conn, buf, sizeof buf));
        ds_pg_reset(pg); /* the pipeline is in an unknown state */
        ds_opp_batch_destroy(b);
        return DS_ERETRY;
    }
    b->sent = true;
    *out = b;
    return DS_OK;
}

int ds_opp_batch_recv(ds_pg_t *pg, ds_opp_batch_t *b, char *errstr, size_t errstr_size) {
    if (!b->sent) {
        snprintf(errstr, errstr_size, "the batch was not sent");
        return DS_EINVAL;
    }
    b->sent = false;
    PGconn *conn = ds_pg_conn(pg);
    static const unsigned *const types[4] = {load_types0, load_types1, load_types2, load_types3};
    static const int ntypes[4] = {DS_ARRAY_SIZE(load_types0), DS_ARRAY_SIZE(load_types1),
                                  DS_ARRAY_SIZE(load_types2), DS_ARRAY_SIZE(load_types3)};
    int rc = DS_OK;
    bool clean = conn != NULL;
    /* Each query gives its result and then NULL; after an error the rest
     * come back PGRES_PIPELINE_ABORTED; then the sync. */
    for (int q = 0; q < 4 && clean; q++) {
        PGresult *r = PQgetResult(conn);
        if (!r) {
            clean = false;
            break;
        }
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            b->res[q] = r;
            if (rc == DS_OK) rc = check_types(r, types[q], ntypes[q], q, errstr, errstr_size);
        } else {
            if (rc == DS_OK) {
                char buf[512];
                rc = ds_pg_classify(r, conn);
                if (rc == DS_OK) rc = DS_EFATAL;
                snprintf(errstr, errstr_size, "%s", ds_pg_error_text(r, conn, buf, sizeof buf));
            }
            PQclear(r);
        }
        PGresult *end = PQgetResult(conn);
        if (end) {
            PQclear(end);
            clean = false;
        }
    }
    if (clean) {
        PGresult *sync = PQgetResult(conn);
        clean = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
        PQclear(sync);
    }
    if (clean) clean = PQexitPipelineMode(conn) == 1;
    if (!clean) {
        if (rc == DS_OK) {
            char buf[512];
            snprintf(errstr, errstr_size, "loader queries: %s",
                     ds_pg_error_text(NULL, conn, buf, sizeof buf));
            rc = DS_ERETRY;
        }
        ds_pg_reset(pg);
    }
    if (rc != DS_OK) return rc;
    return build_batch(b, errstr, errstr_size);
}

int ds_opp_batch_load(ds_pg_t *pg, const char *const *opp_ids, size_t n, ds_opp_batch_t **out, char *errstr,
                      size_t errstr_size) {
    ds_opp_batch_t *b = NULL;
    int rc = ds_opp_batch_send(pg, opp_ids, n, &b, errstr, errstr_size);
    if (rc == DS_OK) rc = ds_opp_batch_recv(pg, b, errstr, errstr_size);
    if (rc != DS_OK) {
        ds_opp_batch_destroy(b);
        b = NULL;
    }
    *out = b;
    return rc;
}

/* Turns the four results into the raw structs (strings stay in them). */
static int build_batch(ds_opp_batch_t *b, char *errstr, size_t errsz) {
    size_t nids = b->nids;
    PGresult *r = b->res[0];
    int no = PQntuples(r);
    /* pos_entry[position - 1] = the entry loaded for it, or -1 */
    int *pos_entry = ds_malloc((nids + 1) * sizeof *pos_entry);
    for (size_t i = 0; i < nids; i++) pos_entry[i] = -1;
    b->opps = ds_calloc((size_t)no + 1, sizeof *b->opps);
    ds_strindex_init(&b->index, (size_t)no);
    for (int row = 0; row < no; row++) {
        int64_t pos = bin_i8(r, row, 0);
        if (pos < 1 || (size_t)pos > nids || pos_entry[pos - 1] >= 0) continue;
        opp_entry_t *e = &b->opps[b->n];
        ds_opp_raw_init(&e->raw);
        e->raw.opportunity_id = PQgetvalue(r, row, 1);
        e->org_id = PQgetvalue(r, row, 2);
        e->raw.external_id = PQgetvalue(r, row, 3);
        e->raw.account_id = bin_str(r, row, 4);
        e->raw.owner_id = bin_str(r, row, 5);
        e->raw.created_at_us = bin_ts(r, row, 6);
        e->raw.stage = bin_str(r, row, 7);
        e->raw.amount = bin_f8(r, row, 8);
        e->raw.close_date_us = bin_date(r, row, 9);
        e->raw.product_category = bin_str(r, row, 10);
        e->raw.persona = bin_str(r, row, 11);
        e->raw.industry = bin_str(r, row, 12);
        e->raw.region = bin_str(r, row, 13);
        e->raw.size_band = bin_str(r, row, 14);
        e->placeholder = bin_bool(r, row, 15);
        const char *oc = PQgetvalue(r, row, 16);
        e->raw.outcome = !strcmp(oc, "won")    ? DS_OUTCOME_WON
                         : !strcmp(oc, "lost") ? DS_OUTCOME_LOST
                                               : DS_OUTCOME_OPEN;
        e->raw.closed_at_us = bin_ts(r, row, 17);
        e->raw.stage_probability = bin_f8(r, row, 18);
        e->raw.currency = bin_str(r, row, 19);
        ds_strindex_add(&b->index, e->raw.opportunity_id, (int)b->n);
        pos_entry[pos - 1] = (int)b->n;
        b->n++;
    }
    size_t *first = ds_calloc(b->n + 1, sizeof *first), *count = ds_calloc(b->n + 1, sizeof *count);

    /* History, in (changed_at, id) order per opportunity: ties in time keep
     * the array order in the engine, so the order must not depend on the plan. */
    int rc = DS_OK;
    arr_t a[5] = {{0}};
    r = b->res[1];
    size_t total = 0;
    for (int row = 0; row < PQntuples(r); row++) total += arr_count(r, row, 1);
    b->hist = ds_calloc(total + 1, sizeof *b->hist);
    int64_t *hid = ds_calloc(total + 1, sizeof *hid);
    size_t at0 = 0;
    for (int row = 0; row < PQntuples(r) && rc == DS_OK; row++) {
        int k = row_entry(r, row, pos_entry, nids);
        if (k < 0) continue;
        static const uint32_t oids[5] = {PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT, PG_OID_TIMESTAMPTZ,
                                         PG_OID_INT8};
        for (int c = 0; c < 5 && rc == DS_OK; c++)
            if (arr_parse(r, row, c + 1, oids[c], &a[c]) != 0 || a[c].n != a[0].n || at0 + a[c].n > total)
                rc = DS_EFATAL;
        if (rc != DS_OK) break;
        for (int c = 0; c < 3; c++) arr_terminate(&a[c]);
        ds_opp_raw_t *raw = &b->opps[k].raw;
        ds_opp_history_t *h = &b->hist[at0];
        int64_t *id = &hid[at0];
        for (size_t j = 0; j < a[0].n; j++) {
            ds_opp_history_t cur;
            memset(&cur, 0, sizeof cur);
            if (!a[0].e[j].p ||
                ds_opp_history_set(&cur, a[0].e[j].p, a[1].e[j].p, a[2].e[j].p, arr_ts(&a[3].e[j])) != 0)
                cur.field = DS_HIST_IGNORED;
            int64_t cid = arr_i8(&a[4].e[j]);
            /* Insertion sort: a handful of rows per deal, usually in order already. */
            size_t at = j;
            while (at > 0 && (h[at - 1].changed_at_us > cur.changed_at_us ||
                              (h[at - 1].changed_at_us == cur.changed_at_us && id[at - 1] > cid))) {
                h[at] = h[at - 1];
                id[at] = id[at - 1];
                at--;
            }
            h[at] = cur;
            id[at] = cid;
        }
        raw->history = a[0].n ? h : NULL;
        raw->n_history = a[0].n;
        at0 += a[0].n;
    }
    free(hid);

    /* Interactions: the engine only counts and takes maxima, so any order does. */
    r = b->res[2];
    total = 0;
    for (int row = 0; row < PQntuples(r); row++) total += arr_count(r, row, 1);
    b->inter = ds_calloc(total + 1, sizeof *b->inter);
    at0 = 0;
    for (int row = 0; row < PQntuples(r) && rc == DS_OK; row++) {
        int k = row_entry(r, row, pos_entry, nids);
        if (k < 0) continue;
        static const uint32_t oids[5] = {PG_OID_TEXT, PG_OID_TIMESTAMPTZ, PG_OID_FLOAT8, PG_OID_TEXT,
                                         PG_OID_TEXT};
        for (int c = 0; c < 5 && rc == DS_OK; c++)
            if (arr_parse(r, row, c + 1, oids[c], &a[c]) != 0 || a[c].n != a[0].n || at0 + a[c].n > total)
                rc = DS_EFATAL;
        if (rc != DS_OK) break;
        arr_terminate(&a[0]);
        arr_terminate(&a[3]);
        arr_terminate(&a[4]);
        ds_opp_raw_t *raw = &b->opps[k].raw;
        for (size_t j = 0; j < a[0].n; j++) {
            ds_interaction_t *it = &b->inter[at0 + j];
            it->type = ds_interaction_type_parse(a[0].e[j].p);
            it->occurred_at_us = arr_ts(&a[1].e[j]);
            it->duration_min = arr_f8(&a[2].e[j]);
            it->contact = a[3].e[j].p;
            it->answer = ds_interaction_answer_parse(a[4].e[j].p);
        }
        raw->interactions = a[0].n ? &b->inter[at0] : NULL;
        raw->n_interactions = a[0].n;
        at0 += a[0].n;
    }
    for (int c = 0; c < 5; c++) free(a[c].e);
    if (rc != DS_OK) {
        snprintf(errstr, errsz, "loader: a malformed array in the %s result",
                 r == b->res[1] ? "history" : "interactions");
        free(first);
        free(count);
        free(pos_entry);
        return rc;
    }

    /* Transcripts: the engine puts them in (time, id) order itself. */
    r = b->res[3];
    int *order = group_rows(r, pos_entry, nids, b->n, first, count);
    b->trans = ds_calloc((size_t)PQntuples(r) + 1, sizeof *b->trans);
    for (size_t k = 0; k < b->n; k++) {
        ds_opp_raw_t *raw = &b->opps[k].raw;
        for (size_t j = 0; j < count[k]; j++) {
            int row = order[first[k] + j];
            ds_transcript_t *t = &b->trans[first[k] + j];
            t->id = PQgetvalue(r, row, 1);
            t->occurred_at_us = bin_ts(r, row, 2);
            t->text = PQgetvalue(r, row, 3);
            t->text_len = (size_t)PQgetlength(r, row, 3);
        }
        raw->transcripts = count[k] ? &b->trans[first[k]] : NULL;
        raw->n_transcripts = count[k];
    }
    free(order);
    free(first);
    free(count);
    free(pos_entry);
    return DS_OK;
}
