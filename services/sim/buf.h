/* Growable byte buffers with the fast formatters the simulator needs: CSV
 * fields (RFC 4180 quoting), JSON strings, integers, fixed-point numbers and
 * ISO 8601 UTC times. Formatting by hand rather than snprintf keeps a
 * million-deal run I/O bound. */
#ifndef DS_SIM_BUF_H
#define DS_SIM_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len;
    size_t cap;
} ds_buf_t;

/* The buffer owns its memory: ds_buf_init, then ds_buf_close. */
void ds_buf_init(ds_buf_t *b, size_t cap);
void ds_buf_close(ds_buf_t *b);
void ds__buf_grow(ds_buf_t *b, size_t need);

static inline void ds_buf_reserve(ds_buf_t *b, size_t n)
{
    if (b->len + n > b->cap)
        ds__buf_grow(b, b->len + n);
}

static inline void ds_buf_put(ds_buf_t *b, const char *s, size_t n)
{
    ds_buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static inline void ds_buf_puts(ds_buf_t *b, const char *s)
{
    ds_buf_put(b, s, strlen(s));
}

static inline void ds_buf_putc(ds_buf_t *b, char c)
{
    ds_buf_reserve(b, 1);
    b->p[b->len++] = c;
}

void ds_buf_put_i64(ds_buf_t *b, int64_t v);
/* v rounded to `decimals` (0..9) places, trailing zeros kept. */
void ds_buf_put_fixed(ds_buf_t *b, double v, int decimals);
/* "2026-11-01T09:30:00Z" for seconds since the epoch. */
void ds_buf_put_time(ds_buf_t *b, int64_t t);
/* "2026-11-01" for the UTC day containing t. */
void ds_buf_put_date(ds_buf_t *b, int64_t t);
/* One CSV field: quoted (with doubled quotes) only when it holds a comma,
 * quote, CR or LF. */
void ds_buf_put_csv(ds_buf_t *b, const char *s, size_t n);
/* A JSON string literal including the quotes. */
void ds_buf_put_json_str(ds_buf_t *b, const char *s, size_t n);

/* Calendar helpers (proleptic Gregorian, UTC). */
int64_t ds_days_from_civil(int y, unsigned m, unsigned d);
void ds_civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d);
/* Parses "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SSZ" (fraction ignored); returns
 * 0 and sets *t (seconds since the epoch), or -1. */
int ds_parse_utc(const char *s, int64_t *t);

#endif
