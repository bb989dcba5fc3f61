/* ops/token.h — builders of the ops over tokens and row groups: the layer
 * shared by every token, the quadruplet BPR loss, and map (ops/token.c).
 * Shapes are checked at build time; a failing builder records the message
 * in the graph and returns TL_NONE (graph.h). graph.h includes this header.
 */
#ifndef TL_OPS_TOKEN_H
#define TL_OPS_TOKEN_H

#include "graph_types.h"

/* One layer shared by every token: x is [n, tokens*k] (token t in columns
 * t*k..), w [k, m], b [1, m] or TL_NONE; result [n, tokens*m]. DML's CTFM
 * projections, which every task shares. */
tl_node tl_token_linear(tl_graph *g, tl_node x, tl_node w, tl_node b, int tokens, tl_act act);
/* tl_token_linear of tl_stop_grad(x) without the copy: no gradient reaches x
 * through this layer (CTFM's keys and values). */
tl_node tl_token_linear_sg(tl_graph *g, tl_node x, tl_node w, tl_node b, int tokens, tl_act act);
/* CrossDistil's quadruplet ranking loss for one task's scores [n,1]: rows fall
 * into groups by (own label a, partner label b, flipped when flip_b):
 * ++ > +- > -+ > --; loss = sum over the 3 adjacent group pairs (P, Q) of
 * mean_{i in P, j in Q} -log sigmoid(s_i - s_j), the terms over adjacent
 * non-empty groups (an empty group is chained over: +- over -- when -+ is
 * empty, as for nested tasks); above max_pairs pairs per term, max_pairs random pairs are used. */
tl_node tl_quadruplet_bpr(tl_graph *g, tl_node score, tl_node label_a, tl_node label_b, int flip_b,
                          int max_pairs);
/* tl_quadruplet_bpr with per-row weights: weight is
 * TL_NONE (every row weighs 1: exactly tl_quadruplet_bpr) or an [n,1] node
 * of finite weights w >= 0. Rows with w = 0 (outside a task space) are in no
 * group; each term is sum w_i w_j (-log sigmoid(s_i - s_j)) / sum w_i w_j
 * over its pairs (all of them, or the max_pairs drawn uniformly). No
 * gradient reaches the labels or the weights. */
tl_node tl_quadruplet_bpr_weighted(tl_graph *g, tl_node score, tl_node label_a, tl_node label_b,
                                   tl_node weight, int flip_b, int max_pairs);
/* Data parallelism (models/model_fit.c): a batch split into runs of its
 * rows, the quadruplet loss pairing rows of the whole batch. The caller
 * computes the loss and its gradient over the whole batch's rows with
 * tl_quadruplet_rows_loss (the node's scores, labels and weights as arrays;
 * grad gets d loss / d score_i, rows floats; sampling above the node's
 * max_pairs draws from rng; TL_ERR_NOMEM for its scratch) and sets them
 * with tl_quadruplet_set_rows: the node's runs then take loss as their
 * value and add their upstream gradient times grad[off + i] into the score
 * gradient of their row i < rows (none without grad), until it is set to
 * NULL. q stays the caller's and must outlive those runs. TL_ERR_ARG when
 * `quad` is not a quadruplet loss. */
typedef struct {
    double loss;
    const float *grad;
    int off, rows;
} tl_quad_rows;
tl_status tl_quadruplet_rows_loss(const tl_graph *g, tl_node quad, const float *score, const float *label_a,
                                  const float *label_b, const float *weight, int rows, tl_rng *rng, double *loss,
                                  float *grad);
tl_status tl_quadruplet_set_rows(tl_graph *g, tl_node quad, const tl_quad_rows *q);
/* out[i] = fn(ctx, x[i], aux[i]) (aux may be TL_NONE: 0 is passed). No
 * gradient flows through a map: it applies fitted, fixed functions such as a
 * calibrator. ctx must outlive the graph's runs. */
tl_node tl_map(tl_graph *g, tl_node x, tl_node aux, tl_map_fn fn, void *ctx);

#endif
