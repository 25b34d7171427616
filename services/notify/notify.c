/* The notify worker thread: the delivery threads beside the consumer of
 * prediction.made (notify.h). */
#include "notify.h"

#include "courier.h"
#include "infra/kafka.h"
#include "intake.h"
#include "runtime/worker.h"

void notify_worker(ds_service_t *svc, void *state) {
    (void)state;
    static const char *const topics[] = {DS_TOPIC_PREDICTION_MADE};
    courier_pool_t *pool = courier_pool_start(svc);
    intake_t in;
    intake_init(&in, svc, pool);
    ds_worker_def_t def = {
        .name = "notify",
        .topics = topics,
        .ntopics = 1,
        .process = intake_process,
        .ud = &in,
    };
    ds_worker_run(svc, &def);
    courier_pool_stop(pool);
    intake_close(&in);
}
