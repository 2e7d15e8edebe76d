/* cmd_export.c: `tessera export hf CKPT OUT/`: a checkpoint as a Hugging Face GPT-2 model.
 *
 * Writes OUT/config.json (GPT2Config) and OUT/model.safetensors in the layout transformers'
 * GPT2LMHeadModel loads: every weight under its state-dict name with the `transformer.` prefix,
 * fp32, row-major, little-endian. Tessera already keeps HF's names and its Conv1D orientation
 * (c_attn (C, 3C), c_fc (C, 4C), ...: (in, out)), so only wte is cropped from Vp to V rows; the
 * LM head is tied to wte (`tie_word_embeddings`), so no lm_head.weight is stored, as
 * save_pretrained does. A bf16 run exports its fp32 master weights. CKPT is anything `ckpt`
 * takes (a run directory means its latest checkpoint). safetensors: an 8-byte little-endian
 * header length, a JSON header (name -> dtype, shape, [begin, end) in the data), padded with
 * spaces to 8 bytes, then the data. Files are written to temporary names and renamed. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/ckpt.h"
#include "kernels/fs.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "trainer/state.h"

static const char usage[] = "tessera export hf CKPT OUT";
static const char description[] =
    "Writes OUT/config.json and OUT/model.safetensors: the checkpoint's weights (fp32; a bf16\n"
    "run's fp32 master weights) as transformers' GPT2LMHeadModel loads them\n"
    "(GPT2LMHeadModel.from_pretrained(OUT)). CKPT is a checkpoint directory, a checkpoints/\n"
    "directory or a run directory (its latest checkpoint). OUT is created.";

struct weight {
    char name[160]; /* the HF state-dict name */
    int ndim;
    int64_t shape[TS_MAX_DIMS];
    float *data;
    uint64_t begin, end;
};

static void weights_free(struct weight *w, int n) {
    for (int i = 0; i < n; i++)
        free(w[i].data);
    free(w);
}

/* Every params/ tensor (or its master/ copy), whole, fp32; wte cropped to V rows. */
static ts_status read_weights(ts_ckpt_t *ck, int vocab, struct weight **out, int *count) {
    const int n = ts_ckpt_num_tensors(ck);
    struct weight *w = calloc((size_t)n + 1, sizeof(*w));
    if (w == NULL)
        return ts_error(TS_ERR_OOM, "export: out of memory");
    const bool master = ts_ckpt_has_tensor(ck, "master/wte.weight");
    int k = 0;
    uint64_t at = 0;
    ts_status st = TS_OK;
    for (int i = 0; i < n && st == TS_OK; i++) {
        const char *stored = ts_ckpt_tensor_name(ck, i);
        if (strncmp(stored, "params/", 7) != 0)
            continue;
        struct ts_ckpt_tensor t = {.dtype = TS_DTYPE_F32, .num_boxes = 1};
        snprintf(t.name, sizeof(t.name), "%s%s", master ? "master/" : "params/", stored + 7);
        enum ts_dtype dt;
        st = ts_ckpt_tensor_info(ck, t.name, &dt, &t.ndim, t.shape);
        if (st != TS_OK)
            break;
        int64_t numel = 1;
        for (int d = 0; d < t.ndim; d++) {
            t.boxes[0].extent[d] = t.shape[d];
            numel *= t.shape[d];
        }
        struct weight *x = &w[k++];
        snprintf(x->name, sizeof(x->name), "transformer.%s", stored + 7);
        x->ndim = t.ndim;
        memcpy(x->shape, t.shape, sizeof(t.shape));
        x->data = malloc((size_t)numel * sizeof(float));
        if (x->data == NULL) {
            st = ts_error(TS_ERR_OOM, "export: out of memory for %s", t.name);
            break;
        }
        t.data = x->data;
        st = ts_ckpt_read(ck, &t);
        if (strcmp(stored, "params/wte.weight") == 0 && x->shape[0] > vocab)
            x->shape[0] = vocab; /* (Vp, C) -> (V, C): the padded rows are never used */
        int64_t kept = 1;
        for (int d = 0; d < x->ndim; d++)
            kept *= x->shape[d];
        x->begin = at;
        x->end = at + (uint64_t)kept * sizeof(float);
        at = x->end;
    }
    if (st != TS_OK) {
        weights_free(w, k);
        return st;
    }
    *out = w;
    *count = k;
    return TS_OK;
}

static ts_status write_all(FILE *f, const void *p, size_t n, const char *path) {
    return fwrite(p, 1, n, f) == n ? TS_OK : ts_error(TS_ERR_IO, "cannot write %s", path);
}

static ts_status write_safetensors(const char *path, const struct weight *w, int n) {
    json_object *h = json_object_new_object();
    for (int i = 0; i < n; i++) {
        json_object *e = json_object_new_object(), *shape = json_object_new_array(),
                    *off = json_object_new_array();
        for (int d = 0; d < w[i].ndim; d++)
            json_object_array_add(shape, json_object_new_int64(w[i].shape[d]));
        json_object_array_add(off, json_object_new_int64((int64_t)w[i].begin));
        json_object_array_add(off, json_object_new_int64((int64_t)w[i].end));
        json_object_object_add(e, "dtype", json_object_new_string("F32"));
        json_object_object_add(e, "shape", shape);
        json_object_object_add(e, "data_offsets", off);
        json_object_object_add(h, w[i].name, e);
    }
    json_object *meta = json_object_new_object();
    json_object_object_add(meta, "format", json_object_new_string("pt"));
    json_object_object_add(h, "__metadata__", meta);
    const char *text = json_object_to_json_string_ext(h, JSON_C_TO_STRING_PLAIN);
    const size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    char tmp[TS_PATH_MAX];
    ts_status st = ts_path_fmt(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid());
    FILE *f = st == TS_OK ? fopen(tmp, "wb") : NULL;
    if (st == TS_OK && f == NULL)
        st = ts_error(TS_ERR_IO, "cannot create %s", tmp);
    if (st == TS_OK) {
        unsigned char hl[8];
        for (int b = 0; b < 8; b++)
            hl[b] = (unsigned char)((uint64_t)padded >> (8 * b)); /* little-endian u64 */
        st = write_all(f, hl, 8, tmp);
        if (st == TS_OK)
            st = write_all(f, text, len, tmp);
        for (size_t p = len; st == TS_OK && p < padded; p++)
            st = write_all(f, " ", 1, tmp);
        for (int i = 0; st == TS_OK && i < n; i++) /* the host is little-endian (x86, arm64) */
            st = write_all(f, w[i].data, (size_t)(w[i].end - w[i].begin), tmp);
    }
    if (f != NULL && fclose(f) != 0 && st == TS_OK)
        st = ts_error(TS_ERR_IO, "cannot write %s", tmp);
    if (st == TS_OK && rename(tmp, path) != 0)
        st = ts_error(TS_ERR_IO, "cannot rename %s to %s", tmp, path);
    if (st != TS_OK)
        (void)unlink(tmp);
    json_object_put(h);
    return st;
}

static ts_status write_config(const char *path, const struct ts_gpt_config *c) {
    json_object *o = json_object_new_object();
    json_object *arch = json_object_new_array();
    json_object_array_add(arch, json_object_new_string("GPT2LMHeadModel"));
    json_object_object_add(o, "architectures", arch);
    json_object_object_add(o, "model_type", json_object_new_string("gpt2"));
    json_object_object_add(o, "vocab_size", json_object_new_int(c->vocab_size));
    json_object_object_add(o, "n_positions", json_object_new_int(c->max_seq_len));
    json_object_object_add(o, "n_ctx", json_object_new_int(c->max_seq_len));
    json_object_object_add(o, "n_embd", json_object_new_int(c->channels));
    json_object_object_add(o, "n_layer", json_object_new_int(c->num_layers));
    json_object_object_add(o, "n_head", json_object_new_int(c->num_heads));
    json_object_object_add(o, "n_inner", NULL);
    /* the model's GELU is the tanh approximation; layernorm eps 1e-5; no dropout */
    json_object_object_add(o, "activation_function", json_object_new_string("gelu_new"));
    json_object_object_add(o, "layer_norm_epsilon", json_object_new_double(1e-5));
    json_object_object_add(o, "resid_pdrop", json_object_new_double(0.0));
    json_object_object_add(o, "embd_pdrop", json_object_new_double(0.0));
    json_object_object_add(o, "attn_pdrop", json_object_new_double(0.0));
    json_object_object_add(o, "initializer_range", json_object_new_double(0.02));
    /* Tessera's tokenizers put <|endoftext|> last */
    json_object_object_add(o, "bos_token_id", json_object_new_int(c->vocab_size - 1));
    json_object_object_add(o, "eos_token_id", json_object_new_int(c->vocab_size - 1));
    json_object_object_add(o, "tie_word_embeddings", json_object_new_boolean(1));
    json_object_object_add(o, "torch_dtype", json_object_new_string("float32"));
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
    FILE *f = fopen(path, "w");
    ts_status st = f == NULL ? ts_error(TS_ERR_IO, "cannot create %s", path) : TS_OK;
    if (st == TS_OK && (fputs(text, f) < 0 || fputc('\n', f) == EOF))
        st = ts_error(TS_ERR_IO, "cannot write %s", path);
    if (f != NULL && fclose(f) != 0 && st == TS_OK)
        st = ts_error(TS_ERR_IO, "cannot write %s", path);
    json_object_put(o);
    return st;
}

static ts_status export_hf(const char *ckpt, const char *out) {
    ts_ckpt_t *ck = NULL;
    struct weight *w = NULL;
    int n = 0;
    struct ts_gpt_config cfg;
    char path[TS_PATH_MAX];
    ts_status st;
    TS_CHECK_GOTO(ts_ckpt_open(&ck, ckpt), st, exit);
    TS_CHECK_GOTO(ts_gpt_config_from_checkpoint(ck, &cfg), st, exit);
    TS_CHECK_GOTO(read_weights(ck, cfg.vocab_size, &w, &n), st, exit);
    TS_CHECK_GOTO(ts_fs_mkdirs(out), st, exit);
    TS_CHECK_GOTO(ts_path_join(path, sizeof(path), out, "model.safetensors"), st, exit);
    TS_CHECK_GOTO(write_safetensors(path, w, n), st, exit);
    TS_CHECK_GOTO(ts_path_join(path, sizeof(path), out, "config.json"), st, exit);
    TS_CHECK_GOTO(write_config(path, &cfg), st, exit);
    TS_LOG_I("exported %s (step %" PRId64 ", %d tensors, %d layers, vocab %d) to %s",
             ts_ckpt_path(ck), ts_ckpt_meta(ck)->step, n, cfg.num_layers, cfg.vocab_size, out);
exit:
    if (w != NULL)
        weights_free(w, n);
    ts_ckpt_close(ck);
    return st;
}

int ts_cmd_export(int argc, char **argv) {
    const char *pos[3];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(NULL, 0, argc, argv, 2, pos, 3, &npos, &help) != TS_OK)
        return ts_launch_fail("export", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(usage, description, NULL, 0);
        return TS_EXIT_OK;
    }
    if (npos != 3 || strcmp(pos[0], "hf") != 0) {
        fprintf(stderr, "tessera export: usage: %s\n", usage);
        return TS_EXIT_USAGE;
    }
    const bool exists = ts_ckpt_exists(pos[1]);
    if (export_hf(pos[1], pos[2]) != TS_OK)
        return ts_launch_fail("export", exists ? TS_EXIT_FAILURE : TS_EXIT_USAGE);
    return TS_EXIT_OK;
}
