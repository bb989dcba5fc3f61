/* ops/node.c — the op table (every op's name, forward and backward) and the
 * node storage every builder appends to: new nodes, build errors, input
 * checks, shape strings, touched embedding rows.
 *
 * They live here rather than in graph.c so that the ops need nothing from
 * graph.c: graph.h includes the builders' headers, graph.c includes
 * ops/ops.h, and no include points back. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"

const tl_op_entry tl_op_table[TL_OP_COUNT] = {
    [TL_OP_INPUT] = {"input", NULL, NULL},
    [TL_OP_INPUT_IDS] = {"input_ids", NULL, NULL},
    [TL_OP_PARAM] = {"param", NULL, NULL},
    [TL_OP_SCALAR] = {"scalar", NULL, NULL},
    [TL_OP_MATMUL] = {"matmul", tl_op_matmul_forward, tl_op_matmul_backward, 1},
    [TL_OP_LINEAR] = {"linear", tl_op_linear_forward, tl_op_linear_backward, 1},
    [TL_OP_GROUPED_LINEAR] = {"grouped_linear", tl_op_grouped_linear_forward,
                              tl_op_grouped_linear_backward, 1},
    [TL_OP_ADD] = {"add", tl_op_binary_forward, tl_op_binary_backward, 1},
    [TL_OP_SUB] = {"sub", tl_op_binary_forward, tl_op_binary_backward, 1},
    [TL_OP_MUL] = {"mul", tl_op_binary_forward, tl_op_binary_backward, 1},
    [TL_OP_SCALE] = {"scale", tl_op_unary_forward, tl_op_unary_backward, 1},
    [TL_OP_RELU] = {"relu", tl_op_unary_forward, tl_op_unary_backward, 1},
    [TL_OP_SIGMOID] = {"sigmoid", tl_op_unary_forward, tl_op_unary_backward, 1},
    [TL_OP_TANH] = {"tanh", tl_op_unary_forward, tl_op_unary_backward, 1},
    [TL_OP_EXP] = {"exp", tl_op_unary_forward, tl_op_unary_backward, 1},
    [TL_OP_SOFTPLUS] = {"softplus", tl_op_unary_forward, tl_op_unary_backward, 1},
    [TL_OP_SOFTMAX] = {"softmax", tl_op_softmax_forward, tl_op_softmax_backward, 1},
    [TL_OP_LOG_SOFTMAX] = {"log_softmax", tl_op_softmax_forward, tl_op_softmax_backward, 1},
    [TL_OP_CONCAT] = {"concat", tl_op_concat_forward, tl_op_concat_backward, 1},
    [TL_OP_SLICE] = {"slice", tl_op_slice_forward, tl_op_slice_backward, 1},
    [TL_OP_EMBEDDING] = {"embedding", tl_op_embedding_forward, tl_op_embedding_backward, 1},
    [TL_OP_SUM] = {"sum", tl_op_reduce_forward, tl_op_reduce_backward, 1},
    [TL_OP_MEAN] = {"mean", tl_op_reduce_forward, tl_op_reduce_backward, 1},
    [TL_OP_ROW_SUM] = {"row_sum", tl_op_reduce_forward, tl_op_reduce_backward, 1},
    [TL_OP_GATE_MIX] = {"gate_mix", tl_op_gate_mix_forward, tl_op_gate_mix_backward, 1},
    [TL_OP_DROPOUT] = {"dropout", tl_op_dropout_forward, tl_op_dropout_backward, 1},
    [TL_OP_STOP_GRAD] = {"stop_grad", tl_op_stop_grad_forward, NULL},
    [TL_OP_ATTENTION] = {"attention", tl_op_attention_forward, tl_op_attention_backward, 1},
    [TL_OP_BCE_LOGITS] = {"bce_logits", tl_op_loss_forward, tl_op_loss_backward, 1},
    [TL_OP_BCE_PROB] = {"bce_prob", tl_op_loss_forward, tl_op_loss_backward, 1},
    [TL_OP_MSE] = {"mse", tl_op_loss_forward, tl_op_loss_backward, 1},
    [TL_OP_BERNOULLI_KL] = {"bernoulli_kl", tl_op_loss_forward, tl_op_loss_backward, 1},
    [TL_OP_TOKEN_LINEAR] = {"token_linear", tl_op_token_linear_forward, tl_op_token_linear_backward},
    [TL_OP_QUAD_BPR] = {"quadruplet_bpr", tl_op_quad_bpr_forward, tl_op_quad_bpr_backward},
    [TL_OP_MAP] = {"map", tl_op_map_forward, NULL},
    [TL_OP_EMBEDDING_BAG] = {"embedding_bag", tl_op_embedding_bag_forward, tl_op_embedding_bag_backward, 1},
    [TL_OP_BLOCK_MIX] = {"block_mix", tl_op_block_mix_forward, tl_op_block_mix_backward},
    [TL_OP_SMOOTH_STEP] = {"smooth_step", tl_op_smooth_step_forward, tl_op_smooth_step_backward},
    [TL_OP_DSELECT_SELECT] = {"dselect_select", tl_op_dselect_select_forward,
                              tl_op_dselect_select_backward},
    [TL_OP_DSELECT_PENALTY] = {"dselect_penalty", tl_op_dselect_penalty_forward,
                               tl_op_dselect_penalty_backward},
};

tl_node tl__build_fail(tl_graph *g, tl_status s, const char *fmt, ...)
{
    if (g->status == TL_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->errmsg, sizeof g->errmsg, fmt, ap);
        va_end(ap);
        g->status = s;
    }
    tl_fail(g->status, "%s", g->errmsg);
    return TL_NONE;
}

int tl__valid(tl_graph *g, int n, const tl_node *ids)
{
    if (g->status != TL_OK) return 0;
    if (g->planned) {
        tl__build_fail(g, TL_ERR_STATE, "graph already planned: no more nodes can be added");
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (ids[i] == TL_NONE) return 0;
        if (ids[i] < 0 || ids[i] >= g->n_nodes) {
            tl__build_fail(g, TL_ERR_ARG, "node id %d does not exist (graph has %d nodes)",
                           (int)ids[i], g->n_nodes);
            return 0;
        }
    }
    return 1;
}

const char *tl__shape(const tl_graph *g, tl_node a, char *buf, size_t n)
{
    const tl_nodedef *d = &g->nodes[a];
    if (d->batched)
        snprintf(buf, n, "[B x %d]", d->cols);
    else
        snprintf(buf, n, "[%d x %d]", d->rows, d->cols);
    return buf;
}

tl_node tl__node_new(tl_graph *g, tl_op op, int batched, int rows, int cols, int nin,
                     const tl_node *in)
{
    if (cols < 1 || (!batched && rows < 1))
        return tl__build_fail(g, TL_ERR_SHAPE, "%s: shape [%d x %d] must be positive",
                              tl_op_table[op].name, batched ? g->max_batch : rows, cols);
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
        tl_nodedef *nodes = tl_realloc(g->nodes, (size_t)cap * sizeof *nodes, "graph nodes");
        if (!nodes) return tl__build_fail(g, TL_ERR_NOMEM, "%s", tl_errmsg());
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    tl_nodedef *d = &g->nodes[g->n_nodes];
    memset(d, 0, sizeof *d);
    if (nin > 0) {
        d->in = tl_malloc((size_t)nin * sizeof *d->in, "node inputs");
        if (!d->in) return tl__build_fail(g, TL_ERR_NOMEM, "%s", tl_errmsg());
        memcpy(d->in, in, (size_t)nin * sizeof *in);
    }
    d->op = op;
    d->batched = batched;
    d->rows = batched ? 0 : rows;
    d->cols = cols;
    d->nin = nin;
    d->param_index = -1;
    d->val_off = d->grad_off = d->scratch_off = TL_NO_SLOT;
    snprintf(d->name, sizeof d->name, "%s#%d", tl_op_table[op].name, g->n_nodes);
    return (tl_node)g->n_nodes++;
}

void tl__touch_row(tl_graph *g, int pi, int32_t row)
{
    struct tl_sparse_rows *sp = &g->sparse[pi];
    if (!sp->mark[row]) {
        sp->mark[row] = 1;
        sp->rows[sp->n++] = row;
    }
}
