/* optim.c — optimizers with lazy (row-sparse) updates for embedding tables.
 * A step runs on the worker pool (parallel.h), split so that its results do
 * not depend on the number of threads. */
#include "optim.h"

#include <math.h>
#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
#include <string.h>

#include "ops/ops.h"
#include "parallel.h"
#ifdef __AVX__
#include <immintrin.h>
#endif

struct tl_optim {
    tl_graph *g;
    tl_optim_config cfg;
    float *state[2]; /* SGD: momentum; Adam: m, v; Adagrad: accumulator */
    int nblocks;
    size_t floats;
    int64_t steps;
    float lr;        /* of the step under way: cfg.lr, or the schedule's */
    float last_norm;
    /* per step, per parameter: the floats the step touches, their first
     * position when all are laid end to end (cost[np] = total), and the
     * squared gradient norm */
    size_t *cost;
    double *sumsq;
    int np;
};

tl_optim_config tl_optim_defaults(tl_optim_kind kind)
{
    tl_optim_config c = {0};
    c.kind = kind;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    switch (kind) {
    case TL_OPTIM_SGD: c.lr = 0.01f; break;
    case TL_OPTIM_ADAM: c.lr = 1e-3f; c.eps = 1e-8f; break;
    case TL_OPTIM_ADAMW: c.lr = 1e-3f; c.eps = 1e-8f; c.weight_decay = 0.01f; break;
    case TL_OPTIM_ADAGRAD: c.lr = 0.01f; c.eps = 1e-10f; break;
    }
    return c;
}

static const char *names[] = {"sgd", "adam", "adamw", "adagrad"};

tl_status tl_optim_parse(const char *name, tl_optim_kind *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (tl_optim_kind)i;
            return TL_OK;
        }
    return tl_fail(TL_ERR_ARG, "unknown optimizer '%s' (expected sgd, adam, adamw or adagrad)",
                   name);
}

const char *tl_optim_name(tl_optim_kind kind) { return (unsigned)kind < 4 ? names[kind] : "?"; }

float tl_optim_lr_at(const tl_optim_config *c, int64_t t)
{
    if (c->schedule == TL_SCHEDULE_NONE && c->warmup <= 0) return c->lr;
    if (c->warmup > 0 && t <= c->warmup) return (float)((double)c->lr * (double)t / (double)c->warmup);
    double s = (double)(t - (c->warmup > 0 ? c->warmup : 0)), lr = c->lr;
    switch (c->schedule) {
    case TL_SCHEDULE_STEP:
        return (float)(lr * pow((double)c->gamma, floor(s / (double)c->step_size)));
    case TL_SCHEDULE_COSINE: {
        double x = s < (double)c->total ? s / (double)c->total : 1.0;
        return (float)((double)c->min_lr + (lr - (double)c->min_lr) * 0.5 * (1.0 + cos(M_PI * x)));
    }
    default:
        return c->lr;
    }
}

int tl_optim_config_equal(const tl_optim_config *a, const tl_optim_config *b)
{
    return a->kind == b->kind && a->lr == b->lr && a->momentum == b->momentum &&
           a->nesterov == b->nesterov && a->beta1 == b->beta1 && a->beta2 == b->beta2 &&
           a->eps == b->eps && a->weight_decay == b->weight_decay && a->clip_norm == b->clip_norm &&
           a->initial_accumulator == b->initial_accumulator && a->schedule == b->schedule &&
           a->gamma == b->gamma && a->warmup == b->warmup && a->step_size == b->step_size &&
           a->total == b->total && a->min_lr == b->min_lr;
}

static const char *schedule_names[] = {"none", "step", "cosine"};

const char *tl_schedule_name(tl_schedule_kind k)
{
    return (unsigned)k < 3 ? schedule_names[k] : "?";
}

static int check_schedule(const tl_optim_config *c)
{
    if ((unsigned)c->schedule > TL_SCHEDULE_COSINE) {
        tl_fail(TL_ERR_ARG, "optimizer: unknown schedule %d", (int)c->schedule);
        return 0;
    }
    if (c->warmup < 0) {
        tl_fail(TL_ERR_ARG, "optimizer schedule: warmup must be >= 0 steps, got %lld", (long long)c->warmup);
        return 0;
    }
    if (c->schedule == TL_SCHEDULE_STEP && (c->step_size < 1 || !(c->gamma > 0.0f) || !isfinite(c->gamma))) {
        tl_fail(TL_ERR_ARG, "optimizer schedule 'step': every must be >= 1 step and gamma finite and > 0 "
                            "(got every=%lld gamma=%g)", (long long)c->step_size, (double)c->gamma);
        return 0;
    }
    if (c->schedule == TL_SCHEDULE_COSINE &&
        (c->total < 1 || !(c->min_lr >= 0.0f && c->min_lr <= c->lr))) {
        tl_fail(TL_ERR_ARG, "optimizer schedule 'cosine': steps must be >= 1 and min_lr in [0, lr] "
                            "(got steps=%lld min_lr=%g lr=%g)", (long long)c->total, (double)c->min_lr,
                (double)c->lr);
        return 0;
    }
    return 1;
}

tl_optim *tl_optim_new(tl_graph *g, const tl_optim_config *cfg)
{
    if (!(cfg->lr > 0.0f) || !isfinite(cfg->lr)) {
        tl_fail(TL_ERR_ARG, "optimizer learning rate must be positive and finite, got %g",
                (double)cfg->lr);
        return NULL;
    }
    if (cfg->beta1 < 0.0f || cfg->beta1 >= 1.0f || cfg->beta2 < 0.0f || cfg->beta2 >= 1.0f ||
        cfg->momentum < 0.0f || cfg->weight_decay < 0.0f || cfg->clip_norm < 0.0f) {
        tl_fail(TL_ERR_ARG, "optimizer: betas must be in [0, 1); momentum, weight decay and "
                            "clip norm must be >= 0");
        return NULL;
    }
    if (!check_schedule(cfg)) return NULL;
    size_t n;
    if (!tl_graph_params(g, &n)) {
        tl_fail(TL_ERR_STATE, "optimizer created for a graph that is not planned");
        return NULL;
    }
    tl_optim *o = tl_calloc(1, sizeof *o, "optimizer");
    if (!o) return NULL;
    o->g = g;
    o->cfg = *cfg;
    o->lr = cfg->lr;
    o->floats = n;
    o->nblocks = cfg->kind == TL_OPTIM_ADAM || cfg->kind == TL_OPTIM_ADAMW ? 2 : 1;
    o->np = tl_graph_param_count(g);
    o->cost = tl_malloc(((size_t)o->np + 1) * sizeof *o->cost, "optimizer work list");
    o->sumsq = tl_malloc(((size_t)o->np + 1) * sizeof *o->sumsq, "optimizer norms");
    if (!o->cost || !o->sumsq) {
        tl_optim_free(o);
        return NULL;
    }
    for (int b = 0; b < o->nblocks; b++) {
        o->state[b] = tl_malloc_aligned((n ? n : 1) * sizeof(float), "optimizer state");
        if (!o->state[b]) {
            tl_optim_free(o);
            return NULL;
        }
        float init = cfg->kind == TL_OPTIM_ADAGRAD ? cfg->initial_accumulator : 0.0f;
        if (init == 0.0f)
            memset(o->state[b], 0, (n ? n : 1) * sizeof(float));
        else
            for (size_t i = 0; i < n; i++) o->state[b][i] = init;
    }
    return o;
}

void tl_optim_free(tl_optim *o)
{
    if (!o) return;
    for (int b = 0; b < 2; b++) tl_free_aligned(o->state[b]);
    tl_free(o->cost);
    tl_free(o->sumsq);
    tl_free(o);
}

/* Adam on n floats: m, v moments; w -= lr * (m / bc1) / (sqrt(v / bc2) + eps).
 * The AVX path does the same IEEE operations in the same order as the scalar
 * loop (no fused multiply-add), so results do not depend on which path or
 * how a span is split. */
static void adam_scalar(float *restrict w, float *restrict m, float *restrict v,
                        const float *restrict gr, size_t i0, size_t n, float gscale, float decay,
                        int decoupled, float lr, float b1, float b2, float bc1, float bc2, float eps)
{
    float c1 = 1.0f - b1, c2 = 1.0f - b2, lrdecay = lr * decay;
    for (size_t i = i0; i < n; i++) {
        float gi = gr[i] * gscale;
        if (!decoupled)
            gi += decay * w[i];
        else
            w[i] -= lrdecay * w[i];
        m[i] = b1 * m[i] + c1 * gi;
        v[i] = b2 * v[i] + c2 * gi * gi;
        w[i] -= lr * (m[i] / bc1) / (sqrtf(v[i] / bc2) + eps);
    }
}

/* `stream`: the AVX path stores w non-temporally (see update_span), after
 * a scalar head up to w's first 32-byte boundary. */
static void adam_span(float *restrict w, float *restrict m, float *restrict v,
                      const float *restrict gr, size_t n, float gscale, float decay, int decoupled,
                      float lr, float b1, float b2, float bc1, float bc2, float eps, int stream)
{
    size_t i = 0;
#ifdef __AVX__
    float c1 = 1.0f - b1, c2 = 1.0f - b2;
    if (decay == 0.0f) {
        if (stream) {
            i = (size_t)((32 - ((uintptr_t)w & 31)) & 31) / sizeof(float);
            if (i > n) i = n;
            adam_scalar(w, m, v, gr, 0, i, gscale, decay, decoupled, lr, b1, b2, bc1, bc2, eps);
        }
        __m256 vgs = _mm256_set1_ps(gscale), vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2);
        __m256 vc1 = _mm256_set1_ps(c1), vc2 = _mm256_set1_ps(c2), vlr = _mm256_set1_ps(lr);
        __m256 vbc1 = _mm256_set1_ps(bc1), vbc2 = _mm256_set1_ps(bc2), veps = _mm256_set1_ps(eps);
        for (; i + 8 <= n; i += 8) {
            __m256 g = _mm256_mul_ps(_mm256_loadu_ps(gr + i), vgs);
            __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(vc1, g));
            __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)),
                                      _mm256_mul_ps(_mm256_mul_ps(vc2, g), g));
            __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_div_ps(vi, vbc2)), veps);
            __m256 step = _mm256_div_ps(_mm256_mul_ps(vlr, _mm256_div_ps(mi, vbc1)), den);
            _mm256_storeu_ps(m + i, mi);
            _mm256_storeu_ps(v + i, vi);
            __m256 nw = _mm256_sub_ps(_mm256_loadu_ps(w + i), step);
            if (stream)
                _mm256_stream_ps(w + i, nw);
            else
                _mm256_storeu_ps(w + i, nw);
        }
    }
#else
    (void)stream;
#endif
    adam_scalar(w, m, v, gr, i, n, gscale, decay, decoupled, lr, b1, b2, bc1, bc2, eps);
}

/* Non-temporal stores (MOVNTPS) for what an update split over threads
 * writes: the forward and dX GEMMs of every thread read all of a layer's
 * weights, and the norm pass and the update read the gradients, so their
 * cache lines are shared between the cores when the update writes them, and
 * a plain store then waits for the other core to drop its copy. On the
 * 2-core EPYC VM this runs on, in windows where the two vCPUs sit far apart,
 * that made an update of lines shared with the other core 6x slower than
 * writing them to memory (README "Performance"). The stored values are the
 * same: only where they go differs. */
#ifdef __AVX__
#define STREAM_MIN 64 /* floats: below this (embedding rows) plain stores */

/* gr[0, n) = 0, the 32-byte-aligned middle with streaming stores. */
static void zero_stream(float *gr, size_t n)
{
    size_t h = (size_t)((32 - ((uintptr_t)gr & 31)) & 31) / sizeof(float);
    if (h > n) h = n;
    memset(gr, 0, h * sizeof(float));
    size_t i = h;
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(gr + i, _mm256_setzero_ps());
    memset(gr + i, 0, (n - i) * sizeof(float));
}
#endif

static void update_block(tl_optim *o, float *w, const float *gr, size_t off, size_t len, float gscale,
                         float bc1, float bc2, int stream);

/* Update `len` contiguous floats starting at offset `off`, then clear their
 * gradient (the step's zero_grad, done here: tl_optim_step only resets the
 * touched-row lists after). `stream`: the step is split over threads (see
 * above); the caller fences. */
static void update_span(tl_optim *o, float *w, float *gr, size_t off, size_t len, float gscale,
                        float bc1, float bc2, int stream)
{
#ifdef __AVX__
    stream = stream && len >= STREAM_MIN;
#else
    stream = 0;
#endif
    update_block(o, w, gr, off, len, gscale, bc1, bc2, stream);
#ifdef __AVX__
    if (stream) {
        zero_stream(gr + off, len);
        return;
    }
#endif
    memset(gr + off, 0, len * sizeof(float));
}

/* Update `len` contiguous floats starting at offset `off`. */
static void update_block(tl_optim *o, float *w, const float *gr, size_t off, size_t len, float gscale,
                         float bc1, float bc2, int stream)
{
    tl_optim_config c = o->cfg; /* a copy: the loops below need no reloads */
    c.lr = o->lr;
    float *s0 = o->state[0] + off, *s1 = o->nblocks > 1 ? o->state[1] + off : NULL;
    w += off;
    gr += off;
    switch (c.kind) {
    case TL_OPTIM_SGD:
        for (size_t i = 0; i < len; i++) {
            float gi = gr[i] * gscale + c.weight_decay * w[i];
            if (c.momentum > 0.0f) {
                s0[i] = c.momentum * s0[i] + gi;
                gi = c.nesterov ? gi + c.momentum * s0[i] : s0[i];
            }
            w[i] -= c.lr * gi;
        }
        break;
    case TL_OPTIM_ADAM:
    case TL_OPTIM_ADAMW:
        adam_span(w, s0, s1, gr, len, gscale, c.weight_decay, c.kind == TL_OPTIM_ADAMW, c.lr,
                  c.beta1, c.beta2, bc1, bc2, c.eps, stream);
        break;
    case TL_OPTIM_ADAGRAD:
        for (size_t i = 0; i < len; i++) {
            float gi = gr[i] * gscale + c.weight_decay * w[i];
            s0[i] += gi * gi;
            w[i] -= c.lr * gi / (sqrtf(s0[i]) + c.eps);
        }
        break;
    }
}

/* Sum of squares in double, in 8 interleaved partial sums (a fixed order,
 * so the result does not depend on the machine) that can run in parallel. */
static double span_sumsq(const float *gr, size_t len)
{
    double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    size_t i = 0;
    for (; i + 8 <= len; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)gr[i + l] * (double)gr[i + l];
    for (int l = 0; i < len; i++, l++) acc[l] += (double)gr[i] * (double)gr[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* The step's work, for tl_parallel_for: parameter i's floats (all of a dense
 * one, the touched rows of a sparse one) are positions [cost[i], cost[i+1])
 * of one line, and each thread takes a stretch of it. */
struct step_job {
    tl_optim *o;
    float *w, *gr;
    float gscale, bc1, bc2;
    int stream; /* the update runs in more than one part (update_span) */
};

static void fill_cost(tl_optim *o)
{
    tl_graph *g = o->g;
    size_t pos = 0;
    for (int i = 0; i < o->np; i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        int nrows;
        tl_graph_touched_rows(g, i, &nrows);
        o->cost[i] = pos;
        o->sumsq[i] = 0.0;
        pos += (size_t)(nrows < 0 ? p->rows : nrows) * (size_t)p->cols;
    }
    o->cost[o->np] = pos;
}

/* Parameter i's squared norm, whole, on the thread whose stretch holds the
 * parameter's first position, so each sum is the same whatever the split
 * (parameters with nothing to apply keep the 0 fill_cost gave them). */
static void norm_part(void *ctx, size_t lo, size_t hi, int part)
{
    const struct step_job *j = ctx;
    tl_optim *o = j->o;
    (void)part;
    for (int i = 0; i < o->np; i++) {
        if (o->cost[i] < lo || o->cost[i] >= hi) continue;
        const tl_param_info *p = tl_graph_param(o->g, i);
        int nrows;
        const int32_t *rows = tl_graph_touched_rows(o->g, i, &nrows);
        double s = 0.0;
        if (nrows < 0)
            s = span_sumsq(j->gr + p->offset, (size_t)p->rows * (size_t)p->cols);
        else
            for (int r = 0; r < nrows; r++)
                s += span_sumsq(j->gr + p->offset + (size_t)rows[r] * (size_t)p->cols, (size_t)p->cols);
        o->sumsq[i] = s;
    }
}

/* The update of positions [lo, hi): element-wise, so any split gives the
 * same bits. A sparse parameter's row goes to the stretch holding its first
 * position. */
static void update_part(void *ctx, size_t lo, size_t hi, int part)
{
    const struct step_job *j = ctx;
    tl_optim *o = j->o;
    (void)part;
    for (int i = 0; i < o->np; i++) {
        size_t c0 = o->cost[i], c1 = o->cost[i + 1];
        if (c1 <= lo || c0 >= hi) continue;
        const tl_param_info *p = tl_graph_param(o->g, i);
        size_t a = lo > c0 ? lo - c0 : 0, b = (hi < c1 ? hi : c1) - c0;
        int nrows;
        const int32_t *rows = tl_graph_touched_rows(o->g, i, &nrows);
        if (nrows < 0) {
            update_span(o, j->w, j->gr, p->offset + a, b - a, j->gscale, j->bc1, j->bc2, j->stream);
            continue;
        }
        size_t cols = (size_t)p->cols;
        for (size_t r = (a + cols - 1) / cols; r * cols < b; r++)
            update_span(o, j->w, j->gr, p->offset + (size_t)rows[r] * cols, cols, j->gscale, j->bc1,
                        j->bc2, j->stream);
    }
#ifdef __AVX__
    if (j->stream) _mm_sfence(); /* the streamed stores land before the job counts as done */
#endif
}

tl_status tl_optim_step(tl_optim *o)
{
    tl_graph *g = o->g;
    struct step_job j = {o, tl_graph_params(g, NULL), tl_graph_grads(g, NULL), 1.0f, 0.0f, 0.0f, 0};
    fill_cost(o);
    size_t total = o->cost[o->np];

    /* Global norm over exactly the values this step will apply. */
    tl_parallel_for(total, TL_PARALLEL_GRAIN, norm_part, &j);
    double sumsq = 0.0;
    for (int i = 0; i < o->np; i++) {
        if (!isfinite(o->sumsq[i])) {
            const tl_param_info *p = tl_graph_param(g, i);
            tl_graph_zero_grad(g);
            return tl_fail(TL_ERR_NUMERIC,
                           "non-finite gradient in parameter '%s' [%d x %d] at step %lld; "
                           "parameters left at the last good step",
                           p->name, p->rows, p->cols, (long long)o->steps + 1);
        }
        sumsq += o->sumsq[i];
    }
    o->last_norm = (float)sqrt(sumsq);
    if (o->cfg.clip_norm > 0.0f && o->last_norm > o->cfg.clip_norm)
        j.gscale = o->cfg.clip_norm / o->last_norm;

    o->steps++;
    o->lr = tl_optim_lr_at(&o->cfg, o->steps);
    /* In double: in float, 1 - beta2^t loses ~1e-5 relative to cancellation at small t. */
    j.bc1 = (float)(1.0 - pow((double)o->cfg.beta1, (double)o->steps));
    j.bc2 = (float)(1.0 - pow((double)o->cfg.beta2, (double)o->steps));
    /* w, gradient and one or two state blocks per float */
    j.stream = tl_parallel_parts(total, TL_PARALLEL_GRAIN / 4) > 1;
    tl_parallel_for(total, TL_PARALLEL_GRAIN / 4, update_part, &j);
    tl__graph_reset_touched(g); /* every gradient the update read it also cleared */
    return TL_OK;
}

float tl_optim_last_grad_norm(const tl_optim *o) { return o->last_norm; }
const tl_optim_config *tl_optim_get_config(const tl_optim *o) { return &o->cfg; }
void tl_optim_set_lr(tl_optim *o, float lr) { o->cfg.lr = o->lr = lr; }
float tl_optim_current_lr(const tl_optim *o) { return o->lr; }
int64_t tl_optim_steps(const tl_optim *o) { return o->steps; }
void tl_optim_set_steps(tl_optim *o, int64_t steps) { o->steps = steps; }
int tl_optim_state_blocks(const tl_optim *o) { return o->nblocks; }

float *tl_optim_state(tl_optim *o, int block, size_t *floats)
{
    if (floats) *floats = o->floats;
    return block >= 0 && block < o->nblocks ? o->state[block] : NULL;
}
