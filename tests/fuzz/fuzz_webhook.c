/* Webhook JSON to records, as ingest's validator reads a body: the first
 * byte picks the kind (bits 0-1), the profile (bit 2 Salesforce, bit 4
 * HubSpot) and custom field names (bit 3); the rest is the body. */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "ingest/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    rec_kind_t kind = (rec_kind_t)(data[0] & 3);
    bool salesforce = data[0] & 4, hubspot = !salesforce && (data[0] & 16);
    json_t *doc = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (!doc) return 0;
    size_t n = json_is_array(doc) ? json_array_size(doc) : 1;
    if (n > 1000) n = 1000; /* ingest's default limit */
    sf_fields_t sf = {0};
    hs_fields_t hs = {0};
    if (data[0] & 8) {
        sf = (sf_fields_t){"Product__c", "Persona__c", "Region__c"};
        hs = (hs_fields_t){"product", "persona", "region"};
    }
    rec_problems_t probs = {0};
    for (size_t i = 0; i < n; i++) {
        json_t *obj = json_is_array(doc) ? json_array_get(doc, i) : doc;
        json_t *mapped = salesforce ? record_from_salesforce(kind, obj, &sf)
                         : hubspot  ? record_from_hubspot(kind, obj, &hs)
                                    : NULL;
        record_t rec;
        memset(&rec, 0, sizeof rec);
        if (record_parse(kind, mapped ? mapped : obj, (int)i, false, &rec, &probs) == 0) record_clear(&rec);
        json_decref(mapped);
    }
    json_decref(rec_problems_json(&probs));
    rec_problems_free(&probs);
    json_decref(doc);
    return 0;
}
