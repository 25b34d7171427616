/* dealscore-benchmark: settings from the environment, then the shared runtime. */
#include "benchmark.h"
#include "runtime/service.h"

static const char *const topics[] = {DS_TOPIC_OPPORTUNITY_CHANGED};

static const ds_service_def_t def = {
    .kind = DS_SVC_BENCHMARK,
    .summary = "keeps cohort benchmarks of similar won deals up to date",
    .topics = topics,
    .ntopics = sizeof topics / sizeof topics[0],
    .needs_consumer = true,
    .worker = benchmark_worker,
};

int main(int argc, char **argv) { return ds_service_main(argc, argv, &def); }
