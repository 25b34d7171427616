/* The idempotent producer with CloudEvents headers (DESIGN.md, "Events"). */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "infra/kafka.h"
#include "base/log.h"
#include "kafka_internal.h"

#define DEFAULT_FULL_TIMEOUT_MS 5000
#define DEFAULT_SHUTDOWN_TIMEOUT_MS 10000
/* How long to poll between attempts while the local queue is full. */
#define FULL_POLL_MS 50
/* The send rate a flush reads is measured over at least this long. */
#define RATE_WINDOW_US 200000

struct ds_producer_s {
    rd_kafka_t *rk;
    ds_delivery_cb_t cb;
    void *cb_opaque;
    int full_timeout_ms;
    int shutdown_timeout_ms;
    char *source; /* default ce_source */
    int flush_linger_ms;
    atomic_llong sent; /* messages enqueued, by any thread */
    /* The send rate, sampled by the flushes (of any thread). */
    pthread_mutex_t rate_mu;
    long long rate_sent;
    int64_t rate_at_us; /* 0: no sample yet */
    double sends_per_s; /* < 0 unknown */
    /* The sender (ds_producer_send_soon): a thread that flushes on request,
     * started by the first request; send_mu guards what follows it. */
    pthread_t sender;
    pthread_mutex_t send_mu;
    pthread_cond_t send_cv;
    bool sender_started, send_requested;
    atomic_bool sender_stopping;
};

/* Runs inside rd_kafka_poll/flush, on the caller's thread, once per message. */
static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    ds_producer_t *p = opaque;
    (void)rk;
    int err = ds__kafka_errcode(m->err);
    /* Not rd_kafka_message_errstr(): for a delivery report it returns the
     * message payload, which is not a string. */
    const char *errmsg = m->err ? rd_kafka_err2str(m->err) : "";
    if (p->cb) {
        p->cb(p->cb_opaque, m->_private, err, errmsg, m);
    } else if (m->err) {
        ds_warn("kafka delivery to %s failed: %s", rd_kafka_topic_name(m->rkt), errmsg);
    }
}

int ds_producer_new(ds_producer_t **out, const ds_config_t *cfg, char *errstr, size_t errstr_size) {
    static const char *const defaults[] = {
        /* Under a burst, 20 ms lets each produce request carry many
         * events (the relay's rounds and the workers' batches grow too):
         * in bench-ingest with every worker running, the broker uses ~28 %
         * less CPU and batched webhooks go ~30 % faster than at 2 ms. The
         * price is ~85 ms of webhook-to-prediction latency at 50 changes/s
         * (bench-e2e p50 142 ms against 58 ms); KAFKA_LINGER_MS=2 buys it
         * back. */
        "linger.ms",
        "20",
        NULL,
    };
    /* At-least-once without duplicates from retries: not for KAFKA_* to undo. */
    static const char *const forced[] = {
        "enable.idempotence", "true", "acks", "all", NULL,
    };
    rd_kafka_conf_t *conf = NULL;
    ds_producer_t *p = ds_calloc(1, sizeof *p);
    char why[512];
    int rc;

    *out = NULL;
    p->full_timeout_ms = DEFAULT_FULL_TIMEOUT_MS;
    p->shutdown_timeout_ms =
        cfg->shutdown_timeout_ms > 0 ? cfg->shutdown_timeout_ms : DEFAULT_SHUTDOWN_TIMEOUT_MS;
    p->source = ds_asprintf("/dealscore/%s", cfg->service_name ? cfg->service_name : "client");
    p->flush_linger_ms = cfg->flush_linger_ms;
    p->sends_per_s = -1;
    pthread_mutex_init(&p->rate_mu, NULL);
    pthread_mutex_init(&p->send_mu, NULL);
    pthread_cond_init(&p->send_cv, NULL);

    if ((rc = ds__kafka_conf_new(&conf, cfg, defaults, forced, errstr, errstr_size)) != 0) goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, ds__kafka_error_cb);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!p->rk) {
        snprintf(errstr, errstr_size, "could not create kafka producer: %s", why);
        rc = DS_EIO;
        goto fail;
    }
    conf = NULL; /* now owned by p->rk */
    *out = p;
    return 0;

fail:
    if (conf) rd_kafka_conf_destroy(conf);
    pthread_mutex_destroy(&p->rate_mu);
    pthread_mutex_destroy(&p->send_mu);
    pthread_cond_destroy(&p->send_cv);
    free(p->source);
    free(p);
    return rc;
}

void ds_producer_set_delivery_cb(ds_producer_t *p, ds_delivery_cb_t cb, void *opaque) {
    p->cb = cb;
    p->cb_opaque = opaque;
}

void ds_producer_set_full_timeout(ds_producer_t *p, int timeout_ms) {
    p->full_timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
}

/* Enqueues one message; takes ownership of hdrs in every case. Polls and
 * retries while the queue is full. Returns 0 or a DS_E* code. */
static int produce(ds_producer_t *p, const char *topic, const void *key, size_t keylen, const void *payload,
                   size_t len, rd_kafka_headers_t *hdrs, void *msg_opaque) {
    int64_t deadline = ds_mono_us() + (int64_t)p->full_timeout_ms * 1000;
    rd_kafka_resp_err_t err;

    for (;;) {
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)payload, len),
                                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            atomic_fetch_add(&p->sent, 1);
            return 0; /* hdrs now owned by the message */
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
        /* Delivery reports free room in the queue; serve them and retry. */
        int64_t left = (deadline - ds_mono_us()) / 1000;
        if (left <= 0) break;
        rd_kafka_poll(p->rk, left < FULL_POLL_MS ? (int)left : FULL_POLL_MS);
    }
    rd_kafka_headers_destroy(hdrs); /* librdkafka leaves them to us on failure */
    ds_warn("could not produce to kafka topic %s: %s", topic, rd_kafka_err2str(err));
    return ds__kafka_errcode(err);
}

int ds_producer_send(ds_producer_t *p, const char *topic, const void *key, size_t keylen, const void *payload,
                     size_t len, const ds_event_meta_t *meta, void *msg_opaque) {
    char id[128], now[40], trace[DS_TRACEPARENT_SIZE];

    if (!meta || !meta->type || !meta->type[0] || !topic) return DS_EINVAL;
    if (meta->id && meta->id[0]) {
        if (strlen(meta->id) >= sizeof id) return DS_EINVAL;
        snprintf(id, sizeof id, "%s", meta->id);
    } else {
        ds_uuid4(id);
    }
    ds_format_time_us(meta->time_us ? meta->time_us : ds_now_us(), now, sizeof now);
    if (ds_event_traceparent_valid(meta->traceparent))
        memcpy(trace, meta->traceparent, DS_TRACEPARENT_SIZE);
    else
        ds_event_traceparent_new(trace);

    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(7);
    rd_kafka_header_add(hdrs, DS_HDR_CE_SPECVERSION, -1, "1.0", -1);
    rd_kafka_header_add(hdrs, DS_HDR_CE_ID, -1, id, -1);
    rd_kafka_header_add(hdrs, DS_HDR_CE_SOURCE, -1, meta->source ? meta->source : p->source, -1);
    rd_kafka_header_add(hdrs, DS_HDR_CE_TYPE, -1, meta->type, -1);
    rd_kafka_header_add(hdrs, DS_HDR_CE_TIME, -1, now, -1);
    rd_kafka_header_add(hdrs, DS_HDR_CONTENT_TYPE, -1,
                        meta->content_type ? meta->content_type : DS_CE_CONTENT_TYPE, -1);
    rd_kafka_header_add(hdrs, DS_HDR_TRACEPARENT, -1, trace, -1);
    return produce(p, topic, key, keylen, payload, len, hdrs, msg_opaque);
}

/* ---- dead letters ------------------------------------------------------- */

int ds_producer_send_dlq(ds_producer_t *p, const rd_kafka_message_t *m, const char *error) {
    rd_kafka_headers_t *orig = NULL, *hdrs;
    char num[32], now[40];
    const char *topic;

    if (!m || !m->rkt) return DS_EINVAL;
    topic = rd_kafka_topic_name(m->rkt);
    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR)
        hdrs = rd_kafka_headers_copy(orig);
    else
        hdrs = rd_kafka_headers_new(5);

    /* A message that fails again in a reprocessing of the DLQ keeps one set
     * of dlq_* headers, the newest. */
    static const char *const names[] = {DS_HDR_DLQ_ERROR, DS_HDR_DLQ_TOPIC, DS_HDR_DLQ_PARTITION,
                                        DS_HDR_DLQ_OFFSET, DS_HDR_DLQ_TIME};
    for (size_t i = 0; i < DS_ARRAY_SIZE(names); i++) rd_kafka_header_remove(hdrs, names[i]);
    rd_kafka_header_add(hdrs, DS_HDR_DLQ_ERROR, -1, error ? error : "", -1);
    rd_kafka_header_add(hdrs, DS_HDR_DLQ_TOPIC, -1, topic, -1);
    snprintf(num, sizeof num, "%" PRId32, m->partition);
    rd_kafka_header_add(hdrs, DS_HDR_DLQ_PARTITION, -1, num, -1);
    snprintf(num, sizeof num, "%" PRId64, m->offset);
    rd_kafka_header_add(hdrs, DS_HDR_DLQ_OFFSET, -1, num, -1);
    ds_format_time_us(ds_now_us(), now, sizeof now);
    rd_kafka_header_add(hdrs, DS_HDR_DLQ_TIME, -1, now, -1);

    char *dlq = ds_asprintf("%s%s", topic, DS_TOPIC_DLQ_SUFFIX);
    int rc = produce(p, dlq, m->key, m->key_len, m->payload, m->len, hdrs, NULL);
    hdrs = NULL; /* now owned by the message, or destroyed */
    if (rc == 0)
        ds_warn("kafka message %s [%" PRId32 "] at offset %" PRId64 " sent to %s: %s", topic, m->partition,
                m->offset, dlq, error ? error : "");
    free(dlq);
    return rc;
}

int ds_producer_poll(ds_producer_t *p, int timeout_ms) { return rd_kafka_poll(p->rk, timeout_ms); }

int ds_producer_flush_linger_ms(double sends_per_s, int linger_ms) {
    if (linger_ms <= 0 || sends_per_s <= 0) return 0;
    return sends_per_s * (double)linger_ms >= 1000.0 ? linger_ms : 0;
}

/* The messages enqueued per second between the last two samples at least
 * RATE_WINDOW_US apart (< 0 before there are two). A flush after a pause
 * samples the pause, so a burst's rate does not outlive it. */
static double sample_rate(ds_producer_t *p, int64_t now_us) {
    pthread_mutex_lock(&p->rate_mu);
    long long sent = atomic_load(&p->sent);
    int64_t dt = now_us - p->rate_at_us;
    if (!p->rate_at_us || dt >= RATE_WINDOW_US) {
        if (p->rate_at_us) p->sends_per_s = (double)(sent - p->rate_sent) * 1e6 / (double)dt;
        p->rate_sent = sent;
        p->rate_at_us = now_us;
    }
    double rate = p->sends_per_s;
    pthread_mutex_unlock(&p->rate_mu);
    return rate;
}

/* A batch flushed at once holds what its caller gathered since the last
 * one; while the events come fast, the linger lets the next batch gather
 * more, and the delivery reports that arrive meanwhile are served. */
int ds_producer_flush(ds_producer_t *p, int timeout_ms) {
    int64_t t0 = ds_mono_us();
    int linger = ds_producer_flush_linger_ms(sample_rate(p, t0), p->flush_linger_ms);
    if (linger > timeout_ms) linger = timeout_ms;
    int64_t until = t0 + (int64_t)linger * 1000;
    for (int64_t now = t0; now < until && rd_kafka_outq_len(p->rk) > 0; now = ds_mono_us())
        rd_kafka_poll(p->rk, (int)((until - now + 999) / 1000));
    int left = timeout_ms - (int)((ds_mono_us() - t0) / 1000);
    return rd_kafka_flush(p->rk, left > 0 ? left : 0) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : DS_ETIMEDOUT;
}

/* How long one flush of the sender waits at most: also how soon it sees
 * the producer being destroyed. */
#define SENDER_FLUSH_MS 100

/* Flushes whenever asked, until everything queued is delivered or failed
 * (retried every SENDER_FLUSH_MS while the broker is away), so what its
 * callers produced goes out without their waiting for it. */
static void *sender_main(void *arg) {
    ds_producer_t *p = arg;
    pthread_mutex_lock(&p->send_mu);
    for (;;) {
        while (!p->send_requested && !p->sender_stopping) pthread_cond_wait(&p->send_cv, &p->send_mu);
        if (p->sender_stopping) break;
        p->send_requested = false;
        pthread_mutex_unlock(&p->send_mu);
        while (ds_producer_flush(p, SENDER_FLUSH_MS) != 0 && !p->sender_stopping) continue;
        pthread_mutex_lock(&p->send_mu);
    }
    pthread_mutex_unlock(&p->send_mu);
    return NULL;
}

void ds_producer_send_soon(ds_producer_t *p) {
    pthread_mutex_lock(&p->send_mu);
    if (!p->sender_started && pthread_create(&p->sender, NULL, sender_main, p) == 0) p->sender_started = true;
    p->send_requested = true;
    pthread_cond_signal(&p->send_cv);
    pthread_mutex_unlock(&p->send_mu);
}

static void stop_sender(ds_producer_t *p) {
    pthread_mutex_lock(&p->send_mu);
    p->sender_stopping = true;
    pthread_cond_signal(&p->send_cv);
    bool started = p->sender_started;
    pthread_mutex_unlock(&p->send_mu);
    if (started) pthread_join(p->sender, NULL);
}

int ds_producer_fatal(ds_producer_t *p, char *errstr, size_t errstr_size) {
    char why[512];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(p->rk, why, sizeof why);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
    if (errstr && errstr_size)
        snprintf(errstr, errstr_size, "kafka producer failed: %s: %s", rd_kafka_err2name(err), why);
    return DS_EFATAL;
}

int ds_producer_pending(ds_producer_t *p) { return rd_kafka_outq_len(p->rk); }

rd_kafka_t *ds_producer_handle(ds_producer_t *p) { return p->rk; }

int ds_producer_drain(ds_producer_t *p, int timeout_ms) {
    if (rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
    int dropped = rd_kafka_outq_len(p->rk);
    ds_warn("kafka producer: %d messages not delivered in %d ms, dropping them", dropped, timeout_ms);
    /* Purged messages still get their delivery report (DS_ESHUTDOWN), so
     * every sent message sees its callback exactly once. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(p->rk, 1000);
    return dropped;
}

void ds_producer_destroy(ds_producer_t *p) {
    if (!p) return;
    stop_sender(p);
    ds_producer_drain(p, p->shutdown_timeout_ms);
    rd_kafka_destroy(p->rk);
    pthread_mutex_destroy(&p->rate_mu);
    pthread_mutex_destroy(&p->send_mu);
    pthread_cond_destroy(&p->send_cv);
    free(p->source);
    free(p);
}
