/* sha256.c: SHA-256 over Nettle; only the hex formatting and file reading are ours. */
#include "data/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <nettle/sha2.h>

_Static_assert(sizeof(struct sha256_ctx) <= sizeof(((struct ts_sha256 *)0)->state),
               "struct ts_sha256 too small for nettle's sha256_ctx");

void ts_sha256_init(struct ts_sha256 *h) { sha256_init((struct sha256_ctx *)h->state); }

void ts_sha256_update(struct ts_sha256 *h, const void *data, size_t n) {
    sha256_update((struct sha256_ctx *)h->state, n, data);
}

void ts_sha256_final(struct ts_sha256 *h, char hex[TS_SHA256_HEX]) {
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_digest((struct sha256_ctx *)h->state, sizeof(d), d);
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = '\0';
}

ts_status ts_sha256_file(const char *path, char hex[TS_SHA256_HEX], int64_t *size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct ts_sha256 h;
    ts_sha256_init(&h);
    static _Thread_local unsigned char buf[1 << 16];
    size_t got;
    int64_t total = 0;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
        ts_sha256_update(&h, buf, got);
        total += (int64_t)got;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return ts_error(TS_ERR_IO, "error reading %s", path);
    ts_sha256_final(&h, hex);
    if (size != NULL)
        *size = total;
    return TS_OK;
}
