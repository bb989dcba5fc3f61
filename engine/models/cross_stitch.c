/* models/cross_stitch.c — cross-stitch networks (Misra et al., "Cross-stitch
 * Networks for Multi-task Learning", CVPR 2016).
 *
 * Every task has a column of `bottom` layers; after each layer a
 * cross-stitch unit replaces task k's activations by sum_j a_kj x_j with a
 * learned T x T matrix per layer. The paper initialises a_kk = 0.9 and the
 * others 0.1 for two tasks; for T tasks the others get 0.1 / (T - 1), so
 * every row sums to 1. The parameter holds a - 0.9' I (0.9' = 0.9 - 0.1 /
 * (T - 1)), the diagonal offset added by the op, so it starts constant. One
 * task has no units (a plain MLP). Layer 1's columns all read the input: one
 * GEMM; later layers are one grouped GEMM. */
#include <stdio.h>

#include "builders.h"
#include "ops/ops.h"

int tl_build_cross_stitch(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h)
{
    const tl_mlp_spec *s = &c->backbone.bottom;
    int K = c->n_tasks, in = tl_node_cols(g, io->x);
    char wn[96], bn[96];
    tl_node x = io->x;
    float other = K > 1 ? 0.1f / (float)(K - 1) : 0.0f;
    for (int i = 0; i < s->n; i++) {
        int out = s->units[i];
        snprintf(wn, sizeof wn, "cross_stitch.l%d.w", i + 1);
        snprintf(bn, sizeof bn, "cross_stitch.l%d.b", i + 1);
        tl_node w = tl_param(g, i == 0 ? in : K * in, out * (i == 0 ? K : 1), TL_INIT_XAVIER_UNIFORM,
                             0.0f, wn);
        tl_node bias = tl_param(g, 1, K * out, TL_INIT_ZEROS, 0.0f, bn);
        x = i == 0 ? tl_linear(g, x, w, bias, TL_ACT_RELU) : tl_grouped_linear(g, x, w, bias, K, TL_ACT_RELU);
        if (s->dropout > 0.0f) x = tl_dropout(g, x, s->dropout);
        if (K > 1) {
            snprintf(wn, sizeof wn, "cross_stitch.unit%d", i + 1);
            tl_node a = tl_param(g, K, K, TL_INIT_CONSTANT, other, wn);
            x = tl_block_mix(g, x, a, 0, out, 0.9f - other);
        }
        in = out;
    }
    if (tl_graph_status(g) != TL_OK) return 0;
    for (int k = 0; k < K; k++) h[k] = K > 1 ? tl_slice(g, x, k * in, in) : x;
    return tl_graph_status(g) == TL_OK;
}
