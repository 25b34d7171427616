/* The webhook's target: /v1/<kind>[/] and its query string. */
#include <string.h>

#include "infra/http.h"
#include "ingest.h"

int ingest_route(const char *path, size_t plen, const char *query, size_t qlen, rec_kind_t *kind,
                 rec_profile_t *profile) {
    /* Exactly "/v1/" and a kind's name, one trailing '/' allowed: the
     * decoded path may hold any byte, NUL included. */
    if (plen < 5 || memcmp(path, "/v1/", 4) != 0) return DS_ENOTFOUND;
    const char *name = path + 4;
    size_t n = plen - 4;
    if (name[n - 1] == '/') n--;
    int k = -1;
    for (int i = 0; i < REC_KIND_COUNT; i++) {
        const char *plural = rec_kind_plural((rec_kind_t)i);
        if (strlen(plural) == n && memcmp(plural, name, n) == 0) k = i;
    }
    if (k < 0) return DS_ENOTFOUND;
    *kind = (rec_kind_t)k;
    *profile = PROFILE_NATIVE;
    if (!query) return 0;
    char v[16];
    int vlen = ds_http_query_param(query, qlen, "profile", v, sizeof v);
    if (vlen == DS_ENOTFOUND) return 0;
    if (vlen == 6 && memcmp(v, "native", 6) == 0) return 0;
    if (vlen == 10 && memcmp(v, "salesforce", 10) == 0) {
        *profile = PROFILE_SALESFORCE;
        return 0;
    }
    if (vlen == 7 && memcmp(v, "hubspot", 7) == 0) {
        *profile = PROFILE_HUBSPOT;
        return 0;
    }
    return DS_EINVAL;
}
