/* Decoding the dealscore.v1 events the workers consume. */
#include "infra/event.h"

#include <stdio.h>

#include "base/common.h"

int ds_event_decode_opportunity_changed(const rd_kafka_message_t *m, Dealscore__V1__OpportunityChanged **out,
                                        char traceparent[DS_TRACEPARENT_SIZE], char *errstr,
                                        size_t errstr_size) {
    *out = NULL;
    Dealscore__V1__OpportunityChanged *ev =
        dealscore__v1__opportunity_changed__unpack(NULL, m->len, m->payload);
    if (!ev) {
        snprintf(errstr, errstr_size, "payload is not a dealscore.v1.OpportunityChanged");
        return DS_EINVAL;
    }
    if (!ds_uuid_valid(ev->opportunity_id) || !ds_uuid_valid(ev->org_id)) {
        snprintf(errstr, errstr_size, "opportunity_id and org_id must be UUIDs");
        ds_event_opportunity_changed_free(ev);
        return DS_EINVAL;
    }
    if (traceparent) {
        char tp[DS_TRACEPARENT_SIZE];
        ds_event_traceparent_child(ds_kafka_header_get(m, DS_HDR_TRACEPARENT, tp, sizeof tp) == 0 ? tp : NULL,
                                   traceparent);
    }
    *out = ev;
    return 0;
}

void ds_event_opportunity_changed_free(Dealscore__V1__OpportunityChanged *ev) {
    if (ev) dealscore__v1__opportunity_changed__free_unpacked(ev, NULL);
}
