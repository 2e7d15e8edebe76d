/* ckpt.h: sharded HDF5 checkpoints with a protobuf-c manifest.
 *
 * A checkpoint is a directory `step_NNNNNNNN/` (N updates done) under a run's `checkpoints/`:
 * one HDF5 file per rank (`rank_RRRRR.h5`) with that rank's shards of named tensors and its
 * opaque blobs, `model.h5` (every tensor of one table, full, fp32, by its bare name, for any HDF5
 * tool), and `manifest.pb` (checkpoint/manifest.proto). checkpoint/ knows tensor tables (name,
 * dtype, global shape, this rank's shard as boxes in global coordinates) and named blobs; it
 * knows nothing about training: the caller hands it host buffers and run metadata.
 *
 * Saves are atomic in two phases: every rank writes and fsyncs its file inside
 * `step_NNNNNNNN.tmp-<id>/`, the ranks agree that all succeeded, then rank 0 writes model.h5
 * and the manifest, fsyncs, renames the directory into place and moves the `latest` symlink
 * (a new link renamed over the old). A kill at any instant leaves every complete checkpoint
 * loadable. Loading verifies checksums, bounds-checks everything read from a file, and copies
 * any global box of a tensor out of whichever rank files hold it (resharding).
 *
 * Threads: every call here runs HDF5 on the calling thread; callers keep all checkpoint calls
 * on one thread (Debian's MPI build of HDF5 is not thread-safe; this module links the serial
 * build, one file per rank). All buffers are host memory owned by the caller. */
#ifndef TS_CKPT_H
#define TS_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm/comm.h"
#include "kernels/fs.h"
#include "kernels/tensor.h"

#define TS_CKPT_FORMAT_VERSION 1
/* Boxes per tensor per rank: a flat slice of a 4-D tensor needs <= 7; a ZeRO-1 slice of a 2-D
 * tensor split over tp in 3 column groups (c_attn's Q, K, V) up to 3 x 3 = 9. */
#define TS_CKPT_MAX_BOXES 16
#define TS_CKPT_MAX_KV 48
#define TS_CKPT_NAME_LEN 96

/* A box in global coordinates: dims [offset[d], offset[d] + extent[d]) for d < ndim. */
struct ts_ckpt_box {
    int64_t offset[TS_MAX_DIMS];
    int64_t extent[TS_MAX_DIMS];
};

/* One tensor of a table as this rank holds it. `data` holds the boxes' elements concatenated,
 * each box row-major; on save it is read, on ts_ckpt_read it is written. A rank holding
 * nothing of a tensor lists it with num_boxes 0. Across ranks the boxes of a tensor must be
 * disjoint and cover its global shape exactly (save checks it). */
struct ts_ckpt_tensor {
    char name[TS_CKPT_NAME_LEN]; /* "<table>/<name>": "params/wte.weight", "adam_m/wte.weight" */
    enum ts_dtype dtype;         /* TS_DTYPE_F32 or TS_DTYPE_BF16 */
    int ndim;
    int64_t shape[TS_MAX_DIMS]; /* global */
    int num_boxes;
    struct ts_ckpt_box boxes[TS_CKPT_MAX_BOXES];
    /* model.h5 only: a leading crop of `shape` (wte's V of Vp rows); 0 entries mean the shape */
    int64_t export_shape[TS_MAX_DIMS];
    void *data;
};

/* A named opaque byte string of this rank (optimizer step count, RNG, schedule state). */
struct ts_ckpt_blob {
    char name[TS_CKPT_NAME_LEN];
    const void *data;
    size_t size;
};

struct ts_ckpt_kv {
    char key[64];
    char value[1024]; /* a data mixture's sources, absolute paths, fit */
};

struct ts_ckpt_data_file {
    char path[TS_PATH_MAX];
    uint64_t bytes;
    char hash[96];    /* "<algorithm>:<hex>" */
    int64_t mtime_ns; /* when hashed (0: unknown, earlier versions); a resume re-reads on change */
};

struct ts_ckpt_layout {
    int world_size, dp, tp, zero_stage;
};

/* What a checkpoint says about the run: rank 0's copy is recorded. */
struct ts_ckpt_meta {
    int64_t step;            /* optimizer updates done */
    int64_t tokens_seen;     /* training tokens consumed */
    int64_t global_batch;    /* sequences per update */
    int64_t loader_position; /* global windows consumed */
    struct ts_ckpt_layout layout;
    int num_model;
    struct ts_ckpt_kv model[TS_CKPT_MAX_KV]; /* the model config, "num_layers" = "12" */
    int num_train;
    struct ts_ckpt_kv train[TS_CKPT_MAX_KV]; /* the run's flags worth recording */
    char data_manifest[TS_PATH_MAX]; /* path fields hold any path up to TS_PATH_MAX, whole */
    char data_manifest_hash[96];
    int num_data;
    struct ts_ckpt_data_file *data; /* num_data entries (owned by whoever filled it) */
    char parent[TS_PATH_MAX];       /* the checkpoint this run started from, "" if none */
    char build_version[64];
    int64_t created_unix; /* set by save */
};

/* Appends key = printf(fmt, ...) to kv[*n] (at most TS_CKPT_MAX_KV). */
ts_status ts_ckpt_kv_add(struct ts_ckpt_kv *kv, int *n, const char *key, const char *fmt, ...)
    TS_PRINTF(4, 5) TS_MUST_CHECK;
/* The value of key, or NULL. */
const char *ts_ckpt_kv_get(const struct ts_ckpt_kv *kv, int n, const char *key);

/* Checkpoint directory names (`step_NNNNNNNN`) a run accounts for: the ones it saved, and on a
 * resume the ones it continues. Pruning deletes only these, by their exact names. */
struct ts_ckpt_names {
    char (*name)[32];
    int n, cap;
};
ts_status ts_ckpt_names_add(struct ts_ckpt_names *l, const char *name) TS_MUST_CHECK;
/* Adds the complete checkpoints of `dir` named exactly as save names them, step <= max_step. */
ts_status ts_ckpt_names_scan(struct ts_ckpt_names *l, const char *dir,
                             int64_t max_step) TS_MUST_CHECK;
void ts_ckpt_names_deinit(struct ts_ckpt_names *l);

struct ts_ckpt_save_args {
    const char *dir; /* the checkpoints directory, created if missing: "<run>/checkpoints" */
    const struct ts_ckpt_meta *meta;
    const struct ts_ckpt_tensor *tensors; /* this rank's tensors, same names on every rank */
    int num_tensors;
    const struct ts_ckpt_blob *blobs;
    int num_blobs;
    const char *model_table; /* the table exported to model.h5 ("params"), NULL for none */
    /* > 0: afterwards delete the oldest checkpoints until keep_last remain, counting the new
     * one (never deleted): with `owned`, only those it lists (the new one is added to it);
     * without, those named exactly as save names them and older than the new one */
    int keep_last;
    struct ts_ckpt_names *owned;
    ts_comm_t *comm; /* every rank calls ts_ckpt_save together */
};

/* Saves a checkpoint of meta->step, collectively. On success `path` (if not NULL) gets the
 * final directory. On failure on any rank every rank returns an error, the temporary directory
 * is removed and `latest` is untouched. A checkpoint of the same step is replaced. Blocking. */
ts_status ts_ckpt_save(const struct ts_ckpt_save_args *args, char *path,
                       size_t path_len) TS_MUST_CHECK;

/* ---- saves in the background (writer.c) ----
 *
 * A writer holds at most one save in flight. begin (collective) checks the arguments, creates
 * the temporary directory and starts writing this rank's file: on a thread of the writer's own
 * (async), or at once on the calling thread (sync). The tensors' data must stay unchanged until
 * the save is no longer in flight (ts_ckpt_writer_busy false); the tensor table and the blobs
 * are copied. poll (collective: every rank calls it at the same points, e.g. every step
 * boundary; nothing is sent when no save is in flight) moves the save on: once every rank's file
 * is written the ranks agree and rank 0 commits in the background; a later poll gives every rank
 * rank 0's verdict. `wait` blocks until the save is committed (or failed). A failure on any
 * rank fails the poll on every rank, and nothing is committed. take hands out each committed
 * save once. Every HDF5 call of an async writer runs on its thread, every collective on the
 * caller's. drain (local, not collective: for error paths) waits for the thread, and with one
 * rank commits a written save so it is not lost; destroy drains. */
typedef struct ts_ckpt_writer ts_ckpt_writer_t;
struct ts_ckpt_saved {
    int64_t step;
    char path[TS_PATH_MAX];
    double save_s; /* begin to commit, on rank 0 */
};
ts_status ts_ckpt_writer_create(ts_ckpt_writer_t **out, bool async) TS_MUST_CHECK;
void ts_ckpt_writer_destroy(ts_ckpt_writer_t *w);
ts_status ts_ckpt_writer_begin(ts_ckpt_writer_t *w,
                               const struct ts_ckpt_save_args *a) TS_MUST_CHECK;
ts_status ts_ckpt_writer_poll(ts_ckpt_writer_t *w, bool wait) TS_MUST_CHECK;
bool ts_ckpt_writer_busy(const ts_ckpt_writer_t *w);
bool ts_ckpt_writer_take(ts_ckpt_writer_t *w, struct ts_ckpt_saved *out);
void ts_ckpt_writer_drain(ts_ckpt_writer_t *w);

typedef struct ts_ckpt ts_ckpt_t;

/* Finds a checkpoint directory from a run directory (its `checkpoints/latest`, or the newest
 * complete step when `latest` is missing or dangling), a checkpoints directory, or a checkpoint
 * directory. TS_ERR_IO with a message when there is none. */
ts_status ts_ckpt_resolve(const char *path, char *out, size_t out_len) TS_MUST_CHECK;
/* Whether `path` (a run or checkpoints directory) holds any complete checkpoint. */
bool ts_ckpt_exists(const char *path);

/* Opens a checkpoint directory (or anything ts_ckpt_resolve accepts): reads and checks the
 * manifest (version, checksum, every shape, box and name bounds-checked, boxes tiling each
 * tensor) and that every rank file exists. Files are opened lazily. */
ts_status ts_ckpt_open(ts_ckpt_t **out, const char *path) TS_MUST_CHECK;
void ts_ckpt_close(ts_ckpt_t *ck);

const char *ts_ckpt_path(const ts_ckpt_t *ck);
/* Owned by ck. */
const struct ts_ckpt_meta *ts_ckpt_meta(const ts_ckpt_t *ck);

/* The tensor's dtype, ndim and global shape. TS_ERR_FORMAT naming the tensor when absent. */
ts_status ts_ckpt_tensor_info(const ts_ckpt_t *ck, const char *name, enum ts_dtype *dtype,
                              int *ndim, int64_t *shape) TS_MUST_CHECK;
bool ts_ckpt_has_tensor(const ts_ckpt_t *ck, const char *name);
/* The stored tensors in manifest order (the order the saving ranks listed them). */
int ts_ckpt_num_tensors(const ts_ckpt_t *ck);
const char *ts_ckpt_tensor_name(const ts_ckpt_t *ck, int i); /* NULL outside [0, count) */

/* Fills want->data with want's boxes of the stored tensor `want->name`, from every rank file
 * holding part of them; want's global shape must equal the stored one (a mismatch names both:
 * the checkpoint's model differs from the flags). Stored f32 or bf16 converts to want->dtype.
 * Every shard read is checked against its checksum. */
ts_status ts_ckpt_read(ts_ckpt_t *ck, const struct ts_ckpt_tensor *want) TS_MUST_CHECK;

/* Blob `name` of `rank`: *size gets its size; it is copied into buf when cap >= size (buf may
 * be NULL to ask for the size). Checked against its checksum. */
ts_status ts_ckpt_read_blob(ts_ckpt_t *ck, const char *name, int rank, void *buf, size_t cap,
                            size_t *size) TS_MUST_CHECK;

/* Reads every shard, blob and model.h5 tensor and checks each checksum; prints one line per
 * file to `out` (may be NULL). The first failure is returned, naming the file and the tensor. */
ts_status ts_ckpt_verify(ts_ckpt_t *ck, FILE *out) TS_MUST_CHECK;

/* ts_ckpt_resolve, then open and verify what it finds; when that is damaged, the newest other
 * complete checkpoint beside it that verifies, with `note` saying which was skipped and why
 * ("" when none was). Reads every byte of the checkpoint it returns. */
ts_status ts_ckpt_resolve_verified(const char *path, char *out, size_t out_len, char *note,
                                   size_t note_len) TS_MUST_CHECK;

/* Human-readable summary: config, layout, step, tokens, lineage (data hashes, parent, build),
 * files and sizes, tables. */
void ts_ckpt_describe(const ts_ckpt_t *ck, FILE *out);

/* The boxes covering elements [begin, end) of a row-major tensor of `shape` (a ZeRO slice of
 * a flat buffer seen in one tensor): at most 2*ndim-1 boxes, written to boxes[]; returns their
 * count (0 for an empty range). */
int ts_ckpt_boxes_of_range(int ndim, const int64_t *shape, int64_t begin, int64_t end,
                           struct ts_ckpt_box *boxes);

/* CRC32C (Castagnoli) of n bytes continuing from crc (0 to start); SSE4.2 where present. */
uint32_t ts_crc32c(uint32_t crc, const void *data, size_t n);

#endif
