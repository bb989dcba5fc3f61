/* ops/mix.h — builders of the gated mixture of experts and of attention
 * among tokens (ops/mix.c).
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h). graph.h includes this header.
 */
#ifndef TL_OPS_MIX_H
#define TL_OPS_MIX_H

#include "graph_types.h"

/* Gated mixture: gate [n, K] (rows usually softmax), experts [n, K*d] with
 * expert k in columns k*d..; out[i] = sum_k gate[i,k] * expert_k[i], [n, d]. */
tl_node tl_gate_mix(tl_graph *g, tl_node gate, tl_node experts, int k);
/* Scaled dot-product attention among `tokens` vectors per row: q, k, v are
 * [n, tokens*d]; out token t = sum_j softmax_j(q_t.k_j / sqrt(d)) v_j. */
tl_node tl_attention(tl_graph *g, tl_node q, tl_node k, tl_node v, int tokens);

#endif
