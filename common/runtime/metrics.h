/* A small Prometheus registry: counters, gauges and histograms, safe to
 * update from any thread, rendered in the text exposition format. */
#ifndef DEALSCORE_METRICS_H
#define DEALSCORE_METRICS_H

#include <stddef.h>

typedef struct ds_metrics_s ds_metrics_t;
typedef struct ds_metric_s ds_metric_t;

/* Creates a registry; every metric name gets "dealscore_" prepended.
 * Free with ds_metrics_destroy (NULL-safe), which frees its metrics too. */
ds_metrics_t *ds_metrics_new(void);
void ds_metrics_destroy(ds_metrics_t *m);

/* Returns the metric named name with the given labels (a Prometheus label
 * list without braces such as `status="202"`, or NULL), registering it on
 * first use. The registry owns it; the pointer stays valid until destroy. */
ds_metric_t *ds_metrics_counter(ds_metrics_t *m, const char *name, const char *help, const char *labels);
ds_metric_t *ds_metrics_gauge(ds_metrics_t *m, const char *name, const char *help, const char *labels);
/* buckets: ascending upper bounds (the +Inf bucket is implicit). */
ds_metric_t *ds_metrics_histogram(ds_metrics_t *m, const char *name, const char *help, const char *labels,
                                  const double *buckets, size_t nbuckets);

void ds_metric_add(ds_metric_t *metric, double v);
void ds_metric_set(ds_metric_t *metric, double v);
void ds_metric_observe(ds_metric_t *metric, double v);
double ds_metric_value(const ds_metric_t *metric); /* counter or gauge value; histogram count */

/* Default latency buckets in seconds, 0.5 ms to 10 s. */
extern const double ds_metrics_latency_buckets[];
extern const size_t ds_metrics_latency_nbuckets;

/* Renders the whole registry in the text format. The caller frees it. */
char *ds_metrics_render(ds_metrics_t *m);

#endif
