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

/* act(x W + b), W [cols(x), out] Xavier-uniform, b zeros (none without
 * `bias`), named "<prefix>.w/.b". */
tl_node tl_build_dense(tl_graph *g, tl_node x, int out, tl_act act, int bias, const char *prefix);

/* A softmax gate over `k` experts read from x. */
tl_node tl_build_gate(tl_graph *g, tl_node x, int k, const char *prefix);

/* Backbone outputs: h[k] is task k's tower input. For ESMM and AITM the
 * backbone is the shared embedding (h[k] = x) and the task interaction is
 * built by model.c with the functions below (models/esmm_aitm.c). Returns 0
 * on failure. `last_shared` receives the parameter that GradNorm measures
 * (the backbone's last shared weight). */
int tl_build_backbone(tl_graph *g, const tl_model_config *c, tl_node x, tl_node *h,
                      tl_node *last_shared);

/* AITM: task k's (k > 0) tower output t after the adaptive information
 * transfer from the previous task's z_prev (both of width d); the result is
 * also the next task's z_prev. */
tl_node tl_build_aitm_transfer(tl_graph *g, tl_node z_prev, tl_node t, int d, int k);
/* AITM's label constraint over the K task probabilities (p_t <= p_{t-1}):
 * constraint x sum_t mean relu(p_t - p_{t-1}); *coef receives the constraint
 * scalar ("aitm.constraint"). */
tl_node tl_build_aitm_constraint(tl_graph *g, const tl_node *pred, int K, float constraint, tl_node *coef);
/* ESMM over all rows: *pctcvr = pCTR x pCVR and its BCE on probabilities
 * against the CTCVR label (returned). */
tl_node tl_build_esmm_ctcvr(tl_graph *g, tl_node pctr, tl_node pcvr, tl_node label, tl_node weight,
                            tl_node *pctcvr);

#endif
