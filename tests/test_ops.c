/* test_ops.c — a central-difference gradient check of every op in graph.h,
 * on fixed-row (parameter) operands and on batched ones fed from inputs, plus
 * dropout's training behaviour, stop_grad, build errors and sticky errors.
 *
 * Each case is a loss sum(op(...) * R) with a random R, so every output
 * element carries its own weight and the gradient is non-trivial. Operands
 * are parameters (checked directly) or, for batched operands, input x P with
 * a parameter P, so the gradient reaching the batched operand is checked
 * through P. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "graph.h"
#include "parallel.h"
#include "support.h"

#define MAXB 6  /* max_batch of every test graph */
#define BATCH 5 /* rows of each run: less than MAXB on purpose */

static tl_graph *newg(void)
{
    tl_graph *g = tl_graph_new(MAXB, 42);
    assert_non_null(g);
    return g;
}

static tl_node P(tl_graph *g, int rows, int cols)
{
    return tl_param(g, rows, cols, TL_INIT_UNIFORM, 1.0f, NULL);
}

/* A batched operand [B x cols] whose gradient reaches a parameter. */
static tl_node BX(tl_graph *g, int cols)
{
    return tl_matmul(g, tl_input(g, 3, NULL), P(g, 3, cols));
}

/* sum(out * R): R is an input for batched out, a parameter otherwise. */
static tl_node wsum(tl_graph *g, tl_node out)
{
    if (out == TL_NONE) return TL_NONE;
    int cols = tl_node_cols(g, out);
    tl_node r = tl_node_batched(g, out) ? tl_input(g, cols, NULL)
                                        : P(g, tl_node_rows(g, out), cols);
    return tl_sum(g, tl_mul(g, out, r));
}

/* Check status, append backward, plan, fill every input with U(-1, 1) and
 * set the batch to BATCH. */
static void prepare(tl_graph *g, tl_node loss)
{
    if (tl_graph_status(g) != TL_OK) print_message("build error: %s\n", tl_graph_errmsg(g));
    assert_int_equal(tl_graph_status(g), TL_OK);
    assert_int_equal(tl_graph_backward(g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    tl_rng rng;
    tl_rng_seed(&rng, 7);
    for (int i = 0; i < tl_graph_node_count(g); i++) {
        float *x = tl_graph_input(g, i);
        if (x) tlt_fill_uniform(x, (size_t)MAXB * (size_t)tl_node_cols(g, i), -1.0f, 1.0f, &rng);
    }
    assert_int_equal(tl_graph_set_batch(g, BATCH), TL_OK);
}

/* Gradient check; fails the test on any mismatch, on too many kinks (one
 * pre-activation near 0 can put every element of a weight column at a kink,
 * so up to a quarter may be skipped), or when every gradient is zero (a
 * check that could not fail). */
static void run_check(const char *what, tl_graph *g, tl_node loss, const tlt_gradcheck_opts *o)
{
    tlt_gradcheck_result r;
    int failed = tlt_gradcheck(g, loss, o, &r);
    if (failed != 0 || r.skipped * 4 > r.checked + r.skipped)
        print_message("case %s: %d failed, %d checked, %d skipped\n", what, r.failed, r.checked,
                      r.skipped);
    assert_int_equal(failed, 0);
    assert_true(r.checked > 0);
    assert_true(r.skipped * 4 <= r.checked + r.skipped);
    size_t n;
    const float *gr = tl_graph_grads(g, &n);
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)gr[i]));
    assert_true(mx > 1e-3);
}

static void check_loss(const char *what, tl_graph *g, tl_node loss)
{
    prepare(g, loss);
    run_check(what, g, loss, NULL);
}

/* ---- linear algebra ---------------------------------------------------------- */

static void test_matmul(void **state)
{
    (void)state;
    tl_graph *g = newg();
    tl_node y = tl_matmul(g, P(g, 4, 3), P(g, 3, 5));
    check_loss("matmul fixed", g, wsum(g, y));
    tl_graph_free(g);

    g = newg();
    y = tl_matmul(g, BX(g, 4), P(g, 4, 2));
    check_loss("matmul batched", g, wsum(g, y));
    tl_graph_free(g);
}

static void test_linear(void **state)
{
    (void)state;
    const tl_act acts[] = {TL_ACT_NONE, TL_ACT_RELU, TL_ACT_SIGMOID, TL_ACT_TANH};
    char what[64];
    for (int a = 0; a < 4; a++)
        for (int bias = 0; bias < 2; bias++)
            for (int batched = 0; batched < 2; batched++) {
                tl_graph *g = newg();
                tl_node x = batched ? BX(g, 4) : P(g, 3, 4);
                tl_node b = bias ? P(g, 1, 3) : TL_NONE;
                tl_node y = tl_linear(g, x, P(g, 4, 3), b, acts[a]);
                snprintf(what, sizeof what, "linear act %d bias %d batched %d", a, bias, batched);
                check_loss(what, g, wsum(g, y));
                tl_graph_free(g);
            }
}

/* The forward value of linear against a direct computation. */
static void test_linear_forward_value(void **state)
{
    (void)state;
    tl_graph *g = newg();
    tl_node x = P(g, 2, 3), w = P(g, 3, 4), b = P(g, 1, 4);
    tl_node y = tl_linear(g, x, w, b, TL_ACT_TANH);
    tl_node loss = wsum(g, y);
    prepare(g, loss);
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    const float *X = tlt_param(g, x), *W = tlt_param(g, w), *B = tlt_param(g, b);
    double want[8];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) {
            double s = (double)B[j];
            for (int k = 0; k < 3; k++) s += (double)X[i * 3 + k] * (double)W[k * 4 + j];
            want[i * 4 + j] = tanh(s);
        }
    assert_true(tlt_close("linear tanh", tl_graph_value(g, y), want, 8, 1e-5, 1e-6));
    tl_graph_free(g);
}

static void test_grouped_linear(void **state)
{
    (void)state;
    tl_graph *g = newg();
    /* 3 groups of k = 2 inputs -> m = 4 outputs each */
    tl_node y = tl_grouped_linear(g, BX(g, 6), P(g, 6, 4), P(g, 1, 12), 3, TL_ACT_RELU);
    assert_int_equal(tl_node_cols(g, y), 12);
    check_loss("grouped_linear batched relu", g, wsum(g, y));
    tl_graph_free(g);

    g = newg();
    tl_node x = P(g, 4, 6), w = P(g, 6, 4);
    y = tl_grouped_linear(g, x, w, TL_NONE, 3, TL_ACT_NONE);
    tl_node loss = wsum(g, y);
    check_loss("grouped_linear fixed", g, loss);
    /* group j = x[:, 2j..2j+1] times w[2j..2j+1, :] */
    const float *X = tlt_param(g, x), *W = tlt_param(g, w), *Y = tl_graph_value(g, y);
    double want[48];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            for (int c = 0; c < 4; c++) {
                double s = 0.0;
                for (int k = 0; k < 2; k++)
                    s += (double)X[i * 6 + j * 2 + k] * (double)W[(j * 2 + k) * 4 + c];
                want[i * 12 + j * 4 + c] = s;
            }
    assert_true(tlt_close("grouped_linear value", Y, want, 48, 1e-5, 1e-6));
    tl_graph_free(g);
}

/* The _sg layer is tl_token_linear of tl_stop_grad(x), bit for bit, with no
 * gradient into x: the same values and weight gradients, x's gradient 0. */
static void test_token_linear_sg(void **state)
{
    (void)state;
    float val[2][4 * 12], gw[2][8], gb[2][4], gx[2][24];
    for (int sg = 0; sg < 2; sg++) {
        tl_graph *g = newg();
        tl_node x = P(g, 4, 6), w = P(g, 2, 4), b = P(g, 1, 4);
        tl_node y = sg ? tl_token_linear_sg(g, x, w, b, 3, TL_ACT_RELU)
                       : tl_token_linear(g, tl_stop_grad(g, x), w, b, 3, TL_ACT_RELU);
        /* x also reaches the loss directly, so it has a gradient buffer */
        tl_node loss = tl_add(g, wsum(g, y), tl_sum(g, x));
        prepare(g, loss);
        assert_int_equal(tl_graph_forward(g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        memcpy(val[sg], tl_graph_value(g, y), sizeof val[sg]);
        memcpy(gw[sg], tlt_param_grad(g, w), sizeof gw[sg]);
        memcpy(gb[sg], tlt_param_grad(g, b), sizeof gb[sg]);
        memcpy(gx[sg], tlt_param_grad(g, x), sizeof gx[sg]);
        for (int i = 0; i < 24; i++) assert_true(gx[sg][i] == 1.0f); /* from sum(x) alone */
        tl_graph_free(g);
    }
    assert_memory_equal(val[0], val[1], sizeof val[0]);
    assert_memory_equal(gw[0], gw[1], sizeof gw[0]);
    assert_memory_equal(gb[0], gb[1], sizeof gb[0]);
}

static void test_token_linear(void **state)
{
    (void)state;
    const tl_act acts[] = {TL_ACT_NONE, TL_ACT_RELU, TL_ACT_SIGMOID, TL_ACT_TANH};
    char what[64];
    for (int a = 0; a < 4; a++)
        for (int bias = 0; bias < 2; bias++) {
            tl_graph *g = newg();
            /* 3 tokens of k = 2 -> m = 4 each, one shared w */
            tl_node x = a % 2 ? BX(g, 6) : P(g, 4, 6), w = P(g, 2, 4);
            tl_node b = bias ? P(g, 1, 4) : TL_NONE;
            tl_node y = tl_token_linear(g, x, w, b, 3, acts[a]);
            assert_int_equal(tl_node_cols(g, y), 12);
            snprintf(what, sizeof what, "token_linear act %d bias %d", a, bias);
            tl_node loss = wsum(g, y);
            check_loss(what, g, loss);
            const float *X = tl_graph_value(g, x), *W = tlt_param(g, w), *Y = tl_graph_value(g, y);
            const float *B = bias ? tlt_param(g, b) : NULL;
            double want[MAXB * 12];
            int rows = tl_node_rows(g, y);
            for (int i = 0; i < rows; i++)
                for (int t = 0; t < 3; t++)
                    for (int c = 0; c < 4; c++) {
                        double z = B ? (double)B[c] : 0.0;
                        for (int k = 0; k < 2; k++)
                            z += (double)X[i * 6 + t * 2 + k] * (double)W[k * 4 + c];
                        want[i * 12 + t * 4 + c] = a == 1 ? fmax(z, 0.0) : a == 2 ? 1.0 / (1.0 + exp(-z))
                                                   : a == 3 ? tanh(z) : z;
                    }
            assert_true(tlt_close(what, Y, want, (size_t)rows * 12, 1e-5, 1e-6));
            tl_graph_free(g);
        }
}

/* ---- elementwise --------------------------------------------------------------- */

typedef tl_node (*binary_fn)(tl_graph *, tl_node, tl_node);

static void test_binary_broadcast(void **state)
{
    (void)state;
    const binary_fn fns[] = {tl_add, tl_sub, tl_mul};
    const char *names[] = {"add", "sub", "mul"};
    /* b's shape per mode, for a [4 x 3]: same, row, column, scalar */
    const int brows[] = {4, 1, 4, 1}, bcols[] = {3, 3, 1, 1};
    char what[64];
    for (int f = 0; f < 3; f++)
        for (int m = 0; m < 4; m++)
            for (int batched = 0; batched < 2; batched++) {
                tl_graph *g = newg();
                tl_node a, b;
                if (batched) {
                    a = BX(g, 3);
                    /* batched b for the modes that keep a's rows */
                    b = brows[m] == 4 ? BX(g, bcols[m]) : P(g, 1, bcols[m]);
                } else {
                    a = P(g, 4, 3);
                    b = P(g, brows[m], bcols[m]);
                }
                tl_node y = fns[f](g, a, b);
                snprintf(what, sizeof what, "%s mode %d batched %d", names[f], m, batched);
                tl_node loss = wsum(g, y);
                check_loss(what, g, loss);
                /* forward value from the broadcasting rule */
                const float *A = tl_graph_value(g, a), *B = tl_graph_value(g, b);
                const float *Y = tl_graph_value(g, y);
                int rows = tl_node_rows(g, y);
                double want[4 * 6];
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < 3; j++) {
                        int bi = (brows[m] == 1 ? 0 : i) * bcols[m] + (bcols[m] == 1 ? 0 : j);
                        double av = (double)A[i * 3 + j], bv = (double)B[bi];
                        want[i * 3 + j] = f == 0 ? av + bv : f == 1 ? av - bv : av * bv;
                    }
                assert_true(tlt_close(what, Y, want, (size_t)rows * 3, 1e-6, 1e-7));
                tl_graph_free(g);
            }
}

typedef tl_node (*unary_fn)(tl_graph *, tl_node);

static tl_node scale_m15(tl_graph *g, tl_node a) { return tl_scale(g, a, -1.5f); }

static void test_unary(void **state)
{
    (void)state;
    const unary_fn fns[] = {scale_m15, tl_relu,    tl_sigmoid,    tl_tanh,
                            tl_exp,    tl_softplus, tl_softmax, tl_log_softmax};
    const char *names[] = {"scale", "relu", "sigmoid", "tanh", "exp", "softplus", "softmax",
                           "log_softmax"};
    char what[64];
    for (int f = 0; f < 8; f++)
        for (int batched = 0; batched < 2; batched++) {
            tl_graph *g = newg();
            tl_node a = batched ? BX(g, 5) : P(g, 4, 5);
            tl_node y = fns[f](g, a);
            snprintf(what, sizeof what, "%s batched %d", names[f], batched);
            tl_node loss = wsum(g, y);
            check_loss(what, g, loss);
            const float *A = tl_graph_value(g, a), *Y = tl_graph_value(g, y);
            int rows = tl_node_rows(g, y);
            double want[6 * 5];
            for (int i = 0; i < rows; i++) {
                double mx = -INFINITY, z = 0.0;
                for (int j = 0; j < 5; j++) mx = fmax(mx, (double)A[i * 5 + j]);
                for (int j = 0; j < 5; j++) z += exp((double)A[i * 5 + j] - mx);
                for (int j = 0; j < 5; j++) {
                    double x = (double)A[i * 5 + j], v = 0.0;
                    switch (f) {
                    case 0: v = -1.5 * x; break;
                    case 1: v = x > 0.0 ? x : 0.0; break;
                    case 2: v = 1.0 / (1.0 + exp(-x)); break;
                    case 3: v = tanh(x); break;
                    case 4: v = exp(x); break;
                    case 5: v = log1p(exp(x)); break;
                    case 6: v = exp(x - mx) / z; break;
                    default: v = x - mx - log(z); break;
                    }
                    want[i * 5 + j] = v;
                }
            }
            assert_true(tlt_close(what, Y, want, (size_t)rows * 5, 1e-5, 1e-6));
            tl_graph_free(g);
        }
}

/* Extreme inputs must stay finite where the function is. */
static void test_unary_extremes(void **state)
{
    (void)state;
    tl_graph *g = newg();
    tl_node a = P(g, 1, 4);
    tl_node s = tl_sigmoid(g, a), sp = tl_softplus(g, a), sm = tl_softmax(g, a);
    tl_node ls = tl_log_softmax(g, a);
    tl_node loss = tl_add(g, tl_add(g, wsum(g, s), wsum(g, sp)), tl_add(g, wsum(g, sm), wsum(g, ls)));
    prepare(g, loss);
    float *A = tlt_param(g, a);
    A[0] = 200.0f;
    A[1] = -200.0f;
    A[2] = 0.0f;
    A[3] = 90.0f;
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    const float *S = tl_graph_value(g, s), *SP = tl_graph_value(g, sp);
    const float *SM = tl_graph_value(g, sm), *LS = tl_graph_value(g, ls);
    const double ws[] = {1.0, 0.0, 0.5, 1.0}, wsp[] = {200.0, 0.0, log(2.0), 90.0};
    assert_true(tlt_close("sigmoid extremes", S, ws, 4, 1e-6, 1e-30));
    assert_true(tlt_close("softplus extremes", SP, wsp, 4, 1e-6, 1e-30));
    for (int j = 0; j < 4; j++) {
        assert_true(isfinite(SM[j]));
        assert_true(isfinite(LS[j]));
        assert_true(isfinite(tlt_param_grad(g, a)[j]));
    }
    assert_true(fabs((double)SM[0] - 1.0) < 1e-6);
    assert_true(fabs((double)LS[1] + 400.0) < 1e-3);
    tl_graph_free(g);
}

/* ---- shape ops -------------------------------------------------------------------- */

static void test_concat(void **state)
{
    (void)state;
    for (int batched = 0; batched < 2; batched++) {
        tl_graph *g = newg();
        tl_node parts[3];
        const int cols[3] = {2, 3, 1};
        for (int i = 0; i < 3; i++) parts[i] = batched ? BX(g, cols[i]) : P(g, 4, cols[i]);
        tl_node y = tl_concat(g, 3, parts);
        assert_int_equal(tl_node_cols(g, y), 6);
        tl_node loss = wsum(g, y);
        check_loss(batched ? "concat batched" : "concat fixed", g, loss);
        int rows = tl_node_rows(g, y);
        const float *Y = tl_graph_value(g, y);
        for (int i = 0; i < rows; i++) {
            int off = 0;
            for (int p = 0; p < 3; p++) {
                const float *X = tl_graph_value(g, parts[p]);
                for (int j = 0; j < cols[p]; j++)
                    assert_true(Y[i * 6 + off + j] == X[i * cols[p] + j]);
                off += cols[p];
            }
        }
        tl_graph_free(g);
    }
}

static void test_slice(void **state)
{
    (void)state;
    for (int batched = 0; batched < 2; batched++) {
        tl_graph *g = newg();
        tl_node a = batched ? BX(g, 6) : P(g, 4, 6);
        tl_node y = tl_slice(g, a, 2, 3);
        tl_node loss = wsum(g, y);
        check_loss(batched ? "slice batched" : "slice fixed", g, loss);
        const float *A = tl_graph_value(g, a), *Y = tl_graph_value(g, y);
        for (int i = 0; i < tl_node_rows(g, y); i++)
            for (int j = 0; j < 3; j++) assert_true(Y[i * 3 + j] == A[i * 6 + 2 + j]);
        if (!batched) { /* columns outside the slice get no gradient */
            const float *ga = tlt_param_grad(g, a);
            for (int i = 0; i < 4; i++) {
                assert_true(ga[i * 6 + 0] == 0.0f && ga[i * 6 + 1] == 0.0f && ga[i * 6 + 5] == 0.0f);
                assert_true(ga[i * 6 + 2] != 0.0f);
            }
        }
        tl_graph_free(g);
    }
}

static void test_embedding(void **state)
{
    (void)state;
    const int32_t vocab[2] = {3, 4};
    tl_graph *g = newg();
    tl_node table = tl_param(g, 7, 2, TL_INIT_UNIFORM, 1.0f, "table");
    tl_node ids = tl_input_ids(g, 2, "ids");
    tl_node y = tl_embedding(g, table, ids, 2, vocab);
    assert_int_equal(tl_node_cols(g, y), 4);
    tl_node loss = wsum(g, y);
    prepare(g, loss);
    /* field 0 uses ids 0 and 2 (rows 0, 2); field 1 uses 1 and 3 (rows 4, 6).
     * Rows 1, 3 and 5 are never touched. Row 6 of MAXB is outside the batch. */
    const int32_t id[MAXB][2] = {{0, 1}, {2, 1}, {0, 3}, {2, 3}, {0, 1}, {1, 0}};
    memcpy(tl_graph_ids(g, ids), id, sizeof id);
    run_check("embedding", g, loss, NULL);

    const float *T = tlt_param(g, table), *Y = tl_graph_value(g, y);
    for (int i = 0; i < BATCH; i++)
        for (int f = 0; f < 2; f++)
            for (int j = 0; j < 2; j++)
                assert_true(Y[i * 4 + f * 2 + j] == T[(f * 3 + id[i][f]) * 2 + j]);

    int pi = tl_graph_param_index(g, table), n = 0;
    assert_true(pi >= 0);
    assert_int_equal(tl_graph_param(g, pi)->sparse, 1);
    const int32_t *rows = tl_graph_touched_rows(g, pi, &n);
    assert_int_equal(n, 4);
    int seen[7] = {0};
    for (int r = 0; r < n; r++) {
        assert_true(rows[r] >= 0 && rows[r] < 7);
        seen[rows[r]]++;
    }
    const int expect[7] = {1, 0, 1, 0, 1, 0, 1};
    const float *gt = tlt_param_grad(g, table);
    for (int r = 0; r < 7; r++) {
        assert_int_equal(seen[r], expect[r]);
        int nonzero = gt[r * 2] != 0.0f || gt[r * 2 + 1] != 0.0f;
        assert_int_equal(nonzero, expect[r]);
    }
    /* a dense parameter reports no row list */
    tl_graph_touched_rows(g, tl_graph_param_index(g, tl_graph_find(g, "table")) + 1, &n);
    assert_int_equal(n, -1);
    /* zero_grad clears the list and the rows */
    tl_graph_zero_grad(g);
    tl_graph_touched_rows(g, pi, &n);
    assert_int_equal(n, 0);
    for (int r = 0; r < 14; r++) assert_true(gt[r] == 0.0f);
    tl_graph_free(g);
}

/* ---- reductions --------------------------------------------------------------------- */

static void test_reductions(void **state)
{
    (void)state;
    char what[64];
    for (int op = 0; op < 3; op++)
        for (int batched = 0; batched < 2; batched++) {
            tl_graph *g = newg();
            tl_node a = batched ? BX(g, 3) : P(g, 4, 3);
            tl_node y = op == 0 ? tl_sum(g, a) : op == 1 ? tl_mean(g, a) : tl_row_sum(g, a);
            snprintf(what, sizeof what, "reduction %d batched %d", op, batched);
            tl_node loss = wsum(g, y);
            check_loss(what, g, loss);
            const float *A = tl_graph_value(g, a), *Y = tl_graph_value(g, y);
            int rows = tl_node_rows(g, a);
            double tot = 0.0, want[MAXB];
            for (int i = 0; i < rows; i++) {
                want[i] = 0.0;
                for (int j = 0; j < 3; j++) want[i] += (double)A[i * 3 + j];
                tot += want[i];
            }
            if (op == 0) want[0] = tot;
            if (op == 1) want[0] = tot / (rows * 3);
            assert_true(tlt_close(what, Y, want, op == 2 ? (size_t)rows : 1, 1e-6, 1e-7));
            tl_graph_free(g);
        }
}

/* ---- mixtures ------------------------------------------------------------------------ */

static void test_gate_mix(void **state)
{
    (void)state;
    for (int batched = 0; batched < 2; batched++) {
        tl_graph *g = newg();
        tl_node gate = batched ? tl_softmax(g, BX(g, 3)) : P(g, 4, 3);
        tl_node ex = batched ? BX(g, 6) : P(g, 4, 6);
        tl_node y = tl_gate_mix(g, gate, ex, 3);
        assert_int_equal(tl_node_cols(g, y), 2);
        tl_node loss = wsum(g, y);
        check_loss(batched ? "gate_mix batched" : "gate_mix fixed", g, loss);
        const float *G = tl_graph_value(g, gate), *E = tl_graph_value(g, ex);
        const float *Y = tl_graph_value(g, y);
        int rows = tl_node_rows(g, y);
        double want[MAXB * 2];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < 2; j++) {
                double s = 0.0;
                for (int k = 0; k < 3; k++) s += (double)G[i * 3 + k] * (double)E[i * 6 + k * 2 + j];
                want[i * 2 + j] = s;
            }
        assert_true(tlt_close("gate_mix value", Y, want, (size_t)rows * 2, 1e-5, 1e-7));
        tl_graph_free(g);
    }
}

static void test_attention(void **state)
{
    (void)state;
    const int T = 3, d = 4;
    for (int batched = 0; batched < 2; batched++) {
        tl_graph *g = newg();
        tl_node q = batched ? BX(g, 12) : P(g, 2, 12);
        tl_node k = batched ? BX(g, 12) : P(g, 2, 12);
        tl_node v = batched ? BX(g, 12) : P(g, 2, 12);
        tl_node y = tl_attention(g, q, k, v, T);
        tl_node loss = wsum(g, y);
        check_loss(batched ? "attention batched" : "attention fixed", g, loss);
        const float *Q = tl_graph_value(g, q), *K = tl_graph_value(g, k);
        const float *V = tl_graph_value(g, v), *Y = tl_graph_value(g, y);
        int rows = tl_node_rows(g, y);
        double want[MAXB * 12];
        for (int i = 0; i < rows; i++)
            for (int t = 0; t < T; t++) {
                double s[3], mx = -INFINITY, z = 0.0;
                for (int j = 0; j < T; j++) {
                    s[j] = 0.0;
                    for (int c = 0; c < d; c++)
                        s[j] += (double)Q[i * 12 + t * d + c] * (double)K[i * 12 + j * d + c];
                    s[j] /= sqrt((double)d);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < T; j++) z += (s[j] = exp(s[j] - mx));
                for (int c = 0; c < d; c++) {
                    double o = 0.0;
                    for (int j = 0; j < T; j++) o += s[j] / z * (double)V[i * 12 + j * d + c];
                    want[i * 12 + t * d + c] = o;
                }
            }
        assert_true(tlt_close("attention value", Y, want, (size_t)rows * 12, 1e-5, 1e-6));
        tl_graph_free(g);
    }
}

/* ---- dropout / stop_grad ------------------------------------------------------------- */

static void test_dropout_eval(void **state)
{
    (void)state;
    tl_graph *g = newg();
    tl_node a = P(g, 4, 5);
    tl_node y = tl_dropout(g, a, 0.5f);
    tl_node loss = wsum(g, y);
    check_loss("dropout eval", g, loss);
    assert_memory_equal(tl_graph_value(g, y), tl_graph_value(g, a), 20 * sizeof(float));
    tl_graph_free(g);

    /* training mode: the checker rewinds the RNG so every run sees one mask */
    g = newg();
    a = BX(g, 5);
    y = tl_dropout(g, a, 0.3f);
    loss = wsum(g, y);
    prepare(g, loss);
    tlt_gradcheck_opts o = tlt_gradcheck_defaults();
    o.training = 1;
    run_check("dropout training", g, loss, &o);
    tl_graph_free(g);
}

static tl_graph *dropout_graph(uint64_t seed, float p, tl_node *a, tl_node *y, tl_node *loss)
{
    tl_graph *g = tl_graph_new(64, seed);
    assert_non_null(g);
    *a = tl_param(g, 64, 50, TL_INIT_UNIFORM, 1.0f, "a");
    *y = tl_dropout(g, *a, p);
    *loss = wsum(g, *y);
    assert_int_equal(tl_graph_backward(g, *loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    float *A = tlt_param(g, *a);
    for (int i = 0; i < 64 * 50; i++) A[i] = 1.0f + (float)(i % 7); /* no zeros */
    return g;
}

static void test_dropout_training(void **state)
{
    (void)state;
    const float p = 0.3f;
    const int n = 64 * 50;
    tl_node a, y, loss;
    tl_graph *g = dropout_graph(99, p, &a, &y, &loss);
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    const float *A = tlt_param(g, a), *Y = tl_graph_value(g, y), *GA = tlt_param_grad(g, a);
    const float *R = tl_graph_value(g, tl_graph_param(g, 1)->node);
    int dropped = 0;
    for (int i = 0; i < n; i++) {
        if (Y[i] == 0.0f) {
            dropped++;
            assert_true(GA[i] == 0.0f);
        } else {
            assert_float_equal(Y[i], A[i] / (1.0f - p), 1e-5f * Y[i]);
            /* dx = dy * mask, the mask seen as out / x */
            assert_float_equal(GA[i], R[i] * Y[i] / A[i], 1e-5f);
        }
    }
    double frac = (double)dropped / n; /* std of the fraction is about 0.008 */
    assert_true(fabs(frac - (double)p) < 0.04);
    /* the mask is tl_rng_uniform's stream, one draw per element in order, and
     * the graph's RNG ends where those draws leave it */
    {
        tl_node ar, yr, lr;
        tl_graph *gr = dropout_graph(99, p, &ar, &yr, &lr);
        tl_rng ref = *tl_graph_rng(gr);
        assert_int_equal(tl_graph_forward(gr, 1), TL_OK);
        const float *Yr = tl_graph_value(gr, yr), *Ar = tlt_param(gr, ar);
        for (int i = 0; i < n; i++) {
            float m = tl_rng_uniform(&ref) < 1.0f - p ? 1.0f / (1.0f - p) : 0.0f;
            assert_true(Yr[i] == Ar[i] * m);
        }
        assert_memory_equal(&ref, tl_graph_rng(gr), sizeof ref);
        tl_graph_free(gr);
    }

    /* same seed, same mask bits; another seed, another mask */
    tl_node a2, y2, l2;
    tl_graph *g2 = dropout_graph(99, p, &a2, &y2, &l2);
    assert_int_equal(tl_graph_forward(g2, 1), TL_OK);
    assert_memory_equal(tl_graph_value(g2, y2), Y, (size_t)n * sizeof(float));
    tl_graph *g3 = dropout_graph(100, p, &a2, &y2, &l2);
    assert_int_equal(tl_graph_forward(g3, 1), TL_OK);
    assert_memory_not_equal(tl_graph_value(g3, y2), Y, (size_t)n * sizeof(float));
    /* the next training run draws a new mask */
    float *first = malloc((size_t)n * sizeof *first);
    assert_non_null(first);
    memcpy(first, Y, (size_t)n * sizeof *first);
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    assert_memory_not_equal(tl_graph_value(g, y), first, (size_t)n * sizeof(float));
    /* evaluation runs are the identity */
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    assert_memory_equal(tl_graph_value(g, y), A, (size_t)n * sizeof(float));
    free(first);
    tl_graph_free(g);
    tl_graph_free(g2);
    tl_graph_free(g3);
}

static void test_stop_grad(void **state)
{
    (void)state;
    tl_graph *g = newg();
    tl_node a = P(g, 3, 4), b = P(g, 3, 4);
    tl_node s = tl_stop_grad(g, a);
    /* loss = sum(stop(a) * b) + sum(a): a's gradient is exactly 1 */
    tl_node loss = tl_add(g, tl_sum(g, tl_mul(g, s, b)), tl_sum(g, a));
    prepare(g, loss);
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    assert_memory_equal(tl_graph_value(g, s), tlt_param(g, a), 12 * sizeof(float));
    assert_null(tl_graph_grad(g, s));
    const float *ga = tlt_param_grad(g, a), *gb = tlt_param_grad(g, b), *A = tlt_param(g, a);
    for (int i = 0; i < 12; i++) {
        assert_true(ga[i] == 1.0f);
        assert_true(gb[i] == A[i]);
    }
    tl_graph_free(g);
}

/* ---- backbone ops: block_mix (cross-stitch, AdaTT), DSelect-k's gate parts ---------------- */

/* Backward twice without zeroing doubles every parameter gradient. */
static void check_backward_twice(tl_graph *g)
{
    size_t n;
    tl_graph_zero_grad(g);
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    const float *gr = tl_graph_grads(g, &n);
    float *once = malloc(n * sizeof *once);
    assert_non_null(once);
    memcpy(once, gr, n * sizeof *once);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    for (size_t i = 0; i < n; i++) assert_true(fabsf(gr[i] - 2.0f * once[i]) <= 1e-6f * fabsf(once[i]) + 1e-12f);
    free(once);
}

static void test_block_mix(void **state)
{
    (void)state;
    /* {R, C, first, diag}: a cross-stitch unit, and AdaTT's residual over blocks 1..2 */
    const int cases[2][3] = {{3, 3, 0}, {1, 2, 1}};
    const float diags[2] = {0.7f, 0.0f};
    char what[64];
    for (int c = 0; c < 2; c++)
        for (int batched = 0; batched < 2; batched++) {
            int R = cases[c][0], C = cases[c][1], first = cases[c][2], d = 2;
            tl_graph *g = newg();
            tl_node x = batched ? BX(g, 8) : P(g, 4, 8), w = P(g, R, C);
            tl_node y = tl_block_mix(g, x, w, first, d, diags[c]);
            assert_int_equal(tl_node_cols(g, y), R * d);
            snprintf(what, sizeof what, "block_mix case %d batched %d", c, batched);
            check_loss(what, g, wsum(g, y));
            const float *X = tl_graph_value(g, x), *W = tlt_param(g, w), *Y = tl_graph_value(g, y);
            int rows = tl_node_rows(g, y);
            double want[MAXB * 6];
            for (int i = 0; i < rows; i++)
                for (int r = 0; r < R; r++)
                    for (int j = 0; j < d; j++) {
                        double v = 0.0;
                        for (int q = 0; q < C; q++)
                            v += ((double)W[r * C + q] + (r == q ? (double)diags[c] : 0.0)) *
                                 (double)X[i * 8 + (first + q) * d + j];
                        want[(i * R + r) * d + j] = v;
                    }
            assert_true(tlt_close(what, Y, want, (size_t)rows * R * d, 1e-5, 1e-6));
            check_backward_twice(g);
            tl_graph_free(g);
        }
    /* blocks past x's columns, and a diagonal on non-square weights, are refused */
    tl_graph *g = newg();
    assert_int_equal(tl_block_mix(g, P(g, 4, 8), P(g, 2, 2), 3, 2, 0.0f), TL_NONE);
    assert_non_null(strstr(tl_graph_errmsg(g), "block_mix"));
    tl_graph_free(g);
    g = newg();
    assert_int_equal(tl_block_mix(g, P(g, 4, 8), P(g, 1, 2), 0, 2, 0.5f), TL_NONE);
    assert_non_null(strstr(tl_graph_errmsg(g), "square"));
    tl_graph_free(g);
}

static void test_smooth_step(void **state)
{
    (void)state;
    const float gamma = 1.5f;
    for (int batched = 0; batched < 2; batched++) {
        tl_graph *g = newg();
        tl_node a = batched ? BX(g, 5) : P(g, 4, 5);
        tl_node y = tl_smooth_step(g, a, gamma);
        check_loss(batched ? "smooth_step batched" : "smooth_step fixed", g, wsum(g, y));
        const float *A = tl_graph_value(g, a), *Y = tl_graph_value(g, y);
        int rows = tl_node_rows(g, y), inside = 0;
        double want[MAXB * 5];
        for (int i = 0; i < rows * 5; i++) {
            double t = A[i], gm = gamma;
            want[i] = t <= -gm / 2 ? 0.0 : t >= gm / 2 ? 1.0 : -2.0 * t * t * t / (gm * gm * gm) + 1.5 * t / gm + 0.5;
            inside += fabs(t) < gm / 2;
        }
        assert_true(inside > 0 && inside < rows * 5 + (batched ? 1 : 0));
        assert_true(tlt_close("smooth_step value", Y, want, (size_t)rows * 5, 1e-6, 1e-6));
        check_backward_twice(g);
        tl_graph_free(g);
    }
    tl_graph *g = newg();
    assert_int_equal(tl_smooth_step(g, P(g, 2, 2), 0.0f), TL_NONE);
    assert_non_null(strstr(tl_graph_errmsg(g), "gamma"));
    tl_graph_free(g);
}

/* Selector weights by brute force: bit j of e (0 = most significant of m). */
static double selector_want(const float *s, int e, int m)
{
    double p = 1.0;
    for (int j = 0; j < m; j++) p *= (e >> (m - 1 - j)) & 1 ? (double)s[j] : 1.0 - (double)s[j];
    return p;
}

static void test_dselect_select(void **state)
{
    (void)state;
    const int experts[2] = {4, 5}; /* m = 2 and m = 3 bits */
    char what[64];
    for (int c = 0; c < 2; c++)
        for (int batched = 0; batched < 2; batched++) {
            int E = experts[c], m = tl_dselect_bits(E), k = 2;
            assert_int_equal(m, c == 0 ? 2 : 3);
            tl_graph *g = newg();
            tl_node s = tl_sigmoid(g, batched ? BX(g, k * m) : P(g, 4, k * m));
            tl_node r = tl_dselect_select(g, s, k, E);
            assert_int_equal(tl_node_cols(g, r), k * E);
            snprintf(what, sizeof what, "dselect_select E=%d batched %d", E, batched);
            check_loss(what, g, wsum(g, r));
            const float *S = tl_graph_value(g, s), *Rv = tl_graph_value(g, r);
            int rows = tl_node_rows(g, r);
            double want[MAXB * 10];
            for (int i = 0; i < rows; i++)
                for (int q = 0; q < k; q++)
                    for (int e = 0; e < E; e++)
                        want[(i * k + q) * E + e] = selector_want(S + (i * k + q) * m, e, m);
            assert_true(tlt_close(what, Rv, want, (size_t)rows * k * E, 1e-6, 1e-7));
            check_backward_twice(g);
            tl_graph_free(g);
        }
    /* a power of 2 with saturated steps: each selector is one-hot on the code */
    tl_graph *g = newg();
    tl_node z = P(g, 1, 3);
    tl_node r = tl_dselect_select(g, tl_smooth_step(g, z, 1.0f), 1, 8);
    prepare(g, tl_sum(g, r));
    float *Z = tlt_param(g, z);
    Z[0] = 2.0f, Z[1] = -2.0f, Z[2] = 2.0f; /* bits 101: expert 5 */
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    for (int e = 0; e < 8; e++) assert_true(tl_graph_value(g, r)[e] == (e == 5 ? 1.0f : 0.0f));
    tl_graph_free(g);
    g = newg();
    assert_int_equal(tl_dselect_select(g, P(g, 2, 5), 2, 4), TL_NONE); /* 2 x 2 bits, not 5 */
    assert_non_null(strstr(tl_graph_errmsg(g), "dselect_select"));
    tl_graph_free(g);
}

static void test_dselect_penalty(void **state)
{
    (void)state;
    const int experts[2] = {4, 3}; /* without and with the reachability term */
    char what[64];
    for (int c = 0; c < 2; c++)
        for (int batched = 0; batched < 2; batched++) {
            int E = experts[c], k = 2;
            const float ent = 0.5f;
            tl_graph *g = newg();
            tl_node r = tl_sigmoid(g, batched ? BX(g, k * E) : P(g, 4, k * E));
            tl_node p = tl_dselect_penalty(g, r, k, E, ent);
            snprintf(what, sizeof what, "dselect_penalty E=%d batched %d", E, batched);
            check_loss(what, g, wsum(g, p));
            const float *Rv = tl_graph_value(g, r), *Pv = tl_graph_value(g, p);
            int rows = tl_node_rows(g, p);
            double want[MAXB];
            for (int i = 0; i < rows; i++) {
                double h = 0.0, inv = 0.0;
                for (int q = 0; q < k; q++) {
                    double sum = 0.0;
                    for (int e = 0; e < E; e++) {
                        double v = Rv[(i * k + q) * E + e];
                        h -= v * log(v + 1e-6);
                        sum += v;
                    }
                    inv += E == 3 ? 1.0 / sum : 0.0;
                }
                want[i] = (double)ent * h + inv;
            }
            assert_true(tlt_close(what, Pv, want, (size_t)rows, 1e-5, 1e-6));
            check_backward_twice(g);
            tl_graph_free(g);
        }
}

/* ---- losses ------------------------------------------------------------------------------ */

typedef tl_node (*loss_fn)(tl_graph *, tl_node, tl_node, tl_node);

/* Fixed rows: prediction, soft target and weights are all nodes with gradients. */
static void test_losses_fixed(void **state)
{
    (void)state;
    const loss_fn fns[] = {tl_bce_logits, tl_bce_prob, tl_mse};
    const char *names[] = {"bce_logits", "bce_prob", "mse"};
    char what[64];
    for (int f = 0; f < 3; f++)
        for (int weighted = 0; weighted < 2; weighted++) {
            tl_graph *g = newg();
            tl_node pred = P(g, 5, 1);
            if (f == 1) pred = tl_sigmoid(g, pred);
            tl_node target = tl_sigmoid(g, P(g, 5, 1)); /* soft targets from another node */
            tl_node w = weighted ? tl_softplus(g, P(g, 5, 1)) : TL_NONE;
            tl_node loss = fns[f](g, pred, target, w);
            snprintf(what, sizeof what, "%s weighted %d", names[f], weighted);
            check_loss(what, g, loss);
            /* value against a direct computation */
            const float *A = tl_graph_value(g, pred), *B = tl_graph_value(g, target);
            const float *W = weighted ? tl_graph_value(g, w) : NULL;
            double s = 0.0, ws = 0.0;
            for (int i = 0; i < 5; i++) {
                double a = (double)A[i], b = (double)B[i], wi = W ? (double)W[i] : 1.0, l;
                if (f == 0) l = -(b * log(1.0 / (1.0 + exp(-a))) + (1.0 - b) * log(1.0 - 1.0 / (1.0 + exp(-a))));
                else if (f == 1) l = -(b * log(a) + (1.0 - b) * log(1.0 - a));
                else l = (a - b) * (a - b);
                s += wi * l;
                ws += wi;
            }
            double want = s / ws;
            assert_true(tlt_close(what, tl_graph_value(g, loss), &want, 1, 1e-5, 1e-7));
            tl_graph_free(g);
        }
}

/* Batched: labels 0/1 and per-row weights (some zero) from inputs. */
static void test_losses_batched(void **state)
{
    (void)state;
    const loss_fn fns[] = {tl_bce_logits, tl_bce_prob, tl_mse};
    char what[64];
    for (int f = 0; f < 3; f++) {
        tl_graph *g = newg();
        tl_node pred = BX(g, 1);
        if (f == 1) pred = tl_sigmoid(g, pred);
        tl_node y = tl_input(g, 1, "label"), w = tl_input(g, 1, "weight");
        tl_node loss = fns[f](g, pred, y, w);
        prepare(g, loss);
        float *Y = tl_graph_input(g, y), *W = tl_graph_input(g, w);
        for (int i = 0; i < MAXB; i++) {
            Y[i] = (float)(i % 2);
            W[i] = i == 1 ? 0.0f : 0.5f + (float)i;
        }
        snprintf(what, sizeof what, "loss %d batched", f);
        run_check(what, g, loss, NULL);
        tl_graph_free(g);
    }
    /* all weights zero: loss 0 and no gradient */
    tl_graph *g = newg();
    tl_node p = P(g, 3, 1);
    tl_node loss = tl_mse(g, p, tl_sigmoid(g, P(g, 3, 1)), tl_scale(g, P(g, 3, 1), 0.0f));
    prepare(g, loss);
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    assert_true(tl_graph_value(g, loss)[0] == 0.0f);
    for (int i = 0; i < 3; i++) assert_true(tlt_param_grad(g, p)[i] == 0.0f);
    tl_graph_free(g);
}

/* All pairs (max_pairs large) and sampled pairs (the checker rewinds the RNG
 * so every run samples the same pairs). */
static void test_quadruplet_bpr(void **state)
{
    (void)state;
    for (int sampled = 0; sampled < 2; sampled++)
        for (int flip = 0; flip < 2; flip++) {
            tl_graph *g = newg();
            tl_node s = BX(g, 1), ya = tl_input(g, 1, "ya"), yb = tl_input(g, 1, "yb");
            tl_node loss = tl_quadruplet_bpr(g, s, ya, yb, flip, sampled ? 2 : 1000);
            prepare(g, loss);
            /* rows 0..4: (+,+) (+,-) (-,+) (-,-) (+,+) */
            const float la[MAXB] = {1, 1, 0, 0, 1, 0}, lb[MAXB] = {1, 0, 1, 0, 1, 0};
            memcpy(tl_graph_input(g, ya), la, sizeof la);
            memcpy(tl_graph_input(g, yb), lb, sizeof lb);
            tlt_gradcheck_opts o = tlt_gradcheck_defaults();
            o.training = 1;
            char what[64];
            snprintf(what, sizeof what, "quadruplet_bpr sampled %d flip %d", sampled, flip);
            run_check(what, g, loss, &o);
            if (!sampled) { /* the value from the definition */
                const float *S = tl_graph_value(g, s);
                int grp[BATCH];
                for (int i = 0; i < BATCH; i++) {
                    int b = lb[i] > 0.5f;
                    if (flip) b = !b;
                    grp[i] = (la[i] > 0.5f ? 0 : 2) + (b ? 0 : 1);
                }
                double want = 0.0;
                for (int p = 0; p < 3; p++) {
                    double sum = 0.0;
                    int cnt = 0;
                    for (int i = 0; i < BATCH; i++)
                        for (int j = 0; j < BATCH; j++)
                            if (grp[i] == p && grp[j] == p + 1) {
                                sum += log1p(exp(-((double)S[i] - (double)S[j])));
                                cnt++;
                            }
                    if (cnt) want += sum / cnt;
                }
                assert_true(tlt_close(what, tl_graph_value(g, loss), &want, 1, 1e-5, 1e-7));
            }
            tl_graph_free(g);
        }
}

static void test_bernoulli_kl(void **state)
{
    (void)state;
    tl_graph *g = newg();
    tl_node p = tl_sigmoid(g, P(g, 5, 1)), q = tl_sigmoid(g, P(g, 5, 1));
    tl_node loss = tl_bernoulli_kl(g, p, q);
    check_loss("bernoulli_kl", g, loss);
    const float *Pv = tl_graph_value(g, p), *Qv = tl_graph_value(g, q);
    double s = 0.0;
    for (int i = 0; i < 5; i++) {
        double a = (double)Pv[i], b = (double)Qv[i];
        s += a * log(a / b) + (1.0 - a) * log((1.0 - a) / (1.0 - b));
    }
    s /= 5.0;
    assert_true(tlt_close("bernoulli_kl value", tl_graph_value(g, loss), &s, 1, 1e-4, 1e-7));
    /* both p and q received gradient */
    assert_true(tlt_param_grad(g, tl_graph_param(g, 0)->node)[0] != 0.0f);
    assert_true(tlt_param_grad(g, tl_graph_param(g, 1)->node)[0] != 0.0f);
    tl_graph_free(g);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void assert_contains(const char *msg, const char *part)
{
    if (!strstr(msg, part)) print_message("message '%s' lacks '%s'\n", msg, part);
    assert_non_null(strstr(msg, part));
}

static void test_shape_errors(void **state)
{
    (void)state;
    tl_graph *g = newg();
    tl_node a = P(g, 4, 3), b = P(g, 2, 5);
    assert_int_equal(tl_add(g, a, b), TL_NONE);
    assert_int_equal(tl_graph_status(g), TL_ERR_SHAPE);
    assert_contains(tl_graph_errmsg(g), "add");
    assert_contains(tl_graph_errmsg(g), "[4 x 3]");
    assert_contains(tl_graph_errmsg(g), "[2 x 5]");
    assert_contains(tl_errmsg(), "[2 x 5]");
    tl_graph_free(g);

    g = newg();
    tl_node x = tl_input(g, 7, "x");
    assert_int_equal(tl_matmul(g, x, P(g, 6, 2)), TL_NONE);
    assert_contains(tl_graph_errmsg(g), "matmul");
    assert_contains(tl_graph_errmsg(g), "[B x 7]");
    assert_contains(tl_graph_errmsg(g), "[6 x 2]");
    tl_graph_free(g);

    g = newg();
    x = tl_input(g, 4, "x");
    assert_int_equal(tl_linear(g, x, P(g, 4, 3), P(g, 1, 2), TL_ACT_NONE), TL_NONE);
    assert_contains(tl_graph_errmsg(g), "linear");
    assert_contains(tl_graph_errmsg(g), "[1 x 3]");
    assert_contains(tl_graph_errmsg(g), "[1 x 2]");
    tl_graph_free(g);

    g = newg();
    assert_int_equal(tl_bce_logits(g, tl_input(g, 2, "z"), tl_input(g, 1, "y"), TL_NONE), TL_NONE);
    assert_contains(tl_graph_errmsg(g), "bce_logits");
    assert_contains(tl_graph_errmsg(g), "[B x 2]");
    tl_graph_free(g);

    /* the loss must be 1 x 1 */
    g = newg();
    tl_node p = P(g, 2, 2);
    assert_int_equal(tl_graph_backward(g, p), TL_ERR_SHAPE);
    assert_contains(tl_errmsg(), "[2 x 2]");
    tl_graph_free(g);
}

static void test_embedding_id_out_of_range(void **state)
{
    (void)state;
    const int32_t vocab[2] = {3, 4};
    tl_graph *g = newg();
    tl_node table = P(g, 7, 2), ids = tl_input_ids(g, 2, "ids");
    tl_node y = tl_node_name(g, tl_embedding(g, table, ids, 2, vocab), "emb");
    prepare(g, wsum(g, y));
    int32_t *id = tl_graph_ids(g, ids);
    memset(id, 0, (size_t)MAXB * 2 * sizeof *id);
    id[2 * 2 + 1] = 4; /* sample 2, field 1: vocab is 4, so 4 is out of range */
    assert_int_equal(tl_graph_forward(g, 0), TL_ERR_ARG);
    const char *m = tl_errmsg();
    assert_contains(m, "emb");
    assert_contains(m, "field");
    assert_contains(m, "row");
    assert_contains(m, " 4 ");
    /* a backward run after the failed forward must not scatter the bad id */
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    id[2 * 2 + 1] = -1;
    assert_int_equal(tl_graph_forward(g, 0), TL_ERR_ARG);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    int n;
    tl_graph_touched_rows(g, 0, &n);
    assert_true(n >= 0 && n <= 7);
    id[2 * 2 + 1] = 3;
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    /* rows beyond the batch are not looked at */
    id[5 * 2] = 99;
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    tl_graph_free(g);
}

/* The embedding gather and scatter, concat and softmax run on the worker
 * pool. Results must be the same bits at every thread count, and equal a
 * serial reference; an id out of range is reported as the first one of the
 * batch whichever chunk finds it. */
#define PB 1500 /* rows: several chunks at every thread count tried */
#define PF 3    /* fields */
#define PD 16   /* embedding width */
#define PV 40   /* vocabulary of each field: ids repeat, so the scatter adds up */

typedef struct {
    tl_graph *g;
    tl_node table, ids, num, emb, x, sm, loss;
} par_graph;

static void par_build(par_graph *p)
{
    const int32_t vocab[PF] = {PV, PV, PV};
    p->g = tl_graph_new(PB, 42);
    assert_non_null(p->g);
    tl_graph *g = p->g;
    p->table = tl_param(g, PF * PV, PD, TL_INIT_UNIFORM, 1.0f, "table");
    p->ids = tl_input_ids(g, PF, "ids");
    p->num = tl_input(g, 5, "num");
    p->emb = tl_embedding(g, p->table, p->ids, PF, vocab);
    /* the embedding twice: its first slot overwrites the fresh gradient, the second adds */
    tl_node parts[3] = {p->emb, p->num, p->emb};
    p->x = tl_concat(g, 3, parts);
    p->sm = tl_softmax(g, tl_slice(g, p->x, 3, 8));
    tl_node y = tl_concat(g, 2, (tl_node[]){p->x, p->sm});
    p->loss = wsum(g, tl_mul(g, y, y));
    assert_int_equal(tl_graph_status(g), TL_OK);
    assert_int_equal(tl_graph_backward(g, p->loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    tl_rng rng;
    tl_rng_seed(&rng, 11);
    for (int i = 0; i < tl_graph_node_count(g); i++) {
        float *x = tl_graph_input(g, i);
        if (x) tlt_fill_uniform(x, (size_t)PB * (size_t)tl_node_cols(g, i), -1.0f, 1.0f, &rng);
    }
    int32_t *id = tl_graph_ids(g, p->ids);
    for (int i = 0; i < PB * PF; i++) id[i] = (int32_t)tl_rng_below(&rng, PV);
    assert_int_equal(tl_graph_set_batch(g, PB), TL_OK);
}

/* Forward and backward; copies of the values of x and sm, every gradient and
 * the touched rows. */
static void par_run(par_graph *p, float *x, float *sm, float *grads, int32_t *touched, int *nt)
{
    tl_graph *g = p->g;
    size_t ng;
    tl_graph_zero_grad(g);
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    memcpy(x, tl_graph_value(g, p->x), (size_t)PB * (size_t)tl_node_cols(g, p->x) * sizeof *x);
    memcpy(sm, tl_graph_value(g, p->sm), (size_t)PB * 8 * sizeof *sm);
    const float *gr = tl_graph_grads(g, &ng);
    memcpy(grads, gr, ng * sizeof *grads);
    const int32_t *rows = tl_graph_touched_rows(g, tl_graph_param_index(g, p->table), nt);
    memcpy(touched, rows, (size_t)*nt * sizeof *touched);
}

static void test_shape_ops_threads(void **state)
{
    (void)state;
    int saved = tl_get_threads();
    par_graph p;
    par_build(&p);
    tl_graph *g = p.g;
    size_t ng, nx = (size_t)PB * (size_t)tl_node_cols(g, p.x);
    tl_graph_grads(g, &ng);
    float *x[2], *sm[2], *gr[2];
    int32_t touched[2][PF * PV];
    int nt[2];
    for (int k = 0; k < 2; k++) {
        x[k] = malloc(nx * sizeof(float));
        sm[k] = malloc((size_t)PB * 8 * sizeof(float));
        gr[k] = malloc(ng * sizeof(float));
        assert_true(x[k] && sm[k] && gr[k]);
    }
    tl_set_threads(1);
    par_run(&p, x[0], sm[0], gr[0], touched[0], &nt[0]);

    /* serial references: the gather, and the scatter in batch-row order */
    const int32_t *id = tl_graph_ids(g, p.ids);
    const float *T = tlt_param(g, p.table), *dE = tl_graph_grad(g, p.emb);
    const float *dT = tlt_param_grad(g, p.table);
    int cols = tl_node_cols(g, p.x);
    float *ref = calloc((size_t)PF * PV * PD, sizeof(float));
    int mark[PF * PV] = {0}, order[PF * PV], n_order = 0;
    assert_non_null(ref);
    for (int i = 0; i < PB; i++)
        for (int f = 0; f < PF; f++) {
            int r = f * PV + id[i * PF + f];
            for (int j = 0; j < PD; j++) {
                float e = T[r * PD + j];
                assert_true(x[0][(size_t)i * cols + f * PD + j] == e);
                assert_true(x[0][(size_t)i * cols + PF * PD + 5 + f * PD + j] == e);
                ref[r * PD + j] += dE[(size_t)i * PF * PD + f * PD + j];
            }
            if (!mark[r]) {
                mark[r] = 1;
                order[n_order++] = r;
            }
        }
    assert_int_equal(n_order, nt[0]);
    assert_memory_equal(order, touched[0], (size_t)n_order * sizeof *order);
    assert_memory_equal(ref, dT, (size_t)PF * PV * PD * sizeof *ref);
    free(ref);

    const int threads[] = {2, 3, 4, 7};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        tl_set_threads(threads[t]);
        par_run(&p, x[1], sm[1], gr[1], touched[1], &nt[1]);
        if (memcmp(gr[0], gr[1], ng * sizeof(float)) != 0)
            print_message("threads %d: gradients differ from 1 thread\n", threads[t]);
        assert_memory_equal(x[0], x[1], nx * sizeof(float));
        assert_memory_equal(sm[0], sm[1], (size_t)PB * 8 * sizeof(float));
        assert_memory_equal(gr[0], gr[1], ng * sizeof(float));
        assert_int_equal(nt[0], nt[1]);
        assert_memory_equal(touched[0], touched[1], (size_t)nt[0] * sizeof(int32_t));

        /* two bad ids in different chunks: the message names the first */
        int32_t *ids = tl_graph_ids(g, p.ids);
        int32_t keep_a = ids[1400 * PF + 2], keep_b = ids[200 * PF + 1];
        ids[1400 * PF + 2] = -3;
        ids[200 * PF + 1] = PV;
        assert_int_equal(tl_graph_forward(g, 0), TL_ERR_ARG);
        assert_contains(tl_errmsg(), "id 40 in row 201, field 2");
        ids[200 * PF + 1] = keep_b;
        assert_int_equal(tl_graph_forward(g, 0), TL_ERR_ARG);
        assert_contains(tl_errmsg(), "id -3 in row 1401, field 3");
        ids[1400 * PF + 2] = keep_a;
        assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    }
    tl_set_threads(saved);
    for (int k = 0; k < 2; k++) {
        free(x[k]);
        free(sm[k]);
        free(gr[k]);
    }
    tl_graph_free(g);
}

static void test_sticky_errors(void **state)
{
    (void)state;
    tl_graph *g = newg();
    /* TL_NONE in, TL_NONE out, silently; inspectors take it too */
    assert_int_equal(tl_relu(g, TL_NONE), TL_NONE);
    assert_int_equal(tl_node_cols(g, TL_NONE), 0);
    assert_string_equal(tl_node_get_name(g, TL_NONE), "?");
    assert_int_equal(tl_add(g, TL_NONE, TL_NONE), TL_NONE);
    assert_int_equal(tl_graph_status(g), TL_OK);

    tl_node a = P(g, 4, 3);
    tl_node bad = tl_matmul(g, a, P(g, 2, 2)); /* first error */
    assert_int_equal(bad, TL_NONE);
    char first[512];
    snprintf(first, sizeof first, "%s", tl_graph_errmsg(g));
    assert_contains(first, "matmul");
    /* nested builders on the failed node, and a second, different error */
    tl_node l = tl_sum(g, tl_relu(g, tl_linear(g, bad, a, TL_NONE, TL_ACT_RELU)));
    assert_int_equal(l, TL_NONE);
    assert_int_equal(tl_slice(g, a, 2, 5), TL_NONE);
    assert_int_equal(tl_relu(g, a), TL_NONE); /* valid input, failed graph */
    assert_int_equal(tl_graph_status(g), TL_ERR_SHAPE);
    assert_string_equal(tl_graph_errmsg(g), first);
    assert_int_equal(tl_graph_backward(g, a), TL_ERR_SHAPE);
    assert_int_equal(tl_graph_plan(g), TL_ERR_SHAPE);
    tl_graph_free(g);

    /* a bad node id is an error, not TL_NONE's silence */
    g = newg();
    assert_int_equal(tl_relu(g, 17), TL_NONE);
    assert_int_equal(tl_graph_status(g), TL_ERR_ARG);
    tl_graph_free(g);

    /* builders after plan fail with a state error */
    g = newg();
    a = P(g, 1, 1);
    assert_int_equal(tl_graph_backward(g, a), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    assert_int_equal(tl_relu(g, a), TL_NONE);
    assert_int_equal(tl_graph_status(g), TL_ERR_STATE);
    tl_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_forward_value),
        cmocka_unit_test(test_grouped_linear),
        cmocka_unit_test(test_token_linear),
        cmocka_unit_test(test_token_linear_sg),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_unary_extremes),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_gate_mix),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_dropout_eval),
        cmocka_unit_test(test_dropout_training),
        cmocka_unit_test(test_stop_grad),
        cmocka_unit_test(test_block_mix),
        cmocka_unit_test(test_smooth_step),
        cmocka_unit_test(test_dselect_select),
        cmocka_unit_test(test_dselect_penalty),
        cmocka_unit_test(test_losses_fixed),
        cmocka_unit_test(test_losses_batched),
        cmocka_unit_test(test_quadruplet_bpr),
        cmocka_unit_test(test_bernoulli_kl),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_embedding_id_out_of_range),
        cmocka_unit_test(test_shape_ops_threads),
        cmocka_unit_test(test_sticky_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
