/* test_distill.c — the two papers' additions (PAPERS.md): DML across task
 * towers (CTFM, GKD) and CrossDistil (teachers, quadruplet ranking loss,
 * calibrated distillation, error correction).
 *
 * Gradient checks of whole small models with DML or CrossDistil on every
 * backbone they attach to (also with sample weights and a task space); the
 * quadruplet loss alone (all pairs, sampled pairs, empty groups, flip_b, row
 * weights and masked rows); DML's stop-gradient property read off the
 * gradient of the tower inputs; CrossDistil's behaviour: label-correlation
 * sign, order="auto" resolved by the first fit, warm-up of alpha, inference
 * through the students only, teacher scores, "separate" vs "shared"
 * teachers, calibrators fitted at epoch ends and every calib_every steps
 * (also across a checkpoint).
 *
 * Data: 2 categorical fields (vocab 5) and 3 numeric features from the test's
 * own RNG; two binary labels y0 = [u > 0], y1 = [+-u + noise > 0] (sign from
 * `rel`) so all four CrossDistil groups occur; an optional third binary
 * label without a teacher. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "graph.h"
#include "io.h"
#include "losses/distill.h"
#include "model.h"
#include "models/builders.h"
#include "models/model_impl.h"
#include "support.h"

#define N_CAT 2
#define VOCAB 5
#define N_NUM 3
#define MAXB 32
#define GC_ROWS 12 /* rows of a gradient-check batch */

/* ---- data ------------------------------------------------------------------- */

typedef struct {
    int32_t *cat;
    float *num, *labels;
    int n_tasks;
    tl_split train, valid;
} tdata;

static void make_data(tdata *d, size_t n_train, size_t n_valid, int n_tasks, int rel, uint64_t seed)
{
    size_t n = n_train + n_valid;
    tl_rng r;
    tl_rng_seed(&r, seed);
    d->n_tasks = n_tasks;
    d->cat = malloc(n * N_CAT * sizeof *d->cat);
    d->num = malloc(n * N_NUM * sizeof *d->num);
    d->labels = malloc(n * (size_t)n_tasks * sizeof *d->labels);
    assert_true(d->cat && d->num && d->labels);
    for (size_t i = 0; i < n; i++) {
        for (int f = 0; f < N_CAT; f++) d->cat[i * N_CAT + (size_t)f] = (int32_t)tl_rng_below(&r, VOCAB);
        float u = 0.0f;
        for (int j = 0; j < N_NUM; j++) {
            float x = tl_rng_normal(&r);
            d->num[i * N_NUM + (size_t)j] = x;
            u += x * (j == 0 ? 1.0f : 0.5f);
        }
        u += 0.3f * (float)(d->cat[i * N_CAT] - 2);
        float *y = d->labels + i * (size_t)n_tasks;
        y[0] = u > 0.0f ? 1.0f : 0.0f;
        y[1] = (float)rel * u + 0.8f * tl_rng_normal(&r) > 0.0f ? 1.0f : 0.0f;
        for (int k = 2; k < n_tasks; k++) y[k] = tl_rng_uniform(&r) < 0.4f ? 1.0f : 0.0f;
    }
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
    d->valid.labels = d->labels + n_train * (size_t)n_tasks;
}

static void free_data(tdata *d)
{
    free(d->cat);
    free(d->num);
    free(d->labels);
}

/* ---- models ----------------------------------------------------------------- */

static void make_cfg(tl_model_config *c, tl_backbone_kind kind, int n_tasks)
{
    tl_model_config_defaults(c);
    c->backbone.kind = kind;
    c->backbone.bottom = (tl_mlp_spec){2, {8, 6}, 0.0f};
    c->backbone.expert = (tl_mlp_spec){2, {8, 6}, 0.0f};
    c->backbone.experts = 3;
    c->backbone.levels = 2;
    c->backbone.shared = 1;
    c->backbone.specific = 1;
    c->n_cat = N_CAT;
    c->vocab[0] = c->vocab[1] = VOCAB;
    c->n_num = N_NUM;
    c->emb_dim = 3;
    c->n_tasks = n_tasks;
    for (int k = 0; k < n_tasks; k++) {
        tl_task_spec *t = &c->tasks[k];
        snprintf(t->name, sizeof t->name, "t%d", k);
        t->type = TL_TASK_BINARY;
        t->tower = (tl_mlp_spec){1, {4}, 0.0f};
        t->weight = k == 0 ? 1.0f : 0.7f;
        t->space = -1;
    }
    c->max_batch = MAXB;
    c->seed = 5;
}

static void dml_on(tl_model_config *c, int stop_grad, int gkd_layers)
{
    c->dml = (tl_dml_spec){1, 1, 1, stop_grad, gkd_layers, 0.0f, 0u};
}

/* CrossDistil on pair (t0, t1): in-graph Platt (calib_data train), blend. */
static void distill_on(tl_model_config *c)
{
    tl_distill_spec *ds = &c->distill;
    ds->enabled = 1;
    ds->n_pairs = 1;
    ds->pairs[0][0] = 0;
    ds->pairs[0][1] = 1;
    ds->flip[0] = 0;
    ds->calibrate = TL_DISTILL_PLATT;
    ds->calib_valid = 0;
    ds->correct = TL_CORRECT_BLEND;
    ds->lambda = 0.2f;
    ds->aux = 0.8f;
    ds->kd = 0.5f;
}

static tl_model *new_model(const tl_model_config *c)
{
    tl_model *m = NULL;
    if (tl_model_new(c, &m) != TL_OK)
        fail_msg("tl_model_new(%s): %s", tl_backbone_name(c->backbone.kind), tl_errmsg());
    return m;
}

static void check_ok(tl_status st, const char *what)
{
    if (st != TL_OK) fail_msg("%s: %s: %s", what, tl_status_name(st), tl_errmsg());
}

/* Rows from .. from+n of s into the model's inputs, row weights 1. */
static void fill(tl_model *m, const tl_split *s, int n_tasks, size_t from, int n)
{
    tl_graph *g = tl_model_graph(m);
    memcpy(tl_graph_ids(g, m->ids), s->cat + from * N_CAT, (size_t)n * N_CAT * sizeof(int32_t));
    memcpy(tl_graph_input(g, m->num), s->num + from * N_NUM, (size_t)n * N_NUM * sizeof(float));
    for (int k = 0; k < n_tasks; k++) {
        float *lab = tl_graph_input(g, m->label[k]), *rw = tl_graph_input(g, m->rowweight[k]);
        for (int i = 0; i < n; i++) {
            lab[i] = s->labels[(from + (size_t)i) * (size_t)n_tasks + (size_t)k];
            rw[i] = 1.0f;
        }
    }
    assert_int_equal(tl_graph_set_batch(g, n), TL_OK);
}

/* Move every parameter off its initial value; biases become small positive
 * numbers (they start at 0, where a check would not see a wrong bias
 * gradient, and a negative one can kill a ReLU unit for the whole batch,
 * leaving a layer without gradient). */
static void jitter(tl_model *m, uint64_t seed)
{
    tl_graph *g = tl_model_graph(m);
    float *p = tl_graph_params(g, NULL);
    tl_rng r;
    tl_rng_seed(&r, seed);
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *pi = tl_graph_param(g, i);
        size_t len = (size_t)pi->rows * (size_t)pi->cols, nl = strlen(pi->name);
        int bias = nl > 2 && strcmp(pi->name + nl - 2, ".b") == 0 && strncmp(pi->name, "calibrator.", 11) != 0;
        for (size_t j = 0; j < len; j++) {
            float u = tl_rng_uniform(&r);
            if (bias)
                p[pi->offset + j] = 0.05f + 0.1f * u;
            else
                p[pi->offset + j] += 0.2f * (u - 0.5f);
        }
    }
}

static const tl_param_info *param_named(tl_graph *g, const char *name)
{
    for (int i = 0; i < tl_graph_param_count(g); i++)
        if (strcmp(tl_graph_param(g, i)->name, name) == 0) return tl_graph_param(g, i);
    fail_msg("no parameter named %s", name);
    return NULL;
}

static int has_param_prefix(tl_graph *g, const char *prefix)
{
    for (int i = 0; i < tl_graph_param_count(g); i++)
        if (strncmp(tl_graph_param(g, i)->name, prefix, strlen(prefix)) == 0) return 1;
    return 0;
}

/* 1 when name starts with one of the NULL-terminated prefixes. */
static int matches(const char *name, const char *const *prefixes)
{
    for (int i = 0; prefixes[i]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

static double total_at(tl_model *m)
{
    assert_int_equal(tl_graph_forward(tl_model_graph(m), 0), TL_OK);
    return (double)tl_graph_value(tl_model_graph(m), m->total)[0];
}

/* Gradient check of the model's total loss.
 *
 * A stop-gradient makes the gradient differ from the difference quotient of
 * the loss on purpose (perturbing a parameter below it moves the stopped
 * value, which the quotient sees and the gradient must not), so the central
 * differences are compared only for parameters named by `clean` (NULL: all),
 * the ones no stop-gradient reads from; the PyTorch fixtures
 * (test_fixture_distill.c) check the others against detach(). Every
 * parameter must still receive some gradient (a parameter the loss cannot
 * reach is a wiring error). Same tolerances and kink rule as tlt_gradcheck:
 * eps 1e-2 retried at eps/8, |a - n| <= 1e-3 + 1e-2 max(|a|, |n|), a failing
 * point whose one-sided quotients disagree by more than |a - n| is a kink. */
static void gradcheck_model(tl_model *m, const char *const *clean, const char *what)
{
    tl_graph *g = tl_model_graph(m);
    size_t nf;
    float *w = tl_graph_params(g, &nf);
    tl_graph_zero_grad(g);
    double f0 = total_at(m);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    float *ana = malloc(nf * sizeof *ana);
    assert_non_null(ana);
    memcpy(ana, tl_graph_grads(g, NULL), nf * sizeof *ana);
    int checked = 0, skipped = 0, failed = 0;
    tl_rng pick;
    tl_rng_seed(&pick, 99);
    for (int pi = 0; pi < tl_graph_param_count(g); pi++) {
        const tl_param_info *p = tl_graph_param(g, pi);
        size_t len = (size_t)p->rows * (size_t)p->cols;
        double mx = 0.0;
        for (size_t j = 0; j < len; j++) mx = fmax(mx, fabs((double)ana[p->offset + j]));
        /* a teacher's biases: the ranking loss is shift-invariant, so with
         * every ReLU unit alive their gradient cancels to (nearly) 0 unless
         * BCE or KD reaches the teacher */
        size_t nl = strlen(p->name);
        int shift = strncmp(p->name, "teacher.", 8) == 0 && strcmp(p->name + nl - 2, ".b") == 0;
        if (!(mx > 0.0) && !shift) fail_msg("%s: parameter %s has no gradient", what, p->name);
        if (clean && !matches(p->name, clean)) continue;
        for (int c = 0; c < 24 && c < (int)len; c++) {
            size_t j = len <= 24 ? (size_t)c : (size_t)tl_rng_below(&pick, len);
            float *x = w + p->offset + j, x0 = *x;
            double a = (double)ana[p->offset + j], err = 0.0, tol = 0.0, num = 0.0;
            int pass = 0, kink = 0;
            for (double e = 1e-2; !pass && e >= 1e-2 / 8.0; e /= 8.0) {
                float xp = (float)((double)x0 + e), xm = (float)((double)x0 - e);
                *x = xp;
                double fp = total_at(m);
                *x = xm;
                double fm = total_at(m);
                *x = x0;
                num = (fp - fm) / ((double)xp - (double)xm);
                double l = (f0 - fm) / ((double)x0 - (double)xm), r = (fp - f0) / ((double)xp - (double)x0);
                tol = 1e-3 + 1e-2 * fmax(fabs(a), fabs(num));
                err = fabs(a - num);
                pass = err <= tol;
                kink = fabs(l - r) > err;
            }
            if (pass) {
                checked++;
            } else if (kink) {
                skipped++;
            } else {
                if (failed++ < 10)
                    print_message("%s: %s[%zu]: analytical %.7g, numerical %.7g\n", what, p->name, j, a, num);
            }
        }
    }
    free(ana);
    if (failed || skipped * 4 > checked + skipped)
        print_message("%s: %d failed, %d checked, %d skipped\n", what, failed, checked, skipped);
    assert_int_equal(failed, 0);
    assert_true(checked > 0);
    assert_true(skipped * 4 <= checked + skipped);
}

static const tl_backbone_kind dml_kinds[4] = {TL_BACKBONE_SHARED_BOTTOM, TL_BACKBONE_OMOE,
                                              TL_BACKBONE_MMOE, TL_BACKBONE_PLE};

/* ---- gradient checks of whole models ---------------------------------------- */

/* Variants: CTFM without stop-gradient (every parameter checked), CTFM with
 * it, CTFM + GKD (a 2-layer gate), CTFM without stop-gradient + GKD. */
static void test_gradcheck_dml(void **state)
{
    (void)state;
    static const char *const ctfm_clean[] = {"dml.ctfm.", "tower.", NULL};
    static const char *const gkd_clean[] = {"dml.gkd.", "tower.t0.out.", "tower.t1.out.", NULL};
    tdata d;
    make_data(&d, 64, 0, 2, 1, 1);
    for (int b = 0; b < 4; b++)
        for (int v = 0; v < 4; v++) {
            tl_model_config c;
            make_cfg(&c, dml_kinds[b], 2);
            dml_on(&c, v == 1 || v == 2, v == 2 ? 2 : 1);
            c.dml.gkd = v >= 2;
            tl_model *m = new_model(&c);
            tl_graph *g = tl_model_graph(m);
            assert_true(has_param_prefix(g, "dml.ctfm.q.w"));
            assert_int_equal(has_param_prefix(g, "dml.gkd.t1.v.w"), v >= 2);
            jitter(m, 10 + (uint64_t)b);
            fill(m, &d.train, 2, 0, GC_ROWS);
            char what[96];
            snprintf(what, sizeof what, "dml %s variant %d", tl_backbone_name(dml_kinds[b]), v);
            gradcheck_model(m, v == 0 ? NULL : v == 1 ? ctfm_clean : gkd_clean, what);
            tl_model_free(m);
        }
    free_data(&d);
}

/* Variants: separate teacher with stop-gradient soft labels (students
 * checked); shared teacher, teacher_grad and BCE on the teacher (students and
 * calibrators checked: only the calibration loss reads sg(r)); with DML;
 * teacher_grad with the clip correction (the soft label's gradient must
 * pass the clip where it does not clip). */
static void test_gradcheck_crossdistil(void **state)
{
    (void)state;
    static const char *const students[] = {"tower.", NULL};
    static const char *const shared_clean[] = {"tower.", "calibrator.", NULL};
    static const char *const gkd_clean[] = {"dml.gkd.", "tower.t0.out.", "tower.t1.out.", NULL};
    tdata d;
    make_data(&d, 64, 0, 2, 1, 2);
    for (int b = 0; b < 4; b++)
        for (int v = 0; v < 4; v++) { /* see above */
            tl_model_config c;
            make_cfg(&c, dml_kinds[b], 2);
            distill_on(&c);
            if (v == 1) {
                c.distill.teacher_grad = 1;
                c.distill.teacher_shared = 1;
                c.distill.bce_on_aux = 1;
            }
            if (v == 2) dml_on(&c, 1, 1);
            if (v == 3) {
                c.distill.teacher_grad = 1;
                c.distill.teacher_shared = 1;
                c.distill.correct = TL_CORRECT_CLIP;
            }
            tl_model *m = new_model(&c);
            tl_graph *g = tl_model_graph(m);
            assert_true(has_param_prefix(g, "teacher.t0.") && has_param_prefix(g, "calibrator.t1.a"));
            jitter(m, 20 + (uint64_t)b);
            /* alpha as after warm-up: both halves of the student loss count */
            tl_graph_set_scalar(g, m->distill->kd_alpha, 0.5f);
            tl_graph_set_scalar(g, m->distill->kd_keep, 0.5f);
            fill(m, &d.train, 2, 0, GC_ROWS);
            char what[96];
            snprintf(what, sizeof what, "crossdistil %s variant %d", tl_backbone_name(dml_kinds[b]), v);
            gradcheck_model(m, v == 0 ? students : v == 2 ? gkd_clean : shared_clean, what);
            tl_model_free(m);
        }
    free_data(&d);
}

/* Sample weights (some 0) and a task space: t1 trains on the rows where t2 =
 * 1, so the pair (t0, t1) ranks only those rows, each pair weighted by
 * w_i w_j. The calibrator is fitted outside the graph and alpha is 0, so no
 * stop-gradient reads the teachers: their parameters (ranking loss and BCE on
 * the teacher score, both weighted) are checked with the students'. */
static void test_gradcheck_crossdistil_weighted(void **state)
{
    (void)state;
    static const char *const clean[] = {"tower.", "teacher.", NULL};
    enum { R = 24 };
    tdata d;
    make_data(&d, 64, 0, 3, 1, 3);
    float w[64];
    tl_rng r;
    tl_rng_seed(&r, 4);
    for (int i = 0; i < 64; i++) w[i] = i % 7 == 3 ? 0.0f : 0.2f + 1.8f * tl_rng_uniform(&r);
    d.train.weight = w;
    for (int b = 0; b < 4; b++) {
        tl_model_config c;
        make_cfg(&c, dml_kinds[b], 3);
        distill_on(&c);
        c.tasks[1].space = 2;
        c.distill.calibrate = TL_DISTILL_ISOTONIC;
        c.distill.bce_on_aux = 1;
        tl_model *m = new_model(&c);
        tl_graph *g = tl_model_graph(m);
        jitter(m, 30 + (uint64_t)b);
        tl_model_fill_batch(m, &d.train, NULL, 0, R);
        /* masked: t1's rows outside t2's space weigh 0 (and so does the pair) */
        const float *pw = tl_graph_value(g, tl_graph_find(g, "distill.pair1.weight"));
        assert_int_equal(tl_graph_forward(g, 0), TL_OK);
        int out = 0;
        for (int i = 0; i < R; i++) {
            int in = d.labels[i * 3 + 2] > 0.5f;
            assert_true(tl_graph_input(g, m->rowweight[1])[i] == (in ? w[i] : 0.0f));
            assert_true(pw[i] == (in ? w[i] : 0.0f));
            out += !in || w[i] == 0.0f;
        }
        if (!(out > 4 && out < R - 4)) fail_msg("%d of %d rows out of the ranking loss", out, R);
        char what[96];
        snprintf(what, sizeof what, "crossdistil weighted %s", tl_backbone_name(dml_kinds[b]));
        gradcheck_model(m, clean, what);
        tl_model_free(m);
    }
    free_data(&d);
}

/* ---- the quadruplet loss alone ----------------------------------------------- */

/* A graph of fixed-row nodes: scores s, own labels ya, partner labels yb
 * (parameters, so the caller writes them directly), loss = quadruplet_bpr. */
typedef struct {
    tl_graph *g;
    tl_node s, ya, yb, loss;
} quad;

static void quad_new(quad *q, int rows, int flip, int max_pairs, uint64_t seed)
{
    q->g = tl_graph_new(64, seed);
    assert_non_null(q->g);
    q->s = tl_param(q->g, rows, 1, TL_INIT_UNIFORM, 1.0f, "s");
    q->ya = tl_param(q->g, rows, 1, TL_INIT_ZEROS, 0.0f, "ya");
    q->yb = tl_param(q->g, rows, 1, TL_INIT_ZEROS, 0.0f, "yb");
    q->loss = tl_quadruplet_bpr(q->g, q->s, tl_stop_grad(q->g, q->ya), tl_stop_grad(q->g, q->yb),
                                flip, max_pairs);
    assert_int_equal(tl_graph_status(q->g), TL_OK);
    assert_int_equal(tl_graph_backward(q->g, q->loss), TL_OK);
    assert_int_equal(tl_graph_plan(q->g), TL_OK);
}

static void quad_labels(quad *q, int rows, const float *ya, const float *yb)
{
    memcpy(tlt_param(q->g, q->ya), ya, (size_t)rows * sizeof(float));
    memcpy(tlt_param(q->g, q->yb), yb, (size_t)rows * sizeof(float));
}

/* Run forward + backward once (fresh gradients); the loss value. */
static float quad_run(quad *q, int training)
{
    tl_graph_zero_grad(q->g);
    assert_int_equal(tl_graph_forward(q->g, training), TL_OK);
    assert_int_equal(tl_graph_backward_run(q->g), TL_OK);
    return tl_graph_value(q->g, q->loss)[0];
}

/* The loss from its definition (all pairs), in double. */
static double quad_ref(const float *s, const float *ya, const float *yb, int rows, int flip)
{
    int grp[64];
    for (int i = 0; i < rows; i++) {
        int b = yb[i] > 0.5f;
        if (flip) b = !b;
        grp[i] = (ya[i] > 0.5f ? 0 : 2) + (b ? 0 : 1);
    }
    /* terms over adjacent non-empty groups */
    int present[4] = {0, 0, 0, 0}, order[4], ng = 0;
    for (int i = 0; i < rows; i++) present[grp[i]] = 1;
    for (int q = 0; q < 4; q++)
        if (present[q]) order[ng++] = q;
    double total = 0.0;
    for (int p = 0; p + 1 < ng; p++) {
        double sum = 0.0;
        int cnt = 0;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < rows; j++)
                if (grp[i] == order[p] && grp[j] == order[p + 1]) {
                    sum += log1p(exp(-((double)s[i] - (double)s[j])));
                    cnt++;
                }
        total += sum / cnt;
    }
    return total;
}

/* 16 rows: groups ++ x5, +- x4, -+ x3, -- x4 (20, 12, 12 pairs per term).
 * Not static const: GCC 12.2 at -O2 -march=native folded quad_labels' memcpy
 * of q_yb into vector constants and stored {0,1,0,1,0,1,0,1} for its second
 * half (last element 1, not 0), so three tests ran on wrong labels; arrays the
 * compiler cannot fold are copied from memory. */
#define QROWS 16
float q_ya[QROWS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
float q_yb[QROWS] = {1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 0};

static void check_quad_grad(quad *q, int training, const char *what)
{
    tlt_gradcheck_opts o = tlt_gradcheck_defaults();
    o.training = training;
    tlt_gradcheck_result r;
    int failed = tlt_gradcheck(q->g, q->loss, &o, &r);
    if (failed) print_message("%s: %d of %d failed\n", what, r.failed, r.checked);
    assert_int_equal(failed, 0);
    assert_true(r.checked >= QROWS);
    const float *gs = tlt_param_grad(q->g, q->s);
    double mx = 0.0;
    for (int i = 0; i < QROWS; i++) mx = fmax(mx, fabs((double)gs[i]));
    assert_true(mx > 1e-3);
}

static void test_quad_all_pairs(void **state)
{
    (void)state;
    for (int flip = 0; flip < 2; flip++) {
        quad q;
        /* 20 pairs is the largest term: max_pairs 20 must not sample */
        quad_new(&q, QROWS, flip, 20, 3);
        quad_labels(&q, QROWS, q_ya, q_yb);
        float v = quad_run(&q, 1);
        double want = quad_ref(tlt_param(q.g, q.s), q_ya, q_yb, QROWS, flip);
        assert_true(tlt_close("quadruplet all pairs", &v, &want, 1, 1e-5, 1e-7));
        /* without sampling the loss does not depend on the RNG: a second
         * run in training mode gives the same bits */
        float v2 = quad_run(&q, 1);
        assert_memory_equal(&v, &v2, sizeof v);
        check_quad_grad(&q, 0, "quadruplet all pairs");
        tl_graph_free(q.g);
    }
}

/* Sampled pairs stay fixed within one forward/backward: the checker rewinds
 * the RNG before every run, so the difference quotient sees the same pairs
 * the backward used. */
static void test_quad_sampled_gradient(void **state)
{
    (void)state;
    quad q;
    quad_new(&q, QROWS, 0, 7, 4);
    quad_labels(&q, QROWS, q_ya, q_yb);
    check_quad_grad(&q, 1, "quadruplet sampled");
    /* sampled: the value differs from the all-pairs loss (scores distinct) */
    float v = quad_run(&q, 1);
    double all = quad_ref(tlt_param(q.g, q.s), q_ya, q_yb, QROWS, 0);
    assert_true(fabs((double)v - all) > 1e-6);
    tl_graph_free(q.g);
}

/* With every score 0 each pair (i, j) adds -0.5/max_pairs to dL/ds_i and
 * +0.5/max_pairs to dL/ds_j, so c_i = -2 max_pairs dL/ds_i counts the
 * pairs i led. Group ++ leads only in term 1, group -- trails only in term 3:
 * both counts must sum to exactly max_pairs. */
static void pair_counts(int max_pairs, uint64_t seed, int *lead, int *trail, float *grads)
{
    quad q;
    quad_new(&q, QROWS, 0, max_pairs, seed);
    quad_labels(&q, QROWS, q_ya, q_yb);
    memset(tlt_param(q.g, q.s), 0, QROWS * sizeof(float));
    float v = quad_run(&q, 1);
    assert_true(fabsf(v - 3.0f * logf(2.0f)) < 1e-5f);
    const float *gs = tlt_param_grad(q.g, q.s);
    memcpy(grads, gs, QROWS * sizeof(float));
    double lsum = 0.0, tsum = 0.0;
    for (int i = 0; i < QROWS; i++) {
        int a = q_ya[i] > 0.5f, b = q_yb[i] > 0.5f;
        double c = 2.0 * max_pairs * fabs((double)gs[i]);
        if (a && b) lsum += c;
        if (!a && !b) tsum += c;
        assert_true(fabs(c - nearbyint(c)) < 1e-3); /* whole numbers of pairs */
    }
    *lead = (int)nearbyint(lsum);
    *trail = (int)nearbyint(tsum);
    tl_graph_free(q.g);
}

static void test_quad_sampling_counts(void **state)
{
    (void)state;
    int lead, trail;
    float g1[QROWS], g2[QROWS], g3[QROWS];
    for (int mp = 1; mp <= 11; mp += 5) {
        pair_counts(mp, 9, &lead, &trail, g1);
        assert_int_equal(lead, mp);
        assert_int_equal(trail, mp);
    }
    /* not sampled (max_pairs >= every term's pairs): every pair once, so
     * each ++ row leads |+-| = 4 pairs of 20 */
    pair_counts(20, 9, &lead, &trail, g1);
    assert_int_equal(lead, 20);
    for (int i = 0; i < QROWS; i++)
        if (q_ya[i] > 0.5f && q_yb[i] > 0.5f) assert_true(fabsf(g1[i] + 0.5f * 4.0f / 20.0f) < 1e-6f);
    /* deterministic per seed; another seed draws other pairs */
    pair_counts(6, 77, &lead, &trail, g1);
    pair_counts(6, 77, &lead, &trail, g2);
    pair_counts(6, 78, &lead, &trail, g3);
    assert_memory_equal(g1, g2, sizeof g1);
    assert_true(memcmp(g1, g3, sizeof g1) != 0);
}

/* Sampling in an eval forward (predict, evaluate) uses its own fixed stream:
 * it repeats, and it leaves the graph's RNG (and so later training draws)
 * where it was; a training forward draws from the graph's RNG. */
static void test_quad_eval_keeps_rng(void **state)
{
    (void)state;
    enum { R = 12 };
    const float ya[R] = {1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1}, yb[R] = {1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0};
    quad q;
    quad_new(&q, R, 0, 3, 5); /* 3 pairs per term: sampled */
    quad_labels(&q, R, ya, yb);
    tl_rng before = *tl_graph_rng(q.g);
    float e1 = quad_run(&q, 0), e2 = quad_run(&q, 0);
    assert_true(e1 == e2);
    assert_memory_equal(tl_graph_rng(q.g), &before, sizeof before);
    quad_run(&q, 1);
    assert_true(memcmp(tl_graph_rng(q.g), &before, sizeof before) != 0);
    tl_graph_free(q.g);
}

/* A batch without (+,-) rows: the empty group is chained over, the terms
 * are (++ over -+) and (-+ over --), so the ++ rows are ranked too. A batch
 * of one group: loss 0, no gradient. (Before chaining, both terms next to
 * the empty group were dropped and the ++ rows got no gradient.) */
static void test_quad_empty_groups(void **state)
{
    (void)state;
    enum { R = 7 };
    const float ya[R] = {1, 1, 0, 0, 0, 0, 0}, yb[R] = {1, 1, 1, 1, 0, 0, 0};
    quad q;
    quad_new(&q, R, 0, 1000, 5);
    quad_labels(&q, R, ya, yb);
    float v = quad_run(&q, 0);
    const float *s = tlt_param(q.g, q.s);
    double t1 = 0.0, t2 = 0.0; /* ++ rows 0, 1 over -+ rows 2, 3; -+ over -- rows 4, 5, 6 */
    for (int i = 0; i < 2; i++)
        for (int j = 2; j < 4; j++) t1 += log1p(exp(-((double)s[i] - (double)s[j])));
    for (int i = 2; i < 4; i++)
        for (int j = 4; j < 7; j++) t2 += log1p(exp(-((double)s[i] - (double)s[j])));
    double want = t1 / 4.0 + t2 / 6.0;
    assert_true(tlt_close("quadruplet without (+,-)", &v, &want, 1, 1e-5, 1e-7));
    assert_true(tlt_param_grad(q.g, q.s)[0] < 0.0f && tlt_param_grad(q.g, q.s)[1] < 0.0f);
    assert_true(tlt_param_grad(q.g, q.s)[2] != 0.0f);
    tl_graph_free(q.g);

    const float one_a[R] = {0, 0, 0, 0, 0, 0, 0}, one_b[R] = {0, 0, 0, 0, 0, 0, 0};
    quad_new(&q, R, 0, 1000, 5);
    quad_labels(&q, R, one_a, one_b);
    v = quad_run(&q, 0);
    assert_true(v == 0.0f);
    for (int i = 0; i < R; i++) assert_true(tlt_param_grad(q.g, q.s)[i] == 0.0f);
    tl_graph_free(q.g);
}

/* Nested tasks (b => a, as like => rated): for a's teacher the group (-,+)
 * is always empty, and the terms are (++ over +-) and (+- over --), so a's
 * positives without b (rated, not liked) rank above a's negatives; for b's
 * teacher (+,-) is empty and the terms are (++ over -+), (-+ over --). Both
 * against the definition and gradient-checked. (Before the fix a's teacher
 * kept only (++, +-): its (-,-) rows got no gradient; b's teacher kept only
 * (-+, --): its (+,+) rows got none.) */
static void test_quad_nested(void **state)
{
    (void)state;
    enum { R = 12 };
    /* a = rated, b = liked: b => a */
    const float ya[R] = {1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, yb[R] = {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int side = 0; side < 2; side++) {
        const float *own = side ? yb : ya, *partner = side ? ya : yb;
        quad q;
        quad_new(&q, R, 0, 1000, 8);
        quad_labels(&q, R, own, partner);
        float v = quad_run(&q, 0);
        const float *s = tlt_param(q.g, q.s);
        double want = quad_ref(s, own, partner, R, 0);
        /* the two chained terms by hand: groups as row ranges */
        int g0[2] = {0, 3}, g1[2] = {3, 7}, g2[2] = {7, 12}; /* ++ | a+ b- (or a- b+) | -- */
        double t1 = 0.0, t2 = 0.0;
        for (int i = g0[0]; i < g0[1]; i++)
            for (int j = g1[0]; j < g1[1]; j++) t1 += log1p(exp(-((double)s[i] - (double)s[j])));
        for (int i = g1[0]; i < g1[1]; i++)
            for (int j = g2[0]; j < g2[1]; j++) t2 += log1p(exp(-((double)s[i] - (double)s[j])));
        double hand = t1 / 12.0 + t2 / 20.0;
        assert_true(fabs(hand - want) < 1e-9);
        assert_true(tlt_close(side ? "nested, b's teacher" : "nested, a's teacher", &v, &want, 1, 1e-5, 1e-7));
        /* every row is in a term: (--) rows are pushed down, (++) rows up */
        const float *gs = tlt_param_grad(q.g, q.s);
        for (int i = 0; i < R; i++) {
            if (i < 3) assert_true(gs[i] < 0.0f);
            if (i >= 7) assert_true(gs[i] > 0.0f);
        }
        tlt_gradcheck_opts o = tlt_gradcheck_defaults();
        tlt_gradcheck_result r;
        assert_int_equal(tlt_gradcheck(q.g, q.loss, &o, &r), 0);
        assert_true(r.checked >= R);
        tl_graph_free(q.g);
    }
}

/* flip_b reverses the partner's order: flipped labels yb give the loss and
 * gradient of unflipped labels 1 - yb, and differ from unflipped yb. */
static void test_quad_flip(void **state)
{
    (void)state;
    float nb[QROWS];
    for (int i = 0; i < QROWS; i++) nb[i] = 1.0f - q_yb[i];
    quad a, b, c;
    quad_new(&a, QROWS, 1, 1000, 6);
    quad_new(&b, QROWS, 0, 1000, 6);
    quad_new(&c, QROWS, 0, 1000, 6);
    quad_labels(&a, QROWS, q_ya, q_yb);
    quad_labels(&b, QROWS, q_ya, nb);
    quad_labels(&c, QROWS, q_ya, q_yb);
    float va = quad_run(&a, 0), vb = quad_run(&b, 0), vc = quad_run(&c, 0);
    assert_memory_equal(&va, &vb, sizeof va);
    assert_memory_equal(tlt_param_grad(a.g, a.s), tlt_param_grad(b.g, b.s), QROWS * sizeof(float));
    assert_true(fabsf(va - vc) > 1e-4f);
    /* under flip a (+,-) row ranks above a (+,+) row */
    float *s = tlt_param(a.g, a.s);
    for (int i = 0; i < QROWS; i++) s[i] = q_ya[i] * 2.0f + (1.0f - q_yb[i]);
    float good = quad_run(&a, 0);
    for (int i = 0; i < QROWS; i++) s[i] = q_ya[i] * 2.0f + q_yb[i];
    float bad = quad_run(&a, 0);
    assert_true(good < bad);
    tl_graph_free(a.g);
    tl_graph_free(b.g);
    tl_graph_free(c.g);
}

/* The weighted loss: a batched graph whose scores are s = onehot W (row i of
 * the identity picks W_i), so that the checker perturbs the scores through
 * the parameter W alone, while labels and row weights are inputs without
 * gradient. */
typedef struct {
    tl_graph *g;
    tl_node W, onehot, ya, yb, w, loss;
} wquad;

static void wquad_new(wquad *q, int weighted, int flip, int max_pairs, uint64_t seed)
{
    q->g = tl_graph_new(QROWS, seed);
    assert_non_null(q->g);
    q->W = tl_param(q->g, QROWS, 1, TL_INIT_UNIFORM, 1.0f, "W");
    q->onehot = tl_input(q->g, QROWS, "onehot");
    q->ya = tl_input(q->g, 1, "ya");
    q->yb = tl_input(q->g, 1, "yb");
    q->w = weighted ? tl_input(q->g, 1, "w") : TL_NONE;
    tl_node sc = tl_matmul(q->g, q->onehot, q->W);
    q->loss = weighted ? tl_quadruplet_bpr_weighted(q->g, sc, q->ya, q->yb, q->w, flip, max_pairs)
                       : tl_quadruplet_bpr(q->g, sc, q->ya, q->yb, flip, max_pairs);
    assert_int_equal(tl_graph_status(q->g), TL_OK);
    assert_int_equal(tl_graph_backward(q->g, q->loss), TL_OK);
    assert_int_equal(tl_graph_plan(q->g), TL_OK);
    float *oh = tl_graph_input(q->g, q->onehot);
    memset(oh, 0, QROWS * QROWS * sizeof(float));
    for (int i = 0; i < QROWS; i++) oh[i * QROWS + i] = 1.0f;
    assert_int_equal(tl_graph_set_batch(q->g, QROWS), TL_OK);
}

static void wquad_inputs(wquad *q, const float *ya, const float *yb, const float *w)
{
    memcpy(tl_graph_input(q->g, q->ya), ya, QROWS * sizeof(float));
    memcpy(tl_graph_input(q->g, q->yb), yb, QROWS * sizeof(float));
    if (q->w != TL_NONE) memcpy(tl_graph_input(q->g, q->w), w, QROWS * sizeof(float));
}

static float wquad_run(wquad *q, int training)
{
    tl_graph_zero_grad(q->g);
    assert_int_equal(tl_graph_forward(q->g, training), TL_OK);
    assert_int_equal(tl_graph_backward_run(q->g), TL_OK);
    return tl_graph_value(q->g, q->loss)[0];
}

/* The weighted loss from its definition, in double: rows of weight 0 in no
 * group, sum w_i w_j l_ij / sum w_i w_j per term. */
static double quad_ref_weighted(const float *s, const float *ya, const float *yb, const float *w,
                                int rows, int flip)
{
    int grp[64];
    for (int i = 0; i < rows; i++) {
        int b = yb[i] > 0.5f;
        if (flip) b = !b;
        grp[i] = w[i] > 0.0f ? (ya[i] > 0.5f ? 0 : 2) + (b ? 0 : 1) : -1;
    }
    double total = 0.0;
    for (int p = 0; p < 3; p++) {
        double sum = 0.0, norm = 0.0;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < rows; j++)
                if (grp[i] == p && grp[j] == p + 1) {
                    double ww = (double)w[i] * (double)w[j];
                    sum += ww * log1p(exp(-((double)s[i] - (double)s[j])));
                    norm += ww;
                }
        if (norm > 0.0) total += sum / norm;
    }
    return total;
}

/* Rows 1 (+-), 6 (++) and 10 (--) weigh 0: every group keeps members. */
static const float q_w[QROWS] = {1.5f, 0, 0.7f, 1, 2, 0.3f, 0, 1.2f, 0.9f, 1.1f, 0, 0.5f, 1.7f, 0.8f, 1, 0.6f};

/* Unit weights give the unweighted loss bit for bit (all pairs and sampled);
 * weights and masks: the value from the definition, the central-difference
 * check (all pairs, and sampled with the RNG rewound), no gradient for a
 * masked row, a masked row's labels and score do not matter, and a second
 * backward doubles the gradient. */
static void test_quad_weighted(void **state)
{
    (void)state;
    float ones[QROWS];
    for (int i = 0; i < QROWS; i++) ones[i] = 1.0f;
    for (int sampled = 0; sampled < 2; sampled++)
        for (int flip = 0; flip < 2; flip++) {
            wquad a, b;
            wquad_new(&a, 1, flip, sampled ? 7 : 20, 8);
            wquad_new(&b, 0, flip, sampled ? 7 : 20, 8);
            wquad_inputs(&a, q_ya, q_yb, ones);
            wquad_inputs(&b, q_ya, q_yb, NULL);
            memcpy(tlt_param(b.g, b.W), tlt_param(a.g, a.W), QROWS * sizeof(float));
            float va = wquad_run(&a, 1), vb = wquad_run(&b, 1);
            assert_memory_equal(&va, &vb, sizeof va);
            assert_memory_equal(tlt_param_grad(a.g, a.W), tlt_param_grad(b.g, b.W), QROWS * sizeof(float));
            tl_graph_free(a.g);
            tl_graph_free(b.g);
        }
    for (int flip = 0; flip < 2; flip++) {
        wquad q;
        wquad_new(&q, 1, flip, 20, 9);
        wquad_inputs(&q, q_ya, q_yb, q_w);
        float v = wquad_run(&q, 1);
        const float *s = tlt_param(q.g, q.W);
        double want = quad_ref_weighted(s, q_ya, q_yb, q_w, QROWS, flip);
        assert_true(tlt_close("weighted quadruplet", &v, &want, 1, 1e-5, 1e-7));
        double plain = quad_ref(s, q_ya, q_yb, QROWS, flip);
        assert_true(fabs(want - plain) > 1e-3); /* the weights matter */
        float g1[QROWS];
        memcpy(g1, tlt_param_grad(q.g, q.W), sizeof g1);
        for (int i = 0; i < QROWS; i++) assert_true((g1[i] == 0.0f) == (q_w[i] == 0.0f));
        /* backward twice: twice the gradient */
        tl_graph_zero_grad(q.g);
        assert_int_equal(tl_graph_forward(q.g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(q.g), TL_OK);
        assert_int_equal(tl_graph_backward_run(q.g), TL_OK);
        for (int i = 0; i < QROWS; i++) assert_true(tlt_param_grad(q.g, q.W)[i] == 2.0f * g1[i]);
        /* a masked row's labels and score change nothing */
        float ya2[QROWS], yb2[QROWS];
        memcpy(ya2, q_ya, sizeof ya2);
        memcpy(yb2, q_yb, sizeof yb2);
        ya2[1] = 0.0f;
        yb2[6] = 0.0f;
        tlt_param(q.g, q.W)[10] += 3.0f;
        wquad_inputs(&q, ya2, yb2, q_w);
        float v2 = wquad_run(&q, 1);
        assert_memory_equal(&v, &v2, sizeof v);
        tlt_param(q.g, q.W)[10] -= 3.0f;
        wquad_inputs(&q, q_ya, q_yb, q_w);
        tlt_gradcheck_opts o = tlt_gradcheck_defaults();
        tlt_gradcheck_result r;
        int failed = tlt_gradcheck(q.g, q.loss, &o, &r);
        if (failed) print_message("weighted quadruplet flip %d: %d of %d failed\n", flip, r.failed, r.checked);
        assert_int_equal(failed, 0);
        assert_true(r.checked >= QROWS);
        tl_graph_free(q.g);
    }
    /* sampled pairs (max_pairs 7 < every term's pairs), weighted: the pairs a
     * forward drew are the ones the backward uses */
    wquad q;
    wquad_new(&q, 1, 0, 7, 10);
    wquad_inputs(&q, q_ya, q_yb, q_w);
    tlt_gradcheck_opts o = tlt_gradcheck_defaults();
    o.training = 1;
    tlt_gradcheck_result r;
    int failed = tlt_gradcheck(q.g, q.loss, &o, &r);
    if (failed) print_message("weighted sampled quadruplet: %d of %d failed\n", r.failed, r.checked);
    assert_int_equal(failed, 0);
    for (int i = 0; i < QROWS; i++)
        if (q_w[i] == 0.0f) assert_true(tlt_param_grad(q.g, q.W)[i] == 0.0f);
    tl_graph_free(q.g);
}

/* ---- DML: the stop-gradient on CTFM's keys and values ------------------------- */

/* gkd_tasks: a bit per task, 0 = every task. Every bit set builds the same
 * graph as 0 (same parameters, same bits). Task t0 alone: t1 has no GKD
 * parameters; every other parameter starts as in the full model (t1's GKD
 * parameters are created last), t0's prediction is the full model's (its
 * global experience still reads both towers) and t1's is the full model's
 * with t1's GKD output weights zeroed (no correction). */
static void test_dml_gkd_tasks(void **state)
{
    (void)state;
    enum { N = 20 };
    tdata d;
    make_data(&d, N, 0, 2, 1, 23);
    tl_model *mm[3];
    static const unsigned masks[3] = {0u, 3u, 1u};
    for (int i = 0; i < 3; i++) {
        tl_model_config c;
        make_cfg(&c, TL_BACKBONE_MMOE, 2);
        dml_on(&c, 1, 1);
        c.dml.gkd_tasks = masks[i];
        mm[i] = new_model(&c);
    }
    tl_graph *g0 = tl_model_graph(mm[0]), *g1 = tl_model_graph(mm[1]), *g2 = tl_model_graph(mm[2]);
    size_t n0, n1, n2;
    const float *p0 = tl_graph_params(g0, &n0), *p1 = tl_graph_params(g1, &n1);
    float *p2 = tl_graph_params(g2, &n2);
    assert_true(n0 == n1 && tl_graph_param_count(g0) == tl_graph_param_count(g1));
    assert_memory_equal(p0, p1, n0 * sizeof(float));
    assert_true(has_param_prefix(g0, "dml.gkd.t1.") && has_param_prefix(g2, "dml.gkd.t0."));
    assert_false(has_param_prefix(g2, "dml.gkd.t1."));
    for (int i = 0; i < tl_graph_param_count(g2); i++) {
        const tl_param_info *a = tl_graph_param(g2, i), *b = param_named(g0, a->name);
        assert_memory_equal(p2 + a->offset, p0 + b->offset, (size_t)a->rows * (size_t)a->cols * sizeof(float));
    }
    float pr[3][N * 2];
    for (int i = 0; i < 3; i++) check_ok(tl_model_predict(mm[i], &d.train, pr[i]), "predict");
    assert_memory_equal(pr[0], pr[1], sizeof pr[0]);
    int moved = 0;
    for (int r = 0; r < N; r++) {
        assert_true(pr[2][r * 2] == pr[0][r * 2]);
        moved += pr[2][r * 2 + 1] != pr[0][r * 2 + 1];
    }
    assert_true(moved > 0);
    const tl_param_info *v = param_named(g0, "dml.gkd.t1.v.w");
    memset((float *)p0 + v->offset, 0, (size_t)v->rows * (size_t)v->cols * sizeof(float));
    check_ok(tl_model_predict(mm[0], &d.train, pr[0]), "predict");
    for (int r = 0; r < N; r++)
        if (fabsf(pr[2][r * 2 + 1] - pr[0][r * 2 + 1]) > 1e-6f)
            fail_msg("row %d: t1 without GKD %.9g, full model with v = 0 %.9g", r, (double)pr[2][r * 2 + 1],
                     (double)pr[0][r * 2 + 1]);
    /* a bit beyond the tasks is refused */
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, 2);
    dml_on(&c, 1, 1);
    c.dml.gkd_tasks = 4u;
    tl_model *bad = NULL;
    assert_int_equal(tl_model_new(&c, &bad), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "gkd_tasks"));
    for (int i = 0; i < 3; i++) tl_model_free(mm[i]);
    free_data(&d);
}

/* Only task k's loss on: the gradient at task j's tower input (slice j of the
 * concatenated tower inputs before CTFM) can come only through CTFM — its
 * own tower and its query feed task j's output alone. With the stop-gradient
 * it is exactly 0; without it, K_j and V_j feed task k's attention. */
static double slice_grad_norm(int stop_grad, int k, int j)
{
    tdata d;
    make_data(&d, 40, 0, 2, 1, 8);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, 2);
    dml_on(&c, stop_grad, 1);
    c.dml.gkd = 0;
    tl_model *m = new_model(&c);
    tl_graph *g = tl_model_graph(m);
    assert_true(tl_dml_tower_inputs(m->dml) != TL_NONE);
    check_ok(tl_model_set_weight(m, j, 0.0f), "set_weight");
    check_ok(tl_model_set_weight(m, k, 1.0f), "set_weight");
    fill(m, &d.train, 2, 0, 24);
    tl_graph_zero_grad(g);
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    const float *gr = tl_graph_grad(g, tl_dml_tower_inputs(m->dml));
    assert_non_null(gr);
    int cols = tl_node_cols(g, tl_dml_tower_inputs(m->dml)), dd = cols / 2;
    double sj = 0.0, sk = 0.0;
    for (int i = 0; i < 24; i++)
        for (int t = 0; t < dd; t++) {
            sj += fabs((double)gr[i * cols + j * dd + t]);
            sk += fabs((double)gr[i * cols + k * dd + t]);
        }
    assert_true(sk > 0.0); /* task k's own input does get gradient */
    tl_model_free(m);
    free_data(&d);
    return sj;
}

static void test_dml_stop_grad(void **state)
{
    (void)state;
    for (int k = 0; k < 2; k++) {
        assert_true(slice_grad_norm(1, k, 1 - k) == 0.0);
        assert_true(slice_grad_norm(0, k, 1 - k) > 1e-6);
    }
}

/* ---- CrossDistil behaviour --------------------------------------------------- */

/* order="auto" takes the sign of the label correlation on train
 * (tl_distill_auto_order: negative when r < 0): negative for census-like
 * labels, positive otherwise; NaN for a constant label, which counts as
 * positive. */
static void test_label_correlation(void **state)
{
    (void)state;
    tdata neg, pos;
    make_data(&neg, 400, 0, 3, -1, 11);
    make_data(&pos, 400, 0, 3, 1, 11);
    double rn = tl_split_label_correlation(&neg.train, 3, 0, 1);
    double rp = tl_split_label_correlation(&pos.train, 3, 0, 1);
    assert_true(rn < -0.3 && rp > 0.3);
    assert_true(fabs(tl_split_label_correlation(&neg.train, 3, 1, 0) - rn) < 1e-12);
    /* against a direct Pearson computation */
    double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0, n = 400.0;
    for (size_t i = 0; i < 400; i++) {
        double a = neg.labels[i * 3], b = neg.labels[i * 3 + 1];
        sa += a, sb += b, sab += a * b, saa += a * a, sbb += b * b;
    }
    double want = (n * sab - sa * sb) / sqrt((n * saa - sa * sa) * (n * sbb - sb * sb));
    assert_true(fabs(rn - want) < 1e-9);
    assert_int_equal(tl_distill_auto_order(&neg.train, 3, 0, 1), 2);
    assert_int_equal(tl_distill_auto_order(&pos.train, 3, 0, 1), 1);
    for (size_t i = 0; i < 400; i++) neg.labels[i * 3 + 2] = 1.0f;
    assert_true(isnan(tl_split_label_correlation(&neg.train, 3, 0, 2)));
    assert_int_equal(tl_distill_auto_order(&neg.train, 3, 0, 2), 1);
    free_data(&neg);
    free_data(&pos);
}

static void fit_steps(tl_model *m, const tl_split *tr, const tl_split *va, int64_t steps, int epochs)
{
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = epochs;
    o.batch = MAXB;
    o.max_steps = steps;
    o.optim.lr = 1e-2f;
    o.restore_best = 0;
    check_ok(tl_model_fit(m, tr, va, &o), "fit");
}

static uint64_t param_hash(tl_model *m)
{
    size_t nf;
    const float *p = tl_graph_params(tl_model_graph(m), &nf);
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < nf; i++) {
        uint32_t u;
        memcpy(&u, &p[i], 4);
        h = (h ^ u) * 1099511628211ULL;
    }
    return h;
}

static tl_model *auto_model(int order)
{
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, 2);
    distill_on(&c);
    c.distill.flip[0] = -1; /* as tl_model_config_defaults leaves it */
    c.distill.order = order;
    return new_model(&c);
}

/* order="auto" (0) is resolved by the first fit from its train split: negative
 * for negatively related labels, positive otherwise; it stays fixed through
 * later fits on other data and through a checkpoint, and training uses it
 * (an auto model that resolved negative trains exactly like order=2). An
 * explicit order is known from the start. */
static void test_order_auto(void **state)
{
    (void)state;
    tl_model_config dflt;
    tl_model_config_defaults(&dflt);
    assert_int_equal(dflt.distill.order, 0);
    for (int p = 0; p < TL_MAX_TASKS; p++) assert_int_equal(dflt.distill.flip[p], -1);
    tdata neg, pos;
    make_data(&neg, 128, 0, 2, -1, 21);
    make_data(&pos, 128, 0, 2, 1, 21);
    assert_true(tl_split_label_correlation(&neg.train, 2, 0, 1) < -0.3);
    for (int rel = -1; rel <= 1; rel += 2) {
        tl_model *m = auto_model(0);
        assert_int_equal(tl_model_distill_order(m, 0), 0);
        assert_int_equal(tl_model_distill_order(m, 1), -1);
        fit_steps(m, rel < 0 ? &neg.train : &pos.train, NULL, 1, 1);
        assert_int_equal(tl_model_distill_order(m, 0), rel < 0 ? 2 : 1);
        assert_int_equal(tl_model_config_get(m)->distill.order, 0); /* still "auto" */
        fit_steps(m, rel < 0 ? &pos.train : &neg.train, NULL, 2, 1); /* no second resolution */
        assert_int_equal(tl_model_distill_order(m, 0), rel < 0 ? 2 : 1);
        tl_model_free(m);
    }
    for (int order = 1; order <= 2; order++) {
        tl_model *m = auto_model(order);
        assert_int_equal(tl_model_distill_order(m, 0), order);
        fit_steps(m, order == 1 ? &neg.train : &pos.train, NULL, 1, 1);
        assert_int_equal(tl_model_distill_order(m, 0), order);
        tl_model_free(m);
    }
    /* trains like the explicit order it resolved to, unlike the other one */
    tl_model *a = auto_model(0), *n2 = auto_model(2), *p1 = auto_model(1);
    fit_steps(a, &neg.train, NULL, 3, 1);
    fit_steps(n2, &neg.train, NULL, 3, 1);
    fit_steps(p1, &neg.train, NULL, 3, 1);
    assert_true(param_hash(a) == param_hash(n2));
    assert_true(param_hash(a) != param_hash(p1));
    /* a checkpoint keeps the resolved order; unresolved stays unresolved */
    char *dir = tlt_tempdir_new();
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/auto.tlm", dir);
    check_ok(tl_model_save(a, path), "save");
    tl_model *b = NULL;
    check_ok(tl_model_load(path, &b), "load");
    assert_int_equal(tl_model_distill_order(b, 0), 2);
    fit_steps(b, &pos.train, NULL, 1, 1);
    assert_int_equal(tl_model_distill_order(b, 0), 2);
    tl_model_free(b);
    tl_model *u = auto_model(0);
    check_ok(tl_model_save(u, path), "save");
    check_ok(tl_model_load(path, &b), "load");
    assert_int_equal(tl_model_distill_order(b, 0), 0);
    fit_steps(b, &pos.train, NULL, 1, 1);
    assert_int_equal(tl_model_distill_order(b, 0), 1);
    tl_model_free(b);
    tl_model_free(u);
    tlt_tempdir_free(dir);
    tl_model_free(a);
    tl_model_free(n2);
    tl_model_free(p1);
    /* bad values are refused */
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, 2);
    distill_on(&c);
    c.distill.flip[0] = 2;
    tl_model *bad = NULL;
    assert_int_equal(tl_model_new(&c, &bad), TL_ERR_ARG);
    c.distill.flip[0] = -1;
    c.distill.order = 3;
    assert_int_equal(tl_model_new(&c, &bad), TL_ERR_ARG);
    free_data(&neg);
    free_data(&pos);
}

static void test_warmup(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 320, 0, 2, 1, 12);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, 2);
    distill_on(&c);
    c.distill.warmup = 3;
    c.distill.kd = 0.4f;
    tl_model *m = new_model(&c);
    tl_graph *g = tl_model_graph(m);
    tl_node alpha = tl_graph_find(g, "distill.alpha"), keep = tl_graph_find(g, "distill.one_minus_alpha");
    assert_true(alpha != TL_NONE && keep != TL_NONE);
    for (int s = 1; s <= 3; s++) { /* steps 1..warmup: alpha 0 */
        fit_steps(m, &d.train, NULL, 1, 1);
        assert_int_equal(tl_model_steps(m), s);
        assert_true(tl_graph_get_scalar(g, alpha) == 0.0f);
        assert_true(tl_graph_get_scalar(g, keep) == 1.0f);
        /* the student objective is then the task loss itself */
        assert_true(tl_graph_value(g, m->objective[0])[0] == tl_graph_value(g, m->loss[0])[0]);
    }
    fit_steps(m, &d.train, NULL, 1, 1);
    assert_true(tl_graph_get_scalar(g, alpha) == 0.4f);
    assert_true(tl_graph_get_scalar(g, keep) == 1.0f - 0.4f);
    assert_true(tl_graph_value(g, m->objective[0])[0] != tl_graph_value(g, m->loss[0])[0]);
    tl_model_free(m);
    free_data(&d);
}

/* Naive KD honours the pair's order: each student distils the other task's
 * prediction p, or 1 - p when the pair is negative (flip 1). The students'
 * objectives are checked against (1 - kd) BCE(y, y^) + kd BCE(t, y^) computed
 * here from the predictions. (Before the fix a negative pair distilled p.) */
static void test_naive_kd_sign(void **state)
{
    (void)state;
    enum { N = 24 };
    tdata d;
    make_data(&d, N, 0, 2, -1, 21);
    for (int flip = 0; flip < 2; flip++) {
        tl_model_config c;
        make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, 2);
        c.distill.enabled = 1;
        c.distill.naive = 1;
        c.distill.n_pairs = 1;
        c.distill.pairs[0][0] = 0;
        c.distill.pairs[0][1] = 1;
        c.distill.flip[0] = flip;
        c.distill.kd = 0.6f;
        tl_model *m = new_model(&c);
        tl_graph *g = tl_model_graph(m);
        jitter(m, 31);
        fill(m, &d.train, 2, 0, N);
        tl_graph_set_scalar(g, m->distill->kd_alpha, 0.6f);
        tl_graph_set_scalar(g, m->distill->kd_keep, 0.4f);
        assert_int_equal(tl_graph_forward(g, 0), TL_OK);
        const float *p[2] = {tl_graph_value(g, m->pred[0]), tl_graph_value(g, m->pred[1])};
        for (int k = 0; k < 2; k++) {
            double kd = 0.0;
            for (int i = 0; i < N; i++) {
                double q = p[k][i], t = flip ? 1.0 - (double)p[1 - k][i] : (double)p[1 - k][i];
                kd -= t * log(q) + (1.0 - t) * log(1.0 - q);
            }
            kd /= N;
            double want = 0.4 * (double)tl_graph_value(g, m->loss[k])[0] + 0.6 * kd;
            float got = tl_graph_value(g, m->objective[k])[0];
            char what[64];
            snprintf(what, sizeof what, "naive KD objective, task %d, flip %d", k, flip);
            assert_true(tlt_close(what, &got, &want, 1, 1e-5, 1e-7));
        }
        tl_model_free(m);
    }
    free_data(&d);
}

/* Predictions come from the student towers only: perturbing every teacher
 * and calibrator parameter leaves them bit-identical (and moves the teacher
 * scores); perturbing a student tower moves them. Teacher scores are NaN for
 * a task without a teacher; calibrated scores are the in-graph Platt map. */
static void test_inference_students(void **state)
{
    (void)state;
    enum { N = 50 };
    tdata d;
    make_data(&d, N, 0, 3, 1, 13);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, 3);
    distill_on(&c);
    c.distill.kd = 1.0f;
    tl_model *m = new_model(&c);
    tl_graph *g = tl_model_graph(m);
    fit_steps(m, &d.train, NULL, 2, 1);
    float p0[N * 3], p1[N * 3], t0[N * 3], t1[N * 3], tc[N * 3];
    check_ok(tl_model_predict(m, &d.train, p0), "predict");
    check_ok(tl_model_predict_teachers(m, &d.train, 0, t0), "teachers");
    check_ok(tl_model_predict_teachers(m, &d.train, 1, tc), "teachers calibrated");
    float *params = tl_graph_params(g, NULL);
    const tl_param_info *ca = param_named(g, "calibrator.t0.a"), *cb = param_named(g, "calibrator.t0.b");
    double a = (double)params[ca->offset], b = (double)params[cb->offset];
    double sp = log1p(exp(a));
    for (int i = 0; i < N; i++) {
        assert_true(isnan(t0[i * 3 + 2]) && isnan(tc[i * 3 + 2]));
        assert_true(isfinite(t0[i * 3]) && isfinite(t0[i * 3 + 1]));
        double want = 1.0 / (1.0 + exp(-(sp * (double)t0[i * 3] + b)));
        assert_true(fabs((double)tc[i * 3] - want) < 1e-6);
    }
    /* predict equals the student tower's sigmoid */
    fill(m, &d.train, 3, 0, N < MAXB ? N : MAXB);
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    tl_node out0 = tl_graph_find(g, "tower.t0.out.w");
    assert_true(out0 != TL_NONE);
    int moved = 0;
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        if (strncmp(p->name, "teacher.", 8) != 0 && strncmp(p->name, "calibrator.", 11) != 0) continue;
        for (size_t j = 0; j < (size_t)p->rows * (size_t)p->cols; j++) params[p->offset + j] += 0.3f;
        moved++;
    }
    assert_true(moved >= 2 * 4 + 4);
    check_ok(tl_model_predict(m, &d.train, p1), "predict");
    check_ok(tl_model_predict_teachers(m, &d.train, 0, t1), "teachers");
    assert_memory_equal(p0, p1, sizeof p0);
    int diff = 0;
    for (int i = 0; i < N; i++) diff += t0[i * 3] != t1[i * 3];
    assert_true(diff > 0);
    params[param_named(g, "tower.t0.out.b")->offset] += 0.3f;
    check_ok(tl_model_predict(m, &d.train, p1), "predict");
    assert_true(p1[0] != p0[0] && p1[1] == p0[1]);
    tl_model_free(m);
    free_data(&d);
}

/* Task weights 0, kd 0, aux 1: only the auxiliary ranking (and calibration)
 * losses remain. A "separate" teacher sends no gradient into the backbone or
 * the embeddings; a "shared" one does. */
static void aux_only_grads(int shared, double *backbone, double *teacher)
{
    tdata d;
    make_data(&d, 40, 0, 2, 1, 14);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_PLE, 2);
    distill_on(&c);
    c.distill.kd = 0.0f;
    c.distill.aux = 1.0f;
    c.distill.teacher_shared = shared;
    tl_model *m = new_model(&c);
    tl_graph *g = tl_model_graph(m);
    for (int k = 0; k < 2; k++) check_ok(tl_model_set_weight(m, k, 0.0f), "set_weight");
    fill(m, &d.train, 2, 0, 32);
    tl_graph_zero_grad(g);
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    assert_true(tl_graph_value(g, m->extra)[0] > 0.0f);
    const float *gr = tl_graph_grads(g, NULL);
    *backbone = *teacher = 0.0;
    assert_true(m->n_shared_params > 0);
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        double s = 0.0;
        for (size_t j = 0; j < (size_t)p->rows * (size_t)p->cols; j++) s += fabs((double)gr[p->offset + j]);
        if (i < m->n_shared_params) *backbone += s;
        if (strncmp(p->name, "teacher.", 8) == 0) *teacher += s;
        if (strncmp(p->name, "tower.", 6) == 0) assert_true(s == 0.0); /* students: weight 0 */
    }
    tl_model_free(m);
    free_data(&d);
}

static void test_teacher_separate_shared(void **state)
{
    (void)state;
    double bb, te;
    aux_only_grads(0, &bb, &te);
    assert_true(bb == 0.0);
    assert_true(te > 1e-6);
    aux_only_grads(1, &bb, &te);
    assert_true(bb > 1e-6);
    assert_true(te > 1e-6);
}

/* Calibrators fitted outside the graph (isotonic or Platt on the validation
 * split) exist after the first epoch end, only for tasks with a teacher, and
 * are monotone: calibrated teacher scores sorted by raw score never
 * decrease. The soft label the students distil is the fitted map followed
 * by the error correction (blend with isotonic, clip with Platt here). */
static int cmp_pair(const void *x, const void *y)
{
    const float *a = x, *b = y;
    return (a[0] > b[0]) - (a[0] < b[0]);
}

/* A task with a space (task 1 on the rows where task 0 is positive) gets a
 * calibrator fitted on the rows of its space only: the same parameters as a
 * Platt fit of its teacher's predictions on those rows, and not those of a
 * fit on every row. */
static void test_fitted_calibrator_space(void **state)
{
    (void)state;
    enum { NT = 192, NV = 96 };
    tdata d;
    make_data(&d, NT, NV, 3, 1, 15);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, 3);
    distill_on(&c);
    c.distill.calibrate = TL_DISTILL_PLATT;
    c.distill.calib_valid = 1;
    c.tasks[1].space = 0;
    tl_model *m = new_model(&c);
    fit_steps(m, &d.train, &d.valid, 0, 1);
    assert_non_null(m->distill->task[1].cal);
    float raw[NV * 3], p[NV], y[NV];
    uint8_t mask[NV];
    int in = 0;
    check_ok(tl_model_predict_teachers(m, &d.valid, 0, raw), "teachers");
    for (int i = 0; i < NV; i++) {
        p[i] = 1.0f / (1.0f + expf(-raw[i * 3 + 1]));
        y[i] = d.valid.labels[i * 3 + 1];
        mask[i] = d.valid.labels[i * 3] > 0.5f;
        in += mask[i];
    }
    assert_true(in > 10 && in < NV - 10);
    tl_calibrator *want, *all;
    check_ok(tl_calibrator_fit(TL_CALIB_PLATT, p, y, NULL, mask, NV, &want), "platt in space");
    check_ok(tl_calibrator_fit(TL_CALIB_PLATT, p, y, NULL, NULL, NV, &all), "platt on all rows");
    double a, b, wa, wb, aa, ab;
    tl_calibrator_platt_params(m->distill->task[1].cal, &a, &b);
    tl_calibrator_platt_params(want, &wa, &wb);
    tl_calibrator_platt_params(all, &aa, &ab);
    if (!(fabs(a - wa) < 1e-4 && fabs(b - wb) < 1e-4))
        fail_msg("task 1 calibrator a=%g b=%g, fitted in its space a=%g b=%g", a, b, wa, wb);
    assert_true(fabs(a - aa) > 1e-3 || fabs(b - ab) > 1e-3); /* the space made a difference */
    tl_calibrator_free(want);
    tl_calibrator_free(all);
    tl_model_free(m);
    free_data(&d);
}

static void test_fitted_calibrators(void **state)
{
    (void)state;
    enum { NT = 192, NV = 96 };
    tdata d;
    make_data(&d, NT, NV, 3, 1, 15);
    for (int kind = 0; kind < 2; kind++) {
        tl_model_config c;
        make_cfg(&c, TL_BACKBONE_MMOE, 3);
        distill_on(&c);
        c.distill.calibrate = kind == 0 ? TL_DISTILL_ISOTONIC : TL_DISTILL_PLATT;
        c.distill.calib_valid = 1;
        c.distill.correct = kind == 0 ? TL_CORRECT_BLEND : TL_CORRECT_CLIP;
        tl_model *m = new_model(&c);
        assert_true(!has_param_prefix(tl_model_graph(m), "calibrator."));
        for (int k = 0; k < 3; k++) assert_null(m->distill->task[k].cal);
        fit_steps(m, &d.train, &d.valid, 0, 1);
        assert_int_equal(tl_model_epochs_done(m), 1);
        for (int k = 0; k < 2; k++) {
            assert_non_null(m->distill->task[k].cal);
            assert_int_equal(tl_calibrator_kind(m->distill->task[k].cal),
                             kind == 0 ? TL_CALIB_ISOTONIC : TL_CALIB_PLATT);
        }
        assert_null(m->distill->task[2].cal);
        float raw[NV * 3], cal[NV * 3], pr[NV * 2];
        check_ok(tl_model_predict_teachers(m, &d.valid, 0, raw), "teachers");
        check_ok(tl_model_predict_teachers(m, &d.valid, 1, cal), "teachers calibrated");
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < NV; i++) {
                pr[i * 2] = raw[i * 3 + k];
                pr[i * 2 + 1] = cal[i * 3 + k];
                assert_true(cal[i * 3 + k] >= 0.0f && cal[i * 3 + k] <= 1.0f);
                /* the same map the distilled soft label uses: Platt on the raw
                 * score, isotonic on the float sigmoid the engine computes
                 * (isotonic pieces can be steep) */
                float r = raw[i * 3 + k];
                float p = r >= 0.0f ? 1.0f / (1.0f + expf(-r)) : expf(r) / (1.0f + expf(r));
                double want = kind == 1 ? tl_calibrator_apply_score(m->distill->task[k].cal, (double)r)
                                        : tl_calibrator_apply1(m->distill->task[k].cal, (double)p);
                if (!(fabs((double)cal[i * 3 + k] - want) < 1e-5))
                    fail_msg("task %d row %d: calibrated %.9g, want %.9g (raw %.9g)", k, i,
                             (double)cal[i * 3 + k], want, (double)raw[i * 3 + k]);
            }
            qsort(pr, NV, 2 * sizeof(float), cmp_pair);
            int distinct = 0;
            for (int i = 1; i < NV; i++) {
                assert_true(pr[i * 2 + 1] >= pr[(i - 1) * 2 + 1]);
                distinct += pr[i * 2 + 1] != pr[(i - 1) * 2 + 1];
            }
            assert_true(distinct > 0);
        }
        /* the distilled soft label: the fitted map, then the error correction
         * (blend towards the label, or clip to the label's side of 0.5) */
        tl_graph *g = tl_model_graph(m);
        fill(m, &d.valid, 3, 0, MAXB);
        assert_int_equal(tl_graph_forward(g, 0), TL_OK);
        for (int k = 0; k < 2; k++) {
            const float *soft = tl_graph_value(g, m->distill->teacher_soft[k]);
            for (int i = 0; i < MAXB; i++) {
                double p = (double)cal[i * 3 + k], y = (double)d.valid.labels[i * 3 + (size_t)k];
                double want = kind == 0 ? 0.8 * p + 0.2 * y : y > 0.5 ? fmax(p, 0.5) : fmin(p, 0.5);
                if (!(fabs((double)soft[i] - want) < 1e-6))
                    fail_msg("kind %d task %d row %d: soft label %.9g, want %.9g", kind, k, i,
                             (double)soft[i], want);
            }
        }
        tl_model_free(m);
    }
    free_data(&d);
}

/* A fitted Platt calibrator reads the raw teacher score: with scores near 30
 * (teacher output biases moved there; the ranking loss is shift-invariant,
 * so they stay) sigmoid(r) is 1 in float for every row, and a fit on it
 * would see one value. The fit on the scores succeeds, the calibrated
 * scores follow sigmoid(a r + b) and are not all equal. (Before the fix the
 * epoch-end fit failed: "platt: fit did not converge".) */
static void test_platt_raw_teacher_scores(void **state)
{
    (void)state;
    enum { NT = 192, NV = 96 };
    tdata d;
    make_data(&d, NT, NV, 2, 1, 17);
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, 2);
    distill_on(&c);
    c.distill.calibrate = TL_DISTILL_PLATT;
    c.distill.calib_valid = 1;
    c.distill.correct = TL_CORRECT_NONE;
    tl_model *m = new_model(&c);
    tl_graph *g = tl_model_graph(m);
    float *params = tl_graph_params(g, NULL);
    for (int k = 0; k < 2; k++) {
        char n[64];
        snprintf(n, sizeof n, "teacher.t%d.out.b", k);
        params[param_named(g, n)->offset] = 30.0f;
    }
    fit_steps(m, &d.train, &d.valid, 0, 6);
    float raw[NV * 2], cal[NV * 2];
    check_ok(tl_model_predict_teachers(m, &d.valid, 0, raw), "teachers");
    check_ok(tl_model_predict_teachers(m, &d.valid, 1, cal), "teachers calibrated");
    for (int k = 0; k < 2; k++) {
        const tl_calibrator *cc = m->distill->task[k].cal;
        assert_non_null(cc);
        assert_int_equal(tl_calibrator_kind(cc), TL_CALIB_PLATT);
        double a, b;
        tl_calibrator_platt_params(cc, &a, &b);
        int distinct = 0;
        for (int i = 0; i < NV; i++) {
            float r = raw[i * 2 + k];
            assert_true(r > 20.0f); /* 1 / (1 + e^-r) rounds to 1 in float */
            assert_true(1.0f / (1.0f + expf(-r)) == 1.0f);
            double want = 1.0 / (1.0 + exp(-(a * (double)r + b)));
            if (!(fabs((double)cal[i * 2 + k] - want) < 1e-6))
                fail_msg("task %d row %d: calibrated %.9g, want %.9g", k, i, (double)cal[i * 2 + k], want);
            distinct += i > 0 && cal[i * 2 + k] != cal[k];
        }
        if (!(distinct > NV / 2))
            fail_msg("task %d: %d distinct calibrated scores (a %g, b %g, clamped %d)", k, distinct, a, b,
                     m->distill->task[k].cal_clamped);
        if (!m->distill->task[k].cal_clamped) assert_true(a > 0.0);
    }
    tl_model_free(m);
    free_data(&d);
}

/* The calibrator serialised (for bit comparisons); n floats, malloc'd. */
static float *cal_bits(const tl_calibrator *c, size_t *n)
{
    assert_non_null(c);
    *n = tl_calibrator_serial_len(c);
    float *v = malloc(*n * sizeof *v);
    assert_non_null(v);
    check_ok(tl_calibrator_serialize(c, v, *n), "serialize");
    return v;
}

static int same_cal(const tl_calibrator *a, const tl_calibrator *b)
{
    size_t na, nb;
    float *va = cal_bits(a, &na), *vb = cal_bits(b, &nb);
    int same = na == nb && memcmp(va, vb, na * sizeof *va) == 0;
    free(va);
    free(vb);
    return same;
}

/* Task k's calibrator fitted by hand as calib_every does, on the teacher
 * scores of rows floor(i n / S) of s (every row when n <= S), gathered into a
 * split of their own so that they are batched as the engine batches them. */
static tl_calibrator *hand_fit(tl_model *m, const tl_split *s, int K, int k, tl_calib_kind kind)
{
    size_t n = s->n > TL_DISTILL_CALIB_ROWS ? TL_DISTILL_CALIB_ROWS : s->n;
    tl_split sub = *s;
    int32_t *cat = malloc(n * N_CAT * sizeof *cat);
    float *num = malloc(n * N_NUM * sizeof *num), *lab = malloc(n * (size_t)K * sizeof *lab);
    float *raw = malloc(n * (size_t)K * sizeof *raw), *p = malloc(n * sizeof *p), *y = malloc(n * sizeof *y);
    assert_true(cat && num && lab && raw && p && y);
    for (size_t i = 0; i < n; i++) {
        size_t r = (size_t)((uint64_t)i * s->n / n);
        memcpy(cat + i * N_CAT, s->cat + r * N_CAT, N_CAT * sizeof *cat);
        memcpy(num + i * N_NUM, s->num + r * N_NUM, N_NUM * sizeof *num);
        memcpy(lab + i * (size_t)K, s->labels + r * (size_t)K, (size_t)K * sizeof *lab);
    }
    sub.n = n;
    sub.cat = cat;
    sub.num = num;
    sub.labels = lab;
    check_ok(tl_model_predict_teachers(m, &sub, 0, raw), "teachers");
    for (size_t i = 0; i < n; i++) {
        float v = raw[i * (size_t)K + (size_t)k];
        p[i] = v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
        y[i] = lab[i * (size_t)K + (size_t)k];
    }
    tl_calibrator *c = NULL;
    if (kind == TL_CALIB_PLATT) /* Platt reads the raw scores */
        for (size_t i = 0; i < n; i++) p[i] = raw[i * (size_t)K + (size_t)k];
    check_ok(kind == TL_CALIB_PLATT ? tl_calibrator_fit_scores(kind, p, y, NULL, NULL, n, &c, NULL)
                                    : tl_calibrator_fit(kind, p, y, NULL, NULL, n, &c),
             "fit calibrator");
    free(cat);
    free(num);
    free(lab);
    free(raw);
    free(p);
    free(y);
    return c;
}

static tl_model *calib_model(int every, tl_distill_calib kind)
{
    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, 3);
    distill_on(&c);
    c.distill.calibrate = kind;
    c.distill.calib_valid = 1;
    c.distill.calib_every = every;
    c.distill.flip[0] = -1; /* order auto, resolved by the first fit */
    return new_model(&c);
}

/* calib_every=2 (10 steps an epoch): no calibrator after step 1; after step 2
 * one for each teacher, equal to the fit on the validation split's teacher
 * scores, and the students distil through it (soft label = blend of the
 * fitted map); unchanged at step 3, refitted at step 4. Without calib_every
 * there is none until the epoch ends, as before. A split larger than
 * TL_DISTILL_CALIB_ROWS is read at its evenly spread rows. The in-graph
 * Platt calibrator refuses calib_every. */
static void test_calib_every(void **state)
{
    (void)state;
    enum { NT = 320, NV = 96 };
    tdata d;
    make_data(&d, NT, NV, 3, 1, 17);
    tl_model *m = calib_model(2, TL_DISTILL_ISOTONIC), *off = calib_model(0, TL_DISTILL_ISOTONIC);
    fit_steps(m, &d.train, &d.valid, 1, 1);
    for (int k = 0; k < 3; k++) assert_null(m->distill->task[k].cal);
    fit_steps(m, &d.train, &d.valid, 1, 1);
    assert_int_equal(tl_model_epochs_done(m), 0);
    assert_null(m->distill->task[2].cal);
    tl_calibrator *at2[2];
    for (int k = 0; k < 2; k++) {
        assert_non_null(m->distill->task[k].cal);
        at2[k] = hand_fit(m, &d.valid, 3, k, TL_CALIB_ISOTONIC);
        assert_true(same_cal(m->distill->task[k].cal, at2[k]));
    }
    /* the students' soft labels go through it */
    float raw[MAXB * 3];
    tl_split head = d.valid;
    head.n = MAXB;
    check_ok(tl_model_predict_teachers(m, &head, 0, raw), "teachers");
    tl_graph *g = tl_model_graph(m);
    fill(m, &d.valid, 3, 0, MAXB);
    assert_int_equal(tl_graph_forward(g, 0), TL_OK);
    int moved = 0;
    for (int k = 0; k < 2; k++) {
        const float *soft = tl_graph_value(g, m->distill->teacher_soft[k]);
        for (int i = 0; i < MAXB; i++) {
            float r = raw[i * 3 + k];
            float p = r >= 0.0f ? 1.0f / (1.0f + expf(-r)) : expf(r) / (1.0f + expf(r));
            double cp = tl_calibrator_apply1(m->distill->task[k].cal, (double)p);
            double y = (double)d.valid.labels[i * 3 + (size_t)k];
            assert_true(fabs((double)soft[i] - (0.8 * cp + 0.2 * y)) < 1e-6);
            moved += fabs(cp - (double)p) > 1e-3;
        }
    }
    assert_true(moved > 0);
    fit_steps(m, &d.train, &d.valid, 1, 1);
    for (int k = 0; k < 2; k++) assert_true(same_cal(m->distill->task[k].cal, at2[k]));
    fit_steps(m, &d.train, &d.valid, 1, 1);
    for (int k = 0; k < 2; k++) {
        assert_false(same_cal(m->distill->task[k].cal, at2[k]));
        tl_calibrator *at4 = hand_fit(m, &d.valid, 3, k, TL_CALIB_ISOTONIC);
        assert_true(same_cal(m->distill->task[k].cal, at4));
        tl_calibrator_free(at4);
        tl_calibrator_free(at2[k]);
    }
    fit_steps(off, &d.train, &d.valid, 4, 1);
    for (int k = 0; k < 3; k++) assert_null(off->distill->task[k].cal);
    tl_model_free(m);
    tl_model_free(off);
    free_data(&d);

    /* a calibration split above TL_DISTILL_CALIB_ROWS rows */
    make_data(&d, 64, TL_DISTILL_CALIB_ROWS + 3001, 3, 1, 18);
    m = calib_model(1, TL_DISTILL_PLATT);
    fit_steps(m, &d.train, &d.valid, 1, 1);
    tl_calibrator *sub = hand_fit(m, &d.valid, 3, 0, TL_CALIB_PLATT);
    assert_true(same_cal(m->distill->task[0].cal, sub));
    tl_fit_point f = {&d.train, &d.valid, NULL, NULL};
    check_ok(tl_distill_hook.epoch_end(m->distill, &m->view, &f), "epoch end fit"); /* every row */
    assert_false(same_cal(m->distill->task[0].cal, sub));
    tl_calibrator_free(sub);
    tl_model_free(m);
    free_data(&d);

    tl_model_config c;
    make_cfg(&c, TL_BACKBONE_MMOE, 2);
    distill_on(&c); /* in-graph Platt */
    c.distill.calib_every = 5;
    tl_model *bad = NULL;
    assert_int_equal(tl_model_new(&c, &bad), TL_ERR_ARG);
    c.distill.calib_every = -1;
    c.distill.calibrate = TL_DISTILL_ISOTONIC;
    assert_int_equal(tl_model_new(&c, &bad), TL_ERR_ARG);
}

/* Training N steps, saving, loading and training M more equals N + M steps
 * at once, with calib_every refits before and after the checkpoint and an
 * epoch end between them: parameters, calibrators and the calibrated teacher
 * scores are bit-identical. */
static void test_calib_every_resume(void **state)
{
    (void)state;
    enum { NT = 320, NV = 96 };
    tdata d;
    make_data(&d, NT, NV, 3, -1, 19);
    char *dir = tlt_tempdir_new();
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/resume.tlm", dir);
    for (int kind = 0; kind < 2; kind++) {
        tl_distill_calib ck = kind ? TL_DISTILL_PLATT : TL_DISTILL_ISOTONIC;
        tl_model *once = calib_model(3, ck), *first = calib_model(3, ck), *second = NULL;
        fit_steps(once, &d.train, &d.valid, 13, 2);
        fit_steps(first, &d.train, &d.valid, 7, 2);
        check_ok(tl_model_save(first, path), "save");
        tl_model_free(first);
        check_ok(tl_model_load(path, &second), "load");
        assert_int_equal(tl_model_config_get(second)->distill.calib_every, 3);
        assert_int_equal(tl_model_distill_order(second, 0), 2);
        fit_steps(second, &d.train, &d.valid, 6, 2);
        assert_int_equal(tl_model_steps(second), 13);
        assert_int_equal(tl_model_epochs_done(second), 1);
        assert_true(param_hash(once) == param_hash(second));
        float a[NV * 3], b[NV * 3];
        check_ok(tl_model_predict_teachers(once, &d.valid, 1, a), "teachers");
        check_ok(tl_model_predict_teachers(second, &d.valid, 1, b), "teachers");
        assert_memory_equal(a, b, sizeof a);
        for (int k = 0; k < 2; k++) assert_true(same_cal(once->distill->task[k].cal, second->distill->task[k].cal));
        tl_model_free(once);
        tl_model_free(second);
    }
    tlt_tempdir_free(dir);
    free_data(&d);
}

/* In-graph error correction of the soft label, from p~ the in-graph Platt
 * map of the teacher score: blend (1 - lambda) p~ + lambda y, or clip to
 * the label's side of 0.5. */
static void test_soft_label_correction(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 40, 0, 2, 1, 16);
    for (int clip = 0; clip < 2; clip++) {
        tl_model_config c;
        make_cfg(&c, TL_BACKBONE_SHARED_BOTTOM, 2);
        distill_on(&c);
        c.distill.lambda = 0.3f;
        c.distill.correct = clip ? TL_CORRECT_CLIP : TL_CORRECT_BLEND;
        tl_model *m = new_model(&c);
        tl_graph *g = tl_model_graph(m);
        jitter(m, 3);
        fill(m, &d.train, 2, 0, 20);
        assert_int_equal(tl_graph_forward(g, 0), TL_OK);
        int clipped = 0;
        for (int k = 0; k < 2; k++) {
            const float *r = tl_graph_value(g, m->distill->teacher[k]), *soft = tl_graph_value(g, m->distill->teacher_soft[k]);
            double a = (double)tl_graph_value(g, m->distill->task[k].cal_a)[0];
            double b = (double)tl_graph_value(g, m->distill->task[k].cal_b)[0];
            for (int i = 0; i < 20; i++) {
                double p = 1.0 / (1.0 + exp(-(log1p(exp(a)) * (double)r[i] + b)));
                double y = (double)d.labels[i * 2 + (size_t)k];
                double want = !clip ? 0.7 * p + 0.3 * y : y > 0.5 ? fmax(p, 0.5) : fmin(p, 0.5);
                clipped += clip && want == 0.5;
                if (!(fabs((double)soft[i] - want) < 1e-6))
                    fail_msg("clip %d task %d row %d: soft %.9g, want %.9g", clip, k, i, (double)soft[i], want);
            }
        }
        if (clip) assert_true(clipped > 0 && clipped < 40); /* both cases seen */
        tl_model_free(m);
    }
    free_data(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_dml),
        cmocka_unit_test(test_gradcheck_crossdistil),
        cmocka_unit_test(test_gradcheck_crossdistil_weighted),
        cmocka_unit_test(test_quad_all_pairs),
        cmocka_unit_test(test_quad_sampled_gradient),
        cmocka_unit_test(test_quad_sampling_counts),
        cmocka_unit_test(test_quad_eval_keeps_rng),
        cmocka_unit_test(test_quad_empty_groups),
        cmocka_unit_test(test_quad_nested),
        cmocka_unit_test(test_quad_flip),
        cmocka_unit_test(test_quad_weighted),
        cmocka_unit_test(test_dml_stop_grad),
        cmocka_unit_test(test_dml_gkd_tasks),
        cmocka_unit_test(test_label_correlation),
        cmocka_unit_test(test_order_auto),
        cmocka_unit_test(test_warmup),
        cmocka_unit_test(test_inference_students),
        cmocka_unit_test(test_naive_kd_sign),
        cmocka_unit_test(test_teacher_separate_shared),
        cmocka_unit_test(test_fitted_calibrators),
        cmocka_unit_test(test_fitted_calibrator_space),
        cmocka_unit_test(test_platt_raw_teacher_scores),
        cmocka_unit_test(test_soft_label_correction),
        cmocka_unit_test(test_calib_every),
        cmocka_unit_test(test_calib_every_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
