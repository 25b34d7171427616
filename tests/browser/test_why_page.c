/* deploy/web/why.html in Chromium against the real services: a deal scored
 * once in discovery, moved to proposal, with a transcript that carries
 * MEDDICC evidence and a peer cohort; the page, served from an origin the
 * API lists in DEALSCORE_CORS_ORIGINS, shows what /api/predict answered it
 * (tests/web/why.mjs compares the page with that very answer), and a
 * screenshot is kept under DEALSCORE_LOCAL_DIR/artifacts/why.png; the same
 * page from another origin is refused and says so. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

#include "dstest.h"
#include "infra/jwt.h"

#define SECRET "test-secret-for-hs256-that-is-long-enough-0123456789"

static dst_t S; /* scoring: /api/predict */
static dst_t I; /* ingest */
static int allowed_port, denied_port;

static void setup(void) {
    allowed_port = proc_free_port();
    denied_port = proc_free_port();
    dst_setup(&S);
    dst_env_add(&S, "SUPABASE_JWT_SECRET=%s", SECRET);
    dst_env_add(&S, "DEALSCORE_CORS_ORIGINS=http://127.0.0.1:%d", allowed_port);
    dst_env_add(&S, "DEALSCORE_PRIOR_MIN_CLOSED=5"); /* the org's own stage rates from its 5 closed deals */
    free(dst_token(&S, "acme", NULL));
    /* Closed deals for the stage prior: demo 2 of 3 won, proposal 2 of 2. */
    static const char *const deals[][3] = {{"H1", "won", "discovery"},
                                           {"H2", "lost", "discovery"},
                                           {"H3", "lost", "discovery"},
                                           {"H4", "won", "proposal"},
                                           {"H5", "won", "proposal"}};
    dst_seed_closed_deals(&S, deals, 5);
    dst_start(&S, "scoring");
    dst_clone(&I, &S);
    dst_start(&I, "ingest");
}

static void teardown(void) {
    dst_teardown(&I);
    dst_teardown(&S);
}

TestSuite(browser, .init = setup, .fini = teardown, .timeout = 240);

static void post_ok(const char *path, const char *body) { dst_post_accepted(&I, path, body); }

static char *session_jwt(void) {
    char *claims =
        pgt_fmt("{\"sub\":\"7d8f0a1e-0000-4000-8000-000000000001\",\"role\":\"authenticated\","
                "\"aud\":\"authenticated\",\"iat\":%ld,\"exp\":%ld,\"app_metadata\":{\"org_id\":\"%s\"}}",
                (long)time(NULL) - 10, (long)time(NULL) + 3600, S.org_id);
    char *t = NULL;
    cr_assert_eq(ds_jwt_sign_hs256(SECRET, claims, &t), 0);
    free(claims);
    return t;
}

/* POST /api/predict by the deal's CRM id; returns the answer. */
static json_t *predict(const char *jwt) {
    char *hdr = pgt_fmt("Content-Type: application/json\r\nAuthorization: Bearer %s\r\n", jwt);
    const char *body = "{\"external_id\":\"006A\"}";
    httpc_resp_t r = httpc_request(S.port, "POST", "/api/predict", hdr, body, strlen(body), 15000);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    httpc_free(&r);
    free(hdr);
    return j;
}

/* The deal: scored in discovery, then moved to proposal; a transcript
 * with a champion and an economic buyer; a peer cohort. */
static void make_deal(const char *jwt) {
    post_ok("/v1/accounts",
            "{\"external_id\":\"001A\",\"name\":\"Acme GmbH\",\"industry\":\"manufacturing\"}");
    post_ok("/v1/opportunities",
            "{\"external_id\":\"006A\",\"stage\":\"discovery\",\"created_at\":"
            "\"2026-03-01T09:00:00Z\",\"amount\":42000,\"account_external_id\":\"001A\"}");
    json_decref(predict(jwt));
    post_ok("/v1/opportunities",
            "{\"external_id\":\"006A\",\"stage\":\"proposal\",\"created_at\":"
            "\"2026-03-01T09:00:00Z\",\"amount\":42000,\"account_external_id\":\"001A\"}");
    post_ok("/v1/transcripts",
            "{\"external_id\":\"TR1\",\"opportunity_external_id\":\"006A\",\"occurred_at\":"
            "\"2026-03-05T10:00:00Z\",\"text\":\"Our CFO signs off on the budget, and Dana is "
            "our champion; she wants the ROI numbers.\"}");
    PGconn *db = pgt_connect_db(&S.db);
    pgt_execf(db,
              "insert into benchmarks_cached (org_id, cohort_key, as_of, match_level, cohort_size, metrics)"
              " values ('%s', 'v1|manufacturing', '2026-11-01T00:00:00Z', 'industry', 14,"
              " '{\"won\": 5, \"lost\": 9, \"closed\": 14, \"win_rate\": 0.3571,"
              " \"amount\": {\"p25\": 20000, \"median\": 38000, \"p75\": 61000},"
              " \"cycle_days\": {\"p25\": 40, \"median\": 64, \"p75\": 90}}')",
              S.org_id);
    pgt_execf(
        db, "insert into opportunity_benchmarks (org_id, opportunity_id, account_id, cohort_key, match_level)"
            " select org_id, id, account_id, 'v1|manufacturing', 'industry' from opportunities"
            " where external_id = '006A'");
    PQfinish(db);
}

Test(browser, why_page_shows_what_the_api_answered_and_other_origins_are_refused) {
    char *jwt = session_jwt();
    make_deal(jwt);
    const char *dir = getenv("DEALSCORE_LOCAL_DIR");
    char *artifacts = pgt_fmt("%s/artifacts", dir && *dir ? dir : DS_BINARY_DIR);
    mkdir(artifacts, 0755);
    char *shot = pgt_fmt("%s/why.png", artifacts);
    unlink(shot);
    char *api = pgt_fmt("http://127.0.0.1:%d", S.port);
    char ap[16], dp[16];
    snprintf(ap, sizeof ap, "%d", allowed_port);
    snprintf(dp, sizeof dp, "%d", denied_port);
    char *argv[] = {DS_SOURCE_DIR "/tests/web/node",
                    "why.mjs",
                    DS_SOURCE_DIR "/deploy/web/why.html",
                    api,
                    "006A",
                    jwt,
                    ap,
                    dp,
                    shot,
                    NULL};
    char *out = NULL, *err = NULL;
    int rc = proc_run(argv, NULL, &out, &err, 200000);
    fprintf(stderr, "tests/web/why.mjs:\n%s%s", out, err);
    cr_assert_eq(rc, 0, "tests/web/why.mjs exited %d:\n%s\n%s", rc, out, err);
    /* What the page showed: the stage prior of proposal (2 of 2 won, smoothed
     * toward the org's rate), moved up from discovery's by the stage. */
    json_t *shown = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert(shown, "%s", out);
    double org = (3 + 1.0) / (5 + 2), p_prop = (2 + 10 * org) / (2 + 10), p_disc = (1 + 10 * org) / (3 + 10);
    double shown_p = json_real_value(json_object_get(shown, "proba_close"));
    cr_expect(fabs(shown_p - p_prop) < 1e-9, "proposal's prior %.12f, the page showed %.12f", p_prop,
              shown_p);
    cr_expect(fabs(json_real_value(json_object_get(shown, "delta")) - (p_prop - p_disc)) < 1e-9, "%s", out);
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(shown, "moved"), 0)), "stage_index",
                     "%s", out);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(shown, "meddicc"), "champion")), "✓ 1",
                     "%s", out);
    struct stat st;
    cr_expect(stat(shot, &st) == 0 && st.st_size > 10000, "screenshot %s", shot);
    fprintf(stderr, "screenshot: %s\n", shot);
    json_decref(shown);
    free(out);
    free(err);
    free(api);
    free(shot);
    free(artifacts);
    free(jwt);
}
