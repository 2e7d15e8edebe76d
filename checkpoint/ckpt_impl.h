/* ckpt_impl.h: what the checkpoint/ files share and nothing outside checkpoint/ includes:
 * box arithmetic, HDF5 helpers, paths and durability, the manifest's encoding and checks. */
#ifndef TS_CKPT_IMPL_H
#define TS_CKPT_IMPL_H

#include <hdf5.h>

#include "checkpoint/ckpt.h"
#include "kernels/fs.h"
#include "manifest.pb-c.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoints store little-endian elements; this build assumes a little-endian host"
#endif

#define CKPT_MANIFEST "manifest.pb"
#define CKPT_MODEL "model.h5"
#define CKPT_INDEX "_index" /* a rank file's own Manifest: its shards and blobs */
#define CKPT_BLOBS "_blobs" /* group of a rank file's blobs */
/* A manifest's bytes (checked before it is unpacked; 7M boxes of a 4096-rank ZeRO run fit) and
 * the memory its unpack may take, a multiple of its bytes (protobuf-c's structs are larger than
 * their encoding). Blobs in rank files have their own bound. */
#define CKPT_MAX_MANIFEST (1u << 28)
#define CKPT_UNPACK_FACTOR 16
#define CKPT_MAX_BLOB (1u << 30)
/* Data files a checkpoint's record may list (each takes 4.2 KB once read). */
#define CKPT_MAX_DATA_FILES 65536
/* Box pairs the overlap check of one tensor may test (about a second): boxes that real layouts
 * make (ZeRO row slices, tensor-parallel blocks, both) need a few per box. */
#define CKPT_MAX_BOX_PAIRS (INT64_C(1) << 26)
#define CKPT_MAX_NUMEL (INT64_C(1) << 40)
/* Bytes of TS_PATH_MAX a checkpoints directory leaves for the names made under it: a temporary
 * step directory (< CKPT_TMP_NAME_LEN) and a file in it, or a step directory being deleted.
 * save refuses a longer directory up front, on every rank alike, before any collective. */
#define CKPT_TMP_NAME_LEN 128
#define CKPT_NAME_RESERVE 192

/* box.c */
int64_t ckpt_box_volume(const struct ts_ckpt_box *b, int ndim);
/* The intersection of a and b in *out; false when empty. */
bool ckpt_box_intersect(const struct ts_ckpt_box *a, const struct ts_ckpt_box *b, int ndim,
                        struct ts_ckpt_box *out);
/* Copies region r (inside both boxes) from src (box sb's elements, row-major, dtype sdt) to dst
 * (box db's elements, dtype ddt), converting f32 <-> bf16. */
void ckpt_box_copy(const void *src, const struct ts_ckpt_box *sb, enum ts_dtype sdt, void *dst,
                   const struct ts_ckpt_box *db, enum ts_dtype ddt, const struct ts_ckpt_box *r,
                   int ndim);
/* Whether box b lies inside shape (non-negative offsets, positive extents). */
bool ckpt_box_inside(const struct ts_ckpt_box *b, int ndim, const int64_t *shape);
/* "[0:768, 0:2304]" */
const char *ckpt_box_str(const struct ts_ckpt_box *b, int ndim, char *buf, size_t len);
/* Product of shape, or -1 when a dimension is not positive or it exceeds CKPT_MAX_NUMEL. */
int64_t ckpt_shape_numel(int ndim, const int64_t *shape);
const char *ckpt_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

/* names: letters, digits, '.', '_', '-' and single '/' separators, no leading '_' or '/', no
 * '..': safe as HDF5 paths and never a file-system path. */
bool ckpt_name_ok(const char *name);
const char *ckpt_dtype_str(enum ts_dtype dt);
bool ckpt_dtype_parse(const char *s, enum ts_dtype *dt);

/* h5io.c: every HDF5 call of the module goes through here or through load/save on one thread. */
void ckpt_h5_quiet(void); /* HDF5 prints nothing; errors become our messages */
/* The innermost HDF5 error message of the current stack, or "unknown HDF5 error". */
const char *ckpt_h5_msg(char *buf, size_t len);
ts_status ckpt_h5_create(hid_t *out, const char *path) TS_MUST_CHECK;
ts_status ckpt_h5_open(hid_t *out, const char *path) TS_MUST_CHECK;
/* A 1-D (or shaped, when ndim > 0) dataset of n elements at `name` (intermediate groups made). */
ts_status ckpt_h5_write(hid_t f, const char *file, const char *name, enum ts_dtype dt,
                        const void *data, int ndim, const int64_t *dims) TS_MUST_CHECK;
ts_status ckpt_h5_write_bytes(hid_t f, const char *file, const char *name, const void *data,
                              size_t n) TS_MUST_CHECK;
/* Reads dataset `name` after checking that it holds exactly `numel` elements of type dt
 * (ndim/dims when ndim > 0). */
ts_status ckpt_h5_read(hid_t f, const char *file, const char *name, enum ts_dtype dt, void *buf,
                       int64_t numel, int ndim, const int64_t *dims) TS_MUST_CHECK;
ts_status ckpt_h5_read_bytes(hid_t f, const char *file, const char *name, void *buf,
                             size_t n) TS_MUST_CHECK;
/* The byte size of a uint8 dataset (bounded). */
ts_status ckpt_h5_bytes_size(hid_t f, const char *file, const char *name, size_t *n) TS_MUST_CHECK;
ts_status ckpt_h5_attr_str(hid_t f, const char *file, const char *key,
                           const char *value) TS_MUST_CHECK;
ts_status ckpt_h5_close(hid_t f, const char *file) TS_MUST_CHECK;

/* paths.c */
ts_status ckpt_fsync_file(const char *path) TS_MUST_CHECK;
ts_status ckpt_fsync_dir(const char *path) TS_MUST_CHECK;
/* Starts the kernel writing back what is dirty of file path (Linux sync_file_range, WRITE only:
 * nothing waits), once *pending (bytes written since the last start) reaches
 * CKPT_WRITEBACK_BYTES or when force; *pending is then reset. A hint that only moves the disk
 * work earlier, so the fsync that follows has less left: every failure is ignored (the fsync
 * reports real ones). TS_CKPT_WRITEBACK=0 in the environment turns it off, to measure it. */
#define CKPT_WRITEBACK_BYTES ((size_t)128 << 20)
void ckpt_writeback(const char *path, size_t *pending, bool force);
ts_status ckpt_rm_rf(const char *path) TS_MUST_CHECK;
bool ckpt_is_step_name(const char *name, int64_t *step);
bool ckpt_path_exists(const char *path);
/* Reads a whole file of at most max bytes into a malloc'ed buffer. */
ts_status ckpt_read_file(const char *path, size_t max, unsigned char **out,
                         size_t *len) TS_MUST_CHECK;
ts_status ckpt_write_file_sync(const char *path, const void *data, size_t len) TS_MUST_CHECK;
/* Points dir/latest at `target` (a name inside dir) atomically: a new link renamed over it. */
ts_status ckpt_set_latest(const char *dir, const char *target) TS_MUST_CHECK;
/* Removes leftovers of interrupted saves and deletions (*.tmp-*, *.del-*) in dir. */
void ckpt_remove_leftovers(const char *dir);
/* Deletes all complete checkpoints but the newest keep (by step) and `keep_name`. */
ts_status ckpt_prune(const char *dir, int keep, const char *keep_name,
                     struct ts_ckpt_names *owned) TS_MUST_CHECK;
/* Renames dir/name to a unique dir/name.del-* and removes it. */
ts_status ckpt_remove_dir(const char *dir, const char *name) TS_MUST_CHECK;

/* manifest.c */
/* Packs m inside an Envelope (version, CRC32C) into a malloc'ed buffer. */
ts_status ckpt_manifest_pack(const Tessera__Ckpt__Manifest *m, unsigned char **out,
                             size_t *len) TS_MUST_CHECK;
/* Unpacks an Envelope's manifest (checking version and checksum); `what` names the file. */
ts_status ckpt_manifest_unpack(const unsigned char *buf, size_t len, const char *what,
                               Tessera__Ckpt__Manifest **out) TS_MUST_CHECK;
/* Every bound of a complete manifest: names, dtypes, shapes, boxes inside shapes and tiling,
 * ranks and files, blobs, model tensors. */
ts_status ckpt_manifest_check(const Tessera__Ckpt__Manifest *m, const char *what) TS_MUST_CHECK;
/* meta <-> manifest fields; to_manifest allocates into m (freed by ckpt_manifest_free_meta). */
ts_status ckpt_meta_to_manifest(const struct ts_ckpt_meta *meta,
                                Tessera__Ckpt__Manifest *m) TS_MUST_CHECK;
void ckpt_manifest_free_meta(Tessera__Ckpt__Manifest *m);
ts_status ckpt_meta_from_manifest(const Tessera__Ckpt__Manifest *m, struct ts_ckpt_meta *meta,
                                  const char *what) TS_MUST_CHECK;
/* A shard's boxes from the manifest (checked already). */
void ckpt_shard_boxes(const Tessera__Ckpt__Shard *s, struct ts_ckpt_box *boxes);

/* model_export.c: model.h5 (rank 0 only). begin creates it and writes the tensors of
 * args->model_table this rank holds whole; finish reads the others back out of the rank files
 * listed in m (phase 2), closes and fsyncs it and describes it in *out (which points into mo:
 * free mo after packing the manifest). */
struct ckpt_model_out {
    hid_t f;
    char path[TS_PATH_MAX];
    size_t count;
    Tessera__Ckpt__ModelTensor *entries, **ptrs;
    int64_t *shapes; /* count x TS_MAX_DIMS export shapes */
    bool *written;
    float *buf;
    size_t buf_elems;
    size_t pending; /* bytes written since the last ckpt_writeback */
};
ts_status ckpt_model_begin(struct ckpt_model_out *mo, const struct ts_ckpt_save_args *a,
                           const char *tmp) TS_MUST_CHECK;
ts_status ckpt_model_finish(struct ckpt_model_out *mo, const Tessera__Ckpt__Manifest *m,
                            const struct ts_ckpt_save_args *a, const char *tmp,
                            Tessera__Ckpt__ModelFile *out) TS_MUST_CHECK;
void ckpt_model_free(struct ckpt_model_out *mo);

/* save.c: the phases of one save. prepare (collective, the calling thread: checks, the
 * temporary directory, its name broadcast) fills j; write (this rank's file and, on rank 0,
 * model.h5's whole tensors; every HDF5 call, so the writer thread's) sets nothing collective;
 * agree (collective) turns every rank's write status into one; commit (rank 0, HDF5: manifest,
 * model.h5, rename, latest, prune); abandon removes the temporary directory after a failure;
 * verdict (collective) gives every rank rank 0's result. j->args' buffers must stay unchanged
 * until write has returned on this rank. */
struct ckpt_save_job {
    struct ts_ckpt_save_args args; /* args.meta points at meta */
    struct ts_ckpt_meta meta;
    int rank, world;
    ts_status st; /* a failure of prepare's last steps, agreed on after write */
    char final_name[64], tmp_name[CKPT_TMP_NAME_LEN];
    char tmp[TS_PATH_MAX], file[TS_PATH_MAX];
    struct ckpt_model_out mo;
    double t_begin;
};
ts_status ckpt_save_prepare(struct ckpt_save_job *j,
                            const struct ts_ckpt_save_args *a) TS_MUST_CHECK;
ts_status ckpt_save_write(struct ckpt_save_job *j) TS_MUST_CHECK;
ts_status ckpt_save_agree(struct ckpt_save_job *j, ts_status mine) TS_MUST_CHECK;
ts_status ckpt_save_commit(struct ckpt_save_job *j) TS_MUST_CHECK;
void ckpt_save_abandon(struct ckpt_save_job *j);
ts_status ckpt_save_verdict(struct ckpt_save_job *j, ts_status mine) TS_MUST_CHECK;

/* load.c: a checkpoint over an already-checked manifest (save uses it to build model.h5). */
ts_status ckpt_open_manifest(ts_ckpt_t **out, const char *dir,
                             Tessera__Ckpt__Manifest *m) TS_MUST_CHECK;
const Tessera__Ckpt__Manifest *ckpt_manifest_of(const ts_ckpt_t *ck);
/* Rank `rank`'s file, opened on first use; path gets its name. */
ts_status ckpt_rank_file(ts_ckpt_t *ck, uint32_t rank, hid_t *f, char *path,
                         size_t len) TS_MUST_CHECK;
/* A buffer of at least `bytes` owned by ck (NULL when out of memory). */
void *ckpt_scratch(ts_ckpt_t *ck, size_t bytes);
/* Reads one rank's shard of t whole into buf and checks its checksum. */
ts_status ckpt_read_shard(ts_ckpt_t *ck, const Tessera__Ckpt__Tensor *t,
                          const Tessera__Ckpt__Shard *sh, void *buf) TS_MUST_CHECK;

#endif
