/* peak.h: what a device can do at most, for MFU: the dense peak FLOP/s of one device at the
 * precision a run computes in.
 *
 * GPUs come from a table keyed by the device name (datasheet figures, dense: never the
 * "with sparsity" numbers, which are twice as large); a device the table does not know has an
 * unknown peak (0) and its MFU is unknown, never a guess. A CPU rank's peak is the cores it uses
 * x their clock x the fp32 FLOPs per cycle of the SIMD unit its BLAS uses, labelled as such. */
#ifndef TS_LAUNCH_PEAK_H
#define TS_LAUNCH_PEAK_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/backend.h"

struct ts_peak {
    double flops;     /* per device, FLOP/s; 0: unknown */
    char key[32];     /* the table's name for the device ("H100 SXM", "cpu"); "" unknown */
    char source[192]; /* how the figure was found, for the ledger and `tessera cost` */
};

/* The GPU row whose name matches `device_name` (the CUDA device's name, e.g. "NVIDIA H100 80GB
 * HBM3"): its dense bf16 peak when bf16, else its fp32 peak (the plug-in's fp32 matmuls use
 * CUBLAS_COMPUTE_32F, not TF32). Unknown: flops 0, key "". */
void ts_peak_gpu(const char *device_name, bool bf16, struct ts_peak *out);

/* A CPU rank using `threads` cores: threads x clock x FLOP/cycle. The clock is the largest of
 * /sys cpufreq cpuinfo_max_freq and /proc/cpuinfo "cpu MHz" (read under `root`, "" for /, so a
 * test can point it at a fake tree); FLOP/cycle from the BLAS's kernels named in `blas_detail`
 * (OpenBLAS's core name), else from the CPU's flags (avx512f: 64, avx2+fma: 32, avx: 16,
 * else 8). No clock: unknown. */
void ts_peak_cpu(int threads, const char *blas_detail, const char *root, struct ts_peak *out);

/* FLOP/cycle/core of fp32 FMA SIMD for an OpenBLAS core name (0: not a name it knows). */
int ts_peak_cpu_flops_per_cycle(const char *corename);

/* The peak of the backend a run uses (cpu or a GPU). */
void ts_peak_of_backend(struct ts_backend *be, bool bf16, struct ts_peak *out);

/* Model FLOPs per trained token: 6N + 12 L C T, N the parameters without position embeddings
 * and padding (ts_gpt_num_flop_params), forward and backward, attention's QK^T and AV counted
 * over the whole T (the PaLM paper's MFU, appendix B). */
double ts_peak_flops_per_token(double n_params, int layers, int channels, int seq_len);

#endif
