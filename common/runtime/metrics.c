/* Prometheus registry: one mutex, metrics kept in registration order and
 * rendered grouped by name. */
#include "runtime/metrics.h"
#include "base/common.h"
#include "base/sb.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } mtype_t;

struct ds_metric_s {
    mtype_t type;
    char *name;
    char *help;
    char *labels;
    double value;
    double *bounds;
    unsigned long long *counts; /* per bucket, not cumulative; last is +Inf */
    size_t nbounds;
    double sum;
    unsigned long long count;
    ds_metrics_t *owner;
};

struct ds_metrics_s {
    pthread_mutex_t mu;
    ds_metric_t **items;
    size_t n, cap;
};

const double ds_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t ds_metrics_latency_nbuckets = DS_ARRAY_SIZE(ds_metrics_latency_buckets);

ds_metrics_t *ds_metrics_new(void) {
    ds_metrics_t *m = ds_calloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void ds_metrics_destroy(ds_metrics_t *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        ds_metric_t *x = m->items[i];
        free(x->name);
        free(x->help);
        free(x->labels);
        free(x->bounds);
        free(x->counts);
        free(x);
    }
    free(m->items);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static ds_metric_t *get(ds_metrics_t *m, mtype_t type, const char *name, const char *help, const char *labels,
                        const double *buckets, size_t nb) {
    const char *lab = labels ? labels : "";
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n; i++) {
        ds_metric_t *x = m->items[i];
        if (strcmp(x->name + 10, name) == 0 && strcmp(x->labels, lab) == 0) {
            ds_assert(x->type == type);
            pthread_mutex_unlock(&m->mu);
            return x;
        }
    }
    ds_metric_t *x = ds_calloc(1, sizeof *x);
    x->type = type;
    x->name = ds_asprintf("dealscore_%s", name);
    x->help = ds_strdup(help ? help : "");
    x->labels = ds_strdup(lab);
    x->owner = m;
    if (type == M_HISTOGRAM) {
        x->bounds = ds_malloc(nb * sizeof(double));
        memcpy(x->bounds, buckets, nb * sizeof(double));
        x->nbounds = nb;
        x->counts = ds_calloc(nb + 1, sizeof(unsigned long long));
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 32;
        m->items = ds_realloc(m->items, m->cap * sizeof *m->items);
    }
    m->items[m->n++] = x;
    pthread_mutex_unlock(&m->mu);
    return x;
}

ds_metric_t *ds_metrics_counter(ds_metrics_t *m, const char *name, const char *help, const char *labels) {
    return get(m, M_COUNTER, name, help, labels, NULL, 0);
}

ds_metric_t *ds_metrics_gauge(ds_metrics_t *m, const char *name, const char *help, const char *labels) {
    return get(m, M_GAUGE, name, help, labels, NULL, 0);
}

ds_metric_t *ds_metrics_histogram(ds_metrics_t *m, const char *name, const char *help, const char *labels,
                                  const double *buckets, size_t nbuckets) {
    return get(m, M_HISTOGRAM, name, help, labels, buckets, nbuckets);
}

void ds_metric_add(ds_metric_t *x, double v) {
    pthread_mutex_lock(&x->owner->mu);
    x->value += v;
    pthread_mutex_unlock(&x->owner->mu);
}

void ds_metric_set(ds_metric_t *x, double v) {
    pthread_mutex_lock(&x->owner->mu);
    x->value = v;
    pthread_mutex_unlock(&x->owner->mu);
}

void ds_metric_observe(ds_metric_t *x, double v) {
    pthread_mutex_lock(&x->owner->mu);
    size_t i = 0;
    while (i < x->nbounds && v > x->bounds[i]) i++;
    x->counts[i]++;
    x->sum += v;
    x->count++;
    pthread_mutex_unlock(&x->owner->mu);
}

double ds_metric_value(const ds_metric_t *x) {
    pthread_mutex_lock(&x->owner->mu);
    double v = x->type == M_HISTOGRAM ? (double)x->count : x->value;
    pthread_mutex_unlock(&x->owner->mu);
    return v;
}

static void fmt_labels(char *out, size_t sz, const char *labels, const char *extra) {
    if (!*labels && !extra)
        out[0] = '\0';
    else if (!*labels)
        snprintf(out, sz, "{%s}", extra);
    else if (!extra)
        snprintf(out, sz, "{%s}", labels);
    else
        snprintf(out, sz, "{%s,%s}", labels, extra);
}

static void fmt_num(char *out, size_t sz, double v) {
    if (isinf(v))
        snprintf(out, sz, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        snprintf(out, sz, "NaN");
    else
        snprintf(out, sz, "%.15g", v);
}

char *ds_metrics_render(ds_metrics_t *m) {
    ds_sb_t b = {0};
    ds_sb_put(&b, "", 0); /* "" rather than NULL when there is nothing to render */
    static const char *tnames[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&m->mu);
    bool *done = ds_calloc(m->n + 1, sizeof(bool));
    for (size_t i = 0; i < m->n; i++) {
        if (done[i]) continue;
        ds_metric_t *head = m->items[i];
        ds_sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", head->name, head->help, head->name,
                     tnames[head->type]);
        for (size_t j = i; j < m->n; j++) {
            ds_metric_t *x = m->items[j];
            if (done[j] || strcmp(x->name, head->name) != 0) continue;
            done[j] = true;
            char lab[512], num[64];
            if (x->type != M_HISTOGRAM) {
                fmt_labels(lab, sizeof lab, x->labels, NULL);
                fmt_num(num, sizeof num, x->value);
                ds_sb_printf(&b, "%s%s %s\n", x->name, lab, num);
                continue;
            }
            unsigned long long cum = 0;
            for (size_t k = 0; k <= x->nbounds; k++) {
                char le[80], bound[64];
                cum += x->counts[k];
                fmt_num(bound, sizeof bound, k < x->nbounds ? x->bounds[k] : INFINITY);
                snprintf(le, sizeof le, "le=\"%s\"", bound);
                fmt_labels(lab, sizeof lab, x->labels, le);
                ds_sb_printf(&b, "%s_bucket%s %llu\n", x->name, lab, cum);
            }
            fmt_labels(lab, sizeof lab, x->labels, NULL);
            fmt_num(num, sizeof num, x->sum);
            ds_sb_printf(&b, "%s_sum%s %s\n%s_count%s %llu\n", x->name, lab, num, x->name, lab, x->count);
        }
    }
    free(done);
    pthread_mutex_unlock(&m->mu);
    return b.p;
}
