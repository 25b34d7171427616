/* proto/openapi.json, the OpenAPI 3.1 description of the webhooks and
 * /api/predict, embedded at build time (proto/embed.cmake): the document's
 * bytes, NUL-terminated, and its length without the NUL. */
#ifndef DS_OPENAPI_H
#define DS_OPENAPI_H

#include <stddef.h>

extern const char ds_openapi_json[];
extern const size_t ds_openapi_json_len;

#endif
