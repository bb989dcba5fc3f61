/* test_bag.c — the embedding bag (ops/bag.h): forward values, gradients by
 * central differences for sum, mean and max pooling (empty slots, an empty
 * row, a repeated id), backward twice doubles, max's tie rule, bad ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "graph.h"
#include "ops/bag.h"
#include "support.h"

#define MAXB 6
#define BATCH 5
#define V 7
#define D 3
#define L 4

/* Row 2 is empty; row 3 repeats id 5; -1 slots anywhere. */
static const int32_t IDS[MAXB][L] = {{0, 3, -1, -1}, {6, -1, 2, 1}, {-1, -1, -1, -1},
                                     {5, 4, 5, -1},  {-1, 1, -1, -1}, {0, 0, 0, 0}};

typedef struct {
    tl_graph *g;
    tl_node table, ids, out, r, loss;
} bag_graph;

static void build(bag_graph *b, tl_bag_pool pool)
{
    b->g = tl_graph_new(MAXB, 11);
    assert_non_null(b->g);
    b->table = tl_param(b->g, V, D, TL_INIT_UNIFORM, 1.0f, "table");
    b->ids = tl_input_ids(b->g, L, "ids");
    b->out = tl_node_name(b->g, tl_embedding_bag(b->g, b->table, b->ids, pool), "bag");
    b->r = tl_input(b->g, D, "r");
    b->loss = tl_sum(b->g, tl_mul(b->g, b->out, b->r));
    assert_int_equal(tl_graph_status(b->g), TL_OK);
    assert_int_equal(tl_graph_backward(b->g, b->loss), TL_OK);
    assert_int_equal(tl_graph_plan(b->g), TL_OK);
    memcpy(tl_graph_ids(b->g, b->ids), IDS, sizeof IDS);
    tl_rng rng;
    tl_rng_seed(&rng, 3);
    tlt_fill_uniform(tl_graph_input(b->g, b->r), MAXB * D, -1.0f, 1.0f, &rng);
    assert_int_equal(tl_graph_set_batch(b->g, BATCH), TL_OK);
}

static void expect_forward(bag_graph *b, tl_bag_pool pool)
{
    assert_int_equal(tl_graph_forward(b->g, 0), TL_OK);
    const float *T = tlt_param(b->g, b->table), *Y = tl_graph_value(b->g, b->out);
    for (int i = 0; i < BATCH; i++)
        for (int c = 0; c < D; c++) {
            double acc = pool == TL_BAG_MAX ? -(double)INFINITY : 0.0;
            int n = 0;
            for (int s = 0; s < L; s++) {
                int32_t id = IDS[i][s];
                if (id < 0) continue;
                double e = (double)T[id * D + c];
                acc = pool == TL_BAG_MAX ? fmax(acc, e) : acc + e;
                n++;
            }
            double want = n == 0 ? 0.0 : pool == TL_BAG_MEAN ? acc / n : acc;
            if (fabs((double)Y[i * D + c] - want) > 1e-6)
                fail_msg("pool %d row %d col %d: got %g want %g", (int)pool, i, c, (double)Y[i * D + c], want);
        }
}

static void check_pool(tl_bag_pool pool)
{
    bag_graph b;
    build(&b, pool);
    expect_forward(&b, pool);
    tlt_gradcheck_opts o = tlt_gradcheck_defaults();
    o.eps = 1e-3;
    tlt_gradcheck_result r;
    int failed = tlt_gradcheck(b.g, b.loss, &o, &r);
    if (failed) print_message("pool %d: %d of %d failed\n", (int)pool, r.failed, r.checked);
    assert_int_equal(failed, 0);
    assert_true(r.checked == V * D);
    /* ids 0..6 all appear in the first five rows: every table row has a gradient */
    const float *gt = tlt_param_grad(b.g, b.table);
    int nonzero = 0;
    for (int v = 0; v < V; v++) {
        int any = gt[v * D] != 0.0f || gt[v * D + 1] != 0.0f || gt[v * D + 2] != 0.0f;
        nonzero += any;
        if (pool != TL_BAG_MAX) assert_true(any); /* max: a row that is never the maximum gets none */
    }
    assert_true(nonzero >= 3);
    int n, pi = tl_graph_param_index(b.g, b.table);
    const int32_t *rows = tl_graph_touched_rows(b.g, pi, &n);
    assert_non_null(rows);
    assert_int_equal(n, V);
    /* backward twice doubles the parameter gradient */
    float once[V * D];
    tl_graph_zero_grad(b.g);
    assert_int_equal(tl_graph_forward(b.g, 0), TL_OK);
    assert_int_equal(tl_graph_backward_run(b.g), TL_OK);
    memcpy(once, gt, sizeof once);
    assert_int_equal(tl_graph_backward_run(b.g), TL_OK);
    for (int k = 0; k < V * D; k++) assert_true(gt[k] == 2.0f * once[k]);
    tl_graph_free(b.g);
}

static void test_sum(void **state)
{
    (void)state;
    check_pool(TL_BAG_SUM);
}

static void test_mean(void **state)
{
    (void)state;
    check_pool(TL_BAG_MEAN);
}

static void test_max(void **state)
{
    (void)state;
    check_pool(TL_BAG_MAX);
}

/* Max with a tie between two different ids: the first slot takes the whole
 * gradient of that element. */
static void test_max_tie_goes_to_first_slot(void **state)
{
    (void)state;
    bag_graph b;
    build(&b, TL_BAG_MAX);
    float *T = tlt_param(b.g, b.table);
    /* row 0 is {0, 3}: make their column 1 equal */
    T[3 * D + 1] = T[0 * D + 1] = 5.0f;
    tl_graph_zero_grad(b.g);
    assert_int_equal(tl_graph_forward(b.g, 0), TL_OK);
    assert_int_equal(tl_graph_backward_run(b.g), TL_OK);
    const float *gt = tlt_param_grad(b.g, b.table), *R = tl_graph_input(b.g, b.r);
    /* ids 0 and 3 appear only in rows 0 (and 0 in row 5, outside the batch) */
    assert_true(gt[0 * D + 1] == R[0 * D + 1]);
    assert_true(gt[3 * D + 1] == 0.0f);
    tl_graph_free(b.g);
}

static void test_bad_id(void **state)
{
    (void)state;
    bag_graph b;
    build(&b, TL_BAG_SUM);
    int32_t *ids = tl_graph_ids(b.g, b.ids);
    ids[3 * L + 2] = V; /* row 4, slot 3 */
    assert_int_equal(tl_graph_forward(b.g, 0), TL_ERR_ARG);
    const char *m = tl_errmsg();
    assert_non_null(strstr(m, "bag"));
    assert_non_null(strstr(m, "row 4"));
    assert_non_null(strstr(m, "slot 3"));
    assert_int_equal(tl_graph_backward_run(b.g), TL_OK); /* scatters nothing from the bad row */
    ids[3 * L + 2] = -2;
    assert_int_equal(tl_graph_forward(b.g, 0), TL_ERR_ARG);
    tl_graph_free(b.g);
    /* the builder checks its inputs */
    tl_graph *g = tl_graph_new(4, 1);
    tl_node x = tl_input(g, 3, "x"), t = tl_param(g, 5, 2, TL_INIT_UNIFORM, 1.0f, "t");
    assert_int_equal(tl_embedding_bag(g, t, x, TL_BAG_SUM), TL_NONE);
    assert_non_null(strstr(tl_graph_errmsg(g), "id input"));
    tl_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum),
        cmocka_unit_test(test_mean),
        cmocka_unit_test(test_max),
        cmocka_unit_test(test_max_tie_goes_to_first_slot),
        cmocka_unit_test(test_bad_id),
    };
    return cmocka_run_group_tests_name("embedding_bag", tests, NULL, NULL);
}
