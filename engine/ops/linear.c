/* ops/linear.c — matmul, the fused linear layer (x W + b, activation) and
 * grouped linear layers (several experts' layers side by side). All GEMMs go
 * through cblas_sgemm, row-major; backward GEMMs accumulate with beta = 1,
 * or overwrite with beta = 0 a gradient that is still fresh (ops.h). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "ops.h"

static tl_node check_weight(tl_graph *g, const char *op, tl_node x, tl_node w, int xcols_per,
                            tl_node b, int bcols)
{
    char s1[32], s2[32], s3[32];
    tl_nodedef *dx = &g->nodes[x], *dw = &g->nodes[w];
    if (dw->batched)
        return tl__build_fail(g, TL_ERR_SHAPE, "%s: weight '%s' must not be batched, got %s", op,
                              dw->name, tl__shape(g, w, s1, sizeof s1));
    if (dx->cols != xcols_per)
        return tl__build_fail(g, TL_ERR_SHAPE, "%s: input '%s' %s does not match weight '%s' %s",
                              op, dx->name, tl__shape(g, x, s1, sizeof s1), dw->name,
                              tl__shape(g, w, s2, sizeof s2));
    if (b != TL_NONE) {
        tl_nodedef *db = &g->nodes[b];
        if (db->batched || db->rows != 1 || db->cols != bcols)
            return tl__build_fail(g, TL_ERR_SHAPE, "%s: bias '%s' must be [1 x %d], got %s", op,
                                  db->name, bcols, tl__shape(g, b, s3, sizeof s3));
    }
    return w;
}

tl_node tl_matmul(tl_graph *g, tl_node a, tl_node w)
{
    tl_node in[2] = {a, w};
    if (!tl__valid(g, 2, in)) return TL_NONE;
    if (check_weight(g, "matmul", a, w, g->nodes[w].rows, TL_NONE, 0) == TL_NONE) return TL_NONE;
    tl_nodedef *da = &g->nodes[a];
    return tl__node_new(g, TL_OP_MATMUL, da->batched, da->rows, g->nodes[w].cols, 2, in);
}

tl_node tl_linear(tl_graph *g, tl_node x, tl_node w, tl_node b, tl_act act)
{
    tl_node in[3] = {x, w, b};
    int nin = b == TL_NONE ? 2 : 3;
    if (!tl__valid(g, nin, in)) return TL_NONE;
    int m = g->nodes[w].cols;
    if (check_weight(g, "linear", x, w, g->nodes[w].rows, b, m) == TL_NONE) return TL_NONE;
    tl_nodedef *dx = &g->nodes[x];
    tl_node o = tl__node_new(g, TL_OP_LINEAR, dx->batched, dx->rows, m, nin, in);
    if (o != TL_NONE) g->nodes[o].act = act;
    return o;
}

tl_node tl_grouped_linear(tl_graph *g, tl_node x, tl_node w, tl_node b, int groups, tl_act act)
{
    tl_node in[3] = {x, w, b};
    int nin = b == TL_NONE ? 2 : 3;
    if (!tl__valid(g, nin, in)) return TL_NONE;
    if (groups < 1 || g->nodes[w].rows % groups != 0)
        return tl__build_fail(g, TL_ERR_SHAPE,
                              "grouped_linear: weight rows %d not divisible into %d groups",
                              g->nodes[w].rows, groups);
    int m = g->nodes[w].cols;
    if (check_weight(g, "grouped_linear", x, w, g->nodes[w].rows, b, groups * m) == TL_NONE)
        return TL_NONE;
    tl_nodedef *dx = &g->nodes[x];
    tl_node o = tl__node_new(g, TL_OP_GROUPED_LINEAR, dx->batched, dx->rows, groups * m, nin, in);
    if (o != TL_NONE) {
        g->nodes[o].act = act;
        g->nodes[o].k = groups;
    }
    return o;
}

/* ---- shared pieces -------------------------------------------------------- */

static void relu_row(float *restrict r, int n)
{
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) r[j + l] = r[j + l] <= 0.0f ? 0.0f : r[j + l]; /* NaN stays */
    for (; j < n; j++) r[j] = r[j] <= 0.0f ? 0.0f : r[j];
}

/* dz = relu'(y) dy. */
static void relu_grad_row(float *restrict dz, const float *restrict y, const float *restrict dy, int n)
{
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) {
            float d = dy[j + l]; /* loaded unconditionally, so the select vectorises */
            dz[j + l] = y[j + l] > 0.0f ? d : 0.0f;
        }
    for (; j < n; j++) dz[j] = y[j] > 0.0f ? dy[j] : 0.0f;
}

/* y = x W (+ b): the bias is copied into every row first and the GEMM adds
 * onto it (beta = 1), which saves a pass over y. */
static void gemm_bias(int rows, int m, int k, const float *x, int ldx, const float *w, int ldw,
                      const float *b, float *y, int ldy)
{
    if (b)
        for (int i = 0; i < rows; i++) memcpy(y + (size_t)i * ldy, b, (size_t)m * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, m, k, 1.0f, x, ldx, w, ldw,
                b ? 1.0f : 0.0f, y, ldy);
}

static void apply_act(float *y, int rows, int cols, tl_act act)
{
    size_t len = (size_t)rows * (size_t)cols;
    switch (act) {
    case TL_ACT_RELU:
        for (int i = 0; i < rows; i++) relu_row(y + (size_t)i * cols, cols);
        break;
    case TL_ACT_SIGMOID:
        for (size_t i = 0; i < len; i++) y[i] = 1.0f / (1.0f + expf(-y[i]));
        break;
    case TL_ACT_TANH:
        for (size_t i = 0; i < len; i++) y[i] = tanhf(y[i]);
        break;
    case TL_ACT_NONE:
        break;
    }
}

/* dZ = dY * act'(Y), computed from the output Y, and the bias gradient
 * db += column sums of dZ when db is non-NULL, in one pass. Returns dY itself
 * when the activation is the identity (no copy). */
static const float *act_backward(const float *y, const float *dy, float *dz, float *db, int rows,
                                 int cols, tl_act act)
{
    if (act == TL_ACT_NONE) {
        if (db)
            for (int i = 0; i < rows; i++) tl__add_row(db, dy + (size_t)i * cols, cols);
        return dy;
    }
    for (int i = 0; i < rows; i++) {
        size_t o = (size_t)i * cols;
        const float *yr = y + o, *dyr = dy + o;
        float *dzr = dz + o;
        switch (act) {
        case TL_ACT_RELU:
            relu_grad_row(dzr, yr, dyr, cols);
            break;
        case TL_ACT_SIGMOID:
            for (int j = 0; j < cols; j++) dzr[j] = dyr[j] * yr[j] * (1.0f - yr[j]);
            break;
        default: /* tanh */
            for (int j = 0; j < cols; j++) dzr[j] = dyr[j] * (1.0f - yr[j] * yr[j]);
            break;
        }
        if (db) tl__add_row(db, dzr, cols);
    }
    return dz;
}

/* The bias gradient to add into, or NULL. */
static float *bias_grad(const tl_graph *g, const tl_nodedef *n)
{
    if (n->nin < 3) return NULL;
    tl_nodedef *b = &g->nodes[n->in[2]];
    return b->grad ? tl__grad_acc(g, b) : NULL;
}

/* GEMM beta for adding into d's gradient: 0 overwrites a fresh one. */
static float grad_beta(const tl_nodedef *d) { return d->grad_fresh ? 0.0f : 1.0f; }

/* ---- matmul / linear ------------------------------------------------------ */

tl_status tl_op_matmul_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n->cols, w->rows, 1.0f, a->val,
                a->cols, w->val, w->cols, 0.0f, n->val, n->cols);
    return TL_OK;
}

/* dX = dZ W^T + beta dX for one [rows x k] x [k x m] product. */
static void gemm_dx(int rows, int k, int m, const float *dz, int ldz, const float *w, int ldw,
                    float beta, float *dx, int ldx)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, k, m, 1.0f, dz, ldz, w, ldw, beta,
                dx, ldx);
}

/* dW = X^T dZ + beta dW. */
static void gemm_dw(int rows, int k, int m, const float *x, int ldx, const float *dz, int ldz,
                    float beta, float *dw, int ldw)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, m, rows, 1.0f, x, ldx, dz, ldz, beta,
                dw, ldw);
}

/* Both gradients of x W (x and w may be one node: dX first, then dW adds). */
static void product_backward(tl_nodedef *x, tl_nodedef *w, const float *dz, int rows)
{
    if (x->grad) {
        gemm_dx(rows, w->rows, w->cols, dz, w->cols, w->val, w->cols, grad_beta(x), x->grad, x->cols);
        tl__grad_written(x);
    }
    if (w->grad) {
        gemm_dw(rows, w->rows, w->cols, x->val, x->cols, dz, w->cols, grad_beta(w), w->grad, w->cols);
        tl__grad_written(w);
    }
}

void tl_op_matmul_backward(tl_graph *g, tl_nodedef *n)
{
    product_backward(tl__in(g, n, 0), tl__in(g, n, 1), n->grad, tl__rows(g, n));
}

tl_status tl_op_linear_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    const float *b = n->nin > 2 ? tl__in(g, n, 2)->val : NULL;
    int rows = tl__rows(g, n);
    gemm_bias(rows, n->cols, w->rows, x->val, x->cols, w->val, w->cols, b, n->val, n->cols);
    apply_act(n->val, rows, n->cols, n->act);
    return TL_OK;
}

void tl_op_linear_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n);
    const float *dz = act_backward(n->val, n->grad, n->scratch, bias_grad(g, n), rows, n->cols,
                                   n->act);
    product_backward(x, w, dz, rows);
}

/* ---- grouped linear ------------------------------------------------------ */

tl_status tl_op_grouped_linear_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    const float *b = n->nin > 2 ? tl__in(g, n, 2)->val : NULL;
    int rows = tl__rows(g, n), groups = n->k;
    int k = w->rows / groups, m = w->cols;
    for (int j = 0; j < groups; j++)
        gemm_bias(rows, m, k, x->val + (size_t)j * k, x->cols, w->val + (size_t)j * k * m, m,
                  b ? b + (size_t)j * m : NULL, n->val + (size_t)j * m, n->cols);
    apply_act(n->val, rows, n->cols, n->act);
    return TL_OK;
}

void tl_op_grouped_linear_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n), groups = n->k;
    int k = w->rows / groups, m = w->cols;
    const float *dz = act_backward(n->val, n->grad, n->scratch, bias_grad(g, n), rows, n->cols,
                                   n->act);
    /* the groups' blocks of dX (columns) and of dW (rows) tile them exactly */
    if (x->grad) {
        float beta = grad_beta(x);
        for (int j = 0; j < groups; j++)
            gemm_dx(rows, k, m, dz + (size_t)j * m, n->cols, w->val + (size_t)j * k * m, m, beta,
                    x->grad + (size_t)j * k, x->cols);
        tl__grad_written(x);
    }
    if (w->grad) {
        float beta = grad_beta(w);
        for (int j = 0; j < groups; j++)
            gemm_dw(rows, k, m, x->val + (size_t)j * k, x->cols, dz + (size_t)j * m, n->cols, beta,
                    w->grad + (size_t)j * k * m, m);
        tl__grad_written(w);
    }
}
