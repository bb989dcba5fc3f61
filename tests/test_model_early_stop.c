/* test_model_early_stop.c — early stopping's record (the best validation
 * monitor so far, its weights, patience's count) is training state: a fit
 * with valid= and patience= stopped after epoch k or mid-epoch (a progress
 * callback, max_steps), resumed in the same process or after a checkpoint
 * round trip, ends at the same epoch with the same final weights,
 * predictions and history as the fit never stopped; in memory and on a
 * stream of shards. A finished run's record does not carry into the next
 * fit, and a checkpoint without the record loads with an empty one; a
 * corrupted record is refused. Also data-parallel over grains. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "data.h"
#include "data/shards.h"
#include "dist.h"
#include "io.h"
#include "model.h"
#include "support.h"
#include "synthetic.h"

#define BATCH 100
#define EPOCHS 12
#define PATIENCE 2

static tl_dataset *pair_data(void)
{
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    p.rows = 3000;
    tl_dataset *d;
    assert_int_equal(tl_data_synthetic_pair(&p, &d), TL_OK);
    return d;
}

/* MMoE with dropout, a learning rate high enough that validation peaks in
 * the first epochs and patience stops the run well before EPOCHS. */
static tl_model *new_model(const tl_dataset *d)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    tl_mlp_spec tower = {1, {16}, 0};
    c.backbone.kind = TL_BACKBONE_MMOE;
    c.backbone.expert = (tl_mlp_spec){1, {32}, 0.1f};
    c.backbone.experts = 2;
    c.emb_dim = 8;
    c.max_batch = BATCH;
    c.seed = 5;
    assert_int_equal(tl_model_config_from_dataset(&c, d, &tower), TL_OK);
    tl_model *m;
    assert_int_equal(tl_model_new(&c, &m), TL_OK);
    return m;
}

typedef struct {
    int64_t at_step; /* stop after this step (0: never) */
    int at_epoch;    /* stop at the end of this epoch (0: never) */
} stopper;

static int stop_cb(void *ud, const tl_progress *p)
{
    const stopper *s = ud;
    if (p->kind == TL_PROGRESS_STEP && s->at_step > 0 && p->step == s->at_step) return 1;
    return p->kind == TL_PROGRESS_EPOCH && s->at_epoch > 0 && p->epoch == s->at_epoch;
}

static int g_grains; /* > 1: data-parallel over that many grains in one process */

static void fit_opts(tl_fit_options *o, int epochs, stopper *s)
{
    tl_fit_defaults(o);
    if (g_grains > 1) {
        o->dist = tl_dist_local();
        o->grains = g_grains;
    }
    o->epochs = epochs;
    o->batch = BATCH;
    o->patience = PATIENCE;
    o->optim.lr = 0.003f;
    o->progress = stop_cb;
    o->progress_ud = s;
    o->progress_every = 1;
}

/* in memory (sh NULL) or on a fresh shuffled stream of sh */
static tl_status fit_on(tl_model *m, const tl_dataset *d, tl_shards *sh, const tl_fit_options *o)
{
    const tl_split *valid = tl_dataset_split(d, "valid");
    if (!sh) return tl_model_fit(m, tl_dataset_split(d, "train"), valid, o);
    tl_stream *st;
    assert_int_equal(tl_stream_open(sh, 0, 9, 500, TL_STREAM_SHUFFLE, &st), TL_OK);
    tl_status s = tl_model_fit_stream(m, st, valid, o);
    tl_stream_close(st);
    return s;
}

/* Parameters, predictions on valid, step and epoch history, steps and
 * epochs: the reference's bits. */
static void assert_same_model(tl_model *a, tl_model *b, const tl_split *valid)
{
    size_t na, nb;
    float *pa = tl_graph_params(tl_model_graph(a), &na), *pb = tl_graph_params(tl_model_graph(b), &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na * sizeof *pa);
    size_t n = valid->n * 2;
    float *qa = malloc(n * sizeof *qa), *qb = malloc(n * sizeof *qb);
    assert_int_equal(tl_model_predict(a, valid, qa), TL_OK);
    assert_int_equal(tl_model_predict(b, valid, qb), TL_OK);
    assert_memory_equal(qa, qb, n * sizeof *qa);
    free(qa);
    free(qb);
    assert_int_equal(tl_model_steps(a), tl_model_steps(b));
    assert_int_equal(tl_model_epochs_done(a), tl_model_epochs_done(b));
    const tl_step_record *sa, *sb;
    size_t ka = tl_model_history_steps(a, &sa), kb = tl_model_history_steps(b, &sb);
    assert_int_equal(ka, kb);
    for (size_t i = 0; i < ka; i++) {
        assert_int_equal(sa[i].step, sb[i].step);
        assert_memory_equal(sa[i].loss, sb[i].loss, 2 * sizeof(float));
    }
    const tl_epoch_record *ea, *eb;
    size_t ea_n = tl_model_history_epochs(a, &ea), eb_n = tl_model_history_epochs(b, &eb);
    assert_int_equal(ea_n, eb_n);
    for (size_t e = 0; e < ea_n; e++) {
        assert_int_equal(ea[e].epoch, eb[e].epoch);
        assert_memory_equal(ea[e].train_loss, eb[e].train_loss, 2 * sizeof(double));
        assert_memory_equal(&ea[e].monitor, &eb[e].monitor, sizeof(double));
    }
}

/* Stopped by s (or max_steps), optionally saved and loaded, then resumed
 * for the epochs left. */
static tl_model *stopped_and_resumed(const tl_dataset *d, tl_shards *sh, stopper s, int64_t max_steps,
                                     const char *ckpt)
{
    tl_model *m = new_model(d);
    tl_fit_options o;
    fit_opts(&o, EPOCHS, &s);
    o.max_steps = max_steps;
    assert_int_equal(fit_on(m, d, sh, &o), max_steps ? TL_OK : TL_ERR_CANCELLED);
    if (ckpt) {
        assert_int_equal(tl_model_save(m, ckpt), TL_OK);
        tl_model_free(m);
        assert_int_equal(tl_model_load(ckpt, &m), TL_OK);
    }
    stopper none = {0, 0};
    fit_opts(&o, EPOCHS - tl_model_epochs_done(m), &none);
    assert_int_equal(fit_on(m, d, sh, &o), TL_OK);
    return m;
}

static void check_resumes(tl_shards *sh, const char *dir)
{
    tl_dataset *d = pair_data();
    const tl_split *valid = tl_dataset_split(d, "valid");
    tl_model *ref = new_model(d);
    stopper none = {0, 0};
    tl_fit_options o;
    fit_opts(&o, EPOCHS, &none);
    assert_int_equal(fit_on(ref, d, sh, &o), TL_OK);
    /* patience ended the run, after an epoch that improved on the one before */
    int stop = tl_model_epochs_done(ref);
    assert_true(stop >= 4 && stop < EPOCHS);
    const tl_epoch_record *er;
    assert_int_equal(tl_model_history_epochs(ref, &er), (size_t)stop);
    assert_true(er[stop - 1 - PATIENCE].monitor > er[0].monitor);
    int64_t per_epoch = tl_model_steps(ref) / stop;
    char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s/m.tlm", dir);
    for (int k = 1; k <= stop; k++) /* at the end of every epoch, the last where patience ran out */
        for (int c = 0; c < 2; c++) {
            tl_model *m = stopped_and_resumed(d, sh, (stopper){0, k}, 0, c ? ckpt : NULL);
            assert_same_model(ref, m, valid);
            tl_model_free(m);
        }
    int64_t mid[] = {per_epoch * (stop - 2) + per_epoch / 2, per_epoch * (stop - 1) + 1};
    for (size_t i = 0; i < sizeof mid / sizeof *mid; i++)
        for (int c = 0; c < 2; c++) {
            tl_model *m = stopped_and_resumed(d, sh, (stopper){mid[i], 0}, 0, c ? ckpt : NULL);
            assert_same_model(ref, m, valid);
            tl_model_free(m);
            m = stopped_and_resumed(d, sh, none, mid[i], c ? ckpt : NULL);
            assert_same_model(ref, m, valid);
            tl_model_free(m);
        }
    tl_model *m = stopped_and_resumed(d, sh, none, per_epoch * (stop - 1), ckpt);
    assert_same_model(ref, m, valid);
    tl_model_free(m);
    tl_model_free(ref);
    tl_dataset_free(d);
}

static void test_early_stop_resume_in_memory(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    check_resumes(NULL, dir);
    tlt_tempdir_free(dir);
}

static void stream_resumes(void)
{
    tl_dataset *d = pair_data();
    char *dir = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert(d, dir, 500, NULL, NULL), TL_OK);
    tl_shards *sh;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    check_resumes(sh, dir);
    tl_shards_close(sh);
    tl_dataset_free(d);
    tlt_tempdir_free(dir);
}

static void test_early_stop_resume_stream(void **state)
{
    (void)state;
    stream_resumes();
}

/* Data-parallel over 3 grains, in memory and over shards (grain j's files). */
static void test_early_stop_resume_grains(void **state)
{
    (void)state;
    g_grains = 3;
    char *dir = tlt_tempdir_new();
    check_resumes(NULL, dir);
    tlt_tempdir_free(dir);
    stream_resumes();
    g_grains = 0;
}

static int first_improved_cb(void *ud, const tl_progress *p)
{
    int *first = ud;
    if (p->kind == TL_PROGRESS_EPOCH && *first < 0) *first = p->improved;
    return 0;
}

/* A run that ended (patience) is closed: the next fit starts a new record,
 * whose first validated epoch improves on nothing; also after a checkpoint
 * round trip, whose file then holds no record. */
static void test_early_stop_new_run_new_record(void **state)
{
    (void)state;
    tl_dataset *d = pair_data();
    char *dir = tlt_tempdir_new();
    char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s/m.tlm", dir);
    for (int c = 0; c < 2; c++) {
        tl_model *m = new_model(d);
        stopper none = {0, 0};
        tl_fit_options o;
        fit_opts(&o, EPOCHS, &none);
        assert_int_equal(fit_on(m, d, NULL, &o), TL_OK);
        assert_true(tl_model_epochs_done(m) < EPOCHS);
        if (c) {
            assert_int_equal(tl_model_save(m, ckpt), TL_OK);
            tl_model_free(m);
            assert_int_equal(tl_model_load(ckpt, &m), TL_OK);
        }
        int first = -1;
        fit_opts(&o, 1, NULL);
        o.progress = first_improved_cb;
        o.progress_ud = &first;
        assert_int_equal(fit_on(m, d, NULL, &o), TL_OK);
        assert_int_equal(first, 1);
        tl_model_free(m);
    }
    tl_dataset_free(d);
    tlt_tempdir_free(dir);
}

/* An open run's record is continued only by a fit that validates as it did:
 * a fit without valid= (or with another patience) after a run stopped by
 * max_steps starts a new record, so it neither restores nor compares with the
 * old run's best. */
static void test_early_stop_other_fit_new_record(void **state)
{
    (void)state;
    tl_dataset *d = pair_data();
    const tl_split *train = tl_dataset_split(d, "train"), *valid = tl_dataset_split(d, "valid");
    tl_model *m[2];
    for (int k = 0; k < 2; k++) {
        m[k] = new_model(d);
        stopper none = {0, 0};
        tl_fit_options o;
        fit_opts(&o, EPOCHS, &none);
        o.max_steps = 100; /* past epoch 4's best: the open record has its weights */
        assert_int_equal(fit_on(m[k], d, NULL, &o), TL_OK);
        fit_opts(&o, 2, &none);
        o.restore_best = k; /* k = 1: the reference, which could not restore anything */
        assert_int_equal(tl_model_fit(m[k], train, NULL, &o), TL_OK);
    }
    assert_same_model(m[0], m[1], valid);
    int first = -1;
    tl_fit_options o;
    fit_opts(&o, 1, NULL);
    o.patience = PATIENCE + 1;
    o.progress = first_improved_cb;
    o.progress_ud = &first;
    stopper none = {0, 0};
    tl_fit_options o1;
    fit_opts(&o1, EPOCHS, &none);
    o1.max_steps = 100;
    tl_model *n = new_model(d);
    assert_int_equal(fit_on(n, d, NULL, &o1), TL_OK);
    assert_int_equal(fit_on(n, d, NULL, &o), TL_OK);
    assert_int_equal(first, 1); /* a new record: its first epoch improves on nothing */
    tl_model_free(n);
    tl_model_free(m[0]);
    tl_model_free(m[1]);
    tl_dataset_free(d);
}

/* A checkpoint's record is checked when read: a count of epochs without
 * improvement above the run's last epoch is refused, naming the field. */
static void test_early_stop_corrupted_record(void **state)
{
    (void)state;
    tl_dataset *d = pair_data();
    char *dir = tlt_tempdir_new();
    char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s/m.tlm", dir);
    tl_model *m = new_model(d);
    stopper none = {0, 0};
    tl_fit_options o;
    fit_opts(&o, EPOCHS, &none);
    o.max_steps = 100; /* past epoch 4's best: the record has its weights */
    assert_int_equal(fit_on(m, d, NULL, &o), TL_OK);
    size_t pf;
    tl_graph_params(tl_model_graph(m), &pf);
    assert_int_equal(tl_model_save(m, ckpt), TL_OK);
    tl_model_free(m);
    FILE *f = fopen(ckpt, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n);
    assert_int_equal(fread(p, 1, n, f), n);
    fclose(f);
    /* sections: tag, 4 bytes, 8 bytes of length, the payload; TRNS's ends
     * with the record (open, last epoch, bad epochs, have best, best,
     * patience, monitored task, valid rows) and the best weights */
    size_t pos = 24, at = 0;
    while (pos + 16 <= n - 4) {
        uint64_t size = 0;
        for (int i = 0; i < 8; i++) size |= (uint64_t)p[pos + 8 + i] << (8 * i);
        if (memcmp(p + pos, "TRNS", 4) == 0 || memcmp(p + pos, "SNRT", 4) == 0) at = pos + 16 + (size_t)size;
        pos += 16 + (size_t)size;
    }
    assert_true(at > 0);
    /* bad epochs: before have_best, best, patience, monitored task, valid rows */
    unsigned char *bad = p + at - pf * 4 - 16 - 8 - 8;
    int32_t old;
    memcpy(&old, bad, 4);
    assert_true(old >= 0 && old <= EPOCHS);
    int32_t v = 1000;
    memcpy(bad, &v, 4);
    uint32_t crc = (uint32_t)crc32(0L, p, (uInt)(n - 4));
    for (int i = 0; i < 4; i++) p[n - 4 + i] = (unsigned char)(crc >> (8 * i));
    f = fopen(ckpt, "wb");
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
    free(p);
    assert_int_equal(tl_model_load(ckpt, &m), TL_ERR_FORMAT);
    if (!strstr(tl_errmsg(), "early stopping's bad epochs")) fail_msg("message: %s", tl_errmsg());
    tl_dataset_free(d);
    tlt_tempdir_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_early_stop_resume_in_memory),
        cmocka_unit_test(test_early_stop_resume_stream),
        cmocka_unit_test(test_early_stop_resume_grains),
        cmocka_unit_test(test_early_stop_new_run_new_record),
        cmocka_unit_test(test_early_stop_other_fit_new_record),
        cmocka_unit_test(test_early_stop_corrupted_record),
    };
    return cmocka_run_group_tests_name("model_early_stop", tests, NULL, NULL);
}
