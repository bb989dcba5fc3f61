/* ops/shape.c — concat and slice along columns, embedding gather with sparse
 * scatter-add backward, dropout and stop-gradient. */
#include <stdint.h>
#include <string.h>

#include "shape.h"
#include "ops.h"
#include "parallel.h"

tl_node tl_concat(tl_graph *g, int n, const tl_node *parts)
{
    char s1[32], s2[32];
    if (n < 1) return tl__build_fail(g, TL_ERR_ARG, "concat: needs at least one input, got %d", n);
    if (!tl__valid(g, n, parts)) return TL_NONE;
    tl_nodedef *d0 = &g->nodes[parts[0]];
    int cols = 0;
    for (int i = 0; i < n; i++) {
        tl_nodedef *d = &g->nodes[parts[i]];
        if (d->batched != d0->batched || (!d->batched && d->rows != d0->rows))
            return tl__build_fail(g, TL_ERR_SHAPE,
                                  "concat: input %d '%s' %s has other rows than input 1 '%s' %s",
                                  i + 1, d->name, tl__shape(g, parts[i], s1, sizeof s1), d0->name,
                                  tl__shape(g, parts[0], s2, sizeof s2));
        cols += d->cols;
    }
    return tl__node_new(g, TL_OP_CONCAT, d0->batched, d0->rows, cols, n, parts);
}

tl_node tl_slice(tl_graph *g, tl_node a, int start, int cols)
{
    char s1[32];
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    tl_nodedef *da = &g->nodes[a];
    if (start < 0 || cols < 1 || start + cols > da->cols)
        return tl__build_fail(g, TL_ERR_SHAPE, "slice: columns %d..%d outside '%s' %s", start,
                              start + cols - 1, da->name, tl__shape(g, a, s1, sizeof s1));
    tl_node o = tl__node_new(g, TL_OP_SLICE, da->batched, da->rows, cols, 1, &a);
    if (o != TL_NONE) g->nodes[o].start = start;
    return o;
}

tl_node tl_dropout(tl_graph *g, tl_node a, float p)
{
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    if (!(p >= 0.0f && p < 1.0f))
        return tl__build_fail(g, TL_ERR_ARG, "dropout: probability %g outside [0, 1)", (double)p);
    tl_nodedef *da = &g->nodes[a];
    tl_node o = tl__node_new(g, TL_OP_DROPOUT, da->batched, da->rows, da->cols, 1, &a);
    if (o != TL_NONE) g->nodes[o].f = p;
    return o;
}

tl_node tl_stop_grad(tl_graph *g, tl_node a)
{
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    tl_nodedef *da = &g->nodes[a];
    return tl__node_new(g, TL_OP_STOP_GRAD, da->batched, da->rows, da->cols, 1, &a);
}

/* ---- concat / slice ------------------------------------------------------- */

/* Rows are independent in both directions, so concat splits by rows and
 * every split gives the same bits. */
struct concat_job {
    tl_graph *g;
    tl_nodedef *n;
    uint32_t write; /* backward: bit k set when input k's gradient is fresh (overwrite it) */
};

static void concat_forward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct concat_job *j = ctx;
    const tl_nodedef *n = j->n;
    size_t cols = (size_t)n->cols, off = 0;
    (void)part;
    if (n->read_whole) tl_parallel_claim(n->val + r0 * cols, (r1 - r0) * cols * sizeof(float));
    for (int k = 0; k < n->nin; k++) {
        const tl_nodedef *p = tl__in(j->g, n, k);
        size_t pc = (size_t)p->cols;
        for (size_t i = r0; i < r1; i++)
            memcpy(n->val + i * cols + off, p->val + i * pc, pc * sizeof(float));
        off += pc;
    }
}

tl_status tl_op_concat_forward(tl_graph *g, tl_nodedef *n)
{
    struct concat_job j = {g, n, 0};
    tl_parallel_for((size_t)tl__rows(g, n), tl_parallel_row_grain((size_t)n->cols), concat_forward_rows, &j);
    return TL_OK;
}

static void concat_backward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct concat_job *j = ctx;
    const tl_nodedef *n = j->n;
    size_t cols = (size_t)n->cols, off = 0;
    (void)part;
    for (int k = 0; k < n->nin; k++) {
        const tl_nodedef *p = tl__in(j->g, n, k);
        size_t pc = (size_t)p->cols;
        if (p->grad && (j->write >> k & 1u)) /* the first writer copies */
            for (size_t i = r0; i < r1; i++)
                memcpy(p->grad + i * pc, n->grad + i * cols + off, pc * sizeof(float));
        else if (p->grad)
            for (size_t i = r0; i < r1; i++)
                tl__add_row(p->grad + i * pc, n->grad + i * cols + off, (int)pc);
        off += pc;
    }
}

void tl_op_concat_backward(tl_graph *g, tl_nodedef *n)
{
    struct concat_job j = {g, n, 0};
    int seen = 0;
    for (int k = 0; k < n->nin; k++) {
        tl_nodedef *p = tl__in(g, n, k);
        if (!p->grad) continue;
        /* an input given twice: its first slot overwrites, the later ones add */
        int again = 0;
        for (int q = 0; q < k; q++) again |= n->in[q] == n->in[k];
        if (again) continue;
        if (p->grad_fresh && k < 32) j.write |= 1u << k;
        else tl__grad_acc(g, p);
        seen = 1;
    }
    if (!seen) return;
    tl_parallel_for((size_t)tl__rows(g, n), tl_parallel_row_grain((size_t)n->cols), concat_backward_rows, &j);
    for (int k = 0; k < n->nin; k++)
        if (j.write >> k & 1u) tl__grad_written(tl__in(g, n, k));
}

/* Slices and copies are row by row: any split gives the same bits. */
struct copy_job {
    tl_graph *g;
    tl_nodedef *n;
};

static void slice_forward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct copy_job *j = ctx;
    const tl_nodedef *n = j->n, *a = tl__in(j->g, n, 0);
    (void)part;
    for (size_t i = r0; i < r1; i++)
        memcpy(n->val + i * (size_t)n->cols, a->val + i * (size_t)a->cols + n->start,
               (size_t)n->cols * sizeof(float));
}

tl_status tl_op_slice_forward(tl_graph *g, tl_nodedef *n)
{
    struct copy_job j = {g, n};
    tl_parallel_for((size_t)tl__rows(g, n), tl_parallel_row_grain((size_t)n->cols), slice_forward_rows, &j);
    return TL_OK;
}

static void slice_backward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct copy_job *j = ctx;
    const tl_nodedef *n = j->n, *a = tl__in(j->g, n, 0);
    (void)part;
    for (size_t i = r0; i < r1; i++)
        tl__add_row(a->grad + i * (size_t)a->cols + n->start, n->grad + i * (size_t)n->cols, n->cols);
}

void tl_op_slice_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0);
    if (!a->grad) return;
    tl__grad_acc(g, a);
    struct copy_job j = {g, n};
    tl_parallel_for((size_t)tl__rows(g, n), tl_parallel_row_grain((size_t)n->cols), slice_backward_rows, &j);
}

/* ---- embedding ----------------------------------------------------------- */

/* Table rows are far apart in memory, so a gather or scatter waits on the
 * cache: the gather asks for the rows of the batch row EMB_AHEAD rows later
 * (one per field), the scatter, which works field by field, for the row
 * SCATTER_AHEAD batch rows later. */
#define EMB_AHEAD 4
#define SCATTER_AHEAD 16

/* r = x over n floats, 8 at a time (fixed-size copies compile to vector
 * moves; a plain loop becomes a memmove call, costly for 16 floats). */
static inline void copy_row(float *restrict r, const float *restrict x, int n)
{
    int j = 0;
    for (; j + 8 <= n; j += 8) memcpy(r + j, x + j, 8 * sizeof(float));
    for (; j < n; j++) r[j] = x[j];
}

/* Each row is copied on its own, so any split of the rows gives the same
 * output. A chunk stops at its first id outside its field's vocabulary and
 * records where; the caller reports the first such id of the batch. */
struct emb_job {
    tl_graph *g;
    tl_nodedef *n;
    size_t bad[TL_PARALLEL_MAX_THREADS]; /* forward, per part: first bad id's index or SIZE_MAX */
};

static void emb_forward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    struct emb_job *j = ctx;
    const tl_nodedef *n = j->n, *t = tl__in(j->g, n, 0);
    const int32_t *ids = (const int32_t *)(const void *)tl__in(j->g, n, 1)->val;
    const int32_t *vocab = n->vocab;
    const int64_t *off = n->offsets;
    size_t nf = (size_t)n->k, dim = (size_t)t->cols, cols = (size_t)n->cols;
    j->bad[part] = SIZE_MAX;
    if (n->read_whole) tl_parallel_claim(n->val + r0 * cols, (r1 - r0) * cols * sizeof(float));
    for (size_t i = r0; i < r1; i++) {
        const int32_t *row = ids + i * nf;
        if (i + EMB_AHEAD < r1)
            for (size_t f = 0; f < nf; f++) {
                int32_t id = row[EMB_AHEAD * nf + f];
                if (id >= 0 && id < vocab[f])
                    __builtin_prefetch(t->val + (size_t)(off[f] + id) * dim);
            }
        float *y = n->val + i * cols;
        for (size_t f = 0; f < nf; f++) {
            int32_t id = row[f];
            if (id < 0 || id >= vocab[f]) {
                j->bad[part] = i * nf + f;
                return;
            }
            copy_row(y + f * dim, t->val + (size_t)(off[f] + id) * dim, (int)dim);
        }
    }
}

tl_status tl_op_embedding_forward(tl_graph *g, tl_nodedef *n)
{
    struct emb_job j = {.g = g, .n = n};
    int rows = tl__rows(g, n), parts = tl_parallel_parts((size_t)rows, tl_parallel_row_grain((size_t)n->cols));
    tl_parallel_run((size_t)rows, parts, emb_forward_rows, &j);
    for (int p = 0; p < parts; p++) {
        if (j.bad[p] == SIZE_MAX) continue;
        const int32_t *ids = (const int32_t *)(const void *)tl__in(g, n, 1)->val;
        int i = (int)(j.bad[p] / (size_t)n->k), f = (int)(j.bad[p] % (size_t)n->k);
        return tl_fail(TL_ERR_ARG, "embedding '%s': id %d in row %d, field %d is outside 0..%d",
                       n->name, (int)ids[j.bad[p]], i + 1, f + 1, (int)n->vocab[f] - 1);
    }
    return TL_OK;
}

/* The scatter-add splits by fields: a field's table rows take gradient from
 * that field only, in batch-row order as in a serial pass, so every split
 * gives the same bits. */
static void emb_backward_fields(void *ctx, size_t f0, size_t f1, int part)
{
    struct emb_job *j = ctx;
    const tl_nodedef *n = j->n, *t = tl__in(j->g, n, 0);
    const int32_t *ids = (const int32_t *)(const void *)tl__in(j->g, n, 1)->val;
    size_t nf = (size_t)n->k, dim = (size_t)t->cols, cols = (size_t)n->cols;
    size_t rows = (size_t)tl__rows(j->g, n);
    (void)part;
    for (size_t f = f0; f < f1; f++) {
        int32_t vocab = n->vocab[f];
        float *base = t->grad + (size_t)n->offsets[f] * dim;
        for (size_t i = 0; i < rows; i++) {
            if (i + SCATTER_AHEAD < rows) {
                int32_t ahead = ids[(i + SCATTER_AHEAD) * nf + f];
                if (ahead >= 0 && ahead < vocab) __builtin_prefetch(base + (size_t)ahead * dim, 1);
            }
            int32_t id = ids[i * nf + f];
            /* a forward that failed on this id left nothing valid to scatter */
            if (id < 0 || id >= vocab) continue;
            tl__add_row(base + (size_t)id * dim, n->grad + i * cols + f * dim, (int)dim);
        }
    }
}

void tl_op_embedding_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *t = tl__in(g, n, 0), *x = tl__in(g, n, 1);
    if (!t->grad) return;
    tl__grad_acc(g, t);
    const int32_t *ids = (const int32_t *)(const void *)x->val;
    int rows = tl__rows(g, n), nf = n->k;
    /* rows are listed in first-touch order, which the optimizer's sums follow */
    for (int i = 0; i < rows; i++)
        for (int f = 0; f < nf; f++) {
            int32_t id = ids[(size_t)i * nf + f];
            if (id >= 0 && id < n->vocab[f])
                tl__touch_row(g, t->param_index, (int32_t)(n->offsets[f] + id));
        }
    struct emb_job j = {.g = g, .n = n};
    int parts = tl_parallel_parts((size_t)rows, tl_parallel_row_grain((size_t)n->cols));
    tl_parallel_run((size_t)nf, parts < nf ? parts : nf, emb_backward_fields, &j);
}

/* ---- dropout / stop-gradient ---------------------------------------------- */

/* Dropout's draws cost a few times a plain pass per element: chunks of a
 * quarter of the usual grain are worth a thread. */
#define DROP_WORK 4

struct drop_job {
    const float *x;
    float *y, *mask;
    size_t cols, rows;
    float keep, inv;
    int train, claim; /* claim: y is read whole by a dW (tl_parallel_claim) */
    tl_rng start, end; /* the stream at element 0, and after the last */
};

/* Rows [r0, r1). Training: element e takes draw e of the stream from
 * `start` (this chunk jumps to its first element), so every split draws as
 * a serial pass does; the last chunk leaves the stream's end state. */
static void dropout_rows(void *ctx, size_t r0, size_t r1, int part)
{
    struct drop_job *j = ctx;
    size_t e0 = r0 * j->cols, e1 = r1 * j->cols;
    const float *restrict x = j->x;
    float *restrict mask = j->mask, *restrict y = j->y;
    (void)part;
    if (j->claim) tl_parallel_claim(y + e0, (e1 - e0) * sizeof(float));
    if (!j->train) {
        memcpy(y + e0, x + e0, (e1 - e0) * sizeof(float));
        for (size_t i = e0; i < e1; i++) mask[i] = 1.0f;
        return;
    }
    tl_rng r = j->start;
    tl__rng_jump(&r, e0);
    float keep = j->keep, inv = j->inv;
    /* The draws of tl_rng_uniform (core.c: xoshiro256**, the top 24 bits),
     * with the state in registers: a call per draw, its state stored and
     * reloaded each time, cost 4-5x this loop (test_ops checks the stream
     * is the same). */
    uint64_t s0 = r.s[0], s1 = r.s[1], s2 = r.s[2], s3 = r.s[3];
    for (size_t i = e0; i < e1; i++) {
        uint64_t v = s1 * 5, t = s1 << 17;
        v = ((v << 7) | (v >> 57)) * 9;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = (s3 << 45) | (s3 >> 19);
        float u = (float)(v >> 40) * 0x1.0p-24f;
        mask[i] = u < keep ? inv : 0.0f;
        y[i] = x[i] * mask[i];
    }
    if (r1 == j->rows) {
        j->end.s[0] = s0;
        j->end.s[1] = s1;
        j->end.s[2] = s2;
        j->end.s[3] = s3;
    }
}

tl_status tl_op_dropout_forward(tl_graph *g, tl_nodedef *n)
{
    size_t rows = (size_t)tl__rows(g, n), cols = (size_t)n->cols;
    struct drop_job j = {tl__in(g, n, 0)->val, n->val, n->scratch, cols, rows,
                         1.0f - n->f, 1.0f / (1.0f - n->f), g->training && n->f != 0.0f,
                         n->read_whole, g->drop_rng, g->drop_rng};
    if (rows == 0 || cols == 0) return TL_OK;
    tl_parallel_for(rows, tl_parallel_row_grain(j.train ? DROP_WORK * cols : cols), dropout_rows, &j);
    if (j.train) g->drop_rng = j.end;
    return TL_OK;
}

/* dx (+)= dy mask; `fresh` stores 0 + the term, what clearing dx and then
 * adding would store. Element by element: any split gives the same bits. */
struct drop_bwd_job {
    float *dx;
    const float *dy, *mask;
    size_t cols;
    int fresh;
};

static void dropout_grad_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct drop_bwd_job *j = ctx;
    size_t o = r0 * j->cols, len = (r1 - r0) * j->cols;
    float *restrict dx = j->dx + o;
    const float *restrict dy = j->dy + o, *restrict mask = j->mask + o;
    (void)part;
    if (j->fresh) TL__FOR8(i, len, dx[i] = 0.0f + dy[i] * mask[i]);
    else TL__FOR8(i, len, dx[i] += dy[i] * mask[i]);
}

void tl_op_dropout_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0);
    if (!a->grad) return;
    struct drop_bwd_job j = {a->grad, n->grad, n->scratch, (size_t)n->cols, a->grad_fresh};
    size_t rows = (size_t)tl__rows(g, n);
    /* the forward's split: each thread reads the mask rows it wrote */
    tl_parallel_for(rows, tl_parallel_row_grain(DROP_WORK * (size_t)n->cols), dropout_grad_rows, &j);
    tl__grad_written(a);
}

static void copy_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct copy_job *j = ctx;
    size_t c = (size_t)j->n->cols;
    (void)part;
    if (j->n->read_whole) tl_parallel_claim(j->n->val + r0 * c, (r1 - r0) * c * sizeof(float));
    memcpy(j->n->val + r0 * c, tl__in(j->g, j->n, 0)->val + r0 * c, (r1 - r0) * c * sizeof(float));
}

tl_status tl_op_stop_grad_forward(tl_graph *g, tl_nodedef *n)
{
    struct copy_job j = {g, n};
    tl_parallel_for((size_t)tl__rows(g, n), tl_parallel_row_grain((size_t)n->cols), copy_rows, &j);
    return TL_OK;
}
