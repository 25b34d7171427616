/* The CRM simulator's generator: accounts, owners and opportunities whose
 * state follows a documented daily Markov chain (README.md), emitted as
 * records through a sink. Each deal draws from its own random stream derived
 * from (seed, org, deal index), so deals can be generated in any order or in
 * parallel and the output is still byte-identical. */
#ifndef SIM_H
#define SIM_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct {
    uint64_t seed;
    long opportunities; /* per org */
    int days;           /* length of the history window */
    int64_t now;        /* end of the window, seconds since the epoch */
} sim_opts_t;

/* Records: field names are the CSV columns of DESIGN.md "Records". Times are
 * seconds since the epoch; 0 means empty. */
typedef struct {
    const char *external_id;
    const char *name;
    const char *industry;
    const char *region;
    const char *size_band;
    int64_t created_at;
} sim_account_t;

typedef struct {
    const char *external_id;
    const char *account_external_id;
    const char *owner_id;
    const char *product_category;
    const char *persona;
    double amount;
    const char *currency;
    const char *stage;
    int64_t created_at;
    int64_t close_date; /* any second of the day; written as a plain date */
    int64_t closed_at;
    const char *outcome; /* open, won, lost */
    int64_t changed_at;
} sim_opp_row_t;

typedef struct {
    const char *external_id;
    const char *opportunity_external_id;
    const char *type; /* email, phone, meeting, demo, support */
    const char *channel;
    int64_t occurred_at;
    int duration_min; /* -1: empty */
    const char *outcome;
    const char *meta_json; /* a JSON object */
} sim_interaction_t;

typedef struct {
    const char *external_id;
    const char *opportunity_external_id;
    int64_t occurred_at;
    const char *text;
    size_t text_len;
} sim_transcript_t;

typedef struct {
    const char *opportunity_external_id;
    int checkpoint_day;
    int64_t as_of;
    double true_proba;   /* given the state and every constant of the deal */
    double oracle_proba; /* the same without u and eps, integrated over their priors */
    const char *outcome; /* open, won, lost: the deal's final state */
} sim_truth_t;

/* Where records go. Every callback is required. A deal's records arrive in
 * this order: its opportunity rows (time order), interactions (time order),
 * transcripts (time order), truth rows (checkpoint order). */
typedef struct {
    void *ud;
    void (*account)(void *ud, const sim_account_t *a);
    void (*opp)(void *ud, const sim_opp_row_t *o);
    void (*interaction)(void *ud, const sim_interaction_t *it);
    void (*transcript)(void *ud, const sim_transcript_t *tr);
    void (*truth)(void *ud, const sim_truth_t *t);
} sim_sink_t;

typedef struct sim_s sim_t;
typedef struct sim_scratch_s sim_scratch_t;

/* Builds an org's accounts and owners (kept in memory: ~N/4 accounts and
 * ~N/100 owners, a few dozen bytes each). org numbers the org from 1 and
 * feeds the streams. Never fails; free with sim_destroy. */
sim_t *sim_new(const sim_opts_t *opts, int org);
void sim_destroy(sim_t *sim);

long sim_account_count(const sim_t *sim);
/* Emits every account, in creation order. */
void sim_emit_accounts(const sim_t *sim, const sim_sink_t *sink);
/* Emits account i (0 <= i < sim_account_count). */
void sim_emit_account(const sim_t *sim, long i, const sim_sink_t *sink);

/* Per-thread working memory for sim_deal. */
sim_scratch_t *sim_scratch_new(void);
void sim_scratch_destroy(sim_scratch_t *scratch);

/* Simulates deal i (0 <= i < opportunities) and emits its records. Reads
 * sim only, so several threads may call it at once with their own scratch. */
void sim_deal(const sim_t *sim, long i, const sim_sink_t *sink, sim_scratch_t *scratch);

#endif
