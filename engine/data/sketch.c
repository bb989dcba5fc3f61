/* data/sketch.c — the KLL quantile sketch: levels of compactors, level h
 * holding values that stand for 2^h values each; a full level is sorted and
 * every other value (odd or even positions, by a coin flip) moves up.
 */
#include "sketch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SK_LEVELS 64

struct tl_sketch {
    int k;
    tl_rng rng;
    int H;                  /* levels in use */
    float *lv[SK_LEVELS];
    size_t len[SK_LEVELS], cap[SK_LEVELS];
    uint64_t n;
    size_t size, max_size;  /* values held; compaction starts at max_size */
};

tl_status tl_sketch_new(int k, uint64_t seed, tl_sketch **out)
{
    *out = NULL;
    if (k < 8 || k > 65536) return tl_fail(TL_ERR_ARG, "quantile sketch: k must be in 8 .. 65536, got %d", k);
    tl_sketch *s = tl_calloc(1, sizeof *s, "quantile sketch");
    if (!s) return TL_ERR_NOMEM;
    s->k = k;
    tl_rng_seed(&s->rng, seed);
    s->H = 1;
    s->max_size = (size_t)k + 1;
    *out = s;
    return TL_OK;
}

void tl_sketch_free(tl_sketch *s)
{
    if (!s) return;
    for (int h = 0; h < SK_LEVELS; h++) tl_free(s->lv[h]);
    tl_free(s);
}

uint64_t tl_sketch_count(const tl_sketch *s) { return s->n; }
size_t tl_sketch_retained(const tl_sketch *s) { return s->size; }

/* Level h's capacity: k (2/3)^(H-1-h) + 1, the top level the largest. */
static size_t capacity(const tl_sketch *s, int h)
{
    double c = s->k;
    for (int d = s->H - 1 - h; d > 0; d--) c *= 2.0 / 3.0;
    return (size_t)ceil(c) + 1;
}

static tl_status push(tl_sketch *s, int h, float x)
{
    if (s->len[h] == s->cap[h]) {
        size_t cap = s->cap[h] ? s->cap[h] * 2 : (size_t)s->k + 2;
        float *nl = tl_realloc(s->lv[h], cap * sizeof *nl, "quantile sketch");
        if (!nl) return TL_ERR_NOMEM;
        s->lv[h] = nl;
        s->cap[h] = cap;
    }
    s->lv[h][s->len[h]++] = x;
    return TL_OK;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Half of level h (sorted; of each pair, the one the coin picks) to h + 1;
 * with an odd count the smallest value stays. */
static tl_status compact(tl_sketch *s, int h)
{
    float *v = s->lv[h];
    size_t m = s->len[h];
    qsort(v, m, sizeof *v, cmp_float);
    size_t start = m & 1, pick = (size_t)(tl_rng_next(&s->rng) & 1);
    for (size_t i = start; i + 1 < m; i += 2) {
        tl_status st = push(s, h + 1, v[i + pick]);
        if (st) return st;
    }
    s->len[h] = start;
    return TL_OK;
}

static tl_status compress(tl_sketch *s)
{
    for (int h = 0; h < s->H; h++) {
        if (s->len[h] < capacity(s, h)) continue;
        if (h + 1 == s->H) {
            if (s->H == SK_LEVELS) return tl_fail(TL_ERR_ARG, "quantile sketch: more than 2^%d values", SK_LEVELS);
            s->H++;
            s->max_size = 0;
            for (int g = 0; g < s->H; g++) s->max_size += capacity(s, g);
        }
        tl_status st = compact(s, h);
        if (st) return st;
        s->size = 0;
        for (int g = 0; g < s->H; g++) s->size += s->len[g];
        if (s->size < s->max_size) break;
    }
    return TL_OK;
}

tl_status tl_sketch_add(tl_sketch *s, float x)
{
    tl_status st = push(s, 0, x);
    if (st) return st;
    s->n++;
    return ++s->size >= s->max_size ? compress(s) : TL_OK;
}

typedef struct {
    float v;
    uint64_t w;
} weighted;

static int cmp_weighted(const void *a, const void *b)
{
    float x = ((const weighted *)a)->v, y = ((const weighted *)b)->v;
    return (x > y) - (x < y);
}

tl_status tl_sketch_quantiles(const tl_sketch *s, const double *rank, int n, float *out)
{
    if (!s->size) return tl_fail(TL_ERR_ARG, "quantile sketch: no values");
    weighted *all = tl_malloc(sizeof *all * s->size, "quantile sketch");
    if (!all) return TL_ERR_NOMEM;
    size_t m = 0;
    for (int h = 0; h < s->H; h++)
        for (size_t i = 0; i < s->len[h]; i++) all[m++] = (weighted){s->lv[h][i], (uint64_t)1 << h};
    qsort(all, m, sizeof *all, cmp_weighted);
    for (int q = 0; q < n; q++) {
        uint64_t cum = 0;
        size_t i = 0;
        for (; i + 1 < m; i++) {
            cum += all[i].w;
            if ((double)cum > rank[q]) break;
        }
        out[q] = all[i].v;
    }
    tl_free(all);
    return TL_OK;
}
