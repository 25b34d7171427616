/* The string builder (base/sb.h): appending, growing, taking, integers and
 * the JSON string escaper. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/sb.h"

Test(sb, builds_json_string_literals) {
    ds_sb_t b = {0};
    ds_sb_puts(&b, "x=");
    ds_sb_json_str(&b, "a\"b\\c\n\x01\xc3\xa9");
    cr_expect_str_eq(b.p, "x=\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\"");
    cr_expect_eq(b.len, strlen(b.p));
    free(b.p);
}

Test(sb, printf_appends_and_grows) {
    ds_sb_t b = {0};
    ds_sb_printf(&b, "%s=%d", "n", 42);
    cr_expect_str_eq(b.p, "n=42");
    cr_expect_eq(b.len, 4);
    /* Pieces of every length from 0 to 299 bytes: some fit the free space
     * exactly, some miss it by one, and the buffer grows past its first
     * 4096 bytes several times. */
    char digits[300];
    for (int i = 0; i < 300; i++) digits[i] = (char)('0' + i % 10);
    size_t want_len = 4 + 300 + 299 * 300 / 2;
    char *want = ds_malloc(want_len + 1), *w = want;
    memcpy(w, "n=42", 4);
    w += 4;
    for (int i = 0; i < 300; i++) {
        ds_sb_printf(&b, "%.*s|", i, digits);
        memcpy(w, digits, (size_t)i);
        w += i;
        *w++ = '|';
    }
    *w = '\0';
    cr_expect_eq(b.len, want_len);
    cr_expect_str_eq(b.p, want);
    cr_expect_gt(b.cap, b.len);
    ds_sb_printf(&b, "%s", "");
    cr_expect_eq(b.len, want_len);
    free(want);
    free(b.p);
}

/* A taken string keeps only its own length of memory, not the builder's
 * 4 kB (the benchmark worker held 80,000 cohort keys of 4 kB each: 330 MB
 * in one batch), and leaves the builder empty and reusable. */
Test(sb, take_cuts_the_buffer_to_the_string) {
    ds_sb_t b = {0};
    ds_sb_printf(&b, "v1|ind=%s|m=%d", "Software", 12);
    cr_assert_geq(b.cap, 4096);
    char *s = ds_sb_take(&b);
    cr_expect_str_eq(s, "v1|ind=Software|m=12");
    cr_expect_lt(malloc_usable_size(s), 64);
    cr_expect(b.p == NULL && b.len == 0 && b.cap == 0);
    free(s);
    s = ds_sb_take(&b);
    cr_expect_str_eq(s, "", "an empty builder gives an empty string");
    free(s);
    ds_sb_puts(&b, "again");
    s = ds_sb_take(&b);
    cr_expect_str_eq(s, "again");
    free(s);
}

/* Invalid UTF-8 becomes U+FFFD byte by byte (a stray continuation byte, a
 * truncated sequence, an overlong form, a surrogate, past U+10FFFF), so the
 * literal is always valid JSON; valid sequences of 2, 3 and 4 bytes pass. */
Test(sb, json_str_replaces_invalid_utf8) {
    ds_sb_t b = {0};
    ds_sb_json_str(&b, "\x80|\xc3|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|"
                       "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    cr_expect_str_eq(b.p, "\"\xef\xbf\xbd|\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                          "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    ds_sb_free(&b);
    cr_expect(b.p == NULL && b.len == 0 && b.cap == 0);
}

/* ds_sb_json_strn takes a length (a NUL inside is escaped) and, with
 * DS_SB_JSON_SHORT_ESCAPES, writes \n, \r and \t as two characters. */
Test(sb, json_strn_lengths_and_short_escapes) {
    ds_sb_t b = {0};
    ds_sb_json_strn(&b, "a\0b\n", 4, 0);
    cr_expect_str_eq(b.p, "\"a\\u0000b\\u000a\"");
    ds_sb_reset(&b);
    cr_expect_str_eq(b.p, "", "reset keeps the memory, empties the string");
    cr_expect_eq(b.len, 0);
    ds_sb_json_strn(&b, "l1\nl2\r\tx\x1f\"\\", 11, DS_SB_JSON_SHORT_ESCAPES);
    cr_expect_str_eq(b.p, "\"l1\\nl2\\r\\tx\\u001f\\\"\\\\\"");
    ds_sb_reset(&b);
    ds_sb_json_strn(&b, "", 0, DS_SB_JSON_SHORT_ESCAPES);
    cr_expect_str_eq(b.p, "\"\"");
    cr_expect_eq(b.len, 2);
    ds_sb_free(&b);
}

Test(sb, i64_writes_every_range) {
    ds_sb_t b = {0};
    const int64_t v[] = {0, 7, -1, 10, 1234567890123LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ds_sb_i64(&b, v[i]);
        ds_sb_putc(&b, ' ');
    }
    cr_expect_str_eq(b.p, "0 7 -1 10 1234567890123 9223372036854775807 -9223372036854775808 ");
    cr_expect_eq(b.len, strlen(b.p));
    ds_sb_free(&b);
}

/* The inline appenders keep the string NUL-terminated, grow to 4 kB and
 * then double; reserve lets a caller write n bytes by hand. */
Test(sb, put_putc_and_reserve) {
    ds_sb_t b = {0};
    ds_sb_put(&b, "", 0);
    cr_expect_str_eq(b.p, "", "an empty put still gives a string");
    cr_expect_eq(b.cap, 4096);
    for (int i = 0; i < 5000; i++) ds_sb_putc(&b, (char)('a' + i % 26));
    cr_expect_eq(b.len, 5000);
    cr_expect_eq(b.cap, 8192);
    cr_expect_eq(b.p[4999], 'a' + 4999 % 26);
    cr_expect_eq(b.p[5000], '\0');
    ds_sb_reserve(&b, 4000);
    cr_expect_eq(b.cap, 16384, "5000 + 4000 + 1 bytes need the next doubling");
    memcpy(b.p + b.len, "xyz", 3);
    b.len += 3;
    b.p[b.len] = '\0';
    ds_sb_puts(&b, "!");
    cr_expect_str_eq(b.p + 4998, "ghxyz!");
    ds_sb_free(&b);
}
