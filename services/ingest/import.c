/* dealscore-ingest import: CSV files (RFC 4180 through libcsv) through the
 * same validation (record.c) and idempotent upserts (store.c) as the
 * webhooks.
 *
 * Streaming: a file is read in 64 KiB blocks, each row is validated as soon
 * as libcsv completes it, and valid records are stored in chunks of --batch
 * records, one pipelined transaction per chunk. Memory is bounded by the
 * chunk and the largest row, whatever the file size.
 *
 * Line numbers: libcsv does not report positions, so every block is fed to
 * it one physical line (up to and including its '\n') at a time. Between two
 * calls the current line is known exactly, and a row's first line is the
 * line on which the parser left the "no row begun" state, so a record after
 * a quoted field with embedded newlines still gets its true line. */
#include <csv.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "base/log.h"
#include "ingest.h"
#include "record.h"
#include "store.h"

#define READ_BLOCK (64 * 1024)
#define DEFAULT_BATCH 500
/* A chunk is also stored once its rows add up to this much text, so long
 * transcripts do not multiply memory by the batch size. */
#define CHUNK_MAX_BYTES ((size_t)8 << 20)
#define MAX_BATCH 10000
/* A row larger than this is an unterminated quote that swallowed the rest of
 * the file (transcripts are at most 1 MiB of text, see record.c). */
#define MAX_ROW_BYTES ((size_t)16 << 20)
#define DEFAULT_RETRY_FOR_S 60
#define PROGRESS_EVERY_US 2000000
#define DEFAULT_MAX_SHOWN 1000

/* ---- fields and aliases ------------------------------------------------- */

static const char *const fields_account[] = {"external_id", "name",       "industry", "region",
                                             "size_band",   "created_at", NULL};
static const char *const fields_opportunity[] = {"external_id", "account_external_id",
                                                 "owner_id",    "product_category",
                                                 "persona",     "amount",
                                                 "currency",    "stage",
                                                 "created_at",  "close_date",
                                                 "closed_at",   "outcome",
                                                 "changed_at",  "stage_probability",
                                                 NULL};
static const char *const fields_interaction[] = {"external_id", "opportunity_external_id",
                                                 "type",        "channel",
                                                 "occurred_at", "duration_min",
                                                 "outcome",     "meta_json",
                                                 NULL};
static const char *const fields_transcript[] = {"external_id", "opportunity_external_id", "occurred_at",
                                                "text", NULL};
static const char *const *const kind_fields[REC_KIND_COUNT] = {fields_account, fields_opportunity,
                                                               fields_interaction, fields_transcript};

/* The fields record_parse requires (DESIGN.md, "Records"). */
static const char *const req_account[] = {"external_id", "name", NULL};
static const char *const req_opportunity[] = {"external_id", "stage", "created_at", NULL};
static const char *const req_interaction[] = {"external_id", "opportunity_external_id", "type", "occurred_at",
                                              NULL};
static const char *const req_transcript[] = {"external_id", "opportunity_external_id", "occurred_at", "text",
                                             NULL};
static const char *const *const kind_required[REC_KIND_COUNT] = {req_account, req_opportunity,
                                                                 req_interaction, req_transcript};

/* Built-in aliases; kind -1 applies to every file whose kind has the target
 * field. Kind-specific entries come first so that "account_id" in
 * accounts.csv is the account's own id. */
static const struct {
    int kind;
    const char *from, *to;
} builtin_aliases[] = {
    {REC_ACCOUNT, "account_id", "external_id"},
    {REC_OPPORTUNITY, "opportunity_id", "external_id"},
    {REC_INTERACTION, "interaction_id", "external_id"},
    {REC_TRANSCRIPT, "transcript_id", "external_id"},
    {-1, "id", "external_id"},
    {-1, "account_id", "account_external_id"},
    {-1, "opportunity_id", "opportunity_external_id"},
    {-1, "opp_id", "opportunity_external_id"},
    {-1, "deal_id", "opportunity_external_id"},
    {-1, "owner", "owner_id"},
    {-1, "meta", "meta_json"},
};

typedef struct {
    char *from, *to; /* normalized */
} alias_t;

static int field_index(rec_kind_t kind, const char *name) {
    for (int i = 0; kind_fields[kind][i]; i++)
        if (strcmp(kind_fields[kind][i], name) == 0) return i;
    return -1;
}

static bool is_any_field(const char *name) {
    for (int k = 0; k < REC_KIND_COUNT; k++)
        if (field_index((rec_kind_t)k, name) >= 0) return true;
    return false;
}

/* Header names match case-insensitively with surrounding spaces ignored. */
static char *normalize(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *out = ds_strndup(s, n);
    for (char *c = out; *c; c++) *c = (char)tolower((unsigned char)*c);
    return out;
}

/* ---- state -------------------------------------------------------------- */

typedef struct {
    long rows, changed, unchanged, stale, events, rejected;
} counts_t;

typedef struct importer_s importer_t;

typedef struct {
    importer_t *im;
    const char *path;
    rec_kind_t kind;
    FILE *fp;

    struct csv_parser csv;
    long line;     /* physical line of the next byte fed to libcsv */
    long row_line; /* first line of the row being parsed */
    bool row_open;
    bool skip_line; /* after a parse error: drop the rest of the line */
    bool done;      /* abandoned (bad header, runaway row) or stopped */

    /* the row being parsed: fields back to back, NUL-terminated */
    char *rowbuf;
    size_t rowlen, rowcap;
    size_t *offs, *lens;
    size_t nfields, fieldcap;

    /* header */
    bool have_header;
    size_t ncols;
    int *colmap;    /* column -> index in kind_fields, or -1 */
    char **colname; /* column name as written (trimmed) */

    /* the chunk of valid records waiting to be stored */
    record_t *recs;
    int *lines;
    bool *stale;
    size_t nrecs;
    size_t chunk_bytes;

    json_t *obj;
    rec_problems_t problems;
    counts_t c;
    int64_t start_us, last_progress_us;
    long progress_rows;
} file_t;

struct importer_s {
    const ds_config_t *cfg;
    const char *org; /* --org */
    file_t files[REC_KIND_COUNT];
    ds_pg_t *pg;
    char org_id[37];
    json_t *stage_outcome;
    alias_t *aliases;
    size_t naliases;
    size_t batch;
    int retry_for_s;
    bool quiet;
    long max_shown, shown, hidden;
    FILE *errors; /* --errors FILE, or NULL for stderr lines */
    const char *errors_path;
    uint64_t seed;
    bool stopped;     /* Postgres stayed unreachable: nothing more is stored */
    bool check_only;  /* ingest_import_check: validate, store nothing */
    bool file_failed; /* a file could not be imported at all */
    counts_t total;

    /* scratch for storing a chunk */
    record_t *send;
    store_tag_t *tags;
};

/* ---- reporting ---------------------------------------------------------- */

static void csv_quote(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"') fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

/* The column name as the file writes it, for a canonical field name. */
static const char *column_for(const file_t *f, const char *field) {
    int fi = field_index(f->kind, field);
    if (fi < 0) return field;
    for (size_t i = 0; i < f->ncols; i++)
        if (f->colmap[i] == fi) return f->colname[i];
    return field;
}

static void report(file_t *f, long line, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report(file_t *f, long line, const char *field, const char *fmt, ...) {
    importer_t *im = f->im;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Problems arrive as one line each: keep embedded newlines (from a
     * database message, say) from breaking the FILE:LINE format. */
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    if (im->errors) {
        csv_quote(im->errors, f->path);
        fprintf(im->errors, ",%ld,", line);
        csv_quote(im->errors, field);
        fputc(',', im->errors);
        csv_quote(im->errors, msg);
        fputc('\n', im->errors);
        return;
    }
    if (im->max_shown >= 0 && im->shown >= im->max_shown) {
        im->hidden++;
        return;
    }
    im->shown++;
    fprintf(stderr, "%s:%ld: %s: %s\n", f->path, line, field, msg);
}

static void warn_line(const file_t *f, long line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warn_line(const file_t *f, long line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%ld: warning: %s\n", f->path, line, msg);
}

static void progress(file_t *f, bool force) {
    int64_t now = ds_mono_us();
    if (f->im->quiet || (!force && now - f->last_progress_us < PROGRESS_EVERY_US)) return;
    double rate = (double)(f->c.rows - f->progress_rows) * 1e6 / (double)(now - f->last_progress_us);
    fprintf(stderr, "%s: %ld rows, %.0f rows/s\n", f->path, f->c.rows, rate);
    f->last_progress_us = now;
    f->progress_rows = f->c.rows;
}

/* ---- storing ------------------------------------------------------------ */

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

typedef int (*pg_step_fn)(importer_t *im, void *ud, char *errstr, size_t errstr_size);

/* Runs step, reconnecting and retrying with backoff while Postgres is
 * unreachable (DS_ERETRY), for up to --retry-for seconds. Returns 0,
 * DS_EFATAL (the data was rejected; errstr says why) or DS_ERETRY (gave up). */
static int with_retry(importer_t *im, pg_step_fn step, void *ud, char *errstr, size_t errstr_size) {
    int64_t start = ds_mono_us();
    bool warned = false;
    for (int attempt = 0;; attempt++) {
        int rc = ds_pg_ensure(im->pg, 0, NULL, errstr, errstr_size);
        if (rc == DS_OK)
            rc = step(im, ud, errstr, errstr_size);
        else if (rc != DS_ERETRY)
            rc = DS_EFATAL; /* a statement does not prepare: retrying cannot help */
        if (rc != DS_ERETRY) {
            if (warned && rc == DS_OK) fprintf(stderr, "postgres is reachable again\n");
            return rc;
        }
        if (!ds_pg_is_connected(im->pg)) ds_pg_reset(im->pg);
        if (ds_mono_us() - start >= (int64_t)im->retry_for_s * 1000000) return DS_ERETRY;
        if (!warned) {
            fprintf(stderr, "postgres is unavailable (%s); retrying for up to %d s\n", errstr,
                    im->retry_for_s);
            warned = true;
        }
        sleep_ms(ds_pg_backoff_ms(attempt < 16 ? attempt : 16, &im->seed));
    }
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct {
    file_t *f;
    size_t from, n; /* range of f->recs */
    bool check_stale;
} chunk_t;

/* Marks the change rows of an opportunities chunk that are older than a
 * change already applied to their deal: the newest change stored for it
 * (its latest opportunity_history row) or an earlier row of the chunk.
 * opportunities.csv can be a change log (one row per change, in time order):
 * re-importing it must not replay old states over the current one, which
 * would add history rows and events for changes that are already there. */
typedef struct {
    const char *id; /* first member: compared by cmp_str_ptr */
    int64_t us;     /* newest change applied so far, INT64_MIN: none */
} newest_t;

static int mark_stale(importer_t *im, chunk_t *ck, char *errstr, size_t errstr_size) {
    file_t *f = ck->f;
    newest_t *nw = ds_calloc(ck->n ? ck->n : 1, sizeof *nw);
    const char **ids = ds_calloc(ck->n ? ck->n : 1, sizeof *ids);
    size_t nnw = 0;
    for (size_t i = ck->from; i < ck->from + ck->n; i++) {
        f->stale[i] = false;
        if (f->recs[i].changed_at_us) {
            nw[nnw].id = f->recs[i].external_id;
            nw[nnw].us = INT64_MIN;
            nnw++;
        }
    }
    if (!nnw) goto done;
    qsort(nw, nnw, sizeof *nw, cmp_str_ptr);
    size_t u = 0;
    for (size_t i = 0; i < nnw; i++)
        if (u == 0 || strcmp(nw[u - 1].id, nw[i].id) != 0) nw[u++] = nw[i];
    nnw = u;
    for (size_t i = 0; i < nnw; i++) ids[i] = nw[i].id;
    char *arr = ds_pg_array_text(ids, nnw);
    const char *v[] = {im->org_id, arr};
    PGresult *res = NULL;
    int rc = ds_pg_exec_params(im->pg,
                               "select o.external_id, (extract(epoch from max(h.changed_at)) * 1000000)::int8"
                               " from public.opportunities o join public.opportunity_history h"
                               "  on h.org_id = o.org_id and h.opportunity_id = o.id"
                               " where o.org_id = $1::uuid and o.external_id = any($2::text[])"
                               " group by o.external_id",
                               2, v, NULL, NULL, &res, errstr, errstr_size);
    free(arr);
    if (rc != DS_OK) {
        free(nw);
        free(ids);
        return rc;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        const char *key = PQgetvalue(res, r, 0);
        newest_t *hit = bsearch(&key, nw, nnw, sizeof *nw, cmp_str_ptr);
        if (hit) hit->us = strtoll(PQgetvalue(res, r, 1), NULL, 10);
    }
    PQclear(res);
    for (size_t i = ck->from; i < ck->from + ck->n; i++) {
        const record_t *rec = &f->recs[i];
        if (!rec->changed_at_us) continue;
        const char *key = rec->external_id;
        newest_t *hit = bsearch(&key, nw, nnw, sizeof *nw, cmp_str_ptr);
        ds_assert(hit != NULL);
        if (rec->changed_at_us < hit->us)
            f->stale[i] = true;
        else
            hit->us = rec->changed_at_us;
    }
done:
    free(nw);
    free(ids);
    return DS_OK;
}

/* One attempt at storing a range of records in one transaction. */
static int store_step(importer_t *im, void *ud, char *errstr, size_t errstr_size) {
    chunk_t *ck = ud;
    file_t *f = ck->f;
    if (ck->check_stale) {
        int rc = mark_stale(im, ck, errstr, errstr_size);
        if (rc != DS_OK) return rc;
    }
    size_t n = 0;
    for (size_t i = ck->from; i < ck->from + ck->n; i++) {
        if (f->stale[i]) continue;
        im->send[n++] = f->recs[i]; /* a shallow copy: f->recs keeps ownership */
    }
    if (!n) return DS_OK;
    store_ctx_t ctx = {im->org_id, "csv", NULL, im->stage_outcome, ds_now_us()};
    ds_pg_batch_t *b = NULL;
    int rc = ds_pg_batch_begin(im->pg, &b);
    if (rc != DS_OK) return rc;
    /* The upserts are prepared once per session, and Postgres keeps a
     * generic plan once it has one. Made while the tables were nearly empty
     * (the start of an import into a new org), that plan can pick an index
     * that fits then and scans the whole org later; nothing invalidates it
     * until an ANALYZE. Re-planning at every chunk follows the growth. */
    ds_pg_batch_add_sql(b, "DISCARD PLANS", NULL);
    ds_pg_batch_add_sql(b, "BEGIN", NULL);
    store_set_t *set = store_set_new();
    store_set_add(set, &ctx, im->send, n, im->tags);
    rc = store_set_queue(set, b);
    ds_pg_batch_add_sql(b, "COMMIT", NULL);
    if (rc == DS_OK) rc = ds_pg_batch_run(b, store_batch_cb, NULL, errstr, errstr_size);
    ds_pg_batch_end(b);
    store_set_destroy(set);
    return rc;
}

static void count_stored(file_t *f, size_t from, size_t n) {
    importer_t *im = f->im;
    size_t nsent = 0;
    for (size_t i = from; i < from + n; i++) {
        if (f->stale[i]) {
            f->c.unchanged++;
            f->c.stale++;
        } else {
            nsent++;
        }
    }
    store_counts_t sc = {0, 0, 0};
    store_collect(im->tags, nsent, &sc);
    f->c.changed += sc.changed;
    f->c.unchanged += sc.unchanged;
    f->c.events += sc.events;
}

/* "statement 3: value too long (SQLSTATE 22001)" -> "value too long ..." */
static const char *strip_statement(const char *err) {
    if (strncmp(err, "statement ", 10) == 0) {
        const char *p = strchr(err, ':');
        if (p && p[1] == ' ') return p + 2;
    }
    return err;
}

static void give_up(file_t *f, const char *err) {
    fprintf(stderr,
            "%s: postgres stayed unavailable for %d s (%s); stopping, rows from line %d on were "
            "not imported\n",
            f->path, f->im->retry_for_s, err, f->nrecs ? f->lines[0] : (int)f->line);
    f->im->stopped = true;
    f->done = true;
}

/* Stores the pending chunk; on a permanent error finds the rows the
 * database rejects by storing them one by one, and keeps the others. */
static void flush(file_t *f) {
    importer_t *im = f->im;
    if (!f->nrecs || im->stopped || im->check_only) goto out;
    char err[1024];
    chunk_t ck = {f, 0, f->nrecs, f->kind == REC_OPPORTUNITY};
    int rc = with_retry(im, store_step, &ck, err, sizeof err);
    if (rc == DS_OK) {
        count_stored(f, 0, f->nrecs);
    } else if (rc == DS_EFATAL) {
        for (size_t i = 0; i < f->nrecs && !im->stopped; i++) {
            /* The stale marks of the chunk attempt still hold: they depend
             * on what was stored before the chunk and on its own rows. */
            chunk_t one = {f, i, 1, false};
            int r = with_retry(im, store_step, &one, err, sizeof err);
            if (r == DS_OK) {
                count_stored(f, i, 1);
            } else if (r == DS_EFATAL) {
                report(f, f->lines[i], "record", "rejected_by_database: %s", strip_statement(err));
                f->c.rejected++;
            } else {
                give_up(f, err);
            }
        }
    } else {
        give_up(f, err);
    }
out:
    for (size_t i = 0; i < f->nrecs; i++) record_clear(&f->recs[i]);
    f->nrecs = 0;
    f->chunk_bytes = 0;
}

/* ---- rows --------------------------------------------------------------- */

static void row_reset(file_t *f) {
    f->rowlen = 0;
    f->nfields = 0;
    f->row_open = false;
}

static void on_header(file_t *f) {
    importer_t *im = f->im;
    long line = f->row_line;
    f->have_header = true;
    f->ncols = f->nfields;
    f->colmap = ds_calloc(f->ncols ? f->ncols : 1, sizeof *f->colmap);
    f->colname = ds_calloc(f->ncols ? f->ncols : 1, sizeof *f->colname);
    const char *kname = rec_kind_plural(f->kind);
    for (size_t i = 0; i < f->ncols; i++) {
        const char *raw = f->rowbuf + f->offs[i];
        size_t rl = f->lens[i];
        while (rl && isspace((unsigned char)*raw)) raw++, rl--;
        while (rl && isspace((unsigned char)raw[rl - 1])) rl--;
        f->colname[i] = ds_strndup(raw, rl);
        char *name = normalize(raw, rl);
        int fi = -1;
        for (size_t a = 0; a < im->naliases && fi < 0; a++)
            if (strcmp(im->aliases[a].from, name) == 0) fi = field_index(f->kind, im->aliases[a].to);
        if (fi < 0) fi = field_index(f->kind, name);
        for (size_t a = 0; a < DS_ARRAY_SIZE(builtin_aliases) && fi < 0; a++)
            if ((builtin_aliases[a].kind < 0 || builtin_aliases[a].kind == (int)f->kind) &&
                strcmp(builtin_aliases[a].from, name) == 0)
                fi = field_index(f->kind, builtin_aliases[a].to);
        if (fi < 0) {
            warn_line(f, line, "column \"%s\" is not a field of %s; ignored", f->colname[i], kname);
        } else {
            for (size_t j = 0; j < i; j++) {
                if (f->colmap[j] == fi) {
                    warn_line(f, line, "column \"%s\" is %s, like column \"%s\"; ignored", f->colname[i],
                              kind_fields[f->kind][fi], f->colname[j]);
                    fi = -1;
                    break;
                }
            }
        }
        f->colmap[i] = fi;
        free(name);
    }
    for (const char *const *r = kind_required[f->kind]; *r; r++) {
        int fi = field_index(f->kind, *r);
        bool found = false;
        for (size_t i = 0; i < f->ncols; i++) found = found || f->colmap[i] == fi;
        if (!found) {
            report(f, line, *r, "required column is missing from the header");
            f->done = true;
        }
    }
    if (f->done) {
        fprintf(stderr, "%s: not imported: the header lacks a required column\n", f->path);
        im->file_failed = true;
    }
}

static void on_data_row(file_t *f) {
    long line = f->row_line;
    f->c.rows++;
    if (f->nfields != f->ncols) {
        report(f, line, "record", "has %zu fields but the header has %zu", f->nfields, f->ncols);
        f->c.rejected++;
        return;
    }
    json_object_clear(f->obj);
    bool bad = false;
    for (size_t i = 0; i < f->ncols; i++) {
        if (f->colmap[i] < 0 || f->lens[i] == 0) continue; /* an empty cell is absent */
        const char *s = f->rowbuf + f->offs[i];
        const char *field = kind_fields[f->kind][f->colmap[i]];
        if (memchr(s, '\0', f->lens[i])) {
            report(f, line, f->colname[i], "contains a NUL byte");
            bad = true;
            continue;
        }
        json_t *v = json_stringn(s, f->lens[i]);
        if (!v) {
            report(f, line, f->colname[i], "is not valid UTF-8");
            bad = true;
            continue;
        }
        json_object_set_new(f->obj, field, v);
    }
    if (bad) {
        f->c.rejected++;
        return;
    }
    record_t *rec = &f->recs[f->nrecs];
    f->problems.n = 0;
    if (record_parse(f->kind, f->obj, (int)line, true, rec, &f->problems) != 0) {
        for (size_t i = 0; i < f->problems.n; i++)
            report(f, f->problems.items[i].index, column_for(f, f->problems.items[i].field), "%s",
                   f->problems.items[i].problem);
        f->c.rejected++;
        return;
    }
    f->lines[f->nrecs] = (int)line;
    f->stale[f->nrecs] = false;
    f->chunk_bytes += f->rowlen;
    if (++f->nrecs == f->im->batch || f->chunk_bytes >= CHUNK_MAX_BYTES) flush(f);
}

static void on_field(void *s, size_t len, void *data) {
    file_t *f = data;
    if (!f->row_open) {
        f->row_open = true;
        f->row_line = f->line;
    }
    if (f->nfields == f->fieldcap) {
        f->fieldcap = f->fieldcap ? f->fieldcap * 2 : 32;
        f->offs = ds_realloc(f->offs, f->fieldcap * sizeof *f->offs);
        f->lens = ds_realloc(f->lens, f->fieldcap * sizeof *f->lens);
    }
    if (f->rowlen + len + 1 > f->rowcap) {
        while (f->rowlen + len + 1 > f->rowcap) f->rowcap = f->rowcap ? f->rowcap * 2 : 4096;
        f->rowbuf = ds_realloc(f->rowbuf, f->rowcap);
    }
    if (len) memcpy(f->rowbuf + f->rowlen, s, len);
    f->rowbuf[f->rowlen + len] = '\0';
    f->offs[f->nfields] = f->rowlen;
    f->lens[f->nfields] = len;
    f->nfields++;
    f->rowlen += len + 1;
}

static void on_row(int c, void *data) {
    (void)c;
    file_t *f = data;
    if (!f->row_open) f->row_line = f->line;
    bool blank = true;
    for (size_t i = 0; i < f->nfields && blank; i++) blank = f->lens[i] == 0;
    /* Spreadsheets leave rows of empty cells (",,,,") behind. */
    if (!f->done && !f->im->stopped && !(blank && f->have_header)) {
        if (!f->have_header)
            on_header(f);
        else
            on_data_row(f);
    }
    row_reset(f);
    if ((f->c.rows & 1023) == 0) progress(f, false);
}

/* ---- reading ------------------------------------------------------------ */

static void parser_init(file_t *f) {
    if (csv_init(&f->csv, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
        ds_panic("could not initialize libcsv");
    csv_set_realloc_func(&f->csv, ds_realloc);
    /* libcsv grows its field buffer linearly by this much. */
    csv_set_blk_size(&f->csv, 64 * 1024);
}

static void parser_restart(file_t *f) {
    csv_free(&f->csv);
    parser_init(f);
    row_reset(f);
}

/* A record that is not valid CSV: report it, drop it, and resynchronize at
 * the next line. */
static void bad_csv(file_t *f, const char *what, bool at_eof) {
    long start = f->row_open ? f->row_line : f->line;
    if (!f->have_header) {
        report(f, start, "record", "the header is not valid CSV: %s", what);
        fprintf(stderr, "%s: not imported: the header is not valid CSV\n", f->path);
        f->im->file_failed = true;
        f->done = true;
        return;
    }
    if (f->line != start && !at_eof)
        report(f, start, "record", "is not valid CSV: %s (on line %ld)", what, f->line);
    else
        report(f, start, "record", "is not valid CSV: %s", what);
    f->c.rows++;
    f->c.rejected++;
}

static bool has_content(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return true;
    return false;
}

static void feed(file_t *f, const char *buf, size_t len) {
    size_t off = 0;
    while (off < len && !f->done) {
        const char *nl = memchr(buf + off, '\n', len - off);
        size_t seg = nl ? (size_t)(nl - (buf + off)) + 1 : len - off;
        if (f->skip_line) {
            if (nl) {
                f->skip_line = false;
                f->line++;
            }
            off += seg;
            continue;
        }
        /* libcsv skips blank lines and leading blanks before a row. */
        if (!f->row_open && has_content(buf + off, seg)) {
            f->row_open = true;
            f->row_line = f->line;
        }
        size_t used = csv_parse(&f->csv, buf + off, seg, on_field, on_row, f);
        if (used < seg && !f->done) {
            bad_csv(f,
                    csv_error(&f->csv) == CSV_EPARSE
                        ? "a quote inside an unquoted field, or text after a closing quote"
                        : csv_strerror(csv_error(&f->csv)),
                    false);
            parser_restart(f);
            if (!nl) f->skip_line = true;
        }
        if (nl) f->line++;
        off += seg;
        if (!f->done && f->row_open && f->rowlen + f->csv.entry_pos > MAX_ROW_BYTES) {
            report(f, f->row_line, "record",
                   "is larger than %zu MiB (a quoted field that is never closed?); the rest of "
                   "the file was not imported",
                   MAX_ROW_BYTES >> 20);
            f->c.rows++;
            f->c.rejected++;
            f->done = true;
        }
    }
}

static void import_file(importer_t *im, file_t *f) {
    f->line = 1;
    f->obj = json_object();
    f->recs = ds_calloc(im->batch, sizeof *f->recs);
    f->lines = ds_calloc(im->batch, sizeof *f->lines);
    f->stale = ds_calloc(im->batch, sizeof *f->stale);
    f->start_us = f->last_progress_us = ds_mono_us();
    parser_init(f);
    char *buf = ds_malloc(READ_BLOCK);
    bool first = true;
    size_t n;
    while (!f->done && !im->stopped && (n = fread(buf, 1, READ_BLOCK, f->fp)) > 0) {
        const char *p = buf;
        /* A UTF-8 byte order mark (spreadsheet exports) is not part of the
         * first column's name. */
        if (first && n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3, n -= 3;
        first = false;
        feed(f, p, n);
    }
    if (ferror(f->fp)) {
        fprintf(stderr, "%s: read error: %s; the rest of the file was not imported\n", f->path,
                strerror(errno));
        im->file_failed = true;
    } else if (!f->done && !im->stopped) {
        if (csv_fini(&f->csv, on_field, on_row, f) != 0) {
            bad_csv(f, "a quoted field is never closed (end of file inside quotes)", true);
            row_reset(f);
        }
    }
    flush(f);
    if (!f->have_header && !f->done) {
        fprintf(stderr, "%s: empty file (no header row)\n", f->path);
    }
    free(buf);
    csv_free(&f->csv);
    progress(f, f->c.rows > 0 && ds_mono_us() - f->start_us >= PROGRESS_EVERY_US);
}

static void file_free(file_t *f) {
    if (f->fp) fclose(f->fp);
    json_decref(f->obj);
    free(f->recs);
    free(f->lines);
    free(f->stale);
    free(f->rowbuf);
    free(f->offs);
    free(f->lens);
    free(f->colmap);
    for (size_t i = 0; f->colname && i < f->ncols; i++) free(f->colname[i]);
    free(f->colname);
    rec_problems_free(&f->problems);
}

void ingest_import_check(rec_kind_t kind, const char *buf, size_t len, FILE *errors, long *rows,
                         long *rejected) {
    importer_t im = {.batch = DEFAULT_BATCH,
                     .check_only = true,
                     .quiet = true,
                     .errors = errors,
                     .max_shown = DEFAULT_MAX_SHOWN};
    file_t f = {.im = &im, .path = "-", .kind = kind};
    *rows = *rejected = 0;
    if (len == 0) return;
    f.fp = fmemopen((void *)buf, len, "r");
    if (!f.fp) ds_panic("could not open a memory stream");
    import_file(&im, &f);
    *rows = f.c.rows;
    *rejected = f.c.rejected;
    file_free(&f);
}

/* ---- command line ------------------------------------------------------- */

static void help(FILE *out) {
    fprintf(out,
            "usage: dealscore-ingest import --org SLUG [--accounts FILE] [--opportunities FILE]\n"
            "           [--interactions FILE] [--transcripts FILE] [--alias FROM=TO]...\n"
            "           [--errors FILE] [--max-errors N] [--batch N] [--retry-for SECONDS] [--quiet]\n"
            "\n"
            "Imports CRM records from CSV files into the org's raw layer through the same\n"
            "validation and idempotent upserts as the webhooks (with history and outbox rows).\n"
            "Give any subset of the four files; they are imported in the order accounts,\n"
            "opportunities, interactions, transcripts. Files are streamed: memory stays flat.\n"
            "\n"
            "Files: RFC 4180 CSV in UTF-8 with a header row. Columns are matched by header name,\n"
            "case-insensitively and ignoring surrounding spaces, in any order; an unknown column\n"
            "gets one warning and is ignored; an empty cell is an absent value. Columns are the\n"
            "DESIGN.md record fields (interactions: meta_json holds the meta JSON object).\n"
            "opportunities.csv may be a change log (one row per change with changed_at, in time\n"
            "order): a row older than a change already applied to its deal is skipped (counted as\n"
            "unchanged), so importing the same files again changes nothing. Rows whose cells are\n"
            "all empty are skipped like blank lines.\n"
            "\n"
            "Aliases map other column names onto fields: built in are id, account_id,\n"
            "opportunity_id, opp_id, deal_id, owner, meta (account_id is external_id in accounts.csv,\n"
            "opportunity_id in opportunities.csv ...). Add more with --alias FROM=TO (repeatable) or\n"
            "DEALSCORE_CSV_ALIASES=\"from=to,from2=to2\"; --alias wins over the variable, both over\n"
            "the built-in ones.\n"
            "\n"
            "Options:\n"
            "  --org SLUG          the org (must exist: dealscore-ingest token create --org SLUG)\n"
            "  --errors FILE       write the problems as CSV (file,line,field,problem) to FILE\n"
            "                      instead of stderr\n"
            "  --max-errors N      problems shown on stderr (default %d, -1: all)\n"
            "  --batch N           records per transaction (default %d)\n"
            "  --retry-for S       keep retrying while Postgres is unreachable for S seconds\n"
            "                      (default %d), then stop\n"
            "  --quiet             no progress lines\n"
            "\n"
            "Output: every problem of a rejected row goes to stderr as one line\n"
            "  FILE:LINE: FIELD: PROBLEM\n"
            "where LINE is the physical line on which the record starts (the header is line 1)\n"
            "and FIELD the column (\"record\" for the whole row: invalid CSV, wrong field count,\n"
            "rejected_by_database). A rejected row does not stop the others. Warnings go to\n"
            "stderr as FILE:LINE: warning: ..., and a progress line every 2 s for long files.\n"
            "stdout gets one summary line per file and a final line:\n"
            "  imported N records (C changed, U unchanged, E events), R rejected, in S s (X rows/s)\n"
            "\n"
            "Exit status: 0 everything imported; 1 some rows rejected (or a file not imported);\n"
            "2 nothing imported, bad usage, unknown org, unreadable file or no database.\n"
            "\n"
            "Environment: DEALSCORE_DATABASE_URL, DEALSCORE_CSV_ALIASES, DEALSCORE_LOG_LEVEL.\n",
            DEFAULT_MAX_SHOWN, DEFAULT_BATCH, DEFAULT_RETRY_FOR_S);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dealscore-ingest import: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see dealscore-ingest import --help)\n");
    return 2;
}

/* Adds "from=to" to the alias list; origin names the source in errors. */
static int add_alias(importer_t *im, const char *spec, size_t len, const char *origin) {
    const char *eq = memchr(spec, '=', len);
    if (!eq) return usage_error("%s: alias \"%.*s\" is not FROM=TO", origin, (int)len, spec);
    char *from = normalize(spec, (size_t)(eq - spec));
    char *to = normalize(eq + 1, len - (size_t)(eq - spec) - 1);
    if (!*from || !is_any_field(to)) {
        int rc = usage_error("%s: alias \"%.*s\": %s", origin, (int)len, spec,
                             !*from ? "FROM is empty" : "TO is not a record field");
        free(from);
        free(to);
        return rc;
    }
    im->aliases = ds_realloc(im->aliases, (im->naliases + 1) * sizeof *im->aliases);
    im->aliases[im->naliases++] = (alias_t){from, to};
    return 0;
}

static void print_counts(const char *label, const counts_t *c, double secs) {
    printf("%s%ld records (%ld changed, %ld unchanged, %ld events), %ld rejected, in %.2f s "
           "(%.0f rows/s)\n",
           label, c->changed + c->unchanged, c->changed, c->unchanged, c->events, c->rejected, secs,
           secs > 0 ? (double)c->rows / secs : 0.0);
}

/* A phase of the command returns IMPORT_GO_ON to let the next one run, or
 * the exit status to stop with. */
#define IMPORT_GO_ON (-1)

static int parse_options(importer_t *im, int argc, char **argv) {
    static const struct option opts[] = {{"org", required_argument, 0, 'o'},
                                         {"accounts", required_argument, 0, 'A'},
                                         {"opportunities", required_argument, 0, 'O'},
                                         {"interactions", required_argument, 0, 'I'},
                                         {"transcripts", required_argument, 0, 'T'},
                                         {"alias", required_argument, 0, 'a'},
                                         {"errors", required_argument, 0, 'e'},
                                         {"max-errors", required_argument, 0, 'm'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"retry-for", required_argument, 0, 'r'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    file_t *files = im->files;
    optind = 1;
    opterr = 0;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(stdout); return 0;
        case 'o': im->org = optarg; break;
        case 'A': files[REC_ACCOUNT].path = optarg; break;
        case 'O': files[REC_OPPORTUNITY].path = optarg; break;
        case 'I': files[REC_INTERACTION].path = optarg; break;
        case 'T': files[REC_TRANSCRIPT].path = optarg; break;
        case 'a':
            if (add_alias(im, optarg, strlen(optarg), "--alias") != 0) return 2;
            break;
        case 'e': im->errors_path = optarg; break;
        case 'm':
            if (!ds_parse_long(optarg, -1, 1L << 30, &v))
                return usage_error("--max-errors must be a number >= -1");
            im->max_shown = v;
            break;
        case 'b':
            if (!ds_parse_long(optarg, 1, MAX_BATCH, &v))
                return usage_error("--batch must be a number from 1 to %d", MAX_BATCH);
            im->batch = (size_t)v;
            break;
        case 'r':
            if (!ds_parse_long(optarg, 0, 86400, &v))
                return usage_error("--retry-for must be a number of seconds from 0 to 86400");
            im->retry_for_s = (int)v;
            break;
        case 'q': im->quiet = true; break;
        case ':': return usage_error("%s needs a value", argv[optind - 1]);
        default: return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (!im->org) return usage_error("--org is required");
    return IMPORT_GO_ON;
}

/* DEALSCORE_CSV_ALIASES, after --alias so that the option wins. */
static int add_env_aliases(importer_t *im) {
    const char *env_aliases = im->cfg->csv_aliases;
    if (!env_aliases) return IMPORT_GO_ON;
    for (const char *p = env_aliases; *p;) {
        size_t len = strcspn(p, ",");
        bool blank = !has_content(p, len);
        if (!blank && add_alias(im, p, len, "DEALSCORE_CSV_ALIASES") != 0) return 2;
        p += len;
        if (*p == ',') p++;
    }
    return IMPORT_GO_ON;
}

/* Opens every input file and the --errors file before anything is stored:
 * a typo should not leave a half import. */
static int open_files(importer_t *im) {
    size_t nfiles = 0;
    for (int k = 0; k < REC_KIND_COUNT; k++) {
        file_t *f = &im->files[k];
        if (!f->path) continue;
        nfiles++;
        f->fp = fopen(f->path, "rb");
        if (!f->fp) {
            fprintf(stderr, "dealscore-ingest import: cannot read %s: %s\n", f->path, strerror(errno));
            return 2;
        }
    }
    if (!nfiles)
        return usage_error("give at least one of --accounts, --opportunities, --interactions, --transcripts");
    if (im->errors_path) {
        im->errors = fopen(im->errors_path, "w");
        if (!im->errors) {
            fprintf(stderr, "dealscore-ingest import: cannot write %s: %s\n", im->errors_path,
                    strerror(errno));
            return 2;
        }
        fprintf(im->errors, "file,line,field,problem\n");
    }
    return IMPORT_GO_ON;
}

static int connect_to_org(importer_t *im) {
    char err[512];
    if (ds_pg_new(&im->pg, im->cfg->database_url, "dealscore-ingest-import", err, sizeof err) != 0 ||
        ds_pg_ensure(im->pg, im->retry_for_s * 1000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-ingest import: could not connect to Postgres: %s\n", err);
        return 2;
    }
    int r = store_org_by_slug(im->pg, im->org, false, im->org_id, err, sizeof err);
    if (r == DS_ENOTFOUND) {
        fprintf(stderr,
                "dealscore-ingest import: %s (create it with: dealscore-ingest token create --org %s)\n", err,
                im->org);
        return 2;
    } else if (r != DS_OK) {
        fprintf(stderr, "dealscore-ingest import: could not look up the org: %s\n", err);
        return 2;
    }
    im->stage_outcome = store_org_stage_outcome(im->pg, im->org_id);
    store_register(im->pg);
    return IMPORT_GO_ON;
}

static void counts_add(counts_t *total, const counts_t *c) {
    total->rows += c->rows;
    total->changed += c->changed;
    total->unchanged += c->unchanged;
    total->stale += c->stale;
    total->events += c->events;
    total->rejected += c->rejected;
}

static void print_file_summary(const file_t *f) {
    double secs = (double)(ds_mono_us() - f->start_us) / 1e6;
    printf("%s: %ld rows: %ld imported (%ld changed, %ld unchanged", f->path, f->c.rows,
           f->c.changed + f->c.unchanged, f->c.changed, f->c.unchanged);
    if (f->c.stale) printf(" of which %ld older than applied changes", f->c.stale);
    printf(", %ld events), %ld rejected, in %.2f s (%.0f rows/s)\n", f->c.events, f->c.rejected, secs,
           secs > 0 ? (double)f->c.rows / secs : 0.0);
    fflush(stdout);
}

/* Imports the files in the order of the record kinds and prints the
 * summary; returns the exit status. */
static int import_files(importer_t *im) {
    im->seed = (uint64_t)ds_now_us();
    im->send = ds_calloc(im->batch, sizeof *im->send);
    im->tags = ds_calloc(im->batch, sizeof *im->tags);
    int64_t t0 = ds_mono_us();
    for (int k = 0; k < REC_KIND_COUNT && !im->stopped; k++) {
        file_t *f = &im->files[k];
        if (!f->path) continue;
        import_file(im, f);
        print_file_summary(f);
        counts_add(&im->total, &f->c);
    }
    if (im->hidden)
        fprintf(stderr, "%ld more problems not shown (--errors FILE writes them all)\n", im->hidden);
    print_counts("imported ", &im->total, (double)(ds_mono_us() - t0) / 1e6);
    if (im->stopped) printf("stopped early: postgres was unavailable\n");

    long imported = im->total.changed + im->total.unchanged;
    bool trouble = im->total.rejected > 0 || im->stopped || im->file_failed;
    return !trouble ? 0 : imported > 0 ? 1 : 2;
}

/* Closes the --errors file (a failed close turns success into 1) and frees
 * the importer; returns the exit status. */
static int importer_close(importer_t *im, int rc) {
    if (im->errors && fclose(im->errors) != 0) {
        fprintf(stderr, "dealscore-ingest import: could not write %s: %s\n", im->errors_path,
                strerror(errno));
        if (rc == 0) rc = 1;
    }
    for (int k = 0; k < REC_KIND_COUNT; k++) file_free(&im->files[k]);
    for (size_t i = 0; i < im->naliases; i++) {
        free(im->aliases[i].from);
        free(im->aliases[i].to);
    }
    free(im->aliases);
    free(im->send);
    free(im->tags);
    json_decref(im->stage_outcome);
    ds_pg_destroy(im->pg);
    return rc;
}

int ingest_cmd_import(const ds_config_t *cfg, int argc, char **argv) {
    importer_t im = {.cfg = cfg,
                     .batch = DEFAULT_BATCH,
                     .retry_for_s = DEFAULT_RETRY_FOR_S,
                     .max_shown = DEFAULT_MAX_SHOWN};
    for (int k = 0; k < REC_KIND_COUNT; k++) {
        im.files[k].im = &im;
        im.files[k].kind = (rec_kind_t)k;
    }
    int rc = parse_options(&im, argc, argv);
    if (rc == IMPORT_GO_ON) rc = add_env_aliases(&im);
    if (rc == IMPORT_GO_ON) rc = open_files(&im);
    if (rc == IMPORT_GO_ON) rc = connect_to_org(&im);
    if (rc == IMPORT_GO_ON) rc = import_files(&im);
    return importer_close(&im, rc);
}
