/* losses/weighting.h — engine-internal: loss weighting strategies.
 *
 * Every strategy multiplies task k's loss term by a graph scalar coef_k, so
 * the user's weight (m.weights.task = w) and the strategy's factor can change
 * between steps without rebuilding:
 *   fixed        total = sum_k w_k L_k
 *   uncertainty  total = sum_k w_k (0.5 exp(-s_k) L_k + 0.5 s_k), s_k = log sigma_k^2
 *                learned (Kendall et al. 2018, in LibMTL's form)
 *   dwa          w_k * K softmax_k(r_k / T), r_k = L_k(e-1) / L_k(e-2) from epoch
 *                mean losses (Liu et al. 2019); factor 1 for the first two epochs
 *   gradnorm     w_k * g_k, g_k learned so that the gradient norms of w_k g_k L_k on
 *                the last shared layer follow mean norm * (relative inverse
 *                training rate)^alpha (Chen et al. 2018); sum g_k = K
 *   pcgrad       per-task gradients of the shared parameters (embeddings and
 *                backbone) are projected off each other's normal plane when they
 *                conflict (Yu et al. 2020); tower gradients are summed as usual
 * GradNorm and PCGrad run one backward pass per task.
 */
#ifndef TL_WEIGHTING_H
#define TL_WEIGHTING_H

#include "models/model_impl.h"

/* Graph building: create coef/logvar nodes and m->total from m->loss. */
tl_status tl_weighting_build(tl_model *m);
/* After planning: buffers and initial scalar values. */
tl_status tl_weighting_init(tl_model *m);
void tl_weighting_free(tl_model *m);
/* Push user weights x factors into the coef scalars. */
void tl_weighting_apply(tl_model *m);
float tl_weighting_effective(const tl_model *m, int k);
void tl_weighting_epoch_start(tl_model *m);
void tl_weighting_epoch_end(tl_model *m, const double *epoch_loss);
/* After a training forward run: leave the step's gradient in the parameter
 * gradients (one or several backward runs). */
tl_status tl_weighting_backward(tl_model *m, const float *task_loss);

#endif
