/* POST /api/predict: verifies the caller's Supabase session JWT, lets RLS
 * decide whether the caller may see the opportunity (reading as role
 * authenticated with request.jwt.claims set), recomputes the features now,
 * scores, persists like the worker and answers with the score, its drivers,
 * what moved it, the MEDDICC coverage and the peer benchmark. The HTTP loop
 * only hands requests to the API thread, which does the blocking work. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "openapi.h"
#include "base/common.h"
#include "base/sb.h"
#include "base/queue.h"
#include "infra/jwt.h"
#include "base/log.h"
#include "scoring.h"

#define API_MAX_BODY 65536
/* Requests are served by this many threads, each with its own Postgres
 * session and caches: a request waits on a dozen round trips and two
 * commits, so one thread would cap the endpoint near 60 requests/s. */
#define API_THREADS 4
/* Requests waiting for a thread; past this /api/predict answers 503
 * (retry-after 1). */
#define API_QUEUE_MAX 1024

typedef struct api_job_s api_job_t;

struct api_job_s {
    char *auth;
    char *body;
    size_t body_len;
    char traceparent[DS_TRACEPARENT_SIZE];
    int64_t received_mono_us;
    int status;
    json_t *resp;
    char www_auth[256];
    ds_http_pending_t *pending; /* the request, answered by finish */
};

typedef struct {
    ds_service_t *svc;
    ds_queue_t *queue;
    ds_http_deferred_t *deferred;
    pthread_t threads[API_THREADS];
    int started;
    ds_jwt_verifier_t *jwt;
    ds_http_cors_t *cors;
    ds_metric_t *m_latency;
} api_t;

static void job_free(api_job_t *j) {
    free(j->auth);
    free(j->body);
    json_decref(j->resp);
    free(j);
}

static void fail(api_job_t *j, int status, const char *code, const char *msg) {
    j->status = status;
    json_decref(j->resp);
    j->resp = json_pack("{s:s, s:s}", "error", code, "message", msg);
}

/* ---- loop thread -------------------------------------------------------------- */

static void count(api_t *a, int status) {
    char lab[64];
    snprintf(lab, sizeof lab, "route=\"/api/predict\",status=\"%d\"", status);
    ds_metric_add(
        ds_metrics_counter(a->svc->metrics, "http_requests_total", "API requests by route and status", lab),
        1);
}

static int on_predict(void *ud, h2o_req_t *req) {
    api_t *a = ud;
    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/api/predict")))
        return -1;
    if (ds_http_cors(a->cors, req)) {
        count(a, req->res.status);
        return 0;
    }
    if (!ds_http_method_is(req, "POST")) {
        count(a, 405);
        ds_http_add_header(req, "allow", "POST");
        ds_http_respond_error(req, 405, "method_not_allowed", "use POST");
        return 0;
    }
    if (req->entity.len > API_MAX_BODY) {
        count(a, 413);
        ds_http_respond_error(req, 413, "payload_too_large", "the body is larger than 64 KiB");
        return 0;
    }
    if (ds_service_stopping(a->svc)) {
        count(a, 503);
        ds_http_add_header(req, "retry-after", "1");
        ds_http_respond_error(req, 503, "shutting_down", "the service is stopping; retry");
        return 0;
    }
    char buf[DS_HTTP_AUTHORIZATION_MAX + 1];
    int alen = ds_http_header(req, "authorization", buf, sizeof buf);
    if (alen > DS_HTTP_AUTHORIZATION_MAX) {
        count(a, 401);
        char wa[256];
        ds_jwt_www_authenticate(DS_HTTP_AUTHORIZATION_TOO_LONG, wa, sizeof wa);
        ds_http_add_header(req, "www-authenticate", wa);
        ds_http_respond_error(req, 401, "invalid_token", DS_HTTP_AUTHORIZATION_TOO_LONG);
        return 0;
    }
    api_job_t *j = ds_calloc(1, sizeof *j);
    if (alen >= 0) j->auth = ds_strdup(buf);
    char tp[128];
    ds_event_traceparent_child(ds_http_header(req, "traceparent", tp, sizeof tp) >= 0 ? tp : NULL,
                               j->traceparent);
    char ctype[128];
    int clen = ds_http_header(req, "content-type", ctype, sizeof ctype);
    if (clen < 0 || clen >= (int)sizeof ctype || !ds_http_media_type_is(ctype, "application/json"))
        j->status = 415; /* decided after authentication, so 401 wins */
    j->body = ds_strndup(req->entity.base ? req->entity.base : "", req->entity.len);
    j->body_len = req->entity.len;
    j->received_mono_us = ds_mono_us();
    j->pending = ds_http_defer(a->deferred, req, j);
    if (ds_queue_try_push(a->queue, j) != 0) {
        fail(j, 503, "overloaded", "too many requests are waiting; retry");
        ds_http_deferred_done(a->deferred, j->pending);
    }
    return 0;
}

/* Answers a finished job (req NULL: its client is gone) and frees it. */
static void finish(void *ud, void *job, h2o_req_t *req) {
    api_t *a = ud;
    api_job_t *j = job;
    count(a, j->status);
    if (req) {
        if (j->www_auth[0]) ds_http_add_header(req, "www-authenticate", j->www_auth);
        if (j->status == 503) ds_http_add_header(req, "retry-after", "1");
        json_t *resp = j->resp;
        j->resp = NULL;
        ds_http_respond_json(req, j->status, resp ? resp : json_object());
    }
    ds_metric_observe(a->m_latency, (double)(ds_mono_us() - j->received_mono_us) / 1e6);
    job_free(j);
}

/* ---- API thread ------------------------------------------------------------------ */

typedef struct {
    api_t *a;
    ds_pg_t *pg;
    ds_org_cache_t *orgs;
    scorer_t *scorer;
    uint64_t generation;
} api_thread_t;

static void on_notify(void *ud, const char *channel, const char *payload, int pid) {
    (void)channel;
    (void)pid;
    api_thread_t *t = ud;
    scorer_invalidate(t->scorer, payload && *payload ? payload : NULL);
}

/* What the RLS-scoped read found: the opportunity's org and account, and its
 * peer benchmark (json null when it has none yet). */
typedef struct {
    int found;
    char opp_id[37], org_id[37], account_id[37];
    json_t *benchmark;
} api_visible_t;

static int on_visible_row(void *ud, void *tag, const PGresult *res, int err) {
    api_visible_t *v = ud;
    if (!tag || err != 0 || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) return 0;
    v->found = 1;
    snprintf(v->opp_id, sizeof v->opp_id, "%s", PQgetvalue(res, 0, 7));
    snprintf(v->org_id, sizeof v->org_id, "%s", PQgetvalue(res, 0, 0));
    snprintf(v->account_id, sizeof v->account_id, "%s", PQgetvalue(res, 0, 1));
    if (!PQgetisnull(res, 0, 2)) {
        json_t *metrics = json_loads(PQgetvalue(res, 0, 5), 0, NULL);
        v->benchmark =
            json_pack("{s:s, s:s, s:i, s:o, s:s}", "cohort_key", PQgetvalue(res, 0, 2), "match_level",
                      PQgetvalue(res, 0, 3), "cohort_size", atoi(PQgetvalue(res, 0, 4)), "metrics",
                      metrics ? metrics : json_object(), "as_of", PQgetvalue(res, 0, 6));
    }
    return 0;
}

/* The RLS check and the benchmark read, in one round trip: as role
 * authenticated with the caller's claims, is the opportunity (key: its id,
 * or its CRM id when by_external) visible, and what is its peer benchmark?
 * Returns 1 visible, 0 not (missing and hidden look the same), or a
 * negative pg class. */
static int visible(api_thread_t *t, const ds_jwt_claims_t *c, const char *key, bool by_external,
                   api_visible_t *out, char *errstr, size_t errsz) {
    static int row_tag;
    ds_pg_batch_t *b = NULL;
    int rc = ds_pg_batch_begin(t->pg, &b);
    if (rc != 0) return rc;
    ds_pg_batch_add_sql(b, "BEGIN", NULL);
    ds_pg_batch_add_sql(b, "SET LOCAL ROLE authenticated", NULL);
    const char *v1[] = {c->claims_json};
    ds_pg_batch_add_params(b, "select set_config('request.jwt.claims', $1, true)", 1, v1, NULL, NULL, NULL);
    const char *v2[] = {key};
    ds_pg_batch_add_prepared(b, by_external ? "ds_api_visible_external" : "ds_api_visible", 1, v2, NULL, NULL,
                             &row_tag);
    ds_pg_batch_add_sql(b, "ROLLBACK", NULL);
    rc = ds_pg_batch_run(b, on_visible_row, out, errstr, errsz);
    ds_pg_batch_end(b);
    if (rc != 0) {
        json_decref(out->benchmark);
        out->benchmark = NULL;
        return rc;
    }
    return out->found;
}

/* The longest CRM id ingest stores (services/ingest/record.c). */
#define API_EXTERNAL_ID_MAX 255

/* 400 naming the field, as ingest names a record's: {"error":
 * "invalid_request", "message", "errors": [{"field", "problem"}]}. */
static void fail_field(api_job_t *j, const char *field, const char *problem) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s %s", field, problem);
    j->status = 400;
    json_decref(j->resp);
    j->resp = json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "error", "invalid_request", "message", msg, "errors",
                        "field", field, "problem", problem);
}

/* A CRM id as ingest stores it: a string (or an integer, as its text),
 * spaces around it trimmed. Returns 0, or sets the 400 on j. */
static int read_external_id(api_job_t *j, const json_t *ext, char *key, size_t keysz) {
    char num[32];
    const char *s = json_is_string(ext) ? json_string_value(ext) : NULL;
    if (json_is_integer(ext)) {
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(ext));
        s = num;
    }
    if (!s) {
        fail_field(j, "external_id", "must be a string");
        return -1;
    }
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n == 0 || n >= keysz) {
        fail_field(j, "external_id", n == 0 ? "is required" : "is longer than 255 characters");
        return -1;
    }
    snprintf(key, keysz, "%.*s", (int)n, s);
    return 0;
}

/* The deal the body names: {"opportunity_id": "<uuid>"} or
 * {"external_id": "<CRM id>"}, exactly one (null counts as absent). Fills
 * key and *by_external; returns 0, or sets the 400 on j. */
static int read_target(api_job_t *j, char *key, size_t keysz, bool *by_external) {
    json_t *body = json_loadb(j->body, j->body_len, 0, NULL);
    json_t *id = json_object_get(body, "opportunity_id"), *ext = json_object_get(body, "external_id");
    if (json_is_null(id)) id = NULL;
    if (json_is_null(ext)) ext = NULL;
    int rc = -1;
    if (!body || !json_is_object(body))
        fail(j, 400, "invalid_json",
             "the body must be a JSON object {\"opportunity_id\": \"<uuid>\"} or {\"external_id\": \"<CRM "
             "id>\"}");
    else if (id && ext)
        fail_field(j, "external_id", "cannot be given with opportunity_id (give one of them)");
    else if (!id && !ext)
        fail_field(j, "opportunity_id", "is required (or external_id)");
    else if (id && (!json_is_string(id) || !ds_uuid_valid(json_string_value(id))))
        fail_field(j, "opportunity_id", "must be a UUID");
    else if (id)
        rc = snprintf(key, keysz, "%s", json_string_value(id)) < 0;
    else
        rc = read_external_id(j, ext, key, keysz);
    *by_external = ext != NULL;
    json_decref(body);
    return rc;
}

static void handle(api_thread_t *t, api_job_t *j) {
    api_t *a = t->a;
    char err[512];
    const char *token = j->auth ? ds_jwt_bearer_token(j->auth) : NULL;
    if (!token) {
        fail(j, 401, "unauthorized", "missing Authorization: Bearer <session JWT>");
        ds_jwt_www_authenticate(NULL, j->www_auth, sizeof j->www_auth);
        return;
    }
    ds_jwt_claims_t claims;
    if (!a->jwt || ds_jwt_verify(a->jwt, token, ds_now_us() / 1000000, &claims, err, sizeof err) != 0) {
        if (!a->jwt) snprintf(err, sizeof err, "no JWT keys are configured");
        fail(j, 401, "invalid_token", err);
        ds_jwt_www_authenticate(err, j->www_auth, sizeof j->www_auth);
        return;
    }
    if (!ds_uuid_valid(claims.sub)) {
        /* Policies compare auth.uid(), a uuid, so a sub that is none is no
         * user of ours (Supabase's are UUIDs). */
        ds_jwt_claims_clear(&claims);
        fail(j, 401, "invalid_token", "the token's sub is not a UUID");
        ds_jwt_www_authenticate("the token's sub is not a UUID", j->www_auth, sizeof j->www_auth);
        return;
    }
    if (j->status == 415) {
        ds_jwt_claims_clear(&claims);
        fail(j, 415, "unsupported_media_type", "Content-Type must be application/json");
        return;
    }
    api_visible_t v = {0};
    char key[API_EXTERNAL_ID_MAX + 1];
    bool by_external = false;
    if (read_target(j, key, sizeof key, &by_external) != 0) goto done;
    if (ds_pg_ensure(t->pg, 1000, NULL, err, sizeof err) != 0) {
        fail(j, 503, "database_unavailable", "Postgres is unreachable; retry");
        goto done;
    }
    if (ds_pg_generation(t->pg) != t->generation) {
        t->generation = ds_pg_generation(t->pg);
        scorer_invalidate(t->scorer, NULL);
        /* The rows an API call writes are derived (the features and score of
         * now, recomputed by the next change or call): they need not wait for
         * the WAL flush. A crash can lose the last few hundred ms of them,
         * never an input. */
        ds_pg_exec(t->pg, "set synchronous_commit to off", NULL, err, sizeof err);
    }
    ds_pg_notifies(t->pg, on_notify, t);
    int vis = visible(t, &claims, key, by_external, &v, err, sizeof err);
    const char *org_id = v.org_id, *account_id = v.account_id;
    if (vis < 0) {
        if (!ds_pg_is_connected(t->pg)) ds_pg_reset(t->pg);
        ds_warn("predict: visibility check failed: %s", err);
        /* Never the database's words: they echo the caller's input. */
        fail(j, vis == DS_ERETRY ? 503 : 500, vis == DS_ERETRY ? "database_unavailable" : "internal",
             "could not check access to the opportunity");
        goto done;
    }
    if (vis == 0) {
        /* Missing and not visible look the same. */
        fail(j, 404, "not_found", "no such opportunity");
        goto done;
    }
    /* Features now, through the same loader and engine as the worker. */
    const char *opp = v.opp_id;
    const char *ids[] = {opp};
    ds_opp_batch_t *b = NULL;
    const ds_org_ctx_t *oc = NULL;
    int rc = ds_opp_batch_load(t->pg, ids, 1, &b, err, sizeof err);
    if (rc == 0) rc = ds_org_cache_get(t->orgs, t->pg, org_id, &oc, err, sizeof err);
    if (rc != 0 || ds_opp_batch_count(b) != 1) {
        if (!ds_pg_is_connected(t->pg)) ds_pg_reset(t->pg);
        ds_opp_batch_destroy(b);
        fail(j, 503, "database_unavailable", "could not load the opportunity; retry");
        goto done;
    }
    ds_opp_raw_t *raw = ds_opp_batch_raw(b, 0);
    raw->stages = oc->stages;
    int64_t now = ds_now_us();
    ds_feature_vec_t vec;
    ds_features_compute(raw, now, oc->winrate, oc->lexicon, &vec);
    char *fjson = ds_features_to_json(&vec), *mjson = ds_meddicc_result_to_json(&vec.meddicc);
    char asof[40];
    ds_format_time_us(now, asof, sizeof asof);
    const char *sv[] = {org_id, opp, asof, DS_FEATURE_VERSION, fjson, mjson};
    rc = ds_pg_exec_prepared(t->pg, "ds_api_snapshot", 6, sv, NULL, NULL, NULL, err, sizeof err);
    scoring_item_t it = {.org_id = org_id,
                         .opp_id = opp,
                         .account_id = account_id[0] ? account_id : NULL,
                         .as_of_us = now,
                         .traceparent = j->traceparent,
                         .values = vec.values,
                         .meddicc_json = mjson};
    scoring_item_from_raw(&it, raw);
    if (rc == 0) rc = scoring_persist(t->pg, t->orgs, t->scorer, a->svc->cfg->top_k, &it, 1, err, sizeof err);
    if (rc != 0) {
        if (!ds_pg_is_connected(t->pg)) ds_pg_reset(t->pg);
        ds_warn("predict: could not score %s: %s", opp, err);
        fail(j, rc == DS_ERETRY ? 503 : 500, rc == DS_ERETRY ? "database_unavailable" : "internal",
             "could not score the opportunity");
    } else {
        uint8_t *buf = NULL;
        size_t len = 0;
        char eid[37];
        scoring_event(&it, &buf, &len, eid);
        char *topic = ds_config_topic(a->svc->cfg, DS_TOPIC_PREDICTION_MADE);
        ds_event_meta_t meta = {.id = eid,
                                .source = "/dealscore/scoring/api",
                                .type = DS_CE_TYPE_PREDICTION_MADE,
                                .time_us = now,
                                .traceparent = j->traceparent};
        if (ds_producer_send(a->svc->producer, topic, opp, strlen(opp), buf, len, &meta, NULL) != 0)
            ds_warn("predict: prediction.made for %s was not queued (the row is stored)", opp);
        free(topic);
        free(buf);
        json_t *meddicc = json_loads(mjson, 0, NULL);
        /* The drivers as the predictions row has them (model.h). */
        ds_sb_t js = {0};
        score_drivers_write(&js, &it.score);
        json_t *drivers = json_loadb(js.p, js.len, 0, NULL);
        js.len = 0;
        ds_score_change_write(&js, it.previous, it.score.proba, it.changes, it.n_changes);
        json_t *change = json_loadb(js.p, js.len, 0, NULL);
        free(js.p);
        j->status = 200;
        json_decref(j->resp);
        j->resp =
            json_pack("{s:s, s:f, s:s, s:s, s:b, s:o, s:o, s:o, s:o}", "opportunity_id", opp, "proba_close",
                      it.score.proba, "model_version", it.version, "as_of", asof, "is_prior",
                      it.score.is_prior, "drivers", drivers ? drivers : json_object(), "change",
                      change ? change : json_object(), "meddicc", meddicc ? meddicc : json_object(),
                      "benchmark", v.benchmark ? json_incref(v.benchmark) : json_null());
    }
    scoring_item_clear(&it);
    free(fjson);
    free(mjson);
    ds_opp_batch_destroy(b);
done:
    json_decref(v.benchmark);
    ds_jwt_claims_clear(&claims);
}

static void *api_main(void *arg) {
    api_t *a = arg;
    api_thread_t t = {.a = a};
    char err[256];
    if (ds_pg_new(&t.pg, a->svc->cfg->database_url, "dealscore-scoring-api", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    ds_pg_listen(t.pg, "dealscore_models", err, sizeof err);
    scorer_register(t.pg);
    /* Prepared once per connection: with RLS, planning the visibility read
     * cost about as much as running it. */
#define API_VISIBLE_SQL                                                                                      \
    "select o.org_id, coalesce(o.account_id::text, ''), b.cohort_key, b.match_level,"                        \
    " c.cohort_size, c.metrics::text,"                                                                       \
    " to_char(c.as_of at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), o.id"                        \
    " from public.opportunities o"                                                                           \
    " left join public.opportunity_benchmarks b on b.opportunity_id = o.id"                                  \
    " left join public.benchmarks_cached c on c.org_id = b.org_id and c.cohort_key = b.cohort_key"
    ds_pg_add_statement(t.pg, "ds_api_visible",
                        API_VISIBLE_SQL " where o.id = $1::uuid and not o.placeholder", 1);
    /* By CRM id: unique per org, and the caller's org is the JWT's (RLS
     * would hide the others; naming it uses the (org_id, external_id) index). */
    ds_pg_add_statement(t.pg, "ds_api_visible_external",
                        API_VISIBLE_SQL " where o.org_id = (select dealscore.current_org_id())"
                                        " and o.external_id = $1 and not o.placeholder",
                        1);
    ds_pg_add_statement(
        t.pg, "ds_api_snapshot",
        "insert into public.features_snapshot (org_id, opportunity_id, as_of, feature_version,"
        " features, meddicc) select $1::uuid, $2::uuid, $3::timestamptz, $4, $5::json, "
        "$6::json" DS_SQL_WHERE_DEAL_EXISTS(
            "$2::uuid", "$1::uuid") " on conflict (opportunity_id, as_of, feature_version) do nothing",
        6);
    t.orgs = ds_org_cache_new(60000);
    t.scorer = scorer_new(60000, a->svc->cfg->prior_min_closed);
    void *item;
    while (ds_queue_pop(a->queue, &item, 1)) {
        api_job_t *j = item;
        handle(&t, j);
        ds_http_deferred_done(a->deferred, j->pending);
    }
    scorer_destroy(t.scorer);
    ds_org_cache_destroy(t.orgs);
    ds_pg_destroy(t.pg);
    return NULL;
}

int scoring_init(ds_service_t *svc, void **state, char *errstr, size_t errstr_size) {
    api_t *a = ds_calloc(1, sizeof *a);
    a->svc = svc;
    const ds_config_t *cfg = svc->cfg;
    if ((cfg->supabase_jwks && *cfg->supabase_jwks) ||
        (cfg->supabase_jwt_secret && *cfg->supabase_jwt_secret)) {
        if (ds_jwt_verifier_new(&a->jwt, cfg->supabase_jwks, cfg->supabase_jwt_secret, errstr, errstr_size) !=
            0) {
            free(a);
            return DS_EINVAL;
        }
    } else {
        ds_warn("neither SUPABASE_JWKS nor SUPABASE_JWT_SECRET is set: /api/predict answers 401 to everyone");
    }
    /* Browsers keep a preflight's answer this long (Chromium caps it at 2 h). */
    a->cors = ds_http_cors_new(cfg->cors_origins, "POST", "Authorization, Content-Type", 600);
    a->queue = ds_queue_new(API_QUEUE_MAX);
    a->deferred = ds_http_deferred_new(&svc->loop, finish, a);
    a->m_latency = ds_metrics_histogram(svc->metrics, "api_predict_seconds", "POST /api/predict latency",
                                        NULL, ds_metrics_latency_buckets, ds_metrics_latency_nbuckets);
    ds_http_route(svc->http, "/api/predict", on_predict, a);
    ds_http_route_document(svc->http, "/openapi.json", "application/json", ds_openapi_json,
                           ds_openapi_json_len);
    for (int i = 0; i < API_THREADS; i++) {
        if (pthread_create(&a->threads[i], NULL, api_main, a) != 0)
            ds_panic("could not start the API threads");
        a->started++;
    }
    *state = a;
    return 0;
}

void scoring_stopping(ds_service_t *svc, void *state) {
    (void)svc;
    api_t *a = state;
    ds_queue_shutdown(a->queue);
    for (int i = 0; i < a->started; i++) pthread_join(a->threads[i], NULL);
    a->started = 0;
    ds_http_deferred_flush(a->deferred);
}

void scoring_fini(ds_service_t *svc, void *state) {
    api_t *a = state;
    if (!a) return;
    if (a->started) scoring_stopping(svc, a);
    ds_http_deferred_destroy(a->deferred);
    ds_jwt_verifier_destroy(a->jwt);
    ds_http_cors_destroy(a->cors);
    ds_queue_destroy(a->queue);
    free(a);
}
