/* cmd_prepare.c: `tessera prepare`, text files to token shards and a data manifest: the flags,
 * then data/prepare.h does the work, then one report. */
#include <inttypes.h>
#include <stdio.h>

#include "data/data_manifest.h"
#include "data/prepare.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"

#define MAX_INPUTS 4096

static void report(const struct ts_prepare_config *p, const struct ts_prepare_result *r) {
    printf("prepare: %d file(s), %zu bytes -> %" PRId64 " tokens (%s, vocabulary %d; %.2f "
           "bytes/token; encoded in %.2f s, %.1f MB/s)\n"
           "prepare: %s: %d train shard(s) of %" PRId64 " tokens, val.bin %" PRId64 " tokens, %s\n",
           p->num_inputs, r->bytes, r->tokens, r->tokenizer, r->vocab_size,
           r->tokens ? (double)r->bytes / (double)r->tokens : 0.0, r->encode_s,
           (double)r->bytes / 1e6 / (r->encode_s > 1e-9 ? r->encode_s : 1e-9), p->out,
           r->num_train_shards, r->train_tokens, r->val_tokens, TS_DATA_MANIFEST_NAME);
}

int ts_cmd_prepare(int argc, char **argv) {
    struct ts_prepare_config p = ts_prepare_defaults();
    const char *input = NULL;
    struct ts_flag flags[] = {
        {"tokenizer", TS_FLAG_STRING, &p.tokenizer, "NAME",
         "gpt2, bytes (one token per byte), or a directory from `tessera tokenizer train`"},
        {"input", TS_FLAG_STRING, &input, "FILE", "first text file; more may follow", true},
        {"out", TS_FLAG_STRING, &p.out, "DIR", "where train_NNN.bin, val.bin, manifest.json go",
         true},
        {"val-fraction", TS_FLAG_FLOAT, &p.val_fraction, "F", "share of tokens held out for val"},
        {"shard-tokens", TS_FLAG_I64, &p.shard_tokens, "N", "tokens per train shard"},
        {"threads", TS_FLAG_INT, &p.threads, "N", "encoding threads (0: all cores)"},
    };
    int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    static const char *inputs[MAX_INPUTS];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, nflags, argc, argv, 2, inputs + 1, MAX_INPUTS - 1, &npos, &help) !=
        TS_OK)
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(
            "tessera prepare --tokenizer NAME --input FILE [FILE...] --out DIR",
            "Turns text files into token shards in llm.c's format plus DIR/manifest.json.\n"
            "Each file is a document; BPE tokenizers put <|endoftext|> before every document,\n"
            "the bytes tokenizer (no spare id) concatenates them. The last --val-fraction of\n"
            "the tokens becomes val.bin. `tessera train` reads the vocabulary size from the\n"
            "manifest.",
            flags, nflags);
        return TS_EXIT_OK;
    }
    if (!(p.val_fraction >= 0.0f && p.val_fraction < 1.0f) || p.shard_tokens < 2 || p.threads < 0) {
        ts_error(TS_ERR_INVALID_ARG,
                 "--val-fraction must be in [0, 1), --shard-tokens >= 2, --threads >= 0");
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    }
    inputs[0] = input;
    p.inputs = inputs;
    p.num_inputs = npos + 1;
    struct ts_prepare_result r;
    if (ts_data_prepare(&p, &r) != TS_OK)
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    report(&p, &r);
    return TS_EXIT_OK;
}
