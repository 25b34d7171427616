/* Protobuf events through a worker's message handling: the benchmark
 * worker's decoding and coalescing of an opportunity.changed batch. The
 * input is up to 32 messages, each a length byte and its payload. */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <string.h>

#include "benchmark/benchmark.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rd_kafka_message_t msgs[32];
    ds_worker_item_t items[32];
    size_t n = 0;
    while (size > 0 && n < 32) {
        size_t len = data[0];
        data++, size--;
        if (len > size) len = size;
        memset(&msgs[n], 0, sizeof msgs[n]);
        msgs[n].payload = (void *)data;
        msgs[n].len = len;
        memset(&items[n], 0, sizeof items[n]);
        items[n].msg = &msgs[n];
        data += len, size -= len;
        n++;
    }
    Dealscore__V1__OpportunityChanged *evs[32];
    benchmark_change_t ch[32];
    size_t nch = benchmark_decode(items, n, evs, ch);
    if (nch > n) __builtin_trap();
    for (size_t i = 0; i < n; i++)
        if (evs[i]) dealscore__v1__opportunity_changed__free_unpacked(evs[i], NULL);
    return 0;
}
