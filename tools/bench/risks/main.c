/* dealscore-bench-risks: how long a score waits for an org's risk rules and
 * won-deal thresholds when they are stale (services/scoring/deal_risks.h).
 * With a TTL of 0 every lookup finds them stale: the inline cache reloads
 * them on the caller's connection, as a worker without the refresher did;
 * the refreshing cache hands back the stale ones and reloads them on its
 * own thread, which the program waits for between lookups (that reload's
 * time is printed too). A measurement program: it asserts nothing.
 *
 *   eval "$(deploy/local/stack env)"
 *   build/bin/dealscore-bench-risks --org SLUG [--repeat 20]
 *
 * See README.md next to this file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"
#include "base/common.h"
#include "scoring/deal_risks.h"

#define PROG "dealscore-bench-risks"

/* The org's id, or NULL. */
static char *org_id_of(ds_pg_t *pg, const char *slug) {
    const char *v[] = {slug};
    PGresult *r = NULL;
    char err[512];
    if (ds_pg_exec_params(pg, "select id::text from public.orgs where slug = $1", 1, v, NULL, NULL, &r, err,
                          sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return NULL;
    }
    char *id = PQntuples(r) == 1 ? ds_strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return id;
}

/* Times repeat stale lookups (after a first, missing one) in us[], and the
 * refresher's reloads in reload_us[] when refreshing. Returns 0 or -1. */
static int run(ds_pg_t *pg, const char *url, const char *org, int repeat, bool refreshing, int64_t *us,
               int64_t *reload_us) {
    deal_risks_cache_t *c = deal_risks_cache_new(0, refreshing ? url : NULL);
    const ds_risk_config_t *cfg = NULL;
    char err[512];
    int rc = deal_risks_config(c, pg, org, &cfg, err, sizeof err);
    for (int i = 0; rc == 0 && i < repeat; i++) {
        int64_t t0 = ds_mono_us();
        rc = deal_risks_config(c, pg, org, &cfg, err, sizeof err);
        int64_t t1 = ds_mono_us();
        deal_risks_cache_await_refreshes(c);
        us[i] = t1 - t0;
        reload_us[i] = ds_mono_us() - t1;
    }
    if (rc != 0)
        fprintf(stderr, PROG ": %s\n", err);
    else
        printf("won deals %zu\n", cfg->n_won);
    deal_risks_cache_destroy(c);
    return rc == 0 ? 0 : -1;
}

static void print_row(const char *what, int64_t *us, int n) {
    qsort(us, (size_t)n, sizeof *us, perf_cmp_i64);
    printf("%-36s p50 %9.3f ms  max %9.3f ms\n", what, perf_pct_ms(us, (size_t)n, 50),
           (double)us[n - 1] / 1e3);
}

int main(int argc, char **argv) {
    const char *slug = NULL, *url = getenv("DEALSCORE_DATABASE_URL");
    int repeat = 20;
    static const struct option opts[] = {
        {"org", required_argument, 0, 'o'}, {"repeat", required_argument, 0, 'r'}, {0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'o')
            slug = optarg;
        else if (ch == 'r')
            repeat = atoi(optarg);
        else
            return 2;
    }
    if (!slug || !url || repeat < 1) {
        fprintf(stderr, "usage: " PROG " --org SLUG [--repeat N] (DEALSCORE_DATABASE_URL set)\n");
        return 2;
    }
    ds_pg_t *pg = NULL;
    char err[512];
    if (ds_pg_new(&pg, url, PROG, err, sizeof err) != 0 ||
        ds_pg_ensure(pg, 5000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    char *org = org_id_of(pg, slug);
    int64_t *us = ds_calloc((size_t)repeat, sizeof *us), *reload_us = ds_calloc((size_t)repeat, sizeof *us);
    char load[64];
    perf_loadavg(load, sizeof load);
    printf("org %s, %d stale lookups each way, load average %s\n", slug, repeat, load);
    int rc = org ? 0 : 1;
    if (rc == 0 && run(pg, url, org, repeat, false, us, reload_us) == 0)
        print_row("inline: the lookup", us, repeat);
    if (rc == 0 && run(pg, url, org, repeat, true, us, reload_us) == 0) {
        print_row("refreshing: the lookup", us, repeat);
        print_row("refreshing: the reload (its thread)", reload_us, repeat);
    }
    free(us);
    free(reload_us);
    free(org);
    ds_pg_destroy(pg);
    return rc;
}
