/* Prometheus text rendering. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/metrics.h"

Test(metrics, renders_counters_gauges_histograms) {
    ds_metrics_t *m = ds_metrics_new();
    ds_metric_add(ds_metrics_counter(m, "requests_total", "Requests", "status=\"202\""), 2);
    ds_metric_add(ds_metrics_counter(m, "requests_total", "Requests", "status=\"400\""), 1);
    ds_metric_add(ds_metrics_counter(m, "requests_total", "Requests", "status=\"202\""), 1);
    ds_metric_set(ds_metrics_gauge(m, "outbox_depth", "Unsent rows", NULL), 7);
    const double b[] = {0.1, 1};
    ds_metric_t *h = ds_metrics_histogram(m, "latency_seconds", "Latency", NULL, b, 2);
    ds_metric_observe(h, 0.05);
    ds_metric_observe(h, 0.5);
    ds_metric_observe(h, 5);
    char *t = ds_metrics_render(m);
    cr_assert(strstr(t, "# TYPE dealscore_requests_total counter\n"), "%s", t);
    cr_assert(strstr(t, "dealscore_requests_total{status=\"202\"} 3\n"), "%s", t);
    cr_assert(strstr(t, "dealscore_requests_total{status=\"400\"} 1\n"), "%s", t);
    cr_assert(strstr(t, "dealscore_outbox_depth 7\n"), "%s", t);
    cr_assert(strstr(t, "dealscore_latency_seconds_bucket{le=\"0.1\"} 1\n"), "%s", t);
    cr_assert(strstr(t, "dealscore_latency_seconds_bucket{le=\"1\"} 2\n"), "%s", t);
    cr_assert(strstr(t, "dealscore_latency_seconds_bucket{le=\"+Inf\"} 3\n"), "%s", t);
    cr_assert(strstr(t, "dealscore_latency_seconds_count 3\n"), "%s", t);
    /* One HELP/TYPE block per name. */
    cr_assert_eq(strstr(strstr(t, "# TYPE dealscore_requests_total") + 1, "# TYPE dealscore_requests_total"),
                 NULL);
    free(t);
    ds_metrics_destroy(m);
}
