/* Settings from the environment: defaults, validation, KAFKA_* passthrough. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/common.h"

static int load(ds_config_t *cfg, ds_svc_kind_t svc, char **env, char *err, size_t errsz) {
    return ds_config_load(cfg, svc, env, err, errsz);
}

Test(config, defaults_per_service) {
    char *env[] = {NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(load(&cfg, DS_SVC_SCORING, env, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg.http_addr, "127.0.0.1:8081");
    cr_assert_str_eq(cfg.http_host, "127.0.0.1");
    cr_assert_eq(cfg.http_port, 8081);
    cr_assert_str_eq(cfg.kafka_brokers, "127.0.0.1:9092");
    cr_assert_str_eq(cfg.topic_prefix, "");
    cr_assert_str_eq(cfg.group_id, "dealscore-scoring");
    cr_assert_eq(cfg.top_k, 5);
    cr_assert_eq(cfg.min_closed, 40);
    cr_assert_eq(cfg.batch_size, 2000, "the scoring worker takes larger batches");
    cr_assert_null(cfg.cors_origins, "no browser origin unless listed");
    ds_config_close(&cfg);

    cr_assert_eq(load(&cfg, DS_SVC_INGEST, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg.http_port, 8080);
    cr_assert_eq(cfg.max_records, 1000);
    ds_config_close(&cfg);
    cr_assert_eq(load(&cfg, DS_SVC_FEATURE, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg.http_port, 8082);
    cr_assert_eq(cfg.batch_size, 500);
    cr_assert_eq(cfg.burst_batch_size, 100000);
    cr_assert_eq(cfg.burst_max_kb, 32768);
    cr_assert_eq(cfg.burst_backlog_ms, 1000);
    cr_assert_eq(cfg.burst_wait_ms, 1000);
    cr_assert_eq(cfg.burst_flood_ms, 10000);
    cr_assert_eq(cfg.burst_quiet_ms, 100);
    cr_assert_eq(cfg.batch_wait_ms, 0, "a worker on the prediction's path waits for nothing");
    ds_config_close(&cfg);
    cr_assert_eq(load(&cfg, DS_SVC_BENCHMARK, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg.http_port, 8083);
    cr_assert_eq(cfg.bench_months, 12);
    cr_assert_eq(cfg.batch_wait_ms, 20, "the benchmark worker gathers its batches");
    ds_config_close(&cfg);
    cr_assert_eq(load(&cfg, DS_SVC_NOTIFY, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg.batch_wait_ms, 20, "the notify worker gathers its batches");
    ds_config_close(&cfg);
}

/* The default --help prints for the variable name (the rest of its
 * "default: " line; the caller frees it). */
static char *help_default(ds_svc_kind_t svc, const char *name) {
    char *help = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&help, &len);
    ds_config_print_help(out, svc);
    fclose(out);
    const char *at = strstr(help, name);
    const char *def = at ? strstr(at, "default: ") : NULL;
    char *value = NULL;
    if (def) {
        def += strlen("default: ");
        value = ds_strndup(def, strcspn(def, "\n"));
    }
    free(help);
    return value;
}

/* A service's own default gives way to the variable, 0 included, and
 * --help prints the service's default. */
Test(config, the_benchmark_workers_batch_wait_can_be_set) {
    char *env[] = {"DEALSCORE_BATCH_WAIT_MS=0", NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(load(&cfg, DS_SVC_BENCHMARK, env, err, sizeof err), 0, "%s", err);
    cr_expect_eq(cfg.batch_wait_ms, 0);
    ds_config_close(&cfg);
    char *def = help_default(DS_SVC_BENCHMARK, "DEALSCORE_BATCH_WAIT_MS");
    cr_assert_not_null(def);
    cr_expect_str_eq(def, "20");
    free(def);
}

/* The scoring worker's batch size gives way to the variable, and --help
 * prints each worker's own default. */
Test(config, the_scoring_workers_batch_size_can_be_set) {
    char *env[] = {"DEALSCORE_BATCH_SIZE=500", NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(load(&cfg, DS_SVC_SCORING, env, err, sizeof err), 0, "%s", err);
    cr_expect_eq(cfg.batch_size, 500);
    ds_config_close(&cfg);
    char *scoring = help_default(DS_SVC_SCORING, "DEALSCORE_BATCH_SIZE");
    char *feature = help_default(DS_SVC_FEATURE, "DEALSCORE_BATCH_SIZE");
    cr_assert(scoring && feature);
    cr_expect_str_eq(scoring, "2000");
    cr_expect_str_eq(feature, "500");
    free(scoring);
    free(feature);
}

/* Each worker has its own consumer group unless the variable names one;
 * --help prints the worker's own. */
Test(config, the_consumer_group_is_the_services_own) {
    char *none[] = {NULL}, *named[] = {"DEALSCORE_GROUP_ID=team-a", NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(load(&cfg, DS_SVC_FEATURE, none, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(cfg.group_id, "dealscore-feature");
    ds_config_close(&cfg);
    cr_assert_eq(load(&cfg, DS_SVC_BENCHMARK, named, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(cfg.group_id, "team-a");
    ds_config_close(&cfg);
    char *def = help_default(DS_SVC_NOTIFY, "DEALSCORE_GROUP_ID");
    cr_assert_not_null(def);
    cr_expect_str_eq(def, "dealscore-notify");
    free(def);
}

Test(config, reads_values_and_topic_prefix) {
    char *env[] = {"DEALSCORE_TOPIC_PREFIX=staging.", "DEALSCORE_HTTP_ADDR=:9999",
                   "DEALSCORE_LOG_LEVEL=debug",       "DEALSCORE_BATCH_SIZE=42",
                   "DEALSCORE_KAFKA_BROKERS=a:1,b:2", NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(load(&cfg, DS_SVC_FEATURE, env, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg.http_host, "0.0.0.0");
    cr_assert_eq(cfg.http_port, 9999);
    cr_assert_eq(cfg.log_level, 0);
    cr_assert_eq(cfg.batch_size, 42);
    char *t = ds_config_topic(&cfg, "features.ready");
    cr_assert_str_eq(t, "staging.features.ready");
    free(t);
    ds_config_close(&cfg);
}

Test(config, empty_variable_is_unset) {
    char *env[] = {"DEALSCORE_HTTP_ADDR=", "DEALSCORE_BATCH_SIZE=", NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(load(&cfg, DS_SVC_FEATURE, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg.http_port, 8082);
    cr_assert_eq(cfg.batch_size, 500);
    ds_config_close(&cfg);
}

/* The CRM profiles' field names are settings (listed by --help) with the
 * defaults of services/ingest/README.md. */
Test(config, ingest_reads_the_profile_field_names) {
    char *none[] = {NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(load(&cfg, DS_SVC_INGEST, none, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(cfg.sf_product_field, "Product_Category__c");
    cr_expect_str_eq(cfg.sf_persona_field, "Persona__c");
    cr_expect_str_eq(cfg.sf_region_field, "BillingCountry");
    cr_expect_str_eq(cfg.hs_product_field, "pipeline");
    cr_expect_null(cfg.hs_persona_field);
    cr_expect_str_eq(cfg.hs_region_field, "country");
    cr_expect_null(cfg.csv_aliases);
    ds_config_close(&cfg);
    char *env[] = {"DEALSCORE_SF_PRODUCT_FIELD=Line__c", "DEALSCORE_HS_PERSONA_FIELD=buyer_role",
                   "DEALSCORE_HS_REGION_FIELD=", NULL};
    cr_assert_eq(load(&cfg, DS_SVC_INGEST, env, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(cfg.sf_product_field, "Line__c");
    cr_expect_str_eq(cfg.hs_persona_field, "buyer_role");
    cr_expect_str_eq(cfg.hs_region_field, "country", "empty is unset");
    ds_config_close(&cfg);
}

static void expect_reject(char *setting, const char *varname) {
    char *env[] = {setting, NULL};
    ds_config_t cfg;
    char err[256] = "";
    cr_assert_eq(load(&cfg, DS_SVC_INGEST, env, err, sizeof err), DS_EINVAL, "accepted %s", setting);
    cr_assert(strstr(err, varname) == err, "message \"%s\" should start with %s", err, varname);
    cr_assert_null(strchr(err, '\n'), "message should be one line: %s", err);
}

Test(config, rejects_out_of_range_port) {
    expect_reject("DEALSCORE_HTTP_ADDR=127.0.0.1:70000", "DEALSCORE_HTTP_ADDR");
    expect_reject("DEALSCORE_HTTP_ADDR=127.0.0.1:0", "DEALSCORE_HTTP_ADDR");
    expect_reject("DEALSCORE_HTTP_ADDR=127.0.0.1", "DEALSCORE_HTTP_ADDR");
    expect_reject("DEALSCORE_HTTP_ADDR=127.0.0.1:80x", "DEALSCORE_HTTP_ADDR");
}

Test(config, rejects_bad_broker_syntax) {
    expect_reject("DEALSCORE_KAFKA_BROKERS=localhost", "DEALSCORE_KAFKA_BROKERS");
    expect_reject("DEALSCORE_KAFKA_BROKERS=a:1,,", "DEALSCORE_KAFKA_BROKERS");
    expect_reject("DEALSCORE_KAFKA_BROKERS=a:99999", "DEALSCORE_KAFKA_BROKERS");
    expect_reject("DEALSCORE_KAFKA_BROKERS=:9092", "DEALSCORE_KAFKA_BROKERS");
}

Test(config, rejects_malformed_postgres_url) {
    expect_reject("DEALSCORE_DATABASE_URL=postgresql://host:port:x/db?nonsense_option=1",
                  "DEALSCORE_DATABASE_URL");
    expect_reject("DEALSCORE_DATABASE_URL=host=a port", "DEALSCORE_DATABASE_URL");
}

Test(config, rejects_bad_integers_and_levels) {
    expect_reject("DEALSCORE_MAX_RECORDS=0", "DEALSCORE_MAX_RECORDS");
    expect_reject("DEALSCORE_MAX_RECORDS=12abc", "DEALSCORE_MAX_RECORDS");
    expect_reject("DEALSCORE_LOG_LEVEL=loud", "DEALSCORE_LOG_LEVEL");
}

Test(config, kafka_passthrough) {
    char *env[] = {"KAFKA_SECURITY_PROTOCOL=SASL_SSL", "KAFKA_SASL_MECHANISMS=PLAIN",
                   "KAFKA_LINGER_MS=", NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(load(&cfg, DS_SVC_FEATURE, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg.kafka_props_count, 2);
    cr_assert_str_eq(cfg.kafka_props[0].key, "security.protocol");
    cr_assert_str_eq(cfg.kafka_props[0].value, "SASL_SSL");
    cr_assert_str_eq(cfg.kafka_props[1].key, "sasl.mechanisms");
    ds_config_close(&cfg);
}

Test(config, service_specific_variables_only_apply_to_their_service) {
    /* A malformed scoring-only setting does not stop the ingest binary. */
    char *env[] = {"DEALSCORE_TOP_K=zero", NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(load(&cfg, DS_SVC_INGEST, env, err, sizeof err), 0, "%s", err);
    ds_config_close(&cfg);
    cr_assert_eq(load(&cfg, DS_SVC_SCORING, env, err, sizeof err), DS_EINVAL);
}

Test(config, kubernetes_service_links_are_not_kafka_properties) {
    char *env[] = {"KAFKA_PORT=tcp://10.0.0.1:9092", "KAFKA_PORT_9092_TCP_ADDR=10.0.0.1",
                   "KAFKA_SERVICE_HOST=10.0.0.1", "KAFKA_CLIENT_RACK=eu-1a", NULL};
    ds_config_t cfg;
    char err[256];
    cr_assert_eq(ds_config_load(&cfg, DS_SVC_INGEST, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg.kafka_props_count, 1);
    cr_assert_str_eq(cfg.kafka_props[0].key, "client.rack");
    ds_config_close(&cfg);
}

Test(config, cors_origins_are_checked) {
    ds_config_t cfg;
    char err[256];
    char *ok[] = {"DEALSCORE_CORS_ORIGINS=https://app.example.com, http://localhost:3000,http://[::1]:8080",
                  NULL};
    cr_assert_eq(load(&cfg, DS_SVC_SCORING, ok, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg.cors_origins, "https://app.example.com, http://localhost:3000,http://[::1]:8080");
    ds_config_close(&cfg);
    const char *bad[][2] = {{"*", "*"},
                            {"https://app.example.com/", "https://app.example.com/"},
                            {"app.example.com", "app.example.com"},
                            {"https://a.example.com,,https://b.example.com", ""},
                            {"http://localhost:3000, ftp://x", "ftp://x"},
                            {"http://localhost:123456", "http://localhost:123456"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *var = ds_asprintf("DEALSCORE_CORS_ORIGINS=%s", bad[i][0]);
        char *env[] = {var, NULL};
        cr_expect_eq(load(&cfg, DS_SVC_SCORING, env, err, sizeof err), DS_EINVAL, "%s accepted", bad[i][0]);
        char *want = ds_asprintf("DEALSCORE_CORS_ORIGINS: \"%s\" is not an origin", bad[i][1]);
        cr_expect(strncmp(err, want, strlen(want)) == 0, "%s: %s", bad[i][0], err);
        free(want);
        free(var);
    }
}
