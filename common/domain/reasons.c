/* Reasons in words (see reasons.h). */
#include "domain/reasons.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/common.h"

void ds_reason_ctx_init(ds_reason_ctx_t *ctx) {
    memset(ctx, 0, sizeof *ctx);
    ctx->amount_p25 = ctx->amount_median = ctx->amount_p75 = NAN;
    ctx->crm_probability = NAN;
}

#define SAY(...) snprintf(out->display, sizeof out->display, __VA_ARGS__)

static void set_label(ds_reason_t *out, const char *label) {
    snprintf(out->label, sizeof out->label, "%s", label);
}

/* "1 day", "41 days" (rounded to whole days). */
static void say_count(ds_reason_t *out, const char *prefix, double n, const char *one, const char *many,
                      const char *suffix) {
    long long k = llround(n);
    SAY("%s%lld %s%s", prefix, k, k == 1 ? one : many, suffix);
}

/* 285000 -> "285,000" (whole units, thousands grouped). */
static void group_thousands(double v, char *buf, size_t size) {
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", fabs(v));
    size_t n = strlen(digits), w = 0;
    if (v < 0 && w + 1 < size) buf[w++] = '-';
    for (size_t i = 0; i < n && w + 2 < size; i++) {
        if (i && (n - i) % 3 == 0) buf[w++] = ',';
        buf[w++] = digits[i];
    }
    buf[w] = '\0';
}

/* "$285,000", "€285,000", "285,000 CHF", "285,000" without a currency. */
static void format_money(double amount, const char *currency, char *buf, size_t size) {
    char num[40];
    group_thousands(amount, num, sizeof num);
    static const struct {
        const char *code, *symbol;
    } symbols[] = {{"USD", "$"}, {"EUR", "\u20ac"}, {"GBP", "\u00a3"}, {"JPY", "\u00a5"}};
    for (size_t i = 0; currency && i < DS_ARRAY_SIZE(symbols); i++) {
        if (strcasecmp(currency, symbols[i].code) == 0) {
            snprintf(buf, size, "%s%s", symbols[i].symbol, num);
            return;
        }
    }
    if (currency && *currency)
        snprintf(buf, size, "%s %s", num, currency);
    else
        snprintf(buf, size, "%s", num);
}

static void say_amount(ds_reason_t *out, double log_amount, const ds_reason_ctx_t *ctx) {
    set_label(out, "Amount");
    if (isnan(log_amount)) {
        SAY("not set");
        return;
    }
    double amount = expm1(log_amount);
    char money[64];
    format_money(amount, ctx->currency, money, sizeof money);
    /* Quartiles of the similar won deals say where the amount stands. */
    const char *where = NULL;
    if (amount > ctx->amount_p75)
        where = "above 75 %";
    else if (amount > ctx->amount_median)
        where = "above half";
    else if (amount >= ctx->amount_p25)
        where = "below half";
    else if (amount < ctx->amount_p25)
        where = "below 75 %";
    if (where)
        SAY("%s (%s of similar won deals)", money, where);
    else
        SAY("%s", money);
}

/* The stage's name: the CRM's when it is the stage of that index, else the
 * stage list's ("proposal_price_quote" -> "Proposal price quote"). */
static void stage_name(const ds_reason_ctx_t *ctx, int index, char *buf, size_t size) {
    const ds_stage_list_t *stages = ctx->stages ? ctx->stages : ds_stage_list_default();
    if (ctx->stage && ds_stage_list_index(stages, ctx->stage) == index) {
        snprintf(buf, size, "%s", ctx->stage);
        return;
    }
    const char *norm = ds_stage_list_name(stages, index);
    snprintf(buf, size, "%s", norm ? norm : "unknown");
    for (char *c = buf; *c; c++)
        if (*c == '_') *c = ' ';
    if (buf[0] >= 'a' && buf[0] <= 'z') buf[0] = (char)(buf[0] - 'a' + 'A');
}

static double ctx_value(const ds_reason_ctx_t *ctx, int id) { return ctx->values ? ctx->values[id] : NAN; }

static void say_stage(ds_reason_t *out, double index, const ds_reason_ctx_t *ctx) {
    set_label(out, "Stage");
    if (isnan(index)) {
        SAY("unknown");
        return;
    }
    char name[96];
    stage_name(ctx, (int)index, name, sizeof name);
    double days = ctx_value(ctx, DS_F_DAYS_IN_STAGE);
    long long k = isnan(days) ? 0 : llround(days);
    if (isnan(days))
        SAY("%s", name);
    else if (days < 1)
        SAY("%s since today", name);
    else
        SAY("%s for %lld %s", name, k, k == 1 ? "day" : "days");
}

/* "12 days ago", "today", or `none` when NaN. */
static void say_ago(ds_reason_t *out, double days, const char *none) {
    if (isnan(days))
        SAY("%s", none);
    else if (days < 1)
        SAY("today");
    else
        say_count(out, "", days, "day", "days", " ago");
}

static void say_close(ds_reason_t *out, double days) {
    set_label(out, "Close date");
    if (isnan(days))
        SAY("not set");
    else if (days < 0 && days > -1)
        SAY("today, overdue");
    else if (days < 0)
        say_count(out, "", -days, "day", "days", " overdue");
    else if (days < 1)
        SAY("today");
    else
        say_count(out, "in ", days, "day", "days", "");
}

/* "up 20 %", "down 40 %", or `same` within 5 %. */
static void say_ratio(ds_reason_t *out, double ratio, const char *same, const char *suffix) {
    if (isnan(ratio))
        SAY("unknown");
    else if (fabs(ratio - 1) < 0.05)
        SAY("%s", same);
    else
        SAY("%s %.0f %%%s", ratio > 1 ? "up" : "down", fabs(ratio - 1) * 100, suffix);
}

static void say_rate(ds_reason_t *out, double rate, double closed) {
    if (isnan(rate))
        SAY("no history");
    else if (isnan(closed))
        SAY("%.0f %%", rate * 100);
    else if (llround(closed) == 0)
        SAY("%.0f %% (the org's; none closed before)", rate * 100);
    else
        SAY("%.0f %% (%lld closed before)", rate * 100, llround(closed));
}

/* Interaction counts: "Emails, last 14 days: 3 emails". */
static void say_interactions(ds_reason_t *out, int id, double n) {
    static const char *const nouns[][2] = {{"email", "emails"},
                                           {"call", "calls"},
                                           {"meeting", "meetings"},
                                           {"demo", "demos"},
                                           {"support contact", "support contacts"}};
    set_label(out, ds_feature_label(id));
    int type = (id - DS_F_N_EMAIL_14D) / 3;
    if (isnan(n) || llround(n) == 0)
        SAY("none");
    else
        say_count(out, "", n, nouns[type][0], nouns[type][1], "");
}

static const char *const meddicc_labels[] = {"Metrics",          "Economic buyer", "Decision criteria",
                                             "Decision process", "Paper process",  "Pain",
                                             "Champion",         "Competition"};

static void say_meddicc(ds_reason_t *out, int id, double flag) {
    set_label(out, meddicc_labels[id - DS_F_MEDDICC_METRICS]);
    SAY("%s", flag >= 0.5 ? "identified" : "none identified yet");
}

static void say_category(ds_reason_t *out, const char *label, double code, const char *text) {
    set_label(out, label);
    if (text && *text)
        SAY("%s", text);
    else
        SAY("%s", isnan(code) ? "not set" : "set");
}

static void say_firmographic(ds_reason_t *out, int id, double v, const ds_reason_ctx_t *ctx) {
    switch (id) {
    case DS_F_INDUSTRY_CODE: say_category(out, "Industry", v, ctx->industry); break;
    case DS_F_REGION_CODE: say_category(out, "Region", v, ctx->region); break;
    case DS_F_SIZE_BAND_CODE: say_category(out, "Company size", v, ctx->size_band); break;
    case DS_F_PRODUCT_CATEGORY_CODE: say_category(out, "Product", v, ctx->product_category); break;
    case DS_F_PERSONA_CODE: say_category(out, "Buyer persona", v, ctx->persona); break;
    case DS_F_ACCOUNT_WIN_RATE:
        set_label(out, "Account's win rate");
        say_rate(out, v, ctx_value(ctx, DS_F_ACCOUNT_CLOSED_DEALS));
        break;
    case DS_F_OWNER_WIN_RATE:
        set_label(out, "Owner's win rate");
        say_rate(out, v, ctx_value(ctx, DS_F_OWNER_CLOSED_DEALS));
        break;
    default:
        set_label(out, id == DS_F_ACCOUNT_CLOSED_DEALS ? "Account's closed deals" : "Owner's closed deals");
        if (isnan(v))
            SAY("no history");
        else if (llround(v) == 0)
            SAY("none");
        else
            say_count(out, "", v, "deal", "deals", "");
    }
}

/* "enterprise analytics deals" as the CRM named the pair, else "deals of
 * its <kind> and product". */
static void cohort_words(const char *a, const char *b, const char *kind, char *buf, size_t size) {
    if (a && *a && b && *b)
        snprintf(buf, size, "%s %s deals", a, b);
    else
        snprintf(buf, size, "deals of its %s and product", kind);
}

/* The features that set a deal beside its peers: the industry and
 * product's win rate, the amount against the size band and product's
 * typical one. */
static void say_peers(ds_reason_t *out, int id, double v, const ds_reason_ctx_t *ctx) {
    char who[96];
    if (id == DS_F_SEGMENT_WIN_RATE) {
        set_label(out, "Win rate of similar deals");
        cohort_words(ctx->industry, ctx->product_category, "industry", who, sizeof who);
        if (isnan(v))
            SAY("no history");
        else
            SAY("%.0f %% of %s", v * 100, who);
        return;
    }
    set_label(out, "Amount against similar deals");
    cohort_words(ctx->size_band, ctx->product_category, "size", who, sizeof who);
    double ratio = exp(v);
    if (isnan(v))
        SAY("no similar deals closed yet");
    else if (fabs(ratio - 1) < 0.05)
        SAY("about the usual amount of %s", who);
    else if (ratio >= 2)
        SAY("%.1f times the usual amount of %s", ratio, who);
    else
        SAY("%.0f %% %s the usual amount of %s", fabs(ratio - 1) * 100, ratio > 1 ? "above" : "below", who);
}

/* The engagement of the account's or owner's deals closed before: email
 * replies and interactions per working day. */
static void say_engagement(ds_reason_t *out, int id, double v) {
    if (id == DS_F_OWNER_ACTIVITY_RATE) {
        set_label(out, "Owner's activity");
        if (isnan(v))
            SAY("no history");
        else
            SAY("%.1f interactions a working day on earlier deals", v);
        return;
    }
    set_label(out, id == DS_F_ACCOUNT_REPLY_RATE ? "Account's email replies" : "Owner's email replies");
    if (isnan(v))
        SAY("no history");
    else
        SAY("%.0f %% of emails answered on earlier deals", v * 100);
}

static void say_temporal(ds_reason_t *out, int id, double v, const ds_reason_ctx_t *ctx) {
    switch (id) {
    case DS_F_DAYS_OPEN:
        set_label(out, "Open for");
        if (isnan(v) || v < 1)
            SAY("%s", isnan(v) ? "unknown" : "less than a day");
        else
            say_count(out, "", v, "day", "days", "");
        break;
    case DS_F_DAYS_TO_CLOSE: say_close(out, v); break;
    case DS_F_CLOSE_DATE_PUSHES:
        set_label(out, "Close date pushed");
        if (isnan(v) || llround(v) == 0)
            SAY("never");
        else
            say_count(out, "", v, "time", "times", "");
        break;
    case DS_F_DAYS_IN_STAGE:
        set_label(out, "Time in stage");
        if (isnan(v) || v < 1)
            SAY("%s", isnan(v) ? "unknown" : "less than a day");
        else
            say_count(out, "", v, "day", "days", "");
        break;
    case DS_F_STAGE_INDEX: say_stage(out, v, ctx); break;
    case DS_F_STAGE_REGRESSIONS:
        set_label(out, "Stage moved back");
        if (isnan(v) || llround(v) == 0)
            SAY("never");
        else
            say_count(out, "", v, "time", "times", "");
        break;
    case DS_F_AMOUNT_LOG: say_amount(out, v, ctx); break;
    default: set_label(out, "Amount since first entered"); say_ratio(out, v, "unchanged", "");
    }
}

static void say_activity(ds_reason_t *out, int id, double v) {
    switch (id) {
    case DS_F_DAYS_SINCE_LAST_INTERACTION:
        set_label(out, "Last interaction");
        say_ago(out, v, "none yet");
        break;
    case DS_F_DAYS_SINCE_LAST_MEETING:
        set_label(out, "Last meeting");
        say_ago(out, v, "none yet");
        break;
    case DS_F_MEETING_MINUTES_30D:
        set_label(out, "Meeting time, last 30 days");
        if (isnan(v) || llround(v) == 0)
            SAY("none");
        else
            say_count(out, "", v, "minute", "minutes", "");
        break;
    default:
        set_label(out, "Activity, last 14 days");
        say_ratio(out, v, "as in the 14 days before", " on the 14 days before");
    }
}

/* Names that are not engine features: a prior's CRM probability and the
 * bias; anything else shows itself. */
static void say_other(ds_reason_t *out, const char *name, double v, const ds_reason_ctx_t *ctx) {
    if (strcmp(name, "crm_stage_probability") == 0) {
        set_label(out, "CRM stage probability");
        double p = isnan(v) ? ctx->crm_probability : v;
        if (isnan(p))
            SAY("not set");
        else
            SAY("%.0f %%", p * 100);
    } else if (strcmp(name, "_bias") == 0) {
        set_label(out, "Baseline");
        SAY("every deal's starting point");
    } else {
        set_label(out, name);
        if (isnan(v))
            SAY("unknown");
        else
            SAY("%g", v);
    }
}

void ds_reason(const char *name, double value, const ds_reason_ctx_t *ctx, ds_reason_t *out) {
    ds_reason_ctx_t none;
    if (!ctx) {
        ds_reason_ctx_init(&none);
        ctx = &none;
    }
    int id = name ? ds_feature_index(name) : -1;
    if (id >= 0 && ctx->values && !isnan(ctx->values[id])) value = ctx->values[id];
    if (id < 0)
        say_other(out, name ? name : "", value, ctx);
    else if (id <= DS_F_AMOUNT_CHANGE_RATIO)
        say_temporal(out, id, value, ctx);
    else if (id <= DS_F_N_SUPPORT_ALL)
        say_interactions(out, id, value);
    else if (id <= DS_F_VELOCITY_14D)
        say_activity(out, id, value);
    else if (id <= DS_F_OWNER_CLOSED_DEALS)
        say_firmographic(out, id, value, ctx);
    else if (id <= DS_F_MEDDICC_COMPETITION)
        say_meddicc(out, id, value);
    else if (id == DS_F_SEGMENT_WIN_RATE || id == DS_F_AMOUNT_VS_COHORT)
        say_peers(out, id, value, ctx);
    else if (id == DS_F_ACCOUNT_REPLY_RATE || id == DS_F_OWNER_ACTIVITY_RATE || id == DS_F_OWNER_REPLY_RATE)
        say_engagement(out, id, value);
    else if (id == DS_F_EMAIL_REPLY_RATE) {
        set_label(out, "Email replies");
        SAY("%.0f %% of emails answered", isnan(value) ? 50.0 : value * 100);
    } else if (id == DS_F_MEDDICC_COVERAGE) {
        set_label(out, "MEDDICC coverage");
        SAY("%lld of 8 elements", isnan(value) ? 0LL : llround(value));
    } else if (id == DS_F_BUYER_CONTACTS) {
        set_label(out, "Buyer contacts engaged");
        if (isnan(value) || llround(value) == 0)
            SAY("none known");
        else if (llround(value) == 1)
            SAY("only one so far");
        else
            say_count(out, "", value, "person", "people", "");
    } else {
        set_label(out, "Call transcripts");
        if (isnan(value) || llround(value) == 0)
            SAY("none");
        else
            say_count(out, "", value, "transcript", "transcripts", "");
    }
}
