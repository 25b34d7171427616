/* Cold-start priors (see prior.h). */
#include "domain/prior.h"

#include <math.h>
#include <stdio.h>

#include "base/common.h"

const char *ds_prior_version(ds_prior_source_t source) {
    switch (source) {
    case DS_PRIOR_HISTORY: return DS_PRIOR_VERSION_HISTORY;
    case DS_PRIOR_CRM: return DS_PRIOR_VERSION_CRM;
    default: return DS_PRIOR_VERSION_LADDER;
    }
}

static size_t capped(size_t n_open) { return n_open > DS_LADDER_MAX ? DS_LADDER_MAX : n_open; }

void ds_ladder_default(size_t n_open, ds_ladder_t *out) {
    out->n = capped(n_open);
    for (size_t i = 0; i < out->n; i++)
        out->p[i] = out->n == 1 ? DS_LADDER_DEFAULT_LOW
                                : DS_LADDER_DEFAULT_LOW + (DS_LADDER_DEFAULT_HIGH - DS_LADDER_DEFAULT_LOW) *
                                                              (double)i / (double)(out->n - 1);
}

/* Checks the rungs and places them: set[i] true for a stage given. */
static int place_rungs(const ds_ladder_rung_t *rungs, size_t n, ds_ladder_t *out, bool *set, char *errstr,
                       size_t errstr_size) {
    for (size_t k = 0; k < n; k++) {
        int s = rungs[k].stage;
        double p = rungs[k].p;
        if (s < 0 || (size_t)s >= out->n) {
            snprintf(errstr, errstr_size, "stage index %d is not an open stage (0 .. %zu)", s, out->n - 1);
            return DS_EINVAL;
        }
        if (!(p >= 0 && p <= 1)) {
            snprintf(errstr, errstr_size, "probability %g at stage %d is outside [0, 1]", p, s);
            return DS_EINVAL;
        }
        if (set[s]) {
            snprintf(errstr, errstr_size, "stage %d is given twice", s);
            return DS_EINVAL;
        }
        set[s] = true;
        out->p[s] = p;
    }
    int last = -1;
    for (size_t s = 0; s < out->n; s++) {
        if (!set[s]) continue;
        if (last >= 0 && out->p[s] < out->p[last]) {
            snprintf(errstr, errstr_size, "the ladder falls from %g at stage %d to %g at stage %zu",
                     out->p[last], last, out->p[s], s);
            return DS_EINVAL;
        }
        last = (int)s;
    }
    return 0;
}

int ds_ladder_set(const ds_ladder_rung_t *rungs, size_t n, size_t n_open, ds_ladder_t *out, char *errstr,
                  size_t errstr_size) {
    ds_ladder_t def;
    ds_ladder_default(n_open, &def);
    out->n = def.n;
    if (out->n == 0) {
        snprintf(errstr, errstr_size, "the org has no open stage");
        return DS_EINVAL;
    }
    bool set[DS_LADDER_MAX] = {false};
    int rc = place_rungs(rungs, n, out, set, errstr, errstr_size);
    if (rc != 0) return rc;
    /* Stages not set: the default, clamped between the set neighbours. */
    for (size_t s = 0; s < out->n; s++) {
        if (set[s]) continue;
        double lo = 0, hi = 1;
        for (size_t b = 0; b < s; b++)
            if (set[b]) lo = out->p[b];
        for (size_t a = out->n; a-- > s + 1;)
            if (set[a]) hi = out->p[a];
        out->p[s] = fmin(fmax(def.p[s], lo), hi);
    }
    return 0;
}

void ds_ladder_from_stage_prior(const ds_stage_prior_t *sp, size_t n_open, ds_ladder_t *out) {
    out->n = capped(n_open);
    /* Pool adjacent violators over the stages seen: blocks of stages with
     * their count-weighted mean. */
    double mean[DS_LADDER_MAX], weight[DS_LADDER_MAX];
    size_t first[DS_LADDER_MAX], nb = 0;
    for (size_t s = 0; s < out->n; s++) {
        double w = ds_stage_prior_count(sp, (int)s);
        if (!(w > 0)) continue;
        mean[nb] = ds_stage_prior_predict(sp, (int)s);
        weight[nb] = w;
        first[nb++] = s;
        while (nb >= 2 && mean[nb - 2] > mean[nb - 1]) {
            double sum = weight[nb - 2] + weight[nb - 1];
            mean[nb - 2] = (mean[nb - 2] * weight[nb - 2] + mean[nb - 1] * weight[nb - 1]) / sum;
            weight[nb - 2] = sum;
            nb--;
        }
    }
    /* A stage never seen takes the block at or before it (the first block
     * before any), so the ladder still rises; nothing seen: the org rate. */
    size_t b = 0;
    for (size_t s = 0; s < out->n; s++) {
        while (b + 1 < nb && first[b + 1] <= s) b++;
        out->p[s] = nb ? mean[b] : ds_stage_prior_org_rate(sp);
    }
}

double ds_ladder_mean(const ds_ladder_t *l) {
    if (!l->n) return 0.5;
    double sum = 0;
    for (size_t i = 0; i < l->n; i++) sum += l->p[i];
    return sum / (double)l->n;
}

/* The rung of a stage: unknown -> `unknown`, past the ladder -> the last. */
static double rung(const ds_ladder_t *l, double stage_index, double unknown) {
    if (isnan(stage_index) || stage_index < 0 || l->n == 0) return unknown;
    size_t s = (size_t)stage_index;
    return l->p[s < l->n ? s : l->n - 1];
}

void ds_prior_score(const ds_prior_chain_t *c, const ds_prior_input_t *in, ds_prior_score_t *out) {
    double crm = in->crm_probability;
    if (c->history) {
        out->source = DS_PRIOR_HISTORY;
        out->baseline = c->history_rate;
        out->p = rung(c->history, in->stage_index, c->history_rate);
    } else if (crm >= 0 && crm <= 1) {
        out->source = DS_PRIOR_CRM;
        out->baseline = ds_ladder_mean(c->ladder);
        out->p = crm;
    } else {
        out->source = DS_PRIOR_LADDER;
        out->baseline = ds_ladder_mean(c->ladder);
        out->p = rung(c->ladder, in->stage_index, c->ladder->n ? c->ladder->p[0] : 0.5);
    }
    if (in->outcome == DS_OUTCOME_WON) out->p = 1;
    if (in->outcome == DS_OUTCOME_LOST) out->p = 0;
}
