/* dealscore-benchmark: opportunity.changed -> benchmarks_cached and
 * opportunity_benchmarks (cohort.h has the cohort rules), plus a periodic
 * refresh that ages the cached cohorts' windows. */
#ifndef DS_BENCHMARK_SVC_H
#define DS_BENCHMARK_SVC_H

#include "runtime/service.h"

/* The service's worker thread: consumes opportunity.changed until the service
 * stops, and runs the periodic refresh on a second thread of its own
 * (DEALSCORE_BENCH_REFRESH_S > 0). */
void benchmark_worker(ds_service_t *svc, void *state);

#endif
