/* The benchmark programs' option and environment helpers; see bench.h. */
#include "perf.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
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

int perf_parse_options(int argc, char **argv, const struct option *opts, const char *prog,
                       void (*usage)(FILE *out), const char *(*apply)(void *ctx, int c), void *ctx) {
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case ':': fprintf(stderr, "%s: %s needs a value (see --help)\n", prog, argv[optind - 1]); return 2;
        case '?': fprintf(stderr, "%s: unknown option %s (see --help)\n", prog, argv[optind - 1]); return 2;
        }
        const char *bad = apply(ctx, c);
        if (bad) {
            fprintf(stderr, "%s: %s\n", prog, bad);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", prog, argv[optind]);
        return 2;
    }
    return -1;
}
