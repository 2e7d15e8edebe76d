/* cpu_impl.h: what the CPU backend's files share: its private state and the op entry points
 * that cpu_backend.c puts into the function table. Not part of the public API. */
#ifndef TS_CPU_IMPL_H
#define TS_CPU_IMPL_H

#include "kernels/backend.h"
#include "kernels/cpu/blas.h"

struct cpu_ctx {
    int threads;         /* OpenMP threads for every parallel loop (one pool, shared with BLAS) */
    struct ts_blas blas; /* the sgemm behind every matmul */
};

static inline struct cpu_ctx *cpu_ctx_of(struct ts_backend *be) {
    return (struct cpu_ctx *)be->ctx;
}

static inline float *f32(const struct ts_tensor *t) { return (float *)t->data; }

/* cpu_ops.c */
ts_status ts_cpu_fill(struct ts_backend *be, const struct ts_tensor *t, float value);
ts_status ts_cpu_fill_normal(struct ts_backend *be, const struct ts_tensor *t, float mean,
                             float std, uint64_t seed, uint64_t counter);
ts_status ts_cpu_encoder_forward(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                 const struct ts_tensor *wpe);
ts_status ts_cpu_encoder_backward(struct ts_backend *be, const struct ts_tensor *dwte,
                                  const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                  const struct ts_tensor *tokens);
ts_status ts_cpu_layernorm_forward(struct ts_backend *be, const struct ts_tensor *out,
                                   const struct ts_tensor *mean, const struct ts_tensor *rstd,
                                   const struct ts_tensor *inp, const struct ts_tensor *weight,
                                   const struct ts_tensor *bias);
ts_status ts_cpu_layernorm_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                    const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                    const struct ts_tensor *dout, const struct ts_tensor *inp,
                                    const struct ts_tensor *weight, const struct ts_tensor *mean,
                                    const struct ts_tensor *rstd);
ts_status ts_cpu_matmul_forward(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *inp, const struct ts_tensor *weight,
                                const struct ts_tensor *bias, enum ts_wlayout layout);
ts_status ts_cpu_matmul_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                 const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                 const struct ts_tensor *dout, const struct ts_tensor *inp,
                                 const struct ts_tensor *weight, enum ts_wlayout layout);
ts_status ts_cpu_gelu_forward(struct ts_backend *be, const struct ts_tensor *out,
                              const struct ts_tensor *inp);
ts_status ts_cpu_gelu_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                               const struct ts_tensor *inp, const struct ts_tensor *dout);
ts_status ts_cpu_residual_forward(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *a, const struct ts_tensor *b);
ts_status ts_cpu_softmax_xent(struct ts_backend *be, const struct ts_tensor *losses,
                              const struct ts_tensor *logits, const struct ts_tensor *targets,
                              int vocab, float dloss, bool with_grad);
ts_status ts_cpu_cast(struct ts_backend *be, const struct ts_tensor *dst,
                      const struct ts_tensor *src);

/* cpu_vocab.c */
ts_status ts_cpu_encoder_forward_slice(struct ts_backend *be, const struct ts_tensor *out,
                                       const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                       const struct ts_tensor *wpe, int64_t vocab_begin);
ts_status ts_cpu_encoder_backward_slice(struct ts_backend *be, const struct ts_tensor *dwte,
                                        const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                        const struct ts_tensor *tokens, int64_t vocab_begin);
ts_status ts_cpu_xent_slice_max(struct ts_backend *be, const struct ts_tensor *rowmax,
                                const struct ts_tensor *logits, int valid);
ts_status ts_cpu_xent_slice_sumexp(struct ts_backend *be, const struct ts_tensor *stats,
                                   const struct ts_tensor *logits, const struct ts_tensor *rowmax,
                                   const struct ts_tensor *targets, int valid, int64_t vocab_begin);
ts_status ts_cpu_xent_from_stats(struct ts_backend *be, const struct ts_tensor *losses,
                                 const struct ts_tensor *logits, const struct ts_tensor *targets,
                                 const struct ts_tensor *rowmax, const struct ts_tensor *stats,
                                 int valid, int64_t vocab_begin, float dloss, bool with_grad);

/* cpu_attention.c */
ts_status ts_cpu_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                   const struct ts_tensor *att, const struct ts_tensor *qkv,
                                   int num_heads);
ts_status ts_cpu_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                    const struct ts_tensor *scratch, const struct ts_tensor *dout,
                                    const struct ts_tensor *qkv, const struct ts_tensor *att,
                                    int num_heads);
ts_status ts_cpu_attention_decode(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *scratch, const struct ts_tensor *cache,
                                  int pos, int num_heads);

/* cpu_flash_attention.c */
ts_status ts_cpu_flash_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                         const struct ts_tensor *lse, const struct ts_tensor *qkv,
                                         int num_heads);
ts_status ts_cpu_flash_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                          const struct ts_tensor *scratch,
                                          const struct ts_tensor *dout, const struct ts_tensor *qkv,
                                          const struct ts_tensor *out, const struct ts_tensor *lse,
                                          int num_heads);

/* cpu_optim.c */
ts_status ts_cpu_adamw(struct ts_backend *be, const struct ts_tensor *param,
                       const struct ts_tensor *grad, const struct ts_tensor *m,
                       const struct ts_tensor *v, float lr, float beta1, float beta2, float eps,
                       float weight_decay, float grad_scale, int step);
ts_status ts_cpu_adamw_master(struct ts_backend *be, const struct ts_tensor *param,
                              const struct ts_tensor *master, const struct ts_tensor *grad,
                              const struct ts_tensor *m, const struct ts_tensor *v, float lr,
                              float beta1, float beta2, float eps, float weight_decay,
                              float grad_scale, int step);
ts_status ts_cpu_sum_squares(struct ts_backend *be, const struct ts_tensor *out,
                             const struct ts_tensor *x);

#endif
