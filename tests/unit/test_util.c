/* Time parsing and formatting, UUIDs, hashing. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/common.h"
#include "base/uuidset.h"

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
    const char *bad[] = {"2026-11-26T03:14:40",
                         "2026-13-01",
                         "2025-02-29",
                         "2026-11-26T25:00:00Z",
                         "yesterday",
                         "",
                         "2026-11-26Z",
                         "2026-11-26T03:14:40Zjunk",
                         "2026-11-26T03:14:40.Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(ds_parse_time_us(bad[i], &us), DS_EINVAL, "accepted %s", bad[i]);
}

/* Postgres has no year 0000: a time it would refuse never gets past the
 * parser (ingest echoed its error), nor does one formatting cannot write in
 * four digits. */
Test(util, rejects_times_outside_the_years_0001_to_9999) {
    int64_t us;
    const char *bad[] = {"0000-01-01", "0000-06-15T12:00:00Z", "0001-01-01T00:30:00+01:00",
                         "9999-12-31T23:30:00-01:00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(ds_parse_time_us(bad[i], &us), DS_EINVAL, "accepted %s", bad[i]);
    cr_assert_eq(ds_parse_time_us("0001-01-01T00:00:00Z", &us), 0);
    char buf[40];
    ds_format_time_us(us, buf, sizeof buf);
    cr_expect_str_eq(buf, "0001-01-01T00:00:00.000000Z");
    cr_assert_eq(ds_parse_time_us("9999-12-31T23:59:59.999999Z", &us), 0);
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

/* ds_fmt_g against snprintf's %.*g, byte for byte. */
static void expect_fmt(double v, int prec) {
    char want[64], got[32];
    snprintf(want, sizeof want, "%.*g", prec, v);
    int n = ds_fmt_g(got, v, prec);
    cr_assert_str_eq(got, want, "ds_fmt_g(%a, %d)", v, prec);
    cr_assert_eq(n, (int)strlen(want));
}

Test(util, fmt_g_matches_snprintf) {
    static const double fixed[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   0.5,
                                   0.1,
                                   1e-5,
                                   1e-4,
                                   9.9999999995e-5,
                                   99999.99999,
                                   123456789.0,
                                   1234567890.0,
                                   1e15,
                                   9.999999999e14,
                                   1e-14,
                                   1e-15,
                                   0.30000000000000004,
                                   2.5,
                                   3.5,
                                   1.0 / 3.0,
                                   2.0 / 3.0,
                                   1e21,
                                   -7.25e-9,
                                   INFINITY,
                                   -INFINITY,
                                   NAN,
                                   5e-324,
                                   1.7976931348623157e308};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        for (int prec = 1; prec <= 17; prec++) expect_fmt(fixed[i], prec);
    /* Random doubles and floats (the contributions) over the exponents a
     * score produces and beyond, and decimal ties of every precision. */
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 400000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double mant = (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
        int e = (int)(x % 70) - 50;                           /* 2^-50 .. 2^19 */
        double v = ldexp(mant + 0.5, e) * ((x >> 7) & 1 ? -1 : 1);
        expect_fmt(v, 17);
        expect_fmt(v, 9);
        expect_fmt((double)(float)v, 9);
        expect_fmt((double)(float)v, 6);
        int prec = 1 + (int)(x % 17);
        expect_fmt(v, prec);
        /* k + 0.5 units of the last place: exact ties (binary fractions). */
        double tie = ldexp((double)((x >> 20) % 100000) + 0.5, -(int)((x >> 40) % 12));
        expect_fmt(tie, 1 + (int)((x >> 50) % 6));
    }
}

/* The UUID set against a plain array, through random adds and removes over
 * a small key space (long probe runs, wrap-around, removals in the middle
 * of runs), then the parser's edges. */
Test(util, uuidset_matches_a_reference) {
    enum { KEYS = 3000, OPS = 200000 };
    static char ids[KEYS][37];
    static bool in[KEYS];
    uint64_t x = 88172645463325252ull;
    for (int k = 0; k < KEYS; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* Half of the keys share their last 16 hex digits with another. */
        snprintf(ids[k], sizeof ids[k], "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)(x >> 32) ^ (unsigned)k,
                 (unsigned)(x >> 16) & 0xffff, (unsigned)k & 0xfff, (unsigned)(k / 2) & 0xfff,
                 (unsigned long long)(k / 2) & 0xffffffffffffull);
    }
    ds_uuidset_t s = {0};
    size_t n = 0;
    for (int op = 0; op < OPS; op++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int k = (int)(x % KEYS);
        if ((x >> 20) % 3 == 0) {
            ds_uuidset_remove(&s, ids[k]);
            n -= in[k];
            in[k] = false;
        } else {
            cr_assert(ds_uuidset_add(&s, ids[k]));
            n += !in[k];
            in[k] = true;
        }
        if (op % 1000 == 0 || op == OPS - 1) {
            cr_assert_eq(s.n, n);
            for (int j = 0; j < KEYS; j++)
                cr_assert_eq(ds_uuidset_has(&s, ids[j]), in[j], "op %d key %d", op, j);
        }
    }
    /* Upper case is the same UUID. */
    char up[37];
    for (int i = 0; i < 37; i++)
        up[i] = (char)(ids[0][i] >= 'a' && ids[0][i] <= 'f' ? ids[0][i] - 32 : ids[0][i]);
    cr_expect_eq(ds_uuidset_has(&s, up), in[0]);
    ds_uuidset_clear(&s);
    cr_expect_eq(s.n, 0);
    cr_expect_not(ds_uuidset_has(&s, ids[1]));

    ds_uuid128_t u;
    cr_expect(ds_uuid_parse128("0123abcd-4567-89ef-0123-456789ABCDEF", &u));
    cr_expect_eq(u.hi, 0x0123abcd456789efull);
    cr_expect_eq(u.lo, 0x0123456789abcdefull);
    cr_expect_not(ds_uuid_parse128("00000000-0000-0000-0000-000000000000", &u), "nil is the empty mark");
    cr_expect_not(ds_uuid_parse128("0123abcd-4567-89ef-0123-456789abcde", &u), "short");
    cr_expect_not(ds_uuid_parse128("0123abcd-4567-89ef-0123-456789abcdef0", &u), "long");
    cr_expect_not(ds_uuid_parse128("0123abcd_4567-89ef-0123-456789abcdef", &u), "separator");
    cr_expect_not(ds_uuid_parse128("0123abcg-4567-89ef-0123-456789abcdef", &u), "not hex");
    cr_expect_not(ds_uuidset_add(&s, "not a uuid"));
    cr_expect_eq(s.n, 0);
}

/* Day counts of the proleptic Gregorian calendar, both ways: known dates
 * (leap days, before 1970, year 1 and 9999), then every day of 1600-2400. */
Test(util, days_from_civil_and_back) {
    const struct {
        int64_t y;
        unsigned m, d;
        int64_t days;
    } known[] = {{1970, 1, 1, 0},      {1969, 12, 31, -1}, {2000, 2, 29, 11016},   {2000, 3, 1, 11017},
                 {2026, 11, 1, 20758}, {1, 1, 1, -719162}, {9999, 12, 31, 2932896}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        cr_expect_eq(ds_days_from_civil(known[i].y, known[i].m, known[i].d), known[i].days, "case %zu", i);
        int64_t y;
        unsigned m, d;
        ds_civil_from_days(known[i].days, &y, &m, &d);
        cr_expect(y == known[i].y && m == known[i].m && d == known[i].d, "case %zu", i);
    }
    int64_t first = ds_days_from_civil(1600, 1, 1), last = ds_days_from_civil(2400, 12, 31);
    cr_assert_eq(last - first + 1, 801 * 365 + 195, "801 years and their 195 leap days");
    int64_t py = 1599;
    unsigned pm = 12, pd = 31;
    for (int64_t z = first; z <= last; z++) {
        int64_t y;
        unsigned m, d;
        ds_civil_from_days(z, &y, &m, &d);
        cr_assert_eq(ds_days_from_civil(y, m, d), z);
        bool next_day = y == py && m == pm && d == pd + 1;
        bool next_month = y == py && m == pm + 1 && d == 1;
        bool next_year = y == py + 1 && m == 1 && d == 1 && pm == 12 && pd == 31;
        cr_assert(next_day || next_month || next_year, "day %lld follows %lld-%u-%u", (long long)z,
                  (long long)py, pm, pd);
        py = y, pm = m, pd = d;
    }
}
