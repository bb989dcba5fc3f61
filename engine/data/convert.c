/* data/convert.c — a CSV schema straight into shards, streaming: memory
 * does not grow with the rows.
 *
 * Pass 1 reads the files with the loader's own parser (csv.c, in chunks of
 * CHUNK_ROWS rows) and keeps only what the encodings need: the string table
 * and training counts of every vocabulary field, a bitmap of the buckets
 * hashed fields use (nothing per value), sums for the numeric statistics, the
 * values of quantile fields (exactly up to TL_DATA_STREAM_EXACT_ROWS, where
 * loading goes to TL_DATA_SKETCH_ROWS, and always the KLL sketch), bags'
 * longest rows, the label checks and
 * the row counts. The encodings are then made by finish.c's functions, so
 * they are the in-memory loader's. Pass 2 reads the files again and writes
 * every kept row, encoded, to its split's shard (tl_shard_writer), skipping
 * the rows complete shards of an interrupted run already hold.
 *
 * Splits: none, modulo and files split as loading does, so the shards are
 * those of tl_data_csv_load + tl_shards_convert. A ratio split cannot be a
 * permutation of the kept rows without holding one (4 bytes a row): a row's
 * split comes from a hash of (seed, its data row index) instead
 * (tl_data_split_of_row; tl_data_csv_load does the same with split_by_hash).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_internal.h"
#include "dataset.h"
#include "shards.h"
#include "sketch.h"

#define CHUNK_ROWS 8192
#define PROGRESS_EVERY 65536

typedef struct {
    uint32_t *v;
    size_t cap;
} counts;

/* A quantile field's training values: exact (while at most
 * TL_DATA_STREAM_EXACT_ROWS and the schema does not ask for the sketch) and
 * the sketch. */
typedef struct {
    float *vals;
    size_t n, cap;
    int exact;
    uint64_t k;
    tl_sketch *sk;
} qvalues;

typedef struct {
    const tl_data_schema *s;
    const char *dir, *source;
    plan p;
    /* the plan's fields are copies of the schema's, so a field pass 1 switches
     * to hashed ids (auto_hash) is hashed by the parser from the next chunk on */
    tl_data_cat_col *ccol;
    tl_data_bag_col *bcol;
    int auto_b;            /* buckets of a field hashed automatically */
    uint32_t *auto_at;     /* n_cat + n_bag: its distinct values when it switched, 0 = it did not */
    uint64_t *auto_rows;   /* the rows read then */
    uint64_t data_hash;    /* pass 1: a hash of every parsed row (ids, numbers, labels, splits) */
    rawset rs;
    int pass;
    uint64_t row_hi;   /* the current file's 64-bit data row indices: high part */
    uint32_t row_last;
    int row_any;
    /* pass 1 */
    counts *cnt, *bcnt;    /* vocabulary fields, bags: training counts per string-table index */
    uint8_t **used;        /* hashed fields (n_cat, then bags): buckets training values hit */
    double *sum, *sum2;    /* plain numerics over the training rows */
    uint64_t *nk;
    uint8_t *missing;
    qvalues *q;
    int *bag_max;
    uint64_t n_split[3];
    size_t skipped;
    uint64_t skip_lines[MAX_SKIP_LINES];
    int n_skip_lines;
    /* encodings */
    tl_dataset *enc;
    int32_t **map, **bmap; /* string-table index -> id (vocabulary fields, bags) */
    uint32_t *map_n, *bmap_n;
    int32_t *miss_id;
    int n_flag;
    int changed;           /* pass 2 met a value pass 1 did not see */
    /* pass 2 */
    tl_shard_layout l;
    tl_shard_writer *w;
    uint32_t *row;
    uint64_t done[3], seen[3];
    /* progress */
    tl_convert_progress progress;
    void *ud;
    uint64_t rows_read, next_report, bytes_total, bytes_before;
} conv;

static uint64_t kept_rows(const conv *c) { return c->n_split[0] + c->n_split[1] + c->n_split[2]; }

static tl_status interrupted(conv *c)
{
    return tl_fail(TL_ERR_CANCELLED,
                   "conversion of %s to %s interrupted in pass %d of 2 (%s) after %llu rows; the complete "
                   "shards are kept: run it again to resume",
                   c->source, c->dir, c->pass, c->pass == 1 ? "reading the encodings" : "writing shards",
                   (unsigned long long)c->rows_read);
}

/* Progress and cancellation, every PROGRESS_EVERY rows read. */
static tl_status tick(conv *c, uint64_t bytes)
{
    if (c->rows_read < c->next_report) return TL_OK;
    c->next_report = c->rows_read + PROGRESS_EVERY;
    if (tl_cancelled()) return interrupted(c);
    if (!c->progress) return TL_OK;
    uint64_t total = kept_rows(c);
    if (c->pass == 1) { /* estimated from the bytes read */
        uint64_t at = c->bytes_before + bytes;
        total = at ? (uint64_t)((double)c->rows_read * (double)c->bytes_total / (double)at) : 0;
        if (total < c->rows_read) total = c->rows_read;
    }
    if (c->progress(c->ud, c->pass, c->rows_read, total)) return interrupted(c);
    return TL_OK;
}

/* The 64-bit data row index of row r (rs->row holds its low 32 bits; they
 * only grow within a file). */
static uint64_t row_index(conv *c, size_t r)
{
    uint32_t lo = c->rs.row[r];
    if (c->row_any && lo < c->row_last) c->row_hi += (uint64_t)1 << 32;
    c->row_any = 1;
    c->row_last = lo;
    return c->row_hi + lo;
}

static int row_split(conv *c, size_t r)
{
    uint64_t i = row_index(c, r);
    int tag = c->rs.tag[r];
    if (c->s->split == TL_SPLIT_NONE) return tag >= 0 ? TL_TO_TRAIN : tag;
    if (c->s->split == TL_SPLIT_RATIO) return tl_data_split_of_row(c->s, i);
    return tag;
}

static tl_status count_up(counts *k, int32_t idx)
{
    if ((size_t)idx >= k->cap) {
        size_t cap = k->cap ? k->cap : 1024;
        while (cap <= (size_t)idx) cap *= 2;
        uint32_t *nv = tl_realloc(k->v, cap * sizeof *nv, "vocabulary counts");
        if (!nv) return TL_ERR_NOMEM;
        memset(nv + k->cap, 0, (cap - k->cap) * sizeof *nv);
        k->v = nv;
        k->cap = cap;
    }
    k->v[idx]++;
    return TL_OK;
}

static void mark(uint8_t *bits, int32_t b) { bits[(uint32_t)b >> 3] |= (uint8_t)(1u << (b & 7)); }

static tl_status q_add(qvalues *q, float x)
{
    q->k++;
    if (q->exact) {
        if (q->n == TL_DATA_STREAM_EXACT_ROWS) { /* past the exact sort's limit: the sketch's edges */
            tl_free(q->vals);
            q->vals = NULL;
            q->exact = 0;
        } else {
            if (q->n == q->cap) {
                size_t cap = q->cap ? q->cap * 2 : 4096;
                float *nv = tl_realloc(q->vals, cap * sizeof *nv, "quantile values");
                if (!nv) return TL_ERR_NOMEM;
                q->vals = nv;
                q->cap = cap;
            }
            q->vals[q->n++] = x;
        }
    }
    return tl_sketch_add(q->sk, x);
}

/* A field the automatic rule may hash: neither hash_buckets nor its own
 * min_count (a vocabulary asked for), and not switched yet. */
static int auto_hashable(const conv *c, size_t k)
{
    const size_t nc = (size_t)c->p.n_cat;
    if (k < nc) return c->ccol[k].hash_buckets == 0 && c->ccol[k].min_count == 0;
    return c->bcol[k - nc].hash_buckets == 0 && c->bcol[k - nc].min_count == 0;
}

/* Field k (n_cat, then bags) goes on with hashed ids: the training values
 * seen so far mark their buckets, its table and counts are freed, and the
 * parser hashes its values from the next chunk on (and in pass 2). The
 * encoding is then that of hash_buckets = auto_b from the start: a value's
 * bucket does not depend on when it was met. */
static tl_status switch_to_hash(conv *c, size_t k, uint64_t rows)
{
    const size_t nc = (size_t)c->p.n_cat;
    strtab *t = k < nc ? &c->rs.tab[k] : &c->rs.btab[k - nc];
    counts *n = k < nc ? &c->cnt[k] : &c->bcnt[k - nc];
    const uint64_t B = (uint64_t)c->auto_b;
    if (!(c->used[k] = tl_calloc(((size_t)B + 7) / 8, 1, "hash buckets used"))) return TL_ERR_NOMEM;
    for (uint32_t i = 0; i < t->n; i++)
        if (i < n->cap && n->v[i]) mark(c->used[k], (int32_t)(hash_bytes(st_str(t, i), t->len[i], TL_DATA_HASH_SEED) % B));
    c->auto_at[k] = t->n;
    c->auto_rows[k] = rows;
    tl_free(n->v);
    n->v = NULL;
    n->cap = 0;
    tl_strtab_free(t);
    tl_status st = tl_strtab_init(t);
    if (st) return st;
    if (k < nc) c->ccol[k].hash_buckets = c->auto_b;
    else c->bcol[k - nc].hash_buckets = c->auto_b;
    return TL_OK;
}

/* Pass 1: one chunk of rows into the counts and statistics. */
static tl_status scan_chunk(void *ud, rawset *rs, uint64_t bytes)
{
    conv *c = ud;
    const plan *p = &c->p;
    const size_t nc = (size_t)p->n_cat, nn = (size_t)p->n_num, nb = (size_t)p->n_bag;
    tl_status st = TL_OK;
    for (size_t r = 0; r < rs->n && !st; r++) {
        int tag = row_split(c, r);
        if (tag < 0) continue;
        c->n_split[tag]++;
        for (size_t k = 0; k < nb; k++) {
            int n = rs->bcnt[r * nb + k];
            if (n > c->bag_max[k]) c->bag_max[k] = n;
        }
        if (tag != TL_TO_TRAIN) continue;
        const int32_t *raw = rs->cat + r * nc;
        for (size_t k = 0; k < nc && !st; k++) {
            if (raw[k] < 0) continue;
            if (p->cat[k]->hash_buckets > 0) mark(c->used[k], raw[k]);
            else st = count_up(&c->cnt[k], raw[k]);
        }
        const float *x = rs->num + r * nn;
        for (int j = 0; j < p->n_num_plain; j++) {
            if (isnan(x[j])) {
                c->missing[j] = 1;
                continue;
            }
            double v = (double)tl_data_num_value(p->num[j]->transform, x[j]);
            c->sum[j] += v;
            c->sum2[j] += v * v;
            c->nk[j]++;
        }
        for (int j = p->n_num_plain; j < p->n_num && !st; j++)
            if (!isnan(x[j])) st = q_add(&c->q[j - p->n_num_plain], x[j]);
        const int32_t *v = nb ? rs->bval + rs->boff[r] : NULL;
        for (size_t k = 0; k < nb && !st; k++) {
            int n = rs->bcnt[r * nb + k];
            for (int i = 0; i < n && !st; i++) {
                if (p->bag[k]->hash_buckets > 0) mark(c->used[nc + k], v[i]);
                else st = count_up(&c->bcnt[k], v[i]);
            }
            v += n;
        }
    }
    if (st) return st;
    uint64_t h = c->data_hash;
    h = hash_bytes(rs->cat, rs->n * nc * sizeof *rs->cat, h);
    h = hash_bytes(rs->num, rs->n * nn * sizeof *rs->num, h);
    h = hash_bytes(rs->lab, rs->n * (size_t)rs->n_lab * sizeof *rs->lab, h);
    h = hash_bytes(rs->tag, rs->n * sizeof *rs->tag, h);
    h = hash_bytes(rs->row, rs->n * sizeof *rs->row, h);
    if (rs->has_weight) h = hash_bytes(rs->wt, rs->n * sizeof *rs->wt, h);
    if (rs->has_group) h = hash_bytes(rs->grp, rs->n * sizeof *rs->grp, h);
    if (nb) {
        h = hash_bytes(rs->bcnt, rs->n * nb * sizeof *rs->bcnt, h);
        h = hash_bytes(rs->bval, rs->bv_n * sizeof *rs->bval, h);
    }
    c->data_hash = h;
    for (size_t k = 0; k < nc + nb && c->s->auto_hash && !st; k++) {
        const strtab *t = k < nc ? &rs->tab[k] : &rs->btab[k - nc];
        if (t->n > c->s->auto_hash && auto_hashable(c, k)) st = switch_to_hash(c, k, c->rows_read + rs->n);
    }
    if (st) return st;
    for (int k = 0; k < p->n_cat + p->n_bag && c->s->max_vocab; k++) {
        int hashed = k < p->n_cat ? p->cat[k]->hash_buckets > 0 : p->bag[k - p->n_cat]->hash_buckets > 0;
        const strtab *t = k < p->n_cat ? &rs->tab[k] : &rs->btab[k - p->n_cat];
        if (!hashed && t->n > c->s->max_vocab)
            return tl_fail(TL_ERR_ARG,
                           "%s: field '%s' has more than %zu distinct values in its first %llu rows, and a vocabulary "
                           "field keeps every distinct value in memory while converting: hash it ({'%s', "
                           "hash=N} buckets, e.g. N = 1048576) or raise max_vocab",
                           c->source, k < p->n_cat ? p->cat[k]->name : p->bag[k - p->n_cat]->name,
                           c->s->max_vocab, (unsigned long long)(c->rows_read + rs->n),
                           k < p->n_cat ? p->cat[k]->name : p->bag[k - p->n_cat]->name);
    }
    c->rows_read += rs->n;
    return tick(c, bytes);
}

/* Pass 2: encode one chunk's rows and write them. */
static tl_status write_chunk(void *ud, rawset *rs, uint64_t bytes)
{
    conv *c = ud;
    const plan *p = &c->p;
    const tl_dataset *e = c->enc;
    const size_t nc = (size_t)p->n_cat, nn = (size_t)p->n_num, nb = (size_t)p->n_bag, K = (size_t)rs->n_lab;
    tl_status st = TL_OK;
    for (size_t r = 0; r < rs->n && !st; r++) {
        int tag = row_split(c, r);
        if (tag < 0) continue;
        if (c->seen[tag]++ < c->done[tag]) continue; /* in a complete shard of an earlier run */
        uint32_t *out = c->row;
        int32_t *cat = (int32_t *)out;
        const int32_t *raw = rs->cat + r * nc;
        for (size_t k = 0; k < nc; k++) {
            if (raw[k] < 0) cat[k] = c->miss_id[k];
            else if (p->cat[k]->hash_buckets > 0) cat[k] = raw[k];
            else if ((uint32_t)raw[k] < c->map_n[k]) cat[k] = c->map[k][raw[k]];
            else {
                cat[k] = ID_OOV; /* a value pass 1 did not see: the file changed */
                c->changed = 1;
            }
        }
        const float *x = rs->num + r * nn;
        for (int q = 0; q < p->n_num - p->n_num_plain; q++) {
            const dcat *qc = &e->cat[nc + (size_t)q];
            float v = x[p->n_num_plain + q];
            int32_t id = 0;
            if (!isnan(v)) {
                uint32_t lo = 0, hi = qc->n_edges; /* count of edges <= v */
                while (lo < hi) {
                    uint32_t mid = (lo + hi) / 2;
                    if (qc->edges[mid] <= v) lo = mid + 1;
                    else hi = mid;
                }
                id = 1 + (int32_t)lo;
            }
            cat[nc + (size_t)q] = id;
        }
        int32_t *bag = cat + e->n_cat;
        const int32_t *bv = nb ? rs->bval + rs->boff[r] : NULL;
        for (size_t k = 0; k < nb; k++) {
            int n = rs->bcnt[r * nb + k], len = e->bag[k].len;
            for (int i = 0; i < len; i++) {
                int32_t id = -1;
                if (i < n) {
                    if (p->bag[k]->hash_buckets > 0) id = bv[i];
                    else if ((uint32_t)bv[i] < c->bmap_n[k]) id = c->bmap[k][bv[i]];
                    else {
                        id = ID_OOV;
                        c->changed = 1;
                    }
                }
                bag[i] = id;
            }
            bv += n;
            bag += len;
        }
        float *num = (float *)bag;
        int fcol = p->n_num_plain;
        for (int j = 0; j < p->n_num_plain; j++) {
            const dnum *d = &e->num[j];
            const float mu = (float)d->mean, inv = (float)(1.0 / d->std);
            float v = isnan(x[j]) ? mu : tl_data_num_value(d->transform, x[j]);
            if (d->transform == TL_NUM_STANDARD) v = (v - mu) * inv;
            num[j] = v;
            if (c->missing[j]) num[fcol++] = isnan(x[j]) ? 1.0f : 0.0f; /* its _missing flag */
        }
        float *lab = num + e->n_num;
        memcpy(lab, rs->lab + r * K, K * sizeof *lab);
        uint32_t *tail = (uint32_t *)(lab + K);
        if (rs->has_weight) memcpy(tail++, &rs->wt[r], 4);
        if (rs->has_group) memcpy(tail++, &rs->grp[r], 4);
        st = tl_shard_writer_row(c->w, tag, c->row);
    }
    if (st) return st;
    c->rows_read += rs->n;
    return tick(c, bytes);
}

/* Read every file of the schema through fn (pass 1 or 2). */
static tl_status read_files(conv *c, tl_status (*fn)(void *, rawset *, uint64_t))
{
    const tl_data_schema *s = c->s;
    const char *paths[3] = {s->path, NULL, NULL};
    if (s->split == TL_SPLIT_FILES) {
        paths[1] = s->valid_path;
        paths[2] = s->test_path;
    }
    csv_stream cs = {CHUNK_ROWS, fn, c};
    c->rows_read = 0;
    c->next_report = PROGRESS_EVERY;
    c->bytes_before = 0;
    for (int k = 0; k < 3; k++) {
        if (!paths[k]) continue;
        c->row_hi = 0;
        c->row_any = 0;
        tl_status st = tl_data_read_csv_stream(s, &c->p, paths[k], (int8_t)k, &c->rs, &cs);
        if (st == TL_ERR_CANCELLED && tl_cancelled()) return interrupted(c);
        if (st) return st;
        struct stat sb;
        if (stat(paths[k], &sb) == 0) c->bytes_before += (uint64_t)sb.st_size;
    }
    return TL_OK;
}

/* ---- the encodings from pass 1 ---------------------------------------------- */

/* The checks loading makes once every row is read (finish.c's order_rows). */
static tl_status check_rows(conv *c)
{
    const tl_data_schema *s = c->s;
    for (int t = 0; t < s->n_labels; t++)
        if (s->labels[t].kind == TL_LABEL_POSITIVE && s->labels[t].n_negative == 0 && c->rs.npos[t] == 0)
            return tl_fail(TL_ERR_PARSE,
                           "%s: task '%s': no row has the positive value \"%s\" in column '%s' "
                           "(check positive=)",
                           c->source, s->labels[t].task, s->labels[t].positive[0], s->labels[t].column);
    if (kept_rows(c) == 0) return tl_fail(TL_ERR_PARSE, "%s: no data rows", c->source);
    if (s->split != TL_SPLIT_NONE && c->n_split[0] == 0)
        return tl_fail(TL_ERR_PARSE, "%s: the training split is empty", c->source);
    return TL_OK;
}

/* Vocabulary or hash encoding of a field from its table and counts; for a
 * hashed field, the collision count estimated from its used buckets. */
static tl_status encode_field(conv *c, const strtab *t, const counts *k, const uint8_t *used,
                              const tl_data_cat_col *col, dcat *out, int32_t **map, uint32_t *map_n)
{
    uint32_t *cnt = tl_calloc((size_t)t->n + 1, sizeof *cnt, "vocabulary counts");
    *map = tl_malloc(sizeof **map * ((size_t)t->n + 1), "vocabulary map");
    if (!cnt || !*map) {
        tl_free(cnt);
        return TL_ERR_NOMEM;
    }
    if (k->v) memcpy(cnt, k->v, sizeof *cnt * (k->cap < t->n ? k->cap : t->n));
    *map_n = t->n;
    tl_status st = tl_data_build_vocab(t, cnt, col, c->s, NULL, out, *map);
    tl_free(cnt);
    if (st || !used) return st;
    /* linear counting: U of N buckets used estimates -N ln(1 - U/N) distinct values */
    uint64_t u = 0, nbk = (uint64_t)out->buckets;
    for (uint64_t i = 0; i < (nbk + 7) / 8; i++) u += (uint64_t)__builtin_popcount(used[i]);
    double est = u >= nbk ? (double)u : -(double)nbk * log1p(-(double)u / (double)nbk);
    if (est < (double)u) est = (double)u;
    out->hash_known = 1;
    out->hash_values = (uint32_t)(est + 0.5 < 4294967295.0 ? est + 0.5 : 4294967295.0);
    out->hash_collided = out->hash_values - (uint32_t)u;
    return TL_OK;
}

static tl_status make_encodings(conv *c)
{
    const plan *p = &c->p;
    const tl_data_schema *s = c->s;
    const int nq = p->n_num - p->n_num_plain;
    for (int j = 0; j < p->n_num_plain; j++) c->n_flag += c->missing[j];
    tl_status st = tl_data_alloc(&c->enc, p->n_cat + nq, p->n_num_plain + c->n_flag, s->n_labels);
    if (st) return st;
    tl_dataset *e = c->enc;
    if (!(e->source = tl_strdup(c->source, "dataset source"))) return TL_ERR_NOMEM;
    for (int k = 0; k < p->n_cat && !st; k++) {
        dcat *f = &e->cat[k];
        if (!(f->name = tl_strdup(p->cat[k]->name, "field name"))) return TL_ERR_NOMEM;
        st = encode_field(c, &c->rs.tab[k], &c->cnt[k], p->cat[k]->hash_buckets > 0 ? c->used[k] : NULL, p->cat[k],
                          f, &c->map[k], &c->map_n[k]);
        c->miss_id[k] = f->kind == CAT_HASH ? f->buckets : ID_MISSING;
        e->vocab[k] = f->size;
    }
    for (int q = 0; q < nq && !st; q++) {
        const tl_data_num_col *col = p->num[p->n_num_plain + q];
        dcat *f = &e->cat[p->n_cat + q];
        qvalues *v = &c->q[q];
        f->kind = CAT_QUANT;
        f->buckets = col->buckets > 1 ? col->buckets : 10;
        if (!(f->name = tl_strdup(col->name, "field name"))) return TL_ERR_NOMEM;
        int sketch = v->k && (s->quantile_sketch || v->k > TL_DATA_STREAM_EXACT_ROWS);
        st = tl_data_quantile_edges(sketch ? NULL : v->vals, (size_t)v->k, sketch ? v->sk : NULL, f->buckets, f);
        f->size = (int32_t)f->n_edges + 2;
        e->vocab[p->n_cat + q] = f->size;
    }
    int fcol = p->n_num_plain;
    for (int j = 0; j < p->n_num_plain && !st; j++) {
        dnum *o = &e->num[j];
        o->transform = p->num[j]->transform;
        o->mean = c->nk[j] ? c->sum[j] / (double)c->nk[j] : 0.0;
        double var = c->nk[j] ? c->sum2[j] / (double)c->nk[j] - o->mean * o->mean : 1.0;
        o->std = var > 1e-12 ? sqrt(var) : 1.0;
        if (!(o->name = tl_strdup(p->num[j]->name, "column name"))) return TL_ERR_NOMEM;
        if (!c->missing[j]) continue;
        dnum *fl = &e->num[fcol++];
        char fname[300];
        snprintf(fname, sizeof fname, "%s_missing", p->num[j]->name);
        fl->transform = NUM_FLAG;
        fl->std = 1;
        if (!(fl->name = tl_strdup(fname, "column name"))) return TL_ERR_NOMEM;
    }
    for (int t = 0; t < s->n_labels && !st; t++) {
        if (!(e->task_name[t] = tl_strdup(s->labels[t].task, "task name"))) return TL_ERR_NOMEM;
        e->task_type[t] = s->labels[t].kind == TL_LABEL_REGRESSION ? TL_TASK_REGRESSION : TL_TASK_BINARY;
    }
    if (!st && p->n_bag) st = tl_data_alloc_bags(e, p->n_bag);
    for (int k = 0; k < p->n_bag && !st; k++) {
        const tl_data_bag_col *col = p->bag[k];
        dbag *g = &e->bag[k];
        if (!(g->c.name = tl_strdup(col->name, "field name"))) return TL_ERR_NOMEM;
        g->len = col->max_len > 0 ? col->max_len : c->bag_max[k] > 1 ? c->bag_max[k] : 1;
        e->bag_slots += g->len;
        tl_data_cat_col cc = {col->name, col->min_count, col->hash_buckets};
        st = encode_field(c, &c->rs.btab[k], &c->bcnt[k], col->hash_buckets > 0 ? c->used[p->n_cat + k] : NULL, &cc,
                          &g->c, &c->bmap[k], &c->bmap_n[k]);
        g->pool = (int)col->pooling;
        g->keep_first = col->keep_first;
        g->truncated = c->rs.btrunc[k];
    }
    return st;
}

/* The shard layout of the encodings (as tl_shard_layout_from_dataset of the
 * loaded dataset). */
static tl_status make_layout(conv *c)
{
    const tl_dataset *e = c->enc;
    tl_shard_layout *l = &c->l;
    tl_status st = tl_shard_layout_init(l, e->n_cat, e->n_num, e->n_tasks, e->n_bag);
    for (int f = 0; !st && f < e->n_cat; f++) {
        l->vocab[f] = e->vocab[f];
        if (!(l->cat_name[f] = tl_strdup(e->cat[f].name, "shard layout name"))) st = TL_ERR_NOMEM;
    }
    for (int j = 0; !st && j < e->n_num; j++)
        if (!(l->num_name[j] = tl_strdup(e->num[j].name, "shard layout name"))) st = TL_ERR_NOMEM;
    for (int t = 0; !st && t < e->n_tasks; t++) {
        l->task_type[t] = e->task_type[t];
        if (!(l->task_name[t] = tl_strdup(e->task_name[t], "shard layout name"))) st = TL_ERR_NOMEM;
    }
    for (int b = 0; !st && b < e->n_bag; b++) {
        l->bag_vocab[b] = e->bag[b].c.size;
        l->bag_len[b] = e->bag[b].len;
        l->bag_pool[b] = (tl_pooling)e->bag[b].pool;
        if (!(l->bag_name[b] = tl_strdup(e->bag[b].c.name, "shard layout name"))) st = TL_ERR_NOMEM;
    }
    l->has_weight = c->s->weight != NULL;
    l->has_group = c->s->id != NULL;
    return st;
}

/* ---- the conversion's identity, for resuming ----------------------------------- */

/* An interrupted conversion's complete shards are only resumed by the same
 * conversion: the spec options that change rows, the source files (size,
 * CRC-32 of their first and last 64 KB) and what pass 1 found (rows per split,
 * a hash of the encodings), one "key value" line each: the record of
 * tl_shards_record_check (shards.h), which refuses another one. */
#define STATE_EDGE (64 * 1024)
#define STATE_CAP 8192

static uint64_t h_str(uint64_t h, const char *s) { return hash_bytes(s ? s : "\x01", s ? strlen(s) + 1 : 1, h); }
static uint64_t h_int(uint64_t h, int64_t v) { return hash_bytes(&v, sizeof v, h); }

/* Options that change rows or ids, apart from the split and seed. */
static uint64_t options_hash(const tl_data_schema *s)
{
    uint64_t h = h_str(0x636f6e76ULL, s->sep);
    h = h_int(h_int(h_int(h_int(h, s->header), s->skip), s->skip_initial_space), s->on_bad);
    for (int i = 0; i < s->n_columns; i++) h = h_str(h, s->columns[i]);
    for (int i = 0; i < s->n_missing; i++) h = h_str(h, s->missing[i]);
    h = h_int(h, s->n_missing);
    for (int i = 0; i < s->n_cat; i++) h = h_int(h_int(h_str(h, s->cat[i].name), s->cat[i].min_count), s->cat[i].hash_buckets);
    for (int i = 0; i < s->n_num; i++) h = h_int(h_int(h_str(h, s->num[i].name), s->num[i].transform), s->num[i].buckets);
    for (int i = 0; i < s->n_bag; i++) {
        const tl_data_bag_col *b = &s->bag[i];
        h = h_int(h_int(h_int(h_str(h_str(h, b->name), b->sep), b->pooling), b->max_len), b->keep_first);
        h = h_int(h_int(h, b->min_count), b->hash_buckets);
    }
    for (int t = 0; t < s->n_labels; t++) {
        const tl_data_label *l = &s->labels[t];
        h = h_int(h_int(h_str(h_str(h, l->task), l->column), l->kind), l->keep);
        for (int i = 0; i < l->n_positive; i++) h = h_str(h, l->positive[i]);
        h = h_int(h, l->n_positive);
        for (int i = 0; i < l->n_negative; i++) h = h_str(h, l->negative[i]);
        h = h_int(h_int(h, l->n_negative), l->unknown_negative);
        h = hash_bytes(&l->threshold, sizeof l->threshold, h);
    }
    h = h_str(h_str(h, s->id), s->weight);
    h = h_int(h_int(h_int(h, s->min_count), (int64_t)s->max_rows), s->quantile_sketch);
    return h_int(h_int(h, (int64_t)s->auto_hash), s->auto_hash_buckets);
}

static uint64_t dcat_hash(uint64_t h, const dcat *d)
{
    h = h_int(h_int(h_int(h_str(h, d->name), d->kind), d->size), d->buckets);
    if (d->n_str) h = hash_bytes(d->str_blob, (size_t)d->str_off[d->n_str], h_int(h, d->n_str));
    if (d->n_edges) h = hash_bytes(d->edges, d->n_edges * sizeof *d->edges, h_int(h, d->n_edges));
    return h;
}

/* The encodings pass 1 made: vocabularies, hash buckets, edges, statistics, bag lengths. */
static uint64_t encodings_hash(const conv *c)
{
    const tl_dataset *e = c->enc;
    uint64_t h = 0x656e63ULL;
    for (int f = 0; f < e->n_cat; f++) h = dcat_hash(h, &e->cat[f]);
    for (int b = 0; b < e->n_bag; b++) h = h_int(dcat_hash(h, &e->bag[b].c), e->bag[b].len);
    for (int j = 0; j < e->n_num; j++) {
        double v[2] = {e->num[j].mean, e->num[j].std};
        h = hash_bytes(v, sizeof v, h_int(h_str(h, e->num[j].name), e->num[j].transform));
    }
    return h;
}

/* "<file> <bytes> bytes, CRC-32 <first 64 KB>/<last 64 KB>" of path. */
static tl_status file_identity(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return tl_fail(TL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    unsigned char *buf = tl_malloc(STATE_EDGE, "conversion identity");
    if (!buf) {
        fclose(f);
        return TL_ERR_NOMEM;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t a = fread(buf, 1, STATE_EDGE, f);
    uint32_t head = (uint32_t)crc32(0L, buf, (uInt)a), tail = head;
    if (n > STATE_EDGE) {
        fseek(f, n - STATE_EDGE, SEEK_SET);
        size_t b = fread(buf, 1, STATE_EDGE, f);
        tail = (uint32_t)crc32(0L, buf, (uInt)b);
    }
    fclose(f);
    tl_free(buf);
    snprintf(out, cap, "%s %ld bytes, CRC-32 of its first and last 64 KB %08x %08x", path, n, (unsigned)head,
             (unsigned)tail);
    return TL_OK;
}

/* The identity lines of this conversion (after pass 1). */
static tl_status identity(const conv *c, size_t per, char *out, size_t cap)
{
    const tl_data_schema *s = c->s;
    static const char *const kinds[] = {"none", "ratio", "modulo", "files"};
    size_t n = 0;
    n += (size_t)snprintf(out + n, cap - n, "seed %llu\nsplit %s", (unsigned long long)s->seed, kinds[s->split]);
    if (s->split == TL_SPLIT_RATIO)
        n += (size_t)snprintf(out + n, cap - n, " %.10g %.10g %.10g", s->ratio[0], s->ratio[1], s->ratio[2]);
    if (s->split == TL_SPLIT_MODULO) {
        n += (size_t)snprintf(out + n, cap - n, " %d:", s->modulo);
        for (int k = 0; k < s->modulo && n < cap - 8; k++) n += (size_t)snprintf(out + n, cap - n, "%d", s->modulo_to[k] + 1);
    }
    n += (size_t)snprintf(out + n, cap - n, "\nrows_per_shard %zu\noptions %016llx\n", per ? per : (size_t)262144,
                          (unsigned long long)options_hash(s));
    const char *paths[3] = {s->path, s->split == TL_SPLIT_FILES ? s->valid_path : NULL,
                            s->split == TL_SPLIT_FILES ? s->test_path : NULL};
    for (int k = 0; k < 3 && n < cap; k++) {
        if (!paths[k]) continue;
        char id[1400];
        tl_status st = file_identity(paths[k], id, sizeof id);
        if (st) return st;
        n += (size_t)snprintf(out + n, cap - n, "file %s\n", id);
    }
    if (n < cap)
        n += (size_t)snprintf(out + n, cap - n, "rows %llu %llu %llu\nencodings %016llx\ndata %016llx\n",
                              (unsigned long long)c->n_split[0], (unsigned long long)c->n_split[1],
                              (unsigned long long)c->n_split[2], (unsigned long long)encodings_hash(c),
                              (unsigned long long)c->data_hash);
    if (n >= cap) return tl_fail(TL_ERR_ARG, "%s: the conversion's identity is too long (paths?)", c->source);
    return TL_OK;
}

/* Refuse to resume dir's shards unless they are this conversion's; record
 * this conversion's identity (before any shard is written). */
static tl_status check_state(conv *c, size_t per)
{
    char *cur = tl_malloc(STATE_CAP, "conversion identity");
    tl_status st = cur ? identity(c, per, cur, STATE_CAP) : TL_ERR_NOMEM;
    if (!st) st = tl_shards_record_check(c->dir, cur, "run the stopped conversion's spec on its data");
    tl_free(cur);
    return st;
}

/* ---- setup and teardown -------------------------------------------------------- */

static tl_status conv_init(conv *c)
{
    const plan *p = &c->p;
    const size_t nc = (size_t)p->n_cat, nb = (size_t)p->n_bag, nn = (size_t)p->n_num;
    const tl_data_schema *s = c->s;
    tl_status st = tl_rawset_init(&c->rs, p->n_cat, p->n_num, s->n_labels, s->id != NULL, s->weight != NULL);
    if (!st && nb) st = tl_rawset_init_bags(&c->rs, p->n_bag);
    if (st) return st;
    c->cnt = tl_calloc(nc + 1, sizeof *c->cnt, "conversion");
    c->bcnt = tl_calloc(nb + 1, sizeof *c->bcnt, "conversion");
    c->used = tl_calloc(nc + nb + 1, sizeof *c->used, "conversion");
    c->sum = tl_calloc(nn + 1, sizeof *c->sum, "conversion");
    c->sum2 = tl_calloc(nn + 1, sizeof *c->sum2, "conversion");
    c->nk = tl_calloc(nn + 1, sizeof *c->nk, "conversion");
    c->missing = tl_calloc(nn + 1, 1, "conversion");
    c->q = tl_calloc(nn + 1, sizeof *c->q, "conversion");
    c->bag_max = tl_calloc(nb + 1, sizeof *c->bag_max, "conversion");
    c->map = tl_calloc(nc + 1, sizeof *c->map, "conversion");
    c->bmap = tl_calloc(nb + 1, sizeof *c->bmap, "conversion");
    c->map_n = tl_calloc(nc + 1, sizeof *c->map_n, "conversion");
    c->bmap_n = tl_calloc(nb + 1, sizeof *c->bmap_n, "conversion");
    c->miss_id = tl_calloc(nc + 1, sizeof *c->miss_id, "conversion");
    c->ccol = tl_calloc(nc + 1, sizeof *c->ccol, "conversion");
    c->bcol = tl_calloc(nb + 1, sizeof *c->bcol, "conversion");
    c->auto_at = tl_calloc(nc + nb + 1, sizeof *c->auto_at, "conversion");
    c->auto_rows = tl_calloc(nc + nb + 1, sizeof *c->auto_rows, "conversion");
    if (!c->ccol || !c->bcol || !c->auto_at || !c->auto_rows) return TL_ERR_NOMEM;
    for (size_t k = 0; k < nc; k++) {
        c->ccol[k] = *p->cat[k];
        c->p.cat[k] = &c->ccol[k];
    }
    for (size_t k = 0; k < nb; k++) {
        c->bcol[k] = *p->bag[k];
        c->p.bag[k] = &c->bcol[k];
    }
    if (s->auto_hash) {
        uint64_t b = s->auto_hash_buckets > 0 ? (uint64_t)s->auto_hash_buckets : 1;
        if (s->auto_hash_buckets <= 0)
            while (b < 4 * (uint64_t)s->auto_hash && b < ((uint64_t)1 << 30)) b *= 2;
        c->auto_b = (int)b;
    }
    if (!c->cnt || !c->bcnt || !c->used || !c->sum || !c->sum2 || !c->nk || !c->missing || !c->q || !c->bag_max ||
        !c->map || !c->bmap || !c->map_n || !c->bmap_n || !c->miss_id)
        return TL_ERR_NOMEM;
    for (size_t k = 0; k < nc + nb; k++) {
        int b = k < nc ? p->cat[k]->hash_buckets : p->bag[k - nc]->hash_buckets;
        if (b > 0 && !(c->used[k] = tl_calloc(((size_t)b + 7) / 8, 1, "hash buckets used"))) return TL_ERR_NOMEM;
    }
    for (int j = p->n_num_plain; j < p->n_num; j++) {
        qvalues *q = &c->q[j - p->n_num_plain];
        q->exact = !s->quantile_sketch;
        if ((st = tl_sketch_new(TL_DATA_SKETCH_K, TL_DATA_SKETCH_SEED + (uint64_t)j, &q->sk))) return st;
    }
    return TL_OK;
}

static void conv_free(conv *c)
{
    const plan *p = &c->p;
    const size_t nc = (size_t)p->n_cat, nb = (size_t)p->n_bag;
    for (size_t k = 0; k < nc; k++) {
        if (c->cnt) tl_free(c->cnt[k].v);
        if (c->map) tl_free(c->map[k]);
    }
    for (size_t k = 0; k < nb; k++) {
        if (c->bcnt) tl_free(c->bcnt[k].v);
        if (c->bmap) tl_free(c->bmap[k]);
    }
    for (size_t k = 0; c->used && k < nc + nb; k++) tl_free(c->used[k]);
    for (int q = 0; c->q && q < p->n_num - p->n_num_plain; q++) {
        tl_free(c->q[q].vals);
        tl_sketch_free(c->q[q].sk);
    }
    tl_free(c->cnt);
    tl_free(c->bcnt);
    tl_free(c->used);
    tl_free(c->sum);
    tl_free(c->sum2);
    tl_free(c->nk);
    tl_free(c->missing);
    tl_free(c->q);
    tl_free(c->bag_max);
    tl_free(c->map);
    tl_free(c->bmap);
    tl_free(c->map_n);
    tl_free(c->bmap_n);
    tl_free(c->miss_id);
    tl_free(c->ccol);
    tl_free(c->bcol);
    tl_free(c->auto_at);
    tl_free(c->auto_rows);
    tl_free(c->row);
    tl_shard_writer_close(c->w);
    tl_shard_layout_free(&c->l);
    tl_dataset_free(c->enc);
    tl_rawset_free(&c->rs);
    tl_data_plan_free(&c->p);
}

static void fill_report(const conv *c, tl_convert_report *rep)
{
    memset(rep, 0, sizeof *rep);
    for (int k = 0; k < 3; k++) {
        rep->rows[k] = c->n_split[k];
        rep->resumed[k] = c->done[k];
    }
    rep->skipped = c->skipped;
    rep->n_skip_lines = c->n_skip_lines;
    memcpy(rep->skip_lines, c->skip_lines, sizeof rep->skip_lines);
    const tl_dataset *e = c->enc;
    for (int f = 0; e && f < e->n_cat + e->n_bag && rep->n_hashed < TL_CONVERT_MAX_HASHED; f++) {
        const dcat *d = f < e->n_cat ? &e->cat[f] : &e->bag[f - e->n_cat].c;
        if (d->kind != CAT_HASH || !d->hash_known) continue;
        tl_convert_hashed *h = &rep->hashed[rep->n_hashed++];
        snprintf(h->name, sizeof h->name, "%s", d->name);
        h->buckets = d->buckets;
        h->values = d->hash_values;
        h->collided = d->hash_collided;
        int k = f < e->n_cat ? f : c->p.n_cat + (f - e->n_cat); /* plan order: single fields, then bags */
        h->auto_at = c->auto_at ? c->auto_at[k] : 0;
        h->auto_rows = c->auto_rows ? c->auto_rows[k] : 0;
    }
}

tl_status tl_shards_convert_csv(const tl_data_schema *s, const char *dir, size_t rows_per_shard,
                                tl_convert_progress progress, void *ud, tl_convert_report *report)
{
    static const char *fn = "tl_shards_convert_csv";
    if (report) memset(report, 0, sizeof *report);
    if (!s || !dir) return tl_fail(TL_ERR_ARG, "%s: NULL schema or directory", fn);
    tl_status st = tl_data_schema_check(s, fn);
    if (st) return st;
    if (tl_shards_complete(dir))
        return tl_fail(TL_ERR_STATE, "shards: %s is a complete conversion (it has manifest.tls); delete it to convert "
                                     "again", dir);
    conv c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.dir = dir;
    const char *base = strrchr(s->path, '/');
    c.source = s->name ? s->name : base ? base + 1 : s->path;
    c.progress = progress;
    c.ud = ud;
    if ((st = tl_data_plan_make(s, fn, &c.p))) goto done;
    if ((st = conv_init(&c))) goto done;
    const char *paths[3] = {s->path, s->split == TL_SPLIT_FILES ? s->valid_path : NULL,
                            s->split == TL_SPLIT_FILES ? s->test_path : NULL};
    for (int k = 0; k < 3; k++) {
        struct stat sb;
        if (paths[k] && stat(paths[k], &sb) == 0) c.bytes_total += (uint64_t)sb.st_size;
    }
    c.pass = 1;
    if ((st = read_files(&c, scan_chunk))) goto done;
    c.skipped = c.rs.skipped;
    c.n_skip_lines = c.rs.n_skip_lines;
    memcpy(c.skip_lines, c.rs.skip_lines, sizeof c.skip_lines);
    if ((st = check_rows(&c)) || (st = make_encodings(&c)) || (st = make_layout(&c))) goto done;
    for (int q = 0; q < c.p.n_num - c.p.n_num_plain; q++) { /* pass 2 needs the edges only */
        tl_free(c.q[q].vals);
        c.q[q].vals = NULL;
    }
    for (size_t k = 0; k < (size_t)c.p.n_cat; k++) {
        tl_free(c.cnt[k].v);
        c.cnt[k].v = NULL;
        c.cnt[k].cap = 0;
    }
    if ((st = check_state(&c, rows_per_shard))) goto done;
    if ((st = tl_shard_writer_open(dir, &c.l, rows_per_shard, &c.w, c.done))) goto done;
    tl_shard_writer_set_encodings(c.w, c.enc);
    for (int k = 0; k < 3; k++)
        if (c.done[k] > c.n_split[k]) {
            st = tl_fail(TL_ERR_STATE,
                         "shards: %s holds %llu %s rows, more than the %llu of %s: shards of other data with "
                         "the same layout; delete the directory",
                         dir, (unsigned long long)c.done[k], k == 0 ? "train" : k == 1 ? "valid" : "test",
                         (unsigned long long)c.n_split[k], c.source);
            goto done;
        }
    if (!(c.row = tl_malloc(tl_shard_layout_words(&c.l) * 4, "shard row"))) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    c.pass = 2;
    c.rs.skipped = 0;
    c.rs.n_skip_lines = 0;
    st = read_files(&c, write_chunk);
    if (st == TL_ERR_PARSE) { /* pass 1 read every row without fault: the file changed */
        char msg[1200];
        snprintf(msg, sizeof msg, "%s", tl_errmsg());
        tl_shard_writer_close(c.w);
        c.w = NULL;
        tl_shards_remove(dir);
        st = tl_fail(TL_ERR_PARSE,
                     "%s (in pass 2 of the conversion: the file changed after pass 1 read it; the shards in %s "
                     "are deleted)",
                     msg, dir);
        goto done;
    }
    if (st) goto done;
    for (int k = 0; k < 3; k++)
        if (c.seen[k] != c.n_split[k] || c.changed) {
            tl_shard_writer_close(c.w);
            c.w = NULL;
            tl_shards_remove(dir);
            st = tl_fail(TL_ERR_STATE,
                         "%s: the file changed between the two passes of the conversion (pass 1 read %llu rows "
                         "of the %s split, pass 2 %llu%s); the shards in %s are deleted: convert it again",
                         c.source, (unsigned long long)c.n_split[k], k == 0 ? "train" : k == 1 ? "valid" : "test",
                         (unsigned long long)c.seen[k], c.changed ? ", and values pass 1 did not see" : "", dir);
            goto done;
        }
    if ((st = tl_shard_writer_finish(c.w))) goto done; /* removes the record */
    if (progress) progress(ud, 2, kept_rows(&c), kept_rows(&c));
done:
    if (report) fill_report(&c, report);
    conv_free(&c);
    return st;
}
