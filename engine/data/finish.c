/* data/finish.c — raw rows → a dataset: split assignment, vocabularies and
 * numeric statistics from the training rows only, quantile buckets, missing
 * flags, and the final arrays packed split by split (train, valid, test;
 * file order within each). With like=, another dataset's encodings are used
 * instead and the layout must come out the same.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "sketch.h"
#include "dataset.h"

float tl_data_num_value(int transform, float x)
{
    if (transform == TL_NUM_LOG1P) return x < 0 ? -log1pf(-x) : log1pf(x);
    return x;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int tl_data_split_of_row(const tl_data_schema *s, uint64_t row)
{
    uint64_t h = hash_bytes(&row, sizeof row, s->seed ^ 0x73706c697448ULL);
    double u = (double)(h >> 11) * 0x1p-53;
    return u < s->ratio[0] ? TL_TO_TRAIN : u < s->ratio[0] + s->ratio[1] ? TL_TO_VALID : TL_TO_TEST;
}

static tl_status assign_splits(rawset *rs, const tl_data_schema *s, const tl_dataset *like)
{
    if (like || s->split == TL_SPLIT_NONE) {
        if (rs->n) memset(rs->tag, 0, rs->n);
        return TL_OK;
    }
    if (s->split != TL_SPLIT_RATIO) return TL_OK; /* tagged while reading */
    if (s->split_by_hash) {
        for (size_t r = 0; r < rs->n; r++) rs->tag[r] = (int8_t)tl_data_split_of_row(s, rs->row[r]);
        return TL_OK;
    }
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

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The collision count of a hashed field: of its n values seen in training
 * (counts > 0), those whose bucket (map) an earlier one already held. */
tl_status tl_data_hash_collisions(uint32_t n, const uint32_t *counts, const int32_t *map, dcat *out)
{
    int32_t *b = tl_malloc(sizeof *b * ((size_t)n + 1), "hash collisions");
    if (!b) return TL_ERR_NOMEM;
    uint32_t k = 0, used = 0;
    for (uint32_t i = 0; i < n; i++)
        if (counts[i]) b[k++] = map[i];
    qsort(b, k, sizeof *b, cmp_i32);
    for (uint32_t i = 0; i < k; i++) used += i == 0 || b[i] != b[i - 1];
    tl_free(b);
    out->hash_known = 1;
    out->hash_values = k;
    out->hash_collided = k - used;
    return TL_OK;
}

/* Build the id of every distinct raw value (of table t) of a categorical or
 * multi-valued column, with like's encoding lc when given. */
tl_status tl_data_build_vocab(const strtab *t, const uint32_t *counts, const tl_data_cat_col *col,
                             const tl_data_schema *s, const dcat *lc, dcat *out, int32_t *map)
{
    int kind = lc ? lc->kind : col->hash_buckets > 0 ? CAT_HASH : CAT_VOCAB;
    out->kind = kind;
    if (kind == CAT_HASH) {
        int32_t b = lc ? lc->buckets : col->hash_buckets;
        out->buckets = b;
        out->size = b + 1; /* the last id is "missing" */
        for (uint32_t i = 0; i < t->n; i++)
            map[i] = (int32_t)(hash_bytes(st_str(t, i), t->len[i], TL_DATA_HASH_SEED) % (uint64_t)b);
        return lc ? TL_OK : tl_data_hash_collisions(t->n, counts, map, out);
    }
    /* vocabulary: counts over training rows only */
    uint32_t n_str = 0;
    size_t blob = 0;
    if (lc) {
        strtab lk;
        if (tl_strtab_init(&lk)) return TL_ERR_NOMEM;
        for (uint32_t j = 0; j < lc->n_str; j++) {
            int32_t idx;
            const char *sv = lc->str_blob + lc->str_off[j];
            if (tl_strtab_intern(&lk, sv, lc->str_off[j + 1] - lc->str_off[j] - 1, &idx)) {
                tl_strtab_free(&lk);
                return TL_ERR_NOMEM;
            }
        }
        for (uint32_t i = 0; i < t->n; i++) {
            int64_t e = st_find(&lk, st_str(t, i), t->len[i], t->hash[i]);
            map[i] = e >= 0 ? ID_FIRST + (int32_t)e : ID_OOV;
        }
        tl_strtab_free(&lk);
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

/* One finish in progress: the inputs, the packing order and the numeric
 * statistics (freed by fin_free), and the dataset being filled. */
typedef struct {
    rawset *rs;
    const plan *p;
    const tl_data_schema *s;
    const tl_dataset *like;
    const char *source;
    size_t cnt[3], n;  /* rows per split, rows kept */
    uint32_t *src;     /* n raw row indices in packing order */
    uint8_t *flag;     /* per plain numeric column: it gets a _missing flag */
    double *mean, *sd; /* per plain numeric column */
    int n_flag;
    tl_dataset *d;
} fin;

static void fin_free(fin *f)
{
    tl_free(f->src);
    tl_free(f->flag);
    tl_free(f->mean);
    tl_free(f->sd);
}

/* Assign splits, check them, and order the kept rows split by split. */
static tl_status order_rows(fin *f)
{
    rawset *rs = f->rs;
    const tl_data_schema *s = f->s;
    tl_status st = assign_splits(rs, s, f->like);
    if (st) return st;
    for (int t = 0; t < s->n_labels; t++)
        if (s->labels[t].kind == TL_LABEL_POSITIVE && s->labels[t].n_negative == 0 && rs->npos[t] == 0 && !f->like)
            return tl_fail(TL_ERR_PARSE,
                           "%s: task '%s': no row has the positive value \"%s\" in column '%s' "
                           "(check positive=)",
                           f->source, s->labels[t].task, s->labels[t].positive[0], s->labels[t].column);
    for (size_t r = 0; r < rs->n; r++)
        if (rs->tag[r] >= 0) f->cnt[rs->tag[r]]++;
    f->n = f->cnt[0] + f->cnt[1] + f->cnt[2];
    if (f->n == 0) return tl_fail(TL_ERR_PARSE, "%s: no data rows", f->source);
    if (!f->like && s->split != TL_SPLIT_NONE && f->cnt[0] == 0)
        return tl_fail(TL_ERR_PARSE, "%s: the training split is empty", f->source);
    f->src = tl_malloc(sizeof *f->src * f->n, "split order");
    if (!f->src) return TL_ERR_NOMEM;
    size_t pos[3] = {0, f->cnt[0], f->cnt[0] + f->cnt[1]};
    for (size_t r = 0; r < rs->n; r++)
        if (rs->tag[r] >= 0) f->src[pos[rs->tag[r]]++] = (uint32_t)r;
    return TL_OK;
}

/* Mean, std and missing flag of every plain numeric column: from like, or
 * over the training rows of the transformed values. */
static tl_status num_stats(fin *f)
{
    const plan *p = f->p;
    const rawset *rs = f->rs;
    f->flag = tl_calloc((size_t)p->n_num + 1, 1, "missing flags");
    f->mean = tl_calloc((size_t)p->n_num + 1, sizeof *f->mean, "numeric statistics");
    f->sd = tl_calloc((size_t)p->n_num + 1, sizeof *f->sd, "numeric statistics");
    if (!f->flag || !f->mean || !f->sd) return TL_ERR_NOMEM;
    for (int j = 0; j < p->n_num_plain; j++) {
        const tl_data_num_col *c = p->num[j];
        const dnum *ln = f->like ? like_num(f->like, c->name) : NULL;
        if (f->like && (!ln || ln->transform == NUM_FLAG))
            return tl_fail(TL_ERR_ARG, "like: the first dataset has no numeric column '%s'", c->name);
        if (ln) {
            f->mean[j] = ln->mean;
            f->sd[j] = ln->std;
            char fname[300];
            snprintf(fname, sizeof fname, "%s_missing", c->name);
            f->flag[j] = like_num(f->like, fname) != NULL;
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
                double v = (double)tl_data_num_value(c->transform, x);
                sum += v;
                sum2 += v * v;
                k++;
            }
            f->mean[j] = k ? sum / (double)k : 0.0;
            double var = k ? sum2 / (double)k - f->mean[j] * f->mean[j] : 1.0;
            f->sd[j] = var > 1e-12 ? sqrt(var) : 1.0;
            f->flag[j] = (uint8_t)had_missing;
        }
        f->n_flag += f->flag[j];
    }
    return TL_OK;
}

/* The dataset with its arrays allocated and its tasks named. Layout:
 * vocab/hash fields, quantile fields; plain numerics, flags. */
static tl_status alloc_packed(fin *f)
{
    const plan *p = f->p;
    const tl_data_schema *s = f->s;
    const rawset *rs = f->rs;
    const size_t n = f->n;
    const int n_cat = p->n_cat + (p->n_num - p->n_num_plain), n_num = p->n_num_plain + f->n_flag;
    tl_status st = tl_data_alloc(&f->d, n_cat, n_num, s->n_labels);
    if (st) return st;
    tl_dataset *d = f->d;
    d->source = tl_strdup(f->source, "dataset source");
    d->n = n;
    d->has_splits = !f->like && s->split != TL_SPLIT_NONE;
    for (int k = 0; k < 3; k++) d->split_n[k] = d->has_splits ? f->cnt[k] : 0;
    if (!d->has_splits) d->split_n[0] = 0;
    d->catv = tl_malloc(sizeof *d->catv * n * (size_t)(n_cat ? n_cat : 1), "categorical features");
    d->numv = tl_malloc(sizeof *d->numv * n * (size_t)(n_num ? n_num : 1), "numeric features");
    d->labv = tl_malloc(sizeof *d->labv * n * (size_t)s->n_labels, "labels");
    d->row = tl_malloc(sizeof *d->row * n, "row indices");
    if (rs->has_group) d->grp = tl_malloc(sizeof *d->grp * n, "group ids");
    if (rs->has_weight) d->wt = tl_malloc(sizeof *d->wt * n, "weights");
    if (!d->source || !d->catv || !d->numv || !d->labv || !d->row || (rs->has_group && !d->grp) ||
        (rs->has_weight && !d->wt))
        return TL_ERR_NOMEM;
    for (int t = 0; t < s->n_labels; t++) {
        if (!(d->task_name[t] = tl_strdup(s->labels[t].task, "task name"))) return TL_ERR_NOMEM;
        d->task_type[t] = s->labels[t].kind == TL_LABEL_REGRESSION ? TL_TASK_REGRESSION : TL_TASK_BINARY;
    }
    return TL_OK;
}

/* Vocabulary and hash fields, with the training values counted in one pass
 * over the rows (field by field would walk the row-major array 33 times). */
static tl_status pack_cats(fin *f, int32_t *map, int32_t *miss, uint32_t *counts, size_t *moff)
{
    const rawset *rs = f->rs;
    tl_dataset *d = f->d;
    const int nc = rs->n_cat;
    moff[0] = 0;
    for (int k = 0; k < nc; k++) moff[k + 1] = moff[k] + (size_t)rs->tab[k].n + 1;
    if (!f->like)
        for (size_t r = 0; r < rs->n; r++) {
            if (rs->tag[r] != TL_TO_TRAIN) continue;
            const int32_t *raw = rs->cat + r * (size_t)nc;
            for (int k = 0; k < nc; k++)
                if (raw[k] >= 0) counts[moff[k] + (size_t)raw[k]]++;
        }
    for (int k = 0; k < nc; k++) {
        dcat *c = &d->cat[k];
        if (!(c->name = tl_strdup(f->p->cat[k]->name, "field name"))) return TL_ERR_NOMEM;
        const dcat *lc = f->like ? like_cat(f->like, c->name) : NULL;
        if (f->like && (!lc || lc->kind == CAT_QUANT))
            return tl_fail(TL_ERR_ARG, "like: the first dataset has no categorical field '%s'", c->name);
        tl_status st = tl_data_build_vocab(&rs->tab[k], counts + moff[k], f->p->cat[k], f->s, lc, c, map + moff[k]);
        if (st) return st;
        miss[k] = c->kind == CAT_HASH ? c->buckets : ID_MISSING;
        d->vocab[k] = c->size;
    }
    for (size_t i = 0; i < f->n; i++) {
        const int32_t *raw = rs->cat + (size_t)f->src[i] * (size_t)nc;
        int32_t *dst = d->catv + i * (size_t)d->n_cat;
        for (int k = 0; k < nc; k++) dst[k] = raw[k] < 0 ? miss[k] : map[moff[k] + (size_t)raw[k]];
    }
    return TL_OK;
}

/* pack_cats with its work arrays. */
static tl_status pack_cat_fields(fin *f)
{
    const rawset *rs = f->rs;
    const int nc = rs->n_cat;
    size_t tot = 0;
    for (int k = 0; k < nc; k++) tot += (size_t)rs->tab[k].n + 1;
    uint32_t *counts = tl_calloc(tot + 1, sizeof *counts, "vocabulary counts");
    int32_t *map = tl_malloc(sizeof *map * (tot + 1), "vocabulary map");
    size_t *moff = tl_malloc(sizeof *moff * ((size_t)nc + 1), "vocabulary map");
    int32_t *miss = tl_malloc(sizeof *miss * ((size_t)nc + 1), "vocabulary map");
    tl_status st = counts && map && moff && miss ? pack_cats(f, map, miss, counts, moff) : TL_ERR_NOMEM;
    tl_free(map);
    tl_free(miss);
    tl_free(counts);
    tl_free(moff);
    return st;
}

static const dbag *like_bag(const tl_dataset *like, const char *name)
{
    for (int b = 0; b < like->n_bag; b++)
        if (strcmp(like->bag[b].c.name, name) == 0) return &like->bag[b];
    return NULL;
}

/* Bag field k's encoding and the map of its raw values to ids: a vocabulary
 * from its values in training rows (every value counts, as often as it
 * occurs), hash buckets, or like's. */
static tl_status pack_bag(fin *f, int k, uint32_t *counts, int32_t *map)
{
    const rawset *rs = f->rs;
    tl_dataset *d = f->d;
    const tl_data_bag_col *col = f->p->bag[k];
    const strtab *t = &rs->btab[k];
    const size_t nb = (size_t)rs->n_bag;
    dbag *g = &d->bag[k];
    const dbag *lb = f->like ? like_bag(f->like, col->name) : NULL;
    if (f->like && !lb) return tl_fail(TL_ERR_ARG, "like: the first dataset has no multi-valued field '%s'", col->name);
    if (!(g->c.name = tl_strdup(col->name, "field name"))) return TL_ERR_NOMEM;
    memset(counts, 0, sizeof *counts * ((size_t)t->n + 1));
    for (size_t r = 0; r < rs->n && !f->like; r++) {
        if (rs->tag[r] != TL_TO_TRAIN) continue;
        const int32_t *v = rs->bval + rs->boff[r];
        for (int j = 0; j < k; j++) v += rs->bcnt[r * nb + (size_t)j];
        for (int j = 0; j < rs->bcnt[r * nb + (size_t)k]; j++) counts[v[j]]++;
    }
    tl_data_cat_col cc = {col->name, col->min_count, col->hash_buckets};
    tl_status st = tl_data_build_vocab(t, counts, &cc, f->s, lb ? &lb->c : NULL, &g->c, map);
    if (st) return st;
    g->pool = lb ? lb->pool : (int)col->pooling;
    g->keep_first = lb ? lb->keep_first : col->keep_first;
    g->truncated = rs->btrunc[k];
    return TL_OK;
}

/* The slots of bag field k: like's, max_len, or its longest row (at least 1). */
static int bag_len(const fin *f, int k)
{
    const dbag *lb = f->like ? like_bag(f->like, f->p->bag[k]->name) : NULL;
    if (lb) return lb->len;
    if (f->p->bag[k]->max_len > 0) return f->p->bag[k]->max_len;
    int len = 1;
    for (size_t r = 0; r < f->rs->n; r++) {
        int c = f->rs->bcnt[r * (size_t)f->rs->n_bag + (size_t)k];
        if (f->rs->tag[r] >= 0 && c > len) len = c;
    }
    return len;
}

/* Every bag field: encodings, then the ids of the kept rows in slot layout. */
static tl_status pack_bags(fin *f)
{
    const rawset *rs = f->rs;
    tl_dataset *d = f->d;
    const size_t nb = (size_t)rs->n_bag;
    if (!nb) return TL_OK;
    tl_status st = tl_data_alloc_bags(d, rs->n_bag);
    if (st) return st;
    size_t tot = 0, moff[TL_DATA_MAX_BAGS + 1];
    for (size_t k = 0; k < nb; k++) {
        moff[k] = tot;
        tot += (size_t)rs->btab[k].n + 1;
        d->bag[k].len = bag_len(f, (int)k);
        d->bag_slots += d->bag[k].len;
    }
    uint32_t *counts = tl_malloc(sizeof *counts * (tot + 1), "bag vocabulary counts");
    int32_t *map = tl_malloc(sizeof *map * (tot + 1), "bag vocabulary map");
    d->bagv = tl_malloc(sizeof *d->bagv * (f->n ? f->n : 1) * (size_t)d->bag_slots, "bag features");
    st = counts && map && d->bagv ? TL_OK : TL_ERR_NOMEM;
    for (size_t k = 0; k < nb && !st; k++) st = pack_bag(f, (int)k, counts + moff[k], map + moff[k]);
    for (size_t i = 0; i < f->n && !st; i++) {
        size_t r = f->src[i];
        const int32_t *v = rs->bval + rs->boff[r];
        int32_t *dst = d->bagv + i * (size_t)d->bag_slots;
        for (size_t k = 0; k < nb; k++) {
            int c = rs->bcnt[r * nb + k], len = d->bag[k].len;
            for (int j = 0; j < len; j++) dst[j] = j < c ? map[moff[k] + (size_t)v[j]] : -1;
            v += c;
            dst += len;
        }
    }
    tl_free(counts);
    tl_free(map);
    return st;
}

tl_status tl_data_quantile_edges(float *vals, size_t k, const tl_sketch *sk, int B, dcat *c)
{
    float *q = sk ? tl_malloc(sizeof *q * ((size_t)B + 1), "quantile values") : NULL;
    double *rank = sk ? tl_malloc(sizeof *rank * (size_t)B, "quantile ranks") : NULL;
    c->edges = tl_malloc(sizeof *c->edges * (size_t)B, "quantile edges");
    tl_status st = c->edges && (!sk || (q && rank)) ? TL_OK : TL_ERR_NOMEM;
    if (!st && sk && k) {
        for (int b = 1; b < B; b++) rank[b - 1] = floor((double)b * (double)k / B);
        st = tl_sketch_quantiles(sk, rank, B - 1, q + 1); /* q[b] = quantile b */
    } else if (!st && k) {
        qsort(vals, k, sizeof *vals, cmp_float);
    }
    for (int b = 1; b < B && k && !st; b++) {
        float e = sk ? q[b] : vals[(size_t)((double)b * (double)k / B)];
        if (c->n_edges == 0 || e > c->edges[c->n_edges - 1]) c->edges[c->n_edges++] = e;
    }
    tl_free(q);
    tl_free(rank);
    return st;
}

/* Bucket edges of numeric column j over its training values: the distinct
 * values at the B-1 inner quantiles, from a sort, or from the quantile
 * sketch when asked or with more than TL_DATA_SKETCH_ROWS values. */
static tl_status quantile_edges(const rawset *rs, int j, int B, int sketch, dcat *c)
{
    size_t k = 0;
    for (size_t r = 0; r < rs->n; r++) {
        float x = rs->num[r * (size_t)rs->n_num + (size_t)j];
        k += rs->tag[r] == TL_TO_TRAIN && !isnan(x);
    }
    sketch = k && (sketch || k > TL_DATA_SKETCH_ROWS);
    tl_status st;
    if (sketch) {
        tl_sketch *sk;
        if ((st = tl_sketch_new(TL_DATA_SKETCH_K, TL_DATA_SKETCH_SEED + (uint64_t)j, &sk))) return st;
        for (size_t r = 0; r < rs->n && !st; r++) {
            float x = rs->num[r * (size_t)rs->n_num + (size_t)j];
            if (rs->tag[r] == TL_TO_TRAIN && !isnan(x)) st = tl_sketch_add(sk, x);
        }
        if (!st) st = tl_data_quantile_edges(NULL, k, sk, B, c);
        tl_sketch_free(sk);
        return st;
    }
    float *vals = tl_malloc(sizeof *vals * (k + 1), "quantile values");
    if (!vals) return TL_ERR_NOMEM;
    k = 0;
    for (size_t r = 0; r < rs->n; r++) {
        float x = rs->num[r * (size_t)rs->n_num + (size_t)j];
        if (rs->tag[r] == TL_TO_TRAIN && !isnan(x)) vals[k++] = x;
    }
    st = tl_data_quantile_edges(vals, k, NULL, B, c);
    tl_free(vals);
    return st;
}

/* Quantile field q: ids 0 = missing, 1 .. n_edges+1 buckets. */
static tl_status pack_quantile(fin *f, int q)
{
    const rawset *rs = f->rs;
    tl_dataset *d = f->d;
    int j = f->p->n_num_plain + q, fi = f->p->n_cat + q;
    const tl_data_num_col *col = f->p->num[j];
    dcat *c = &d->cat[fi];
    c->kind = CAT_QUANT;
    if (!(c->name = tl_strdup(col->name, "field name"))) return TL_ERR_NOMEM;
    const dcat *lc = f->like ? like_cat(f->like, col->name) : NULL;
    if (f->like && (!lc || lc->kind != CAT_QUANT))
        return tl_fail(TL_ERR_ARG, "like: the first dataset has no quantile field '%s'", col->name);
    if (lc) {
        c->buckets = lc->buckets;
        c->n_edges = lc->n_edges;
        c->edges = tl_malloc(sizeof *c->edges * ((size_t)c->n_edges + 1), "quantile edges");
        if (!c->edges) return TL_ERR_NOMEM;
        memcpy(c->edges, lc->edges, sizeof *c->edges * c->n_edges);
    } else {
        c->buckets = col->buckets > 1 ? col->buckets : 10;
        tl_status st = quantile_edges(rs, j, c->buckets, f->s->quantile_sketch, c);
        if (st) return st;
    }
    c->size = (int32_t)c->n_edges + 2;
    d->vocab[fi] = c->size;
    for (size_t i = 0; i < f->n; i++) {
        float x = rs->num[(size_t)f->src[i] * (size_t)rs->n_num + (size_t)j];
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
        d->catv[i * (size_t)d->n_cat + (size_t)fi] = id;
    }
    return TL_OK;
}

/* Numeric columns: transformed, imputed with the training mean, flagged. */
static tl_status pack_nums(fin *f)
{
    const rawset *rs = f->rs;
    tl_dataset *d = f->d;
    const size_t n = f->n;
    const int n_num = d->n_num;
    int fcol = f->p->n_num_plain;
    for (int j = 0; j < f->p->n_num_plain; j++) {
        const tl_data_num_col *col = f->p->num[j];
        dnum *o = &d->num[j];
        o->transform = col->transform;
        o->mean = f->mean[j];
        o->std = f->sd[j];
        if (!(o->name = tl_strdup(col->name, "column name"))) return TL_ERR_NOMEM;
        const float mu = (float)f->mean[j], inv = (float)(1.0 / f->sd[j]);
        for (size_t i = 0; i < n; i++) {
            float x = rs->num[(size_t)f->src[i] * (size_t)rs->n_num + (size_t)j];
            float v = isnan(x) ? mu : tl_data_num_value(col->transform, x);
            if (col->transform == TL_NUM_STANDARD) v = (v - mu) * inv;
            d->numv[i * (size_t)n_num + (size_t)j] = v;
        }
        if (!f->flag[j]) continue;
        dnum *fl = &d->num[fcol];
        char fname[300];
        snprintf(fname, sizeof fname, "%s_missing", col->name);
        fl->transform = NUM_FLAG;
        fl->mean = 0;
        fl->std = 1;
        if (!(fl->name = tl_strdup(fname, "column name"))) return TL_ERR_NOMEM;
        for (size_t i = 0; i < n; i++)
            d->numv[i * (size_t)n_num + (size_t)fcol] =
                isnan(rs->num[(size_t)f->src[i] * (size_t)rs->n_num + (size_t)j]) ? 1.0f : 0.0f;
        fcol++;
    }
    return TL_OK;
}

/* With like=: the same layout as the first dataset, or models trained on it break. */
static tl_status check_like_layout(const fin *f)
{
    const tl_dataset *like = f->like, *d = f->d;
    int same = like->n_cat == d->n_cat && like->n_num == d->n_num && like->n_tasks == d->n_tasks;
    for (int k = 0; same && k < d->n_cat; k++) same = strcmp(like->cat[k].name, d->cat[k].name) == 0;
    same = same && like->n_bag == d->n_bag;
    for (int b = 0; same && b < d->n_bag; b++) same = strcmp(like->bag[b].c.name, d->bag[b].c.name) == 0;
    for (int j = 0; same && j < d->n_num; j++) same = strcmp(like->num[j].name, d->num[j].name) == 0;
    for (int t = 0; same && t < d->n_tasks; t++)
        same = strcmp(like->task_name[t], d->task_name[t]) == 0 && like->task_type[t] == d->task_type[t];
    if (!same) return tl_fail(TL_ERR_ARG, "like: %s does not have the first dataset's fields and tasks", f->source);
    return TL_OK;
}

/* Labels, row indices, group ids, weights and the skipped-row record. */
static void pack_rows(fin *f)
{
    const rawset *rs = f->rs;
    tl_dataset *d = f->d;
    const size_t n_lab = (size_t)f->s->n_labels;
    for (size_t i = 0; i < f->n; i++) {
        size_t r = f->src[i];
        memcpy(d->labv + i * n_lab, rs->lab + r * n_lab, sizeof *d->labv * n_lab);
        d->row[i] = rs->row[r];
        if (d->grp) d->grp[i] = rs->grp[r];
        if (d->wt) d->wt[i] = rs->wt[r];
    }
    d->skipped = rs->skipped;
    d->unlabeled = rs->unlabeled;
    d->n_skip_lines = rs->n_skip_lines;
    memcpy(d->skip_lines, rs->skip_lines, sizeof d->skip_lines);
    tl_data_set_views(d);
}

tl_status tl_data_finish(rawset *rs, const finish_args *a, tl_dataset **out)
{
    fin f;
    memset(&f, 0, sizeof f);
    f.rs = rs;
    f.p = a->p;
    f.s = a->s;
    f.like = a->like;
    f.source = a->source;
    tl_status st = order_rows(&f);
    if (!st) st = num_stats(&f);
    if (!st) st = alloc_packed(&f);
    if (!st) st = pack_cat_fields(&f);
    for (int q = 0; !st && q < f.p->n_num - f.p->n_num_plain; q++) st = pack_quantile(&f, q);
    if (!st) st = pack_nums(&f);
    if (!st) st = pack_bags(&f);
    if (!st && f.like) st = check_like_layout(&f);
    if (!st) pack_rows(&f);
    fin_free(&f);
    if (st) {
        tl_dataset_free(f.d);
        return st;
    }
    *out = f.d;
    return TL_OK;
}
