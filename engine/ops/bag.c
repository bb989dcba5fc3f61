/* ops/bag.c — the embedding bag: sum, mean or max pooling of a variable
 * number of table rows per batch row, forward and backward side by side. */
#include "bag.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops.h"
#include "parallel.h"

/* The node's fields: in = {table, ids}, k = slots L, start = pooling,
 * vocab[0] = the table's rows. */
tl_node tl_embedding_bag(tl_graph *g, tl_node table, tl_node ids, tl_bag_pool pool)
{
    tl_node in[2] = {table, ids};
    char s1[32];
    if (!tl__valid(g, 2, in)) return TL_NONE;
    tl_nodedef *t = &g->nodes[table], *x = &g->nodes[ids];
    if (t->op != TL_OP_PARAM)
        return tl__build_fail(g, TL_ERR_ARG, "embedding_bag: table '%s' must be a parameter", t->name);
    if (x->op != TL_OP_INPUT_IDS)
        return tl__build_fail(g, TL_ERR_SHAPE, "embedding_bag: ids '%s' must be an id input, got %s %s", x->name,
                              tl_op_table[x->op].name, tl__shape(g, ids, s1, sizeof s1));
    if ((unsigned)pool > TL_BAG_MAX)
        return tl__build_fail(g, TL_ERR_ARG, "embedding_bag: unknown pooling %d", (int)pool);
    tl_node a = tl__node_new(g, TL_OP_EMBEDDING_BAG, 1, 0, t->cols, 2, in);
    if (a == TL_NONE) return TL_NONE;
    tl_nodedef *d = &g->nodes[a];
    d->k = x->cols;
    d->start = (int)pool;
    d->vocab = tl_malloc(sizeof *d->vocab, "embedding bag vocab");
    if (!d->vocab) return tl__build_fail(g, TL_ERR_NOMEM, "%s", tl_errmsg());
    d->vocab[0] = t->rows;
    int pi = g->nodes[table].param_index;
    if (pi >= 0) g->params[pi].sparse = 1;
    return a;
}

struct bag_job {
    tl_graph *g;
    tl_nodedef *n;
    size_t bad[TL_PARALLEL_MAX_THREADS]; /* per part: first bad slot's index or SIZE_MAX */
};

static void bag_forward_rows(void *ctx, size_t r0, size_t r1, int part)
{
    struct bag_job *j = ctx;
    const tl_nodedef *n = j->n, *t = tl__in(j->g, n, 0);
    const int32_t *ids = (const int32_t *)(const void *)tl__in(j->g, n, 1)->val;
    size_t L = (size_t)n->k, D = (size_t)n->cols;
    int32_t V = n->vocab[0];
    j->bad[part] = SIZE_MAX;
    for (size_t i = r0; i < r1; i++) {
        float *y = n->val + i * D;
        const int32_t *row = ids + i * L;
        int cnt = 0;
        memset(y, 0, D * sizeof *y);
        for (size_t s = 0; s < L; s++) {
            int32_t id = row[s];
            if (id == -1) continue;
            if (id < -1 || id >= V) {
                j->bad[part] = i * L + s;
                return;
            }
            const float *e = t->val + (size_t)id * D;
            if (n->start == TL_BAG_MAX && cnt > 0) {
                for (size_t c = 0; c < D; c++) y[c] = e[c] > y[c] ? e[c] : y[c];
            } else if (n->start == TL_BAG_MAX) {
                memcpy(y, e, D * sizeof *y);
            } else {
                tl__add_row(y, e, (int)D);
            }
            cnt++;
        }
        if (n->start == TL_BAG_MEAN && cnt > 1) {
            float inv = 1.0f / (float)cnt;
            for (size_t c = 0; c < D; c++) y[c] *= inv;
        }
    }
}

tl_status tl_op_embedding_bag_forward(tl_graph *g, tl_nodedef *n)
{
    struct bag_job j = {.g = g, .n = n};
    int rows = tl__rows(g, n);
    int parts = tl_parallel_parts((size_t)rows, tl_parallel_row_grain((size_t)n->cols * (size_t)n->k));
    tl_parallel_run((size_t)rows, parts, bag_forward_rows, &j);
    for (int p = 0; p < parts; p++) {
        if (j.bad[p] == SIZE_MAX) continue;
        const int32_t *ids = (const int32_t *)(const void *)tl__in(g, n, 1)->val;
        int i = (int)(j.bad[p] / (size_t)n->k), s = (int)(j.bad[p] % (size_t)n->k);
        return tl_fail(TL_ERR_ARG, "embedding_bag '%s': id %d in row %d, slot %d is outside -1..%d", n->name,
                       (int)ids[j.bad[p]], i + 1, s + 1, (int)n->vocab[0] - 1);
    }
    return TL_OK;
}

/* Serial over batch rows, in slot order, so the sums into a table row that
 * several rows share come in one fixed order (same bits at any thread
 * count). Max pooling finds again, per element, the first slot whose row
 * holds the output's value: the table is what the forward read. */
void tl_op_embedding_bag_backward(tl_graph *g, tl_nodedef *n)
{
    tl_nodedef *t = tl__in(g, n, 0), *x = tl__in(g, n, 1);
    if (!t->grad) return;
    tl__grad_acc(g, t);
    const int32_t *ids = (const int32_t *)(const void *)x->val;
    size_t L = (size_t)n->k, D = (size_t)n->cols, rows = (size_t)tl__rows(g, n);
    int32_t V = n->vocab[0];
    for (size_t i = 0; i < rows; i++) {
        const int32_t *row = ids + i * L;
        const float *dy = n->grad + i * D, *y = n->val + i * D;
        int cnt = 0, bad = 0;
        for (size_t s = 0; s < L; s++) {
            if (row[s] < -1 || row[s] >= V) bad = 1; /* the forward failed here: nothing valid to scatter */
            cnt += row[s] >= 0;
        }
        if (bad || cnt == 0) continue;
        float scale = n->start == TL_BAG_MEAN ? 1.0f / (float)cnt : 1.0f;
        for (size_t s = 0; s < L; s++) {
            int32_t id = row[s];
            if (id < 0) continue;
            tl__touch_row(g, t->param_index, id);
            float *ge = t->grad + (size_t)id * D;
            if (n->start == TL_BAG_SUM)
                tl__add_row(ge, dy, (int)D);
            else if (n->start == TL_BAG_MEAN)
                tl__axpy_row(ge, scale, dy, (int)D);
        }
        if (n->start != TL_BAG_MAX) continue;
        for (size_t c = 0; c < D; c++)
            for (size_t s = 0; s < L; s++) {
                int32_t id = row[s];
                if (id >= 0 && t->val[(size_t)id * D + c] == y[c]) {
                    t->grad[(size_t)id * D + c] += dy[c];
                    break;
                }
            }
    }
}
