/* The point-in-time feature engine (definitions and rules in features.h). */
#include "domain/features.h"
#include "base/common.h"
#include "base/sb.h"
#include "base/strindex.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- catalog ------------------------------------------------------------------ */

typedef struct {
    const char *name, *family, *unit, *label, *missing;
} feature_def_t;

static const feature_def_t feature_defs[DS_FEATURE_COUNT] = {
#define DEF(id, name, family, unit, label, missing) {name, family, unit, label, missing},
    DS_FEATURES(DEF)
#undef DEF
};

const char *ds_feature_name(int id) {
    if (id < 0 || id >= DS_FEATURE_COUNT) return NULL;
    return feature_defs[id].name;
}

const char *ds_feature_label(int id) {
    if (id < 0 || id >= DS_FEATURE_COUNT) return NULL;
    return feature_defs[id].label;
}

/* Name -> id, built once: the scoring worker looks up every feature of
 * every event and of every previous score by name (a linear search was
 * 9 % of its CPU). Read-only once built, so shared by every thread. */
static ds_strindex_t feature_ids;
static pthread_once_t feature_ids_once = PTHREAD_ONCE_INIT;

static void feature_ids_build(void) {
    ds_strindex_init(&feature_ids, DS_FEATURE_COUNT);
    for (int i = 0; i < DS_FEATURE_COUNT; i++) ds_strindex_add(&feature_ids, feature_defs[i].name, i);
}

int ds_feature_index(const char *name) {
    if (!name) return -1;
    pthread_once(&feature_ids_once, feature_ids_build);
    return ds_strindex_find(&feature_ids, name);
}

static inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static inline bool ascii_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static inline bool ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

double ds_feature_category_code(const char *value) {
    if (!value) return NAN;
    /* FNV-1a over the normalized bytes, normalizing on the fly. */
    uint64_t h = 0xcbf29ce484222325ULL;
    const uint64_t prime = 0x100000001b3ULL;
    bool any = false, pending_space = false;
    for (const char *p = value; *p; p++) {
        char c = *p;
        if (ascii_space(c) || c == '_' || c == '-') {
            pending_space = any;
            continue;
        }
        if (pending_space) {
            h = (h ^ (uint8_t)' ') * prime;
            pending_space = false;
        }
        h = (h ^ (uint8_t)ascii_lower(c)) * prime;
        any = true;
    }
    if (!any) return NAN;
    return (double)(h >> 40);
}

/* ---- stage order -------------------------------------------------------------- */

struct ds_stage_list {
    const ds_stage_def_t *defs;
    size_t n;
    char *pool;
};

#define STAGE_NAME_MAX 64

/* Normalizes a stage name into out (STAGE_NAME_MAX bytes): lowercase, each
 * run of other characters as one '_', trimmed. Returns the length, 0 when
 * empty, -1 when too long. */
static int normalize_stage(const char *in, char *out) {
    size_t n = 0;
    bool pending = false;
    for (const char *p = in; *p; p++) {
        char c = *p;
        if (!ascii_alnum(c) && !((unsigned char)c & 0x80)) {
            pending = n > 0;
            continue;
        }
        if (n + 2 >= STAGE_NAME_MAX) return -1;
        if (pending) {
            out[n++] = '_';
            pending = false;
        }
        out[n++] = ascii_lower(c);
    }
    out[n] = '\0';
    return (int)n;
}

static const ds_stage_def_t default_stage_defs[] = {
    {"prospecting", 0}, {"qualification", 1}, {"discovery", 2},  {"demo", 3},
    {"proposal", 4},    {"negotiation", 5},   {"closed_won", 6}, {"closed_lost", 6},
};
static const struct ds_stage_list default_stages = {default_stage_defs, DS_ARRAY_SIZE(default_stage_defs),
                                                    NULL};

const ds_stage_list_t *ds_stage_list_default(void) { return &default_stages; }

int ds_stage_list_new(const ds_stage_def_t *defs, size_t n, ds_stage_list_t **out, char *errstr,
                      size_t errstr_size) {
    char norm[STAGE_NAME_MAX];
    ds_stage_list_t *sl = ds_calloc(1, sizeof *sl);
    ds_stage_def_t *out_defs = ds_calloc(n, sizeof *out_defs);
    sl->defs = out_defs;
    sl->pool = ds_malloc(n * STAGE_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        int len = defs[i].name ? normalize_stage(defs[i].name, norm) : 0;
        if (len <= 0) {
            snprintf(errstr, errstr_size, "stage %zu: %s name", i + 1, len < 0 ? "too long a" : "empty");
            goto fail;
        }
        if (defs[i].index < 0) {
            snprintf(errstr, errstr_size, "stage %s: negative index %d", norm, defs[i].index);
            goto fail;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(out_defs[j].name, norm) == 0) {
                snprintf(errstr, errstr_size, "stage %s listed twice", norm);
                goto fail;
            }
        }
        char *name = sl->pool + i * STAGE_NAME_MAX;
        memcpy(name, norm, (size_t)len + 1);
        out_defs[i].name = name;
        out_defs[i].index = defs[i].index;
        sl->n = i + 1;
    }
    *out = sl;
    return DS_OK;
fail:
    free(sl->pool);
    free(out_defs);
    free(sl);
    return DS_EINVAL;
}

void ds_stage_list_destroy(ds_stage_list_t *stages) {
    if (!stages || stages == &default_stages) return;
    free(stages->pool);
    free((void *)stages->defs);
    free(stages);
}

static int stage_index_norm(const ds_stage_list_t *sl, const char *norm) {
    for (size_t i = 0; i < sl->n; i++)
        if (strcmp(sl->defs[i].name, norm) == 0) return sl->defs[i].index;
    return -1;
}

int ds_stage_list_index(const ds_stage_list_t *stages, const char *stage) {
    char norm[STAGE_NAME_MAX];
    if (!stages || !stage || normalize_stage(stage, norm) <= 0) return -1;
    return stage_index_norm(stages, norm);
}

int ds_stage_list_max_index(const ds_stage_list_t *stages) {
    int max = 0;
    for (size_t i = 0; stages && i < stages->n; i++)
        if (stages->defs[i].index > max) max = stages->defs[i].index;
    return max;
}

const char *ds_stage_list_name(const ds_stage_list_t *stages, int index) {
    for (size_t i = 0; stages && i < stages->n; i++)
        if (stages->defs[i].index == index) return stages->defs[i].name;
    return NULL;
}

const char *ds_stage_list_at(const ds_stage_list_t *stages, size_t i, int *index) {
    if (!stages || i >= stages->n) return NULL;
    *index = stages->defs[i].index;
    return stages->defs[i].name;
}

/* ---- prior win rates ----------------------------------------------------------- */

/* Monday-to-Friday (UTC) microseconds from 1970-01-01, a Thursday, to t
 * (negative before it). */
static double weekday_us_before(int64_t t) {
    static const int prefix[8] = {0, 1, 2, 2, 2, 3, 4, 5}; /* Thu Fri Sat Sun Mon Tue Wed */
    int64_t day = t >= 0 ? t / DS_US_PER_DAY : -((-t + DS_US_PER_DAY - 1) / DS_US_PER_DAY);
    int64_t rem = t - day * DS_US_PER_DAY;
    int64_t weeks = day >= 0 ? day / 7 : -((-day + 6) / 7);
    int dow = (int)(day - weeks * 7); /* 0 = Thursday */
    double full = (double)(weeks * 5 + prefix[dow]) * (double)DS_US_PER_DAY;
    return full + (dow <= 1 || dow >= 4 ? (double)rem : 0.0);
}

/* Working days (Monday to Friday, UTC) between a and b, fractional. */
static double workdays_between(int64_t a, int64_t b) {
    if (b <= a) return 0.0;
    return (weekday_us_before(b) - weekday_us_before(a)) / (double)DS_US_PER_DAY;
}

typedef struct {
    const char *id; /* in the context's pool */
    int64_t at;
    bool won;
    double log_amount; /* NaN when the amount is unknown or not > 0 */
    bool active;       /* the activity below is known */
    double workdays;   /* Monday to Friday between creation and close */
    uint32_t interactions, answered, asked;
} wr_entry_t;

/* Running sums of the deals' activity (those with it) among [0, i). */
typedef struct {
    double workdays;
    uint32_t deals, interactions, answered, asked;
} wr_activity_t;

/* Deals grouped by key (account or owner), each group sorted by time, with
 * a running count of wins so "wins before t" is two lookups. */
typedef struct {
    const char **keys;   /* distinct ids, sorted */
    uint32_t *key_start; /* n_keys + 1 offsets into at/cum_wins */
    size_t n_keys;
    int64_t *at;                 /* closed_at per deal */
    uint32_t *cum_wins;          /* n + 1: wins among the deals [0, i) */
    double *cum_log_amount;      /* n + 1: sum of the known ln(amount) among [0, i) */
    uint32_t *cum_amounts;       /* n + 1: deals with a known amount among [0, i) */
    wr_activity_t *cum_activity; /* n + 1; NULL in the indexes that do not need it */
    size_t n;
} wr_index_t;

struct ds_winrate_ctx {
    double m;
    wr_index_t org, account, owner, segment, cohort;
    char *pool;
};

static int entry_cmp(const void *a, const void *b) {
    const wr_entry_t *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c) return c;
    if (x->at != y->at) return x->at < y->at ? -1 : 1;
    return (int)x->won - (int)y->won;
}

/* Builds an index from entries (sorted here, in place). */
static void wr_index_build(wr_index_t *ix, wr_entry_t *e, size_t n, bool with_activity) {
    qsort(e, n, sizeof *e, entry_cmp);
    ix->n = n;
    ix->at = ds_malloc(n * sizeof *ix->at);
    ix->cum_wins = ds_malloc((n + 1) * sizeof *ix->cum_wins);
    ix->cum_log_amount = ds_malloc((n + 1) * sizeof *ix->cum_log_amount);
    ix->cum_amounts = ds_malloc((n + 1) * sizeof *ix->cum_amounts);
    ix->cum_activity = with_activity ? ds_calloc(n + 1, sizeof *ix->cum_activity) : NULL;
    ix->keys = ds_malloc(n * sizeof *ix->keys);
    ix->key_start = ds_malloc((n + 1) * sizeof *ix->key_start);
    ix->n_keys = 0;
    ix->cum_wins[0] = 0;
    ix->cum_log_amount[0] = 0;
    ix->cum_amounts[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(e[i].id, e[i - 1].id) != 0) {
            ix->keys[ix->n_keys] = e[i].id;
            ix->key_start[ix->n_keys++] = (uint32_t)i;
        }
        ix->at[i] = e[i].at;
        ix->cum_wins[i + 1] = ix->cum_wins[i] + e[i].won;
        bool known = !isnan(e[i].log_amount);
        ix->cum_log_amount[i + 1] = ix->cum_log_amount[i] + (known ? e[i].log_amount : 0);
        ix->cum_amounts[i + 1] = ix->cum_amounts[i] + known;
        if (ix->cum_activity) {
            wr_activity_t *a = &ix->cum_activity[i + 1];
            *a = ix->cum_activity[i];
            if (e[i].active) {
                a->deals++;
                a->workdays += e[i].workdays;
                a->interactions += e[i].interactions;
                a->answered += e[i].answered;
                a->asked += e[i].asked;
            }
        }
    }
    ix->key_start[ix->n_keys] = (uint32_t)n;
}

static void wr_index_free(wr_index_t *ix) {
    free(ix->keys);
    free(ix->key_start);
    free(ix->at);
    free(ix->cum_wins);
    free(ix->cum_log_amount);
    free(ix->cum_amounts);
    free(ix->cum_activity);
}

/* First index in [lo, hi) with at[i] >= t. */
static size_t lower_bound_time(const int64_t *at, size_t lo, size_t hi, int64_t t) {
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The deals of key closed before t: entries [*from, *to) of the index;
 * false when the key is unknown. */
static bool wr_index_range(const wr_index_t *ix, const char *key, int64_t t, size_t *from, size_t *to) {
    size_t lo = 0, hi = ix->n_keys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ix->keys[mid], key);
        if (c == 0) {
            *from = ix->key_start[mid];
            *to = lower_bound_time(ix->at, *from, ix->key_start[mid + 1], t);
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Wins and closed deals of key before t; false when the key is unknown. */
static bool wr_index_count(const wr_index_t *ix, const char *key, int64_t t, uint32_t *wins,
                           uint32_t *closed) {
    size_t s, k;
    if (!wr_index_range(ix, key, t, &s, &k)) return false;
    *wins = ix->cum_wins[k] - ix->cum_wins[s];
    *closed = (uint32_t)(k - s);
    return true;
}

/* "a\x1fb" into buf (size pairs_len(a, b)); false when a or b is NULL or empty. */
#define PAIR_SEP '\x1f'
static size_t pair_len(const char *a, const char *b) {
    return a && *a && b && *b ? strlen(a) + strlen(b) + 2 : 0;
}

static char *pair_put(char *out, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    memcpy(out, a, la);
    out[la] = PAIR_SEP;
    memcpy(out + la + 1, b, lb + 1);
    return out + la + lb + 2;
}

/* The entry of deal d under key. */
static wr_entry_t wr_entry(const char *key, const ds_closed_deal_t *d, double log_amount) {
    bool active = d->has_activity && d->created_at_us != DS_TIME_NONE && d->created_at_us <= d->closed_at_us;
    if (!active) return (wr_entry_t){key, d->closed_at_us, d->won, log_amount, false, 0, 0, 0, 0};
    return (wr_entry_t){key,
                        d->closed_at_us,
                        d->won,
                        log_amount,
                        true,
                        workdays_between(d->created_at_us, d->closed_at_us),
                        d->interactions,
                        d->emails_answered,
                        d->emails_asked};
}

/* Copies id into the pool at *pp and adds its entry; nothing for an empty id. */
static void wr_add(wr_entry_t *e, size_t *ne, char **pp, const char *id, const ds_closed_deal_t *d,
                   double log_amount) {
    if (!id || !*id) return;
    size_t len = strlen(id) + 1;
    memcpy(*pp, id, len);
    e[(*ne)++] = wr_entry(*pp, d, log_amount);
    *pp += len;
}

/* Adds the entry keyed by the pair (a, b); nothing when either is empty. */
static void wr_add_pair(wr_entry_t *e, size_t *ne, char **pp, const char *a, const char *b,
                        const ds_closed_deal_t *d, double log_amount) {
    if (!pair_len(a, b)) return;
    char *key = *pp;
    *pp = pair_put(key, a, b);
    e[(*ne)++] = wr_entry(key, d, log_amount);
}

int ds_winrate_ctx_new(const ds_closed_deal_t *deals, size_t n, double smoothing, ds_winrate_ctx_t **out) {
    if (!isfinite(smoothing) || smoothing < 0 || (n > 0 && !deals)) return DS_EINVAL;
    if (n > UINT32_MAX) return DS_EINVAL;
    size_t pool_size = 1, n_org = 0;
    for (size_t i = 0; i < n; i++) {
        const ds_closed_deal_t *d = &deals[i];
        if (d->closed_at_us == DS_TIME_NONE) continue;
        n_org++;
        if (d->account_id) pool_size += strlen(d->account_id) + 1;
        if (d->owner_id) pool_size += strlen(d->owner_id) + 1;
        pool_size += pair_len(d->industry, d->product_category) + pair_len(d->size_band, d->product_category);
    }
    ds_winrate_ctx_t *wr = ds_calloc(1, sizeof *wr);
    wr->m = smoothing;
    wr->pool = ds_malloc(pool_size);
    wr_entry_t *e[5];
    size_t ne[5] = {0};
    for (int k = 0; k < 5; k++) e[k] = ds_malloc((n_org + 1) * sizeof *e[k]);
    char *pp = wr->pool;
    *pp++ = '\0'; /* the org index uses "" as its one key */
    for (size_t i = 0; i < n; i++) {
        const ds_closed_deal_t *d = &deals[i];
        if (d->closed_at_us == DS_TIME_NONE) continue;
        double la = isfinite(d->amount) && d->amount > 0 ? log(d->amount) : NAN;
        e[0][ne[0]++] = wr_entry(wr->pool, d, la);
        wr_add(e[1], &ne[1], &pp, d->account_id, d, la);
        wr_add(e[2], &ne[2], &pp, d->owner_id, d, la);
        wr_add_pair(e[3], &ne[3], &pp, d->industry, d->product_category, d, la);
        wr_add_pair(e[4], &ne[4], &pp, d->size_band, d->product_category, d, la);
    }
    wr_index_t *ix[5] = {&wr->org, &wr->account, &wr->owner, &wr->segment, &wr->cohort};
    for (int k = 0; k < 5; k++) {
        wr_index_build(ix[k], e[k], ne[k], k < 3); /* org, account, owner: engagement */
        free(e[k]);
    }
    *out = wr;
    return DS_OK;
}

void ds_winrate_ctx_destroy(ds_winrate_ctx_t *wr) {
    if (!wr) return;
    wr_index_free(&wr->org);
    wr_index_free(&wr->account);
    wr_index_free(&wr->owner);
    wr_index_free(&wr->segment);
    wr_index_free(&wr->cohort);
    free(wr->pool);
    free(wr);
}

void ds_winrate_org(const ds_winrate_ctx_t *wr, int64_t before_us, ds_winrate_t *out) {
    size_t k = lower_bound_time(wr->org.at, 0, wr->org.n, before_us);
    out->wins = wr->org.cum_wins[k];
    out->closed = (uint32_t)k;
    out->rate = (out->wins + 1.0) / (out->closed + 2.0);
}

static int winrate_key(const ds_winrate_ctx_t *wr, const wr_index_t *ix, const char *id, int64_t before_us,
                       ds_winrate_t *out) {
    if (!id || !*id) return DS_EINVAL;
    ds_winrate_t org;
    ds_winrate_org(wr, before_us, &org);
    uint32_t wins = 0, closed = 0;
    (void)wr_index_count(ix, id, before_us, &wins, &closed);
    out->wins = wins;
    out->closed = closed;
    if (closed == 0 && wr->m == 0)
        out->rate = org.rate;
    else
        out->rate = (wins + wr->m * org.rate) / (closed + wr->m);
    return DS_OK;
}

int ds_winrate_account(const ds_winrate_ctx_t *wr, const char *account_id, int64_t before_us,
                       ds_winrate_t *out) {
    return winrate_key(wr, &wr->account, account_id, before_us, out);
}

int ds_winrate_owner(const ds_winrate_ctx_t *wr, const char *owner_id, int64_t before_us, ds_winrate_t *out) {
    return winrate_key(wr, &wr->owner, owner_id, before_us, out);
}

int ds_winrate_segment(const ds_winrate_ctx_t *wr, const char *industry, const char *product_category,
                       int64_t before_us, ds_winrate_t *out) {
    size_t len = pair_len(industry, product_category);
    if (!len) return DS_EINVAL;
    char small[256], *key = len <= sizeof small ? small : ds_malloc(len);
    pair_put(key, industry, product_category);
    int rc = winrate_key(wr, &wr->segment, key, before_us, out);
    if (key != small) free(key);
    return rc;
}

int ds_amount_cohort(const ds_winrate_ctx_t *wr, const char *size_band, const char *product_category,
                     int64_t before_us, double *mean_log, uint32_t *n) {
    size_t len = pair_len(size_band, product_category);
    if (!len) return DS_EINVAL;
    char small[256], *key = len <= sizeof small ? small : ds_malloc(len);
    pair_put(key, size_band, product_category);
    size_t from = 0, to = 0;
    const wr_index_t *ix = &wr->cohort;
    (void)wr_index_range(ix, key, before_us, &from, &to);
    if (key != small) free(key);
    *n = ix->cum_amounts[to] - ix->cum_amounts[from];
    *mean_log = *n ? (ix->cum_log_amount[to] - ix->cum_log_amount[from]) / *n : NAN;
    return DS_OK;
}

static void engagement_sums(const wr_index_t *ix, size_t from, size_t to, ds_engagement_t *out) {
    const wr_activity_t *a = &ix->cum_activity[from], *b = &ix->cum_activity[to];
    out->deals = b->deals - a->deals;
    out->workdays = b->workdays - a->workdays;
    out->interactions = b->interactions - a->interactions;
    out->answered = b->answered - a->answered;
    out->asked = b->asked - a->asked;
}

void ds_engagement_org(const ds_winrate_ctx_t *wr, int64_t before_us, ds_engagement_t *out) {
    engagement_sums(&wr->org, 0, lower_bound_time(wr->org.at, 0, wr->org.n, before_us), out);
    out->activity_rate = (out->interactions + 1.0) / (out->workdays + 1.0);
    out->reply_rate = (out->answered + 1.0) / (out->asked + 2.0);
}

static int engagement_key(const ds_winrate_ctx_t *wr, const wr_index_t *ix, const char *id, int64_t before_us,
                          ds_engagement_t *out) {
    if (!id || !*id) return DS_EINVAL;
    ds_engagement_t org;
    ds_engagement_org(wr, before_us, &org);
    size_t from = 0, to = 0;
    (void)wr_index_range(ix, id, before_us, &from, &to);
    engagement_sums(ix, from, to, out);
    out->activity_rate = (out->interactions + DS_ENGAGEMENT_WORKDAYS * org.activity_rate) /
                         (out->workdays + DS_ENGAGEMENT_WORKDAYS);
    out->reply_rate =
        (out->answered + DS_ENGAGEMENT_EMAILS * org.reply_rate) / (out->asked + DS_ENGAGEMENT_EMAILS);
    return DS_OK;
}

int ds_engagement_account(const ds_winrate_ctx_t *wr, const char *account_id, int64_t before_us,
                          ds_engagement_t *out) {
    return engagement_key(wr, &wr->account, account_id, before_us, out);
}

int ds_engagement_owner(const ds_winrate_ctx_t *wr, const char *owner_id, int64_t before_us,
                        ds_engagement_t *out) {
    return engagement_key(wr, &wr->owner, owner_id, before_us, out);
}

/* ---- raw input helpers ----------------------------------------------------------- */

static int parse_hist_value(ds_hist_field_t field, const char *text, ds_hist_value_t *out) {
    *out = (ds_hist_value_t){NULL, NAN, DS_TIME_NONE};
    if (!text || !*text) return DS_OK;
    switch (field) {
    case DS_HIST_STAGE: out->stage = text; return DS_OK;
    case DS_HIST_AMOUNT: {
        char *end;
        double v = strtod(text, &end);
        while (ascii_space(*end)) end++;
        if (end == text || *end || !isfinite(v)) return DS_EINVAL;
        out->amount = v;
        return DS_OK;
    }
    case DS_HIST_CLOSE_DATE: return ds_parse_time_us(text, &out->close_date_us) == DS_OK ? DS_OK : DS_EINVAL;
    default: return DS_OK;
    }
}

int ds_opp_history_set(ds_opp_history_t *row, const char *field, const char *old_value, const char *new_value,
                       int64_t changed_at_us) {
    if (!row || !field) return DS_EINVAL;
    ds_opp_history_t r = {.changed_at_us = changed_at_us};
    if (strcmp(field, "stage") == 0)
        r.field = DS_HIST_STAGE;
    else if (strcmp(field, "amount") == 0)
        r.field = DS_HIST_AMOUNT;
    else if (strcmp(field, "close_date") == 0)
        r.field = DS_HIST_CLOSE_DATE;
    else if (strcmp(field, "outcome") == 0)
        r.field = DS_HIST_IGNORED;
    else
        return DS_EINVAL;
    if (parse_hist_value(r.field, old_value, &r.old_value) != DS_OK ||
        parse_hist_value(r.field, new_value, &r.new_value) != DS_OK)
        return DS_EINVAL;
    *row = r;
    return DS_OK;
}

ds_interaction_answer_t ds_interaction_answer_parse(const char *outcome) {
    static const char *const yes[] = {"replied", "answered", "connected", "held", "completed"};
    static const char *const no[] = {"no_reply",  "unanswered", "no_answer",
                                     "voicemail", "no_show",    "bounced"};
    char norm[16];
    size_t n = 0;
    if (!outcome) return DS_ANSWER_NONE;
    for (; outcome[n] && n < sizeof norm - 1; n++) {
        char c = ascii_lower(outcome[n]);
        norm[n] = c == ' ' || c == '-' ? '_' : c;
    }
    if (outcome[n]) return DS_ANSWER_NONE; /* longer than any known outcome */
    norm[n] = '\0';
    for (size_t i = 0; i < DS_ARRAY_SIZE(yes); i++)
        if (!strcmp(norm, yes[i])) return DS_ANSWER_YES;
    for (size_t i = 0; i < DS_ARRAY_SIZE(no); i++)
        if (!strcmp(norm, no[i])) return DS_ANSWER_NO;
    return DS_ANSWER_NONE;
}

ds_interaction_type_t ds_interaction_type_parse(const char *type) {
    static const char *const names[] = {"email", "phone", "meeting", "demo", "support"};
    if (!type) return DS_INTERACTION_OTHER;
    for (size_t i = 0; i < DS_ARRAY_SIZE(names); i++)
        if (strcasecmp(type, names[i]) == 0) return (ds_interaction_type_t)i;
    return DS_INTERACTION_OTHER;
}

void ds_opp_raw_init(ds_opp_raw_t *raw) {
    memset(raw, 0, sizeof *raw);
    raw->created_at_us = DS_TIME_NONE;
    raw->amount = NAN;
    raw->close_date_us = DS_TIME_NONE;
    raw->changed_at_us = DS_TIME_NONE;
    raw->outcome = DS_OUTCOME_OPEN;
    raw->closed_at_us = DS_TIME_NONE;
    raw->stage_probability = NAN;
}

/* ---- the engine ------------------------------------------------------------------ */

/* Days from earlier to later, rounded (half away from zero) to a millionth
 * of a day (86.4 ms), so values are short decimals that print and read
 * back exactly. */
static inline double days_between(int64_t later, int64_t earlier) {
    const int64_t unit = DS_US_PER_DAY / 1000000; /* 86400 us */
    int64_t d = later - earlier;
    int64_t q = d >= 0 ? (d + unit / 2) / unit : -((-d + unit / 2) / unit);
    return (double)q / 1e6;
}

/* Sorts idx[0..n) by key[idx[i]] ascending, ties by index (stable). The
 * arrays are small and usually already in order, so insertion sort wins;
 * long ones fall back to qsort. */
typedef struct {
    int64_t t;
    size_t i;
} tkey_t;

static int tkey_cmp(const void *a, const void *b) {
    const tkey_t *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->i < y->i ? -1 : (x->i > y->i);
}

static void sort_tkeys(tkey_t *k, size_t n) {
    if (n > 64) {
        qsort(k, n, sizeof *k, tkey_cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        tkey_t v = k[i];
        size_t j = i;
        while (j > 0 && tkey_cmp(&k[j - 1], &v) > 0) {
            k[j] = k[j - 1];
            j--;
        }
        k[j] = v;
    }
}

#define SMALL_N 128

/* A stage as the engine compares it: normalized name and list index. */
typedef struct {
    bool known;
    int idx; /* -1 when unknown or not in the list */
    char norm[STAGE_NAME_MAX];
} stage_val_t;

static void stage_val(const ds_stage_list_t *stages, const char *name, stage_val_t *out) {
    out->known = name && normalize_stage(name, out->norm) > 0;
    if (!out->known) out->norm[0] = '\0';
    out->idx = out->known ? stage_index_norm(stages, out->norm) : -1;
}

static bool stage_same(const stage_val_t *a, const stage_val_t *b) {
    return a->known == b->known && strcmp(a->norm, b->norm) == 0;
}

/* Sets the temporal features and *amount_now, the amount in force at as_of
 * (NaN when unknown). */
static void temporal_features(const ds_opp_raw_t *raw, int64_t as_of, double *v, double *amount_now) {
    const ds_stage_list_t *stages = raw->stages ? raw->stages : ds_stage_list_default();
    const int64_t created = raw->created_at_us;

    /* Every usable row in time order (ties keep array order). */
    tkey_t small[SMALL_N];
    tkey_t *keys = raw->n_history <= SMALL_N ? small : ds_malloc(raw->n_history * sizeof *keys);
    size_t n = 0;
    for (size_t i = 0; i < raw->n_history; i++) {
        const ds_opp_history_t *h = &raw->history[i];
        if ((unsigned)h->field >= DS_HIST_IGNORED || h->changed_at_us == DS_TIME_NONE) continue;
        keys[n++] = (tkey_t){h->changed_at_us, i};
    }
    sort_tkeys(keys, n);

    /* Per field: the earliest row, past or future, gives the value in force
     * before any recorded change (its old value); then only rows at or
     * before as_of are applied. */
    bool seen[3] = {false, false, false};
    stage_val_t stage = {false, -1, ""}, next;
    int64_t entered = DS_TIME_NONE;
    int regressions = 0, pushes = 0;
    double amount = NAN, base = NAN;
    int64_t close = DS_TIME_NONE;
    for (size_t k = 0; k < n; k++) {
        const ds_opp_history_t *h = &raw->history[keys[k].i];
        bool past = h->changed_at_us <= as_of;
        bool first = !seen[h->field];
        seen[h->field] = true;
        switch (h->field) {
        case DS_HIST_STAGE:
            if (first) {
                stage_val(stages, h->old_value.stage, &stage);
                entered = stage.known ? created : DS_TIME_NONE;
            }
            if (!past) break;
            stage_val(stages, h->new_value.stage, &next);
            if (stage.idx >= 0 && next.idx >= 0 && next.idx < stage.idx) regressions++;
            if (!stage_same(&stage, &next)) entered = next.known ? h->changed_at_us : DS_TIME_NONE;
            stage = next;
            break;
        case DS_HIST_AMOUNT:
            if (first) amount = base = h->old_value.amount;
            if (!past) break;
            amount = h->new_value.amount;
            if (isnan(base)) base = amount; /* the creation row: the first known amount */
            break;
        case DS_HIST_CLOSE_DATE:
            if (first) close = h->old_value.close_date_us;
            if (!past) break;
            if (close != DS_TIME_NONE && h->new_value.close_date_us != DS_TIME_NONE &&
                h->new_value.close_date_us > close)
                pushes++;
            close = h->new_value.close_date_us;
            break;
        default: break;
        }
    }
    if (keys != small) free(keys);

    /* The current values stand in only for a field without any history,
     * and only if the row was last changed by as_of. */
    bool current_ok = raw->changed_at_us == DS_TIME_NONE || raw->changed_at_us <= as_of;
    if (!seen[DS_HIST_STAGE] && current_ok) {
        stage_val(stages, raw->stage, &stage);
        entered = stage.known ? created : DS_TIME_NONE;
    }
    if (!seen[DS_HIST_AMOUNT] && current_ok) amount = base = raw->amount;
    if (!seen[DS_HIST_CLOSE_DATE] && current_ok) close = raw->close_date_us;

    v[DS_F_DAYS_OPEN] = created == DS_TIME_NONE ? NAN : days_between(as_of, created);
    v[DS_F_DAYS_TO_CLOSE] = close == DS_TIME_NONE ? NAN : days_between(close, as_of);
    v[DS_F_CLOSE_DATE_PUSHES] = pushes;
    v[DS_F_DAYS_IN_STAGE] = stage.known && entered != DS_TIME_NONE ? days_between(as_of, entered) : NAN;
    v[DS_F_STAGE_INDEX] = stage.idx >= 0 ? stage.idx : NAN;
    v[DS_F_STAGE_REGRESSIONS] = regressions;
    v[DS_F_AMOUNT_LOG] = isfinite(amount) && amount >= 0 ? log1p(amount) : NAN;
    v[DS_F_AMOUNT_CHANGE_RATIO] = isfinite(amount) && base > 0 ? amount / base : NAN;
    *amount_now = amount;
}

static void interaction_features(const ds_opp_raw_t *raw, int64_t as_of, double *v) {
    const int64_t d14 = 14 * DS_US_PER_DAY, d30 = 30 * DS_US_PER_DAY, d28 = 28 * DS_US_PER_DAY;
    uint32_t counts[5][3] = {{0}};
    uint32_t n_last14 = 0, n_prior14 = 0, emails_answered = 0, emails_asked = 0;
    int64_t last_any = DS_TIME_NONE, last_meeting = DS_TIME_NONE;
    double minutes30 = 0;
    for (size_t i = 0; i < raw->n_interactions; i++) {
        const ds_interaction_t *it = &raw->interactions[i];
        int64_t t = it->occurred_at_us;
        if (t == DS_TIME_NONE || t > as_of) continue;
        int64_t age = as_of - t;
        bool in14 = age < d14, in30 = age < d30;
        if (in14)
            n_last14++;
        else if (age < d28)
            n_prior14++;
        if (t > last_any) last_any = t;
        if ((unsigned)it->type < 5) {
            uint32_t *c = counts[it->type];
            c[0] += in14;
            c[1] += in30;
            c[2]++;
        }
        if (it->type == DS_INTERACTION_EMAIL && it->answer != DS_ANSWER_NONE) {
            emails_asked++;
            emails_answered += it->answer == DS_ANSWER_YES;
        }
        if (it->type == DS_INTERACTION_MEETING) {
            if (t > last_meeting) last_meeting = t;
            if (in30 && isfinite(it->duration_min) && it->duration_min > 0) minutes30 += it->duration_min;
        }
    }
    for (int ty = 0; ty < 5; ty++)
        for (int w = 0; w < 3; w++) v[DS_F_N_EMAIL_14D + ty * 3 + w] = counts[ty][w];
    v[DS_F_DAYS_SINCE_LAST_INTERACTION] = last_any == DS_TIME_NONE ? NAN : days_between(as_of, last_any);
    v[DS_F_DAYS_SINCE_LAST_MEETING] = last_meeting == DS_TIME_NONE ? NAN : days_between(as_of, last_meeting);
    v[DS_F_MEETING_MINUTES_30D] = minutes30;
    v[DS_F_VELOCITY_14D] = (n_last14 + 1.0) / (n_prior14 + 1.0);
    v[DS_F_EMAIL_REPLY_RATE] = (emails_answered + 1.0) / (emails_asked + 2.0);
}

static void firmographic_features(const ds_opp_raw_t *raw, int64_t as_of, const ds_winrate_ctx_t *wr,
                                  double amount_now, double *v) {
    v[DS_F_INDUSTRY_CODE] = ds_feature_category_code(raw->industry);
    v[DS_F_REGION_CODE] = ds_feature_category_code(raw->region);
    v[DS_F_SIZE_BAND_CODE] = ds_feature_category_code(raw->size_band);
    v[DS_F_PRODUCT_CATEGORY_CODE] = ds_feature_category_code(raw->product_category);
    v[DS_F_PERSONA_CODE] = ds_feature_category_code(raw->persona);
    v[DS_F_ACCOUNT_WIN_RATE] = v[DS_F_ACCOUNT_CLOSED_DEALS] = NAN;
    v[DS_F_OWNER_WIN_RATE] = v[DS_F_OWNER_CLOSED_DEALS] = NAN;
    v[DS_F_SEGMENT_WIN_RATE] = v[DS_F_AMOUNT_VS_COHORT] = NAN;
    v[DS_F_ACCOUNT_REPLY_RATE] = NAN;
    v[DS_F_OWNER_ACTIVITY_RATE] = v[DS_F_OWNER_REPLY_RATE] = NAN;
    if (!wr) return;
    ds_winrate_t r;
    if (ds_winrate_segment(wr, raw->industry, raw->product_category, as_of, &r) == DS_OK)
        v[DS_F_SEGMENT_WIN_RATE] = r.rate;
    double mean_log;
    uint32_t n;
    if (isfinite(amount_now) && amount_now > 0 &&
        ds_amount_cohort(wr, raw->size_band, raw->product_category, as_of, &mean_log, &n) == DS_OK && n > 0)
        v[DS_F_AMOUNT_VS_COHORT] = log(amount_now) - mean_log;
    if (ds_winrate_account(wr, raw->account_id, as_of, &r) == DS_OK) {
        v[DS_F_ACCOUNT_WIN_RATE] = r.rate;
        v[DS_F_ACCOUNT_CLOSED_DEALS] = r.closed;
    }
    if (ds_winrate_owner(wr, raw->owner_id, as_of, &r) == DS_OK) {
        v[DS_F_OWNER_WIN_RATE] = r.rate;
        v[DS_F_OWNER_CLOSED_DEALS] = r.closed;
    }
    ds_engagement_t eg;
    if (ds_engagement_account(wr, raw->account_id, as_of, &eg) == DS_OK)
        v[DS_F_ACCOUNT_REPLY_RATE] = eg.reply_rate;
    if (ds_engagement_owner(wr, raw->owner_id, as_of, &eg) == DS_OK) {
        v[DS_F_OWNER_ACTIVITY_RATE] = eg.activity_rate;
        v[DS_F_OWNER_REPLY_RATE] = eg.reply_rate;
    }
}

/* Transcripts in time order (then id, then array order), so evidence is
 * the same whatever order the loader used. */
typedef struct {
    int64_t t;
    const char *id;
    size_t i;
} tr_key_t;

static int tr_key_cmp(const tr_key_t *x, const tr_key_t *y) {
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    int c = strcmp(x->id ? x->id : "", y->id ? y->id : "");
    if (c) return c;
    return x->i < y->i ? -1 : (x->i > y->i);
}

static int tr_key_qcmp(const void *a, const void *b) { return tr_key_cmp(a, b); }

static void meddicc_features(const ds_opp_raw_t *raw, int64_t as_of, const ds_meddicc_lexicon_t *lex,
                             ds_feature_vec_t *out) {
    ds_meddicc_result_t *res = &out->meddicc;
    ds_meddicc_result_init(res);
    tr_key_t small[32];
    tr_key_t *keys =
        raw->n_transcripts <= DS_ARRAY_SIZE(small) ? small : ds_malloc(raw->n_transcripts * sizeof *keys);
    size_t n = 0;
    for (size_t i = 0; i < raw->n_transcripts; i++) {
        const ds_transcript_t *tr = &raw->transcripts[i];
        if (tr->occurred_at_us == DS_TIME_NONE || tr->occurred_at_us > as_of) continue;
        keys[n++] = (tr_key_t){tr->occurred_at_us, tr->id, i};
    }
    if (n > 16) {
        qsort(keys, n, sizeof *keys, tr_key_qcmp);
    } else {
        for (size_t i = 1; i < n; i++) {
            tr_key_t k = keys[i];
            size_t j = i;
            while (j > 0 && tr_key_cmp(&keys[j - 1], &k) > 0) {
                keys[j] = keys[j - 1];
                j--;
            }
            keys[j] = k;
        }
    }
    for (size_t k = 0; k < n; k++) {
        const ds_transcript_t *tr = &raw->transcripts[keys[k].i];
        ds_meddicc_scan(lex, tr->id, tr->text, tr->text ? tr->text_len : 0, res);
    }
    if (keys != small) free(keys);
    double *v = out->values;
    for (int el = 0; el < DS_MEDDICC_COUNT; el++) v[DS_F_MEDDICC_METRICS + el] = res->present[el];
    v[DS_F_MEDDICC_COVERAGE] = res->coverage;
    v[DS_F_N_TRANSCRIPTS] = (double)n;
}

/* Buyer contacts, told apart by name (ASCII case-insensitive, spaces and
 * tabs trimmed); past CONTACTS_MAX the count stops growing. */
#define CONTACTS_MAX 64

typedef struct {
    const char *name[CONTACTS_MAX];
    size_t len[CONTACTS_MAX];
    size_t n;
} contact_set_t;

static bool same_name(const char *a, const char *b, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x != y && !(x < 128 && y < 128 && tolower(x) == tolower(y))) return false;
    }
    return true;
}

static void contact_add(contact_set_t *set, const char *p, size_t len) {
    while (len && (*p == ' ' || *p == '\t')) p++, len--;
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
    /* The seller's side speaks as the rep. */
    if (len == 0 || set->n == CONTACTS_MAX || (len == 3 && same_name(p, "rep", 3)) ||
        (len == 9 && same_name(p, "sales rep", 9)))
        return;
    for (size_t i = 0; i < set->n; i++)
        if (set->len[i] == len && same_name(set->name[i], p, len)) return;
    set->name[set->n] = p;
    set->len[set->n++] = len;
}

/* The speakers of a transcript: each line's text before its first ':',
 * when that is 1 to 60 bytes ("Maria: ...", "Rep: ..."). */
static void transcript_speakers(const ds_transcript_t *tr, contact_set_t *set) {
    const char *p = tr->text, *end = p ? p + tr->text_len : NULL;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && colon > p && colon - p <= 60) contact_add(set, p, (size_t)(colon - p));
        p = eol + 1;
    }
}

/* The buyer contacts engaged by as_of: the transcripts' speakers and the
 * contacts the interactions name. */
static void contact_features(const ds_opp_raw_t *raw, int64_t as_of, double *v) {
    contact_set_t set = {.n = 0};
    for (size_t i = 0; i < raw->n_transcripts; i++) {
        const ds_transcript_t *tr = &raw->transcripts[i];
        if (tr->occurred_at_us != DS_TIME_NONE && tr->occurred_at_us <= as_of) transcript_speakers(tr, &set);
    }
    for (size_t i = 0; i < raw->n_interactions; i++) {
        const ds_interaction_t *it = &raw->interactions[i];
        if (it->contact && it->occurred_at_us != DS_TIME_NONE && it->occurred_at_us <= as_of)
            contact_add(&set, it->contact, strlen(it->contact));
    }
    v[DS_F_BUYER_CONTACTS] = (double)set.n;
}

_Static_assert(DS_F_N_SUPPORT_ALL - DS_F_N_EMAIL_14D == 14, "interaction counts are 5 types x 3");
_Static_assert(DS_F_MEDDICC_COMPETITION - DS_F_MEDDICC_METRICS == DS_MEDDICC_COUNT - 1,
               "one MEDDICC flag per element, in element order");

int ds_features_compute(const ds_opp_raw_t *raw, int64_t as_of_us, const ds_winrate_ctx_t *wr,
                        const ds_meddicc_lexicon_t *lex, ds_feature_vec_t *out) {
    if (!out) return DS_EINVAL;
    if (!raw || (raw->n_history && !raw->history) || (raw->n_interactions && !raw->interactions) ||
        (raw->n_transcripts && !raw->transcripts)) {
        for (int i = 0; i < DS_FEATURE_COUNT; i++) out->values[i] = NAN;
        ds_meddicc_result_init(&out->meddicc);
        return DS_EINVAL;
    }
    if (!lex) lex = ds_meddicc_lexicon_default();
    double *v = out->values;
    double amount_now;
    temporal_features(raw, as_of_us, v, &amount_now);
    interaction_features(raw, as_of_us, v);
    firmographic_features(raw, as_of_us, wr, amount_now, v);
    meddicc_features(raw, as_of_us, lex, out);
    contact_features(raw, as_of_us, v);
    return DS_OK;
}

/* ---- JSON ------------------------------------------------------------------------- */

/* Decimal digits of v into the end of buf; returns the start. */
static char *u64_digits(uint64_t v, char *end) {
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* The text for v that reads back as exactly v, short for the values the
 * engine produces; "null" when not finite. Integers and values with at most
 * six decimals (durations, counts, 0.5) take an integer path; others the
 * shortest of %.15g, %.16g and %.17g that round-trips. */
static int format_number(double v, char buf[40]) {
    if (!isfinite(v)) {
        memcpy(buf, "null", 5);
        return 4;
    }
    if (v == 0) { /* also -0 */
        memcpy(buf, "0", 2);
        return 1;
    }
    double scaled = v * 1e6;
    if (fabs(scaled) < 9e15) {
        double r = nearbyint(scaled);
        if (r / 1e6 == v) {
            uint64_t m = (uint64_t)fabs(r);
            uint64_t ip = m / 1000000, fp = m % 1000000;
            char tmp[40], *end = tmp + sizeof tmp;
            char *p = end;
            if (fp) {
                int digits = 6;
                while (fp % 10 == 0) {
                    fp /= 10;
                    digits--;
                }
                for (int i = 0; i < digits; i++) {
                    *--p = (char)('0' + fp % 10);
                    fp /= 10;
                }
                *--p = '.';
            }
            p = u64_digits(ip, p);
            if (r < 0) *--p = '-';
            int n = (int)(end - p);
            memcpy(buf, p, (size_t)n);
            buf[n] = '\0';
            return n;
        }
    }
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = ds_fmt_g(buf, v, prec);
        if (prec == 17 || strtod(buf, NULL) == v) break;
    }
    return n;
}

char *ds_features_to_json(const ds_feature_vec_t *vec) { return ds_features_values_to_json(vec->values); }

char *ds_features_values_to_json(const double *values) {
    ds_sb_t sb = {0};
    char num[40];
    ds_sb_put(&sb, "{", 1);
    for (int i = 0; i < DS_FEATURE_COUNT; i++) {
        if (i) ds_sb_put(&sb, ",", 1);
        ds_sb_put(&sb, "\"", 1);
        ds_sb_puts(&sb, feature_defs[i].name);
        ds_sb_put(&sb, "\":", 2);
        int n = format_number(values[i], num);
        ds_sb_put(&sb, num, (size_t)n);
    }
    ds_sb_put(&sb, "}", 1);
    return ds_sb_take(&sb);
}

char *ds_features_catalog_json(void) {
    ds_sb_t sb = {0};
    char num[40];
    ds_sb_puts(&sb, "{\"version\":");
    ds_sb_json_str(&sb, DS_FEATURE_VERSION);
    ds_sb_puts(&sb, ",\"count\":");
    format_number(DS_FEATURE_COUNT, num);
    ds_sb_puts(&sb, num);
    ds_sb_puts(&sb, ",\"missing\":\"NaN in the vector, null in JSON\"");
    ds_sb_puts(&sb, ",\"categorical_encoding\":");
    ds_sb_json_str(&sb, "fnv1a64 of the value normalized (ASCII lowercase, trimmed, runs of "
                        "whitespace, '_' or '-' as one space); code = top 24 bits as an integer in "
                        "[0, 16777215]; unseen values get their own code; empty = null");
    ds_sb_puts(&sb, ",\"win_rate_smoothing\":");
    format_number(DS_WINRATE_SMOOTHING, num);
    ds_sb_puts(&sb, num);
    ds_sb_puts(&sb, ",\"meddicc_negation_window\":");
    format_number(DS_MEDDICC_NEGATION_WINDOW, num);
    ds_sb_puts(&sb, num);
    ds_sb_puts(&sb, ",\"meddicc_negation_cues\":");
    ds_sb_json_str(&sb, DS_MEDDICC_NEGATION_CUES);
    ds_sb_puts(&sb, ",\"default_stage_order\":{");
    for (size_t i = 0; i < default_stages.n; i++) {
        if (i) ds_sb_puts(&sb, ",");
        ds_sb_json_str(&sb, default_stages.defs[i].name);
        ds_sb_puts(&sb, ":");
        format_number(default_stages.defs[i].index, num);
        ds_sb_puts(&sb, num);
    }
    ds_sb_puts(&sb, "},\"features\":[");
    for (int i = 0; i < DS_FEATURE_COUNT; i++) {
        const feature_def_t *d = &feature_defs[i];
        if (i) ds_sb_puts(&sb, ",");
        ds_sb_puts(&sb, "{\"index\":");
        format_number(i, num);
        ds_sb_puts(&sb, num);
        ds_sb_puts(&sb, ",\"name\":");
        ds_sb_json_str(&sb, d->name);
        ds_sb_puts(&sb, ",\"family\":");
        ds_sb_json_str(&sb, d->family);
        ds_sb_puts(&sb, ",\"unit\":");
        ds_sb_json_str(&sb, d->unit);
        ds_sb_puts(&sb, ",\"label\":");
        ds_sb_json_str(&sb, d->label);
        ds_sb_puts(&sb, ",\"missing\":");
        ds_sb_json_str(&sb, d->missing);
        ds_sb_puts(&sb, "}");
    }
    ds_sb_puts(&sb, "]}");
    return ds_sb_take(&sb);
}
