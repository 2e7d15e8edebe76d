/* test_bounds.c: manifests built to cost memory or time: data-file counts bounded before the
 * allocation, an unpack budget, and overlap, duplicate and lookup checks that stay near-linear
 * at 64k boxes and tensors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/ckpt_impl.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned char *pack_envelope(const Tessera__Ckpt__Manifest *m, size_t *len) {
    unsigned char *buf = NULL;
    cr_assert_eq(ckpt_manifest_pack(m, &buf, len), TS_OK, "%s", ts_last_error());
    return buf;
}

Test(checkpoint_bounds, data_file_count_bounded) {
    /* 100k empty data-file entries: a few hundred KB that asked for 420 MB of ts_ckpt_data_file */
    const size_t n = 100000;
    Tessera__Ckpt__Manifest m = TESSERA__CKPT__MANIFEST__INIT;
    Tessera__Ckpt__DataFile *df = calloc(n, sizeof(*df));
    Tessera__Ckpt__DataFile **dp = calloc(n, sizeof(*dp));
    for (size_t i = 0; i < n; i++) {
        tessera__ckpt__data_file__init(&df[i]);
        dp[i] = &df[i];
    }
    m.n_data = n;
    m.data = dp;
    struct ts_ckpt_meta meta;
    cr_assert_eq(ckpt_meta_from_manifest(&m, &meta, "manifest.pb"), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "more than a checkpoint's 65536") != NULL, "%s",
              ts_last_error());
    free(meta.data);
    free(df);
    free(dp);
}

Test(checkpoint_bounds, unpack_budget) {
    /* 1M empty tensors: 2 MB of encoding that unpack into ~200 MB of structs */
    const size_t n = 1u << 20;
    Tessera__Ckpt__Manifest m = TESSERA__CKPT__MANIFEST__INIT;
    Tessera__Ckpt__Tensor *t = calloc(n, sizeof(*t));
    Tessera__Ckpt__Tensor **tp = calloc(n, sizeof(*tp));
    for (size_t i = 0; i < n; i++) {
        tessera__ckpt__tensor__init(&t[i]);
        tp[i] = &t[i];
    }
    m.n_tensors = n;
    m.tensors = tp;
    size_t len = 0;
    unsigned char *buf = pack_envelope(&m, &len);
    Tessera__Ckpt__Manifest *out = NULL;
    cr_assert_eq(ckpt_manifest_unpack(buf, len, "manifest.pb", &out), TS_ERR_FORMAT);
    cr_assert_null(out);
    cr_assert(strstr(ts_last_error(), "times its") != NULL, "%s", ts_last_error());
    free(buf);
    free(t);
    free(tp);
}

/* One tensor (64, 65536) cut into 65536 column blocks of one column, 8 per rank: every block
 * starts at row 0, so sorting by rows alone compared all 2^31 pairs. And 65536 tensors of one
 * element each, which the duplicate-name loop compared pairwise. */
Test(checkpoint_bounds, checks_near_linear_at_64k, .timeout = 60) {
    const size_t nb = 65536, per = 8, ranks = nb / per, nt = 65536;
    Tessera__Ckpt__Manifest m = TESSERA__CKPT__MANIFEST__INIT;
    Tessera__Ckpt__Layout layout = TESSERA__CKPT__LAYOUT__INIT;
    layout.world_size = (uint32_t)ranks;
    m.layout = &layout;
    Tessera__Ckpt__RankFile *rf = calloc(ranks, sizeof(*rf));
    Tessera__Ckpt__RankFile **rfp = calloc(ranks, sizeof(*rfp));
    char(*names)[32] = calloc(ranks > nt ? ranks : nt, 32);
    for (size_t r = 0; r < ranks; r++) {
        tessera__ckpt__rank_file__init(&rf[r]);
        snprintf(names[r], 32, "rank_%05zu.h5", r);
        rf[r].rank = (uint32_t)r;
        rf[r].file = names[r];
        rfp[r] = &rf[r];
    }
    m.n_files = ranks;
    m.files = rfp;
    /* tensor 0: the column blocks; tensors 1..nt: one element each on rank 0 */
    Tessera__Ckpt__Tensor *t = calloc(nt + 1, sizeof(*t));
    Tessera__Ckpt__Tensor **tp = calloc(nt + 1, sizeof(*tp));
    Tessera__Ckpt__Shard *sh = calloc(ranks + nt, sizeof(*sh));
    Tessera__Ckpt__Shard **shp = calloc(ranks + nt, sizeof(*shp));
    Tessera__Ckpt__Box *bx = calloc(nb + 1, sizeof(*bx));
    Tessera__Ckpt__Box **bxp = calloc(nb + nt, sizeof(*bxp));
    int64_t *offs = calloc(2 * nb, sizeof(int64_t)), *exts = calloc(2 * nb, sizeof(int64_t));
    int64_t shape0[2] = {64, (int64_t)nb}, one[1] = {1}, zero[1] = {0};
    char(*tnames)[32] = calloc(nt + 1, 32);
    for (size_t i = 0; i < nb; i++) {
        tessera__ckpt__box__init(&bx[i]);
        offs[2 * i] = 0;
        offs[2 * i + 1] = (int64_t)i;
        exts[2 * i] = 64;
        exts[2 * i + 1] = 1;
        bx[i].n_offset = bx[i].n_extent = 2;
        bx[i].offset = &offs[2 * i];
        bx[i].extent = &exts[2 * i];
        bxp[i] = &bx[i];
    }
    tessera__ckpt__box__init(&bx[nb]);
    bx[nb].n_offset = bx[nb].n_extent = 1;
    bx[nb].offset = zero;
    bx[nb].extent = one;
    for (size_t r = 0; r < ranks; r++) {
        tessera__ckpt__shard__init(&sh[r]);
        sh[r].rank = (uint32_t)r;
        sh[r].numel = 64 * per;
        sh[r].n_boxes = per;
        sh[r].boxes = &bxp[r * per];
        shp[r] = &sh[r];
    }
    for (size_t i = 0; i <= nt; i++) {
        tessera__ckpt__tensor__init(&t[i]);
        snprintf(tnames[i], 32, "t/%06zu", i);
        t[i].name = tnames[i];
        t[i].dtype = "f32";
        tp[i] = &t[i];
        if (i == 0) {
            t[i].n_shape = 2;
            t[i].shape = shape0;
            t[i].n_shards = ranks;
            t[i].shards = shp;
        } else {
            Tessera__Ckpt__Shard *s = &sh[ranks + i - 1];
            tessera__ckpt__shard__init(s);
            s->numel = 1;
            s->n_boxes = 1;
            bxp[nb + i - 1] = &bx[nb];
            s->boxes = &bxp[nb + i - 1];
            shp[ranks + i - 1] = s;
            t[i].n_shape = 1;
            t[i].shape = one;
            t[i].n_shards = 1;
            t[i].shards = &shp[ranks + i - 1];
        }
    }
    m.n_tensors = nt + 1;
    m.tensors = tp;
    const double t0 = now_s();
    cr_assert_eq(ckpt_manifest_check(&m, "manifest.pb"), TS_OK, "%s", ts_last_error());
    const double dt = now_s() - t0;
    cr_log_info("64k column blocks + 64k tensors checked in %.3f s", dt);
    /* and an overlap among them is still found */
    offs[2 * 7 + 1] = 6;
    cr_assert_eq(ckpt_manifest_check(&m, "manifest.pb"), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "overlapping") != NULL, "%s", ts_last_error());
    offs[2 * 7 + 1] = 7;
    /* and a duplicate name */
    t[nt].name = tnames[1];
    cr_assert_eq(ckpt_manifest_check(&m, "manifest.pb"), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "twice") != NULL, "%s", ts_last_error());
    cr_assert_lt(dt, 20.0, "the checks took %.1f s", dt);
    free(rf), free(rfp), free(names), free(t), free(tp), free(sh), free(shp), free(bx), free(bxp);
    free(offs), free(exts), free(tnames);
}

Test(checkpoint_bounds, fifo_and_external_links_refused) {
    char dir[] = "/tmp/ts_bounds_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char fifo[TS_PATH_MAX], a[TS_PATH_MAX], b[TS_PATH_MAX];
    cr_assert_eq(ts_path_join(fifo, sizeof(fifo), dir, "manifest.pb"), TS_OK);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    unsigned char *buf = NULL;
    size_t len = 0;
    cr_assert_eq(ckpt_read_file(fifo, CKPT_MAX_MANIFEST, &buf, &len), TS_ERR_IO);
    cr_assert(strstr(ts_last_error(), "is a FIFO") != NULL, "%s", ts_last_error());
    hid_t f = H5I_INVALID_HID;
    cr_assert_eq(ckpt_h5_open(&f, fifo), TS_ERR_IO);
    cr_assert(strstr(ts_last_error(), "is a FIFO") != NULL, "%s", ts_last_error());
    /* a rank file whose _index is an external link to another file's dataset */
    cr_assert_eq(ts_path_join(a, sizeof(a), dir, "rank_00000.h5"), TS_OK);
    cr_assert_eq(ts_path_join(b, sizeof(b), dir, "other.h5"), TS_OK);
    cr_assert_eq(ckpt_h5_create(&f, b), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ckpt_h5_write_bytes(f, b, CKPT_INDEX, "secret", 6), TS_OK, "%s", ts_last_error());
    H5Fclose(f);
    cr_assert_eq(ckpt_h5_create(&f, a), TS_OK, "%s", ts_last_error());
    cr_assert_geq(H5Lcreate_external(b, CKPT_INDEX, f, CKPT_INDEX, H5P_DEFAULT, H5P_DEFAULT), 0);
    H5Fclose(f);
    cr_assert_eq(ckpt_h5_open(&f, a), TS_OK, "%s", ts_last_error());
    size_t n = 0;
    cr_assert_eq(ckpt_h5_bytes_size(f, a, CKPT_INDEX, &n), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "is a link") != NULL, "%s", ts_last_error());
    H5Fclose(f);
    unlink(fifo), unlink(a), unlink(b), rmdir(dir);
}

/* fuzz_ckpt_manifest's first finding: a manifest without tensors passed NULL to memcpy (UBSan,
 * make test-asan). */
Test(checkpoint_bounds, manifest_without_tensors) {
    Tessera__Ckpt__Manifest m = TESSERA__CKPT__MANIFEST__INIT;
    Tessera__Ckpt__Layout layout = TESSERA__CKPT__LAYOUT__INIT;
    Tessera__Ckpt__RankFile rf = TESSERA__CKPT__RANK_FILE__INIT, *rfp = &rf;
    layout.world_size = 1;
    rf.file = "rank_00000.h5";
    m.layout = &layout;
    m.n_files = 1;
    m.files = &rfp;
    cr_assert_eq(ckpt_manifest_check(&m, "manifest.pb"), TS_OK, "%s", ts_last_error());
}
