/* tensor.c: dtype sizes, shape arithmetic, views and descriptions.
 *
 * Nothing here touches tensor memory: a view is pointer arithmetic on `data`, which may be device
 * memory. */
#include "kernels/tensor.h"

#include <stdio.h>
#include <string.h>

size_t ts_dtype_size(enum ts_dtype dtype) {
    switch (dtype) {
    case TS_DTYPE_F32:
    case TS_DTYPE_I32:
        return 4;
    case TS_DTYPE_BF16:
    case TS_DTYPE_U16:
        return 2;
    }
    return 0;
}

const char *ts_dtype_name(enum ts_dtype dtype) {
    switch (dtype) {
    case TS_DTYPE_F32:
        return "f32";
    case TS_DTYPE_BF16:
        return "bf16";
    case TS_DTYPE_I32:
        return "i32";
    case TS_DTYPE_U16:
        return "u16";
    }
    return "?";
}

int64_t ts_tensor_numel(const struct ts_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t ts_tensor_nbytes(const struct ts_tensor *t) {
    return (size_t)ts_tensor_numel(t) * ts_dtype_size(t->dtype);
}

static struct ts_tensor make(void *data, enum ts_dtype dtype, int ndim, const int64_t *shape) {
    struct ts_tensor t = {.data = data, .dtype = dtype, .ndim = ndim};
    for (int i = 0; i < TS_MAX_DIMS; i++)
        t.shape[i] = i < ndim ? shape[i] : 1;
    return t;
}

struct ts_tensor ts_tensor_1d(void *data, enum ts_dtype dtype, int64_t d0) {
    int64_t s[1] = {d0};
    return make(data, dtype, 1, s);
}

struct ts_tensor ts_tensor_2d(void *data, enum ts_dtype dtype, int64_t d0, int64_t d1) {
    int64_t s[2] = {d0, d1};
    return make(data, dtype, 2, s);
}

struct ts_tensor ts_tensor_3d(void *data, enum ts_dtype dtype, int64_t d0, int64_t d1, int64_t d2) {
    int64_t s[3] = {d0, d1, d2};
    return make(data, dtype, 3, s);
}

struct ts_tensor ts_tensor_4d(void *data, enum ts_dtype dtype, int64_t d0, int64_t d1, int64_t d2,
                              int64_t d3) {
    int64_t s[4] = {d0, d1, d2, d3};
    return make(data, dtype, 4, s);
}

static ts_status check_shape(const char *what, int ndim, const int64_t *shape, int64_t *numel) {
    if (ndim < 1 || ndim > TS_MAX_DIMS)
        return ts_error(TS_ERR_INVALID_ARG, "%s: ndim %d is outside 1..%d", what, ndim,
                        TS_MAX_DIMS);
    if (!shape)
        return ts_error(TS_ERR_INVALID_ARG, "%s: shape is NULL", what);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ts_error(TS_ERR_INVALID_ARG, "%s: dim %d is negative (%lld)", what, i,
                            (long long)shape[i]);
        n *= shape[i];
    }
    *numel = n;
    return TS_OK;
}

ts_status ts_tensor_view(struct ts_tensor *out, const struct ts_tensor *base, int64_t elem_offset,
                         int ndim, const int64_t *shape) {
    if (!out || !base)
        return ts_error(TS_ERR_INVALID_ARG, "tensor_view: out or base is NULL");
    int64_t n = 0;
    TS_CHECK(check_shape("tensor_view", ndim, shape, &n));
    int64_t base_n = ts_tensor_numel(base);
    if (elem_offset < 0 || elem_offset > base_n || n > base_n - elem_offset) {
        char buf[96];
        return ts_error(TS_ERR_INVALID_ARG,
                        "tensor_view: %lld elements at offset %lld run past the end of base %s",
                        (long long)n, (long long)elem_offset,
                        ts_tensor_describe(base, buf, sizeof buf));
    }
    char *p =
        base->data ? (char *)base->data + elem_offset * (int64_t)ts_dtype_size(base->dtype) : NULL;
    *out = make(p, base->dtype, ndim, shape);
    return TS_OK;
}

ts_status ts_tensor_reshape(struct ts_tensor *out, const struct ts_tensor *t, int ndim,
                            const int64_t *shape) {
    if (!out || !t)
        return ts_error(TS_ERR_INVALID_ARG, "tensor_reshape: out or t is NULL");
    int64_t n = 0;
    TS_CHECK(check_shape("tensor_reshape", ndim, shape, &n));
    if (n != ts_tensor_numel(t)) {
        char buf[96];
        return ts_error(TS_ERR_INVALID_ARG,
                        "tensor_reshape: new shape has %lld elements but %s has %lld", (long long)n,
                        ts_tensor_describe(t, buf, sizeof buf), (long long)ts_tensor_numel(t));
    }
    *out = make(t->data, t->dtype, ndim, shape);
    return TS_OK;
}

const char *ts_tensor_describe(const struct ts_tensor *t, char *buf, size_t len) {
    if (!buf || len == 0)
        return buf;
    if (!t) {
        snprintf(buf, len, "(null)");
        return buf;
    }
    size_t pos = 0;
    int n = snprintf(buf, len, "(");
    pos = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < t->ndim && i < TS_MAX_DIMS && pos < len; i++) {
        n = snprintf(buf + pos, len - pos, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        pos += n > 0 ? (size_t)n : 0;
    }
    if (pos < len)
        snprintf(buf + pos, len - pos, ") %s", ts_dtype_name(t->dtype));
    return buf;
}
