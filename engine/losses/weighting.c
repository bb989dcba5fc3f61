/* losses/weighting.c — fixed, uncertainty, DWA, GradNorm and PCGrad loss
 * weighting over the per-task losses of a model graph: a strategy behind the
 * hook table (hooks.h), with its state here and its checkpoint section WGHT. */
#include "weighting.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct tl_weighting_state {
    tl_node coef[TL_MAX_TASKS];    /* scalar multiplying task k's loss term */
    tl_node logvar[TL_MAX_TASKS];  /* uncertainty weighting: log sigma^2 per task */
    float factor[TL_MAX_TASKS];    /* strategy multiplier (DWA, GradNorm), 1 otherwise */
    double gn_initial[TL_MAX_TASKS];
    int gn_have_initial;
    double dwa_hist[2][TL_MAX_TASKS];
    int dwa_epochs;
    float *task_grads;             /* PCGrad: n_tasks x param floats */
    float *w_grad_before;          /* GradNorm: last_shared's gradient before a task pass */
};

static tl_status build(void *st, const tl_model_view *v, tl_build_stage stage)
{
    if (stage != TL_BUILD_LOSSES) return TL_OK;
    tl_weighting_state *w = st;
    tl_graph *g = v->g;
    int K = v->cfg->n_tasks;
    char name[96];
    tl_node total = TL_NONE;
    *v->extra_coef = tl_scalar(g, 1.0f, "extra_losses");
    for (int k = 0; k < K; k++) {
        const char *t = v->cfg->tasks[k].name;
        snprintf(name, sizeof name, "weight.%s", t);
        w->coef[k] = tl_scalar(g, v->cfg->tasks[k].weight, name);
        w->logvar[k] = TL_NONE;
        w->factor[k] = 1.0f;
        tl_node term = v->objective[k];
        if (v->cfg->weighting == TL_WEIGHTING_UNCERTAINTY) {
            snprintf(name, sizeof name, "logvar.%s", t);
            tl_node s = w->logvar[k] = tl_param(g, 1, 1, TL_INIT_ZEROS, 0.0f, name);
            tl_node prec = tl_exp(g, tl_scale(g, s, -1.0f));
            term = tl_add(g, tl_scale(g, tl_mul(g, term, prec), 0.5f), tl_scale(g, s, 0.5f));
        }
        term = tl_mul(g, term, w->coef[k]);
        total = total == TL_NONE ? term : tl_add(g, total, term);
    }
    if (*v->extra != TL_NONE) total = tl_add(g, total, tl_mul(g, *v->extra, *v->extra_coef));
    *v->total = tl_node_name(g, total, "total_loss");
    return TL_OK;
}

static tl_status planned(void *st, const tl_model_view *v)
{
    tl_weighting_state *w = st;
    size_t pf;
    tl_graph_params(v->g, &pf);
    if (v->cfg->weighting == TL_WEIGHTING_PCGRAD) {
        w->task_grads = tl_malloc_aligned((size_t)v->cfg->n_tasks * pf * sizeof(float),
                                          "per-task gradients");
        if (!w->task_grads) return TL_ERR_NOMEM;
    }
    if (v->cfg->weighting == TL_WEIGHTING_GRADNORM) {
        int pi = tl_graph_param_index(v->g, *v->last_shared);
        if (pi < 0) return tl_fail(TL_ERR_ARG, "gradnorm: the model has no shared layer to measure");
        const tl_param_info *p = tl_graph_param(v->g, pi);
        w->w_grad_before = tl_malloc_aligned((size_t)p->rows * (size_t)p->cols * sizeof(float),
                                             "gradnorm buffer");
        if (!w->w_grad_before) return TL_ERR_NOMEM;
    }
    tl_weighting_apply(w, v);
    return TL_OK;
}

static void weighting_free(void *st)
{
    tl_weighting_state *w = st;
    tl_free_aligned(w->task_grads);
    tl_free_aligned(w->w_grad_before);
}

void tl_weighting_apply(tl_weighting_state *w, const tl_model_view *v)
{
    for (int k = 0; k < v->cfg->n_tasks; k++)
        tl_graph_set_scalar(v->g, w->coef[k], v->cfg->tasks[k].weight * w->factor[k]);
    tl_graph_set_scalar(v->g, *v->extra_coef, 1.0f);
}

float tl_weighting_effective(const tl_weighting_state *w, const tl_model_view *v, int k)
{
    float e = v->cfg->tasks[k].weight * w->factor[k];
    if (w->logvar[k] != TL_NONE && tl_graph_value(v->g, w->logvar[k]))
        e *= 0.5f * expf(-tl_graph_value(v->g, w->logvar[k])[0]);
    return e;
}

static void epoch_begin(void *st, const tl_model_view *v)
{
    tl_weighting_state *w = st;
    if (v->cfg->weighting != TL_WEIGHTING_DWA || w->dwa_epochs < 2) return;
    int K = v->cfg->n_tasks;
    double r[TL_MAX_TASKS], mx = -INFINITY, z = 0.0, T = v->cfg->dwa_temperature;
    for (int k = 0; k < K; k++) {
        r[k] = w->dwa_hist[1][k] / (w->dwa_hist[0][k] > 0.0 ? w->dwa_hist[0][k] : 1e-12);
        mx = r[k] / T > mx ? r[k] / T : mx;
    }
    for (int k = 0; k < K; k++) z += exp(r[k] / T - mx);
    for (int k = 0; k < K; k++) w->factor[k] = (float)(K * exp(r[k] / T - mx) / z);
    tl_weighting_apply(w, v);
}

static tl_status epoch_end(void *st, const tl_model_view *v, const tl_fit_point *f)
{
    tl_weighting_state *w = st;
    const double *epoch_loss = f->epoch_loss;
    if (v->cfg->weighting != TL_WEIGHTING_DWA) return TL_OK;
    memcpy(w->dwa_hist[0], w->dwa_hist[1], sizeof w->dwa_hist[0]);
    for (int k = 0; k < v->cfg->n_tasks; k++) w->dwa_hist[1][k] = epoch_loss[k];
    w->dwa_epochs++;
    return TL_OK;
}

/* Backward of task k's term alone (the AITM constraint rides with the last
 * task), accumulating into the parameter gradients. */
static tl_status task_pass(tl_weighting_state *w, const tl_model_view *v, int k)
{
    int K = v->cfg->n_tasks;
    for (int j = 0; j < K; j++)
        tl_graph_set_scalar(v->g, w->coef[j], j == k ? v->cfg->tasks[j].weight * w->factor[j] : 0.0f);
    tl_graph_set_scalar(v->g, *v->extra_coef, k == K - 1 ? 1.0f : 0.0f);
    tl_status s = tl_graph_backward_run(v->g);
    tl_weighting_apply(w, v);
    return s;
}

static tl_status gradnorm_backward(tl_weighting_state *w, const tl_model_view *v, const float *task_loss)
{
    int K = v->cfg->n_tasks;
    const tl_param_info *p = tl_graph_param(v->g, tl_graph_param_index(v->g, *v->last_shared));
    size_t len = (size_t)p->rows * (size_t)p->cols;
    float *gw = tl_graph_grads(v->g, NULL) + p->offset;
    double norm[TL_MAX_TASKS];
    for (int k = 0; k < K; k++) {
        memcpy(w->w_grad_before, gw, len * sizeof(float));
        tl_status s = task_pass(w, v, k);
        if (s != TL_OK) return s;
        double ss = 0.0;
        for (size_t i = 0; i < len; i++) {
            double d = (double)gw[i] - (double)w->w_grad_before[i];
            ss += d * d;
        }
        norm[k] = sqrt(ss); /* || grad_W (w_k g_k L_k) || */
    }
    if (!w->gn_have_initial) {
        for (int k = 0; k < K; k++) w->gn_initial[k] = task_loss[k] > 0.0f ? (double)task_loss[k] : 1e-12;
        w->gn_have_initial = 1;
    }
    double ratio[TL_MAX_TASKS], mean_ratio = 0.0, mean_norm = 0.0;
    for (int k = 0; k < K; k++) {
        ratio[k] = (double)task_loss[k] / w->gn_initial[k];
        mean_ratio += ratio[k] / K;
        mean_norm += norm[k] / K;
    }
    /* d/dg_k sum_j |G_j - target_j| with targets held constant; G_k is linear
     * in g_k, so dG_k/dg_k = G_k / g_k. */
    float lr = tl_optim_get_config(*v->opt)->lr, sum = 0.0f;
    for (int k = 0; k < K; k++) {
        double target = mean_norm * pow(ratio[k] / (mean_ratio > 0.0 ? mean_ratio : 1.0),
                                        (double)v->cfg->gradnorm_alpha);
        double gk = w->factor[k] > 0.0f ? norm[k] / (double)w->factor[k] : 0.0;
        double grad = (norm[k] > target ? 1.0 : -1.0) * gk;
        float f = (float)((double)w->factor[k] - (double)lr * grad);
        w->factor[k] = f > 1e-3f ? f : 1e-3f;
        sum += w->factor[k];
    }
    for (int k = 0; k < K; k++) w->factor[k] *= (float)K / sum;
    tl_weighting_apply(w, v);
    return TL_OK;
}

static tl_status pcgrad_backward(tl_weighting_state *w, const tl_model_view *v)
{
    int K = v->cfg->n_tasks;
    size_t pf;
    float *grads = tl_graph_grads(v->g, &pf);
    /* Shared parameters are the first n_shared_params: one contiguous span. */
    size_t shared_end = 0;
    if (*v->n_shared_params > 0) {
        const tl_param_info *last = tl_graph_param(v->g, *v->n_shared_params - 1);
        shared_end = last->offset + (size_t)last->rows * (size_t)last->cols;
    }
    for (int k = 0; k < K; k++) {
        tl_status s = task_pass(w, v, k);
        if (s != TL_OK) return s;
        memcpy(w->task_grads + (size_t)k * pf, grads, pf * sizeof(float));
        if (k + 1 < K) memset(grads, 0, pf * sizeof(float)); /* keeps the touched-row lists */
    }
    /* Project each task's shared gradient off the others it conflicts with,
     * in a random order per step (as in the paper), using the originals. */
    float *out = grads;
    memset(out, 0, pf * sizeof(float));
    for (int i = 0; i < K; i++) {
        const float *gi = w->task_grads + (size_t)i * pf;
        int perm[TL_MAX_TASKS];
        for (int j = 0; j < K; j++) perm[j] = j;
        for (int j = K - 1; j > 0; j--) {
            int r = (int)tl_rng_below(v->rng, (uint64_t)j + 1), t = perm[j];
            perm[j] = perm[r];
            perm[r] = t;
        }
        /* work on a copy of g_i in `out` accumulation: coefficients first */
        double coef[TL_MAX_TASKS] = {0};
        double dots_ii[TL_MAX_TASKS];
        for (int a = 0; a < K; a++) {
            const float *ga = w->task_grads + (size_t)a * pf;
            double s = 0.0;
            for (size_t x = 0; x < shared_end; x++) s += (double)ga[x] * (double)ga[x];
            dots_ii[a] = s;
        }
        /* g_i' = g_i - sum over conflicting j (in order) of (g_i'.g_j / |g_j|^2) g_j;
         * g_i'.g_j expands to g_i.g_j - sum_prev coef_p g_p.g_j */
        for (int q = 0; q < K; q++) {
            int j = perm[q];
            if (j == i || dots_ii[j] <= 0.0) continue;
            const float *gj = w->task_grads + (size_t)j * pf;
            double d = 0.0;
            for (size_t x = 0; x < shared_end; x++) d += (double)gi[x] * (double)gj[x];
            for (int p = 0; p < K; p++) {
                if (coef[p] == 0.0) continue;
                const float *gp = w->task_grads + (size_t)p * pf;
                double dp = 0.0;
                for (size_t x = 0; x < shared_end; x++) dp += (double)gp[x] * (double)gj[x];
                d -= coef[p] * dp;
            }
            if (d < 0.0) coef[j] += d / dots_ii[j];
        }
        for (size_t x = 0; x < pf; x++) out[x] += gi[x];
        for (int j = 0; j < K; j++) {
            if (coef[j] == 0.0) continue;
            const float *gj = w->task_grads + (size_t)j * pf;
            float c = (float)coef[j];
            for (size_t x = 0; x < shared_end; x++) out[x] -= c * gj[x];
        }
    }
    return TL_OK;
}

static tl_status backward(void *st, const tl_model_view *v, const tl_fit_point *f)
{
    tl_weighting_state *w = st;
    switch (v->cfg->weighting) {
    case TL_WEIGHTING_GRADNORM:
        return gradnorm_backward(w, v, f->task_loss);
    case TL_WEIGHTING_PCGRAD:
        return pcgrad_backward(w, v);
    default:
        return tl_graph_backward_run(v->g);
    }
}

/* WGHT: the task count, then the strategy's factors and history. */
static void codec_state(tl_weighting_state *w, int K, tl_codec *c)
{
    uint32_t k = (uint32_t)K;
    tl_codec_u32(c, &k);
    if (tl_codec_refuse(c, k != (uint32_t)K, "has a task count that differs from CONF")) return;
    for (int i = 0; i < K; i++) tl_codec_f32(c, &w->factor[i]);
    for (int i = 0; i < K; i++) tl_codec_f64(c, &w->gn_initial[i]);
    tl_codec_int(c, &w->gn_have_initial);
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < K; i++) tl_codec_f64(c, &w->dwa_hist[e][i]);
    tl_codec_int(c, &w->dwa_epochs);
}

static void save(void *st, const tl_model_view *v, tl_codec *c) { codec_state(st, v->cfg->n_tasks, c); }

static tl_status load(void *st, const tl_model_view *v, tl_codec *c)
{
    tl_weighting_state *w = st;
    tl_rbuf *r = c->r;
    codec_state(w, v->cfg->n_tasks, c);
    for (int i = 0; i < v->cfg->n_tasks; i++) tl_codec_want_real(r, "factor", w->factor[i], 0.0, 3.0e38, 0);
    tl_codec_want_int(r, "gn_have_initial", w->gn_have_initial, 0, 1);
    tl_codec_want_int(r, "dwa_epochs", w->dwa_epochs, 0, TL_CODEC_MAX_EPOCH);
    if (r->bad) return TL_ERR_FORMAT;
    tl_weighting_apply(w, v);
    return TL_OK;
}

tl_status tl_weighting_task_backward(tl_weighting_state *w, const tl_model_view *v, int k)
{
    int K = v->cfg->n_tasks;
    for (int j = 0; j < K; j++) {
        float c = 0.0f;
        if (j == k) c = w->logvar[j] != TL_NONE ? 2.0f * expf(tl_graph_value(v->g, w->logvar[j])[0]) : 1.0f;
        tl_graph_set_scalar(v->g, w->coef[j], c);
    }
    tl_graph_set_scalar(v->g, *v->extra_coef, 0.0f);
    tl_status st = tl_graph_backward_run(v->g);
    tl_weighting_apply(w, v);
    return st;
}

const tl_hook tl_weighting_hook = {
    .name = "weighting",
    .tag = TL_CODEC_TAG('W', 'G', 'H', 'T'),
    .size = sizeof(tl_weighting_state),
    .build = build,
    .planned = planned,
    .epoch_begin = epoch_begin,
    .backward = backward,
    .epoch_end = epoch_end,
    .save = save,
    .load = load,
    .free = weighting_free,
};
