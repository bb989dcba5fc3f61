/* optim.h — SGD (momentum), Adam, AdamW and Adagrad over a planned graph's
 * parameter block, with gradient clipping by global norm.
 *
 * State (momentum / first and second moments) lives in blocks with the same
 * layout as the parameters. tl_optim_step applies one update and then clears
 * the gradients (tl_graph_zero_grad).
 *
 * Embedding tables (sparse parameters) are updated "lazily": only the rows
 * used by the batch are touched — their moments decay and their weight decay
 * applies only on steps where the row appears, while Adam's bias correction
 * uses the global step count. This is TensorFlow's LazyAdam / PyTorch's
 * SparseAdam behaviour, and differs from dense Adam, where every row's moments
 * decay (and keep moving the row) on every step. A step is O(rows used), not
 * O(vocabulary).
 *
 * Before updating, the step checks every gradient it would apply: a NaN or Inf
 * returns TL_ERR_NUMERIC naming the parameter and leaves parameters and state
 * untouched (the last good step is kept).
 */
#ifndef TL_OPTIM_H
#define TL_OPTIM_H

#include "graph.h"

typedef enum { TL_OPTIM_SGD, TL_OPTIM_ADAM, TL_OPTIM_ADAMW, TL_OPTIM_ADAGRAD } tl_optim_kind;

/* Learning-rate schedules. lr_t for the 1-based step t, with W = warmup:
 *   linear warm-up (any schedule, W > 0): lr_t = lr * t / W for t <= W
 *   TL_SCHEDULE_NONE:   lr (after the warm-up)
 *   TL_SCHEDULE_STEP:   lr * gamma^floor((t - W) / step_size)
 *   TL_SCHEDULE_COSINE: min_lr + (lr - min_lr) (1 + cos(pi min(t - W, total) / total)) / 2
 * computed in double and rounded to float once. Without a schedule and
 * warm-up every step uses lr itself (the same bits as before schedules). The
 * step count is the optimizer's (checkpointed), so a resumed fit continues
 * the schedule exactly. */
typedef enum { TL_SCHEDULE_NONE, TL_SCHEDULE_STEP, TL_SCHEDULE_COSINE } tl_schedule_kind;

typedef struct {
    tl_optim_kind kind;
    float lr;
    float momentum;     /* SGD */
    int nesterov;       /* SGD */
    float beta1, beta2; /* Adam, AdamW */
    float eps;          /* Adam, AdamW, Adagrad */
    float weight_decay; /* L2 added to the gradient (SGD, Adam, Adagrad); decoupled in AdamW */
    float clip_norm;    /* > 0: scale gradients so their global L2 norm is at most this */
    float initial_accumulator; /* Adagrad */
    /* schedule (fields added later; zero = none) */
    tl_schedule_kind schedule;
    float gamma;        /* step: factor every step_size steps */
    int64_t warmup;     /* linear warm-up steps, 0 = none */
    int64_t step_size;  /* step */
    int64_t total;      /* cosine: decay steps after the warm-up */
    float min_lr;       /* cosine: the rate it decays to */
} tl_optim_config;

typedef struct tl_optim tl_optim;

/* Defaults: SGD lr 0.01; Adam/AdamW lr 1e-3, betas 0.9/0.999, eps 1e-8
 * (AdamW weight_decay 0.01); Adagrad lr 0.01, eps 1e-10. */
tl_optim_config tl_optim_defaults(tl_optim_kind kind);
/* Parse "sgd", "adam", "adamw", "adagrad". */
tl_status tl_optim_parse(const char *name, tl_optim_kind *out);
const char *tl_optim_name(tl_optim_kind kind);

/* The learning rate of 1-based step t under c's schedule. */
float tl_optim_lr_at(const tl_optim_config *c, int64_t t);
/* 1 when a and b configure the same optimizer (field by field). */
int tl_optim_config_equal(const tl_optim_config *a, const tl_optim_config *b);
const char *tl_schedule_name(tl_schedule_kind k);

/* An optimizer for the planned graph g (not owned; must outlive it). */
tl_optim *tl_optim_new(tl_graph *g, const tl_optim_config *cfg);
void tl_optim_free(tl_optim *o);
/* One update from the current gradients, then zero them. */
tl_status tl_optim_step(tl_optim *o);
/* Global gradient norm measured by the last step (before clipping). */
float tl_optim_last_grad_norm(const tl_optim *o);
const tl_optim_config *tl_optim_get_config(const tl_optim *o);
void tl_optim_set_lr(tl_optim *o, float lr);
/* The learning rate the last step used (cfg.lr before the first). */
float tl_optim_current_lr(const tl_optim *o);
/* Steps taken so far. */
int64_t tl_optim_steps(const tl_optim *o);
/* State for checkpoints: `nblocks` blocks of `*floats` floats each, plus the
 * step counter. tl_optim_set_steps restores the counter. */
float *tl_optim_state(tl_optim *o, int block, size_t *floats);
int tl_optim_state_blocks(const tl_optim *o);
void tl_optim_set_steps(tl_optim *o, int64_t steps);

#endif
