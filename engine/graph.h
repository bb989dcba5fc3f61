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
#include "graph_types.h"
#include "tensor.h"

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
 * and the op named. The builders of each op family are declared in its
 * header under ops/, all included here. */
#include "ops/block_mix.h"
#include "ops/dselect.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/loss.h"
#include "ops/mix.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/token.h"

/* Embedding lookup for nfields categorical fields sharing one table of
 * sum(vocab) rows x dim: field f uses rows offset_f .. offset_f+vocab[f]-1,
 * offset_f = vocab[0]+...+vocab[f-1]. ids is [n, nfields]; the result is
 * [n, nfields*dim]. An id outside 0..vocab[f]-1 fails the run, naming field
 * and row. The table's gradient is sparse (see tl_graph_touched_rows). */
tl_node tl_embedding(tl_graph *g, tl_node table, tl_node ids, int nfields,
                     const int32_t *vocab);

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
/* A backward pass split at a cut, for gradients taken at intermediate nodes
 * (the representations a multi-task model's towers read): the nodes before
 * index n_below are below the cut, the seeds are nodes below it that nodes
 * above read. tl_graph_cut_check: TL_OK when every node above reads, of the
 * nodes below with a gradient, only seeds (the message names the first that
 * does not). _above: the pass over the nodes from n_below on; each seed's
 * gradient is then the sum of its readers' (parameter gradients add as in a
 * full pass). _below: the pass over the nodes below, starting from the seeds'
 * gradients as the caller left them (tl_graph_grad). Running _above, then
 * _below without changing the seeds, adds what tl_graph_backward_run adds. */
tl_status tl_graph_cut_check(const tl_graph *g, int n_below, int n_seed, const tl_node *seed);
tl_status tl_graph_backward_run_above(tl_graph *g, int n_below, int n_seed, const tl_node *seed);
tl_status tl_graph_backward_run_below(tl_graph *g, int n_below, int n_seed, const tl_node *seed);
/* Value and gradient of any node for the current batch (rows x cols); the
 * gradient is NULL for nodes that need none. Valid until the next run. */
const float *tl_graph_value(const tl_graph *g, tl_node a);
float *tl_graph_grad(tl_graph *g, tl_node a);
void tl_graph_set_scalar(tl_graph *g, tl_node s, float v);
float tl_graph_get_scalar(const tl_graph *g, tl_node s);
/* Clear every parameter gradient (only the touched rows of embeddings). */
void tl_graph_zero_grad(tl_graph *g);
/* tl_graph_zero_grad for a graph whose gradients are all zero but for the
 * touched-row lists of its sparse parameters: empties those (the optimizer
 * step clears the gradients it applies as it goes). */
void tl__graph_reset_touched(tl_graph *g);

/* ---- inspecting ---------------------------------------------------------- */

int tl_graph_node_count(const tl_graph *g);
int tl_node_rows(const tl_graph *g, tl_node a);   /* current rows */
int tl_node_cols(const tl_graph *g, tl_node a);
int tl_node_batched(const tl_graph *g, tl_node a);
const char *tl_node_get_name(const tl_graph *g, tl_node a);
/* Find a node by name; TL_NONE when absent. */
tl_node tl_graph_find(const tl_graph *g, const char *name);

/* Parameters (tl_param_info, graph_types.h): all live in one block
 * (tl_graph_params), their gradients in a second block of the same layout. */
int tl_graph_param_count(const tl_graph *g);
const tl_param_info *tl_graph_param(const tl_graph *g, int i);
/* Index of a parameter node in the parameter list, or -1. */
int tl_graph_param_index(const tl_graph *g, tl_node a);
float *tl_graph_params(tl_graph *g, size_t *count);
float *tl_graph_grads(tl_graph *g, size_t *count);
/* Rows of sparse parameter i written since the last zero_grad (distinct,
 * in first-touched order). For a dense parameter returns NULL, *n = -1. */
const int32_t *tl_graph_touched_rows(const tl_graph *g, int i, int *n);
/* Mark rows of sparse parameter i as touched (their gradients were written
 * by the caller, e.g. data parallelism adding other ranks' rows), so that
 * optimizers update them. TL_ERR_ARG for a dense parameter or a row outside
 * the table. */
tl_status tl_graph_touch_rows(tl_graph *g, int i, const int32_t *rows, int n);
/* The graph's RNG (dropout, init); exposed so checkpoints can save it. */
tl_rng *tl_graph_rng(tl_graph *g);

#endif
