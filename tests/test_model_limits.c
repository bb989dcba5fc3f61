/* test_model_limits.c — limits a model and a tensor must respect before they
 * allocate (issue 25 items 4 and 7), a fit batch above the model's (issue 19
 * item 8), and the early-stopping monitor of the papers' protocol (issue 18): tensor element counts that overflow, the memory budget
 * (available memory or max_memory) for tensors and models, and a graph
 * replanned for a larger batch computing exactly what one planned for it
 * computes. */
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
#include "support.h"
#include "tensor.h"

#define N_CAT 2
#define N_NUM 3

typedef struct {
    int32_t *cat;
    float *num, *labels;
    tl_split train, valid;
} tdata;

/* n_train + n_valid rows of a small two-task problem. */
static void make_data(tdata *d, size_t n_train, size_t n_valid, uint64_t seed)
{
    size_t n = n_train + n_valid;
    tl_rng r;
    tl_rng_seed(&r, seed);
    d->cat = malloc(n * N_CAT * sizeof *d->cat);
    d->num = malloc(n * N_NUM * sizeof *d->num);
    d->labels = malloc(n * 2 * sizeof *d->labels);
    for (size_t i = 0; i < n; i++) {
        float s = 0;
        for (int f = 0; f < N_CAT; f++) d->cat[i * N_CAT + f] = (int32_t)tl_rng_below(&r, 10);
        for (int j = 0; j < N_NUM; j++) {
            float v = tl_rng_normal(&r);
            d->num[i * N_NUM + j] = v;
            s += v;
        }
        s += 0.3f * (float)d->cat[i * N_CAT];
        d->labels[i * 2] = s > 1.0f;
        d->labels[i * 2 + 1] = s + tl_rng_normal(&r) > 0.5f;
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
    d->valid.labels = d->labels + n_train * 2;
}

static void free_data(tdata *d)
{
    free(d->cat);
    free(d->num);
    free(d->labels);
}

static void make_cfg(tl_model_config *c, int max_batch)
{
    tl_model_config_defaults(c);
    c->backbone.kind = TL_BACKBONE_MMOE;
    c->backbone.expert = (tl_mlp_spec){2, {16, 8}, 0.1f};
    c->backbone.experts = 3;
    c->n_cat = N_CAT;
    c->vocab[0] = c->vocab[1] = 10;
    c->n_num = N_NUM;
    c->emb_dim = 4;
    c->n_tasks = 2;
    for (int k = 0; k < 2; k++) {
        tl_task_spec *t = &c->tasks[k];
        snprintf(t->name, sizeof t->name, "%s", k == 0 ? "a" : "b");
        t->type = TL_TASK_BINARY;
        t->tower = (tl_mlp_spec){1, {8}, 0.0f};
        t->weight = 1.0f;
    }
    c->max_batch = max_batch;
    c->seed = 11;
}

static void test_tensor_numel_overflow(void **state)
{
    (void)state;
    int64_t big[2] = {(int64_t)1 << 32, (int64_t)1 << 32};
    tl_tensor *t = tl_tensor_new(2, big);
    assert_null(t);
    assert_non_null(strstr(tl_errmsg(), "[4294967296, 4294967296]"));
    assert_non_null(strstr(tl_errmsg(), "2^60"));
    int64_t ok[2] = {3, 5};
    t = tl_tensor_new(2, ok);
    assert_non_null(t);
    assert_int_equal(tl_tensor_numel(t), 15);
    tl_tensor_free(t);
}

static void test_tensor_budget(void **state)
{
    (void)state;
    tl_memory_set_available(1000000); /* 1 MB */
    int64_t big[2] = {1000, 1000};   /* 4 MB */
    tl_tensor *t = tl_tensor_new(2, big);
    assert_null(t);
    assert_non_null(strstr(tl_errmsg(), "tensor [1000, 1000] needs 4.0 MB; 1.0 MB available"));
    int64_t small[2] = {100, 100};
    t = tl_tensor_new(2, small);
    assert_non_null(t);
    tl_tensor_free(t);
    tl_memory_set_available(0);
}

/* A model far above the budget is refused before anything big is
 * allocated: the message gives what it needs and what is available. */
static void test_model_budget(void **state)
{
    (void)state;
    tl_model_config c;
    make_cfg(&c, 1024);
    c.backbone.expert = (tl_mlp_spec){2, {4096, 4096}, 0.0f};
    c.backbone.experts = 8;
    uint64_t need = 0;
    assert_int_equal(tl_model_memory(&c, &need), TL_OK);
    /* 8 experts of 4096 x 4096: 134M floats, 5 copies (params, grads, Adam, best) */
    assert_true(need > (uint64_t)8 * 4096 * 4096 * 4 * 5);
    tl_memory_set_available(100000000); /* 100 MB */
    tl_model *m = NULL;
    tl_status s = tl_model_new(&c, &m);
    assert_int_equal(s, TL_ERR_NOMEM);
    assert_null(m);
    const char *msg = tl_errmsg();
    assert_non_null(strstr(msg, "the model (parameters 538.8 MB, gradients as much"));
    assert_non_null(strstr(msg, "100.0 MB available (MemAvailable)"));
    assert_non_null(strstr(msg, "max_memory"));
    tl_memory_set_available(0);
}

/* max_memory overrides the available memory, both ways. */
static void test_model_max_memory(void **state)
{
    (void)state;
    tl_model_config c;
    make_cfg(&c, 64);
    uint64_t need = 0;
    assert_int_equal(tl_model_memory(&c, &need), TL_OK);
    tl_memory_set_available(need / 2);
    tl_model *m = NULL;
    assert_int_equal(tl_model_new(&c, &m), TL_ERR_NOMEM);
    c.max_memory = need;
    assert_int_equal(tl_model_new(&c, &m), TL_OK);
    tl_model_free(m);
    tl_memory_set_available(0);
    c.max_memory = need - 1;
    assert_int_equal(tl_model_new(&c, &m), TL_ERR_NOMEM);
    assert_non_null(strstr(tl_errmsg(), "(max_memory)"));
}

/* fit{batch=256} on a model built for 128 replans the graph; the result is
 * bit-identical to a model built for 256 (dropout on, so the masks count). */
static void test_fit_batch_above_model(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 2000, 300, 5);
    float *p[2];
    float *pred[2];
    size_t n[2];
    for (int r = 0; r < 2; r++) {
        tl_model_config c;
        make_cfg(&c, r == 0 ? 128 : 256);
        tl_model *m = NULL;
        assert_int_equal(tl_model_new(&c, &m), TL_OK);
        tl_fit_options o;
        tl_fit_defaults(&o);
        o.epochs = 2;
        o.batch = 256;
        o.optim.lr = 1e-2f;
        tl_status s = tl_model_fit(m, &d.train, &d.valid, &o);
        if (s != TL_OK) fail_msg("fit: %s", tl_errmsg());
        const float *v = tl_graph_params(tl_model_graph(m), &n[r]);
        p[r] = malloc(n[r] * sizeof(float));
        memcpy(p[r], v, n[r] * sizeof(float));
        pred[r] = malloc(d.valid.n * 2 * sizeof(float));
        assert_int_equal(tl_model_predict(m, &d.valid, pred[r]), TL_OK);
        assert_int_equal(tl_model_config_get(m)->max_batch, c.max_batch);
        tl_model_free(m);
    }
    assert_int_equal(n[0], n[1]);
    assert_memory_equal(p[0], p[1], n[0] * sizeof(float));
    for (size_t i = 0; i < d.valid.n * 2; i++) assert_true(fabsf(pred[0][i] - pred[1][i]) < 1e-6f);
    for (int r = 0; r < 2; r++) {
        free(p[r]);
        free(pred[r]);
    }
    free_data(&d);
}

/* The same with CrossDistil: its quadruplet losses capped their pair budget
 * by the build batch ((64/2+1)^2 = 1089 pairs) and get the budget a model
 * built for the fit's batch has (max_pairs 5000 < (256/2+1)^2). */
static void test_fit_batch_above_model_crossdistil(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 1200, 0, 6);
    float *p[2];
    size_t n[2];
    for (int r = 0; r < 2; r++) {
        tl_model_config c;
        make_cfg(&c, r == 0 ? 64 : 256);
        c.distill.enabled = 1;
        c.distill.n_pairs = 1;
        c.distill.pairs[0][0] = 0;
        c.distill.pairs[0][1] = 1;
        c.distill.order = 1;
        c.distill.calib_valid = 0;
        c.distill.max_pairs = 5000;
        tl_model *m = NULL;
        if (tl_model_new(&c, &m) != TL_OK) fail_msg("model: %s", tl_errmsg());
        tl_fit_options o;
        tl_fit_defaults(&o);
        o.epochs = 1;
        o.batch = 256;
        o.optim.lr = 1e-2f;
        tl_status s = tl_model_fit(m, &d.train, NULL, &o);
        if (s != TL_OK) fail_msg("fit: %s", tl_errmsg());
        const float *v = tl_graph_params(tl_model_graph(m), &n[r]);
        p[r] = malloc(n[r] * sizeof(float));
        memcpy(p[r], v, n[r] * sizeof(float));
        tl_model_free(m);
    }
    assert_int_equal(n[0], n[1]);
    assert_memory_equal(p[0], p[1], n[0] * sizeof(float));
    free(p[0]);
    free(p[1]);
    free_data(&d);
}

/* The early-stopping monitor (issue 18's protocol): AUC for a binary task,
 * -MSE (not -RMSE) for a regression task, averaged over the tasks. */
static void test_monitor_is_auc_and_minus_mse(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 1500, 400, 8);
    for (size_t i = 0; i < d.train.n + d.valid.n; i++) /* task b: a regression label */
        d.labels[i * 2 + 1] = 3.0f * d.labels[i * 2 + 1] + d.num[i * N_NUM];
    tl_model_config c;
    make_cfg(&c, 128);
    c.tasks[1].type = TL_TASK_REGRESSION;
    tl_model *m = NULL;
    assert_int_equal(tl_model_new(&c, &m), TL_OK);
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = 2;
    o.optim.lr = 1e-2f;
    assert_int_equal(tl_model_fit(m, &d.train, &d.valid, &o), TL_OK);
    const tl_epoch_record *er;
    size_t ne = tl_model_history_epochs(m, &er);
    assert_int_equal(ne, 2);
    for (size_t e = 0; e < ne; e++) {
        double auc = er[e].valid_metric[0], mse = er[e].valid_logloss[1], rmse = er[e].valid_metric[1];
        assert_true(fabs(rmse * rmse - mse) <= 1e-9 * mse);
        assert_true(fabs(mse - rmse) > 1e-3); /* the two monitors differ here */
        if (!(er[e].monitor == (auc - mse) / 2))
            fail_msg("epoch %zu: monitor %.17g, want (auc %.17g - mse %.17g) / 2", e + 1, er[e].monitor,
                     auc, mse);
    }
    tl_model_free(m);
    free_data(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_numel_overflow),
        cmocka_unit_test(test_tensor_budget),
        cmocka_unit_test(test_model_budget),
        cmocka_unit_test(test_model_max_memory),
        cmocka_unit_test(test_fit_batch_above_model),
        cmocka_unit_test(test_fit_batch_above_model_crossdistil),
        cmocka_unit_test(test_monitor_is_auc_and_minus_mse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
