/* state.h: a training run's whole state as a checkpoint, and back.
 *
 * What trainer/ hands checkpoint/: the parameters as tensors "params/<Hugging Face name>" of
 * the whole (global) shape (saved by data-parallel rank 0 of each tensor-parallel rank: its tp
 * part of split tensors, and on tp rank 0 the replicated ones; model.h5 is exported from this
 * table with wte cropped to V rows), the AdamW moments "adam_m/<name>" and "adam_v/<name>" as
 * the boxes of this rank's optimizer range (a ZeRO-1 slice of its flat buffer, or all of it on
 * dp rank 0 without ZeRO), with bf16 parameters the optimizer's fp32 master weights
 * "master/<name>" the same way (model.h5 is then exported from them), and per rank the blob
 * "trainer" with the counters (updates done, optimizer steps, loader position in global
 * windows) as "key=value" lines. A tp rank's part of a split tensor is one box per group of the
 * split dimension (c_attn: Q, K, V) and piece of its range, in global coordinates, so loads at
 * any tp and dp read the boxes they need (world rank w is (dp, tp) = (w / tp, w % tp), as
 * comm/grid.h lays it out). The learning rate
 * is a pure function of the step and there is no other randomness in a step, so these restore
 * a run bit-exactly. Tensors cross the backend through staging host buffers: a saver keeps them
 * for the run and saves through a checkpoint writer (in the background or not); every rank of
 * `world` saves together. Loads run HDF5 on the calling thread. */
#ifndef TS_STATE_H
#define TS_STATE_H

#include "checkpoint/ckpt.h"
#include "trainer/train.h"

/* What the caller (launch/) records beyond what the trainer knows. */
struct ts_train_state_info {
    int64_t tokens_seen;
    int64_t global_batch;
    struct ts_ckpt_layout layout;
    const struct ts_ckpt_kv *train; /* the run's flags */
    int num_train;
    const struct ts_ckpt_data_file *data;
    int num_data;
    const char *data_manifest, *data_manifest_hash, *parent, *build_version; /* may be NULL */
    struct ts_ckpt_names *owned; /* the checkpoints pruning may delete (ckpt.h); NULL: any older */
};

/* A run's saver: host staging buffers allocated at the first save and reused (through the
 * backend's host_alloc: pinned on a GPU), and a checkpoint writer (ckpt.h), asynchronous or
 * not. The trainer and world must outlive it. destroy drains the writer (not collective). */
typedef struct ts_train_saver ts_train_saver_t;
ts_status ts_train_saver_create(ts_train_saver_t **out, ts_trainer_t *tr, ts_comm_t *world,
                                bool async) TS_MUST_CHECK;
void ts_train_saver_destroy(ts_train_saver_t *s);
/* Collective, at a step boundary: waits for the previous save to be committed, copies the
 * state of step ts_trainer_steps_done(tr) into the buffers (the only stall of an asynchronous
 * save) and starts saving it under dir; a synchronous saver also commits it here. Committed
 * saves are taken from the writer (ts_ckpt_writer_take). */
ts_status ts_train_saver_begin(ts_train_saver_t *s, const struct ts_train_state_info *info,
                               const char *dir, int keep_last) TS_MUST_CHECK;
/* The writer, to poll at each step boundary, wait for, take committed saves from, drain. */
ts_ckpt_writer_t *ts_train_saver_writer(ts_train_saver_t *s);

/* Saves step ts_trainer_steps_done(tr) under dir (`<run>/checkpoints`), synchronously, with
 * buffers allocated for the call. */
ts_status ts_train_state_save(ts_trainer_t *tr, ts_comm_t *world,
                              const struct ts_train_state_info *info, const char *dir,
                              int keep_last, char *path, size_t path_len) TS_MUST_CHECK;

/* The trainer blob's counters ("steps_done=N\noptim_steps=N\nloader_position=N\n"), each digits
 * only; the step counts must fit the trainer's int (a larger one is an error naming the limit,
 * never a truncated count). `where` names the checkpoint in messages. */
ts_status ts_train_state_parse_counters(const char *text, const char *where, int64_t *steps,
                                        int64_t *optim_steps, int64_t *position) TS_MUST_CHECK;

/* Restores weights, moments and counters (the loader is sought to the saved position) from a
 * checkpoint of the same model saved at any dp, tp and ZeRO stage (counters of rank 0: they
 * agree on every rank). */
ts_status ts_train_state_load(ts_trainer_t *tr, ts_ckpt_t *ck) TS_MUST_CHECK;

/* Weights only (eval, sample, --init-from): this rank's part (all of it at tp 1) of every
 * params/ tensor (master/ for an fp32 model where a bf16 run saved them). */
ts_status ts_gpt_load_checkpoint(ts_gpt_t *gpt, ts_ckpt_t *ck) TS_MUST_CHECK;

/* The model config a checkpoint records (its "model" keys), finished (Vp set). */
ts_status ts_gpt_config_from_checkpoint(const ts_ckpt_t *ck,
                                        struct ts_gpt_config *cfg) TS_MUST_CHECK;

/* The config as the checkpoint's "model" keys. */
ts_status ts_gpt_config_to_kv(const struct ts_gpt_config *cfg, struct ts_ckpt_kv *kv,
                              int *n) TS_MUST_CHECK;

#endif
