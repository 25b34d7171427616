/* JWT parsing and verification: the input is the token (or an
 * Authorization value), checked against an HS256 secret and a JWKS of an
 * ES256 and an RS256 key. The seeds are tokens signed with the secret. */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "infra/jwt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-secret-0123456789abcdef0123456789"
#define NOW 1800000000

static ds_jwt_verifier_t *verifier;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    char *j1 = NULL, *j2 = NULL;
    if (!ec || !rsa || ds_jwt_public_jwk(ec, "ec1", &j1) != 0 || ds_jwt_public_jwk(rsa, "rsa1", &j2) != 0)
        abort();
    char *jwks = ds_asprintf("{\"keys\": [%s, %s]}", j1, j2);
    char err[256];
    if (ds_jwt_verifier_new(&verifier, jwks, SECRET, err, sizeof err) != 0) abort();
    free(jwks);
    free(j1);
    free(j2);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = ds_strndup((const char *)data, size);
    const char *token = ds_jwt_bearer_token(s);
    ds_jwt_claims_t claims;
    char err[256];
    if (ds_jwt_verify(verifier, token ? token : s, NOW, &claims, err, sizeof err) == 0)
        ds_jwt_claims_clear(&claims);
    char wa[256];
    ds_jwt_www_authenticate(err, wa, sizeof wa);
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    if (ds_jwt_b64url_decode(s, strlen(s), &raw, &rawlen) == 0) free(raw);
    free(s);
    return 0;
}
