/* The delivery threads. Each takes one due delivery at a time out of
 * dealscore_internal.notify_deliveries (FOR UPDATE SKIP LOCKED, so replicas
 * and threads never take the same row), leases it for the request's
 * timeout, POSTs it signed, and records the outcome: delivered on 2xx; on
 * anything else the next try after a backoff, or failed once the tries run
 * out. A process killed mid-request leaves the lease to expire, and another
 * thread tries the row again: at least once. */
#ifndef DS_NOTIFY_COURIER_H
#define DS_NOTIFY_COURIER_H

#include "runtime/service.h"

typedef struct courier_pool_s courier_pool_t;

/* Starts DEALSCORE_NOTIFY_CONCURRENCY threads for svc. Returns the pool
 * (stop it with courier_pool_stop). */
courier_pool_t *courier_pool_start(ds_service_t *svc);
/* New rows are there: idle threads look at once. Any thread. */
void courier_pool_wake(courier_pool_t *p);
/* Stops the threads (a request in flight is cancelled and its delivery made
 * due again), joins and frees them. NULL does nothing. */
void courier_pool_stop(courier_pool_t *p);

#endif
