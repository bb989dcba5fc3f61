/* ops/shape.c — concat and slice along columns, embedding gather with sparse
 * scatter-add backward, dropout and stop-gradient. */
#include <string.h>

#include "ops.h"

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

tl_status tl_op_concat_forward(tl_graph *g, tl_nodedef *n)
{
    int rows = tl__rows(g, n), off = 0;
    for (int k = 0; k < n->nin; k++) {
        tl_nodedef *p = tl__in(g, n, k);
        for (int i = 0; i < rows; i++)
            memcpy(n->val + (size_t)i * n->cols + off, p->val + (size_t)i * p->cols,
                   (size_t)p->cols * sizeof(float));
        off += p->cols;
    }
    return TL_OK;
}

void tl_op_concat_backward(tl_graph *g, tl_nodedef *n)
{
    int rows = tl__rows(g, n), off = 0;
    for (int k = 0; k < n->nin; k++) {
        tl_nodedef *p = tl__in(g, n, k);
        if (p->grad && p->grad_fresh) { /* the first writer copies */
            for (int i = 0; i < rows; i++)
                memcpy(p->grad + (size_t)i * p->cols, n->grad + (size_t)i * n->cols + off,
                       (size_t)p->cols * sizeof(float));
            tl__grad_written(p);
        } else if (p->grad) {
            for (int i = 0; i < rows; i++)
                tl__add_row(p->grad + (size_t)i * p->cols, n->grad + (size_t)i * n->cols + off,
                            p->cols);
        }
        off += p->cols;
    }
}

tl_status tl_op_slice_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0);
    int rows = tl__rows(g, n);
    for (int i = 0; i < rows; i++)
        memcpy(n->val + (size_t)i * n->cols, a->val + (size_t)i * a->cols + n->start,
               (size_t)n->cols * sizeof(float));
    return TL_OK;
}

void tl_op_slice_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0);
    if (!a->grad) return;
    tl__grad_acc(g, a);
    int rows = tl__rows(g, n);
    for (int i = 0; i < rows; i++) {
        const float *src = n->grad + (size_t)i * n->cols;
        float *dst = a->grad + (size_t)i * a->cols + n->start;
        for (int j = 0; j < n->cols; j++) dst[j] += src[j];
    }
}

/* ---- embedding ----------------------------------------------------------- */

tl_status tl_op_embedding_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *t = tl__in(g, n, 0), *x = tl__in(g, n, 1);
    const int32_t *ids = (const int32_t *)(const void *)x->val;
    int rows = tl__rows(g, n), nf = n->k, dim = t->cols;
    for (int i = 0; i < rows; i++)
        for (int f = 0; f < nf; f++) {
            int32_t id = ids[(size_t)i * nf + f];
            if (id < 0 || id >= n->vocab[f])
                return tl_fail(TL_ERR_ARG,
                               "embedding '%s': id %d in row %d, field %d is outside 0..%d",
                               n->name, (int)id, i + 1, f + 1, (int)n->vocab[f] - 1);
            memcpy(n->val + (size_t)i * n->cols + (size_t)f * dim,
                   t->val + (size_t)(n->offsets[f] + id) * dim, (size_t)dim * sizeof(float));
        }
    return TL_OK;
}

void tl_op_embedding_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *t = tl__in(g, n, 0), *x = tl__in(g, n, 1);
    if (!t->grad) return;
    tl__grad_acc(g, t);
    const int32_t *ids = (const int32_t *)(const void *)x->val;
    int rows = tl__rows(g, n), nf = n->k, dim = t->cols;
    for (int i = 0; i < rows; i++)
        for (int f = 0; f < nf; f++) {
            int32_t id = ids[(size_t)i * nf + f];
            /* a forward that failed on this id left nothing valid to scatter */
            if (id < 0 || id >= n->vocab[f]) continue;
            int32_t row = (int32_t)(n->offsets[f] + id);
            tl__add_row(t->grad + (size_t)row * dim, n->grad + (size_t)i * n->cols + (size_t)f * dim,
                        dim);
            tl__touch_row(g, t->param_index, row);
        }
}

/* ---- dropout / stop-gradient ---------------------------------------------- */

tl_status tl_op_dropout_forward(tl_graph *g, tl_nodedef *n)
{
    const float *x = tl__in(g, n, 0)->val;
    size_t len = (size_t)tl__rows(g, n) * (size_t)n->cols;
    if (!g->training || n->f == 0.0f) {
        memcpy(n->val, x, len * sizeof(float));
        for (size_t i = 0; i < len; i++) n->scratch[i] = 1.0f;
        return TL_OK;
    }
    float keep = 1.0f - n->f, inv = 1.0f / keep;
    for (size_t i = 0; i < len; i++) {
        n->scratch[i] = tl_rng_uniform(&g->drop_rng) < keep ? inv : 0.0f;
        n->val[i] = x[i] * n->scratch[i];
    }
    return TL_OK;
}

void tl_op_dropout_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0);
    if (!a->grad) return;
    float *dx = tl__grad_acc(g, a);
    size_t len = (size_t)tl__rows(g, n) * (size_t)n->cols;
    for (size_t i = 0; i < len; i++) dx[i] += n->grad[i] * n->scratch[i];
}

tl_status tl_op_stop_grad_forward(tl_graph *g, tl_nodedef *n)
{
    memcpy(n->val, tl__in(g, n, 0)->val, (size_t)tl__rows(g, n) * (size_t)n->cols * sizeof(float));
    return TL_OK;
}
