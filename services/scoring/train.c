/* dealscore-scoring train: builds a point-in-time training set with the
 * feature engine (one row per closed deal per checkpoint before its close),
 * splits it by close date, trains gradient-boosted trees, calibrates on a
 * held-out fold, evaluates the model against the stage prior (and the active
 * model) on the newest deals, writes the model report, and registers the
 * model: active when it beats the incumbent's log loss on the same test
 * window, else a candidate. See services/scoring/README.md, "Training". */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/common.h"
#include "base/log.h"
#include "domain/eval.h"
#include "domain/model.h"
#include "domain/report.h"
#include "scoring.h"

#define TRAIN_MAX_CHECKPOINTS 32
#define TRAIN_LOAD_BATCH 500
#define TRAIN_SHARE_TRAIN 0.6 /* oldest closes */
#define TRAIN_SHARE_CALIB 0.2 /* next; the newest 20 % are the test window */
#define TRAIN_MAX_SEGMENTS 40
#define TRAIN_REPORT_FEATURES 20
/* Left out of the model unless --exclude says otherwise: counts of an
 * account's or owner's closed deals only grow with calendar time, so under a
 * split by close date the test window sees values the training window never
 * did, and trees learn "early in the org's history" rather than anything
 * about the deal (on the simulator they cost about 0.04 of test AUC). The
 * smoothed win rates next to them carry the signal. */
#define TRAIN_DEFAULT_EXCLUDE "account_closed_deals,owner_closed_deals"

static const int default_checkpoints[] = {7, 14, 30, 60, 90, 180};

enum { PART_TRAIN = 0, PART_CALIB, PART_TEST, PART_COUNT };
static const char *const part_names[PART_COUNT] = {"train", "calibration", "test"};

typedef struct {
    char *id;
    char *external_id;
    char *industry; /* NULL when the account has none */
    char *region;
    int64_t created_at_us, closed_at_us;
    bool won;
    int part;
    int n_rows;
} deal_t;

typedef struct {
    size_t deal;
    int day;   /* checkpoint, days after creation */
    int stage; /* stage_index at the checkpoint, -1 unknown */
    double label, weight;
} row_t;

typedef struct {
    const char *org;
    int checkpoints[TRAIN_MAX_CHECKPOINTS];
    size_t n_checkpoints;
    ds_model_params_t params;
    int calib; /* 0 = auto (ds_calib_fit), else a ds_calib_method_t */
    const char *report_dir;
    const char *truth_path;
    int min_closed;
    bool excluded[DS_FEATURE_COUNT]; /* engine features left out of the model */
} train_opts_t;

/* The evaluation of one probability column on the test rows. */
typedef struct {
    double *p;
    ds_eval_metrics_t all;
} scored_t;

typedef struct {
    char *key;
    ds_eval_metrics_t model, prior;
    double weight;
} seg_t;

#define usage_error(...) scoring_usage_error("train", __VA_ARGS__)

static void help(FILE *out) {
    fprintf(out,
            "usage: dealscore-scoring train --org SLUG [options]\n"
            "\n"
            "Builds one training row per closed deal per checkpoint before its close (features\n"
            "as of that moment, label won/lost, weight 1/checkpoints of the deal), splits the\n"
            "deals by close date (oldest 60 %% train, next 20 %% calibration, newest 20 %% test),\n"
            "trains gradient-boosted trees, calibrates, compares with the stage prior and the\n"
            "active model on the test window, writes the report and registers the model\n"
            "(active only if it beats the active model's log loss on the same rows).\n"
            "\n"
            "  --org SLUG               the org (required)\n"
            "  --checkpoints LIST       days after creation (default 7,14,30,60,90,180)\n"
            "  --trees N                boosting rounds (default 100)\n"
            "  --depth N                maximum tree depth (default 4)\n"
            "  --eta X                  learning rate (default 0.08)\n"
            "  --min-child-weight X     (default 1)\n"
            "  --subsample X            row share per tree (default 0.8)\n"
            "  --seed N                 (default 0)\n"
            "  --threads N              XGBoost threads (default 2)\n"
            "  --calibration M          auto, isotonic or platt (default auto: isotonic from %d rows)\n"
            "  --min-closed N           won and lost deals needed (default DEALSCORE_MIN_CLOSED)\n"
            "  --exclude LIST           engine features to leave out of the model, comma-separated\n"
            "                           (default " TRAIN_DEFAULT_EXCLUDE "; \"\" keeps all)\n"
            "  --report DIR             where model-<version>.html and .json go (default ./reports)\n"
            "  --truth FILE             the simulator's truth.csv: also report the Bayes-optimal\n"
            "                           figures on the test rows it covers\n"
            "\n"
            "Exit status: 0 trained and registered (active or candidate), 1 failure or too few\n"
            "closed deals (nothing registered), 2 bad usage.\n",
            DS_CALIB_ISOTONIC_MIN_ROWS);
}


static bool parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static bool parse_checkpoints(const char *s, train_opts_t *o) {
    o->n_checkpoints = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 3650 || o->n_checkpoints >= TRAIN_MAX_CHECKPOINTS) return false;
        o->checkpoints[o->n_checkpoints++] = (int)v;
        p = end;
        if (*p == ',') {
            p++;
            if (!*p) return false;
        } else if (*p) {
            return false;
        }
    }
    if (!o->n_checkpoints) return false;
    qsort(o->checkpoints, o->n_checkpoints, sizeof(int), cmp_int);
    size_t k = 0;
    for (size_t i = 0; i < o->n_checkpoints; i++)
        if (k == 0 || o->checkpoints[k - 1] != o->checkpoints[i]) o->checkpoints[k++] = o->checkpoints[i];
    o->n_checkpoints = k;
    return true;
}

static void fmt_date(int64_t us, char out[16]) {
    char buf[40];
    ds_format_time_us(us, buf, sizeof buf);
    snprintf(out, 16, "%.10s", buf);
}

static char *dup_or_null(const char *s) { return s && *s ? ds_strdup(s) : NULL; }

static bool parse_exclude(const char *s, train_opts_t *o, char *bad, size_t badsz) {
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)(len < 95 ? len : 95), p);
        int id = ds_feature_index(name);
        if (id < 0) {
            snprintf(bad, badsz, "%s", name);
            return false;
        }
        o->excluded[id] = true;
        p += len;
        if (*p == ',') p++;
    }
    return true;
}

/* Rows idx[0..n) of x (engine values) restricted to the model's columns. */
static float *gather(const float *x, const size_t *idx, size_t n, const int *cols, size_t nf) {
    float *out = ds_malloc((n * nf + 1) * sizeof *out);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < nf; j++) out[i * nf + j] = x[idx[i] * DS_FEATURE_COUNT + (size_t)cols[j]];
    return out;
}

/* ---- evaluation helpers --------------------------------------------------------- */

/* Metrics of p on the rows idx[0..n) of the test arrays (weights w, or NULL). */
static void eval_subset(const double *p, const double *y, const double *w, const size_t *idx, size_t n,
                        ds_eval_metrics_t *out) {
    double *pp = ds_malloc((n + 1) * sizeof *pp), *yy = ds_malloc((n + 1) * sizeof *yy),
           *ww = w ? ds_malloc((n + 1) * sizeof *ww) : NULL;
    for (size_t i = 0; i < n; i++) {
        pp[i] = p[idx[i]];
        yy[i] = y[idx[i]];
        if (ww) ww[i] = w[idx[i]];
    }
    char err[256];
    if (ds_eval_metrics(pp, yy, ww, n, out, err, sizeof err) != 0) ds_warn("evaluation failed: %s", err);
    free(pp);
    free(yy);
    free(ww);
}

static json_t *metrics_json(const ds_eval_metrics_t *m) { return ds_eval_metrics_json(m); }

static int cmp_seg(const void *a, const void *b) {
    const seg_t *x = a, *y = b;
    if (x->weight != y->weight) return x->weight < y->weight ? 1 : -1;
    return strcmp(x->key, y->key);
}

/* Groups the test rows by a deal attribute (industry or region) and
 * evaluates model and prior per group, largest groups first. */
static size_t segments(const deal_t *deals, const row_t *rows, const size_t *test, size_t nt, const double *pm,
                       const double *pp, const double *y, const double *w, bool industry, seg_t **out) {
    seg_t *segs = NULL;
    size_t ns = 0, cap = 0;
    size_t *idx = ds_malloc((nt + 1) * sizeof *idx);
    const char **keys = ds_calloc(nt + 1, sizeof *keys);
    for (size_t i = 0; i < nt; i++) {
        const deal_t *d = &deals[rows[test[i]].deal];
        const char *k = industry ? d->industry : d->region;
        keys[i] = k ? k : "(none)";
    }
    for (size_t i = 0; i < nt; i++) {
        bool seen = false;
        for (size_t s = 0; s < ns && !seen; s++) seen = strcmp(segs[s].key, keys[i]) == 0;
        if (seen) continue;
        size_t n = 0;
        double wsum = 0;
        for (size_t j = i; j < nt; j++)
            if (strcmp(keys[j], keys[i]) == 0) {
                idx[n++] = j;
                wsum += w[j];
            }
        if (ns == cap) {
            cap = cap ? cap * 2 : 8;
            segs = ds_realloc(segs, cap * sizeof *segs);
        }
        seg_t *s = &segs[ns++];
        memset(s, 0, sizeof *s);
        s->key = ds_strdup(keys[i]);
        s->weight = wsum;
        eval_subset(pm, y, w, idx, n, &s->model);
        eval_subset(pp, y, w, idx, n, &s->prior);
    }
    qsort(segs, ns, sizeof *segs, cmp_seg);
    if (ns > TRAIN_MAX_SEGMENTS) {
        for (size_t s = TRAIN_MAX_SEGMENTS; s < ns; s++) free(segs[s].key);
        ns = TRAIN_MAX_SEGMENTS;
    }
    free(idx);
    free(keys);
    *out = segs;
    return ns;
}

static json_t *table_json(const seg_t *segs, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:o, s:o}", "key", segs[i].key, "model",
                                           metrics_json(&segs[i].model), "stage_prior",
                                           metrics_json(&segs[i].prior)));
    return a;
}

/* ---- the simulator's truth --------------------------------------------------------- */

typedef struct {
    char *key; /* external_id '\x1f' day */
    size_t test_row;
} truth_key_t;

static int cmp_truth_key(const void *a, const void *b) {
    return strcmp(((const truth_key_t *)a)->key, ((const truth_key_t *)b)->key);
}

/* Reads truth.csv (opportunity_external_id,checkpoint_day,as_of,true_proba,
 * outcome) and sets truth[i] for every test row with a matching line (NaN
 * for the others). Returns the number matched, or -1 when the file cannot be
 * read. */
static long read_truth(const char *path, const deal_t *deals, const row_t *rows, const size_t *test, size_t nt,
                       double *truth) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dealscore-scoring train: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    truth_key_t *keys = ds_calloc(nt + 1, sizeof *keys);
    size_t nk = 0;
    for (size_t i = 0; i < nt; i++) {
        truth[i] = NAN;
        const deal_t *d = &deals[rows[test[i]].deal];
        if (!d->external_id) continue;
        keys[nk].key = ds_asprintf("%s\x1f%d", d->external_id, rows[test[i]].day);
        keys[nk++].test_row = i;
    }
    qsort(keys, nk, sizeof *keys, cmp_truth_key);
    char line[4096];
    long matched = 0;
    bool header = true;
    while (fgets(line, sizeof line, f)) {
        if (header) {
            header = false;
            if (strncmp(line, "opportunity_external_id", 23) == 0) continue;
        }
        char *fields[5] = {0};
        char *p = line;
        int nf = 0;
        while (nf < 5) {
            fields[nf++] = p;
            char *c = strchr(p, ',');
            if (!c) break;
            *c = '\0';
            p = c + 1;
        }
        if (nf < 4) continue;
        char *key = ds_asprintf("%s\x1f%s", fields[0], fields[1]);
        truth_key_t probe = {.key = key};
        truth_key_t *hit = nk ? bsearch(&probe, keys, nk, sizeof *keys, cmp_truth_key) : NULL;
        free(key);
        double v;
        char *end;
        v = strtod(fields[3], &end);
        if (hit && end != fields[3] && v >= 0 && v <= 1) {
            if (isnan(truth[hit->test_row])) matched++;
            truth[hit->test_row] = v;
        }
    }
    fclose(f);
    for (size_t i = 0; i < nk; i++) free(keys[i].key);
    free(keys);
    return matched;
}

/* ---- the active model ----------------------------------------------------------------- */

/* Scores the test rows (x: engine values, DS_FEATURE_COUNT per row) with the
 * org's active model. Returns 1 and fills p (calibrated), 0 without an
 * active model, or -1 when it exists but cannot be evaluated (why). */
static int score_active(ds_pg_t *pg, const char *org_id, const float *x, size_t nt, double *p, char version[64],
                        char *why, size_t whysz) {
    const char *v[] = {org_id};
    PGresult *r = NULL;
    char err[512];
    version[0] = '\0';
    if (ds_pg_exec_params(pg,
                          "select version, artifact, calibration::text from public.models"
                          " where org_id = $1::uuid and status = 'active'",
                          1, v, NULL, NULL, &r, err, sizeof err) != 0) {
        snprintf(why, whysz, "could not read it: %s", err);
        return -1;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        return 0;
    }
    snprintf(version, 64, "%s", PQgetvalue(r, 0, 0));
    int rc = -1;
    ds_model_t *m = NULL;
    ds_calib_t *cal = NULL;
    int *map = NULL;
    float *xm = NULL;
    double *margin = NULL;
    size_t blen = 0;
    unsigned char *bytes = PQgetisnull(r, 0, 1) ? NULL : PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &blen);
    if (!bytes || !blen) {
        snprintf(why, whysz, "it has no artifact");
        goto out;
    }
    if (ds_model_load(bytes, blen, 2, &m, err, sizeof err) != 0) {
        snprintf(why, whysz, "its artifact does not load: %s", err);
        goto out;
    }
    const char *names[DS_FEATURE_COUNT];
    for (int i = 0; i < DS_FEATURE_COUNT; i++) names[i] = ds_feature_name(i);
    size_t nf = ds_model_n_features(m);
    map = ds_calloc(nf + 1, sizeof *map);
    if (ds_model_feature_map(m, names, DS_FEATURE_COUNT, map, err, sizeof err) != 0) {
        snprintf(why, whysz, "%s", err);
        goto out;
    }
    if (!PQgetisnull(r, 0, 2) && ds_calib_from_json(PQgetvalue(r, 0, 2), &cal, err, sizeof err) != 0) {
        snprintf(why, whysz, "its calibration is unreadable: %s", err);
        goto out;
    }
    xm = ds_malloc((nt * nf + 1) * sizeof *xm);
    for (size_t i = 0; i < nt; i++)
        for (size_t j = 0; j < nf; j++) xm[i * nf + j] = x[i * DS_FEATURE_COUNT + (size_t)map[j]];
    margin = ds_malloc((nt + 1) * sizeof *margin);
    if (ds_model_predict_margin(m, xm, nt, margin, err, sizeof err) != 0) {
        snprintf(why, whysz, "it does not predict: %s", err);
        goto out;
    }
    for (size_t i = 0; i < nt; i++) p[i] = ds_calib_apply(cal, margin[i]);
    rc = 1;
out:
    if (bytes) PQfreemem(bytes);
    PQclear(r);
    ds_model_destroy(m);
    ds_calib_destroy(cal);
    free(map);
    free(xm);
    free(margin);
    return rc;
}

/* ---- registration ------------------------------------------------------------------------ */

typedef struct {
    const char *org_id;
    char version[64];
    const char *base_version;
    bool activate;         /* the decision made on the test window */
    const char *incumbent; /* the active version compared with, "" for none */
    const char *reason;
    const char *artifact;
    size_t artifact_len;
    char *names_arr;
    char *calib_json;
    char *window_json;
    json_t *metrics; /* "decision" is (re)set inside the transaction */
    /* results */
    bool activated;
    char final_reason[1024];
    char retired[64];
} reg_t;

static int register_tx(ds_pg_t *pg, void *ud, char *errstr, size_t errsz) {
    reg_t *g = ud;
    PGresult *r = NULL;
    const char *v1[] = {g->org_id};
    /* One registration per org at a time: the active model cannot change
     * between the check below and the insert. */
    int rc = ds_pg_exec_params(pg, "select pg_advisory_xact_lock(hashtext('dealscore.models'), hashtext($1))", 1,
                               v1, NULL, NULL, NULL, errstr, errsz);
    if (rc != 0) return rc;
    rc = ds_pg_exec_params(pg, "select version from public.models where org_id = $1::uuid and status = 'active'", 1,
                           v1, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    char current[64] = "";
    if (PQntuples(r) == 1) snprintf(current, sizeof current, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    g->activated = g->activate;
    snprintf(g->final_reason, sizeof g->final_reason, "%s", g->reason);
    if (g->activate && strcmp(current, g->incumbent) != 0) {
        g->activated = false;
        snprintf(g->final_reason, sizeof g->final_reason,
                 "the active model changed during training (now %s, compared with %s); it stays a candidate: "
                 "train again to compare with the new one",
                 current[0] ? current : DS_STAGE_PRIOR_VERSION, g->incumbent[0] ? g->incumbent : DS_STAGE_PRIOR_VERSION);
    }
    /* A version taken in the same second gets a suffix. */
    snprintf(g->version, sizeof g->version, "%s", g->base_version);
    for (int k = 2;; k++) {
        const char *v2[] = {g->org_id, g->version};
        rc = ds_pg_exec_params(pg, "select 1 from public.models where org_id = $1::uuid and version = $2", 2, v2,
                               NULL, NULL, &r, errstr, errsz);
        if (rc != 0) return rc;
        int n = PQntuples(r);
        PQclear(r);
        if (n == 0) break;
        snprintf(g->version, sizeof g->version, "%s-%d", g->base_version, k);
    }
    g->retired[0] = '\0';
    if (g->activated && current[0]) {
        rc = ds_pg_exec_params(pg,
                               "update public.models set status = 'retired'"
                               " where org_id = $1::uuid and status = 'active'",
                               1, v1, NULL, NULL, NULL, errstr, errsz);
        if (rc != 0) return rc;
        snprintf(g->retired, sizeof g->retired, "%s", current);
    }
    json_object_set_new(g->metrics, "decision",
                        json_pack("{s:b, s:s, s:s, s:s}", "activate", g->activated, "status",
                                  g->activated ? "active" : "candidate", "reason", g->final_reason, "compared_with",
                                  g->incumbent[0] ? g->incumbent : DS_STAGE_PRIOR_VERSION));
    char *metrics = json_dumps(g->metrics, JSON_COMPACT | JSON_REAL_PRECISION(10));
    const char *v3[] = {g->org_id, g->version, g->names_arr, g->artifact, g->calib_json, g->window_json, metrics,
                        g->activated ? "active" : "candidate"};
    int lens[8] = {0, 0, 0, (int)g->artifact_len, 0, 0, 0, 0};
    int fmts[8] = {0, 0, 0, 1, 0, 0, 0, 0};
    rc = ds_pg_exec_params(pg,
                           "insert into public.models (org_id, version, feature_names, artifact, calibration,"
                           " training_window, metrics, status) values ($1::uuid, $2, $3::text[], $4::bytea,"
                           " $5::jsonb, $6::jsonb, $7::jsonb, $8)",
                           8, v3, lens, fmts, NULL, errstr, errsz);
    free(metrics);
    return rc;
}

/* ---- the command -------------------------------------------------------------------------- */

static int cmp_desc_importance(const void *a, const void *b) {
    const ds_report_feature_t *x = a, *y = b;
    if (x->mean_abs_shap != y->mean_abs_shap) return x->mean_abs_shap < y->mean_abs_shap ? 1 : -1;
    return strcmp(x->name, y->name);
}

static void print_metrics_line(const char *label, const ds_eval_metrics_t *m) {
    printf("  %-34s %8.4f %8.4f %9.4f %8.4f %8.4f\n", label, m->roc_auc, m->pr_auc, m->log_loss, m->brier, m->ece);
}

static int mkdir_p(const char *dir) {
    char *p = ds_strdup(dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

int scoring_cmd_train(const ds_config_t *cfg, int argc, char **argv) {
    train_opts_t o = {.report_dir = "reports", .min_closed = cfg->min_closed};
    memcpy(o.checkpoints, default_checkpoints, sizeof default_checkpoints);
    o.n_checkpoints = DS_ARRAY_SIZE(default_checkpoints);
    ds_model_params_default(&o.params);
    /* Exact TreeSHAP costs trees x leaves x depth^2 per score: 100 trees of
     * depth 4 explain a score about 13x faster than 200 of depth 6, and on
     * the simulated orgs they rank at least as well. */
    o.params.n_trees = 100;
    o.params.max_depth = 4;
    o.params.eta = 0.08;
    o.params.nthread = 2;

    static const struct option opts[] = {{"org", required_argument, 0, 'o'},
                                         {"checkpoints", required_argument, 0, 'c'},
                                         {"trees", required_argument, 0, 't'},
                                         {"depth", required_argument, 0, 'd'},
                                         {"eta", required_argument, 0, 'e'},
                                         {"min-child-weight", required_argument, 0, 'w'},
                                         {"subsample", required_argument, 0, 's'},
                                         {"seed", required_argument, 0, 'S'},
                                         {"threads", required_argument, 0, 'j'},
                                         {"calibration", required_argument, 0, 'C'},
                                         {"min-closed", required_argument, 0, 'm'},
                                         {"report", required_argument, 0, 'r'},
                                         {"truth", required_argument, 0, 'T'},
                                         {"exclude", required_argument, 0, 'x'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *exclude = TRAIN_DEFAULT_EXCLUDE;
    optind = 1;
    opterr = 0;
    int c;
    long lv;
    double dv;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(stdout); return 0;
        case 'o': o.org = optarg; break;
        case 'c':
            if (!parse_checkpoints(optarg, &o))
                return usage_error("--checkpoints must be a comma-separated list of 1 to %d days from 1 to 3650",
                                   TRAIN_MAX_CHECKPOINTS);
            break;
        case 't':
            if (!ds_parse_long(optarg, 1, 100000, &lv)) return usage_error("--trees must be a number from 1 to 100000");
            o.params.n_trees = (int)lv;
            break;
        case 'd':
            if (!ds_parse_long(optarg, 1, 30, &lv)) return usage_error("--depth must be a number from 1 to 30");
            o.params.max_depth = (int)lv;
            break;
        case 'e':
            if (!parse_double(optarg, &dv) || !(dv > 0 && dv <= 1)) return usage_error("--eta must be in (0, 1]");
            o.params.eta = dv;
            break;
        case 'w':
            if (!parse_double(optarg, &dv) || dv < 0) return usage_error("--min-child-weight must be >= 0");
            o.params.min_child_weight = dv;
            break;
        case 's':
            if (!parse_double(optarg, &dv) || !(dv > 0 && dv <= 1)) return usage_error("--subsample must be in (0, 1]");
            o.params.subsample = dv;
            break;
        case 'S':
            if (!ds_parse_long(optarg, 0, 1L << 30, &lv)) return usage_error("--seed must be a number >= 0");
            o.params.seed = (int)lv;
            break;
        case 'j':
            if (!ds_parse_long(optarg, 1, 256, &lv)) return usage_error("--threads must be a number from 1 to 256");
            o.params.nthread = (int)lv;
            break;
        case 'C':
            if (strcmp(optarg, "auto") == 0) o.calib = 0;
            else if (strcmp(optarg, "isotonic") == 0) o.calib = DS_CALIB_ISOTONIC;
            else if (strcmp(optarg, "platt") == 0) o.calib = DS_CALIB_PLATT;
            else return usage_error("--calibration must be auto, isotonic or platt");
            break;
        case 'm':
            if (!ds_parse_long(optarg, 1, 1000000, &lv)) return usage_error("--min-closed must be a number from 1 to 1000000");
            o.min_closed = (int)lv;
            break;
        case 'r': o.report_dir = optarg; break;
        case 'T': o.truth_path = optarg; break;
        case 'x': exclude = optarg; break;
        case ':': return usage_error("%s needs a value", argv[optind - 1]);
        default: return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (!o.org) return usage_error("--org is required");
    char bad[96];
    if (!parse_exclude(exclude, &o, bad, sizeof bad))
        return usage_error("--exclude: \"%s\" is not a feature of the engine", bad);
    int cols[DS_FEATURE_COUNT];
    const char *names[DS_FEATURE_COUNT];
    size_t nf = 0;
    for (int i = 0; i < DS_FEATURE_COUNT; i++)
        if (!o.excluded[i]) {
            cols[nf] = i;
            names[nf++] = ds_feature_name(i);
        }
    if (nf == 0) return usage_error("--exclude leaves no feature");

    int rc = 1;
    char err[1024];
    ds_pg_t *pg = NULL;
    ds_org_cache_t *orgs = NULL;
    deal_t *deals = NULL;
    size_t nd = 0;
    row_t *rows = NULL;
    float *x = NULL;
    size_t nr = 0, rcap = 0;
    size_t *part_rows[PART_COUNT] = {0};
    size_t part_n[PART_COUNT] = {0};
    float *xp = NULL, *yp = NULL, *wp = NULL;
    double *y_test = NULL, *w_test = NULL, *p_model = NULL, *p_prior = NULL, *p_active = NULL, *truth = NULL;
    double *margin = NULL;
    float *x_test = NULL, *xm_test = NULL, *contribs = NULL;
    ds_model_t *model = NULL;
    ds_calib_t *cal = NULL;
    ds_stage_prior_t *prior = NULL;
    char *artifact = NULL;
    size_t artifact_len = 0;
    seg_t *ind = NULL, *reg = NULL, *cps = NULL;
    size_t n_ind = 0, n_reg = 0, n_cps = 0;
    json_t *metrics = NULL;
    ds_report_feature_t *feats = NULL;
    reg_t g = {0};
    char *report_json_text = NULL;

    int64_t t_start = ds_mono_us();
    if (ds_pg_new(&pg, cfg->database_url, "dealscore-scoring-train", err, sizeof err) != 0 ||
        ds_pg_ensure(pg, 30000, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: could not connect to Postgres: %s\n", err);
        goto out;
    }
    const char *sv[] = {o.org};
    PGresult *r = NULL;
    if (ds_pg_exec_params(pg, "select id::text from public.orgs where slug = $1", 1, sv, NULL, NULL, &r, err,
                          sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: could not look up the org: %s\n", err);
        goto out;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        fprintf(stderr, "dealscore-scoring train: no org \"%s\"\n", o.org);
        goto out;
    }
    char org_id[37];
    snprintf(org_id, sizeof org_id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);

    /* Closed deals, oldest close first: the split follows this order. */
    const char *ov[] = {org_id};
    if (ds_pg_exec_params(pg,
                          "select id::text, outcome = 'won', (extract(epoch from closed_at) * 1000000)::bigint"
                          " from public.opportunities where org_id = $1::uuid and outcome in ('won', 'lost')"
                          " and closed_at is not null and created_at is not null and not placeholder"
                          " order by closed_at, id",
                          1, ov, NULL, NULL, &r, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: could not read closed deals: %s\n", err);
        goto out;
    }
    nd = (size_t)PQntuples(r);
    deals = ds_calloc(nd + 1, sizeof *deals);
    size_t n_won = 0;
    for (size_t i = 0; i < nd; i++) {
        deals[i].id = ds_strdup(PQgetvalue(r, (int)i, 0));
        deals[i].won = PQgetvalue(r, (int)i, 1)[0] == 't';
        deals[i].closed_at_us = strtoll(PQgetvalue(r, (int)i, 2), NULL, 10);
        n_won += deals[i].won;
    }
    PQclear(r);
    size_t n_lost = nd - n_won;
    if (n_won < (size_t)o.min_closed || n_lost < (size_t)o.min_closed) {
        fprintf(stderr,
                "dealscore-scoring train: org %s has %zu won and %zu lost closed deals; a model needs at least %d "
                "of each (DEALSCORE_MIN_CLOSED): the org keeps scoring with the stage prior, nothing registered\n",
                o.org, n_won, n_lost, o.min_closed);
        goto out;
    }

    /* The split, by deal in close order. */
    size_t n_tr = (size_t)((double)nd * TRAIN_SHARE_TRAIN);
    size_t n_ca = (size_t)((double)nd * (TRAIN_SHARE_TRAIN + TRAIN_SHARE_CALIB)) - n_tr;
    for (size_t i = 0; i < nd; i++) deals[i].part = i < n_tr ? PART_TRAIN : i < n_tr + n_ca ? PART_CALIB : PART_TEST;

    /* Features at every checkpoint before the close, through the engine. */
    orgs = ds_org_cache_new(3600 * 1000);
    const ds_org_ctx_t *oc = NULL;
    if (ds_org_cache_get(orgs, pg, org_id, &oc, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: could not load the org's context: %s\n", err);
        goto out;
    }
    int64_t t_feat = ds_mono_us(), last_progress = t_feat;
    for (size_t b = 0; b < nd; b += TRAIN_LOAD_BATCH) {
        size_t m = nd - b < TRAIN_LOAD_BATCH ? nd - b : TRAIN_LOAD_BATCH;
        const char **ids = ds_calloc(m, sizeof *ids);
        for (size_t k = 0; k < m; k++) ids[k] = deals[b + k].id;
        ds_opp_batch_t *batch = NULL;
        int lrc = ds_opp_batch_load(pg, ids, m, &batch, err, sizeof err);
        if (lrc != 0) {
            free(ids);
            fprintf(stderr, "dealscore-scoring train: could not load deals: %s\n", err);
            goto out;
        }
        for (size_t k = 0; k < m; k++) {
            deal_t *d = &deals[b + k];
            int bi = ds_opp_batch_find(batch, d->id);
            if (bi < 0) continue; /* deleted meanwhile */
            ds_opp_raw_t *raw = ds_opp_batch_raw(batch, (size_t)bi);
            raw->stages = oc->stages;
            d->external_id = dup_or_null(raw->external_id);
            d->industry = dup_or_null(raw->industry);
            d->region = dup_or_null(raw->region);
            d->created_at_us = raw->created_at_us;
            size_t first = nr;
            for (size_t ci = 0; ci < o.n_checkpoints; ci++) {
                int64_t as_of = d->created_at_us + (int64_t)o.checkpoints[ci] * DS_US_PER_DAY;
                if (as_of >= d->closed_at_us) break; /* checkpoints are sorted */
                ds_feature_vec_t vec;
                if (ds_features_compute(raw, as_of, oc->winrate, oc->lexicon, &vec) != 0) continue;
                if (nr == rcap) {
                    rcap = rcap ? rcap * 2 : 4096;
                    rows = ds_realloc(rows, rcap * sizeof *rows);
                    x = ds_realloc(x, rcap * DS_FEATURE_COUNT * sizeof *x);
                }
                row_t *row = &rows[nr];
                row->deal = b + k;
                row->day = o.checkpoints[ci];
                double si = vec.values[DS_F_STAGE_INDEX];
                row->stage = isnan(si) ? -1 : (int)si;
                row->label = d->won ? 1.0 : 0.0;
                for (int f = 0; f < DS_FEATURE_COUNT; f++) x[nr * DS_FEATURE_COUNT + (size_t)f] = (float)vec.values[f];
                nr++;
            }
            d->n_rows = (int)(nr - first);
            for (size_t i = first; i < nr; i++) rows[i].weight = 1.0 / (double)d->n_rows;
        }
        ds_opp_batch_destroy(batch);
        free(ids);
        if (ds_mono_us() - last_progress > 2000000) {
            last_progress = ds_mono_us();
            fprintf(stderr, "train: features of %zu/%zu deals (%zu rows)\n", b + m, nd, nr);
        }
    }
    double feat_secs = (double)(ds_mono_us() - t_feat) / 1e6;

    for (int p = 0; p < PART_COUNT; p++) part_rows[p] = ds_malloc((nr + 1) * sizeof(size_t));
    size_t part_deals[PART_COUNT] = {0};
    double part_pos[PART_COUNT] = {0}, part_neg[PART_COUNT] = {0};
    int64_t part_from[PART_COUNT], part_to[PART_COUNT];
    for (int p = 0; p < PART_COUNT; p++) part_from[p] = INT64_MAX, part_to[p] = INT64_MIN;
    for (size_t i = 0; i < nd; i++) {
        deal_t *d = &deals[i];
        if (!d->n_rows) continue;
        part_deals[d->part]++;
        if (d->closed_at_us < part_from[d->part]) part_from[d->part] = d->closed_at_us;
        if (d->closed_at_us > part_to[d->part]) part_to[d->part] = d->closed_at_us;
    }
    for (size_t i = 0; i < nr; i++) {
        int p = deals[rows[i].deal].part;
        part_rows[p][part_n[p]++] = i;
        if (rows[i].label > 0) part_pos[p] += 1;
        else part_neg[p] += 1;
    }
    for (int p = 0; p < PART_COUNT; p++) {
        if (part_pos[p] < 1 || part_neg[p] < 1) {
            fprintf(stderr,
                    "dealscore-scoring train: the %s part (%zu rows) lacks won or lost rows; with checkpoints %d.. "
                    "days, too few deals lived long enough: nothing registered\n",
                    part_names[p], part_n[p], o.checkpoints[0]);
            goto out;
        }
    }

    /* Train. */
    size_t ntr = part_n[PART_TRAIN];
    xp = gather(x, part_rows[PART_TRAIN], ntr, cols, nf);
    yp = ds_malloc(ntr * sizeof *yp);
    wp = ds_malloc(ntr * sizeof *wp);
    for (size_t i = 0; i < ntr; i++) {
        size_t ri = part_rows[PART_TRAIN][i];
        yp[i] = (float)rows[ri].label;
        wp[i] = (float)rows[ri].weight;
    }
    int64_t t_train = ds_mono_us();
    if (ds_model_train(&o.params, xp, ntr, nf, names, yp, wp, &model, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: training failed: %s\n", err);
        goto out;
    }
    double train_secs = (double)(ds_mono_us() - t_train) / 1e6;

    /* Calibrate on the held-out fold. */
    size_t nca = part_n[PART_CALIB];
    {
        float *xc = gather(x, part_rows[PART_CALIB], nca, cols, nf);
        double *mc = ds_malloc(nca * sizeof *mc), *yc = ds_malloc(nca * sizeof *yc), *wc = ds_malloc(nca * sizeof *wc);
        for (size_t i = 0; i < nca; i++) {
            size_t ri = part_rows[PART_CALIB][i];
            yc[i] = rows[ri].label;
            wc[i] = rows[ri].weight;
        }
        int crc = ds_model_predict_margin(model, xc, nca, mc, err, sizeof err);
        if (crc == 0) {
            if (o.calib == DS_CALIB_PLATT) crc = ds_calib_fit_platt(mc, yc, wc, nca, &cal, err, sizeof err);
            else if (o.calib == DS_CALIB_ISOTONIC) crc = ds_calib_fit_isotonic(mc, yc, wc, nca, &cal, err, sizeof err);
            else crc = ds_calib_fit(mc, yc, wc, nca, &cal, err, sizeof err);
        }
        free(xc);
        free(mc);
        free(yc);
        free(wc);
        if (crc != 0) {
            fprintf(stderr, "dealscore-scoring train: could not calibrate: %s; nothing registered\n", err);
            goto out;
        }
    }

    /* The stage prior, fitted on the training rows. */
    {
        int *st = ds_malloc(ntr * sizeof *st);
        double *yy = ds_malloc(ntr * sizeof *yy), *ww = ds_malloc(ntr * sizeof *ww);
        for (size_t i = 0; i < ntr; i++) {
            size_t ri = part_rows[PART_TRAIN][i];
            st[i] = rows[ri].stage;
            yy[i] = rows[ri].label;
            ww[i] = rows[ri].weight;
        }
        int prc = ds_stage_prior_fit(st, yy, ww, ntr, DS_STAGE_PRIOR_SMOOTHING, &prior, err, sizeof err);
        free(st);
        free(yy);
        free(ww);
        if (prc != 0) {
            fprintf(stderr, "dealscore-scoring train: could not fit the stage prior: %s\n", err);
            goto out;
        }
    }

    /* The test window: model, prior and (when there is one) the active model. */
    size_t nt = part_n[PART_TEST];
    const size_t *test = part_rows[PART_TEST];
    x_test = ds_malloc(nt * DS_FEATURE_COUNT * sizeof *x_test);
    y_test = ds_malloc(nt * sizeof *y_test);
    w_test = ds_malloc(nt * sizeof *w_test);
    p_model = ds_malloc(nt * sizeof *p_model);
    p_prior = ds_malloc(nt * sizeof *p_prior);
    p_active = ds_malloc(nt * sizeof *p_active);
    margin = ds_malloc(nt * sizeof *margin);
    for (size_t i = 0; i < nt; i++) {
        size_t ri = test[i];
        memcpy(x_test + i * DS_FEATURE_COUNT, x + ri * DS_FEATURE_COUNT, DS_FEATURE_COUNT * sizeof *x_test);
        y_test[i] = rows[ri].label;
        w_test[i] = rows[ri].weight;
        p_prior[i] = ds_stage_prior_predict(prior, rows[ri].stage);
    }
    xm_test = gather(x, test, nt, cols, nf);
    if (ds_model_predict_margin(model, xm_test, nt, margin, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: could not score the test window: %s\n", err);
        goto out;
    }
    for (size_t i = 0; i < nt; i++) p_model[i] = ds_calib_apply(cal, margin[i]);
    ds_eval_metrics_t m_model, m_prior, m_active;
    ds_eval_metrics_clear(&m_active);
    if (ds_eval_metrics(p_model, y_test, w_test, nt, &m_model, err, sizeof err) != 0 ||
        ds_eval_metrics(p_prior, y_test, w_test, nt, &m_prior, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: could not evaluate: %s\n", err);
        goto out;
    }
    char active_version[64] = "", active_why[600] = "";
    int act = score_active(pg, org_id, x_test, nt, p_active, active_version, active_why, sizeof active_why);
    if (act == 1 && ds_eval_metrics(p_active, y_test, w_test, nt, &m_active, err, sizeof err) != 0) {
        act = -1;
        snprintf(active_why, sizeof active_why, "%.500s", err);
    }

    /* The decision. */
    char reason[1024];
    bool activate;
    if (act == 1) {
        activate = m_model.log_loss < m_active.log_loss;
        snprintf(reason, sizeof reason,
                 activate ? "its log loss %.4f beats the active model %s's %.4f on the same test window (%zu rows)"
                          : "its log loss %.4f does not beat the active model %s's %.4f on the same test window "
                            "(%zu rows): it stays a candidate",
                 m_model.log_loss, active_version, m_active.log_loss, nt);
    } else {
        activate = m_model.log_loss < m_prior.log_loss;
        char pre[700] = "";
        if (act < 0)
            snprintf(pre, sizeof pre, "the active model %s could not be evaluated on this window (%s); ",
                     active_version, active_why);
        else
            snprintf(pre, sizeof pre, "no active model: ");
        snprintf(reason, sizeof reason,
                 activate ? "%sits log loss %.4f beats the stage prior's %.4f on the test window (%zu rows)"
                          : "%sits log loss %.4f does not beat the stage prior's %.4f on the test window (%zu rows): "
                            "it stays a candidate",
                 pre, m_model.log_loss, m_prior.log_loss, nt);
    }

    /* Importance: mean |SHAP| on the test rows. */
    contribs = ds_malloc(nt * (nf + 1) * sizeof *contribs);
    double imp[DS_FEATURE_COUNT];
    if (ds_model_contribs(model, xm_test, nt, contribs, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: could not compute contributions: %s\n", err);
        goto out;
    }
    ds_contribs_mean_abs(contribs, nt, nf, imp);
    feats = ds_calloc(nf, sizeof *feats);
    for (size_t j = 0; j < nf; j++)
        feats[j] = (ds_report_feature_t){.name = names[j], .label = ds_feature_label(cols[j]), .mean_abs_shap = imp[j]};

    /* Breakdowns. */
    {
        size_t *idx = ds_malloc((nt + 1) * sizeof *idx);
        cps = ds_calloc(o.n_checkpoints, sizeof *cps);
        for (size_t ci = 0; ci < o.n_checkpoints; ci++) {
            size_t n = 0;
            for (size_t i = 0; i < nt; i++)
                if (rows[test[i]].day == o.checkpoints[ci]) idx[n++] = i;
            if (!n) continue;
            seg_t *s = &cps[n_cps++];
            s->key = ds_asprintf("day %d", o.checkpoints[ci]);
            s->weight = (double)n;
            /* One row per deal at a checkpoint: rows count equally. */
            eval_subset(p_model, y_test, NULL, idx, n, &s->model);
            eval_subset(p_prior, y_test, NULL, idx, n, &s->prior);
        }
        free(idx);
    }
    n_ind = segments(deals, rows, test, nt, p_model, p_prior, y_test, w_test, true, &ind);
    n_reg = segments(deals, rows, test, nt, p_model, p_prior, y_test, w_test, false, &reg);

    /* Bayes-optimal figures from the simulator's truth. */
    json_t *bayes = NULL;
    ds_eval_metrics_t b_truth, b_model, b_prior;
    long n_truth = 0;
    if (o.truth_path) {
        truth = ds_malloc((nt + 1) * sizeof *truth);
        n_truth = read_truth(o.truth_path, deals, rows, test, nt, truth);
        if (n_truth < 0) goto out;
        size_t *idx = ds_malloc((nt + 1) * sizeof *idx);
        size_t n = 0;
        for (size_t i = 0; i < nt; i++)
            if (!isnan(truth[i])) idx[n++] = i;
        ds_eval_metrics_clear(&b_truth);
        ds_eval_metrics_clear(&b_model);
        ds_eval_metrics_clear(&b_prior);
        if (n) {
            eval_subset(truth, y_test, w_test, idx, n, &b_truth);
            eval_subset(p_model, y_test, w_test, idx, n, &b_model);
            eval_subset(p_prior, y_test, w_test, idx, n, &b_prior);
        }
        free(idx);
        bayes = json_pack("{s:s, s:I, s:I, s:o, s:o, s:o}", "truth_file", o.truth_path, "matched_rows",
                          (json_int_t)n_truth, "test_rows", (json_int_t)nt, "bayes_optimal", metrics_json(&b_truth),
                          "model", metrics_json(&b_model), "stage_prior", metrics_json(&b_prior));
    }

    /* Registration. */
    if (ds_model_save(model, &artifact, &artifact_len, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: could not serialize the model: %s\n", err);
        json_decref(bayes);
        goto out;
    }
    char base_version[64];
    {
        time_t now = (time_t)(ds_now_us() / 1000000);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(base_version, sizeof base_version, "m%Y%m%dT%H%M%SZ", &tm);
    }
    char dates[PART_COUNT][2][16];
    for (int p = 0; p < PART_COUNT; p++) {
        fmt_date(part_from[p], dates[p][0]);
        fmt_date(part_to[p], dates[p][1]);
    }
    json_t *window = json_pack("{s:s, s:s, s:I, s:I, s:[], s:s, s:{}}", "from", dates[PART_TRAIN][0], "to",
                               dates[PART_TEST][1], "n_deals", (json_int_t)(part_deals[0] + part_deals[1] + part_deals[2]),
                               "n_rows", (json_int_t)nr, "checkpoints", "weight", "1 / checkpoints of the deal",
                               "split");
    for (size_t ci = 0; ci < o.n_checkpoints; ci++)
        json_array_append_new(json_object_get(window, "checkpoints"), json_integer(o.checkpoints[ci]));
    for (int p = 0; p < PART_COUNT; p++)
        json_object_set_new(json_object_get(window, "split"), part_names[p],
                            json_pack("{s:s, s:s, s:I, s:I}", "closed_from", dates[p][0], "closed_to", dates[p][1],
                                      "deals", (json_int_t)part_deals[p], "rows", (json_int_t)part_n[p]));
    json_object_set_new(window, "closed_deals", json_pack("{s:I, s:I}", "won", (json_int_t)n_won, "lost", (json_int_t)n_lost));

    char params_text[1024], calib_text[128];
    int pn = snprintf(params_text, sizeof params_text,
                      "%d trees, depth %d, eta %g, min_child_weight %g, subsample %g, seed %d; %zu features",
                      o.params.n_trees, o.params.max_depth, o.params.eta, o.params.min_child_weight,
                      o.params.subsample, o.params.seed, nf);
    for (int i = 0, k = 0; i < DS_FEATURE_COUNT && pn > 0 && (size_t)pn < sizeof params_text; i++)
        if (o.excluded[i])
            pn += snprintf(params_text + pn, sizeof params_text - (size_t)pn, "%s%s", k++ ? ", " : " (without ",
                           ds_feature_name(i));
    if (nf < DS_FEATURE_COUNT && pn > 0 && (size_t)pn + 1 < sizeof params_text) strcat(params_text, ")");
    snprintf(calib_text, sizeof calib_text, "%s on %zu rows", ds_calib_method_name(cal->method), nca);

    metrics = json_object();
    json_object_set_new(metrics, "feature_version", json_string(DS_FEATURE_VERSION));
    json_object_set_new(metrics, "params",
                        json_pack("{s:i, s:i, s:f, s:f, s:f, s:i, s:s}", "trees", o.params.n_trees, "depth",
                                  o.params.max_depth, "eta", o.params.eta, "min_child_weight", o.params.min_child_weight,
                                  "subsample", o.params.subsample, "seed", o.params.seed, "objective",
                                  "binary:logistic"));
    {
        json_t *ex = json_array();
        for (int i = 0; i < DS_FEATURE_COUNT; i++)
            if (o.excluded[i]) json_array_append_new(ex, json_string(ds_feature_name(i)));
        json_object_set_new(metrics, "features", json_pack("{s:I, s:o}", "count", (json_int_t)nf, "excluded", ex));
    }
    json_object_set_new(metrics, "calibration", json_pack("{s:s, s:I}", "method", ds_calib_method_name(cal->method),
                                                          "rows", (json_int_t)nca));
    json_object_set_new(metrics, "rows", json_pack("{s:I, s:I, s:I}", "train", (json_int_t)ntr, "calibration",
                                                   (json_int_t)nca, "test", (json_int_t)nt));
    json_object_set_new(metrics, "test",
                        json_pack("{s:o, s:o, s:o, s:o}", "model", metrics_json(&m_model), "stage_prior",
                                  metrics_json(&m_prior), "active", act == 1 ? metrics_json(&m_active) : json_null(),
                                  "active_version", active_version[0] ? json_string(active_version) : json_null()));
    if (act < 0) json_object_set_new(metrics, "active_error", json_string(active_why));
    json_object_set_new(metrics, "per_checkpoint", table_json(cps, n_cps));
    json_object_set_new(metrics, "per_industry", table_json(ind, n_ind));
    json_object_set_new(metrics, "per_region", table_json(reg, n_reg));
    {
        ds_report_feature_t *sorted = ds_malloc(nf * sizeof *sorted);
        memcpy(sorted, feats, nf * sizeof *sorted);
        qsort(sorted, nf, sizeof *sorted, cmp_desc_importance);
        json_t *tf = json_array();
        for (size_t i = 0; i < TRAIN_REPORT_FEATURES && i < nf; i++)
            json_array_append_new(tf, json_pack("{s:s, s:o}", "name", sorted[i].name, "mean_abs_shap",
                                                ds_eval_json_number(sorted[i].mean_abs_shap)));
        json_object_set_new(metrics, "top_features", tf);
        free(sorted);
    }
    if (bayes) json_object_set_new(metrics, "bayes", json_incref(bayes));
    json_object_set_new(metrics, "seconds", json_pack("{s:f, s:f}", "features", feat_secs, "training", train_secs));

    g.org_id = org_id;
    g.base_version = base_version;
    g.activate = activate;
    g.incumbent = act != 0 ? active_version : "";
    g.reason = reason;
    g.artifact = artifact;
    g.artifact_len = artifact_len;
    g.names_arr = ds_pg_array_text(names, nf);
    g.calib_json = ds_calib_to_json(cal);
    g.window_json = json_dumps(window, JSON_COMPACT);
    g.metrics = metrics;
    json_decref(window);
    if (ds_pg_tx_run(pg, register_tx, &g, 5, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dealscore-scoring train: could not register the model: %s\n", err);
        json_decref(bayes);
        goto out;
    }

    /* The report. */
    char generated[40];
    ds_format_time_us(ds_now_us(), generated, sizeof generated);
    char train_window[160], test_window[160];
    snprintf(train_window, sizeof train_window, "closed %s .. %s (%zu deals; calibration %s .. %s, %zu deals)",
             dates[PART_TRAIN][0], dates[PART_TRAIN][1], part_deals[PART_TRAIN], dates[PART_CALIB][0],
             dates[PART_CALIB][1], part_deals[PART_CALIB]);
    snprintf(test_window, sizeof test_window, "closed %s .. %s (%zu deals)", dates[PART_TEST][0], dates[PART_TEST][1],
             part_deals[PART_TEST]);
    ds_eval_bin_t bins_m[10], bins_p[10];
    ds_roc_point_t *roc_m = ds_calloc(DS_EVAL_ROC_MAX_POINTS, sizeof *roc_m);
    ds_roc_point_t *roc_p = ds_calloc(DS_EVAL_ROC_MAX_POINTS, sizeof *roc_p);
    size_t n_roc_m = 0, n_roc_p = 0;
    ds_eval_reliability(p_model, y_test, w_test, nt, 10, bins_m);
    ds_eval_reliability(p_prior, y_test, w_test, nt, 10, bins_p);
    ds_eval_roc_curve(p_model, y_test, w_test, nt, DS_EVAL_ROC_MAX_POINTS, roc_m, &n_roc_m);
    ds_eval_roc_curve(p_prior, y_test, w_test, nt, DS_EVAL_ROC_MAX_POINTS, roc_p, &n_roc_p);
    ds_report_row_t *trows[3];
    size_t tn[3] = {n_cps, n_ind, n_reg};
    seg_t *tsrc[3] = {cps, ind, reg};
    for (int t = 0; t < 3; t++) {
        trows[t] = ds_calloc(tn[t] + 1, sizeof *trows[t]);
        for (size_t i = 0; i < tn[t]; i++)
            trows[t][i] = (ds_report_row_t){.key = tsrc[t][i].key, .model = tsrc[t][i].model, .prior = tsrc[t][i].prior};
    }
    ds_report_table_t tables[3] = {
        {.title = "Per checkpoint (rows count equally)", .key_header = "Checkpoint", .rows = trows[0], .n_rows = n_cps},
        {.title = "Per industry", .key_header = "Industry", .rows = trows[1], .n_rows = n_ind},
        {.title = "Per region", .key_header = "Region", .rows = trows[2], .n_rows = n_reg},
    };
    ds_report_t rep = {.model_version = g.version,
                       .org = o.org,
                       .generated_at = generated,
                       .feature_version = DS_FEATURE_VERSION,
                       .params = params_text,
                       .calibration = calib_text,
                       .train_window = train_window,
                       .test_window = test_window,
                       .n_train = ntr,
                       .n_calib = nca,
                       .n_test = nt,
                       .model = m_model,
                       .prior = m_prior,
                       .has_active = act == 1,
                       .active_version = act == 1 ? active_version : NULL,
                       .active = m_active,
                       .model_bins = bins_m,
                       .n_model_bins = 10,
                       .prior_bins = bins_p,
                       .n_prior_bins = 10,
                       .model_roc = roc_m,
                       .n_model_roc = n_roc_m,
                       .prior_roc = roc_p,
                       .n_prior_roc = n_roc_p,
                       .features = feats,
                       .n_features = nf,
                       .tables = tables,
                       .n_tables = 3,
                       .activate = g.activated,
                       .decision_reason = g.final_reason};
    char *html_path = ds_asprintf("%s/model-%s.html", o.report_dir, g.version);
    char *json_path = ds_asprintf("%s/model-%s.json", o.report_dir, g.version);
    bool report_ok = mkdir_p(o.report_dir) == 0;
    if (!report_ok) snprintf(err, sizeof err, "cannot create %s: %s", o.report_dir, strerror(errno));
    if (report_ok) report_ok = ds_report_write_html(html_path, &rep, err, sizeof err) == 0;
    if (report_ok) {
        /* The report's JSON plus what the page has no place for. */
        json_t *rj = ds_report_json(&rep);
        if (bayes) json_object_set_new(rj, "bayes", json_incref(bayes));
        json_object_set_new(rj, "training_window", json_loads(g.window_json, 0, NULL));
        report_json_text = json_dumps(rj, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        json_decref(rj);
        FILE *f = fopen(json_path, "w");
        if (!f || fputs(report_json_text, f) < 0 || fputc('\n', f) < 0) {
            snprintf(err, sizeof err, "cannot write %s: %s", json_path, strerror(errno));
            report_ok = false;
        }
        if (f && fclose(f) != 0 && report_ok) {
            snprintf(err, sizeof err, "cannot write %s: %s", json_path, strerror(errno));
            report_ok = false;
        }
    }
    for (int t = 0; t < 3; t++) free(trows[t]);
    free(roc_m);
    free(roc_p);

    /* The summary. */
    printf("train: org %s: %zu closed deals (%zu won, %zu lost), %zu checkpoint rows at days", o.org, nd, n_won, n_lost,
           nr);
    for (size_t ci = 0; ci < o.n_checkpoints; ci++) printf("%s%d", ci ? "," : " ", o.checkpoints[ci]);
    printf("\n");
    for (int p = 0; p < PART_COUNT; p++)
        printf("train: %-11s closed %s .. %s: %zu deals, %zu rows\n", part_names[p], dates[p][0], dates[p][1],
               part_deals[p], part_n[p]);
    printf("train: %s; %s calibration on %zu rows; features %.2f s, training %.2f s\n", params_text,
           ds_calib_method_name(cal->method), nca, feat_secs, train_secs);
    printf("train: test window, %zu rows (weighted: each deal counts once):\n", nt);
    printf("  %-34s %8s %8s %9s %8s %8s\n", "", "ROC AUC", "PR AUC", "log loss", "Brier", "ECE");
    char label[80];
    snprintf(label, sizeof label, "model %s", g.version);
    print_metrics_line(label, &m_model);
    print_metrics_line("stage prior", &m_prior);
    if (act == 1) {
        snprintf(label, sizeof label, "active %s", active_version);
        print_metrics_line(label, &m_active);
    }
    if (bayes) {
        printf("train: on the %ld test rows with a truth row (%s):\n", n_truth, o.truth_path);
        print_metrics_line("Bayes-optimal (simulator truth)", &b_truth);
        print_metrics_line("model", &b_model);
        print_metrics_line("stage prior", &b_prior);
    }
    json_decref(bayes);
    if (g.retired[0]) printf("train: retired %s\n", g.retired);
    printf("train: %s is %s\ntrain: why: %s\n", g.version, g.activated ? "now ACTIVE" : "a CANDIDATE", g.final_reason);
    if (report_ok) {
        printf("report: %s\nreport: %s\n", html_path, json_path);
    } else {
        fprintf(stderr, "dealscore-scoring train: the model is registered but the report was not written: %s\n", err);
    }
    printf("train: done in %.1f s\n", (double)(ds_mono_us() - t_start) / 1e6);
    fflush(stdout);
    free(html_path);
    free(json_path);
    rc = report_ok ? 0 : 1;

out:
    free(report_json_text);
    free(g.names_arr);
    free(g.calib_json);
    free(g.window_json);
    json_decref(metrics);
    free(feats);
    for (size_t i = 0; i < n_cps; i++) free(cps[i].key);
    for (size_t i = 0; i < n_ind; i++) free(ind[i].key);
    for (size_t i = 0; i < n_reg; i++) free(reg[i].key);
    free(cps);
    free(ind);
    free(reg);
    free(artifact);
    ds_stage_prior_destroy(prior);
    ds_calib_destroy(cal);
    ds_model_destroy(model);
    free(contribs);
    free(x_test);
    free(xm_test);
    free(margin);
    free(truth);
    free(y_test);
    free(w_test);
    free(p_model);
    free(p_prior);
    free(p_active);
    free(xp);
    free(yp);
    free(wp);
    for (int p = 0; p < PART_COUNT; p++) free(part_rows[p]);
    free(rows);
    free(x);
    for (size_t i = 0; i < nd; i++) {
        free(deals[i].id);
        free(deals[i].external_id);
        free(deals[i].industry);
        free(deals[i].region);
    }
    free(deals);
    ds_org_cache_destroy(orgs);
    ds_pg_destroy(pg);
    return rc;
}
