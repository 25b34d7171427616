/* Service runtime: one libuv loop (HTTP, signals, probes), an optional
 * worker thread, and the shutdown order of STYLE.md. */
#include "runtime/service.h"
#include "base/common.h"
#include "base/log.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define PROBE_INTERVAL_MS 1000

bool ds_service_stopping(const ds_service_t *svc) { return atomic_load(&svc->stopping) != 0; }

void ds_service_set_consumer_ready(ds_service_t *svc, bool ready) {
    atomic_store(&svc->consumer_ok, ready ? 1 : 0);
}

bool ds_service_ready(const ds_service_t *svc) {
    if (ds_service_stopping(svc)) return false;
    if (!atomic_load(&svc->pg_ok) || !atomic_load(&svc->kafka_ok)) return false;
    if (svc->def->needs_consumer && !atomic_load(&svc->consumer_ok)) return false;
    return true;
}

/* ---- probes (run on the libuv thread pool, never on the loop) ---------- */

static void probe_run(uv_work_t *w) {
    ds_service_t *svc = w->data;
    PGconn *conn = svc->probe_conn;
    if (conn && PQstatus(conn) != CONNECTION_OK) {
        PQfinish(conn);
        conn = NULL;
    }
    if (!conn) {
        /* connect_timeout keeps a dead address from holding the probe for long. */
        const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
        char app[64];
        snprintf(app, sizeof app, "dealscore-%s-probe", svc->cfg->service_name);
        const char *vals[] = {svc->cfg->database_url, "2", app, NULL};
        conn = PQconnectdbParams(keys, vals, 1);
    }
    bool pg = false;
    if (PQstatus(conn) == CONNECTION_OK) {
        PGresult *r = PQexec(conn, "select 1");
        pg = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
    }
    if (!pg && atomic_load(&svc->pg_ok)) ds_warn("postgres is unreachable: %s", PQerrorMessage(conn));
    if (pg && !atomic_load(&svc->pg_ok)) ds_info("postgres is reachable");
    atomic_store(&svc->pg_ok, pg ? 1 : 0);
    svc->probe_conn = conn;

    bool kafka = ds_kafka_ping(ds_producer_handle(svc->producer), 2000) == 0;
    if (kafka && !atomic_load(&svc->kafka_ok)) ds_info("kafka is reachable");
    if (kafka && !svc->topics_done) {
        if (svc->def->ntopics) {
            const char **names = ds_calloc(svc->def->ntopics * 2, sizeof(char *));
            size_t n = 0;
            for (size_t i = 0; i < svc->def->ntopics; i++) {
                char *topic = ds_config_topic(svc->cfg, svc->def->topics[i]);
                names[n++] = topic;
                names[n++] = ds_asprintf("%s%s", topic, DS_TOPIC_DLQ_SUFFIX);
            }
            char err[256];
            if (ds_kafka_ensure_topics(svc->cfg, names, n, svc->cfg->topic_partitions,
                                       svc->cfg->topic_replication, 5000, err, sizeof err) != 0) {
                ds_warn("could not create topics: %s", err);
                kafka = false;
            }
            for (size_t i = 0; i < n; i++) free((char *)names[i]);
            free(names);
        }
        svc->topics_done = kafka;
    } else if (!kafka && atomic_load(&svc->kafka_ok)) {
        ds_warn("kafka is unreachable");
    }
    atomic_store(&svc->kafka_ok, kafka ? 1 : 0);
}

static void probe_done(uv_work_t *w, int status) {
    (void)status;
    ds_service_t *svc = w->data;
    svc->probe_running = false;
    ds_metric_set(ds_metrics_gauge(svc->metrics, "ready", "1 when /readyz answers 200", NULL),
                  ds_service_ready(svc) ? 1 : 0);
}

static void on_probe_timer(uv_timer_t *t) {
    ds_service_t *svc = t->data;
    if (svc->probe_running || ds_service_stopping(svc)) return;
    svc->probe_running = true;
    svc->probe_work.data = svc;
    uv_queue_work(&svc->loop, &svc->probe_work, probe_run, probe_done);
}

/* ---- built-in routes ---------------------------------------------------- */

/* The most of a request body the HTTP server reads. Ingest reads up to twice
 * its DEALSCORE_MAX_BODY_BYTES so that a body somewhat over the limit is read
 * whole and answered with its JSON 413: past h2o's own limit, h2o answers a
 * plain-text 413 and closes the connection while the client is still
 * sending, and the client's kernel may drop that answer on the reset. */
static size_t http_read_limit(const ds_config_t *cfg) {
    if (cfg->svc != DS_SVC_INGEST) return 1 << 20;
    return 2 * (size_t)cfg->max_body_bytes;
}

static int on_healthz(void *ud, h2o_req_t *req) {
    (void)ud;
    ds_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
    return 0;
}

static int on_readyz(void *ud, h2o_req_t *req) {
    ds_service_t *svc = ud;
    bool ready = ds_service_ready(svc);
    json_t *body = json_pack("{s:s, s:b, s:b, s:b}", "status", ready ? "ready" : "not ready", "postgres",
                             atomic_load(&svc->pg_ok) != 0, "kafka", atomic_load(&svc->kafka_ok) != 0,
                             "stopping", ds_service_stopping(svc));
    if (svc->def->needs_consumer)
        json_object_set_new(body, "consumer_assigned", json_boolean(atomic_load(&svc->consumer_ok)));
    if (!ready) ds_http_add_header(req, "retry-after", "1");
    ds_http_respond_json(req, ready ? 200 : 503, body);
    return 0;
}

static int on_metrics(void *ud, h2o_req_t *req) {
    ds_service_t *svc = ud;
    char *text = ds_metrics_render(svc->metrics);
    ds_http_respond(req, 200, "text/plain; version=0.0.4", text, strlen(text));
    free(text);
    return 0;
}

/* ---- shutdown ----------------------------------------------------------- */

static void close_walk_cb(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_drain_timer(uv_timer_t *t);

static void finish_close(ds_service_t *svc) {
    if (svc->closing) return;
    /* Let open HTTP connections finish their responses first; the deadline
     * timer forces the close if a client keeps one open. */
    if (ds_http_connections(svc->http) + ds_http_connections(svc->metrics_http) > 0 && !svc->forced) {
        if (!uv_is_active((uv_handle_t *)&svc->drain_timer))
            uv_timer_start(&svc->drain_timer, on_drain_timer, 5, 5);
        return;
    }
    svc->closing = true;
    uv_timer_stop(&svc->drain_timer);
    uv_timer_stop(&svc->deadline_timer);
    /* h2o closes its own timers; walk the rest afterwards. */
    ds_http_close_context(svc->http);
    ds_http_close_context(svc->metrics_http);
    uv_walk(&svc->loop, close_walk_cb, NULL);
}

static void on_worker_done(ds_service_t *svc) {
    if (svc->worker_started) {
        uv_thread_join(&svc->worker_thread);
        svc->worker_started = false;
    }
    finish_close(svc);
}

static void on_drain_timer(uv_timer_t *t) {
    ds_service_t *svc = t->data;
    if (ds_http_connections(svc->http) + ds_http_connections(svc->metrics_http) == 0 && !svc->worker_started)
        finish_close(svc);
}

static void on_deadline(uv_timer_t *t) {
    ds_service_t *svc = t->data;
    ds_warn("shutdown took longer than %d ms; closing anyway", svc->cfg->shutdown_timeout_ms);
    svc->forced = true;
    finish_close(svc);
}

static void begin_shutdown(ds_service_t *svc) {
    if (svc->shutdown_begun || svc->closing) return;
    svc->shutdown_begun = true;
    ds_info("shutting down");
    ds_http_stop(svc->http);
    ds_http_stop(svc->metrics_http);
    uv_timer_stop(&svc->probe_timer);
    uv_signal_stop(&svc->sigterm);
    uv_signal_stop(&svc->sigint);
    if (svc->def->stopping) svc->def->stopping(svc, svc->state);
    /* Only a bound on the wait: the worker normally finishes well before. */
    uv_timer_start(&svc->deadline_timer, on_deadline, (uint64_t)svc->cfg->shutdown_timeout_ms, 0);
    /* Without a worker there is nothing in flight; otherwise the worker sees
     * the flag, finishes its batch and wakes the loop when it returns. */
    if (!svc->worker_started) finish_close(svc);
}

void ds_service_request_stop(ds_service_t *svc, int exit_code) {
    int expected = 0;
    if (exit_code) atomic_store(&svc->exit_code, exit_code);
    if (atomic_compare_exchange_strong(&svc->stopping, &expected, 1)) {
        /* Wake the loop; begin_shutdown runs there. */
        uv_async_send(&svc->worker_done);
    }
}

static void on_signal(uv_signal_t *s, int signum) {
    ds_service_t *svc = s->data;
    /* Only state changes here; the loop acts on it. */
    ds_info("received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    int expected = 0;
    if (atomic_compare_exchange_strong(&svc->stopping, &expected, 1)) begin_shutdown(svc);
}

static void worker_thread_main(void *arg) {
    ds_service_t *svc = arg;
    svc->def->worker(svc, svc->state);
    atomic_store(&svc->worker_finished, 1);
    uv_async_send(&svc->worker_done);
}

/* One async handle wakes the loop for both a stop request and the worker's
 * return; the flags say which happened. */
static void on_async(uv_async_t *a) {
    ds_service_t *svc = a->data;
    if (atomic_load(&svc->worker_finished) && !ds_service_stopping(svc)) {
        ds_error("worker stopped unexpectedly");
        atomic_store(&svc->exit_code, 1);
        atomic_store(&svc->stopping, 1);
    }
    if (ds_service_stopping(svc)) begin_shutdown(svc);
    if (atomic_load(&svc->worker_finished)) on_worker_done(svc);
}

/* ---- main --------------------------------------------------------------- */

static void print_help(const ds_service_def_t *def, const char *prog) {
    printf("%s: %s\n\nUsage:\n  %s                 run the service\n", prog, def->summary, prog);
    for (size_t i = 0; i < def->nsubcommands; i++) printf("  %s %s\n", prog, def->subcommands[i].usage);
    printf("  %s --help          this text\n\n", prog);
    printf("HTTP: GET /healthz (alive), GET /readyz (Postgres and Kafka reachable%s), GET /metrics "
           "(Prometheus).\n\n",
           def->needs_consumer ? ", consumer assigned" : "");
    ds_config_print_help(stdout, def->kind);
}

int ds_service_main(int argc, char **argv, const ds_service_def_t *def) {
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            if (i == 1 || argc < 2) {
                print_help(def, prog);
                return 0;
            }
        }
    }
    const ds_subcommand_t *sub = NULL;
    if (argc > 1) {
        for (size_t i = 0; i < def->nsubcommands; i++)
            if (strcmp(argv[1], def->subcommands[i].name) == 0) sub = &def->subcommands[i];
        if (!sub) {
            fprintf(stderr, "%s: unknown command \"%s\" (see --help)\n", prog, argv[1]);
            return 2;
        }
    }
    ds_config_t cfg;
    char err[512];
    if (ds_config_load(&cfg, def->kind, environ, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 2;
    }
    ds_log_init(cfg.service_name, (ds_log_level_t)cfg.log_level);
    if (sub) {
        int rc = sub->run(&cfg, argc - 1, argv + 1);
        ds_config_close(&cfg);
        return rc;
    }

    ds_service_t *svc = ds_calloc(1, sizeof *svc);
    svc->cfg = &cfg;
    svc->def = def;
    int rc = 1;
    uv_loop_init(&svc->loop);
    svc->metrics = ds_metrics_new();
    ds_metrics_gauge(svc->metrics, "ready", "1 when /readyz answers 200", NULL);
    ds_metric_set(ds_metrics_gauge(svc->metrics, "up", "1 while the process runs", NULL), 1);
    if (ds_producer_new(&svc->producer, &cfg, err, sizeof err) != 0) {
        ds_error("could not create kafka producer: %s", err);
        goto out;
    }
    svc->http = ds_http_new(&svc->loop, cfg.http_host, cfg.http_port, http_read_limit(&cfg));
    ds_http_route(svc->http, "/healthz", on_healthz, svc);
    ds_http_route(svc->http, "/readyz", on_readyz, svc);
    /* Metrics on a listener of their own keep them off the public port (a
     * NetworkPolicy can then open only that port to the scraper). */
    if (cfg.metrics_addr) {
        svc->metrics_http = ds_http_new(&svc->loop, cfg.metrics_host, cfg.metrics_port, 1 << 16);
        ds_http_route(svc->metrics_http, "/metrics", on_metrics, svc);
    } else {
        ds_http_route(svc->http, "/metrics", on_metrics, svc);
    }
    if (def->init && def->init(svc, &svc->state, err, sizeof err) != 0) {
        ds_error("could not start: %s", err);
        goto out;
    }
    if (ds_http_start(svc->http, err, sizeof err) != 0) {
        ds_error("%s (DEALSCORE_HTTP_ADDR)", err);
        goto out;
    }
    if (svc->metrics_http && ds_http_start(svc->metrics_http, err, sizeof err) != 0) {
        ds_error("%s (DEALSCORE_METRICS_ADDR)", err);
        goto out;
    }
    uv_signal_init(&svc->loop, &svc->sigterm);
    uv_signal_init(&svc->loop, &svc->sigint);
    svc->sigterm.data = svc->sigint.data = svc;
    uv_signal_start(&svc->sigterm, on_signal, SIGTERM);
    uv_signal_start(&svc->sigint, on_signal, SIGINT);
    uv_timer_init(&svc->loop, &svc->probe_timer);
    uv_timer_init(&svc->loop, &svc->deadline_timer);
    uv_timer_init(&svc->loop, &svc->drain_timer);
    svc->probe_timer.data = svc->deadline_timer.data = svc->drain_timer.data = svc;
    uv_async_init(&svc->loop, &svc->worker_done, on_async);
    svc->worker_done.data = svc;
    uv_timer_start(&svc->probe_timer, on_probe_timer, 0, PROBE_INTERVAL_MS);
    if (def->worker) {
        if (uv_thread_create(&svc->worker_thread, worker_thread_main, svc) != 0) {
            ds_error("could not start the worker thread");
            goto out_loop;
        }
        svc->worker_started = true;
    }
    ds_info("listening on %s:%d", cfg.http_host, ds_http_port(svc->http));
    if (svc->metrics_http) ds_info("metrics on %s:%d", cfg.metrics_host, ds_http_port(svc->metrics_http));
    uv_run(&svc->loop, UV_RUN_DEFAULT);
    rc = atomic_load(&svc->exit_code);
out_loop:
    if (!svc->closing) {
        /* Startup failed after handles existed: close them. */
        atomic_store(&svc->stopping, 1);
        finish_close(svc);
        uv_run(&svc->loop, UV_RUN_DEFAULT);
        if (rc == 0) rc = 1;
    }
out:
    /* After a startup that failed past init (a taken port), the service's
     * threads still run until told to stop, and its handles (the deferred
     * answers' async) are still in the loop: close them before its fini
     * frees them. */
    atomic_store(&svc->stopping, 1);
    ds_http_close_context(svc->http);
    ds_http_close_context(svc->metrics_http);
    uv_walk(&svc->loop, close_walk_cb, NULL);
    uv_run(&svc->loop, UV_RUN_DEFAULT);
    if (def->fini) def->fini(svc, svc->state);
    if (svc->producer) {
        if (ds_producer_flush(svc->producer, cfg.shutdown_timeout_ms) != 0)
            ds_warn("producer flush timed out; undelivered messages are purged");
        ds_producer_destroy(svc->producer);
    }
    if (svc->probe_conn) PQfinish(svc->probe_conn);
    ds_http_destroy(svc->http);
    ds_http_destroy(svc->metrics_http);
    if (uv_loop_close(&svc->loop) != 0) ds_warn("event loop closed with handles still open");
    ds_metrics_destroy(svc->metrics);
    ds_info("stopped (exit code %d)", rc);
    free(svc);
    ds_config_close(&cfg);
    return rc;
}
