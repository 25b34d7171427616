/* dealscore-ingest: webhook API (HTTP loop) → writer thread (group commit
 * into the raw layer and outbox) → relay thread (outbox → Kafka). */
#ifndef DS_INGEST_H
#define DS_INGEST_H

#include <pthread.h>
#include <stdatomic.h>

#include "dealscore/pg.h"
#include "dealscore/service.h"
#include "record.h"

typedef struct ingest_job_s ingest_job_t;

typedef struct {
    ds_service_t *svc;
    const ds_config_t *cfg;

    /* writer: jobs from the loop, results back to it */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    ingest_job_t *queue_head, *queue_tail;
    size_t queued;
    ingest_job_t *done_head, *done_tail;
    uv_async_t done_async;
    pthread_t writer;
    bool writer_started;
    bool writer_stop;   /* under mu */

    /* relay */
    pthread_mutex_t relay_mu;
    pthread_cond_t relay_cond;
    bool relay_kick;
    pthread_t relay;
    bool relay_started;
    atomic_long outbox_depth;
    atomic_int pg_down;       /* writer saw Postgres unreachable */

    ds_sf_fields_t sf;
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

/* Token hashing: hex SHA-256 of the token text. */
void ingest_token_hash(const char *token, char out[65]);

#endif
