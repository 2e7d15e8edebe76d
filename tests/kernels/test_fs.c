/* test_fs.c: mkdir -p makes nested directories, is idempotent, and names what it cannot make;
 * path joins and formats fill exactly up to their buffer and fail, naming the path, beyond. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/fs.h"

Test(kernels_fs, mkdirs_nested_and_errors) {
    char dir[] = "/tmp/ts_fs_XXXXXX", path[256], file[256];
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(ts_path_fmt(path, sizeof(path), "%s/a/b/c", dir), TS_OK);
    cr_assert_eq(ts_fs_mkdirs(path), TS_OK, "%s", ts_last_error());
    struct stat st;
    cr_assert(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    cr_assert_eq(ts_fs_mkdirs(path), TS_OK, "a second call is a no-op");

    snprintf(file, sizeof(file), "%s/plain", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_expect_eq(ts_fs_mkdirs(file), TS_ERR_IO);
    cr_expect_not_null(strstr(ts_last_error(), "not a directory"), "%s", ts_last_error());
    snprintf(path, sizeof(path), "%s/plain/below", dir);
    cr_expect_eq(ts_fs_mkdirs(path), TS_ERR_IO);
    cr_expect_not_null(strstr(ts_last_error(), "plain/below"), "%s", ts_last_error());
    cr_expect_eq(ts_fs_mkdirs(""), TS_ERR_INVALID_ARG);

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(kernels_fs, path_join_fits_exactly_or_fails) {
    char out[16];
    cr_assert_eq(ts_path_join(out, sizeof out, "run", "checkpoints"), TS_OK);
    cr_assert_str_eq(out, "run/checkpoints");
    cr_assert_eq(ts_path_join(out, sizeof out, "run/", "latest"), TS_OK);
    cr_assert_str_eq(out, "run/latest", "no second slash");
    cr_assert_eq(ts_path_join(out, sizeof out, "", "model.h5"), TS_OK);
    cr_assert_str_eq(out, "model.h5");
    cr_assert_eq(ts_path_join(out, sizeof out, "/", "tmp"), TS_OK);
    cr_assert_str_eq(out, "/tmp");
    /* 15 bytes and the NUL fit in 16; one more does not, and nothing cut is left behind */
    cr_assert_eq(ts_path_join(out, sizeof out, "abcdefg", "hijklmn"), TS_OK);
    cr_assert_str_eq(out, "abcdefg/hijklmn");
    cr_assert_eq(ts_path_join(out, sizeof out, "abcdefg", "hijklmno"), TS_ERR_INVALID_ARG);
    cr_assert_str_eq(out, "");
    cr_assert(strstr(ts_last_error(), "path too long") != NULL, "%s", ts_last_error());
    cr_assert(strstr(ts_last_error(), "abcdefg/hijklmno") != NULL, "%s", ts_last_error());
    cr_assert(strstr(ts_last_error(), "16 bytes, at most 15") != NULL, "%s", ts_last_error());
}

Test(kernels_fs, path_fmt_fits_exactly_or_fails) {
    char out[TS_PATH_MAX];
    cr_assert_eq(ts_path_fmt(out, sizeof out, "%s/step_%08d", "ck", 7), TS_OK);
    cr_assert_str_eq(out, "ck/step_00000007");
    /* a path of TS_PATH_MAX - 1 bytes fits; one of TS_PATH_MAX is named by both ends */
    char *dir = malloc(TS_PATH_MAX + 1);
    cr_assert_not_null(dir);
    memset(dir, 'd', TS_PATH_MAX);
    dir[0] = '/';
    dir[TS_PATH_MAX - 1 - strlen("/rank_00000.h5")] = '\0';
    cr_assert_eq(ts_path_fmt(out, sizeof out, "%s/rank_%05d.h5", dir, 0), TS_OK);
    cr_assert_eq(strlen(out), TS_PATH_MAX - 1);
    cr_assert_eq(ts_path_fmt(out, sizeof out, "%s/rank_%05d.h5", dir, 123456), TS_ERR_INVALID_ARG);
    cr_assert_str_eq(out, "");
    const char *msg = ts_last_error();
    cr_assert(strstr(msg, "4096 bytes, at most 4095") != NULL, "%s", msg);
    cr_assert(strstr(msg, "/ddd") != NULL, "the start: %s", msg);
    cr_assert(strstr(msg, "d/rank_123456.h5") != NULL, "the end: %s", msg);
    cr_assert(strlen(msg) < TS_ERROR_MSG_LEN - 1, "not cut itself: %s", msg);
    cr_assert_eq(ts_path_join(out, sizeof out, dir, "rank_123456.h5"), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "/ddd") != NULL, "%s", ts_last_error());
    cr_assert(strstr(ts_last_error(), "...rank_123456.h5") != NULL, "%s", ts_last_error());
    free(dir);
}
