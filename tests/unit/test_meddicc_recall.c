/* MEDDICC recall and precision of the default lexicon, in exact counts, on
 * two sentence sets: the simulator's phrasings (tests/fixtures/meddicc/
 * sim_sentences.csv: its 48 positive cues, 32 negations and 27 noise
 * sentences with the slots filled) and hand-written ones (sentences.csv:
 * paraphrases, negations, questions and decoys). Each row names the element
 * it expresses and its polarity (positive, negated, or none for a decoy).
 * A positive row is a hit when its element is detected; every detected
 * (row, element) pair that is not a positive row's own element is a false
 * positive. Run with --verbose to see each miss and false positive. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "domain/meddicc.h"

/* The measured counts (services/scoring/README.md, "MEDDICC lexicon"). */
#define SIM_HITS 48
#define SIM_FALSE_POS 1
#define HAND_HITS 55
#define HAND_FALSE_POS 6
#define HAND_NEGATED_OK 16

typedef struct {
    int positives, hits, false_pos, negated_ok, negated;
} lexicon_score_t;

/* Reads one CSV field (RFC 4180 quotes) from *p into out; returns 1 when a
 * field was read, and moves *p past the comma or line end. */
static int csv_field(const char **p, char *out, size_t size) {
    const char *s = *p;
    size_t n = 0;
    if (!*s) return 0;
    if (*s == '"') {
        for (s++; *s; s++) {
            if (*s == '"' && s[1] == '"')
                s++;
            else if (*s == '"') {
                s++;
                break;
            }
            if (n + 1 < size) out[n++] = *s;
        }
    } else {
        for (; *s && *s != ',' && *s != '\n'; s++)
            if (n + 1 < size) out[n++] = *s;
    }
    out[n] = '\0';
    if (*s == ',') s++;
    *p = s;
    return 1;
}

static void score_row(const char *element, const char *polarity, const char *sentence, lexicon_score_t *sc) {
    ds_meddicc_result_t res;
    ds_meddicc_result_init(&res);
    ds_meddicc_scan(ds_meddicc_lexicon_default(), "t", sentence, strlen(sentence), &res);
    int el = element[0] ? ds_meddicc_element_parse(element) : -1;
    bool positive = strcmp(polarity, "positive") == 0;
    cr_assert(positive || strcmp(polarity, "negated") == 0 || strcmp(polarity, "none") == 0, "polarity %s",
              polarity);
    if (positive) {
        cr_assert_geq(el, 0, "unknown element '%s'", element);
        sc->positives++;
        if (res.present[el])
            sc->hits++;
        else
            cr_log_info("missed %s: %s", element, sentence);
    }
    if (strcmp(polarity, "negated") == 0) {
        sc->negated++;
        sc->negated_ok += !res.present[el];
    }
    for (int e = 0; e < DS_MEDDICC_COUNT; e++)
        if (res.present[e] && !(positive && e == el)) {
            sc->false_pos++;
            cr_log_info("false %s (%s): %s", ds_meddicc_element_name(e), res.evidence[e][0].phrase, sentence);
        }
}

static lexicon_score_t score_file(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/meddicc/%s", DS_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot read %s", path);
    lexicon_score_t sc = {0};
    char line[2048];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "element,polarity,sentence\n");
    while (fgets(line, sizeof line, f)) {
        char element[64], polarity[32], sentence[1024];
        const char *p = line;
        cr_assert(csv_field(&p, element, sizeof element) && csv_field(&p, polarity, sizeof polarity) &&
                      csv_field(&p, sentence, sizeof sentence),
                  "bad line in %s: %s", name, line);
        score_row(element, polarity, sentence, &sc);
    }
    fclose(f);
    cr_log_info("%s: recall %d/%d, false positives %d, negations held %d/%d", name, sc.hits, sc.positives,
                sc.false_pos, sc.negated_ok, sc.negated);
    return sc;
}

Test(meddicc_recall, simulator_phrasings) {
    lexicon_score_t sc = score_file("sim_sentences.csv");
    cr_assert_eq(sc.positives, 48);
    cr_assert_eq(sc.negated, 32);
    cr_expect_eq(sc.hits, SIM_HITS, "recall %d/48", sc.hits);
    cr_expect_eq(sc.false_pos, SIM_FALSE_POS, "false positives %d", sc.false_pos);
    cr_expect_eq(sc.negated_ok, 32, "negations held %d/32", sc.negated_ok);
}

Test(meddicc_recall, hand_written_sentences) {
    lexicon_score_t sc = score_file("sentences.csv");
    cr_assert_eq(sc.positives, 57);
    cr_assert_eq(sc.negated, 17);
    cr_expect_eq(sc.hits, HAND_HITS, "recall %d/57", sc.hits);
    cr_expect_eq(sc.false_pos, HAND_FALSE_POS, "false positives %d", sc.false_pos);
    cr_expect_eq(sc.negated_ok, HAND_NEGATED_OK, "negations held %d/17", sc.negated_ok);
}
