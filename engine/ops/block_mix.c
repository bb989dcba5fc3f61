/* ops/block_mix.c — out block r = sum_c (w[r,c] + diag [r == c]) x block
 * (first + c), per row: cross-stitch units (Misra et al. 2016) and AdaTT's
 * linear residual over a task's own experts (Li et al. KDD 2023). The mixing
 * matrices are small (tasks x tasks, experts per task), so a plain loop over
 * rows does it; every sum runs in a fixed order, so the bits do not depend on
 * the thread count. */
#include <stdio.h>
#include <string.h>

#include "block_mix.h"
#include "ops.h"

tl_node tl_block_mix(tl_graph *g, tl_node x, tl_node w, int first, int d, float diag)
{
    tl_node in[2] = {x, w};
    char s1[32], s2[32];
    if (!tl__valid(g, 2, in)) return TL_NONE;
    const tl_nodedef *dx = &g->nodes[x], *dw = &g->nodes[w];
    int R = dw->rows, C = dw->cols;
    if (dw->batched || d < 1 || first < 0 || (size_t)(first + C) * (size_t)d > (size_t)dx->cols ||
        (diag != 0.0f && R != C))
        return tl__build_fail(g, TL_ERR_SHAPE,
                              "block_mix: x '%s' %s cannot give blocks %d..%d of width %d to weights "
                              "'%s' %s%s", dx->name, tl__shape(g, x, s1, sizeof s1), first,
                              first + C - 1, d, dw->name, tl__shape(g, w, s2, sizeof s2),
                              diag != 0.0f && R != C ? " (a diagonal needs square weights)" : "");
    tl_node o = tl__node_new(g, TL_OP_BLOCK_MIX, dx->batched, dx->rows, R * d, 2, in);
    if (o == TL_NONE) return TL_NONE;
    tl_nodedef *n = &g->nodes[o];
    n->start = first;
    n->k = C;
    n->f = diag;
    return o;
}

static inline float mix_weight(const tl_nodedef *n, const float *w, int r, int c)
{
    return w[(size_t)r * n->k + c] + (r == c ? n->f : 0.0f);
}

tl_status tl_op_block_mix_forward(tl_graph *g, tl_nodedef *n)
{
    const tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n), C = n->k, R = w->rows, d = n->cols / R;
    for (int i = 0; i < rows; i++) {
        const float *xi = x->val + (size_t)i * x->cols + (size_t)n->start * d;
        float *y = n->val + (size_t)i * n->cols;
        for (int r = 0; r < R; r++) {
            float *yr = y + (size_t)r * d;
            tl__scale_row(yr, mix_weight(n, w->val, r, 0), xi, d);
            for (int c = 1; c < C; c++) tl__axpy_row(yr, mix_weight(n, w->val, r, c), xi + (size_t)c * d, d);
        }
    }
    return TL_OK;
}

/* dx block c += sum_r w'[r,c] dy_r; dw[r,c] += sum over rows of dy_r . x_c. */
void tl_op_block_mix_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n), C = n->k, R = w->rows, d = n->cols / R;
    for (int i = 0; i < rows; i++) {
        const float *xi = x->val + (size_t)i * x->cols + (size_t)n->start * d;
        const float *dy = n->grad + (size_t)i * n->cols;
        float *dxi = x->grad ? x->grad + (size_t)i * x->cols + (size_t)n->start * d : NULL;
        for (int r = 0; r < R; r++) {
            const float *dyr = dy + (size_t)r * d;
            for (int c = 0; c < C; c++) {
                const float *xc = xi + (size_t)c * d;
                if (w->grad) {
                    float s = 0.0f;
                    for (int j = 0; j < d; j++) s += dyr[j] * xc[j];
                    w->grad[(size_t)r * C + c] += s;
                }
                if (dxi) tl__axpy_row(dxi + (size_t)c * d, mix_weight(n, w->val, r, c), dyr, d);
            }
        }
    }
}
