/* MEDDICC detection: a compiled phrase lexicon scanned over transcript text
 * with word boundaries, negation cues and question suppression (the rules
 * are in meddicc.h). */
#include "dealscore/meddicc.h"
#include "dealscore/common.h"

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
    {"economic_buyer", "cfo", false},
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
};

const ds_meddicc_phrase_t *ds_meddicc_default_phrases(size_t *n) {
    *n = DS_ARRAY_SIZE(default_phrases);
    return default_phrases;
}

const char DS_MEDDICC_NEGATION_CUES[] =
    "no, not, never, without, lack, lacks, lacking, nobody, none, no one, yet to, have not, "
    "has not, haven't, hasn't, hadn't, don't, doesn't, didn't, isn't, aren't, wasn't, weren't, "
    "won't, can't, cannot, couldn't, wouldn't, havent, hasnt, dont, doesnt, didnt, isnt, arent, "
    "cant";

/* Single-word cues, compared against a lowercased word with U+2019 folded to
 * an ASCII apostrophe. "have not" and "has not" are covered by "not". */
static const char *const cue_words[] = {
    "no",      "not",    "never",  "without", "lack",     "lacks",    "lacking", "nobody",
    "none",    "haven't", "hasn't", "hadn't", "don't",    "doesn't",  "didn't",  "isn't",
    "aren't",  "wasn't", "weren't", "won't",  "can't",    "cannot",   "couldn't", "wouldn't",
    "havent",  "hasnt",  "dont",   "doesnt",  "didnt",    "isnt",     "arent",   "cant",
};
static const char *const cue_pairs[][2] = {{"no", "one"}, {"yet", "to"}};
static const char *const breaker_words[] = {"but", "however", "although", "though", "whereas"};

/* ---- character classes ------------------------------------------------- */

static const uint8_t lower_tab[256] = {
#define R16(b)                                                                               \
    (b), (b) + 1, (b) + 2, (b) + 3, (b) + 4, (b) + 5, (b) + 6, (b) + 7, (b) + 8, (b) + 9, \
        (b) + 10, (b) + 11, (b) + 12, (b) + 13, (b) + 14, (b) + 15
    R16(0x00), R16(0x10), R16(0x20), R16(0x30),
    /* 0x40-0x5f: '@', 'A'-'Z' lowercased, then "[\]^_" */
    0x40, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 0x5b, 0x5c, 0x5d, 0x5e, 0x5f,
    R16(0x60), R16(0x70), R16(0x80), R16(0x90), R16(0xa0), R16(0xb0), R16(0xc0), R16(0xd0),
    R16(0xe0), R16(0xf0),
#undef R16
};

static inline bool ascii_word(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static inline bool ascii_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

#define CP_INVALID 0xFFFFFFFFu

/* Decodes one UTF-8 code point at s (n > 0 bytes available); sets *len.
 * Invalid or truncated sequences give CP_INVALID with length 1. */
static uint32_t utf8_decode(const uint8_t *s, size_t n, size_t *len) {
    uint8_t c = s[0];
    uint32_t cp;
    size_t need;
    if (c < 0x80) {
        *len = 1;
        return c;
    } else if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        cp = c & 0x07;
    } else {
        *len = 1;
        return CP_INVALID;
    }
    if (n < need) {
        *len = 1;
        return CP_INVALID;
    }
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len = 1;
            return CP_INVALID;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        *len = 1;
        return CP_INVALID;
    }
    *len = need;
    return cp;
}

/* Decodes the code point that ends right before position i (i > 0); sets
 * *start to where it begins. A stray byte decodes as CP_INVALID. */
static uint32_t utf8_decode_prev(const uint8_t *t, size_t i, size_t *start) {
    if (t[i - 1] < 0x80) {
        *start = i - 1;
        return t[i - 1];
    }
    size_t s = i - 1;
    while (s > 0 && i - s < 4 && (t[s] & 0xc0) == 0x80) s--;
    size_t len;
    uint32_t cp = utf8_decode(t + s, i - s, &len);
    if (cp == CP_INVALID || s + len != i) {
        *start = i - 1;
        return CP_INVALID;
    }
    *start = s;
    return cp;
}

static bool cp_is_word(uint32_t cp) {
    if (cp < 0x80) return ascii_word((uint8_t)cp);
    if (cp == CP_INVALID) return false;
    if (cp >= 0x80 && cp <= 0xbf) return false; /* C1 controls, NBSP, Latin-1 punctuation */
    if (cp == 0xd7 || cp == 0xf7) return false; /* multiplication and division signs */
    if (cp >= 0x2000 && cp <= 0x206f) return false; /* general punctuation, spaces, quotes */
    if (cp >= 0x3000 && cp <= 0x303f) return false; /* CJK punctuation */
    if (cp == 0xfeff) return false;
    return true;
}

/* Whether the character at i (i < n) is a word character. */
static inline bool word_at(const uint8_t *t, size_t n, size_t i) {
    if (t[i] < 0x80) return ascii_word(t[i]);
    size_t len;
    return cp_is_word(utf8_decode(t + i, n - i, &len));
}

/* ---- lexicon ------------------------------------------------------------ */

typedef struct {
    const char *text; /* normalized, NUL-terminated, in the lexicon's pool */
    uint16_t len;
    uint8_t element;
    bool last_word; /* the last character is a word character */
    bool disabled;  /* only while compiling */
} phrase_t;

struct ds_meddicc_lexicon {
    phrase_t *phrases; /* by first byte, then longest first, element, text */
    size_t n;
    uint32_t bucket[257]; /* phrases starting with byte b: [bucket[b], bucket[b + 1]) */
    char *pool;
};

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

static int phrase_cmp(const void *a, const void *b) {
    return phrase_key_cmp(a, b);
}

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
    *out = lex;
    return DS_OK;
}

void ds_meddicc_lexicon_destroy(ds_meddicc_lexicon_t *lex) {
    if (!lex) return;
    free(lex->phrases);
    free(lex->pool);
    free(lex);
}

size_t ds_meddicc_lexicon_size(const ds_meddicc_lexicon_t *lex) {
    return lex->n;
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static ds_meddicc_lexicon_t *default_lexicon; /* written once, then read-only */

static void default_init(void) {
    char err[256];
    if (ds_meddicc_lexicon_new(default_phrases, DS_ARRAY_SIZE(default_phrases), &default_lexicon,
                               err, sizeof err) != DS_OK)
        ds_panic("built-in MEDDICC lexicon is invalid: %s", err);
}

const ds_meddicc_lexicon_t *ds_meddicc_lexicon_default(void) {
    pthread_once(&default_once, default_init);
    return default_lexicon;
}

/* ---- scanning ----------------------------------------------------------- */

void ds_meddicc_result_init(ds_meddicc_result_t *res) {
    memset(res, 0, sizeof *res);
}

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

/* Whether the sentence holding a match that ends at e is a question. */
static bool in_question(const uint8_t *t, size_t n, size_t e) {
    for (size_t q = e; q < n; q++) {
        uint8_t c = t[q];
        if (c == '?') return true;
        if (c == '!' || c == ';' || c == '\n') return false;
        if (c == '.' && period_ends(t, n, q)) return false;
    }
    return false;
}

static bool word_in(const char *w, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(w, list[i]) == 0) return true;
    return false;
}

#define CUE_WORD_MAX 16

/* Whether a negation cue cancels a match that starts at s (see meddicc.h). */
static bool negated(const uint8_t *t, size_t n, size_t s) {
    char words[DS_MEDDICC_NEGATION_WINDOW + 2][CUE_WORD_MAX];
    bool comma_after[DS_MEDDICC_NEGATION_WINDOW + 2];
    size_t p = s;
    for (int k = 0; k < DS_MEDDICC_NEGATION_WINDOW + 2; k++) {
        /* Skip separators backwards, stopping at a sentence end. */
        bool comma = false;
        for (;;) {
            if (p == 0) return false;
            size_t cs;
            uint32_t cp = utf8_decode_prev(t, p, &cs);
            if (cp == '\'' || cp == 0x2019 || cp_is_word(cp)) break;
            if (cp == '\n' || cp == '!' || cp == '?' || cp == ';') return false;
            if (cp == '.' && period_ends(t, n, cs)) return false;
            if (cp == ',') comma = true;
            p = cs;
        }
        /* Read the word that ends at p, apostrophes included. */
        size_t len = 0;
        bool too_long = false;
        char rev[CUE_WORD_MAX];
        while (p > 0) {
            size_t cs;
            uint32_t cp = utf8_decode_prev(t, p, &cs);
            if (cp == '\'' || cp == 0x2019) {
                if (len < CUE_WORD_MAX - 1) rev[len++] = '\'';
                else too_long = true;
            } else if (cp_is_word(cp)) {
                if (cp < 0x80 && len < CUE_WORD_MAX - 1) rev[len++] = (char)lower_tab[cp];
                else too_long = true; /* non-ASCII words are never cues */
            } else {
                break;
            }
            p = cs;
        }
        char *w = words[k];
        size_t wl = 0;
        if (!too_long) {
            /* Quotes around a word are not part of it: 'no' is "no". */
            size_t lo = 0, hi = len;
            while (lo < hi && rev[lo] == '\'') lo++;
            while (hi > lo && rev[hi - 1] == '\'') hi--;
            for (size_t i = hi; i > lo; i--) w[wl++] = rev[i - 1];
        }
        w[wl] = '\0';
        comma_after[k] = comma;
        if (word_in(w, breaker_words, DS_ARRAY_SIZE(breaker_words))) return false;
        if (k <= DS_MEDDICC_NEGATION_WINDOW && !comma &&
            word_in(w, cue_words, DS_ARRAY_SIZE(cue_words)))
            return true;
        /* Two-word cue: this word is the first, the previous one read (k-1,
         * nearer the phrase) the second. */
        if (k >= 1 && k - 1 <= DS_MEDDICC_NEGATION_WINDOW && !comma && !comma_after[k - 1]) {
            for (size_t i = 0; i < DS_ARRAY_SIZE(cue_pairs); i++)
                if (strcmp(w, cue_pairs[i][0]) == 0 && strcmp(words[k - 1], cue_pairs[i][1]) == 0)
                    return true;
        }
    }
    return false;
}

static void add_evidence(ds_meddicc_result_t *res, int el, const char *tid, size_t start,
                         size_t end, const char *phrase) {
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

void ds_meddicc_scan(const ds_meddicc_lexicon_t *lex, const char *transcript_id, const char *text,
                     size_t len, ds_meddicc_result_t *res) {
    if (!text) len = 0;
    if (len > UINT32_MAX) len = UINT32_MAX;
    const uint8_t *t = (const uint8_t *)text;
    size_t last_end[DS_MEDDICC_COUNT] = {0}; /* end of the last counted match per element */
    bool prev_word = false;
    size_t i = 0;
    while (i < len) {
        uint8_t c = t[i];
        size_t clen = 1;
        bool w;
        if (c < 0x80) w = ascii_word(c);
        else w = cp_is_word(utf8_decode(t + i, len - i, &clen));
        uint32_t b0 = lex->bucket[lower_tab[c]], b1 = lex->bucket[lower_tab[c] + 1];
        /* Inside a word no phrase can start: a phrase that begins with a
         * word character needs a boundary before it. */
        if (b0 != b1 && !(w && prev_word)) {
            bool done[DS_MEDDICC_COUNT] = {false};
            int neg = -1; /* computed on the first match at this position */
            for (uint32_t k = b0; k < b1; k++) {
                const phrase_t *ph = &lex->phrases[k];
                if (done[ph->element] || i < last_end[ph->element]) continue;
                size_t e = match_phrase(ph, t, len, i);
                if (e == 0) continue;
                if (ph->last_word && e < len && word_at(t, len, e)) continue;
                done[ph->element] = true;
                if (neg < 0) neg = negated(t, len, i);
                if (neg || in_question(t, len, e)) continue;
                last_end[ph->element] = e;
                add_evidence(res, ph->element, transcript_id, i, e, ph->text);
            }
        }
        prev_word = w;
        i += clen;
    }
    res->coverage = 0;
    for (int el = 0; el < DS_MEDDICC_COUNT; el++) res->coverage += res->present[el];
}

/* ---- JSON ----------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} sbuf_t;

static void sb_reserve(sbuf_t *sb, size_t extra) {
    if (sb->len + extra + 1 <= sb->cap) return;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + extra + 1) cap *= 2;
    sb->p = ds_realloc(sb->p, cap);
    sb->cap = cap;
}

static void sb_put(sbuf_t *sb, const char *s, size_t n) {
    sb_reserve(sb, n);
    memcpy(sb->p + sb->len, s, n);
    sb->len += n;
    sb->p[sb->len] = '\0';
}

static void sb_puts(sbuf_t *sb, const char *s) {
    sb_put(sb, s, strlen(s));
}

static void sb_u64(sbuf_t *sb, uint64_t v) {
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    sb_put(sb, buf, (size_t)n);
}

/* A JSON string; invalid UTF-8 becomes U+FFFD, control characters \u00XX. */
static void sb_json_str(sbuf_t *sb, const char *s) {
    static const char hex[] = "0123456789abcdef";
    sb_put(sb, "\"", 1);
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_put(sb, esc, 2);
            i++;
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sb_put(sb, esc, 6);
            i++;
        } else if (c < 0x80) {
            sb_put(sb, (const char *)p + i, 1);
            i++;
        } else {
            size_t len;
            if (utf8_decode(p + i, n - i, &len) == CP_INVALID) {
                sb_put(sb, "\xef\xbf\xbd", 3);
                i++;
            } else {
                sb_put(sb, (const char *)p + i, len);
                i += len;
            }
        }
    }
    sb_put(sb, "\"", 1);
}

char *ds_meddicc_result_to_json(const ds_meddicc_result_t *res) {
    sbuf_t sb = {0};
    sb_reserve(&sb, 512);
    sb_puts(&sb, "{");
    for (int el = 0; el < DS_MEDDICC_COUNT; el++) {
        if (el) sb_puts(&sb, ",");
        sb_json_str(&sb, element_names[el]);
        sb_puts(&sb, res->present[el] ? ":{\"present\":true,\"matches\":"
                                      : ":{\"present\":false,\"matches\":");
        sb_u64(&sb, res->n_matches[el]);
        sb_puts(&sb, ",\"evidence\":[");
        for (uint32_t k = 0; k < res->n_evidence[el] && k < DS_MEDDICC_MAX_EVIDENCE; k++) {
            const ds_meddicc_evidence_t *ev = &res->evidence[el][k];
            if (k) sb_puts(&sb, ",");
            sb_puts(&sb, "{\"transcript_id\":");
            if (ev->transcript_id) sb_json_str(&sb, ev->transcript_id);
            else sb_puts(&sb, "null");
            sb_puts(&sb, ",\"start\":");
            sb_u64(&sb, ev->start);
            sb_puts(&sb, ",\"end\":");
            sb_u64(&sb, ev->end);
            sb_puts(&sb, ",\"phrase\":");
            sb_json_str(&sb, ev->phrase ? ev->phrase : "");
            sb_puts(&sb, "}");
        }
        sb_puts(&sb, "]}");
    }
    sb_puts(&sb, "}");
    return sb.p;
}
