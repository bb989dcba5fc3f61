/* models/model_eval.c — part of module model (model.h): filling the graph's
 * inputs from a split, prediction, evaluation, CrossDistil's teachers and
 * task-pair order, and the output calibrators (tl.calibrate). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dist.h"
#include "losses/distill.h"
#include "model_impl.h"
#include "parallel.h"

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
    int32_t *bag[TL_MAX_BAGS]; /* per multi-valued field: its id slots */
};

/* Row r of the split's bag slots into row i of each bag field's input. */
static void fill_bags(const struct fill_job *j, size_t i, size_t r)
{
    const tl_model_config *c = &j->m->cfg;
    const int32_t *src = j->s->bag + r * (size_t)j->s->bag_slots;
    for (int b = 0; b < c->n_bag; b++) {
        size_t L = (size_t)c->bag_len[b];
        memcpy(j->bag[b] + i * L, src, L * sizeof *src);
        src += L;
    }
}

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
    for (size_t i = i0; i < i1 && c->n_bag; i++) fill_bags(j, i, order ? order[j->from + i] : j->from + i);
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
    struct fill_job j = {m, s, order, from, NULL, NULL, {NULL}, {NULL}, {NULL}};
    j.ids = m->ids != TL_NONE ? tl_graph_ids(m->g, m->ids) : NULL;
    for (int b = 0; b < c->n_bag; b++) j.bag[b] = tl_graph_ids(m->g, m->bag_ids[b]);
    j.num = m->num != TL_NONE ? tl_graph_input(m->g, m->num) : NULL;
    for (int k = 0; labels && k < c->n_tasks; k++) {
        j.label[k] = tl_graph_input(m->g, m->label[k]);
        j.rw[k] = tl_graph_input(m->g, m->rowweight[k]);
    }
    size_t per_row = (size_t)(c->n_cat + c->n_num) + (labels ? 2 * (size_t)c->n_tasks : 0) +
                     (size_t)(c->n_bag ? s->bag_slots : 0);
    size_t grain = order ? FILL_GRAIN : tl_parallel_row_grain(per_row);
    tl_parallel_for((size_t)n, grain, fill_rows, &j);
    tl_graph_set_batch(m->g, n);
}

void tl_model_fill_batch(tl_model *m, const tl_split *s, const uint32_t *order, size_t from, int n)
{
    fill(m, s, order, from, n, 1);
}

/* The split's bag slots must be the model's: the multi-valued fields it was built on. */
static tl_status check_bags(const tl_model *m, const tl_split *s, const char *what)
{
    const tl_model_config *c = &m->cfg;
    if (!c->n_bag) return TL_OK;
    int slots = 0;
    for (int b = 0; b < c->n_bag; b++) slots += c->bag_len[b];
    if (!s->bag)
        return tl_fail(TL_ERR_ARG, "%s: the model has multi-valued fields (%s%s) but the split has none", what,
                       c->bag_name[0], c->n_bag > 1 ? ", ..." : "");
    if (s->bag_slots != slots)
        return tl_fail(TL_ERR_ARG, "%s: the split's multi-valued fields have %d id slots per row, the model's %d "
                                   "(read the data with like= the training data)",
                       what, s->bag_slots, slots);
    return TL_OK;
}

tl_status tl_model_check_split(const tl_model *m, const tl_split *s, const char *what)
{
    if (!s || s->n == 0) return tl_fail(TL_ERR_ARG, "%s: the split has no rows", what);
    if ((m->cfg.n_cat && !s->cat) || (m->cfg.n_num && !s->num) || !s->labels)
        return tl_fail(TL_ERR_ARG, "%s: the split lacks features or labels", what);
    tl_status st = check_bags(m, s, what);
    if (st != TL_OK) return st;
    if (s->n > UINT32_MAX) return tl_fail(TL_ERR_ARG, "%s: more than 2^32 rows", what);
    return TL_OK;
}

/* Predictions need the features only (rows to score may have no labels). */
static tl_status check_features(const tl_model *m, const tl_split *s, const char *what)
{
    if (!s || s->n == 0) return tl_fail(TL_ERR_ARG, "%s: the split has no rows", what);
    if ((m->cfg.n_cat && !s->cat) || (m->cfg.n_num && !s->num))
        return tl_fail(TL_ERR_ARG, "%s: the split lacks features", what);
    tl_status st = check_bags(m, s, what);
    if (st != TL_OK) return st;
    if (s->n > UINT32_MAX) return tl_fail(TL_ERR_ARG, "%s: more than 2^32 rows", what);
    return TL_OK;
}

void tl_model_set_dist(tl_model *m, struct tl_dist *d) { m->view.dist = d; }

/* Rows [r0, r1) of s, in chunks of the model's batch from r0 (a multiple of
 * it), into out. `cancel`: stop at Ctrl-C (not under a dist: the other ranks
 * would wait for this one). */
static tl_status predict_rows(tl_model *m, const tl_split *s, size_t r0, size_t r1, float *out, int cancel)
{
    int K = m->cfg.n_tasks, B = m->cfg.max_batch;
    tl_status st;
    /* Predictions need no labels. Row weights of 0 make the loss nodes skip
     * every row: their values after a predict are 0. */
    for (int k = 0; k < K; k++)
        memset(tl_graph_input(m->g, m->rowweight[k]), 0, (size_t)B * sizeof(float));
    for (size_t from = r0; from < r1; from += (size_t)B) {
        if (cancel && tl_cancelled()) return tl_fail(TL_ERR_CANCELLED, "predict interrupted");
        int n = (int)(r1 - from < (size_t)B ? r1 - from : (size_t)B);
        fill(m, s, NULL, from, n, 0);
        if ((st = tl_graph_forward(m->g, 0)) != TL_OK) return tl_fail_context(st, "predict");
        for (int k = 0; k < K; k++) {
            const float *p = tl_graph_value(m->g, m->pred[k]);
            for (int i = 0; i < n; i++) out[(from + (size_t)i) * K + k] = p[i];
        }
    }
    return TL_OK;
}

/* Under a dist: rank r scores its block of the batch-sized chunks (the
 * chunks one process scores, so the same bits), then every rank gets every
 * block; a rank that failed sends its message instead, and every rank
 * fails with it. */
static tl_status predict_dist(tl_model *m, const tl_split *s, float *out)
{
    tl_dist *d = m->view.dist;
    size_t B = (size_t)m->cfg.max_batch, K = (size_t)m->cfg.n_tasks;
    int chunks = (int)((s->n + B - 1) / B), c0, c1;
    tl_dist_grains(chunks, d->size, d->rank, &c0, &c1);
    size_t r0 = (size_t)c0 * B, r1 = (size_t)c1 * B < s->n ? (size_t)c1 * B : s->n;
    if (r0 > r1) r0 = r1;
    tl_status st = predict_rows(m, s, r0, r1, out, 0);
    char msg[256] = "";
    if (st != TL_OK) snprintf(msg, sizeof msg, "%s", tl_errmsg());
    /* a failed rank sends its message (1 byte more than any block of rows) */
    size_t rows_bytes = (r1 - r0) * K * sizeof(float);
    const void *send = st == TL_OK ? (const void *)(out + r0 * K) : (const void *)msg;
    size_t n = st == TL_OK ? rows_bytes : s->n * K * sizeof(float) + 1;
    const void *got = NULL;
    const size_t *counts = NULL;
    char *big = NULL;
    if (st != TL_OK) {
        if (!(big = tl_calloc(n, 1, "predict error message"))) return TL_ERR_NOMEM;
        memcpy(big, msg, sizeof msg);
        send = big;
    }
    tl_status cs = tl_dist_allgatherv(d, send, n, &got, &counts);
    tl_free(big);
    if (cs != TL_OK) return tl_fail_context(cs, "predict: rank %d: gathering predictions", d->rank);
    const unsigned char *all = got; /* the group's buffer (dist.h) */
    size_t off = 0, at = 0;
    for (int q = 0; q < d->size && st == TL_OK; q++) {
        if (counts[q] > s->n * K * sizeof(float)) {
            st = tl_fail(TL_ERR_STATE, "predict: rank %d failed: %.255s", q, (const char *)all + off);
            break;
        }
        if (q != d->rank) memcpy(out + at, all + off, counts[q]);
        at += counts[q] / sizeof(float);
        off += counts[q];
    }
    if (st == TL_OK && at != s->n * K)
        st = tl_fail(TL_ERR_STATE, "predict: the ranks scored %zu of %zu values", at, s->n * K);
    else if (st != TL_OK && msg[0])
        st = tl_fail(st, "predict: rank %d failed: %s", d->rank, msg);
    return st;
}

tl_status tl_model_predict(tl_model *m, const tl_split *s, float *out)
{
    tl_status st = check_features(m, s, "predict");
    if (st != TL_OK) return st;
    if (m->view.dist && m->view.dist->size > 1) return predict_dist(m, s, out);
    return predict_rows(m, s, 0, s->n, out, 1);
}

tl_status tl_model_predict_teachers(tl_model *m, const tl_split *s, int calibrated, float *out)
{
    tl_status st = tl_model_check_split(m, s, "teachers");
    if (st != TL_OK) return st;
    int K = m->cfg.n_tasks, B = m->cfg.max_batch;
    for (size_t from = 0; from < s->n; from += (size_t)B) {
        if (tl_cancelled()) return tl_fail(TL_ERR_CANCELLED, "teacher prediction interrupted");
        int n = (int)(s->n - from < (size_t)B ? s->n - from : (size_t)B);
        fill(m, s, NULL, from, n, 1);
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
    tl_status st = tl_model_check_split(m, s, "evaluate");
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
