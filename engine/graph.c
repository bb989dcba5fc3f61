/* graph.c — node storage, leaves, gradient marking, the memory plan and the
 * forward/backward runs. The ops themselves live in ops/. */
#include "graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops/ops.h"
#include "parallel.h"


/* ---- building ------------------------------------------------------------ */

tl_graph *tl_graph_new(int max_batch, uint64_t seed)
{
    if (max_batch < 1) {
        tl_fail(TL_ERR_ARG, "graph max_batch must be >= 1, got %d", max_batch);
        return NULL;
    }
    tl_graph *g = tl_calloc(1, sizeof *g, "graph");
    if (!g) return NULL;
    g->max_batch = max_batch;
    g->batch = max_batch;
    g->loss = TL_NONE;
    tl_rng_seed(&g->init_rng, seed);
    tl_rng_seed(&g->drop_rng, seed ^ 0x5deece66dULL);
    return g;
}

void tl_graph_free(tl_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) {
        tl_free(g->nodes[i].in);
        tl_free(g->nodes[i].vocab);
        tl_free(g->nodes[i].offsets);
        tl_free(g->nodes[i].blocks);
    }
    if (g->sparse)
        for (int i = 0; i < g->n_params; i++) {
            tl_free(g->sparse[i].rows);
            tl_free(g->sparse[i].mark);
        }
    tl_free(g->sparse);
    tl_free(g->params);
    tl_free(g->nodes);
    tl_free_aligned(g->param_block);
    tl_free_aligned(g->grad_block);
    tl_free_aligned(g->arena);
    tl_free(g);
}

tl_status tl_graph_status(const tl_graph *g) { return g->status; }
const char *tl_graph_errmsg(const tl_graph *g) { return g->errmsg; }
int tl_graph_max_batch(const tl_graph *g) { return g->max_batch; }

tl_node tl_node_name(tl_graph *g, tl_node a, const char *name)
{
    if (!tl__valid(g, 1, &a)) return TL_NONE;
    snprintf(g->nodes[a].name, TL_NAME_MAX, "%s", name);
    return a;
}

tl_node tl_input(tl_graph *g, int cols, const char *name)
{
    if (!tl__valid(g, 0, NULL)) return TL_NONE;
    tl_node a = tl__node_new(g, TL_OP_INPUT, 1, 0, cols, 0, NULL);
    return (a != TL_NONE && name) ? tl_node_name(g, a, name) : a;
}

tl_node tl_input_ids(tl_graph *g, int cols, const char *name)
{
    if (!tl__valid(g, 0, NULL)) return TL_NONE;
    tl_node a = tl__node_new(g, TL_OP_INPUT_IDS, 1, 0, cols, 0, NULL);
    return (a != TL_NONE && name) ? tl_node_name(g, a, name) : a;
}

static tl_node add_param(tl_graph *g, int rows, int cols, tl_init init, float scale,
                         const char *name, int sparse)
{
    if (!tl__valid(g, 0, NULL)) return TL_NONE;
    tl_node a = tl__node_new(g, TL_OP_PARAM, 0, rows, cols, 0, NULL);
    if (a == TL_NONE) return TL_NONE;
    if (g->n_params == g->cap_params) {
        int cap = g->cap_params ? 2 * g->cap_params : 32;
        tl_param_info *p = tl_realloc(g->params, (size_t)cap * sizeof *p, "parameter list");
        if (!p) return tl__build_fail(g, TL_ERR_NOMEM, "%s", tl_errmsg());
        g->params = p;
        g->cap_params = cap;
    }
    tl_nodedef *d = &g->nodes[a];
    d->init = init;
    d->f = scale;
    d->param_index = g->n_params;
    d->needs_grad = 1;
    if (name) tl_node_name(g, a, name);
    tl_param_info *p = &g->params[g->n_params++];
    p->node = a;
    p->name = NULL; /* resolved at plan time: node names may still change */
    p->rows = rows;
    p->cols = cols;
    p->offset = 0;
    p->sparse = sparse;
    return a;
}

tl_node tl_param(tl_graph *g, int rows, int cols, tl_init init, float scale, const char *name)
{
    return add_param(g, rows, cols, init, scale, name, 0);
}

/* Embedding tables are parameters with row-sparse gradients; tl_embedding
 * flips the flag on the table it is given. */
static void mark_sparse(tl_graph *g, tl_node table)
{
    int pi = g->nodes[table].param_index;
    if (pi >= 0) g->params[pi].sparse = 1;
}

tl_node tl_scalar(tl_graph *g, float value, const char *name)
{
    if (!tl__valid(g, 0, NULL)) return TL_NONE;
    tl_node a = tl__node_new(g, TL_OP_SCALAR, 0, 1, 1, 0, NULL);
    if (a == TL_NONE) return TL_NONE;
    g->nodes[a].f = value;
    return name ? tl_node_name(g, a, name) : a;
}

/* ---- builders of ops that need graph-level bookkeeping ------------------ */

tl_node tl_embedding(tl_graph *g, tl_node table, tl_node ids, int nfields, const int32_t *vocab)
{
    tl_node in[2] = {table, ids};
    char s1[32], s2[32];
    if (!tl__valid(g, 2, in)) return TL_NONE;
    tl_nodedef *t = &g->nodes[table], *x = &g->nodes[ids];
    if (t->op != TL_OP_PARAM)
        return tl__build_fail(g, TL_ERR_ARG, "embedding: table '%s' must be a parameter", t->name);
    if (x->op != TL_OP_INPUT_IDS || x->cols != nfields)
        return tl__build_fail(g, TL_ERR_SHAPE,
                              "embedding: ids '%s' must be an id input with %d columns, got %s %s",
                              x->name, nfields, tl_op_table[x->op].name, tl__shape(g, ids, s1, sizeof s1));
    int64_t total = 0;
    for (int f = 0; f < nfields; f++) {
        if (vocab[f] < 1)
            return tl__build_fail(g, TL_ERR_ARG, "embedding: field %d has vocabulary size %d",
                                  f, (int)vocab[f]);
        total += vocab[f];
    }
    if (total != t->rows)
        return tl__build_fail(g, TL_ERR_SHAPE,
                              "embedding: table %s has %d rows but the %d fields' vocabularies "
                              "sum to %lld", tl__shape(g, table, s2, sizeof s2), t->rows, nfields,
                              (long long)total);
    tl_node a = tl__node_new(g, TL_OP_EMBEDDING, 1, 0, nfields * t->cols, 2, in);
    if (a == TL_NONE) return TL_NONE;
    tl_nodedef *d = &g->nodes[a];
    d->k = nfields;
    d->vocab = tl_malloc((size_t)nfields * sizeof *d->vocab, "embedding vocab");
    d->offsets = tl_malloc((size_t)nfields * sizeof *d->offsets, "embedding offsets");
    if (!d->vocab || !d->offsets) return tl__build_fail(g, TL_ERR_NOMEM, "%s", tl_errmsg());
    int64_t off = 0;
    for (int f = 0; f < nfields; f++) {
        d->vocab[f] = vocab[f];
        d->offsets[f] = off;
        off += vocab[f];
    }
    mark_sparse(g, table);
    return a;
}

/* ---- backward and plan --------------------------------------------------- */

tl_status tl_graph_backward(tl_graph *g, tl_node loss)
{
    if (g->status != TL_OK) return tl_fail(g->status, "%s", g->errmsg);
    if (g->planned) return tl_fail(TL_ERR_STATE, "tl_graph_backward: graph already planned");
    if (loss < 0 || loss >= g->n_nodes)
        return tl_fail(TL_ERR_ARG, "tl_graph_backward: node %d does not exist", (int)loss);
    tl_nodedef *l = &g->nodes[loss];
    if (l->batched || l->rows != 1 || l->cols != 1) {
        char s[32];
        return tl_fail(TL_ERR_SHAPE, "tl_graph_backward: loss '%s' must be 1 x 1, got %s",
                       l->name, tl__shape(g, loss, s, sizeof s));
    }
    /* Forward pass over ids: which nodes depend on a parameter. */
    for (int i = 0; i < g->n_nodes; i++) {
        tl_nodedef *d = &g->nodes[i];
        if (d->op == TL_OP_PARAM) continue;
        d->needs_grad = 0;
        if (tl_op_table[d->op].backward == NULL) continue;
        for (int j = 0; j < d->nin; j++)
            if (g->nodes[d->in[j]].needs_grad) d->needs_grad = 1;
    }
    /* Reverse pass: which nodes the loss depends on. */
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].on_path = 0;
    l->on_path = 1;
    for (int i = loss; i >= 0; i--) {
        tl_nodedef *d = &g->nodes[i];
        if (!d->on_path) continue;
        for (int j = 0; j < d->nin; j++) g->nodes[d->in[j]].on_path = 1;
    }
    g->loss = loss;
    return TL_OK;
}

/* Rows of per-thread partial sums planned for a bias gradient: the thread
 * count now, and at least 8 so that raising it later still splits (a
 * pass uses no more parts than it has rows for). */
static int partial_slots(void)
{
    int t = tl_get_threads();
    return t < 8 ? 8 : t > TL_PARALLEL_MAX_THREADS ? TL_PARALLEL_MAX_THREADS : t;
}

/* Floats of op scratch each node needs, per row and fixed, for a graph of
 * max_batch mb. */
static void node_scratch(const tl_nodedef *d, size_t mb, size_t *per_row, size_t *fixed)
{
    *per_row = *fixed = 0;
    switch (d->op) {
    case TL_OP_LINEAR:
    case TL_OP_GROUPED_LINEAR: /* the activation's gradient; per-thread bias sums */
        if (d->act != TL_ACT_NONE) *per_row = (size_t)d->cols;
        if (d->nin > 2) *fixed = (size_t)partial_slots() * (size_t)d->cols;
        break;
    case TL_OP_DROPOUT:
        *per_row = (size_t)d->cols;
        break;
    case TL_OP_TOKEN_LINEAR:
        if (d->act != TL_ACT_NONE) *per_row = (size_t)d->cols;
        break;
    case TL_OP_QUAD_BPR: /* group member lists, counts, sampled pairs */
        *fixed = mb + 4 + 3 * (1 + 2 * (size_t)d->k);
        break;
    case TL_OP_ATTENTION:
        *per_row = (size_t)d->k * (size_t)d->k * 2;
        break;
    case TL_OP_BCE_LOGITS:
    case TL_OP_BCE_PROB:
    case TL_OP_MSE:
    case TL_OP_BERNOULLI_KL:
        *fixed = 1; /* the normaliser sum(w) */
        break;
    default:
        break;
    }
}

/* Lay out the arena for max_batch mb: with `assign`, store each node's
 * offsets and scratch sizes. Returns the arena's floats. */
static size_t arena_layout(tl_graph *g, size_t mb, int assign)
{
    size_t af = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        tl_nodedef *d = &g->nodes[i];
        size_t rows = d->batched ? mb : (size_t)d->rows;
        size_t size = (rows * (size_t)d->cols + 15) & ~(size_t)15;
        size_t per_row, fixed;
        node_scratch(d, mb, &per_row, &fixed);
        if (assign) {
            d->scratch_per_row = per_row;
            d->scratch_fixed = fixed;
        }
        if (d->op != TL_OP_PARAM) {
            if (assign) d->val_off = af;
            af += size;
            if (d->needs_grad && d->on_path) {
                if (assign) d->grad_off = af;
                af += size;
            }
        }
        size_t scr = per_row * rows + fixed;
        if (scr) {
            if (assign) d->scratch_off = af;
            af += (scr + 15) & ~(size_t)15;
        }
    }
    return af;
}

static size_t param_layout_floats(const tl_graph *g)
{
    size_t pf = 0;
    for (int i = 0; i < g->n_params; i++)
        pf += ((size_t)g->params[i].rows * (size_t)g->params[i].cols + 15) & ~(size_t)15;
    return pf;
}

void tl_graph_plan_size(tl_graph *g, int max_batch, size_t *param_floats, size_t *arena_floats,
                        size_t *sparse_rows)
{
    size_t rows = 0;
    for (int i = 0; i < g->n_params; i++)
        if (g->params[i].sparse) rows += (size_t)g->params[i].rows;
    if (param_floats) *param_floats = param_layout_floats(g);
    if (arena_floats) *arena_floats = arena_layout(g, (size_t)(max_batch > 0 ? max_batch : 1), 0);
    if (sparse_rows) *sparse_rows = rows;
}

/* Point every non-parameter node into the arena at its planned offsets,
 * and set the scalars' values. */
static void assign_arena(tl_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        tl_nodedef *d = &g->nodes[i];
        if (d->op != TL_OP_PARAM) {
            d->val = g->arena + d->val_off;
            d->grad = d->grad_off != TL_NO_SLOT ? g->arena + d->grad_off : NULL;
        }
        d->scratch = d->scratch_off != TL_NO_SLOT ? g->arena + d->scratch_off : NULL;
        if (d->op == TL_OP_SCALAR) d->val[0] = d->f;
    }
}

tl_status tl_graph_plan(tl_graph *g)
{
    if (g->status != TL_OK) return tl_fail(g->status, "%s", g->errmsg);
    if (g->planned) return TL_OK;
    size_t mb = (size_t)g->max_batch;

    /* Parameters: one block, gradients: a second block of the same layout. */
    size_t pf = 0;
    for (int i = 0; i < g->n_params; i++) {
        tl_param_info *p = &g->params[i];
        p->offset = pf;
        p->name = g->nodes[p->node].name;
        pf += ((size_t)p->rows * (size_t)p->cols + 15) & ~(size_t)15;
    }
    g->param_floats = pf;
    g->param_block = tl_malloc_aligned((pf ? pf : 1) * sizeof(float), "parameters");
    g->grad_block = tl_malloc_aligned((pf ? pf : 1) * sizeof(float), "parameter gradients");
    g->sparse = tl_calloc((size_t)(g->n_params ? g->n_params : 1), sizeof *g->sparse,
                          "sparse row lists");
    if (!g->param_block || !g->grad_block || !g->sparse) return TL_ERR_NOMEM;
    /* Zero both, padding included, so the blocks are deterministic bytes. */
    memset(g->param_block, 0, (pf ? pf : 1) * sizeof(float));
    memset(g->grad_block, 0, (pf ? pf : 1) * sizeof(float));
    for (int i = 0; i < g->n_params; i++) {
        tl_param_info *p = &g->params[i];
        if (!p->sparse) continue;
        g->sparse[i].rows = tl_malloc((size_t)p->rows * sizeof(int32_t), "touched rows");
        g->sparse[i].mark = tl_calloc((size_t)p->rows, 1, "touched marks");
        if (!g->sparse[i].rows || !g->sparse[i].mark) return TL_ERR_NOMEM;
    }

    /* Arena: every non-parameter value, gradient and scratch buffer. */
    size_t af = arena_layout(g, mb, 1);
    g->arena_floats = af;
    g->arena = tl_malloc_aligned((af ? af : 1) * sizeof(float), "activation arena");
    if (!g->arena) return TL_ERR_NOMEM;
    memset(g->arena, 0, (af ? af : 1) * sizeof(float));

    for (int i = 0; i < g->n_nodes; i++) {
        tl_nodedef *d = &g->nodes[i];
        if (d->op == TL_OP_PARAM) {
            tl_param_info *p = &g->params[d->param_index];
            d->val = g->param_block + p->offset;
            d->grad = g->grad_block + p->offset;
            tl_status s = tl_init_fill(d->val, p->rows, p->cols, d->init, d->f, &g->init_rng);
            if (s != TL_OK) return tl_fail_context(s, "initialising parameter '%s'", d->name);
        }
    }
    assign_arena(g);
    /* Values that a weight-gradient GEMM reads whole (every thread's dW
     * reads all rows of the layer's input): their writers claim their rows
     * (tl_parallel_claim). */
    for (int i = 0; i < g->n_nodes; i++) {
        tl_nodedef *d = &g->nodes[i];
        int gemm = d->op == TL_OP_LINEAR || d->op == TL_OP_GROUPED_LINEAR || d->op == TL_OP_MATMUL ||
                   d->op == TL_OP_TOKEN_LINEAR;
        if (gemm && d->on_path) g->nodes[d->in[0]].read_whole = 1;
    }
    g->planned = 1;
    return TL_OK;
}

tl_status tl_graph_set_max_batch(tl_graph *g, int max_batch, uint64_t memory_limit, int max_pairs)
{
    if (!g->planned) return tl_fail(TL_ERR_STATE, "tl_graph_set_max_batch before tl_graph_plan");
    if (max_batch < 1 || max_batch > 1 << 24)
        return tl_fail(TL_ERR_ARG, "graph max_batch %d outside 1..%d", max_batch, 1 << 24);
    if (max_batch <= g->max_batch) return TL_OK;
    /* The quadruplet loss capped its pair budget by the old batch (a term
     * cannot have more pairs): cap it by the new one, as building for
     * max_batch would have. Its scratch grows with it. */
    int64_t cap = ((int64_t)max_batch / 2 + 1) * ((int64_t)max_batch / 2 + 1);
    int quad_k = max_pairs > 0 ? (int)(max_pairs < cap ? max_pairs : cap) : 0;
    enum { MAX_QUAD = 64 };
    int old_k[MAX_QUAD], n_old = 0;
    for (int i = 0; i < g->n_nodes && quad_k; i++)
        if (g->nodes[i].op == TL_OP_QUAD_BPR && n_old++ == MAX_QUAD)
            return tl_fail(TL_ERR_ARG, "graph: more than %d quadruplet losses to replan", MAX_QUAD);
    for (int i = 0, j = 0; i < g->n_nodes && quad_k; i++)
        if (g->nodes[i].op == TL_OP_QUAD_BPR) {
            old_k[j++] = g->nodes[i].k;
            g->nodes[i].k = quad_k;
        }
    size_t af = arena_layout(g, (size_t)max_batch, 0);
    tl_status s = tl_memory_check((uint64_t)af * sizeof(float), memory_limit, "the graph's activations");
    float *arena = s == TL_OK ? tl_malloc_aligned((af ? af : 1) * sizeof(float), "activation arena") : NULL;
    if (!arena) { /* unchanged: put the pair budgets back */
        for (int i = 0, j = 0; i < g->n_nodes && quad_k; i++)
            if (g->nodes[i].op == TL_OP_QUAD_BPR) g->nodes[i].k = old_k[j++];
        return s != TL_OK ? tl_fail_context(s, "batch %d", max_batch) : TL_ERR_NOMEM;
    }
    memset(arena, 0, (af ? af : 1) * sizeof(float));
    tl_free_aligned(g->arena);
    g->arena = arena;
    g->max_batch = max_batch;
    g->arena_floats = arena_layout(g, (size_t)max_batch, 1);
    assign_arena(g);
    return TL_OK;
}

/* ---- running ------------------------------------------------------------- */

tl_status tl_graph_set_batch(tl_graph *g, int n)
{
    if (n < 1 || n > g->max_batch)
        return tl_fail(TL_ERR_ARG, "batch of %d rows outside 1..%d (the graph's max_batch)", n,
                       g->max_batch);
    g->batch = n;
    return TL_OK;
}

int tl_graph_batch(const tl_graph *g) { return g->batch; }

float *tl_graph_input(tl_graph *g, tl_node a)
{
    if (!g->planned || a < 0 || a >= g->n_nodes || g->nodes[a].op != TL_OP_INPUT) return NULL;
    return g->nodes[a].val;
}

int32_t *tl_graph_ids(tl_graph *g, tl_node a)
{
    if (!g->planned || a < 0 || a >= g->n_nodes || g->nodes[a].op != TL_OP_INPUT_IDS)
        return NULL;
    return (int32_t *)(void *)g->nodes[a].val;
}

tl_status tl_graph_forward(tl_graph *g, int training)
{
    if (!g->planned) return tl_fail(TL_ERR_STATE, "graph run before tl_graph_plan");
    g->training = training;
    for (int i = 0; i < g->n_nodes; i++) {
        tl_nodedef *d = &g->nodes[i];
        tl_forward_fn f = tl_op_table[d->op].forward;
        if (!f) continue;
        tl_status s = f(g, d);
        if (s != TL_OK) return s;
    }
    return TL_OK;
}

tl_status tl_graph_backward_run(tl_graph *g)
{
    if (!g->planned) return tl_fail(TL_ERR_STATE, "graph run before tl_graph_plan");
    if (g->loss == TL_NONE)
        return tl_fail(TL_ERR_STATE, "backward run on a graph without tl_graph_backward");
    /* Intermediate gradients start fresh: the first op writing one may
     * overwrite it instead of clearing it first (ops/ops.h). */
    for (int i = 0; i <= g->loss; i++) {
        tl_nodedef *d = &g->nodes[i];
        d->grad_fresh = d->grad && d->op != TL_OP_PARAM;
    }
    tl_nodedef *l = &g->nodes[g->loss];
    if (!l->grad) { /* loss does not depend on any parameter: all gradients are 0 */
        for (int i = 0; i <= g->loss; i++)
            if (g->nodes[i].grad) tl__grad_acc(g, &g->nodes[i]);
        return TL_OK;
    }
    l->grad[0] = 1.0f;
    l->grad_fresh = 0;
    for (int i = g->loss; i >= 0; i--) {
        tl_nodedef *d = &g->nodes[i];
        if (!d->grad || !d->on_path || d->op == TL_OP_PARAM) continue;
        /* Every consumer has run: a gradient still fresh is zero. */
        tl__grad_acc(g, d);
        const tl_op_entry *e = &tl_op_table[d->op];
        if (!e->backward) continue;
        if (!e->fresh_aware)
            for (int j = 0; j < d->nin; j++) {
                tl_nodedef *in = &g->nodes[d->in[j]];
                if (in->grad) tl__grad_acc(g, in);
            }
        e->backward(g, d);
    }
    return TL_OK;
}

/* The two halves of a split backward (graph.h). */
static int is_seed(tl_node i, int n_seed, const tl_node *seed)
{
    for (int k = 0; k < n_seed; k++)
        if (seed[k] == i) return 1;
    return 0;
}

static void backward_node(tl_graph *g, tl_nodedef *d)
{
    if (!d->grad || !d->on_path || d->op == TL_OP_PARAM) return;
    tl__grad_acc(g, d);
    const tl_op_entry *e = &tl_op_table[d->op];
    if (!e->backward) return;
    if (!e->fresh_aware)
        for (int j = 0; j < d->nin; j++) {
            tl_nodedef *in = &g->nodes[d->in[j]];
            if (in->grad) tl__grad_acc(g, in);
        }
    e->backward(g, d);
}

tl_status tl_graph_cut_check(const tl_graph *g, int n_below, int n_seed, const tl_node *seed)
{
    if (!g->planned || g->loss == TL_NONE || n_below < 1 || n_below > g->loss)
        return tl_fail(TL_ERR_STATE, "split backward: graph not planned or cut %d outside it", n_below);
    for (int k = 0; k < n_seed; k++)
        if (seed[k] < 0 || seed[k] >= n_below || !g->nodes[seed[k]].grad)
            return tl_fail(TL_ERR_ARG, "split backward: seed node %d is not below the cut with a "
                                       "gradient", (int)seed[k]);
    for (int i = n_below; i <= g->loss; i++) {
        const tl_nodedef *d = &g->nodes[i];
        if (!d->grad || !d->on_path || !tl_op_table[d->op].backward) continue;
        for (int j = 0; j < d->nin; j++) {
            const tl_nodedef *in = &g->nodes[d->in[j]];
            if (d->in[j] < n_below && in->grad && !is_seed(d->in[j], n_seed, seed))
                return tl_fail(TL_ERR_ARG, "split backward: '%s' after the cut reads '%s' before "
                                           "it, which is not a cut node",
                               d->name, in->name);
        }
    }
    return TL_OK;
}

tl_status tl_graph_backward_run_above(tl_graph *g, int n_below, int n_seed, const tl_node *seed)
{
    if (!g->planned || g->loss == TL_NONE || !g->nodes[g->loss].grad)
        return tl_fail(TL_ERR_STATE, "split backward on a graph without a planned loss gradient");
    for (int i = 0; i <= g->loss; i++) {
        tl_nodedef *d = &g->nodes[i];
        d->grad_fresh = d->grad && d->op != TL_OP_PARAM;
    }
    tl_nodedef *l = &g->nodes[g->loss];
    l->grad[0] = 1.0f;
    l->grad_fresh = 0;
    for (int i = g->loss; i >= n_below; i--) backward_node(g, &g->nodes[i]);
    for (int k = 0; k < n_seed; k++) tl__grad_acc(g, &g->nodes[seed[k]]); /* unread: zero */
    return TL_OK;
}

tl_status tl_graph_backward_run_below(tl_graph *g, int n_below, int n_seed, const tl_node *seed)
{
    if (!g->planned || g->loss == TL_NONE || n_below > g->loss)
        return tl_fail(TL_ERR_STATE, "split backward on a graph without a planned loss gradient");
    for (int i = 0; i < n_below; i++) {
        tl_nodedef *d = &g->nodes[i];
        d->grad_fresh = d->grad && d->op != TL_OP_PARAM && !is_seed(i, n_seed, seed);
    }
    for (int i = n_below - 1; i >= 0; i--) backward_node(g, &g->nodes[i]);
    return TL_OK;
}

const float *tl_graph_value(const tl_graph *g, tl_node a)
{
    if (!g->planned || a < 0 || a >= g->n_nodes) return NULL;
    return g->nodes[a].val;
}

float *tl_graph_grad(tl_graph *g, tl_node a)
{
    if (!g->planned || a < 0 || a >= g->n_nodes) return NULL;
    return g->nodes[a].grad;
}

void tl_graph_set_scalar(tl_graph *g, tl_node s, float v)
{
    if (s < 0 || s >= g->n_nodes || g->nodes[s].op != TL_OP_SCALAR) return;
    g->nodes[s].f = v;
    if (g->planned) g->nodes[s].val[0] = v;
}

float tl_graph_get_scalar(const tl_graph *g, tl_node s)
{
    if (s < 0 || s >= g->n_nodes || g->nodes[s].op != TL_OP_SCALAR) return NAN;
    return g->nodes[s].f;
}

void tl__graph_reset_touched(tl_graph *g)
{
    if (!g->planned) return;
    for (int i = 0; i < g->n_params; i++) {
        if (!g->params[i].sparse) continue;
        struct tl_sparse_rows *sp = &g->sparse[i];
        for (int r = 0; r < sp->n; r++) sp->mark[sp->rows[r]] = 0;
        sp->n = 0;
    }
}

void tl_graph_zero_grad(tl_graph *g)
{
    if (!g->planned) return;
    for (int i = 0; i < g->n_params; i++) {
        tl_param_info *p = &g->params[i];
        float *gr = g->grad_block + p->offset;
        struct tl_sparse_rows *sp = &g->sparse[i];
        if (!p->sparse) {
            memset(gr, 0, (size_t)p->rows * (size_t)p->cols * sizeof(float));
            continue;
        }
        for (int r = 0; r < sp->n; r++) {
            memset(gr + (size_t)sp->rows[r] * (size_t)p->cols, 0, (size_t)p->cols * sizeof(float));
            sp->mark[sp->rows[r]] = 0;
        }
        sp->n = 0;
    }
}

/* ---- inspecting ---------------------------------------------------------- */

int tl_graph_node_count(const tl_graph *g) { return g->n_nodes; }
/* Inspectors accept any id (TL_NONE from a failed builder included): 0 / "?". */
static int node_ok(const tl_graph *g, tl_node a) { return a >= 0 && a < g->n_nodes; }
int tl_node_rows(const tl_graph *g, tl_node a) { return node_ok(g, a) ? tl__rows(g, &g->nodes[a]) : 0; }
int tl_node_cols(const tl_graph *g, tl_node a) { return node_ok(g, a) ? g->nodes[a].cols : 0; }
int tl_node_batched(const tl_graph *g, tl_node a) { return node_ok(g, a) ? g->nodes[a].batched : 0; }
const char *tl_node_get_name(const tl_graph *g, tl_node a)
{
    return node_ok(g, a) ? g->nodes[a].name : "?";
}

tl_node tl_graph_find(const tl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return (tl_node)i;
    return TL_NONE;
}

int tl_graph_param_count(const tl_graph *g) { return g->n_params; }

const tl_param_info *tl_graph_param(const tl_graph *g, int i)
{
    return (i >= 0 && i < g->n_params) ? &g->params[i] : NULL;
}

int tl_graph_param_index(const tl_graph *g, tl_node a)
{
    return (a >= 0 && a < g->n_nodes) ? g->nodes[a].param_index : -1;
}

float *tl_graph_params(tl_graph *g, size_t *count)
{
    if (count) *count = g->param_floats;
    return g->param_block;
}

float *tl_graph_grads(tl_graph *g, size_t *count)
{
    if (count) *count = g->param_floats;
    return g->grad_block;
}

const int32_t *tl_graph_touched_rows(const tl_graph *g, int i, int *n)
{
    if (i < 0 || i >= g->n_params || !g->params[i].sparse || !g->sparse) {
        *n = -1;
        return NULL;
    }
    *n = g->sparse[i].n;
    return g->sparse[i].rows;
}

tl_status tl_graph_touch_rows(tl_graph *g, int i, const int32_t *rows, int n)
{
    if (i < 0 || i >= g->n_params || !g->params[i].sparse || !g->sparse)
        return tl_fail(TL_ERR_ARG, "touch rows: parameter %d is not sparse", i);
    for (int r = 0; r < n; r++) {
        if (rows[r] < 0 || rows[r] >= g->params[i].rows)
            return tl_fail(TL_ERR_ARG, "touch rows: row %d outside '%s' (%d rows)", (int)rows[r],
                           g->params[i].name, g->params[i].rows);
        tl__touch_row(g, i, rows[r]);
    }
    return TL_OK;
}

tl_rng *tl_graph_rng(tl_graph *g) { return &g->drop_rng; }
