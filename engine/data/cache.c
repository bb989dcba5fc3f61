/* data/cache.c — the binary dataset cache (*.tlcache): its key (the schema
 * and each source file's size, mtime and content), its path, and writing and
 * reading a finished dataset with a checksum. Any change to the byte layout
 * or the key needs CACHE_VERSION bumped. Also the encodings record of a shard
 * directory: the same fields' encodings without rows (tl_data_encodings_*).
 */
#include "data_internal.h"
#include "dataset.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_VERSION 2u /* 2: the multi-valued fields */
static const char CACHE_MAGIC[8] = {'T', 'L', 'D', 'S', 'C', 'A', 'C', 'H'};

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

/* A field's encoding: name, kind, size, buckets, vocabulary strings and, for
 * a single field, its quantile edges (the cache's and the encodings record's
 * byte layout). */
static void write_encoding(cio *w, const dcat *c, int single)
{
    cw_str(w, c->name);
    cw_u64(w, (uint64_t)c->kind);
    cw_u64(w, (uint64_t)c->size);
    cw_u64(w, (uint64_t)c->buckets);
    cw_u64(w, c->n_str);
    if (c->kind == CAT_VOCAB) {
        cw_put(w, c->str_off, sizeof *c->str_off * ((size_t)c->n_str + 1));
        cw_put(w, c->str_blob, c->str_off[c->n_str]);
    }
    if (!single) return;
    cw_u64(w, c->n_edges);
    cw_put(w, c->edges, sizeof *c->edges * c->n_edges);
}

static void write_num(cio *w, const dnum *x)
{
    cw_str(w, x->name);
    cw_u64(w, (uint64_t)x->transform);
    cw_put(w, &x->mean, 8);
    cw_put(w, &x->std, 8);
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
    for (int f = 0; f < d->n_cat; f++) write_encoding(w, &d->cat[f], 1);
    for (int j = 0; j < d->n_num; j++) write_num(w, &d->num[j]);
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
    cw_u64(w, (uint64_t)d->n_bag);
    for (int b = 0; b < d->n_bag; b++) {
        const dbag *g = &d->bag[b];
        write_encoding(w, &g->c, 0);
        cw_u64(w, (uint64_t)g->len);
        cw_u64(w, (uint64_t)g->pool);
        cw_u64(w, (uint64_t)g->keep_first);
        cw_u64(w, g->truncated);
    }
    if (d->n_bag) cw_put(w, d->bagv, sizeof *d->bagv * d->n * (size_t)d->bag_slots);
}

/* The vocabulary strings of a CAT_VOCAB encoding with n_str strings. */
static int read_strings(cio *r, dcat *c, uint64_t n_str)
{
    if (!(c->str_off = cr_array(r, n_str + 1, sizeof *c->str_off))) return 0;
    uint64_t bl = c->str_off[n_str];
    if (c->str_off[0] != 0) return 0;
    for (uint64_t i = 0; i < n_str; i++)
        if (c->str_off[i + 1] <= c->str_off[i] || c->str_off[i + 1] > bl) return 0;
    if (!(c->str_blob = cr_array(r, bl, 1))) return 0;
    for (uint64_t i = 0; i < n_str; i++)
        if (c->str_blob[c->str_off[i + 1] - 1] != 0) return 0;
    return 1;
}

/* write_encoding's field, checked: 0 when anything does not hold. */
static int read_encoding(cio *r, dcat *c, int single)
{
    c->name = cr_str(r);
    uint64_t kind = cr_u64(r), size = cr_u64(r), buckets = cr_u64(r), n_str = cr_u64(r);
    if (!c->name || kind > (single ? CAT_QUANT : CAT_HASH) || size < 1 || size > INT32_MAX || buckets > INT32_MAX ||
        n_str > INT32_MAX)
        return 0;
    c->kind = (int)kind;
    c->size = (int32_t)size;
    c->buckets = (int32_t)buckets;
    c->n_str = (uint32_t)n_str;
    if (kind == CAT_VOCAB ? size != n_str + ID_FIRST || !read_strings(r, c, n_str) : n_str != 0) return 0;
    if (!single) return kind == CAT_VOCAB || size == buckets + 1;
    uint64_t ne = cr_u64(r);
    if (ne > INT32_MAX) return 0;
    c->n_edges = (uint32_t)ne;
    if (!(c->edges = cr_array(r, ne, sizeof *c->edges))) return 0;
    return kind == CAT_QUANT ? size == ne + 2 : kind == CAT_HASH ? size == buckets + 1 && !ne : !ne;
}

static int read_num(cio *r, dnum *x)
{
    x->name = cr_str(r);
    uint64_t tr = cr_u64(r);
    if (!x->name || tr > NUM_FLAG || tr == TL_NUM_QUANTILE) return 0;
    x->transform = (int)tr;
    cr_get(r, &x->mean, 8);
    return cr_get(r, &x->std, 8);
}

/* The multi-valued fields and their ids (checked against their sizes). */
static int read_bags(cio *r, tl_dataset *d)
{
    uint64_t nb = cr_u64(r);
    if (r->err || nb > TL_DATA_MAX_BAGS || tl_data_alloc_bags(d, (int)nb)) return 0;
    int slots = 0;
    for (int b = 0; b < d->n_bag; b++) {
        dbag *g = &d->bag[b];
        if (!read_encoding(r, &g->c, 0)) return 0;
        uint64_t len = cr_u64(r), pool = cr_u64(r), keep = cr_u64(r);
        g->truncated = cr_u64(r);
        if (len < 1 || len > TL_DATA_MAX_BAG_LEN || pool > TL_POOL_MAX || keep > 1) return 0;
        g->len = (int)len;
        g->pool = (int)pool;
        g->keep_first = (int)keep;
        slots += g->len;
    }
    d->bag_slots = slots;
    if (r->err || !d->n_bag) return !r->err;
    if (!(d->bagv = cr_array(r, (uint64_t)d->n * (uint64_t)slots, sizeof *d->bagv))) return 0;
    for (size_t i = 0; i < d->n; i++)
        for (int b = 0, o = 0; b < d->n_bag; o += d->bag[b++].len)
            for (int j = 0; j < d->bag[b].len; j++) {
                int32_t v = d->bagv[i * (size_t)slots + (size_t)(o + j)];
                if (v < -1 || v >= d->bag[b].c.size) return 0;
            }
    return 1;
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
    if (tl_data_alloc(&d, (int)n_cat, (int)n_num, (int)n_tasks)) {
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
        if (!read_encoding(r, &d->cat[f], 1)) goto bad;
        d->vocab[f] = d->cat[f].size;
    }
    for (int j = 0; j < d->n_num && !r->err; j++)
        if (!read_num(r, &d->num[j])) goto bad;
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
    if (!read_bags(r, d) || r->err || r->remain != 0) goto bad;
    uint64_t sum;
    if (fread(&sum, 1, 8, r->f) != 8 || sum != r->h) goto bad;
    /* ids out of range would index past embedding tables: check them all */
    for (size_t i = 0; i < n; i++)
        for (uint64_t f = 0; f < n_cat; f++) {
            int32_t v = d->catv[i * n_cat + f];
            if (v < 0 || v >= d->vocab[f]) goto bad;
        }
    tl_data_set_views(d);
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
    /* options added later, folded in only when set so that the caches of
     * schemas without them keep their keys */
    if (s->skip_initial_space) h = hash_str(h, "skip_initial_space");
    if (s->max_rows) h = hash_u64(hash_str(h, "max_rows"), (uint64_t)s->max_rows);
    if (s->quantile_sketch) h = hash_str(h, "quantile_sketch");
    if (s->split == TL_SPLIT_RATIO && s->split_by_hash) h = hash_str(h, "split_by_hash");
    if (s->n_bag) h = hash_u64(hash_str(h, "bags"), (uint64_t)s->n_bag);
    for (int i = 0; i < s->n_bag; i++) {
        const tl_data_bag_col *b = &s->bag[i];
        h = hash_str(h, b->name);
        h = hash_str(h, b->sep);
        h = hash_u64(h, (uint64_t)b->pooling);
        h = hash_u64(h, (uint64_t)b->max_len);
        h = hash_u64(h, (uint64_t)b->keep_first);
        h = hash_u64(h, (uint64_t)b->min_count);
        h = hash_u64(h, (uint64_t)b->hash_buckets);
    }
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

void tl_data_cache_write(const char *cpath, uint64_t key, const tl_dataset *d)
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

tl_status tl_data_cache_lookup(const tl_data_schema *s, uint64_t *key, char **cpath, tl_dataset **hit)
{
    *hit = NULL;
    *cpath = NULL;
    uint64_t sh = schema_hash(s);
    *key = sh;
    tl_status st = file_key(s->path, key);
    if (!st && s->split == TL_SPLIT_FILES) st = file_key(s->valid_path, key);
    if (!st && s->split == TL_SPLIT_FILES) st = file_key(s->test_path, key);
    if (st) return st;
    if (s->cache_dir) mkdir(s->cache_dir, 0777); /* one level; failure shows up as no cache */
    if (!(*cpath = cache_path(s, sh))) return TL_ERR_NOMEM;
    *hit = cache_read(*cpath, *key);
    return TL_OK;
}

/* ---- the encodings record of a shard directory ------------------------------
 * What a shard directory needs beyond its ids to export a model or to read
 * more data like= it: every field's encoding (vocabulary strings, hash
 * buckets, quantile edges), the numeric columns' statistics and the
 * multi-valued fields' truncation, without rows (nor the hash collision
 * counts: exact when loaded, estimated when streamed, they would make the two
 * conversions' bytes differ). Layout:
 * magic[8], version u32, 0 u32, the shards' layout fingerprint u64, payload,
 * checksum u64, as the cache's. */
static const char ENC_MAGIC[8] = {'T', 'L', 'E', 'N', 'C', 'O', 'D', 'E'};
#define ENC_VERSION 1u

tl_status tl_data_encodings_write(const char *path, uint64_t fingerprint, const tl_dataset *e)
{
    size_t n = strlen(path) + 8;
    char *tmp = tl_malloc(n, "encodings path");
    if (!tmp) return TL_ERR_NOMEM;
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    tl_status st = f ? TL_OK : tl_fail(TL_ERR_IO, "shards: cannot create %s: %s", tmp, strerror(errno));
    if (f) {
        uint32_t ver[2] = {ENC_VERSION, 0};
        cio w = {f, 0, 0, 0};
        int ok = fwrite(ENC_MAGIC, 1, 8, f) == 8 && fwrite(ver, 4, 2, f) == 2 && fwrite(&fingerprint, 8, 1, f) == 1;
        cw_u64(&w, (uint64_t)e->n_cat);
        cw_u64(&w, (uint64_t)e->n_num);
        cw_u64(&w, (uint64_t)e->n_bag);
        for (int c = 0; c < e->n_cat; c++) write_encoding(&w, &e->cat[c], 1);
        for (int j = 0; j < e->n_num; j++) write_num(&w, &e->num[j]);
        for (int b = 0; b < e->n_bag; b++) {
            write_encoding(&w, &e->bag[b].c, 0);
            cw_u64(&w, (uint64_t)e->bag[b].keep_first);
            cw_u64(&w, e->bag[b].truncated);
        }
        ok = ok && !w.err && fwrite(&w.h, 8, 1, f) == 1 && fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = fclose(f) == 0 && ok;
        if (!ok) st = tl_fail(TL_ERR_IO, "shards: writing %s failed", tmp);
        else if (rename(tmp, path) != 0)
            st = tl_fail(TL_ERR_IO, "shards: rename to %s failed: %s", path, strerror(errno));
        if (st != TL_OK) remove(tmp);
    }
    tl_free(tmp);
    return st;
}

static void free_encoding(dcat *c)
{
    tl_free(c->name);
    tl_free(c->str_off);
    tl_free(c->str_blob);
    tl_free(c->edges);
    memset(c, 0, sizeof *c);
}

/* The record's fields into cat, num and bag (d's counts), checked against d's
 * names and sizes; 0 with *why set when anything does not hold. */
static int read_record(cio *r, const tl_dataset *d, dcat *cat, dnum *num, dbag *bag, const char **why)
{
    *why = "damaged";
    if (cr_u64(r) != (uint64_t)d->n_cat || cr_u64(r) != (uint64_t)d->n_num || cr_u64(r) != (uint64_t)d->n_bag) {
        *why = r->err ? "damaged" : "written for other fields";
        return 0;
    }
    for (int c = 0; c < d->n_cat; c++)
        if (!read_encoding(r, &cat[c], 1)) return 0;
    for (int j = 0; j < d->n_num; j++)
        if (!read_num(r, &num[j])) return 0;
    for (int b = 0; b < d->n_bag; b++) {
        if (!read_encoding(r, &bag[b].c, 0)) return 0;
        uint64_t keep = cr_u64(r);
        bag[b].truncated = cr_u64(r);
        if (keep > 1) return 0;
        bag[b].keep_first = (int)keep;
    }
    uint64_t sum;
    if (r->err || r->remain != 0 || fread(&sum, 1, 8, r->f) != 8 || sum != r->h) return 0;
    *why = "written for other fields";
    for (int c = 0; c < d->n_cat; c++)
        if (strcmp(cat[c].name, d->cat[c].name) != 0 || cat[c].size != d->vocab[c]) return 0;
    for (int j = 0; j < d->n_num; j++)
        if (strcmp(num[j].name, d->num[j].name) != 0) return 0;
    for (int b = 0; b < d->n_bag; b++)
        if (strcmp(bag[b].c.name, d->bag[b].c.name) != 0 || bag[b].c.size != d->bag[b].c.size) return 0;
    return 1;
}

tl_status tl_data_encodings_read(const char *path, uint64_t fingerprint, tl_dataset *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) return tl_fail(TL_ERR_IO, "shards: cannot open %s: %s", path, strerror(errno));
    dcat *cat = tl_calloc((size_t)d->n_cat + 1, sizeof *cat, "encodings");
    dnum *num = tl_calloc((size_t)d->n_num + 1, sizeof *num, "encodings");
    dbag *bag = tl_calloc((size_t)d->n_bag + 1, sizeof *bag, "encodings");
    struct stat sb;
    char magic[8];
    uint32_t ver[2];
    uint64_t fp;
    const char *why = "not an encodings record";
    int ok = 0;
    if (cat && num && bag && fstat(fileno(f), &sb) == 0 && sb.st_size >= 32 && fread(magic, 1, 8, f) == 8 &&
        memcmp(magic, ENC_MAGIC, 8) == 0 && fread(ver, 4, 2, f) == 2 && fread(&fp, 8, 1, f) == 1) {
        if (ver[0] != ENC_VERSION) why = "of another version";
        else if (fp != fingerprint) why = "written for another layout";
        else {
            cio r = {f, 0, 0, (uint64_t)sb.st_size - 32};
            ok = read_record(&r, d, cat, num, bag, &why);
            if (r.err == 2) why = "out of memory";
        }
    }
    fclose(f);
    tl_status st = TL_OK;
    if (!cat || !num || !bag) st = TL_ERR_NOMEM;
    else if (!ok)
        st = tl_fail(TL_ERR_FORMAT, "shards: %s: %s (the fields' encodings; convert the data again to rewrite it)",
                     path, why);
    for (int c = 0; c < d->n_cat && cat; c++) {
        if (st == TL_OK) { /* swap: d's placeholders are freed with the temporaries */
            dcat t = d->cat[c];
            d->cat[c] = cat[c];
            cat[c] = t;
        }
        free_encoding(&cat[c]);
    }
    for (int j = 0; j < d->n_num && num; j++) {
        if (st == TL_OK) {
            dnum t = d->num[j];
            d->num[j] = num[j];
            num[j] = t;
        }
        tl_free(num[j].name);
    }
    for (int b = 0; b < d->n_bag && bag; b++) {
        if (st == TL_OK) {
            dcat t = d->bag[b].c;
            d->bag[b].c = bag[b].c;
            d->bag[b].keep_first = bag[b].keep_first;
            d->bag[b].truncated = bag[b].truncated;
            bag[b].c = t;
        }
        free_encoding(&bag[b].c);
    }
    tl_free(cat);
    tl_free(num);
    tl_free(bag);
    return st;
}
