/* dealscore-feature: opportunity.changed -> features_snapshot + features.ready. */
#ifndef DS_FEATURE_SVC_H
#define DS_FEATURE_SVC_H

#include "runtime/service.h"

void feature_worker(ds_service_t *svc, void *state);
int feature_cmd_catalog(const ds_config_t *cfg, int argc, char **argv);

#endif
