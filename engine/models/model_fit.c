/* models/model_fit.c — part of module model (model.h): the fit loop
 * (epochs, batches, steps through the attached strategies' hooks, mid-epoch
 * and epoch-end validation, early stopping) over either batch source, a
 * shuffled in-memory split or a stream of shards (model_stream.c reads its
 * batches), its data-parallel step (dist.h),
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
    int *gcount; /* each rank's grains with rows */
    /* the batch under way: grain j's rows, and in memory its first row */
    int *gn;
    size_t *goff;
    /* over a stream: this rank's grains' streams (the others NULL) and
     * their rows of the batch under way; every grain's rows per epoch and
     * per batch; a row of zeros for the runs without rows */
    tl_stream **gs;
    tl_split *gv;
    uint64_t *grows;
    int *gcap;
    tl_split none;
    void *none_buf;
    /* CrossDistil's quadruplet losses (losses/distill.h), which pair rows
     * of the whole batch: per loss the batch's scores, labels a and b,
     * weights and loss gradient (5 x B floats), and what its runs read */
    int n_quad;
    float *qbuf;
    size_t *qcount;
    /* the step's own exchanges (teacher scores, a stream's weights and, at
     * diagnostics steps, its rows): this rank's message, the gathered
     * messages and the batch's rows, at their largest (dp_prepare) */
    unsigned char *xmsg, *xall, *xcols;
    tl_quad_rows qrows[2 * TL_MAX_TASKS];
    /* a resume's read past the rows done (epoch_begin) failed: told at the
     * first exchange, so that every rank stops naming this one */
    tl_status skip_st;
    char skip_msg[256];
} dp_run;

/* The state of one tl_model_fit call, shared by its parts below. */
typedef struct {
    const tl_split *train, *valid;
    tl_stream *stream;     /* train NULL: the batches come from it */
    tl_split sb;           /* the stream's batch under way */
    size_t from;           /* the batch under way: rows order[from, from + n) */
    int n;
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
    int stopped_by_patience; /* early stopping's record is the model's (m->es) */
    tl_task_eval ev[TL_MAX_TASKS];
    dp_run dp; /* dp.d == NULL: this process alone */
    tl_dist *saved_dist; /* the model's own (tl_model_set_dist), back at the end */
} fit_run;

/* ---- data parallelism (dist.h) ------------------------------------------------
 *
 * In memory every rank holds the whole training split and walks the same
 * global batches in the same order. A batch of n rows is cut into G fixed
 * grains (tl_parallel_chunk(n, G, j)). Over a stream of shards, grain j is a
 * stream of its own over the shard files j, j + G, ... (seed + j, its own
 * shuffle buffer) giving tl_parallel_chunk(B, G, j) rows a batch until it
 * runs out; the global batch is the grains' rows in grain order, and a rank
 * opens only its grains' streams. Rank r runs forward and backward on the rows
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
    else if (c->distill.enabled && c->backbone.kind == TL_BACKBONE_AITM)
        snprintf(why, cap, "CrossDistil's terms and AITM's constraint share the loss outside the tasks, which a "
                 "batch's runs would have to share differently (losses/weighting.c extra_share)");
    else if (m->extra != TL_NONE && !c->distill.enabled && c->backbone.kind != TL_BACKBONE_AITM &&
             c->backbone.kind != TL_BACKBONE_DSELECT_K)
        snprintf(why, cap, "the model has loss terms outside its tasks that it does not know how to share "
                 "among a batch's runs (losses/weighting.c extra_share)");
    else
        return 1;
    return 0;
}

static tl_status dp_reduce_grads(tl_model *m);

/* Over a stream: every grain's rows, this rank's grains' streams, the
 * row of zeros. Refuses fewer shard files than grains. */
static tl_status dp_prepare_stream(tl_model *m, fit_run *r)
{
    dp_run *p = &r->dp;
    tl_shards *sh = tl_stream_shards(r->stream);
    int split = tl_stream_split(r->stream), files = tl_shards_count(sh, split), G = p->G;
    if (files < G)
        return tl_fail(TL_ERR_ARG,
                       "fit: data-parallel training on a stream: each of the %d grains reads shard files of its "
                       "own, and %s has %d train shard files (convert with a smaller rows_per_shard, or set "
                       "grains to at most %d)",
                       G, tl_shards_dir(sh), files, files);
    p->gs = tl_calloc((size_t)G, sizeof *p->gs, "grain streams");
    p->gv = tl_calloc((size_t)G, sizeof *p->gv, "grain batches");
    p->grows = tl_calloc((size_t)G, sizeof *p->grows, "grain rows");
    p->gcap = tl_calloc((size_t)G, sizeof *p->gcap, "grain rows");
    const tl_model_config *c = &m->cfg;
    int slots = 0;
    for (int b = 0; b < c->n_bag; b++) slots += c->bag_len[b];
    size_t words = (size_t)c->n_cat + (size_t)c->n_num + (size_t)c->n_tasks + 1 + (size_t)slots;
    p->none_buf = tl_calloc(words, 4, "row of zeros");
    if (!p->gs || !p->gv || !p->grows || !p->gcap || !p->none_buf) return TL_ERR_NOMEM;
    p->none.name = "train";
    p->none.n = 1;
    p->none.cat = p->none_buf;
    p->none.num = (float *)((int32_t *)p->none_buf + c->n_cat);
    p->none.labels = p->none.num + c->n_num;
    if (slots) { /* empty bags (-1 slots) after the label and weight words */
        p->none.bag = (int32_t *)p->none.labels + c->n_tasks + 1;
        p->none.bag_slots = slots;
        for (int i = 0; i < slots; i++) p->none.bag[i] = -1;
    }
    uint64_t seed = tl_stream_seed(r->stream);
    for (int j = 0; j < G; j++) {
        size_t x, y;
        tl_parallel_chunk((size_t)r->B, G, j, &x, &y);
        p->gcap[j] = (int)(y - x);
        p->grows[j] = tl_shards_grain_rows(sh, split, j, G);
    }
    for (int j = p->g0; j < p->g1; j++) {
        tl_status st = tl_stream_open_like(r->stream, j, G, seed + (uint64_t)j, &p->gs[j]);
        if (st == TL_OK) st = tl_stream_reserve(p->gs[j], p->gcap[j]);
        if (st != TL_OK) return tl_fail_context(st, "fit: grain %d's stream", j);
    }
    size_t per = 0;
    for (int j = 0; j < G; j++) {
        size_t e = (size_t)((p->grows[j] + (uint64_t)p->gcap[j] - 1) / (uint64_t)p->gcap[j]);
        if (e > per) per = e;
    }
    r->per_epoch = per;
    return TL_OK;
}

/* What a data-parallel fit needs on this rank, nothing exchanged yet
 * (dp_start exchanges). */
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
    if (!(p->gcount = tl_malloc((size_t)d->size * sizeof *p->gcount, "grain counts"))) return TL_ERR_NOMEM;
    p->gn = tl_malloc((size_t)G * sizeof *p->gn, "grain rows");
    p->goff = tl_malloc((size_t)G * sizeof *p->goff, "grain rows");
    if (!p->gn || !p->goff) return TL_ERR_NOMEM;
    if (m->distill && m->distill->n_quad > 0) {
        p->n_quad = m->distill->n_quad;
        p->qbuf = tl_malloc((size_t)p->n_quad * 5 * (size_t)r->B * sizeof(float), "quadruplet rows");
        p->qcount = tl_malloc((size_t)d->size * sizeof *p->qcount, "quadruplet rows");
        if (!p->qbuf || !p->qcount) return TL_ERR_NOMEM;
    }
    size_t H = sizeof(dp_header), Bz = (size_t)r->B, mine = 0, all = 0, cols = 0;
    if (p->n_quad) { /* 4 floats of each quadruplet loss per row */
        mine = H + Bz * (size_t)p->n_quad * 4 * sizeof(float);
        all = (size_t)d->size * H + Bz * (size_t)p->n_quad * 4 * sizeof(float);
    }
    if (r->stream) { /* K weight sums per grain; a row's words at diagnostics steps */
        const tl_model_config *c = &m->cfg;
        size_t K = (size_t)c->n_tasks, words = (size_t)c->n_cat + (size_t)c->n_num + K + 1;
        for (int b = 0; b < c->n_bag; b++) words += (size_t)c->bag_len[b];
        size_t dm = H + own * K * sizeof(double), da = (size_t)d->size * H + (size_t)G * K * sizeof(double);
        if (opt->diagnostics > 0) {
            dm = dm > H + Bz * words * 4 ? dm : H + Bz * words * 4;
            da = da > (size_t)d->size * H + Bz * words * 4 ? da : (size_t)d->size * H + Bz * words * 4;
            cols = Bz * words * 4 + 4;
        }
        mine = mine > dm ? mine : dm;
        all = all > da ? all : da;
    }
    if (mine) {
        p->xmsg = tl_malloc(mine, "data-parallel messages");
        p->xall = tl_malloc(all, "data-parallel messages");
        if (!p->xmsg || !p->xall) return TL_ERR_NOMEM;
    }
    if (cols && !(p->xcols = tl_malloc(cols, "batch rows"))) return TL_ERR_NOMEM;
    return r->stream ? dp_prepare_stream(m, r) : TL_OK;
}

/* The fit's first guarded collective (dist.h), after everything that a
 * rank does on its own to prepare, so that a rank that failed there is
 * met by the others in it; then rank 0's parameters to every rank. */
static tl_status dp_start(tl_model *m, fit_run *r, const tl_fit_options *opt)
{
    dp_run *p = &r->dp;
    tl_dist *d = p->d;
    int G = p->G;
    /* Every rank must walk the same batches of the same rows with the same
     * model: a hash of the layout, the options that order the batches, and
     * the training rows (over a stream: its shard files' rows and seed),
     * compared before anything else is sent. */
    const tl_split *t = r->train;
    uint64_t shape[8] = {r->pf, t ? t->n : tl_stream_rows(r->stream), (uint64_t)r->B, (uint64_t)G,
                         (uint64_t)opt->shuffle, t ? r->shuffle_seed : tl_stream_seed(r->stream),
                         (uint64_t)m->epoch, (uint64_t)m->batches_in_epoch};
    uint64_t h = tl_dist_hash(shape, sizeof shape, 0);
    size_t K = (size_t)m->cfg.n_tasks;
    if (!t) {
        h = tl_dist_hash(p->grows, (size_t)G * sizeof *p->grows, h);
    } else {
        if (t->cat) h = tl_dist_hash(t->cat, t->n * (size_t)m->cfg.n_cat * sizeof *t->cat, h);
        if (t->num) h = tl_dist_hash(t->num, t->n * (size_t)m->cfg.n_num * sizeof *t->num, h);
        h = tl_dist_hash(t->labels, t->n * K * sizeof *t->labels, h);
        if (t->weight) h = tl_dist_hash(t->weight, t->n * sizeof *t->weight, h);
        if (m->cfg.n_bag) h = tl_dist_hash(t->bag, t->n * (size_t)t->bag_slots * sizeof *t->bag, h);
    }
    tl_status st = tl_dist_check_equal(d, h, "fit: the model's size, its position in training, the fit "
                                       "options or the training rows", m->step);
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
    tl_free(p->gcount);
    p->gcount = NULL;
    tl_free(p->qbuf);
    tl_free(p->qcount);
    tl_free(p->xmsg);
    tl_free(p->xall);
    tl_free(p->xcols);
    p->qbuf = NULL;
    p->qcount = NULL;
    p->xmsg = p->xall = p->xcols = NULL;
    p->send = NULL;
    p->scount = p->rcount = p->ccount = NULL;
    for (int j = 0; p->gs && j < p->G; j++) tl_stream_close(p->gs[j]);
    tl_free(p->gn);
    tl_free(p->goff);
    tl_free(p->gs);
    tl_free(p->gv);
    tl_free(p->grows);
    tl_free(p->gcap);
    tl_free(p->none_buf);
    p->gn = NULL;
    p->goff = NULL;
    p->gs = NULL;
    p->gv = NULL;
    p->grows = NULL;
    p->gcap = NULL;
    p->none_buf = NULL;
}

/* The rows of batch b: r->from and r->n, and each grain's share. */
static void batch_rows(fit_run *r, size_t b)
{
    dp_run *p = &r->dp;
    uint64_t total = r->train ? r->train->n : tl_stream_rows(r->stream);
    r->from = b * (size_t)r->B;
    if (!p->gs) {
        r->n = (int)(total - r->from < (uint64_t)r->B ? total - r->from : (uint64_t)r->B);
        for (int j = 0; p->d && j < p->G; j++) {
            size_t x, y;
            tl_parallel_chunk((size_t)r->n, p->G, j, &x, &y);
            p->goff[j] = x;
            p->gn[j] = (int)(y - x);
        }
        return;
    }
    r->n = 0;
    for (int j = 0; j < p->G; j++) {
        uint64_t at = (uint64_t)b * (uint64_t)p->gcap[j], left = at < p->grows[j] ? p->grows[j] - at : 0;
        p->gn[j] = left < (uint64_t)p->gcap[j] ? (int)left : p->gcap[j];
        p->goff[j] = (size_t)r->n;
        r->n += p->gn[j];
    }
}

/* Grain j's rows of the batch under way into the graph's inputs; a grain
 * without rows (or j < 0): one row of weight 0 (in memory the batch's
 * first, over a stream a row of zeros). */
static void dp_fill(tl_model *m, fit_run *r, int j)
{
    dp_run *p = &r->dp;
    m->view.dp_run_rows = j >= 0 ? p->gn[j] : 0; /* the rows this run carries (hooks.h) */
    for (int q = 0; q < p->n_quad; q++) { /* its rows of the quadruplet losses' batch */
        p->qrows[q].off = j >= 0 ? (int)p->goff[j] : 0;
        p->qrows[q].rows = j >= 0 ? p->gn[j] : 0;
    }
    if (j >= 0 && p->gn[j] > 0) {
        if (p->gs) tl_model_fill_batch(m, &p->gv[j], NULL, 0, p->gn[j]);
        else tl_model_fill_batch(m, r->train, r->order, r->from + p->goff[j], p->gn[j]);
        return;
    }
    if (p->gs) tl_model_fill_batch(m, &p->none, NULL, 0, 1);
    else tl_model_fill_batch(m, r->train, r->order, r->from, 1);
    for (int k = 0; k < m->cfg.n_tasks; k++) tl_graph_input(m->g, m->rowweight[k])[0] = 0.0f;
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
    const void *got = NULL;
    const size_t *counts = NULL;
    tl_status s = tl_dist_allgatherv(d, one.send, pos, &got, &counts);
    if (s != TL_OK) {
        tl_free(one.send);
        return tl_fail_context(s, "reduce_grads: rank %d", d->rank);
    }
    const unsigned char *all = got; /* one.send itself in a group of one */
    tl_graph_zero_grad(m->g);
    size_t off = 0;
    for (int q = 0; q < d->size && s == TL_OK; q++) {
        dp_reader rd = {all + off, all + off + counts[q]};
        s = dp_add_grain(m, &rd, q == 0, sink, 1);
        off += counts[q];
    }
    tl_free(one.send);
    return s;
}

static void dp_set_denominators(tl_model *m, const float *den)
{
    for (int k = 0; k < m->cfg.n_tasks; k++) tl_loss_set_denominator(m->g, m->loss[k], den ? den[k] : 0.0f);
    const tl_distill_state *ds = m->distill; /* CrossDistil's losses weighted by a task's row weights */
    for (int i = 0; ds && i < ds->n_row_loss; i++)
        tl_loss_set_denominator(m->g, ds->row_loss[i], den ? den[ds->row_loss_task[i]] : 0.0f);
}

/* CrossDistil's quadruplet losses pair rows across the whole batch. Before
 * the step's runs, a forward on each of this rank's grains (with the
 * grain's dropout, as its run will have) gives its rows' scores, labels and
 * weights of each quadruplet loss; every rank gathers every grain's, in
 * grain order, and computes each loss over the whole batch and its gradient
 * per row (pairs drawn from a generator of the step's state, not of a
 * grain), the same on every rank at every rank count. A grain's run then
 * takes the loss as the node's value and backpropagates its own rows'
 * gradients (ops/token.h tl_quadruplet_set_rows). The cost: one more
 * forward per grain per step. s: this rank's status so far (not TL_OK:
 * told to every rank instead of running the forwards). */
static tl_status dp_quad_gather(tl_model *m, fit_run *r, const tl_rng *base, tl_status s)
{
    dp_run *p = &r->dp;
    tl_graph *g = m->g;
    const tl_distill_state *ds = m->distill;
    int Q = p->n_quad, B = r->B;
    for (int q = 0; q < Q && s == TL_OK; q++) { /* the forwards below compute no local pairs */
        p->qrows[q] = (tl_quad_rows){0.0, NULL, 0, 0};
        s = tl_quadruplet_set_rows(g, ds->quad[q], &p->qrows[q]);
    }
    size_t mine = sizeof(dp_header);
    for (int q = 0; q < p->d->size; q++) {
        int a, b;
        tl_dist_grains(p->G, p->d->size, q, &a, &b);
        size_t rows = 0;
        for (int j = a; j < b; j++) rows += (size_t)p->gn[j];
        p->qcount[q] = sizeof(dp_header) + rows * (size_t)Q * 4 * sizeof(float);
        if (q == p->d->rank) mine = p->qcount[q];
    }
    unsigned char *msg = p->xmsg, *all = p->xall; /* within their bounds (dp_prepare) */
    memset(msg, 0, mine);
    dp_header h;
    memset(&h, 0, sizeof h);
    size_t at = sizeof h;
    for (int j = p->g0; j < p->g1 && s == TL_OK; j++) {
        if (p->gn[j] == 0) continue;
        dp_fill(m, r, j);
        *tl_graph_rng(g) = dp_grain_rng(base, j);
        if ((s = tl_graph_forward(g, 1)) != TL_OK) break;
        for (int q = 0; q < Q; q++)
            for (int c = 0; c < 4; c++) {
                memcpy(msg + at, tl_graph_value(g, ds->quad_in[q][c]), (size_t)p->gn[j] * sizeof(float));
                at += (size_t)p->gn[j] * sizeof(float);
            }
    }
    if (s != TL_OK) {
        h.status = (int32_t)s;
        snprintf(h.msg, sizeof h.msg, "%s", tl_errmsg());
    }
    memcpy(msg, &h, sizeof h);
    s = tl_dist_allgatherv_known(p->d, msg, all, p->qcount);
    if (s != TL_OK)
        return tl_fail_context(s, "fit: step %lld: rank %d: exchanging CrossDistil's rows", (long long)m->step + 1,
                               p->d->rank);
    size_t off = 0;
    for (int q = 0; q < p->d->size; q++) {
        memcpy(&h, all + off, sizeof h);
        if (h.status != TL_OK)
            return tl_fail((tl_status)h.status, "fit: step %lld (epoch %d): rank %d failed: %s",
                           (long long)m->step + 1, m->epoch + 1, q, h.msg);
        int a, b;
        tl_dist_grains(p->G, p->d->size, q, &a, &b);
        at = off + sizeof h;
        for (int j = a; j < b; j++)
            for (int x = 0; x < Q && p->gn[j] > 0; x++)
                for (int c = 0; c < 4; c++) {
                    float *dst = p->qbuf + ((size_t)x * 5 + (size_t)c) * (size_t)B + p->goff[j];
                    memcpy(dst, all + at, (size_t)p->gn[j] * sizeof(float));
                    at += (size_t)p->gn[j] * sizeof(float);
                }
        off += p->qcount[q];
    }
    tl_rng pairs = dp_grain_rng(base, p->G + 2);
    for (int q = 0; q < Q && s == TL_OK; q++) {
        float *b5 = p->qbuf + (size_t)q * 5 * (size_t)B;
        double loss = 0.0;
        s = tl_quadruplet_rows_loss(g, ds->quad[q], b5, b5 + B, b5 + 2 * B, b5 + 3 * B, r->n, &pairs, &loss,
                                    b5 + 4 * B);
        p->qrows[q].loss = loss;
        p->qrows[q].grad = b5 + 4 * B;
    }
    return s;
}

/* The quadruplet losses back to their own rows' pairs (predict, evaluate,
 * the fit without data parallelism). */
static void dp_quad_end(tl_model *m, dp_run *p)
{
    for (int q = 0; q < p->n_quad; q++) tl_quadruplet_set_rows(m->g, m->distill->quad[q], NULL);
}

/* Forward and the strategies' backward on grain j's rows, the step's
 * denominators set. */
static tl_status dp_run_rows(tl_model *m, fit_run *r, int j, tl_rng rng, float *loss)
{
    tl_graph_zero_grad(m->g);
    dp_fill(m, r, j);
    *tl_graph_rng(m->g) = rng;
    tl_status s = tl_graph_forward(m->g, 1);
    if (s != TL_OK) return s;
    /* CrossDistil's loss was computed from the gathered teacher scores: this
     * run must have drawn the same (dropout masks, parameters), or its
     * gradient belongs to another loss. A cheap compare of its own rows. */
    const dp_run *p = &r->dp;
    for (int q = 0; q < p->n_quad && j >= 0; q++)
        for (int c = 0; c < 4; c++)
            if (memcmp(tl_graph_value(m->g, m->distill->quad_in[q][c]),
                       p->qbuf + ((size_t)q * 5 + (size_t)c) * (size_t)r->B + p->goff[j],
                       (size_t)p->gn[j] * sizeof(float)) != 0)
                return tl_fail(TL_ERR_STATE,
                               "fit: step %lld: CrossDistil's teacher scores of grain %d differ between the "
                               "whole-batch gather and the grain's run (rank %d)",
                               (long long)m->step + 1, j, p->d ? p->d->rank : 0);
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
static tl_status dp_rows_free(tl_model *m, fit_run *r, const tl_rng *base)
{
    dp_run *p = &r->dp;
    tl_graph *g = m->g;
    float loss[TL_MAX_TASKS];
    tl_graph_zero_grad(g);
    dp_fill(m, r, -1);
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
static tl_status dp_dense_sum(dp_run *p)
{
    int size = p->d->size, me = p->d->rank, total = 0, *c = p->gcount;
    for (int q = 0; q < size; q++) { /* non-empty grains of each rank */
        int a, b;
        tl_dist_grains(p->G, size, q, &a, &b);
        c[q] = 0;
        for (int j = a; j < b; j++) c[q] += p->gn[j] > 0;
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
    /* unguarded: after the guarded gradient exchange nothing before these
     * two can fail on one rank only (dist.h) */
    tl_status s = tl_dist_alltoallv(p->d, p->sendb, p->scount, p->recvb, p->rcount);
    if (s != TL_OK) return tl_fail_context(s, "fit: rank %d: exchanging gradient slices", me);
    size_t len = m1 - m0;
    memcpy(p->acc, p->recvb, len * sizeof(float));
    for (int t = 1; t < total; t++) {
        const float *src = p->recvb + (size_t)t * len;
        for (size_t x = 0; x < len; x++) p->acc[x] += src[x];
    }
    s = tl_dist_allgatherv_unguarded(p->d, p->acc, p->full, p->ccount);
    return s == TL_OK ? TL_OK : tl_fail_context(s, "fit: rank %d: gathering the summed gradient", me);
}

/* A step of a weighting that reduces per task (dp_self_reducing): the
 * forward of this rank's grain (a rows-free row when the batch is smaller
 * than the ranks), the batch's task losses gathered, then the strategy's
 * backward hook, which leaves the reduced gradient (hooks.h: reduce_grads). */
static tl_status dp_step_self(tl_model *m, fit_run *r, const float *den, const tl_rng *base, float *task_loss)
{
    dp_run *p = &r->dp;
    tl_graph *g = m->g;
    int K = m->cfg.n_tasks;
    typedef struct {
        dp_header h;
        float loss[TL_MAX_TASKS];
    } dp_losses;
    dp_losses mine;
    const dp_losses *all = NULL;
    const void *got = NULL;
    memset(&mine, 0, sizeof mine);
    mine.h.stop = tl_cancelled() || p->stop_req;
    tl_graph_zero_grad(g);
    dp_fill(m, r, p->d->rank);
    dp_set_denominators(m, den);
    *tl_graph_rng(g) = dp_grain_rng(base, p->d->rank);
    tl_status s = mine.h.stop ? TL_OK : tl_graph_forward(g, 1);
    for (int k = 0; k < K && s == TL_OK; k++) mine.loss[k] = tl_graph_value(g, m->loss[k])[0];
    if (s != TL_OK) {
        mine.h.status = (int32_t)s;
        snprintf(mine.h.msg, sizeof mine.h.msg, "%s", tl_errmsg());
    }
    tl_status cs = tl_dist_allgather(p->d, &mine, sizeof mine, &got);
    if (cs != TL_OK) return tl_fail_context(cs, "fit: step %lld: rank %d: exchanging losses", (long long)m->step + 1,
                                            p->d->rank);
    all = got;
    int fail_rank = -1, stop_rank = -1;
    for (int q = 0; q < p->d->size; q++) {
        if (all[q].h.status != TL_OK && fail_rank < 0) fail_rank = q;
        if (all[q].h.stop && stop_rank < 0) stop_rank = q;
        for (int k = 0; k < K; k++) task_loss[k] = q == 0 ? all[q].loss[k] : task_loss[k] + all[q].loss[k];
    }
    if (fail_rank >= 0 || stop_rank >= 0) {
        dp_header h = all[fail_rank >= 0 ? fail_rank : 0].h;
        tl_graph_zero_grad(g);
        if (fail_rank >= 0)
            return tl_fail((tl_status)h.status, "fit: step %lld (epoch %d): rank %d failed: %s", (long long)m->step + 1,
                           m->epoch + 1, fail_rank, h.msg);
        return tl_fail(TL_ERR_CANCELLED,
                       "training interrupted at epoch %d, step %lld (asked by rank %d); every rank keeps "
                       "the same parameters and can continue",
                       m->epoch + 1, (long long)m->step, stop_rank);
    }
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
static int dp_nonempty(const dp_run *p)
{
    int n = 0;
    for (int j = 0; j < p->G; j++) n += p->gn[j] > 0;
    return n;
}

static tl_status dp_apply(tl_model *m, fit_run *r, const unsigned char *all, const size_t *counts,
                          float *task_loss)
{
    dp_run *p = &r->dp;
    tl_graph *g = m->g;
    int nonempty = dp_nonempty(p);
    tl_status s = dp_dense_sum(p);
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

/* Over a stream: this rank's grains' rows of the batch under way read, and
 * the batch's loss denominators: each grain's weight sums, gathered and
 * added in grain order (the same at every rank count). A rank whose read
 * fails says so in the same exchange, and every rank stops naming it. */
static tl_status dp_stream_den(tl_model *m, fit_run *r, float *den)
{
    dp_run *p = &r->dp;
    tl_dist *d = p->d;
    int K = m->cfg.n_tasks;
    size_t per = (size_t)K * sizeof(double), mine = sizeof(dp_header) + (size_t)(p->g1 - p->g0) * per;
    for (int q = 0; q < d->size; q++) {
        int a, b;
        tl_dist_grains(p->G, d->size, q, &a, &b);
        p->ccount[q] = sizeof(dp_header) + (size_t)(b - a) * per;
    }
    unsigned char *msg = p->xmsg, *all = p->xall; /* within their bounds (dp_prepare) */
    memset(msg, 0, mine);
    dp_header h;
    memset(&h, 0, sizeof h);
    tl_status s = p->skip_st != TL_OK ? tl_fail(p->skip_st, "%s", p->skip_msg) : TL_OK;
    for (int j = p->g0; j < p->g1 && s == TL_OK; j++) {
        double ws[TL_MAX_TASKS] = {0};
        if (p->gn[j] > 0 && (s = tl_model_stream_batch(p->gs[j], p->gn[j], &p->gv[j])) == TL_OK) {
            dp_fill(m, r, j);
            for (int k = 0; k < K; k++) {
                const float *w = tl_graph_input(m->g, m->rowweight[k]);
                for (int i = 0; i < p->gn[j]; i++)
                    if (w[i] != 0.0f) ws[k] += (double)w[i];
            }
        }
        memcpy(msg + sizeof h + (size_t)(j - p->g0) * per, ws, per);
    }
    if (s != TL_OK) {
        h.status = (int32_t)s;
        snprintf(h.msg, sizeof h.msg, "%s", tl_errmsg());
    }
    memcpy(msg, &h, sizeof h);
    s = tl_dist_allgatherv_known(d, msg, all, p->ccount);
    if (s != TL_OK)
        return tl_fail_context(s, "fit: step %lld: rank %d: exchanging the batch's weights", (long long)m->step + 1,
                               d->rank);
    double sum[TL_MAX_TASKS] = {0};
    size_t off = 0;
    for (int q = 0; q < d->size; q++) {
        memcpy(&h, all + off, sizeof h);
        if (h.status != TL_OK)
            return tl_fail((tl_status)h.status, "fit: step %lld (epoch %d): rank %d failed: %s",
                           (long long)m->step + 1, m->epoch + 1, q, h.msg);
        for (size_t at = off + sizeof h; at < off + p->ccount[q]; at += per)
            for (int k = 0; k < K; k++) {
                double v;
                memcpy(&v, all + at + (size_t)k * sizeof v, sizeof v);
                sum[k] += v;
            }
        off += p->ccount[q];
    }
    for (int k = 0; k < K; k++) den[k] = (float)sum[k];
    return TL_OK;
}

/* Over a stream, at a step whose diagnostics are due (task_grads.h: its
 * step_ready hook records on the batch in the graph, as in memory, where
 * the whole batch is filled): every grain's rows of the batch under way,
 * gathered from the ranks that read them, into the graph in grain order
 * (the buffers are dp_prepare's: nothing here fails on one rank only). */
static tl_status dp_stream_whole(tl_model *m, fit_run *r)
{
    dp_run *p = &r->dp;
    tl_dist *d = p->d;
    const tl_model_config *c = &m->cfg;
    size_t nc = (size_t)c->n_cat, nn = (size_t)c->n_num, K = (size_t)c->n_tasks, slots = 0;
    for (int b = 0; b < c->n_bag; b++) slots += (size_t)c->bag_len[b];
    size_t words = nc + nn + K + 1 + slots; /* a row: ids, numbers, labels, weight, bag slots */
    for (int q = 0; q < d->size; q++) {
        int a, b;
        tl_dist_grains(p->G, d->size, q, &a, &b);
        size_t rows = 0;
        for (int j = a; j < b; j++) rows += (size_t)p->gn[j];
        p->ccount[q] = rows * words * 4;
    }
    unsigned char *msg = p->xmsg, *all = p->xall; /* within their bounds (dp_prepare) */
    tl_split whole;
    memset(&whole, 0, sizeof whole);
    whole.name = "train";
    whole.n = (size_t)r->n;
    whole.bag_slots = (int)slots;
    void *cols = p->xcols;
    size_t at = 0;
    for (int j = p->g0; j < p->g1; j++) {
        const tl_split *g = &p->gv[j];
        for (int i = 0; i < p->gn[j]; i++) {
            float wt = g->weight ? g->weight[i] : 1.0f;
            if (nc) memcpy(msg + at, g->cat + (size_t)i * nc, nc * 4), at += nc * 4;
            if (nn) memcpy(msg + at, g->num + (size_t)i * nn, nn * 4), at += nn * 4;
            memcpy(msg + at, g->labels + (size_t)i * K, K * 4), at += K * 4;
            memcpy(msg + at, &wt, 4), at += 4;
            if (slots) memcpy(msg + at, g->bag + (size_t)i * slots, slots * 4), at += slots * 4;
        }
    }
    tl_status s = tl_dist_allgatherv_known(d, msg, all, p->ccount);
    if (s != TL_OK)
        return tl_fail_context(s, "fit: step %lld: rank %d: exchanging the batch's rows", (long long)m->step + 1,
                               d->rank);
    whole.cat = cols;
    whole.num = (float *)(whole.cat + (size_t)r->n * nc);
    whole.labels = whole.num + (size_t)r->n * nn;
    whole.weight = whole.labels + (size_t)r->n * K;
    whole.bag = slots ? (int32_t *)(whole.weight + r->n) : NULL;
    size_t off = 0, row = 0;
    for (int q = 0; q < d->size; q++) {
        for (at = off; at < off + p->ccount[q]; row++) {
            if (nc) memcpy(whole.cat + row * nc, all + at, nc * 4), at += nc * 4;
            if (nn) memcpy(whole.num + row * nn, all + at, nn * 4), at += nn * 4;
            memcpy(whole.labels + row * K, all + at, K * 4), at += K * 4;
            memcpy(whole.weight + row, all + at, 4), at += 4;
            if (slots) memcpy(whole.bag + row * slots, all + at, slots * 4), at += slots * 4;
        }
        off += p->ccount[q];
    }
    tl_model_fill_batch(m, &whole, NULL, 0, r->n);
    return TL_OK;
}

/* One data-parallel step on the batch under way (batch_rows): the gradient
 * of the whole batch in the graph's gradients on every rank, then the
 * optimizer step. When a rank asked to stop (Ctrl-C, a progress callback)
 * nothing is stepped and TL_ERR_CANCELLED returned on every rank. */
static tl_status dp_step_rows(tl_model *m, fit_run *r, float *task_loss);

static tl_status dp_step(tl_model *m, fit_run *r, float *task_loss)
{
    tl_status s = dp_step_rows(m, r, task_loss);
    dp_quad_end(m, &r->dp);
    return s;
}

static tl_status dp_step_rows(tl_model *m, fit_run *r, float *task_loss)
{
    dp_run *p = &r->dp;
    tl_graph *g = m->g;
    int K = m->cfg.n_tasks, n = r->n;
    hooks_step_begin(m);
    /* the loss denominators (summed as the loss op sums them; in memory
     * over the whole batch, which the strategies see at step_ready) */
    float den[TL_MAX_TASKS];
    if (p->gs) {
        tl_status ds = dp_stream_den(m, r, den);
        if (ds == TL_OK && r->opt->diagnostics > 0 && (m->step + 1) % r->opt->diagnostics == 0)
            ds = dp_stream_whole(m, r);
        if (ds != TL_OK) return ds;
    } else {
        tl_model_fill_batch(m, r->train, r->order, r->from, n);
        for (int k = 0; k < K; k++) {
            const float *w = tl_graph_input(g, m->rowweight[k]);
            double ws = 0.0;
            for (int i = 0; i < n; i++)
                if (w[i] != 0.0f) ws += (double)w[i];
            den[k] = (float)ws;
        }
    }
    m->view.dp_batch_rows = m->view.dp_run_rows = n;
    tl_status s = TL_OK;
    for (int i = 0; i < m->n_hooks && s == TL_OK; i++)
        if (m->hooks[i]->step_ready) s = m->hooks[i]->step_ready(m->hook_state[i], &m->view);
    tl_rng base = *tl_graph_rng(g);
    /* A failed step_ready reaches every rank: through the teacher-score
     * gather when there is one (then every rank stops here), else in the
     * gradient exchange's header below. */
    if (p->n_quad > 0) {
        s = dp_quad_gather(m, r, &base, s);
        if (s != TL_OK) {
            *tl_graph_rng(g) = base;
            return s;
        }
    }
    if (p->self_reduce) {
        if (s == TL_OK) s = dp_step_self(m, r, den, &base, task_loss);
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
        if (p->gn[j] == 0) continue;
        float loss[TL_MAX_TASKS];
        s = dp_run_rows(m, r, j, dp_grain_rng(&base, j), loss);
        if (s == TL_OK) oom = dp_pack_grain(m, p, &pos, j, (int32_t)p->gn[j], loss, p->mine + (size_t)slot++ * p->dense_n);
    }
    /* the rows-free part (dp_apply), here, where a failure goes into the
     * exchange: between the exchange and the dense sum nothing may fail */
    if (s == TL_OK && !oom && !hd.stop && p->zero && dp_nonempty(p) > 1) s = dp_rows_free(m, r, &base);
    if (oom) s = TL_ERR_NOMEM;
    if (s != TL_OK) {
        hd.status = (int32_t)s;
        snprintf(hd.msg, sizeof hd.msg, "%s", tl_errmsg());
        pos = 0;
        dp_put(p, &pos, &hd, sizeof hd); /* fits: the buffer held the header before */
    } else {
        memcpy(p->send, &hd, sizeof hd);
    }
    const void *got = NULL;
    const size_t *counts = NULL;
    tl_status cs = tl_dist_allgatherv(p->d, p->send, pos, &got, &counts);
    const unsigned char *all = got;
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
    s = dp_apply(m, r, all, counts, task_loss);
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
    int32_t mine = flag, v;
    const void *got = NULL;
    if ((*st = tl_dist_allgather(p->d, &mine, sizeof mine, &got)) != TL_OK) return 1;
    int any = 0;
    for (int q = 0; q < p->d->size; q++) {
        memcpy(&v, (const unsigned char *)got + (size_t)q * sizeof v, sizeof v);
        any |= v != 0;
    }
    return any;
}

/* fit{check_every=N}: the parameters and dropout stream hashed, compared;
 * then early stopping's record (its best score, patience count and best
 * weights), which restore_best would otherwise bring back differently on
 * the ranks whose validation disagreed. */
static tl_status dp_check(tl_model *m, fit_run *r)
{
    uint64_t h = tl_dist_hash(r->params, r->pf * sizeof(float), 0);
    h = tl_dist_hash(tl_graph_rng(m->g), sizeof(tl_rng), h);
    tl_status st = tl_dist_check_equal(r->dp.d, h, "fit: parameters", m->step);
    if (st != TL_OK) return st;
    const struct tl_es_record *es = &m->es;
    int32_t counts[2] = {es->bad_epochs, es->have_best};
    h = tl_dist_hash(&es->best, sizeof es->best, 0);
    h = tl_dist_hash(counts, sizeof counts, h);
    if (es->have_best && m->best) h = tl_dist_hash(m->best, r->pf * sizeof(float), h);
    return tl_dist_check_equal(r->dp.d, h, "fit: early stopping's record (best score, patience count, best weights)",
                               m->step);
}


/* Over a stream: the rows of the epoch that grain j's stream (j < 0: the
 * one stream of a fit without data parallelism) has given after b batches,
 * and all grains' together. */
static uint64_t stream_rows_read(const fit_run *r, int j, size_t b)
{
    uint64_t at = (uint64_t)b * (uint64_t)(j < 0 ? r->B : r->dp.gcap[j]);
    uint64_t rows = j < 0 ? tl_stream_rows(r->stream) : r->dp.grows[j];
    return at < rows ? at : rows;
}

static int stream_grains(const fit_run *r) { return r->dp.gs ? r->dp.G : 1; }

static uint64_t stream_consumed(const fit_run *r, size_t b)
{
    if (!r->dp.gs) return stream_rows_read(r, -1, b);
    uint64_t n = 0;
    for (int j = 0; j < r->dp.G; j++) n += stream_rows_read(r, j, b);
    return n;
}

/* Check the arguments, grow the graph to the batch, and allocate what the
 * fit needs (optimizer, history, shuffle order, best parameters). The
 * batches come from train, or from the stream when train is NULL. */
static tl_status fit_prepare(tl_model *m, fit_run *r, const tl_split *train, tl_stream *stream,
                             const tl_split *valid, const tl_fit_options *opt)
{
    tl_status st = train ? tl_model_check_split(m, train, "fit") : TL_OK;
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
    if (train) resolve_order(m, train);
    tl_task_grads_every(m->task_grads, opt->diagnostics);

    memset(r, 0, sizeof *r);
    r->train = train;
    r->stream = stream;
    r->valid = valid;
    r->opt = opt;
    r->B = B;
    uint64_t rows = train ? train->n : tl_stream_rows(stream);
    r->per_epoch = (size_t)((rows + (uint64_t)B - 1) / (uint64_t)B);
    r->order = train ? tl_malloc(train->n * sizeof *r->order, "shuffle order") : NULL;
    r->params = tl_graph_params(m->g, &r->pf);
    if (train && !r->order) return TL_ERR_NOMEM;
    r->shuffle_seed = opt->seed ? opt->seed : m->cfg.seed;
    r->last_epoch = m->epoch + opt->epochs;
    r->saved_dist = m->view.dist;
    st = dp_prepare(m, r, opt); /* over a stream it may change per_epoch */
    if (st == TL_OK && !r->dp.d && stream) st = tl_stream_reserve(stream, B);
    if (st == TL_OK && stream)
        st = tl_model_stream_resume_check(m, stream, stream_grains(r), B, stream_consumed(r, m->batches_in_epoch));
    size_t total = r->per_epoch * (size_t)opt->epochs;
    if (opt->max_steps > 0 && (size_t)opt->max_steps < total) total = (size_t)opt->max_steps;
    if (st == TL_OK) st = reserve_history(m, total, (size_t)opt->epochs);
    if (st == TL_OK && valid && opt->eval_every > 0) {
        size_t need = m->n_evals_hist + total / (size_t)opt->eval_every + 1;
        if (need > m->cap_evals_hist) {
            tl_epoch_record *h = tl_realloc(m->evals_hist, need * sizeof *h, "eval history");
            if (h) {
                m->evals_hist = h;
                m->cap_evals_hist = need;
            } else {
                st = TL_ERR_NOMEM;
            }
        }
    }
    if (st == TL_OK && valid && opt->restore_best && !m->best &&
        !(m->best = tl_malloc_aligned(r->pf * sizeof(float), "best parameters")))
        st = TL_ERR_NOMEM;
    if (st == TL_OK && r->dp.d) st = dp_start(m, r, opt);
    if (st != TL_OK) {
        dp_free(r);
        m->view.dist = r->saved_dist;
        m->view.reduce_grads = NULL;
        tl_free(r->order);
        return st;
    }
    /* Early stopping's record: a fit continues the run that is open and not
     * at its end (stopped mid-epoch, or before its last epoch), as the epoch
     * and the stream's place continue, when it validates as that run did
     * (valid rows, monitor, patience: another scale or no validation at all
     * must not compare with, or restore, the old run's best); otherwise it
     * starts a new record. Either way this fit's epochs become the run's end. */
    struct tl_es_record *es = &m->es;
    int same = valid && es->valid_rows == (uint64_t)valid->n && es->monitor_task == opt->monitor_task &&
               es->patience == opt->patience;
    if (!(es->open && same && (m->batches_in_epoch > 0 || m->epoch < es->last_epoch))) {
        es->best = -INFINITY;
        es->bad_epochs = 0;
        es->have_best = 0;
    }
    es->open = 1;
    es->last_epoch = r->last_epoch;
    es->patience = opt->patience;
    es->monitor_task = opt->monitor_task;
    es->valid_rows = valid ? (uint64_t)valid->n : 0;
    return TL_OK;
}

/* The order of epoch e depends only on (seed, e), and a fit that stopped
 * mid-epoch resumes at the next batch: training N steps, then M more (also
 * after a checkpoint round trip) equals N+M at once. */
static tl_status epoch_begin(tl_model *m, fit_run *r)
{
    const tl_split *train = r->train;
    tl_status st = TL_OK;
    if (train) {
        for (size_t i = 0; i < train->n; i++) r->order[i] = (uint32_t)i;
        if (r->opt->shuffle) {
            tl_rng shuf;
            tl_rng_seed(&shuf, r->shuffle_seed * 0x9e3779b97f4a7c15ULL + (uint64_t)m->epoch);
            tl_rng_shuffle_u32(&shuf, r->order, train->n);
        }
    } else if (r->dp.gs) { /* a stream's epoch e: the stream's own order of (seed, e) */
        for (int j = r->dp.g0; j < r->dp.g1 && st == TL_OK; j++) st = tl_stream_begin(r->dp.gs[j], m->epoch);
    } else {
        st = tl_stream_begin(r->stream, m->epoch);
    }
    if (m->batches_in_epoch >= r->per_epoch) m->batches_in_epoch = 0;
    /* A stream resumed mid-epoch (its place checked by fit_prepare): past
     * the rows the batches done have read, grain by grain. */
    size_t bie = m->batches_in_epoch;
    if (!train && bie > 0 && st == TL_OK) {
        if (!r->dp.gs) st = tl_model_stream_skip(r->stream, stream_rows_read(r, -1, bie));
        for (int j = r->dp.g0; r->dp.gs && j < r->dp.g1 && st == TL_OK; j++)
            st = tl_model_stream_skip(r->dp.gs[j], stream_rows_read(r, j, bie));
        if (st != TL_OK && r->dp.gs) {
            r->dp.skip_st = st;
            snprintf(r->dp.skip_msg, sizeof r->dp.skip_msg, "%s", tl_errmsg());
            st = TL_OK;
        }
    }
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->epoch_begin) m->hooks[i]->epoch_begin(m->hook_state[i], &m->view);
    for (int k = 0; k < m->cfg.n_tasks; k++) r->epoch_loss[k] = 0.0;
    r->done = r->ran = 0;
    /* Resuming mid-epoch: the epoch's mean loss (history, DWA) also counts
     * the batches done before, which the step history holds. */
    if (bie > 0 && m->n_steps_hist >= bie && m->steps_hist[m->n_steps_hist - bie].epoch == m->epoch + 1) {
        for (size_t i = m->n_steps_hist - bie; i < m->n_steps_hist; i++)
            for (int k = 0; k < m->cfg.n_tasks; k++) r->epoch_loss[k] += (double)m->steps_hist[i].loss[k];
        r->done = bie;
    }
    return st;
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
    const tl_split *valid = r->valid;
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
        batch_rows(r, b);
        float tl_loss[TL_MAX_TASKS];
        const tl_split *seen = r->train; /* what the step_end hooks see */
        if (r->dp.d) {
            st = dp_step(m, r, tl_loss);
        } else if (r->stream) {
            if ((st = tl_model_stream_batch(r->stream, r->n, &r->sb)) == TL_OK) {
                tl_model_fill_batch(m, &r->sb, NULL, 0, r->n);
                st = train_step(m, tl_loss);
            }
            seen = &r->sb;
        } else {
            tl_model_fill_batch(m, r->train, r->order, r->from, r->n);
            st = train_step(m, tl_loss);
        }
        if (st != TL_OK) return st;
        m->step++;
        m->batches_in_epoch = b + 1;
        if (r->stream) /* for a checkpoint taken by the progress callback */
            tl_model_stream_mark(m, r->stream, stream_grains(r), r->B, stream_consumed(r, b + 1));
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
        tl_fit_point f = {seen, valid, tl_loss, NULL};
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
        struct tl_es_record *es = &m->es;
        if (isfinite(*monitor) && *monitor > es->best) {
            es->best = *monitor;
            *improved = 1;
            es->bad_epochs = 0;
            es->have_best = 0;
            if (m->best) {
                memcpy(m->best, r->params, r->pf * sizeof(float));
                es->have_best = 1;
            }
        } else {
            es->bad_epochs++;
        }
    }
    er->monitor = *monitor;
    return TL_OK;
}

/* The fit loop, over the in-memory train split or (train NULL) the stream:
 * tl_model_fit and tl_model_fit_stream. */
tl_status tl_model_fit_source(tl_model *m, const tl_split *train, tl_stream *stream, const tl_split *valid,
                              const tl_fit_options *opt)
{
    fit_run r;
    /* Under data parallelism every rank ends the fit with the same status
     * (dist.h tl_dist_agree): a rank that failed on its own names itself. */
    tl_dist *group = opt->dist && opt->dist->size > 1 ? opt->dist : NULL;
    tl_status st = fit_prepare(m, &r, train, stream, valid, opt);
    if (st != TL_OK) return group ? tl_dist_agree(group, st, "fit") : st;
    int K = m->cfg.n_tasks;
    /* A run resumed at an epoch end where its patience had run out (a stop
     * asked for there came first): it ends now, as it would have. */
    if (opt->patience > 0 && m->batches_in_epoch == 0 && m->es.bad_epochs >= opt->patience)
        r.stopped_by_patience = 1;
    for (int e = 0; e < opt->epochs && st == TL_OK && !r.stopped_by_patience; e++) {
        if ((st = epoch_begin(m, &r)) != TL_OK) break;
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
        /* the record just changed: compared before a stop or restore_best uses it */
        if (r.dp.d && r.dp.check_every > 0 && (st = dp_check(m, &r)) != TL_OK) break;
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
        if (opt->patience > 0 && m->es.bad_epochs >= opt->patience) {
            r.stopped_by_patience = 1;
            break;
        }
        if (opt->max_steps > 0 && r.steps_this_call >= opt->max_steps) break;
    }
    if (group) st = tl_dist_agree(group, st, "fit");
    /* Best weights come back only when training ended by its own rules (all
     * epochs, or patience): a fit cut by max_steps, Ctrl-C or an error keeps
     * the current weights so that it can continue exactly. */
    int ran_to_end = r.stopped_by_patience || m->epoch == r.last_epoch;
    if (m->es.have_best && opt->restore_best && st == TL_OK && ran_to_end)
        memcpy(r.params, m->best, r.pf * sizeof(float));
    if (st == TL_OK && ran_to_end) m->es.open = 0; /* the run ended: the next fit starts a new record */
    /* a stream's place mid-epoch, for the next fit or a checkpoint */
    if (train) memset(&m->smark, 0, sizeof m->smark);
    else tl_model_stream_mark(m, stream, stream_grains(&r), r.B, stream_consumed(&r, m->batches_in_epoch));
    tl_free(r.order);
    dp_free(&r);
    m->view.dist = r.saved_dist;
    m->view.reduce_grads = NULL;
    return st;
}

tl_status tl_model_fit(tl_model *m, const tl_split *train, const tl_split *valid, const tl_fit_options *opt)
{
    if (!train) return tl_model_check_split(m, train, "fit");
    return tl_model_fit_source(m, train, NULL, valid, opt);
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

