/* h5io.c: the HDF5 calls of the checkpoint module, each turned into a ts_status with a message.
 *
 * HDF5's own error printing is switched off and its innermost message is carried in ours, so a
 * truncated or damaged file reads as one line naming the file. Elements are stored little-endian
 * (f32 as IEEE, bf16 as uint16 with a "dtype" attribute); datasets are contiguous, so a write
 * of a whole dataset goes straight from the caller's buffer to the file. HDF5's file locking is
 * off: each file has one writer and is read only after its checkpoint is committed, and parallel
 * file systems without flock (Lustre, some NFS) would refuse every open. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint/ckpt_impl.h"

void ckpt_h5_quiet(void) { (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

struct walk_ctx {
    char *buf;
    size_t len;
};

static herr_t walk_cb(unsigned n, const H5E_error2_t *err, void *data) {
    struct walk_ctx *w = data;
    if (n == 0 && err->desc != NULL) /* the innermost: where it went wrong */
        snprintf(w->buf, w->len, "%s", err->desc);
    return 0;
}

const char *ckpt_h5_msg(char *buf, size_t len) {
    struct walk_ctx w = {buf, len};
    snprintf(buf, len, "unknown HDF5 error");
    (void)H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &w);
    return buf;
}

static ts_status h5fail(ts_status st, const char *what, const char *file, const char *name) {
    char msg[256];
    ckpt_h5_msg(msg, sizeof(msg));
    return ts_error(st, "%s %s%s%s: %s", what, file, name ? " dataset " : "", name ? name : "",
                    msg);
}

ts_status ckpt_h5_create(hid_t *out, const char *path) {
    ckpt_h5_quiet();
    *out = H5I_INVALID_HID;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* 1.8-compatible objects: smaller metadata, and every HDF5 >= 1.8 reader (h5py) opens it */
    if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0 ||
        H5Pset_file_locking(fapl, 0, 1) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        return h5fail(TS_ERR_IO, "cannot create", path, NULL);
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return h5fail(TS_ERR_IO, "cannot create", path, NULL);
    *out = f;
    return TS_OK;
}

ts_status ckpt_h5_open(hid_t *out, const char *path) {
    ckpt_h5_quiet();
    *out = H5I_INVALID_HID;
    TS_CHECK(ts_fs_check_regular(path, NULL)); /* a FIFO would block HDF5's open forever */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_file_locking(fapl, 0, 1) < 0) {
        H5Pclose(fapl);
        fapl = H5I_INVALID_HID;
    }
    *out = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (*out < 0) {
        char msg[256];
        ckpt_h5_msg(msg, sizeof(msg));
        return ts_error(TS_ERR_FORMAT,
                        "cannot open %s: %s (the file is truncated or damaged; restore it or use "
                        "another checkpoint)",
                        path, msg);
    }
    return TS_OK;
}

ts_status ckpt_h5_close(hid_t f, const char *file) {
    if (f < 0)
        return TS_OK;
    if (H5Fclose(f) < 0)
        return h5fail(TS_ERR_IO, "cannot close", file, NULL);
    return TS_OK;
}

static hid_t file_type(enum ts_dtype dt) {
    return dt == TS_DTYPE_BF16 ? H5T_STD_U16LE : H5T_IEEE_F32LE;
}

static hid_t mem_type(enum ts_dtype dt) {
    return dt == TS_DTYPE_BF16 ? H5T_NATIVE_UINT16 : H5T_NATIVE_FLOAT;
}

static ts_status write_raw(hid_t f, const char *file, const char *name, hid_t ftype, hid_t mtype,
                           const void *data, int rank, const hsize_t *dims,
                           const char *dtype_attr) {
    ts_status st = TS_OK;
    hid_t space = H5I_INVALID_HID, lcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hid_t aspace = H5I_INVALID_HID, atype = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    space = H5Screate_simple(rank, dims, NULL);
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (space < 0 || lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0)
        goto fail;
    ds = H5Dcreate2(f, name, ftype, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0)
        goto fail;
    hsize_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= dims[d];
    if (n > 0 && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        goto fail;
    if (dtype_attr != NULL) {
        aspace = H5Screate(H5S_SCALAR);
        atype = H5Tcopy(H5T_C_S1);
        if (aspace < 0 || atype < 0 || H5Tset_size(atype, strlen(dtype_attr) + 1) < 0)
            goto fail;
        attr = H5Acreate2(ds, "dtype", atype, aspace, H5P_DEFAULT, H5P_DEFAULT);
        if (attr < 0 || H5Awrite(attr, atype, dtype_attr) < 0)
            goto fail;
    }
    goto exit;
fail:
    st = h5fail(TS_ERR_IO, "cannot write", file, name);
exit:
    if (attr >= 0)
        H5Aclose(attr);
    if (atype >= 0)
        H5Tclose(atype);
    if (aspace >= 0)
        H5Sclose(aspace);
    if (ds >= 0)
        H5Dclose(ds);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (space >= 0)
        H5Sclose(space);
    return st;
}

ts_status ckpt_h5_write(hid_t f, const char *file, const char *name, enum ts_dtype dt,
                        const void *data, int ndim, const int64_t *dims) {
    hsize_t hd[TS_MAX_DIMS];
    for (int d = 0; d < ndim; d++)
        hd[d] = (hsize_t)dims[d];
    return write_raw(f, file, name, file_type(dt), mem_type(dt), data, ndim, hd,
                     dt == TS_DTYPE_BF16 ? "bf16" : NULL);
}

ts_status ckpt_h5_write_bytes(hid_t f, const char *file, const char *name, const void *data,
                              size_t n) {
    const hsize_t dims[1] = {(hsize_t)n};
    return write_raw(f, file, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, data, 1, dims, NULL);
}

/* Refuses every external link a path crosses: a rank file names only its own objects. */
static herr_t refuse_elink(const char *parent_file, const char *parent_group,
                           const char *child_file, const char *child_obj, unsigned *acc_flags,
                           hid_t fapl, void *ctx) {
    (void)parent_file, (void)parent_group, (void)child_file, (void)child_obj, (void)acc_flags;
    (void)fapl, (void)ctx;
    return -1;
}

/* Opens dataset name of f without following external links, and refuses a dataset whose
 * elements live outside the file (external storage or a virtual dataset): a crafted rank file
 * must not make Tessera read other files. */
static ts_status open_dataset(hid_t f, const char *file, const char *name, hid_t *out) {
    *out = H5I_INVALID_HID;
    hid_t lapl = H5Pcreate(H5P_DATASET_ACCESS); /* a link access list too */
    if (lapl < 0 || H5Pset_elink_cb(lapl, refuse_elink, NULL) < 0) {
        if (lapl >= 0)
            H5Pclose(lapl);
        return h5fail(TS_ERR_IO, "cannot open", file, name);
    }
    H5L_info_t li;
    if (H5Lexists(f, name, lapl) <= 0 || H5Lget_info(f, name, &li, lapl) < 0) {
        H5Pclose(lapl);
        return ts_error(TS_ERR_FORMAT,
                        "%s has no dataset %s that the manifest lists (the file is damaged or "
                        "from another checkpoint)",
                        file, name);
    }
    if (li.type != H5L_TYPE_HARD) {
        H5Pclose(lapl);
        return ts_error(TS_ERR_FORMAT, "%s: %s is a link, not a dataset of the file", file, name);
    }
    hid_t ds = H5Dopen2(f, name, lapl);
    H5Pclose(lapl);
    if (ds < 0)
        return h5fail(TS_ERR_FORMAT, "cannot open", file, name);
    hid_t dcpl = H5Dget_create_plist(ds);
    const int ext = dcpl >= 0 ? H5Pget_external_count(dcpl) : -1;
    const H5D_layout_t lay = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (ext != 0 || lay == H5D_VIRTUAL || lay == H5D_LAYOUT_ERROR) {
        H5Dclose(ds);
        return ts_error(TS_ERR_FORMAT,
                        "%s: dataset %s keeps its elements outside the file (external or "
                        "virtual storage), which a checkpoint never does",
                        file, name);
    }
    *out = ds;
    return TS_OK;
}

/* Opens dataset name and checks its type class/size and its extent. */
static ts_status open_checked(hid_t f, const char *file, const char *name, hid_t want_type,
                              int ndim, const hsize_t *dims, hid_t *out) {
    *out = H5I_INVALID_HID;
    hid_t ds;
    TS_CHECK(open_dataset(f, file, name, &ds));
    ts_status st = TS_OK;
    hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
    hsize_t got[TS_MAX_DIMS] = {0};
    int r = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (type < 0 || space < 0 || r < 0)
        st = h5fail(TS_ERR_FORMAT, "cannot read", file, name);
    else if (H5Tget_class(type) != H5Tget_class(want_type) ||
             H5Tget_size(type) != H5Tget_size(want_type))
        st = ts_error(TS_ERR_FORMAT, "%s dataset %s has another element type than the manifest's",
                      file, name);
    else if (r != ndim || H5Sget_simple_extent_dims(space, got, NULL) != r)
        st = ts_error(TS_ERR_FORMAT, "%s dataset %s has %d dimensions, the manifest says %d", file,
                      name, r, ndim);
    for (int d = 0; st == TS_OK && d < ndim; d++)
        if (got[d] != dims[d])
            st = ts_error(TS_ERR_FORMAT,
                          "%s dataset %s has %llu elements in dimension %d, the manifest says "
                          "%llu",
                          file, name, (unsigned long long)got[d], d, (unsigned long long)dims[d]);
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    if (st != TS_OK)
        H5Dclose(ds);
    else
        *out = ds;
    return st;
}

static ts_status read_raw(hid_t f, const char *file, const char *name, hid_t ftype, hid_t mtype,
                          void *buf, int ndim, const hsize_t *dims) {
    hid_t ds;
    TS_CHECK(open_checked(f, file, name, ftype, ndim, dims, &ds));
    ts_status st = TS_OK;
    hsize_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= dims[d];
    if (n > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        char msg[256];
        ckpt_h5_msg(msg, sizeof(msg));
        st = ts_error(TS_ERR_FORMAT,
                      "cannot read %s dataset %s: %s (the file is truncated or damaged; restore "
                      "it or use another checkpoint)",
                      file, name, msg);
    }
    H5Dclose(ds);
    return st;
}

ts_status ckpt_h5_read(hid_t f, const char *file, const char *name, enum ts_dtype dt, void *buf,
                       int64_t numel, int ndim, const int64_t *dims) {
    hsize_t hd[TS_MAX_DIMS] = {(hsize_t)numel};
    if (ndim > 0)
        for (int d = 0; d < ndim; d++)
            hd[d] = (hsize_t)dims[d];
    return read_raw(f, file, name, file_type(dt), mem_type(dt), buf, ndim > 0 ? ndim : 1, hd);
}

ts_status ckpt_h5_read_bytes(hid_t f, const char *file, const char *name, void *buf, size_t n) {
    const hsize_t dims[1] = {(hsize_t)n};
    return read_raw(f, file, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, buf, 1, dims);
}

ts_status ckpt_h5_bytes_size(hid_t f, const char *file, const char *name, size_t *n) {
    *n = 0;
    hid_t ds;
    TS_CHECK(open_dataset(f, file, name, &ds));
    hid_t space = H5Dget_space(ds);
    hsize_t dims[1] = {0};
    ts_status st = TS_OK;
    if (space < 0 || H5Sget_simple_extent_ndims(space) != 1 ||
        H5Sget_simple_extent_dims(space, dims, NULL) != 1 || dims[0] > CKPT_MAX_MANIFEST)
        st = ts_error(TS_ERR_FORMAT, "%s dataset %s is not a byte string of a sane size", file,
                      name);
    else
        *n = (size_t)dims[0];
    if (space >= 0)
        H5Sclose(space);
    H5Dclose(ds);
    return st;
}

ts_status ckpt_h5_attr_str(hid_t f, const char *file, const char *key, const char *value) {
    ts_status st = TS_OK;
    hid_t space = H5Screate(H5S_SCALAR), type = H5Tcopy(H5T_C_S1), attr = H5I_INVALID_HID;
    if (space < 0 || type < 0 || H5Tset_size(type, strlen(value) + 1) < 0)
        goto fail;
    attr = H5Acreate2(f, key, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, type, value) < 0)
        goto fail;
    goto exit;
fail:
    st = h5fail(TS_ERR_IO, "cannot write an attribute of", file, NULL);
exit:
    if (attr >= 0)
        H5Aclose(attr);
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    return st;
}
