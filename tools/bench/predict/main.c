/* dealscore-bench-predict: POST /api/predict at fixed rates with a session
 * JWT signed by the stack's HS256 secret, over open opportunities of one
 * org, and prints the latency p50/p95/p99 per rate. A measurement program:
 * it asserts nothing.
 *
 *   eval "$(deploy/local/stack env)"
 *   build/bin/dealscore-bench-predict --org SLUG [--rates 50,200] [--seconds 10] [--threads 32]
 */
#include <getopt.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "perf.h"
#include "base/common.h"
#include "infra/jwt.h"

typedef struct {
    char host[128];
    int port;
    const char *jwt;
    char **opps;
    size_t nopps;
    size_t n;
    double rate;
    int64_t start;
    atomic_size_t next;
    int64_t *lat;
    int *status;
} run_t;

static void *sender(void *arg) {
    run_t *r = arg;
    perf_conn_t c = {.fd = -1, .port = r->port};
    snprintf(c.host, sizeof c.host, "%s", r->host);
    char body[128];
    for (;;) {
        size_t i = atomic_fetch_add(&r->next, 1);
        if (i >= r->n) break;
        int64_t due = r->start + (int64_t)((double)i * 1e6 / r->rate), now = ds_mono_us();
        if (due > now) {
            struct timespec ts = {(due - now) / 1000000, ((due - now) % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
        int len = snprintf(body, sizeof body, "{\"opportunity_id\":\"%s\"}", r->opps[i % r->nopps]);
        int64_t t0 = ds_mono_us();
        r->status[i] = perf_conn_request(&c, "/api/predict", r->jwt, body, (size_t)len);
        r->lat[i] = ds_mono_us() - t0;
    }
    perf_conn_close(&c);
    return NULL;
}

int main(int argc, char **argv) {
    const char *org = NULL, *rates_s = "50,200", *url = getenv("DEALSCORE_SCORING_URL");
    const char *db_url = getenv("DEALSCORE_DATABASE_URL"), *secret = getenv("SUPABASE_JWT_SECRET");
    double seconds = 10;
    int threads = 32;
    static const struct option opts[] = {{"org", 1, 0, 'o'},
                                         {"rates", 1, 0, 'r'},
                                         {"seconds", 1, 0, 's'},
                                         {"threads", 1, 0, 't'},
                                         {"url", 1, 0, 'u'},
                                         {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': org = optarg; break;
        case 'r': rates_s = optarg; break;
        case 's': seconds = atof(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'u': url = optarg; break;
        default:
            fprintf(
                stderr,
                "usage: dealscore-bench-predict --org SLUG [--rates R1,R2] [--seconds S] [--threads T]"
                " [--url URL]\n(DEALSCORE_DATABASE_URL, DEALSCORE_SCORING_URL and SUPABASE_JWT_SECRET from"
                " the environment: eval \"$(deploy/local/stack env)\")\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (!org || !url || !db_url || !secret || threads < 1 || seconds <= 0) {
        fprintf(stderr, "dealscore-bench-predict: --org, DEALSCORE_SCORING_URL, DEALSCORE_DATABASE_URL and"
                        " SUPABASE_JWT_SECRET are required (see --help)\n");
        return 2;
    }
    run_t r = {0};
    if (perf_parse_url(url, r.host, sizeof r.host, &r.port) != 0) {
        fprintf(stderr, "dealscore-bench-predict: the scoring URL must be http://HOST:PORT\n");
        return 2;
    }
    PGconn *db = PQconnectdb(db_url);
    const char *v[] = {org};
    PGresult *res = PQexecParams(db,
                                 "select o.id, g.id from opportunities o join orgs g on g.id = o.org_id"
                                 " where g.slug = $1 and o.outcome = 'open' and not o.placeholder limit 2000",
                                 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0) {
        fprintf(stderr, "dealscore-bench-predict: no open opportunities in org %s: %s", org,
                PQerrorMessage(db));
        return 1;
    }
    r.nopps = (size_t)PQntuples(res);
    r.opps = ds_calloc(r.nopps, sizeof *r.opps);
    for (size_t i = 0; i < r.nopps; i++) r.opps[i] = ds_strdup(PQgetvalue(res, (int)i, 0));
    char *claims =
        ds_asprintf("{\"sub\":\"00000000-0000-4000-8000-00000000be1c\",\"role\":\"authenticated\","
                    "\"aud\":\"authenticated\",\"iat\":%ld,\"exp\":%ld,\"app_metadata\":{\"org_id\":\"%s\"}}",
                    (long)time(NULL) - 5, (long)time(NULL) + 3600, PQgetvalue(res, 0, 1));
    PQclear(res);
    PQfinish(db);
    char *jwt = NULL;
    if (ds_jwt_sign_hs256(secret, claims, &jwt) != 0) {
        fprintf(stderr, "dealscore-bench-predict: could not sign a token\n");
        return 1;
    }
    r.jwt = jwt;
    printf("dealscore-bench-predict: %zu open opportunities, %d client threads, %.0f s per rate\n", r.nopps,
           threads, seconds);
    printf("%8s %8s %7s | %8s %8s %8s %8s\n", "rate/s", "sent", "non-200", "p50 ms", "p95 ms", "p99 ms",
           "max ms");
    char *rates = ds_strdup(rates_s), *rest = rates, *tok;
    while ((tok = strsep(&rest, ",")) != NULL) {
        r.rate = atof(tok);
        if (r.rate <= 0) continue;
        r.n = (size_t)(r.rate * seconds);
        r.lat = ds_calloc(r.n, sizeof *r.lat);
        r.status = ds_calloc(r.n, sizeof *r.status);
        atomic_store(&r.next, 0);
        r.start = ds_mono_us() + 10000;
        perf_run_threads(threads, sender, &r);
        double achieved = (double)r.n / ((double)(ds_mono_us() - r.start) / 1e6);
        size_t bad = 0;
        for (size_t i = 0; i < r.n; i++) bad += r.status[i] != 200;
        qsort(r.lat, r.n, sizeof *r.lat, perf_cmp_i64);
        printf("%8.0f %8zu %7zu | %8.1f %8.1f %8.1f %8.1f%s\n", achieved, r.n, bad,
               perf_pct_ms(r.lat, r.n, 50), perf_pct_ms(r.lat, r.n, 95), perf_pct_ms(r.lat, r.n, 99),
               (double)r.lat[r.n - 1] / 1000.0, achieved < r.rate * 0.9 ? "  (could not keep the rate)" : "");
        fflush(stdout);
        free(r.lat);
        free(r.status);
    }
    for (size_t i = 0; i < r.nopps; i++) free(r.opps[i]);
    free(r.opps);
    free(rates);
    free(claims);
    free(jwt);
    return 0;
}
