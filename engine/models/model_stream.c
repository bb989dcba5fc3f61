/* models/model_stream.c — part of module model (model.h): training on a
 * stream of sharded rows (data/shards.h) for data larger than memory. The
 * loop, the step (data-parallel too) and the epoch's bookkeeping are
 * model_fit.c's (tl_model_fit_source); this file checks that the stream
 * fits the model, reads its batches, and keeps the place of a fit stopped
 * mid-epoch (the model's stream mark): a stream's row order is a function of
 * (seed, epoch, grain) alone, so a resume opens the epoch again and reads
 * past the rows already trained on.
 */
#include "model.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
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

static struct tl_stream_mark mark_of(const tl_model *m, const tl_stream *s, int grains, int batch,
                                     uint64_t consumed)
{
    const tl_shards *sh = tl_stream_shards(s);
    int split = tl_stream_split(s);
    struct tl_stream_mark k = {1,
                               m->epoch,
                               grains,
                               batch,
                               tl_stream_shuffled(s),
                               tl_shards_count(sh, split),
                               tl_shards_fingerprint(sh),
                               tl_shards_rows(sh, split),
                               tl_stream_seed(s),
                               (uint64_t)tl_stream_buffer(s),
                               consumed};
    return k;
}

void tl_model_stream_mark(tl_model *m, const tl_stream *s, int grains, int batch, uint64_t consumed)
{
    if (m->batches_in_epoch == 0) memset(&m->smark, 0, sizeof m->smark);
    else m->smark = mark_of(m, s, grains, batch, consumed);
}

tl_status tl_model_stream_resume_check(tl_model *m, const tl_stream *s, int grains, int batch, uint64_t consumed)
{
    if (m->batches_in_epoch == 0) return TL_OK;
    if (!m->smark.set) { /* a place in an in-memory split's epoch: the stream's starts at its beginning */
        m->batches_in_epoch = 0;
        return TL_OK;
    }
    const struct tl_stream_mark *a = &m->smark;
    struct tl_stream_mark b = mark_of(m, s, grains, batch, consumed);
    char what[160] = "";
    if (a->shards != b.shards || a->files != b.files || a->rows != b.rows)
        snprintf(what, sizeof what,
                 "other shards (%d train files, %" PRIu64 " rows, fingerprint %016" PRIx64
                 "; the stopped fit's %d, %" PRIu64 ", %016" PRIx64 ")",
                 b.files, b.rows, b.shards, a->files, a->rows, a->shards);
    else if (a->seed != b.seed)
        snprintf(what, sizeof what, "seed %" PRIu64 " (the stopped fit's %" PRIu64 ")", b.seed, a->seed);
    else if (a->shuffle != b.shuffle)
        snprintf(what, sizeof what, "shuffle %s (the stopped fit's %s)", b.shuffle ? "on" : "off",
                 a->shuffle ? "on" : "off");
    else if (a->buffer != b.buffer)
        snprintf(what, sizeof what, "buffer %" PRIu64 " rows (the stopped fit's %" PRIu64 ")", b.buffer, a->buffer);
    else if (a->batch != b.batch)
        snprintf(what, sizeof what, "batch %d (the stopped fit's %d)", b.batch, a->batch);
    else if (a->grains != b.grains)
        snprintf(what, sizeof what, "grains %d (the stopped fit's %d)", b.grains, a->grains);
    else if (a->epoch != b.epoch || a->consumed != b.consumed)
        snprintf(what, sizeof what, "epoch %d after %" PRIu64 " rows (the stopped fit's epoch %d after %" PRIu64 ")",
                 b.epoch + 1, b.consumed, a->epoch + 1, a->consumed);
    if (!what[0]) return TL_OK;
    return tl_fail(TL_ERR_ARG,
                   "fit: the model stopped in epoch %d after batch %zu of a stream fit, and cannot resume it "
                   "on %s: %s. Fit on the stream it stopped on (the same shards, seed, buffer, batch and "
                   "grains) to finish that epoch",
                   m->epoch + 1, m->batches_in_epoch, tl_shards_dir(tl_stream_shards(s)), what);
}

tl_status tl_model_stream_skip(tl_stream *s, uint64_t rows)
{
    tl_split batch;
    while (rows > 0) {
        int n = rows < 256 ? (int)rows : 256;
        tl_status st = tl_model_stream_batch(s, n, &batch);
        if (st != TL_OK) return st;
        rows -= (uint64_t)n;
    }
    return TL_OK;
}
