/* test_model_dp_stream.c — a data-parallel fit over a stream of shards
 * (grains in one process, tl_dist_local) gives the bits of the same fit on
 * the in-memory split when both walk the same batches: shuffling off, shard
 * files of B / G rows, so that grain j's stream (files j, j + G, ...) reads
 * the rows the in-memory batch cuts into grain j. Parameters, predictions,
 * step history and the diagnostics (fit{diagnostics=N}, taken at step_ready
 * on the whole batch) must agree. tests/mpi/test_dp_shards_reduces.sh checks
 * the weightings that reduce per task over ranks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "data/shards.h"
#include "dist.h"
#include "model.h"
#include "support.h"
#include "synthetic.h"
#include "task_grads.h"

#define G 3
#define PER 40 /* rows per shard file and per grain */

static tl_model *new_model(const tl_dataset *d, tl_weighting w)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    tl_mlp_spec tower = {1, {8}, 0};
    c.backbone.kind = TL_BACKBONE_MMOE;
    c.backbone.expert = (tl_mlp_spec){1, {16}, 0.1f};
    c.backbone.experts = 2;
    c.weighting = w;
    c.emb_dim = 4;
    c.max_batch = G * PER;
    c.seed = 3;
    assert_int_equal(tl_model_config_from_dataset(&c, d, &tower), TL_OK);
    tl_model *m;
    assert_int_equal(tl_model_new(&c, &m), TL_OK);
    return m;
}

static void opts(tl_fit_options *o)
{
    tl_fit_defaults(o);
    o->epochs = 1;
    o->batch = G * PER;
    o->max_steps = 10;
    o->shuffle = 0;
    o->diagnostics = 2;
    o->dist = tl_dist_local();
    o->grains = G;
    o->optim = tl_optim_defaults(TL_OPTIM_SGD);
    o->optim.lr = 0.2f;
}

static void check(tl_weighting w)
{
    tl_synth_pair_params pp;
    tl_synth_pair_defaults(&pp);
    pp.rows = 3000;
    tl_dataset *d;
    assert_int_equal(tl_data_synthetic_pair(&pp, &d), TL_OK);
    char *dir = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert(d, dir, PER, NULL, NULL), TL_OK);
    tl_shards *sh;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    const tl_split *train = tl_dataset_split(d, "train"), *valid = tl_dataset_split(d, "valid");
    tl_fit_options o;
    opts(&o);
    tl_model *a = new_model(d, w), *b = new_model(d, w);
    assert_int_equal(tl_model_fit(a, train, valid, &o), TL_OK);
    tl_stream *st;
    assert_int_equal(tl_stream_open(sh, 0, 9, 64, 0, &st), TL_OK);
    assert_int_equal(tl_model_fit_stream(b, st, valid, &o), TL_OK);
    tl_stream_close(st);
    size_t na, nb;
    float *pa = tl_graph_params(tl_model_graph(a), &na), *pb = tl_graph_params(tl_model_graph(b), &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na * sizeof *pa);
    const tl_step_record *sa, *sb;
    assert_int_equal(tl_model_history_steps(a, &sa), 10);
    assert_int_equal(tl_model_history_steps(b, &sb), 10);
    for (int i = 0; i < 10; i++) assert_memory_equal(sa[i].loss, sb[i].loss, 2 * sizeof(float));
    const tl_diag_record *da, *db;
    assert_int_equal(tl_model_history_diagnostics(a, &da), 5);
    assert_int_equal(tl_model_history_diagnostics(b, &db), 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(da[i].step, db[i].step);
        if (memcmp(da[i].grad_norm, db[i].grad_norm, 2 * sizeof(float)) != 0)
            fail_msg("diagnostics at step %lld: gradient norms %g %g in memory, %g %g on the stream",
                     (long long)da[i].step, (double)da[i].grad_norm[0], (double)da[i].grad_norm[1],
                     (double)db[i].grad_norm[0], (double)db[i].grad_norm[1]);
        assert_memory_equal(&da[i].grad_cos[0][1], &db[i].grad_cos[0][1], sizeof(float));
    }
    size_t n = valid->n * 2;
    float *qa = malloc(n * sizeof *qa), *qb = malloc(n * sizeof *qb);
    assert_int_equal(tl_model_predict(a, valid, qa), TL_OK);
    assert_int_equal(tl_model_predict(b, valid, qb), TL_OK);
    assert_memory_equal(qa, qb, n * sizeof *qa);
    free(qa);
    free(qb);
    tl_model_free(a);
    tl_model_free(b);
    tl_shards_close(sh);
    tl_dataset_free(d);
    tlt_tempdir_free(dir);
}

static void test_dp_stream_fixed(void **state)
{
    (void)state;
    check(TL_WEIGHTING_FIXED);
}

static void test_dp_stream_uncertainty(void **state)
{
    (void)state;
    check(TL_WEIGHTING_UNCERTAINTY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dp_stream_fixed),
        cmocka_unit_test(test_dp_stream_uncertainty),
    };
    return cmocka_run_group_tests_name("model_dp_stream", tests, NULL, NULL);
}
