/* The libpq wrapper: connecting with retry, error classes, a session object
 * that re-prepares its statements and re-issues its LISTENs after a
 * reconnect, transactions with retry, pipelined batches, text-array literals
 * for unnest() bulk writes, and notifications.
 *
 * Threads: a ds_pg_t and its batches are used from one thread at a time.
 * All calls block (they use libpq's blocking API, or poll() on the socket
 * for pipelines and connecting), so call them from a database thread or a
 * batch worker, never from the HTTP loop (STYLE.md, "Avoid").
 *
 * Error classes (the same split as rd_kafka_error_is_retriable):
 *   DS_OK       success;
 *   DS_ERETRY   transient: the connection is gone or not usable, or the
 *               server reported SQLSTATE class 08, 53, 58, or one of 40001,
 *               40P01, 55P03, 57P01, 57P02, 57P03. Roll back, ds_pg_reset()
 *               if the connection is bad, and try the whole transaction again;
 *   DS_EFATAL   permanent: every other SQLSTATE (22 data exception, 23
 *               integrity violation, 42 syntax or access, 57014 canceled ...).
 *               Retrying the same statement gives the same error. */
#ifndef DEALSCORE_PG_H
#define DEALSCORE_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "base/common.h"

/* Retry delays: 100 ms doubling up to 5 s, each with jitter. */
#define DS_PG_BACKOFF_BASE_MS 100
#define DS_PG_BACKOFF_MAX_MS 5000
/* Statements between two pipeline syncs unless ds_pg_batch_set_sync_every. */
#define DS_PG_BATCH_SYNC_EVERY 500

/* The WHERE clause of an insert ... select into a table derived from deals
 * (features_snapshot, predictions, prediction_history,
 * opportunity_benchmarks): only rows whose deal exists in its org. Those
 * tables have no foreign key to opportunities (its row lock per row made
 * multixacts of three workers' checks; migration 20261127000300), so a deal
 * deleted meanwhile gets no row this way. id and org are SQL expressions. */
#define DS_SQL_WHERE_DEAL_EXISTS(id, org)                                                                    \
    " where exists (select 1 from public.opportunities o where o.id = " id " and o.org_id = " org ")"

/* ---- URLs and connecting ------------------------------------------------ */

/* Validates a libpq URI ("postgresql://...") or key=value conninfo string
 * with PQconninfoParse, without connecting. Returns 0, or DS_EINVAL with
 * libpq's reason in errstr (the password, if any, is masked). */
int ds_pg_url_check(const char *url, char *errstr, size_t errstr_size);

/* Describes url for logs without its password: "user@host:port/dbname"
 * (missing parts are left out). Returns a new string the caller frees;
 * "(invalid database url)" if url does not parse. */
char *ds_pg_url_describe(const char *url);

/* Returns a new key=value conninfo string equal to url with the given
 * settings replaced or added (keys[i] = values[i], n pairs; a NULL value
 * removes the setting). Handy for tests that point a URL at another database.
 * Returns NULL with DS_EINVAL's reason in errstr if url does not parse.
 * The caller frees the result. */
char *ds_pg_url_with(const char *url, const char *const *keys, const char *const *values, size_t n,
                     char *errstr, size_t errstr_size);

/* Delay before retry number attempt (0 for the first retry): a uniform
 * value in [d/2, d] with d = min(100 ms * 2^attempt, 5 s). *seed is the
 * state of a small PRNG and is advanced, so a given seed always yields the
 * same schedule. */
int ds_pg_backoff_ms(int attempt, uint64_t *seed);

/* Connects to url, retrying with ds_pg_backoff_ms() delays until connected,
 * max_wait_ms has passed (0: one try, -1: no limit), or *stop becomes
 * non-zero (stop may be NULL). Each try is also bounded by the URL's
 * connect_timeout (default 10 s). Sets application_name to app_name
 * (NULL: "dealscore") unless url sets its own. Each failed try is logged at
 * warn with libpq's message (never the password).
 * Returns 0 and *out (close with PQfinish), or:
 *   DS_EINVAL    url does not parse (no retry);
 *   DS_ERETRY    could not connect in time; the last libpq message in errstr;
 *   DS_ESHUTDOWN *stop became non-zero. */
int ds_pg_connect_app(PGconn **out, const char *url, const char *app_name, int max_wait_ms,
                      const volatile int *stop, char *errstr, size_t errstr_size);
/* ds_pg_connect_app with application_name "dealscore". */
int ds_pg_connect(PGconn **out, const char *url, int max_wait_ms, const volatile int *stop, char *errstr,
                  size_t errstr_size);

/* ---- Error classes ------------------------------------------------------ */

/* Class of a SQLSTATE: DS_OK for classes 00, 01 and 02, DS_ERETRY for the
 * transient ones listed at the top of this file, DS_EFATAL for everything
 * else, including NULL and malformed codes. */
int ds_pg_classify_sqlstate(const char *sqlstate);

/* Class of a command's outcome. res may be NULL (libpq returns NULL when the
 * connection is unusable or out of memory) and conn may be NULL. A
 * successful result status is DS_OK; otherwise a connection that is not
 * CONNECTION_OK, a NULL res or PGRES_BAD_RESPONSE is DS_ERETRY; an error
 * result is classified by its SQLSTATE, and an error libpq made up itself
 * (no SQLSTATE) on a healthy connection is DS_EFATAL, as is
 * PGRES_PIPELINE_ABORTED (the pipeline's first error tells the real class). */
int ds_pg_classify(const PGresult *res, const PGconn *conn);

/* Writes a one-line description of the error in res (or, without one, of
 * conn's last error) into buf: "duplicate key value violates unique
 * constraint "t_pkey" (SQLSTATE 23505)". Returns buf. */
char *ds_pg_error_text(const PGresult *res, const PGconn *conn, char *buf, size_t buf_size);

/* Prepares sql as name on conn (types are inferred from the SQL, so cast
 * parameters there: "$1::bigint"). nparams is the number of parameters the
 * statement takes, kept for documentation and passed to libpq.
 * Returns 0, DS_ERETRY or DS_EFATAL with the error text in errstr. */
int ds_pg_prepare(PGconn *conn, const char *name, const char *sql, int nparams, char *errstr,
                  size_t errstr_size);

/* ---- Sessions ----------------------------------------------------------- */

typedef struct ds_pg_s ds_pg_t;

/* Creates a session for url (checked with ds_pg_url_check) and
 * application_name app_name (NULL: "dealscore"). It does not connect yet:
 * call ds_pg_ensure. Returns 0 and *out (free with ds_pg_destroy), or
 * DS_EINVAL with the reason in errstr. */
int ds_pg_new(ds_pg_t **out, const char *url, const char *app_name, char *errstr, size_t errstr_size);
/* Closes the connection and frees the session; NULL does nothing. */
void ds_pg_destroy(ds_pg_t *pg);

/* Registers a statement that every connection of this session prepares
 * (at the next ds_pg_ensure, ds_pg_exec_prepared or ds_pg_batch_run).
 * nparams is checked against the count given to ds_pg_exec_prepared and
 * ds_pg_batch_add_prepared (-1: not checked). Registering the same name with
 * the same SQL again does nothing; with other SQL it is DS_EINVAL. */
int ds_pg_add_statement(ds_pg_t *pg, const char *name, const char *sql, int nparams);

/* Makes the session usable: connects if there is no healthy connection
 * (arguments as for ds_pg_connect), then prepares every registered statement
 * and LISTENs on every channel not yet set up on this connection. Returns 0,
 * or the codes of ds_pg_connect, or DS_ERETRY/DS_EFATAL if a statement does
 * not prepare (errstr names it). A healthy connection is kept even while
 * *stop is set, so the last batch of a stopping service can still commit. */
int ds_pg_ensure(ds_pg_t *pg, int max_wait_ms, const volatile int *stop, char *errstr, size_t errstr_size);

/* Drops the connection (after a DS_ERETRY on a bad connection, or to force
 * a fresh one); the next ds_pg_ensure reconnects and re-prepares. */
void ds_pg_reset(ds_pg_t *pg);

/* The current connection, or NULL. Borrowed: do not PQfinish it, and do not
 * keep it across ds_pg_ensure/ds_pg_reset. */
PGconn *ds_pg_conn(const ds_pg_t *pg);
/* True if there is a connection and its status is CONNECTION_OK. */
bool ds_pg_is_connected(const ds_pg_t *pg);
/* Number of connections made so far; it changes on every reconnect, which is
 * when notifications may have been missed and cached state should be
 * re-read. */
uint64_t ds_pg_generation(const ds_pg_t *pg);
/* The socket to poll for notifications, or -1 without a connection. */
int ds_pg_socket(const ds_pg_t *pg);

/* Runs sql (one or more statements, no parameters) on the current
 * connection; never connects. On success returns 0 and, if res is not NULL,
 * the last result in *res (the caller PQclears it). On failure returns
 * DS_ERETRY or DS_EFATAL (ds_pg_classify), sets *res to NULL and writes
 * ds_pg_error_text to errstr. Without a healthy connection: DS_ERETRY.
 * Called while a batch runs (from its callback): DS_EINVAL. */
int ds_pg_exec(ds_pg_t *pg, const char *sql, PGresult **res, char *errstr, size_t errstr_size);
/* As ds_pg_exec with parameters (PQexecParams; text results). lengths and
 * formats may be NULL for all-text parameters. */
int ds_pg_exec_params(ds_pg_t *pg, const char *sql, int nparams, const char *const *values,
                      const int *lengths, const int *formats, PGresult **res, char *errstr,
                      size_t errstr_size);
/* Sends sql with parameters (as ds_pg_exec_params, text results) and
 * returns without waiting for the outcome, so the server works on it while
 * the caller does something else (e.g. on another connection). Every other
 * call on pg is DS_EINVAL until ds_pg_send_wait has collected it.
 * Returns 0 once sent; DS_ERETRY without a healthy connection; DS_EINVAL
 * if a batch or another sent command is pending. */
int ds_pg_send_params(ds_pg_t *pg, const char *sql, int nparams, const char *const *values,
                      const int *lengths, const int *formats, char *errstr, size_t errstr_size);
/* Waits for the command ds_pg_send_params sent and returns what
 * ds_pg_exec_params would have: 0 and *res (if res is not NULL; the caller
 * PQclears it), or DS_ERETRY / DS_EFATAL with errstr. DS_EINVAL if nothing
 * was sent. */
int ds_pg_send_wait(ds_pg_t *pg, PGresult **res, char *errstr, size_t errstr_size);
/* The name under which a statement of sql's text (with nparams > 0
 * parameters) is prepared on the current connection, preparing it now if it
 * is not yet (once per connection), or NULL: send sql unnamed (no
 * parameters, no usable connection, a session that has prepared 64 texts
 * already, or a statement that did not prepare: call it outside a
 * transaction, so that running it unnamed gives its error).
 * ds_pg_exec_params, ds_pg_send_params and ds_pg_batch_run (outside a
 * transaction) prepare every statement with parameters this way, and give
 * a statement that does not prepare the error of its preparation (the same
 * as of its run). The name belongs to the session. */
const char *ds_pg_prepared(ds_pg_t *pg, const char *sql, int nparams);
/* As ds_pg_exec_params for the statement name: a registered statement not
 * yet prepared on this connection is prepared first. */
int ds_pg_exec_prepared(ds_pg_t *pg, const char *name, int nparams, const char *const *values,
                        const int *lengths, const int *formats, PGresult **res, char *errstr,
                        size_t errstr_size);

/* ---- Transactions with retry -------------------------------------------- */

/* The body of a transaction: runs statements on pg (ds_pg_exec*, batches)
 * and returns 0, DS_ERETRY to have the whole transaction retried, or another
 * negative code to give up; errstr says why. It may run several times, so
 * it must not keep effects outside the database between attempts. */
typedef int (*ds_pg_tx_fn)(ds_pg_t *pg, void *ud, char *errstr, size_t errstr_size);

/* Runs BEGIN, fn, COMMIT. On DS_ERETRY (from fn, BEGIN or COMMIT, or no
 * connection) it rolls back, reconnects if the connection is bad (one try
 * per attempt), waits ds_pg_backoff_ms and tries again, at most max_attempts
 * times (<= 0: until *stop). On any other error it rolls back and returns
 * it. A COMMIT that turns into a rollback (fn returned 0 on a failed
 * transaction) is DS_EFATAL.
 * Returns 0 once committed; the error of the last attempt (errstr says
 * which); or DS_ESHUTDOWN if *stop became non-zero before a retry. *stop
 * never interrupts an attempt in progress.
 * A connection lost during COMMIT leaves the outcome unknown and is retried:
 * the statements in fn must be idempotent (DESIGN.md, "Delivery"). */
int ds_pg_tx_run(ds_pg_t *pg, ds_pg_tx_fn fn, void *ud, int max_attempts, const volatile int *stop,
                 char *errstr, size_t errstr_size);

/* ---- Pipelined batches -------------------------------------------------- */

typedef struct ds_pg_batch_s ds_pg_batch_t;

/* Called once for each statement of a batch whose result arrived, in order:
 * tag as given to ds_pg_batch_add_*, the result (valid only during the call;
 * PGRES_PIPELINE_ABORTED for statements skipped after an error) and its
 * class. Return 0 to go on, or a negative DS_E* code to make ds_pg_batch_run
 * fail with it: later results are still read, but the callback is not called
 * again. The callback must not run statements on pg. */
typedef int (*ds_pg_batch_cb)(void *ud, void *tag, const PGresult *res, int err);

/* Starts an empty batch on pg; statements are kept (copied) until
 * ds_pg_batch_run sends them. Free with ds_pg_batch_end. */
int ds_pg_batch_begin(ds_pg_t *pg, ds_pg_batch_t **out);
/* Statements between pipeline syncs (default DS_PG_BATCH_SYNC_EVERY). */
void ds_pg_batch_set_sync_every(ds_pg_batch_t *b, int n);

/* Queues the prepared statement name with text parameters (lengths and
 * formats may be NULL; values[i] NULL is SQL NULL; binary parameters need
 * formats[i] = 1 and lengths[i]). Everything is copied. Returns 0, or
 * DS_EINVAL if name is registered on the session with another nparams. */
int ds_pg_batch_add_prepared(ds_pg_batch_t *b, const char *name, int nparams, const char *const *values,
                             const int *lengths, const int *formats, void *tag);
/* Queues sql (one statement) with parameters, as PQsendQueryParams. */
int ds_pg_batch_add_params(ds_pg_batch_t *b, const char *sql, int nparams, const char *const *values,
                           const int *lengths, const int *formats, void *tag);
/* ds_pg_batch_add_params without copying the values (the SQL, lengths and
 * formats are still copied): the caller keeps every values[i] alive and
 * unchanged until ds_pg_batch_run returns. For parameters of megabytes (a
 * whole batch as binary arrays), whose copy cost as much as building them. */
int ds_pg_batch_add_params_ref(ds_pg_batch_t *b, const char *sql, int nparams, const char *const *values,
                               const int *lengths, const int *formats, void *tag);
/* Queues one statement without parameters: "BEGIN", "COMMIT" ... */
int ds_pg_batch_add_sql(ds_pg_batch_t *b, const char *sql, void *tag);
/* Number of statements queued. */
size_t ds_pg_batch_count(const ds_pg_batch_t *b);

/* Sends every queued statement in pipeline mode (non-blocking, so a full
 * send buffer never deadlocks against unread results), with a sync every N
 * statements and at the end, and reads every result, calling cb (may be
 * NULL) for each. Runs once per batch.
 * Atomicity: inside a transaction (ds_pg_tx_run, or "BEGIN" ... "COMMIT"
 * queued in the batch) the batch is all or nothing. Without one, each sync
 * interval commits on its own. If the batch's own BEGIN left the transaction
 * failed, the batch rolls it back; a transaction that was open before the run
 * is left to its owner.
 * Returns 0 if every statement succeeded; else the class of the first
 * failure (DS_ERETRY, DS_EFATAL, or the callback's code) with "statement N:
 * <error text>" in errstr, N counting from 0, and its SQLSTATE from
 * ds_pg_batch_sqlstate. Without a healthy connection: DS_ERETRY, cb never
 * called. */
int ds_pg_batch_run(ds_pg_batch_t *b, ds_pg_batch_cb cb, void *ud, char *errstr, size_t errstr_size);
/* SQLSTATE of the first failed statement of the run, or "" if none. */
const char *ds_pg_batch_sqlstate(const ds_pg_batch_t *b);
/* Frees the batch; NULL does nothing. */
void ds_pg_batch_end(ds_pg_batch_t *b);

/* ---- Arrays ------------------------------------------------------------- */

/* Builds a Postgres array literal from n C strings for "$1::text[]"
 * parameters ("unnest($1::text[], $2::bigint[])"): every element is
 * double-quoted with '"' and '\' escaped, and a NULL pointer becomes an
 * unquoted NULL element. n = 0 gives "{}". The caller frees the result. */
char *ds_pg_array_text(const char *const *vals, size_t n);

/* ---- Notifications ------------------------------------------------------ */

/* LISTENs on channel now (if connected) and after every reconnect.
 * Returns 0, or DS_ERETRY/DS_EFATAL with errstr; the channel stays
 * registered either way unless it is DS_EINVAL (empty name). */
int ds_pg_listen(ds_pg_t *pg, const char *channel, char *errstr, size_t errstr_size);

/* Called for each notification: channel, payload ("" if none), sender pid. */
typedef void (*ds_pg_notify_cb)(void *ud, const char *channel, const char *payload, int be_pid);

/* Reads what the socket has (without blocking) and delivers every pending
 * notification to cb. Returns the number delivered (>= 0), or DS_ERETRY if
 * the connection is gone. Poll ds_pg_socket() for POLLIN to wait. */
int ds_pg_notifies(ds_pg_t *pg, ds_pg_notify_cb cb, void *ud);

#endif
