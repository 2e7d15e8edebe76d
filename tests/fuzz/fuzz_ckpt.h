/* fuzz_ckpt.h: manifest inputs for the checkpoint harnesses. A manifest.pb is an envelope whose
 * CRC32C covers the manifest inside, so mutated bytes would almost never pass the checksum and
 * the checks behind it would go unexplored: the first input byte chooses between the rest as a
 * whole manifest.pb (even) and the rest as the inner manifest, wrapped in a valid envelope here
 * (odd). */
#ifndef TS_FUZZ_CKPT_H
#define TS_FUZZ_CKPT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/ckpt_impl.h"

/* The manifest.pb bytes for input data (malloc'ed, or NULL for an empty input). */
static inline unsigned char *fuzz_manifest_bytes(const uint8_t *data, size_t size, size_t *len) {
    *len = 0;
    if (size == 0)
        return NULL;
    if ((data[0] & 1) == 0) {
        unsigned char *out = malloc(size);
        memcpy(out, data + 1, size - 1);
        *len = size - 1;
        return out;
    }
    Tessera__Ckpt__Envelope env = TESSERA__CKPT__ENVELOPE__INIT;
    env.format_version = TS_CKPT_FORMAT_VERSION;
    env.manifest.data = (uint8_t *)(data + 1);
    env.manifest.len = size - 1;
    env.crc32c = ts_crc32c(0, data + 1, size - 1);
    *len = tessera__ckpt__envelope__get_packed_size(&env);
    unsigned char *out = malloc(*len + 1);
    tessera__ckpt__envelope__pack(&env, out);
    return out;
}

/* Writes the two seed forms of a valid manifest.pb (0 + it, 1 + its inner manifest) to dir. */
static inline void fuzz_manifest_seeds(const char *manifest_path, const char *dir) {
    unsigned char *buf = NULL;
    size_t len = 0;
    if (ckpt_read_file(manifest_path, CKPT_MAX_MANIFEST, &buf, &len) != TS_OK)
        abort();
    Tessera__Ckpt__Envelope *env = tessera__ckpt__envelope__unpack(NULL, len, buf);
    if (env == NULL)
        abort();
    char path[2048];
    snprintf(path, sizeof(path), "%s/valid_envelope", dir);
    FILE *f = fopen(path, "wb");
    fputc(0, f);
    fwrite(buf, 1, len, f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/valid_inner", dir);
    f = fopen(path, "wb");
    fputc(1, f);
    fwrite(env->manifest.data, 1, env->manifest.len, f);
    fclose(f);
    tessera__ckpt__envelope__free_unpacked(env, NULL);
    free(buf);
}

#endif
