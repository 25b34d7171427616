/* dealscore-feature: settings from the environment, then the shared runtime. */
#include "runtime/service.h"
#include "feature.h"

static const char *const topics[] = {DS_TOPIC_OPPORTUNITY_CHANGED, DS_TOPIC_FEATURES_READY};

static const ds_subcommand_t subcommands[] = {
    {"catalog", "catalog            print the feature catalog as JSON", feature_cmd_catalog},
};

static const ds_service_def_t def = {
    .kind = DS_SVC_FEATURE,
    .summary = "computes point-in-time features for changed opportunities and publishes features.ready",
    .topics = topics,
    .ntopics = sizeof topics / sizeof topics[0],
    .needs_consumer = true,
    .worker = feature_worker,
    .subcommands = subcommands,
    .nsubcommands = sizeof subcommands / sizeof subcommands[0],
};

int main(int argc, char **argv) { return ds_service_main(argc, argv, &def); }
