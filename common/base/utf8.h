/* One UTF-8 decoder, strict: no overlong forms, surrogates or code points
 * past U+10FFFF. Inline, since the MEDDICC scanner calls it per character. */
#ifndef DEALSCORE_UTF8_H
#define DEALSCORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define DS_UTF8_INVALID 0xFFFFFFFFu

/* Decodes one code point at s (n > 0 bytes available); sets *len. An
 * invalid or truncated sequence gives DS_UTF8_INVALID with *len 1. */
static inline uint32_t ds_utf8_decode(const uint8_t *s, size_t n, size_t *len) {
    uint8_t c = s[0];
    uint32_t cp;
    size_t need;
    *len = 1;
    if (c < 0x80) {
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
        return DS_UTF8_INVALID;
    }
    if (n < need) return DS_UTF8_INVALID;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80) return DS_UTF8_INVALID;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return DS_UTF8_INVALID;
    *len = need;
    return cp;
}

#endif
