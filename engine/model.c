/* model.c — a multi-task model's graph (input, backbone, towers, losses and
 * the attached strategies' nodes) and its life: build, memory budget, plan,
 * free, loss weights. The rest of module model is in models/: the fit loop
 * (model_fit.c), batches, prediction, evaluation and calibration
 * (model_eval.c), the checkpoint sections (model_io.c). */
#include "model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "losses/distill.h"
#include "losses/dml.h"
#include "losses/weighting.h"
#include "models/builders.h"
#include "models/model_impl.h"
#include "ops/bag.h"
#include "task_grads.h"

/* ---- building --------------------------------------------------------------- */

static tl_node dense_out(tl_graph *g, tl_node x, int out, const char *prefix)
{
    char wn[128], bn[128];
    snprintf(wn, sizeof wn, "%s.w", prefix);
    snprintf(bn, sizeof bn, "%s.b", prefix);
    tl_node w = tl_param(g, tl_node_cols(g, x), out, TL_INIT_XAVIER_UNIFORM, 0.0f, wn);
    tl_node b = tl_param(g, 1, out, TL_INIT_ZEROS, 0.0f, bn);
    return tl_linear(g, x, w, b, TL_ACT_NONE);
}

static tl_status hooks_build(tl_model *m, tl_build_stage stage)
{
    tl_status s = TL_OK;
    for (int i = 0; i < m->n_hooks && s == TL_OK; i++)
        if (m->hooks[i]->build) s = m->hooks[i]->build(m->hook_state[i], &m->view, stage);
    return s;
}

static tl_status build(tl_model *m)
{
    const tl_model_config *c = &m->cfg;
    tl_graph *g = m->g;
    int K = c->n_tasks;
    tl_node parts[2 + TL_MAX_BAGS];
    int np = 0;
    char name[96];

    if (c->n_cat > 0) {
        int64_t rows = 0;
        for (int f = 0; f < c->n_cat; f++) rows += c->vocab[f];
        if (rows > INT32_MAX) return tl_fail(TL_ERR_ARG, "model: vocabularies sum to %lld rows; "
                                                         "at most 2^31-1", (long long)rows);
        m->ids = tl_input_ids(g, c->n_cat, "ids");
        m->table = tl_param(g, (int)rows, c->emb_dim, TL_INIT_UNIFORM, 0.05f, "embedding");
        parts[np++] = tl_embedding(g, m->table, m->ids, c->n_cat, c->vocab);
    }
    /* each multi-valued field pooled into one vector, after the single ones */
    for (int b = 0; b < c->n_bag; b++) {
        snprintf(name, sizeof name, "bag.%s", c->bag_name[b]);
        m->bag_ids[b] = tl_input_ids(g, c->bag_len[b], name);
        snprintf(name, sizeof name, "bag.%s.embedding", c->bag_name[b]);
        m->bag_table[b] = tl_param(g, c->bag_vocab[b], c->emb_dim, TL_INIT_UNIFORM, 0.05f, name);
        parts[np++] = tl_embedding_bag(g, m->bag_table[b], m->bag_ids[b], (tl_bag_pool)c->bag_pool[b]);
    }
    if (c->n_num > 0) parts[np++] = m->num = tl_input(g, c->n_num, "numeric");
    tl_node x = np >= 2 ? tl_concat(g, np, parts) : parts[0];

    tl_node *h = m->tower_in, *logit = m->logit, *last_hidden = m->tower_out, z_prev = TL_NONE;
    tl_backbone_io io = {x, m->ids, m->num, TL_NONE, TL_NONE};
    if (!tl_build_backbone(g, c, &io, h, &m->last_shared))
        return tl_graph_status(g) != TL_OK ? tl_fail(tl_graph_status(g), "%s", tl_graph_errmsg(g))
                                           : TL_ERR_ARG;
    m->extra = io.extra;
    m->n_shared_params = tl_graph_param_count(g);
    tl_status s;
    if ((s = hooks_build(m, TL_BUILD_TOWER_INPUTS)) != TL_OK) return s;

    for (int k = 0; k < K; k++) {
        const tl_task_spec *ts = &c->tasks[k];
        snprintf(name, sizeof name, "tower.%s", ts->name);
        tl_node t = tl_build_mlp(g, h[k], &ts->tower, name);
        if (c->backbone.kind == TL_BACKBONE_AITM) {
            if (k > 0) t = tl_build_aitm_transfer(g, z_prev, t, ts->tower.units[ts->tower.n - 1], k);
            z_prev = t;
        }
        snprintf(name, sizeof name, "tower.%s.out", ts->name);
        logit[k] = dense_out(g, t, 1, name);
        last_hidden[k] = t;
    }
    if ((s = hooks_build(m, TL_BUILD_LOGITS)) != TL_OK) return s;
    for (int k = 0; k < K; k++) {
        const tl_task_spec *ts = &c->tasks[k];
        snprintf(name, sizeof name, "label.%s", ts->name);
        m->label[k] = tl_input(g, 1, name);
        snprintf(name, sizeof name, "rowweight.%s", ts->name);
        m->rowweight[k] = tl_input(g, 1, name);
        if (ts->type == TL_TASK_BINARY) {
            m->pred[k] = tl_sigmoid(g, logit[k]);
            m->loss[k] = tl_bce_logits(g, logit[k], m->label[k], m->rowweight[k]);
        } else {
            m->pred[k] = logit[k];
            m->loss[k] = tl_mse(g, logit[k], m->label[k], m->rowweight[k]);
        }
    }
    if (tl_backbone_is_esmm(&c->backbone)) {
        m->pcvr = m->pred[1];
        m->loss[1] = tl_build_esmm_ctcvr(g, m->pred[0], m->pcvr, m->label[1], m->rowweight[1], &m->pred[1]);
    }
    if (c->backbone.kind == TL_BACKBONE_AITM && K > 1)
        m->extra = tl_build_aitm_constraint(g, m->pred, K, c->backbone.constraint, &m->constraint_coef);
    for (int k = 0; k < K; k++) {
        tl_node_name(g, m->loss[k], c->tasks[k].name);
        m->objective[k] = m->loss[k];
    }
    if ((s = hooks_build(m, TL_BUILD_LOSSES)) != TL_OK) return s;
    if ((s = tl_graph_status(g)) != TL_OK) return tl_fail(s, "%s", tl_graph_errmsg(g));
    return tl_graph_backward(g, m->total);
}

/* The parts of a built (not yet planned) model's memory, in bytes. */
typedef struct {
    uint64_t params, grads, optim, best, task_grads, arena, sparse, total;
} memory_parts;

static memory_parts memory_of(tl_model *m, int max_batch)
{
    size_t pf = 0, af = 0, rows = 0;
    tl_graph_plan_size(m->g, max_batch, &pf, &af, &rows);
    memory_parts p;
    p.params = p.grads = p.best = (uint64_t)pf * sizeof(float);
    p.optim = 2 * p.params; /* Adam, the default: two moments per parameter */
    p.task_grads = tl_weighting_memory(&m->cfg, pf);
    p.arena = (uint64_t)af * sizeof(float);
    p.sparse = (uint64_t)rows * (sizeof(int32_t) + 1);
    p.total = p.params + p.grads + p.optim + p.best + p.task_grads + p.arena + p.sparse;
    return p;
}

/* Refuse a model whose memory exceeds the budget, before planning
 * allocates it. */
static tl_status check_memory(tl_model *m)
{
    memory_parts p = memory_of(m, m->cfg.max_batch);
    char a[24], b[24], c[24], what[256];
    snprintf(what, sizeof what, "the model (parameters %s, gradients as much, Adam state %s, "
                                "best-weights copy as much, activations for batch %d %s)",
             tl_memory_str(p.params, a, sizeof a), tl_memory_str(p.optim, b, sizeof b),
             m->cfg.max_batch, tl_memory_str(p.arena, c, sizeof c));
    tl_status s = tl_memory_check(p.total, m->cfg.max_memory, what);
    if (s != TL_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tl_errmsg());
        return tl_fail(s, "%s: make the model smaller (experts, layer widths, emb, batch) or raise "
                          "max_memory= (bytes) on tl.model", msg);
    }
    return TL_OK;
}

static tl_status task_backward(tl_model *m, int k)
{
    return tl_weighting_task_backward(m->weighting, &m->view, k);
}

/* The part of the model its strategies see (hooks.h). */
static void init_view(tl_model *m)
{
    tl_model_view *v = &m->view;
    v->cfg = &m->cfg;
    v->g = m->g;
    v->rng = &m->rng;
    v->loss = m->loss;
    v->objective = m->objective;
    v->extra = &m->extra;
    v->extra_coef = &m->extra_coef;
    v->total = &m->total;
    v->last_shared = &m->last_shared;
    v->n_shared_params = &m->n_shared_params;
    v->opt = &m->opt;
    v->tower_in = m->tower_in;
    v->tower_out = m->tower_out;
    v->logit = m->logit;
    v->step = &m->step;
    v->epoch = &m->epoch;
    v->label = m->label;
    v->rowweight = m->rowweight;
    v->pred = m->pred;
    v->model = m;
    v->fill_batch = tl_model_fill_batch;
    v->task_backward = task_backward;
    v->effective_weight = tl_model_effective_weight;
}

/* Attach strategy h with a new zeroed state; returns the state (NULL when
 * out of memory). */
static void *attach(tl_model *m, const tl_hook *h)
{
    void *st = tl_calloc(1, h->size, h->name);
    if (!st) return NULL;
    m->hooks[m->n_hooks] = h;
    m->hook_state[m->n_hooks++] = st;
    return st;
}

static tl_status hooks_planned(tl_model *m)
{
    tl_status s = TL_OK;
    for (int i = 0; i < m->n_hooks && s == TL_OK; i++)
        if (m->hooks[i]->planned) s = m->hooks[i]->planned(m->hook_state[i], &m->view);
    return s;
}

/* A model record with its graph built but not planned (no parameter memory
 * yet); tl_model_free releases it. */
static tl_status model_build(const tl_model_config *cfg, tl_model **out)
{
    *out = NULL;
    tl_status s = tl_model_config_check(cfg);
    if (s == TL_OK) s = tl_weighting_check(cfg);
    if (s != TL_OK) return s;
    tl_model *m = tl_calloc(1, sizeof *m, "model");
    if (!m) return TL_ERR_NOMEM;
    m->cfg = *cfg;
    for (int p = 0; p < cfg->distill.n_pairs && cfg->distill.order != 0; p++)
        m->cfg.distill.flip[p] = cfg->distill.order == 2;
    m->ids = m->num = m->table = m->pcvr = m->last_shared = TL_NONE;
    m->extra = m->constraint_coef = TL_NONE;
    for (int b = 0; b < TL_MAX_BAGS; b++) m->bag_ids[b] = m->bag_table[b] = TL_NONE;
    m->eval_in_space = 1;
    tl_rng_seed(&m->rng, cfg->seed ^ 0x9e3779b97f4a7c15ULL);
    m->g = tl_graph_new(cfg->max_batch, cfg->seed);
    init_view(m);
    /* the strategies, in the order their hooks run */
    if (m->g && cfg->dml.enabled && !(m->dml = attach(m, &tl_dml_hook))) s = TL_ERR_NOMEM;
    if (m->g && s == TL_OK && cfg->distill.enabled && !(m->distill = attach(m, &tl_distill_hook)))
        s = TL_ERR_NOMEM;
    if (m->g && s == TL_OK && !(m->weighting = attach(m, &tl_weighting_hook))) s = TL_ERR_NOMEM;
    if (m->g && s == TL_OK && !(m->task_grads = attach(m, &tl_task_grads_hook))) s = TL_ERR_NOMEM;
    if (!m->g || s != TL_OK || (s = build(m)) != TL_OK) {
        if (s == TL_OK) s = TL_ERR_NOMEM;
        tl_model_free(m);
        return s;
    }
    *out = m;
    return TL_OK;
}

tl_status tl_model_memory(const tl_model_config *c, uint64_t *bytes)
{
    tl_model *m;
    *bytes = 0;
    tl_status s = model_build(c, &m);
    if (s != TL_OK) return s;
    *bytes = memory_of(m, c->max_batch).total;
    tl_model_free(m);
    return TL_OK;
}

tl_status tl_model_new(const tl_model_config *cfg, tl_model **out)
{
    tl_model *m;
    *out = NULL;
    tl_status s = model_build(cfg, &m);
    if (s != TL_OK) return s;
    if ((s = check_memory(m)) != TL_OK || (s = tl_graph_plan(m->g)) != TL_OK ||
        (s = hooks_planned(m)) != TL_OK) {
        tl_model_free(m);
        return s;
    }
    *out = m;
    return TL_OK;
}

void tl_model_free(tl_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_hooks; i++) {
        if (m->hooks[i]->free) m->hooks[i]->free(m->hook_state[i]);
        tl_free(m->hook_state[i]);
    }
    for (int k = 0; k < TL_MAX_TASKS; k++) tl_calibrator_free(m->out_cal[k]);
    tl_optim_free(m->opt);
    tl_graph_free(m->g);
    tl_free(m->steps_hist);
    tl_free(m->epochs_hist);
    tl_free(m->evals_hist);
    tl_free_aligned(m->best);
    tl_free(m);
}

const tl_model_config *tl_model_config_get(const tl_model *m) { return &m->cfg; }
tl_graph *tl_model_graph(tl_model *m) { return m->g; }
tl_optim *tl_model_optim(tl_model *m) { return m->opt; }
int64_t tl_model_steps(const tl_model *m) { return m->step; }
int tl_model_epochs_done(const tl_model *m) { return m->epoch; }

size_t tl_model_param_count(const tl_model *m)
{
    size_t n = 0;
    for (int i = 0; i < tl_graph_param_count(m->g); i++) {
        const tl_param_info *p = tl_graph_param(m->g, i);
        n += (size_t)p->rows * (size_t)p->cols;
    }
    return n;
}

int tl_model_task_index(const tl_model *m, const char *name)
{
    for (int k = 0; k < m->cfg.n_tasks; k++)
        if (strcmp(m->cfg.tasks[k].name, name) == 0) return k;
    return -1;
}

tl_status tl_model_set_weight(tl_model *m, int task, float w)
{
    if (task < 0 || task >= m->cfg.n_tasks)
        return tl_fail(TL_ERR_ARG, "task index %d outside 1..%d", task + 1, m->cfg.n_tasks);
    if (!isfinite(w) || w < 0.0f)
        return tl_fail(TL_ERR_ARG, "task '%s': weight must be finite and >= 0, got %g",
                       m->cfg.tasks[task].name, (double)w);
    m->cfg.tasks[task].weight = w;
    tl_weighting_apply(m->weighting, &m->view);
    return TL_OK;
}

tl_status tl_model_set_weighting(tl_model *m, const tl_model_config *from)
{
    const char *why;
    if (!tl_weighting_can_switch(m->weighting, from->weighting, &why))
        return tl_fail(TL_ERR_ARG, "set_weighting: cannot switch from '%s' to '%s': %s",
                       tl_weighting_name(m->cfg.weighting), tl_weighting_name(from->weighting), why);
    tl_model_config c = m->cfg, was = m->cfg;
    c.weighting = from->weighting;
    c.wopt = from->wopt;
    c.gradnorm_alpha = from->gradnorm_alpha;
    c.dwa_temperature = from->dwa_temperature;
    tl_status s = tl_weighting_check(&c);
    if (s != TL_OK) return s;
    size_t pf;
    tl_graph_params(m->g, &pf);
    /* the model's budget minus what it has: the new method's per-task gradients */
    memory_parts have = memory_of(m, m->cfg.max_batch);
    uint64_t extra = tl_weighting_memory(&c, pf), used = have.total - have.task_grads;
    if (m->cfg.max_memory > 0 && used + extra > m->cfg.max_memory) {
        char a[24], b[24];
        return tl_fail(TL_ERR_NOMEM, "set_weighting: the per-task gradients need %s; the model's "
                                     "max_memory leaves %s",
                       tl_memory_str(extra, a, sizeof a),
                       tl_memory_str(m->cfg.max_memory > used ? m->cfg.max_memory - used : 0, b, sizeof b));
    }
    if ((s = tl_memory_check(extra, 0, "set_weighting: the per-task gradients")) != TL_OK) return s;
    m->cfg = c;
    if ((s = tl_weighting_switch(m->weighting, &m->view)) != TL_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tl_errmsg());
        m->cfg = was;
        tl_weighting_switch(m->weighting, &m->view); /* the old one's buffers fitted before */
        return tl_fail(s, "%s", msg);
    }
    return TL_OK;
}

/* NaN for a task index out of range. */
float tl_model_get_weight(const tl_model *m, int task)
{
    return task >= 0 && task < m->cfg.n_tasks ? m->cfg.tasks[task].weight : NAN;
}

float tl_model_effective_weight(const tl_model *m, int task)
{
    return task >= 0 && task < m->cfg.n_tasks ? tl_weighting_effective(m->weighting, &m->view, task) : NAN;
}
