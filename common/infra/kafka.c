/* librdkafka configuration, trace context, headers, topic creation and the
 * readiness probe. The producer is in kafka_producer.c, the consumer in
 * kafka_consumer.c. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "base/common.h"
#include "infra/kafka.h"
#include "base/log.h"
#include "kafka_internal.h"

/* ---- trace context ------------------------------------------------------ */

static void random_bytes(void *buf, size_t len) {
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            ds_panic("getrandom failed: %s", strerror(errno));
        }
        p += r;
        len -= (size_t)r;
    }
}

/* Writes len random bytes as 2*len lowercase hex digits, never all zeros
 * (W3C trace context forbids an all-zero trace-id or parent-id). */
static void random_hex(char *out, size_t len) {
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    ds_assert(len <= sizeof b);
    bool zero;
    do {
        random_bytes(b, len);
        zero = true;
        for (size_t i = 0; i < len; i++)
            if (b[i]) zero = false;
    } while (zero);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 0xf];
    }
}

void ds_event_traceparent_new(char out[DS_TRACEPARENT_SIZE]) {
    memcpy(out, "00-", 3);
    random_hex(out + 3, 16);
    out[35] = '-';
    random_hex(out + 36, 8);
    memcpy(out + 52, "-01", 4); /* includes the NUL */
}

/* True if s[0..n) is lowercase hex and, when nonzero is set, not all '0'. */
static bool is_hex(const char *s, size_t n, bool nonzero) {
    bool all_zero = true;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
        if (ch != '0') all_zero = false;
    }
    return !(nonzero && all_zero);
}

bool ds_event_traceparent_valid(const char *s) {
    if (!s || strlen(s) != DS_TRACEPARENT_SIZE - 1) return false;
    return memcmp(s, "00-", 3) == 0 && is_hex(s + 3, 32, true) && s[35] == '-' && is_hex(s + 36, 16, true) &&
           s[52] == '-' && is_hex(s + 53, 2, false);
}

void ds_event_traceparent_child(const char *parent, char out[DS_TRACEPARENT_SIZE]) {
    if (!ds_event_traceparent_valid(parent)) {
        ds_event_traceparent_new(out);
        return;
    }
    memcpy(out, parent, DS_TRACEPARENT_SIZE);
    random_hex(out + 36, 8);
}

/* ---- configuration ------------------------------------------------------ */

/* librdkafka's syslog(3) levels to ours. */
static ds_log_level_t log_level_of(int level) {
    if (level <= 3) return DS_LOG_ERROR;
    if (level == 4) return DS_LOG_WARN;
    if (level <= 6) return DS_LOG_INFO;
    return DS_LOG_DEBUG;
}

/* Runs on librdkafka's threads; ds_log writes each line with one write(). */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    ds_log_level_t lvl = log_level_of(level);
    /* KAFKA_* settings go to the producer and the consumer alike, so a
     * consumer-only property "ignored by this producer instance" is normal. */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "will be ignored by this")) lvl = DS_LOG_DEBUG;
    ds_log(lvl, "kafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

void ds__kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof fatal);
        ds_error("kafka fatal error: %s: %s", rd_kafka_err2name(orig), fatal);
        return;
    }
    /* Everything else is informational: librdkafka recovers by itself. */
    ds_warn("kafka error: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

int ds__kafka_errcode(rd_kafka_resp_err_t err) {
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR: return 0;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT: return DS_ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__FATAL: return DS_EFATAL;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__DESTROY: return DS_ESHUTDOWN;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED: return DS_EAUTH;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL: return DS_EFULL;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE: return DS_EINVAL;
    default: return DS_EIO;
    }
}

/* "security.protocol" -> "KAFKA_SECURITY_PROTOCOL", the variable it came from. */
static void env_name_of(const char *prop, char *out, size_t outsz) {
    size_t pos = (size_t)snprintf(out, outsz, "KAFKA_");
    for (const char *s = prop; *s && pos + 1 < outsz; s++)
        out[pos++] = *s == '.' ? '_' : (char)toupper((unsigned char)*s);
    if (pos < outsz) out[pos] = '\0';
}

static int set_pairs(rd_kafka_conf_t *conf, const char *const *pairs, char *errstr, size_t errstr_size) {
    char why[512];
    for (size_t i = 0; pairs && pairs[i]; i += 2) {
        if (rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], why, sizeof why) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "could not set kafka property %s: %s", pairs[i], why);
            return DS_EINVAL;
        }
    }
    return 0;
}

int ds__kafka_conf_new(rd_kafka_conf_t **out, const ds_config_t *cfg, const char *const *defaults,
                       const char *const *forced, char *errstr, size_t errstr_size) {
    char why[512];
    char client_id[128];
    int rc;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    *out = NULL;
    snprintf(client_id, sizeof client_id, "dealscore-%s", cfg->service_name ? cfg->service_name : "client");
    const char *const base[] = {
        "bootstrap.servers",
        cfg->kafka_brokers ? cfg->kafka_brokers : "",
        "client.id",
        client_id,
        "socket.nagle.disable",
        "true",
        /* An idle connection closed by the broker is routine, not news. */
        "log.connection.close",
        "false",
        NULL,
    };
    if ((rc = set_pairs(conf, base, errstr, errstr_size)) != 0) goto fail;
    if ((rc = set_pairs(conf, defaults, errstr, errstr_size)) != 0) goto fail;
    for (size_t i = 0; i < cfg->kafka_props_count; i++) {
        const ds_kv_t *kv = &cfg->kafka_props[i];
        if (rd_kafka_conf_set(conf, kv->key, kv->value, why, sizeof why) != RD_KAFKA_CONF_OK) {
            char env[256];
            env_name_of(kv->key, env, sizeof env);
            /* The value is left out: it may be a password. */
            snprintf(errstr, errstr_size, "invalid %s (kafka property %s): %s", env, kv->key, why);
            rc = DS_EINVAL;
            goto fail;
        }
    }
    if ((rc = set_pairs(conf, forced, errstr, errstr_size)) != 0) goto fail;
    rd_kafka_conf_set_log_cb(conf, log_cb);
    *out = conf;
    return 0;

fail:
    rd_kafka_conf_destroy(conf);
    return rc;
}

int ds_kafka_conf_new(rd_kafka_conf_t **out, const ds_config_t *cfg, char *errstr, size_t errstr_size) {
    return ds__kafka_conf_new(out, cfg, NULL, NULL, errstr, errstr_size);
}

/* ---- probes and headers ------------------------------------------------- */

int ds_kafka_ping(rd_kafka_t *rk, int timeout_ms) {
    const struct rd_kafka_metadata *md = NULL;
    /* Only locally known topics: the cheapest request that needs a broker. */
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    if (err) {
        ds_debug("kafka ping failed: %s", rd_kafka_err2str(err));
        return err == RD_KAFKA_RESP_ERR__TIMED_OUT ? DS_ETIMEDOUT : DS_EIO;
    }
    rd_kafka_metadata_destroy(md);
    return 0;
}

int ds_kafka_header_get(const rd_kafka_message_t *m, const char *name, char *buf, size_t bufsz) {
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t size = 0;

    if (bufsz > 0) buf[0] = '\0';
    /* Parsed, an event's seven headers take about 1.2 KB, which would stay
     * with the message until it is released, and a burst holds tens of
     * thousands of messages. They are parsed for this read and dropped:
     * the message keeps them as received, and a later read (or a dead
     * letter's copy) parses them again. */
    if (rd_kafka_message_detach_headers((rd_kafka_message_t *)m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return DS_ENOTFOUND;
    int rc =
        rd_kafka_header_get_last(hdrs, name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : DS_ENOTFOUND;
    if (rc == 0 && bufsz == 0) rc = DS_EFULL;
    if (rc == 0) {
        if (!val) size = 0;
        size_t n = size < bufsz - 1 ? size : bufsz - 1;
        if (n) memcpy(buf, val, n);
        buf[n] = '\0';
        rc = size < bufsz ? 0 : DS_EFULL;
    }
    rd_kafka_headers_destroy(hdrs);
    return rc;
}

/* ---- topic creation ----------------------------------------------------- */

/* Waits until the metadata lists every topic with its partitions. */
/* How many of the topics the cluster's metadata shows, with partitions. */
static size_t count_visible(rd_kafka_t *rk, const char *const *topics, size_t n, int timeout_ms) {
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        for (int t = 0; t < md->topic_cnt; t++) {
            const struct rd_kafka_metadata_topic *mt = &md->topics[t];
            if (strcmp(mt->topic, topics[i]) == 0 && !mt->err && mt->partition_cnt > 0) {
                found++;
                break;
            }
        }
    }
    rd_kafka_metadata_destroy(md);
    return found;
}

static int wait_topics(rd_kafka_t *rk, const char *const *topics, size_t n, int64_t deadline, char *errstr,
                       size_t errstr_size) {
    for (;;) {
        int64_t left = (deadline - ds_mono_us()) / 1000;
        if (left <= 0) break;
        if (count_visible(rk, topics, n, (int)left) == n) return 0;
        /* Metadata propagates within milliseconds on a healthy cluster. */
        rd_kafka_poll(rk, 50);
    }
    snprintf(errstr, errstr_size, "topics created but not visible in the cluster metadata in time");
    return DS_ETIMEDOUT;
}

int ds_kafka_ensure_topics(const ds_config_t *cfg, const char *const *topics, size_t n, int partitions,
                           int replication, int timeout_ms, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_NewTopic_t **newt = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    char why[512];
    int rc;
    int64_t deadline = ds_mono_us() + (int64_t)timeout_ms * 1000;

    if (n == 0) return 0;
    if ((rc = ds_kafka_conf_new(&conf, cfg, errstr, errstr_size)) != 0) goto cleanup;
    rd_kafka_conf_set_error_cb(conf, ds__kafka_error_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!rk) {
        snprintf(errstr, errstr_size, "could not create kafka admin client: %s", why);
        rc = DS_EIO;
        goto cleanup;
    }
    conf = NULL; /* now owned by rk */
    /* Nothing to create: no admin request, which a principal without the
     * CreateTopics permission could not make. */
    if (count_visible(rk, topics, n, timeout_ms) == n) {
        rc = 0;
        goto cleanup;
    }

    newt = ds_calloc(n, sizeof *newt);
    for (size_t i = 0; i < n; i++) {
        newt[i] = rd_kafka_NewTopic_new(topics[i], partitions > 0 ? partitions : -1,
                                        replication > 0 ? replication : -1, why, sizeof why);
        if (!newt[i]) {
            snprintf(errstr, errstr_size, "invalid topic %s: %s", topics[i], why);
            rc = DS_EINVAL;
            goto cleanup;
        }
    }
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, why, sizeof why);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, why, sizeof why);
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, newt, n, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (!ev) {
        snprintf(errstr, errstr_size, "could not create topics: timed out");
        rc = DS_ETIMEDOUT;
        goto cleanup;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "could not create topics: %s", rd_kafka_event_error_string(ev));
        rc = ds__kafka_errcode(rd_kafka_event_error(ev));
        goto cleanup;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ds_info("kafka topic %s created", rd_kafka_topic_result_name(res[i]));
        } else if (err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            const char *msg = rd_kafka_topic_result_error_string(res[i]);
            snprintf(errstr, errstr_size, "could not create topic %s: %s", rd_kafka_topic_result_name(res[i]),
                     msg ? msg : rd_kafka_err2str(err));
            rc = ds__kafka_errcode(err);
            goto cleanup;
        }
    }
    rc = wait_topics(rk, topics, n, deadline, errstr, errstr_size);

cleanup:
    if (ev) rd_kafka_event_destroy(ev);
    if (q) rd_kafka_queue_destroy(q);
    if (opts) rd_kafka_AdminOptions_destroy(opts);
    if (newt) {
        for (size_t i = 0; i < n; i++)
            if (newt[i]) rd_kafka_NewTopic_destroy(newt[i]);
        free(newt);
    }
    if (rk) rd_kafka_destroy(rk);
    if (conf) rd_kafka_conf_destroy(conf);
    return rc;
}
