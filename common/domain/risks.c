/* Deal risk rules, their thresholds and the resolved feature vectors. */
#include "domain/risks.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

static const char *const rule_names[DS_RISK_RULE_COUNT] = {"meddicc_missing", "stalled", "close_date_pushed",
                                                           "engagement_down", "single_contact"};

/* The same rows as the deal_risks migration inserts with org_id null
 * (a unit test compares the two). */
static const ds_risk_rule_t default_rules[DS_RISK_RULE_COUNT] = {
    {true, 0.5, 3, 20, "Establish the {element} with the buyer before the deal moves on"},
    {true, 1.0, 30, 20, "Agree a dated next step with the buyer that moves the deal to the next stage"},
    {true, 0.8, 2, 20, "Re-qualify the close date with the economic buyer and agree the timeline"},
    {true, 0.5, 0, 20, "Re-engage the buyer: book a meeting with the people who were active"},
    {true, 1, 2, 20, "Multi-thread: bring a second buyer stakeholder into the next meeting"},
};

/* What the rep reads for each MEDDICC element. */
static const char *const element_nouns[DS_MEDDICC_COUNT] = {
    "metrics",       "economic buyer", "decision criteria", "decision process",
    "paper process", "pain",           "champion",          "competition"};

int ds_risk_rule_parse(const char *name) {
    for (int i = 0; name && i < DS_RISK_RULE_COUNT; i++)
        if (strcmp(name, rule_names[i]) == 0) return i;
    return -1;
}

const char *ds_risk_rule_name(int rule) {
    return rule >= 0 && rule < DS_RISK_RULE_COUNT ? rule_names[rule] : NULL;
}

const ds_risk_rule_t *ds_risk_rules_default(void) { return default_rules; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (sorted in place). */
static double median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Won deals recorded (a call transcript) by stage s, and those of them
 * with element el by then; first_call NULL: all recorded from stage 0. */
static void meddicc_by_stage(const ds_risk_won_t *won, int el, size_t recorded[DS_RISK_MAX_STAGES],
                             size_t with[DS_RISK_MAX_STAGES]) {
    memset(recorded, 0, DS_RISK_MAX_STAGES * sizeof *recorded);
    memset(with, 0, DS_RISK_MAX_STAGES * sizeof *with);
    for (size_t d = 0; d < won->n_won; d++) {
        int call = won->first_call ? won->first_call[d] : 0;
        int s = won->first_stage[d * DS_MEDDICC_COUNT + el];
        if (call >= 0 && call < DS_RISK_MAX_STAGES) recorded[call]++;
        if (s >= 0 && s < DS_RISK_MAX_STAGES) with[s]++;
    }
    for (int s = 1; s < DS_RISK_MAX_STAGES; s++) {
        recorded[s] += recorded[s - 1];
        with[s] += with[s - 1];
    }
}

static void fit_meddicc(ds_risk_config_t *cfg, const ds_risk_won_t *won) {
    const ds_risk_rule_t *r = &cfg->rules[DS_RISK_MEDDICC_MISSING];
    size_t min = r->min_won_deals > 0 ? (size_t)r->min_won_deals : 1;
    size_t recorded[DS_RISK_MAX_STAGES], with[DS_RISK_MAX_STAGES];
    for (int el = 0; el < DS_MEDDICC_COUNT; el++) {
        cfg->meddicc_stage[el] = (int)r->fallback;
        cfg->meddicc_share[el] = NAN;
        if (!won || !won->first_stage) continue;
        meddicc_by_stage(won, el, recorded, with);
        if (recorded[DS_RISK_MAX_STAGES - 1] < min) continue;
        cfg->meddicc_stage[el] = INT_MAX;
        for (int s = 0; s < DS_RISK_MAX_STAGES; s++) {
            double share = recorded[s] ? (double)with[s] / (double)recorded[s] : 0;
            if (recorded[s] >= min && share >= r->param) {
                cfg->meddicc_stage[el] = s;
                cfg->meddicc_share[el] = share;
                break;
            }
        }
    }
}

static void fit_stall(ds_risk_config_t *cfg, const ds_risk_won_t *won) {
    const ds_risk_rule_t *r = &cfg->rules[DS_RISK_STALLED];
    for (int s = 0; s < DS_RISK_MAX_STAGES; s++) cfg->stall_days[s] = cfg->stall_median[s] = NAN;
    if (!won || won->n_visits == 0) return;
    double *days = ds_malloc(won->n_visits * sizeof *days);
    for (int s = 0; s < DS_RISK_MAX_STAGES; s++) {
        size_t n = 0;
        for (size_t i = 0; i < won->n_visits; i++)
            if (won->visit_stage[i] == s && isfinite(won->visit_days[i])) days[n++] = won->visit_days[i];
        if (n == 0 || n < (size_t)r->min_won_deals) continue;
        cfg->stall_median[s] = median(days, n);
        cfg->stall_days[s] = r->param * cfg->stall_median[s];
    }
    free(days);
}

static void fit_pushes(ds_risk_config_t *cfg, const ds_risk_won_t *won) {
    const ds_risk_rule_t *r = &cfg->rules[DS_RISK_CLOSE_DATE_PUSHED];
    cfg->max_pushes = r->fallback - 1;
    cfg->pushes_learned = false;
    if (!won || !won->pushes || won->n_won == 0 || won->n_won < (size_t)r->min_won_deals) return;
    double *v = ds_malloc(won->n_won * sizeof *v);
    for (size_t i = 0; i < won->n_won; i++) v[i] = won->pushes[i];
    qsort(v, won->n_won, sizeof *v, cmp_double);
    /* Nearest rank: the smallest value with at least param of the deals at or below it. */
    size_t rank = (size_t)ceil(r->param * (double)won->n_won);
    if (rank < 1) rank = 1;
    if (rank > won->n_won) rank = won->n_won;
    cfg->max_pushes = v[rank - 1];
    cfg->pushes_learned = true;
    free(v);
}

void ds_risk_config_fit(ds_risk_config_t *cfg, const ds_risk_rule_t *rules, const ds_risk_won_t *won) {
    memset(cfg, 0, sizeof *cfg);
    memcpy(cfg->rules, rules, sizeof cfg->rules);
    cfg->n_won = won ? won->n_won : 0;
    fit_meddicc(cfg, won);
    fit_stall(cfg, won);
    fit_pushes(cfg, won);
}

/* ---- evaluation ------------------------------------------------------------ */

static const char *stage_name(const ds_risk_config_t *cfg, int s, char buf[24]) {
    if (s >= 0 && s < DS_RISK_MAX_STAGES && cfg->stage_names[s]) return cfg->stage_names[s];
    snprintf(buf, 24, "stage %d", s);
    return buf;
}

/* risk->action from the rule's text, "{element}" replaced by noun. */
static void set_action(ds_risk_t *risk, const char *text, const char *noun) {
    const char *at = noun ? strstr(text, "{element}") : NULL;
    if (!at)
        snprintf(risk->action, sizeof risk->action, "%s", text);
    else
        snprintf(risk->action, sizeof risk->action, "%.*s%s%s", (int)(at - text), text, noun, at + 9);
}

static ds_risk_t *add(const ds_risk_config_t *cfg, ds_risk_t *out, size_t *n, int rule, int element) {
    ds_risk_t *r = &out[(*n)++];
    memset(r, 0, sizeof *r);
    r->rule = rule;
    r->element = element;
    r->what_if = NAN;
    set_action(r, cfg->rules[rule].action ? cfg->rules[rule].action : "",
               element >= 0 ? element_nouns[element] : NULL);
    return r;
}

static void eval_meddicc(const ds_risk_config_t *cfg, const double *v, int si, ds_risk_t *out, size_t *n) {
    char b1[24], b2[24];
    for (int el = 0; el < DS_MEDDICC_COUNT; el++) {
        int expected = cfg->meddicc_stage[el];
        if (v[DS_F_MEDDICC_METRICS + el] == 1 || expected == INT_MAX || si < expected) continue;
        ds_risk_t *r = add(cfg, out, n, DS_RISK_MEDDICC_MISSING, el);
        const char *now = stage_name(cfg, si, b1), *by = stage_name(cfg, expected, b2);
        double calls = v[DS_F_N_TRANSCRIPTS];
        if (isnan(cfg->meddicc_share[el]))
            snprintf(r->evidence, sizeof r->evidence,
                     "No %s identified yet in %s (%.0f recorded call%s); expected from %s on (default: too "
                     "few won deals)",
                     element_nouns[el], now, calls, calls == 1 ? "" : "s", by);
        else
            snprintf(r->evidence, sizeof r->evidence,
                     "No %s identified yet in %s (%.0f recorded call%s); %.0f %% of won deals with a "
                     "recorded call had it by %s",
                     element_nouns[el], now, calls, calls == 1 ? "" : "s", 100 * cfg->meddicc_share[el], by);
    }
}

static void eval_stall(const ds_risk_config_t *cfg, const double *v, int si, ds_risk_t *out, size_t *n) {
    double days = v[DS_F_DAYS_IN_STAGE];
    double limit = cfg->stall_days[si], med = cfg->stall_median[si];
    bool learned = !isnan(limit);
    if (!learned) limit = cfg->rules[DS_RISK_STALLED].fallback;
    if (!(days > limit)) return;
    char b[24];
    ds_risk_t *r = add(cfg, out, n, DS_RISK_STALLED, -1);
    if (learned)
        snprintf(r->evidence, sizeof r->evidence, "%.0f days in %s; won deals' median there is %.0f days",
                 floor(days), stage_name(cfg, si, b), med);
    else
        snprintf(r->evidence, sizeof r->evidence,
                 "%.0f days in %s; over the %.0f-day default (too few won deals)", floor(days),
                 stage_name(cfg, si, b), limit);
}

static void eval_pushes(const ds_risk_config_t *cfg, const double *v, ds_risk_t *out, size_t *n) {
    double p = v[DS_F_CLOSE_DATE_PUSHES];
    if (!(p > cfg->max_pushes) || !(p >= 1)) return;
    ds_risk_t *r = add(cfg, out, n, DS_RISK_CLOSE_DATE_PUSHED, -1);
    if (cfg->pushes_learned)
        snprintf(r->evidence, sizeof r->evidence,
                 "Close date pushed %.0f times; %.0f %% of won deals had at most %.0f", p,
                 100 * cfg->rules[DS_RISK_CLOSE_DATE_PUSHED].param, cfg->max_pushes);
    else
        snprintf(r->evidence, sizeof r->evidence, "Close date pushed %.0f times (flagged from %.0f)", p,
                 cfg->max_pushes + 1);
}

static const int recent_counts[] = {DS_F_N_EMAIL_14D, DS_F_N_PHONE_14D, DS_F_N_MEETING_14D, DS_F_N_DEMO_14D,
                                    DS_F_N_SUPPORT_14D};

static void eval_engagement(const ds_risk_config_t *cfg, const double *v, ds_risk_t *out, size_t *n) {
    double vel = v[DS_F_VELOCITY_14D];
    if (!(vel < cfg->rules[DS_RISK_ENGAGEMENT_DOWN].param) || !(vel > 0)) return;
    double recent = 0;
    for (size_t i = 0; i < DS_ARRAY_SIZE(recent_counts); i++)
        if (isfinite(v[recent_counts[i]])) recent += v[recent_counts[i]];
    /* velocity = (recent + 1) / (before + 1) gives the 14 days before back. */
    double before = round((recent + 1) / vel - 1);
    ds_risk_t *r = add(cfg, out, n, DS_RISK_ENGAGEMENT_DOWN, -1);
    snprintf(r->evidence, sizeof r->evidence,
             "%.0f interaction%s in the last 14 days against %.0f in the 14 days before", recent,
             recent == 1 ? "" : "s", before);
}

static void eval_contacts(const ds_risk_config_t *cfg, const double *v, int si, ds_risk_t *out, size_t *n) {
    const ds_risk_rule_t *rule = &cfg->rules[DS_RISK_SINGLE_CONTACT];
    double contacts = v[DS_F_BUYER_CONTACTS];
    /* None known (no speaker, no named contact) says nothing. */
    if (!(contacts >= 1) || contacts > rule->param || si < (int)rule->fallback) return;
    char b[24];
    ds_risk_t *r = add(cfg, out, n, DS_RISK_SINGLE_CONTACT, -1);
    snprintf(r->evidence, sizeof r->evidence, "%.0f buyer contact%s engaged so far, in %s", contacts,
             contacts == 1 ? "" : "s", stage_name(cfg, si, b));
}

size_t ds_risks_eval(const ds_risk_config_t *cfg, const double *values, ds_risk_t *out) {
    size_t n = 0;
    double sv = values[DS_F_STAGE_INDEX];
    int si = isfinite(sv) && sv >= 0 && sv < DS_RISK_MAX_STAGES ? (int)sv : -1;
    /* No call transcript, no evidence either way of the deal's elements. */
    if (si >= 0 && cfg->rules[DS_RISK_MEDDICC_MISSING].enabled && values[DS_F_N_TRANSCRIPTS] > 0)
        eval_meddicc(cfg, values, si, out, &n);
    if (si >= 0 && cfg->rules[DS_RISK_STALLED].enabled) eval_stall(cfg, values, si, out, &n);
    if (cfg->rules[DS_RISK_CLOSE_DATE_PUSHED].enabled) eval_pushes(cfg, values, out, &n);
    if (cfg->rules[DS_RISK_ENGAGEMENT_DOWN].enabled) eval_engagement(cfg, values, out, &n);
    if (si >= 0 && cfg->rules[DS_RISK_SINGLE_CONTACT].enabled) eval_contacts(cfg, values, si, out, &n);
    return n;
}

/* ---- what-if ---------------------------------------------------------------- */

/* The last 14 days brought back to the level of the days before: each
 * type's 14-day count raised to its count in the 16 days before (30-day
 * minus 14-day), the 30-day and all-time counts by as much, velocity 1. */
static void restore_engagement(double *out) {
    for (size_t i = 0; i < DS_ARRAY_SIZE(recent_counts); i++) {
        int f14 = recent_counts[i], f30 = f14 + 1, fall = f14 + 2;
        if (!isfinite(out[f14]) || !isfinite(out[f30])) continue;
        double before = out[f30] - out[f14];
        if (before <= out[f14]) continue;
        double add = before - out[f14];
        out[f14] += add;
        out[f30] += add;
        if (isfinite(out[fall])) out[fall] += add;
    }
    if (!(out[DS_F_VELOCITY_14D] >= 1)) out[DS_F_VELOCITY_14D] = 1;
}

void ds_risk_resolved(const ds_risk_config_t *cfg, const ds_risk_t *risk, const double *values, double *out) {
    memcpy(out, values, DS_FEATURE_COUNT * sizeof *out);
    double sv = values[DS_F_STAGE_INDEX];
    int si = isfinite(sv) && sv >= 0 && sv < DS_RISK_MAX_STAGES ? (int)sv : 0;
    switch (risk->rule) {
    case DS_RISK_MEDDICC_MISSING:
        out[DS_F_MEDDICC_METRICS + risk->element] = 1;
        out[DS_F_MEDDICC_COVERAGE] =
            (isfinite(values[DS_F_MEDDICC_COVERAGE]) ? values[DS_F_MEDDICC_COVERAGE] : 0) + 1;
        break;
    case DS_RISK_STALLED:
        out[DS_F_DAYS_IN_STAGE] =
            isnan(cfg->stall_median[si]) ? cfg->rules[DS_RISK_STALLED].fallback : cfg->stall_median[si];
        break;
    case DS_RISK_CLOSE_DATE_PUSHED: out[DS_F_CLOSE_DATE_PUSHES] = 0; break;
    case DS_RISK_ENGAGEMENT_DOWN: restore_engagement(out); break;
    case DS_RISK_SINGLE_CONTACT:
        out[DS_F_BUYER_CONTACTS] = floor(cfg->rules[DS_RISK_SINGLE_CONTACT].param) + 1;
        break;
    default: break;
    }
}

void ds_risks_rank(ds_risk_t *risks, size_t n) {
    /* Insertion sort: stable, and n is at most DS_RISK_MAX. */
    for (size_t i = 1; i < n; i++) {
        ds_risk_t t = risks[i];
        size_t j = i;
        while (j > 0 && t.what_if > risks[j - 1].what_if) {
            risks[j] = risks[j - 1];
            j--;
        }
        risks[j] = t;
    }
}

static void put_fixed4(ds_sb_t *b, double v) {
    if (!isfinite(v)) {
        ds_sb_puts(b, "null");
        return;
    }
    ds_sb_printf(b, "%.4f", v);
}

void ds_risks_write(ds_sb_t *b, const ds_risk_t *risks, size_t n, double proba) {
    ds_sb_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        const ds_risk_t *r = &risks[i];
        if (i) ds_sb_putc(b, ',');
        ds_sb_puts(b, "{\"rule\":");
        ds_sb_json_str(b, rule_names[r->rule]);
        ds_sb_puts(b, ",\"element\":");
        if (r->element >= 0)
            ds_sb_json_str(b, ds_meddicc_element_name((ds_meddicc_element_t)r->element));
        else
            ds_sb_puts(b, "null");
        ds_sb_puts(b, ",\"evidence\":");
        ds_sb_json_str(b, r->evidence);
        ds_sb_puts(b, ",\"action\":");
        ds_sb_json_str(b, r->action);
        ds_sb_puts(b, ",\"what_if\":");
        put_fixed4(b, r->what_if);
        ds_sb_puts(b, ",\"gain\":");
        put_fixed4(b, r->what_if - proba);
        ds_sb_putc(b, '}');
    }
    ds_sb_putc(b, ']');
}
