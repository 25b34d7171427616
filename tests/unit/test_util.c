/* Time parsing and formatting, UUIDs, hashing. */
#include <criterion/criterion.h>
#include <string.h>

#include "dealscore/common.h"

Test(util, parses_iso8601_with_zone) {
    int64_t us;
    cr_assert_eq(ds_parse_time_us("2026-11-26T03:14:40Z", &us), 0);
    cr_assert_eq(us, 1795662880LL * 1000000);
    cr_assert_eq(ds_parse_time_us("2026-11-26T05:14:40+02:00", &us), 0);
    cr_assert_eq(us, 1795662880LL * 1000000);
    cr_assert_eq(ds_parse_time_us("2026-11-25T22:14:40.5-0500", &us), 0);
    cr_assert_eq(us, 1795662880LL * 1000000 + 500000);
    cr_assert_eq(ds_parse_time_us("1970-01-01", &us), 0);
    cr_assert_eq(us, 0);
    cr_assert_eq(ds_parse_time_us("2024-02-29", &us), 0);
}

Test(util, rejects_bad_times) {
    int64_t us;
    const char *bad[] = {"2026-11-26T03:14:40", "2026-13-01", "2025-02-29", "2026-11-26T25:00:00Z",
                         "yesterday", "", "2026-11-26Z", "2026-11-26T03:14:40Zjunk",
                         "2026-11-26T03:14:40.Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(ds_parse_time_us(bad[i], &us), DS_EINVAL, "accepted %s", bad[i]);
}

Test(util, formats_rfc3339_round_trip) {
    char buf[40];
    ds_format_time_us(1795662880LL * 1000000 + 123456, buf, sizeof buf);
    cr_assert_str_eq(buf, "2026-11-26T03:14:40.123456Z");
    int64_t us;
    cr_assert_eq(ds_parse_time_us(buf, &us), 0);
    cr_assert_eq(us, 1795662880LL * 1000000 + 123456);
}

Test(util, uuid4_shape) {
    char a[37], b[37];
    ds_uuid4(a);
    ds_uuid4(b);
    cr_assert_eq(strlen(a), 36);
    cr_assert_eq(a[14], '4');
    cr_assert(strchr("89ab", a[19]) != NULL);
    cr_assert_str_neq(a, b);
}

Test(util, sha256_known_vector) {
    char hex[65];
    ds_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(util, uuid_valid_and_derived) {
    cr_assert(ds_uuid_valid("0b7f4a52-9d55-4c38-b2c1-43a1c1f0A001"));
    cr_assert(!ds_uuid_valid(NULL));
    cr_assert(!ds_uuid_valid("0b7f4a52-9d55-4c38-b2c1-43a1c1f0a00"));
    cr_assert(!ds_uuid_valid("0b7f4a52-9d55-4c38-b2c1-43a1c1f0a0011"));
    cr_assert(!ds_uuid_valid("0b7f4a52x9d55-4c38-b2c1-43a1c1f0a001"));
    cr_assert(!ds_uuid_valid("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"));
    char a[37], b[37], c[37];
    ds_uuid_derived("features.ready:e1", a);
    ds_uuid_derived("features.ready:e1", b);
    ds_uuid_derived("features.ready:e2", c);
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
    cr_assert(ds_uuid_valid(a));
    cr_assert_eq(a[14], '5', "version 5 layout: %s", a);
    cr_assert(strchr("89ab", a[19]) != NULL);
}

Test(util, sb_builds_json_string_literals) {
    ds_sb_t b = {0};
    ds_sb_puts(&b, "x=");
    ds_sb_json_str(&b, "a\"b\\c\n\x01\xc3\xa9");
    cr_expect_str_eq(b.p, "x=\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\"");
    cr_expect_eq(b.len, strlen(b.p));
    free(b.p);
}

Test(util, sb_printf_appends_and_grows) {
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
