/* test_fs.c: mkdir -p makes nested directories, is idempotent, and names what it cannot make. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/fs.h"

Test(kernels_fs, mkdirs_nested_and_errors) {
    char dir[] = "/tmp/ts_fs_XXXXXX", path[256], file[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/a/b/c", dir);
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
