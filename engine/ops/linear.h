/* ops/linear.h — builders of matmul, the fused linear layer and grouped
 * linear layers (ops/linear.c).
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h). graph.h includes this header.
 */
#ifndef TL_OPS_LINEAR_H
#define TL_OPS_LINEAR_H

#include "graph_types.h"

tl_node tl_matmul(tl_graph *g, tl_node a, tl_node w);           /* a[n,k] w[k,m] */
/* act(x W + b): the fused layer. b may be TL_NONE. */
tl_node tl_linear(tl_graph *g, tl_node x, tl_node w, tl_node b, tl_act act);
/* `groups` independent layers side by side: x is [n, groups*k] (group j in
 * columns j*k..), w is [groups*k, m] (group j's k x m block stacked), b is
 * [1, groups*m] or TL_NONE; the result is [n, groups*m]. One strided GEMM per
 * group and no copies: the experts' second layers in MMoE/PLE. */
tl_node tl_grouped_linear(tl_graph *g, tl_node x, tl_node w, tl_node b, int groups,
                          tl_act act);

#endif
