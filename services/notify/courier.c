/* The delivery threads (courier.h). */
#include "courier.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "base/log.h"
#include "infra/httpc.h"
#include "infra/pg.h"
#include "notify.h"

/* Takes the oldest due delivery and leases it: the row is due again only
 * after $1 seconds, the request's timeout and a margin for recording the
 * outcome, so a delivery whose process died is tried again. */
static const char *sql_claim =
    "with due as (select id from dealscore_internal.notify_deliveries"
    "  where status = 'pending' and next_attempt_at <= now()"
    "  order by next_attempt_at limit 1 for update skip locked)"
    " update dealscore_internal.notify_deliveries d"
    " set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $1::float8)"
    " from due, dealscore_internal.notify_subscriptions s"
    " where d.id = due.id and s.id = d.subscription_id"
    " returning d.id::text, d.attempts, d.event::text, s.url, s.secret, s.active, s.id::text,"
    "  (extract(epoch from d.created_at) * 1000000)::bigint";

static const char *sql_outcome =
    "update dealscore_internal.notify_deliveries set status = $2::text, last_status = $3::int,"
    " last_error = $4::text, next_attempt_at = case when $2::text = 'pending'"
    "  then now() + make_interval(secs => $5::float8) else next_attempt_at end,"
    " delivered_at = case when $2::text = 'delivered' then now() end"
    " where id = $1::uuid";

/* A try that never reached the receiver's answer because the service
 * stops: not counted, due again at once. */
static const char *sql_release =
    "update dealscore_internal.notify_deliveries set attempts = greatest(attempts - 1, 0),"
    " next_attempt_at = now() where id = $1::uuid and status = 'pending'";

static const char *sql_deactivate =
    "with s as (update dealscore_internal.notify_subscriptions set active = false where id = $1::uuid)"
    " update dealscore_internal.notify_deliveries set status = 'failed', last_error = $2::text"
    " where subscription_id = $1::uuid and status = 'pending'";

static const char *sql_gauges =
    "select count(*), count(*) filter (where attempts > 0) from dealscore_internal.notify_deliveries"
    " where status = 'pending'";

static const char *sql_prune = "delete from dealscore_internal.notify_deliveries where id in (select id from"
                               " dealscore_internal.notify_deliveries where status = 'delivered'"
                               " and delivered_at < now() - make_interval(days => $1::int) limit 10000)";

#define GAUGE_EVERY_US 1000000
#define PRUNE_EVERY_US 600000000LL
/* Time allowed to record a try's outcome after its request's timeout. */
#define LEASE_MARGIN_MS 2000

static const char *const outcome_classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "error"};
#define N_CLASSES (sizeof outcome_classes / sizeof outcome_classes[0])

typedef struct {
    courier_pool_t *pool;
    int index;
    pthread_t th;
    ds_pg_t *pg;
    ds_httpc_t *http;
    uint64_t seed;
    uint64_t seen_wakes;
} courier_t;

struct courier_pool_s {
    ds_service_t *svc;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t wakes;
    bool stop;
    courier_t *couriers;
    int n;
    int64_t next_gauges_us, next_prune_us; /* courier 0's housekeeping */
    ds_metric_t *m_attempts[N_CLASSES];
    ds_metric_t *m_delivered, *m_failed, *m_pending, *m_retry_queue, *m_request_s, *m_delay_s;
};

/* One claimed delivery; the strings point into its PGresult. */
typedef struct {
    PGresult *res;
    const char *id, *event, *url, *secret, *sub_id;
    size_t event_len;
    int attempts;
    bool active;
    int64_t created_us;
} delivery_t;

static void register_metrics(courier_pool_t *p) {
    ds_metrics_t *m = p->svc->metrics;
    for (size_t i = 0; i < N_CLASSES; i++) {
        char lab[32];
        snprintf(lab, sizeof lab, "class=\"%s\"", outcome_classes[i]);
        p->m_attempts[i] =
            ds_metrics_counter(m, "notify_attempts_total",
                               "Delivery tries by outcome: HTTP status class, timeout or error", lab);
    }
    p->m_delivered = ds_metrics_counter(m, "notify_delivered_total", "Events delivered (a 2xx answer)", NULL);
    p->m_failed = ds_metrics_counter(
        m, "notify_failed_total", "Deliveries given up: tries exhausted, subscription removed or gone", NULL);
    p->m_pending =
        ds_metrics_gauge(m, "notify_pending", "Deliveries waiting to be sent, new or retried", NULL);
    p->m_retry_queue =
        ds_metrics_gauge(m, "notify_retry_queue", "Pending deliveries that failed at least once", NULL);
    p->m_request_s = ds_metrics_histogram(m, "notify_request_seconds", "Time of one POST to a receiver", NULL,
                                          ds_metrics_latency_buckets, ds_metrics_latency_nbuckets);
    static const double delay_buckets[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600, 21600};
    p->m_delay_s = ds_metrics_histogram(m, "notify_delivery_delay_seconds",
                                        "From an event's creation to its delivery, retries included", NULL,
                                        delay_buckets, DS_ARRAY_SIZE(delay_buckets));
}

static void count_attempt(courier_pool_t *p, const char *cls) {
    for (size_t i = 0; i < N_CLASSES; i++)
        if (strcmp(outcome_classes[i], cls) == 0) ds_metric_add(p->m_attempts[i], 1);
}

static bool stopping(const courier_pool_t *p) {
    return ds_service_stopping(p->svc) || __atomic_load_n(&p->stop, __ATOMIC_ACQUIRE);
}

/* Waits up to ms for courier_pool_wake, unless one came since c last
 * looked (c->seen_wakes). */
static void wait_for_work(courier_t *c, int ms) {
    courier_pool_t *p = c->pool;
    pthread_mutex_lock(&p->mu);
    if (p->wakes == c->seen_wakes && !p->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cond, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
}

static void note_wakes(courier_t *c) {
    pthread_mutex_lock(&c->pool->mu);
    c->seen_wakes = c->pool->wakes;
    pthread_mutex_unlock(&c->pool->mu);
}

/* Returns 1 with *d filled, 0 when nothing is due, or a pg class. */
static int claim(courier_t *c, delivery_t *d, char *err, size_t errsz) {
    const ds_config_t *cfg = c->pool->svc->cfg;
    char lease[32];
    snprintf(lease, sizeof lease, "%.3f", (cfg->notify_timeout_ms + LEASE_MARGIN_MS) / 1000.0);
    const char *v[] = {lease};
    memset(d, 0, sizeof *d);
    int rc = ds_pg_exec_params(c->pg, sql_claim, 1, v, NULL, NULL, &d->res, err, errsz);
    if (rc != 0) return rc;
    if (PQntuples(d->res) == 0) {
        PQclear(d->res);
        d->res = NULL;
        return 0;
    }
    d->id = PQgetvalue(d->res, 0, 0);
    d->attempts = atoi(PQgetvalue(d->res, 0, 1));
    d->event = PQgetvalue(d->res, 0, 2);
    d->event_len = (size_t)PQgetlength(d->res, 0, 2);
    d->url = PQgetvalue(d->res, 0, 3);
    d->secret = PQgetvalue(d->res, 0, 4);
    d->active = PQgetvalue(d->res, 0, 5)[0] == 't';
    d->sub_id = PQgetvalue(d->res, 0, 6);
    d->created_us = strtoll(PQgetvalue(d->res, 0, 7), NULL, 10);
    return 1;
}

static int record(courier_t *c, const delivery_t *d, const char *status, int http_status, const char *error,
                  double wait_s) {
    char st[16], wait[32], err[512];
    snprintf(st, sizeof st, "%d", http_status);
    snprintf(wait, sizeof wait, "%.3f", wait_s);
    const char *v[] = {d->id, status, http_status > 0 ? st : NULL, error, wait};
    int rc = ds_pg_exec_params(c->pg, sql_outcome, 5, v, NULL, NULL, NULL, err, sizeof err);
    if (rc != 0)
        ds_warn("could not record the outcome of delivery %s (it will be tried again): %s", d->id, err);
    return rc;
}

static void deactivate(courier_t *c, const delivery_t *d, const char *why) {
    const char *v[] = {d->sub_id, why};
    char err[512];
    if (ds_pg_exec_params(c->pg, sql_deactivate, 2, v, NULL, NULL, NULL, err, sizeof err) != 0)
        ds_warn("could not deactivate subscription %s: %s", d->sub_id, err);
    else
        ds_warn("subscription %s deactivated: %s", d->sub_id, why);
}

/* POSTs d signed; returns the ds_httpc_request code, with resp filled. */
static int post(courier_t *c, const delivery_t *d, ds_httpc_resp_t *resp, char *err, size_t errsz) {
    char ts[24], sig[65];
    snprintf(ts, sizeof ts, "%lld", (long long)(ds_now_us() / 1000000));
    ds_signature_hex(d->secret, ts, d->event, d->event_len, sig);
    char h_ts[64], h_sig[96];
    snprintf(h_ts, sizeof h_ts, "X-Dealscore-Timestamp: %s", ts);
    snprintf(h_sig, sizeof h_sig, "X-Dealscore-Signature: sha256=%s", sig);
    const char *headers[] = {"Content-Type: application/cloudevents+json", h_ts, h_sig, NULL};
    ds_httpc_req_t req = {
        .method = "POST", .url = d->url, .headers = headers, .body = d->event, .body_len = d->event_len};
    return ds_httpc_request(c->http, &req, resp, err, errsz);
}

/* Records a try that got no 2xx: the next try after a backoff, or failed
 * once the tries are used up (or at once when the receiver is gone). */
static void record_failure(courier_t *c, const delivery_t *d, int status, const char *why) {
    courier_pool_t *p = c->pool;
    const ds_config_t *cfg = p->svc->cfg;
    if (status == 410) {
        record(c, d, "failed", status, why, 0);
        deactivate(c, d, "the receiver answered 410 Gone");
        ds_metric_add(p->m_failed, 1);
    } else if (d->attempts >= cfg->notify_max_attempts) {
        ds_warn("delivery %s to %s failed after %d tries: %s", d->id, d->url, d->attempts, why);
        if (record(c, d, "failed", status, why, 0) == 0) ds_metric_add(p->m_failed, 1);
    } else {
        int64_t ms =
            notify_backoff_ms(d->attempts, cfg->notify_retry_base_ms, cfg->notify_retry_max_ms, &c->seed);
        ds_info("delivery %s to %s: try %d failed (%s), next in %lld ms", d->id, d->url, d->attempts, why,
                (long long)ms);
        record(c, d, "pending", status, why, (double)ms / 1000.0);
    }
}

/* Records what the receiver made of a try (rc and resp from post). */
static void record_answer(courier_t *c, const delivery_t *d, int rc, const ds_httpc_resp_t *resp,
                          const char *err) {
    courier_pool_t *p = c->pool;
    count_attempt(p, notify_outcome_class(rc, resp->status));
    if (rc == 0 && resp->status >= 200 && resp->status < 300) {
        if (record(c, d, "delivered", resp->status, NULL, 0) == 0) {
            ds_metric_add(p->m_delivered, 1);
            ds_metric_observe(p->m_delay_s, (double)(ds_now_us() - d->created_us) / 1e6);
        }
        return;
    }
    char why[512];
    if (rc != 0)
        snprintf(why, sizeof why, "%s", err);
    else
        snprintf(why, sizeof why, "HTTP %d: %.200s", resp->status, resp->body.p ? resp->body.p : "");
    /* The receiver's text goes into a text column: printable ASCII only. */
    for (char *q = why; *q; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e) *q = ' ';
    record_failure(c, d, rc == 0 ? resp->status : 0, why);
}

/* Sends one due delivery. Returns 1 when one was handled, 0 when none is
 * due, or a pg class. */
static int deliver_one(courier_t *c) {
    courier_pool_t *p = c->pool;
    delivery_t d;
    char err[512];
    int rc = claim(c, &d, err, sizeof err);
    if (rc <= 0) {
        if (rc < 0) ds_warn("could not read due deliveries: %s", err);
        return rc;
    }
    if (!d.active) {
        if (record(c, &d, "failed", 0, "subscription removed", 0) == 0) ds_metric_add(p->m_failed, 1);
        PQclear(d.res);
        return 1;
    }
    ds_httpc_resp_t resp = {0};
    int64_t t0 = ds_mono_us();
    rc = post(c, &d, &resp, err, sizeof err);
    if (rc == DS_ESHUTDOWN) {
        const char *v[] = {d.id};
        ds_pg_exec_params(c->pg, sql_release, 1, v, NULL, NULL, NULL, err, sizeof err);
    } else {
        ds_metric_observe(p->m_request_s, (double)(ds_mono_us() - t0) / 1e6);
        record_answer(c, &d, rc, &resp, err);
    }
    ds_httpc_resp_clear(&resp);
    PQclear(d.res);
    return 1;
}

/* Courier 0 refreshes the queue gauges and prunes old delivered rows. */
static void housekeeping(courier_t *c) {
    courier_pool_t *p = c->pool;
    int64_t now = ds_mono_us();
    char err[512];
    if (now >= p->next_gauges_us) {
        p->next_gauges_us = now + GAUGE_EVERY_US;
        PGresult *res = NULL;
        if (ds_pg_exec(c->pg, sql_gauges, &res, err, sizeof err) == 0) {
            ds_metric_set(p->m_pending, strtod(PQgetvalue(res, 0, 0), NULL));
            ds_metric_set(p->m_retry_queue, strtod(PQgetvalue(res, 0, 1), NULL));
        }
        PQclear(res);
    }
    if (now >= p->next_prune_us) {
        p->next_prune_us = now + PRUNE_EVERY_US;
        char days[16];
        snprintf(days, sizeof days, "%d", p->svc->cfg->notify_retain_days);
        const char *v[] = {days};
        if (ds_pg_exec_params(c->pg, sql_prune, 1, v, NULL, NULL, NULL, err, sizeof err) != 0)
            ds_warn("could not delete old deliveries: %s", err);
    }
}

static void *courier_main(void *arg) {
    courier_t *c = arg;
    courier_pool_t *p = c->pool;
    const ds_config_t *cfg = p->svc->cfg;
    char err[512];
    while (!stopping(p)) {
        note_wakes(c);
        if (ds_pg_ensure(c->pg, 2000, NULL, err, sizeof err) != 0) {
            wait_for_work(c, cfg->notify_poll_ms);
            continue;
        }
        if (c->index == 0) housekeeping(c);
        int r = deliver_one(c);
        if (r < 0 && !ds_pg_is_connected(c->pg)) ds_pg_reset(c->pg);
        if (r <= 0) wait_for_work(c, cfg->notify_poll_ms);
    }
    return NULL;
}

static void courier_init(courier_t *c, courier_pool_t *p, int index) {
    const ds_config_t *cfg = p->svc->cfg;
    char err[256];
    c->pool = p;
    c->index = index;
    c->seed = (uint64_t)ds_now_us() ^ ((uint64_t)index << 32) ^ 0x5deece66dull;
    char app[64];
    snprintf(app, sizeof app, "dealscore-notify-courier-%d", index);
    if (ds_pg_new(&c->pg, cfg->database_url, app, err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    int connect_ms = cfg->notify_timeout_ms < 10000 ? cfg->notify_timeout_ms : 10000;
    ds_httpc_opts_t o = {.connect_timeout_ms = connect_ms,
                         .timeout_ms = cfg->notify_timeout_ms,
                         .user_agent = "dealscore-notify"};
    if (ds_httpc_new(&c->http, &o, err, sizeof err) != 0)
        ds_panic("could not set up the HTTP client: %s", err);
}

courier_pool_t *courier_pool_start(ds_service_t *svc) {
    courier_pool_t *p = ds_calloc(1, sizeof *p);
    p->svc = svc;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    register_metrics(p);
    p->n = svc->cfg->notify_concurrency;
    p->couriers = ds_calloc((size_t)p->n, sizeof *p->couriers);
    for (int i = 0; i < p->n; i++) {
        courier_init(&p->couriers[i], p, i);
        if (pthread_create(&p->couriers[i].th, NULL, courier_main, &p->couriers[i]) != 0)
            ds_panic("could not start a delivery thread");
    }
    return p;
}

void courier_pool_wake(courier_pool_t *p) {
    pthread_mutex_lock(&p->mu);
    p->wakes++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

void courier_pool_stop(courier_pool_t *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->stop, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) ds_httpc_cancel(p->couriers[i].http);
    for (int i = 0; i < p->n; i++) {
        pthread_join(p->couriers[i].th, NULL);
        ds_httpc_destroy(p->couriers[i].http);
        ds_pg_destroy(p->couriers[i].pg);
    }
    free(p->couriers);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
