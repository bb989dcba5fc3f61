/* test_optim.c — every optimizer against a hand computation in double over
 * three steps on a tiny parameter, weight decay, clipping, lazy (row-sparse)
 * updates of embedding tables, and refusal of non-finite gradients. */
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

/* loss = 0.5 sum(w^2) + sum(c w), so dL/dw = w + c: the gradient changes
 * with every step, which a hand computation must follow. */
typedef struct {
    tl_graph *g;
    tl_node w, c;
} tiny;

static const double W0[3] = {0.5, -1.0, 2.0}, C0[3] = {0.3, 0.2, -0.1};

static tiny tiny_new(void)
{
    tiny t;
    t.g = tl_graph_new(1, 1);
    assert_non_null(t.g);
    t.c = tl_input(t.g, 3, "c");
    t.w = tl_param(t.g, 1, 3, TL_INIT_ZEROS, 0, "w");
    tl_node loss = tl_add(t.g, tl_scale(t.g, tl_sum(t.g, tl_mul(t.g, t.w, t.w)), 0.5f),
                          tl_sum(t.g, tl_mul(t.g, t.c, t.w)));
    assert_int_equal(tl_graph_backward(t.g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(t.g), TL_OK);
    for (int i = 0; i < 3; i++) {
        tlt_param(t.g, t.w)[i] = (float)W0[i];
        tl_graph_input(t.g, t.c)[i] = (float)C0[i];
    }
    return t;
}

static void tiny_steps(tiny *t, tl_optim *o, int steps)
{
    for (int s = 0; s < steps; s++) {
        assert_int_equal(tl_graph_forward(t->g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(t->g), TL_OK);
        assert_int_equal(tl_optim_step(o), TL_OK);
    }
}

/* The schedule's rate at 1-based step t, written out independently. */
static double ref_lr(const tl_optim_config *c, int t)
{
    double lr = (double)c->lr;
    int w = (int)c->warmup;
    if (w > 0 && t <= w) return lr * t / w;
    int s = t - w;
    if (c->schedule == TL_SCHEDULE_STEP) {
        for (int k = (int)c->step_size; k <= s; k += (int)c->step_size) lr *= (double)c->gamma;
        return lr;
    }
    if (c->schedule == TL_SCHEDULE_COSINE) {
        double x = s >= c->total ? 1.0 : (double)s / (double)c->total, lo = (double)c->min_lr;
        return lo + (lr - lo) * (1.0 + cos(3.14159265358979323846 * x)) / 2.0;
    }
    return lr;
}

/* The reference: the algorithms as PyTorch documents them, in double. */
static void reference(const tl_optim_config *c, int steps, double *w)
{
    double m[3] = {0}, v[3] = {0}, acc[3];
    for (int i = 0; i < 3; i++) {
        w[i] = W0[i];
        acc[i] = (double)c->initial_accumulator;
    }
    double mu = (double)c->momentum, wd = (double)c->weight_decay;
    double b1 = (double)c->beta1, b2 = (double)c->beta2, eps = (double)c->eps;
    for (int t = 1; t <= steps; t++)
        for (int i = 0; i < 3; i++) {
            double lr = ref_lr(c, t);
            double gr = w[i] + C0[i];
            switch (c->kind) {
            case TL_OPTIM_SGD:
                gr += wd * w[i];
                if (mu > 0.0) {
                    m[i] = t == 1 ? gr : mu * m[i] + gr; /* buffer starts at 0: same */
                    gr = c->nesterov ? gr + mu * m[i] : m[i];
                }
                w[i] -= lr * gr;
                break;
            case TL_OPTIM_ADAM:
            case TL_OPTIM_ADAMW:
                if (c->kind == TL_OPTIM_ADAM)
                    gr += wd * w[i];
                else
                    w[i] *= 1.0 - lr * wd;
                m[i] = b1 * m[i] + (1.0 - b1) * gr;
                v[i] = b2 * v[i] + (1.0 - b2) * gr * gr;
                w[i] -= lr * (m[i] / (1.0 - pow(b1, t))) / (sqrt(v[i] / (1.0 - pow(b2, t))) + eps);
                break;
            case TL_OPTIM_ADAGRAD:
                gr += wd * w[i];
                acc[i] += gr * gr;
                w[i] -= lr * gr / (sqrt(acc[i]) + eps);
                break;
            }
        }
}

static void check_against_reference(const char *what, tl_optim_config c, int steps)
{
    tiny t = tiny_new();
    tl_optim *o = tl_optim_new(t.g, &c);
    assert_non_null(o);
    tiny_steps(&t, o, steps);
    double want[3];
    reference(&c, steps, want);
    assert_true(tlt_close(what, tlt_param(t.g, t.w), want, 3, 2e-6, 1e-7));
    /* the parameters moved by more than the tolerance: the check can fail */
    double moved = 0.0;
    for (int i = 0; i < 3; i++) moved = fmax(moved, fabs(want[i] - W0[i]));
    assert_true(moved > 1e-3);
    assert_int_equal(tl_optim_steps(o), steps);
    /* step clears the gradients */
    for (int i = 0; i < 3; i++) assert_true(tlt_param_grad(t.g, t.w)[i] == 0.0f);
    tl_optim_free(o);
    tl_graph_free(t.g);
}

static void test_sgd(void **state)
{
    (void)state;
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_SGD);
    c.lr = 0.1f;
    check_against_reference("sgd", c, 3);
    c.momentum = 0.9f;
    check_against_reference("sgd momentum", c, 3);
    c.nesterov = 1;
    check_against_reference("sgd nesterov", c, 3);
    c.weight_decay = 0.1f;
    check_against_reference("sgd nesterov weight decay", c, 3);
}

static void test_adam(void **state)
{
    (void)state;
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAM);
    c.lr = 0.05f;
    check_against_reference("adam", c, 3);
    c.beta1 = 0.5f;
    c.beta2 = 0.9f;
    c.eps = 1e-3f;
    check_against_reference("adam betas eps", c, 3);
    c.weight_decay = 0.2f;
    check_against_reference("adam L2", c, 3);
}

static void test_adamw(void **state)
{
    (void)state;
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAMW);
    c.lr = 0.05f;
    c.weight_decay = 0.5f;
    check_against_reference("adamw", c, 3);
    /* decoupled decay differs from L2 in Adam */
    tiny a = tiny_new(), b = tiny_new();
    tl_optim_config ca = tl_optim_defaults(TL_OPTIM_ADAM);
    ca.lr = c.lr;
    ca.weight_decay = c.weight_decay;
    tl_optim *oa = tl_optim_new(a.g, &ca), *ob = tl_optim_new(b.g, &c);
    tiny_steps(&a, oa, 3);
    tiny_steps(&b, ob, 3);
    assert_memory_not_equal(tlt_param(a.g, a.w), tlt_param(b.g, b.w), 3 * sizeof(float));
    tl_optim_free(oa);
    tl_optim_free(ob);
    tl_graph_free(a.g);
    tl_graph_free(b.g);
}

static void test_adagrad(void **state)
{
    (void)state;
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAGRAD);
    c.lr = 0.1f;
    check_against_reference("adagrad", c, 3);
    c.initial_accumulator = 0.1f;
    c.weight_decay = 0.05f;
    check_against_reference("adagrad accumulator decay", c, 3);
}

/* Learning-rate schedules: each optimizer follows the schedule's rate step
 * by step (warm-up, step decay, cosine past its end), and bad schedules are
 * refused. */
static void test_schedules(void **state)
{
    (void)state;
    const tl_optim_kind kinds[3] = {TL_OPTIM_SGD, TL_OPTIM_ADAM, TL_OPTIM_ADAGRAD};
    for (int k = 0; k < 3; k++) {
        tl_optim_config c = tl_optim_defaults(kinds[k]);
        c.lr = 0.1f;
        c.warmup = 3;
        check_against_reference("warm-up only", c, 6);
        c.schedule = TL_SCHEDULE_STEP;
        c.step_size = 2;
        c.gamma = 0.5f;
        check_against_reference("step after warm-up", c, 8);
        c.warmup = 0;
        check_against_reference("step", c, 7);
        c.schedule = TL_SCHEDULE_COSINE;
        c.total = 4;
        c.min_lr = 0.01f;
        check_against_reference("cosine past its end", c, 7);
        c.warmup = 2;
        check_against_reference("cosine after warm-up", c, 8);
    }
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAM);
    c.lr = 0.1f;
    c.schedule = TL_SCHEDULE_COSINE;
    c.total = 10;
    c.warmup = 5;
    assert_true(tl_optim_lr_at(&c, 1) == (float)((double)0.1f / 5.0));
    assert_true(tl_optim_lr_at(&c, 5) == 0.1f);
    assert_true(fabs((double)tl_optim_lr_at(&c, 10) - 0.05) < 1e-8); /* half way */
    assert_true(tl_optim_lr_at(&c, 100) == 0.0f);
    tl_optim_config none = tl_optim_defaults(TL_OPTIM_ADAM);
    assert_true(tl_optim_lr_at(&none, 123) == none.lr); /* no schedule: lr itself */

    tiny t = tiny_new();
    c.total = 0;
    assert_null(tl_optim_new(t.g, &c));
    assert_non_null(strstr(tl_errmsg(), "cosine"));
    c.total = 10;
    c.min_lr = 1.0f;
    assert_null(tl_optim_new(t.g, &c));
    c = tl_optim_defaults(TL_OPTIM_SGD);
    c.schedule = TL_SCHEDULE_STEP;
    assert_null(tl_optim_new(t.g, &c));
    assert_non_null(strstr(tl_errmsg(), "every"));
    c.schedule = (tl_schedule_kind)7;
    assert_null(tl_optim_new(t.g, &c));
    tl_graph_free(t.g);
}

static void test_defaults_and_parse(void **state)
{
    (void)state;
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAMW);
    assert_true(c.lr == 1e-3f && c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f);
    assert_true(c.weight_decay == 0.01f);
    tl_optim_kind k;
    assert_int_equal(tl_optim_parse("adagrad", &k), TL_OK);
    assert_int_equal(k, TL_OPTIM_ADAGRAD);
    assert_int_equal(tl_optim_parse("rmsprop", &k), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "rmsprop"));
    tiny t = tiny_new();
    c.lr = -1.0f;
    assert_null(tl_optim_new(t.g, &c));
    tl_graph_free(t.g);
}

static void test_clip(void **state)
{
    (void)state;
    tiny t = tiny_new();
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_SGD);
    c.lr = 1.0f;
    c.clip_norm = 0.5f;
    tl_optim *o = tl_optim_new(t.g, &c);
    double norm = 0.0, want[3];
    for (int i = 0; i < 3; i++) norm += (W0[i] + C0[i]) * (W0[i] + C0[i]);
    norm = sqrt(norm); /* about 2.2: above the clip */
    for (int i = 0; i < 3; i++) want[i] = W0[i] - (W0[i] + C0[i]) * 0.5 / norm;
    tiny_steps(&t, o, 1);
    assert_float_equal(tl_optim_last_grad_norm(o), (float)norm, 1e-5f);
    assert_true(tlt_close("clipped step", tlt_param(t.g, t.w), want, 3, 1e-6, 1e-7));
    double step = 0.0;
    for (int i = 0; i < 3; i++) step += pow((double)tlt_param(t.g, t.w)[i] - W0[i], 2.0);
    assert_float_equal(sqrt(step), 0.5, 1e-6);
    tl_optim_free(o);
    tl_graph_free(t.g);

    /* below the clip norm nothing is scaled */
    t = tiny_new();
    c.clip_norm = 10.0f;
    o = tl_optim_new(t.g, &c);
    tiny_steps(&t, o, 1);
    for (int i = 0; i < 3; i++) want[i] = W0[i] - (W0[i] + C0[i]);
    assert_true(tlt_close("unclipped step", tlt_param(t.g, t.w), want, 3, 1e-6, 1e-7));
    tl_optim_free(o);
    tl_graph_free(t.g);
}

/* ---- sparse (embedding) parameters ----------------------------------------- */

static void test_sparse_rows(void **state)
{
    (void)state;
    const int32_t vocab[1] = {10};
    const tl_optim_kind kinds[] = {TL_OPTIM_SGD, TL_OPTIM_ADAM, TL_OPTIM_ADAMW, TL_OPTIM_ADAGRAD};
    for (int k = 0; k < 4; k++) {
        tl_graph *g = tl_graph_new(4, 3);
        assert_non_null(g);
        tl_node ids = tl_input_ids(g, 1, "ids");
        tl_node table = tl_param(g, 10, 3, TL_INIT_NORMAL, 1.0f, "table");
        tl_node e = tl_embedding(g, table, ids, 1, vocab);
        tl_node z = tl_linear(g, e, tl_param(g, 3, 1, TL_INIT_CONSTANT, 0.5f, "w"), TL_NONE,
                              TL_ACT_NONE);
        tl_node y = tl_input(g, 1, "y");
        tl_node loss = tl_bce_logits(g, z, y, TL_NONE);
        assert_int_equal(tl_graph_backward(g, loss), TL_OK);
        assert_int_equal(tl_graph_plan(g), TL_OK);
        tl_optim_config c = tl_optim_defaults(kinds[k]);
        c.lr = 0.1f;
        c.momentum = kinds[k] == TL_OPTIM_SGD ? 0.9f : 0.0f;
        c.weight_decay = 0.1f;
        tl_optim *o = tl_optim_new(g, &c);
        assert_non_null(o);
        float *T = tlt_param(g, table), before[30];
        memcpy(before, T, sizeof before);
        const int32_t used[4] = {1, 4, 4, 8};
        for (int s = 0; s < 3; s++) {
            memcpy(tl_graph_ids(g, ids), used, sizeof used);
            for (int i = 0; i < 4; i++) tl_graph_input(g, y)[i] = (float)(i % 2);
            assert_int_equal(tl_graph_forward(g, 1), TL_OK);
            assert_int_equal(tl_graph_backward_run(g), TL_OK);
            assert_int_equal(tl_optim_step(o), TL_OK);
        }
        size_t off = tl_graph_param(g, tl_graph_param_index(g, table))->offset;
        for (int r = 0; r < 10; r++) {
            int is_used = r == 1 || r == 4 || r == 8;
            int same = memcmp(T + r * 3, before + r * 3, 3 * sizeof(float)) == 0;
            if (is_used == same) print_message("%s: row %d used %d same %d\n",
                                                 tl_optim_name(kinds[k]), r, is_used, same);
            assert_int_equal(same, !is_used);
            for (int b = 0; b < tl_optim_state_blocks(o); b++) {
                const float *st = tl_optim_state(o, b, NULL) + off + (size_t)r * 3;
                for (int j = 0; j < 3; j++)
                    if (is_used)
                        assert_true(st[j] != 0.0f);
                    else
                        assert_true(st[j] == 0.0f);
            }
        }
        tl_optim_free(o);
        tl_graph_free(g);
    }
}

/* A row skipped on step 2 keeps its moments (no decay) and on step 3 uses
 * the global bias correction: LazyAdam. */
static void test_lazy_adam_hand(void **state)
{
    (void)state;
    const int32_t vocab[1] = {2};
    tl_graph *g = tl_graph_new(1, 3);
    tl_node ids = tl_input_ids(g, 1, "ids");
    tl_node table = tl_param(g, 2, 1, TL_INIT_ZEROS, 0, "table");
    tl_node loss = tl_sum(g, tl_embedding(g, table, ids, 1, vocab)); /* gradient 1 */
    assert_int_equal(tl_graph_backward(g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAM);
    c.lr = 0.1f;
    tl_optim *o = tl_optim_new(g, &c);
    const int32_t seq[3] = {0, 1, 0};
    for (int s = 0; s < 3; s++) {
        tl_graph_ids(g, ids)[0] = seq[s];
        assert_int_equal(tl_graph_forward(g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        assert_int_equal(tl_optim_step(o), TL_OK);
    }
    /* row 0: updates at t = 1 and t = 3 with its moments seen twice */
    double b1 = 0.9, b2 = 0.999, m = 0.0, v = 0.0, w0 = 0.0, w1 = 0.0;
    const int ts[2] = {1, 3};
    for (int i = 0; i < 2; i++) {
        m = b1 * m + (1 - b1);
        v = b2 * v + (1 - b2);
        w0 -= 0.1 * (m / (1 - pow(b1, ts[i]))) / (sqrt(v / (1 - pow(b2, ts[i]))) + 1e-8);
    }
    m = 1 - b1;
    v = 1 - b2;
    w1 = -0.1 * (m / (1 - pow(b1, 2))) / (sqrt(v / (1 - pow(b2, 2))) + 1e-8);
    const double want[2] = {w0, w1};
    assert_true(tlt_close("lazy adam", tlt_param(g, table), want, 2, 2e-6, 1e-8));
    tl_optim_free(o);
    tl_graph_free(g);
}

static void test_nan_gradient(void **state)
{
    (void)state;
    tiny t = tiny_new();
    tl_optim_config c = tl_optim_defaults(TL_OPTIM_ADAM);
    tl_optim *o = tl_optim_new(t.g, &c);
    tiny_steps(&t, o, 1);
    float before[3], state0[3];
    memcpy(before, tlt_param(t.g, t.w), sizeof before);
    memcpy(state0, tl_optim_state(o, 0, NULL), sizeof state0);
    tl_graph_input(t.g, t.c)[1] = NAN;
    assert_int_equal(tl_graph_forward(t.g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(t.g), TL_OK);
    assert_true(isnan(tlt_param_grad(t.g, t.w)[1]));
    assert_int_equal(tl_optim_step(o), TL_ERR_NUMERIC);
    assert_non_null(strstr(tl_errmsg(), "'w'"));
    assert_memory_equal(tlt_param(t.g, t.w), before, sizeof before);
    assert_memory_equal(tl_optim_state(o, 0, NULL), state0, sizeof state0);
    assert_int_equal(tl_optim_steps(o), 1);
    /* an infinite gradient is refused too; a finite one is taken again */
    tl_graph_input(t.g, t.c)[1] = INFINITY;
    tiny_steps(&t, o, 0);
    assert_int_equal(tl_graph_forward(t.g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(t.g), TL_OK);
    assert_int_equal(tl_optim_step(o), TL_ERR_NUMERIC);
    tl_graph_input(t.g, t.c)[1] = 0.2f;
    tiny_steps(&t, o, 1);
    assert_int_equal(tl_optim_steps(o), 2);
    assert_memory_not_equal(tlt_param(t.g, t.w), before, sizeof before);
    tl_optim_free(o);
    tl_graph_free(t.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_adagrad),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_defaults_and_parse),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_sparse_rows),
        cmocka_unit_test(test_lazy_adam_hand),
        cmocka_unit_test(test_nan_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
