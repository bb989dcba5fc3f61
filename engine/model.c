/* model.c — building a multi-task model's graph, and training, prediction and
 * evaluation over dataset splits. Loss weighting strategies are in
 * losses/weighting.c. */
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
#include "parallel.h"
#include "task_grads.h"

/* ---- configuration -------------------------------------------------------- */

static const char *backbone_names[TL_BACKBONE_COUNT] = {"shared_bottom", "omoe", "mmoe",
                                                         "ple", "esmm", "aitm"};
static const char *weighting_names[TL_WEIGHTING_COUNT] = {"fixed", "uncertainty", "gradnorm",
                                                           "dwa", "pcgrad"};

void tl_model_config_defaults(tl_model_config *c)
{
    memset(c, 0, sizeof *c);
    c->backbone.kind = TL_BACKBONE_MMOE;
    c->backbone.bottom = (tl_mlp_spec){2, {256, 128}, 0.0f};
    c->backbone.expert = (tl_mlp_spec){2, {256, 128}, 0.0f};
    c->backbone.experts = 8;
    c->backbone.levels = 1;
    c->backbone.shared = 4;
    c->backbone.specific = 2;
    c->backbone.constraint = 0.6f;
    c->emb_dim = 16;
    c->weighting = TL_WEIGHTING_FIXED;
    c->gradnorm_alpha = 1.5f;
    c->dwa_temperature = 2.0f;
    c->max_batch = 1024;
    c->seed = 1;
    c->dml = (tl_dml_spec){0, 1, 1, 1, 1, 0.0f, 0u};
    c->distill.aux = 1.0f;
    c->distill.kd = 0.5f;
    c->distill.calib_valid = 1;
    c->distill.correct = TL_CORRECT_BLEND;
    c->distill.lambda = 0.2f;
    c->distill.max_pairs = 1 << 18;
    for (int k = 0; k < TL_MAX_TASKS; k++) {
        c->tasks[k].space = -1;
        c->distill.flip[k] = -1; /* order auto: resolved by the first fit */
    }
}

tl_status tl_model_config_from_dataset(tl_model_config *c, const tl_dataset *d,
                                       const tl_mlp_spec *tower)
{
    int nt = tl_dataset_n_tasks(d), nc = tl_dataset_n_cat(d);
    if (nt < 1 || nt > TL_MAX_TASKS)
        return tl_fail(TL_ERR_ARG, "model: dataset has %d tasks; 1..%d supported", nt,
                       TL_MAX_TASKS);
    if (nc > TL_MAX_FIELDS)
        return tl_fail(TL_ERR_ARG, "model: dataset has %d categorical fields; at most %d", nc,
                       TL_MAX_FIELDS);
    c->n_cat = nc;
    memcpy(c->vocab, tl_dataset_vocab(d), (size_t)nc * sizeof(int32_t));
    c->n_num = tl_dataset_n_num(d);
    c->n_tasks = nt;
    for (int t = 0; t < nt; t++) {
        tl_task_spec *ts = &c->tasks[t];
        snprintf(ts->name, sizeof ts->name, "%s", tl_dataset_task_name(d, t));
        ts->type = tl_dataset_task_type(d, t);
        ts->tower = *tower;
        ts->weight = 1.0f;
        ts->space = -1;
    }
    return TL_OK;
}

static tl_status parse_name(const char *what, const char *name, const char *const *names, int n,
                            int *out)
{
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = i;
            return TL_OK;
        }
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 1);
        if (i + 1 < n) strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return tl_fail(TL_ERR_ARG, "unknown %s '%s' (expected one of: %s)", what, name, list);
}

tl_status tl_backbone_parse(const char *name, tl_backbone_kind *out)
{
    int i = 0;
    tl_status s = parse_name("backbone", name, backbone_names, TL_BACKBONE_COUNT, &i);
    if (s == TL_OK) *out = (tl_backbone_kind)i;
    return s;
}

const char *tl_backbone_name(tl_backbone_kind k)
{
    return (unsigned)k < TL_BACKBONE_COUNT ? backbone_names[k] : "?";
}

tl_status tl_weighting_parse(const char *name, tl_weighting *out)
{
    int i = 0;
    tl_status s = parse_name("weighting", name, weighting_names, TL_WEIGHTING_COUNT, &i);
    if (s == TL_OK) *out = (tl_weighting)i;
    return s;
}

const char *tl_weighting_name(tl_weighting w)
{
    return (unsigned)w < TL_WEIGHTING_COUNT ? weighting_names[w] : "?";
}

static tl_status check_mlp(const tl_mlp_spec *s, const char *what)
{
    if (s->n < 0 || s->n > TL_MAX_LAYERS)
        return tl_fail(TL_ERR_ARG, "%s: %d layers; 0..%d supported", what, s->n, TL_MAX_LAYERS);
    for (int i = 0; i < s->n; i++)
        if (s->units[i] < 1 || s->units[i] > 1 << 16)
            return tl_fail(TL_ERR_ARG, "%s: layer %d has %d units; must be 1..65536", what, i + 1,
                           s->units[i]);
    if (!(s->dropout >= 0.0f && s->dropout < 1.0f))
        return tl_fail(TL_ERR_ARG, "%s: dropout %g outside [0, 1)", what, (double)s->dropout);
    return TL_OK;
}

/* CrossDistil's switches (check_config). */
static tl_status check_distill(const tl_model_config *c)
{
    const tl_backbone_spec *b = &c->backbone;
    const tl_distill_spec *ds = &c->distill;
    if (ds->n_pairs < 1 || ds->n_pairs > TL_MAX_TASKS)
        return tl_fail(TL_ERR_ARG, "crossdistil: needs 1..%d task pairs, got %d", TL_MAX_TASKS,
                       ds->n_pairs);
    for (int p = 0; p < ds->n_pairs; p++) {
        int a = ds->pairs[p][0], bb = ds->pairs[p][1];
        if (a < 0 || a >= c->n_tasks || bb < 0 || bb >= c->n_tasks || a == bb)
            return tl_fail(TL_ERR_ARG, "crossdistil: pair %d must name two different tasks", p + 1);
        if (c->tasks[a].type != TL_TASK_BINARY || c->tasks[bb].type != TL_TASK_BINARY)
            return tl_fail(TL_ERR_ARG, "crossdistil: pair %d ('%s', '%s') must be binary tasks",
                           p + 1, c->tasks[a].name, c->tasks[bb].name);
    }
    if (b->kind == TL_BACKBONE_ESMM)
        return tl_fail(TL_ERR_ARG, "crossdistil: ESMM's second output is pCTCVR, not a logit; "
                                   "use another backbone");
    if (!(ds->kd >= 0.0f && ds->kd <= 1.0f) || !(ds->aux >= 0.0f) || !(ds->lambda >= 0.0f && ds->lambda <= 1.0f))
        return tl_fail(TL_ERR_ARG, "crossdistil: kd and lambda must be in [0, 1], aux >= 0 "
                                   "(got kd=%g aux=%g lambda=%g)",
                       (double)ds->kd, (double)ds->aux, (double)ds->lambda);
    if (ds->max_pairs < 1) return tl_fail(TL_ERR_ARG, "crossdistil: max_pairs must be >= 1");
    if (ds->teacher_grad && !ds->naive &&
        (ds->calibrate != TL_DISTILL_PLATT || ds->calib_valid))
        return tl_fail(TL_ERR_ARG, "crossdistil: teacher_grad=true needs the in-graph Platt "
                                   "calibrator (calibrate=\"platt\", calib_data=\"train\"); a "
                                   "fitted calibrator passes no gradient to the teacher");
    if (ds->warmup < 0) return tl_fail(TL_ERR_ARG, "crossdistil: warmup must be >= 0");
    if (ds->order < 0 || ds->order > 2)
        return tl_fail(TL_ERR_ARG, "crossdistil: order must be 0 (auto), 1 (positive) or 2 "
                                   "(negative), got %d", ds->order);
    for (int p = 0; p < ds->n_pairs && ds->order == 0; p++)
        if (ds->flip[p] < -1 || ds->flip[p] > 1)
            return tl_fail(TL_ERR_ARG, "crossdistil: pair %d: flip must be -1 (auto, not yet "
                                       "resolved), 0 or 1, got %d", p + 1, ds->flip[p]);
    if (ds->calib_every < 0)
        return tl_fail(TL_ERR_ARG, "crossdistil: calib_every must be >= 0, got %d", ds->calib_every);
    if (ds->calib_every > 0 && !ds->naive && ds->calibrate == TL_DISTILL_PLATT && !ds->calib_valid)
        return tl_fail(TL_ERR_ARG, "crossdistil: calib_every refits calibrators fitted outside "
                                   "the graph (calibrate=\"isotonic\" or calib_data=\"valid\"); "
                                   "the in-graph Platt calibrator trains at every step");
    return TL_OK;
}

static tl_status check_config(const tl_model_config *c)
{
    const tl_backbone_spec *b = &c->backbone;
    tl_status s;
    if (c->n_tasks < 1 || c->n_tasks > TL_MAX_TASKS)
        return tl_fail(TL_ERR_ARG, "model: %d tasks; 1..%d supported", c->n_tasks, TL_MAX_TASKS);
    if (c->n_cat < 0 || c->n_cat > TL_MAX_FIELDS || c->n_num < 0 || c->n_cat + c->n_num == 0)
        return tl_fail(TL_ERR_ARG, "model: needs at least one feature (got %d categorical, %d "
                                   "numeric)", c->n_cat, c->n_num);
    for (int f = 0; f < c->n_cat; f++)
        if (c->vocab[f] < 1)
            return tl_fail(TL_ERR_ARG, "model: field %d has vocabulary size %d", f + 1,
                           (int)c->vocab[f]);
    if (c->n_cat > 0 && (c->emb_dim < 1 || c->emb_dim > 4096))
        return tl_fail(TL_ERR_ARG, "model: emb must be 1..4096, got %d", c->emb_dim);
    if (c->max_batch < 1)
        return tl_fail(TL_ERR_ARG, "model: batch must be >= 1, got %d", c->max_batch);
    if ((unsigned)b->kind >= TL_BACKBONE_COUNT)
        return tl_fail(TL_ERR_ARG, "model: unknown backbone %d", (int)b->kind);
    if ((unsigned)c->weighting >= TL_WEIGHTING_COUNT)
        return tl_fail(TL_ERR_ARG, "model: unknown weighting %d", (int)c->weighting);
    if (c->weighting == TL_WEIGHTING_DWA && !(c->dwa_temperature > 0.0f && isfinite(c->dwa_temperature)))
        return tl_fail(TL_ERR_ARG, "dwa: temperature must be finite and > 0, got %g",
                       (double)c->dwa_temperature);
    if (c->weighting == TL_WEIGHTING_GRADNORM && !(c->gradnorm_alpha >= 0.0f && isfinite(c->gradnorm_alpha)))
        return tl_fail(TL_ERR_ARG, "gradnorm: alpha must be finite and >= 0, got %g",
                       (double)c->gradnorm_alpha);
    if (b->kind == TL_BACKBONE_AITM && !(b->constraint >= 0.0f && isfinite(b->constraint)))
        return tl_fail(TL_ERR_ARG, "aitm: constraint weight must be finite and >= 0, got %g",
                       (double)b->constraint);
    if ((s = check_mlp(&b->bottom, "shared_bottom: bottom")) != TL_OK) return s;
    if ((s = check_mlp(&b->expert, "experts: expert")) != TL_OK) return s;
    if ((b->kind == TL_BACKBONE_MMOE || b->kind == TL_BACKBONE_OMOE) &&
        (b->experts < 1 || b->experts > 1024))
        return tl_fail(TL_ERR_ARG, "%s: experts must be 1..1024, got %d",
                       backbone_names[b->kind], b->experts);
    if ((b->kind == TL_BACKBONE_MMOE || b->kind == TL_BACKBONE_OMOE || b->kind == TL_BACKBONE_PLE) &&
        b->expert.n < 1)
        return tl_fail(TL_ERR_ARG, "%s: expert needs at least one layer", backbone_names[b->kind]);
    if (b->kind == TL_BACKBONE_PLE &&
        (b->levels < 1 || b->levels > 8 || b->shared < 0 || b->specific < 0 ||
         b->shared + b->specific < 1))
        return tl_fail(TL_ERR_ARG, "ple: needs levels 1..8 and shared + specific >= 1 (got "
                                   "levels=%d shared=%d specific=%d)",
                       b->levels, b->shared, b->specific);
    if (b->kind == TL_BACKBONE_ESMM && c->n_tasks != 2)
        return tl_fail(TL_ERR_ARG, "esmm: needs exactly 2 binary tasks (CTR then CTCVR), got %d tasks",
                       c->n_tasks);
    for (int k = 0; b->kind == TL_BACKBONE_ESMM && k < c->n_tasks; k++)
        if (c->tasks[k].type != TL_TASK_BINARY)
            return tl_fail(TL_ERR_ARG, "esmm: task '%s' is a regression task; ESMM's two tasks (CTR "
                                       "then CTCVR) must both be binary", c->tasks[k].name);
    if (c->dml.enabled) {
        if (b->kind == TL_BACKBONE_ESMM || b->kind == TL_BACKBONE_AITM)
            return tl_fail(TL_ERR_ARG, "dml: attaches to shared_bottom, omoe, mmoe and ple, not %s",
                           backbone_names[b->kind]);
        if (!c->dml.ctfm && !c->dml.gkd)
            return tl_fail(TL_ERR_ARG, "dml: enable ctfm, gkd or both");
        if (c->dml.gkd_layers < 1 || c->dml.gkd_layers > TL_MAX_LAYERS)
            return tl_fail(TL_ERR_ARG, "dml: gkd_layers must be 1..%d, got %d", TL_MAX_LAYERS,
                           c->dml.gkd_layers);
        if (!(c->dml.dropout >= 0.0f && c->dml.dropout < 1.0f))
            return tl_fail(TL_ERR_ARG, "dml: dropout %g outside [0, 1)", (double)c->dml.dropout);
        if (c->dml.gkd)
            for (int t = 0; t < c->n_tasks; t++)
                if (c->tasks[t].tower.n < 1)
                    return tl_fail(TL_ERR_ARG, "dml: GKD needs a hidden layer in every tower (task '%s')",
                                   c->tasks[t].name);
    }
    if (c->distill.enabled && (s = check_distill(c)) != TL_OK) return s;
    for (int t = 0; t < c->n_tasks; t++) {
        const tl_task_spec *ts = &c->tasks[t];
        char what[80];
        snprintf(what, sizeof what, "task '%s': tower", ts->name);
        if ((s = check_mlp(&ts->tower, what)) != TL_OK) return s;
        if (!isfinite(ts->weight) || ts->weight < 0.0f)
            return tl_fail(TL_ERR_ARG, "task '%s': weight must be finite and >= 0, got %g",
                           ts->name, (double)ts->weight);
        if (b->kind == TL_BACKBONE_AITM) {
            if (ts->type != TL_TASK_BINARY)
                return tl_fail(TL_ERR_ARG, "aitm: task '%s' must be binary", ts->name);
            if (ts->tower.n < 1 || ts->tower.units[ts->tower.n - 1] !=
                                       c->tasks[0].tower.units[c->tasks[0].tower.n - 1])
                return tl_fail(TL_ERR_ARG, "aitm: every tower needs at least one layer and the "
                                           "same last width (task '%s')", ts->name);
        }
        if (ts->space != -1 && (ts->space < 0 || ts->space >= c->n_tasks || ts->space == t ||
                                c->tasks[ts->space].type != TL_TASK_BINARY))
            return tl_fail(TL_ERR_ARG, "task '%s': space must name another binary task", ts->name);
        for (int u = 0; u < t; u++)
            if (strcmp(c->tasks[u].name, ts->name) == 0)
                return tl_fail(TL_ERR_ARG, "model: task name '%s' appears twice", ts->name);
    }
    return TL_OK;
}

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
    tl_node parts[2] = {TL_NONE, TL_NONE};
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
    if (c->n_num > 0) parts[np++] = m->num = tl_input(g, c->n_num, "numeric");
    tl_node x = np == 2 ? tl_concat(g, 2, parts) : parts[0];

    tl_node *h = m->tower_in, *logit = m->logit, *last_hidden = m->tower_out, z_prev = TL_NONE;
    if (!tl_build_backbone(g, c, x, h, &m->last_shared))
        return tl_graph_status(g) != TL_OK ? tl_fail(tl_graph_status(g), "%s", tl_graph_errmsg(g))
                                           : TL_ERR_ARG;
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
    if (c->backbone.kind == TL_BACKBONE_ESMM) {
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
    p.task_grads = m->cfg.weighting == TL_WEIGHTING_PCGRAD ? (uint64_t)m->cfg.n_tasks * p.params : 0;
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
    tl_status s = check_config(cfg);
    if (s != TL_OK) return s;
    tl_model *m = tl_calloc(1, sizeof *m, "model");
    if (!m) return TL_ERR_NOMEM;
    m->cfg = *cfg;
    for (int p = 0; p < cfg->distill.n_pairs && cfg->distill.order != 0; p++)
        m->cfg.distill.flip[p] = cfg->distill.order == 2;
    m->ids = m->num = m->table = m->pcvr = m->last_shared = TL_NONE;
    m->extra = m->constraint_coef = TL_NONE;
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

/* NaN for a task index out of range. */
float tl_model_get_weight(const tl_model *m, int task)
{
    return task >= 0 && task < m->cfg.n_tasks ? m->cfg.tasks[task].weight : NAN;
}

float tl_model_effective_weight(const tl_model *m, int task)
{
    return task >= 0 && task < m->cfg.n_tasks ? tl_weighting_effective(m->weighting, &m->view, task) : NAN;
}

/* ---- batches ----------------------------------------------------------------- */

/* Filling a batch copies each row on its own, so any split of the rows
 * among threads gives the same inputs. Split rows far apart (a shuffled
 * order) wait on the cache: a chunk asks for the row it copies FILL_AHEAD
 * rows later, and such a fill is worth a thread per FILL_GRAIN rows. */
#define FILL_AHEAD 8
#define FILL_GRAIN 256

struct fill_job {
    const tl_model *m;
    const tl_split *s;
    const uint32_t *order; /* NULL: consecutive rows */
    size_t from;
    int32_t *ids;
    float *num;
    float *label[TL_MAX_TASKS], *rw[TL_MAX_TASKS]; /* NULL: features only */
};

static void fill_rows(void *ctx, size_t i0, size_t i1, int part)
{
    const struct fill_job *j = ctx;
    const tl_split *s = j->s;
    const tl_model_config *c = &j->m->cfg;
    size_t nc = (size_t)c->n_cat, nn = (size_t)c->n_num, K = (size_t)c->n_tasks;
    const uint32_t *order = j->order;
    (void)part;
    if (!order) { /* consecutive rows: block copies */
        size_t r0 = j->from + i0;
        if (j->ids) memcpy(j->ids + i0 * nc, s->cat + r0 * nc, (i1 - i0) * nc * sizeof *j->ids);
        if (j->num) memcpy(j->num + i0 * nn, s->num + r0 * nn, (i1 - i0) * nn * sizeof *j->num);
    } else {
        for (size_t i = i0; i < i1; i++) {
            size_t r = order[j->from + i];
            if (i + FILL_AHEAD < i1) {
                size_t ra = order[j->from + i + FILL_AHEAD];
                if (j->ids) __builtin_prefetch(s->cat + ra * nc);
                if (j->num) __builtin_prefetch(s->num + ra * nn);
                if (j->label[0]) __builtin_prefetch(s->labels + ra * K);
            }
            if (j->ids) memcpy(j->ids + i * nc, s->cat + r * nc, nc * sizeof *j->ids);
            if (j->num) memcpy(j->num + i * nn, s->num + r * nn, nn * sizeof *j->num);
        }
    }
    if (!j->label[0]) return;
    for (size_t k = 0; k < K; k++) {
        int sp = c->tasks[k].space;
        float *label = j->label[k], *rw = j->rw[k];
        for (size_t i = i0; i < i1; i++) {
            size_t r = order ? order[j->from + i] : j->from + i;
            float w = s->weight ? s->weight[r] : 1.0f;
            /* rows outside the task's space weigh 0: no loss, no gradient */
            float in_space = sp >= 0 ? (s->labels[r * K + (size_t)sp] > 0.5f) : 1.0f;
            label[i] = s->labels[r * K + k];
            rw[i] = w * in_space;
        }
    }
}

/* Copy rows order[from .. from+n) of split s (order NULL: rows from ..
 * from+n) into the graph's inputs, with labels and row weights when
 * `labels` is set, and set the batch size. */
static void fill(tl_model *m, const tl_split *s, const uint32_t *order, size_t from, int n,
                 int labels)
{
    const tl_model_config *c = &m->cfg;
    struct fill_job j = {m, s, order, from, NULL, NULL, {NULL}, {NULL}};
    j.ids = m->ids != TL_NONE ? tl_graph_ids(m->g, m->ids) : NULL;
    j.num = m->num != TL_NONE ? tl_graph_input(m->g, m->num) : NULL;
    for (int k = 0; labels && k < c->n_tasks; k++) {
        j.label[k] = tl_graph_input(m->g, m->label[k]);
        j.rw[k] = tl_graph_input(m->g, m->rowweight[k]);
    }
    size_t per_row = (size_t)(c->n_cat + c->n_num) + (labels ? 2 * (size_t)c->n_tasks : 0);
    size_t grain = order ? FILL_GRAIN : tl_parallel_row_grain(per_row);
    tl_parallel_for((size_t)n, grain, fill_rows, &j);
    tl_graph_set_batch(m->g, n);
}

static void fill_batch(tl_model *m, const tl_split *s, const uint32_t *order, size_t from, int n)
{
    fill(m, s, order, from, n, 1);
}

void tl_model_fill_batch(tl_model *m, const tl_split *s, const uint32_t *order, size_t from, int n)
{
    fill_batch(m, s, order, from, n);
}

static tl_status check_split(const tl_model *m, const tl_split *s, const char *what)
{
    if (!s || s->n == 0) return tl_fail(TL_ERR_ARG, "%s: the split has no rows", what);
    if ((m->cfg.n_cat && !s->cat) || (m->cfg.n_num && !s->num) || !s->labels)
        return tl_fail(TL_ERR_ARG, "%s: the split lacks features or labels", what);
    if (s->n > UINT32_MAX) return tl_fail(TL_ERR_ARG, "%s: more than 2^32 rows", what);
    return TL_OK;
}

/* Predictions need the features only (rows to score may have no labels). */
static tl_status check_features(const tl_model *m, const tl_split *s, const char *what)
{
    if (!s || s->n == 0) return tl_fail(TL_ERR_ARG, "%s: the split has no rows", what);
    if ((m->cfg.n_cat && !s->cat) || (m->cfg.n_num && !s->num))
        return tl_fail(TL_ERR_ARG, "%s: the split lacks features", what);
    if (s->n > UINT32_MAX) return tl_fail(TL_ERR_ARG, "%s: more than 2^32 rows", what);
    return TL_OK;
}

tl_status tl_model_predict(tl_model *m, const tl_split *s, float *out)
{
    tl_status st = check_features(m, s, "predict");
    if (st != TL_OK) return st;
    int K = m->cfg.n_tasks, B = m->cfg.max_batch;
    /* Predictions need no labels. Row weights of 0 make the loss nodes skip
     * every row: their values after a predict are 0. */
    for (int k = 0; k < K; k++)
        memset(tl_graph_input(m->g, m->rowweight[k]), 0, (size_t)B * sizeof(float));
    for (size_t from = 0; from < s->n; from += (size_t)B) {
        if (tl_cancelled()) return tl_fail(TL_ERR_CANCELLED, "predict interrupted");
        int n = (int)(s->n - from < (size_t)B ? s->n - from : (size_t)B);
        fill(m, s, NULL, from, n, 0);
        if ((st = tl_graph_forward(m->g, 0)) != TL_OK) return tl_fail_context(st, "predict");
        for (int k = 0; k < K; k++) {
            const float *p = tl_graph_value(m->g, m->pred[k]);
            for (int i = 0; i < n; i++) out[(from + (size_t)i) * K + k] = p[i];
        }
    }
    return TL_OK;
}

tl_status tl_model_predict_teachers(tl_model *m, const tl_split *s, int calibrated, float *out)
{
    tl_status st = check_split(m, s, "teachers");
    if (st != TL_OK) return st;
    int K = m->cfg.n_tasks, B = m->cfg.max_batch;
    for (size_t from = 0; from < s->n; from += (size_t)B) {
        if (tl_cancelled()) return tl_fail(TL_ERR_CANCELLED, "teacher prediction interrupted");
        int n = (int)(s->n - from < (size_t)B ? s->n - from : (size_t)B);
        fill_batch(m, s, NULL, from, n);
        if ((st = tl_graph_forward(m->g, 0)) != TL_OK) return tl_fail_context(st, "teachers");
        for (int k = 0; k < K; k++) {
            tl_node t = m->distill ? tl_distill_teacher(m->distill, k) : TL_NONE;
            const float *v = t != TL_NONE ? tl_graph_value(m->g, t) : NULL;
            for (int i = 0; i < n; i++) {
                float r = v ? v[i] : NAN;
                out[(from + (size_t)i) * K + k] = calibrated && v ? tl_distill_calibrate(m->distill, &m->view, k, r) : r;
            }
        }
    }
    return TL_OK;
}

int tl_distill_auto_order(const tl_split *train, int n_tasks, int a, int b)
{
    return tl_split_label_correlation(train, n_tasks, a, b) < 0.0 ? 2 : 1;
}

int tl_model_distill_order(const tl_model *m, int pair)
{
    const tl_distill_spec *ds = &m->cfg.distill;
    if (!ds->enabled || pair < 0 || pair >= ds->n_pairs) return -1;
    return ds->flip[pair] < 0 ? 0 : ds->flip[pair] ? 2 : 1;
}

/* order="auto": the first fit fixes each unresolved pair's order from its
 * train split; the graph reads the flip at every run (losses/distill.c). */
static void resolve_order(tl_model *m, const tl_split *train)
{
    tl_distill_spec *ds = &m->cfg.distill;
    for (int p = 0; ds->enabled && p < ds->n_pairs; p++)
        if (ds->flip[p] < 0)
            ds->flip[p] = tl_distill_auto_order(train, m->cfg.n_tasks, ds->pairs[p][0], ds->pairs[p][1]) == 2;
}

double tl_split_label_correlation(const tl_split *s, int n_tasks, int a, int b)
{
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0, n = (double)s->n;
    for (size_t i = 0; i < s->n; i++) {
        double x = s->labels[i * (size_t)n_tasks + (size_t)a], y = s->labels[i * (size_t)n_tasks + (size_t)b];
        sa += x;
        sb += y;
        saa += x * x;
        sbb += y * y;
        sab += x * y;
    }
    double va = saa / n - (sa / n) * (sa / n), vb = sbb / n - (sb / n) * (sb / n);
    if (!(va > 0.0) || !(vb > 0.0)) return NAN;
    return (sab / n - (sa / n) * (sb / n)) / sqrt(va * vb);
}

static tl_status evaluate(tl_model *m, const tl_split *s, int n_bins, tl_task_eval *out,
                         tl_calib_bin *bins, int calibrated)
{
    tl_status st = check_split(m, s, "evaluate");
    if (st != TL_OK) return st;
    int K = m->cfg.n_tasks;
    float *pred = tl_malloc(s->n * (size_t)K * sizeof(float), "predictions");
    if (!pred) return TL_ERR_NOMEM;
    tl_metric_ws *ws = tl_metric_ws_new();
    if (!ws) {
        tl_free(pred);
        return TL_ERR_NOMEM;
    }
    st = calibrated ? tl_model_predict_calibrated(m, s, pred) : tl_model_predict(m, s, pred);
    for (int k = 0; k < K && st == TL_OK; k++) {
        tl_eval_opts o;
        memset(&o, 0, sizeof o);
        o.task = m->cfg.tasks[k].name;
        o.pred_stride = o.label_stride = (size_t)K;
        o.weight = s->weight;
        o.group = s->group;
        o.group_stride = 1;
        o.n_bins = n_bins > 0 ? n_bins : 10;
        if (m->cfg.tasks[k].space >= 0 && m->eval_in_space) {
            o.space = s->labels + m->cfg.tasks[k].space;
            o.space_stride = (size_t)K;
        }
        /* Multi-AUC against the task's CrossDistil partner (with the pair's
         * order), else the first other binary task with the order given by
         * the sign of the two labels' correlation on this split — the same
         * rule as order="auto", so models with and without CrossDistil are
         * judged alike (and an order="auto" pair before its first fit). */
        int partner = -1, flip = 0;
        const tl_distill_spec *ds = &m->cfg.distill;
        for (int p = 0; ds->enabled && p < ds->n_pairs && partner < 0; p++)
            if (ds->pairs[p][0] == k || ds->pairs[p][1] == k) {
                partner = ds->pairs[p][0] == k ? ds->pairs[p][1] : ds->pairs[p][0];
                flip = ds->flip[p] >= 0 ? ds->flip[p] : tl_split_label_correlation(s, K, k, partner) < 0.0;
            }
        for (int j = 0; j < K && partner < 0; j++)
            if (j != k && m->cfg.tasks[j].type == TL_TASK_BINARY) {
                partner = j;
                flip = tl_split_label_correlation(s, K, k, j) < 0.0;
            }
        if (partner >= 0 && m->cfg.tasks[k].type == TL_TASK_BINARY) {
            o.partner = s->labels + partner;
            o.partner_stride = (size_t)K;
            o.order = flip ? TL_MULTI_AUC_ORDER_A_NEG : TL_MULTI_AUC_ORDER_A;
        }
        o.bins = bins ? bins + (size_t)k * (size_t)o.n_bins : NULL;
        out[k].type = m->cfg.tasks[k].type;
        if (out[k].type == TL_TASK_BINARY)
            st = tl_metrics_eval_binary(pred + k, s->labels + k, s->n, &o, ws, &out[k].bin);
        else
            st = tl_metrics_eval_regression(pred + k, s->labels + k, s->n, &o, &out[k].reg);
    }
    tl_metric_ws_free(ws);
    tl_free(pred);
    return st;
}

tl_status tl_model_evaluate(tl_model *m, const tl_split *s, int n_bins, tl_task_eval *out,
                            tl_calib_bin *bins)
{
    return evaluate(m, s, n_bins, out, bins, 0);
}

void tl_model_set_eval_in_space(tl_model *m, int in_space) { m->eval_in_space = in_space != 0; }

tl_status tl_model_evaluate_calibrated(tl_model *m, const tl_split *s, int n_bins,
                                       tl_task_eval *out, tl_calib_bin *bins)
{
    return evaluate(m, s, n_bins, out, bins, 1);
}

tl_status tl_model_predict_calibrated(tl_model *m, const tl_split *s, float *out)
{
    tl_status st = tl_model_predict(m, s, out);
    int K = m->cfg.n_tasks;
    for (int k = 0; k < K && st == TL_OK; k++) {
        const tl_calibrator *c = m->out_cal[k];
        if (!c) continue;
        for (size_t i = 0; i < s->n; i++) {
            float *p = &out[i * (size_t)K + (size_t)k];
            *p = (float)tl_calibrator_apply1(c, (double)*p);
        }
    }
    return st;
}

tl_status tl_model_calibrate(tl_model *m, const tl_split *s, tl_calib_kind kind)
{
    int K = m->cfg.n_tasks;
    float *pred = tl_malloc(s->n * (size_t)K * sizeof(float), "predictions");
    float *p = tl_malloc(s->n * sizeof(float), "task predictions");
    float *y = tl_malloc(s->n * sizeof(float), "task labels");
    tl_status st = pred && p && y ? tl_model_predict(m, s, pred) : TL_ERR_NOMEM;
    for (int k = 0; k < K && st == TL_OK; k++) {
        if (m->cfg.tasks[k].type != TL_TASK_BINARY) continue;
        for (size_t i = 0; i < s->n; i++) {
            p[i] = pred[i * (size_t)K + (size_t)k];
            y[i] = s->labels[i * (size_t)K + (size_t)k];
        }
        tl_calibrator *c = NULL;
        st = tl_calibrator_fit(kind, p, y, s->weight, NULL, s->n, &c);
        if (st != TL_OK) st = tl_fail_context(st, "calibrating task '%s'", m->cfg.tasks[k].name);
        else tl_model_set_calibrator(m, k, c);
    }
    tl_free(pred);
    tl_free(p);
    tl_free(y);
    return st;
}

const tl_calibrator *tl_model_calibrator(const tl_model *m, int task)
{
    return task >= 0 && task < m->cfg.n_tasks ? m->out_cal[task] : NULL;
}

void tl_model_set_calibrator(tl_model *m, int task, tl_calibrator *c)
{
    if (task < 0 || task >= m->cfg.n_tasks) {
        tl_calibrator_free(c);
        return;
    }
    tl_calibrator_free(m->out_cal[task]);
    m->out_cal[task] = c;
    m->out_cal_step[task] = m->step;
}

int64_t tl_model_calibrator_age(const tl_model *m, int task)
{
    if (task < 0 || task >= m->cfg.n_tasks || !m->out_cal[task]) return 0;
    return m->step - m->out_cal_step[task];
}

int64_t tl_model_teacher_calibrator_age(const tl_model *m)
{
    int any = 0;
    for (int k = 0; k < m->cfg.n_tasks && m->distill; k++) any |= tl_distill_calibrator(m->distill, k) != NULL;
    return any ? m->step - m->distill_cal_step : 0;
}

/* ---- training ------------------------------------------------------------------ */

void tl_fit_defaults(tl_fit_options *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 10;
    o->monitor_task = -1;
    o->shuffle = 1;
    o->restore_best = 1;
    o->optim = tl_optim_defaults(TL_OPTIM_ADAM);
}

/* Higher is better: AUC for binary tasks, -MSE for regression (the papers'
 * protocol, issue 18), averaged over the tasks with a finite value (the
 * sum's order, as long as every task has one). per_task gets AUC / RMSE, as
 * the history and progress lines show them. */
static double monitor_value(const tl_model *m, const tl_task_eval *ev, int task, double *per_task)
{
    double sum = 0.0;
    int n = 0;
    for (int k = 0; k < m->cfg.n_tasks; k++) {
        double v = ev[k].type == TL_TASK_BINARY ? ev[k].bin.auc : -ev[k].reg.mse;
        per_task[k] = ev[k].type == TL_TASK_BINARY ? ev[k].bin.auc : ev[k].reg.rmse;
        if (task >= 0 && k != task) continue;
        if (isfinite(v)) {
            sum += v;
            n++;
        }
    }
    return n ? sum / n : (double)NAN;
}

static tl_status reserve_history(tl_model *m, size_t steps, size_t epochs)
{
    if (m->n_steps_hist + steps > m->cap_steps_hist) {
        size_t cap = m->n_steps_hist + steps;
        tl_step_record *h = tl_realloc(m->steps_hist, cap * sizeof *h, "step history");
        if (!h) return TL_ERR_NOMEM;
        m->steps_hist = h;
        m->cap_steps_hist = cap;
    }
    if (m->n_epochs_hist + epochs > m->cap_epochs_hist) {
        size_t cap = m->n_epochs_hist + epochs;
        tl_epoch_record *h = tl_realloc(m->epochs_hist, cap * sizeof *h, "epoch history");
        if (!h) return TL_ERR_NOMEM;
        m->epochs_hist = h;
        m->cap_epochs_hist = cap;
    }
    return TL_OK;
}

static tl_status ensure_optim(tl_model *m, const tl_optim_config *oc)
{
    if (m->opt && tl_optim_config_equal(tl_optim_get_config(m->opt), oc)) return TL_OK;
    tl_optim *o = tl_optim_new(m->g, oc);
    if (!o) return tl_fail_context(TL_ERR_ARG, "fit");
    if (m->opt) tl_optim_set_steps(o, 0);
    tl_optim_free(m->opt);
    m->opt = o;
    return TL_OK;
}

static tl_status hooks_epoch_end(tl_model *m, const tl_split *train, const tl_split *valid,
                                 const double *epoch_loss)
{
    tl_fit_point f = {train, valid, NULL, epoch_loss};
    tl_status s = TL_OK;
    for (int i = 0; i < m->n_hooks && s == TL_OK; i++)
        if (m->hooks[i]->epoch_end) s = m->hooks[i]->epoch_end(m->hook_state[i], &m->view, &f);
    return s;
}

static void hooks_step_begin(tl_model *m)
{
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->step_begin) m->hooks[i]->step_begin(m->hook_state[i], &m->view);
}

/* One training step on the batch already in the graph's inputs. */
static tl_status train_step(tl_model *m, float *task_loss)
{
    hooks_step_begin(m);
    tl_status s = TL_OK;
    for (int i = 0; i < m->n_hooks && s == TL_OK; i++)
        if (m->hooks[i]->step_ready) s = m->hooks[i]->step_ready(m->hook_state[i], &m->view);
    if (s == TL_OK) s = tl_graph_forward(m->g, 1);
    if (s != TL_OK) return s;
    for (int k = 0; k < m->cfg.n_tasks; k++) {
        task_loss[k] = tl_graph_value(m->g, m->loss[k])[0];
        if (!isfinite(task_loss[k])) {
            tl_graph_zero_grad(m->g);
            return tl_fail(TL_ERR_NUMERIC,
                           "task '%s': loss is %g at step %lld (epoch %d); parameters kept from "
                           "the last good step",
                           m->cfg.tasks[k].name, (double)task_loss[k], (long long)m->step + 1,
                           m->epoch + 1);
        }
    }
    tl_fit_point f = {NULL, NULL, task_loss, NULL};
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->backward && (s = m->hooks[i]->backward(m->hook_state[i], &m->view, &f)) != TL_OK)
            return s;
    if ((s = tl_optim_step(m->opt)) == TL_ERR_NUMERIC)
        return tl_fail_context(s, "fit: step %lld (epoch %d)", (long long)m->step + 1, m->epoch + 1);
    return s;
}

/* The state of one tl_model_fit call, shared by its parts below. */
typedef struct {
    const tl_split *train, *valid;
    const tl_fit_options *opt;
    int B, last_epoch;
    size_t per_epoch;
    uint32_t *order;
    float *params;
    size_t pf;
    uint64_t shuffle_seed;
    int64_t steps_this_call;
    /* the epoch under way: batches counted in its mean loss, batches run now */
    size_t done, ran;
    double epoch_loss[TL_MAX_TASKS], valid_metric[TL_MAX_TASKS];
    /* early stopping */
    double best;
    int bad_epochs, have_best, stopped_by_patience;
    tl_task_eval ev[TL_MAX_TASKS];
} fit_run;

/* Check the arguments, grow the graph to the batch, and allocate what the
 * fit needs (optimizer, history, shuffle order, best parameters). */
static tl_status fit_prepare(tl_model *m, fit_run *r, const tl_split *train, const tl_split *valid,
                             const tl_fit_options *opt)
{
    tl_status st = check_split(m, train, "fit");
    if (st != TL_OK) return st;
    if (valid && (st = check_split(m, valid, "fit: valid")) != TL_OK) return st;
    int B = opt->batch > 0 ? opt->batch : m->cfg.max_batch;
    if (B > 1 << 20) return tl_fail(TL_ERR_ARG, "fit: batch %d above 1048576", B);
    if (opt->epochs < 1) return tl_fail(TL_ERR_ARG, "fit: epochs must be >= 1, got %d", opt->epochs);
    if (opt->epochs > INT_MAX - m->epoch)
        return tl_fail(TL_ERR_ARG, "fit: %d more epochs after %d overflow the epoch counter",
                       opt->epochs, m->epoch);
    /* A batch above the graph's: plan its activations again for B rows
     * (parameters and optimizer state stay). Prediction keeps the model's
     * batch (cfg.max_batch), so its chunks are what they were. */
    if (B > tl_graph_max_batch(m->g) &&
        (st = tl_graph_set_max_batch(m->g, B, m->cfg.max_memory,
                                     m->cfg.distill.enabled ? m->cfg.distill.max_pairs : 0)) != TL_OK)
        return tl_fail_context(st, "fit");
    if ((st = ensure_optim(m, &opt->optim)) != TL_OK) return st;
    resolve_order(m, train);
    tl_task_grads_every(m->task_grads, opt->diagnostics);

    memset(r, 0, sizeof *r);
    r->train = train;
    r->valid = valid;
    r->opt = opt;
    r->B = B;
    r->per_epoch = (train->n + (size_t)B - 1) / (size_t)B;
    size_t total = r->per_epoch * (size_t)opt->epochs;
    if (opt->max_steps > 0 && (size_t)opt->max_steps < total) total = (size_t)opt->max_steps;
    if ((st = reserve_history(m, total, (size_t)opt->epochs)) != TL_OK) return st;
    if (valid && opt->eval_every > 0) {
        size_t need = m->n_evals_hist + total / (size_t)opt->eval_every + 1;
        if (need > m->cap_evals_hist) {
            tl_epoch_record *h = tl_realloc(m->evals_hist, need * sizeof *h, "eval history");
            if (!h) return TL_ERR_NOMEM;
            m->evals_hist = h;
            m->cap_evals_hist = need;
        }
    }
    r->order = tl_malloc(train->n * sizeof *r->order, "shuffle order");
    r->params = tl_graph_params(m->g, &r->pf);
    if (!r->order) return TL_ERR_NOMEM;
    if (valid && opt->restore_best && !m->best) {
        m->best = tl_malloc_aligned(r->pf * sizeof(float), "best parameters");
        if (!m->best) {
            tl_free(r->order);
            return TL_ERR_NOMEM;
        }
    }
    r->shuffle_seed = opt->seed ? opt->seed : m->cfg.seed;
    r->best = -INFINITY;
    r->last_epoch = m->epoch + opt->epochs;
    return TL_OK;
}

/* The order of epoch e depends only on (seed, e), and a fit that stopped
 * mid-epoch resumes at the next batch: training N steps, then M more (also
 * after a checkpoint round trip) equals N+M at once. */
static void epoch_begin(tl_model *m, fit_run *r)
{
    const tl_split *train = r->train;
    for (size_t i = 0; i < train->n; i++) r->order[i] = (uint32_t)i;
    if (r->opt->shuffle) {
        tl_rng shuf;
        tl_rng_seed(&shuf, r->shuffle_seed * 0x9e3779b97f4a7c15ULL + (uint64_t)m->epoch);
        tl_rng_shuffle_u32(&shuf, r->order, train->n);
    }
    if (m->batches_in_epoch >= r->per_epoch) m->batches_in_epoch = 0;
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->epoch_begin) m->hooks[i]->epoch_begin(m->hook_state[i], &m->view);
    for (int k = 0; k < m->cfg.n_tasks; k++) r->epoch_loss[k] = 0.0;
    r->done = r->ran = 0;
    /* Resuming mid-epoch: the epoch's mean loss (history, DWA) also counts
     * the batches done before, which the step history holds. */
    size_t bie = m->batches_in_epoch;
    if (bie > 0 && m->n_steps_hist >= bie && m->steps_hist[m->n_steps_hist - bie].epoch == m->epoch + 1) {
        for (size_t i = m->n_steps_hist - bie; i < m->n_steps_hist; i++)
            for (int k = 0; k < m->cfg.n_tasks; k++) r->epoch_loss[k] += (double)m->steps_hist[i].loss[k];
        r->done = bie;
    }
}

/* A mid-epoch look at validation after batch b (early stopping stays per
 * epoch), reported to the progress callback. */
static tl_status mid_epoch_eval(tl_model *m, fit_run *r, size_t b)
{
    const tl_fit_options *opt = r->opt;
    tl_status st = tl_model_evaluate(m, r->valid, 10, r->ev, NULL);
    if (st != TL_OK) return st;
    tl_epoch_record *vr = &m->evals_hist[m->n_evals_hist++];
    memset(vr, 0, sizeof *vr);
    vr->epoch = m->epoch + 1;
    vr->step = m->step;
    vr->monitor = monitor_value(m, r->ev, opt->monitor_task, r->valid_metric);
    for (int k = 0; k < m->cfg.n_tasks; k++) {
        vr->train_loss[k] = r->epoch_loss[k] / (double)r->done;
        vr->valid_metric[k] = r->valid_metric[k];
        vr->valid_logloss[k] = r->ev[k].type == TL_TASK_BINARY ? r->ev[k].bin.logloss : r->ev[k].reg.mse;
    }
    if (opt->progress) {
        tl_progress p = {TL_PROGRESS_EVAL, m->epoch + 1, r->last_epoch, m->step, (int)b + 1,
                         (int)r->per_epoch, vr->train_loss, r->valid_metric, vr->monitor, 0};
        if (opt->progress(opt->progress_ud, &p))
            return tl_fail(TL_ERR_CANCELLED, "training stopped by the progress callback at step %lld",
                           (long long)m->step);
    }
    return TL_OK;
}

/* The batches of the epoch under way, from where it stands, until its end,
 * max_steps, a stop or an error. */
static tl_status run_batches(tl_model *m, fit_run *r)
{
    const tl_fit_options *opt = r->opt;
    const tl_split *train = r->train, *valid = r->valid;
    int K = m->cfg.n_tasks;
    tl_status st = TL_OK;
    for (size_t b = m->batches_in_epoch; b < r->per_epoch; b++) {
        if (opt->max_steps > 0 && r->steps_this_call >= opt->max_steps) break;
        if (tl_cancelled())
            return tl_fail(TL_ERR_CANCELLED,
                           "training interrupted at epoch %d, step %lld; the model keeps its "
                           "current parameters and can continue",
                           m->epoch + 1, (long long)m->step);
        size_t from = b * (size_t)r->B;
        int n = (int)(train->n - from < (size_t)r->B ? train->n - from : (size_t)r->B);
        float tl_loss[TL_MAX_TASKS];
        fill_batch(m, train, r->order, from, n);
        if ((st = train_step(m, tl_loss)) != TL_OK) return st;
        m->step++;
        m->batches_in_epoch = b + 1;
        r->steps_this_call++;
        r->done++;
        r->ran++;
        tl_step_record *sr = &m->steps_hist[m->n_steps_hist++];
        sr->step = m->step;
        sr->epoch = m->epoch + 1;
        for (int k = 0; k < K; k++) {
            r->epoch_loss[k] += (double)tl_loss[k];
            sr->loss[k] = tl_loss[k];
            sr->weight[k] = tl_weighting_effective(m->weighting, &m->view, k);
        }
        tl_fit_point f = {train, valid, tl_loss, NULL};
        for (int i = 0; i < m->n_hooks; i++)
            if (m->hooks[i]->step_end && (st = m->hooks[i]->step_end(m->hook_state[i], &m->view, &f)) != TL_OK)
                return st;
        if (m->cfg.distill.calib_every > 0 && m->step % m->cfg.distill.calib_every == 0)
            m->distill_cal_step = m->step; /* refit by step_end */
        if (valid && opt->eval_every > 0 && m->step % opt->eval_every == 0 && b + 1 < r->per_epoch &&
            (st = mid_epoch_eval(m, r, b)) != TL_OK)
            return st;
        if (opt->progress && opt->progress_every > 0 && m->step % opt->progress_every == 0) {
            double mean[TL_MAX_TASKS];
            for (int k = 0; k < K; k++) mean[k] = r->epoch_loss[k] / (double)r->done;
            tl_progress p = {TL_PROGRESS_STEP, m->epoch + 1, r->last_epoch, m->step, (int)b + 1,
                             (int)r->per_epoch, mean, NULL, NAN, 0};
            if (opt->progress(opt->progress_ud, &p))
                return tl_fail(TL_ERR_CANCELLED, "training stopped by the progress callback at step %lld",
                               (long long)m->step);
        }
    }
    return st;
}

/* The epoch just closed: its history record, validation and early
 * stopping's bookkeeping. *monitor and *improved for the progress report. */
static tl_status record_epoch(tl_model *m, fit_run *r, double *monitor, int *improved)
{
    int K = m->cfg.n_tasks;
    tl_epoch_record *er = &m->epochs_hist[m->n_epochs_hist++];
    memset(er, 0, sizeof *er);
    er->epoch = m->epoch;
    er->step = m->step;
    *monitor = NAN;
    *improved = 0;
    for (int k = 0; k < K; k++) {
        er->train_loss[k] = r->epoch_loss[k];
        er->valid_metric[k] = er->valid_logloss[k] = NAN;
        r->valid_metric[k] = NAN;
    }
    if (r->valid) {
        tl_status st = tl_model_evaluate(m, r->valid, 10, r->ev, NULL);
        if (st != TL_OK) {
            if (st == TL_ERR_CANCELLED)
                st = tl_fail(TL_ERR_CANCELLED, "training interrupted during validation at epoch %d", m->epoch);
            m->n_epochs_hist--;
            return st;
        }
        *monitor = monitor_value(m, r->ev, r->opt->monitor_task, r->valid_metric);
        for (int k = 0; k < K; k++) {
            er->valid_metric[k] = r->valid_metric[k];
            er->valid_logloss[k] = r->ev[k].type == TL_TASK_BINARY ? r->ev[k].bin.logloss : r->ev[k].reg.mse;
        }
        if (isfinite(*monitor) && *monitor > r->best) {
            r->best = *monitor;
            *improved = 1;
            r->bad_epochs = 0;
            if (m->best) {
                memcpy(m->best, r->params, r->pf * sizeof(float));
                r->have_best = 1;
            }
        } else {
            r->bad_epochs++;
        }
    }
    er->monitor = *monitor;
    return TL_OK;
}

tl_status tl_model_fit(tl_model *m, const tl_split *train, const tl_split *valid,
                       const tl_fit_options *opt)
{
    fit_run r;
    tl_status st = fit_prepare(m, &r, train, valid, opt);
    if (st != TL_OK) return st;
    int K = m->cfg.n_tasks;
    for (int e = 0; e < opt->epochs && st == TL_OK; e++) {
        epoch_begin(m, &r);
        st = run_batches(m, &r);
        if (r.ran == 0) break;
        for (int k = 0; k < K; k++) r.epoch_loss[k] /= (double)r.done;
        if (st != TL_OK && st != TL_ERR_CANCELLED) break;
        /* A stop asked for after the epoch's last batch still closes the
         * epoch (history, validation, epoch-end updates), so that the next
         * fit starts the next epoch instead of running this one again. */
        int stop_after_epoch = 0;
        char stop_msg[256];
        if (st == TL_ERR_CANCELLED) {
            if (m->batches_in_epoch < r.per_epoch) break;
            stop_after_epoch = 1;
            snprintf(stop_msg, sizeof stop_msg, "%s", tl_errmsg());
            st = TL_OK;
        }
        if (m->batches_in_epoch < r.per_epoch) break; /* stopped mid-epoch by max_steps */
        m->epoch++;
        m->batches_in_epoch = 0;
        if ((st = hooks_epoch_end(m, train, valid, r.epoch_loss)) != TL_OK) break;
        m->distill_cal_step = m->step;
        double monitor;
        int improved;
        if ((st = record_epoch(m, &r, &monitor, &improved)) != TL_OK) break;
        if (stop_after_epoch) { /* the stop's own message, now that the epoch is closed */
            st = tl_fail(TL_ERR_CANCELLED, "%s", stop_msg);
            break;
        }
        if (opt->progress) {
            tl_progress p = {TL_PROGRESS_EPOCH, m->epoch, r.last_epoch, m->step, (int)r.done,
                             (int)r.per_epoch, r.epoch_loss, r.valid_metric, monitor, improved};
            if (opt->progress(opt->progress_ud, &p)) {
                st = tl_fail(TL_ERR_CANCELLED, "training stopped by the progress callback");
                break;
            }
        }
        if (opt->patience > 0 && r.bad_epochs >= opt->patience) {
            r.stopped_by_patience = 1;
            break;
        }
        if (opt->max_steps > 0 && r.steps_this_call >= opt->max_steps) break;
    }
    /* Best weights come back only when training ended by its own rules (all
     * epochs, or patience): a fit cut by max_steps, Ctrl-C or an error keeps
     * the current weights so that it can continue exactly. */
    int ran_to_end = r.stopped_by_patience || m->epoch == r.last_epoch;
    if (r.have_best && opt->restore_best && st == TL_OK && ran_to_end)
        memcpy(r.params, m->best, r.pf * sizeof(float));
    tl_free(r.order);
    return st;
}

size_t tl_model_history_steps(const tl_model *m, const tl_step_record **out)
{
    *out = m->steps_hist;
    return m->n_steps_hist;
}

size_t tl_model_history_evals(const tl_model *m, const tl_epoch_record **out)
{
    *out = m->evals_hist;
    return m->n_evals_hist;
}

size_t tl_model_history_epochs(const tl_model *m, const tl_epoch_record **out)
{
    *out = m->epochs_hist;
    return m->n_epochs_hist;
}

tl_status tl_model_task_gradient(tl_model *m, int k, float *out)
{
    hooks_step_begin(m);
    return tl_task_grads_one(&m->view, k, out);
}

tl_status tl_model_task_gradients(tl_model *m, tl_diag_record *r)
{
    hooks_step_begin(m);
    return tl_task_grads_record(m->task_grads, &m->view, r);
}

size_t tl_model_history_diagnostics(const tl_model *m, const tl_diag_record **out)
{
    return tl_task_grads_history(m->task_grads, out);
}
