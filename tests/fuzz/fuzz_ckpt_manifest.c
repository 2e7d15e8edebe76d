/* fuzz_ckpt_manifest.c: manifest.pb bytes -> envelope and manifest unpack, the bounds check, and
 * the metadata a resume reads (inputs as fuzz_ckpt.h makes them). Nothing a crafted manifest says
 * may crash, leak or take more than the unpack budget. */
#include <stdlib.h>

#include "checkpoint/ckpt_impl.h"
#include "fuzz_ckpt.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)fuzz_dir();
    size_t len = 0;
    unsigned char *bytes = fuzz_manifest_bytes(data, size, &len);
    Tessera__Ckpt__Manifest *m = NULL;
    const ts_status st = ckpt_manifest_unpack(bytes, len, "manifest.pb", &m);
    free(bytes);
    if (st != TS_OK)
        return 0;
    if (ckpt_manifest_check(m, "manifest.pb") == TS_OK) {
        struct ts_ckpt_meta meta;
        if (ckpt_meta_from_manifest(m, &meta, "manifest.pb") == TS_OK)
            fuzz_expect(meta.num_data >= 0 && meta.num_model <= TS_CKPT_MAX_KV, "meta counts");
        free(meta.data);
    }
    tessera__ckpt__manifest__free_unpacked(m, NULL);
    return 0;
}
