/* Basic definitions shared by every dealscore module: error codes,
 * allocation that never returns NULL, assertions, time helpers. */
#ifndef DEALSCORE_COMMON_H
#define DEALSCORE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Error codes: 0 is success, failures are negative. */
typedef enum {
    DS_OK = 0,
    DS_EINVAL = -1, /* invalid argument or input */
    DS_ENOMEM = -2,
    DS_EIO = -3, /* I/O or network failure */
    DS_ETIMEDOUT = -4,
    DS_ENOTFOUND = -5,
    DS_ERETRY = -6, /* transient failure: retry later */
    DS_EFATAL = -7, /* permanent failure: do not retry */
    DS_ECONFLICT = -8,
    DS_EFULL = -9,      /* a bounded queue is full */
    DS_ESHUTDOWN = -10, /* the service is stopping */
    DS_EAUTH = -11,
} ds_err_t;

/* Returns a static description of a DS_E* code. */
const char *ds_strerror(int err);

/* Allocation helpers: abort the process on out-of-memory, so callers never
 * check for NULL. Free with free(). */
void *ds_malloc(size_t size);
void *ds_calloc(size_t n, size_t size);
void *ds_realloc(void *ptr, size_t size);
char *ds_strdup(const char *s);
char *ds_strndup(const char *s, size_t n);

/* printf into a new string; the caller frees it. */
char *ds_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* s, a whole decimal number in [min, max], into *out; false (and *out
 * untouched) for anything else. */
bool ds_parse_long(const char *s, long min, long max, long *out);
/* v as snprintf(out, 32, "%.*g", prec, v) writes it, byte for byte, in
 * about a tenth of the time for the values a score is made of (exact
 * integer arithmetic on the double's bits; other values go through
 * snprintf). prec 1 to 17. Returns the length. */
int ds_fmt_g(char out[32], double v, int prec);

/* Aborts with file and line; use for broken invariants, never for bad input. */
void ds__panic(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
#define ds_panic(...) ds__panic(__FILE__, __LINE__, __VA_ARGS__)
#define ds_assert(cond)                                                                                      \
    do {                                                                                                     \
        if (!(cond)) ds__panic(__FILE__, __LINE__, "assertion failed: %s", #cond);                           \
    } while (0)

#define DS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Wall clock in microseconds since the Unix epoch. */
int64_t ds_now_us(void);
/* Monotonic clock in microseconds. */
int64_t ds_mono_us(void);

/* Writes a random version-4 UUID (36 chars + NUL) into out. */
void ds_uuid4(char out[37]);
/* True when s is a UUID in its 36-character text form (any hex case). NULL: false. */
bool ds_uuid_valid(const char *s);
/* Writes a UUID derived from name (SHA-256, version-5 layout) into out: the
 * same name always gives the same id, so a replayed input republishes an
 * event with the same id. */
void ds_uuid_derived(const char *name, char out[37]);
/* Formats microseconds since the epoch as RFC 3339 UTC with microseconds
 * ("2026-11-26T03:14:40.123456Z") into out (at least 32 bytes). */
void ds_format_time_us(int64_t us, char *out, size_t outsz);
/* Days from 1970-01-01 to y-m-d (m 1-12, d 1-31) in the proleptic
 * Gregorian calendar, and the date of a day count; negative before 1970. */
int64_t ds_days_from_civil(int64_t y, unsigned m, unsigned d);
void ds_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* Parses ISO 8601: "YYYY-MM-DD", or date-time with optional fraction and
 * "Z" or an offset ("+02:00", "+0200"); a date-time without a zone is
 * rejected, and so is an instant outside the years 0001 to 9999 (UTC).
 * Returns 0 and sets *us, or DS_EINVAL. */
int ds_parse_time_us(const char *s, int64_t *us);
/* Lowercase hex SHA-256 of buf into out (65 bytes). */
void ds_sha256_hex(const void *buf, size_t len, char out[65]);
/* Lowercase hex HMAC-SHA256, keyed with secret, of "<ts>.<body>" into out
 * (65 bytes): the X-Dealscore-Signature of a request, the same for signed
 * webhooks into ingest and for the events dealscore-notify sends out, so
 * one verifier serves both directions. */
void ds_signature_hex(const char *secret, const char *ts, const void *body, size_t body_len, char out[65]);

#endif
