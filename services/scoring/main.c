/* dealscore-scoring: settings from the environment, then the shared runtime. */
#include "dealscore/service.h"

static const char *const topics[] = {DS_TOPIC_FEATURES_READY, DS_TOPIC_PREDICTION_MADE};

static const ds_service_def_t def = {
    .kind = DS_SVC_SCORING,
    .summary = "scores opportunities with drivers, serves POST /api/predict, trains and rescores",
    .topics = topics,
    .ntopics = sizeof topics / sizeof topics[0],
    .needs_consumer = false,
};

int main(int argc, char **argv) { return ds_service_main(argc, argv, &def); }
