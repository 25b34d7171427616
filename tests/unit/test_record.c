/* The CRM's own stage probability on an opportunity record: the canonical
 * field stage_probability (a share in [0, 1], also a CSV column),
 * Salesforce's Probability (a percentage), and the problems bad values
 * give. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>

#include "ingest/record.h"

static int parse(const char *json, bool strings_ok, record_t *rec, rec_problems_t *probs) {
    json_t *o = json_loads(json, 0, NULL);
    cr_assert(o, "%s", json);
    int n = record_parse(REC_OPPORTUNITY, o, 0, strings_ok, rec, probs);
    json_decref(o);
    return n;
}

#define OPP "\"external_id\":\"006A\",\"stage\":\"Proposal\",\"created_at\":\"2026-03-01T09:00:00Z\""

Test(record, stage_probability_is_kept_and_counts_in_the_source_hash) {
    record_t a, b;
    rec_problems_t probs = {0};
    cr_assert_eq(parse("{" OPP ",\"stage_probability\":0.4}", false, &a, &probs), 0);
    cr_expect(a.has_stage_probability && a.stage_probability == 0.4);
    char *canon = record_canonical(&a);
    cr_expect(strstr(canon, "\"stage_probability\":\"0.40000000000000002\""), "%s", canon);
    free(canon);
    cr_assert_eq(parse("{" OPP "}", false, &b, &probs), 0);
    cr_expect(!b.has_stage_probability);
    cr_expect_str_neq(a.source_hash, b.source_hash, "a new probability is a change");
    record_clear(&a);
    record_clear(&b);
    /* CSV gives it as text. */
    cr_assert_eq(parse("{" OPP ",\"stage_probability\":\"0.25\"}", true, &a, &probs), 0);
    cr_expect(a.stage_probability == 0.25);
    record_clear(&a);
}

Test(record, stage_probability_outside_zero_to_one_is_a_problem) {
    record_t r;
    rec_problems_t probs = {0};
    cr_expect_eq(parse("{" OPP ",\"stage_probability\":40}", false, &r, &probs), 1);
    cr_expect_eq(parse("{" OPP ",\"stage_probability\":-0.1}", false, &r, &probs), 1);
    cr_expect_eq(parse("{" OPP ",\"stage_probability\":\"high\"}", true, &r, &probs), 1);
    cr_assert_eq(probs.n, 3);
    cr_expect_str_eq(probs.items[0].field, "stage_probability");
    cr_expect_str_eq(probs.items[0].problem, "must be between 0 and 1 (a share, not a percentage)");
    cr_expect_str_eq(probs.items[1].problem, "must be >= 0");
    cr_expect_str_eq(probs.items[2].problem, "must be a number");
    rec_problems_free(&probs);
}

Test(record, salesforce_probability_is_a_percentage) {
    json_t *sf = json_loads("{\"Id\":\"006A\",\"StageName\":\"Proposal/Price Quote\",\"Probability\":75,"
                            "\"CreatedDate\":\"2026-03-01T09:00:00.000+0000\"}",
                            0, NULL);
    json_t *native = record_from_salesforce(REC_OPPORTUNITY, sf, NULL);
    cr_expect(json_real_value(json_object_get(native, "stage_probability")) == 0.75);
    record_t r;
    rec_problems_t probs = {0};
    cr_assert_eq(record_parse(REC_OPPORTUNITY, native, 0, false, &r, &probs), 0, "%s",
                 probs.n ? probs.items[0].problem : "");
    cr_expect(r.has_stage_probability && r.stage_probability == 0.75);
    record_clear(&r);
    json_decref(native);
    json_decref(sf);
}
