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
 *
 * The strategy is attached to a model through its hook table (hooks.h): it
 * owns the coefficient scalars, the log-variances and the factors, and writes
 * them to the checkpoint section WGHT. model.c reaches it through the
 * functions below too.
 */
#ifndef TL_WEIGHTING_H
#define TL_WEIGHTING_H

#include "hooks.h"

typedef struct tl_weighting_state tl_weighting_state;

extern const tl_hook tl_weighting_hook;

/* Push user weights x factors into the coefficient scalars (after the user
 * changed a weight). */
void tl_weighting_apply(tl_weighting_state *w, const tl_model_view *v);
/* Task k's effective weight: user weight x factor (x exp(-s_k)/2 under
 * uncertainty weighting). */
float tl_weighting_effective(const tl_weighting_state *w, const tl_model_view *v, int k);
/* Backward of task k's loss alone with coefficient 1 on the raw loss
 * (uncertainty weighting scales its term by exp(-s)/2: undone here), after a
 * forward run; the coefficients are restored after. For diagnostics. */
tl_status tl_weighting_task_backward(tl_weighting_state *w, const tl_model_view *v, int k);

#endif
