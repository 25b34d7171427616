/* One-dimensional arrays in Postgres's binary format (array_recv), for
 * statements that take a whole batch as parallel arrays:
 *   insert ... select ... from unnest($1::uuid[], $2::jsonb[], ...)
 * sent with format 1 and the array's length. The server then reads each
 * value once, with no text to parse around it (a JSON document of records,
 * or a text array literal with its quoting). */
#ifndef DEALSCORE_PGARRAY_H
#define DEALSCORE_PGARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DS_OID_BOOL 16
#define DS_OID_TEXT 25
#define DS_OID_FLOAT8 701
#define DS_OID_TIMESTAMPTZ 1184
#define DS_OID_UUID 2950
#define DS_OID_JSON 114
#define DS_OID_JSONB 3802

/* {0} is not ready: call ds_pgarray_begin first. The caller frees p
 * (ds_pgarray_free). */
typedef struct {
    char *p;
    size_t len, cap;
    size_t n; /* elements so far */
    bool has_null;
} ds_pgarray_t;

/* Starts an empty array of elem_oid elements (the buffer is kept, so one
 * ds_pgarray_t can be reused batch after batch). */
void ds_pgarray_begin(ds_pgarray_t *a, uint32_t elem_oid);
/* Writes the element count and the null flag: the array is ready to send
 * as (a->p, a->len). Elements may still be appended (then finish again). */
void ds_pgarray_finish(ds_pgarray_t *a);
void ds_pgarray_free(ds_pgarray_t *a);
/* Finishes the n arrays a[0..n-1] and fills the first n entries of a
 * statement's parameter values, lengths and formats (binary) with them. */
void ds_pgarray_params(ds_pgarray_t *a, size_t n, const char **values, int *lengths, int *formats);

/* Appends an element of len bytes and returns where its bytes go. */
char *ds_pgarray_elem(ds_pgarray_t *a, size_t len);
void ds_pgarray_null(ds_pgarray_t *a);
/* A UUID in its text form (36 characters, checked by ds_uuid_valid). */
void ds_pgarray_uuid(ds_pgarray_t *a, const char *uuid);
/* Microseconds since the Unix epoch. */
void ds_pgarray_timestamptz(ds_pgarray_t *a, int64_t unix_us);
void ds_pgarray_float8(ds_pgarray_t *a, double v);
void ds_pgarray_bool(ds_pgarray_t *a, bool v);
/* text of len bytes (NULL: a NULL element). */
void ds_pgarray_text(ds_pgarray_t *a, const char *s, size_t len);
/* JSON text of len bytes as jsonb (NULL: a NULL element); the server parses
 * it as jsonb_in would. */
void ds_pgarray_jsonb(ds_pgarray_t *a, const char *json, size_t len);
/* JSON text of len bytes as json (NULL: a NULL element): stored as the
 * text, which the server only validates (a third of jsonb's parse). */
void ds_pgarray_json(ds_pgarray_t *a, const char *json, size_t len);

#endif
