/* The feature worker: coalesces a batch of opportunity.changed events per
 * opportunity, loads their raw rows in a few queries, computes the features
 * as of the newest change, writes features_snapshot in one transaction and
 * publishes features.ready (causation id = the last event coalesced). */
#include "feature.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/common.h"
#include "store/feature_loader.h"
#include "domain/features.h"
#include "base/log.h"
#include "infra/event.h"
#include "infra/pg.h"
#include "infra/pgarray.h"
#include "base/strindex.h"
#include "runtime/worker.h"

typedef struct {
    ds_service_t *svc;
    ds_pg_t *pg;  /* loads (and the org cache) */
    ds_pg_t *pgw; /* the snapshot transaction, so it runs while the next chunk loads */
    ds_org_cache_t *orgs;
    ds_metric_t *m_coalesce, *m_compute, *m_phase_load, *m_phase_compute, *m_phase_write, *m_phase_produce,
        *m_skipped, *m_snapshots;
} feature_state_t;

typedef struct {
    const char *opp_id; /* borrowed from the decoded event */
    const char *org_id;
    const char *event_id; /* the last event of this opportunity in the batch */
    int64_t as_of_us;
    char traceparent[DS_TRACEPARENT_SIZE];
} change_t;

/* One statement for the whole batch: the columns as binary arrays (uuid[],
 * timestamptz[], json[]), so the server validates each snapshot's JSON once
 * and nothing else (no outer JSON document to parse and take apart, no
 * text to cast). The documents are json, not jsonb: written for every
 * change, read rarely (migration 20261126007200). A snapshot that exists
 * already (a replayed change) is overwritten, any other inserted: without
 * ON CONFLICT's speculative insertion, which costs a WAL record more per
 * row; a row another transaction inserts meanwhile fails the batch, which
 * is retried. */
#define SNAPSHOT_DEAL_EXISTS DS_SQL_WHERE_DEAL_EXISTS("u.opportunity_id", "u.org_id")
static const char *sql_snapshot =
    "with u as (select * from unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::json[], $5::json[])"
    " as u(org_id, opportunity_id, as_of, features, meddicc)" SNAPSHOT_DEAL_EXISTS "),"
    " replayed as (update public.features_snapshot f set features = u.features, meddicc = u.meddicc,"
    " computed_at = now() from u where f.opportunity_id = u.opportunity_id and f.as_of = u.as_of"
    " and f.feature_version = $6 returning f.opportunity_id, f.as_of)"
    " insert into public.features_snapshot (org_id, opportunity_id, as_of, feature_version, features,"
    " meddicc) select u.org_id, u.opportunity_id, u.as_of, $6, u.features, u.meddicc from u"
    " where not exists (select from replayed r where r.opportunity_id = u.opportunity_id"
    " and r.as_of = u.as_of)";

/* A computed opportunity: its change and its packed features.ready. */
typedef struct {
    size_t idx; /* into the batch's changes */
    char event_id[37];
    uint8_t *buf;
    size_t len;
} computed_t;

/* Packs the features.ready of change c into out (event id derived from the
 * change, so a replay produces the same event). */
static void pack_ready(const change_t *c, const ds_feature_vec_t *vec, computed_t *out) {
    Dealscore__V1__FeaturesReady fr = DEALSCORE__V1__FEATURES_READY__INIT;
    char seed[160];
    snprintf(seed, sizeof seed, "features.ready:%s:%s:%lld", c->event_id, c->opp_id, (long long)c->as_of_us);
    ds_uuid_derived(seed, out->event_id);
    fr.event_id = out->event_id;
    fr.causation_id = (char *)c->event_id;
    fr.org_id = (char *)c->org_id;
    fr.opportunity_id = (char *)c->opp_id;
    fr.as_of_us = c->as_of_us;
    fr.feature_version = DS_FEATURE_VERSION;
    Dealscore__V1__Feature feats[DS_FEATURE_COUNT];
    Dealscore__V1__Feature *fptr[DS_FEATURE_COUNT];
    for (int f = 0; f < DS_FEATURE_COUNT; f++) {
        dealscore__v1__feature__init(&feats[f]);
        feats[f].name = (char *)ds_feature_name(f);
        feats[f].value = vec->values[f];
        fptr[f] = &feats[f];
    }
    fr.n_features = DS_FEATURE_COUNT;
    fr.features = fptr;
    Dealscore__V1__MeddiccFlags mf = DEALSCORE__V1__MEDDICC_FLAGS__INIT;
    const double *vals = vec->values;
    mf.metrics = vals[DS_F_MEDDICC_METRICS] > 0;
    mf.economic_buyer = vals[DS_F_MEDDICC_ECONOMIC_BUYER] > 0;
    mf.decision_criteria = vals[DS_F_MEDDICC_DECISION_CRITERIA] > 0;
    mf.decision_process = vals[DS_F_MEDDICC_DECISION_PROCESS] > 0;
    mf.paper_process = vals[DS_F_MEDDICC_PAPER_PROCESS] > 0;
    mf.identify_pain = vals[DS_F_MEDDICC_IDENTIFY_PAIN] > 0;
    mf.champion = vals[DS_F_MEDDICC_CHAMPION] > 0;
    mf.competition = vals[DS_F_MEDDICC_COMPETITION] > 0;
    mf.coverage = isnan(vals[DS_F_MEDDICC_COVERAGE]) ? 0 : (uint32_t)vals[DS_F_MEDDICC_COVERAGE];
    fr.meddicc = &mf;
    out->len = dealscore__v1__features_ready__get_packed_size(&fr);
    out->buf = ds_malloc(out->len ? out->len : 1);
    dealscore__v1__features_ready__pack(&fr, out->buf);
}

/* Leaves the writer connection outside any transaction, or drops it. */
static void writer_abort(feature_state_t *st, bool in_flight) {
    char err[256];
    if (in_flight) (void)ds_pg_send_wait(st->pgw, NULL, err, sizeof err);
    if (!ds_pg_is_connected(st->pgw) || ds_pg_exec(st->pgw, "rollback", NULL, err, sizeof err) != 0)
        ds_pg_reset(st->pgw);
}

/* Loads, computes and writes the batch's snapshots in chunks of
 * DEALSCORE_FEATURE_CHUNK opportunities, in one transaction on the writer
 * connection, and packs each features.ready into out[0 .. *nout). Postgres
 * writes chunk i while the worker loads and computes chunk i + 1 on the
 * other connection: two backends busy instead of one at a time. Returns 0
 * once committed, or DS_ERETRY with errstr (rolled back; both connections
 * usable or reset). */
/* The chunks of one compute_and_write: chunk k+1's rows are loading and
 * chunk k-1's snapshots inserting (on the writer's session) while chunk k
 * is computed. */
typedef struct {
    feature_state_t *st;
    const change_t *ch;
    size_t nch, chunk;
    const char **ids;
    /* Per change of the chunk: its loaded row (-1 none) and its org. */
    int *row;
    const ds_org_ctx_t **corg;
    /* The chunk's distinct orgs and their contexts. */
    const char **dorg;
    const ds_org_ctx_t **dctx;
    ds_opp_batch_t *next; /* the next chunk's load, sent, not read yet */
    ds_pgarray_t a[5];    /* the snapshot columns of the chunk */
    bool in_tx, in_flight;
    int64_t t_load, t_compute, t_write;
    size_t done;
} pipeline_t;

static void pipeline_init(pipeline_t *p, feature_state_t *st, const change_t *ch, size_t nch) {
    memset(p, 0, sizeof *p);
    p->st = st;
    p->ch = ch;
    p->nch = nch;
    p->chunk = (size_t)st->svc->cfg->feature_chunk;
    p->ids = ds_calloc(p->chunk, sizeof *p->ids);
    p->row = ds_calloc(p->chunk, sizeof *p->row);
    p->corg = ds_calloc(p->chunk, sizeof *p->corg);
    p->dorg = ds_calloc(p->chunk, sizeof *p->dorg);
    p->dctx = ds_calloc(p->chunk, sizeof *p->dctx);
}

static void pipeline_close(pipeline_t *p) {
    free(p->ids);
    free(p->row);
    free(p->corg);
    free(p->dorg);
    free(p->dctx);
    for (int i = 0; i < 5; i++) ds_pgarray_free(&p->a[i]);
    if (p->next) {
        /* A load still in flight after a failure: its pipeline is mid-way. */
        ds_opp_batch_destroy(p->next);
        ds_pg_reset(p->st->pg);
    }
}

/* Sends the load of the chunk of changes from c0. */
static int send_load(pipeline_t *p, size_t c0, char *errstr, size_t errsz) {
    size_t nn = p->nch - c0 < p->chunk ? p->nch - c0 : p->chunk;
    for (size_t k = 0; k < nn; k++) p->ids[k] = p->ch[c0 + k].opp_id;
    return ds_opp_batch_send(p->st->pg, p->ids, nn, &p->next, errstr, errsz);
}

/* Reads the chunk's load into *out, finds each change's row and org, and
 * sends the next chunk's load. */
static int load_chunk(pipeline_t *p, size_t c0, size_t cn, ds_opp_batch_t **out, char *errstr, size_t errsz) {
    feature_state_t *st = p->st;
    ds_opp_batch_t *b = p->next;
    p->next = NULL;
    int rc = ds_opp_batch_recv(st->pg, b, errstr, errsz);
    if (rc != 0) {
        ds_opp_batch_destroy(b);
        return rc; /* the ids are valid UUIDs: a failure here is the database's */
    }
    /* The connection is idle until the next chunk's load is sent: look up
     * the orgs now, each once (a second lookup of the same org could
     * refresh it and free the context the first one returned). */
    size_t nd = 0;
    for (size_t j = 0; j < cn && rc == 0; j++) {
        const change_t *c = &p->ch[c0 + j];
        int idx = ds_opp_batch_find(b, c->opp_id);
        p->row[j] = idx;
        p->corg[j] = NULL;
        if (idx < 0 || ds_opp_batch_placeholder(b, (size_t)idx) ||
            strcmp(ds_opp_batch_org(b, (size_t)idx), c->org_id) != 0) {
            p->row[j] = -1; /* unknown, not yet sent by the CRM, or of another org */
            continue;
        }
        size_t d;
        for (d = 0; d < nd; d++)
            if (strcmp(p->dorg[d], c->org_id) == 0) break;
        if (d == nd) {
            rc = ds_org_cache_get(st->orgs, st->pg, c->org_id, &p->dctx[d], errstr, errsz);
            p->dorg[nd++] = c->org_id;
        }
        p->corg[j] = p->dctx[d];
    }
    if (rc == 0 && c0 + p->chunk < p->nch) rc = send_load(p, c0 + p->chunk, errstr, errsz);
    if (rc != 0) {
        ds_opp_batch_destroy(b);
        if (!ds_pg_is_connected(st->pg)) ds_pg_reset(st->pg);
        return rc;
    }
    *out = b;
    return DS_OK;
}

/* Computes the features of the chunk's changes into the snapshot columns
 * and their features.ready into out; returns the rows. */
static size_t compute_chunk(pipeline_t *p, ds_opp_batch_t *b, size_t c0, size_t cn, computed_t *out,
                            size_t *nout) {
    feature_state_t *st = p->st;
    const change_t *ch = p->ch;
    ds_pgarray_t *a = p->a;
    ds_feature_vec_t vec;
    ds_pgarray_begin(&a[0], DS_OID_UUID);
    ds_pgarray_begin(&a[1], DS_OID_UUID);
    ds_pgarray_begin(&a[2], DS_OID_TIMESTAMPTZ);
    ds_pgarray_begin(&a[3], DS_OID_JSON);
    ds_pgarray_begin(&a[4], DS_OID_JSON);
    size_t rows = 0;
    for (size_t k = c0; k < c0 + cn; k++) {
        int idx = p->row[k - c0];
        if (idx < 0) {
            ds_metric_add(st->m_skipped, 1);
            continue;
        }
        const ds_org_ctx_t *org = p->corg[k - c0];
        ds_opp_raw_t *raw = ds_opp_batch_raw(b, (size_t)idx);
        raw->stages = org->stages;
        int64_t c0us = ds_mono_us();
        ds_features_compute(raw, ch[k].as_of_us, org->winrate, org->lexicon, &vec);
        ds_metric_observe(st->m_compute, (double)(ds_mono_us() - c0us) / 1e6);
        /* The MEDDICC evidence points into the batch: serialise before it goes. */
        char *fj = ds_features_to_json(&vec);
        char *mj = ds_meddicc_result_to_json(&vec.meddicc);
        ds_pgarray_uuid(&a[0], ch[k].org_id);
        ds_pgarray_uuid(&a[1], ch[k].opp_id);
        ds_pgarray_timestamptz(&a[2], ch[k].as_of_us);
        ds_pgarray_json(&a[3], fj, strlen(fj));
        ds_pgarray_json(&a[4], mj, strlen(mj));
        free(fj);
        free(mj);
        out[*nout].idx = k;
        pack_ready(&ch[k], &vec, &out[*nout]);
        (*nout)++;
        rows++;
    }
    return rows;
}

/* Collects the previous chunk's INSERT (it has had the load and compute of
 * this one to run) and sends this one's, in the batch's transaction when
 * the batch has more than one chunk. */
static int write_chunk(pipeline_t *p, size_t rows, char *errstr, size_t errsz) {
    ds_pg_t *pgw = p->st->pgw;
    int rc;
    if (p->in_flight) {
        p->in_flight = false;
        rc = ds_pg_send_wait(pgw, NULL, errstr, errsz);
        if (rc != 0) return rc;
    }
    if (!rows) return DS_OK;
    /* A batch of one chunk is one INSERT, atomic by itself: without BEGIN
     * and COMMIT it costs one round trip to Postgres instead of three. */
    if (!p->in_tx && p->nch > p->chunk) {
        rc = ds_pg_exec(pgw, "begin", NULL, errstr, errsz);
        if (rc != 0) return rc;
        p->in_tx = true;
    }
    const char *v[6] = {[5] = DS_FEATURE_VERSION};
    int lens[6] = {0}, fmts[6] = {0};
    ds_pgarray_params(p->a, 5, v, lens, fmts);
    rc = ds_pg_send_params(pgw, sql_snapshot, 6, v, lens, fmts, errstr, errsz);
    if (rc != 0) return rc;
    p->in_flight = true;
    p->done += rows;
    return DS_OK;
}

/* Waits for the last INSERT and commits the batch's transaction, if any. */
static int finish_writes(pipeline_t *p, char *errstr, size_t errsz) {
    int64_t t3 = ds_mono_us();
    int rc = DS_OK;
    if (p->in_flight) {
        p->in_flight = false;
        rc = ds_pg_send_wait(p->st->pgw, NULL, errstr, errsz);
    }
    if (rc == 0 && p->in_tx) rc = ds_pg_exec(p->st->pgw, "commit", NULL, errstr, errsz);
    p->t_write += ds_mono_us() - t3;
    return rc;
}

static int compute_and_write(feature_state_t *st, const change_t *ch, size_t nch, computed_t *out,
                             size_t *nout, char *errstr, size_t errsz) {
    pipeline_t p;
    pipeline_init(&p, st, ch, nch);
    int64_t ts = ds_mono_us();
    int rc = send_load(&p, 0, errstr, errsz);
    p.t_load += ds_mono_us() - ts;
    for (size_t c0 = 0; c0 < nch && rc == 0; c0 += p.chunk) {
        size_t cn = nch - c0 < p.chunk ? nch - c0 : p.chunk;
        int64_t t0 = ds_mono_us();
        ds_opp_batch_t *b = NULL;
        rc = load_chunk(&p, c0, cn, &b, errstr, errsz);
        int64_t t1 = ds_mono_us();
        p.t_load += t1 - t0;
        if (rc != 0) break;
        size_t rows = compute_chunk(&p, b, c0, cn, out, nout);
        ds_opp_batch_destroy(b);
        int64_t t2 = ds_mono_us();
        p.t_compute += t2 - t1;
        rc = write_chunk(&p, rows, errstr, errsz);
        if (rc != 0) break;
        p.t_write += ds_mono_us() - t2;
    }
    if (rc == 0) rc = finish_writes(&p, errstr, errsz);
    bool in_tx = p.in_tx, in_flight = p.in_flight;
    pipeline_close(&p);
    if (rc != 0) {
        /* Data errors cannot come from our own rows; treat every failure as
         * transient so nothing is dropped. */
        if (in_tx || in_flight) writer_abort(st, in_flight);
        if (!ds_pg_is_connected(st->pgw)) ds_pg_reset(st->pgw);
        return DS_ERETRY;
    }
    ds_metric_add(st->m_snapshots, (double)p.done);
    ds_metric_add(st->m_phase_load, (double)p.t_load / 1e6);
    ds_metric_add(st->m_phase_compute, (double)p.t_compute / 1e6);
    ds_metric_add(st->m_phase_write, (double)p.t_write / 1e6);
    return DS_OK;
}

static int process(ds_worker_t *w, void *ud, ds_worker_item_t *items, size_t n, char *errstr, size_t errsz) {
    feature_state_t *st = ud;
    Dealscore__V1__OpportunityChanged **evs = ds_calloc(n, sizeof *evs);
    change_t *ch = ds_calloc(n, sizeof *ch);
    computed_t *out = ds_calloc(n, sizeof *out);
    size_t nch = 0, nout = 0;
    int rc = DS_OK;
    int64_t now = ds_now_us();
    ds_strindex_t byopp; /* opportunity id -> its change */
    ds_strindex_init(&byopp, n);

    /* Decode and coalesce: later messages of the same deal win. */
    for (size_t i = 0; i < n; i++) {
        char tp[DS_TRACEPARENT_SIZE];
        items[i].status = ds_event_decode_opportunity_changed(items[i].msg, &evs[i], tp, items[i].error,
                                                              sizeof items[i].error);
        if (items[i].status != 0) continue;
        int64_t at =
            evs[i]->occurred_at_us > 0 && evs[i]->occurred_at_us < now ? evs[i]->occurred_at_us : now;
        size_t k = (size_t)ds_strindex_add(&byopp, evs[i]->opportunity_id, (int)nch);
        if (k == nch) {
            nch++;
            memset(&ch[k], 0, sizeof ch[k]);
            ch[k].opp_id = evs[i]->opportunity_id;
            ch[k].org_id = evs[i]->org_id;
        }
        if (at > ch[k].as_of_us) ch[k].as_of_us = at;
        ch[k].event_id = evs[i]->event_id;
        memcpy(ch[k].traceparent, tp, sizeof tp);
    }
    ds_strindex_free(&byopp);
    if (nch) ds_metric_set(st->m_coalesce, (double)n / (double)nch);
    if (nch == 0) goto out;

    rc = ds_pg_ensure(st->pg, 2000, NULL, errstr, errsz);
    if (rc == 0) rc = ds_pg_ensure(st->pgw, 2000, NULL, errstr, errsz);
    if (rc != 0) {
        rc = DS_ERETRY;
        goto out;
    }
    rc = compute_and_write(st, ch, nch, out, &nout, errstr, errsz);
    if (rc == 0) {
        int64_t p0 = ds_mono_us();
        const char *topic = ds_worker_topic(w, DS_TOPIC_FEATURES_READY);
        for (size_t j = 0; j < nout && rc == 0; j++) {
            const change_t *c = &ch[out[j].idx];
            ds_event_meta_t meta = {.id = out[j].event_id,
                                    .source = "/dealscore/feature",
                                    .type = DS_CE_TYPE_FEATURES_READY,
                                    .time_us = c->as_of_us,
                                    .traceparent = c->traceparent};
            rc = ds_worker_produce(w, topic, c->opp_id, strlen(c->opp_id), out[j].buf, out[j].len, &meta);
            if (rc != 0) {
                snprintf(errstr, errsz, "could not produce features.ready: %s", ds_strerror(rc));
                rc = DS_ERETRY;
            }
        }
        ds_metric_add(st->m_phase_produce, (double)(ds_mono_us() - p0) / 1e6);
    }
out:
    for (size_t j = 0; j < nout; j++) free(out[j].buf);
    free(out);
    for (size_t i = 0; i < n; i++) ds_event_opportunity_changed_free(evs[i]);
    free(evs);
    free(ch);
    return rc;
}

/* A burst holds, per deal, the change with the latest occurred_at (none
 * counts as now, as in process; the newer on a tie): process computes a
 * deal as of its latest change from the deal's rows in Postgres, so that
 * message is all it needs of the deal's changes. */
static int coalesce(void *ud, const rd_kafka_message_t *m, char *key, size_t keysz, int64_t *rank) {
    (void)ud;
    Dealscore__V1__OpportunityChanged *ev = NULL;
    char err[64];
    if (ds_event_decode_opportunity_changed(m, &ev, NULL, err, sizeof err) != 0) return DS_EINVAL;
    *rank = ev->occurred_at_us > 0 ? ev->occurred_at_us : INT64_MAX;
    int len = snprintf(key, keysz, "%s", ev->opportunity_id);
    ds_event_opportunity_changed_free(ev);
    return len > 0 && (size_t)len < keysz ? 0 : DS_EINVAL;
}

void feature_worker(ds_service_t *svc, void *state) {
    (void)state;
    feature_state_t st = {.svc = svc};
    char err[256];
    if (ds_pg_new(&st.pg, svc->cfg->database_url, "dealscore-feature", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    if (ds_pg_new(&st.pgw, svc->cfg->database_url, "dealscore-feature", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    st.orgs = ds_org_cache_new_refreshing(60000, svc->cfg->database_url, true);
    ds_metrics_t *m = svc->metrics;
    st.m_coalesce =
        ds_metrics_gauge(m, "feature_coalescing_ratio", "Events per opportunity in the last batch", NULL);
    st.m_compute =
        ds_metrics_histogram(m, "feature_compute_seconds", "Feature computation time per opportunity", NULL,
                             (const double[]){1e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2}, 9);
    st.m_phase_load =
        ds_metrics_counter(m, "feature_phase_seconds_total", "Time spent per phase", "phase=\"load\"");
    st.m_phase_compute =
        ds_metrics_counter(m, "feature_phase_seconds_total", "Time spent per phase", "phase=\"compute\"");
    st.m_phase_write =
        ds_metrics_counter(m, "feature_phase_seconds_total", "Time spent per phase", "phase=\"write\"");
    st.m_phase_produce =
        ds_metrics_counter(m, "feature_phase_seconds_total", "Time spent per phase", "phase=\"produce\"");
    st.m_skipped =
        ds_metrics_counter(m, "feature_skipped_total",
                           "Changes of unknown or placeholder opportunities (nothing to compute)", NULL);
    st.m_snapshots = ds_metrics_counter(m, "feature_snapshots_total", "Feature snapshots written", NULL);
    static const char *const topics[] = {DS_TOPIC_OPPORTUNITY_CHANGED};
    ds_worker_def_t def = {.name = "feature",
                           .topics = topics,
                           .ntopics = 1,
                           .process = process,
                           .ud = &st,
                           .coalesce = coalesce};
    ds_worker_run(svc, &def);
    ds_org_cache_destroy(st.orgs);
    ds_pg_destroy(st.pgw);
    ds_pg_destroy(st.pg);
}

int feature_cmd_catalog(const ds_config_t *cfg, int argc, char **argv) {
    (void)cfg;
    (void)argc;
    (void)argv;
    char *json = ds_features_catalog_json();
    puts(json);
    free(json);
    return 0;
}
