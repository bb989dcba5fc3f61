/* test_model_dp_distill.c — the quadruplet loss over a batch split into runs
 * (ops/token.h tl_quadruplet_rows_loss, tl_quadruplet_set_rows), as the
 * data-parallel fit runs CrossDistil (models/model_fit.c dp_quad_gather):
 * the loss and per-row gradient over arrays are the node's own bits over
 * the same rows, the gradient matches central differences (all pairs and
 * sampled ones), and runs on parts of the batch take the whole batch's
 * value and their own rows' gradient; a node that is not a quadruplet loss
 * is refused. tests/mpi/test_dp_crossdistil.sh checks the fit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "graph.h"
#include "support.h"

#define N 12

typedef struct {
    tl_graph *g;
    tl_node s, la, lb, w, bias, score, quad;
} quad_graph;

static quad_graph build(int flip, int max_pairs)
{
    quad_graph q;
    q.g = tl_graph_new(N, 7);
    assert_non_null(q.g);
    q.s = tl_input(q.g, 1, "s");
    q.la = tl_input(q.g, 1, "la");
    q.lb = tl_input(q.g, 1, "lb");
    q.w = tl_input(q.g, 1, "w");
    q.bias = tl_param(q.g, 1, 1, TL_INIT_ZEROS, 0.0f, "bias");
    q.score = tl_add(q.g, q.s, q.bias);
    q.quad = tl_quadruplet_bpr_weighted(q.g, q.score, q.la, q.lb, q.w, flip, max_pairs);
    assert_int_equal(tl_graph_backward(q.g, q.quad), TL_OK);
    assert_int_equal(tl_graph_plan(q.g), TL_OK);
    return q;
}

/* rows [from, from + n) of the batch into the graph's inputs */
static void fill(quad_graph *q, const float *S, const float *A, const float *B, const float *W, int from, int n)
{
    assert_int_equal(tl_graph_set_batch(q->g, n), TL_OK);
    memcpy(tl_graph_input(q->g, q->s), S + from, (size_t)n * sizeof(float));
    memcpy(tl_graph_input(q->g, q->la), A + from, (size_t)n * sizeof(float));
    memcpy(tl_graph_input(q->g, q->lb), B + from, (size_t)n * sizeof(float));
    memcpy(tl_graph_input(q->g, q->w), W + from, (size_t)n * sizeof(float));
}

static void batch(float *S, float *A, float *B, float *W)
{
    tl_rng r;
    tl_rng_seed(&r, 11);
    tlt_fill_uniform(S, N, -2.0f, 2.0f, &r);
    for (int i = 0; i < N; i++) {
        A[i] = (float)(i % 2);
        B[i] = (float)((i / 2) % 2);
        W[i] = i == 3 ? 0.0f : 0.5f + 0.25f * (float)(i % 3); /* one row outside the space */
    }
}

static void check(int flip, int max_pairs)
{
    float S[N], A[N], B[N], W[N], G[N];
    batch(S, A, B, W);
    quad_graph q = build(flip, max_pairs);
    /* the node over the whole batch */
    fill(&q, S, A, B, W, 0, N);
    *tl_graph_rng(q.g) = (tl_rng){{1, 2, 3, 4}};
    assert_int_equal(tl_graph_forward(q.g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(q.g), TL_OK);
    float V = tl_graph_value(q.g, q.quad)[0], Gs[N];
    memcpy(Gs, tl_graph_grad(q.g, q.score), sizeof Gs);
    /* the arrays, drawing the node's pairs from the same generator */
    tl_rng rng = {{1, 2, 3, 4}};
    double L;
    assert_int_equal(tl_quadruplet_rows_loss(q.g, q.quad, S, A, B, W, N, &rng, &L, G), TL_OK);
    assert_true((float)L == V);
    assert_memory_equal(G, Gs, sizeof G);
    /* central differences, the same pairs at every point */
    for (int i = 0; i < N; i++) {
        double eps = 1e-2, lp, lm;
        float X[N], tmp[N];
        memcpy(X, S, sizeof X);
        X[i] = S[i] + (float)eps;
        rng = (tl_rng){{1, 2, 3, 4}};
        assert_int_equal(tl_quadruplet_rows_loss(q.g, q.quad, X, A, B, W, N, &rng, &lp, tmp), TL_OK);
        X[i] = S[i] - (float)eps;
        rng = (tl_rng){{1, 2, 3, 4}};
        assert_int_equal(tl_quadruplet_rows_loss(q.g, q.quad, X, A, B, W, N, &rng, &lm, tmp), TL_OK);
        double fd = (lp - lm) / (2.0 * eps);
        if (fabs(fd - (double)G[i]) > 1e-3 + 1e-2 * fabs(fd)) fail_msg("row %d: gradient %g, differences %g", i, (double)G[i], fd);
    }
    assert_true(G[3] == 0.0f); /* weight 0: in no pair */
    /* runs on rows [0, 5) and [5, N): the batch's value, their rows' gradient */
    tl_quad_rows rows = {L, G, 0, 0};
    assert_int_equal(tl_quadruplet_set_rows(q.g, q.quad, &rows), TL_OK);
    int cut[3] = {0, 5, N};
    for (int p = 0; p < 2; p++) {
        rows.off = cut[p];
        rows.rows = cut[p + 1] - cut[p];
        fill(&q, S, A, B, W, cut[p], rows.rows);
        assert_int_equal(tl_graph_forward(q.g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(q.g), TL_OK);
        assert_true(tl_graph_value(q.g, q.quad)[0] == (float)L);
        assert_memory_equal(tl_graph_grad(q.g, q.score), G + cut[p], (size_t)rows.rows * sizeof(float));
    }
    /* a run that carries no rows of the batch (a filler row): no gradient */
    rows.off = 0;
    rows.rows = 0;
    fill(&q, S, A, B, W, 0, 1);
    assert_int_equal(tl_graph_forward(q.g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(q.g), TL_OK);
    assert_true(tl_graph_grad(q.g, q.score)[0] == 0.0f);
    /* cleared: the node pairs its own rows again */
    assert_int_equal(tl_quadruplet_set_rows(q.g, q.quad, NULL), TL_OK);
    fill(&q, S, A, B, W, 0, N);
    *tl_graph_rng(q.g) = (tl_rng){{1, 2, 3, 4}};
    assert_int_equal(tl_graph_forward(q.g, 1), TL_OK);
    assert_true(tl_graph_value(q.g, q.quad)[0] == V);
    /* not a quadruplet loss */
    assert_int_equal(tl_quadruplet_set_rows(q.g, q.score, &rows), TL_ERR_ARG);
    assert_int_equal(tl_quadruplet_rows_loss(q.g, q.bias, S, A, B, W, N, &rng, &L, G), TL_ERR_ARG);
    tl_graph_free(q.g);
}

static void test_quad_rows_all_pairs(void **state)
{
    (void)state;
    check(0, 1000);
    check(1, 1000);
}

static void test_quad_rows_sampled(void **state)
{
    (void)state;
    check(0, 3);
    check(1, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quad_rows_all_pairs),
        cmocka_unit_test(test_quad_rows_sampled),
    };
    return cmocka_run_group_tests_name("model_dp_distill", tests, NULL, NULL);
}
