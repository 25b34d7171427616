/* dealscore-sim: parse the command line, then run the CSV or stream mode. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/common.h"
#include "buf.h"
#include "run.h"

static const char usage[] =
    "usage: dealscore-sim --out DIR [options]\n"
    "       dealscore-sim --stream URL --token T [options]\n"
    "\n"
    "Simulates a CRM: accounts, owners, opportunities whose stage, amount and close\n"
    "date change over time, interactions, call transcripts with MEDDICC cues, and\n"
    "outcomes drawn from a documented model (tools/sim/README.md). The same seed\n"
    "and options give byte-identical output.\n"
    "\n"
    "CSV mode writes into DIR: accounts.csv, opportunities.csv (one row per change),\n"
    "interactions.csv, transcripts.csv (the columns of `dealscore-ingest import`) and\n"
    "truth.csv (each deal's true win probability at days 7, 14, 30, 60, 90, 180, and\n"
    "an oracle's that knows all but the deal's noise terms u and eps).\n"
    "\n"
    "options:\n"
    "  --seed N            random seed (default 1)\n"
    "  --opportunities N   opportunities per org, 1..10000000 (default 1000)\n"
    "  --days N            history window in days, 1..3650 (default 730)\n"
    "  --now TIME          end of the window: YYYY-MM-DD[THH:MM:SSZ] or `now`\n"
    "                      (default 2026-11-01T00:00:00Z)\n"
    "  --out DIR           output directory (created if missing)\n"
    "  --orgs K            K orgs, written to DIR/org1 .. DIR/orgK (default 1)\n"
    "  --threads N         generator threads, 1..64 (default: CPUs; output identical)\n"
    "  --help              this text\n"
    "\n"
    "stream mode (posts JSON arrays to the ingest webhooks):\n"
    "  --stream URL        base URL, e.g. http://127.0.0.1:8080\n"
    "  --token T           bearer token (or DEALSCORE_INGEST_TOKEN)\n"
    "  --rate R            records per second, all connections (default 100)\n"
    "  --batch B           records per request, 1..10000 (default 50)\n"
    "  --concurrency C     connections, 1..256 (default 4)\n"
    "  --duration S        seconds to run (default 10)\n"
    "\n"
    "Exit status: 0 ok, 1 failure, 2 bad usage.\n";

static int bad(const char *opt, const char *val, const char *want) {
    fprintf(stderr, "dealscore-sim: invalid value for %s: '%s' (%s)\n", opt, val, want);
    return 2;
}

/* An ISO 8601 time (base's parser) in whole seconds, its fraction dropped. */
static int parse_utc(const char *s, int64_t *t) {
    int64_t us;
    if (ds_parse_time_us(s, &us) != 0) return -1;
    *t = us / 1000000 - (us % 1000000 < 0);
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    sim_opts_t so = {.seed = 1, .opportunities = 1000, .days = 730};
    parse_utc("2026-11-01T00:00:00Z", &so.now);
    const char *out = NULL, *url = NULL, *token = NULL;
    long orgs = 1, threads = sysconf(_SC_NPROCESSORS_ONLN);
    double rate = 100, duration = 10;
    long batch = 50, conc = 4;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "dealscore-sim: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        /* --opt=value or --opt value */
        char name[64];
        const char *val;
        const char *eq = strchr(a, '=');
        if (eq) {
            size_t n = (size_t)(eq - a);
            if (n >= sizeof(name)) n = sizeof(name) - 1;
            memcpy(name, a, n);
            name[n] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", a);
            if (i + 1 >= argc) {
                fprintf(stderr, "dealscore-sim: option %s needs a value (see --help)\n", name);
                return 2;
            }
            val = argv[++i];
        }
        long lv;
        if (!strcmp(name, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-') return bad(name, val, "an unsigned integer");
            so.seed = (uint64_t)v;
        } else if (!strcmp(name, "--opportunities")) {
            if (!ds_parse_long(val, 1, 10000000, &lv)) return bad(name, val, "an integer from 1 to 10000000");
            so.opportunities = lv;
        } else if (!strcmp(name, "--days")) {
            if (!ds_parse_long(val, 1, 3650, &lv)) return bad(name, val, "an integer from 1 to 3650");
            so.days = (int)lv;
        } else if (!strcmp(name, "--now")) {
            if (!strcmp(val, "now"))
                so.now = (int64_t)time(NULL);
            else if (parse_utc(val, &so.now))
                return bad(name, val, "YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or now");
        } else if (!strcmp(name, "--out")) {
            if (!*val) return bad(name, val, "a directory");
            out = val;
        } else if (!strcmp(name, "--orgs")) {
            if (!ds_parse_long(val, 1, 1000, &lv)) return bad(name, val, "an integer from 1 to 1000");
            orgs = lv;
        } else if (!strcmp(name, "--threads")) {
            if (!ds_parse_long(val, 1, 64, &lv)) return bad(name, val, "an integer from 1 to 64");
            threads = lv;
        } else if (!strcmp(name, "--stream")) {
            if (strncmp(val, "http://", 7) != 0 || !val[7]) return bad(name, val, "an http:// URL");
            url = val;
        } else if (!strcmp(name, "--token")) {
            token = val;
        } else if (!strcmp(name, "--rate")) {
            if (parse_double(val, 0.001, 1e7, &rate)) return bad(name, val, "records per second, > 0");
        } else if (!strcmp(name, "--batch")) {
            if (!ds_parse_long(val, 1, 10000, &batch)) return bad(name, val, "an integer from 1 to 10000");
        } else if (!strcmp(name, "--concurrency")) {
            if (!ds_parse_long(val, 1, 256, &conc)) return bad(name, val, "an integer from 1 to 256");
        } else if (!strcmp(name, "--duration")) {
            if (parse_double(val, 0.001, 1e7, &duration)) return bad(name, val, "seconds, > 0");
        } else {
            fprintf(stderr, "dealscore-sim: unknown option %s (see --help)\n", name);
            return 2;
        }
    }

    char err[512] = "";
    if (url) {
        if (out) {
            fprintf(stderr, "dealscore-sim: --out and --stream cannot be combined\n");
            return 2;
        }
        if (!token || !*token) token = getenv("DEALSCORE_INGEST_TOKEN");
        if (!token || !*token) {
            fprintf(stderr, "dealscore-sim: --stream needs --token (or DEALSCORE_INGEST_TOKEN)\n");
            return 2;
        }
        sim_stream_opts_t st = {so, url, token, rate, (int)batch, (int)conc, duration};
        int rc = sim_run_stream(&st, err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "dealscore-sim: %s\n", err);
            return 1;
        }
        return rc;
    }
    if (!out) {
        fprintf(stderr, "dealscore-sim: missing --out DIR (see --help)\n");
        return 2;
    }
    sim_run_opts_t ro = {so, out, (int)orgs, (int)threads};
    if (sim_run_csv(&ro, err, sizeof(err)) != 0) {
        fprintf(stderr, "dealscore-sim: %s\n", err);
        return 1;
    }
    return 0;
}
