/* test_fixture_distill.c — one forward and backward pass of the two papers'
 * additions against PyTorch (tests/fixtures/distill_<name>.txt, made by
 * make_distill_fixtures.py from the papers' equations with detach() for every
 * stop-gradient): DML (CTFM + GKD) on MMoE and shared-bottom, and CrossDistil
 * on shared-bottom (teachers, quadruplet loss, in-graph Platt calibrator,
 * blend correction, distilled student loss) with and without the partner's
 * label flipped, and with sample weights and a task space (weighted losses,
 * the weighted quadruplet loss without the rows outside a space), and with
 * nested labels (cvr => ctr: a group always empty, the terms chained over
 * it). The
 * fixture's parameters, already in the engine's layout and names, are
 * loaded into the engine; predictions, losses and every parameter gradient
 * must match — including the ones a stop-gradient cuts, which the
 * finite-difference checks in test_distill.c cannot see. Also the weighted
 * quadruplet loss alone (weights with zeros, both orders). */
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
#include "models/builders.h"
#include "models/model_impl.h"
#include "support.h"

#define B 16
#define D 5

/* The reference is float64 and the engine float32: relative 1e-5, plus an
 * absolute floor of 1e-6 x the largest element of the array compared (for
 * gradients: of every gradient in the fixture), for elements that are sums
 * of terms cancelling to near zero, where a relative test measures rounding
 * noise, not correctness. A teacher's biases under the shift-invariant
 * ranking loss are such sums: exactly 0 in the reference, ~1e-8 in float32. */
#define RTOL 1e-5
#define FLOOR 1e-6

static int close_scaled(const char *what, const float *got, const tlt_array *want, double scale)
{
    size_t n = (size_t)want->rows * (size_t)want->cols;
    double mx = scale;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(want->v[i]));
    return tlt_close(what, got, want->v, n, RTOL, FLOOR * mx + 1e-12);
}

static int close_to(const char *what, const float *got, const tlt_array *want)
{
    return close_scaled(what, got, want, 0.0);
}

static const tlt_array *get(const tlt_fixture *fx, const char *name, int rows, int cols)
{
    const tlt_array *a = tlt_fixture_get(fx, name, rows, cols);
    if (!a) fail_msg("fixture lacks %s [%d x %d]", name, rows, cols);
    return a;
}

/* kind: "dml_mmoe", "dml_shared_bottom", "crossdistil", "crossdistil_flip",
 * "crossdistil_weighted", "crossdistil_nested". */
static void run_fixture(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "tests/fixtures/distill_%s.txt", name);
    tlt_fixture *fx = tlt_fixture_load(path);
    if (!fx) fail_msg("cannot load %s (run from the project root)", path);
    int dml = strncmp(name, "dml_", 4) == 0;
    const tlt_array *x = get(fx, "x", B, D), *y = get(fx, "y", B, 2), *types = get(fx, "types", 1, 2);
    const tlt_array *weights = get(fx, "weights", 1, 2);
    const tlt_array *rowweight = NULL, *space = NULL; /* optional: sample weights, task spaces */
    for (int i = 0; i < fx->n; i++) {
        if (strcmp(fx->a[i].name, "rowweight") == 0) rowweight = get(fx, "rowweight", B, 1);
        if (strcmp(fx->a[i].name, "space") == 0) space = get(fx, "space", 1, 2);
    }

    tl_model_config c;
    tl_model_config_defaults(&c);
    assert_int_equal(tl_backbone_parse(dml ? name + 4 : "shared_bottom", &c.backbone.kind), TL_OK);
    c.backbone.bottom = (tl_mlp_spec){2, {6, 4}, 0.0f};
    c.backbone.expert = (tl_mlp_spec){2, {6, 4}, 0.0f};
    c.backbone.experts = 3;
    c.n_cat = 0;
    c.n_num = D;
    c.n_tasks = 2;
    for (int k = 0; k < 2; k++) {
        tl_task_spec *t = &c.tasks[k];
        snprintf(t->name, sizeof t->name, "%s", k == 0 ? "ctr" : "cvr");
        t->type = types->v[k] == 0.0 ? TL_TASK_BINARY : TL_TASK_REGRESSION;
        t->tower = (tl_mlp_spec){1, {4}, 0.0f};
        t->weight = (float)weights->v[k];
        t->space = space ? (int)space->v[k] : -1;
    }
    c.max_batch = B;
    float alpha = 0.0f;
    if (dml) {
        c.dml = (tl_dml_spec){1, 1, 1, 1, 1, 0.0f, 0u};
    } else {
        const tlt_array *st = get(fx, "settings", 1, 5);
        tl_distill_spec *ds = &c.distill;
        ds->enabled = 1;
        ds->n_pairs = 1;
        ds->pairs[0][0] = 0;
        ds->pairs[0][1] = 1;
        alpha = (float)st->v[0];
        ds->kd = alpha;
        ds->aux = (float)st->v[1];
        ds->lambda = (float)st->v[2];
        ds->flip[0] = (int)st->v[3];
        ds->teacher_shared = (int)st->v[4];
        ds->calibrate = TL_DISTILL_PLATT;
        ds->calib_valid = 0;
        ds->correct = TL_CORRECT_BLEND;
    }
    tl_model *m = NULL;
    if (tl_model_new(&c, &m) != TL_OK) fail_msg("%s: %s", name, tl_errmsg());
    tl_graph *g = tl_model_graph(m);
    if (!dml) { /* alpha as after warm-up */
        tl_graph_set_scalar(g, m->distill->kd_alpha, alpha);
        tl_graph_set_scalar(g, m->distill->kd_keep, 1.0f - alpha);
    }

    /* parameters by name; the fixture must hold exactly the engine's set */
    int n_fx_params = 0;
    for (int i = 0; i < fx->n; i++) n_fx_params += strncmp(fx->a[i].name, "param.", 6) == 0;
    assert_int_equal(n_fx_params, tl_graph_param_count(g));
    float *params = tl_graph_params(g, NULL);
    char pn[96];
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        snprintf(pn, sizeof pn, "param.%s", p->name);
        tlt_array_to_float(get(fx, pn, p->rows, p->cols), params + p->offset);
    }
    /* the batch as training fills it: row weights w [in the task's space] */
    float xs[B * D], ys[B * 2], ws[B];
    tlt_array_to_float(x, xs);
    tlt_array_to_float(y, ys);
    if (rowweight) tlt_array_to_float(rowweight, ws);
    tl_split sp;
    memset(&sp, 0, sizeof sp);
    sp.name = "fixture";
    sp.n = B;
    sp.num = xs;
    sp.labels = ys;
    sp.weight = rowweight ? ws : NULL;
    tl_model_fill_batch(m, &sp, NULL, 0, B);
    if (space) /* the space's rows only: cvr weighs 0 where ctr = 0 */
        for (int i = 0; i < B; i++)
            assert_true(tl_graph_input(g, m->rowweight[1])[i] == (ys[i * 2] > 0.5f ? ws[i] : 0.0f));
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    tl_graph_zero_grad(g);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);

    int ok = 1;
    float got[B * 2], lv[2];
    for (int k = 0; k < 2; k++) {
        const float *pk = tl_graph_value(g, m->pred[k]);
        for (int i = 0; i < B; i++) got[i * 2 + k] = pk[i];
        lv[k] = tl_graph_value(g, m->loss[k])[0];
    }
    ok &= close_to("predictions", got, get(fx, "pred", B, 2));
    ok &= close_to("task losses", lv, get(fx, "loss", 1, 2));
    ok &= close_to("total loss", tl_graph_value(g, m->total), get(fx, "total", 1, 1));
    if (!dml) {
        for (int k = 0; k < 2; k++) {
            const float *r = tl_graph_value(g, m->distill->teacher[k]);
            for (int i = 0; i < B; i++) got[i * 2 + k] = r[i];
            lv[k] = tl_graph_value(g, m->objective[k])[0];
        }
        ok &= close_to("teacher scores", got, get(fx, "teacher", B, 2));
        ok &= close_to("student objectives", lv, get(fx, "objective", 1, 2));
        ok &= close_to("calibration + auxiliary losses", tl_graph_value(g, m->extra), get(fx, "extra", 1, 1));
    }
    const float *grads = tl_graph_grads(g, NULL);
    double gmax = 0.0;
    for (int i = 0; i < fx->n; i++)
        if (strncmp(fx->a[i].name, "grad.", 5) == 0)
            for (int j = 0; j < fx->a[i].rows * fx->a[i].cols; j++) gmax = fmax(gmax, fabs(fx->a[i].v[j]));
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        snprintf(pn, sizeof pn, "grad.%s", p->name);
        ok &= close_scaled(pn, grads + p->offset, get(fx, pn, p->rows, p->cols), gmax);
    }
    if (!ok) fail_msg("%s: engine differs from the PyTorch reference (details above)", name);
    tl_model_free(m);
    tlt_fixture_free(fx);
}

static void test_dml_mmoe(void **s) { (void)s; run_fixture("dml_mmoe"); }
static void test_dml_shared_bottom(void **s) { (void)s; run_fixture("dml_shared_bottom"); }
static void test_crossdistil(void **s) { (void)s; run_fixture("crossdistil"); }
static void test_crossdistil_flip(void **s) { (void)s; run_fixture("crossdistil_flip"); }
static void test_crossdistil_weighted(void **s) { (void)s; run_fixture("crossdistil_weighted"); }
static void test_crossdistil_nested(void **s) { (void)s; run_fixture("crossdistil_nested"); }

/* The weighted quadruplet loss alone: 24 rows, five of weight 0. */
static void test_quad_weighted(void **state)
{
    (void)state;
    enum { N = 24 };
    tlt_fixture *fx = tlt_fixture_load("tests/fixtures/distill_quad_weighted.txt");
    if (!fx) fail_msg("cannot load tests/fixtures/distill_quad_weighted.txt (run from the project root)");
    const tlt_array *want_loss = get(fx, "loss", 1, 2), *want_grad = get(fx, "grad", N, 2);
    int zeros = 0;
    for (int i = 0; i < N; i++) zeros += get(fx, "w", N, 1)->v[i] == 0.0;
    assert_int_equal(zeros, 5);
    for (int flip = 0; flip < 2; flip++) {
        tl_graph *g = tl_graph_new(64, 1);
        assert_non_null(g);
        tl_node in[4];
        static const char *const names[4] = {"score", "ya", "yb", "w"};
        for (int i = 0; i < 4; i++) in[i] = tl_param(g, N, 1, TL_INIT_ZEROS, 0.0f, names[i]);
        tl_node loss = tl_quadruplet_bpr_weighted(g, in[0], tl_stop_grad(g, in[1]), tl_stop_grad(g, in[2]),
                                                  tl_stop_grad(g, in[3]), flip, 1 << 20);
        assert_int_equal(tl_graph_status(g), TL_OK);
        assert_int_equal(tl_graph_backward(g, loss), TL_OK);
        assert_int_equal(tl_graph_plan(g), TL_OK);
        for (int i = 0; i < 4; i++) tlt_array_to_float(get(fx, names[i], N, 1), tlt_param(g, in[i]));
        assert_int_equal(tl_graph_forward(g, 1), TL_OK);
        tl_graph_zero_grad(g);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        double wl = want_loss->v[flip], wg[N];
        for (int i = 0; i < N; i++) wg[i] = want_grad->v[i * 2 + flip];
        tlt_array a = {"loss", 1, 1, &wl}, b = {"grad", N, 1, wg};
        int ok = close_to("weighted quadruplet loss", tl_graph_value(g, loss), &a);
        ok &= close_to("weighted quadruplet gradient", tlt_param_grad(g, in[0]), &b);
        if (!ok) fail_msg("flip %d: engine differs from the PyTorch reference (details above)", flip);
        tl_graph_free(g);
    }
    tlt_fixture_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dml_mmoe),
        cmocka_unit_test(test_dml_shared_bottom),
        cmocka_unit_test(test_crossdistil),
        cmocka_unit_test(test_crossdistil_flip),
        cmocka_unit_test(test_crossdistil_weighted),
        cmocka_unit_test(test_crossdistil_nested),
        cmocka_unit_test(test_quad_weighted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
