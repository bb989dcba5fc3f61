/* ops/elementwise.c — add/sub/mul with broadcasting, scale, and the unary
 * activations. */
#include <math.h>
#include <string.h>

#include "elementwise.h"
#include "ops.h"

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

/* Index of b's element paired with a's element (i, j). */
static inline size_t bidx(tl_bcast bc, int i, int j, int cols)
{
    switch (bc) {
    case TL_BC_SAME: return (size_t)i * cols + j;
    case TL_BC_ROW: return (size_t)j;
    case TL_BC_COL: return (size_t)i;
    case TL_BC_SCALAR: return 0;
    }
    return 0;
}

tl_status tl_op_binary_forward(tl_graph *g, tl_nodedef *n)
{
    const float *a = tl__in(g, n, 0)->val, *b = tl__in(g, n, 1)->val;
    int rows = tl__rows(g, n), cols = n->cols;
    float *y = n->val;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            size_t ia = (size_t)i * cols + j;
            float bv = b[bidx(n->bcast, i, j, cols)];
            switch (n->op) {
            case TL_OP_ADD: y[ia] = a[ia] + bv; break;
            case TL_OP_SUB: y[ia] = a[ia] - bv; break;
            default: y[ia] = a[ia] * bv; break;
            }
        }
    return TL_OK;
}

void tl_op_binary_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *na = tl__in(g, n, 0), *nb = tl__in(g, n, 1);
    int rows = tl__rows(g, n), cols = n->cols;
    const float *dy = n->grad;
    if (na->grad) tl__grad_acc(g, na);
    if (nb->grad) tl__grad_acc(g, nb);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            size_t ia = (size_t)i * cols + j, ib = bidx(n->bcast, i, j, cols);
            float d = dy[ia];
            if (n->op == TL_OP_MUL) {
                if (na->grad) na->grad[ia] += d * nb->val[ib];
                if (nb->grad) nb->grad[ib] += d * na->val[ia];
            } else {
                if (na->grad) na->grad[ia] += d;
                if (nb->grad) nb->grad[ib] += n->op == TL_OP_SUB ? -d : d;
            }
        }
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

tl_status tl_op_unary_forward(tl_graph *g, tl_nodedef *n)
{
    const float *x = tl__in(g, n, 0)->val;
    float *y = n->val;
    size_t len = (size_t)tl__rows(g, n) * (size_t)n->cols;
    switch (n->op) {
    case TL_OP_SCALE:
        for (size_t i = 0; i < len; i++) y[i] = n->f * x[i];
        break;
    case TL_OP_RELU:
        for (size_t i = 0; i < len; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i]; /* NaN stays NaN */
        break;
    case TL_OP_SIGMOID:
        for (size_t i = 0; i < len; i++) y[i] = sigmoidf(x[i]);
        break;
    case TL_OP_TANH:
        for (size_t i = 0; i < len; i++) y[i] = tanhf(x[i]);
        break;
    case TL_OP_EXP:
        for (size_t i = 0; i < len; i++) y[i] = expf(x[i]);
        break;
    case TL_OP_SOFTPLUS: /* log(1 + e^x) without overflow */
        for (size_t i = 0; i < len; i++)
            y[i] = (x[i] > 0.0f ? x[i] : 0.0f) + log1pf(expf(-fabsf(x[i])));
        break;
    default:
        break;
    }
    return TL_OK;
}

void tl_op_unary_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *in = tl__in(g, n, 0);
    if (!in->grad) return;
    const float *x = in->val, *y = n->val, *dy = n->grad;
    float *dx = tl__grad_acc(g, in);
    size_t len = (size_t)tl__rows(g, n) * (size_t)n->cols;
    switch (n->op) {
    case TL_OP_SCALE:
        for (size_t i = 0; i < len; i++) dx[i] += n->f * dy[i];
        break;
    case TL_OP_RELU:
        for (size_t i = 0; i < len; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case TL_OP_SIGMOID:
        for (size_t i = 0; i < len; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        break;
    case TL_OP_TANH:
        for (size_t i = 0; i < len; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
        break;
    case TL_OP_EXP:
        for (size_t i = 0; i < len; i++) dx[i] += dy[i] * y[i];
        break;
    case TL_OP_SOFTPLUS:
        for (size_t i = 0; i < len; i++) dx[i] += dy[i] * sigmoidf(x[i]);
        break;
    default:
        break;
    }
}
