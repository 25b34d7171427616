/* The request target and headers read before any handler logic: ingest's
 * route (/v1/<kind> on the decoded path, the profile and partial query parameters), the
 * query-string parser and the media-type check. The input is
 * "<decoded path>?<query>"; the whole input is also a Content-Type value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "infra/http.h"
#include "ingest/ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Copies, so that reading past the end is caught. */
    char *in = ds_malloc(size ? size : 1);
    memcpy(in, data, size);
    const char *q = memchr(in, '?', size);
    size_t plen = q ? (size_t)(q - in) : size;
    char *path = ds_malloc(plen ? plen : 1);
    memcpy(path, in, plen);
    char *query = NULL;
    size_t qlen = 0;
    if (q) {
        qlen = size - plen - 1;
        query = ds_malloc(qlen ? qlen : 1);
        memcpy(query, q + 1, qlen);
    }
    ingest_target_t t;
    const char *bad = NULL;
    int rc = ingest_route(path, plen, q ? query : NULL, qlen, &t, &bad);
    if (rc == 0 && (t.kind >= REC_KIND_COUNT || t.profile > PROFILE_HUBSPOT)) __builtin_trap();
    if (rc == DS_EINVAL && (!bad || (strcmp(bad, "profile") != 0 && strcmp(bad, "partial") != 0)))
        __builtin_trap();
    char v[16];
    int n = ds_http_query_param(query ? query : in, query ? qlen : size, "profile", v, sizeof v);
    if (n >= 0 && strlen(v) > (size_t)n) __builtin_trap();
    char *ct = ds_strndup(in, size);
    (void)ds_http_media_type_is(ct, "application/json");
    free(ct);
    free(query);
    free(path);
    free(in);
    return 0;
}
