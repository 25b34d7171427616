/* Record parsing, validation, Salesforce mapping and canonical hashing. */
#include "record.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/common.h"

static const char *plural[] = {"accounts", "opportunities", "interactions", "transcripts"};

const char *rec_kind_plural(rec_kind_t kind) { return plural[kind]; }

int rec_kind_parse(const char *s) {
    for (int i = 0; i < REC_KIND_COUNT; i++)
        if (strcmp(s, plural[i]) == 0) return i;
    return -1;
}

void rec_problems_add(rec_problems_t *p, int index, const char *field, const char *fmt, ...) {
    size_t max = p->max ? p->max : 1000;
    if (p->n >= max) return;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->items = ds_realloc(p->items, p->cap * sizeof *p->items);
    }
    rec_problem_t *it = &p->items[p->n++];
    it->index = index;
    snprintf(it->field, sizeof it->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->problem, sizeof it->problem, fmt, ap);
    va_end(ap);
}

void rec_problems_free(rec_problems_t *p) {
    free(p->items);
    p->items = NULL;
    p->n = p->cap = 0;
}

json_t *rec_problems_json(const rec_problems_t *p) {
    json_t *a = json_array();
    for (size_t i = 0; i < p->n; i++)
        json_array_append_new(a, json_pack("{s:i, s:s, s:s}", "index", p->items[i].index, "field",
                                           p->items[i].field, "problem", p->items[i].problem));
    return a;
}

void record_clear(record_t *r) {
    char **strs[] = {&r->external_id,
                     &r->name,
                     &r->industry,
                     &r->region,
                     &r->size_band,
                     &r->account_external_id,
                     &r->owner_id,
                     &r->product_category,
                     &r->persona,
                     &r->currency,
                     &r->stage,
                     &r->outcome,
                     &r->opportunity_external_id,
                     &r->type,
                     &r->channel,
                     &r->result,
                     &r->meta_json,
                     &r->text};
    for (size_t i = 0; i < DS_ARRAY_SIZE(strs); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    memset(r, 0, sizeof *r);
}

/* ---- field readers ------------------------------------------------------ */

typedef struct {
    const json_t *obj;
    int index;
    bool strings_ok;
    rec_problems_t *problems;
    int nprob;
} reader_t;

static void problem(reader_t *rd, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(reader_t *rd, const char *field, const char *fmt, ...) {
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rec_problems_add(rd->problems, rd->index, field, "%s", msg);
    rd->nprob++;
}

/* A value that counts as absent: missing, null, or (from CSV) "". */
static const json_t *get(reader_t *rd, const char *field) {
    const json_t *v = json_object_get(rd->obj, field);
    if (!v || json_is_null(v)) return NULL;
    if (json_is_string(v) && json_string_length(v) == 0) return NULL;
    return v;
}

static char *trimmed_dup(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    return ds_strndup(s, n);
}

/* Strings: a number given where text is expected is accepted as its text
 * form (CRM ids are sometimes numeric). */
static char *read_str(reader_t *rd, const char *field, bool required, size_t maxlen) {
    const json_t *v = get(rd, field);
    if (!v) {
        if (required) problem(rd, field, "is required");
        return NULL;
    }
    char *s;
    if (json_is_string(v))
        s = trimmed_dup(json_string_value(v));
    else if (json_is_integer(v))
        s = ds_asprintf("%lld", (long long)json_integer_value(v));
    else {
        problem(rd, field, "must be a string");
        return NULL;
    }
    if (!*s) {
        free(s);
        if (required) problem(rd, field, "is required");
        return NULL;
    }
    if (strlen(s) > maxlen) {
        problem(rd, field, "is longer than %zu characters", maxlen);
        free(s);
        return NULL;
    }
    return s;
}

static bool read_num(reader_t *rd, const char *field, bool required, double min, double *out) {
    const json_t *v = get(rd, field);
    if (!v) {
        if (required) problem(rd, field, "is required");
        return false;
    }
    double d;
    if (json_is_number(v)) {
        d = json_number_value(v);
    } else if (json_is_string(v) && rd->strings_ok) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        d = strtod(s, &end);
        while (isspace((unsigned char)*end)) end++;
        if (errno || end == s || *end) {
            problem(rd, field, "must be a number");
            return false;
        }
    } else {
        problem(rd, field, "must be a number");
        return false;
    }
    if (!isfinite(d)) {
        problem(rd, field, "must be a finite number");
        return false;
    }
    if (d < min) {
        problem(rd, field, "must be >= %g", min);
        return false;
    }
    *out = d;
    return true;
}

static bool read_time(reader_t *rd, const char *field, bool required, int64_t *out) {
    const json_t *v = get(rd, field);
    if (!v) {
        if (required) problem(rd, field, "is required");
        return false;
    }
    if (!json_is_string(v)) {
        problem(rd, field, "must be an ISO 8601 timestamp string");
        return false;
    }
    int64_t us;
    if (ds_parse_time_us(json_string_value(v), &us) != 0) {
        problem(rd, field, "must be an ISO 8601 timestamp with a zone (e.g. 2026-01-31T12:00:00Z)");
        return false;
    }
    *out = us;
    return true;
}

static bool read_date(reader_t *rd, const char *field, char out[11]) {
    const json_t *v = get(rd, field);
    out[0] = '\0';
    if (!v) return false;
    if (!json_is_string(v)) {
        problem(rd, field, "must be a date string (YYYY-MM-DD)");
        return false;
    }
    const char *s = json_string_value(v);
    int64_t us;
    if (ds_parse_time_us(s, &us) != 0) {
        problem(rd, field, "must be a date (YYYY-MM-DD) or an ISO 8601 timestamp");
        return false;
    }
    /* A timestamp keeps its calendar date as written. */
    memcpy(out, s, 10);
    out[10] = '\0';
    return true;
}

/* A probability in [0, 1] (the CRM's own stage probability). */
static bool read_probability(reader_t *rd, const char *field, double *out) {
    double p;
    if (!read_num(rd, field, false, 0, &p)) return false;
    if (p > 1) {
        problem(rd, field, "must be between 0 and 1 (a share, not a percentage)");
        return false;
    }
    *out = p;
    return true;
}

static char *read_enum(reader_t *rd, const char *field, bool required, const char *const *allowed,
                       size_t nallowed) {
    char *s = read_str(rd, field, required, 64);
    if (!s) return NULL;
    for (char *c = s; *c; c++) *c = (char)tolower((unsigned char)*c);
    for (size_t i = 0; i < nallowed; i++)
        if (strcmp(s, allowed[i]) == 0) return s;
    char list[160] = "";
    for (size_t i = 0; i < nallowed; i++) {
        strncat(list, allowed[i], sizeof list - strlen(list) - 1);
        if (i + 1 < nallowed) strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    problem(rd, field, "must be one of %s", list);
    free(s);
    return NULL;
}

static char *read_meta(reader_t *rd) {
    const json_t *v = get(rd, "meta");
    json_t *parsed = NULL;
    if (!v && rd->strings_ok) {
        const json_t *t = get(rd, "meta_json");
        if (t) {
            if (!json_is_string(t)) {
                problem(rd, "meta_json", "must be JSON object text");
                return NULL;
            }
            json_error_t jerr;
            parsed = json_loads(json_string_value(t), 0, &jerr);
            if (!parsed || !json_is_object(parsed)) {
                problem(rd, "meta_json", "must be a JSON object");
                json_decref(parsed);
                return NULL;
            }
            v = parsed;
        }
    }
    if (!v) return NULL;
    if (!json_is_object(v)) {
        problem(rd, "meta", "must be a JSON object");
        return NULL;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(parsed);
    return s;
}

static const char *const outcomes[] = {"open", "won", "lost"};
static const char *const types[] = {"email", "phone", "meeting", "demo", "support"};

int record_parse(rec_kind_t kind, const json_t *obj, int index, bool strings_ok, record_t *rec,
                 rec_problems_t *problems) {
    memset(rec, 0, sizeof *rec);
    rec->kind = kind;
    reader_t rd = {obj, index, strings_ok, problems, 0};
    if (!json_is_object(obj)) {
        problem(&rd, "", "record must be a JSON object");
        return rd.nprob;
    }
    rec->external_id = read_str(&rd, "external_id", true, 255);
    switch (kind) {
    case REC_ACCOUNT:
        rec->name = read_str(&rd, "name", true, 1000);
        rec->industry = read_str(&rd, "industry", false, 255);
        rec->region = read_str(&rd, "region", false, 255);
        rec->size_band = read_str(&rd, "size_band", false, 255);
        read_time(&rd, "created_at", false, &rec->created_at_us);
        break;
    case REC_OPPORTUNITY:
        rec->stage = read_str(&rd, "stage", true, 255);
        read_time(&rd, "created_at", true, &rec->created_at_us);
        rec->account_external_id = read_str(&rd, "account_external_id", false, 255);
        rec->owner_id = read_str(&rd, "owner_id", false, 255);
        rec->product_category = read_str(&rd, "product_category", false, 255);
        rec->persona = read_str(&rd, "persona", false, 255);
        rec->has_amount = read_num(&rd, "amount", false, 0, &rec->amount);
        rec->currency = read_str(&rd, "currency", false, 16);
        rec->has_stage_probability = read_probability(&rd, "stage_probability", &rec->stage_probability);
        read_date(&rd, "close_date", rec->close_date);
        read_time(&rd, "closed_at", false, &rec->closed_at_us);
        rec->outcome = read_enum(&rd, "outcome", false, outcomes, 3);
        read_time(&rd, "changed_at", false, &rec->changed_at_us);
        break;
    case REC_INTERACTION:
        rec->opportunity_external_id = read_str(&rd, "opportunity_external_id", true, 255);
        rec->type = read_enum(&rd, "type", true, types, 5);
        read_time(&rd, "occurred_at", true, &rec->occurred_at_us);
        rec->channel = read_str(&rd, "channel", false, 255);
        rec->has_duration = read_num(&rd, "duration_min", false, 0, &rec->duration_min);
        rec->result = read_str(&rd, "outcome", false, 255);
        rec->meta_json = read_meta(&rd);
        break;
    case REC_TRANSCRIPT:
        rec->opportunity_external_id = read_str(&rd, "opportunity_external_id", true, 255);
        read_time(&rd, "occurred_at", true, &rec->occurred_at_us);
        rec->text = read_str(&rd, "text", true, 1 << 20);
        break;
    default: ds_panic("bad record kind %d", kind);
    }
    if (rd.nprob) {
        record_clear(rec);
        return rd.nprob;
    }
    char *canon = record_canonical(rec);
    ds_sha256_hex(canon, strlen(canon), rec->source_hash);
    free(canon);
    return 0;
}

/* ---- canonical form ----------------------------------------------------- */

static void set_str(json_t *o, const char *k, const char *v) {
    if (v) json_object_set_new(o, k, json_string(v));
}

static void set_time(json_t *o, const char *k, int64_t us) {
    if (!us) return;
    char buf[40];
    ds_format_time_us(us, buf, sizeof buf);
    json_object_set_new(o, k, json_string(buf));
}

static void set_num(json_t *o, const char *k, bool has, double v) {
    if (!has) return;
    /* %.17g keeps every double distinct and the same double the same text. */
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    json_object_set_new(o, k, json_string(buf));
}

char *record_canonical(const record_t *r) {
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(plural[r->kind]));
    set_str(o, "external_id", r->external_id);
    set_str(o, "name", r->name);
    set_str(o, "industry", r->industry);
    set_str(o, "region", r->region);
    set_str(o, "size_band", r->size_band);
    set_str(o, "account_external_id", r->account_external_id);
    set_str(o, "owner_id", r->owner_id);
    set_str(o, "product_category", r->product_category);
    set_str(o, "persona", r->persona);
    set_str(o, "currency", r->currency);
    set_str(o, "stage", r->stage);
    set_str(o, "outcome", r->outcome);
    set_num(o, "amount", r->has_amount, r->amount);
    set_num(o, "stage_probability", r->has_stage_probability, r->stage_probability);
    if (r->close_date[0]) set_str(o, "close_date", r->close_date);
    set_time(o, "closed_at", r->closed_at_us);
    set_time(o, "created_at", r->created_at_us);
    set_str(o, "opportunity_external_id", r->opportunity_external_id);
    set_str(o, "type", r->type);
    set_str(o, "channel", r->channel);
    set_str(o, "result", r->result);
    set_time(o, "occurred_at", r->occurred_at_us);
    set_num(o, "duration_min", r->has_duration, r->duration_min);
    set_str(o, "meta", r->meta_json);
    set_str(o, "text", r->text);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

/* ---- outcomes ----------------------------------------------------------- */

const char *record_stage_outcome(const char *stage, const json_t *map) {
    if (!stage) return "open";
    if (map && json_is_object(map)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)map, k, v) {
            if (strcasecmp(k, stage) == 0 && json_is_string(v)) {
                const char *o = json_string_value(v);
                if (!strcmp(o, "won") || !strcmp(o, "lost") || !strcmp(o, "open")) return o;
            }
        }
    }
    char norm[64];
    size_t n = 0;
    for (const char *c = stage; *c && n + 1 < sizeof norm; c++)
        norm[n++] = (*c == ' ' || *c == '-') ? '_' : (char)tolower((unsigned char)*c);
    norm[n] = '\0';
    if (!strcmp(norm, "closed_won") || !strcmp(norm, "won")) return "won";
    if (!strcmp(norm, "closed_lost") || !strcmp(norm, "lost")) return "lost";
    return "open";
}

/* ---- Salesforce profile ------------------------------------------------- */

static void copy(json_t *out, const char *to, const json_t *sf, const char *from) {
    json_t *v = json_object_get(sf, from);
    if (v && !json_is_null(v)) json_object_set(out, to, v);
}

static const char *size_band_for(double employees) {
    if (employees < 50) return "small";
    if (employees < 500) return "mid";
    if (employees < 5000) return "large";
    return "enterprise";
}

json_t *record_from_salesforce(rec_kind_t kind, const json_t *sf, const sf_fields_t *f) {
    json_t *out = json_object();
    if (!json_is_object(sf)) {
        json_decref(out);
        return json_incref((json_t *)sf);
    }
    copy(out, "external_id", sf, "Id");
    switch (kind) {
    case REC_ACCOUNT: {
        copy(out, "name", sf, "Name");
        copy(out, "industry", sf, "Industry");
        copy(out, "region", sf, f && f->region_field ? f->region_field : "BillingCountry");
        copy(out, "created_at", sf, "CreatedDate");
        json_t *emp = json_object_get(sf, "NumberOfEmployees");
        if (json_is_number(emp))
            json_object_set_new(out, "size_band", json_string(size_band_for(json_number_value(emp))));
        break;
    }
    case REC_OPPORTUNITY: {
        copy(out, "account_external_id", sf, "AccountId");
        copy(out, "owner_id", sf, "OwnerId");
        copy(out, "stage", sf, "StageName");
        copy(out, "amount", sf, "Amount");
        /* Salesforce's Probability is a percentage. */
        json_t *prob = json_object_get(sf, "Probability");
        if (json_is_number(prob))
            json_object_set_new(out, "stage_probability", json_real(json_number_value(prob) / 100.0));
        else if (prob && !json_is_null(prob))
            json_object_set(out, "stage_probability", prob);
        copy(out, "close_date", sf, "CloseDate");
        copy(out, "created_at", sf, "CreatedDate");
        copy(out, "currency", sf, "CurrencyIsoCode");
        copy(out, "changed_at", sf, "LastModifiedDate");
        copy(out, "product_category", sf, f && f->product_field ? f->product_field : "Product_Category__c");
        copy(out, "persona", sf, f && f->persona_field ? f->persona_field : "Persona__c");
        json_t *closed = json_object_get(sf, "IsClosed"), *won = json_object_get(sf, "IsWon");
        if (json_is_boolean(closed)) {
            const char *o = !json_is_true(closed) ? "open" : json_is_true(won) ? "won" : "lost";
            json_object_set_new(out, "outcome", json_string(o));
            if (json_is_true(closed)) {
                /* Salesforce has no close timestamp; the close date stands for it. */
                json_t *cd = json_object_get(sf, "CloseDate");
                if (json_is_string(cd) && strlen(json_string_value(cd)) == 10) {
                    char buf[32];
                    snprintf(buf, sizeof buf, "%sT00:00:00Z", json_string_value(cd));
                    json_object_set_new(out, "closed_at", json_string(buf));
                }
            }
        }
        break;
    }
    case REC_INTERACTION: {
        copy(out, "opportunity_external_id", sf, "WhatId");
        const char *type = "email";
        json_t *sub = json_object_get(sf, "TaskSubtype");
        json_t *t = json_object_get(sf, "Type");
        json_t *attrs = json_object_get(sf, "attributes");
        json_t *atype = attrs ? json_object_get(attrs, "type") : NULL;
        const char *s = json_is_string(sub) ? json_string_value(sub)
                        : json_is_string(t) ? json_string_value(t)
                                            : "";
        if (json_is_string(atype) && strcmp(json_string_value(atype), "Event") == 0) type = "meeting";
        if (!strcasecmp(s, "Call"))
            type = "phone";
        else if (!strcasecmp(s, "Email"))
            type = "email";
        else if (!strcasecmp(s, "Meeting"))
            type = "meeting";
        else if (!strcasecmp(s, "Demo"))
            type = "demo";
        else if (!strcasecmp(s, "Support"))
            type = "support";
        json_object_set_new(out, "type", json_string(type));
        json_t *when = json_object_get(sf, "StartDateTime");
        if (!when || json_is_null(when)) when = json_object_get(sf, "ActivityDateTime");
        if (!when || json_is_null(when)) when = json_object_get(sf, "CreatedDate");
        if (when && !json_is_null(when)) json_object_set(out, "occurred_at", when);
        copy(out, "duration_min", sf, "DurationInMinutes");
        json_t *secs = json_object_get(sf, "CallDurationInSeconds");
        if (json_is_number(secs) && !json_object_get(out, "duration_min"))
            json_object_set_new(out, "duration_min", json_real(json_number_value(secs) / 60.0));
        copy(out, "outcome", sf, "Status");
        json_t *meta = json_object();
        copy(meta, "subject", sf, "Subject");
        if (json_object_size(meta)) json_object_set(out, "meta", meta);
        json_decref(meta);
        break;
    }
    case REC_TRANSCRIPT:
        copy(out, "opportunity_external_id", sf, "WhatId");
        copy(out, "occurred_at", sf, "CreatedDate");
        copy(out, "text", sf, "Body");
        break;
    default: break;
    }
    return out;
}
