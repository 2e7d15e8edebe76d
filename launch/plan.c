/* plan.c: the planner's model (plan.h; the formulas are written out in docs/planner.md).
 *
 * Memory mirrors what Tessera allocates, buffer by buffer: gpt.c's flat parameters (model dtype)
 * and gradients (f32), its activation arena region by region (plan_arena's list and alignment),
 * optim.c's m, v and fp32 master weights over the rank's ZeRO-1 slice, train.c's loss rows. The
 * test tests/launch/test_plan.c holds these equal to the sizes of a real model's buffers, so a
 * change there that the planner misses fails. Time is a roofline-style sum per device; the
 * gradient reduction is bucketed as train.c does and partly hidden under the last backward. */
#include "launch/plan.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/peak.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define DEFAULT_BUCKET_BYTES ((int64_t)25 * 1024 * 1024) /* train.c: 25 MB of f32 gradients */

/* ---- models ---- */

static const struct {
    const char *name;
    int layers, heads, channels;
} gpt2_sizes[] = {
    {"124m", 12, 12, 768},
    {"350m", 24, 16, 1024},
    {"774m", 36, 20, 1280},
    {"1.5b", 48, 25, 1600},
};

static int round_up(int x, int to) { return (x + to - 1) / to * to; }

ts_status ts_plan_model_parse(const char *spec, struct ts_plan_model *out) {
    memset(out, 0, sizeof(*out));
    if (spec == NULL || spec[0] == '\0')
        return ts_error(TS_ERR_INVALID_ARG, "--model is required: 124m, 350m, 774m, 1.5b or "
                                            "L,NH,C[,V]");
    for (size_t i = 0; i < sizeof(gpt2_sizes) / sizeof(gpt2_sizes[0]); i++) {
        char lower[16];
        size_t k = 0;
        for (; spec[k] && k + 1 < sizeof(lower); k++)
            lower[k] = (char)tolower((unsigned char)spec[k]);
        lower[k] = '\0';
        if (strcmp(lower, gpt2_sizes[i].name) == 0) {
            snprintf(out->name, sizeof(out->name), "gpt2-%s", gpt2_sizes[i].name);
            out->layers = gpt2_sizes[i].layers;
            out->heads = gpt2_sizes[i].heads;
            out->channels = gpt2_sizes[i].channels;
            out->vocab = 50257;
            out->padded_vocab = round_up(out->vocab, 128);
            return TS_OK;
        }
    }
    long v[4] = {0, 0, 0, 50257};
    int count = 0;
    const char *p = spec;
    while (count < 4) {
        char *end = NULL;
        if (!isdigit((unsigned char)*p))
            break;
        v[count++] = strtol(p, &end, 10);
        p = end;
        if (*p != ',')
            break;
        p++;
    }
    if (*p != '\0' || count < 3)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--model '%s' is not a model: give 124m, 350m, 774m, 1.5b or L,NH,C[,V] "
                        "(e.g. 12,12,768)",
                        spec);
    if (v[0] < 1 || v[0] > 1024 || v[1] < 1 || v[1] > 1024 || v[2] < 1 || v[2] > 65536 ||
        v[3] < 2 || v[3] > 65536)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--model '%s': L must be in [1, 1024], NH in [1, 1024], C in [1, 65536], V "
                        "in [2, 65536]",
                        spec);
    if (v[2] % v[1] != 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--model '%s': channels (%ld) must be a multiple of heads (%ld)", spec,
                        v[2], v[1]);
    snprintf(out->name, sizeof(out->name), "L%ld NH%ld C%ld", v[0], v[1], v[2]);
    out->layers = (int)v[0];
    out->heads = (int)v[1];
    out->channels = (int)v[2];
    out->vocab = (int)v[3];
    out->padded_vocab = round_up(out->vocab, 128);
    return TS_OK;
}

/* ---- devices ---- */

/* Memory bandwidth, memory and links: NVIDIA's datasheets (H100 SXM5 80GB: 3.35 TB/s HBM3,
 * NVLink 4 900 GB/s both directions; H200: 4.8 TB/s, 141 GB; A100 80GB SXM: 2.039 TB/s, NVLink 3
 * 600 GB/s); across nodes one 400 Gb/s (NDR) InfiniBand port per H100/H200, 200 Gb/s (HDR) per
 * A100, as DGX systems have. Latencies are typical NCCL per-hop figures, not measured here. */
static const struct {
    const char *name, *peak_key;
    double mem_bw, memory, intra_bw, inter_bw;
} gpu_table[] = {
    {"h100", "H100 SXM", 3.35e12, 80 * GIB, 450e9, 50e9},
    {"h200", "H200", 4.8e12, 141e9, 450e9, 50e9},
    {"a100", "A100 80GB", 2.039e12, 80 * GIB, 300e9, 25e9},
};

ts_status ts_plan_device_gpu(const char *name, struct ts_plan_device *out) {
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(gpu_table) / sizeof(gpu_table[0]); i++) {
        if (strcmp(name, gpu_table[i].name) != 0)
            continue;
        struct ts_peak peak;
        ts_peak_gpu(gpu_table[i].peak_key, true, &peak);
        snprintf(out->name, sizeof(out->name), "%s", name);
        out->bf16 = true;
        out->flash = true;
        out->peak_flops = peak.flops;
        out->mem_bw = gpu_table[i].mem_bw;
        out->memory_bytes = gpu_table[i].memory;
        out->reserve_bytes = 2 * GIB;
        out->intra_bw = gpu_table[i].intra_bw;
        out->inter_bw = gpu_table[i].inter_bw;
        out->intra_lat = 5e-6;
        out->inter_lat = 10e-6;
        snprintf(out->source, sizeof(out->source), "%s", peak.source);
        return TS_OK;
    }
    return ts_error(TS_ERR_INVALID_ARG, "--device '%s' is not known: h100, h200, a100 or cpu",
                    name);
}

void ts_plan_device_cpu(double host_peak_flops, double host_memory_bytes, double host_mem_bw,
                        int ranks_per_node, const char *source, struct ts_plan_device *out) {
    memset(out, 0, sizeof(*out));
    const double r = ranks_per_node > 0 ? ranks_per_node : 1;
    snprintf(out->name, sizeof(out->name), "cpu");
    out->cpu = true;
    out->peak_flops = host_peak_flops / r;
    out->mem_bw = host_mem_bw / r;
    out->memory_bytes = host_memory_bytes / r;
    /* Open MPI's shared-memory transport within a host; 10 GbE between hosts. */
    out->intra_bw = 5e9;
    out->inter_bw = 1.25e9;
    out->intra_lat = 5e-6;
    out->inter_lat = 30e-6;
    snprintf(out->source, sizeof(out->source), "%s", source ? source : "");
}

struct ts_plan_eff ts_plan_eff_defaults(const struct ts_plan_device *dev) {
    if (dev->cpu)
        return (struct ts_plan_eff){
            .matmul = 0.5, .memory = 0.5, .overlap = 0.5, .overhead_s = 0.2e-3, .latency = 1};
    return (struct ts_plan_eff){
        .matmul = 0.7, .memory = 0.8, .overlap = 0.8, .overhead_s = 0.5e-3, .latency = 1};
}

/* ---- formulas ---- */

double ts_plan_ring_all_reduce_s(int n, double bytes, double bw, double lat) {
    if (n <= 1)
        return 0;
    return 2.0 * (n - 1) / n * bytes / bw + 2.0 * (n - 1) * lat;
}

double ts_plan_ring_half_s(int n, double bytes, double bw, double lat) {
    if (n <= 1)
        return 0;
    return (double)(n - 1) / n * bytes / bw + (double)(n - 1) * lat;
}

double ts_plan_tree_all_reduce_s(int n, double bytes, double bw, double lat) {
    if (n <= 1)
        return 0;
    return 2.0 * bytes / bw + 2.0 * ceil(log2((double)n)) * lat;
}

/* A collective's time in two parts: bandwidth and latency (so calibration can scale each). */
struct cost {
    double bw, lat;
};

/* The faster of ring and tree all-reduce, as NCCL picks per message size. */
static struct cost all_reduce(int n, double bytes, double bw, double lat) {
    const double ring = ts_plan_ring_all_reduce_s(n, bytes, bw, lat);
    const double tree = ts_plan_tree_all_reduce_s(n, bytes, bw, lat);
    if (n <= 1)
        return (struct cost){0, 0};
    if (ring <= tree)
        return (struct cost){ring - 2.0 * (n - 1) * lat, 2.0 * (n - 1) * lat};
    return (struct cost){2.0 * bytes / bw, 2.0 * ceil(log2((double)n)) * lat};
}

static struct cost ring_half(int n, double bytes, double bw, double lat) {
    if (n <= 1)
        return (struct cost){0, 0};
    return (struct cost){(double)(n - 1) / n * bytes / bw, (double)(n - 1) * lat};
}

/* The vocabulary padded for tp ranks: to a multiple of lcm(128, tp), as gpt.c pads it
 * (ts_gpt_padded_vocab; the same as at tp 1 for every power of two up to 128). */
static int64_t padded_vocab_at(const struct ts_plan_model *m, int tp) {
    int64_t a = 128, b = tp < 1 ? 1 : tp;
    while (b != 0) {
        const int64_t r = a % b;
        a = b;
        b = r;
    }
    const int64_t q = 128 * (int64_t)(tp < 1 ? 1 : tp) / a;
    return (m->vocab + q - 1) / q * q;
}

int64_t ts_plan_params_per_rank(const struct ts_plan_model *m, int seq_len, int tp) {
    const int64_t C = m->channels, L = m->layers, t = tp > 0 ? tp : 1;
    const int64_t layer = 2 * C                /* ln_1 */
                          + C * 3 * C / t      /* c_attn.weight (columns split) */
                          + 3 * C / t          /* c_attn.bias */
                          + C * C / t + C      /* attn.c_proj (rows split), its bias whole */
                          + 2 * C              /* ln_2 */
                          + C * 4 * C / t      /* c_fc.weight */
                          + 4 * C / t          /* c_fc.bias */
                          + 4 * C * C / t + C; /* mlp.c_proj (rows split), its bias whole */
    const int64_t wpe = m->max_seq_len > 0 ? m->max_seq_len : seq_len;
    return padded_vocab_at(m, (int)t) / t * C /* wte: rows split over the vocabulary */
           + wpe * C + L * layer + 2 * C;
}

double ts_plan_flops_per_token(const struct ts_plan_model *m, int seq_len) {
    const double wpe = m->max_seq_len > 0 ? m->max_seq_len : seq_len;
    const double n = (double)ts_plan_params_per_rank(m, seq_len, 1) - wpe * m->channels -
                     (double)(m->padded_vocab - m->vocab) * m->channels;
    return ts_peak_flops_per_token(n, m->layers, m->channels, seq_len);
}

/* gpt.c's activation arena for a (B,T) micro-batch: each region's bytes rounded up to the
 * alignment (4 bytes in f32 models, 256 with a 2-byte dtype), per-layer regions L times. */
static double arena_bytes(const struct ts_plan_model *m, const struct ts_plan_device *dev, int tp,
                          int64_t B, int64_t T) {
    const int64_t C = m->channels, Cl = C / tp, NHl = m->heads / tp, BT = B * T;
    const int64_t L = m->layers, s = dev->bf16 ? 2 : 4, align = dev->bf16 ? 256 : 4;
    const int64_t Vl = padded_vocab_at(m, tp) / tp, xstats = tp > 1 ? BT : 0;
    const int64_t att = dev->flash ? B * NHl * T : B * NHl * T * T;
    const int64_t att_size = dev->flash ? 4 : s;
    const struct {
        int64_t numel, size, copies;
    } regions[] = {
        {BT * C, s, 1},      /* encoded */
        {BT * C, s, L},      /* ln1 */
        {BT, 4, L},          /* ln1 mean */
        {BT, 4, L},          /* ln1 rstd */
        {BT * 3 * Cl, s, L}, /* qkv */
        {BT * Cl, s, L},     /* atty */
        {att, att_size, L},  /* att or lse */
        {BT * C, s, L},      /* res2 */
        {BT * C, s, L},      /* ln2 */
        {BT, 4, L},          /* ln2 mean */
        {BT, 4, L},          /* ln2 rstd */
        {BT * 4 * Cl, s, L}, /* fch */
        {BT * 4 * Cl, s, L}, /* fch_gelu */
        {BT * C, s, L},      /* res3 */
        {BT * C, s, 1},      /* proj */
        {BT * C, s, 1},      /* lnf */
        {BT, 4, 1},          /* lnf mean */
        {BT, 4, 1},          /* lnf rstd */
        {BT * Vl, s, 1},     /* logits: this rank's vocabulary slice */
        {xstats, 4, 1},      /* each row's max over the vocabulary (tp > 1) */
        {2 * xstats, 4, 1},  /* sum of exponentials, target logit (tp > 1) */
        {BT, 4, 1},          /* losses */
        {BT * C, s, 1},      /* dres */
        {BT * C, s, 1},      /* dln */
        {BT * Cl, s, 1},     /* datty */
        {BT * 3 * Cl, s, 1}, /* dqkv */
        {att, att_size, 1},  /* datt */
        {BT * 4 * Cl, s, 1}, /* dfch */
    };
    double total = 0;
    for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++) {
        const double bytes =
            ceil((double)(regions[i].numel * regions[i].size) / (double)align) * (double)align;
        total += bytes * (double)regions[i].copies;
    }
    return ceil(total / 4) * 4; /* allocated as f32 words */
}

/* The largest ZeRO-1 slice: rank r owns [r n/dp, (r+1) n/dp). */
static double shard_of(int64_t n, int dp, int zero) {
    if (zero != 1 || dp <= 1)
        return (double)n;
    int64_t most = 0;
    for (int r = 0; r < dp && r < 4096; r++) {
        const int64_t len = (r + 1) * n / dp - r * n / dp;
        most = len > most ? len : most;
    }
    return (double)most;
}

void ts_plan_memory_of(const struct ts_plan_model *m, const struct ts_plan_device *dev, int seq_len,
                       const struct ts_plan_layout *lay, struct ts_plan_memory *out) {
    const int64_t n = ts_plan_params_per_rank(m, seq_len, lay->tp);
    const double shard = shard_of(n, lay->dp, lay->zero);
    const double s = dev->bf16 ? 2 : 4, BT = (double)lay->micro_batch * seq_len;
    out->params = (double)n * s;
    out->grads = (double)n * 4;
    out->optim = shard * 4 * (dev->bf16 ? 3 : 2) + 4; /* m, v (+ master), the norm's float */
    out->activations = arena_bytes(m, dev, lay->tp, lay->micro_batch, seq_len);
    /* token ids and targets (i32) on the device, the trainer's (grad_accum, B*T) loss rows;
     * on a CPU rank the host copies are the same memory too */
    out->other = BT * 8 + lay->grad_accum * BT * 4;
    if (dev->cpu)
        out->other += BT * 4 + lay->grad_accum * BT * 4 + BT * 8;
    out->total = out->params + out->grads + out->optim + out->activations + out->other;
}

/* ---- time ---- */

/* The linear pieces of a step (calibration fits their coefficients). */
struct pieces {
    double xc;    /* matmul FLOPs / peak */
    double xm;    /* bytes / mem_bw */
    double accum; /* micro-steps per update */
    struct cost dp, tp, gather;
    double sync_lat; /* the step's small world collectives, latency only */
};

static void step_pieces(const struct ts_plan_model *m, const struct ts_plan_cluster *cl,
                        const struct ts_plan_job *job, const struct ts_plan_layout *lay,
                        struct pieces *p) {
    const struct ts_plan_device *d = &cl->dev;
    const double C = m->channels, L = m->layers, T = job->seq_len;
    const double Vl = (double)padded_vocab_at(m, lay->tp) / lay->tp; /* this rank's slice */
    const double NH = m->heads, tp = lay->tp, A = lay->grad_accum;
    const double s = d->bf16 ? 2 : 4;
    const double tokens = (double)lay->micro_batch * T * A; /* this device's, per update */
    const int64_t n = ts_plan_params_per_rank(m, job->seq_len, lay->tp);
    const double shard = shard_of(n, lay->dp, lay->zero);

    /* matmuls as Tessera runs them: the blocks and the tied classifier (Vp/tp x C, vocabulary
     * parallel) split over tp, attention's QK^T and AV over the whole T */
    const double flops_tok = 6.0 * (L * 12.0 * C * C / tp) + 6.0 * C * Vl + 12.0 * L * C * T / tp;
    p->xc = tokens * flops_tok / d->peak_flops;
    /* elementwise traffic per token (layernorms, residual adds, GELU, softmax, cross-entropy;
     * backward twice forward) and per update (zero grads, accumulate, norm, AdamW) */
    const double att = d->flash ? 0 : 9.0 * NH * T / tp;
    const double elems_tok = L * (30.0 * C + 24.0 * C / tp + att) + 10.0 * C + 3.0 * Vl;
    const double adam = d->bf16 ? 30.0 : 28.0;
    const double bytes = tokens * elems_tok * s + (double)n * 4 * (1 + 2 * A) + shard * (4 + adam);
    p->xm = bytes / d->mem_bw;
    p->accum = A;

    /* the dp group spans nodes when the world does not fit in one */
    const bool dp_intra = (int64_t)lay->dp * lay->tp <= cl->gpus_per_node;
    const double bw = dp_intra ? d->intra_bw : d->inter_bw;
    const double lat = dp_intra ? d->intra_lat : d->inter_lat;
    const double grad_bytes = (double)n * 4;
    const double bucket =
        (double)(job->bucket_bytes > 0 ? job->bucket_bytes : DEFAULT_BUCKET_BYTES);
    const double nb = ceil(grad_bytes / bucket);
    const double per = grad_bytes / nb;
    const struct cost one =
        lay->zero == 1 ? ring_half(lay->dp, per, bw, lat) : all_reduce(lay->dp, per, bw, lat);
    p->dp = (struct cost){nb * one.bw, nb * one.lat};
    p->gather = lay->zero == 1 ? ring_half(lay->dp, (double)n * s, bw, lat) : (struct cost){0, 0};
    /* Megatron: two all-reduces of (B,T,C) in each layer's forward, two in its backward, plus
     * the vocabulary-parallel embedding's and classifier input's (4L + 2 in all), and the
     * cross-entropy's statistics: a max, then two floats per row (ts_gpt_tp_traffic) */
    const double act_bytes = (double)lay->micro_batch * T * C * s;
    const double row_bytes = (double)lay->micro_batch * T * 4;
    const struct cost t1 = all_reduce(lay->tp, act_bytes, d->intra_bw, d->intra_lat);
    const struct cost tx1 = all_reduce(lay->tp, row_bytes, d->intra_bw, d->intra_lat);
    const struct cost tx2 = all_reduce(lay->tp, 2 * row_bytes, d->intra_bw, d->intra_lat);
    const double ars = 4.0 * L + 2.0;
    p->tp =
        (struct cost){A * (ars * t1.bw + tx1.bw + tx2.bw), A * (ars * t1.lat + tx1.lat + tx2.lat)};
    /* per step over the world: the loss sum, the norm's sum (ZeRO-1 or tp) and the
     * coordinator's decision, each a few bytes (a tree's latency) */
    const int world = lay->dp * lay->tp;
    const bool world_intra = world <= cl->gpus_per_node;
    p->sync_lat = world > 1 ? 3.0 * 2.0 * ceil(log2((double)world)) *
                                  (world_intra ? d->intra_lat : d->inter_lat)
                            : 0;
}

static void fill_time(const struct pieces *p, const struct ts_plan_eff *eff,
                      struct ts_plan_time *t) {
    t->compute = p->xc / eff->matmul;
    t->memory = p->xm / eff->memory;
    const double lam = eff->latency;
    t->dp_comm = p->dp.bw + lam * p->dp.lat;
    /* the buckets' transfers hide in the last micro-step's backward (2/3 of its work); their
     * latencies (one post per bucket) do not */
    const double hide = (2.0 / 3.0) * (t->compute + t->memory) / p->accum;
    const double not_hidden = (1.0 - eff->overlap) * p->dp.bw;
    const double beyond = p->dp.bw - hide;
    t->dp_exposed = (not_hidden > beyond ? not_hidden : beyond) + lam * p->dp.lat;
    t->tp_comm = p->tp.bw + lam * p->tp.lat;
    t->gather = p->gather.bw + lam * p->gather.lat;
    t->sync = lam * p->sync_lat;
    t->overhead = eff->overhead_s;
    t->step =
        t->compute + t->memory + t->dp_exposed + t->tp_comm + t->gather + t->sync + t->overhead;
}

static bool refuse(struct ts_plan_row *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool refuse(struct ts_plan_row *r, const char *fmt, ...) {
    if (!r->fits)
        return false; /* the first reason stands */
    r->fits = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    return true;
}

void ts_plan_predict(const struct ts_plan_model *m, const struct ts_plan_cluster *cl,
                     const struct ts_plan_eff *eff, const struct ts_plan_job *job,
                     const struct ts_plan_layout *lay, struct ts_plan_row *out) {
    memset(out, 0, sizeof(*out));
    out->layout = *lay;
    out->fits = true;
    const struct ts_plan_device *d = &cl->dev;
    if (lay->dp < 1 || lay->tp < 1 || lay->micro_batch < 1 || lay->grad_accum < 1 ||
        (lay->zero != 0 && lay->zero != 1)) {
        refuse(out, "not a layout: dp, tp, micro-batch and grad-accum must be >= 1, ZeRO 0 or 1");
        out->usd_per_1m_tokens = out->total_s = out->total_usd = NAN;
        return;
    }
    if ((int64_t)lay->dp * lay->tp != cl->gpus)
        refuse(out, "dp %d x tp %d is not the %d devices", lay->dp, lay->tp, cl->gpus);
    if ((int64_t)lay->dp * lay->micro_batch * lay->grad_accum != job->global_batch)
        refuse(out, "dp %d x micro-batch %d x grad-accum %d is not the global batch %lld", lay->dp,
               lay->micro_batch, lay->grad_accum, (long long)job->global_batch);
    if (lay->tp > 1 && !d->cpu)
        refuse(out, "tp %d: Tessera's tensor parallelism runs on the CPU backend only", lay->tp);
    if (m->heads % lay->tp != 0)
        refuse(out, "tp %d does not divide the %d heads", lay->tp, m->heads);
    if (cl->gpus_per_node % lay->tp != 0)
        refuse(out, "tp %d does not divide the %d devices of a node (tp groups stay in a node)",
               lay->tp, cl->gpus_per_node);
    /* the memory formulas need an exact split */
    struct ts_plan_layout safe = *lay;
    if (m->heads % lay->tp != 0 || m->channels % lay->tp != 0)
        safe.tp = 1;
    ts_plan_memory_of(m, d, job->seq_len, &safe, &out->mem);
    const double avail = d->memory_bytes - d->reserve_bytes;
    if (out->mem.total > avail)
        refuse(out,
               "needs %.2f GiB per device (params %.2f, grads %.2f, optimizer %.2f, activations "
               "%.2f) of %.2f GiB",
               out->mem.total / GIB, out->mem.params / GIB, out->mem.grads / GIB,
               out->mem.optim / GIB, out->mem.activations / GIB, avail / GIB);

    struct pieces p;
    step_pieces(m, cl, job, &safe, &p);
    fill_time(&p, eff, &out->time);
    const double tokens_step = (double)job->global_batch * job->seq_len;
    out->tokens_per_s = tokens_step / out->time.step;
    out->mfu = ts_plan_flops_per_token(m, job->seq_len) * out->tokens_per_s /
               ((double)cl->gpus * d->peak_flops);
    out->device_s_per_token = (double)cl->gpus / out->tokens_per_s;
    const bool priced = job->usd_per_gpu_hour >= 0;
    out->usd_per_1m_tokens =
        priced ? job->usd_per_gpu_hour / 3600.0 * out->device_s_per_token * 1e6 : NAN;
    out->total_s = job->tokens > 0 ? job->tokens / out->tokens_per_s : NAN;
    out->total_usd =
        priced && job->tokens > 0 ? job->usd_per_gpu_hour * cl->gpus * out->total_s / 3600.0 : NAN;
}

/* ---- enumeration ---- */

static int better(const void *a, const void *b) {
    const struct ts_plan_row *x = a, *y = b;
    if (x->fits != y->fits)
        return x->fits ? -1 : 1;
    if (x->device_s_per_token != y->device_s_per_token)
        return x->device_s_per_token < y->device_s_per_token ? -1 : 1;
    if (x->mem.total != y->mem.total)
        return x->mem.total < y->mem.total ? -1 : 1;
    return 0;
}

ts_status ts_plan_enumerate(const struct ts_plan_model *m, const struct ts_plan_cluster *cl,
                            const struct ts_plan_eff *eff, const struct ts_plan_job *job,
                            struct ts_plan_row *rows, int max, int *n) {
    *n = 0;
    if (cl->gpus < 1 || cl->gpus_per_node < 1 || job->global_batch < 1 || job->seq_len < 1)
        return ts_error(TS_ERR_INVALID_ARG, "plan: gpus, gpus per node, the global batch and the "
                                            "sequence length must be >= 1");
    int count = 0;
    for (int tp = 1; tp <= cl->gpus; tp++) {
        if (cl->gpus % tp != 0)
            continue;
        const int dp = cl->gpus / tp;
        if (job->global_batch % dp != 0) {
            if (count < max) {
                struct ts_plan_layout lay = {dp, tp, 0, 1, 1};
                ts_plan_predict(m, cl, eff, job, &lay, &rows[count]);
                snprintf(rows[count].reason, sizeof(rows[count].reason),
                         "the global batch %lld is not a multiple of dp %d",
                         (long long)job->global_batch, dp);
                rows[count].fits = false;
            }
            count++;
            continue;
        }
        const int64_t per = job->global_batch / dp;
        for (int zero = 0; zero <= (dp > 1 ? 1 : 0); zero++)
            for (int64_t b = 1; b <= per && b <= (1 << 20); b++) {
                if (per % b != 0)
                    continue;
                if (count < max) {
                    const struct ts_plan_layout lay = {dp, tp, zero, (int)b, (int)(per / b)};
                    ts_plan_predict(m, cl, eff, job, &lay, &rows[count]);
                }
                count++;
            }
    }
    *n = count;
    if (rows != NULL && max > 0 && count > 0)
        qsort(rows, (size_t)(count < max ? count : max), sizeof(rows[0]), better);
    return TS_OK;
}

static void layout_name(const struct ts_plan_layout *l, char *out, size_t len) {
    snprintf(out, len, "dp %d x tp %d, ZeRO %d, micro-batch %d x accum %d", l->dp, l->tp, l->zero,
             l->micro_batch, l->grad_accum);
}

void ts_plan_explain(const struct ts_plan_row *rows, int n, char *out, size_t len) {
    if (n < 1 || !rows[0].fits) {
        snprintf(out, len, "no layout fits: %s", n > 0 ? rows[0].reason : "no layouts");
        return;
    }
    const struct ts_plan_row *w = &rows[0];
    const struct ts_plan_time *t = &w->time;
    char name[128];
    layout_name(&w->layout, name, sizeof(name));
    int k =
        snprintf(out, len,
                 "%s wins: a %.3f ms step of compute %.0f%%, memory-bound %.0f%%, exposed dp "
                 "comm %.0f%%, tp comm %.0f%%, ZeRO gather %.0f%%, world syncs %.0f%%, "
                 "overhead %.0f%%",
                 name, t->step * 1e3, 100 * t->compute / t->step, 100 * t->memory / t->step,
                 100 * t->dp_exposed / t->step, 100 * t->tp_comm / t->step,
                 100 * t->gather / t->step, 100 * t->sync / t->step, 100 * t->overhead / t->step);
    if (n < 2 || !rows[1].fits || k < 0 || (size_t)k >= len) {
        if (k >= 0 && (size_t)k < len)
            snprintf(out + k, len - (size_t)k, "; it is the only layout that fits.");
        return;
    }
    /* the next best layout, and the part of its step that is longest beside the winner's (every
     * row trains the same tokens per step on the same devices, so steps compare as costs) */
    const struct ts_plan_row *r = &rows[1];
    const struct {
        const char *what;
        double a, b;
    } parts[] = {
        {"compute", w->time.compute, r->time.compute},
        {"memory-bound kernels", w->time.memory, r->time.memory},
        {"exposed gradient reduction", w->time.dp_exposed, r->time.dp_exposed},
        {"tensor-parallel all-reduces", w->time.tp_comm, r->time.tp_comm},
        {"ZeRO-1 all-gather", w->time.gather, r->time.gather},
        {"world syncs", w->time.sync, r->time.sync},
        {"per-step overhead", w->time.overhead, r->time.overhead},
    };
    int most = 0;
    for (int i = 1; i < (int)(sizeof(parts) / sizeof(parts[0])); i++)
        if (parts[i].b - parts[i].a > parts[most].b - parts[most].a)
            most = i;
    layout_name(&r->layout, name, sizeof(name));
    const double dearer = 100.0 * (r->device_s_per_token / w->device_s_per_token - 1.0);
    if (dearer < 0.05)
        snprintf(out + k, len - (size_t)k,
                 "; the next, %s, costs the same per token and needs %.2f GiB more memory.", name,
                 (r->mem.total - w->mem.total) / GIB);
    else
        snprintf(out + k, len - (size_t)k,
                 "; the next, %s, costs %.1f%% more per token: its %s take %.3f ms more.", name,
                 dearer, parts[most].what, (parts[most].b - parts[most].a) * 1e3);
}

/* ---- calibration ---- */

#define NU 5 /* unknowns: 1/matmul, 1/memory, 1 - overlap, overhead_s, latency */

/* Solves the k x k system a x = b by Gaussian elimination with partial pivoting; false when
 * singular. */
static bool solve(double a[NU][NU], double *b, int k, double *x) {
    for (int c = 0; c < k; c++) {
        int piv = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(a[r][c]) > fabs(a[piv][c]))
                piv = r;
        if (fabs(a[piv][c]) < 1e-12)
            return false;
        for (int j = 0; j < k; j++) {
            const double tmp = a[c][j];
            a[c][j] = a[piv][j];
            a[piv][j] = tmp;
        }
        const double tb = b[c];
        b[c] = b[piv];
        b[piv] = tb;
        for (int r = c + 1; r < k; r++) {
            const double f = a[r][c] / a[c][c];
            for (int j = c; j < k; j++)
                a[r][j] -= f * a[c][j];
            b[r] -= f * b[c];
        }
    }
    for (int c = k - 1; c >= 0; c--) {
        double sum = b[c];
        for (int j = c + 1; j < k; j++)
            sum -= a[c][j] * x[j];
        x[c] = sum / a[c][c];
    }
    return true;
}

ts_status ts_plan_calibrate(const struct ts_plan_sample *s, int n, const struct ts_plan_eff *start,
                            struct ts_plan_eff *out, double *residual) {
    if (n < 1)
        return ts_error(TS_ERR_INVALID_ARG, "calibrate: no measured runs");
    double(*x)[NU] = calloc((size_t)n, sizeof(*x));
    double *y = calloc((size_t)n, sizeof(double));
    if (x == NULL || y == NULL) {
        free(x);
        free(y);
        return ts_error(TS_ERR_OOM, "calibrate: out of memory");
    }
    bool seen[NU] = {false, false, false, false, false};
    for (int i = 0; i < n; i++) {
        struct pieces p;
        step_pieces(&s[i].model, &s[i].cluster, &s[i].job, &s[i].layout, &p);
        const double w = 1.0 / s[i].step_s;
        x[i][0] = p.xc * w;
        x[i][1] = p.xm * w;
        x[i][2] = p.dp.bw * w;
        x[i][3] = w;
        x[i][4] = (p.dp.lat + p.tp.lat + p.gather.lat + p.sync_lat) * w;
        y[i] = (s[i].step_s - p.tp.bw - p.gather.bw) * w;
        for (int j = 0; j < NU; j++)
            seen[j] = seen[j] || x[i][j] > 0;
    }
    const double lo[NU] = {1, 1, 0, 0, 0}, hi[NU] = {INFINITY, INFINITY, 1, INFINITY, INFINITY};
    const double init[NU] = {1 / start->matmul, 1 / start->memory, 1 - start->overlap,
                             start->overhead_s, start->latency};
    double best[NU], best_sse = INFINITY;
    memcpy(best, init, sizeof(best));
    /* every assignment of each unknown to free, its lower or its upper bound (3^5) */
    for (int code = 0; code < 243; code++) {
        int state[NU], c = code;
        bool ok = true;
        for (int j = 0; j < NU; j++, c /= 3) {
            state[j] = c % 3; /* 0 free, 1 at lo, 2 at hi */
            if (state[j] == 2 && !isfinite(hi[j]))
                ok = false;
            if (!seen[j] && state[j] != 1)
                ok = false; /* an unmeasured term keeps its start value (below) */
        }
        if (!ok)
            continue;
        double u[NU];
        int free_idx[NU], k = 0;
        for (int j = 0; j < NU; j++) {
            u[j] = !seen[j] ? init[j] : state[j] == 1 ? lo[j] : hi[j];
            if (seen[j] && state[j] == 0)
                free_idx[k++] = j;
        }
        if (k > 0) {
            double a[NU][NU] = {{0}}, b[NU] = {0}, sol[NU];
            for (int i = 0; i < n; i++) {
                double r = y[i];
                for (int j = 0; j < NU; j++)
                    if (!(seen[j] && state[j] == 0))
                        r -= u[j] * x[i][j];
                for (int p = 0; p < k; p++) {
                    b[p] += x[i][free_idx[p]] * r;
                    for (int q = 0; q < k; q++)
                        a[p][q] += x[i][free_idx[p]] * x[i][free_idx[q]];
                }
            }
            if (!solve(a, b, k, sol))
                continue;
            for (int p = 0; p < k; p++) {
                const int j = free_idx[p];
                if (sol[p] < lo[j] || sol[p] > hi[j])
                    ok = false;
                u[j] = sol[p];
            }
            if (!ok)
                continue;
        }
        double sse = 0;
        for (int i = 0; i < n; i++) {
            double r = y[i];
            for (int j = 0; j < NU; j++)
                r -= u[j] * x[i][j];
            sse += r * r;
        }
        if (sse < best_sse - 1e-15) {
            best_sse = sse;
            memcpy(best, u, sizeof(best));
        }
    }
    free(x);
    free(y);
    out->matmul = 1.0 / best[0];
    out->memory = 1.0 / best[1];
    out->overlap = 1.0 - best[2];
    out->overhead_s = best[3];
    out->latency = best[4];
    for (int i = 0; residual != NULL && i < n; i++) {
        struct ts_plan_row row;
        ts_plan_predict(&s[i].model, &s[i].cluster, out, &s[i].job, &s[i].layout, &row);
        residual[i] = row.time.step / s[i].step_s - 1.0;
    }
    return TS_OK;
}
