/* hooks.h — the seam between a model and the training strategies attached to
 * it (loss weighting, DML, CrossDistil, the per-task gradient diagnostics).
 *
 * A strategy owns its state behind one table of hooks. The model allocates
 * the state (size bytes, zeroed), calls the hooks of every attached strategy,
 * in the order attached, at fixed points of building and fitting, and writes
 * and reads each strategy's checkpoint section (tag) through the codec. What
 * the model shares with its strategies is the view: pointers into the model,
 * valid for its life. A NULL hook does nothing. Adding a strategy is one file
 * with its table and one line where model.c attaches it.
 *
 * Strategies include this header, never the model's: the includes point
 * from model.c to the strategies, not back.
 */
#ifndef TL_HOOKS_H
#define TL_HOOKS_H

#include "codec.h"
#include "data.h"
#include "graph.h"
#include "model_config.h"
#include "optim.h"

typedef struct tl_model tl_model;

/* What the model shares with its strategies. */
typedef struct {
    const tl_model_config *cfg; /* the task weights in it change between steps */
    tl_graph *g;
    tl_rng *rng;                /* the model's RNG (PCGrad's task order) */
    const int64_t *step;        /* training steps taken */
    const int *epoch;           /* epochs completed */
    tl_node *label, *rowweight; /* [n_tasks] inputs: labels and per-row weights */
    tl_node *pred;              /* [n_tasks] probability (binary) or value (regression) */
    tl_node *loss;              /* [n_tasks] per-task 1 x 1 losses */
    tl_node *objective;         /* [n_tasks] what weighting combines: the task loss, or
                                   the distilled student loss under CrossDistil */
    tl_node *extra, *extra_coef; /* loss terms outside the tasks and their on/off scalar */
    tl_node *total;             /* the loss the graph differentiates (set by weighting) */
    tl_node *last_shared;       /* GradNorm's measured layer */
    int *n_shared_params;       /* parameters below the towers (the first ones) */
    tl_optim **opt;             /* the optimizer, once fit made one */
    /* [n_tasks] nodes while building: tower inputs (the backbone's outputs),
     * towers' last hidden layers, logits; a strategy may replace them at its
     * stage */
    tl_node *tower_in, *tower_out, *logit;
    /* the model's rows order[from .. from+n) of s into the graph's inputs
     * (tl_model_fill_batch), for strategies that run the graph themselves */
    tl_model *model;
    void (*fill_batch)(tl_model *m, const tl_split *s, const uint32_t *order, size_t from, int n);
    /* the weighting strategy's, for strategies that look at single tasks:
     * after a forward run, backward of task k's loss alone with coefficient
     * 1 on the raw loss (coefficients restored after); task k's effective
     * loss weight */
    tl_status (*task_backward)(tl_model *m, int k);
    float (*effective_weight)(const tl_model *m, int k);
    /* Data parallelism (dist.h): the ranks training the model together, set
     * by fit for its duration (NULL in one process). */
    struct tl_dist *dist;
    /* Under data parallelism (else NULL): replace the parameter gradients,
     * which hold this rank's rows' gradient (dense, and the embedding rows
     * touched), with the sum over every rank's rows, added in rank order: the
     * same bits on every rank. A strategy whose backward hook runs its own
     * backward passes (GradNorm, PCGrad: one per task) calls it after each,
     * on that pass's gradient alone (gradients cleared before the pass), and
     * every rank calls it at the same points; its task_loss is then already
     * the batch's over all ranks. Fit runs such a strategy with one grain
     * per rank, and refuses it when its backward hook made no such call.
     * Which weighting methods are such strategies, their rows in the method
     * table say (losses/weighting.h tl_weighting_dp). Set only during a
     * data-parallel fit: strategies test it, not dist, to know they are in
     * one (a model distributed for evaluation keeps dist in any fit). */
    tl_status (*reduce_grads)(tl_model *m);
    /* Under data parallelism (with reduce_grads): the rows of the step's
     * batch, and those of the run under way (0 for a run that carries none:
     * the rows-free run, the filler row of a rank without rows): the loss
     * terms outside the tasks take the run's share (losses/weighting.c). */
    int dp_batch_rows, dp_run_rows;
} tl_model_view;

/* The points of building at which a strategy's build hook runs. */
typedef enum {
    TL_BUILD_TOWER_INPUTS, /* the backbone is built; the towers read tower_in next */
    TL_BUILD_LOGITS,       /* tower_out and logit exist; the losses read logit next */
    TL_BUILD_LOSSES        /* the task losses exist (loss, objective, extra) */
} tl_build_stage;

/* Where fit is, for the hooks that run in it. */
typedef struct {
    const tl_split *train, *valid; /* valid may be NULL */
    const float *task_loss;        /* backward: this step's task losses */
    const double *epoch_loss;      /* epoch_end: the epoch's mean task losses */
} tl_fit_point;

typedef struct {
    const char *name;
    uint32_t tag; /* checkpoint section (TL_CODEC_TAG), 0 = none */
    size_t size;  /* bytes of state */
    /* While the model builds its graph: called at every stage. */
    tl_status (*build)(void *st, const tl_model_view *v, tl_build_stage stage);
    /* After the graph is planned: buffers and initial scalar values. */
    tl_status (*planned)(void *st, const tl_model_view *v);
    void (*epoch_begin)(void *st, const tl_model_view *v);
    void (*step_begin)(void *st, const tl_model_view *v);
    /* After every step_begin, with the step's batch in the graph's inputs,
     * before the training forward run: for strategies that look at the step
     * without changing it. */
    tl_status (*step_ready)(void *st, const tl_model_view *v);
    /* After the training forward run: leave the step's gradient in the
     * parameter gradients. One attached strategy runs the backward pass. */
    tl_status (*backward)(void *st, const tl_model_view *v, const tl_fit_point *f);
    tl_status (*step_end)(void *st, const tl_model_view *v, const tl_fit_point *f);
    tl_status (*epoch_end)(void *st, const tl_model_view *v, const tl_fit_point *f);
    /* The section's payload: written through c, or read (then range-checked,
     * TL_ERR_FORMAT with c->r->bad saying why). */
    void (*save)(void *st, const tl_model_view *v, tl_codec *c);
    tl_status (*load)(void *st, const tl_model_view *v, tl_codec *c);
    /* Buffers the state holds (the model frees the state itself). */
    void (*free)(void *st);
} tl_hook;

#endif
