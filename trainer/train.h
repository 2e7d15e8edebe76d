/* train.h: the step API: one optimizer update made of grad-accum micro-steps, and eval.
 *
 * A trainer ties a model, its optimizer, a data loader, the data-parallel communicator and the
 * LR schedule. ts_trainer_step runs grad_accum forward/backward micro-steps on this rank's part
 * of the step's global batch (each token's loss weighted 1/(B*T*grad_accum*dp), so the sum over
 * ranks is the gradient of the global mean loss), reduces gradients over the communicator in
 * fixed buckets started during the last backward, then clips and updates with the learning rate
 * the schedule gives for the step. With ZeRO-1 the reduction is a reduce-scatter, each rank
 * updates its contiguous slice of the flat buffer, and the parameters are all-gathered (in their
 * dtype, so bf16 parameters travel as bf16). Collectives are ordered after the work producing
 * their buffers by events on the model's backend, not device syncs; with one data-parallel rank
 * none is called. The per-token losses come back once per step. Buffers are allocated at create
 * time; the step loop allocates nothing. */
#ifndef TS_TRAIN_H
#define TS_TRAIN_H

#include <stdint.h>

#include "comm/comm.h"
#include "data/shard.h"
#include "trainer/gpt.h"
#include "trainer/optim.h"
#include "trainer/schedule.h"

struct ts_train_config {
    int batch;      /* B: micro-batch per rank */
    int seq_len;    /* T */
    int grad_accum; /* micro-steps per update */
    struct ts_lr_schedule lr;
    struct ts_adamw_config adamw;
    int zero_stage;       /* 0: every rank updates everything; 1: ZeRO-1 (sharded AdamW state) */
    int64_t bucket_elems; /* gradient bucket size in floats (0: 25 MB worth, DDP's default) */
    bool no_overlap;      /* start the reductions only after backward (for measuring overlap) */
    struct ts_batch_ramp ramp; /* grad_accum per step grows with the tokens seen (0: off) */
    /* The tensor-parallel group the model was created over (ts_trainer_tp; borrowed). NULL or a
     * group of one: no tensor parallelism. The global norm then sums the split tensors' squares
     * over it and counts each replicated tensor once. */
    ts_comm_t *tp;
};

/* The model's view of a tensor-parallel communicator (ts_gpt_create_tp): its size, rank and a
 * blocking in-place sum and max over it. `tp` is borrowed and must outlive the model. */
struct ts_gpt_tp ts_trainer_tp(ts_comm_t *tp);

/* What one update did (what metrics.jsonl records). */
struct ts_step_record {
    int64_t step; /* 0-based index of the update just done */
    float loss;   /* mean training loss over the update's tokens (all ranks) */
    float lr;
    float grad_norm; /* before clipping */
    int64_t tokens;  /* tokens processed by this update across all ranks */
    double step_ms;
    double tok_per_s;
    double comm_wait_ms; /* gradient reduction time left after backward (not hidden; 0 at dp 1) */
    /* For overlap measurements (CLOCK_MONOTONIC ms, comparable across ranks of one host): when
     * this rank's last backward ended and when its last bucket completed, and how many buckets
     * had completed before backward ended (all of them with one rank: nothing to reduce). */
    double backward_end_ms, reduce_end_ms;
    int buckets_done_in_backward;
    double data_ms; /* this rank's time reading windows (ts_loader_read) */
    int grad_accum; /* micro-steps of this update (the batch ramp's, else the config's) */
    bool skipped;   /* the update gate refused it: the batch was consumed, nothing applied */
};

/* Asked after the loss and the gradient norm are known and before the update is applied (rec
 * holds step, loss, lr, grad_norm, tokens). It must answer the same on every rank of the
 * data-parallel group (the loss and norm are reduced values; a caller that wants certainty makes
 * rank 0 decide and broadcasts). *skip: drop this update (the step still counts). */
typedef ts_status (*ts_update_gate_fn)(void *ctx, const struct ts_step_record *rec, bool *skip);

typedef struct ts_trainer ts_trainer_t;

/* Borrows gpt, loader and comm, the data-parallel group (they must outlive the trainer);
 * creates the optimizer (over this rank's slice with ZeRO-1), the (grad_accum, B*T) loss buffer
 * and events on the model's backend. With several ranks, comm must be able to move that
 * backend's memory (ts_comm_check_backend: MPI refuses device memory here, at create). */
ts_status ts_trainer_create(ts_trainer_t **out, ts_gpt_t *gpt, ts_loader_t *loader, ts_comm_t *comm,
                            const struct ts_train_config *cfg) TS_MUST_CHECK;
void ts_trainer_destroy(ts_trainer_t *tr);

/* One update. A non-finite gradient norm is not an error here: the update is not applied, the
 * step counts, and rec->grad_norm carries the value so the caller (the coordinator) stops the
 * run without saving. */
ts_status ts_trainer_step(ts_trainer_t *tr, struct ts_step_record *rec) TS_MUST_CHECK;
int64_t ts_trainer_steps_done(const ts_trainer_t *tr);
/* Installs (or with NULL removes) the gate asked before every update; borrowed. */
void ts_trainer_set_update_gate(ts_trainer_t *tr, ts_update_gate_fn gate, void *ctx);
int ts_trainer_num_buckets(const ts_trainer_t *tr);
/* This rank's ZeRO-1 slice of the flat buffer (the whole buffer without ZeRO). */
void ts_trainer_shard(const ts_trainer_t *tr, int64_t *begin, int64_t *end);

/* For checkpoints (trainer/state.h): what the trainer borrows or owns, and restoring the count
 * of updates done (the schedule's step). */
ts_gpt_t *ts_trainer_gpt(const ts_trainer_t *tr);
ts_optim_t *ts_trainer_optim(const ts_trainer_t *tr);
ts_loader_t *ts_trainer_loader(const ts_trainer_t *tr);
void ts_trainer_set_steps_done(ts_trainer_t *tr, int64_t steps);

/* Mean loss (nats/token) over `batches` consecutive batches of B windows read from the start of
 * `loader` (its position is reset first, so the same file gives the same number every time,
 * and restored afterwards). batches <= 0, or more batches than the file holds, means every full
 * batch in the file. The forwards run without gradients (dloss 0); *tokens (if not NULL) gets
 * the tokens evaluated. With a communicator (NULL: this process alone) the batches are split
 * across its ranks (rank r takes batches r, r + size, ...) and every rank gets the mean over all
 * of them; it is a collective, so every rank of comm must call it. */
ts_status ts_eval_loss(ts_gpt_t *gpt, ts_loader_t *loader, ts_comm_t *comm, int B, int batches,
                       double *mean_loss, int64_t *tokens) TS_MUST_CHECK;

#endif
