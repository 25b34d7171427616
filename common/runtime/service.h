/* The runtime every dealscore binary shares: settings, JSON logs, one libuv
 * loop with the HTTP server (/healthz, /readyz, /metrics plus the service's
 * own routes), a readiness probe of Postgres and Kafka, an optional worker
 * thread for a consume -> write -> produce loop, and a clean shutdown on
 * SIGTERM or SIGINT. */
#ifndef DEALSCORE_SERVICE_H
#define DEALSCORE_SERVICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "base/config.h"
#include "infra/http.h"
#include "infra/kafka.h"
#include "runtime/metrics.h"

typedef struct ds_service_s ds_service_t;

typedef struct {
    const char *name;  /* "import", "token", ... */
    const char *usage; /* one line for --help */
    /* Runs the subcommand with argv[0] = name; returns the exit code. */
    int (*run)(const ds_config_t *cfg, int argc, char **argv);
} ds_subcommand_t;

typedef struct {
    ds_svc_kind_t kind;
    const char *summary; /* one line for --help */
    /* Topic base names this service makes sure exist at start. */
    const char *const *topics;
    size_t ntopics;
    /* True when /readyz also needs a consumer with assigned partitions. */
    bool needs_consumer;
    /* Called on the loop thread before the HTTP server starts: register
     * routes, allocate state. Returns 0 or a DS_E code (the service exits 1). */
    int (*init)(ds_service_t *svc, void **state, char *errstr, size_t errstr_size);
    /* Runs on a thread of its own until ds_service_stopping() is true, then
     * finishes the batch in hand, stores offsets and returns. NULL: none. */
    void (*worker)(ds_service_t *svc, void *state);
    /* Called on the loop thread when shutdown begins (stop timers etc.). */
    void (*stopping)(ds_service_t *svc, void *state);
    /* Called after the worker has returned and the loop has drained. */
    void (*fini)(ds_service_t *svc, void *state);
    const ds_subcommand_t *subcommands;
    size_t nsubcommands;
} ds_service_def_t;

struct ds_service_s {
    const ds_config_t *cfg;
    const ds_service_def_t *def;
    uv_loop_t loop;
    ds_http_t *http;
    ds_http_t *metrics_http; /* DEALSCORE_METRICS_ADDR's listener, or NULL */
    ds_metrics_t *metrics;
    ds_producer_t *producer; /* shared, thread-safe for sends */
    void *state;

    atomic_int stopping;
    atomic_int pg_ok;
    atomic_int kafka_ok;
    atomic_int consumer_ok;
    atomic_int exit_code;

    /* internals */
    uv_signal_t sigterm, sigint;
    uv_timer_t probe_timer, deadline_timer, drain_timer;
    uv_async_t worker_done;
    uv_work_t probe_work;
    bool probe_running;
    void *probe_conn; /* PGconn */
    uv_thread_t worker_thread;
    bool worker_started;
    atomic_int worker_finished;
    bool shutdown_begun;
    bool closing;
    bool forced;
    bool topics_done; /* probe thread only */
};

/* The whole program: parses argv (--help, subcommands), loads settings from
 * the environment (a bad one exits 2 with a line naming it), and runs the
 * service until SIGTERM. Returns the process exit code. */
int ds_service_main(int argc, char **argv, const ds_service_def_t *def);

/* True once shutdown has begun; any thread. */
bool ds_service_stopping(const ds_service_t *svc);
/* Begins shutdown from any thread with the given exit code. */
void ds_service_request_stop(ds_service_t *svc, int exit_code);
/* The worker reports whether its consumer has partitions (for /readyz). */
void ds_service_set_consumer_ready(ds_service_t *svc, bool ready);
/* The readiness as /readyz reports it. */
bool ds_service_ready(const ds_service_t *svc);

#endif
