/* losses/distill.c — CrossDistil (teachers, quadruplet loss, calibrated
 * distillation, error correction), a strategy behind the hook table. */
#include "distill.h"

#include "models/builders.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- CrossDistil ------------------------------------------------------------ */

static void add_row_loss(tl_distill_state *d, tl_node l, int k)
{
    d->row_loss[d->n_row_loss] = l;
    d->row_loss_task[d->n_row_loss++] = k;
}

static inline float sigmoidf(float x)
{
    return x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
}

/* Error correction of a soft label p towards the row's label y. */
static float correct_label(const tl_distill_spec *ds, float p, float y)
{
    switch (ds->correct) {
    case TL_CORRECT_BLEND:
        return (1.0f - ds->lambda) * p + ds->lambda * y;
    case TL_CORRECT_CLIP: /* keep the soft label on its label's side of 0.5 */
        return y > 0.5f ? (p > 0.5f ? p : 0.5f) : (p < 0.5f ? p : 0.5f);
    default:
        return p;
    }
}

/* A fitted calibrator at teacher score r: Platt reads r itself (fitted on
 * the raw scores: sigmoid then logit in float would tie every r beyond ~16),
 * isotonic reads sigmoid(r); sigmoid(r) until the first fit. */
static float fitted_map(const tl_distill_task *t, float r)
{
    if (t->cal && tl_calibrator_kind(t->cal) == TL_CALIB_PLATT)
        return (float)tl_calibrator_apply_score(t->cal, (double)r);
    float p = sigmoidf(r);
    return t->cal ? (float)tl_calibrator_apply1(t->cal, (double)p) : p;
}

/* map: teacher score -> calibrated, corrected soft label (fitted calibrator,
 * or sigmoid until the first fit). */
static float apply_fitted(void *ctx, float r, float y)
{
    tl_distill_task *t = ctx;
    return correct_label(t->spec, fitted_map(t, r), y);
}

/* Label indicators for the in-graph clip (labels carry no gradient). */
static float label_pos(void *ctx, float y, float unused)
{
    (void)ctx, (void)unused;
    return y > 0.5f ? 1.0f : 0.0f;
}

static float label_neg(void *ctx, float y, float unused)
{
    (void)ctx, (void)unused;
    return y > 0.5f ? 0.0f : 1.0f;
}

static float half(void *ctx, float y, float unused)
{
    (void)ctx, (void)y, (void)unused;
    return 0.5f;
}

/* The clip correction built from ops, so that with teacher_grad the soft
 * label's gradient passes where it is not clipped (a map would cut it):
 * 0.5 + [y>0.5] relu(p - 0.5) - [y<=0.5] relu(0.5 - p), which is
 * max(p, 0.5) for positive rows and min(p, 0.5) for negative ones. */
static tl_node clip_soft(tl_graph *g, tl_node p, tl_node y)
{
    tl_node h = tl_map(g, y, TL_NONE, half, NULL);
    tl_node up = tl_mul(g, tl_map(g, y, TL_NONE, label_pos, NULL), tl_relu(g, tl_sub(g, p, h)));
    tl_node down = tl_mul(g, tl_map(g, y, TL_NONE, label_neg, NULL), tl_relu(g, tl_sub(g, h, p)));
    return tl_sub(g, tl_add(g, h, up), down);
}

/* The partner label as the quadruplet groups read it, flipped when the
 * pair's order is negative. ctx is the pair's flip in the model's
 * configuration, read at every run: order="auto" is resolved by the first
 * fit, after the graph is built. */
static float partner_label(void *ctx, float y, float unused)
{
    (void)unused;
    return *(const int *)ctx == 1 ? (y > 0.5f ? 0.0f : 1.0f) : y;
}

/* The partner's predicted probability as naive KD distils it: 1 - p when the
 * pair's order is negative (ctx as in partner_label, read at every run). */
static float partner_prob(void *ctx, float p, float unused)
{
    (void)unused;
    return *(const int *)ctx == 1 ? 1.0f - p : p;
}

/* A row's weight in pair (a, b)'s ranking terms from the two tasks' row
 * weights w [in space of a], w [in space of b]: w when the row is in both
 * spaces, else 0 (the row is in no group). */
static float pair_weight(void *ctx, float wa, float wb)
{
    (void)ctx;
    return wb > 0.0f ? wa : 0.0f;
}

static int in_graph_platt(const tl_distill_spec *ds)
{
    return ds->calibrate == TL_DISTILL_PLATT && !ds->calib_valid;
}

static tl_status build(void *st, const tl_model_view *v, tl_build_stage stage)
{
    if (stage != TL_BUILD_LOSSES) return TL_OK;
    tl_distill_state *d = st;
    const tl_node *h = v->tower_in, *logit = v->logit;
    tl_graph *g = v->g;
    const tl_distill_spec *ds = &v->cfg->distill;
    int K = v->cfg->n_tasks;
    char n[96];
    d->kd_alpha = tl_scalar(g, 0.0f, "distill.alpha");
    d->kd_keep = tl_scalar(g, 1.0f, "distill.one_minus_alpha");
    d->n_row_loss = d->n_quad = 0;
    int has_teacher[TL_MAX_TASKS] = {0};
    for (int p = 0; p < ds->n_pairs; p++)
        for (int s = 0; s < 2; s++) has_teacher[ds->pairs[p][s]] = 1;

    for (int k = 0; k < K; k++) {
        d->teacher[k] = d->teacher_soft[k] = TL_NONE;
        d->task[k].spec = &v->cfg->distill;
        d->task[k].cal = NULL;
    }
    if (ds->naive) { /* soft label of A = the student prediction of B, 1 - it for a negative pair */
        for (int p = 0; p < ds->n_pairs; p++)
            for (int side = 0; side < 2; side++) {
                int k = ds->pairs[p][side], other = ds->pairs[p][1 - side];
                tl_node soft = tl_map(g, tl_stop_grad(g, v->pred[other]), TL_NONE, partner_prob,
                                      (void *)&v->cfg->distill.flip[p]);
                snprintf(n, sizeof n, "naive.%s.soft", v->cfg->tasks[k].name);
                tl_node_name(g, soft, n);
                tl_node kd = tl_bce_logits(g, logit[k], soft, v->rowweight[k]);
                add_row_loss(d, kd, k);
                v->objective[k] = tl_add(g, tl_mul(g, v->loss[k], d->kd_keep), tl_mul(g, kd, d->kd_alpha));
            }
        return tl_graph_status(g) == TL_OK ? TL_OK : tl_fail(tl_graph_status(g), "%s", tl_graph_errmsg(g));
    }
    for (int k = 0; k < K; k++) {
        if (!has_teacher[k]) continue;
        const char *tn = v->cfg->tasks[k].name;
        /* "separate": the teacher reads the shared representation through a
         * stop-gradient, so its ranking loss cannot disturb the student. */
        tl_node in = ds->teacher_shared ? h[k] : tl_stop_grad(g, h[k]);
        snprintf(n, sizeof n, "teacher.%s", tn);
        tl_node t = tl_build_mlp(g, in, &v->cfg->tasks[k].tower, n);
        snprintf(n, sizeof n, "teacher.%s.out", tn);
        d->teacher[k] = tl_node_name(g, tl_build_dense(g, t, 1, TL_ACT_NONE, 1, n), n);
        tl_node r = d->teacher[k], y = v->label[k];
        tl_node soft;
        if (in_graph_platt(ds)) { /* p~ = sigmoid(softplus(a') r + b), trained by BCE on train */
            snprintf(n, sizeof n, "calibrator.%s.a", tn);
            d->task[k].cal_a = tl_param(g, 1, 1, TL_INIT_CONSTANT, 0.5413f, n); /* softplus = 1 */
            tl_node a = tl_softplus(g, d->task[k].cal_a);
            snprintf(n, sizeof n, "calibrator.%s.b", tn);
            tl_node b = d->task[k].cal_b = tl_param(g, 1, 1, TL_INIT_ZEROS, 0.0f, n);
            tl_node cal_sg = tl_sigmoid(g, tl_add(g, tl_mul(g, tl_stop_grad(g, r), a), b));
            tl_node lcal = tl_bce_prob(g, cal_sg, y, v->rowweight[k]);
            add_row_loss(d, lcal, k);
            *v->extra = *v->extra == TL_NONE ? lcal : tl_add(g, *v->extra, lcal);
            soft = ds->teacher_grad ? tl_sigmoid(g, tl_add(g, tl_mul(g, r, a), b)) : cal_sg;
            if (ds->correct == TL_CORRECT_BLEND)
                soft = tl_add(g, tl_scale(g, soft, 1.0f - ds->lambda), tl_scale(g, y, ds->lambda));
            else if (ds->correct == TL_CORRECT_CLIP)
                soft = clip_soft(g, soft, y);
        } else {
            soft = tl_map(g, r, y, apply_fitted, &d->task[k]);
        }
        if (!ds->teacher_grad) soft = tl_stop_grad(g, soft);
        snprintf(n, sizeof n, "teacher.%s.soft", tn);
        d->teacher_soft[k] = tl_node_name(g, soft, n);
        if (ds->bce_on_aux) {
            tl_node l = tl_bce_logits(g, r, y, v->rowweight[k]);
            add_row_loss(d, l, k);
            *v->extra = *v->extra == TL_NONE ? l : tl_add(g, *v->extra, l);
        }
        /* student: (1 - alpha) BCE(y, y^) + alpha BCE(p~, y^) */
        tl_node kd = tl_bce_logits(g, logit[k], soft, v->rowweight[k]);
        add_row_loss(d, kd, k);
        v->objective[k] = tl_add(g, tl_mul(g, v->loss[k], d->kd_keep), tl_mul(g, kd, d->kd_alpha));
    }
    for (int p = 0; p < ds->n_pairs; p++) {
        int a = ds->pairs[p][0], b = ds->pairs[p][1];
        int *flip = (int *)&v->cfg->distill.flip[p]; /* read by the maps: fit resolves auto order */
        tl_node w = tl_map(g, v->rowweight[a], v->rowweight[b], pair_weight, NULL);
        snprintf(n, sizeof n, "distill.pair%d.weight", p + 1);
        tl_node_name(g, w, n);
        tl_node yb = tl_map(g, v->label[b], TL_NONE, partner_label, flip);
        tl_node ya = tl_map(g, v->label[a], TL_NONE, partner_label, flip);
        tl_node la = tl_quadruplet_bpr_weighted(g, d->teacher[a], v->label[a], yb, w, 0, ds->max_pairs);
        tl_node lb = tl_quadruplet_bpr_weighted(g, d->teacher[b], v->label[b], ya, w, 0, ds->max_pairs);
        tl_node qa[4] = {d->teacher[a], v->label[a], yb, w}, qb[4] = {d->teacher[b], v->label[b], ya, w};
        memcpy(d->quad_in[d->n_quad], qa, sizeof qa);
        d->quad[d->n_quad++] = la;
        memcpy(d->quad_in[d->n_quad], qb, sizeof qb);
        d->quad[d->n_quad++] = lb;
        tl_node aux = tl_scale(g, tl_add(g, la, lb), ds->aux);
        *v->extra = *v->extra == TL_NONE ? aux : tl_add(g, *v->extra, aux);
    }
    return tl_graph_status(g) == TL_OK ? TL_OK : tl_fail(tl_graph_status(g), "%s", tl_graph_errmsg(g));
}

static void step_begin(void *st, const tl_model_view *v)
{
    tl_distill_state *d = st;
    if (!v->cfg->distill.enabled) return;
    float a = *v->step >= v->cfg->distill.warmup ? v->cfg->distill.kd : 0.0f;
    tl_graph_set_scalar(v->g, d->kd_alpha, a);
    tl_graph_set_scalar(v->g, d->kd_keep, 1.0f - a);
}

/* Teacher scores (n x n_tasks) of rows[0..n) of s (rows NULL: rows 0..n). */
static tl_status teacher_scores(const tl_distill_state *d, const tl_model_view *v, const tl_split *s, const uint32_t *rows, size_t n,
                                float *out)
{
    int K = v->cfg->n_tasks, B = v->cfg->max_batch;
    for (size_t from = 0; from < n; from += (size_t)B) {
        if (tl_cancelled()) return tl_fail(TL_ERR_CANCELLED, "teacher prediction interrupted");
        int nb = (int)(n - from < (size_t)B ? n - from : (size_t)B);
        v->fill_batch(v->model, s, rows, from, nb);
        tl_status st = tl_graph_forward(v->g, 0);
        if (st != TL_OK) return tl_fail_context(st, "teachers");
        for (int k = 0; k < K; k++) {
            if (d->teacher[k] == TL_NONE) continue;
            const float *sc = tl_graph_value(v->g, d->teacher[k]);
            for (int i = 0; i < nb; i++) out[(from + (size_t)i) * K + k] = sc[i];
        }
    }
    return TL_OK;
}

/* Refit the calibrators fitted outside the graph on the calibration split,
 * on every row (max_rows 0) or on at most max_rows evenly spread ones; a task
 * with a space is fitted on the rows of its space only, as it is trained and
 * evaluated. The new calibrators replace the old ones only when every task's
 * fit succeeded. */
static tl_status refit(tl_distill_state *d, const tl_model_view *v, const tl_split *train,
                       const tl_split *valid, size_t max_rows)
{
    const tl_distill_spec *ds = &v->cfg->distill;
    if (!ds->enabled || ds->naive || in_graph_platt(ds)) return TL_OK;
    const tl_split *s = ds->calib_valid && valid ? valid : train;
    int K = v->cfg->n_tasks;
    size_t n = max_rows && s->n > max_rows ? max_rows : s->n;
    uint32_t *rows = n < s->n ? tl_malloc(n * sizeof *rows, "calibration rows") : NULL;
    float *scores = tl_malloc(n * (size_t)K * sizeof(float), "teacher scores");
    float *p = tl_malloc(n * sizeof(float), "teacher scores or probabilities");
    float *y = tl_malloc(n * sizeof(float), "teacher labels");
    float *w = s->weight && rows ? tl_malloc(n * sizeof(float), "calibration weights") : NULL;
    uint8_t *in_space = tl_malloc(n, "calibration task space");
    tl_calibrator *fresh[TL_MAX_TASKS] = {NULL};
    int oom = !scores || !p || !y || !in_space || (n < s->n && !rows) || (rows && s->weight && !w);
    tl_status st = oom ? TL_ERR_NOMEM : TL_OK;
    if (st == TL_OK && rows)
        for (size_t i = 0; i < n; i++) {
            rows[i] = (uint32_t)((uint64_t)i * s->n / n);
            if (w) w[i] = s->weight[rows[i]];
        }
    if (st == TL_OK) st = teacher_scores(d, v, s, rows, n, scores);
    int platt = ds->calibrate == TL_DISTILL_PLATT, clamped[TL_MAX_TASKS] = {0};
    for (int k = 0; k < K && st == TL_OK; k++) {
        if (d->teacher[k] == TL_NONE) continue;
        int space = v->cfg->tasks[k].space;
        for (size_t i = 0; i < n; i++) {
            size_t r = rows ? rows[i] : i;
            float sc = scores[i * (size_t)K + (size_t)k];
            p[i] = platt ? sc : sigmoidf(sc);
            y[i] = s->labels[r * (size_t)K + (size_t)k];
            if (space >= 0) in_space[i] = s->labels[r * (size_t)K + (size_t)space] > 0.5f;
        }
        const float *wk = rows ? w : s->weight;
        const uint8_t *mk = space >= 0 ? in_space : NULL;
        st = platt ? tl_calibrator_fit_scores(TL_CALIB_PLATT, p, y, wk, mk, n, &fresh[k], &clamped[k])
                   : tl_calibrator_fit(TL_CALIB_ISOTONIC, p, y, wk, mk, n, &fresh[k]);
        if (st != TL_OK)
            st = tl_fail_context(st, "crossdistil: fitting the calibrator of task '%s'",
                                 v->cfg->tasks[k].name);
    }
    for (int k = 0; k < K; k++) {
        if (st == TL_OK && d->teacher[k] != TL_NONE) {
            tl_calibrator_free(d->task[k].cal);
            d->task[k].cal = fresh[k];
            d->task[k].cal_clamped = clamped[k];
        } else {
            tl_calibrator_free(fresh[k]);
        }
    }
    tl_free(rows);
    tl_free(scores);
    tl_free(p);
    tl_free(y);
    tl_free(w);
    tl_free(in_space);
    return st;
}

static tl_status epoch_end(void *st, const tl_model_view *v, const tl_fit_point *f)
{
    return refit(st, v, f->train, f->valid, 0);
}

static tl_status step_end(void *st, const tl_model_view *v, const tl_fit_point *f)
{
    int every = v->cfg->distill.calib_every;
    if (every <= 0 || *v->step % every != 0) return TL_OK;
    return refit(st, v, f->train, f->valid, TL_DISTILL_CALIB_ROWS);
}

float tl_distill_calibrate(const tl_distill_state *d, const tl_model_view *v, int k, float r)
{
    const tl_distill_task *t = &d->task[k];
    if (in_graph_platt(&v->cfg->distill)) {
        float a = tl_graph_value(v->g, t->cal_a)[0], b = tl_graph_value(v->g, t->cal_b)[0];
        float sp = (a > 0.0f ? a : 0.0f) + log1pf(expf(-fabsf(a))); /* softplus */
        return sigmoidf(sp * r + b);
    }
    return fitted_map(t, r);
}

static void distill_free(void *st)
{
    tl_distill_state *d = st;
    for (int k = 0; k < TL_MAX_TASKS; k++) {
        tl_calibrator_free(d->task[k].cal);
        d->task[k].cal = NULL;
    }
}

tl_node tl_distill_teacher(const tl_distill_state *d, int k) { return d->teacher[k]; }
const tl_calibrator *tl_distill_calibrator(const tl_distill_state *d, int k) { return d->task[k].cal; }

void tl_distill_set_calibrator(tl_distill_state *d, int k, tl_calibrator *c)
{
    tl_calibrator_free(d->task[k].cal);
    d->task[k].cal = c;
}

const tl_hook tl_distill_hook = {
    .name = "crossdistil",
    .size = sizeof(tl_distill_state),
    .build = build,
    .step_begin = step_begin,
    .step_end = step_end,
    .epoch_end = epoch_end,
    .free = distill_free,
};
