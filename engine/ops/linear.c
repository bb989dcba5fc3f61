/* ops/linear.c — matmul, the fused linear layer (x W + b, activation) and
 * grouped linear layers (several experts' layers side by side). All GEMMs go
 * through cblas_sgemm, row-major; backward GEMMs accumulate with beta = 1,
 * or overwrite with beta = 0 a gradient that is still fresh (ops.h). The
 * passes around them (bias, activation and their gradients) run on the
 * worker pool (parallel.h) in row chunks; only the bias gradient's sums
 * depend on the split, which is fixed for a given thread count. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "ops.h"
#include "parallel.h"

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

/* Rows per chunk for at least TL_PARALLEL_GRAIN floats per chunk. */
static size_t row_grain(int cols) { return (TL_PARALLEL_GRAIN + (size_t)cols - 1) / (size_t)cols; }

struct fill_job {
    const float *b;
    float *y;
    int m;
};

static void fill_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct fill_job *j = ctx;
    (void)part;
    for (size_t i = r0; i < r1; i++) memcpy(j->y + i * (size_t)j->m, j->b, (size_t)j->m * sizeof(float));
}

/* Every row of y [rows x m] = b. The forward GEMMs then add x W onto it
 * (beta = 1), which saves a pass over y; with several groups, b holds their
 * biases side by side. */
static void fill_bias(int rows, int m, const float *b, float *y)
{
    struct fill_job j = {b, y, m};
    tl_parallel_for((size_t)rows, row_grain(m), fill_rows, &j);
}

/* y = x W + beta y, beta = 1 onto a filled bias, else 0. */
static void gemm_fwd(int rows, int m, int k, const float *x, int ldx, const float *w, int ldw,
                     int has_bias, float *y, int ldy)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, m, k, 1.0f, x, ldx, w, ldw,
                has_bias ? 1.0f : 0.0f, y, ldy);
}

struct act_job {
    float *y;
    int cols;
    tl_act act;
};

static void act_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct act_job *j = ctx;
    (void)part;
    float *y = j->y + r0 * (size_t)j->cols;
    size_t len = (r1 - r0) * (size_t)j->cols;
    switch (j->act) {
    case TL_ACT_RELU:
        for (size_t i = r0; i < r1; i++, y += j->cols) relu_row(y, j->cols);
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

static void apply_act(float *y, int rows, int cols, tl_act act)
{
    if (act == TL_ACT_NONE) return;
    struct act_job j = {y, cols, act};
    tl_parallel_for((size_t)rows, row_grain(cols), act_rows, &j);
}

struct act_bwd_job {
    const float *y, *dy;
    float *dz, *db;
    float *partial; /* parts > 1: one row of column sums per part */
    int cols;
    tl_act act;
};

/* act_backward over rows [r0, r1): dZ, and dZ's column sums added into db
 * or, when the rows are split, into this part's own row of partial sums. */
static void act_bwd_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct act_bwd_job *j = ctx;
    int cols = j->cols;
    float *db = j->db;
    if (db && j->partial) {
        db = j->partial + (size_t)part * (size_t)cols;
        memset(db, 0, (size_t)cols * sizeof(float));
    }
    for (size_t i = r0; i < r1; i++) {
        size_t o = i * (size_t)cols;
        const float *yr = j->y + o, *dyr = j->dy + o;
        if (j->act == TL_ACT_NONE) {
            tl__add_row(db, dyr, cols);
            continue;
        }
        float *dzr = j->dz + o;
        switch (j->act) {
        case TL_ACT_RELU:
            relu_grad_row(dzr, yr, dyr, cols);
            break;
        case TL_ACT_SIGMOID:
            for (int c = 0; c < cols; c++) dzr[c] = dyr[c] * yr[c] * (1.0f - yr[c]);
            break;
        default: /* tanh */
            for (int c = 0; c < cols; c++) dzr[c] = dyr[c] * (1.0f - yr[c] * yr[c]);
            break;
        }
        if (db) tl__add_row(db, dzr, cols);
    }
}

/* dZ = dY * act'(Y), computed from the output Y, and the bias gradient
 * db += column sums of dZ when db is non-NULL, in one pass. Returns dY itself
 * when the activation is the identity (no copy). Rows are split among at
 * most `slots` parts; with more than one, each part sums its rows into its
 * row of `partial` and those are added into db in part order, so a given
 * thread count always gives the same bits (one part: today's row order). */
static const float *act_backward(const float *y, const float *dy, float *dz, float *db,
                                 float *partial, int slots, int rows, int cols, tl_act act)
{
    if (act == TL_ACT_NONE && !db) return dy;
    size_t grain = row_grain(cols);
    if (db && grain * (size_t)slots < (size_t)rows) /* at most `slots` parts */
        grain = slots > 0 ? ((size_t)rows + (size_t)slots - 1) / (size_t)slots : (size_t)rows;
    int parts = tl_parallel_parts((size_t)rows, grain);
    struct act_bwd_job j = {y, dy, dz, db, db && parts > 1 ? partial : NULL, cols, act};
    tl_parallel_run((size_t)rows, parts, act_bwd_rows, &j);
    if (j.partial)
        for (int p = 0; p < parts; p++) tl__add_row(db, partial + (size_t)p * (size_t)cols, cols);
    return act == TL_ACT_NONE ? dy : dz;
}

/* The bias gradient's partial sums: after the activation gradient in the
 * node's scratch, graph.c plans a row of cols floats per slot. */
static float *bias_partials(const tl_graph *g, const tl_nodedef *n, int *slots)
{
    size_t rows = n->batched ? (size_t)g->max_batch : (size_t)n->rows;
    *slots = (int)(n->scratch_fixed / (size_t)n->cols);
    return *slots > 0 ? n->scratch + n->scratch_per_row * rows : NULL;
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
    if (b) fill_bias(rows, n->cols, b, n->val);
    gemm_fwd(rows, n->cols, w->rows, x->val, x->cols, w->val, w->cols, b != NULL, n->val, n->cols);
    apply_act(n->val, rows, n->cols, n->act);
    return TL_OK;
}

void tl_op_linear_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n);
    int slots;
    float *partial = bias_partials(g, n, &slots);
    const float *dz = act_backward(n->val, n->grad, n->scratch, bias_grad(g, n), partial, slots, rows,
                                   n->cols, n->act);
    product_backward(x, w, dz, rows);
}

/* ---- grouped linear ------------------------------------------------------ */

tl_status tl_op_grouped_linear_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    const float *b = n->nin > 2 ? tl__in(g, n, 2)->val : NULL;
    int rows = tl__rows(g, n), groups = n->k;
    int k = w->rows / groups, m = w->cols;
    if (b) fill_bias(rows, n->cols, b, n->val);
    for (int j = 0; j < groups; j++)
        gemm_fwd(rows, m, k, x->val + (size_t)j * k, x->cols, w->val + (size_t)j * k * m, m,
                 b != NULL, n->val + (size_t)j * m, n->cols);
    apply_act(n->val, rows, n->cols, n->act);
    return TL_OK;
}

void tl_op_grouped_linear_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n), groups = n->k;
    int k = w->rows / groups, m = w->cols, slots;
    float *partial = bias_partials(g, n, &slots);
    const float *dz = act_backward(n->val, n->grad, n->scratch, bias_grad(g, n), partial, slots, rows,
                                   n->cols, n->act);
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
