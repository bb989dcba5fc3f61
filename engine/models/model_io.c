/* models/model_io.c — the model's own checkpoint sections (models/model_io.h):
 * optimizer, counters and RNGs, the strategies' sections, history and
 * calibrators. Each has a write and a read; the fields both share are listed
 * once (tl_codec_*, codec.h). A read returns TL_ERR_FORMAT with r->bad saying
 * why when the section is corrupted (io.c names the section), or another
 * status with its own message. */
#include "model_io.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "model_impl.h"

/* The attached strategy that owns section `tag` writes or reads it (TL_OK
 * and nothing written when none does). */
static void hook_save(tl_model *m, uint32_t tag, tl_codec *c)
{
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->tag == tag && m->hooks[i]->save) m->hooks[i]->save(m->hook_state[i], &m->view, c);
}

static tl_status hook_load(tl_model *m, uint32_t tag, tl_codec *c)
{
    for (int i = 0; i < m->n_hooks; i++)
        if (m->hooks[i]->tag == tag && m->hooks[i]->load) return m->hooks[i]->load(m->hook_state[i], &m->view, c);
    return TL_OK;
}

static tl_status corrupted(tl_rbuf *r, const char *why)
{
    if (!r->bad) r->bad = why;
    return TL_ERR_FORMAT;
}




/* OPTM: the optimizer's configuration, its step count and state blocks, then
 * (added later, after the blocks) the learning-rate schedule. */
static void x_optim_head(tl_codec *c, tl_optim_config *oc)
{
    TL_CODEC_ENUM(c, oc->kind);
    tl_codec_f32(c, &oc->lr);
    tl_codec_f32(c, &oc->momentum);
    tl_codec_int(c, &oc->nesterov);
    tl_codec_f32(c, &oc->beta1);
    tl_codec_f32(c, &oc->beta2);
    tl_codec_f32(c, &oc->eps);
    tl_codec_f32(c, &oc->weight_decay);
    tl_codec_f32(c, &oc->clip_norm);
    tl_codec_f32(c, &oc->initial_accumulator);
}

static void x_schedule(tl_codec *c, tl_optim_config *oc)
{
    TL_CODEC_ENUM(c, oc->schedule);
    tl_codec_f32(c, &oc->gamma);
    tl_codec_i64(c, &oc->warmup);
    tl_codec_i64(c, &oc->step_size);
    tl_codec_i64(c, &oc->total);
    tl_codec_f32(c, &oc->min_lr);
}

void tl_model_io_optm_write(tl_codec *c, tl_model *m)
{
    tl_put_u32(c->w, m->opt ? 1 : 0);
    if (!m->opt) return;
    tl_optim_config oc = *tl_optim_get_config(m->opt);
    x_optim_head(c, &oc);
    tl_put_i64(c->w, tl_optim_steps(m->opt));
    int nb = tl_optim_state_blocks(m->opt);
    size_t floats = 0;
    tl_optim_state(m->opt, 0, &floats);
    tl_put_u32(c->w, (uint32_t)nb);
    tl_put_u64(c->w, floats);
    for (int i = 0; i < nb; i++) tl_put_f32s(c->w, tl_optim_state(m->opt, i, NULL), floats);
    x_schedule(c, &oc);
}

static void check_schedule(tl_rbuf *r, const tl_optim_config *oc)
{
    tl_codec_want_int(r, "schedule", (long long)oc->schedule, TL_SCHEDULE_NONE, TL_SCHEDULE_COSINE);
    tl_codec_want_int(r, "warmup", oc->warmup, 0, TL_CODEC_MAX_STEPS);
    if (oc->schedule == TL_SCHEDULE_STEP) {
        tl_codec_want_int(r, "step_size", oc->step_size, 1, TL_CODEC_MAX_STEPS);
        tl_codec_want_real(r, "gamma", oc->gamma, 1e-30, 1e6, 0);
    }
    if (oc->schedule == TL_SCHEDULE_COSINE) {
        tl_codec_want_int(r, "total", oc->total, 1, TL_CODEC_MAX_STEPS);
        tl_codec_want_real(r, "min_lr", oc->min_lr, 0.0, oc->lr, 0);
    }
}

static void check_optim_fields(tl_rbuf *r, const tl_optim_config *oc, int64_t steps)
{
    tl_codec_want_int(r, "kind", (long long)oc->kind, TL_OPTIM_SGD, TL_OPTIM_ADAGRAD);
    tl_codec_want_real(r, "lr", oc->lr, 1e-30, 1e30, 0);
    tl_codec_want_real(r, "momentum", oc->momentum, 0.0, 1.0, 1);
    tl_codec_want_int(r, "nesterov", oc->nesterov, 0, 1);
    tl_codec_want_real(r, "beta1", oc->beta1, 0.0, 1.0, 1);
    tl_codec_want_real(r, "beta2", oc->beta2, 0.0, 1.0, 1);
    tl_codec_want_real(r, "eps", oc->eps, 0.0, 1e30, 0);
    tl_codec_want_real(r, "weight_decay", oc->weight_decay, 0.0, 1e30, 0);
    tl_codec_want_real(r, "clip_norm", oc->clip_norm, 0.0, 1e30, 0);
    tl_codec_want_real(r, "initial_accumulator", oc->initial_accumulator, 0.0, 1e30, 0);
    tl_codec_want_int(r, "steps", steps, 0, TL_CODEC_MAX_STEPS);
}

tl_status tl_model_io_optm_read(tl_codec *c, tl_model *m, const char *path)
{
    tl_rbuf *r = c->r;
    if (!tl_get_u32(r)) return r->bad ? TL_ERR_FORMAT : TL_OK;
    tl_optim_config oc;
    memset(&oc, 0, sizeof oc);
    x_optim_head(c, &oc);
    int64_t steps = tl_get_i64(r);
    uint32_t nb = tl_get_u32(r);
    uint64_t floats = tl_get_u64(r);
    /* The schedule follows the state blocks (files without it: none). */
    size_t sched_at = r->pos + (size_t)nb * (size_t)(floats < SIZE_MAX / 8 ? floats : 0) * 4;
    if (!r->bad && nb <= 2 && floats < SIZE_MAX / 8 && sched_at <= r->n && r->n - sched_at >= 36) {
        tl_rbuf t = *r;
        t.pos = sched_at;
        tl_codec tc = {NULL, &t};
        x_schedule(&tc, &oc);
        check_schedule(r, &oc);
    }
    check_optim_fields(r, &oc, steps);
    if (r->bad) return TL_ERR_FORMAT;
    tl_optim *o = tl_optim_new(m->g, &oc);
    if (!o) {
        tl_status s = strstr(tl_errmsg(), "out of memory") ? TL_ERR_NOMEM : TL_ERR_FORMAT;
        return tl_fail_context(s, "%s: optimizer", path);
    }
    size_t have_floats = 0;
    tl_optim_state(o, 0, &have_floats);
    if (nb != (uint32_t)tl_optim_state_blocks(o) || floats != (uint64_t)have_floats) {
        tl_optim_free(o);
        return corrupted(r, "does not match the optimizer's state layout");
    }
    for (uint32_t b = 0; b < nb; b++) tl_get_f32s(r, tl_optim_state(o, (int)b, NULL), have_floats);
    if (r->bad) {
        tl_optim_free(o);
        return TL_ERR_FORMAT;
    }
    tl_optim_set_steps(o, steps);
    tl_optim_free(m->opt);
    m->opt = o;
    return TL_OK;
}

/* TRNS: step and epoch counters, the place in the epoch, and the RNGs. */
static void x_trns(tl_codec *c, int64_t *step, int *epoch, uint64_t *bie, tl_rng *drop, tl_rng *prng)
{
    tl_codec_i64(c, step);
    tl_codec_int(c, epoch);
    tl_codec_u64(c, bie);
    tl_codec_rng(c, drop);
    tl_codec_rng(c, prng);
}

/* Added later, at TRNS's end and only when a stream fit stopped mid-epoch
 * (struct tl_stream_mark): a flag (1) then the mark's fields. */
static void x_smark(tl_codec *c, struct tl_stream_mark *k)
{
    tl_codec_int(c, &k->epoch);
    tl_codec_int(c, &k->grains);
    tl_codec_int(c, &k->batch);
    tl_codec_int(c, &k->shuffle);
    tl_codec_int(c, &k->files);
    tl_codec_u64(c, &k->shards);
    tl_codec_u64(c, &k->rows);
    tl_codec_u64(c, &k->seed);
    tl_codec_u64(c, &k->buffer);
    tl_codec_u64(c, &k->consumed);
}

/* Added later, after the stream mark's flag (0 when there is no mark) and
 * the mark, only while a run is open (struct tl_es_record): early stopping's
 * record, then, when it has them, the best weights (the parameters' count
 * of floats). */
static void x_es(tl_codec *c, struct tl_es_record *e)
{
    tl_codec_int(c, &e->open);
    tl_codec_int(c, &e->last_epoch);
    tl_codec_int(c, &e->bad_epochs);
    tl_codec_int(c, &e->have_best);
    tl_codec_f64(c, &e->best);
    tl_codec_int(c, &e->patience);
    tl_codec_int(c, &e->monitor_task);
    tl_codec_u64(c, &e->valid_rows);
}

void tl_model_io_trns_write(tl_codec *c, tl_model *m)
{
    uint64_t bie = m->batches_in_epoch;
    x_trns(c, &m->step, &m->epoch, &bie, tl_graph_rng(m->g), &m->rng);
    uint32_t set = m->smark.set && m->batches_in_epoch > 0;
    if (!set && !m->es.open) return; /* neither a place in a stream nor an open run: as before */
    tl_codec_u32(c, &set);
    if (set) x_smark(c, &m->smark);
    if (!m->es.open) return;
    size_t pf = 0;
    tl_graph_params(m->g, &pf);
    x_es(c, &m->es);
    if (m->es.have_best) tl_codec_f32s(c, m->best, pf);
}

tl_status tl_model_io_trns_read(tl_codec *c, tl_model *m, const char *path)
{
    tl_rbuf *r = c->r;
    int64_t step = 0;
    int epoch = 0;
    uint64_t bie = 0;
    tl_rng drop, prng;
    x_trns(c, &step, &epoch, &bie, &drop, &prng);
    tl_codec_want_int(r, "step", step, 0, TL_CODEC_MAX_STEPS);
    tl_codec_want_int(r, "epoch", epoch, 0, TL_CODEC_MAX_EPOCH);
    tl_codec_want_int(r, "batches_in_epoch", (long long)(bie > (uint64_t)INT64_MAX ? INT64_MAX : bie), 0,
             UINT32_MAX);
    struct tl_stream_mark k;
    memset(&k, 0, sizeof k);
    if (!r->bad && r->n - r->pos >= 4 && (k.set = (int)tl_get_u32(r)) != 0) { /* files without it: none */
        x_smark(c, &k);
        tl_codec_want_int(r, "stream mark", k.set, 1, 1);
        tl_codec_want_int(r, "stream epoch", k.epoch, epoch, epoch);
        tl_codec_want_int(r, "stream grains", k.grains, 1, 1 << 20);
        tl_codec_want_int(r, "stream batch", k.batch, 1, 1 << 20);
        tl_codec_want_int(r, "stream shuffle", k.shuffle, 0, 1);
    }
    /* files without the record: an empty one (the next fit starts a run) */
    struct tl_es_record es = {0, 0, 0, 0, -INFINITY, 0, -1, 0};
    size_t pf = 0;
    tl_graph_params(m->g, &pf);
    if (!r->bad && r->n - r->pos >= 4) {
        x_es(c, &es);
        tl_codec_want_int(r, "early stopping record", es.open, 1, 1);
        tl_codec_want_int(r, "early stopping's last epoch", es.last_epoch, epoch, TL_CODEC_MAX_EPOCH);
        tl_codec_want_int(r, "early stopping's bad epochs", es.bad_epochs, 0, es.last_epoch);
        tl_codec_want_int(r, "early stopping's best weights", es.have_best, 0, 1);
        tl_codec_want_int(r, "early stopping's patience", es.patience, 0, TL_CODEC_MAX_EPOCH);
        tl_codec_want_int(r, "early stopping's monitored task", es.monitor_task, -1, m->cfg.n_tasks - 1);
        if (!r->bad && !(isfinite(es.best) || (isinf(es.best) && es.best < 0)))
            return corrupted(r, "has a best validation monitor that is NaN or +inf");
        if (!r->bad && es.have_best && (r->n - r->pos) / 4 < pf) return corrupted(r, "ends early");
        if (!r->bad && es.have_best && !m->best &&
            !(m->best = tl_malloc_aligned(pf * sizeof(float), "best parameters")))
            return tl_fail_context(TL_ERR_NOMEM, "%s", path);
        if (!r->bad && es.have_best) tl_get_f32s(r, m->best, pf);
    }
    if (r->bad) return TL_ERR_FORMAT;
    m->es = es;
    m->smark = k;
    m->step = step;
    m->epoch = epoch;
    m->batches_in_epoch = (size_t)bie;
    *tl_graph_rng(m->g) = drop;
    m->rng = prng;
    return TL_OK;
}

/* A section's task count, which must be CONF's. */
static int x_task_count(tl_codec *c, int K)
{
    uint32_t k = (uint32_t)K;
    tl_codec_u32(c, &k);
    return tl_codec_refuse(c, k != (uint32_t)K, "has a task count that differs from CONF");
}

/* WGHT: the weighting strategy's section, which it writes and reads itself
 * (tl_model_section_save). */
void tl_model_io_wght_write(tl_codec *c, tl_model *m) { hook_save(m, TL_CODEC_TAG('W', 'G', 'H', 'T'), c); }

tl_status tl_model_io_wght_read(tl_codec *c, tl_model *m, const char *path)
{
    (void)path;
    return hook_load(m, TL_CODEC_TAG('W', 'G', 'H', 'T'), c);
}

/* HSTP and HEPO: the training history, a record count, the task count, then
 * the records. */
static void x_step_record(tl_codec *c, tl_step_record *h, int K)
{
    tl_codec_i64(c, &h->step);
    tl_codec_int(c, &h->epoch);
    tl_codec_f32s(c, h->loss, (size_t)K);
    tl_codec_f32s(c, h->weight, (size_t)K);
}

static void x_epoch_record(tl_codec *c, tl_epoch_record *h, int K)
{
    tl_codec_int(c, &h->epoch);
    tl_codec_i64(c, &h->step);
    for (int j = 0; j < K; j++) tl_codec_f64(c, &h->train_loss[j]);
    for (int j = 0; j < K; j++) tl_codec_f64(c, &h->valid_metric[j]);
    for (int j = 0; j < K; j++) tl_codec_f64(c, &h->valid_logloss[j]);
    tl_codec_f64(c, &h->monitor);
}

/* The record count n and the task count; reading checks n against the bytes
 * left for records of `rec` bytes. 1 when the section is bad. */
static int x_history_head(tl_codec *c, uint64_t *n, int K, size_t rec)
{
    tl_codec_u64(c, n);
    if (x_task_count(c, K)) return 1;
    if (!tl_codec_reading(c)) return 0;
    return tl_codec_refuse(c, *n > (c->r->n - c->r->pos) / rec, "ends early");
}

void tl_model_io_hstp_write(tl_codec *c, tl_model *m)
{
    uint64_t n = m->n_steps_hist;
    x_history_head(c, &n, m->cfg.n_tasks, 0);
    for (size_t i = 0; i < m->n_steps_hist; i++) x_step_record(c, &m->steps_hist[i], m->cfg.n_tasks);
}

tl_status tl_model_io_hstp_read(tl_codec *c, tl_model *m, const char *path)
{
    const int K = m->cfg.n_tasks;
    uint64_t n;
    if (x_history_head(c, &n, K, 12 + 8 * (size_t)K)) return TL_ERR_FORMAT;
    if (n == 0) return TL_OK;
    tl_step_record *h = tl_calloc((size_t)n, sizeof *h, "step history");
    if (!h) return tl_fail_context(TL_ERR_NOMEM, "%s", path);
    for (size_t i = 0; i < n; i++) x_step_record(c, &h[i], K);
    m->steps_hist = h;
    m->n_steps_hist = m->cap_steps_hist = (size_t)n;
    return TL_OK;
}

void tl_model_io_hepo_write(tl_codec *c, tl_model *m)
{
    uint64_t n = m->n_epochs_hist;
    x_history_head(c, &n, m->cfg.n_tasks, 0);
    for (size_t i = 0; i < m->n_epochs_hist; i++) x_epoch_record(c, &m->epochs_hist[i], m->cfg.n_tasks);
}

tl_status tl_model_io_hepo_read(tl_codec *c, tl_model *m, const char *path)
{
    const int K = m->cfg.n_tasks;
    uint64_t n;
    if (x_history_head(c, &n, K, 20 + 24 * (size_t)K)) return TL_ERR_FORMAT;
    if (n == 0) return TL_OK;
    tl_epoch_record *h = tl_calloc((size_t)n, sizeof *h, "epoch history");
    if (!h) return tl_fail_context(TL_ERR_NOMEM, "%s", path);
    for (size_t i = 0; i < n; i++) x_epoch_record(c, &h[i], K);
    m->epochs_hist = h;
    m->n_epochs_hist = m->cap_epochs_hist = (size_t)n;
    return TL_OK;
}

/* CALB: per task a float count, then the calibrator's serialised floats
 * (0 = none); first the output calibrators (tl.calibrate), then the
 * CrossDistil teachers' fitted calibrators; then (added later) the steps at
 * which they were fitted (staleness). */
void tl_model_io_calb_write(tl_codec *c, tl_model *m)
{
    const int K = m->cfg.n_tasks;
    for (int k = 0; k < 2 * K; k++) {
        const tl_calibrator *cal = k < K    ? tl_model_calibrator(m, k)
                                 : m->distill ? tl_distill_calibrator(m->distill, k - K)
                                              : NULL;
        size_t len = cal ? tl_calibrator_serial_len(cal) : 0;
        float *tmp = len ? tl_malloc(len * sizeof(float), "calibrator") : NULL;
        if (len && (!tmp || tl_calibrator_serialize(cal, tmp, len) != TL_OK)) {
            tl_free(tmp);
            c->w->nomem = 1;
            return;
        }
        tl_put_u32(c->w, (uint32_t)len);
        tl_put_f32s(c->w, tmp, len);
        tl_free(tmp);
    }
    for (int k = 0; k < K; k++) tl_put_i64(c->w, m->out_cal_step[k]);
    tl_put_i64(c->w, m->distill_cal_step);
}

tl_status tl_model_io_calb_read(tl_codec *c, tl_model *m, const char *path)
{
    const int K = m->cfg.n_tasks;
    tl_rbuf *r = c->r;
    for (int k = 0; k < 2 * K; k++) {
        uint32_t len = tl_get_u32(r);
        if (r->bad) return TL_ERR_FORMAT;
        if (len == 0) continue;
        if (len > (r->n - r->pos) / 4) return corrupted(r, "ends early");
        float *v = tl_malloc((size_t)len * sizeof(float), "calibrator");
        if (!v) return tl_fail_context(TL_ERR_NOMEM, "%s", path);
        tl_get_f32s(r, v, len);
        tl_calibrator *cal = NULL;
        tl_status st = tl_calibrator_deserialize(v, len, &cal);
        tl_free(v);
        if (st != TL_OK) return tl_fail_context(st, "%s: calibrator of task %d", path, k % K + 1);
        if (k < K) {
            tl_model_set_calibrator(m, k, cal);
        } else {
            if (m->distill) tl_distill_set_calibrator(m->distill, k - K, cal);
            else tl_calibrator_free(cal); /* a teacher calibrator without CrossDistil: unused */
        }
    }
    /* Files without the fitting steps: the calibrators count as fresh. */
    m->distill_cal_step = m->step;
    if (r->n - r->pos >= 8 * ((size_t)K + 1)) {
        for (int k = 0; k < K; k++) {
            m->out_cal_step[k] = tl_get_i64(r);
            tl_codec_want_int(r, "calibrator step", m->out_cal_step[k], 0, m->step);
        }
        m->distill_cal_step = tl_get_i64(r);
        tl_codec_want_int(r, "teacher calibrator step", m->distill_cal_step, 0, m->step);
    }
    return r->bad ? TL_ERR_FORMAT : TL_OK;
}

