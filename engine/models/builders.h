/* models/builders.h — engine-internal graph builders for the backbones and
 * towers of model.c. Each appends nodes to g and returns TL_NONE (with the
 * graph's sticky error set) on failure. */
#ifndef TL_BUILDERS_H
#define TL_BUILDERS_H

#include "graph.h"
#include "model_config.h"

/* act(...) stack of fully connected layers (ReLU, dropout after each). The
 * parameters are named "<prefix>.l<i>.w/.b". Returns the last hidden layer. */
tl_node tl_build_mlp(tl_graph *g, tl_node x, const tl_mlp_spec *spec, const char *prefix);

/* `count` experts of identical layers reading the same input x: the first
 * layer of all of them is one GEMM, later layers one grouped GEMM each.
 * Returns [B x count*out] with expert e in columns e*out.. */
tl_node tl_build_experts(tl_graph *g, tl_node x, int count, const tl_mlp_spec *spec,
                         const char *prefix);

/* A softmax gate over `k` experts read from x. */
tl_node tl_build_gate(tl_graph *g, tl_node x, int k, const char *prefix);

/* Backbone outputs: h[k] is task k's tower input. For ESMM and AITM the
 * backbone is the shared embedding (h[k] = x) and the task interaction lives
 * in model.c. Returns 0 on failure. `last_shared` receives the parameter that
 * GradNorm measures (the backbone's last shared weight). */
int tl_build_backbone(tl_graph *g, const tl_model_config *c, tl_node x, tl_node *h,
                      tl_node *last_shared);

#endif
