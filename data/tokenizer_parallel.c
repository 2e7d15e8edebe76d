/* tokenizer_parallel.c: one text encoded by several threads (pthreads), each with its own
 * encoder and cache, over pieces cut where pre-splitting cannot be affected, then concatenated
 * in order, so the result is identical to a single-threaded encode. */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/tokenizer_impl.h"

#define PIECE_BYTES (1u << 20)

struct piece {
    size_t start, end;
    struct ts_tok_ids ids;
    ts_status st;
    char err[512];
};

struct job {
    const ts_tokenizer_t *t;
    const uint8_t *text;
    struct piece *pieces;
    int npieces;
    int next; /* guarded by mu */
    pthread_mutex_t mu;
};

static int is_alnum_ascii(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_nonspace_ascii(uint8_t c) { return c > ' ' && c < 0x7f; }

/* The first safe cut at or after p, or n (tokenizer.h): just after a '\n' that an ASCII
 * letter/digit follows and an ASCII non-space precedes (every alternative of the pattern that can
 * contain '\n' is whitespace-only, and it stops before a non-space, so a chunk ends there and the
 * next starts there). The '\n' must be the whole whitespace run: after "\n\n", say, the serial
 * encoder cuts
 * "\n" + "\n" (`\s+(?!\S)` gives back the last one before a letter) while a piece ending in
 * "\n\n" would keep "\n\n" as one chunk, a different token. */
size_t ts_tok_safe_cut(const uint8_t *s, size_t n, size_t p) {
    for (size_t i = p < 2 ? 2 : p; i < n; i++)
        if (s[i - 1] == '\n' && is_alnum_ascii(s[i]) && is_nonspace_ascii(s[i - 2]))
            return i;
    return n;
}

static void *worker(void *arg) {
    struct job *j = arg;
    ts_tok_encoder_t *e = NULL;
    ts_status st = ts_tok_encoder_create(&e, j->t);
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int k = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (k >= j->npieces)
            break;
        struct piece *p = &j->pieces[k];
        p->st = st != TS_OK
                    ? st
                    : ts_tok_encoder_encode(e, j->text + p->start, p->end - p->start, &p->ids);
        if (p->st != TS_OK)
            strncpy(p->err, ts_last_error(), sizeof(p->err) - 1);
    }
    ts_tok_encoder_destroy(e);
    return NULL;
}

ts_status ts_tok_encode_parallel(const ts_tokenizer_t *t, const uint8_t *text, size_t n,
                                 int threads, struct ts_tok_ids *ids) {
    return ts_tok_encode_pieces(t, text, n, threads, PIECE_BYTES, ids);
}

ts_status ts_tok_encode_pieces(const ts_tokenizer_t *t, const uint8_t *text, size_t n, int threads,
                               size_t piece_bytes, struct ts_tok_ids *ids) {
    if (piece_bytes == 0)
        piece_bytes = PIECE_BYTES;
    if (threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = c > 0 ? (int)c : 1;
    }
    if (n / piece_bytes > INT_MAX - 2)
        return ts_error(TS_ERR_INVALID_ARG, "%zu bytes in pieces of %zu: too many pieces", n,
                        piece_bytes);
    int cap = (int)(n / piece_bytes) + 2, np = 0;
    struct piece *pieces = calloc((size_t)cap, sizeof(*pieces));
    if (pieces == NULL)
        return ts_error(TS_ERR_OOM, "out of memory splitting %zu bytes", n);
    for (size_t s = 0; s < n && np < cap; np++) {
        size_t e =
            s + piece_bytes >= n || np == cap - 1 ? n : ts_tok_safe_cut(text, n, s + piece_bytes);
        pieces[np].start = s;
        pieces[np].end = e;
        s = e;
    }
    struct job j = {.t = t, .text = text, .pieces = pieces, .npieces = np};
    pthread_mutex_init(&j.mu, NULL);
    if (threads > np)
        threads = np > 0 ? np : 1;
    pthread_t tid[256];
    if (threads > 256)
        threads = 256;
    int started = 0;
    for (; started < threads - 1; started++)
        if (pthread_create(&tid[started], NULL, worker, &j) != 0)
            break;
    worker(&j); /* the calling thread works too */
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&j.mu);
    ts_status st = TS_OK;
    for (int k = 0; k < np; k++) {
        if (st == TS_OK && pieces[k].st != TS_OK)
            st = ts_error(pieces[k].st, "%s", pieces[k].err);
        for (int64_t i = 0; st == TS_OK && i < pieces[k].ids.n; i++)
            st = ts_tok_ids_push(ids, pieces[k].ids.ids[i]);
        ts_tok_ids_free(&pieces[k].ids);
    }
    free(pieces);
    return st;
}
