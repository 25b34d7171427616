/* The simulator's appenders over the string builder (base/sb.h): CSV fields
 * (RFC 4180 quoting), fixed-point numbers and ISO 8601 UTC times. Formatting
 * by hand rather than snprintf keeps a million-deal run I/O bound. */
#ifndef SIM_BUF_H
#define SIM_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "base/sb.h"

/* v rounded to `decimals` (0..9) places, trailing zeros kept. */
void buf_put_fixed(ds_sb_t *b, double v, int decimals);
/* "2026-11-01T09:30:00Z" for seconds since the epoch. */
void buf_put_time(ds_sb_t *b, int64_t t);
/* "2026-11-01" for the UTC day containing t. */
void buf_put_date(ds_sb_t *b, int64_t t);
/* One CSV field: quoted (with doubled quotes) only when it holds a comma,
 * quote, CR or LF. */
void buf_put_csv(ds_sb_t *b, const char *s, size_t n);

#endif
