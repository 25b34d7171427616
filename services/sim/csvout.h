/* CSV output of the simulator: a set of five buffers (accounts,
 * opportunities, interactions, transcripts, truth) filled through a sink,
 * written out in order, plus the run's statistics. */
#ifndef DS_SIM_CSVOUT_H
#define DS_SIM_CSVOUT_H

#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "sim.h"

enum { DS_F_ACCOUNTS, DS_F_OPPS, DS_F_INTERACTIONS, DS_F_TRANSCRIPTS, DS_F_TRUTH, DS_F_COUNT };

extern const char *const ds_sim_file_names[DS_F_COUNT];

#define DS_SIM_AUC_BINS 10000

typedef struct {
    uint64_t rows[DS_F_COUNT];
    uint64_t won, lost;           /* closed deals */
    uint64_t truth_won, truth_lost; /* truth rows of closed deals */
    double sum_p_won, sum_p_lost;
    double brier, logloss;
    uint32_t hist_won[DS_SIM_AUC_BINS], hist_lost[DS_SIM_AUC_BINS];
} ds_sim_stats_t;

typedef struct {
    ds_buf_t b[DS_F_COUNT];
    ds_sim_stats_t st;
} ds_sim_bufset_t;

void ds_sim_bufset_init(ds_sim_bufset_t *bs);
void ds_sim_bufset_close(ds_sim_bufset_t *bs);
/* A sink that appends CSV rows to bs. */
ds_sim_sink_t ds_sim_csv_sink(ds_sim_bufset_t *bs);
/* Appends the header row of every file. */
void ds_sim_csv_headers(ds_sim_bufset_t *bs);
/* Writes every buffer to its file, adds the statistics into total and
 * empties bs. Returns 0, or -1 if a write failed (errno set). */
int ds_sim_bufset_flush(ds_sim_bufset_t *bs, FILE *const files[DS_F_COUNT],
                        ds_sim_stats_t *total);
void ds_sim_stats_add(ds_sim_stats_t *into, const ds_sim_stats_t *from);
/* ROC AUC of the truth rows of closed deals (the Bayes-optimal AUC). */
double ds_sim_stats_auc(const ds_sim_stats_t *st);

#endif
