/* model.h — a multi-task model: feature input, backbone, per-task towers and
 * losses built into one graph; training (fit), prediction and evaluation.
 *
 * The configuration (model_config.h, with its defaults and checks) is plain
 * data (no pointers), so it can be printed, copied and stored in a checkpoint
 * as it is. Backbones are graph builders in models/backbones.c; the
 * strategies (loss weighting, DML, CrossDistil, task gradients) attach
 * through hooks.h. The functions declared here are implemented by model.c,
 * models/model_eval.c and models/model_fit.c.
 *
 * Input layout of a sample: n_cat categorical ids (one embedding table per
 * field, all of width emb_dim, stored as one parameter with per-field row
 * offsets) concatenated with n_num numeric features.
 */
#ifndef TL_MODEL_H
#define TL_MODEL_H

#include "data.h"
#include "graph.h"
#include "metrics.h"
#include "model_config.h"
#include "optim.h"

typedef struct tl_model tl_model;

/* Build the model's graph from a configuration (copied). Fails with a message
 * naming the bad field (unknown task count, ESMM without 2 binary tasks, ...). */
tl_status tl_model_new(const tl_model_config *cfg, tl_model **out);
void tl_model_free(tl_model *m);
const tl_model_config *tl_model_config_get(const tl_model *m);
tl_graph *tl_model_graph(tl_model *m);
/* Pearson correlation of two tasks' labels on a split (CrossDistil's
 * order="auto" uses its sign). NaN when a label is constant. */
double tl_split_label_correlation(const tl_split *s, int n_tasks, int a, int b);
/* The order that order="auto" takes for tasks a, b on a train split: 2
 * (negative) when their labels correlate negatively, else 1 (positive). */
int tl_distill_auto_order(const tl_split *train, int n_tasks, int a, int b);
/* CrossDistil pair p's order as the model uses it: 1 positive, 2 negative,
 * 0 while order is auto and unresolved (tl_model_fit resolves it at its start
 * with tl_distill_auto_order on its train split, once: later and resumed fits
 * and checkpoints keep it); -1 without CrossDistil or for a bad index. */
int tl_model_distill_order(const tl_model *m, int pair);
/* Teacher scores (CrossDistil) for every row of s: out is s->n x n_tasks,
 * NaN for tasks without a teacher; `calibrated` maps them through the
 * task's calibrator to probabilities (before any error correction, which
 * needs the label). */
tl_status tl_model_predict_teachers(tl_model *m, const tl_split *s, int calibrated, float *out);

/* Bytes a model of configuration c takes once trained: parameters,
 * gradients, the optimizer's state (Adam's two moments), the copy of the
 * best weights kept by early stopping, PCGrad's per-task gradients, the
 * activation arena for c->max_batch rows and the embedding tables' row
 * bookkeeping. tl_model_new checks it against c->max_memory (or the
 * available memory) before allocating, and refuses with both numbers. */
tl_status tl_model_memory(const tl_model_config *c, uint64_t *bytes);

/* Number of trainable floats. */
size_t tl_model_param_count(const tl_model *m);

/* Loss weights above this are accepted but warned about by the bindings: a
 * weight of 1e38 makes the weighted loss and its gradients overflow float32
 * or swamp the other tasks (Adam then normalises the task's own gradient
 * away), and the task stops learning. Useful weights are O(1)..O(100). */
#define TL_WEIGHT_WARN 1e4

/* Loss weights: take effect at the next step (graph scalars). */
tl_status tl_model_set_weight(tl_model *m, int task, float w);
float tl_model_get_weight(const tl_model *m, int task);
/* The weight the loss currently applies (after a strategy such as
 * uncertainty weighting or GradNorm). */
float tl_model_effective_weight(const tl_model *m, int task);
int tl_model_task_index(const tl_model *m, const char *name);
/* Switch the loss-weighting method between fits to the one of `from`
 * (its weighting, wopt, gradnorm_alpha and dwa_temperature). The method's state starts afresh: its factors are 1 and its
 * histories, learned logits and gradient buffers are cleared (DWA counts
 * epochs again, FAMO's logits are 0, STCH warms up again); the user's loss
 * weights, the parameters and the optimizer state are kept. Methods that
 * learn loss scales in the graph (uncertainty, imtl_l) can be neither
 * switched to nor from: the graph is built for them. The checkpoint stores
 * the method in use. */
tl_status tl_model_set_weighting(tl_model *m, const tl_model_config *from);

/* ---- training ------------------------------------------------------------- */

/* STEP: after a training step; EVAL: after a mid-epoch validation
 * (eval_every); EPOCH: at an epoch's end, with validation metrics. */
typedef enum { TL_PROGRESS_STEP, TL_PROGRESS_EPOCH, TL_PROGRESS_EVAL } tl_progress_kind;

typedef struct {
    tl_progress_kind kind;
    int epoch;                 /* 1-based, counted over the model's life */
    int epochs;                /* the epoch this fit call will end at */
    int64_t step;              /* global step, 1-based */
    int batch_in_epoch, batches_per_epoch;
    const double *loss;        /* per task: mean loss of the epoch so far */
    const double *valid;       /* per task, at epoch end: monitored valid metric (NaN if none) */
    double monitor;            /* at epoch end: the early-stopping value */
    int improved;              /* at epoch end: monitor improved */
} tl_progress;

/* Return non-zero to stop training (like Ctrl-C). */
typedef int (*tl_progress_fn)(void *ud, const tl_progress *p);

typedef struct {
    int epochs;            /* default 10 */
    int batch;             /* default: the model's max_batch */
    int patience;          /* epochs without improvement before stopping; 0 = off */
    int monitor_task;      /* -1 (default): mean over tasks of AUC (binary) / -MSE (regression) */
    int64_t max_steps;     /* stop after this many steps in this call; 0 = no limit */
    int eval_every;        /* also evaluate every N steps; 0 = at epoch ends only */
    int shuffle;           /* default 1 */
    uint64_t seed;         /* shuffling; default: model seed */
    int restore_best;      /* with a valid split: restore the best epoch's weights (default 1) */
    tl_optim_config optim; /* default Adam lr 1e-3 */
    tl_progress_fn progress;
    void *progress_ud;
    int progress_every;    /* call progress with TL_PROGRESS_STEP every N steps; 0 = never */
    int diagnostics;       /* every N steps record per-task gradient diagnostics (task_grads.h); 0 = off */
    /* Data parallelism (dist.h): with dist (size > 1, or grains > 1) every
     * rank computes the rows of its grains of each global batch, and the
     * gradients of the grains are summed in grain order on every rank: the
     * same bits at every rank count for a given grains (0 = the rank count)
     * and thread count. check_every = N compares a checksum of the
     * parameters across ranks every N steps (0 = off). */
    struct tl_dist *dist;
    int grains;
    int check_every;
} tl_fit_options;

void tl_fit_defaults(tl_fit_options *o);

/* Train on `train`, evaluating on `valid` (may be NULL) after every epoch.
 * Returns TL_OK, TL_ERR_CANCELLED (Ctrl-C or progress asked to stop: the
 * model is consistent and can continue), TL_ERR_NUMERIC (a non-finite loss or
 * gradient: the message names task, step and tensor; the parameters of the
 * last good step are kept), or another error. A later call continues from the
 * current parameters and optimizer state (the optimizer is kept unless the
 * options change it). The first fit resolves CrossDistil's order="auto" from
 * `train` (tl_model_distill_order). */
tl_status tl_model_fit(tl_model *m, const tl_split *train, const tl_split *valid,
                       const tl_fit_options *opt);

/* Engine-internal (models/model_fit.c, models/model_stream.c): the one fit
 * loop, over the in-memory `train` or, when train is NULL, the stream; and
 * the stream's next n rows (fewer is an error naming the directory). */
tl_status tl_model_fit_source(tl_model *m, const tl_split *train, tl_stream *stream, const tl_split *valid,
                              const tl_fit_options *opt);
tl_status tl_model_stream_batch(tl_stream *s, int n, tl_split *batch);
/* A stream fit's place (models/model_stream.c): after every step and at
 * its end the model marks the stream it is in mid-epoch (read by `grains`
 * grains, 1 without data parallelism, in batches of `batch` rows, `consumed`
 * rows of the epoch read; no mark at an epoch's start); at a fit's start a
 * mid-epoch place is checked against the stream (a
 * mismatch is refused naming what differs; an in-memory split's place starts
 * the epoch over); skip reads and drops rows (at most the reserved batch
 * rows at a time, stream reserve >= 256). */
void tl_model_stream_mark(tl_model *m, const tl_stream *s, int grains, int batch, uint64_t consumed);
tl_status tl_model_stream_resume_check(tl_model *m, const tl_stream *s, int grains, int batch, uint64_t consumed);
tl_status tl_model_stream_skip(tl_stream *s, uint64_t rows);

/* Train on a stream of sharded rows (data/shards.h; models/model_stream.c)
 * with tl_model_fit's loop: the same step, hooks, validation on the
 * in-memory `valid`, early stopping and progress. Epoch e reads the stream's
 * epoch e (the model's epoch count), so the row order is the stream's
 * seed's. opt->shuffle and opt->seed are the stream's business
 * (tl_stream_open) and eval_every is not supported. A stop mid-epoch keeps
 * the steps taken and the stream's place (also in a checkpoint): the next
 * call on the same stream (the same shards, seed, buffer, batch and grains;
 * another is refused) reads past the rows done and continues the epoch with
 * the bits of a fit that was never stopped. Models with
 * CrossDistil are refused (its calibrators refit on the train split).
 * Data-parallel (opt->dist, opt->grains as tl_model_fit): grain j reads its
 * own stream over the shard files j, j + G, ... (seed + j; a rank opens only
 * its grains'), tl_parallel_chunk(batch, G, j) rows a batch until it runs
 * out; an epoch lasts until the last grain's stream is done. The same bits
 * at every rank count for a given grains; fewer shard files than grains is
 * refused. */
tl_status tl_model_fit_stream(tl_model *m, tl_stream *train, const tl_split *valid, const tl_fit_options *opt);

/* Predicted values for every row of `s`: out is s->n x n_tasks, row-major
 * (probabilities for binary tasks). */
tl_status tl_model_predict(tl_model *m, const tl_split *s, float *out);

typedef struct {
    tl_task_type type;
    tl_binary_eval bin;
    tl_regression_eval reg;
} tl_task_eval;

/* Tasks with a space are evaluated on the rows of their space (1, default)
 * or on every row (0). */
void tl_model_set_eval_in_space(tl_model *m, int in_space);

/* Evaluate every task on `s` into out[n_tasks]; bins (may be NULL) receives
 * n_bins reliability bins per task (n_tasks x n_bins). */
tl_status tl_model_evaluate(tl_model *m, const tl_split *s, int n_bins, tl_task_eval *out,
                            tl_calib_bin *bins);

/* Share predict and evaluate among the ranks of d (NULL: this process
 * alone): every rank scores its block of the model's prediction chunks and
 * the predictions are gathered, so every rank gets the numbers one process
 * gets, bit for bit. Every rank must then call them together. m:fit with a
 * dist sets it too. */
void tl_model_set_dist(tl_model *m, struct tl_dist *d);

/* ---- history --------------------------------------------------------------- */

typedef struct tl_step_record {
    int64_t step;
    int epoch;
    float loss[TL_MAX_TASKS];
    float weight[TL_MAX_TASKS];   /* effective weights */
} tl_step_record;

typedef struct tl_epoch_record {
    int epoch;
    int64_t step;
    double train_loss[TL_MAX_TASKS];
    double valid_metric[TL_MAX_TASKS]; /* AUC (binary) or RMSE (regression); NaN without valid */
    double valid_logloss[TL_MAX_TASKS]; /* logloss (binary) or MSE (regression) */
    double monitor;
} tl_epoch_record;

/* ---- output calibration (tl.calibrate) ------------------------------------ */

/* Fit a calibrator of `kind` for every binary task on the model's
 * predictions over s (a validation split) and attach them to the model,
 * replacing earlier ones. They are saved with the model. */
tl_status tl_model_calibrate(tl_model *m, const tl_split *s, tl_calib_kind kind);
/* The task's attached calibrator, or NULL. */
const tl_calibrator *tl_model_calibrator(const tl_model *m, int task);
/* Attach (taking ownership; NULL detaches) — used by checkpoint loading. */
void tl_model_set_calibrator(tl_model *m, int task, tl_calibrator *c);
/* Training steps taken since the task's output calibrator was fitted (0
 * when it is fresh or there is none). A calibrator fitted before further
 * training describes the old parameters: it is kept (refitting needs a
 * validation split the model does not know), and callers warn. */
int64_t tl_model_calibrator_age(const tl_model *m, int task);
/* Steps since CrossDistil's fitted teacher calibrators were refit (they are
 * refit at epoch ends and every calib_every steps; a fit stopped mid-epoch
 * leaves them older than the teachers). 0 without such calibrators. */
int64_t tl_model_teacher_calibrator_age(const tl_model *m);
/* Like predict / evaluate, with the attached calibrators applied. */
tl_status tl_model_predict_calibrated(tl_model *m, const tl_split *s, float *out);
tl_status tl_model_evaluate_calibrated(tl_model *m, const tl_split *s, int n_bins,
                                       tl_task_eval *out, tl_calib_bin *bins);

/* ---- per-task gradient diagnostics (task_grads.h: the record) -------------- */

struct tl_diag_record;
/* With the step's batch in the graph's inputs (tl_model_fill_batch), task
 * k's gradient (out: every parameter's floats), or every task's record (step
 * and epoch left to the caller): tl_task_grads_one, tl_task_grads_record.
 * Training continues as if they had not run. */
tl_status tl_model_task_gradient(tl_model *m, int k, float *out);
tl_status tl_model_task_gradients(tl_model *m, struct tl_diag_record *r);
/* The records of fit{diagnostics=N}, in step order. */
size_t tl_model_history_diagnostics(const tl_model *m, const struct tl_diag_record **out);

size_t tl_model_history_steps(const tl_model *m, const tl_step_record **out);
size_t tl_model_history_epochs(const tl_model *m, const tl_epoch_record **out);
/* Mid-epoch validations (fit's eval_every): records with epoch = the epoch
 * under way, step, and valid_metric / valid_logloss; train_loss is the mean of
 * the epoch so far. */
size_t tl_model_history_evals(const tl_model *m, const tl_epoch_record **out);
int64_t tl_model_steps(const tl_model *m);
int tl_model_epochs_done(const tl_model *m);
tl_optim *tl_model_optim(tl_model *m);
/* Copy rows order[from .. from+n) of s (order NULL: rows from..) into the
 * graph's inputs, as the fit loop does; n <= max_batch. For strategies and
 * diagnostics that run the graph themselves. */
void tl_model_fill_batch(tl_model *m, const tl_split *s, const uint32_t *order, size_t from, int n);
/* TL_OK when s has rows, the model's features and labels, and fewer than
 * 2^32 rows; else TL_ERR_ARG with a message that starts with `what`. */
tl_status tl_model_check_split(const tl_model *m, const tl_split *s, const char *what);

#endif
