/* The step schedule and stop rule of a sustained-throughput run; see perf.h. */
#include "perf.h"

#include <stdlib.h>

bool perf_parse_step_by(const char *s, double *factor, double *add) {
    double v;
    if (!s) return false;
    if (s[0] == '+') {
        if (!perf_parse_double(s + 1, 1, 1e9, &v)) return false;
        *factor = 1;
        *add = v;
        return true;
    }
    if (!perf_parse_double(s, 1.01, 1000, &v)) return false;
    *factor = v;
    *add = 0;
    return true;
}

double perf_step_next(double rate, double factor, double add) { return add > 0 ? rate + add : rate * factor; }

bool perf_step_backlog_grew(const perf_step_t *s) {
    double slack = s->rate * PERF_STEP_BACKLOG_SLACK_S;
    return (double)(s->backlog_end - s->backlog_start) > (slack < 1 ? 1 : slack);
}

bool perf_step_sustained(const perf_step_t *s) {
    return s->errors == 0 && s->done == s->sent && s->achieved >= s->rate * 0.9 &&
           s->p99_ms < PERF_STEP_MAX_P99_MS && !perf_step_backlog_grew(s);
}

long perf_steps_highest(const perf_step_t *steps, size_t n) {
    long best = -1;
    for (size_t i = 0; i < n && perf_step_sustained(&steps[i]); i++) best = (long)i;
    return best;
}
