/* model_config.c — a model's configuration: defaults, filling it from a
 * dataset, backbone and weighting names, and the checks tl_model_new runs
 * (contracts in model_config.h). */
#include "model_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *backbone_names[TL_BACKBONE_COUNT] = {"shared_bottom", "omoe", "mmoe",
                                                         "ple", "esmm", "aitm", "stem", "adatt",
                                                         "cross_stitch", "dselect_k"};
/* The weighting methods, in tl_weighting order (their behaviour is the row
 * of the same index in losses/weighting.c's table). */
static const char *const weighting_names[TL_WEIGHTING_COUNT] = {
    "fixed", "uncertainty", "gradnorm", "dwa",    "pcgrad",   "rlw",   "gls",
    "famo",  "db_mtl",      "stch",     "imtl_l", "graddrop", "mgda",  "cagrad",
    "nash_mtl", "imtl_g",   "imtl",     "aligned_mtl", "upgrad", "gradvac"};
static const char *const weighting_about[TL_WEIGHTING_COUNT] = {
    "sum_k w_k L_k",
    "learned log-variances s_k: 0.5 exp(-s_k) L_k + 0.5 s_k (Kendall et al. 2018)",
    "weights fitted to balance the gradient norms on the last shared layer (Chen et al. 2018)",
    "K softmax of the epoch loss ratios / temperature (Liu et al. 2019)",
    "task gradients projected off the ones they conflict with (Yu et al. 2020)",
    "random weights every step: softmax of normals or Dirichlet (Lin et al. 2022)",
    "geometric mean of the task losses (Chennupati et al. 2019)",
    "weights learned to equalise the log-loss decrease of every task (Liu et al. 2023)",
    "log losses, EMA task gradients scaled to the largest norm (Lin et al. 2023)",
    "smooth Tchebycheff scalarisation after log-loss warm-up epochs (Lin et al. 2024)",
    "learned loss scales s_k: exp(s_k) L_k - s_k (IMTL-L, Liu et al. 2021)",
    "gradient sign dropout at the shared representation (Chen et al. 2020)",
    "min-norm point of the task gradients' convex hull (Sener & Koltun 2018)",
    "best worst-task improvement within a ball around the mean (Liu et al. 2021)",
    "Nash bargaining solution of the tasks (Navon et al. 2022)",
    "equal projections on every unit task gradient (IMTL-G, Liu et al. 2021)",
    "IMTL-G on IMTL-L's learned loss scales (Liu et al. 2021)",
    "task gradients aligned to condition number 1 (Senushkin et al. 2023)",
    "projections onto the dual cone: no task's loss rises (TorchJD, 2024)",
    "task gradients lifted to EMA cosine targets (Wang et al. 2021)"};

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
    c->backbone.select_k = 2;     /* DSelect-k's code: gamma 1, no entropy regulariser */
    c->backbone.gamma = 1.0f;
    c->emb_dim = 16;
    c->weighting = TL_WEIGHTING_FIXED;
    c->gradnorm_alpha = 1.5f;
    c->dwa_temperature = 2.0f;
    tl_weighting_opts_defaults(&c->wopt);
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
    c->n_bag = tl_dataset_n_bag(d);
    for (int b = 0; b < c->n_bag; b++) {
        c->bag_vocab[b] = tl_dataset_bag_vocab(d, b);
        c->bag_len[b] = tl_dataset_bag_len(d, b);
        c->bag_pool[b] = (int)tl_dataset_bag_pool(d, b);
        snprintf(c->bag_name[b], sizeof c->bag_name[b], "%s", tl_dataset_bag_name(d, b));
    }
    c->n_field_fp = nc + c->n_bag;
    for (int f = 0; f < nc; f++) c->field_fp[f] = tl_dataset_vocab_fingerprint(d, f);
    for (int b = 0; b < c->n_bag; b++) c->field_fp[nc + b] = tl_dataset_bag_fingerprint(d, b);
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
    if (strcmp(name, "hps") == 0) { /* hard parameter sharing: the Shared-Bottom's other name */
        *out = TL_BACKBONE_SHARED_BOTTOM;
        return TL_OK;
    }
    tl_status s = parse_name("backbone", name, backbone_names, TL_BACKBONE_COUNT, &i);
    if (s == TL_OK) *out = (tl_backbone_kind)i;
    return s;
}

const char *tl_backbone_name(tl_backbone_kind k)
{
    return (unsigned)k < TL_BACKBONE_COUNT ? backbone_names[k] : "?";
}

int tl_backbone_is_esmm(const tl_backbone_spec *b)
{
    return b->kind == TL_BACKBONE_ESMM || b->esmm;
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

const char *tl_weighting_about(tl_weighting w)
{
    return (unsigned)w < TL_WEIGHTING_COUNT ? weighting_about[w] : "?";
}

void tl_weighting_opts_defaults(tl_weighting_opts *o)
{
    memset(o, 0, sizeof *o);
    o->at = TL_AT_PARAMS;
    o->famo_lr = 0.025f;
    o->famo_gamma = 1e-3f;
    o->db_beta = 0.9f;
    o->db_beta_sigma = 0.0f;
    o->stch_mu = 1.0f;
    o->stch_warmup = 4;
    o->graddrop_leak = 0.0f;
    o->cagrad_c = 0.4f;
    o->cagrad_rescale = 1;
    o->nash_max_norm = 1.0f;
    o->gradvac_beta = 0.5f;
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

/* CrossDistil's switches (tl_model_config_check). */
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
    if (tl_backbone_is_esmm(b))
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

/* STEM, AdaTT, cross-stitch and DSelect-k (tl_model_config_check). */
static tl_status check_new_backbone(const tl_model_config *c)
{
    const tl_backbone_spec *b = &c->backbone;
    const char *name = tl_backbone_name(b->kind);
    switch (b->kind) {
    case TL_BACKBONE_STEM:
    case TL_BACKBONE_ADATT:
        if (b->expert.n < 1) return tl_fail(TL_ERR_ARG, "%s: expert needs at least one layer", name);
        if (b->levels < 1 || b->levels > 8 || b->specific < 1 || b->specific > 256 || b->shared < 0 ||
            b->shared > 256)
            return tl_fail(TL_ERR_ARG, "%s: needs levels 1..8, specific 1..256 and shared 0..256 (got "
                                       "levels=%d shared=%d specific=%d)",
                           name, b->levels, b->shared, b->specific);
        if (b->kind == TL_BACKBONE_STEM) {
            tl_status s = check_mlp(&b->gate, "stem: gate");
            if (s != TL_OK) return s;
        }
        if (b->kind == TL_BACKBONE_STEM && c->n_cat < 1)
            return tl_fail(TL_ERR_ARG, "stem: needs categorical fields (its task-specific part is an "
                                       "embedding table per task); the data has none");
        return TL_OK;
    case TL_BACKBONE_CROSS_STITCH:
        if (b->bottom.n < 1)
            return tl_fail(TL_ERR_ARG, "cross_stitch: bottom needs at least one layer (a cross-stitch "
                                       "unit follows each)");
        return TL_OK;
    case TL_BACKBONE_DSELECT_K:
        if (b->expert.n < 1) return tl_fail(TL_ERR_ARG, "dselect_k: expert needs at least one layer");
        if (b->experts < 2 || b->experts > 1024)
            return tl_fail(TL_ERR_ARG, "dselect_k: experts must be 2..1024, got %d", b->experts);
        if (b->select_k < 1 || b->select_k > b->experts)
            return tl_fail(TL_ERR_ARG, "dselect_k: k must be 1..experts (%d), got %d", b->experts,
                           b->select_k);
        if (!(b->gamma > 0.0f && isfinite(b->gamma)))
            return tl_fail(TL_ERR_ARG, "dselect_k: gamma must be finite and > 0, got %g", (double)b->gamma);
        if (!(b->entropy >= 0.0f && isfinite(b->entropy)))
            return tl_fail(TL_ERR_ARG, "dselect_k: entropy must be finite and >= 0, got %g",
                           (double)b->entropy);
        return TL_OK;
    default:
        return TL_OK;
    }
}

tl_status tl_model_config_check(const tl_model_config *c)
{
    const tl_backbone_spec *b = &c->backbone;
    tl_status s;
    if (c->n_tasks < 1 || c->n_tasks > TL_MAX_TASKS)
        return tl_fail(TL_ERR_ARG, "model: %d tasks; 1..%d supported", c->n_tasks, TL_MAX_TASKS);
    if (c->n_bag < 0 || c->n_bag > TL_MAX_BAGS)
        return tl_fail(TL_ERR_ARG, "model: %d multi-valued fields; at most %d", c->n_bag, TL_MAX_BAGS);
    if (c->n_cat < 0 || c->n_cat > TL_MAX_FIELDS || c->n_num < 0 || c->n_cat + c->n_num + c->n_bag == 0)
        return tl_fail(TL_ERR_ARG, "model: needs at least one feature (got %d categorical, %d "
                                   "numeric)", c->n_cat, c->n_num);
    for (int f = 0; f < c->n_cat; f++)
        if (c->vocab[f] < 1)
            return tl_fail(TL_ERR_ARG, "model: field %d has vocabulary size %d", f + 1,
                           (int)c->vocab[f]);
    for (int f = 0; f < c->n_bag; f++)
        if (c->bag_vocab[f] < 1 || c->bag_len[f] < 1 || c->bag_len[f] > TL_DATA_MAX_BAG_LEN ||
            c->bag_pool[f] < TL_POOL_SUM || c->bag_pool[f] > TL_POOL_MAX)
            return tl_fail(TL_ERR_ARG, "model: multi-valued field '%s' has vocabulary size %d, %d slots, "
                                       "pooling %d (need >= 1, 1..%d, 0..2)",
                           c->bag_name[f], (int)c->bag_vocab[f], c->bag_len[f], c->bag_pool[f],
                           TL_DATA_MAX_BAG_LEN);
    if (c->n_bag > 0 && c->backbone.kind == TL_BACKBONE_STEM)
        return tl_fail(TL_ERR_ARG, "stem: multi-valued fields ('%s') are not supported yet (its task-specific "
                                   "embeddings cover the single-valued fields only)", c->bag_name[0]);
    if (c->n_cat + c->n_bag > 0 && (c->emb_dim < 1 || c->emb_dim > 4096))
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
    if ((s = check_new_backbone(c)) != TL_OK) return s;
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
    if (b->esmm && (b->kind == TL_BACKBONE_ESMM || b->kind == TL_BACKBONE_AITM))
        return tl_fail(TL_ERR_ARG, "esmm: its head goes over shared_bottom, omoe, mmoe, ple, stem, "
                                   "adatt, cross_stitch or dselect_k, not %s", tl_backbone_name(b->kind));
    if (tl_backbone_is_esmm(b) && c->n_tasks != 2)
        return tl_fail(TL_ERR_ARG, "esmm: needs exactly 2 binary tasks (CTR then CTCVR), got %d tasks",
                       c->n_tasks);
    for (int k = 0; tl_backbone_is_esmm(b) && k < c->n_tasks; k++)
        if (c->tasks[k].type != TL_TASK_BINARY)
            return tl_fail(TL_ERR_ARG, "esmm: task '%s' is a regression task; ESMM's two tasks (CTR "
                                       "then CTCVR) must both be binary", c->tasks[k].name);
    if (c->dml.enabled) {
        if (b->kind == TL_BACKBONE_ESMM || b->kind == TL_BACKBONE_AITM)
            return tl_fail(TL_ERR_ARG, "dml: attaches to every backbone but esmm and aitm, not %s",
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
