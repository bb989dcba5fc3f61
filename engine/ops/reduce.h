/* ops/reduce.h — builders of row softmax / log-softmax and the sum, mean and
 * row-sum reductions (ops/reduce.c).
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h). graph.h includes this header.
 */
#ifndef TL_OPS_REDUCE_H
#define TL_OPS_REDUCE_H

#include "graph_types.h"

/* Softmax / log-softmax over each row's columns. */
tl_node tl_softmax(tl_graph *g, tl_node a);
tl_node tl_log_softmax(tl_graph *g, tl_node a);
/* Reductions to 1 x 1: sum or mean of every element. */
tl_node tl_sum(tl_graph *g, tl_node a);
tl_node tl_mean(tl_graph *g, tl_node a);
/* Sum over columns per row: [n, c] -> [n, 1]. */
tl_node tl_row_sum(tl_graph *g, tl_node a);

#endif
