/* CSV output of the simulator: a set of five buffers (accounts,
 * opportunities, interactions, transcripts, truth) filled through a sink,
 * written out in order, plus the run's statistics. */
#ifndef SIM_CSVOUT_H
#define SIM_CSVOUT_H

#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "sim.h"

enum { SIM_F_ACCOUNTS, SIM_F_OPPS, SIM_F_INTERACTIONS, SIM_F_TRANSCRIPTS, SIM_F_TRUTH, SIM_F_COUNT };

extern const char *const sim_file_names[SIM_F_COUNT];

#define SIM_AUC_BINS 10000

typedef struct {
    uint64_t rows[SIM_F_COUNT];
    uint64_t won, lost;             /* closed deals */
    uint64_t truth_won, truth_lost; /* truth rows of closed deals */
    double sum_p_won, sum_p_lost;
    double brier, logloss;
    uint32_t hist_won[SIM_AUC_BINS], hist_lost[SIM_AUC_BINS];
} sim_stats_t;

typedef struct {
    ds_sb_t b[SIM_F_COUNT];
    sim_stats_t st;
} sim_bufset_t;

void sim_bufset_init(sim_bufset_t *bs);
void sim_bufset_close(sim_bufset_t *bs);
/* A sink that appends CSV rows to bs. */
sim_sink_t sim_csv_sink(sim_bufset_t *bs);
/* Appends the header row of every file. */
void sim_csv_headers(sim_bufset_t *bs);
/* Writes every buffer to its file, adds the statistics into total and
 * empties bs. Returns 0, or -1 if a write failed (errno set). */
int sim_bufset_flush(sim_bufset_t *bs, FILE *const files[SIM_F_COUNT], sim_stats_t *total);
void sim_stats_add(sim_stats_t *into, const sim_stats_t *from);
/* ROC AUC of the truth rows of closed deals (the Bayes-optimal AUC). */
double sim_stats_auc(const sim_stats_t *st);

#endif
