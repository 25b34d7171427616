/* The burst decision and the rates it reads. */
#include "runtime/burst.h"

#define SERVED_DECAY 0.8
#define ARRIVAL_MIN_US 200000

bool ds_burst_warranted(const ds_burst_load_t *l) {
    if (l->backlog <= (int64_t)l->batch) return false;
    if (l->service_per_s <= 0) return true;
    double arrival = l->arrival_per_s > 0 ? l->arrival_per_s : 0;
    double net = l->service_per_s - arrival;
    if (net <= 0) return true;
    return (double)l->backlog * 1000.0 / net > (double)l->clear_ms;
}

void ds_burst_rates_init(ds_burst_rates_t *r) { *r = (ds_burst_rates_t){.arrival_per_s = -1}; }

void ds_burst_rates_served(ds_burst_rates_t *r, size_t n, double secs) {
    r->served_n = r->served_n * SERVED_DECAY + (double)n;
    r->served_s = r->served_s * SERVED_DECAY + secs;
}

double ds_burst_service_rate(const ds_burst_rates_t *r) {
    return r->served_s > 0 ? r->served_n / r->served_s : 0;
}

void ds_burst_rates_arrived(ds_burst_rates_t *r, int64_t now_us, int64_t ends_sum, int nparts) {
    if (r->ends_at_us && nparts == r->nparts && ends_sum >= r->ends_sum) {
        int64_t dt = now_us - r->ends_at_us;
        if (dt < ARRIVAL_MIN_US) return;
        r->arrival_per_s = (double)(ends_sum - r->ends_sum) * 1e6 / (double)dt;
    }
    r->ends_sum = ends_sum;
    r->ends_at_us = now_us;
    r->nparts = nparts;
}
