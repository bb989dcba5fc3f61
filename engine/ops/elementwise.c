/* ops/elementwise.c — add/sub/mul with broadcasting, scale, and the unary
 * activations. */
#include <math.h>
#include <string.h>

#include "elementwise.h"
#include "ops.h"
#include "parallel.h"

static tl_node binary(tl_graph *g, tl_op op, const char *name, tl_node a, tl_node b)
{
    tl_node in[2] = {a, b};
    char s1[32], s2[32];
    if (!tl__valid(g, 2, in)) return TL_NONE;
    tl_nodedef *da = &g->nodes[a], *db = &g->nodes[b];
    tl_bcast bc;
    int same_rows = (da->batched && db->batched) ||
                    (!da->batched && !db->batched && da->rows == db->rows);
    if (same_rows && db->cols == da->cols)
        bc = TL_BC_SAME;
    else if (!db->batched && db->rows == 1 && db->cols == 1)
        bc = TL_BC_SCALAR;
    else if (!db->batched && db->rows == 1 && db->cols == da->cols)
        bc = TL_BC_ROW;
    else if (same_rows && db->cols == 1)
        bc = TL_BC_COL;
    else
        return tl__build_fail(g, TL_ERR_SHAPE,
                              "%s: cannot combine '%s' %s with '%s' %s (b must match a, or be "
                              "[1 x cols], [rows x 1] or [1 x 1])",
                              name, da->name, tl__shape(g, a, s1, sizeof s1), db->name,
                              tl__shape(g, b, s2, sizeof s2));
    tl_node o = tl__node_new(g, op, da->batched, da->rows, da->cols, 2, in);
    if (o != TL_NONE) g->nodes[o].bcast = bc;
    return o;
}

tl_node tl_add(tl_graph *g, tl_node a, tl_node b) { return binary(g, TL_OP_ADD, "add", a, b); }
tl_node tl_sub(tl_graph *g, tl_node a, tl_node b) { return binary(g, TL_OP_SUB, "sub", a, b); }
tl_node tl_mul(tl_graph *g, tl_node a, tl_node b) { return binary(g, TL_OP_MUL, "mul", a, b); }

/* Row kernels over n floats (restrict: the output is another node's
 * buffer), so the loops vectorise; each element is the expression the
 * scalar loop formed. */
static void row_op(tl_op op, float *restrict y, const float *restrict a, const float *restrict b, int n)
{
    switch (op) {
    case TL_OP_ADD: TL__FOR8(j, n, y[j] = a[j] + b[j]); break;
    case TL_OP_SUB: TL__FOR8(j, n, y[j] = a[j] - b[j]); break;
    default: TL__FOR8(j, n, y[j] = a[j] * b[j]); break;
    }
}

static void row_op_scalar(tl_op op, float *restrict y, const float *restrict a, float b, int n)
{
    switch (op) {
    case TL_OP_ADD: TL__FOR8(j, n, y[j] = a[j] + b); break;
    case TL_OP_SUB: TL__FOR8(j, n, y[j] = a[j] - b); break;
    default: TL__FOR8(j, n, y[j] = a[j] * b); break;
    }
}

/* Rows are independent in the forward and, but for b's sums over rows (a
 * [1 x cols] or [1 x 1] b), in the backward: those passes split by rows with
 * the same bits. */
struct ew_job {
    tl_graph *g;
    tl_nodedef *n;
    int fa, fb;
};

static void binary_forward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct ew_job *j = ctx;
    tl_nodedef *n = j->n;
    const float *a = tl__in(j->g, n, 0)->val, *b = tl__in(j->g, n, 1)->val;
    int cols = n->cols;
    (void)part;
    for (size_t i = r0; i < r1; i++) {
        size_t o = i * (size_t)cols;
        switch (n->bcast) {
        case TL_BC_SAME: row_op(n->op, n->val + o, a + o, b + o, cols); break;
        case TL_BC_ROW: row_op(n->op, n->val + o, a + o, b, cols); break;
        case TL_BC_COL: row_op_scalar(n->op, n->val + o, a + o, b[i], cols); break;
        case TL_BC_SCALAR: row_op_scalar(n->op, n->val + o, a + o, b[0], cols); break;
        }
    }
}

tl_status tl_op_binary_forward(tl_graph *g, tl_nodedef *n)
{
    struct ew_job j = {g, n, 0, 0};
    tl_parallel_for((size_t)tl__rows(g, n), tl_parallel_row_grain((size_t)n->cols), binary_forward_rows, &j);
    return TL_OK;
}

/* r (+)= s x, or r (+)= x y, over n floats; `fresh` stores 0 + the term, the
 * value clearing r and adding would give, without the clearing pass. */
static void row_acc(float *restrict r, float s, const float *restrict x, const float *restrict y,
                    int n, int fresh)
{
    if (y && fresh) TL__FOR8(j, n, r[j] = 0.0f + x[j] * y[j]);
    else if (y) TL__FOR8(j, n, r[j] += x[j] * y[j]);
    else if (fresh) TL__FOR8(j, n, r[j] = 0.0f + s * x[j]);
    else TL__FOR8(j, n, r[j] += s * x[j]);
}

/* The same as row_acc for s = +-1 without the product: r (+)= x or -x. */
static void row_acc_sign(float *restrict r, int neg, const float *restrict x, int n, int fresh)
{
    if (fresh && neg) TL__FOR8(j, n, r[j] = 0.0f + -x[j]);
    else if (fresh) TL__FOR8(j, n, r[j] = 0.0f + x[j]);
    else if (neg) TL__FOR8(j, n, r[j] += -x[j]);
    else TL__FOR8(j, n, r[j] += x[j]);
}

/* Per element (i, j), a's gradient takes its term, then b's (when a and b
 * are one node, its gradient takes both in that order); b's broadcast
 * gradients sum their terms in row-major order, as the scalar loop did. */
static void binary_backward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct ew_job *j = ctx;
    tl_nodedef *n = j->n, *na = tl__in(j->g, n, 0), *nb = tl__in(j->g, n, 1);
    int cols = n->cols, mul = n->op == TL_OP_MUL, neg = n->op == TL_OP_SUB;
    int fa = j->fa, fb = j->fb;
    const float *dy = n->grad;
    (void)part;
    for (size_t i = r0; i < r1; i++) {
        size_t o = i * (size_t)cols;
        const float *d = dy + o;
        if (na->grad) {
            if (mul) {
                const float *bv = n->bcast == TL_BC_SAME ? nb->val + o : n->bcast == TL_BC_ROW ? nb->val : NULL;
                float bs = n->bcast == TL_BC_COL ? nb->val[i] : nb->val[0];
                row_acc(na->grad + o, bs, d, bv, cols, fa);
            } else {
                row_acc_sign(na->grad + o, 0, d, cols, fa);
            }
        }
        if (!nb->grad) continue;
        switch (n->bcast) {
        case TL_BC_SAME:
            if (mul) row_acc(nb->grad + o, 0.0f, d, na->val + o, cols, fb);
            else row_acc_sign(nb->grad + o, neg, d, cols, fb);
            break;
        case TL_BC_ROW:
            if (mul) row_acc(nb->grad, 0.0f, d, na->val + o, cols, 0);
            else row_acc_sign(nb->grad, neg, d, cols, 0);
            break;
        default: { /* COL, SCALAR: one sum over the row, in column order */
            float *r = nb->grad + (n->bcast == TL_BC_COL ? i : 0), acc = *r;
            const float *av = na->val + o;
            for (int c = 0; c < cols; c++) acc += mul ? d[c] * av[c] : neg ? -d[c] : d[c];
            *r = acc;
            break;
        }
        }
    }
}

/* Per element (i, j), a's gradient takes its term, then b's (when a and b
 * are one node, its gradient takes both in that order); b's broadcast
 * gradients sum their terms in row-major order, as the scalar loop did. */
void tl_op_binary_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *na = tl__in(g, n, 0), *nb = tl__in(g, n, 1);
    size_t rows = (size_t)tl__rows(g, n);
    struct ew_job j = {g, n, na->grad && na->grad_fresh,
                       nb->grad && nb->grad_fresh && nb != na && n->bcast == TL_BC_SAME};
    if (nb->grad && !j.fb && nb != na) tl__grad_acc(g, nb);
    /* b's sums over rows stay in one pass, in row order */
    if (nb->grad && (n->bcast == TL_BC_ROW || n->bcast == TL_BC_SCALAR))
        binary_backward_rows(&j, 0, rows, 0);
    else
        tl_parallel_for(rows, tl_parallel_row_grain(2 * (size_t)n->cols), binary_backward_rows, &j);
    if (j.fa) tl__grad_written(na);
    if (j.fb) tl__grad_written(nb);
}

static tl_node unary(tl_graph *g, tl_op op, tl_node a, float f)
{
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    tl_nodedef *da = &g->nodes[a];
    tl_node o = tl__node_new(g, op, da->batched, da->rows, da->cols, 1, &a);
    if (o != TL_NONE) g->nodes[o].f = f;
    return o;
}

tl_node tl_scale(tl_graph *g, tl_node a, float c) { return unary(g, TL_OP_SCALE, a, c); }
tl_node tl_relu(tl_graph *g, tl_node a) { return unary(g, TL_OP_RELU, a, 0); }
tl_node tl_sigmoid(tl_graph *g, tl_node a) { return unary(g, TL_OP_SIGMOID, a, 0); }
tl_node tl_tanh(tl_graph *g, tl_node a) { return unary(g, TL_OP_TANH, a, 0); }
tl_node tl_exp(tl_graph *g, tl_node a) { return unary(g, TL_OP_EXP, a, 0); }
tl_node tl_softplus(tl_graph *g, tl_node a) { return unary(g, TL_OP_SOFTPLUS, a, 0); }

static inline float sigmoidf(float x)
{
    /* Split by sign so expf never overflows. */
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* Element by element: any split gives the same bits. Exponentials and
 * the like cost several plain passes per element. */
static size_t unary_grain(const tl_nodedef *n)
{
    int cheap = n->op == TL_OP_SCALE || n->op == TL_OP_RELU;
    return tl_parallel_row_grain((size_t)n->cols * (cheap ? 1 : 8));
}

static void unary_forward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct ew_job *j = ctx;
    const tl_nodedef *n = j->n;
    size_t c = (size_t)n->cols, i0 = r0 * c, i1 = r1 * c;
    const float *x = tl__in(j->g, n, 0)->val;
    float *y = n->val;
    (void)part;
    switch (n->op) {
    case TL_OP_SCALE:
        for (size_t i = i0; i < i1; i++) y[i] = n->f * x[i];
        break;
    case TL_OP_RELU:
        for (size_t i = i0; i < i1; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i]; /* NaN stays NaN */
        break;
    case TL_OP_SIGMOID:
        for (size_t i = i0; i < i1; i++) y[i] = sigmoidf(x[i]);
        break;
    case TL_OP_TANH:
        for (size_t i = i0; i < i1; i++) y[i] = tanhf(x[i]);
        break;
    case TL_OP_EXP:
        for (size_t i = i0; i < i1; i++) y[i] = expf(x[i]);
        break;
    case TL_OP_SOFTPLUS: /* log(1 + e^x) without overflow */
        for (size_t i = i0; i < i1; i++)
            y[i] = (x[i] > 0.0f ? x[i] : 0.0f) + log1pf(expf(-fabsf(x[i])));
        break;
    default:
        break;
    }
}

tl_status tl_op_unary_forward(tl_graph *g, tl_nodedef *n)
{
    struct ew_job j = {g, n, 0, 0};
    tl_parallel_for((size_t)tl__rows(g, n), unary_grain(n), unary_forward_rows, &j);
    return TL_OK;
}

static void unary_backward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct ew_job *j = ctx;
    const tl_nodedef *n = j->n;
    tl_nodedef *in = tl__in(j->g, n, 0);
    size_t c = (size_t)n->cols, i0 = r0 * c, i1 = r1 * c;
    const float *x = in->val, *y = n->val, *dy = n->grad;
    float *dx = in->grad;
    (void)part;
    switch (n->op) {
    case TL_OP_SCALE:
        for (size_t i = i0; i < i1; i++) dx[i] += n->f * dy[i];
        break;
    case TL_OP_RELU:
        for (size_t i = i0; i < i1; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case TL_OP_SIGMOID:
        for (size_t i = i0; i < i1; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        break;
    case TL_OP_TANH:
        for (size_t i = i0; i < i1; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
        break;
    case TL_OP_EXP:
        for (size_t i = i0; i < i1; i++) dx[i] += dy[i] * y[i];
        break;
    case TL_OP_SOFTPLUS:
        for (size_t i = i0; i < i1; i++) dx[i] += dy[i] * sigmoidf(x[i]);
        break;
    default:
        break;
    }
}

void tl_op_unary_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *in = tl__in(g, n, 0);
    if (!in->grad) return;
    tl__grad_acc(g, in);
    struct ew_job j = {g, n, 0, 0};
    tl_parallel_for((size_t)tl__rows(g, n), unary_grain(n), unary_backward_rows, &j);
}
