/* data.c — schema-driven CSV/TSV(.gz) loading, vocabularies, splits, the
 * binary cache and the built-in datasets. See data.h for the contracts.
 *
 * Loading is two stages. Reading streams the text through zlib one buffer at
 * a time and keeps only parsed columns ("raw" rows: categorical values as
 * indices into per-column string tables, numbers as floats, NaN = missing).
 * Finishing assigns splits, builds vocabularies and statistics from the
 * training rows only, and packs the final arrays with the rows of each split
 * contiguous (train, valid, test), so a split is a plain view.
 */
#include "data.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { CAT_VOCAB = 0, CAT_HASH, CAT_QUANT };
enum { NUM_FLAG = 4 };                            /* a "<col>_missing" 0/1 column */
enum { ID_OOV = 0, ID_MISSING = 1, ID_FIRST = 2 }; /* vocabulary ids */
#define MAX_SKIP_LINES 8
#define CANCEL_EVERY 65536
#define CACHE_VERSION 1u
static const char CACHE_MAGIC[8] = {'T', 'L', 'D', 'S', 'C', 'A', 'C', 'H'};

/* ---- hashing (xxhash64-style rounds: fast on long buffers and short keys) */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint64_t xround(uint64_t acc, uint64_t in)
{
    acc += in * P2;
    return rotl64(acc, 31) * P1;
}
static inline uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

static inline uint64_t hash_bytes(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h;
    size_t len = n;
    if (n >= 32) {
        uint64_t a = seed + P1 + P2, b = seed + P2, c = seed, d = seed - P1;
        do {
            a = xround(a, rd64(p));
            b = xround(b, rd64(p + 8));
            c = xround(c, rd64(p + 16));
            d = xround(d, rd64(p + 24));
            p += 32;
            n -= 32;
        } while (n >= 32);
        h = rotl64(a, 1) + rotl64(b, 7) + rotl64(c, 12) + rotl64(d, 18);
        h = (h ^ xround(0, a)) * P1 + P4;
        h = (h ^ xround(0, b)) * P1 + P4;
        h = (h ^ xround(0, c)) * P1 + P4;
        h = (h ^ xround(0, d)) * P1 + P4;
    } else {
        h = seed + P3;
    }
    h += (uint64_t)len;
    while (n >= 8) {
        h ^= xround(0, rd64(p));
        h = rotl64(h, 27) * P1 + P4;
        p += 8;
        n -= 8;
    }
    if (n) {
        /* a byte loop: memcpy of a variable length is a libc call here */
        uint64_t w = 0;
        for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
        h ^= xround(0, w);
        h = rotl64(h, 27) * P1 + P4;
    }
    return fmix64(h);
}

/* Equality of two short byte strings without a libc call. */
static inline int bytes_eq(const char *a, const char *b, size_t n)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    while (n >= 8) {
        if (rd64(x) != rd64(y)) return 0;
        x += 8;
        y += 8;
        n -= 8;
    }
    while (n--)
        if (*x++ != *y++) return 0;
    return 1;
}

/* ---- string tables (interning, first-appearance order) ------------------- */

typedef struct {
    uint32_t *slot; /* entry index + 1, 0 = empty */
    uint32_t mask;
    uint32_t n, cap;
    uint64_t *off;  /* offsets into blob */
    uint32_t *len;
    uint32_t *hash;
    char *blob;
    size_t blen, bcap;
} strtab;

static void st_free(strtab *t)
{
    tl_free(t->slot);
    tl_free(t->off);
    tl_free(t->len);
    tl_free(t->hash);
    tl_free(t->blob);
    memset(t, 0, sizeof *t);
}

static tl_status st_init(strtab *t)
{
    memset(t, 0, sizeof *t);
    t->mask = 63;
    t->slot = tl_calloc(64, sizeof *t->slot, "string table");
    return t->slot ? TL_OK : TL_ERR_NOMEM;
}

static inline const char *st_str(const strtab *t, uint32_t i) { return t->blob + t->off[i]; }

static inline int64_t st_find(const strtab *t, const char *s, size_t n, uint32_t h)
{
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t e = t->slot[i];
        if (!e) return -1;
        e--;
        if (t->hash[e] == h && t->len[e] == n && bytes_eq(t->blob + t->off[e], s, n)) return e;
    }
}

static tl_status st_grow_slots(strtab *t)
{
    uint32_t nslots = (t->mask + 1) * 2;
    uint32_t *ns = tl_calloc(nslots, sizeof *ns, "string table");
    if (!ns) return TL_ERR_NOMEM;
    for (uint32_t e = 0; e < t->n; e++) {
        uint32_t i = t->hash[e] & (nslots - 1);
        while (ns[i]) i = (i + 1) & (nslots - 1);
        ns[i] = e + 1;
    }
    tl_free(t->slot);
    t->slot = ns;
    t->mask = nslots - 1;
    return TL_OK;
}

/* Intern s[0..n) and store its index in *idx. */
static tl_status st_intern(strtab *t, const char *s, size_t n, int32_t *idx)
{
    uint32_t h = (uint32_t)hash_bytes(s, n, 0);
    int64_t f = st_find(t, s, n, h);
    if (f >= 0) {
        *idx = (int32_t)f;
        return TL_OK;
    }
    if (t->n >= (uint32_t)INT32_MAX - 1 || n > UINT32_MAX / 2)
        return tl_fail(TL_ERR_ARG, "more than 2^31 distinct values in one column");
    if ((uint64_t)(t->n + 1) * 2 > (uint64_t)t->mask + 1) {
        tl_status st = st_grow_slots(t);
        if (st) return st;
    }
    if (t->n == t->cap) {
        uint32_t nc = t->cap ? t->cap * 2 : 64;
        uint64_t *no = tl_realloc(t->off, nc * sizeof *no, "string table");
        if (!no) return TL_ERR_NOMEM;
        t->off = no;
        uint32_t *nl = tl_realloc(t->len, nc * sizeof *nl, "string table");
        if (!nl) return TL_ERR_NOMEM;
        t->len = nl;
        uint32_t *nh = tl_realloc(t->hash, nc * sizeof *nh, "string table");
        if (!nh) return TL_ERR_NOMEM;
        t->hash = nh;
        t->cap = nc;
    }
    if (t->blen + n + 1 > t->bcap) {
        size_t nc = t->bcap ? t->bcap * 2 : 1024;
        while (nc < t->blen + n + 1) nc *= 2;
        char *nb = tl_realloc(t->blob, nc, "string table");
        if (!nb) return TL_ERR_NOMEM;
        t->blob = nb;
        t->bcap = nc;
    }
    memcpy(t->blob + t->blen, s, n);
    t->blob[t->blen + n] = 0;
    uint32_t e = t->n++;
    t->off[e] = t->blen;
    t->len[e] = (uint32_t)n;
    t->hash[e] = h;
    t->blen += n + 1;
    uint32_t i = h & t->mask;
    while (t->slot[i]) i = (i + 1) & t->mask;
    t->slot[i] = e + 1;
    *idx = (int32_t)e;
    return TL_OK;
}

/* ---- the dataset ---------------------------------------------------------- */

typedef struct {
    char *name;
    int kind;          /* CAT_VOCAB, CAT_HASH, CAT_QUANT */
    int32_t size;      /* vocabulary size (ids 0 .. size-1) */
    int32_t buckets;   /* CAT_HASH: hash buckets; CAT_QUANT: requested buckets */
    uint32_t n_str;    /* CAT_VOCAB: strings of ids ID_FIRST .. */
    uint64_t *str_off; /* n_str + 1 offsets into str_blob */
    char *str_blob;
    uint32_t n_edges;  /* CAT_QUANT: bucket edges */
    float *edges;
} dcat;

typedef struct {
    char *name;
    int transform;     /* tl_num_transform or NUM_FLAG */
    double mean, std;  /* of the transformed training values */
} dnum;

struct tl_dataset {
    char *source;
    int n_cat, n_num, n_tasks;
    dcat *cat;
    dnum *num;
    char **task_name;
    tl_task_type *task_type;
    int32_t *vocab;
    size_t n;          /* rows kept (all splits) */
    int32_t *catv;
    float *numv, *labv, *wt;
    int32_t *grp;
    uint32_t *row;
    int has_splits;
    size_t split_n[3];
    tl_split sp[4];    /* train, valid, test, all */
    size_t skipped;
    uint64_t skip_lines[MAX_SKIP_LINES];
    int n_skip_lines;
    int from_cache;
    int unlabeled;     /* read with like= from a file without label columns: labels are NaN */
};

static const char *const SPLIT_NAMES[4] = {"train", "valid", "test", "all"};

void tl_dataset_free(tl_dataset *d)
{
    if (!d) return;
    tl_free(d->source);
    for (int f = 0; f < d->n_cat && d->cat; f++) {
        tl_free(d->cat[f].name);
        tl_free(d->cat[f].str_off);
        tl_free(d->cat[f].str_blob);
        tl_free(d->cat[f].edges);
    }
    tl_free(d->cat);
    for (int j = 0; j < d->n_num && d->num; j++) tl_free(d->num[j].name);
    tl_free(d->num);
    for (int t = 0; t < d->n_tasks && d->task_name; t++) tl_free(d->task_name[t]);
    tl_free(d->task_name);
    tl_free(d->task_type);
    tl_free(d->vocab);
    tl_free(d->catv);
    tl_free(d->numv);
    tl_free(d->labv);
    tl_free(d->wt);
    tl_free(d->grp);
    tl_free(d->row);
    tl_free(d);
}

int tl_dataset_n_cat(const tl_dataset *d) { return d->n_cat; }
int tl_dataset_n_num(const tl_dataset *d) { return d->n_num; }
int tl_dataset_n_tasks(const tl_dataset *d) { return d->n_tasks; }
const int32_t *tl_dataset_vocab(const tl_dataset *d) { return d->vocab; }
const char *tl_dataset_cat_name(const tl_dataset *d, int f)
{
    return f >= 0 && f < d->n_cat ? d->cat[f].name : NULL;
}
const char *tl_dataset_num_name(const tl_dataset *d, int j)
{
    return j >= 0 && j < d->n_num ? d->num[j].name : NULL;
}
const char *tl_dataset_task_name(const tl_dataset *d, int t)
{
    return t >= 0 && t < d->n_tasks ? d->task_name[t] : NULL;
}
tl_task_type tl_dataset_task_type(const tl_dataset *d, int t)
{
    return t >= 0 && t < d->n_tasks ? d->task_type[t] : TL_TASK_BINARY;
}
const char *tl_dataset_source(const tl_dataset *d) { return d->source; }
int tl_dataset_from_cache(const tl_dataset *d) { return d->from_cache; }
int tl_dataset_labeled(const tl_dataset *d) { return !d->unlabeled; }

const tl_split *tl_dataset_split(const tl_dataset *d, const char *name)
{
    if (!d || !name) return NULL;
    for (int k = 0; k < 4; k++)
        if (strcmp(name, SPLIT_NAMES[k]) == 0) return (k == 3 || d->has_splits) ? &d->sp[k] : NULL;
    return NULL;
}

size_t tl_dataset_skipped(const tl_dataset *d, const uint64_t **lines, int *n_lines)
{
    if (lines) *lines = d->skip_lines;
    if (n_lines) *n_lines = d->n_skip_lines;
    return d->skipped;
}

size_t tl_dataset_bytes(const tl_dataset *d)
{
    size_t b = d->n * ((size_t)d->n_cat * 4 + (size_t)d->n_num * 4 + (size_t)d->n_tasks * 4 + 4);
    if (d->grp) b += d->n * 4;
    if (d->wt) b += d->n * 4;
    for (int f = 0; f < d->n_cat; f++)
        if (d->cat[f].n_str) b += d->cat[f].str_off[d->cat[f].n_str] + 8 * (size_t)d->cat[f].n_str;
    return b;
}

const char *tl_dataset_vocab_string(const tl_dataset *d, int f, int32_t id)
{
    if (f < 0 || f >= d->n_cat) return NULL;
    const dcat *c = &d->cat[f];
    if (c->kind != CAT_VOCAB || id < ID_FIRST || (uint32_t)(id - ID_FIRST) >= c->n_str) return NULL;
    return c->str_blob + c->str_off[id - ID_FIRST];
}

const char *tl_dataset_cat_kind(const tl_dataset *d, int f)
{
    if (f < 0 || f >= d->n_cat) return NULL;
    static const char *const k[] = {"vocab", "hash", "quantile"};
    return k[d->cat[f].kind];
}

const char *tl_dataset_num_transform(const tl_dataset *d, int j, double *mean, double *std)
{
    if (j < 0 || j >= d->n_num) return NULL;
    static const char *const k[] = {"standard", "log1p", "none", "quantile", "flag"};
    if (mean) *mean = d->num[j].mean;
    if (std) *std = d->num[j].std;
    return k[d->num[j].transform];
}

uint64_t tl_dataset_vocab_fingerprint(const tl_dataset *d, int f)
{
    if (!d || f < 0 || f >= d->n_cat) return 0;
    const dcat *c = &d->cat[f];
    int64_t head[4] = {c->kind, c->size, c->buckets, (int64_t)c->n_str};
    uint64_t h = hash_bytes(head, sizeof head, 0x766f636162ULL);
    if (c->n_str) h = hash_bytes(c->str_blob, (size_t)c->str_off[c->n_str], h);
    if (c->n_edges) h = hash_bytes(c->edges, sizeof *c->edges * c->n_edges, h);
    return h;
}

int tl_dataset_vocab_diff(const tl_dataset *a, int fa, const tl_dataset *b, int fb, char *msg, size_t cap)
{
    if (!a || !b || fa < 0 || fa >= a->n_cat || fb < 0 || fb >= b->n_cat) return 0;
    if (tl_dataset_vocab_fingerprint(a, fa) == tl_dataset_vocab_fingerprint(b, fb)) return 0;
    const dcat *x = &a->cat[fa], *y = &b->cat[fb];
    static const char *const kinds[] = {"vocab", "hash", "quantile"};
    if (x->kind != y->kind) {
        snprintf(msg, cap, "field '%s' is encoded by %s here and by %s there", x->name, kinds[x->kind],
                 kinds[y->kind]);
    } else if (x->size != y->size) {
        snprintf(msg, cap, "field '%s' has %d ids here and %d there", x->name, (int)x->size, (int)y->size);
    } else if (x->kind == CAT_VOCAB) {
        uint32_t i = 0;
        while (i < x->n_str && i < y->n_str &&
               strcmp(x->str_blob + x->str_off[i], y->str_blob + y->str_off[i]) == 0)
            i++;
        if (i < x->n_str && i < y->n_str)
            snprintf(msg, cap, "field '%s' has the same number of ids (%d) but other values: id %u is \"%.40s\" "
                               "here and \"%.40s\" there",
                     x->name, (int)x->size, (unsigned)i + ID_FIRST, x->str_blob + x->str_off[i],
                     y->str_blob + y->str_off[i]);
        else
            snprintf(msg, cap, "field '%s' has other values", x->name);
    } else if (x->kind == CAT_QUANT) {
        snprintf(msg, cap, "field '%s' has the same number of quantile buckets (%d) but other bucket edges",
                 x->name, (int)x->size - 2);
    } else {
        snprintf(msg, cap, "field '%s' has other hash buckets", x->name);
    }
    return 1;
}

tl_status tl_split_shuffle(const tl_split *s, tl_rng *rng, uint32_t *order)
{
    if (!s || !rng || (!order && s->n)) return tl_fail(TL_ERR_ARG, "tl_split_shuffle: NULL argument");
    for (size_t i = 0; i < s->n; i++) order[i] = (uint32_t)i;
    tl_rng_shuffle_u32(rng, order, s->n);
    return TL_OK;
}

tl_status tl_split_epoch_order(const tl_split *s, uint64_t seed, int epoch, uint32_t *order)
{
    tl_rng r;
    tl_rng_seed(&r, seed ^ fmix64((uint64_t)(uint32_t)epoch + P4));
    return tl_split_shuffle(s, &r, order);
}

double tl_split_label_mean(const tl_split *s, const tl_dataset *d, int t)
{
    if (!s || !d || t < 0 || t >= d->n_tasks || s->n == 0) return NAN;
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += (double)s->labels[i * (size_t)d->n_tasks + (size_t)t];
    return sum / (double)s->n;
}

void tl_data_schema_init(tl_data_schema *s)
{
    memset(s, 0, sizeof *s);
    s->sep = ",";
    s->header = 1;
    s->min_count = 1;
    s->seed = 1;
    s->cache = 0;
}

/* ---- line reader: zlib reads plain and gzip files alike ------------------- */

/* Bytes readable past the end of every buffer, so the field splitter can
 * load 16 bytes at a time without checking the end of the line. */
#define LR_PAD 64

typedef struct {
    gzFile gz;
    const char *path;
    char *buf;
    size_t cap, len, pos;
    int eof;
    uint64_t line; /* 1-based number of the line last returned */
} lreader;

static tl_status lr_open(lreader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    struct stat sb;
    if (stat(path, &sb) != 0) return tl_fail(TL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return tl_fail(TL_ERR_IO, "cannot read '%s': it is a directory", path);
    r->gz = gzopen(path, "rb");
    if (!r->gz) return tl_fail(TL_ERR_IO, "cannot open '%s': %s", path, errno ? strerror(errno) : "zlib error");
    gzbuffer(r->gz, 1 << 17);
    r->cap = 1 << 20;
    r->buf = tl_malloc(r->cap + LR_PAD, "line buffer");
    if (!r->buf) {
        gzclose(r->gz);
        r->gz = NULL;
        return TL_ERR_NOMEM;
    }
    memset(r->buf + r->cap, 0, LR_PAD);
    return TL_OK;
}

static void lr_close(lreader *r)
{
    if (r->gz) gzclose(r->gz);
    tl_free(r->buf);
    r->gz = NULL;
    r->buf = NULL;
}

static tl_status lr_fill(lreader *r)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->len == r->cap) {
        if (r->cap >= ((size_t)1 << 31))
            return tl_fail(TL_ERR_PARSE, "%s:%llu: line longer than 2 GiB", r->path,
                           (unsigned long long)r->line + 1);
        char *nb = tl_realloc(r->buf, r->cap * 2 + LR_PAD, "line buffer");
        if (!nb) return TL_ERR_NOMEM;
        r->buf = nb;
        r->cap *= 2;
        memset(r->buf + r->cap, 0, LR_PAD);
    }
    int want = (int)((r->cap - r->len) > (1u << 30) ? (1u << 30) : (r->cap - r->len));
    int got = gzread(r->gz, r->buf + r->len, (unsigned)want);
    int zerr = 0;
    const char *zmsg = gzerror(r->gz, &zerr);
    if (got < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR) || (got == 0 && zerr == Z_BUF_ERROR))
        return tl_fail(TL_ERR_FORMAT, "%s: corrupt or truncated gzip stream near line %llu: %s", r->path,
                       (unsigned long long)r->line + 1, zmsg && *zmsg ? zmsg : "read error");
    if (got == 0) r->eof = 1;
    r->len += (size_t)got;
    return TL_OK;
}

/* Next line (without "\n" or "\r\n") in *line and *len, NUL-terminated and
 * writable; *got = 0 at end of file. */
static tl_status lr_next(lreader *r, char **line, size_t *len, int *got)
{
    for (;;) {
        char *start = r->buf + r->pos;
        size_t avail = r->len - r->pos;
        char *nl = avail ? memchr(start, '\n', avail) : NULL;
        if (nl || (r->eof && avail)) {
            size_t n = nl ? (size_t)(nl - start) : avail;
            if (!nl) {
                /* the last line has no newline: make room for the terminator */
                if (r->len == r->cap) {
                    tl_status st = lr_fill(r);
                    if (st) return st;
                    continue;
                }
            }
            start[n] = 0;
            r->pos += nl ? n + 1 : n;
            if (n && start[n - 1] == '\r') start[--n] = 0;
            r->line++;
            if (r->line == 1 && n >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
                start += 3; /* a UTF-8 byte-order mark is not part of the first name */
                n -= 3;
            }
            *line = start;
            *len = n;
            *got = 1;
            return TL_OK;
        }
        if (r->eof) {
            *got = 0;
            return TL_OK;
        }
        tl_status st = lr_fill(r);
        if (st) return st;
    }
}

/* ---- fields --------------------------------------------------------------- */

typedef struct {
    const char *p;
    uint32_t n;
} field;

/* Split line[0..len) on sep (quotes: RFC 4180, "" inside quotes is one ").
 * Stores up to maxf fields, returns the number found (which may exceed maxf),
 * or -1 - column (1-based) for a malformed quoted field. Modifies line,
 * which must come from lr_next (readable padding after it). */
#ifdef __SSE2__
/* split_fields for lines without quotes: find the separator's first byte 16
 * bytes at a time. Returns -2 (not a field count) when the line has a quote,
 * for the general path. Needs 16 readable bytes past line[len] (LR_PAD). */
static int split_simd(const char *line, size_t len, const char *sep, size_t seplen, field *f, int maxf)
{
    const __m128i vs = _mm_set1_epi8(sep[0]), vq = _mm_set1_epi8('"');
    const char *start = line, *end = line + len;
    int nf = 0;
    for (size_t i = 0; i < len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(line + i));
        unsigned keep = len - i >= 16 ? 0xffffu : (1u << (len - i)) - 1;
        if ((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vq)) & keep) return -2;
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vs)) & keep;
        while (mask) {
            const char *q = line + i + (unsigned)__builtin_ctz(mask);
            mask &= mask - 1;
            if (q < start) continue; /* inside a separator just taken */
            if (seplen > 1 && ((size_t)(end - q) < seplen || !bytes_eq(q, sep, seplen))) continue;
            if (nf < maxf) {
                f[nf].p = start;
                f[nf].n = (uint32_t)(q - start);
            }
            nf++;
            start = q + seplen;
        }
    }
    if (nf < maxf) {
        f[nf].p = start;
        f[nf].n = (uint32_t)(end - start);
    }
    return nf + 1;
}
#endif

static int split_fields(char *line, size_t len, const char *sep, size_t seplen, field *f, int maxf)
{
#ifdef __SSE2__
    int fast = split_simd(line, len, sep, seplen, f, maxf);
    if (fast != -2) return fast;
#endif
    char *p = line, *end = line + len;
    int nf = 0;
    const char s0 = sep[0];
    for (;;) {
        if (p < end && *p == '"') {
            char *w = p, *q = p + 1;
            for (;;) {
                if (q >= end) return -1 - (nf + 1);
                if (*q == '"') {
                    if (q + 1 < end && q[1] == '"') {
                        *w++ = '"';
                        q += 2;
                        continue;
                    }
                    q++;
                    break;
                }
                *w++ = *q++;
            }
            if (nf < maxf) {
                f[nf].p = p;
                f[nf].n = (uint32_t)(w - p);
            }
            nf++;
            if (q == end) return nf;
            if ((size_t)(end - q) >= seplen && bytes_eq(q, sep, seplen)) {
                p = q + seplen;
                continue;
            }
            return -1 - nf;
        }
        char *q = p;
        for (;;) {
            q = memchr(q, s0, (size_t)(end - q));
            if (!q) {
                q = end;
                break;
            }
            if (seplen == 1 || ((size_t)(end - q) >= seplen && bytes_eq(q, sep, seplen))) break;
            q++;
        }
        if (nf < maxf) {
            f[nf].p = p;
            f[nf].n = (uint32_t)(q - p);
        }
        nf++;
        if (q == end) return nf;
        p = q + seplen;
    }
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Parse a finite decimal number; leading/trailing spaces allowed. Returns 0
 * on text. Exact fast path for short decimals, strtod for the rest. */
static int parse_number(const char *s, size_t n, double *out)
{
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (!n) return 0;
    const char *p = s, *e = s + n;
    int neg = 0;
    if (*p == '-' || *p == '+') neg = *p++ == '-';
    uint64_t m = 0;
    int digits = 0, frac = 0, any = 0;
    while (p < e && *p >= '0' && *p <= '9') {
        if (digits < 19) m = m * 10 + (uint64_t)(*p - '0'), digits += m > 0;
        else frac--;
        p++;
        any = 1;
    }
    if (p < e && *p == '.') {
        p++;
        while (p < e && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                digits += m > 0;
                frac++;
            }
            p++;
            any = 1;
        }
    }
    if (any && p == e && m < (1ULL << 53) && frac >= -22 && frac <= 22) {
        double v = (double)m;
        v = frac >= 0 ? v / POW10[frac] : v * POW10[-frac];
        *out = neg ? -v : v;
        return 1;
    }
    char tmp[128];
    if (n >= sizeof tmp) return 0;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *endp;
    errno = 0;
    double v = strtod(tmp, &endp);
    if (endp != tmp + n || !isfinite(v)) return 0;
    /* reject hex floats and words strtod accepts ("0x1p3", "infinity") */
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789+-.eE", tmp[i])) return 0;
    *out = v;
    return 1;
}

/* ---- raw rows ------------------------------------------------------------- */

typedef struct {
    int n_cat, n_num, n_lab, has_group, has_weight;
    strtab *tab;      /* n_cat value tables */
    strtab gtab;      /* group ids */
    size_t n, cap;
    int32_t *cat;     /* n x n_cat, -1 = missing */
    float *num;       /* n x n_num, NaN = missing */
    float *lab;       /* n x n_lab */
    int32_t *grp;
    float *wt;
    uint32_t *row;
    int8_t *tag;      /* split: 0 train, 1 valid, 2 test, -1 dropped */
    size_t skipped;
    uint64_t skip_lines[MAX_SKIP_LINES];
    int n_skip_lines;
    uint64_t *npos;   /* per label: positives seen (unknown-value check) */
    char **neg;       /* per label without negative=: the negative value seen first */
    uint32_t *neg_len;
    int allow_unlabeled; /* like= loads: a file may lack every label column (for scoring) */
    int unlabeled;       /* it did: labels are NaN */
} rawset;

static void rs_free(rawset *r)
{
    for (int k = 0; k < r->n_cat && r->tab; k++) st_free(&r->tab[k]);
    tl_free(r->tab);
    if (r->gtab.slot) st_free(&r->gtab);
    tl_free(r->cat);
    tl_free(r->num);
    tl_free(r->lab);
    tl_free(r->grp);
    tl_free(r->wt);
    tl_free(r->row);
    tl_free(r->tag);
    tl_free(r->npos);
    for (int t = 0; t < r->n_lab && r->neg; t++) tl_free(r->neg[t]);
    tl_free(r->neg);
    tl_free(r->neg_len);
    memset(r, 0, sizeof *r);
}

static tl_status rs_init(rawset *r, int n_cat, int n_num, int n_lab, int has_group, int has_weight)
{
    memset(r, 0, sizeof *r);
    r->n_cat = n_cat;
    r->n_num = n_num;
    r->n_lab = n_lab;
    r->has_group = has_group;
    r->has_weight = has_weight;
    r->tab = tl_calloc((size_t)n_cat + 1, sizeof *r->tab, "column tables");
    r->npos = tl_calloc((size_t)n_lab + 1, sizeof *r->npos, "label counts");
    r->neg = tl_calloc((size_t)n_lab + 1, sizeof *r->neg, "label values");
    r->neg_len = tl_calloc((size_t)n_lab + 1, sizeof *r->neg_len, "label values");
    if (!r->tab || !r->npos || !r->neg || !r->neg_len) return TL_ERR_NOMEM;
    for (int k = 0; k < n_cat; k++)
        if (st_init(&r->tab[k])) return TL_ERR_NOMEM;
    if (has_group && st_init(&r->gtab)) return TL_ERR_NOMEM;
    return TL_OK;
}

#define RS_GROW(ptr, width, what)                                                  \
    do {                                                                           \
        if ((width) > 0) {                                                         \
            void *np_ = tl_realloc((ptr), nc * (size_t)(width) * sizeof *(ptr), what); \
            if (!np_) return TL_ERR_NOMEM;                                         \
            (ptr) = np_;                                                           \
        }                                                                          \
    } while (0)

/* Room for row r->n. */
static tl_status rs_reserve(rawset *r)
{
    if (r->n < r->cap) return TL_OK;
    if (r->n >= UINT32_MAX) return tl_fail(TL_ERR_ARG, "more than 2^32-1 rows");
    size_t nc = r->cap ? r->cap * 2 : 4096;
    RS_GROW(r->cat, r->n_cat, "raw categorical columns");
    RS_GROW(r->num, r->n_num, "raw numeric columns");
    RS_GROW(r->lab, r->n_lab, "raw labels");
    RS_GROW(r->grp, r->has_group, "raw group ids");
    RS_GROW(r->wt, r->has_weight, "raw weights");
    RS_GROW(r->row, 1, "row indices");
    RS_GROW(r->tag, 1, "split tags");
    r->cap = nc;
    return TL_OK;
}

static void rs_note_skip(rawset *r, uint64_t line)
{
    if (r->n_skip_lines < MAX_SKIP_LINES) r->skip_lines[r->n_skip_lines++] = line;
    r->skipped++;
}

/* ---- schema resolution ---------------------------------------------------- */

/* The schema with label source columns dropped from the features. */
typedef struct {
    int n_cat, n_num;
    const tl_data_cat_col **cat;
    const tl_data_num_col **num;   /* standard/log1p/none first, then quantile */
    int n_num_plain;
} plan;

static void plan_free(plan *p)
{
    tl_free(p->cat);
    tl_free(p->num);
}

/* A label's source column is a feature only when one of its labels keeps
 * it. Listing it among the features without keep= is an error (it used to be
 * dropped silently): returns that label's task, else NULL. */
static const char *dropped_label_task(const tl_data_schema *s, const char *name)
{
    const char *task = NULL;
    for (int t = 0; t < s->n_labels; t++)
        if (s->labels[t].column && strcmp(s->labels[t].column, name) == 0) {
            if (s->labels[t].keep) return NULL;
            task = s->labels[t].task ? s->labels[t].task : "?";
        }
    return task;
}

static tl_status label_as_feature(const char *fn, const char *role, const char *name, const char *task)
{
    return tl_fail(TL_ERR_ARG,
                   "%s: column '%s' is listed as %s, but it is the label column of task '%s': a label's "
                   "column is not a feature (keep=true on the label keeps it as one)",
                   fn, name, role, task);
}

static tl_status plan_make(const tl_data_schema *s, const char *fn, plan *p)
{
    memset(p, 0, sizeof *p);
    p->cat = tl_calloc((size_t)s->n_cat + 1, sizeof *p->cat, "schema plan");
    p->num = tl_calloc((size_t)s->n_num + 1, sizeof *p->num, "schema plan");
    if (!p->cat || !p->num) return TL_ERR_NOMEM;
    for (int k = 0; k < s->n_cat; k++) {
        const tl_data_cat_col *c = &s->cat[k];
        if (!c->name || !*c->name) return tl_fail(TL_ERR_ARG, "%s: categorical column %d has no name", fn, k + 1);
        if (c->hash_buckets < 0 || c->min_count < 0)
            return tl_fail(TL_ERR_ARG, "%s: column '%s': hash_buckets and min_count must be >= 0", fn, c->name);
        for (int j = 0; j < k; j++)
            if (strcmp(s->cat[j].name, c->name) == 0)
                return tl_fail(TL_ERR_ARG, "%s: column '%s' is listed twice", fn, c->name);
        const char *task = dropped_label_task(s, c->name);
        if (task) return label_as_feature(fn, "categorical", c->name, task);
        p->cat[p->n_cat++] = c;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < s->n_num; k++) {
            const tl_data_num_col *c = &s->num[k];
            if (!c->name || !*c->name) return tl_fail(TL_ERR_ARG, "%s: numeric column %d has no name", fn, k + 1);
            if ((int)c->transform < 0 || c->transform > TL_NUM_QUANTILE)
                return tl_fail(TL_ERR_ARG, "%s: column '%s': unknown transform %d", fn, c->name, (int)c->transform);
            if (c->transform == TL_NUM_QUANTILE && (c->buckets < 0 || c->buckets > 1000000))
                return tl_fail(TL_ERR_ARG, "%s: column '%s': buckets must be in 2 .. 1000000", fn, c->name);
            if (pass == 0) {
                /* a column may be both a number and quantile buckets, not twice either */
                for (int j = 0; j < k; j++)
                    if (strcmp(s->num[j].name, c->name) == 0 &&
                        (s->num[j].transform == TL_NUM_QUANTILE) == (c->transform == TL_NUM_QUANTILE))
                        return tl_fail(TL_ERR_ARG, "%s: column '%s' is listed twice", fn, c->name);
                for (int j = 0; j < s->n_cat; j++)
                    if (strcmp(s->cat[j].name, c->name) == 0)
                        return tl_fail(TL_ERR_ARG, "%s: column '%s' is both categorical and numeric", fn,
                                       c->name);
            }
            if ((c->transform == TL_NUM_QUANTILE) != pass) continue;
            const char *task = dropped_label_task(s, c->name);
            if (task) return label_as_feature(fn, "numeric", c->name, task);
            p->num[p->n_num++] = c;
            if (pass == 0) p->n_num_plain++;
        }
    for (int t = 0; t < s->n_labels; t++) {
        const tl_data_label *l = &s->labels[t];
        if (!l->task || !*l->task) return tl_fail(TL_ERR_ARG, "%s: label %d has no task name", fn, t + 1);
        if (!l->column || !*l->column) return tl_fail(TL_ERR_ARG, "%s: task '%s' has no column", fn, l->task);
        if ((int)l->kind < 0 || l->kind > TL_LABEL_REGRESSION)
            return tl_fail(TL_ERR_ARG, "%s: task '%s': unknown label kind", fn, l->task);
        if (l->kind == TL_LABEL_POSITIVE && l->n_positive < 1)
            return tl_fail(TL_ERR_ARG, "%s: task '%s' needs positive, threshold or regression", fn, l->task);
        if (l->kind == TL_LABEL_THRESHOLD && !isfinite(l->threshold))
            return tl_fail(TL_ERR_ARG, "%s: task '%s': threshold must be finite", fn, l->task);
        for (int j = 0; j < t; j++)
            if (strcmp(s->labels[j].task, l->task) == 0)
                return tl_fail(TL_ERR_ARG, "%s: task '%s' is defined twice", fn, l->task);
    }
    if (s->n_labels < 1) return tl_fail(TL_ERR_ARG, "%s: no labels: give at least one task", fn);
    if (s->n_labels > TL_DATA_MAX_TASKS)
        return tl_fail(TL_ERR_ARG, "%s: %d tasks; a model takes at most %d", fn, s->n_labels, TL_DATA_MAX_TASKS);
    for (int t = 0; t < s->n_labels; t++)
        if (strlen(s->labels[t].task) >= TL_DATA_TASK_NAME_MAX)
            return tl_fail(TL_ERR_ARG, "%s: task name '%.40s...' is %zu bytes; a model takes at most %d", fn,
                           s->labels[t].task, strlen(s->labels[t].task), TL_DATA_TASK_NAME_MAX - 1);
    return TL_OK;
}

static tl_status schema_check(const tl_data_schema *s, const char *fn)
{
    if (!s) return tl_fail(TL_ERR_ARG, "%s: NULL schema", fn);
    if (!s->path || !*s->path) return tl_fail(TL_ERR_ARG, "%s: no path", fn);
    if (!s->sep || !*s->sep || strlen(s->sep) > 8 || strchr(s->sep, '"') || strchr(s->sep, '\n'))
        return tl_fail(TL_ERR_ARG, "%s: sep must be 1 to 8 characters without quotes or newlines", fn);
    if (!s->header && s->n_columns < 1)
        return tl_fail(TL_ERR_ARG, "%s: without a header, give the column names (columns)", fn);
    if (s->skip < 0) return tl_fail(TL_ERR_ARG, "%s: skip must be >= 0", fn);
    if (s->split == TL_SPLIT_RATIO) {
        double sum = 0;
        for (int k = 0; k < 3; k++) {
            if (!(s->ratio[k] >= 0 && s->ratio[k] <= 1))
                return tl_fail(TL_ERR_ARG, "%s: split ratio %s must be in [0, 1], got %g", fn, SPLIT_NAMES[k],
                               s->ratio[k]);
            sum += s->ratio[k];
        }
        if (fabs(sum - 1.0) > 1e-6)
            return tl_fail(TL_ERR_ARG, "%s: split ratios must sum to 1, got %g", fn, sum);
        if (!(s->ratio[0] > 0)) return tl_fail(TL_ERR_ARG, "%s: split ratio train must be > 0", fn);
    } else if (s->split == TL_SPLIT_MODULO) {
        if (s->modulo < 1 || s->modulo > TL_MODULO_MAX)
            return tl_fail(TL_ERR_ARG, "%s: split modulo must be in 1 .. %d, got %d", fn, TL_MODULO_MAX, s->modulo);
        int any_train = 0;
        for (int k = 0; k < s->modulo; k++) {
            if (s->modulo_to[k] < TL_TO_DROP || s->modulo_to[k] > TL_TO_TEST)
                return tl_fail(TL_ERR_ARG, "%s: split residue %d has no valid target", fn, k);
            any_train |= s->modulo_to[k] == TL_TO_TRAIN;
        }
        if (!any_train) return tl_fail(TL_ERR_ARG, "%s: split modulo sends no residue to train", fn);
    } else if (s->split == TL_SPLIT_FILES) {
        if (!s->valid_path && !s->test_path)
            return tl_fail(TL_ERR_ARG, "%s: split by files needs a valid or test file", fn);
    } else if (s->split != TL_SPLIT_NONE) {
        return tl_fail(TL_ERR_ARG, "%s: unknown split kind %d", fn, (int)s->split);
    }
    return TL_OK;
}

static int is_missing(const tl_data_schema *s, const char *v, size_t n)
{
    if (!s->missing) return n == 0 || (n == 1 && v[0] == '?');
    for (int i = 0; i < s->n_missing; i++)
        if (strlen(s->missing[i]) == n && memcmp(s->missing[i], v, n) == 0) return 1;
    return 0;
}

static int in_list(const char *const *list, int n, const char *v, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(list[i]) == len && memcmp(list[i], v, len) == 0) return 1; /* v may hold NUL bytes */
    return 0;
}

/* Column index of each name the plan uses, for one file. */
typedef struct {
    int ncols;
    int *cat, *num, *lab;
    int id, weight;
} colmap;

static void colmap_free(colmap *m)
{
    tl_free(m->cat);
    tl_free(m->num);
    tl_free(m->lab);
}

static int find_col(char *const *names, int n, const char *name)
{
    for (int c = 0; c < n; c++)
        if (strcmp(names[c], name) == 0) return c;
    return -1;
}

/* A column the schema uses must be named once. */
static tl_status check_unique(const char *path, const tl_data_schema *s, char *const *names, int n, int c)
{
    if (c < 0) return TL_OK;
    for (int k = c + 1; k < n; k++)
        if (strcmp(names[k], names[c]) == 0)
            return tl_fail(TL_ERR_PARSE, "%s: column name '%s' appears twice in the %s (columns %d and %d)", path,
                           names[c], s->header ? "header" : "column names", c + 1, k + 1);
    return TL_OK;
}

static tl_status missing_col(const char *path, const char *role, const char *name, char *const *names, int n)
{
    char list[400];
    size_t k = 0;
    list[0] = 0;
    for (int c = 0; c < n && k < sizeof list - 40; c++) {
        int w = snprintf(list + k, sizeof list - k, "%s%s", c ? ", " : "", names[c]);
        if (w < 0 || (size_t)w >= sizeof list - k) break; /* a long name filled the list */
        k += (size_t)w;
        if (k >= sizeof list - 40 && c + 1 < n) {
            snprintf(list + k, sizeof list - k, ", ... (%d in all)", n);
            break;
        }
    }
    return tl_fail(TL_ERR_ARG, "%s: schema names %s column '%s', which does not exist (columns: %s)", path, role,
                   name, list);
}

static tl_status colmap_make(const tl_data_schema *s, const plan *p, const char *path, char *const *names,
                             int ncols, rawset *rs, colmap *m)
{
    memset(m, 0, sizeof *m);
    m->ncols = ncols;
    m->id = m->weight = -1;
    m->cat = tl_calloc((size_t)p->n_cat + 1, sizeof(int), "column map");
    m->num = tl_calloc((size_t)p->n_num + 1, sizeof(int), "column map");
    m->lab = tl_calloc((size_t)s->n_labels + 1, sizeof(int), "column map");
    if (!m->cat || !m->num || !m->lab) return TL_ERR_NOMEM;
    for (int k = 0; k < p->n_cat; k++)
        if ((m->cat[k] = find_col(names, ncols, p->cat[k]->name)) < 0)
            return missing_col(path, "categorical", p->cat[k]->name, names, ncols);
    for (int k = 0; k < p->n_num; k++)
        if ((m->num[k] = find_col(names, ncols, p->num[k]->name)) < 0)
            return missing_col(path, "numeric", p->num[k]->name, names, ncols);
    tl_status st = TL_OK;
    for (int k = 0; k < p->n_cat && !st; k++) st = check_unique(path, s, names, ncols, m->cat[k]);
    for (int k = 0; k < p->n_num && !st; k++) st = check_unique(path, s, names, ncols, m->num[k]);
    if (st) return st;
    int n_found = 0;
    for (int t = 0; t < s->n_labels; t++) {
        n_found += (m->lab[t] = find_col(names, ncols, s->labels[t].column)) >= 0;
        if ((st = check_unique(path, s, names, ncols, m->lab[t]))) return st;
    }
    if (n_found == 0 && rs->allow_unlabeled) {
        rs->unlabeled = 1; /* rows to score: no labels at all */
    } else if (rs->unlabeled && n_found > 0) {
        return tl_fail(TL_ERR_ARG, "%s: has label columns, but the files before it had none", path);
    } else {
        for (int t = 0; t < s->n_labels; t++)
            if (m->lab[t] < 0) {
                if (rs->allow_unlabeled)
                    return tl_fail(TL_ERR_ARG,
                                   "%s: label column '%s' (task '%s') is missing; a file to score may lack "
                                   "every label column, not only some",
                                   path, s->labels[t].column, s->labels[t].task);
                return missing_col(path, "label", s->labels[t].column, names, ncols);
            }
    }
    if (s->id && (m->id = find_col(names, ncols, s->id)) < 0) return missing_col(path, "id", s->id, names, ncols);
    if (s->weight && (m->weight = find_col(names, ncols, s->weight)) < 0)
        return missing_col(path, "weight", s->weight, names, ncols);
    if ((st = check_unique(path, s, names, ncols, m->id))) return st;
    return check_unique(path, s, names, ncols, m->weight);
}

static void free_names(char **names, int n)
{
    for (int c = 0; c < n && names; c++) tl_free(names[c]);
    tl_free(names);
}

/* The first line holding a CR inside it: CR-only (classic Mac) line ends make
 * the whole file one line. */
static tl_status check_cr(const char *path, uint64_t line, const char *p, size_t len)
{
    if (!memchr(p, '\r', len)) return TL_OK;
    return tl_fail(TL_ERR_PARSE,
                   "%s:%llu: the line holds a carriage return (CR) inside it: the file seems to have CR-only "
                   "(classic Mac) line endings; convert it to LF or CRLF line endings",
                   path, (unsigned long long)line);
}

/* A number the float32 arrays cannot hold is refused, not stored as inf. */
static tl_status overflow_err(const char *path, uint64_t line, int col, const char *name, const field *x)
{
    return tl_fail(TL_ERR_PARSE, "%s:%llu: column %d ('%s'): \"%.*s\" overflows float32 (|x| <= %.4g)", path,
                   (unsigned long long)line, col, name, (int)(x->n > 60 ? 60 : x->n), x->p, (double)FLT_MAX);
}

/* Read one CSV file into rs, tagging rows with `tag` (or by modulo). */
static tl_status read_csv(const tl_data_schema *s, const plan *p, const char *path, int8_t tag, rawset *rs)
{
    lreader lr;
    tl_status st = lr_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got = 0, ncols = 0;
    char **names = NULL;
    field *f = NULL;
    int32_t *last = NULL; /* per categorical column: the previous row's value */
    colmap m;
    memset(&m, 0, sizeof m);
    const size_t seplen = strlen(s->sep);
    for (int i = 0; i < s->skip; i++) {
        if ((st = lr_next(&lr, &line, &len, &got))) goto done;
        if (!got) break;
    }
    if (s->header) {
        do {
            if ((st = lr_next(&lr, &line, &len, &got))) goto done;
        } while (got && len == 0);
        if (!got) {
            st = tl_fail(TL_ERR_PARSE, "%s: empty file (expected a header line)", path);
            goto done;
        }
        if ((st = check_cr(path, lr.line, line, len))) goto done;
        if (memchr(line, 0, len)) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: the header line holds a NUL byte", path,
                         (unsigned long long)lr.line);
            goto done;
        }
        /* Split once: unescaping "" rewrites the line in place, so a second
         * pass would see other fields. Every field but the last ends at a
         * separator, which bounds the count. */
        size_t maxf = 1;
        for (size_t i = 0; i < len; i++) maxf += line[i] == s->sep[0];
        if (maxf > (size_t)1 << 30) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: header line has too many columns", path,
                         (unsigned long long)lr.line);
            goto done;
        }
        f = tl_malloc(sizeof *f * maxf, "header fields");
        if (!f) {
            st = TL_ERR_NOMEM;
            goto done;
        }
        int nf = split_fields(line, len, s->sep, seplen, f, (int)maxf);
        if (nf < 0) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column %d: unterminated or malformed quoted field in the header",
                         path, (unsigned long long)lr.line, -nf - 1);
            goto done;
        }
        names = tl_calloc((size_t)nf, sizeof *names, "column names");
        if (!names) {
            st = TL_ERR_NOMEM;
            goto done;
        }
        ncols = nf;
        for (int c = 0; c < nf; c++) {
            uint32_t a = 0, b = f[c].n;
            while (a < b && f[c].p[a] == ' ') a++;
            while (b > a && f[c].p[b - 1] == ' ') b--;
            names[c] = tl_malloc(b - a + 1, "column name");
            if (!names[c]) {
                st = TL_ERR_NOMEM;
                goto done;
            }
            memcpy(names[c], f[c].p + a, b - a);
            names[c][b - a] = 0;
        }
    } else {
        ncols = s->n_columns;
        names = tl_calloc((size_t)ncols, sizeof *names, "column names");
        if (!names) {
            st = TL_ERR_NOMEM;
            goto done;
        }
        for (int c = 0; c < ncols; c++)
            if (!s->columns[c] || !(names[c] = tl_strdup(s->columns[c], "column name"))) {
                st = s->columns[c] ? TL_ERR_NOMEM : tl_fail(TL_ERR_ARG, "%s: column %d has no name", path, c + 1);
                goto done;
            }
        tl_free(f);
        f = tl_malloc(sizeof *f * (size_t)ncols, "fields");
        if (!f) {
            st = TL_ERR_NOMEM;
            goto done;
        }
    }
    if ((st = colmap_make(s, p, path, names, ncols, rs, &m))) goto done;
    last = tl_malloc(sizeof *last * ((size_t)p->n_cat + 1), "column memo");
    if (!last) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    for (int k = 0; k < p->n_cat; k++) last[k] = -1;
    {
        const int n_cat = p->n_cat, n_num = p->n_num, n_lab = s->n_labels;
        uint64_t data_row = 0;
        size_t rows_in_file = 0;
        for (;;) {
            if ((st = lr_next(&lr, &line, &len, &got))) goto done;
            if (!got) break;
            if (len == 0) continue; /* blank lines are not rows */
            if (data_row == 0 && !s->header && (st = check_cr(path, lr.line, line, len))) goto done;
            uint64_t row_index = data_row++;
            if ((data_row & (CANCEL_EVERY - 1)) == 0 && tl_cancelled()) {
                st = tl_fail(TL_ERR_CANCELLED, "%s: loading cancelled at line %llu", path,
                             (unsigned long long)lr.line);
                goto done;
            }
            int8_t rtag = tag;
            if (s->split == TL_SPLIT_MODULO) {
                rtag = s->modulo_to[row_index % (uint64_t)s->modulo];
                if (rtag == TL_TO_DROP) continue; /* the protocol leaves these rows out */
            }
            if ((st = rs_reserve(rs))) goto done;
            const char *nul = memchr(line, 0, len);
            int nf = split_fields(line, len, s->sep, seplen, f, ncols);
            const size_t r = rs->n;
            if (nul && nf == ncols) {
                /* unquoting moved bytes left: find the field that holds it now */
                int col = ncols;
                for (int c = 0; c < ncols; c++)
                    if (memchr(f[c].p, 0, f[c].n)) {
                        col = c + 1;
                        break;
                    }
                tl_fail(TL_ERR_PARSE, "%s:%llu: column %d ('%s'): the field holds a NUL byte", path,
                        (unsigned long long)lr.line, col, names[col - 1]);
                goto bad;
            }
            if (nf != ncols) {
                if (nf < 0)
                    tl_fail(TL_ERR_PARSE, "%s:%llu: column %d: unterminated or malformed quoted field", path,
                            (unsigned long long)lr.line, -nf - 1);
                else
                    tl_fail(TL_ERR_PARSE, "%s:%llu: expected %d fields, got %d (ragged row)", path,
                            (unsigned long long)lr.line, ncols, nf);
                goto bad;
            }
            for (int k = 0; k < n_cat; k++) {
                const field *x = &f[m.cat[k]];
                int32_t *dst = &rs->cat[r * (size_t)n_cat + (size_t)k];
                const strtab *tb = &rs->tab[k];
                int32_t li = last[k];
                if (is_missing(s, x->p, x->n)) {
                    *dst = -1;
                } else if (li >= 0 && tb->len[li] == x->n && bytes_eq(st_str(tb, li), x->p, x->n)) {
                    *dst = li; /* same value as this column's previous row: common, and skips the hash */
                } else if ((st = st_intern(&rs->tab[k], x->p, x->n, dst))) {
                    goto done;
                } else {
                    last[k] = *dst;
                }
            }
            for (int k = 0; k < n_num; k++) {
                const field *x = &f[m.num[k]];
                double v;
                if (is_missing(s, x->p, x->n)) {
                    v = NAN;
                } else if (!parse_number(x->p, x->n, &v)) {
                    tl_fail(TL_ERR_PARSE, "%s:%llu: column %d ('%s'): expected a number, got \"%.*s\"", path,
                            (unsigned long long)lr.line, m.num[k] + 1, names[m.num[k]], (int)(x->n > 60 ? 60 : x->n),
                            x->p);
                    goto bad;
                } else if (fabs(v) > (double)FLT_MAX) {
                    overflow_err(path, lr.line, m.num[k] + 1, names[m.num[k]], x);
                    goto bad;
                }
                rs->num[r * (size_t)n_num + (size_t)k] = (float)v;
            }
            for (int t = 0; t < n_lab; t++) {
                const tl_data_label *l = &s->labels[t];
                if (rs->unlabeled) {
                    rs->lab[r * (size_t)n_lab + (size_t)t] = NAN;
                    continue;
                }
                const field *x = &f[m.lab[t]];
                double v = 0;
                if (is_missing(s, x->p, x->n)) {
                    tl_fail(TL_ERR_PARSE, "%s:%llu: column %d ('%s'): missing label for task '%s'", path,
                            (unsigned long long)lr.line, m.lab[t] + 1, names[m.lab[t]], l->task);
                    goto bad;
                }
                if (l->kind == TL_LABEL_POSITIVE) {
                    if (in_list(l->positive, l->n_positive, x->p, x->n)) {
                        v = 1;
                    } else if (l->n_negative > 0 && !in_list(l->negative, l->n_negative, x->p, x->n)) {
                        tl_fail(TL_ERR_PARSE,
                                "%s:%llu: column %d ('%s'): unknown label value \"%.*s\" for task '%s' "
                                "(expected \"%s\" or \"%s\")",
                                path, (unsigned long long)lr.line, m.lab[t] + 1, names[m.lab[t]],
                                (int)(x->n > 60 ? 60 : x->n), x->p, l->task, l->positive[0], l->negative[0]);
                        goto bad;
                    } else if (l->n_negative == 0 && !l->unknown_negative) {
                        if (!rs->neg[t]) {
                            if (!(rs->neg[t] = tl_malloc((size_t)x->n + 1, "label value"))) {
                                st = TL_ERR_NOMEM;
                                goto done;
                            }
                            memcpy(rs->neg[t], x->p, x->n);
                            rs->neg[t][x->n] = 0;
                            rs->neg_len[t] = x->n;
                        } else if (rs->neg_len[t] != x->n || memcmp(rs->neg[t], x->p, x->n) != 0) {
                            tl_fail(TL_ERR_PARSE,
                                    "%s:%llu: column %d ('%s'): unknown label value \"%.*s\" for task '%s': the "
                                    "column already has \"%s\" (positive) and \"%.*s\" (taken as negative); list "
                                    "the 0 values with negative=, or map every other value to 0 with "
                                    "unknown=\"negative\"",
                                    path, (unsigned long long)lr.line, m.lab[t] + 1, names[m.lab[t]],
                                    (int)(x->n > 60 ? 60 : x->n), x->p, l->task, l->positive[0],
                                    (int)(rs->neg_len[t] > 60 ? 60 : rs->neg_len[t]), rs->neg[t]);
                            goto bad;
                        }
                    }
                } else if (!parse_number(x->p, x->n, &v)) {
                    tl_fail(TL_ERR_PARSE,
                            "%s:%llu: column %d ('%s'): expected a number for task '%s', got \"%.*s\"", path,
                            (unsigned long long)lr.line, m.lab[t] + 1, names[m.lab[t]], l->task,
                            (int)(x->n > 60 ? 60 : x->n), x->p);
                    goto bad;
                } else if (l->kind == TL_LABEL_THRESHOLD) {
                    v = v >= l->threshold ? 1 : 0;
                } else if (fabs(v) > (double)FLT_MAX) {
                    overflow_err(path, lr.line, m.lab[t] + 1, names[m.lab[t]], x);
                    goto bad;
                }
                rs->lab[r * (size_t)n_lab + (size_t)t] = (float)v;
            }
            if (m.id >= 0) {
                const field *x = &f[m.id];
                if ((st = st_intern(&rs->gtab, x->p, x->n, &rs->grp[r]))) goto done;
            }
            if (m.weight >= 0) {
                const field *x = &f[m.weight];
                double v;
                if (!parse_number(x->p, x->n, &v) || v < 0) {
                    tl_fail(TL_ERR_PARSE, "%s:%llu: column %d ('%s'): expected a weight >= 0, got \"%.*s\"", path,
                            (unsigned long long)lr.line, m.weight + 1, names[m.weight],
                            (int)(x->n > 60 ? 60 : x->n), x->p);
                    goto bad;
                } else if (v > (double)FLT_MAX) {
                    overflow_err(path, lr.line, m.weight + 1, names[m.weight], x);
                    goto bad;
                }
                rs->wt[r] = (float)v;
            }
            for (int t = 0; t < n_lab; t++) rs->npos[t] += rs->lab[r * (size_t)n_lab + (size_t)t] == 1.0f;
            rs->row[r] = (uint32_t)row_index;
            rs->tag[r] = rtag;
            rs->n++;
            rows_in_file++;
            continue;
        bad:
            if (s->on_bad == TL_BAD_ERROR) {
                st = TL_ERR_PARSE;
                goto done;
            }
            tl_clear_error();
            rs_note_skip(rs, lr.line);
        }
        if (data_row == 0) {
            st = tl_fail(TL_ERR_PARSE, "%s: empty file (no data rows)", path);
            goto done;
        }
        if (rows_in_file == 0 && s->split != TL_SPLIT_MODULO) {
            st = tl_fail(TL_ERR_PARSE, "%s: every one of the %llu data rows is bad (first at line %llu)", path,
                         (unsigned long long)data_row,
                         (unsigned long long)(rs->n_skip_lines ? rs->skip_lines[0] : 0));
            goto done;
        }
    }
done:
    tl_free(last);
    colmap_free(&m);
    free_names(names, ncols);
    tl_free(f);
    lr_close(&lr);
    return st;
}

/* ---- finishing: splits, vocabularies, statistics, packing ----------------- */

static float num_t(int transform, float x)
{
    if (transform == TL_NUM_LOG1P) return x < 0 ? -log1pf(-x) : log1pf(x);
    return x;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* How the caller describes what it read (CSV schema or a built-in loader). */
typedef struct {
    const plan *p;
    const tl_data_schema *s;
    const tl_dataset *like;
    const char *source;
} finish_args;

static tl_status assign_splits(rawset *rs, const tl_data_schema *s, const tl_dataset *like)
{
    if (like || s->split == TL_SPLIT_NONE) {
        if (rs->n) memset(rs->tag, 0, rs->n);
        return TL_OK;
    }
    if (s->split != TL_SPLIT_RATIO) return TL_OK; /* tagged while reading */
    uint32_t *perm = tl_malloc(sizeof *perm * rs->n, "split permutation");
    if (!perm) return TL_ERR_NOMEM;
    tl_rng r;
    tl_rng_seed(&r, s->seed);
    for (size_t i = 0; i < rs->n; i++) perm[i] = (uint32_t)i;
    tl_rng_shuffle_u32(&r, perm, rs->n);
    size_t n_train = (size_t)llround(s->ratio[0] * (double)rs->n);
    size_t n_valid = (size_t)llround(s->ratio[1] * (double)rs->n);
    if (n_train > rs->n) n_train = rs->n;
    if (n_valid > rs->n - n_train) n_valid = rs->n - n_train;
    for (size_t k = 0; k < rs->n; k++)
        rs->tag[perm[k]] = (int8_t)(k < n_train ? TL_TO_TRAIN : k < n_train + n_valid ? TL_TO_VALID : TL_TO_TEST);
    tl_free(perm);
    return TL_OK;
}

static const dcat *like_cat(const tl_dataset *like, const char *name)
{
    for (int f = 0; f < like->n_cat; f++)
        if (strcmp(like->cat[f].name, name) == 0) return &like->cat[f];
    return NULL;
}

static const dnum *like_num(const tl_dataset *like, const char *name)
{
    for (int j = 0; j < like->n_num; j++)
        if (strcmp(like->num[j].name, name) == 0) return &like->num[j];
    return NULL;
}

/* Build the id of every distinct raw value of categorical source k. */
static tl_status build_vocab(const rawset *rs, int k, const uint32_t *counts, const tl_data_cat_col *col,
                             const tl_data_schema *s, const tl_dataset *like, dcat *out, int32_t *map)
{
    const strtab *t = &rs->tab[k];
    const dcat *lc = like ? like_cat(like, col->name) : NULL;
    if (like && (!lc || lc->kind == CAT_QUANT))
        return tl_fail(TL_ERR_ARG, "like: the first dataset has no categorical field '%s'", col->name);
    int kind = lc ? lc->kind : col->hash_buckets > 0 ? CAT_HASH : CAT_VOCAB;
    out->kind = kind;
    if (kind == CAT_HASH) {
        int32_t b = lc ? lc->buckets : col->hash_buckets;
        out->buckets = b;
        out->size = b + 1; /* the last id is "missing" */
        for (uint32_t i = 0; i < t->n; i++)
            map[i] = (int32_t)(hash_bytes(st_str(t, i), t->len[i], 0x746c) % (uint64_t)b);
        return TL_OK;
    }
    /* vocabulary: counts over training rows only */
    uint32_t n_str = 0;
    size_t blob = 0;
    if (lc) {
        strtab lk;
        if (st_init(&lk)) return TL_ERR_NOMEM;
        for (uint32_t j = 0; j < lc->n_str; j++) {
            int32_t idx;
            const char *sv = lc->str_blob + lc->str_off[j];
            if (st_intern(&lk, sv, lc->str_off[j + 1] - lc->str_off[j] - 1, &idx)) {
                st_free(&lk);
                return TL_ERR_NOMEM;
            }
        }
        for (uint32_t i = 0; i < t->n; i++) {
            int64_t e = st_find(&lk, st_str(t, i), t->len[i], t->hash[i]);
            map[i] = e >= 0 ? ID_FIRST + (int32_t)e : ID_OOV;
        }
        st_free(&lk);
        n_str = lc->n_str;
        blob = lc->n_str ? lc->str_off[lc->n_str] : 0;
        out->str_off = tl_malloc(sizeof *out->str_off * ((size_t)n_str + 1), "vocabulary");
        out->str_blob = tl_malloc(blob + 1, "vocabulary");
        if (!out->str_off || !out->str_blob) return TL_ERR_NOMEM;
        memcpy(out->str_off, lc->str_off, sizeof *out->str_off * ((size_t)n_str + 1));
        if (blob) memcpy(out->str_blob, lc->str_blob, blob);
        out->n_str = n_str;
        out->size = ID_FIRST + (int32_t)n_str;
        return TL_OK;
    }
    const uint32_t *cnt = counts;
    uint32_t minc = (uint32_t)(col->min_count > 0 ? col->min_count : s->min_count > 0 ? s->min_count : 1);
    for (uint32_t i = 0; i < t->n; i++)
        if (cnt[i] >= minc) {
            map[i] = ID_FIRST + (int32_t)n_str++;
            blob += t->len[i] + 1;
        } else {
            map[i] = ID_OOV;
        }
    out->str_off = tl_malloc(sizeof *out->str_off * ((size_t)n_str + 1), "vocabulary");
    out->str_blob = tl_malloc(blob + 1, "vocabulary");
    if (!out->str_off || !out->str_blob) return TL_ERR_NOMEM;
    size_t o = 0;
    uint32_t j = 0;
    for (uint32_t i = 0; i < t->n; i++)
        if (cnt[i] >= minc) {
            out->str_off[j++] = o;
            memcpy(out->str_blob + o, st_str(t, i), t->len[i] + 1);
            o += t->len[i] + 1;
        }
    out->str_off[n_str] = o;
    out->n_str = n_str;
    out->size = ID_FIRST + (int32_t)n_str;
    return TL_OK;
}

static tl_status alloc_dataset(tl_dataset **out, int n_cat, int n_num, int n_tasks)
{
    tl_dataset *d = tl_calloc(1, sizeof *d, "dataset");
    if (!d) return TL_ERR_NOMEM;
    *out = d;
    d->cat = tl_calloc((size_t)n_cat + 1, sizeof *d->cat, "dataset fields");
    d->num = tl_calloc((size_t)n_num + 1, sizeof *d->num, "dataset fields");
    d->task_name = tl_calloc((size_t)n_tasks + 1, sizeof *d->task_name, "dataset tasks");
    d->task_type = tl_calloc((size_t)n_tasks + 1, sizeof *d->task_type, "dataset tasks");
    d->vocab = tl_calloc((size_t)n_cat + 1, sizeof *d->vocab, "dataset vocabulary sizes");
    if (!d->cat || !d->num || !d->task_name || !d->task_type || !d->vocab) return TL_ERR_NOMEM;
    d->n_cat = n_cat;
    d->n_num = n_num;
    d->n_tasks = n_tasks;
    return TL_OK;
}

static void set_split_views(tl_dataset *d)
{
    size_t start[4] = {0, d->split_n[0], d->split_n[0] + d->split_n[1], 0};
    size_t count[4] = {d->split_n[0], d->split_n[1], d->split_n[2], d->n};
    for (int k = 0; k < 4; k++) {
        tl_split *s = &d->sp[k];
        size_t o = start[k];
        s->name = SPLIT_NAMES[k];
        s->n = count[k];
        s->cat = d->catv ? d->catv + o * (size_t)d->n_cat : NULL;
        s->num = d->numv ? d->numv + o * (size_t)d->n_num : NULL;
        s->labels = d->labv ? d->labv + o * (size_t)d->n_tasks : NULL;
        s->group = d->grp ? d->grp + o : NULL;
        s->weight = d->wt ? d->wt + o : NULL;
        s->row = d->row ? d->row + o : NULL;
    }
}

/* rs → dataset. Tasks come from s->labels (types from the label kinds). */
static tl_status finish(rawset *rs, const finish_args *a, tl_dataset **out)
{
    const plan *p = a->p;
    const tl_data_schema *s = a->s;
    const tl_dataset *like = a->like;
    tl_status st = assign_splits(rs, s, like);
    if (st) return st;
    for (int t = 0; t < s->n_labels; t++)
        if (s->labels[t].kind == TL_LABEL_POSITIVE && s->labels[t].n_negative == 0 && rs->npos[t] == 0 && !like)
            return tl_fail(TL_ERR_PARSE,
                           "%s: task '%s': no row has the positive value \"%s\" in column '%s' "
                           "(check positive=)",
                           a->source, s->labels[t].task, s->labels[t].positive[0], s->labels[t].column);
    /* rows of each split contiguous, file order within a split */
    size_t cnt[3] = {0, 0, 0};
    for (size_t r = 0; r < rs->n; r++)
        if (rs->tag[r] >= 0) cnt[rs->tag[r]]++;
    size_t n = cnt[0] + cnt[1] + cnt[2];
    if (n == 0) return tl_fail(TL_ERR_PARSE, "%s: no data rows", a->source);
    if (!like && s->split != TL_SPLIT_NONE && cnt[0] == 0)
        return tl_fail(TL_ERR_PARSE, "%s: the training split is empty", a->source);
    uint32_t *src = tl_malloc(sizeof *src * n, "split order");
    if (!src) return TL_ERR_NOMEM;
    {
        size_t pos[3] = {0, cnt[0], cnt[0] + cnt[1]};
        for (size_t r = 0; r < rs->n; r++)
            if (rs->tag[r] >= 0) src[pos[rs->tag[r]]++] = (uint32_t)r;
    }
    /* layout: vocab/hash fields, quantile fields; plain numerics, flags */
    int n_quant = p->n_num - p->n_num_plain;
    int n_cat = p->n_cat + n_quant;
    int n_flag = 0;
    uint8_t *flag = tl_calloc((size_t)p->n_num + 1, 1, "missing flags");
    double *mean = tl_calloc((size_t)p->n_num + 1, sizeof *mean, "numeric statistics");
    double *sd = tl_calloc((size_t)p->n_num + 1, sizeof *sd, "numeric statistics");
    tl_dataset *d = NULL;
    int32_t *map = NULL, *miss = NULL;
    uint32_t *counts = NULL;
    size_t *moff = NULL;
    float *vals = NULL;
    if (!flag || !mean || !sd) {
        st = TL_ERR_NOMEM;
        goto fail;
    }
    for (int j = 0; j < p->n_num_plain; j++) {
        const tl_data_num_col *c = p->num[j];
        const dnum *ln = like ? like_num(like, c->name) : NULL;
        if (like && (!ln || ln->transform == NUM_FLAG)) {
            st = tl_fail(TL_ERR_ARG, "like: the first dataset has no numeric column '%s'", c->name);
            goto fail;
        }
        if (ln) {
            mean[j] = ln->mean;
            sd[j] = ln->std;
            char fname[300];
            snprintf(fname, sizeof fname, "%s_missing", c->name);
            flag[j] = like_num(like, fname) != NULL;
        } else {
            double sum = 0, sum2 = 0;
            size_t k = 0;
            int had_missing = 0;
            for (size_t r = 0; r < rs->n; r++) {
                if (rs->tag[r] != TL_TO_TRAIN) continue;
                float x = rs->num[r * (size_t)rs->n_num + (size_t)j];
                if (isnan(x)) {
                    had_missing = 1;
                    continue;
                }
                double v = (double)num_t(c->transform, x);
                sum += v;
                sum2 += v * v;
                k++;
            }
            mean[j] = k ? sum / (double)k : 0.0;
            double var = k ? sum2 / (double)k - mean[j] * mean[j] : 1.0;
            sd[j] = var > 1e-12 ? sqrt(var) : 1.0;
            flag[j] = (uint8_t)had_missing;
        }
        n_flag += flag[j];
    }
    int n_num = p->n_num_plain + n_flag;
    if ((st = alloc_dataset(&d, n_cat, n_num, s->n_labels))) goto fail;
    d->source = tl_strdup(a->source, "dataset source");
    d->n = n;
    d->has_splits = !like && s->split != TL_SPLIT_NONE;
    for (int k = 0; k < 3; k++) d->split_n[k] = d->has_splits ? cnt[k] : 0;
    if (!d->has_splits) d->split_n[0] = 0;
    d->catv = tl_malloc(sizeof *d->catv * n * (size_t)(n_cat ? n_cat : 1), "categorical features");
    d->numv = tl_malloc(sizeof *d->numv * n * (size_t)(n_num ? n_num : 1), "numeric features");
    d->labv = tl_malloc(sizeof *d->labv * n * (size_t)s->n_labels, "labels");
    d->row = tl_malloc(sizeof *d->row * n, "row indices");
    if (rs->has_group) d->grp = tl_malloc(sizeof *d->grp * n, "group ids");
    if (rs->has_weight) d->wt = tl_malloc(sizeof *d->wt * n, "weights");
    if (!d->source || !d->catv || !d->numv || !d->labv || !d->row || (rs->has_group && !d->grp) ||
        (rs->has_weight && !d->wt)) {
        st = TL_ERR_NOMEM;
        goto fail;
    }
    for (int t = 0; t < s->n_labels; t++) {
        if (!(d->task_name[t] = tl_strdup(s->labels[t].task, "task name"))) {
            st = TL_ERR_NOMEM;
            goto fail;
        }
        d->task_type[t] = s->labels[t].kind == TL_LABEL_REGRESSION ? TL_TASK_REGRESSION : TL_TASK_BINARY;
    }
    /* categorical fields: count training values in one pass over the rows
     * (field by field would walk the row-major array 33 times) */
    {
        const int nc = rs->n_cat;
        size_t tot = 0;
        for (int k = 0; k < nc; k++) tot += (size_t)rs->tab[k].n + 1;
        counts = tl_calloc(tot + 1, sizeof *counts, "vocabulary counts");
        map = tl_malloc(sizeof *map * (tot + 1), "vocabulary map");
        moff = tl_malloc(sizeof *moff * ((size_t)nc + 1), "vocabulary map");
        miss = tl_malloc(sizeof *miss * ((size_t)nc + 1), "vocabulary map");
        if (!counts || !map || !moff || !miss) {
            st = TL_ERR_NOMEM;
            goto fail;
        }
        moff[0] = 0;
        for (int k = 0; k < nc; k++) moff[k + 1] = moff[k] + (size_t)rs->tab[k].n + 1;
        if (!like)
            for (size_t r = 0; r < rs->n; r++) {
                if (rs->tag[r] != TL_TO_TRAIN) continue;
                const int32_t *raw = rs->cat + r * (size_t)nc;
                for (int k = 0; k < nc; k++)
                    if (raw[k] >= 0) counts[moff[k] + (size_t)raw[k]]++;
            }
        for (int k = 0; k < nc; k++) {
            dcat *c = &d->cat[k];
            if (!(c->name = tl_strdup(p->cat[k]->name, "field name"))) {
                st = TL_ERR_NOMEM;
                goto fail;
            }
            if ((st = build_vocab(rs, k, counts + moff[k], p->cat[k], s, like, c, map + moff[k]))) goto fail;
            miss[k] = c->kind == CAT_HASH ? c->buckets : ID_MISSING;
            d->vocab[k] = c->size;
        }
        for (size_t i = 0; i < n; i++) {
            const int32_t *raw = rs->cat + (size_t)src[i] * (size_t)nc;
            int32_t *dst = d->catv + i * (size_t)n_cat;
            for (int k = 0; k < nc; k++) dst[k] = raw[k] < 0 ? miss[k] : map[moff[k] + (size_t)raw[k]];
        }
    }
    /* quantile fields: ids 0 = missing, 1 .. n_edges+1 buckets */
    for (int q = 0; q < n_quant; q++) {
        int j = p->n_num_plain + q, f = p->n_cat + q;
        const tl_data_num_col *col = p->num[j];
        dcat *c = &d->cat[f];
        c->kind = CAT_QUANT;
        if (!(c->name = tl_strdup(col->name, "field name"))) {
            st = TL_ERR_NOMEM;
            goto fail;
        }
        const dcat *lc = like ? like_cat(like, col->name) : NULL;
        if (like && (!lc || lc->kind != CAT_QUANT)) {
            st = tl_fail(TL_ERR_ARG, "like: the first dataset has no quantile field '%s'", col->name);
            goto fail;
        }
        if (lc) {
            c->buckets = lc->buckets;
            c->n_edges = lc->n_edges;
            c->edges = tl_malloc(sizeof *c->edges * ((size_t)c->n_edges + 1), "quantile edges");
            if (!c->edges) {
                st = TL_ERR_NOMEM;
                goto fail;
            }
            memcpy(c->edges, lc->edges, sizeof *c->edges * c->n_edges);
        } else {
            int B = col->buckets > 1 ? col->buckets : 10;
            c->buckets = B;
            size_t k = 0;
            vals = tl_malloc(sizeof *vals * (rs->n + 1), "quantile values");
            c->edges = tl_malloc(sizeof *c->edges * (size_t)B, "quantile edges");
            if (!vals || !c->edges) {
                st = TL_ERR_NOMEM;
                goto fail;
            }
            for (size_t r = 0; r < rs->n; r++) {
                float x = rs->num[r * (size_t)rs->n_num + (size_t)j];
                if (rs->tag[r] == TL_TO_TRAIN && !isnan(x)) vals[k++] = x;
            }
            qsort(vals, k, sizeof *vals, cmp_float);
            for (int b = 1; b < B && k; b++) {
                float e = vals[(size_t)((double)b * (double)k / B)];
                if (c->n_edges == 0 || e > c->edges[c->n_edges - 1]) c->edges[c->n_edges++] = e;
            }
            tl_free(vals);
            vals = NULL;
        }
        c->size = (int32_t)c->n_edges + 2;
        d->vocab[f] = c->size;
        for (size_t i = 0; i < n; i++) {
            float x = rs->num[(size_t)src[i] * (size_t)rs->n_num + (size_t)j];
            int32_t id = 0;
            if (!isnan(x)) {
                uint32_t lo = 0, hi = c->n_edges; /* count of edges <= x */
                while (lo < hi) {
                    uint32_t mid = (lo + hi) / 2;
                    if (c->edges[mid] <= x) lo = mid + 1;
                    else hi = mid;
                }
                id = 1 + (int32_t)lo;
            }
            d->catv[i * (size_t)n_cat + (size_t)f] = id;
        }
    }
    /* numeric columns: transformed, imputed with the training mean, flagged */
    {
        int fcol = p->n_num_plain;
        for (int j = 0; j < p->n_num_plain; j++) {
            const tl_data_num_col *col = p->num[j];
            dnum *o = &d->num[j];
            o->transform = col->transform;
            o->mean = mean[j];
            o->std = sd[j];
            if (!(o->name = tl_strdup(col->name, "column name"))) {
                st = TL_ERR_NOMEM;
                goto fail;
            }
            const float mu = (float)mean[j], inv = (float)(1.0 / sd[j]);
            for (size_t i = 0; i < n; i++) {
                float x = rs->num[(size_t)src[i] * (size_t)rs->n_num + (size_t)j];
                float v = isnan(x) ? mu : num_t(col->transform, x);
                if (col->transform == TL_NUM_STANDARD) v = (v - mu) * inv;
                d->numv[i * (size_t)n_num + (size_t)j] = v;
            }
            if (flag[j]) {
                dnum *fl = &d->num[fcol];
                char fname[300];
                snprintf(fname, sizeof fname, "%s_missing", col->name);
                fl->transform = NUM_FLAG;
                fl->mean = 0;
                fl->std = 1;
                if (!(fl->name = tl_strdup(fname, "column name"))) {
                    st = TL_ERR_NOMEM;
                    goto fail;
                }
                for (size_t i = 0; i < n; i++)
                    d->numv[i * (size_t)n_num + (size_t)fcol] =
                        isnan(rs->num[(size_t)src[i] * (size_t)rs->n_num + (size_t)j]) ? 1.0f : 0.0f;
                fcol++;
            }
        }
    }
    if (like) {
        /* the same layout as the first dataset, or models trained on it break */
        int same = like->n_cat == d->n_cat && like->n_num == d->n_num && like->n_tasks == d->n_tasks;
        for (int f = 0; same && f < d->n_cat; f++) same = strcmp(like->cat[f].name, d->cat[f].name) == 0;
        for (int j = 0; same && j < d->n_num; j++) same = strcmp(like->num[j].name, d->num[j].name) == 0;
        for (int t = 0; same && t < d->n_tasks; t++)
            same = strcmp(like->task_name[t], d->task_name[t]) == 0 && like->task_type[t] == d->task_type[t];
        if (!same) {
            st = tl_fail(TL_ERR_ARG, "like: %s does not have the first dataset's fields and tasks", a->source);
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        size_t r = src[i];
        memcpy(d->labv + i * (size_t)s->n_labels, rs->lab + r * (size_t)s->n_labels,
               sizeof *d->labv * (size_t)s->n_labels);
        d->row[i] = rs->row[r];
        if (d->grp) d->grp[i] = rs->grp[r];
        if (d->wt) d->wt[i] = rs->wt[r];
    }
    d->skipped = rs->skipped;
    d->unlabeled = rs->unlabeled;
    d->n_skip_lines = rs->n_skip_lines;
    memcpy(d->skip_lines, rs->skip_lines, sizeof d->skip_lines);
    set_split_views(d);
    tl_free(map);
    tl_free(miss);
    tl_free(counts);
    tl_free(moff);
    tl_free(src);
    tl_free(flag);
    tl_free(mean);
    tl_free(sd);
    *out = d;
    return TL_OK;
fail:
    tl_free(map);
    tl_free(miss);
    tl_free(counts);
    tl_free(moff);
    tl_free(vals);
    tl_free(src);
    tl_free(flag);
    tl_free(mean);
    tl_free(sd);
    tl_dataset_free(d);
    return st;
}

/* ---- binary cache ---------------------------------------------------------
 * Layout: magic[8], version u32, 0 u32, key u64, payload, checksum u64.
 * The key hashes the schema and each source file's size, mtime and content;
 * the checksum chains a hash over every payload write, so a reader that makes
 * the same reads sees the same value. Anything off → rebuild. */

typedef struct {
    FILE *f;
    uint64_t h;
    int err;
    uint64_t remain; /* reader: bytes left before the checksum */
} cio;

static void cw_put(cio *w, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, w->f) != n) w->err = 1;
    w->h = hash_bytes(p, n, w->h);
}
static void cw_u64(cio *w, uint64_t v) { cw_put(w, &v, 8); }
static void cw_str(cio *w, const char *s)
{
    uint64_t n = s ? strlen(s) : 0;
    cw_u64(w, n);
    cw_put(w, s, n);
}

static int cr_get(cio *r, void *p, size_t n)
{
    if (r->err || n > r->remain) {
        r->err = 1;
        return 0;
    }
    if (n && fread(p, 1, n, r->f) != n) {
        r->err = 1;
        return 0;
    }
    r->remain -= n;
    r->h = hash_bytes(p, n, r->h);
    return 1;
}
static uint64_t cr_u64(cio *r)
{
    uint64_t v = 0;
    cr_get(r, &v, 8);
    return v;
}
/* Allocate count*size bytes only if the file can hold them. */
static void *cr_alloc(cio *r, uint64_t count, size_t size)
{
    if (r->err || (size && count > r->remain / size)) {
        r->err = 1;
        return NULL;
    }
    void *p = tl_malloc(count * size + 1, "dataset cache");
    if (!p) r->err = 2;
    return p;
}
static void *cr_array(cio *r, uint64_t count, size_t size)
{
    void *p = cr_alloc(r, count, size);
    if (p && !cr_get(r, p, count * size)) {
        tl_free(p);
        return NULL;
    }
    return p;
}
static char *cr_str(cio *r)
{
    uint64_t n = cr_u64(r);
    char *s = cr_array(r, n, 1);
    if (s) s[n] = 0;
    return s;
}

static void write_dataset(cio *w, const tl_dataset *d)
{
    cw_str(w, d->source);
    cw_u64(w, (uint64_t)d->n_cat);
    cw_u64(w, (uint64_t)d->n_num);
    cw_u64(w, (uint64_t)d->n_tasks);
    cw_u64(w, d->n);
    cw_u64(w, (uint64_t)d->has_splits);
    for (int k = 0; k < 3; k++) cw_u64(w, d->split_n[k]);
    for (int f = 0; f < d->n_cat; f++) {
        const dcat *c = &d->cat[f];
        cw_str(w, c->name);
        cw_u64(w, (uint64_t)c->kind);
        cw_u64(w, (uint64_t)c->size);
        cw_u64(w, (uint64_t)c->buckets);
        cw_u64(w, c->n_str);
        if (c->kind == CAT_VOCAB) {
            cw_put(w, c->str_off, sizeof *c->str_off * ((size_t)c->n_str + 1));
            cw_put(w, c->str_blob, c->str_off[c->n_str]);
        }
        cw_u64(w, c->n_edges);
        cw_put(w, c->edges, sizeof *c->edges * c->n_edges);
    }
    for (int j = 0; j < d->n_num; j++) {
        cw_str(w, d->num[j].name);
        cw_u64(w, (uint64_t)d->num[j].transform);
        cw_put(w, &d->num[j].mean, 8);
        cw_put(w, &d->num[j].std, 8);
    }
    for (int t = 0; t < d->n_tasks; t++) {
        cw_str(w, d->task_name[t]);
        cw_u64(w, (uint64_t)d->task_type[t]);
    }
    cw_put(w, d->catv, sizeof *d->catv * d->n * (size_t)d->n_cat);
    cw_put(w, d->numv, sizeof *d->numv * d->n * (size_t)d->n_num);
    cw_put(w, d->labv, sizeof *d->labv * d->n * (size_t)d->n_tasks);
    cw_put(w, d->row, sizeof *d->row * d->n);
    cw_u64(w, d->grp != NULL);
    if (d->grp) cw_put(w, d->grp, sizeof *d->grp * d->n);
    cw_u64(w, d->wt != NULL);
    if (d->wt) cw_put(w, d->wt, sizeof *d->wt * d->n);
    cw_u64(w, d->skipped);
    cw_u64(w, (uint64_t)d->n_skip_lines);
    cw_put(w, d->skip_lines, sizeof d->skip_lines);
}

/* Returns NULL (and leaves no error) when anything does not check out. */
static tl_dataset *read_dataset(cio *r)
{
    tl_dataset *d = NULL;
    char *source = cr_str(r);
    uint64_t n_cat = cr_u64(r), n_num = cr_u64(r), n_tasks = cr_u64(r), n = cr_u64(r);
    if (!source || r->err || n_cat > 100000 || n_num > 1000000 || n_tasks < 1 || n_tasks > 1000 || n == 0 ||
        n > UINT32_MAX) {
        tl_free(source);
        return NULL;
    }
    if (alloc_dataset(&d, (int)n_cat, (int)n_num, (int)n_tasks)) {
        tl_free(source);
        return NULL;
    }
    d->source = source;
    d->n = n;
    d->has_splits = cr_u64(r) != 0;
    uint64_t tot = 0;
    for (int k = 0; k < 3; k++) tot += (d->split_n[k] = cr_u64(r));
    if (d->has_splits ? tot != n : tot != 0) goto bad;
    for (int f = 0; f < d->n_cat && !r->err; f++) {
        dcat *c = &d->cat[f];
        c->name = cr_str(r);
        uint64_t kind = cr_u64(r), size = cr_u64(r), buckets = cr_u64(r), n_str = cr_u64(r);
        if (kind > CAT_QUANT || size < 1 || size > INT32_MAX || buckets > INT32_MAX || n_str > INT32_MAX) goto bad;
        c->kind = (int)kind;
        c->size = (int32_t)size;
        c->buckets = (int32_t)buckets;
        c->n_str = (uint32_t)n_str;
        d->vocab[f] = c->size;
        if (c->kind == CAT_VOCAB) {
            if (size != n_str + ID_FIRST) goto bad;
            if (!(c->str_off = cr_array(r, n_str + 1, sizeof *c->str_off))) goto bad;
            uint64_t bl = c->str_off[n_str];
            if (c->str_off[0] != 0) goto bad;
            for (uint64_t i = 0; i < n_str; i++)
                if (c->str_off[i + 1] <= c->str_off[i] || c->str_off[i + 1] > bl) goto bad;
            if (!(c->str_blob = cr_array(r, bl, 1))) goto bad;
            for (uint64_t i = 0; i < n_str; i++)
                if (c->str_blob[c->str_off[i + 1] - 1] != 0) goto bad;
        } else if (n_str) {
            goto bad;
        }
        uint64_t ne = cr_u64(r);
        if (ne > INT32_MAX) goto bad;
        c->n_edges = (uint32_t)ne;
        if (!(c->edges = cr_array(r, ne, sizeof *c->edges))) goto bad;
        if (c->kind == CAT_QUANT ? size != ne + 2 : c->kind == CAT_HASH ? size != buckets + 1 || ne : ne) goto bad;
    }
    for (int j = 0; j < d->n_num && !r->err; j++) {
        d->num[j].name = cr_str(r);
        uint64_t tr = cr_u64(r);
        if (tr > NUM_FLAG || tr == TL_NUM_QUANTILE) goto bad;
        d->num[j].transform = (int)tr;
        cr_get(r, &d->num[j].mean, 8);
        cr_get(r, &d->num[j].std, 8);
    }
    for (int t = 0; t < d->n_tasks && !r->err; t++) {
        d->task_name[t] = cr_str(r);
        uint64_t ty = cr_u64(r);
        if (ty > TL_TASK_REGRESSION) goto bad;
        d->task_type[t] = (tl_task_type)ty;
    }
    if (r->err) goto bad;
    if (!(d->catv = cr_array(r, n * n_cat, sizeof *d->catv))) goto bad;
    if (!(d->numv = cr_array(r, n * n_num, sizeof *d->numv))) goto bad;
    if (!(d->labv = cr_array(r, n * n_tasks, sizeof *d->labv))) goto bad;
    if (!(d->row = cr_array(r, n, sizeof *d->row))) goto bad;
    if (cr_u64(r) && !(d->grp = cr_array(r, n, sizeof *d->grp))) goto bad;
    if (cr_u64(r) && !(d->wt = cr_array(r, n, sizeof *d->wt))) goto bad;
    d->skipped = cr_u64(r);
    uint64_t nsl = cr_u64(r);
    if (nsl > MAX_SKIP_LINES) goto bad;
    d->n_skip_lines = (int)nsl;
    cr_get(r, d->skip_lines, sizeof d->skip_lines);
    if (r->err || r->remain != 0) goto bad;
    uint64_t sum;
    if (fread(&sum, 1, 8, r->f) != 8 || sum != r->h) goto bad;
    /* ids out of range would index past embedding tables: check them all */
    for (size_t i = 0; i < n; i++)
        for (uint64_t f = 0; f < n_cat; f++) {
            int32_t v = d->catv[i * n_cat + f];
            if (v < 0 || v >= d->vocab[f]) goto bad;
        }
    set_split_views(d);
    d->from_cache = 1;
    return d;
bad:
    tl_dataset_free(d);
    return NULL;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    uint64_t n = s ? strlen(s) + 1 : 0; /* NULL and "" differ */
    h = hash_bytes(&n, 8, h);
    return s ? hash_bytes(s, n, h) : h;
}
static uint64_t hash_u64(uint64_t h, uint64_t v) { return hash_bytes(&v, 8, h); }

static uint64_t schema_hash(const tl_data_schema *s)
{
    uint64_t h = hash_str(0x746c6461ULL, "towerlab dataset cache v1");
    h = hash_str(h, s->sep);
    h = hash_u64(h, (uint64_t)s->header);
    h = hash_u64(h, (uint64_t)s->n_columns);
    for (int i = 0; i < s->n_columns; i++) h = hash_str(h, s->columns[i]);
    h = hash_u64(h, (uint64_t)s->skip);
    h = hash_u64(h, s->missing ? (uint64_t)s->n_missing : UINT64_MAX);
    for (int i = 0; i < s->n_missing && s->missing; i++) h = hash_str(h, s->missing[i]);
    h = hash_u64(h, (uint64_t)s->n_cat);
    for (int i = 0; i < s->n_cat; i++) {
        h = hash_str(h, s->cat[i].name);
        h = hash_u64(h, (uint64_t)s->cat[i].min_count);
        h = hash_u64(h, (uint64_t)s->cat[i].hash_buckets);
    }
    h = hash_u64(h, (uint64_t)s->n_num);
    for (int i = 0; i < s->n_num; i++) {
        h = hash_str(h, s->num[i].name);
        h = hash_u64(h, (uint64_t)s->num[i].transform);
        h = hash_u64(h, (uint64_t)s->num[i].buckets);
    }
    h = hash_u64(h, (uint64_t)s->n_labels);
    for (int i = 0; i < s->n_labels; i++) {
        const tl_data_label *l = &s->labels[i];
        h = hash_str(h, l->task);
        h = hash_str(h, l->column);
        h = hash_u64(h, (uint64_t)l->kind);
        h = hash_u64(h, (uint64_t)l->n_positive);
        for (int k = 0; k < l->n_positive; k++) h = hash_str(h, l->positive[k]);
        h = hash_u64(h, (uint64_t)l->n_negative);
        for (int k = 0; k < l->n_negative; k++) h = hash_str(h, l->negative[k]);
        /* caches made before unknown label values were errors mapped them to
         * 0, as unknown_negative does: only the new rule changes the key */
        if (l->kind == TL_LABEL_POSITIVE && l->n_negative == 0 && !l->unknown_negative)
            h = hash_str(h, "unknown label values are errors");
        h = hash_bytes(&l->threshold, sizeof l->threshold, h);
        h = hash_u64(h, (uint64_t)l->keep);
    }
    h = hash_str(h, s->id);
    h = hash_str(h, s->weight);
    h = hash_u64(h, (uint64_t)s->min_count);
    h = hash_u64(h, (uint64_t)s->split);
    if (s->split == TL_SPLIT_RATIO) {
        h = hash_bytes(s->ratio, sizeof s->ratio, h);
        h = hash_u64(h, s->seed);
    }
    if (s->split == TL_SPLIT_MODULO) {
        h = hash_u64(h, (uint64_t)s->modulo);
        h = hash_bytes(s->modulo_to, (size_t)s->modulo, h);
    }
    h = hash_u64(h, (uint64_t)s->on_bad);
    h = hash_str(h, s->name);
    return h;
}

/* Fold a source file's identity (size, mtime, content) into h. */
static tl_status file_key(const char *path, uint64_t *h)
{
    struct stat sb;
    if (!path) {
        *h = hash_u64(*h, 0);
        return TL_OK;
    }
    if (stat(path, &sb) != 0) return tl_fail(TL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    *h = hash_u64(*h, (uint64_t)sb.st_size);
    *h = hash_u64(*h, (uint64_t)sb.st_mtim.tv_sec);
    *h = hash_u64(*h, (uint64_t)sb.st_mtim.tv_nsec);
    FILE *f = fopen(path, "rb");
    if (!f) return tl_fail(TL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    enum { CH = 1 << 20 };
    unsigned char *buf = tl_malloc(CH, "cache key buffer");
    if (!buf) {
        fclose(f);
        return TL_ERR_NOMEM;
    }
    size_t got;
    while ((got = fread(buf, 1, CH, f)) > 0) *h = hash_bytes(buf, got, *h);
    int err = ferror(f);
    fclose(f);
    tl_free(buf);
    if (err) return tl_fail(TL_ERR_IO, "cannot read '%s'", path);
    return TL_OK;
}

static char *cache_path(const tl_data_schema *s, uint64_t shash)
{
    const char *base = strrchr(s->path, '/');
    base = base ? base + 1 : s->path;
    size_t n = (s->cache_dir ? strlen(s->cache_dir) + 1 + strlen(base) : strlen(s->path)) + 40;
    char *p = tl_malloc(n, "cache path");
    if (!p) return NULL;
    if (s->cache_dir)
        snprintf(p, n, "%s/%s.%08x.tlcache", s->cache_dir, base, (unsigned)(shash & 0xffffffffu));
    else
        snprintf(p, n, "%s.%08x.tlcache", s->path, (unsigned)(shash & 0xffffffffu));
    return p;
}

static tl_dataset *cache_read(const char *cpath, uint64_t key)
{
    FILE *f = fopen(cpath, "rb");
    if (!f) return NULL;
    struct stat sb;
    char magic[8];
    uint32_t ver[2];
    uint64_t k;
    tl_dataset *d = NULL;
    if (fstat(fileno(f), &sb) == 0 && sb.st_size >= 40 && fread(magic, 1, 8, f) == 8 &&
        memcmp(magic, CACHE_MAGIC, 8) == 0 && fread(ver, 4, 2, f) == 2 && ver[0] == CACHE_VERSION &&
        fread(&k, 8, 1, f) == 1 && k == key) {
        setvbuf(f, NULL, _IONBF, 0); /* large reads go straight into the arrays */
        cio r = {f, 0, 0, (uint64_t)sb.st_size - 32};
        d = read_dataset(&r);
    }
    fclose(f);
    tl_clear_error();
    return d;
}

/* Best effort: a cache that cannot be written costs speed, not correctness. */
static void cache_write(const char *cpath, uint64_t key, const tl_dataset *d)
{
    size_t n = strlen(cpath) + 32;
    char *tmp = tl_malloc(n, "cache path");
    if (!tmp) {
        tl_clear_error();
        return;
    }
    snprintf(tmp, n, "%s.tmp%ld", cpath, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (f) {
        uint32_t ver[2] = {CACHE_VERSION, 0};
        cio w = {f, 0, 0, 0};
        int ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(ver, 4, 2, f) == 2 && fwrite(&key, 8, 1, f) == 1;
        write_dataset(&w, d);
        ok = ok && !w.err && fwrite(&w.h, 8, 1, f) == 1;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, cpath) != 0) remove(tmp);
    }
    tl_free(tmp);
}

/* ---- CSV loading ---------------------------------------------------------- */

tl_status tl_data_csv_load(const tl_data_schema *s, const tl_dataset *like, tl_dataset **out)
{
    static const char *fn = "tl_data_csv_load";
    if (!out) return tl_fail(TL_ERR_ARG, "%s: NULL output", fn);
    *out = NULL;
    tl_status st = schema_check(s, fn);
    if (st) return st;
    plan p;
    if ((st = plan_make(s, fn, &p))) {
        plan_free(&p);
        return st;
    }
    const char *base = strrchr(s->path, '/');
    const char *source = s->name ? s->name : base ? base + 1 : s->path;
    const int use_cache = s->cache && !like;
    char *cpath = NULL;
    uint64_t key = 0;
    rawset rs;
    memset(&rs, 0, sizeof rs);
    if (use_cache) {
        uint64_t sh = schema_hash(s);
        key = sh;
        if ((st = file_key(s->path, &key))) goto done;
        if (s->split == TL_SPLIT_FILES) {
            if ((st = file_key(s->valid_path, &key))) goto done;
            if ((st = file_key(s->test_path, &key))) goto done;
        }
        if (s->cache_dir) mkdir(s->cache_dir, 0777); /* one level; failure shows up as no cache */
        cpath = cache_path(s, sh);
        if (!cpath) {
            st = TL_ERR_NOMEM;
            goto done;
        }
        tl_dataset *d = cache_read(cpath, key);
        if (d) {
            *out = d;
            goto done;
        }
    }
    if ((st = rs_init(&rs, p.n_cat, p.n_num, s->n_labels, s->id != NULL, s->weight != NULL))) goto done;
    rs.allow_unlabeled = like != NULL;
    if ((st = read_csv(s, &p, s->path, TL_TO_TRAIN, &rs))) goto done;
    if (s->split == TL_SPLIT_FILES && !like) {
        if (s->valid_path && (st = read_csv(s, &p, s->valid_path, TL_TO_VALID, &rs))) goto done;
        if (s->test_path && (st = read_csv(s, &p, s->test_path, TL_TO_TEST, &rs))) goto done;
    }
    finish_args fa = {&p, s, like, source};
    if ((st = finish(&rs, &fa, out))) goto done;
    if (use_cache) cache_write(cpath, key, *out);
done:
    rs_free(&rs);
    plan_free(&p);
    tl_free(cpath);
    return st;
}

/* ---- census --------------------------------------------------------------- */

static const char *const CENSUS_COLS[42] = {
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour", "hs_college",
    "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses", "stock_dividends", "tax_filer_stat",
    "region_prev_res", "state_prev_res", "det_hh_fam_stat", "det_hh_summ", "instance_weight", "mig_chg_msa",
    "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father",
    "country_mother", "country_self", "citizenship", "own_or_self", "vet_question", "vet_benefits",
    "weeks_worked", "year", "income_50k"};
static const int CENSUS_NUMERIC[] = {0, 5, 16, 17, 18, 30, 39};

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = tl_malloc(n, "path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

tl_status tl_data_census_ex(const char *dir, int with_education, int cache, tl_dataset **out)
{
    if (!out) return tl_fail(TL_ERR_ARG, "census: NULL output");
    *out = NULL;
    char *path = NULL;
    if (!dir) dir = "data/census_income_kdd"; /* the REPL finds the real place (repl/l_data.c) */
    static const char *const files[] = {"census-income.test.gz", "census-income.test"};
    for (int i = 0; i < 2 && !path; i++) {
        char *p = path_join(dir, files[i]);
        if (!p) return TL_ERR_NOMEM;
        if (file_exists(p)) path = p;
        else tl_free(p);
    }
    if (!path) {
        tl_status st = tl_fail(TL_ERR_IO, "census: no census-income.test.gz in '%s' (pass the directory holding it)",
                               dir);
        return st;
    }
    tl_data_cat_col cat[42];
    tl_data_num_col num[8];
    int nc = 0, nn = 0;
    for (int c = 0; c < 41; c++) {
        int isnum = 0;
        for (size_t k = 0; k < sizeof CENSUS_NUMERIC / sizeof *CENSUS_NUMERIC; k++) isnum |= CENSUS_NUMERIC[k] == c;
        if (c == 24) continue; /* instance_weight: UCI says ignore it */
        if (c == 7 || (c == 4 && with_education)) continue; /* label columns are not features */
        if (isnum) num[nn++] = (tl_data_num_col){CENSUS_COLS[c], TL_NUM_STANDARD, 0};
        else cat[nc++] = (tl_data_cat_col){CENSUS_COLS[c], 0, 0};
    }
    static const char *const inc_pos[] = {"50000+."}, *const inc_neg[] = {"- 50000."};
    static const char *const nm_pos[] = {"Never married"};
    static const char *const edu_pos[] = {"Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)",
                                          "Prof school degree (MD DDS DVM LLB JD)", "Doctorate degree(PhD EdD)"};
    tl_data_label labels[3] = {
        {.task = "income", .column = "income_50k", .kind = TL_LABEL_POSITIVE, .positive = inc_pos,
         .n_positive = 1, .negative = inc_neg, .n_negative = 1},
        {.task = "never_married", .column = "marital_stat", .kind = TL_LABEL_POSITIVE, .positive = nm_pos,
         .n_positive = 1, .unknown_negative = 1},
        {.task = "education", .column = "education", .kind = TL_LABEL_POSITIVE, .positive = edu_pos,
         .n_positive = 4, .unknown_negative = 1},
    };
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = path;
    s.name = "census-income.test";
    s.sep = ", ";
    s.header = 0;
    s.columns = CENSUS_COLS;
    s.n_columns = 42;
    s.cat = cat;
    s.n_cat = nc;
    s.num = num;
    s.n_num = nn;
    s.labels = labels;
    s.n_labels = with_education ? 3 : 2;
    s.split = TL_SPLIT_MODULO;
    s.modulo = 10;
    for (int k = 0; k < 10; k++) s.modulo_to[k] = k < 8 ? TL_TO_TRAIN : k == 8 ? TL_TO_VALID : TL_TO_TEST;
    s.cache = cache;
    tl_status st = tl_data_csv_load(&s, NULL, out);
    tl_free(path);
    return st;
}

tl_status tl_data_census(const char *dir, int with_education, tl_dataset **out)
{
    return tl_data_census_ex(dir, with_education, 1, out);
}

/* ---- Amazon Video Games (the DML authors' preprocessing) ------------------ */

tl_status tl_data_amazon_video_games(const char *dir, uint64_t seed, tl_dataset **out)
{
    static const char *fn = "amazon_video_games";
    if (!out) return tl_fail(TL_ERR_ARG, "%s: NULL output", fn);
    *out = NULL;
    if (!dir) return tl_fail(TL_ERR_ARG, "%s: no directory", fn);
    static const char *const files[2] = {"Video_Games_val.txt", "Video_Games_test.txt"};
    char *paths[2] = {NULL, NULL};
    tl_status st = TL_OK;
    rawset rs;
    memset(&rs, 0, sizeof rs);
    plan p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < 2; i++) {
        if (!(paths[i] = path_join(dir, files[i]))) {
            st = TL_ERR_NOMEM;
            goto done;
        }
        if (!file_exists(paths[i])) {
            st = tl_fail(TL_ERR_IO,
                         "%s: no %s in '%s' (the DML authors' Video_Games_val.txt and Video_Games_test.txt; "
                         "pass their directory with path=)",
                         fn, files[i], dir);
            goto done;
        }
    }
    static const char *const cols[4] = {"rated", "like", "user_id", "item_id"};
    static const char *const pos[] = {"1.0", "1"}, *const neg[] = {"0.0", "0"};
    tl_data_cat_col cat[2] = {{"user_id", 0, 0}, {"item_id", 0, 0}};
    tl_data_label lab[2] = {
        {.task = "rated", .column = "rated", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 2,
         .negative = neg, .n_negative = 2},
        {.task = "like", .column = "like", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 2,
         .negative = neg, .n_negative = 2},
    };
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = paths[0];
    s.header = 0;
    s.columns = cols;
    s.n_columns = 4;
    s.cat = cat;
    s.n_cat = 2;
    s.labels = lab;
    s.n_labels = 2;
    s.id = "user_id";
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.8;
    s.ratio[1] = 0.1;
    s.ratio[2] = 0.1;
    s.seed = seed;
    if ((st = plan_make(&s, fn, &p))) goto done;
    if ((st = rs_init(&rs, p.n_cat, p.n_num, 2, 1, 0))) goto done;
    for (int i = 0; i < 2; i++) {
        size_t first = rs.n;
        if ((st = read_csv(&s, &p, paths[i], TL_TO_TRAIN, &rs))) goto done;
        /* rows count through the concatenation val + test */
        for (size_t r = first; r < rs.n; r++) {
            if (rs.lab[2 * r + 1] == 1.0f && rs.lab[2 * r] != 1.0f) {
                st = tl_fail(TL_ERR_PARSE, "%s: %s: data row %llu has like = 1 but rated = 0 (the tasks are nested)",
                             fn, paths[i], (unsigned long long)rs.row[r] + 1);
                goto done;
            }
            rs.row[r] += (uint32_t)first;
        }
    }
    finish_args fa = {&p, &s, NULL, "amazon_video_games_dml"};
    st = finish(&rs, &fa, out);
done:
    rs_free(&rs);
    plan_free(&p);
    tl_free(paths[0]);
    tl_free(paths[1]);
    return st;
}

/* ---- synthetic ------------------------------------------------------------ */

tl_status tl_data_synthetic(const tl_synthetic_params *p, tl_dataset **out)
{
    if (!out) return tl_fail(TL_ERR_ARG, "synthetic: NULL output");
    *out = NULL;
    tl_status st = tl_synthetic_check(p);
    if (st) return st;
    tl_dataset *d = NULL;
    if ((st = alloc_dataset(&d, 0, p->dim, 2))) goto fail;
    d->n = p->n;
    d->has_splits = 1;
    d->split_n[0] = (size_t)llround(0.8 * (double)p->n);
    d->split_n[1] = (size_t)llround(0.1 * (double)p->n);
    if (d->split_n[0] + d->split_n[1] > p->n) d->split_n[1] = p->n - d->split_n[0];
    d->split_n[2] = p->n - d->split_n[0] - d->split_n[1];
    d->source = tl_strdup("synthetic", "dataset source");
    d->catv = tl_malloc(sizeof(int32_t), "categorical features");
    d->numv = tl_malloc(sizeof(float) * p->n * (size_t)p->dim, "synthetic features");
    d->labv = tl_malloc(sizeof(float) * p->n * 2, "synthetic labels");
    d->row = tl_malloc(sizeof(uint32_t) * p->n, "row indices");
    if (!d->source || !d->catv || !d->numv || !d->labv || !d->row) {
        st = TL_ERR_NOMEM;
        goto fail;
    }
    for (int j = 0; j < p->dim; j++) {
        char nm[32];
        snprintf(nm, sizeof nm, "x%d", j + 1);
        d->num[j].transform = TL_NUM_NONE;
        d->num[j].mean = 0;
        d->num[j].std = 1;
        if (!(d->num[j].name = tl_strdup(nm, "column name"))) {
            st = TL_ERR_NOMEM;
            goto fail;
        }
    }
    for (int t = 0; t < 2; t++) {
        d->task_type[t] = TL_TASK_REGRESSION;
        if (!(d->task_name[t] = tl_strdup(t ? "y2" : "y1", "task name"))) {
            st = TL_ERR_NOMEM;
            goto fail;
        }
    }
    if ((st = tl_synthetic_generate(p, d->numv, d->labv))) goto fail;
    for (size_t i = 0; i < p->n; i++) d->row[i] = (uint32_t)i;
    set_split_views(d);
    *out = d;
    return TL_OK;
fail:
    tl_dataset_free(d);
    return st;
}

/* The user/item task pair (synthetic.h): categorical user_id, item_id,
 * user_segment, item_category, context; numeric user_activity, item_price, x
 * (standardised on train); tasks a and b; random 8:1:1 split by the seed. */
tl_status tl_data_synthetic_pair(const tl_synth_pair_params *p, tl_dataset **out)
{
    static const char *fn = "synthetic_pair";
    if (!out) return tl_fail(TL_ERR_ARG, "%s: NULL output", fn);
    *out = NULL;
    tl_status st = tl_synth_pair_check(p);
    if (st) return st;
    const size_t n = p->rows;
    rawset rs;
    memset(&rs, 0, sizeof rs);
    plan pl;
    memset(&pl, 0, sizeof pl);
    int32_t *ci = tl_malloc(sizeof(int32_t) * 5 * n, "synthetic_pair columns");
    float *cf = tl_malloc(sizeof(float) * 5 * n, "synthetic_pair columns");
    if (!ci || !cf) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    tl_synth_pair_out o = {ci, ci + n, ci + 2 * n, ci + 3 * n, ci + 4 * n, cf, cf + n, cf + 2 * n,
                           NULL, NULL, cf + 3 * n, cf + 4 * n};
    if ((st = tl_synth_pair_generate(p, &o))) goto done;
    static const char *const cats[5] = {"user_id", "item_id", "user_segment", "item_category", "context"};
    static const char *const nums[3] = {"user_activity", "item_price", "x"};
    tl_data_cat_col cat[5];
    tl_data_num_col num[3];
    for (int k = 0; k < 5; k++) cat[k] = (tl_data_cat_col){cats[k], 0, 0};
    for (int k = 0; k < 3; k++) num[k] = (tl_data_num_col){nums[k], TL_NUM_STANDARD, 0};
    static const char *const pos[] = {"1"}, *const neg[] = {"0"};
    tl_data_label lab[2] = {
        {.task = "a", .column = "a", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1, .negative = neg,
         .n_negative = 1},
        {.task = "b", .column = "b", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1, .negative = neg,
         .n_negative = 1},
    };
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = "synthetic_pair";
    s.cat = cat;
    s.n_cat = 5;
    s.num = num;
    s.n_num = 3;
    s.labels = lab;
    s.n_labels = 2;
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.8;
    s.ratio[1] = 0.1;
    s.ratio[2] = 0.1;
    s.seed = p->seed;
    if ((st = plan_make(&s, fn, &pl))) goto done;
    if ((st = rs_init(&rs, 5, 3, 2, 0, 0))) goto done;
    for (size_t i = 0; i < n; i++) {
        if ((st = rs_reserve(&rs))) goto done;
        for (int k = 0; k < 5; k++) {
            char buf[16];
            int len = snprintf(buf, sizeof buf, "%d", (int)ci[(size_t)k * n + i]);
            if ((st = st_intern(&rs.tab[k], buf, (size_t)len, &rs.cat[i * 5 + (size_t)k]))) goto done;
        }
        for (int k = 0; k < 3; k++) rs.num[i * 3 + (size_t)k] = cf[(size_t)k * n + i];
        rs.lab[i * 2] = cf[3 * n + i];
        rs.lab[i * 2 + 1] = cf[4 * n + i];
        rs.row[i] = (uint32_t)i;
        rs.n++;
    }
    char src[96];
    snprintf(src, sizeof src, "synthetic_pair(rho=%g, %s)", p->rho, p->nested ? "nested" : "not nested");
    finish_args fa = {&pl, &s, NULL, src};
    st = finish(&rs, &fa, out);
done:
    rs_free(&rs);
    plan_free(&pl);
    tl_free(ci);
    tl_free(cf);
    return st;
}

/* ---- MovieLens ------------------------------------------------------------ */

typedef struct {
    char gender[4], age[8], occ[32], zip[4];
    int present;
} ml_user;

typedef struct {
    char genre[24], year[8];
    int present;
} ml_movie;

static void copy_field(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static int parse_id(const field *f, uint32_t max, uint32_t *out)
{
    double v;
    if (!parse_number(f->p, f->n, &v) || v < 0 || v > max || v != floor(v)) return 0;
    *out = (uint32_t)v;
    return 1;
}

#define ML_MAX_ID 10000000u

/* Grow a table indexed by id so that id fits. */
static tl_status ml_grow(void **tab, size_t *cap, size_t elem, uint32_t id)
{
    if (id < *cap) return TL_OK;
    size_t nc = *cap ? *cap : 1024;
    while (nc <= id) nc *= 2;
    char *nt = tl_realloc(*tab, nc * elem, "movielens table");
    if (!nt) return TL_ERR_NOMEM;
    memset(nt + *cap * elem, 0, (nc - *cap) * elem);
    *tab = nt;
    *cap = nc;
    return TL_OK;
}

typedef struct {
    ml_user *users;
    size_t n_users;
    ml_movie *movies;
    size_t n_movies;
    char genres[32][24];
    int n_genres;
} ml_tables;

/* users.dat (UserID::Gender::Age::Occupation::Zip) or u.user
 * (user id|age|gender|occupation|zip). */
static tl_status ml_read_users(const char *path, int is_1m, ml_tables *t)
{
    lreader lr;
    tl_status st = lr_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got;
    field f[6];
    const char *sep = is_1m ? "::" : "|";
    while (!(st = lr_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        uint32_t id;
        int nf = split_fields(line, len, sep, strlen(sep), f, 6);
        if (nf != 5) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected 5 fields, got %d", path, (unsigned long long)lr.line, nf);
            break;
        }
        if (!parse_id(&f[0], ML_MAX_ID, &id)) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 1: expected a user id, got \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[0].n > 40 ? 40 : f[0].n), f[0].p);
            break;
        }
        if ((st = ml_grow((void **)&t->users, &t->n_users, sizeof *t->users, id))) break;
        ml_user *u = &t->users[id];
        const field *g = is_1m ? &f[1] : &f[2], *a = is_1m ? &f[2] : &f[1];
        copy_field(u->gender, sizeof u->gender, g->p, g->n);
        copy_field(u->age, sizeof u->age, a->p, a->n);
        copy_field(u->occ, sizeof u->occ, f[3].p, f[3].n);
        copy_field(u->zip, sizeof u->zip, f[4].p, f[4].n); /* first 3 characters: a coarse region */
        u->present = 1;
    }
    lr_close(&lr);
    return st;
}

/* movies.dat (MovieID::Title (Year)::G1|G2) or u.item (id|title|date|video
 * date|url|19 genre flags). The first genre is the movie's genre. */
static tl_status ml_read_movies(const char *path, int is_1m, ml_tables *t)
{
    lreader lr;
    tl_status st = lr_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got;
    field f[32];
    while (!(st = lr_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        uint32_t id;
        const char *title, *genre = "", *year = "";
        size_t tn, gn = 0, yn = 0;
        if (is_1m) {
            /* titles may hold "::"-free text with ':'; split on the first and last "::" */
            char *a = strstr(line, "::"), *b = NULL;
            for (char *q = a ? strstr(a + 2, "::") : NULL; q; q = strstr(q + 2, "::")) b = q;
            if (!a || !b) {
                st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected MovieID::Title::Genres", path,
                             (unsigned long long)lr.line);
                break;
            }
            f[0].p = line;
            f[0].n = (uint32_t)(a - line);
            title = a + 2;
            tn = (size_t)(b - title);
            genre = b + 2;
            const char *bar = strchr(genre, '|');
            gn = bar ? (size_t)(bar - genre) : strlen(genre);
            if (tn >= 6 && title[tn - 1] == ')' && title[tn - 6] == '(') {
                year = title + tn - 5;
                yn = 4;
            }
        } else {
            int nf = split_fields(line, len, "|", 1, f, 32);
            if (nf != 24) {
                st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected 24 fields, got %d", path, (unsigned long long)lr.line,
                             nf);
                break;
            }
            if (f[2].n >= 4) {
                year = f[2].p + f[2].n - 4;
                yn = 4;
            }
            for (int g = 0; g < 19; g++)
                if (f[5 + g].n == 1 && f[5 + g].p[0] == '1') {
                    genre = g < t->n_genres ? t->genres[g] : "";
                    gn = strlen(genre);
                    break;
                }
        }
        if (!parse_id(&f[0], ML_MAX_ID, &id)) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 1: expected a movie id, got \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[0].n > 40 ? 40 : f[0].n), f[0].p);
            break;
        }
        if ((st = ml_grow((void **)&t->movies, &t->n_movies, sizeof *t->movies, id))) break;
        ml_movie *m = &t->movies[id];
        copy_field(m->genre, sizeof m->genre, genre, gn);
        copy_field(m->year, sizeof m->year, year, yn);
        m->present = 1;
    }
    lr_close(&lr);
    return st;
}

/* u.genre: "name|index" lines. */
static tl_status ml_read_genres(const char *path, ml_tables *t)
{
    lreader lr;
    tl_status st = lr_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got;
    field f[3];
    while (!(st = lr_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        uint32_t g;
        if (split_fields(line, len, "|", 1, f, 3) != 2 || !parse_id(&f[1], 31, &g)) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected name|index", path, (unsigned long long)lr.line);
            break;
        }
        copy_field(t->genres[g], sizeof t->genres[g], f[0].p, f[0].n);
        if ((int)g + 1 > t->n_genres) t->n_genres = (int)g + 1;
    }
    lr_close(&lr);
    return st;
}

static tl_status ml_read_ratings(const char *path, int is_1m, const ml_tables *t, rawset *rs)
{
    lreader lr;
    tl_status st = lr_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got;
    field f[5];
    const char *sep = is_1m ? "::" : "\t";
    uint64_t data_row = 0;
    while (!(st = lr_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        if ((++data_row & (CANCEL_EVERY - 1)) == 0 && tl_cancelled()) {
            st = tl_fail(TL_ERR_CANCELLED, "%s: loading cancelled at line %llu", path, (unsigned long long)lr.line);
            break;
        }
        int nf = split_fields(line, len, sep, strlen(sep), f, 5);
        uint32_t u, m, r;
        if (nf != 4) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected 4 fields, got %d (ragged row)", path,
                         (unsigned long long)lr.line, nf);
            break;
        }
        if (!parse_id(&f[0], ML_MAX_ID, &u) || u >= t->n_users || !t->users[u].present) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 1: unknown user id \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[0].n > 40 ? 40 : f[0].n), f[0].p);
            break;
        }
        if (!parse_id(&f[1], ML_MAX_ID, &m) || m >= t->n_movies || !t->movies[m].present) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 2: unknown movie id \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[1].n > 40 ? 40 : f[1].n), f[1].p);
            break;
        }
        if (!parse_id(&f[2], 5, &r) || r < 1) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 3: expected a rating 1..5, got \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[2].n > 40 ? 40 : f[2].n), f[2].p);
            break;
        }
        if ((st = rs_reserve(rs))) break;
        size_t i = rs->n;
        const ml_user *us = &t->users[u];
        const ml_movie *mv = &t->movies[m];
        const char *vals[8] = {NULL, NULL, us->gender, us->age, us->occ, us->zip, mv->genre, mv->year};
        size_t lens[8] = {f[0].n, f[1].n, 0, 0, 0, 0, 0, 0};
        vals[0] = f[0].p;
        vals[1] = f[1].p;
        for (int k = 0; k < 8 && !st; k++) {
            size_t n = k < 2 ? lens[k] : strlen(vals[k]);
            if (n == 0) rs->cat[i * 8 + (size_t)k] = -1;
            else st = st_intern(&rs->tab[k], vals[k], n, &rs->cat[i * 8 + (size_t)k]);
        }
        if (!st) st = st_intern(&rs->gtab, f[0].p, f[0].n, &rs->grp[i]);
        if (st) break;
        rs->lab[i * 2] = r >= 4 ? 1.0f : 0.0f;
        rs->lab[i * 2 + 1] = (float)r;
        rs->row[i] = (uint32_t)(data_row - 1);
        rs->n++;
    }
    if (!st && data_row == 0) st = tl_fail(TL_ERR_PARSE, "%s: empty file (no ratings)", path);
    lr_close(&lr);
    return st;
}

tl_status tl_data_movielens(const char *dir, uint64_t seed, tl_dataset **out)
{
    if (!out) return tl_fail(TL_ERR_ARG, "movielens: NULL output");
    *out = NULL;
    if (!dir) dir = "../shared/data/movielens_1m";
    static const char *const r1m[] = {"ratings.dat", "ratings.dat.gz", "ratings_prefix_users0001-2999.dat.gz"};
    static const char *const r100k[] = {"u.data", "u.data.gz"};
    char *users = NULL, *movies = NULL, *genres = NULL, *ratings = NULL;
    ml_tables t;
    memset(&t, 0, sizeof t);
    rawset rs;
    memset(&rs, 0, sizeof rs);
    tl_status st = TL_OK;
    int is_1m = 0;
    if (!(users = path_join(dir, "users.dat"))) return TL_ERR_NOMEM;
    if (file_exists(users)) {
        is_1m = 1;
        movies = path_join(dir, "movies.dat");
        for (int i = 0; i < 3 && !ratings; i++) {
            char *p = path_join(dir, r1m[i]);
            if (p && file_exists(p)) ratings = p;
            else tl_free(p);
        }
    } else {
        tl_free(users);
        users = path_join(dir, "u.user");
        movies = path_join(dir, "u.item");
        genres = path_join(dir, "u.genre");
        for (int i = 0; i < 2 && !ratings && users && file_exists(users); i++) {
            char *p = path_join(dir, r100k[i]);
            if (p && file_exists(p)) ratings = p;
            else tl_free(p);
        }
    }
    if (!users || !movies || (!is_1m && !genres)) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    if (!ratings) {
        st = tl_fail(TL_ERR_IO,
                     "movielens: no MovieLens data in '%s' (expected ML-1M users.dat, movies.dat and ratings.dat[.gz], "
                     "or ML-100K u.user, u.item, u.genre and u.data[.gz])",
                     dir);
        goto done;
    }
    if (!is_1m && (st = ml_read_genres(genres, &t))) goto done;
    if ((st = ml_read_users(users, is_1m, &t))) goto done;
    if ((st = ml_read_movies(movies, is_1m, &t))) goto done;
    if ((st = rs_init(&rs, 8, 0, 2, 1, 0))) goto done;
    if ((st = ml_read_ratings(ratings, is_1m, &t, &rs))) goto done;
    {
        static const char *const names[8] = {"user_id", "movie_id", "gender", "age",
                                              "occupation", "zip", "genre", "year"};
        tl_data_cat_col cat[8];
        for (int k = 0; k < 8; k++) cat[k] = (tl_data_cat_col){names[k], 0, 0};
        tl_data_label labels[2] = {
            {.task = "like", .column = "rating", .kind = TL_LABEL_THRESHOLD, .threshold = 4},
            {.task = "rating", .column = "rating", .kind = TL_LABEL_REGRESSION},
        };
        tl_data_schema s;
        tl_data_schema_init(&s);
        s.path = ratings;
        s.cat = cat;
        s.n_cat = 8;
        s.labels = labels;
        s.n_labels = 2;
        s.split = TL_SPLIT_RATIO;
        s.ratio[0] = 0.8;
        s.ratio[1] = 0.1;
        s.ratio[2] = 0.1;
        s.seed = seed;
        plan p;
        if ((st = plan_make(&s, "movielens", &p))) {
            plan_free(&p);
            goto done;
        }
        const char *base = strrchr(ratings, '/');
        finish_args fa = {&p, &s, NULL, base ? base + 1 : ratings};
        st = finish(&rs, &fa, out);
        plan_free(&p);
    }
done:
    rs_free(&rs);
    tl_free(t.users);
    tl_free(t.movies);
    tl_free(users);
    tl_free(movies);
    tl_free(genres);
    tl_free(ratings);
    return st;
}
