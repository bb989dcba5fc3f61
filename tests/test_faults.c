/* test_faults.c — faults over a representative run.
 *
 * Allocation failures: a small run (load a CSV dataset, build a model, fit 2
 * steps with a validation split, evaluate with reliability bins, save, load
 * the checkpoint and fit the loaded model one more step) is repeated with the
 * k-th allocation failing, for k = 1, 2, ... until a run completes without an
 * injected failure. Every failing run must return an error status with a
 * message, and free everything it allocated (ASan's leak checker runs at the
 * end of `make check`).
 *
 * NaN/Inf: a non-finite numeric feature in the third batch makes fit fail
 * with TL_ERR_NUMERIC naming the task and the step, and the parameters and
 * optimizer state stay those of the last good step. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data.h"
#include "io.h"
#include "model.h"
#include "support.h"
#include "synthetic.h"

#define CSV "tests/data/rechub_mtl_samples/ali_ccp_train_sample.csv"

static void small_cfg(tl_model_config *c, const tl_dataset *d, float dropout)
{
    tl_model_config_defaults(c);
    tl_mlp_spec tower = {1, {4}, dropout};
    c->backbone.kind = TL_BACKBONE_MMOE;
    c->backbone.expert = (tl_mlp_spec){1, {8}, dropout};
    c->backbone.experts = 2;
    c->emb_dim = 4;
    c->max_batch = 32;
    c->seed = 5;
    if (d) assert_int_equal(tl_model_config_from_dataset(c, d, &tower), TL_OK);
}

static tl_status load_csv(tl_dataset **out)
{
    static const tl_data_cat_col cat[] = {{"101", 0, 0}, {"121", 0, 0}, {"122", 0, 0}, {"205", 0, 0}};
    static const tl_data_num_col num[] = {{"D508", TL_NUM_STANDARD, 0}, {"D509", TL_NUM_LOG1P, 0}};
    static const char *const one[] = {"1"};
    tl_data_label lab[2];
    memset(lab, 0, sizeof lab);
    lab[0].task = "click";
    lab[0].column = "click";
    lab[1].task = "purchase";
    lab[1].column = "purchase";
    for (int i = 0; i < 2; i++) {
        lab[i].kind = TL_LABEL_POSITIVE;
        lab[i].positive = one;
        lab[i].n_positive = 1;
    }
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = CSV;
    s.sep = ",";
    s.header = 1;
    s.cat = cat;
    s.n_cat = 4;
    s.num = num;
    s.n_num = 2;
    s.labels = lab;
    s.n_labels = 2;
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.7;
    s.ratio[1] = 0.3;
    s.ratio[2] = 0.0;
    s.seed = 3;
    s.cache = 0;
    return tl_data_csv_load(&s, NULL, out);
}

/* The whole run; returns the first failing status (everything freed). */
static tl_status small_run(const char *path)
{
    tl_dataset *d = NULL;
    tl_model *m = NULL, *m2 = NULL;
    tl_calib_bin bins[2 * 5];
    tl_task_eval ev[2];
    tl_status st = load_csv(&d);
    if (st != TL_OK) goto out;
    const tl_split *train = tl_dataset_split(d, "train"), *valid = tl_dataset_split(d, "valid");
    tl_model_config c;
    small_cfg(&c, d, 0.2f);
    if ((st = tl_model_new(&c, &m)) != TL_OK) goto out;
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = 1;
    o.batch = 32;
    o.max_steps = 2;
    if ((st = tl_model_fit(m, train, valid, &o)) != TL_OK) goto out;
    if ((st = tl_model_evaluate(m, valid, 5, ev, bins)) != TL_OK) goto out;
    if ((st = tl_model_save(m, path)) != TL_OK) goto out;
    if ((st = tl_model_load(path, &m2)) != TL_OK) goto out;
    o.max_steps = 1;
    st = tl_model_fit(m2, train, valid, &o); /* finishes the epoch: validation runs */
out:
    tl_model_free(m);
    tl_model_free(m2);
    tl_dataset_free(d);
    return st;
}

static void test_alloc_faults(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/run.tlm", dir);

    uint64_t before = tl_alloc_count();
    tl_status st = small_run(path);
    if (st != TL_OK) fail_msg("the run fails without faults: %s", tl_errmsg());
    uint64_t allocs = tl_alloc_count() - before;
    printf("a clean run makes %llu allocations\n", (unsigned long long)allocs);
    assert_true(allocs > 20);

    uint64_t k;
    int by_status[16] = {0};
    for (k = 1;; k++) {
        remove(path);
        tl_clear_error();
        tl_fault_inject_nth(k);
        st = small_run(path);
        int injected = tl_fault_injected();
        tl_fault_inject_nth(0);
        if (!injected) {
            if (st != TL_OK) fail_msg("k=%llu: no fault injected but %s", (unsigned long long)k,
                                      tl_errmsg());
            break;
        }
        if (st == TL_OK) fail_msg("k=%llu: allocation failure ignored: the run succeeded",
                                  (unsigned long long)k);
        if (tl_errmsg()[0] == '\0') fail_msg("k=%llu: failed without a message", (unsigned long long)k);
        by_status[st]++;
        if (st != TL_ERR_NOMEM)
            printf("k=%llu: %s: %s\n", (unsigned long long)k, tl_status_name(st), tl_errmsg());
        if (k > allocs + 100) fail_msg("no clean run after %llu faults", (unsigned long long)k);
    }
    printf("%llu runs with one failed allocation: %d out of memory, %d other errors\n",
           (unsigned long long)(k - 1), by_status[TL_ERR_NOMEM],
           (int)(k - 1) - by_status[TL_ERR_NOMEM]);
    assert_true(k - 1 >= allocs);
    tlt_tempdir_free(dir);
}

/* ---- non-finite inputs ------------------------------------------------------- */

#define NROWS 400
#define NB 32

typedef struct {
    int32_t cat[NROWS * 2];
    float num[NROWS * 3], labels[NROWS * 2];
    tl_split s;
} ndata;

static void make_ndata(ndata *d)
{
    tl_rng r;
    tl_rng_seed(&r, 17);
    for (int i = 0; i < NROWS; i++) {
        for (int f = 0; f < 2; f++) d->cat[i * 2 + f] = (int32_t)tl_rng_below(&r, 5);
        float s = 0.0f;
        for (int j = 0; j < 3; j++) s += (d->num[i * 3 + j] = tl_rng_normal(&r));
        d->labels[i * 2] = s > 0.0f ? 1.0f : 0.0f;
        d->labels[i * 2 + 1] = d->num[i * 3] > 0.5f ? 1.0f : 0.0f;
    }
    memset(&d->s, 0, sizeof d->s);
    d->s.name = "train";
    d->s.n = NROWS;
    d->s.cat = d->cat;
    d->s.num = d->num;
    d->s.labels = d->labels;
}

static tl_model *nan_model(tl_backbone_kind kind)
{
    tl_model_config c;
    small_cfg(&c, NULL, 0.0f);
    c.backbone.kind = kind;
    c.backbone.bottom = (tl_mlp_spec){1, {8}, 0.0f};
    c.n_cat = 2;
    c.vocab[0] = c.vocab[1] = 5;
    c.n_num = 3;
    c.n_tasks = 2;
    for (int k = 0; k < 2; k++) {
        snprintf(c.tasks[k].name, sizeof c.tasks[k].name, "%s", k ? "cvr" : "ctr");
        c.tasks[k].type = TL_TASK_BINARY;
        c.tasks[k].tower = (tl_mlp_spec){1, {4}, 0.0f};
        c.tasks[k].weight = 1.0f;
    }
    c.max_batch = NB;
    tl_model *m = NULL;
    if (tl_model_new(&c, &m) != TL_OK) fail_msg("model: %s", tl_errmsg());
    return m;
}

/* Batch 3 (no shuffling: rows 64..95) holds a bad value; fit fails at step
 * 3 naming `task`, and parameters and Adam state are those after step 2. */
static void check_bad_input(tl_backbone_kind kind, float bad, const char *want)
{
    ndata *d = malloc(sizeof *d);
    make_ndata(d);
    tl_model *m = nan_model(kind);
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = 1;
    o.batch = NB;
    o.shuffle = 0;
    o.max_steps = 2;
    o.optim.lr = 0.05f;
    assert_int_equal(tl_model_fit(m, &d->s, NULL, &o), TL_OK);
    size_t n;
    float *p = tl_graph_params(tl_model_graph(m), &n);
    float *snap = malloc(n * sizeof *snap);
    memcpy(snap, p, n * sizeof *snap);
    size_t nm;
    float *m1 = tl_optim_state(tl_model_optim(m), 0, &nm);
    float *msnap = malloc(nm * sizeof *msnap);
    memcpy(msnap, m1, nm * sizeof *msnap);

    d->num[(2 * NB + 5) * 3 + 1] = bad;
    o.max_steps = 0;
    tl_status st = tl_model_fit(m, &d->s, NULL, &o);
    printf("%s, feature %g -> %s: %s\n", tl_backbone_name(kind), (double)bad, tl_status_name(st),
           tl_errmsg());
    assert_int_equal(st, TL_ERR_NUMERIC);
    assert_non_null(strstr(tl_errmsg(), want));
    assert_non_null(strstr(tl_errmsg(), "step 3"));
    assert_int_equal(tl_model_steps(m), 2);
    assert_int_equal(tl_optim_steps(tl_model_optim(m)), 2);
    assert_memory_equal(p, snap, n * sizeof *snap);
    assert_memory_equal(m1, msnap, nm * sizeof *msnap);

    /* Fixing the data lets training continue from the same point. */
    d->num[(2 * NB + 5) * 3 + 1] = 0.0f;
    o.max_steps = 1;
    assert_int_equal(tl_model_fit(m, &d->s, NULL, &o), TL_OK);
    assert_int_equal(tl_model_steps(m), 3);
    free(snap);
    free(msnap);
    free(d);
    tl_model_free(m);
}

static void test_nan_feature_names_task_and_step(void **state)
{
    (void)state;
    check_bad_input(TL_BACKBONE_MMOE, NAN, "task 'ctr'");
}

static void test_inf_feature_names_task_and_step(void **state)
{
    (void)state;
    check_bad_input(TL_BACKBONE_MMOE, INFINITY, "task 'ctr'");
}

/* ReLU keeps NaN (as PyTorch does): a NaN feature reaches the loss through
 * a ReLU stack too, instead of being silently zeroed. */
static void test_nan_feature_shared_bottom(void **state)
{
    (void)state;
    check_bad_input(TL_BACKBONE_SHARED_BOTTOM, NAN, "task 'ctr'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_faults),
        cmocka_unit_test(test_nan_feature_names_task_and_step),
        cmocka_unit_test(test_inf_feature_names_task_and_step),
        cmocka_unit_test(test_nan_feature_shared_bottom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
