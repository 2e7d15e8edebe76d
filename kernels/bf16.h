/* bf16.h: bfloat16 <-> float on the host, bit for bit what the CUDA intrinsics do.
 *
 * bf16 is the top half of an IEEE float. Rounding to nearest even matches __float2bfloat16_rn,
 * so a host-side reference (the GPU check, the model's host copies) sees the same values the
 * device stores. NaN stays NaN (quiet), infinities stay infinite. */
#ifndef TS_BF16_H
#define TS_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t ts_bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep the sign, force a quiet payload */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float ts_f32_from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* f32 rounded through bf16: what a bf16 tensor would hold. */
static inline float ts_bf16_round(float f) { return ts_f32_from_bf16(ts_bf16_from_f32(f)); }

#endif
