/* tokenizer_train.c: byte-level BPE training with incremental pair counts (tokenizer_train.h).
 *
 * State: distinct words (symbol arrays with a count), every adjacent pair's total count and the
 * words it occurs in (a list that may hold stale entries, checked when used), and a max-heap of
 * (count, pair) with lazy deletion: an entry whose count no longer matches is skipped, because
 * every change of a count pushes a fresh entry. */
#include "data/tokenizer_train.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/tokenizer.h"
#include "kernels/fs.h"

/* A map from byte strings to int32, open addressing, keys in an arena. */
struct bmap {
    uint64_t *hash; /* 0 = empty */
    int32_t *val;
    int64_t *koff;
    uint32_t *klen;
    uint64_t cap, used;
    uint8_t *arena;
    int64_t alen, acap;
};

static uint64_t bhash(const uint8_t *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h | 1;
}

static void bmap_free(struct bmap *m) {
    free(m->hash);
    free(m->val);
    free(m->koff);
    free(m->klen);
    free(m->arena);
    memset(m, 0, sizeof(*m));
}

static ts_status bmap_grow(struct bmap *m) {
    struct bmap n = {0};
    n.cap = m->cap ? m->cap * 2 : 1 << 8; /* small texts and vocabularies stay small */
    n.hash = calloc(n.cap, sizeof(uint64_t));
    n.val = malloc(n.cap * sizeof(int32_t));
    n.koff = malloc(n.cap * sizeof(int64_t));
    n.klen = malloc(n.cap * sizeof(uint32_t));
    if (!n.hash || !n.val || !n.koff || !n.klen) {
        bmap_free(&n);
        return ts_error(TS_ERR_OOM, "out of memory growing a map to %llu slots",
                        (unsigned long long)n.cap);
    }
    for (uint64_t i = 0; i < m->cap; i++) {
        if (m->hash[i] == 0)
            continue;
        uint64_t j = m->hash[i] & (n.cap - 1);
        while (n.hash[j] != 0)
            j = (j + 1) & (n.cap - 1);
        n.hash[j] = m->hash[i];
        n.val[j] = m->val[i];
        n.koff[j] = m->koff[i];
        n.klen[j] = m->klen[i];
    }
    n.used = m->used;
    n.arena = m->arena;
    n.alen = m->alen;
    n.acap = m->acap;
    m->arena = NULL;
    bmap_free(m);
    *m = n;
    return TS_OK;
}

/* Finds s; when absent inserts it with value *val (and sets *found = 0), else returns its value. */
static ts_status bmap_get_or_put(struct bmap *m, const uint8_t *s, size_t n, int32_t *val,
                                 int *found) {
    if (m->used * 2 >= m->cap)
        TS_CHECK(bmap_grow(m));
    uint64_t h = bhash(s, n), i = h & (m->cap - 1);
    for (; m->hash[i] != 0; i = (i + 1) & (m->cap - 1))
        if (m->hash[i] == h && m->klen[i] == n && memcmp(m->arena + m->koff[i], s, n) == 0) {
            *val = m->val[i];
            *found = 1;
            return TS_OK;
        }
    *found = 0;
    if (m->alen + (int64_t)n > m->acap) {
        int64_t cap = (m->acap + (int64_t)n) * 2 + 4096;
        uint8_t *a = realloc(m->arena, (size_t)cap);
        if (a == NULL)
            return ts_error(TS_ERR_OOM, "out of memory for word keys");
        m->arena = a;
        m->acap = cap;
    }
    memcpy(m->arena + m->alen, s, n);
    m->hash[i] = h;
    m->val[i] = *val;
    m->koff[i] = m->alen;
    m->klen[i] = (uint32_t)n;
    m->alen += (int64_t)n;
    m->used++;
    return TS_OK;
}

struct pair {
    int32_t a, b;
    int64_t count, delta;
    int32_t *occ; /* words that contained it when it was counted */
    int32_t nocc, capocc;
    int touched;
};

struct heap_e {
    int64_t count;
    int32_t pair;
};

struct ts_tok_trainer {
    ts_tok_splitter_t *split;
    struct bmap words; /* chunk bytes -> word id */
    int64_t *wcount;   /* per word */
    int64_t *woff;     /* per word: offset of its symbols in sym */
    int32_t *wlen;     /* per word: current number of symbols */
    int32_t *wmark;    /* per word: the last merge step that visited it */
    int64_t nwords, capwords;
    int32_t *sym;
    int64_t nsym, capsym;
    /* pairs */
    struct pair *pairs;
    int32_t npairs, cappairs;
    uint64_t *pkey; /* ((a << 32) | b) + 1, 0 = empty */
    int32_t *pidx;
    uint64_t pcap;
    int32_t *touched;
    int32_t ntouched, captouched;
    struct heap_e *heap;
    int64_t nheap, capheap;
    /* the vocabulary */
    uint8_t *tbytes;
    int64_t *toff; /* (ntok + 1) */
    int32_t ntok, captok;
    struct bmap tokmap; /* token bytes -> id */
    int64_t tbcap;      /* bytes allocated for tbytes */
    int32_t *mleft, *mright;
    int nmerges;
    int vocab_size;
    int32_t id_of[256]; /* a byte's id: GPT-2's order */
};

ts_status ts_tok_trainer_create(ts_tok_trainer_t **out) {
    *out = NULL;
    struct ts_tok_trainer *tr = calloc(1, sizeof(*tr));
    if (tr == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for a tokenizer trainer");
    ts_status st = ts_tok_splitter_create(&tr->split);
    if (st != TS_OK) {
        free(tr);
        return st;
    }
    uint8_t order[256];
    ts_tok_byte_order(order);
    for (int i = 0; i < 256; i++)
        tr->id_of[order[i]] = i;
    *out = tr;
    return TS_OK;
}

void ts_tok_trainer_destroy(ts_tok_trainer_t *tr) {
    if (tr == NULL)
        return;
    ts_tok_splitter_destroy(tr->split);
    bmap_free(&tr->words);
    bmap_free(&tr->tokmap);
    free(tr->wcount);
    free(tr->woff);
    free(tr->wlen);
    free(tr->wmark);
    free(tr->sym);
    for (int32_t i = 0; i < tr->npairs; i++)
        free(tr->pairs[i].occ);
    free(tr->pairs);
    free(tr->pkey);
    free(tr->pidx);
    free(tr->touched);
    free(tr->heap);
    free(tr->tbytes);
    free(tr->toff);
    free(tr->mleft);
    free(tr->mright);
    free(tr);
}

/* Grows an array to hold at least `need` elements. */
static ts_status grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap)
        return TS_OK;
    int64_t ncap = *cap ? *cap : 64;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, (size_t)ncap * elem);
    if (np == NULL)
        return ts_error(TS_ERR_OOM, "out of memory in the tokenizer trainer");
    *p = np;
    *cap = ncap;
    return TS_OK;
}

static ts_status grow32(void **p, int32_t *cap, int64_t need, size_t elem) {
    int64_t c = *cap;
    TS_CHECK(grow(p, &c, need, elem));
    *cap = (int32_t)c;
    return TS_OK;
}

static ts_status add_word(void *ctx, const uint8_t *s, size_t n) {
    struct ts_tok_trainer *tr = ctx;
    int32_t id = (int32_t)tr->nwords;
    int found;
    TS_CHECK(bmap_get_or_put(&tr->words, s, n, &id, &found));
    if (found) {
        tr->wcount[id]++;
        return TS_OK;
    }
    int64_t cw = tr->capwords;
    TS_CHECK(grow((void **)&tr->wcount, &cw, tr->nwords + 1, sizeof(int64_t)));
    cw = tr->capwords;
    TS_CHECK(grow((void **)&tr->woff, &cw, tr->nwords + 1, sizeof(int64_t)));
    cw = tr->capwords;
    TS_CHECK(grow((void **)&tr->wlen, &cw, tr->nwords + 1, sizeof(int32_t)));
    cw = tr->capwords;
    TS_CHECK(grow((void **)&tr->wmark, &cw, tr->nwords + 1, sizeof(int32_t)));
    tr->capwords = cw;
    TS_CHECK(grow((void **)&tr->sym, &tr->capsym, tr->nsym + (int64_t)n, sizeof(int32_t)));
    tr->wcount[id] = 1;
    tr->woff[id] = tr->nsym;
    tr->wlen[id] = (int32_t)n;
    tr->wmark[id] = -1;
    for (size_t i = 0; i < n; i++)
        tr->sym[tr->nsym++] = tr->id_of[s[i]];
    tr->nwords++;
    return TS_OK;
}

ts_status ts_tok_trainer_feed(ts_tok_trainer_t *tr, const uint8_t *text, size_t n) {
    if (tr->nmerges > 0)
        return ts_error(TS_ERR_INVALID_ARG, "feed after run: create a new trainer");
    return ts_tok_split(tr->split, text, n, add_word, tr);
}

/* ---- pairs ---- */

static ts_status pair_find(struct ts_tok_trainer *tr, int32_t a, int32_t b, int create,
                           int32_t *out) {
    if ((uint64_t)tr->npairs * 2 + 2 >= tr->pcap) {
        uint64_t ncap = tr->pcap ? tr->pcap * 2 : 1 << 8;
        uint64_t *nk = calloc(ncap, sizeof(uint64_t));
        int32_t *ni = malloc(ncap * sizeof(int32_t));
        if (nk == NULL || ni == NULL) {
            free(nk);
            free(ni);
            return ts_error(TS_ERR_OOM, "out of memory for pair counts");
        }
        for (uint64_t i = 0; i < tr->pcap; i++)
            if (tr->pkey[i] != 0) {
                uint64_t j = bhash((const uint8_t *)&tr->pkey[i], 8) & (ncap - 1);
                while (nk[j] != 0)
                    j = (j + 1) & (ncap - 1);
                nk[j] = tr->pkey[i];
                ni[j] = tr->pidx[i];
            }
        free(tr->pkey);
        free(tr->pidx);
        tr->pkey = nk;
        tr->pidx = ni;
        tr->pcap = ncap;
    }
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t i = bhash((const uint8_t *)&key, 8) & (tr->pcap - 1);
    for (; tr->pkey[i] != 0; i = (i + 1) & (tr->pcap - 1))
        if (tr->pkey[i] == key) {
            *out = tr->pidx[i];
            return TS_OK;
        }
    if (!create) {
        *out = -1;
        return TS_OK;
    }
    TS_CHECK(grow32((void **)&tr->pairs, &tr->cappairs, tr->npairs + 1, sizeof(struct pair)));
    struct pair *p = &tr->pairs[tr->npairs];
    memset(p, 0, sizeof(*p));
    p->a = a;
    p->b = b;
    tr->pkey[i] = key;
    tr->pidx[i] = tr->npairs;
    *out = tr->npairs++;
    return TS_OK;
}

/* Adds d to a pair's count (recorded as a delta until flush) and, when w >= 0, notes word w. */
static ts_status pair_add(struct ts_tok_trainer *tr, int32_t a, int32_t b, int64_t d, int32_t w) {
    int32_t pi = -1;
    TS_CHECK(pair_find(tr, a, b, 1, &pi));
    struct pair *p = &tr->pairs[pi];
    p->delta += d;
    if (!p->touched) {
        p->touched = 1;
        TS_CHECK(grow32((void **)&tr->touched, &tr->captouched, tr->ntouched + 1, sizeof(int32_t)));
        tr->touched[tr->ntouched++] = pi;
    }
    if (w >= 0) {
        TS_CHECK(grow32((void **)&p->occ, &p->capocc, p->nocc + 1, sizeof(int32_t)));
        p->occ[p->nocc++] = w;
    }
    return TS_OK;
}

/* Heap order: larger count first, then smaller (a, b). */
static int heap_before(const struct ts_tok_trainer *tr, struct heap_e x, struct heap_e y) {
    if (x.count != y.count)
        return x.count > y.count;
    const struct pair *p = &tr->pairs[x.pair], *q = &tr->pairs[y.pair];
    if (p->a != q->a)
        return p->a < q->a;
    return p->b < q->b;
}

static ts_status heap_push(struct ts_tok_trainer *tr, struct heap_e e) {
    TS_CHECK(grow((void **)&tr->heap, &tr->capheap, tr->nheap + 1, sizeof(struct heap_e)));
    int64_t i = tr->nheap++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!heap_before(tr, e, tr->heap[parent]))
            break;
        tr->heap[i] = tr->heap[parent];
        i = parent;
    }
    tr->heap[i] = e;
    return TS_OK;
}

static struct heap_e heap_pop(struct ts_tok_trainer *tr) {
    struct heap_e top = tr->heap[0], last = tr->heap[--tr->nheap];
    int64_t i = 0, n = tr->nheap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_before(tr, tr->heap[c + 1], tr->heap[c]))
            c++;
        if (!heap_before(tr, tr->heap[c], last))
            break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n > 0)
        tr->heap[i] = last;
    return top;
}

/* Applies the pending deltas and pushes a fresh heap entry for every pair that changed. */
static ts_status flush(struct ts_tok_trainer *tr) {
    for (int32_t k = 0; k < tr->ntouched; k++) {
        struct pair *p = &tr->pairs[tr->touched[k]];
        p->touched = 0;
        if (p->delta == 0)
            continue;
        p->count += p->delta;
        p->delta = 0;
        if (p->count > 0)
            TS_CHECK(heap_push(tr, (struct heap_e){p->count, tr->touched[k]}));
    }
    tr->ntouched = 0;
    return TS_OK;
}

/* ---- the vocabulary ---- */

static ts_status add_token(struct ts_tok_trainer *tr, const uint8_t *s, int64_t n, int32_t *id) {
    int found;
    *id = tr->ntok;
    TS_CHECK(bmap_get_or_put(&tr->tokmap, s, (size_t)n, id, &found));
    if (found)
        return TS_OK;
    int64_t ct = tr->captok;
    TS_CHECK(grow((void **)&tr->toff, &ct, tr->ntok + 2, sizeof(int64_t)));
    tr->captok = (int32_t)ct;
    if (tr->ntok == 0)
        tr->toff[0] = 0;
    int64_t total = tr->toff[tr->ntok] + n;
    TS_CHECK(grow((void **)&tr->tbytes, &tr->tbcap, total + 1, 1));
    memcpy(tr->tbytes + tr->toff[tr->ntok], s, (size_t)n);
    tr->toff[tr->ntok + 1] = total;
    tr->ntok++;
    return TS_OK;
}

/* Merges (a, b) -> z in word w, updating pair counts; returns whether it occurred. */
static ts_status merge_word(struct ts_tok_trainer *tr, int32_t w, int32_t a, int32_t b, int32_t z) {
    int32_t *s = tr->sym + tr->woff[w];
    int32_t n = tr->wlen[w];
    int64_t f = tr->wcount[w];
    int any = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        if (s[i] == a && s[i + 1] == b)
            any = 1;
    if (!any)
        return TS_OK;
    for (int32_t i = 0; i + 1 < n; i++)
        TS_CHECK(pair_add(tr, s[i], s[i + 1], -f, -1));
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[m++] = z;
            i++;
        } else {
            s[m++] = s[i];
        }
    }
    tr->wlen[w] = m;
    for (int32_t i = 0; i + 1 < m; i++)
        TS_CHECK(pair_add(tr, s[i], s[i + 1], f, (s[i] == z || s[i + 1] == z) ? w : -1));
    return TS_OK;
}

ts_status ts_tok_trainer_run(ts_tok_trainer_t *tr, int vocab_size) {
    if (vocab_size < 257 || vocab_size > 65536)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--vocab-size must be in [257, 65536] (256 bytes, merges, and "
                        "<|endoftext|>), got %d",
                        vocab_size);
    if (tr->nmerges > 0 || tr->ntok > 0)
        return ts_error(TS_ERR_INVALID_ARG, "a trainer runs once");
    uint8_t order[256];
    ts_tok_byte_order(order);
    for (int i = 0; i < 256; i++) {
        int32_t id;
        TS_CHECK(add_token(tr, &order[i], 1, &id));
    }
    for (int64_t w = 0; w < tr->nwords; w++) {
        const int32_t *s = tr->sym + tr->woff[w];
        for (int32_t i = 0; i + 1 < tr->wlen[w]; i++)
            TS_CHECK(pair_add(tr, s[i], s[i + 1], tr->wcount[w], (int32_t)w));
    }
    TS_CHECK(flush(tr));
    /* Merges that reuse an existing token's id add no token, so there may be more merges than
     * new tokens: the merge arrays grow with the count instead of being sized once. */
    int32_t lcap = 0, rcap = 0;
    while (tr->ntok < vocab_size - 1 && tr->nheap > 0) {
        struct heap_e e = heap_pop(tr);
        struct pair *p = &tr->pairs[e.pair];
        if (e.count != p->count)
            continue; /* stale */
        if (p->count < 2)
            break;
        int32_t a = p->a, b = p->b, z;
        int64_t la = tr->toff[a + 1] - tr->toff[a], lb = tr->toff[b + 1] - tr->toff[b];
        uint8_t *buf = malloc((size_t)(la + lb));
        if (buf == NULL)
            return ts_error(TS_ERR_OOM, "out of memory merging");
        memcpy(buf, tr->tbytes + tr->toff[a], (size_t)la);
        memcpy(buf + la, tr->tbytes + tr->toff[b], (size_t)lb);
        ts_status st = add_token(tr, buf, la + lb, &z);
        free(buf);
        TS_CHECK(st);
        if (tr->nmerges >= (1 << 30))
            return ts_error(TS_ERR_INTERNAL, "tokenizer train: more than 2^30 merges");
        TS_CHECK(grow32((void **)&tr->mleft, &lcap, (int64_t)tr->nmerges + 1, sizeof(int32_t)));
        TS_CHECK(grow32((void **)&tr->mright, &rcap, (int64_t)tr->nmerges + 1, sizeof(int32_t)));
        tr->mleft[tr->nmerges] = a;
        tr->mright[tr->nmerges] = b;
        int step = tr->nmerges++;
        /* p may move when pairs grow: copy its occurrence list first. */
        int32_t nocc = p->nocc, *occ = p->occ;
        p->occ = NULL;
        p->nocc = p->capocc = 0;
        for (int32_t k = 0; k < nocc; k++) {
            int32_t w = occ[k];
            if (tr->wmark[w] == step)
                continue;
            tr->wmark[w] = step;
            ts_status ms = merge_word(tr, w, a, b, z);
            if (ms != TS_OK) {
                free(occ);
                return ms;
            }
        }
        free(occ);
        TS_CHECK(flush(tr));
    }
    int32_t eot;
    TS_CHECK(add_token(tr, (const uint8_t *)TS_TOK_EOT_STRING, strlen(TS_TOK_EOT_STRING), &eot));
    tr->vocab_size = tr->ntok;
    return TS_OK;
}

int64_t ts_tok_trainer_num_words(const ts_tok_trainer_t *tr) { return tr->nwords; }
int ts_tok_trainer_num_merges(const ts_tok_trainer_t *tr) { return tr->nmerges; }
int ts_tok_trainer_vocab_size(const ts_tok_trainer_t *tr) { return tr->vocab_size; }

/* ---- saving ---- */

/* Writes the token's bytes as GPT-2's unicode stand-ins; in JSON, '"' and '\\' are escaped. */
static void put_token(FILE *f, const struct ts_tok_trainer *tr, int32_t id, int json) {
    for (int64_t i = tr->toff[id]; i < tr->toff[id + 1]; i++) {
        uint32_t cp = ts_tok_byte_to_unicode(tr->tbytes[i]);
        if (cp < 0x80) {
            if (json && (cp == '"' || cp == '\\'))
                fputc('\\', f);
            fputc((int)cp, f);
        } else {
            fputc((int)(0xC0 | (cp >> 6)), f);
            fputc((int)(0x80 | (cp & 0x3F)), f);
        }
    }
}

static ts_status write_file(const char *path, const struct ts_tok_trainer *tr, int json) {
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    if (json) {
        fputc('{', f);
        for (int32_t id = 0; id < tr->ntok; id++) {
            fputs(id ? ", \"" : "\"", f);
            put_token(f, tr, id, 1);
            fprintf(f, "\": %d", id);
        }
        fputc('}', f);
    } else {
        fputs("#version: 0.2\n", f);
        for (int r = 0; r < tr->nmerges; r++) {
            put_token(f, tr, tr->mleft[r], 0);
            fputc(' ', f);
            put_token(f, tr, tr->mright[r], 0);
            fputc('\n', f);
        }
    }
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return ts_error(TS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    return TS_OK;
}

ts_status ts_tok_trainer_save(const ts_tok_trainer_t *tr, const char *dir) {
    if (tr->vocab_size == 0)
        return ts_error(TS_ERR_INVALID_ARG, "save before run: nothing learnt yet");
    TS_CHECK(ts_fs_mkdirs(dir));
    char path[TS_PATH_MAX];
    TS_CHECK(ts_path_join(path, sizeof(path), dir, "encoder.json"));
    TS_CHECK(write_file(path, tr, 1));
    TS_CHECK(ts_path_join(path, sizeof(path), dir, "vocab.bpe"));
    return write_file(path, tr, 0);
}
