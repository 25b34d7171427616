/* What kafka.c gives kafka_producer.c and kafka_consumer.c; not public API.
 * The dependency goes one way: kafka.c calls neither of them. */
#ifndef DEALSCORE_KAFKA_INTERNAL_H
#define DEALSCORE_KAFKA_INTERNAL_H

#include "infra/kafka.h"

/* Builds a configuration like ds_kafka_conf_new, with defaults (key, value
 * pairs, NULL-terminated; KAFKA_* overrides them) applied before the
 * passthrough and forced pairs applied after it. Returns 0 or DS_EINVAL. */
int ds__kafka_conf_new(rd_kafka_conf_t **out, const ds_config_t *cfg, const char *const *defaults,
                       const char *const *forced, char *errstr, size_t errstr_size);

/* Maps a librdkafka error to a DS_E* code (0 for no error). */
int ds__kafka_errcode(rd_kafka_resp_err_t err);

/* Routes librdkafka's error_cb through ds_log. */
void ds__kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);

#endif
