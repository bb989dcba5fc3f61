/* ops/shape.h — builders of concat, slice, dropout and stop-gradient
 * (ops/shape.c).
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h). graph.h includes this header.
 */
#ifndef TL_OPS_SHAPE_H
#define TL_OPS_SHAPE_H

#include "graph_types.h"

/* Concatenate along columns; all inputs have the same rows. */
tl_node tl_concat(tl_graph *g, int n, const tl_node *parts);
/* Columns [start, start+cols) of a. */
tl_node tl_slice(tl_graph *g, tl_node a, int start, int cols);
/* Inverted dropout with drop probability p in training runs; identity in
 * evaluation runs. */
tl_node tl_dropout(tl_graph *g, tl_node a, float p);
/* Identity forward; no gradient flows back. */
tl_node tl_stop_grad(tl_graph *g, tl_node a);

#endif
