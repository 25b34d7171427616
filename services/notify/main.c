/* dealscore-notify: settings from the environment, then the shared runtime. */
#include "notify.h"
#include "runtime/service.h"

static const char *const topics[] = {DS_TOPIC_PREDICTION_MADE};

static const ds_subcommand_t subcommands[] = {
    {"subscription",
     "subscription add --org SLUG --url URL [--events score.changed] [--min-change P] | list --org SLUG | "
     "remove ID",
     notify_cmd_subscription},
    {"deliveries",
     "deliveries list --org SLUG [--failed] [--limit N] | replay ID | replay --failed [--org SLUG]",
     notify_cmd_deliveries},
};

static const ds_service_def_t def = {
    .kind = DS_SVC_NOTIFY,
    .summary = "sends score changes (prediction.made) to subscribers as signed CloudEvents, with retries",
    .topics = topics,
    .ntopics = sizeof topics / sizeof topics[0],
    .needs_consumer = true,
    .worker = notify_worker,
    .subcommands = subcommands,
    .nsubcommands = sizeof subcommands / sizeof subcommands[0],
};

int main(int argc, char **argv) { return ds_service_main(argc, argv, &def); }
