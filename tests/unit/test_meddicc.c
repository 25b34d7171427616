/* MEDDICC detection: lexicon compilation, matching rules, negation, evidence
 * spans and the JSON form. */
#include <criterion/criterion.h>
#include <glob.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "domain/meddicc.h"

/* A small lexicon with the phrases the examples use. */
static const ds_meddicc_phrase_t test_rows[] = {
    {"economic_buyer", "budget", false},
    {"economic_buyer", "budget holder", false},
    {"economic_buyer", "signed off", false},
    {"economic_buyer", "economic buyer", false},
    {"economic_buyer", "cfo", false},
    {"champion", "champion", false},
    {"metrics", "roi", false},
    {"decision_process", "sign off", false},
};

static ds_meddicc_lexicon_t *test_lexicon(void) {
    ds_meddicc_lexicon_t *lex = NULL;
    char err[128];
    cr_assert_eq(ds_meddicc_lexicon_new(test_rows, DS_ARRAY_SIZE(test_rows), &lex, err, sizeof err), DS_OK,
                 "%s", err);
    return lex;
}

static ds_meddicc_result_t scan(const ds_meddicc_lexicon_t *lex, const char *text) {
    ds_meddicc_result_t res;
    ds_meddicc_result_init(&res);
    ds_meddicc_scan(lex, "t1", text, strlen(text), &res);
    return res;
}

Test(meddicc, element_names_round_trip) {
    for (int el = 0; el < DS_MEDDICC_COUNT; el++)
        cr_assert_eq(ds_meddicc_element_parse(ds_meddicc_element_name(el)), el);
    cr_assert_eq(ds_meddicc_element_parse("Economic Buyer"), DS_MEDDICC_ECONOMIC_BUYER);
    cr_assert_eq(ds_meddicc_element_parse("identify-pain"), DS_MEDDICC_IDENTIFY_PAIN);
    cr_assert_eq(ds_meddicc_element_parse("budget"), -1);
    cr_assert_eq(ds_meddicc_element_parse(NULL), -1);
    cr_assert_null(ds_meddicc_element_name(DS_MEDDICC_COUNT));
}

/* Reads the default-lexicon migrations in order: "(null, 'element',
 * 'phrase', weight)" rows add a phrase, "('element', 'phrase')" rows of a
 * delete statement remove one. What remains is the set, in order, that
 * ds_meddicc_default_phrases must equal. */
typedef struct {
    char element[64], phrase[256];
} sql_phrase_t;

static size_t read_lexicon_migration(const char *path, sql_phrase_t *rows, size_t n, size_t cap) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[512];
    bool deleting = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "delete from", 11) == 0) deleting = true;
        if (strncmp(line, "insert into", 11) == 0) deleting = false;
        sql_phrase_t r;
        double weight;
        const char *p = strstr(line, "(null, '");
        if (!deleting && p &&
            sscanf(p, "(null, '%63[^']', '%255[^']', %lf)", r.element, r.phrase, &weight) == 3) {
            cr_assert_gt(weight, 0, "default row %s/%s has weight 0", r.element, r.phrase);
            cr_assert_lt(n, cap);
            rows[n++] = r;
        } else if (deleting && (p = strstr(line, "('")) &&
                   sscanf(p, "('%63[^']', '%255[^']')", r.element, r.phrase) == 2) {
            size_t k = 0;
            while (k < n && (strcmp(rows[k].element, r.element) || strcmp(rows[k].phrase, r.phrase))) k++;
            cr_assert_lt(k, n, "%s deletes %s/%s, which no earlier migration adds", path, r.element,
                         r.phrase);
            memmove(&rows[k], &rows[k + 1], (n - k - 1) * sizeof *rows);
            n--;
        }
    }
    fclose(f);
    return n;
}

Test(meddicc, default_lexicon_matches_migration) {
    glob_t g;
    cr_assert_eq(glob(DS_SOURCE_DIR "/sql/migrations/*meddicc*lexicon*.sql", 0, NULL, &g), 0,
                 "no default lexicon migration found");
    size_t n_def, n_sql = 0;
    const ds_meddicc_phrase_t *def = ds_meddicc_default_phrases(&n_def);
    sql_phrase_t *rows = calloc(n_def + 64, sizeof *rows);
    for (size_t i = 0; i < g.gl_pathc; i++)
        n_sql = read_lexicon_migration(g.gl_pathv[i], rows, n_sql, n_def + 64);
    globfree(&g);
    cr_assert_eq(n_sql, n_def, "migrations leave %zu rows, built-in list %zu", n_sql, n_def);
    for (size_t i = 0; i < n_sql; i++) {
        cr_expect_str_eq(def[i].element, rows[i].element, "row %zu", i + 1);
        cr_expect_str_eq(def[i].phrase, rows[i].phrase, "row %zu", i + 1);
    }
    free(rows);
    /* Every default phrase is distinct after normalization. */
    cr_assert_eq(ds_meddicc_lexicon_size(ds_meddicc_lexicon_default()), n_def);
}

Test(meddicc, champion_with_exact_evidence) {
    /* "Our " is 4 bytes, "champion" 8: span [4, 12). */
    ds_meddicc_result_t r = scan(ds_meddicc_lexicon_default(), "Our champion, Dana, is pushing.");
    cr_assert(r.present[DS_MEDDICC_CHAMPION]);
    cr_assert_eq(r.coverage, 1);
    cr_assert_eq(r.n_matches[DS_MEDDICC_CHAMPION], 1);
    cr_assert_eq(r.n_evidence[DS_MEDDICC_CHAMPION], 1);
    const ds_meddicc_evidence_t *ev = &r.evidence[DS_MEDDICC_CHAMPION][0];
    cr_assert_str_eq(ev->transcript_id, "t1");
    cr_assert_eq(ev->start, 4);
    cr_assert_eq(ev->end, 12);
    cr_assert_str_eq(ev->phrase, "champion");
}

Test(meddicc, negation_cues_cancel_the_match) {
    ds_meddicc_lexicon_t *lex = test_lexicon();
    static const char *const negated[] = {
        "No budget yet.",
        "We haven't found a champion.",
        "We haven\xe2\x80\x99t found a champion.", /* curly apostrophe */
        "No one has signed off on the budget.",
        "We have not identified a champion so far.",
        "They don't have budget for this.",
        "He doesn't want to be our champion.",
        "There is no champion.",
        "Honestly we are without a champion here.",
        "We lack budget this quarter.",
        "We are yet to find a champion.",
        "They have never had a champion for tools like this.",
        "She isn't really a champion.",
        "The numbers aren't a clear ROI.",
        "Nobody is the champion.",
        "It hasn't got budget.",
        "NOT A CHAMPION.",
        "we didn't get budget",
        "They said 'no' to the budget.", /* a quoted cue */
        "We don\xe2\x80\x99t have a champion.",
    };
    for (size_t i = 0; i < DS_ARRAY_SIZE(negated); i++) {
        ds_meddicc_result_t r = scan(lex, negated[i]);
        cr_expect_eq(r.coverage, 0, "counted in \"%s\"", negated[i]);
        cr_expect_eq(r.n_matches[DS_MEDDICC_ECONOMIC_BUYER] + r.n_matches[DS_MEDDICC_CHAMPION], 0,
                     "counted in \"%s\"", negated[i]);
    }
    ds_meddicc_lexicon_destroy(lex);
}

Test(meddicc, negation_window_is_five_words) {
    ds_meddicc_lexicon_t *lex = test_lexicon();
    /* Five words between "not" and the phrase: still negated. */
    ds_meddicc_result_t r = scan(lex, "We do not yet have a real internal champion.");
    cr_assert_eq(r.coverage, 0);
    /* "no one" ends five words before "budget" (has signed off on the). */
    r = scan(lex, "No one has signed off on the budget.");
    cr_assert_eq(r.coverage, 0);
    /* Six words between: the cue is too far away. */
    r = scan(lex, "We do not yet have a real strong internal champion.");
    cr_assert(r.present[DS_MEDDICC_CHAMPION]);
    ds_meddicc_lexicon_destroy(lex);
}

Test(meddicc, negation_stops_at_sentence_and_clause_boundaries) {
    ds_meddicc_lexicon_t *lex = test_lexicon();
    static const char *const counted[] = {
        "Our champion, Dana, is pushing.",
        "No. Dana is our champion.",
        "No, Dana is our champion.", /* interjection: no scope */
        "We had no budget; our champion found some.",
        "Not yet! The champion is Dana.",
        "There is no budget, but Dana is a champion.",
        "Not sure about timing\nDana is the champion.",
        "We don't know everything, however Dana is our champion.",
    };
    for (size_t i = 0; i < DS_ARRAY_SIZE(counted); i++) {
        ds_meddicc_result_t r = scan(lex, counted[i]);
        cr_expect(r.present[DS_MEDDICC_CHAMPION], "champion not counted in \"%s\"", counted[i]);
    }
    /* ... and the negated part of the same texts stays negated. */
    ds_meddicc_result_t r = scan(lex, "There is no budget, but Dana is a champion.");
    cr_assert_not(r.present[DS_MEDDICC_ECONOMIC_BUYER]);
    cr_assert_eq(r.coverage, 1);
    /* A period inside a number does not end the sentence. */
    r = scan(lex, "We did not see a 2.5x ROI last year.");
    cr_assert_not(r.present[DS_MEDDICC_METRICS]);
    r = scan(lex, "We did not stop. ROI was 2.5x.");
    cr_assert(r.present[DS_MEDDICC_METRICS]);
    ds_meddicc_lexicon_destroy(lex);
}

Test(meddicc, questions_are_not_evidence) {
    ds_meddicc_lexicon_t *lex = test_lexicon();
    ds_meddicc_result_t r = scan(lex, "Rep: Who is your champion?\nBuyer: Not sure.");
    cr_assert_eq(r.coverage, 0);
    /* "Who signs off? " is 15 bytes, "The " 4 more: CFO at [19, 22). */
    r = scan(lex, "Who signs off? The CFO does.");
    cr_assert(r.present[DS_MEDDICC_ECONOMIC_BUYER]);
    cr_assert_eq(r.n_matches[DS_MEDDICC_ECONOMIC_BUYER], 1);
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].start, 19);
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].end, 22);
    ds_meddicc_lexicon_destroy(lex);
}

Test(meddicc, word_boundaries) {
    const ds_meddicc_lexicon_t *lex = ds_meddicc_lexicon_default();
    static const char *const not_matched[] = {
        "We watched the championship together.",
        "That was a heroic effort.",       /* "roi" inside a word */
        "Contractual details later.",      /* "contract" */
        "The config key is pre_champion.", /* '_' is a word character */
        "Unchampioned ideas.",
        "\xc3\xa9"
        "champion stuff.",          /* a letter before: "échampion" */
        "The championess arrived.", /* "es" + more letters is no plural */
        "Our champions_ group.",
    };
    for (size_t i = 0; i < DS_ARRAY_SIZE(not_matched); i++) {
        ds_meddicc_result_t r = scan(lex, not_matched[i]);
        cr_expect_eq(r.coverage, 0, "matched in \"%s\"", not_matched[i]);
    }
    static const char *const matched[] = {
        "The champion's view.",
        "The champion\xe2\x80\x99s view.", /* U+2019 after the phrase */
        "A champion-led rollout.",
        "\xe2\x80\x9c"
        "champion\xe2\x80\x9d", /* curly quotes around it */
        "(champion)",
        "champion",
        "Two champions.",
        "CHAMPIONS!",
    };
    for (size_t i = 0; i < DS_ARRAY_SIZE(matched); i++) {
        ds_meddicc_result_t r = scan(lex, matched[i]);
        cr_expect(r.present[DS_MEDDICC_CHAMPION], "not matched in \"%s\"", matched[i]);
    }
}

Test(meddicc, case_whitespace_and_hyphens) {
    const ds_meddicc_lexicon_t *lex = ds_meddicc_lexicon_default();
    /* "ECONOMIC BUYER" [0, 14); "Maria (" is 7 bytes after ": ", so "Budget
     * Holder" at 16 + 7 = [23, 36). */
    ds_meddicc_result_t r = scan(lex, "ECONOMIC BUYER: Maria (Budget Holder).");
    cr_assert_eq(r.n_matches[DS_MEDDICC_ECONOMIC_BUYER], 2);
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].start, 0);
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].end, 14);
    cr_assert_str_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].phrase, "economic buyer");
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][1].start, 23);
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][1].end, 36);
    /* A line break inside a phrase, and a hyphen for its space. */
    r = scan(lex, "Our economic\n   buyer wants Sign-off by Friday.");
    cr_assert_eq(r.n_matches[DS_MEDDICC_ECONOMIC_BUYER], 2);
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].start, 4);
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].end, 21); /* 8 + 4 + 5 bytes */
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][1].start, 28);
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][1].end, 36);
    cr_assert_str_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][1].phrase, "sign off");
    /* The lexicon's hyphen matches a space too: "in-house solution". */
    r = scan(lex, "They may pick an in house solution.");
    cr_assert(r.present[DS_MEDDICC_COMPETITION]);
    /* Two hyphens are not one separator. */
    r = scan(lex, "sign--off");
    cr_assert_eq(r.coverage, 0);
}

Test(meddicc, plurals_match_with_the_ending_in_the_span) {
    const ds_meddicc_lexicon_t *lex = ds_meddicc_lexicon_default();
    /* "Our " 4 bytes, "KPIs" 4: [4, 8). */
    ds_meddicc_result_t r = scan(lex, "Our KPIs are set.");
    cr_assert(r.present[DS_MEDDICC_METRICS]);
    cr_assert_eq(r.evidence[DS_MEDDICC_METRICS][0].start, 4);
    cr_assert_eq(r.evidence[DS_MEDDICC_METRICS][0].end, 8);
    cr_assert_str_eq(r.evidence[DS_MEDDICC_METRICS][0].phrase, "kpi");
    /* "SSO and audit logs are " is 23 bytes; "must-haves" 10. */
    r = scan(lex, "SSO and audit logs are must-haves for us.");
    cr_assert(r.present[DS_MEDDICC_DECISION_CRITERIA]);
    cr_assert_eq(r.evidence[DS_MEDDICC_DECISION_CRITERIA][0].start, 23);
    cr_assert_eq(r.evidence[DS_MEDDICC_DECISION_CRITERIA][0].end, 33);
    /* A phrase ending in a digit or a non-letter takes no ending. */
    ds_meddicc_phrase_t rows[] = {{"metrics", "q3", false}};
    ds_meddicc_lexicon_t *own = NULL;
    char err[64];
    cr_assert_eq(ds_meddicc_lexicon_new(rows, 1, &own, err, sizeof err), DS_OK);
    r = scan(own, "Targets for q3s.");
    cr_assert_eq(r.coverage, 0);
    r = scan(own, "Targets for Q3.");
    cr_assert_eq(r.coverage, 1);
    ds_meddicc_lexicon_destroy(own);
    /* Negation still applies to plurals. */
    r = scan(lex, "There are no competitors in this deal.");
    cr_assert_eq(r.coverage, 0);
}

Test(meddicc, multi_element_sentence) {
    const ds_meddicc_lexicon_t *lex = ds_meddicc_lexicon_default();
    const char *text =
        "Dana, our champion, says the budget holder owns the budget, legal review starts after "
        "the pilot, and the manual process is a bottleneck against the incumbent.";
    ds_meddicc_result_t r = scan(lex, text);
    cr_assert(r.present[DS_MEDDICC_CHAMPION]);
    cr_assert(r.present[DS_MEDDICC_ECONOMIC_BUYER]);
    cr_assert(r.present[DS_MEDDICC_PAPER_PROCESS]);
    cr_assert(r.present[DS_MEDDICC_DECISION_PROCESS]);
    cr_assert(r.present[DS_MEDDICC_IDENTIFY_PAIN]);
    cr_assert(r.present[DS_MEDDICC_COMPETITION]);
    cr_assert_not(r.present[DS_MEDDICC_METRICS]);
    cr_assert_not(r.present[DS_MEDDICC_DECISION_CRITERIA]);
    cr_assert_eq(r.coverage, 6);
    cr_assert_eq(r.n_matches[DS_MEDDICC_ECONOMIC_BUYER], 2); /* budget holder, owns the budget */
    cr_assert_eq(r.n_matches[DS_MEDDICC_IDENTIFY_PAIN], 2);  /* manual process, bottleneck */
    /* Every evidence span points at its phrase in the text. */
    for (int el = 0; el < DS_MEDDICC_COUNT; el++) {
        for (uint32_t k = 0; k < r.n_evidence[el]; k++) {
            const ds_meddicc_evidence_t *ev = &r.evidence[el][k];
            cr_assert_eq(ev->end - ev->start, strlen(ev->phrase));
            cr_assert_eq(strncasecmp(text + ev->start, ev->phrase, strlen(ev->phrase)), 0);
        }
    }
    const ds_meddicc_evidence_t *pilot = &r.evidence[DS_MEDDICC_DECISION_PROCESS][0];
    cr_assert_eq(pilot->start, (uint32_t)(strstr(text, "pilot") - text));
}

Test(meddicc, spans_are_bytes_of_the_original_text) {
    const ds_meddicc_lexicon_t *lex = ds_meddicc_lexicon_default();
    /* "Zürich — " is Z(1) ü(2) rich(4) space(1) em dash(3) space(1) = 12 bytes,
     * then "our " 4: champion at [16, 24). */
    ds_meddicc_result_t r = scan(lex, "Z\xc3\xbcrich \xe2\x80\x94 our champion.");
    cr_assert(r.present[DS_MEDDICC_CHAMPION]);
    cr_assert_eq(r.evidence[DS_MEDDICC_CHAMPION][0].start, 16);
    cr_assert_eq(r.evidence[DS_MEDDICC_CHAMPION][0].end, 24);
    /* Invalid UTF-8 around a phrase is just a non-word byte. */
    r = scan(lex, "\xff"
                  "champion\xfe");
    cr_assert_eq(r.evidence[DS_MEDDICC_CHAMPION][0].start, 1);
    cr_assert_eq(r.evidence[DS_MEDDICC_CHAMPION][0].end, 9);
    /* Only len bytes are read: a phrase cut by the length does not match. */
    ds_meddicc_result_init(&r);
    ds_meddicc_scan(lex, "t1", "our champion", 8, &r);
    cr_assert_eq(r.coverage, 0);
}

Test(meddicc, overlapping_phrases_count_once) {
    ds_meddicc_lexicon_t *lex = test_lexicon();
    /* "budget holder" and "budget" both match at 11: the longer one wins and
     * "budget" is not counted again. */
    ds_meddicc_result_t r = scan(lex, "She is the budget holder.");
    cr_assert_eq(r.n_matches[DS_MEDDICC_ECONOMIC_BUYER], 1);
    cr_assert_str_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].phrase, "budget holder");
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].start, 11);
    cr_assert_eq(r.evidence[DS_MEDDICC_ECONOMIC_BUYER][0].end, 24);
    /* Different elements may share a span: "sign off" is a decision-process
     * phrase in this lexicon. */
    r = scan(lex, "They will sign off on Monday.");
    cr_assert(r.present[DS_MEDDICC_DECISION_PROCESS]);
    ds_meddicc_lexicon_destroy(lex);
}

Test(meddicc, evidence_capped_matches_counted) {
    const ds_meddicc_lexicon_t *lex = ds_meddicc_lexicon_default();
    ds_meddicc_result_t r = scan(lex, "champion. champion. champion. champion. champion. champion.");
    cr_assert_eq(r.n_matches[DS_MEDDICC_CHAMPION], 6);
    cr_assert_eq(r.n_evidence[DS_MEDDICC_CHAMPION], DS_MEDDICC_MAX_EVIDENCE);
    /* The earliest are kept: 0, 10, 20, 30. */
    for (int k = 0; k < DS_MEDDICC_MAX_EVIDENCE; k++)
        cr_assert_eq(r.evidence[DS_MEDDICC_CHAMPION][k].start, (uint32_t)(10 * k));
}

Test(meddicc, scans_accumulate_over_transcripts) {
    const ds_meddicc_lexicon_t *lex = ds_meddicc_lexicon_default();
    ds_meddicc_result_t r;
    ds_meddicc_result_init(&r);
    const char *a = "Our champion is Dana.", *b = "Procurement needs the MSA and a champion.";
    ds_meddicc_scan(lex, "call-1", a, strlen(a), &r);
    ds_meddicc_scan(lex, "call-2", b, strlen(b), &r);
    cr_assert_eq(r.coverage, 2);
    cr_assert_eq(r.n_matches[DS_MEDDICC_CHAMPION], 2);
    cr_assert_str_eq(r.evidence[DS_MEDDICC_CHAMPION][0].transcript_id, "call-1");
    cr_assert_str_eq(r.evidence[DS_MEDDICC_CHAMPION][1].transcript_id, "call-2");
    cr_assert_eq(r.n_matches[DS_MEDDICC_PAPER_PROCESS], 2); /* procurement, msa */
}

Test(meddicc, lexicon_normalizes_and_disables) {
    size_t n_def;
    const ds_meddicc_phrase_t *def = ds_meddicc_default_phrases(&n_def);
    ds_meddicc_phrase_t *rows = calloc(n_def + 3, sizeof *rows);
    memcpy(rows, def, n_def * sizeof *rows);
    /* An org switches "champion" off and adds its own phrases. */
    rows[n_def] = (ds_meddicc_phrase_t){"Champion", "  CHAMPION ", true};
    rows[n_def + 1] = (ds_meddicc_phrase_t){"champion", "  Power   Sponsor ", false};
    rows[n_def + 2] = (ds_meddicc_phrase_t){"metrics", "ROI", false}; /* a duplicate */
    ds_meddicc_lexicon_t *lex = NULL;
    char err[128];
    cr_assert_eq(ds_meddicc_lexicon_new(rows, n_def + 3, &lex, err, sizeof err), DS_OK, "%s", err);
    cr_assert_eq(ds_meddicc_lexicon_size(lex), n_def - 1 + 1);
    ds_meddicc_result_t r = scan(lex, "Our champion is Dana, our power sponsor.");
    cr_assert_eq(r.n_matches[DS_MEDDICC_CHAMPION], 1);
    cr_assert_str_eq(r.evidence[DS_MEDDICC_CHAMPION][0].phrase, "power sponsor");
    cr_assert_eq(r.evidence[DS_MEDDICC_CHAMPION][0].start, 26);
    ds_meddicc_lexicon_destroy(lex);
    free(rows);
}

Test(meddicc, lexicon_rejects_bad_rows) {
    ds_meddicc_lexicon_t *lex = NULL;
    char err[128] = "";
    ds_meddicc_phrase_t bad_el[] = {{"champion", "ok", false}, {"budget", "x", false}};
    cr_assert_eq(ds_meddicc_lexicon_new(bad_el, 2, &lex, err, sizeof err), DS_EINVAL);
    cr_assert_null(lex);
    cr_assert_not_null(strstr(err, "row 2"), "%s", err);
    cr_assert_not_null(strstr(err, "budget"), "%s", err);
    ds_meddicc_phrase_t empty[] = {{"metrics", " - \t", false}};
    cr_assert_eq(ds_meddicc_lexicon_new(empty, 1, &lex, err, sizeof err), DS_EINVAL);
    cr_assert_not_null(strstr(err, "empty"), "%s", err);
    char longp[DS_MEDDICC_MAX_PHRASE + 10];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    ds_meddicc_phrase_t too_long[] = {{"metrics", longp, false}};
    cr_assert_eq(ds_meddicc_lexicon_new(too_long, 1, &lex, err, sizeof err), DS_EINVAL);
    /* An empty lexicon is valid and finds nothing. */
    cr_assert_eq(ds_meddicc_lexicon_new(NULL, 0, &lex, err, sizeof err), DS_OK);
    ds_meddicc_result_t r = scan(lex, "our champion");
    cr_assert_eq(r.coverage, 0);
    ds_meddicc_lexicon_destroy(lex);
    ds_meddicc_lexicon_destroy(NULL);
}

Test(meddicc, json_parses_and_is_deterministic) {
    const ds_meddicc_lexicon_t *lex = ds_meddicc_lexicon_default();
    ds_meddicc_result_t r;
    ds_meddicc_result_init(&r);
    const char *text = "Our champion wants the ROI numbers.";
    /* An id with a quote and an invalid byte still gives valid JSON. */
    ds_meddicc_scan(lex, "t\"1\xff", text, strlen(text), &r);
    char *a = ds_meddicc_result_to_json(&r), *b = ds_meddicc_result_to_json(&r);
    cr_assert_str_eq(a, b);
    json_error_t jerr;
    json_t *root = json_loads(a, 0, &jerr);
    cr_assert_not_null(root, "%s: %s", jerr.text, a);
    cr_assert_eq(json_object_size(root), DS_MEDDICC_COUNT);
    /* Keys come in element order. */
    cr_assert_eq(strncmp(a, "{\"metrics\":", 11), 0, "%s", a);
    json_t *ch = json_object_get(root, "champion");
    cr_assert(json_is_true(json_object_get(ch, "present")));
    cr_assert_eq(json_integer_value(json_object_get(ch, "matches")), 1);
    json_t *ev = json_array_get(json_object_get(ch, "evidence"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "transcript_id")), "t\"1\xef\xbf\xbd");
    cr_assert_eq(json_integer_value(json_object_get(ev, "start")), 4);
    cr_assert_eq(json_integer_value(json_object_get(ev, "end")), 12);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "phrase")), "champion");
    json_t *dc = json_object_get(root, "decision_criteria");
    cr_assert(json_is_false(json_object_get(dc, "present")));
    cr_assert_eq(json_array_size(json_object_get(dc, "evidence")), 0);
    cr_assert(json_is_true(json_object_get(json_object_get(root, "metrics"), "present")));
    json_decref(root);
    free(a);
    free(b);
}

/* Random bytes, cut UTF-8 and phrase pieces in buffers of exactly len bytes
 * (no NUL after them), so a sanitizer build catches any read past the end. */
Test(meddicc, arbitrary_bytes_are_safe) {
    static const char *const pieces[] = {"champion", " ",    "no ", "\xe2\x80", "\xe2\x80\x99",
                                         "-",        "s",    ".",   "?",        "\n",
                                         "KPI",      "sign", "'",   "\xc3",     ","};
    const ds_meddicc_lexicon_t *lex = ds_meddicc_lexicon_default();
    uint64_t x = 88172645463325252ULL;
    for (int round = 0; round < 3000; round++) {
        size_t len = (size_t)(round % 97);
        char *buf = malloc(len ? len : 1);
        size_t k = 0;
        while (k < len) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (x % 3 == 0) {
                buf[k++] = (char)(x >> 24);
            } else {
                const char *p = pieces[(x >> 8) % DS_ARRAY_SIZE(pieces)];
                while (*p && k < len) buf[k++] = *p++;
            }
        }
        ds_meddicc_result_t r;
        ds_meddicc_result_init(&r);
        ds_meddicc_scan(lex, "t", buf, len, &r);
        for (int el = 0; el < DS_MEDDICC_COUNT; el++) {
            for (uint32_t e = 0; e < r.n_evidence[el]; e++) {
                cr_assert_lt(r.evidence[el][e].start, r.evidence[el][e].end);
                cr_assert_leq(r.evidence[el][e].end, len);
            }
        }
        free(buf);
    }
}
