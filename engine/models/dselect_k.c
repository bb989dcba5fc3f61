/* models/dselect_k.c — MMoE with DSelect-k gates (Hazimeh et al.,
 * "DSelect-k: Differentiable Selection in the Mixture of Experts with
 * Applications to Multi-Task Learning", NeurIPS 2021; after the authors'
 * google-research/dselect_k_moe, DSelectKGate with example-conditioned
 * routing).
 *
 * `experts` experts share the input. Task t's gate has k single-expert
 * selectors: each reads m = ceil(log2 experts) logits z = x W + b through
 * the smooth-step, and puts weight prod_j (bit j ? s_j : 1 - s_j) on each
 * expert (a distribution that becomes one-hot as the smooth-steps saturate);
 * the selectors are mixed by softmax(x W' + b'). Initialisation as the
 * authors': z's kernel and bias U(+-gamma/100), the selector logits' kernel
 * and bias U(+-0.05). The regulariser, summed over the rows of a batch as the
 * authors' code adds it: entropy x the selectors' entropy, and, when the
 * expert count is not a power of 2, 1 / (a selector's total weight). */
#include <stdio.h>

#include "builders.h"
#include "ops/ops.h"

int tl_build_dselect_k(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h)
{
    const tl_backbone_spec *b = &c->backbone;
    int E = b->experts, k = b->select_k, m = tl_dselect_bits(E), in = tl_node_cols(g, io->x);
    int penalised = b->entropy > 0.0f || (E & (E - 1)) != 0;
    char name[96];
    tl_node ex = tl_build_experts(g, io->x, E, &b->expert, "experts");
    io->shared = tl_build_last_weight(g); /* the experts' last layer: every task's gate reads it */
    for (int t = 0; t < c->n_tasks; t++) {
        snprintf(name, sizeof name, "dselect%d.z.w", t + 1);
        tl_node zw = tl_param(g, in, k * m, TL_INIT_UNIFORM, b->gamma / 100.0f, name);
        snprintf(name, sizeof name, "dselect%d.z.b", t + 1);
        tl_node zb = tl_param(g, 1, k * m, TL_INIT_UNIFORM, b->gamma / 100.0f, name);
        snprintf(name, sizeof name, "dselect%d.w.w", t + 1);
        tl_node ww = tl_param(g, in, k, TL_INIT_UNIFORM, 0.05f, name);
        snprintf(name, sizeof name, "dselect%d.w.b", t + 1);
        tl_node wb = tl_param(g, 1, k, TL_INIT_UNIFORM, 0.05f, name);
        tl_node s = tl_smooth_step(g, tl_linear(g, io->x, zw, zb, TL_ACT_NONE), b->gamma);
        tl_node r = tl_dselect_select(g, s, k, E);
        tl_node alpha = tl_softmax(g, tl_linear(g, io->x, ww, wb, TL_ACT_NONE));
        snprintf(name, sizeof name, "gate%d", t + 1);
        tl_node gate = tl_node_name(g, tl_gate_mix(g, alpha, r, k), name);
        h[t] = tl_gate_mix(g, gate, ex, E);
        if (penalised) {
            tl_node p = tl_sum(g, tl_dselect_penalty(g, r, k, E, b->entropy));
            io->extra = io->extra == TL_NONE ? p : tl_add(g, io->extra, p);
        }
    }
    return tl_graph_status(g) == TL_OK;
}
