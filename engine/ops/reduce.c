/* ops/reduce.c — row softmax / log-softmax and the sum, mean and row-sum
 * reductions. Reductions accumulate in double so results do not depend on
 * batch size rounding. */
#include <math.h>

#include "reduce.h"
#include "ops.h"
#include "parallel.h"

static tl_node same_shape(tl_graph *g, tl_op op, tl_node a)
{
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    tl_nodedef *da = &g->nodes[a];
    return tl__node_new(g, op, da->batched, da->rows, da->cols, 1, &a);
}

tl_node tl_softmax(tl_graph *g, tl_node a) { return same_shape(g, TL_OP_SOFTMAX, a); }
tl_node tl_log_softmax(tl_graph *g, tl_node a) { return same_shape(g, TL_OP_LOG_SOFTMAX, a); }

tl_node tl_sum(tl_graph *g, tl_node a)
{
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    return tl__node_new(g, TL_OP_SUM, 0, 1, 1, 1, &a);
}

tl_node tl_mean(tl_graph *g, tl_node a)
{
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    return tl__node_new(g, TL_OP_MEAN, 0, 1, 1, 1, &a);
}

tl_node tl_row_sum(tl_graph *g, tl_node a)
{
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    tl_nodedef *da = &g->nodes[a];
    return tl__node_new(g, TL_OP_ROW_SUM, da->batched, da->rows, 1, 1, &a);
}

/* Rows are independent, so the forward splits by rows and every split gives
 * the same bits. An element costs two exponentials: count it as
 * SOFTMAX_COST floats touched when sizing chunks. */
#define SOFTMAX_COST 16

struct softmax_job {
    tl_graph *g;
    tl_nodedef *n;
};

static void softmax_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct softmax_job *j = ctx;
    const tl_nodedef *n = j->n;
    const float *x = tl__in(j->g, n, 0)->val;
    size_t cols = (size_t)n->cols;
    (void)part;
    for (size_t i = r0; i < r1; i++) {
        const float *xr = x + i * cols;
        float *yr = n->val + i * cols;
        float mx = xr[0];
        for (size_t c = 1; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
        double s = 0.0;
        for (size_t c = 0; c < cols; c++) s += exp((double)(xr[c] - mx));
        if (n->op == TL_OP_SOFTMAX) {
            float inv = (float)(1.0 / s);
            for (size_t c = 0; c < cols; c++) yr[c] = expf(xr[c] - mx) * inv;
        } else {
            float lse = mx + (float)log(s);
            for (size_t c = 0; c < cols; c++) yr[c] = xr[c] - lse;
        }
    }
}

tl_status tl_op_softmax_forward(tl_graph *g, tl_nodedef *n)
{
    struct softmax_job j = {g, n};
    size_t per_row = (size_t)n->cols * SOFTMAX_COST;
    tl_parallel_for((size_t)tl__rows(g, n), tl_parallel_row_grain(per_row), softmax_rows, &j);
    return TL_OK;
}

void tl_op_softmax_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *in = tl__in(g, n, 0);
    if (!in->grad) return;
    tl__grad_acc(g, in);
    int rows = tl__rows(g, n), cols = n->cols;
    for (int i = 0; i < rows; i++) {
        const float *y = n->val + (size_t)i * cols, *dy = n->grad + (size_t)i * cols;
        float *dx = in->grad + (size_t)i * cols;
        double s = 0.0;
        if (n->op == TL_OP_SOFTMAX) { /* dx = y (dy - sum(dy y)) */
            for (int j = 0; j < cols; j++) s += (double)dy[j] * (double)y[j];
            for (int j = 0; j < cols; j++) dx[j] += y[j] * (dy[j] - (float)s);
        } else { /* dx = dy - softmax * sum(dy) */
            for (int j = 0; j < cols; j++) s += (double)dy[j];
            for (int j = 0; j < cols; j++) dx[j] += dy[j] - expf(y[j]) * (float)s;
        }
    }
}

tl_status tl_op_reduce_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *in = tl__in(g, n, 0);
    int rows = tl__rows(g, in), cols = in->cols;
    if (n->op == TL_OP_ROW_SUM) {
        for (int i = 0; i < rows; i++) {
            double s = 0.0;
            for (int j = 0; j < cols; j++) s += (double)in->val[(size_t)i * cols + j];
            n->val[i] = (float)s;
        }
        return TL_OK;
    }
    size_t len = (size_t)rows * (size_t)cols;
    double s = 0.0;
    for (size_t i = 0; i < len; i++) s += (double)in->val[i];
    n->val[0] = (float)(n->op == TL_OP_MEAN ? s / (double)len : s);
    return TL_OK;
}

void tl_op_reduce_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *in = tl__in(g, n, 0);
    if (!in->grad) return;
    tl__grad_acc(g, in);
    int rows = tl__rows(g, in), cols = in->cols;
    size_t len = (size_t)rows * (size_t)cols;
    if (n->op == TL_OP_ROW_SUM) {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) in->grad[(size_t)i * cols + j] += n->grad[i];
        return;
    }
    float d = n->op == TL_OP_MEAN ? n->grad[0] / (float)len : n->grad[0];
    for (size_t i = 0; i < len; i++) in->grad[i] += d;
}
