/* data/strtab.c — raw rows before finishing: the per-column string tables
 * that intern categorical values in first-appearance order, and the growing
 * row arrays every reader fills (rawset).
 */
#include "data_internal.h"

#include <string.h>

void tl_strtab_free(strtab *t)
{
    tl_free(t->slot);
    tl_free(t->off);
    tl_free(t->len);
    tl_free(t->hash);
    tl_free(t->blob);
    memset(t, 0, sizeof *t);
}

tl_status tl_strtab_init(strtab *t)
{
    memset(t, 0, sizeof *t);
    t->mask = 63;
    t->slot = tl_calloc(64, sizeof *t->slot, "string table");
    return t->slot ? TL_OK : TL_ERR_NOMEM;
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
tl_status tl_strtab_intern(strtab *t, const char *s, size_t n, int32_t *idx)
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

/* ---- raw rows ------------------------------------------------------------- */

void tl_rawset_free(rawset *r)
{
    for (int k = 0; k < r->n_cat && r->tab; k++) tl_strtab_free(&r->tab[k]);
    tl_free(r->tab);
    if (r->gtab.slot) tl_strtab_free(&r->gtab);
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
    for (int b = 0; b < r->n_bag && r->btab; b++) tl_strtab_free(&r->btab[b]);
    tl_free(r->btab);
    tl_free(r->boff);
    tl_free(r->bcnt);
    tl_free(r->bval);
    tl_free(r->btrunc);
    memset(r, 0, sizeof *r);
}

tl_status tl_rawset_init(rawset *r, int n_cat, int n_num, int n_lab, int has_group, int has_weight)
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
        if (tl_strtab_init(&r->tab[k])) return TL_ERR_NOMEM;
    if (has_group && tl_strtab_init(&r->gtab)) return TL_ERR_NOMEM;
    return TL_OK;
}

tl_status tl_rawset_init_bags(rawset *r, int n_bag)
{
    r->btab = tl_calloc((size_t)n_bag + 1, sizeof *r->btab, "bag tables");
    r->btrunc = tl_calloc((size_t)n_bag + 1, sizeof *r->btrunc, "bag counts");
    if (!r->btab || !r->btrunc) return TL_ERR_NOMEM;
    for (int b = 0; b < n_bag; b++) {
        if (tl_strtab_init(&r->btab[b])) return TL_ERR_NOMEM;
        r->n_bag = b + 1; /* tl_rawset_free frees the tables made so far */
    }
    return TL_OK;
}

tl_status tl_rawset_reserve_bag_values(rawset *r, size_t n)
{
    if (r->bv_n + n <= r->bv_cap) return TL_OK;
    size_t cap = r->bv_cap ? r->bv_cap : 4096;
    while (cap < r->bv_n + n) cap *= 2;
    int32_t *nv = tl_realloc(r->bval, cap * sizeof *nv, "raw bag values");
    if (!nv) return TL_ERR_NOMEM;
    r->bval = nv;
    r->bv_cap = cap;
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
tl_status tl_rawset_reserve(rawset *r)
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
    RS_GROW(r->boff, r->n_bag ? 1 : 0, "raw bag offsets");
    RS_GROW(r->bcnt, r->n_bag, "raw bag counts");
    r->cap = nc;
    return TL_OK;
}

void tl_rawset_note_skip(rawset *r, uint64_t line)
{
    if (r->n_skip_lines < MAX_SKIP_LINES) r->skip_lines[r->n_skip_lines++] = line;
    r->skipped++;
}
