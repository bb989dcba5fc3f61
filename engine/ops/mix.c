/* ops/mix.c — the gated mixture of experts (MMoE/PLE gates) and scaled
 * dot-product attention over a few vectors per sample (DML's cross-task
 * feature mining). */
#include <math.h>
#include <string.h>

#include "mix.h"
#include "ops.h"
#include "parallel.h"

static int gate_mix_fail(tl_graph *g, tl_node gate, tl_node src, int k)
{
    char s1[32], s2[32];
    tl__build_fail(g, TL_ERR_SHAPE, "gate_mix: gate '%s' %s and experts '%s' %s do not fit %d experts",
                   g->nodes[gate].name, tl__shape(g, gate, s1, sizeof s1), g->nodes[src].name,
                   tl__shape(g, src, s2, sizeof s2), k);
    return 0;
}

tl_node tl__gate_mix_blocks(tl_graph *g, tl_node gate, int nblocks, const tl_node *src,
                            const int *first, const int *count, int d)
{
    tl_node in[1 + TL_GATE_MIX_MAX_BLOCKS];
    if (nblocks < 1 || nblocks > TL_GATE_MIX_MAX_BLOCKS)
        return tl__build_fail(g, TL_ERR_ARG, "gate_mix: %d expert blocks; 1..%d supported", nblocks,
                              TL_GATE_MIX_MAX_BLOCKS);
    in[0] = gate;
    for (int b = 0; b < nblocks; b++) in[1 + b] = src[b];
    if (!tl__valid(g, 1 + nblocks, in)) return TL_NONE;
    tl_nodedef *dg = &g->nodes[gate];
    int k = 0;
    for (int b = 0; b < nblocks; b++) {
        tl_nodedef *de = &g->nodes[src[b]];
        k += count[b];
        if (d < 1 || count[b] < 1 || first[b] < 0 || (first[b] + count[b]) * d > de->cols ||
            dg->batched != de->batched || (!dg->batched && dg->rows != de->rows))
            return gate_mix_fail(g, gate, src[b], dg->cols), TL_NONE;
    }
    if (dg->cols != k) return gate_mix_fail(g, gate, src[0], k), TL_NONE;
    tl_node o = tl__node_new(g, TL_OP_GATE_MIX, dg->batched, dg->rows, d, 1 + nblocks, in);
    if (o == TL_NONE) return TL_NONE;
    tl_nodedef *n = &g->nodes[o];
    n->k = k;
    n->blocks = tl_malloc((size_t)nblocks * 2 * sizeof *n->blocks, "gate_mix blocks");
    if (!n->blocks) return tl__build_fail(g, TL_ERR_NOMEM, "%s", tl_errmsg());
    for (int b = 0; b < nblocks; b++) {
        n->blocks[2 * b] = first[b];
        n->blocks[2 * b + 1] = count[b];
    }
    return o;
}

tl_node tl_gate_mix(tl_graph *g, tl_node gate, tl_node experts, int k)
{
    tl_node in[2] = {gate, experts};
    if (!tl__valid(g, 2, in)) return TL_NONE;
    tl_nodedef *de = &g->nodes[experts];
    if (k < 1 || de->cols % k != 0) return gate_mix_fail(g, gate, experts, k), TL_NONE;
    int first = 0;
    return tl__gate_mix_blocks(g, gate, 1, &experts, &first, &k, de->cols / k);
}

/* Expert e_i of row i in block b: d floats. */
static inline const float *expert_at(const tl_nodedef *src, const int32_t *blk, int i, int e_i, int d)
{
    return src->val + (size_t)i * src->cols + (size_t)(blk[0] + e_i) * d;
}

/* Rows are independent in both directions, so the passes split by rows and
 * give the same bits however the rows are shared out. */
struct mix_job {
    tl_graph *g;
    tl_nodedef *n;
    int write_gate, write_ex; /* backward: overwrite fresh gradients */
    uint32_t clear;           /* backward: inputs whose fresh gradient is zeroed (bit 1 + block) */
};

static size_t mix_grain(const tl_nodedef *n)
{
    size_t per_row = (size_t)n->k * (size_t)n->cols; /* floats of experts read per row */
    return tl_parallel_row_grain(per_row);
}

static void mix_forward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct mix_job *j = ctx;
    tl_graph *g = j->g;
    const tl_nodedef *n = j->n, *gt = tl__in(g, n, 0);
    int d = n->cols, k = n->k, nb = n->nin - 1;
    (void)part;
    if (n->read_whole) tl_parallel_claim(n->val + r0 * (size_t)d, (r1 - r0) * (size_t)d * sizeof(float));
    for (size_t i = r0; i < r1; i++) {
        float *y = n->val + i * (size_t)d;
        const float *w = gt->val + i * (size_t)k;
        int e = 0;
        for (int b = 0; b < nb; b++) {
            const tl_nodedef *src = tl__in(g, n, 1 + b);
            const int32_t *blk = n->blocks + 2 * b;
            for (int e_i = 0; e_i < blk[1]; e_i++, e++) {
                const float *ek = expert_at(src, blk, (int)i, e_i, d);
                float we = w[e];
                if (e == 0)
                    tl__scale_row(y, we, ek, d);
                else
                    tl__axpy_row(y, we, ek, d);
            }
        }
    }
}

tl_status tl_op_gate_mix_forward(tl_graph *g, tl_nodedef *n)
{
    struct mix_job j = {g, n, 0, 0, 0};
    tl_parallel_for((size_t)tl__rows(g, n), mix_grain(n), mix_forward_rows, &j);
    return TL_OK;
}

/* Dot product in 8 interleaved partial sums (a fixed order, so results do
 * not depend on the machine), which the compiler can vectorise. */
static float dot8(const float *a, const float *b, int n)
{
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[j + l] * b[j + l];
    for (int l = 0; j < n; j++, l++) acc[l] += a[j] * b[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void mix_backward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct mix_job *j = ctx;
    tl_graph *g = j->g;
    const tl_nodedef *n = j->n, *gt = tl__in(g, n, 0);
    int d = n->cols, k = n->k, nb = n->nin - 1;
    (void)part;
    for (int b = 0; b < nb; b++)
        if (j->clear & (1u << (1 + b))) {
            const tl_nodedef *src = tl__in(g, n, 1 + b);
            memset(src->grad + r0 * (size_t)src->cols, 0, (r1 - r0) * (size_t)src->cols * sizeof(float));
        }
    for (size_t i = r0; i < r1; i++) {
        const float *dy = n->grad + i * (size_t)d;
        const float *w = gt->val + i * (size_t)k;
        float *dw = gt->grad ? gt->grad + i * (size_t)k : NULL;
        int e = 0;
        for (int b = 0; b < nb; b++) {
            const tl_nodedef *src = tl__in(g, n, 1 + b);
            const int32_t *blk = n->blocks + 2 * b;
            for (int e_i = 0; e_i < blk[1]; e_i++, e++) {
                if (dw) {
                    float s = dot8(dy, expert_at(src, blk, (int)i, e_i, d), d);
                    dw[e] = j->write_gate ? s : dw[e] + s;
                }
                if (src->grad) {
                    float *dek = src->grad + i * (size_t)src->cols + (size_t)(blk[0] + e_i) * d;
                    float we = w[e];
                    if (j->write_ex)
                        tl__scale_row(dek, we, dy, d);
                    else
                        tl__axpy_row(dek, we, dy, d);
                }
            }
        }
    }
}

void tl_op_gate_mix_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *gt = tl__in(g, n, 0);
    int nb = n->nin - 1;
    struct mix_job j = {g, n, gt->grad && gt->grad_fresh, 0, 0};
    /* A single block spanning its whole, fresh source is overwritten (MMoE's
     * first gate); otherwise expert gradients add, into a fresh gradient
     * zeroed first (by the rows' own thread, once per source node). */
    for (int b = 0; b < nb; b++) {
        tl_nodedef *src = tl__in(g, n, 1 + b);
        if (!src->grad || !src->grad_fresh) continue;
        if (nb == 1 && n->blocks[0] == 0 && n->blocks[1] * n->cols == src->cols) {
            j.write_ex = 1;
            continue;
        }
        int seen = 0;
        for (int a = 0; a < b; a++) seen |= n->in[1 + a] == n->in[1 + b];
        if (!seen) j.clear |= 1u << (1 + b);
    }
    tl_parallel_for((size_t)tl__rows(g, n), mix_grain(n), mix_backward_rows, &j);
    if (j.write_gate) tl__grad_written(gt);
    for (int b = 0; b < nb; b++) {
        tl_nodedef *src = tl__in(g, n, 1 + b);
        if (src->grad && src->grad_fresh) tl__grad_written(src);
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

/* out[t T + j] = sum_c a[t d + c] b[j d + c] for every pair (t, j), each sum
 * from 0 in column order, as a plain loop would add it. Four pairs run side
 * by side (the last chunk repeats its final pair), so four independent sums
 * hide the adder's latency instead of waiting on one. */
static void token_dots(float *restrict out, const float *restrict a, const float *restrict b, int T,
                       int d)
{
    int pairs = T * T;
    for (int p0 = 0; p0 < pairs; p0 += 4) {
        const float *x[4], *y[4];
        for (int l = 0; l < 4; l++) {
            int p = p0 + l < pairs ? p0 + l : pairs - 1;
            x[l] = a + (size_t)(p / T) * d;
            y[l] = b + (size_t)(p % T) * d;
        }
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (int c = 0; c < d; c++) {
            s0 += x[0][c] * y[0][c];
            s1 += x[1][c] * y[1][c];
            s2 += x[2][c] * y[2][c];
            s3 += x[3][c] * y[3][c];
        }
        float s[4] = {s0, s1, s2, s3};
        for (int l = 0; l < 4 && p0 + l < pairs; l++) out[p0 + l] = s[l];
    }
}

/* Scratch per row: A (T x T attention weights) then dA (T x T). Rows are
 * independent in both directions (each row's gradients take only its own
 * terms), so the passes split by rows with the same bits. Cost per row:
 * about T*T dot products of d floats and as many row updates. */
struct attn_job {
    tl_graph *g;
    tl_nodedef *n;
};

static size_t attn_grain(const tl_nodedef *n) { return tl_parallel_row_grain((size_t)n->cols * (size_t)n->k); }

static void attention_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct attn_job *j = ctx;
    tl_nodedef *n = j->n, *nq = tl__in(j->g, n, 0), *nk = tl__in(j->g, n, 1), *nv = tl__in(j->g, n, 2);
    int T = n->k, d = n->cols / T;
    float scale = 1.0f / sqrtf((float)d);
    (void)part;
    for (size_t i = r0; i < r1; i++) {
        const float *q = nq->val + i * (size_t)n->cols, *k = nk->val + i * (size_t)n->cols;
        const float *v = nv->val + i * (size_t)n->cols;
        float *A = n->scratch + i * 2 * (size_t)T * (size_t)T, *y = n->val + i * (size_t)n->cols;
        token_dots(A, q, k, T, d);
        for (int t = 0; t < T; t++) {
            float *a = A + (size_t)t * T, mx = -INFINITY;
            for (int jj = 0; jj < T; jj++) {
                a[jj] = a[jj] * scale;
                mx = a[jj] > mx ? a[jj] : mx;
            }
            float z = 0.0f;
            for (int jj = 0; jj < T; jj++) z += (a[jj] = expf(a[jj] - mx));
            for (int jj = 0; jj < T; jj++) a[jj] /= z;
            float *yt = y + (size_t)t * d;
            memset(yt, 0, (size_t)d * sizeof(float));
            for (int jj = 0; jj < T; jj++) tl__axpy_row(yt, a[jj], v + (size_t)jj * d, d);
        }
    }
}

tl_status tl_op_attention_forward(tl_graph *g, tl_nodedef *n)
{
    struct attn_job j = {g, n};
    tl_parallel_for((size_t)tl__rows(g, n), attn_grain(n), attention_rows, &j);
    return TL_OK;
}

/* Per row: dS = dY . V (all pairs at once, token_dots), then per query t
 * the same updates in the same order as the textbook loop: dV_j += A_tj dy_t
 * for every j, then dQ_t += dS_tj K_j and dK_j += dS_tj Q_t for every j (so
 * also when q, k and v are one node, each gradient element takes its terms
 * in that order). */
static void attention_grad_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct attn_job *j = ctx;
    tl_nodedef *n = j->n, *nq = tl__in(j->g, n, 0), *nk = tl__in(j->g, n, 1), *nv = tl__in(j->g, n, 2);
    int T = n->k, d = n->cols / T;
    float scale = 1.0f / sqrtf((float)d);
    (void)part;
    for (size_t i = r0; i < r1; i++) {
        size_t ro = i * (size_t)n->cols;
        const float *q = nq->val + ro, *k = nk->val + ro, *v = nv->val + ro, *dy = n->grad + ro;
        float *A = n->scratch + i * 2 * (size_t)T * (size_t)T, *dS = A + (size_t)T * T;
        token_dots(dS, dy, v, T, d); /* dA_tj = dy_t . v_j */
        for (int t = 0; t < T; t++) {
            const float *a = A + (size_t)t * T, *dyt = dy + (size_t)t * d;
            float *ds = dS + (size_t)t * T, dot = 0.0f;
            for (int jj = 0; jj < T; jj++) {
                dot += a[jj] * ds[jj];
                if (nv->grad) tl__axpy_row(nv->grad + ro + (size_t)jj * d, a[jj], dyt, d);
            }
            for (int jj = 0; jj < T; jj++) ds[jj] = a[jj] * (ds[jj] - dot) * scale;
            for (int jj = 0; jj < T; jj++) {
                if (nq->grad) tl__axpy_row(nq->grad + ro + (size_t)t * d, ds[jj], k + (size_t)jj * d, d);
                if (nk->grad) tl__axpy_row(nk->grad + ro + (size_t)jj * d, ds[jj], q + (size_t)t * d, d);
            }
        }
    }
}

void tl_op_attention_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *nq = tl__in(g, n, 0), *nk = tl__in(g, n, 1), *nv = tl__in(g, n, 2);
    if (nq->grad) tl__grad_acc(g, nq);
    if (nk->grad) tl__grad_acc(g, nk);
    if (nv->grad) tl__grad_acc(g, nv);
    struct attn_job j = {g, n};
    tl_parallel_for((size_t)tl__rows(g, n), attn_grain(n), attention_grad_rows, &j);
}
