/* models/model_fit.c — part of module model (model.h): the fit loop
 * (epochs, batches, steps through the attached strategies' hooks, mid-epoch
 * and epoch-end validation, early stopping), the training history and the
 * per-task gradient entry points (task_grads.h). */
#include "model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "losses/distill.h"
#include "losses/weighting.h"
#include "model_impl.h"
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
        tl_model_fill_batch(m, train, r->order, from, n);
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
