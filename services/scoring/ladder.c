/* dealscore-scoring ladder set|show|clear: an org's stage ladder, the prior
 * of its deals while it has neither a model nor enough closed deals for its
 * own stage win rates (domain/prior.h), in dealscore_internal.stage_ladders. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "domain/prior.h"
#include "scoring.h"

#define MAX_RUNGS DS_LADDER_MAX

static const char *const usage_text =
    "usage: dealscore-scoring ladder set --org SLUG (--stage NAME=P ... | --csv FILE)\n"
    "       dealscore-scoring ladder show --org SLUG\n"
    "       dealscore-scoring ladder clear --org SLUG\n"
    "  set replaces the org's ladder: P is the prior probability (0 .. 1) of an open deal in\n"
    "  stage NAME (a stage of the org's stage order); stages not given take the default\n"
    "  ladder's value between their neighbours; the ladder must rise with stage order.\n"
    "  --csv FILE: lines stage,probability (a header line is skipped).\n"
    "  Exit status: 0 done, 1 failure, 2 bad usage or an invalid ladder.\n";

typedef struct {
    char stage[128];
    double p;
} entry_t;

typedef struct {
    const char *org, *csv;
    entry_t e[MAX_RUNGS];
    size_t n;
} ladder_opts_t;

static int bad(const char *fmt, const char *arg) {
    fprintf(stderr, "dealscore-scoring ladder: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 2;
}

/* "NAME=P" or "NAME,P" (sep) into an entry. */
static int parse_entry(const char *text, char sep, entry_t *out) {
    const char *eq = strrchr(text, sep);
    if (!eq || eq == text || (size_t)(eq - text) >= sizeof out->stage)
        return bad("'%s' is not STAGE=PROBABILITY", text);
    memcpy(out->stage, text, (size_t)(eq - text));
    out->stage[eq - text] = '\0';
    char *end;
    errno = 0;
    out->p = strtod(eq + 1, &end);
    while (*end == ' ' || *end == '\r' || *end == '\n') end++;
    if (errno || end == eq + 1 || *end || !(out->p >= 0 && out->p <= 1))
        return bad("'%s': the probability must be a number from 0 to 1", text);
    return 0;
}

static int read_csv(ladder_opts_t *o) {
    FILE *f = fopen(o->csv, "r");
    if (!f) return bad("cannot read %s", o->csv);
    char line[512];
    int rc = 0, lineno = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || (lineno == 1 && strstr(line, "probability"))) continue;
        if (o->n == MAX_RUNGS) rc = bad("%s has more stages than a ladder holds", o->csv);
        if (rc == 0) rc = parse_entry(line, ',', &o->e[o->n++]);
    }
    fclose(f);
    return rc;
}

static int parse_args(int argc, char **argv, ladder_opts_t *o) {
    static const struct option opts[] = {{"org", required_argument, 0, 'o'},
                                         {"stage", required_argument, 0, 's'},
                                         {"csv", required_argument, 0, 'c'},
                                         {0, 0, 0, 0}};
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'o') {
            o->org = optarg;
        } else if (c == 'c') {
            o->csv = optarg;
        } else if (c == 's') {
            if (o->n == MAX_RUNGS) return bad("more than %s stages", "64");
            if (parse_entry(optarg, '=', &o->e[o->n++]) != 0) return 2;
        } else {
            fputs(usage_text, stderr);
            return 2;
        }
    }
    if (optind < argc) return bad("unexpected argument '%s'", argv[optind]);
    if (!o->org) return bad("%s is required", "--org");
    if (o->csv && read_csv(o) != 0) return 2;
    return 0;
}

/* The rungs of the entries on the org's stage order; 2 with a message for
 * a stage that is not an open stage of the org, or a ladder that falls. */
static int to_rungs(const ladder_opts_t *o, const ds_stage_list_t *stages, size_t n_open,
                    ds_ladder_rung_t *rungs, ds_ladder_t *ladder) {
    for (size_t i = 0; i < o->n; i++) {
        int idx = ds_stage_list_index(stages, o->e[i].stage);
        if (idx < 0) return bad("stage '%s' is not in the org's stage order", o->e[i].stage);
        if ((size_t)idx >= n_open)
            return bad("stage '%s' is a closed stage (won deals score 1, lost 0)", o->e[i].stage);
        rungs[i] = (ds_ladder_rung_t){idx, o->e[i].p};
    }
    char err[256];
    if (ds_ladder_set(rungs, o->n, n_open, ladder, err, sizeof err) != 0) {
        /* Name the stages rather than their indexes where it can. */
        for (size_t i = 0; i < o->n; i++)
            for (size_t j = 0; j < o->n; j++)
                if (rungs[i].stage < rungs[j].stage && o->e[i].p > o->e[j].p) {
                    fprintf(stderr, "dealscore-scoring ladder: %s (%g) comes before %s (%g) but is higher: ",
                            o->e[i].stage, o->e[i].p, o->e[j].stage, o->e[j].p);
                    return bad("%s", "a ladder rises with stage order");
                }
        return bad("%s", err);
    }
    return 0;
}

/* Replaces the org's rows and tells the workers to reload the org. */
static int store(ds_pg_t *pg, const char *org_id, const ladder_opts_t *o, char *err, size_t errsz) {
    const char *v[] = {org_id};
    int rc = ds_pg_exec_params(pg, "begin", 0, NULL, NULL, NULL, NULL, err, errsz);
    if (rc == 0)
        rc = ds_pg_exec_params(pg, "delete from dealscore_internal.stage_ladders where org_id = $1::uuid", 1,
                               v, NULL, NULL, NULL, err, errsz);
    for (size_t i = 0; rc == 0 && i < o->n; i++) {
        char p[32];
        snprintf(p, sizeof p, "%.17g", o->e[i].p);
        const char *iv[] = {org_id, o->e[i].stage, p};
        rc = ds_pg_exec_params(pg,
                               "insert into dealscore_internal.stage_ladders (org_id, stage, probability)"
                               " values ($1::uuid, $2, $3::float8)",
                               3, iv, NULL, NULL, NULL, err, errsz);
    }
    if (rc == 0)
        rc = ds_pg_exec_params(pg, "select pg_notify('dealscore_models', $1)", 1, v, NULL, NULL, NULL, err,
                               errsz);
    if (rc == 0) return ds_pg_exec_params(pg, "commit", 0, NULL, NULL, NULL, NULL, err, errsz);
    char ignored[256];
    ds_pg_exec_params(pg, "rollback", 0, NULL, NULL, NULL, NULL, ignored, sizeof ignored);
    return rc;
}

/* The org's stored entries (for show and clear). */
static int load_entries(ds_pg_t *pg, const char *org_id, ladder_opts_t *o, char *err, size_t errsz) {
    const char *v[] = {org_id};
    PGresult *r = NULL;
    int rc = ds_pg_exec_params(pg,
                               "select stage, probability from dealscore_internal.stage_ladders"
                               " where org_id = $1::uuid order by probability, stage",
                               1, v, NULL, NULL, &r, err, errsz);
    if (rc != 0) return rc;
    for (int i = 0; i < PQntuples(r) && o->n < MAX_RUNGS; i++) {
        snprintf(o->e[o->n].stage, sizeof o->e[0].stage, "%s", PQgetvalue(r, i, 0));
        o->e[o->n++].p = strtod(PQgetvalue(r, i, 1), NULL);
    }
    PQclear(r);
    return 0;
}

/* Each open stage index with its probability, every stage name of the
 * org's order that has it, and whether it was set or is the default's. */
static void print_ladder(const ds_stage_list_t *stages, const ds_ladder_t *l, const ds_ladder_rung_t *rungs,
                         size_t n) {
    printf("%-5s  %-11s  %-7s  %s\n", "index", "probability", "from", "stages");
    for (size_t s = 0; s < l->n; s++) {
        bool set = false;
        for (size_t i = 0; i < n; i++) set = set || (size_t)rungs[i].stage == s;
        printf("%-5zu  %-11.4g  %-7s ", s, l->p[s], set ? "set" : "default");
        const char *name;
        int idx;
        for (size_t i = 0; (name = ds_stage_list_at(stages, i, &idx)) != NULL; i++)
            if ((size_t)idx == s) printf(" %s", name);
        printf("\n");
    }
}

/* Connects, finds the org and its stage order. */
static int open_org(const ds_config_t *cfg, const char *slug, ds_pg_t **pg, ds_org_cache_t **orgs,
                    const ds_org_ctx_t **oc, char org_id[37]) {
    char err[512];
    if (ds_pg_new(pg, cfg->database_url, "dealscore-scoring-ladder", err, sizeof err) != 0 ||
        ds_pg_ensure(*pg, 10000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring ladder: could not connect to Postgres: %s\n", err);
        return 1;
    }
    const char *v[] = {slug};
    PGresult *r = NULL;
    if (ds_pg_exec_params(*pg, "select id::text from public.orgs where slug = $1", 1, v, NULL, NULL, &r, err,
                          sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring ladder: could not read the org: %s\n", err);
        return 1;
    }
    bool found = PQntuples(r) == 1;
    if (found) snprintf(org_id, 37, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!found) return bad("no org '%s'", slug);
    *orgs = ds_org_cache_new(60000);
    if (ds_org_cache_get(*orgs, *pg, org_id, oc, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring ladder: could not read the org's stage order: %s\n", err);
        return 1;
    }
    return 0;
}

int scoring_cmd_ladder(const ds_config_t *cfg, int argc, char **argv) {
    const char *verb = argc >= 2 ? argv[1] : "";
    bool set = !strcmp(verb, "set"), show = !strcmp(verb, "show"), clear = !strcmp(verb, "clear");
    if (!set && !show && !clear) {
        fputs(usage_text, stderr);
        return 2;
    }
    ladder_opts_t o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc;
    if (set && o.n == 0) return bad("%s", "set needs --stage NAME=P or --csv FILE");
    if (!set && o.n) return bad("%s takes no stages", verb);
    ds_pg_t *pg = NULL;
    ds_org_cache_t *orgs = NULL;
    const ds_org_ctx_t *oc = NULL;
    char org_id[37], err[512];
    rc = open_org(cfg, o.org, &pg, &orgs, &oc, org_id);
    ds_ladder_rung_t rungs[MAX_RUNGS];
    ds_ladder_t ladder;
    size_t n_open = rc == 0 ? (size_t)ds_stage_list_max_index(oc->stages) : 0;
    if (rc == 0 && show) rc = load_entries(pg, org_id, &o, err, sizeof err) != 0 ? 1 : 0;
    if (rc == 0 && (set || show)) rc = to_rungs(&o, oc->stages, n_open, rungs, &ladder);
    if (rc == 0 && clear) o.n = 0;
    if (rc == 0 && (set || clear) && store(pg, org_id, &o, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring ladder: could not store the ladder: %s\n", err);
        rc = 1;
    }
    if (rc == 0) {
        if (!o.n) ds_ladder_default(n_open, &ladder);
        print_ladder(oc->stages, &ladder, rungs, o.n);
    }
    ds_org_cache_destroy(orgs);
    ds_pg_destroy(pg);
    return rc;
}
