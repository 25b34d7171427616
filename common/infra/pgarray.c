/* Binary one-dimensional arrays for Postgres (array_recv's format): a
 * 20-byte header (dimensions, null flag, element type, count, lower bound),
 * then each element as a big-endian 4-byte length (-1: NULL) and its bytes
 * in the type's binary format. */
#include "infra/pgarray.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

/* 2000-01-01 in Unix microseconds: the origin of binary timestamps. */
#define PG_EPOCH_US (10957LL * 86400LL * 1000000LL)

static void reserve(ds_pgarray_t *a, size_t extra) {
    if (a->len + extra <= a->cap) return;
    size_t cap = a->cap ? a->cap : 4096;
    while (cap < a->len + extra) cap *= 2;
    a->p = ds_realloc(a->p, cap);
    a->cap = cap;
}

static void put32(char *p, uint32_t v) {
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static void put64(char *p, uint64_t v) {
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

void ds_pgarray_begin(ds_pgarray_t *a, uint32_t elem_oid) {
    a->len = 0;
    a->n = 0;
    a->has_null = false;
    reserve(a, 20);
    put32(a->p, 1);     /* dimensions */
    put32(a->p + 4, 0); /* has NULLs: ds_pgarray_finish */
    put32(a->p + 8, elem_oid);
    put32(a->p + 12, 0); /* element count: ds_pgarray_finish */
    put32(a->p + 16, 1); /* lower bound */
    a->len = 20;
}

void ds_pgarray_finish(ds_pgarray_t *a) {
    put32(a->p + 4, a->has_null ? 1u : 0u);
    put32(a->p + 12, (uint32_t)a->n);
}

void ds_pgarray_params(ds_pgarray_t *a, size_t n, const char **values, int *lengths, int *formats) {
    for (size_t i = 0; i < n; i++) {
        ds_pgarray_finish(&a[i]);
        values[i] = a[i].p;
        lengths[i] = (int)a[i].len;
        formats[i] = 1;
    }
}

void ds_pgarray_free(ds_pgarray_t *a) {
    free(a->p);
    memset(a, 0, sizeof *a);
}

char *ds_pgarray_elem(ds_pgarray_t *a, size_t len) {
    reserve(a, 4 + len);
    put32(a->p + a->len, (uint32_t)len);
    char *at = a->p + a->len + 4;
    a->len += 4 + len;
    a->n++;
    return at;
}

void ds_pgarray_null(ds_pgarray_t *a) {
    reserve(a, 4);
    put32(a->p + a->len, 0xffffffffu);
    a->len += 4;
    a->n++;
    a->has_null = true;
}

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

void ds_pgarray_uuid(ds_pgarray_t *a, const char *s) {
    char *out = ds_pgarray_elem(a, 16);
    for (int i = 0; i < 16; i++) {
        if (*s == '-') s++;
        out[i] = (char)(hexval((unsigned char)s[0]) << 4 | hexval((unsigned char)s[1]));
        s += 2;
    }
}

void ds_pgarray_timestamptz(ds_pgarray_t *a, int64_t unix_us) {
    put64(ds_pgarray_elem(a, 8), (uint64_t)(unix_us - PG_EPOCH_US));
}

void ds_pgarray_float8(ds_pgarray_t *a, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put64(ds_pgarray_elem(a, 8), bits);
}

void ds_pgarray_bool(ds_pgarray_t *a, bool v) { *ds_pgarray_elem(a, 1) = v ? 1 : 0; }

void ds_pgarray_text(ds_pgarray_t *a, const char *s, size_t len) {
    if (!s) {
        ds_pgarray_null(a);
        return;
    }
    memcpy(ds_pgarray_elem(a, len), s, len);
}

/* json's binary input is the JSON text. */
void ds_pgarray_json(ds_pgarray_t *a, const char *json, size_t len) { ds_pgarray_text(a, json, len); }

/* jsonb's binary input is a version byte (1) and the JSON text. */
void ds_pgarray_jsonb(ds_pgarray_t *a, const char *json, size_t len) {
    if (!json) {
        ds_pgarray_null(a);
        return;
    }
    char *out = ds_pgarray_elem(a, len + 1);
    out[0] = 1;
    memcpy(out + 1, json, len);
}
