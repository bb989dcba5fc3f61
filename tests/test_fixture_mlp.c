/* test_fixture_mlp.c — the engine against PyTorch references committed in
 * tests/fixtures (made by tests/fixtures/make_fixtures.py): an MLP with BCE
 * (activations, loss, every gradient, parameters after 3 Adam steps) and an
 * MMoE-like block (softmax gate, gate_mix, attention).
 *
 * Tolerance: 1e-5 relative, with an absolute floor for values near 0, where a
 * relative bound is meaningless for float32: 1e-6 for activations of order 1
 * (a few float32 ulps of the terms summed), 1e-7 for gradients and the loss
 * (averaged over the batch, their terms are ~30x smaller). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "graph.h"
#include "optim.h"
#include "support.h"

#define RTOL 1e-5
#define ATOL_ACT 1e-6
#define ATOL_GRAD 1e-7

static tlt_fixture *load(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/%s", name);
    tlt_fixture *f = tlt_fixture_load(path);
    assert_non_null(f);
    return f;
}

static const tlt_array *get(const tlt_fixture *f, const char *name, int rows, int cols)
{
    const tlt_array *a = tlt_fixture_get(f, name, rows, cols);
    assert_non_null(a);
    return a;
}

/* Copy fixture array `name` into parameter or input node `a`. */
static void load_into(tl_graph *g, const tlt_fixture *f, const char *name, tl_node a)
{
    float *dst = tl_graph_param_index(g, a) >= 0 ? tlt_param(g, a) : tl_graph_input(g, a);
    assert_non_null(dst);
    int rows = tl_node_batched(g, a) ? tl_graph_max_batch(g) : tl_node_rows(g, a);
    tlt_array_to_float(get(f, name, rows, tl_node_cols(g, a)), dst);
}

/* Compare a node's value (or, with grad, its parameter gradient) with `name`. */
static void expect(tl_graph *g, const tlt_fixture *f, const char *name, const float *got,
                   int rows, int cols, double atol)
{
    const tlt_array *a = get(f, name, rows, cols);
    assert_true(tlt_close(name, got, a->v, (size_t)rows * (size_t)cols, RTOL, atol));
    (void)g;
}

static void test_mlp_bce(void **state)
{
    (void)state;
    tlt_fixture *f = load("mlp_bce.txt");
    tl_graph *g = tl_graph_new(32, 1);
    assert_non_null(g);
    tl_node x = tl_input(g, 8, "x"), y = tl_input(g, 1, "y");
    const char *pn[6] = {"w1", "b1", "w2", "b2", "w3", "b3"};
    const int shape[6][2] = {{8, 16}, {1, 16}, {16, 8}, {1, 8}, {8, 1}, {1, 1}};
    tl_node p[6];
    for (int i = 0; i < 6; i++)
        p[i] = tl_param(g, shape[i][0], shape[i][1], TL_INIT_ZEROS, 0, pn[i]);
    tl_node h1 = tl_linear(g, x, p[0], p[1], TL_ACT_RELU);
    tl_node h2 = tl_linear(g, h1, p[2], p[3], TL_ACT_TANH);
    tl_node z = tl_linear(g, h2, p[4], p[5], TL_ACT_NONE);
    tl_node loss = tl_bce_logits(g, z, y, TL_NONE);
    assert_int_equal(tl_graph_backward(g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    load_into(g, f, "x", x);
    load_into(g, f, "y", y);
    for (int i = 0; i < 6; i++) load_into(g, f, pn[i], p[i]);

    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    expect(g, f, "h1", tl_graph_value(g, h1), 32, 16, ATOL_ACT);
    expect(g, f, "h2", tl_graph_value(g, h2), 32, 8, ATOL_ACT);
    expect(g, f, "logits", tl_graph_value(g, z), 32, 1, ATOL_ACT);
    expect(g, f, "loss", tl_graph_value(g, loss), 1, 1, ATOL_GRAD);
    char name[32];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "grad_%s", pn[i]);
        expect(g, f, name, tlt_param_grad(g, p[i]), shape[i][0], shape[i][1], ATOL_GRAD);
    }

    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAM);
    c.lr = 1e-2f;
    tl_optim *o = tl_optim_new(g, &c);
    assert_non_null(o);
    assert_int_equal(tl_optim_step(o), TL_OK);
    for (int s = 1; s < 3; s++) {
        assert_int_equal(tl_graph_forward(g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        assert_int_equal(tl_optim_step(o), TL_OK);
    }
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "%s_adam3", pn[i]);
        expect(g, f, name, tlt_param(g, p[i]), shape[i][0], shape[i][1], ATOL_GRAD);
    }
    tl_optim_free(o);
    tl_graph_free(g);
    tlt_fixture_free(f);
}

static void test_mix_ops(void **state)
{
    (void)state;
    tlt_fixture *f = load("mix_ops.txt");
    tl_graph *g = tl_graph_new(8, 1);
    assert_non_null(g);
    tl_node x = tl_input(g, 6, "x"), y = tl_input(g, 1, "y");
    const char *pn[6] = {"we", "be", "wg", "wq", "wo", "bo"};
    const int shape[6][2] = {{6, 12}, {1, 12}, {6, 3}, {6, 12}, {16, 1}, {1, 1}};
    tl_node p[6];
    for (int i = 0; i < 6; i++)
        p[i] = tl_param(g, shape[i][0], shape[i][1], TL_INIT_ZEROS, 0, pn[i]);
    tl_node experts = tl_linear(g, x, p[0], p[1], TL_ACT_RELU);
    tl_node gate = tl_softmax(g, tl_matmul(g, x, p[2]));
    tl_node mix = tl_gate_mix(g, gate, experts, 3);
    tl_node att = tl_attention(g, tl_matmul(g, x, p[3]), experts, experts, 3);
    tl_node parts[2] = {mix, att};
    tl_node z = tl_linear(g, tl_concat(g, 2, parts), p[4], p[5], TL_ACT_NONE);
    tl_node loss = tl_bce_logits(g, z, y, TL_NONE);
    assert_int_equal(tl_graph_backward(g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    load_into(g, f, "x", x);
    load_into(g, f, "y", y);
    for (int i = 0; i < 6; i++) load_into(g, f, pn[i], p[i]);

    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    expect(g, f, "experts", tl_graph_value(g, experts), 8, 12, ATOL_ACT);
    expect(g, f, "gate", tl_graph_value(g, gate), 8, 3, ATOL_ACT);
    expect(g, f, "mix", tl_graph_value(g, mix), 8, 4, ATOL_ACT);
    expect(g, f, "att", tl_graph_value(g, att), 8, 12, ATOL_ACT);
    expect(g, f, "logits", tl_graph_value(g, z), 8, 1, ATOL_ACT);
    expect(g, f, "loss", tl_graph_value(g, loss), 1, 1, ATOL_GRAD);
    char name[32];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "grad_%s", pn[i]);
        expect(g, f, name, tlt_param_grad(g, p[i]), shape[i][0], shape[i][1], ATOL_GRAD);
    }
    tl_graph_free(g);
    tlt_fixture_free(f);
}

/* The reader itself: a well-formed file, then malformed ones. */
static void test_fixture_reader(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/f.txt", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("# comment\na 2 2\n1 2\n3 -4.5e-1\n# between\nb 1 3 7 8\n9\n", fp);
    fclose(fp);
    tlt_fixture *f = tlt_fixture_load(path);
    assert_non_null(f);
    assert_int_equal(f->n, 2);
    const tlt_array *a = tlt_fixture_get(f, "a", 2, 2), *b = tlt_fixture_get(f, "b", 1, 3);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a->v[3] == -0.45 && b->v[2] == 9.0);
    assert_null(tlt_fixture_get(f, "a", 4, 1));
    assert_null(tlt_fixture_get(f, "c", 0, 0));
    tlt_fixture_free(f);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("a 2 2\n1 2 3\n", fp); /* one number short */
    fclose(fp);
    assert_null(tlt_fixture_load(path));
    tlt_tempdir_free(dir);
    assert_null(tlt_fixture_load(path)); /* the directory is gone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_bce),
        cmocka_unit_test(test_mix_ops),
        cmocka_unit_test(test_fixture_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
