/* Reading the dealscore.v1 events (proto/dealscore/v1/events.proto) out of
 * Kafka messages: the protobuf payload, checked, and the CloudEvents and
 * trace-context headers that travel with it (DESIGN.md, "Events"). */
#ifndef DEALSCORE_EVENT_H
#define DEALSCORE_EVENT_H

#include <stddef.h>

#include "dealscore/v1/events.pb-c.h"
#include "infra/kafka.h"

/* Decodes m's payload as a dealscore.v1.OpportunityChanged whose org_id and
 * opportunity_id are UUIDs. traceparent (may be NULL) gets the next hop's
 * trace context: a child of m's traceparent header, or a new trace when it
 * is missing or invalid. Returns 0 and *out (free it with
 * ds_event_opportunity_changed_free), or DS_EINVAL with *out NULL and the
 * reason in errstr, worded for a dead letter's dlq_error header. */
int ds_event_decode_opportunity_changed(const rd_kafka_message_t *m, Dealscore__V1__OpportunityChanged **out,
                                        char traceparent[DS_TRACEPARENT_SIZE], char *errstr,
                                        size_t errstr_size);

/* Frees a decoded OpportunityChanged; NULL does nothing. */
void ds_event_opportunity_changed_free(Dealscore__V1__OpportunityChanged *ev);

#endif
