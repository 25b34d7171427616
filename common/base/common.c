/* Allocation, errors, time, UUIDs and hashing shared by every module. */
#include "base/common.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

const char *ds_strerror(int err) {
    switch (err) {
    case DS_OK: return "success";
    case DS_EINVAL: return "invalid argument";
    case DS_ENOMEM: return "out of memory";
    case DS_EIO: return "i/o error";
    case DS_ETIMEDOUT: return "timed out";
    case DS_ENOTFOUND: return "not found";
    case DS_ERETRY: return "transient failure";
    case DS_EFATAL: return "permanent failure";
    case DS_ECONFLICT: return "conflict";
    case DS_EFULL: return "queue full";
    case DS_ESHUTDOWN: return "shutting down";
    case DS_EAUTH: return "not authorized";
    default: return "unknown error";
    }
}

static void oom(size_t size) {
    char buf[96];
    int n = snprintf(buf, sizeof buf, "out of memory allocating %zu bytes\n", size);
    if (n > 0) {
        ssize_t r = fwrite(buf, 1, (size_t)n, stderr);
        (void)r;
    }
    abort();
}

void *ds_malloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p) oom(size);
    return p;
}

void *ds_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *ds_realloc(void *ptr, size_t size) {
    void *p = realloc(ptr, size ? size : 1);
    if (!p) oom(size);
    return p;
}

char *ds_strdup(const char *s) {
    size_t n = strlen(s);
    char *p = ds_malloc(n + 1);
    memcpy(p, s, n + 1);
    return p;
}

char *ds_strndup(const char *s, size_t n) {
    char *p = ds_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *ds_asprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) ds_panic("bad format string %s", fmt);
    char *p = ds_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void ds__panic(const char *file, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"panic: %s\",\"file\":\"%s\",\"line\":%d}\n", msg, file,
            line);
    abort();
}

int64_t ds_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t ds_mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void format_uuid(const unsigned char *b, char out[37]) {
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void ds_uuid4(char out[37]) {
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) ds_panic("could not read random bytes");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    format_uuid(b, out);
}

void ds_uuid_derived(const char *name, char out[37]) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)name, strlen(name), md);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x50);
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
    format_uuid(md, out);
}

bool ds_uuid_valid(const char *s) {
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (!s) return false;
    for (size_t i = 0; i < sizeof shape - 1; i++)
        if (shape[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char)s[i])) return false;
    return s[sizeof shape - 1] == '\0';
}

void ds_format_time_us(int64_t us, char *out, size_t outsz) {
    int64_t secs = us / 1000000;
    int64_t frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (long)frac);
}

/* Howard Hinnant's days_from_civil and civil_from_days. */
int64_t ds_days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void ds_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d) {
    days += 719468;
    const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    const unsigned doe = (unsigned)(days - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int parse_digits(const char **p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int ds_parse_time_us(const char *s, int64_t *us) {
    if (!s) return DS_EINVAL;
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, se = 0;
    if (parse_digits(&p, 4, &y) || *p++ != '-' || parse_digits(&p, 2, &mo) || *p++ != '-' ||
        parse_digits(&p, 2, &d))
        return DS_EINVAL;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1]) return DS_EINVAL;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap) return DS_EINVAL;
    int64_t frac_us = 0, offset_s = 0;
    if (*p == '\0') goto done;
    if (*p != 'T' && *p != 't' && *p != ' ') return DS_EINVAL;
    p++;
    if (parse_digits(&p, 2, &h) || *p++ != ':' || parse_digits(&p, 2, &mi)) return DS_EINVAL;
    if (*p == ':') {
        p++;
        if (parse_digits(&p, 2, &se)) return DS_EINVAL;
        if (*p == '.' || *p == ',') {
            p++;
            int digits = 0;
            int64_t scale = 100000;
            if (!isdigit((unsigned char)*p)) return DS_EINVAL;
            while (isdigit((unsigned char)*p)) {
                if (digits < 6) frac_us += (*p - '0') * scale;
                scale /= 10;
                digits++;
                p++;
            }
        }
    }
    if (h > 23 || mi > 59 || se > 60) return DS_EINVAL;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int oh, om = 0;
        p++;
        if (parse_digits(&p, 2, &oh)) return DS_EINVAL;
        if (*p == ':') p++;
        if (*p) {
            if (parse_digits(&p, 2, &om)) return DS_EINVAL;
        }
        if (oh > 23 || om > 59) return DS_EINVAL;
        offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return DS_EINVAL; /* a date-time needs a zone */
    }
    if (*p != '\0') return DS_EINVAL;
done:;
    int64_t secs =
        ds_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se - offset_s;
    /* Years 0001 to 9999 only, after the offset too: Postgres has no year
     * 0000, and every time is formatted with four digits. */
    if (secs < ds_days_from_civil(1, 1, 1) * 86400 || secs >= ds_days_from_civil(10000, 1, 1) * 86400)
        return DS_EINVAL;
    *us = secs * 1000000 + frac_us;
    return DS_OK;
}

void ds_sha256_hex(const void *buf, size_t len, char out[65]) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(buf, len, md);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

void ds_signature_hex(const char *secret, const char *ts, const void *body, size_t body_len, char out[65]) {
    size_t tslen = strlen(ts), msglen = tslen + 1 + body_len;
    char *msg = ds_malloc(msglen);
    memcpy(msg, ts, tslen);
    msg[tslen] = '.';
    if (body_len) memcpy(msg + tslen + 1, body, body_len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, msglen, mac, &maclen);
    free(msg);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
}

bool ds_parse_long(const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

/* ---- %g, fast ------------------------------------------------------------ */

typedef unsigned __int128 u128;

/* |v| = m * 2^-sh exactly (m < 2^53). The prec significant digits are
 * q = round-half-even(m * 10^p / 2^sh) with p = prec - 1 - d and d the
 * decimal exponent; m * 10^p < 2^128 needs p <= 22. */
int ds_fmt_g(char out[32], double v, int prec) {
    static const uint64_t p10[20] = {1ULL,
                                     10ULL,
                                     100ULL,
                                     1000ULL,
                                     10000ULL,
                                     100000ULL,
                                     1000000ULL,
                                     10000000ULL,
                                     100000000ULL,
                                     1000000000ULL,
                                     10000000000ULL,
                                     100000000000ULL,
                                     1000000000000ULL,
                                     10000000000000ULL,
                                     100000000000000ULL,
                                     1000000000000000ULL,
                                     10000000000000000ULL,
                                     100000000000000000ULL,
                                     1000000000000000000ULL,
                                     10000000000000000000ULL};
    double a = fabs(v);
    if (prec < 1 || prec > 17 || !isfinite(v) || a < 1e-14 || a >= 1e15) goto slow;
    int e2;
    double f = frexp(a, &e2);
    uint64_t m = (uint64_t)ldexp(f, 53);
    int sh = 53 - e2; /* 3 .. 99 in this range */
    int d = (int)floor(log10(a));
    uint64_t q = 0;
    for (int tries = 0;; tries++) {
        int p = prec - 1 - d;
        if (p < 0 || p > 22 || tries > 3) goto slow;
        u128 pw = p <= 19 ? (u128)p10[p] : (u128)p10[19] * p10[p - 19];
        u128 num = (u128)m * pw;
        u128 t = num >> sh;
        if (t >= p10[prec]) { /* d was too small */
            d++;
            continue;
        }
        if (t < p10[prec - 1]) { /* d was too large */
            d--;
            continue;
        }
        u128 rem = num - (t << sh), half = (u128)1 << (sh - 1);
        q = (uint64_t)t;
        if (rem > half || (rem == half && (q & 1))) q++;
        if (q == p10[prec]) { /* 9.99..5 rounds up to the next decade */
            q = p10[prec - 1];
            d++;
        }
        break;
    }
    char dig[20];
    for (int i = prec - 1; i >= 0; i--) {
        dig[i] = (char)('0' + q % 10);
        q /= 10;
    }
    int nd = prec; /* significant digits without trailing zeros */
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    char *o = out;
    if (v < 0) *o++ = '-';
    if (d < -4 || d >= prec) {
        *o++ = dig[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        *o++ = 'e';
        int x = d;
        *o++ = x < 0 ? '-' : '+';
        if (x < 0) x = -x;
        if (x >= 100) *o++ = (char)('0' + x / 100);
        *o++ = (char)('0' + x / 10 % 10);
        *o++ = (char)('0' + x % 10);
    } else if (d >= 0) {
        int ip = d + 1; /* digits before the point, <= prec */
        memcpy(o, dig, (size_t)ip);
        o += ip;
        if (nd > ip) {
            *o++ = '.';
            memcpy(o, dig + ip, (size_t)(nd - ip));
            o += nd - ip;
        }
    } else {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -d - 1; i++) *o++ = '0';
        memcpy(o, dig, (size_t)nd);
        o += nd;
    }
    *o = '\0';
    return (int)(o - out);
slow:
    return snprintf(out, 32, "%.*g", prec, v);
}
