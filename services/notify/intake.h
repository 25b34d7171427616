/* From prediction.made to delivery rows: a batch's predictions are matched
 * against the active subscriptions of their orgs, and each match whose
 * change is big enough becomes a row of dealscore_internal.notify_deliveries
 * (one INSERT for the batch). The worker stores the batch's offsets only
 * after that statement committed, so no event is lost; a batch consumed
 * again inserts nothing new, because a delivery's id is derived from the
 * subscription and the prediction's event id. */
#ifndef DS_NOTIFY_INTAKE_H
#define DS_NOTIFY_INTAKE_H

#include "courier.h"
#include "infra/pg.h"
#include "runtime/worker.h"

typedef struct {
    ds_service_t *svc;
    ds_pg_t *pg;
    courier_pool_t *pool; /* woken when rows were added */
    ds_metric_t *m_events;
} intake_t;

/* Sets up in for svc (metrics; the Postgres session connects on first use).
 * Free with intake_close. */
void intake_init(intake_t *in, ds_service_t *svc, courier_pool_t *pool);
void intake_close(intake_t *in);

/* The ds_worker_def_t.process of the notify worker (ud: an intake_t). */
int intake_process(ds_worker_t *w, void *ud, ds_worker_item_t *items, size_t n, char *errstr, size_t errsz);

#endif
