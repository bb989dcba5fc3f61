/* ops/block_mix.h — builder of the learned linear mixing of column blocks
 * (ops/block_mix.c): cross-stitch units and AdaTT's residual over a task's
 * own experts.
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h). graph.h includes this header.
 */
#ifndef TL_OPS_BLOCK_MIX_H
#define TL_OPS_BLOCK_MIX_H

#include "graph_types.h"

/* x [n, cols] holds blocks of width d; w is a fixed-row node [R, C] (a
 * parameter). out [n, R*d], out block r = sum_c (w[r,c] + diag [r == c])
 * x block (first + c). diag != 0 needs R == C: it lets a parameter start at
 * zero mean around a non-zero diagonal (cross-stitch's 0.9 on the task's own
 * column). */
tl_node tl_block_mix(tl_graph *g, tl_node x, tl_node w, int first, int d, float diag);

#endif
