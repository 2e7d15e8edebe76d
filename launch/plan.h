/* plan.h: the planner's model: what a training layout of Tessera costs on a described cluster,
 * before renting it (`tessera plan`, cmd_plan.c; the model is docs/planner.md).
 *
 * Pure: every function here is arithmetic over its arguments (no clock, no files, no devices),
 * so tests call it directly and `--calibrate` fits its terms to measured runs. Memory follows
 * Tessera's own allocations (trainer/gpt.c's parameter table and activation arena, optim.c's
 * moments and master weights, train.c's loss rows); step time is matmul FLOPs at an efficiency,
 * memory-bound kernels by bytes moved, and ring/tree collectives with latency and bandwidth
 * terms over the data- and tensor-parallel groups, less the overlap of gradient buckets with the
 * last backward. */
#ifndef TS_LAUNCH_PLAN_H
#define TS_LAUNCH_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

/* A GPT-2-shaped model (dimension legend of docs/architecture.md). */
struct ts_plan_model {
    char name[32];
    int layers, heads, channels; /* L, NH, C */
    int vocab, padded_vocab;     /* V, Vp (V rounded up to 128, as gpt.c does) */
    int max_seq_len;             /* wpe rows; 0: the run's T (train's --max-seq-len 0) */
};

/* "124m", "350m", "774m", "1.5b" (GPT-2's sizes, V 50257) or "L,NH,C" or "L,NH,C,V". A bad
 * spec is TS_ERR_INVALID_ARG naming what is wrong. */
ts_status ts_plan_model_parse(const char *spec, struct ts_plan_model *out) TS_MUST_CHECK;

/* One device and the links between devices. Bandwidths in bytes/s, one direction, per device;
 * latencies in seconds per message hop. */
struct ts_plan_device {
    char name[16];               /* "h100", "h200", "a100", "cpu" */
    bool cpu;                    /* CPU ranks: fp32, tensor parallelism supported */
    bool bf16;                   /* parameters and activations in bf16 (fp32 master weights) */
    bool flash;                  /* attention keeps (B,NH,T) statistics, not (B,NH,T,T) */
    double peak_flops;           /* dense peak of one device at its precision */
    double mem_bw;               /* bytes/s of device memory */
    double memory_bytes;         /* per device */
    double reserve_bytes;        /* taken before Tessera allocates (CUDA context, cuBLAS, NCCL) */
    double intra_bw, inter_bw;   /* within a node, across nodes */
    double intra_lat, inter_lat; /* seconds */
    char source[192];            /* where the peak came from */
};

/* The defaults of a GPU type ("h100", "h200", "a100"); TS_ERR_INVALID_ARG for another name. */
ts_status ts_plan_device_gpu(const char *name, struct ts_plan_device *out) TS_MUST_CHECK;

/* CPU ranks on hosts like this one: `ranks_per_node` ranks share a host of `host_peak_flops`
 * (ts_peak_cpu over all its cores), `host_memory_bytes` and `host_mem_bw`; each rank is one
 * device with an equal share (an oversubscribed host time-slices: the share is the same). */
void ts_plan_device_cpu(double host_peak_flops, double host_memory_bytes, double host_mem_bw,
                        int ranks_per_node, const char *source, struct ts_plan_device *out);

/* The terms --calibrate fits (defaults: ts_plan_eff_defaults). */
struct ts_plan_eff {
    double matmul;     /* fraction of peak_flops the matmuls reach */
    double memory;     /* fraction of mem_bw the memory-bound kernels reach */
    double overlap;    /* fraction of the gradient reduction hidden under the last backward */
    double overhead_s; /* per step: host work, coordinator, launches (seconds) */
    double latency;    /* multiplies every latency term (1: the device's figures) */
};
struct ts_plan_eff ts_plan_eff_defaults(const struct ts_plan_device *dev);

struct ts_plan_cluster {
    struct ts_plan_device dev;
    int gpus;          /* devices (ranks) in all */
    int gpus_per_node; /* devices per node */
};

struct ts_plan_job {
    int seq_len;             /* T */
    int64_t global_batch;    /* sequences per update */
    double tokens;           /* to train (<= 0: not given) */
    double usd_per_gpu_hour; /* < 0: no price */
    int64_t bucket_bytes;    /* gradient bucket (0: 25 MB, train.c's default) */
};

struct ts_plan_layout {
    int dp, tp, zero;
    int micro_batch, grad_accum;
};

/* Bytes per device. */
struct ts_plan_memory {
    double params, grads, optim; /* optim: AdamW m and v, plus fp32 master weights with bf16 */
    double activations;          /* the arena of gpt.c for (micro_batch, T) */
    double other;                /* token ids, the trainer's loss rows */
    double total;                /* all of the above (the reserve not included) */
};

/* Seconds per update on one device. */
struct ts_plan_time {
    double compute;    /* matmul FLOPs / (peak x matmul efficiency) */
    double memory;     /* memory-bound kernels and AdamW: bytes / (mem_bw x memory efficiency) */
    double dp_comm;    /* the gradient reduction (all-reduce, or reduce-scatter with ZeRO-1) */
    double dp_exposed; /* its part not hidden under the last micro-step's backward */
    double tp_comm;    /* Megatron's all-reduces: 4 per layer per micro-step over tp */
    double gather;     /* ZeRO-1's all-gather of the parameters after the update */
    double sync;       /* the step's small world collectives: loss, norm, coordinator */
    double overhead;
    double step; /* compute + memory + dp_exposed + tp_comm + gather + sync + overhead */
};

struct ts_plan_row {
    struct ts_plan_layout layout;
    struct ts_plan_memory mem;
    struct ts_plan_time time;
    bool fits;                 /* supported by Tessera and fits in memory */
    char reason[200];          /* why not, when !fits */
    double tokens_per_s;       /* whole cluster */
    double mfu;                /* model FLOPs / (gpus x peak) */
    double device_s_per_token; /* gpus / tokens_per_s */
    double usd_per_1m_tokens;  /* NaN without a price */
    double total_s, total_usd; /* for job.tokens (NaN when not given / no price) */
};

/* ---- the formulas, exposed so tests can check them ---- */

/* Ring all-reduce of `bytes` over n: 2(n-1)/n bytes/bw + 2(n-1) lat; reduce-scatter and
 * all-gather are half of it: (n-1)/n bytes/bw + (n-1) lat. n <= 1: 0. */
double ts_plan_ring_all_reduce_s(int n, double bytes, double bw, double lat);
double ts_plan_ring_half_s(int n, double bytes, double bw, double lat);
/* A tree all-reduce (reduce then broadcast down a binary tree, pipelined):
 * 2 bytes/bw + 2 ceil(log2 n) lat. n <= 1: 0. */
double ts_plan_tree_all_reduce_s(int n, double bytes, double bw, double lat);

/* Elements of one rank's flat parameter buffer at tensor-parallel size tp (gpt.c's table:
 * the split tensors divided by tp, embeddings, layernorms and row-parallel biases whole). wpe
 * has max_seq_len rows, seq_len when that is 0. */
int64_t ts_plan_params_per_rank(const struct ts_plan_model *m, int seq_len, int tp);
/* Model FLOPs per token for MFU: 6N + 12 L C T, N without wpe and the padded rows of wte. */
double ts_plan_flops_per_token(const struct ts_plan_model *m, int seq_len);

/* Memory per device of a layout. */
void ts_plan_memory_of(const struct ts_plan_model *m, const struct ts_plan_device *dev, int seq_len,
                       const struct ts_plan_layout *lay, struct ts_plan_memory *out);

/* The whole prediction for one layout: memory, time, throughput, cost; sets fits/reason. A
 * layout Tessera cannot run (tp on a GPU, tp not dividing NH or Vp or a node, dp x tp != gpus,
 * dp x micro_batch x grad_accum != global_batch) is refused with the reason. */
void ts_plan_predict(const struct ts_plan_model *m, const struct ts_plan_cluster *cl,
                     const struct ts_plan_eff *eff, const struct ts_plan_job *job,
                     const struct ts_plan_layout *lay, struct ts_plan_row *out);

/* Every layout: tp over the divisors of gpus, ZeRO 0 and 1 (1 only at dp > 1), every micro-batch
 * dividing global_batch/dp. Rows that fit come first, best first (least device-seconds per
 * token, which is least $ per token at one price; ties: less memory), then refused ones.
 * Writes at most max rows; *n gets how many there are (may exceed max: call again with more). */
ts_status ts_plan_enumerate(const struct ts_plan_model *m, const struct ts_plan_cluster *cl,
                            const struct ts_plan_eff *eff, const struct ts_plan_job *job,
                            struct ts_plan_row *rows, int max, int *n) TS_MUST_CHECK;

/* One sentence on why rows[0] beats the next rows (best first, as enumerate returns them). */
void ts_plan_explain(const struct ts_plan_row *rows, int n, char *out, size_t len);

/* ---- calibration ---- */

/* A measured run: what it ran and its median steady step time. */
struct ts_plan_sample {
    char name[128];
    struct ts_plan_model model;
    struct ts_plan_cluster cluster;
    struct ts_plan_job job;
    struct ts_plan_layout layout;
    double step_s; /* measured */
};

/* Least squares of the step time over the samples, each weighted by 1/measured (relative
 * residuals): 1/matmul >= 1, 1/memory >= 1, 1 - overlap in [0, 1], overhead_s >= 0 and the
 * latency multiplier >= 0 are the unknowns (an active-set search over those bounds). Terms the
 * samples cannot tell apart (a column of zeros: no data parallelism measured) keep their value in
 * *start. *out gets the fit; residual[i] (n of them, may be NULL) = predicted / measured - 1. Fewer
 * than 1 sample: TS_ERR_INVALID_ARG. */
ts_status ts_plan_calibrate(const struct ts_plan_sample *s, int n, const struct ts_plan_eff *start,
                            struct ts_plan_eff *out, double *residual) TS_MUST_CHECK;

#endif
