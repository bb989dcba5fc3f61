/* losses/weighting.c — fixed, uncertainty, DWA, GradNorm and PCGrad loss
 * weighting over the per-task losses of a model graph. */
#include "weighting.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

tl_status tl_weighting_build(tl_model *m)
{
    tl_graph *g = m->g;
    int K = m->cfg.n_tasks;
    char name[96];
    tl_node total = TL_NONE;
    for (int k = 0; k < K; k++) {
        const char *t = m->cfg.tasks[k].name;
        snprintf(name, sizeof name, "weight.%s", t);
        m->coef[k] = tl_scalar(g, m->cfg.tasks[k].weight, name);
        m->logvar[k] = TL_NONE;
        m->factor[k] = 1.0f;
        tl_node term = m->objective[k];
        if (m->cfg.weighting == TL_WEIGHTING_UNCERTAINTY) {
            snprintf(name, sizeof name, "logvar.%s", t);
            tl_node s = m->logvar[k] = tl_param(g, 1, 1, TL_INIT_ZEROS, 0.0f, name);
            tl_node prec = tl_exp(g, tl_scale(g, s, -1.0f));
            term = tl_add(g, tl_scale(g, tl_mul(g, term, prec), 0.5f), tl_scale(g, s, 0.5f));
        }
        term = tl_mul(g, term, m->coef[k]);
        total = total == TL_NONE ? term : tl_add(g, total, term);
    }
    if (m->extra != TL_NONE) total = tl_add(g, total, tl_mul(g, m->extra, m->extra_coef));
    m->total = tl_node_name(g, total, "total_loss");
    return TL_OK;
}

tl_status tl_weighting_init(tl_model *m)
{
    size_t pf;
    tl_graph_params(m->g, &pf);
    if (m->cfg.weighting == TL_WEIGHTING_PCGRAD) {
        m->task_grads = tl_malloc_aligned((size_t)m->cfg.n_tasks * pf * sizeof(float),
                                          "per-task gradients");
        if (!m->task_grads) return TL_ERR_NOMEM;
    }
    if (m->cfg.weighting == TL_WEIGHTING_GRADNORM) {
        int pi = tl_graph_param_index(m->g, m->last_shared);
        if (pi < 0) return tl_fail(TL_ERR_ARG, "gradnorm: the model has no shared layer to measure");
        const tl_param_info *p = tl_graph_param(m->g, pi);
        m->w_grad_before = tl_malloc_aligned((size_t)p->rows * (size_t)p->cols * sizeof(float),
                                             "gradnorm buffer");
        if (!m->w_grad_before) return TL_ERR_NOMEM;
    }
    tl_weighting_apply(m);
    return TL_OK;
}

void tl_weighting_free(tl_model *m)
{
    tl_free_aligned(m->task_grads);
    tl_free_aligned(m->w_grad_before);
}

void tl_weighting_apply(tl_model *m)
{
    for (int k = 0; k < m->cfg.n_tasks; k++)
        tl_graph_set_scalar(m->g, m->coef[k], m->cfg.tasks[k].weight * m->factor[k]);
    tl_graph_set_scalar(m->g, m->extra_coef, 1.0f);
}

float tl_weighting_effective(const tl_model *m, int k)
{
    float w = m->cfg.tasks[k].weight * m->factor[k];
    if (m->logvar[k] != TL_NONE && tl_graph_value(m->g, m->logvar[k]))
        w *= 0.5f * expf(-tl_graph_value(m->g, m->logvar[k])[0]);
    return w;
}

void tl_weighting_epoch_start(tl_model *m)
{
    if (m->cfg.weighting != TL_WEIGHTING_DWA || m->dwa_epochs < 2) return;
    int K = m->cfg.n_tasks;
    double r[TL_MAX_TASKS], mx = -INFINITY, z = 0.0, T = m->cfg.dwa_temperature;
    for (int k = 0; k < K; k++) {
        r[k] = m->dwa_hist[1][k] / (m->dwa_hist[0][k] > 0.0 ? m->dwa_hist[0][k] : 1e-12);
        mx = r[k] / T > mx ? r[k] / T : mx;
    }
    for (int k = 0; k < K; k++) z += exp(r[k] / T - mx);
    for (int k = 0; k < K; k++) m->factor[k] = (float)(K * exp(r[k] / T - mx) / z);
    tl_weighting_apply(m);
}

void tl_weighting_epoch_end(tl_model *m, const double *epoch_loss)
{
    if (m->cfg.weighting != TL_WEIGHTING_DWA) return;
    memcpy(m->dwa_hist[0], m->dwa_hist[1], sizeof m->dwa_hist[0]);
    for (int k = 0; k < m->cfg.n_tasks; k++) m->dwa_hist[1][k] = epoch_loss[k];
    m->dwa_epochs++;
}

/* Backward of task k's term alone (the AITM constraint rides with the last
 * task), accumulating into the parameter gradients. */
static tl_status task_pass(tl_model *m, int k)
{
    int K = m->cfg.n_tasks;
    for (int j = 0; j < K; j++)
        tl_graph_set_scalar(m->g, m->coef[j], j == k ? m->cfg.tasks[j].weight * m->factor[j] : 0.0f);
    tl_graph_set_scalar(m->g, m->extra_coef, k == K - 1 ? 1.0f : 0.0f);
    tl_status s = tl_graph_backward_run(m->g);
    tl_weighting_apply(m);
    return s;
}

static tl_status gradnorm_backward(tl_model *m, const float *task_loss)
{
    int K = m->cfg.n_tasks;
    const tl_param_info *p = tl_graph_param(m->g, tl_graph_param_index(m->g, m->last_shared));
    size_t len = (size_t)p->rows * (size_t)p->cols;
    float *gw = tl_graph_grads(m->g, NULL) + p->offset;
    double norm[TL_MAX_TASKS];
    for (int k = 0; k < K; k++) {
        memcpy(m->w_grad_before, gw, len * sizeof(float));
        tl_status s = task_pass(m, k);
        if (s != TL_OK) return s;
        double ss = 0.0;
        for (size_t i = 0; i < len; i++) {
            double d = (double)gw[i] - (double)m->w_grad_before[i];
            ss += d * d;
        }
        norm[k] = sqrt(ss); /* || grad_W (w_k g_k L_k) || */
    }
    if (!m->gn_have_initial) {
        for (int k = 0; k < K; k++) m->gn_initial[k] = task_loss[k] > 0.0f ? (double)task_loss[k] : 1e-12;
        m->gn_have_initial = 1;
    }
    double ratio[TL_MAX_TASKS], mean_ratio = 0.0, mean_norm = 0.0;
    for (int k = 0; k < K; k++) {
        ratio[k] = (double)task_loss[k] / m->gn_initial[k];
        mean_ratio += ratio[k] / K;
        mean_norm += norm[k] / K;
    }
    /* d/dg_k sum_j |G_j - target_j| with targets held constant; G_k is linear
     * in g_k, so dG_k/dg_k = G_k / g_k. */
    float lr = tl_optim_get_config(m->opt)->lr, sum = 0.0f;
    for (int k = 0; k < K; k++) {
        double target = mean_norm * pow(ratio[k] / (mean_ratio > 0.0 ? mean_ratio : 1.0),
                                        (double)m->cfg.gradnorm_alpha);
        double gk = m->factor[k] > 0.0f ? norm[k] / (double)m->factor[k] : 0.0;
        double grad = (norm[k] > target ? 1.0 : -1.0) * gk;
        float f = (float)((double)m->factor[k] - (double)lr * grad);
        m->factor[k] = f > 1e-3f ? f : 1e-3f;
        sum += m->factor[k];
    }
    for (int k = 0; k < K; k++) m->factor[k] *= (float)K / sum;
    tl_weighting_apply(m);
    return TL_OK;
}

static tl_status pcgrad_backward(tl_model *m)
{
    int K = m->cfg.n_tasks;
    size_t pf;
    float *grads = tl_graph_grads(m->g, &pf);
    /* Shared parameters are the first n_shared_params: one contiguous span. */
    size_t shared_end = 0;
    if (m->n_shared_params > 0) {
        const tl_param_info *last = tl_graph_param(m->g, m->n_shared_params - 1);
        shared_end = last->offset + (size_t)last->rows * (size_t)last->cols;
    }
    for (int k = 0; k < K; k++) {
        tl_status s = task_pass(m, k);
        if (s != TL_OK) return s;
        memcpy(m->task_grads + (size_t)k * pf, grads, pf * sizeof(float));
        if (k + 1 < K) memset(grads, 0, pf * sizeof(float)); /* keeps the touched-row lists */
    }
    /* Project each task's shared gradient off the others it conflicts with,
     * in a random order per step (as in the paper), using the originals. */
    float *out = grads;
    memset(out, 0, pf * sizeof(float));
    for (int i = 0; i < K; i++) {
        const float *gi = m->task_grads + (size_t)i * pf;
        int perm[TL_MAX_TASKS];
        for (int j = 0; j < K; j++) perm[j] = j;
        for (int j = K - 1; j > 0; j--) {
            int r = (int)tl_rng_below(&m->rng, (uint64_t)j + 1), t = perm[j];
            perm[j] = perm[r];
            perm[r] = t;
        }
        /* work on a copy of g_i in `out` accumulation: coefficients first */
        double coef[TL_MAX_TASKS] = {0};
        double dots_ii[TL_MAX_TASKS];
        for (int a = 0; a < K; a++) {
            const float *ga = m->task_grads + (size_t)a * pf;
            double s = 0.0;
            for (size_t x = 0; x < shared_end; x++) s += (double)ga[x] * (double)ga[x];
            dots_ii[a] = s;
        }
        /* g_i' = g_i - sum over conflicting j (in order) of (g_i'.g_j / |g_j|^2) g_j;
         * g_i'.g_j expands to g_i.g_j - sum_prev coef_p g_p.g_j */
        for (int q = 0; q < K; q++) {
            int j = perm[q];
            if (j == i || dots_ii[j] <= 0.0) continue;
            const float *gj = m->task_grads + (size_t)j * pf;
            double d = 0.0;
            for (size_t x = 0; x < shared_end; x++) d += (double)gi[x] * (double)gj[x];
            for (int p = 0; p < K; p++) {
                if (coef[p] == 0.0) continue;
                const float *gp = m->task_grads + (size_t)p * pf;
                double dp = 0.0;
                for (size_t x = 0; x < shared_end; x++) dp += (double)gp[x] * (double)gj[x];
                d -= coef[p] * dp;
            }
            if (d < 0.0) coef[j] += d / dots_ii[j];
        }
        for (size_t x = 0; x < pf; x++) out[x] += gi[x];
        for (int j = 0; j < K; j++) {
            if (coef[j] == 0.0) continue;
            const float *gj = m->task_grads + (size_t)j * pf;
            float c = (float)coef[j];
            for (size_t x = 0; x < shared_end; x++) out[x] -= c * gj[x];
        }
    }
    return TL_OK;
}

tl_status tl_weighting_backward(tl_model *m, const float *task_loss)
{
    switch (m->cfg.weighting) {
    case TL_WEIGHTING_GRADNORM:
        return gradnorm_backward(m, task_loss);
    case TL_WEIGHTING_PCGRAD:
        return pcgrad_backward(m);
    default:
        return tl_graph_backward_run(m->g);
    }
}
