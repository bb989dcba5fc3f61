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

/* What a backbone reads and what it gives back besides the tower inputs. */
typedef struct {
    tl_node x;        /* the shared input: every field's embedding, then the numeric columns */
    tl_node ids, num; /* the raw inputs (TL_NONE when the data has none), for a backbone with
                         embedding tables of its own (STEM) */
    tl_node extra;    /* out: the backbone's own loss term (DSelect-k's regulariser), 1x1, or
                         TL_NONE */
    tl_node shared;   /* out: the weight GradNorm measures, one every task's loss reaches;
                         TL_NONE: the last weight the backbone added */
} tl_backbone_io;

/* The last weight matrix (more than one row) added to g so far. */
tl_node tl_build_last_weight(tl_graph *g);

/* Backbone outputs: h[k] is task k's tower input. For ESMM and AITM the
 * backbone is the shared embedding (h[k] = x) and the task interaction is
 * built by model.c with the functions below (models/esmm_aitm.c). Returns 0
 * on failure. `last_shared` receives the parameter that GradNorm measures
 * (the backbone's last shared weight). The backbone is found in a table of
 * {kind, builder} (models/backbones.c): a new one is a file with its builder
 * below and one row there. */
int tl_build_backbone(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h,
                      tl_node *last_shared);

/* One backbone's builder: fills h[0..K-1] (and io->extra when it has a loss
 * term); returns 0 on failure. */
typedef int (*tl_backbone_build_fn)(tl_graph *g, const tl_model_config *c, tl_backbone_io *io,
                                    tl_node *h);
int tl_build_stem(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h);
int tl_build_adatt(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h);
int tl_build_cross_stitch(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h);
int tl_build_dselect_k(tl_graph *g, const tl_model_config *c, tl_backbone_io *io, tl_node *h);

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
