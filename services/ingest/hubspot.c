/* The HubSpot profile: records as n8n's HubSpot node returns them, mapped
 * onto the native field names. Its Deal and Company operations return
 * HubSpot's legacy objects ({"dealId": 1, "properties": {"dealstage":
 * {"value": "...", "timestamp": ..., "versions": [...]}}, "associations":
 * {"associatedCompanyIds": [2]}}, dates as Unix milliseconds in strings)
 * and its Search operations CRM v3 objects ({"id": "1", "properties":
 * {"dealstage": "..."}, "createdAt": "<ISO 8601>"}); both are read. Its
 * Engagement operations return legacy engagements ({"engagement": {"id",
 * "type", "timestamp"}, "associations": {"dealIds": [...]}, "metadata":
 * {...}}). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/common.h"
#include "record.h"

/* A property's value: properties.<name> (legacy objects wrap it as
 * {"value": ...}), else a top-level <name>. NULL when absent, null or "". */
static json_t *prop(const json_t *hs, const char *name) {
    json_t *v = json_object_get(json_object_get(hs, "properties"), name);
    if (json_is_object(v)) v = json_object_get(v, "value");
    if (!v || json_is_null(v)) v = json_object_get(hs, name);
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) return NULL;
    return v;
}

/* Unix milliseconds as a JSON integer or a string of digits, at most 15
 * of them (the year 33658: no overflow in microseconds). */
static bool epoch_ms(const json_t *v, int64_t *ms) {
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > 999999999999999LL) return false;
        *ms = (int64_t)i;
        return true;
    }
    if (!json_is_string(v)) return false;
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    if (n == 0 || n > 15) return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    *ms = strtoll(s, NULL, 10);
    return true;
}

/* A timestamp: Unix milliseconds become ISO 8601; anything else is copied
 * for record_parse to judge. */
static void set_time(json_t *out, const char *to, const json_t *v) {
    if (!v) return;
    int64_t ms;
    if (!epoch_ms(v, &ms)) {
        json_object_set(out, to, (json_t *)v);
        return;
    }
    char buf[40];
    ds_format_time_us(ms * 1000, buf, sizeof buf);
    json_object_set_new(out, to, json_string(buf));
}

/* A number: HubSpot sends numbers as strings; text that is no number is
 * copied for record_parse to reject. */
static void set_number(json_t *out, const char *to, const json_t *v) {
    if (!v) return;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (!errno && end != s && !*end) {
            json_object_set_new(out, to, json_real(d));
            return;
        }
    }
    json_object_set(out, to, (json_t *)v);
}

static void set_prop(json_t *out, const char *to, const json_t *hs, const char *name) {
    json_t *v = name ? prop(hs, name) : NULL;
    if (v) json_object_set(out, to, v);
}

static bool is_true(const json_t *v) {
    return json_is_true(v) || (json_is_string(v) && strcasecmp(json_string_value(v), "true") == 0);
}

/* The first element of an array, or of v3's {"results": [{"id": ...}]}. */
static json_t *first_id(const json_t *list) {
    if (json_is_array(list)) return json_array_get(list, 0);
    json_t *r = json_array_get(json_object_get(list, "results"), 0);
    return json_object_get(r, "id");
}

static json_t *object_id(const json_t *hs, const char *legacy_id) {
    json_t *id = json_object_get(hs, legacy_id);
    if (!id || json_is_null(id)) id = json_object_get(hs, "id");
    if (!id || json_is_null(id)) id = prop(hs, "hs_object_id");
    return id;
}

static const char *size_band_for(double employees) {
    if (employees < 50) return "small";
    if (employees < 500) return "mid";
    if (employees < 5000) return "large";
    return "enterprise";
}

static void map_company(json_t *out, const json_t *hs, const hs_fields_t *f) {
    set_prop(out, "name", hs, "name");
    set_prop(out, "industry", hs, "industry");
    set_prop(out, "region", hs, f && f->region_field ? f->region_field : "country");
    json_t *created = prop(hs, "createdate");
    set_time(out, "created_at", created ? created : json_object_get(hs, "createdAt"));
    json_t *tmp = json_object();
    set_number(tmp, "n", prop(hs, "numberofemployees"));
    json_t *n = json_object_get(tmp, "n");
    if (json_is_number(n))
        json_object_set_new(out, "size_band", json_string(size_band_for(json_number_value(n))));
    json_decref(tmp);
}

/* Closed deals: hs_is_closed and hs_is_closed_won when the object carries
 * them, else the default pipeline's stage ids closedwon and closedlost
 * (other pipelines' closed stages go through the org's stage mapping). */
static const char *deal_outcome(const json_t *hs) {
    json_t *closed = prop(hs, "hs_is_closed");
    if (closed) return !is_true(closed) ? "open" : is_true(prop(hs, "hs_is_closed_won")) ? "won" : "lost";
    json_t *stage = prop(hs, "dealstage");
    if (json_is_string(stage) && strcasecmp(json_string_value(stage), "closedwon") == 0) return "won";
    if (json_is_string(stage) && strcasecmp(json_string_value(stage), "closedlost") == 0) return "lost";
    return NULL;
}

/* dealname is not read: the native opportunity has no name. */
static void map_deal(json_t *out, const json_t *hs, const hs_fields_t *f) {
    set_prop(out, "stage", hs, "dealstage");
    /* HubSpot's own probability of the stage, a share like the native field. */
    set_number(out, "stage_probability", prop(hs, "hs_deal_stage_probability"));
    set_prop(out, "owner_id", hs, "hubspot_owner_id");
    set_prop(out, "currency", hs, "deal_currency_code");
    set_prop(out, "product_category", hs, f && f->product_field ? f->product_field : "pipeline");
    set_prop(out, "persona", hs, f ? f->persona_field : NULL);
    set_number(out, "amount", prop(hs, "amount"));
    json_t *created = prop(hs, "createdate"), *modified = prop(hs, "hs_lastmodifieddate");
    set_time(out, "created_at", created ? created : json_object_get(hs, "createdAt"));
    set_time(out, "changed_at", modified ? modified : json_object_get(hs, "updatedAt"));
    json_t *assoc = json_object_get(hs, "associations");
    json_t *company = first_id(json_object_get(assoc, "associatedCompanyIds"));
    if (!company) company = first_id(json_object_get(assoc, "companies"));
    if (company && !json_is_null(company)) json_object_set(out, "account_external_id", company);
    /* closedate is a timestamp (midnight UTC of the chosen day, or the
     * moment the deal closed); its day is the close date. */
    json_t *tmp = json_object();
    set_time(tmp, "t", prop(hs, "closedate"));
    json_t *t = json_object_get(tmp, "t");
    if (json_is_string(t) && json_string_length(t) >= 10)
        json_object_set_new(out, "close_date", json_stringn(json_string_value(t), 10));
    else if (t)
        json_object_set(out, "close_date", t);
    const char *outcome = deal_outcome(hs);
    if (outcome) json_object_set_new(out, "outcome", json_string(outcome));
    if (outcome && strcmp(outcome, "open") != 0 && json_is_string(t)) json_object_set(out, "closed_at", t);
    json_decref(tmp);
}

/* CALL → phone, MEETING → meeting, EMAIL, INCOMING_EMAIL, FORWARDED_EMAIL
 * → email; other types (NOTE, TASK) keep their name in lowercase, which
 * record_parse refuses as a type. */
static json_t *engagement_type(const char *t) {
    if (!strcasecmp(t, "CALL")) return json_string("phone");
    if (!strcasecmp(t, "MEETING")) return json_string("meeting");
    if (!strcasecmp(t, "EMAIL") || !strcasecmp(t, "INCOMING_EMAIL") || !strcasecmp(t, "FORWARDED_EMAIL"))
        return json_string("email");
    char *low = ds_strdup(t);
    for (char *c = low; *c; c++) *c = (char)tolower((unsigned char)*c);
    json_t *v = json_string(low);
    free(low);
    return v;
}

static void map_engagement_common(json_t *out, const json_t *hs) {
    const json_t *e = json_object_get(hs, "engagement");
    const json_t *md = json_object_get(hs, "metadata");
    json_t *id = json_object_get(e, "id");
    if (id) json_object_set(out, "external_id", id);
    json_t *deal = first_id(json_object_get(json_object_get(hs, "associations"), "dealIds"));
    if (deal && !json_is_null(deal)) json_object_set(out, "opportunity_external_id", deal);
    json_t *when = json_object_get(md, "startTime");
    if (!when || json_is_null(when)) when = json_object_get(e, "timestamp");
    if (!when || json_is_null(when)) when = json_object_get(e, "createdAt");
    if (when && !json_is_null(when)) set_time(out, "occurred_at", when);
}

static void map_engagement(json_t *out, const json_t *hs) {
    const json_t *e = json_object_get(hs, "engagement");
    const json_t *md = json_object_get(hs, "metadata");
    map_engagement_common(out, hs);
    json_t *type = json_object_get(e, "type");
    if (json_is_string(type)) json_object_set_new(out, "type", engagement_type(json_string_value(type)));
    json_t *dur = json_object_get(md, "durationMilliseconds");
    int64_t start, end;
    if (json_is_number(dur))
        json_object_set_new(out, "duration_min", json_real(json_number_value(dur) / 60000.0));
    else if (epoch_ms(json_object_get(md, "startTime"), &start) &&
             epoch_ms(json_object_get(md, "endTime"), &end) && end >= start)
        json_object_set_new(out, "duration_min", json_real((double)(end - start) / 60000.0));
    json_t *status = json_object_get(md, "status");
    if (!json_is_string(status)) status = json_object_get(md, "meetingOutcome");
    if (json_is_string(status)) json_object_set(out, "outcome", status);
    json_t *meta = json_object();
    json_t *subject = json_object_get(md, "subject");
    if (!json_is_string(subject)) subject = json_object_get(md, "title");
    if (json_is_string(subject)) json_object_set(meta, "subject", subject);
    if (json_is_string(type)) json_object_set(meta, "hubspot_type", type);
    if (json_object_size(meta)) json_object_set(out, "meta", meta);
    json_decref(meta);
}

/* Text of an engagement's HTML body: tags dropped (a line break for
 * <br>, </p>, </div>, </li>), the common entities decoded. */
static char *html_text(const char *s) {
    static const struct {
        const char *ent, *ch;
    } ents[] = {{"&amp;", "&"},   {"&lt;", "<"},  {"&gt;", ">"},
                {"&quot;", "\""}, {"&#39;", "'"}, {"&nbsp;", " "}};
    size_t n = strlen(s), o = 0;
    char *out = ds_malloc(n + 1);
    for (size_t i = 0; i < n;) {
        if (s[i] == '<') {
            const char *close = strchr(s + i, '>');
            if (!close) break;
            if (!strncasecmp(s + i, "<br", 3) || !strncasecmp(s + i, "</p", 3) ||
                !strncasecmp(s + i, "</div", 5) || !strncasecmp(s + i, "</li", 4))
                out[o++] = '\n';
            i = (size_t)(close - s) + 1;
            continue;
        }
        bool ent = false;
        for (size_t k = 0; k < DS_ARRAY_SIZE(ents) && s[i] == '&'; k++)
            if (!strncmp(s + i, ents[k].ent, strlen(ents[k].ent))) {
                out[o++] = ents[k].ch[0];
                i += strlen(ents[k].ent);
                ent = true;
                break;
            }
        if (!ent) out[o++] = s[i++];
    }
    out[o] = '\0';
    return out;
}

static void map_transcript(json_t *out, const json_t *hs) {
    const json_t *md = json_object_get(hs, "metadata");
    map_engagement_common(out, hs);
    json_t *body = json_object_get(md, "body");
    if (!json_is_string(body) || !json_string_length(body))
        body = json_object_get(md, "internalMeetingNotes");
    if (!json_is_string(body) || !json_string_length(body)) body = json_object_get(md, "text");
    if (!json_is_string(body)) return;
    char *text = html_text(json_string_value(body));
    json_object_set_new(out, "text", json_string(text));
    free(text);
}

json_t *record_from_hubspot(rec_kind_t kind, const json_t *hs, const hs_fields_t *f) {
    if (!json_is_object(hs)) return json_incref((json_t *)hs);
    json_t *out = json_object();
    switch (kind) {
    case REC_ACCOUNT: {
        json_t *id = object_id(hs, "companyId");
        if (id) json_object_set(out, "external_id", id);
        map_company(out, hs, f);
        break;
    }
    case REC_OPPORTUNITY: {
        json_t *id = object_id(hs, "dealId");
        if (id) json_object_set(out, "external_id", id);
        map_deal(out, hs, f);
        break;
    }
    case REC_INTERACTION: map_engagement(out, hs); break;
    case REC_TRANSCRIPT: map_transcript(out, hs); break;
    default: break;
    }
    return out;
}
