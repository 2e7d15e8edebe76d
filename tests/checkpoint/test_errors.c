/* test_errors.c: damaged, truncated, mismatched and missing checkpoints, one table row each:
 * the failing call must return an error (never crash) whose message names the file and says
 * what is wrong. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/ckpt_impl.h"
#include "helpers.h"

/* Byte offset of a dataset's data in an HDF5 file. */
static long data_offset(const char *file, const char *name) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0, "open %s", file);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert_geq(d, 0, "open %s in %s", name, file);
    const haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    return (long)off;
}

static void flip_byte(const char *file, long at) {
    FILE *fp = fopen(file, "r+b");
    cr_assert_not_null(fp, "%s", file);
    fseek(fp, at, SEEK_SET);
    const int c = fgetc(fp);
    fseek(fp, at, SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
}

static void rewrite_manifest(const char *ckdir, void (*edit)(Tessera__Ckpt__Manifest *),
                             int version) {
    char path[TS_PATH_MAX];
    cr_assert_eq(ts_path_join(path, sizeof(path), ckdir, "manifest.pb"), TS_OK);
    unsigned char *buf = NULL;
    size_t len = 0;
    cr_assert_eq(ckpt_read_file(path, 1 << 30, &buf, &len), TS_OK);
    Tessera__Ckpt__Manifest *m = NULL;
    cr_assert_eq(ckpt_manifest_unpack(buf, len, path, &m), TS_OK);
    free(buf);
    if (edit)
        edit(m);
    cr_assert_eq(ckpt_manifest_pack(m, &buf, &len), TS_OK);
    tessera__ckpt__manifest__free_unpacked(m, NULL);
    if (version != TS_CKPT_FORMAT_VERSION) {
        Tessera__Ckpt__Envelope *env = tessera__ckpt__envelope__unpack(NULL, len, buf);
        env->format_version = (uint32_t)version;
        free(buf);
        len = tessera__ckpt__envelope__get_packed_size(env);
        buf = malloc(len);
        tessera__ckpt__envelope__pack(env, buf);
        tessera__ckpt__envelope__free_unpacked(env, NULL);
    }
    cr_assert_eq(ckpt_write_file_sync(path, buf, len), TS_OK);
    free(buf);
}

static void edit_box_outside(Tessera__Ckpt__Manifest *m) {
    m->tensors[0]->shards[0]->boxes[0]->extent[0] += 1;
}

static void edit_overlap(Tessera__Ckpt__Manifest *m) {
    /* rank 1's first box of wpe moved onto rank 0's rows (same volume) */
    Tessera__Ckpt__Tensor *t = m->tensors[1];
    t->shards[1]->boxes[0]->offset[0] = 0;
}

enum action { OPEN, READ_C_ATTN, READ_WTE_BIG, READ_MISSING, VERIFY, READ_BLOB };

struct error_case {
    const char *what;
    int world;
    void (*damage)(const char *ckdir);
    enum action action;
    const char *expect[3];
};

static char path_buf[TS_PATH_MAX];
static const char *in(const char *ckdir, const char *name) {
    cr_assert_eq(ts_path_join(path_buf, sizeof(path_buf), ckdir, name), TS_OK);
    return path_buf;
}

static void truncate_rank0(const char *d) {
    const char *f = in(d, "rank_00000.h5");
    cr_assert_eq(ck_sh("truncate -s $(( $(stat -c %%s %s) / 2 )) %s", f, f), 0);
}
static void truncate_rank0_tail(const char *d) {
    cr_assert_eq(ck_sh("truncate -s -100 %s", in(d, "rank_00000.h5")), 0);
}
static void flip_tensor(const char *d) {
    const char *f = in(d, "rank_00000.h5");
    flip_byte(f, data_offset(f, "params/h.0.attn.c_attn.weight") + 5);
}
static void flip_blob(const char *d) {
    const char *f = in(d, "rank_00000.h5");
    flip_byte(f, data_offset(f, "_blobs/rng") + 2);
}
static void flip_index(const char *d) {
    const char *f = in(d, "rank_00000.h5");
    flip_byte(f, data_offset(f, "_index") + 30);
}
static void flip_model(const char *d) {
    const char *f = in(d, "model.h5");
    flip_byte(f, data_offset(f, "wpe.weight") + 9);
}
static void flip_tensor_and_model(const char *d) {
    flip_tensor(d);
    flip_model(d);
}
static void version_99(const char *d) { rewrite_manifest(d, NULL, 99); }
static void flip_manifest(const char *d) {
    const char *f = in(d, "manifest.pb");
    flip_byte(f, 40);
}
static void truncate_manifest(const char *d) {
    cr_assert_eq(ck_sh("truncate -s 10 %s", in(d, "manifest.pb")), 0);
}
static void remove_rank1(const char *d) { cr_assert_eq(unlink(in(d, "rank_00001.h5")), 0); }
static void box_outside(const char *d) {
    rewrite_manifest(d, edit_box_outside, TS_CKPT_FORMAT_VERSION);
}
static void overlap(const char *d) { rewrite_manifest(d, edit_overlap, TS_CKPT_FORMAT_VERSION); }
static void empty_dir(const char *d) { cr_assert_eq(ck_sh("rm -rf %s/* && mkdir -p %s", d, d), 0); }
static void nothing(const char *d) { (void)d; }

static const struct error_case cases[] = {
    {"truncated rank file", 1, truncate_rank0, READ_C_ATTN, {"rank_00000.h5", "truncated"}},
    {"rank file missing its tail", 1, truncate_rank0_tail, VERIFY, {"rank_00000.h5", "truncated"}},
    {"flipped byte in a tensor",
     1,
     flip_tensor,
     READ_C_ATTN,
     {"rank_00000.h5", "checksum mismatch", "params/h.0.attn.c_attn.weight"}},
    {"flipped byte found by verify",
     1,
     flip_tensor,
     VERIFY,
     {"rank_00000.h5", "checksum mismatch", "c_attn"}},
    {"flipped byte in a state blob",
     1,
     flip_blob,
     READ_BLOB,
     {"rank_00000.h5", "checksum mismatch in state 'rng'"}},
    {"flipped byte in a rank's index",
     1,
     flip_index,
     VERIFY,
     {"rank_00000.h5", "checksum mismatch in _index"}},
    {"flipped byte in model.h5", 1, flip_model, VERIFY, {"model.h5", "checksum mismatch", "wpe"}},
    {"two damaged files: verify names the first",
     1,
     flip_tensor_and_model,
     VERIFY,
     {"rank_00000.h5", "checksum mismatch", "c_attn"}},
    {"unknown manifest version",
     1,
     version_99,
     OPEN,
     {"manifest.pb", "format version 99", "reads version 1"}},
    {"flipped byte in the manifest", 1, flip_manifest, OPEN, {"manifest.pb", "damaged"}},
    {"truncated manifest", 1, truncate_manifest, OPEN, {"manifest.pb", "not a Tessera manifest"}},
    {"missing rank file", 2, remove_rank1, OPEN, {"rank_00001.h5", "is missing", "2 ranks"}},
    {"box outside the tensor", 1, box_outside, OPEN, {"manifest.pb", "outside its shape"}},
    {"overlapping shards", 2, overlap, OPEN, {"manifest.pb", "wpe.weight"}},
    {"model differs from the flags",
     1,
     nothing,
     READ_WTE_BIG,
     {"params/wte.weight", "(16, 8)", "differs from the flags"}},
    {"tensor absent", 1, nothing, READ_MISSING, {"has no tensor params/nope"}},
    {"no checkpoint at all", 1, empty_dir, OPEN, {"no complete checkpoint"}},
};

static int save_ranks(ts_comm_t *comm, int rank, void *arg) {
    char path[TS_PATH_MAX];
    return fix_save(comm, arg, 4, 0, path, sizeof(path)) != TS_OK;
}

static ts_status run_action(const char *ckdir, enum action action) {
    ts_ckpt_t *ck = NULL;
    ts_status st = ts_ckpt_open(&ck, ckdir);
    if (st != TS_OK || action == OPEN)
        return st;
    struct fixture f;
    fix_build(&f, 4, 0, 1);
    struct ts_ckpt_tensor t;
    char blob[128];
    size_t size;
    switch (action) {
    case READ_C_ATTN:
        st = ts_ckpt_read(ck, &f.t[2]);
        break;
    case READ_WTE_BIG: {
        t = f.t[0];
        t.shape[0] = 32;
        float *big = malloc(32 * 8 * sizeof(float));
        t.boxes[0] = (struct ts_ckpt_box){.offset = {0, 0}, .extent = {32, 8}};
        t.data = big;
        st = ts_ckpt_read(ck, &t);
        free(big);
        break;
    }
    case READ_MISSING:
        t = f.t[0];
        snprintf(t.name, sizeof(t.name), "params/nope");
        st = ts_ckpt_read(ck, &t);
        break;
    case VERIFY:
        st = ts_ckpt_verify(ck, NULL);
        break;
    case READ_BLOB:
        st = ts_ckpt_read_blob(ck, "rng", 0, blob, sizeof(blob), &size);
        break;
    default:
        break;
    }
    fix_free(&f);
    ts_ckpt_close(ck);
    return st;
}

Test(checkpoint_errors, each_damage_gets_a_clear_message) {
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct error_case *c = &cases[i];
        char *dir = ck_mkdtemp();
        cr_assert_eq(fork_ranks(c->world, save_ranks, dir), 0, "%s: save", c->what);
        char ckdir[TS_PATH_MAX];
        cr_assert_eq(ts_path_join(ckdir, sizeof(ckdir), dir, "step_00000004"), TS_OK);
        /* the undamaged checkpoint is fine */
        cr_assert_eq(run_action(ckdir, VERIFY), TS_OK, "%s: %s", c->what, ts_last_error());
        c->damage(ckdir);
        const ts_status st = run_action(ckdir, c->action);
        cr_assert_neq(st, TS_OK, "%s: no error", c->what);
        const char *msg = ts_last_error();
        for (int k = 0; k < 3 && c->expect[k]; k++)
            cr_assert(strstr(msg, c->expect[k]) != NULL, "%s: '%s' not in: %s", c->what,
                      c->expect[k], msg);
        ck_rmdir(dir);
    }
}
