/* Several replicas of the feature and scoring workers (the real binaries)
 * on topics of 6 partitions, while changes stream in through ingest:
 * replicas are added, stopped (SIGTERM) and killed (SIGKILL), and the
 * consumer groups rebalance cooperatively. Nothing is lost, no history row
 * is written twice, and every deal's prediction is as of its latest change. */
#include <criterion/criterion.h>

#include "dstest.h"

enum { DEALS = 48, ROUNDS = 6, MAXW = 5 };

static dst_t I;       /* ingest; owns the database and the topics' prefix */
static dst_t F[MAXW]; /* feature replicas */
static dst_t S[MAXW]; /* scoring replicas */

static void setup(void) {
    dst_setup(&I);
    dst_env_set(&I, "DEALSCORE_TOPIC_PARTITIONS", "6");
    free(dst_token(&I, "acme", NULL));
}

static void teardown(void) {
    for (int i = 0; i < MAXW; i++) {
        if (S[i].nenv) dst_teardown(&S[i]);
        if (F[i].nenv) dst_teardown(&F[i]);
    }
    dst_teardown(&I);
}

TestSuite(replicas, .init = setup, .fini = teardown, .timeout = 240);

/* A replica of svc on the test's topics and group, started without waiting
 * for it (the stream goes on while it joins). A session timeout of 6 s (the
 * broker's minimum) lets the group notice a killed replica quickly. */
static void spawn_replica(dst_t *w, const char *svc) {
    dst_clone(w, &I);
    dst_env_set(w, "DEALSCORE_TOPIC_PARTITIONS", "6");
    char *group = pgt_fmt("%s%s", I.prefix, svc);
    dst_env_set(w, "DEALSCORE_GROUP_ID", group);
    free(group);
    dst_env_set(w, "KAFKA_SESSION_TIMEOUT_MS", "6000");
    dst_spawn(w, svc);
}

static void await_ready(dst_t *w) {
    long long deadline = proc_now_ms() + 30000;
    int st = 0;
    while (proc_now_ms() < deadline) {
        httpc_resp_t r = httpc_get(w->port, "/readyz");
        st = r.status;
        httpc_free(&r);
        if (st == 200) return;
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    char *log = proc_slurp(w->log);
    cr_fatal("replica on port %d answered /readyz %d; log:\n%s", w->port, st, log);
}

static void kill_replica(dst_t *w) {
    kill(w->pid, SIGKILL);
    cr_assert_eq(proc_wait(w->pid, 5000), 128 + SIGKILL);
    w->pid = 0;
}

static const char *const stages[] = {"qualification", "discovery", "demo", "proposal", "negotiation"};

/* Round r's change of deal d: a new stage and amount, changed r hours and
 * d seconds after 2026-03-01. */
static void post_change(int d, int r) {
    char *body = pgt_fmt("{\"external_id\":\"R-%d\",\"stage\":\"%s\",\"amount\":%d,"
                         "\"created_at\":\"2026-02-01T00:00:00Z\","
                         "\"changed_at\":\"2026-03-01T%02d:00:%02dZ\",\"account_external_id\":\"ACC-%d\"}",
                         d, stages[(d + r) % 5], 1000 + 10 * r + d, r, d, d % 7);
    httpc_resp_t resp = dst_post(&I, "/v1/opportunities", body, NULL, NULL);
    cr_assert_eq(resp.status, 202, "%s: %s", body, resp.body);
    httpc_free(&resp);
    free(body);
}

/* What happens to the groups halfway through round r. */
static void change_replicas(int r) {
    switch (r) {
    case 1: /* scale out to 4 + 4 */
        spawn_replica(&F[3], "feature");
        spawn_replica(&S[3], "scoring");
        break;
    case 2: /* scale in cleanly */
        dst_stop(&F[0]);
        dst_stop(&S[0]);
        break;
    case 3: /* a replica of each dies without leaving its group */
        kill_replica(&F[1]);
        kill_replica(&S[1]);
        break;
    case 4: /* and one more of each joins */
        spawn_replica(&F[4], "feature");
        spawn_replica(&S[4], "scoring");
        break;
    default: break;
    }
}

/* Partitions handed to the replicas of a service (assignments that gave at
 * least one partition, summed over their logs). */
static int assignments_logged(dst_t *ws) {
    static const char what[] = "kafka partitions assigned: ";
    int n = 0;
    for (int i = 0; i < MAXW; i++) {
        if (!ws[i].log[0]) continue;
        char *log = proc_slurp(ws[i].log);
        for (const char *p = log; (p = strstr(p, what)) != NULL; p++) n += p[strlen(what)] != '"';
        free(log);
    }
    return n;
}

/* The assignments logged by ws, once they exceed more_than or after 60 s:
 * a joining replica's first assignment and the hand-on of a killed one's
 * partitions (after the session timeout) can come after every change is
 * scored. */
static int await_assignments(dst_t *ws, int more_than) {
    long long deadline = proc_now_ms() + 60000;
    int n;
    while ((n = assignments_logged(ws)) <= more_than && proc_now_ms() < deadline) {
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL); /* polling interval */
    }
    return n;
}

Test(replicas, scale_out_and_in_while_changes_stream_in) {
    dst_start(&I, "ingest");
    for (int i = 0; i < 3; i++) {
        spawn_replica(&F[i], "feature");
        spawn_replica(&S[i], "scoring");
    }
    for (int i = 0; i < 3; i++) {
        await_ready(&F[i]);
        await_ready(&S[i]);
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int d = 0; d < DEALS; d++) {
            if (d == DEALS / 2) change_replicas(r);
            post_change(d, r);
        }
    }
    /* Every deal's prediction is as of its latest change (round ROUNDS - 1). */
    char *latest =
        pgt_fmt("select count(*) from predictions p join opportunities o on o.id = p.opportunity_id"
                " where p.as_of = '2026-03-01T%02d:00:00Z'::timestamptz"
                " + (substr(o.external_id, 3)::int * interval '1 second')",
                ROUNDS - 1);
    long long scored = dst_wait_count(&I, latest, DEALS, 90000);
    free(latest);
    if (scored != DEALS) {
        char *log = proc_slurp(F[2].log);
        cr_fatal("%lld of %d deals scored as of their latest change; a feature replica's log:\n%s", scored,
                 DEALS, log);
    }
    cr_expect_eq(dst_count(&I, "select count(*) from predictions"), DEALS);
    cr_expect_eq(dst_count(&I, "select count(*) from opportunities"), DEALS);
    /* No history row twice; none newer than the deal's prediction; the
     * latest change of every deal has exactly one. */
    cr_expect_eq(dst_count(&I, "select count(*) from (select 1 from prediction_history"
                               " group by opportunity_id, as_of, model_version having count(*) > 1) d"),
                 0);
    cr_expect_eq(
        dst_count(&I, "select count(*) from prediction_history h join predictions p using (opportunity_id)"
                      " where h.as_of > p.as_of"),
        0);
    cr_expect_eq(dst_count(&I, "select count(*) from prediction_history h join predictions p"
                               " using (opportunity_id, as_of)"),
                 DEALS);
    /* Every history row is the score of a change that was posted. */
    cr_expect_eq(dst_count(&I, "select count(*) from prediction_history"
                               " where extract(minute from as_of) <> 0 or extract(hour from as_of) >= 6"),
                 0);
    /* The groups did rebalance: beyond the first three replicas' first
     * assignments, at least the partitions of the replica stopped cleanly
     * were handed on. */
    int fa = await_assignments(F, 3), sa = await_assignments(S, 3);
    cr_log_info("assignments: feature %d, scoring %d; history rows %lld", fa, sa,
                dst_count(&I, "select count(*) from prediction_history"));
    cr_expect_gt(fa, 3, "feature partitions were assigned %d times", fa);
    cr_expect_gt(sa, 3, "scoring partitions were assigned %d times", sa);
    for (int i = 3; i < MAXW; i++) {
        await_ready(&F[i]);
        await_ready(&S[i]);
    }
    for (int i = 0; i < MAXW; i++) {
        dst_stop(&F[i]);
        dst_stop(&S[i]);
    }
}
