/* Settings from the environment, driven by one table (config.c). An empty
 * variable counts as unset. After ds_config_load the struct is read-only and
 * handed to code explicitly. */
#ifndef DEALSCORE_CONFIG_H
#define DEALSCORE_CONFIG_H

#include <stdio.h>
#include <stddef.h>

typedef enum {
    DS_SVC_INGEST = 1 << 0,
    DS_SVC_FEATURE = 1 << 1,
    DS_SVC_SCORING = 1 << 2,
    DS_SVC_BENCHMARK = 1 << 3,
    DS_SVC_NOTIFY = 1 << 4,
    DS_SVC_ALL = 0x1f,
} ds_svc_kind_t;

typedef struct {
    char *key; /* librdkafka property, e.g. "security.protocol" */
    char *value;
} ds_kv_t;

typedef struct ds_config_s {
    ds_svc_kind_t svc;
    const char *service_name; /* "ingest", "feature", ... */

    /* Common to every binary. */
    char *database_url;  /* DEALSCORE_DATABASE_URL */
    char *kafka_brokers; /* DEALSCORE_KAFKA_BROKERS */
    char *topic_prefix;  /* DEALSCORE_TOPIC_PREFIX ("" when unset) */
    char *http_addr;     /* DEALSCORE_HTTP_ADDR as given */
    char *http_host;     /* parsed from http_addr */
    int http_port;
    char *metrics_addr; /* DEALSCORE_METRICS_ADDR: /metrics on a listener of its own, or NULL */
    char *metrics_host; /* parsed from metrics_addr */
    int metrics_port;
    int log_level;           /* DEALSCORE_LOG_LEVEL, a ds_log_level_t */
    int topic_partitions;    /* DEALSCORE_TOPIC_PARTITIONS */
    int topic_replication;   /* DEALSCORE_TOPIC_REPLICATION */
    char *group_id;          /* DEALSCORE_GROUP_ID, default "dealscore-<service>" */
    int batch_size;          /* DEALSCORE_BATCH_SIZE: messages per consumer batch */
    int batch_wait_ms;       /* DEALSCORE_BATCH_WAIT_MS */
    int shutdown_timeout_ms; /* DEALSCORE_SHUTDOWN_TIMEOUT_MS */
    int burst_batch_size;    /* DEALSCORE_BURST_BATCH_SIZE: most a burst batch holds */
    int burst_max_kb;        /* DEALSCORE_BURST_MAX_KB: most message bytes a burst batch holds, in KB */
    int burst_backlog_ms;    /* DEALSCORE_BURST_BACKLOG_MS */
    int burst_wait_ms;       /* DEALSCORE_BURST_WAIT_MS */
    int burst_flood_ms;      /* DEALSCORE_BURST_FLOOD_MS */
    int burst_quiet_ms;      /* DEALSCORE_BURST_QUIET_MS */
    int flush_linger_ms;     /* DEALSCORE_FLUSH_LINGER_MS */

    /* ingest */
    int max_records;    /* DEALSCORE_MAX_RECORDS per webhook request */
    int max_body_bytes; /* DEALSCORE_MAX_BODY_BYTES */
    int outbox_max;     /* DEALSCORE_OUTBOX_MAX: 503 above this many unsent rows */
    int relay_poll_ms;  /* DEALSCORE_RELAY_POLL_MS: the relay's idle poll */
    int hmac_window_s;  /* DEALSCORE_HMAC_WINDOW_S */
    int commit_batch;   /* DEALSCORE_COMMIT_BATCH: requests per group commit */
    char *csv_aliases;  /* DEALSCORE_CSV_ALIASES: import's column aliases */
    /* field names of the CRM profiles (DEALSCORE_SF_*_FIELD, DEALSCORE_HS_*_FIELD) */
    char *sf_product_field, *sf_persona_field, *sf_region_field;
    char *hs_product_field, *hs_persona_field, *hs_region_field;

    /* feature */
    int feature_chunk; /* DEALSCORE_FEATURE_CHUNK: opportunities per load and INSERT */

    /* scoring */
    char *supabase_jwks;       /* SUPABASE_JWKS: file path or URL */
    char *supabase_jwt_secret; /* SUPABASE_JWT_SECRET: legacy HS256 secret */
    int top_k;                 /* DEALSCORE_TOP_K */
    int min_closed;            /* DEALSCORE_MIN_CLOSED: won and lost deals needed for a model */
    char *cors_origins;        /* DEALSCORE_CORS_ORIGINS: origins of browser apps, comma-separated */
    int prior_min_closed;      /* DEALSCORE_PRIOR_MIN_CLOSED: closed deals for prior:history */
    int risk_ttl_s;            /* DEALSCORE_RISK_TTL_S: risk thresholds reloaded after */

    /* benchmark */
    int bench_months;    /* DEALSCORE_BENCH_MONTHS */
    int bench_min_won;   /* DEALSCORE_BENCH_MIN_WON */
    int bench_refresh_s; /* DEALSCORE_BENCH_REFRESH_S */

    /* notify */
    int notify_max_attempts;  /* DEALSCORE_NOTIFY_MAX_ATTEMPTS: tries before a delivery fails */
    int notify_retry_base_ms; /* DEALSCORE_NOTIFY_RETRY_BASE_MS: wait after the first failure */
    int notify_retry_max_ms;  /* DEALSCORE_NOTIFY_RETRY_MAX_MS: the longest wait between tries */
    int notify_timeout_ms;    /* DEALSCORE_NOTIFY_TIMEOUT_MS: one POST, connect to last byte */
    int notify_concurrency;   /* DEALSCORE_NOTIFY_CONCURRENCY: deliveries in flight */
    int notify_poll_ms;       /* DEALSCORE_NOTIFY_POLL_MS: how often due retries are looked for */
    int notify_retain_days;   /* DEALSCORE_NOTIFY_RETAIN_DAYS: delivered rows kept */
    char *notify_source;      /* DEALSCORE_NOTIFY_SOURCE: the CloudEvents source */

    /* KAFKA_<PROPERTY> variables, passed to librdkafka as they are. */
    ds_kv_t *kafka_props;
    size_t kafka_props_count;
} ds_config_t;

/* Loads settings for service kind svc from envp (NULL-terminated
 * "NAME=value" strings, usually environ). Validates every value. Returns 0,
 * or DS_EINVAL with a one-line message naming the variable in errstr.
 * On success the caller releases the strings with ds_config_close(). */
int ds_config_load(ds_config_t *cfg, ds_svc_kind_t svc, char **envp, char *errstr, size_t errstr_size);
void ds_config_close(ds_config_t *cfg);

/* Prints every variable that applies to svc, with its default and meaning. */
void ds_config_print_help(FILE *out, ds_svc_kind_t svc);

/* Full topic name: prefix + base ("opportunity.changed"). Caller frees. */
char *ds_config_topic(const ds_config_t *cfg, const char *base);

#endif
