/* ops/dselect.c — DSelect-k's gate parts (Hazimeh et al. NeurIPS 2021, after
 * the authors' google-research/dselect_k_moe): the smooth-step, the products
 * of binary codes that make each single-expert selector a distribution over
 * the experts, and the selectors' regulariser. Plain loops over rows: the
 * sizes are k selectors x experts per row. */
#include <math.h>
#include <string.h>

#include "dselect.h"
#include "ops.h"

#define DSELECT_EPS 1e-6f /* the authors' EPSILON inside the entropy's log */

int tl_dselect_bits(int experts)
{
    int m = 0;
    while ((1 << m) < experts) m++;
    return m;
}

/* ---- smooth-step ------------------------------------------------------------- */

tl_node tl_smooth_step(tl_graph *g, tl_node a, float gamma)
{
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    if (!(gamma > 0.0f && isfinite(gamma)))
        return tl__build_fail(g, TL_ERR_ARG, "smooth_step: gamma must be finite and > 0, got %g",
                              (double)gamma);
    const tl_nodedef *da = &g->nodes[a];
    tl_node o = tl__node_new(g, TL_OP_SMOOTH_STEP, da->batched, da->rows, da->cols, 1, &a);
    if (o != TL_NONE) g->nodes[o].f = gamma;
    return o;
}

tl_status tl_op_smooth_step_forward(tl_graph *g, tl_nodedef *n)
{
    const tl_nodedef *a = tl__in(g, n, 0);
    size_t len = (size_t)tl__rows(g, n) * (size_t)n->cols;
    float gm = n->f, lo = -gm / 2.0f, hi = gm / 2.0f, a3 = -2.0f / (gm * gm * gm), a1 = 3.0f / (2.0f * gm);
    for (size_t i = 0; i < len; i++) {
        float t = a->val[i];
        n->val[i] = t <= lo ? 0.0f : t >= hi ? 1.0f : a3 * t * t * t + a1 * t + 0.5f;
    }
    return TL_OK;
}

void tl_op_smooth_step_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0);
    if (!a->grad) return;
    size_t len = (size_t)tl__rows(g, n) * (size_t)n->cols;
    float gm = n->f, lo = -gm / 2.0f, hi = gm / 2.0f, a3 = -2.0f / (gm * gm * gm), a1 = 3.0f / (2.0f * gm);
    for (size_t i = 0; i < len; i++) {
        float t = a->val[i];
        if (t > lo && t < hi) a->grad[i] += n->grad[i] * (3.0f * a3 * t * t + a1);
    }
}

/* ---- selectors --------------------------------------------------------------- */

static int experts_ok(tl_graph *g, const char *op, tl_node a, int k, int experts, int cols)
{
    char s1[32];
    if (k < 1 || experts < 2 || experts > 1 << 16 || g->nodes[a].cols != cols) {
        tl__build_fail(g, TL_ERR_SHAPE, "%s: '%s' %s does not fit %d selectors over %d experts "
                                        "(experts >= 2)", op, g->nodes[a].name,
                       tl__shape(g, a, s1, sizeof s1), k, experts);
        return 0;
    }
    return 1;
}

tl_node tl_dselect_select(tl_graph *g, tl_node s, int k, int experts)
{
    if (!tl__valid(g, 1, &s)) return TL_NONE;
    if (!experts_ok(g, "dselect_select", s, k, experts, k * tl_dselect_bits(experts))) return TL_NONE;
    const tl_nodedef *ds = &g->nodes[s];
    tl_node o = tl__node_new(g, TL_OP_DSELECT_SELECT, ds->batched, ds->rows, k * experts, 1, &s);
    if (o != TL_NONE) g->nodes[o].k = k;
    return o;
}

/* Factor j of expert e's code product: s_j when bit j (0 = most significant
 * of m) of e is set, 1 - s_j otherwise. */
static inline float code_factor(const float *s, int e, int j, int m)
{
    return (e >> (m - 1 - j)) & 1 ? s[j] : 1.0f - s[j];
}

tl_status tl_op_dselect_select_forward(tl_graph *g, tl_nodedef *n)
{
    const tl_nodedef *a = tl__in(g, n, 0);
    int rows = tl__rows(g, n), k = n->k, E = n->cols / k, m = a->cols / k;
    for (int i = 0; i < rows; i++)
        for (int q = 0; q < k; q++) {
            const float *s = a->val + (size_t)i * a->cols + (size_t)q * m;
            float *r = n->val + (size_t)i * n->cols + (size_t)q * E;
            for (int e = 0; e < E; e++) {
                float p = 1.0f;
                for (int j = 0; j < m; j++) p *= code_factor(s, e, j, m);
                r[e] = p;
            }
        }
    return TL_OK;
}

/* ds_j += sum_e dr_e (+-1) prod_{j' != j} factor_j'. */
void tl_op_dselect_select_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0);
    if (!a->grad) return;
    int rows = tl__rows(g, n), k = n->k, E = n->cols / k, m = a->cols / k;
    for (int i = 0; i < rows; i++)
        for (int q = 0; q < k; q++) {
            const float *s = a->val + (size_t)i * a->cols + (size_t)q * m;
            const float *dr = n->grad + (size_t)i * n->cols + (size_t)q * E;
            float *dsv = a->grad + (size_t)i * a->cols + (size_t)q * m;
            for (int j = 0; j < m; j++) {
                float acc = 0.0f;
                for (int e = 0; e < E; e++) {
                    float p = (e >> (m - 1 - j)) & 1 ? 1.0f : -1.0f;
                    for (int l = 0; l < m; l++)
                        if (l != j) p *= code_factor(s, e, l, m);
                    acc += dr[e] * p;
                }
                dsv[j] += acc;
            }
        }
}

/* ---- regulariser ------------------------------------------------------------- */

tl_node tl_dselect_penalty(tl_graph *g, tl_node r, int k, int experts, float entropy)
{
    if (!tl__valid(g, 1, &r)) return TL_NONE;
    if (!experts_ok(g, "dselect_penalty", r, k, experts, k * experts)) return TL_NONE;
    if (!(entropy >= 0.0f && isfinite(entropy)))
        return tl__build_fail(g, TL_ERR_ARG, "dselect_penalty: entropy weight must be finite and >= 0, "
                                             "got %g", (double)entropy);
    const tl_nodedef *dr = &g->nodes[r];
    tl_node o = tl__node_new(g, TL_OP_DSELECT_PENALTY, dr->batched, dr->rows, 1, 1, &r);
    if (o == TL_NONE) return TL_NONE;
    g->nodes[o].k = k;
    g->nodes[o].f = entropy;
    return o;
}

static int power_of_2(int e) { return (e & (e - 1)) == 0; }

tl_status tl_op_dselect_penalty_forward(tl_graph *g, tl_nodedef *n)
{
    const tl_nodedef *a = tl__in(g, n, 0);
    int rows = tl__rows(g, n), k = n->k, E = a->cols / k, reach = !power_of_2(E);
    for (int i = 0; i < rows; i++) {
        const float *r = a->val + (size_t)i * a->cols;
        float h = 0.0f, inv = 0.0f;
        for (int q = 0; q < k; q++) {
            float sum = 0.0f;
            for (int e = 0; e < E; e++) {
                float p = r[(size_t)q * E + e];
                h -= p * logf(p + DSELECT_EPS);
                sum += p;
            }
            if (reach) inv += 1.0f / sum;
        }
        n->val[i] = n->f * h + inv;
    }
    return TL_OK;
}

void tl_op_dselect_penalty_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *a = tl__in(g, n, 0);
    if (!a->grad) return;
    int rows = tl__rows(g, n), k = n->k, E = a->cols / k, reach = !power_of_2(E);
    for (int i = 0; i < rows; i++) {
        const float *r = a->val + (size_t)i * a->cols;
        float *dr = a->grad + (size_t)i * a->cols, dy = n->grad[i];
        for (int q = 0; q < k; q++) {
            float sum = 0.0f;
            for (int e = 0; e < E; e++) sum += r[(size_t)q * E + e];
            float dinv = reach ? -1.0f / (sum * sum) : 0.0f;
            for (int e = 0; e < E; e++) {
                float p = r[(size_t)q * E + e];
                float dh = -(logf(p + DSELECT_EPS) + p / (p + DSELECT_EPS));
                dr[(size_t)q * E + e] += dy * (n->f * dh + dinv);
            }
        }
    }
}
