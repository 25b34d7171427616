/* Stream mode: generates deals and posts their records as JSON arrays to the
 * ingest webhooks, over C keep-alive connections (one ds_httpc client and
 * one thread each), paced to R records per second.
 *
 * Records go out in waves of deals. Within a wave, new accounts go first,
 * then opportunity rows, then interactions and transcripts, each phase
 * finished before the next starts, so a record never arrives before the
 * opportunity it refers to. A deal's records of one kind stay in one request
 * unless they alone exceed --batch. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "infra/httpc.h"
#include "run.h"
#include "sim.h"

enum { K_ACC, K_OPP, K_INT, K_TR, K_COUNT };
static const char *const kind_path[K_COUNT] = {
    "/v1/accounts",
    "/v1/opportunities",
    "/v1/interactions",
    "/v1/transcripts",
};

typedef struct {
    int kind;
    int nrec;
    ds_sb_t body; /* a JSON array */
} batch_t;

typedef struct {
    batch_t *v;
    size_t n, cap;
} batches_t;

/* One deal's records of each kind: JSON objects joined by ','. */
typedef struct {
    ds_sb_t rec[K_COUNT];
    int n[K_COUNT];
} pending_t;

typedef struct {
    const sim_stream_opts_t *o;
    char *url[K_COUNT]; /* the webhook of each kind */
    char *auth;         /* the Authorization header */

    /* Work of the current phase, handed out under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch_t **work;
    size_t nwork, next, done;
    int quit; /* workers exit */
    int stop; /* duration elapsed: send nothing more */
    double t0;
    double dispatched; /* records handed out, for pacing */

    /* Results. */
    unsigned long long requests, ok_requests, err_requests, sent, accepted;
    unsigned long long status[6]; /* by first digit, [0] = I/O error */
    double *lat;
    size_t nlat, caplat;
    char last_error[256];
} stream_t;

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_until(double t) {
    double d = t - mono_s();
    if (d <= 0) return;
    struct timespec ts = {(time_t)d, (long)((d - floor(d)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- JSON records ------------------------------------------------------- */

static void js_key(ds_sb_t *b, const char *k, int *first) {
    if (!*first) ds_sb_putc(b, ',');
    *first = 0;
    ds_sb_putc(b, '"');
    ds_sb_puts(b, k);
    ds_sb_put(b, "\":", 2);
}

static void js_str(ds_sb_t *b, const char *k, const char *v, int *first) {
    if (!v || !*v) return;
    js_key(b, k, first);
    ds_sb_json_strn(b, v, strlen(v), DS_SB_JSON_SHORT_ESCAPES);
}

static void js_time(ds_sb_t *b, const char *k, int64_t t, int *first) {
    if (!t) return;
    js_key(b, k, first);
    ds_sb_putc(b, '"');
    buf_put_time(b, t);
    ds_sb_putc(b, '"');
}

static ds_sb_t *rec_begin(pending_t *p, int kind) {
    ds_sb_t *b = &p->rec[kind];
    if (p->n[kind]++) ds_sb_putc(b, ',');
    ds_sb_putc(b, '{');
    return b;
}

static void on_account(void *ud, const sim_account_t *a) {
    ds_sb_t *b = rec_begin(ud, K_ACC);
    int f = 1;
    js_str(b, "external_id", a->external_id, &f);
    js_str(b, "name", a->name, &f);
    js_str(b, "industry", a->industry, &f);
    js_str(b, "region", a->region, &f);
    js_str(b, "size_band", a->size_band, &f);
    js_time(b, "created_at", a->created_at, &f);
    ds_sb_putc(b, '}');
}

static void on_opp(void *ud, const sim_opp_row_t *o) {
    ds_sb_t *b = rec_begin(ud, K_OPP);
    int f = 1;
    js_str(b, "external_id", o->external_id, &f);
    js_str(b, "account_external_id", o->account_external_id, &f);
    js_str(b, "owner_id", o->owner_id, &f);
    js_str(b, "product_category", o->product_category, &f);
    js_str(b, "persona", o->persona, &f);
    js_key(b, "amount", &f);
    buf_put_fixed(b, o->amount, 2);
    js_str(b, "currency", o->currency, &f);
    js_str(b, "stage", o->stage, &f);
    js_time(b, "created_at", o->created_at, &f);
    if (o->close_date) {
        js_key(b, "close_date", &f);
        ds_sb_putc(b, '"');
        buf_put_date(b, o->close_date);
        ds_sb_putc(b, '"');
    }
    js_time(b, "closed_at", o->closed_at, &f);
    js_str(b, "outcome", o->outcome, &f);
    js_time(b, "changed_at", o->changed_at, &f);
    ds_sb_putc(b, '}');
}

static void on_interaction(void *ud, const sim_interaction_t *it) {
    ds_sb_t *b = rec_begin(ud, K_INT);
    int f = 1;
    js_str(b, "external_id", it->external_id, &f);
    js_str(b, "opportunity_external_id", it->opportunity_external_id, &f);
    js_str(b, "type", it->type, &f);
    js_str(b, "channel", it->channel, &f);
    js_time(b, "occurred_at", it->occurred_at, &f);
    if (it->duration_min >= 0) {
        js_key(b, "duration_min", &f);
        ds_sb_i64(b, it->duration_min);
    }
    js_str(b, "outcome", it->outcome, &f);
    if (it->meta_json && *it->meta_json) {
        js_key(b, "meta", &f);
        ds_sb_puts(b, it->meta_json); /* already a JSON object */
    }
    ds_sb_putc(b, '}');
}

static void on_transcript(void *ud, const sim_transcript_t *tr) {
    ds_sb_t *b = rec_begin(ud, K_TR);
    int f = 1;
    js_str(b, "external_id", tr->external_id, &f);
    js_str(b, "opportunity_external_id", tr->opportunity_external_id, &f);
    js_time(b, "occurred_at", tr->occurred_at, &f);
    js_key(b, "text", &f);
    ds_sb_json_strn(b, tr->text, tr->text_len, DS_SB_JSON_SHORT_ESCAPES);
    ds_sb_putc(b, '}');
}

static void on_truth(void *ud, const sim_truth_t *t) {
    (void)ud;
    (void)t; /* the truth is not part of the CRM feed */
}

/* ---- batching ----------------------------------------------------------- */

static batch_t *batch_new(batches_t *bs, int kind) {
    if (bs->n == bs->cap) {
        bs->cap = bs->cap ? bs->cap * 2 : 16;
        bs->v = realloc(bs->v, bs->cap * sizeof(batch_t));
        if (!bs->v) abort();
    }
    batch_t *b = &bs->v[bs->n++];
    b->kind = kind;
    b->nrec = 0;
    b->body = (ds_sb_t){0};
    ds_sb_putc(&b->body, '[');
    return b;
}

/* The wave's open (unfinished) batch of a kind, as an index into bs: the
 * array moves when it grows, so no pointers are kept across batch_new. */
static batch_t *open_batch(batches_t *bs, long *open, int kind, int room, int max) {
    if (open[kind] >= 0) {
        batch_t *b = &bs->v[open[kind]];
        if (b->nrec + room <= max) return b;
        ds_sb_putc(&b->body, ']');
        open[kind] = -1;
    }
    batch_t *b = batch_new(bs, kind);
    open[kind] = (long)(b - bs->v);
    return b;
}

/* Moves a deal's pending records of one kind into the wave's batches. */
static void add_records(batches_t *bs, long *open, int kind, const ds_sb_t *rec, int n, int max) {
    if (n == 0) return;
    if (n <= max) {
        batch_t *b = open_batch(bs, open, kind, n, max);
        if (b->nrec) ds_sb_putc(&b->body, ',');
        ds_sb_put(&b->body, rec->p, rec->len);
        b->nrec += n;
        return;
    }
    /* Too many for one request: split at record boundaries, found by
     * matching braces outside strings. */
    const char *p = rec->p, *end = rec->p + rec->len;
    while (p < end) {
        const char *q = p;
        int depth = 0, in_str = 0;
        for (; q < end; q++) {
            if (in_str) {
                if (*q == '\\')
                    q++;
                else if (*q == '"')
                    in_str = 0;
            } else if (*q == '"') {
                in_str = 1;
            } else if (*q == '{') {
                depth++;
            } else if (*q == '}' && --depth == 0) {
                q++;
                break;
            }
        }
        batch_t *b = open_batch(bs, open, kind, 1, max);
        if (b->nrec) ds_sb_putc(&b->body, ',');
        ds_sb_put(&b->body, p, (size_t)(q - p));
        b->nrec++;
        p = q < end && *q == ',' ? q + 1 : q;
    }
}

/* ---- HTTP --------------------------------------------------------------- */

/* A worker's client: the user agent, curl's default timeouts, proxies from
 * the environment. */
static int client_new(ds_httpc_t **http, char *errstr, size_t errstr_size) {
    ds_httpc_opts_t o = {.user_agent = "dealscore-sim"};
    return ds_httpc_new(http, &o, errstr, errstr_size);
}

static void record(stream_t *st, const batch_t *b, int status, double lat, const char *err) {
    pthread_mutex_lock(&st->mu);
    st->requests++;
    st->sent += (unsigned long long)b->nrec;
    if (status >= 200 && status < 300) {
        st->ok_requests++;
        st->accepted += (unsigned long long)b->nrec;
    } else {
        st->err_requests++;
        if (err)
            snprintf(st->last_error, sizeof(st->last_error), "%s", err);
        else
            snprintf(st->last_error, sizeof(st->last_error), "HTTP %d from %s", status, kind_path[b->kind]);
    }
    st->status[status > 0 && status < 600 ? status / 100 : 0]++;
    if (st->nlat == st->caplat) {
        st->caplat = st->caplat ? st->caplat * 2 : 1024;
        st->lat = realloc(st->lat, st->caplat * sizeof(double));
        if (!st->lat) abort();
    }
    st->lat[st->nlat++] = lat;
    pthread_mutex_unlock(&st->mu);
}

typedef struct {
    stream_t *st;
    ds_httpc_t *http; /* owned by sim_run_stream */
} worker_t;

/* Posts one batch and records the outcome. ds_httpc keeps the connection
 * alive and replaces once a reused one the server closed while idle. */
static void post_batch(stream_t *st, ds_httpc_t *http, ds_httpc_resp_t *resp, const batch_t *b) {
    const char *headers[] = {st->auth, "Content-Type: application/json", NULL};
    ds_httpc_req_t req = {
        .url = st->url[b->kind], .headers = headers, .body = b->body.p, .body_len = b->body.len};
    char err[256];
    double t1 = mono_s();
    int rc = ds_httpc_request(http, &req, resp, err, sizeof(err));
    record(st, b, rc == 0 ? resp->status : -1, mono_s() - t1, rc == 0 ? NULL : err);
}

static void *worker(void *arg) {
    worker_t *w = arg;
    stream_t *st = w->st;
    ds_httpc_resp_t resp = {0};
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->quit && st->next >= st->nwork) pthread_cond_wait(&st->cv, &st->mu);
        if (st->quit) break;
        batch_t *b = st->work[st->next++];
        double at = st->t0 + st->dispatched / st->o->rate;
        st->dispatched += b->nrec;
        /* Past the duration by schedule or by the clock (a slow server
         * makes the schedule lag behind). */
        double end = st->t0 + st->o->duration;
        int skip = st->stop || at >= end || mono_s() >= end;
        if (skip) st->stop = 1;
        pthread_mutex_unlock(&st->mu);

        if (!skip) {
            sleep_until(at);
            post_batch(st, w->http, &resp, b);
        }

        pthread_mutex_lock(&st->mu);
        st->done++;
        pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    ds_httpc_resp_clear(&resp);
    return NULL;
}

/* Sends the batches of one kind group and waits for all of them. */
static void run_phase(stream_t *st, batches_t *bs, int k_lo, int k_hi) {
    batch_t **work = malloc((bs->n ? bs->n : 1) * sizeof(batch_t *));
    if (!work) abort();
    size_t n = 0;
    for (size_t i = 0; i < bs->n; i++)
        if (bs->v[i].kind >= k_lo && bs->v[i].kind <= k_hi) work[n++] = &bs->v[i];
    pthread_mutex_lock(&st->mu);
    st->work = work;
    st->nwork = n;
    st->next = 0;
    st->done = 0;
    pthread_cond_broadcast(&st->cv);
    while (st->done < n) pthread_cond_wait(&st->cv, &st->mu);
    st->work = NULL;
    st->nwork = st->next = st->done = 0;
    pthread_mutex_unlock(&st->mu);
    free(work);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p) {
    if (!n) return NAN;
    size_t i = (size_t)ceil(p * (double)n) - 1;
    return v[i < n ? i : n - 1];
}

/* The webhook URLs under the base URL http://host[:port][/prefix], and the
 * Authorization header. */
static int stream_urls(stream_t *st, const char *url, char *errstr, size_t errstr_size) {
    ds_httpc_url_t u;
    char why[160];
    if (ds_httpc_url_parse(url, &u, why, sizeof(why)) != 0) {
        snprintf(errstr, errstr_size, "invalid --stream URL %s: %s", url, why);
        return -1;
    }
    size_t n = strlen(url);
    while (n && url[n - 1] == '/') n--;
    for (int k = 0; k < K_COUNT; k++) {
        ds_sb_t b;
        b = (ds_sb_t){0};
        ds_sb_put(&b, url, n);
        ds_sb_puts(&b, kind_path[k]);
        ds_sb_putc(&b, '\0');
        st->url[k] = b.p;
    }
    ds_sb_t a;
    a = (ds_sb_t){0};
    ds_sb_puts(&a, "Authorization: Bearer ");
    ds_sb_puts(&a, st->o->token);
    ds_sb_putc(&a, '\0');
    st->auth = a.p;
    return 0;
}

/* Fails fast when nothing listens: a connection, no request. */
static int probe(stream_t *st, char *errstr, size_t errstr_size) {
    ds_httpc_t *http;
    char why[256];
    int rc = client_new(&http, why, sizeof(why));
    if (rc == 0) rc = ds_httpc_connect(http, st->url[0], why, sizeof(why));
    ds_httpc_destroy(http);
    if (rc != 0) snprintf(errstr, errstr_size, "could not connect to %s: %s", st->o->url, why);
    return rc;
}

static void stream_free(stream_t *st) {
    for (int k = 0; k < K_COUNT; k++) free(st->url[k]);
    free(st->auth);
    free(st->lat);
    free(st);
}

int sim_run_stream(const sim_stream_opts_t *o, char *errstr, size_t errstr_size) {
    stream_t *st = calloc(1, sizeof(*st));
    if (!st) abort();
    st->o = o;
    if (stream_urls(st, o->url, errstr, errstr_size) != 0 || probe(st, errstr, errstr_size) != 0) {
        stream_free(st);
        return -1;
    }
    worker_t *ws = calloc((size_t)o->concurrency, sizeof(worker_t));
    if (!ws) abort();
    for (int i = 0; i < o->concurrency; i++) {
        ws[i].st = st;
        if (client_new(&ws[i].http, errstr, errstr_size) != 0) {
            for (int j = 0; j < i; j++) ds_httpc_destroy(ws[j].http);
            free(ws);
            stream_free(st);
            return -1;
        }
    }

    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    pthread_t *tids = calloc((size_t)o->concurrency, sizeof(pthread_t));
    if (!tids) abort();
    for (int i = 0; i < o->concurrency; i++) pthread_create(&tids[i], NULL, worker, &ws[i]);

    sim_t *sim = sim_new(&o->sim, 1);
    sim_scratch_t *sc = sim_scratch_new();
    long nacc = sim_account_count(sim);
    unsigned char *acc_sent = calloc((size_t)nacc, 1);
    /* All accounts are generated up front (cheap) and sent when a deal first
     * refers to one. */
    pending_t accs;
    for (int k = 0; k < K_COUNT; k++) accs.rec[k] = (ds_sb_t){0};
    memset(accs.n, 0, sizeof(accs.n));
    pending_t pd;
    for (int k = 0; k < K_COUNT; k++) pd.rec[k] = (ds_sb_t){0};
    sim_sink_t sink = {&pd, on_account, on_opp, on_interaction, on_transcript, on_truth};

    st->t0 = mono_s();
    long i = 0;
    long wave_target = (long)o->batch * o->concurrency * 2;
    while (i < o->sim.opportunities && !st->stop) {
        batches_t bs = {0};
        long open[K_COUNT] = {-1, -1, -1, -1};
        long wave_recs = 0;
        while (i < o->sim.opportunities && wave_recs < wave_target) {
            for (int k = 0; k < K_COUNT; k++) {
                ds_sb_reset(&pd.rec[k]);
                pd.n[k] = 0;
            }
            sim_deal(sim, i++, &sink, sc);
            /* The deal's account, if not sent yet: its id is in the first
             * opportunity row ("account_external_id":"acc-NNNNNNN"). */
            const char *ap = memmem(pd.rec[K_OPP].p, pd.rec[K_OPP].len, "\"account_external_id\":\"acc-", 27);
            if (ap) {
                long ai = strtol(ap + 27, NULL, 10) - 1;
                if (ai >= 0 && ai < nacc && !acc_sent[ai]) {
                    acc_sent[ai] = 1;
                    ds_sb_reset(&accs.rec[K_ACC]);
                    accs.n[K_ACC] = 0;
                    sim_sink_t as = {&accs, on_account, on_opp, on_interaction, on_transcript, on_truth};
                    sim_emit_account(sim, ai, &as);
                    add_records(&bs, open, K_ACC, &accs.rec[K_ACC], accs.n[K_ACC], o->batch);
                    wave_recs++;
                }
            }
            for (int k = K_OPP; k < K_COUNT; k++) {
                add_records(&bs, open, k, &pd.rec[k], pd.n[k], o->batch);
                wave_recs += pd.n[k];
            }
        }
        for (int k = 0; k < K_COUNT; k++)
            if (open[k] >= 0) ds_sb_putc(&bs.v[open[k]].body, ']');
        run_phase(st, &bs, K_ACC, K_ACC);
        run_phase(st, &bs, K_OPP, K_OPP);
        run_phase(st, &bs, K_INT, K_TR);
        for (size_t j = 0; j < bs.n; j++) ds_sb_free(&bs.v[j].body);
        free(bs.v);
    }
    double elapsed = mono_s() - st->t0;

    pthread_mutex_lock(&st->mu);
    st->quit = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    for (int t = 0; t < o->concurrency; t++) {
        pthread_join(tids[t], NULL);
        ds_httpc_destroy(ws[t].http);
    }
    free(tids);
    free(ws);

    qsort(st->lat, st->nlat, sizeof(double), cmp_double);
    fprintf(stderr,
            "dealscore-sim stream: %ld opportunities generated in %.2f s; requests %llu (2xx %llu, "
            "errors %llu: 4xx %llu, 5xx %llu, I/O %llu); records sent %llu, accepted %llu "
            "(%.0f/s)\n",
            i, elapsed, st->requests, st->ok_requests, st->err_requests, st->status[4], st->status[5],
            st->status[0], st->sent, st->accepted, elapsed > 0 ? (double)st->sent / elapsed : 0.0);
    fprintf(stderr, "dealscore-sim stream: latency ms p50 %.2f p90 %.2f p99 %.2f max %.2f\n",
            pct(st->lat, st->nlat, 0.50) * 1e3, pct(st->lat, st->nlat, 0.90) * 1e3,
            pct(st->lat, st->nlat, 0.99) * 1e3, st->nlat ? st->lat[st->nlat - 1] * 1e3 : NAN);
    if (st->err_requests) fprintf(stderr, "dealscore-sim stream: last error: %s\n", st->last_error);
    int rc = st->err_requests ? 1 : 0;

    for (int k = 0; k < K_COUNT; k++) {
        ds_sb_free(&pd.rec[k]);
        ds_sb_free(&accs.rec[k]);
    }
    free(acc_sent);
    sim_scratch_destroy(sc);
    sim_destroy(sim);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    stream_free(st);
    return rc;
}
