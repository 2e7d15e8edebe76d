/* cmd_sample.c: `tessera sample`, text from a trained model.
 *
 * Encodes the prompt with the run's tokenizer (the one named by the manifest beside the run's
 * training shards, or --tokenizer), feeds it through a KV-cache decoder (trainer/decode.h) and
 * prints each new token's text as soon as it is drawn. Sampling is a pure function of --seed.
 * When the context fills up, the cache restarts from the last half of the context, so any
 * --max-tokens works with a model of short context. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_manifest.h"
#include "data/mixture.h"
#include "data/tokenizer.h"
#include "kernels/fs.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/resume.h"
#include "trainer/decode.h"
#include "trainer/weights.h"

struct sample_args {
    const char *ckpt, *prompt, *tokenizer, *device;
    int max_tokens, top_k, threads;
    float temperature, top_p;
    uint64_t seed;
};

/* The tokenizer named by a data manifest. */
static ts_status manifest_tokenizer(const char *manifest_path, char *out, size_t len) {
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    ts_status st = ts_data_manifest_read(&m, manifest_path);
    if (st == TS_OK)
        st = ts_path_fmt(out, len, "%s", m.tokenizer);
    ts_data_manifest_deinit(&m);
    return st;
}

/* The tokenizer a run trained with: config.json's training data -> manifest.json -> name. */
static ts_status run_tokenizer(const char *ckpt, char *out, size_t len) {
    char path[TS_PATH_MAX];
    TS_CHECK(ts_path_join(path, sizeof(path), ckpt, "config.json"));
    json_object *root = json_object_from_file(path), *train = NULL, *data = NULL;
    if (root == NULL)
        return ts_error(TS_ERR_INVALID_ARG,
                        "cannot read %s to find the run's tokenizer; pass --tokenizer", path);
    ts_status st = TS_OK;
    if (!json_object_object_get_ex(root, "train", &train) ||
        !json_object_object_get_ex(train, "data", &data) ||
        !json_object_is_type(data, json_type_string)) {
        st = ts_error(TS_ERR_FORMAT, "%s names no training data; pass --tokenizer", path);
        goto done;
    }
    char manifest_path[TS_PATH_MAX];
    bool found = false;
    /* a mixture's sources share a vocabulary (train checked it): the first one's manifest */
    struct ts_data_mix mix;
    TS_CHECK_GOTO(ts_data_mix_parse(json_object_get_string(data), &mix), st, done);
    st = ts_data_manifest_find(mix.path[0], manifest_path, sizeof(manifest_path), &found);
    ts_data_mix_deinit(&mix);
    TS_CHECK_GOTO(st, st, done);
    if (!found) {
        st = ts_error(TS_ERR_INVALID_ARG,
                      "the run's shards (%s) have no %s naming their tokenizer; pass --tokenizer",
                      json_object_get_string(data), TS_DATA_MANIFEST_NAME);
        goto done;
    }
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    st = ts_data_manifest_read(&m, manifest_path);
    if (st == TS_OK)
        st = ts_path_fmt(out, len, "%s", m.tokenizer);
    ts_data_manifest_deinit(&m);
done:
    json_object_put(root);
    return st;
}

/* Writes the text of one token; a multi-byte character split across tokens comes out whole
 * once its last byte arrives, since the terminal assembles the bytes. */
static void print_token(const ts_tokenizer_t *tok, int id) {
    int n = 0;
    const uint8_t *bytes = ts_tokenizer_token_bytes(tok, id, &n);
    if (bytes != NULL)
        fwrite(bytes, 1, (size_t)n, stdout);
    fflush(stdout);
}

static int sample(const struct sample_args *a) {
    struct ts_backend *be = NULL;
    ts_gpt_t *gpt = NULL;
    ts_decoder_t *dec = NULL;
    ts_tokenizer_t *tok = NULL;
    ts_tok_encoder_t *enc = NULL;
    struct ts_tok_ids ids = {0};
    float *logits = NULL;
    int *order = NULL;
    int code = TS_EXIT_USAGE;
    ts_status st;
    char tok_spec[TS_PATH_MAX];
    struct ts_gpt_config cfg;
    struct ts_launch_weights w = {0};

    TS_CHECK_GOTO(ts_launch_weights_open(&w, a->ckpt, &cfg), st, fail);
    if (a->tokenizer != NULL)
        TS_CHECK_GOTO(ts_path_fmt(tok_spec, sizeof(tok_spec), "%s", a->tokenizer), st, fail);
    else if (w.ck != NULL && ts_launch_file_exists(ts_ckpt_meta(w.ck)->data_manifest))
        /* a checkpoint names the data manifest it was trained on */
        TS_CHECK_GOTO(
            manifest_tokenizer(ts_ckpt_meta(w.ck)->data_manifest, tok_spec, sizeof(tok_spec)), st,
            fail);
    else
        TS_CHECK_GOTO(run_tokenizer(a->ckpt, tok_spec, sizeof(tok_spec)), st, fail);
    TS_CHECK_GOTO(ts_tokenizer_load(&tok, tok_spec), st, fail);
    if (ts_tokenizer_vocab_size(tok) != cfg.vocab_size) {
        ts_error(TS_ERR_INVALID_ARG, "tokenizer %s has %d tokens but the model has %d", tok_spec,
                 ts_tokenizer_vocab_size(tok), cfg.vocab_size);
        goto fail;
    }
    TS_CHECK_GOTO(ts_tok_encoder_create(&enc, tok), st, fail);
    TS_CHECK_GOTO(ts_tok_encoder_encode(enc, (const uint8_t *)a->prompt, strlen(a->prompt), &ids),
                  st, fail);
    if (ids.n == 0) {
        if (ts_tokenizer_eot(tok) < 0) {
            ts_error(TS_ERR_INVALID_ARG,
                     "--prompt is empty and tokenizer %s has no end-of-text "
                     "token to start from",
                     tok_spec);
            goto fail;
        }
        TS_CHECK_GOTO(ts_tok_ids_push(&ids, ts_tokenizer_eot(tok)), st, fail);
    }
    TS_CHECK_GOTO(ts_launch_backend(&be, a->device, "auto", a->threads), st, fail);
    TS_CHECK_GOTO(ts_gpt_create(&gpt, &cfg, be, 1, 1), st, fail);
    TS_CHECK_GOTO(ts_launch_weights_load(&w, gpt), st, fail);
    TS_CHECK_GOTO(ts_decoder_create(&dec, gpt, cfg.max_seq_len), st, fail);
    logits = malloc(sizeof(float) * (size_t)cfg.vocab_size);
    order = malloc(sizeof(int) * (size_t)cfg.vocab_size);
    if (logits == NULL || order == NULL) {
        ts_error(TS_ERR_OOM, "out of memory");
        goto fail;
    }

    code = TS_EXIT_FAILURE;
    fputs(a->prompt, stdout);
    fflush(stdout);
    const struct ts_sampling sp = {
        .temperature = a->temperature, .top_k = a->top_k, .top_p = a->top_p, .seed = a->seed};
    const int cap = ts_decoder_capacity(dec), eot = ts_tokenizer_eot(tok);
    int64_t fed = 0; /* ids[0..fed) are in the cache */
    for (int made = 0; made < a->max_tokens; made++) {
        if (ids.n - fed + ts_decoder_len(dec) > cap) { /* keep the last half of the context */
            ts_decoder_reset(dec);
            fed = ids.n - (cap + 1) / 2;
        }
        for (; fed < ids.n; fed++)
            TS_CHECK_GOTO(ts_decoder_step(dec, ids.ids[fed], fed + 1 == ids.n ? logits : NULL), st,
                          fail);
        int next = ts_sample_token(logits, cfg.vocab_size, &sp, (uint64_t)made, order);
        if (next == eot)
            break;
        TS_CHECK_GOTO(ts_tok_ids_push(&ids, next), st, fail);
        print_token(tok, next);
    }
    fputc('\n', stdout);
    code = TS_EXIT_OK;
fail:
    if (code != TS_EXIT_OK)
        ts_launch_fail("sample", code);
    free(order);
    free(logits);
    ts_tok_ids_free(&ids);
    ts_tok_encoder_destroy(enc);
    ts_tokenizer_destroy(tok);
    ts_decoder_destroy(dec);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
    ts_launch_weights_close(&w);
    return code;
}

int ts_cmd_sample(int argc, char **argv) {
    struct sample_args a = {.prompt = "",
                            .device = "cpu",
                            .max_tokens = 200,
                            .top_k = 0,
                            .temperature = 1.0f,
                            .top_p = 1.0f,
                            .seed = 1337};
    struct ts_flag flags[] = {
        {"ckpt", TS_FLAG_STRING, &a.ckpt, "PATH", "a run or checkpoint directory (or a model.bin)",
         true},
        {"prompt", TS_FLAG_STRING, &a.prompt, "TEXT", "text to continue (empty: start of text)"},
        {"max-tokens", TS_FLAG_INT, &a.max_tokens, "N", "tokens to generate"},
        {"temperature", TS_FLAG_FLOAT, &a.temperature, "T", "softmax temperature (0: greedy)"},
        {"top-k", TS_FLAG_INT, &a.top_k, "K", "sample among the K most likely (0: all)"},
        {"top-p", TS_FLAG_FLOAT, &a.top_p, "P", "sample within probability mass P (1: all)"},
        {"seed", TS_FLAG_U64, &a.seed, "N", "sampling seed"},
        {"tokenizer", TS_FLAG_STRING, &a.tokenizer, "SPEC",
         "gpt2, bytes or a directory (default: the run's, from its data manifest)"},
        {"device", TS_FLAG_STRING, &a.device, "DEV", "cpu, cuda or auto"},
        {"threads", TS_FLAG_INT, &a.threads, "N", "CPU threads (0: all cores)"},
    };
    const int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    const char *pos[1];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, nflags, argc, argv, 2, pos, 0, &npos, &help) != TS_OK)
        return ts_launch_fail("sample", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help("tessera sample --ckpt PATH [--prompt TEXT] [flags]",
                          "Generates text from a trained model with a KV cache, printing it as it "
                          "goes.\nThe same --seed gives the same text.",
                          flags, nflags);
        return TS_EXIT_OK;
    }
    if (a.max_tokens < 0 || a.top_k < 0 || !(a.temperature >= 0.0f) ||
        !(a.top_p > 0.0f && a.top_p <= 1.0f)) {
        ts_error(TS_ERR_INVALID_ARG, "--max-tokens and --top-k must be >= 0, --temperature >= 0, "
                                     "--top-p in (0, 1]");
        return ts_launch_fail("sample", TS_EXIT_USAGE);
    }
    return sample(&a);
}
