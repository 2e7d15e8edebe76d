/* gpt.h: the GPT-2 model: its parameter table, initialisation, forward and backward.
 *
 * Pre-norm blocks, tied input/output embeddings, vocabulary padded to a multiple of 128.
 * Parameters, gradients (and the optimizer's moments, optim.h) are flat buffers sharing one
 * tensor table whose names and shapes follow Hugging Face GPT2Model. Activations come from one
 * arena sized at create time for micro-batches up to (B, T); nothing is allocated per step.
 * Every touch of tensor data is a backend op (ops.h), so the same code runs on any backend.
 *
 * Dimension legend: B batch, T sequence, C channels, L layers, NH heads, HS = C/NH,
 * V vocabulary, Vp padded vocabulary. */
#ifndef TS_GPT_H
#define TS_GPT_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"

struct ts_gpt_config {
    int max_seq_len;       /* wpe rows; 1024 for GPT-2 */
    int vocab_size;        /* V: real tokens */
    int padded_vocab_size; /* Vp: set by ts_gpt_config_finish (V rounded up to 128); a model
                              split over tp ranks rounds up to lcm(128, tp) (ts_gpt_padded_vocab) */
    int num_layers;        /* L */
    int num_heads;         /* NH */
    int channels;          /* C */
    enum ts_dtype dtype;   /* parameters and activations: f32 (0, the default) or bf16; gradients
                              are f32 either way, and bf16 needs a backend that computes in it */
};

/* The limits of every model dimension, checked by ts_gpt_config_finish (and by the settings
 * table's rows, launch/settings.c). They keep every size the model derives (the parameter
 * table, the flat buffers, the activation arena) far inside int64 and the table's count inside
 * int; within them a too-large model is an allocation failure that names its size. V is bounded
 * by the uint16 token ids of shards. */
#define TS_GPT_MAX_LAYERS 1024
#define TS_GPT_MAX_HEADS 1024
#define TS_GPT_MAX_CHANNELS 65536
#define TS_GPT_MAX_SEQ_LEN 65536
#define TS_GPT_MAX_VOCAB 65536

/* Checks a user's config (one clear message per mistake, naming the limit) and sets
 * padded_vocab_size. */
ts_status ts_gpt_config_finish(struct ts_gpt_config *cfg) TS_MUST_CHECK;

/* The padded vocabulary of a model split over tp ranks: V rounded up to a multiple of
 * lcm(128, tp), so every rank holds Vp/tp rows of wte. At tp 1, and at any power of two up to
 * 128, it is the 128-multiple ts_gpt_config_finish sets, so those layouts share one whole wte. */
int ts_gpt_padded_vocab(int vocab_size, int tp);

/* Elements of the flat parameter buffer a (finished) config needs: what a model file's size is
 * checked against before anything is allocated. */
ts_status ts_gpt_config_num_params(const struct ts_gpt_config *cfg, int64_t *out) TS_MUST_CHECK;

/* One entry of the parameter table. */
struct ts_param_info {
    char name[64]; /* Hugging Face name: "wte.weight", "h.0.attn.c_attn.weight" */
    int ndim;
    int64_t shape[TS_MAX_DIMS];
    int64_t offset; /* elements from the start of the flat buffer */
    int64_t numel;
    bool decay;       /* weight decay applies (matrices only) */
    float init_std;   /* normal(0, std); 0 means constant init_value */
    float init_value; /* 1 for layernorm weights, 0 for biases */
    /* Tensor parallelism: this rank's part of the whole tensor. split_dim -1: replicated (every
     * tp rank holds it whole); 0: rows split; 1: columns split. The split dimension is cut into
     * split_groups equal groups (c_attn: Q, K, V) and each group into tp parts, rank r taking
     * part r of every group. global_shape is the whole tensor (== shape at tp 1). */
    int split_dim;
    int split_groups;
    int64_t global_shape[TS_MAX_DIMS];
};

typedef struct ts_gpt ts_gpt_t;

/* Allocates parameters, gradients and activations for micro-batches up to max_batch x max_seq
 * (max_seq <= cfg->max_seq_len) on `be`. Weights are zero until ts_gpt_init or a load. */
ts_status ts_gpt_create(ts_gpt_t **out, const struct ts_gpt_config *cfg, struct ts_backend *be,
                        int max_batch, int max_seq) TS_MUST_CHECK;
void ts_gpt_destroy(ts_gpt_t *gpt);

/* The tensor-parallel group as the model sees it: its size, this rank, and an in-place sum and
 * max over the group of an f32 tensor in the model's backend memory (synchronous on return). The
 * model core links no communicator; the trainer supplies one (ts_trainer_tp, train.h). */
struct ts_gpt_tp {
    int size, rank;
    ts_status (*all_reduce)(void *ctx, struct ts_backend *be, const struct ts_tensor *buf);
    ts_status (*all_reduce_max)(void *ctx, struct ts_backend *be, const struct ts_tensor *buf);
    void *ctx;
};

/* ts_gpt_create with Megatron tensor parallelism over `tp` (copied; its ctx outlives the model;
 * NULL or size 1: exactly ts_gpt_create). Each rank of the group holds NH/tp heads: c_attn
 * and mlp.c_fc split by columns, attn.c_proj and mlp.c_proj by rows; one all-reduce over tp in
 * the forward after each row-parallel matmul and one in the backward on each column-parallel
 * input's gradient. wte is split by rows over the vocabulary (padded to ts_gpt_padded_vocab):
 * the embedding looks up this rank's rows and sums over tp, the classifier computes this rank's
 * (B,T,Vp/tp) logits and the cross-entropy all-reduces each row's max and (sum of exponentials,
 * target logit), so no rank holds a whole row of logits; the classifier's input gradient is
 * summed over tp. wpe, layernorms and the row-parallel biases are replicated. The parameter
 * table and flat buffers hold this rank's part only. Host memory collectives (the CPU backend
 * under MPI); a backend without the vocabulary-parallel ops (backend.h) is refused. */
ts_status ts_gpt_create_tp(ts_gpt_t **out, const struct ts_gpt_config *cfg, struct ts_backend *be,
                           int max_batch, int max_seq, const struct ts_gpt_tp *tp) TS_MUST_CHECK;
int ts_gpt_tp_size(const ts_gpt_t *gpt);
int ts_gpt_tp_rank(const ts_gpt_t *gpt);
/* What this rank has handed the tp group since create: the number of all-reduces and their
 * payload in bytes (each rank's buffer, f32), forward and backward together. 0 at tp 1. */
void ts_gpt_tp_traffic(const ts_gpt_t *gpt, int64_t *calls, int64_t *bytes);
/* Sum of squared gradients over the flat range [begin, end) counting only the split tensors
 * (split true) or only the replicated ones (false); the caller sums the split part over tp. */
ts_status ts_gpt_grad_sum_squares(ts_gpt_t *gpt, int64_t begin, int64_t end, bool split,
                                  double *sum_sq) TS_MUST_CHECK;
/* Calls fn for each contiguous run of tensor i of this rank's table: `len` elements at element
 * `local` of the rank's tensor are elements `global` .. of the whole tensor (row-major). */
typedef void (*ts_gpt_run_fn)(void *ctx, int64_t local, int64_t global, int64_t len);
void ts_gpt_tensor_runs(const ts_gpt_t *gpt, int i, ts_gpt_run_fn fn, void *ctx);

const struct ts_gpt_config *ts_gpt_config(const ts_gpt_t *gpt);
struct ts_backend *ts_gpt_backend(const ts_gpt_t *gpt);
/* The parameter table, in the flat buffer's order. */
const struct ts_param_info *ts_gpt_params(const ts_gpt_t *gpt, int *count);
int64_t ts_gpt_num_params(const ts_gpt_t *gpt); /* elements of the flat buffer (with padding) */
/* Parameters a FLOP count should use: everything except wpe and the padded rows of wte, of the
 * whole model (the same at every tp). */
int64_t ts_gpt_num_flop_params(const ts_gpt_t *gpt);
/* The whole flat buffers (1-D tensors of ts_gpt_num_params elements): parameters in the model's
 * dtype, gradients f32. */
const struct ts_tensor *ts_gpt_param_buffer(const ts_gpt_t *gpt);
const struct ts_tensor *ts_gpt_grad_buffer(const ts_gpt_t *gpt);
/* This rank's activation arena in bytes, allocated at create (memory reports; what the
 * planner, launch/plan.c, predicts). */
int64_t ts_gpt_activation_bytes(const ts_gpt_t *gpt);

/* GPT-2 initialisation from a seed: normal(0, 0.02), residual projections 0.02/sqrt(2L),
 * layernorm weights 1, biases 0, the padded rows of wte 0. Value i of the flat buffer is
 * drawn from counter i, so it does not depend on the backend or layout. */
ts_status ts_gpt_init(ts_gpt_t *gpt, uint64_t seed) TS_MUST_CHECK;

/* Forward over host token ids (B,T), B <= max_batch, T <= max_seq; all ids < V.
 * With targets (B,T): *mean_loss (if not NULL) gets the mean cross-entropy in nats, and the
 * logits buffer holds dlogits * dloss ready for ts_gpt_backward, where dloss is the weight of
 * each token's loss in the objective (1/(B*T*grad_accum) for a mean over an accumulated batch).
 * dloss == 0 computes the losses without a gradient (eval): the logits stay logits and a
 * following ts_gpt_backward fails. Without targets (NULL) only logits are computed (sampling)
 * and *mean_loss is left alone. Ids outside [0, V) are an error. Synchronous when mean_loss is
 * not NULL (the losses are downloaded). */
ts_status ts_gpt_forward(ts_gpt_t *gpt, const int32_t *inputs, const int32_t *targets, int B, int T,
                         float dloss, float *mean_loss) TS_MUST_CHECK;

/* The training forward without a download: ts_gpt_forward with targets, except that the B*T
 * per-token losses (f32, in (B,T) order) are written to `losses`, B*T f32 elements in the
 * model's backend memory that the caller owns (the trainer passes row a of its (grad_accum,
 * B*T) buffer and downloads all rows once per step). Nothing comes back to the host, so the
 * call is asynchronous on a device: the losses are there for work issued after it.
 * uploaded NULL: inputs and targets may be any host memory and are copied before the call
 * returns (each copy waits for the stream). An event of the model's backend: inputs and targets
 * must come from ts_op_host_alloc; their copies are queued and `uploaded` is recorded after them,
 * and the caller leaves both buffers untouched until that event has completed. */
ts_status ts_gpt_forward_losses(ts_gpt_t *gpt, const int32_t *inputs, const int32_t *targets, int B,
                                int T, float dloss, const struct ts_tensor *losses,
                                ts_event_t *uploaded) TS_MUST_CHECK;

/* The logits of the last forward, (B, T, Vp) f32 in backend memory (read with ts_op_download);
 * at tp > 1 this rank's columns only, (B, T, Vp/tp) from column rank * Vp/tp.
 * Valid after a forward without targets; a forward with a gradient overwrites them with dlogits. */
ts_status ts_gpt_logits(const ts_gpt_t *gpt, struct ts_tensor *out) TS_MUST_CHECK;

/* Backward of the last forward (which must have had targets and dloss != 0); gradients
 * accumulate (+=). It consumes the forward's dlogits: a second call without a new forward is an
 * error. */
ts_status ts_gpt_backward(ts_gpt_t *gpt) TS_MUST_CHECK;

ts_status ts_gpt_zero_grad(ts_gpt_t *gpt) TS_MUST_CHECK;

/* Called during ts_gpt_backward each time a further range of the flat gradient buffer has its
 * final value for this backward: every gradient at flat offset >= final_from is final. Backward
 * runs in reverse, so the calls come after ln_f (final_from = offset of ln_f.weight), after
 * each block l from L-1 down to 0 (offset of h.l), and at the end (0: wte and wpe, which the
 * classifier and the encoder both touch). The trainer starts bucket reductions from it. A
 * failing hook stops backward with its status. NULL removes the hook. */
typedef ts_status (*ts_gpt_grad_hook)(void *ctx, int64_t final_from);
void ts_gpt_set_grad_hook(ts_gpt_t *gpt, ts_gpt_grad_hook fn, void *ctx);

/* Copies all parameters to/from host fp32 in table order (ts_gpt_num_params floats); bf16
 * parameters are widened / rounded to nearest even on the host. */
ts_status ts_gpt_params_to_host(ts_gpt_t *gpt, float *host) TS_MUST_CHECK;
ts_status ts_gpt_params_from_host(ts_gpt_t *gpt, const float *host) TS_MUST_CHECK;
ts_status ts_gpt_grads_to_host(ts_gpt_t *gpt, float *host) TS_MUST_CHECK;

#endif
