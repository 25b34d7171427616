/* The score.changed CloudEvent, which predictions make one, the backoff
 * between tries and the outcome classes of the metrics. No I/O here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "domain/features.h"
#include "domain/model.h"
#include "notify.h"

/* v in the fewest significant digits (15 to 17) that read back as v;
 * null for NaN and infinities. */
static void put_number(ds_sb_t *b, double v) {
    if (!isfinite(v)) {
        ds_sb_puts(b, "null");
        return;
    }
    char num[32];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = ds_fmt_g(num, v, prec);
        if (strtod(num, NULL) == v) break;
    }
    ds_sb_put(b, num, (size_t)n);
}

static void put_time(ds_sb_t *b, int64_t us) {
    char t[40];
    ds_format_time_us(us, t, sizeof t);
    ds_sb_json_str(b, t);
}

/* ,"key": */
static void put_key(ds_sb_t *b, const char *key) {
    ds_sb_putc(b, ',');
    ds_sb_json_str(b, key);
    ds_sb_putc(b, ':');
}

/* The drivers with a contribution of the given sign, in the event's order
 * (scoring sends each side largest first). */
static void put_drivers(ds_sb_t *b, const Dealscore__V1__PredictionMade *pm, bool positive) {
    ds_sb_putc(b, '[');
    bool first = true;
    for (size_t i = 0; i < pm->n_top_drivers; i++) {
        const Dealscore__V1__Driver *d = pm->top_drivers[i];
        if ((d->contribution > 0) != positive) continue;
        const char *label = ds_feature_label(ds_feature_index(d->name));
        ds_sb_puts(b, first ? "{\"feature\":" : ",{\"feature\":");
        first = false;
        ds_sb_json_str(b, d->name);
        put_key(b, "label");
        ds_sb_json_str(b, label ? label : d->name);
        put_key(b, "value");
        put_number(b, d->value);
        put_key(b, "contribution");
        put_number(b, d->contribution);
        ds_sb_putc(b, '}');
    }
    ds_sb_putc(b, ']');
}

/* The score's change since the previous one (TreeSHAP contributions that
 * moved most), in the shape of predictions.change; null when the event
 * carries none. */
static void put_change(ds_sb_t *b, const Dealscore__V1__PredictionMade *pm) {
    const Dealscore__V1__PredictionChange *c = pm->change;
    if (!c) {
        ds_sb_puts(b, "null");
        return;
    }
    ds_contrib_change_t *moved = ds_calloc(c->n_drivers ? c->n_drivers : 1, sizeof *moved);
    for (size_t i = 0; i < c->n_drivers; i++) {
        const Dealscore__V1__DriverChange *d = c->drivers[i];
        moved[i] = (ds_contrib_change_t){
            .name = d->feature,
            .label = d->label && *d->label ? d->label : d->feature,
            .display = d->display && *d->display ? d->display : NULL,
            .value = d->value,
            .previous = d->previous,
            .current = d->current,
            .change = d->change,
        };
    }
    ds_score_change_write(b, c->has_previous ? c->previous_proba : NAN, pm->proba_close, moved, c->n_drivers);
    free(moved);
}

static void put_data(ds_sb_t *b, const Dealscore__V1__PredictionMade *pm, const notify_event_ctx_t *ctx) {
    ds_sb_puts(b, "{\"org_id\":");
    ds_sb_json_str(b, pm->org_id);
    put_key(b, "opportunity_id");
    ds_sb_json_str(b, pm->opportunity_id);
    put_key(b, "external_id");
    if (ctx->external_id)
        ds_sb_json_str(b, ctx->external_id);
    else
        ds_sb_puts(b, "null");
    put_key(b, "probability");
    put_number(b, pm->proba_close);
    put_key(b, "previous_probability");
    put_number(b, pm->has_previous ? pm->previous_proba : NAN);
    put_key(b, "model_version");
    ds_sb_json_str(b, pm->model_version);
    put_key(b, "as_of");
    put_time(b, pm->as_of_us);
    put_key(b, "scored_at");
    put_time(b, ctx->scored_at_us);
    put_key(b, "prediction_event_id");
    ds_sb_json_str(b, pm->event_id);
    ds_sb_puts(b, ",\"drivers\":{\"positive\":");
    put_drivers(b, pm, true);
    ds_sb_puts(b, ",\"negative\":");
    put_drivers(b, pm, false);
    ds_sb_puts(b, "},\"change\":");
    put_change(b, pm);
    ds_sb_putc(b, '}');
}

void notify_event_write(ds_sb_t *b, const Dealscore__V1__PredictionMade *pm, const notify_event_ctx_t *ctx) {
    ds_sb_puts(b, "{\"specversion\":\"1.0\",\"type\":\"" NOTIFY_CE_SCORE_CHANGED "\"");
    put_key(b, "source");
    ds_sb_json_str(b, ctx->source);
    put_key(b, "id");
    ds_sb_json_str(b, ctx->id);
    put_key(b, "time");
    put_time(b, ctx->scored_at_us);
    put_key(b, "subject");
    ds_sb_json_str(b, pm->opportunity_id);
    ds_sb_puts(b, ",\"datacontenttype\":\"application/json\",\"data\":");
    put_data(b, pm, ctx);
    ds_sb_putc(b, '}');
}

bool notify_change_matters(const Dealscore__V1__PredictionMade *pm, double min_change) {
    if (!pm->has_previous || !isfinite(pm->previous_proba)) return true;
    /* A change of exactly min_change counts, whatever the rounding of the
     * subtraction: 0.45 - 0.40 is 0.04999999999999999. */
    return fabs(pm->proba_close - pm->previous_proba) >= min_change - 1e-12;
}

int64_t notify_backoff_ms(int attempts, int base_ms, int max_ms, uint64_t *seed) {
    int64_t wait = base_ms;
    for (int i = 1; i < attempts && wait < max_ms; i++) wait *= 2;
    if (wait > max_ms) wait = max_ms;
    /* xorshift64: jitter needs no more than that. */
    uint64_t x = *seed ? *seed : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    int64_t half = wait / 2;
    return wait - half + (half > 0 ? (int64_t)(x % (uint64_t)(half + 1)) : 0);
}

const char *notify_outcome_class(int rc, int status) {
    if (rc == DS_ETIMEDOUT) return "timeout";
    if (rc != 0 || status < 100 || status > 599) return "error";
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    return classes[status / 100 - 1];
}
