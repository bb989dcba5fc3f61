/* graph.h — the static compute graph: build once, run many.
 *
 * Builder calls append nodes and return their id (tl_node, >= 0). Every node
 * is a matrix: either `batched` (rows = the current batch size, at most the
 * graph's max_batch) or of fixed rows (parameters, scalars, losses). A row of a
 * batched node is one sample; ops that work on several vectors per sample
 * (attention over tasks) view a row as `tokens` blocks of equal width.
 *
 * Errors while building are sticky: a builder that fails records the message
 * in the graph and returns TL_NONE; builders given TL_NONE return TL_NONE
 * silently, so a model can be built with plain nested calls and checked once
 * with tl_graph_status().
 *
 * Life cycle:
 *   g = tl_graph_new(max_batch, seed)
 *   ... builders (tl_input, tl_param, tl_linear, ..., tl_bce_logits) ...
 *   tl_graph_backward(g, loss)      appends the gradient computation of `loss`
 *   tl_graph_plan(g)                one allocation each for: parameters,
 *                                   parameter gradients (same layout), and an
 *                                   arena for every activation, gradient and
 *                                   op scratch buffer; parameters initialised
 *   loop: fill tl_graph_input()/tl_graph_ids(); tl_graph_set_batch(g, n);
 *         tl_graph_forward(g, training); tl_graph_backward_run(g); optimizer
 *
 * No allocation happens in tl_graph_forward or tl_graph_backward_run: all
 * memory is planned by tl_graph_plan for max_batch rows (a test counts
 * allocations across training steps to hold this).
 *
 * Gradient semantics: backward *adds* into parameter gradients (calling it
 * twice doubles them); intermediate gradients are reset at the start of each
 * backward run. Embedding tables get sparse gradients: only the rows used by
 * the batch are written, and tl_graph_touched_rows lists them so optimizers
 * can update just those rows.
 */
#ifndef TL_GRAPH_H
#define TL_GRAPH_H

#include "core.h"
#include "tensor.h"

typedef int32_t tl_node;
#define TL_NONE ((tl_node)-1)

typedef struct tl_graph tl_graph;

typedef enum { TL_ACT_NONE, TL_ACT_RELU, TL_ACT_SIGMOID, TL_ACT_TANH } tl_act;

/* ---- building ----------------------------------------------------------- */

/* A new empty graph. max_batch bounds the rows of batched nodes; `seed`
 * drives parameter initialisation and dropout masks. NULL on allocation
 * failure (message in tl_errmsg()). */
tl_graph *tl_graph_new(int max_batch, uint64_t seed);
void tl_graph_free(tl_graph *g);
/* TL_OK, or the status of the first builder that failed (tl_graph_errmsg). */
tl_status tl_graph_status(const tl_graph *g);
const char *tl_graph_errmsg(const tl_graph *g);
int tl_graph_max_batch(const tl_graph *g);

/* Leaves. Inputs are batched and filled by the caller before each run. */
tl_node tl_input(tl_graph *g, int cols, const char *name);
/* Integer ids (int32), one column per categorical field. */
tl_node tl_input_ids(tl_graph *g, int cols, const char *name);
/* A trainable parameter of rows x cols, initialised at plan time.
 * For weight matrices rows = fan_in, cols = fan_out. */
tl_node tl_param(tl_graph *g, int rows, int cols, tl_init init, float scale,
                 const char *name);
/* A 1x1 value the caller may change between runs without rebuilding (loss
 * weights, temperatures). Not trained. */
tl_node tl_scalar(tl_graph *g, float value, const char *name);

/* Ops. Shapes are checked at build time; a mismatch fails with both shapes
 * and the op named. "Broadcast" means: b may have the shape of a, or be
 * 1 x cols(a) (row broadcast), or rows(a) x 1 (column broadcast), or 1 x 1. */
tl_node tl_matmul(tl_graph *g, tl_node a, tl_node w);           /* a[n,k] w[k,m] */
/* act(x W + b): the fused layer. b may be TL_NONE. */
tl_node tl_linear(tl_graph *g, tl_node x, tl_node w, tl_node b, tl_act act);
/* `groups` independent layers side by side: x is [n, groups*k] (group j in
 * columns j*k..), w is [groups*k, m] (group j's k x m block stacked), b is
 * [1, groups*m] or TL_NONE; the result is [n, groups*m]. One strided GEMM per
 * group and no copies: the experts' second layers in MMoE/PLE. */
tl_node tl_grouped_linear(tl_graph *g, tl_node x, tl_node w, tl_node b, int groups,
                          tl_act act);
tl_node tl_add(tl_graph *g, tl_node a, tl_node b);   /* broadcast b */
tl_node tl_sub(tl_graph *g, tl_node a, tl_node b);   /* broadcast b */
tl_node tl_mul(tl_graph *g, tl_node a, tl_node b);   /* broadcast b */
tl_node tl_scale(tl_graph *g, tl_node a, float c);
tl_node tl_relu(tl_graph *g, tl_node a);
tl_node tl_sigmoid(tl_graph *g, tl_node a);
tl_node tl_tanh(tl_graph *g, tl_node a);
tl_node tl_exp(tl_graph *g, tl_node a);
tl_node tl_softplus(tl_graph *g, tl_node a);
/* Softmax / log-softmax over each row's columns. */
tl_node tl_softmax(tl_graph *g, tl_node a);
tl_node tl_log_softmax(tl_graph *g, tl_node a);
/* Concatenate along columns; all inputs have the same rows. */
tl_node tl_concat(tl_graph *g, int n, const tl_node *parts);
/* Columns [start, start+cols) of a. */
tl_node tl_slice(tl_graph *g, tl_node a, int start, int cols);
/* Embedding lookup for nfields categorical fields sharing one table of
 * sum(vocab) rows x dim: field f uses rows offset_f .. offset_f+vocab[f]-1,
 * offset_f = vocab[0]+...+vocab[f-1]. ids is [n, nfields]; the result is
 * [n, nfields*dim]. An id outside 0..vocab[f]-1 fails the run, naming field
 * and row. The table's gradient is sparse (see tl_graph_touched_rows). */
tl_node tl_embedding(tl_graph *g, tl_node table, tl_node ids, int nfields,
                     const int32_t *vocab);
/* Reductions to 1 x 1: sum or mean of every element. */
tl_node tl_sum(tl_graph *g, tl_node a);
tl_node tl_mean(tl_graph *g, tl_node a);
/* Sum over columns per row: [n, c] -> [n, 1]. */
tl_node tl_row_sum(tl_graph *g, tl_node a);
/* Gated mixture: gate [n, K] (rows usually softmax), experts [n, K*d] with
 * expert k in columns k*d..; out[i] = sum_k gate[i,k] * expert_k[i], [n, d]. */
tl_node tl_gate_mix(tl_graph *g, tl_node gate, tl_node experts, int k);
/* Inverted dropout with drop probability p in training runs; identity in
 * evaluation runs. */
tl_node tl_dropout(tl_graph *g, tl_node a, float p);
/* Identity forward; no gradient flows back. */
tl_node tl_stop_grad(tl_graph *g, tl_node a);
/* Scaled dot-product attention among `tokens` vectors per row: q, k, v are
 * [n, tokens*d]; out token t = sum_j softmax_j(q_t.k_j / sqrt(d)) v_j. */
tl_node tl_attention(tl_graph *g, tl_node q, tl_node k, tl_node v, int tokens);
/* Losses, each a 1 x 1 node. Targets may be any node (labels, or soft
 * targets from another node). weight may be TL_NONE (plain mean over rows) or
 * an [n,1] node of per-row weights w >= 0: loss = sum w_i l_i / sum w_i
 * (0 when sum w = 0), which covers masks (task spaces) and sample weights. */
tl_node tl_bce_logits(tl_graph *g, tl_node logits, tl_node target, tl_node weight);
/* BCE on probabilities (clamped to [1e-7, 1-1e-7]); ESMM's pCTCVR. */
tl_node tl_bce_prob(tl_graph *g, tl_node prob, tl_node target, tl_node weight);
tl_node tl_mse(tl_graph *g, tl_node pred, tl_node target, tl_node weight);
/* Mean over rows of KL(Bern(p) || Bern(q)) for probabilities p, q [n,1]
 * (clamped to [1e-7, 1-1e-7]). */
tl_node tl_bernoulli_kl(tl_graph *g, tl_node p, tl_node q);

/* One layer shared by every token: x is [n, tokens*k] (token t in columns
 * t*k..), w [k, m], b [1, m] or TL_NONE; result [n, tokens*m]. DML's CTFM
 * projections, which every task shares. */
tl_node tl_token_linear(tl_graph *g, tl_node x, tl_node w, tl_node b, int tokens, tl_act act);
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
/* out[i] = fn(ctx, x[i], aux[i]) (aux may be TL_NONE: 0 is passed). No
 * gradient flows through a map: it applies fitted, fixed functions such as a
 * calibrator. ctx must outlive the graph's runs. */
typedef float (*tl_map_fn)(void *ctx, float x, float aux);
tl_node tl_map(tl_graph *g, tl_node x, tl_node aux, tl_map_fn fn, void *ctx);

/* Name a node (shown in errors and dumps). Returns the node. */
tl_node tl_node_name(tl_graph *g, tl_node a, const char *name);

/* Append the gradient computation of the 1x1 node `loss`. Call once, after
 * the last builder and before tl_graph_plan. */
tl_status tl_graph_backward(tl_graph *g, tl_node loss);
/* Allocate and initialise; after this no builder may be called. */
tl_status tl_graph_plan(tl_graph *g);
/* What tl_graph_plan would allocate for a graph of max_batch rows, without
 * allocating: floats of the parameter block (the gradient block is as big),
 * of the arena, and the rows of sparse (embedding) tables, each of which
 * costs 5 bytes of touched-row bookkeeping. Any output may be NULL. The
 * model checks its memory budget with it before planning. */
void tl_graph_plan_size(tl_graph *g, int max_batch, size_t *param_floats, size_t *arena_floats,
                        size_t *sparse_rows);
/* Grow a planned graph to batches of up to max_batch rows: the arena is laid
 * out again and reallocated (its bytes checked first with tl_memory_check
 * against memory_limit, 0 = the available memory); max_pairs > 0 is the pair
 * budget the quadruplet losses were built with, capped again for the new
 * batch as tl_quadruplet_bpr caps it;
 * parameters, gradients and scalars are kept. A smaller max_batch is a
 * no-op. Runs after it are what a graph planned for max_batch computes. */
tl_status tl_graph_set_max_batch(tl_graph *g, int max_batch, uint64_t memory_limit, int max_pairs);

/* ---- running ------------------------------------------------------------ */

/* Rows of the next run: 1 .. max_batch. */
tl_status tl_graph_set_batch(tl_graph *g, int n);
int tl_graph_batch(const tl_graph *g);
/* Buffers of input nodes (max_batch x cols), filled by the caller. */
float *tl_graph_input(tl_graph *g, tl_node input);
int32_t *tl_graph_ids(tl_graph *g, tl_node ids);
tl_status tl_graph_forward(tl_graph *g, int training);
/* Backward pass of the loss given to tl_graph_backward, after a forward. */
tl_status tl_graph_backward_run(tl_graph *g);
/* Value and gradient of any node for the current batch (rows x cols); the
 * gradient is NULL for nodes that need none. Valid until the next run. */
const float *tl_graph_value(const tl_graph *g, tl_node a);
float *tl_graph_grad(tl_graph *g, tl_node a);
void tl_graph_set_scalar(tl_graph *g, tl_node s, float v);
float tl_graph_get_scalar(const tl_graph *g, tl_node s);
/* Clear every parameter gradient (only the touched rows of embeddings). */
void tl_graph_zero_grad(tl_graph *g);

/* ---- inspecting ---------------------------------------------------------- */

int tl_graph_node_count(const tl_graph *g);
int tl_node_rows(const tl_graph *g, tl_node a);   /* current rows */
int tl_node_cols(const tl_graph *g, tl_node a);
int tl_node_batched(const tl_graph *g, tl_node a);
const char *tl_node_get_name(const tl_graph *g, tl_node a);
/* Find a node by name; TL_NONE when absent. */
tl_node tl_graph_find(const tl_graph *g, const char *name);

/* Parameters: all live in one block (tl_graph_params), their gradients in a
 * second block of the same layout. */
typedef struct {
    tl_node node;
    const char *name;
    int rows, cols;
    size_t offset;  /* in floats, into the parameter and gradient blocks */
    int sparse;     /* 1 for embedding tables: row-sparse gradients */
} tl_param_info;

int tl_graph_param_count(const tl_graph *g);
const tl_param_info *tl_graph_param(const tl_graph *g, int i);
/* Index of a parameter node in the parameter list, or -1. */
int tl_graph_param_index(const tl_graph *g, tl_node a);
float *tl_graph_params(tl_graph *g, size_t *count);
float *tl_graph_grads(tl_graph *g, size_t *count);
/* Rows of sparse parameter i written since the last zero_grad (distinct,
 * in first-touched order). For a dense parameter returns NULL, *n = -1. */
const int32_t *tl_graph_touched_rows(const tl_graph *g, int i, int *n);
/* The graph's RNG (dropout, init); exposed so checkpoints can save it. */
tl_rng *tl_graph_rng(tl_graph *g);

#endif
