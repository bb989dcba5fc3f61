/* task_grads.h — per-task gradient diagnostics: the gradient of each task's
 * loss alone with respect to the shared parameters, their norms and pairwise
 * cosines (conflicts between tasks), recorded during fit{diagnostics=N}.
 *
 * A strategy behind the hook table (hooks.h), attached to every model: its
 * step_ready hook records before the steps fit asks for, and it sees the
 * model only through the view. It leaves training bit for bit as it was: the
 * dropout RNG is put back after its forward run, and the parameter gradients
 * are zero again after its backward runs. It writes no checkpoint section
 * (the history is not saved). The model's public entry points are
 * tl_model_task_gradient, tl_model_task_gradients and
 * tl_model_history_diagnostics (model.h).
 */
#ifndef TL_TASK_GRADS_H
#define TL_TASK_GRADS_H

#include "hooks.h"

/* One diagnostic record, taken before the update of step `step`: on that
 * step's batch, the gradient of each task's loss alone (coefficient 1: the
 * raw task loss, before any weighting) with respect to the shared parameters
 * (embeddings and backbone: the model's first n_shared_params parameters). */
typedef struct tl_diag_record {
    int64_t step;
    int epoch;
    float grad_norm[TL_MAX_TASKS];                /* L2 norm */
    float grad_cos[TL_MAX_TASKS][TL_MAX_TASKS];   /* cosine between tasks (NaN if a norm is 0) */
    float weight[TL_MAX_TASKS];                   /* effective loss weights */
} tl_diag_record;

typedef struct tl_task_grads_state tl_task_grads_state;

extern const tl_hook tl_task_grads_hook;

/* Record every `every` steps from the next fit step on (0 = off); fit sets
 * it from its options. */
void tl_task_grads_every(tl_task_grads_state *t, int every);

/* Gradient of task k's loss alone with respect to every parameter, on the
 * batch already in the graph's inputs (the strategies' step_begin run):
 * forward in training mode (the dropout RNG restored afterwards, so the step
 * that follows sees the same masks) and one backward with task k's
 * coefficient 1 and every other loss term off. out has the model's parameter
 * floats; parameter gradients are zero afterwards (they must be zero before:
 * the state between steps). */
tl_status tl_task_grads_one(const tl_model_view *v, int k, float *out);

/* Fill r (step and epoch left to the caller) from the batch in the graph's
 * inputs: one forward, then one backward per task, as above. Uses a buffer
 * the state owns (allocated at the first call). */
tl_status tl_task_grads_record(tl_task_grads_state *t, const tl_model_view *v, tl_diag_record *r);

/* The records of fit{diagnostics=N}, in step order. */
size_t tl_task_grads_history(const tl_task_grads_state *t, const tl_diag_record **out);

#endif
