/* models/model_stream.c — part of module model (model.h): training on a
 * stream of sharded rows (data/shards.h) for data larger than memory. The
 * loop, the step (data-parallel too) and the epoch's bookkeeping are
 * model_fit.c's (tl_model_fit_source); this file checks that the stream
 * fits the model and reads its batches.
 */
#include "model.h"

#include <limits.h>
#include <string.h>

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

tl_status tl_model_stream_batch(tl_stream *s, int n, tl_split *batch)
{
    int got;
    tl_status st = tl_stream_next(s, n, batch, NULL, &got);
    if (st == TL_OK && got != n)
        return tl_fail(TL_ERR_FORMAT, "fit: the stream of %s ended %d rows early (its shards hold fewer rows than "
                                      "their headers say)",
                       tl_shards_dir(tl_stream_shards(s)), n - got);
    /* check_layout made the model's bag fields the stream's */
    if (st == TL_OK && tl_stream_layout(s)->n_bag > 0 && !batch->bag)
        return tl_fail(TL_ERR_ARG, "fit: the model has multi-valued fields; open the stream with TL_STREAM_BAGS");
    return st;
}

tl_status tl_model_fit_stream(tl_model *m, tl_stream *s, const tl_split *valid, const tl_fit_options *opt)
{
    tl_status st = check_layout(m, tl_stream_layout(s));
    if (st != TL_OK) return st;
    if (opt->eval_every > 0) return tl_fail(TL_ERR_ARG, "fit: eval_every is not supported on a stream");
    if (opt->epochs < 1 || opt->epochs > INT_MAX - m->epoch)
        return tl_fail(TL_ERR_ARG, "fit: bad number of epochs %d", opt->epochs);
    return tl_model_fit_source(m, NULL, s, valid, opt);
}
