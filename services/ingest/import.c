/* dealscore-ingest import: CSV files through the same validation and upsert
 * core as the webhooks. (Placeholder until the CSV importer lands.) */
#include <stdio.h>

#include "ingest.h"

int ingest_cmd_import(const ds_config_t *cfg, int argc, char **argv) {
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "dealscore-ingest import: not implemented yet\n");
    return 2;
}
