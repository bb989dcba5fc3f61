/* graph_types.h — the types the graph and its ops share: node ids, the graph
 * handle, activations, parameter records and map functions.
 *
 * Split from graph.h so that ops/ needs nothing from graph.h: graph.h
 * includes the op builders' headers in ops/, and those and ops/ops.h
 * include only this, so the includes point one way. Include graph.h.
 */
#ifndef TL_GRAPH_TYPES_H
#define TL_GRAPH_TYPES_H

#include "core.h"

typedef int32_t tl_node;
#define TL_NONE ((tl_node)-1)

typedef struct tl_graph tl_graph;

typedef enum { TL_ACT_NONE, TL_ACT_RELU, TL_ACT_SIGMOID, TL_ACT_TANH } tl_act;

/* A parameter. All live in one block (tl_graph_params), their gradients in
 * a second block of the same layout. */
typedef struct {
    tl_node node;
    const char *name;
    int rows, cols;
    size_t offset;  /* in floats, into the parameter and gradient blocks */
    int sparse;     /* 1 for embedding tables: row-sparse gradients */
} tl_param_info;

/* out[i] = fn(ctx, x[i], aux[i]) of tl_map (ops/token.h). */
typedef float (*tl_map_fn)(void *ctx, float x, float aux);

#endif
