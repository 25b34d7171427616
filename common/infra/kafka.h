/* The librdkafka wrapper: configuration from ds_config_t, an idempotent
 * producer that adds CloudEvents and W3C trace-context headers, a batch
 * consumer with manual offset storing (at-least-once), dead letters, topic
 * creation and a readiness probe (DESIGN.md, "Events" and "Delivery").
 *
 * Threads: ds_producer_send, ds_producer_send_dlq, ds_producer_pending and
 * ds_kafka_ping may be called from any thread. The delivery callback runs
 * inside whichever call serves the producer's queue (ds_producer_poll,
 * _flush, _drain, _destroy, and ds_producer_send while the queue is full),
 * or on the producer's sender thread once ds_producer_send_soon was called,
 * so it must be thread-safe. A ds_consumer_t is
 * driven from one thread; its rebalance handling runs inside
 * ds_consumer_poll_batch and _close. ds_consumer_assigned() may be read from
 * any thread. librdkafka's own log lines go through ds_log from any thread. */
#ifndef DEALSCORE_KAFKA_H
#define DEALSCORE_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "base/config.h"

/* Topic base names; the full name is ds_config_topic(cfg, base). */
#define DS_TOPIC_OPPORTUNITY_CHANGED "opportunity.changed"
#define DS_TOPIC_FEATURES_READY "features.ready"
#define DS_TOPIC_PREDICTION_MADE "prediction.made"
/* A dead-letter topic is the original topic's full name plus this suffix. */
#define DS_TOPIC_DLQ_SUFFIX ".dlq"

/* CloudEvents types (the ce_type header). */
#define DS_CE_TYPE_OPPORTUNITY_CHANGED "dealscore.opportunity.changed.v1"
#define DS_CE_TYPE_FEATURES_READY "dealscore.features.ready.v1"
#define DS_CE_TYPE_PREDICTION_MADE "dealscore.prediction.made.v1"
#define DS_CE_CONTENT_TYPE "application/protobuf"

/* Header names (CloudEvents Kafka binding, W3C trace context, dead letters). */
#define DS_HDR_CE_SPECVERSION "ce_specversion"
#define DS_HDR_CE_ID "ce_id"
#define DS_HDR_CE_SOURCE "ce_source"
#define DS_HDR_CE_TYPE "ce_type"
#define DS_HDR_CE_TIME "ce_time"
#define DS_HDR_CONTENT_TYPE "content-type"
#define DS_HDR_TRACEPARENT "traceparent"
#define DS_HDR_DLQ_ERROR "dlq_error"
#define DS_HDR_DLQ_TOPIC "dlq_topic"
#define DS_HDR_DLQ_PARTITION "dlq_partition"
#define DS_HDR_DLQ_OFFSET "dlq_offset"
#define DS_HDR_DLQ_TIME "dlq_time"

/* "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>" plus NUL. */
#define DS_TRACEPARENT_SIZE 56

/* ---- trace context ------------------------------------------------------ */

/* Writes a new random, valid traceparent (version 00, sampled flag 01). */
void ds_event_traceparent_new(char out[DS_TRACEPARENT_SIZE]);
/* True if s is a valid version-00 traceparent (lowercase hex, trace-id and
 * parent-id not all zeros). */
bool ds_event_traceparent_valid(const char *s);
/* Continues a trace for the next hop: same trace-id and flags as parent, a
 * new parent-id. A NULL or invalid parent starts a new trace. */
void ds_event_traceparent_child(const char *parent, char out[DS_TRACEPARENT_SIZE]);

/* ---- configuration and probes ------------------------------------------- */

/* Builds a librdkafka configuration from cfg: bootstrap.servers from
 * cfg->kafka_brokers, client.id "dealscore-<service>", log_cb through ds_log,
 * socket.nagle.disable=true, then every cfg->kafka_props pair (KAFKA_*), which
 * override the defaults. Returns 0 and *out (the caller destroys it with
 * rd_kafka_conf_destroy or hands it to rd_kafka_new), or DS_EINVAL with
 * errstr naming the bad KAFKA_* variable and its property. */
int ds_kafka_conf_new(rd_kafka_conf_t **out, const ds_config_t *cfg, char *errstr, size_t errstr_size);

/* Readiness probe: a metadata request to any broker. Returns 0,
 * DS_ETIMEDOUT, or DS_EIO. Blocks at most timeout_ms. */
int ds_kafka_ping(rd_kafka_t *rk, int timeout_ms);

/* Creates the topics that do not exist yet (an existing topic counts as
 * success; when the metadata shows every one, nothing is asked of the
 * cluster's controller) and waits, within timeout_ms, until the cluster's metadata shows
 * every topic. partitions or replication <= 0 mean the broker's default.
 * Returns 0, or DS_EIO/DS_ETIMEDOUT/DS_EINVAL with errstr. */
int ds_kafka_ensure_topics(const ds_config_t *cfg, const char *const *topics, size_t n, int partitions,
                           int replication, int timeout_ms, char *errstr, size_t errstr_size);

/* Copies the last header called name into buf as a NUL-terminated string
 * (a header without a value gives ""). Returns 0, DS_ENOTFOUND, or DS_EFULL
 * when the value and its NUL do not fit in bufsz (buf then holds a
 * truncated copy). */
int ds_kafka_header_get(const rd_kafka_message_t *m, const char *name, char *buf, size_t bufsz);

/* ---- producer ----------------------------------------------------------- */

typedef struct ds_producer_s ds_producer_t;

/* CloudEvents attributes of one message. Only type is required. */
typedef struct {
    const char *id;           /* ce_id; NULL: a new UUID */
    const char *source;       /* ce_source; NULL: "/dealscore/<service>" */
    const char *type;         /* ce_type, e.g. DS_CE_TYPE_OPPORTUNITY_CHANGED */
    int64_t time_us;          /* ce_time; 0: now */
    const char *traceparent;  /* NULL or invalid: a new trace */
    const char *content_type; /* NULL: DS_CE_CONTENT_TYPE */
} ds_event_meta_t;

/* Called exactly once per message accepted by ds_producer_send or
 * ds_producer_send_dlq, on the thread that polls the producer. err is 0 on
 * success, or DS_ETIMEDOUT (message.timeout.ms passed), DS_ESHUTDOWN (purged
 * by ds_producer_destroy), DS_EFATAL (fatal producer error), DS_EAUTH, or
 * DS_EIO (any other permanent failure; librdkafka already retried what it
 * could). errmsg is librdkafka's text ("" on success). m is the delivered
 * message (topic, partition, offset), valid during the call only. */
typedef void (*ds_delivery_cb_t)(void *opaque, void *msg_opaque, int err, const char *errmsg,
                                 const rd_kafka_message_t *m);

/* Creates an idempotent producer (enable.idempotence=true, acks=all, which
 * KAFKA_* cannot turn off) with linger.ms=20 by default. Returns 0 and *out,
 * or DS_EINVAL/DS_EIO with errstr. Free with ds_producer_destroy(). */
int ds_producer_new(ds_producer_t **out, const ds_config_t *cfg, char *errstr, size_t errstr_size);

/* Sets the delivery callback; without one, failures are logged. Call before
 * the first send. */
void ds_producer_set_delivery_cb(ds_producer_t *p, ds_delivery_cb_t cb, void *opaque);

/* How long send waits in total for room when the local queue is full
 * (default 5000 ms). */
void ds_producer_set_full_timeout(ds_producer_t *p, int timeout_ms);

/* Enqueues one message (key and payload are copied) with the CloudEvents
 * headers of meta plus content-type and traceparent. While the local queue
 * is full it polls (serving delivery callbacks) and retries, for at most the
 * full timeout. Returns 0 (the delivery callback will run once for
 * msg_opaque), DS_EFULL, DS_EFATAL after a fatal producer error, DS_EINVAL
 * (bad meta), or DS_EIO; on failure the callback never runs for it. */
int ds_producer_send(ds_producer_t *p, const char *topic, const void *key, size_t keylen, const void *payload,
                     size_t len, const ds_event_meta_t *meta, void *msg_opaque);

/* Serves delivery reports and errors; waits at most timeout_ms. Returns the
 * number of events served. */
int ds_producer_poll(ds_producer_t *p, int timeout_ms);

/* Waits until every message is delivered or failed, serving callbacks,
 * after sending what is queued: at once, without waiting out linger.ms,
 * unless the process produces fast (ds_producer_flush_linger_ms: then it
 * first waits DEALSCORE_FLUSH_LINGER_MS, within timeout_ms, so that its
 * caller's next batch gathers more and each produce request, and each fetch
 * it answers, carries more events). Returns 0 or DS_ETIMEDOUT. */
int ds_producer_flush(ds_producer_t *p, int timeout_ms);

/* Has everything queued sent now, as ds_producer_flush would, by a thread
 * of the producer's own, and returns at once: the caller goes on while the
 * deliveries come in. Their callbacks then run on that thread, or on any
 * thread that polls or flushes meanwhile. */
void ds_producer_send_soon(ds_producer_t *p);

/* How long a flush lingers, in ms: linger_ms when at the send rate
 * (messages per second, measured over the last 200 ms or more of sends;
 * < 0 unknown) at least one more message is due within linger_ms, else 0. */
int ds_producer_flush_linger_ms(double sends_per_s, int linger_ms);

/* Returns 0, or DS_EFATAL with the reason in errstr once librdkafka raised
 * a fatal error (RD_KAFKA_RESP_ERR__FATAL): the producer is unusable and the
 * service must shut down. errstr may be NULL. */
int ds_producer_fatal(ds_producer_t *p, char *errstr, size_t errstr_size);

/* Messages waiting for delivery (queued or in flight). */
int ds_producer_pending(ds_producer_t *p);

/* Flushes for at most timeout_ms; what is still undelivered then is purged,
 * and its delivery callbacks (DS_ESHUTDOWN) have run when this returns, so
 * none runs later for the callers' msg_opaque. Returns the number dropped. */
int ds_producer_drain(ds_producer_t *p, int timeout_ms);

/* The underlying handle, owned by p (e.g. for ds_kafka_ping). */
rd_kafka_t *ds_producer_handle(ds_producer_t *p);

/* Flushes for at most cfg->shutdown_timeout_ms, purges what is left (those
 * messages get DS_ESHUTDOWN in the callback), then destroys. NULL is a
 * no-op. */
void ds_producer_destroy(ds_producer_t *p);

/* Produces m (key, value and headers as they are) to "<m's topic>.dlq" with
 * extra headers dlq_error (error), dlq_topic, dlq_partition, dlq_offset and
 * dlq_time (RFC 3339). The delivery callback runs with msg_opaque NULL.
 * Returns as ds_producer_send. */
int ds_producer_send_dlq(ds_producer_t *p, const rd_kafka_message_t *m, const char *error);

/* ---- consumer ----------------------------------------------------------- */

typedef struct ds_consumer_s ds_consumer_t;

/* Creates a consumer in group_id (NULL: cfg->group_id) subscribed to topics,
 * with partition.assignment.strategy=cooperative-sticky and
 * auto.offset.reset=earliest (both overridable by KAFKA_*), and, always,
 * enable.auto.offset.store=false with enable.auto.commit=true: librdkafka
 * commits only the offsets ds_consumer_store() stored, in the background
 * every auto.commit.interval.ms and on ds_consumer_close(). Returns 0 and
 * *out, or DS_EINVAL/DS_EIO with errstr. Free with ds_consumer_destroy(). */
int ds_consumer_new(ds_consumer_t **out, const ds_config_t *cfg, const char *group_id,
                    const char *const *topics, size_t ntopics, char *errstr, size_t errstr_size);

/* Collects up to max messages, waiting at most wait_ms in total (0: only
 * what is ready), and returns their count (0..max). The caller owns the
 * messages and frees them with ds_consumer_release(). Consumer errors are
 * logged and skipped; returns DS_EFATAL (with nothing collected) after a
 * fatal error. */
int ds_consumer_poll_batch(ds_consumer_t *c, rd_kafka_message_t **msgs, size_t max, int wait_ms);

/* Waits up to idle_ms for a first message, then collects up to max in all
 * for at most fill_ms more (0: only what is ready then). Under load, what
 * arrived while the last batch was processed is ready at once, so batches
 * grow with the rate and a lone message never waits for others. Returns as
 * ds_consumer_poll_batch. */
int ds_consumer_poll_ready(ds_consumer_t *c, rd_kafka_message_t **msgs, size_t max, int idle_ms, int fill_ms);

/* Stores, for each partition in msgs, the highest offset + 1, to be
 * committed. Call only after the batch's effects are durable (DB commit,
 * downstream delivery). Offsets of partitions no longer assigned are
 * skipped (their messages will be redelivered elsewhere). Returns 0 or
 * DS_EIO. */
int ds_consumer_store(ds_consumer_t *c, rd_kafka_message_t *const *msgs, size_t n);
/* The same for offs: per partition, the next offset to read (offs's
 * per-partition errors are set). */
int ds_consumer_store_offsets(ds_consumer_t *c, rd_kafka_topic_partition_list_t *offs);

/* Commits the stored offsets now, synchronously. Returns 0 (also when there
 * was nothing to commit) or DS_EIO. */
int ds_consumer_commit(ds_consumer_t *c);

/* Destroys msgs[0..n) and sets them to NULL. */
void ds_consumer_release(rd_kafka_message_t **msgs, size_t n);

/* Pauses fetching on every assigned partition, including ones assigned
 * later, until resume_all (backpressure). Returns 0 or DS_EIO. */
int ds_consumer_pause_all(ds_consumer_t *c);
int ds_consumer_resume_all(ds_consumer_t *c);

/* True while at least one partition is assigned (for /readyz). Any thread. */
bool ds_consumer_assigned(const ds_consumer_t *c);
/* How many times partitions were assigned or revoked (lost included) so far:
 * state a process keeps about the keys of its partitions is only valid while
 * this does not move. */
unsigned ds_consumer_rebalances(const ds_consumer_t *c);

/* The underlying handle, owned by c. */
rd_kafka_t *ds_consumer_handle(ds_consumer_t *c);

/* Commits the stored offsets and leaves the group. Release every message
 * first. A member that joined the group but has not had its first
 * assignment yet waits for it first (up to 10 s: librdkafka 2.0 aborts when
 * such a member is destroyed). Idempotent. Returns 0 or DS_EIO. */
int ds_consumer_close(ds_consumer_t *c);

/* Closes (if not done yet) and destroys. A consumer never assigned (no
 * rebalance seen) is closed but its librdkafka handle is left to the
 * process exit, for the same librdkafka abort. NULL is a no-op. */
void ds_consumer_destroy(ds_consumer_t *c);

#endif
