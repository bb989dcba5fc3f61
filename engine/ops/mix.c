/* ops/mix.c — the gated mixture of experts (MMoE/PLE gates) and scaled
 * dot-product attention over a few vectors per sample (DML's cross-task
 * feature mining). */
#include <math.h>
#include <string.h>

#include "ops.h"

tl_node tl_gate_mix(tl_graph *g, tl_node gate, tl_node experts, int k)
{
    tl_node in[2] = {gate, experts};
    char s1[32], s2[32];
    if (!tl__valid(g, 2, in)) return TL_NONE;
    tl_nodedef *dg = &g->nodes[gate], *de = &g->nodes[experts];
    if (k < 1 || dg->cols != k || de->cols % k != 0 || dg->batched != de->batched ||
        (!dg->batched && dg->rows != de->rows))
        return tl__build_fail(g, TL_ERR_SHAPE,
                              "gate_mix: gate '%s' %s and experts '%s' %s do not fit %d experts",
                              dg->name, tl__shape(g, gate, s1, sizeof s1), de->name,
                              tl__shape(g, experts, s2, sizeof s2), k);
    tl_node o = tl__node_new(g, TL_OP_GATE_MIX, de->batched, de->rows, de->cols / k, 2, in);
    if (o != TL_NONE) g->nodes[o].k = k;
    return o;
}

tl_status tl_op_gate_mix_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *gt = tl__in(g, n, 0), *ex = tl__in(g, n, 1);
    int rows = tl__rows(g, n), d = n->cols, k = n->k;
    for (int i = 0; i < rows; i++) {
        float *y = n->val + (size_t)i * d;
        const float *w = gt->val + (size_t)i * k, *e = ex->val + (size_t)i * ex->cols;
        for (int j = 0; j < d; j++) y[j] = w[0] * e[j];
        for (int e_i = 1; e_i < k; e_i++) {
            const float *ek = e + (size_t)e_i * d;
            for (int j = 0; j < d; j++) y[j] += w[e_i] * ek[j];
        }
    }
    return TL_OK;
}

void tl_op_gate_mix_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *gt = tl__in(g, n, 0), *ex = tl__in(g, n, 1);
    int rows = tl__rows(g, n), d = n->cols, k = n->k;
    for (int i = 0; i < rows; i++) {
        const float *dy = n->grad + (size_t)i * d;
        const float *w = gt->val + (size_t)i * k, *e = ex->val + (size_t)i * ex->cols;
        for (int e_i = 0; e_i < k; e_i++) {
            const float *ek = e + (size_t)e_i * d;
            if (gt->grad) {
                float s = 0.0f;
                for (int j = 0; j < d; j++) s += dy[j] * ek[j];
                gt->grad[(size_t)i * k + e_i] += s;
            }
            if (ex->grad) {
                float *dek = ex->grad + (size_t)i * ex->cols + (size_t)e_i * d;
                for (int j = 0; j < d; j++) dek[j] += w[e_i] * dy[j];
            }
        }
    }
}

tl_node tl_attention(tl_graph *g, tl_node q, tl_node k, tl_node v, int tokens)
{
    tl_node in[3] = {q, k, v};
    char s1[32], s2[32], s3[32];
    if (!tl__valid(g, 3, in)) return TL_NONE;
    tl_nodedef *dq = &g->nodes[q], *dk = &g->nodes[k], *dv = &g->nodes[v];
    if (tokens < 1 || dq->cols % tokens != 0 || dk->cols != dq->cols || dv->cols != dq->cols ||
        dq->batched != dk->batched || dq->batched != dv->batched ||
        (!dq->batched && (dq->rows != dk->rows || dq->rows != dv->rows)))
        return tl__build_fail(g, TL_ERR_SHAPE,
                              "attention: q %s, k %s, v %s must be equal and split into %d tokens",
                              tl__shape(g, q, s1, sizeof s1), tl__shape(g, k, s2, sizeof s2),
                              tl__shape(g, v, s3, sizeof s3), tokens);
    tl_node o = tl__node_new(g, TL_OP_ATTENTION, dq->batched, dq->rows, dq->cols, 3, in);
    if (o != TL_NONE) g->nodes[o].k = tokens;
    return o;
}

/* Scratch per row: A (T x T attention weights) then dA (T x T). */
tl_status tl_op_attention_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *nq = tl__in(g, n, 0), *nk = tl__in(g, n, 1), *nv = tl__in(g, n, 2);
    int rows = tl__rows(g, n), T = n->k, d = n->cols / T;
    float scale = 1.0f / sqrtf((float)d);
    for (int i = 0; i < rows; i++) {
        const float *q = nq->val + (size_t)i * n->cols, *k = nk->val + (size_t)i * n->cols;
        const float *v = nv->val + (size_t)i * n->cols;
        float *A = n->scratch + (size_t)i * 2 * T * T, *y = n->val + (size_t)i * n->cols;
        for (int t = 0; t < T; t++) {
            float *a = A + (size_t)t * T, mx = -INFINITY;
            for (int j = 0; j < T; j++) {
                float s = 0.0f;
                for (int c = 0; c < d; c++) s += q[t * d + c] * k[j * d + c];
                a[j] = s * scale;
                mx = a[j] > mx ? a[j] : mx;
            }
            float z = 0.0f;
            for (int j = 0; j < T; j++) z += (a[j] = expf(a[j] - mx));
            for (int j = 0; j < T; j++) a[j] /= z;
            float *yt = y + (size_t)t * d;
            memset(yt, 0, (size_t)d * sizeof(float));
            for (int j = 0; j < T; j++)
                for (int c = 0; c < d; c++) yt[c] += a[j] * v[j * d + c];
        }
    }
    return TL_OK;
}

void tl_op_attention_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *nq = tl__in(g, n, 0), *nk = tl__in(g, n, 1), *nv = tl__in(g, n, 2);
    int rows = tl__rows(g, n), T = n->k, d = n->cols / T;
    float scale = 1.0f / sqrtf((float)d);
    for (int i = 0; i < rows; i++) {
        size_t ro = (size_t)i * n->cols;
        const float *q = nq->val + ro, *k = nk->val + ro, *v = nv->val + ro, *dy = n->grad + ro;
        float *A = n->scratch + (size_t)i * 2 * T * T, *dS = A + (size_t)T * T;
        for (int t = 0; t < T; t++) {
            const float *a = A + (size_t)t * T, *dyt = dy + (size_t)t * d;
            float *ds = dS + (size_t)t * T, dot = 0.0f;
            for (int j = 0; j < T; j++) { /* dA_tj = dy_t . v_j ; dv_j += A_tj dy_t */
                float s = 0.0f;
                for (int c = 0; c < d; c++) s += dyt[c] * v[j * d + c];
                ds[j] = s;
                dot += a[j] * s;
                if (nv->grad)
                    for (int c = 0; c < d; c++) nv->grad[ro + (size_t)j * d + c] += a[j] * dyt[c];
            }
            for (int j = 0; j < T; j++) ds[j] = a[j] * (ds[j] - dot) * scale;
            for (int j = 0; j < T; j++)
                for (int c = 0; c < d; c++) {
                    if (nq->grad) nq->grad[ro + (size_t)t * d + c] += ds[j] * k[j * d + c];
                    if (nk->grad) nk->grad[ro + (size_t)j * d + c] += ds[j] * q[t * d + c];
                }
        }
    }
}
