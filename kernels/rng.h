/* rng.h: a counter-based random number generator.
 *
 * Every value is a pure function of (seed, counter), so parameter i of the flat buffer gets the
 * same initial value on any backend, rank or layout, with no generator state to carry. The mix
 * is splitmix64's finalizer; normals come from Box-Muller on two 32-bit halves of one draw. */
#ifndef TS_RNG_H
#define TS_RNG_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define TS_HOST_DEVICE __host__ __device__
#else
#define TS_HOST_DEVICE
#endif

static inline TS_HOST_DEVICE uint64_t ts_rng_mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline TS_HOST_DEVICE uint64_t ts_rng_u64(uint64_t seed, uint64_t counter) {
    return ts_rng_mix(ts_rng_mix(seed) ^ counter);
}

/* Uniform in [0, 1) with 24 bits. */
static inline TS_HOST_DEVICE float ts_rng_uniform(uint64_t seed, uint64_t counter) {
    return (float)(ts_rng_u64(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

/* Standard normal, computed in double so backends agree to the last bit where libm does. */
static inline TS_HOST_DEVICE float ts_rng_normal(uint64_t seed, uint64_t counter) {
    uint64_t r = ts_rng_u64(seed, counter);
    double u1 = ((double)(r >> 40) + 1.0) * (1.0 / 16777217.0); /* (0, 1] avoids log(0) */
    double u2 = (double)((r >> 8) & 0xffffffULL) * (1.0 / 16777216.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
