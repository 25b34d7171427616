/* Settings from the environment, driven by one table (as redis's static_configs[]). */
#include "base/config.h"
#include "base/common.h"
#include "base/log.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

typedef enum { T_STR, T_INT, T_LOGLEVEL, T_ADDR, T_BROKERS, T_PGURL, T_ORIGINS } cfg_type_t;

typedef struct {
    const char *env;
    cfg_type_t type;
    unsigned svcs;   /* DS_SVC_* mask of services that read it */
    long min, max;   /* for T_INT */
    const char *def; /* default as text; NULL = unset, or per service (svc_defaults) */
    size_t off;      /* offsetof in ds_config_t */
    const char *help;
} cfg_entry_t;

#define OFF(f) offsetof(ds_config_t, f)
#define ALL DS_SVC_ALL
#define WORKERS (DS_SVC_FEATURE | DS_SVC_SCORING | DS_SVC_BENCHMARK | DS_SVC_NOTIFY)

static const cfg_entry_t entries[] = {
    {"DEALSCORE_DATABASE_URL", T_PGURL, ALL, 0, 0, "postgresql://postgres@127.0.0.1:5432/dealscore",
     OFF(database_url), "Postgres connection URI or conninfo (libpq)"},
    {"DEALSCORE_KAFKA_BROKERS", T_BROKERS, ALL, 0, 0, "127.0.0.1:9092", OFF(kafka_brokers),
     "Kafka bootstrap servers, host:port[,host:port...]"},
    {"DEALSCORE_TOPIC_PREFIX", T_STR, ALL, 0, 0, "", OFF(topic_prefix),
     "prefix for every topic name (several environments on one cluster)"},
    {"DEALSCORE_HTTP_ADDR", T_ADDR, ALL, 0, 0, NULL, OFF(http_addr),
     "HTTP listen address host:port (health, metrics, API)"},
    {"DEALSCORE_METRICS_ADDR", T_ADDR, ALL, 0, 0, NULL, OFF(metrics_addr),
     "listen address host:port of a separate listener for GET /metrics, which then leaves "
     "DEALSCORE_HTTP_ADDR (unset: /metrics is served on DEALSCORE_HTTP_ADDR)"},
    {"DEALSCORE_LOG_LEVEL", T_LOGLEVEL, ALL, 0, 0, "info", OFF(log_level), "debug, info, warn or error"},
    {"DEALSCORE_TOPIC_PARTITIONS", T_INT, ALL, 1, 1024, "6", OFF(topic_partitions),
     "partitions for topics this service creates"},
    {"DEALSCORE_TOPIC_REPLICATION", T_INT, ALL, 1, 16, "1", OFF(topic_replication),
     "replication factor for topics this service creates"},
    {"DEALSCORE_GROUP_ID", T_STR, WORKERS, 0, 0, NULL, OFF(group_id),
     "Kafka consumer group (default dealscore-<service>)"},
    {"DEALSCORE_BATCH_SIZE", T_INT, WORKERS, 1, 100000, NULL, OFF(batch_size),
     "most messages handled in one batch"},
    {"DEALSCORE_BATCH_WAIT_MS", T_INT, WORKERS, 0, 60000, NULL, OFF(batch_wait_ms),
     "longest wait for more messages after a batch's first, milliseconds (0: what is ready then; "
     "the benchmark and notify workers, off the path to a prediction, wait 20 by default)"},
    {"DEALSCORE_BURST_BATCH_SIZE", T_INT, WORKERS, 1, 1000000, "100000", OFF(burst_batch_size),
     "most messages a burst batch holds, one per deal (a burst: see DEALSCORE_BURST_BACKLOG_MS); "
     "at most DEALSCORE_BATCH_SIZE turns bursts off"},
    {"DEALSCORE_BURST_MAX_KB", T_INT, WORKERS, 1, 4194304, "32768", OFF(burst_max_kb),
     "most kilobytes of messages (payloads and keys) a burst batch holds: a burst over many "
     "distinct deals ends there, and its memory with it"},
    {"DEALSCORE_BURST_BACKLOG_MS", T_INT, WORKERS, 0, 600000, "1000", OFF(burst_backlog_ms),
     "a full batch starts a burst only when the backlog behind it (the consumer lag) would take "
     "longer than this to clear at the worker's measured rate, net of the arrivals, milliseconds"},
    {"DEALSCORE_BURST_WAIT_MS", T_INT, WORKERS, 0, 60000, "1000", OFF(burst_wait_ms),
     "longest time a burst batch gathers, milliseconds, unless the input floods"},
    {"DEALSCORE_BURST_FLOOD_MS", T_INT, WORKERS, 0, 600000, "10000", OFF(burst_flood_ms),
     "longest time a burst batch gathers while the input floods (every window of "
     "DEALSCORE_BURST_QUIET_MS brings at least DEALSCORE_BATCH_SIZE messages), milliseconds; "
     "at most DEALSCORE_BURST_WAIT_MS: no longer than that"},
    {"DEALSCORE_BURST_QUIET_MS", T_INT, WORKERS, 1, 60000, "100", OFF(burst_quiet_ms),
     "a burst batch is complete when, at the end of a window this long, the backlog is drained "
     "or the window brought fewer than a tenth of DEALSCORE_BATCH_SIZE messages (the input "
     "paused or slowed to a trickle), milliseconds"},
    {"DEALSCORE_FLUSH_LINGER_MS", T_INT, ALL, 0, 1000, "5", OFF(flush_linger_ms),
     "while this process produces at least one event per this many milliseconds, a batch's "
     "flush to Kafka waits this long before sending (fewer, fuller produce requests; bigger "
     "next batches); slower, it sends at once; 0: always at once"},
    {"DEALSCORE_SHUTDOWN_TIMEOUT_MS", T_INT, ALL, 100, 600000, "4000", OFF(shutdown_timeout_ms),
     "time allowed to finish in-flight work on SIGTERM, milliseconds"},
    {"DEALSCORE_MAX_RECORDS", T_INT, DS_SVC_INGEST, 1, 1000000, "1000", OFF(max_records),
     "most records in one webhook request"},
    {"DEALSCORE_MAX_BODY_BYTES", T_INT, DS_SVC_INGEST, 1024, 1 << 30, "8388608", OFF(max_body_bytes),
     "largest webhook body accepted, bytes (413 above)"},
    {"DEALSCORE_RELAY_POLL_MS", T_INT, DS_SVC_INGEST, 10, 3600000, "200", OFF(relay_poll_ms),
     "how often the outbox relay looks for rows while nothing wakes it, milliseconds (a commit of "
     "this process or a notification on dealscore_outbox wakes it at once)"},
    {"DEALSCORE_OUTBOX_MAX", T_INT, DS_SVC_INGEST, 1, INT_MAX, "1000000", OFF(outbox_max),
     "unsent outbox rows above which webhooks answer 503"},
    {"DEALSCORE_HMAC_WINDOW_S", T_INT, DS_SVC_INGEST, 1, 86400, "300", OFF(hmac_window_s),
     "signed webhooks: largest difference between X-Dealscore-Timestamp and the clock, seconds "
     "(a committed request's answer is kept twice as long, for its repeats)"},
    {"DEALSCORE_COMMIT_BATCH", T_INT, DS_SVC_INGEST, 1, 10000, "64", OFF(commit_batch),
     "most webhook requests group-committed in one transaction"},
    {"DEALSCORE_CSV_ALIASES", T_STR, DS_SVC_INGEST, 0, 0, NULL, OFF(csv_aliases),
     "import: CSV column aliases from=to[,from2=to2] (--alias wins)"},
    {"DEALSCORE_SF_PRODUCT_FIELD", T_STR, DS_SVC_INGEST, 0, 0, "Product_Category__c", OFF(sf_product_field),
     "?profile=salesforce: the Opportunity field read as product_category"},
    {"DEALSCORE_SF_PERSONA_FIELD", T_STR, DS_SVC_INGEST, 0, 0, "Persona__c", OFF(sf_persona_field),
     "?profile=salesforce: the Opportunity field read as persona"},
    {"DEALSCORE_SF_REGION_FIELD", T_STR, DS_SVC_INGEST, 0, 0, "BillingCountry", OFF(sf_region_field),
     "?profile=salesforce: the Account field read as region"},
    {"DEALSCORE_HS_PRODUCT_FIELD", T_STR, DS_SVC_INGEST, 0, 0, "pipeline", OFF(hs_product_field),
     "?profile=hubspot: the deal property read as product_category"},
    {"DEALSCORE_HS_PERSONA_FIELD", T_STR, DS_SVC_INGEST, 0, 0, NULL, OFF(hs_persona_field),
     "?profile=hubspot: the deal property read as persona (unset: none)"},
    {"DEALSCORE_HS_REGION_FIELD", T_STR, DS_SVC_INGEST, 0, 0, "country", OFF(hs_region_field),
     "?profile=hubspot: the company property read as region"},
    {"DEALSCORE_FEATURE_CHUNK", T_INT, DS_SVC_FEATURE, 1, 100000, "250", OFF(feature_chunk),
     "opportunities per load and snapshot INSERT within a batch (one chunk is written while the next loads)"},
    {"SUPABASE_JWKS", T_STR, DS_SVC_SCORING, 0, 0, NULL, OFF(supabase_jwks),
     "JWKS file path or URL with the keys that sign session JWTs"},
    {"SUPABASE_JWT_SECRET", T_STR, DS_SVC_SCORING, 0, 0, NULL, OFF(supabase_jwt_secret),
     "legacy HS256 JWT secret (optional)"},
    {"DEALSCORE_TOP_K", T_INT, DS_SVC_SCORING, 1, 100, "5", OFF(top_k),
     "drivers reported each way (positive, negative)"},
    {"DEALSCORE_CORS_ORIGINS", T_ORIGINS, DS_SVC_SCORING, 0, 0, NULL, OFF(cors_origins),
     "origins of browser apps that may call POST /api/predict, comma-separated scheme://host[:port] "
     "(unset: none; CORS)"},
    {"DEALSCORE_MIN_CLOSED", T_INT, DS_SVC_SCORING, 1, 1000000, "40", OFF(min_closed),
     "won and lost deals each needed before a trained model replaces the stage prior"},
    {"DEALSCORE_PRIOR_MIN_CLOSED", T_INT, DS_SVC_SCORING, 1, 1000000, "20", OFF(prior_min_closed),
     "closed deals (won and lost among them) before an org without a model scores with its own stage win "
     "rates (prior:history) rather than the CRM's probability or the stage ladder"},
    {"DEALSCORE_RISK_TTL_S", T_INT, DS_SVC_SCORING, 1, 86400, "600", OFF(risk_ttl_s),
     "seconds the scoring worker keeps an org's risk rules and won-deal thresholds before reloading them "
     "(off its loop, scoring with the old ones meanwhile)"},
    {"DEALSCORE_BENCH_MONTHS", T_INT, DS_SVC_BENCHMARK, 1, 120, "12", OFF(bench_months),
     "cohort window: deals closed in the last N months"},
    {"DEALSCORE_BENCH_MIN_WON", T_INT, DS_SVC_BENCHMARK, 1, 100000, "10", OFF(bench_min_won),
     "won deals a cohort needs before attributes are relaxed"},
    {"DEALSCORE_BENCH_REFRESH_S", T_INT, DS_SVC_BENCHMARK, 0, 86400 * 7, "3600", OFF(bench_refresh_s),
     "periodic refresh of cached cohorts, seconds (0 = off)"},
    {"DEALSCORE_NOTIFY_MAX_ATTEMPTS", T_INT, DS_SVC_NOTIFY, 1, 1000, "15", OFF(notify_max_attempts),
     "tries of one event delivery before it is marked failed (a failed delivery can be replayed)"},
    {"DEALSCORE_NOTIFY_RETRY_BASE_MS", T_INT, DS_SVC_NOTIFY, 1, 3600000, "1000", OFF(notify_retry_base_ms),
     "wait before the second try, milliseconds; it doubles with each try (half of it random jitter)"},
    {"DEALSCORE_NOTIFY_RETRY_MAX_MS", T_INT, DS_SVC_NOTIFY, 1, 86400000, "900000", OFF(notify_retry_max_ms),
     "longest wait between two tries, milliseconds"},
    {"DEALSCORE_NOTIFY_TIMEOUT_MS", T_INT, DS_SVC_NOTIFY, 100, 600000, "10000", OFF(notify_timeout_ms),
     "time allowed for one POST to a subscriber, connect to last byte, milliseconds (past it: a failed try)"},
    {"DEALSCORE_NOTIFY_CONCURRENCY", T_INT, DS_SVC_NOTIFY, 1, 256, "4", OFF(notify_concurrency),
     "deliveries in flight at once (one thread, HTTP client and Postgres connection each)"},
    {"DEALSCORE_NOTIFY_POLL_MS", T_INT, DS_SVC_NOTIFY, 10, 600000, "1000", OFF(notify_poll_ms),
     "how often idle delivery threads look for due retries and replays, milliseconds (new events "
     "wake them at once)"},
    {"DEALSCORE_NOTIFY_RETAIN_DAYS", T_INT, DS_SVC_NOTIFY, 1, 3650, "14", OFF(notify_retain_days),
     "delivered events are deleted after this many days (failed ones stay until replayed)"},
    {"DEALSCORE_NOTIFY_SOURCE", T_STR, DS_SVC_NOTIFY, 0, 0, "/dealscore", OFF(notify_source),
     "the CloudEvents source attribute of the events sent"},
};

/* What differs by service: its name, its consumer group, its listener,
 * its batch wait and size. The benchmark and notify workers are off the
 * path from a change to its prediction: waiting 20 ms for more of a batch
 * costs no one's latency, and each batch costs them statements of its
 * own. At 500 changes/s one per request, the benchmark worker's backend
 * used 64-67 us per change against 233-242, notify's 9 against 39
 * (tools/bench/e2e/README.md). The scoring worker reads, scores and
 * writes each batch in turn and is the first to fall behind: with
 * batches of 500, at 5,000 changes/s its polls came back full and it
 * gathered bursts that held p99 over a second; with 2,000 it gathered
 * one or none ("The scoring worker's batch" there). */
typedef struct {
    ds_svc_kind_t svc;
    const char *name, *group_id, *http_addr, *batch_wait_ms, *batch_size;
} svc_defaults_t;

static const svc_defaults_t *svc_defaults(ds_svc_kind_t svc) {
    static const svc_defaults_t known[] = {
        {DS_SVC_INGEST, "ingest", "dealscore-ingest", "127.0.0.1:8080", "0", "500"},
        {DS_SVC_SCORING, "scoring", "dealscore-scoring", "127.0.0.1:8081", "0", "2000"},
        {DS_SVC_FEATURE, "feature", "dealscore-feature", "127.0.0.1:8082", "0", "500"},
        {DS_SVC_BENCHMARK, "benchmark", "dealscore-benchmark", "127.0.0.1:8083", "20", "500"},
        {DS_SVC_NOTIFY, "notify", "dealscore-notify", "127.0.0.1:8084", "20", "500"},
    };
    static const svc_defaults_t other = {0, "dealscore", "dealscore-dealscore", "127.0.0.1:8080", "0", "500"};
    for (size_t i = 0; i < DS_ARRAY_SIZE(known); i++)
        if (known[i].svc == svc) return &known[i];
    return &other;
}

/* e's default for svc (NULL: unset). */
static const char *entry_default(const cfg_entry_t *e, ds_svc_kind_t svc) {
    if (e->off == OFF(http_addr)) return svc_defaults(svc)->http_addr;
    if (e->off == OFF(group_id)) return svc_defaults(svc)->group_id;
    if (e->off == OFF(batch_wait_ms)) return svc_defaults(svc)->batch_wait_ms;
    if (e->off == OFF(batch_size)) return svc_defaults(svc)->batch_size;
    return e->def;
}

static const char *env_lookup(char **envp, const char *name) {
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

static int parse_port(const char *s, int *port) {
    if (!*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1 || v > 65535) return -1;
    *port = (int)v;
    return 0;
}

/* host:port, [v6]:port or :port. */
static int parse_addr(const char *s, char **host, int *port) {
    const char *colon;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') return -1;
        if (parse_port(rb + 2, port)) return -1;
        *host = ds_strndup(s + 1, (size_t)(rb - s - 1));
        return 0;
    }
    colon = strrchr(s, ':');
    if (!colon) return -1;
    if (parse_port(colon + 1, port)) return -1;
    if (colon == s)
        *host = ds_strdup("0.0.0.0");
    else
        *host = ds_strndup(s, (size_t)(colon - s));
    for (const char *p = *host; *p; p++)
        if (isspace((unsigned char)*p) || *p == '/') {
            free(*host);
            *host = NULL;
            return -1;
        }
    return 0;
}

static int check_brokers(const char *s) {
    char *copy = ds_strdup(s), *rest = copy, *tok;
    int rc = 0, n = 0;
    /* strsep keeps empty entries ("a:1,,") so they are rejected. */
    while ((tok = strsep(&rest, ",")) != NULL) {
        while (*tok == ' ') tok++;
        /* Accept an optional scheme like PLAINTEXT:// or SASL_SSL://. */
        char *scheme = strstr(tok, "://");
        if (scheme) tok = scheme + 3;
        char *host = NULL;
        int port;
        if (parse_addr(tok, &host, &port) || !host[0] || strcmp(host, "0.0.0.0") == 0) rc = -1;
        free(host);
        n++;
        if (rc) break;
    }
    free(copy);
    return n == 0 ? -1 : rc;
}

/* One origin as a browser sends it: http or https, a host (a name, an IPv4
 * address or a bracketed IPv6 one), an optional port; no path, no '*'. */
static int check_origin(const char *o, size_t len) {
    size_t skip = len >= 8 && strncasecmp(o, "https://", 8) == 0  ? 8
                  : len >= 7 && strncasecmp(o, "http://", 7) == 0 ? 7
                                                                  : 0;
    if (!skip || skip == len) return -1;
    size_t i = skip;
    if (o[i] == '[') {
        while (i < len && o[i] != ']') i++;
        if (i == len) return -1;
        i++;
    } else {
        while (i < len && (isalnum((unsigned char)o[i]) || o[i] == '.' || o[i] == '-')) i++;
        if (i == skip) return -1;
    }
    if (i == len) return 0;
    if (o[i++] != ':' || i == len || len - i > 5) return -1;
    for (; i < len; i++)
        if (!isdigit((unsigned char)o[i])) return -1;
    return 0;
}

/* A comma-separated list of origins (spaces around commas allowed); the
 * first bad one into bad. */
static int check_origins(const char *s, char *bad, size_t badsz) {
    for (const char *p = s; *p;) {
        while (*p == ' ') p++;
        size_t len = strcspn(p, ", ");
        if (check_origin(p, len)) {
            snprintf(bad, badsz, "%.*s", (int)len, p);
            return -1;
        }
        p += len;
        while (*p == ' ') p++;
        if (*p == ',') p++;
    }
    return 0;
}

static int check_pgurl(const char *s, char *why, size_t whysz) {
    char *err = NULL;
    if (!*s) {
        snprintf(why, whysz, "empty");
        return -1;
    }
    PQconninfoOption *opts = PQconninfoParse(s, &err);
    if (!opts) {
        snprintf(why, whysz, "%s", err ? err : "cannot parse");
        if (err) {
            size_t n = strlen(why);
            while (n && (why[n - 1] == '\n' || why[n - 1] == ' ')) why[--n] = '\0';
        }
        PQfreemem(err);
        return -1;
    }
    /* libpq checks ports only when connecting; check them now. */
    int rc = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "port") != 0 || !o->val || !*o->val) continue;
        char *copy = ds_strdup(o->val), *rest = copy, *tok;
        while ((tok = strsep(&rest, ",")) != NULL) {
            int port;
            if (*tok && parse_port(tok, &port)) {
                snprintf(why, whysz, "invalid port \"%s\"", tok);
                rc = -1;
                break;
            }
        }
        free(copy);
    }
    PQconninfoFree(opts);
    return rc;
}

/* KAFKA_SECURITY_PROTOCOL -> security.protocol */
static char *kafka_prop_name(const char *env_name) {
    char *p = ds_strdup(env_name + 6);
    for (char *c = p; *c; c++) *c = *c == '_' ? '.' : (char)tolower((unsigned char)*c);
    return p;
}

int ds_config_load(ds_config_t *cfg, ds_svc_kind_t svc, char **envp, char *errstr, size_t errstr_size) {
    memset(cfg, 0, sizeof *cfg);
    cfg->svc = svc;
    cfg->service_name = svc_defaults(svc)->name;
    for (size_t i = 0; i < DS_ARRAY_SIZE(entries); i++) {
        const cfg_entry_t *e = &entries[i];
        if (!(e->svcs & (unsigned)svc)) continue;
        const char *v = env_lookup(envp, e->env);
        if (v && !*v) v = NULL; /* an empty variable is unset */
        const char *def = entry_default(e, svc);
        if (!v) v = def;
        void *field = (char *)cfg + e->off;
        char why[256] = "";
        switch (e->type) {
        case T_STR: *(char **)field = v ? ds_strdup(v) : NULL; break;
        case T_INT: {
            char *end;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (errno || end == v || *end || n < e->min || n > e->max) {
                snprintf(errstr, errstr_size, "%s: invalid value \"%s\" (an integer from %ld to %ld)", e->env,
                         v, e->min, e->max);
                goto fail;
            }
            *(int *)field = (int)n;
            break;
        }
        case T_LOGLEVEL: {
            int lv = ds_log_level_parse(v);
            if (lv < 0) {
                snprintf(errstr, errstr_size, "%s: invalid value \"%s\" (one of debug, info, warn, error)",
                         e->env, v);
                goto fail;
            }
            *(int *)field = lv;
            break;
        }
        case T_ADDR: {
            if (!v) break;
            bool metrics = e->off == OFF(metrics_addr);
            if (parse_addr(v, metrics ? &cfg->metrics_host : &cfg->http_host,
                           metrics ? &cfg->metrics_port : &cfg->http_port)) {
                snprintf(errstr, errstr_size, "%s: invalid address \"%s\" (host:port with port 1-65535)",
                         e->env, v);
                goto fail;
            }
            *(char **)field = ds_strdup(v);
            break;
        }
        case T_BROKERS:
            if (check_brokers(v)) {
                snprintf(errstr, errstr_size, "%s: invalid broker list \"%s\" (host:port[,host:port...])",
                         e->env, v);
                goto fail;
            }
            *(char **)field = ds_strdup(v);
            break;
        case T_PGURL:
            if (check_pgurl(v, why, sizeof why)) {
                snprintf(errstr, errstr_size, "%s: invalid Postgres URL: %s", e->env, why);
                goto fail;
            }
            *(char **)field = ds_strdup(v);
            break;
        case T_ORIGINS:
            if (v && check_origins(v, why, sizeof why)) {
                snprintf(errstr, errstr_size,
                         "%s: \"%s\" is not an origin (scheme://host[:port], comma-separated, no path or *)",
                         e->env, why);
                goto fail;
            }
            *(char **)field = v ? ds_strdup(v) : NULL;
            break;
        }
    }
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, "KAFKA_", 6) != 0) continue;
        /* Kubernetes injects KAFKA_PORT, KAFKA_PORT_9092_TCP..., KAFKA_SERVICE_HOST
         * for a Service named kafka: those are not librdkafka properties. */
        if (strncmp(*e, "KAFKA_PORT", 10) == 0 || strncmp(*e, "KAFKA_SERVICE_", 14) == 0) continue;
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e + 6 || !eq[1]) continue;
        char *name = ds_strndup(*e, (size_t)(eq - *e));
        cfg->kafka_props = ds_realloc(cfg->kafka_props, (cfg->kafka_props_count + 1) * sizeof(ds_kv_t));
        cfg->kafka_props[cfg->kafka_props_count].key = kafka_prop_name(name);
        cfg->kafka_props[cfg->kafka_props_count].value = ds_strdup(eq + 1);
        cfg->kafka_props_count++;
        free(name);
    }
    return DS_OK;
fail:
    ds_config_close(cfg);
    return DS_EINVAL;
}

void ds_config_close(ds_config_t *cfg) {
    if (!cfg) return;
    for (size_t i = 0; i < DS_ARRAY_SIZE(entries); i++) {
        const cfg_entry_t *e = &entries[i];
        if (e->type == T_STR || e->type == T_ADDR || e->type == T_BROKERS || e->type == T_PGURL ||
            e->type == T_ORIGINS) {
            char **field = (char **)((char *)cfg + e->off);
            free(*field);
            *field = NULL;
        }
    }
    free(cfg->http_host);
    cfg->http_host = NULL;
    free(cfg->metrics_host);
    cfg->metrics_host = NULL;
    for (size_t i = 0; i < cfg->kafka_props_count; i++) {
        free(cfg->kafka_props[i].key);
        free(cfg->kafka_props[i].value);
    }
    free(cfg->kafka_props);
    cfg->kafka_props = NULL;
    cfg->kafka_props_count = 0;
}

void ds_config_print_help(FILE *out, ds_svc_kind_t svc) {
    fprintf(out, "Settings (environment variables; an empty variable counts as unset):\n");
    for (size_t i = 0; i < DS_ARRAY_SIZE(entries); i++) {
        const cfg_entry_t *e = &entries[i];
        if (!(e->svcs & (unsigned)svc)) continue;
        const char *def = entry_default(e, svc);
        fprintf(out, "  %-30s %s\n  %-30s default: %s\n", e->env, e->help, "",
                def ? (*def ? def : "(empty)") : "(unset)");
    }
    fprintf(out, "  %-30s %s\n", "KAFKA_<PROPERTY>",
            "passed to librdkafka as <property> (KAFKA_SECURITY_PROTOCOL=SASL_SSL sets security.protocol)");
}

char *ds_config_topic(const ds_config_t *cfg, const char *base) {
    return ds_asprintf("%s%s", cfg->topic_prefix ? cfg->topic_prefix : "", base);
}
