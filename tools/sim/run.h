/* Drivers of the simulator's two modes: CSV files into a directory, and a
 * live stream of changes posted to the ingest webhooks. */
#ifndef SIM_RUN_H
#define SIM_RUN_H

#include <stddef.h>

#include "sim.h"

typedef struct {
    sim_opts_t sim;
    const char *out; /* directory; created if missing */
    int orgs;        /* > 1: one subdirectory org<k> per org */
    int threads;     /* generator threads; the bytes do not depend on it */
} sim_run_opts_t;

/* Writes accounts.csv, opportunities.csv, interactions.csv, transcripts.csv
 * and truth.csv, and a summary on stderr. Returns 0, or -1 with a one-line
 * reason in errstr. */
int sim_run_csv(const sim_run_opts_t *o, char *errstr, size_t errstr_size);

typedef struct {
    sim_opts_t sim;
    const char *url;   /* base URL: http://host:port[/prefix] */
    const char *token; /* bearer token */
    double rate;       /* records per second, all connections together */
    int batch;         /* records per request */
    int concurrency;   /* connections */
    double duration;   /* seconds */
} sim_stream_opts_t;

/* Posts generated records as JSON arrays to URL/v1/opportunities,
 * /v1/interactions and /v1/transcripts until duration elapses or the
 * records run out; prints sent/accepted/errors and latency percentiles on
 * stderr. Returns 0 if every request got a 2xx answer, 1 if some failed, -1
 * with errstr if it could not start. */
int sim_run_stream(const sim_stream_opts_t *o, char *errstr, size_t errstr_size);

#endif
