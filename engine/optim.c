/* optim.c — optimizers with lazy (row-sparse) updates for embedding tables. */
#include "optim.h"

#include <math.h>
#include <string.h>

struct tl_optim {
    tl_graph *g;
    tl_optim_config cfg;
    float *state[2]; /* SGD: momentum; Adam: m, v; Adagrad: accumulator */
    int nblocks;
    size_t floats;
    int64_t steps;
    float last_norm;
};

tl_optim_config tl_optim_defaults(tl_optim_kind kind)
{
    tl_optim_config c = {0};
    c.kind = kind;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    switch (kind) {
    case TL_OPTIM_SGD: c.lr = 0.01f; break;
    case TL_OPTIM_ADAM: c.lr = 1e-3f; c.eps = 1e-8f; break;
    case TL_OPTIM_ADAMW: c.lr = 1e-3f; c.eps = 1e-8f; c.weight_decay = 0.01f; break;
    case TL_OPTIM_ADAGRAD: c.lr = 0.01f; c.eps = 1e-10f; break;
    }
    return c;
}

static const char *names[] = {"sgd", "adam", "adamw", "adagrad"};

tl_status tl_optim_parse(const char *name, tl_optim_kind *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (tl_optim_kind)i;
            return TL_OK;
        }
    return tl_fail(TL_ERR_ARG, "unknown optimizer '%s' (expected sgd, adam, adamw or adagrad)",
                   name);
}

const char *tl_optim_name(tl_optim_kind kind) { return (unsigned)kind < 4 ? names[kind] : "?"; }

tl_optim *tl_optim_new(tl_graph *g, const tl_optim_config *cfg)
{
    if (!(cfg->lr > 0.0f) || !isfinite(cfg->lr)) {
        tl_fail(TL_ERR_ARG, "optimizer learning rate must be positive and finite, got %g",
                (double)cfg->lr);
        return NULL;
    }
    if (cfg->beta1 < 0.0f || cfg->beta1 >= 1.0f || cfg->beta2 < 0.0f || cfg->beta2 >= 1.0f ||
        cfg->momentum < 0.0f || cfg->weight_decay < 0.0f || cfg->clip_norm < 0.0f) {
        tl_fail(TL_ERR_ARG, "optimizer: betas must be in [0, 1); momentum, weight decay and "
                            "clip norm must be >= 0");
        return NULL;
    }
    size_t n;
    if (!tl_graph_params(g, &n)) {
        tl_fail(TL_ERR_STATE, "optimizer created for a graph that is not planned");
        return NULL;
    }
    tl_optim *o = tl_calloc(1, sizeof *o, "optimizer");
    if (!o) return NULL;
    o->g = g;
    o->cfg = *cfg;
    o->floats = n;
    o->nblocks = cfg->kind == TL_OPTIM_ADAM || cfg->kind == TL_OPTIM_ADAMW ? 2 : 1;
    for (int b = 0; b < o->nblocks; b++) {
        o->state[b] = tl_malloc_aligned((n ? n : 1) * sizeof(float), "optimizer state");
        if (!o->state[b]) {
            tl_optim_free(o);
            return NULL;
        }
        float init = cfg->kind == TL_OPTIM_ADAGRAD ? cfg->initial_accumulator : 0.0f;
        for (size_t i = 0; i < n; i++) o->state[b][i] = init;
    }
    return o;
}

void tl_optim_free(tl_optim *o)
{
    if (!o) return;
    for (int b = 0; b < 2; b++) tl_free_aligned(o->state[b]);
    tl_free(o);
}

/* Update `len` contiguous floats starting at offset `off`. */
static void update_span(tl_optim *o, float *w, const float *gr, size_t off, size_t len, float gscale,
                        float bc1, float bc2)
{
    const tl_optim_config *c = &o->cfg;
    float *s0 = o->state[0] + off, *s1 = o->nblocks > 1 ? o->state[1] + off : NULL;
    w += off;
    gr += off;
    switch (c->kind) {
    case TL_OPTIM_SGD:
        for (size_t i = 0; i < len; i++) {
            float gi = gr[i] * gscale + c->weight_decay * w[i];
            if (c->momentum > 0.0f) {
                s0[i] = c->momentum * s0[i] + gi;
                gi = c->nesterov ? gi + c->momentum * s0[i] : s0[i];
            }
            w[i] -= c->lr * gi;
        }
        break;
    case TL_OPTIM_ADAM:
    case TL_OPTIM_ADAMW:
        for (size_t i = 0; i < len; i++) {
            float gi = gr[i] * gscale;
            if (c->kind == TL_OPTIM_ADAM)
                gi += c->weight_decay * w[i];
            else
                w[i] -= c->lr * c->weight_decay * w[i];
            s0[i] = c->beta1 * s0[i] + (1.0f - c->beta1) * gi;
            s1[i] = c->beta2 * s1[i] + (1.0f - c->beta2) * gi * gi;
            w[i] -= c->lr * (s0[i] / bc1) / (sqrtf(s1[i] / bc2) + c->eps);
        }
        break;
    case TL_OPTIM_ADAGRAD:
        for (size_t i = 0; i < len; i++) {
            float gi = gr[i] * gscale + c->weight_decay * w[i];
            s0[i] += gi * gi;
            w[i] -= c->lr * gi / (sqrtf(s0[i]) + c->eps);
        }
        break;
    }
}

static double span_sumsq(const float *gr, size_t len)
{
    double s = 0.0;
    for (size_t i = 0; i < len; i++) s += (double)gr[i] * (double)gr[i];
    return s;
}

tl_status tl_optim_step(tl_optim *o)
{
    tl_graph *g = o->g;
    float *w = tl_graph_params(g, NULL), *gr = tl_graph_grads(g, NULL);
    int np = tl_graph_param_count(g);

    /* Global norm over exactly the values this step will apply. */
    double sumsq = 0.0;
    for (int i = 0; i < np; i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        int nrows;
        const int32_t *rows = tl_graph_touched_rows(g, i, &nrows);
        double s = 0.0;
        if (nrows < 0)
            s = span_sumsq(gr + p->offset, (size_t)p->rows * (size_t)p->cols);
        else
            for (int r = 0; r < nrows; r++)
                s += span_sumsq(gr + p->offset + (size_t)rows[r] * (size_t)p->cols, (size_t)p->cols);
        if (!isfinite(s)) {
            tl_graph_zero_grad(g);
            return tl_fail(TL_ERR_NUMERIC,
                           "non-finite gradient in parameter '%s' [%d x %d] at step %lld; "
                           "parameters left at the last good step",
                           p->name, p->rows, p->cols, (long long)o->steps + 1);
        }
        sumsq += s;
    }
    o->last_norm = (float)sqrt(sumsq);
    float gscale = 1.0f;
    if (o->cfg.clip_norm > 0.0f && o->last_norm > o->cfg.clip_norm)
        gscale = o->cfg.clip_norm / o->last_norm;

    o->steps++;
    /* In double: in float, 1 - beta2^t loses ~1e-5 relative to cancellation at small t. */
    float bc1 = (float)(1.0 - pow((double)o->cfg.beta1, (double)o->steps));
    float bc2 = (float)(1.0 - pow((double)o->cfg.beta2, (double)o->steps));
    for (int i = 0; i < np; i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        int nrows;
        const int32_t *rows = tl_graph_touched_rows(g, i, &nrows);
        if (nrows < 0)
            update_span(o, w, gr, p->offset, (size_t)p->rows * (size_t)p->cols, gscale, bc1, bc2);
        else
            for (int r = 0; r < nrows; r++)
                update_span(o, w, gr, p->offset + (size_t)rows[r] * (size_t)p->cols,
                            (size_t)p->cols, gscale, bc1, bc2);
    }
    tl_graph_zero_grad(g);
    return TL_OK;
}

float tl_optim_last_grad_norm(const tl_optim *o) { return o->last_norm; }
const tl_optim_config *tl_optim_get_config(const tl_optim *o) { return &o->cfg; }
void tl_optim_set_lr(tl_optim *o, float lr) { o->cfg.lr = lr; }
int64_t tl_optim_steps(const tl_optim *o) { return o->steps; }
void tl_optim_set_steps(tl_optim *o, int64_t steps) { o->steps = steps; }
int tl_optim_state_blocks(const tl_optim *o) { return o->nblocks; }

float *tl_optim_state(tl_optim *o, int block, size_t *floats)
{
    if (floats) *floats = o->floats;
    return block >= 0 && block < o->nblocks ? o->state[block] : NULL;
}
