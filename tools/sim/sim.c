/* The generator: see sim.h for the API and README.md for the model. */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "text.h"

#define DAY 86400
#define WORK_SECS (9 * 3600) /* events fall in a 9-hour working day */
#define N_IND 8
#define N_REG 4
#define N_SIZE 3
#define N_PROD 5
#define N_PERS 6
#define N_STAGE 6 /* open stages */
#define N_M (SIM_EL_COUNT + 1)
#define N_K 5
#define N_CP 6
#define MAX_TRANSCRIPTS 4

static const char *const industries[N_IND] = {
    "software", "financial_services", "healthcare",    "manufacturing",
    "retail",   "education",          "public_sector", "media",
};
static const double industry_w[N_IND] = {0.20, 0.15, 0.12, 0.15, 0.12, 0.08, 0.08, 0.10};
static const char *const regions[N_REG] = {"na", "emea", "apac", "latam"};
static const double region_w[N_REG] = {0.45, 0.30, 0.15, 0.10};
static const int region_hour[N_REG] = {14, 8, 1, 12}; /* working day start, UTC */
static const char *const sizes[N_SIZE] = {"smb", "mid_market", "enterprise"};
static const double size_w[N_SIZE] = {0.50, 0.35, 0.15};
static const char *const products[N_PROD] = {
    "core_platform", "analytics", "security", "integrations", "services",
};
static const double product_w[N_PROD] = {0.35, 0.20, 0.20, 0.15, 0.10};
static const char *const personas[N_PERS] = {
    "it_director", "cto", "cfo", "vp_sales", "operations", "procurement",
};
static const double persona_w[N_PERS] = {0.22, 0.15, 0.15, 0.22, 0.18, 0.08};
static const char *const stages[N_STAGE + 2] = {
    "prospecting", "qualification", "discovery",  "demo",
    "proposal",    "negotiation",   "closed_won", "closed_lost",
};

/* Account fit of a product in an industry (log-odds and quality shift). */
static const double fit_tab[N_IND][N_PROD] = {
    /* core   analyt  secur   integr  servic */
    {0.40, 0.30, 0.10, 0.35, -0.30},   /* software */
    {0.20, 0.35, 0.45, -0.10, 0.00},   /* financial_services */
    {0.00, 0.10, 0.40, -0.20, 0.20},   /* healthcare */
    {0.10, -0.20, -0.30, 0.30, 0.25},  /* manufacturing */
    {0.25, 0.40, -0.25, 0.10, -0.10},  /* retail */
    {-0.20, 0.00, -0.35, -0.30, 0.30}, /* education */
    {-0.45, -0.30, 0.20, -0.40, 0.35}, /* public_sector */
    {0.15, 0.45, -0.40, 0.20, -0.20},  /* media */
};
/* Typical (median) amount in USD of a segment: size band x product. */
static const double typical_size[N_SIZE] = {15000, 60000, 240000};
static const double typical_prod[N_PROD] = {1.0, 0.7, 0.9, 0.5, 0.4};

/* Model constants (README.md "Generative model"). */
#define B0 (-3.35)
#define B_SKILL 1.0
#define B_FIT 1.0
#define B_ACC 1.0
#define B_AMT (-0.5)
#define B_U 0.7
#define SIGMA_EPS 0.5
#define B_M 0.35
#define B_S 0.45
#define B_K (-0.35)
#define B_R (-0.6)
static const double pace_tab[N_SIZE] = {1.5, 1.0, 0.6};
static const double close_tab[N_STAGE] = {0.002, 0.003, 0.005, 0.008, 0.014, 0.035};
static const double adv_tab[N_STAGE] = {0.10, 0.08, 0.06, 0.06, 0.05, 0.0};
#define P_REGRESS 0.002
#define P_DISCOVER 0.008
#define P_STALE (1.0 / 12.0)
static const double pow_adv_k[N_K] = {1, 0.75, 0.5625, 0.421875, 0.31640625};
static const double pow_disc_k[N_K] = {1, 0.8, 0.64, 0.512, 0.4096};
static const double pow_eng_k[N_K] = {1, 1, 0.6, 0.36, 0.216};
/* Interactions per working day at quality 0, before decay. */
#define RHO0 0.45
static const double rho_size[N_SIZE] = {0.9, 1.0, 1.25};
static const double rho_stage[N_STAGE] = {0.7, 0.9, 1.1, 1.2, 1.0, 1.1};
/* Discovery order preference of the MEDDICC elements. */
static const double disc_w[SIM_EL_COUNT] = {1.0, 0.7, 0.9, 0.8, 0.4, 1.5, 0.8, 1.0};
static const int checkpoints[N_CP] = {7, 14, 30, 60, 90, 180};

enum { IT_EMAIL, IT_PHONE, IT_MEETING, IT_DEMO, IT_SUPPORT, N_IT };
static const char *const itypes[N_IT] = {"email", "phone", "meeting", "demo", "support"};
static const double itype_w[N_STAGE][N_IT] = {
    {0.60, 0.30, 0.10, 0.00, 0.00}, {0.50, 0.25, 0.22, 0.03, 0.00}, {0.40, 0.20, 0.35, 0.05, 0.00},
    {0.35, 0.15, 0.25, 0.22, 0.03}, {0.45, 0.20, 0.25, 0.05, 0.05}, {0.50, 0.25, 0.20, 0.00, 0.05},
};

typedef struct {
    char id[24];
    char name[64];
    int industry, region, size, owner;
    double propensity;
    int64_t created;
} account_t;

typedef struct {
    char id[24];
    double skill;
} owner_t;

struct sim_s {
    sim_opts_t opts;
    uint64_t stream;
    int64_t start;
    account_t *acc;
    long nacc;
    owner_t *own;
    long nown;
    /* exp(-(state part of the log-odds)) by (r, s, m, k). */
    double g[2][N_STAGE][N_M][N_K];
};

/* Gauss-Hermite rules for a standard normal (probabilists' nodes, weights
 * summing to 1): the oracle integrates u over 12 nodes and eps over 10. */
#define N_GH_U 12
#define N_GH_EPS 10
static const double gh_u_x[N_GH_U] = {
    -5.500901704467748,  -4.2718258479322815,  -3.2237098287700974, -2.259464451000799,
    -1.3403751971516167, -0.44440300194413895, 0.44440300194413895, 1.3403751971516167,
    2.259464451000799,   3.2237098287700974,   4.2718258479322815,  5.500901704467748,
};
static const double gh_u_w[N_GH_U] = {
    1.4999271676371623e-07, 4.837184922590644e-05, 0.0022033806875332,    0.029116687912364173,
    0.14696704804532995,    0.32166436151282995,   0.32166436151282995,   0.14696704804532995,
    0.029116687912364173,   0.0022033806875332,    4.837184922590644e-05, 1.4999271676371623e-07,
};
static const double gh_eps_x[N_GH_EPS] = {
    -4.859462828332312,  -3.581823483551927, -2.4843258416389546, -1.4659890943911582, -0.48493570751549764,
    0.48493570751549764, 1.4659890943911582, 2.4843258416389546,  3.581823483551927,   4.859462828332312,
};
static const double gh_eps_w[N_GH_EPS] = {
    4.3106526307183114e-06, 0.0007580709343122171,  0.01911158050077027, 0.13548370298026777,
    0.34464233493201896,    0.34464233493201896,    0.13548370298026777, 0.01911158050077027,
    0.0007580709343122171,  4.3106526307183114e-06,
};

typedef struct {
    double t[2][N_STAGE][N_M][N_K];
} value_tab_t;

struct sim_scratch_s {
    ds_sb_t text;
    ds_sb_t meta;
    value_tab_t v;
    value_tab_t win; /* the oracle's P(won | close in a state) */
    value_tab_t vo;  /* the oracle's P(won | state) */
    value_tab_t vu;  /* one node of its integral over u */
};

/* A deal's constants: the parts of the chain that do not change. q_known and
 * c_known are q and c without the hidden noise terms u and eps. */
typedef struct {
    double q, c, emc; /* quality, constant log-odds, exp(-c) */
    double pace, a_adv, a_disc, a_eng;
    double q_known, c_known;
} deal_t;

typedef struct {
    double close, regress, advance, discover, stale;
} rates_t;

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) abort();
    return p;
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

static const char *const name_a[] = {
    "North",   "Blue",  "Silver", "Iron",   "Bright",   "Cedar",     "Summit",  "Harbor",
    "Nova",    "Atlas", "Orion",  "Maple",  "Granite",  "Vertex",    "Crest",   "Lumen",
    "Pioneer", "Delta", "Aurora", "Falcon", "Sterling", "Evergreen", "Quantum", "Redwood",
};
static const char *const name_b[] = {
    "wind",  "peak", "field", "stone", "bridge", "line", "point", "gate",
    "works", "wave", "path",  "light", "ridge",  "core", "",
};
static const char *const name_c[] = {
    " Systems", " Analytics",  " Health",   " Logistics", " Capital", " Foods",    " Labs",
    " Media",   " Industries", " Partners", " Retail",    " Energy",  " Learning", "",
};
static const char *const name_d[] = {
    ", Inc.", " GmbH", " Ltd", " LLC", " & Co.", ", S.A.", " Group", " Pty Ltd", "", "",
};
#define ALEN(a) (sizeof(a) / sizeof((a)[0]))
#define APICK(rng, a) (a)[rng_below((rng), (uint32_t)ALEN(a))]

sim_t *sim_new(const sim_opts_t *opts, int org) {
    sim_t *sim = xcalloc(1, sizeof(*sim));
    sim->opts = *opts;
    sim->stream = rng_mix(opts->seed, (uint64_t)org);
    sim->start = opts->now - (int64_t)opts->days * DAY;
    long n = opts->opportunities;
    sim->nown = n / 100 > 5 ? n / 100 : 5;
    sim->nacc = n / 4 > 1 ? n / 4 : 1;

    rng_t rng;
    rng_seed(&rng, rng_mix(sim->stream, 3));
    sim->own = xcalloc((size_t)sim->nown, sizeof(owner_t));
    for (long i = 0; i < sim->nown; i++) {
        snprintf(sim->own[i].id, sizeof(sim->own[i].id), "own-%05ld", i + 1);
        sim->own[i].skill = 0.5 * rng_normal(&rng);
    }

    /* Accounts in creation order: the first ~half before the window, the
     * rest during its first 80 %, so every deal finds an account. */
    rng_seed(&rng, rng_mix(sim->stream, 2));
    sim->acc = xcalloc((size_t)sim->nacc, sizeof(account_t));
    double span = (730.0 + 0.8 * opts->days) * DAY;
    int64_t t_first = sim->start - 730LL * DAY;
    for (long i = 0; i < sim->nacc; i++) {
        account_t *a = &sim->acc[i];
        snprintf(a->id, sizeof(a->id), "acc-%07ld", i + 1);
        a->industry = rng_pick(&rng, industry_w, N_IND);
        a->region = rng_pick(&rng, region_w, N_REG);
        a->size = rng_pick(&rng, size_w, N_SIZE);
        a->owner = (int)rng_below(&rng, (uint32_t)sim->nown);
        a->propensity = 0.4 * rng_normal(&rng);
        a->created = t_first + (int64_t)(((double)i + rng_uniform(&rng)) / (double)sim->nacc * span);
        if (i == 0) a->created = t_first;
        if (rng_bernoulli(&rng, 0.005))
            snprintf(a->name, sizeof(a->name), "The \"%s%s\" Company", APICK(&rng, name_a),
                     APICK(&rng, name_b));
        else
            snprintf(a->name, sizeof(a->name), "%s%s%s%s", APICK(&rng, name_a), APICK(&rng, name_b),
                     APICK(&rng, name_c), APICK(&rng, name_d));
    }

    for (int r = 0; r < 2; r++)
        for (int s = 0; s < N_STAGE; s++)
            for (int m = 0; m < N_M; m++)
                for (int k = 0; k < N_K; k++)
                    sim->g[r][s][m][k] = exp(-(B_M * m + B_S * s + B_K * k + B_R * r));
    return sim;
}

void sim_destroy(sim_t *sim) {
    if (!sim) return;
    free(sim->acc);
    free(sim->own);
    free(sim);
}

long sim_account_count(const sim_t *sim) { return sim->nacc; }

void sim_emit_account(const sim_t *sim, long i, const sim_sink_t *sink) {
    const account_t *a = &sim->acc[i];
    sim_account_t rec = {a->id,          a->name,   industries[a->industry], regions[a->region],
                         sizes[a->size], a->created};
    sink->account(sink->ud, &rec);
}

void sim_emit_accounts(const sim_t *sim, const sim_sink_t *sink) {
    for (long i = 0; i < sim->nacc; i++) sim_emit_account(sim, i, sink);
}

sim_scratch_t *sim_scratch_new(void) {
    sim_scratch_t *sc = xcalloc(1, sizeof(*sc));
    sc->text = (ds_sb_t){0};
    sc->meta = (ds_sb_t){0};
    return sc;
}

void sim_scratch_destroy(sim_scratch_t *sc) {
    if (!sc) return;
    ds_sb_free(&sc->text);
    ds_sb_free(&sc->meta);
    free(sc);
}

/* The chain's daily event probabilities in state (r, s, m, k). At most one
 * event happens per day; the rest is "nothing happens". */
static void chain_rates(const deal_t *d, int r, int s, int m, int k, rates_t *p) {
    p->close = close_tab[s] * d->pace * (1.0 + 0.5 * k);
    p->regress = (r == 0 && s >= 2) ? P_REGRESS : 0.0;
    p->advance = adv_tab[s] * d->pace * d->a_adv * (0.4 + 0.15 * m) * pow_adv_k[k];
    p->discover = (SIM_EL_COUNT - m) * P_DISCOVER * d->pace * d->a_disc * (0.5 + 0.25 * (s < 4 ? s : 4)) *
                  pow_disc_k[k];
    p->stale = k < N_K - 1 ? P_STALE : 0.0;
    double tot = p->close + p->regress + p->advance + p->discover + p->stale;
    if (tot > 0.9) {
        /* Keeps "nothing happens" possible; ratios, and so the truth, stay. */
        double f = 0.9 / tot;
        p->close *= f;
        p->regress *= f;
        p->advance *= f;
        p->discover *= f;
        p->stale *= f;
    }
}

/* P(win | state) for every state of the deal's chain, exactly, given
 * win[state], the probability of a win when the deal closes in that state:
 * the chain only moves "up" in (regressed, stage, meddicc, staleness) apart
 * from one regression, so one backward pass solves it (self-loops divide
 * out). */
static void value_table_given(const deal_t *d, const value_tab_t *win_tab, value_tab_t *v_tab) {
    const double(*win)[N_STAGE][N_M][N_K] = win_tab->t;
    double(*v)[N_STAGE][N_M][N_K] = v_tab->t;
    for (int r = 1; r >= 0; r--)
        for (int s = N_STAGE - 1; s >= 0; s--)
            for (int m = N_M - 1; m >= 0; m--)
                for (int k = N_K - 1; k >= 0; k--) {
                    rates_t p;
                    chain_rates(d, r, s, m, k, &p);
                    double num = p.close * win[r][s][m][k];
                    if (p.regress > 0) num += p.regress * v[1][s - 1][m][k];
                    if (p.advance > 0) num += p.advance * v[r][s + 1][m][0];
                    if (p.discover > 0) num += p.discover * v[r][s][m + 1][k];
                    if (p.stale > 0) num += p.stale * v[r][s][m][k + 1];
                    v[r][s][m][k] = num / (p.close + p.regress + p.advance + p.discover + p.stale);
                }
}

/* The truth: P(win | state, every constant of the deal). */
static void value_table(const sim_t *sim, const deal_t *d, sim_scratch_t *sc) {
    double *win = &sc->win.t[0][0][0][0];
    const double *g = &sim->g[0][0][0][0];
    for (size_t i = 0; i < sizeof(sc->win.t) / sizeof(double); i++) win[i] = 1.0 / (1.0 + d->emc * g[i]);
    value_table_given(d, &sc->win, &sc->v);
}

static void set_rates_of_quality(deal_t *d, double q) {
    d->q = q;
    d->a_adv = clampd(exp(0.5 * q), 0.2, 5.0);
    d->a_disc = clampd(exp(0.6 * q), 0.2, 5.0);
    d->a_eng = clampd(exp(0.4 * q), 0.2, 5.0);
}

/* The oracle: P(win | state, the deal's constants but u and eps), the truth
 * integrated over u ~ N(0,1) and eps ~ N(0,1) by Gauss-Hermite quadrature.
 * u moves both the rates (through q) and the log-odds; eps only the log-odds,
 * and the value is linear in win[], so eps is integrated inside win[]. */
static void oracle_table(const sim_t *sim, const deal_t *known, sim_scratch_t *sc) {
    double *vo = &sc->vo.t[0][0][0][0], *vu = &sc->vu.t[0][0][0][0], *win = &sc->win.t[0][0][0][0];
    const double *g = &sim->g[0][0][0][0];
    const size_t n = sizeof(sc->vo.t) / sizeof(double);
    double e_eps[N_GH_EPS];
    for (int e = 0; e < N_GH_EPS; e++) e_eps[e] = exp(-SIGMA_EPS * gh_eps_x[e]);
    for (size_t i = 0; i < n; i++) vo[i] = 0.0;
    for (int j = 0; j < N_GH_U; j++) {
        deal_t d = *known;
        set_rates_of_quality(&d, known->q_known + 0.6 * gh_u_x[j]);
        double emc_u = exp(-(known->c_known + B_U * gh_u_x[j]));
        for (size_t i = 0; i < n; i++) {
            double acc = 0.0;
            for (int e = 0; e < N_GH_EPS; e++) acc += gh_eps_w[e] / (1.0 + emc_u * g[i] * e_eps[e]);
            win[i] = acc;
        }
        value_table_given(&d, &sc->win, &sc->vu);
        for (size_t i = 0; i < n; i++) vo[i] += gh_u_w[j] * vu[i];
    }
}

static double round100(double x) {
    double r = round(x / 100.0) * 100.0;
    return r < 500 ? 500 : r;
}

static int64_t day_of(int64_t t) { return t >= 0 ? t / DAY : (t - DAY + 1) / DAY; }

/* A change of the CRM record within one day. */
typedef struct {
    int64_t t;
    int stage;         /* -1: unchanged */
    double amount;     /* < 0: unchanged */
    int64_t close_day; /* < 0: unchanged */
} change_t;

static void emit_row(const sim_sink_t *sink, sim_opp_row_t *row, int64_t t) {
    row->changed_at = t;
    sink->opp(sink->ud, row);
}

/* prefix + v zero-padded to width digits (more if needed); out holds 48. */
static void fmt_id(char *out, const char *prefix, long v, int width) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    size_t pl = strlen(prefix);
    memcpy(out, prefix, pl);
    char *p = out + pl;
    for (int i = n; i < width; i++) *p++ = '0';
    while (n) *p++ = tmp[--n];
    *p = '\0';
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const sim_sink_t *sink;
    sim_scratch_t *sc;
    rng_t *rng;
    const char *opp_id;
    char id_i[40], id_t[40]; /* "<opp>-i", "<opp>-t" */
    int n_int, n_tr;
    const char *committee[SIM_COMMITTEE]; /* the buyer's people on its calls */
} emit_ctx_t;

/* One interaction at time t in stage s; may also record a call transcript
 * mentioning the MEDDICC elements in mask. */
static void emit_interaction(emit_ctx_t *e, int s, int64_t t, unsigned mask, double q) {
    rng_t *rng = e->rng;
    ds_sb_t *meta = &e->sc->meta;
    int type = rng_pick(rng, itype_w[s], N_IT);
    const char *channel = "email", *outcome = "sent";
    int dur = -1, call = 0;
    ds_sb_reset(meta);
    double engaged = 1.0 / (1.0 + exp(-(q + 0.3)));
    switch (type) {
    case IT_EMAIL: {
        int dir_in = rng_bernoulli(rng, 0.35);
        outcome = dir_in ? "received" : rng_bernoulli(rng, engaged) ? "replied" : "no_reply";
        ds_sb_puts(meta, dir_in ? "{\"direction\":\"inbound\"" : "{\"direction\":\"outbound\"");
        ds_sb_puts(meta, ",\"subject\":");
        static const char *const subj[] = {
            "Next steps",          "Re: pricing, options", "Follow-up: \"quick question\"", "Intro",
            "Re: security review", "Proposal draft",       "Agenda for Thursday",
        };
        const char *sj = APICK(rng, subj);
        ds_sb_json_strn(meta, sj, strlen(sj), DS_SB_JSON_SHORT_ESCAPES);
        ds_sb_puts(meta, "}");
        break;
    }
    case IT_PHONE: {
        channel = "phone";
        double u = rng_uniform(rng);
        if (u < 0.45 + 0.25 * engaged) {
            outcome = "connected";
            dur = rng_range(rng, 3, 35);
            call = rng_bernoulli(rng, 0.15);
        } else if (u < 0.85) {
            outcome = "voicemail";
            dur = 1;
        } else {
            outcome = "no_answer";
            dur = 0;
        }
        ds_sb_puts(meta, "{\"direction\":\"outbound\"}");
        break;
    }
    case IT_MEETING:
    case IT_DEMO: {
        channel = rng_bernoulli(rng, 0.8) ? "video" : "in_person";
        double u = rng_uniform(rng);
        if (u < 0.75 + 0.2 * engaged) {
            outcome = "held";
            static const int md[] = {15, 30, 30, 45, 60, 60, 90};
            dur = type == IT_DEMO ? md[rng_range(rng, 2, 6)] : md[rng_below(rng, 6)];
            call = 1;
        } else if (u < 0.97) {
            outcome = "rescheduled";
            dur = 0;
        } else {
            outcome = "no_show";
            dur = 0;
        }
        ds_sb_puts(meta, "{\"attendees\":");
        ds_sb_i64(meta, rng_range(rng, 2, 8));
        ds_sb_puts(meta, ",\"recorded\":");
        ds_sb_puts(meta, call ? "true" : "false");
        ds_sb_puts(meta, "}");
        break;
    }
    default: /* IT_SUPPORT */
        channel = rng_bernoulli(rng, 0.6) ? "portal" : "email";
        outcome = rng_bernoulli(rng, 0.8) ? "resolved" : "open";
        dur = rng_range(rng, 5, 40);
        ds_sb_puts(meta, "{\"ticket\":\"SUP-");
        ds_sb_i64(meta, rng_range(rng, 1000, 99999));
        ds_sb_puts(meta, "\",\"priority\":\"");
        ds_sb_puts(meta, rng_bernoulli(rng, 0.8) ? "low" : "high");
        ds_sb_puts(meta, "\"}");
        break;
    }
    ds_sb_putc(meta, '\0');

    char iid[48];
    fmt_id(iid, e->id_i, ++e->n_int, 3);
    sim_interaction_t it = {iid, e->opp_id, itypes[type], channel, t, dur, outcome, meta->p};
    e->sink->interaction(e->sink->ud, &it);

    if (call && e->n_tr < MAX_TRANSCRIPTS && rng_bernoulli(rng, 0.35)) {
        ds_sb_t *text = &e->sc->text;
        ds_sb_reset(text);
        sim_transcript_text(rng, text, mask, 0.55, 0.25, e->committee, q);
        char tid[48];
        fmt_id(tid, e->id_t, ++e->n_tr, 1);
        sim_transcript_t tr = {tid, e->opp_id, t + 60, text->p, text->len};
        e->sink->transcript(e->sink->ud, &tr);
    }
}

static int pick_element(rng_t *rng, unsigned mask) {
    double w[SIM_EL_COUNT];
    for (int i = 0; i < SIM_EL_COUNT; i++) w[i] = (mask & (1u << i)) ? 0.0 : disc_w[i];
    return rng_pick(rng, w, SIM_EL_COUNT);
}

/* Creation: deal i gets its own slot of the window, so deals come out in
 * creation order; its account is one created before that day. Returns the
 * account and sets *t0, the creation time. */
static const account_t *place_deal(const sim_t *sim, long i, rng_t *rng, int64_t *t0) {
    double span = (double)sim->opts.days * DAY;
    int64_t tslot =
        sim->start + (int64_t)(((double)i + rng_uniform(rng)) / (double)sim->opts.opportunities * span);
    int64_t day0 = day_of(tslot) * DAY;
    long lo = 0, hi = sim->nacc; /* first account created at or after day0 */
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (sim->acc[mid].created < day0)
            lo = mid + 1;
        else
            hi = mid;
    }
    long navail = lo > 0 ? lo : 1;
    const account_t *acc = &sim->acc[rng_below(rng, (uint32_t)navail)];
    *t0 = day0 + region_hour[acc->region] * 3600 + (int64_t)rng_below(rng, 8 * 3600);
    if (*t0 > sim->opts.now - 60) *t0 = sim->opts.now - 60;
    return acc;
}

/* The deal's latents and the constant part of its log-odds into *d; returns
 * its amount in USD. */
static double draw_latents(const account_t *acc, const owner_t *own, int prod, rng_t *rng, deal_t *d) {
    double typical = typical_size[acc->size] * typical_prod[prod];
    double amount_usd = round100(typical * exp(0.55 * rng_normal(rng)));
    double amt_ratio = log(amount_usd / typical);
    double u = rng_normal(rng), eps = rng_normal(rng);
    double fit = fit_tab[acc->industry][prod];
    d->q_known = own->skill + fit + acc->propensity - 0.3 * amt_ratio;
    d->c_known = B0 + B_SKILL * own->skill + B_FIT * fit + B_ACC * acc->propensity + B_AMT * amt_ratio;
    d->c = d->c_known + B_U * u + SIGMA_EPS * eps;
    d->emc = exp(-d->c);
    d->pace = pace_tab[acc->size];
    /* The truth's q in its original order of operations (byte-identical output). */
    set_rates_of_quality(d, own->skill + fit + acc->propensity + 0.6 * u - 0.3 * amt_ratio);
    return amount_usd;
}

/* The CRM changes of day ds, emitted in time order: the chain's stage change
 * (move +1 or -1 from stage s at ev_t, 0 for none), a close-date push when
 * the date has passed (or is about to), a stray amount edit. */
static void emit_crm_changes(const sim_sink_t *sink, rng_t *rng, sim_opp_row_t *row, int move, int64_t ev_t,
                             int64_t ds, int s, int64_t *close_day) {
    int64_t today = day_of(ds);
    change_t ch[3];
    int nch = 0;
    if (move != 0) {
        int ns = s + move;
        change_t c = {ev_t, ns, -1, -1};
        if (move > 0 && ns == 4 && rng_bernoulli(rng, 0.35))
            c.amount = round100(row->amount * exp(0.15 * rng_normal(rng)));
        if (move > 0 && ns == 5) {
            if (rng_bernoulli(rng, 0.4))
                c.amount = round100(row->amount * (1.0 - 0.03 - 0.12 * rng_uniform(rng)));
            if (*close_day - today > 45 && rng_bernoulli(rng, 0.5))
                c.close_day = today + rng_range(rng, 10, 30);
        }
        ch[nch++] = c;
    }
    if (today > *close_day) {
        change_t c = {ds + (int64_t)rng_below(rng, WORK_SECS), -1, -1, today + rng_range(rng, 14, 45)};
        ch[nch++] = c;
    } else if (*close_day - today <= 3 && s < 4 && rng_bernoulli(rng, 0.1)) {
        change_t c = {ds + (int64_t)rng_below(rng, WORK_SECS), -1, -1, *close_day + rng_range(rng, 14, 30)};
        ch[nch++] = c;
    }
    if (rng_bernoulli(rng, 0.002)) {
        change_t c = {ds + (int64_t)rng_below(rng, WORK_SECS), -1,
                      round100(row->amount * exp(0.1 * rng_normal(rng))), -1};
        ch[nch++] = c;
    }
    for (int a = 1; a < nch; a++) /* insertion sort by time: at most 3 */
        for (int b = a; b > 0 && ch[b].t < ch[b - 1].t; b--) {
            change_t tmp = ch[b];
            ch[b] = ch[b - 1];
            ch[b - 1] = tmp;
        }
    for (int a = 0; a < nch; a++) {
        if (ch[a].stage >= 0) row->stage = stages[ch[a].stage];
        if (ch[a].amount >= 0) row->amount = ch[a].amount;
        if (ch[a].close_day >= 0) {
            *close_day = ch[a].close_day;
            row->close_date = *close_day * DAY;
        }
        emit_row(sink, row, ch[a].t);
    }
}

void sim_deal(const sim_t *sim, long i, const sim_sink_t *sink, sim_scratch_t *sc) {
    rng_t rng;
    rng_seed(&rng, rng_mix(rng_mix(sim->stream, 1), (uint64_t)i));
    char opp_id[32];
    fmt_id(opp_id, "opp-", i + 1, 7);

    const int64_t now = sim->opts.now;
    int64_t t0;
    const account_t *acc = place_deal(sim, i, &rng, &t0);
    const owner_t *own =
        rng_bernoulli(&rng, 0.8) ? &sim->own[acc->owner] : &sim->own[rng_below(&rng, (uint32_t)sim->nown)];
    int prod = rng_pick(&rng, product_w, N_PROD);
    int pers = rng_pick(&rng, persona_w, N_PERS);
    deal_t d;
    double amount_usd = draw_latents(acc, own, prod, &rng, &d);
    double fx = acc->region == 1 ? 0.92 : 1.0;

    /* Initial state. */
    int r = 0, s = rng_bernoulli(&rng, 0.25) ? 1 : 0, m = 0, k = 0;
    unsigned mask = 0;
    if (rng_bernoulli(&rng, 0.3)) {
        mask |= 1u << SIM_EL_IDENTIFY_PAIN;
        m = 1;
    }
    static const double cycle_days[N_SIZE] = {40, 75, 120};
    int64_t close_day = day_of(t0) + (int64_t)llround(cycle_days[acc->size] * exp(0.3 * rng_normal(&rng)));

    sim_opp_row_t row = {opp_id,
                         acc->id,
                         own->id,
                         products[prod],
                         personas[pers],
                         round100(amount_usd * fx),
                         fx == 1.0 ? "USD" : "EUR",
                         stages[s],
                         t0,
                         close_day * DAY,
                         0,
                         "open",
                         t0};
    emit_row(sink, &row, t0);

    emit_ctx_t e = {sink, sc, &rng, opp_id, "", "", 0, 0, {0}};
    sim_committee(opp_id, e.committee);
    snprintf(e.id_i, sizeof(e.id_i), "%s-i", opp_id);
    snprintf(e.id_t, sizeof(e.id_t), "%s-t", opp_id);
    int cp_day[N_CP], ncp = 0;
    int64_t cp_asof[N_CP];
    double cp_p[N_CP], cp_oracle[N_CP];
    int v_ready = 0;
    const char *final = "open";
    /* Rates depend on the state only: recomputed when it changes. */
    rates_t p;
    double el_weekday = 1, el_weekend = 1;
    int dirty = 1;

    for (int day = 1;; day++) {
        int64_t ds = t0 + (int64_t)(day - 1) * DAY;
        if (ds + DAY > now) break; /* only whole days in the past are simulated */
        int64_t today = day_of(ds);

        /* The chain's event of the day, from the state at its start. */
        if (dirty) {
            chain_rates(&d, r, s, m, k, &p);
            double rho = RHO0 * rho_size[acc->size] * d.a_eng * pow_eng_k[k] * rho_stage[s];
            el_weekday = exp(-rho);
            el_weekend = exp(-rho * 0.15);
            dirty = 0;
        }
        double x = rng_uniform(&rng);
        int64_t ev_t = ds + (int64_t)rng_below(&rng, WORK_SECS);
        enum { EV_NONE, EV_CLOSE, EV_REGRESS, EV_ADVANCE, EV_DISCOVER, EV_STALE } ev = EV_NONE;
        if ((x -= p.close) < 0)
            ev = EV_CLOSE;
        else if ((x -= p.regress) < 0)
            ev = EV_REGRESS;
        else if ((x -= p.advance) < 0)
            ev = EV_ADVANCE;
        else if ((x -= p.discover) < 0)
            ev = EV_DISCOVER;
        else if ((x -= p.stale) < 0)
            ev = EV_STALE;
        unsigned new_mask = mask;
        if (ev == EV_DISCOVER) new_mask |= 1u << pick_element(&rng, mask);

        /* Interactions of the day (weekends are quiet), before the close. */
        int wd = (int)((today % 7 + 7 + 4) % 7); /* 0 = Sunday */
        int nint = rng_poisson_l(&rng, (wd == 0 || wd == 6) ? el_weekend : el_weekday);
        if (nint > 0) {
            int64_t ts[32];
            if (nint > 32) nint = 32;
            int64_t lim = ev == EV_CLOSE ? ev_t - ds : WORK_SECS;
            if (lim < 1) lim = 1;
            for (int j = 0; j < nint; j++) ts[j] = ds + (int64_t)rng_below(&rng, (uint32_t)lim);
            qsort(ts, (size_t)nint, sizeof(ts[0]), cmp_i64);
            for (int j = 0; j < nint; j++)
                emit_interaction(&e, s, ts[j], ts[j] >= ev_t ? new_mask : mask, d.q);
        }

        if (ev == EV_CLOSE) {
            double pw = 1.0 / (1.0 + d.emc * sim->g[r][s][m][k]);
            int won = rng_uniform(&rng) < pw;
            final = won ? "won" : "lost";
            row.stage = stages[won ? N_STAGE : N_STAGE + 1];
            row.outcome = final;
            row.closed_at = ev_t;
            row.close_date = today * DAY;
            emit_row(sink, &row, ev_t);
            break;
        }

        emit_crm_changes(sink, &rng, &row,
                         ev == EV_ADVANCE   ? 1
                         : ev == EV_REGRESS ? -1
                                            : 0,
                         ev_t, ds, s, &close_day);

        switch (ev) {
        case EV_REGRESS:
            r = 1;
            s--;
            break;
        case EV_ADVANCE:
            s++;
            k = 0;
            break;
        case EV_DISCOVER:
            m++;
            mask = new_mask;
            break;
        case EV_STALE: k++; break;
        default: break;
        }
        if (ev != EV_NONE) dirty = 1;

        if (ncp < N_CP && day == checkpoints[ncp]) {
            if (!v_ready) {
                value_table(sim, &d, sc);
                oracle_table(sim, &d, sc);
                v_ready = 1;
            }
            cp_day[ncp] = day;
            cp_asof[ncp] = t0 + (int64_t)day * DAY;
            cp_p[ncp] = sc->v.t[r][s][m][k];
            cp_oracle[ncp] = sc->vo.t[r][s][m][k];
            ncp++;
        }
    }

    for (int j = 0; j < ncp; j++) {
        sim_truth_t t = {opp_id, cp_day[j], cp_asof[j], cp_p[j], cp_oracle[j], final};
        sink->truth(sink->ud, &t);
    }
}
