/* The UTF-8 decoder (base/utf8.h): code points and lengths, and what it
 * refuses. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "base/utf8.h"

static uint32_t dec(const char *s, size_t n, size_t *len) {
    return ds_utf8_decode((const uint8_t *)s, n, len);
}

Test(utf8, decodes_one_to_four_bytes) {
    size_t len = 0;
    cr_expect_eq(dec("A", 1, &len), 0x41);
    cr_expect_eq(len, 1);
    cr_expect_eq(dec("\xc3\xa9x", 3, &len), 0xe9);
    cr_expect_eq(len, 2);
    cr_expect_eq(dec("\xe2\x82\xac", 3, &len), 0x20ac);
    cr_expect_eq(len, 3);
    cr_expect_eq(dec("\xf0\x9f\x98\x80", 4, &len), 0x1f600);
    cr_expect_eq(len, 4);
    cr_expect_eq(dec("\xf4\x8f\xbf\xbf", 4, &len), 0x10ffff, "the last code point");
    cr_expect_eq(len, 4);
}

Test(utf8, refuses_invalid_sequences_with_length_one) {
    const struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"\x80", 1},             /* a continuation byte alone */
        {"\xc3", 1},             /* truncated */
        {"\xe2\x82", 2},         /* truncated */
        {"\xc3(", 2},            /* not a continuation */
        {"\xc0\xaf", 2},         /* overlong '/' */
        {"\xe0\x80\xaf", 3},     /* overlong '/' */
        {"\xed\xa0\x80", 3},     /* a surrogate */
        {"\xf4\x90\x80\x80", 4}, /* past U+10FFFF */
        {"\xff", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = 9;
        cr_expect_eq(dec(bad[i].s, bad[i].n, &len), DS_UTF8_INVALID, "case %zu", i);
        cr_expect_eq(len, 1, "case %zu", i);
    }
}
