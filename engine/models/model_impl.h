/* models/model_impl.h — engine-internal: the model record shared by model.c
 * and losses/weighting.c. */
#ifndef TL_MODEL_IMPL_H
#define TL_MODEL_IMPL_H

#include "model.h"

struct tl_model {
    tl_model_config cfg;
    tl_graph *g;
    tl_rng rng;                    /* PCGrad's task order */
    /* graph nodes */
    tl_node ids, num, table;
    tl_node label[TL_MAX_TASKS], rowweight[TL_MAX_TASKS];
    tl_node pred[TL_MAX_TASKS];    /* probability (binary) or value (regression) */
    tl_node loss[TL_MAX_TASKS];    /* per-task 1x1 loss */
    tl_node pcvr;                  /* ESMM: pCVR (pred[1] is pCTCVR) */
    tl_node extra, extra_coef;     /* AITM label constraint and its weight */
    tl_node coef[TL_MAX_TASKS];    /* scalar multiplying task k's loss term */
    tl_node logvar[TL_MAX_TASKS];  /* uncertainty weighting: log sigma^2 per task */
    tl_node total;
    tl_node last_shared;           /* GradNorm's measured layer */
    int n_shared_params;           /* parameters below the towers */
    /* weighting state */
    float factor[TL_MAX_TASKS];    /* strategy multiplier (DWA, GradNorm), 1 otherwise */
    double gn_initial[TL_MAX_TASKS];
    int gn_have_initial;
    double dwa_hist[2][TL_MAX_TASKS];
    int dwa_epochs;
    float *task_grads;             /* PCGrad: n_tasks x param floats */
    float *w_grad_before;          /* GradNorm: last_shared's gradient before a task pass */
    /* training */
    tl_optim *opt;
    int64_t step;
    int epoch;
    tl_step_record *steps_hist;
    size_t n_steps_hist, cap_steps_hist;
    tl_epoch_record *epochs_hist;
    size_t n_epochs_hist, cap_epochs_hist;
    float *best;                   /* best parameters seen by early stopping */
};

#endif
