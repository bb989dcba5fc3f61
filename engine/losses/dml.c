/* losses/dml.c — Deep Mutual Learning across task towers (Ren et al. 2023):
 * cross-task feature mining (CTFM, attention among the tasks' tower inputs)
 * and global knowledge distillation (GKD, a gated correction of each logit
 * from every tower). A strategy behind the hook table (hooks.h) that only
 * builds: no state changes during fit, no checkpoint section (its switches
 * are in the configuration). */
#include "dml.h"

#include <stdio.h>

#include "models/builders.h"

struct tl_dml_state {
    tl_node hcat; /* the concatenated tower inputs before CTFM */
};

static tl_node dropout_if(tl_graph *g, tl_node x, float p) { return p > 0.0f ? tl_dropout(g, x, p) : x; }

static tl_status build_ctfm(tl_dml_state *st, const tl_model_view *v, tl_node *h)
{
    tl_graph *g = v->g;
    int K = v->cfg->n_tasks, d = tl_node_cols(g, h[0]);
    for (int k = 1; k < K; k++)
        if (tl_node_cols(g, h[k]) != d)
            return tl_fail(TL_ERR_SHAPE, "dml: CTFM needs tower inputs of one width; task '%s' has "
                                         "%d, task '%s' has %d", v->cfg->tasks[0].name, d,
                           v->cfg->tasks[k].name, tl_node_cols(g, h[k]));
    tl_node hcat = tl_concat(g, K, h);
    tl_node E = tl_param(g, 1, K * d, TL_INIT_NORMAL, 0.01f, "dml.task_embedding");
    tl_node X = tl_add(g, hcat, E);
    tl_node W[3], B[3];
    static const char *names[3] = {"q", "k", "v"};
    char n[64];
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof n, "dml.ctfm.%s.w", names[i]);
        W[i] = tl_param(g, d, d, TL_INIT_XAVIER_UNIFORM, 0.0f, n);
        snprintf(n, sizeof n, "dml.ctfm.%s.b", names[i]);
        B[i] = tl_param(g, 1, d, TL_INIT_ZEROS, 0.0f, n);
    }
    /* Q reads the task's own input; K and V read it through a stop-gradient
     * (the _sg layers: no copy of X), so task k's loss reaches other towers'
     * inputs only through their queries. */
    tl_node Q = tl_token_linear(g, X, W[0], B[0], K, TL_ACT_RELU);
    tl_node (*kv)(tl_graph *, tl_node, tl_node, tl_node, int, tl_act) =
        v->cfg->dml.stop_grad ? tl_token_linear_sg : tl_token_linear;
    tl_node Kk = kv(g, X, W[1], B[1], K, TL_ACT_RELU);
    tl_node V = kv(g, X, W[2], B[2], K, TL_ACT_RELU);
    tl_node C = dropout_if(g, tl_attention(g, Q, Kk, V, K), v->cfg->dml.dropout);
    tl_node H = tl_add(g, hcat, C);
    for (int k = 0; k < K; k++) h[k] = tl_slice(g, H, k * d, d);
    st->hcat = hcat;
    return tl_graph_status(g) == TL_OK ? TL_OK : tl_fail(tl_graph_status(g), "%s", tl_graph_errmsg(g));
}

static tl_status build_gkd(const tl_model_view *v, const tl_node *t, tl_node *logit)
{
    tl_graph *g = v->g;
    int K = v->cfg->n_tasks, w = tl_node_cols(g, t[0]);
    char n[96];
    for (int k = 1; k < K; k++)
        if (tl_node_cols(g, t[k]) != w)
            return tl_fail(TL_ERR_SHAPE, "dml: GKD needs towers whose last layers have one width; "
                                         "task '%s' has %d, task '%s' has %d",
                           v->cfg->tasks[0].name, w, v->cfg->tasks[k].name, tl_node_cols(g, t[k]));
    unsigned only = v->cfg->dml.gkd_tasks;
    if (only >> K)
        return tl_fail(TL_ERR_ARG, "dml: gkd_tasks names task index %d, but the model has %d tasks",
                       31 - __builtin_clz(only), K);
    /* the global experience reads every tower, also with a subset of tasks */
    tl_node gexp = tl_stop_grad(g, tl_concat(g, K, t));
    for (int k = 0; k < K; k++) {
        if (only && !(only >> k & 1u)) continue; /* this task's logit stays as it is */
        snprintf(n, sizeof n, "dml.gkd.%s.u", v->cfg->tasks[k].name);
        tl_node u = dropout_if(g, tl_build_dense(g, gexp, w, TL_ACT_RELU, 1, n), v->cfg->dml.dropout);
        tl_node parts[2] = {t[k], u};
        tl_node a = tl_concat(g, 2, parts);
        for (int l = 1; l < v->cfg->dml.gkd_layers; l++) {
            snprintf(n, sizeof n, "dml.gkd.%s.gate%d", v->cfg->tasks[k].name, l);
            a = tl_build_dense(g, a, w, TL_ACT_RELU, 1, n);
        }
        snprintf(n, sizeof n, "dml.gkd.%s.gate", v->cfg->tasks[k].name);
        a = tl_build_dense(g, a, w, TL_ACT_SIGMOID, 1, n);
        snprintf(n, sizeof n, "dml.gkd.%s.v", v->cfg->tasks[k].name);
        logit[k] = tl_add(g, logit[k], tl_build_dense(g, tl_mul(g, a, u), 1, TL_ACT_NONE, 0, n));
    }
    return tl_graph_status(g) == TL_OK ? TL_OK : tl_fail(tl_graph_status(g), "%s", tl_graph_errmsg(g));
}

static tl_status build(void *st, const tl_model_view *v, tl_build_stage stage)
{
    const tl_dml_spec *dm = &v->cfg->dml;
    if (stage == TL_BUILD_TOWER_INPUTS) {
        ((tl_dml_state *)st)->hcat = TL_NONE;
        if (dm->ctfm) return build_ctfm(st, v, v->tower_in);
    }
    if (stage == TL_BUILD_LOGITS && dm->gkd) return build_gkd(v, v->tower_out, v->logit);
    return TL_OK;
}

tl_node tl_dml_tower_inputs(const tl_dml_state *d) { return d->hcat; }

const tl_hook tl_dml_hook = {
    .name = "dml",
    .size = sizeof(tl_dml_state),
    .build = build,
};
