/* backend.h: the backend interface, one function table per device kind.
 *
 * The model and optimizer are written once against ops.h; ops.h validates shapes and dtypes and
 * dispatches through this table, so a backend implements each op assuming valid arguments.
 * The CPU backend (kernels/cpu/) is a complete fp32 implementation and the oracle every other
 * backend is checked against. Conventions shared by every slot:
 *   - all tensors are contiguous, row-major, in this backend's memory;
 *   - "+=" in a comment means the op accumulates into that output (parameter gradients
 *     accumulate across micro-steps); "=" means it overwrites;
 *   - ops are asynchronous with respect to the host where the device allows it; copy_d2h and
 *     sync complete all previously issued work;
 *   - dtypes: an op computes in the dtype of its main input (f32, or bf16 on a backend with
 *     `bf16` set); its activations and parameters share that dtype. Always f32: parameter
 *     gradients (dwte, dwpe, dweight, dbias: "+=" across micro-steps wants the precision),
 *     layernorm mean/rstd, losses, the optimizer's master weights and moments, sum_squares' out.
 *     Token ids and targets are i32. */
#ifndef TS_BACKEND_H
#define TS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a matmul's weight is stored. Hugging Face GPT-2 (Conv1D) stores (IC, OC) and computes
 * x @ W; the tied classifier reads wte as (OC, IC) = (Vp, C) and computes x @ wte^T. */
enum ts_wlayout {
    TS_W_IN_OUT = 0, /* weight (IC, OC): out = inp @ W */
    TS_W_OUT_IN = 1, /* weight (OC, IC): out = inp @ W^T */
};

struct ts_backend_info {
    char name[64];         /* "cpu" or the device name */
    char detail[192];      /* e.g. the BLAS in use and its kernels */
    int threads;           /* host threads the backend uses */
    uint64_t memory_bytes; /* device memory, 0 for host */
    /* Devices only (0 on the CPU): */
    int sm_count;           /* streaming multiprocessors */
    int cc_major, cc_minor; /* compute capability */
    uint64_t peak_bytes;    /* high-water mark of the backend's own allocations */
    bool has_energy;        /* energy_mj works */
};

/* Bumped whenever struct ts_backend or ts_backend_info changes, or the plug-in's exported functions
 * or the comm table they fill (comm/comm.h, comm/comm_nccl.h): a plug-in built against another
 * layout is refused at load time instead of calling through the wrong slot. */
#define TS_BACKEND_ABI 8

/* An opaque point in a backend's stream of work (backend_load.h, the slots below). */
typedef struct ts_event ts_event_t;

struct ts_backend {
    const char *name; /* "cpu", "cuda" */
    void *ctx;        /* the backend's private state */
    /* Ops accept bf16 activations and parameters (otherwise f32 only; cast and adamw_master
     * take bf16 on every backend). Parameter gradients, layernorm statistics, losses and the
     * optimizer's state are f32 on every backend. */
    bool bf16;
    /* alloc returns memory the host may read and write directly (the CPU backend): what a
     * communicator over host buffers (comm/, MPI) needs. false for device memory. */
    bool host_memory;

    /* ---- lifetime, memory, copies ---- */
    void (*destroy)(struct ts_backend *be);
    void (*info)(struct ts_backend *be, struct ts_backend_info *out);
    ts_status (*alloc)(struct ts_backend *be, size_t bytes, void **out); /* zero-filled */
    void (*free)(struct ts_backend *be, void *ptr);
    ts_status (*copy_h2d)(struct ts_backend *be, void *dst, const void *src, size_t bytes);
    ts_status (*copy_d2h)(struct ts_backend *be, void *dst, const void *src, size_t bytes);
    ts_status (*copy_d2d)(struct ts_backend *be, void *dst, const void *src, size_t bytes);
    ts_status (*memset_zero)(struct ts_backend *be, void *dst, size_t bytes);
    ts_status (*sync)(struct ts_backend *be);

    /* ---- initialisation ---- */
    /* t[i] = value */
    ts_status (*fill)(struct ts_backend *be, const struct ts_tensor *t, float value);
    /* t[i] = mean + std * N(0,1) drawn from ts_rng_normal(seed, counter + i): a pure function of
     * (seed, counter + i), so any backend, layout or shard produces the same values. */
    ts_status (*fill_normal)(struct ts_backend *be, const struct ts_tensor *t, float mean,
                             float std, uint64_t seed, uint64_t counter);

    /* ---- forward and backward ops ---- */
    /* out (B,T,C) = wte[tokens] + wpe[t]; tokens (B,T) i32, wte (Vp,C), wpe (maxT,C) */
    ts_status (*encoder_forward)(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                 const struct ts_tensor *wpe);
    /* dwte += , dwpe += ; deterministic (no float atomics) */
    ts_status (*encoder_backward)(struct ts_backend *be, const struct ts_tensor *dwte,
                                  const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                  const struct ts_tensor *tokens);
    /* The vocabulary-parallel embedding (tensor parallelism): wte (Vl,C) holds rows
     * [vocab_begin, vocab_begin + Vl) of the whole table. out (B,T,C) = (wte[tok - vocab_begin]
     * if the token is in that range, else 0) + (wpe[t] if wpe is not NULL, else 0); summing out
     * over the ranks that hold the other rows (one of them passing wpe) gives encoder_forward's.
     * Optional (NULL: the model refuses tensor parallelism on this backend). */
    ts_status (*encoder_forward_slice)(struct ts_backend *be, const struct ts_tensor *out,
                                       const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                       const struct ts_tensor *wpe, int64_t vocab_begin);
    /* dwte (Vl,C) += dout's rows of the tokens in [vocab_begin, vocab_begin + Vl) (others are
     * skipped); dwpe += (if not NULL); deterministic (no float atomics). Optional, as above. */
    ts_status (*encoder_backward_slice)(struct ts_backend *be, const struct ts_tensor *dwte,
                                        const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                        const struct ts_tensor *tokens, int64_t vocab_begin);
    /* out (N,C) = ; mean (N) = ; rstd (N) = ; weight, bias (C); eps 1e-5 */
    ts_status (*layernorm_forward)(struct ts_backend *be, const struct ts_tensor *out,
                                   const struct ts_tensor *mean, const struct ts_tensor *rstd,
                                   const struct ts_tensor *inp, const struct ts_tensor *weight,
                                   const struct ts_tensor *bias);
    /* dinp (N,C) += ; dweight += ; dbias += */
    ts_status (*layernorm_backward)(struct ts_backend *be, const struct ts_tensor *dinp,
                                    const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                    const struct ts_tensor *dout, const struct ts_tensor *inp,
                                    const struct ts_tensor *weight, const struct ts_tensor *mean,
                                    const struct ts_tensor *rstd);
    /* out (N,OC) = inp (N,IC) @ W + bias; bias (OC) may be NULL */
    ts_status (*matmul_forward)(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *inp, const struct ts_tensor *weight,
                                const struct ts_tensor *bias, enum ts_wlayout layout);
    /* pre (N,OC) = inp @ W + bias (W as TS_W_IN_OUT; bias may be NULL); out (N,OC) =
     * gelu(pre): the MLP's first matmul and its GELU in one call, so a device can fuse them
     * (cuBLASLt's GELU epilogue). Optional: when NULL, ops.c runs matmul_forward then
     * gelu_forward, which is exactly what a fused version must compute. */
    ts_status (*matmul_forward_gelu)(struct ts_backend *be, const struct ts_tensor *out,
                                     const struct ts_tensor *pre, const struct ts_tensor *inp,
                                     const struct ts_tensor *weight, const struct ts_tensor *bias);
    /* dinp (N,IC) = (may be NULL); dweight += ; dbias += (may be NULL) */
    ts_status (*matmul_backward)(struct ts_backend *be, const struct ts_tensor *dinp,
                                 const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                 const struct ts_tensor *dout, const struct ts_tensor *inp,
                                 const struct ts_tensor *weight, enum ts_wlayout layout);
    /* The backward of the MLP's projection out = gelu(pre) @ W + bias (W (IC,OC), TS_W_IN_OUT)
     * with GELU's backward after it: dpre (N,IC) = gelu'(pre) * (dout @ W^T); dweight (IC,OC)
     * += inp^T @ dout where inp = gelu(pre) as stored; dbias (OC) += column sums of dout (may
     * be NULL). Optional: when NULL, ops.c runs matmul_backward into dpre, then gelu_backward in
     * place (CUDA bf16: cuBLASLt's DGELU epilogue on the dinp matmul). */
    ts_status (*matmul_backward_dgelu)(struct ts_backend *be, const struct ts_tensor *dpre,
                                       const struct ts_tensor *dweight,
                                       const struct ts_tensor *dbias, const struct ts_tensor *dout,
                                       const struct ts_tensor *inp, const struct ts_tensor *weight,
                                       const struct ts_tensor *pre);
    /* Causal multi-head self-attention. qkv (B,T,3C) holds q|k|v, each C = NH heads of HS.
     * out (B,T,C) = ; att (B,NH,T,T) = softmax probabilities (kept for backward; entries above
     * the diagonal are written as 0). */
    ts_status (*attention_forward)(struct ts_backend *be, const struct ts_tensor *out,
                                   const struct ts_tensor *att, const struct ts_tensor *qkv,
                                   int num_heads);
    /* dqkv (B,T,3C) = ; scratch (B,NH,T,T) is clobbered */
    ts_status (*attention_backward)(struct ts_backend *be, const struct ts_tensor *dqkv,
                                    const struct ts_tensor *scratch, const struct ts_tensor *dout,
                                    const struct ts_tensor *qkv, const struct ts_tensor *att,
                                    int num_heads);
    /* Optional (NULL where not offered): the same causal attention without the (T,T) matrix,
     * which a device computes in tiles ("flash" attention). The model uses these instead of
     * the two slots above when flash_attention_usable says so, and then keeps lse instead of
     * att; the two pairs are checked against each other, not mixed.
     * forward: out (B,T,C) = attention_forward's out; lse (B,NH,T) f32 = the natural log of
     * each softmax row's normaliser, log sum_{t2<=t} exp(scale q[t].k[t2]). */
    ts_status (*flash_attention_forward)(struct ts_backend *be, const struct ts_tensor *out,
                                         const struct ts_tensor *lse, const struct ts_tensor *qkv,
                                         int num_heads);
    /* dqkv (B,T,3C) = attention_backward's dqkv, from out and lse as flash_attention_forward
     * left them; scratch (B,NH,T) f32 is clobbered. */
    ts_status (*flash_attention_backward)(struct ts_backend *be, const struct ts_tensor *dqkv,
                                          const struct ts_tensor *scratch,
                                          const struct ts_tensor *dout, const struct ts_tensor *qkv,
                                          const struct ts_tensor *out, const struct ts_tensor *lse,
                                          int num_heads);
    /* Whether the model should use the flash pair for this head size and dtype (NULL: never).
     * A backend may offer the pair for checking and still decline here (a head size its kernels
     * lack, or a run that asked for the reference). */
    bool (*flash_attention_usable)(struct ts_backend *be, int head_size, enum ts_dtype dtype);
    /* One query position against a KV cache, for incremental decoding. cache (B,S,3C) holds the
     * qkv rows of positions 0..pos (rows after pos are never read); the query is row pos.
     * out (B,C) = what attention_forward computes for row pos; scratch (B,NH,S) f32 (the scores,
     * whatever the dtype) is clobbered. */
    ts_status (*attention_decode)(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *scratch, const struct ts_tensor *cache,
                                  int pos, int num_heads);
    /* out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    ts_status (*gelu_forward)(struct ts_backend *be, const struct ts_tensor *out,
                              const struct ts_tensor *inp);
    /* dinp = gelu'(inp) * dout */
    ts_status (*gelu_backward)(struct ts_backend *be, const struct ts_tensor *dinp,
                               const struct ts_tensor *inp, const struct ts_tensor *dout);
    /* out = a + b */
    ts_status (*residual_forward)(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *a, const struct ts_tensor *b);
    /* res (N,C) = a + b, then layernorm_forward(out, mean, rstd, res, weight, bias) on res as
     * stored (rounded to its dtype): the residual add and the next layernorm in one pass, bit
     * for bit the two ops. Optional: when NULL, ops.c runs residual_forward then
     * layernorm_forward. */
    ts_status (*residual_layernorm_forward)(
        struct ts_backend *be, const struct ts_tensor *res, const struct ts_tensor *out,
        const struct ts_tensor *mean, const struct ts_tensor *rstd, const struct ts_tensor *a,
        const struct ts_tensor *b, const struct ts_tensor *weight, const struct ts_tensor *bias);
    /* Fused softmax + cross-entropy over the first `vocab` columns of logits (N,Vp).
     * losses (N) = -log softmax(logits[i,:V])[targets[i]]; targets (N) i32.
     * When with_grad: logits[i,v] = dloss * (p[v] - [v == target]) for v < V and 0 for the
     * padded columns v >= V, i.e. logits becomes dlogits in place (probabilities never stored). */
    ts_status (*softmax_xent)(struct ts_backend *be, const struct ts_tensor *losses,
                              const struct ts_tensor *logits, const struct ts_tensor *targets,
                              int vocab, float dloss, bool with_grad);
    /* softmax_xent over a vocabulary split across ranks (tensor parallelism), in three steps
     * with two all-reduces between them; each rank holds logits (N,Vl) of the vocabulary columns
     * [vocab_begin, vocab_begin + Vl), of which the first `valid` (0 <= valid <= Vl) are real
     * tokens (the rest are padding and never take part). Optional, all three or none (NULL: the
     * model refuses tensor parallelism on this backend).
     * xent_slice_max: rowmax (N) f32 = the max of each row's first `valid` logits (-inf when
     * valid is 0); the caller takes the max over the ranks. */
    ts_status (*xent_slice_max)(struct ts_backend *be, const struct ts_tensor *rowmax,
                                const struct ts_tensor *logits, int valid);
    /* stats (N,2) f32 = [sum of exp(logit - rowmax) over the row's first `valid` logits, the
     * logit of targets[n] if this slice holds it (vocab_begin <= target < vocab_begin + valid)
     * else 0]; rowmax (N) is the max over all ranks. The caller sums stats over the ranks. */
    ts_status (*xent_slice_sumexp)(struct ts_backend *be, const struct ts_tensor *stats,
                                   const struct ts_tensor *logits, const struct ts_tensor *rowmax,
                                   const struct ts_tensor *targets, int valid, int64_t vocab_begin);
    /* From the summed stats: losses (N) = log(stats[n,0]) + rowmax[n] - stats[n,1] (the same on
     * every rank). When with_grad: logits[n,v] = dloss * (exp(logit - rowmax) / stats[n,0] -
     * [vocab_begin + v == target]) for v < valid and 0 for the padded columns: this rank's part of
     * softmax_xent's dlogits, in place. */
    ts_status (*xent_from_stats)(struct ts_backend *be, const struct ts_tensor *losses,
                                 const struct ts_tensor *logits, const struct ts_tensor *targets,
                                 const struct ts_tensor *rowmax, const struct ts_tensor *stats,
                                 int valid, int64_t vocab_begin, float dloss, bool with_grad);

    /* ---- optimizer ---- */
    /* AdamW on one tensor (all fp32, same numel). g = grad * grad_scale;
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mh = m / (1-b1^step); vh = v / (1-b2^step);
     * param -= lr * (mh / (sqrt(vh) + eps) + weight_decay * param). step counts from 1. */
    ts_status (*adamw)(struct ts_backend *be, const struct ts_tensor *param,
                       const struct ts_tensor *grad, const struct ts_tensor *m,
                       const struct ts_tensor *v, float lr, float beta1, float beta2, float eps,
                       float weight_decay, float grad_scale, int step);
    /* out (1) f32 = sum of x^2 over x (any numel), accumulated in a fixed order (deterministic) */
    ts_status (*sum_squares)(struct ts_backend *be, const struct ts_tensor *out,
                             const struct ts_tensor *x);

    /* ---- precision ---- */
    /* dst = src converted to dst's dtype (f32 <-> bf16, round to nearest even; same dtype is a
     * copy); same numel, no overlap. */
    ts_status (*cast)(struct ts_backend *be, const struct ts_tensor *dst,
                      const struct ts_tensor *src);
    /* AdamW over fp32 master weights: exactly `adamw` applied to master (f32), then param =
     * master rounded to param's dtype (f32 or bf16). grad, m, v f32; all the same numel. */
    ts_status (*adamw_master)(struct ts_backend *be, const struct ts_tensor *param,
                              const struct ts_tensor *master, const struct ts_tensor *grad,
                              const struct ts_tensor *m, const struct ts_tensor *v, float lr,
                              float beta1, float beta2, float eps, float weight_decay,
                              float grad_scale, int step);

    /* ---- host memory, asynchronous copies, events ---- */
    /* Host memory the device copies from fastest (pinned on CUDA); zero-filled. */
    ts_status (*host_alloc)(struct ts_backend *be, size_t bytes, void **out);
    void (*host_free)(struct ts_backend *be, void *ptr);
    /* Queued after all work issued so far; return at once. The host buffer must be from
     * host_alloc and stay untouched until an event recorded after the copy has completed. */
    ts_status (*copy_h2d_async)(struct ts_backend *be, void *dst, const void *src, size_t bytes);
    ts_status (*copy_d2h_async)(struct ts_backend *be, void *dst, const void *src, size_t bytes);
    ts_status (*event_create)(struct ts_backend *be, ts_event_t **out);
    void (*event_destroy)(struct ts_backend *be, ts_event_t *ev); /* NULL is a no-op */
    /* Marks the point after all work issued so far. */
    ts_status (*event_record)(struct ts_backend *be, ts_event_t *ev);
    /* The host waits until the work before the event's last record has completed. */
    ts_status (*event_sync)(struct ts_backend *be, ts_event_t *ev);
    /* Milliseconds between two recorded (and completed) events. */
    ts_status (*event_elapsed_ms)(struct ts_backend *be, ts_event_t *start, ts_event_t *end,
                                  float *ms);

    /* ---- device information ---- */
    /* Energy the device has used since some fixed point, in millijoules (NVML on CUDA);
     * TS_ERR_UNSUPPORTED where the device has no counter (info.has_energy false). */
    ts_status (*energy_mj)(struct ts_backend *be, uint64_t *out);
};

/* Frees the backend (destroy(NULL) is a no-op). */
void ts_backend_destroy(struct ts_backend *be);

#ifdef __cplusplus
}
#endif

#endif
