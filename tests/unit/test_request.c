/* What the services read from a request before any handler logic: the
 * media type, the query string, the webhook's target and its signature
 * headers. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "infra/http.h"
#include "ingest/ingest.h"
#include "ingest/signature.h"

Test(request, media_type_is_the_whole_type_with_optional_parameters) {
    cr_expect(ds_http_media_type_is("application/json", "application/json"));
    cr_expect(ds_http_media_type_is("Application/JSON", "application/json"));
    cr_expect(ds_http_media_type_is("application/json; charset=utf-8", "application/json"));
    cr_expect(ds_http_media_type_is("application/json;charset=utf-8", "application/json"));
    cr_expect(ds_http_media_type_is(" application/json ", "application/json"));
    cr_expect(!ds_http_media_type_is("application/jsonp", "application/json"));
    cr_expect(!ds_http_media_type_is("application/json x", "application/json"));
    cr_expect(!ds_http_media_type_is("application/json-seq", "application/json"));
    cr_expect(!ds_http_media_type_is("text/json", "application/json"));
    cr_expect(!ds_http_media_type_is("", "application/json"));
    cr_expect(!ds_http_media_type_is(NULL, "application/json"));
}

static int param(const char *q, const char *name, char *buf, size_t bufsz) {
    return ds_http_query_param(q, strlen(q), name, buf, bufsz);
}

Test(request, query_parameters_are_whole_names_decoded) {
    char v[32];
    cr_expect_eq(param("profile=salesforce", "profile", v, sizeof v), 10);
    cr_expect_str_eq(v, "salesforce");
    cr_expect_eq(param("a=1&profile=native&b", "profile", v, sizeof v), 6);
    cr_expect_str_eq(v, "native");
    cr_expect_eq(param("xprofile=salesforce", "profile", v, sizeof v), DS_ENOTFOUND);
    cr_expect_eq(param("profilex=salesforce", "profile", v, sizeof v), DS_ENOTFOUND);
    cr_expect_eq(param("a=profile=salesforce", "profile", v, sizeof v), DS_ENOTFOUND);
    cr_expect_eq(param("pro%66ile=sales%66orce", "profile", v, sizeof v), 10);
    cr_expect_str_eq(v, "salesforce");
    cr_expect_eq(param("q=a+b%20c", "q", v, sizeof v), 5);
    cr_expect_str_eq(v, "a b c");
    cr_expect_eq(param("profile=salesforce%00", "profile", v, sizeof v), 11, "the NUL counts");
    cr_expect_eq(param("profile", "profile", v, sizeof v), 0);
    cr_expect_str_eq(v, "");
    cr_expect_eq(param("profile=%zz", "profile", v, sizeof v), DS_EINVAL);
    cr_expect_eq(param("profile=%4", "profile", v, sizeof v), DS_EINVAL);
    cr_expect_eq(param("profile=native&profile=salesforce", "profile", v, sizeof v), DS_EINVAL);
    cr_expect_eq(param("", "profile", v, sizeof v), DS_ENOTFOUND);
    cr_expect_eq(param("profile=abcdefghij", "profile", v, 4), 10, "the whole length, cut copy");
    cr_expect_str_eq(v, "abc");
}

static const char *bad_param;

static int route(const char *path, size_t plen, const char *query, rec_kind_t *kind, rec_profile_t *profile) {
    ingest_target_t t = {0};
    bad_param = NULL;
    int rc = ingest_route(path, plen, query, query ? strlen(query) : 0, &t, &bad_param);
    *kind = t.kind;
    *profile = t.profile;
    return rc;
}

Test(request, webhook_routes_are_exact_paths) {
    rec_kind_t k;
    rec_profile_t p;
    cr_expect_eq(route("/v1/accounts", 12, NULL, &k, &p), 0);
    cr_expect_eq(k, REC_ACCOUNT);
    cr_expect_eq(p, PROFILE_NATIVE);
    cr_expect_eq(route("/v1/transcripts/", 16, NULL, &k, &p), 0);
    cr_expect_eq(k, REC_TRANSCRIPT);
    /* Decoded paths may hold NUL bytes: /v1/%00accounts and /v1/accounts%00. */
    cr_expect_eq(route("/v1/\0accounts", 13, NULL, &k, &p), DS_ENOTFOUND);
    cr_expect_eq(route("/v1/accounts\0", 13, NULL, &k, &p), DS_ENOTFOUND);
    cr_expect_eq(route("/v1/\0", 5, NULL, &k, &p), DS_ENOTFOUND);
    cr_expect_eq(route("/v1/", 4, NULL, &k, &p), DS_ENOTFOUND);
    cr_expect_eq(route("/v1//", 5, NULL, &k, &p), DS_ENOTFOUND);
    cr_expect_eq(route("/v1/accounts//", 14, NULL, &k, &p), DS_ENOTFOUND);
    cr_expect_eq(route("/v1/accountsx", 13, NULL, &k, &p), DS_ENOTFOUND);
    cr_expect_eq(route("/v2/accounts", 12, NULL, &k, &p), DS_ENOTFOUND);
    cr_expect_eq(route("/v1/opportunities", 17, "profile=salesforce", &k, &p), 0);
    cr_expect_eq(k, REC_OPPORTUNITY);
    cr_expect_eq(p, PROFILE_SALESFORCE);
    cr_expect_eq(route("/v1/interactions", 16, "profile=hubspot", &k, &p), 0);
    cr_expect_eq(k, REC_INTERACTION);
    cr_expect_eq(p, PROFILE_HUBSPOT);
    cr_expect_eq(route("/v1/opportunities", 17, "profile=HubSpot", &k, &p), DS_EINVAL);
    cr_expect_eq(route("/v1/opportunities", 17, "profile=native", &k, &p), 0);
    cr_expect_eq(p, PROFILE_NATIVE);
    cr_expect_eq(route("/v1/opportunities", 17, "xprofile=salesforce", &k, &p), 0);
    cr_expect_eq(p, PROFILE_NATIVE, "xprofile is another parameter");
    cr_expect_eq(route("/v1/opportunities", 17, "profile=salesforcex", &k, &p), DS_EINVAL);
    cr_expect_eq(route("/v1/opportunities", 17, "profile=salesforce%00", &k, &p), DS_EINVAL);
    cr_expect_eq(route("/v1/opportunities", 17, "profile=", &k, &p), DS_EINVAL);
    cr_expect_str_eq(bad_param, "profile");
}

Test(request, partial_is_true_or_false) {
    ingest_target_t t;
    const char *bad = NULL;
    cr_expect_eq(ingest_route("/v1/accounts", 12, NULL, 0, &t, &bad), 0);
    cr_expect(!t.partial, "all or nothing by default");
    const char *q = "partial=true&profile=hubspot";
    cr_expect_eq(ingest_route("/v1/accounts", 12, q, strlen(q), &t, &bad), 0);
    cr_expect(t.partial);
    cr_expect_eq(t.profile, PROFILE_HUBSPOT);
    q = "partial=false";
    cr_expect_eq(ingest_route("/v1/accounts", 12, q, strlen(q), &t, &bad), 0);
    cr_expect(!t.partial);
    const char *bad_values[] = {"partial=yes",  "partial=1",       "partial=",
                                "partial=TRUE", "partial=true%00", "partial=true&partial=false"};
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        bad = NULL;
        cr_expect_eq(ingest_route("/v1/accounts", 12, bad_values[i], strlen(bad_values[i]), &t, &bad),
                     DS_EINVAL, "%s", bad_values[i]);
        cr_expect(bad && strcmp(bad, "partial") == 0, "%s", bad_values[i]);
    }
}

static void sign(const char *secret, const char *ts, const char *body, char hex[65]) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s.%s", ts, body);
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, strlen(msg), mac, &len);
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", mac[i]);
}

Test(request, signature_check_reads_only_what_is_there) {
    const char *body = "{\"a\":1}";
    char good[65], hex[65], hdr[80];
    sign("s3cret", "1000", body, good);
    cr_expect_eq(signature_check("s3cret", "1000", good, body, strlen(body), 1000, 300, hex), SIG_OK);
    cr_expect_str_eq(hex, good);
    snprintf(hdr, sizeof hdr, "sha256=%s", good);
    for (char *c = hdr; *c; c++) *c = (char)toupper((unsigned char)*c);
    cr_expect_eq(signature_check("s3cret", "1000", hdr, body, strlen(body), 1000, 300, hex), SIG_OK);
    cr_expect_str_eq(hex, good, "the replay key is lowercase");
    /* Short values (the 2-byte "x" was read 65 bytes far), long ones. */
    cr_expect_eq(signature_check("s3cret", "1000", "x", body, strlen(body), 1000, 300, hex), SIG_BAD);
    cr_expect_str_eq(hex, "");
    cr_expect_eq(signature_check("s3cret", "1000", "", body, strlen(body), 1000, 300, hex), SIG_BAD);
    char longer[80];
    snprintf(longer, sizeof longer, "%s0", good);
    cr_expect_eq(signature_check("s3cret", "1000", longer, body, strlen(body), 1000, 300, hex), SIG_BAD);
    cr_expect_eq(signature_check("s3cret", "1000", good, "{\"a\":2}", 7, 1000, 300, hex), SIG_BAD);
    cr_expect_eq(signature_check("s3cret", NULL, good, body, strlen(body), 1000, 300, hex), SIG_MISSING);
    cr_expect_eq(signature_check("s3cret", "1000", NULL, body, strlen(body), 1000, 300, hex), SIG_MISSING);
    cr_expect_eq(signature_check("s3cret", "1301", good, body, strlen(body), 1000, 300, hex), SIG_EXPIRED);
    cr_expect_eq(signature_check("s3cret", "699", good, body, strlen(body), 1000, 300, hex), SIG_EXPIRED);
    /* Far out of range once overflowed the window arithmetic. */
    cr_expect_eq(signature_check("s3cret", "-9223372036854775808", good, body, strlen(body), 1000, 300, hex),
                 SIG_EXPIRED);
    cr_expect_eq(signature_check("s3cret", "99999999999999999999", good, body, strlen(body), 1000, 300, hex),
                 SIG_EXPIRED);
    cr_expect_eq(signature_check("s3cret", " 1000", good, body, strlen(body), 1000, 300, hex), SIG_EXPIRED);
}
