/* losses/weighting_loss.c — the methods that act on the loss coefficients
 * only: fixed, uncertainty, IMTL-L, DWA and GradNorm (which measures per-task
 * gradient norms but only rescales losses), and RLW, GLS, FAMO and STCH,
 * whose coefficient on task k is the derivative of their combined loss with
 * respect to L_k at this step's losses (one backward pass). Formulas and
 * defaults: weighting.h. */
#include "weighting.h"

#include <math.h>
#include <string.h>

const tl_weighting_method tl_wm_fixed = {.dp = TL_DP_GRAINS};

/* Kendall et al. 2018 and the loss half of IMTL: the loss scales are graph
 * parameters (weighting.c builds them), so nothing happens at fit time. */
const tl_weighting_method tl_wm_uncertainty = { .dp = TL_DP_GRAINS, .scales = TL_SCALES_UNCERTAINTY};

const tl_weighting_method tl_wm_imtl_l = { .dp = TL_DP_GRAINS, .scales = TL_SCALES_IMTL};

/* ---- DWA (Liu et al. 2019) ------------------------------------------------ */

static void dwa_epoch_begin(tl_weighting_state *w, const tl_model_view *v)
{
    if (w->dwa_epochs < 2) return;
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

static tl_status dwa_epoch_end(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    memcpy(w->dwa_hist[0], w->dwa_hist[1], sizeof w->dwa_hist[0]);
    for (int k = 0; k < v->cfg->n_tasks; k++) w->dwa_hist[1][k] = f->epoch_loss[k];
    w->dwa_epochs++;
    return TL_OK;
}

const tl_weighting_method tl_wm_dwa = { .dp = TL_DP_GRAINS, .epoch_begin = dwa_epoch_begin, .epoch_end = dwa_epoch_end};

/* ---- GradNorm (Chen et al. 2018) ------------------------------------------- */

static tl_status gradnorm_setup(tl_weighting_state *w, const tl_model_view *v)
{
    int pi = tl_graph_param_index(v->g, *v->last_shared);
    if (pi < 0) return tl_fail(TL_ERR_ARG, "gradnorm: the model has no shared layer to measure");
    const tl_param_info *p = tl_graph_param(v->g, pi);
    w->w_grad_before = tl_malloc_aligned((size_t)p->rows * (size_t)p->cols * sizeof(float),
                                         "gradnorm buffer");
    return w->w_grad_before ? TL_OK : TL_ERR_NOMEM;
}

/* GradNorm's task passes under data parallelism: a pass's gradient must be
 * summed over the ranks alone (the norms are of whole-batch gradients), so
 * each starts from zero, is reduced, measured at the shared layer gw and
 * added to gn_sum; the parameter gradients get the sum at the end. */
static tl_status gradnorm_reduced_passes(tl_weighting_state *w, const tl_model_view *v, const float *gw,
                                         size_t len, double *norm)
{
    size_t pf;
    float *grads = tl_graph_grads(v->g, &pf);
    if (!w->gn_sum && !(w->gn_sum = tl_malloc_aligned(pf * sizeof(float), "gradnorm sum"))) return TL_ERR_NOMEM;
    memset(w->gn_sum, 0, pf * sizeof(float));
    for (int k = 0; k < v->cfg->n_tasks; k++) {
        memset(grads, 0, pf * sizeof(float)); /* keeps the touched-row lists */
        tl_status s = tl_weighting_task_pass(w, v, k, w->factor[k]);
        if (s == TL_OK) s = v->reduce_grads(v->model);
        if (s != TL_OK) return s;
        double ss = 0.0;
        for (size_t i = 0; i < len; i++) ss += (double)gw[i] * (double)gw[i];
        norm[k] = sqrt(ss);
        for (size_t i = 0; i < pf; i++) w->gn_sum[i] += grads[i];
    }
    memcpy(grads, w->gn_sum, pf * sizeof(float));
    return TL_OK;
}

static tl_status gradnorm_backward(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    const float *task_loss = f->task_loss;
    int K = v->cfg->n_tasks;
    const tl_param_info *p = tl_graph_param(v->g, tl_graph_param_index(v->g, *v->last_shared));
    size_t len = (size_t)p->rows * (size_t)p->cols;
    float *gw = tl_graph_grads(v->g, NULL) + p->offset;
    double norm[TL_MAX_TASKS];
    if (v->reduce_grads) { /* data-parallel: each task's pass alone, summed over the ranks */
        tl_status s = gradnorm_reduced_passes(w, v, gw, len, norm);
        if (s != TL_OK) return s;
    } else {
        for (int k = 0; k < K; k++) {
            memcpy(w->w_grad_before, gw, len * sizeof(float));
            tl_status s = tl_weighting_task_pass(w, v, k, w->factor[k]);
            if (s != TL_OK) return s;
            double ss = 0.0;
            for (size_t i = 0; i < len; i++) {
                double d = (double)gw[i] - (double)w->w_grad_before[i];
                ss += d * d;
            }
            norm[k] = sqrt(ss); /* || grad_W (w_k g_k L_k) || */
        }
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
        float fk = (float)((double)w->factor[k] - (double)lr * grad);
        w->factor[k] = fk > 1e-3f ? fk : 1e-3f;
        sum += w->factor[k];
    }
    for (int k = 0; k < K; k++) w->factor[k] *= (float)K / sum;
    tl_weighting_apply(w, v);
    return TL_OK;
}

const tl_weighting_method tl_wm_gradnorm = { .dp = TL_DP_REDUCES, .setup = gradnorm_setup, .backward = gradnorm_backward};

/* ---- methods with coefficients from this step's losses ---------------------- */

void tl_weighting_rlw_draw(tl_rng *rng, int K, int dirichlet, double *lambda)
{
    double s = 0.0;
    if (dirichlet) { /* normalised Exp(1) draws: uniform on the simplex */
        for (int k = 0; k < K; k++) s += (lambda[k] = -log(1.0 - tl_rng_uniform_double(rng)));
        for (int k = 0; k < K; k++) lambda[k] /= s;
        return;
    }
    double z[TL_MAX_TASKS];
    for (int k = 0; k < K; k++) z[k] = tl_rng_normal(rng);
    tl_weighting_softmax(z, K, lambda);
}

/* RLW (Lin et al. 2022): new weights every step, before its forward run. */
static void rlw_step_begin(tl_weighting_state *w, const tl_model_view *v)
{
    double lambda[TL_MAX_TASKS];
    tl_weighting_rlw_draw(v->rng, v->cfg->n_tasks, v->cfg->wopt.rlw_dirichlet, lambda);
    for (int k = 0; k < v->cfg->n_tasks; k++) w->factor[k] = (float)lambda[k];
    tl_weighting_apply(w, v);
}

const tl_weighting_method tl_wm_rlw = { .dp = TL_DP_GRAINS, .step_begin = rlw_step_begin};

void tl_weighting_gls(const double *L, int K, double *coef)
{
    double lg = 0.0, l[TL_MAX_TASKS];
    for (int k = 0; k < K; k++) {
        l[k] = L[k] > 1e-30 ? L[k] : 1e-30;
        lg += log(l[k]) / K;
    }
    double gm = exp(lg); /* (prod L)^(1/K) */
    for (int k = 0; k < K; k++) coef[k] = gm / (K * l[k]);
}

/* Copy this step's task losses. */
static void losses_of(const tl_fit_point *f, int K, double *L)
{
    for (int k = 0; k < K; k++) L[k] = f->task_loss[k];
}

static tl_status gls_backward(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    double L[TL_MAX_TASKS], c[TL_MAX_TASKS];
    losses_of(f, v->cfg->n_tasks, L);
    tl_weighting_gls(L, v->cfg->n_tasks, c);
    return tl_weighting_backward_with(w, v, c);
}

const tl_weighting_method tl_wm_gls = { .dp = TL_DP_REDUCES, .backward = gls_backward};

/* ---- FAMO -------------------------------------------------------------------- */

void tl_weighting_famo_coef(const double *xi, const double *L, int K, double *coef)
{
    double z[TL_MAX_TASKS], c = 0.0;
    tl_weighting_softmax(xi, K, z);
    for (int k = 0; k < K; k++) c += z[k] / (L[k] + 1e-8);
    for (int k = 0; k < K; k++) coef[k] = z[k] / (c * (L[k] + 1e-8));
}

void tl_weighting_famo_update(double *xi, double *m1, double *m2, int64_t *t, const double *before,
                              const double *after, int K, double lr, double gamma)
{
    double z[TL_MAX_TASKS], delta[TL_MAX_TASKS], zd = 0.0;
    tl_weighting_softmax(xi, K, z);
    for (int k = 0; k < K; k++) {
        delta[k] = log(before[k] + 1e-8) - log(after[k] + 1e-8);
        zd += z[k] * delta[k];
    }
    ++*t;
    double b1 = 1.0 - pow(0.9, (double)*t), b2 = 1.0 - pow(0.999, (double)*t);
    for (int k = 0; k < K; k++) {
        /* the softmax Jacobian times delta, plus torch Adam's weight decay */
        double gk = z[k] * (delta[k] - zd) + gamma * xi[k];
        m1[k] = 0.9 * m1[k] + 0.1 * gk;
        m2[k] = 0.999 * m2[k] + 0.001 * gk * gk;
        xi[k] -= lr / b1 * m1[k] / (sqrt(m2[k]) / sqrt(b2) + 1e-8);
    }
}

/* vec[0] logits xi, vec[1..2] Adam moments, vec[3] this step's losses */
static tl_status famo_backward(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    int K = v->cfg->n_tasks;
    double c[TL_MAX_TASKS];
    losses_of(f, K, w->vec[3]);
    tl_weighting_famo_coef(w->vec[0], w->vec[3], K, c);
    return tl_weighting_backward_with(w, v, c);
}

/* The losses of the same batch after the update (the authors measure them
 * with the model as it trains: the same dropout masks here, the RNG put back).
 * Under data parallelism the graph holds this rank's rows: their share of the
 * batch loss (over the batch's weight sums) is summed over the ranks. */
static tl_status famo_step_end(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    (void)f;
    int K = v->cfg->n_tasks, dp = v->reduce_grads && v->dist && v->dist->size > 1;
    double after[TL_MAX_TASKS];
    tl_status s = TL_OK;
    if (dp) {
        int n = tl_graph_batch(v->g);
        for (int k = 0; k < K; k++) {
            const float *wt = tl_graph_input(v->g, v->rowweight[k]);
            double ws = 0.0;
            for (int i = 0; i < n; i++)
                if (wt[i] != 0.0f) ws += (double)wt[i];
            after[k] = ws;
        }
        if ((s = tl_weighting_dp_sum(v, after, K, "the loss denominators")) != TL_OK) return s;
        for (int k = 0; k < K; k++) tl_loss_set_denominator(v->g, v->loss[k], (float)after[k]);
    }
    tl_rng keep = *tl_graph_rng(v->g);
    s = tl_graph_forward(v->g, 1);
    *tl_graph_rng(v->g) = keep;
    for (int k = 0; k < K; k++) {
        after[k] = tl_graph_value(v->g, v->loss[k])[0];
        if (dp) tl_loss_set_denominator(v->g, v->loss[k], 0.0f);
    }
    if (s == TL_OK && dp) s = tl_weighting_dp_sum(v, after, K, "the losses after the step");
    if (s != TL_OK) return s;
    tl_weighting_famo_update(w->vec[0], w->vec[1], w->vec[2], &w->count, w->vec[3], after, K,
                             v->cfg->wopt.famo_lr, v->cfg->wopt.famo_gamma);
    return TL_OK;
}

static void famo_codec(tl_weighting_state *w, int K, tl_codec *c)
{
    for (int e = 0; e < 3; e++)
        for (int k = 0; k < K; k++) tl_codec_f64(c, &w->vec[e][k]);
    tl_codec_i64(c, &w->count);
}

static void famo_check(const tl_weighting_state *w, int K, tl_rbuf *r)
{
    for (int e = 0; e < 3; e++)
        for (int k = 0; k < K; k++) tl_codec_want_real(r, "famo state", w->vec[e][k], -1e30, 1e30, 0);
    tl_codec_want_int(r, "famo steps", w->count, 0, TL_CODEC_MAX_STEPS);
}

const tl_weighting_method tl_wm_famo = { .dp = TL_DP_REDUCES, .backward = famo_backward, .step_end = famo_step_end, .codec = famo_codec,
    .check = famo_check};

/* ---- STCH -------------------------------------------------------------------- */

void tl_weighting_stch(const double *L, const double *nadir, int K, double mu, double *coef)
{
    double l[TL_MAX_TASKS] = {0}, s[TL_MAX_TASKS];
    for (int k = 0; k < K; k++) l[k] = log(L[k] / nadir[k] + 1e-20) / mu;
    tl_weighting_softmax(l, K, s);
    /* d/dL_k of mu K logsumexp(l) = K s_k / (n_k (L_k / n_k + 1e-20)) */
    for (int k = 0; k < K; k++) coef[k] = K * s[k] / (nadir[k] * (L[k] / nadir[k] + 1e-20));
}

/* vec[0]: the loss sums of epoch warmup+1 (count steps), whose mean is the
 * nadir point; epochs: epochs done under STCH */
static tl_status stch_backward(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    int K = v->cfg->n_tasks, warm = v->cfg->wopt.stch_warmup;
    double L[TL_MAX_TASKS], c[TL_MAX_TASKS], nadir[TL_MAX_TASKS];
    losses_of(f, K, L);
    if (w->epochs > warm && w->count > 0) {
        for (int k = 0; k < K; k++) nadir[k] = w->vec[0][k] / (double)w->count;
        tl_weighting_stch(L, nadir, K, v->cfg->wopt.stch_mu, c);
    } else {
        for (int k = 0; k < K; k++) c[k] = 1.0 / (L[k] + 1e-20);
        if (w->epochs == warm) {
            for (int k = 0; k < K; k++) w->vec[0][k] += L[k];
            w->count++;
        }
    }
    return tl_weighting_backward_with(w, v, c);
}

static tl_status stch_epoch_end(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    (void)v, (void)f;
    w->epochs++;
    return TL_OK;
}

static void stch_codec(tl_weighting_state *w, int K, tl_codec *c)
{
    for (int k = 0; k < K; k++) tl_codec_f64(c, &w->vec[0][k]);
    tl_codec_i64(c, &w->count);
    tl_codec_int(c, &w->epochs);
}

static void stch_check(const tl_weighting_state *w, int K, tl_rbuf *r)
{
    for (int k = 0; k < K; k++) tl_codec_want_real(r, "stch loss sum", w->vec[0][k], 0.0, 1e300, 0);
    tl_codec_want_int(r, "stch steps", w->count, 0, TL_CODEC_MAX_STEPS);
    tl_codec_want_int(r, "stch epochs", w->epochs, 0, TL_CODEC_MAX_EPOCH);
}

const tl_weighting_method tl_wm_stch = { .dp = TL_DP_REDUCES, .backward = stch_backward, .epoch_end = stch_epoch_end, .codec = stch_codec,
    .check = stch_check};
