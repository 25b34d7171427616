/* The webhook's target: /v1/<kind>[/] and its query string. */
#include <string.h>

#include "infra/http.h"
#include "ingest.h"

static const char *const profiles[] = {"native", "salesforce", "hubspot"};

/* Reads the profile parameter into t; a value of no profile is DS_EINVAL. */
static int read_profile(const char *query, size_t qlen, ingest_target_t *t) {
    char v[16];
    int vlen = ds_http_query_param(query, qlen, "profile", v, sizeof v);
    if (vlen == DS_ENOTFOUND) return 0;
    for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++)
        if (vlen == (int)strlen(profiles[i]) && memcmp(v, profiles[i], (size_t)vlen) == 0) {
            t->profile = (rec_profile_t)i;
            return 0;
        }
    return DS_EINVAL;
}

/* Reads the partial parameter into t: true or false. */
static int read_partial(const char *query, size_t qlen, ingest_target_t *t) {
    char v[8];
    int vlen = ds_http_query_param(query, qlen, "partial", v, sizeof v);
    if (vlen == DS_ENOTFOUND) return 0;
    if (vlen == 4 && memcmp(v, "true", 4) == 0)
        t->partial = true;
    else if (vlen != 5 || memcmp(v, "false", 5) != 0)
        return DS_EINVAL;
    return 0;
}

int ingest_route(const char *path, size_t plen, const char *query, size_t qlen, ingest_target_t *t,
                 const char **bad_param) {
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
    *t = (ingest_target_t){(rec_kind_t)k, PROFILE_NATIVE, false};
    if (!query) return 0;
    if (read_profile(query, qlen, t) != 0) {
        *bad_param = "profile";
        return DS_EINVAL;
    }
    if (read_partial(query, qlen, t) != 0) {
        *bad_param = "partial";
        return DS_EINVAL;
    }
    return 0;
}
