/* test_graph.c — graph-level contracts: backward accumulates, a training step
 * allocates nothing, seeds reproduce, partial batches, and training results
 * checked against independent solutions (logistic regression by Newton/IRLS,
 * an MLP on XOR). */
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

/* A model touching most ops: embedding + dense input, an expert layer,
 * grouped linear experts, softmax gate, gate_mix, attention, dropout, slice,
 * concat, and a weighted BCE plus an MSE term. */
typedef struct {
    tl_graph *g;
    tl_node x, ids, y, w, table, loss;
} model;

static const int32_t VOCAB[2] = {5, 7};

static model build_model(int max_batch, uint64_t seed, float drop)
{
    model m;
    tl_graph *g = m.g = tl_graph_new(max_batch, seed);
    assert_non_null(g);
    m.x = tl_input(g, 4, "x");
    m.ids = tl_input_ids(g, 2, "ids");
    m.y = tl_input(g, 1, "y");
    m.w = tl_input(g, 1, "w");
    m.table = tl_param(g, 12, 3, TL_INIT_NORMAL, 0.5f, "table");
    tl_node parts[2] = {tl_embedding(g, m.table, m.ids, 2, VOCAB), m.x};
    tl_node h0 = tl_concat(g, 2, parts);
    tl_node e = tl_linear(g, h0, tl_param(g, 10, 12, TL_INIT_XAVIER_UNIFORM, 0, "w1"),
                          tl_param(g, 1, 12, TL_INIT_UNIFORM, 0.1f, "b1"), TL_ACT_RELU);
    tl_node ex = tl_grouped_linear(g, e, tl_param(g, 12, 4, TL_INIT_XAVIER_UNIFORM, 0, "w2"),
                                   tl_param(g, 1, 12, TL_INIT_UNIFORM, 0.1f, "b2"), 3,
                                   TL_ACT_TANH);
    tl_node gate = tl_softmax(g, tl_linear(g, h0, tl_param(g, 10, 3, TL_INIT_XAVIER_UNIFORM, 0,
                                                           "wg"), TL_NONE, TL_ACT_NONE));
    tl_node mix = tl_gate_mix(g, gate, ex, 3);
    tl_node att = tl_dropout(g, tl_attention(g, ex, ex, ex, 3), drop);
    tl_node parts2[2] = {mix, tl_slice(g, att, 4, 4)};
    tl_node logit = tl_linear(g, tl_concat(g, 2, parts2),
                              tl_param(g, 8, 1, TL_INIT_XAVIER_UNIFORM, 0, "wo"),
                              tl_param(g, 1, 1, TL_INIT_ZEROS, 0, "bo"), TL_ACT_NONE);
    tl_node l1 = tl_bce_logits(g, logit, m.y, m.w);
    tl_node l2 = tl_mse(g, tl_sigmoid(g, logit), m.y, TL_NONE);
    m.loss = tl_add(g, l1, tl_scale(g, l2, 0.5f));
    if (tl_graph_status(g) != TL_OK) print_message("%s\n", tl_graph_errmsg(g));
    assert_int_equal(tl_graph_status(g), TL_OK);
    assert_int_equal(tl_graph_backward(g, m.loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    return m;
}

/* Fill every input row of the max batch from a seeded generator. */
static void fill_model(model *m, uint64_t seed)
{
    tl_rng r;
    tl_rng_seed(&r, seed);
    int mb = tl_graph_max_batch(m->g);
    float *x = tl_graph_input(m->g, m->x), *y = tl_graph_input(m->g, m->y);
    float *w = tl_graph_input(m->g, m->w);
    int32_t *ids = tl_graph_ids(m->g, m->ids);
    tlt_fill_uniform(x, (size_t)mb * 4, -1.0f, 1.0f, &r);
    for (int i = 0; i < mb; i++) {
        ids[i * 2] = (int32_t)tl_rng_below(&r, (uint64_t)VOCAB[0]);
        ids[i * 2 + 1] = (int32_t)tl_rng_below(&r, (uint64_t)VOCAB[1]);
        y[i] = (float)tl_rng_below(&r, 2);
        w[i] = i % 5 == 3 ? 0.0f : tl_rng_uniform(&r) + 0.1f;
    }
}

static void test_backward_twice_doubles(void **state)
{
    (void)state;
    model m = build_model(16, 3, 0.2f);
    fill_model(&m, 11);
    assert_int_equal(tl_graph_set_batch(m.g, 13), TL_OK);
    assert_int_equal(tl_graph_forward(m.g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(m.g), TL_OK);
    size_t n;
    float *gr = tl_graph_grads(m.g, &n);
    float *once = malloc(n * sizeof *once), *twice = malloc(n * sizeof *twice);
    assert_non_null(once);
    assert_non_null(twice);
    memcpy(once, gr, n * sizeof *once);
    int pi = tl_graph_param_index(m.g, m.table), rows1, rows2;
    tl_graph_touched_rows(m.g, pi, &rows1);
    assert_int_equal(tl_graph_backward_run(m.g), TL_OK);
    tl_graph_touched_rows(m.g, pi, &rows2);
    assert_int_equal(rows1, rows2);
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        twice[i] = 2.0f * once[i];
        nonzero += once[i] != 0.0f;
    }
    assert_true(nonzero > n / 2); /* most of the model is reached */
    assert_true(tlt_close_f("twice", gr, twice, n, 1e-5, 1e-8));
    /* every parameter, embedding included, has some gradient */
    for (int i = 0; i < tl_graph_param_count(m.g); i++) {
        const tl_param_info *p = tl_graph_param(m.g, i);
        double s = 0.0;
        for (size_t j = 0; j < (size_t)p->rows * (size_t)p->cols; j++)
            s += fabs((double)once[p->offset + j]);
        if (!(s > 0.0)) print_message("parameter %s has no gradient\n", p->name);
        assert_true(s > 0.0);
    }
    free(once);
    free(twice);
    tl_graph_free(m.g);
}

/* The whole model, dropout on, on a random subset of each parameter. */
static void test_model_gradcheck(void **state)
{
    (void)state;
    model m = build_model(8, 4, 0.2f);
    fill_model(&m, 12);
    assert_int_equal(tl_graph_set_batch(m.g, 6), TL_OK);
    tlt_gradcheck_opts o = tlt_gradcheck_defaults();
    o.training = 1;
    o.max_per_param = 20;
    tlt_gradcheck_result r;
    assert_int_equal(tlt_gradcheck(m.g, m.loss, &o, &r), 0);
    if (r.skipped * 10 > r.checked) print_message("%d skipped of %d\n", r.skipped, r.checked);
    assert_true(r.checked >= 100);
    assert_true(r.skipped * 10 <= r.checked);
    tl_graph_free(m.g);
}

static void test_step_allocates_nothing(void **state)
{
    (void)state;
    model m = build_model(32, 5, 0.3f);
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAM);
    c.clip_norm = 1.0f;
    tl_optim *o = tl_optim_new(m.g, &c);
    assert_non_null(o);
    uint64_t before = tl_alloc_count();
    for (int step = 0; step < 20; step++) {
        fill_model(&m, (uint64_t)step);
        assert_int_equal(tl_graph_set_batch(m.g, step % 2 ? 32 : 17), TL_OK);
        assert_int_equal(tl_graph_forward(m.g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(m.g), TL_OK);
        assert_int_equal(tl_optim_step(o), TL_OK);
    }
    assert_int_equal(tl_alloc_count() - before, 0);
    assert_int_equal(tl_optim_steps(o), 20);
    tl_optim_free(o);
    tl_graph_free(m.g);
}

/* Parameters after 20 Adam steps with dropout, copied to a malloc'd block. */
static float *train_20(uint64_t seed, size_t *n, float **init)
{
    model m = build_model(16, seed, 0.3f);
    float *w = tl_graph_params(m.g, n);
    *init = malloc(*n * sizeof **init);
    assert_non_null(*init);
    memcpy(*init, w, *n * sizeof **init);
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAM);
    c.lr = 0.01f;
    tl_optim *o = tl_optim_new(m.g, &c);
    assert_non_null(o);
    for (int step = 0; step < 20; step++) {
        fill_model(&m, 100 + (uint64_t)step);
        assert_int_equal(tl_graph_forward(m.g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(m.g), TL_OK);
        assert_int_equal(tl_optim_step(o), TL_OK);
    }
    float *out = malloc(*n * sizeof *out);
    assert_non_null(out);
    memcpy(out, w, *n * sizeof *out);
    tl_optim_free(o);
    tl_graph_free(m.g);
    return out;
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    size_t n1, n2, n3;
    float *i1, *i2, *i3;
    float *a = train_20(77, &n1, &i1), *b = train_20(77, &n2, &i2), *c = train_20(78, &n3, &i3);
    assert_int_equal(n1, n2);
    assert_int_equal(n1, n3);
    assert_memory_equal(i1, i2, n1 * sizeof(float));
    assert_memory_equal(a, b, n1 * sizeof(float));
    assert_memory_not_equal(i1, i3, n1 * sizeof(float));
    assert_memory_not_equal(a, c, n1 * sizeof(float));
    /* training moved the parameters */
    assert_memory_not_equal(i1, a, n1 * sizeof(float));
    free(a), free(b), free(c), free(i1), free(i2), free(i3);
}

/* A run on the first 7 rows of a 16-row graph equals a run of a 7-row graph
 * on the same rows (same seed: same initial parameters). */
static void test_partial_batch(void **state)
{
    (void)state;
    model big = build_model(16, 9, 0.0f), small = build_model(7, 9, 0.0f);
    fill_model(&big, 21);
    /* the small graph gets the big one's first 7 rows */
    memcpy(tl_graph_input(small.g, small.x), tl_graph_input(big.g, big.x), 7 * 4 * sizeof(float));
    memcpy(tl_graph_input(small.g, small.y), tl_graph_input(big.g, big.y), 7 * sizeof(float));
    memcpy(tl_graph_input(small.g, small.w), tl_graph_input(big.g, big.w), 7 * sizeof(float));
    memcpy(tl_graph_ids(small.g, small.ids), tl_graph_ids(big.g, big.ids), 7 * 2 * sizeof(int32_t));
    size_t n1, n2;
    const float *pb = tl_graph_params(big.g, &n1), *ps = tl_graph_params(small.g, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(pb, ps, n1 * sizeof(float));
    assert_int_equal(tl_graph_set_batch(big.g, 7), TL_OK);
    assert_int_equal(tl_node_rows(big.g, big.x), 7);
    assert_int_equal(tl_graph_forward(big.g, 1), TL_OK);
    assert_int_equal(tl_graph_forward(small.g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(big.g), TL_OK);
    assert_int_equal(tl_graph_backward_run(small.g), TL_OK);
    assert_true(tlt_close_f("loss", tl_graph_value(big.g, big.loss),
                            tl_graph_value(small.g, small.loss), 1, 1e-6, 0.0));
    assert_true(tlt_close_f("grads", tl_graph_grads(big.g, NULL), tl_graph_grads(small.g, NULL),
                            n1, 1e-5, 1e-7));
    /* and the full batch gives another loss */
    assert_int_equal(tl_graph_set_batch(big.g, 16), TL_OK);
    assert_int_equal(tl_graph_forward(big.g, 1), TL_OK);
    assert_true(tl_graph_value(big.g, big.loss)[0] != tl_graph_value(small.g, small.loss)[0]);
    assert_int_equal(tl_graph_set_batch(big.g, 17), TL_ERR_ARG);
    assert_int_equal(tl_graph_set_batch(big.g, 0), TL_ERR_ARG);
    tl_graph_free(big.g);
    tl_graph_free(small.g);
}

/* ---- logistic regression against Newton / IRLS in double -------------------- */

#define LR_N 500
#define LR_D 5

/* Solve A x = b (n x n, row-major, destroyed) by Gaussian elimination with
 * partial pivoting. */
static void solve(double *A, double *b, int n)
{
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(A[r * n + c]) > fabs(A[piv * n + c])) piv = r;
        for (int j = 0; j < n; j++) {
            double t = A[c * n + j];
            A[c * n + j] = A[piv * n + j];
            A[piv * n + j] = t;
        }
        double t = b[c];
        b[c] = b[piv];
        b[piv] = t;
        for (int r = c + 1; r < n; r++) {
            double f = A[r * n + c] / A[c * n + c];
            for (int j = c; j < n; j++) A[r * n + j] -= f * A[c * n + j];
            b[r] -= f * b[c];
        }
    }
    for (int c = n - 1; c >= 0; c--) {
        for (int j = c + 1; j < n; j++) b[c] -= A[c * n + j] * b[j];
        b[c] /= A[c * n + c];
    }
}

/* Maximum-likelihood logistic regression (intercept last) by IRLS. */
static void irls(const float *X, const float *y, double *beta)
{
    const int p = LR_D + 1;
    for (int j = 0; j < p; j++) beta[j] = 0.0;
    for (int it = 0; it < 50; it++) {
        double H[36] = {0}, gr[6] = {0};
        for (int i = 0; i < LR_N; i++) {
            double xi[6], z = beta[LR_D];
            for (int j = 0; j < LR_D; j++) z += beta[j] * (xi[j] = (double)X[i * LR_D + j]);
            xi[LR_D] = 1.0;
            double pr = 1.0 / (1.0 + exp(-z)), wgt = pr * (1.0 - pr);
            for (int j = 0; j < p; j++) {
                gr[j] += ((double)y[i] - pr) * xi[j];
                for (int k = 0; k < p; k++) H[j * p + k] += wgt * xi[j] * xi[k];
            }
        }
        solve(H, gr, p);
        double step = 0.0;
        for (int j = 0; j < p; j++) {
            beta[j] += gr[j];
            step = fmax(step, fabs(gr[j]));
        }
        if (step < 1e-12) break;
    }
}

static void test_logistic_regression_matches_irls(void **state)
{
    (void)state;
    const double true_beta[LR_D + 1] = {0.8, -1.2, 0.5, 0.0, 1.5, -0.3};
    tl_graph *g = tl_graph_new(LR_N, 1);
    assert_non_null(g);
    tl_node x = tl_input(g, LR_D, "x"), y = tl_input(g, 1, "y");
    tl_node w = tl_param(g, LR_D, 1, TL_INIT_ZEROS, 0, "w"), b = tl_param(g, 1, 1, TL_INIT_ZEROS, 0, "b");
    tl_node loss = tl_bce_logits(g, tl_linear(g, x, w, b, TL_ACT_NONE), y, TL_NONE);
    assert_int_equal(tl_graph_backward(g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    float *X = tl_graph_input(g, x), *Y = tl_graph_input(g, y);
    tl_rng r;
    tl_rng_seed(&r, 2024);
    for (int i = 0; i < LR_N; i++) {
        double z = true_beta[LR_D];
        for (int j = 0; j < LR_D; j++) {
            X[i * LR_D + j] = tl_rng_normal(&r);
            z += true_beta[j] * (double)X[i * LR_D + j];
        }
        Y[i] = tl_rng_uniform_double(&r) < 1.0 / (1.0 + exp(-z)) ? 1.0f : 0.0f;
    }
    double beta[LR_D + 1];
    irls(X, Y, beta);

    /* Full-batch Adam with a decaying learning rate. */
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAM);
    c.lr = 0.05f;
    tl_optim *o = tl_optim_new(g, &c);
    assert_non_null(o);
    for (int step = 0; step < 3000; step++) {
        tl_optim_set_lr(o, 0.05f / (1.0f + (float)step / 200.0f));
        assert_int_equal(tl_graph_forward(g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        assert_int_equal(tl_optim_step(o), TL_OK);
    }
    float got[LR_D + 1];
    memcpy(got, tlt_param(g, w), LR_D * sizeof(float));
    got[LR_D] = tlt_param(g, b)[0];
    assert_true(tlt_close("logistic regression vs IRLS", got, beta, LR_D + 1, 0.0, 1e-3));
    /* the fit is near the generating model too (loose: 500 samples) */
    assert_true(tlt_close("IRLS vs truth", got, true_beta, LR_D + 1, 0.0, 0.5));
    tl_optim_free(o);
    tl_graph_free(g);
}

/* ---- MLP on XOR-like problems -------------------------------------------------- */

/* Train a 2 -> 16 -> 16 -> 1 MLP full batch on (X, Y) and return its training
 * accuracy. */
static double train_mlp(const float *X, const float *Y, int n, int steps)
{
    tl_graph *g = tl_graph_new(n, 5);
    assert_non_null(g);
    tl_node x = tl_input(g, 2, "x"), y = tl_input(g, 1, "y");
    tl_node h = tl_linear(g, x, tl_param(g, 2, 16, TL_INIT_HE_UNIFORM, 0, "w1"),
                          tl_param(g, 1, 16, TL_INIT_UNIFORM, 0.1f, "b1"), TL_ACT_TANH);
    h = tl_linear(g, h, tl_param(g, 16, 16, TL_INIT_XAVIER_UNIFORM, 0, "w2"),
                  tl_param(g, 1, 16, TL_INIT_ZEROS, 0, "b2"), TL_ACT_RELU);
    tl_node z = tl_linear(g, h, tl_param(g, 16, 1, TL_INIT_XAVIER_UNIFORM, 0, "w3"),
                          tl_param(g, 1, 1, TL_INIT_ZEROS, 0, "b3"), TL_ACT_NONE);
    tl_node loss = tl_bce_logits(g, z, y, TL_NONE);
    assert_int_equal(tl_graph_backward(g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    memcpy(tl_graph_input(g, x), X, (size_t)n * 2 * sizeof(float));
    memcpy(tl_graph_input(g, y), Y, (size_t)n * sizeof(float));
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAM);
    c.lr = 0.02f;
    tl_optim *o = tl_optim_new(g, &c);
    assert_non_null(o);
    for (int s = 0; s < steps; s++) {
        assert_int_equal(tl_graph_forward(g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        assert_int_equal(tl_optim_step(o), TL_OK);
    }
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    const float *Z = tl_graph_value(g, z);
    int right = 0;
    for (int i = 0; i < n; i++) right += (Z[i] > 0.0f) == (Y[i] > 0.5f);
    tl_optim_free(o);
    tl_graph_free(g);
    return (double)right / n;
}

static void test_mlp_xor(void **state)
{
    (void)state;
    const float X4[8] = {0, 0, 0, 1, 1, 0, 1, 1}, Y4[4] = {0, 1, 1, 0};
    assert_true(train_mlp(X4, Y4, 4, 500) == 1.0);

    enum { N = 200 };
    float X[N * 2], Y[N];
    tl_rng r;
    tl_rng_seed(&r, 31);
    for (int i = 0; i < N; i++) {
        X[i * 2] = 2.0f * tl_rng_uniform(&r) - 1.0f;
        X[i * 2 + 1] = 2.0f * tl_rng_uniform(&r) - 1.0f;
        Y[i] = X[i * 2] * X[i * 2 + 1] > 0.0f ? 1.0f : 0.0f;
    }
    double acc = train_mlp(X, Y, N, 3000);
    if (acc < 1.0) print_message("XOR square: train accuracy %.3f\n", acc);
    assert_true(acc == 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backward_twice_doubles),
        cmocka_unit_test(test_model_gradcheck),
        cmocka_unit_test(test_step_allocates_nothing),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_partial_batch),
        cmocka_unit_test(test_logistic_regression_matches_irls),
        cmocka_unit_test(test_mlp_xor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
