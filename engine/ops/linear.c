/* ops/linear.c — matmul, the fused linear layer (x W + b, activation) and
 * grouped linear layers (several experts' layers side by side). GEMMs run on
 * the engine's pool (gemm.h), row-major; backward GEMMs accumulate with
 * beta = 1, or overwrite with beta = 0 a gradient that is still fresh
 * (ops.h). A layer's forward is one parallel job over row chunks: each chunk
 * fills its rows with the bias, adds x W onto them (every group's GEMM) and
 * applies the activation. Its backward is two jobs: over row chunks, the
 * activation's gradient, the bias gradient's partial sums and dX; then dW,
 * over groups and column blocks. Only the bias gradient's sums and the row
 * blocks' GEMM rounding depend on the split, which is fixed for a given
 * thread count. */
#include <math.h>
#include <string.h>

#include "gemm.h"
#include "linear.h"
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

/* Parts for a pass over `rows` rows of `cols` floats with `macs` GEMM
 * multiply-adds in all: enough work per part for either reason. */
static int row_parts(int rows, int cols, double macs)
{
    int by_gemm = tl_gemm_parts((size_t)rows, macs);
    int by_pass = tl_parallel_parts((size_t)rows, tl_parallel_row_grain((size_t)cols));
    return by_gemm > by_pass ? by_gemm : by_pass;
}

static void act_rows(float *y, size_t rows, int cols, tl_act act)
{
    size_t len = rows * (size_t)cols;
    switch (act) {
    case TL_ACT_RELU:
        for (size_t i = 0; i < rows; i++, y += cols) relu_row(y, cols);
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

/* ---- layer forward: y = act(x W + b), `groups` GEMMs side by side ---------- */

struct fwd_job {
    const float *x, *w, *b;
    float *y;
    int ldx, groups, k, m, cols; /* group g: x columns [g k, (g+1) k) -> y columns [g m, (g+1) m) */
    tl_act act;
    int claim; /* y is read whole by the next layer's dW: claim the rows first */
};

/* Rows [r0, r1): fill with the bias (the GEMMs then add onto it with
 * beta = 1, which saves a pass), every group's GEMM, the activation. */
static void forward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct fwd_job *j = ctx;
    size_t rows = r1 - r0, cols = (size_t)j->cols;
    float *y = j->y + r0 * cols;
    const float *x = j->x + r0 * (size_t)j->ldx;
    (void)part;
    if (j->claim) tl_parallel_claim(y, rows * cols * sizeof(float));
    if (j->b)
        for (size_t i = 0; i < rows; i++) memcpy(y + i * cols, j->b, cols * sizeof(float));
    for (int g = 0; g < j->groups; g++)
        tl_gemm_serial(0, 0, (int)rows, j->m, j->k, x + (size_t)g * j->k, j->ldx,
                       j->w + (size_t)g * j->k * j->m, j->m, j->b ? 1.0f : 0.0f,
                       y + (size_t)g * j->m, j->cols);
    act_rows(y, rows, j->cols, j->act);
}

static void layer_forward(tl_graph *g, tl_nodedef *n, int groups)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n), k = w->rows / groups, m = w->cols;
    struct fwd_job j = {x->val, w->val, n->nin > 2 ? tl__in(g, n, 2)->val : NULL, n->val,
                        x->cols, groups, k, m, n->cols, n->act, n->read_whole};
    int parts = row_parts(rows, n->cols, (double)rows * k * n->cols);
    tl_parallel_run((size_t)rows, parts, forward_rows, &j);
}

/* ---- layer backward --------------------------------------------------------- */

struct bwd_job {
    const float *y, *dy, *w;
    float *dz, *db, *partial; /* parts > 1: one row of column sums per part */
    float *dx;                /* NULL: no input gradient */
    float beta;               /* dX's GEMM beta */
    int cols, ldx, groups, k, m;
    tl_act act;
    int claim_dz;             /* dZ is read whole by dW: claim its rows first */
};

/* Rows [r0, r1): dZ = dY act'(Y) (computed from the output Y), its column
 * sums into db or into this part's row of partial sums, then dX's rows:
 * dX = dZ W^T for every group. */
static void backward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct bwd_job *j = ctx;
    int cols = j->cols;
    float *db = j->db;
    if (db && j->partial) {
        db = j->partial + (size_t)part * (size_t)cols;
        memset(db, 0, (size_t)cols * sizeof(float));
    }
    if (j->claim_dz) tl_parallel_claim(j->dz + r0 * (size_t)cols, (r1 - r0) * (size_t)cols * sizeof(float));
    for (size_t i = r0; i < r1; i++) {
        size_t o = i * (size_t)cols;
        const float *yr = j->y + o, *dyr = j->dy + o;
        if (j->act == TL_ACT_NONE) {
            if (db) tl__add_row(db, dyr, cols);
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
    if (!j->dx) return;
    const float *dz = (j->act == TL_ACT_NONE ? j->dy : j->dz) + r0 * (size_t)cols;
    for (int g = 0; g < j->groups; g++)
        tl_gemm_serial(0, 1, (int)(r1 - r0), j->k, j->m, dz + (size_t)g * j->m, cols,
                       j->w + (size_t)g * j->k * j->m, j->m, j->beta,
                       j->dx + r0 * (size_t)j->ldx + (size_t)g * j->k, j->ldx);
}

struct dw_job {
    const float *x, *dz;
    float *dw;
    float beta;
    int rows, ldx, cols, k, m, pieces; /* task t: group t / pieces, column block t % pieces */
};

/* dW's tasks [t0, t1): dW_g[:, block] = X_g^T dZ_g[:, block] over all rows. */
static void dw_tasks(void *ctx, size_t t0, size_t t1, int part)
{
    const struct dw_job *j = ctx;
    (void)part;
    for (size_t t = t0; t < t1; t++) {
        int g = (int)(t / (size_t)j->pieces), p = (int)(t % (size_t)j->pieces);
        int c0 = (int)((long)j->m * p / j->pieces), c1 = (int)((long)j->m * (p + 1) / j->pieces);
        tl_gemm_serial(1, 0, j->k, c1 - c0, j->rows, j->x + (size_t)g * j->k, j->ldx,
                       j->dz + (size_t)g * j->m + c0, j->cols, j->beta,
                       j->dw + (size_t)g * j->k * j->m + c0, j->m);
    }
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

static void layer_backward(tl_graph *g, tl_nodedef *n, int groups)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n), k = w->rows / groups, m = w->cols, slots;
    float *db = bias_grad(g, n), *partial = bias_partials(g, n, &slots);
    /* the groups' blocks of dX (columns) and of dW (rows) tile them exactly */
    struct bwd_job j = {n->val, n->grad, w->val, n->scratch, db, NULL, x->grad,
                        x->grad ? grad_beta(x) : 0.0f, n->cols, x->cols, groups, k, m, n->act,
                        n->act != TL_ACT_NONE && w->grad};
    if (j.act != TL_ACT_NONE || db || j.dx) {
        int parts = row_parts(rows, n->cols, j.dx ? (double)rows * k * n->cols : 0.0);
        if (db && parts > 1 && parts > slots) parts = slots > 1 ? slots : 1;
        if (db && parts > 1) j.partial = partial;
        tl_parallel_run((size_t)rows, parts, backward_rows, &j);
        if (j.partial)
            for (int p = 0; p < parts; p++) tl__add_row(db, partial + (size_t)p * (size_t)n->cols, n->cols);
        if (j.dx) tl__grad_written(x);
    }
    if (w->grad) {
        /* enough tasks to keep every thread busy: the groups, each split
         * into column blocks when they do not divide among the threads */
        int t = tl_get_threads(), pieces = groups % t == 0 ? 1 : t;
        if (pieces > m) pieces = m;
        struct dw_job d = {x->val, n->act == TL_ACT_NONE ? n->grad : n->scratch, w->grad,
                           grad_beta(w), rows, x->cols, n->cols, k, m, pieces};
        size_t tasks = (size_t)groups * (size_t)pieces;
        int parts = tl_gemm_parts(tasks, (double)rows * k * n->cols);
        tl_parallel_run(tasks, parts, dw_tasks, &d);
        tl__grad_written(w);
    }
}

/* ---- matmul / linear ------------------------------------------------------ */

tl_status tl_op_matmul_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    tl_gemm(0, 0, tl__rows(g, n), n->cols, w->rows, a->val, a->cols, w->val, w->cols, 0.0f, n->val,
            n->cols);
    return TL_OK;
}

/* Both gradients of x W (x and w may be one node: dX first, then dW adds). */
void tl_op_matmul_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    int rows = tl__rows(g, n);
    if (x->grad) {
        tl_gemm(0, 1, rows, w->rows, w->cols, n->grad, w->cols, w->val, w->cols, grad_beta(x),
                x->grad, x->cols);
        tl__grad_written(x);
    }
    if (w->grad) {
        tl_gemm(1, 0, w->rows, w->cols, rows, x->val, x->cols, n->grad, w->cols, grad_beta(w),
                w->grad, w->cols);
        tl__grad_written(w);
    }
}

tl_status tl_op_linear_forward(tl_graph *g, tl_nodedef *n)
{
    layer_forward(g, n, 1);
    return TL_OK;
}

void tl_op_linear_backward(tl_graph *g, tl_nodedef *n) { layer_backward(g, n, 1); }

/* ---- grouped linear ------------------------------------------------------ */

tl_status tl_op_grouped_linear_forward(tl_graph *g, tl_nodedef *n)
{
    layer_forward(g, n, n->k);
    return TL_OK;
}

void tl_op_grouped_linear_backward(tl_graph *g, tl_nodedef *n) { layer_backward(g, n, n->k); }
