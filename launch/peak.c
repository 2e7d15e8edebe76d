/* peak.c: dense peak FLOP/s per device for MFU (peak.h), and the model's FLOPs per token.
 *
 * The GPU figures are NVIDIA's datasheets, dense (the "with sparsity" figures halved, which is
 * how the datasheets' footnotes define them):
 *   H100 SXM / H100 PCIe: "NVIDIA H100 Tensor Core GPU" datasheet (2023);
 *   H200 / H200 NVL: "NVIDIA H200 Tensor Core GPU" product page (2024);
 *   A100 40GB / 80GB (SXM and PCIe alike): "NVIDIA A100 Tensor Core GPU" datasheet (2021);
 *   L40S: "NVIDIA L40S" datasheet (2023); L4: "NVIDIA L4" datasheet (2023);
 *   A10: "NVIDIA A10" datasheet (2021).
 * fp32 is the CUDA-core figure: the plug-in's matmuls run CUBLAS_COMPUTE_32F (no TF32), so an
 * fp32 run is measured against what fp32 can reach; the TF32 column is kept for when it does. */
#include "launch/peak.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gpu_row {
    const char *key;
    const char *need[2];     /* substrings the device name must all contain (NULL: none) */
    const char * not ;       /* a substring it must not contain (NULL: none) */
    double bf16, tf32, fp32; /* dense TFLOP/s */
};

/* First match wins: the longer names come before their prefixes (A100 before A10, L40S before
 * L4, H200 NVL before H200). */
static const struct gpu_row gpus[] = {
    {"H100 PCIe", {"H100", "PCIe"}, NULL, 756.5, 378.0, 51.0},
    {"H100 SXM", {"H100", NULL}, "NVL", 989.5, 494.5, 67.0}, /* "H100 80GB HBM3", "H100 SXM5" */
    {"H200 NVL", {"H200", "NVL"}, NULL, 835.5, 417.5, 60.0},
    {"H200", {"H200", NULL}, NULL, 989.5, 494.5, 67.0},
    {"A100 80GB", {"A100", "80GB"}, NULL, 312.0, 156.0, 19.5},
    {"A100 40GB", {"A100", NULL}, NULL, 312.0, 156.0, 19.5},
    {"L40S", {"L40S", NULL}, NULL, 362.05, 183.0, 91.6},
    {"L4", {"L4", NULL}, "L40", 121.0, 60.0, 30.3},
    {"A10", {"A10", NULL}, "A100", 125.0, 62.5, 31.2},
};

static bool has(const char *hay, const char *needle) {
    const size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return false;
}

void ts_peak_gpu(const char *name, bool bf16, struct ts_peak *out) {
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(gpus) / sizeof(gpus[0]); i++) {
        const struct gpu_row *g = &gpus[i];
        if ((g->need[0] && !has(name, g->need[0])) || (g->need[1] && !has(name, g->need[1])) ||
            (g->not &&has(name, g->not )))
            continue;
        out->flops = (bf16 ? g->bf16 : g->fp32) * 1e12;
        snprintf(out->key, sizeof(out->key), "%s", g->key);
        snprintf(out->source, sizeof(out->source), "%s %s dense peak %.4g TFLOP/s (datasheet)",
                 g->key, bf16 ? "bf16 tensor-core" : "fp32", out->flops / 1e12);
        return;
    }
    snprintf(out->source, sizeof(out->source),
             "unknown: '%.100s' is not in the peak table (launch/peak.c)", name);
}

int ts_peak_cpu_flops_per_cycle(const char *core) {
    /* 2 FMA units x SIMD lanes of fp32 x 2 FLOPs per FMA. A core that splits 512-bit FMAs in
     * two (Zen 4 under OpenBLAS's SkylakeX kernels) reaches half: its MFU then reads low. */
    static const struct {
        const char *name;
        int flops;
    } cores[] = {{"sapphirerapids", 64}, {"cooperlake", 64}, {"skylakex", 64},
                 {"haswell", 32},        {"zen", 32},        {"sandybridge", 16},
                 {"nehalem", 8},         {"core2", 8},       {"penryn", 8}};
    for (size_t i = 0; i < sizeof(cores) / sizeof(cores[0]); i++)
        if (has(core, cores[i].name))
            return cores[i].flops;
    return 0;
}

/* The first line of `path` that starts with `key`, its value after ':'; false when none. */
static bool cpuinfo_value(const char *path, const char *key, char *val, size_t len) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, strlen(key)) != 0)
            continue;
        const char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        snprintf(val, len, "%s", colon + 1);
        found = true;
    }
    fclose(f);
    return found;
}

static double clock_hz(const char *root, char *how, size_t len) {
    char path[512], val[4096];
    double hz = 0;
    snprintf(path, sizeof(path), "%s/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", root);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        double khz = 0;
        if (fscanf(f, "%lf", &khz) == 1 && khz > 0) {
            hz = khz * 1e3;
            snprintf(how, len, "cpufreq max");
        }
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/proc/cpuinfo", root);
    if (cpuinfo_value(path, "cpu MHz", val, sizeof(val))) {
        const double mhz = strtod(val, NULL);
        if (mhz * 1e6 > hz) {
            hz = mhz * 1e6;
            snprintf(how, len, "/proc/cpuinfo cpu MHz");
        }
    }
    return hz;
}

static int flops_from_flags(const char *root) {
    char path[512], flags[4096];
    snprintf(path, sizeof(path), "%s/proc/cpuinfo", root);
    if (!cpuinfo_value(path, "flags", flags, sizeof(flags)))
        return 0;
    /* whole words: "avx2" must not match "avx512..." */
    int best = 0;
    bool fma = false, avx2 = false;
    for (char *w = strtok(flags, " \t\n"); w != NULL; w = strtok(NULL, " \t\n")) {
        if (strcmp(w, "avx512f") == 0 && best < 64)
            best = 64;
        else if (strcmp(w, "avx2") == 0)
            avx2 = true;
        else if (strcmp(w, "fma") == 0)
            fma = true;
        else if (strcmp(w, "avx") == 0 && best < 16)
            best = 16;
        else if (strcmp(w, "sse2") == 0 && best < 8)
            best = 8;
    }
    if (avx2 && fma && best < 32)
        best = 32;
    return best;
}

void ts_peak_cpu(int threads, const char *blas_detail, const char *root, struct ts_peak *out) {
    memset(out, 0, sizeof(*out));
    snprintf(out->key, sizeof(out->key), "cpu");
    char how[64] = "";
    const double hz = clock_hz(root, how, sizeof(how));
    /* OpenBLAS's core name: "... (Haswell kernels, ...)" in the CPU backend's detail */
    const char *k = strstr(blas_detail, "OpenBLAS");
    int per_cycle = 0;
    char unit[96] = "";
    if (k != NULL) {
        const char *open = strchr(k, '(');
        if (open != NULL) {
            char core[48];
            snprintf(core, sizeof(core), "%.*s", (int)strcspn(open + 1, " )"), open + 1);
            per_cycle = ts_peak_cpu_flops_per_cycle(core);
            if (per_cycle > 0)
                snprintf(unit, sizeof(unit), "OpenBLAS %s kernels", core);
        }
    }
    if (per_cycle == 0) {
        per_cycle = flops_from_flags(root);
        snprintf(unit, sizeof(unit), "the CPU's flags");
    }
    if (hz <= 0 || per_cycle <= 0 || threads < 1) {
        snprintf(out->source, sizeof(out->source),
                 "unknown: no CPU clock or SIMD width could be read");
        return;
    }
    out->flops = (double)threads * hz * per_cycle;
    snprintf(out->source, sizeof(out->source),
             "cpu: %d core(s) x %.3f GHz (%s) x %d fp32 FLOP/cycle (%s)", threads, hz / 1e9, how,
             per_cycle, unit);
}

void ts_peak_of_backend(struct ts_backend *be, bool bf16, struct ts_peak *out) {
    struct ts_backend_info info;
    be->info(be, &info);
    if (strcmp(be->name, "cpu") == 0)
        ts_peak_cpu(info.threads, info.detail, "", out);
    else
        ts_peak_gpu(info.name, bf16, out);
}

double ts_peak_flops_per_token(double n_params, int layers, int channels, int seq_len) {
    return 6.0 * n_params + 12.0 * layers * (double)channels * seq_len;
}
