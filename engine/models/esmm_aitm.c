/* models/esmm_aitm.c — the graph parts of the two backbones whose tasks are
 * linked in a chain: ESMM's pCTCVR = pCTR x pCVR, and AITM's adaptive
 * information transfer between consecutive towers with its label
 * constraint. model.c calls them while building (models/builders.h). */
#include <math.h>
#include <stdio.h>

#include "builders.h"

/* AITM's adaptive information transfer: attention between the transferred
 * vector p (from the previous task) and this task's tower output q. */
static tl_node ait_module(tl_graph *g, tl_node p, tl_node q, int d, const char *prefix)
{
    char name[128];
    tl_node w[3];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s.h%d.w", prefix, i + 1);
        w[i] = tl_param(g, d, d, TL_INIT_XAVIER_UNIFORM, 0.0f, name);
    }
    tl_node v_p = tl_matmul(g, p, w[0]), v_q = tl_matmul(g, q, w[0]);
    float scale = 1.0f / sqrtf((float)d);
    tl_node s_p = tl_scale(g, tl_row_sum(g, tl_mul(g, tl_matmul(g, p, w[1]), tl_matmul(g, p, w[2]))), scale);
    tl_node s_q = tl_scale(g, tl_row_sum(g, tl_mul(g, tl_matmul(g, q, w[1]), tl_matmul(g, q, w[2]))), scale);
    tl_node sc[2] = {s_p, s_q}, vs[2] = {v_p, v_q};
    return tl_gate_mix(g, tl_softmax(g, tl_concat(g, 2, sc)), tl_concat(g, 2, vs), 2);
}

tl_node tl_build_aitm_transfer(tl_graph *g, tl_node z_prev, tl_node t, int d, int k)
{
    char name[96];
    snprintf(name, sizeof name, "aitm.transfer%d", k);
    tl_node w = tl_param(g, d, d, TL_INIT_XAVIER_UNIFORM, 0.0f, name);
    snprintf(name, sizeof name, "aitm.transfer%d.b", k);
    tl_node b = tl_param(g, 1, d, TL_INIT_ZEROS, 0.0f, name);
    tl_node p = tl_linear(g, z_prev, w, b, TL_ACT_RELU);
    snprintf(name, sizeof name, "aitm.ait%d", k);
    return ait_module(g, p, t, d, name);
}

tl_node tl_build_aitm_constraint(tl_graph *g, const tl_node *pred, int K, float constraint, tl_node *coef)
{
    tl_node sum = TL_NONE;
    for (int k = 1; k < K; k++) {
        tl_node v = tl_mean(g, tl_relu(g, tl_sub(g, pred[k], pred[k - 1])));
        sum = sum == TL_NONE ? v : tl_add(g, sum, v);
    }
    *coef = tl_scalar(g, constraint, "aitm.constraint");
    return tl_mul(g, sum, *coef);
}

tl_node tl_build_esmm_ctcvr(tl_graph *g, tl_node pctr, tl_node pcvr, tl_node label, tl_node weight,
                            tl_node *pctcvr)
{
    *pctcvr = tl_mul(g, pctr, pcvr);
    return tl_bce_prob(g, *pctcvr, label, weight);
}
