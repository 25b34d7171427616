/* CSV mode driver: generator threads fill chunk buffers, the calling thread
 * writes them out in chunk order, so the files are identical whatever the
 * number of threads. Memory stays bounded by (slots x chunk). */
#include "run.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "csvout.h"

#define CHUNK 512

typedef struct {
    sim_bufset_t bs;
    long ready_chunk;    /* chunk whose data the slot holds, -1 if none */
    long writable_chunk; /* the chunk a worker may put here next */
} slot_t;

typedef struct {
    const sim_t *sim;
    long n, nchunks, next;
    slot_t *slots;
    int nslots;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} pipeline_t;

static void gen_chunk(const sim_t *sim, long c, long n, sim_bufset_t *bs,
                      sim_scratch_t *sc)
{
    sim_sink_t sink = sim_csv_sink(bs);
    long end = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
    for (long i = c * CHUNK; i < end; i++)
        sim_deal(sim, i, &sink, sc);
}

static void *worker(void *arg)
{
    pipeline_t *pl = arg;
    sim_scratch_t *sc = sim_scratch_new();
    pthread_mutex_lock(&pl->mu);
    for (;;) {
        if (pl->stop || pl->next >= pl->nchunks)
            break;
        long c = pl->next++;
        slot_t *s = &pl->slots[c % pl->nslots];
        while (s->writable_chunk != c && !pl->stop)
            pthread_cond_wait(&pl->cv, &pl->mu);
        if (pl->stop)
            break;
        pthread_mutex_unlock(&pl->mu);
        gen_chunk(pl->sim, c, pl->n, &s->bs, sc);
        pthread_mutex_lock(&pl->mu);
        s->ready_chunk = c;
        pthread_cond_broadcast(&pl->cv);
    }
    pthread_mutex_unlock(&pl->mu);
    sim_scratch_destroy(sc);
    return NULL;
}

static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return -1;
            buf[i] = c;
        }
    }
    return 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int run_org(const sim_run_opts_t *o, int org, const char *dir, sim_stats_t *st,
                   char *errstr, size_t errstr_size)
{
    FILE *files[SIM_F_COUNT] = {0};
    int rc = -1;
    sim_t *sim = NULL;
    if (mkdir_p(dir) != 0) {
        snprintf(errstr, errstr_size, "could not create directory %s: %s", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < SIM_F_COUNT; i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", dir, sim_file_names[i]);
        files[i] = fopen(path, "wb");
        if (!files[i]) {
            snprintf(errstr, errstr_size, "could not create %s: %s", path, strerror(errno));
            goto out;
        }
        setvbuf(files[i], NULL, _IOFBF, 1 << 20);
    }

    sim = sim_new(&o->sim, org);
    sim_bufset_t head;
    sim_bufset_init(&head);
    sim_csv_headers(&head);
    sim_sink_t hs = sim_csv_sink(&head);
    sim_emit_accounts(sim, &hs);
    int wrc = sim_bufset_flush(&head, files, st);
    sim_bufset_close(&head);
    if (wrc != 0)
        goto write_failed;

    long n = o->sim.opportunities;
    long nchunks = (n + CHUNK - 1) / CHUNK;
    int nthreads = o->threads < 1 ? 1 : o->threads;
    if (nthreads == 1) {
        sim_bufset_t bs;
        sim_bufset_init(&bs);
        sim_scratch_t *sc = sim_scratch_new();
        for (long c = 0; c < nchunks && wrc == 0; c++) {
            gen_chunk(sim, c, n, &bs, sc);
            wrc = sim_bufset_flush(&bs, files, st);
        }
        sim_scratch_destroy(sc);
        sim_bufset_close(&bs);
    } else {
        pipeline_t pl = {.sim = sim, .n = n, .nchunks = nchunks, .next = 0};
        pl.nslots = 3 * nthreads;
        pl.slots = calloc((size_t)pl.nslots, sizeof(slot_t));
        if (!pl.slots)
            abort();
        for (int i = 0; i < pl.nslots; i++) {
            sim_bufset_init(&pl.slots[i].bs);
            pl.slots[i].ready_chunk = -1;
            pl.slots[i].writable_chunk = i;
        }
        pthread_mutex_init(&pl.mu, NULL);
        pthread_cond_init(&pl.cv, NULL);
        pthread_t *tids = calloc((size_t)nthreads, sizeof(pthread_t));
        if (!tids)
            abort();
        for (int t = 0; t < nthreads; t++)
            pthread_create(&tids[t], NULL, worker, &pl);
        for (long c = 0; c < nchunks; c++) {
            slot_t *s = &pl.slots[c % pl.nslots];
            pthread_mutex_lock(&pl.mu);
            while (s->ready_chunk != c)
                pthread_cond_wait(&pl.cv, &pl.mu);
            pthread_mutex_unlock(&pl.mu);
            /* The slot is ours until writable_chunk moves on. */
            if (wrc == 0)
                wrc = sim_bufset_flush(&s->bs, files, st);
            pthread_mutex_lock(&pl.mu);
            s->ready_chunk = -1;
            s->writable_chunk = c + pl.nslots;
            if (wrc != 0)
                pl.stop = 1;
            pthread_cond_broadcast(&pl.cv);
            pthread_mutex_unlock(&pl.mu);
            if (wrc != 0)
                break;
        }
        for (int t = 0; t < nthreads; t++)
            pthread_join(tids[t], NULL);
        free(tids);
        for (int i = 0; i < pl.nslots; i++)
            sim_bufset_close(&pl.slots[i].bs);
        free(pl.slots);
        pthread_cond_destroy(&pl.cv);
        pthread_mutex_destroy(&pl.mu);
    }
    if (wrc != 0)
        goto write_failed;
    rc = 0;
    goto out;

write_failed:
    snprintf(errstr, errstr_size, "could not write to %s: %s", dir, strerror(errno));
out:
    for (int i = 0; i < SIM_F_COUNT; i++) {
        if (files[i] && fclose(files[i]) != 0 && rc == 0) {
            snprintf(errstr, errstr_size, "could not write %s/%s: %s", dir, sim_file_names[i],
                     strerror(errno));
            rc = -1;
        }
    }
    sim_destroy(sim);
    return rc;
}

int sim_run_csv(const sim_run_opts_t *o, char *errstr, size_t errstr_size)
{
    sim_stats_t *st = calloc(1, sizeof(*st));
    if (!st)
        abort();
    double t_start = mono_s();
    int rc = 0;
    for (int org = 1; org <= o->orgs && rc == 0; org++) {
        char dir[4096];
        if (o->orgs > 1)
            snprintf(dir, sizeof(dir), "%s/org%d", o->out, org);
        else
            snprintf(dir, sizeof(dir), "%s", o->out);
        rc = run_org(o, org, dir, st, errstr, errstr_size);
    }
    double el = mono_s() - t_start;
    if (rc == 0) {
        long deals = o->sim.opportunities * (long)o->orgs;
        uint64_t closed = st->won + st->lost;
        uint64_t nt = st->truth_won + st->truth_lost;
        fprintf(stderr,
                "dealscore-sim: %ld opportunities (%llu won, %llu lost, %llu open), "
                "%llu accounts, %llu opportunity rows, %llu interactions, %llu transcripts, "
                "%llu truth rows\n",
                deals, (unsigned long long)st->won, (unsigned long long)st->lost,
                (unsigned long long)((uint64_t)deals - closed),
                (unsigned long long)st->rows[SIM_F_ACCOUNTS],
                (unsigned long long)st->rows[SIM_F_OPPS],
                (unsigned long long)st->rows[SIM_F_INTERACTIONS],
                (unsigned long long)st->rows[SIM_F_TRANSCRIPTS],
                (unsigned long long)st->rows[SIM_F_TRUTH]);
        fprintf(stderr,
                "dealscore-sim: win rate %.3f of closed; truth on %llu closed-deal checkpoints: "
                "Bayes-optimal AUC %.4f, Brier %.4f, log loss %.4f, mean p won %.3f lost %.3f\n",
                closed ? (double)st->won / (double)closed : 0.0, (unsigned long long)nt,
                sim_stats_auc(st), nt ? st->brier / (double)nt : NAN,
                nt ? st->logloss / (double)nt : NAN,
                st->truth_won ? st->sum_p_won / (double)st->truth_won : NAN,
                st->truth_lost ? st->sum_p_lost / (double)st->truth_lost : NAN);
        fprintf(stderr, "dealscore-sim: %.2f s, %.0f opportunities/s (%d threads)\n", el,
                el > 0 ? (double)deals / el : 0.0, o->threads);
    }
    free(st);
    return rc;
}
