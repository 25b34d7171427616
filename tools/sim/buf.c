/* Buffers and formatters; see buf.h. */
#include "buf.h"

#include <math.h>

#include "base/common.h"

void buf_put_fixed(ds_sb_t *b, double v, int decimals) {
    static const double pow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    if (decimals < 0) decimals = 0;
    if (decimals > 9) decimals = 9;
    if (v < 0) {
        ds_sb_putc(b, '-');
        v = -v;
    }
    uint64_t scaled = (uint64_t)llround(v * pow10[decimals]);
    uint64_t ip = scaled / (uint64_t)pow10[decimals];
    uint64_t fp = scaled % (uint64_t)pow10[decimals];
    ds_sb_i64(b, (int64_t)ip);
    if (decimals) {
        char tmp[10];
        for (int i = decimals - 1; i >= 0; i--) {
            tmp[i] = (char)('0' + fp % 10);
            fp /= 10;
        }
        ds_sb_putc(b, '.');
        ds_sb_put(b, tmp, (size_t)decimals);
    }
}

static void put2(char *p, unsigned v) {
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static void fmt_date(char *p, int64_t t) {
    int64_t y;
    unsigned m, d;
    ds_civil_from_days(floordiv(t, 86400), &y, &m, &d);
    p[0] = (char)('0' + (y / 1000) % 10);
    p[1] = (char)('0' + (y / 100) % 10);
    p[2] = (char)('0' + (y / 10) % 10);
    p[3] = (char)('0' + y % 10);
    p[4] = '-';
    put2(p + 5, m);
    p[7] = '-';
    put2(p + 8, d);
}

void buf_put_date(ds_sb_t *b, int64_t t) {
    ds_sb_reserve(b, 10);
    fmt_date(b->p + b->len, t);
    b->len += 10;
    b->p[b->len] = '\0';
}

void buf_put_time(ds_sb_t *b, int64_t t) {
    ds_sb_reserve(b, 20);
    char *p = b->p + b->len;
    fmt_date(p, t);
    int64_t sod = t - floordiv(t, 86400) * 86400;
    p[10] = 'T';
    put2(p + 11, (unsigned)(sod / 3600));
    p[13] = ':';
    put2(p + 14, (unsigned)(sod / 60 % 60));
    p[16] = ':';
    put2(p + 17, (unsigned)(sod % 60));
    p[19] = 'Z';
    p[20] = '\0';
    b->len += 20;
}

void buf_put_csv(ds_sb_t *b, const char *s, size_t n) {
    int quote = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* All four specials are below '-': one compare rejects most bytes. */
        if (c < '-' && (c == ',' || c == '"' || c == '\n' || c == '\r')) {
            quote = 1;
            break;
        }
    }
    if (!quote) {
        ds_sb_put(b, s, n);
        return;
    }
    ds_sb_reserve(b, n * 2 + 2);
    char *p = b->p + b->len;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') *p++ = '"';
        *p++ = s[i];
    }
    *p++ = '"';
    *p = '\0';
    b->len = (size_t)(p - b->p);
}
