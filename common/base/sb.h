/* The string builder: a growing, always NUL-terminated buffer; {0} is empty.
 * The caller frees p (or takes the string with ds_sb_take). The appenders
 * called per byte or per field are inline, so a generator that writes
 * millions of fields pays for a call only when the buffer grows. */
#ifndef DEALSCORE_SB_H
#define DEALSCORE_SB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len, cap;
} ds_sb_t;

/* Grows b to hold n more bytes and the NUL: 4 kB at first, then doubling. */
void ds__sb_grow(ds_sb_t *b, size_t n);

/* Room for n more bytes and the NUL: up to n bytes may then be written at
 * b->p + b->len by hand (len moved past them and the NUL put after). */
static inline void ds_sb_reserve(ds_sb_t *b, size_t n) {
    if (b->len + n + 1 > b->cap) ds__sb_grow(b, n);
}

static inline void ds_sb_put(ds_sb_t *b, const char *s, size_t n) {
    ds_sb_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void ds_sb_puts(ds_sb_t *b, const char *s) { ds_sb_put(b, s, strlen(s)); }

static inline void ds_sb_putc(ds_sb_t *b, char c) {
    ds_sb_reserve(b, 1);
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

/* Empties b, keeping its memory. */
static inline void ds_sb_reset(ds_sb_t *b) {
    b->len = 0;
    if (b->p) b->p[0] = '\0';
}

/* printf at the end of b. */
void ds_sb_printf(ds_sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* v in decimal. */
void ds_sb_i64(ds_sb_t *b, int64_t v);
/* s as a JSON string literal: quotes; '"' and '\\' escaped with a
 * backslash; other control characters as \u00XX; valid UTF-8 as it is and
 * each byte of invalid UTF-8 as U+FFFD, so the literal is always valid JSON. */
void ds_sb_json_str(ds_sb_t *b, const char *s);
/* The same for the n bytes at s (NULs escaped too); with
 * DS_SB_JSON_SHORT_ESCAPES, \n, \r and \t as two characters. */
#define DS_SB_JSON_SHORT_ESCAPES 1u
void ds_sb_json_strn(ds_sb_t *b, const char *s, size_t n, unsigned flags);
/* b's string, its memory cut to its length ("" for an empty b), for the
 * caller to free; b is empty after. The buffer starts at 4 kB, so a string
 * kept for long (a batch holds one per deal) is taken, not b.p. */
char *ds_sb_take(ds_sb_t *b);
/* Frees b's memory; b is empty after. */
void ds_sb_free(ds_sb_t *b);

#endif
