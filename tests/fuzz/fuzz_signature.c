/* X-Dealscore-Timestamp and X-Dealscore-Signature handling: the input is
 * "<timestamp>\n<signature>\n<body>" (a missing line is a missing header).
 * Seeds carry valid signatures of their bodies with the secret below. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "ingest/signature.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-signing-secret"
#define NOW 1800000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size;
    const char *nl1 = memchr(p, '\n', size);
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    char *ts = nl1 ? ds_strndup(p, (size_t)(nl1 - p)) : NULL;
    char *sig = nl2 ? ds_strndup(nl1 + 1, (size_t)(nl2 - nl1 - 1)) : NULL;
    const char *body = nl2 ? nl2 + 1 : end;
    size_t blen = (size_t)(end - body);
    char *copy = ds_malloc(blen ? blen : 1);
    memcpy(copy, body, blen);
    char hex[65];
    sig_verdict_t v = signature_check(SECRET, ts, sig, copy, blen, NOW, 300, hex);
    if ((v == SIG_OK) != (hex[0] != '\0') || (v == SIG_OK && strlen(hex) != 64)) __builtin_trap();
    free(copy);
    free(sig);
    free(ts);
    return 0;
}
