/* cmd_prepare.c: `tessera prepare`, text to token shards and a data manifest: the flags, then
 * data/prepare.h does the work (streaming, on all cores), then one report. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "data/data_manifest.h"
#include "data/prepare.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"

#define MAX_INPUTS 4096

/* The summary goes to stderr, as every command's progress does (train's included): stdout is
 * kept for what a command produces (ids, text, JSON), so `prepare ... | tool` sees none of it. */
static void report(const struct ts_prepare_config *p, const struct ts_prepare_result *r) {
    TS_LOG_I("prepare: %d input(s), %zu bytes read, %" PRId64 " document(s), %zu bytes of text -> "
             "%" PRId64 " tokens (%s, vocabulary %d; %.2f bytes/token; %.2f s, %.1f MB/s)%s",
             r->num_inputs, r->raw_bytes, r->documents, r->bytes, r->tokens, r->tokenizer,
             r->vocab_size, r->tokens ? (double)r->bytes / (double)r->tokens : 0.0, r->encode_s,
             (double)r->bytes / 1e6 / (r->encode_s > 1e-9 ? r->encode_s : 1e-9),
             r->stopped ? " (stopped at --max-tokens)" : "");
    TS_LOG_I("prepare: %s: %d train shard(s) of up to %" PRId64 " tokens (%" PRId64
             " in all), val.bin %" PRId64 " tokens, %s",
             p->out, r->num_train_shards, p->shard_tokens, r->train_tokens, r->val_tokens,
             TS_DATA_MANIFEST_NAME);
}

/* "100M", "2.5G", "64k", "1000": a count with an optional decimal suffix k, M, G, T. */
static ts_status parse_count(const char *flag, const char *text, int64_t *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    double mul = 1;
    if (end != text && *end != '\0' && end[1] == '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            mul = 1e3;
            break;
        case 'M':
            mul = 1e6;
            break;
        case 'G':
            mul = 1e9;
            break;
        case 'T':
            mul = 1e12;
            break;
        default:
            mul = 0;
        }
        end++;
    }
    v *= mul;
    if (end == text || *end != '\0' || errno == ERANGE || mul == 0 || !(v >= 0) || v > 9e18 ||
        v != (double)(int64_t)v)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--%s expects a whole count like 1000, 64k, 100M or 2G, got '%s'", flag,
                        text);
    *out = (int64_t)v;
    return TS_OK;
}

int ts_cmd_prepare(int argc, char **argv) {
    struct ts_prepare_config p = ts_prepare_defaults();
    static const char *listed[MAX_INPUTS];
    struct ts_flag_list inputs = {listed, 0, MAX_INPUTS};
    const char *shard_tokens = "100M", *max_tokens = "0";
    int max_piece_mb = (int)(TS_PREP_MAX_PIECE_BYTES >> 20);
    bool quiet = false;
    struct ts_flag flags[] = {
        {"tokenizer", TS_FLAG_STRING, &p.tokenizer, "NAME",
         "gpt2, bytes (one token per byte), or a directory from `tessera tokenizer train`"},
        {"input", TS_FLAG_LIST, &inputs, "FILE",
         "a file, a quoted glob or - (standard input); repeat it, or list more after it", true},
        {"out", TS_FLAG_STRING, &p.out, "DIR", "where train_NNN.bin, val.bin, manifest.json go",
         true},
        {"overwrite", TS_FLAG_BOOL, &p.overwrite, NULL,
         "replace a dataset already in --out (its stale shards are removed)"},
        {"jsonl-field", TS_FLAG_STRING, &p.jsonl_field, "NAME",
         "inputs are JSONL: one document per line, the text in this string field"},
        {"val-fraction", TS_FLAG_FLOAT, &p.val_fraction, "F",
         "share of segments held out for val.bin (segment 0, then one in every 1/F)"},
        {"shard-tokens", TS_FLAG_STRING, &shard_tokens, "N", "tokens per train shard (100M, 1G)"},
        {"max-tokens", TS_FLAG_STRING, &max_tokens, "N", "stop after N tokens (0: no limit)"},
        {"max-piece-mb", TS_FLAG_INT, &max_piece_mb, "MB",
         "longest run of text without a place to cut, or JSONL line"},
        {"threads", TS_FLAG_INT, &p.threads, "N", "encoding threads (0: all cores)"},
        {"quiet", TS_FLAG_BOOL, &quiet, NULL, "no progress lines on stderr"},
    };
    int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    static const char *pos[MAX_INPUTS];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, nflags, argc, argv, 2, pos, MAX_INPUTS, &npos, &help) != TS_OK)
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(
            "tessera prepare --tokenizer NAME --input FILE [--input FILE | FILE...] --out DIR",
            "Turns text into token shards in llm.c's format plus DIR/manifest.json, streaming:\n"
            "memory stays a few buffers per thread whatever the corpus size. Inputs are files,\n"
            "quoted globs ('corpus/*.jsonl.zst') or - (standard input), plain or gzip or zstd\n"
            "compressed (recognised by their first bytes). As text each input is one document;\n"
            "with --jsonl-field each line is a JSON object whose field is one document. BPE\n"
            "tokenizers put <|endoftext|> before every document, the bytes tokenizer (no spare\n"
            "id) concatenates them. Documents are cut into segments of ~8 KB where the\n"
            "pre-split allows; val.bin takes segment 0 and one in every 1/--val-fraction.\n"
            "Shards are written under temporary names and renamed; a DIR that holds a dataset\n"
            "needs --overwrite. `tessera train --data DIR` takes the manifest's shards.",
            flags, nflags);
        return TS_EXIT_OK;
    }
    /* positionals after the flags are more inputs: --input a b c */
    for (int i = 0; i < npos; i++) {
        if (inputs.n == MAX_INPUTS) {
            ts_error(TS_ERR_INVALID_ARG, "more than %d inputs: use a quoted glob", MAX_INPUTS);
            return ts_launch_fail("prepare", TS_EXIT_USAGE);
        }
        listed[inputs.n++] = pos[i];
    }
    if (parse_count("shard-tokens", shard_tokens, &p.shard_tokens) != TS_OK ||
        parse_count("max-tokens", max_tokens, &p.max_tokens) != TS_OK)
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    if (!(p.val_fraction >= 0.0f && p.val_fraction < 1.0f) || p.shard_tokens < 2 ||
        p.shard_tokens > INT32_MAX || p.threads < 0 || max_piece_mb < 1) {
        ts_error(TS_ERR_INVALID_ARG, "--val-fraction must be in [0, 1), --shard-tokens in [2, "
                                     "2^31), --threads >= 0, --max-piece-mb >= 1");
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    }
    p.max_piece_bytes = (size_t)max_piece_mb << 20;
    p.progress = !quiet;
    p.inputs = listed;
    p.num_inputs = inputs.n;
    struct ts_prepare_result r;
    if (ts_data_prepare(&p, &r) != TS_OK)
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    report(&p, &r);
    return TS_EXIT_OK;
}
