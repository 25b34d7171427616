/* dealscore-scoring train and rescore. (Being written.) */
#include <stdio.h>

#include "scoring.h"

int scoring_cmd_train(const ds_config_t *cfg, int argc, char **argv) {
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "dealscore-scoring train: not implemented yet\n");
    return 2;
}

int scoring_cmd_rescore(const ds_config_t *cfg, int argc, char **argv) {
    (void)cfg;
    (void)argc;
    (void)argv;
    fprintf(stderr, "dealscore-scoring rescore: not implemented yet\n");
    return 2;
}
