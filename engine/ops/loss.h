/* ops/loss.h — builders of the losses that reduce a batch to 1 x 1
 * (ops/loss.c).
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h). graph.h includes this header.
 */
#ifndef TL_OPS_LOSS_H
#define TL_OPS_LOSS_H

#include "graph_types.h"

/* Losses, each a 1 x 1 node. Targets may be any node (labels, or soft
 * targets from another node). weight may be TL_NONE (plain mean over rows) or
 * an [n,1] node of per-row weights w >= 0: loss = sum w_i l_i / sum w_i
 * (0 when sum w = 0), which covers masks (task spaces) and sample weights. */
tl_node tl_bce_logits(tl_graph *g, tl_node logits, tl_node target, tl_node weight);
/* BCE on probabilities (clamped to [1e-7, 1-1e-7]); ESMM's pCTCVR. */
tl_node tl_bce_prob(tl_graph *g, tl_node prob, tl_node target, tl_node weight);
tl_node tl_mse(tl_graph *g, tl_node pred, tl_node target, tl_node weight);
/* Mean over rows of KL(Bern(p) || Bern(q)) for probabilities p, q [n,1]
 * (clamped to [1e-7, 1-1e-7]). */
tl_node tl_bernoulli_kl(tl_graph *g, tl_node p, tl_node q);

/* Data parallelism (models/model_fit.c): the next runs of loss node `loss`
 * divide sum w_i l_i by `den` (the weight sum of the whole global batch)
 * instead of by their own rows' sum, so that a run on a part of the batch
 * gives that part's share of the batch loss and, in backward, exactly the
 * per-row gradients a run on the whole batch gives. den <= 0 restores the
 * own sum. TL_ERR_ARG when `loss` is not one of the losses above. */
tl_status tl_loss_set_denominator(tl_graph *g, tl_node loss, float den);

#endif
