/* vec16.h: 16-byte loads and stores for the elementwise kernels (residual, GELU, cast, AdamW).
 *
 * A thread takes k consecutive elements, k = 16 / the smallest element size the kernel touches
 * (4 f32, 8 bf16), as whole 16-byte packs of each operand (a bf16 kernel with f32 operands loads
 * two f32 packs per bf16 pack), converts them to float, computes element by element exactly as
 * the one-element kernel does, and stores rounded packs: the same bits, a quarter or an eighth of
 * the memory instructions. Pointers must be 16-byte aligned (ts_vec_usable, cuda_geom.h); the
 * n % k tail goes one element per thread in the same launch (ts_vec_threads).
 *
 * Plain C++ over `tof`/`fromf`, so the kernels that use it also compile as host C++
 * (TS_CUDA_HOST_EMU, tests/kernels/test_cuda_emu.cpp). */
#ifndef TS_CUDA_VEC16_H
#define TS_CUDA_VEC16_H

#include <stdint.h>

template <typename T> struct alignas(16) pack16 {
    static constexpr int n = (int)(16 / sizeof(T));
    T e[16 / sizeof(T)];
};

/* f[0 .. K) = the K elements at p as float; p 16-byte aligned, K a multiple of the pack size. */
template <int K, typename T> __device__ __forceinline__ void load_vec(float (&f)[K], const T *p) {
    constexpr int P = pack16<T>::n;
    static_assert(K % P == 0, "whole packs only");
#pragma unroll
    for (int j = 0; j < K / P; j++) {
        const pack16<T> v = reinterpret_cast<const pack16<T> *>(p)[j];
#pragma unroll
        for (int q = 0; q < P; q++)
            f[j * P + q] = tof(v.e[q]);
    }
}

/* The K elements at p = f rounded to T (round to nearest even for bf16). */
template <int K, typename T> __device__ __forceinline__ void store_vec(T *p, const float (&f)[K]) {
    constexpr int P = pack16<T>::n;
    static_assert(K % P == 0, "whole packs only");
#pragma unroll
    for (int j = 0; j < K / P; j++) {
        pack16<T> v;
#pragma unroll
        for (int q = 0; q < P; q++)
            v.e[q] = fromf<T>(f[j * P + q]);
        reinterpret_cast<pack16<T> *>(p)[j] = v;
    }
}

/* Elements per thread for a kernel over types A and B: 16 bytes of the smaller one. */
template <typename A, typename B> struct vec_k {
    static constexpr int value = (int)(16 / (sizeof(A) < sizeof(B) ? sizeof(A) : sizeof(B)));
};

#endif
