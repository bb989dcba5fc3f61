/* export/lower.c — the model's inference graph for the writers (lower.h).
 *
 * It reads the engine's node records (ops/ops.h) as graph.c does, read only:
 * the writers then depend on this file's small table, not on the engine's
 * internals. */
#include "lower.h"

#include <stdio.h>
#include <string.h>

#include "models/model_export.h"
#include "ops/ops.h"

typedef struct {
    tl_xgraph *x;
    const tl_model_export_view *v;
    const tl_graph *g;
    int *map;            /* graph node -> lowered node, -1 unvisited */
    const char *task;    /* for messages */
    tl_status st;        /* why lower() returned -1 */
} lowering;

static int push(lowering *L, const tl_xnode *n)
{
    tl_xgraph *x = L->x;
    if (x->n == x->cap) {
        int cap = x->cap ? 2 * x->cap : 64;
        tl_xnode *nodes = tl_realloc(x->nodes, (size_t)cap * sizeof *nodes, "export nodes");
        if (!nodes) {
            L->st = TL_ERR_NOMEM;
            return -1;
        }
        x->nodes = nodes;
        x->cap = cap;
    }
    x->nodes[x->n] = *n;
    return x->n++;
}

static const tl_xop op_map[TL_OP_COUNT] = {
    [TL_OP_RELU] = TL_X_RELU,       [TL_OP_SIGMOID] = TL_X_SIGMOID,
    [TL_OP_TANH] = TL_X_TANH,       [TL_OP_EXP] = TL_X_EXP,
    [TL_OP_SOFTPLUS] = TL_X_SOFTPLUS, [TL_OP_SOFTMAX] = TL_X_SOFTMAX,
    [TL_OP_LOG_SOFTMAX] = TL_X_LOG_SOFTMAX, [TL_OP_SCALE] = TL_X_SCALE,
    [TL_OP_ROW_SUM] = TL_X_ROW_SUM, [TL_OP_SLICE] = TL_X_SLICE,
    [TL_OP_CONCAT] = TL_X_CONCAT,   [TL_OP_MATMUL] = TL_X_MATMUL,
    [TL_OP_LINEAR] = TL_X_LINEAR,   [TL_OP_GROUPED_LINEAR] = TL_X_GROUPED_LINEAR,
    [TL_OP_TOKEN_LINEAR] = TL_X_TOKEN_LINEAR, [TL_OP_ADD] = TL_X_ADD,
    [TL_OP_SUB] = TL_X_SUB,         [TL_OP_MUL] = TL_X_MUL,
    [TL_OP_GATE_MIX] = TL_X_GATE_MIX, [TL_OP_ATTENTION] = TL_X_ATTENTION,
    [TL_OP_EMBEDDING] = TL_X_EMBEDDING, [TL_OP_EMBEDDING_BAG] = TL_X_EMBEDDING_BAG,
};

static int lower(lowering *L, tl_node a);

/* A batched-or-fixed node shaped like d with `cols` columns. */
static tl_xnode like(const tl_nodedef *d, tl_xop op, int cols)
{
    tl_xnode n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.batched = d->batched;
    n.rows = d->rows;
    n.cols = cols;
    return n;
}

/* block_mix (cross-stitch units, AdaTT's residual) in ops the writers have:
 * out block r = sum_c w'[r,c] x block c, the trained weights w' (with the
 * op's diagonal) as scale factors; the products and sums are the engine's, in
 * its order. */
static int lower_block_mix(lowering *L, const tl_nodedef *d)
{
    const tl_nodedef *w = &L->g->nodes[d->in[1]];
    int R = w->rows, C = d->k, dd = d->cols / R;
    if (R > TL_X_MAX_IN || C > TL_X_MAX_IN) {
        L->st = tl_fail(TL_ERR_ARG, "export: node '%s' mixes %d x %d blocks; at most %d", d->name, R, C,
                        TL_X_MAX_IN);
        return -1;
    }
    int x = lower(L, d->in[0]), part[TL_X_MAX_IN], out[TL_X_MAX_IN];
    for (int c = 0; c < C && x >= 0; c++) {
        tl_xnode n = like(d, TL_X_SLICE, dd);
        n.nin = 1;
        n.in[0] = x;
        n.start = (d->start + c) * dd;
        if ((part[c] = push(L, &n)) < 0) return -1;
    }
    if (x < 0) return -1;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            tl_xnode n = like(d, TL_X_SCALE, dd);
            n.nin = 1;
            n.in[0] = part[c];
            n.f = w->val[(size_t)r * C + c] + (r == c ? d->f : 0.0f);
            int t = push(L, &n);
            if (t >= 0 && c > 0) {
                tl_xnode sum = like(d, TL_X_ADD, dd);
                sum.nin = 2;
                sum.in[0] = out[r];
                sum.in[1] = t;
                sum.bcast = TL_X_BC_SAME;
                t = push(L, &sum);
            }
            if ((out[r] = t) < 0) return -1;
        }
    if (R == 1) return out[0];
    tl_xnode n = like(d, TL_X_CONCAT, d->cols);
    n.nin = R;
    memcpy(n.in, out, (size_t)R * sizeof *out);
    return push(L, &n);
}

#define MAX_CONSTS 16 /* distinct scalars: DSelect-k needs 4 per smooth-step width */

/* A 1x1 constant v (one node per distinct value). */
static int scalar(lowering *L, float v)
{
    tl_xgraph *x = L->x;
    if (!x->consts && !(x->consts = tl_malloc(MAX_CONSTS * sizeof *x->consts, "export constants"))) {
        L->st = TL_ERR_NOMEM;
        return -1;
    }
    for (int i = 0; i < x->n; i++)
        if (x->nodes[i].op == TL_X_CONST && x->nodes[i].data >= x->consts &&
            x->nodes[i].data < x->consts + x->n_consts && *x->nodes[i].data == v)
            return i;
    if (x->n_consts == MAX_CONSTS) {
        L->st = tl_fail(TL_ERR_ARG, "export: more than %d distinct smooth-step constants", MAX_CONSTS);
        return -1;
    }
    x->consts[x->n_consts] = v;
    tl_xnode n;
    memset(&n, 0, sizeof n);
    n.op = TL_X_CONST;
    n.rows = n.cols = 1;
    n.data = &x->consts[x->n_consts++];
    return push(L, &n);
}

/* op(a, b) shaped like d with `cols` columns, b broadcast by bc. */
static int binary(lowering *L, const tl_nodedef *d, tl_xop op, int a, int b, int bc, int cols)
{
    if (a < 0 || b < 0) return -1;
    tl_xnode n = like(d, op, cols);
    n.nin = 2;
    n.in[0] = a;
    n.in[1] = b;
    n.bcast = bc;
    return push(L, &n);
}

static int unary(lowering *L, const tl_nodedef *d, tl_xop op, int a, float f, int cols)
{
    if (a < 0) return -1;
    tl_xnode n = like(d, op, cols);
    n.nin = 1;
    n.in[0] = a;
    n.f = f;
    return push(L, &n);
}

static int slice(lowering *L, const tl_nodedef *d, int a, int start, int cols)
{
    if (a < 0) return -1;
    tl_xnode n = like(d, TL_X_SLICE, cols);
    n.nin = 1;
    n.in[0] = a;
    n.start = start;
    return push(L, &n);
}

/* Columns parts[0..np) side by side, in concats of at most TL_X_MAX_IN. */
static int concat(lowering *L, const tl_nodedef *d, const int *parts, int np, int width)
{
    int outer[TL_X_MAX_IN], no = 0;
    for (int i = 0; i < np; i += TL_X_MAX_IN) {
        int m = np - i < TL_X_MAX_IN ? np - i : TL_X_MAX_IN;
        if (no == TL_X_MAX_IN) {
            L->st = tl_fail(TL_ERR_ARG, "export: node '%s' has too many columns to concatenate", d->name);
            return -1;
        }
        if (m == 1) {
            outer[no++] = parts[i];
            continue;
        }
        tl_xnode n = like(d, TL_X_CONCAT, m * width);
        n.nin = m;
        memcpy(n.in, parts + i, (size_t)m * sizeof *parts);
        if ((outer[no++] = push(L, &n)) < 0) return -1;
    }
    if (no == 1) return outer[0];
    tl_xnode n = like(d, TL_X_CONCAT, np * width);
    n.nin = no;
    memcpy(n.in, outer, (size_t)no * sizeof *outer);
    return push(L, &n);
}

/* DSelect-k's smooth-step: u = t - relu(t - g/2) + relu(-(t + g/2)) clamps t
 * to [-g/2, g/2] (u = t exactly inside), then ((a3 u) u) u + a1 u + 1/2 as
 * the engine computes it; outside, the cubic's flat ends give 0 and 1 to
 * within rounding. */
static int lower_smooth_step(lowering *L, const tl_nodedef *d, int t)
{
    float gm = d->f, a3 = -2.0f / (gm * gm * gm), a1 = 3.0f / (2.0f * gm);
    int c = d->cols;
    int hi = scalar(L, gm / 2.0f), lo = scalar(L, -gm / 2.0f), half = scalar(L, 0.5f);
    int over = unary(L, d, TL_X_RELU, binary(L, d, TL_X_SUB, t, hi, TL_X_BC_SCALAR, c), 0.0f, c);
    int under = unary(L, d, TL_X_RELU, unary(L, d, TL_X_SCALE, binary(L, d, TL_X_SUB, t, lo, TL_X_BC_SCALAR, c),
                                             -1.0f, c), 0.0f, c);
    int u = binary(L, d, TL_X_ADD, binary(L, d, TL_X_SUB, t, over, TL_X_BC_SAME, c), under, TL_X_BC_SAME, c);
    int cube = binary(L, d, TL_X_MUL, binary(L, d, TL_X_MUL, unary(L, d, TL_X_SCALE, u, a3, c), u, TL_X_BC_SAME, c),
                      u, TL_X_BC_SAME, c);
    int sum = binary(L, d, TL_X_ADD, cube, unary(L, d, TL_X_SCALE, u, a1, c), TL_X_BC_SAME, c);
    return binary(L, d, TL_X_ADD, sum, half, TL_X_BC_SCALAR, c);
}

/* DSelect-k's selectors: expert e's weight is the product over the code bits
 * (most significant first) of s or 1 - s, multiplied in the engine's order. */
static int lower_dselect_select(lowering *L, const tl_nodedef *d, int s)
{
    int k = d->k, E = d->cols / k, m = L->g->nodes[d->in[0]].cols / k;
    int one = scalar(L, 1.0f), *parts = tl_malloc((size_t)k * E * sizeof *parts, "export selectors");
    if (!parts) {
        L->st = TL_ERR_NOMEM;
        return -1;
    }
    int r = one;
    for (int q = 0; q < k && r >= 0; q++) {
        int on[16], off[16];
        for (int j = 0; j < m && r >= 0; j++) {
            on[j] = r = slice(L, d, s, q * m + j, 1);
            off[j] = r = binary(L, d, TL_X_ADD, unary(L, d, TL_X_SCALE, on[j], -1.0f, 1), one, TL_X_BC_SCALAR, 1);
        }
        for (int e = 0; e < E && r >= 0; e++) {
            int p = -1;
            for (int j = 0; j < m && r >= 0; j++) {
                int f = (e >> (m - 1 - j)) & 1 ? on[j] : off[j];
                p = j == 0 ? f : (r = binary(L, d, TL_X_MUL, p, f, TL_X_BC_SAME, 1));
            }
            parts[q * E + e] = p;
        }
    }
    if (r >= 0) r = concat(L, d, parts, k * E, 1);
    tl_free(parts);
    return r;
}

/* The lowered node of graph node a (lowering its inputs first); -1 on failure. */
static int lower(lowering *L, tl_node a)
{
    if (L->map[a] >= 0) return L->map[a];
    const tl_nodedef *d = &L->g->nodes[a];
    tl_xnode n;
    memset(&n, 0, sizeof n);
    n.batched = d->batched;
    n.rows = d->rows;
    n.cols = d->cols;
    int r;
    switch (d->op) {
    case TL_OP_DROPOUT: /* identity at inference */
    case TL_OP_STOP_GRAD:
        r = lower(L, d->in[0]);
        if (r >= 0) L->map[a] = r;
        return r;
    case TL_OP_BLOCK_MIX:
        r = lower_block_mix(L, d);
        if (r >= 0) L->map[a] = r;
        return r;
    case TL_OP_SMOOTH_STEP:
    case TL_OP_DSELECT_SELECT:
        r = lower(L, d->in[0]);
        if (r >= 0) r = d->op == TL_OP_SMOOTH_STEP ? lower_smooth_step(L, d, r) : lower_dselect_select(L, d, r);
        if (r >= 0) L->map[a] = r;
        return r;
    case TL_OP_INPUT_IDS:
        if (a == L->v->ids) {
            n.op = TL_X_IDS;
            break;
        }
        for (int b = 0; b < L->v->n_bag; b++)
            if (a == L->v->bag_ids[b]) {
                n.op = TL_X_BAG_IDS;
                n.k = b;
            }
        if (n.op != TL_X_BAG_IDS) {
            L->st = tl_fail(TL_ERR_ARG, "export: the prediction of task '%s' reads id input '%s', which a "
                    "served model does not have", L->task, d->name);
            return -1;
        }
        break;
    case TL_OP_INPUT:
        if (a != L->v->num) {
            L->st = tl_fail(TL_ERR_ARG, "export: the prediction of task '%s' reads input '%s', which a "
                    "served model does not have", L->task, d->name);
            return -1;
        }
        n.op = TL_X_NUMERIC;
        break;
    case TL_OP_PARAM:
    case TL_OP_SCALAR:
        n.op = TL_X_CONST;
        n.data = d->val;
        break;
    default:
        if (d->op >= TL_OP_COUNT || !op_map[d->op]) {
            L->st = tl_fail(TL_ERR_ARG, "export: op '%s' (node '%s', on the prediction of task '%s') "
                    "has no export", tl_op_table[d->op].name, d->name, L->task);
            return -1;
        }
        if (d->nin > TL_X_MAX_IN) {
            L->st = tl_fail(TL_ERR_ARG, "export: node '%s' has %d inputs; at most %d", d->name, d->nin,
                    TL_X_MAX_IN);
            return -1;
        }
        n.op = op_map[d->op];
        n.nin = d->nin;
        for (int i = 0; i < d->nin; i++)
            if ((n.in[i] = lower(L, d->in[i])) < 0) return -1;
        n.act = d->act;
        n.k = d->k;
        n.start = d->start;
        n.f = d->f;
        n.bcast = (int)d->bcast;
        n.vocab = d->vocab;
        n.offsets = d->offsets;
        n.blocks = d->blocks;
        break;
    }
    r = push(L, &n);
    if (r >= 0) L->map[a] = r;
    return r;
}

/* The numeric layout: plain columns are raw inputs, "<name>_missing" flags
 * are computed from their column. */
static tl_status lower_numeric(tl_xgraph *x, const tl_dataset *d)
{
    int nn = tl_dataset_n_num(d);
    x->n_num = nn;
    if (nn == 0) return TL_OK;
    x->num = tl_calloc((size_t)nn, sizeof *x->num, "export numeric layout");
    x->raw_names = tl_calloc((size_t)nn, sizeof *x->raw_names, "export numeric layout");
    if (!x->num || !x->raw_names) return TL_ERR_NOMEM;
    for (int j = 0; j < nn; j++) {
        double mean = 0, sd = 1;
        const char *t = tl_dataset_num_transform(d, j, &mean, &sd);
        tl_xnum *c = &x->num[j];
        if (strcmp(t, "flag") == 0) continue;
        c->kind = TL_X_NUM_VALUE;
        c->src = x->n_raw;
        c->transform = strcmp(t, "standard") == 0 ? TL_NUM_STANDARD
                       : strcmp(t, "log1p") == 0  ? TL_NUM_LOG1P
                                                  : TL_NUM_NONE;
        c->mu = (float)mean;          /* as data/finish.c computes them */
        c->inv = (float)(1.0 / sd);
        x->raw_names[x->n_raw++] = tl_dataset_num_name(d, j);
    }
    for (int j = 0; j < nn; j++) {
        double mean, sd;
        if (strcmp(tl_dataset_num_transform(d, j, &mean, &sd), "flag") != 0) continue;
        const char *name = tl_dataset_num_name(d, j);
        size_t len = strlen(name);
        x->num[j].kind = TL_X_NUM_FLAG;
        x->num[j].src = -1;
        for (int s = 0; s < x->n_raw; s++)
            if (len == strlen(x->raw_names[s]) + 8 && strncmp(name, x->raw_names[s], len - 8) == 0 &&
                strcmp(name + len - 8, "_missing") == 0)
                x->num[j].src = s;
        if (x->num[j].src < 0)
            return tl_fail(TL_ERR_ARG, "export: numeric flag column '%s' has no source column", name);
    }
    return TL_OK;
}

static tl_status check_data(const tl_model_config *c, const tl_dataset *d)
{
    int same = tl_dataset_n_cat(d) == c->n_cat && tl_dataset_n_num(d) == c->n_num &&
               tl_dataset_n_tasks(d) == c->n_tasks && tl_dataset_n_bag(d) == c->n_bag;
    for (int f = 0; same && f < c->n_cat; f++) same = tl_dataset_vocab(d)[f] == c->vocab[f];
    if (!same)
        return tl_fail(TL_ERR_ARG, "export: the dataset (%d categorical, %d multi-valued, %d numeric, %d tasks) "
                       "is not the one the model was built on (%d, %d, %d, %d)", tl_dataset_n_cat(d),
                       tl_dataset_n_bag(d), tl_dataset_n_num(d), tl_dataset_n_tasks(d), c->n_cat, c->n_bag,
                       c->n_num, c->n_tasks);
    for (int b = 0; b < c->n_bag; b++) {
        const char *nm = tl_dataset_bag_name(d, b);
        if (strncmp(nm, c->bag_name[b], strlen(c->bag_name[b])) != 0 || tl_dataset_bag_vocab(d, b) != c->bag_vocab[b] ||
            tl_dataset_bag_len(d, b) != c->bag_len[b])
            return tl_fail(TL_ERR_ARG, "export: the dataset's multi-valued field %d is '%s' (%d ids, %d slots), "
                           "the model's '%s' (%d ids, %d slots)", b + 1, nm, (int)tl_dataset_bag_vocab(d, b),
                           tl_dataset_bag_len(d, b), c->bag_name[b], (int)c->bag_vocab[b], c->bag_len[b]);
        if (strlen(nm) > TL_X_BAG_NAME_MAX)
            return tl_fail(TL_ERR_ARG, "export: multi-valued field '%.40s...': its name is longer than %d bytes, "
                           "the longest an exported input name takes; rename the column", nm, TL_X_BAG_NAME_MAX);
        if ((unsigned)c->bag_pool[b] > TL_POOL_MAX)
            return tl_fail(TL_ERR_ARG, "export: multi-valued field '%s': pooling %d has no export", nm,
                           c->bag_pool[b]);
    }
    return TL_OK;
}

/* The multi-valued fields' layout: one input each, their slots side by side
 * in the C writer's row of bag ids. */
static void lower_bags(tl_xgraph *x, const tl_model_config *c, const tl_dataset *d)
{
    x->n_bag = c->n_bag;
    for (int b = 0; b < c->n_bag; b++) {
        x->bag_name[b] = tl_dataset_bag_name(d, b);
        x->bag_len[b] = c->bag_len[b];
        x->bag_off[b] = x->bag_slots;
        x->bag_pool[b] = c->bag_pool[b];
        x->bag_vocab[b] = c->bag_vocab[b];
        x->bag_slots += c->bag_len[b];
    }
}

tl_status tl_export_lower(tl_model *m, const tl_dataset *d, const tl_export_options *o,
                          tl_xgraph *out)
{
    memset(out, 0, sizeof *out);
    tl_model_export_view v;
    tl_model_export_view_get(m, &v);
    const tl_model_config *c = v.cfg;
    if (v.steps == 0)
        return tl_fail(TL_ERR_STATE, "export: the model is untrained (0 steps): fit it first");
    if (!d) return tl_fail(TL_ERR_ARG, "export: no dataset (its vocabularies and numeric "
                                       "statistics are part of the export)");
    tl_status st = check_data(c, d);
    if (st) return st;
    if (o->tasks >> c->n_tasks)
        return tl_fail(TL_ERR_ARG, "export: task index outside 0..%d", c->n_tasks - 1);
    out->n_cat = c->n_cat;
    lower_bags(out, c, d);
    if ((st = lower_numeric(out, d)) != TL_OK) goto fail;
    lowering L = {out, &v, v.g, NULL, NULL, TL_OK};
    int nn = tl_graph_node_count(v.g);
    L.map = tl_malloc((size_t)nn * sizeof *L.map, "export node map");
    if (!L.map) {
        st = TL_ERR_NOMEM;
        goto fail;
    }
    for (int i = 0; i < nn; i++) L.map[i] = -1;
    for (int k = 0; k < c->n_tasks; k++) {
        if (o->tasks && !(o->tasks >> k & 1)) continue;
        L.task = c->tasks[k].name;
        int r = lower(&L, v.pred[k]);
        const tl_calibrator *cal = tl_model_calibrator(m, k);
        if (r >= 0 && o->calibrated && c->tasks[k].type == TL_TASK_BINARY) {
            if (!cal) {
                tl_free(L.map);
                st = tl_fail(TL_ERR_ARG, "export: calibrated=true but task '%s' has no calibrator "
                             "(tl.calibrate(m, d.valid, \"platt\"))", L.task);
                goto fail;
            }
            tl_xnode cn;
            memset(&cn, 0, sizeof cn);
            cn.op = TL_X_CALIBRATE;
            cn.batched = 1;
            cn.cols = 1;
            cn.nin = 1;
            cn.in[0] = r;
            cn.cal = cal;
            r = push(&L, &cn);
        }
        if (r < 0) {
            tl_free(L.map);
            st = L.st;
            goto fail;
        }
        out->out[out->n_out] = r;
        out->task[out->n_out++] = k;
    }
    tl_free(L.map);
    return TL_OK;
fail:
    tl_export_xgraph_free(out);
    return st;
}

void tl_export_xgraph_free(tl_xgraph *x)
{
    tl_free(x->nodes);
    tl_free(x->num);
    tl_free(x->raw_names);
    tl_free(x->consts);
    memset(x, 0, sizeof *x);
}
