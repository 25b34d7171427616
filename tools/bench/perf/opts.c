/* The benchmark programs' option and environment helpers; see bench.h. */
#include "perf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

extern char **environ;

bool perf_parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

/* Whether the environment entry e ("NAME=value") sets the variable that
 * assignment a ("NAME=...") sets. */
static bool same_name(const char *e, const char *a) {
    size_t n = strcspn(a, "=");
    return strncmp(e, a, n) == 0 && e[n] == '=';
}

char **perf_environ_with(const char *const *assignments, size_t n) {
    size_t ne = 0;
    while (environ[ne]) ne++;
    char **envp = ds_calloc(ne + n + 1, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        bool replaced = false;
        for (size_t j = 0; j < n && !replaced; j++) replaced = same_name(environ[i], assignments[j]);
        if (!replaced) envp[k++] = environ[i];
    }
    /* The strings stay the caller's; the array is char ** only because
     * that is what execve and ds_config_load take. */
    for (size_t j = 0; j < n; j++) envp[k++] = (char *)assignments[j];
    return envp;
}
