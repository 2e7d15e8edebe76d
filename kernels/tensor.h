/* tensor.h: dtypes, shapes and views of backend memory.
 *
 * A ts_tensor is a description (data pointer, dtype, row-major contiguous shape), not an owner:
 * memory belongs to whoever allocated it through a backend. `data` may be device memory, so code
 * outside a backend never dereferences it; it may compute views into it (pointer arithmetic only).
 */
#ifndef TS_TENSOR_H
#define TS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ts_dtype {
    TS_DTYPE_F32 = 0,
    TS_DTYPE_BF16 = 1,
    TS_DTYPE_I32 = 2,
    TS_DTYPE_U16 = 3,
};

size_t ts_dtype_size(enum ts_dtype dtype);
const char *ts_dtype_name(enum ts_dtype dtype);

#define TS_MAX_DIMS 4

struct ts_tensor {
    void *data; /* backend memory (host for the CPU backend, device for CUDA) */
    enum ts_dtype dtype;
    int ndim;                   /* 1..TS_MAX_DIMS */
    int64_t shape[TS_MAX_DIMS]; /* row-major, contiguous; unused dims are 1 */
};

int64_t ts_tensor_numel(const struct ts_tensor *t);
size_t ts_tensor_nbytes(const struct ts_tensor *t);

/* Builders for caller-owned descriptions; no memory is touched. */
struct ts_tensor ts_tensor_1d(void *data, enum ts_dtype dtype, int64_t d0);
struct ts_tensor ts_tensor_2d(void *data, enum ts_dtype dtype, int64_t d0, int64_t d1);
struct ts_tensor ts_tensor_3d(void *data, enum ts_dtype dtype, int64_t d0, int64_t d1, int64_t d2);
struct ts_tensor ts_tensor_4d(void *data, enum ts_dtype dtype, int64_t d0, int64_t d1, int64_t d2,
                              int64_t d3);

/* A contiguous view of `numel(shape)` elements starting `elem_offset` elements into base.
 * Fails with TS_ERR_INVALID_ARG when the view would run past the end of base. */
ts_status ts_tensor_view(struct ts_tensor *out, const struct ts_tensor *base, int64_t elem_offset,
                         int ndim, const int64_t *shape) TS_MUST_CHECK;

/* The same memory with another shape of equal element count. */
ts_status ts_tensor_reshape(struct ts_tensor *out, const struct ts_tensor *t, int ndim,
                            const int64_t *shape) TS_MUST_CHECK;

/* "(4, 64, 256) f32" into buf; returns buf. */
const char *ts_tensor_describe(const struct ts_tensor *t, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
