/* The string builder; see sb.h. */
#include "base/sb.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/common.h"
#include "base/utf8.h"

void ds__sb_grow(ds_sb_t *b, size_t n) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    b->p = ds_realloc(b->p, cap);
    b->cap = cap;
}

void ds_sb_printf(ds_sb_t *b, const char *fmt, ...) {
    /* Format straight into the free space; only when it is too small, grow
     * and format once more. */
    size_t room = b->cap - b->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) ds_panic("bad format string %s", fmt);
    if ((size_t)n >= room) {
        ds_sb_reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void ds_sb_i64(ds_sb_t *b, int64_t v) {
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    ds_sb_reserve(b, (size_t)n + 1);
    if (v < 0) b->p[b->len++] = '-';
    while (n) b->p[b->len++] = tmp[--n];
    b->p[b->len] = '\0';
}

char *ds_sb_take(ds_sb_t *b) {
    char *s = b->p ? ds_realloc(b->p, b->len + 1) : ds_strdup("");
    *b = (ds_sb_t){0};
    return s;
}

void ds_sb_free(ds_sb_t *b) {
    free(b->p);
    *b = (ds_sb_t){0};
}

/* A control character c (< 0x20) escaped. */
static void put_control(ds_sb_t *b, uint8_t c, unsigned flags) {
    static const char hex[] = "0123456789abcdef";
    if (flags & DS_SB_JSON_SHORT_ESCAPES) {
        const char *e = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (e) {
            ds_sb_put(b, e, 2);
            return;
        }
    }
    char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    ds_sb_put(b, esc, 6);
}

void ds_sb_json_strn(ds_sb_t *b, const char *s, size_t n, unsigned flags) {
    const uint8_t *p = (const uint8_t *)s;
    ds_sb_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        /* Plain ASCII goes out in one piece. */
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\') j++;
        if (j > i) {
            ds_sb_put(b, s + i, j - i);
            i = j;
            continue;
        }
        uint8_t c = p[i];
        size_t len = 1;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            ds_sb_put(b, esc, 2);
        } else if (c < 0x20) {
            put_control(b, c, flags);
        } else if (ds_utf8_decode(p + i, n - i, &len) == DS_UTF8_INVALID) {
            ds_sb_put(b, "\xef\xbf\xbd", 3);
        } else {
            ds_sb_put(b, s + i, len);
        }
        i += len;
    }
    ds_sb_putc(b, '"');
}

void ds_sb_json_str(ds_sb_t *b, const char *s) { ds_sb_json_strn(b, s, strlen(s), 0); }
