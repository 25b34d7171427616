/* dealscore-sim: runs the binary into temporary directories and checks what
 * it wrote: determinism, RFC 4180 CSV with the DESIGN.md columns, a
 * consistent CRM history, truth rows only at checkpoints before the close,
 * outcomes that agree with the truth, MEDDICC cues in transcripts. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIM DS_BINARY_DIR "/bin/dealscore-sim"
#define NOW "2026-11-01T00:00:00Z"

/* ---- helpers ---------------------------------------------------------- */

static char *tmpdir_new(void) {
    char *d = strdup("/tmp/ds-test-sim-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *d) {
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    if (system(cmd) != 0) cr_log_warn("could not remove %s", d);
}

/* Runs the simulator with args; returns its exit status. stderr goes to
 * errfile when given. */
static int run_sim(const char *args, const char *errfile) {
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s %s >/dev/null 2>%s", SIM, args, errfile ? errfile : "/dev/null");
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *gen(uint64_t seed, int n, const char *extra) {
    char *d = tmpdir_new();
    char args[1024];
    snprintf(args, sizeof(args), "--seed %llu --opportunities %d --out %s %s", (unsigned long long)seed, n, d,
             extra ? extra : "");
    cr_assert_eq(run_sim(args, NULL), 0, "dealscore-sim %s failed", args);
    return d;
}

static char *slurp(const char *dir, const char *name, size_t *len) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

/* A tiny strict RFC 4180 parser: rows of fields, CRLF or LF line ends. */
typedef struct {
    char **f;
    int n;
} row_t;

typedef struct {
    row_t *rows;
    int n;
} table_t;

static void table_free(table_t *t) {
    for (int i = 0; i < t->n; i++) {
        for (int j = 0; j < t->rows[i].n; j++) free(t->rows[i].f[j]);
        free(t->rows[i].f);
    }
    free(t->rows);
}

/* Returns 0, or -1 with the byte offset of the error in *where. */
static int csv_parse(const char *s, size_t len, table_t *t, size_t *where) {
    size_t cap = 1024, i = 0;
    t->rows = malloc(cap * sizeof(row_t));
    t->n = 0;
    while (i < len) {
        row_t row = {NULL, 0};
        int fcap = 0;
        for (;;) {
            size_t bcap = 64, bl = 0;
            char *b = malloc(bcap);
            if (i < len && s[i] == '"') {
                i++;
                for (;;) {
                    if (i >= len) {
                        *where = i;
                        free(b);
                        return -1; /* unterminated quote */
                    }
                    if (s[i] == '"') {
                        if (i + 1 < len && s[i + 1] == '"') {
                            i += 2;
                            if (bl + 1 >= bcap) b = realloc(b, bcap *= 2);
                            b[bl++] = '"';
                            continue;
                        }
                        i++;
                        break;
                    }
                    if (bl + 1 >= bcap) b = realloc(b, bcap *= 2);
                    b[bl++] = s[i++];
                }
                if (i < len && s[i] != ',' && s[i] != '\n' && s[i] != '\r') {
                    *where = i;
                    free(b);
                    return -1; /* junk after a closing quote */
                }
            } else {
                while (i < len && s[i] != ',' && s[i] != '\n' && s[i] != '\r') {
                    if (s[i] == '"') {
                        *where = i;
                        free(b);
                        return -1; /* quote inside an unquoted field */
                    }
                    if (bl + 1 >= bcap) b = realloc(b, bcap *= 2);
                    b[bl++] = s[i++];
                }
            }
            b[bl] = '\0';
            if (row.n == fcap) row.f = realloc(row.f, (size_t)(fcap = fcap ? fcap * 2 : 16) * sizeof(char *));
            row.f[row.n++] = b;
            if (i < len && s[i] == ',') {
                i++;
                continue;
            }
            if (i < len && s[i] == '\r') i++;
            if (i < len && s[i] == '\n') i++;
            break;
        }
        if (t->n == (int)cap) t->rows = realloc(t->rows, (cap *= 2) * sizeof(row_t));
        t->rows[t->n++] = row;
    }
    return 0;
}

static void load(const char *dir, const char *name, table_t *t) {
    size_t len, where = 0;
    char *s = slurp(dir, name, &len);
    cr_assert(len > 0 && s[len - 1] == '\n', "%s does not end with a newline", name);
    cr_assert_eq(csv_parse(s, len, t, &where), 0, "%s: RFC 4180 error at byte %zu", name, where);
    free(s);
}

static int col(const table_t *t, const char *name) {
    for (int j = 0; j < t->rows[0].n; j++)
        if (!strcmp(t->rows[0].f[j], name)) return j;
    cr_assert_fail("no column %s", name);
    return -1;
}

static int64_t parse_ts(const char *s) {
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &n) != 6 ||
        n != 20 || s[20])
        cr_assert_fail("bad timestamp '%s'", s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static int is_date(const char *s) {
    int y, m, d, n = 0;
    return sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) == 3 && n == 10 && !s[10];
}

/* Per-deal facts from opportunities.csv. */
typedef struct {
    char id[32];
    int64_t created, closed; /* closed 0: open */
    char outcome[8];
} deal_t;

static deal_t *deals_of(const table_t *o, int *ndeals) {
    deal_t *d = calloc((size_t)o->n, sizeof(deal_t));
    int n = 0, cid = col(o, "external_id"), cout = col(o, "outcome");
    int ccre = col(o, "created_at"), cclo = col(o, "closed_at");
    for (int i = 1; i < o->n; i++) {
        char **f = o->rows[i].f;
        if (n == 0 || strcmp(d[n - 1].id, f[cid]) != 0) {
            snprintf(d[n].id, sizeof(d[n].id), "%s", f[cid]);
            d[n].created = parse_ts(f[ccre]);
            n++;
        }
        snprintf(d[n - 1].outcome, sizeof(d[n - 1].outcome), "%s", f[cout]);
        d[n - 1].closed = f[cclo][0] ? parse_ts(f[cclo]) : 0;
    }
    *ndeals = n;
    return d;
}

static int cmp_deal(const void *a, const void *b) {
    return strcmp(((const deal_t *)a)->id, ((const deal_t *)b)->id);
}

static const deal_t *find_deal(const deal_t *d, int n, const char *id) {
    deal_t key;
    snprintf(key.id, sizeof(key.id), "%s", id);
    return bsearch(&key, d, (size_t)n, sizeof(deal_t), cmp_deal);
}

static const char *const files[] = {
    "accounts.csv", "opportunities.csv", "interactions.csv", "transcripts.csv", "truth.csv",
};

/* ---- tests ------------------------------------------------------------ */

Test(sim, same_seed_gives_identical_files) {
    char *a = gen(7, 700, "--threads 1");
    char *b = gen(7, 700, "--threads 3");
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        size_t la, lb;
        char *x = slurp(a, files[i], &la), *y = slurp(b, files[i], &lb);
        cr_expect(la == lb && memcmp(x, y, la) == 0, "%s differs between runs", files[i]);
        free(x);
        free(y);
    }
    rm_rf(a);
    rm_rf(b);
    free(a);
    free(b);
}

Test(sim, different_seed_gives_different_files) {
    char *a = gen(7, 300, NULL);
    char *b = gen(8, 300, NULL);
    size_t la, lb;
    char *x = slurp(a, "opportunities.csv", &la), *y = slurp(b, "opportunities.csv", &lb);
    cr_expect(la != lb || memcmp(x, y, la) != 0);
    free(x);
    free(y);
    rm_rf(a);
    rm_rf(b);
    free(a);
    free(b);
}

Test(sim, every_csv_parses_with_the_design_header) {
    static const char *const headers[] = {
        "external_id,name,industry,region,size_band,created_at",
        "external_id,account_external_id,owner_id,product_category,persona,amount,currency,"
        "stage,created_at,close_date,closed_at,outcome,changed_at",
        "external_id,opportunity_external_id,type,channel,occurred_at,duration_min,outcome,"
        "meta_json",
        "external_id,opportunity_external_id,occurred_at,text",
        "opportunity_external_id,checkpoint_day,as_of,true_proba,outcome,oracle_proba",
    };
    char *d = gen(3, 800, NULL);
    int quoted_seen = 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        table_t t;
        load(d, files[i], &t);
        cr_assert(t.n > 1, "%s has no data rows", files[i]);
        char hdr[512] = "";
        for (int j = 0; j < t.rows[0].n; j++) {
            if (j) strcat(hdr, ",");
            strcat(hdr, t.rows[0].f[j]);
        }
        cr_expect_str_eq(hdr, headers[i], "%s header", files[i]);
        for (int r = 1; r < t.n; r++) {
            cr_assert_eq(t.rows[r].n, t.rows[0].n, "%s row %d has %d fields, want %d", files[i], r,
                         t.rows[r].n, t.rows[0].n);
            for (int j = 0; j < t.rows[r].n; j++)
                if (strpbrk(t.rows[r].f[j], ",\"\n")) quoted_seen++;
        }
        table_free(&t);
    }
    cr_expect(quoted_seen > 0, "no field needed quoting");
    rm_rf(d);
    free(d);
}

Test(sim, opportunity_history_is_a_consistent_crm_log) {
    char *d = gen(11, 800, NULL);
    table_t o;
    load(d, "opportunities.csv", &o);
    int cid = col(&o, "external_id"), cst = col(&o, "stage"), cout = col(&o, "outcome");
    int ccre = col(&o, "created_at"), cclo = col(&o, "closed_at"), cch = col(&o, "changed_at");
    int ccd = col(&o, "close_date"), camt = col(&o, "amount");
    int64_t now = parse_ts(NOW);
    int closed = 0, multi = 0, pushes = 0;
    const char *prev_id = "";
    int64_t prev_t = 0;
    int prev_closed = 0;
    char prev_cd[16] = "";
    for (int i = 1; i < o.n; i++) {
        char **f = o.rows[i].f;
        int64_t ch = parse_ts(f[cch]);
        cr_assert(ch <= now, "change after --now: %s", f[cch]);
        cr_assert(is_date(f[ccd]), "close_date '%s' is not a plain date", f[ccd]);
        cr_assert(atof(f[camt]) >= 0);
        const char *st = f[cst], *out = f[cout];
        int is_closed = !strcmp(st, "closed_won") || !strcmp(st, "closed_lost");
        if (strcmp(prev_id, f[cid]) != 0) {
            cr_assert_eq(ch, parse_ts(f[ccre]), "first row of %s is not its creation", f[cid]);
        } else {
            multi++;
            cr_assert(ch >= prev_t, "%s: changed_at goes back in time", f[cid]);
            cr_assert(!prev_closed, "%s: a row after the close", f[cid]);
            if (strcmp(prev_cd, f[ccd]) != 0) pushes++;
        }
        if (is_closed) {
            closed++;
            cr_assert(f[cclo][0], "%s closed without closed_at", f[cid]);
            cr_assert_eq(parse_ts(f[cclo]), ch);
            cr_assert_str_eq(out, !strcmp(st, "closed_won") ? "won" : "lost");
        } else {
            cr_assert_str_eq(out, "open");
            cr_assert_eq(f[cclo][0], '\0', "%s open with closed_at", f[cid]);
        }
        prev_id = f[cid];
        prev_t = ch;
        prev_closed = is_closed;
        snprintf(prev_cd, sizeof(prev_cd), "%s", f[ccd]);
    }
    cr_expect(closed > 100, "only %d closed deals", closed);
    cr_expect(multi > 800, "history has only %d change rows", multi);
    cr_expect(pushes > 50, "only %d close-date changes", pushes);
    table_free(&o);
    rm_rf(d);
    free(d);
}

Test(sim, interactions_and_transcripts_fall_within_the_deal_life) {
    char *d = gen(5, 800, NULL);
    table_t o, it, tr;
    load(d, "opportunities.csv", &o);
    load(d, "interactions.csv", &it);
    load(d, "transcripts.csv", &tr);
    int n;
    deal_t *deals = deals_of(&o, &n);
    qsort(deals, (size_t)n, sizeof(deal_t), cmp_deal);
    int64_t now = parse_ts(NOW);
    int ctype = col(&it, "type"), cmeta = col(&it, "meta_json");
    static const char *const types[] = {"email", "phone", "meeting", "demo", "support"};
    table_t *tabs[2] = {&it, &tr};
    for (int w = 0; w < 2; w++) {
        table_t *t = tabs[w];
        int copp = col(t, "opportunity_external_id"), cocc = col(t, "occurred_at");
        for (int i = 1; i < t->n; i++) {
            char **f = t->rows[i].f;
            const deal_t *dl = find_deal(deals, n, f[copp]);
            cr_assert_not_null(dl, "row for unknown opportunity %s", f[copp]);
            int64_t at = parse_ts(f[cocc]);
            cr_assert(at >= dl->created, "%s before its deal was created", f[0]);
            cr_assert(at <= now, "%s after --now", f[0]);
            if (dl->closed) cr_assert(at <= dl->closed, "%s after its deal closed", f[0]);
            if (w == 0) {
                int ok = 0;
                for (int k = 0; k < 5; k++) ok |= !strcmp(f[ctype], types[k]);
                cr_assert(ok, "unknown interaction type %s", f[ctype]);
                cr_assert(f[cmeta][0] == '{', "meta_json is not an object: %s", f[cmeta]);
            }
        }
    }
    double per_deal = (double)(it.n - 1) / n;
    cr_expect(per_deal >= 10 && per_deal <= 40, "%.1f interactions per deal", per_deal);
    cr_expect((double)(tr.n - 1) / n <= 4.0);
    free(deals);
    table_free(&o);
    table_free(&it);
    table_free(&tr);
    rm_rf(d);
    free(d);
}

Test(sim, truth_rows_only_at_checkpoints_before_the_close) {
    char *d = gen(9, 800, NULL);
    table_t o, t;
    load(d, "opportunities.csv", &o);
    load(d, "truth.csv", &t);
    int n;
    deal_t *deals = deals_of(&o, &n);
    qsort(deals, (size_t)n, sizeof(deal_t), cmp_deal);
    int64_t now = parse_ts(NOW);
    for (int i = 1; i < t.n; i++) {
        char **f = t.rows[i].f;
        const deal_t *dl = find_deal(deals, n, f[0]);
        cr_assert_not_null(dl, "truth for unknown opportunity %s", f[0]);
        int day = atoi(f[1]);
        cr_assert(day == 7 || day == 14 || day == 30 || day == 60 || day == 90 || day == 180,
                  "checkpoint day %d", day);
        int64_t asof = parse_ts(f[2]);
        cr_assert_eq(asof, dl->created + (int64_t)day * 86400, "%s as_of", f[0]);
        if (dl->closed)
            cr_assert(asof < dl->closed, "%s checkpoint %d not before the close", f[0], day);
        else
            cr_assert(asof <= now);
        double p = atof(f[3]);
        cr_assert(p >= 0 && p <= 1);
        cr_assert_str_eq(f[4], dl->outcome, "%s truth outcome", f[0]);
    }
    cr_expect(t.n > n, "fewer truth rows than deals");
    free(deals);
    table_free(&o);
    table_free(&t);
    rm_rf(d);
    free(d);
}

Test(sim, outcomes_agree_with_the_truth) {
    char *d = gen(13, 3000, NULL);
    table_t o, t;
    load(d, "opportunities.csv", &o);
    load(d, "truth.csv", &t);
    int n;
    deal_t *deals = deals_of(&o, &n);
    int won = 0, lost = 0;
    for (int i = 0; i < n; i++) {
        won += !strcmp(deals[i].outcome, "won");
        lost += !strcmp(deals[i].outcome, "lost");
    }
    double rate = (double)won / (won + lost);
    cr_expect(rate >= 0.25 && rate <= 0.40, "win rate %.3f outside 25-40 %%", rate);
    /* Mean true probability at each closed deal's last checkpoint. */
    double sw = 0, sl = 0;
    int nw = 0, nl = 0;
    for (int i = 1; i < t.n; i++) {
        char **f = t.rows[i].f;
        int last = i + 1 == t.n || strcmp(t.rows[i + 1].f[0], f[0]) != 0;
        if (!last) continue;
        if (!strcmp(f[4], "won")) {
            sw += atof(f[3]);
            nw++;
        } else if (!strcmp(f[4], "lost")) {
            sl += atof(f[3]);
            nl++;
        }
    }
    cr_assert(nw > 50 && nl > 50);
    cr_expect(sw / nw > sl / nl + 0.15, "mean p won %.3f vs lost %.3f", sw / nw, sl / nl);

    /* Calibration: on deals created in the window's first year (nearly all
     * closed by now), the mean true probability over all checkpoints is the
     * observed win rate. */
    qsort(deals, (size_t)n, sizeof(deal_t), cmp_deal);
    int64_t cutoff = parse_ts(NOW) - 365LL * 86400;
    double sp = 0;
    int rows = 0, wins = 0;
    for (int i = 1; i < t.n; i++) {
        char **f = t.rows[i].f;
        const deal_t *dl = find_deal(deals, n, f[0]);
        if (dl->created >= cutoff || !strcmp(f[4], "open")) continue;
        sp += atof(f[3]);
        wins += !strcmp(f[4], "won");
        rows++;
    }
    cr_assert(rows > 1000);
    cr_expect(fabs(sp / rows - (double)wins / rows) < 0.04, "mean truth %.3f vs win rate %.3f", sp / rows,
              (double)wins / rows);
    free(deals);
    table_free(&o);
    table_free(&t);
    rm_rf(d);
    free(d);
}

typedef struct {
    double p;
    int won;
} scored_t;

static int cmp_scored(const void *a, const void *b) {
    double x = ((const scored_t *)a)->p, y = ((const scored_t *)b)->p;
    return (x > y) - (x < y);
}

/* ROC AUC by ranks (ties share their mean rank). */
static double auc_of(scored_t *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_scored);
    double rank_sum = 0;
    int npos = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && v[j].p == v[i].p) j++;
        for (int k = i; k < j; k++)
            if (v[k].won) rank_sum += (i + j + 1) / 2.0, npos++;
        i = j;
    }
    return (rank_sum - npos * (npos + 1) / 2.0) / ((double)npos * (n - npos));
}

Test(sim, oracle_without_the_noise_terms_ranks_between_chance_and_the_truth) {
    char *d = gen(13, 3000, NULL);
    table_t t;
    load(d, "truth.csv", &t);
    scored_t *truth = calloc((size_t)t.n, sizeof *truth), *oracle = calloc((size_t)t.n, sizeof *oracle);
    int n = 0;
    double gap = 0;
    for (int i = 1; i < t.n; i++) {
        char **f = t.rows[i].f;
        if (!strcmp(f[4], "open")) continue;
        double pt = atof(f[3]), po = atof(f[5]);
        cr_assert(po > 0 && po < 1, "oracle_proba %s", f[5]);
        gap += fabs(pt - po);
        int won = !strcmp(f[4], "won");
        truth[n] = (scored_t){pt, won};
        oracle[n++] = (scored_t){po, won};
    }
    cr_assert(n > 1000);
    double auc_truth = auc_of(truth, n), auc_oracle = auc_of(oracle, n);
    cr_expect(auc_oracle > 0.70 && auc_oracle < auc_truth - 0.02, "oracle AUC %.3f, truth AUC %.3f",
              auc_oracle, auc_truth);
    cr_expect(gap / n > 0.02, "oracle within %.4f of the truth on average", gap / n);
    free(truth);
    free(oracle);
    table_free(&t);
    rm_rf(d);
    free(d);
}

Test(sim, transcripts_carry_positive_and_negated_meddicc_cues) {
    char *d = gen(17, 800, NULL);
    table_t t;
    load(d, "transcripts.csv", &t);
    static const char *const negated[] = {
        "haven't identified a champion yet", "no budget yet",        "don't know who signs off",
        "haven't talked to procurement",     "no business case yet", "no timeline for a decision",
    };
    int neg = 0, champion = 0, multiline = 0;
    int ctext = col(&t, "text");
    for (int i = 1; i < t.n; i++) {
        const char *x = t.rows[i].f[ctext];
        for (size_t k = 0; k < sizeof(negated) / sizeof(negated[0]); k++)
            if (strcasestr(x, negated[k])) neg++;
        if (strstr(x, "is our champion") || strstr(x, "internal advocate")) champion++;
        if (strchr(x, '\n')) multiline++;
    }
    cr_expect(neg > 10, "only %d negated MEDDICC sentences", neg);
    cr_expect(champion > 5, "only %d champion mentions", champion);
    cr_expect(multiline > 10, "only %d multi-line transcripts", multiline);
    table_free(&t);
    rm_rf(d);
    free(d);
}

/* A deal's calls are with its own buying committee: at most 5 people, one
 * at first and more as the economic buyer, champion, decision process and
 * paperwork come in, so deals with several calls differ in how many
 * people they engaged. */
Test(sim, calls_are_with_the_deals_own_few_buyer_contacts) {
    char *d = gen(17, 800, NULL);
    table_t t;
    load(d, "transcripts.csv", &t);
    int copp = col(&t, "opportunity_external_id"), ctext = col(&t, "text");
    enum { MAXN = 8 };
    int single = 0, several = 0, deals = 0, most = 0;
    for (int i = 1; i < t.n;) {
        const char *opp = t.rows[i].f[copp];
        char names[MAXN * 4][32];
        int n = 0, calls = 0;
        for (; i < t.n && strcmp(t.rows[i].f[copp], opp) == 0; i++, calls++) {
            for (const char *x = t.rows[i].f[ctext]; x && *x;) {
                const char *colon = strchr(x, ':'), *eol = strchr(x, '\n');
                if (colon && (!eol || colon < eol) && strncmp(x, "Rep:", 4) != 0) {
                    char who[32];
                    snprintf(who, sizeof who, "%.*s", (int)(colon - x), x);
                    int seen = 0;
                    for (int k = 0; k < n; k++) seen |= strcmp(names[k], who) == 0;
                    if (!seen && n < MAXN * 4) snprintf(names[n++], sizeof names[0], "%s", who);
                }
                x = eol ? eol + 1 : NULL;
            }
        }
        deals++;
        if (n > most) most = n;
        if (calls >= 3 && n == 1) single++;
        if (calls >= 3 && n >= 2) several++;
    }
    cr_expect_leq(most, 5, "a committee has 5 people");
    cr_expect_gt(single, 20, "%d of %d deals with 3 calls or more had one contact on all", single, deals);
    cr_expect_gt(several, 20, "%d of %d deals with 3 calls or more had several contacts", several, deals);
    table_free(&t);
    rm_rf(d);
    free(d);
}

Test(sim, orgs_get_their_own_directories) {
    char *d = gen(21, 200, "--orgs 2");
    size_t l1, l2;
    char *a = slurp(d, "org1/opportunities.csv", &l1);
    char *b = slurp(d, "org2/opportunities.csv", &l2);
    cr_expect(l1 != l2 || memcmp(a, b, l1) != 0, "two orgs got the same data");
    free(a);
    free(b);
    rm_rf(d);
    free(d);
}

Test(sim, bad_usage_exits_2_with_one_line_naming_the_option) {
    char *d = tmpdir_new();
    char err[512], args[1024];
    snprintf(err, sizeof(err), "%s/err.txt", d);
    struct {
        const char *args, *needle;
    } cases[] = {
        {"--opportunities abc --out /tmp/x", "--opportunities"},
        {"--seed -1 --out /tmp/x", "--seed"},
        {"--now yesterday --out /tmp/x", "--now"},
        {"--bogus 1 --out /tmp/x", "--bogus"},
        {"--seed 1", "--out"},
        {"--out /tmp/x --days", "--days"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(args, sizeof(args), "%s", cases[i].args);
        cr_expect_eq(run_sim(args, err), 2, "'%s' should exit 2", args);
        char *msg = slurp(d, "err.txt", NULL);
        cr_expect(strstr(msg, cases[i].needle) != NULL, "'%s': message '%s' lacks %s", args, msg,
                  cases[i].needle);
        char *nl = strchr(msg, '\n');
        cr_expect(nl && nl[1] == '\0', "'%s': message is not one line: %s", args, msg);
        free(msg);
    }
    cr_expect_eq(run_sim("--help", NULL), 0);
    rm_rf(d);
    free(d);
}

/* ---- stream mode against a tiny local listener ------------------------- */

typedef struct {
    int lfd;
    pthread_mutex_t mu;
    int requests, bad_auth, bad_body, records;
    int by_path[4]; /* accounts, opportunities, interactions, transcripts */
    int meta_objects;
} listener_t;

typedef struct {
    listener_t *l;
    int fd;
} conn_arg_t;

static void *serve_conn(void *arg) {
    conn_arg_t *ca = arg;
    listener_t *l = ca->l;
    int fd = ca->fd;
    free(ca);
    static const char *const paths[4] = {
        "/v1/accounts",
        "/v1/opportunities",
        "/v1/interactions",
        "/v1/transcripts",
    };
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        char *hend;
        while (!(len > 0 && (hend = memmem(buf, len, "\r\n\r\n", 4)))) {
            if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
            ssize_t r = recv(fd, buf + len, cap - len, 0);
            if (r <= 0) goto done;
            len += (size_t)r;
        }
        size_t hl = (size_t)(hend - buf) + 4;
        buf[hl - 1] = '\0';
        char *cl = strcasestr(buf, "content-length:");
        size_t blen = cl ? (size_t)strtol(cl + 15, NULL, 10) : 0;
        while (len < hl + blen) {
            if (hl + blen > cap) buf = realloc(buf, cap = hl + blen + 4096);
            ssize_t r = recv(fd, buf + len, cap - len, 0);
            if (r <= 0) goto done;
            len += (size_t)r;
        }
        int path = -1;
        for (int i = 0; i < 4; i++) {
            char want[64];
            snprintf(want, sizeof(want), "POST %s HTTP/1.1\r\n", paths[i]);
            if (!strncmp(buf, want, strlen(want))) path = i;
        }
        int auth = strstr(buf, "\r\nAuthorization: Bearer s3cret\r\n") != NULL;
        json_error_t jerr;
        json_t *body = json_loadb(buf + hl, blen, 0, &jerr);
        int ok_body = body && json_is_array(body) && json_array_size(body) > 0;
        int nrec = 0, metas = 0;
        size_t idx;
        json_t *rec;
        json_array_foreach(body, idx, rec) {
            if (!json_is_object(rec) || !json_is_string(json_object_get(rec, "external_id"))) ok_body = 0;
            if (json_is_object(json_object_get(rec, "meta"))) metas++;
            nrec++;
        }
        json_decref(body);
        pthread_mutex_lock(&l->mu);
        l->requests++;
        l->bad_auth += !auth;
        l->bad_body += !ok_body || path < 0;
        l->records += nrec;
        l->meta_objects += metas;
        if (path >= 0) l->by_path[path]++;
        pthread_mutex_unlock(&l->mu);
        static const char resp[] = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
        if (send(fd, resp, sizeof(resp) - 1, MSG_NOSIGNAL) < 0) break;
        memmove(buf, buf + hl + blen, len - hl - blen);
        len -= hl + blen;
    }
done:
    free(buf);
    close(fd);
    return NULL;
}

static void *accept_loop(void *arg) {
    listener_t *l = arg;
    for (;;) {
        int fd = accept(l->lfd, NULL, NULL);
        if (fd < 0) return NULL;
        conn_arg_t *ca = malloc(sizeof(*ca));
        ca->l = l;
        ca->fd = fd;
        pthread_t t;
        pthread_create(&t, NULL, serve_conn, ca);
        pthread_detach(t);
    }
}

static void stream_run(int batch) {
    static listener_t l;
    pthread_mutex_init(&l.mu, NULL);
    l.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(l.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(l.lfd, 64), 0);
    socklen_t sl = sizeof(sa);
    getsockname(l.lfd, (struct sockaddr *)&sa, &sl);
    pthread_t t;
    pthread_create(&t, NULL, accept_loop, &l);

    char args[256];
    snprintf(args, sizeof(args),
             "--stream http://127.0.0.1:%d/ --token s3cret --rate 20000 --batch %d "
             "--concurrency 3 --duration 20 --opportunities 60 --seed 4",
             ntohs(sa.sin_port), batch);
    cr_assert_eq(run_sim(args, NULL), 0, "stream run failed");
    pthread_mutex_lock(&l.mu);
    cr_expect(l.requests > 10, "only %d requests", l.requests);
    cr_expect_eq(l.bad_auth, 0);
    cr_expect_eq(l.bad_body, 0, "%d requests with a bad path or body", l.bad_body);
    cr_expect(l.by_path[0] > 0 && l.by_path[1] > 0 && l.by_path[2] > 0 && l.by_path[3] > 0,
              "requests by path %d %d %d %d", l.by_path[0], l.by_path[1], l.by_path[2], l.by_path[3]);
    cr_expect(l.meta_objects > 0, "interactions carry no meta object");
    pthread_mutex_unlock(&l.mu);
    close(l.lfd);
}

Test(sim, stream_posts_json_arrays_to_the_webhooks) { stream_run(25); }

/* Regression: a batch smaller than a deal's records split it across many
 * requests, and the batch list moved under a pointer to its open batch. */
Test(sim, stream_splits_deals_larger_than_a_batch) { stream_run(3); }

Test(sim, stream_reports_an_unreachable_server) {
    char *d = tmpdir_new();
    char err[512];
    snprintf(err, sizeof(err), "%s/err.txt", d);
    /* Port 1 on loopback: nothing listens there. */
    cr_expect_eq(run_sim("--stream http://127.0.0.1:1 --token x --duration 1", err), 1);
    char *msg = slurp(d, "err.txt", NULL);
    cr_expect(strstr(msg, "could not connect") != NULL, "message: %s", msg);
    free(msg);
    unsetenv("DEALSCORE_INGEST_TOKEN");
    cr_expect_eq(run_sim("--stream http://127.0.0.1:1", NULL), 2, "missing --token is usage");
    rm_rf(d);
    free(d);
}
