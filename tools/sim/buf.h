/* Growable byte buffers with the fast formatters the simulator needs: CSV
 * fields (RFC 4180 quoting), JSON strings, integers, fixed-point numbers and
 * ISO 8601 UTC times. Formatting by hand rather than snprintf keeps a
 * million-deal run I/O bound. */
#ifndef SIM_BUF_H
#define SIM_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len;
    size_t cap;
} buf_t;

/* The buffer owns its memory: buf_init, then buf_close. */
void buf_init(buf_t *b, size_t cap);
void buf_close(buf_t *b);
void buf__grow(buf_t *b, size_t need);

static inline void buf_reserve(buf_t *b, size_t n)
{
    if (b->len + n > b->cap)
        buf__grow(b, b->len + n);
}

static inline void buf_put(buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static inline void buf_puts(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static inline void buf_putc(buf_t *b, char c)
{
    buf_reserve(b, 1);
    b->p[b->len++] = c;
}

void buf_put_i64(buf_t *b, int64_t v);
/* v rounded to `decimals` (0..9) places, trailing zeros kept. */
void buf_put_fixed(buf_t *b, double v, int decimals);
/* "2026-11-01T09:30:00Z" for seconds since the epoch. */
void buf_put_time(buf_t *b, int64_t t);
/* "2026-11-01" for the UTC day containing t. */
void buf_put_date(buf_t *b, int64_t t);
/* One CSV field: quoted (with doubled quotes) only when it holds a comma,
 * quote, CR or LF. */
void buf_put_csv(buf_t *b, const char *s, size_t n);
/* A JSON string literal including the quotes. */
void buf_put_json_str(buf_t *b, const char *s, size_t n);

/* Calendar helpers (proleptic Gregorian, UTC). */
int64_t days_from_civil(int y, unsigned m, unsigned d);
void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d);
/* Parses "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SSZ" (fraction ignored); returns
 * 0 and sets *t (seconds since the epoch), or -1. */
int parse_utc(const char *s, int64_t *t);

#endif
