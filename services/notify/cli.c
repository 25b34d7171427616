/* dealscore-notify subscription add|list|remove and deliveries list|replay:
 * the subscriptions and the deliveries as the operator manages them. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "infra/httpc.h"
#include "infra/pg.h"
#include "notify.h"

typedef struct {
    const char *org, *url, *events, *min_change, *limit;
    bool failed;
    int nargs;
    char **args; /* the operands after the options */
} cli_opts_t;

static int usage_subscription(void) {
    fprintf(stderr, "usage: dealscore-notify subscription add --org SLUG --url URL [--events score.changed] "
                    "[--min-change P]\n"
                    "       dealscore-notify subscription list --org SLUG\n"
                    "       dealscore-notify subscription remove ID\n");
    return 2;
}

static int usage_deliveries(void) {
    fprintf(stderr, "usage: dealscore-notify deliveries list --org SLUG [--failed] [--limit N]\n"
                    "       dealscore-notify deliveries replay ID\n"
                    "       dealscore-notify deliveries replay --failed [--org SLUG]\n");
    return 2;
}

/* Options from argv[2] on (argv[1] is the verb). Returns 0 or -1. */
static int parse_opts(int argc, char **argv, cli_opts_t *o) {
    static const struct option opts[] = {{"org", required_argument, 0, 'o'},
                                         {"url", required_argument, 0, 'u'},
                                         {"events", required_argument, 0, 'e'},
                                         {"min-change", required_argument, 0, 'm'},
                                         {"limit", required_argument, 0, 'l'},
                                         {"failed", no_argument, 0, 'f'},
                                         {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    optind = 2;
    opterr = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': o->org = optarg; break;
        case 'u': o->url = optarg; break;
        case 'e': o->events = optarg; break;
        case 'm': o->min_change = optarg; break;
        case 'l': o->limit = optarg; break;
        case 'f': o->failed = true; break;
        default: return -1;
        }
    }
    o->nargs = argc - optind;
    o->args = argv + optind;
    return 0;
}

static ds_pg_t *connect_pg(const ds_config_t *cfg, const char *what) {
    char err[512];
    ds_pg_t *pg = NULL;
    if (ds_pg_new(&pg, cfg->database_url, "dealscore-notify-cli", err, sizeof err) != 0 ||
        ds_pg_ensure(pg, 10000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-notify %s: could not connect to Postgres: %s\n", what, err);
        ds_pg_destroy(pg);
        return NULL;
    }
    return pg;
}

/* The org's id into org_id. Returns 0, or 1 with a message. */
static int org_id_of(ds_pg_t *pg, const char *what, const char *slug, char org_id[37]) {
    const char *v[] = {slug};
    PGresult *res = NULL;
    char err[512];
    if (ds_pg_exec_params(pg, "select id::text from public.orgs where slug = $1", 1, v, NULL, NULL, &res, err,
                          sizeof err) != 0) {
        fprintf(stderr, "dealscore-notify %s: %s\n", what, err);
        return 1;
    }
    int found = PQntuples(res) == 1;
    if (found) snprintf(org_id, 37, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!found) fprintf(stderr, "dealscore-notify %s: no org \"%s\"\n", what, slug);
    return found ? 0 : 1;
}

/* "score.changed[,...]" as a text[] literal into out; -1 for an unknown
 * event type. */
static int events_literal(const char *events, char *out, size_t outsz) {
    char *copy = ds_strdup(events), *rest = copy, *tok;
    int rc = 0;
    size_t len = (size_t)snprintf(out, outsz, "{");
    while ((tok = strsep(&rest, ",")) != NULL) {
        if (strcmp(tok, NOTIFY_EVENT_SCORE_CHANGED) != 0) {
            fprintf(stderr,
                    "dealscore-notify subscription: --events: unknown event type \"%s\" (known: %s)\n", tok,
                    NOTIFY_EVENT_SCORE_CHANGED);
            rc = -1;
            break;
        }
        len += (size_t)snprintf(out + len, outsz > len ? outsz - len : 0, "%s%s", len > 1 ? "," : "", tok);
    }
    snprintf(out + len, outsz > len ? outsz - len : 0, "}");
    free(copy);
    return rc;
}

/* Checks add's arguments; fills events and min_change. Returns 0 or 2. */
static int check_add(const cli_opts_t *o, char *events, size_t eventsz, double *min_change) {
    char err[256];
    ds_httpc_url_t u;
    if (!o->org || !o->url) {
        fprintf(stderr, "dealscore-notify subscription add: --org and --url are required\n");
        return 2;
    }
    if (ds_httpc_url_parse(o->url, &u, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-notify subscription add: --url: %s\n", err);
        return 2;
    }
    if (events_literal(o->events ? o->events : NOTIFY_EVENT_SCORE_CHANGED, events, eventsz) != 0) return 2;
    *min_change = 0;
    if (o->min_change) {
        char *end;
        errno = 0;
        *min_change = strtod(o->min_change, &end);
        if (errno || end == o->min_change || *end || !(*min_change >= 0 && *min_change <= 1)) {
            fprintf(
                stderr,
                "dealscore-notify subscription add: --min-change: \"%s\" is not a probability change from 0 "
                "to 1 (0.05 = five points)\n",
                o->min_change);
            return 2;
        }
    }
    return 0;
}

static int subscription_add(const ds_config_t *cfg, const cli_opts_t *o) {
    char events[256], org_id[37], err[512];
    double min_change;
    int rc = check_add(o, events, sizeof events, &min_change);
    if (rc != 0) return rc;
    ds_pg_t *pg = connect_pg(cfg, "subscription add");
    if (!pg) return 1;
    rc = org_id_of(pg, "subscription add", o->org, org_id);
    if (rc == 0) {
        unsigned char raw[32];
        char secret[65], mc[32];
        if (RAND_bytes(raw, sizeof raw) != 1) ds_panic("could not read random bytes");
        for (int i = 0; i < 32; i++) sprintf(secret + 2 * i, "%02x", raw[i]);
        snprintf(mc, sizeof mc, "%.17g", min_change);
        const char *v[] = {org_id, o->url, events, mc, secret};
        PGresult *res = NULL;
        rc = ds_pg_exec_params(pg,
                               "insert into dealscore_internal.notify_subscriptions"
                               " (org_id, url, event_types, min_change, secret)"
                               " values ($1, $2, $3::text[], $4::float8, $5) returning id::text",
                               5, v, NULL, NULL, &res, err, sizeof err);
        if (rc == 0) {
            printf("id=%s\nsecret=%s\n", PQgetvalue(res, 0, 0), secret);
            fprintf(stderr, "dealscore-notify: keep the secret (it signs this subscription's events); it is "
                            "not shown again\n");
        } else {
            fprintf(stderr, "dealscore-notify subscription add: %s\n", err);
            rc = 1;
        }
        PQclear(res);
    }
    ds_pg_destroy(pg);
    return rc;
}

/* Prints res as tab-separated columns under a header line. */
static void print_table(PGresult *res) {
    int nf = PQnfields(res);
    for (int f = 0; f < nf; f++) printf("%s%s", f ? "\t" : "", PQfname(res, f));
    printf("\n");
    for (int r = 0; r < PQntuples(res); r++) {
        for (int f = 0; f < nf; f++)
            printf("%s%s", f ? "\t" : "", PQgetisnull(res, r, f) ? "-" : PQgetvalue(res, r, f));
        printf("\n");
    }
}

/* Runs a query with params and prints its rows. Returns 0 or 1. */
static int list_rows(ds_pg_t *pg, const char *what, const char *sql, int n, const char *const *v) {
    PGresult *res = NULL;
    char err[512];
    if (ds_pg_exec_params(pg, sql, n, v, NULL, NULL, &res, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-notify %s: %s\n", what, err);
        return 1;
    }
    print_table(res);
    PQclear(res);
    return 0;
}

static int subscription_list(const ds_config_t *cfg, const cli_opts_t *o) {
    if (!o->org) {
        fprintf(stderr, "dealscore-notify subscription list: --org is required\n");
        return 2;
    }
    ds_pg_t *pg = connect_pg(cfg, "subscription list");
    if (!pg) return 1;
    char org_id[37];
    int rc = org_id_of(pg, "subscription list", o->org, org_id);
    const char *v[] = {org_id};
    if (rc == 0)
        rc = list_rows(
            pg, "subscription list",
            "select id, array_to_string(event_types, ',') as events, min_change,"
            " to_char(created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') as created_at, url"
            " from dealscore_internal.notify_subscriptions where org_id = $1 and active"
            " order by created_at, id",
            1, v);
    ds_pg_destroy(pg);
    return rc;
}

/* Runs sql with params; *changed gets the rows it changed. Returns 0 or 1. */
static int change_rows(ds_pg_t *pg, const char *what, const char *sql, int n, const char *const *v,
                       long *changed) {
    PGresult *res = NULL;
    char err[512];
    if (ds_pg_exec_params(pg, sql, n, v, NULL, NULL, &res, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-notify %s: %s\n", what, err);
        return 1;
    }
    *changed = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return 0;
}

static int subscription_remove(const ds_config_t *cfg, const cli_opts_t *o) {
    if (o->nargs != 1) return usage_subscription();
    if (!ds_uuid_valid(o->args[0])) {
        fprintf(stderr, "dealscore-notify subscription remove: \"%s\" is not a subscription id (a UUID)\n",
                o->args[0]);
        return 2;
    }
    ds_pg_t *pg = connect_pg(cfg, "subscription remove");
    if (!pg) return 1;
    const char *v[] = {o->args[0]};
    long n = 0;
    /* The subscription's pending deliveries fail with it; its history stays
     * for deliveries list. */
    int rc = change_rows(pg, "subscription remove",
                         "with s as (update dealscore_internal.notify_subscriptions set active = false"
                         "  where id = $1::uuid and active returning id),"
                         " d as (update dealscore_internal.notify_deliveries set status = 'failed',"
                         "  last_error = 'subscription removed'"
                         "  where subscription_id in (select id from s) and status = 'pending')"
                         " select 1 from s",
                         1, v, &n);
    if (rc == 0 && n == 0) {
        fprintf(stderr, "dealscore-notify subscription remove: no active subscription %s\n", o->args[0]);
        rc = 1;
    } else if (rc == 0) {
        printf("removed %s\n", o->args[0]);
    }
    ds_pg_destroy(pg);
    return rc;
}

int notify_cmd_subscription(const ds_config_t *cfg, int argc, char **argv) {
    cli_opts_t o;
    if (argc < 2 || parse_opts(argc, argv, &o) != 0) return usage_subscription();
    if (strcmp(argv[1], "add") == 0 && o.nargs == 0) return subscription_add(cfg, &o);
    if (strcmp(argv[1], "list") == 0 && o.nargs == 0) return subscription_list(cfg, &o);
    if (strcmp(argv[1], "remove") == 0) return subscription_remove(cfg, &o);
    return usage_subscription();
}

static int deliveries_list(const ds_config_t *cfg, const cli_opts_t *o) {
    long limit = 50;
    if (!o->org) {
        fprintf(stderr, "dealscore-notify deliveries list: --org is required\n");
        return 2;
    }
    if (o->limit && !ds_parse_long(o->limit, 1, 1000000, &limit)) {
        fprintf(stderr,
                "dealscore-notify deliveries list: --limit: \"%s\" is not a number from 1 to 1000000\n",
                o->limit);
        return 2;
    }
    ds_pg_t *pg = connect_pg(cfg, "deliveries list");
    if (!pg) return 1;
    char org_id[37], lim[24];
    snprintf(lim, sizeof lim, "%ld", limit);
    int rc = org_id_of(pg, "deliveries list", o->org, org_id);
    const char *v[] = {org_id, o->failed ? "t" : "f", lim};
    if (rc == 0)
        rc = list_rows(
            pg, "deliveries list",
            "select d.id, d.status, d.attempts, d.last_status,"
            " to_char(d.created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') as created_at,"
            " d.opportunity_id, d.subscription_id, d.last_error"
            " from dealscore_internal.notify_deliveries d where d.org_id = $1::uuid"
            " and (not $2::bool or d.status = 'failed')"
            " order by d.created_at desc, d.id limit $3::int",
            3, v);
    ds_pg_destroy(pg);
    return rc;
}

/* What a replay sets: due now, tries counted from zero. Only deliveries of
 * active subscriptions: a removed one has no receiver to replay to. */
#define SQL_REPLAY                                                                                           \
    "update dealscore_internal.notify_deliveries d set status = 'pending', attempts = 0,"                    \
    " next_attempt_at = now(), last_error = null, delivered_at = null"                                       \
    " from dealscore_internal.notify_subscriptions s where s.id = d.subscription_id and s.active"

static int deliveries_replay(const ds_config_t *cfg, const cli_opts_t *o) {
    bool by_id = o->nargs == 1 && !o->failed && !o->org;
    if (!by_id && !(o->nargs == 0 && o->failed)) return usage_deliveries();
    if (by_id && !ds_uuid_valid(o->args[0])) {
        fprintf(stderr, "dealscore-notify deliveries replay: \"%s\" is not a delivery id (a UUID)\n",
                o->args[0]);
        return 2;
    }
    ds_pg_t *pg = connect_pg(cfg, "deliveries replay");
    if (!pg) return 1;
    char org_id[37] = "";
    int rc = !by_id && o->org ? org_id_of(pg, "deliveries replay", o->org, org_id) : 0;
    long n = 0;
    if (rc == 0 && by_id) {
        const char *v[] = {o->args[0]};
        rc = change_rows(pg, "deliveries replay", SQL_REPLAY " and d.id = $1::uuid", 1, v, &n);
        if (rc == 0 && n == 0) {
            fprintf(stderr, "dealscore-notify deliveries replay: no delivery %s of an active subscription\n",
                    o->args[0]);
            rc = 1;
        }
    } else if (rc == 0) {
        const char *v[] = {org_id[0] ? org_id : NULL};
        rc = change_rows(pg, "deliveries replay",
                         SQL_REPLAY " and d.status = 'failed' and ($1::uuid is null or d.org_id = $1::uuid)",
                         1, v, &n);
    }
    if (rc == 0) printf("replayed %ld\n", n);
    ds_pg_destroy(pg);
    return rc;
}

int notify_cmd_deliveries(const ds_config_t *cfg, int argc, char **argv) {
    cli_opts_t o;
    if (argc < 2 || parse_opts(argc, argv, &o) != 0) return usage_deliveries();
    if (strcmp(argv[1], "list") == 0 && o.nargs == 0) return deliveries_list(cfg, &o);
    if (strcmp(argv[1], "replay") == 0) return deliveries_replay(cfg, &o);
    return usage_deliveries();
}
