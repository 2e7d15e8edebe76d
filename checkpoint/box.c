/* box.c: boxes of tensors in global coordinates, and copying between them.
 *
 * A shard is a list of boxes; resharding is copying the intersection of a stored box and a
 * wanted box. Boxes are taken as 4-D with leading extents of 1, so one loop nest over the three
 * outer dimensions copies contiguous runs of the innermost one. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint/ckpt_impl.h"

int64_t ckpt_box_volume(const struct ts_ckpt_box *b, int ndim) {
    int64_t v = 1;
    for (int d = 0; d < ndim; d++)
        v *= b->extent[d];
    return v;
}

bool ckpt_box_intersect(const struct ts_ckpt_box *a, const struct ts_ckpt_box *b, int ndim,
                        struct ts_ckpt_box *out) {
    for (int d = 0; d < ndim; d++) {
        const int64_t lo = a->offset[d] > b->offset[d] ? a->offset[d] : b->offset[d];
        const int64_t ha = a->offset[d] + a->extent[d], hb = b->offset[d] + b->extent[d];
        const int64_t hi = ha < hb ? ha : hb;
        if (hi <= lo)
            return false;
        out->offset[d] = lo;
        out->extent[d] = hi - lo;
    }
    return true;
}

bool ckpt_box_inside(const struct ts_ckpt_box *b, int ndim, const int64_t *shape) {
    for (int d = 0; d < ndim; d++)
        if (b->offset[d] < 0 || b->extent[d] <= 0 || b->offset[d] > shape[d] ||
            b->extent[d] > shape[d] - b->offset[d])
            return false;
    return true;
}

int64_t ckpt_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0 || shape[d] > CKPT_MAX_NUMEL / n)
            return -1;
        n *= shape[d];
    }
    return n;
}

const char *ckpt_box_str(const struct ts_ckpt_box *b, int ndim, char *buf, size_t len) {
    size_t at = 0;
    at += (size_t)snprintf(buf + at, len - at, "[");
    for (int d = 0; d < ndim && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, "%s%" PRId64 ":%" PRId64, d ? ", " : "",
                               b->offset[d], b->offset[d] + b->extent[d]);
    if (at < len)
        snprintf(buf + at, len - at, "]");
    return buf;
}

const char *ckpt_shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t at = 0;
    at += (size_t)snprintf(buf + at, len - at, "(");
    for (int d = 0; d < ndim && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (at < len)
        snprintf(buf + at, len - at, ")");
    return buf;
}

bool ckpt_name_ok(const char *name) {
    const size_t n = strnlen(name, TS_CKPT_NAME_LEN);
    if (n == 0 || n >= TS_CKPT_NAME_LEN || name[0] == '/' || name[0] == '_' || name[n - 1] == '/' ||
        strstr(name, "//") != NULL || strstr(name, "..") != NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        const char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '/'))
            return false;
    }
    return true;
}

const char *ckpt_dtype_str(enum ts_dtype dt) { return dt == TS_DTYPE_BF16 ? "bf16" : "f32"; }

bool ckpt_dtype_parse(const char *s, enum ts_dtype *dt) {
    if (strcmp(s, "f32") == 0)
        *dt = TS_DTYPE_F32;
    else if (strcmp(s, "bf16") == 0)
        *dt = TS_DTYPE_BF16;
    else
        return false;
    return true;
}

static float bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static void copy_run(const unsigned char *src, enum ts_dtype sdt, unsigned char *dst,
                     enum ts_dtype ddt, int64_t n) {
    if (sdt == ddt) {
        memcpy(dst, src, (size_t)n * ts_dtype_size(sdt));
    } else if (sdt == TS_DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            const float f = bf16_to_f32(h);
            memcpy(dst + 4 * i, &f, 4);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, src + 4 * i, 4);
            const uint16_t h = f32_to_bf16(f);
            memcpy(dst + 2 * i, &h, 2);
        }
    }
}

/* Leading 1-extents to 4 dims. */
static void as4(const struct ts_ckpt_box *b, int ndim, int64_t *off, int64_t *ext) {
    const int pad = TS_MAX_DIMS - ndim;
    for (int d = 0; d < TS_MAX_DIMS; d++) {
        off[d] = d < pad ? 0 : b->offset[d - pad];
        ext[d] = d < pad ? 1 : b->extent[d - pad];
    }
}

void ckpt_box_copy(const void *src, const struct ts_ckpt_box *sb, enum ts_dtype sdt, void *dst,
                   const struct ts_ckpt_box *db, enum ts_dtype ddt, const struct ts_ckpt_box *r,
                   int ndim) {
    int64_t so[4], se[4], dof[4], de[4], ro[4], re[4];
    as4(sb, ndim, so, se);
    as4(db, ndim, dof, de);
    as4(r, ndim, ro, re);
    const size_t ss = ts_dtype_size(sdt), ds = ts_dtype_size(ddt);
    for (int64_t i0 = ro[0]; i0 < ro[0] + re[0]; i0++)
        for (int64_t i1 = ro[1]; i1 < ro[1] + re[1]; i1++)
            for (int64_t i2 = ro[2]; i2 < ro[2] + re[2]; i2++) {
                const int64_t s_at =
                    (((i0 - so[0]) * se[1] + (i1 - so[1])) * se[2] + (i2 - so[2])) * se[3] +
                    (ro[3] - so[3]);
                const int64_t d_at =
                    (((i0 - dof[0]) * de[1] + (i1 - dof[1])) * de[2] + (i2 - dof[2])) * de[3] +
                    (ro[3] - dof[3]);
                copy_run((const unsigned char *)src + (size_t)s_at * ss, sdt,
                         (unsigned char *)dst + (size_t)d_at * ds, ddt, re[3]);
            }
}

/* Boxes of [begin, end) in the trailing ndim dims of shape, with leading coordinates `lead`
 * (depth of them fixed with extent 1). */
static int range_boxes(int depth, int ndim, const int64_t *shape, int64_t begin, int64_t end,
                       const int64_t *lead, struct ts_ckpt_box *out) {
    if (begin >= end)
        return 0;
    const int d = depth; /* the dimension split here */
    int n = 0;
    int64_t inner = 1;
    for (int k = d + 1; k < ndim; k++)
        inner *= shape[k];
    int64_t row_lead[TS_MAX_DIMS];
    for (int k = 0; k < d; k++)
        row_lead[k] = lead[k];
    if (d == ndim - 1 || (begin % inner == 0 && end % inner == 0)) {
        struct ts_ckpt_box *b = &out[n++];
        for (int k = 0; k < d; k++) {
            b->offset[k] = lead[k];
            b->extent[k] = 1;
        }
        b->offset[d] = begin / inner;
        b->extent[d] = end / inner - begin / inner;
        for (int k = d + 1; k < ndim; k++) {
            b->offset[k] = 0;
            b->extent[k] = shape[k];
        }
        return n;
    }
    if (begin % inner != 0) { /* a partial first row */
        const int64_t row = begin / inner;
        const int64_t stop = end < (row + 1) * inner ? end : (row + 1) * inner;
        row_lead[d] = row;
        n += range_boxes(d + 1, ndim, shape, begin - row * inner, stop - row * inner, row_lead,
                         out + n);
        begin = stop;
    }
    if (end / inner > begin / inner) { /* whole rows */
        const int64_t full_end = end / inner * inner;
        n += range_boxes(d, ndim, shape, begin, full_end, lead, out + n);
        begin = full_end;
    }
    if (begin < end) { /* a partial last row */
        const int64_t row = begin / inner;
        row_lead[d] = row;
        n += range_boxes(d + 1, ndim, shape, 0, end - row * inner, row_lead, out + n);
    }
    return n;
}

int ts_ckpt_boxes_of_range(int ndim, const int64_t *shape, int64_t begin, int64_t end,
                           struct ts_ckpt_box *boxes) {
    const int64_t lead[TS_MAX_DIMS] = {0};
    return range_boxes(0, ndim, shape, begin, end, lead, boxes);
}
