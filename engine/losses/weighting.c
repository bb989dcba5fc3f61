/* losses/weighting.c — the loss-weighting strategy behind the hook table
 * (hooks.h): the method table, the coefficient scalars every method acts
 * through, the per-task gradient step the gradient methods share, and the
 * checkpoint section WGHT. The methods are in weighting_loss.c (they change
 * the loss coefficients) and weighting_gram.c (they combine task gradients). */
#include "weighting_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* One row per tl_weighting value, in its order. */
static const tl_weighting_method *const methods[TL_WEIGHTING_COUNT] = {
    &tl_wm_fixed,  &tl_wm_uncertainty, &tl_wm_gradnorm,    &tl_wm_dwa,     &tl_wm_pcgrad,
    &tl_wm_mgda,   &tl_wm_imtl_g,      &tl_wm_upgrad,      &tl_wm_cagrad,  &tl_wm_nash_mtl,
    &tl_wm_aligned_mtl, &tl_wm_gradvac, &tl_wm_graddrop,   &tl_wm_rlw,     &tl_wm_gls,
    &tl_wm_famo,   &tl_wm_stch,
};

tl_status tl_weighting_parse(const char *name, tl_weighting *out)
{
    for (int i = 0; i < TL_WEIGHTING_COUNT; i++)
        if (strcmp(name, methods[i]->name) == 0) {
            *out = (tl_weighting)i;
            return TL_OK;
        }
    char list[512] = "";
    for (int i = 0; i < TL_WEIGHTING_COUNT; i++) {
        strncat(list, methods[i]->name, sizeof list - strlen(list) - 1);
        if (i + 1 < TL_WEIGHTING_COUNT) strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return tl_fail(TL_ERR_ARG, "unknown weighting '%s' (expected one of: %s)", name, list);
}

const char *tl_weighting_name(tl_weighting w)
{
    return (unsigned)w < TL_WEIGHTING_COUNT ? methods[w]->name : "?";
}

int tl_weighting_keeps_task_grads(tl_weighting w)
{
    return (unsigned)w < TL_WEIGHTING_COUNT && methods[w]->per_task_grads;
}

static tl_status build(void *st, const tl_model_view *v, tl_build_stage stage)
{
    if (stage != TL_BUILD_LOSSES) return TL_OK;
    tl_weighting_state *w = st;
    w->m = methods[v->cfg->weighting];
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
        if (w->m->logvar) {
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
    if (w->m->per_task_grads) {
        w->task_grads = tl_malloc_aligned((size_t)v->cfg->n_tasks * pf * sizeof(float),
                                          "per-task gradients");
        if (!w->task_grads) return TL_ERR_NOMEM;
    }
    if (w->m->planned) {
        tl_status s = w->m->planned(w, v);
        if (s != TL_OK) return s;
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
    if (w->has_shown) return w->shown[k];
    float e = v->cfg->tasks[k].weight * w->factor[k];
    if (w->logvar[k] != TL_NONE && tl_graph_value(v->g, w->logvar[k]))
        e *= 0.5f * expf(-tl_graph_value(v->g, w->logvar[k])[0]);
    return e;
}

static void epoch_begin(void *st, const tl_model_view *v)
{
    tl_weighting_state *w = st;
    if (w->m->epoch_begin) w->m->epoch_begin(w, v);
}

static void step_begin(void *st, const tl_model_view *v)
{
    tl_weighting_state *w = st;
    if (w->m->step_begin) w->m->step_begin(w, v);
}

static tl_status step_end(void *st, const tl_model_view *v, const tl_fit_point *f)
{
    tl_weighting_state *w = st;
    return w->m->step_end ? w->m->step_end(w, v, f) : TL_OK;
}

static tl_status epoch_end(void *st, const tl_model_view *v, const tl_fit_point *f)
{
    tl_weighting_state *w = st;
    return w->m->epoch_end ? w->m->epoch_end(w, v, f) : TL_OK;
}

tl_status tl_weighting_task_pass(tl_weighting_state *w, const tl_model_view *v, int k)
{
    int K = v->cfg->n_tasks;
    for (int j = 0; j < K; j++)
        tl_graph_set_scalar(v->g, w->coef[j], j == k ? v->cfg->tasks[j].weight * w->factor[j] : 0.0f);
    tl_graph_set_scalar(v->g, *v->extra_coef, k == K - 1 ? 1.0f : 0.0f);
    tl_status s = tl_graph_backward_run(v->g);
    tl_weighting_apply(w, v);
    return s;
}

tl_status tl_weighting_task_grads(tl_weighting_state *w, const tl_model_view *v, size_t *pf,
                                  size_t *shared_end)
{
    int K = v->cfg->n_tasks;
    float *grads = tl_graph_grads(v->g, pf);
    *shared_end = 0;
    if (*v->n_shared_params > 0) {
        const tl_param_info *last = tl_graph_param(v->g, *v->n_shared_params - 1);
        *shared_end = last->offset + (size_t)last->rows * (size_t)last->cols;
    }
    for (int k = 0; k < K; k++) {
        tl_status s = tl_weighting_task_pass(w, v, k);
        if (s != TL_OK) return s;
        memcpy(w->task_grads + (size_t)k * *pf, grads, *pf * sizeof(float));
        if (k + 1 < K) memset(grads, 0, *pf * sizeof(float)); /* keeps the touched-row lists */
    }
    return TL_OK;
}

tl_status tl_weighting_gram_backward(tl_weighting_state *w, const tl_model_view *v,
                                     const tl_fit_point *f)
{
    (void)f;
    int K = v->cfg->n_tasks;
    size_t pf, se;
    tl_status s = tl_weighting_task_grads(w, v, &pf, &se);
    if (s != TL_OK) return s;
    double G[TL_MAX_TASKS * TL_MAX_TASKS], alpha[TL_MAX_TASKS];
    for (int a = 0; a < K; a++)
        for (int b = a; b < K; b++) {
            const float *ga = w->task_grads + (size_t)a * pf, *gb = w->task_grads + (size_t)b * pf;
            double d = 0.0;
            for (size_t x = 0; x < se; x++) d += (double)ga[x] * (double)gb[x];
            G[a * K + b] = G[b * K + a] = d;
        }
    if ((s = w->m->combine(w, v, G, K, alpha)) != TL_OK) return s;
    for (int k = 0; k < K; k++)
        if (!isfinite(alpha[k]))
            return tl_fail(TL_ERR_NUMERIC, "%s: the weight of task %s is not finite (step %lld)",
                           w->m->name, v->cfg->tasks[k].name, (long long)*v->step + 1);
    float *out = tl_graph_grads(v->g, NULL);
    float fa[TL_MAX_TASKS];
    for (int k = 0; k < K; k++) fa[k] = (float)alpha[k];
    for (size_t x = 0; x < se; x++) {
        float acc = 0.0f;
        for (int k = 0; k < K; k++) acc += fa[k] * w->task_grads[(size_t)k * pf + x];
        out[x] = acc;
    }
    for (size_t x = se; x < pf; x++) {
        float acc = 0.0f;
        for (int k = 0; k < K; k++) acc += w->task_grads[(size_t)k * pf + x];
        out[x] = acc;
    }
    for (int k = 0; k < K; k++) w->shown[k] = fa[k] * v->cfg->tasks[k].weight * w->factor[k];
    w->has_shown = 1;
    return TL_OK;
}

static tl_status backward(void *st, const tl_model_view *v, const tl_fit_point *f)
{
    tl_weighting_state *w = st;
    return w->m->backward ? w->m->backward(w, v, f) : tl_graph_backward_run(v->g);
}

/* WGHT: the task count, the factors and the GradNorm and DWA history every
 * method writes, then the method's own fields. */
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
    if (w->m->codec) w->m->codec(w, K, c);
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
    if (w->m->check) w->m->check(w, v->cfg->n_tasks, r);
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
    .step_begin = step_begin,
    .backward = backward,
    .step_end = step_end,
    .epoch_end = epoch_end,
    .save = save,
    .load = load,
    .free = weighting_free,
};
