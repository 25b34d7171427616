/* dealscore-bench-predict: POST /api/predict at fixed rates with a session
 * JWT signed by the stack's HS256 secret, over open opportunities of one
 * org, and prints the latency p50/p95/p99 per rate. A measurement program:
 * it asserts nothing.
 *
 *   eval "$(deploy/local/stack env)"
 *   build/bin/dealscore-bench-predict --org SLUG [--rates 50,200] [--seconds 10] [--threads 32]
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "dealscore/common.h"
#include "dealscore/jwt.h"

typedef struct {
    char host[64];
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

static int post(int *fd, const run_t *r, const char *body, size_t len) {
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "POST /api/predict HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     r->host, r->jwt, len);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (*fd < 0) {
            *fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
            inet_pton(AF_INET, r->host, &sa.sin_addr);
            if (connect(*fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
                close(*fd);
                *fd = -1;
                return -1;
            }
            int one = 1;
            setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, len}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
        if (sendmsg(*fd, &mh, MSG_NOSIGNAL) != (ssize_t)(n + len)) {
            close(*fd);
            *fd = -1;
            continue;
        }
        char buf[65536];
        size_t got = 0;
        for (;;) {
            ssize_t k = recv(*fd, buf + got, sizeof buf - got - 1, 0);
            if (k <= 0) break;
            got += (size_t)k;
            buf[got] = '\0';
            char *hend = strstr(buf, "\r\n\r\n");
            if (!hend) continue;
            char *cl = strcasestr(buf, "content-length:");
            size_t blen = cl && cl < hend ? strtoul(cl + 15, NULL, 10) : 0;
            if (got >= (size_t)(hend + 4 - buf) + blen) return atoi(buf + 9);
            if (got >= sizeof buf - 1) return atoi(buf + 9);
        }
        close(*fd);
        *fd = -1;
    }
    return -1;
}

static void *sender(void *arg) {
    run_t *r = arg;
    int fd = -1;
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
        r->status[i] = post(&fd, r, body, (size_t)len);
        r->lat[i] = ds_mono_us() - t0;
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct(const int64_t *v, size_t n, double p) {
    if (!n) return NAN;
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    return (double)v[k ? k - 1 : 0] / 1000.0;
}

int main(int argc, char **argv) {
    const char *org = NULL, *rates_s = "50,200", *url = getenv("DEALSCORE_SCORING_URL");
    const char *db_url = getenv("DEALSCORE_DATABASE_URL"), *secret = getenv("SUPABASE_JWT_SECRET");
    double seconds = 10;
    int threads = 32;
    static const struct option opts[] = {{"org", 1, 0, 'o'}, {"rates", 1, 0, 'r'}, {"seconds", 1, 0, 's'},
                                         {"threads", 1, 0, 't'}, {"url", 1, 0, 'u'}, {"help", 0, 0, 'h'},
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
            fprintf(stderr, "usage: dealscore-bench-predict --org SLUG [--rates R1,R2] [--seconds S] [--threads T]"
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
    run_t r = {.port = 8081};
    if (sscanf(url, "http://%63[^:]:%d", r.host, &r.port) != 2) {
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
        fprintf(stderr, "dealscore-bench-predict: no open opportunities in org %s: %s", org, PQerrorMessage(db));
        return 1;
    }
    r.nopps = (size_t)PQntuples(res);
    r.opps = ds_calloc(r.nopps, sizeof *r.opps);
    for (size_t i = 0; i < r.nopps; i++) r.opps[i] = ds_strdup(PQgetvalue(res, (int)i, 0));
    char *claims = ds_asprintf("{\"sub\":\"00000000-0000-4000-8000-00000000be1c\",\"role\":\"authenticated\","
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
    printf("dealscore-bench-predict: %zu open opportunities, %d client threads, %.0f s per rate\n", r.nopps, threads,
           seconds);
    printf("%8s %8s %7s | %8s %8s %8s %8s\n", "rate/s", "sent", "non-200", "p50 ms", "p95 ms", "p99 ms", "max ms");
    char *rates = ds_strdup(rates_s), *rest = rates, *tok;
    while ((tok = strsep(&rest, ",")) != NULL) {
        r.rate = atof(tok);
        if (r.rate <= 0) continue;
        r.n = (size_t)(r.rate * seconds);
        r.lat = ds_calloc(r.n, sizeof *r.lat);
        r.status = ds_calloc(r.n, sizeof *r.status);
        atomic_store(&r.next, 0);
        r.start = ds_mono_us() + 10000;
        pthread_t *th = ds_calloc((size_t)threads, sizeof *th);
        for (int t = 0; t < threads; t++) pthread_create(&th[t], NULL, sender, &r);
        for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
        double achieved = (double)r.n / ((double)(ds_mono_us() - r.start) / 1e6);
        size_t bad = 0;
        for (size_t i = 0; i < r.n; i++) bad += r.status[i] != 200;
        qsort(r.lat, r.n, sizeof *r.lat, cmp);
        printf("%8.0f %8zu %7zu | %8.1f %8.1f %8.1f %8.1f%s\n", achieved, r.n, bad, pct(r.lat, r.n, 50),
               pct(r.lat, r.n, 95), pct(r.lat, r.n, 99), (double)r.lat[r.n - 1] / 1000.0,
               achieved < r.rate * 0.9 ? "  (could not keep the rate)" : "");
        fflush(stdout);
        free(th);
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
