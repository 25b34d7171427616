/* dealscore-scoring: settings from the environment, then the shared runtime. */
#include "runtime/service.h"
#include "scoring.h"

static const char *const topics[] = {DS_TOPIC_FEATURES_READY, DS_TOPIC_PREDICTION_MADE};

static const ds_subcommand_t subcommands[] = {
    {"train", "train --org SLUG [options]   build a point-in-time training set, train, evaluate, register",
     scoring_cmd_train},
    {"rescore", "rescore [--org SLUG]         re-score every open opportunity (nightly CronJob)",
     scoring_cmd_rescore},
    {"forecast-backtest",
     "forecast-backtest --org SLUG [--months N]   replay past months' forecasts against what was won",
     scoring_cmd_forecast_backtest},
    {"ladder",
     "ladder set|show|clear --org SLUG [--stage NAME=P ... | --csv FILE]   the org's cold-start "
     "stage ladder",
     scoring_cmd_ladder},
    {"lexicon",
     "lexicon import --org SLUG FILE.csv   the org's own MEDDICC phrases (element,phrase[,weight])",
     scoring_cmd_lexicon},
};

static const ds_service_def_t def = {
    .kind = DS_SVC_SCORING,
    .summary = "scores opportunities with drivers, serves POST /api/predict, trains and rescores",
    .topics = topics,
    .ntopics = sizeof topics / sizeof topics[0],
    .needs_consumer = false, /* /api/predict stays in service without a partition */
    .init = scoring_init,
    .worker = scoring_worker,
    .stopping = scoring_stopping,
    .fini = scoring_fini,
    .subcommands = subcommands,
    .nsubcommands = sizeof subcommands / sizeof subcommands[0],
};

int main(int argc, char **argv) { return ds_service_main(argc, argv, &def); }
