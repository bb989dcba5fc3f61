/* models/adatt.c — AdaTT (Li et al., "AdaTT: Adaptive Task-to-Task Fusion
 * Network for Multitask Recommendations", KDD 2023; after the authors'
 * facebookresearch/AdaTT, AdaTTWSharedExps and AdaTTSp in mtl_lib.py).
 *
 * Each level has `specific` experts per task and `shared` experts; at level
 * 1 all read the input, later task k's experts read task k's output of the
 * level below and the shared experts the shared output. Every fusion unit
 * (each task, and the shared one below the last level) mixes *all* experts
 * with a softmax gate on its own input, plus a residual: a learned linear
 * combination of its own experts, initialised U(+-sqrt(1/n)) for n own
 * experts; when every unit has one expert, the residual is that expert's
 * output unweighted, as in the authors' code. shared=0 is AdaTT-sp. */
#include <math.h>
#include <stdio.h>

#include "builders.h"
#include "ops/ops.h"

int tl_build_adatt(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h)
{
    const tl_backbone_spec *b = &c->backbone;
    int K = c->n_tasks, P = b->specific, S = b->shared, E = K * P + S;
    int d = b->expert.units[b->expert.n - 1], unit = P == 1 && S <= 1;
    char name[96];
    tl_node in[TL_MAX_TASKS + 1];
    for (int k = 0; k <= K; k++) in[k] = io->x;
    for (int l = 1; l <= b->levels; l++) {
        int modules = l == b->levels || S == 0 ? K : K + 1;
        tl_node src[TL_MAX_TASKS + 1];
        int first[TL_MAX_TASKS + 1], count[TL_MAX_TASKS + 1];
        for (int k = 0; k <= K; k++) count[k] = k < K ? P : S;
        if (l == 1) { /* one input for all: one block, one GEMM (task 1's experts first) */
            snprintf(name, sizeof name, "adatt1.experts");
            tl_node all = tl_build_experts(g, io->x, E, &b->expert, name);
            for (int k = 0; k <= K; k++) {
                src[k] = all;
                first[k] = k * P;
            }
        } else {
            for (int k = 0; k < K; k++) {
                snprintf(name, sizeof name, "adatt%d.task%d.experts", l, k + 1);
                src[k] = tl_build_experts(g, in[k], P, &b->expert, name);
                first[k] = 0;
            }
            snprintf(name, sizeof name, "adatt%d.shared.experts", l);
            src[K] = S ? tl_build_experts(g, in[K], S, &b->expert, name) : TL_NONE;
            first[K] = 0;
        }
        if (tl_graph_status(g) != TL_OK) return 0;
        io->shared = tl_build_last_weight(g); /* GradNorm's: every unit's gate reads every expert */
        int nb = l == 1 ? 1 : K + (S > 0);
        int bfirst[TL_MAX_TASKS + 1], bcount[TL_MAX_TASKS + 1];
        if (l == 1) {
            bfirst[0] = 0;
            bcount[0] = E;
        } else {
            for (int j = 0; j < nb; j++) {
                bfirst[j] = 0;
                bcount[j] = count[j];
            }
        }
        tl_node out[TL_MAX_TASKS + 1];
        for (int i = 0; i < modules; i++) {
            int u = i < K ? i : K; /* the unit's own expert block */
            if (i < K)
                snprintf(name, sizeof name, "adatt%d.gate%d", l, i + 1);
            else
                snprintf(name, sizeof name, "adatt%d.gate_shared", l);
            tl_node gate = tl_build_gate(g, in[u], E, name);
            tl_node fused = tl__gate_mix_blocks(g, gate, nb, src, bfirst, bcount, d);
            tl_node res;
            if (unit) {
                res = tl_node_cols(g, src[u]) == d ? src[u] : tl_slice(g, src[u], first[u] * d, d);
            } else {
                if (i < K)
                    snprintf(name, sizeof name, "adatt%d.self%d", l, i + 1);
                else
                    snprintf(name, sizeof name, "adatt%d.self_shared", l);
                tl_node w = tl_param(g, 1, count[u], TL_INIT_UNIFORM, sqrtf(1.0f / (float)count[u]), name);
                res = tl_block_mix(g, src[u], w, first[u], d, 0.0f);
            }
            out[i] = tl_add(g, fused, res);
        }
        if (tl_graph_status(g) != TL_OK) return 0;
        for (int i = 0; i < modules; i++) in[i] = out[i];
    }
    for (int k = 0; k < K; k++) h[k] = in[k];
    return 1;
}
