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
#include <unistd.h>

#include "base/common.h"
#include "base/log.h"
#include "domain/eval.h"
#include "domain/model.h"
#include "domain/report.h"
#include "backtest.h"
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
            "                           figures on the test rows it covers, and the oracle's\n"
            "                           (oracle_proba: the state and the deal's constants without\n"
            "                           its noise terms u and eps)\n"
            "\n"
            "A run on the same inputs as a registered model (a retry) registers nothing again and\n"
            "writes that model's report.\n"
            "Exit status: 0 trained and registered (active or candidate) or registered already,\n"
            "1 failure or too few closed deals (nothing registered), 2 bad usage.\n",
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
static size_t segments(const deal_t *deals, const row_t *rows, const size_t *test, size_t nt,
                       const double *pm, const double *pp, const double *y, const double *w, bool industry,
                       seg_t **out) {
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
 * outcome[,oracle_proba]) and sets truth[i] (and oracle[i]) for every test
 * row with a matching line (NaN for the others, and oracle NaN in a file
 * without the column). Returns the number matched, or -1 when the file
 * cannot be read. */
static long read_truth(const char *path, const deal_t *deals, const row_t *rows, const size_t *test,
                       size_t nt, double *truth, double *oracle) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dealscore-scoring train: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    truth_key_t *keys = ds_calloc(nt + 1, sizeof *keys);
    size_t nk = 0;
    for (size_t i = 0; i < nt; i++) {
        truth[i] = oracle[i] = NAN;
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
        char *fields[6] = {0};
        char *p = line;
        int nf = 0;
        while (nf < 6) {
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
            double o = nf == 6 ? strtod(fields[5], &end) : NAN;
            if (nf == 6 && end != fields[5] && o >= 0 && o <= 1) oracle[hit->test_row] = o;
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
static int score_active(ds_pg_t *pg, const char *org_id, const float *x, size_t nt, double *p,
                        char version[64], char *why, size_t whysz) {
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
    unsigned char *bytes =
        PQgetisnull(r, 0, 1) ? NULL : PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &blen);
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
    const char *inputs_sha256; /* training_window's inputs_sha256 */
    json_t *metrics;           /* "decision" is (re)set inside the transaction */
    /* results */
    bool activated;
    bool already; /* an earlier run registered the same inputs as g->version */
    char final_reason[1024];
    char retired[64];
} reg_t;

/* The SHA-256 of what decides the model: every row's features, label,
 * weight, checkpoint and part, the parameters, the checkpoints and the
 * calibration method. Equal inputs train the same model. */
static void inputs_sha256(const train_opts_t *o, const char *params_text, const deal_t *deals,
                          const row_t *rows, const float *x, size_t nr, char out[65]) {
    ds_sb_t b = {0};
    ds_sb_printf(&b, "%s|%s|%d|", DS_FEATURE_VERSION, params_text, o->calib);
    for (size_t i = 0; i < o->n_checkpoints; i++) ds_sb_printf(&b, "%d,", o->checkpoints[i]);
    ds_sb_put(&b, (const char *)x, nr * DS_FEATURE_COUNT * sizeof *x);
    for (size_t i = 0; i < nr; i++)
        ds_sb_printf(&b, "|%d %d %.17g %.17g", deals[rows[i].deal].part, rows[i].day, rows[i].label,
                     rows[i].weight);
    ds_sha256_hex(b.p, b.len, out);
    free(b.p);
}

static int register_tx(ds_pg_t *pg, void *ud, char *errstr, size_t errsz) {
    reg_t *g = ud;
    PGresult *r = NULL;
    const char *v1[] = {g->org_id};
    /* One registration per org at a time: the active model cannot change
     * between the check below and the insert. */
    int rc = ds_pg_exec_params(pg, "select pg_advisory_xact_lock(hashtext('dealscore.models'), hashtext($1))",
                               1, v1, NULL, NULL, NULL, errstr, errsz);
    if (rc != 0) return rc;
    /* A retried run (a CronJob's next attempt after a failure past this
     * point) trains on the same inputs: it finds its model and adds none. */
    const char *vi[] = {g->org_id, g->inputs_sha256};
    rc = ds_pg_exec_params(pg,
                           "select version, status from public.models where org_id = $1::uuid"
                           " and training_window->>'inputs_sha256' = $2 order by created_at limit 1",
                           2, vi, NULL, NULL, &r, errstr, errsz);
    if (rc != 0) return rc;
    g->already = PQntuples(r) == 1;
    if (g->already) {
        snprintf(g->version, sizeof g->version, "%s", PQgetvalue(r, 0, 0));
        g->activated = strcmp(PQgetvalue(r, 0, 1), "active") == 0;
        snprintf(g->final_reason, sizeof g->final_reason,
                 "an earlier run registered %s from the same inputs (now %s); nothing registered again",
                 g->version, PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    if (g->already) return 0;
    rc = ds_pg_exec_params(pg,
                           "select version from public.models where org_id = $1::uuid and status = 'active'",
                           1, v1, NULL, NULL, &r, errstr, errsz);
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
                 current[0] ? current : DS_STAGE_PRIOR_VERSION,
                 g->incumbent[0] ? g->incumbent : DS_STAGE_PRIOR_VERSION);
    }
    /* A version taken in the same second gets a suffix. */
    snprintf(g->version, sizeof g->version, "%s", g->base_version);
    for (int k = 2;; k++) {
        const char *v2[] = {g->org_id, g->version};
        rc = ds_pg_exec_params(pg, "select 1 from public.models where org_id = $1::uuid and version = $2", 2,
                               v2, NULL, NULL, &r, errstr, errsz);
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
                                  g->activated ? "active" : "candidate", "reason", g->final_reason,
                                  "compared_with", g->incumbent[0] ? g->incumbent : DS_STAGE_PRIOR_VERSION));
    char *metrics = json_dumps(g->metrics, JSON_COMPACT | JSON_REAL_PRECISION(10));
    const char *v3[] = {g->org_id,     g->version,     g->names_arr, g->artifact,
                        g->calib_json, g->window_json, metrics,      g->activated ? "active" : "candidate"};
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
    printf("  %-34s %8.4f %8.4f %9.4f %8.4f %8.4f\n", label, m->roc_auc, m->pr_auc, m->log_loss, m->brier,
           m->ece);
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

/* A phase returns TRAIN_GO_ON to let the next one run, or the exit status
 * to stop with (its message printed). */
#define TRAIN_GO_ON (-1)
#define train_fail(...) (fprintf(stderr, "dealscore-scoring train: " __VA_ARGS__), 1)

/* One run of the command: what each phase leaves for the next ones. */
typedef struct {
    const ds_config_t *cfg;
    train_opts_t o;
    int cols[DS_FEATURE_COUNT];          /* the model's columns, as engine feature ids */
    const char *names[DS_FEATURE_COUNT]; /* and their names */
    size_t nf;
    int64_t t_start;
    char err[1024];

    ds_pg_t *pg;
    char org_id[37];
    ds_org_cache_t *orgs;

    /* the training set: closed deals in close order, a row per checkpoint */
    deal_t *deals;
    size_t nd, n_won, n_lost;
    row_t *rows;
    float *x; /* engine values, DS_FEATURE_COUNT per row */
    size_t nr, rcap;
    double feat_secs;

    /* the split by close date */
    size_t *part_rows[PART_COUNT];
    size_t part_n[PART_COUNT], part_deals[PART_COUNT];
    char dates[PART_COUNT][2][16]; /* first and last close of each part */

    ds_model_t *model;
    double train_secs;
    ds_calib_t *cal;
    ds_stage_prior_t *prior;

    /* the evaluation on the test window */
    size_t nt;
    const size_t *test; /* part_rows[PART_TEST] */
    float *x_test, *xm_test;
    double *y_test, *w_test, *p_model, *p_prior, *p_active;
    ds_eval_metrics_t m_model, m_prior, m_active;
    int act; /* score_active's result */
    char active_version[64], active_why[600];
    bool activate;
    char reason[1024];
    ds_report_feature_t *feats;
    seg_t *cps, *ind, *reg;
    size_t n_cps, n_ind, n_reg;
    double *truth;
    long n_truth;
    double *oracle;
    ds_eval_metrics_t b_truth, b_oracle, b_model, b_prior;
    bool has_oracle; /* every matched row has an oracle_proba */
    json_t *bayes;   /* NULL without --truth */

    /* registration and the report */
    char *artifact;
    size_t artifact_len;
    char base_version[64]; /* from the time; register_tx may add a suffix */
    char params_text[1024], calib_text[128];
    json_t *metrics;
    reg_t g;
    char *html_path, *json_path;
    bool report_ok;

    /* the forecast backtest on the held-out months, for the report */
    ds_forecast_month_t *bt;
    size_t n_bt;
} train_t;

static void train_init(train_t *t, const ds_config_t *cfg) {
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    train_opts_t *o = &t->o;
    o->report_dir = "reports";
    o->min_closed = cfg->min_closed;
    memcpy(o->checkpoints, default_checkpoints, sizeof default_checkpoints);
    o->n_checkpoints = DS_ARRAY_SIZE(default_checkpoints);
    ds_model_params_default(&o->params);
    /* Exact TreeSHAP costs trees x leaves x depth^2 per score: 100 trees of
     * depth 4 explain a score about 13x faster than 200 of depth 6, and on
     * the simulated orgs they rank at least as well. */
    o->params.n_trees = 100;
    o->params.max_depth = 4;
    o->params.eta = 0.08;
    o->params.nthread = 2;
}

/* Applies one option of the getopt loop below. */
static int apply_option(train_t *t, int c, char **argv, const char **exclude) {
    train_opts_t *o = &t->o;
    long lv;
    double dv;
    switch (c) {
    case 'h': help(stdout); return 0;
    case 'o': o->org = optarg; break;
    case 'c':
        if (!parse_checkpoints(optarg, o))
            return usage_error("--checkpoints must be a comma-separated list of 1 to %d days from 1 to 3650",
                               TRAIN_MAX_CHECKPOINTS);
        break;
    case 't':
        if (!ds_parse_long(optarg, 1, 100000, &lv))
            return usage_error("--trees must be a number from 1 to 100000");
        o->params.n_trees = (int)lv;
        break;
    case 'd':
        if (!ds_parse_long(optarg, 1, 30, &lv)) return usage_error("--depth must be a number from 1 to 30");
        o->params.max_depth = (int)lv;
        break;
    case 'e':
        if (!parse_double(optarg, &dv) || !(dv > 0 && dv <= 1)) return usage_error("--eta must be in (0, 1]");
        o->params.eta = dv;
        break;
    case 'w':
        if (!parse_double(optarg, &dv) || dv < 0) return usage_error("--min-child-weight must be >= 0");
        o->params.min_child_weight = dv;
        break;
    case 's':
        if (!parse_double(optarg, &dv) || !(dv > 0 && dv <= 1))
            return usage_error("--subsample must be in (0, 1]");
        o->params.subsample = dv;
        break;
    case 'S':
        if (!ds_parse_long(optarg, 0, 1L << 30, &lv)) return usage_error("--seed must be a number >= 0");
        o->params.seed = (int)lv;
        break;
    case 'j':
        if (!ds_parse_long(optarg, 1, 256, &lv))
            return usage_error("--threads must be a number from 1 to 256");
        o->params.nthread = (int)lv;
        break;
    case 'C':
        if (strcmp(optarg, "auto") == 0)
            o->calib = 0;
        else if (strcmp(optarg, "isotonic") == 0)
            o->calib = DS_CALIB_ISOTONIC;
        else if (strcmp(optarg, "platt") == 0)
            o->calib = DS_CALIB_PLATT;
        else
            return usage_error("--calibration must be auto, isotonic or platt");
        break;
    case 'm':
        if (!ds_parse_long(optarg, 1, 1000000, &lv))
            return usage_error("--min-closed must be a number from 1 to 1000000");
        o->min_closed = (int)lv;
        break;
    case 'r': o->report_dir = optarg; break;
    case 'T': o->truth_path = optarg; break;
    case 'x': *exclude = optarg; break;
    case ':': return usage_error("%s needs a value", argv[optind - 1]);
    default: return usage_error("unknown option %s", argv[optind - 1]);
    }
    return TRAIN_GO_ON;
}

/* Reads the options and chooses the model's columns (all engine features
 * but the excluded ones). */
static int parse_options(train_t *t, int argc, char **argv) {
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
    int c, rc;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1)
        if ((rc = apply_option(t, c, argv, &exclude)) != TRAIN_GO_ON) return rc;
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (!t->o.org) return usage_error("--org is required");
    char bad[96];
    if (!parse_exclude(exclude, &t->o, bad, sizeof bad))
        return usage_error("--exclude: \"%s\" is not a feature of the engine", bad);
    for (int i = 0; i < DS_FEATURE_COUNT; i++)
        if (!t->o.excluded[i]) {
            t->cols[t->nf] = i;
            t->names[t->nf++] = ds_feature_name(i);
        }
    if (t->nf == 0) return usage_error("--exclude leaves no feature");
    /* The report is written after the model is registered: a directory that
     * cannot take it stops the run before anything is registered. */
    if (mkdir_p(t->o.report_dir) != 0 || access(t->o.report_dir, W_OK) != 0) {
        fprintf(stderr, "dealscore-scoring train: cannot write the report to %s: %s; nothing registered\n",
                t->o.report_dir, strerror(errno));
        return 1;
    }
    return TRAIN_GO_ON;
}

static int connect_to_org(train_t *t) {
    t->t_start = ds_mono_us();
    if (ds_pg_new(&t->pg, t->cfg->database_url, "dealscore-scoring-train", t->err, sizeof t->err) != 0 ||
        ds_pg_ensure(t->pg, 30000, NULL, t->err, sizeof t->err) != 0)
        return train_fail("could not connect to Postgres: %s\n", t->err);
    const char *sv[] = {t->o.org};
    PGresult *r = NULL;
    if (ds_pg_exec_params(t->pg, "select id::text from public.orgs where slug = $1", 1, sv, NULL, NULL, &r,
                          t->err, sizeof t->err) != 0)
        return train_fail("could not look up the org: %s\n", t->err);
    if (PQntuples(r) != 1) {
        PQclear(r);
        return train_fail("no org \"%s\"\n", t->o.org);
    }
    snprintf(t->org_id, sizeof t->org_id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return TRAIN_GO_ON;
}

/* Closed deals, oldest close first: the split follows this order. */
static int load_closed_deals(train_t *t) {
    const char *ov[] = {t->org_id};
    PGresult *r = NULL;
    if (ds_pg_exec_params(
            t->pg,
            "select id::text, outcome = 'won', (extract(epoch from closed_at) * 1000000)::bigint"
            " from public.opportunities where org_id = $1::uuid and outcome in ('won', 'lost')"
            " and closed_at is not null and created_at is not null and not placeholder"
            " order by closed_at, id",
            1, ov, NULL, NULL, &r, t->err, sizeof t->err) != 0)
        return train_fail("could not read closed deals: %s\n", t->err);
    t->nd = (size_t)PQntuples(r);
    t->deals = ds_calloc(t->nd + 1, sizeof *t->deals);
    for (size_t i = 0; i < t->nd; i++) {
        deal_t *d = &t->deals[i];
        d->id = ds_strdup(PQgetvalue(r, (int)i, 0));
        d->won = PQgetvalue(r, (int)i, 1)[0] == 't';
        d->closed_at_us = strtoll(PQgetvalue(r, (int)i, 2), NULL, 10);
        t->n_won += d->won;
    }
    PQclear(r);
    t->n_lost = t->nd - t->n_won;
    if (t->n_won < (size_t)t->o.min_closed || t->n_lost < (size_t)t->o.min_closed)
        return train_fail(
            "org %s has %zu won and %zu lost closed deals; a model needs at least %d "
            "of each (DEALSCORE_MIN_CLOSED): the org keeps scoring with the stage prior, nothing "
            "registered\n",
            t->o.org, t->n_won, t->n_lost, t->o.min_closed);
    return TRAIN_GO_ON;
}

/* Adds the rows of deal di: its features at every checkpoint before its
 * close, each row weighing 1 / the deal's rows. */
static void add_deal_rows(train_t *t, size_t di, ds_opp_raw_t *raw, const ds_org_ctx_t *oc) {
    deal_t *d = &t->deals[di];
    raw->stages = oc->stages;
    d->external_id = dup_or_null(raw->external_id);
    d->industry = dup_or_null(raw->industry);
    d->region = dup_or_null(raw->region);
    d->created_at_us = raw->created_at_us;
    size_t first = t->nr;
    for (size_t ci = 0; ci < t->o.n_checkpoints; ci++) {
        int64_t as_of = d->created_at_us + (int64_t)t->o.checkpoints[ci] * DS_US_PER_DAY;
        if (as_of >= d->closed_at_us) break; /* checkpoints are sorted */
        ds_feature_vec_t vec;
        if (ds_features_compute(raw, as_of, oc->winrate, oc->lexicon, &vec) != 0) continue;
        if (t->nr == t->rcap) {
            t->rcap = t->rcap ? t->rcap * 2 : 4096;
            t->rows = ds_realloc(t->rows, t->rcap * sizeof *t->rows);
            t->x = ds_realloc(t->x, t->rcap * DS_FEATURE_COUNT * sizeof *t->x);
        }
        row_t *row = &t->rows[t->nr];
        row->deal = di;
        row->day = t->o.checkpoints[ci];
        double si = vec.values[DS_F_STAGE_INDEX];
        row->stage = isnan(si) ? -1 : (int)si;
        row->label = d->won ? 1.0 : 0.0;
        for (int f = 0; f < DS_FEATURE_COUNT; f++)
            t->x[t->nr * DS_FEATURE_COUNT + (size_t)f] = (float)vec.values[f];
        t->nr++;
    }
    d->n_rows = (int)(t->nr - first);
    for (size_t i = first; i < t->nr; i++) t->rows[i].weight = 1.0 / (double)d->n_rows;
}

/* Features at every checkpoint before the close, through the engine, in
 * batches of deals. */
static int load_training_set(train_t *t) {
    t->orgs = ds_org_cache_new(3600 * 1000);
    const ds_org_ctx_t *oc = NULL;
    if (ds_org_cache_get(t->orgs, t->pg, t->org_id, &oc, t->err, sizeof t->err) != 0)
        return train_fail("could not load the org's context: %s\n", t->err);
    int64_t t_feat = ds_mono_us(), last_progress = t_feat;
    for (size_t b = 0; b < t->nd; b += TRAIN_LOAD_BATCH) {
        size_t m = t->nd - b < TRAIN_LOAD_BATCH ? t->nd - b : TRAIN_LOAD_BATCH;
        const char **ids = ds_calloc(m, sizeof *ids);
        for (size_t k = 0; k < m; k++) ids[k] = t->deals[b + k].id;
        ds_opp_batch_t *batch = NULL;
        int lrc = ds_opp_batch_load(t->pg, ids, m, &batch, t->err, sizeof t->err);
        free(ids);
        if (lrc != 0) return train_fail("could not load deals: %s\n", t->err);
        for (size_t k = 0; k < m; k++) {
            int bi = ds_opp_batch_find(batch, t->deals[b + k].id);
            if (bi < 0) continue; /* deleted meanwhile */
            add_deal_rows(t, b + k, ds_opp_batch_raw(batch, (size_t)bi), oc);
        }
        ds_opp_batch_destroy(batch);
        if (ds_mono_us() - last_progress > 2000000) {
            last_progress = ds_mono_us();
            fprintf(stderr, "train: features of %zu/%zu deals (%zu rows)\n", b + m, t->nd, t->nr);
        }
    }
    t->feat_secs = (double)(ds_mono_us() - t_feat) / 1e6;
    return TRAIN_GO_ON;
}

/* Splits the deals by close date (oldest train, then calibration, newest
 * test) and their rows with them; each part needs won and lost rows. */
static int split_by_close_date(train_t *t) {
    size_t nd = t->nd;
    size_t n_tr = (size_t)((double)nd * TRAIN_SHARE_TRAIN);
    size_t n_ca = (size_t)((double)nd * (TRAIN_SHARE_TRAIN + TRAIN_SHARE_CALIB)) - n_tr;
    for (size_t i = 0; i < nd; i++)
        t->deals[i].part = i < n_tr ? PART_TRAIN : i < n_tr + n_ca ? PART_CALIB : PART_TEST;

    double part_pos[PART_COUNT] = {0}, part_neg[PART_COUNT] = {0};
    int64_t part_from[PART_COUNT], part_to[PART_COUNT];
    for (int p = 0; p < PART_COUNT; p++) {
        t->part_rows[p] = ds_malloc((t->nr + 1) * sizeof(size_t));
        part_from[p] = INT64_MAX, part_to[p] = INT64_MIN;
    }
    for (size_t i = 0; i < nd; i++) {
        deal_t *d = &t->deals[i];
        if (!d->n_rows) continue;
        t->part_deals[d->part]++;
        if (d->closed_at_us < part_from[d->part]) part_from[d->part] = d->closed_at_us;
        if (d->closed_at_us > part_to[d->part]) part_to[d->part] = d->closed_at_us;
    }
    for (size_t i = 0; i < t->nr; i++) {
        int p = t->deals[t->rows[i].deal].part;
        t->part_rows[p][t->part_n[p]++] = i;
        if (t->rows[i].label > 0)
            part_pos[p] += 1;
        else
            part_neg[p] += 1;
    }
    for (int p = 0; p < PART_COUNT; p++) {
        if (part_pos[p] < 1 || part_neg[p] < 1)
            return train_fail("the %s part (%zu rows) lacks won or lost rows; with checkpoints %d.. "
                              "days, too few deals lived long enough: nothing registered\n",
                              part_names[p], t->part_n[p], t->o.checkpoints[0]);
        fmt_date(part_from[p], t->dates[p][0]);
        fmt_date(part_to[p], t->dates[p][1]);
    }
    return TRAIN_GO_ON;
}

static int train_model(train_t *t) {
    size_t ntr = t->part_n[PART_TRAIN];
    const size_t *train = t->part_rows[PART_TRAIN];
    float *xp = gather(t->x, train, ntr, t->cols, t->nf);
    float *yp = ds_malloc(ntr * sizeof *yp), *wp = ds_malloc(ntr * sizeof *wp);
    for (size_t i = 0; i < ntr; i++) {
        yp[i] = (float)t->rows[train[i]].label;
        wp[i] = (float)t->rows[train[i]].weight;
    }
    int64_t t_train = ds_mono_us();
    int rc = ds_model_train(&t->o.params, xp, ntr, t->nf, t->names, yp, wp, &t->model, t->err, sizeof t->err);
    t->train_secs = (double)(ds_mono_us() - t_train) / 1e6;
    free(xp);
    free(yp);
    free(wp);
    if (rc != 0) return train_fail("training failed: %s\n", t->err);
    return TRAIN_GO_ON;
}

/* Calibrates the model's margins on the held-out fold. */
static int calibrate(train_t *t) {
    size_t nca = t->part_n[PART_CALIB];
    const size_t *calib = t->part_rows[PART_CALIB];
    float *xc = gather(t->x, calib, nca, t->cols, t->nf);
    double *mc = ds_malloc(nca * sizeof *mc), *yc = ds_malloc(nca * sizeof *yc),
           *wc = ds_malloc(nca * sizeof *wc);
    for (size_t i = 0; i < nca; i++) {
        yc[i] = t->rows[calib[i]].label;
        wc[i] = t->rows[calib[i]].weight;
    }
    char *err = t->err;
    size_t errsz = sizeof t->err;
    int crc = ds_model_predict_margin(t->model, xc, nca, mc, err, errsz);
    if (crc == 0) {
        if (t->o.calib == DS_CALIB_PLATT)
            crc = ds_calib_fit_platt(mc, yc, wc, nca, &t->cal, err, errsz);
        else if (t->o.calib == DS_CALIB_ISOTONIC)
            crc = ds_calib_fit_isotonic(mc, yc, wc, nca, &t->cal, err, errsz);
        else
            crc = ds_calib_fit(mc, yc, wc, nca, &t->cal, err, errsz);
    }
    free(xc);
    free(mc);
    free(yc);
    free(wc);
    if (crc != 0) return train_fail("could not calibrate: %s; nothing registered\n", t->err);
    return TRAIN_GO_ON;
}

/* The stage prior the model must beat, fitted on the training rows. */
static int fit_stage_prior(train_t *t) {
    size_t ntr = t->part_n[PART_TRAIN];
    const size_t *train = t->part_rows[PART_TRAIN];
    int *st = ds_malloc(ntr * sizeof *st);
    double *yy = ds_malloc(ntr * sizeof *yy), *ww = ds_malloc(ntr * sizeof *ww);
    for (size_t i = 0; i < ntr; i++) {
        st[i] = t->rows[train[i]].stage;
        yy[i] = t->rows[train[i]].label;
        ww[i] = t->rows[train[i]].weight;
    }
    int prc = ds_stage_prior_fit(st, yy, ww, ntr, DS_STAGE_PRIOR_SMOOTHING, &t->prior, t->err, sizeof t->err);
    free(st);
    free(yy);
    free(ww);
    if (prc != 0) return train_fail("could not fit the stage prior: %s\n", t->err);
    return TRAIN_GO_ON;
}

/* The test window: model, prior and (when there is one) the active model. */
static int evaluate(train_t *t) {
    size_t nt = t->nt = t->part_n[PART_TEST];
    const size_t *test = t->test = t->part_rows[PART_TEST];
    t->x_test = ds_malloc(nt * DS_FEATURE_COUNT * sizeof *t->x_test);
    t->y_test = ds_malloc(nt * sizeof *t->y_test);
    t->w_test = ds_malloc(nt * sizeof *t->w_test);
    t->p_model = ds_malloc(nt * sizeof *t->p_model);
    t->p_prior = ds_malloc(nt * sizeof *t->p_prior);
    t->p_active = ds_malloc(nt * sizeof *t->p_active);
    for (size_t i = 0; i < nt; i++) {
        const row_t *row = &t->rows[test[i]];
        memcpy(t->x_test + i * DS_FEATURE_COUNT, t->x + test[i] * DS_FEATURE_COUNT,
               DS_FEATURE_COUNT * sizeof *t->x_test);
        t->y_test[i] = row->label;
        t->w_test[i] = row->weight;
        t->p_prior[i] = ds_stage_prior_predict(t->prior, row->stage);
    }
    t->xm_test = gather(t->x, test, nt, t->cols, t->nf);
    double *margin = ds_malloc(nt * sizeof *margin);
    int rc = ds_model_predict_margin(t->model, t->xm_test, nt, margin, t->err, sizeof t->err);
    for (size_t i = 0; rc == 0 && i < nt; i++) t->p_model[i] = ds_calib_apply(t->cal, margin[i]);
    free(margin);
    if (rc != 0) return train_fail("could not score the test window: %s\n", t->err);
    ds_eval_metrics_clear(&t->m_active);
    if (ds_eval_metrics(t->p_model, t->y_test, t->w_test, nt, &t->m_model, t->err, sizeof t->err) != 0 ||
        ds_eval_metrics(t->p_prior, t->y_test, t->w_test, nt, &t->m_prior, t->err, sizeof t->err) != 0)
        return train_fail("could not evaluate: %s\n", t->err);
    t->act = score_active(t->pg, t->org_id, t->x_test, nt, t->p_active, t->active_version, t->active_why,
                          sizeof t->active_why);
    if (t->act == 1 &&
        ds_eval_metrics(t->p_active, t->y_test, t->w_test, nt, &t->m_active, t->err, sizeof t->err) != 0) {
        t->act = -1;
        snprintf(t->active_why, sizeof t->active_why, "%.500s", t->err);
    }
    return TRAIN_GO_ON;
}

/* Active when the model's log loss beats the active model's, or without
 * one that can be evaluated, the stage prior's. */
static void decide(train_t *t) {
    const ds_eval_metrics_t *mm = &t->m_model;
    if (t->act == 1) {
        t->activate = mm->log_loss < t->m_active.log_loss;
        snprintf(t->reason, sizeof t->reason,
                 t->activate
                     ? "its log loss %.4f beats the active model %s's %.4f on the same test window (%zu rows)"
                     : "its log loss %.4f does not beat the active model %s's %.4f on the same test window "
                       "(%zu rows): it stays a candidate",
                 mm->log_loss, t->active_version, t->m_active.log_loss, t->nt);
        return;
    }
    t->activate = mm->log_loss < t->m_prior.log_loss;
    char pre[64 + sizeof t->active_version + sizeof t->active_why] = "";
    if (t->act < 0)
        snprintf(pre, sizeof pre, "the active model %s could not be evaluated on this window (%s); ",
                 t->active_version, t->active_why);
    else
        snprintf(pre, sizeof pre, "no active model: ");
    snprintf(t->reason, sizeof t->reason,
             t->activate
                 ? "%sits log loss %.4f beats the stage prior's %.4f on the test window (%zu rows)"
                 : "%sits log loss %.4f does not beat the stage prior's %.4f on the test window (%zu rows): "
                   "it stays a candidate",
             pre, mm->log_loss, t->m_prior.log_loss, t->nt);
}

/* Importance: mean |SHAP| on the test rows. */
static int explain(train_t *t) {
    float *contribs = ds_malloc(t->nt * (t->nf + 1) * sizeof *contribs);
    double imp[DS_FEATURE_COUNT];
    int rc = ds_model_contribs(t->model, t->xm_test, t->nt, contribs, t->err, sizeof t->err);
    if (rc == 0) ds_contribs_mean_abs(contribs, t->nt, t->nf, imp);
    free(contribs);
    if (rc != 0) return train_fail("could not compute contributions: %s\n", t->err);
    t->feats = ds_calloc(t->nf, sizeof *t->feats);
    for (size_t j = 0; j < t->nf; j++)
        t->feats[j] = (ds_report_feature_t){
            .name = t->names[j], .label = ds_feature_label(t->cols[j]), .mean_abs_shap = imp[j]};
    return TRAIN_GO_ON;
}

/* Model and prior per checkpoint, industry and region. */
static void evaluate_segments(train_t *t) {
    size_t *idx = ds_malloc((t->nt + 1) * sizeof *idx);
    t->cps = ds_calloc(t->o.n_checkpoints, sizeof *t->cps);
    for (size_t ci = 0; ci < t->o.n_checkpoints; ci++) {
        size_t n = 0;
        for (size_t i = 0; i < t->nt; i++)
            if (t->rows[t->test[i]].day == t->o.checkpoints[ci]) idx[n++] = i;
        if (!n) continue;
        seg_t *s = &t->cps[t->n_cps++];
        s->key = ds_asprintf("day %d", t->o.checkpoints[ci]);
        s->weight = (double)n;
        /* One row per deal at a checkpoint: rows count equally. */
        eval_subset(t->p_model, t->y_test, NULL, idx, n, &s->model);
        eval_subset(t->p_prior, t->y_test, NULL, idx, n, &s->prior);
    }
    free(idx);
    t->n_ind = segments(t->deals, t->rows, t->test, t->nt, t->p_model, t->p_prior, t->y_test, t->w_test, true,
                        &t->ind);
    t->n_reg = segments(t->deals, t->rows, t->test, t->nt, t->p_model, t->p_prior, t->y_test, t->w_test,
                        false, &t->reg);
}

/* Bayes-optimal figures from the simulator's truth (--truth). */
static int compare_with_truth(train_t *t) {
    if (!t->o.truth_path) return TRAIN_GO_ON;
    size_t nt = t->nt;
    t->truth = ds_malloc((nt + 1) * sizeof *t->truth);
    t->oracle = ds_malloc((nt + 1) * sizeof *t->oracle);
    t->n_truth = read_truth(t->o.truth_path, t->deals, t->rows, t->test, nt, t->truth, t->oracle);
    if (t->n_truth < 0) return 1;
    size_t *idx = ds_malloc((nt + 1) * sizeof *idx);
    size_t n = 0;
    t->has_oracle = true;
    for (size_t i = 0; i < nt; i++)
        if (!isnan(t->truth[i])) {
            idx[n++] = i;
            if (isnan(t->oracle[i])) t->has_oracle = false;
        }
    t->has_oracle = t->has_oracle && n > 0;
    ds_eval_metrics_clear(&t->b_truth);
    ds_eval_metrics_clear(&t->b_oracle);
    if (t->has_oracle) eval_subset(t->oracle, t->y_test, t->w_test, idx, n, &t->b_oracle);
    ds_eval_metrics_clear(&t->b_model);
    ds_eval_metrics_clear(&t->b_prior);
    if (n) {
        eval_subset(t->truth, t->y_test, t->w_test, idx, n, &t->b_truth);
        eval_subset(t->p_model, t->y_test, t->w_test, idx, n, &t->b_model);
        eval_subset(t->p_prior, t->y_test, t->w_test, idx, n, &t->b_prior);
    }
    free(idx);
    t->bayes = json_pack("{s:s, s:I, s:I, s:o, s:o, s:o}", "truth_file", t->o.truth_path, "matched_rows",
                         (json_int_t)t->n_truth, "test_rows", (json_int_t)nt, "bayes_optimal",
                         metrics_json(&t->b_truth), "model", metrics_json(&t->b_model), "stage_prior",
                         metrics_json(&t->b_prior));
    if (t->has_oracle) json_object_set_new(t->bayes, "oracle", metrics_json(&t->b_oracle));
    return TRAIN_GO_ON;
}

/* The models.training_window document: dates, sizes and the split. */
static json_t *training_window_json(const train_t *t) {
    const size_t *pd = t->part_deals;
    json_t *window =
        json_pack("{s:s, s:s, s:I, s:I, s:[], s:s, s:{}}", "from", t->dates[PART_TRAIN][0], "to",
                  t->dates[PART_TEST][1], "n_deals", (json_int_t)(pd[0] + pd[1] + pd[2]), "n_rows",
                  (json_int_t)t->nr, "checkpoints", "weight", "1 / checkpoints of the deal", "split");
    for (size_t ci = 0; ci < t->o.n_checkpoints; ci++)
        json_array_append_new(json_object_get(window, "checkpoints"), json_integer(t->o.checkpoints[ci]));
    for (int p = 0; p < PART_COUNT; p++)
        json_object_set_new(json_object_get(window, "split"), part_names[p],
                            json_pack("{s:s, s:s, s:I, s:I}", "closed_from", t->dates[p][0], "closed_to",
                                      t->dates[p][1], "deals", (json_int_t)pd[p], "rows",
                                      (json_int_t)t->part_n[p]));
    json_object_set_new(window, "closed_deals",
                        json_pack("{s:I, s:I}", "won", (json_int_t)t->n_won, "lost", (json_int_t)t->n_lost));
    return window;
}

/* The one-line descriptions of the parameters and the calibration. */
static void describe_params(train_t *t) {
    const ds_model_params_t *mp = &t->o.params;
    char *params_text = t->params_text;
    size_t size = sizeof t->params_text;
    int pn =
        snprintf(params_text, size,
                 "%d trees, depth %d, eta %g, min_child_weight %g, subsample %g, seed %d; %zu features",
                 mp->n_trees, mp->max_depth, mp->eta, mp->min_child_weight, mp->subsample, mp->seed, t->nf);
    for (int i = 0, k = 0; i < DS_FEATURE_COUNT && pn > 0 && (size_t)pn < size; i++)
        if (t->o.excluded[i])
            pn += snprintf(params_text + pn, size - (size_t)pn, "%s%s", k++ ? ", " : " (without ",
                           ds_feature_name(i));
    if (t->nf < DS_FEATURE_COUNT && pn > 0 && (size_t)pn + 1 < size) strcat(params_text, ")");
    snprintf(t->calib_text, sizeof t->calib_text, "%s on %zu rows", ds_calib_method_name(t->cal->method),
             t->part_n[PART_CALIB]);
}

/* The models.metrics document ("decision" is added at registration). */
static json_t *model_metrics_json(const train_t *t) {
    const ds_model_params_t *mp = &t->o.params;
    size_t nca = t->part_n[PART_CALIB];
    json_t *metrics = json_object();
    json_object_set_new(metrics, "feature_version", json_string(DS_FEATURE_VERSION));
    json_object_set_new(metrics, "params",
                        json_pack("{s:i, s:i, s:f, s:f, s:f, s:i, s:s}", "trees", mp->n_trees, "depth",
                                  mp->max_depth, "eta", mp->eta, "min_child_weight", mp->min_child_weight,
                                  "subsample", mp->subsample, "seed", mp->seed, "objective",
                                  "binary:logistic"));
    json_t *ex = json_array();
    for (int i = 0; i < DS_FEATURE_COUNT; i++)
        if (t->o.excluded[i]) json_array_append_new(ex, json_string(ds_feature_name(i)));
    json_object_set_new(metrics, "features",
                        json_pack("{s:I, s:o}", "count", (json_int_t)t->nf, "excluded", ex));
    json_object_set_new(
        metrics, "calibration",
        json_pack("{s:s, s:I}", "method", ds_calib_method_name(t->cal->method), "rows", (json_int_t)nca));
    json_object_set_new(metrics, "rows",
                        json_pack("{s:I, s:I, s:I}", "train", (json_int_t)t->part_n[PART_TRAIN],
                                  "calibration", (json_int_t)nca, "test", (json_int_t)t->nt));
    json_object_set_new(metrics, "test",
                        json_pack("{s:o, s:o, s:o, s:o}", "model", metrics_json(&t->m_model), "stage_prior",
                                  metrics_json(&t->m_prior), "active",
                                  t->act == 1 ? metrics_json(&t->m_active) : json_null(), "active_version",
                                  t->active_version[0] ? json_string(t->active_version) : json_null()));
    if (t->act < 0) json_object_set_new(metrics, "active_error", json_string(t->active_why));
    json_object_set_new(metrics, "per_checkpoint", table_json(t->cps, t->n_cps));
    json_object_set_new(metrics, "per_industry", table_json(t->ind, t->n_ind));
    json_object_set_new(metrics, "per_region", table_json(t->reg, t->n_reg));
    ds_report_feature_t *sorted = ds_malloc(t->nf * sizeof *sorted);
    memcpy(sorted, t->feats, t->nf * sizeof *sorted);
    qsort(sorted, t->nf, sizeof *sorted, cmp_desc_importance);
    json_t *tf = json_array();
    for (size_t i = 0; i < TRAIN_REPORT_FEATURES && i < t->nf; i++)
        json_array_append_new(tf, json_pack("{s:s, s:o}", "name", sorted[i].name, "mean_abs_shap",
                                            ds_eval_json_number(sorted[i].mean_abs_shap)));
    json_object_set_new(metrics, "top_features", tf);
    free(sorted);
    if (t->bayes) json_object_set_new(metrics, "bayes", json_incref(t->bayes));
    json_object_set_new(metrics, "seconds",
                        json_pack("{s:f, s:f}", "features", t->feat_secs, "training", t->train_secs));
    return metrics;
}

/* Registers the model in public.models (register_tx decides its status
 * and version, or finds it registered by an earlier run on the same inputs). */
static int register_model(train_t *t) {
    if (ds_model_save(t->model, &t->artifact, &t->artifact_len, t->err, sizeof t->err) != 0)
        return train_fail("could not serialize the model: %s\n", t->err);
    time_t now = (time_t)(ds_now_us() / 1000000);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(t->base_version, sizeof t->base_version, "m%Y%m%dT%H%M%SZ", &tm);
    json_t *window = training_window_json(t);
    describe_params(t);
    t->metrics = model_metrics_json(t);

    reg_t *g = &t->g;
    g->org_id = t->org_id;
    g->base_version = t->base_version;
    g->activate = t->activate;
    g->incumbent = t->act != 0 ? t->active_version : "";
    g->reason = t->reason;
    g->artifact = t->artifact;
    g->artifact_len = t->artifact_len;
    g->names_arr = ds_pg_array_text(t->names, t->nf);
    g->calib_json = ds_calib_to_json(t->cal);
    char inputs[65];
    inputs_sha256(&t->o, t->params_text, t->deals, t->rows, t->x, t->nr, inputs);
    json_object_set_new(window, "inputs_sha256", json_string(inputs));
    g->inputs_sha256 = inputs;
    g->window_json = json_dumps(window, JSON_COMPACT);
    g->metrics = t->metrics;
    json_decref(window);
    if (ds_pg_tx_run(t->pg, register_tx, g, 5, NULL, t->err, sizeof t->err) != 0)
        return train_fail("could not register the model: %s\n", t->err);
    return TRAIN_GO_ON;
}

/* Writes the model report's JSON (the report plus what the page has no
 * place for) to t->json_path. */
static bool write_report_json(train_t *t, const ds_report_t *rep) {
    json_t *rj = ds_report_json(rep);
    if (t->bayes) json_object_set_new(rj, "bayes", json_incref(t->bayes));
    json_object_set_new(rj, "training_window", json_loads(t->g.window_json, 0, NULL));
    char *text = json_dumps(rj, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(rj);
    bool ok = true;
    FILE *f = fopen(t->json_path, "w");
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0) {
        snprintf(t->err, sizeof t->err, "cannot write %s: %s", t->json_path, strerror(errno));
        ok = false;
    }
    if (f && fclose(f) != 0 && ok) {
        snprintf(t->err, sizeof t->err, "cannot write %s: %s", t->json_path, strerror(errno));
        ok = false;
    }
    free(text);
    return ok;
}

/* Writes model-<version>.html and .json into --report; a failure is
 * reported by the summary (the model is registered by then). */
static void write_report(train_t *t) {
    char generated[40];
    ds_format_time_us(ds_now_us(), generated, sizeof generated);
    char train_window[160], test_window[160];
    snprintf(train_window, sizeof train_window,
             "closed %s .. %s (%zu deals; calibration %s .. %s, %zu deals)", t->dates[PART_TRAIN][0],
             t->dates[PART_TRAIN][1], t->part_deals[PART_TRAIN], t->dates[PART_CALIB][0],
             t->dates[PART_CALIB][1], t->part_deals[PART_CALIB]);
    snprintf(test_window, sizeof test_window, "closed %s .. %s (%zu deals)", t->dates[PART_TEST][0],
             t->dates[PART_TEST][1], t->part_deals[PART_TEST]);
    ds_eval_bin_t bins_m[10], bins_p[10];
    ds_roc_point_t *roc_m = ds_calloc(DS_EVAL_ROC_MAX_POINTS, sizeof *roc_m);
    ds_roc_point_t *roc_p = ds_calloc(DS_EVAL_ROC_MAX_POINTS, sizeof *roc_p);
    size_t n_roc_m = 0, n_roc_p = 0;
    ds_eval_reliability(t->p_model, t->y_test, t->w_test, t->nt, 10, bins_m);
    ds_eval_reliability(t->p_prior, t->y_test, t->w_test, t->nt, 10, bins_p);
    ds_eval_roc_curve(t->p_model, t->y_test, t->w_test, t->nt, DS_EVAL_ROC_MAX_POINTS, roc_m, &n_roc_m);
    ds_eval_roc_curve(t->p_prior, t->y_test, t->w_test, t->nt, DS_EVAL_ROC_MAX_POINTS, roc_p, &n_roc_p);
    ds_report_row_t *trows[3];
    size_t tn[3] = {t->n_cps, t->n_ind, t->n_reg};
    seg_t *tsrc[3] = {t->cps, t->ind, t->reg};
    for (int k = 0; k < 3; k++) {
        trows[k] = ds_calloc(tn[k] + 1, sizeof *trows[k]);
        for (size_t i = 0; i < tn[k]; i++)
            trows[k][i] = (ds_report_row_t){
                .key = tsrc[k][i].key, .model = tsrc[k][i].model, .prior = tsrc[k][i].prior};
    }
    ds_report_table_t tables[3] = {
        {.title = "Per checkpoint (rows count equally)",
         .key_header = "Checkpoint",
         .rows = trows[0],
         .n_rows = tn[0]},
        {.title = "Per industry", .key_header = "Industry", .rows = trows[1], .n_rows = tn[1]},
        {.title = "Per region", .key_header = "Region", .rows = trows[2], .n_rows = tn[2]},
    };
    ds_report_t rep = {.model_version = t->g.version,
                       .org = t->o.org,
                       .generated_at = generated,
                       .feature_version = DS_FEATURE_VERSION,
                       .params = t->params_text,
                       .calibration = t->calib_text,
                       .train_window = train_window,
                       .test_window = test_window,
                       .n_train = t->part_n[PART_TRAIN],
                       .n_calib = t->part_n[PART_CALIB],
                       .n_test = t->nt,
                       .model = t->m_model,
                       .prior = t->m_prior,
                       .has_active = t->act == 1,
                       .active_version = t->act == 1 ? t->active_version : NULL,
                       .active = t->m_active,
                       .model_bins = bins_m,
                       .n_model_bins = 10,
                       .prior_bins = bins_p,
                       .n_prior_bins = 10,
                       .model_roc = roc_m,
                       .n_model_roc = n_roc_m,
                       .prior_roc = roc_p,
                       .n_prior_roc = n_roc_p,
                       .features = t->feats,
                       .n_features = t->nf,
                       .tables = tables,
                       .n_tables = 3,
                       .backtest = t->bt,
                       .n_backtest = t->n_bt,
                       .activate = t->g.activated,
                       .decision_reason = t->g.final_reason};
    t->html_path = ds_asprintf("%s/model-%s.html", t->o.report_dir, t->g.version);
    t->json_path = ds_asprintf("%s/model-%s.json", t->o.report_dir, t->g.version);
    t->report_ok = mkdir_p(t->o.report_dir) == 0;
    if (!t->report_ok)
        snprintf(t->err, sizeof t->err, "cannot create %s: %s", t->o.report_dir, strerror(errno));
    if (t->report_ok) t->report_ok = ds_report_write_html(t->html_path, &rep, t->err, sizeof t->err) == 0;
    if (t->report_ok) t->report_ok = write_report_json(t, &rep);
    for (int k = 0; k < 3; k++) free(trows[k]);
    free(roc_m);
    free(roc_p);
}

/* The forecast backtest of the new model over the months from the first
 * close of the calibration fold on, whose deals the trees were not trained
 * on, up to the months that ended BACKTEST_SETTLE_DAYS ago. When the model
 * was activated, the replay's in-month rates replace the org's in
 * forecast_rates (they are relative to the active model's p). A failure
 * leaves the report without it. */
static void backtest_held_out(train_t *t) {
    int64_t from = INT64_MAX;
    for (size_t i = 0; i < t->nd; i++)
        if (t->deals[i].part != PART_TRAIN && t->deals[i].closed_at_us < from)
            from = t->deals[i].closed_at_us;
    const ds_org_ctx_t *oc = NULL;
    backtest_model_t bm = {.model = t->model, .calib = t->cal, .cols = t->cols, .nf = t->nf};
    /* A month starting before this ended BACKTEST_SETTLE_DAYS ago. */
    int64_t to = ds_now_us() - (BACKTEST_SETTLE_DAYS + 31) * DS_US_PER_DAY;
    if (from == INT64_MAX || ds_org_cache_get(t->orgs, t->pg, t->org_id, &oc, t->err, sizeof t->err) != 0 ||
        forecast_backtest(t->pg, t->org_id, oc, &bm, from, to, t->g.activated, &t->bt, &t->n_bt, t->err,
                          sizeof t->err) != 0)
        fprintf(stderr, "train: no forecast backtest: %s\n", t->err);
    else if (t->n_bt) {
        const ds_forecast_month_t *m0;
        size_t n0 = ds_forecast_horizon(t->bt, t->n_bt, 0, &m0);
        printf(
            "train: forecast backtest on %zu held-out months: the P10-P90 band holds the actual in %.0f %%\n",
            n0, 100 * ds_forecast_coverage(m0, n0));
    }
}

/* The summary on stdout; returns the exit status (1 when the report could
 * not be written). */
static int print_summary(const train_t *t) {
    printf("train: org %s: %zu closed deals (%zu won, %zu lost), %zu checkpoint rows at days", t->o.org,
           t->nd, t->n_won, t->n_lost, t->nr);
    for (size_t ci = 0; ci < t->o.n_checkpoints; ci++) printf("%s%d", ci ? "," : " ", t->o.checkpoints[ci]);
    printf("\n");
    for (int p = 0; p < PART_COUNT; p++)
        printf("train: %-11s closed %s .. %s: %zu deals, %zu rows\n", part_names[p], t->dates[p][0],
               t->dates[p][1], t->part_deals[p], t->part_n[p]);
    printf("train: %s; %s calibration on %zu rows; features %.2f s, training %.2f s\n", t->params_text,
           ds_calib_method_name(t->cal->method), t->part_n[PART_CALIB], t->feat_secs, t->train_secs);
    printf("train: test window, %zu rows (weighted: each deal counts once):\n", t->nt);
    printf("  %-34s %8s %8s %9s %8s %8s\n", "", "ROC AUC", "PR AUC", "log loss", "Brier", "ECE");
    char label[80];
    snprintf(label, sizeof label, "model %s", t->g.version);
    print_metrics_line(label, &t->m_model);
    print_metrics_line("stage prior", &t->m_prior);
    if (t->act == 1) {
        snprintf(label, sizeof label, "active %s", t->active_version);
        print_metrics_line(label, &t->m_active);
    }
    if (t->bayes) {
        printf("train: on the %ld test rows with a truth row (%s):\n", t->n_truth, t->o.truth_path);
        print_metrics_line("Bayes-optimal (simulator truth)", &t->b_truth);
        if (t->has_oracle) print_metrics_line("oracle without u and eps", &t->b_oracle);
        print_metrics_line("model", &t->b_model);
        print_metrics_line("stage prior", &t->b_prior);
    }
    if (t->g.retired[0]) printf("train: retired %s\n", t->g.retired);
    if (t->g.already)
        printf("train: %s was registered already\ntrain: why: %s\n", t->g.version, t->g.final_reason);
    else
        printf("train: %s is %s\ntrain: why: %s\n", t->g.version,
               t->g.activated ? "now ACTIVE" : "a CANDIDATE", t->g.final_reason);
    if (t->report_ok) {
        printf("report: %s\nreport: %s\n", t->html_path, t->json_path);
    } else {
        fprintf(stderr,
                "dealscore-scoring train: the model is registered but the report was not written: %s\n",
                t->err);
    }
    printf("train: done in %.1f s\n", (double)(ds_mono_us() - t->t_start) / 1e6);
    fflush(stdout);
    return t->report_ok ? 0 : 1;
}

static void free_segs(seg_t *segs, size_t n) {
    for (size_t i = 0; i < n; i++) free(segs[i].key);
    free(segs);
}

static void train_close(train_t *t) {
    free(t->bt);
    free(t->html_path);
    free(t->json_path);
    free(t->g.names_arr);
    free(t->g.calib_json);
    free(t->g.window_json);
    json_decref(t->metrics);
    free(t->artifact);
    json_decref(t->bayes);
    free(t->truth);
    free(t->oracle);
    free_segs(t->cps, t->n_cps);
    free_segs(t->ind, t->n_ind);
    free_segs(t->reg, t->n_reg);
    free(t->feats);
    free(t->x_test);
    free(t->xm_test);
    free(t->y_test);
    free(t->w_test);
    free(t->p_model);
    free(t->p_prior);
    free(t->p_active);
    ds_stage_prior_destroy(t->prior);
    ds_calib_destroy(t->cal);
    ds_model_destroy(t->model);
    for (int p = 0; p < PART_COUNT; p++) free(t->part_rows[p]);
    free(t->rows);
    free(t->x);
    for (size_t i = 0; i < t->nd; i++) {
        free(t->deals[i].id);
        free(t->deals[i].external_id);
        free(t->deals[i].industry);
        free(t->deals[i].region);
    }
    free(t->deals);
    ds_org_cache_destroy(t->orgs);
    ds_pg_destroy(t->pg);
}

int scoring_cmd_train(const ds_config_t *cfg, int argc, char **argv) {
    train_t *t = ds_malloc(sizeof *t);
    train_init(t, cfg);
    int rc = parse_options(t, argc, argv);
    if (rc == TRAIN_GO_ON) rc = connect_to_org(t);
    if (rc == TRAIN_GO_ON) rc = load_closed_deals(t);
    if (rc == TRAIN_GO_ON) rc = load_training_set(t);
    if (rc == TRAIN_GO_ON) rc = split_by_close_date(t);
    if (rc == TRAIN_GO_ON) rc = train_model(t);
    if (rc == TRAIN_GO_ON) rc = calibrate(t);
    if (rc == TRAIN_GO_ON) rc = fit_stage_prior(t);
    if (rc == TRAIN_GO_ON) rc = evaluate(t);
    if (rc == TRAIN_GO_ON) {
        decide(t);
        rc = explain(t);
    }
    if (rc == TRAIN_GO_ON) {
        evaluate_segments(t);
        rc = compare_with_truth(t);
    }
    if (rc == TRAIN_GO_ON) rc = register_model(t);
    if (rc == TRAIN_GO_ON) {
        backtest_held_out(t);
        write_report(t);
        rc = print_summary(t);
    }
    train_close(t);
    free(t);
    return rc;
}
