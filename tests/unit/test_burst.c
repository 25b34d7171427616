/* The burst decision and the rates it reads (runtime/burst.h). */
#include <criterion/criterion.h>

#include "runtime/burst.h"

static bool decide(int64_t backlog, double arrival, double service) {
    ds_burst_load_t l = {.backlog = backlog,
                         .batch = 500,
                         .arrival_per_s = arrival,
                         .service_per_s = service,
                         .clear_ms = 1000};
    return ds_burst_warranted(&l);
}

/* An ordinary flow is never gathered, even when its messages fill a poll:
 * 500 changes/s against a worker serving 3,000/s, with a poll of 500 in
 * hand and as many behind (a hiccup), clears in 0.4 s. */
Test(burst, an_ordinary_flow_is_not_a_burst) {
    cr_expect_not(decide(500, 500, 3000), "a full poll with nothing behind");
    cr_expect_not(decide(1000, 500, 3000), "a hiccup the worker clears in 0.4 s");
    cr_expect_not(decide(499, -1, 0), "less than a batch, no rate known");
}

/* A real backlog is: 100,000 messages at 3,000/s net of 500/s take 40 s. */
Test(burst, a_backlog_the_worker_does_not_clear_soon_is_a_burst) {
    cr_expect(decide(100000, 500, 3000));
    cr_expect(decide(100000, -1, 3000), "an unknown arrival rate counts as none");
}

/* Clearing must take longer than clear_ms: 2,000 messages at 2,000/s take
 * exactly 1 s, which is not longer; one message more is. */
Test(burst, the_clearing_time_must_exceed_the_setting) {
    cr_expect_not(decide(2000, 0, 2000));
    cr_expect(decide(2001, 0, 2000));
    cr_expect_not(decide(2000, 1000, 3000), "net of the arrivals: 2,000 at 2,000/s");
    cr_expect(decide(2001, 1000, 3000));
}

/* Input at least as fast as the service only grows the backlog: any
 * backlog of more than a batch is a burst. So is one of more than a batch
 * before any batch was measured (right after a start). */
Test(burst, a_flood_or_an_unknown_service_rate_makes_a_backlog_a_burst) {
    cr_expect(decide(501, 4000, 4000));
    cr_expect(decide(501, 5000, 4000));
    cr_expect_not(decide(500, 5000, 4000), "no more than a batch");
    cr_expect(decide(501, -1, 0));
}

/* The service rate weighs each batch 0.8 of the next, by its messages and
 * seconds: big batches count more than small ones. */
Test(burst, the_service_rate_sums_decayed_batches) {
    ds_burst_rates_t r;
    ds_burst_rates_init(&r);
    cr_expect_eq(ds_burst_service_rate(&r), 0.0, "unknown before a batch");
    ds_burst_rates_served(&r, 100, 0.1);
    cr_expect_float_eq(ds_burst_service_rate(&r), 1000.0, 1e-9);
    ds_burst_rates_served(&r, 1000, 0.5);
    cr_expect_float_eq(ds_burst_service_rate(&r), (0.8 * 100 + 1000) / (0.8 * 0.1 + 0.5), 1e-9);
}

/* The arrival rate is the growth of the partitions' ends over at least
 * 200 ms; a changed assignment or ends that went back start over. */
Test(burst, the_arrival_rate_is_the_growth_of_the_ends) {
    ds_burst_rates_t r;
    ds_burst_rates_init(&r);
    ds_burst_rates_arrived(&r, 1000000, 10000, 6);
    cr_expect_eq(r.arrival_per_s, -1.0, "unknown after one sample");
    ds_burst_rates_arrived(&r, 1100000, 10100, 6);
    cr_expect_eq(r.arrival_per_s, -1.0, "100 ms is too short a span");
    ds_burst_rates_arrived(&r, 1250000, 10500, 6);
    cr_expect_float_eq(r.arrival_per_s, 2000.0, 1e-9, "500 messages in 250 ms");
    ds_burst_rates_arrived(&r, 1500000, 20000, 3);
    cr_expect_float_eq(r.arrival_per_s, 2000.0, 1e-9, "a new assignment starts over");
    ds_burst_rates_arrived(&r, 1800000, 20300, 3);
    cr_expect_float_eq(r.arrival_per_s, 1000.0, 1e-9);
    ds_burst_rates_arrived(&r, 2100000, 100, 3);
    ds_burst_rates_arrived(&r, 2400000, 100, 3);
    cr_expect_float_eq(r.arrival_per_s, 0.0, 1e-9, "ends that went back start over");
}
