/* losses/weighting_gram.c — the methods solved on the Gram matrix of the task
 * gradients (the solvers are losses/gram.c): MGDA, CAGrad, Nash-MTL, IMTL-G,
 * IMTL (IMTL-G on IMTL-L's scaled losses), Aligned-MTL, UPGrad, GradVac.
 *
 * at='params' (TL_AT_PARAMS): one backward pass per task; G is the Gram
 * matrix of the tasks' gradients of the shared parameters (embedding tables
 * by the rows the batch touched, the others being zero) and the shared
 * parameters get d = scale * sum_k alpha_k w_k g_k.
 * at='rep' (TL_AT_REP, the "-UB" variants of Sener & Koltun): one pass per
 * task through the towers only; G is the Gram matrix of the tasks' gradients
 * at the representations the towers read (the whole batch x width matrix,
 * as the paper's gradient with respect to Z), and alpha_k w_k times task
 * k's gradient there flows on through one backward pass of the shared part.
 * Either way the towers get the plain sum of their tasks' gradients (LibMTL
 * sets only the shared gradient). m:history() shows alpha_k w_k (times the
 * clip factor of Nash-MTL). */
#include "weighting.h"

#include <math.h>
#include <string.h>

#include "gram.h"

static tl_gram_params params_of(const tl_model_view *v)
{
    tl_gram_params p = tl_gram_defaults();
    const tl_weighting_opts *o = &v->cfg->wopt;
    p.cagrad_c = (double)o->cagrad_c;
    p.cagrad_rescale = o->cagrad_rescale;
    p.nash_max_norm = (double)o->nash_max_norm;
    p.gradvac_beta = (double)o->gradvac_beta;
    return p;
}

typedef struct {
    const float *tg; /* task gradients, K x pf */
    size_t pf;
    int K;
    double G[TL_MAX_TASKS * TL_MAX_TASKS];
    float alpha[TL_MAX_TASKS];
    float *out;
} gram_pass;

static void gram_dots(size_t off, size_t len, void *ctx)
{
    gram_pass *p = ctx;
    for (int a = 0; a < p->K; a++)
        for (int b = a; b < p->K; b++) {
            const float *ga = p->tg + (size_t)a * p->pf + off, *gb = p->tg + (size_t)b * p->pf + off;
            double d = 0.0;
            for (size_t x = 0; x < len; x++) d += (double)ga[x] * (double)gb[x];
            p->G[a * p->K + b] += d;
        }
}

static void gram_combine(size_t off, size_t len, void *ctx)
{
    gram_pass *p = ctx;
    for (size_t x = off; x < off + len; x++) {
        float acc = 0.0f;
        for (int k = 0; k < p->K; k++) acc += p->alpha[k] * p->tg[(size_t)k * p->pf + x];
        p->out[x] = acc;
    }
}

/* G of n-float vectors K apart by stride. */
static void gram_of(const float *g, size_t n, size_t stride, int K, double *G)
{
    for (int a = 0; a < K; a++)
        for (int b = a; b < K; b++) {
            const float *ga = g + (size_t)a * stride, *gb = g + (size_t)b * stride;
            double d = 0.0;
            for (size_t x = 0; x < n; x++) d += (double)ga[x] * (double)gb[x];
            G[a * K + b] = G[b * K + a] = d;
        }
}

static tl_status solve_checked(tl_weighting_state *w, const tl_model_view *v, double *G, int K,
                               double *alpha, double *scale)
{
    for (int i = 0; i < K * K; i++)
        if (!isfinite(G[i]))
            return tl_fail(TL_ERR_NUMERIC, "%s: the task gradients are not finite at step %lld",
                           tl_weighting_name(v->cfg->weighting), (long long)*v->step + 1);
    *scale = 1.0;
    tl_status s = w->m->solve(w, v, G, K, alpha, scale);
    /* A degenerate Gram matrix (parallel or zero task gradients) is a step
     * the solvers answer with their documented fallback weights, not a
     * reason to stop training. */
    if (s == TL_ERR_NUMERIC) s = TL_OK;
    for (int k = 0; k < K && s == TL_OK; k++)
        if (!isfinite(alpha[k]))
            s = tl_fail(TL_ERR_NUMERIC, "%s: the weight of task %s is not finite (step %lld)",
                        tl_weighting_name(v->cfg->weighting), v->cfg->tasks[k].name, (long long)*v->step + 1);
    if (s == TL_OK && !isfinite(*scale)) *scale = 1.0;
    return s;
}

static tl_status params_backward(tl_weighting_state *w, const tl_model_view *v)
{
    int K = v->cfg->n_tasks;
    gram_pass p = {.K = K};
    tl_status s = tl_weighting_shared_grads(w, v, NULL, &p.pf);
    if (s != TL_OK) return s;
    p.tg = w->task_grads;
    tl_weighting_shared_spans(v, gram_dots, &p);
    for (int a = 0; a < K; a++)
        for (int b = 0; b < a; b++) p.G[a * K + b] = p.G[b * K + a];
    double alpha[TL_MAX_TASKS], scale;
    if ((s = solve_checked(w, v, p.G, K, alpha, &scale)) != TL_OK) return s;
    for (int k = 0; k < K; k++) {
        p.alpha[k] = (float)(alpha[k] * scale);
        w->shown[k] = p.alpha[k] * v->cfg->tasks[k].weight;
    }
    w->has_shown = 1;
    p.out = tl_graph_grads(v->g, NULL); /* the towers' already hold the plain sum */
    tl_weighting_shared_spans(v, gram_combine, &p);
    return TL_OK;
}

static tl_status rep_backward(tl_weighting_state *w, const tl_model_view *v)
{
    int K = v->cfg->n_tasks, rows, cols;
    tl_status s = tl_weighting_rep_grads(w, v, &rows, &cols);
    if (s != TL_OK) return s;
    size_t n = (size_t)rows * (size_t)cols;
    double G[TL_MAX_TASKS * TL_MAX_TASKS], alpha[TL_MAX_TASKS], scale;
    gram_of(w->rep_grads, n, n, K, G);
    /* a sum over the rows: under data parallelism, the ranks' partial Gram
     * matrices added in rank order, so every rank solves the same G */
    if ((s = tl_weighting_dp_sum(v, G, K * K, "the Gram matrix")) != TL_OK) return s;
    if ((s = solve_checked(w, v, G, K, alpha, &scale)) != TL_OK) return s;
    for (int k = 0; k < K; k++) {
        float a = (float)(alpha[k] * scale);
        w->shown[k] = a * v->cfg->tasks[k].weight;
        float *g = w->rep_grads + (size_t)k * n;
        for (size_t i = 0; i < n; i++) g[i] *= a;
    }
    w->has_shown = 1;
    return tl_weighting_rep_backward(w, v, w->rep_grads);
}

tl_status tl_weighting_gram_backward(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    (void)f;
    return v->cfg->wopt.at == TL_AT_REP ? rep_backward(w, v) : params_backward(w, v);
}

/* ---- the rows ---------------------------------------------------------------- */

static tl_status mgda(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                      double *alpha, double *scale)
{
    (void)w, (void)v, (void)scale;
    return tl_gram_mgda(G, K, alpha);
}

static tl_status cagrad(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                        double *alpha, double *scale)
{
    (void)w, (void)scale;
    tl_gram_params p = params_of(v);
    return tl_gram_cagrad(G, K, &p, alpha);
}

/* vec[0] holds the last solution (the warm start); zeros restart from ones */
static tl_status nash(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                      double *alpha, double *scale)
{
    tl_gram_params p = params_of(v);
    return tl_gram_nash(G, K, &p, w->vec[0], alpha, scale);
}

static tl_status imtl_g(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                        double *alpha, double *scale)
{
    (void)w, (void)v, (void)scale;
    return tl_gram_imtl_g(G, K, alpha);
}

static tl_status aligned(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                         double *alpha, double *scale)
{
    (void)w, (void)v, (void)scale;
    return tl_gram_aligned(G, K, alpha, NULL);
}

static tl_status upgrad(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                        double *alpha, double *scale)
{
    (void)w, (void)scale;
    tl_gram_params p = params_of(v);
    return tl_gram_upgrad(G, K, &p, alpha);
}

static tl_status gradvac(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                         double *alpha, double *scale)
{
    (void)scale;
    tl_gram_params p = params_of(v);
    return tl_gram_gradvac(G, K, &p, w->ema, v->rng, alpha);
}

static void nash_codec(tl_weighting_state *w, int K, tl_codec *c)
{
    for (int k = 0; k < K; k++) tl_codec_f64(c, &w->vec[0][k]);
}

static void nash_check(const tl_weighting_state *w, int K, tl_rbuf *r)
{
    for (int k = 0; k < K; k++) tl_codec_want_real(r, "nash_mtl weights", w->vec[0][k], -1e30, 1e30, 0);
}

static void gradvac_codec(tl_weighting_state *w, int K, tl_codec *c)
{
    for (int i = 0; i < K * K; i++) tl_codec_f64(c, &w->ema[i]);
}

static void gradvac_check(const tl_weighting_state *w, int K, tl_rbuf *r)
{
    for (int i = 0; i < K * K; i++) tl_codec_want_real(r, "gradvac targets", w->ema[i], -1.0, 1.0, 0);
}

#define GRAM_ROW(fn) {.dp = TL_DP_REDUCES, .solve = fn, .backward = tl_weighting_gram_backward}

const tl_weighting_method tl_wm_mgda = GRAM_ROW(mgda);
const tl_weighting_method tl_wm_cagrad = GRAM_ROW(cagrad);
const tl_weighting_method tl_wm_nash_mtl = {.dp = TL_DP_REDUCES, .solve = nash, .backward = tl_weighting_gram_backward,
                                            .codec = nash_codec, .check = nash_check};
const tl_weighting_method tl_wm_imtl_g = GRAM_ROW(imtl_g);
const tl_weighting_method tl_wm_imtl = {.dp = TL_DP_REDUCES, .solve = imtl_g, .backward = tl_weighting_gram_backward,
                                        .scales = TL_SCALES_IMTL};
const tl_weighting_method tl_wm_aligned_mtl = GRAM_ROW(aligned);
const tl_weighting_method tl_wm_upgrad = GRAM_ROW(upgrad);
const tl_weighting_method tl_wm_gradvac = {.dp = TL_DP_REDUCES, .solve = gradvac, .backward = tl_weighting_gram_backward,
                                           .codec = gradvac_codec, .check = gradvac_check};
