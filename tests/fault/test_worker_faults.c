/* The feature worker when Postgres goes away mid-stream: the batch is
 * retried with backoff (partitions paused), nothing is dropped, and every
 * event is processed once Postgres is back. A loopback proxy cuts the real
 * server. */
#include <criterion/criterion.h>

#include "dstest.h"
#include "dealscore/v1/events.pb-c.h"

static dst_t T;

static void setup(void) { dst_setup(&T); }
static void teardown(void) { dst_teardown(&T); }

TestSuite(worker_faults, .init = setup, .fini = teardown, .timeout = 180);

static int readyz(int port) {
    httpc_resp_t r = httpc_get(port, "/readyz");
    int st = r.status;
    httpc_free(&r);
    return st;
}

Test(worker_faults, postgres_outage_delays_but_loses_nothing) {
    tcpproxy_t px;
    dst_db_through_proxy(&T, &px);
    free(dst_token(&T, "acme", NULL));
    PGconn *db = pgt_connect_db(&T.db);
    enum { N = 6 };
    char *ids[N];
    for (int i = 0; i < N; i++) {
        pgt_execf(db,
                  "insert into opportunities (org_id, external_id, stage, created_at, amount)"
                  " values ('%s', 'F-%d', 'demo', '2026-01-01T00:00:00Z', %d)",
                  T.org_id, i, 1000 * (i + 1));
        ids[i] = pgt_valuef(db, "select id from opportunities where external_id = 'F-%d'", i);
    }
    dst_start(&T, "feature");

    tcpproxy_set_up(&px, 0);
    long long deadline = proc_now_ms() + 15000;
    while (readyz(T.port) != 503 && proc_now_ms() < deadline) {
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    cr_assert_eq(readyz(T.port), 503, "not ready while Postgres is away");

    ds_config_t cfg;
    ds_producer_t *p = dst_producer(&T, &cfg);
    char *topic = pgt_fmt("%sopportunity.changed", T.prefix);
    for (int i = 0; i < N; i++) {
        Dealscore__V1__OpportunityChanged ev = DEALSCORE__V1__OPPORTUNITY_CHANGED__INIT;
        char eid[37];
        ds_uuid4(eid);
        ev.event_id = eid;
        ev.org_id = T.org_id;
        ev.opportunity_id = ids[i];
        ev.account_id = "";
        ev.kind = DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_STAGE_CHANGED;
        ev.occurred_at_us = 1770000000LL * 1000000 + i;
        ev.source = "test";
        ev.source_hash = "";
        uint8_t buf[512];
        size_t len = dealscore__v1__opportunity_changed__pack(&ev, buf);
        ds_event_meta_t meta = {.id = eid, .type = DS_CE_TYPE_OPPORTUNITY_CHANGED};
        cr_assert_eq(ds_producer_send(p, topic, ids[i], strlen(ids[i]), buf, len, &meta, NULL), 0);
    }
    cr_assert_eq(ds_producer_flush(p, 10000), 0);
    /* The worker has the events and keeps retrying; it writes nothing. Wait
     * until its retry counter shows it tried (no fixed sleep). */
    deadline = proc_now_ms() + 20000;
    bool retried = false;
    while (!retried && proc_now_ms() < deadline) {
        httpc_resp_t m = httpc_get(T.port, "/metrics");
        char *line =
            m.body ? strstr(m.body, "dealscore_worker_batch_retries_total{worker=\"feature\"} ") : NULL;
        retried =
            line && atof(line + strlen("dealscore_worker_batch_retries_total{worker=\"feature\"} ")) >= 2;
        httpc_free(&m);
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    cr_assert(retried, "the worker retried the batch while Postgres was away");
    cr_expect_eq(pgt_longf(db, "select count(*) from features_snapshot"), 0);
    /* Consumed but not done: the lag counts the batch in hand (it read 0,
     * the consumer's position being past the batch). */
    cr_expect_eq(dst_wait_metric_eq(&T, "dealscore_consumer_lag{worker=\"feature\"}", N, 10000), N,
                 "the lag counts the %d events in hand", N);

    tcpproxy_set_up(&px, 1);
    long long n = 0;
    deadline = proc_now_ms() + 60000;
    while ((n = pgt_longf(db, "select count(distinct opportunity_id) from features_snapshot")) < N &&
           proc_now_ms() < deadline) {
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    cr_expect_eq(n, N, "every event was processed after Postgres returned");
    char *log = proc_slurp(T.log);
    cr_expect(strstr(log, "goes to the dead-letter topic") == NULL, "nothing was dead-lettered:\n%s", log);
    free(log);
    dst_stop(&T);
    ds_producer_destroy(p);
    ds_config_close(&cfg);
    free(topic);
    for (int i = 0; i < N; i++) free(ids[i]);
    PQfinish(db);
    tcpproxy_stop(&px);
}
