/* The batch consumer: cooperative rebalancing, offsets stored by the
 * application after its work is durable (DESIGN.md, "Delivery").
 *
 * Offsets: enable.auto.offset.store=false and enable.auto.commit=true, so
 * librdkafka commits in the background only what ds_consumer_store() stored,
 * and again when partitions are revoked or the consumer closes. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "infra/kafka.h"
#include "base/log.h"
#include "kafka_internal.h"

struct ds_consumer_s {
    rd_kafka_t *rk;
    atomic_int assigned;    /* partitions assigned now; read by /readyz threads */
    atomic_uint rebalances; /* assignment changes seen (assign and revoke) */
    bool paused;            /* pause_all in force: pause new assignments too */
    bool closed;
};

/* Formats "topic[0,1] other[2]" (truncated to fit) for the log. */
static void format_parts(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t bufsz) {
    size_t pos = 0;
    buf[0] = '\0';
    for (int i = 0; i < parts->cnt && pos < bufsz; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        bool same = i > 0 && strcmp(parts->elems[i - 1].topic, tp->topic) == 0;
        int w =
            same ? snprintf(buf + pos, bufsz - pos, ",%" PRId32, tp->partition)
                 : snprintf(buf + pos, bufsz - pos, "%s%s[%" PRId32, i ? "] " : "", tp->topic, tp->partition);
        if (w < 0) break;
        pos += (size_t)w;
    }
    if (parts->cnt > 0 && pos + 1 < bufsz) {
        buf[pos++] = ']';
        buf[pos] = '\0';
    }
}

static void update_assigned(ds_consumer_t *c) {
    rd_kafka_topic_partition_list_t *now = NULL;
    if (rd_kafka_assignment(c->rk, &now) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_store(&c->assigned, now->cnt);
        rd_kafka_topic_partition_list_destroy(now);
    }
}

/* Runs inside rd_kafka_consumer_poll/close, on the caller's thread. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
    ds_consumer_t *c = opaque;
    /* KAFKA_PARTITION_ASSIGNMENT_STRATEGY may select an eager assignor. */
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    char list[512];

    format_parts(parts, list, sizeof list);
    atomic_fetch_add(&c->rebalances, 1u);
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        ds_info("kafka partitions assigned: %s", list);
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, parts);
        if (error || rerr) break;
        /* A partition keeps its pause flag across a revoke, so set the state
         * we want explicitly either way. */
        if (c->paused)
            rd_kafka_pause_partitions(rk, parts);
        else
            rd_kafka_resume_partitions(rk, parts);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        if (rd_kafka_assignment_lost(rk))
            ds_warn("kafka partitions lost: %s", list);
        else
            ds_info("kafka partitions revoked: %s", list);
        if (coop)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, NULL);
        break;
    default:
        ds_error("kafka rebalance failed: %s", rd_kafka_err2str(err));
        if (!coop) rerr = rd_kafka_assign(rk, NULL);
        break;
    }
    if (error) {
        ds_error("could not apply kafka assignment: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (rerr) {
        ds_error("could not apply kafka assignment: %s", rd_kafka_err2str(rerr));
    }
    update_assigned(c);
}

int ds_consumer_new(ds_consumer_t **out, const ds_config_t *cfg, const char *group_id,
                    const char *const *topics, size_t ntopics, char *errstr, size_t errstr_size) {
    /* fetch.wait.max.ms: how long the broker holds a fetch that finds no
     * data; data that arrives meanwhile answers it at once, so this costs
     * no latency. At 10 ms the idle consumers of the stack cost the broker
     * 15 % of a core, at 100 ms 7 %. */
    static const char *const defaults[] = {
        "fetch.wait.max.ms",
        "100",
        "partition.assignment.strategy",
        "cooperative-sticky",
        "auto.offset.reset",
        "earliest",
        /* The prefetch, held beside a burst being processed: librdkafka's
         * default of 64 MB took a scoring worker's peak in a burst over
         * 100,000 deals past 256 MB (common/runtime/README.md, "Memory,
         * measured"). As much as DEALSCORE_BURST_MAX_KB's default, it
         * still fills a burst from one fill of the queue. */
        "queued.max.messages.kbytes",
        "32768",
        NULL,
    };
    const char *gid = group_id ? group_id : cfg->group_id;
    /* At-least-once: only offsets the application stored are committed. */
    const char *const forced[] = {
        "group.id", gid ? gid : "", "enable.auto.offset.store", "false", "enable.auto.commit", "true", NULL,
    };
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    ds_consumer_t *c = NULL;
    char why[512];
    int rc;

    *out = NULL;
    if (!gid || !gid[0] || ntopics == 0) {
        snprintf(errstr, errstr_size, "a kafka consumer needs a group id and topics");
        return DS_EINVAL;
    }
    c = ds_calloc(1, sizeof *c);
    atomic_init(&c->assigned, 0);
    atomic_init(&c->rebalances, 0u);
    if ((rc = ds__kafka_conf_new(&conf, cfg, defaults, forced, errstr, errstr_size)) != 0) goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, ds__kafka_error_cb);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!c->rk) {
        snprintf(errstr, errstr_size, "could not create kafka consumer: %s", why);
        rc = DS_EIO;
        goto fail;
    }
    conf = NULL; /* now owned by c->rk */
    /* Serve logs and errors from the consumer queue, in consumer_poll. */
    rd_kafka_poll_set_consumer(c->rk);

    subs = rd_kafka_topic_partition_list_new((int)ntopics);
    for (size_t i = 0; i < ntopics; i++)
        rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err) {
        snprintf(errstr, errstr_size, "could not subscribe to kafka topics: %s", rd_kafka_err2str(err));
        rc = ds__kafka_errcode(err);
        goto fail;
    }
    *out = c;
    return 0;

fail:
    if (c->rk) {
        c->closed = true; /* never joined the group */
        rd_kafka_destroy(c->rk);
    }
    if (conf) rd_kafka_conf_destroy(conf);
    free(c);
    return rc;
}

int ds_consumer_poll_batch(ds_consumer_t *c, rd_kafka_message_t **msgs, size_t max, int wait_ms) {
    int64_t deadline = ds_mono_us() + (int64_t)(wait_ms > 0 ? wait_ms : 0) * 1000;
    size_t n = 0;

    while (n < max) {
        int64_t left = (deadline - ds_mono_us()) / 1000;
        if (left < 0) left = 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, (int)left);
        if (!m) {
            if (left == 0) break;
            continue;
        }
        if (!m->err) {
            msgs[n++] = m;
            continue;
        }
        /* Consumer errors are informational, except a fatal one. */
        rd_kafka_resp_err_t err = m->err;
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            char why[512];
            rd_kafka_resp_err_t orig = rd_kafka_fatal_error(c->rk, why, sizeof why);
            ds_error("kafka consumer failed: %s: %s", rd_kafka_err2name(orig), why);
            rd_kafka_message_destroy(m);
            ds_consumer_release(msgs, n);
            return DS_EFATAL;
        }
        if (err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            ds_warn("kafka consumer error: %s: %s", rd_kafka_err2name(err), rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        if (left == 0) break;
    }
    return (int)n;
}

int ds_consumer_poll_ready(ds_consumer_t *c, rd_kafka_message_t **msgs, size_t max, int idle_ms,
                           int fill_ms) {
    int n = ds_consumer_poll_batch(c, msgs, max ? 1 : 0, idle_ms);
    if (n <= 0 || max == 1) return n;
    int more = ds_consumer_poll_batch(c, msgs + 1, max - 1, fill_ms);
    if (more == DS_EFATAL) {
        ds_consumer_release(msgs, 1);
        return DS_EFATAL;
    }
    return 1 + more;
}

int ds_consumer_store(ds_consumer_t *c, rd_kafka_message_t *const *msgs, size_t n) {
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new((int)(n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_message_t *m = msgs[i];
        if (!m || m->err || !m->rkt) continue;
        const char *topic = rd_kafka_topic_name(m->rkt);
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(offs, topic, m->partition);
        if (!tp)
            tp = rd_kafka_topic_partition_list_add(offs, topic, m->partition);
        else if (tp->offset >= m->offset + 1)
            continue;
        tp->offset = m->offset + 1; /* the next message to read */
    }
    int rc = ds_consumer_store_offsets(c, offs);
    rd_kafka_topic_partition_list_destroy(offs);
    return rc;
}

int ds_consumer_store_offsets(ds_consumer_t *c, rd_kafka_topic_partition_list_t *offs) {
    int rc = 0;
    if (offs->cnt == 0) return 0;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, offs);
    for (int i = 0; i < offs->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offs->elems[i];
        if (!tp->err) continue;
        if (tp->err == RD_KAFKA_RESP_ERR__STATE || tp->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
            /* Revoked since the poll: the new owner will redo these. */
            ds_info("kafka offset for %s [%" PRId32 "] not stored: partition no longer assigned", tp->topic,
                    tp->partition);
        } else {
            ds_warn("could not store kafka offset for %s [%" PRId32 "]: %s", tp->topic, tp->partition,
                    rd_kafka_err2str(tp->err));
            rc = DS_EIO;
        }
    }
    if (err && err != RD_KAFKA_RESP_ERR__STATE && err != RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION && rc == 0) {
        ds_warn("could not store kafka offsets: %s", rd_kafka_err2str(err));
        rc = DS_EIO;
    }
    return rc;
}

int ds_consumer_commit(ds_consumer_t *c) {
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET) return 0;
    ds_warn("could not commit kafka offsets: %s", rd_kafka_err2str(err));
    return DS_EIO;
}

void ds_consumer_release(rd_kafka_message_t **msgs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (msgs[i]) rd_kafka_message_destroy(msgs[i]);
        msgs[i] = NULL;
    }
}

static int pause_resume(ds_consumer_t *c, bool pause) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t err;

    c->paused = pause;
    if ((err = rd_kafka_assignment(c->rk, &parts)) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (parts->cnt > 0)
            err = pause ? rd_kafka_pause_partitions(c->rk, parts) : rd_kafka_resume_partitions(c->rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
    }
    if (err) {
        ds_warn("could not %s kafka partitions: %s", pause ? "pause" : "resume", rd_kafka_err2str(err));
        return DS_EIO;
    }
    return 0;
}

int ds_consumer_pause_all(ds_consumer_t *c) { return pause_resume(c, true); }

int ds_consumer_resume_all(ds_consumer_t *c) { return pause_resume(c, false); }

unsigned ds_consumer_rebalances(const ds_consumer_t *c) { return atomic_load(&c->rebalances); }

bool ds_consumer_assigned(const ds_consumer_t *c) { return atomic_load(&c->assigned) > 0; }

rd_kafka_t *ds_consumer_handle(ds_consumer_t *c) { return c->rk; }

/* librdkafka before 2.3.0 (Debian 12 has 2.0.2) aborts in rd_kafka_destroy
 * when a cooperative-sticky member is closed after its JoinGroup answer
 * (which chooses the assignor) and before its first SyncGroup answer (which
 * creates the assignor's state: "assignor_state", librdkafka issue 4312): a
 * worker stopped while it joins the group.
 *
 * The first SyncGroup answer always runs rebalance_cb, with an empty
 * assignment too. So a member whose JoinGroup was answered polls, before it
 * closes, until rebalance_cb ran, for at most JOIN_WAIT_US; what it polls
 * meanwhile is dropped unstored, so it is delivered again. A member that
 * still has no assignment once closed is not destroyed: its JoinGroup
 * answer may have come after that check, and librdkafka no longer tells
 * after the close. */
#define JOIN_WAIT_US (10 * 1000000LL)

static bool never_assigned(const ds_consumer_t *c) { return atomic_load(&c->rebalances) == 0; }

static bool assignor_chosen(ds_consumer_t *c) {
    const char *protocol = rd_kafka_rebalance_protocol(c->rk);
    return protocol && strcmp(protocol, "NONE") != 0;
}

static void await_first_rebalance(ds_consumer_t *c) {
    if (!never_assigned(c) || !assignor_chosen(c)) return;
    ds_info("waiting for the kafka group's first assignment before closing");
    int64_t deadline = ds_mono_us() + JOIN_WAIT_US;
    while (never_assigned(c) && ds_mono_us() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100);
        if (m) rd_kafka_message_destroy(m);
    }
}

int ds_consumer_close(ds_consumer_t *c) {
    if (c->closed) return 0;
    c->closed = true;
    await_first_rebalance(c);
    /* Revokes the assignment through rebalance_cb; with enable.auto.commit
     * librdkafka commits the stored offsets of the revoked partitions first. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
    atomic_store(&c->assigned, 0);
    if (err) {
        ds_warn("could not close kafka consumer: %s", rd_kafka_err2str(err));
        return DS_EIO;
    }
    return 0;
}

/* Closed handles never assigned, kept reachable (for LeakSanitizer) until
 * the process exits; past the array's end their threads' stacks hold them. */
static rd_kafka_t *never_assigned_handles[16];
static atomic_size_t never_assigned_count;

static void keep_until_exit(rd_kafka_t *rk) {
    size_t i = atomic_fetch_add(&never_assigned_count, 1);
    if (i < DS_ARRAY_SIZE(never_assigned_handles)) never_assigned_handles[i] = rk;
    ds_info("kafka consumer closed before its first assignment: its handle is left to the process exit");
}

void ds_consumer_destroy(ds_consumer_t *c) {
    if (!c) return;
    ds_consumer_close(c);
    if (never_assigned(c))
        keep_until_exit(c->rk);
    else
        rd_kafka_destroy(c->rk);
    free(c);
}
