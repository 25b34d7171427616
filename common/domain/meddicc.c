/* MEDDICC detection: a compiled phrase lexicon scanned over transcript text
 * with word boundaries, negation cues and question suppression (the rules
 * are in meddicc.h). */
#include "domain/meddicc.h"
#include "base/common.h"
#include "base/sb.h"
#include "base/utf8.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const element_names[DS_MEDDICC_COUNT] = {
    "metrics",       "economic_buyer", "decision_criteria", "decision_process",
    "paper_process", "identify_pain",  "champion",          "competition",
};

const char *ds_meddicc_element_name(ds_meddicc_element_t el) {
    if ((int)el < 0 || el >= DS_MEDDICC_COUNT) return NULL;
    return element_names[el];
}

int ds_meddicc_element_parse(const char *name) {
    if (!name) return -1;
    char buf[32];
    size_t n = 0;
    for (const char *p = name; *p; p++) {
        if (n + 1 >= sizeof buf) return -1;
        char c = *p;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c == ' ' || c == '-') c = '_';
        buf[n++] = c;
    }
    buf[n] = '\0';
    for (int i = 0; i < DS_MEDDICC_COUNT; i++)
        if (strcmp(buf, element_names[i]) == 0) return i;
    return -1;
}

/* The default lexicon: the same rows, in the same order, as the default set
 * that sql/migrations/20261126000500_meddicc_default_lexicon.sql inserts into
 * meddicc_lexicon (a unit test compares the two). */
static const ds_meddicc_phrase_t default_phrases[] = {
    {"metrics", "roi", false},
    {"metrics", "return on investment", false},
    {"metrics", "payback period", false},
    {"metrics", "cost savings", false},
    {"metrics", "save hours", false},
    {"metrics", "reduce churn", false},
    {"metrics", "increase revenue", false},
    {"metrics", "kpi", false},
    {"metrics", "business case", false},
    {"metrics", "per year", false},
    {"economic_buyer", "economic buyer", false},
    {"economic_buyer", "owns the budget", false},
    {"economic_buyer", "budget holder", false},
    {"economic_buyer", "sign off", false},
    {"economic_buyer", "final approval", false},
    {"economic_buyer", "vp of finance", false},
    {"economic_buyer", "approve the spend", false},
    {"decision_criteria", "decision criteria", false},
    {"decision_criteria", "evaluation criteria", false},
    {"decision_criteria", "requirements", false},
    {"decision_criteria", "must have", false},
    {"decision_criteria", "nice to have", false},
    {"decision_criteria", "scorecard", false},
    {"decision_criteria", "security review", false},
    {"decision_criteria", "integration with", false},
    {"decision_process", "decision process", false},
    {"decision_process", "next steps", false},
    {"decision_process", "timeline", false},
    {"decision_process", "steering committee", false},
    {"decision_process", "proof of concept", false},
    {"decision_process", "pilot", false},
    {"decision_process", "decide by", false},
    {"decision_process", "buying committee", false},
    {"paper_process", "procurement", false},
    {"paper_process", "legal review", false},
    {"paper_process", "purchase order", false},
    {"paper_process", "msa", false},
    {"paper_process", "redlines", false},
    {"paper_process", "contract", false},
    {"paper_process", "vendor onboarding", false},
    {"paper_process", "signature", false},
    {"identify_pain", "pain point", false},
    {"identify_pain", "struggling with", false},
    {"identify_pain", "biggest challenge", false},
    {"identify_pain", "frustrated", false},
    {"identify_pain", "bottleneck", false},
    {"identify_pain", "manual process", false},
    {"identify_pain", "losing customers", false},
    {"identify_pain", "too slow", false},
    {"champion", "champion", false},
    {"champion", "internal advocate", false},
    {"champion", "i will push for", false},
    {"champion", "sell this internally", false},
    {"champion", "on our side", false},
    {"champion", "introduce you to", false},
    {"champion", "set up a meeting with", false},
    {"champion", "i can present", false},
    {"competition", "competitor", false},
    {"competition", "alternatives", false},
    {"competition", "other vendors", false},
    {"competition", "also evaluating", false},
    {"competition", "incumbent", false},
    {"competition", "build it ourselves", false},
    {"competition", "in-house solution", false},
    {"competition", "compared to", false},
    /* 20261206005500_meddicc_lexicon_more.sql: paraphrases measured on
     * tests/fixtures/meddicc (services/scoring/README.md). */
    {"metrics", "payback", false},
    {"metrics", "success metrics", false},
    {"metrics", "success for us", false},
    {"metrics", "pays for itself", false},
    {"metrics", "improvement in", false},
    {"metrics", "our target is", false},
    {"metrics", "we measure", false},
    {"metrics", "lift in", false},
    {"metrics", "cut onboarding", false},
    {"economic_buyer", "controls the budget", false},
    {"economic_buyer", "holds the budget", false},
    {"economic_buyer", "budget owner", false},
    {"economic_buyer", "budget is approved", false},
    {"economic_buyer", "set aside for", false},
    {"economic_buyer", "earmarked", false},
    {"economic_buyer", "signs the check", false},
    {"economic_buyer", "final say", false},
    {"economic_buyer", "approved the spend", false},
    {"economic_buyer", "signs anything", false},
    {"decision_criteria", "criteria", false},
    {"decision_criteria", "requirement", false},
    {"decision_criteria", "non negotiable", false},
    {"decision_criteria", "deal breaker", false},
    {"decision_criteria", "matters most", false},
    {"decision_process", "approval process", false},
    {"decision_process", "approval chain", false},
    {"decision_process", "decision by", false},
    {"decision_process", "decision will be made", false},
    {"decision_process", "next step", false},
    {"decision_process", "committee", false},
    {"decision_process", "need to approve", false},
    {"decision_process", "rfp", false},
    {"paper_process", "master services agreement", false},
    {"paper_process", "dpa", false},
    {"paper_process", "order form", false},
    {"paper_process", "paperwork", false},
    {"paper_process", "security questionnaire", false},
    {"paper_process", "supplier portal", false},
    {"paper_process", "countersign", false},
    {"identify_pain", "the problem is", false},
    {"identify_pain", "the real problem", false},
    {"identify_pain", "is broken", false},
    {"identify_pain", "headache", false},
    {"identify_pain", "waste hours", false},
    {"identify_pain", "deals slipping", false},
    {"identify_pain", "slipped", false},
    {"identify_pain", "killing us", false},
    {"identify_pain", "keep losing", false},
    {"identify_pain", "missed our number", false},
    {"champion", "championing", false},
    {"champion", "advocate", false},
    {"champion", "in our corner", false},
    {"champion", "internal sponsor", false},
    {"champion", "selling internally", false},
    {"champion", "pushing for", false},
    {"champion", "pushing hard", false},
    {"champion", "make the case", false},
    {"champion", "going to bat", false},
    {"champion", "on our behalf", false},
    {"competition", "shortlist", false},
    {"competition", "demo from", false},
    {"competition", "pitched us", false},
    {"competition", "in parallel", false},
    {"competition", "in house tool", false},
};

const ds_meddicc_phrase_t *ds_meddicc_default_phrases(size_t *n) {
    *n = DS_ARRAY_SIZE(default_phrases);
    return default_phrases;
}

const char DS_MEDDICC_NEGATION_CUES[] =
    "no, not, never, without, lack, lacks, lacking, nobody, none, nothing, no one, yet to, have not, "
    "has not, haven't, hasn't, hadn't, don't, doesn't, didn't, isn't, aren't, wasn't, weren't, "
    "won't, can't, cannot, couldn't, wouldn't, havent, hasnt, dont, doesnt, didnt, isnt, arent, "
    "cant";

/* Words the negation check recognizes, lowercased, U+2019 folded to an
 * ASCII apostrophe. "have not" and "has not" are covered by "not"; the
 * two-word cues are "no one" and "yet to". */
typedef enum { W_NONE = 0, W_CUE, W_NO, W_YET, W_ONE, W_TO, W_BREAK } word_class_t;

static const struct {
    const char *word;
    uint8_t cls;
} class_words[] = {
    {"no", W_NO},         {"not", W_CUE},       {"never", W_CUE},      {"without", W_CUE},
    {"lack", W_CUE},      {"lacks", W_CUE},     {"lacking", W_CUE},    {"nobody", W_CUE},
    {"none", W_CUE},      {"nothing", W_CUE},   {"haven't", W_CUE},    {"hasn't", W_CUE},
    {"hadn't", W_CUE},    {"don't", W_CUE},     {"doesn't", W_CUE},    {"didn't", W_CUE},
    {"isn't", W_CUE},     {"aren't", W_CUE},    {"wasn't", W_CUE},     {"weren't", W_CUE},
    {"won't", W_CUE},     {"can't", W_CUE},     {"cannot", W_CUE},     {"couldn't", W_CUE},
    {"wouldn't", W_CUE},  {"havent", W_CUE},    {"hasnt", W_CUE},      {"dont", W_CUE},
    {"doesnt", W_CUE},    {"didnt", W_CUE},     {"isnt", W_CUE},       {"arent", W_CUE},
    {"cant", W_CUE},      {"yet", W_YET},       {"one", W_ONE},        {"to", W_TO},
    {"but", W_BREAK},     {"however", W_BREAK}, {"although", W_BREAK}, {"though", W_BREAK},
    {"whereas", W_BREAK},
};

/* ---- character classes ------------------------------------------------- */

static const uint8_t lower_tab[256] = {
#define R16(b)                                                                                               \
    (b), (b) + 1, (b) + 2, (b) + 3, (b) + 4, (b) + 5, (b) + 6, (b) + 7, (b) + 8, (b) + 9, (b) + 10,          \
        (b) + 11, (b) + 12, (b) + 13, (b) + 14, (b) + 15
    R16(0x00),
    R16(0x10),
    R16(0x20),
    R16(0x30),
    /* 0x40-0x5f: '@', 'A'-'Z' lowercased, then "[\]^_" */
    0x40,
    'a',
    'b',
    'c',
    'd',
    'e',
    'f',
    'g',
    'h',
    'i',
    'j',
    'k',
    'l',
    'm',
    'n',
    'o',
    'p',
    'q',
    'r',
    's',
    't',
    'u',
    'v',
    'w',
    'x',
    'y',
    'z',
    0x5b,
    0x5c,
    0x5d,
    0x5e,
    0x5f,
    R16(0x60),
    R16(0x70),
    R16(0x80),
    R16(0x90),
    R16(0xa0),
    R16(0xb0),
    R16(0xc0),
    R16(0xd0),
    R16(0xe0),
    R16(0xf0),
#undef R16
};

static inline bool ascii_word(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static inline bool ascii_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Decodes the code point that ends right before position i (i > 0); sets
 * *start to where it begins. A stray byte decodes as DS_UTF8_INVALID. */
static uint32_t utf8_decode_prev_slow(const uint8_t *t, size_t i, size_t *start);

static inline uint32_t utf8_decode_prev(const uint8_t *t, size_t i, size_t *start) {
    if (t[i - 1] < 0x80) {
        *start = i - 1;
        return t[i - 1];
    }
    return utf8_decode_prev_slow(t, i, start);
}

static uint32_t utf8_decode_prev_slow(const uint8_t *t, size_t i, size_t *start) {
    size_t s = i - 1;
    while (s > 0 && i - s < 4 && (t[s] & 0xc0) == 0x80) s--;
    size_t len;
    uint32_t cp = ds_utf8_decode(t + s, i - s, &len);
    if (cp == DS_UTF8_INVALID || s + len != i) {
        *start = i - 1;
        return DS_UTF8_INVALID;
    }
    *start = s;
    return cp;
}

static bool cp_is_word(uint32_t cp) {
    if (cp < 0x80) return ascii_word((uint8_t)cp);
    if (cp == DS_UTF8_INVALID) return false;
    if (cp >= 0x80 && cp <= 0xbf) return false;     /* C1 controls, NBSP, Latin-1 punctuation */
    if (cp == 0xd7 || cp == 0xf7) return false;     /* multiplication and division signs */
    if (cp >= 0x2000 && cp <= 0x206f) return false; /* general punctuation, spaces, quotes */
    if (cp >= 0x3000 && cp <= 0x303f) return false; /* CJK punctuation */
    if (cp == 0xfeff) return false;
    return true;
}

/* Whether the character at i (i < n) is a word character. */
static inline bool word_at(const uint8_t *t, size_t n, size_t i) {
    if (t[i] < 0x80) return ascii_word(t[i]);
    size_t len;
    return cp_is_word(ds_utf8_decode(t + i, n - i, &len));
}

/* ---- lexicon ------------------------------------------------------------ */

typedef struct {
    const char *text; /* normalized, NUL-terminated, in the lexicon's pool */
    uint16_t len;
    uint8_t element;
    uint8_t second; /* second byte as second_key() folds text, 0 for a 1-byte phrase */
    bool last_word; /* the last character is a word character */
    bool plural_ok; /* the last character is an ASCII letter: "s"/"es" may follow */
    bool disabled;  /* only while compiling */
} phrase_t;

/* Class words packed into 8 bytes, in an open-addressing table. */
#define WORD_SLOTS 128

struct ds_meddicc_lexicon {
    phrase_t *phrases; /* by first byte, then longest first, element, text */
    size_t n;
    uint32_t bucket[257]; /* phrases starting with byte b: [bucket[b], bucket[b + 1]) */
    /* Bit (b0 << 8 | b1) is set when some phrase can start with the bytes
     * b0 b1 (b1 as second_key() folds it): most word starts stop here. */
    uint64_t pair[65536 / 64];
    uint64_t word_key[WORD_SLOTS];
    uint8_t word_cls[WORD_SLOTS];
    uint8_t byte_cls[256];   /* BC_* class of each byte */
    uint8_t neg_cls[256];    /* NC_* class of each byte, for the negation check */
    uint8_t second_tab[256]; /* second_key() of each byte */
    char *pool;
};

/* Byte classes for reading words backwards in the negation check. */
enum {
    NC_SEP = 0, /* space and other punctuation */
    NC_WORD,    /* ASCII word byte */
    NC_APOS,    /* ASCII apostrophe */
    NC_HIGH,    /* >= 0x80: decode */
    NC_END,     /* '!', '?', ';', '\n': a sentence end */
    NC_DOT,     /* '.': a sentence end when followed by space or the end */
    NC_COMMA,
};

/* Byte classes for the scan loop. */
enum {
    BC_OTHER = 0,  /* ASCII non-word byte that starts no phrase */
    BC_WORD = 1,   /* ASCII word byte */
    BC_HIGH = 2,   /* >= 0x80: decode to classify */
    BC_STARTS = 3, /* ASCII non-word byte that starts some phrase */
};

/* Up to 8 bytes of a word, the first in the lowest byte. */
static uint64_t pack_word(const char *w) {
    uint64_t key = 0;
    for (size_t i = 0; w[i] && i < 8; i++) key |= (uint64_t)(uint8_t)w[i] << (8 * i);
    return key;
}

static inline size_t word_slot(uint64_t key) {
    return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 57) & (WORD_SLOTS - 1);
}

/* Folds the text byte after a phrase's first one the way the phrase's
 * second byte is compared: lowercase; whitespace and '-' match a phrase
 * space; 0xE2 may start U+2019, which matches an apostrophe. */
static inline uint8_t second_key(uint8_t c) {
    if (ascii_space(c) || c == '-') return ' ';
    if (c == 0xe2) return '\'';
    return lower_tab[c];
}

/* Normalizes a phrase into out (room for DS_MEDDICC_MAX_PHRASE + 1); returns
 * the length, 0 when empty, or -1 when too long. */
static int normalize_phrase(const char *in, char *out) {
    size_t n = 0;
    bool pending_space = false;
    const uint8_t *p = (const uint8_t *)in;
    while (*p) {
        uint8_t c = *p;
        if (ascii_space(c) || c == '-') {
            pending_space = n > 0;
            p++;
            continue;
        }
        if (pending_space) {
            if (n + 1 > DS_MEDDICC_MAX_PHRASE) return -1;
            out[n++] = ' ';
            pending_space = false;
        }
        if (c == 0xe2 && p[1] == 0x80 && p[2] == 0x99) { /* U+2019 */
            c = '\'';
            p += 2;
        }
        if (n + 1 > DS_MEDDICC_MAX_PHRASE) return -1;
        out[n++] = (char)lower_tab[c];
        p++;
    }
    out[n] = '\0';
    return (int)n;
}

/* Same element and phrase compare equal. */
static int phrase_key_cmp(const phrase_t *x, const phrase_t *y) {
    uint8_t fx = (uint8_t)x->text[0], fy = (uint8_t)y->text[0];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    if (x->element != y->element) return x->element < y->element ? -1 : 1;
    return strcmp(x->text, y->text);
}

static int phrase_cmp(const void *a, const void *b) { return phrase_key_cmp(a, b); }

int ds_meddicc_lexicon_new(const ds_meddicc_phrase_t *rows, size_t n, ds_meddicc_lexicon_t **out,
                           char *errstr, size_t errstr_size) {
    char norm[DS_MEDDICC_MAX_PHRASE + 1];
    size_t pool_size = 0;
    for (size_t i = 0; i < n; i++) {
        if (ds_meddicc_element_parse(rows[i].element) < 0) {
            snprintf(errstr, errstr_size, "lexicon row %zu: unknown MEDDICC element \"%s\"", i + 1,
                     rows[i].element ? rows[i].element : "(null)");
            return DS_EINVAL;
        }
        int len = rows[i].phrase ? normalize_phrase(rows[i].phrase, norm) : 0;
        if (len <= 0) {
            snprintf(errstr, errstr_size, "lexicon row %zu: %s phrase", i + 1,
                     len < 0 ? "too long a" : "empty");
            return DS_EINVAL;
        }
        pool_size += (size_t)len + 1;
    }

    ds_meddicc_lexicon_t *lex = ds_calloc(1, sizeof *lex);
    lex->phrases = ds_calloc(n, sizeof *lex->phrases);
    lex->pool = ds_malloc(pool_size);
    char *pp = lex->pool;
    for (size_t i = 0; i < n; i++) {
        int len = normalize_phrase(rows[i].phrase, norm);
        memcpy(pp, norm, (size_t)len + 1);
        phrase_t *ph = &lex->phrases[i];
        ph->text = pp;
        ph->len = (uint16_t)len;
        ph->element = (uint8_t)ds_meddicc_element_parse(rows[i].element);
        size_t last;
        (void)utf8_decode_prev((const uint8_t *)pp, (size_t)len, &last);
        ph->last_word = word_at((const uint8_t *)pp, (size_t)len, last);
        ph->disabled = rows[i].disabled;
        uint8_t lc = (uint8_t)pp[len - 1];
        ph->plural_ok = lc >= 'a' && lc <= 'z';
        pp += len + 1;
    }
    qsort(lex->phrases, n, sizeof *lex->phrases, phrase_cmp);
    /* Sorting puts the rows of one element and phrase next to each other:
     * keep one of each group, none when any row of the group is disabled. */
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        bool off = false;
        while (j < n && phrase_key_cmp(&lex->phrases[i], &lex->phrases[j]) == 0)
            off |= lex->phrases[j++].disabled;
        if (!off) lex->phrases[m++] = lex->phrases[i];
        i = j;
    }
    lex->n = m;
    size_t j = 0;
    for (int b = 0; b < 256; b++) {
        lex->bucket[b] = (uint32_t)j;
        while (j < m && (uint8_t)lex->phrases[j].text[0] == b) j++;
    }
    lex->bucket[256] = (uint32_t)m;
    for (size_t i = 0; i < m; i++) {
        phrase_t *ph = &lex->phrases[i];
        unsigned b0 = (uint8_t)ph->text[0];
        ph->second = ph->len > 1 ? second_key((uint8_t)ph->text[1]) : 0;
        if (ph->second) {
            unsigned bit = b0 << 8 | ph->second;
            lex->pair[bit >> 6] |= 1ULL << (bit & 63);
        } else {
            for (unsigned b1 = 0; b1 < 256; b1++) {
                unsigned bit = b0 << 8 | b1;
                lex->pair[bit >> 6] |= 1ULL << (bit & 63);
            }
        }
    }
    for (unsigned c = 0; c < 256; c++) {
        uint8_t nc = NC_SEP;
        if (c >= 0x80)
            nc = NC_HIGH;
        else if (ascii_word((uint8_t)c))
            nc = NC_WORD;
        else if (c == '\'')
            nc = NC_APOS;
        else if (c == '!' || c == '?' || c == ';' || c == '\n')
            nc = NC_END;
        else if (c == '.')
            nc = NC_DOT;
        else if (c == ',')
            nc = NC_COMMA;
        lex->neg_cls[c] = nc;
        lex->second_tab[c] = second_key((uint8_t)c);
        if (c >= 0x80)
            lex->byte_cls[c] = BC_HIGH;
        else if (ascii_word((uint8_t)c))
            lex->byte_cls[c] = BC_WORD;
        else
            lex->byte_cls[c] =
                lex->bucket[lower_tab[c]] != lex->bucket[lower_tab[c] + 1] ? BC_STARTS : BC_OTHER;
    }
    for (size_t i = 0; i < DS_ARRAY_SIZE(class_words); i++) {
        size_t slot = word_slot(pack_word(class_words[i].word));
        while (lex->word_key[slot]) slot = (slot + 1) & (WORD_SLOTS - 1);
        lex->word_key[slot] = pack_word(class_words[i].word);
        lex->word_cls[slot] = class_words[i].cls;
    }
    *out = lex;
    return DS_OK;
}

void ds_meddicc_lexicon_destroy(ds_meddicc_lexicon_t *lex) {
    if (!lex) return;
    free(lex->phrases);
    free(lex->pool);
    free(lex);
}

size_t ds_meddicc_lexicon_size(const ds_meddicc_lexicon_t *lex) { return lex->n; }

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static ds_meddicc_lexicon_t *default_lexicon; /* written once, then read-only */

static void default_init(void) {
    char err[256];
    if (ds_meddicc_lexicon_new(default_phrases, DS_ARRAY_SIZE(default_phrases), &default_lexicon, err,
                               sizeof err) != DS_OK)
        ds_panic("built-in MEDDICC lexicon is invalid: %s", err);
}

const ds_meddicc_lexicon_t *ds_meddicc_lexicon_default(void) {
    pthread_once(&default_once, default_init);
    return default_lexicon;
}

/* ---- scanning ----------------------------------------------------------- */

void ds_meddicc_result_init(ds_meddicc_result_t *res) { memset(res, 0, sizeof *res); }

/* Matches phrase ph at t[i..n); returns the end offset, or 0 for no match. */
static size_t match_phrase(const phrase_t *ph, const uint8_t *t, size_t n, size_t i) {
    size_t j = i;
    for (size_t k = 0; k < ph->len; k++) {
        uint8_t pc = (uint8_t)ph->text[k];
        if (pc == ' ') {
            size_t s = j;
            bool hyphen = false;
            while (j < n) {
                if (ascii_space(t[j])) {
                    j++;
                } else if (t[j] == '-' && !hyphen) {
                    hyphen = true;
                    j++;
                } else {
                    break;
                }
            }
            if (j == s) return 0;
        } else if (pc == '\'') {
            if (j < n && t[j] == '\'') {
                j++;
            } else if (j + 3 <= n && t[j] == 0xe2 && t[j + 1] == 0x80 && t[j + 2] == 0x99) {
                j += 3;
            } else {
                return 0;
            }
        } else {
            if (j >= n || lower_tab[t[j]] != pc) return 0;
            j++;
        }
    }
    return j;
}

/* Whether a '.' at q ends a sentence: only when followed by space or the
 * end of the text, so "2.5x" and "e.g" stay whole. */
static inline bool period_ends(const uint8_t *t, size_t n, size_t q) {
    return q + 1 >= n || ascii_space(t[q + 1]);
}

/* The first sentence end at or after a position, remembered between
 * matches: the scan moves forward, so one lookup serves every match up to
 * that end. */
typedef struct {
    size_t from, at; /* no sentence end in [from, at); at is one, or n */
    bool question;
} sentence_cache_t;

/* Whether the sentence holding a match that ends at e is a question. */
static bool in_question(const uint8_t *t, size_t n, size_t e, sentence_cache_t *sc) {
    if (e >= sc->from && e <= sc->at && sc->at != SIZE_MAX) return sc->question;
    size_t q = e;
    bool question = false;
    for (; q < n; q++) {
        uint8_t c = t[q];
        if (c == '?') {
            question = true;
            break;
        }
        if (c == '!' || c == ';' || c == '\n') break;
        if (c == '.' && period_ends(t, n, q)) break;
    }
    sc->from = e;
    sc->at = q;
    sc->question = question;
    return question;
}

static word_class_t classify(const ds_meddicc_lexicon_t *lex, uint64_t key) {
    size_t slot = word_slot(key);
    while (lex->word_key[slot]) {
        if (lex->word_key[slot] == key) return (word_class_t)lex->word_cls[slot];
        slot = (slot + 1) & (WORD_SLOTS - 1);
    }
    return W_NONE;
}

/* Whether a negation cue cancels a match that starts at s (see meddicc.h).
 * Reads back at most DS_MEDDICC_NEGATION_WINDOW + 2 words. */
static bool negated(const ds_meddicc_lexicon_t *lex, const uint8_t *t, size_t n, size_t s) {
    const uint8_t *nc = lex->neg_cls;
    word_class_t prev_cls = W_NONE; /* the word read before (nearer the phrase) */
    bool prev_comma = false;        /* a comma right after that word */
    size_t p = s;
    for (int k = 0; k < DS_MEDDICC_NEGATION_WINDOW + 2; k++) {
        /* Skip separators backwards, stopping at a sentence end. */
        bool comma = false;
        for (;;) {
            if (p == 0) return false;
            uint8_t cl = nc[t[p - 1]];
            if (cl == NC_WORD || cl == NC_APOS) break;
            if (cl == NC_HIGH) {
                size_t cs;
                uint32_t cp = utf8_decode_prev(t, p, &cs);
                if (cp == 0x2019 || cp_is_word(cp)) break;
                p = cs;
                continue;
            }
            if (cl == NC_END) return false;
            if (cl == NC_DOT && period_ends(t, n, p - 1)) return false;
            if (cl == NC_COMMA) comma = true;
            p--;
        }
        /* Read the word that ends at p backwards; its first 8 bytes are
         * packed with the first byte lowest, like pack_word(). */
        uint64_t key = 0;
        size_t len = 0;
        bool ascii = true;
        while (p > 0) {
            uint8_t c = t[p - 1], ch;
            uint8_t cl = nc[c];
            if (cl == NC_WORD) {
                ch = lower_tab[c];
                p--;
            } else if (cl == NC_APOS) {
                ch = '\'';
                p--;
            } else if (cl == NC_HIGH) {
                size_t cs;
                uint32_t cp = utf8_decode_prev(t, p, &cs);
                if (cp == 0x2019) {
                    ch = '\'';
                } else if (cp_is_word(cp)) {
                    ch = 0;
                    ascii = false; /* non-ASCII words are never cues */
                } else {
                    break;
                }
                p = cs;
            } else {
                break;
            }
            key = key << 8 | ch;
            len++;
        }
        word_class_t cls = W_NONE;
        if (ascii && len <= 8) {
            /* Quotes around a word are not part of it: 'no' is "no". */
            while (key && (key & 0xff) == '\'') key >>= 8;
            for (int sh = 56; sh >= 0; sh -= 8) {
                uint64_t b = key >> sh & 0xff;
                if (!b) continue;
                if (b != '\'') break;
                key &= ~(0xffULL << sh);
            }
            if (key) cls = classify(lex, key);
        }
        if (cls == W_BREAK) return false;
        if (k <= DS_MEDDICC_NEGATION_WINDOW && !comma && (cls == W_CUE || cls == W_NO)) return true;
        /* Two-word cues: this word first, the one read before second. */
        if (k >= 1 && k - 1 <= DS_MEDDICC_NEGATION_WINDOW && !comma && !prev_comma &&
            ((cls == W_NO && prev_cls == W_ONE) || (cls == W_YET && prev_cls == W_TO)))
            return true;
        prev_cls = cls;
        prev_comma = comma;
    }
    return false;
}

static void add_evidence(ds_meddicc_result_t *res, int el, const char *tid, size_t start, size_t end,
                         const char *phrase) {
    res->present[el] = true;
    res->n_matches[el]++;
    if (res->n_evidence[el] < DS_MEDDICC_MAX_EVIDENCE) {
        ds_meddicc_evidence_t *ev = &res->evidence[el][res->n_evidence[el]++];
        ev->transcript_id = tid;
        ev->start = (uint32_t)start;
        ev->end = (uint32_t)end;
        ev->phrase = phrase;
    }
}

typedef struct {
    const ds_meddicc_lexicon_t *lex;
    const uint8_t *t;
    size_t n;
    const char *tid;
    size_t last_end[DS_MEDDICC_COUNT]; /* end of the last counted match per element */
    sentence_cache_t sc;
    ds_meddicc_result_t *res;
} scan_t;

/* Whether some phrase may start with the two bytes at i. */
static inline bool pair_may_match(const ds_meddicc_lexicon_t *lex, const uint8_t *t, size_t n, size_t i) {
    unsigned b1 = i + 1 < n ? lex->second_tab[t[i + 1]] : 0;
    unsigned bit = (unsigned)lower_tab[t[i]] << 8 | b1;
    return lex->pair[bit >> 6] & (1ULL << (bit & 63));
}

/* Tries every phrase that may start at i, where a phrase may start (a word
 * start, or a non-word character) and pair_may_match said yes. */
static void try_at(scan_t *sc, size_t i) {
    const ds_meddicc_lexicon_t *lex = sc->lex;
    const uint8_t *t = sc->t;
    uint8_t b0 = lower_tab[t[i]];
    uint8_t b1 = i + 1 < sc->n ? lex->second_tab[t[i + 1]] : 0;
    bool done[DS_MEDDICC_COUNT] = {false};
    int neg = -1; /* computed on the first match at this position */
    for (uint32_t k = lex->bucket[b0]; k < lex->bucket[b0 + 1]; k++) {
        const phrase_t *ph = &lex->phrases[k];
        if (ph->second && ph->second != b1) continue;
        if (done[ph->element] || i < sc->last_end[ph->element]) continue;
        size_t e = match_phrase(ph, t, sc->n, i);
        if (e == 0) continue;
        if (ph->last_word && e < sc->n && word_at(t, sc->n, e)) {
            /* Only a plural ending may follow: "competitors", "KPIs". */
            size_t e2 = 0;
            if (ph->plural_ok && lower_tab[t[e]] == 's')
                e2 = e + 1;
            else if (ph->plural_ok && lower_tab[t[e]] == 'e' && e + 1 < sc->n && lower_tab[t[e + 1]] == 's')
                e2 = e + 2;
            if (e2 == 0 || (e2 < sc->n && word_at(t, sc->n, e2))) continue;
            e = e2;
        }
        done[ph->element] = true;
        if (neg < 0) neg = negated(lex, t, sc->n, i);
        if (neg || in_question(t, sc->n, e, &sc->sc)) continue;
        sc->last_end[ph->element] = e;
        add_evidence(sc->res, ph->element, sc->tid, i, e, ph->text);
    }
}

void ds_meddicc_scan(const ds_meddicc_lexicon_t *lex, const char *transcript_id, const char *text, size_t len,
                     ds_meddicc_result_t *res) {
    if (!text) len = 0;
    if (len > UINT32_MAX) len = UINT32_MAX;
    const uint8_t *t = (const uint8_t *)text;
    const uint8_t *cls = lex->byte_cls;
    scan_t sc = {.lex = lex, .t = t, .n = len, .tid = transcript_id, .res = res, .sc = {0, SIZE_MAX, false}};
    size_t i = 0;
    while (i < len) {
        uint8_t k = cls[t[i]];
        size_t clen = 1;
        if (k == BC_OTHER) {
            i++;
            continue;
        }
        if (k == BC_STARTS) {
            /* A phrase may start with a non-word character, boundary-free. */
            if (pair_may_match(lex, t, len, i)) try_at(&sc, i);
            i++;
            continue;
        }
        if (k == BC_HIGH && !cp_is_word(ds_utf8_decode(t + i, len - i, &clen))) {
            if (lex->bucket[t[i]] != lex->bucket[t[i] + 1] && pair_may_match(lex, t, len, i)) try_at(&sc, i);
            i += clen;
            continue;
        }
        /* A word start: try it, then skip the rest of the word, where no
         * phrase that starts with a word character can begin. */
        if (pair_may_match(lex, t, len, i)) try_at(&sc, i);
        i += clen;
        for (;;) {
            while (i < len && cls[t[i]] == BC_WORD) i++;
            if (i >= len || cls[t[i]] != BC_HIGH || !cp_is_word(ds_utf8_decode(t + i, len - i, &clen))) break;
            i += clen;
        }
    }
    res->coverage = 0;
    for (int el = 0; el < DS_MEDDICC_COUNT; el++) res->coverage += res->present[el];
}

/* ---- JSON ----------------------------------------------------------------- */

char *ds_meddicc_result_to_json(const ds_meddicc_result_t *res) {
    ds_sb_t sb = {0};
    ds_sb_puts(&sb, "{");
    for (int el = 0; el < DS_MEDDICC_COUNT; el++) {
        if (el) ds_sb_puts(&sb, ",");
        ds_sb_json_str(&sb, element_names[el]);
        ds_sb_puts(&sb,
                   res->present[el] ? ":{\"present\":true,\"matches\":" : ":{\"present\":false,\"matches\":");
        ds_sb_i64(&sb, res->n_matches[el]);
        ds_sb_puts(&sb, ",\"evidence\":[");
        for (uint32_t k = 0; k < res->n_evidence[el] && k < DS_MEDDICC_MAX_EVIDENCE; k++) {
            const ds_meddicc_evidence_t *ev = &res->evidence[el][k];
            if (k) ds_sb_puts(&sb, ",");
            ds_sb_puts(&sb, "{\"transcript_id\":");
            if (ev->transcript_id)
                ds_sb_json_str(&sb, ev->transcript_id);
            else
                ds_sb_puts(&sb, "null");
            ds_sb_puts(&sb, ",\"start\":");
            ds_sb_i64(&sb, ev->start);
            ds_sb_puts(&sb, ",\"end\":");
            ds_sb_i64(&sb, ev->end);
            ds_sb_puts(&sb, ",\"phrase\":");
            ds_sb_json_str(&sb, ev->phrase ? ev->phrase : "");
            ds_sb_puts(&sb, "}");
        }
        ds_sb_puts(&sb, "]}");
    }
    ds_sb_puts(&sb, "}");
    return ds_sb_take(&sb);
}
