/* test_stream_resume.c — a stream fit (m:fit{data=sh}) stopped and resumed
 * continues its epoch where it stopped, with the bits of an uninterrupted
 * fit: stopped by the progress callback mid-epoch 2, at an epoch's last step
 * and at an epoch end, through a checkpoint round trip, with shuffling on,
 * without and with data parallelism (grains in one process); a stopped fit
 * resumed on other shards or another seed is refused, naming what differs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "data/shards.h"
#include "dist.h"
#include "io.h"
#include "model.h"
#include "synthetic.h"
#include "support.h"

#define BATCH 64

static tl_dataset *pair_data(void)
{
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    p.rows = 6000;
    tl_dataset *d;
    assert_int_equal(tl_data_synthetic_pair(&p, &d), TL_OK);
    return d;
}

/* MMoE with dropout (the graph's generator is part of the state) and DWA
 * (the epoch's mean loss is). */
static tl_model *new_model(const tl_dataset *d)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    tl_mlp_spec tower = {1, {8}, 0};
    c.backbone.kind = TL_BACKBONE_MMOE;
    c.backbone.expert = (tl_mlp_spec){1, {16}, 0.1f};
    c.backbone.experts = 2;
    c.weighting = TL_WEIGHTING_DWA;
    c.emb_dim = 4;
    c.max_batch = BATCH;
    c.seed = 3;
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

static void fit_opts(tl_fit_options *o, int epochs, tl_dist *dist, int grains, stopper *s)
{
    tl_fit_defaults(o);
    o->epochs = epochs;
    o->batch = BATCH;
    o->dist = dist;
    o->grains = grains;
    o->progress = stop_cb;
    o->progress_ud = s;
    o->progress_every = 1;
}

static tl_stream *open_stream(tl_shards *sh, uint64_t seed)
{
    tl_stream *s;
    assert_int_equal(tl_stream_open(sh, 0, seed, 700, TL_STREAM_SHUFFLE, &s), TL_OK);
    return s;
}

/* The model's predictions on valid, parameters and history must be the
 * reference's bits. */
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
    const tl_step_record *sa, *sb;
    size_t ka = tl_model_history_steps(a, &sa), kb = tl_model_history_steps(b, &sb);
    assert_int_equal(ka, kb);
    for (size_t i = 0; i < ka; i++) {
        assert_int_equal(sa[i].step, sb[i].step);
        assert_int_equal(sa[i].epoch, sb[i].epoch);
        assert_memory_equal(sa[i].loss, sb[i].loss, 2 * sizeof(float));
        assert_memory_equal(sa[i].weight, sb[i].weight, 2 * sizeof(float));
    }
    const tl_epoch_record *ea, *eb;
    assert_int_equal(tl_model_history_epochs(a, &ea), 2);
    assert_int_equal(tl_model_history_epochs(b, &eb), 2);
    for (int e = 0; e < 2; e++) {
        assert_memory_equal(ea[e].train_loss, eb[e].train_loss, 2 * sizeof(double));
        assert_true(ea[e].monitor == eb[e].monitor);
    }
}

/* Fit 2 epochs stopped by s, save, load, resume on a fresh stream of the
 * same shards until epoch 2 ends. */
static tl_model *stopped_and_resumed(const tl_dataset *d, tl_shards *sh, const char *ckpt, tl_dist *dist,
                                     int grains, stopper s)
{
    const tl_split *valid = tl_dataset_split(d, "valid");
    tl_model *m = new_model(d);
    tl_stream *st = open_stream(sh, 9);
    tl_fit_options o;
    fit_opts(&o, 2, dist, grains, &s);
    assert_int_equal(tl_model_fit_stream(m, st, valid, &o), TL_ERR_CANCELLED);
    assert_int_equal(tl_model_save(m, ckpt), TL_OK);
    tl_stream_close(st);
    tl_model_free(m);
    assert_int_equal(tl_model_load(ckpt, &m), TL_OK);
    st = open_stream(sh, 9);
    stopper none = {0, 0};
    const tl_epoch_record *eh;
    fit_opts(&o, 2 - (int)tl_model_history_epochs(m, &eh), dist, grains, &none);
    assert_int_equal(tl_model_fit_stream(m, st, valid, &o), TL_OK);
    tl_stream_close(st);
    return m;
}

static void check_resumes(tl_dist *dist, int grains)
{
    tl_dataset *d = pair_data();
    char *dir = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert(d, dir, 500, NULL, NULL), TL_OK);
    tl_shards *sh;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    const tl_split *valid = tl_dataset_split(d, "valid");
    tl_model *ref = new_model(d);
    tl_stream *st = open_stream(sh, 9);
    stopper none = {0, 0};
    tl_fit_options o;
    fit_opts(&o, 2, dist, grains, &none);
    assert_int_equal(tl_model_fit_stream(ref, st, valid, &o), TL_OK);
    tl_stream_close(st);
    int64_t per_epoch = tl_model_steps(ref) / 2;
    char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s/m.tlm", dir);
    /* mid-epoch 2, at epoch 1's last step (the stop closes the epoch), at
     * epoch 1's end, and mid-epoch 1 */
    stopper cases[] = {{per_epoch + per_epoch / 2 + 1, 0}, {per_epoch, 0}, {0, 1}, {7, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tl_model *m = stopped_and_resumed(d, sh, ckpt, dist, grains, cases[i]);
        assert_int_equal(tl_model_steps(m), 2 * per_epoch);
        assert_same_model(ref, m, valid);
        tl_model_free(m);
    }
    /* Stopped (no checkpoint) and resumed in the same process: the same. */
    tl_model *m = new_model(d);
    st = open_stream(sh, 9);
    stopper at = {per_epoch + 3, 0};
    fit_opts(&o, 2, dist, grains, &at);
    assert_int_equal(tl_model_fit_stream(m, st, valid, &o), TL_ERR_CANCELLED);
    fit_opts(&o, 1, dist, grains, &none);
    assert_int_equal(tl_model_fit_stream(m, st, valid, &o), TL_OK);
    assert_same_model(ref, m, valid);
    tl_model_free(m);
    tl_stream_close(st);
    tl_model_free(ref);
    tl_shards_close(sh);
    tl_dataset_free(d);
    tlt_tempdir_free(dir);
}

static void test_stream_resume_bit_identical(void **state)
{
    (void)state;
    check_resumes(NULL, 0);
}

/* Data-parallel over 3 grains (each its own shard files and stream), in
 * one process: the same bits as over ranks (tests/mpi/test_dp_shards_resume.sh
 * resumes at another rank count). */
static void test_stream_resume_grains(void **state)
{
    (void)state;
    check_resumes(tl_dist_local(), 3);
}

/* A fit stopped mid-epoch resumes only on the stream it stopped on: other
 * shards (other rows of the same layout and size), another seed, another
 * batch or grains are refused naming the difference; the model is left as
 * it was (the same stream still resumes). Other shards are the same rows
 * with one label changed: the same layout, files and row counts. */
static void test_stream_resume_mismatch_refused(void **state)
{
    (void)state;
    tl_dataset *d = pair_data(), *other = pair_data();
    /* the same layout and sizes, one label changed */
    float *lab = (float *)tl_dataset_split(other, "train")->labels;
    lab[0] = 1.0f - lab[0];
    char *dir = tlt_tempdir_new(), *dir2 = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert(d, dir, 500, NULL, NULL), TL_OK);
    assert_int_equal(tl_shards_convert(other, dir2, 500, NULL, NULL), TL_OK);
    tl_shards *sh, *sh2;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    assert_int_equal(tl_shards_open(dir2, &sh2), TL_OK);
    assert_int_equal(tl_shards_rows(sh, 0), tl_shards_rows(sh2, 0));
    assert_true(tl_shards_fingerprint(sh) != tl_shards_fingerprint(sh2));
    const tl_split *valid = tl_dataset_split(d, "valid");
    char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s/m.tlm", dir);
    tl_model *m = new_model(d);
    tl_stream *st = open_stream(sh, 9);
    stopper at = {10, 0}, none = {0, 0};
    tl_fit_options o;
    fit_opts(&o, 1, NULL, 0, &at);
    assert_int_equal(tl_model_fit_stream(m, st, valid, &o), TL_ERR_CANCELLED);
    assert_int_equal(tl_model_save(m, ckpt), TL_OK);
    tl_model_free(m);
    assert_int_equal(tl_model_load(ckpt, &m), TL_OK);
    fit_opts(&o, 1, NULL, 0, &none);
    tl_stream *st2 = open_stream(sh2, 9);
    assert_int_equal(tl_model_fit_stream(m, st2, valid, &o), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "cannot resume it"));
    assert_non_null(strstr(tl_errmsg(), "other shards"));
    tl_stream_close(st2);
    st2 = open_stream(sh, 10);
    assert_int_equal(tl_model_fit_stream(m, st2, valid, &o), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "seed 10 (the stopped fit's 9)"));
    o.batch = 32;
    assert_int_equal(tl_model_fit_stream(m, st, valid, &o), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "batch 32 (the stopped fit's 64)"));
    fit_opts(&o, 1, tl_dist_local(), 2, &none);
    assert_int_equal(tl_model_fit_stream(m, st, valid, &o), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "grains 2 (the stopped fit's 1)"));
    assert_int_equal(tl_model_steps(m), 10);
    fit_opts(&o, 1, NULL, 0, &none);
    assert_int_equal(tl_model_fit_stream(m, st, valid, &o), TL_OK);
    /* an epoch finished: a new epoch may start on any stream */
    assert_int_equal(tl_model_fit_stream(m, st2, valid, &o), TL_OK);
    tl_stream_close(st);
    tl_stream_close(st2);
    tl_model_free(m);
    tl_shards_close(sh);
    tl_shards_close(sh2);
    tl_dataset_free(d);
    tl_dataset_free(other);
    tlt_tempdir_free(dir);
    tlt_tempdir_free(dir2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_resume_bit_identical),
        cmocka_unit_test(test_stream_resume_grains),
        cmocka_unit_test(test_stream_resume_mismatch_refused),
    };
    return cmocka_run_group_tests_name("stream_resume", tests, NULL, NULL);
}
