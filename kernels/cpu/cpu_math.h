/* cpu_math.h: an expf the compiler can vectorise.
 *
 * glibc's expf and tanhf are scalar calls, and GELU, softmax and attention spend most of their
 * time in them. This is Cephes' expf (range reduction by ln 2 in two parts, a degree-6
 * polynomial, 2^n built in the exponent bits), written without branches or library calls so
 * that loops over it vectorise. It is within 2 ulp of expf over the normal range; inputs below
 * -87.3 return about 1e-38 instead of a denormal or 0, and inputs above 88.3 return about 2e38
 * instead of inf, which no caller here can tell apart. */
#ifndef TS_CPU_MATH_H
#define TS_CPU_MATH_H

#include <stdint.h>
#include <string.h>

static inline float ts_cpu_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (exact in round-to-nearest, no -ffast-math) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1): exact limits at both ends, absolute error ~1e-7 near 0. */
static inline float ts_cpu_tanhf(float x) { return 1.0f - 2.0f / (ts_cpu_expf(2.0f * x) + 1.0f); }

#endif
