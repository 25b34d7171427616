/* Outbox relay: publishes unsent outbox rows as OpportunityChanged events
 * with the idempotent producer, in id order, and deletes them once Kafka
 * acknowledged them. One relay per database holds an advisory lock, so
 * several ingest replicas never publish the same rows at once. It wakes
 * when this process commits rows (an eventfd) or another writer's rows are
 * committed (LISTEN dealscore_outbox, notified by a trigger on the outbox),
 * and looks every DEALSCORE_RELAY_POLL_MS besides. */
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "base/log.h"
#include "dealscore/v1/events.pb-c.h"
#include "ingest.h"
#include "relay_cursor.h"

#define RELAY_LOCK_KEY "7315030190512280001"
#define RELAY_CHANNEL "dealscore_outbox"

typedef struct {
    long long id;
    int state; /* 0 pending, 1 delivered, -1 failed */
} relay_msg_t;

void ingest_relay_kick(ingest_t *in) {
    uint64_t one = 1;
    /* Fails only when the counter is saturated: the relay is woken anyway. */
    if (write(in->relay_kick_fd, &one, sizeof one) < 0) return;
}

/* Waits up to ms for a kick of this process or a notification on the
 * relay's connection (pg, when connected), and takes both. */
static void wait_kick(ingest_t *in, ds_pg_t *pg, int ms) {
    if (ds_service_stopping(in->svc)) return;
    int sock = ds_pg_is_connected(pg) ? ds_pg_socket(pg) : -1;
    /* Notifications read along with the last query's results wait in libpq. */
    if (sock >= 0 && ds_pg_notifies(pg, NULL, NULL) > 0) return;
    struct pollfd fds[2] = {{.fd = in->relay_kick_fd, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
    if (poll(fds, sock >= 0 ? 2 : 1, ms) <= 0) return;
    uint64_t count;
    if (fds[0].revents & POLLIN && read(in->relay_kick_fd, &count, sizeof count) < 0) return;
    if (sock >= 0 && fds[1].revents) ds_pg_notifies(pg, NULL, NULL);
}

static void on_delivery(void *opaque, void *msg_opaque, int err, const char *errmsg,
                        const rd_kafka_message_t *m) {
    (void)opaque;
    (void)m;
    relay_msg_t *rm = msg_opaque;
    if (!rm) return;
    rm->state = err == 0 ? 1 : -1;
    if (err) ds_warn("outbox event %lld not delivered: %s", rm->id, errmsg);
}

static Dealscore__V1__ChangeKind kind_of(const char *k) {
    if (!strcmp(k, "opportunity_upserted"))
        return DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_OPPORTUNITY_UPSERTED;
    if (!strcmp(k, "stage_changed")) return DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_STAGE_CHANGED;
    if (!strcmp(k, "outcome_set")) return DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_OUTCOME_SET;
    if (!strcmp(k, "interaction_added")) return DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_INTERACTION_ADDED;
    if (!strcmp(k, "transcript_added")) return DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_TRANSCRIPT_ADDED;
    if (!strcmp(k, "account_updated")) return DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_ACCOUNT_UPDATED;
    if (!strcmp(k, "rescore_requested")) return DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_RESCORE_REQUESTED;
    return DEALSCORE__V1__CHANGE_KIND__CHANGE_KIND_UNSPECIFIED;
}

/* Encodes outbox row i of res as an OpportunityChanged and enqueues it;
 * the delivery report sets msg->state. */
static int send_row(ingest_t *in, const char *topic, PGresult *res, int i, relay_msg_t *msg) {
    /* The event id is derived from the row, so an event published again
     * (its delete lost in a crash) keeps its id and consumers can tell; a
     * row of the previous version keeps the id it was given. */
    char event_id[37];
    const char *old_id = PQgetvalue(res, i, 10);
    if (ds_uuid_valid(old_id)) {
        snprintf(event_id, sizeof event_id, "%s", old_id);
    } else {
        char seed[96];
        snprintf(seed, sizeof seed, "opportunity.changed:%lld:%s", msg->id, PQgetvalue(res, i, 9));
        ds_uuid_derived(seed, event_id);
    }
    Dealscore__V1__OpportunityChanged ev = DEALSCORE__V1__OPPORTUNITY_CHANGED__INIT;
    ev.event_id = event_id;
    ev.org_id = PQgetvalue(res, i, 1);
    ev.opportunity_id = PQgetvalue(res, i, 2);
    ev.account_id = PQgetvalue(res, i, 3);
    ev.kind = kind_of(PQgetvalue(res, i, 4));
    ev.occurred_at_us = PQgetisnull(res, i, 5) ? 0 : atoll(PQgetvalue(res, i, 5));
    ev.source = PQgetvalue(res, i, 6);
    ev.source_hash = PQgetvalue(res, i, 7);
    const char *tp = PQgetvalue(res, i, 8);
    size_t len = dealscore__v1__opportunity_changed__get_packed_size(&ev);
    uint8_t *buf = ds_malloc(len ? len : 1);
    dealscore__v1__opportunity_changed__pack(&ev, buf);
    ds_event_meta_t meta = {.id = event_id,
                            .source = "/dealscore/ingest",
                            .type = DS_CE_TYPE_OPPORTUNITY_CHANGED,
                            .time_us = ev.occurred_at_us,
                            .traceparent = tp[0] ? tp : NULL};
    int rc = ds_producer_send(in->svc->producer, topic, ev.opportunity_id, strlen(ev.opportunity_id), buf,
                              len, &meta, msg);
    free(buf);
    return rc;
}

/* Waits for every delivery report: the rows are removed only when Kafka
 * has them. The flush sends the round at once rather than after
 * linger.ms: the round is all enqueued, nothing more would join it. While
 * Kafka is down this waits (librdkafka keeps retrying until
 * message.timeout.ms); on shutdown it gives up after a bounded flush. */
static void await_deliveries(ingest_t *in, const relay_msg_t *msgs, int sent) {
    int64_t stop_deadline = 0;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < sent; i++) pending += msgs[i].state == 0;
        if (!pending) break;
        if (ds_service_stopping(in->svc)) {
            if (!stop_deadline) stop_deadline = ds_mono_us() + 2000000;
            if (ds_mono_us() > stop_deadline) break;
        }
        ds_producer_flush(in->svc->producer, 100);
    }
}

/* Deletes the delivered rows, in one statement: cheaper than marking them
 * (no new row version, no index entry), and the table holds only what
 * waits for Kafka. Returns the number deleted, or the error. */
static int delete_delivered(ingest_t *in, ds_pg_t *pg, const relay_msg_t *msgs, int sent, int64_t oldest_us) {
    char err[512];
    char **ids = ds_calloc((size_t)sent + 1, sizeof *ids);
    int ndel = 0;
    for (int i = 0; i < sent; i++)
        if (msgs[i].state == 1) ids[ndel++] = ds_asprintf("%lld", msgs[i].id);
    int result = ndel;
    if (ndel) {
        char *arr = ds_pg_array_text((const char *const *)ids, (size_t)ndel);
        const char *pv[] = {arr};
        int rc = ds_pg_exec_params(pg, "delete from dealscore_internal.outbox where id = any($1::bigint[])",
                                   1, pv, NULL, NULL, NULL, err, sizeof err);
        free(arr);
        if (rc != 0) {
            /* Published but not removed: they will be published again (at-least-once). */
            ds_warn("relay could not remove published events: %s", err);
            result = rc;
        } else {
            atomic_fetch_sub(&in->outbox_depth, ndel);
            ds_metric_add(ds_metrics_counter(in->svc->metrics, "relay_published_total",
                                             "Outbox events published to Kafka", NULL),
                          ndel);
            ds_metric_set(ds_metrics_gauge(in->svc->metrics, "outbox_oldest_age_seconds",
                                           "Age of the oldest unsent outbox row when last read", NULL),
                          (double)(ds_now_us() - oldest_us) / 1e6);
        }
    }
    for (int i = 0; i < ndel; i++) free(ids[i]);
    free(ids);
    return result;
}

/* Moves the cursor over the n rows of a read above its floor, whose
 * snapshot had xmax. */
static void advance_cursor(relay_cursor_t *cur, const relay_msg_t *msgs, int n, long long xmax) {
    long long *ids = ds_calloc((size_t)n, sizeof *ids);
    bool *published = ds_calloc((size_t)n, sizeof *published);
    for (int i = 0; i < n; i++) {
        ids[i] = msgs[i].id;
        published[i] = msgs[i].state == 1;
    }
    relay_cursor_advance(cur, ids, published, n, ds_mono_us(), xmax);
    free(ids);
    free(published);
}

/* Publishes one batch of the unsent rows with ids in [lo, hi], and moves
 * cur (when not NULL) over them; *drained (when not NULL) says whether it
 * read fewer rows than a batch and published them all. Returns the number
 * published, 0 when there was nothing to do, or a negative DS_E code. */
static int relay_range(ingest_t *in, ds_pg_t *pg, const char *topic, long long lo, long long hi,
                       relay_cursor_t *cur, bool *drained) {
    char err[512];
    PGresult *res = NULL;
    char lim[16], los[24], his[24];
    snprintf(lim, sizeof lim, "%d", in->relay_batch);
    snprintf(los, sizeof los, "%lld", lo);
    snprintf(his, sizeof his, "%lld", hi);
    const char *v[] = {lim, los, his};
    int rc = ds_pg_exec_params(pg,
                               /* Rows of the previous version (written by its ingest
                                * pods during a rolling upgrade) carry their event in
                                * headers, and those its relay published are marked
                                * sent_at: deleted here, not published again. */
                               "select id, org_id, coalesce(opportunity_id::text, ''),"
                               " coalesce(account_id::text, ''), kind,"
                               " (extract(epoch from coalesce(occurred_at,"
                               "  (headers ->> 'occurred_at')::timestamptz)) * 1000000)::int8,"
                               " coalesce(source, headers ->> 'source', ''),"
                               " coalesce(source_hash, headers ->> 'source_hash', ''),"
                               " coalesce(traceparent, headers ->> 'traceparent', ''),"
                               " (extract(epoch from created_at) * 1000000)::int8,"
                               " coalesce(headers ->> 'event_id', ''), sent_at is not null,"
                               " pg_snapshot_xmax(pg_current_snapshot())::text::int8"
                               " from dealscore_internal.outbox where id between $2::int8 and $3::int8"
                               " order by id limit $1::int",
                               3, v, NULL, NULL, &res, err, sizeof err);
    if (rc != 0) {
        ds_warn("relay could not read the outbox: %s", err);
        return rc;
    }
    int n = PQntuples(res);
    if (drained) *drained = n == 0;
    if (n == 0) {
        PQclear(res);
        return 0;
    }
    relay_msg_t *msgs = ds_calloc((size_t)n, sizeof *msgs);
    int sent = 0;
    int64_t oldest_us = atoll(PQgetvalue(res, 0, 9));
    long long xmax = atoll(PQgetvalue(res, 0, 12));
    for (int i = 0; i < n; i++) {
        msgs[i].id = atoll(PQgetvalue(res, i, 0));
        if (PQgetvalue(res, i, 11)[0] == 't') {
            msgs[i].state = 1; /* published by the previous version's relay: only delete it */
            sent++;
            continue;
        }
        rc = send_row(in, topic, res, i, &msgs[i]);
        if (rc != 0) {
            msgs[i].state = -1;
            ds_warn("relay could not enqueue outbox event %lld: %s", msgs[i].id, ds_strerror(rc));
            break; /* keep order: the rest waits for the next round */
        }
        sent++;
    }
    PQclear(res);
    await_deliveries(in, msgs, sent);
    int result = delete_delivered(in, pg, msgs, sent, oldest_us);
    if (result >= 0 && cur) advance_cursor(cur, msgs, n, xmax);
    if (drained) *drained = n < in->relay_batch && result == n;
    free(msgs);
    return result;
}

/* The oldest transaction still running (a snapshot's xmin) in *xmin. */
static int snapshot_xmin(ds_pg_t *pg, long long *xmin) {
    char err[512];
    PGresult *res = NULL;
    int rc =
        ds_pg_exec(pg, "select pg_snapshot_xmin(pg_current_snapshot())::text::int8", &res, err, sizeof err);
    if (rc != 0) {
        ds_warn("relay could not read the snapshot xmin: %s", err);
        return rc;
    }
    *xmin = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return DS_OK;
}

/* Publishes one batch of the rows below the cursor's floor, and ends
 * these reads when no row can appear there any more (relay_cursor.h).
 * The xmin is read first, so the read sees every row committed by the
 * transactions that had ended by then. */
static int relay_below(ingest_t *in, ds_pg_t *pg, const char *topic, relay_cursor_t *cur) {
    long long xmin = 0;
    int rc = snapshot_xmin(pg, &xmin);
    if (rc != 0) return rc;
    bool drained = false;
    int below = relay_range(in, pg, topic, LLONG_MIN, cur->floor, NULL, &drained);
    if (below < 0) return below;
    ds_metric_add(ds_metrics_counter(in->svc->metrics, "relay_rescans_total",
                                     "Outbox reads below the floor, for rows committed in a gap passed over",
                                     NULL),
                  1);
    relay_cursor_rescanned(cur, xmin, drained);
    return below;
}

/* Publishes one batch of unsent rows above the cursor's floor, and those
 * below it when a rescan is due. Returns the number published, 0 when
 * there was nothing to do, or a negative DS_E code. */
static int relay_once(ingest_t *in, ds_pg_t *pg, const char *topic, relay_cursor_t *cur) {
    int below = 0;
    if (relay_cursor_rescan_due(cur, ds_mono_us())) {
        below = relay_below(in, pg, topic, cur);
        if (below < 0) return below;
    }
    int above = relay_range(in, pg, topic, cur->floor + 1, LLONG_MAX, cur, NULL);
    ds_metric_set(ds_metrics_gauge(in->svc->metrics, "relay_rescanning",
                                   "1 while rows may still commit below the relay's floor, else 0", NULL),
                  cur->passed_gap ? 1 : 0);
    return above < 0 ? above : below + above;
}

static void refresh_depth(ingest_t *in, ds_pg_t *pg) {
    PGresult *res = NULL;
    char err[256];
    if (ds_pg_exec(pg, "select count(*) from dealscore_internal.outbox", &res, err, sizeof err) == 0) {
        atomic_store(&in->outbox_depth, atol(PQgetvalue(res, 0, 0)));
        PQclear(res);
    }
}

void *ingest_relay_main(void *arg) {
    ingest_t *in = arg;
    ds_pg_t *pg = NULL;
    char err[512];
    if (ds_pg_new(&pg, in->cfg->database_url, "dealscore-ingest-relay", err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    /* Registered now, LISTENed at every (re)connection. */
    ds_pg_listen(pg, RELAY_CHANNEL, err, sizeof err);
    ds_producer_set_delivery_cb(in->svc->producer, on_delivery, in);
    char *topic = ds_config_topic(in->cfg, DS_TOPIC_OPPORTUNITY_CHANGED);
    bool locked = false;
    relay_cursor_t cur = {0};
    int64_t last_depth = 0;
    uint64_t seed = (uint64_t)ds_now_us();
    int attempt = 0;
    while (!ds_service_stopping(in->svc) || locked) {
        if (!ds_pg_is_connected(pg)) locked = false;
        if (ds_pg_ensure(pg, 0, NULL, err, sizeof err) != 0) {
            if (ds_service_stopping(in->svc)) break;
            wait_kick(in, NULL, ds_pg_backoff_ms(attempt++ < 6 ? attempt : 6, &seed));
            continue;
        }
        attempt = 0;
        if (!locked) {
            PGresult *res = NULL;
            /* Removing sent rows need not wait for its WAL flush: a delete
             * lost in a crash only publishes those rows again, which
             * at-least-once delivery allows (DESIGN.md, "Delivery"); the
             * webhooks' commits then do not queue behind the relay's.
             * The relay reads and deletes rows by id, through the key:
             * the outbox's statistics, taken when a vacuum left it empty,
             * made Postgres scan the whole table, the dead rows of every
             * event published since included (141 pages a read and 558 a
             * delete at 1,500 changes/s). Generic plans: a read or delete
             * through the key needs no plan of its own for each set of ids,
             * and Postgres, left to choose, planned the delete afresh on
             * up to every call (100 us each at one change per request). */
            if (ds_pg_exec(pg,
                           "set synchronous_commit = off; set enable_seqscan = off;"
                           " set plan_cache_mode = force_generic_plan;"
                           " select pg_try_advisory_lock(" RELAY_LOCK_KEY ")",
                           &res, err, sizeof err) == 0) {
                locked = PQgetvalue(res, 0, 0)[0] == 't';
                PQclear(res);
            }
            if (!locked) {
                if (ds_service_stopping(in->svc)) break;
                wait_kick(in, pg, 1000); /* another replica relays */
                continue;
            }
            /* Another replica may have relayed meanwhile: start from the
             * beginning. */
            cur = (relay_cursor_t){0};
            refresh_depth(in, pg);
        }
        if (ds_mono_us() - last_depth > 10 * 1000000LL) {
            refresh_depth(in, pg);
            last_depth = ds_mono_us();
        }
        int n = relay_once(in, pg, topic, &cur);
        ds_metric_set(
            ds_metrics_gauge(in->svc->metrics, "outbox_depth", "Outbox rows not yet published", NULL),
            (double)atomic_load(&in->outbox_depth));
        if (n == DS_ERETRY) {
            ds_pg_reset(pg);
            locked = false;
        }
        if (ds_service_stopping(in->svc)) {
            /* Publish what committed before the stop, then leave. */
            if (n <= 0) break;
            continue;
        }
        if (n < in->relay_batch) wait_kick(in, pg, in->cfg->relay_poll_ms);
    }
    ds_producer_flush(in->svc->producer, 2000);
    free(topic);
    ds_pg_destroy(pg);
    return NULL;
}
