/* JWKS parsing: the input is inline key material (a JWKS or one JWK; it
 * must start with '{', anything else would be taken for a file or URL). A
 * verifier that accepts it is then asked to verify a fixed ES256 token. */
#include <stdint.h>
#include <stdlib.h>

#include "base/common.h"
#include "infra/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char TOKEN[] =
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0."
    "eyJzdWIiOiI3ZDhmMGExZS0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDEiLCJyb2xlIjoiYXV0aGVudGljYXRlZCJ9."
    "MEUCIQDZ0L5r3nKp5kq3gFv2mYy0XxJ8aM3xg6f2rJQnYz5mAgIgH3kF0vC1yT2mZ9cW8bQ4aN7sE6dL5pR3tU1vX0wY2zA";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || data[0] != '{') return 0;
    char *s = ds_strndup((const char *)data, size);
    ds_jwt_verifier_t *v = NULL;
    char err[256];
    if (ds_jwt_verifier_new(&v, s, NULL, err, sizeof err) == 0) {
        (void)ds_jwt_verifier_key_count(v);
        ds_jwt_claims_t claims;
        if (ds_jwt_verify(v, TOKEN, 1800000000, &claims, err, sizeof err) == 0) ds_jwt_claims_clear(&claims);
        ds_jwt_verifier_destroy(v);
    }
    free(s);
    return 0;
}
