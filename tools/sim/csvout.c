/* CSV rows per DESIGN.md "Records"; see csvout.h. */
#include "csvout.h"

#include <math.h>
#include <string.h>

const char *const sim_file_names[SIM_F_COUNT] = {
    "accounts.csv", "opportunities.csv", "interactions.csv", "transcripts.csv", "truth.csv",
};

static const char *const headers[SIM_F_COUNT] = {
    "external_id,name,industry,region,size_band,created_at\n",
    "external_id,account_external_id,owner_id,product_category,persona,amount,currency,"
    "stage,created_at,close_date,closed_at,outcome,changed_at\n",
    "external_id,opportunity_external_id,type,channel,occurred_at,duration_min,outcome,"
    "meta_json\n",
    "external_id,opportunity_external_id,occurred_at,text\n",
    "opportunity_external_id,checkpoint_day,as_of,true_proba,outcome,oracle_proba\n",
};

void sim_bufset_init(sim_bufset_t *bs) {
    for (int i = 0; i < SIM_F_COUNT; i++) bs->b[i] = (ds_sb_t){0};
    memset(&bs->st, 0, sizeof(bs->st));
}

void sim_bufset_close(sim_bufset_t *bs) {
    for (int i = 0; i < SIM_F_COUNT; i++) ds_sb_free(&bs->b[i]);
}

void sim_csv_headers(sim_bufset_t *bs) {
    for (int i = 0; i < SIM_F_COUNT; i++) ds_sb_puts(&bs->b[i], headers[i]);
}

static void csv_str(ds_sb_t *b, const char *s) { buf_put_csv(b, s, strlen(s)); }

static void on_account(void *ud, const sim_account_t *a) {
    sim_bufset_t *bs = ud;
    ds_sb_t *b = &bs->b[SIM_F_ACCOUNTS];
    csv_str(b, a->external_id);
    ds_sb_putc(b, ',');
    csv_str(b, a->name);
    ds_sb_putc(b, ',');
    csv_str(b, a->industry);
    ds_sb_putc(b, ',');
    csv_str(b, a->region);
    ds_sb_putc(b, ',');
    csv_str(b, a->size_band);
    ds_sb_putc(b, ',');
    buf_put_time(b, a->created_at);
    ds_sb_putc(b, '\n');
    bs->st.rows[SIM_F_ACCOUNTS]++;
}

static void on_opp(void *ud, const sim_opp_row_t *o) {
    sim_bufset_t *bs = ud;
    ds_sb_t *b = &bs->b[SIM_F_OPPS];
    csv_str(b, o->external_id);
    ds_sb_putc(b, ',');
    csv_str(b, o->account_external_id);
    ds_sb_putc(b, ',');
    csv_str(b, o->owner_id);
    ds_sb_putc(b, ',');
    csv_str(b, o->product_category);
    ds_sb_putc(b, ',');
    csv_str(b, o->persona);
    ds_sb_putc(b, ',');
    buf_put_fixed(b, o->amount, 2);
    ds_sb_putc(b, ',');
    csv_str(b, o->currency);
    ds_sb_putc(b, ',');
    csv_str(b, o->stage);
    ds_sb_putc(b, ',');
    buf_put_time(b, o->created_at);
    ds_sb_putc(b, ',');
    if (o->close_date) buf_put_date(b, o->close_date);
    ds_sb_putc(b, ',');
    if (o->closed_at) buf_put_time(b, o->closed_at);
    ds_sb_putc(b, ',');
    csv_str(b, o->outcome);
    ds_sb_putc(b, ',');
    buf_put_time(b, o->changed_at);
    ds_sb_putc(b, '\n');
    bs->st.rows[SIM_F_OPPS]++;
    if (o->outcome[0] == 'w')
        bs->st.won++;
    else if (o->outcome[0] == 'l')
        bs->st.lost++;
}

static void on_interaction(void *ud, const sim_interaction_t *it) {
    sim_bufset_t *bs = ud;
    ds_sb_t *b = &bs->b[SIM_F_INTERACTIONS];
    csv_str(b, it->external_id);
    ds_sb_putc(b, ',');
    csv_str(b, it->opportunity_external_id);
    ds_sb_putc(b, ',');
    csv_str(b, it->type);
    ds_sb_putc(b, ',');
    csv_str(b, it->channel);
    ds_sb_putc(b, ',');
    buf_put_time(b, it->occurred_at);
    ds_sb_putc(b, ',');
    if (it->duration_min >= 0) ds_sb_i64(b, it->duration_min);
    ds_sb_putc(b, ',');
    csv_str(b, it->outcome);
    ds_sb_putc(b, ',');
    csv_str(b, it->meta_json);
    ds_sb_putc(b, '\n');
    bs->st.rows[SIM_F_INTERACTIONS]++;
}

static void on_transcript(void *ud, const sim_transcript_t *tr) {
    sim_bufset_t *bs = ud;
    ds_sb_t *b = &bs->b[SIM_F_TRANSCRIPTS];
    csv_str(b, tr->external_id);
    ds_sb_putc(b, ',');
    csv_str(b, tr->opportunity_external_id);
    ds_sb_putc(b, ',');
    buf_put_time(b, tr->occurred_at);
    ds_sb_putc(b, ',');
    buf_put_csv(b, tr->text, tr->text_len);
    ds_sb_putc(b, '\n');
    bs->st.rows[SIM_F_TRANSCRIPTS]++;
}

static void on_truth(void *ud, const sim_truth_t *t) {
    sim_bufset_t *bs = ud;
    ds_sb_t *b = &bs->b[SIM_F_TRUTH];
    csv_str(b, t->opportunity_external_id);
    ds_sb_putc(b, ',');
    ds_sb_i64(b, t->checkpoint_day);
    ds_sb_putc(b, ',');
    buf_put_time(b, t->as_of);
    ds_sb_putc(b, ',');
    buf_put_fixed(b, t->true_proba, 6);
    ds_sb_putc(b, ',');
    csv_str(b, t->outcome);
    ds_sb_putc(b, ',');
    buf_put_fixed(b, t->oracle_proba, 6);
    ds_sb_putc(b, '\n');
    bs->st.rows[SIM_F_TRUTH]++;

    sim_stats_t *st = &bs->st;
    double p = t->true_proba;
    int bin = (int)(p * SIM_AUC_BINS);
    if (bin >= SIM_AUC_BINS) bin = SIM_AUC_BINS - 1;
    if (bin < 0) bin = 0;
    double pc = p < 1e-9 ? 1e-9 : p > 1 - 1e-9 ? 1 - 1e-9 : p;
    if (t->outcome[0] == 'w') {
        st->truth_won++;
        st->sum_p_won += p;
        st->hist_won[bin]++;
        st->brier += (1 - p) * (1 - p);
        st->logloss -= log(pc);
    } else if (t->outcome[0] == 'l') {
        st->truth_lost++;
        st->sum_p_lost += p;
        st->hist_lost[bin]++;
        st->brier += p * p;
        st->logloss -= log(1 - pc);
    }
}

sim_sink_t sim_csv_sink(sim_bufset_t *bs) {
    sim_sink_t s = {bs, on_account, on_opp, on_interaction, on_transcript, on_truth};
    return s;
}

void sim_stats_add(sim_stats_t *into, const sim_stats_t *from) {
    for (int i = 0; i < SIM_F_COUNT; i++) into->rows[i] += from->rows[i];
    into->won += from->won;
    into->lost += from->lost;
    into->truth_won += from->truth_won;
    into->truth_lost += from->truth_lost;
    into->sum_p_won += from->sum_p_won;
    into->sum_p_lost += from->sum_p_lost;
    into->brier += from->brier;
    into->logloss += from->logloss;
    for (int i = 0; i < SIM_AUC_BINS; i++) {
        into->hist_won[i] += from->hist_won[i];
        into->hist_lost[i] += from->hist_lost[i];
    }
}

int sim_bufset_flush(sim_bufset_t *bs, FILE *const files[SIM_F_COUNT], sim_stats_t *total) {
    int rc = 0;
    for (int i = 0; i < SIM_F_COUNT; i++) {
        if (bs->b[i].len && fwrite(bs->b[i].p, 1, bs->b[i].len, files[i]) != bs->b[i].len) rc = -1;
        ds_sb_reset(&bs->b[i]);
    }
    if (total) sim_stats_add(total, &bs->st);
    memset(&bs->st, 0, sizeof(bs->st));
    return rc;
}

double sim_stats_auc(const sim_stats_t *st) {
    /* Pairs (won, lost) ordered right count 1, ties within a bin 1/2. */
    double lost_below = 0, num = 0;
    for (int i = 0; i < SIM_AUC_BINS; i++) {
        num += (double)st->hist_won[i] * (lost_below + 0.5 * st->hist_lost[i]);
        lost_below += st->hist_lost[i];
    }
    double den = (double)st->truth_won * (double)st->truth_lost;
    return den > 0 ? num / den : NAN;
}
