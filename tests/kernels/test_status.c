/* test_status.c: error messages (thread-local, wrapped, the first kept across cleanup), status
 * names, tensor views and shapes, logging levels, and the memory ops. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kernels/log.h"
#include "tests/kernels/helpers.h"

Test(kernels_status, error_records_and_wraps_messages) {
    ts_error_clear();
    cr_assert_str_eq(ts_last_error(), "");
    cr_assert_eq(ts_error(TS_ERR_IO, "cannot open %s", "x.bin"), TS_ERR_IO);
    cr_assert_str_eq(ts_last_error(), "cannot open x.bin");
    cr_assert_eq(ts_error_wrap(TS_ERR_FORMAT, "loading shard %d", 3), TS_ERR_FORMAT);
    cr_assert_str_eq(ts_last_error(), "loading shard 3: cannot open x.bin");
    cr_assert_str_eq(ts_status_name(TS_ERR_INVALID_ARG), "invalid argument");
    cr_assert_str_eq(ts_status_name(TS_OK), "ok");
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ts_error(TS_ERR_IO, "%s", big); /* truncated, not overflowed */
    cr_assert_eq(strlen(ts_last_error()), 1023);
}

static void *set_other_thread(void *arg) {
    (void)arg;
    ts_error(TS_ERR_COMM, "from another thread");
    return NULL;
}

Test(kernels_status, messages_are_thread_local) {
    ts_error(TS_ERR_IO, "mine");
    pthread_t th;
    pthread_create(&th, NULL, set_other_thread, NULL);
    pthread_join(th, NULL);
    cr_assert_str_eq(ts_last_error(), "mine");
}

/* Cleanup calls for TS_CHECK_KEEP: each counts its runs and says what it saw of its own
 * message (a suppressed message would show the caller's first error instead). */
static int calls;
static char seen[TS_ERROR_MSG_LEN];

static ts_status step_fails(ts_status st, const char *what) {
    calls++;
    const ts_status r = ts_error(st, "%s", what);
    snprintf(seen, sizeof seen, "%s", ts_last_error());
    return r;
}

static ts_status step_ok_after_clearing(void) {
    calls++;
    ts_error_clear(); /* a call that fails internally, recovers and clears */
    return TS_OK;
}

/* A cleanup with its own first-error trail: fails, keeps its own first error, wraps it. */
static ts_status cleanup_with_trail(void) {
    ts_status st = step_fails(TS_ERR_IO, "inner first");
    TS_CHECK_KEEP(st, step_fails(TS_ERR_COMM, "inner second"));
    return ts_error_wrap(st, "removing tmp");
}

Test(kernels_status, keep_takes_the_first_error_and_runs_every_call) {
    calls = 0;
    ts_error_clear();
    ts_status st = TS_OK;
    TS_CHECK_KEEP(st, step_ok_after_clearing());
    cr_assert_eq(st, TS_OK);
    TS_CHECK_KEEP(st, step_fails(TS_ERR_IO, "cannot write rank_00001.h5"));
    cr_assert_eq(st, TS_ERR_IO);
    cr_assert_str_eq(ts_last_error(), "cannot write rank_00001.h5");
    TS_CHECK_KEEP(st, step_fails(TS_ERR_COMM, "all-reduce failed"));
    cr_assert_eq(st, TS_ERR_IO, "the first status stays");
    cr_assert_str_eq(seen, "all-reduce failed", "the cleanup call saw its own message");
    cr_assert_str_eq(ts_last_error(), "cannot write rank_00001.h5", "the first message stays");
    TS_CHECK_KEEP(st, step_ok_after_clearing());
    cr_assert_str_eq(ts_last_error(), "cannot write rank_00001.h5", "a clear does not lose it");
    cr_assert_eq(calls, 4, "every cleanup call ran");
}

Test(kernels_status, keep_nests) {
    ts_status st = step_fails(TS_ERR_FORMAT, "outer first");
    TS_CHECK_KEEP(st, cleanup_with_trail());
    cr_assert_eq(st, TS_ERR_FORMAT);
    cr_assert_str_eq(ts_last_error(), "outer first");
    st = TS_OK;
    TS_CHECK_KEEP(st, cleanup_with_trail());
    cr_assert_eq(st, TS_ERR_IO, "the cleanup's own first error");
    cr_assert_str_eq(ts_last_error(), "removing tmp: inner first");
}

Test(kernels_status, keep_in_a_loop_reports_the_first_failure) {
    ts_status first = TS_OK;
    const char *files[4] = {"rank_00000.h5", "rank_00001.h5", "rank_00002.h5", "model.h5"};
    for (int i = 0; i < 4; i++)
        TS_CHECK_KEEP(first, i == 0 ? TS_OK : step_fails(TS_ERR_FORMAT, files[i]));
    cr_assert_eq(first, TS_ERR_FORMAT);
    cr_assert_str_eq(ts_last_error(), "rank_00001.h5");
}

static void redirect_stderr(void) { cr_redirect_stderr(); }

Test(kernels_status, keep_logs_the_dropped_failure_at_debug, .init = redirect_stderr) {
    ts_log_set_level(TS_LOG_DEBUG);
    ts_status st = step_fails(TS_ERR_IO, "first");
    TS_CHECK_KEEP(st, step_fails(TS_ERR_COMM, "the dropped one"));
    ts_log_set_level(TS_LOG_INFO);
    cr_assert_str_eq(ts_last_error(), "first");
    fclose(stderr); /* the pipe's write end: the read below then ends */
    char buf[1024] = "";
    FILE *f = cr_get_redirected_stderr();
    size_t n = 0, got;
    while (n < sizeof buf - 1 && (got = fread(buf + n, 1, sizeof buf - 1 - n, f)) > 0)
        n += got;
    buf[n] = '\0';
    cr_assert(strstr(buf, "test_status.c:") != NULL, "%s", buf);
    cr_assert(strstr(buf, "the dropped one") != NULL, "%s", buf);
}

Test(kernels_tensor, views_reshape_and_describe) {
    float buf[24];
    struct ts_tensor t = ts_tensor_3d(buf, TS_DTYPE_F32, 2, 3, 4);
    cr_assert_eq(ts_tensor_numel(&t), 24);
    cr_assert_eq(ts_tensor_nbytes(&t), 96);
    cr_assert_eq(t.shape[3], 1);
    char d[64];
    cr_assert_str_eq(ts_tensor_describe(&t, d, sizeof d), "(2, 3, 4) f32");
    struct ts_tensor v;
    cr_assert_eq(ts_tensor_view(&v, &t, 12, 2, (int64_t[]){3, 4}), TS_OK);
    cr_assert_eq((float *)v.data, buf + 12);
    cr_assert_eq(v.ndim, 2);
    cr_assert_eq(ts_tensor_view(&v, &t, 13, 2, (int64_t[]){3, 4}), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "tensor_view") != NULL, "%s", ts_last_error());
    cr_assert_eq(ts_tensor_view(&v, &t, -1, 1, (int64_t[]){1}), TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_tensor_reshape(&v, &t, 2, (int64_t[]){6, 4}), TS_OK);
    cr_assert_eq(v.shape[0], 6);
    cr_assert_eq(v.data, (void *)buf);
    cr_assert_eq(ts_tensor_reshape(&v, &t, 2, (int64_t[]){5, 5}), TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_tensor_reshape(&v, &t, 5, (int64_t[]){1, 1, 1, 1, 24}), TS_ERR_INVALID_ARG);
    struct ts_tensor i = ts_tensor_1d(NULL, TS_DTYPE_BF16, 10);
    cr_assert_eq(ts_tensor_nbytes(&i), 20);
    cr_assert_str_eq(ts_tensor_describe(&i, d, sizeof d), "(10) bf16");
}

Test(kernels_log, level_and_prefix) {
    ts_log_set_level(TS_LOG_WARN);
    cr_assert_eq(ts_log_get_level(), TS_LOG_WARN);
    ts_log_set_prefix("[rank 1] ");
    TS_LOG_D("not shown");
    ts_log_set_prefix("");
    ts_log_set_level(TS_LOG_INFO);
}

Test(kernels_memory, alloc_upload_copy_download_zero) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    struct ts_tensor a, b;
    cr_assert_eq(ts_op_alloc(be, &a, TS_DTYPE_F32, 2, (int64_t[]){3, 5}), TS_OK);
    cr_assert_eq(((uintptr_t)a.data) % 64, 0, "64-byte aligned");
    for (int i = 0; i < 15; i++)
        cr_assert_eq(((float *)a.data)[i], 0.0f, "zero-filled");
    cr_assert_eq(ts_op_alloc(be, &b, TS_DTYPE_F32, 1, (int64_t[]){15}), TS_OK);
    float host[15], back[15];
    for (int i = 0; i < 15; i++)
        host[i] = (float)i;
    cr_assert_eq(ts_op_upload(be, &a, host, sizeof host), TS_OK);
    cr_assert_eq(ts_op_upload(be, &a, host, sizeof host - 4), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "upload") != NULL);
    cr_assert_eq(ts_op_copy(be, &b, &a), TS_OK);
    cr_assert_eq(ts_op_download(be, back, &b, sizeof back), TS_OK);
    cr_assert_eq(memcmp(host, back, sizeof back), 0);
    cr_assert_eq(ts_op_download(be, back, &b, sizeof back + 4), TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_op_zero(be, &b), TS_OK);
    cr_assert_eq(ts_op_download(be, back, &b, sizeof back), TS_OK);
    cr_assert_eq(back[7], 0.0f);
    cr_assert_eq(ts_op_sync(be), TS_OK);
    struct ts_tensor c;
    cr_assert_eq(ts_op_alloc(be, &c, TS_DTYPE_I32, 1, (int64_t[]){15}), TS_OK);
    cr_assert_eq(ts_op_copy(be, &c, &a), TS_ERR_INVALID_ARG, "dtype mismatch");
    struct ts_tensor bad = {.data = (void *)1};
    cr_assert_eq(ts_op_alloc(be, &bad, TS_DTYPE_F32, 1, (int64_t[]){0}), TS_ERR_INVALID_ARG);
    cr_assert_null(bad.data);
    ts_op_free(be, &c);
    ts_op_free(be, &a);
    ts_op_free(be, &b);
    cr_assert_null(a.data);
    ts_op_free(be, &a); /* freeing twice is harmless */
    struct ts_backend_info info;
    be->info(be, &info);
    cr_assert_str_eq(info.name, "cpu");
    cr_assert(info.threads >= 1);
    ts_backend_destroy(be);
    ts_backend_destroy(NULL);
}
