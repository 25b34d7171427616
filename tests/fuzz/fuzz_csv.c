/* CSV import: the first byte picks the kind, the rest is the file, read and
 * validated exactly as `dealscore-ingest import` does, storing nothing. */
#include <stdint.h>
#include <stdio.h>

#include "ingest/ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!devnull) devnull = fopen("/dev/null", "w");
    long rows, rejected;
    ingest_import_check((rec_kind_t)(data[0] & 3), (const char *)data + 1, size - 1, devnull, &rows,
                        &rejected);
    if (rejected > rows) __builtin_trap();
    return 0;
}
