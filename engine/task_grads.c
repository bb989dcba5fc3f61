/* task_grads.c — per-task gradient diagnostics, a strategy behind the hook
 * table (contracts in task_grads.h). */
#include "task_grads.h"

#include <math.h>
#include <string.h>

struct tl_task_grads_state {
    int every;            /* fit{diagnostics=N}; 0 = off */
    tl_diag_record *hist;
    size_t n_hist, cap_hist;
    float *grads;         /* n_tasks x the shared parameters' floats */
};

void tl_task_grads_every(tl_task_grads_state *t, int every) { t->every = every > 0 ? every : 0; }

/* Floats of the shared parameters (one span at the start of the block). */
static size_t shared_floats(const tl_model_view *v)
{
    if (*v->n_shared_params <= 0) return 0;
    const tl_param_info *p = tl_graph_param(v->g, *v->n_shared_params - 1);
    return p->offset + (size_t)p->rows * (size_t)p->cols;
}

/* Forward in training mode with the dropout RNG put back afterwards. */
static tl_status forward(const tl_model_view *v)
{
    tl_rng *r = tl_graph_rng(v->g), saved = *r;
    tl_status st = tl_graph_forward(v->g, 1);
    *r = saved;
    return st;
}

tl_status tl_task_grads_one(const tl_model_view *v, int k, float *out)
{
    if (k < 0 || k >= v->cfg->n_tasks)
        return tl_fail(TL_ERR_ARG, "task index %d outside 1..%d", k + 1, v->cfg->n_tasks);
    size_t pf;
    float *grads = tl_graph_grads(v->g, &pf);
    tl_status st = forward(v);
    if (st == TL_OK) st = v->task_backward(v->model, k);
    if (st == TL_OK) memcpy(out, grads, pf * sizeof(float));
    tl_graph_zero_grad(v->g);
    return st;
}

tl_status tl_task_grads_record(tl_task_grads_state *t, const tl_model_view *v, tl_diag_record *r)
{
    int K = v->cfg->n_tasks;
    size_t n = shared_floats(v);
    if (!t->grads) {
        t->grads = tl_malloc_aligned(((size_t)K * n + 1) * sizeof(float), "task gradients");
        if (!t->grads) return TL_ERR_NOMEM;
    }
    float *grads = tl_graph_grads(v->g, NULL);
    tl_status st = forward(v);
    for (int k = 0; k < K && st == TL_OK; k++) {
        st = v->task_backward(v->model, k);
        if (st == TL_OK) memcpy(t->grads + (size_t)k * n, grads, n * sizeof(float));
        tl_graph_zero_grad(v->g);
    }
    if (st != TL_OK) {
        tl_graph_zero_grad(v->g);
        return tl_fail_context(st, "diagnostics");
    }
    double dot[TL_MAX_TASKS][TL_MAX_TASKS];
    for (int a = 0; a < K; a++) {
        const float *ga = t->grads + (size_t)a * n;
        for (int b = a; b < K; b++) {
            const float *gb = t->grads + (size_t)b * n;
            double sum = 0.0;
            for (size_t i = 0; i < n; i++) sum += (double)ga[i] * (double)gb[i];
            dot[a][b] = dot[b][a] = sum;
        }
    }
    for (int a = 0; a < K; a++) {
        r->grad_norm[a] = (float)sqrt(dot[a][a]);
        r->weight[a] = v->effective_weight(v->model, a);
        for (int b = 0; b < K; b++)
            r->grad_cos[a][b] = dot[a][a] > 0.0 && dot[b][b] > 0.0
                                    ? (float)(dot[a][b] / sqrt(dot[a][a] * dot[b][b]))
                                    : NAN;
    }
    return TL_OK;
}

/* With the batch of step *v->step + 1 in the graph: a record every `every`
 * steps. */
static tl_status step_ready(void *st, const tl_model_view *v)
{
    tl_task_grads_state *t = st;
    if (t->every <= 0 || (*v->step + 1) % t->every != 0) return TL_OK;
    if (t->n_hist == t->cap_hist) {
        size_t cap = t->cap_hist ? 2 * t->cap_hist : 64;
        tl_diag_record *h = tl_realloc(t->hist, cap * sizeof *h, "diagnostics history");
        if (!h) return TL_ERR_NOMEM;
        t->hist = h;
        t->cap_hist = cap;
    }
    tl_diag_record *r = &t->hist[t->n_hist];
    memset(r, 0, sizeof *r);
    r->step = *v->step + 1;
    r->epoch = *v->epoch + 1;
    tl_status s = tl_task_grads_record(t, v, r);
    if (s == TL_OK) t->n_hist++;
    return s;
}

size_t tl_task_grads_history(const tl_task_grads_state *t, const tl_diag_record **out)
{
    *out = t->hist;
    return t->n_hist;
}

static void task_grads_free(void *st)
{
    tl_task_grads_state *t = st;
    tl_free(t->hist);
    tl_free_aligned(t->grads);
}

const tl_hook tl_task_grads_hook = {
    .name = "task gradients",
    .size = sizeof(tl_task_grads_state),
    .step_ready = step_ready,
    .free = task_grads_free,
};
