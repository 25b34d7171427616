/* The forecast backtest: for each past month, the forecast made at its
 * start (the deals open then whose close date, as known then, falls in the
 * month, scored on their point-in-time features) against what
 * those deals won. Run by `dealscore-scoring forecast-backtest` with the
 * active model, and by train with the new model on its test window, for
 * the model report. */
#ifndef DS_BACKTEST_H
#define DS_BACKTEST_H

#include <stdio.h>

#include "domain/forecast.h"
#include "domain/model.h"
#include "domain/prior.h"
#include "store/feature_loader.h"

/* Months replayed end at least this long ago, so that their deals'
 * outcomes are known; a deal still open counts as not won. */
#define BACKTEST_SETTLE_DAYS 90
/* Months before the first replayed one whose deals only feed the in-month
 * rates (domain/forecast.h). */
#define BACKTEST_HISTORY_MONTHS 12

/* What scores a feature vector: a model (cols[j] is the engine feature of
 * its column j) with its calibration, or else the org's cold-start prior
 * chain (domain/prior.h; a past moment's CRM probability is not known, so
 * its history or its ladder). */
typedef struct {
    const ds_model_t *model;
    const ds_calib_t *calib;
    const int *cols;
    size_t nf;
    ds_prior_chain_t prior;
} backtest_model_t;

/* The months whose start lies in [from_us, to_us) and that have forecast
 * deals, oldest first, into *out (free()) and *n. Each month's deals win
 * within it with q = p * rate (domain/forecast.h), the rates from the
 * forecast deals of the months before it, from BACKTEST_HISTORY_MONTHS
 * before from_us on. store: also write the rates of all those months into
 * forecast_rates, for the view forecast. Returns 0 or a pg error class /
 * DS_EFATAL with errstr. */
int forecast_backtest(ds_pg_t *pg, const char *org_id, const ds_org_ctx_t *oc, const backtest_model_t *m,
                      int64_t from_us, int64_t to_us, bool store, ds_forecast_month_t **out, size_t *n,
                      char *errstr, size_t errstr_size);

/* On f: a table of the months forecast at their start (0 months ahead),
 * their coverage and the normal approximation's gap to the exact band;
 * a table of the quarters; then per horizon the periods judged, the share
 * inside the band, the mean expected and actual amounts. */
void forecast_backtest_print(FILE *f, const ds_forecast_month_t *m, size_t n);

#endif
