/* dealscore-scoring train and rescore on a simulated org (dealscore-sim
 * --seed 7 --opportunities 1500, imported with dealscore-ingest import):
 * a trained model beats the stage prior on the test window and becomes
 * active, a worse one stays a candidate with the reason, a better one
 * retires the active one, too few closed deals refuse to train; rescore
 * scores every open opportunity with the active model, runs again as a new
 * run, resumes an interrupted run after its last opportunity, --restart
 * abandons it, and it reads each amount against the deal's cohort and
 * flags the MEDDICC elements missing past the won deals' stage.
 *
 * The org is simulated and imported once per run of this executable into a
 * template database; every test gets a fresh copy of it (CREATE DATABASE ...
 * TEMPLATE), and the template is dropped when the run ends. Needs
 * DEALSCORE_DATABASE_URL (superuser) and DEALSCORE_KAFKA_BROKERS. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>

#include "dstest.h"

#define RUN_TIMEOUT_MS 180000
#define SIM_SEED "7"
#define SIM_OPPORTUNITIES "1500"

/* ---- helpers ----------------------------------------------------------------- */

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = pgt_fmt("%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_rf(p);
        else
            unlink(p);
        free(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static char *make_tmpdir(const char *tag) {
    char *dir = pgt_fmt("/tmp/ds-train-%s-XXXXXX", tag);
    if (!mkdtemp(dir)) cr_fatal("mkdtemp: %s", strerror(errno));
    return dir;
}

typedef struct {
    int rc;
    char *out, *err;
} run_t;

static void run_free(run_t *r) {
    free(r->out);
    free(r->err);
}

/* Runs build/bin/<bin> with args (NULL-terminated) and the test's
 * environment plus extra (may be NULL). OpenMP threads wait passively: on a
 * busy 2-core machine spinning threads cost XGBoost ten times its time. */
static run_t run_env(dst_t *t, const char *extra, const char *bin, ...) {
    char *argv[40];
    size_t n = 0;
    argv[n++] = proc_bin(bin);
    va_list ap;
    va_start(ap, bin);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 38) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char *env[24];
    size_t k = 0;
    for (size_t i = 0; i < t->nenv && k < 20; i++) env[k++] = t->env[i];
    env[k++] = "OMP_WAIT_POLICY=passive";
    if (extra) env[k++] = (char *)extra;
    env[k] = NULL;
    run_t r = {0};
    r.rc = proc_run(argv, env, &r.out, &r.err, RUN_TIMEOUT_MS);
    free(argv[0]);
    return r;
}

#define run(t, bin, ...) run_env(t, NULL, bin, __VA_ARGS__, NULL)

/* Simulates an org into a new temporary directory (caller rm_rf's it). */
static char *simulate(const char *opportunities) {
    char *dir = make_tmpdir("sim");
    char *bin = proc_bin("dealscore-sim");
    char *argv[] = {bin, "--seed", SIM_SEED, "--opportunities", (char *)opportunities, "--out", dir, NULL};
    char *out = NULL, *err = NULL;
    int rc = proc_run(argv, NULL, &out, &err, RUN_TIMEOUT_MS);
    if (rc != 0) cr_fatal("dealscore-sim exited %d:\n%s", rc, err);
    free(out);
    free(err);
    free(bin);
    return dir;
}

static void import_sim(dst_t *t, const char *slug, const char *dir) {
    char *acc = pgt_fmt("%s/accounts.csv", dir), *opp = pgt_fmt("%s/opportunities.csv", dir),
         *inter = pgt_fmt("%s/interactions.csv", dir), *tr = pgt_fmt("%s/transcripts.csv", dir);
    run_t r = run(t, "dealscore-ingest", "import", "--quiet", "--org", slug, "--accounts", acc,
                  "--opportunities", opp, "--interactions", inter, "--transcripts", tr);
    /* 1: a few rows the importer reports (the simulator writes none today). */
    if (r.rc != 0 && r.rc != 1) cr_fatal("import exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    free(acc);
    free(opp);
    free(inter);
    free(tr);
}

/* dst_setup with the database copied from template tmpl. */
static void setup_from_template(dst_t *t, const char *tmpl) {
    memset(t, 0, sizeof *t);
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) cr_fatal("getrandom failed");
    snprintf(t->db.name, sizeof t->db.name, "ds_test_%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5]);
    PGconn *admin = pgt_connect(pgt_admin_url());
    pgt_execf(admin, "create database %s template %s", t->db.name, tmpl);
    PQfinish(admin);
    t->db.created = true;
    t->db.conninfo = pgt_conninfo_for(pgt_admin_url(), t->db.name);
    dst_setup_service(t);
    PGconn *c = pgt_connect_db(&t->db);
    char *id = pgt_valuef(c, "select id from orgs where slug = 'acme'");
    snprintf(t->org_id, sizeof t->org_id, "%s", id ? id : "");
    free(id);
    PQfinish(c);
}

/* The template of this run: the simulated org "acme", imported once. */
static void template_name(char out[64], pid_t runner) { snprintf(out, 64, "ds_trtmpl_%d", (int)runner); }

/* A fresh database holding the simulated org acme (t->org_id set). */
static void setup_acme(dst_t *t) {
    char tmpl[64];
    template_name(tmpl, getppid());
    /* Criterion runs tests in parallel: the first to take the lock builds the
     * template while the others wait for it. */
    PGconn *lock = pgt_connect(pgt_admin_url());
    pgt_execf(lock, "select pg_advisory_lock(hashtext('%s'))", tmpl);
    long long exists = pgt_longf(lock, "select count(*) from pg_database where datname = '%s'", tmpl);
    if (!exists) {
        /* Build it in a database of its own, then copy that as the template. */
        dst_t b;
        dst_setup(&b);
        free(dst_token(&b, "acme", NULL));
        char *dir = simulate(SIM_OPPORTUNITIES);
        long long t0 = proc_now_ms();
        import_sim(&b, "acme", dir);
        cr_log_info("simulated org imported in %.1f s", (double)(proc_now_ms() - t0) / 1000.0);
        rm_rf(dir);
        free(dir);
        pgt_execf(lock, "create database %s template %s", tmpl, b.db.name);
        dst_teardown(&b);
    }
    PQfinish(lock); /* ends the session and with it the lock */
    setup_from_template(t, tmpl);
}

/* Drops the template when the whole run is over (the runner's process). */
ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
    (void)stats;
    const char *url = getenv("DEALSCORE_DATABASE_URL");
    if (!url || !*url) return;
    char tmpl[64];
    template_name(tmpl, getpid());
    PGconn *admin = PQconnectdb(url);
    if (PQstatus(admin) == CONNECTION_OK) {
        char *sql = pgt_fmt("drop database if exists %s with (force)", tmpl);
        PQclear(PQexec(admin, sql));
        free(sql);
    }
    PQfinish(admin);
}

static json_t *json_of(PGconn *c, const char *fmt, const char *arg) {
    char *text = pgt_valuef(c, fmt, arg);
    cr_assert_not_null(text, "no JSON from: %s", fmt);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert_not_null(j, "invalid JSON (%s): %.200s", je.text, text);
    free(text);
    return j;
}

static double num(const json_t *j, const char *path) {
    /* path: "a.b.c" */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *cur = j;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, ".")) cur = json_object_get(cur, tok);
    cr_assert(json_is_number(cur), "%s is not a number", path);
    return json_number_value(cur);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    fclose(f);
    return proc_slurp(path);
}

/* The version of the newest model with the given status, or NULL. */
static char *version_with(PGconn *c, const char *status) {
    return pgt_valuef(
        c,
        "select (select version from models where status = '%s' order by created_at desc, version desc"
        " limit 1)",
        status);
}

/* ---- train ------------------------------------------------------------------ */

TestSuite(train, .timeout = 300);

Test(train, beats_stage_prior_and_activates_then_a_worse_model_stays_candidate) {
    dst_t t;
    setup_acme(&t);
    char *reports = make_tmpdir("reports");
    char *sim = simulate(SIM_OPPORTUNITIES); /* the same data: only its truth.csv is read */
    char *truth = pgt_fmt("%s/truth.csv", sim);

    long long t0 = proc_now_ms();
    run_t r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports, "--truth", truth);
    cr_log_info("train took %.1f s:\n%s", (double)(proc_now_ms() - t0) / 1000.0, r.out);
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.out, "now ACTIVE") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "Bayes-optimal") != NULL, "no Bayes comparison:\n%s", r.out);
    cr_expect(strstr(r.out, "oracle without u and eps") != NULL, "no oracle line:\n%s", r.out);

    PGconn *c = pgt_connect_db(&t.db);
    cr_assert_eq(pgt_longf(c, "select count(*) from models"), 1);
    char *v1 = version_with(c, "active");
    cr_assert_not_null(v1, "no active model");
    cr_expect(strncmp(v1, "m20", 3) == 0 && strlen(v1) >= 17, "version %s", v1);
    /* Feature names in order, the engine's (the trainer leaves out the two
     * closed-deal counts by default). */
    cr_expect_eq(pgt_longf(c, "select array_length(feature_names, 1) from models"), 51);
    cr_expect_eq(pgt_longf(c, "select (feature_names[1] = 'days_open')::int from models"), 1);
    cr_expect_eq(pgt_longf(c, "select (feature_names[45] = 'buyer_contacts')::int from models"), 1);
    cr_expect_eq(pgt_longf(c, "select ('owner_closed_deals' <> all (feature_names))::int from models"), 1);
    /* The artifact is XGBoost's own JSON. */
    json_t *art = json_of(c, "select convert_from(artifact, 'UTF8') from models where version = '%s'", v1);
    cr_expect(json_is_object(json_object_get(art, "learner")), "the artifact has no \"learner\"");
    json_t *fn = json_object_get(json_object_get(art, "learner"), "feature_names");
    cr_expect_eq(json_array_size(fn), 51);
    json_decref(art);
    json_t *cal = json_of(c, "select calibration::text from models where version = '%s'", v1);
    cr_expect(json_is_string(json_object_get(cal, "method")));
    json_decref(cal);
    json_t *win = json_of(c, "select training_window::text from models where version = '%s'", v1);
    cr_expect(num(win, "n_deals") > 1000 && num(win, "n_rows") > 3000);
    cr_expect(num(win, "split.train.deals") > num(win, "split.test.deals"));
    json_decref(win);

    /* Activated, its replay's in-month rates are what the view forecast
     * applies: the org's at 0 to 3 months ahead. */
    cr_expect_eq(pgt_longf(c, "select count(*) from forecast_rates where stage = ''"), 4);
    char *rates_at = pgt_valuef(c, "select max(updated_at)::text from forecast_rates");

    /* The model beats the stage prior on the same test rows. */
    json_t *m = json_of(c, "select metrics::text from models where version = '%s'", v1);
    double auc = num(m, "test.model.roc_auc"), auc_prior = num(m, "test.stage_prior.roc_auc");
    double ll = num(m, "test.model.log_loss"), ll_prior = num(m, "test.stage_prior.log_loss");
    cr_log_info("test window: model AUC %.4f log loss %.4f, stage prior AUC %.4f log loss %.4f", auc, ll,
                auc_prior, ll_prior);
    cr_expect_gt(auc, auc_prior, "model AUC %.4f vs stage prior %.4f", auc, auc_prior);
    cr_expect_lt(ll, ll_prior, "model log loss %.4f vs stage prior %.4f", ll, ll_prior);
    cr_expect_eq(num(m, "test.model.n"), num(m, "test.stage_prior.n"));
    cr_expect(json_is_true(json_object_get(json_object_get(m, "decision"), "activate")));
    cr_expect_gt(json_array_size(json_object_get(m, "per_checkpoint")), 3);
    cr_expect_gt(json_array_size(json_object_get(m, "per_industry")), 3);
    cr_expect_eq(json_array_size(json_object_get(m, "per_region")), 4);
    /* The simulator's truth: the Bayes-optimal ceiling is above the model. */
    cr_expect_gt(num(m, "bayes.matched_rows"), 0);
    cr_expect_gt(num(m, "bayes.bayes_optimal.roc_auc"), auc);
    /* The oracle without u and eps: between the stage prior and the Bayes figure. */
    cr_expect_lt(num(m, "bayes.oracle.roc_auc"), num(m, "bayes.bayes_optimal.roc_auc"));
    cr_expect_gt(num(m, "bayes.oracle.roc_auc"), num(m, "bayes.stage_prior.roc_auc"));
    json_decref(m);

    /* The report: a self-contained page and the same figures as JSON. */
    char *html_path = pgt_fmt("%s/model-%s.html", reports, v1),
         *json_path = pgt_fmt("%s/model-%s.json", reports, v1);
    char *html = read_file(html_path);
    cr_expect(strstr(html, "<svg") != NULL, "the report draws no SVG");
    cr_expect(strstr(html, "<script") == NULL && strstr(html, "src=\"http") == NULL &&
                  strstr(html, "href=\"http") == NULL,
              "the report refers to something outside the file");
    cr_expect(strstr(html, v1) != NULL);
    char *jtext = read_file(json_path);
    json_t *rj = json_loads(jtext, 0, NULL);
    cr_assert_not_null(rj, "the JSON report does not parse");
    cr_expect_float_eq(num(rj, "overall.model.roc_auc"), auc, 1e-6);
    cr_expect_float_eq(num(rj, "overall.stage_prior.roc_auc"), auc_prior, 1e-6);
    cr_expect_gt(json_array_size(json_object_get(rj, "features")), 10);
    cr_expect(json_is_object(json_object_get(rj, "bayes")));
    json_decref(rj);
    free(html);
    free(jtext);
    free(html_path);
    free(json_path);
    run_free(&r);

    /* A deliberately worse model (one stump) stays a candidate, with why. */
    r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports, "--trees", "1", "--depth",
            "1");
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.out, "a CANDIDATE") != NULL, "%s", r.out);
    cr_expect_eq(pgt_longf(c, "select count(*) from models"), 2);
    cr_expect_eq(pgt_longf(c, "select count(*) from models where status = 'active'"), 1);
    char *still = version_with(c, "active");
    cr_expect_str_eq(still, v1, "the active model changed to %s", still);
    char *rates_now = pgt_valuef(c, "select max(updated_at)::text from forecast_rates");
    cr_expect_str_eq(rates_now ? rates_now : "(none)", rates_at ? rates_at : "(none)",
                     "a candidate rewrote the active model's rates");
    free(rates_now);
    free(rates_at);
    char *v2 = version_with(c, "candidate");
    cr_assert_not_null(v2);
    cr_expect_str_neq(v2, v1);
    json_t *m2 = json_of(c, "select metrics::text from models where version = '%s'", v2);
    json_t *dec = json_object_get(m2, "decision");
    cr_expect(json_is_false(json_object_get(dec, "activate")));
    const char *why = json_string_value(json_object_get(dec, "reason"));
    cr_expect(why && strstr(why, "does not beat the active model") && strstr(why, v1), "reason: %s", why);
    const char *compared = json_string_value(json_object_get(json_object_get(m2, "test"), "active_version"));
    cr_expect(compared && strcmp(compared, v1) == 0, "compared with %s", compared);
    cr_expect_gt(num(m2, "test.model.log_loss"), num(m2, "test.active.log_loss"));
    /* The active model was evaluated on the very same rows. */
    cr_expect_float_eq(num(m2, "test.active.log_loss"), ll, 1e-9);
    json_decref(m2);
    run_free(&r);

    free(v1);
    free(v2);
    free(still);
    PQfinish(c);
    rm_rf(reports);
    rm_rf(sim);
    free(reports);
    free(sim);
    free(truth);
    dst_teardown(&t);
}

Test(train, better_model_retires_the_active_one) {
    dst_t t;
    setup_acme(&t);
    char *reports = make_tmpdir("reports");
    PGconn *c = pgt_connect_db(&t.db);
    pgt_exec(c, "listen dealscore_models");

    run_t r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports);
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    char *v1 = version_with(c, "active");
    cr_assert_not_null(v1);
    PGnotify *n = pgt_wait_notify(c, 5000);
    cr_assert_not_null(n, "no NOTIFY dealscore_models on activation");
    cr_expect_str_eq(n->extra, t.org_id);
    PQfreemem(n);

    /* Shallow trees generalize better on 800 training deals. */
    r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports, "--trees", "30",
            "--depth", "2");
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.out, "now ACTIVE") != NULL && strstr(r.out, "retired") != NULL, "%s", r.out);
    run_free(&r);
    char *v2 = version_with(c, "active");
    cr_assert_not_null(v2);
    cr_expect_str_neq(v2, v1);
    char *st1 = pgt_valuef(c, "select status from models where version = '%s'", v1);
    cr_expect_str_eq(st1, "retired");
    cr_expect_eq(pgt_longf(c, "select count(*) from models where status = 'active'"), 1);
    json_t *m = json_of(c, "select metrics::text from models where version = '%s'", v2);
    cr_expect_lt(num(m, "test.model.log_loss"), num(m, "test.active.log_loss"));
    json_decref(m);
    n = pgt_wait_notify(c, 5000);
    cr_expect_not_null(n, "no NOTIFY for the second activation");
    PQfreemem(n);

    free(v1);
    free(v2);
    free(st1);
    PQfinish(c);
    rm_rf(reports);
    free(reports);
    dst_teardown(&t);
}

/* A CronJob retries a failed run: the retry trains on the same inputs and
 * must find the model the first run registered, not add another. */
Test(train, a_retry_on_the_same_inputs_registers_nothing_again) {
    dst_t t;
    setup_acme(&t);
    char *reports = make_tmpdir("reports");
    PGconn *c = pgt_connect_db(&t.db);
    run_t r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports, "--trees", "20");
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    char *v1 = version_with(c, "active");
    cr_assert_not_null(v1);

    r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports, "--trees", "20");
    cr_assert_eq(r.rc, 0, "the retry exited %d:\n%s%s", r.rc, r.out, r.err);
    char *said = pgt_fmt("train: %s was registered already", v1);
    cr_expect(strstr(r.out, said) != NULL, "%s", r.out);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from models"), 1, "the retry registered another model");
    char *st = pgt_valuef(c, "select status from models where version = '%s'", v1);
    cr_expect_str_eq(st, "active");
    char *html = pgt_fmt("%s/model-%s.html", reports, v1);
    cr_expect_eq(access(html, R_OK), 0, "no report %s", html);

    /* Other inputs (here the parameters) are another model. */
    r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports, "--trees", "21");
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from models"), 2);

    free(html);
    free(st);
    free(said);
    free(v1);
    PQfinish(c);
    rm_rf(reports);
    free(reports);
    dst_teardown(&t);
}

/* A report directory that cannot be written (a read-only root file system
 * in a pod) stops the run before it registers anything. */
Test(train, an_unwritable_report_directory_registers_nothing) {
    dst_t t;
    setup_acme(&t);
    char *dir = make_tmpdir("file");
    char *file = pgt_fmt("%s/not-a-dir", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    char *reports = pgt_fmt("%s/reports", file);
    PGconn *c = pgt_connect_db(&t.db);
    run_t r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports);
    cr_expect_eq(r.rc, 1, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.err, "cannot write the report to") != NULL &&
                  strstr(r.err, "nothing registered") != NULL,
              "%s", r.err);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from models"), 0, "a model was registered without its report");
    PQfinish(c);
    free(reports);
    free(file);
    rm_rf(dir);
    free(dir);
    dst_teardown(&t);
}

Test(train, an_active_model_that_cannot_be_evaluated_is_reported_and_replaced) {
    dst_t t;
    setup_acme(&t);
    char *reports = make_tmpdir("reports");
    PGconn *c = pgt_connect_db(&t.db);
    /* An active model whose artifact does not load (the scorer refuses it
     * too, so the org really scores with the stage prior). */
    pgt_execf(
        c,
        "insert into models (org_id, version, feature_names, artifact, status)"
        " values ('%s', 'm-broken', '{days_open}', convert_to('{\"not\": \"a model\"}', 'UTF8'), 'active')",
        t.org_id);
    run_t r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports);
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    char *v = version_with(c, "active");
    cr_assert_not_null(v);
    cr_expect_str_neq(v, "m-broken");
    char *old = pgt_valuef(c, "select status from models where version = 'm-broken'");
    cr_expect_str_eq(old, "retired");
    json_t *m = json_of(c, "select metrics::text from models where version = '%s'", v);
    const char *why = json_string_value(json_object_get(json_object_get(m, "decision"), "reason"));
    cr_expect(why && strstr(why, "m-broken could not be evaluated") && strstr(why, "stage prior"),
              "reason: %s", why);
    cr_expect(json_is_string(json_object_get(m, "active_error")));
    cr_expect(json_is_null(json_object_get(json_object_get(m, "test"), "active")));
    json_decref(m);
    free(v);
    free(old);
    PQfinish(c);
    rm_rf(reports);
    free(reports);
    dst_teardown(&t);
}

Test(train, refuses_an_org_with_too_few_closed_deals) {
    dst_t t;
    dst_setup(&t);
    free(dst_token(&t, "tiny", NULL));
    char *sim = simulate("100");
    import_sim(&t, "tiny", sim);
    PGconn *c = pgt_connect_db(&t.db);
    long long won = pgt_longf(c, "select count(*) from opportunities where outcome = 'won'");
    cr_assert_lt(won, 40, "the small org has %lld won deals", won);

    char *reports = make_tmpdir("reports");
    run_t r = run(&t, "dealscore-scoring", "train", "--org", "tiny", "--report", reports);
    cr_expect_eq(r.rc, 1, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.err, "keeps scoring with the stage prior") != NULL, "%s", r.err);
    cr_expect(strstr(r.err, "at least 40") != NULL, "%s", r.err);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from models"), 0);

    /* DEALSCORE_MIN_CLOSED lowers the bar. */
    r = run_env(&t, "DEALSCORE_MIN_CLOSED=1000000", "dealscore-scoring", "train", "--org", "tiny", NULL);
    cr_expect_eq(r.rc, 1);
    cr_expect(strstr(r.err, "at least 1000000") != NULL, "%s", r.err);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from models"), 0);

    /* Rescore still works: every open deal gets the org's stage win rates
     * (more than DEALSCORE_PRIOR_MIN_CLOSED closed deals, won and lost). */
    cr_expect_gt(pgt_longf(c, "select count(*) from opportunities where outcome <> 'open'"), 20);
    long long open =
        pgt_longf(c, "select count(*) from opportunities where outcome = 'open' and not placeholder");
    r = run(&t, "dealscore-scoring", "rescore", "--org", "tiny", "--no-publish");
    cr_expect_eq(r.rc, 0, "rescore exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    cr_expect_eq(
        pgt_longf(c, "select count(*) from predictions where model_version = 'prior:history' and is_prior"),
        open);

    PQfinish(c);
    rm_rf(reports);
    rm_rf(sim);
    free(reports);
    free(sim);
    dst_teardown(&t);
}

Test(train, usage_errors) {
    dst_t t;
    memset(&t, 0, sizeof t);
    dst_env_add(&t, "DEALSCORE_DATABASE_URL=postgresql://nobody@127.0.0.1:1/none");
    const char *cases[][4] = {
        {"train", NULL},
        {"train", "--org", "acme", "--checkpoints"},
        {"train", "--org", "acme", "--bogus"},
        {"rescore", "--chunk", "0", NULL},
        {"rescore", "extra", NULL, NULL},
    };
    for (size_t i = 0; i < PGT_N(cases); i++) {
        run_t r =
            run_env(&t, NULL, "dealscore-scoring", cases[i][0], cases[i][1], cases[i][2], cases[i][3], NULL);
        cr_expect_eq(r.rc, 2, "case %zu exited %d: %s", i, r.rc, r.err);
        run_free(&r);
    }
    run_t r = run_env(&t, NULL, "dealscore-scoring", "train", "--org", "acme", "--checkpoints", "7,x", NULL);
    cr_expect_eq(r.rc, 2);
    cr_expect(strstr(r.err, "--checkpoints") != NULL, "%s", r.err);
    run_free(&r);
    r = run_env(&t, NULL, "dealscore-scoring", "train", "--org", "acme", "--exclude", "no_such_feature",
                NULL);
    cr_expect_eq(r.rc, 2);
    run_free(&r);
    for (size_t i = 0; i < t.nenv; i++) free(t.env[i]);
}

/* ---- rescore ------------------------------------------------------------------ */

TestSuite(rescore, .timeout = 300);

Test(rescore, scores_every_open_opportunity_with_the_active_model) {
    dst_t t;
    setup_acme(&t);
    char *reports = make_tmpdir("reports");
    run_t r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports);
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    PGconn *c = pgt_connect_db(&t.db);
    char *version = version_with(c, "active");
    cr_assert_not_null(version);
    long long open =
        pgt_longf(c, "select count(*) from opportunities where outcome = 'open' and not placeholder");
    cr_assert_gt(open, 100);
    ds_consumer_t *cons = dst_consumer(&t, DS_TOPIC_PREDICTION_MADE);

    long long t0 = proc_now_ms();
    r = run(&t, "dealscore-scoring", "rescore", "--org", "acme", "--chunk", "50");
    double secs = (double)(proc_now_ms() - t0) / 1000.0;
    cr_assert_eq(r.rc, 0, "rescore exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_log_info("rescore of %lld open opportunities: %.1f s\n%s", open, secs, r.out);
    cr_expect(strstr(r.out, "finished") != NULL, "%s", r.out);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions"), open);
    cr_expect_eq(
        pgt_longf(c,
                  "select count(*) from predictions p join opportunities o on o.id = p.opportunity_id"
                  " where o.outcome = 'open' and p.model_version = '%s' and not p.is_prior"
                  " and jsonb_array_length(p.top_features -> 'positive') +"
                  " jsonb_array_length(p.top_features -> 'negative') > 0",
                  version),
        open);
    cr_expect_eq(pgt_longf(c, "select count(*) from prediction_history"), open);
    cr_expect_eq(pgt_longf(c, "select count(*) from features_snapshot"), open);
    cr_expect_eq(pgt_longf(c, "select count(distinct as_of) from predictions"), 1);
    cr_expect_eq(pgt_longf(c,
                           "select count(*) from dealscore_internal.rescore_runs where status = 'finished'"
                           " and scored = %lld and total = %lld and finished_at is not null",
                           open, open),
                 1);
    /* Every first score is news: one prediction.made each. */
    rd_kafka_message_t **msgs = calloc((size_t)open, sizeof *msgs);
    dst_consume(cons, msgs, (size_t)open, 30000);
    for (long long i = 0; i < open; i++) rd_kafka_message_destroy(msgs[i]);
    free(msgs);
    ds_consumer_destroy(cons);

    /* Right after: a new run (the last one finished), new as_of; every
     * score moved by at most the default DEALSCORE_RESCORE_MIN_CHANGE with
     * the same drivers, so no row is written; still one prediction each. */
    r = run(&t, "dealscore-scoring", "rescore", "--org", "acme", "--no-publish");
    cr_assert_eq(r.rc, 0, "rescore exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.out, "resuming") == NULL);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions"), open);
    cr_expect_eq(pgt_longf(c, "select count(*) from prediction_history"), open);
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions where previous_proba is not null"), 0);
    cr_expect_eq(
        pgt_longf(c, "select count(*) from dealscore_internal.rescore_runs where status = 'finished'"), 2);

    /* Every org (one here), walking (org_id, id). */
    r = run(&t, "dealscore-scoring", "rescore", "--no-publish", "--no-snapshot", "--chunk", "7");
    cr_assert_eq(r.rc, 0, "rescore exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from prediction_history"), open);
    /* A snapshot is stored with each written score only: the second run
     * wrote none. */
    cr_expect_eq(pgt_longf(c, "select count(*) from features_snapshot"), open);
    cr_expect_eq(pgt_longf(c,
                           "select count(*) from dealscore_internal.rescore_runs where org_id is null"
                           " and status = 'finished' and scored = %lld",
                           open),
                 1);

    free(version);
    PQfinish(c);
    rm_rf(reports);
    free(reports);
    dst_teardown(&t);
}

/* The amount drivers of predictions, with the amount's words against the
 * quartiles 10,000 / 30,000 / 90,000 of the cohort the test gives every
 * open deal. */
#define AMOUNT_DRIVERS                                                                                       \
    " from predictions p join opportunities o on o.id = p.opportunity_id cross join lateral"                 \
    " jsonb_array_elements((p.top_features -> 'positive') || (p.top_features -> 'negative')) d"              \
    " cross join lateral (select '(' || case when o.amount > 90000 then 'above 75 %%'"                       \
    " when o.amount > 30000 then 'above half' when o.amount >= 10000 then 'below half'"                      \
    " else 'below 75 %%' end || ' of similar won deals)' as w) x where d ->> 'feature' = 'amount_log'"

/* The meddicc_missing risks of deal_risks (x), with the deal's features
 * of the rescore (f). */
#define MEDDICC_RISKS                                                                                        \
    " from deal_risks d cross join lateral jsonb_array_elements(d.risks) x"                                  \
    " join features_snapshot f on f.opportunity_id = d.opportunity_id and f.as_of = d.as_of"                 \
    " where x ->> 'rule' = 'meddicc_missing'"

/* A rescore reads each amount against its benchmark cohort, as the worker
 * and /api/predict do (they share scoring_persist's read of it), and flags
 * MEDDICC elements missing past the stage by which half of the won deals
 * with a recorded call had them (on this org, the pain: the simulator's
 * won deals show the other elements less often), only in deals with a
 * call transcript. */
Test(rescore, reads_amounts_against_their_cohort_and_flags_missing_elements) {
    dst_t t;
    setup_acme(&t);
    char *reports = make_tmpdir("reports");
    run_t r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports);
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    rm_rf(reports);
    free(reports);
    PGconn *c = pgt_connect_db(&t.db);
    pgt_execf(c,
              "insert into benchmarks_cached (org_id, cohort_key, as_of, match_level, cohort_size, metrics)"
              " values ('%s', 'all', now(), 'org', 200,"
              " '{\"amount\": {\"p25\": 10000, \"median\": 30000, \"p75\": 90000}}')",
              t.org_id);
    pgt_exec(
        c, "insert into opportunity_benchmarks (org_id, opportunity_id, account_id, cohort_key, match_level)"
           " select org_id, id, account_id, 'all', 'org' from opportunities"
           " where outcome = 'open' and not placeholder");
    r = run(&t, "dealscore-scoring", "rescore", "--org", "acme", "--no-publish");
    cr_assert_eq(r.rc, 0, "rescore exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    long long drivers = pgt_longf(c, "select count(*)" AMOUNT_DRIVERS);
    cr_assert_gt(drivers, 10, "the model's amount is among the drivers of some deals");
    cr_expect_eq(
        pgt_longf(c, "select count(*)" AMOUNT_DRIVERS " and right(d ->> 'display', length(x.w)) = x.w"),
        drivers, "e.g. %s", pgt_valuef(c, "select d ->> 'display'" AMOUNT_DRIVERS " limit 1"));

    long long missing = pgt_longf(c, "select count(*)" MEDDICC_RISKS);
    cr_expect_gt(missing, 0, "no deal lacks an element the won deals usually have");
    cr_expect_eq(
        pgt_longf(c, "select count(*)" MEDDICC_RISKS " and x ->> 'evidence' ~ '^No [a-z ]+ identified yet"
                     " in [a-z]+ \\([0-9]+ recorded calls?\\); [0-9]+ %% of won deals with a recorded"
                     " call had it by [a-z]+$' and (f.features ->> 'n_transcripts')::int > 0"),
        missing, "learned thresholds, deals with a transcript: %s",
        pgt_valuef(c, "select string_agg(distinct x ->> 'evidence', '; ')" MEDDICC_RISKS));
    PQfinish(c);
    dst_teardown(&t);
}

/* Runs rescore on acme and returns how many scores it wrote (its summary). */
static long long rescore_written(dst_t *t, const char *extra) {
    run_t r = run_env(t, extra, "dealscore-scoring", "rescore", "--org", "acme", "--no-publish",
                      "--no-snapshot", NULL);
    cr_assert_eq(r.rc, 0, "rescore exited %d:\n%s%s", r.rc, r.out, r.err);
    const char *p = strstr(r.out, " changed, ");
    cr_assert(p, "%s", r.out);
    long long written = strtoll(p + strlen(" changed, "), NULL, 10);
    run_free(&r);
    return written;
}

/* Deals of the org's latest history rows, picked by place in id order. */
#define LATEST_OF(from, count)                                                                               \
    " where id in (select distinct on (opportunity_id) id from prediction_history"                           \
    " where opportunity_id in (select id from opportunities where outcome = 'open' and not placeholder"      \
    " order by id offset " from " limit " count ") order by opportunity_id, as_of desc)"

/* A nightly rescore writes only the scores that moved: with the same model
 * and features nothing is rewritten; a probability that moved by more than
 * DEALSCORE_RESCORE_MIN_CHANGE, other top drivers or another model version
 * are, and only those. */
Test(rescore, writes_only_the_scores_that_moved) {
    dst_t t;
    setup_acme(&t);
    char *reports = make_tmpdir("reports");
    run_t r = run(&t, "dealscore-scoring", "train", "--org", "acme", "--report", reports);
    cr_assert_eq(r.rc, 0, "train exited %d:\n%s%s", r.rc, r.out, r.err);
    run_free(&r);
    rm_rf(reports);
    free(reports);
    PGconn *c = pgt_connect_db(&t.db);
    long long open =
        pgt_longf(c, "select count(*) from opportunities where outcome = 'open' and not placeholder");
    cr_assert_eq(rescore_written(&t, NULL), open, "every first score is written");
    char *first = pgt_valuef(c, "select max(updated_at)::text from predictions");

    cr_expect_eq(rescore_written(&t, NULL), 0, "the same model and features rewrite nothing");
    cr_expect_eq(pgt_longf(c, "select count(*) from prediction_history"), open);
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions where updated_at > '%s'", first), 0);
    /* Nor the deals' risks: Realtime subscribers get no row for a night
     * in which nothing about a deal changed. */
    cr_expect_eq(pgt_longf(c, "select count(*) from deal_risks"), open);
    cr_expect_eq(pgt_longf(c, "select count(*) from deal_risks where updated_at > '%s'", first), 0);

    /* The previous scores as if they had been otherwise: 5 by 0.02 (moved),
     * 5 by 0.002 (within 0.005), 3 with another top driver, 4 of another
     * model version. */
    pgt_execf(c, "update prediction_history set proba_close = case when proba_close > 0.5 then"
                 " proba_close - 0.02 else proba_close + 0.02 end" LATEST_OF("0", "5"));
    pgt_execf(c, "update prediction_history set proba_close = case when proba_close > 0.5 then"
                 " proba_close - 0.002 else proba_close + 0.002 end" LATEST_OF("5", "5"));
    /* The risks rows of those 10 as written with the same earlier scores. */
    pgt_execf(c, "update deal_risks d set proba_close = h.proba_close from (select opportunity_id,"
                 " proba_close from prediction_history" LATEST_OF(
                     "0", "10") ") h"
                                " where h.opportunity_id = d.opportunity_id");
    pgt_execf(
        c, "update prediction_history h set contributions = jsonb_set(h.contributions::jsonb, array[f.name],"
           " to_jsonb(-(h.contributions ->> f.name)::float8))::json"
           " from (select opportunity_id, top_features -> 'positive' -> 0 ->> 'feature' as name"
           " from predictions) f where f.opportunity_id = h.opportunity_id and h.id in"
           " (select id from prediction_history" LATEST_OF("10", "3") ")");
    pgt_execf(c, "update prediction_history set model_version = 'an-older-model'" LATEST_OF("13", "4"));
    long long moved = rescore_written(&t, NULL);
    cr_expect_eq(moved, 5 + 3 + 4, "%lld written", moved);
    cr_expect_eq(pgt_longf(c, "select count(*) from prediction_history"), open + 12);
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions where updated_at > '%s'", first), 12);
    /* One rule for the deal's derived rows: the risks of the 5 that moved
     * by 0.02 are written again, those of the 5 within 0.005 are not (their
     * risks rows are those of their last written score). */
    cr_expect_eq(pgt_longf(c, "select count(*) from deal_risks where updated_at > '%s'", first), 5);

    /* A threshold above the moves leaves the probabilities alone; 0 writes
     * every score that moved at all. */
    pgt_execf(c, "update prediction_history set proba_close = case when proba_close > 0.5 then"
                 " proba_close - 0.02 else proba_close + 0.02 end" LATEST_OF("0", "5"));
    cr_expect_eq(rescore_written(&t, "DEALSCORE_RESCORE_MIN_CHANGE=0.05"), 0);
    run_t bad = run_env(&t, "DEALSCORE_RESCORE_MIN_CHANGE=lots", "dealscore-scoring", "rescore", NULL);
    cr_expect_eq(bad.rc, 2);
    cr_expect(strstr(bad.err, "DEALSCORE_RESCORE_MIN_CHANGE"), "%s", bad.err);
    run_free(&bad);
    free(first);
    PQfinish(c);
    dst_teardown(&t);
}

Test(rescore, resumes_an_interrupted_run_after_its_last_opportunity) {
    dst_t t;
    setup_acme(&t);
    PGconn *c = pgt_connect_db(&t.db);
    long long open =
        pgt_longf(c, "select count(*) from opportunities where outcome = 'open' and not placeholder");
    long long half = open / 2;
    char *last = pgt_valuef(c,
                            "select id from opportunities where outcome = 'open' and not placeholder"
                            " order by id offset %lld limit 1",
                            half - 1);
    /* A run interrupted an hour ago after the first half. */
    pgt_execf(c,
              "insert into dealscore_internal.rescore_runs (org_id, as_of, started_at, last_opportunity_id, "
              "scored, total)"
              " values ('%s', now() - interval '1 hour', now() - interval '1 hour', '%s', %lld, %lld)",
              t.org_id, last, half, open);
    /* And an older one that is too old to resume. */
    pgt_execf(c,
              "insert into dealscore_internal.rescore_runs (org_id, as_of, started_at, scored)"
              " values ('%s', now() - interval '30 hours', now() - interval '30 hours', 5)",
              t.org_id);

    run_t r = run(&t, "dealscore-scoring", "rescore", "--org", "acme", "--no-publish", "--chunk", "40");
    cr_assert_eq(r.rc, 0, "rescore exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.err, "resuming") != NULL, "%s", r.err);
    run_free(&r);
    /* Only the opportunities after the last one done, as of the run's as_of. */
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions"), open - half);
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions where opportunity_id <= '%s'", last), 0);
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions p where p.as_of = (select as_of from"
                              " dealscore_internal.rescore_runs where status = 'finished')"),
                 open - half);
    cr_expect_eq(pgt_longf(c, "select count(*) from dealscore_internal.rescore_runs"), 2,
                 "the run was not resumed");
    cr_expect_eq(pgt_longf(c,
                           "select count(*) from dealscore_internal.rescore_runs where status = 'finished'"
                           " and scored = %lld",
                           open),
                 1);
    cr_expect_eq(pgt_longf(c,
                           "select count(*) from dealscore_internal.rescore_runs where status = 'abandoned'"
                           " and started_at < now() - interval '1 day'"),
                 1);
    /* Stage prior: the org has no model. */
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions where not is_prior"), 0);

    /* --restart abandons an unfinished run and scores everything. */
    pgt_execf(c,
              "insert into dealscore_internal.rescore_runs (org_id, started_at, last_opportunity_id, scored)"
              " values ('%s', now() - interval '5 minutes', '%s', %lld)",
              t.org_id, last, half);
    r = run(&t, "dealscore-scoring", "rescore", "--org", "acme", "--no-publish", "--restart");
    cr_assert_eq(r.rc, 0, "rescore exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.err, "resuming") == NULL, "%s", r.err);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from predictions"), open);
    cr_expect_eq(
        pgt_longf(c, "select count(*) from dealscore_internal.rescore_runs where status = 'abandoned'"), 2);
    cr_expect_eq(
        pgt_longf(c, "select count(*) from dealscore_internal.rescore_runs where finished_at is null"), 0);

    /* A run killed after committing chunks but before recording any: its
     * resumption scores them again with the same as_of, over rows that are
     * there already. The chunks with a written score (the first half's first
     * scores: the second half's scores did not move since the run an hour
     * ago) fail their plain INSERTs and are redone with ON CONFLICT DO
     * NOTHING; no row is added twice. */
    char *asof =
        pgt_valuef(c, "select as_of::text from dealscore_internal.rescore_runs where status = 'finished'"
                      " order by started_at desc limit 1");
    pgt_execf(c,
              "update dealscore_internal.rescore_runs set finished_at = null, status = 'running', "
              "last_opportunity_id = null, scored = 0 where as_of = '%s'",
              asof);
    long long hist = pgt_longf(c, "select count(*) from prediction_history");
    long long snaps = pgt_longf(c, "select count(*) from features_snapshot");
    r = run(&t, "dealscore-scoring", "rescore", "--org", "acme", "--no-publish", "--chunk", "40");
    cr_assert_eq(r.rc, 0, "rescore exited %d:\n%s%s", r.rc, r.out, r.err);
    cr_expect(strstr(r.err, "resuming") != NULL, "%s", r.err);
    long long again = (half + 39) / 40;
    char *want = pgt_fmt("; %lld chunks written again over an earlier attempt's rows", again);
    cr_expect(strstr(r.err, want) != NULL, "expected \"%s\" in:\n%s", want, r.err);
    free(want);
    run_free(&r);
    cr_expect_eq(pgt_longf(c, "select count(*) from prediction_history"), hist);
    cr_expect_eq(pgt_longf(c, "select count(*) from features_snapshot"), snaps);
    /* A snapshot with each written score: the first half's. */
    cr_expect_eq(pgt_longf(c, "select count(*) from features_snapshot where as_of = '%s'", asof), half);
    cr_expect_eq(pgt_longf(c,
                           "select count(*) from dealscore_internal.rescore_runs where status = 'finished'"
                           " and as_of = '%s' and scored = %lld",
                           asof, open),
                 1);
    free(asof);

    free(last);
    PQfinish(c);
    dst_teardown(&t);
}
