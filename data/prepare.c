/* prepare.c: streaming text (or JSONL) to token shards and a data manifest (prepare.h).
 *
 * One thread reads: inputs -> documents -> segments (a reader), deciding for each segment
 * whether it opens a document (an <|endoftext|> first) and whether it goes to val. Segments are
 * gathered into a batch of a few per thread, the batch is encoded on all threads (each with its
 * own encoder, kept across batches for its chunk cache), and the batch's ids are written in
 * order. Everything that decides a byte of the output happens on the reading thread, so the
 * thread count cannot change it. */
#include "data/prepare.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/data_manifest.h"
#include "data/prepare_input.h"
#include "data/prepare_output.h"
#include "data/tokenizer.h"

#define READ_BYTES (1u << 20)
#define SLOTS_PER_THREAD 64

struct ts_prepare_config ts_prepare_defaults(void) {
    return (struct ts_prepare_config){.tokenizer = "gpt2",
                                      .val_fraction = 0.01f,
                                      .shard_tokens = 100000000,
                                      .max_piece_bytes = TS_PREP_MAX_PIECE_BYTES};
}

bool ts_prepare_is_val(int64_t i, double f) {
    return f > 0.0 && ceil((double)(i + 1) * f) > ceil((double)i * f);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the reader: one input at a time, documents cut into segments ---- */

struct reader {
    const struct ts_prepare_config *p;
    bool any_cut; /* the bytes tokenizer: a segment may end anywhere */
    ts_prep_input_t *in;
    const char *path;
    uint8_t *buf; /* the input's unread text (TEXT) or unparsed lines (JSONL) */
    size_t cap, pos, len, scanned;
    bool eof;
    bool doc_open; /* TEXT: the input's document has had a segment */
    uint8_t *doc;  /* JSONL: the current document's text */
    size_t doc_len, doc_pos, doc_cap;
    bool doc_pending; /* JSONL: doc holds a document not yet fully emitted */
    int64_t line;
    int64_t documents;
    size_t text_bytes;
};

/* Where a segment of at most `avail` bytes starting at s ends: the first cut point at or after
 * the segment size, searching only from `from` (what earlier calls scanned); avail if none. */
static size_t find_cut(const struct reader *r, const uint8_t *s, size_t avail, size_t from) {
    if (avail <= TS_PREP_SEGMENT_BYTES)
        return avail;
    if (r->any_cut)
        return TS_PREP_SEGMENT_BYTES;
    size_t start = from > TS_PREP_SEGMENT_BYTES + 2 ? from - 2 : TS_PREP_SEGMENT_BYTES;
    return ts_tok_safe_cut(s, avail, start);
}

/* Reads more of the input into buf (compacting it first); a buffer that would grow past the
 * piece limit is the caller's error to report. */
static ts_status fill(struct reader *r) {
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->scanned = r->scanned > r->pos ? r->scanned - r->pos : 0;
        r->pos = 0;
    }
    if (r->cap - r->len < READ_BYTES) {
        size_t nc = r->cap ? 2 * r->cap : 4 * READ_BYTES;
        if (nc < r->len + READ_BYTES)
            nc = r->len + READ_BYTES;
        uint8_t *nb = realloc(r->buf, nc);
        if (nb == NULL)
            return ts_error(TS_ERR_OOM, "out of memory reading %s", r->path);
        r->buf = nb;
        r->cap = nc;
    }
    size_t got = 0;
    TS_CHECK(ts_prep_input_read(r->in, r->buf + r->len, r->cap - r->len, &got));
    r->len += got;
    r->eof = got == 0;
    return TS_OK;
}

static ts_status too_long(const struct reader *r, const char *what) {
    return ts_error(TS_ERR_FORMAT,
                    "%s: %s longer than the limit of %zu bytes (--max-piece-mb %zu); an endless "
                    "run of characters with no place to cut (such as /dev/zero, one pre-split "
                    "chunk) or a file that is not text",
                    r->path, what, r->p->max_piece_bytes, r->p->max_piece_bytes >> 20);
}

/* The next segment of a text input: [*s, *s + *n); *eot when it opens the document. *got is
 * false at the end of the input. */
static ts_status text_segment(struct reader *r, const uint8_t **s, size_t *n, bool *eot,
                              bool *got) {
    for (;;) {
        size_t avail = r->len - r->pos;
        size_t cut = avail;
        if (avail > TS_PREP_SEGMENT_BYTES) {
            cut = find_cut(r, r->buf + r->pos, avail, r->scanned - r->pos);
            r->scanned = r->pos + avail;
        }
        if (cut < avail || (r->eof && (avail > 0 || !r->doc_open))) {
            *s = r->buf + r->pos;
            *n = cut;
            *eot = !r->doc_open;
            r->documents += !r->doc_open;
            r->doc_open = true;
            r->pos += cut;
            r->scanned = r->pos;
            r->text_bytes += cut;
            *got = true;
            return TS_OK;
        }
        if (r->eof) {
            *got = false;
            return TS_OK;
        }
        if (avail >= r->p->max_piece_bytes)
            return too_long(r, "a run without a place to cut is");
        TS_CHECK(fill(r));
    }
}

/* Parses one JSONL line into r->doc. *skip for a blank line. */
static ts_status parse_line(struct reader *r, const uint8_t *line, size_t n, bool *skip) {
    size_t k = 0;
    while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
        k++;
    *skip = k == n;
    if (*skip)
        return TS_OK;
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return ts_error(TS_ERR_OOM, "out of memory parsing %s", r->path);
    json_object *o = json_tokener_parse_ex(tok, (const char *)line, (int)n);
    enum json_tokener_error err = json_tokener_get_error(tok);
    json_tokener_free(tok);
    ts_status st = TS_OK;
    json_object *v = NULL;
    if (o == NULL || err != json_tokener_success)
        st = ts_error(TS_ERR_FORMAT, "%s:%" PRId64 ": not a JSON value (%s)", r->path, r->line,
                      o == NULL ? json_tokener_error_desc(err) : "trailing text");
    else if (!json_object_is_type(o, json_type_object) ||
             !json_object_object_get_ex(o, r->p->jsonl_field, &v))
        st = ts_error(TS_ERR_FORMAT, "%s:%" PRId64 ": no field \"%s\" (--jsonl-field)", r->path,
                      r->line, r->p->jsonl_field);
    else if (!json_object_is_type(v, json_type_string))
        st = ts_error(TS_ERR_FORMAT, "%s:%" PRId64 ": field \"%s\" is not a string", r->path,
                      r->line, r->p->jsonl_field);
    if (st == TS_OK) {
        size_t len = (size_t)json_object_get_string_len(v);
        if (len > r->doc_cap) {
            uint8_t *nd = realloc(r->doc, len);
            if (nd == NULL)
                st = ts_error(TS_ERR_OOM, "out of memory for a document of %s", r->path);
            else {
                r->doc = nd;
                r->doc_cap = len;
            }
        }
        if (st == TS_OK) {
            memcpy(r->doc, json_object_get_string(v), len);
            r->doc_len = len;
            r->doc_pos = 0;
            r->doc_pending = true;
            r->documents++;
            r->text_bytes += len;
        }
    }
    json_object_put(o);
    return st;
}

/* The next segment of a JSONL input: the next piece of the current document, or of the next
 * line's. */
static ts_status jsonl_segment(struct reader *r, const uint8_t **s, size_t *n, bool *eot,
                               bool *got) {
    while (!r->doc_pending) {
        uint8_t *nl = memchr(r->buf + r->scanned, '\n', r->len - r->scanned);
        if (nl == NULL && !r->eof) {
            if (r->len - r->pos >= r->p->max_piece_bytes)
                return too_long(r, "a line is");
            r->scanned = r->len;
            TS_CHECK(fill(r));
            continue;
        }
        size_t end = nl ? (size_t)(nl - r->buf) : r->len;
        if (nl == NULL && end == r->pos) {
            *got = false;
            return TS_OK;
        }
        r->line++;
        bool skip = false;
        TS_CHECK(parse_line(r, r->buf + r->pos, end - r->pos, &skip));
        r->pos = nl ? end + 1 : end;
        r->scanned = r->pos;
        (void)skip;
    }
    size_t avail = r->doc_len - r->doc_pos;
    size_t cut = find_cut(r, r->doc + r->doc_pos, avail, 0);
    *s = r->doc + r->doc_pos;
    *n = cut;
    *eot = r->doc_pos == 0;
    r->doc_pos += cut;
    r->doc_pending = r->doc_pos < r->doc_len;
    *got = true;
    return TS_OK;
}

/* ---- batches encoded on all threads ---- */

struct slot {
    uint8_t *text;
    size_t len, cap;
    bool eot, val;
    struct ts_tok_ids ids;
    ts_status st;
    char err[512];
};

struct pool {
    const ts_tokenizer_t *t;
    int threads;
    ts_tok_encoder_t **enc;
    struct slot *slots;
    int nslots, used;
    int next; /* guarded by mu */
    pthread_mutex_t mu;
};

struct worker_arg {
    struct pool *pool;
    int index;
};

static void *worker(void *arg) {
    struct worker_arg *w = arg;
    struct pool *p = w->pool;
    int eot = ts_tokenizer_eot(p->t);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int k = p->next++;
        pthread_mutex_unlock(&p->mu);
        if (k >= p->used)
            break;
        struct slot *s = &p->slots[k];
        s->ids.n = 0;
        s->st = s->eot && eot >= 0 ? ts_tok_ids_push(&s->ids, eot) : TS_OK;
        if (s->st == TS_OK)
            s->st = ts_tok_encoder_encode(p->enc[w->index], s->text, s->len, &s->ids);
        if (s->st != TS_OK)
            snprintf(s->err, sizeof(s->err), "%s", ts_last_error());
    }
    return NULL;
}

static ts_status pool_encode(struct pool *p) {
    p->next = 0;
    pthread_t tid[256];
    struct worker_arg args[256];
    int n = p->threads < p->used ? p->threads : p->used, started = 0;
    for (int i = 0; i < n; i++)
        args[i] = (struct worker_arg){p, i};
    for (; started < n - 1; started++)
        if (pthread_create(&tid[started], NULL, worker, &args[started + 1]) != 0)
            break;
    worker(&args[0]);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    for (int k = 0; k < p->used; k++)
        if (p->slots[k].st != TS_OK)
            return ts_error(p->slots[k].st, "%s", p->slots[k].err);
    return TS_OK;
}

static ts_status slot_set(struct slot *s, const uint8_t *text, size_t n, bool eot, bool val) {
    if (n > s->cap) {
        uint8_t *nt = realloc(s->text, n);
        if (nt == NULL)
            return ts_error(TS_ERR_OOM, "out of memory for a segment of %zu bytes", n);
        s->text = nt;
        s->cap = n;
    }
    if (n > 0)
        memcpy(s->text, text, n);
    s->len = n;
    s->eot = eot;
    s->val = val;
    return TS_OK;
}

static void pool_free(struct pool *p) {
    for (int i = 0; p->enc != NULL && i < p->threads; i++)
        ts_tok_encoder_destroy(p->enc[i]);
    free(p->enc);
    for (int k = 0; p->slots != NULL && k < p->nslots; k++) {
        free(p->slots[k].text);
        ts_tok_ids_free(&p->slots[k].ids);
    }
    free(p->slots);
    pthread_mutex_destroy(&p->mu);
}

static ts_status pool_init(struct pool *p, const ts_tokenizer_t *t, int threads) {
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    if (threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = c > 0 ? (int)c : 1;
    }
    p->t = t;
    p->threads = threads > 256 ? 256 : threads;
    p->nslots = SLOTS_PER_THREAD * p->threads;
    p->enc = calloc((size_t)p->threads, sizeof(*p->enc));
    p->slots = calloc((size_t)p->nslots, sizeof(*p->slots));
    if (p->enc == NULL || p->slots == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for %d encoders", p->threads);
    for (int i = 0; i < p->threads; i++)
        TS_CHECK(ts_tok_encoder_create(&p->enc[i], t));
    return TS_OK;
}

/* ---- the run ---- */

struct run {
    const struct ts_prepare_config *p;
    struct reader r;
    struct pool pool;
    ts_prep_out_t *out;
    int64_t segments, tokens;
    bool stopped;
    int64_t raw_done, raw_total; /* raw bytes of finished inputs; all inputs' (-1: unknown) */
    double t0, last_report;
};

static void report_progress(struct run *u, bool last) {
    double t = now_s();
    if (!u->p->progress || (!last && t - u->last_report < 2.0))
        return;
    u->last_report = t;
    double el = t - u->t0 > 1e-9 ? t - u->t0 : 1e-9;
    double raw = (double)u->raw_done + (u->r.in ? (double)ts_prep_input_raw_bytes(u->r.in) : 0.0);
    char eta[64] = "";
    if (u->raw_total > 0 && raw > 0 && !last) {
        double left = ((double)u->raw_total - raw) / (raw / el);
        snprintf(eta, sizeof(eta), ", %.0f%%, ETA %dm%02ds", 100.0 * raw / (double)u->raw_total,
                 (int)(left / 60), (int)fmod(left, 60.0));
    }
    fprintf(stderr, "prepare: %.1f MB read, %.1f MB text, %.2fM tokens, %.2f MB/s, %.2fM tok/s%s\n",
            raw / 1e6, (double)u->r.text_bytes / 1e6, (double)u->tokens / 1e6,
            (double)u->r.text_bytes / 1e6 / el, (double)u->tokens / 1e6 / el, eta);
}

/* Encodes the gathered batch and writes it in order, stopping at max_tokens. */
static ts_status flush_batch(struct run *u) {
    if (u->pool.used == 0)
        return TS_OK;
    TS_CHECK(pool_encode(&u->pool));
    for (int k = 0; k < u->pool.used && !u->stopped; k++) {
        struct slot *s = &u->pool.slots[k];
        int64_t n = s->ids.n;
        if (u->p->max_tokens > 0 && u->tokens + n >= u->p->max_tokens) {
            n = u->p->max_tokens - u->tokens;
            u->stopped = true;
        }
        TS_CHECK(ts_prep_out_append(u->out, s->ids.ids, n, s->val));
        u->tokens += n;
    }
    u->pool.used = 0;
    report_progress(u, false);
    return TS_OK;
}

/* Reads one input to its end (or to max_tokens), batch by batch. */
static ts_status read_input(struct run *u, const char *path, struct ts_data_manifest *m) {
    struct reader *r = &u->r;
    TS_CHECK(ts_prep_input_open(&r->in, path));
    r->path = strcmp(path, "-") == 0 ? "standard input" : path;
    r->pos = r->len = r->scanned = 0;
    r->eof = r->doc_open = r->doc_pending = false;
    r->line = 0;
    ts_status st = TS_OK;
    bool got = true;
    while (st == TS_OK && got && !u->stopped) {
        const uint8_t *s = NULL;
        size_t n = 0;
        bool eot = false;
        st = u->p->jsonl_field ? jsonl_segment(r, &s, &n, &eot, &got)
                               : text_segment(r, &s, &n, &eot, &got);
        if (st == TS_OK && got) {
            bool val = ts_prepare_is_val(u->segments++, (double)u->p->val_fraction);
            st = slot_set(&u->pool.slots[u->pool.used++], s, n, eot, val);
        }
        if (st == TS_OK && u->pool.used == u->pool.nslots)
            st = flush_batch(u);
    }
    if (st == TS_OK) {
        char hex[TS_SHA256_HEX];
        ts_prep_input_sha256(r->in, hex);
        st = ts_data_manifest_add_source(m, path, ts_prep_input_raw_bytes(r->in), hex);
    }
    u->raw_done += ts_prep_input_raw_bytes(r->in);
    ts_prep_input_destroy(r->in);
    r->in = NULL;
    return st;
}

static ts_status check_config(const struct ts_prepare_config *p) {
    if (p->tokenizer == NULL || p->out == NULL || p->num_inputs < 1 || p->inputs == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "prepare: needs a tokenizer, inputs and an output");
    for (int i = 0; i < p->num_inputs; i++)
        if (p->inputs[i] == NULL)
            return ts_error(TS_ERR_INVALID_ARG, "prepare: input %d is NULL", i);
    if (!(p->val_fraction >= 0.0f && p->val_fraction < 1.0f) || p->shard_tokens < 2 ||
        p->shard_tokens > INT32_MAX || p->threads < 0 || p->max_tokens < 0 ||
        p->max_piece_bytes < TS_PREP_SEGMENT_BYTES)
        return ts_error(TS_ERR_INVALID_ARG,
                        "prepare: val_fraction must be in [0, 1), shard_tokens in [2, 2^31), "
                        "threads >= 0, max_tokens >= 0, the piece limit >= %u bytes",
                        TS_PREP_SEGMENT_BYTES);
    return TS_OK;
}

static ts_status run_all(struct run *u, char **paths, int npaths, struct ts_data_manifest *m) {
    u->raw_total = 0;
    for (int i = 0; i < npaths; i++) {
        struct stat sb;
        if (strcmp(paths[i], "-") == 0 || stat(paths[i], &sb) != 0 || !S_ISREG(sb.st_mode))
            u->raw_total = -1;
        else if (u->raw_total >= 0)
            u->raw_total += (int64_t)sb.st_size;
    }
    for (int i = 0; i < npaths && !u->stopped; i++)
        TS_CHECK(read_input(u, paths[i], m));
    TS_CHECK(flush_batch(u));
    report_progress(u, true);
    int64_t ntrain = ts_prep_out_tokens(u->out, false), nval = ts_prep_out_tokens(u->out, true);
    if (ntrain < 2 || (u->p->val_fraction > 0.0f && nval < 2))
        return ts_error(TS_ERR_INVALID_ARG,
                        "the input holds %" PRId64 " tokens in %" PRId64 " segment(s) (%" PRId64
                        " train, %" PRId64 " val): too few to split into train and val (val "
                        "takes segment 0 and one in every 1/--val-fraction)",
                        u->tokens, u->segments, ntrain, nval);
    snprintf(m->val_split, sizeof(m->val_split),
             "segments of ~%u bytes cut at pre-split boundaries, numbered from 0; segment i is "
             "val iff ceil((i+1)*f) > ceil(i*f), f = %.9g",
             TS_PREP_SEGMENT_BYTES, (double)u->p->val_fraction);
    return ts_prep_out_commit(u->out, m);
}

ts_status ts_data_prepare(const struct ts_prepare_config *p, struct ts_prepare_result *out) {
    memset(out, 0, sizeof(*out));
    TS_CHECK(check_config(p));
    ts_tokenizer_t *t = NULL;
    struct run u = {.p = p, .r = {.p = p}};
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    char **paths = NULL;
    int npaths = 0;
    ts_status st;
    u.t0 = u.last_report = now_s();
    TS_CHECK_GOTO(ts_prep_expand_inputs(p->inputs, p->num_inputs, &paths, &npaths), st, done);
    TS_CHECK_GOTO(ts_tokenizer_load(&t, p->tokenizer), st, done);
    if (ts_tokenizer_vocab_size(t) > 65536) {
        st = ts_error(TS_ERR_INVALID_ARG, "%s: %d tokens do not fit uint16 shards", p->tokenizer,
                      ts_tokenizer_vocab_size(t));
        goto done;
    }
    u.r.any_cut = ts_tokenizer_eot(t) < 0; /* the bytes tokenizer */
    snprintf(m.tokenizer, sizeof(m.tokenizer), "%s", ts_tokenizer_name(t));
    m.vocab_size = ts_tokenizer_vocab_size(t);
    m.eot = ts_tokenizer_eot(t);
    snprintf(m.vocab_sha256, sizeof(m.vocab_sha256), "%s", ts_tokenizer_vocab_sha256(t));
    TS_CHECK_GOTO(ts_prep_out_create(&u.out, p->out, p->shard_tokens, p->overwrite), st, done);
    TS_CHECK_GOTO(pool_init(&u.pool, t, p->threads), st, done);
    TS_CHECK_GOTO(run_all(&u, paths, npaths, &m), st, done);
    snprintf(out->tokenizer, sizeof(out->tokenizer), "%s", ts_tokenizer_name(t));
    out->vocab_size = m.vocab_size;
    out->num_inputs = npaths;
    out->bytes = u.r.text_bytes;
    out->raw_bytes = (size_t)u.raw_done;
    out->documents = u.r.documents;
    out->tokens = u.tokens;
    out->train_tokens = m.train_tokens;
    out->val_tokens = m.val_tokens;
    out->num_train_shards = m.num_train_shards;
    out->stopped = u.stopped;
    out->encode_s = now_s() - u.t0;
done:
    pool_free(&u.pool);
    ts_prep_out_destroy(u.out);
    ts_prep_input_destroy(u.r.in);
    free(u.r.buf);
    free(u.r.doc);
    ts_prep_paths_free(paths, npaths);
    ts_data_manifest_deinit(&m);
    ts_tokenizer_destroy(t);
    return st;
}
