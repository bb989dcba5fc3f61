/* ops/elementwise.h — builders of add/sub/mul with broadcasting, scale and
 * the unary activations (ops/elementwise.c).
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h). graph.h includes this header.
 */
#ifndef TL_OPS_ELEMENTWISE_H
#define TL_OPS_ELEMENTWISE_H

#include "graph_types.h"

/* "Broadcast" means: b may have the shape of a, or be 1 x cols(a) (row
 * broadcast), or rows(a) x 1 (column broadcast), or 1 x 1. */
tl_node tl_add(tl_graph *g, tl_node a, tl_node b);   /* broadcast b */
tl_node tl_sub(tl_graph *g, tl_node a, tl_node b);   /* broadcast b */
tl_node tl_mul(tl_graph *g, tl_node a, tl_node b);   /* broadcast b */
tl_node tl_scale(tl_graph *g, tl_node a, float c);
tl_node tl_relu(tl_graph *g, tl_node a);
tl_node tl_sigmoid(tl_graph *g, tl_node a);
tl_node tl_tanh(tl_graph *g, tl_node a);
tl_node tl_exp(tl_graph *g, tl_node a);
tl_node tl_softplus(tl_graph *g, tl_node a);

#endif
