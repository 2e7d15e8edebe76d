/* test_save.c: round trips (one rank, two forked ranks), resharded reads, keep-last, replacing
 * a step, the summary's lineage, and model.h5 read by h5py and listed by h5dump. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/ckpt_impl.h"
#include "helpers.h"

static ts_comm_t *single(void) {
    ts_comm_t *c = NULL;
    cr_assert_eq(ts_comm_create_single(&c), TS_OK);
    return c;
}

Test(checkpoint_save, round_trip_one_rank) {
    char *dir = ck_mkdtemp();
    ts_comm_t *c = single();
    char path[TS_PATH_MAX], msg[512];
    cr_assert_eq(fix_save(c, dir, 7, 0, path, sizeof(path)), TS_OK, "%s", ts_last_error());
    cr_assert(strstr(path, "step_00000007") != NULL, "%s", path);
    int64_t step = -1;
    cr_assert(fix_check(path, msg, sizeof(msg), &step), "%s", msg);
    cr_assert_eq(step, 7);
    /* the run directory and `latest` resolve to the same checkpoint */
    cr_assert(fix_check(dir, msg, sizeof(msg), NULL), "%s", msg);
    char latest[TS_PATH_MAX];
    cr_assert_eq(ts_path_join(latest, sizeof(latest), dir, "latest"), TS_OK);
    cr_assert(fix_check(latest, msg, sizeof(msg), NULL), "%s", msg);
    ts_comm_destroy(c);
    ck_rmdir(dir);
}

static int save_two(ts_comm_t *comm, int rank, void *arg) {
    char path[TS_PATH_MAX];
    ts_status st = fix_save(comm, arg, 3, 0, path, sizeof(path));
    if (st != TS_OK)
        fprintf(stderr, "rank %d: %s\n", rank, ts_last_error());
    return st != TS_OK;
}

/* Two ranks each save a flat half of every tensor (ZeRO-like boxes); reading back whole, in
 * thirds of the flat range, and as column blocks must give the same values. */
Test(checkpoint_save, two_ranks_reshard_on_read) {
    char *dir = ck_mkdtemp();
    cr_assert_eq(fork_ranks(2, save_two, dir), 0);
    char msg[512];
    cr_assert(fix_check(dir, msg, sizeof(msg), NULL), "%s", msg);
    ts_ckpt_t *ck = NULL;
    cr_assert_eq(ts_ckpt_open(&ck, dir), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_ckpt_meta(ck)->layout.world_size, 2);
    for (int world = 3; world <= 4; world++) {
        for (int r = 0; r < world; r++) {
            struct fixture f;
            fix_build(&f, 3, r, world);
            for (int i = 0; i < f.n; i++) {
                int64_t n = 1;
                for (int d = 0; d < f.t[i].ndim; d++)
                    n *= f.t[i].shape[d];
                const int64_t b = n * r / world, e = n * (r + 1) / world;
                memset(f.t[i].data, 0, (size_t)(e - b) * sizeof(float));
                cr_assert_eq(ts_ckpt_read(ck, &f.t[i]), TS_OK, "%s", ts_last_error());
                cr_assert_arr_eq(f.t[i].data, f.full[i] + b, (size_t)(e - b) * sizeof(float),
                                 "%s world %d rank %d", f.t[i].name, world, r);
            }
            fix_free(&f);
        }
    }
    /* a tensor-parallel column block of c_attn (8 x 24): columns 8..16, as bf16 */
    struct fixture f;
    fix_build(&f, 3, 0, 1);
    struct ts_ckpt_tensor want = f.t[2];
    uint16_t block[8 * 8];
    want.dtype = TS_DTYPE_BF16;
    want.num_boxes = 1;
    want.boxes[0] = (struct ts_ckpt_box){.offset = {0, 8}, .extent = {8, 8}};
    want.data = block;
    cr_assert_eq(ts_ckpt_read(ck, &want), TS_OK, "%s", ts_last_error());
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) {
            float expect = f.full[2][i * 24 + 8 + j], got;
            const uint32_t u = (uint32_t)block[i * 8 + j] << 16;
            memcpy(&got, &u, 4);
            cr_assert_float_eq(got, expect, expect * 0.004f, "(%d,%d)", i, j);
        }
    /* model.h5 of a layout where no rank holds a tensor whole: read back through the boxes */
    char mpath[TS_PATH_MAX];
    cr_assert_eq(ts_path_join(mpath, sizeof(mpath), ts_ckpt_path(ck), "model.h5"), TS_OK);
    hid_t h5 = H5Fopen(mpath, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(h5, 0);
    for (int i = 0; i < 6; i++) { /* the params/ table */
        const int64_t rows = f.t[i].export_shape[0] ? f.t[i].export_shape[0] : f.t[i].shape[0];
        int64_t n = rows;
        for (int d = 1; d < f.t[i].ndim; d++)
            n *= f.t[i].shape[d];
        float *got = malloc((size_t)n * sizeof(float));
        hid_t ds = H5Dopen2(h5, f.t[i].name + 7, H5P_DEFAULT);
        cr_assert_geq(ds, 0, "%s", f.t[i].name);
        cr_assert_geq(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got), 0);
        H5Dclose(ds);
        cr_assert_arr_eq(got, f.full[i], (size_t)n * sizeof(float), "%s", f.t[i].name);
        free(got);
    }
    H5Fclose(h5);
    fix_free(&f);
    ts_ckpt_close(ck);
    ck_rmdir(dir);
}

/* Rank 1 hands over a box outside its tensor: both ranks return an error (rank 0 is told another
 * rank failed), nothing hangs, nothing is committed or left behind. */
static int save_bad_rank1(ts_comm_t *comm, int rank, void *arg) {
    struct fixture f;
    fix_build(&f, 5, rank, 2);
    if (rank == 1)
        f.t[0].boxes[0].extent[0] = 1000;
    struct ts_ckpt_save_args a = {.dir = arg,
                                  .meta = &f.meta,
                                  .tensors = f.t,
                                  .num_tensors = f.n,
                                  .model_table = "params",
                                  .comm = comm};
    char path[TS_PATH_MAX];
    const ts_status st = ts_ckpt_save(&a, path, sizeof(path));
    const char *want = rank == 1 ? "outside" : "another rank failed";
    const int ok = st != TS_OK && strstr(ts_last_error(), want) != NULL;
    if (!ok)
        fprintf(stderr, "rank %d: status %d, message: %s\n", rank, st, ts_last_error());
    fix_free(&f);
    return !ok;
}

Test(checkpoint_save, one_rank_with_bad_arguments_fails_every_rank, .timeout = 30) {
    char *dir = ck_mkdtemp();
    cr_assert_eq(fork_ranks(2, save_bad_rank1, dir), 0);
    cr_assert_not(ts_ckpt_exists(dir));
    cr_assert_neq(ck_sh("ls -a %s | grep -q tmp-", dir), 0, "a temporary directory was left");
    ck_rmdir(dir);
}

static int count_steps(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -c '^step_[0-9]*$'", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (fscanf(p, "%d", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

Test(checkpoint_save, keep_last_and_replace) {
    char *dir = ck_mkdtemp();
    ts_comm_t *c = single();
    char path[TS_PATH_MAX], msg[512];
    for (int s = 1; s <= 5; s++)
        cr_assert_eq(fix_save(c, dir, s * 10, 2, path, sizeof(path)), TS_OK, "%s", ts_last_error());
    cr_assert_eq(count_steps(dir), 2);
    cr_assert_eq(ck_sh("test -d %s/step_00000040 && test -d %s/step_00000050", dir, dir), 0);
    int64_t step = 0;
    cr_assert(fix_check(dir, msg, sizeof(msg), &step), "%s", msg);
    cr_assert_eq(step, 50);
    /* saving step 50 again replaces it; an older step saved later is kept and becomes latest,
     * and the newer ones stay: a branch this save cannot account for is never pruned */
    cr_assert_eq(fix_save(c, dir, 50, 2, path, sizeof(path)), TS_OK, "%s", ts_last_error());
    cr_assert_eq(fix_save(c, dir, 20, 2, path, sizeof(path)), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ck_sh("test -d %s/step_00000020 && test -d %s/step_00000050", dir, dir), 0);
    cr_assert_eq(count_steps(dir), 3);
    cr_assert(fix_check(dir, msg, sizeof(msg), &step), "%s", msg);
    cr_assert_eq(step, 20);
    /* no leftovers */
    cr_assert_neq(ck_sh("ls -a %s | grep -q -e tmp- -e del-", dir), 0);
    ts_comm_destroy(c);
    ck_rmdir(dir);
}

/* A stray directory whose name parses as the step being saved (`step_000000005` beside
 * `step_00000005`) once made pruning rebuild the name and delete the checkpoint just committed. */
Test(checkpoint_save, prune_deletes_exact_names_only) {
    char *dir = ck_mkdtemp();
    ts_comm_t *c = single();
    char path[TS_PATH_MAX], msg[512];
    for (int s = 1; s <= 4; s++)
        cr_assert_eq(fix_save(c, dir, s, 0, path, sizeof(path)), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ck_sh("cp -r %s/step_00000004 %s/step_000000005 && cp -r %s/step_00000004 "
                       "%s/step_000000001",
                       dir, dir, dir, dir),
                 0);
    cr_assert_eq(fix_save(c, dir, 5, 2, path, sizeof(path)), TS_OK, "%s", ts_last_error());
    int64_t step = 0;
    cr_assert(fix_check(dir, msg, sizeof(msg), &step), "%s", msg);
    cr_assert_eq(step, 5, "latest is step %lld", (long long)step);
    cr_assert_eq(ck_sh("test -d %s/step_00000005 && test -d %s/step_00000004", dir, dir), 0,
                 "the new checkpoint and the newest older one stay");
    cr_assert_eq(ck_sh("test -d %s/step_000000005 && test -d %s/step_000000001", dir, dir), 0,
                 "stray names are not pruning's to delete");
    cr_assert_neq(ck_sh("test -e %s/step_00000001 -o -e %s/step_00000003", dir, dir), 0);
    ts_comm_destroy(c);
    ck_rmdir(dir);
}

Test(checkpoint_save, describe_shows_lineage) {
    char *dir = ck_mkdtemp();
    ts_comm_t *c = single();
    char path[TS_PATH_MAX];
    cr_assert_eq(fix_save(c, dir, 5, 0, path, sizeof(path)), TS_OK, "%s", ts_last_error());
    ts_ckpt_t *ck = NULL;
    cr_assert_eq(ts_ckpt_open(&ck, path), TS_OK, "%s", ts_last_error());
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ts_ckpt_describe(ck, out);
    cr_assert_eq(ts_ckpt_verify(ck, out), TS_OK, "%s", ts_last_error());
    fclose(out);
    const char *expect[] = {"step 5",       "sha256:abc123", "crc32c:deadbeef", "step_00000000",
                            "tessera test", "num_layers=1",  "rank_00000.h5",   "model.h5",
                            "params",       "adam_m",        "rng@0",           "ok      "};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        cr_assert(strstr(text, expect[i]) != NULL, "missing '%s' in:\n%s", expect[i], text);
    free(text);
    ts_ckpt_close(ck);
    ts_comm_destroy(c);
    ck_rmdir(dir);
}

/* A path of n bytes: "/runs" then components of 'a'..'z' names, so a cut is visible anywhere. */
static char *long_path(size_t n) {
    char *p = malloc(n + 1);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = i % 50 == 0 ? '/' : (char)('a' + (i / 50) % 26);
    p[n] = '\0';
    return p;
}

/* The manifest's path fields hold any path up to TS_PATH_MAX whole (the parent was cut to 511
 * bytes before); a checkpoint directory or a path to open that cannot fit is refused by name. */
Test(checkpoint_save, lineage_paths_whole_and_long_paths_refused) {
    char *dir = ck_mkdtemp();
    ts_comm_t *c = single();
    struct fixture f;
    fix_build(&f, 2, 0, 1);
    char *parent = long_path(TS_PATH_MAX - 1), *manifest = long_path(3000), *data = long_path(2000);
    snprintf(f.meta.parent, sizeof(f.meta.parent), "%s", parent);
    snprintf(f.meta.data_manifest, sizeof(f.meta.data_manifest), "%s", manifest);
    snprintf(f.data[0].path, sizeof(f.data[0].path), "%s", data);
    struct ts_ckpt_save_args a = {
        .dir = dir, .meta = &f.meta, .tensors = f.t, .num_tensors = f.n, .comm = c};
    char path[TS_PATH_MAX];
    cr_assert_eq(ts_ckpt_save(&a, path, sizeof(path)), TS_OK, "%s", ts_last_error());
    ts_ckpt_t *ck = NULL;
    cr_assert_eq(ts_ckpt_open(&ck, path), TS_OK, "%s", ts_last_error());
    cr_assert_str_eq(ts_ckpt_meta(ck)->parent, parent);
    cr_assert_str_eq(ts_ckpt_meta(ck)->data_manifest, manifest);
    cr_assert_eq(ts_ckpt_meta(ck)->num_data, 1);
    cr_assert_str_eq(ts_ckpt_meta(ck)->data[0].path, data);
    ts_ckpt_close(ck);

    /* a checkpoints directory leaving no room for the names under it */
    char *deep = long_path(TS_PATH_MAX - 100);
    a.dir = deep;
    cr_assert_eq(ts_ckpt_save(&a, path, sizeof(path)), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "at most 3903 fit") != NULL, "%s", ts_last_error());
    cr_assert(strstr(ts_last_error(), "/aaa") != NULL, "%s", ts_last_error());
    /* the caller's buffer for the saved path is too small: an error, not a cut name */
    a.dir = dir;
    char small[8];
    cr_assert_eq(ts_ckpt_save(&a, small, sizeof(small)), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "step_00000002") != NULL, "%s", ts_last_error());
    /* opening a path too long to name its manifest in */
    char *too_long = long_path(TS_PATH_MAX + 10);
    cr_assert_eq(ts_ckpt_open(&ck, too_long), TS_ERR_INVALID_ARG);
    cr_assert_null(ck);
    cr_assert(strstr(ts_last_error(), "path too long") != NULL, "%s", ts_last_error());
    cr_assert(strstr(ts_last_error(), "manifest.pb") != NULL, "%s", ts_last_error());
    free(too_long);
    free(deep);
    free(parent);
    free(manifest);
    free(data);
    fix_free(&f);
    ts_comm_destroy(c);
    ck_rmdir(dir);
}

/* h5py (Debian's, via /usr/bin/python3) reads every tensor of model.h5: shape and bytes equal
 * the fixture's (wte cropped to its 13 real rows); h5dump lists every name. */
Test(checkpoint_save, model_h5_readable_by_h5py_and_h5dump) {
    if (access("/usr/bin/python3", X_OK) != 0 ||
        ck_sh("/usr/bin/python3 -c 'import h5py' 2>/dev/null") != 0)
        cr_skip_test("Debian's python3-h5py is not installed (scripts/setup.sh installs it)");
    char *dir = ck_mkdtemp();
    ts_comm_t *c = single();
    char path[TS_PATH_MAX];
    cr_assert_eq(fix_save(c, dir, 9, 0, path, sizeof(path)), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ck_sh("cd %s && /usr/bin/python3 -c \""
                       "import h5py, numpy as np\n"
                       "f = h5py.File('%s/model.h5', 'r')\n"
                       "for k in f.keys():\n"
                       "    a = np.asarray(f[k], dtype='<f4')\n"
                       "    a.tofile(k + '.raw')\n"
                       "    open(k + '.shape', 'w').write(' '.join(map(str, a.shape)))\n"
                       "\"",
                       dir, path),
                 0);
    struct fixture f;
    fix_build(&f, 9, 0, 1);
    int exported = 0;
    for (int i = 0; i < f.n; i++) {
        if (strncmp(f.t[i].name, "params/", 7) != 0)
            continue;
        exported++;
        const char *bare = f.t[i].name + 7;
        char file[TS_PATH_MAX], shape[128] = "", expect[128] = "";
        int64_t n = 1;
        size_t at = 0;
        for (int d = 0; d < f.t[i].ndim; d++) {
            const int64_t ext =
                d == 0 && f.t[i].export_shape[0] ? f.t[i].export_shape[0] : f.t[i].shape[d];
            n *= ext;
            at += (size_t)snprintf(expect + at, sizeof(expect) - at, "%s%ld", d ? " " : "",
                                   (long)ext);
        }
        cr_assert_eq(ts_path_fmt(file, sizeof(file), "%s/%s.shape", dir, bare), TS_OK);
        FILE *fp = fopen(file, "r");
        cr_assert_not_null(fp, "h5py did not see %s", bare);
        cr_assert_not_null(fgets(shape, sizeof(shape), fp));
        fclose(fp);
        cr_assert_str_eq(shape, expect, "%s", bare);
        cr_assert_eq(ts_path_fmt(file, sizeof(file), "%s/%s.raw", dir, bare), TS_OK);
        fp = fopen(file, "rb");
        cr_assert_not_null(fp);
        float *got = malloc((size_t)n * sizeof(float));
        cr_assert_eq(fread(got, sizeof(float), (size_t)n + 1, fp), (size_t)n);
        fclose(fp);
        cr_assert_arr_eq(got, f.full[i], (size_t)n * sizeof(float), "%s", bare);
        free(got);
    }
    cr_assert_eq(exported, 6);
    if (ck_sh("command -v h5dump >/dev/null") == 0) {
        for (int i = 0; i < f.n; i++)
            if (strncmp(f.t[i].name, "params/", 7) == 0)
                cr_assert_eq(
                    ck_sh("h5dump -n %s/model.h5 | grep -q 'dataset */%s$'", path, f.t[i].name + 7),
                    0, "h5dump does not list %s", f.t[i].name);
    }
    fix_free(&f);
    ts_comm_destroy(c);
    ck_rmdir(dir);
}
