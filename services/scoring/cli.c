/* What the subcommands (train, rescore) share on their command line. */
#include <stdarg.h>
#include <stdio.h>

#include "scoring.h"

int scoring_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dealscore-scoring %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    return 2;
}
