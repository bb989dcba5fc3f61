/* models/model_impl.h — engine-internal: the model record. model.c owns it;
 * its other files in models/ (the checkpoint sections) reach into it. The
 * strategies (weighting, DML, CrossDistil, the task-gradient diagnostics)
 * see only the view (hooks.h). History records and calibrators are named by
 * their struct tags, so this header needs nothing from model.h (which
 * includes the other way). */
#ifndef TL_MODEL_IMPL_H
#define TL_MODEL_IMPL_H

#include "graph.h"
#include "hooks.h"
#include "losses/distill.h"
#include "losses/dml.h"
#include "losses/weighting.h"
#include "model_config.h"
#include "optim.h"
#include "task_grads.h"

#define TL_MODEL_MAX_HOOKS 4

/* The stream a fit stopped on mid-epoch (models/model_stream.c): what orders
 * its rows, so that the next stream fit, or a checkpoint's, resumes the epoch
 * only on the same stream. set 0: none (batches_in_epoch is not a stream's). */
struct tl_stream_mark {
    int set;
    int epoch, grains, batch, shuffle, files;
    uint64_t shards, rows, seed, buffer, consumed; /* tl_shards_fingerprint, train rows, ..., rows read */
};

/* Early stopping's record (models/model_fit.c), part of the training state
 * (kept across fit calls and in a checkpoint's TRNS): the best validation
 * monitor so far (-inf: none), whether the model's `best` holds its weights,
 * patience's count of epochs without improvement since, and the epoch the
 * run that keeps it ends at. open: that run has not ended (it is under way,
 * or it stopped by max_steps, Ctrl-C, a progress callback or an error), so a
 * fit continues it while the run's epochs are not all done; a run that ended
 * (all its epochs, or patience) is closed, and the next fit starts a new
 * record. */
struct tl_es_record {
    int open, last_epoch, bad_epochs, have_best;
    double best;
    /* what the run compares: a fit continues the record only with the same */
    int patience, monitor_task;
    uint64_t valid_rows;
};

struct tl_model {
    tl_model_config cfg;
    tl_graph *g;
    tl_rng rng;                    /* PCGrad's task order */
    /* graph nodes */
    tl_node ids, num, table;
    tl_node bag_ids[TL_MAX_BAGS], bag_table[TL_MAX_BAGS]; /* per multi-valued field */
    tl_node label[TL_MAX_TASKS], rowweight[TL_MAX_TASKS];
    tl_node pred[TL_MAX_TASKS];    /* probability (binary) or value (regression) */
    tl_node loss[TL_MAX_TASKS];    /* per-task 1x1 loss */
    tl_node pcvr;                  /* ESMM: pCVR (pred[1] is pCTCVR) */
    tl_node objective[TL_MAX_TASKS]; /* what weighting combines: the task loss, or the
                                      distilled student loss under CrossDistil */
    tl_node extra, extra_coef;     /* loss terms outside the tasks (AITM constraint,
                                      CrossDistil aux/calibration) and their on/off scalar */
    tl_node constraint_coef;       /* AITM: weight of the label constraint */
    tl_node tower_in[TL_MAX_TASKS], tower_out[TL_MAX_TASKS], logit[TL_MAX_TASKS]; /* while building */
    tl_node total;
    tl_node last_shared;           /* GradNorm's measured layer */
    int n_shared_params;           /* parameters below the towers */
    /* attached strategies (hooks.h), each with its state, in attach order */
    tl_model_view view;
    int n_hooks;
    const tl_hook *hooks[TL_MODEL_MAX_HOOKS];
    void *hook_state[TL_MODEL_MAX_HOOKS];
    tl_weighting_state *weighting; /* hook_state of tl_weighting_hook */
    tl_dml_state *dml;             /* of tl_dml_hook, NULL without DML */
    tl_distill_state *distill;     /* of tl_distill_hook, NULL without CrossDistil */
    tl_task_grads_state *task_grads; /* of tl_task_grads_hook */
    /* training */
    tl_optim *opt;
    int64_t step;
    int epoch;                     /* completed epochs */
    size_t batches_in_epoch;       /* batches done in the epoch under way */
    struct tl_stream_mark smark;   /* set when those batches are a stream's */
    struct tl_step_record *steps_hist;
    size_t n_steps_hist, cap_steps_hist;
    struct tl_epoch_record *epochs_hist;
    size_t n_epochs_hist, cap_epochs_hist;
    struct tl_epoch_record *evals_hist;   /* mid-epoch validations (eval_every) */
    size_t n_evals_hist, cap_evals_hist;
    float *best;                   /* best parameters seen by early stopping */
    struct tl_es_record es;        /* early stopping's record (of the run `best` belongs to) */
    struct tl_calibrator *out_cal[TL_MAX_TASKS]; /* tl.calibrate: per-task output calibrators */
    int eval_in_space;             /* evaluate tasks with a space only on its rows (default 1) */
    /* calibrator staleness: the step at which each was fitted */
    int64_t out_cal_step[TL_MAX_TASKS]; /* tl.calibrate's output calibrators */
    int64_t distill_cal_step;           /* CrossDistil's fitted teacher calibrators */
};

#endif
