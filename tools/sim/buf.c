/* Buffers and formatters; see buf.h. */
#include "buf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void buf_init(buf_t *b, size_t cap)
{
    b->p = malloc(cap ? cap : 64);
    if (!b->p)
        abort();
    b->len = 0;
    b->cap = cap ? cap : 64;
}

void buf_close(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void buf__grow(buf_t *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        abort(); /* out of memory: nothing sensible to do in a generator */
    b->p = p;
    b->cap = cap;
}

void buf_put_i64(buf_t *b, int64_t v)
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    buf_reserve(b, (size_t)n + 1);
    if (v < 0)
        b->p[b->len++] = '-';
    while (n)
        b->p[b->len++] = tmp[--n];
}

void buf_put_fixed(buf_t *b, double v, int decimals)
{
    static const double pow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    if (decimals < 0)
        decimals = 0;
    if (decimals > 9)
        decimals = 9;
    if (v < 0) {
        buf_putc(b, '-');
        v = -v;
    }
    uint64_t scaled = (uint64_t)llround(v * pow10[decimals]);
    uint64_t ip = scaled / (uint64_t)pow10[decimals];
    uint64_t fp = scaled % (uint64_t)pow10[decimals];
    buf_put_i64(b, (int64_t)ip);
    if (decimals) {
        char tmp[10];
        for (int i = decimals - 1; i >= 0; i--) {
            tmp[i] = (char)('0' + fp % 10);
            fp /= 10;
        }
        buf_putc(b, '.');
        buf_put(b, tmp, (size_t)decimals);
    }
}

/* Howard Hinnant's days_from_civil / civil_from_days. */
int64_t days_from_civil(int y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t yy = (int64_t)yoe + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (*m <= 2));
}

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static void fmt_date(char *p, int64_t t)
{
    int y;
    unsigned m, d;
    civil_from_days(floordiv(t, 86400), &y, &m, &d);
    p[0] = (char)('0' + (y / 1000) % 10);
    p[1] = (char)('0' + (y / 100) % 10);
    p[2] = (char)('0' + (y / 10) % 10);
    p[3] = (char)('0' + y % 10);
    p[4] = '-';
    put2(p + 5, m);
    p[7] = '-';
    put2(p + 8, d);
}

void buf_put_date(buf_t *b, int64_t t)
{
    buf_reserve(b, 10);
    fmt_date(b->p + b->len, t);
    b->len += 10;
}

void buf_put_time(buf_t *b, int64_t t)
{
    buf_reserve(b, 20);
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
    b->len += 20;
}

void buf_put_csv(buf_t *b, const char *s, size_t n)
{
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
        buf_put(b, s, n);
        return;
    }
    buf_reserve(b, n * 2 + 2);
    char *p = b->p + b->len;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            *p++ = '"';
        *p++ = s[i];
    }
    *p++ = '"';
    b->len = (size_t)(p - b->p);
}

void buf_put_json_str(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, n * 6 + 2);
    char *p = b->p + b->len;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': *p++ = '\\'; *p++ = '"'; break;
        case '\\': *p++ = '\\'; *p++ = '\\'; break;
        case '\n': *p++ = '\\'; *p++ = 'n'; break;
        case '\r': *p++ = '\\'; *p++ = 'r'; break;
        case '\t': *p++ = '\\'; *p++ = 't'; break;
        default:
            if (c < 0x20) {
                *p++ = '\\'; *p++ = 'u'; *p++ = '0'; *p++ = '0';
                *p++ = hex[c >> 4]; *p++ = hex[c & 15];
            } else {
                *p++ = (char)c;
            }
        }
    }
    *p++ = '"';
    b->len = (size_t)(p - b->p);
}

int parse_utc(const char *s, int64_t *t)
{
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return -1;
    const char *r = s + 10;
    if (*r == 'T' || *r == ' ') {
        int m2 = 0;
        if (sscanf(r + 1, "%2d:%2d:%2d%n", &h, &mi, &se, &m2) != 3 || m2 != 8)
            return -1;
        r += 9;
        if (*r == '.')
            for (r++; *r >= '0' && *r <= '9'; r++)
                ;
        if (*r != 'Z')
            return -1;
        r++;
    }
    if (*r != '\0')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    *t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
    return 0;
}
