/* ops/ops.h — engine-internal: the node record, the op table, the node
 * storage builders append to (ops/node.c), and the forward/backward functions
 * of every op family (one .c file per family, each op's forward and backward
 * side by side, same argument order). The builders are declared per family
 * in ops/<family>.h.
 *
 * Backward functions *add* into the gradients of their inputs, and only into
 * inputs whose `grad` is non-NULL (inputs that need no gradient have none).
 *
 * Intermediate gradients are not cleared before a backward run: a node's
 * gradient starts "fresh" (undefined contents). The first backward writing
 * into a fresh gradient may overwrite it (GEMM beta = 0, a plain store)
 * instead of clearing then adding, provided it writes every element, and then
 * calls tl__grad_written; a backward that only adds calls tl__grad_acc first.
 * Ops not marked fresh-aware in the op table (ops/node.c) get their inputs'
 * gradients cleared for them. Parameter gradients are never fresh: backward always adds
 * into them (calling backward twice doubles them).
 */
#ifndef TL_OPS_H
#define TL_OPS_H

#include <string.h>

#include "graph_types.h"
#include "tensor.h"

typedef enum {
    TL_OP_INPUT,
    TL_OP_INPUT_IDS,
    TL_OP_PARAM,
    TL_OP_SCALAR,
    TL_OP_MATMUL,
    TL_OP_LINEAR,
    TL_OP_GROUPED_LINEAR,
    TL_OP_ADD,
    TL_OP_SUB,
    TL_OP_MUL,
    TL_OP_SCALE,
    TL_OP_RELU,
    TL_OP_SIGMOID,
    TL_OP_TANH,
    TL_OP_EXP,
    TL_OP_SOFTPLUS,
    TL_OP_SOFTMAX,
    TL_OP_LOG_SOFTMAX,
    TL_OP_CONCAT,
    TL_OP_SLICE,
    TL_OP_EMBEDDING,
    TL_OP_SUM,
    TL_OP_MEAN,
    TL_OP_ROW_SUM,
    TL_OP_GATE_MIX,
    TL_OP_DROPOUT,
    TL_OP_STOP_GRAD,
    TL_OP_ATTENTION,
    TL_OP_BCE_LOGITS,
    TL_OP_BCE_PROB,
    TL_OP_MSE,
    TL_OP_BERNOULLI_KL,
    TL_OP_TOKEN_LINEAR,
    TL_OP_QUAD_BPR,
    TL_OP_MAP,
    TL_OP_EMBEDDING_BAG,
    TL_OP_BLOCK_MIX,
    TL_OP_SMOOTH_STEP,
    TL_OP_DSELECT_SELECT,
    TL_OP_DSELECT_PENALTY,
    TL_OP_COUNT
} tl_op;

/* How operand b of add/sub/mul is broadcast over a. */
typedef enum { TL_BC_SAME, TL_BC_ROW, TL_BC_COL, TL_BC_SCALAR } tl_bcast;

#define TL_NAME_MAX 48
#define TL_NO_SLOT ((size_t)-1)

typedef struct tl_nodedef {
    tl_op op;
    int batched;        /* rows = current batch */
    int rows;           /* rows when not batched */
    int cols;
    int nin;
    tl_node *in;        /* inputs, nin of them */
    /* op parameters */
    tl_act act;
    int k;              /* groups (grouped_linear), experts (gate_mix), tokens (attention) */
    int start;          /* slice start column */
    float f;            /* scale factor, dropout p, scalar init value, init scale */
    tl_bcast bcast;
    tl_init init;
    int32_t *vocab;     /* embedding: nfields vocab sizes (owned) */
    int32_t *blocks;    /* gate_mix: per expert input, first expert column and expert count (owned) */
    int64_t *offsets;   /* embedding: first table row of each field (owned) */
    tl_map_fn map_fn;   /* map: the function and its context (not owned) */
    void *map_ctx;
    /* planning */
    size_t val_off, grad_off, scratch_off; /* float offsets into the arena */
    size_t scratch_per_row, scratch_fixed; /* floats of op scratch */
    int needs_grad;     /* gradient flows into this node */
    int on_path;        /* ancestor of the loss, so backward visits it */
    int param_index;    /* >= 0 for parameters */
    int grad_fresh;     /* backward run: grad not written yet (see the top of this file) */
    int read_whole;     /* plan: a split GEMM's dW reads all rows of val (tl_parallel_claim) */
    /* resolved at plan time */
    float *val, *grad, *scratch;
    char name[TL_NAME_MAX];
} tl_nodedef;

struct tl_sparse_rows {
    int32_t *rows;      /* distinct rows touched since the last zero_grad */
    int n;
    uint8_t *mark;      /* one byte per table row */
};

struct tl_graph {
    tl_nodedef *nodes;
    int n_nodes, cap_nodes;
    int max_batch, batch;
    int training;       /* of the current run */
    int planned;
    tl_node loss;
    tl_status status;
    char errmsg[512];
    tl_rng init_rng, drop_rng;
    /* parameters */
    tl_param_info *params;
    int n_params, cap_params;
    struct tl_sparse_rows *sparse; /* per parameter; rows == NULL when dense */
    float *param_block, *grad_block;
    size_t param_floats;
    float *arena;
    size_t arena_floats;
};

/* Rows of a node in the current run. */
static inline int tl__rows(const tl_graph *g, const tl_nodedef *n)
{
    return n->batched ? g->batch : n->rows;
}

static inline tl_nodedef *tl__in(tl_graph *g, const tl_nodedef *n, int i)
{
    return &g->nodes[n->in[i]];
}

/* Append a node; returns its id or TL_NONE (the graph records why). */
tl_node tl__node_new(tl_graph *g, tl_op op, int batched, int rows, int cols, int nin,
                     const tl_node *in);
/* Record a build error in g (first one wins) and return TL_NONE. */
tl_node tl__build_fail(tl_graph *g, tl_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* TL_NONE check for builder inputs: 1 when all valid, 0 otherwise (and a
 * message when an id is out of range). */
int tl__valid(tl_graph *g, int n, const tl_node *ids);
/* "[B x 64]" / "[1 x 1]" for messages. */
const char *tl__shape(const tl_graph *g, tl_node a, char *buf, size_t n);
/* The gradient of d ready for adding into: cleared first when fresh. */
static inline float *tl__grad_acc(const tl_graph *g, tl_nodedef *d)
{
    if (d->grad_fresh) {
        memset(d->grad, 0, (size_t)tl__rows(g, d) * (size_t)d->cols * sizeof(float));
        d->grad_fresh = 0;
    }
    return d->grad;
}

/* After a backward overwrote all of d's fresh gradient. */
static inline void tl__grad_written(tl_nodedef *d) { d->grad_fresh = 0; }

#define TL_GATE_MIX_MAX_BLOCKS 16

/* Gated mixture whose experts come from several nodes without copying them:
 * block b is expert_count[b] experts of width `d` starting at column
 * first[b] * d of src[b]; experts are numbered in block order. gate is
 * [n, sum of counts]. tl_gate_mix is the single-block case. */
tl_node tl__gate_mix_blocks(tl_graph *g, tl_node gate, int nblocks, const tl_node *src,
                            const int *first, const int *count, int d);

/* Row kernels: r += x, r += a x, r = a x over n floats. Written in blocks of
 * 8 with restrict pointers, the form GCC's -O2 vectoriser (cost model "very
 * cheap") accepts; plain IEEE operations in the order written. */
/* for (i = 0; i < n; i++) body; in blocks of 8, then the tail: the loop
 * shape the row kernels below use, so GCC's -O2 vectoriser takes loops of
 * any body over restrict pointers. Each element's body runs as written. */
#define TL__FOR8(i, n, body)                                                                    \
    do {                                                                                        \
        size_t i##_b = 0, i##_n = (size_t)(n);                                                  \
        for (; i##_b + 8 <= i##_n; i##_b += 8)                                                  \
            for (size_t i##_l = 0; i##_l < 8; i##_l++) {                                        \
                size_t i = i##_b + i##_l;                                                       \
                body;                                                                           \
            }                                                                                   \
        for (size_t i = i##_b; i < i##_n; i++) { body; }                                        \
    } while (0)

static inline void tl__add_row(float *restrict r, const float *restrict x, int n)
{
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) r[j + l] += x[j + l];
    for (; j < n; j++) r[j] += x[j];
}

static inline void tl__axpy_row(float *restrict r, float a, const float *restrict x, int n)
{
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) r[j + l] += a * x[j + l];
    for (; j < n; j++) r[j] += a * x[j];
}

static inline void tl__scale_row(float *restrict r, float a, const float *restrict x, int n)
{
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) r[j + l] = a * x[j + l];
    for (; j < n; j++) r[j] = a * x[j];
}

/* Advance r by k draws, as k calls of tl_rng_next would, in about 256 x
 * (set bits of k) steps when k >= 256 (ops/rng_jump.c): a pass drawing one
 * number per element starts each chunk at its place in the stream. */
void tl__rng_jump(tl_rng *r, uint64_t k);

/* Mark rows of sparse parameter `param_index` as touched. */
void tl__touch_row(tl_graph *g, int param_index, int32_t row);

typedef tl_status (*tl_forward_fn)(tl_graph *g, tl_nodedef *n);
typedef void (*tl_backward_fn)(tl_graph *g, tl_nodedef *n);

typedef struct {
    const char *name;
    tl_forward_fn forward;
    tl_backward_fn backward; /* NULL: no gradient flows through */
    int fresh_aware;         /* backward handles fresh input gradients (above) */
} tl_op_entry;


/* Every op's entry, indexed by tl_op (ops/node.c). */
extern const tl_op_entry tl_op_table[TL_OP_COUNT];

/* Forward and backward per op family. */
tl_status tl_op_matmul_forward(tl_graph *g, tl_nodedef *n);
void tl_op_matmul_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_linear_forward(tl_graph *g, tl_nodedef *n);
void tl_op_linear_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_grouped_linear_forward(tl_graph *g, tl_nodedef *n);
void tl_op_grouped_linear_backward(tl_graph *g, tl_nodedef *n);

tl_status tl_op_binary_forward(tl_graph *g, tl_nodedef *n);
void tl_op_binary_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_unary_forward(tl_graph *g, tl_nodedef *n);
void tl_op_unary_backward(tl_graph *g, tl_nodedef *n);

tl_status tl_op_softmax_forward(tl_graph *g, tl_nodedef *n);
void tl_op_softmax_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_reduce_forward(tl_graph *g, tl_nodedef *n);
void tl_op_reduce_backward(tl_graph *g, tl_nodedef *n);

tl_status tl_op_concat_forward(tl_graph *g, tl_nodedef *n);
void tl_op_concat_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_slice_forward(tl_graph *g, tl_nodedef *n);
void tl_op_slice_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_embedding_forward(tl_graph *g, tl_nodedef *n);
void tl_op_embedding_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_dropout_forward(tl_graph *g, tl_nodedef *n);
void tl_op_dropout_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_stop_grad_forward(tl_graph *g, tl_nodedef *n);

tl_status tl_op_block_mix_forward(tl_graph *g, tl_nodedef *n);
void tl_op_block_mix_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_smooth_step_forward(tl_graph *g, tl_nodedef *n);
void tl_op_smooth_step_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_dselect_select_forward(tl_graph *g, tl_nodedef *n);
void tl_op_dselect_select_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_dselect_penalty_forward(tl_graph *g, tl_nodedef *n);
void tl_op_dselect_penalty_backward(tl_graph *g, tl_nodedef *n);

tl_status tl_op_gate_mix_forward(tl_graph *g, tl_nodedef *n);
void tl_op_gate_mix_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_attention_forward(tl_graph *g, tl_nodedef *n);
void tl_op_attention_backward(tl_graph *g, tl_nodedef *n);

tl_status tl_op_loss_forward(tl_graph *g, tl_nodedef *n);
void tl_op_loss_backward(tl_graph *g, tl_nodedef *n);

tl_status tl_op_token_linear_forward(tl_graph *g, tl_nodedef *n);
void tl_op_token_linear_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_quad_bpr_forward(tl_graph *g, tl_nodedef *n);
void tl_op_quad_bpr_backward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_map_forward(tl_graph *g, tl_nodedef *n);
tl_status tl_op_embedding_bag_forward(tl_graph *g, tl_nodedef *n);
void tl_op_embedding_bag_backward(tl_graph *g, tl_nodedef *n);

#endif
