/* dealscore-benchmark: opportunity.changed -> benchmarks_cached and
 * opportunity_benchmarks (cohort.h has the cohort rules), plus a periodic
 * refresh that ages the cached cohorts' windows. */
#ifndef DS_BENCHMARK_SVC_H
#define DS_BENCHMARK_SVC_H

#include <stdbool.h>

#include "dealscore/v1/events.pb-c.h"
#include "runtime/service.h"
#include "runtime/worker.h"

/* One opportunity's changes in a batch: org and deal borrowed from the
 * decoded event. */
typedef struct {
    const char *org_id;
    const char *opp_id;
    bool activity_only; /* every event of it in the batch: interaction or transcript added */
} benchmark_change_t;

/* Decodes items[0..n) (OpportunityChanged payloads) into evs[i] (NULL for a
 * message that is none, or whose ids are not UUIDs: that item's status and
 * error say why) and coalesces them into ch, one per opportunity, sorted.
 * Returns how many. The caller frees each evs[i] with
 * dealscore__v1__opportunity_changed__free_unpacked. */
size_t benchmark_decode(ds_worker_item_t *items, size_t n, Dealscore__V1__OpportunityChanged **evs,
                        benchmark_change_t *ch);

/* The service's worker thread: consumes opportunity.changed until the service
 * stops, and runs the periodic refresh on a second thread of its own
 * (DEALSCORE_BENCH_REFRESH_S > 0). */
void benchmark_worker(ds_service_t *svc, void *state);

#endif
