/* dealscore-scoring lexicon import: an org's own MEDDICC phrases from CSV
 * (element,phrase[,weight]) into meddicc_lexicon, next to the default rows
 * (org_id null) the feature engine compiles with them. Every row is checked
 * first (the element, the phrase as ds_meddicc_lexicon_new compiles it, the
 * weight, repeats); one bad row and nothing is written. The rows go in with
 * one statement, so a failure leaves the table as it was; importing a file
 * again updates the same rows. Weight 0 switches a phrase off for the org,
 * default phrases included. */
#include <csv.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/common.h"
#include "base/sb.h"
#include "domain/meddicc.h"
#include "infra/pg.h"
#include "scoring.h"

#define LEXICON_MAX_ROWS 10000
#define LEXICON_MAX_PROBLEMS 20

typedef struct {
    char *element, *phrase;
    double weight;
    long row; /* CSV row, the header being row 1 */
} lex_row_t;

typedef struct {
    const char *path;
    int col[3]; /* element, phrase, weight: field index, -1 absent */
    char *field[3];
    int nfield;
    long row;
    lex_row_t *rows;
    size_t n;
    int problems;
} lex_file_t;

static void problem(lex_file_t *f, long row, const char *field, const char *msg) {
    if (f->problems++ < LEXICON_MAX_PROBLEMS)
        fprintf(stderr, "dealscore-scoring lexicon import: %s row %ld: %s: %s\n", f->path, row, field, msg);
}

static void on_field(void *data, size_t len, void *ud) {
    lex_file_t *f = ud;
    static const char *const names[3] = {"element", "phrase", "weight"};
    if (f->row == 1) {
        for (int i = 0; i < 3; i++)
            if (len == strlen(names[i]) && strncasecmp(data, names[i], len) == 0) f->col[i] = f->nfield;
    } else {
        for (int i = 0; i < 3; i++)
            if (f->col[i] == f->nfield) f->field[i] = ds_strndup(data, len);
    }
    f->nfield++;
}

/* Checks one data row and keeps it; a problem is reported and counted. */
static void take_row(lex_file_t *f) {
    lex_row_t r = {f->field[0], f->field[1], 1.0, f->row};
    f->field[0] = f->field[1] = NULL;
    int el = r.element ? ds_meddicc_element_parse(r.element) : -1;
    if (el < 0) problem(f, f->row, "element", "not a MEDDICC element (metrics, economic_buyer, ...)");
    char *end = NULL;
    if (f->field[2] && *f->field[2]) r.weight = strtod(f->field[2], &end);
    if (end && (*end || !isfinite(r.weight) || r.weight < 0))
        problem(f, f->row, "weight", "must be a number >= 0 (0 switches the phrase off)");
    ds_meddicc_phrase_t one = {el >= 0 ? ds_meddicc_element_name(el) : "metrics", r.phrase ? r.phrase : ""};
    ds_meddicc_lexicon_t *lex = NULL;
    char why[256];
    if (ds_meddicc_lexicon_new(&one, 1, &lex, why, sizeof why) != 0) {
        const char *sep = strstr(why, ": "); /* past the compiler's "lexicon row 1: " */
        problem(f, f->row, "phrase", sep ? sep + 2 : why);
    }
    ds_meddicc_lexicon_destroy(lex);
    for (size_t i = 0; i < f->n && el >= 0 && r.phrase; i++)
        if (strcmp(f->rows[i].element, one.element) == 0 && strcasecmp(f->rows[i].phrase, r.phrase) == 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "repeats row %ld", f->rows[i].row);
            problem(f, f->row, "phrase", msg);
        }
    if (el >= 0 && f->n < LEXICON_MAX_ROWS) {
        free(r.element);
        r.element = ds_strdup(one.element);
        f->rows[f->n++] = r;
    } else {
        if (f->n >= LEXICON_MAX_ROWS) problem(f, f->row, "file", "more than 10000 rows");
        free(r.element);
        free(r.phrase);
    }
}

static void on_row(int c, void *ud) {
    (void)c;
    lex_file_t *f = ud;
    if (f->row == 1 && (f->col[0] < 0 || f->col[1] < 0))
        problem(f, 1, "header", "needs the columns element and phrase (weight is optional)");
    else if (f->row > 1)
        take_row(f);
    free(f->field[2]);
    f->field[2] = NULL;
    f->nfield = 0;
    f->row++;
}

/* Reads and checks the whole file; returns 0 when every row is good. */
static int read_lexicon_csv(lex_file_t *f) {
    FILE *in = fopen(f->path, "rb");
    if (!in) {
        fprintf(stderr, "dealscore-scoring lexicon import: cannot read %s\n", f->path);
        return 1;
    }
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
        ds_panic("could not initialize libcsv");
    f->rows = ds_calloc(LEXICON_MAX_ROWS, sizeof *f->rows);
    char buf[65536];
    size_t got;
    bool bad = false;
    while (!bad && (got = fread(buf, 1, sizeof buf, in)) > 0)
        bad = csv_parse(&p, buf, got, on_field, on_row, f) != got;
    if (bad || csv_fini(&p, on_field, on_row, f) != 0)
        problem(f, f->row, "file", "is not valid CSV (RFC 4180: check the quotes)");
    csv_free(&p);
    fclose(in);
    if (f->row <= 1) problem(f, 1, "header", "the file is empty");
    return f->problems ? 1 : 0;
}

static char *rows_json(const lex_file_t *f) {
    ds_sb_t sb = {0};
    ds_sb_puts(&sb, "[");
    for (size_t i = 0; i < f->n; i++) {
        ds_sb_puts(&sb, i ? ",{\"element\":" : "{\"element\":");
        ds_sb_json_str(&sb, f->rows[i].element);
        ds_sb_puts(&sb, ",\"phrase\":");
        ds_sb_json_str(&sb, f->rows[i].phrase);
        ds_sb_printf(&sb, ",\"weight\":%.9g}", f->rows[i].weight);
    }
    ds_sb_puts(&sb, "]");
    return ds_sb_take(&sb);
}

static const char SQL_UPSERT[] =
    "with o as (select id from public.orgs where slug = $1)"
    " insert into public.meddicc_lexicon (org_id, element, phrase, weight)"
    " select o.id, r.element, r.phrase, r.weight from o,"
    " jsonb_to_recordset($2::jsonb) as r(element text, phrase text, weight real)"
    " on conflict (org_id, element, lower(phrase)) do update set phrase = excluded.phrase,"
    " weight = excluded.weight returning (xmax = 0)";

static int store_rows(const ds_config_t *cfg, const char *org, const lex_file_t *f) {
    char err[1024];
    ds_pg_t *pg = NULL;
    PGresult *r = NULL;
    const char *v[2] = {org, NULL};
    int rc = 1;
    if (ds_pg_new(&pg, cfg->database_url, "dealscore-scoring-lexicon", err, sizeof err) != 0 ||
        ds_pg_ensure(pg, 30000, NULL, err, sizeof err) != 0 ||
        ds_pg_exec_params(pg, "select 1 from public.orgs where slug = $1", 1, v, NULL, NULL, &r, err,
                          sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring lexicon import: could not read the org: %s\n", err);
    } else if (PQntuples(r) != 1) {
        fprintf(stderr, "dealscore-scoring lexicon import: no org \"%s\"\n", org);
    } else {
        PQclear(r);
        r = NULL;
        char *json = rows_json(f);
        v[1] = json;
        if (ds_pg_exec_params(pg, SQL_UPSERT, 2, v, NULL, NULL, &r, err, sizeof err) != 0) {
            fprintf(stderr, "dealscore-scoring lexicon import: nothing written: %s\n", err);
        } else {
            int added = 0;
            for (int i = 0; i < PQntuples(r); i++) added += PQgetvalue(r, i, 0)[0] == 't';
            printf("lexicon of org %s: %d phrases imported from %s (%d added, %d updated)\n", org,
                   PQntuples(r), f->path, added, PQntuples(r) - added);
            rc = 0;
        }
        free(json);
    }
    PQclear(r);
    ds_pg_destroy(pg);
    return rc;
}

static void help(FILE *out) {
    fprintf(out, "usage: dealscore-scoring lexicon import --org SLUG FILE.csv\n"
                 "\n"
                 "Adds the org's own MEDDICC phrases to meddicc_lexicon, next to the default set.\n"
                 "FILE.csv (RFC 4180, UTF-8, a header row) has the columns element and phrase, and\n"
                 "optionally weight (default 1; 0 switches the phrase off for the org, a default\n"
                 "phrase too). Elements: metrics, economic_buyer, decision_criteria,\n"
                 "decision_process, paper_process, identify_pain, champion, competition.\n"
                 "Phrases match as the feature engine's lexicon does (domain/meddicc.h). Every row\n"
                 "is checked first: one bad row (named by row and column) and nothing is written.\n"
                 "Importing the file again updates the same rows. The feature worker and\n"
                 "/api/predict use the new lexicon once their org cache renews (within a minute).\n"
                 "Exit status: 0 imported, 1 a bad row or a database failure (nothing written),\n"
                 "2 bad usage.\n");
}

int scoring_cmd_lexicon(const ds_config_t *cfg, int argc, char **argv) {
    static const struct option opts[] = {
        {"org", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *org = NULL;
    int c;
    optind = 1;
    opterr = 0;
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        help(stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "import") != 0)
        return scoring_usage_error("lexicon", "the only action is \"import\"");
    optind = 2;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c == 'h') {
            help(stdout);
            return 0;
        }
        if (c == 'o')
            org = optarg;
        else
            return scoring_usage_error("lexicon import", "unknown or incomplete option \"%s\"",
                                       argv[optind - 1]);
    }
    if (!org || !*org) return scoring_usage_error("lexicon import", "--org is required");
    if (optind + 1 != argc) return scoring_usage_error("lexicon import", "give exactly one FILE.csv");
    lex_file_t f = {.path = argv[optind], .col = {-1, -1, -1}, .row = 1};
    int rc = read_lexicon_csv(&f);
    if (rc != 0)
        fprintf(stderr, "dealscore-scoring lexicon import: %d problem(s) in %s; nothing written\n",
                f.problems, f.path);
    else
        rc = store_rows(cfg, org, &f);
    for (size_t i = 0; i < f.n; i++) {
        free(f.rows[i].element);
        free(f.rows[i].phrase);
    }
    free(f.rows);
    free(f.field[0]);
    free(f.field[1]);
    free(f.field[2]);
    return rc;
}
