/* cmd_prepare.c: `tessera prepare`, text files to token shards.
 *
 * This version has the byte-level tokenizer only (token = byte, vocabulary 256), which needs no
 * vocabulary files and gives any text a model can learn from; the GPT-2 BPE tokenizer and trained
 * tokenizers come with the data issue. Files are concatenated in the order given, the last
 * --val-fraction of the tokens goes to val.bin and the rest to train_NNN.bin shards. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "trainer/shard.h"

#define MAX_INPUTS 4096

/* Appends a whole file to the growing token buffer. */
static ts_status read_bytes(const char *path, uint16_t **buf, int64_t *n, int64_t *cap) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    unsigned char chunk[1 << 16];
    size_t got;
    ts_status st = TS_OK;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (*n + (int64_t)got > *cap) {
            int64_t ncap = (*cap + (int64_t)got) * 2;
            uint16_t *nb = realloc(*buf, (size_t)ncap * sizeof(uint16_t));
            if (nb == NULL) {
                st = ts_error(TS_ERR_OOM, "out of memory reading %s", path);
                break;
            }
            *buf = nb;
            *cap = ncap;
        }
        for (size_t i = 0; i < got; i++)
            (*buf)[(*n)++] = chunk[i];
    }
    if (st == TS_OK && ferror(f))
        st = ts_error(TS_ERR_IO, "error reading %s", path);
    fclose(f);
    return st;
}

static ts_status prepare(const char *tokenizer, const char **inputs, int ninputs, const char *out,
                         float val_fraction, int64_t shard_tokens) {
    if (strcmp(tokenizer, "bytes") != 0)
        return ts_error(TS_ERR_UNSUPPORTED,
                        "--tokenizer %s: this version has only the byte-level tokenizer "
                        "(--tokenizer bytes, vocabulary 256)",
                        tokenizer);
    uint16_t *tok = NULL;
    int64_t n = 0, cap = 0;
    ts_status st = TS_OK;
    for (int i = 0; i < ninputs && st == TS_OK; i++)
        st = read_bytes(inputs[i], &tok, &n, &cap);
    int64_t nval = (int64_t)((double)n * (double)val_fraction);
    int64_t ntrain = n - nval;
    if (st == TS_OK && (ntrain < 2 || (val_fraction > 0.0f && nval < 2)))
        st = ts_error(TS_ERR_INVALID_ARG,
                      "the input holds %" PRId64 " tokens: too few to split "
                      "into train and val",
                      n);
    if (st == TS_OK)
        st = ts_launch_mkdirs(out);
    char path[4200];
    int shards = 0;
    for (int64_t off = 0; st == TS_OK && off < ntrain; off += shard_tokens, shards++) {
        int64_t len = ntrain - off < shard_tokens ? ntrain - off : shard_tokens;
        snprintf(path, sizeof(path), "%s/train_%03d.bin", out, shards);
        st = ts_shard_write(path, tok + off, len);
    }
    if (st == TS_OK && nval > 0) {
        snprintf(path, sizeof(path), "%s/val.bin", out);
        st = ts_shard_write(path, tok + ntrain, nval);
    }
    if (st == TS_OK)
        printf("prepare: %d file(s), %" PRId64 " tokens -> %s: %d train shard(s) of %" PRId64
               " tokens, val.bin %" PRId64 " tokens; train with --vocab-size 256\n",
               ninputs, n, out, shards, ntrain, nval);
    free(tok);
    return st;
}

int ts_cmd_prepare(int argc, char **argv) {
    const char *tokenizer = "bytes", *input = NULL, *out = NULL;
    float val_fraction = 0.01f;
    int64_t shard_tokens = 100000000;
    struct ts_flag flags[] = {
        {"tokenizer", TS_FLAG_STRING, &tokenizer, "NAME", "bytes (one token per byte)"},
        {"input", TS_FLAG_STRING, &input, "FILE", "first text file; more may follow", true},
        {"out", TS_FLAG_STRING, &out, "DIR", "where train_NNN.bin and val.bin go", true},
        {"val-fraction", TS_FLAG_FLOAT, &val_fraction, "F", "share of tokens held out for val"},
        {"shard-tokens", TS_FLAG_I64, &shard_tokens, "N", "tokens per train shard"},
    };
    int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    static const char *inputs[MAX_INPUTS];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, nflags, argc, argv, 2, inputs + 1, MAX_INPUTS - 1, &npos, &help) !=
        TS_OK)
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help("tessera prepare --tokenizer bytes --input FILE [FILE...] --out DIR",
                          "Turns text files into token shards in llm.c's format.", flags, nflags);
        return TS_EXIT_OK;
    }
    if (!(val_fraction >= 0.0f && val_fraction < 1.0f) || shard_tokens < 2) {
        ts_error(TS_ERR_INVALID_ARG, "--val-fraction must be in [0, 1), --shard-tokens >= 2");
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    }
    inputs[0] = input;
    if (prepare(tokenizer, inputs, npos + 1, out, val_fraction, shard_tokens) != TS_OK)
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    return TS_EXIT_OK;
}
