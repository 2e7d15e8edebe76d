/* ops.h: the op API the model and optimizer call.
 *
 * Each ts_op_* checks dtypes, shapes and aliasing once, for every backend, with a message that
 * names the op and the offending tensor, then dispatches through the backend table (backend.h,
 * which documents each op's semantics: "=" overwrites, "+=" accumulates). */
#ifndef TS_OPS_H
#define TS_OPS_H

#include "kernels/backend.h"

/* ---- memory: a tensor owns nothing; these pair an allocation with its description ---- */
ts_status ts_op_alloc(struct ts_backend *be, struct ts_tensor *out, enum ts_dtype dtype, int ndim,
                      const int64_t *shape) TS_MUST_CHECK;   /* zero-filled */
void ts_op_free(struct ts_backend *be, struct ts_tensor *t); /* t->data = NULL afterwards */
ts_status ts_op_upload(struct ts_backend *be, const struct ts_tensor *dst, const void *host,
                       size_t bytes) TS_MUST_CHECK;
ts_status ts_op_download(struct ts_backend *be, void *host, const struct ts_tensor *src,
                         size_t bytes) TS_MUST_CHECK;
ts_status ts_op_copy(struct ts_backend *be, const struct ts_tensor *dst,
                     const struct ts_tensor *src) TS_MUST_CHECK;
ts_status ts_op_zero(struct ts_backend *be, const struct ts_tensor *t) TS_MUST_CHECK;
ts_status ts_op_sync(struct ts_backend *be) TS_MUST_CHECK;

ts_status ts_op_fill(struct ts_backend *be, const struct ts_tensor *t, float value) TS_MUST_CHECK;
ts_status ts_op_fill_normal(struct ts_backend *be, const struct ts_tensor *t, float mean, float std,
                            uint64_t seed, uint64_t counter) TS_MUST_CHECK;

ts_status ts_op_encoder_forward(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                const struct ts_tensor *wpe) TS_MUST_CHECK;
ts_status ts_op_encoder_backward(struct ts_backend *be, const struct ts_tensor *dwte,
                                 const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                 const struct ts_tensor *tokens) TS_MUST_CHECK;
ts_status ts_op_encoder_forward_slice(struct ts_backend *be, const struct ts_tensor *out,
                                      const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                      const struct ts_tensor *wpe,
                                      int64_t vocab_begin) TS_MUST_CHECK;
ts_status ts_op_encoder_backward_slice(struct ts_backend *be, const struct ts_tensor *dwte,
                                       const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                       const struct ts_tensor *tokens,
                                       int64_t vocab_begin) TS_MUST_CHECK;
ts_status ts_op_layernorm_forward(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *mean, const struct ts_tensor *rstd,
                                  const struct ts_tensor *inp, const struct ts_tensor *weight,
                                  const struct ts_tensor *bias) TS_MUST_CHECK;
ts_status ts_op_layernorm_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                   const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                   const struct ts_tensor *dout, const struct ts_tensor *inp,
                                   const struct ts_tensor *weight, const struct ts_tensor *mean,
                                   const struct ts_tensor *rstd) TS_MUST_CHECK;
ts_status ts_op_matmul_forward(struct ts_backend *be, const struct ts_tensor *out,
                               const struct ts_tensor *inp, const struct ts_tensor *weight,
                               const struct ts_tensor *bias, enum ts_wlayout layout) TS_MUST_CHECK;
/* pre = inp @ W + bias, out = gelu(pre); fused where the backend can (backend.h). */
ts_status ts_op_matmul_forward_gelu(struct ts_backend *be, const struct ts_tensor *out,
                                    const struct ts_tensor *pre, const struct ts_tensor *inp,
                                    const struct ts_tensor *weight,
                                    const struct ts_tensor *bias) TS_MUST_CHECK;
ts_status ts_op_matmul_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                const struct ts_tensor *dout, const struct ts_tensor *inp,
                                const struct ts_tensor *weight,
                                enum ts_wlayout layout) TS_MUST_CHECK;
/* dpre = gelu'(pre) * (dout @ W^T), dweight += inp^T dout, dbias += (backend.h): the MLP's
 * projection backward and GELU's in one call, fused where the backend offers it. */
ts_status ts_op_matmul_backward_dgelu(struct ts_backend *be, const struct ts_tensor *dpre,
                                      const struct ts_tensor *dweight,
                                      const struct ts_tensor *dbias, const struct ts_tensor *dout,
                                      const struct ts_tensor *inp, const struct ts_tensor *weight,
                                      const struct ts_tensor *pre) TS_MUST_CHECK;
ts_status ts_op_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *att, const struct ts_tensor *qkv,
                                  int num_heads) TS_MUST_CHECK;
ts_status ts_op_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                   const struct ts_tensor *scratch, const struct ts_tensor *dout,
                                   const struct ts_tensor *qkv, const struct ts_tensor *att,
                                   int num_heads) TS_MUST_CHECK;
/* The flash pair (backend.h); usable is false where the backend has no such slot. */
bool ts_op_flash_attention_usable(struct ts_backend *be, int head_size, enum ts_dtype dtype);
ts_status ts_op_flash_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                        const struct ts_tensor *lse, const struct ts_tensor *qkv,
                                        int num_heads) TS_MUST_CHECK;
ts_status ts_op_flash_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                         const struct ts_tensor *scratch,
                                         const struct ts_tensor *dout, const struct ts_tensor *qkv,
                                         const struct ts_tensor *out, const struct ts_tensor *lse,
                                         int num_heads) TS_MUST_CHECK;
ts_status ts_op_attention_decode(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *scratch, const struct ts_tensor *cache,
                                 int pos, int num_heads) TS_MUST_CHECK;
ts_status ts_op_gelu_forward(struct ts_backend *be, const struct ts_tensor *out,
                             const struct ts_tensor *inp) TS_MUST_CHECK;
ts_status ts_op_gelu_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                              const struct ts_tensor *inp,
                              const struct ts_tensor *dout) TS_MUST_CHECK;
ts_status ts_op_residual_forward(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *a,
                                 const struct ts_tensor *b) TS_MUST_CHECK;
/* res = a + b; out, mean, rstd = layernorm(res): fused where the backend offers it. */
ts_status ts_op_residual_layernorm_forward(struct ts_backend *be, const struct ts_tensor *res,
                                           const struct ts_tensor *out,
                                           const struct ts_tensor *mean,
                                           const struct ts_tensor *rstd, const struct ts_tensor *a,
                                           const struct ts_tensor *b,
                                           const struct ts_tensor *weight,
                                           const struct ts_tensor *bias) TS_MUST_CHECK;
ts_status ts_op_softmax_xent(struct ts_backend *be, const struct ts_tensor *losses,
                             const struct ts_tensor *logits, const struct ts_tensor *targets,
                             int vocab, float dloss, bool with_grad) TS_MUST_CHECK;
ts_status ts_op_xent_slice_max(struct ts_backend *be, const struct ts_tensor *rowmax,
                               const struct ts_tensor *logits, int valid) TS_MUST_CHECK;
ts_status ts_op_xent_slice_sumexp(struct ts_backend *be, const struct ts_tensor *stats,
                                  const struct ts_tensor *logits, const struct ts_tensor *rowmax,
                                  const struct ts_tensor *targets, int valid,
                                  int64_t vocab_begin) TS_MUST_CHECK;
ts_status ts_op_xent_from_stats(struct ts_backend *be, const struct ts_tensor *losses,
                                const struct ts_tensor *logits, const struct ts_tensor *targets,
                                const struct ts_tensor *rowmax, const struct ts_tensor *stats,
                                int valid, int64_t vocab_begin, float dloss,
                                bool with_grad) TS_MUST_CHECK;
ts_status ts_op_adamw(struct ts_backend *be, const struct ts_tensor *param,
                      const struct ts_tensor *grad, const struct ts_tensor *m,
                      const struct ts_tensor *v, float lr, float beta1, float beta2, float eps,
                      float weight_decay, float grad_scale, int step) TS_MUST_CHECK;
ts_status ts_op_sum_squares(struct ts_backend *be, const struct ts_tensor *out,
                            const struct ts_tensor *x) TS_MUST_CHECK;

/* ---- precision ---- */
ts_status ts_op_cast(struct ts_backend *be, const struct ts_tensor *dst,
                     const struct ts_tensor *src) TS_MUST_CHECK;
ts_status ts_op_adamw_master(struct ts_backend *be, const struct ts_tensor *param,
                             const struct ts_tensor *master, const struct ts_tensor *grad,
                             const struct ts_tensor *m, const struct ts_tensor *v, float lr,
                             float beta1, float beta2, float eps, float weight_decay,
                             float grad_scale, int step) TS_MUST_CHECK;

/* ---- host memory the device copies from fastest, asynchronous copies, events ---- */
ts_status ts_op_host_alloc(struct ts_backend *be, size_t bytes, void **out) TS_MUST_CHECK;
void ts_op_host_free(struct ts_backend *be, void *ptr); /* NULL is a no-op */
/* The host buffer must come from ts_op_host_alloc and stay untouched until an event recorded
 * after the copy has been synced. */
ts_status ts_op_upload_async(struct ts_backend *be, const struct ts_tensor *dst, const void *host,
                             size_t bytes) TS_MUST_CHECK;
ts_status ts_op_download_async(struct ts_backend *be, void *host, const struct ts_tensor *src,
                               size_t bytes) TS_MUST_CHECK;
ts_status ts_op_event_create(struct ts_backend *be, ts_event_t **out) TS_MUST_CHECK;
void ts_op_event_destroy(struct ts_backend *be, ts_event_t *ev); /* NULL is a no-op */
ts_status ts_op_event_record(struct ts_backend *be, ts_event_t *ev) TS_MUST_CHECK;
ts_status ts_op_event_sync(struct ts_backend *be, ts_event_t *ev) TS_MUST_CHECK;
ts_status ts_op_event_elapsed_ms(struct ts_backend *be, ts_event_t *start, ts_event_t *end,
                                 float *ms) TS_MUST_CHECK;
/* Millijoules the device has used since a fixed point; TS_ERR_UNSUPPORTED without a counter. */
ts_status ts_op_energy_mj(struct ts_backend *be, uint64_t *out) TS_MUST_CHECK;

#endif
