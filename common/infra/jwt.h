/* Verification of Supabase session JWTs for POST /api/predict.
 *
 * Accepted: RS256 and ES256 (P-256) with a public key from a JWKS, chosen by
 * the token's `kid`, and the legacy HS256 shared secret when one is
 * configured. Everything else is refused: `alg: none`, other algorithms,
 * an HS256 token when no secret is configured, an RS256/ES256 token when no
 * JWKS is configured, an alg that does not match the key's type (algorithm
 * confusion), unknown `kid`s, `crit` headers, bad or badly encoded
 * signatures. Embedded key hints (`jwk`, `jku`, `x5u`, `x5c`) are ignored:
 * keys come only from the configuration.
 *
 * Claims: `exp` is required; `exp`, `nbf` and `iat` are checked with
 * DS_JWT_LEEWAY_S of clock skew; `aud` must be "authenticated" (or an array
 * containing it); `role` must be "authenticated"; `sub` must be a non-empty
 * string. Tokens of role `service_role` (and `anon`) are refused on purpose:
 * /api/predict acts for a signed-in user and runs under RLS as
 * `authenticated`; workers never come through this path.
 *
 * Implementation: OpenSSL 3 directly (EVP_DigestVerify, HMAC compared with
 * CRYPTO_memcmp, keys built with OSSL_PARAM_BLD + EVP_PKEY_fromdata) and
 * jansson for JSON. We do not use Debian's libjwt 1.x: it has no JWKS
 * support, and its decode API takes one key as bytes and lets the token's
 * header pick the algorithm to use with it, the pattern behind algorithm
 * confusion. Here every alg is bound explicitly to one kind of key.
 *
 * Key sources (`jwks` argument of ds_jwt_verifier_new):
 * - inline JSON (starts with '{'): a JWKS {"keys": [...]} or a single JWK;
 * - a file path: re-read when its inode, size or mtime changes (checked with
 *   one stat() per verification), so rotating keys needs no restart. A file
 *   that cannot be read or parsed keeps the last good key set (logged);
 * - an http:// or https:// URL (Supabase: <project>/auth/v1/.well-known/
 *   jwks.json): fetched with ds_httpc (infra/httpc.h: proxies from the
 *   environment, keep-alive) by a background thread of the verifier, never
 *   by ds_jwt_verify. Refreshed every 10 minutes; after a failure the last
 *   good key set stays and the fetch is retried after 30 s, doubling up to
 *   10 minutes. An unknown `kid` asks for a refetch at most once per 30 s,
 *   but that token itself still fails: Supabase publishes a standby key in
 *   the JWKS before it signs with it, so the periodic refresh normally has
 *   it already. https verifies the server's certificate against the
 *   system's trust store (SSL_CERT_FILE / SSL_CERT_DIR are honoured) and
 *   its host name.
 *
 * JWK support: kty "RSA" (n, e; at least 2048 bits) and kty "EC" with crv
 * "P-256" (x, y; the point is checked to be on the curve). Keys with
 * `use` other than "sig", an `alg` other than RS256/ES256, or another kty
 * (including "oct": a shared secret never comes from a JWKS) are skipped.
 *
 * Thread safety: ds_jwt_verify may be called from any number of threads at
 * once. The key set is an immutable, reference-counted object swapped under
 * a mutex; a verification holds a reference, so a rotation never frees a
 * key in use. ds_jwt_verify never does network I/O. */
#ifndef DEALSCORE_JWT_H
#define DEALSCORE_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "base/common.h"

/* Clock skew allowed on exp, nbf and iat, in seconds. */
#define DS_JWT_LEEWAY_S 30
/* Longer tokens are refused before any decoding. */
#define DS_JWT_MAX_TOKEN_LEN 16384
/* Minimum HS256 secret length in bytes (RFC 7518 3.2: at least the size of
 * the hash output). */
#define DS_JWT_MIN_SECRET_LEN 32

typedef struct ds_jwt_verifier_s ds_jwt_verifier_t;

/* What a verified token says. All strings are owned by the struct and
 * freed by ds_jwt_claims_clear. */
typedef struct {
    char *sub;   /* the user id (auth.uid()); never NULL */
    char *role;  /* always "authenticated" */
    char *email; /* NULL when absent, null or "" */
    /* app_metadata.org_id when it is a UUID string, else NULL (the same
     * rule as dealscore.current_org_id() in SQL: a NULL org sees no rows). */
    char *org_id;
    /* app_metadata.account_scoped, with the SQL helper's rule
     * (dealscore.account_scoped()): true unless absent, null, false or
     * "false" (fail closed). */
    bool account_scoped;
    /* is_anonymous: Supabase anonymous sign-ins also have role
     * "authenticated"; they carry no server-set app_metadata.org_id. */
    bool is_anonymous;
    int64_t exp; /* seconds since the epoch */
    /* The payload exactly as signed (decoded JSON text, NUL-terminated).
     * Set it with set_config('request.jwt.claims', claims_json, true) so
     * RLS sees what Supabase's own API would show it. */
    char *claims_json;
    char alg[8]; /* "HS256", "RS256" or "ES256" */
} ds_jwt_claims_t;

/* Creates a verifier. jwks: NULL/"" (none), inline JSON, a file path or an
 * http(s) URL; hs256_secret: NULL/"" (none) or the legacy Supabase JWT
 * secret, used as its raw bytes as Supabase does (at least
 * DS_JWT_MIN_SECRET_LEN bytes). At least one of the two must be set.
 *
 * Inline JSON and files are loaded now: invalid JSON or an unreadable file
 * fails. A URL is fetched now with a 5 s timeout; if that fails the
 * verifier is still created (warning logged), refuses asymmetric tokens
 * with "no signing keys available" and keeps retrying in the background:
 * use ds_jwt_verifier_key_count for readiness.
 *
 * Returns 0 and sets *v, or DS_EINVAL with the reason in errstr. The
 * secret is copied; nothing secret is written to errstr or the log. Free
 * with ds_jwt_verifier_destroy. */
int ds_jwt_verifier_new(ds_jwt_verifier_t **v, const char *jwks, const char *hs256_secret, char *errstr,
                        size_t errstr_size);
/* Stops the fetch thread (interrupting a fetch in progress) and frees
 * everything. NULL-safe. No ds_jwt_verify may be running. */
void ds_jwt_verifier_destroy(ds_jwt_verifier_t *v);
/* The number of asymmetric keys currently loaded (0 until a URL was
 * fetched successfully). Any thread. */
size_t ds_jwt_verifier_key_count(ds_jwt_verifier_t *v);
/* True when an HS256 secret is configured. */
bool ds_jwt_verifier_has_secret(const ds_jwt_verifier_t *v);

/* Verifies token (the bare JWT, without "Bearer ") at time now_s (seconds
 * since the epoch). Returns 0 and fills *out (call ds_jwt_claims_clear
 * after), or DS_EAUTH with a short reason in errstr (a static phrase that
 * never contains token or key material, safe for logs and for
 * ds_jwt_www_authenticate); *out is then zeroed. Any thread. */
int ds_jwt_verify(ds_jwt_verifier_t *v, const char *token, int64_t now_s, ds_jwt_claims_t *out, char *errstr,
                  size_t errstr_size);
/* Frees the claims' strings and zeroes the struct. NULL-safe. */
void ds_jwt_claims_clear(ds_jwt_claims_t *c);

/* The token of an Authorization header value ("Bearer <token>", scheme
 * case-insensitive, surrounding blanks ignored): a pointer into
 * authorization, or NULL when it is not a Bearer credential. Trailing
 * blanks are not stripped; ds_jwt_verify refuses them as malformed. */
const char *ds_jwt_bearer_token(const char *authorization);
/* Formats the WWW-Authenticate value for a 401 (RFC 6750 3): with
 * reason NULL (no credentials were sent) `Bearer realm="dealscore"`, else
 * `Bearer realm="dealscore", error="invalid_token", error_description="..."`
 * (quotes and control characters in reason are replaced). */
void ds_jwt_www_authenticate(const char *reason, char *buf, size_t bufsz);

/* Token makers for tests, the demo and benchmarks. */

/* Signs claims_json (a JSON object, used verbatim as the payload) with
 * HS256 and the given secret; header {"alg":"HS256","typ":"JWT"}.
 * Returns 0 and a new string in *out (caller frees), or DS_EINVAL. */
int ds_jwt_sign_hs256(const char *secret, const char *claims_json, char **out);
/* Signs claims_json with a private key: alg "RS256" (RSA key) or "ES256"
 * (P-256 key; the signature is raw r||s as JWS requires); kid may be NULL.
 * Returns 0 and a new string in *out (caller frees), or DS_EINVAL. */
int ds_jwt_sign_with_key(EVP_PKEY *key, const char *alg, const char *kid, const char *claims_json,
                         char **out);
/* The public JWK of key (RSA, or EC P-256) as a JSON object text with kty,
 * kid (when not NULL), use "sig", alg and the key fields. Returns 0 and a
 * new string in *out (caller frees), or DS_EINVAL. Wrap several in
 * {"keys": [...]} for a JWKS. */
int ds_jwt_public_jwk(EVP_PKEY *key, const char *kid, char **out);

/* Unpadded base64url (RFC 4648 5). encode returns a new string (caller
 * frees). decode accepts only the canonical encoding (no padding, no
 * other characters, unused bits zero): returns 0 and a new buffer in *out
 * with a NUL after its *outlen bytes (caller frees), or DS_EINVAL. */
char *ds_jwt_b64url_encode(const void *buf, size_t len);
int ds_jwt_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);

#endif
