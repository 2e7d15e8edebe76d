/* sha256.h: SHA-256 digests as hex strings, over Nettle (Debian's nettle-dev), for vocabulary
 * checks and data lineage (the manifest names every source file by size and content hash). */
#ifndef TS_SHA256_H
#define TS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#define TS_SHA256_HEX 65 /* 64 hex digits and a NUL */

/* An incremental digest: init, update any number of times, final. Caller-owned storage. */
struct ts_sha256 {
    _Alignas(16) unsigned char state[256]; /* a struct sha256_ctx, kept opaque here */
};
void ts_sha256_init(struct ts_sha256 *h);
void ts_sha256_update(struct ts_sha256 *h, const void *data, size_t n);
void ts_sha256_final(struct ts_sha256 *h, char hex[TS_SHA256_HEX]);

/* The digest of a whole file, and optionally its size in bytes. */
ts_status ts_sha256_file(const char *path, char hex[TS_SHA256_HEX], int64_t *size) TS_MUST_CHECK;

#endif
