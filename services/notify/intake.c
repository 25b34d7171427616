/* prediction.made -> notify_deliveries rows (intake.h). */
#include "intake.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/log.h"
#include "base/strindex.h"
#include "infra/pgarray.h"
#include "notify.h"

/* The active subscriptions to score changes of the batch's orgs. */
static const char *sql_subscriptions =
    "select id::text, org_id::text, min_change, (extract(epoch from created_at) * 1000000)::bigint"
    " from dealscore_internal.notify_subscriptions"
    " where active and org_id = any($1::uuid[]) and '" NOTIFY_EVENT_SCORE_CHANGED "' = any(event_types)";

static const char *sql_external_ids =
    "select id::text, external_id from public.opportunities where id = any($1::uuid[])";

/* A subscription removed since it was read still gets its rows (they are
 * failed by the removal or skipped by the courier); one deleted with its org
 * gets none, rather than a foreign key error. */
#define DELIVERY_COLS 6
static const char *sql_insert =
    "insert into dealscore_internal.notify_deliveries"
    " (id, subscription_id, org_id, event_type, opportunity_id, event)"
    " select x.id, x.sub, x.org, x.type, x.opp, x.event"
    " from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::json[])"
    "  as x(id, sub, org, type, opp, event)"
    " where exists (select 1 from dealscore_internal.notify_subscriptions s where s.id = x.sub)"
    " on conflict (id) do nothing";

typedef struct {
    Dealscore__V1__PredictionMade **pms;
    int64_t *scored_at_us;
    size_t n;
    PGresult *subs;      /* id, org_id, min_change */
    PGresult *ext;       /* id, external_id */
    ds_strindex_t byopp; /* opportunity id -> row of ext */
} intake_batch_t;

void intake_init(intake_t *in, ds_service_t *svc, courier_pool_t *pool) {
    memset(in, 0, sizeof *in);
    in->svc = svc;
    in->pool = pool;
    char err[256];
    if (ds_pg_new(&in->pg, svc->cfg->database_url, "dealscore-notify", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    in->m_events = ds_metrics_counter(svc->metrics, "notify_events_total",
                                      "Deliveries created (one per event and matching subscription)", NULL);
}

void intake_close(intake_t *in) {
    ds_pg_destroy(in->pg);
    in->pg = NULL;
}

static void lower(char *s) {
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

/* Decodes each item; a payload that is no PredictionMade with UUID ids goes
 * to the dead letters. */
static void decode(intake_batch_t *b, ds_worker_item_t *items) {
    for (size_t i = 0; i < b->n; i++) {
        rd_kafka_message_t *m = items[i].msg;
        Dealscore__V1__PredictionMade *pm = dealscore__v1__prediction_made__unpack(NULL, m->len, m->payload);
        if (!pm || !ds_uuid_valid(pm->org_id) || !ds_uuid_valid(pm->opportunity_id) ||
            !ds_uuid_valid(pm->event_id)) {
            if (pm) dealscore__v1__prediction_made__free_unpacked(pm, NULL);
            items[i].status = DS_EINVAL;
            snprintf(items[i].error, sizeof items[i].error,
                     "payload is not a dealscore.v1.PredictionMade with UUID ids");
            continue;
        }
        lower(pm->org_id);
        lower(pm->opportunity_id);
        b->pms[i] = pm;
        int64_t ts = rd_kafka_message_timestamp(m, NULL);
        b->scored_at_us[i] = ts > 0 ? ts * 1000 : ds_now_us();
    }
}

/* Runs sql with one uuid[] parameter made of the ids ids[0..n). */
static int query_ids(ds_pg_t *pg, const char *sql, const char **ids, size_t n, PGresult **res, char *errstr,
                     size_t errsz) {
    char *arr = ds_pg_array_text(ids, n);
    const char *v[] = {arr};
    int rc = ds_pg_exec_params(pg, sql, 1, v, NULL, NULL, res, errstr, errsz);
    free(arr);
    return rc;
}

static int load_subscriptions(intake_t *in, intake_batch_t *b, char *errstr, size_t errsz) {
    const char **orgs = ds_calloc(b->n, sizeof *orgs);
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->pms[i]) orgs[k++] = b->pms[i]->org_id;
    int rc = k ? query_ids(in->pg, sql_subscriptions, orgs, k, &b->subs, errstr, errsz) : 0;
    free(orgs);
    return rc;
}

/* True when prediction i makes an event for subscription row s: one of its
 * org, scored since the subscription was made (a new consumer group starts
 * at the topic's oldest message, which is no news to a new subscriber), that
 * moved the probability enough. */
static bool matches(const intake_batch_t *b, size_t i, int s) {
    const Dealscore__V1__PredictionMade *pm = b->pms[i];
    return pm && strcmp(PQgetvalue(b->subs, s, 1), pm->org_id) == 0 &&
           b->scored_at_us[i] >= strtoll(PQgetvalue(b->subs, s, 3), NULL, 10) &&
           notify_change_matters(pm, strtod(PQgetvalue(b->subs, s, 2), NULL));
}

static int load_external_ids(intake_t *in, intake_batch_t *b, char *errstr, size_t errsz) {
    const char **opps = ds_calloc(b->n, sizeof *opps);
    size_t k = 0;
    int nsubs = PQntuples(b->subs);
    for (size_t i = 0; i < b->n; i++)
        for (int s = 0; s < nsubs; s++)
            if (matches(b, i, s)) {
                opps[k++] = b->pms[i]->opportunity_id;
                break;
            }
    int rc = k ? query_ids(in->pg, sql_external_ids, opps, k, &b->ext, errstr, errsz) : 0;
    free(opps);
    if (rc != 0 || !b->ext) return rc;
    ds_strindex_init(&b->byopp, (size_t)PQntuples(b->ext));
    for (int r = 0; r < PQntuples(b->ext); r++) ds_strindex_add(&b->byopp, PQgetvalue(b->ext, r, 0), r);
    return 0;
}

/* Appends the delivery of prediction i to subscription row s. */
static void add_row(intake_t *in, const intake_batch_t *b, size_t i, int s, ds_pgarray_t *cols,
                    ds_sb_t *json) {
    const Dealscore__V1__PredictionMade *pm = b->pms[i];
    const char *sub = PQgetvalue(b->subs, s, 0);
    char seed[128], id[37];
    snprintf(seed, sizeof seed, "notify:%s:%s", sub, pm->event_id);
    ds_uuid_derived(seed, id);
    int r = b->ext ? ds_strindex_find(&b->byopp, pm->opportunity_id) : -1;
    notify_event_ctx_t ctx = {
        .id = id,
        .source = in->svc->cfg->notify_source,
        .external_id = r >= 0 && !PQgetisnull(b->ext, r, 1) ? PQgetvalue(b->ext, r, 1) : NULL,
        .scored_at_us = b->scored_at_us[i],
    };
    ds_sb_reset(json);
    notify_event_write(json, pm, &ctx);
    ds_pgarray_uuid(&cols[0], id);
    ds_pgarray_uuid(&cols[1], sub);
    ds_pgarray_uuid(&cols[2], pm->org_id);
    ds_pgarray_text(&cols[3], NOTIFY_EVENT_SCORE_CHANGED, strlen(NOTIFY_EVENT_SCORE_CHANGED));
    ds_pgarray_uuid(&cols[4], pm->opportunity_id);
    ds_pgarray_json(&cols[5], json->p, json->len);
}

/* Inserts the batch's deliveries; *added gets how many rows are new. */
static int insert_deliveries(intake_t *in, const intake_batch_t *b, int *added, char *errstr, size_t errsz) {
    static const uint32_t oids[DELIVERY_COLS] = {DS_OID_UUID, DS_OID_UUID, DS_OID_UUID,
                                                 DS_OID_TEXT, DS_OID_UUID, DS_OID_JSON};
    ds_pgarray_t cols[DELIVERY_COLS] = {{0}};
    for (int c = 0; c < DELIVERY_COLS; c++) ds_pgarray_begin(&cols[c], oids[c]);
    ds_sb_t json = {0};
    int nsubs = PQntuples(b->subs);
    for (size_t i = 0; i < b->n; i++)
        for (int s = 0; s < nsubs; s++)
            if (matches(b, i, s)) add_row(in, b, i, s, cols, &json);
    ds_sb_free(&json);
    int rc = 0;
    *added = 0;
    if (cols[0].n > 0) {
        const char *v[DELIVERY_COLS];
        int l[DELIVERY_COLS], f[DELIVERY_COLS];
        ds_pgarray_params(cols, DELIVERY_COLS, v, l, f);
        PGresult *res = NULL;
        rc = ds_pg_exec_params(in->pg, sql_insert, DELIVERY_COLS, v, l, f, &res, errstr, errsz);
        if (rc == 0) *added = atoi(PQcmdTuples(res));
        PQclear(res);
    }
    for (int c = 0; c < DELIVERY_COLS; c++) ds_pgarray_free(&cols[c]);
    return rc;
}

static void batch_free(intake_batch_t *b) {
    for (size_t i = 0; i < b->n; i++)
        if (b->pms[i]) dealscore__v1__prediction_made__free_unpacked(b->pms[i], NULL);
    free(b->pms);
    free(b->scored_at_us);
    PQclear(b->subs);
    PQclear(b->ext);
    ds_strindex_free(&b->byopp);
}

int intake_process(ds_worker_t *w, void *ud, ds_worker_item_t *items, size_t n, char *errstr, size_t errsz) {
    (void)w;
    intake_t *in = ud;
    intake_batch_t b = {.n = n,
                        .pms = ds_calloc(n, sizeof(Dealscore__V1__PredictionMade *)),
                        .scored_at_us = ds_calloc(n, sizeof(int64_t))};
    decode(&b, items);
    int added = 0;
    int rc = ds_pg_ensure(in->pg, 2000, NULL, errstr, errsz);
    if (rc == 0) rc = load_subscriptions(in, &b, errstr, errsz);
    if (rc == 0 && b.subs && PQntuples(b.subs) > 0) rc = load_external_ids(in, &b, errstr, errsz);
    if (rc == 0 && b.subs && PQntuples(b.subs) > 0) rc = insert_deliveries(in, &b, &added, errstr, errsz);
    batch_free(&b);
    if (rc == DS_ERETRY || (rc != 0 && !ds_pg_is_connected(in->pg))) {
        if (!ds_pg_is_connected(in->pg)) ds_pg_reset(in->pg);
        return DS_ERETRY;
    }
    if (rc != 0) return rc;
    if (added > 0) {
        ds_metric_add(in->m_events, added);
        courier_pool_wake(in->pool);
    }
    return 0;
}
