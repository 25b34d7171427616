/* dealscore-ingest: settings from the environment, then the shared runtime. */
#include "runtime/service.h"
#include "ingest.h"

static const char *const topics[] = {DS_TOPIC_OPPORTUNITY_CHANGED};

static const ds_subcommand_t subcommands[] = {
    {"token", "token create|revoke|list --org SLUG   manage webhook tokens", ingest_cmd_token},
    {"import", "import --org SLUG [--accounts F] [--opportunities F] [--interactions F] [--transcripts F]",
     ingest_cmd_import},
};

static const ds_service_def_t def = {
    .kind = DS_SVC_INGEST,
    .summary = "front door: n8n webhooks and CSV import into the raw layer, published through an outbox",
    .topics = topics,
    .ntopics = sizeof topics / sizeof topics[0],
    .init = ingest_init,
    .stopping = ingest_stopping,
    .fini = ingest_fini,
    .subcommands = subcommands,
    .nsubcommands = sizeof subcommands / sizeof subcommands[0],
};

int main(int argc, char **argv) { return ds_service_main(argc, argv, &def); }
