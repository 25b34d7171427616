/* Webhook API, the validator thread and the writer thread. The loop thread
 * only checks the request's shape and hands the body over; the validator
 * authenticates and validates; the writer group-commits several requests
 * per transaction. Both hand responses back to the loop. The validator
 * parses the next requests while the writer's transaction runs, so the
 * writer's connection is busy nearly all the time under load. */
#include "openapi.h"
#include "ingest.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/common.h"
#include "base/sb.h"
#include "base/log.h"
#include "signature.h"
#include "store.h"

/* Requests waiting for the validator; past this the webhook answers 503
 * (retry-after 1) instead of holding more bodies in memory. */
#define INGEST_QUEUE_MAX 4096

/* Seconds a signed request's reservation stays while the request is in
 * flight: copies of it get 503 until it committed or failed, and once a
 * holder that died (a crash between reservation and commit) has left it
 * this long, a copy takes it over. Far above a group commit's time, deadlock
 * retries included. */
#define SIG_LEASE_S 60

struct ingest_job_s {
    rec_kind_t kind;
    rec_profile_t profile;
    bool partial; /* ?partial=true */
    char *body;
    size_t body_len;
    char *auth;          /* Authorization header, or NULL */
    char *sig;           /* x-dealscore-signature, or NULL */
    char *sig_ts;        /* x-dealscore-timestamp, or NULL */
    char token_hash[65]; /* of the bearer token, "" without one */
    char traceparent[DS_TRACEPARENT_SIZE];
    int64_t received_mono_us;

    /* parsed by the validator */
    char org_id[37];
    json_t *stage_outcome;
    char sig_hex[65]; /* the signature reserved for this request, or "" */
    record_t *recs;
    size_t nrecs;
    store_tag_t *tags;
    /* partial mode: the records in the request, each stored record's index
     * in it (rec_index[0..nrecs)), and the problems of the others */
    size_t nsent;
    int *rec_index;
    rec_problems_t probs;

    /* result */
    int status;
    json_t *resp;
    const char *retry_after;
    bool www_auth;
    bool replayed; /* the answer is that of an earlier copy of this signed request */

    /* the request, answered by finish_job */
    ds_http_pending_t *pending;
};

/* ---- metrics ------------------------------------------------------------ */

static void count_request(ingest_t *in, const char *route, int status) {
    char labels[96];
    snprintf(labels, sizeof labels, "route=\"%s\",status=\"%d\"", route, status);
    ds_metric_add(ds_metrics_counter(in->svc->metrics, "http_requests_total",
                                     "Webhook requests by route and status", labels),
                  1);
}

static void count_records(ingest_t *in, rec_kind_t kind, const char *result, double n) {
    if (n <= 0) return;
    char labels[96];
    snprintf(labels, sizeof labels, "kind=\"%s\",result=\"%s\"", rec_kind_plural(kind), result);
    ds_metric_add(ds_metrics_counter(in->svc->metrics, "ingest_records_total",
                                     "Records by kind and outcome (changed, unchanged, rejected)", labels),
                  n);
}

/* A signed request whose signature was already reserved, by what it got. */
static void count_repeat(ingest_t *in, const char *result) {
    char labels[64];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    ds_metric_add(ds_metrics_counter(in->svc->metrics, "ingest_signed_repeats_total",
                                     "Signed requests whose signature was reserved already, by answer"
                                     " (answered: the original answer; in_progress: 503; refused: 401)",
                                     labels),
                  1);
}

/* ---- jobs --------------------------------------------------------------- */

static void job_free(ingest_job_t *j) {
    free(j->body);
    free(j->auth);
    free(j->sig);
    free(j->sig_ts);
    json_decref(j->stage_outcome);
    json_decref(j->resp);
    for (size_t i = 0; i < j->nrecs; i++) record_clear(&j->recs[i]);
    free(j->recs);
    free(j->tags);
    free(j->rec_index);
    rec_problems_free(&j->probs);
    free(j);
}

static void job_fail(ingest_job_t *j, int status, const char *code, const char *message) {
    j->status = status;
    json_decref(j->resp);
    j->resp = json_pack("{s:s, s:s}", "error", code, "message", message);
}

/* ---- HTTP (loop thread) ------------------------------------------------- */

static void complete_jobs(ingest_t *in, ingest_job_t **jobs, size_t n);

static char *header_dup(h2o_req_t *req, const char *name) {
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0) return NULL;
    return ds_strndup(req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

/* 400 for a query parameter of no known value, naming it. */
static void respond_bad_param(h2o_req_t *req, const char *param) {
    bool profile = strcmp(param, "profile") == 0;
    ds_http_respond_json(
        req, 400,
        json_pack("{s:s, s:s, s:s}", "error", profile ? "bad_profile" : "bad_partial", "message",
                  profile ? "profile must be native, salesforce or hubspot" : "partial must be true or false",
                  "field", param));
}

static int on_webhook(void *ud, h2o_req_t *req) {
    ingest_t *in = ud;
    ingest_target_t target;
    const char *bad_param = NULL;
    bool has_query = req->query_at != SIZE_MAX;
    int rrc = ingest_route(req->path_normalized.base, req->path_normalized.len,
                           has_query ? req->path.base + req->query_at + 1 : NULL,
                           has_query ? req->path.len - req->query_at - 1 : 0, &target, &bad_param);
    if (rrc == DS_ENOTFOUND) return -1;
    char route[48];
    snprintf(route, sizeof route, "/v1/%s", rec_kind_plural(target.kind));
    if (!ds_http_method_is(req, "POST")) {
        count_request(in, route, 405);
        ds_http_add_header(req, "allow", "POST");
        ds_http_respond_error(req, 405, "method_not_allowed", "use POST");
        return 0;
    }
    if (ds_service_stopping(in->svc)) {
        count_request(in, route, 503);
        ds_http_add_header(req, "retry-after", "1");
        ds_http_respond_error(req, 503, "shutting_down", "the service is stopping; retry");
        return 0;
    }
    char ctype[128];
    int clen = ds_http_header(req, "content-type", ctype, sizeof ctype);
    if (clen < 0 || clen >= (int)sizeof ctype || !ds_http_media_type_is(ctype, "application/json")) {
        count_request(in, route, 415);
        ds_http_respond_error(req, 415, "unsupported_media_type", "Content-Type must be application/json");
        return 0;
    }
    if (req->entity.len > (size_t)in->cfg->max_body_bytes) {
        count_request(in, route, 413);
        char msg[96];
        snprintf(msg, sizeof msg, "body is larger than %d bytes", in->cfg->max_body_bytes);
        ds_http_respond_error(req, 413, "payload_too_large", msg);
        return 0;
    }
    if (rrc != 0) {
        count_request(in, route, 400);
        respond_bad_param(req, bad_param);
        return 0;
    }
    char *auth = header_dup(req, "authorization");
    if (auth && strlen(auth) > DS_HTTP_AUTHORIZATION_MAX) {
        free(auth);
        count_request(in, route, 401);
        ds_http_add_header(req, "www-authenticate", "Bearer realm=\"dealscore\"");
        ds_http_respond_error(req, 401, "unauthorized", DS_HTTP_AUTHORIZATION_TOO_LONG);
        return 0;
    }
    ingest_job_t *j = ds_calloc(1, sizeof *j);
    j->kind = target.kind;
    j->profile = target.profile;
    j->partial = target.partial;
    j->body = ds_strndup(req->entity.base ? req->entity.base : "", req->entity.len);
    j->body_len = req->entity.len;
    j->auth = auth;
    j->sig = header_dup(req, "x-dealscore-signature");
    j->sig_ts = header_dup(req, "x-dealscore-timestamp");
    char *tp = header_dup(req, "traceparent");
    ds_event_traceparent_child(tp, j->traceparent);
    free(tp);
    j->received_mono_us = ds_mono_us();
    j->pending = ds_http_defer(in->deferred, req, j);
    if (ds_queue_try_push(in->queue, j) != 0) {
        job_fail(j, 503, "overloaded", "too many requests are waiting; retry");
        j->retry_after = "1";
        complete_jobs(in, &j, 1);
    }
    return 0;
}

/* Answers a finished job (req NULL: its client is gone) and frees it. */
static void finish_job(void *ud, void *job, h2o_req_t *req) {
    ingest_t *in = ud;
    ingest_job_t *j = job;
    char route[48];
    snprintf(route, sizeof route, "/v1/%s", rec_kind_plural(j->kind));
    count_request(in, route, j->status);
    if (req) {
        if (j->retry_after) ds_http_add_header(req, "retry-after", j->retry_after);
        if (j->www_auth) ds_http_add_header(req, "www-authenticate", "Bearer realm=\"dealscore\"");
        if (j->replayed) ds_http_add_header(req, "x-dealscore-replayed", "true");
        json_t *resp = j->resp;
        j->resp = NULL;
        ds_http_respond_json(req, j->status, resp ? resp : json_object());
    }
    job_free(j);
}

/* ---- validator and writer threads ---------------------------------------- */

/* A token as the validator last read it. */
typedef struct {
    char hash[65];
    char org_id[37];
    bool revoked;
    char *hmac_secret;
    json_t *stage_outcome;
} token_entry_t;

/* Tokens the validator keeps at most; past this it forgets them all. */
#define TOKENS_MAX 10000

/* One thread's state: the validator uses pg for token lookups and the
 * signature reservations; the writer uses pg for the group commits. */
typedef struct {
    ingest_t *in;
    ds_pg_t *pg;
    /* validator: the tokens read, valid while the auth generation is
     * tokens_gen (-1: none read) */
    token_entry_t *tokens;
    size_t ntokens, captokens;
    long long tokens_gen;
    int64_t plans_at;
    /* writer: the connection (ds_pg_generation) set to generic plans */
    uint64_t generic_gen;
    int64_t pruned_at;
} writer_t;

/* The auth generation (dealscore_internal.ingest_auth_generation) moves
 * with every change of a token or of an org's settings. A batch whose
 * tokens are all known reads only it; otherwise one statement reads the
 * batch's tokens with it, from the same snapshot. */
static const char *SQL_AUTH_GENERATION = "select n from dealscore_internal.ingest_auth_generation where id";
static const char *SQL_AUTH_TOKENS =
    "select g.n, t.token_hash, t.org_id, t.revoked_at is not null, t.hmac_secret,"
    " o.settings->'stage_outcome'"
    " from dealscore_internal.ingest_auth_generation g"
    " left join (dealscore_internal.ingest_tokens t join public.orgs o on o.id = t.org_id)"
    " on t.token_hash = any($1::text[])"
    " where g.id";

static void tokens_clear(writer_t *v) {
    for (size_t i = 0; i < v->ntokens; i++) {
        free(v->tokens[i].hmac_secret);
        json_decref(v->tokens[i].stage_outcome);
    }
    v->ntokens = 0;
    v->tokens_gen = -1;
}

/* The bearer token of an Authorization value, or NULL. */
static const char *bearer_token(const char *a) {
    if (!a || strncasecmp(a, "Bearer ", 7) != 0 || !a[7]) return NULL;
    a += 7;
    while (*a == ' ') a++;
    return a;
}

static const token_entry_t *token_find(const writer_t *v, const char *hash) {
    for (size_t i = 0; i < v->ntokens; i++)
        if (strcmp(v->tokens[i].hash, hash) == 0) return &v->tokens[i];
    return NULL;
}

/* 0 when res, a read of the auth generation, has its row; else DS_EFATAL
 * with errstr (the migration inserts the one row, nothing deletes it). */
static int generation_row(const PGresult *res, char *errstr, size_t errsz) {
    if (PQntuples(res) > 0) return 0;
    snprintf(errstr, errsz, "dealscore_internal.ingest_auth_generation has no row");
    return DS_EFATAL;
}

/* Reads the auth generation into *gen. Returns 0 or a pg class. */
static int auth_generation(writer_t *v, long long *gen, char *errstr, size_t errsz) {
    PGresult *res = NULL;
    int rc = ds_pg_exec_prepared(v->pg, "ds_auth_generation", 0, NULL, NULL, NULL, &res, errstr, errsz);
    if (rc != 0) return rc;
    rc = generation_row(res, errstr, errsz);
    if (rc == 0) *gen = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* Reads the tokens of hashes (a text[] literal) and the generation they
 * belong to into v->tokens, forgetting the tokens of an older generation.
 * Returns 0 or a pg class. */
static int tokens_read(writer_t *v, const char *hashes, char *errstr, size_t errsz) {
    PGresult *res = NULL;
    const char *p[] = {hashes};
    int rc = ds_pg_exec_prepared(v->pg, "ds_auth_tokens", 1, p, NULL, NULL, &res, errstr, errsz);
    if (rc != 0) return rc;
    rc = generation_row(res, errstr, errsz);
    if (rc != 0) {
        PQclear(res);
        return rc;
    }
    ds_metric_add(ds_metrics_counter(v->in->svc->metrics, "ingest_token_lookups_total",
                                     "Webhook token lookups in Postgres (tokens read before are not"
                                     " looked up again while no token or org setting changed)",
                                     NULL),
                  1);
    int rows = PQntuples(res);
    long long gen = atoll(PQgetvalue(res, 0, 0));
    if (gen != v->tokens_gen || v->ntokens + (size_t)rows > TOKENS_MAX) tokens_clear(v);
    v->tokens_gen = gen;
    if (v->ntokens + (size_t)rows > v->captokens) {
        v->captokens = v->ntokens + (size_t)rows;
        v->tokens = ds_realloc(v->tokens, v->captokens * sizeof *v->tokens);
    }
    for (int r = 0; r < rows; r++) {
        if (PQgetisnull(res, r, 1) || token_find(v, PQgetvalue(res, r, 1))) continue;
        token_entry_t *t = &v->tokens[v->ntokens++];
        memset(t, 0, sizeof *t);
        snprintf(t->hash, sizeof t->hash, "%s", PQgetvalue(res, r, 1));
        snprintf(t->org_id, sizeof t->org_id, "%s", PQgetvalue(res, r, 2));
        t->revoked = PQgetvalue(res, r, 3)[0] == 't';
        if (!PQgetisnull(res, r, 4)) t->hmac_secret = ds_strdup(PQgetvalue(res, r, 4));
        if (!PQgetisnull(res, r, 5)) t->stage_outcome = json_loads(PQgetvalue(res, r, 5), 0, NULL);
    }
    PQclear(res);
    return 0;
}

/* Makes v->tokens hold the current state of the tokens of jobs[0..n) and
 * sets each job's token_hash: one statement, none without a token. Returns
 * 0, or a pg class when the database could not be asked. */
static int tokens_fetch(writer_t *v, ingest_job_t **jobs, size_t n) {
    ds_sb_t arr = {0};
    ds_sb_puts(&arr, "{");
    size_t nh = 0;
    bool all_known = true;
    for (size_t i = 0; i < n; i++) {
        const char *token = bearer_token(jobs[i]->auth);
        if (!token) continue;
        ingest_token_hash(token, jobs[i]->token_hash);
        ds_sb_printf(&arr, "%s%s", nh++ ? "," : "", jobs[i]->token_hash);
        all_known &= token_find(v, jobs[i]->token_hash) != NULL;
    }
    ds_sb_puts(&arr, "}");
    char errstr[256];
    int rc = nh ? ds_pg_ensure(v->pg, 0, NULL, errstr, sizeof errstr) : 0;
    if (nh && rc == 0 && all_known) {
        long long gen = -1;
        rc = auth_generation(v, &gen, errstr, sizeof errstr);
        all_known = rc == 0 && gen == v->tokens_gen;
    }
    if (nh && rc == 0 && !all_known) rc = tokens_read(v, arr.p, errstr, sizeof errstr);
    free(arr.p);
    if (rc != 0) {
        ds_warn("could not look up tokens: %s", errstr);
        if (rc == DS_ERETRY) ds_pg_reset(v->pg);
        tokens_clear(v);
        return rc;
    }
    return 0;
}

/* Releases j's signature reservation, on pg when it can, else through the
 * validator's next batch. */
static void release_signature(ingest_t *in, ds_pg_t *pg, ingest_job_t *j) {
    if (!j->sig_hex[0]) return;
    char err[256];
    if (ds_pg_is_connected(pg) && signature_release(pg, j->sig_hex, err, sizeof err) == 0) {
        j->sig_hex[0] = '\0';
        return;
    }
    pthread_mutex_lock(&in->release_mu);
    /* Bounded: a reservation expires after twice the replay window anyway. */
    if (in->nreleases < 100000) {
        if (in->nreleases == in->capreleases) {
            in->capreleases = in->capreleases ? in->capreleases * 2 : 16;
            in->releases = ds_realloc(in->releases, in->capreleases * sizeof *in->releases);
        }
        memcpy(in->releases[in->nreleases++], j->sig_hex, 65);
    }
    pthread_mutex_unlock(&in->release_mu);
    j->sig_hex[0] = '\0';
}

/* Validator: releases what the writer could not, and now and then deletes
 * expired reservations. */
static void signatures_upkeep(writer_t *v) {
    ingest_t *in = v->in;
    char err[256];
    pthread_mutex_lock(&in->release_mu);
    size_t n = in->nreleases;
    char(*rel)[65] = in->releases;
    in->releases = NULL;
    in->nreleases = in->capreleases = 0;
    pthread_mutex_unlock(&in->release_mu);
    for (size_t i = 0; i < n; i++) {
        ingest_job_t tmp;
        memcpy(tmp.sig_hex, rel[i], 65);
        release_signature(in, v->pg, &tmp);
    }
    free(rel);
    if (ds_mono_us() - v->pruned_at > 60 * 1000000LL && ds_pg_is_connected(v->pg)) {
        if (signature_prune(v->pg, err, sizeof err) != 0) ds_warn("could not prune signatures: %s", err);
        v->pruned_at = ds_mono_us();
    }
}

/* What identifies a signed request besides its signature: the token, the
 * route, the parameters and the body. */
static void request_digest(const ingest_job_t *j, char out[65]) {
    ds_sb_t b = {0};
    ds_sb_printf(&b, "%s\n%s\n%d\n%d\n", j->token_hash, rec_kind_plural(j->kind), (int)j->profile,
                 (int)j->partial);
    ds_sb_put(&b, j->body, j->body_len);
    ds_sha256_hex(b.p, b.len, out);
    ds_sb_free(&b);
}

/* Reserves the verified signature hex for j. Returns true when j holds it;
 * else j's answer is set: that of the copy that committed (200 with its
 * body), a 503 while a copy is in flight, a 401 for another request. */
static bool reserve_signature(writer_t *w, ingest_job_t *j, const char hex[65]) {
    char err[256], digest[65];
    request_digest(j, digest);
    sig_reservation_t res;
    int rc = signature_reserve(w->pg, hex, digest, SIG_LEASE_S, &res, err, sizeof err);
    if (rc < 0) {
        ds_warn("could not reserve a signature: %s", err);
        if (!ds_pg_is_connected(w->pg)) ds_pg_reset(w->pg);
        job_fail(j, 503, "database_unavailable", "could not check the signature; retry");
        j->retry_after = "1";
        return false;
    }
    json_t *answer = res.state == SIG_ANSWERED ? json_loads(res.response, 0, NULL) : NULL;
    free(res.response);
    if (res.state == SIG_RESERVED) {
        memcpy(j->sig_hex, hex, 65);
        return true;
    }
    if (answer) {
        json_decref(j->resp);
        j->resp = answer;
        j->status = 200;
        j->replayed = true;
        count_repeat(w->in, "answered");
        return false;
    }
    /* An answer that does not parse counts as none yet. */
    if (res.state != SIG_OTHER) {
        job_fail(j, 503, "in_progress", "a copy of this signed request is being processed; retry");
        j->retry_after = "1";
        count_repeat(w->in, "in_progress");
        return false;
    }
    count_repeat(w->in, "refused");
    job_fail(j, 401, "replayed_signature", "this signature was already used for another request");
    return false;
}

/* Authenticates j against the batch's tokens; on failure sets its response
 * and returns false. A signed request's signature is reserved here. */
static bool authenticate(writer_t *w, ingest_job_t *j) {
    if (!j->token_hash[0]) {
        job_fail(j, 401, "unauthorized", "missing Authorization: Bearer <token>");
        j->www_auth = true;
        return false;
    }
    const token_entry_t *t = token_find(w, j->token_hash);
    if (!t) {
        job_fail(j, 401, "unauthorized", "unknown token");
        j->www_auth = true;
        return false;
    }
    if (t->revoked) {
        job_fail(j, 403, "forbidden", "token revoked");
        return false;
    }
    if (t->hmac_secret) {
        int window = w->in->cfg->hmac_window_s;
        char hex[65];
        switch (signature_check(t->hmac_secret, j->sig_ts, j->sig, j->body, j->body_len,
                                ds_now_us() / 1000000, window, hex)) {
        case SIG_MISSING:
            job_fail(j, 401, "signature_required",
                     "this token requires X-Dealscore-Timestamp and X-Dealscore-Signature");
            return false;
        case SIG_EXPIRED:
            job_fail(j, 401, "signature_expired",
                     "X-Dealscore-Timestamp is not a Unix time within the replay window");
            return false;
        case SIG_BAD:
            job_fail(j, 401, "bad_signature", "X-Dealscore-Signature does not match the body");
            return false;
        case SIG_OK: break;
        }
        if (!reserve_signature(w, j, hex)) return false;
        memcpy(j->sig_hex, hex, sizeof hex);
    }
    snprintf(j->org_id, sizeof j->org_id, "%s", t->org_id);
    j->stage_outcome = t->stage_outcome ? json_incref(t->stage_outcome) : NULL;
    return true;
}

/* Parses and validates j's body; on failure sets a 400 and returns false. */
static bool validate(writer_t *w, ingest_job_t *j) {
    json_error_t jerr;
    json_t *doc = json_loadb(j->body, j->body_len, 0, &jerr);
    if (!doc) {
        char msg[256];
        snprintf(msg, sizeof msg, "body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        json_decref(j->resp);
        j->status = 400;
        j->resp = json_pack("{s:s, s:s, s:[{s:i, s:s, s:s}]}", "error", "invalid_json", "message", msg,
                            "errors", "index", -1, "field", "", "problem", msg);
        return false;
    }
    size_t n = json_is_array(doc) ? json_array_size(doc) : 1;
    if (json_is_array(doc) && n == 0) {
        json_decref(doc);
        job_fail(j, 400, "empty", "the array holds no records");
        return false;
    }
    if (n > (size_t)w->in->cfg->max_records) {
        json_decref(doc);
        char msg[128];
        snprintf(msg, sizeof msg, "at most %d records per request", w->in->cfg->max_records);
        j->status = 413;
        json_decref(j->resp);
        j->resp = json_pack("{s:s, s:s}", "error", "too_many_records", "message", msg);
        return false;
    }
    j->recs = ds_calloc(n, sizeof *j->recs);
    j->tags = ds_calloc(n, sizeof *j->tags);
    j->rec_index = ds_calloc(n, sizeof *j->rec_index);
    j->nsent = n;
    for (size_t i = 0; i < n; i++) {
        json_t *obj = json_is_array(doc) ? json_array_get(doc, i) : doc;
        json_t *mapped = NULL;
        if (j->profile == PROFILE_SALESFORCE) obj = mapped = record_from_salesforce(j->kind, obj, &w->in->sf);
        if (j->profile == PROFILE_HUBSPOT) obj = mapped = record_from_hubspot(j->kind, obj, &w->in->hs);
        if (record_parse(j->kind, obj, (int)i, false, &j->recs[j->nrecs], &j->probs) == 0)
            j->rec_index[j->nrecs++] = (int)i;
        json_decref(mapped);
    }
    json_decref(doc);
    count_records(w->in, j->kind, "rejected", (double)(n - j->nrecs));
    /* In partial mode the valid records go on, the others are reported
     * with the answer. */
    if (j->nrecs < n && !j->partial) {
        json_decref(j->resp);
        j->status = 400;
        j->resp =
            json_pack("{s:s, s:s, s:o}", "error", "invalid_records", "message",
                      "some records are invalid; nothing was stored", "errors", rec_problems_json(&j->probs));
        return false;
    }
    return true;
}

/* A rejected record's result in partial mode: its problems from
 * probs[*p..] (ordered by index), as one sentence and as a list. */
static json_t *rejected_result(const rec_problems_t *probs, size_t *p, int index) {
    ds_sb_t text = {0};
    json_t *errors = json_array();
    for (; *p < probs->n && probs->items[*p].index <= index; (*p)++) {
        const rec_problem_t *it = &probs->items[*p];
        if (it->index < index) continue;
        ds_sb_printf(&text, "%s%s%s%s", text.len ? "; " : "", it->field, it->field[0] ? " " : "",
                     it->problem);
        json_array_append_new(errors, json_pack("{s:s, s:s}", "field", it->field, "problem", it->problem));
    }
    /* Past the problems' cap (1,000 per request) a record's own are not
     * listed. */
    json_t *r = json_pack("{s:i, s:s, s:s, s:o}", "index", index, "status", "rejected", "problem",
                          text.len ? text.p : "invalid (its problems are past the first 1000 listed)",
                          "errors", errors);
    ds_sb_free(&text);
    return r;
}

/* The answer of a partial request: every record's result in the order
 * sent, stored ones as "stored" or "unchanged". */
static json_t *partial_results(const ingest_job_t *j) {
    json_t *results = json_array();
    size_t k = 0, p = 0;
    for (size_t i = 0; i < j->nsent; i++) {
        if (k < j->nrecs && j->rec_index[k] == (int)i) {
            json_array_append_new(results, json_pack("{s:i, s:s}", "index", (int)i, "status",
                                                     j->tags[k].changed ? "stored" : "unchanged"));
            k++;
        } else {
            json_array_append_new(results, rejected_result(&j->probs, &p, (int)i));
        }
    }
    return results;
}

static void set_answer(ingest_job_t *j);

/* Ends the open transaction of run_group: records the answers of the
 * signed requests of jobs[0..n) with their reservations, and commits.
 * Rolls back on failure. Returns 0 or the class of the failure. */
static int commit_answers(writer_t *w, ingest_job_t **jobs, size_t n, char *errstr, size_t errsz) {
    ds_pg_batch_t *b = NULL;
    int rc = ds_pg_batch_begin(w->pg, &b);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!jobs[i]->sig_hex[0]) continue;
        set_answer(jobs[i]);
        char *text = json_dumps(jobs[i]->resp, JSON_COMPACT);
        rc =
            signature_answer_queue(b, jobs[i]->sig_hex, jobs[i]->status, text, 2 * w->in->cfg->hmac_window_s);
        free(text);
    }
    if (rc == 0) ds_pg_batch_add_sql(b, "COMMIT", NULL);
    if (rc == 0) rc = ds_pg_batch_run(b, NULL, NULL, errstr, errsz);
    ds_pg_batch_end(b);
    if (rc != 0 && ds_pg_is_connected(w->pg)) {
        char err[256];
        if (ds_pg_exec(w->pg, "ROLLBACK", NULL, err, sizeof err) != 0)
            ds_warn("could not roll back: %s", err);
    }
    return rc;
}

/* The source of a profile's records, carried to their events. */
static const char *const profile_source[] = {"webhook", "salesforce", "hubspot"};

/* Runs the upserts of jobs[0..n) in one transaction. Returns 0 or the
 * class of the failure with errstr. */
static int run_group(writer_t *w, ingest_job_t **jobs, size_t n, char *errstr, size_t errsz) {
    int rc = ds_pg_ensure(w->pg, 1000, NULL, errstr, errsz);
    if (rc != 0) return rc == DS_EINVAL ? DS_EFATAL : DS_ERETRY;
    ds_pg_batch_t *b = NULL;
    rc = ds_pg_batch_begin(w->pg, &b);
    if (rc != 0) return rc;
    /* The upserts are prepared once, and Postgres may settle on a generic
     * plan made while the tables were nearly empty, which scans the org on
     * every row once they have grown. Re-plan every few seconds: cheap, and
     * plans follow the data. In the batch, so it costs no round trip. */
    if (ds_mono_us() - w->plans_at > 5 * 1000000LL) {
        ds_pg_batch_add_sql(b, "DISCARD PLANS", NULL);
        w->plans_at = ds_mono_us();
    }
    /* Generic plans on every connection: the upserts look each row up
     * through its key, whatever the number of records, and Postgres, left
     * to choose, planned them afresh on every call when each had one
     * record (about 1 ms each). */
    uint64_t gen = ds_pg_generation(w->pg);
    if (w->generic_gen != gen) ds_pg_batch_add_sql(b, "SET plan_cache_mode = force_generic_plan", NULL);
    ds_pg_batch_add_sql(b, "BEGIN", NULL);
    int64_t now = ds_now_us();
    store_set_t *set = store_set_new();
    for (size_t i = 0; i < n; i++) {
        store_ctx_t ctx = {jobs[i]->org_id, profile_source[jobs[i]->profile], jobs[i]->traceparent,
                           jobs[i]->stage_outcome, now};
        store_set_add(set, &ctx, jobs[i]->recs, jobs[i]->nrecs, jobs[i]->tags);
    }
    rc = store_set_queue(set, b);
    bool answers = false;
    for (size_t i = 0; i < n; i++) answers |= jobs[i]->sig_hex[0] != '\0';
    /* A signed request's answer commits with its records, and depends on
     * what the upserts did: then the transaction ends in a second batch. */
    if (!answers) ds_pg_batch_add_sql(b, "COMMIT", NULL);
    if (rc == 0) rc = ds_pg_batch_run(b, store_batch_cb, NULL, errstr, errsz);
    ds_pg_batch_end(b);
    store_set_destroy(set);
    if (rc == 0 && answers) rc = commit_answers(w, jobs, n, errstr, errsz);
    if (rc == DS_ERETRY && !ds_pg_is_connected(w->pg)) ds_pg_reset(w->pg);
    if (rc == 0) w->generic_gen = gen; /* a rollback also undoes the SET */
    return rc;
}

/* Sets the answer of j, whose records were stored (tags filled). */
static void set_answer(ingest_job_t *j) {
    store_counts_t c = {0, 0, 0};
    store_collect(j->tags, j->nrecs, &c);
    json_decref(j->resp);
    if (j->partial) {
        j->status = 200;
        j->resp = json_pack("{s:i, s:i, s:i, s:i, s:o}", "accepted", (int)j->nrecs, "rejected",
                            (int)(j->nsent - j->nrecs), "unchanged", c.unchanged, "events", c.events,
                            "results", partial_results(j));
        return;
    }
    j->status = 202;
    j->resp =
        json_pack("{s:i, s:i, s:i}", "accepted", (int)j->nrecs, "unchanged", c.unchanged, "events", c.events);
}

static void finish_ok(writer_t *w, ingest_job_t *j) {
    store_counts_t c = {0, 0, 0};
    store_collect(j->tags, j->nrecs, &c);
    count_records(w->in, j->kind, "changed", c.changed);
    count_records(w->in, j->kind, "unchanged", c.unchanged);
    atomic_fetch_add(&w->in->outbox_depth, c.events);
    set_answer(j);
}

/* The request's write failed for good: a 400 that says so without the
 * database's words (they name constraints and echo values), and its
 * signature released so that a corrected request can be signed again. */
static void fail_rejected(writer_t *w, ingest_job_t *j, const char *err) {
    ds_warn("a request was rejected by the database: %s", err);
    job_fail(j, 400, "rejected_by_database", "the database refused the records; nothing was stored");
    release_signature(w->in, w->pg, j);
}

static void fail_unavailable(writer_t *w, ingest_job_t *j) {
    job_fail(j, 503, "database_unavailable", "Postgres is unreachable; retry");
    j->retry_after = "1";
    release_signature(w->in, w->pg, j);
}

/* Hands finished jobs back to the loop thread. */
static void complete_jobs(ingest_t *in, ingest_job_t **jobs, size_t n) {
    if (!n) return;
    for (size_t i = 0; i < n; i++) {
        ds_metric_observe(ds_metrics_histogram(in->svc->metrics, "webhook_seconds",
                                               "Time from request to response", NULL,
                                               ds_metrics_latency_buckets, ds_metrics_latency_nbuckets),
                          (double)(ds_mono_us() - jobs[i]->received_mono_us) / 1e6);
    }
    for (size_t i = 0; i < n; i++) ds_http_deferred_done(in->deferred, jobs[i]->pending);
}

/* Validator: authenticates and validates jobs[0..n); the good ones go to the
 * writer's queue, the others straight back to the loop. */
static void screen(writer_t *v, ingest_job_t **jobs, size_t n) {
    ingest_t *in = v->in;
    size_t nok = 0, nbad = 0;
    ingest_job_t **ok = ds_calloc(n, sizeof *ok), **bad = ds_calloc(n, sizeof *bad);
    signatures_upkeep(v);
    bool db_down = tokens_fetch(v, jobs, n) != 0;
    for (size_t i = 0; i < n; i++) {
        ingest_job_t *j = jobs[i];
        if (db_down && j->token_hash[0]) {
            job_fail(j, 503, "database_unavailable", "could not check the token; retry");
            j->retry_after = "1";
            bad[nbad++] = j;
            continue;
        }
        if (!authenticate(v, j)) {
            bad[nbad++] = j;
            continue;
        }
        if (!validate(v, j)) {
            release_signature(in, v->pg, j);
            bad[nbad++] = j;
            continue;
        }
        if (atomic_load(&in->outbox_depth) >= in->cfg->outbox_max) {
            job_fail(j, 503, "outbox_full", "too many events wait for Kafka; retry later");
            j->retry_after = "5";
            release_signature(in, v->pg, j);
            bad[nbad++] = j;
            continue;
        }
        ok[nok++] = j;
    }
    /* Waits while the writer is two groups behind. The ready queue shuts
     * down only after this thread ended, so the push cannot fail. */
    for (size_t i = 0; i < nok; i++) {
        int rc = ds_queue_push(in->ready, ok[i]);
        ds_assert(rc == 0);
    }
    complete_jobs(in, bad, nbad);
    free(ok);
    free(bad);
}

/* Writer: stores the validated jobs[0..n) in one transaction. */
static void commit_jobs(writer_t *w, ingest_job_t **ok, size_t nok) {
    ingest_t *in = w->in;
    ds_metric_observe(ds_metrics_histogram(in->svc->metrics, "ingest_group_commit_requests",
                                           "Webhook requests per group-committed transaction", NULL,
                                           (const double[]){1, 2, 4, 8, 16, 32, 64, 128}, 8),
                      (double)nok);
    char err[512];
    int64_t t0 = ds_mono_us();
    int rc = run_group(w, ok, nok, err, sizeof err);
    /* A deadlock with another writer of the same rows (a CSV import) or a
     * serialization failure rolls the transaction back; running it again
     * is all it takes. A lost connection is not retried here. */
    for (int attempt = 0; rc == DS_ERETRY && ds_pg_is_connected(w->pg) && attempt < 3; attempt++) {
        ds_warn("a group commit was rolled back (%s); running it again", err);
        rc = run_group(w, ok, nok, err, sizeof err);
    }
    ds_metric_observe(ds_metrics_histogram(in->svc->metrics, "ingest_group_commit_seconds",
                                           "Time of one group-committed transaction", NULL,
                                           ds_metrics_latency_buckets, ds_metrics_latency_nbuckets),
                      (double)(ds_mono_us() - t0) / 1e6);
    if (rc == DS_EFATAL && nok > 1) {
        /* One request's data broke the transaction: isolate it. */
        for (size_t i = 0; i < nok; i++) {
            int r = run_group(w, &ok[i], 1, err, sizeof err);
            if (r == 0)
                finish_ok(w, ok[i]);
            else if (r == DS_EFATAL)
                fail_rejected(w, ok[i], err);
            else
                fail_unavailable(w, ok[i]);
        }
    } else if (rc == 0) {
        for (size_t i = 0; i < nok; i++) finish_ok(w, ok[i]);
        atomic_store(&in->pg_down, 0);
    } else if (rc == DS_EFATAL) {
        fail_rejected(w, ok[0], err);
    } else {
        ds_warn("could not store records: %s", err);
        atomic_store(&in->pg_down, 1);
        for (size_t i = 0; i < nok; i++) fail_unavailable(w, ok[i]);
    }
    ingest_relay_kick(in);
    complete_jobs(in, ok, nok);
}

/* Takes up to max jobs from q (through items, room for max), waiting while
 * it is empty. Returns how many; 0 once q is shut down and empty. */
static size_t take_jobs(ds_queue_t *q, void **items, ingest_job_t **jobs, size_t max) {
    size_t n = ds_queue_pop(q, items, max);
    for (size_t i = 0; i < n; i++) jobs[i] = items[i];
    return n;
}

static void *validator_main(void *arg) {
    ingest_t *in = arg;
    writer_t v = {.in = in, .tokens_gen = -1};
    char err[256];
    if (ds_pg_new(&v.pg, in->cfg->database_url, "dealscore-ingest-auth", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    ds_pg_add_statement(v.pg, "ds_auth_generation", SQL_AUTH_GENERATION, 0);
    ds_pg_add_statement(v.pg, "ds_auth_tokens", SQL_AUTH_TOKENS, 1);
    size_t max = (size_t)in->cfg->commit_batch;
    ingest_job_t **jobs = ds_calloc(max, sizeof *jobs);
    void **items = ds_calloc(max, sizeof *items);
    size_t n;
    while ((n = take_jobs(in->queue, items, jobs, max))) screen(&v, jobs, n);
    free(items);
    free(jobs);
    tokens_clear(&v);
    free(v.tokens);
    ds_pg_destroy(v.pg);
    return NULL;
}

static void *writer_main(void *arg) {
    ingest_t *in = arg;
    writer_t w = {.in = in};
    char err[256];
    if (ds_pg_new(&w.pg, in->cfg->database_url, "dealscore-ingest", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    store_register(w.pg);
    size_t max = (size_t)in->cfg->commit_batch;
    ingest_job_t **jobs = ds_calloc(max, sizeof *jobs);
    void **items = ds_calloc(max, sizeof *items);
    size_t n;
    while ((n = take_jobs(in->ready, items, jobs, max))) commit_jobs(&w, jobs, n);
    free(items);
    free(jobs);
    ds_pg_destroy(w.pg);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

int ingest_init(ds_service_t *svc, void **state, char *errstr, size_t errstr_size) {
    (void)errstr;
    (void)errstr_size;
    ingest_t *in = ds_calloc(1, sizeof *in);
    in->svc = svc;
    in->cfg = svc->cfg;
    in->relay_batch = 1000;
    in->sf = (sf_fields_t){in->cfg->sf_product_field, in->cfg->sf_persona_field, in->cfg->sf_region_field};
    in->hs = (hs_fields_t){in->cfg->hs_product_field, in->cfg->hs_persona_field, in->cfg->hs_region_field};
    in->queue = ds_queue_new(INGEST_QUEUE_MAX);
    /* Room for two groups: the validator checks the next one while the
     * writer commits, then waits. */
    in->ready = ds_queue_new(2 * (size_t)in->cfg->commit_batch);
    pthread_mutex_init(&in->release_mu, NULL);
    in->relay_kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (in->relay_kick_fd < 0) ds_panic("could not create the relay's eventfd");
    in->deferred = ds_http_deferred_new(&svc->loop, finish_job, in);
    ds_http_route(svc->http, "/v1/", on_webhook, in);
    ds_http_route_document(svc->http, "/openapi.json", "application/json", ds_openapi_json,
                           ds_openapi_json_len);
    ds_metrics_gauge(svc->metrics, "outbox_depth", "Outbox rows not yet published", NULL);
    if (pthread_create(&in->writer, NULL, writer_main, in) != 0) ds_panic("could not start the writer");
    in->writer_started = true;
    if (pthread_create(&in->validator, NULL, validator_main, in) != 0)
        ds_panic("could not start the validator");
    in->validator_started = true;
    if (pthread_create(&in->relay, NULL, ingest_relay_main, in) != 0) ds_panic("could not start the relay");
    in->relay_started = true;
    *state = in;
    return 0;
}

void ingest_stopping(ds_service_t *svc, void *state) {
    (void)svc;
    ingest_t *in = state;
    /* The validator, then the writer, finish what is queued (responses still
     * go out while the loop drains connections), then the relay publishes
     * what committed. */
    ds_queue_shutdown(in->queue);
    if (in->validator_started) {
        pthread_join(in->validator, NULL);
        in->validator_started = false;
    }
    ds_queue_shutdown(in->ready);
    if (in->writer_started) {
        pthread_join(in->writer, NULL);
        in->writer_started = false;
    }
    ds_http_deferred_flush(in->deferred);
    ingest_relay_kick(in);
    if (in->relay_started) {
        pthread_join(in->relay, NULL);
        in->relay_started = false;
    }
}

void ingest_fini(ds_service_t *svc, void *state) {
    (void)svc;
    ingest_t *in = state;
    if (!in) return;
    if (in->validator_started || in->writer_started || in->relay_started) ingest_stopping(svc, in);
    /* Jobs left when the loop closed early: their clients are gone. */
    ds_http_deferred_destroy(in->deferred);
    ds_queue_destroy(in->queue);
    ds_queue_destroy(in->ready);
    pthread_mutex_destroy(&in->release_mu);
    free(in->releases);
    close(in->relay_kick_fd);
    free(in);
}
