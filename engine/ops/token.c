/* ops/token.c — ops over several vectors ("tokens") per row and over row
 * groups: one linear layer shared by every token (DML's CTFM projections), the
 * quadruplet BPR ranking loss (CrossDistil's auxiliary tasks), and an
 * elementwise map without gradient (applying a fitted calibrator). */
#include <math.h>
#include <string.h>

#include "gemm.h"
#include "token.h"
#include "ops.h"
#include "parallel.h"

tl_node tl_token_linear(tl_graph *g, tl_node x, tl_node w, tl_node b, int tokens, tl_act act)
{
    tl_node in[3] = {x, w, b};
    int nin = b == TL_NONE ? 2 : 3;
    char s1[32], s2[32];
    if (!tl__valid(g, nin, in)) return TL_NONE;
    tl_nodedef *dx = &g->nodes[x], *dw = &g->nodes[w];
    if (tokens < 1 || dw->batched || dx->cols != tokens * dw->rows ||
        (b != TL_NONE && (g->nodes[b].batched || g->nodes[b].rows != 1 || g->nodes[b].cols != dw->cols)))
        return tl__build_fail(g, TL_ERR_SHAPE,
                              "token_linear: input '%s' %s is not %d tokens of weight '%s' %s rows "
                              "(bias must be [1 x %d])",
                              dx->name, tl__shape(g, x, s1, sizeof s1), tokens, dw->name,
                              tl__shape(g, w, s2, sizeof s2), dw->cols);
    tl_node o = tl__node_new(g, TL_OP_TOKEN_LINEAR, dx->batched, dx->rows, tokens * dw->cols, nin, in);
    if (o != TL_NONE) {
        g->nodes[o].act = act;
        g->nodes[o].k = tokens;
    }
    return o;
}

/* start = 1 marks the input read through a stop-gradient. */
tl_node tl_token_linear_sg(tl_graph *g, tl_node x, tl_node w, tl_node b, int tokens, tl_act act)
{
    tl_node o = tl_token_linear(g, x, w, b, tokens, act);
    if (o != TL_NONE) g->nodes[o].start = 1;
    return o;
}

/* Rows of T tokens are contiguous, so [n x T*k] is [n*T x k]: one GEMM.
 * With a bias, the output is filled with it and the GEMM adds x W onto it
 * (beta = 1): b + xW, the sum the separate pass formed, without that pass.
 * (The one difference: a -0 bias meeting a -0 product gives -0 where the
 * pass, adding to a cleared output, gave +0; ReLU maps both to +0.) */
static void relu_inplace(float *restrict y, size_t len)
{
    TL__FOR8(i, len, y[i] = y[i] > 0.0f ? y[i] : 0.0f);
}

/* The forward as one job over row blocks, the blocks tl_gemm would split
 * the product into (gemm.h: by rows when rows >= m), so every block's GEMM
 * call is the one tl_gemm made: each block fills its rows with the bias,
 * adds x W, applies the activation. */
struct tok_job {
    tl_nodedef *n, *x, *w;
    const float *b;
    int k, m;
    float *db;
    int claim_dz; /* backward: dW reads all of dZ, claim its rows first */
};

static void act_rows(tl_act act, float *y, size_t len)
{
    switch (act) {
    case TL_ACT_RELU:
        relu_inplace(y, len);
        break;
    case TL_ACT_SIGMOID:
        for (size_t i = 0; i < len; i++) y[i] = 1.0f / (1.0f + expf(-y[i]));
        break;
    case TL_ACT_TANH:
        for (size_t i = 0; i < len; i++) y[i] = tanhf(y[i]);
        break;
    case TL_ACT_NONE: /* without a bias, the cleared output + x W, as before */
        break;
    }
}

static void tok_forward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct tok_job *j = ctx;
    size_t m = (size_t)j->m, rows = r1 - r0;
    float *y = j->n->val + r0 * m;
    (void)part;
    if (j->n->read_whole) tl_parallel_claim(y, rows * m * sizeof(float));
    if (j->b)
        for (size_t i = 0; i < rows; i++) memcpy(y + i * m, j->b, m * sizeof(float));
    tl_gemm_serial(0, 0, (int)rows, j->m, j->k, j->x->val + r0 * (size_t)j->k, j->k, j->w->val, j->m,
                   j->b ? 1.0f : 0.0f, y, j->m);
    act_rows(j->n->act, y, rows * m);
}

tl_status tl_op_token_linear_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    const float *b = n->nin > 2 ? tl__in(g, n, 2)->val : NULL;
    int rows = tl__rows(g, n) * n->k, k = w->rows, m = w->cols;
    struct tok_job j = {n, x, w, b, k, m, NULL, 0};
    if (rows >= m) { /* tl_gemm's split by rows */
        tl_parallel_run((size_t)rows, tl_gemm_parts((size_t)rows, (double)rows * m * k), tok_forward_rows, &j);
        return TL_OK;
    }
    size_t len = (size_t)rows * (size_t)m;
    if (n->read_whole) tl_parallel_claim(n->val, len * sizeof(float));
    if (b)
        for (int i = 0; i < rows; i++) memcpy(n->val + (size_t)i * m, b, (size_t)m * sizeof(float));
    tl_gemm(0, 0, rows, m, k, x->val, k, w->val, m, b ? 1.0f : 0.0f, n->val, m);
    act_rows(n->act, n->val, len);
    return TL_OK;
}

/* dz = act'(y) dy over one row of m floats, from the output y. */
static void act_grad_row(tl_act act, float *restrict dz, const float *restrict y,
                         const float *restrict dy, int m)
{
    switch (act) {
    case TL_ACT_RELU:
        TL__FOR8(j, m, float d = dy[j]; /* loaded unconditionally, so the select vectorises */
                 dz[j] = y[j] > 0.0f ? d : 0.0f);
        break;
    case TL_ACT_SIGMOID:
        for (int j = 0; j < m; j++) dz[j] = dy[j] * y[j] * (1.0f - y[j]);
        break;
    case TL_ACT_TANH:
        for (int j = 0; j < m; j++) dz[j] = dy[j] * (1.0f - y[j] * y[j]);
        break;
    case TL_ACT_NONE:
        break;
    }
}

/* Rows [r0, r1): the activation's gradient, then (when dX splits by rows,
 * into these blocks) dX's rows. */
static void tok_backward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    const struct tok_job *j = ctx;
    tl_nodedef *n = j->n;
    size_t m = (size_t)j->m;
    (void)part;
    if (n->act != TL_ACT_NONE) {
        if (j->claim_dz) tl_parallel_claim(n->scratch + r0 * m, (r1 - r0) * m * sizeof(float));
        for (size_t i = r0; i < r1; i++)
            act_grad_row(n->act, n->scratch + i * m, n->val + i * m, n->grad + i * m, j->m);
    }
    if (j->x) {
        const float *dz = n->act == TL_ACT_NONE ? n->grad : n->scratch;
        tl_gemm_serial(0, 1, (int)(r1 - r0), j->k, j->m, dz + r0 * m, j->m, j->w->val, j->m, 1.0f,
                       j->x->grad + r0 * (size_t)j->k, j->k);
    }
}

/* Bias columns [c0, c1): each column's rows added in row order, as the
 * serial pass added whole rows. */
static void tok_bias_cols(void *ctx, size_t c0, size_t c1, int part)
{
    const struct tok_job *j = ctx;
    const tl_nodedef *n = j->n;
    const float *dz = n->act == TL_ACT_NONE ? n->grad : n->scratch;
    size_t m = (size_t)j->m, rows = (size_t)j->k; /* k: the row count here */
    (void)part;
    for (size_t i = 0; i < rows; i++) tl__add_row(j->db + c0, dz + i * m + c0, (int)(c1 - c0));
}

void tl_op_token_linear_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0), *w = tl__in(g, n, 1);
    tl_nodedef *nb = n->nin > 2 ? tl__in(g, n, 2) : NULL;
    int rows = tl__rows(g, n) * n->k, k = w->rows, m = w->cols;
    const float *dz = n->act == TL_ACT_NONE ? n->grad : n->scratch;
    float *db = nb && nb->grad ? nb->grad : NULL;
    int dx = x->grad && !n->start, dx_rows = dx && rows >= k; /* tl_gemm's split of dX by rows */
    int parts = dx_rows ? tl_gemm_parts((size_t)rows, (double)rows * k * m)
                        : tl_parallel_parts((size_t)rows, tl_parallel_row_grain((size_t)m));
    struct tok_job j = {n, dx_rows ? x : NULL, w, NULL, k, m, db, w->grad != NULL};
    if (n->act != TL_ACT_NONE || dx_rows) tl_parallel_run((size_t)rows, parts, tok_backward_rows, &j);
    if (db) {
        struct tok_job c = {n, NULL, w, NULL, rows, m, db, 0};
        tl_parallel_for((size_t)m, tl_parallel_row_grain((size_t)rows), tok_bias_cols, &c);
    }
    if (dx && !dx_rows) tl_gemm(0, 1, rows, k, m, dz, m, w->val, m, 1.0f, x->grad, k);
    if (w->grad) tl_gemm(1, 0, k, m, rows, x->val, k, dz, m, 1.0f, w->grad, m);
}

/* ---- quadruplet BPR -------------------------------------------------------
 * Scratch: the row indices of the rows in play (weight > 0) sorted into the
 * four groups (as floats, exact below 2^24); fixed: 4 group counts, then for
 * each of the 3 adjacent group pairs a flag "sampled" and max_pairs sampled
 * (i, j) pairs. Input 3, when present, holds the row weights. Terms pair
 * adjacent non-empty groups (chain_groups). */

tl_node tl_quadruplet_bpr_weighted(tl_graph *g, tl_node score, tl_node label_a, tl_node label_b,
                                   tl_node weight, int flip_b, int max_pairs)
{
    tl_node in[4] = {score, label_a, label_b, weight};
    int nin = weight == TL_NONE ? 3 : 4;
    char s1[32];
    if (!tl__valid(g, nin, in)) return TL_NONE;
    const tl_nodedef *ds = &g->nodes[score];
    for (int i = 0; i < nin; i++) {
        tl_nodedef *d = &g->nodes[in[i]];
        if (d->cols != 1 || d->batched != ds->batched || (!d->batched && d->rows != ds->rows))
            return tl__build_fail(g, TL_ERR_SHAPE, "quadruplet_bpr: '%s' %s must be [rows x 1] "
                                  "like the scores", d->name, tl__shape(g, in[i], s1, sizeof s1));
    }
    if (!ds->batched && ds->rows > g->max_batch)
        return tl__build_fail(g, TL_ERR_SHAPE, "quadruplet_bpr: %d fixed rows exceed the graph's "
                              "max_batch %d", ds->rows, g->max_batch);
    if (max_pairs < 1)
        return tl__build_fail(g, TL_ERR_ARG, "quadruplet_bpr: max_pairs must be >= 1, got %d",
                              max_pairs);
    /* A term has at most (max_batch/2)^2 pairs: a larger max_pairs can never
     * sample, so cap it and keep the sampled-pairs scratch small. */
    int64_t cap = ((int64_t)g->max_batch / 2 + 1) * ((int64_t)g->max_batch / 2 + 1);
    if (max_pairs > cap) max_pairs = (int)cap;
    tl_node o = tl__node_new(g, TL_OP_QUAD_BPR, 0, 1, 1, nin, in);
    if (o != TL_NONE) {
        g->nodes[o].k = max_pairs;
        g->nodes[o].start = flip_b;
    }
    return o;
}

tl_node tl_quadruplet_bpr(tl_graph *g, tl_node score, tl_node label_a, tl_node label_b, int flip_b,
                          int max_pairs)
{
    return tl_quadruplet_bpr_weighted(g, score, label_a, label_b, TL_NONE, flip_b, max_pairs);
}

/* Group of a row in target order: 0 = (+,+), 1 = (+,-), 2 = (-,+), 3 = (-,-). */
static int quad_group(float ya, float yb, int flip_b)
{
    int a = ya > 0.5f, b = yb > 0.5f;
    if (flip_b) b = !b;
    return (a ? 0 : 2) + (b ? 0 : 1);
}

/* The non-empty groups in target order into grp; returns how many. The
 * terms chain adjacent non-empty groups, so an empty group (for nested tasks
 * a -> b, (-,+) always is) joins its neighbours, (+,-) over (-,-), instead
 * of dropping both terms next to it. */
static int chain_groups(const int cnt[4], int grp[4])
{
    int ng = 0;
    for (int q = 0; q < 4; q++)
        if (cnt[q] > 0) grp[ng++] = q;
    return ng;
}

static inline float log_sigmoid(float x) { return x >= 0.0f ? -log1pf(expf(-x)) : x - log1pf(expf(x)); }

/* Sum over pairs of -log sigmoid(x) = max(-x, 0) + log(1 + e^-|x|), the
 * logs taken of running products: each factor 1 + e^-|x| lies in (1, 2], so
 * QUAD_CHUNK of them stay far below DBL_MAX, and one log per chunk replaces
 * a log1pf per pair (the term's cost) with an error below 1e-13. */
#define QUAD_CHUNK 512
typedef struct {
    double lin, logs, prod;
    int n;
} quad_sum;

static inline void quad_sum_add(quad_sum *q, float x)
{
    if (x < 0.0f) q->lin -= (double)x;
    q->prod *= 1.0 + (double)expf(-fabsf(x));
    if (++q->n == QUAD_CHUNK) {
        q->logs += log(q->prod);
        q->prod = 1.0;
        q->n = 0;
    }
}

static inline double quad_sum_total(const quad_sum *q) { return q->lin + q->logs + log(q->prod); }

/* 1 when every row of P and Q weighs 1 (or there are no weights): the term is
 * then a plain mean, summed with quad_sum. */
static int unit_weights(const float *w, const float *P, int np, const float *Q, int nq)
{
    if (!w) return 1;
    for (int i = 0; i < np; i++)
        if (w[(int)P[i]] != 1.0f) return 0;
    for (int j = 0; j < nq; j++)
        if (w[(int)Q[j]] != 1.0f) return 0;
    return 1;
}

/* Row weights of the op (NULL: all 1). */
static const float *quad_weights(tl_graph *g, tl_nodedef *n)
{
    return n->nin > 3 ? tl__in(g, n, 3)->val : NULL;
}

/* Sum of the pair weights w_i w_j of a term: over all of P x Q, or over the
 * sampled pairs pp. Unit weights give exactly |P||Q| or max_pairs, so the
 * weighted loss is then bit for bit the unweighted one. */
static double quad_norm(const float *w, const float *P, int np, const float *Q, int nq,
                        const float *pp, int maxp)
{
    if (!pp) {
        double sp = 0.0, sq = 0.0;
        for (int i = 0; i < np; i++) sp += w ? (double)w[(int)P[i]] : 1.0;
        for (int j = 0; j < nq; j++) sq += w ? (double)w[(int)Q[j]] : 1.0;
        return sp * sq;
    }
    double s = 0.0;
    for (int t = 0; t < maxp; t++)
        s += w ? (double)w[(int)pp[1 + 2 * t]] * (double)w[(int)pp[2 + 2 * t]] : 1.0;
    return s;
}

/* The loss over `rows` rows (scores r, labels la and lb, weights w or
 * NULL): members, counts and pairs are the op's scratch (members: rows
 * floats); sampling draws from rng. */
static double quad_forward(const float *r, const float *la, const float *lb, const float *w, int rows, int flip_b,
                           int maxp, tl_rng *rng, float *members, float *counts, float *pairs)
{
    int cnt[4] = {0, 0, 0, 0}, start[4];
    /* rows of weight 0 (outside a task space, or weighted out) are in no group */
    for (int i = 0; i < rows; i++)
        if (!w || w[i] > 0.0f) cnt[quad_group(la[i], lb[i], flip_b)]++;
    start[0] = 0;
    for (int q = 1; q < 4; q++) start[q] = start[q - 1] + cnt[q - 1];
    int fill[4] = {start[0], start[1], start[2], start[3]};
    for (int i = 0; i < rows; i++)
        if (!w || w[i] > 0.0f) members[fill[quad_group(la[i], lb[i], flip_b)]++] = (float)i;
    for (int q = 0; q < 4; q++) counts[q] = (float)cnt[q];

    double total = 0.0;
    int grp[4], ng = chain_groups(cnt, grp);
    for (int p = 0; p < 3; p++) pairs[(size_t)p * (1 + 2 * (size_t)maxp)] = 0.0f;
    for (int p = 0; p + 1 < ng; p++) {
        float *pp = pairs + (size_t)p * (1 + 2 * (size_t)maxp);
        int np = cnt[grp[p]], nq = cnt[grp[p + 1]];
        const float *P = members + start[grp[p]], *Q = members + start[grp[p + 1]];
        double s = 0.0;
        int unit = unit_weights(w, P, np, Q, nq);
        quad_sum qs = {0.0, 0.0, 1.0, 0};
        /* sum w_i w_j (-log s(r_i - r_j)) / sum w_i w_j over the term's pairs */
        if ((double)np * nq <= maxp && unit) {
            for (int i = 0; i < np; i++) {
                float ra = r[(int)P[i]];
                for (int j = 0; j < nq; j++) quad_sum_add(&qs, ra - r[(int)Q[j]]);
            }
            total += quad_sum_total(&qs) / quad_norm(NULL, P, np, Q, nq, NULL, maxp);
        } else if ((double)np * nq <= maxp) {
            for (int i = 0; i < np; i++) {
                int a = (int)P[i];
                double wa = w ? (double)w[a] : 1.0;
                for (int j = 0; j < nq; j++) {
                    int b = (int)Q[j];
                    double wab = w ? wa * (double)w[b] : 1.0;
                    s -= wab * (double)log_sigmoid(r[a] - r[b]);
                }
            }
            total += s / quad_norm(w, P, np, Q, nq, NULL, maxp);
        } else { /* subsample max_pairs pairs uniformly, remembered for the backward */
            pp[0] = 1.0f;
            for (int t = 0; t < maxp; t++) {
                int i = (int)P[tl_rng_below(rng, (uint64_t)np)];
                int j = (int)Q[tl_rng_below(rng, (uint64_t)nq)];
                pp[1 + 2 * t] = (float)i;
                pp[2 + 2 * t] = (float)j;
                if (unit) {
                    quad_sum_add(&qs, r[i] - r[j]);
                } else {
                    double wij = w ? (double)w[i] * (double)w[j] : 1.0;
                    s -= wij * (double)log_sigmoid(r[i] - r[j]);
                }
            }
            total += (unit ? quad_sum_total(&qs) : s) / quad_norm(unit ? NULL : w, P, np, Q, nq, pp, maxp);
        }
    }
    return total;
}

/* d times the loss's gradient added into dr, from quad_forward's scratch. */
static void quad_backward(const float *r, const float *w, int maxp, const float *members, const float *counts,
                          const float *pairs, float *dr, float d)
{
    int cnt[4], start[4], grp[4];
    for (int q = 0; q < 4; q++) {
        cnt[q] = (int)counts[q];
        start[q] = q ? start[q - 1] + cnt[q - 1] : 0;
    }
    int ng = chain_groups(cnt, grp);
    for (int p = 0; p + 1 < ng; p++) {
        const float *pp = pairs + (size_t)p * (1 + 2 * (size_t)maxp);
        int np = cnt[grp[p]], nq = cnt[grp[p + 1]];
        const float *P = members + start[grp[p]], *Q = members + start[grp[p + 1]];
        /* d/dr_i of -log s(r_i - r_j) = -(1 - s(r_i - r_j)) = -s(r_j - r_i),
         * times the pair's share w_i w_j / sum w_i w_j of the term */
        int sampled = pp[0] != 0.0f;
        float scale = d / (float)quad_norm(w, P, np, Q, nq, sampled ? pp : NULL, maxp);
        if (!sampled) {
            /* P and Q are disjoint, so dr[a] can wait in a register while the
             * dr[b] take their terms: the same operations on each element */
            for (int i = 0; i < np; i++) {
                int a = (int)P[i];
                float ra = r[a], acc = dr[a];
                for (int j = 0; j < nq; j++) {
                    int b = (int)Q[j];
                    float gsig = 1.0f / (1.0f + expf(ra - r[b]));
                    float sw = w ? scale * (w[a] * w[b]) : scale;
                    acc -= sw * gsig;
                    dr[b] += sw * gsig;
                }
                dr[a] = acc;
            }
        } else {
            for (int t = 0; t < maxp; t++) {
                int a = (int)pp[1 + 2 * t], b = (int)pp[2 + 2 * t];
                float gsig = 1.0f / (1.0f + expf(r[a] - r[b]));
                float sw = w ? scale * (w[a] * w[b]) : scale;
                dr[a] -= sw * gsig;
                dr[b] += sw * gsig;
            }
        }
    }
}

tl_status tl_op_quad_bpr_forward(tl_graph *g, tl_nodedef *n)
{
    if (n->map_ctx) { /* the whole batch's loss, computed outside (tl_quadruplet_set_rows) */
        n->val[0] = (float)((const tl_quad_rows *)n->map_ctx)->loss;
        return TL_OK;
    }
    tl_nodedef *ns = tl__in(g, n, 0), *na = tl__in(g, n, 1), *nb = tl__in(g, n, 2);
    float *members = n->scratch, *counts = n->scratch + (size_t)g->max_batch;
    /* Training draws from the graph's RNG (checkpointed with it); an eval
     * forward (predict, evaluate) uses its own fixed stream, so evaluating
     * between steps leaves later training's draws as they were. */
    tl_rng eval_rng, *rng = &g->drop_rng;
    if (!g->training) {
        tl_rng_seed(&eval_rng, 0x71a5b9dULL);
        rng = &eval_rng;
    }
    n->val[0] = (float)quad_forward(ns->val, na->val, nb->val, quad_weights(g, n), tl__rows(g, ns), n->start, n->k,
                                    rng, members, counts, counts + 4);
    return TL_OK;
}

void tl_op_quad_bpr_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *ns = tl__in(g, n, 0);
    if (!ns->grad) return;
    if (n->map_ctx) { /* this run's rows of the whole batch's gradient */
        const tl_quad_rows *q = n->map_ctx;
        for (int i = 0; q->grad && i < q->rows; i++) ns->grad[i] += n->grad[0] * q->grad[q->off + i];
        return;
    }
    const float *counts = n->scratch + (size_t)g->max_batch;
    quad_backward(ns->val, quad_weights(g, n), n->k, n->scratch, counts, counts + 4, ns->grad, n->grad[0]);
}

tl_status tl_quadruplet_set_rows(tl_graph *g, tl_node quad, const tl_quad_rows *q)
{
    if (quad < 0 || quad >= g->n_nodes || g->nodes[quad].op != TL_OP_QUAD_BPR)
        return tl_fail(TL_ERR_ARG, "quadruplet rows: node %d is not a quadruplet loss", (int)quad);
    g->nodes[quad].map_ctx = (void *)q;
    return TL_OK;
}

tl_status tl_quadruplet_rows_loss(const tl_graph *g, tl_node quad, const float *score, const float *label_a,
                                  const float *label_b, const float *weight, int rows, tl_rng *rng, double *loss,
                                  float *grad)
{
    if (quad < 0 || quad >= g->n_nodes || g->nodes[quad].op != TL_OP_QUAD_BPR)
        return tl_fail(TL_ERR_ARG, "quadruplet rows: node %d is not a quadruplet loss", (int)quad);
    const tl_nodedef *n = &g->nodes[quad];
    if (n->nin < 4) weight = NULL;
    size_t fl = (size_t)rows + 4 + 3 * (1 + 2 * (size_t)n->k);
    float *scratch = tl_malloc(fl * sizeof(float), "quadruplet scratch");
    if (!scratch) return TL_ERR_NOMEM;
    float *counts = scratch + rows;
    *loss = quad_forward(score, label_a, label_b, weight, rows, n->start, n->k, rng, scratch, counts, counts + 4);
    memset(grad, 0, (size_t)rows * sizeof(float));
    quad_backward(score, weight, n->k, scratch, counts, counts + 4, grad, 1.0f);
    tl_free(scratch);
    return TL_OK;
}

/* ---- map ------------------------------------------------------------------ */

tl_node tl_map(tl_graph *g, tl_node x, tl_node aux, tl_map_fn fn, void *ctx)
{
    tl_node in[2] = {x, aux};
    int nin = aux == TL_NONE ? 1 : 2;
    char s1[32], s2[32];
    if (!tl__valid(g, nin, in)) return TL_NONE;
    tl_nodedef *dx = &g->nodes[x];
    if (aux != TL_NONE) {
        tl_nodedef *da = &g->nodes[aux];
        if (da->cols != dx->cols || da->batched != dx->batched || (!da->batched && da->rows != dx->rows))
            return tl__build_fail(g, TL_ERR_SHAPE, "map: '%s' %s and '%s' %s must have equal shapes",
                                  dx->name, tl__shape(g, x, s1, sizeof s1), da->name,
                                  tl__shape(g, aux, s2, sizeof s2));
    }
    tl_node o = tl__node_new(g, TL_OP_MAP, dx->batched, dx->rows, dx->cols, nin, in);
    if (o != TL_NONE) {
        g->nodes[o].map_fn = fn;
        g->nodes[o].map_ctx = ctx;
    }
    return o;
}

tl_status tl_op_map_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *x = tl__in(g, n, 0);
    const float *aux = n->nin > 1 ? tl__in(g, n, 1)->val : NULL;
    size_t len = (size_t)tl__rows(g, n) * (size_t)n->cols;
    for (size_t i = 0; i < len; i++) n->val[i] = n->map_fn(n->map_ctx, x->val[i], aux ? aux[i] : 0.0f);
    return TL_OK;
}
