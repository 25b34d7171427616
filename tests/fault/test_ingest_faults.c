/* Ingest when its dependencies fail: webhooks keep being accepted while
 * Kafka is down and everything is published, in order, when it returns
 * (librdkafka's mock cluster stands in for a broker that can be stopped);
 * webhooks answer 503 with Retry-After while Postgres is unreachable (a
 * loopback proxy cuts the real server) and succeed again when it is back;
 * a signed request retried through the outage goes in once. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/hmac.h>
#include <time.h>

#include "dstest.h"
#include <librdkafka/rdkafka_mock.h>
#include "dealscore/v1/events.pb-c.h"

static dst_t T;

static void setup(void) { dst_setup(&T); }
static void teardown(void) { dst_teardown(&T); }

TestSuite(ingest_faults, .init = setup, .fini = teardown, .timeout = 180);

static int post_status(const char *path, const char *body, char *retry_after, size_t rasz) {
    httpc_resp_t r = dst_post(&T, path, body, NULL, NULL);
    int st = r.status;
    if (retry_after) {
        retry_after[0] = '\0';
        httpc_header(&r, "retry-after", retry_after, rasz);
    }
    httpc_free(&r);
    return st;
}

Test(ingest_faults, kafka_down_accepts_webhooks_and_publishes_all_when_back) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(mock_rk, "%s", err);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(mock_rk, 1);
    cr_assert_not_null(mc);
    char *topic = pgt_fmt("%sopportunity.changed", T.prefix);
    cr_assert_eq(rd_kafka_mock_topic_create(mc, topic, 2, 1), 0);
    dst_env_set(&T, "DEALSCORE_KAFKA_BROKERS", rd_kafka_mock_cluster_bootstraps(mc));
    free(dst_token(&T, "acme", NULL));
    /* The broker is down before ingest starts and stays down for a while. */
    rd_kafka_mock_broker_set_down(mc, 1);
    dst_start_until(&T, "ingest", "/healthz");

    const int N = 30;
    for (int i = 0; i < N; i++) {
        /* Three changes of one deal, and 27 other deals. */
        char *body = i < 3 ? pgt_fmt("{\"external_id\":\"OPP-0\",\"stage\":\"%s\","
                                     "\"created_at\":\"2026-01-01T00:00:00Z\","
                                     "\"changed_at\":\"2026-01-0%dT00:00:00Z\"}",
                                     (const char *[]){"discovery", "demo", "proposal"}[i], i + 2)
                           : pgt_fmt("{\"external_id\":\"OPP-%d\",\"stage\":\"discovery\","
                                     "\"created_at\":\"2026-01-01T00:00:00Z\"}",
                                     i);
        cr_assert_eq(post_status("/v1/opportunities", body, NULL, 0), 202, "request %d while Kafka is down",
                     i);
        free(body);
    }
    cr_expect_eq(dst_count(&T, "select count(*) from dealscore_internal.outbox"), N,
                 "every event waits in the outbox");
    httpc_resp_t rz = httpc_get(T.port, "/readyz");
    cr_expect_eq(rz.status, 503, "not ready without Kafka: %s", rz.body);
    httpc_free(&rz);

    rd_kafka_mock_broker_set_up(mc, 1);

    /* Consume everything from the (mock) broker. */
    char *envp[] = {pgt_fmt("DEALSCORE_KAFKA_BROKERS=%s", rd_kafka_mock_cluster_bootstraps(mc)),
                    pgt_fmt("DEALSCORE_TOPIC_PREFIX=%s", T.prefix), "KAFKA_SESSION_TIMEOUT_MS=3000",
                    "KAFKA_HEARTBEAT_INTERVAL_MS=500", NULL};
    ds_config_t cfg;
    cr_assert_eq(ds_config_load(&cfg, DS_SVC_FEATURE, envp, err, sizeof err), 0, "%s", err);
    const char *topics[] = {topic};
    ds_consumer_t *c = NULL;
    cr_assert_eq(ds_consumer_new(&c, &cfg, "fault-reader", topics, 1, err, sizeof err), 0, "%s", err);
    rd_kafka_message_t *m[64];
    size_t got = 0;
    long long deadline = proc_now_ms() + 60000;
    while (got < (size_t)N && proc_now_ms() < deadline) {
        int k = ds_consumer_poll_batch(c, m + got, 64 - got, 200);
        if (k > 0) got += (size_t)k;
    }
    cr_assert_geq(got, (size_t)N, "published %zu of %d after Kafka returned", got, N);
    /* The three changes of OPP-0 arrive in the order they were made. */
    char *opp0 = NULL;
    {
        PGconn *db = pgt_connect_db(&T.db);
        opp0 = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-0'");
        PQfinish(db);
    }
    int64_t last = 0;
    int seen = 0;
    for (size_t i = 0; i < got; i++) {
        if (m[i]->key_len != strlen(opp0) || memcmp(m[i]->key, opp0, m[i]->key_len) != 0) continue;
        Dealscore__V1__OpportunityChanged *ev =
            dealscore__v1__opportunity_changed__unpack(NULL, m[i]->len, m[i]->payload);
        cr_assert(ev);
        cr_expect_gt(ev->occurred_at_us, last, "OPP-0 events in order");
        last = ev->occurred_at_us;
        seen++;
        dealscore__v1__opportunity_changed__free_unpacked(ev, NULL);
    }
    cr_expect_eq(seen, 3);
    /* The outbox drains once the delivery reports came back. */
    cr_expect_eq(dst_wait_count(&T, "select count(*) from dealscore_internal.outbox", 0, 20000), 0);
    ds_consumer_release(m, got);
    ds_consumer_close(c);
    ds_consumer_destroy(c);
    ds_config_close(&cfg);
    free(envp[0]);
    free(envp[1]);
    dst_stop(&T);
    free(opp0);
    free(topic);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mock_rk);
}

Test(ingest_faults, postgres_down_answers_503_with_retry_after_then_recovers) {
    /* Route ingest's database connections through a proxy we can cut. */
    tcpproxy_t px;
    dst_db_through_proxy(&T, &px);
    free(dst_token(&T, "acme", NULL));
    dst_start(&T, "ingest");

    const char *acc = "{\"external_id\":\"A1\",\"name\":\"One\"}";
    cr_assert_eq(post_status("/v1/accounts", acc, NULL, 0), 202);
    tcpproxy_set_up(&px, 0);
    char ra[32];
    int st = post_status("/v1/accounts", "{\"external_id\":\"A2\",\"name\":\"Two\"}", ra, sizeof ra);
    cr_expect_eq(st, 503, "while Postgres is unreachable");
    cr_expect_str_eq(ra, "1", "Retry-After");
    /* /readyz follows within a probe interval. */
    long long deadline = proc_now_ms() + 10000;
    int rs = 0;
    for (;;) {
        httpc_resp_t rr = httpc_get(T.port, "/readyz");
        rs = rr.status;
        httpc_free(&rr);
        if (rs == 503 || proc_now_ms() > deadline) break;
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    cr_expect_eq(rs, 503);
    tcpproxy_set_up(&px, 1);
    /* A client retrying (as n8n does, 1 s apart) gets in once Postgres is back. */
    deadline = proc_now_ms() + 20000;
    st = 0;
    while (proc_now_ms() < deadline &&
           (st = post_status("/v1/accounts", "{\"external_id\":\"A2\",\"name\":\"Two\"}", NULL, 0)) != 202) {
        cr_expect_eq(st, 503, "only 503 while recovering");
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL); /* client retry interval */
    }
    cr_expect_eq(st, 202);
    cr_expect_eq(dst_count(&T, "select count(*) from accounts where external_id in ('A1', 'A2')"), 2);
    dst_stop(&T);
    tcpproxy_stop(&px);
}

/* The headers of body signed now with secret (caller frees). */
static char *signed_headers(const char *secret, const char *body) {
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    char *msg = pgt_fmt("%s.%s", ts, body);
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, strlen(msg), mac, &len);
    free(msg);
    char hex[65];
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", mac[i]);
    return pgt_fmt("X-Dealscore-Timestamp: %s\r\nX-Dealscore-Signature: sha256=%s\r\n", ts, hex);
}

/* As n8n retries a signed request through an outage: 503s that store
 * nothing, then the 202, and a copy sent after it (its answer lost) gets
 * the same answer; the records are stored once. */
Test(ingest_faults, a_signed_request_retried_through_a_postgres_outage_goes_in_once) {
    tcpproxy_t px;
    dst_db_through_proxy(&T, &px);
    char *out = dst_token(&T, "acme", "--hmac");
    char secret[80] = "";
    char *sec = strstr(out, "signing secret ");
    cr_assert(sec, "%s", out);
    sscanf(sec + 15, "%79s", secret);
    free(out);
    dst_start(&T, "ingest");
    const char *body =
        "[{\"external_id\":\"S1\",\"name\":\"One\"},{\"external_id\":\"S2\",\"name\":\"Two\"}]";
    char *hdr = signed_headers(secret, body);
    tcpproxy_set_up(&px, 0);
    httpc_resp_t r = dst_post(&T, "/v1/accounts", body, NULL, hdr);
    cr_expect_eq(r.status, 503, "%s", r.body);
    httpc_free(&r);
    tcpproxy_set_up(&px, 1);
    long long deadline = proc_now_ms() + 20000;
    int st = 0;
    while (proc_now_ms() < deadline) {
        r = dst_post(&T, "/v1/accounts", body, NULL, hdr);
        st = r.status;
        httpc_free(&r);
        if (st != 503) break;
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL); /* client retry interval */
    }
    cr_expect_eq(st, 202);
    r = dst_post(&T, "/v1/accounts", body, NULL, hdr);
    cr_expect_eq(r.status, 200, "%s", r.body);
    cr_expect_str_eq(r.body, "{\"accepted\":2,\"unchanged\":0,\"events\":0}\n");
    httpc_free(&r);
    cr_expect_eq(dst_count(&T, "select count(*) from accounts where external_id in ('S1', 'S2')"), 2);
    free(hdr);
    dst_stop(&T);
    tcpproxy_stop(&px);
}
