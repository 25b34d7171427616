/* Cold start through the real pipeline (ingest → feature → scoring, real
 * Kafka and Postgres): a new org without a model or closed deals scores its
 * deals with the default stage ladder (a "Proposal" deal above a
 * "Discovery" one), with the CRM's own stage probability when the record
 * carries one (canonical stage_probability, Salesforce's Probability), and
 * with the ladder `dealscore-scoring ladder set` stores. */
#include <criterion/criterion.h>
#include <math.h>

#include "dstest.h"

static dst_t S; /* scoring */
static dst_t F; /* feature */
static dst_t I; /* ingest */

static void setup(void) {
    dst_setup(&S);
    free(dst_token(&S, "newco", NULL));
    dst_start_pipeline(&S, &F, &I);
}

static void teardown(void) { dst_teardown_pipeline(&S, &F, &I); }

TestSuite(priors, .init = setup, .fini = teardown, .timeout = 280);

static void post_ok(const char *path, const char *body) { dst_post_accepted(&I, path, body); }

/* The prediction of the deal once it has the version (polled with a
 * deadline); its probability. */
static double await_score(const char *ext, const char *version, const char *changed_at) {
    char *sql = pgt_fmt("select count(*) from predictions p join opportunities o on o.id = p.opportunity_id"
                        " where o.external_id = '%s' and p.model_version = '%s' and p.is_prior"
                        " and p.as_of = '%s'",
                        ext, version, changed_at);
    long long n = dst_wait_count(&S, sql, 1, 90000);
    free(sql);
    PGconn *db = pgt_connect_db(&S.db);
    if (n != 1) {
        char *seen =
            pgt_valuef(db, "select coalesce(string_agg(o.external_id || ' ' || p.model_version || ' ' ||"
                           " p.as_of, ', '), 'none') from predictions p join opportunities o"
                           " on o.id = p.opportunity_id");
        char *log = proc_slurp(S.log), *flog = proc_slurp(F.log);
        cr_fatal("no %s score of %s as of %s; predictions: %s\nscoring log:\n%s\nfeature log:\n%s", version,
                 ext, changed_at, seen, log, flog);
    }
    char *v =
        pgt_valuef(db,
                   "select proba_close from predictions p join opportunities o on o.id = p.opportunity_id"
                   " where o.external_id = '%s'",
                   ext);
    double p = strtod(v, NULL);
    free(v);
    PQfinish(db);
    return p;
}

static char *deal(const char *ext, const char *stage, const char *changed_at, const char *extra) {
    return pgt_fmt("{\"external_id\":\"%s\",\"stage\":\"%s\",\"created_at\":\"2026-10-01T00:00:00Z\","
                   "\"changed_at\":\"%s\",\"amount\":50000%s}",
                   ext, stage, changed_at, extra ? extra : "");
}

#define AT1 "2026-10-05T00:00:00Z"
#define AT2 "2026-10-06T00:00:00Z"

Test(priors, a_new_orgs_proposal_deal_scores_above_its_discovery_deal) {
    char *d = deal("D-1", "Discovery", AT1, NULL), *p = deal("P-1", "Proposal", AT1, NULL);
    char *body = pgt_fmt("[%s,%s]", d, p);
    post_ok("/v1/opportunities", body);
    double discovery = await_score("D-1", "prior:ladder", AT1),
           proposal = await_score("P-1", "prior:ladder", AT1);
    /* The default org settings order Salesforce's eight open stages (0 .. 7);
     * discovery and proposal keep the default list's places 2 and 4: the
     * default ladder 0.05 + 0.75 * index / 7. */
    cr_expect(fabs(discovery - (0.05 + 0.75 * 2 / 7)) < 1e-12, "discovery %.17g", discovery);
    cr_expect(fabs(proposal - (0.05 + 0.75 * 4 / 7)) < 1e-12, "proposal %.17g", proposal);
    cr_expect_gt(proposal, discovery);
    /* The explanation names the stage. */
    cr_expect_eq(
        dst_count(&S, "select count(*) from predictions p join opportunities o on o.id = p.opportunity_id"
                      " where o.external_id = 'P-1'"
                      " and p.top_features->'positive'->0->>'feature' = 'stage_index'"),
        1);
    free(body);
    free(d);
    free(p);
}

Test(priors, a_crm_probability_comes_before_the_ladder) {
    char *d = deal("C-1", "Discovery", AT1, ",\"stage_probability\":0.3");
    post_ok("/v1/opportunities", d);
    cr_expect(fabs(await_score("C-1", "prior:crm", AT1) - 0.3) < 1e-12);
    cr_expect_eq(dst_count(&S, "select count(*) from opportunities where external_id = 'C-1'"
                               " and stage_probability = 0.3"),
                 1);
    /* Salesforce's Probability is a percentage. */
    post_ok("/v1/opportunities?profile=salesforce",
            "{\"Id\":\"006S\",\"StageName\":\"Prospecting\",\"Probability\":10,"
            "\"CreatedDate\":\"2026-10-01T00:00:00Z\",\"LastModifiedDate\":\"" AT1 "\"}");
    cr_expect(fabs(await_score("006S", "prior:crm", AT1) - 0.1) < 1e-12);
    cr_expect_eq(
        dst_count(&S, "select count(*) from predictions p join opportunities o on o.id = p.opportunity_id"
                      " where o.external_id = '006S'"
                      " and p.top_features->'negative'->0->>'feature' = 'crm_stage_probability'"),
        1);
    /* Without it the same deal falls back to the ladder. */
    char *again = deal("C-1", "Discovery", AT2, NULL);
    post_ok("/v1/opportunities", again);
    cr_expect(fabs(await_score("C-1", "prior:ladder", AT2) - (0.05 + 0.75 * 2 / 7)) < 1e-12);
    free(again);
    free(d);
}

static int ladder(char *const *args, char **out, char **err) {
    char *bin = proc_bin("dealscore-scoring");
    char *argv[12] = {bin, "ladder"};
    int n = 2;
    for (int i = 0; args[i] && n < 11; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int rc = proc_run(argv, S.env, out, err, 30000);
    free(bin);
    return rc;
}

Test(priors, the_org_ladder_set_from_the_command_line_scores_its_deals) {
    char *out = NULL, *err = NULL;
    char *falls[] = {"set", "--org", "newco", "--stage", "Discovery=0.5", "--stage", "Proposal=0.2", NULL};
    cr_expect_eq(ladder(falls, &out, &err), 2);
    cr_expect(strstr(err, "discovery (0.5) comes before proposal (0.2) but is higher") ||
                  strstr(err, "Discovery (0.5) comes before Proposal (0.2) but is higher"),
              "%s", err);
    free(out);
    free(err);
    char *closed[] = {"set", "--org", "newco", "--stage", "Closed Won=0.9", NULL};
    cr_expect_eq(ladder(closed, &out, &err), 2);
    cr_expect(strstr(err, "'Closed Won' is a closed stage"), "%s", err);
    free(out);
    free(err);
    cr_expect_eq(dst_count(&S, "select count(*) from dealscore_internal.stage_ladders"), 0, "nothing stored");

    char *set[] = {"set", "--org", "newco", "--stage", "Discovery=0.15", "--stage", "Proposal=0.55", NULL};
    cr_assert_eq(ladder(set, &out, &err), 0, "%s%s", out, err);
    cr_expect(strstr(out, "0.15") && strstr(out, "0.55"), "%s", out);
    free(out);
    free(err);
    cr_expect_eq(dst_count(&S, "select count(*) from dealscore_internal.stage_ladders"
                               " where (stage, probability) in (('Discovery', 0.15), ('Proposal', 0.55))"),
                 2);
    char *d = deal("L-1", "Discovery", AT1, NULL), *p = deal("L-2", "Proposal", AT1, NULL);
    char *body = pgt_fmt("[%s,%s]", d, p);
    post_ok("/v1/opportunities", body);
    cr_expect(fabs(await_score("L-1", "prior:ladder", AT1) - 0.15) < 1e-12);
    cr_expect(fabs(await_score("L-2", "prior:ladder", AT1) - 0.55) < 1e-12);

    char *show[] = {"show", "--org", "newco", NULL};
    cr_assert_eq(ladder(show, &out, &err), 0, "%s", err);
    cr_expect(strstr(out, "2      0.15         set      needs_analysis discovery\n"), "%s", out);
    cr_expect(strstr(out, "4      0.55         set      id_decision_makers proposal\n"), "%s", out);
    free(out);
    free(err);
    free(body);
    free(d);
    free(p);
}
