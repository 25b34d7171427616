/* Supabase session JWT verification: accepted tokens and their claims, each
 * attack refused with its own reason, key rotation through a JWKS file and
 * URL (a local HTTP and HTTPS server on 127.0.0.1), concurrent use. Keys and
 * certificates are generated at run time; nothing secret is committed. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "infra/jwt.h"
#include "loopback.h"

#define NOW 1795662880LL
#define SECRET "dev-secret-for-tests-0123456789abcdef-0123456789"
#define SUB "6f1b8a52-0c1e-4c4e-9a43-1f7f0c2a9b11"
#define ORG "0b7c6f3e-4f1d-4b8a-9c2e-5a6d7e8f9a0b"

static EVP_PKEY *rsa, *ec;
static char dir[64];
static char jwks_path[128];

/* Everything a test allocates is freed in teardown, so ASan stays quiet. */
static void *garbage[256];
static size_t ngarbage;
static ds_jwt_verifier_t *verifiers[8];
static size_t nverifiers;

static char *keep(char *s) {
    cr_assert(ngarbage < sizeof garbage / sizeof garbage[0]);
    garbage[ngarbage++] = s;
    return s;
}

/* RSA key generation takes up to a second on a busy machine, so the runner
 * makes the keys once per run (PRE_ALL runs in the runner process, before
 * the test processes start and inherit the environment) into a private
 * temporary directory that POST_ALL removes. */
#define KEYS_ENV "DS_TEST_JWT_KEYS"
static const char *const key_names[] = {"rsa", "ec", "evil"};

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
    (void)set;
    char d[] = "/tmp/ds-jwt-keys-XXXXXX";
    if (!mkdtemp(d)) return;
    for (size_t i = 0; i < sizeof key_names / sizeof key_names[0]; i++) {
        EVP_PKEY *k = i == 1 ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
        char path[64];
        snprintf(path, sizeof path, "%s/%s.pem", d, key_names[i]);
        FILE *f = fopen(path, "w");
        if (!k || !f || !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL)) {
            if (f) fclose(f);
            EVP_PKEY_free(k);
            return; /* the tests generate their own keys */
        }
        fclose(f);
        EVP_PKEY_free(k);
    }
    setenv(KEYS_ENV, d, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
    (void)stats;
    const char *d = getenv(KEYS_ENV);
    if (!d) return;
    for (size_t i = 0; i < sizeof key_names / sizeof key_names[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s/%s.pem", d, key_names[i]);
        unlink(path);
    }
    rmdir(d);
}

/* Key number i of the run (generated now if the runner made none). */
static EVP_PKEY *test_key(size_t i) {
    const char *d = getenv(KEYS_ENV);
    EVP_PKEY *k = NULL;
    if (d) {
        char path[64];
        snprintf(path, sizeof path, "%s/%s.pem", d, key_names[i]);
        FILE *f = fopen(path, "r");
        if (f) {
            k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
            fclose(f);
        }
    }
    if (!k) k = i == 1 ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
    cr_assert(k);
    return k;
}

static void setup(void) {
    rsa = test_key(0);
    ec = test_key(1);
    snprintf(dir, sizeof dir, "/tmp/ds-jwt-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(jwks_path, sizeof jwks_path, "%s/jwks.json", dir);
}

static void teardown(void) {
    for (size_t i = 0; i < nverifiers; i++) ds_jwt_verifier_destroy(verifiers[i]);
    for (size_t i = 0; i < ngarbage; i++) free(garbage[i]);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    int r = system(cmd);
    (void)r;
}

TestSuite(jwt, .init = setup, .fini = teardown, .timeout = 60);

static ds_jwt_verifier_t *verifier(const char *jwks, const char *secret) {
    ds_jwt_verifier_t *v = NULL;
    char err[256] = "";
    int rc = ds_jwt_verifier_new(&v, jwks, secret, err, sizeof err);
    cr_assert_eq(rc, 0, "verifier: %s", err);
    cr_assert(nverifiers < sizeof verifiers / sizeof verifiers[0]);
    verifiers[nverifiers++] = v;
    return v;
}

/* A JWKS of n (key, kid) pairs. */
static char *jwks_of(int n, ...) {
    va_list ap;
    json_t *keys = json_array();
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        EVP_PKEY *k = va_arg(ap, EVP_PKEY *);
        const char *kid = va_arg(ap, const char *);
        char *jwk;
        cr_assert_eq(ds_jwt_public_jwk(k, kid, &jwk), 0);
        json_array_append_new(keys, json_loads(jwk, 0, NULL));
        free(jwk);
    }
    va_end(ap);
    json_t *root = json_pack("{s:o}", "keys", keys);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return keep(s);
}

/* Replaces path atomically, as a key rotation script would. */
static void write_file(const char *path, const char *text) {
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0);
}

static json_t *base_claims(void) {
    return json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:b,"
                     " s:{s:s, s:s, s:b}, s:{}}",
                     "iss", "http://127.0.0.1:54321/auth/v1", "aud", "authenticated", "exp",
                     (json_int_t)(NOW + 3600), "iat", (json_int_t)(NOW - 10), "sub", SUB, "email",
                     "ana@example.com", "phone", "", "role", "authenticated", "aal", "aal1", "session_id",
                     "3a1c2f40-1111-4222-8333-944455556666", "is_anonymous", 0, "app_metadata", "provider",
                     "email", "org_id", ORG, "account_scoped", 0, "user_metadata");
}

static char *dump(json_t *c) {
    char *s = json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(c);
    return keep(s);
}

static char *tok_hs(json_t *c) {
    char *t;
    cr_assert_eq(ds_jwt_sign_hs256(SECRET, dump(c), &t), 0);
    return keep(t);
}

static char *tok_key(EVP_PKEY *k, const char *alg, const char *kid, json_t *c) {
    char *t;
    cr_assert_eq(ds_jwt_sign_with_key(k, alg, kid, dump(c), &t), 0);
    return keep(t);
}

static char *b64(const void *p, size_t n) { return keep(ds_jwt_b64url_encode(p, n)); }

/* header.payload.signature from raw parts (sig may be NULL: empty). */
static char *craft(const char *header, const char *payload, const void *sig, size_t siglen) {
    return keep(ds_asprintf("%s.%s.%s", b64(header, strlen(header)), b64(payload, strlen(payload)),
                            sig ? b64(sig, siglen) : ""));
}

/* header.payload signed with HMAC-SHA256 under key. */
static char *craft_hs(const char *header, const char *payload, const void *key, size_t keylen) {
    char *in = keep(ds_asprintf("%s.%s", b64(header, strlen(header)), b64(payload, strlen(payload))));
    unsigned char mac[32];
    unsigned int maclen = 0;
    cr_assert(HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)in, strlen(in), mac, &maclen));
    return keep(ds_asprintf("%s.%s", in, b64(mac, maclen)));
}

static void accepts(ds_jwt_verifier_t *v, const char *tok, ds_jwt_claims_t *c) {
    char err[128] = "";
    int rc = ds_jwt_verify(v, tok, NOW, c, err, sizeof err);
    cr_assert_eq(rc, 0, "refused: %s", err);
}

static void refuses(ds_jwt_verifier_t *v, const char *tok, const char *reason) {
    char err[128] = "";
    ds_jwt_claims_t c;
    memset(&c, 0x5a, sizeof c);
    int rc = ds_jwt_verify(v, tok, NOW, &c, err, sizeof err);
    cr_assert_eq(rc, DS_EAUTH, "accepted, expected \"%s\"", reason);
    cr_assert_str_eq(err, reason);
    cr_assert_null(c.sub);
    cr_assert_null(c.claims_json);
}

/* The token's parts split at the dots (each kept). */
static void split(const char *tok, char **h, char **p, char **s) {
    const char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    *h = keep(ds_strndup(tok, (size_t)(d1 - tok)));
    *p = keep(ds_strndup(d1 + 1, (size_t)(d2 - d1 - 1)));
    *s = keep(ds_strdup(d2 + 1));
}

static char *pubkey_pem(EVP_PKEY *k) {
    BIO *b = BIO_new(BIO_s_mem());
    cr_assert(PEM_write_bio_PUBKEY(b, k));
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = keep(ds_strndup(data, (size_t)n));
    BIO_free(b);
    return s;
}

/* ------------------------------------------------------------ accepted -- */

Test(jwt, accepts_hs256_with_claims) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    json_t *c = base_claims();
    char *payload = keep(json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER));
    char *tok = tok_hs(c);
    ds_jwt_claims_t cl;
    accepts(v, tok, &cl);
    cr_assert_str_eq(cl.sub, SUB);
    cr_assert_str_eq(cl.role, "authenticated");
    cr_assert_str_eq(cl.email, "ana@example.com");
    cr_assert_str_eq(cl.org_id, ORG);
    cr_assert_not(cl.account_scoped);
    cr_assert_not(cl.is_anonymous);
    cr_assert_eq(cl.exp, NOW + 3600);
    cr_assert_str_eq(cl.alg, "HS256");
    /* The exact signed text, for request.jwt.claims. */
    cr_assert_str_eq(cl.claims_json, payload);
    ds_jwt_claims_clear(&cl);
    cr_assert_null(cl.sub);
    ds_jwt_claims_clear(NULL);
}

Test(jwt, accepts_rs256_from_jwks_file) {
    write_file(jwks_path, jwks_of(2, rsa, "rsa-1", ec, "ec-1"));
    ds_jwt_verifier_t *v = verifier(jwks_path, NULL);
    cr_assert_eq(ds_jwt_verifier_key_count(v), 2);
    cr_assert_not(ds_jwt_verifier_has_secret(v));
    json_t *c = base_claims();
    json_object_set_new(json_object_get(c, "app_metadata"), "account_scoped", json_true());
    json_object_set_new(json_object_get(c, "app_metadata"), "org_id",
                        json_string("0B7C6F3E-4F1D-4B8A-9C2E-5A6D7E8F9A0B"));
    json_object_set_new(c, "aud", json_pack("[s, s]", "other", "authenticated"));
    json_object_del(c, "email");
    ds_jwt_claims_t cl;
    accepts(v, tok_key(rsa, "RS256", "rsa-1", c), &cl);
    cr_assert_str_eq(cl.sub, SUB);
    cr_assert_str_eq(cl.role, "authenticated");
    cr_assert_str_eq(cl.org_id, ORG, "org_id is lowercased");
    cr_assert(cl.account_scoped);
    cr_assert_null(cl.email);
    cr_assert_str_eq(cl.alg, "RS256");
    ds_jwt_claims_clear(&cl);
}

Test(jwt, accepts_es256_from_inline_jwks) {
    ds_jwt_verifier_t *v = verifier(jwks_of(2, rsa, "rsa-1", ec, "ec-1"), SECRET);
    json_t *c = base_claims();
    /* account_scoped follows dealscore.account_scoped(): anything but absent,
     * null, false and "false" restricts. */
    json_object_set_new(json_object_get(c, "app_metadata"), "account_scoped", json_string("yes"));
    ds_jwt_claims_t cl;
    accepts(v, tok_key(ec, "ES256", "ec-1", c), &cl);
    cr_assert_str_eq(cl.sub, SUB);
    cr_assert_str_eq(cl.org_id, ORG);
    cr_assert(cl.account_scoped);
    cr_assert_str_eq(cl.alg, "ES256");
    ds_jwt_claims_clear(&cl);
    /* The HS256 secret keeps working next to the JWKS. */
    accepts(v, tok_hs(base_claims()), &cl);
    ds_jwt_claims_clear(&cl);
}

Test(jwt, org_id_and_account_scoped_follow_the_sql_rules) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    struct {
        json_t *org, *scoped;
        bool has_org, want_scoped;
    } cases[] = {
        {json_string("not-a-uuid"), json_string("false"), false, false},
        {json_integer(42), json_null(), false, false},
        {NULL, json_false(), false, false},
        {json_string(ORG), json_integer(0), true, true},
        {json_string(ORG), NULL, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *c = base_claims(), *am = json_object_get(c, "app_metadata");
        json_object_del(am, "org_id");
        json_object_del(am, "account_scoped");
        if (cases[i].org) json_object_set_new(am, "org_id", cases[i].org);
        if (cases[i].scoped) json_object_set_new(am, "account_scoped", cases[i].scoped);
        ds_jwt_claims_t cl;
        accepts(v, tok_hs(c), &cl);
        cr_assert_eq(cl.org_id != NULL, cases[i].has_org, "case %zu", i);
        cr_assert_eq(cl.account_scoped, cases[i].want_scoped, "case %zu", i);
        ds_jwt_claims_clear(&cl);
    }
    /* No app_metadata at all (an anonymous sign-in). */
    json_t *c = base_claims();
    json_object_del(c, "app_metadata");
    json_object_set_new(c, "is_anonymous", json_true());
    ds_jwt_claims_t cl;
    accepts(v, tok_hs(c), &cl);
    cr_assert_null(cl.org_id);
    cr_assert_not(cl.account_scoped);
    cr_assert(cl.is_anonymous);
    ds_jwt_claims_clear(&cl);
}

Test(jwt, accepts_a_token_without_kid_when_there_is_one_key) {
    ds_jwt_verifier_t *v = verifier(jwks_of(1, rsa, "rsa-1"), NULL);
    ds_jwt_claims_t cl;
    accepts(v, tok_key(rsa, "RS256", NULL, base_claims()), &cl);
    ds_jwt_claims_clear(&cl);
}

/* -------------------------------------------------------- alg attacks -- */

Test(jwt, rejects_alg_none_without_signature) {
    ds_jwt_verifier_t *v = verifier(jwks_of(1, rsa, "rsa-1"), SECRET);
    char *payload = dump(base_claims());
    refuses(v, craft("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, NULL, 0), "alg none is not accepted");
    refuses(v, craft("{\"alg\":\"NoNe\"}", payload, NULL, 0), "alg none is not accepted");
}

Test(jwt, rejects_alg_none_with_signature) {
    ds_jwt_verifier_t *v = verifier(jwks_of(1, rsa, "rsa-1"), SECRET);
    /* A valid HS256 token with its header swapped for alg none. */
    char *h, *p, *s;
    split(tok_hs(base_claims()), &h, &p, &s);
    const char *none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    refuses(v, keep(ds_asprintf("%s.%s.%s", b64(none, strlen(none)), p, s)), "alg none is not accepted");
}

Test(jwt, rejects_hs256_signed_with_the_rsa_public_key_when_only_jwks) {
    ds_jwt_verifier_t *v = verifier(jwks_of(1, rsa, "rsa-1"), NULL);
    char *pem = pubkey_pem(rsa), *payload = dump(base_claims());
    refuses(v, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"rsa-1\"}", payload, pem, strlen(pem)),
            "HS256 is not accepted: no shared secret configured");
    refuses(v, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, pem, strlen(pem)),
            "HS256 is not accepted: no shared secret configured");
}

Test(jwt, rejects_hs256_signed_with_the_rsa_public_key_when_both_configured) {
    ds_jwt_verifier_t *v = verifier(jwks_of(1, rsa, "rsa-1"), SECRET);
    char *pem = pubkey_pem(rsa), *payload = dump(base_claims());
    /* Naming the RSA key: caught as a mismatch before any HMAC. */
    refuses(v, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"rsa-1\"}", payload, pem, strlen(pem)),
            "alg does not match the key type");
    /* Without a kid: HMAC with the configured secret, which does not match. */
    refuses(v, craft_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, pem, strlen(pem)), "bad signature");
}

Test(jwt, rejects_rs256_with_no_jwks_configured) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    refuses(v, tok_key(rsa, "RS256", "rsa-1", base_claims()),
            "RS256 and ES256 are not accepted: no JWKS configured");
}

Test(jwt, rejects_alg_that_does_not_match_the_key_type) {
    ds_jwt_verifier_t *v = verifier(jwks_of(2, rsa, "rsa-1", ec, "ec-1"), NULL);
    /* Signed correctly with the EC key but claiming the RSA key's kid, and
     * the other way round. */
    refuses(v, tok_key(ec, "ES256", "rsa-1", base_claims()), "alg does not match the key type");
    refuses(v, tok_key(rsa, "RS256", "ec-1", base_claims()), "alg does not match the key type");
}

Test(jwt, rejects_unsupported_algs) {
    ds_jwt_verifier_t *v = verifier(jwks_of(1, rsa, "rsa-1"), SECRET);
    char *payload = dump(base_claims());
    const char *hdrs[] = {"{\"alg\":\"HS512\"}", "{\"alg\":\"PS256\",\"kid\":\"rsa-1\"}",
                          "{\"alg\":\"RS512\",\"kid\":\"rsa-1\"}", "{\"alg\":\"hs256\"}",
                          "{\"alg\":\"EdDSA\"}"};
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++)
        refuses(v, craft_hs(hdrs[i], payload, SECRET, strlen(SECRET)), "unsupported alg");
    refuses(v, craft_hs("{\"typ\":\"JWT\"}", payload, SECRET, strlen(SECRET)),
            "malformed token: header has no alg");
    refuses(v, craft_hs("{\"alg\":256}", payload, SECRET, strlen(SECRET)),
            "malformed token: header has no alg");
}

Test(jwt, rejects_crit_and_foreign_typ_headers) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    char *payload = dump(base_claims());
    refuses(v,
            craft_hs("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", payload, SECRET, strlen(SECRET)),
            "crit header is not supported");
    refuses(v, craft_hs("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", payload, SECRET, strlen(SECRET)),
            "typ is not JWT");
    ds_jwt_claims_t cl;
    accepts(v, craft_hs("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", payload, SECRET, strlen(SECRET)), &cl);
    ds_jwt_claims_clear(&cl);
}

Test(jwt, ignores_a_key_embedded_in_the_header) {
    ds_jwt_verifier_t *v = verifier(jwks_of(1, rsa, "rsa-1"), NULL);
    EVP_PKEY *evil = test_key(2);
    char *jwk, *tok;
    cr_assert_eq(ds_jwt_public_jwk(evil, "rsa-1", &jwk), 0);
    /* The attacker's own key, offered in the header under the real kid. */
    char *header = keep(ds_asprintf("{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"jwk\":%s}", jwk));
    char *payload = dump(base_claims());
    char *in = keep(ds_asprintf("%s.%s", b64(header, strlen(header)), b64(payload, strlen(payload))));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[512];
    size_t siglen = sizeof sig;
    cr_assert_eq(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, evil), 1);
    cr_assert_eq(EVP_DigestSign(md, sig, &siglen, (unsigned char *)in, strlen(in)), 1);
    tok = keep(ds_asprintf("%s.%s", in, b64(sig, siglen)));
    refuses(v, tok, "bad signature");
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(evil);
    free(jwk);
}

/* ------------------------------------------------------- kid handling -- */

Test(jwt, rejects_unknown_kid) {
    ds_jwt_verifier_t *v = verifier(jwks_of(2, rsa, "rsa-1", ec, "ec-1"), NULL);
    refuses(v, tok_key(rsa, "RS256", "rsa-2", base_claims()), "unknown kid");
}

Test(jwt, rejects_missing_kid_with_several_keys) {
    ds_jwt_verifier_t *v = verifier(jwks_of(2, rsa, "rsa-1", ec, "ec-1"), NULL);
    refuses(v, tok_key(rsa, "RS256", NULL, base_claims()),
            "token has no kid and several keys are configured");
}

/* ----------------------------------------------------------- tampering -- */

Test(jwt, rejects_tampered_payload) {
    ds_jwt_verifier_t *v = verifier(jwks_of(2, rsa, "rsa-1", ec, "ec-1"), SECRET);
    json_t *other = base_claims();
    json_object_set_new(json_object_get(other, "app_metadata"), "org_id",
                        json_string("11111111-2222-4333-8444-555555555555"));
    char *forged = dump(other);
    char *toks[] = {tok_hs(base_claims()), tok_key(rsa, "RS256", "rsa-1", base_claims()),
                    tok_key(ec, "ES256", "ec-1", base_claims())};
    for (size_t i = 0; i < 3; i++) {
        char *h, *p, *s;
        split(toks[i], &h, &p, &s);
        refuses(v, keep(ds_asprintf("%s.%s.%s", h, b64(forged, strlen(forged)), s)), "bad signature");
    }
}

Test(jwt, rejects_tampered_signature) {
    ds_jwt_verifier_t *v = verifier(jwks_of(2, rsa, "rsa-1", ec, "ec-1"), SECRET);
    char *toks[] = {tok_hs(base_claims()), tok_key(rsa, "RS256", "rsa-1", base_claims()),
                    tok_key(ec, "ES256", "ec-1", base_claims())};
    for (size_t i = 0; i < 3; i++) {
        char *t = keep(ds_strdup(toks[i]));
        char *sig = strrchr(t, '.') + 1;
        size_t mid = strlen(sig) / 2;
        sig[mid] = sig[mid] == 'A' ? 'B' : 'A';
        refuses(v, t, "bad signature");
        /* A signature cut short by three bytes. */
        char *h, *p, *s;
        unsigned char *raw;
        size_t rawlen;
        split(toks[i], &h, &p, &s);
        cr_assert_eq(ds_jwt_b64url_decode(s, strlen(s), &raw, &rawlen), 0);
        t = keep(ds_asprintf("%s.%s.%s", h, p, b64(raw, rawlen - 3)));
        free(raw);
        refuses(v, t, i == 2 ? "bad signature encoding" : "bad signature");
    }
}

Test(jwt, rejects_noncanonical_base64url) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    /* A 32-byte HMAC is 43 characters with two unused bits in the last one:
     * flipping those bits gives a different text for the same bytes. */
    char *t = keep(ds_strdup(tok_hs(base_claims())));
    char *last = t + strlen(t) - 1;
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int val = (int)(strchr(alphabet, *last) - alphabet);
    *last = alphabet[val ^ 1];
    refuses(v, t, "malformed token: invalid base64url");
}

Test(jwt, rejects_es256_signature_in_der_form) {
    ds_jwt_verifier_t *v = verifier(jwks_of(1, ec, "ec-1"), NULL);
    char *h, *p, *s;
    split(tok_key(ec, "ES256", "ec-1", base_claims()), &h, &p, &s);
    unsigned char *raw, *der = NULL;
    size_t rawlen;
    cr_assert_eq(ds_jwt_b64url_decode(s, strlen(s), &raw, &rawlen), 0);
    cr_assert_eq(rawlen, 64);
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    int derlen = i2d_ECDSA_SIG(es, &der);
    cr_assert_gt(derlen, 0);
    refuses(v, keep(ds_asprintf("%s.%s.%s", h, p, b64(der, (size_t)derlen))), "bad signature encoding");
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    free(raw);
}

Test(jwt, rejects_duplicate_claim_names) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    /* Parsers disagree on which duplicate wins; Postgres keeps the last. */
    const char *payload = "{\"sub\":\"" SUB "\",\"role\":\"authenticated\","
                          "\"aud\":\"authenticated\","
                          "\"exp\":1795666480,\"app_metadata\":{\"org_id\":\"" ORG "\"},"
                          "\"app_metadata\":{\"org_id\":\"11111111-2222-4333-8444-555555555555\"}}";
    refuses(v, craft_hs("{\"alg\":\"HS256\"}", payload, SECRET, strlen(SECRET)),
            "malformed token: payload is not a JSON object");
}

/* -------------------------------------------------------------- claims -- */

static char *with_claim(const char *name, json_t *value) {
    json_t *c = base_claims();
    if (value)
        json_object_set_new(c, name, value);
    else
        json_object_del(c, name);
    return tok_hs(c);
}

Test(jwt, rejects_expired_beyond_leeway) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    refuses(v, with_claim("exp", json_integer(NOW - DS_JWT_LEEWAY_S - 1)), "token expired");
    refuses(v, with_claim("exp", json_integer(NOW - 3600)), "token expired");
    refuses(v, with_claim("exp", NULL), "exp is missing");
    refuses(v, with_claim("exp", json_string("tomorrow")), "exp is not a number");
}

Test(jwt, accepts_just_expired_within_leeway) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    ds_jwt_claims_t cl;
    accepts(v, with_claim("exp", json_integer(NOW - DS_JWT_LEEWAY_S)), &cl);
    ds_jwt_claims_clear(&cl);
    accepts(v, with_claim("exp", json_integer(NOW - 1)), &cl);
    ds_jwt_claims_clear(&cl);
    accepts(v, with_claim("exp", json_real((double)NOW + 0.5)), &cl);
    cr_assert_eq(cl.exp, NOW);
    ds_jwt_claims_clear(&cl);
}

Test(jwt, rejects_nbf_in_the_future) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    refuses(v, with_claim("nbf", json_integer(NOW + DS_JWT_LEEWAY_S + 1)), "token not yet valid");
    refuses(v, with_claim("nbf", json_string("now")), "nbf is not a number");
    ds_jwt_claims_t cl;
    accepts(v, with_claim("nbf", json_integer(NOW + DS_JWT_LEEWAY_S)), &cl);
    ds_jwt_claims_clear(&cl);
}

Test(jwt, rejects_iat_in_the_future) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    refuses(v, with_claim("iat", json_integer(NOW + 3600)), "token issued in the future");
    ds_jwt_claims_t cl;
    accepts(v, with_claim("iat", json_integer(NOW + DS_JWT_LEEWAY_S)), &cl);
    ds_jwt_claims_clear(&cl);
}

Test(jwt, rejects_wrong_aud) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    refuses(v, with_claim("aud", json_string("anon")), "aud is not authenticated");
    refuses(v, with_claim("aud", json_pack("[s, s]", "anon", "service")), "aud is not authenticated");
    refuses(v, with_claim("aud", json_array()), "aud is not authenticated");
    refuses(v, with_claim("aud", NULL), "aud is not authenticated");
}

Test(jwt, rejects_anon_and_service_role) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    refuses(v, with_claim("role", json_string("anon")), "role is not authenticated");
    refuses(v, with_claim("role", json_string("service_role")), "role is not authenticated");
    refuses(v, with_claim("role", NULL), "role is not authenticated");
}

Test(jwt, rejects_missing_sub) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    refuses(v, with_claim("sub", NULL), "sub is missing");
    refuses(v, with_claim("sub", json_string("")), "sub is missing");
    refuses(v, with_claim("sub", json_integer(7)), "sub is missing");
}

/* ----------------------------------------------------------- malformed -- */

Test(jwt, rejects_malformed_base64) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    char *h, *p, *s;
    split(tok_hs(base_claims()), &h, &p, &s);
    refuses(v, keep(ds_asprintf("%s*.%s.%s", h, p, s)), "malformed token: invalid base64url");
    refuses(v, keep(ds_asprintf("%s.%s=.%s", h, p, s)), "malformed token: invalid base64url");
    refuses(v, keep(ds_asprintf("%s.%s.%s+", h, p, s)), "malformed token: invalid base64url");
    refuses(v, keep(ds_asprintf("%sA.%s.%s", h, p, s)), "malformed token: invalid base64url");
}

Test(jwt, rejects_header_not_json) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    char *payload = dump(base_claims());
    refuses(v, craft_hs("alg=HS256", payload, SECRET, strlen(SECRET)),
            "malformed token: header is not a JSON object");
    refuses(v, craft_hs("[\"HS256\"]", payload, SECRET, strlen(SECRET)),
            "malformed token: header is not a JSON object");
    refuses(v, craft_hs("", payload, SECRET, strlen(SECRET)), "malformed token: header is not a JSON object");
}

Test(jwt, rejects_payload_not_json_even_when_signed) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    refuses(v, craft_hs("{\"alg\":\"HS256\"}", "sub=me", SECRET, strlen(SECRET)),
            "malformed token: payload is not a JSON object");
}

Test(jwt, rejects_two_part_token) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    char *h, *p, *s;
    split(tok_hs(base_claims()), &h, &p, &s);
    refuses(v, keep(ds_asprintf("%s.%s", h, p)), "malformed token: not three parts");
    refuses(v, h, "malformed token: not three parts");
    refuses(v, "", "malformed token: empty");
    refuses(v, NULL, "malformed token: empty");
}

Test(jwt, rejects_extra_dots) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    char *t = tok_hs(base_claims()), *h, *p, *s;
    split(t, &h, &p, &s);
    refuses(v, keep(ds_asprintf("%s.", t)), "malformed token: not three parts");
    refuses(v, keep(ds_asprintf("%s.%s.%s.%s", h, p, s, s)), "malformed token: not three parts");
    refuses(v, keep(ds_asprintf("%s..%s.%s", h, p, s)), "malformed token: not three parts");
    /* A JWE (five parts) is not a JWS. */
    refuses(v, "a.b.c.d.e", "malformed token: not three parts");
}

Test(jwt, rejects_oversized_token) {
    ds_jwt_verifier_t *v = verifier(NULL, SECRET);
    char *big = keep(ds_malloc(DS_JWT_MAX_TOKEN_LEN + 2));
    memset(big, 'A', DS_JWT_MAX_TOKEN_LEN + 1);
    big[DS_JWT_MAX_TOKEN_LEN + 1] = '\0';
    refuses(v, big, "malformed token: too long");
}

/* --------------------------------------------------------- configuring -- */

Test(jwt, refuses_bad_configuration) {
    ds_jwt_verifier_t *v = NULL;
    char err[256];
    cr_assert_eq(ds_jwt_verifier_new(&v, NULL, NULL, err, sizeof err), DS_EINVAL);
    cr_assert_eq(ds_jwt_verifier_new(&v, "", "", err, sizeof err), DS_EINVAL);
    cr_assert_eq(ds_jwt_verifier_new(&v, NULL, "short", err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "shorter than 32 bytes") && !strstr(err, "short\""), "%s", err);
    cr_assert_eq(ds_jwt_verifier_new(&v, "/nonexistent/jwks.json", NULL, err, sizeof err), DS_EINVAL);
    cr_assert(strstr(err, "/nonexistent/jwks.json"), "%s", err);
    cr_assert_eq(ds_jwt_verifier_new(&v, "{\"keys\": 3}", NULL, err, sizeof err), DS_EINVAL);
    cr_assert_eq(ds_jwt_verifier_new(&v, "{not json", NULL, err, sizeof err), DS_EINVAL);
    cr_assert_eq(ds_jwt_verifier_new(&v, "ftp://example.com/jwks", NULL, err, sizeof err), DS_EINVAL,
                 "a path is fine but ftp:// is not a file either");
    cr_assert_eq(ds_jwt_verifier_new(&v, "http://user@host/jwks", NULL, err, sizeof err), DS_EINVAL);
    cr_assert_eq(ds_jwt_verifier_new(&v, "https://host:99999/jwks", NULL, err, sizeof err), DS_EINVAL);
    cr_assert_null(v);
    ds_jwt_verifier_destroy(NULL);
}

Test(jwt, skips_unusable_jwks_entries) {
    EVP_PKEY *small = EVP_RSA_gen(1024);
    char *small_jwk, *rsa_jwk, *ec_jwk;
    cr_assert_eq(ds_jwt_public_jwk(small, "small", &small_jwk), 0);
    cr_assert_eq(ds_jwt_public_jwk(rsa, "rsa-1", &rsa_jwk), 0);
    cr_assert_eq(ds_jwt_public_jwk(ec, "ec-1", &ec_jwk), 0);
    /* An EC point that is not on the curve: y of the real key plus one. */
    json_t *bad_ec = json_loads(ec_jwk, 0, NULL);
    unsigned char *y;
    size_t ylen;
    const char *ys = json_string_value(json_object_get(bad_ec, "y"));
    cr_assert_eq(ds_jwt_b64url_decode(ys, strlen(ys), &y, &ylen), 0);
    y[31] ^= 1;
    json_object_set_new(bad_ec, "y", json_string(b64(y, ylen)));
    json_object_set_new(bad_ec, "kid", json_string("off-curve"));
    free(y);
    char *bad_ec_s = keep(json_dumps(bad_ec, JSON_COMPACT));
    json_decref(bad_ec);
    char *jwks =
        keep(ds_asprintf("{\"keys\":[%s,%s,"
                         "{\"kty\":\"oct\",\"kid\":\"hmac\",\"k\":\"c2VjcmV0\"},"
                         "{\"kty\":\"RSA\",\"kid\":\"enc\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
                         "{\"kty\":\"EC\",\"kid\":\"p384\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"},"
                         "%s,%s]}",
                         small_jwk, bad_ec_s, rsa_jwk, ec_jwk));
    ds_jwt_verifier_t *v = verifier(jwks, SECRET);
    cr_assert_eq(ds_jwt_verifier_key_count(v), 2);
    refuses(v, tok_key(small, "RS256", "small", base_claims()), "unknown kid");
    /* The oct key never becomes an HMAC key. */
    refuses(v, craft_hs("{\"alg\":\"HS256\",\"kid\":\"hmac\"}", dump(base_claims()), "secret", 6),
            "bad signature");
    ds_jwt_claims_t cl;
    accepts(v, tok_key(ec, "ES256", "ec-1", base_claims()), &cl);
    ds_jwt_claims_clear(&cl);
    EVP_PKEY_free(small);
    free(small_jwk);
    free(rsa_jwk);
    free(ec_jwk);
}

/* ------------------------------------------------------------ rotation -- */

Test(jwt, rotates_keys_from_the_jwks_file) {
    EVP_PKEY *ec2 = EVP_EC_gen("P-256");
    write_file(jwks_path, jwks_of(1, rsa, "rsa-1"));
    ds_jwt_verifier_t *v = verifier(jwks_path, NULL);
    char *old_tok = tok_key(rsa, "RS256", "rsa-1", base_claims());
    char *new_tok = tok_key(ec2, "ES256", "ec-2", base_claims());
    ds_jwt_claims_t cl;
    accepts(v, old_tok, &cl);
    ds_jwt_claims_clear(&cl);
    refuses(v, new_tok, "unknown kid");

    /* Rotation step 1: the new key is published next to the old one. */
    write_file(jwks_path, jwks_of(2, rsa, "rsa-1", ec2, "ec-2"));
    accepts(v, new_tok, &cl);
    ds_jwt_claims_clear(&cl);
    accepts(v, old_tok, &cl);
    ds_jwt_claims_clear(&cl);

    /* A broken file (a bad edit) keeps the last good keys. */
    write_file(jwks_path, "{\"keys\": [");
    accepts(v, new_tok, &cl);
    ds_jwt_claims_clear(&cl);

    /* Step 2: the old key is revoked. */
    write_file(jwks_path, jwks_of(1, ec2, "ec-2"));
    refuses(v, old_tok, "unknown kid");
    accepts(v, new_tok, &cl);
    ds_jwt_claims_clear(&cl);
    cr_assert_eq(ds_jwt_verifier_key_count(v), 1);

    /* A deleted file keeps the last good keys too. */
    cr_assert_eq(unlink(jwks_path), 0);
    accepts(v, new_tok, &cl);
    ds_jwt_claims_clear(&cl);
    EVP_PKEY_free(ec2);
}

typedef struct {
    ds_jwt_verifier_t *v;
    const char *tok;
    int failures;
} worker_t;

static void *verify_many(void *arg) {
    worker_t *w = arg;
    for (int i = 0; i < 300; i++) {
        ds_jwt_claims_t cl;
        char err[128];
        if (ds_jwt_verify(w->v, w->tok, NOW, &cl, err, sizeof err) != 0) w->failures++;
        ds_jwt_claims_clear(&cl);
    }
    return NULL;
}

Test(jwt, verifies_from_several_threads_during_rotation) {
    write_file(jwks_path, jwks_of(1, rsa, "rsa-1"));
    ds_jwt_verifier_t *v = verifier(jwks_path, SECRET);
    char *toks[] = {tok_key(rsa, "RS256", "rsa-1", base_claims()), tok_hs(base_claims())};
    pthread_t th[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){.v = v, .tok = toks[i % 2]};
        cr_assert_eq(pthread_create(&th[i], NULL, verify_many, &w[i]), 0);
    }
    char *both = jwks_of(2, rsa, "rsa-1", ec, "ec-1"), *one = jwks_of(1, rsa, "rsa-1");
    for (int i = 0; i < 40; i++) write_file(jwks_path, i % 2 ? one : both);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(w[i].failures, 0, "worker %d", i);
    }
}

/* ---------------------------------------------------------- URL source -- */

/* A tiny HTTP(S) server on 127.0.0.1 serving a JWKS, one connection at a
 * time, until stopped. */
typedef struct {
    int lfd, port;
    SSL_CTX *tls;
    pthread_t th;
    pthread_mutex_t mu;
    char *body;
    int status;
    bool chunked;
    bool hang; /* read the request, never answer */
    int requests;
    atomic_bool stop;
} server_t;

static void serve_one(server_t *s, int fd) {
    SSL *ssl = NULL;
    char req[4096];
    size_t n = 0;
    if (s->tls) {
        ssl = SSL_new(s->tls);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) goto out;
    }
    while (n < sizeof req - 1 && !memmem(req, n, "\r\n\r\n", 4)) {
        int r = ssl ? SSL_read(ssl, req + n, (int)(sizeof req - 1 - n))
                    : (int)recv(fd, req + n, sizeof req - 1 - n, 0);
        if (r <= 0) goto out;
        n += (size_t)r;
    }
    pthread_mutex_lock(&s->mu);
    s->requests++;
    bool hang = s->hang;
    pthread_mutex_unlock(&s->mu);
    while (hang && !s->stop) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0 && recv(fd, req, sizeof req, 0) <= 0) goto out; /* client left */
    }
    if (hang) goto out;
    pthread_mutex_lock(&s->mu);
    char *resp;
    if (s->chunked) {
        size_t half = strlen(s->body) / 2;
        resp = ds_asprintf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"
                           "%zx\r\n%.*s\r\n%zx;ext=1\r\n%s\r\n0\r\n\r\n",
                           s->status, half, (int)half, s->body, strlen(s->body) - half, s->body + half);
    } else {
        resp = ds_asprintf("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n\r\n%s",
                           s->status, strlen(s->body), s->body);
    }
    pthread_mutex_unlock(&s->mu);
    if (ssl)
        SSL_write(ssl, resp, (int)strlen(resp));
    else if (send(fd, resp, strlen(resp), MSG_NOSIGNAL) < 0) {
        /* the client went away */
    }
    free(resp);
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
}

static void *server_main(void *arg) {
    server_t *s = arg;
    while (!s->stop) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd >= 0) serve_one(s, fd);
    }
    return NULL;
}

static void server_start(server_t *s, const char *body, SSL_CTX *tls) {
    /* OpenSSL writes with write(): a close_notify (SSL_shutdown) to a
     * client that already hung up, as one that refused the certificate
     * does, must fail with EPIPE rather than kill the test with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->body = ds_strdup(body);
    s->status = 200;
    s->tls = tls;
    s->lfd = loopback_listen(&s->port);
    cr_assert_eq(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_set(server_t *s, const char *body, int status) {
    pthread_mutex_lock(&s->mu);
    if (body) {
        free(s->body);
        s->body = ds_strdup(body);
    }
    s->status = status;
    pthread_mutex_unlock(&s->mu);
}

static int server_requests(server_t *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->requests;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void server_stop(server_t *s) {
    s->stop = true;
    pthread_join(s->th, NULL);
    close(s->lfd);
    free(s->body);
    pthread_mutex_destroy(&s->mu);
}

/* Retries until the token is accepted (the fetch runs in the background). */
static bool eventually_accepts(ds_jwt_verifier_t *v, const char *tok) {
    for (int i = 0; i < 100; i++) {
        ds_jwt_claims_t cl;
        char err[128];
        if (ds_jwt_verify(v, tok, NOW, &cl, err, sizeof err) == 0) {
            ds_jwt_claims_clear(&cl);
            return true;
        }
        usleep(50 * 1000);
    }
    return false;
}

Test(jwt, fetches_the_jwks_from_a_url_and_refetches_on_unknown_kid) {
    server_t s;
    server_start(&s, jwks_of(1, rsa, "rsa-1"), NULL);
    char *url = keep(ds_asprintf("http://127.0.0.1:%d/auth/v1/.well-known/jwks.json", s.port));
    ds_jwt_verifier_t *v = verifier(url, NULL);
    cr_assert_eq(ds_jwt_verifier_key_count(v), 1);
    cr_assert_eq(server_requests(&s), 1);
    ds_jwt_claims_t cl;
    accepts(v, tok_key(rsa, "RS256", "rsa-1", base_claims()), &cl);
    ds_jwt_claims_clear(&cl);

    /* Supabase rotates: a new key appears (served chunked this time). The
     * first token with its kid is refused and triggers one refetch. */
    pthread_mutex_lock(&s.mu);
    s.chunked = true;
    pthread_mutex_unlock(&s.mu);
    server_set(&s, jwks_of(2, rsa, "rsa-1", ec, "ec-2"), 200);
    char *new_tok = tok_key(ec, "ES256", "ec-2", base_claims());
    refuses(v, new_tok, "unknown kid");
    cr_assert(eventually_accepts(v, new_tok));
    cr_assert_eq(server_requests(&s), 2);

    /* Further unknown kids within 30 s do not refetch again. */
    refuses(v, tok_key(rsa, "RS256", "rsa-9", base_claims()), "unknown kid");
    usleep(200 * 1000);
    cr_assert_eq(server_requests(&s), 2);
    ds_jwt_verifier_destroy(v);
    nverifiers--;
    server_stop(&s);
}

Test(jwt, keeps_the_last_good_keys_when_a_fetch_fails) {
    server_t s;
    server_start(&s, jwks_of(1, rsa, "rsa-1"), NULL);
    char *url = keep(ds_asprintf("http://127.0.0.1:%d/jwks", s.port));
    ds_jwt_verifier_t *v = verifier(url, NULL);
    server_set(&s, "upstream error", 503);
    refuses(v, tok_key(rsa, "RS256", "rsa-2", base_claims()), "unknown kid");
    for (int i = 0; i < 100 && server_requests(&s) < 2; i++) usleep(20 * 1000);
    cr_assert_eq(server_requests(&s), 2);
    usleep(100 * 1000);
    cr_assert_eq(ds_jwt_verifier_key_count(v), 1);
    ds_jwt_claims_t cl;
    accepts(v, tok_key(rsa, "RS256", "rsa-1", base_claims()), &cl);
    ds_jwt_claims_clear(&cl);
    ds_jwt_verifier_destroy(v);
    nverifiers--;
    server_stop(&s);
}

/* Destroying the verifier interrupts a fetch that waits on a server which
 * never answers, instead of waiting out the fetch timeout. */
Test(jwt, destroy_interrupts_a_hanging_fetch) {
    server_t s;
    server_start(&s, jwks_of(1, rsa, "rsa-1"), NULL);
    char *url = keep(ds_asprintf("http://127.0.0.1:%d/jwks", s.port));
    ds_jwt_verifier_t *v = verifier(url, NULL);
    pthread_mutex_lock(&s.mu);
    s.hang = true;
    pthread_mutex_unlock(&s.mu);
    refuses(v, tok_key(rsa, "RS256", "rsa-2", base_claims()), "unknown kid");
    for (int i = 0; i < 100 && server_requests(&s) < 2; i++) usleep(20 * 1000);
    cr_assert_eq(server_requests(&s), 2, "the refetch reached the server");
    int64_t t0 = ds_mono_us();
    ds_jwt_verifier_destroy(v);
    nverifiers--;
    int64_t took = ds_mono_us() - t0;
    cr_assert_lt(took, 500000, "destroy took %lld us", (long long)took);
    server_stop(&s);
}

Test(jwt, starts_without_keys_when_the_url_is_unreachable) {
    char *url = keep(ds_asprintf("http://127.0.0.1:%d/jwks", loopback_free_port()));
    ds_jwt_verifier_t *v = verifier(url, SECRET);
    cr_assert_eq(ds_jwt_verifier_key_count(v), 0);
    refuses(v, tok_key(rsa, "RS256", "rsa-1", base_claims()), "no signing keys available");
    ds_jwt_claims_t cl;
    accepts(v, tok_hs(base_claims()), &cl);
    ds_jwt_claims_clear(&cl);
}

/* A self-signed certificate for the given subjectAltName, written with its
 * key to dir; returns a server context. */
static SSL_CTX *tls_server(const char *san, const char *cert_path) {
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"jwks test", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, k);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    cr_assert(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    cr_assert(X509_sign(x, k, EVP_sha256()));
    FILE *f = fopen(cert_path, "w");
    cr_assert(f);
    PEM_write_X509(f, x);
    fclose(f);
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    cr_assert(SSL_CTX_use_certificate(sctx, x) == 1 && SSL_CTX_use_PrivateKey(sctx, k) == 1);
    X509_free(x);
    EVP_PKEY_free(k);
    return sctx;
}

Test(jwt, fetches_over_https_and_checks_the_certificate) {
    char *cert = keep(ds_asprintf("%s/ca.pem", dir));
    SSL_CTX *sctx = tls_server("IP:127.0.0.1", cert);
    /* Trust the test certificate instead of the system's store. */
    setenv("SSL_CERT_FILE", cert, 1);
    setenv("SSL_CERT_DIR", dir, 1);
    server_t s;
    server_start(&s, jwks_of(1, ec, "ec-1"), sctx);
    char *url = keep(ds_asprintf("https://127.0.0.1:%d/jwks", s.port));
    ds_jwt_verifier_t *v = verifier(url, NULL);
    cr_assert_eq(ds_jwt_verifier_key_count(v), 1);
    ds_jwt_claims_t cl;
    accepts(v, tok_key(ec, "ES256", "ec-1", base_claims()), &cl);
    ds_jwt_claims_clear(&cl);
    ds_jwt_verifier_destroy(v);
    nverifiers--;
    server_stop(&s);
    SSL_CTX_free(sctx);

    /* A certificate for another name is refused: no keys. */
    sctx = tls_server("DNS:jwks.example.invalid", cert);
    server_start(&s, jwks_of(1, ec, "ec-1"), sctx);
    url = keep(ds_asprintf("https://127.0.0.1:%d/jwks", s.port));
    v = verifier(url, NULL);
    cr_assert_eq(ds_jwt_verifier_key_count(v), 0);
    refuses(v, tok_key(ec, "ES256", "ec-1", base_claims()), "no signing keys available");
    ds_jwt_verifier_destroy(v);
    nverifiers--;
    server_stop(&s);
    SSL_CTX_free(sctx);
}

/* ------------------------------------------------------------- helpers -- */

Test(jwt, bearer_token_and_www_authenticate) {
    cr_assert_str_eq(ds_jwt_bearer_token("Bearer abc.def.ghi"), "abc.def.ghi");
    cr_assert_str_eq(ds_jwt_bearer_token("  bearer \t x.y.z"), "x.y.z");
    cr_assert_null(ds_jwt_bearer_token("Basic dXNlcjpwdw=="));
    cr_assert_null(ds_jwt_bearer_token("Bearer"));
    cr_assert_null(ds_jwt_bearer_token("Bearer   "));
    cr_assert_null(ds_jwt_bearer_token("Bearerabc"));
    cr_assert_null(ds_jwt_bearer_token(NULL));
    char buf[256];
    ds_jwt_www_authenticate(NULL, buf, sizeof buf);
    cr_assert_str_eq(buf, "Bearer realm=\"dealscore\"");
    ds_jwt_www_authenticate("token expired", buf, sizeof buf);
    cr_assert_str_eq(buf, "Bearer realm=\"dealscore\", error=\"invalid_token\", "
                          "error_description=\"token expired\"");
    ds_jwt_www_authenticate("a \"quoted\"\r\nline", buf, sizeof buf);
    cr_assert(!strchr(strstr(buf, "description=\"") + 13, '\r'), "%s", buf);
    cr_assert_str_eq(strstr(buf, "description="), "description=\"a 'quoted'  line\"");
}

Test(jwt, base64url_round_trip_and_strictness) {
    const unsigned char bytes[] = {0xfb, 0xff, 0xbf, 0x00, 0x01};
    for (size_t n = 0; n <= sizeof bytes; n++) {
        char *s = ds_jwt_b64url_encode(bytes, n);
        unsigned char *d;
        size_t dl;
        cr_assert_eq(ds_jwt_b64url_decode(s, strlen(s), &d, &dl), 0, "%s", s);
        cr_assert_eq(dl, n);
        cr_assert_eq(memcmp(d, bytes, n), 0);
        cr_assert(!strpbrk(s, "+/="));
        free(s);
        free(d);
    }
    unsigned char *d;
    size_t dl;
    cr_assert_eq(ds_jwt_b64url_decode("-_-_", 4, &d, &dl), 0);
    free(d);
    const char *bad[] = {"A", "AB==", "A+/B", "AB C", "AB", "ABC"};
    /* "AB" and "ABC" carry nonzero unused bits; "AA" and "AAE" do not. */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(ds_jwt_b64url_decode(bad[i], strlen(bad[i]), &d, &dl), DS_EINVAL, "%s", bad[i]);
    cr_assert_eq(ds_jwt_b64url_decode("AA", 2, &d, &dl), 0);
    free(d);
    cr_assert_eq(ds_jwt_b64url_decode("AAE", 3, &d, &dl), 0);
    free(d);
}

Test(jwt, signing_helpers_refuse_bad_input) {
    char *t;
    cr_assert_eq(ds_jwt_sign_hs256(SECRET, "not json", &t), DS_EINVAL);
    cr_assert_null(t);
    cr_assert_eq(ds_jwt_sign_hs256(SECRET, "[1]", &t), DS_EINVAL);
    cr_assert_eq(ds_jwt_sign_with_key(rsa, "ES256", NULL, "{}", &t), DS_EINVAL);
    cr_assert_eq(ds_jwt_sign_with_key(ec, "RS256", NULL, "{}", &t), DS_EINVAL);
    cr_assert_eq(ds_jwt_sign_with_key(rsa, "PS256", NULL, "{}", &t), DS_EINVAL);
    cr_assert_eq(ds_jwt_sign_with_key(rsa, "RS256", "k", "{}", &t), 0);
    char *h, *p, *s;
    split(keep(t), &h, &p, &s);
    unsigned char *hd;
    size_t hl;
    cr_assert_eq(ds_jwt_b64url_decode(h, strlen(h), &hd, &hl), 0);
    cr_assert_str_eq((char *)hd, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"k\"}");
    free(hd);
}
