/* models/stem.c — STEM (Su et al., "STEM: Unleashing the Power of
 * Embeddings for Multi-task Recommendation", AAAI 2024; after the authors'
 * LiangcaiSu/STEM, models/STEM.py).
 *
 * Every task has an embedding table of its own besides the shared one.
 * Each level has `specific` experts per task, reading that task's input,
 * and `shared` experts reading the shared input. Task k's gate reads its
 * input plus the shared input and mixes every expert, but the other tasks'
 * experts through a stop-gradient: all experts forward, only task k's own
 * (and the shared ones) backward (the paper's All Forward Task-specific
 * Backward). The shared path's gate mixes every expert without stop-gradient.
 *
 * Each gate is `gate` hidden ReLU layers (the authors' default [128, 64];
 * ours none) and a softmax layer. Difference from the authors' code: with
 * numeric columns, each task's input is its own embeddings followed by the
 * numeric columns (the code has embeddings only), so a task gate's input sum
 * holds the numeric columns twice. */
#include <stdio.h>

#include "builders.h"
#include "ops/ops.h"

/* Task k's level-1 input: its own embeddings of every field (and the
 * numeric columns). */
static tl_node task_input(tl_graph *g, const tl_model_config *c, const tl_backbone_io *io, int k)
{
    char name[64];
    int64_t rows = 0;
    for (int f = 0; f < c->n_cat; f++) rows += c->vocab[f];
    snprintf(name, sizeof name, "stem.task%d.embedding", k + 1);
    tl_node table = tl_param(g, (int)rows, c->emb_dim, TL_INIT_UNIFORM, 0.05f, name);
    tl_node e = tl_embedding(g, table, io->ids, c->n_cat, c->vocab);
    if (io->num == TL_NONE) return e;
    tl_node parts[2] = {e, io->num};
    return tl_concat(g, 2, parts);
}

int tl_build_stem(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h)
{
    const tl_backbone_spec *b = &c->backbone;
    int K = c->n_tasks, P = b->specific, S = b->shared, E = K * P + S;
    int d = b->expert.units[b->expert.n - 1];
    char name[96];
    tl_node in[TL_MAX_TASKS + 1], src[TL_MAX_TASKS + 1], sg[TL_MAX_TASKS];
    for (int k = 0; k < K; k++) in[k] = task_input(g, c, io, k);
    in[K] = io->x;
    for (int l = 1; l <= b->levels; l++) {
        int last = l == b->levels;
        for (int k = 0; k < K; k++) {
            snprintf(name, sizeof name, "stem%d.task%d.experts", l, k + 1);
            src[k] = tl_build_experts(g, in[k], P, &b->expert, name);
            sg[k] = K > 1 ? tl_stop_grad(g, src[k]) : TL_NONE;
        }
        snprintf(name, sizeof name, "stem%d.shared.experts", l);
        src[K] = S ? tl_build_experts(g, in[K], S, &b->expert, name) : TL_NONE;
        if (tl_graph_status(g) != TL_OK) return 0;
        /* GradNorm's layer: the shared experts' last, which every task's gate reads
         * with gradient (task experts pass only their own task's); without shared
         * experts no dense layer is shared and the default (the last gate) stays */
        if (S) io->shared = tl_build_last_weight(g);
        /* expert blocks in gate order: task 1's .. task K's, then the shared */
        tl_node bs[TL_MAX_TASKS + 1];
        int first[TL_MAX_TASKS + 1] = {0}, count[TL_MAX_TASKS + 1];
        int nb = K + (S > 0);
        for (int j = 0; j <= K; j++) count[j] = j < K ? P : S;
        tl_node out[TL_MAX_TASKS + 1];
        for (int k = 0; k < K; k++) {
            for (int j = 0; j < nb; j++) bs[j] = j == k || j == K ? src[j] : sg[j];
            snprintf(name, sizeof name, "stem%d.gate%d.mlp", l, k + 1);
            tl_node gin = tl_build_mlp(g, tl_add(g, in[k], in[K]), &b->gate, name);
            snprintf(name, sizeof name, "stem%d.gate%d", l, k + 1);
            tl_node gate = tl_build_gate(g, gin, E, name);
            out[k] = tl__gate_mix_blocks(g, gate, nb, bs, first, count, d);
        }
        if (!last) { /* the shared path: every expert, with gradient */
            snprintf(name, sizeof name, "stem%d.gate_shared.mlp", l);
            tl_node gin = tl_build_mlp(g, in[K], &b->gate, name);
            snprintf(name, sizeof name, "stem%d.gate_shared", l);
            tl_node gate = tl_build_gate(g, gin, E, name);
            out[K] = tl__gate_mix_blocks(g, gate, nb, src, first, count, d);
        }
        if (tl_graph_status(g) != TL_OK) return 0;
        for (int k = 0; k <= K; k++) in[k] = out[k];
    }
    for (int k = 0; k < K; k++) h[k] = in[k];
    return 1;
}
