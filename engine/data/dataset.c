/* data/dataset.c — the dataset object: accessors of its layout, splits and
 * vocabularies, allocation, split views and shuffled split orders. The
 * arrays are filled by finish.c, cache.c and synthetic_data.c.
 */
#include "dataset.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data_internal.h"

const char *const tl_data_split_names[4] = {"train", "valid", "test", "all"};

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
    for (int b = 0; b < d->n_bag && d->bag; b++) {
        tl_free(d->bag[b].c.name);
        tl_free(d->bag[b].c.str_off);
        tl_free(d->bag[b].c.str_blob);
    }
    tl_free(d->bag);
    tl_free(d->bagv);
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
        if (strcmp(name, tl_data_split_names[k]) == 0) return (k == 3 || d->has_splits) ? &d->sp[k] : NULL;
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
    b += d->n * (size_t)d->bag_slots * 4;
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
    return d->ids_only ? "ids" : k[d->cat[f].kind];
}

const float *tl_dataset_quantile_edges(const tl_dataset *d, int f, int *n)
{
    *n = 0;
    if (f < 0 || f >= d->n_cat || d->cat[f].kind != CAT_QUANT) return NULL;
    *n = (int)d->cat[f].n_edges;
    return d->cat[f].edges;
}

const char *tl_dataset_num_transform(const tl_dataset *d, int j, double *mean, double *std)
{
    if (j < 0 || j >= d->n_num) return NULL;
    static const char *const k[] = {"standard", "log1p", "none", "quantile", "flag"};
    if (mean) *mean = d->num[j].mean;
    if (std) *std = d->num[j].std;
    return k[d->num[j].transform];
}

static uint64_t dcat_fingerprint(const dcat *c)
{
    int64_t head[4] = {c->kind, c->size, c->buckets, (int64_t)c->n_str};
    uint64_t h = hash_bytes(head, sizeof head, 0x766f636162ULL);
    if (c->n_str) h = hash_bytes(c->str_blob, (size_t)c->str_off[c->n_str], h);
    if (c->n_edges) h = hash_bytes(c->edges, sizeof *c->edges * c->n_edges, h);
    return h;
}

uint64_t tl_dataset_vocab_fingerprint(const tl_dataset *d, int f)
{
    if (!d || d->ids_only || f < 0 || f >= d->n_cat) return 0;
    return dcat_fingerprint(&d->cat[f]);
}

uint64_t tl_dataset_bag_fingerprint(const tl_dataset *d, int b)
{
    if (!d || d->ids_only || b < 0 || b >= d->n_bag) return 0;
    return dcat_fingerprint(&d->bag[b].c);
}

/* What differs between encodings x (here) and y (there), in msg. */
static int dcat_diff(const dcat *x, const dcat *y, char *msg, size_t cap)
{
    if (dcat_fingerprint(x) == dcat_fingerprint(y)) return 0;
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

/* dcat_diff, where a dataset of shards without an encodings record knows only
 * its fields' sizes. */
static int field_diff(const tl_dataset *a, const dcat *x, const tl_dataset *b, const dcat *y, char *msg, size_t cap)
{
    if (!a->ids_only && !b->ids_only) return dcat_diff(x, y, msg, cap);
    if (x->size != y->size) {
        snprintf(msg, cap, "field '%s' has %d ids here and %d there", x->name, (int)x->size, (int)y->size);
        return 1;
    }
    if (a->ids_only && b->ids_only) return 0;
    snprintf(msg, cap, "field '%s' has ids without values %s (shards written without their encodings), so "
                       "they cannot be matched with the values %s",
             x->name, a->ids_only ? "here" : "there", a->ids_only ? "there" : "here");
    return 1;
}

int tl_dataset_vocab_diff(const tl_dataset *a, int fa, const tl_dataset *b, int fb, char *msg, size_t cap)
{
    if (!a || !b || fa < 0 || fa >= a->n_cat || fb < 0 || fb >= b->n_cat) return 0;
    return field_diff(a, &a->cat[fa], b, &b->cat[fb], msg, cap);
}

int tl_dataset_bag_diff(const tl_dataset *a, int ba, const tl_dataset *b, int bb, char *msg, size_t cap)
{
    if (!a || !b || ba < 0 || ba >= a->n_bag || bb < 0 || bb >= b->n_bag) return 0;
    return field_diff(a, &a->bag[ba].c, b, &b->bag[bb].c, msg, cap);
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
    tl_rng_seed(&r, seed ^ fmix64((uint64_t)(uint32_t)epoch + XXH_P4));
    return tl_split_shuffle(s, &r, order);
}

tl_split tl_split_rows(const tl_split *s, size_t from, size_t n, int n_cat, int n_num, int n_tasks)
{
    tl_split part = *s;
    part.n = n;
    part.cat = s->cat ? s->cat + from * (size_t)n_cat : NULL;
    part.num = s->num ? s->num + from * (size_t)n_num : NULL;
    part.labels = s->labels ? s->labels + from * (size_t)n_tasks : NULL;
    part.group = s->group ? s->group + from : NULL;
    part.weight = s->weight ? s->weight + from : NULL;
    part.row = s->row ? s->row + from : NULL;
    part.bag = s->bag ? s->bag + from * (size_t)s->bag_slots : NULL;
    return part;
}

double tl_split_label_mean(const tl_split *s, const tl_dataset *d, int t)
{
    if (!s || !d || t < 0 || t >= d->n_tasks || s->n == 0) return NAN;
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += (double)s->labels[i * (size_t)d->n_tasks + (size_t)t];
    return sum / (double)s->n;
}

tl_status tl_data_alloc(tl_dataset **out, int n_cat, int n_num, int n_tasks)
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

void tl_data_set_views(tl_dataset *d)
{
    size_t start[4] = {0, d->split_n[0], d->split_n[0] + d->split_n[1], 0};
    size_t count[4] = {d->split_n[0], d->split_n[1], d->split_n[2], d->n};
    for (int k = 0; k < 4; k++) {
        tl_split *s = &d->sp[k];
        size_t o = start[k];
        s->name = tl_data_split_names[k];
        s->n = count[k];
        s->cat = d->catv ? d->catv + o * (size_t)d->n_cat : NULL;
        s->num = d->numv ? d->numv + o * (size_t)d->n_num : NULL;
        s->labels = d->labv ? d->labv + o * (size_t)d->n_tasks : NULL;
        s->group = d->grp ? d->grp + o : NULL;
        s->weight = d->wt ? d->wt + o : NULL;
        s->row = d->row ? d->row + o : NULL;
        s->bag = d->bagv ? d->bagv + o * (size_t)d->bag_slots : NULL;
        s->bag_slots = d->bagv ? d->bag_slots : 0;
    }
}

tl_status tl_data_alloc_bags(tl_dataset *d, int n_bag)
{
    if (!(d->bag = tl_calloc((size_t)n_bag + 1, sizeof *d->bag, "dataset bag fields"))) return TL_ERR_NOMEM;
    d->n_bag = n_bag;
    return TL_OK;
}

int tl_dataset_n_bag(const tl_dataset *d) { return d->n_bag; }
const char *tl_dataset_bag_name(const tl_dataset *d, int b) { return b >= 0 && b < d->n_bag ? d->bag[b].c.name : NULL; }
int32_t tl_dataset_bag_vocab(const tl_dataset *d, int b) { return b >= 0 && b < d->n_bag ? d->bag[b].c.size : 0; }
int tl_dataset_bag_len(const tl_dataset *d, int b) { return b >= 0 && b < d->n_bag ? d->bag[b].len : 0; }
tl_pooling tl_dataset_bag_pool(const tl_dataset *d, int b)
{
    return b >= 0 && b < d->n_bag ? (tl_pooling)d->bag[b].pool : TL_POOL_SUM;
}
uint64_t tl_dataset_bag_truncated(const tl_dataset *d, int b) { return b >= 0 && b < d->n_bag ? d->bag[b].truncated : 0; }
int tl_dataset_bag_keep_first(const tl_dataset *d, int b) { return b >= 0 && b < d->n_bag ? d->bag[b].keep_first : 0; }
const char *tl_dataset_bag_kind(const tl_dataset *d, int b)
{
    if (b < 0 || b >= d->n_bag) return NULL;
    return d->ids_only ? "ids" : d->bag[b].c.kind == CAT_HASH ? "hash" : "vocab";
}
const char *tl_dataset_bag_string(const tl_dataset *d, int b, int32_t id)
{
    if (b < 0 || b >= d->n_bag) return NULL;
    const dcat *c = &d->bag[b].c;
    if (c->kind != CAT_VOCAB || id < ID_FIRST || (uint32_t)(id - ID_FIRST) >= c->n_str) return NULL;
    return c->str_blob + c->str_off[id - ID_FIRST];
}

int tl_dataset_hash_collisions(const tl_dataset *d, int f, uint32_t *values, uint32_t *collided)
{
    if (!d || f < 0 || f >= d->n_cat || d->cat[f].kind != CAT_HASH || !d->cat[f].hash_known) return 0;
    if (values) *values = d->cat[f].hash_values;
    if (collided) *collided = d->cat[f].hash_collided;
    return 1;
}
