/* test_decode.c: the KV-cache decoder gives the logits of a full forward at every position, and
 * sampling is reproducible and respects temperature, top-k and top-p. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels/ops.h"
#include "trainer/decode.h"

Test(trainer_decode, kv_cache_matches_full_forward) {
    struct ts_backend *be = test_backend(1);
    struct ts_gpt_config cfg = test_tiny_config();
    cr_assert_eq(ts_gpt_config_finish(&cfg), TS_OK);
    const int T = 20, V = cfg.vocab_size, Vp = cfg.padded_vocab_size;
    ts_gpt_t *gpt = NULL;
    cr_assert_eq(ts_gpt_create(&gpt, &cfg, be, 1, T), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_init(gpt, 99), TS_OK);
    /* perturb every parameter so biases and layernorm parameters take part */
    int64_t n = ts_gpt_num_params(gpt);
    float *p = malloc(sizeof(float) * (size_t)n);
    cr_assert_eq(ts_gpt_params_to_host(gpt, p), TS_OK);
    for (int64_t i = 0; i < n; i++)
        p[i] += 0.05f * sinf((float)i);
    cr_assert_eq(ts_gpt_params_from_host(gpt, p), TS_OK);

    uint16_t ids16[32];
    int32_t ids[32];
    test_random_tokens(ids16, T, V, 5);
    for (int i = 0; i < T; i++)
        ids[i] = ids16[i];
    cr_assert_eq(ts_gpt_forward(gpt, ids, NULL, 1, T, 0.0f, NULL), TS_OK, "%s", ts_last_error());
    struct ts_tensor logits;
    cr_assert_eq(ts_gpt_logits(gpt, &logits), TS_OK);
    float *full = malloc(sizeof(float) * (size_t)T * Vp);
    cr_assert_eq(ts_op_download(be, full, &logits, sizeof(float) * (size_t)T * Vp), TS_OK);

    ts_decoder_t *dec = NULL;
    cr_assert_eq(ts_decoder_create(&dec, gpt, T), TS_OK, "%s", ts_last_error());
    float *step = malloc(sizeof(float) * (size_t)V);
    for (int rep = 0; rep < 2; rep++) { /* a reset cache decodes the same again */
        for (int t = 0; t < T; t++) {
            cr_assert_eq(ts_decoder_step(dec, ids[t], step), TS_OK, "%s", ts_last_error());
            double err = 0.0, ref = 0.0;
            for (int v = 0; v < V; v++) {
                double d = (double)step[v] - (double)full[(size_t)t * Vp + v];
                err += d * d;
                ref += (double)full[(size_t)t * Vp + v] * full[(size_t)t * Vp + v];
            }
            cr_expect_leq(sqrt(err / ref), 1e-5, "position %d: relative error %g", t,
                          sqrt(err / ref));
        }
        cr_expect_eq(ts_decoder_len(dec), T);
        cr_expect_neq(ts_decoder_step(dec, ids[0], step), TS_OK, "a full cache must refuse");
        cr_expect_not_null(strstr(ts_last_error(), "full"));
        ts_decoder_reset(dec);
    }
    cr_expect_neq(ts_decoder_step(dec, V, step), TS_OK, "a token outside the vocabulary");
    ts_decoder_destroy(dec);
    free(step);
    free(full);
    free(p);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
}

Test(trainer_decode, sampling_rules) {
    enum { V = 6 };
    const float base[V] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};
    float lg[V];
    int order[V];
    struct ts_sampling greedy = {.temperature = 0.0f, .top_p = 1.0f, .seed = 1};
    memcpy(lg, base, sizeof(lg));
    cr_expect_eq(ts_sample_token(lg, V, &greedy, 0, order), 1, "ties go to the lower id");

    /* top-k 2 keeps ids 1 and 3 only; top-p 0.5 keeps the first of the sorted order */
    struct ts_sampling k2 = {.temperature = 1.0f, .top_k = 2, .top_p = 1.0f, .seed = 7};
    struct ts_sampling p50 = {.temperature = 1.0f, .top_k = 0, .top_p = 0.3f, .seed = 7};
    int hist[V] = {0};
    for (uint64_t c = 0; c < 2000; c++) {
        memcpy(lg, base, sizeof(lg));
        int t = ts_sample_token(lg, V, &k2, c, order);
        cr_assert(t == 1 || t == 3, "top-k 2 drew %d", t);
        hist[t]++;
        memcpy(lg, base, sizeof(lg));
        cr_assert_eq(ts_sample_token(lg, V, &p50, c, order), 1, "top-p 0.3 keeps one token");
    }
    cr_expect(hist[1] > 850 && hist[3] > 850, "equal logits, equal chances: %d vs %d", hist[1],
              hist[3]);

    /* full distribution at temperature 1: frequencies follow the softmax */
    struct ts_sampling all = {.temperature = 1.0f, .top_p = 1.0f, .seed = 3};
    int counts[V] = {0};
    const int draws = 20000;
    for (uint64_t c = 0; c < (uint64_t)draws; c++) {
        memcpy(lg, base, sizeof(lg));
        counts[ts_sample_token(lg, V, &all, c, order)]++;
    }
    double z = 0.0;
    for (int i = 0; i < V; i++)
        z += exp((double)base[i]);
    for (int i = 0; i < V; i++) {
        double p = exp((double)base[i]) / z, f = (double)counts[i] / draws;
        cr_expect(fabs(f - p) < 4.0 * sqrt(p * (1 - p) / draws) + 1e-3, "id %d: %f vs %f", i, f, p);
    }
    /* the same seed and counter give the same token */
    memcpy(lg, base, sizeof(lg));
    int a = ts_sample_token(lg, V, &all, 12345, order);
    memcpy(lg, base, sizeof(lg));
    cr_expect_eq(ts_sample_token(lg, V, &all, 12345, order), a);
}
