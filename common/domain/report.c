/* The model report as self-contained HTML with inline SVG, and as JSON (see
 * report.h). Inline SVG in HTML5 needs no xmlns, so the page holds
 * no URL at all. */
#include "domain/report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/sb.h"

#define ERR(...)                                                                                             \
    do {                                                                                                     \
        if (errstr && errstr_size) snprintf(errstr, errstr_size, __VA_ARGS__);                               \
    } while (0)

/* ---- HTML text -------------------------------------------------------------- */

/* Text as HTML (also safe inside attribute values); NULL as "-". */
static void sb_esc(ds_sb_t *sb, const char *s) {
    if (!s) {
        ds_sb_puts(sb, "-");
        return;
    }
    for (; *s; s++) {
        switch (*s) {
        case '&': ds_sb_puts(sb, "&amp;"); break;
        case '<': ds_sb_puts(sb, "&lt;"); break;
        case '>': ds_sb_puts(sb, "&gt;"); break;
        case '"': ds_sb_puts(sb, "&quot;"); break;
        case '\'': ds_sb_puts(sb, "&#39;"); break;
        default: ds_sb_put(sb, s, 1);
        }
    }
}

/* A figure with `digits` decimals, or "-" when not computed. */
static void sb_num(ds_sb_t *sb, double v, int digits) {
    if (!isfinite(v))
        ds_sb_puts(sb, "-");
    else
        ds_sb_printf(sb, "%.*f", digits, v);
}

/* ---- sorting features ------------------------------------------------------- */

static int cmp_feature(const void *pa, const void *pb) {
    const ds_report_feature_t *a = *(const ds_report_feature_t *const *)pa;
    const ds_report_feature_t *b = *(const ds_report_feature_t *const *)pb;
    double x = isfinite(a->mean_abs_shap) ? a->mean_abs_shap : -1;
    double y = isfinite(b->mean_abs_shap) ? b->mean_abs_shap : -1;
    if (x != y) return x > y ? -1 : 1;
    return strcmp(a->name ? a->name : "", b->name ? b->name : "");
}

/* Pointers to r's features, most important first. Caller frees. */
static const ds_report_feature_t **sorted_features(const ds_report_t *r) {
    const ds_report_feature_t **v = ds_malloc((r->n_features ? r->n_features : 1) * sizeof *v);
    for (size_t i = 0; i < r->n_features; i++) v[i] = &r->features[i];
    qsort(v, r->n_features, sizeof *v, cmp_feature);
    return v;
}

/* ---- SVG charts ------------------------------------------------------------- */

/* A square plot of [0, 1] x [0, 1]: PLOT px wide, at (LEFT, TOP). */
#define PLOT 300
#define LEFT 50
#define TOP 20
#define COLOR_MODEL "#1f6feb"
#define COLOR_PRIOR "#d29922"
#define COLOR_ACTIVE "#8957e5"

static double px(double v) { return LEFT + v * PLOT; }
static double py(double v) { return TOP + (1 - v) * PLOT; }

static void svg_axes(ds_sb_t *sb, const char *title, const char *xlabel, const char *ylabel) {
    ds_sb_printf(sb,
                 "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
                 "aria-label=\"",
                 LEFT + PLOT + 20, TOP + PLOT + 44, LEFT + PLOT + 20, TOP + PLOT + 44);
    sb_esc(sb, title);
    ds_sb_puts(sb, "\">\n");
    ds_sb_printf(sb,
                 "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fff\" "
                 "stroke=\"#888\"/>\n",
                 LEFT, TOP, PLOT, PLOT);
    for (int i = 0; i <= 5; i++) {
        double v = i / 5.0;
        ds_sb_printf(sb,
                     "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>"
                     "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>\n",
                     px(v), TOP, px(v), TOP + PLOT, LEFT, py(v), LEFT + PLOT, py(v));
        ds_sb_printf(sb,
                     "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.1f</text>"
                     "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.1f</text>\n",
                     px(v), TOP + PLOT + 15, v, LEFT - 6, py(v) + 4, v);
    }
    /* The diagonal: perfect calibration, or a random ranking. */
    ds_sb_printf(sb,
                 "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" "
                 "stroke-dasharray=\"4 4\"/>\n",
                 px(0), py(0), px(1), py(1));
    ds_sb_printf(sb, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">", px(0.5),
                 TOP + PLOT + 32);
    sb_esc(sb, xlabel);
    ds_sb_printf(sb,
                 "</text>\n<text x=\"14\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
                 "transform=\"rotate(-90 14 %.1f)\">",
                 py(0.5), py(0.5));
    sb_esc(sb, ylabel);
    ds_sb_puts(sb, "</text>\n");
}

/* Legend entries stacked inside the plot from (x, y): a corner the curves
 * leave empty (top left for reliability, bottom right for ROC). */
static void svg_legend_box(ds_sb_t *sb, double x, double y, size_t n) {
    ds_sb_printf(sb,
                 "<rect x=\"%.1f\" y=\"%.1f\" width=\"150\" height=\"%.1f\" fill=\"#fff\" "
                 "fill-opacity=\"0.9\" stroke=\"#ddd\"/>\n",
                 x, y, 8.0 + 16.0 * (double)n);
}

static void svg_legend(ds_sb_t *sb, double x, double y, size_t slot, const char *color, const char *dash,
                       const char *text) {
    double ly = y + 16.0 * (double)slot + 16;
    ds_sb_printf(sb,
                 "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                 "stroke-width=\"2\"%s%s%s/>",
                 x + 8, ly - 4, x + 26, ly - 4, color, dash ? " stroke-dasharray=\"" : "", dash ? dash : "",
                 dash ? "\"" : "");
    ds_sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">", x + 32, ly);
    sb_esc(sb, text);
    ds_sb_puts(sb, "</text>\n");
}

static void svg_bins(ds_sb_t *sb, const ds_eval_bin_t *bins, size_t n, const char *color) {
    size_t drawn = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(bins[i].mean_predicted) && isfinite(bins[i].observed_rate)) drawn++;
    if (drawn > 1) {
        ds_sb_printf(sb, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (size_t i = 0; i < n; i++)
            if (isfinite(bins[i].mean_predicted) && isfinite(bins[i].observed_rate))
                ds_sb_printf(sb, "%.1f,%.1f ", px(bins[i].mean_predicted), py(bins[i].observed_rate));
        ds_sb_puts(sb, "\"/>\n");
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(bins[i].mean_predicted) || !isfinite(bins[i].observed_rate)) continue;
        ds_sb_printf(sb, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>",
                     px(bins[i].mean_predicted), py(bins[i].observed_rate), color);
        ds_sb_printf(sb, "predicted %.3f, observed %.3f, %zu rows", bins[i].mean_predicted,
                     bins[i].observed_rate, bins[i].count);
        ds_sb_puts(sb, "</title></circle>\n");
    }
}

static void svg_reliability(ds_sb_t *sb, const ds_report_t *r) {
    svg_axes(sb, "Reliability diagram", "Mean predicted probability", "Observed win rate");
    svg_bins(sb, r->prior_bins, r->prior_bins ? r->n_prior_bins : 0, COLOR_PRIOR);
    svg_bins(sb, r->model_bins, r->model_bins ? r->n_model_bins : 0, COLOR_MODEL);
    double lx = LEFT + 8, ly = TOP + 8;
    svg_legend_box(sb, lx, ly, 3);
    svg_legend(sb, lx, ly, 0, COLOR_MODEL, NULL, "Model");
    svg_legend(sb, lx, ly, 1, COLOR_PRIOR, NULL, "Stage prior");
    svg_legend(sb, lx, ly, 2, "#999", "4 4", "Perfectly calibrated");
    ds_sb_puts(sb, "</svg>\n");
}

static void svg_roc_line(ds_sb_t *sb, const ds_roc_point_t *pts, size_t n, const char *color) {
    if (!pts || n < 2) return;
    ds_sb_printf(sb, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
    for (size_t i = 0; i < n; i++) ds_sb_printf(sb, "%.1f,%.1f ", px(pts[i].fpr), py(pts[i].tpr));
    ds_sb_puts(sb, "\"/>\n");
}

static void svg_roc(ds_sb_t *sb, const ds_report_t *r) {
    svg_axes(sb, "ROC curves", "False positive rate", "True positive rate");
    svg_roc_line(sb, r->prior_roc, r->n_prior_roc, COLOR_PRIOR);
    svg_roc_line(sb, r->model_roc, r->n_model_roc, COLOR_MODEL);
    double lx = LEFT + PLOT - 158, ly = TOP + PLOT - 64;
    char text[64];
    svg_legend_box(sb, lx, ly, 3);
    snprintf(text, sizeof text, isfinite(r->model.roc_auc) ? "Model (AUC %.3f)" : "Model", r->model.roc_auc);
    svg_legend(sb, lx, ly, 0, COLOR_MODEL, NULL, text);
    snprintf(text, sizeof text, isfinite(r->prior.roc_auc) ? "Stage prior (AUC %.3f)" : "Stage prior",
             r->prior.roc_auc);
    svg_legend(sb, lx, ly, 1, COLOR_PRIOR, NULL, text);
    svg_legend(sb, lx, ly, 2, "#999", "4 4", "Random");
    ds_sb_puts(sb, "</svg>\n");
}

static void svg_features(ds_sb_t *sb, const ds_report_feature_t *const *f, size_t n) {
    if (n > DS_REPORT_TOP_FEATURES) n = DS_REPORT_TOP_FEATURES;
    const int label_w = 260, bar_w = 300, row_h = 22, width = label_w + bar_w + 70;
    double max = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(f[i]->mean_abs_shap) && f[i]->mean_abs_shap > max) max = f[i]->mean_abs_shap;
    int height = (int)n * row_h + 30;
    ds_sb_printf(sb,
                 "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
                 "aria-label=\"Top features by mean |SHAP|\">\n",
                 width, height, width, height);
    for (size_t i = 0; i < n; i++) {
        double v = isfinite(f[i]->mean_abs_shap) ? f[i]->mean_abs_shap : 0;
        double w = max > 0 ? v / max * bar_w : 0;
        int y = (int)i * row_h + 4;
        ds_sb_printf(sb, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\">", label_w - 8,
                     y + 14);
        sb_esc(sb, f[i]->label ? f[i]->label : f[i]->name);
        ds_sb_printf(sb, "</text><rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>",
                     label_w, y + 2, w, row_h - 6, COLOR_MODEL);
        sb_esc(sb, f[i]->name);
        ds_sb_printf(sb, "</title></rect><text x=\"%.1f\" y=\"%d\" font-size=\"11\">%.4f</text>\n",
                     label_w + w + 6, y + 14, v);
    }
    ds_sb_printf(sb,
                 "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#555\">mean |contribution|, "
                 "log-odds</text>\n</svg>\n",
                 label_w, (int)n * row_h + 22);
}

/* The backtest: per month the P10-P90 band (bar), the expected won
 * amount (tick) and the actual (dot: green inside the band, red outside). */
static void svg_backtest(ds_sb_t *sb, const ds_forecast_month_t *m, size_t n) {
    const double w = 640, h = 260, left = 70, top = 16, plot_w = w - left - 16, plot_h = h - top - 40;
    double max = 0;
    for (size_t i = 0; i < n; i++) max = fmax(max, fmax(m[i].exact.p90, m[i].actual));
    if (!(max > 0)) max = 1;
    double slot = plot_w / (double)n;
    ds_sb_printf(sb,
                 "<svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
                 "aria-label=\"Forecast backtest\">\n<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" "
                 "height=\"%.0f\" fill=\"#fff\" stroke=\"#888\"/>\n",
                 w, h, w, h, left, top, plot_w, plot_h);
    for (int g = 0; g <= 4; g++) {
        double y = top + plot_h * (1 - g / 4.0);
        ds_sb_printf(sb,
                     "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                     "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.0f</text>\n",
                     left, y, left + plot_w, y, left - 6, y + 4, max * g / 4.0);
    }
    for (size_t i = 0; i < n; i++) {
        double cx = left + slot * ((double)i + 0.5);
        double y10 = top + plot_h * (1 - m[i].exact.p10 / max),
               y90 = top + plot_h * (1 - m[i].exact.p90 / max);
        double ye = top + plot_h * (1 - m[i].exact.expected / max),
               ya = top + plot_h * (1 - m[i].actual / max);
        ds_sb_printf(
            sb,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
            "fill-opacity=\"0.25\"/><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"2\"/><circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>",
            cx - slot * 0.3, y90, slot * 0.6, fmax(y10 - y90, 1), COLOR_MODEL, cx - slot * 0.3, ye,
            cx + slot * 0.3, ye, COLOR_MODEL, cx, ya, m[i].inside ? "#1a7f37" : "#cf222e");
        sb_esc(sb, m[i].month);
        ds_sb_printf(sb, ": expected %.0f, band %.0f-%.0f, actual %.0f</title></circle>\n",
                     m[i].exact.expected, m[i].exact.p10, m[i].exact.p90, m[i].actual);
        if (n <= 12 || i % ((n + 11) / 12) == 0) {
            ds_sb_printf(sb, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"middle\">", cx,
                         top + plot_h + 14);
            sb_esc(sb, m[i].month);
            ds_sb_puts(sb, "</text>\n");
        }
    }
    ds_sb_printf(sb,
                 "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" fill=\"#555\">bar: P10-P90 of the won amount; "
                 "tick: expected; dot: actual (green inside, red outside)</text>\n</svg>\n",
                 left, h - 8);
}

/* Per horizon: the periods judged, the share inside the band, the mean
 * expected and actual amounts. */
static void horizon_table(ds_sb_t *sb, const ds_report_t *r) {
    ds_sb_puts(sb, "<table>\n<thead><tr><th>Forecast made</th><th>Periods</th><th>Inside P10-P90</th>"
                   "<th>Mean expected</th><th>Mean actual</th></tr></thead>\n<tbody>\n");
    for (int h = 0; h < DS_FORECAST_HORIZONS; h++) {
        const ds_forecast_month_t *hm;
        size_t nh = ds_forecast_horizon(r->backtest, r->n_backtest, h, &hm);
        ds_forecast_judged_t j;
        ds_forecast_judge(hm, nh, &j);
        if (nh == 0) continue;
        ds_sb_printf(sb, "<tr><th>%s</th><td>%zu</td><td>%zu (%.0f %%)</td><td>%.0f</td><td>%.0f</td></tr>\n",
                     ds_forecast_horizon_name(h), j.periods, j.inside, 100 * ds_forecast_coverage(hm, nh),
                     j.expected, j.actual);
    }
    ds_sb_puts(sb, "</tbody>\n</table>\n");
}

static void backtest_section(ds_sb_t *sb, const ds_report_t *r) {
    const ds_forecast_month_t *m;
    size_t n = ds_forecast_horizon(r->backtest, r->n_backtest, 0, &m);
    size_t in = 0;
    for (size_t i = 0; i < n; i++) in += m[i].inside;
    ds_sb_printf(
        sb,
        "<h2>Forecast backtest (held-out months)</h2>\n<p>At the start of each month after the "
        "training fold, the open deals whose close date fell in the month, scored on their features "
        "of that moment, each with its probability of winning within the month (its win probability "
        "times its stage's in-month rate, learnt from the months before): the band holds what "
        "they won in %zu of %zu months (%.0f %%). The normal approximation the forecast view uses is "
        "off the exact P10/P90 by %.1f %% of the band's width on average.</p>\n",
        in, n, 100 * ds_forecast_coverage(m, n), 100 * ds_forecast_approx_error(m, n));
    ds_sb_puts(sb, "<p>The same replay judges the forecasts made 1 to 3 months before the close month, with "
                   "the rates learnt by then, and each quarter's forecast made at its start:</p>\n");
    horizon_table(sb, r);
    svg_backtest(sb, m, n);
    ds_sb_puts(sb, "<table>\n<thead><tr><th>Month</th><th>Deals</th><th>Amount</th><th>Expected</th>"
                   "<th>P10</th><th>P90</th><th>Actual</th><th>Inside</th></tr></thead>\n<tbody>\n");
    for (size_t i = 0; i < n; i++) {
        ds_sb_puts(sb, "<tr><th>");
        sb_esc(sb, m[i].month);
        ds_sb_printf(sb,
                     "</th><td>%zu</td><td>%.0f</td><td>%.0f</td><td>%.0f</td><td>%.0f</td><td>%.0f</td>"
                     "<td>%s</td></tr>\n",
                     m[i].exact.n, m[i].exact.amount, m[i].exact.expected, m[i].exact.p10, m[i].exact.p90,
                     m[i].actual, m[i].inside ? "yes" : "no");
    }
    ds_sb_puts(sb, "</tbody>\n</table>\n");
}

/* ---- tables ------------------------------------------------------------------ */

/* The better of two figures gets class "best": higher for AUC, lower for
 * losses. */
static void sb_cell(ds_sb_t *sb, double v, double other, int higher_is_better, int digits) {
    int best = isfinite(v) && isfinite(other) && (higher_is_better ? v > other : v < other);
    ds_sb_puts(sb, best ? "<td class=\"best\">" : "<td>");
    sb_num(sb, v, digits);
    ds_sb_puts(sb, "</td>");
}

static void overall_table(ds_sb_t *sb, const ds_report_t *r) {
    static const struct {
        const char *name;
        size_t off;
        int higher, digits;
    } rows[] = {
        {"ROC AUC", offsetof(ds_eval_metrics_t, roc_auc), 1, 4},
        {"PR AUC (average precision)", offsetof(ds_eval_metrics_t, pr_auc), 1, 4},
        {"Log loss", offsetof(ds_eval_metrics_t, log_loss), 0, 4},
        {"Brier score", offsetof(ds_eval_metrics_t, brier), 0, 4},
        {"Expected calibration error", offsetof(ds_eval_metrics_t, ece), 0, 4},
        {"Win rate", offsetof(ds_eval_metrics_t, positive_rate), -1, 4},
    };
    ds_sb_puts(sb, "<table><thead><tr><th>Metric</th><th>Model</th><th>Stage prior</th>");
    if (r->has_active) {
        ds_sb_puts(sb, "<th>Active model (");
        sb_esc(sb, r->active_version);
        ds_sb_puts(sb, ")</th>");
    }
    ds_sb_puts(sb, "</tr></thead><tbody>\n");
    for (size_t i = 0; i < DS_ARRAY_SIZE(rows); i++) {
        double m = *(const double *)((const char *)&r->model + rows[i].off);
        double p = *(const double *)((const char *)&r->prior + rows[i].off);
        double a = *(const double *)((const char *)&r->active + rows[i].off);
        ds_sb_printf(sb, "<tr><th>%s</th>", rows[i].name);
        if (rows[i].higher < 0) {
            sb_cell(sb, m, NAN, 1, rows[i].digits);
            sb_cell(sb, p, NAN, 1, rows[i].digits);
            if (r->has_active) sb_cell(sb, a, NAN, 1, rows[i].digits);
        } else {
            /* The model is marked against the best of the others. */
            double other = p;
            if (r->has_active && isfinite(a) &&
                (!isfinite(other) || (rows[i].higher ? a > other : a < other)))
                other = a;
            sb_cell(sb, m, other, rows[i].higher, rows[i].digits);
            sb_cell(sb, p, m, rows[i].higher, rows[i].digits);
            if (r->has_active) sb_cell(sb, a, m, rows[i].higher, rows[i].digits);
        }
        ds_sb_puts(sb, "</tr>\n");
    }
    ds_sb_printf(sb, "<tr><th>Rows</th><td>%zu</td><td>%zu</td>", r->model.n, r->prior.n);
    if (r->has_active) ds_sb_printf(sb, "<td>%zu</td>", r->active.n);
    ds_sb_puts(sb, "</tr>\n</tbody></table>\n");
}

static void breakdown_table(ds_sb_t *sb, const ds_report_table_t *t) {
    ds_sb_puts(sb, "<h2>");
    sb_esc(sb, t->title ? t->title : "Breakdown");
    ds_sb_puts(sb, "</h2>\n<table><thead><tr><th rowspan=\"2\">");
    sb_esc(sb, t->key_header ? t->key_header : "Group");
    ds_sb_puts(sb, "</th><th rowspan=\"2\">Rows</th><th rowspan=\"2\">Win rate</th>"
                   "<th colspan=\"2\">ROC AUC</th><th colspan=\"2\">Log loss</th>"
                   "<th colspan=\"2\">Brier</th><th colspan=\"2\">ECE</th></tr>\n<tr>"
                   "<th>model</th><th>prior</th><th>model</th><th>prior</th>"
                   "<th>model</th><th>prior</th><th>model</th><th>prior</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < t->n_rows; i++) {
        const ds_report_row_t *row = &t->rows[i];
        ds_sb_puts(sb, "<tr><th>");
        sb_esc(sb, row->key);
        ds_sb_printf(sb, "</th><td>%zu</td><td>", row->model.n);
        sb_num(sb, row->model.positive_rate, 3);
        ds_sb_puts(sb, "</td>");
        sb_cell(sb, row->model.roc_auc, row->prior.roc_auc, 1, 3);
        sb_cell(sb, row->prior.roc_auc, row->model.roc_auc, 1, 3);
        sb_cell(sb, row->model.log_loss, row->prior.log_loss, 0, 3);
        sb_cell(sb, row->prior.log_loss, row->model.log_loss, 0, 3);
        sb_cell(sb, row->model.brier, row->prior.brier, 0, 3);
        sb_cell(sb, row->prior.brier, row->model.brier, 0, 3);
        sb_cell(sb, row->model.ece, row->prior.ece, 0, 3);
        sb_cell(sb, row->prior.ece, row->model.ece, 0, 3);
        ds_sb_puts(sb, "</tr>\n");
    }
    if (!t->n_rows) ds_sb_puts(sb, "<tr><td colspan=\"11\">no rows</td></tr>\n");
    ds_sb_puts(sb, "</tbody></table>\n");
}

static void meta_item(ds_sb_t *sb, const char *name, const char *value) {
    if (!value) return;
    ds_sb_printf(sb, "<dt>%s</dt><dd>", name);
    sb_esc(sb, value);
    ds_sb_puts(sb, "</dd>\n");
}

char *ds_report_html(const ds_report_t *r) {
    ds_sb_t sb = {0};
    const char *title = r->title ? r->title : "dealscore model report";
    ds_sb_puts(&sb, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                    "<title>");
    sb_esc(&sb, title);
    ds_sb_puts(&sb, "</title>\n<style>\n"
                    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;"
                    "max-width:1100px;padding:0 16px;color:#1f2328;line-height:1.4}\n"
                    "h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px}\n"
                    "dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:.9em}\n"
                    "dt{color:#59636e}dd{margin:0}\n"
                    "table{border-collapse:collapse;margin:8px 0;font-size:.9em}\n"
                    "th,td{border:1px solid #d1d9e0;padding:4px 10px;text-align:right}\n"
                    "th{background:#f6f8fa}tbody th{text-align:left;font-weight:normal}\n"
                    "td.best{font-weight:bold;background:#dafbe1}\n"
                    ".decision{padding:10px 14px;border-radius:6px;margin:16px 0}\n"
                    ".activate{background:#dafbe1;border:1px solid #4ac26b}\n"
                    ".keep{background:#fff8c5;border:1px solid #d4a72c}\n"
                    ".charts{display:flex;flex-wrap:wrap;gap:24px}\n"
                    ".chart{background:#fff}figure{margin:0}figcaption{font-weight:bold;margin:4px 0}\n"
                    "</style>\n</head>\n<body>\n<h1>");
    sb_esc(&sb, title);
    ds_sb_puts(&sb, "</h1>\n<dl>\n");
    meta_item(&sb, "Model version", r->model_version);
    meta_item(&sb, "Organization", r->org);
    meta_item(&sb, "Generated at", r->generated_at);
    meta_item(&sb, "Feature version", r->feature_version);
    meta_item(&sb, "Parameters", r->params);
    meta_item(&sb, "Calibration", r->calibration);
    meta_item(&sb, "Training window", r->train_window);
    meta_item(&sb, "Test window", r->test_window);
    ds_sb_printf(&sb, "<dt>Rows</dt><dd>%zu train, %zu calibration, %zu test</dd>\n</dl>\n", r->n_train,
                 r->n_calib, r->n_test);

    ds_sb_printf(&sb, "<div class=\"decision %s\"><strong>%s.</strong> ", r->activate ? "activate" : "keep",
                 r->activate ? "Activate this model" : "Do not activate this model");
    sb_esc(&sb, r->decision_reason ? r->decision_reason : "");
    ds_sb_puts(&sb, "</div>\n");

    ds_sb_puts(&sb, "<h2>Test window: model vs stage prior</h2>\n");
    overall_table(&sb, r);

    ds_sb_puts(&sb, "<div class=\"charts\">\n<figure><figcaption>Reliability</figcaption>\n");
    svg_reliability(&sb, r);
    ds_sb_puts(&sb, "</figure>\n<figure><figcaption>ROC</figcaption>\n");
    svg_roc(&sb, r);
    ds_sb_puts(&sb, "</figure>\n</div>\n");

    const ds_report_feature_t **feat = sorted_features(r);
    ds_sb_printf(&sb, "<h2>Top features by mean |SHAP|</h2>\n");
    if (r->n_features)
        svg_features(&sb, feat, r->n_features);
    else
        ds_sb_puts(&sb, "<p>No feature contributions were computed.</p>\n");
    free(feat);

    for (size_t i = 0; i < r->n_tables; i++) breakdown_table(&sb, &r->tables[i]);
    if (r->backtest && r->n_backtest) backtest_section(&sb, r);
    ds_sb_puts(&sb, "</body>\n</html>\n");
    return sb.p;
}

static int write_file(const char *path, const char *text, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "w");
    if (!f) {
        ERR("could not open %s: %s", path, strerror(errno));
        return DS_EIO;
    }
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        ERR("could not write %s: %s", path, strerror(err));
        return DS_EIO;
    }
    return 0;
}

int ds_report_write_html(const char *path, const ds_report_t *r, char *errstr, size_t errstr_size) {
    if (!path || !r) {
        ERR("missing path or report");
        return DS_EINVAL;
    }
    char *html = ds_report_html(r);
    int rc = write_file(path, html, errstr, errstr_size);
    free(html);
    return rc;
}

/* ---- JSON ------------------------------------------------------------------- */

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *horizons_json(const ds_report_t *r) {
    json_t *a = json_array();
    for (int h = 0; h < DS_FORECAST_HORIZONS; h++) {
        const ds_forecast_month_t *hm;
        size_t nh = ds_forecast_horizon(r->backtest, r->n_backtest, h, &hm);
        ds_forecast_judged_t j;
        ds_forecast_judge(hm, nh, &j);
        json_array_append_new(
            a, json_pack("{s:s,s:I,s:I,s:o,s:o,s:o,s:o}", "horizon", ds_forecast_horizon_name(h), "periods",
                         (json_int_t)j.periods, "inside", (json_int_t)j.inside, "coverage",
                         ds_eval_json_number(ds_forecast_coverage(hm, nh)), "mean_expected",
                         ds_eval_json_number(j.expected), "mean_actual", ds_eval_json_number(j.actual),
                         "approx_error", ds_eval_json_number(ds_forecast_approx_error(hm, nh))));
    }
    return a;
}

static json_t *backtest_json(const ds_report_t *r) {
    json_t *months = json_array();
    const ds_forecast_month_t *m0;
    size_t n0 = ds_forecast_horizon(r->backtest, r->n_backtest, 0, &m0);
    for (size_t i = 0; i < n0; i++) {
        const ds_forecast_month_t *m = &m0[i];
        json_array_append_new(
            months, json_pack("{s:s,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b}", "month", m->month, "deals",
                              (json_int_t)m->exact.n, "amount", ds_eval_json_number(m->exact.amount),
                              "expected", ds_eval_json_number(m->exact.expected), "p10",
                              ds_eval_json_number(m->exact.p10), "p90", ds_eval_json_number(m->exact.p90),
                              "normal_p10", ds_eval_json_number(m->normal.p10), "normal_p90",
                              ds_eval_json_number(m->normal.p90), "actual", ds_eval_json_number(m->actual),
                              "won_later", ds_eval_json_number(m->won_later), "inside", m->inside));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "coverage", ds_eval_json_number(ds_forecast_coverage(m0, n0)),
                     "approx_error", ds_eval_json_number(ds_forecast_approx_error(m0, n0)), "months", months,
                     "horizons", horizons_json(r));
}

json_t *ds_report_json(const ds_report_t *r) {
    json_t *o = json_object();
    json_object_set_new(o, "title", json_string(r->title ? r->title : "dealscore model report"));
    json_object_set_new(o, "model_version", str_or_null(r->model_version));
    json_object_set_new(o, "org", str_or_null(r->org));
    json_object_set_new(o, "generated_at", str_or_null(r->generated_at));
    json_object_set_new(o, "feature_version", str_or_null(r->feature_version));
    json_object_set_new(o, "params", str_or_null(r->params));
    json_object_set_new(o, "calibration", str_or_null(r->calibration));
    json_object_set_new(o, "train_window", str_or_null(r->train_window));
    json_object_set_new(o, "test_window", str_or_null(r->test_window));
    json_object_set_new(o, "rows",
                        json_pack("{s:I,s:I,s:I}", "train", (json_int_t)r->n_train, "calibration",
                                  (json_int_t)r->n_calib, "test", (json_int_t)r->n_test));

    json_t *overall = json_object();
    json_object_set_new(overall, "model", ds_eval_metrics_json(&r->model));
    json_object_set_new(overall, "stage_prior", ds_eval_metrics_json(&r->prior));
    json_object_set_new(overall, "active", r->has_active ? ds_eval_metrics_json(&r->active) : json_null());
    json_object_set_new(overall, "active_version",
                        r->has_active ? str_or_null(r->active_version) : json_null());
    json_object_set_new(o, "overall", overall);

    json_t *rel = json_object();
    json_object_set_new(rel, "model", ds_eval_bins_json(r->model_bins, r->model_bins ? r->n_model_bins : 0));
    json_object_set_new(rel, "stage_prior",
                        ds_eval_bins_json(r->prior_bins, r->prior_bins ? r->n_prior_bins : 0));
    json_object_set_new(o, "reliability", rel);

    json_t *roc = json_object();
    json_object_set_new(roc, "model", ds_eval_roc_json(r->model_roc, r->model_roc ? r->n_model_roc : 0));
    json_object_set_new(roc, "stage_prior",
                        ds_eval_roc_json(r->prior_roc, r->prior_roc ? r->n_prior_roc : 0));
    json_object_set_new(o, "roc", roc);

    json_t *features = json_array();
    const ds_report_feature_t **feat = sorted_features(r);
    for (size_t i = 0; i < r->n_features; i++) {
        json_t *f = json_object();
        json_object_set_new(f, "name", str_or_null(feat[i]->name));
        json_object_set_new(f, "label", str_or_null(feat[i]->label ? feat[i]->label : feat[i]->name));
        json_object_set_new(f, "mean_abs_shap", ds_eval_json_number(feat[i]->mean_abs_shap));
        json_array_append_new(features, f);
    }
    free(feat);
    json_object_set_new(o, "features", features);

    json_t *tables = json_array();
    for (size_t i = 0; i < r->n_tables; i++) {
        const ds_report_table_t *t = &r->tables[i];
        json_t *jt = json_object(), *rows = json_array();
        json_object_set_new(jt, "title", str_or_null(t->title));
        json_object_set_new(jt, "key", str_or_null(t->key_header));
        for (size_t k = 0; k < t->n_rows; k++) {
            json_t *row = json_object();
            json_object_set_new(row, "key", str_or_null(t->rows[k].key));
            json_object_set_new(row, "model", ds_eval_metrics_json(&t->rows[k].model));
            json_object_set_new(row, "stage_prior", ds_eval_metrics_json(&t->rows[k].prior));
            json_array_append_new(rows, row);
        }
        json_object_set_new(jt, "rows", rows);
        json_array_append_new(tables, jt);
    }
    json_object_set_new(o, "tables", tables);

    json_t *decision = json_object();
    json_object_set_new(decision, "activate", json_boolean(r->activate));
    json_object_set_new(decision, "reason", str_or_null(r->decision_reason));
    json_object_set_new(o, "decision", decision);
    if (r->backtest && r->n_backtest) json_object_set_new(o, "forecast_backtest", backtest_json(r));
    return o;
}

int ds_report_write_json(const char *path, const ds_report_t *r, char *errstr, size_t errstr_size) {
    if (!path || !r) {
        ERR("missing path or report");
        return DS_EINVAL;
    }
    json_t *j = ds_report_json(r);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(j);
    ds_assert(text);
    int rc = write_file(path, text, errstr, errstr_size);
    free(text);
    return rc;
}
