/* ds-kafka-admin: the small Kafka admin client the local stack uses.
 *
 * The 3.9 broker jar (kafka_2.13) does not carry TopicCommand (it is in the
 * kafka-tools artifact), and every JVM start costs 1-2 s on two cores.
 * This helper talks to the broker through the same librdkafka the services
 * link, in one short process:
 *
 *   ds-kafka-admin wait   BROKERS TIMEOUT_MS     broker answers a metadata request
 *   ds-kafka-admin create BROKERS PARTITIONS RF TOPIC...
 *                                                create topics (existing ones are fine)
 *   ds-kafka-admin list   BROKERS                "topic partitions" per line
 *
 * deploy/local/stack compiles it on first use into .local/bin/.
 * Exit codes: 0 ok, 1 failure (message on stderr), 2 usage. */
#include <librdkafka/rdkafka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

static void quiet_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    (void)err;
    (void)reason;
    (void)opaque;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static rd_kafka_t *connect_broker(const char *brokers) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "reconnect.backoff.ms", "50", err, sizeof err) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "250", err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "ds-kafka-admin: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_conf_set_error_cb(conf, quiet_error);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) fprintf(stderr, "ds-kafka-admin: %s\n", err);
    return rk;
}

/* Polls metadata until the broker answers with at least one broker and a
 * controller, or the deadline passes. */
static int cmd_wait(const char *brokers, long timeout_ms) {
    rd_kafka_t *rk = connect_broker(brokers);
    if (!rk) return 1;
    long long deadline = now_ms() + timeout_ms;
    rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;
    int rc = 1;
    while (now_ms() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        long left = (long)(deadline - now_ms());
        if (left < 100) left = 100;
        last = rd_kafka_metadata(rk, 0, NULL, &md, left < 2000 ? (int)left : 2000);
        if (last == RD_KAFKA_RESP_ERR_NO_ERROR) {
            int ok = md->broker_cnt > 0;
            rd_kafka_metadata_destroy(md);
            if (ok) {
                rc = 0;
                break;
            }
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc)
        fprintf(stderr, "ds-kafka-admin: no metadata from %s within %ld ms (%s)\n", brokers, timeout_ms,
                rd_kafka_err2str(last));
    rd_kafka_destroy(rk);
    return rc;
}

static int cmd_create(const char *brokers, int partitions, int rf, char **topics, int n) {
    rd_kafka_t *rk = connect_broker(brokers);
    if (!rk) return 1;
    char err[512];
    rd_kafka_NewTopic_t **nt = calloc((size_t)n, sizeof *nt);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i], partitions, rf, err, sizeof err);
        if (!nt[i]) {
            fprintf(stderr, "ds-kafka-admin: topic %s: %s\n", topics[i], err);
            rc = 1;
        }
    }
    if (rc) goto out;

    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opt, 30000, err, sizeof err);
    rd_kafka_AdminOptions_set_operation_timeout(opt, 30000, err, sizeof err);
    rd_kafka_CreateTopics(rk, nt, (size_t)n, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (!ev) {
        fprintf(stderr, "ds-kafka-admin: CreateTopics timed out\n");
        rc = 1;
    } else if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "ds-kafka-admin: CreateTopics: %s\n", rd_kafka_event_error_string(ev));
        rc = 1;
    } else {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            const char *name = rd_kafka_topic_result_name(tr[i]);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
                printf("created %s\n", name);
            } else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                printf("exists  %s\n", name);
            } else {
                const char *msg = rd_kafka_topic_result_error_string(tr[i]);
                fprintf(stderr, "ds-kafka-admin: topic %s: %s\n", name, msg ? msg : rd_kafka_err2str(e));
                rc = 1;
            }
        }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
out:
    for (int i = 0; i < n; i++)
        if (nt[i]) rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    rd_kafka_destroy(rk);
    return rc;
}

static int cmd_list(const char *brokers) {
    rd_kafka_t *rk = connect_broker(brokers);
    if (!rk) return 1;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 5000);
    if (e) {
        fprintf(stderr, "ds-kafka-admin: metadata: %s\n", rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return 1;
    }
    for (int i = 0; i < md->topic_cnt; i++)
        if (md->topics[i].topic[0] != '_')
            printf("%s %d\n", md->topics[i].topic, md->topics[i].partition_cnt);
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "wait") == 0) return cmd_wait(argv[2], atol(argv[3]));
    if (argc >= 6 && strcmp(argv[1], "create") == 0)
        return cmd_create(argv[2], atoi(argv[3]), atoi(argv[4]), argv + 5, argc - 5);
    if (argc == 3 && strcmp(argv[1], "list") == 0) return cmd_list(argv[2]);
    fprintf(stderr, "usage: ds-kafka-admin wait BROKERS TIMEOUT_MS\n"
                    "       ds-kafka-admin create BROKERS PARTITIONS RF TOPIC...\n"
                    "       ds-kafka-admin list BROKERS\n");
    return 2;
}
