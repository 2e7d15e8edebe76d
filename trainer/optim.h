/* optim.h: AdamW with global-norm gradient clipping over the model's flat buffers.
 *
 * The moments share the parameter table. Weight decay applies to tensors the table marks
 * `decay`: every matrix (wte, wpe and the block projections, as nanoGPT and llm.c do), not
 * biases or layernorm parameters. The global norm is one
 * sum_squares over the flat gradient buffer, so every parameter counts once. */
#ifndef TS_OPTIM_H
#define TS_OPTIM_H

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

/* Allocates m and v (zero) on the model's backend. */
ts_status ts_optim_create(ts_optim_t **out, ts_gpt_t *gpt,
                          const struct ts_adamw_config *cfg) TS_MUST_CHECK;
void ts_optim_destroy(ts_optim_t *opt);

/* One update with learning rate lr: global norm, clip to grad_clip, AdamW on every tensor.
 * *grad_norm (if not NULL) gets the norm before clipping. A non-finite norm skips the update
 * and returns TS_ERR_INVALID_ARG with a message (divergence). */
ts_status ts_optim_step(ts_optim_t *opt, float lr, float *grad_norm) TS_MUST_CHECK;

int ts_optim_step_count(const ts_optim_t *opt); /* updates done */

#endif
