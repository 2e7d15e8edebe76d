/* cmd_ckpt.c: `tessera ckpt inspect PATH` and `tessera ckpt verify PATH`.
 *
 * PATH is a checkpoint directory, a run's checkpoints/ directory or a run directory (its
 * latest checkpoint). inspect prints what the manifest says (config, layout, progress,
 * lineage, files); verify reads every dataset and checks its checksum, exiting 1 when
 * anything is damaged (the manifest included) and 2 when PATH holds no checkpoint. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint/ckpt.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"

static const char usage[] = "tessera ckpt inspect|verify PATH";
static const char description[] =
    "inspect: the checkpoint's config, layout, step, tokens, lineage (data hashes, parent,\n"
    "build), files and sizes. verify: read every dataset (tensor shards, state blobs, each rank\n"
    "file's index, model.h5 tensors) and check its CRC32C.\n"
    "PATH is a checkpoint directory, a checkpoints/ directory or a run directory (latest).\n"
    "Exit codes: 0 all good; 1 the checkpoint is damaged (a checksum, a file or the manifest;\n"
    "the message names it); 2 bad usage, or no checkpoint at PATH.";

int ts_cmd_ckpt(int argc, char **argv) {
    struct ts_flag *flags = NULL; /* no flags, only --help */
    const char *pos[2];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, 0, argc, argv, 2, pos, 2, &npos, &help) != TS_OK)
        return ts_launch_fail("ckpt", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(usage, description, flags, 0);
        return TS_EXIT_OK;
    }
    if (npos != 2 || (strcmp(pos[0], "inspect") != 0 && strcmp(pos[0], "verify") != 0)) {
        fprintf(stderr, "tessera ckpt: usage: %s\n", usage);
        return TS_EXIT_USAGE;
    }
    ts_ckpt_t *ck = NULL;
    /* no checkpoint at all is the user's input (2); one that is there but unreadable is damage */
    const bool exists = ts_ckpt_exists(pos[1]);
    if (ts_ckpt_open(&ck, pos[1]) != TS_OK)
        return ts_launch_fail("ckpt", exists ? TS_EXIT_FAILURE : TS_EXIT_USAGE);
    int code = TS_EXIT_OK;
    if (strcmp(pos[0], "inspect") == 0) {
        ts_ckpt_describe(ck, stdout);
    } else {
        printf("verifying %s\n", ts_ckpt_path(ck));
        if (ts_ckpt_verify(ck, stdout) != TS_OK)
            code = ts_launch_fail("ckpt verify", TS_EXIT_FAILURE);
        else
            printf("all checksums match\n");
    }
    ts_ckpt_close(ck);
    return code;
}
