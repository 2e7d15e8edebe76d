/* test_basics.c: CRC32C against published values, boxes of flat ranges, and copying boxes
 * (resharding) with and without bf16 conversion. */
#include <criterion/criterion.h>
#include <string.h>

#include "checkpoint/ckpt_impl.h"

Test(checkpoint_crc, known_values) {
    cr_assert_eq(ts_crc32c(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(ts_crc32c(0, "", 0), 0u);
    unsigned char zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof(ones));
    /* RFC 3720 B.4 test vectors */
    cr_assert_eq(ts_crc32c(0, zeros, 32), 0x8A9136AAu);
    cr_assert_eq(ts_crc32c(0, ones, 32), 0x62A8AB43u);
}

Test(checkpoint_crc, long_buffers_split_anywhere) {
    /* long enough for the three-stream path; a split must continue the same checksum */
    const size_t n = 3 * 8192 * 3 + 77;
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 131 + (i >> 7));
    const uint32_t whole = ts_crc32c(0, buf, n);
    /* bytewise reference */
    uint32_t ref = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        ref ^= buf[i];
        for (int k = 0; k < 8; k++)
            ref = (ref >> 1) ^ ((ref & 1) ? 0x82f63b78u : 0);
    }
    cr_assert_eq(whole, ~ref);
    for (size_t cut = 0; cut < n; cut += 9001)
        cr_assert_eq(ts_crc32c(ts_crc32c(0, buf, cut), buf + cut, n - cut), whole);
    buf[n / 2] ^= 1;
    cr_assert_neq(ts_crc32c(0, buf, n), whole);
    free(buf);
}

/* Every flat range of small shapes: boxes inside the shape, disjoint, covering exactly the range
 * in order (concatenated row-major they are the range). */
Test(checkpoint_box, flat_ranges_become_boxes) {
    const int64_t shapes[4][4] = {{7}, {4, 5}, {3, 4, 5}, {2, 3, 2, 3}};
    for (int s = 0; s < 4; s++) {
        const int ndim = s + 1;
        int64_t n = 1;
        for (int d = 0; d < ndim; d++)
            n *= shapes[s][d];
        for (int64_t b = 0; b <= n; b++)
            for (int64_t e = b; e <= n; e++) {
                struct ts_ckpt_box boxes[TS_CKPT_MAX_BOXES];
                const int nb = ts_ckpt_boxes_of_range(ndim, shapes[s], b, e, boxes);
                cr_assert_leq(nb, 2 * ndim - 1);
                int64_t next = b;
                for (int i = 0; i < nb; i++) {
                    cr_assert(ckpt_box_inside(&boxes[i], ndim, shapes[s]));
                    /* walk the box row-major: each element's flat index must be `next` */
                    int64_t idx[4] = {0};
                    const int64_t vol = ckpt_box_volume(&boxes[i], ndim);
                    for (int64_t k = 0; k < vol; k++) {
                        int64_t flat = 0, rem = k;
                        for (int d = ndim - 1; d >= 0; d--) {
                            idx[d] = boxes[i].offset[d] + rem % boxes[i].extent[d];
                            rem /= boxes[i].extent[d];
                        }
                        for (int d = 0; d < ndim; d++)
                            flat = flat * shapes[s][d] + idx[d];
                        cr_assert_eq(flat, next, "shape %d range [%ld,%ld) box %d", s, (long)b,
                                     (long)e, i);
                        next++;
                    }
                }
                cr_assert_eq(next, e);
            }
    }
}

Test(checkpoint_box, copy_between_layouts) {
    /* a 6x5 tensor: source holds rows 1..4 (a TP-like row block), destination a 3x3 window */
    float src[4 * 5], dst[3 * 3];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 5; j++)
            src[i * 5 + j] = (float)((i + 1) * 10 + j);
    struct ts_ckpt_box sb = {.offset = {1, 0}, .extent = {4, 5}};
    struct ts_ckpt_box db = {.offset = {3, 2}, .extent = {3, 3}};
    struct ts_ckpt_box r;
    cr_assert(ckpt_box_intersect(&sb, &db, 2, &r));
    cr_assert_eq(r.offset[0], 3);
    cr_assert_eq(r.extent[0], 2); /* rows 3, 4 */
    memset(dst, 0, sizeof(dst));
    ckpt_box_copy(src, &sb, TS_DTYPE_F32, dst, &db, TS_DTYPE_F32, &r, 2);
    const float want[9] = {32, 33, 34, 42, 43, 44, 0, 0, 0};
    cr_assert_arr_eq(dst, want, sizeof(want));
    struct ts_ckpt_box far = {.offset = {5, 0}, .extent = {1, 5}};
    cr_assert_not(ckpt_box_intersect(&sb, &far, 2, &r));
}

Test(checkpoint_box, bf16_conversion_rounds_to_nearest_even) {
    const float in[4] = {1.0f, 1.00390625f /* 1 + 2^-8: a tie, stays 1 */, -2.5f,
                         1.01171875f /* 1 + 3*2^-8: a tie, goes up to 1 + 2^-6 */};
    uint16_t mid[4];
    float out[4];
    struct ts_ckpt_box b = {.offset = {0}, .extent = {4}};
    ckpt_box_copy(in, &b, TS_DTYPE_F32, mid, &b, TS_DTYPE_BF16, &b, 1);
    ckpt_box_copy(mid, &b, TS_DTYPE_BF16, out, &b, TS_DTYPE_F32, &b, 1);
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], 1.0f);
    cr_assert_eq(out[2], -2.5f);
    cr_assert_eq(out[3], 1.015625f);
}

Test(checkpoint_names, unsafe_names_refused) {
    cr_assert(ckpt_name_ok("params/h.0.attn.c_attn.weight"));
    cr_assert_not(ckpt_name_ok("../etc/passwd"));
    cr_assert_not(ckpt_name_ok("/abs"));
    cr_assert_not(ckpt_name_ok("_index"));
    cr_assert_not(ckpt_name_ok("a//b"));
    cr_assert_not(ckpt_name_ok("a b"));
    cr_assert_not(ckpt_name_ok(""));
}
