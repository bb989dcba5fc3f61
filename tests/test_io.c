/* test_io.c — checkpoints: exact resume (N steps, save, load, M more equals
 * N+M at once, bit for bit, with dropout, Adam/SGD and every weighting
 * strategy), round trip of configuration, weights, weighting state, history
 * and optimizer, every refusal message (bad magic, truncated, flipped byte,
 * future version, unknown critical section, inconsistent content), random
 * corruption never crashing the loader, and atomic saving (failed saves leave
 * the previous checkpoint intact and no temporary file behind).
 *
 * Data: the MMoE synthetic generator; x columns 0 and 1 bucketed into 10 ids
 * (two categorical fields), the other 6 numeric; two binary tasks y_k > 0. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "io.h"
#include "model.h"
#include "models/model_impl.h"
#include "support.h"
#include "synthetic.h"

#define DIM 8
#define N_CAT 2
#define N_NUM (DIM - N_CAT)
#define N_TRAIN 1000
#define N_VALID 300
#define BATCH 128

typedef struct {
    int32_t *cat;
    float *num, *labels;
    tl_split train, valid;
} tdata;

static void make_data(tdata *d, uint64_t seed)
{
    size_t n = N_TRAIN + N_VALID;
    tl_synthetic_params p;
    tl_synthetic_defaults(&p);
    p.n = n;
    p.dim = DIM;
    p.m = 0;
    p.seed = seed;
    float *x = malloc(n * DIM * sizeof *x), *y = malloc(n * 2 * sizeof *y);
    assert_int_equal(tl_synthetic_generate(&p, x, y), TL_OK);
    d->cat = malloc(n * N_CAT * sizeof *d->cat);
    d->num = malloc(n * N_NUM * sizeof *d->num);
    d->labels = malloc(n * 2 * sizeof *d->labels);
    for (size_t i = 0; i < n; i++) {
        for (int f = 0; f < N_CAT; f++) {
            int id = (int)floorf((x[i * DIM + (size_t)f] + 2.5f) * 2.0f);
            d->cat[i * N_CAT + (size_t)f] = id < 0 ? 0 : id > 9 ? 9 : id;
        }
        for (int j = 0; j < N_NUM; j++) d->num[i * N_NUM + (size_t)j] = x[i * DIM + N_CAT + (size_t)j];
        for (int k = 0; k < 2; k++) d->labels[i * 2 + (size_t)k] = y[i * 2 + (size_t)k] > 0.0f ? 1.0f : 0.0f;
    }
    free(x);
    free(y);
    memset(&d->train, 0, sizeof d->train);
    d->train.name = "train";
    d->train.n = N_TRAIN;
    d->train.cat = d->cat;
    d->train.num = d->num;
    d->train.labels = d->labels;
    d->valid = d->train;
    d->valid.name = "valid";
    d->valid.n = N_VALID;
    d->valid.cat = d->cat + N_TRAIN * N_CAT;
    d->valid.num = d->num + N_TRAIN * N_NUM;
    d->valid.labels = d->labels + N_TRAIN * 2;
}

static void free_data(tdata *d)
{
    free(d->cat);
    free(d->num);
    free(d->labels);
}

static void make_cfg(tl_model_config *c, tl_weighting w, float dropout)
{
    tl_model_config_defaults(c);
    c->backbone.kind = TL_BACKBONE_MMOE;
    c->backbone.expert = (tl_mlp_spec){2, {16, 8}, dropout};
    c->backbone.experts = 3;
    c->n_cat = N_CAT;
    c->vocab[0] = c->vocab[1] = 10;
    c->n_num = N_NUM;
    c->emb_dim = 4;
    c->n_tasks = 2;
    for (int k = 0; k < 2; k++) {
        tl_task_spec *t = &c->tasks[k];
        snprintf(t->name, sizeof t->name, "%s", k == 0 ? "click" : "buy");
        t->type = TL_TASK_BINARY;
        t->tower = (tl_mlp_spec){1, {8}, dropout};
        t->weight = 1.0f;
    }
    c->weighting = w;
    c->max_batch = BATCH;
    c->seed = 11;
}

static tl_model *new_model(const tl_model_config *c)
{
    tl_model *m = NULL;
    tl_status st = tl_model_new(c, &m);
    if (st != TL_OK) fail_msg("tl_model_new: %s", tl_errmsg());
    return m;
}

/* restore_best is off: with a valid split, a fit stopped by max_steps would
 * otherwise go back to the best epoch's weights at its end. */
static int resume_schedule; /* fit_opts: 0 none, 1 cosine with warm-up, 2 step */

static void fit_opts(tl_fit_options *o, tl_optim_kind kind, int64_t max_steps)
{
    tl_fit_defaults(o);
    o->restore_best = 0;
    o->epochs = 100;
    o->batch = BATCH;
    o->max_steps = max_steps;
    o->optim = tl_optim_defaults(kind);
    o->optim.lr = 1e-2f;
    if (kind == TL_OPTIM_SGD) o->optim.momentum = 0.9f;
    if (resume_schedule == 1) { /* cosine after a linear warm-up */
        o->optim.schedule = TL_SCHEDULE_COSINE;
        o->optim.warmup = 4;
        o->optim.total = 12;
        o->optim.min_lr = 1e-4f;
    } else if (resume_schedule == 2) {
        o->optim.schedule = TL_SCHEDULE_STEP;
        o->optim.step_size = 3;
        o->optim.gamma = 0.5f;
    }
}

static void fit_ok(tl_model *m, const tl_split *tr, const tl_split *va, const tl_fit_options *o)
{
    tl_status st = tl_model_fit(m, tr, va, o);
    if (st != TL_OK) fail_msg("fit: %s", tl_errmsg());
}

static void save_ok(tl_model *m, const char *path)
{
    tl_status st = tl_model_save(m, path);
    if (st != TL_OK) fail_msg("save %s: %s", path, tl_errmsg());
}

static tl_model *load_ok(const char *path)
{
    tl_model *m = NULL;
    tl_status st = tl_model_load(path, &m);
    if (st != TL_OK) fail_msg("load %s: %s", path, tl_errmsg());
    return m;
}

/* 1 when both models hold bit-identical parameters (prints the first difference). */
static int same_params(tl_model *a, tl_model *b)
{
    size_t na, nb;
    const float *pa = tl_graph_params(tl_model_graph(a), &na);
    const float *pb = tl_graph_params(tl_model_graph(b), &nb);
    if (na != nb) {
        printf("parameter counts differ: %zu vs %zu\n", na, nb);
        return 0;
    }
    if (memcmp(pa, pb, na * sizeof(float)) == 0) return 1;
    for (size_t i = 0; i < na; i++)
        if (memcmp(&pa[i], &pb[i], sizeof(float)) != 0) {
            printf("parameters differ first at float %zu: %.9g vs %.9g\n", i, (double)pa[i],
                   (double)pb[i]);
            break;
        }
    return 0;
}

static int same_optim(tl_model *a, tl_model *b)
{
    tl_optim *oa = tl_model_optim(a), *ob = tl_model_optim(b);
    if (!oa || !ob) return oa == ob;
    if (!tl_optim_config_equal(tl_optim_get_config(oa), tl_optim_get_config(ob)) ||
        tl_optim_steps(oa) != tl_optim_steps(ob) ||
        tl_optim_state_blocks(oa) != tl_optim_state_blocks(ob)) {
        printf("optimizer configuration or step count differs\n");
        return 0;
    }
    for (int i = 0; i < tl_optim_state_blocks(oa); i++) {
        size_t fa, fb;
        const float *sa = tl_optim_state(oa, i, &fa), *sb = tl_optim_state(ob, i, &fb);
        if (fa != fb || memcmp(sa, sb, fa * sizeof(float)) != 0) {
            printf("optimizer state block %d differs\n", i);
            return 0;
        }
    }
    return 1;
}

static int same_bits_d(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }
static int same_bits_f(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Histories equal field by field (bitwise, so NaN == NaN). */
static int same_history(const tl_model *a, const tl_model *b)
{
    int K = tl_model_config_get(a)->n_tasks;
    const tl_step_record *sa, *sb;
    const tl_epoch_record *ea, *eb;
    size_t ns = tl_model_history_steps(a, &sa), ne = tl_model_history_epochs(a, &ea);
    if (ns != tl_model_history_steps(b, &sb) || ne != tl_model_history_epochs(b, &eb)) {
        printf("history lengths differ\n");
        return 0;
    }
    for (size_t i = 0; i < ns; i++) {
        int ok = sa[i].step == sb[i].step && sa[i].epoch == sb[i].epoch;
        for (int k = 0; k < K; k++)
            ok = ok && same_bits_f(sa[i].loss[k], sb[i].loss[k]) &&
                 same_bits_f(sa[i].weight[k], sb[i].weight[k]);
        if (!ok) {
            printf("step record %zu differs (step %lld)\n", i, (long long)sa[i].step);
            return 0;
        }
    }
    for (size_t i = 0; i < ne; i++) {
        int ok = ea[i].epoch == eb[i].epoch && ea[i].step == eb[i].step &&
                 same_bits_d(ea[i].monitor, eb[i].monitor);
        for (int k = 0; k < K; k++)
            ok = ok && same_bits_d(ea[i].train_loss[k], eb[i].train_loss[k]) &&
                 same_bits_d(ea[i].valid_metric[k], eb[i].valid_metric[k]) &&
                 same_bits_d(ea[i].valid_logloss[k], eb[i].valid_logloss[k]);
        if (!ok) {
            printf("epoch record %zu differs (epoch %d): train loss %.17g vs %.17g\n", i,
                   ea[i].epoch, ea[i].train_loss[0], eb[i].train_loss[0]);
            return 0;
        }
    }
    return 1;
}

static char *path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- exact resume ------------------------------------------------------------- */

/* N steps, save, load, M more steps == N+M steps in one fit: parameters,
 * optimizer state, weights and history bit-identical. */
static void check_resume(tl_weighting w, tl_optim_kind ok, float dropout, int64_t N, int64_t M,
                         int with_valid)
{
    tdata d;
    make_data(&d, 3);
    char *dir = tlt_tempdir_new();
    char *path = path_in(dir, "run.tlm");
    tl_model_config c;
    make_cfg(&c, w, dropout);
    const tl_split *va = with_valid ? &d.valid : NULL;
    tl_fit_options o;

    tl_model *a = new_model(&c);
    fit_opts(&o, ok, N);
    fit_ok(a, &d.train, va, &o);
    save_ok(a, path);
    tl_model *b = load_ok(path);
    assert_true(same_params(a, b));
    assert_true(same_optim(a, b));
    fit_opts(&o, ok, M);
    fit_ok(b, &d.train, va, &o);

    tl_model *u = new_model(&c);
    fit_opts(&o, ok, N + M);
    fit_ok(u, &d.train, va, &o);

    printf("resume %s/%s dropout %g: N=%lld M=%lld\n", tl_weighting_name(w), tl_optim_name(ok),
           (double)dropout, (long long)N, (long long)M);
    assert_int_equal(tl_model_steps(b), N + M);
    assert_int_equal(tl_model_steps(u), N + M);
    assert_int_equal(tl_model_epochs_done(b), tl_model_epochs_done(u));
    assert_true(same_params(b, u));
    assert_true(same_optim(b, u));
    assert_true(same_history(b, u));
    for (int k = 0; k < c.n_tasks; k++)
        assert_true(same_bits_f(tl_model_effective_weight(b, k), tl_model_effective_weight(u, k)));

    /* The first model, continued without a checkpoint, agrees as well. */
    fit_opts(&o, ok, M);
    fit_ok(a, &d.train, va, &o);
    assert_true(same_params(a, u));

    tl_model_free(a);
    tl_model_free(b);
    tl_model_free(u);
    free(path);
    tlt_tempdir_free(dir);
    free_data(&d);
}

/* 8 batches per epoch: N=5 stops mid-epoch 1, N+M=21 ends inside epoch 3. */
static void test_resume_adam(void **state)
{
    (void)state;
    check_resume(TL_WEIGHTING_FIXED, TL_OPTIM_ADAM, 0.0f, 5, 16, 0);
}

static void test_resume_adam_dropout(void **state)
{
    (void)state;
    check_resume(TL_WEIGHTING_FIXED, TL_OPTIM_ADAM, 0.3f, 5, 16, 0);
}

static void test_resume_sgd_momentum_dropout(void **state)
{
    (void)state;
    check_resume(TL_WEIGHTING_FIXED, TL_OPTIM_SGD, 0.2f, 8, 9, 0); /* at an epoch boundary */
}

static void test_resume_with_valid(void **state)
{
    (void)state;
    check_resume(TL_WEIGHTING_FIXED, TL_OPTIM_ADAM, 0.1f, 11, 10, 1);
}

static void test_resume_uncertainty(void **state)
{
    (void)state;
    check_resume(TL_WEIGHTING_UNCERTAINTY, TL_OPTIM_ADAM, 0.1f, 5, 16, 0);
}

static void test_resume_gradnorm(void **state)
{
    (void)state;
    check_resume(TL_WEIGHTING_GRADNORM, TL_OPTIM_ADAM, 0.1f, 5, 16, 0);
}

static void test_resume_pcgrad(void **state)
{
    (void)state;
    check_resume(TL_WEIGHTING_PCGRAD, TL_OPTIM_ADAM, 0.1f, 5, 16, 0);
}

/* A learning-rate schedule is part of the optimizer's checkpoint: a resumed
 * fit continues it exactly (warm-up, then cosine; and step decay). */
static void test_resume_schedules(void **state)
{
    (void)state;
    resume_schedule = 1;
    check_resume(TL_WEIGHTING_FIXED, TL_OPTIM_ADAM, 0.1f, 3, 14, 0); /* stops inside the warm-up */
    check_resume(TL_WEIGHTING_FIXED, TL_OPTIM_SGD, 0.0f, 9, 10, 0);
    resume_schedule = 2;
    check_resume(TL_WEIGHTING_FIXED, TL_OPTIM_ADAGRAD, 0.0f, 5, 7, 0);
    resume_schedule = 0;
}

/* DWA's factors come from the epochs' mean losses: a checkpoint taken
 * mid-epoch must not change the mean of that epoch. */
static void test_resume_dwa_mid_epoch(void **state)
{
    (void)state;
    check_resume(TL_WEIGHTING_DWA, TL_OPTIM_ADAM, 0.0f, 5, 24, 0);
}

/* ---- round trip ------------------------------------------------------------------ */

static void test_roundtrip(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 5);
    char *dir = tlt_tempdir_new();
    char *path = path_in(dir, "rt.tlm");
    tl_model_config c;
    make_cfg(&c, TL_WEIGHTING_UNCERTAINTY, 0.1f);
    tl_model *a = new_model(&c);

    /* An untrained model round-trips too (no optimizer yet, empty history). */
    save_ok(a, path);
    tl_model *b = load_ok(path);
    assert_true(same_params(a, b));
    assert_null(tl_model_optim(b));
    assert_int_equal(tl_model_steps(b), 0);
    tl_model_free(b);

    tl_fit_options o;
    fit_opts(&o, TL_OPTIM_ADAMW, 0);
    o.epochs = 2;
    o.optim.clip_norm = 5.0f;
    fit_ok(a, &d.train, &d.valid, &o);
    assert_int_equal(tl_model_set_weight(a, 1, 0.25f), TL_OK);
    save_ok(a, path);
    b = load_ok(path);

    const tl_model_config *ca = tl_model_config_get(a), *cb = tl_model_config_get(b);
    assert_int_equal(cb->backbone.kind, ca->backbone.kind);
    assert_int_equal(cb->backbone.experts, ca->backbone.experts);
    assert_int_equal(cb->backbone.expert.n, ca->backbone.expert.n);
    assert_true(same_bits_f(cb->backbone.expert.dropout, ca->backbone.expert.dropout));
    assert_int_equal(cb->n_tasks, 2);
    assert_string_equal(cb->tasks[0].name, "click");
    assert_string_equal(cb->tasks[1].name, "buy");
    assert_int_equal(cb->tasks[1].tower.units[0], 8);
    assert_int_equal(cb->n_cat, N_CAT);
    assert_int_equal(cb->vocab[1], 10);
    assert_int_equal(cb->n_num, N_NUM);
    assert_int_equal(cb->emb_dim, 4);
    assert_int_equal(cb->weighting, TL_WEIGHTING_UNCERTAINTY);
    assert_int_equal(cb->max_batch, BATCH);
    assert_true(cb->seed == 11);

    assert_true(tl_model_get_weight(b, 1) == 0.25f);
    assert_true(tl_model_get_weight(b, 0) == 1.0f);
    for (int k = 0; k < 2; k++)
        assert_true(same_bits_f(tl_model_effective_weight(a, k), tl_model_effective_weight(b, k)));
    assert_true(same_params(a, b));
    assert_true(same_optim(a, b));
    assert_int_equal(tl_optim_get_config(tl_model_optim(b))->kind, TL_OPTIM_ADAMW);
    assert_true(tl_optim_get_config(tl_model_optim(b))->clip_norm == 5.0f);
    assert_int_equal(tl_optim_steps(tl_model_optim(b)), 16);
    assert_int_equal(tl_model_steps(b), 16);
    assert_int_equal(tl_model_epochs_done(b), 2);
    assert_true(same_history(a, b));
    const tl_epoch_record *er;
    assert_int_equal(tl_model_history_epochs(b, &er), 2);
    assert_true(er[1].valid_metric[0] > 0.5); /* a real AUC came through */

    tl_task_eval ea[2], eb[2];
    assert_int_equal(tl_model_evaluate(a, &d.valid, 10, ea, NULL), TL_OK);
    assert_int_equal(tl_model_evaluate(b, &d.valid, 10, eb, NULL), TL_OK);
    for (int k = 0; k < 2; k++) {
        assert_true(same_bits_d(ea[k].bin.auc, eb[k].bin.auc));
        assert_true(same_bits_d(ea[k].bin.logloss, eb[k].bin.logloss));
    }
    /* Saving the loaded model gives the same bytes. */
    char *path2 = path_in(dir, "rt2.tlm");
    save_ok(b, path2);
    FILE *f1 = fopen(path, "rb"), *f2 = fopen(path2, "rb");
    int same = 1, c1, c2;
    do {
        c1 = fgetc(f1);
        c2 = fgetc(f2);
        if (c1 != c2) same = 0;
    } while (same && c1 != EOF);
    fclose(f1);
    fclose(f2);
    assert_true(same);

    tl_model_free(a);
    tl_model_free(b);
    free(path);
    free(path2);
    tlt_tempdir_free(dir);
    free_data(&d);
}

/* ---- refusals --------------------------------------------------------------------- */

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*n + 64);
    assert_int_equal(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

static void write_all(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void put32(unsigned char *d, uint32_t v)
{
    for (int i = 0; i < 4; i++) d[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *d)
{
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

/* Recompute the recorded length and the CRC after editing a file image. */
static void reseal(unsigned char *p, size_t n)
{
    for (int i = 0; i < 8; i++) p[16 + i] = (unsigned char)((uint64_t)n >> (8 * i));
    put32(p + n - 4, (uint32_t)crc32(0L, p, (uInt)(n - 4)));
}

/* Loading must fail with `want` and a message containing the path and `needle`. */
static void expect_refused(const char *path, tl_status want, const char *needle)
{
    tl_model *m = (tl_model *)&m;
    tl_status st = tl_model_load(path, &m);
    printf("load -> %s: %s\n", tl_status_name(st), tl_errmsg());
    assert_int_equal(st, want);
    assert_null(m);
    assert_non_null(strstr(tl_errmsg(), path));
    if (!strstr(tl_errmsg(), needle)) fail_msg("message lacks '%s'", needle);
}

static unsigned char *find_bytes(unsigned char *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, s, k) == 0) return p + i;
    return NULL;
}

/* Offset of the section with `tag` (its header), or 0. */
static size_t find_section(const unsigned char *p, size_t n, const char *tag)
{
    size_t pos = 24;
    while (pos + 16 <= n - 4) {
        uint64_t size = get32(p + pos + 8) | (uint64_t)get32(p + pos + 12) << 32;
        if (memcmp(p + pos, tag, 4) == 0) return pos;
        pos += 16 + (size_t)size;
    }
    return 0;
}

typedef struct {
    tdata d;
    char *dir, *good, *bad;
    unsigned char *img;
    size_t n;
} fixture;

static void fixture_open(fixture *x)
{
    make_data(&x->d, 9);
    x->dir = tlt_tempdir_new();
    x->good = path_in(x->dir, "good.tlm");
    x->bad = path_in(x->dir, "bad.tlm");
    tl_model_config c;
    make_cfg(&c, TL_WEIGHTING_FIXED, 0.0f);
    tl_model *m = new_model(&c);
    tl_fit_options o;
    fit_opts(&o, TL_OPTIM_ADAM, 0);
    o.epochs = 1;
    fit_ok(m, &x->d.train, &x->d.valid, &o);
    save_ok(m, x->good);
    tl_model_free(m);
    x->img = read_all(x->good, &x->n);
}

static void fixture_close(fixture *x)
{
    free(x->img);
    free(x->good);
    free(x->bad);
    tlt_tempdir_free(x->dir);
    free_data(&x->d);
}

static void test_refuse_bad_magic(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    write_all(x.bad, (const unsigned char *)"return os.exit(1)\n", 18);
    expect_refused(x.bad, TL_ERR_FORMAT, "not a towerlab checkpoint (bad magic)");
    unsigned char *p = malloc(x.n);
    memcpy(p, x.img, x.n);
    p[1] = 'X';
    write_all(x.bad, p, x.n);
    expect_refused(x.bad, TL_ERR_FORMAT, "bad magic");
    free(p);
    fixture_close(&x);
}

static void test_refuse_truncated(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    size_t cuts[] = {0, 4, 8, 20, 24, 100, x.n / 2, x.n - 5, x.n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        write_all(x.bad, x.img, cuts[i]);
        expect_refused(x.bad, TL_ERR_FORMAT, "truncated");
    }
    fixture_close(&x);
}

static void test_refuse_flipped_byte(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    unsigned char *p = malloc(x.n);
    /* One bit in the parameters, one in the configuration, one in the CRC. */
    size_t where[] = {x.n / 2, 40, x.n - 2};
    for (size_t i = 0; i < 3; i++) {
        memcpy(p, x.img, x.n);
        p[where[i]] ^= 0x10;
        write_all(x.bad, p, x.n);
        expect_refused(x.bad, TL_ERR_FORMAT, "checksum mismatch");
    }
    /* Appended garbage: the recorded length disagrees. */
    memcpy(p, x.img, x.n);
    FILE *f = fopen(x.bad, "wb");
    fwrite(p, 1, x.n, f);
    fputs("junk", f);
    fclose(f);
    expect_refused(x.bad, TL_ERR_FORMAT, "corrupted");
    free(p);
    fixture_close(&x);
}

static void test_refuse_future_version(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    unsigned char *p = malloc(x.n);
    memcpy(p, x.img, x.n);
    put32(p + 8, TL_IO_FORMAT_VERSION + 1);
    reseal(p, x.n);
    write_all(x.bad, p, x.n);
    expect_refused(x.bad, TL_ERR_FORMAT, "format version 2 is newer");
    free(p);
    fixture_close(&x);
}

static void test_refuse_missing_file(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    char *p = path_in(x.dir, "nope.tlm");
    expect_refused(p, TL_ERR_IO, "No such file");
    expect_refused(x.dir, TL_ERR_IO, "not a regular file");
    free(p);
    fixture_close(&x);
}

/* A section this build does not know: skipped when optional, refused when
 * critical. Inserted right after the header. */
static void test_unknown_sections(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    size_t n = x.n + 16 + 5;
    unsigned char *p = malloc(n);
    memcpy(p, x.img, 24);
    memcpy(p + 24, "XTRA", 4); /* a tag this version does not know */
    put32(p + 28, 0);
    put32(p + 32, 5);
    put32(p + 36, 0);
    memcpy(p + 40, "hello", 5);
    memcpy(p + 45, x.img + 24, x.n - 24);
    reseal(p, n);
    write_all(x.bad, p, n);
    tl_model *m = NULL;
    assert_int_equal(tl_model_load(x.bad, &m), TL_OK);
    tl_model *g = load_ok(x.good);
    assert_true(same_params(m, g));
    tl_model_free(m);
    tl_model_free(g);

    put32(p + 28, TL_IO_CRITICAL);
    memcpy(p + 24, "ZZZZ", 4);
    reseal(p, n);
    write_all(x.bad, p, n);
    expect_refused(x.bad, TL_ERR_FORMAT, "needs section 'ZZZZ'");
    free(p);
    fixture_close(&x);
}

/* Content errors behind a valid CRC: a task count out of range, a section
 * whose length lies, a duplicate or missing section, a parameter of the
 * wrong shape. */
static void test_refuse_inconsistent(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    unsigned char *p = malloc(x.n);
    size_t conf = find_section(x.img, x.n, "CONF"), parm = find_section(x.img, x.n, "PARM");
    assert_true(conf > 0 && parm > 0);

    /* n_tasks and the first name's length precede the name "click". */
    memcpy(p, x.img, x.n);
    unsigned char *name = find_bytes(p + conf, x.n - conf, "click");
    assert_non_null(name);
    put32(name - 8, 100); /* n_tasks (then the name's length) */
    reseal(p, x.n);
    write_all(x.bad, p, x.n);
    expect_refused(x.bad, TL_ERR_FORMAT, "section CONF has a task count out of range");

    memcpy(p, x.img, x.n);
    put32(name - 4, 1000); /* the name's length */
    reseal(p, x.n);
    write_all(x.bad, p, x.n);
    expect_refused(x.bad, TL_ERR_FORMAT, "section CONF has a name that is too long");

    memcpy(p, x.img, x.n);
    put32(p + conf + 8, 0xffffff00u); /* CONF's size past the end */
    reseal(p, x.n);
    write_all(x.bad, p, x.n);
    expect_refused(x.bad, TL_ERR_FORMAT, "runs past the end");

    memcpy(p, x.img, x.n);
    memcpy(p + parm, "CONF", 4); /* PARM renamed: CONF twice */
    reseal(p, x.n);
    write_all(x.bad, p, x.n);
    expect_refused(x.bad, TL_ERR_FORMAT, "section CONF appears twice");

    memcpy(p, x.img, x.n);
    memcpy(p + parm, "parm", 4); /* now unknown (critical) */
    put32(p + parm + 4, 0);      /* optional: skipped, so PARM is missing */
    reseal(p, x.n);
    write_all(x.bad, p, x.n);
    expect_refused(x.bad, TL_ERR_FORMAT, "section PARM is missing");

    /* The embedding table claims 11 rows instead of 20. */
    memcpy(p, x.img, x.n);
    unsigned char *emb = find_bytes(p + parm, x.n - parm, "embedding");
    assert_non_null(emb);
    assert_int_equal(get32(emb + 9), 20);
    put32(emb + 9, 11);
    reseal(p, x.n);
    write_all(x.bad, p, x.n);
    expect_refused(x.bad, TL_ERR_FORMAT, "'embedding' [11 x 4] in the checkpoint");

    /* A configuration the model builder rejects. */
    memcpy(p, x.img, x.n);
    put32(p + conf + 16, 77); /* backbone kind */
    reseal(p, x.n);
    write_all(x.bad, p, x.n);
    expect_refused(x.bad, TL_ERR_FORMAT, "section CONF has field backbone.kind = 77 outside 0..9");
    free(p);
    fixture_close(&x);
}

/* A checkpoint whose bytes are what a writer put there (valid CRC) but whose
 * fields are out of range: each is refused naming the section and the field,
 * before a model is built from it (issue 25 item 5: print, fit and evaluate
 * used to index arrays with such enums and overflow such counters). */
typedef void (*spoil_fn)(tl_model *m);

static void sp_correct(tl_model *m)
{
    m->cfg.distill.enabled = 1;
    m->cfg.distill.n_pairs = 1;
    m->cfg.distill.pairs[0][0] = 0;
    m->cfg.distill.pairs[0][1] = 1;
    m->cfg.distill.flip[0] = 0;
    m->cfg.distill.correct = (tl_distill_correct)16;
}
static void sp_calibrate(tl_model *m)
{
    sp_correct(m);
    m->cfg.distill.correct = TL_CORRECT_BLEND;
    m->cfg.distill.calibrate = (tl_distill_calib)5;
}
static void sp_order(tl_model *m)
{
    sp_correct(m);
    m->cfg.distill.correct = TL_CORRECT_BLEND;
    m->cfg.distill.order = 7;
}
static void sp_flip(tl_model *m)
{
    sp_correct(m);
    m->cfg.distill.correct = TL_CORRECT_BLEND;
    m->cfg.distill.flip[0] = 9;
}
static void sp_weighting(tl_model *m) { m->cfg.weighting = (tl_weighting)99; }
static void sp_weight(tl_model *m) { m->cfg.tasks[1].weight = NAN; }
static void sp_emb(tl_model *m) { m->cfg.emb_dim = 1 << 20; }
static void sp_dml(tl_model *m) { m->cfg.dml.enabled = 5; }
static void sp_epoch(tl_model *m) { m->epoch = INT32_MAX; }
static void sp_step(tl_model *m) { m->step = INT64_MAX; }
static void sp_lr(tl_model *m) { ((tl_optim_config *)tl_optim_get_config(m->opt))->lr = NAN; }
static void sp_beta(tl_model *m) { ((tl_optim_config *)tl_optim_get_config(m->opt))->beta2 = 1.5f; }

static void test_refuse_out_of_range_fields(void **state)
{
    (void)state;
    static const struct {
        spoil_fn fn;
        const char *needle;
    } cases[] = {
        {sp_correct, "section CONF has field distill.correct = 16 outside 0..2"},
        {sp_calibrate, "section CONF has field distill.calibrate = 5 outside 0..1"},
        {sp_order, "section CONF has field distill.order = 7 outside 0..2"},
        {sp_flip, "section CONF has field distill.flip[1] = 9 outside -1..1"},
        {sp_weighting, "section CONF has field weighting = 99 outside 0.."},
        {sp_weight, "section CONF has field tasks[2].weight = nan"},
        {sp_emb, "section CONF has field emb_dim = 1048576 outside 1..4096"},
        {sp_dml, "section CONF has field dml.enabled = 5 outside 0..1"},
        {sp_epoch, "section TRNS has field epoch = 2147483647 outside 0..1073741824"},
        {sp_step, "section TRNS has field step = 9223372036854775807"},
        {sp_lr, "section OPTM has field lr = nan"},
        {sp_beta, "section OPTM has field beta2 = 1.5 outside [0, 1)"},
    };
    fixture x;
    fixture_open(&x);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tl_model *m = load_ok(x.good);
        cases[i].fn(m);
        save_ok(m, x.bad);
        tl_model_free(m);
        expect_refused(x.bad, TL_ERR_FORMAT, cases[i].needle);
    }
    fixture_close(&x);
}

/* The weighting strategy checks the fields of its own section (its state is
 * its own): a negative factor written into WGHT is refused. */
static void test_refuse_bad_weighting_factor(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    size_t w = find_section(x.img, x.n, "WGHT");
    assert_true(w > 0);
    unsigned char *p = malloc(x.n);
    memcpy(p, x.img, x.n);
    float f = -1.0f;
    uint32_t u;
    memcpy(&u, &f, 4);
    put32(p + w + 16 + 4, u); /* after the task count: factor[0] */
    reseal(p, x.n);
    write_all(x.bad, p, x.n);
    free(p);
    expect_refused(x.bad, TL_ERR_FORMAT, "section WGHT has field factor = -1");
    fixture_close(&x);
}

/* Random damage with a valid CRC (outside CONF, whose sizes would make
 * legitimate but huge models): the loader refuses or accepts, never crashes
 * (run under ASan by make check). */
static void test_fuzz_loader(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    size_t conf = find_section(x.img, x.n, "CONF");
    size_t conf_end = conf + 16 + get32(x.img + conf + 8);
    unsigned char *p = malloc(x.n);
    tl_rng r;
    tl_rng_seed(&r, 42);
    int refused = 0, loaded = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(p, x.img, x.n);
        size_t n = x.n;
        int edits = 1 + (int)tl_rng_below(&r, 4);
        for (int e = 0; e < edits; e++) {
            size_t at = conf_end + (size_t)tl_rng_below(&r, (uint64_t)(x.n - 4 - conf_end));
            p[at] = (unsigned char)tl_rng_below(&r, 256);
        }
        if (it % 5 == 0) { /* also cut it short, then claim that length */
            n = conf_end + 4 + (size_t)tl_rng_below(&r, (uint64_t)(x.n - conf_end - 4));
        }
        reseal(p, n);
        write_all(x.bad, p, n);
        tl_model *m = NULL;
        tl_status st = tl_model_load(x.bad, &m);
        if (st == TL_OK) {
            loaded++;
            tl_model_free(m);
        } else {
            assert_int_equal(st, TL_ERR_FORMAT);
            assert_null(m);
            refused++;
        }
    }
    printf("fuzz: %d refused, %d loaded\n", refused, loaded);
    assert_true(refused > 30);
    free(p);
    fixture_close(&x);
}

/* ---- atomic saving ------------------------------------------------------------------ */

/* Files in dir other than the expected ones (temporaries left behind). */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void expect_save_fails(tl_model *m, const char *path, const char *needle)
{
    tl_status st = tl_model_save(m, path);
    printf("save %s -> %s: %s\n", path, tl_status_name(st), tl_errmsg());
    assert_int_equal(st, TL_ERR_IO);
    assert_non_null(strstr(tl_errmsg(), path));
    if (needle && !strstr(tl_errmsg(), needle)) fail_msg("message lacks '%s'", needle);
}

static void test_save_errors(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    tl_model *m = load_ok(x.good);

    char *missing = path_in(x.dir, "no/such/dir/x.tlm");
    expect_save_fails(m, missing, "No such file or directory");
    char *under_file = path_in(x.dir, "good.tlm/x.tlm");
    expect_save_fails(m, under_file, "Not a directory");
    expect_save_fails(m, x.dir, "Is a directory");
    expect_save_fails(m, "/proc/towerlab-test.tlm", NULL);
    assert_int_equal(count_files(x.dir), 1);

    if (geteuid() != 0) { /* root writes into read-only directories anyway */
        char *ro = path_in(x.dir, "ro");
        char *inside = path_in(ro, "x.tlm");
        assert_int_equal(mkdir(ro, 0700), 0);
        save_ok(m, inside);
        assert_int_equal(chmod(ro, 0500), 0);
        expect_save_fails(m, inside, "Permission denied");
        tl_model *back = load_ok(inside);
        tl_model_free(back);
        assert_int_equal(chmod(ro, 0700), 0);
        assert_int_equal(count_files(ro), 1);
        free(ro);
        free(inside);
    }
    tl_model_free(m);
    free(missing);
    free(under_file);
    fixture_close(&x);
}

/* tl.load of a FIFO returns at once (it used to block in fopen forever). */
static void test_load_fifo_does_not_block(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    char *fifo = path_in(dir, "pipe.tlm");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(20); /* a blocking open ends the test program: a failure */
    expect_refused(fifo, TL_ERR_IO, "not a regular file");
    alarm(0);
    unlink(fifo);
    free(fifo);
    tlt_tempdir_free(dir);
}

/* m:save follows a symbolic link (the link stays, its target is replaced)
 * and refuses a FIFO or device target, leaving it alone. */
static void test_save_symlink_and_special_targets(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    tl_model *m = load_ok(x.good);
    char *link = path_in(x.dir, "link.tlm"), *link2 = path_in(x.dir, "link2.tlm");
    assert_int_equal(symlink("good.tlm", link), 0);   /* relative */
    assert_int_equal(symlink(link, link2), 0);        /* a chain, absolute */
    m->step = 12345;
    save_ok(m, link2);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(lstat(link2, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    tl_model *back = load_ok(x.good);
    assert_int_equal(tl_model_steps(back), 12345);
    tl_model_free(back);

    char *fifo = path_in(x.dir, "pipe.tlm");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_save_fails(m, fifo, "not a regular file");
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    if (stat("/dev/full", &st) == 0) {
        expect_save_fails(m, "/dev/full", "not a regular file");
        assert_int_equal(stat("/dev/full", &st), 0);
        assert_true(S_ISCHR(st.st_mode));
    }
    unlink(fifo);
    unlink(link);
    unlink(link2);
    free(fifo);
    free(link);
    free(link2);
    tl_model_free(m);
    fixture_close(&x);
}

/* Temporaries of killed saves (<path>.tmp.XXXXXX, older than the process)
 * are removed by the next save to the same path; a newer one (a save in
 * progress elsewhere) and other paths' are kept. */
static void test_save_removes_stale_temporaries(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    tl_model *m = load_ok(x.good);
    char *old1 = path_in(x.dir, "good.tlm.tmp.AbC123"), *old2 = path_in(x.dir, "good.tlm.tmp.zzzzzz");
    char *fresh = path_in(x.dir, "good.tlm.tmp.FrEsH1"), *other = path_in(x.dir, "bad.tlm.tmp.AbC123");
    char *longer = path_in(x.dir, "good.tlm.tmp.AbC1234");
    const char *files[5] = {old1, old2, fresh, other, longer};
    time_t now = time(NULL);
    for (int i = 0; i < 5; i++) {
        write_all(files[i], (const unsigned char *)"x", 1);
        struct timeval tv[2] = {{now - 3600, 0}, {now - 3600, 0}};
        if (files[i] == fresh) tv[0].tv_sec = tv[1].tv_sec = now + 5;
        assert_int_equal(utimes(files[i], tv), 0);
    }
    tl_io_set_process_start((double)now);
    save_ok(m, x.good);
    tl_io_set_process_start(0);
    assert_int_equal(access(old1, F_OK), -1);
    assert_int_equal(access(old2, F_OK), -1);
    assert_int_equal(access(fresh, F_OK), 0);
    assert_int_equal(access(other, F_OK), 0);
    assert_int_equal(access(longer, F_OK), 0);
    for (int i = 0; i < 5; i++) {
        unlink(files[i]);
        free((void *)files[i]);
    }
    tl_model_free(m);
    fixture_close(&x);
}

/* Two different models: A is saved, then saving B over it fails in every
 * possible allocation, and mid-write (file size limit); A stays loadable and
 * no temporary file remains. */
static void test_save_atomic(void **state)
{
    (void)state;
    tdata d;
    make_data(&d, 4);
    char *dir = tlt_tempdir_new();
    char *path = path_in(dir, "ckpt.tlm");
    tl_model_config c;
    make_cfg(&c, TL_WEIGHTING_FIXED, 0.0f);
    tl_model *a = new_model(&c), *b = new_model(&c);
    tl_fit_options o;
    fit_opts(&o, TL_OPTIM_ADAM, 3);
    fit_ok(a, &d.train, NULL, &o);
    fit_opts(&o, TL_OPTIM_ADAM, 7);
    fit_ok(b, &d.train, NULL, &o);
    assert_false(same_params(a, b));
    save_ok(a, path);

    int faults = 0;
    for (uint64_t k = 1;; k++) {
        tl_fault_inject_nth(k);
        tl_status st = tl_model_save(b, path);
        int injected = tl_fault_injected();
        tl_fault_inject_nth(0);
        if (!injected) {
            assert_int_equal(st, TL_OK);
            break;
        }
        faults++;
        assert_int_equal(st, TL_ERR_NOMEM);
        assert_int_equal(count_files(dir), 1);
        tl_model *back = load_ok(path);
        assert_true(same_params(back, a));
        tl_model_free(back);
    }
    printf("save: %d allocation failures survived\n", faults);
    assert_true(faults >= 2);
    tl_model *back = load_ok(path);
    assert_true(same_params(back, b));
    tl_model_free(back);

    /* Disk full mid-write: a file size limit below the checkpoint's size. */
    save_ok(a, path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size / 2;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    tl_status s = tl_model_save(b, path);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", tl_errmsg());
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    printf("save with a size limit -> %s: %s\n", tl_status_name(s), msg);
    assert_int_equal(s, TL_ERR_IO);
    assert_non_null(strstr(msg, path));
    assert_non_null(strstr(msg, "write failed"));
    assert_non_null(strstr(msg, "File too large (disk quota / file size limit reached"));
    assert_int_equal(count_files(dir), 1);
    back = load_ok(path);
    assert_true(same_params(back, a));
    tl_model_free(back);

    /* The file's mode follows the umask, as a file made by open(2) would. */
    const mode_t masks[3] = {022, 077, 002};
    for (int i = 0; i < 3; i++) {
        mode_t prev_mask = umask(masks[i]);
        save_ok(a, path);
        umask(prev_mask);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0666 & ~masks[i]);
    }

    tl_model_free(a);
    tl_model_free(b);
    free(path);
    tlt_tempdir_free(dir);
    free_data(&d);
}

/* Loading under every allocation failure: an error, never a half model. */
static void test_load_alloc_faults(void **state)
{
    (void)state;
    fixture x;
    fixture_open(&x);
    int faults = 0;
    for (uint64_t k = 1;; k++) {
        tl_model *m = NULL;
        tl_fault_inject_nth(k);
        tl_status st = tl_model_load(x.good, &m);
        int injected = tl_fault_injected();
        tl_fault_inject_nth(0);
        if (!injected) {
            assert_int_equal(st, TL_OK);
            tl_model_free(m);
            break;
        }
        faults++;
        if (st != TL_ERR_NOMEM) fail_msg("k=%llu: %s: %s", (unsigned long long)k,
                                         tl_status_name(st), tl_errmsg());
        assert_null(m);
    }
    printf("load: %d allocation failures survived\n", faults);
    assert_true(faults >= 5);
    fixture_close(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_adam),
        cmocka_unit_test(test_resume_adam_dropout),
        cmocka_unit_test(test_resume_sgd_momentum_dropout),
        cmocka_unit_test(test_resume_with_valid),
        cmocka_unit_test(test_resume_uncertainty),
        cmocka_unit_test(test_resume_gradnorm),
        cmocka_unit_test(test_resume_pcgrad),
        cmocka_unit_test(test_resume_dwa_mid_epoch),
        cmocka_unit_test(test_resume_schedules),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_refuse_bad_magic),
        cmocka_unit_test(test_refuse_truncated),
        cmocka_unit_test(test_refuse_flipped_byte),
        cmocka_unit_test(test_refuse_future_version),
        cmocka_unit_test(test_refuse_missing_file),
        cmocka_unit_test(test_unknown_sections),
        cmocka_unit_test(test_refuse_inconsistent),
        cmocka_unit_test(test_refuse_out_of_range_fields),
        cmocka_unit_test(test_refuse_bad_weighting_factor),
        cmocka_unit_test(test_fuzz_loader),
        cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_save_atomic),
        cmocka_unit_test(test_load_fifo_does_not_block),
        cmocka_unit_test(test_save_symlink_and_special_targets),
        cmocka_unit_test(test_save_removes_stale_temporaries),
        cmocka_unit_test(test_load_alloc_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
