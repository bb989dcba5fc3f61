/* test_model.c — the multi-task model engine: every backbone with every loss
 * weighting learns; loss weights act at the next step; the weighting
 * strategies against independent computations (DWA, PCGrad, GradNorm's
 * normalisation); early stopping, cancellation, NaN handling, determinism,
 * predict/evaluate, config errors, and no allocation in training steps.
 *
 * Data: the MMoE synthetic generator (synthetic.h); x columns 0 and 1 are
 * bucketed into 10 ids each (two categorical fields), columns 2.. stay
 * numeric. Binary labels are y > median; for ESMM/AITM the second label is
 * (y0 > median) and (y1 > median), so that CTCVR <= CTR. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "losses/weighting.h"
#include "model.h"
#include "models/model_impl.h"
#include "support.h"
#include "synthetic.h"

#define DIM 8
#define N_CAT 2
#define N_NUM (DIM - N_CAT)

/* ---- data ------------------------------------------------------------------- */

enum { LAB_REG = 0, LAB_BIN = 1, LAB_CHAIN = 2 }; /* CHAIN: 2 binary, label1 = b0 & b1 */

typedef struct {
    int32_t *cat;
    float *num, *labels;
    tl_split train, valid;
} tdata;

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float median2(const float *y, size_t n, int col)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = y[i * 2 + (size_t)col];
    qsort(v, n, sizeof *v, cmp_float);
    float m = v[n / 2];
    free(v);
    return m;
}

/* n_train + n_valid rows; `sines` is the generator's m (0: linear tasks). */
static void make_data(tdata *d, size_t n_train, size_t n_valid, int labels, int sines,
                      uint64_t seed)
{
    size_t n = n_train + n_valid;
    tl_synthetic_params p;
    tl_synthetic_defaults(&p);
    p.n = n;
    p.dim = DIM;
    p.m = sines;
    p.seed = seed;
    float *x = malloc(n * DIM * sizeof *x), *y = malloc(n * 2 * sizeof *y);
    assert_int_equal(tl_synthetic_generate(&p, x, y), TL_OK);
    d->cat = malloc(n * N_CAT * sizeof *d->cat);
    d->num = malloc(n * N_NUM * sizeof *d->num);
    d->labels = malloc(n * 2 * sizeof *d->labels);
    float med0 = median2(y, n, 0), med1 = median2(y, n, 1);
    for (size_t i = 0; i < n; i++) {
        for (int f = 0; f < N_CAT; f++) {
            int id = (int)floorf((x[i * DIM + (size_t)f] + 2.5f) * 2.0f);
            d->cat[i * N_CAT + (size_t)f] = id < 0 ? 0 : id > 9 ? 9 : id;
        }
        for (int j = 0; j < N_NUM; j++) d->num[i * N_NUM + (size_t)j] = x[i * DIM + N_CAT + (size_t)j];
        float b0 = y[i * 2] > med0 ? 1.0f : 0.0f, b1 = y[i * 2 + 1] > med1 ? 1.0f : 0.0f;
        if (labels == LAB_REG) {
            d->labels[i * 2] = y[i * 2];
            d->labels[i * 2 + 1] = y[i * 2 + 1];
        } else {
            d->labels[i * 2] = b0;
            d->labels[i * 2 + 1] = labels == LAB_CHAIN ? b0 * b1 : b1;
        }
    }
    free(x);
    free(y);
    memset(&d->train, 0, sizeof d->train);
    d->train.name = "train";
    d->train.n = n_train;
    d->train.cat = d->cat;
    d->train.num = d->num;
    d->train.labels = d->labels;
    d->valid = d->train;
    d->valid.name = "valid";
    d->valid.n = n_valid;
    d->valid.cat = d->cat + n_train * N_CAT;
    d->valid.num = d->num + n_train * N_NUM;
    d->valid.labels = d->labels + n_train * 2;
}

static void free_data(tdata *d)
{
    free(d->cat);
    free(d->num);
    free(d->labels);
}

/* ---- models ----------------------------------------------------------------- */

static void make_cfg(tl_model_config *c, tl_backbone_kind kind, tl_weighting w, int labels)
{
    tl_model_config_defaults(c);
    c->backbone.kind = kind;
    c->backbone.bottom = (tl_mlp_spec){2, {32, 16}, 0.0f};
    c->backbone.expert = (tl_mlp_spec){2, {32, 16}, 0.0f};
    c->backbone.experts = 4;
    c->backbone.levels = 2;
    c->backbone.shared = 2;
    c->backbone.specific = 1;
    c->n_cat = N_CAT;
    c->vocab[0] = c->vocab[1] = 10;
    c->n_num = N_NUM;
    c->emb_dim = 4;
    c->n_tasks = 2;
    for (int k = 0; k < 2; k++) {
        tl_task_spec *t = &c->tasks[k];
        snprintf(t->name, sizeof t->name, "%s", k == 0 ? "a" : "b");
        t->type = labels == LAB_REG ? TL_TASK_REGRESSION : TL_TASK_BINARY;
        t->tower = (tl_mlp_spec){1, {16}, 0.0f};
        t->weight = 1.0f;
    }
    c->weighting = w;
    c->max_batch = 128;
    c->seed = 7;
}

static tl_model *new_model(const tl_model_config *c)
{
    tl_model *m = NULL;
    tl_status st = tl_model_new(c, &m);
    if (st != TL_OK) fail_msg("tl_model_new(%s, %s): %s", tl_backbone_name(c->backbone.kind),
                              tl_weighting_name(c->weighting), tl_errmsg());
    return m;
}

static void fit_opts(tl_fit_options *o, int epochs)
{
    tl_fit_defaults(o);
    o->epochs = epochs;
    o->batch = 128;
    o->optim.lr = 1e-2f;
}

static void near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol)) fail_msg("%s: got %.10g, want %.10g (tol %g)", what, got, want, tol);
}

static void check_ok(tl_status st, const char *what)
{
    if (st != TL_OK) fail_msg("%s: %s: %s", what, tl_status_name(st), tl_errmsg());
}

static float *param_copy(tl_model *m, size_t *n)
{
    const float *p = tl_graph_params(tl_model_graph(m), n);
    float *c = malloc(*n * sizeof *c);
    memcpy(c, p, *n * sizeof *c);
    return c;
}

static const tl_param_info *param_named(tl_graph *g, const char *name)
{
    for (int i = 0; i < tl_graph_param_count(g); i++)
        if (strcmp(tl_graph_param(g, i)->name, name) == 0) return tl_graph_param(g, i);
    fail_msg("no parameter named %s", name);
    return NULL;
}

/* 1 when every parameter whose name starts with `prefix` is bit-identical in
 * the two blocks. */
static int params_same(tl_graph *g, const char *prefix, const float *a, const float *b)
{
    int n = 0;
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        if (strncmp(p->name, prefix, strlen(prefix)) != 0) continue;
        n++;
        size_t len = (size_t)p->rows * (size_t)p->cols;
        if (memcmp(a + p->offset, b + p->offset, len * sizeof(float)) != 0) return 0;
    }
    if (n == 0) fail_msg("no parameters start with %s", prefix);
    return 1;
}

/* Fill the model graph's inputs with rows from..from+n of s (by node name). */
static void fill_graph(tl_model *m, const tl_split *s, size_t from, int n)
{
    tl_graph *g = tl_model_graph(m);
    const tl_model_config *c = tl_model_config_get(m);
    int32_t *ids = tl_graph_ids(g, tl_graph_find(g, "ids"));
    float *num = tl_graph_input(g, tl_graph_find(g, "numeric"));
    assert_non_null(ids);
    assert_non_null(num);
    char name[64];
    for (int k = 0; k < c->n_tasks; k++) {
        snprintf(name, sizeof name, "label.%s", c->tasks[k].name);
        float *lab = tl_graph_input(g, tl_graph_find(g, name));
        snprintf(name, sizeof name, "rowweight.%s", c->tasks[k].name);
        float *rw = tl_graph_input(g, tl_graph_find(g, name));
        assert_non_null(lab);
        assert_non_null(rw);
        for (int i = 0; i < n; i++) {
            lab[i] = s->labels[(from + (size_t)i) * (size_t)c->n_tasks + (size_t)k];
            rw[i] = 1.0f;
        }
    }
    memcpy(ids, s->cat + from * N_CAT, (size_t)n * N_CAT * sizeof *ids);
    memcpy(num, s->num + from * N_NUM, (size_t)n * N_NUM * sizeof *num);
    assert_int_equal(tl_graph_set_batch(g, n), TL_OK);
}

/* ---- every backbone x every weighting learns ----------------------------------- */

static void learns(tl_backbone_kind kind)
{
    int labels = kind == TL_BACKBONE_ESMM || kind == TL_BACKBONE_AITM ? LAB_CHAIN : LAB_REG;
    tdata d;
    make_data(&d, 2000, 0, labels, 3, 11);
    for (int w = 0; w < TL_WEIGHTING_COUNT; w++) {
        tl_model_config c;
        make_cfg(&c, kind, (tl_weighting)w, labels);
        tl_model *m = new_model(&c);
        tl_fit_options o;
        fit_opts(&o, 4);
        tl_status st = tl_model_fit(m, &d.train, NULL, &o);
        if (st != TL_OK)
            fail_msg("%s x %s: fit: %s", tl_backbone_name(kind), tl_weighting_name(c.weighting),
                     tl_errmsg());
        const tl_step_record *sr;
        const tl_epoch_record *er;
        size_t ns = tl_model_history_steps(m, &sr), ne = tl_model_history_epochs(m, &er);
        if (ns != 4 * 16 || ne != 4)
            fail_msg("%s x %s: %zu steps, %zu epochs recorded; want 64, 4",
                     tl_backbone_name(kind), tl_weighting_name(c.weighting), ns, ne);
        for (int k = 0; k < 2; k++) {
            double first = 0.0;
            for (int i = 0; i < 3; i++) first += (double)sr[i].loss[k] / 3.0;
            double last = er[3].train_loss[k];
            if (!(last < 0.7 * first))
                fail_msg("%s x %s: task %s did not learn: first 3 steps %.5g, last epoch %.5g",
                         tl_backbone_name(kind), tl_weighting_name(c.weighting), c.tasks[k].name,
                         first, last);
        }
        tl_model_free(m);
    }
    free_data(&d);
}

static void test_learns_shared_bottom(void **s) { (void)s; learns(TL_BACKBONE_SHARED_BOTTOM); }
static void test_learns_omoe(void **s) { (void)s; learns(TL_BACKBONE_OMOE); }
static void test_learns_mmoe(void **s) { (void)s; learns(TL_BACKBONE_MMOE); }
static void test_learns_ple(void **s) { (void)s; learns(TL_BACKBONE_PLE); }
static void test_learns_esmm(void **s) { (void)s; learns(TL_BACKBONE_ESMM); }
static void test_learns_aitm(void **s) { (void)s; learns(TL_BACKBONE_AITM); }

/* ---- loss weights ------------------------------------------------------------------ */

/* SGD without momentum: a parameter with zero gradient does not move, so a
 * weight set to 0 between steps freezes that task's tower at the next step. */
static void test_weight_next_step(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 512, 0, LAB_REG, 3, 3);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, TL_WEIGHTING_FIXED, LAB_REG);
    tl_model *m = new_model(&c);
    tl_graph *g = tl_model_graph(m);
    tl_fit_options o;
    fit_opts(&o, 1);
    o.optim = tl_optim_defaults(TL_OPTIM_SGD);
    o.optim.lr = 0.05f;
    o.max_steps = 1;
    o.shuffle = 0;
    size_t n;
    float *p0 = param_copy(m, &n);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit step 1");
    float *p1 = param_copy(m, &n);
    assert_false(params_same(g, "tower.a", p0, p1));
    assert_false(params_same(g, "tower.b", p0, p1));

    check_ok(tl_model_set_weight(m, 1, 0.0f), "set_weight");
    assert_true(tl_model_get_weight(m, 1) == 0.0f);
    assert_true(tl_model_effective_weight(m, 1) == 0.0f);
    assert_true(tl_model_effective_weight(m, 0) == 1.0f);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit step 2");
    float *p2 = param_copy(m, &n);
    assert_false(params_same(g, "tower.a", p1, p2));
    assert_true(params_same(g, "tower.b", p1, p2));
    assert_false(params_same(g, "bottom", p1, p2));
    const tl_step_record *sr;
    assert_int_equal(tl_model_history_steps(m, &sr), 2);
    assert_true(sr[0].weight[1] == 1.0f);
    assert_true(sr[1].weight[1] == 0.0f);
    assert_true(sr[1].weight[0] == 1.0f);

    /* bad weights are refused and leave the weight alone */
    assert_int_equal(tl_model_set_weight(m, 0, -1.0f), TL_ERR_ARG);
    assert_int_equal(tl_model_set_weight(m, 0, NAN), TL_ERR_ARG);
    assert_int_equal(tl_model_set_weight(m, 2, 1.0f), TL_ERR_ARG);
    assert_true(tl_model_get_weight(m, 0) == 1.0f);
    assert_true(isnan(tl_model_get_weight(m, 2)));
    assert_true(isnan(tl_model_effective_weight(m, -1)));

    check_ok(tl_model_set_weight(m, 1, 2.5f), "set_weight");
    assert_true(tl_model_effective_weight(m, 1) == 2.5f);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit step 3");
    float *p3 = param_copy(m, &n);
    assert_false(params_same(g, "tower.b", p2, p3));
    free(p0);
    free(p1);
    free(p2);
    free(p3);
    tl_model_free(m);
    free_data(&d);
}

/* Uncertainty: the log-variances are trained, and the effective weight is
 * w * 0.5 exp(-s). */
static void test_uncertainty(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 1024, 0, LAB_REG, 3, 5);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_UNCERTAINTY, LAB_REG);
    c.tasks[1].weight = 2.0f;
    tl_model *m = new_model(&c);
    tl_graph *g = tl_model_graph(m);
    const tl_param_info *s0 = param_named(g, "logvar.a"), *s1 = param_named(g, "logvar.b");
    const float *p = tl_graph_params(g, NULL);
    assert_true(p[s0->offset] == 0.0f && p[s1->offset] == 0.0f);
    tl_fit_options o;
    fit_opts(&o, 2);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit");
    p = tl_graph_params(g, NULL);
    double v0 = (double)p[s0->offset], v1 = (double)p[s1->offset];
    if (!(fabs(v0) > 1e-3 && fabs(v1) > 1e-3)) fail_msg("logvars did not move: %g %g", v0, v1);
    near((double)tl_model_effective_weight(m, 0), 0.5 * exp(-v0), 1e-6, "effective weight a");
    near((double)tl_model_effective_weight(m, 1), 2.0 * 0.5 * exp(-v1), 1e-6, "effective weight b");
    tl_model_free(m);
    free_data(&d);
}

/* GradNorm: factors stay positive, sum to K on every step, and move. */
static void test_gradnorm(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 1024, 0, LAB_REG, 3, 6);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_GRADNORM, LAB_REG);
    c.n_tasks = 2;
    tl_model *m = new_model(&c);
    tl_fit_options o;
    fit_opts(&o, 3);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit");
    const tl_step_record *sr;
    size_t ns = tl_model_history_steps(m, &sr);
    assert_int_equal(ns, 24);
    double moved = 0.0;
    for (size_t i = 0; i < ns; i++) {
        double sum = 0.0;
        for (int k = 0; k < 2; k++) {
            if (!(sr[i].weight[k] > 0.0f)) fail_msg("step %zu: factor %d is %g", i, k,
                                                    (double)sr[i].weight[k]);
            sum += (double)sr[i].weight[k];
            moved = fmax(moved, fabs((double)sr[i].weight[k] - 1.0));
        }
        if (fabs(sum - 2.0) > 1e-5) fail_msg("step %zu: factors sum to %.8g, not 2", i, sum);
    }
    if (!(moved > 1e-4)) fail_msg("gradnorm factors never moved (max |g-1| = %g)", moved);
    double sum = (double)tl_model_effective_weight(m, 0) + (double)tl_model_effective_weight(m, 1);
    near(sum, 2.0, 1e-5, "gradnorm factor sum");
    tl_model_free(m);
    free_data(&d);
}

/* GradNorm measures each task's gradient at one backbone weight (the model's
 * last_shared): every task's loss must reach it. The last weight a backbone
 * builds is often task K's own gate (MMoE, PLE), which task 1 never reaches.
 * One task's loss weight at a time (the other 0): the gradient there is
 * non-zero. */
static void test_gradnorm_layer_reached_by_every_task(void **state)
{
    (void)state;
    static const struct {
        tl_backbone_kind kind;
        int shared, levels;
    } cases[] = {
        {TL_BACKBONE_SHARED_BOTTOM, 2, 2}, {TL_BACKBONE_OMOE, 2, 2}, {TL_BACKBONE_MMOE, 2, 2},
        {TL_BACKBONE_PLE, 2, 2},           {TL_BACKBONE_PLE, 0, 2},  {TL_BACKBONE_PLE, 2, 1},
        {TL_BACKBONE_DSELECT_K, 2, 2},     {TL_BACKBONE_CROSS_STITCH, 2, 2},
    };
    tdata d;
    make_data(&d, 256, 0, LAB_REG, 3, 5);
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int task = 0; task < 2; task++) {
            tl_model_config c;
            make_cfg(&c, cases[ci].kind, TL_WEIGHTING_GRADNORM, LAB_REG);
            c.backbone.shared = cases[ci].shared;
            c.backbone.levels = cases[ci].levels;
            c.backbone.select_k = 2;
            c.tasks[1 - task].weight = 0.0f;
            tl_model *m = new_model(&c);
            tl_graph *g = tl_model_graph(m);
            fill_graph(m, &d.train, 0, 128);
            check_ok(tl_graph_forward(g, 1), "forward");
            tl_graph_zero_grad(g);
            check_ok(tl_graph_backward_run(g), "backward");
            const tl_param_info *p = tl_graph_param(g, tl_graph_param_index(g, m->last_shared));
            const float *gr = tl_graph_grads(g, NULL) + p->offset;
            double norm = 0.0;
            for (int i = 0; i < p->rows * p->cols; i++) norm += (double)gr[i] * (double)gr[i];
            if (!(norm > 0.0))
                fail_msg("%s (shared=%d, levels=%d): GradNorm's layer '%s' gets no gradient from task %d",
                         tl_backbone_name(cases[ci].kind), cases[ci].shared, cases[ci].levels, p->name, task + 1);
            tl_model_free(m);
        }
    free_data(&d);
}

/* DWA: factor 1 for epochs 1 and 2, then K softmax(r / T) with
 * r_k = L_k(e-1) / L_k(e-2) from the recorded epoch losses. */
static void test_dwa(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 1024, 0, LAB_REG, 3, 8);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, TL_WEIGHTING_DWA, LAB_REG);
    c.dwa_temperature = 0.5f; /* sharper, so the factors are far from 1 */
    c.tasks[0].weight = 1.5f;
    tl_model *m = new_model(&c);
    tl_fit_options o;
    fit_opts(&o, 4);
    o.optim.lr = 3e-2f;
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit");
    const tl_step_record *sr;
    const tl_epoch_record *er;
    size_t ns = tl_model_history_steps(m, &sr);
    assert_int_equal(tl_model_history_epochs(m, &er), 4);
    assert_int_equal(ns, 32);
    double want[5][2];
    for (int e = 1; e <= 4; e++) {
        if (e <= 2) {
            want[e][0] = want[e][1] = 1.0;
            continue;
        }
        double r[2], z = 0.0, T = 0.5;
        for (int k = 0; k < 2; k++) r[k] = er[e - 2].train_loss[k] / er[e - 3].train_loss[k];
        for (int k = 0; k < 2; k++) z += exp(r[k] / T);
        for (int k = 0; k < 2; k++) want[e][k] = 2.0 * exp(r[k] / T) / z;
    }
    double spread = 0.0;
    for (size_t i = 0; i < ns; i++) {
        int e = sr[i].epoch;
        assert_true(e >= 1 && e <= 4);
        for (int k = 0; k < 2; k++) {
            double w = (k == 0 ? 1.5 : 1.0) * want[e][k];
            if (fabs((double)sr[i].weight[k] - w) > 1e-5 * w)
                fail_msg("step %zu (epoch %d) task %d: weight %.8g, want %.8g", i, e, k,
                         (double)sr[i].weight[k], w);
            spread = fmax(spread, fabs(want[e][k] - 1.0));
        }
    }
    if (!(spread > 1e-3)) fail_msg("DWA factors too close to 1 to test (%g)", spread);
    tl_model_free(m);
    free_data(&d);
}

/* PCGrad on two tasks against an independent computation: per-task gradients
 * from a fixed-weighting twin (same seed, same initial parameters) with one
 * task's weight 0, projected by hand on the shared parameters. */
static void test_pcgrad(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 256, 0, LAB_REG, 3, 9);
    /* Task b learns -y0: its gradient on the shared layers opposes task a's. */
    for (size_t i = 0; i < d.train.n; i++) d.labels[i * 2 + 1] = -d.labels[i * 2];
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, TL_WEIGHTING_PCGRAD, LAB_REG);
    c.tasks[0].weight = 1.0f;
    c.tasks[1].weight = 0.7f;
    tl_model *pm = new_model(&c);
    c.weighting = TL_WEIGHTING_FIXED;
    tl_model *fm = new_model(&c);
    tl_graph *pg = tl_model_graph(pm), *fg = tl_model_graph(fm);
    size_t pf, ff;
    const float *pp = tl_graph_params(pg, &pf), *fp = tl_graph_params(fg, &ff);
    assert_int_equal(pf, ff);
    assert_memory_equal(pp, fp, pf * sizeof(float));

    int B = 128;
    double *ga = calloc(pf, sizeof *ga), *gb = calloc(pf, sizeof *gb);
    for (int t = 0; t < 2; t++) {
        check_ok(tl_model_set_weight(fm, 0, t == 0 ? 1.0f : 0.0f), "weight");
        check_ok(tl_model_set_weight(fm, 1, t == 1 ? 0.7f : 0.0f), "weight");
        fill_graph(fm, &d.train, 0, B);
        check_ok(tl_graph_forward(fg, 1), "forward");
        tl_graph_zero_grad(fg);
        check_ok(tl_graph_backward_run(fg), "backward");
        const float *gr = tl_graph_grads(fg, NULL);
        for (size_t i = 0; i < pf; i++) (t == 0 ? ga : gb)[i] = (double)gr[i];
        tl_graph_zero_grad(fg);
    }
    /* shared = everything outside the towers */
    unsigned char *shared = calloc(pf, 1);
    for (int i = 0; i < tl_graph_param_count(fg); i++) {
        const tl_param_info *p = tl_graph_param(fg, i);
        if (strncmp(p->name, "tower.", 6) == 0) continue;
        memset(shared + p->offset, 1, (size_t)p->rows * (size_t)p->cols);
    }
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (size_t i = 0; i < pf; i++)
        if (shared[i]) {
            ab += ga[i] * gb[i];
            aa += ga[i] * ga[i];
            bb += gb[i] * gb[i];
        }
    if (!(ab < 0.0)) fail_msg("test data does not make the task gradients conflict (dot %g)", ab);
    double *want = malloc(pf * sizeof *want);
    for (size_t i = 0; i < pf; i++)
        want[i] = shared[i] ? ga[i] - ab / bb * gb[i] + gb[i] - ab / aa * ga[i] : ga[i] + gb[i];

    fill_graph(pm, &d.train, 0, B);
    check_ok(tl_graph_forward(pg, 1), "forward");
    float loss[2] = {tl_graph_value(pg, pm->loss[0])[0], tl_graph_value(pg, pm->loss[1])[0]};
    tl_graph_zero_grad(pg);
    tl_fit_point f = {NULL, NULL, loss, NULL};
    check_ok(tl_weighting_hook.backward(pm->weighting, &pm->view, &f), "pcgrad backward");
    const float *got = tl_graph_grads(pg, NULL);
    double scale = 0.0;
    for (size_t i = 0; i < pf; i++) scale = fmax(scale, fabs(want[i]));
    /* float accumulation inside the engine: relative 1e-4 with a floor of
     * 1e-5 of the largest gradient element */
    assert_true(tlt_close("pcgrad gradient", got, want, pf, 1e-4, 1e-5 * scale));
    /* the projection property: the combined shared gradient does not oppose
     * either task's own gradient */
    double da = 0.0, db = 0.0;
    for (size_t i = 0; i < pf; i++)
        if (shared[i]) {
            da += (double)got[i] * ga[i];
            db += (double)got[i] * gb[i];
        }
    if (!(da >= -1e-6 * aa && db >= -1e-6 * bb))
        fail_msg("combined gradient opposes a task: %g %g", da, db);
    /* the weights the user set are restored after the per-task passes */
    assert_true(tl_model_effective_weight(pm, 1) == 0.7f);
    free(ga);
    free(gb);
    free(shared);
    free(want);
    tl_model_free(pm);
    tl_model_free(fm);
    free_data(&d);
}

/* ---- fit control ------------------------------------------------------------------ */

typedef struct {
    tl_model *m;
    float *snap[16];
    int epochs;
    int stop_at_step;
    int64_t last_step;
} cb_state;

static int on_progress(void *ud, const tl_progress *p)
{
    cb_state *cs = ud;
    if (p->kind == TL_PROGRESS_EPOCH && p->epoch < 16) {
        size_t n;
        free(cs->snap[p->epoch]);
        cs->snap[p->epoch] = param_copy(cs->m, &n);
        cs->epochs = p->epoch;
    }
    if (p->kind == TL_PROGRESS_STEP) cs->last_step = p->step;
    return cs->stop_at_step > 0 && p->kind == TL_PROGRESS_STEP && p->step >= cs->stop_at_step;
}

/* Validation labels are the training labels flipped: the better the model
 * fits, the worse the monitored AUC, so patience 1 stops early and the first
 * epoch's parameters come back. */
static void test_early_stopping(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 1024, 512, LAB_BIN, 0, 12);
    for (size_t i = 0; i < d.valid.n * 2; i++) d.valid.labels[i] = 1.0f - d.valid.labels[i];
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, TL_WEIGHTING_FIXED, LAB_BIN);
    tl_model *m = new_model(&c);
    cb_state cs = {.m = m};
    tl_fit_options o;
    fit_opts(&o, 10);
    o.patience = 1;
    o.progress = on_progress;
    o.progress_ud = &cs;
    check_ok(tl_model_fit(m, &d.train, &d.valid, &o), "fit");
    const tl_epoch_record *er;
    size_t ne = tl_model_history_epochs(m, &er);
    if (!(ne >= 2 && ne < 10)) fail_msg("%zu epochs: early stopping did not stop", ne);
    assert_int_equal(tl_model_epochs_done(m), (int)ne);
    size_t best = 0;
    for (size_t e = 1; e < ne; e++)
        if (er[e].monitor > er[best].monitor) best = e;
    /* stopped at the first epoch that did not improve on the best */
    assert_true(er[ne - 1].monitor <= er[best].monitor);
    for (size_t e = 1; e + 1 < ne; e++) assert_true(er[e].monitor > er[e - 1].monitor);
    size_t n;
    const float *p = tl_graph_params(tl_model_graph(m), &n);
    assert_non_null(cs.snap[best + 1]);
    assert_memory_equal(p, cs.snap[best + 1], n * sizeof(float));
    assert_true(memcmp(p, cs.snap[ne], n * sizeof(float)) != 0);
    for (int i = 0; i < 16; i++) free(cs.snap[i]);
    tl_model_free(m);
    free_data(&d);
}

static void test_cancel(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 2000, 0, LAB_REG, 3, 13);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_REG);
    tl_model *m = new_model(&c);
    cb_state cs = {.m = m, .stop_at_step = 5};
    tl_fit_options o;
    fit_opts(&o, 3);
    o.progress = on_progress;
    o.progress_ud = &cs;
    o.progress_every = 1;
    tl_status st = tl_model_fit(m, &d.train, NULL, &o);
    assert_int_equal(st, TL_ERR_CANCELLED);
    assert_non_null(strstr(tl_errmsg(), "progress"));
    assert_int_equal(tl_model_steps(m), 5);
    assert_int_equal(tl_model_epochs_done(m), 0);
    const tl_step_record *sr;
    assert_int_equal(tl_model_history_steps(m, &sr), 5);
    double first = 0.0;
    for (int i = 0; i < 5; i++) first += (double)sr[i].loss[0] + (double)sr[i].loss[1];

    /* the model goes on from where it stopped: the interrupted epoch resumes
     * at its 6th batch, so 3 epochs are 11 + 16 + 16 more steps */
    cs.stop_at_step = 0;
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit after cancel");
    if (tl_model_steps(m) != 3 * 16 || tl_model_epochs_done(m) != 3)
        fail_msg("after cancel, fit of 3 epochs: %lld steps in all, %d epochs; want 48, 3",
                 (long long)tl_model_steps(m), tl_model_epochs_done(m));
    size_t ns = tl_model_history_steps(m, &sr);
    assert_int_equal(ns, 3 * 16);
    assert_true(sr[5].step == 6);
    double last = 0.0;
    for (size_t i = ns - 5; i < ns; i++) last += (double)sr[i].loss[0] + (double)sr[i].loss[1];
    if (!(last < 0.8 * first)) fail_msg("loss did not keep going down: %g then %g", first, last);

    /* Ctrl-C before fit: cancelled after at most one batch */
    int64_t before = tl_model_steps(m);
    tl_cancel_request();
    st = tl_model_fit(m, &d.train, NULL, &o);
    tl_cancel_clear();
    assert_int_equal(st, TL_ERR_CANCELLED);
    assert_true(tl_model_steps(m) - before <= 1);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit after clearing the flag");
    assert_true(tl_model_steps(m) > before + 1);
    for (int i = 0; i < 16; i++) free(cs.snap[i]);
    tl_model_free(m);
    free_data(&d);
}

/* A stop asked for on an epoch's last batch closes that epoch first: the
 * next fit starts the next epoch (it used to run the stopped one again), and
 * the result is bit-identical to training straight through. */
static void test_stop_at_epoch_end(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 2000, 0, LAB_REG, 3, 13);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_REG);
    tl_model *m = new_model(&c), *twin = new_model(&c);
    cb_state cs = {.m = m, .stop_at_step = 16}; /* 16 batches per epoch */
    tl_fit_options o;
    fit_opts(&o, 3);
    o.progress = on_progress;
    o.progress_ud = &cs;
    o.progress_every = 1;
    tl_status st = tl_model_fit(m, &d.train, NULL, &o);
    assert_int_equal(st, TL_ERR_CANCELLED);
    assert_non_null(strstr(tl_errmsg(), "stopped by the progress callback at step 16"));
    assert_int_equal(tl_model_steps(m), 16);
    assert_int_equal(tl_model_epochs_done(m), 1);
    const tl_epoch_record *er;
    assert_int_equal(tl_model_history_epochs(m, &er), 1);
    assert_int_equal(cs.epochs, 0); /* no epoch callback after the stop */
    cs.stop_at_step = 0;
    fit_opts(&o, 1);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit after the stop");
    assert_int_equal(tl_model_steps(m), 32);
    assert_int_equal(tl_model_epochs_done(m), 2);
    fit_opts(&o, 2);
    check_ok(tl_model_fit(twin, &d.train, NULL, &o), "twin");
    size_t n, n2;
    float *a = param_copy(m, &n), *b = param_copy(twin, &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(a, b, n * sizeof *a);
    free(a);
    free(b);
    for (int i = 0; i < 16; i++) free(cs.snap[i]);
    tl_model_free(m);
    tl_model_free(twin);
    free_data(&d);
}

/* A NaN regression label in the third batch: fit fails naming task and step,
 * and the parameters are those after step 2 (compared with a twin that ran
 * exactly 2 steps). */
static void test_nan_label(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 1024, 0, LAB_REG, 3, 14);
    d.labels[300 * 2 + 1] = NAN;
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_PLE, TL_WEIGHTING_FIXED, LAB_REG);
    tl_model *m = new_model(&c), *twin = new_model(&c);
    tl_fit_options o;
    fit_opts(&o, 2);
    o.shuffle = 0;
    tl_status st = tl_model_fit(m, &d.train, NULL, &o);
    assert_int_equal(st, TL_ERR_NUMERIC);
    const char *msg = tl_errmsg();
    if (!strstr(msg, "'b'") || !strstr(msg, "step 3"))
        fail_msg("message should name task 'b' and step 3: %s", msg);
    assert_int_equal(tl_model_steps(m), 2);
    o.max_steps = 2;
    check_ok(tl_model_fit(twin, &d.train, NULL, &o), "twin fit");
    size_t n1, n2;
    const float *p1 = tl_graph_params(tl_model_graph(m), &n1);
    const float *p2 = tl_graph_params(tl_model_graph(twin), &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(p1, p2, n1 * sizeof(float));
    for (size_t i = 0; i < n1; i++) assert_true(isfinite(p1[i]));
    /* the model is still usable on good data */
    d.labels[300 * 2 + 1] = 0.0f;
    o.max_steps = 0;
    o.epochs = 1;
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit after the NaN");
    tl_model_free(m);
    tl_model_free(twin);
    free_data(&d);
}

static void test_determinism(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 1024, 0, LAB_REG, 3, 15);
    float *p[3];
    size_t n[3];
    for (int r = 0; r < 3; r++) {
        tl_model_config c;
        make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_PCGRAD, LAB_REG);
        c.backbone.expert.dropout = 0.1f;
        c.tasks[0].tower.dropout = 0.2f;
        c.seed = r == 2 ? 8 : 7;
        tl_model *m = new_model(&c);
        tl_fit_options o;
        fit_opts(&o, 2);
        check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit");
        p[r] = param_copy(m, &n[r]);
        tl_model_free(m);
    }
    assert_int_equal(n[0], n[1]);
    assert_int_equal(n[0], n[2]);
    assert_memory_equal(p[0], p[1], n[0] * sizeof(float));
    assert_true(memcmp(p[0], p[2], n[0] * sizeof(float)) != 0);
    for (int r = 0; r < 3; r++) free(p[r]);
    free_data(&d);
}

/* ---- predict and evaluate ------------------------------------------------------------ */

static void test_predict(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 1024, 100, LAB_CHAIN, 3, 16);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_ESMM, TL_WEIGHTING_FIXED, LAB_CHAIN);
    tl_model *m = new_model(&c);
    tl_fit_options o;
    fit_opts(&o, 1);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit");
    float *out = malloc(d.valid.n * 2 * sizeof *out);
    check_ok(tl_model_predict(m, &d.valid, out), "predict");
    /* valid has 100 rows < max_batch: the graph still holds this batch */
    tl_graph *g = tl_model_graph(m);
    assert_int_equal(tl_graph_batch(g), 100);
    const float *pcvr = tl_graph_value(g, m->pcvr);
    for (size_t i = 0; i < d.valid.n; i++) {
        float ctr = out[i * 2], ctcvr = out[i * 2 + 1];
        assert_true(ctr >= 0.0f && ctr <= 1.0f);
        assert_true(pcvr[i] >= 0.0f && pcvr[i] <= 1.0f);
        assert_true(ctcvr == ctr * pcvr[i]);
        assert_true(ctcvr <= ctr);
    }
    free(out);
    tl_model_free(m);

    /* regression: n x K finite values, independent of batching */
    tdata r;
    make_data(&r, 300, 300, LAB_REG, 3, 17);
    make_cfg(&c, TL_BACKBONE_PLE, TL_WEIGHTING_FIXED, LAB_REG);
    m = new_model(&c);
    float *o1 = malloc(300 * 2 * sizeof *o1), *o2 = malloc(300 * 2 * sizeof *o2);
    check_ok(tl_model_predict(m, &r.valid, o1), "predict");
    tl_split one = r.valid;
    for (size_t i = 0; i < 300; i++) {
        one.cat = r.valid.cat + i * N_CAT;
        one.num = r.valid.num + i * N_NUM;
        one.labels = r.valid.labels + i * 2;
        one.n = 1;
        check_ok(tl_model_predict(m, &one, o2 + i * 2), "predict one row");
    }
    for (size_t i = 0; i < 600; i++) assert_true(isfinite(o1[i]));
    assert_true(tlt_close_f("predict by rows vs batch", o2, o1, 600, 1e-5, 1e-6));
    free(o1);
    free(o2);
    tl_model_free(m);
    free_data(&r);
    free_data(&d);
}

/* Prediction reads features only: it equals a forward over batches filled
 * with labels, whatever the labels hold, and a predict between two fits
 * leaves the training that follows unchanged (fit refills labels and row
 * weights). */
static void test_predict_without_labels(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 512, 300, LAB_BIN, 3, 18);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_BIN);
    c.tasks[1].space = 0; /* row weights that depend on labels */
    tl_model *m = new_model(&c), *m2 = new_model(&c);
    tl_fit_options o;
    fit_opts(&o, 1);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit");
    check_ok(tl_model_fit(m2, &d.train, NULL, &o), "fit");
    size_t n = d.valid.n;
    float *out = malloc(n * 2 * sizeof *out), *ref = malloc(n * 2 * sizeof *ref);
    float *nolab = malloc(n * 2 * sizeof *nolab);
    assert_true(out && ref && nolab);
    check_ok(tl_model_predict(m, &d.valid, out), "predict");

    tl_graph *g = tl_model_graph(m);
    for (size_t from = 0; from < n; from += 128) {
        int b = (int)(n - from < 128 ? n - from : 128);
        fill_graph(m, &d.valid, from, b);
        assert_int_equal(tl_graph_forward(g, 0), TL_OK);
        for (int k = 0; k < 2; k++) {
            const float *p = tl_graph_value(g, m->pred[k]);
            for (int i = 0; i < b; i++) ref[(from + (size_t)i) * 2 + (size_t)k] = p[i];
        }
    }
    assert_memory_equal(out, ref, n * 2 * sizeof *out);

    tl_split s = d.valid;
    for (size_t i = 0; i < n * 2; i++) nolab[i] = NAN;
    s.labels = nolab;
    check_ok(tl_model_predict(m, &s, nolab), "predict, labels NaN");
    assert_memory_equal(out, nolab, n * 2 * sizeof *out);

    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit after predict");
    check_ok(tl_model_fit(m2, &d.train, NULL, &o), "fit");
    size_t n1, n2;
    float *p1 = param_copy(m, &n1), *p2 = param_copy(m2, &n2);
    assert_true(n1 == n2);
    assert_memory_equal(p1, p2, n1 * sizeof *p1);
    free(p1);
    free(p2);
    free(out);
    free(ref);
    free(nolab);
    tl_model_free(m);
    tl_model_free(m2);
    free_data(&d);
}

static void test_evaluate(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 2000, 1000, LAB_BIN, 0, 18); /* linear tasks: learnable */
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_BIN);
    tl_model *m = new_model(&c);
    tl_fit_options o;
    fit_opts(&o, 8);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit");
    tl_task_eval ev[2];
    check_ok(tl_model_evaluate(m, &d.valid, 10, ev, NULL), "evaluate");
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ev[k].type, TL_TASK_BINARY);
        if (!(ev[k].bin.auc > 0.95)) fail_msg("task %d: AUC %.4f, want > 0.95", k, ev[k].bin.auc);
    }
    tl_model_free(m);
    free_data(&d);

    make_data(&d, 2000, 1000, LAB_REG, 0, 19);
    make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, TL_WEIGHTING_FIXED, LAB_REG);
    m = new_model(&c);
    check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit");
    tl_calib_bin bins[2 * 10];
    check_ok(tl_model_evaluate(m, &d.valid, 10, ev, bins), "evaluate");
    float *pred = malloc(d.valid.n * 2 * sizeof *pred);
    check_ok(tl_model_predict(m, &d.valid, pred), "predict");
    for (int k = 0; k < 2; k++) {
        double se = 0.0, mean = 0.0, var = 0.0;
        for (size_t i = 0; i < d.valid.n; i++) mean += (double)d.valid.labels[i * 2 + (size_t)k];
        mean /= (double)d.valid.n;
        for (size_t i = 0; i < d.valid.n; i++) {
            double e = (double)pred[i * 2 + (size_t)k] - (double)d.valid.labels[i * 2 + (size_t)k];
            double v = (double)d.valid.labels[i * 2 + (size_t)k] - mean;
            se += e * e;
            var += v * v;
        }
        double rmse = sqrt(se / (double)d.valid.n), sd = sqrt(var / (double)d.valid.n);
        assert_int_equal(ev[k].type, TL_TASK_REGRESSION);
        near(ev[k].reg.rmse, rmse, 1e-5 * rmse, "evaluate RMSE");
        if (!(rmse < 0.5 * sd)) fail_msg("task %d: RMSE %.4f vs label sd %.4f", k, rmse, sd);
    }
    free(pred);
    tl_model_free(m);
    free_data(&d);
}

/* ---- configuration errors --------------------------------------------------------------- */

static void expect_bad(const tl_model_config *c, const char *needle)
{
    tl_model *m = (tl_model *)1;
    tl_status st = tl_model_new(c, &m);
    if (st != TL_ERR_ARG) fail_msg("config should fail (%s): got %s", needle, tl_status_name(st));
    assert_null(m);
    if (!strstr(tl_errmsg(), needle)) fail_msg("message '%s' lacks '%s'", tl_errmsg(), needle);
}

static void test_bad_configs(void **state)
{
    (void)state;
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_ESMM, TL_WEIGHTING_FIXED, LAB_BIN);
    c.tasks[1].type = TL_TASK_REGRESSION;
    expect_bad(&c, "esmm");
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_REG);
    c.backbone.experts = 0;
    expect_bad(&c, "experts");
    make_cfg(&c, TL_BACKBONE_OMOE, TL_WEIGHTING_FIXED, LAB_REG);
    c.backbone.experts = 0;
    expect_bad(&c, "experts");
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_REG);
    c.n_tasks = TL_MAX_TASKS + 1;
    expect_bad(&c, "tasks");
    c.n_tasks = 0;
    expect_bad(&c, "tasks");
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_REG);
    snprintf(c.tasks[1].name, sizeof c.tasks[1].name, "a");
    expect_bad(&c, "twice");
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_REG);
    c.backbone.expert.dropout = 1.5f;
    expect_bad(&c, "dropout");
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_REG);
    c.tasks[0].tower.dropout = 1.5f;
    expect_bad(&c, "dropout");
    make_cfg(&c, TL_BACKBONE_AITM, TL_WEIGHTING_FIXED, LAB_REG);
    expect_bad(&c, "binary");
    make_cfg(&c, TL_BACKBONE_PLE, TL_WEIGHTING_FIXED, LAB_REG);
    c.backbone.shared = c.backbone.specific = 0;
    expect_bad(&c, "ple");
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_REG);
    c.tasks[0].weight = -1.0f;
    expect_bad(&c, "weight");
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_FIXED, LAB_REG);
    c.n_cat = 0;
    c.n_num = 0;
    expect_bad(&c, "feature");

    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_DWA, LAB_REG);
    c.dwa_temperature = 0.0f;
    expect_bad(&c, "temperature");
    make_cfg(&c, TL_BACKBONE_MMOE, TL_WEIGHTING_GRADNORM, LAB_REG);
    c.gradnorm_alpha = NAN;
    expect_bad(&c, "alpha");
    make_cfg(&c, TL_BACKBONE_AITM, TL_WEIGHTING_FIXED, LAB_BIN);
    c.backbone.constraint = -1.0f;
    expect_bad(&c, "constraint");

    /* parse names */
    tl_backbone_kind k;
    tl_weighting w;
    assert_int_equal(tl_backbone_parse("ple", &k), TL_OK);
    assert_int_equal(k, TL_BACKBONE_PLE);
    assert_int_equal(tl_backbone_parse("mmmoe", &k), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "mmoe"));
    assert_int_equal(tl_weighting_parse("pcgrad", &w), TL_OK);
    assert_int_equal(w, TL_WEIGHTING_PCGRAD);
    assert_int_equal(tl_weighting_parse("nope", &w), TL_ERR_ARG);
}

/* ---- no allocation in training steps --------------------------------------------------- */

static void test_no_alloc(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 512, 0, LAB_REG, 3, 20);
    for (int w = 0; w < TL_WEIGHTING_COUNT; w++) {
        tl_model_config c;
        make_cfg(&c, TL_BACKBONE_PLE, (tl_weighting)w, LAB_REG);
        c.backbone.expert.dropout = 0.1f;
        tl_model *m = new_model(&c);
        tl_fit_options o;
        fit_opts(&o, 1);
        check_ok(tl_model_fit(m, &d.train, NULL, &o), "fit");
        tl_graph *g = tl_model_graph(m);
        uint64_t before = tl_alloc_count();
        for (int s = 0; s < 10; s++) {
            fill_graph(m, &d.train, (size_t)s * 32, 100);
            check_ok(tl_graph_forward(g, 1), "forward");
            float loss[2] = {tl_graph_value(g, m->loss[0])[0], tl_graph_value(g, m->loss[1])[0]};
            tl_fit_point f = {NULL, NULL, loss, NULL};
            check_ok(tl_weighting_hook.backward(m->weighting, &m->view, &f), "backward");
            check_ok(tl_optim_step(tl_model_optim(m)), "optim step");
        }
        uint64_t after = tl_alloc_count();
        if (after != before)
            fail_msg("%s: %llu allocations in 10 training steps", tl_weighting_name(c.weighting),
                     (unsigned long long)(after - before));
        tl_model_free(m);
    }
    free_data(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learns_shared_bottom),
        cmocka_unit_test(test_learns_omoe),
        cmocka_unit_test(test_learns_mmoe),
        cmocka_unit_test(test_learns_ple),
        cmocka_unit_test(test_learns_esmm),
        cmocka_unit_test(test_learns_aitm),
        cmocka_unit_test(test_weight_next_step),
        cmocka_unit_test(test_uncertainty),
        cmocka_unit_test(test_gradnorm),
        cmocka_unit_test(test_gradnorm_layer_reached_by_every_task),
        cmocka_unit_test(test_dwa),
        cmocka_unit_test(test_pcgrad),
        cmocka_unit_test(test_early_stopping),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_stop_at_epoch_end),
        cmocka_unit_test(test_nan_label),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_predict),
        cmocka_unit_test(test_predict_without_labels),
        cmocka_unit_test(test_evaluate),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_no_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
