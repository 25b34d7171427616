/* The shared consumer loop of the Kafka workers. */
#include "runtime/worker.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "base/log.h"
#include "infra/pg.h"
#include "runtime/batch.h"
#include "runtime/burst.h"

/* The downstream messages of a batch: acked and failed are counted by the
 * delivery callbacks, on the producer's sender thread or the worker's. */
typedef struct {
    int sent;
    atomic_int acked;
    atomic_int failed;
} deliveries_t;

/* A batch and what became of it. The worker has two: while one batch's
 * downstream messages are being delivered (pending), the next is polled and
 * processed (cur); the pending batch's offsets are stored before cur's. */
typedef struct {
    rd_kafka_message_t **msgs;
    ds_batch_t batch; /* what msgs holds */
    ds_worker_item_t *items;
    deliveries_t dl;
    size_t n;      /* messages held for process */
    double busy_s; /* seconds spent processing it and waiting for it */
} slot_t;

struct ds_worker_s {
    ds_service_t *svc;
    const ds_worker_def_t *def;
    ds_consumer_t *consumer;
    char *topic_names[16];
    char *topic_bases[16];
    size_t ntopic_names;
    /* Committed offsets of assigned partitions, for those the worker has
     * consumed nothing from since their assignment (see update_lag). */
    rd_kafka_topic_partition_list_t *committed;
    int64_t committed_mono_us;
    /* ds_worker_run's loop */
    ds_metric_t *m_msgs, *m_dlq, *m_retry, *m_batch, *m_secs, *m_lag, *m_burst, *m_gathering, *m_age,
        *m_await;
    slot_t slots[2];
    slot_t *cur;     /* being polled and processed */
    slot_t *pending; /* processed, its downstream messages in flight; or NULL */
    ds_burst_rates_t rates;
    size_t max, cap; /* a batch, a burst */
    uint64_t seed;
    int64_t last_lag;
    char err[512];
};

ds_service_t *ds_worker_service(ds_worker_t *w) { return w->svc; }

unsigned ds_worker_rebalances(ds_worker_t *w) {
    return w->consumer ? ds_consumer_rebalances(w->consumer) : 0;
}

const char *ds_worker_topic(ds_worker_t *w, const char *base) {
    for (size_t i = 0; i < w->ntopic_names; i++)
        if (strcmp(w->topic_bases[i], base) == 0) return w->topic_names[i];
    ds_assert(w->ntopic_names < DS_ARRAY_SIZE(w->topic_names));
    w->topic_bases[w->ntopic_names] = ds_strdup(base);
    w->topic_names[w->ntopic_names] = ds_config_topic(w->svc->cfg, base);
    return w->topic_names[w->ntopic_names++];
}

static void on_delivery(void *opaque, void *msg_opaque, int err, const char *errmsg,
                        const rd_kafka_message_t *m) {
    (void)opaque;
    (void)m;
    deliveries_t *d = msg_opaque;
    if (!d) {
        /* Messages produced outside a batch (e.g. by an HTTP handler). */
        if (err) ds_warn("a message was not delivered: %s", errmsg);
        return;
    }
    if (err) {
        atomic_fetch_add(&d->failed, 1);
        ds_warn("downstream message not delivered: %s", errmsg);
    } else {
        atomic_fetch_add(&d->acked, 1);
    }
}

int ds_worker_produce(ds_worker_t *w, const char *topic, const void *key, size_t keylen, const void *payload,
                      size_t len, const ds_event_meta_t *meta) {
    deliveries_t *dl = &w->cur->dl;
    int rc = ds_producer_send(w->svc->producer, topic, key, keylen, payload, len, meta, dl);
    if (rc == 0) dl->sent++;
    return rc;
}

/* Has what was produced so far sent now, by the producer's sender thread,
 * its acknowledgements served as they come (ds_producer_send_soon). */
static void send_produced(ds_worker_t *w) {
    if (ds_producer_pending(w->svc->producer) > 0) ds_producer_send_soon(w->svc->producer);
}

static int undelivered(deliveries_t *dl) {
    return dl->sent - atomic_load(&dl->acked) - atomic_load(&dl->failed);
}

/* Waits until every downstream message of the batch is acknowledged or
 * failed. The producer's sender sent them when the batch was processed
 * (ds_producer_send_soon); the flush serves their callbacks meanwhile. */
static void await_deliveries(ds_worker_t *w, deliveries_t *dl) {
    int64_t stop_deadline = 0;
    while (undelivered(dl) > 0) {
        if (ds_service_stopping(w->svc)) {
            if (!stop_deadline)
                stop_deadline = ds_mono_us() + (int64_t)w->svc->cfg->shutdown_timeout_ms * 500;
            if (ds_mono_us() > stop_deadline) {
                ds_warn("stopping before %d downstream messages were acknowledged; their batch will be "
                        "redelivered",
                        undelivered(dl));
                atomic_fetch_add(&dl->failed, undelivered(dl));
                return;
            }
        }
        /* Not a flush: that would wait for the next batch's messages too. */
        ds_producer_poll(w->svc->producer, 1);
    }
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Backoff that notices a stop within 50 ms. */
static void backoff(ds_worker_t *w, int ms) {
    for (int slept = 0; slept < ms && !ds_service_stopping(w->svc); slept += 50) sleep_ms(50);
}

/* How often the committed offsets of idle partitions are asked for again:
 * soon for a partition not asked about yet, rarely for the others (another
 * consumer of the group may have moved them); and how long the worker's loop
 * waits for the answer at most. A failed query counts as asked. */
#define COMMITTED_MISSING_US 2000000
#define COMMITTED_REFRESH_US 10000000
#define COMMITTED_TIMEOUT_MS 200

/* Every message's age from publication until its batch was done. */
static void observe_ages(ds_metric_t *m_age, const ds_batch_t *b) {
    int64_t now_ms = ds_now_us() / 1000;
    for (size_t i = 0; i < b->taken; i++) {
        int64_t ts = b->stamps[i];
        if (ts < 0) continue;
        ds_metric_observe(m_age, ts < now_ms ? (double)(now_ms - ts) / 1000.0 : 0.0);
    }
}

/* Messages behind the end of the assigned partitions: the high watermark
 * minus the position, the offset after the last message consumed, or -1
 * when the assignment is unknown (the lag gauge adds the messages in hand,
 * consumed and about to be processed: a burst can take seconds). A
 * partition the worker has consumed nothing from since its assignment
 * (after a restart, on an idle topic) has no position: its committed offset
 * stands in, else (a new group) its low watermark. Counting from the low
 * watermark alone reported a restarted idle worker as behind by the whole
 * history. Feeds the arrival rate with the sum of the high watermarks. */
static int64_t measure_behind(ds_worker_t *w) {
    rd_kafka_t *rk = ds_consumer_handle(w->consumer);
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts) return -1;
    rd_kafka_position(rk, parts);
    rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_new(parts->cnt);
    bool missing = false;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (p->offset >= 0) continue;
        rd_kafka_topic_partition_list_add(q, p->topic, p->partition);
        if (!w->committed || !rd_kafka_topic_partition_list_find(w->committed, p->topic, p->partition))
            missing = true;
    }
    int64_t since = ds_mono_us() - w->committed_mono_us;
    if (q->cnt &&
        (!w->committed_mono_us || since > (missing ? COMMITTED_MISSING_US : COMMITTED_REFRESH_US))) {
        w->committed_mono_us = ds_mono_us();
        if (rd_kafka_committed(rk, q, COMMITTED_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (w->committed) rd_kafka_topic_partition_list_destroy(w->committed);
            w->committed = q;
            q = NULL;
        }
    }
    if (q) rd_kafka_topic_partition_list_destroy(q);
    int64_t total = 0, ends = 0;
    int known = 0;
    for (int i = 0; i < parts->cnt; i++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_get_watermark_offsets(rk, parts->elems[i].topic, parts->elems[i].partition, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0)
            continue;
        ends += hi;
        known++;
        int64_t pos = parts->elems[i].offset;
        if (pos < 0 && w->committed) {
            rd_kafka_topic_partition_t *c = rd_kafka_topic_partition_list_find(
                w->committed, parts->elems[i].topic, parts->elems[i].partition);
            if (c && c->err == RD_KAFKA_RESP_ERR_NO_ERROR) pos = c->offset;
        }
        if (pos < lo) pos = lo;
        if (hi > pos) total += hi - pos;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    ds_burst_rates_arrived(&w->rates, ds_mono_us(), ends, known);
    return total;
}

static void update_lag(ds_worker_t *w, ds_metric_t *lag, size_t in_hand) {
    int64_t behind = measure_behind(w);
    if (behind >= 0) ds_metric_set(lag, (double)(behind + (int64_t)in_hand));
}

/* Whether a backlog of behind + in_hand messages warrants a burst now
 * (runtime/burst.h). */
static bool burst_warranted(ds_worker_t *w, int64_t behind, size_t in_hand) {
    ds_burst_load_t load = {.backlog = behind + (int64_t)in_hand,
                            .batch = w->max,
                            .arrival_per_s = w->rates.arrival_per_s,
                            .service_per_s = ds_burst_service_rate(&w->rates),
                            .clear_ms = w->svc->cfg->burst_backlog_ms};
    return ds_burst_warranted(&load);
}

/* Takes msgs[0..n) (in w->msgs, at or after the batch's end) into the
 * batch, one message per deal in a burst, and releases the messages that
 * makes redundant. */
static void take(ds_worker_t *w, rd_kafka_message_t **msgs, size_t n, bool burst) {
    ds_batch_t *b = &w->cur->batch;
    const ds_worker_def_t *def = w->def;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        char key[DS_WORKER_KEY_SIZE];
        int64_t rank = 0;
        bool keyed = burst && def->coalesce && def->coalesce(def->ud, m, key, sizeof key, &rank) == 0;
        rd_kafka_message_t *spare = ds_batch_take(
            b, m, rd_kafka_topic_name(m->rkt), rd_kafka_message_timestamp(m, NULL), keyed ? key : NULL, rank);
        if (spare) rd_kafka_message_destroy(spare);
    }
}

/* A burst: a backlog more than the worker clears in a short time
 * (burst_warranted: a bulk import, a backlog after a restart), gathered
 * into one batch that holds one message per deal (take). It goes on
 * gathering, a batch at most per poll, until at the end of a window of
 * quiet_ms the rest of the backlog no longer warrants a burst (drained: what
 * comes now is the ordinary flow, which must not wait) or that window
 * brought fewer than trickle messages (the input paused or slowed to a
 * trickle), it holds cap messages or DEALSCORE_BURST_MAX_KB of them (a
 * backlog over more distinct deals than that becomes several bursts, each
 * of bounded memory), wait_ms have passed or the service stops
 * (checked every 100 ms at most, whatever the settings). Past wait_ms, a
 * flood (every window brings at least flood messages: the input outruns any
 * worker, as in a bulk import) keeps it gathering up to flood_ms in all; a
 * lesser flow ends it at the next window's end (at once, when the last
 * window that ended was no flood; a first window longer than wait_ms is
 * waited out, to judge it). One big batch computes each deal of the burst
 * once, and leaves the cores to the writers of the burst while it lasts.
 * gathering shows the messages gathered meanwhile, and the lag gauge counts
 * them with those taken before, once a second. Returns 0 or DS_EFATAL
 * (nothing held then). */
static int gather_burst(ds_worker_t *w, size_t trickle, size_t flood) {
    const ds_config_t *cfg = w->svc->cfg;
    int quiet_ms = cfg->burst_quiet_ms;
    int64_t t0 = ds_mono_us(), firm = t0 + (int64_t)cfg->burst_wait_ms * 1000, win_start = t0, lag_at = t0;
    int64_t deadline =
        cfg->burst_flood_ms > cfg->burst_wait_ms ? t0 + (int64_t)cfg->burst_flood_ms * 1000 : firm;
    ds_batch_t *b = &w->cur->batch;
    size_t first = b->taken, win_n = 0, max_bytes = (size_t)cfg->burst_max_kb * 1024;
    bool windows = false, flooding = false; /* a window has ended; the last one to end was a flood */
    /* Short polls: a poll waits out its whole window, so the stop is seen
     * within 100 ms and the window's end at most a quarter of quiet_ms late. */
    int slice = quiet_ms / 4 < 100 ? quiet_ms / 4 : 100;
    if (slice < 1) slice = 1;
    const char *end = "the service is stopping";
    while (!ds_service_stopping(w->svc)) {
        int64_t now = ds_mono_us();
        if (b->n >= w->cap) {
            end = "the batch is full";
            break;
        }
        if (b->bytes >= max_bytes) {
            end = "it holds DEALSCORE_BURST_MAX_KB of messages";
            break;
        }
        if (now >= deadline) {
            end = deadline > firm ? "DEALSCORE_BURST_FLOOD_MS passed" : "DEALSCORE_BURST_WAIT_MS passed";
            break;
        }
        if (now >= firm && windows && !flooding) {
            end = "DEALSCORE_BURST_WAIT_MS passed";
            break;
        }
        if (now - lag_at >= 1000000) {
            update_lag(w, w->m_lag, b->taken);
            lag_at = now;
        }
        int64_t win_end = win_start + (int64_t)quiet_ms * 1000;
        if (now >= win_end) {
            if (win_n < trickle) {
                end = win_n ? "the input slowed to a trickle" : "the input paused";
                break;
            }
            if (!burst_warranted(w, measure_behind(w), 0)) {
                end = "the backlog is drained";
                break;
            }
            if (now >= firm && win_n < flood) {
                end = "DEALSCORE_BURST_WAIT_MS passed and the input no longer floods";
                break;
            }
            windows = true;
            flooding = win_n >= flood;
            win_start = now;
            win_n = 0;
            win_end = now + (int64_t)quiet_ms * 1000;
        }
        int64_t until = win_end < deadline ? win_end : deadline;
        int64_t window = (until - now + 999) / 1000;
        rd_kafka_message_t **room = w->cur->msgs + b->n;
        size_t room_n = w->cap - b->n < w->max ? w->cap - b->n : w->max;
        int got = ds_consumer_poll_batch(w->consumer, room, room_n, window < slice ? (int)window : slice);
        if (got == DS_EFATAL) {
            ds_consumer_release(w->cur->msgs, b->n);
            ds_batch_reset(b);
            ds_metric_set(w->m_gathering, 0);
            return DS_EFATAL;
        }
        if (got > 0) {
            take(w, room, (size_t)got, true);
            win_n += (size_t)got;
            ds_metric_set(w->m_gathering, (double)(b->taken - first));
        }
    }
    ds_metric_set(w->m_gathering, 0);
    ds_info("burst: %zu more messages gathered in %lld ms (%s), %zu messages (%zu KB) held for %zu taken",
            b->taken - first, (long long)((ds_mono_us() - t0) / 1000), end, b->n, b->bytes / 1024, b->taken);
    return 0;
}

static void register_metrics(ds_worker_t *w) {
    ds_metrics_t *m = w->svc->metrics;
    char lab[64];
    snprintf(lab, sizeof lab, "worker=\"%s\"", w->def->name);
    w->m_msgs = ds_metrics_counter(m, "worker_messages_total", "Messages consumed", lab);
    w->m_dlq = ds_metrics_counter(m, "worker_dead_letters_total", "Messages sent to the DLQ", lab);
    w->m_retry =
        ds_metrics_counter(m, "worker_batch_retries_total", "Batches retried after a transient failure", lab);
    w->m_batch = ds_metrics_histogram(m, "worker_batch_size", "Messages per batch", lab,
                                      (const double[]){1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}, 10);
    w->m_secs = ds_metrics_histogram(m, "worker_batch_seconds", "Time to process a batch", lab,
                                     ds_metrics_latency_buckets, ds_metrics_latency_nbuckets);
    /* Publication (the producer's timestamp) to the batch being done, per
     * message: the relay's outbox age plus feature's and scoring's ages is
     * the end-to-end latency from a webhook to its prediction. */
    static const double age_buckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
    w->m_age = ds_metrics_histogram(m, "worker_event_age_seconds",
                                    "Seconds from a message's publication until its batch was done", lab,
                                    age_buckets, DS_ARRAY_SIZE(age_buckets));
    w->m_await = ds_metrics_counter(m, "worker_delivery_wait_seconds_total",
                                    "Seconds the loop waited for downstream acknowledgements", lab);
    w->m_lag = ds_metrics_gauge(
        m, "consumer_lag", "Messages behind the end of the assigned partitions, those in hand included", lab);
    w->m_burst =
        ds_metrics_counter(m, "worker_burst_batches_total",
                           "Batches gathered as a burst (a backlog the worker would not clear soon)", lab);
    w->m_gathering = ds_metrics_gauge(m, "worker_burst_gathering",
                                      "Messages gathered so far by the burst being gathered now", lab);
}

/* Subscribing to a topic that does not exist yet would leave the consumer
 * waiting for a metadata refresh: make sure they exist first (the input
 * topics and their dead-letter topics), then subscribe. Both retry until
 * they succeed or the service stops (w->consumer stays NULL). */
static void subscribe(ds_worker_t *w, const char **topics) {
    ds_service_t *svc = w->svc;
    size_t nt = w->def->ntopics;
    const char **all = ds_calloc(nt * 2, sizeof *all);
    char **dlqs = ds_calloc(nt, sizeof *dlqs);
    for (size_t i = 0; i < nt; i++) {
        all[2 * i] = topics[i];
        dlqs[i] = ds_asprintf("%s%s", topics[i], DS_TOPIC_DLQ_SUFFIX);
        all[2 * i + 1] = dlqs[i];
    }
    while (!ds_service_stopping(svc) &&
           ds_kafka_ensure_topics(svc->cfg, all, nt * 2, svc->cfg->topic_partitions,
                                  svc->cfg->topic_replication, 5000, w->err, sizeof w->err) != 0) {
        ds_warn("could not make sure the topics exist: %s", w->err);
        backoff(w, 1000);
    }
    for (size_t i = 0; i < nt; i++) free(dlqs[i]);
    free(dlqs);
    free(all);
    while (!ds_service_stopping(svc)) {
        if (ds_consumer_new(&w->consumer, svc->cfg, NULL, topics, nt, w->err, sizeof w->err) == 0) break;
        ds_error("could not create the kafka consumer: %s", w->err);
        backoff(w, 1000);
    }
}

/* How long a poll waits for a first message: the loop comes round this
 * often while the input is idle (for the stop and the lag gauge). */
#define IDLE_POLL_MS 100

static int finish_pending(ds_worker_t *w);

/* Polls a batch into the current slot, waiting up to idle_ms for a first
 * message, and, when it comes back full and the backlog behind it warrants
 * one, gathers a burst, after completing the batch before it: that one's
 * messages would otherwise be held beside the burst's until the burst is
 * processed. Returns the count held, 0, or DS_EFATAL (nothing held); a
 * failure to complete the batch before sets *stop_rc (nothing held). */
static int poll_batch(ds_worker_t *w, int idle_ms, int *stop_rc) {
    const ds_config_t *cfg = w->svc->cfg;
    size_t max = w->max;
    ds_batch_t *b = &w->cur->batch;
    ds_batch_reset(b);
    int n = ds_consumer_poll_ready(w->consumer, w->cur->msgs, max, idle_ms, cfg->batch_wait_ms);
    bool burst = n > 0 && (size_t)n == max && w->cap > max;
    if (burst) {
        int64_t behind = measure_behind(w);
        burst = burst_warranted(w, behind, (size_t)n);
        if (burst)
            ds_info("burst: %lld messages behind, %.0f/s arriving, %.0f/s served: gathering",
                    (long long)behind, w->rates.arrival_per_s, ds_burst_service_rate(&w->rates));
    }
    if (n > 0) take(w, w->cur->msgs, (size_t)n, burst);
    if (burst && (*stop_rc = finish_pending(w)) != 0) {
        ds_consumer_release(w->cur->msgs, b->n);
        ds_batch_reset(b);
        return 0;
    }
    if (burst) {
        /* A tenth of a batch per quiet window: with batches of 500 and
         * the defaults, the burst ends when the input falls under 500
         * messages/s; a whole batch per window (5,000/s) is a flood. */
        size_t trickle = max / 10 > 1 ? max / 10 : 1;
        if (gather_burst(w, trickle, max) == DS_EFATAL)
            n = DS_EFATAL;
        else
            ds_metric_add(w->m_burst, 1);
    }
    if (n > 0) n = (int)b->n;
    ds_service_set_consumer_ready(w->svc, ds_consumer_assigned(w->consumer));
    /* A burst is counted at once: its processing can take seconds. */
    if (ds_mono_us() - w->last_lag > 1000000 || (n > 0 && b->taken > max)) {
        size_t in_flight = w->pending ? w->pending->batch.taken : 0;
        update_lag(w, w->m_lag, (n > 0 ? b->taken : 0) + in_flight);
        w->last_lag = ds_mono_us();
    }
    w->cur->n = n > 0 ? (size_t)n : 0;
    return n;
}

/* Sends the messages the process callback refused to the dead-letter
 * topic. Returns 0, or DS_ERETRY (why in w->err). */
static int send_dead_letters(ds_worker_t *w, slot_t *s) {
    int rc = 0;
    for (size_t i = 0; i < s->n; i++) {
        ds_worker_item_t *it = &s->items[i];
        if (it->status == 0) continue;
        rd_kafka_message_t *m = it->msg;
        ds_warn("message %s[%d]@%lld goes to the dead-letter topic: %s", rd_kafka_topic_name(m->rkt),
                m->partition, (long long)m->offset, it->error);
        int r = ds_producer_send_dlq(w->svc->producer, m, it->error);
        if (r == 0) {
            ds_metric_add(w->m_dlq, 1);
        } else {
            ds_warn("could not produce to the dead-letter topic: %s", ds_strerror(r));
            snprintf(w->err, sizeof w->err, "could not produce to the dead-letter topic: %s", ds_strerror(r));
            rc = DS_ERETRY;
        }
    }
    return rc;
}

/* Runs the process callback over the slot's messages and produces their
 * dead letters: their downstream messages are then on their way. A burst
 * goes to the callback in slices of a batch (DEALSCORE_BATCH_SIZE; whole
 * for a def with whole_bursts), each slice's events sent before the next
 * is processed: a burst can hold tens of thousands of deals, and the
 * memory of processing them (their rows, results and statements) is then
 * a batch's, not the burst's. A slice that
 * fails has the whole slot run again: the slices committed before it are
 * replays then, which every worker's writes take as any redelivery.
 * Returns 0, DS_ERETRY or the error that stops the worker (why in w->err). */
static int run_slot(ds_worker_t *w, slot_t *s) {
    int64_t t0 = ds_mono_us();
    for (size_t i = 0; i < s->n; i++) {
        s->items[i].msg = s->msgs[i];
        s->items[i].status = 0;
        s->items[i].error[0] = '\0';
    }
    s->dl.sent = 0;
    atomic_store(&s->dl.acked, 0);
    atomic_store(&s->dl.failed, 0);
    w->err[0] = '\0';
    slot_t *was = w->cur;
    w->cur = s; /* where ds_worker_produce counts */
    int rc = 0;
    size_t slice = w->def->whole_bursts ? s->n : w->max;
    for (size_t at = 0; at < s->n && rc == 0; at += slice) {
        size_t n = s->n - at < slice ? s->n - at : slice;
        rc = w->def->process(w, w->def->ud, s->items + at, n, w->err, sizeof w->err);
        send_produced(w);
    }
    w->cur = was;
    if (rc == 0) rc = send_dead_letters(w, s);
    send_produced(w);
    s->busy_s += (double)(ds_mono_us() - t0) / 1e6;
    return rc;
}

/* Waits for the slot's downstream messages. Returns 0, or DS_ERETRY (why
 * in w->err) when any of them did not land. */
static int await_slot(ds_worker_t *w, slot_t *s) {
    int64_t t0 = ds_mono_us();
    await_deliveries(w, &s->dl);
    int rc = 0;
    bool any_dlq = false;
    for (size_t i = 0; i < s->n; i++) any_dlq |= s->items[i].status != 0;
    /* Dead letters carry no batch opaque: flush to know they landed. */
    if (any_dlq && ds_producer_flush(w->svc->producer, 10000) != 0) {
        rc = DS_ERETRY;
        snprintf(w->err, sizeof w->err, "dead letters were not acknowledged");
    }
    int failed = atomic_load(&s->dl.failed);
    if (failed) {
        rc = DS_ERETRY;
        snprintf(w->err, sizeof w->err, "%d downstream messages were not delivered", failed);
    }
    double waited = (double)(ds_mono_us() - t0) / 1e6;
    ds_metric_add(w->m_await, waited);
    s->busy_s += waited;
    return rc;
}

/* Takes a slot from the result rc of its first run to the end: waits for
 * its deliveries and, while it fails with DS_ERETRY, pauses the consumer,
 * backs off and runs it again, until it succeeds, fails for good or the
 * service stops. Returns the last result. */
static int settle_slot(ds_worker_t *w, slot_t *s, int rc) {
    int attempt = 0;
    bool paused = false;
    for (;;) {
        if (rc == 0) rc = await_slot(w, s);
        if (rc != DS_ERETRY) break;
        ds_metric_add(w->m_retry, 1);
        if (ds_service_stopping(w->svc)) break;
        if (!paused) {
            ds_consumer_pause_all(w->consumer);
            paused = true;
        }
        int delay = ds_pg_backoff_ms(attempt < 6 ? attempt : 6, &w->seed);
        attempt++;
        ds_warn("batch of %zu messages failed (attempt %d), retrying in %d ms: %s", s->n, attempt, delay,
                w->err);
        backoff(w, delay);
        update_lag(w, w->m_lag, s->batch.taken); /* the batch is still to do */
        w->last_lag = ds_mono_us();
        if (ds_service_stopping(w->svc)) break;
        rc = run_slot(w, s);
    }
    if (paused) ds_consumer_resume_all(w->consumer);
    return rc;
}

/* Stores a settled slot's offsets (those of the messages it released
 * included) when rc is 0, and frees it. Returns 0, or the error that stops
 * the worker. */
static int complete_slot(ds_worker_t *w, slot_t *s, int rc) {
    size_t taken = s->batch.taken;
    ds_metric_add(w->m_msgs, (double)taken);
    ds_metric_observe(w->m_batch, (double)taken);
    if (rc == 0) {
        rd_kafka_topic_partition_list_t *offs = ds_batch_offsets(&s->batch);
        if (ds_consumer_store_offsets(w->consumer, offs) != 0) ds_warn("could not store offsets");
        rd_kafka_topic_partition_list_destroy(offs);
        observe_ages(w->m_age, &s->batch);
    }
    /* On DS_ERETRY here the service is stopping: nothing stored, the
     * batch is redelivered to whoever consumes next. */
    ds_consumer_release(s->msgs, s->n);
    ds_batch_reset(&s->batch);
    ds_metric_observe(w->m_secs, s->busy_s);
    if (rc == 0) ds_burst_rates_served(&w->rates, taken, s->busy_s);
    s->n = 0;
    s->busy_s = 0;
    return rc == 0 || rc == DS_ERETRY ? 0 : rc;
}

/* Settles and completes the pending slot, if any. Returns 0 or the error
 * that stops the worker. */
static int finish_pending(ds_worker_t *w) {
    slot_t *s = w->pending;
    if (!s) return 0;
    w->pending = NULL;
    return complete_slot(w, s, settle_slot(w, s, 0));
}

/* Processes the batch poll_batch held in the current slot. Its downstream
 * messages are left in flight (the slot becomes pending) while the loop
 * polls and processes the next batch; the batch pending before is
 * completed first, so offsets are stored in order. A batch that fails is
 * settled at once. Returns 0 or the error that stops the worker. */
static int handle_batch(ds_worker_t *w) {
    slot_t *s = w->cur;
    int rc = run_slot(w, s);
    int prc = finish_pending(w);
    if (prc != 0) {
        rc = complete_slot(w, s, settle_slot(w, s, rc));
        return prc;
    }
    w->cur = s == &w->slots[0] ? &w->slots[1] : &w->slots[0];
    if (rc == 0) {
        w->pending = s;
        return 0;
    }
    return complete_slot(w, s, settle_slot(w, s, rc));
}

static void slot_init(slot_t *s, size_t cap) {
    s->msgs = ds_calloc(cap, sizeof *s->msgs);
    ds_batch_init(&s->batch, s->msgs, cap);
    s->items = ds_calloc(cap, sizeof *s->items);
}

static void slot_free(slot_t *s) {
    ds_batch_close(&s->batch);
    free(s->msgs);
    free(s->items);
}

static void worker_close(ds_worker_t *w) {
    ds_service_set_consumer_ready(w->svc, false);
    if (w->consumer) {
        if (ds_consumer_close(w->consumer) != 0) ds_warn("could not commit offsets on close");
        ds_consumer_destroy(w->consumer);
    }
    if (w->committed) rd_kafka_topic_partition_list_destroy(w->committed);
    /* No delivery callback may run for the slots once they are freed. */
    ds_producer_drain(w->svc->producer, 2000);
    for (size_t i = 0; i < DS_ARRAY_SIZE(w->slots); i++) slot_free(&w->slots[i]);
    for (size_t i = 0; i < w->ntopic_names; i++) {
        free(w->topic_names[i]);
        free(w->topic_bases[i]);
    }
}

void ds_worker_run(ds_service_t *svc, const ds_worker_def_t *def) {
    ds_worker_t w = {.svc = svc, .def = def};
    const char **topics = ds_calloc(def->ntopics, sizeof *topics);
    for (size_t i = 0; i < def->ntopics; i++) topics[i] = ds_worker_topic(&w, def->topics[i]);
    ds_producer_set_delivery_cb(svc->producer, on_delivery, &w);
    register_metrics(&w);
    subscribe(&w, topics);
    w.max = (size_t)svc->cfg->batch_size;
    w.cap = svc->cfg->burst_batch_size > svc->cfg->batch_size ? (size_t)svc->cfg->burst_batch_size : w.max;
    for (size_t i = 0; i < DS_ARRAY_SIZE(w.slots); i++) slot_init(&w.slots[i], w.cap);
    w.cur = &w.slots[0];
    ds_burst_rates_init(&w.rates);
    w.seed = (uint64_t)ds_now_us();
    int rc = 0;
    while (w.consumer && !ds_service_stopping(svc)) {
        /* With a batch in flight, take only what is there already. */
        int n = poll_batch(&w, w.pending ? 0 : IDLE_POLL_MS, &rc);
        if (rc != 0) break;
        if (n == DS_EFATAL) {
            ds_error("fatal kafka consumer error; stopping");
            ds_service_request_stop(svc, 1);
            break;
        }
        if (n == 0 && w.pending)
            rc = finish_pending(&w);
        else if (n == 0 && def->idle)
            def->idle(def->ud);
        else if (n > 0)
            rc = handle_batch(&w);
        if (rc != 0) break;
    }
    if (rc == 0) rc = finish_pending(&w);
    if (rc != 0) {
        ds_error("%s worker stops: %s", def->name, w.err);
        ds_service_request_stop(svc, 1);
    }
    worker_close(&w);
    free(topics);
}
