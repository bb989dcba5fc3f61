/* losses/weighting.c — the loss-weighting strategy behind the hook table
 * (hooks.h): the method table (in the order of model_config.c's names), the coefficient
 * scalars every method acts through, the per-task gradient passes the
 * gradient methods share, switching between fits, and the checkpoint section
 * WGHT. The methods are in weighting_loss.c (they change the loss
 * coefficients) and weighting_grad.c (they combine task gradients). */
#include "weighting.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* One row per tl_weighting value, in its order. */
static const tl_weighting_method *const methods[TL_WEIGHTING_COUNT] = {
    &tl_wm_fixed, &tl_wm_uncertainty, &tl_wm_gradnorm, &tl_wm_dwa,    &tl_wm_pcgrad,
    &tl_wm_rlw,   &tl_wm_gls,         &tl_wm_famo,     &tl_wm_db_mtl, &tl_wm_stch,
    &tl_wm_imtl_l, &tl_wm_graddrop, &tl_wm_mgda,   &tl_wm_cagrad, &tl_wm_nash_mtl,
    &tl_wm_imtl_g, &tl_wm_imtl,    &tl_wm_aligned_mtl, &tl_wm_upgrad, &tl_wm_gradvac,
};

int tl_weighting_uses_task_grads(const tl_weighting_method *m, const tl_weighting_opts *o)
{
    return m->per_task_grads || (m->solve && o->at == TL_AT_PARAMS);
}

int tl_weighting_uses_rep_grads(const tl_weighting_method *m, const tl_weighting_opts *o)
{
    return m->rep_grads || (m->solve && o->at == TL_AT_REP);
}

tl_status tl_weighting_check(const tl_model_config *c)
{
    const tl_weighting_opts *o = &c->wopt;
    if ((unsigned)c->weighting >= TL_WEIGHTING_COUNT)
        return tl_fail(TL_ERR_ARG, "model: unknown weighting %d", (int)c->weighting);
    const char *n = tl_weighting_name(c->weighting);
    if (o->at != TL_AT_PARAMS && o->at != TL_AT_REP)
        return tl_fail(TL_ERR_ARG, "%s: at must be 'params' or 'rep'", n);
    if (o->at == TL_AT_REP && !methods[c->weighting]->solve)
        return tl_fail(TL_ERR_ARG, "%s: at='rep' is for the methods that solve on the Gram matrix "
                                   "of the task gradients (mgda, cagrad, ...)", n);
    if (!(o->cagrad_c >= 0.0f && isfinite(o->cagrad_c)) || o->cagrad_rescale < 0 || o->cagrad_rescale > 2)
        return tl_fail(TL_ERR_ARG, "cagrad: c must be finite and >= 0, rescale 0, 1 or 2 (got c=%g "
                                   "rescale=%d)", (double)o->cagrad_c, o->cagrad_rescale);
    if (!(o->nash_max_norm >= 0.0f && isfinite(o->nash_max_norm)))
        return tl_fail(TL_ERR_ARG, "nash_mtl: max_norm must be finite and >= 0 (0: no clip), got %g",
                       (double)o->nash_max_norm);
    if (!(o->gradvac_beta >= 0.0f && o->gradvac_beta <= 1.0f))
        return tl_fail(TL_ERR_ARG, "gradvac: beta must be in [0, 1], got %g", (double)o->gradvac_beta);
    if (!(o->famo_lr > 0.0f && isfinite(o->famo_lr)) || !(o->famo_gamma >= 0.0f && isfinite(o->famo_gamma)))
        return tl_fail(TL_ERR_ARG, "famo: lr must be finite and > 0, gamma finite and >= 0 (got "
                                   "lr=%g gamma=%g)", (double)o->famo_lr, (double)o->famo_gamma);
    if (!(o->db_beta >= 0.0f && o->db_beta < 1.0f) || !(o->db_beta_sigma >= 0.0f && isfinite(o->db_beta_sigma)))
        return tl_fail(TL_ERR_ARG, "db_mtl: beta must be in [0, 1) and sigma finite and >= 0 (got "
                                   "beta=%g sigma=%g)", (double)o->db_beta, (double)o->db_beta_sigma);
    if (!(o->stch_mu > 0.0f && isfinite(o->stch_mu)) || o->stch_warmup < 0 || o->stch_warmup > 100000)
        return tl_fail(TL_ERR_ARG, "stch: mu must be finite and > 0, warmup 0..100000 epochs (got "
                                   "mu=%g warmup=%d)", (double)o->stch_mu, o->stch_warmup);
    if (!(o->graddrop_leak >= 0.0f && o->graddrop_leak <= 1.0f))
        return tl_fail(TL_ERR_ARG, "graddrop: leak must be in [0, 1], got %g", (double)o->graddrop_leak);
    if (o->rlw_dirichlet != 0 && o->rlw_dirichlet != 1)
        return tl_fail(TL_ERR_ARG, "rlw: dist must be 'normal' or 'dirichlet'");
    return TL_OK;
}

tl_weighting_dp tl_weighting_dp_mode(const tl_model_config *c)
{
    return (unsigned)c->weighting < TL_WEIGHTING_COUNT ? methods[c->weighting]->dp : TL_DP_REFUSED;
}

int tl_weighting_rows_free(const tl_model_config *c)
{
    return (unsigned)c->weighting < TL_WEIGHTING_COUNT && methods[c->weighting]->scales != TL_SCALES_NONE;
}

uint64_t tl_weighting_memory(const tl_model_config *c, uint64_t param_floats)
{
    if ((unsigned)c->weighting >= TL_WEIGHTING_COUNT ||
        !tl_weighting_uses_task_grads(methods[c->weighting], &c->wopt))
        return 0;
    return (uint64_t)c->n_tasks * param_floats * sizeof(float);
}

static tl_status build(void *st, const tl_model_view *v, tl_build_stage stage)
{
    tl_weighting_state *w = st;
    tl_graph *g = v->g;
    int K = v->cfg->n_tasks;
    w->m = methods[v->cfg->weighting];
    if (stage == TL_BUILD_TOWER_INPUTS) { /* the cut a rep_grads method's passes split at */
        w->n_below = tl_graph_node_count(g);
        for (int k = 0; k < K; k++) w->rep[k] = v->tower_in[k];
        return TL_OK;
    }
    if (stage != TL_BUILD_LOSSES) return TL_OK;
    w->scales = w->m->scales;
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
        if (w->scales != TL_SCALES_NONE) {
            snprintf(name, sizeof name, "logvar.%s", t);
            tl_node s = w->logvar[k] = tl_param(g, 1, 1, TL_INIT_ZEROS, 0.0f, name);
            if (w->scales == TL_SCALES_UNCERTAINTY) {
                tl_node prec = tl_exp(g, tl_scale(g, s, -1.0f));
                term = tl_add(g, tl_scale(g, tl_mul(g, term, prec), 0.5f), tl_scale(g, s, 0.5f));
            } else {
                term = tl_sub(g, tl_mul(g, term, tl_exp(g, s)), s);
            }
        }
        term = tl_mul(g, term, w->coef[k]);
        total = total == TL_NONE ? term : tl_add(g, total, term);
    }
    if (*v->extra != TL_NONE) total = tl_add(g, total, tl_mul(g, *v->extra, *v->extra_coef));
    *v->total = tl_node_name(g, total, "total_loss");
    return TL_OK;
}

static void free_buffers(tl_weighting_state *w)
{
    tl_free_aligned(w->task_grads);
    tl_free_aligned(w->w_grad_before);
    tl_free_aligned(w->gn_sum);
    tl_free_aligned(w->db_ema);
    tl_free_aligned(w->rep_grads);
    tl_free_aligned(w->rep_cols);
    w->task_grads = w->w_grad_before = w->gn_sum = w->db_ema = w->rep_grads = NULL;
    w->rep_cols = NULL;
}

/* The nodes the split backward of the rep_grads methods starts the shared
 * part from: the representations, and a loss term outside the tasks that
 * the backbone computes below them (DSelect-k's regulariser), whose
 * gradient the towers' passes leave there. Returns their count. */
static int rep_seeds(const tl_weighting_state *w, const tl_model_view *v, tl_node *seed)
{
    int K = v->cfg->n_tasks;
    for (int k = 0; k < K; k++) seed[k] = w->rep[k];
    if (*v->extra != TL_NONE && *v->extra < w->n_below) seed[K++] = *v->extra;
    return K;
}

/* The buffers of w->m. */
static tl_status setup(tl_weighting_state *w, const tl_model_view *v)
{
    size_t pf;
    tl_graph_params(v->g, &pf);
    int K = v->cfg->n_tasks;
    if (tl_weighting_uses_task_grads(w->m, &v->cfg->wopt)) {
        w->task_grads = tl_malloc_aligned((size_t)K * pf * sizeof(float), "per-task gradients");
        if (!w->task_grads) return TL_ERR_NOMEM;
    }
    if (tl_weighting_uses_rep_grads(w->m, &v->cfg->wopt)) {
        tl_node seed[TL_MAX_TASKS + 1];
        tl_status s = tl_graph_cut_check(v->g, w->n_below, rep_seeds(w, v, seed), seed);
        if (s != TL_OK)
            return tl_fail_context(TL_ERR_ARG, "%s: this model's towers do not read only the "
                                               "backbone's outputs, so its task gradients cannot be "
                                               "taken there", tl_weighting_name(v->cfg->weighting));
        int cols = tl_node_cols(v->g, w->rep[0]);
        for (int k = 1; k < K; k++)
            if (tl_node_cols(v->g, w->rep[k]) != cols)
                return tl_fail(TL_ERR_ARG, "%s: the tasks' representations differ in width (%d and "
                                           "%d columns)", tl_weighting_name(v->cfg->weighting), cols, tl_node_cols(v->g, w->rep[k]));
        size_t n = (size_t)K * (size_t)tl_graph_max_batch(v->g) * (size_t)cols;
        w->rep_grads = tl_malloc_aligned(n * sizeof(float), "per-task representation gradients");
        w->rep_cols = tl_malloc_aligned((size_t)K * (size_t)cols * sizeof(double), "per-column sums");
        if (!w->rep_grads || !w->rep_cols) return TL_ERR_NOMEM;
    }
    return w->m->setup ? w->m->setup(w, v) : TL_OK;
}

static tl_status planned(void *st, const tl_model_view *v)
{
    tl_weighting_state *w = st;
    tl_status s = setup(w, v);
    if (s != TL_OK) return s;
    tl_weighting_apply(w, v);
    return TL_OK;
}

static void weighting_free(void *st) { free_buffers(st); }

int tl_weighting_can_switch(const tl_weighting_state *w, tl_weighting to, const char **why)
{
    *why = NULL;
    if ((unsigned)to >= TL_WEIGHTING_COUNT) {
        *why = "unknown weighting";
        return 0;
    }
    if (methods[to]->scales != w->scales) {
        *why = w->scales != TL_SCALES_NONE
                   ? "the model's graph learns loss scales for its method; build a new model "
                     "for another method"
                   : "this method learns loss scales in the graph; build the model with it "
                     "(tl.model{weighting=...})";
        return 0;
    }
    return 1;
}

tl_status tl_weighting_switch(tl_weighting_state *w, const tl_model_view *v)
{
    free_buffers(w);
    w->m = methods[v->cfg->weighting];
    for (int k = 0; k < TL_MAX_TASKS; k++) w->factor[k] = 1.0f;
    memset(w->gn_initial, 0, sizeof w->gn_initial);
    w->gn_have_initial = 0;
    memset(w->dwa_hist, 0, sizeof w->dwa_hist);
    w->dwa_epochs = 0;
    w->has_shown = 0;
    memset(w->vec, 0, sizeof w->vec);
    memset(w->ema, 0, sizeof w->ema);
    w->count = 0;
    w->epochs = 0;
    tl_status s = setup(w, v);
    tl_weighting_apply(w, v);
    return s;
}

/* The factor on the loss terms outside the tasks: 1, or under data
 * parallelism the run's share of them: 0 for a run without rows; AITM's
 * constraint, a mean over the rows a run holds, times the run's share of the
 * batch's rows; DSelect-k's regulariser, a sum over rows, whole (fit refuses
 * CrossDistil's terms there). */
static float extra_share(const tl_model_view *v)
{
    if (!v->reduce_grads || v->dp_batch_rows <= 0) return 1.0f;
    if (v->dp_run_rows <= 0) return 0.0f;
    if (v->cfg->backbone.kind != TL_BACKBONE_AITM) return 1.0f;
    return (float)v->dp_run_rows / (float)v->dp_batch_rows;
}

void tl_weighting_apply(tl_weighting_state *w, const tl_model_view *v)
{
    for (int k = 0; k < v->cfg->n_tasks; k++)
        tl_graph_set_scalar(v->g, w->coef[k], v->cfg->tasks[k].weight * w->factor[k]);
    tl_graph_set_scalar(v->g, *v->extra_coef, extra_share(v));
}

float tl_weighting_effective(const tl_weighting_state *w, const tl_model_view *v, int k)
{
    if (w->has_shown) return w->shown[k];
    float e = v->cfg->tasks[k].weight * w->factor[k];
    const float *s = w->logvar[k] != TL_NONE ? tl_graph_value(v->g, w->logvar[k]) : NULL;
    if (s && w->scales == TL_SCALES_UNCERTAINTY) e *= 0.5f * expf(-s[0]);
    if (s && w->scales == TL_SCALES_IMTL) e *= expf(s[0]);
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

tl_status tl_weighting_task_pass(tl_weighting_state *w, const tl_model_view *v, int k, float scale)
{
    int K = v->cfg->n_tasks;
    for (int j = 0; j < K; j++)
        tl_graph_set_scalar(v->g, w->coef[j], j == k ? v->cfg->tasks[j].weight * scale : 0.0f);
    tl_graph_set_scalar(v->g, *v->extra_coef, k == K - 1 ? extra_share(v) : 0.0f);
    tl_status s = tl_graph_backward_run(v->g);
    tl_weighting_apply(w, v);
    return s;
}

tl_status tl_weighting_reduce(tl_weighting_state *w, const tl_model_view *v, int task, float scale)
{
    if (!v->reduce_grads) return TL_OK;
    if (w->scales != TL_SCALES_NONE && v->dist->rank != 0) {
        float *grads = tl_graph_grads(v->g, NULL);
        for (int k = 0; k < v->cfg->n_tasks; k++) {
            if (task >= 0 && k != task) continue;
            /* d/ds_k of c_k 0.5 s_k, or of c_k (-s_k) */
            float c = v->cfg->tasks[k].weight * (task >= 0 ? scale : w->factor[k]);
            const tl_param_info *p = tl_graph_param(v->g, tl_graph_param_index(v->g, w->logvar[k]));
            grads[p->offset] -= w->scales == TL_SCALES_UNCERTAINTY ? 0.5f * c : -c;
        }
    }
    return v->reduce_grads(v->model);
}

tl_status tl_weighting_dp_sum(const tl_model_view *v, double *x, int n, const char *what)
{
    /* reduce_grads marks a data-parallel fit (a model distributed for
     * evaluation keeps v->dist in an ordinary fit too) */
    if (!v->reduce_grads || !v->dist || v->dist->size == 1 || n <= 0) return TL_OK;
    const void *got = NULL; /* the group's buffer (dist.h) */
    tl_status s = tl_dist_allgather(v->dist, x, (size_t)n * sizeof *x, &got);
    if (s != TL_OK) return tl_fail_context(s, "%s: rank %d: summing %s over the ranks",
                                           tl_weighting_name(v->cfg->weighting), v->dist->rank, what);
    const double *all = got;
    for (int i = 0; i < n; i++) {
        double acc = all[i];
        for (int q = 1; q < v->dist->size; q++) acc += all[(size_t)q * (size_t)n + (size_t)i];
        x[i] = acc;
    }
    return TL_OK;
}

static size_t shared_end_of(const tl_model_view *v)
{
    if (*v->n_shared_params == 0) return 0;
    const tl_param_info *last = tl_graph_param(v->g, *v->n_shared_params - 1);
    return last->offset + (size_t)last->rows * (size_t)last->cols;
}

tl_status tl_weighting_task_grads(tl_weighting_state *w, const tl_model_view *v, const float *scale,
                                  size_t *pf, size_t *shared_end)
{
    int K = v->cfg->n_tasks;
    float *grads = tl_graph_grads(v->g, pf);
    *shared_end = shared_end_of(v);
    for (int k = 0; k < K; k++) {
        float sk = scale ? scale[k] : w->factor[k];
        tl_status s = tl_weighting_task_pass(w, v, k, sk);
        /* under data parallelism: this task's gradient summed over the ranks */
        if (s == TL_OK) s = tl_weighting_reduce(w, v, k, sk);
        if (s != TL_OK) return s;
        memcpy(w->task_grads + (size_t)k * *pf, grads, *pf * sizeof(float));
        if (k + 1 < K) memset(grads, 0, *pf * sizeof(float)); /* keeps the touched-row lists */
    }
    return TL_OK;
}

typedef struct {
    float *grads, *dst;
} span_copy;

static void copy_and_clear(size_t off, size_t len, void *ctx)
{
    span_copy *c = ctx;
    memcpy(c->dst + off, c->grads + off, len * sizeof(float));
    memset(c->grads + off, 0, len * sizeof(float));
}

tl_status tl_weighting_shared_grads(tl_weighting_state *w, const tl_model_view *v, const float *scale,
                                    size_t *pf)
{
    int K = v->cfg->n_tasks;
    span_copy c = {tl_graph_grads(v->g, pf), NULL};
    size_t se = shared_end_of(v), rest = *pf - se;
    for (int k = 0; k < K; k++) {
        float sk = scale ? scale[k] : w->factor[k];
        c.dst = w->task_grads + (size_t)k * *pf;
        /* under data parallelism each pass is summed over the ranks alone:
         * the towers' sum of the passes before waits in the row's tower part */
        if (v->reduce_grads) {
            memcpy(c.dst + se, c.grads + se, rest * sizeof(float));
            memset(c.grads + se, 0, rest * sizeof(float));
        }
        tl_status s = tl_weighting_task_pass(w, v, k, sk);
        if (s == TL_OK) s = tl_weighting_reduce(w, v, k, sk);
        if (s != TL_OK) return s;
        tl_weighting_shared_spans(v, copy_and_clear, &c);
        if (v->reduce_grads)
            for (size_t x = se; x < *pf; x++) c.grads[x] += c.dst[x];
    }
    return TL_OK;
}

tl_status tl_weighting_rep_grads(tl_weighting_state *w, const tl_model_view *v, int *rows, int *cols)
{
    int K = v->cfg->n_tasks;
    *rows = tl_graph_batch(v->g);
    *cols = tl_node_cols(v->g, w->rep[0]);
    size_t n = (size_t)*rows * (size_t)*cols;
    tl_node seed[TL_MAX_TASKS + 1];
    int ns = rep_seeds(w, v, seed);
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < K; j++)
            tl_graph_set_scalar(v->g, w->coef[j], j == k ? v->cfg->tasks[j].weight * w->factor[j] : 0.0f);
        /* the term outside the tasks rides with the last task's pass: its
         * seed keeps that pass's gradient for the shared part */
        tl_graph_set_scalar(v->g, *v->extra_coef, k == K - 1 ? extra_share(v) : 0.0f);
        tl_status s = tl_graph_backward_run_above(v->g, w->n_below, ns, seed);
        if (s != TL_OK) return s;
        /* shared-bottom: every task reads one node, which holds task k's alone */
        memcpy(w->rep_grads + (size_t)k * n, tl_graph_grad(v->g, w->rep[k]), n * sizeof(float));
    }
    tl_weighting_apply(w, v);
    return TL_OK;
}

tl_status tl_weighting_rep_backward(tl_weighting_state *w, const tl_model_view *v, const float *seed)
{
    int K = v->cfg->n_tasks;
    size_t n = (size_t)tl_graph_batch(v->g) * (size_t)tl_node_cols(v->g, w->rep[0]);
    for (int k = 0; k < K; k++) {
        float *g = tl_graph_grad(v->g, w->rep[k]);
        int first = 1;
        for (int j = 0; j < k; j++) first &= w->rep[j] != w->rep[k];
        if (first) memset(g, 0, n * sizeof(float));
        const float *sk = seed + (size_t)k * n;
        for (size_t i = 0; i < n; i++) g[i] += sk[i];
    }
    tl_node seeds[TL_MAX_TASKS + 1];
    tl_status s = tl_graph_backward_run_below(v->g, w->n_below, rep_seeds(w, v, seeds), seeds);
    return s == TL_OK ? tl_weighting_reduce(w, v, -1, 0.0f) : s;
}

tl_status tl_weighting_backward_with(tl_weighting_state *w, const tl_model_view *v, const double *factor)
{
    for (int k = 0; k < v->cfg->n_tasks; k++) w->factor[k] = (float)factor[k];
    tl_weighting_apply(w, v);
    tl_status s = tl_graph_backward_run(v->g);
    return s == TL_OK ? tl_weighting_reduce(w, v, -1, 0.0f) : s;
}

void tl_weighting_softmax(const double *x, int K, double *z)
{
    double mx = -INFINITY, s = 0.0;
    for (int k = 0; k < K; k++) mx = x[k] > mx ? x[k] : mx;
    for (int k = 0; k < K; k++) s += (z[k] = exp(x[k] - mx));
    for (int k = 0; k < K; k++) z[k] /= s;
}

static tl_status backward(void *st, const tl_model_view *v, const tl_fit_point *f)
{
    tl_weighting_state *w = st;
    tl_graph_set_scalar(v->g, *v->extra_coef, extra_share(v)); /* the run's, under data parallelism */
    return w->m->backward ? w->m->backward(w, v, f) : tl_graph_backward_run(v->g);
}

/* WGHT: the task count, the factors and the GradNorm and DWA history every
 * method writes, then the method's own fields (methods added later; the
 * first five have none). */
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
        if (j == k) {
            c = 1.0f;
            const float *s = w->logvar[j] != TL_NONE ? tl_graph_value(v->g, w->logvar[j]) : NULL;
            if (s && w->scales == TL_SCALES_UNCERTAINTY) c = 2.0f * expf(s[0]);
            if (s && w->scales == TL_SCALES_IMTL) c = expf(-s[0]);
        }
        tl_graph_set_scalar(v->g, w->coef[j], c);
    }
    tl_graph_set_scalar(v->g, *v->extra_coef, 0.0f);
    tl_status st = tl_graph_backward_run(v->g);
    tl_weighting_apply(w, v);
    return st;
}

const tl_hook tl_weighting_hook = {
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
