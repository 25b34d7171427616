/* dealscore-notify: outbound score events. prediction.made, consumed in a
 * consumer group of its own, becomes one delivery row per matching
 * subscription (dealscore_internal.notify_deliveries, written before the
 * offsets are stored: at least once), and delivery threads POST each row as
 * a signed CloudEvent until the receiver answers 2xx or the tries run out.
 * README.md says why this is a process of its own. */
#ifndef DS_NOTIFY_SVC_H
#define DS_NOTIFY_SVC_H

#include <stdbool.h>
#include <stdint.h>

#include "base/config.h"
#include "base/sb.h"
#include "dealscore/v1/events.pb-c.h"
#include "runtime/service.h"

/* The one event type a subscription can ask for so far, and its CloudEvents
 * type attribute. */
#define NOTIFY_EVENT_SCORE_CHANGED "score.changed"
#define NOTIFY_CE_SCORE_CHANGED "com.dealscore.score.changed"

/* What a score.changed event says besides the prediction itself. */
typedef struct {
    const char *id;          /* the CloudEvent id (the delivery's id) */
    const char *source;      /* the CloudEvent source */
    const char *external_id; /* the CRM's id of the opportunity; NULL when unknown */
    int64_t scored_at_us;    /* when scoring published the prediction */
} notify_event_ctx_t;

/* Appends the CloudEvent (structured mode, JSON) of prediction pm to b:
 * {"specversion":"1.0","type":..,"source":..,"id":..,"time":..,"subject":
 * opportunity id,"datacontenttype":"application/json","data":{"org_id",
 * "opportunity_id","external_id","probability","previous_probability",
 * "model_version","as_of","scored_at","prediction_event_id","drivers":
 * {"positive":[{"feature","label","value","contribution"}],"negative":[..]},
 * "change":{"previous_proba","delta","drivers":[{"feature","label",
 * "display","value","previous","current","change"}]} as predictions.change
 * has it (display and value when the event has words), or null}}
 * with time = scored_at. Numbers in the shortest form that reads back
 * exactly; NaN, a missing previous probability or external id as null. */
void notify_event_write(ds_sb_t *b, const Dealscore__V1__PredictionMade *pm, const notify_event_ctx_t *ctx);

/* True when pm is worth an event to a subscription whose minimum change is
 * min_change: the probability moved by at least that much (a first score,
 * with no previous one, always is). */
bool notify_change_matters(const Dealscore__V1__PredictionMade *pm, double min_change);

/* Milliseconds to wait after the failed try number attempts (1 = the
 * first): base_ms * 2^(attempts-1) capped at max_ms, of which the upper half
 * is random (seed is advanced), so receivers that failed together are not
 * retried in step. */
int64_t notify_backoff_ms(int attempts, int base_ms, int max_ms, uint64_t *seed);

/* The metric label of a try's outcome: "2xx".."5xx" for an HTTP status,
 * "timeout" for DS_ETIMEDOUT, "error" for any other failure to get an
 * answer (rc != 0). */
const char *notify_outcome_class(int rc, int status);

/* The service's worker thread: starts DEALSCORE_NOTIFY_CONCURRENCY
 * delivery threads, consumes prediction.made until the service stops, then
 * stops the delivery threads (a POST in flight is cancelled and its
 * delivery made due again). */
void notify_worker(ds_service_t *svc, void *state);

/* dealscore-notify subscription add|list|remove and deliveries list|replay.
 * Return the exit code: 0, 1 when Postgres fails or the row is not there,
 * 2 for bad arguments. */
int notify_cmd_subscription(const ds_config_t *cfg, int argc, char **argv);
int notify_cmd_deliveries(const ds_config_t *cfg, int argc, char **argv);

#endif
