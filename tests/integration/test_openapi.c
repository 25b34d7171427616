/* proto/openapi.json against the real services: ingest and scoring serve
 * it at GET /openapi.json (byte for byte the file), and every answer they
 * give here (success and each error status the test can bring about, for
 * every webhook kind, profile and mode, and for /api/predict) is checked against
 * it by tests/web/openapi.mjs: the document with an OpenAPI 3.1 validator,
 * the bodies with ajv (JSON Schema 2020-12) against the documented
 * schemas. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <jansson.h>

#include "dstest.h"
#include "infra/jwt.h"

#define SECRET "test-secret-for-hs256-that-is-long-enough-0123456789"
#define ORIGIN "http://127.0.0.1:3000"

static dst_t S; /* scoring */
static dst_t I; /* ingest */
static tcpproxy_t px;
static json_t *collected; /* [{name, method, path, status, headers, body}] */

static void setup(void) {
    dst_setup(&S);
    dst_env_add(&S, "SUPABASE_JWT_SECRET=%s", SECRET);
    dst_env_add(&S, "DEALSCORE_CORS_ORIGINS=%s", ORIGIN);
    dst_db_through_proxy(&S, &px);
    free(dst_token(&S, "acme", NULL));
    dst_start(&S, "scoring");
    dst_clone(&I, &S);
    dst_env_add(&I, "DEALSCORE_MAX_RECORDS=%s", "5");
    dst_env_add(&I, "DEALSCORE_MAX_BODY_BYTES=%s", "4096");
    for (size_t i = 0; i < S.nenv; i++) /* ingest's Postgres through the same proxy */
        if (strncmp(S.env[i], "DEALSCORE_DATABASE_URL=", 23) == 0)
            dst_env_set(&I, "DEALSCORE_DATABASE_URL", S.env[i] + 23);
    dst_start(&I, "ingest");
    collected = json_array();
}

static void teardown(void) {
    dst_teardown(&I);
    dst_teardown(&S);
    tcpproxy_stop(&px);
    json_decref(collected);
}

TestSuite(openapi, .init = setup, .fini = teardown, .timeout = 180);

/* "Name: value\r\n" lines into {"name": "value"} (names lower-cased). */
static json_t *headers_of(const char *raw) {
    json_t *h = json_object();
    for (const char *line = strstr(raw ? raw : "", "\r\n"); line && line[2];
         line = strstr(line + 2, "\r\n")) {
        const char *start = line + 2, *colon = strchr(start, ':'), *end = strstr(start, "\r\n");
        if (!colon || !end || colon > end) continue;
        char name[128];
        size_t n = (size_t)(colon - start) < sizeof name - 1 ? (size_t)(colon - start) : sizeof name - 1;
        for (size_t i = 0; i < n; i++) name[i] = (char)tolower((unsigned char)start[i]);
        name[n] = '\0';
        const char *v = colon + 1;
        while (*v == ' ') v++;
        json_object_set_new(h, name, json_stringn(v, (size_t)(end - v)));
    }
    return h;
}

/* Sends a request, keeps its answer for the check, expects status. */
static void call(dst_t *t, const char *name, const char *method, const char *path, const char *doc_path,
                 const char *headers, const char *body, int status) {
    httpc_resp_t r = httpc_request(t->port, method, path, headers, body, body ? strlen(body) : 0, 15000);
    cr_expect_eq(r.status, status, "%s: %s %s answered %d: %s", name, method, path, r.status, r.body);
    json_array_append_new(collected,
                          json_pack("{s:s, s:s, s:s, s:i, s:o, s:s%}", "name", name, "method", method, "path",
                                    doc_path, "status", r.status, "headers", headers_of(r.headers), "body",
                                    r.body ? r.body : "", r.body ? r.body_len : 0));
    httpc_free(&r);
}

static char *jwt(const char *org) {
    char *claims =
        pgt_fmt("{\"sub\":\"7d8f0a1e-0000-4000-8000-000000000001\",\"role\":\"authenticated\","
                "\"aud\":\"authenticated\",\"iat\":%ld,\"exp\":%ld,\"app_metadata\":{\"org_id\":\"%s\"}}",
                (long)time(NULL) - 10, (long)time(NULL) + 3600, org);
    char *t = NULL;
    cr_assert_eq(ds_jwt_sign_hs256(SECRET, claims, &t), 0);
    free(claims);
    return t;
}

/* Every webhook kind in each profile, partial mode, and each error ingest
 * gives. */
static void webhooks(const char *auth) {
    static const char *kinds[][3] = {
        {"accounts", "{\"external_id\":\"001A\",\"name\":\"Acme GmbH\",\"industry\":\"manufacturing\"}",
         "[{\"Id\":\"001B\",\"Name\":\"Beta\",\"Industry\":\"Retail\",\"NumberOfEmployees\":320}]"},
        {"opportunities",
         "[{\"external_id\":\"006A\",\"stage\":\"discovery\",\"created_at\":\"2026-03-01T09:00:00Z\","
         "\"amount\":12000,\"account_external_id\":\"001A\"}]",
         "{\"Id\":\"006B\",\"StageName\":\"Discovery\",\"CreatedDate\":\"2026-03-01T09:00:00.000+0000\","
         "\"Amount\":5000,\"AccountId\":\"001B\",\"IsClosed\":false,\"IsWon\":false}"},
        {"interactions",
         "{\"external_id\":\"00TA\",\"opportunity_external_id\":\"006A\",\"type\":\"meeting\","
         "\"occurred_at\":\"2026-03-02T10:00:00Z\",\"duration_min\":45}",
         "{\"Id\":\"00TB\",\"WhatId\":\"006A\",\"TaskSubtype\":\"Call\","
         "\"ActivityDateTime\":\"2026-03-02T11:00:00.000+0000\",\"CallDurationInSeconds\":900}"},
        {"transcripts",
         "{\"external_id\":\"TR1\",\"opportunity_external_id\":\"006A\",\"occurred_at\":\"2026-03-02T10:00:"
         "00Z\","
         "\"text\":\"Our CFO signs off; our champion wants the ROI numbers.\"}",
         "{\"Id\":\"TR2\",\"WhatId\":\"006A\",\"CreatedDate\":\"2026-03-02T12:00:00.000+0000\",\"Body\":"
         "\"Budget "
         "approved.\"}"}};
    static const char *hubspot[][3] = {
        {"/v1/accounts?profile=hubspot", "companies.json", "202"},
        {"/v1/opportunities?profile=hubspot", "deals.json", "202"},
        {"/v1/interactions?profile=hubspot&partial=true", "engagements.json", "200"},
        {"/v1/transcripts?profile=hubspot&partial=true", "engagements.json", "200"}};
    char *hdr = pgt_fmt("Content-Type: application/json\r\nAuthorization: %s\r\n", auth);
    for (size_t k = 0; k < 4; k++) {
        char *file = pgt_fmt("%s/tests/fixtures/hubspot/%s", DS_SOURCE_DIR, hubspot[k][1]);
        char *body = proc_slurp(file), *path = pgt_fmt("/v1/%s", kinds[k][0]);
        call(&I, "hubspot", "POST", hubspot[k][0], path, hdr, body, atoi(hubspot[k][2]));
        free(path);
        free(body);
        free(file);
    }
    for (size_t k = 0; k < 4; k++) {
        char *path = pgt_fmt("/v1/%s", kinds[k][0]), *sf = pgt_fmt("/v1/%s?profile=salesforce", kinds[k][0]);
        call(&I, "native", "POST", path, path, hdr, kinds[k][1], 202);
        call(&I, "salesforce", "POST", sf, path, hdr, kinds[k][2], 202);
        free(path);
        free(sf);
    }
    const char *p = "/v1/opportunities";
    call(&I, "invalid json", "POST", p, p, hdr, "{\"external_id\":", 400);
    call(&I, "invalid records", "POST", p, p, hdr, "[{\"external_id\":\"X\",\"stage\":\"\"},{\"amount\":-1}]",
         400);
    call(&I, "empty array", "POST", p, p, hdr, "[]", 400);
    call(&I, "bad profile", "POST", "/v1/opportunities?profile=pipedrive", p, hdr, "{}", 400);
    call(&I, "bad partial", "POST", "/v1/opportunities?partial=yes", p, hdr, "{}", 400);
    call(&I, "partial", "POST", "/v1/opportunities?partial=true", p, hdr,
         "[{\"external_id\":\"P-1\",\"stage\":\"discovery\",\"created_at\":\"2026-03-01T09:00:00Z\"},"
         "{\"external_id\":\"P-2\",\"created_at\":\"2026-03-01T09:00:00Z\",\"amount\":-1}]",
         200);
    call(&I, "too many records", "POST", p, p, hdr, "[{},{},{},{},{},{}]", 413);
    char big[5000];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = '\0';
    call(&I, "body too large", "POST", p, p, hdr, big, 413); /* refused unread: text/plain */
    call(&I, "no token", "POST", p, p, "Content-Type: application/json\r\n", "{}", 401);
    call(&I, "unknown token", "POST", p, p,
         "Content-Type: application/json\r\nAuthorization: Bearer nope\r\n", "{}", 401);
    char *text = pgt_fmt("Content-Type: text/plain\r\nAuthorization: %s\r\n", auth);
    call(&I, "text body", "POST", p, p, text, "{}", 415);
    free(text);
    free(hdr);
}

static void predict(const char *opp, const char *bearer, const char *other_bearer) {
    const char *p = "/api/predict";
    char *hdr =
        pgt_fmt("Origin: " ORIGIN "\r\nContent-Type: application/json\r\nAuthorization: %s\r\n", bearer);
    char *body = pgt_fmt("{\"opportunity_id\":\"%s\"}", opp);
    call(&S, "by id", "POST", p, p, hdr, body, 200);
    call(&S, "by CRM id", "POST", p, p, hdr, "{\"external_id\":\"006A\"}", 200);
    call(&S, "no id", "POST", p, p, hdr, "{}", 400);
    call(&S, "not json", "POST", p, p, hdr, "opportunity", 400);
    call(&S, "missing deal", "POST", p, p, hdr, "{\"external_id\":\"nope\"}", 404);
    char *other = pgt_fmt("Content-Type: application/json\r\nAuthorization: %s\r\n", other_bearer);
    call(&S, "another org's deal", "POST", p, p, other, body, 404);
    call(&S, "no token", "POST", p, p, "Content-Type: application/json\r\n", body, 401);
    call(&S, "bad token", "POST", p, p, "Content-Type: application/json\r\nAuthorization: Bearer a.b.c\r\n",
         body, 401);
    char *text = pgt_fmt("Content-Type: text/plain\r\nAuthorization: %s\r\n", bearer);
    call(&S, "text body", "POST", p, p, text, body, 415);
    char *huge = calloc(70000, 1);
    memset(huge, ' ', 69999);
    huge[0] = '{';
    huge[69998] = '}';
    call(&S, "body too large", "POST", p, p, hdr, huge, 413);
    call(&S, "preflight", "OPTIONS", p, p,
         "Origin: " ORIGIN "\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: "
         "authorization,content-type\r\n",
         NULL, 204);
    call(&S, "preflight of another origin", "OPTIONS", p, p,
         "Origin: http://127.0.0.1:3001\r\nAccess-Control-Request-Method: POST\r\n", NULL, 403);
    call(&S, "options without a preflight", "OPTIONS", p, p, NULL, NULL, 405);
    free(huge);
    free(text);
    free(other);
    free(body);
    free(hdr);
}

/* GET /openapi.json of a service: 200 and the repository's file. */
static void served(dst_t *t, const char *name, const char *file) {
    httpc_resp_t r = httpc_get(t->port, "/openapi.json");
    cr_expect_eq(r.status, 200, "%s", name);
    cr_expect(r.body && strcmp(r.body, file) == 0, "%s serves proto/openapi.json as built", name);
    httpc_free(&r);
    call(t, name, "GET", "/openapi.json", "/openapi.json", NULL, NULL, 200);
}

/* Runs tests/web/openapi.mjs on what was collected; its report goes to the log. */
static void check_against_the_document(void) {
    char dir[] = "/tmp/ds-openapi-XXXXXX";
    cr_assert(mkdtemp(dir));
    char *path = pgt_fmt("%s/responses.json", dir);
    cr_assert_eq(json_dump_file(collected, path, JSON_INDENT(1)), 0);
    char *argv[] = {DS_SOURCE_DIR "/tests/web/node", "openapi.mjs", DS_SOURCE_DIR "/proto/openapi.json", path,
                    NULL};
    char *out = NULL, *err = NULL;
    int rc = proc_run(argv, NULL, &out, &err, 240000);
    fprintf(stderr, "%s%s", out, err);
    cr_expect_eq(rc, 0, "tests/web/openapi.mjs exited %d:\n%s\n%s", rc, out, err);
    cr_expect(strstr(out, "valid OpenAPI 3.1.0"), "%s", out);
    char *want = pgt_fmt("%zu responses checked, 0 failed", json_array_size(collected));
    cr_expect(strstr(out, want), "%s", out);
    free(want);
    free(out);
    free(err);
    unlink(path);
    rmdir(dir);
    free(path);
}

Test(openapi, real_answers_match_the_document) {
    char *file = proc_slurp(DS_SOURCE_DIR "/proto/openapi.json");
    json_t *doc = json_loads(file, 0, NULL);
    cr_assert(doc, "proto/openapi.json is JSON");
    json_decref(doc);
    served(&I, "ingest", file);
    served(&S, "scoring", file);
    char *auth = pgt_fmt("Bearer %s", I.token);
    webhooks(auth);
    PGconn *db = pgt_connect_db(&S.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = '006A'");
    char *mine = jwt(S.org_id), *theirs = jwt("3f1c2b8e-1111-4a2b-9c3d-5e6f7a8b9c0d");
    char *bearer = pgt_fmt("Bearer %s", mine), *other = pgt_fmt("Bearer %s", theirs);
    predict(opp, bearer, other);
    /* A revoked token; then Postgres out of reach: 503 from both. */
    pgt_exec(db, "update dealscore_internal.ingest_tokens set revoked_at = now()");
    char *hdr = pgt_fmt("Content-Type: application/json\r\nAuthorization: %s\r\n", auth);
    call(&I, "revoked token", "POST", "/v1/accounts", "/v1/accounts", hdr,
         "{\"external_id\":\"A\",\"name\":\"A\"}", 403);
    pgt_exec(db, "update dealscore_internal.ingest_tokens set revoked_at = null");
    tcpproxy_set_up(&px, 0);
    call(&I, "postgres down", "POST", "/v1/accounts", "/v1/accounts", hdr,
         "{\"external_id\":\"A\",\"name\":\"A\"}", 503);
    char *ph = pgt_fmt("Content-Type: application/json\r\nAuthorization: %s\r\n", bearer);
    call(&S, "postgres down", "POST", "/api/predict", "/api/predict", ph, "{\"external_id\":\"006A\"}", 503);
    tcpproxy_set_up(&px, 1);
    check_against_the_document();
    free(ph);
    free(hdr);
    free(bearer);
    free(other);
    free(mine);
    free(theirs);
    free(opp);
    free(auth);
    free(file);
    PQfinish(db);
}
