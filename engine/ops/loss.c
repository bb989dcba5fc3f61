/* ops/loss.c — losses reducing a batch to 1 x 1: BCE on logits, BCE on
 * probabilities, MSE (each with optional per-row weights) and the Bernoulli
 * KL divergence between two predicted probabilities. Per-row terms are summed
 * in double. */
#include <math.h>

#include "loss.h"
#include "ops.h"

#define TL_PROB_EPS 1e-7f

static tl_node loss_node(tl_graph *g, tl_op op, const char *name, tl_node a, tl_node b,
                         tl_node w)
{
    tl_node in[3] = {a, b, w};
    int nin = w == TL_NONE ? 2 : 3;
    char s1[32], s2[32], s3[32];
    if (!tl__valid(g, nin, in)) return TL_NONE;
    tl_nodedef *da = &g->nodes[a], *db = &g->nodes[b];
    if (da->cols != 1 || db->cols != 1 || da->batched != db->batched ||
        (!da->batched && da->rows != db->rows))
        return tl__build_fail(g, TL_ERR_SHAPE, "%s: '%s' %s and '%s' %s must both be [rows x 1]",
                              name, da->name, tl__shape(g, a, s1, sizeof s1), db->name,
                              tl__shape(g, b, s2, sizeof s2));
    if (w != TL_NONE) {
        tl_nodedef *dw = &g->nodes[w];
        if (dw->cols != 1 || dw->batched != da->batched || (!da->batched && dw->rows != da->rows))
            return tl__build_fail(g, TL_ERR_SHAPE, "%s: weights '%s' %s must be [rows x 1]", name,
                                  dw->name, tl__shape(g, w, s3, sizeof s3));
    }
    return tl__node_new(g, op, 0, 1, 1, nin, in);
}

tl_node tl_bce_logits(tl_graph *g, tl_node logits, tl_node target, tl_node weight)
{
    return loss_node(g, TL_OP_BCE_LOGITS, "bce_logits", logits, target, weight);
}

tl_node tl_bce_prob(tl_graph *g, tl_node prob, tl_node target, tl_node weight)
{
    return loss_node(g, TL_OP_BCE_PROB, "bce_prob", prob, target, weight);
}

tl_node tl_mse(tl_graph *g, tl_node pred, tl_node target, tl_node weight)
{
    return loss_node(g, TL_OP_MSE, "mse", pred, target, weight);
}

tl_node tl_bernoulli_kl(tl_graph *g, tl_node p, tl_node q)
{
    return loss_node(g, TL_OP_BERNOULLI_KL, "bernoulli_kl", p, q, TL_NONE);
}

static inline float clampp(float p)
{
    return p < TL_PROB_EPS ? TL_PROB_EPS : (p > 1.0f - TL_PROB_EPS ? 1.0f - TL_PROB_EPS : p);
}

static double row_loss(tl_op op, float a, float b)
{
    switch (op) {
    case TL_OP_BCE_LOGITS: /* max(z,0) - z y + log(1 + e^-|z|) */
        return (double)(a > 0.0f ? a : 0.0f) - (double)a * (double)b + log1p(exp(-fabs((double)a)));
    case TL_OP_BCE_PROB: {
        double p = clampp(a);
        return -((double)b * log(p) + (1.0 - (double)b) * log(1.0 - p));
    }
    case TL_OP_MSE:
        return ((double)a - (double)b) * ((double)a - (double)b);
    default: { /* KL(Bern(p) || Bern(q)) */
        double p = clampp(a), q = clampp(b);
        return p * log(p / q) + (1.0 - p) * log((1.0 - p) / (1.0 - q));
    }
    }
}

tl_status tl_op_loss_forward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *na = tl__in(g, n, 0), *nb = tl__in(g, n, 1);
    const float *w = n->nin > 2 ? tl__in(g, n, 2)->val : NULL;
    int rows = tl__rows(g, na);
    double s = 0.0, ws = 0.0;
    for (int i = 0; i < rows; i++) {
        double wi = w ? (double)w[i] : 1.0;
        if (wi == 0.0) continue; /* masked rows add nothing, even if their terms are not finite */
        s += wi * row_loss(n->op, na->val[i], nb->val[i]);
        ws += wi;
    }
    if (n->f > 0.0f) ws = (double)n->f; /* tl_loss_set_denominator */
    n->scratch[0] = (float)ws;
    n->val[0] = ws > 0.0 ? (float)(s / ws) : 0.0f;
    return TL_OK;
}

tl_status tl_loss_set_denominator(tl_graph *g, tl_node loss, float den)
{
    tl_nodedef *n = loss >= 0 && loss < g->n_nodes ? &g->nodes[loss] : NULL;
    if (!n || (n->op != TL_OP_BCE_LOGITS && n->op != TL_OP_BCE_PROB && n->op != TL_OP_MSE &&
               n->op != TL_OP_BERNOULLI_KL))
        return tl_fail(TL_ERR_ARG, "loss denominator: node %d is not a loss", (int)loss);
    n->f = den > 0.0f ? den : 0.0f;
    return TL_OK;
}

void tl_op_loss_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *na = tl__in(g, n, 0), *nb = tl__in(g, n, 1);
    tl_nodedef *nw = n->nin > 2 ? tl__in(g, n, 2) : NULL;
    const float *w = nw ? nw->val : NULL;
    int rows = tl__rows(g, na);
    float ws = n->scratch[0];
    if (ws <= 0.0f) return;
    if (na->grad) tl__grad_acc(g, na);
    if (nb->grad) tl__grad_acc(g, nb);
    if (nw && nw->grad) tl__grad_acc(g, nw);
    float scale = n->grad[0] / ws;
    if (nw && nw->grad) { /* d(sum w l / sum w)/dw_i = (l_i - loss) / sum w */
        for (int i = 0; i < rows; i++) {
            double li = w[i] == 0.0f ? (double)n->val[0] : row_loss(n->op, na->val[i], nb->val[i]);
            nw->grad[i] += (float)((li - (double)n->val[0]) * (double)scale);
        }
    }
    for (int i = 0; i < rows; i++) {
        float wi = (w ? w[i] : 1.0f) * scale;
        if (wi == 0.0f) continue;
        float a = na->val[i], b = nb->val[i], da, db;
        switch (n->op) {
        case TL_OP_BCE_LOGITS: {
            float s = a >= 0.0f ? 1.0f / (1.0f + expf(-a)) : expf(a) / (1.0f + expf(a));
            da = s - b;
            db = -a;
            break;
        }
        case TL_OP_BCE_PROB: {
            float p = clampp(a);
            da = (p - b) / (p * (1.0f - p));
            db = -(logf(p) - logf(1.0f - p));
            break;
        }
        case TL_OP_MSE:
            da = 2.0f * (a - b);
            db = -da;
            break;
        default: {
            float p = clampp(a), q = clampp(b);
            da = logf(p / q) - logf((1.0f - p) / (1.0f - q));
            db = -p / q + (1.0f - p) / (1.0f - q);
            break;
        }
        }
        if (na->grad) na->grad[i] += wi * da;
        if (nb->grad) nb->grad[i] += wi * db;
    }
}
