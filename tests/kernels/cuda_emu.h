/* cuda_emu.h: what CUDA kernels see of CUDA when their .cu source is compiled as host C++
 * (TS_CUDA_HOST_EMU), for the host-emulation tests (test_cuda_emu.cpp, test_cuda_vec.cpp): the
 * qualifiers, thread and block indices, a bf16 type with the plug-in's tof/fromf, a warp sum,
 * and two launchers. A CTA's threads are host threads (launch: a pool per launch, __syncthreads a
 * barrier over it, __shared__ arrays statics used by one CTA at a time) or, for kernels without
 * barriers, one loop on this thread (launch_serial). Include once, before the .cu files. */
#ifndef TS_TEST_CUDA_EMU_H
#define TS_TEST_CUDA_EMU_H

#include <cstdint>
#include <pthread.h>
#include <thread>
#include <vector>

extern "C" {
#include "kernels/bf16.h"
}

#define TS_CUDA_HOST_EMU 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct emu_dim3 {
    unsigned x, y, z;
};
static thread_local emu_dim3 threadIdx, blockIdx;
static emu_dim3 blockDim, gridDim;

struct __nv_bfloat16 {
    uint16_t bits;
};
static inline float tof(float x) { return x; }
static inline float tof(__nv_bfloat16 x) { return ts_f32_from_bf16(x.bits); }
template <typename T> static inline T fromf(float x);
template <> inline float fromf<float>(float x) { return x; }
template <> inline __nv_bfloat16 fromf<__nv_bfloat16>(float x) {
    return __nv_bfloat16{ts_bf16_from_f32(x)};
}

static pthread_barrier_t emu_bar;
static inline void __syncthreads() { pthread_barrier_wait(&emu_bar); }

/* A warp's butterfly sum (__shfl_xor_sync over offsets 16..1), each lane adding its partner's
 * value from before the step, so the order of additions is the device's. Under launch only (a
 * barrier over the CTA: every thread of it must call it, so no thread may have returned). */
static float emu_lanes[1024];
static inline float warp_sum(float v) {
    for (unsigned o = 16; o > 0; o >>= 1) {
        emu_lanes[threadIdx.x] = v;
        __syncthreads();
        const float other = emu_lanes[threadIdx.x ^ o];
        __syncthreads();
        v += other;
    }
    return v;
}

/* Every CTA of grid in order, `threads` host threads, a barrier after each CTA. */
template <typename F> static void launch(emu_dim3 grid, unsigned threads, F body) {
    gridDim = grid;
    blockDim = {threads, 1, 1};
    pthread_barrier_init(&emu_bar, NULL, threads);
    std::vector<std::thread> th;
    for (unsigned t = 0; t < threads; t++)
        th.emplace_back([t, grid, &body] {
            threadIdx = {t, 0, 0};
            for (unsigned z = 0; z < grid.z; z++)
                for (unsigned y = 0; y < grid.y; y++)
                    for (unsigned x = 0; x < grid.x; x++) {
                        blockIdx = {x, y, z};
                        body();
                        pthread_barrier_wait(&emu_bar);
                    }
        });
    for (auto &t : th)
        t.join();
    pthread_barrier_destroy(&emu_bar);
}

/* For kernels without __syncthreads: the threads one after another on this thread. */
template <typename F> static void launch_serial(emu_dim3 grid, unsigned threads, F body) {
    gridDim = grid;
    blockDim = {threads, 1, 1};
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++)
                for (unsigned t = 0; t < threads; t++) {
                    blockIdx = {x, y, z};
                    threadIdx = {t, 0, 0};
                    body();
                }
}

#endif
