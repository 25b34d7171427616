/* The HubSpot profile on records shaped as n8n's HubSpot node returns them
 * (tests/fixtures/hubspot): each maps onto exact native values. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>

#include "base/common.h"
#include "ingest/record.h"

static json_t *fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/hubspot/%s", DS_SOURCE_DIR, name);
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    cr_assert(doc && json_is_array(doc), "%s: %s", path, err.text);
    return doc;
}

/* Maps item i of fixture name as kind and parses it; asserts no problem. */
static void parse(const char *name, size_t i, rec_kind_t kind, const hs_fields_t *f, record_t *rec) {
    json_t *doc = fixture(name);
    json_t *mapped = record_from_hubspot(kind, json_array_get(doc, i), f);
    rec_problems_t probs = {0};
    int n = record_parse(kind, mapped, (int)i, false, rec, &probs);
    cr_assert_eq(n, 0, "%s[%zu]: %s %s", name, i, n ? probs.items[0].field : "",
                 n ? probs.items[0].problem : "");
    rec_problems_free(&probs);
    json_decref(mapped);
    json_decref(doc);
}

static void expect_time(int64_t us, const char *want) {
    int64_t w;
    cr_assert_eq(ds_parse_time_us(want, &w), 0);
    char got[40];
    ds_format_time_us(us, got, sizeof got);
    cr_expect_eq(us, w, "%s, want %s", got, want);
}

Test(hubspot, a_legacy_deal_maps_every_field) {
    record_t r;
    parse("deals.json", 0, REC_OPPORTUNITY, NULL, &r);
    cr_expect_str_eq(r.external_id, "1237891");
    cr_expect_str_eq(r.stage, "presentationscheduled");
    cr_expect_str_eq(r.account_external_id, "184896670");
    cr_expect_str_eq(r.owner_id, "66");
    cr_expect_str_eq(r.currency, "EUR");
    cr_expect_str_eq(r.product_category, "default", "the pipeline by default");
    cr_expect_null(r.persona);
    cr_expect(r.has_amount && r.amount == 60000.0);
    cr_expect_str_eq(r.close_date, "2026-06-30");
    cr_expect_str_eq(r.outcome, "open");
    cr_expect_eq(r.closed_at_us, 0);
    expect_time(r.created_at_us, "2026-03-01T09:00:00Z");
    expect_time(r.changed_at_us, "2026-04-01T08:00:00Z");
    record_clear(&r);
}

Test(hubspot, a_v3_search_result_that_closed_won_maps_outcome_and_close_time) {
    record_t r;
    parse("deals.json", 1, REC_OPPORTUNITY, NULL, &r);
    cr_expect_str_eq(r.external_id, "1237999");
    cr_expect_str_eq(r.stage, "closedwon");
    cr_expect_str_eq(r.outcome, "won");
    cr_expect_null(r.account_external_id);
    cr_expect(r.has_amount && r.amount == 15000.5);
    cr_expect_str_eq(r.close_date, "2026-05-15");
    expect_time(r.closed_at_us, "2026-05-15T14:30:00Z");
    expect_time(r.created_at_us, "2026-01-10T08:00:00Z");
    expect_time(r.changed_at_us, "2026-05-15T14:30:05.120Z");
    record_clear(&r);
}

Test(hubspot, field_names_come_from_the_settings) {
    hs_fields_t f = {"dealname", "hubspot_owner_id", "industry"};
    record_t r;
    parse("deals.json", 0, REC_OPPORTUNITY, &f, &r);
    cr_expect_str_eq(r.product_category, "Globex platform");
    cr_expect_str_eq(r.persona, "66");
    record_clear(&r);
    parse("companies.json", 0, REC_ACCOUNT, &f, &r);
    cr_expect_str_eq(r.region, "UTILITIES");
    record_clear(&r);
}

Test(hubspot, a_company_maps_to_an_account) {
    record_t r;
    parse("companies.json", 0, REC_ACCOUNT, NULL, &r);
    cr_expect_str_eq(r.external_id, "184896670");
    cr_expect_str_eq(r.name, "Globex");
    cr_expect_str_eq(r.industry, "UTILITIES");
    cr_expect_str_eq(r.region, "Germany");
    cr_expect_str_eq(r.size_band, "large");
    expect_time(r.created_at_us, "2025-11-03T12:00:00Z");
    record_clear(&r);
}

Test(hubspot, calls_meetings_and_emails_map_to_interactions) {
    record_t r;
    parse("engagements.json", 0, REC_INTERACTION, NULL, &r);
    cr_expect_str_eq(r.external_id, "4401");
    cr_expect_str_eq(r.opportunity_external_id, "1237891");
    cr_expect_str_eq(r.type, "phone");
    cr_expect(r.has_duration && r.duration_min == 25.0, "%g", r.duration_min);
    cr_expect_str_eq(r.result, "COMPLETED");
    cr_expect_str_eq(r.meta_json, "{\"hubspot_type\":\"CALL\"}");
    expect_time(r.occurred_at_us, "2026-02-10T15:00:00Z");
    record_clear(&r);
    parse("engagements.json", 1, REC_INTERACTION, NULL, &r);
    cr_expect_str_eq(r.type, "meeting");
    cr_expect(r.has_duration && r.duration_min == 45.0, "%g", r.duration_min);
    cr_expect_str_eq(r.result, "COMPLETED");
    cr_expect_str_eq(r.meta_json, "{\"hubspot_type\":\"MEETING\",\"subject\":\"Platform demo\"}");
    expect_time(r.occurred_at_us, "2026-02-12T10:00:00Z");
    record_clear(&r);
    parse("engagements.json", 2, REC_INTERACTION, NULL, &r);
    cr_expect_str_eq(r.type, "email");
    cr_expect(!r.has_duration);
    cr_expect_str_eq(r.meta_json, "{\"hubspot_type\":\"EMAIL\",\"subject\":\"Proposal\"}");
    expect_time(r.occurred_at_us, "2026-02-11T09:00:00Z");
    record_clear(&r);
}

Test(hubspot, a_note_is_no_interaction_but_a_transcript) {
    json_t *doc = fixture("engagements.json");
    json_t *mapped = record_from_hubspot(REC_INTERACTION, json_array_get(doc, 3), NULL);
    rec_problems_t probs = {0};
    record_t r;
    cr_assert_eq(record_parse(REC_INTERACTION, mapped, 3, false, &r, &probs), 1);
    cr_expect_eq(probs.items[0].index, 3);
    cr_expect_str_eq(probs.items[0].field, "type");
    cr_expect_str_eq(probs.items[0].problem, "must be one of email, phone, meeting, demo, support");
    rec_problems_free(&probs);
    json_decref(mapped);
    json_decref(doc);
    parse("engagements.json", 3, REC_TRANSCRIPT, NULL, &r);
    cr_expect_str_eq(r.external_id, "4404");
    cr_expect_str_eq(r.opportunity_external_id, "1237891");
    cr_expect_str_eq(r.text, "Decision criteria: SOC 2 & SSO.\nPaper process via legal.");
    expect_time(r.occurred_at_us, "2026-02-11T09:00:00Z");
    record_clear(&r);
    /* A meeting's notes when its body is empty. */
    parse("engagements.json", 0, REC_TRANSCRIPT, NULL, &r);
    cr_expect_str_eq(r.text, "Discovery call: the CFO owns the budget.");
    record_clear(&r);
}

/* What the mapping cannot read reaches record_parse as it was, which names
 * the native field. */
Test(hubspot, values_of_the_wrong_kind_are_problems_of_the_native_field) {
    const char *body = "{\"dealId\":9,\"properties\":{\"dealstage\":{\"value\":\"qualifiedtobuy\"},"
                       "\"createdate\":{\"value\":\"yesterday\"},\"amount\":{\"value\":\"lots\"},"
                       "\"closedate\":{\"value\":-5}}}";
    json_t *hs = json_loads(body, 0, NULL);
    json_t *mapped = record_from_hubspot(REC_OPPORTUNITY, hs, NULL);
    rec_problems_t probs = {0};
    record_t r;
    cr_assert_eq(record_parse(REC_OPPORTUNITY, mapped, 0, false, &r, &probs), 3);
    cr_expect_str_eq(probs.items[0].field, "created_at");
    cr_expect_str_eq(probs.items[1].field, "amount");
    cr_expect_str_eq(probs.items[1].problem, "must be a number");
    cr_expect_str_eq(probs.items[2].field, "close_date");
    rec_problems_free(&probs);
    json_decref(mapped);
    json_decref(hs);
    /* Not an object: passed through, and refused as the native one is. */
    json_t *num = json_integer(4);
    mapped = record_from_hubspot(REC_ACCOUNT, num, NULL);
    cr_expect_eq(mapped, num);
    json_decref(mapped);
    json_decref(num);
}
