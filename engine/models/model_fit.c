/* models/model_fit.c — part of module model (model.h): the fit loop
 * (epochs, batches, steps through the attached strategies' hooks, mid-epoch
 * and epoch-end validation, early stopping), its data-parallel step (dist.h),
 * the training history and the per-task gradient entry points
 * (task_grads.h). Over 1,000 lines because the data-parallel step (about 600)
 * shares the fit's state (fit_run) with the loop it replaces a step of; it
 * sits in one section below and would move to a file of its own together
 * with a private declaration of fit_run. */
#include "model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dist.h"
#include "losses/distill.h"
#include "losses/weighting.h"
#include "model_impl.h"
#include "parallel.h"
#include "task_grads.h"

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

/* order="auto": the first fit fixes each unresolved pair's order from its
 * train split; the graph reads the flip at every run (losses/distill.c). */
static void resolve_order(tl_model *m, const tl_split *train)
{
    tl_distill_spec *ds = &m->cfg.distill;
    for (int p = 0; ds->enabled && p < ds->n_pairs; p++)
        if (ds->flip[p] < 0)
            ds->flip[p] = tl_distill_auto_order(train, m->cfg.n_tasks, ds->pairs[p][0], ds->pairs[p][1]) == 2;
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

/* A non-finite task loss stops training before the update, naming the task
 * and the step; the gradients are cleared, the parameters kept. */
static tl_status check_task_losses(tl_model *m, const float *task_loss)
{
    for (int k = 0; k < m->cfg.n_tasks; k++)
        if (!isfinite(task_loss[k])) {
            tl_graph_zero_grad(m->g);
            return tl_fail(TL_ERR_NUMERIC,
                           "task '%s': loss is %g at step %lld (epoch %d); parameters kept from "
                           "the last good step",
                           m->cfg.tasks[k].name, (double)task_loss[k], (long long)m->step + 1,
                           m->epoch + 1);
        }
    return TL_OK;
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
    for (int k = 0; k < m->cfg.n_tasks; k++) task_loss[k] = tl_graph_value(m->g, m->loss[k])[0];
    if ((s = check_task_losses(m, task_loss)) != TL_OK) return s;
    tl_fit_point f = {NULL, NULL, task_loss, NULL};
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->backward && (s = m->hooks[i]->backward(m->hook_state[i], &m->view, &f)) != TL_OK)
            return s;
    if ((s = tl_optim_step(m->opt)) == TL_ERR_NUMERIC)
        return tl_fail_context(s, "fit: step %lld (epoch %d)", (long long)m->step + 1, m->epoch + 1);
    return s;
}

/* Data parallelism: the part of a fit's state (see dp_step below). */
typedef struct {
    tl_dist *d;            /* NULL: this process alone */
    int G, g0, g1;         /* grains per batch; this rank's [g0, g1) */
    int check_every;
    int self_reduce;       /* the weighting reduces per task (dp_self_reducing) */
    int stop_req;          /* a progress callback asked to stop: told at the next exchange */
    size_t dense_n;        /* floats of the dense parameters */
    unsigned char *send;   /* this rank's message */
    size_t send_cap;
    float *zero;           /* uncertainty weighting: the rows-free gradient (dense floats) */
    /* the dense sum, reduce-scatter style: this rank's grains' dense
     * gradients, what goes to each rank, its slice of every grain, the slice
     * summed, the whole sum; per-rank counts */
    float *mine, *sendb, *recvb, *acc, *full;
    size_t *scount, *rcount, *ccount;
} dp_run;

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
    dp_run dp; /* dp.d == NULL: this process alone */
    tl_dist *saved_dist; /* the model's own (tl_model_set_dist), back at the end */
} fit_run;

/* ---- data parallelism (dist.h) ------------------------------------------------
 *
 * Every rank holds the whole training split and walks the same global
 * batches in the same order. A batch of n rows is cut into G fixed grains
 * (tl_parallel_chunk(n, G, j)); rank r runs forward and backward on the rows
 * of its grains (tl_dist_grains), one grain per run, with each task loss
 * divided by the weight sum of the whole batch (tl_loss_set_denominator), so
 * that a grain's gradient is its exact share of the batch gradient. The
 * grains' gradients are added up in grain order: the dense part by slices
 * (dp_dense_sum), the embedding rows (row id, gradient) gathered by every
 * rank; then every rank runs the same optimizer step. A grain's computation depends only on its rows and the
 * parameters (dropout draws from a generator seeded by the step's state and
 * the grain), so G grains give the same bits at np = 1, 2, 3, ... (same
 * thread count). G = 1 at one rank is the ordinary fit.
 *
 * Message of a rank (gathered by all): a header (status, cancel flag, error
 * message), then per grain: grain index, rows, the K partial task losses and
 * per sparse parameter the touched rows' count, ids and gradient rows (the
 * dense floats, parameters in order, too in reduce_grads' message).
 */
typedef struct {
    int32_t status, stop;
    char msg[256];
} dp_header;

/* Weightings whose backward hook needs the batch's task losses or combines
 * the task gradients, summing what it combines over the ranks itself
 * (hooks.h: reduce_grads): the method's row declares it (weighting.h
 * tl_weighting_dp). */
static int dp_self_reducing(const tl_model *m)
{
    return tl_weighting_dp_mode(&m->cfg) == TL_DP_REDUCES;
}

static int dp_supported(const tl_model *m, const tl_fit_options *opt, char *why, size_t cap)
{
    const tl_model_config *c = &m->cfg;
    if (tl_weighting_dp_mode(c) == TL_DP_REFUSED)
        snprintf(why, cap, "weighting '%s' is not known to the data-parallel fit", tl_weighting_name(c->weighting));
    else if (dp_self_reducing(m) && opt->grains > 0 && opt->dist && opt->grains != opt->dist->size)
        snprintf(why, cap, "weighting '%s' reduces each task's gradient itself, one grain per rank: "
                 "grains must be %d (the rank count), not %d", tl_weighting_name(c->weighting),
                 opt->dist->size, opt->grains);
    else if (c->distill.enabled)
        snprintf(why, cap, "CrossDistil's quadruplet loss pairs rows across the whole batch");
    else if (m->extra != TL_NONE && c->backbone.kind != TL_BACKBONE_AITM && c->backbone.kind != TL_BACKBONE_DSELECT_K)
        snprintf(why, cap, "the model has loss terms outside its tasks that it does not know how to share "
                 "among a batch's runs (losses/weighting.c extra_share)");
    else
        return 1;
    return 0;
}

static tl_status dp_reduce_grads(tl_model *m);

static tl_status dp_prepare(tl_model *m, fit_run *r, const tl_fit_options *opt)
{
    dp_run *p = &r->dp;
    memset(p, 0, sizeof *p);
    tl_dist *d = opt->dist;
    int G = opt->grains > 0 ? opt->grains : d ? d->size : 1;
    if (!d || (d->size == 1 && G == 1)) return TL_OK; /* the ordinary fit */
    char why[256];
    if (!dp_supported(m, opt, why, sizeof why))
        return tl_fail(TL_ERR_ARG, "fit: data-parallel training over %d ranks: %s", d->size, why);
    if (G > r->B) return tl_fail(TL_ERR_ARG, "fit: grains=%d above the batch of %d rows", G, r->B);
    p->d = d;
    p->self_reduce = dp_self_reducing(m);
    if (p->self_reduce) G = d->size;
    p->G = G;
    tl_dist_grains(G, d->size, d->rank, &p->g0, &p->g1);
    p->check_every = opt->check_every;
    for (int i = 0; i < tl_graph_param_count(m->g); i++) {
        const tl_param_info *pi = tl_graph_param(m->g, i);
        if (!pi->sparse) p->dense_n += (size_t)pi->rows * (size_t)pi->cols;
    }
    if (tl_weighting_rows_free(&m->cfg) && !p->self_reduce &&
        !(p->zero = tl_malloc((p->dense_n ? p->dense_n : 1) * sizeof(float), "rows-free gradient")))
        return TL_ERR_NOMEM;
    size_t own = (size_t)(p->g1 - p->g0), dn = p->dense_n ? p->dense_n : 1;
    size_t slice = (dn + (size_t)d->size - 1) / (size_t)d->size;
    p->mine = tl_malloc((own ? own : 1) * dn * sizeof(float), "data-parallel gradients");
    p->sendb = tl_malloc((own ? own : 1) * dn * sizeof(float), "data-parallel gradients");
    p->recvb = tl_malloc((size_t)G * slice * sizeof(float), "data-parallel gradients");
    p->acc = tl_malloc(slice * sizeof(float), "data-parallel gradients");
    p->full = tl_malloc(dn * sizeof(float), "data-parallel gradients");
    p->scount = tl_malloc(3 * (size_t)d->size * sizeof *p->scount, "data-parallel counts");
    if (!p->mine || !p->sendb || !p->recvb || !p->acc || !p->full || !p->scount) return TL_ERR_NOMEM;
    p->rcount = p->scount + d->size;
    p->ccount = p->rcount + d->size;
    /* Every rank must walk the same batches of the same rows with the same
     * model: a hash of the layout, the options that order the batches, and
     * the training rows, compared before anything else is sent. */
    const tl_split *t = r->train;
    uint64_t shape[8] = {r->pf, t->n, (uint64_t)r->B, (uint64_t)G, (uint64_t)opt->shuffle, r->shuffle_seed,
                         (uint64_t)m->epoch, (uint64_t)m->batches_in_epoch};
    uint64_t h = tl_dist_hash(shape, sizeof shape, 0);
    size_t K = (size_t)m->cfg.n_tasks;
    if (t->cat) h = tl_dist_hash(t->cat, t->n * (size_t)m->cfg.n_cat * sizeof *t->cat, h);
    if (t->num) h = tl_dist_hash(t->num, t->n * (size_t)m->cfg.n_num * sizeof *t->num, h);
    h = tl_dist_hash(t->labels, t->n * K * sizeof *t->labels, h);
    if (t->weight) h = tl_dist_hash(t->weight, t->n * sizeof *t->weight, h);
    tl_status st = tl_dist_check_equal(d, h, "fit: the model's size, its position in training, the fit options "
                                       "or the training rows", m->step);
    if (st != TL_OK) return st;
    /* identical parameters and dropout stream on every rank: rank 0's */
    st = tl_dist_broadcast(d, r->params, r->pf * sizeof(float), 0);
    if (st == TL_OK) st = tl_dist_broadcast(d, tl_graph_rng(m->g), sizeof(tl_rng), 0);
    if (st == TL_OK) st = tl_dist_broadcast(d, &m->rng, sizeof m->rng, 0); /* RLW, PCGrad, GradDrop draw from it */
    if (st != TL_OK) return tl_fail_context(st, "fit: broadcasting the parameters from rank 0");
    m->view.dist = d;
    m->view.reduce_grads = dp_reduce_grads;
    return TL_OK;
}

static void dp_free(fit_run *r)
{
    dp_run *p = &r->dp;
    float **f[] = {&p->zero, &p->mine, &p->sendb, &p->recvb, &p->acc, &p->full};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) tl_free(*f[i]), *f[i] = NULL;
    tl_free(p->send);
    tl_free(p->scount);
    p->send = NULL;
    p->scount = p->rcount = p->ccount = NULL;
}

/* The dropout generator of grain j (j = G: the rows-free run; G + 1: the
 * state the step leaves), from the state at the step's start. */
static tl_rng dp_grain_rng(const tl_rng *base, int j)
{
    tl_rng x;
    uint64_t h = base->s[0] ^ (base->s[1] << 1 | base->s[1] >> 63) ^ (base->s[2] << 2 | base->s[2] >> 62) ^
                 (base->s[3] << 3 | base->s[3] >> 61);
    tl_rng_seed(&x, h + 0x9e3779b97f4a7c15ULL * (uint64_t)(j + 1));
    return x;
}

static int dp_put(dp_run *p, size_t *pos, const void *src, size_t n)
{
    if (*pos + n > p->send_cap) {
        size_t cap = p->send_cap ? p->send_cap : 4096;
        while (cap < *pos + n) cap *= 2;
        unsigned char *q = tl_realloc(p->send, cap, "data-parallel message");
        if (!q) return -1;
        p->send = q;
        p->send_cap = cap;
    }
    memcpy(p->send + *pos, src, n);
    *pos += n;
    return 0;
}

/* This grain's gradient (in the graph's gradients) into the message; the
 * dense part into `dense` instead when it is not NULL (dense_n floats). */
static int dp_pack_grain(tl_model *m, dp_run *p, size_t *pos, int32_t j, int32_t rows, const float *loss,
                         float *dense)
{
    tl_graph *g = m->g;
    float *grads = tl_graph_grads(g, NULL);
    int np = tl_graph_param_count(g);
    if (dp_put(p, pos, &j, sizeof j) || dp_put(p, pos, &rows, sizeof rows) ||
        dp_put(p, pos, loss, (size_t)m->cfg.n_tasks * sizeof *loss))
        return -1;
    for (int i = 0; i < np; i++) {
        const tl_param_info *pi = tl_graph_param(g, i);
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        if (pi->sparse) continue;
        if (dense) {
            memcpy(dense, grads + pi->offset, len * sizeof(float));
            dense += len;
        } else if (dp_put(p, pos, grads + pi->offset, len * sizeof(float))) {
            return -1;
        }
    }
    for (int i = 0; i < np; i++) {
        const tl_param_info *pi = tl_graph_param(g, i);
        if (!pi->sparse) continue;
        int32_t nr;
        const int32_t *tr = tl_graph_touched_rows(g, i, &nr);
        if (dp_put(p, pos, &nr, sizeof nr) || dp_put(p, pos, tr, (size_t)nr * sizeof *tr)) return -1;
        for (int32_t x = 0; x < nr; x++)
            if (dp_put(p, pos, grads + pi->offset + (size_t)tr[x] * (size_t)pi->cols, (size_t)pi->cols * sizeof(float)))
                return -1;
    }
    return 0;
}

typedef struct {
    const unsigned char *p, *end;
} dp_reader;

static const void *dp_take(dp_reader *rd, size_t n)
{
    if ((size_t)(rd->end - rd->p) < n) return NULL;
    const void *q = rd->p;
    rd->p += n;
    return q;
}

/* Add one grain of the message into the graph's gradients (first: copy);
 * without its dense part when `dense` is 0. */
static tl_status dp_add_grain(tl_model *m, dp_reader *rd, int first, float *task_loss, int dense)
{
    tl_graph *g = m->g;
    float *grads = tl_graph_grads(g, NULL);
    int np = tl_graph_param_count(g), K = m->cfg.n_tasks;
    const void *h = dp_take(rd, 2 * sizeof(int32_t));
    const unsigned char *lp = dp_take(rd, (size_t)K * sizeof(float));
    if (!h || !lp) return tl_fail(TL_ERR_FORMAT, "fit: a data-parallel message is truncated");
    for (int k = 0; k < K; k++) {
        float v;
        memcpy(&v, lp + (size_t)k * sizeof v, sizeof v);
        task_loss[k] = first ? v : task_loss[k] + v;
    }
    for (int i = 0; i < np && dense; i++) {
        const tl_param_info *pi = tl_graph_param(g, i);
        if (pi->sparse) continue;
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        const unsigned char *src = dp_take(rd, len * sizeof(float));
        if (!src) return tl_fail(TL_ERR_FORMAT, "fit: a data-parallel message is truncated");
        float *dst = grads + pi->offset;
        if (first) {
            memcpy(dst, src, len * sizeof(float));
        } else {
            for (size_t x = 0; x < len; x++) {
                float v;
                memcpy(&v, src + x * sizeof v, sizeof v);
                dst[x] += v;
            }
        }
    }
    for (int i = 0; i < np; i++) {
        const tl_param_info *pi = tl_graph_param(g, i);
        if (!pi->sparse) continue;
        const void *cp = dp_take(rd, sizeof(int32_t));
        int32_t nr;
        if (!cp) return tl_fail(TL_ERR_FORMAT, "fit: a data-parallel message is truncated");
        memcpy(&nr, cp, sizeof nr);
        const unsigned char *ids = dp_take(rd, (size_t)nr * sizeof(int32_t));
        const unsigned char *vals = dp_take(rd, (size_t)nr * (size_t)pi->cols * sizeof(float));
        if (nr < 0 || !ids || !vals) return tl_fail(TL_ERR_FORMAT, "fit: a data-parallel message is truncated");
        for (int32_t x = 0; x < nr; x++) {
            int32_t row;
            memcpy(&row, ids + (size_t)x * sizeof row, sizeof row);
            tl_status st = tl_graph_touch_rows(g, i, &row, 1);
            if (st != TL_OK) return st;
            float *dst = grads + pi->offset + (size_t)row * (size_t)pi->cols;
            for (int c = 0; c < pi->cols; c++) {
                float v;
                memcpy(&v, vals + ((size_t)x * (size_t)pi->cols + (size_t)c) * sizeof v, sizeof v);
                dst[c] += v; /* onto zeros (zero_grad) for the first grain touching the row */
            }
        }
    }
    return TL_OK;
}

/* hooks.h: reduce_grads. This rank's gradient as one record, every rank's
 * added up in rank order. */
static tl_status dp_reduce_grads(tl_model *m)
{
    tl_dist *d = m->view.dist;
    dp_run one;
    memset(&one, 0, sizeof one);
    size_t pos = 0;
    float zero[TL_MAX_TASKS] = {0}, sink[TL_MAX_TASKS];
    if (dp_pack_grain(m, &one, &pos, (int32_t)d->rank, 0, zero, NULL)) {
        tl_free(one.send);
        return TL_ERR_NOMEM;
    }
    unsigned char *all = NULL;
    size_t *counts = NULL;
    tl_status s = tl_dist_allgatherv(d, one.send, pos, (void **)&all, &counts);
    tl_free(one.send);
    if (s != TL_OK) return tl_fail_context(s, "reduce_grads: rank %d", d->rank);
    tl_graph_zero_grad(m->g);
    size_t off = 0;
    for (int q = 0; q < d->size && s == TL_OK; q++) {
        dp_reader rd = {all + off, all + off + counts[q]};
        s = dp_add_grain(m, &rd, q == 0, sink, 1);
        off += counts[q];
    }
    tl_free(all);
    tl_free(counts);
    return s;
}

static void dp_set_denominators(tl_model *m, const float *den)
{
    for (int k = 0; k < m->cfg.n_tasks; k++) tl_loss_set_denominator(m->g, m->loss[k], den ? den[k] : 0.0f);
}

/* Forward and the strategies' backward on rows [from, from+n) of the
 * batch order, the step's denominators set. */
static tl_status dp_run_rows(tl_model *m, fit_run *r, size_t from, int n, tl_rng rng, float *loss)
{
    tl_graph_zero_grad(m->g);
    tl_model_fill_batch(m, r->train, r->order, from, n);
    m->view.dp_run_rows = n;
    *tl_graph_rng(m->g) = rng;
    tl_status s = tl_graph_forward(m->g, 1);
    if (s != TL_OK) return s;
    for (int k = 0; k < m->cfg.n_tasks; k++) loss[k] = tl_graph_value(m->g, m->loss[k])[0];
    tl_fit_point f = {NULL, NULL, loss, NULL};
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->backward && (s = m->hooks[i]->backward(m->hook_state[i], &m->view, &f)) != TL_OK)
            return s;
    return TL_OK;
}

/* Uncertainty weighting adds 0.5 s_k to each task's term: a part of the
 * gradient that does not come from rows, which every grain's run adds once.
 * It is that of a run whose rows all weigh 0; the sum over grains keeps it
 * once. */
static tl_status dp_rows_free(tl_model *m, fit_run *r, size_t from, const tl_rng *base)
{
    dp_run *p = &r->dp;
    tl_graph *g = m->g;
    float loss[TL_MAX_TASKS];
    tl_graph_zero_grad(g);
    tl_model_fill_batch(m, r->train, r->order, from, 1);
    for (int k = 0; k < m->cfg.n_tasks; k++) tl_graph_input(g, m->rowweight[k])[0] = 0.0f;
    m->view.dp_run_rows = 0;
    *tl_graph_rng(g) = dp_grain_rng(base, p->G);
    tl_status s = tl_graph_forward(g, 1);
    tl_fit_point f = {NULL, NULL, loss, NULL};
    for (int k = 0; k < m->cfg.n_tasks; k++) loss[k] = 0.0f;
    for (int i = 0; i < m->n_hooks && s == TL_OK; i++)
        if (m->hooks[i]->backward) s = m->hooks[i]->backward(m->hook_state[i], &m->view, &f);
    if (s != TL_OK) return s;
    const float *grads = tl_graph_grads(g, NULL);
    size_t at = 0;
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *pi = tl_graph_param(g, i);
        if (pi->sparse) continue;
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        memcpy(p->zero + at, grads + pi->offset, len * sizeof(float));
        at += len;
    }
    return TL_OK;
}

/* The dense gradient of the batch into p->full on every rank, reduce-scatter
 * style: rank q sums slice q of the dense floats over every grain, in grain
 * order (the grains arrive in rank order, which is grain order), then every
 * rank gathers the summed slices. Each rank sends and receives about twice
 * the dense gradient per step, whatever the rank count, and every element
 * is the same left-to-right sum over the grains at every rank count. */
static tl_status dp_dense_sum(dp_run *p, int n)
{
    int size = p->d->size, me = p->d->rank, total = 0, cnt[TL_PARALLEL_MAX_THREADS];
    int *c = size <= TL_PARALLEL_MAX_THREADS ? cnt : tl_malloc((size_t)size * sizeof *c, "grain counts");
    if (!c) return TL_ERR_NOMEM;
    for (int q = 0; q < size; q++) { /* non-empty grains of each rank */
        int a, b;
        tl_dist_grains(p->G, size, q, &a, &b);
        c[q] = 0;
        for (int j = a; j < b; j++) {
            size_t x, y;
            tl_parallel_chunk((size_t)n, p->G, j, &x, &y);
            c[q] += y > x;
        }
        total += c[q];
    }
    size_t m0, m1, at = 0;
    tl_parallel_chunk(p->dense_n, size, me, &m0, &m1);
    for (int q = 0; q < size; q++) {
        size_t s0, s1;
        tl_parallel_chunk(p->dense_n, size, q, &s0, &s1);
        for (int t = 0; t < c[me]; t++) {
            memcpy(p->sendb + at, p->mine + (size_t)t * p->dense_n + s0, (s1 - s0) * sizeof(float));
            at += s1 - s0;
        }
        p->scount[q] = (size_t)c[me] * (s1 - s0) * sizeof(float);
        p->rcount[q] = (size_t)c[q] * (m1 - m0) * sizeof(float);
        p->ccount[q] = (s1 - s0) * sizeof(float);
    }
    if (c != cnt) tl_free(c);
    tl_status s = tl_dist_alltoallv(p->d, p->sendb, p->scount, p->recvb, p->rcount);
    if (s != TL_OK) return tl_fail_context(s, "fit: rank %d: exchanging gradient slices", me);
    size_t len = m1 - m0;
    memcpy(p->acc, p->recvb, len * sizeof(float));
    for (int t = 1; t < total; t++) {
        const float *src = p->recvb + (size_t)t * len;
        for (size_t x = 0; x < len; x++) p->acc[x] += src[x];
    }
    s = tl_dist_allgatherv_known(p->d, p->acc, p->full, p->ccount);
    return s == TL_OK ? TL_OK : tl_fail_context(s, "fit: rank %d: gathering the summed gradient", me);
}

/* A step of a weighting that reduces per task (dp_self_reducing): the
 * forward of this rank's grain (a rows-free row when the batch is smaller
 * than the ranks), the batch's task losses gathered, then the strategy's
 * backward hook, which leaves the reduced gradient (hooks.h: reduce_grads). */
static tl_status dp_step_self(tl_model *m, fit_run *r, size_t from, int n, const float *den,
                              const tl_rng *base, float *task_loss)
{
    dp_run *p = &r->dp;
    tl_graph *g = m->g;
    int K = m->cfg.n_tasks;
    struct {
        dp_header h;
        float loss[TL_MAX_TASKS];
    } mine, *all = NULL;
    memset(&mine, 0, sizeof mine);
    mine.h.stop = tl_cancelled() || p->stop_req;
    size_t b, e;
    tl_parallel_chunk((size_t)n, p->G, p->d->rank, &b, &e);
    tl_graph_zero_grad(g);
    tl_model_fill_batch(m, r->train, r->order, from + (e > b ? b : 0), e > b ? (int)(e - b) : 1);
    if (e == b)
        for (int k = 0; k < K; k++) tl_graph_input(g, m->rowweight[k])[0] = 0.0f;
    m->view.dp_run_rows = (int)(e - b);
    dp_set_denominators(m, den);
    *tl_graph_rng(g) = dp_grain_rng(base, p->d->rank);
    tl_status s = mine.h.stop ? TL_OK : tl_graph_forward(g, 1);
    for (int k = 0; k < K && s == TL_OK; k++) mine.loss[k] = tl_graph_value(g, m->loss[k])[0];
    if (s != TL_OK) {
        mine.h.status = (int32_t)s;
        snprintf(mine.h.msg, sizeof mine.h.msg, "%s", tl_errmsg());
    }
    tl_status cs = tl_dist_allgather(p->d, &mine, sizeof mine, (void **)&all);
    if (cs != TL_OK) return tl_fail_context(cs, "fit: step %lld: rank %d: exchanging losses", (long long)m->step + 1,
                                            p->d->rank);
    int fail_rank = -1, stop_rank = -1;
    for (int q = 0; q < p->d->size; q++) {
        if (all[q].h.status != TL_OK && fail_rank < 0) fail_rank = q;
        if (all[q].h.stop && stop_rank < 0) stop_rank = q;
        for (int k = 0; k < K; k++) task_loss[k] = q == 0 ? all[q].loss[k] : task_loss[k] + all[q].loss[k];
    }
    if (fail_rank >= 0 || stop_rank >= 0) {
        dp_header h = all[fail_rank >= 0 ? fail_rank : 0].h;
        tl_free(all);
        tl_graph_zero_grad(g);
        if (fail_rank >= 0)
            return tl_fail((tl_status)h.status, "fit: step %lld (epoch %d): rank %d failed: %s", (long long)m->step + 1,
                           m->epoch + 1, fail_rank, h.msg);
        return tl_fail(TL_ERR_CANCELLED,
                       "training interrupted at epoch %d, step %lld (asked by rank %d); every rank keeps "
                       "the same parameters and can continue",
                       m->epoch + 1, (long long)m->step, stop_rank);
    }
    tl_free(all);
    if ((s = check_task_losses(m, task_loss)) != TL_OK) return s;
    uint64_t calls = p->d->comm_calls;
    tl_fit_point f = {NULL, NULL, task_loss, NULL};
    for (int i = 0; i < m->n_hooks && s == TL_OK; i++)
        if (m->hooks[i]->backward) s = m->hooks[i]->backward(m->hook_state[i], &m->view, &f);
    if (s == TL_OK && p->d->comm_calls == calls)
        s = tl_fail(TL_ERR_STATE,
                    "fit: data-parallel training over %d ranks: weighting '%s' runs its own per-task backward "
                    "passes and did not reduce them over the ranks (hooks.h: reduce_grads); refused",
                    p->d->size, tl_weighting_name(m->cfg.weighting));
    return s;
}

/* After an exchange every rank accepted: the batch's gradient into the
 * graph's gradients (embedding rows and losses from the gathered messages,
 * the dense part summed by slices) and task_loss, in grain order. */
static tl_status dp_apply(tl_model *m, fit_run *r, size_t from, int n, const tl_rng *base,
                          const unsigned char *all, const size_t *counts, float *task_loss)
{
    dp_run *p = &r->dp;
    tl_graph *g = m->g;
    tl_status s = TL_OK;
    int nonempty = 0;
    for (int j = 0; j < p->G; j++) {
        size_t b, e;
        tl_parallel_chunk((size_t)n, p->G, j, &b, &e);
        nonempty += e > b;
    }
    if (p->zero && nonempty > 1) s = dp_rows_free(m, r, from, base);
    if (s == TL_OK) s = dp_dense_sum(p, n);
    tl_graph_zero_grad(g);
    size_t off = 0;
    int first = 1;
    for (int q = 0; q < p->d->size && s == TL_OK; q++) {
        dp_reader rd = {all + off + sizeof(dp_header), all + off + counts[q]};
        while (rd.p < rd.end && s == TL_OK) {
            s = dp_add_grain(m, &rd, first, task_loss, 0);
            first = 0;
        }
        off += counts[q];
    }
    if (s != TL_OK) return s;
    /* the dense sum into the gradients, less the rows-free part counted
     * once per grain but one */
    float *grads = tl_graph_grads(g, NULL), times = (float)(nonempty - 1);
    size_t at = 0;
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *pi = tl_graph_param(g, i);
        if (pi->sparse) continue;
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        float *dst = grads + pi->offset;
        memcpy(dst, p->full + at, len * sizeof(float));
        if (p->zero && nonempty > 1)
            for (size_t x = 0; x < len; x++)
                if (p->zero[at + x] != 0.0f) dst[x] -= times * p->zero[at + x];
        at += len;
    }
    return TL_OK;
}

/* One data-parallel step on rows order[from .. from+n): the gradient of
 * the whole batch in the graph's gradients on every rank, then the
 * optimizer step. *stop is set when a rank asked to stop (Ctrl-C, a
 * progress callback): then nothing is stepped and TL_ERR_CANCELLED returned
 * on every rank. */
static tl_status dp_step(tl_model *m, fit_run *r, size_t from, int n, float *task_loss)
{
    dp_run *p = &r->dp;
    tl_graph *g = m->g;
    int K = m->cfg.n_tasks;
    hooks_step_begin(m);
    /* the whole batch: the loss denominators (summed as the loss op sums
     * them), and the strategies' look at the step */
    tl_model_fill_batch(m, r->train, r->order, from, n);
    m->view.dp_batch_rows = m->view.dp_run_rows = n;
    float den[TL_MAX_TASKS];
    for (int k = 0; k < K; k++) {
        const float *w = tl_graph_input(g, m->rowweight[k]);
        double ws = 0.0;
        for (int i = 0; i < n; i++)
            if (w[i] != 0.0f) ws += (double)w[i];
        den[k] = (float)ws;
    }
    tl_status s = TL_OK;
    for (int i = 0; i < m->n_hooks && s == TL_OK; i++)
        if (m->hooks[i]->step_ready) s = m->hooks[i]->step_ready(m->hook_state[i], &m->view);
    tl_rng base = *tl_graph_rng(g);
    if (p->self_reduce) {
        if (s == TL_OK) s = dp_step_self(m, r, from, n, den, &base, task_loss);
        dp_set_denominators(m, NULL);
        *tl_graph_rng(g) = dp_grain_rng(&base, p->G + 1);
        if (s != TL_OK) return s;
        if ((s = tl_optim_step(m->opt)) == TL_ERR_NUMERIC)
            return tl_fail_context(s, "fit: step %lld (epoch %d)", (long long)m->step + 1, m->epoch + 1);
        return s;
    }
    dp_header hd;
    memset(&hd, 0, sizeof hd);
    hd.stop = tl_cancelled() || p->stop_req;
    size_t pos = 0;
    int oom = dp_put(p, &pos, &hd, sizeof hd);
    dp_set_denominators(m, den);
    int slot = 0;
    for (int j = p->g0; j < p->g1 && s == TL_OK && !oom && !hd.stop; j++) {
        size_t b, e;
        tl_parallel_chunk((size_t)n, p->G, j, &b, &e);
        if (e == b) continue;
        float loss[TL_MAX_TASKS];
        s = dp_run_rows(m, r, from + b, (int)(e - b), dp_grain_rng(&base, j), loss);
        if (s == TL_OK)
            oom = dp_pack_grain(m, p, &pos, j, (int32_t)(e - b), loss, p->mine + (size_t)slot++ * p->dense_n);
    }
    if (oom) s = TL_ERR_NOMEM;
    if (s != TL_OK) {
        hd.status = (int32_t)s;
        snprintf(hd.msg, sizeof hd.msg, "%s", tl_errmsg());
        pos = 0;
        dp_put(p, &pos, &hd, sizeof hd); /* fits: the buffer held the header before */
    } else {
        memcpy(p->send, &hd, sizeof hd);
    }
    unsigned char *all = NULL;
    size_t *counts = NULL;
    tl_status cs = tl_dist_allgatherv(p->d, p->send, pos, (void **)&all, &counts);
    if (cs != TL_OK) {
        dp_set_denominators(m, NULL);
        return tl_fail_context(cs, "fit: step %lld: rank %d: exchanging gradients", (long long)m->step + 1,
                               p->d->rank);
    }
    /* every rank decides the same from the same headers */
    int stop_rank = -1, fail_rank = -1;
    size_t off = 0;
    for (int q = 0; q < p->d->size; q++) {
        dp_header h;
        memcpy(&h, all + off, sizeof h);
        if (h.status != TL_OK && fail_rank < 0) {
            fail_rank = q;
            s = (tl_status)h.status;
            hd = h;
        }
        if (h.stop && stop_rank < 0) stop_rank = q;
        off += counts[q];
    }
    if (fail_rank >= 0 || stop_rank >= 0) {
        tl_free(all);
        tl_free(counts);
        dp_set_denominators(m, NULL);
        tl_graph_zero_grad(g);
        *tl_graph_rng(g) = base;
        if (fail_rank >= 0)
            return tl_fail(s, "fit: step %lld (epoch %d): rank %d failed: %s", (long long)m->step + 1,
                           m->epoch + 1, fail_rank, hd.msg);
        return tl_fail(TL_ERR_CANCELLED,
                       "training interrupted at epoch %d, step %lld (asked by rank %d); every rank keeps "
                       "the same parameters and can continue",
                       m->epoch + 1, (long long)m->step, stop_rank);
    }
    s = dp_apply(m, r, from, n, &base, all, counts, task_loss);
    tl_free(all);
    tl_free(counts);
    dp_set_denominators(m, NULL);
    *tl_graph_rng(g) = dp_grain_rng(&base, p->G + 1);
    if (s != TL_OK) return s;
    if ((s = check_task_losses(m, task_loss)) != TL_OK) return s;
    if ((s = tl_optim_step(m->opt)) == TL_ERR_NUMERIC)
        return tl_fail_context(s, "fit: step %lld (epoch %d)", (long long)m->step + 1, m->epoch + 1);
    return s;
}


/* Every rank's flag, or'ed: a stop asked for on one rank (progress
 * callback at an epoch's end) stops them all. */
static int dp_any(dp_run *p, int flag, tl_status *st)
{
    int32_t mine = flag, *all = NULL;
    if ((*st = tl_dist_allgather(p->d, &mine, sizeof mine, (void **)&all)) != TL_OK) return 1;
    int any = 0;
    for (int q = 0; q < p->d->size; q++) any |= all[q] != 0;
    tl_free(all);
    return any;
}

/* fit{check_every=N}: the parameters and dropout stream hashed, compared. */
static tl_status dp_check(tl_model *m, fit_run *r)
{
    uint64_t h = tl_dist_hash(r->params, r->pf * sizeof(float), 0);
    h = tl_dist_hash(tl_graph_rng(m->g), sizeof(tl_rng), h);
    return tl_dist_check_equal(r->dp.d, h, "fit: parameters", m->step);
}


/* Check the arguments, grow the graph to the batch, and allocate what the
 * fit needs (optimizer, history, shuffle order, best parameters). */
static tl_status fit_prepare(tl_model *m, fit_run *r, const tl_split *train, const tl_split *valid,
                             const tl_fit_options *opt)
{
    tl_status st = tl_model_check_split(m, train, "fit");
    if (st != TL_OK) return st;
    if (valid && (st = tl_model_check_split(m, valid, "fit: valid")) != TL_OK) return st;
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
    r->saved_dist = m->view.dist;
    if ((st = dp_prepare(m, r, opt)) != TL_OK) {
        dp_free(r);
        m->view.dist = r->saved_dist;
        m->view.reduce_grads = NULL;
        tl_free(r->order);
    }
    return st;
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
        if (opt->progress(opt->progress_ud, &p)) {
            if (r->dp.d) { /* every rank stops at the next step's exchange */
                r->dp.stop_req = 1;
                return TL_OK;
            }
            return tl_fail(TL_ERR_CANCELLED, "training stopped by the progress callback at step %lld",
                           (long long)m->step);
        }
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
        /* under data parallelism the ranks agree on a stop in the step's exchange */
        if (!r->dp.d && tl_cancelled())
            return tl_fail(TL_ERR_CANCELLED,
                           "training interrupted at epoch %d, step %lld; the model keeps its "
                           "current parameters and can continue",
                           m->epoch + 1, (long long)m->step);
        size_t from = b * (size_t)r->B;
        int n = (int)(train->n - from < (size_t)r->B ? train->n - from : (size_t)r->B);
        float tl_loss[TL_MAX_TASKS];
        if (r->dp.d) {
            if ((st = dp_step(m, r, from, n, tl_loss)) != TL_OK) return st;
        } else {
            tl_model_fill_batch(m, train, r->order, from, n);
            if ((st = train_step(m, tl_loss)) != TL_OK) return st;
        }
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
        if (r->dp.d && r->dp.check_every > 0 && m->step % r->dp.check_every == 0 &&
            (st = dp_check(m, r)) != TL_OK)
            return st;
        if (valid && opt->eval_every > 0 && m->step % opt->eval_every == 0 && b + 1 < r->per_epoch &&
            (st = mid_epoch_eval(m, r, b)) != TL_OK)
            return st;
        if (opt->progress && opt->progress_every > 0 && m->step % opt->progress_every == 0) {
            double mean[TL_MAX_TASKS];
            for (int k = 0; k < K; k++) mean[k] = r->epoch_loss[k] / (double)r->done;
            tl_progress p = {TL_PROGRESS_STEP, m->epoch + 1, r->last_epoch, m->step, (int)b + 1,
                             (int)r->per_epoch, mean, NULL, NAN, 0};
            if (opt->progress(opt->progress_ud, &p)) {
                if (r->dp.d) { /* every rank stops at the next step's exchange */
                    r->dp.stop_req = 1;
                    continue;
                }
                return tl_fail(TL_ERR_CANCELLED, "training stopped by the progress callback at step %lld",
                               (long long)m->step);
            }
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
            int asked = opt->progress(opt->progress_ud, &p), stop = asked;
            if (r.dp.d) stop = dp_any(&r.dp, asked || r.dp.stop_req || tl_cancelled(), &st) && st == TL_OK;
            if (st != TL_OK) break;
            if (stop) {
                st = asked ? tl_fail(TL_ERR_CANCELLED, "training stopped by the progress callback")
                           : tl_fail(TL_ERR_CANCELLED,
                                     "training interrupted at epoch %d, step %lld (a rank was asked "
                                     "to stop); every rank keeps the same parameters and can continue",
                                     m->epoch, (long long)m->step);
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
    dp_free(&r);
    m->view.dist = r.saved_dist;
    m->view.reduce_grads = NULL;
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

/* For the streaming fit (models/model_stream.c): the same step, optimizer,
 * epoch-end hooks as the fit above. */
tl_status tl_model_fit_step(tl_model *m, float *task_loss) { return train_step(m, task_loss); }
tl_status tl_model_fit_optim(tl_model *m, const tl_optim_config *oc) { return ensure_optim(m, oc); }
tl_status tl_model_fit_epoch_end(tl_model *m, const tl_split *valid, const double *epoch_loss)
{
    return hooks_epoch_end(m, NULL, valid, epoch_loss);
}
