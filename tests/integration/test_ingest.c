/* Ingest webhooks against the real Postgres and Kafka: rows, history,
 * outbox, events with key and headers, idempotency, placeholders, every bad
 * input with its exact status and body, signatures. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "dstest.h"
#include "dealscore/v1/events.pb-c.h"
#include "ingest/relay_cursor.h"

static dst_t T;

static void setup(void) {
    dst_setup(&T);
    free(dst_token(&T, "acme", NULL));
    dst_start(&T, "ingest");
}

static void teardown(void) { dst_teardown(&T); }

TestSuite(ingest, .init = setup, .fini = teardown, .timeout = 120);

static json_t *body_json(const httpc_resp_t *r) {
    json_t *j = json_loads(r->body ? r->body : "", 0, NULL);
    cr_assert(j, "response body is not JSON: %s", r->body);
    return j;
}

/* A 202 to a request on path, with these counts; frees the response. */
static void expect_accepted(const char *path, httpc_resp_t *r, int accepted, int unchanged, int events) {
    cr_assert_eq(r->status, 202, "%s -> %d %s", path, r->status, r->body);
    json_t *j = body_json(r);
    cr_expect_eq(json_integer_value(json_object_get(j, "accepted")), accepted, "%s", r->body);
    cr_expect_eq(json_integer_value(json_object_get(j, "unchanged")), unchanged, "%s", r->body);
    cr_expect_eq(json_integer_value(json_object_get(j, "events")), events, "%s", r->body);
    json_decref(j);
    httpc_free(r);
}

static void expect_accept(const char *path, const char *body, int accepted, int unchanged, int events) {
    httpc_resp_t r = dst_post(&T, path, body, NULL, NULL);
    expect_accepted(path, &r, accepted, unchanged, events);
}

static const char *OPP1 =
    "{\"external_id\":\"OPP-1\",\"account_external_id\":\"ACC-1\",\"stage\":\"discovery\","
    "\"created_at\":\"2026-03-01T09:00:00Z\",\"amount\":12000,\"owner_id\":\"u7\","
    "\"product_category\":\"analytics\",\"persona\":\"cfo\",\"close_date\":\"2026-06-30\"}";

/* OPP-1 moved to proposal, dated 2026-04-01. */
static const char *OPP1_PROPOSAL =
    "{\"external_id\":\"OPP-1\",\"account_external_id\":\"ACC-1\",\"stage\":\"proposal\","
    "\"created_at\":\"2026-03-01T09:00:00Z\",\"amount\":12000,\"owner_id\":\"u7\","
    "\"product_category\":\"analytics\",\"persona\":\"cfo\",\"close_date\":\"2026-06-30\","
    "\"changed_at\":\"2026-04-01T00:00:00Z\"}";

/* OPP-1 moved to negotiation, dated 2026-04-15. */
static const char *OPP1_NEGOTIATION =
    "{\"external_id\":\"OPP-1\",\"account_external_id\":\"ACC-1\",\"stage\":\"negotiation\","
    "\"created_at\":\"2026-03-01T09:00:00Z\",\"amount\":12000,\"owner_id\":\"u7\","
    "\"product_category\":\"analytics\",\"persona\":\"cfo\",\"close_date\":\"2026-06-30\","
    "\"changed_at\":\"2026-04-15T00:00:00Z\"}";

Test(ingest, webhook_stores_rows_and_publishes_keyed_event_with_headers) {
    ds_consumer_t *c = dst_consumer(&T, "opportunity.changed");
    int64_t t0 = ds_now_us();
    expect_accept("/v1/opportunities", OPP1, 1, 0, 1);
    int64_t t1 = ds_now_us();
    PGconn *db = pgt_connect_db(&T.db);
    cr_assert_eq(pgt_longf(db, "select count(*) from opportunities where external_id = 'OPP-1'"
                               " and stage = 'discovery' and amount = 12000 and outcome = 'open'"
                               " and close_date = '2026-06-30' and not placeholder"),
                 1);
    /* The account it references exists as a placeholder until it arrives. */
    cr_assert_eq(pgt_longf(db, "select count(*) from accounts where external_id = 'ACC-1' and placeholder"),
                 1);
    cr_assert_eq(pgt_longf(db, "select count(*) from opportunity_history h join opportunities o"
                               " on o.id = h.opportunity_id where o.external_id = 'OPP-1'"
                               " and h.changed_at = '2026-03-01T09:00:00Z'"
                               " and ((field = 'stage' and new_value = 'discovery')"
                               " or (field = 'amount' and new_value = '12000')"
                               " or (field = 'close_date' and new_value = '2026-06-30'))"),
                 3);
    char *opp_id = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    char *src_hash = pgt_valuef(db, "select source_hash from opportunities where external_id = 'OPP-1'");
    rd_kafka_message_t *m[1];
    dst_consume(c, m, 1, 15000);
    cr_assert_eq(m[0]->key_len, strlen(opp_id));
    cr_assert(memcmp(m[0]->key, opp_id, m[0]->key_len) == 0, "key is the opportunity id");
    Dealscore__V1__OpportunityChanged *ev =
        dealscore__v1__opportunity_changed__unpack(NULL, m[0]->len, m[0]->payload);
    cr_assert(ev, "payload decodes as OpportunityChanged");
    cr_expect_str_eq(ev->opportunity_id, opp_id);
    cr_expect_str_eq(ev->org_id, T.org_id);
    cr_expect_eq(ev->kind, DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_OPPORTUNITY_UPSERTED);
    cr_expect_str_eq(ev->source, "webhook");
    cr_expect_str_eq(ev->source_hash, src_hash);
    /* Without changed_at the change happened when ingest received it. */
    cr_expect(ev->occurred_at_us >= t0 - 1000000 && ev->occurred_at_us <= t1 + 1000000,
              "occurred_at %lld not within the request", (long long)ev->occurred_at_us);
    char h[128];
    cr_expect_eq(ds_kafka_header_get(m[0], "ce_type", h, sizeof h), 0);
    cr_expect_str_eq(h, "dealscore.opportunity.changed.v1");
    cr_expect_eq(ds_kafka_header_get(m[0], "ce_id", h, sizeof h), 0);
    cr_expect_str_eq(h, ev->event_id);
    cr_expect_eq(ds_kafka_header_get(m[0], "ce_specversion", h, sizeof h), 0);
    cr_expect_str_eq(h, "1.0");
    cr_expect_eq(ds_kafka_header_get(m[0], "content-type", h, sizeof h), 0);
    cr_expect_str_eq(h, "application/protobuf");
    cr_expect_eq(ds_kafka_header_get(m[0], "traceparent", h, sizeof h), 0);
    cr_expect(ds_event_traceparent_valid(h), "traceparent %s", h);
    dealscore__v1__opportunity_changed__free_unpacked(ev, NULL);
    /* The relay removes the row after the delivery report, which may come a
     * moment after a consumer already sees the event. */
    cr_expect_eq(dst_wait_count(&T, "select count(*) from dealscore_internal.outbox", 0, 10000), 0,
                 "the outbox row is removed once published");
    ds_consumer_release(m, 1);
    ds_consumer_destroy(c);
    free(opp_id);
    free(src_hash);
    PQfinish(db);
}

Test(ingest, traceparent_is_carried_from_the_webhook) {
    ds_consumer_t *c = dst_consumer(&T, "opportunity.changed");
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    char *hdr = pgt_fmt("traceparent: %s\r\n", tp);
    httpc_resp_t r = dst_post(&T, "/v1/opportunities", OPP1, NULL, hdr);
    cr_assert_eq(r.status, 202, "%s", r.body);
    httpc_free(&r);
    free(hdr);
    rd_kafka_message_t *m[1];
    dst_consume(c, m, 1, 15000);
    char h[128];
    cr_assert_eq(ds_kafka_header_get(m[0], "traceparent", h, sizeof h), 0);
    cr_expect(strncmp(h, "00-0af7651916cd43dd8448eb211c80319c-", 36) == 0, "same trace id expected: %s", h);
    ds_consumer_release(m, 1);
    ds_consumer_destroy(c);
}

Test(ingest, identical_resend_changes_nothing_and_publishes_nothing) {
    ds_consumer_t *c = dst_consumer(&T, "opportunity.changed");
    expect_accept("/v1/opportunities", OPP1, 1, 0, 1);
    long long hist = dst_count(&T, "select count(*) from opportunity_history");
    char *ingested = NULL;
    {
        PGconn *db = pgt_connect_db(&T.db);
        ingested = pgt_valuef(db, "select ingested_at from opportunities where external_id = 'OPP-1'");
        PQfinish(db);
    }
    /* Same record, keys in another order and changed_at set: the same record. */
    expect_accept("/v1/opportunities",
                  "[{\"amount\":12000.0,\"stage\":\"discovery\",\"external_id\":\"OPP-1\","
                  "\"account_external_id\":\"ACC-1\",\"created_at\":\"2026-03-01T10:00:00+01:00\","
                  "\"owner_id\":\"u7\",\"product_category\":\"analytics\",\"persona\":\"cfo\","
                  "\"close_date\":\"2026-06-30\",\"changed_at\":\"2026-03-02T00:00:00Z\"}]",
                  1, 1, 0);
    cr_expect_eq(dst_count(&T, "select count(*) from opportunity_history"), hist);
    cr_expect_eq(dst_count(&T, "select count(*) from dealscore_internal.outbox"), 1);
    PGconn *db = pgt_connect_db(&T.db);
    char *again = pgt_valuef(db, "select ingested_at from opportunities where external_id = 'OPP-1'");
    cr_expect_str_eq(again, ingested, "the row was not rewritten");
    free(again);
    free(ingested);
    PQfinish(db);
    /* The next event on the topic is the next real change, not a duplicate. */
    expect_accept("/v1/opportunities", OPP1_PROPOSAL, 1, 0, 1);
    rd_kafka_message_t *m[2];
    dst_consume(c, m, 2, 15000);
    Dealscore__V1__OpportunityChanged *ev =
        dealscore__v1__opportunity_changed__unpack(NULL, m[1]->len, m[1]->payload);
    cr_assert(ev);
    cr_expect_eq(ev->kind, DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_STAGE_CHANGED);
    cr_expect_eq(ev->occurred_at_us, 1775001600LL * 1000000); /* 2026-04-01 */
    dealscore__v1__opportunity_changed__free_unpacked(ev, NULL);
    cr_expect_eq(dst_count(&T, "select count(*) from opportunity_history where field = 'stage'"
                               " and old_value = 'discovery' and new_value = 'proposal'"
                               " and changed_at = '2026-04-01T00:00:00Z'"),
                 1);
    ds_consumer_release(m, 2);
    ds_consumer_destroy(c);
}

/* During a rolling upgrade, ingest pods of the previous version write outbox
 * rows with their event in headers, and their relay marks what it published
 * with sent_at. This relay publishes the former with the event they carry
 * and deletes the latter without publishing them again, in id order (one
 * deal: one partition, so the order on the topic is the order of the rows). */
Test(ingest, relay_handles_rows_of_the_previous_version) {
    ds_consumer_t *c = dst_consumer(&T, "opportunity.changed");
    expect_accept("/v1/opportunities", OPP1, 1, 0, 1);
    rd_kafka_message_t *m[2];
    dst_consume(c, m, 1, 15000);
    ds_consumer_release(m, 1);
    PGconn *db = pgt_connect_db(&T.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    pgt_execf(
        db,
        "insert into dealscore_internal.outbox (org_id, opportunity_id, kind, payload, headers, key, "
        "sent_at) values"
        " ('%s', '%s', 'stage_changed', '', '{\"event_id\": \"e0000000-0000-4000-8000-000000000001\","
        "   \"occurred_at\": \"2026-03-04T10:00:00+00:00\", \"source\": \"webhook\"}', '%s', now()),"
        " ('%s', '%s', 'interaction_added', '', '{\"event_id\": \"e0000000-0000-4000-8000-000000000002\","
        "   \"occurred_at\": \"2026-03-05T10:00:00+00:00\", \"source\": \"csv\","
        "   \"source_hash\": \"h2\", \"traceparent\": null}', '%s', null)",
        T.org_id, opp, opp, T.org_id, opp, opp);
    expect_accept("/v1/opportunities", OPP1_PROPOSAL, 1, 0, 1);
    dst_consume(c, m, 2, 15000);
    Dealscore__V1__OpportunityChanged *old =
        dealscore__v1__opportunity_changed__unpack(NULL, m[0]->len, m[0]->payload);
    Dealscore__V1__OpportunityChanged *now =
        dealscore__v1__opportunity_changed__unpack(NULL, m[1]->len, m[1]->payload);
    cr_assert(old && now);
    cr_expect_str_eq(old->event_id, "e0000000-0000-4000-8000-000000000002",
                     "the unsent old row, not the sent one");
    cr_expect_eq(old->kind, DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_INTERACTION_ADDED);
    cr_expect_eq(old->occurred_at_us, 1772704800LL * 1000000); /* 2026-03-05T10:00:00Z */
    cr_expect_str_eq(old->source, "csv");
    cr_expect_str_eq(old->source_hash, "h2");
    cr_expect_str_eq(old->opportunity_id, opp);
    cr_expect_eq(now->kind, DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_STAGE_CHANGED);
    cr_expect_eq(now->occurred_at_us, 1775001600LL * 1000000); /* 2026-04-01 */
    cr_expect_str_eq(now->source, "webhook");
    dealscore__v1__opportunity_changed__free_unpacked(old, NULL);
    dealscore__v1__opportunity_changed__free_unpacked(now, NULL);
    ds_consumer_release(m, 2);
    cr_expect_eq(dst_wait_count(&T, "select count(*) from dealscore_internal.outbox", 0, 10000), 0,
                 "every row, the sent old one too, is gone from the outbox");
    free(opp);
    PQfinish(db);
    ds_consumer_destroy(c);
}

/* Rows another process commits (another ingest replica, whose relay does
 * not hold the lock; a CSV import) wake the relay through the outbox's
 * notification: with an idle poll of ten minutes, the row is published at
 * once all the same. */
Test(ingest, relay_wakes_for_rows_another_process_commits) {
    dst_stop(&T);
    dst_env_set(&T, "DEALSCORE_RELAY_POLL_MS", "600000");
    dst_start(&T, "ingest");
    ds_consumer_t *c = dst_consumer(&T, "opportunity.changed");
    /* The relay's first rounds are done: it published this one and waits. */
    expect_accept("/v1/opportunities", OPP1, 1, 0, 1);
    rd_kafka_message_t *m[1];
    dst_consume(c, m, 1, 15000);
    ds_consumer_release(m, 1);
    cr_assert_eq(dst_wait_count(&T, "select count(*) from dealscore_internal.outbox", 0, 10000), 0);
    PGconn *db = pgt_connect_db(&T.db);
    char *opp = pgt_valuef(db, "select id from opportunities where external_id = 'OPP-1'");
    pgt_execf(db,
              "insert into dealscore_internal.outbox (org_id, opportunity_id, kind, payload, headers, key)"
              " values ('%s', '%s', 'interaction_added', '', '{\"event_id\":"
              " \"e0000000-0000-4000-8000-000000000003\", \"source\": \"csv\"}', '%s')",
              T.org_id, opp, opp);
    dst_consume(c, m, 1, 15000);
    Dealscore__V1__OpportunityChanged *ev =
        dealscore__v1__opportunity_changed__unpack(NULL, m[0]->len, m[0]->payload);
    cr_assert(ev);
    cr_expect_str_eq(ev->event_id, "e0000000-0000-4000-8000-000000000003");
    cr_expect_str_eq(ev->opportunity_id, opp);
    cr_expect_str_eq(ev->source, "csv");
    dealscore__v1__opportunity_changed__free_unpacked(ev, NULL);
    ds_consumer_release(m, 1);
    free(opp);
    PQfinish(db);
    ds_consumer_destroy(c);
}

/* The source of the one event in c, which the test frees. */
static char *consume_source(ds_consumer_t *c) {
    rd_kafka_message_t *m[1];
    dst_consume(c, m, 1, 15000);
    Dealscore__V1__OpportunityChanged *ev =
        dealscore__v1__opportunity_changed__unpack(NULL, m[0]->len, m[0]->payload);
    cr_assert(ev);
    char *source = strdup(ev->source);
    dealscore__v1__opportunity_changed__free_unpacked(ev, NULL);
    ds_consumer_release(m, 1);
    return source;
}

/* Has the relay pass over a gap that late holds open: late inserts an
 * outbox row and keeps its transaction open while the webhooks' rows after
 * it are published, the gap older than RELAY_CURSOR_GAP_US when the relay
 * reads past it again. Returns OPP-1's id, which the test frees. */
static char *pass_over_a_gap(ds_consumer_t *c, PGconn *late) {
    expect_accept("/v1/opportunities", OPP1, 1, 0, 1);
    free(consume_source(c));
    char *opp = pgt_valuef(late, "select id from opportunities where external_id = 'OPP-1'");
    pgt_execf(late, "begin");
    pgt_execf(late,
              "insert into dealscore_internal.outbox (org_id, opportunity_id, kind, occurred_at, source)"
              " values ('%s', '%s', 'interaction_added', now(), 'late')",
              T.org_id, opp);
    expect_accept("/v1/opportunities", OPP1_PROPOSAL, 1, 0, 1);
    char *source = consume_source(c);
    cr_expect_str_eq(source, "webhook");
    free(source);
    /* The scenario, not a wait for something: the gap must be older than
     * RELAY_CURSOR_GAP_US when the relay reads past it again. */
    usleep(RELAY_CURSOR_GAP_US * 3 / 2);
    expect_accept("/v1/opportunities", OPP1_NEGOTIATION, 1, 0, 1);
    source = consume_source(c);
    cr_expect_str_eq(source, "webhook");
    free(source);
    return opp;
}

/* A writer that took its outbox id before the webhooks' rows but commits
 * after them (another replica, an import) leaves its row below those the
 * relay published and removed. The relay reads above what it published
 * (services/ingest/relay_cursor.h) and, the gap held open longer than
 * RELAY_CURSOR_GAP_US, passes over it: the row is published all the same
 * once it commits. */
Test(ingest, relay_publishes_a_row_committed_below_those_it_published) {
    ds_consumer_t *c = dst_consumer(&T, "opportunity.changed");
    PGconn *late = pgt_connect_db(&T.db);
    char *opp = pass_over_a_gap(c, late);
    pgt_execf(late, "commit");
    char *source = consume_source(c);
    cr_expect_str_eq(source, "late");
    free(source);
    cr_expect_eq(dst_wait_count(&T, "select count(*) from dealscore_internal.outbox", 0, 10000), 0);
    free(opp);
    PQfinish(late);
    ds_consumer_destroy(c);
}

/* The relay reads below its floor while the transaction that held the gap
 * open runs, and stops once it ended and its row was published: nothing
 * can commit there any more (relay_cursor.h). */
Test(ingest, relay_stops_reading_below_its_floor_once_the_gap_cannot_fill) {
    ds_consumer_t *c = dst_consumer(&T, "opportunity.changed");
    PGconn *late = pgt_connect_db(&T.db);
    char *opp = pass_over_a_gap(c, late);
    dst_wait_metric(&T, "dealscore_relay_rescans_total", 1);
    cr_expect_eq(dst_metric(&T, "dealscore_relay_rescanning"), 1, "late's row may still commit");
    pgt_execf(late, "commit");
    char *source = consume_source(c);
    cr_expect_str_eq(source, "late");
    free(source);
    cr_expect_eq(dst_wait_metric_eq(&T, "dealscore_relay_rescanning", 0, 10000), 0,
                 "the relay still reads below its floor");
    free(opp);
    PQfinish(late);
    ds_consumer_destroy(c);
}

Test(ingest, out_of_order_interaction_is_kept_until_its_opportunity_arrives) {
    ds_consumer_t *c = dst_consumer(&T, "opportunity.changed");
    expect_accept("/v1/interactions",
                  "{\"external_id\":\"INT-1\",\"opportunity_external_id\":\"OPP-1\",\"type\":\"meeting\","
                  "\"occurred_at\":\"2026-03-05T15:00:00Z\",\"duration_min\":45,"
                  "\"meta\":{\"attendees\":3,\"contact_email\":\"dana@acme.test\"}}",
                  1, 0, 0);
    expect_accept("/v1/transcripts",
                  "{\"external_id\":\"TR-1\",\"opportunity_external_id\":\"OPP-1\","
                  "\"occurred_at\":\"2026-03-05T16:00:00Z\",\"text\":\"Our champion, Dana, is pushing.\"}",
                  1, 0, 0);
    cr_expect_eq(
        dst_count(&T, "select count(*) from opportunities where external_id = 'OPP-1' and placeholder"), 1);
    expect_accept("/v1/opportunities", OPP1, 1, 0, 1);
    /* One opportunity row, the interaction and transcript attached to it. */
    cr_expect_eq(dst_count(&T, "select count(*) from opportunities where external_id = 'OPP-1'"), 1);
    cr_expect_eq(
        dst_count(&T, "select count(*) from interactions i join opportunities o on o.id = i.opportunity_id"
                      " where o.external_id = 'OPP-1' and not o.placeholder and i.duration_min = 45"
                      " and i.meta = '{\"attendees\": 3, \"contact_email\": \"dana@acme.test\"}'::jsonb"
                      " and i.contact = 'dana@acme.test'"),
        1);
    cr_expect_eq(
        dst_count(&T, "select count(*) from transcripts t join opportunities o on o.id = t.opportunity_id"
                      " where o.external_id = 'OPP-1'"),
        1);
    rd_kafka_message_t *m[1];
    dst_consume(c, m, 1, 15000);
    ds_consumer_release(m, 1);
    /* Further interactions of a known deal publish at once. */
    expect_accept("/v1/interactions",
                  "[{\"external_id\":\"INT-2\",\"opportunity_external_id\":\"OPP-1\",\"type\":\"EMAIL\","
                  "\"occurred_at\":\"2026-03-06T08:00:00Z\"}]",
                  1, 0, 1);
    dst_consume(c, m, 1, 15000);
    Dealscore__V1__OpportunityChanged *ev =
        dealscore__v1__opportunity_changed__unpack(NULL, m[0]->len, m[0]->payload);
    cr_expect_eq(ev->kind, DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_INTERACTION_ADDED);
    dealscore__v1__opportunity_changed__free_unpacked(ev, NULL);
    ds_consumer_release(m, 1);
    ds_consumer_destroy(c);
}

Test(ingest, account_change_fans_out_to_open_opportunities) {
    expect_accept("/v1/opportunities",
                  "[{\"external_id\":\"O-A\",\"account_external_id\":\"ACC-9\",\"stage\":\"demo\",\"created_"
                  "at\":\"2026-01-01T00:00:00Z\"},"
                  "{\"external_id\":\"O-B\",\"account_external_id\":\"ACC-9\",\"stage\":\"proposal\","
                  "\"created_at\":\"2026-01-01T00:00:00Z\"},"
                  "{\"external_id\":\"O-C\",\"account_external_id\":\"ACC-9\",\"stage\":\"Closed "
                  "Lost\",\"created_at\":\"2026-01-01T00:00:00Z\"}]",
                  3, 0, 3);
    cr_expect_eq(dst_count(&T,
                           "select count(*) from opportunities where external_id = 'O-C' and outcome = 'lost'"
                           " and closed_at is not null"),
                 1);
    expect_accept("/v1/accounts",
                  "{\"external_id\":\"ACC-9\",\"name\":\"Initech\",\"industry\":\"software\"}", 1, 0, 2);
    cr_expect_eq(
        dst_count(&T, "select count(*) from dealscore_internal.outbox where kind = 'account_updated'"), 2);
    cr_expect_eq(dst_count(&T, "select count(*) from accounts where external_id = 'ACC-9' and not placeholder"
                               " and name = 'Initech'"),
                 1);
}

typedef struct {
    const char *what;
    const char *path;
    const char *body;
    int status;
    const char *field;   /* expected errors[0].field, or NULL */
    const char *problem; /* expected errors[0].problem, or error code */
} bad_case_t;

static void expect_error(const bad_case_t *bc, const httpc_resp_t *r) {
    cr_expect_eq(r->status, bc->status, "%s: status %d body %s", bc->what, r->status, r->body);
    json_t *j = body_json(r);
    if (bc->field) {
        json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
        cr_expect_str_eq(json_string_value(json_object_get(e0, "field")), bc->field, "%s: %s", bc->what,
                         r->body);
        cr_expect_str_eq(json_string_value(json_object_get(e0, "problem")), bc->problem, "%s: %s", bc->what,
                         r->body);
    } else {
        cr_expect_str_eq(json_string_value(json_object_get(j, "error")), bc->problem, "%s: %s", bc->what,
                         r->body);
    }
    json_decref(j);
}

Test(ingest, each_bad_input_gets_its_status_and_body_and_changes_nothing) {
    expect_accept("/v1/opportunities", OPP1, 1, 0, 1);
    /* The relay removes the outbox row once Kafka has the event: counted
     * before that, the row's removal would look like a change. */
    cr_assert_eq(dst_wait_count(&T, "select count(*) from dealscore_internal.outbox", 0, 10000), 0);
    const char *tables[] = {"accounts",     "opportunities", "opportunity_history",
                            "interactions", "transcripts",   "dealscore_internal.outbox"};
    long long before[6];
    for (int i = 0; i < 6; i++) {
        char *q = pgt_fmt("select count(*) from %s", tables[i]);
        before[i] = dst_count(&T, q);
        free(q);
    }
    bad_case_t cases[] = {
        {"bad json", "/v1/opportunities", "{\"external_id\": ", 400, "", NULL},
        {"wrong type", "/v1/opportunities",
         "{\"external_id\":\"X\",\"stage\":\"demo\",\"created_at\":\"2026-01-01T00:00:00Z\",\"amount\":"
         "\"lots\"}",
         400, "amount", "must be a number"},
        {"missing field", "/v1/opportunities",
         "{\"external_id\":\"X\",\"created_at\":\"2026-01-01T00:00:00Z\"}", 400, "stage", "is required"},
        {"unknown enum", "/v1/interactions",
         "{\"external_id\":\"I\",\"opportunity_external_id\":\"OPP-1\",\"type\":\"fax\",\"occurred_at\":"
         "\"2026-01-01T00:00:00Z\"}",
         400, "type", "must be one of email, phone, meeting, demo, support"},
        {"negative amount", "/v1/opportunities",
         "{\"external_id\":\"X\",\"stage\":\"demo\",\"created_at\":\"2026-01-01T00:00:00Z\",\"amount\":-5}",
         400, "amount", "must be >= 0"},
        {"bad date", "/v1/opportunities",
         "{\"external_id\":\"X\",\"stage\":\"demo\",\"created_at\":\"2026-02-30T00:00:00Z\"}", 400,
         "created_at", "must be an ISO 8601 timestamp with a zone (e.g. 2026-01-31T12:00:00Z)"},
        {"no zone", "/v1/opportunities",
         "{\"external_id\":\"X\",\"stage\":\"demo\",\"created_at\":\"2026-01-01T00:00:00\"}", 400,
         "created_at", "must be an ISO 8601 timestamp with a zone (e.g. 2026-01-31T12:00:00Z)"},
        {"not an object", "/v1/accounts", "[42]", 400, "", "record must be a JSON object"},
        {"empty array", "/v1/accounts", "[]", 400, NULL, "empty"},
    };
    for (size_t i = 0; i < PGT_N(cases); i++) {
        httpc_resp_t r = dst_post(&T, cases[i].path, cases[i].body, NULL, NULL);
        if (i == 0) {
            cr_expect_eq(r.status, 400, "%s", r.body);
            json_t *j = body_json(&r);
            cr_expect_str_eq(json_string_value(json_object_get(j, "error")), "invalid_json");
            json_decref(j);
        } else {
            expect_error(&cases[i], &r);
        }
        httpc_free(&r);
    }
    /* A valid record beside an invalid one: the whole request changes nothing,
     * and every problem is listed with its index. */
    httpc_resp_t r = dst_post(&T, "/v1/accounts",
                              "[{\"external_id\":\"OK\",\"name\":\"Fine\"},{\"name\":\"no id\"},"
                              "{\"external_id\":\"B\",\"name\":true,\"created_at\":\"soon\"}]",
                              NULL, NULL);
    cr_expect_eq(r.status, 400);
    json_t *j = body_json(&r);
    json_t *errs = json_object_get(j, "errors");
    cr_expect_eq(json_array_size(errs), 3, "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(errs, 0), "index")), 1);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(errs, 0), "field")), "external_id");
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(errs, 1), "index")), 2);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(errs, 1), "field")), "name");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(errs, 2), "field")), "created_at");
    json_decref(j);
    httpc_free(&r);

    /* Transport-level errors. */
    r = httpc_request(T.port, "POST", "/v1/accounts", "Content-Type: text/csv\r\n", "a,b", 3, 5000);
    cr_expect_eq(r.status, 415, "%s", r.body);
    httpc_free(&r);
    r = httpc_get(T.port, "/v1/accounts");
    cr_expect_eq(r.status, 405, "%s", r.body);
    httpc_free(&r);
    r = dst_post(&T, "/v1/accounts", "{\"external_id\":\"Z\",\"name\":\"z\"}", "Bearer dsi_not_a_token",
                 NULL);
    cr_expect_eq(r.status, 401, "%s", r.body);
    char wa[128];
    cr_expect(httpc_header(&r, "www-authenticate", wa, sizeof wa) != NULL, "401 carries WWW-Authenticate");
    httpc_free(&r);
    r = dst_post(&T, "/v1/accounts", "{\"external_id\":\"Z\",\"name\":\"z\"}", "Basic Zm9vOmJhcg==", NULL);
    cr_expect_eq(r.status, 401, "%s", r.body);
    httpc_free(&r);
    r = dst_post(&T, "/v1/unknown", "{}", NULL, NULL);
    cr_expect_eq(r.status, 404, "%s", r.body);
    httpc_free(&r);
    /* Over the body limit (8 MiB by default). */
    size_t big = 9u << 20;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '[';
    huge[big - 1] = ']';
    huge[big] = '\0';
    r = dst_post(&T, "/v1/accounts", huge, NULL, NULL);
    cr_expect_eq(r.status, 413, "oversized body: %d", r.status);
    cr_expect(r.body && strstr(r.body, "payload_too_large"), "413 body names the problem: %s", r.body);
    httpc_free(&r);
    free(huge);

    for (int i = 0; i < 6; i++) {
        char *q = pgt_fmt("select count(*) from %s", tables[i]);
        cr_expect_eq(dst_count(&T, q), before[i], "%s changed", tables[i]);
        free(q);
    }
}

Test(ingest, too_many_records_is_rejected) {
    /* The default limit is 1,000 records per request. */
    size_t n = 1001;
    size_t cap = n * 48 + 16;
    char *body = malloc(cap);
    size_t len = 0;
    body[len++] = '[';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"external_id\":\"A%zu\",\"name\":\"n\"}",
                                i ? "," : "", i);
    body[len++] = ']';
    body[len] = '\0';
    httpc_resp_t r = dst_post(&T, "/v1/accounts", body, NULL, NULL);
    cr_expect_eq(r.status, 413, "%s", r.body);
    httpc_free(&r);
    free(body);
    cr_expect_eq(dst_count(&T, "select count(*) from accounts"), 0);
}

/* A revoke takes effect at once, on every replica, though both have just
 * used the token and keep what they read of it. */
Test(ingest, revoked_token_is_forbidden) {
    dst_t B;
    dst_clone(&B, &T);
    dst_start(&B, "ingest");
    const char *body = "{\"external_id\":\"Z\",\"name\":\"z\"}";
    dst_t *replicas[] = {&T, &B};
    for (int i = 0; i < 2; i++) {
        httpc_resp_t r = dst_post(replicas[i], "/v1/accounts", body, NULL, NULL);
        cr_expect_eq(r.status, 202, "replica %d before the revoke: %s", i, r.body);
        httpc_free(&r);
    }
    PGconn *db = pgt_connect_db(&T.db);
    pgt_exec(db, "update dealscore_internal.ingest_tokens set revoked_at = now()");
    PQfinish(db);
    for (int i = 0; i < 2; i++) {
        httpc_resp_t r = dst_post(replicas[i], "/v1/accounts", body, NULL, NULL);
        cr_expect_eq(r.status, 403, "replica %d after the revoke: %s", i, r.body);
        cr_expect(r.body && strstr(r.body, "token revoked"), "%s", r.body);
        httpc_free(&r);
    }
    dst_teardown(&B);
}

/* The token is read from Postgres once, then kept until a token or an
 * org's settings change: a new stage -> outcome map applies to the next
 * request, and so does a revoke made with `token revoke`. */
Test(ingest, token_is_read_again_only_after_a_change) {
    const char *lookups = "dealscore_ingest_token_lookups_total";
    const char *acct = "{\"external_id\":\"A\",\"name\":\"a\"}";
    for (int i = 0; i < 3; i++) expect_accept("/v1/accounts", acct, 1, i > 0, 0);
    cr_expect_eq(dst_metric(&T, lookups), 1);
    PGconn *db = pgt_connect_db(&T.db);
    pgt_exec(db, "update orgs set settings = jsonb_set(settings, '{stage_outcome}',"
                 " coalesce(settings->'stage_outcome', '{}') || '{\"signed\": \"won\"}')");
    expect_accept("/v1/opportunities",
                  "{\"external_id\":\"S-1\",\"stage\":\"signed\",\"created_at\":\"2026-03-01T09:00:00Z\"}", 1,
                  0, 1);
    cr_expect_eq(
        pgt_longf(db, "select count(*) from opportunities where external_id = 'S-1' and outcome = 'won'"), 1);
    cr_expect_eq(dst_metric(&T, lookups), 2);
    expect_accept("/v1/accounts", acct, 1, 1, 0);
    cr_expect_eq(dst_metric(&T, lookups), 2);
    char *id = pgt_valuef(db, "select id from dealscore_internal.ingest_tokens");
    char *bin = proc_bin("dealscore-ingest");
    char *argv[] = {bin, "token", "revoke", "--org", "acme", id, NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(proc_run(argv, T.env, &out, &err, 30000), 0, "%s", err);
    free(out);
    free(err);
    free(bin);
    httpc_resp_t r = dst_post(&T, "/v1/accounts", acct, NULL, NULL);
    cr_expect_eq(r.status, 403, "%s", r.body);
    cr_expect(r.body && strstr(r.body, "token revoked"), "%s", r.body);
    httpc_free(&r);
    cr_expect_eq(dst_metric(&T, lookups), 3);
    free(id);
    PQfinish(db);
}

static char *sign(const char *secret, const char *ts, const char *body) {
    char *msg = pgt_fmt("%s.%s", ts, body);
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, strlen(msg), mac, &len);
    free(msg);
    char *hex = malloc(65);
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", mac[i]);
    return hex;
}

/* Makes T's token a signing one of a new org and returns its secret. */
static void signing_token(const char *slug, char secret[80]) {
    char *out = dst_token(&T, slug, "--hmac");
    char *sec = strstr(out, "signing secret ");
    cr_assert(sec, "token create --hmac prints the secret: %s", out);
    sscanf(sec + 15, "%79s", secret);
    free(out);
}

/* The headers of body signed now with secret (caller frees). */
static char *signed_headers(const char *secret, const char *body) {
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    char *sig = sign(secret, ts, body);
    char *hdr = pgt_fmt("X-Dealscore-Timestamp: %s\r\nX-Dealscore-Signature: sha256=%s\r\n", ts, sig);
    free(sig);
    return hdr;
}

Test(ingest, signed_tokens_check_signature_window_and_replay) {
    char secret[80];
    signing_token("signed-org", secret);
    const char *body = "{\"external_id\":\"S1\",\"name\":\"Signed Inc\"}";
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    char *sig = sign(secret, ts, body);

    httpc_resp_t r = dst_post(&T, "/v1/accounts", body, NULL, NULL);
    cr_expect_eq(r.status, 401, "unsigned: %s", r.body);
    cr_expect(strstr(r.body, "signature_required"), "%s", r.body);
    httpc_free(&r);

    char *hdr = pgt_fmt("X-Dealscore-Timestamp: %s\r\nX-Dealscore-Signature: sha256=%s\r\n", ts, "00");
    r = dst_post(&T, "/v1/accounts", body, NULL, hdr);
    cr_expect_eq(r.status, 401);
    cr_expect(strstr(r.body, "bad_signature"), "%s", r.body);
    httpc_free(&r);
    free(hdr);

    char old[32];
    snprintf(old, sizeof old, "%lld", (long long)time(NULL) - 3600);
    char *oldsig = sign(secret, old, body);
    hdr = pgt_fmt("X-Dealscore-Timestamp: %s\r\nX-Dealscore-Signature: sha256=%s\r\n", old, oldsig);
    r = dst_post(&T, "/v1/accounts", body, NULL, hdr);
    cr_expect_eq(r.status, 401);
    cr_expect(strstr(r.body, "signature_expired"), "%s", r.body);
    httpc_free(&r);
    free(hdr);
    free(oldsig);

    /* Tampered body with a valid signature of the original. */
    hdr = pgt_fmt("X-Dealscore-Timestamp: %s\r\nX-Dealscore-Signature: sha256=%s\r\n", ts, sig);
    r = dst_post(&T, "/v1/accounts", "{\"external_id\":\"S1\",\"name\":\"Evil Inc\"}", NULL, hdr);
    cr_expect_eq(r.status, 401);
    cr_expect(strstr(r.body, "bad_signature"), "%s", r.body);
    httpc_free(&r);

    r = dst_post(&T, "/v1/accounts", body, NULL, hdr);
    cr_expect_eq(r.status, 202, "signed: %s", r.body);
    httpc_free(&r);
    /* A repeat is answered as the original was, and stores nothing again. */
    r = dst_post(&T, "/v1/accounts", body, NULL, hdr);
    cr_expect_eq(r.status, 200, "replay: %s", r.body);
    cr_expect_str_eq(r.body, "{\"accepted\":1,\"unchanged\":0,\"events\":0}\n");
    httpc_free(&r);
    free(hdr);
    free(sig);
    cr_expect_eq(dst_count(&T, "select count(*) from accounts a join orgs o on o.id = a.org_id"
                               " where o.slug = 'signed-org' and a.name = 'Signed Inc'"),
                 1);
    cr_expect_eq(dst_count(&T, "select count(*) from accounts where name = 'Evil Inc'"), 0);
}

Test(ingest, salesforce_profile_maps_records) {
    expect_accept("/v1/opportunities?profile=salesforce",
                  "[{\"attributes\":{\"type\":\"Opportunity\"},\"Id\":\"006A\",\"AccountId\":\"001A\","
                  "\"OwnerId\":\"005X\",\"StageName\":\"Closed Won\",\"Amount\":50000,"
                  "\"CloseDate\":\"2026-05-31\",\"CreatedDate\":\"2026-01-15T10:00:00.000+0000\","
                  "\"IsClosed\":true,\"IsWon\":true,\"Product_Category__c\":\"platform\"}]",
                  1, 0, 1);
    cr_expect_eq(dst_count(&T,
                           "select count(*) from opportunities where external_id = '006A' and outcome = 'won'"
                           " and stage = 'Closed Won' and amount = 50000 and owner_id = '005X'"
                           " and product_category = 'platform' and close_date = '2026-05-31'"
                           " and closed_at = '2026-05-31T00:00:00Z'"),
                 1);
    expect_accept("/v1/accounts?profile=salesforce",
                  "{\"Id\":\"001A\",\"Name\":\"Globex\",\"Industry\":\"Energy\",\"BillingCountry\":\"DE\","
                  "\"NumberOfEmployees\":1200}",
                  1, 0, 0);
    cr_expect_eq(dst_count(&T,
                           "select count(*) from accounts where external_id = '001A' and industry = 'Energy'"
                           " and region = 'DE' and size_band = 'large'"),
                 1);
    expect_accept(
        "/v1/interactions?profile=salesforce",
        "{\"attributes\":{\"type\":\"Task\"},\"Id\":\"00T1\",\"WhatId\":\"006A\",\"TaskSubtype\":\"Call\","
        "\"CreatedDate\":\"2026-02-01T10:00:00.000+0000\",\"CallDurationInSeconds\":600,\"Subject\":"
        "\"Intro\"}",
        1, 0, 1);
    cr_expect_eq(dst_count(&T,
                           "select count(*) from interactions where external_id = '00T1' and type = 'phone'"
                           " and duration_min = 10 and meta->>'subject' = 'Intro'"),
                 1);
}

/* A fixture of tests/fixtures/hubspot as JSON text (caller frees); with
 * i >= 0 only its item i. */
static char *hubspot_fixture(const char *name, int i) {
    char *path = pgt_fmt("%s/tests/fixtures/hubspot/%s", DS_SOURCE_DIR, name);
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    cr_assert(doc, "%s: %s", path, err.text);
    free(path);
    char *text = json_dumps(i >= 0 ? json_array_get(doc, (size_t)i) : doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

/* Records as n8n's HubSpot node returns them, posted as they are. */
Test(ingest, hubspot_profile_maps_deals_companies_and_engagements) {
    ds_consumer_t *c = dst_consumer(&T, "opportunity.changed");
    char *deals = hubspot_fixture("deals.json", -1), *companies = hubspot_fixture("companies.json", -1);
    expect_accept("/v1/opportunities?profile=hubspot", deals, 2, 0, 2);
    expect_accept("/v1/accounts?profile=hubspot", companies, 1, 0, 1);
    for (int i = 0; i < 3; i++) {
        char *e = hubspot_fixture("engagements.json", i);
        expect_accept("/v1/interactions?profile=hubspot", e, 1, 0, 1);
        free(e);
    }
    char *note = hubspot_fixture("engagements.json", 3);
    expect_accept("/v1/transcripts?profile=hubspot", note, 1, 0, 1);
    PGconn *db = pgt_connect_db(&T.db);
    cr_expect_eq(pgt_longf(db,
                           "select count(*) from opportunities where external_id = '1237891'"
                           " and stage = 'presentationscheduled' and amount = 60000 and currency = 'EUR'"
                           " and owner_id = '66' and product_category = 'default' and persona is null"
                           " and close_date = '2026-06-30' and outcome = 'open' and closed_at is null"
                           " and created_at = '2026-03-01T09:00:00Z' and account_external_id = '184896670'"
                           " and stage_probability = 0.6"
                           " and account_id = (select id from accounts where external_id = '184896670')"
                           " and not placeholder"),
                 1);
    cr_expect_eq(pgt_longf(db, "select count(*) from opportunities where external_id = '1237999'"
                               " and stage = 'closedwon' and amount = 15000.5 and outcome = 'won'"
                               " and close_date = '2026-05-15' and closed_at = '2026-05-15T14:30:00Z'"
                               " and created_at = '2026-01-10T08:00:00Z' and account_id is null"
                               " and stage_probability = 1"),
                 1);
    cr_expect_eq(pgt_longf(db, "select count(*) from opportunity_history h join opportunities o"
                               " on o.id = h.opportunity_id where o.external_id = '1237891'"
                               " and h.field = 'stage' and h.new_value = 'presentationscheduled'"
                               " and h.changed_at = '2026-04-01T08:00:00Z'"),
                 1);
    cr_expect_eq(pgt_longf(db, "select count(*) from accounts where external_id = '184896670'"
                               " and name = 'Globex' and industry = 'UTILITIES' and region = 'Germany'"
                               " and size_band = 'large' and not placeholder"),
                 1);
    PGresult *r =
        pgt_query(db, "select i.external_id || '|' || i.type || '|' || coalesce(i.duration_min::text, '-')"
                      " || '|' || coalesce(i.outcome, '-') || '|' || i.meta::text || '|'"
                      " || to_char(i.occurred_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI')"
                      " from interactions i join opportunities o on o.id = i.opportunity_id"
                      " where o.external_id = '1237891' order by i.external_id");
    static const char *const want[] = {
        "4401|phone|25|COMPLETED|{\"hubspot_type\": \"CALL\"}|2026-02-10 15:00",
        "4402|meeting|45|COMPLETED|{\"subject\": \"Platform demo\", \"hubspot_type\": "
        "\"MEETING\"}|2026-02-12 10:00",
        "4403|email|-|-|{\"subject\": \"Proposal\", \"hubspot_type\": \"EMAIL\"}|2026-02-11 09:00",
    };
    cr_assert_eq(PQntuples(r), 3);
    for (int i = 0; i < 3; i++) cr_expect_str_eq(PQgetvalue(r, i, 0), want[i], "interaction %d", i);
    PQclear(r);
    cr_expect_eq(pgt_longf(db, "select count(*) from transcripts where external_id = '4404'"
                               " and text = E'Decision criteria: SOC 2 & SSO.\\nPaper process via legal.'"
                               " and occurred_at = '2026-02-11T09:00:00Z'"),
                 1);
    /* The events say where the records came from. */
    rd_kafka_message_t *m[1];
    dst_consume(c, m, 1, 15000);
    Dealscore__V1__OpportunityChanged *ev =
        dealscore__v1__opportunity_changed__unpack(NULL, m[0]->len, m[0]->payload);
    cr_assert(ev);
    cr_expect_str_eq(ev->source, "hubspot");
    dealscore__v1__opportunity_changed__free_unpacked(ev, NULL);
    ds_consumer_release(m, 1);
    ds_consumer_destroy(c);
    PQfinish(db);
    free(deals);
    free(companies);
    free(note);
}

/* The batch of three of the partial tests: the middle record lacks its
 * stage and has a negative amount. */
static const char *PARTIAL_BATCH =
    "[{\"external_id\":\"P-1\",\"stage\":\"discovery\",\"created_at\":\"2026-03-01T09:00:00Z\",\"amount\":10}"
    ","
    "{\"external_id\":\"P-2\",\"created_at\":\"2026-03-01T09:00:00Z\",\"amount\":-1},"
    "{\"external_id\":\"P-3\",\"stage\":\"demo\",\"created_at\":\"2026-03-01T09:00:00Z\",\"amount\":30}]";

static void expect_result(json_t *results, int i, const char *status, const char *problem) {
    json_t *r = json_array_get(results, (size_t)i);
    cr_expect_eq(json_integer_value(json_object_get(r, "index")), i);
    cr_expect_str_eq(json_string_value(json_object_get(r, "status")), status, "result %d", i);
    if (problem)
        cr_expect_str_eq(json_string_value(json_object_get(r, "problem")), problem, "result %d", i);
    else
        cr_expect_null(json_object_get(r, "problem"), "result %d", i);
}

Test(ingest, partial_mode_stores_the_valid_records_and_answers_each) {
    /* All or nothing by default: a 400 and no row. */
    httpc_resp_t r = dst_post(&T, "/v1/opportunities", PARTIAL_BATCH, NULL, NULL);
    cr_expect_eq(r.status, 400, "%s", r.body);
    httpc_free(&r);
    cr_expect_eq(dst_count(&T, "select count(*) from opportunities"), 0);

    r = dst_post(&T, "/v1/opportunities?partial=true", PARTIAL_BATCH, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *j = body_json(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "accepted")), 2, "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(j, "rejected")), 1, "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(j, "unchanged")), 0, "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(j, "events")), 2, "%s", r.body);
    json_t *results = json_object_get(j, "results");
    cr_assert_eq(json_array_size(results), 3, "%s", r.body);
    expect_result(results, 0, "stored", NULL);
    expect_result(results, 1, "rejected", "stage is required; amount must be >= 0");
    json_t *errs = json_object_get(json_array_get(results, 1), "errors");
    cr_expect_eq(json_array_size(errs), 2, "%s", r.body);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(errs, 0), "field")), "stage");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(errs, 1), "field")), "amount");
    expect_result(results, 2, "stored", NULL);
    json_decref(j);
    httpc_free(&r);
    cr_expect_eq(dst_count(&T, "select count(*) from opportunities"), 2);
    cr_expect_eq(dst_count(&T, "select count(*) from opportunities where (external_id, stage, amount) in"
                               " (('P-1', 'discovery', 10), ('P-3', 'demo', 30))"),
                 2);

    /* Sent again: the stored ones are unchanged, the bad one still refused. */
    r = dst_post(&T, "/v1/opportunities?partial=true", PARTIAL_BATCH, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = body_json(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "unchanged")), 2, "%s", r.body);
    cr_expect_eq(json_integer_value(json_object_get(j, "events")), 0, "%s", r.body);
    expect_result(json_object_get(j, "results"), 0, "unchanged", NULL);
    expect_result(json_object_get(j, "results"), 1, "rejected", "stage is required; amount must be >= 0");
    json_decref(j);
    httpc_free(&r);

    /* n8n's HubSpot engagements as they come, a note among them. */
    char *engagements = hubspot_fixture("engagements.json", -1);
    r = dst_post(&T, "/v1/interactions?profile=hubspot&partial=true", engagements, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = body_json(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "accepted")), 3, "%s", r.body);
    expect_result(json_object_get(j, "results"), 3, "rejected",
                  "type must be one of email, phone, meeting, demo, support");
    json_decref(j);
    httpc_free(&r);
    free(engagements);
    cr_expect_eq(dst_count(&T, "select count(*) from interactions"), 3);

    /* Nothing valid: still an answer per record, and nothing stored. */
    r = dst_post(&T, "/v1/accounts?partial=true", "[{\"name\":\"no id\"}]", NULL, NULL);
    cr_expect_eq(r.status, 200, "%s", r.body);
    j = body_json(&r);
    cr_expect_eq(json_integer_value(json_object_get(j, "accepted")), 0, "%s", r.body);
    expect_result(json_object_get(j, "results"), 0, "rejected", "external_id is required");
    json_decref(j);
    httpc_free(&r);
    cr_expect_eq(dst_count(&T, "select count(*) from accounts where not placeholder"), 0);
}

Test(ingest, partial_mode_keeps_the_errors_of_the_request_itself) {
    static const struct {
        const char *path, *body;
        int status;
        const char *error;
    } cases[] = {
        {"/v1/opportunities?partial=yes", "{}", 400, "bad_partial"},
        {"/v1/opportunities?partial=true", "[1,", 400, "invalid_json"},
        {"/v1/opportunities?partial=true", "[]", 400, "empty"},
    };
    for (size_t i = 0; i < PGT_N(cases); i++) {
        httpc_resp_t r = dst_post(&T, cases[i].path, cases[i].body, NULL, NULL);
        cr_expect_eq(r.status, cases[i].status, "%s: %s", cases[i].path, r.body);
        json_t *j = body_json(&r);
        cr_expect_str_eq(json_string_value(json_object_get(j, "error")), cases[i].error, "%s", r.body);
        if (i == 0) {
            cr_expect_str_eq(json_string_value(json_object_get(j, "field")), "partial", "%s", r.body);
            cr_expect_str_eq(json_string_value(json_object_get(j, "message")),
                             "partial must be true or false");
        }
        json_decref(j);
        httpc_free(&r);
    }
}

Test(ingest, an_older_change_arriving_late_does_not_overwrite_a_newer_one) {
    expect_accept("/v1/opportunities",
                  "{\"external_id\":\"OPP-L\",\"stage\":\"proposal\",\"created_at\":\"2026-03-01T00:00:00Z\","
                  "\"changed_at\":\"2026-04-01T00:00:00Z\"}",
                  1, 0, 1);
    /* From another workflow, later: the state of mid-March. */
    expect_accept("/v1/opportunities",
                  "{\"external_id\":\"OPP-L\",\"stage\":\"demo\",\"created_at\":\"2026-03-01T00:00:00Z\","
                  "\"changed_at\":\"2026-03-15T00:00:00Z\"}",
                  1, 1, 0);
    cr_expect_eq(
        dst_count(&T, "select count(*) from opportunities where external_id = 'OPP-L' and stage = 'proposal'"
                      " and changed_at = '2026-04-01T00:00:00Z'"),
        1);
    cr_expect_eq(
        dst_count(&T,
                  "select count(*) from opportunity_history where field = 'stage' and new_value = 'demo'"),
        0);
    /* A newer change still applies. */
    expect_accept(
        "/v1/opportunities",
        "{\"external_id\":\"OPP-L\",\"stage\":\"negotiation\",\"created_at\":\"2026-03-01T00:00:00Z\","
        "\"changed_at\":\"2026-04-02T00:00:00Z\"}",
        1, 0, 1);
    cr_expect_eq(
        dst_count(&T,
                  "select count(*) from opportunities where external_id = 'OPP-L' and stage = 'negotiation'"),
        1);
}

Test(ingest, repeated_ids_in_one_request_apply_in_order) {
    /* Three states of one deal in one array, then the same record twice:
     * each applies after the one before it, as if posted one by one. */
    expect_accept("/v1/opportunities",
                  "[{\"external_id\":\"OPP-R\",\"stage\":\"discovery\",\"amount\":100,"
                  "\"created_at\":\"2026-03-01T00:00:00Z\",\"changed_at\":\"2026-03-01T00:00:00Z\"},"
                  "{\"external_id\":\"OPP-S\",\"stage\":\"demo\",\"created_at\":\"2026-03-01T00:00:00Z\"},"
                  "{\"external_id\":\"OPP-R\",\"stage\":\"demo\",\"amount\":100,"
                  "\"created_at\":\"2026-03-01T00:00:00Z\",\"changed_at\":\"2026-03-02T00:00:00Z\"},"
                  "{\"external_id\":\"OPP-R\",\"stage\":\"Closed Won\",\"amount\":150,"
                  "\"created_at\":\"2026-03-01T00:00:00Z\",\"changed_at\":\"2026-03-03T00:00:00Z\"},"
                  "{\"external_id\":\"OPP-S\",\"stage\":\"demo\",\"created_at\":\"2026-03-01T00:00:00Z\"}]",
                  5, 1, 4);
    cr_expect_eq(dst_count(&T, "select count(*) from opportunities where external_id = 'OPP-R'"
                               " and stage = 'Closed Won' and amount = 150 and outcome = 'won'"),
                 1);
    PGconn *db = pgt_connect_db(&T.db);
    PGresult *h = pgt_query(
        db, "select h.field || '|' || coalesce(h.old_value, '-') || '|' || coalesce(h.new_value, '-')"
            " || '|' || to_char(h.changed_at at time zone 'UTC', 'MM-DD')"
            " from opportunity_history h join opportunities o on o.id = h.opportunity_id"
            " where o.external_id = 'OPP-R' order by h.id");
    static const char *const want[] = {
        "stage|-|discovery|03-01",     "amount|-|100|03-01",   "stage|discovery|demo|03-02",
        "stage|demo|Closed Won|03-03", "amount|100|150|03-03", "outcome|open|won|03-03",
    };
    cr_assert_eq(PQntuples(h), (int)PGT_N(want), "OPP-R has %d history rows", PQntuples(h));
    for (int i = 0; i < PQntuples(h); i++)
        cr_expect_str_eq(PQgetvalue(h, i, 0), want[i], "history row %d", i);
    PQclear(h);
    /* The events of one deal are in the outbox in the order of its changes. */
    PGresult *e = pgt_query(
        db, "select x.kind from dealscore_internal.outbox x join opportunities o on o.id = x.opportunity_id"
            " where o.external_id = 'OPP-R' order by x.id");
    static const char *const kinds[] = {"opportunity_upserted", "stage_changed", "outcome_set"};
    cr_assert_eq(PQntuples(e), 3);
    for (int i = 0; i < 3; i++) cr_expect_str_eq(PQgetvalue(e, i, 0), kinds[i], "event %d", i);
    PQclear(e);
    PQfinish(db);
}

typedef struct {
    const char *body;
    httpc_resp_t resp;
} post_arg_t;

static void *post_opportunities(void *p) {
    post_arg_t *a = p;
    a->resp = dst_post(&T, "/v1/opportunities", a->body, NULL, NULL);
    return NULL;
}

/* How many of ingest's writer sessions wait for a lock, once one does or
 * 20 s passed. */
static long long webhook_lock_waits(PGconn *watch) {
    long long waiting = 0;
    long long deadline = proc_now_ms() + 20000;
    while (proc_now_ms() < deadline &&
           (waiting = pgt_longf(watch, "select count(*) from pg_stat_activity"
                                       " where application_name = 'dealscore-ingest'"
                                       " and wait_event_type = 'Lock'")) == 0) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL); /* polling interval */
    }
    return waiting;
}

/* Another session holds DL-X and then asks for DL-Y, which the webhook's
 * transaction holds while it waits for DL-X: a deadlock. The other session
 * waits 30 s before it checks for one, so Postgres rolls the webhook's
 * transaction back; ingest runs it again, and the webhook gets its 202
 * once the other session commits. */
Test(ingest, a_group_commit_rolled_back_by_a_deadlock_runs_again) {
    expect_accept("/v1/opportunities",
                  "[{\"external_id\":\"DL-X\",\"stage\":\"discovery\",\"amount\":10,"
                  "\"created_at\":\"2026-03-01T00:00:00Z\"},"
                  "{\"external_id\":\"DL-Y\",\"stage\":\"discovery\",\"amount\":20,"
                  "\"created_at\":\"2026-03-01T00:00:00Z\"}]",
                  2, 0, 2);
    PGconn *other = pgt_connect_db(&T.db), *watch = pgt_connect_db(&T.db);
    pgt_exec(other, "set deadlock_timeout = '30s'");
    pgt_exec(other, "begin");
    pgt_exec(other, "update opportunities set owner_id = 'other' where external_id = 'DL-X'");
    post_arg_t a = {.body = "[{\"external_id\":\"DL-Y\",\"stage\":\"demo\",\"amount\":21,"
                            "\"created_at\":\"2026-03-01T00:00:00Z\"},"
                            "{\"external_id\":\"DL-X\",\"stage\":\"demo\",\"amount\":11,"
                            "\"created_at\":\"2026-03-01T00:00:00Z\"}]"};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, post_opportunities, &a), 0);
    /* Until the webhook's transaction holds DL-Y and waits for DL-X. */
    cr_assert_eq(webhook_lock_waits(watch), 1, "the webhook's transaction never waited for DL-X");
    cr_assert_eq(PQsendQuery(other, "update opportunities set owner_id = 'other' where external_id = 'DL-Y'"),
                 1);
    PGresult *r;
    while ((r = PQgetResult(other))) {
        cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
        PQclear(r);
    }
    pgt_exec(other, "commit");
    pthread_join(th, NULL);
    cr_assert_eq(a.resp.status, 202, "%d %s", a.resp.status, a.resp.body);
    httpc_free(&a.resp);
    /* The webhook's change came after the other session's. */
    cr_expect_eq(pgt_longf(watch, "select count(*) from opportunities where external_id = 'DL-X'"
                                  " and stage = 'demo' and amount = 11 and owner_id is null"),
                 1);
    cr_expect_eq(pgt_longf(watch, "select count(*) from opportunities where external_id = 'DL-Y'"
                                  " and stage = 'demo' and amount = 21 and owner_id is null"),
                 1);
    PQfinish(other);
    PQfinish(watch);
}

/* The history rows of the deal ext as field|old|new|MM-DD, in id order. */
static void expect_history(PGconn *db, const char *ext, const char *const *want, int n) {
    const char *v[] = {ext};
    PGresult *h = PQexecParams(
        db,
        "select h.field || '|' || coalesce(h.old_value, '-') || '|' || coalesce(h.new_value, '-')"
        " || '|' || to_char(h.changed_at at time zone 'UTC', 'MM-DD')"
        " from opportunity_history h join opportunities o on o.id = h.opportunity_id"
        " where o.external_id = $1 order by h.id",
        1, NULL, v, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(h), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(h));
    cr_assert_eq(PQntuples(h), n, "%s has %d history rows", ext, PQntuples(h));
    for (int i = 0; i < n; i++) cr_expect_str_eq(PQgetvalue(h, i, 0), want[i], "%s history row %d", ext, i);
    PQclear(h);
}

/* The kinds of the outbox rows of the deal ext, comma-separated in id
 * order (the caller frees). */
static char *outbox_kinds(PGconn *db, const char *ext) {
    const char *v[] = {ext};
    PGresult *e =
        PQexecParams(db,
                     "select coalesce(string_agg(x.kind, ',' order by x.id), '')"
                     " from dealscore_internal.outbox x join opportunities o on o.id = x.opportunity_id"
                     " where o.external_id = $1",
                     1, NULL, v, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(e), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(e));
    char *kinds = ds_strdup(PQgetvalue(e, 0, 0));
    PQclear(e);
    return kinds;
}

/* Another writer (a replica, an import) creates the same new deal while
 * the webhook's transaction runs: the webhook waits for it, then applies
 * its record over the other's as the deal's first state. */
Test(ingest, a_deal_created_meanwhile_by_another_writer_takes_the_webhooks_record) {
    PGconn *other = pgt_connect_db(&T.db), *watch = pgt_connect_db(&T.db);
    pgt_exec(other, "begin");
    pgt_exec(other,
             "insert into opportunities (org_id, external_id, stage, amount, created_at)"
             " select id, 'OPP-C', 'discovery', 10, '2026-03-01T00:00:00Z' from orgs where slug = 'acme'");
    post_arg_t a = {.body =
                        "{\"external_id\":\"OPP-C\",\"stage\":\"demo\",\"amount\":20,"
                        "\"created_at\":\"2026-03-01T00:00:00Z\",\"changed_at\":\"2026-03-02T00:00:00Z\"}"};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, post_opportunities, &a), 0);
    cr_assert_eq(webhook_lock_waits(watch), 1, "the webhook's transaction never waited for the other insert");
    pgt_exec(other, "commit");
    pthread_join(th, NULL);
    expect_accepted("/v1/opportunities", &a.resp, 1, 0, 1);
    cr_expect_eq(pgt_longf(watch, "select count(*) from opportunities where external_id = 'OPP-C'"
                                  " and stage = 'demo' and amount = 20 and not placeholder"),
                 1);
    static const char *const want[] = {"stage|-|demo|03-02", "amount|-|20|03-02"};
    expect_history(watch, "OPP-C", want, PGT_N(want));
    char *kinds = outbox_kinds(watch, "OPP-C");
    cr_expect_str_eq(kinds, "opportunity_upserted");
    free(kinds);
    PQfinish(other);
    PQfinish(watch);
}

/* A deal first named by an interaction is a placeholder; its own record
 * makes it real and publishes it as a new deal, its history dated by the
 * record. A later change of it is an ordinary change. */
Test(ingest, a_placeholder_made_real_by_its_record_is_published_as_new) {
    expect_accept("/v1/interactions",
                  "{\"external_id\":\"INT-P\",\"opportunity_external_id\":\"OPP-P\",\"type\":\"meeting\","
                  "\"occurred_at\":\"2026-03-05T15:00:00Z\"}",
                  1, 0, 0);
    expect_accept("/v1/opportunities",
                  "{\"external_id\":\"OPP-P\",\"stage\":\"demo\",\"amount\":500,"
                  "\"created_at\":\"2026-03-01T00:00:00Z\",\"changed_at\":\"2026-03-10T00:00:00Z\"}",
                  1, 0, 1);
    expect_accept("/v1/opportunities",
                  "{\"external_id\":\"OPP-P\",\"stage\":\"Closed Lost\",\"amount\":500,"
                  "\"created_at\":\"2026-03-01T00:00:00Z\",\"changed_at\":\"2026-03-12T00:00:00Z\"}",
                  1, 0, 1);
    PGconn *db = pgt_connect_db(&T.db);
    cr_expect_eq(pgt_longf(db, "select count(*) from opportunities where external_id = 'OPP-P'"
                               " and not placeholder and outcome = 'lost'"),
                 1);
    static const char *const want[] = {"stage|-|demo|03-10", "amount|-|500|03-10",
                                       "stage|demo|Closed Lost|03-12", "outcome|open|lost|03-12"};
    expect_history(db, "OPP-P", want, PGT_N(want));
    char *kinds = outbox_kinds(db, "OPP-P");
    cr_expect_str_eq(kinds, "opportunity_upserted,outcome_set");
    free(kinds);
    PQfinish(db);
}

/* Signature headers sent with a token that has no secret are not read (a
 * 1-byte signature was lowercased 65 bytes far) and not kept. */
Test(ingest, signature_headers_with_a_plain_token_are_ignored) {
    const char *hdr = "X-Dealscore-Timestamp: 1\r\nX-Dealscore-Signature: x\r\n";
    for (int i = 0; i < 2; i++) {
        httpc_resp_t r =
            dst_post(&T, "/v1/accounts", "{\"external_id\":\"P1\",\"name\":\"Plain\"}", NULL, hdr);
        cr_expect_eq(r.status, 202, "try %d: %d %s", i, r.status, r.body);
        httpc_free(&r);
    }
    cr_expect_eq(dst_count(&T, "select count(*) from dealscore_internal.ingest_signatures"), 0);
    cr_expect_eq(dst_count(&T, "select count(*) from accounts where name = 'Plain'"), 1);
}

typedef struct {
    dst_t *t;
    const char *body, *hdr;
    pthread_barrier_t *start;
    httpc_resp_t resp;
} replay_arg_t;

static void *post_signed(void *p) {
    replay_arg_t *a = p;
    pthread_barrier_wait(a->start);
    a->resp = dst_post(a->t, "/v1/accounts", a->body, NULL, a->hdr);
    return NULL;
}

/* The same signed request 8 times at once: stored once; each copy gets the
 * 202, the original answer (200), or a 503 to retry while the first is in
 * flight. A repeat afterwards gets the original answer. */
Test(ingest, concurrent_copies_of_a_signed_request_get_in_once) {
    char secret[80];
    signing_token("signed-org", secret);
    const char *body =
        "[{\"external_id\":\"C1\",\"name\":\"Concurrent\"},{\"external_id\":\"C2\",\"name\":\"Twice\"}]";
    char *hdr = signed_headers(secret, body);
    enum { N = 8 };
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    replay_arg_t a[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        a[i] = (replay_arg_t){.t = &T, .body = body, .hdr = hdr, .start = &start};
        cr_assert_eq(pthread_create(&th[i], NULL, post_signed, &a[i]), 0);
    }
    const char *original = "{\"accepted\":2,\"unchanged\":0,\"events\":0}\n";
    int accepted = 0, answered = 0, retry = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        httpc_resp_t *r = &a[i].resp;
        char ra[16] = "";
        if (r->status == 202 && strcmp(r->body, original) == 0) accepted++;
        if (r->status == 200 && strcmp(r->body, original) == 0) answered++;
        if (r->status == 503 && strstr(r->body, "in_progress") &&
            httpc_header(r, "retry-after", ra, sizeof ra) && strcmp(ra, "1") == 0)
            retry++;
        cr_expect(r->status == 202 || r->status == 200 || r->status == 503, "copy %d: %d %s", i, r->status,
                  r->body);
        httpc_free(r);
    }
    pthread_barrier_destroy(&start);
    cr_expect_eq(accepted, 1);
    cr_expect_eq(accepted + answered + retry, N, "every copy is accepted, answered or told to retry");
    cr_expect_eq(dst_count(&T, "select count(*) from accounts where name in ('Concurrent', 'Twice')"), 2);
    httpc_resp_t r = dst_post(&T, "/v1/accounts", body, NULL, hdr);
    cr_expect_eq(r.status, 200, "%s", r.body);
    cr_expect_str_eq(r.body, original);
    httpc_free(&r);
    free(hdr);
}

static int post_status(dst_t *t, const char *body, const char *hdr, const char *want_in_body) {
    httpc_resp_t r = dst_post(t, "/v1/accounts", body, NULL, hdr);
    int st = r.status;
    if (want_in_body) cr_expect(r.body && strstr(r.body, want_in_body), "%d %s", st, r.body);
    httpc_free(&r);
    return st;
}

/* Another replica, and ingest started again, know what was accepted and
 * what was answered. */
Test(ingest, a_repeated_signed_request_gets_its_answer_from_every_replica_and_after_a_restart) {
    char secret[80];
    signing_token("signed-org", secret);
    const char *body = "{\"external_id\":\"R1\",\"name\":\"Replicas\"}";
    char *hdr = signed_headers(secret, body);
    dst_t B;
    dst_clone(&B, &T);
    snprintf(B.token, sizeof B.token, "%s", T.token);
    dst_start(&B, "ingest");
    const char *original = "{\"accepted\":1,\"unchanged\":0,\"events\":0}";
    cr_expect_eq(post_status(&T, body, hdr, original), 202);
    cr_expect_eq(post_status(&B, body, hdr, original), 200, "the other replica");
    dst_stop(&T);
    dst_start(&T, "ingest");
    cr_expect_eq(post_status(&T, body, hdr, original), 200, "after a restart");
    dst_teardown(&B);
    free(hdr);
}

/* A request the database refuses is answered without the database's words,
 * and its signature is released: once the cause is gone the same signed
 * request gets in. */
Test(ingest, a_refused_write_hides_the_database_error_and_releases_the_signature) {
    char secret[80];
    signing_token("signed-org", secret);
    PGconn *db = pgt_connect_db(&T.db);
    pgt_exec(db, "alter table accounts add constraint secret_rule_x9 check (name <> 'Refused')");
    const char *body = "{\"external_id\":\"F1\",\"name\":\"Refused\"}";
    char *hdr = signed_headers(secret, body);
    httpc_resp_t r = dst_post(&T, "/v1/accounts", body, NULL, hdr);
    cr_expect_eq(r.status, 400, "%s", r.body);
    json_t *j = body_json(&r);
    cr_expect_str_eq(json_string_value(json_object_get(j, "error")), "rejected_by_database");
    cr_expect_str_eq(json_string_value(json_object_get(j, "message")),
                     "the database refused the records; nothing was stored");
    cr_expect(!strstr(r.body, "secret_rule_x9") && !strstr(r.body, "violates"), "%s", r.body);
    json_decref(j);
    httpc_free(&r);
    pgt_exec(db, "alter table accounts drop constraint secret_rule_x9");
    PQfinish(db);
    cr_expect_eq(post_status(&T, body, hdr, NULL), 202, "the retry after the refusal");
    cr_expect_eq(post_status(&T, body, hdr, "\"accepted\":1"), 200, "a repeat of the accepted one");
    free(hdr);
}

/* n8n sends a signed request again when its answer was lost: the repeat
 * gets the original answer (partial results included), stores nothing
 * again, and publishes nothing. The signature does not carry over to
 * another body, route or token. */
Test(ingest, a_repeat_of_a_committed_signed_request_gets_the_original_answer) {
    char secret[80];
    signing_token("signed-org", secret);
    const char *body =
        "[{\"external_id\":\"RP-1\",\"stage\":\"discovery\",\"created_at\":\"2026-03-01T09:00:00Z\"},"
        "{\"external_id\":\"RP-2\",\"created_at\":\"2026-03-01T09:00:00Z\"}]";
    char *hdr = signed_headers(secret, body);
    httpc_resp_t first = dst_post(&T, "/v1/opportunities?partial=true", body, NULL, hdr);
    cr_assert_eq(first.status, 200, "%s", first.body);
    cr_expect(strstr(first.body, "\"problem\":\"stage is required\""), "%s", first.body);
    cr_expect_eq(dst_wait_count(&T, "select count(*) from dealscore_internal.outbox", 0, 10000), 0);
    for (int i = 0; i < 2; i++) {
        httpc_resp_t r = dst_post(&T, "/v1/opportunities?partial=true", body, NULL, hdr);
        cr_expect_eq(r.status, 200, "repeat %d: %s", i, r.body);
        cr_expect_str_eq(r.body, first.body, "repeat %d", i);
        char h[16] = "";
        cr_expect(httpc_header(&r, "x-dealscore-replayed", h, sizeof h) && strcmp(h, "true") == 0);
        httpc_free(&r);
    }
    httpc_free(&first);
    cr_expect_eq(dst_metric(&T, "dealscore_ingest_signed_repeats_total{result=\"answered\"}"), 2);
    cr_expect_eq(dst_count(&T, "select count(*) from opportunities"), 1);
    cr_expect_eq(dst_count(&T, "select count(*) from opportunity_history"), 1);
    cr_expect_eq(dst_count(&T, "select count(*) from dealscore_internal.outbox"), 0, "no event again");
    /* Another body under the same signature, the same body elsewhere. */
    const char *other =
        "[{\"external_id\":\"RP-3\",\"stage\":\"demo\",\"created_at\":\"2026-03-01T09:00:00Z\"}]";
    httpc_resp_t r = dst_post(&T, "/v1/opportunities?partial=true", other, NULL, hdr);
    cr_expect_eq(r.status, 401, "%s", r.body);
    cr_expect(strstr(r.body, "bad_signature"), "%s", r.body);
    httpc_free(&r);
    r = dst_post(&T, "/v1/opportunities", body, NULL, hdr);
    cr_expect_eq(r.status, 401, "%s", r.body);
    cr_expect(strstr(r.body, "\"replayed_signature\""), "%s", r.body);
    httpc_free(&r);
    cr_expect_eq(dst_metric(&T, "dealscore_ingest_signed_repeats_total{result=\"refused\"}"), 1);
    cr_expect_eq(dst_count(&T, "select count(*) from opportunities"), 1);
    free(hdr);
}

/* Year 0000 passed the date parser and Postgres refused it, its error text
 * in the 400. */
Test(ingest, year_zero_is_an_invalid_record) {
    httpc_resp_t r = dst_post(
        &T, "/v1/opportunities",
        "{\"external_id\":\"Y0\",\"stage\":\"demo\",\"created_at\":\"0000-01-01T00:00:00Z\"}", NULL, NULL);
    bad_case_t bc = {"year 0000",  "/v1/opportunities",
                     NULL,         400,
                     "created_at", "must be an ISO 8601 timestamp with a zone (e.g. 2026-01-31T12:00:00Z)"};
    expect_error(&bc, &r);
    httpc_free(&r);
}

/* One limit for the Authorization header, a clear 401 above it. */
Test(ingest, an_authorization_header_over_8_kib_is_refused) {
    char *auth = malloc(8300);
    memcpy(auth, "Bearer ", 7);
    memset(auth + 7, 'a', 8290);
    auth[8297] = '\0';
    httpc_resp_t r = dst_post(&T, "/v1/accounts", "{\"external_id\":\"A8\",\"name\":\"a\"}", auth, NULL);
    cr_expect_eq(r.status, 401, "%s", r.body);
    cr_expect(r.body && strstr(r.body, "longer than 8192 bytes"), "%s", r.body);
    httpc_free(&r);
    free(auth);
}

/* Exact paths and real query parameters. */
Test(ingest, webhook_paths_and_the_profile_parameter_are_exact) {
    const char *body = "{\"external_id\":\"Q1\",\"name\":\"Query\"}";
    const char *paths[] = {"/v1/%00accounts", "/v1/accounts%00", "/v1/%00", "/v1/accountsx"};
    for (size_t i = 0; i < PGT_N(paths); i++) {
        httpc_resp_t r = dst_post(&T, paths[i], body, NULL, NULL);
        cr_expect_eq(r.status, 404, "%s: %d %s", paths[i], r.status, r.body);
        httpc_free(&r);
    }
    const char *bad[] = {"/v1/accounts?profile=salesforce%00", "/v1/accounts?profile=salesforcex",
                         "/v1/accounts?profile=%zz", "/v1/accounts?profile=pipedrive"};
    for (size_t i = 0; i < PGT_N(bad); i++) {
        httpc_resp_t r = dst_post(&T, bad[i], body, NULL, NULL);
        cr_expect_eq(r.status, 400, "%s: %d %s", bad[i], r.status, r.body);
        json_t *j = body_json(&r);
        cr_expect_str_eq(json_string_value(json_object_get(j, "error")), "bad_profile", "%s", r.body);
        cr_expect_str_eq(json_string_value(json_object_get(j, "message")),
                         "profile must be native, salesforce or hubspot", "%s", r.body);
        cr_expect_str_eq(json_string_value(json_object_get(j, "field")), "profile", "%s", r.body);
        json_decref(j);
        httpc_free(&r);
    }
    /* xprofile is not profile: the native record is read as native. */
    expect_accept("/v1/accounts?xprofile=salesforce", body, 1, 0, 0);
    expect_accept("/v1/accounts?profile=native&x=1", "{\"external_id\":\"Q2\",\"name\":\"Query 2\"}", 1, 0,
                  0);
    cr_expect_eq(dst_count(&T, "select count(*) from accounts where name like 'Query%'"), 2);
    httpc_resp_t r = httpc_request(T.port, "POST", "/v1/accounts", "Content-Type: application/jsonp\r\n",
                                   body, strlen(body), 5000);
    cr_expect_eq(r.status, 415, "%s", r.body);
    httpc_free(&r);
}
