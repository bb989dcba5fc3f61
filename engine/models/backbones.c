/* models/backbones.c — Shared-Bottom (also called HPS, hard parameter
 * sharing), OMoE, MMoE (Ma et al. KDD 2018), PLE (Tang et al. RecSys 2020,
 * CGC per level) as graph builders, the MLP/expert/gate builders every
 * backbone uses, and the table of backbones (the newer ones have a file
 * each: stem.c, adatt.c, cross_stitch.c, dselect_k.c). */
#include <stdio.h>

#include "builders.h"
#include "ops/ops.h"

static tl_node dense(tl_graph *g, tl_node x, int in, int out, tl_act act, const char *prefix)
{
    char wn[96], bn[96];
    snprintf(wn, sizeof wn, "%s.w", prefix);
    snprintf(bn, sizeof bn, "%s.b", prefix);
    tl_node w = tl_param(g, in, out, TL_INIT_XAVIER_UNIFORM, 0.0f, wn);
    tl_node b = tl_param(g, 1, out, TL_INIT_ZEROS, 0.0f, bn);
    return tl_linear(g, x, w, b, act);
}

static tl_node maybe_dropout(tl_graph *g, tl_node x, float p)
{
    return p > 0.0f ? tl_dropout(g, x, p) : x;
}

tl_node tl_build_mlp(tl_graph *g, tl_node x, const tl_mlp_spec *spec, const char *prefix)
{
    char name[96];
    for (int i = 0; i < spec->n && x != TL_NONE; i++) {
        snprintf(name, sizeof name, "%s.l%d", prefix, i + 1);
        x = dense(g, x, tl_node_cols(g, x), spec->units[i], TL_ACT_RELU, name);
        x = maybe_dropout(g, x, spec->dropout);
    }
    return x;
}

tl_node tl_build_experts(tl_graph *g, tl_node x, int count, const tl_mlp_spec *spec,
                         const char *prefix)
{
    char wn[96], bn[96];
    if (x == TL_NONE) return TL_NONE;
    int in = tl_node_cols(g, x);
    for (int i = 0; i < spec->n && x != TL_NONE; i++) {
        int out = spec->units[i];
        snprintf(wn, sizeof wn, "%s.l%d.w", prefix, i + 1);
        snprintf(bn, sizeof bn, "%s.l%d.b", prefix, i + 1);
        /* Layer 1: every expert reads the same x, so their weights sit side by
         * side in one [in x count*out] matrix — one GEMM for all experts. */
        if (i == 0) {
            tl_node w = tl_param(g, in, count * out, TL_INIT_XAVIER_UNIFORM, 0.0f, wn);
            tl_node b = tl_param(g, 1, count * out, TL_INIT_ZEROS, 0.0f, bn);
            x = tl_linear(g, x, w, b, TL_ACT_RELU);
        } else {
            tl_node w = tl_param(g, count * in, out, TL_INIT_XAVIER_UNIFORM, 0.0f, wn);
            tl_node b = tl_param(g, 1, count * out, TL_INIT_ZEROS, 0.0f, bn);
            x = tl_grouped_linear(g, x, w, b, count, TL_ACT_RELU);
        }
        x = maybe_dropout(g, x, spec->dropout);
        in = out;
    }
    return x;
}

tl_node tl_build_gate(tl_graph *g, tl_node x, int k, const char *prefix)
{
    if (x == TL_NONE) return TL_NONE;
    return tl_node_name(g, tl_softmax(g, dense(g, x, tl_node_cols(g, x), k, TL_ACT_NONE, prefix)), prefix);
}

static int last_units(const tl_mlp_spec *s, int in) { return s->n ? s->units[s->n - 1] : in; }

/* One CGC level. in[k] (k < K) are the task inputs and in[K] the shared
 * input; out gets the same layout (out[K] only when `last` is 0 and there
 * are shared experts). shared=0 or specific=0 (PLE's ablations) leave the
 * empty expert blocks out of every gate. Level 1
 * has one input for all, so all its experts form one block (one GEMM): task
 * k's experts, then the shared ones. The gates read their experts in place
 * (no slice or concat copies). */
static int cgc_level(tl_graph *g, const tl_backbone_spec *b, int K, int level, int same_input,
                     const tl_node *in, tl_node *out, int last)
{
    char name[96];
    int S = b->shared, P = b->specific;
    if (S < 0 || P < 0 || S + P < 1) {
        tl_fail(TL_ERR_ARG, "ple: a level needs at least one expert per task gate; got shared=%d, "
                            "specific=%d (shared=0 or specific=0 is allowed, not both)", S, P);
        return 0;
    }
    /* without shared experts no level has a shared path (in[K] is x at level 1 only) */
    int d = last_units(&b->expert, tl_node_cols(g, S || same_input ? in[K] : in[0]));
    /* Expert blocks: source node and first expert in it; task k's is
     * block k, the shared block is K. */
    tl_node src[TL_MAX_TASKS + 1];
    int first[TL_MAX_TASKS + 1], count[TL_MAX_TASKS + 1];
    if (same_input) {
        snprintf(name, sizeof name, "ple%d.experts", level);
        tl_node all = tl_build_experts(g, in[K], K * P + S, &b->expert, name);
        for (int k = 0; k <= K; k++) {
            src[k] = all;
            first[k] = k * P;
        }
    } else { /* a block of no experts (shared=0 or specific=0) is not built */
        for (int k = 0; k < K; k++) {
            snprintf(name, sizeof name, "ple%d.task%d.experts", level, k + 1);
            src[k] = P ? tl_build_experts(g, in[k], P, &b->expert, name) : TL_NONE;
            first[k] = 0;
        }
        snprintf(name, sizeof name, "ple%d.shared.experts", level);
        src[K] = S ? tl_build_experts(g, in[K], S, &b->expert, name) : TL_NONE;
        first[K] = 0;
    }
    for (int k = 0; k < K; k++) count[k] = P;
    count[K] = S;
    if (tl_graph_status(g) != TL_OK) return 0;
    /* Each gate mixes the non-empty blocks it reads: task k's gate its own
     * experts and the shared ones, the shared gate all of them. */
    tl_node bs[TL_MAX_TASKS + 1];
    int bf[TL_MAX_TASKS + 1], bc[TL_MAX_TASKS + 1], nb;
    for (int k = 0; k < K; k++) {
        int which[2] = {k, K}; /* own block, then the shared one */
        nb = 0;
        for (int i = 0; i < 2; i++)
            if (count[which[i]] > 0) {
                bs[nb] = src[which[i]];
                bf[nb] = first[which[i]];
                bc[nb++] = count[which[i]];
            }
        snprintf(name, sizeof name, "ple%d.gate%d", level, k + 1);
        out[k] = tl__gate_mix_blocks(g, tl_build_gate(g, in[k], P + S, name), nb, bs, bf, bc, d);
    }
    if (!last && S > 0) { /* with shared=0 no later level reads the shared path */
        snprintf(name, sizeof name, "ple%d.gate_shared", level);
        tl_node gate = tl_build_gate(g, in[K], K * P + S, name);
        nb = 0;
        for (int k = 0; k <= K; k++)
            if (count[k] > 0) {
                bs[nb] = src[k];
                bf[nb] = first[k];
                bc[nb++] = count[k];
            }
        out[K] = same_input ? tl_gate_mix(g, gate, src[K], K * P + S)
                            : tl__gate_mix_blocks(g, gate, nb, bs, bf, bc, d);
    } else {
        out[K] = TL_NONE;
    }
    return tl_graph_status(g) == TL_OK;
}

tl_node tl_build_last_weight(tl_graph *g)
{
    for (int i = tl_graph_param_count(g) - 1; i >= 0; i--) {
        const tl_param_info *p = tl_graph_param(g, i);
        if (p->rows > 1) return p->node;
    }
    return TL_NONE;
}

static int build_shared_bottom(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h)
{
    tl_node z = tl_build_mlp(g, io->x, &c->backbone.bottom, "bottom");
    for (int k = 0; k < c->n_tasks; k++) h[k] = z;
    return 1;
}

static int build_moe(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h)
{
    const tl_backbone_spec *b = &c->backbone;
    char name[64];
    int E = b->experts;
    tl_node x = io->x, ex = tl_build_experts(g, x, E, &b->expert, "experts");
    /* GradNorm's layer: the experts' last, which every task's gate reads (the
     * last weight built below is task K's own gate, which no other task reaches) */
    if (b->kind == TL_BACKBONE_MMOE && b->expert.n > 0) io->shared = tl_build_last_weight(g);
    if (b->kind == TL_BACKBONE_OMOE) {
        tl_node z = tl_gate_mix(g, tl_build_gate(g, x, E, "gate"), ex, E);
        for (int k = 0; k < c->n_tasks; k++) h[k] = z;
    } else {
        for (int k = 0; k < c->n_tasks; k++) {
            snprintf(name, sizeof name, "gate%d", k + 1);
            h[k] = tl_gate_mix(g, tl_build_gate(g, x, E, name), ex, E);
        }
    }
    return 1;
}

static int build_ple(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h)
{
    const tl_backbone_spec *b = &c->backbone;
    int K = c->n_tasks;
    tl_node in[TL_MAX_TASKS + 1], out[TL_MAX_TASKS + 1];
    for (int k = 0; k <= K; k++) in[k] = io->x;
    for (int l = 1; l <= b->levels; l++) {
        if (!cgc_level(g, b, K, l, l == 1, in, out, l == b->levels)) return 0;
        for (int k = 0; k <= K; k++) in[k] = out[k];
    }
    for (int k = 0; k < K; k++) h[k] = out[k];
    /* GradNorm's layer: the last level's shared experts' last layer, or, without
     * shared experts after level 1, level 1's block of every expert (both reached
     * by every task; the last weight built is task K's own gate) */
    if (b->expert.n > 0) {
        char name[96];
        if (b->shared > 0 && b->levels > 1)
            snprintf(name, sizeof name, "ple%d.shared.experts.l%d.w", b->levels, b->expert.n);
        else
            snprintf(name, sizeof name, "ple1.experts.l%d.w", b->expert.n);
        io->shared = tl_graph_find(g, name);
    }
    return 1;
}

/* ESMM and AITM: the towers read the shared embedding (model.c builds the
 * task interaction). */
static int build_input(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h)
{
    (void)g;
    for (int k = 0; k < c->n_tasks; k++) h[k] = io->x;
    return 1;
}

static const tl_backbone_build_fn builders[TL_BACKBONE_COUNT] = {
    [TL_BACKBONE_SHARED_BOTTOM] = build_shared_bottom,
    [TL_BACKBONE_OMOE] = build_moe,
    [TL_BACKBONE_MMOE] = build_moe,
    [TL_BACKBONE_PLE] = build_ple,
    [TL_BACKBONE_ESMM] = build_input,
    [TL_BACKBONE_AITM] = build_input,
    [TL_BACKBONE_STEM] = tl_build_stem,
    [TL_BACKBONE_ADATT] = tl_build_adatt,
    [TL_BACKBONE_CROSS_STITCH] = tl_build_cross_stitch,
    [TL_BACKBONE_DSELECT_K] = tl_build_dselect_k,
};

int tl_build_backbone(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h,
                      tl_node *last_shared)
{
    tl_backbone_kind kind = c->backbone.kind;
    io->extra = io->shared = TL_NONE;
    if ((unsigned)kind >= TL_BACKBONE_COUNT || !builders[kind]) {
        tl_fail(TL_ERR_ARG, "unknown backbone %d", (int)kind);
        return 0;
    }
    if (!builders[kind](g, c, io, h)) return 0;
    *last_shared = io->shared != TL_NONE ? io->shared : tl_build_last_weight(g);
    return tl_graph_status(g) == TL_OK;
}

tl_node tl_build_dense(tl_graph *g, tl_node x, int out, tl_act act, int bias, const char *prefix)
{
    char wn[128], bn[128];
    snprintf(wn, sizeof wn, "%s.w", prefix);
    snprintf(bn, sizeof bn, "%s.b", prefix);
    tl_node w = tl_param(g, tl_node_cols(g, x), out, TL_INIT_XAVIER_UNIFORM, 0.0f, wn);
    tl_node b = bias ? tl_param(g, 1, out, TL_INIT_ZEROS, 0.0f, bn) : TL_NONE;
    return tl_linear(g, x, w, b, act);
}
