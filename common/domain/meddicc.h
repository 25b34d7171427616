/* MEDDICC detection in transcript text: one flag per element, a coverage
 * count, and the evidence (transcript id, byte span, phrase) for each
 * detected element. Pure in-memory code: no I/O, no global mutable state.
 *
 * The phrase lexicon is data ({element, phrase} rows, e.g. from the
 * meddicc_lexicon table). It is compiled once per org into a
 * ds_meddicc_lexicon_t, which is immutable afterwards and may be shared by
 * threads.
 *
 * Matching rules (deterministic, documented so the SQL default set and the
 * built-in one mean the same thing):
 * - Case-insensitive for ASCII; other bytes compare exactly. A phrase is
 *   normalized when compiled: ASCII lowercased, U+2019 turned into an ASCII
 *   apostrophe, trimmed, each run of whitespace or '-' turned into one space.
 * - A space in a phrase matches a run of whitespace in the text that holds at
 *   most one '-' ("sign off" matches "sign off", "Sign-off", "sign\n off");
 *   an ASCII apostrophe also matches U+2019.
 * - Word-bounded: a phrase that begins (ends) with a word character matches
 *   only where the text character before (after) is not one. Word characters
 *   are ASCII letters, digits, '_' and every non-ASCII code point except
 *   spaces and punctuation (U+00A0-U+00BF, U+2000-U+206F, U+3000-U+303F), so
 *   "champion's" and "champion’s" count and "championship" does not. The one
 *   exception is a plural: a phrase ending in a letter also matches with "s"
 *   or "es" appended ("competitor" matches "Competitors", "must have" matches
 *   "must-haves"); the evidence span then covers the ending.
 * - At one position the longest phrase of an element wins; a match that
 *   overlaps an earlier counted match of the same element in the same
 *   transcript is skipped ("budget holder" is one piece of evidence).
 * - Negation: a cue (DS_MEDDICC_NEGATION_CUES) in the same sentence with at
 *   most DS_MEDDICC_NEGATION_WINDOW words between it and the phrase cancels
 *   the match ("no budget yet", "we haven't found a champion", "no one has
 *   signed off on the budget"). Sentences end at '.', '!', '?', ';' or a
 *   newline ('.' only when followed by space or the end, so "2.5x" does not
 *   split); "but", "however", "although" and "though" also end the cue's
 *   scope, and a cue directly followed by a comma is an interjection with no
 *   scope ("No, Dana is our champion" counts).
 * - Questions are not evidence: a match in a sentence that ends with '?'
 *   ("who signs off on the budget?") does not count.
 */
#ifndef DEALSCORE_MEDDICC_H
#define DEALSCORE_MEDDICC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DS_MEDDICC_METRICS = 0,
    DS_MEDDICC_ECONOMIC_BUYER,
    DS_MEDDICC_DECISION_CRITERIA,
    DS_MEDDICC_DECISION_PROCESS,
    DS_MEDDICC_PAPER_PROCESS,
    DS_MEDDICC_IDENTIFY_PAIN,
    DS_MEDDICC_CHAMPION,
    DS_MEDDICC_COMPETITION,
    DS_MEDDICC_COUNT
} ds_meddicc_element_t;

/* Words allowed between a negation cue and the phrase it cancels. */
#define DS_MEDDICC_NEGATION_WINDOW 5
/* Evidence entries kept per element (the earliest, in scan order); the
 * number of matches is counted beyond it. */
#define DS_MEDDICC_MAX_EVIDENCE 4
/* Longest phrase accepted, bytes after normalization. */
#define DS_MEDDICC_MAX_PHRASE 200

/* The negation cues, lowercase, as one comma-separated string (for docs and
 * the catalog): "no", "not", "haven't", "have not", ... */
extern const char DS_MEDDICC_NEGATION_CUES[];

/* "metrics", "economic_buyer", "decision_criteria", "decision_process",
 * "paper_process", "identify_pain", "champion", "competition"; NULL when out
 * of range. */
const char *ds_meddicc_element_name(ds_meddicc_element_t el);
/* Parses an element name: case-insensitive, ' ' and '-' accepted for '_'
 * ("Economic Buyer"). Returns the element, or -1 when unknown. */
int ds_meddicc_element_parse(const char *name);

/* One lexicon row, as stored in the meddicc_lexicon table. */
typedef struct {
    const char *element; /* an element name ds_meddicc_element_parse accepts */
    const char *phrase;
    bool disabled; /* switches the phrase off for its element (weight = 0 in the table) */
} ds_meddicc_phrase_t;

/* The built-in default lexicon (the same set the default migration inserts
 * into meddicc_lexicon). Static storage; *n receives the row count. */
const ds_meddicc_phrase_t *ds_meddicc_default_phrases(size_t *n);

typedef struct ds_meddicc_lexicon ds_meddicc_lexicon_t;

/* Compiles n rows into a lexicon (normalized phrases indexed by first byte;
 * duplicates after normalization are dropped, and a disabled row removes
 * every row of the same element and normalized phrase, so the loader can
 * pass the default rows and the org's rows together). Returns 0 and sets *out (free
 * with ds_meddicc_lexicon_destroy), or DS_EINVAL with a sentence in errstr
 * (unknown element, empty or too long phrase) and *out untouched. The rows
 * are copied; the caller keeps ownership of its strings. */
int ds_meddicc_lexicon_new(const ds_meddicc_phrase_t *rows, size_t n, ds_meddicc_lexicon_t **out,
                           char *errstr, size_t errstr_size);
/* The built-in default lexicon, compiled once on first use and shared; never
 * destroy it. */
const ds_meddicc_lexicon_t *ds_meddicc_lexicon_default(void);
/* Does nothing with NULL. */
void ds_meddicc_lexicon_destroy(ds_meddicc_lexicon_t *lex);
/* Number of distinct normalized phrases. */
size_t ds_meddicc_lexicon_size(const ds_meddicc_lexicon_t *lex);

typedef struct {
    const char *transcript_id; /* borrowed from the scanned transcript */
    uint32_t start, end;       /* byte span [start, end) of the transcript text */
    const char *phrase;        /* the normalized lexicon phrase, owned by the lexicon */
} ds_meddicc_evidence_t;

/* Detection result accumulated over one or more transcripts. Pointers in
 * the evidence are borrowed: they stay valid while the lexicon and the
 * scanned transcripts' id strings do. Plain data, no cleanup needed. */
typedef struct {
    bool present[DS_MEDDICC_COUNT];
    uint32_t n_matches[DS_MEDDICC_COUNT]; /* counted matches, may exceed the evidence kept */
    uint32_t n_evidence[DS_MEDDICC_COUNT];
    ds_meddicc_evidence_t evidence[DS_MEDDICC_COUNT][DS_MEDDICC_MAX_EVIDENCE];
    int coverage; /* elements present, 0..DS_MEDDICC_COUNT */
} ds_meddicc_result_t;

/* Clears a result before the first scan. */
void ds_meddicc_result_init(ds_meddicc_result_t *res);

/* Scans len bytes of text (no NUL needed; any bytes, UTF-8 expected) and adds
 * what it finds to res, with transcript_id (borrowed, may be NULL) on each
 * evidence entry. Spans are byte offsets into text; texts longer than
 * UINT32_MAX bytes are scanned only up to there. Never fails. */
void ds_meddicc_scan(const ds_meddicc_lexicon_t *lex, const char *transcript_id, const char *text, size_t len,
                     ds_meddicc_result_t *res);

/* Deterministic compact JSON: every element in enum order,
 *   {"metrics":{"present":false,"matches":0,"evidence":[]},...,
 *    "champion":{"present":true,"matches":1,"evidence":[{"transcript_id":"t1",
 *      "start":12,"end":20,"phrase":"champion"}]},...}
 * Invalid UTF-8 in ids is replaced by U+FFFD so the output is valid jsonb.
 * Returns a string the caller frees with free(); never NULL. */
char *ds_meddicc_result_to_json(const ds_meddicc_result_t *res);

#endif
