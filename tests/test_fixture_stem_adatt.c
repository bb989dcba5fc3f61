/* test_fixture_stem_adatt.c — one forward and backward pass of the backbones
 * added with issue 23 against PyTorch: STEM (two levels with shared experts;
 * one level without; gates with hidden layers as the authors'), AdaTT (learned residual, unit residual, AdaTT-sp),
 * cross-stitch and DSelect-k (3 experts, so with the reachability term, and
 * an entropy weight). tests/fixtures/backbones_<name>.txt is made by
 * make_stem_adatt_fixtures.py after the authors' code, from per-expert
 * torch.nn.Linear layers. The data has categorical fields (STEM's task
 * embeddings need them) and numeric ones. The fixture's parameters (in the
 * engine's layout and names) are loaded into the engine's parameter block;
 * predictions, per-task losses, the total loss (with DSelect-k's regulariser)
 * and every parameter gradient must match. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model.h"
#include "models/model_impl.h"
#include "support.h"

#define B 16
#define NUM 3
#define FIELDS 2

/* float64 reference, float32 engine: relative 1e-5 plus an absolute floor of
 * 1e-6 x the array's largest element (sums cancelling to near zero). */
#define RTOL 1e-5
#define FLOOR 1e-6

static int close_to(const char *what, const float *got, const tlt_array *want)
{
    size_t n = (size_t)want->rows * (size_t)want->cols;
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(want->v[i]));
    return tlt_close(what, got, want->v, n, RTOL, FLOOR * mx + 1e-12);
}

typedef struct {
    const char *file, *kind;
    int levels, shared, specific, experts, k;
    tl_mlp_spec gate; /* STEM's gate hidden layers */
} fixture_case;

/* The fixtures' model: 2 categorical fields, 3 numeric, tasks ctr (binary)
 * and cvr (regression) with the given loss weights. */
static void fill_config(const fixture_case *fc, const double *weights, tl_model_config *out)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    assert_int_equal(tl_backbone_parse(fc->kind, &c.backbone.kind), TL_OK);
    c.backbone.bottom = (tl_mlp_spec){2, {6, 4}, 0.0f};
    c.backbone.expert = (tl_mlp_spec){2, {6, 4}, 0.0f};
    c.backbone.levels = fc->levels;
    c.backbone.shared = fc->shared;
    c.backbone.specific = fc->specific;
    if (fc->experts) c.backbone.experts = fc->experts;
    if (fc->k) c.backbone.select_k = fc->k;
    c.backbone.gate = fc->gate;
    c.backbone.gamma = 1.0f;
    c.backbone.entropy = 0.1f;
    c.n_cat = FIELDS;
    c.vocab[0] = 5;
    c.vocab[1] = 4;
    c.emb_dim = 2;
    c.n_num = NUM;
    c.n_tasks = 2;
    for (int k = 0; k < 2; k++) {
        tl_task_spec *t = &c.tasks[k];
        snprintf(t->name, sizeof t->name, "%s", k == 0 ? "ctr" : "cvr");
        t->type = k == 0 ? TL_TASK_BINARY : TL_TASK_REGRESSION;
        t->tower = (tl_mlp_spec){1, {4}, 0.0f};
        t->weight = (float)weights[k];
    }
    c.max_batch = B;
    *out = c;
}

/* The fixture's batch into m's inputs (every row weight 1). */
static void fill_inputs(tl_model *m, const tlt_array *ids, const tlt_array *x, const tlt_array *y)
{
    tl_graph *g = tl_model_graph(m);
    int32_t *id = tl_graph_ids(g, m->ids);
    for (int i = 0; i < B * FIELDS; i++) id[i] = (int32_t)ids->v[i];
    tlt_array_to_float(x, tl_graph_input(g, m->num));
    for (int k = 0; k < 2; k++) {
        float *lab = tl_graph_input(g, m->label[k]), *rw = tl_graph_input(g, m->rowweight[k]);
        for (int i = 0; i < B; i++) {
            lab[i] = (float)y->v[i * 2 + k];
            rw[i] = 1.0f;
        }
    }
    assert_int_equal(tl_graph_set_batch(g, B), TL_OK);
}

/* The fixture's parameters (by the engine's names) into g's parameter block. */
static void load_params(const tlt_fixture *fx, tl_graph *g, const char *file)
{
    float *params = tl_graph_params(g, NULL);
    char name[96];
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        snprintf(name, sizeof name, "param.%s", p->name);
        const tlt_array *a = tlt_fixture_get(fx, name, p->rows, p->cols);
        if (!a) fail_msg("%s: no %s [%d x %d] in the fixture", file, name, p->rows, p->cols);
        tlt_array_to_float(a, params + p->offset);
    }
}

static void run_case(const fixture_case *fc)
{
    char path[128];
    snprintf(path, sizeof path, "tests/fixtures/backbones_%s.txt", fc->file);
    tlt_fixture *fx = tlt_fixture_load(path);
    if (!fx) fail_msg("cannot load %s (run from the project root)", path);
    const tlt_array *ids = tlt_fixture_get(fx, "ids", B, FIELDS), *x = tlt_fixture_get(fx, "x", B, NUM);
    const tlt_array *y = tlt_fixture_get(fx, "y", B, 2), *weights = tlt_fixture_get(fx, "weights", 1, 2);
    const tlt_array *pred = tlt_fixture_get(fx, "pred", B, 2), *loss = tlt_fixture_get(fx, "loss", 1, 2);
    const tlt_array *total = tlt_fixture_get(fx, "total", 1, 1);
    assert_true(ids && x && y && weights && pred && loss && total);

    tl_model_config c;
    fill_config(fc, weights->v, &c);
    tl_model *m = NULL;
    if (tl_model_new(&c, &m) != TL_OK) fail_msg("%s: %s", fc->file, tl_errmsg());
    tl_graph *g = tl_model_graph(m);

    /* parameters by name; the fixture must hold exactly the engine's set */
    int n_fx_params = 0;
    for (int i = 0; i < fx->n; i++) n_fx_params += strncmp(fx->a[i].name, "param.", 6) == 0;
    if (n_fx_params != tl_graph_param_count(g))
        for (int i = 0; i < tl_graph_param_count(g); i++) print_message("engine: %s\n", tl_graph_param(g, i)->name);
    assert_int_equal(n_fx_params, tl_graph_param_count(g));
    load_params(fx, g, fc->file);
    char name[96];

    fill_inputs(m, ids, x, y);
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    int ok = 1;
    float got[B * 2], lv[2];
    for (int k = 0; k < 2; k++) {
        const float *pk = tl_graph_value(g, m->pred[k]);
        for (int i = 0; i < B; i++) got[i * 2 + k] = pk[i];
        lv[k] = tl_graph_value(g, m->loss[k])[0];
    }
    ok &= close_to("predictions", got, pred);
    ok &= close_to("task losses", lv, loss);
    ok &= close_to("total loss", tl_graph_value(g, tl_graph_find(g, "total_loss")), total);
    tl_graph_zero_grad(g);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    const float *grads = tl_graph_grads(g, NULL);
    int nonzero = 0;
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        snprintf(name, sizeof name, "grad.%s", p->name);
        const tlt_array *a = tlt_fixture_get(fx, name, p->rows, p->cols);
        if (!a) {
            ok = 0;
            continue;
        }
        ok &= close_to(name, grads + p->offset, a);
        for (int j = 0; j < a->rows * a->cols; j++) nonzero += a->v[j] != 0.0;
    }
    assert_true(nonzero > 0);
    if (!ok) fail_msg("%s: engine differs from the PyTorch reference (details above)", fc->file);
    tl_model_free(m);
    tlt_fixture_free(fx);
}

#define NO_GATE {0, {0}, 0.0f}
static const fixture_case cases[] = {
    {"stem", "stem", 2, 1, 2, 0, 0, NO_GATE},
    {"stem_s0p1", "stem", 1, 0, 1, 0, 0, NO_GATE},
    {"adatt", "adatt", 2, 1, 2, 0, 0, NO_GATE},
    {"adatt_unit", "adatt", 2, 1, 1, 0, 0, NO_GATE},
    {"adatt_sp", "adatt", 2, 0, 2, 0, 0, NO_GATE},
    {"cross_stitch", "cross_stitch", 0, 0, 0, 0, 0, NO_GATE},
    {"dselect_k", "dselect_k", 0, 0, 0, 3, 2, NO_GATE},
    {"stem_gate", "stem", 2, 1, 1, 0, 0, {2, {5, 3}, 0.0f}},
};

static void test_stem(void **s) { (void)s; run_case(&cases[0]); }
static void test_stem_no_shared(void **s) { (void)s; run_case(&cases[1]); }
static void test_adatt(void **s) { (void)s; run_case(&cases[2]); }
static void test_adatt_unit_residual(void **s) { (void)s; run_case(&cases[3]); }
static void test_adatt_sp(void **s) { (void)s; run_case(&cases[4]); }
static void test_cross_stitch(void **s) { (void)s; run_case(&cases[5]); }
static void test_dselect_k(void **s) { (void)s; run_case(&cases[6]); }
static void test_stem_gate_layers(void **s) { (void)s; run_case(&cases[7]); }

/* GradNorm measures each task's gradient at one backbone weight (the model's
 * last_shared): it must be one that every task's loss reaches, for each new
 * backbone (the last weight added is often a task's own gate). With the
 * fixture's parameters and one task's loss weight at a time (the other 0),
 * its gradient is non-zero. */
static void test_gradnorm_layer_is_shared(void **state)
{
    (void)state;
    char path[128];
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        if (cases[ci].shared == 0 && strcmp(cases[ci].kind, "stem") == 0) continue; /* nothing dense shared */
        snprintf(path, sizeof path, "tests/fixtures/backbones_%s.txt", cases[ci].file);
        tlt_fixture *fx = tlt_fixture_load(path);
        if (!fx) fail_msg("cannot load %s (run from the project root)", path);
        const tlt_array *ids = tlt_fixture_get(fx, "ids", B, FIELDS), *x = tlt_fixture_get(fx, "x", B, NUM);
        const tlt_array *y = tlt_fixture_get(fx, "y", B, 2);
        assert_true(ids && x && y);
        for (int task = 0; task < 2; task++) {
            const double w[2] = {task == 0, task == 1};
            tl_model_config c;
            fill_config(&cases[ci], w, &c);
            c.backbone.entropy = 0.0f; /* only the task loss */
            tl_model *m = NULL;
            if (tl_model_new(&c, &m) != TL_OK) fail_msg("%s: %s", cases[ci].file, tl_errmsg());
            tl_graph *g = tl_model_graph(m);
            load_params(fx, g, cases[ci].file);
            /* towers' ReLUs on for every row, so the tower passes the loss's gradient down
             * (in a fixture a tower may be dead on all 16 rows) */
            for (int k = 0; k < 2; k++) {
                char bn[64];
                snprintf(bn, sizeof bn, "tower.%s.l1.b", c.tasks[k].name);
                tl_node tb = tl_graph_find(g, bn);
                assert_true(tb != TL_NONE);
                for (int j = 0; j < tl_node_cols(g, tb); j++) tlt_param(g, tb)[j] = 3.0f;
            }
            fill_inputs(m, ids, x, y);
            assert_int_equal(tl_graph_forward(g, 1), TL_OK);
            tl_graph_zero_grad(g);
            assert_int_equal(tl_graph_backward_run(g), TL_OK);
            const tl_param_info *p = tl_graph_param(g, tl_graph_param_index(g, m->last_shared));
            const float *gr = tl_graph_grads(g, NULL) + p->offset;
            double norm = 0.0;
            for (int i = 0; i < p->rows * p->cols; i++) norm += (double)gr[i] * (double)gr[i];
            if (!(norm > 0.0))
                fail_msg("%s: GradNorm's layer '%s' gets no gradient from task %d", cases[ci].file, p->name,
                         task + 1);
            tl_model_free(m);
        }
        tlt_fixture_free(fx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stem),         cmocka_unit_test(test_stem_no_shared),
        cmocka_unit_test(test_adatt),        cmocka_unit_test(test_adatt_unit_residual),
        cmocka_unit_test(test_adatt_sp),     cmocka_unit_test(test_cross_stitch),
        cmocka_unit_test(test_dselect_k),    cmocka_unit_test(test_stem_gate_layers),
        cmocka_unit_test(test_gradnorm_layer_is_shared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
