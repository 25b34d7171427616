/* dealscore-ingest: webhook API (HTTP loop) → validator thread (token,
 * signature, JSON, records) → writer thread (group commit into the raw layer
 * and outbox) → relay thread (outbox → Kafka). The validator works on the
 * next requests while the writer's transaction runs. */
#ifndef DS_INGEST_H
#define DS_INGEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "base/queue.h"
#include "infra/pg.h"
#include "runtime/service.h"
#include "record.h"

typedef struct ingest_job_s ingest_job_t;

typedef struct {
    ds_service_t *svc;
    const ds_config_t *cfg;

    /* jobs from the loop to the validator (queue), from the validator to
     * the writer (ready); results from both back to the loop (deferred) */
    ds_queue_t *queue, *ready;
    ds_http_deferred_t *deferred;
    pthread_t validator, writer;
    bool validator_started, writer_started;

    /* reserved signatures whose release failed (Postgres unreachable): the
     * validator releases them before its next batch; under release_mu */
    pthread_mutex_t release_mu;
    char (*releases)[65];
    size_t nreleases, capreleases;

    /* relay */
    int relay_kick_fd; /* eventfd: a commit of this process wakes the relay */
    pthread_t relay;
    bool relay_started;
    atomic_long outbox_depth;
    atomic_int pg_down; /* writer saw Postgres unreachable */

    sf_fields_t sf;
    hs_fields_t hs;
    int relay_batch;
} ingest_t;

int ingest_init(ds_service_t *svc, void **state, char *errstr, size_t errstr_size);
void ingest_stopping(ds_service_t *svc, void *state);
void ingest_fini(ds_service_t *svc, void *state);

/* Relay thread body (relay.c). */
void *ingest_relay_main(void *arg);
void ingest_relay_kick(ingest_t *in);

/* Subcommands. */
int ingest_cmd_token(const ds_config_t *cfg, int argc, char **argv);
int ingest_cmd_import(const ds_config_t *cfg, int argc, char **argv);

/* A webhook request's target: /v1/<kind> and its query parameters. */
typedef struct {
    rec_kind_t kind;
    rec_profile_t profile; /* ?profile=native|salesforce|hubspot */
    bool partial;          /* ?partial=true: store the valid records of a batch */
} ingest_target_t;

/* The webhook's target: the kind from path[0..plen) (decoded; exactly
 * /v1/<kind>, one trailing '/' allowed) and the parameters from the query
 * string (without the '?'; NULL when there is none). Returns 0,
 * DS_ENOTFOUND for a path that is no webhook, or DS_EINVAL with the
 * parameter's name in *bad_param for a profile other than native,
 * salesforce or hubspot, or a partial other than true or false. */
int ingest_route(const char *path, size_t plen, const char *query, size_t qlen, ingest_target_t *t,
                 const char **bad_param);

/* Reads buf[0..len), a CSV file of kind, exactly as `import` does but
 * storing nothing: every row is parsed and validated, problems go to
 * errors as CSV lines (stderr when NULL), warnings to stderr. Sets *rows
 * and *rejected. */
void ingest_import_check(rec_kind_t kind, const char *buf, size_t len, FILE *errors, long *rows,
                         long *rejected);

/* Token hashing: hex SHA-256 of the token text. */
void ingest_token_hash(const char *token, char out[65]);

#endif
