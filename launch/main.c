/* main.c: the `tessera` command: dispatches to a subcommand. The only place that exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"

#ifndef TS_VERSION
#define TS_VERSION "unknown"
#endif

static void print_help(void) {
    printf("usage: tessera <command> [flags]\n\n"
           "Tessera pretrains GPT-style transformers.\n\n"
           "commands:\n"
           "  train     train a model on token shards\n"
           "  launch    write and submit a Slurm batch script (or an mpirun line) for train\n"
           "  eval      mean cross-entropy of a trained model on token shards\n"
           "  sample    generate text from a trained model\n"
           "  prepare   turn text files into token shards\n"
           "  tokenize  text to token ids (or back, --decode)\n"
           "  tokenizer fetch GPT-2's vocabulary, or train a BPE tokenizer\n"
           "  info      the build, backends, GPUs, and why a backend is unavailable\n"
           "  ckpt      inspect or verify a checkpoint\n"
           "  cost      what runs cost (tokens, device-hours, $, MFU) from their ledgers\n"
           "  plan      the cheapest layout per token for a model on a cluster, before renting it\n"
           "  report    one offline HTML page of runs: loss, throughput, MFU and cost plots\n"
           "  export    a checkpoint as a Hugging Face GPT-2 model (export hf CKPT OUT)\n"
           "  help      this text, or `tessera help <command>`\n"
           "  version   print the version\n\n"
           "`tessera <command> --help` lists a command's flags.\n"
           "Environment: TS_LOG=error|warn|info|debug sets the log level (info).\n");
}

static void set_log_level_from_env(void) {
    const char *lvl = getenv("TS_LOG");
    if (lvl == NULL)
        return;
    if (strcmp(lvl, "error") == 0)
        ts_log_set_level(TS_LOG_ERROR);
    else if (strcmp(lvl, "warn") == 0)
        ts_log_set_level(TS_LOG_WARN);
    else if (strcmp(lvl, "debug") == 0)
        ts_log_set_level(TS_LOG_DEBUG);
    else
        ts_log_set_level(TS_LOG_INFO);
}

int main(int argc, char **argv) {
    set_log_level_from_env();
    if (argc < 2) {
        print_help();
        return TS_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    char help_flag[] = "--help";
    char *args[] = {argv[0], argv[argc >= 3 ? 2 : 1], help_flag, NULL};
    if (strcmp(cmd, "help") == 0 && argc >= 3) {
        argc = 3;
        argv = args;
        cmd = argv[1];
        if (strcmp(cmd, "help") == 0) {
            print_help();
            return TS_EXIT_OK;
        }
    }
    if (strcmp(cmd, "train") == 0)
        return ts_cmd_train(argc, argv);
    if (strcmp(cmd, "launch") == 0)
        return ts_cmd_launch(argc, argv);
    if (strcmp(cmd, "eval") == 0)
        return ts_cmd_eval(argc, argv);
    if (strcmp(cmd, "sample") == 0)
        return ts_cmd_sample(argc, argv);
    if (strcmp(cmd, "prepare") == 0)
        return ts_cmd_prepare(argc, argv);
    if (strcmp(cmd, "tokenize") == 0)
        return ts_cmd_tokenize(argc, argv);
    if (strcmp(cmd, "tokenizer") == 0)
        return ts_cmd_tokenizer(argc, argv);
    if (strcmp(cmd, "info") == 0)
        return ts_cmd_info(argc, argv);
    if (strcmp(cmd, "ckpt") == 0)
        return ts_cmd_ckpt(argc, argv);
    if (strcmp(cmd, "cost") == 0)
        return ts_cmd_cost(argc, argv);
    if (strcmp(cmd, "plan") == 0)
        return ts_cmd_plan(argc, argv);
    if (strcmp(cmd, "report") == 0)
        return ts_cmd_report(argc, argv);
    if (strcmp(cmd, "export") == 0)
        return ts_cmd_export(argc, argv);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_help();
        return TS_EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("tessera %s\n", TS_VERSION);
        return TS_EXIT_OK;
    }
    fprintf(stderr, "tessera: unknown command '%s' (see tessera --help)\n", cmd);
    return TS_EXIT_USAGE;
}
