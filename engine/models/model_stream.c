/* models/model_stream.c — part of module model (model.h): training on a
 * stream of sharded rows (data/shards.h) for data larger than memory. The
 * step, the optimizer and the epoch-end hooks are model_fit.c's; this file
 * only replaces the source of the batches (the stream instead of a shuffled
 * in-memory split) and keeps the epoch's bookkeeping around it.
 */
#include "model.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "losses/weighting.h"
#include "model_impl.h"

static tl_status check_layout(const tl_model *m, const tl_shard_layout *l)
{
    const tl_model_config *c = &m->cfg;
    if (l->n_cat != c->n_cat || l->n_num != c->n_num || l->n_tasks != c->n_tasks)
        return tl_fail(TL_ERR_ARG,
                       "fit: the stream has %d categorical, %d numeric fields and %d tasks; the model %d, %d, %d",
                       l->n_cat, l->n_num, l->n_tasks, c->n_cat, c->n_num, c->n_tasks);
    for (int f = 0; f < l->n_cat; f++)
        if (l->vocab[f] > c->vocab[f])
            return tl_fail(TL_ERR_ARG, "fit: stream field '%s' has %d ids, the model's table %d", l->cat_name[f],
                           (int)l->vocab[f], (int)c->vocab[f]);
    if (l->n_bag != c->n_bag)
        return tl_fail(TL_ERR_ARG, "fit: the stream has %d multi-valued fields, the model %d", l->n_bag, c->n_bag);
    for (int b = 0; b < l->n_bag; b++)
        if (l->bag_vocab[b] > c->bag_vocab[b] || l->bag_len[b] != c->bag_len[b])
            return tl_fail(TL_ERR_ARG, "fit: stream field '%s' has %d ids and %d slots, the model's %d and %d",
                           l->bag_name[b], (int)l->bag_vocab[b], l->bag_len[b], (int)c->bag_vocab[b], c->bag_len[b]);
    for (int k = 0; k < l->n_tasks; k++)
        if (strcmp(l->task_name[k], c->tasks[k].name) != 0)
            return tl_fail(TL_ERR_ARG, "fit: stream task %d is '%s', the model's '%s'", k + 1, l->task_name[k],
                           c->tasks[k].name);
    if (c->distill.enabled)
        return tl_fail(TL_ERR_ARG, "fit: CrossDistil models cannot train on a stream yet (its calibrators "
                                   "refit on the whole train split)");
    return TL_OK;
}

static tl_status grow_history(tl_model *m, size_t steps)
{
    if (m->n_steps_hist + steps <= m->cap_steps_hist && m->n_epochs_hist < m->cap_epochs_hist) return TL_OK;
    size_t cap = m->n_steps_hist + steps;
    if (cap > m->cap_steps_hist) {
        tl_step_record *h = tl_realloc(m->steps_hist, cap * sizeof *h, "step history");
        if (!h) return TL_ERR_NOMEM;
        m->steps_hist = h;
        m->cap_steps_hist = cap;
    }
    if (m->n_epochs_hist >= m->cap_epochs_hist) {
        size_t ce = m->cap_epochs_hist * 2 + 8;
        tl_epoch_record *e = tl_realloc(m->epochs_hist, ce * sizeof *e, "epoch history");
        if (!e) return TL_ERR_NOMEM;
        m->epochs_hist = e;
        m->cap_epochs_hist = ce;
    }
    return TL_OK;
}

/* The early-stopping value, as model_fit.c computes it: mean over tasks of
 * AUC (binary) / -MSE (regression), or the monitored task's. */
static double monitor(const tl_model *m, const tl_task_eval *ev, int task, double *per_task)
{
    double sum = 0.0;
    int n = 0;
    for (int k = 0; k < m->cfg.n_tasks; k++) {
        double v = ev[k].type == TL_TASK_BINARY ? ev[k].bin.auc : -ev[k].reg.mse;
        per_task[k] = ev[k].type == TL_TASK_BINARY ? ev[k].bin.auc : ev[k].reg.rmse;
        if ((task < 0 || k == task) && isfinite(v)) {
            sum += v;
            n++;
        }
    }
    return n ? sum / n : (double)NAN;
}

static tl_status stopped(const tl_model *m, const char *why)
{
    return tl_fail(TL_ERR_CANCELLED, "training %s at epoch %d, step %lld; the model keeps its current "
                                     "parameters and can continue",
                   why, m->epoch + 1, (long long)m->step);
}

/* One epoch of the stream: the batches, their history and step hooks. */
static tl_status stream_epoch(tl_model *m, tl_stream *s, const tl_split *valid, const tl_fit_options *opt, int B,
                              int last_epoch, int64_t *steps, double *epoch_loss, size_t *done, int *ended)
{
    *ended = 0;
    int K = m->cfg.n_tasks, per_epoch = (int)((tl_stream_rows(s) + (uint64_t)B - 1) / (uint64_t)B);
    tl_status st = tl_stream_begin(s, m->epoch);
    for (int i = 0; st == TL_OK && i < m->n_hooks; i++)
        if (m->hooks[i]->epoch_begin) m->hooks[i]->epoch_begin(m->hook_state[i], &m->view);
    for (int b = 0; st == TL_OK; b++) {
        if (opt->max_steps > 0 && *steps >= opt->max_steps) break;
        if (tl_cancelled()) return stopped(m, "interrupted");
        tl_split batch;
        int n;
        if ((st = tl_stream_next(s, B, &batch, NULL, &n)) != TL_OK) break;
        if (n == 0) {
            *ended = 1;
            break;
        }
        if (m->cfg.n_bag && !batch.bag)
            return tl_fail(TL_ERR_ARG, "fit: the model has multi-valued fields; open the stream with TL_STREAM_BAGS");
        float loss[TL_MAX_TASKS];
        tl_model_fill_batch(m, &batch, NULL, 0, n);
        if ((st = tl_model_fit_step(m, loss)) != TL_OK) break;
        m->step++;
        (*steps)++;
        (*done)++;
        if ((st = grow_history(m, 1)) != TL_OK) break;
        tl_step_record *sr = &m->steps_hist[m->n_steps_hist++];
        sr->step = m->step;
        sr->epoch = m->epoch + 1;
        for (int k = 0; k < K; k++) {
            epoch_loss[k] += (double)loss[k];
            sr->loss[k] = loss[k];
            sr->weight[k] = tl_weighting_effective(m->weighting, &m->view, k);
        }
        tl_fit_point f = {&batch, valid, loss, NULL};
        for (int i = 0; i < m->n_hooks && st == TL_OK; i++)
            if (m->hooks[i]->step_end) st = m->hooks[i]->step_end(m->hook_state[i], &m->view, &f);
        if (st == TL_OK && opt->progress && opt->progress_every > 0 && m->step % opt->progress_every == 0) {
            double mean[TL_MAX_TASKS];
            for (int k = 0; k < K; k++) mean[k] = epoch_loss[k] / (double)*done;
            tl_progress p = {TL_PROGRESS_STEP, m->epoch + 1, last_epoch, m->step, b + 1, per_epoch, mean, NULL, NAN, 0};
            if (opt->progress(opt->progress_ud, &p)) return stopped(m, "stopped by the progress callback");
        }
    }
    return st;
}

tl_status tl_model_fit_stream(tl_model *m, tl_stream *s, const tl_split *valid, const tl_fit_options *opt)
{
    tl_status st = check_layout(m, tl_stream_layout(s));
    if (st != TL_OK) return st;
    if (valid && (st = tl_model_check_split(m, valid, "fit: valid")) != TL_OK) return st;
    if (opt->eval_every > 0) return tl_fail(TL_ERR_ARG, "fit: eval_every is not supported on a stream");
    int B = opt->batch > 0 ? opt->batch : m->cfg.max_batch;
    if (B > 1 << 20) return tl_fail(TL_ERR_ARG, "fit: batch %d above 1048576", B);
    if (opt->epochs < 1 || opt->epochs > INT_MAX - m->epoch)
        return tl_fail(TL_ERR_ARG, "fit: bad number of epochs %d", opt->epochs);
    if (B > tl_graph_max_batch(m->g) && (st = tl_graph_set_max_batch(m->g, B, m->cfg.max_memory, 0)) != TL_OK)
        return tl_fail_context(st, "fit");
    if ((st = tl_model_fit_optim(m, &opt->optim)) != TL_OK || (st = tl_stream_reserve(s, B)) != TL_OK) return st;
    tl_task_grads_every(m->task_grads, opt->diagnostics);
    size_t pf;
    float *params = tl_graph_params(m->g, &pf);
    if (valid && opt->restore_best && !m->best && !(m->best = tl_malloc_aligned(pf * sizeof(float), "best parameters")))
        return TL_ERR_NOMEM;
    int K = m->cfg.n_tasks, last_epoch = m->epoch + opt->epochs, bad = 0, have_best = 0, by_patience = 0;
    int64_t steps = 0;
    double best = -INFINITY;
    m->batches_in_epoch = 0; /* a stream epoch always starts at its beginning */
    for (int e = 0; e < opt->epochs && st == TL_OK; e++) {
        double loss[TL_MAX_TASKS] = {0}, per_task[TL_MAX_TASKS];
        size_t done = 0;
        int ended;
        st = stream_epoch(m, s, valid, opt, B, last_epoch, &steps, loss, &done, &ended);
        if (st != TL_OK || !ended || done == 0) break; /* a stop or max_steps mid-epoch: not closed */
        for (int k = 0; k < K; k++) loss[k] /= (double)done;
        m->epoch++;
        if ((st = tl_model_fit_epoch_end(m, valid, loss)) != TL_OK || (st = grow_history(m, 0)) != TL_OK) break;
        tl_epoch_record *er = &m->epochs_hist[m->n_epochs_hist++];
        memset(er, 0, sizeof *er);
        er->epoch = m->epoch;
        er->step = m->step;
        er->monitor = NAN;
        int improved = 0;
        for (int k = 0; k < K; k++) {
            er->train_loss[k] = loss[k];
            er->valid_metric[k] = er->valid_logloss[k] = per_task[k] = NAN;
        }
        if (valid) {
            tl_task_eval ev[TL_MAX_TASKS];
            if ((st = tl_model_evaluate(m, valid, 10, ev, NULL)) != TL_OK) {
                m->n_epochs_hist--;
                break;
            }
            er->monitor = monitor(m, ev, opt->monitor_task, per_task);
            for (int k = 0; k < K; k++) {
                er->valid_metric[k] = per_task[k];
                er->valid_logloss[k] = ev[k].type == TL_TASK_BINARY ? ev[k].bin.logloss : ev[k].reg.mse;
            }
            if (isfinite(er->monitor) && er->monitor > best) {
                best = er->monitor;
                improved = 1;
                bad = 0;
                if (m->best) {
                    memcpy(m->best, params, pf * sizeof(float));
                    have_best = 1;
                }
            } else {
                bad++;
            }
        }
        if (opt->progress) {
            int per_epoch = (int)((tl_stream_rows(s) + (uint64_t)B - 1) / (uint64_t)B);
            tl_progress p = {TL_PROGRESS_EPOCH, m->epoch, last_epoch, m->step, (int)done, per_epoch, loss,
                             per_task, er->monitor, improved};
            if (opt->progress(opt->progress_ud, &p)) {
                st = tl_fail(TL_ERR_CANCELLED, "training stopped by the progress callback");
                break;
            }
        }
        if (opt->patience > 0 && bad >= opt->patience) {
            by_patience = 1;
            break;
        }
        if (opt->max_steps > 0 && steps >= opt->max_steps) break;
    }
    if (have_best && opt->restore_best && st == TL_OK && (by_patience || m->epoch == last_epoch))
        memcpy(params, m->best, pf * sizeof(float));
    return st;
}
