/* optim.h: AdamW with global-norm gradient clipping over the model's flat buffers.
 *
 * The moments share the parameter table. Weight decay applies to tensors the table marks
 * `decay`: every matrix (wte, wpe and the block projections, as nanoGPT and llm.c do), not
 * biases or layernorm parameters. The global norm is one
 * sum_squares over the flat gradient buffer, so every parameter counts once.
 *
 * ZeRO-1: an optimizer may own only a contiguous range [begin, end) of the flat buffer. Its
 * moments then hold that range alone, its sum of squares covers that range (the caller sums
 * the ranks' parts), and its update touches the parameters of that range: each tensor the
 * range cuts is updated on the cut part with the tensor's own decay. */
#ifndef TS_OPTIM_H
#define TS_OPTIM_H

#include <stdbool.h>

#include "trainer/gpt.h"

struct ts_adamw_config {
    float beta1;        /* 0.9 */
    float beta2;        /* 0.95 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 0.1 */
    float grad_clip;    /* 1.0; 0 disables clipping */
};

/* The defaults GPT-2 reproductions use. */
struct ts_adamw_config ts_adamw_defaults(void);

typedef struct ts_optim ts_optim_t;

/* Allocates m and v (zero) on the model's backend, over the whole flat buffer. With bf16
 * parameters it also keeps fp32 master weights of its range, copied from the parameters now:
 * create the optimizer after init or load. */
ts_status ts_optim_create(ts_optim_t **out, ts_gpt_t *gpt,
                          const struct ts_adamw_config *cfg) TS_MUST_CHECK;
/* The same over the flat range [begin, end) only (a ZeRO-1 shard). */
ts_status ts_optim_create_range(ts_optim_t **out, ts_gpt_t *gpt, const struct ts_adamw_config *cfg,
                                int64_t begin, int64_t end) TS_MUST_CHECK;
void ts_optim_destroy(ts_optim_t *opt);

/* One update with learning rate lr: global norm, clip to grad_clip, AdamW on every tensor.
 * *grad_norm (if not NULL) gets the norm before clipping. A non-finite norm skips the update
 * and returns TS_ERR_INVALID_ARG with a message (divergence). */
ts_status ts_optim_step(ts_optim_t *opt, float lr, float *grad_norm) TS_MUST_CHECK;

/* The two halves of ts_optim_step, for a caller that sums squares across shards:
 * *sum_sq = sum of squared gradients over this optimizer's range; then an update given the
 * global norm (clip and AdamW over the range; a non-finite norm is the same error). */
ts_status ts_optim_sum_squares(ts_optim_t *opt, double *sum_sq) TS_MUST_CHECK;
/* ts_optim_sum_squares without the wait: the sum (f32, the same bits) is queued for download to
 * *host, which must come from ts_op_host_alloc; it is there once an event recorded after this
 * call has completed ((double)*host is what ts_optim_sum_squares returns). */
ts_status ts_optim_sum_squares_async(ts_optim_t *opt, float *host) TS_MUST_CHECK;
ts_status ts_optim_update(ts_optim_t *opt, float lr, double norm) TS_MUST_CHECK;

int64_t ts_optim_step_count(const ts_optim_t *opt); /* updates done */

/* For checkpoints (trainer/state.h): the moments m and v (flat f32 views over this optimizer's
 * range, in backend memory) and setting the update count AdamW's bias correction uses. */
void ts_optim_moments(const ts_optim_t *opt, struct ts_tensor *m, struct ts_tensor *v);
void ts_optim_set_step_count(ts_optim_t *opt, int64_t steps);
/* The fp32 master weights of this optimizer's range (bf16 parameters); false when there are
 * none (fp32 parameters are their own master). */
bool ts_optim_master(const ts_optim_t *opt, struct ts_tensor *master);

#endif
