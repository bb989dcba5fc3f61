/* losses/weighting_grad.c — the methods that combine per-task gradients:
 * PCGrad and DB-MTL on the shared parameters (one backward pass per task;
 * PCGrad at='rep' on the representations' Gram matrix),
 * GradDrop at the representations the towers read (one pass per task through
 * the towers, one through the shared part). Formulas and defaults:
 * weighting.h. */
#include "weighting.h"

#include <math.h>
#include <string.h>

#include "gram.h"

/* ---- PCGrad (Yu et al. 2020) ------------------------------------------------- */

/* at='rep': PCGrad on the Gram matrix of the task gradients at the
 * representations (losses/gram.c, the same projections written on G), the
 * Gram family's backward (weighting_gram.c) around it. */
static tl_status pcgrad_solve(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                              double *alpha, double *scale)
{
    (void)w, (void)scale;
    return tl_gram_pcgrad(G, K, v->rng, alpha);
}

static tl_status pcgrad_backward(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    if (v->cfg->wopt.at == TL_AT_REP) return tl_weighting_gram_backward(w, v, f);
    int K = v->cfg->n_tasks;
    size_t pf, shared_end;
    float *grads = tl_graph_grads(v->g, NULL);
    tl_status st = tl_weighting_task_grads(w, v, NULL, &pf, &shared_end);
    if (st != TL_OK) return st;
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

/* .solve serves at='rep' only (at='params' keeps its own projections above) */
const tl_weighting_method tl_wm_pcgrad = { .dp = TL_DP_REDUCES, .solve = pcgrad_solve, .backward = pcgrad_backward};

/* ---- DB-MTL (Lin et al. 2023) -------------------------------------------------- */

void tl_weighting_shared_spans(const tl_model_view *v, void (*fn)(size_t off, size_t len, void *ctx),
                               void *ctx)
{
    for (int i = 0; i < *v->n_shared_params; i++) {
        const tl_param_info *p = tl_graph_param(v->g, i);
        int n;
        const int32_t *rows = tl_graph_touched_rows(v->g, i, &n);
        if (n < 0) {
            fn(p->offset, (size_t)p->rows * (size_t)p->cols, ctx);
            continue;
        }
        for (int r = 0; r < n; r++) fn(p->offset + (size_t)rows[r] * (size_t)p->cols, (size_t)p->cols, ctx);
    }
}

typedef struct {
    tl_weighting_state *w;
    int K;
    size_t pf, se;
    double b;                  /* EMA: buffer = g + b (buffer - g) */
    float alpha[TL_MAX_TASKS];
    float *out;
} db_pass;

static void db_ema(size_t off, size_t len, void *ctx)
{
    db_pass *d = ctx;
    for (int k = 0; k < d->K; k++) {
        float *e = d->w->db_ema + (size_t)k * d->se + off;
        const float *g = d->w->task_grads + (size_t)k * d->pf + off;
        for (size_t x = 0; x < len; x++) e[x] = (float)((double)g[x] + d->b * ((double)e[x] - (double)g[x]));
    }
}

static void db_combine(size_t off, size_t len, void *ctx)
{
    db_pass *d = ctx;
    for (size_t x = off; x < off + len; x++) {
        float acc = 0.0f;
        for (int k = 0; k < d->K; k++) acc += d->alpha[k] * d->w->db_ema[(size_t)k * d->se + x];
        d->out[x] = acc;
    }
}

static size_t shared_floats(const tl_model_view *v)
{
    if (*v->n_shared_params == 0) return 0;
    const tl_param_info *last = tl_graph_param(v->g, *v->n_shared_params - 1);
    return last->offset + (size_t)last->rows * (size_t)last->cols;
}

static tl_status db_setup(tl_weighting_state *w, const tl_model_view *v)
{
    size_t n = (size_t)v->cfg->n_tasks * shared_floats(v);
    w->db_ema = tl_malloc_aligned((n ? n : 1) * sizeof(float), "db_mtl gradient EMA");
    if (!w->db_ema) return TL_ERR_NOMEM;
    memset(w->db_ema, 0, n * sizeof(float));
    return TL_OK;
}

static tl_status db_backward(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    int K = v->cfg->n_tasks;
    float scale[TL_MAX_TASKS];
    for (int k = 0; k < K; k++) scale[k] = (float)(1.0 / ((double)f->task_loss[k] + 1e-8)); /* log L_k */
    db_pass d = {.w = w, .K = K, .se = shared_floats(v)};
    tl_status s = tl_weighting_shared_grads(w, v, scale, &d.pf);
    if (s != TL_OK) return s;
    w->count++;
    d.b = (double)v->cfg->wopt.db_beta / pow((double)w->count, (double)v->cfg->wopt.db_beta_sigma);
    tl_weighting_shared_spans(v, db_ema, &d);
    double norm[TL_MAX_TASKS], mx = 0.0;
    for (int k = 0; k < K; k++) {
        double ss = 0.0;
        const float *e = w->db_ema + (size_t)k * d.se;
        for (size_t x = 0; x < d.se; x++) ss += (double)e[x] * (double)e[x];
        norm[k] = sqrt(ss);
        mx = norm[k] > mx ? norm[k] : mx;
    }
    for (int k = 0; k < K; k++) {
        d.alpha[k] = (float)(mx / (norm[k] + 1e-8));
        w->shown[k] = d.alpha[k] * v->cfg->tasks[k].weight * scale[k];
    }
    w->has_shown = 1;
    d.out = tl_graph_grads(v->g, NULL); /* the towers' hold the sum of the log-loss gradients */
    tl_weighting_shared_spans(v, db_combine, &d);
    return TL_OK;
}

static void db_codec(tl_weighting_state *w, int K, tl_codec *c)
{
    (void)K;
    tl_codec_i64(c, &w->count);
}

static void db_check(const tl_weighting_state *w, int K, tl_rbuf *r)
{
    (void)K;
    tl_codec_want_int(r, "db_mtl steps", w->count, 0, TL_CODEC_MAX_STEPS);
}

const tl_weighting_method tl_wm_db_mtl = { .dp = TL_DP_REDUCES, .per_task_grads = 1, .setup = db_setup, .backward = db_backward,
    .codec = db_codec, .check = db_check};

/* ---- GradDrop (Chen et al. 2020) -------------------------------------------------- */

void tl_weighting_graddrop_mask(const double *G, int K, double u, int *keep)
{
    double sum = 0.0, abs = 0.0;
    for (int k = 0; k < K; k++) {
        sum += G[k];
        abs += fabs(G[k]);
    }
    double P = 0.5 * (1.0 + sum / (abs + 1e-7));
    for (int k = 0; k < K; k++) keep[k] = (P > u && G[k] > 0.0) || (P < u && G[k] < 0.0);
}

/* w->rep_cols: per task and column, G then the mask multiplier */
static tl_status graddrop_backward(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f)
{
    (void)f;
    int K = v->cfg->n_tasks, rows, cols;
    tl_status s = tl_weighting_rep_grads(w, v, &rows, &cols);
    if (s != TL_OK) return s;
    size_t n = (size_t)rows * (size_t)cols;
    double leak = (double)v->cfg->wopt.graddrop_leak, *G = w->rep_cols;
    memset(G, 0, (size_t)K * (size_t)cols * sizeof *G);
    for (int k = 0; k < K; k++) { /* row by row: the memory order */
        const float *g = w->rep_grads + (size_t)k * n, *x = tl_graph_value(v->g, w->rep[k]);
        double *Gk = G + (size_t)k * cols;
        for (size_t i = 0; i < n; i++) {
            float xv = x[i], gv = g[i];
            Gk[i % (size_t)cols] += (double)(xv > 0.0f ? gv : xv < 0.0f ? -gv : 0.0f);
        }
    }
    /* sums over the batch: under data parallelism, over every rank's rows */
    if ((s = tl_weighting_dp_sum(v, G, K * cols, "the sign sums")) != TL_OK) return s;
    for (int j = 0; j < cols; j++) {
        double Gj[TL_MAX_TASKS];
        int keep[TL_MAX_TASKS];
        for (int k = 0; k < K; k++) Gj[k] = G[(size_t)k * cols + j];
        tl_weighting_graddrop_mask(Gj, K, tl_rng_uniform_double(v->rng), keep);
        for (int k = 0; k < K; k++) G[(size_t)k * cols + j] = leak + (1.0 - leak) * keep[k];
    }
    /* history shows the direction's cosine with each task's gradient at the
     * representation: dd = |d|^2, gg = |g_k|^2, dg = d.g_k */
    double sums[1 + 2 * TL_MAX_TASKS] = {0}, *gg = sums + 1, *dg = sums + 1 + K;
    for (size_t i = 0; i < n; i++) {
        size_t j = i % (size_t)cols;
        double d = 0.0;
        for (int k = 0; k < K; k++) d += G[(size_t)k * cols + j] * (double)w->rep_grads[(size_t)k * n + i];
        sums[0] += d * d;
        for (int k = 0; k < K; k++) {
            float *gk = w->rep_grads + (size_t)k * n + i;
            gg[k] += (double)*gk * (double)*gk;
            dg[k] += d * (double)*gk;
            *gk = (float)((double)*gk * G[(size_t)k * cols + j]);
        }
    }
    if ((s = tl_weighting_dp_sum(v, sums, 1 + 2 * K, "the cosines")) != TL_OK) return s;
    double dd = sums[0];
    for (int k = 0; k < K; k++) w->shown[k] = (float)(dd > 0.0 && gg[k] > 0.0 ? dg[k] / sqrt(dd * gg[k]) : 0.0);
    w->has_shown = 1;
    return tl_weighting_rep_backward(w, v, w->rep_grads);
}

const tl_weighting_method tl_wm_graddrop = { .dp = TL_DP_REDUCES, .rep_grads = 1, .backward = graddrop_backward};
