/* dealscore-ingest token create|revoke|list: per-org webhook tokens, stored
 * only as SHA-256 hashes. */
#include <getopt.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/log.h"
#include "ingest.h"
#include "store.h"

void ingest_token_hash(const char *token, char out[65]) { ds_sha256_hex(token, strlen(token), out); }

static void random_hex(char *out, size_t nbytes) {
    unsigned char b[64];
    ds_assert(nbytes <= sizeof b);
    if (RAND_bytes(b, (int)nbytes) != 1) ds_panic("could not read random bytes");
    for (size_t i = 0; i < nbytes; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static int usage(void) {
    fprintf(stderr, "usage: dealscore-ingest token create --org SLUG [--name NAME] [--hmac]\n"
                    "       dealscore-ingest token revoke --org SLUG TOKEN_ID\n"
                    "       dealscore-ingest token list --org SLUG\n");
    return 2;
}

int ingest_cmd_token(const ds_config_t *cfg, int argc, char **argv) {
    if (argc < 2) return usage();
    const char *verb = argv[1];
    const char *org = NULL, *name = NULL;
    bool hmac = false;
    static const struct option opts[] = {{"org", required_argument, 0, 'o'},
                                         {"name", required_argument, 0, 'n'},
                                         {"hmac", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'o')
            org = optarg;
        else if (c == 'n')
            name = optarg;
        else if (c == 'h')
            hmac = true;
        else
            return usage();
    }
    if (!org) {
        fprintf(stderr, "dealscore-ingest token: --org is required\n");
        return 2;
    }
    char err[512];
    ds_pg_t *pg = NULL;
    if (ds_pg_new(&pg, cfg->database_url, "dealscore-ingest-token", err, sizeof err) != 0 ||
        ds_pg_ensure(pg, 10000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-ingest token: could not connect to Postgres: %s\n", err);
        ds_pg_destroy(pg);
        return 1;
    }
    int rc = 1;
    char org_id[37];
    bool create = strcmp(verb, "create") == 0;
    if (store_org_by_slug(pg, org, create, org_id, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-ingest token: %s\n", err);
        goto out;
    }
    if (create) {
        char token[80] = "dsi_", secret[80] = "";
        random_hex(token + 4, 24);
        char hash[65];
        ingest_token_hash(token, hash);
        if (hmac) random_hex(secret, 32);
        const char *v[] = {org_id, hash, name, hmac ? secret : NULL};
        PGresult *res = NULL;
        if (ds_pg_exec_params(
                pg,
                "insert into dealscore_internal.ingest_tokens (org_id, token_hash, name, hmac_secret)"
                " values ($1::uuid, $2, $3, $4) returning id",
                4, v, NULL, NULL, &res, err, sizeof err) != 0) {
            fprintf(stderr, "dealscore-ingest token: could not create the token: %s\n", err);
            goto out;
        }
        printf("org %s (%s)\ntoken id %s\n", org, org_id, PQgetvalue(res, 0, 0));
        if (hmac) printf("signing secret %s\n", secret);
        printf("%s\n", token);
        PQclear(res);
        rc = 0;
    } else if (strcmp(verb, "revoke") == 0) {
        if (optind >= argc) return usage();
        const char *v[] = {org_id, argv[optind]};
        PGresult *res = NULL;
        if (ds_pg_exec_params(
                pg,
                "update dealscore_internal.ingest_tokens set revoked_at = coalesce(revoked_at, now())"
                " where org_id = $1::uuid and id::text = $2 returning id",
                2, v, NULL, NULL, &res, err, sizeof err) != 0) {
            fprintf(stderr, "dealscore-ingest token: %s\n", err);
            goto out;
        }
        if (PQntuples(res) == 0) {
            fprintf(stderr, "dealscore-ingest token: no token %s in org %s\n", argv[optind], org);
        } else {
            printf("revoked %s\n", argv[optind]);
            rc = 0;
        }
        PQclear(res);
    } else if (strcmp(verb, "list") == 0) {
        const char *v[] = {org_id};
        PGresult *res = NULL;
        if (ds_pg_exec_params(pg,
                              "select id, coalesce(name, ''), created_at, coalesce(revoked_at::text, ''),"
                              " hmac_secret is not null from dealscore_internal.ingest_tokens"
                              " where org_id = $1::uuid order by created_at",
                              1, v, NULL, NULL, &res, err, sizeof err) != 0) {
            fprintf(stderr, "dealscore-ingest token: %s\n", err);
            goto out;
        }
        printf("%-36s  %-20s  %-32s  %-6s  %s\n", "id", "name", "created", "signed", "revoked");
        for (int i = 0; i < PQntuples(res); i++)
            printf("%-36s  %-20s  %-32s  %-6s  %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                   PQgetvalue(res, i, 2), PQgetvalue(res, i, 4)[0] == 't' ? "yes" : "no",
                   PQgetvalue(res, i, 3));
        PQclear(res);
        rc = 0;
    } else {
        rc = usage();
    }
out:
    ds_pg_destroy(pg);
    return rc;
}
