/* When a worker gathers a burst: only when its backlog is more than it can
 * clear in a short time at its measured service rate (a backlog after a
 * restart or an outage, a bulk import), never for an ordinary flow, however
 * its messages happen to fill a poll. The decision is a pure function of the
 * measured load; the rates are measured here too. */
#ifndef DEALSCORE_BURST_H
#define DEALSCORE_BURST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the decision reads. */
typedef struct {
    int64_t backlog;      /* messages not processed yet: behind the partitions' ends, and in hand */
    size_t batch;         /* DEALSCORE_BATCH_SIZE */
    double arrival_per_s; /* messages appended to the assigned partitions per second; < 0 unknown */
    double service_per_s; /* messages the worker processes per second; <= 0 unknown */
    int clear_ms;         /* DEALSCORE_BURST_BACKLOG_MS */
} ds_burst_load_t;

/* True when the backlog warrants a burst: more than a batch, and either no
 * service rate is known yet (right after a start: a backlog of more than a
 * batch is one), the input arrives at least as fast as the worker serves it
 * (the backlog only grows), or clearing it at the service rate net of the
 * arrivals takes longer than clear_ms. */
bool ds_burst_warranted(const ds_burst_load_t *l);

/* The measured rates. {0} knows nothing. */
typedef struct {
    double served_n, served_s; /* decayed sums over processed batches */
    int64_t ends_sum;          /* the partitions' ends at the last arrival sample */
    int64_t ends_at_us;        /* its time; 0: none */
    int nparts;                /* partitions it was summed over */
    double arrival_per_s;      /* -1 until two samples are apart */
} ds_burst_rates_t;

void ds_burst_rates_init(ds_burst_rates_t *r);
/* A processed batch of n messages that took secs. Each batch weighs
 * 0.8 of the one after it, and big batches more than small ones. */
void ds_burst_rates_served(ds_burst_rates_t *r, size_t n, double secs);
/* Messages per second, or 0 when unknown. */
double ds_burst_service_rate(const ds_burst_rates_t *r);
/* The sum of the high watermarks of the nparts assigned partitions at
 * now_us. A sample at least 200 ms after the previous one gives the
 * arrival rate over that interval; a changed assignment (or a sum that went
 * back) starts over, leaving the rate as it was. */
void ds_burst_rates_arrived(ds_burst_rates_t *r, int64_t now_us, int64_t ends_sum, int nparts);

#endif
