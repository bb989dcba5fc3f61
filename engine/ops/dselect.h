/* ops/dselect.h — builders of DSelect-k's gate parts (Hazimeh et al. NeurIPS
 * 2021; ops/dselect.c): the smooth-step, the single-expert selectors, and
 * their regulariser.
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h). graph.h includes this header.
 */
#ifndef TL_OPS_DSELECT_H
#define TL_OPS_DSELECT_H

#include "graph_types.h"

/* Elementwise smooth-step: 0 for t <= -gamma/2, 1 for t >= gamma/2, and
 * -2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2 between (gamma > 0). */
tl_node tl_smooth_step(tl_graph *g, tl_node a, float gamma);
/* s [n, k*m] smooth-step outputs, m = ceil(log2 experts) bits per selector;
 * out [n, k*experts]: selector i's weight on expert e = prod_j (bit j of e ?
 * s_ij : 1 - s_ij), bit 0 the most significant (the authors' binary codes).
 * experts >= 2. */
tl_node tl_dselect_select(tl_graph *g, tl_node s, int k, int experts);
/* r [n, k*experts] selector outputs -> [n, 1]: entropy x -sum r log(r + 1e-6)
 * (the authors' entropy regulariser), plus, when experts is not a power of 2,
 * sum over selectors of 1 / sum_e r (which keeps the unreachable codes from
 * taking a selector's weight). */
tl_node tl_dselect_penalty(tl_graph *g, tl_node r, int k, int experts, float entropy);
/* Bits per selector for `experts` experts: ceil(log2 experts). */
int tl_dselect_bits(int experts);

#endif
