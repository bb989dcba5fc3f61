/* test_dist.c — the engine side of data parallelism without MPI (dist.h):
 * grain ownership covers every grain once, in order; the cross-rank
 * checksum names the step and every rank that differs (over a scripted
 * three-rank group); a loss given the whole batch's denominator gives on a
 * part of the batch exactly the per-row gradients of the whole batch
 * (ops/loss.h: tl_loss_set_denominator), and its parts' losses add up to the
 * batch loss; touching rows of a sparse parameter is checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dist.h"
#include "graph.h"

static void test_grains(void **state)
{
    (void)state;
    for (int size = 1; size <= 5; size++)
        for (int grains = 1; grains <= 13; grains++) {
            int next = 0, owned = 0;
            for (int r = 0; r < size; r++) {
                int a, b;
                tl_dist_grains(grains, size, r, &a, &b);
                assert_int_equal(a, next); /* rank order is grain order */
                assert_true(b >= a);
                if (grains >= size) assert_true(b > a); /* no idle rank while grains suffice */
                owned += b - a;
                next = b;
            }
            assert_int_equal(owned, grains);
            assert_int_equal(next, grains);
        }
}

/* A scripted group: the record exchange returns this rank's record three
 * times, each carrying one rank's value (8 bytes ride in the record). */
static uint64_t scripted[3];

static tl_status fake_allgather(void *ud, const void *send, size_t n, void *recv)
{
    (void)ud;
    assert_int_equal(n, sizeof(tl_dist_record));
    for (int r = 0; r < 3; r++) {
        tl_dist_record x;
        memcpy(&x, send, sizeof x);
        memcpy(x.body, &scripted[r], sizeof scripted[r]);
        memcpy((tl_dist_record *)recv + r, &x, sizeof x);
    }
    return TL_OK;
}

static void test_check_equal(void **state)
{
    (void)state;
    tl_dist d = {.rank = 0, .size = 3, .allgather = fake_allgather};
    assert_int_equal(tl_dist_init(&d), TL_OK);
    scripted[0] = scripted[1] = scripted[2] = 42;
    assert_int_equal(tl_dist_check_equal(&d, 42, "fit: parameters", 7), TL_OK);
    scripted[2] = 43;
    assert_int_equal(tl_dist_check_equal(&d, 42, "fit: parameters", 7), TL_ERR_NUMERIC);
    const char *msg = tl_errmsg();
    assert_non_null(strstr(msg, "differ between ranks at step 7"));
    assert_non_null(strstr(msg, "rank 2 000000000000002b"));
    assert_null(strstr(msg, "rank 1 "));
    assert_non_null(strstr(msg, "1 of 3 ranks"));
    assert_int_equal(d.comm_calls, 2); /* one exchange each: 8 bytes ride in the record */
    tl_dist_release(&d);
    /* a group of one never calls the table */
    assert_int_equal(tl_dist_check_equal(tl_dist_local(), 5, "x", 1), TL_OK);
    assert_int_equal(tl_dist_hash("ab", 2, 0), tl_dist_hash("b", 1, tl_dist_hash("a", 1, 0)));
}

/* A scripted group for the failure protocol: rank 0 is this process
 * (its own record), ranks 1 and 2 send the scripted records of each round. */
static tl_dist_record rounds[4][3];
static int round_at;

static tl_status fake_records(void *ud, const void *send, size_t n, void *recv)
{
    (void)ud;
    assert_int_equal(n, sizeof(tl_dist_record));
    assert_true(round_at < 4);
    memcpy(recv, rounds[round_at++], sizeof rounds[0]);
    memcpy(recv, send, n);
    return TL_OK;
}

static tl_dist_record record(int kind, tl_status st, int origin, const char *msg)
{
    tl_dist_record r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.status = (int32_t)st;
    r.origin = origin;
    r.len = 8;
    snprintf(r.body, sizeof r.body, "%s", msg);
    return r;
}

/* A rank that failed on its own and went to its end (tl_dist_agree) is met
 * by the others in the next guarded collective they enter: it fails there
 * naming that rank, and the end agrees on the failure of the rank where it
 * began, the same words on every rank; the end repeats its exchange until
 * every rank is there. Every rank failing alike keeps its own message. */
static void test_failure_reaches_every_rank(void **state)
{
    (void)state;
    const char *oom = "out of memory allocating 64 bytes for grain rows";
    tl_dist d = {.rank = 0, .size = 3, .allgather = fake_records};
    assert_int_equal(tl_dist_init(&d), TL_OK);
    round_at = 0;
    rounds[0][1] = record(TL_DIST_GATHER, TL_OK, -1, "");
    rounds[0][2] = record(TL_DIST_FINAL, TL_ERR_NOMEM, 2, oom);
    const void *out = NULL;
    uint64_t v = 7;
    assert_int_equal(tl_dist_allgather(&d, &v, sizeof v, &out), TL_ERR_NOMEM);
    assert_string_equal(tl_errmsg(), "rank 2 failed: out of memory allocating 64 bytes for grain rows");
    assert_null(out);
    /* the end: rank 1 learned it in the same exchange, rank 2 is still at its end */
    rounds[1][1] = record(TL_DIST_FINAL, TL_ERR_NOMEM, 2, tl_errmsg());
    rounds[1][2] = rounds[0][2];
    assert_int_equal(tl_dist_agree(&d, TL_ERR_NOMEM, "fit"), TL_ERR_NOMEM);
    assert_string_equal(tl_errmsg(), "fit: rank 2 failed: out of memory allocating 64 bytes for grain rows");
    assert_int_equal(d.origin, -1);
    /* a rank not at its end yet: the exchange again until it is */
    round_at = 0;
    rounds[0][1] = rounds[0][2] = record(TL_DIST_FINAL, TL_OK, -1, "");
    rounds[0][2].kind = TL_DIST_GATHER;
    rounds[1][1] = rounds[1][2] = record(TL_DIST_FINAL, TL_OK, -1, "");
    assert_int_equal(tl_dist_agree(&d, TL_OK, "fit"), TL_OK);
    assert_int_equal(round_at, 2);
    /* every rank failed alike: the message is left as it is */
    round_at = 0;
    rounds[0][1] = rounds[0][2] = record(TL_DIST_FINAL, TL_ERR_ARG, 1, "fit: epochs must be >= 1, got 0");
    rounds[0][2].origin = 2;
    tl_fail(TL_ERR_ARG, "fit: epochs must be >= 1, got 0");
    assert_int_equal(tl_dist_agree(&d, TL_ERR_ARG, "fit"), TL_ERR_ARG);
    assert_string_equal(tl_errmsg(), "fit: epochs must be >= 1, got 0");
    /* a rank that ended its part while another gathers: a collective the
     * ranks called differently, named instead of waited for */
    round_at = 0;
    rounds[0][1] = record(TL_DIST_FINAL, TL_OK, -1, "");
    rounds[0][2] = record(TL_DIST_GATHER, TL_OK, -1, "");
    assert_int_equal(tl_dist_allgather(&d, &v, sizeof v, &out), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "rank 1 ended its part while rank 0 was in a collective"));
    tl_dist_release(&d);
}

#define ROWS 8

static void test_loss_denominator(void **state)
{
    (void)state;
    tl_graph *g = tl_graph_new(ROWS, 3);
    tl_node x = tl_input(g, 3, "x"), y = tl_input(g, 1, "y"), w = tl_input(g, 1, "w");
    tl_node W = tl_param(g, 3, 1, TL_INIT_NORMAL, 0.5f, "W");
    tl_node z = tl_matmul(g, x, W);
    tl_node loss = tl_bce_logits(g, z, y, w);
    assert_int_equal(tl_graph_backward(g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    float X[ROWS * 3], Y[ROWS], Wt[ROWS];
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < 3; j++) X[i * 3 + j] = 0.1f * (float)((i * 7 + j * 3) % 11) - 0.5f;
        Y[i] = (float)(i % 3 == 0);
        Wt[i] = i == 2 ? 0.0f : 0.25f + 0.5f * (float)i;
    }
    /* the whole batch */
    memcpy(tl_graph_input(g, x), X, sizeof X);
    memcpy(tl_graph_input(g, y), Y, sizeof Y);
    memcpy(tl_graph_input(g, w), Wt, sizeof Wt);
    assert_int_equal(tl_graph_set_batch(g, ROWS), TL_OK);
    tl_graph_zero_grad(g);
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    float full = tl_graph_value(g, loss)[0], dz[ROWS];
    memcpy(dz, tl_graph_grad(g, z), sizeof dz);
    double den = 0.0;
    for (int i = 0; i < ROWS; i++)
        if (Wt[i] != 0.0f) den += (double)Wt[i];
    /* two parts of 3 and 5 rows with the batch's denominator */
    assert_int_equal(tl_loss_set_denominator(g, loss, (float)den), TL_OK);
    float sum = 0.0f, last = 0.0f;
    for (int part = 0; part < 2; part++) {
        int r0 = part ? 3 : 0, n = part ? 5 : 3;
        memcpy(tl_graph_input(g, x), X + r0 * 3, (size_t)n * 3 * sizeof(float));
        memcpy(tl_graph_input(g, y), Y + r0, (size_t)n * sizeof(float));
        memcpy(tl_graph_input(g, w), Wt + r0, (size_t)n * sizeof(float));
        assert_int_equal(tl_graph_set_batch(g, n), TL_OK);
        tl_graph_zero_grad(g);
        assert_int_equal(tl_graph_forward(g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        sum += last = tl_graph_value(g, loss)[0];
        const float *gz = tl_graph_grad(g, z);
        for (int i = 0; i < n; i++) assert_memory_equal(&gz[i], &dz[r0 + i], sizeof(float));
    }
    assert_float_equal(sum, full, 1e-6f);
    /* restored: a part then has its own mean, another per-row gradient */
    assert_int_equal(tl_loss_set_denominator(g, loss, 0.0f), TL_OK);
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    double own = 0.0; /* the last part's (rows 3..7) own weight sum */
    for (int i = 3; i < ROWS; i++) own += (double)Wt[i];
    assert_float_equal(tl_graph_value(g, loss)[0], (float)((double)last * den / own), 1e-6f);
    assert_int_equal(tl_loss_set_denominator(g, z, 2.0f), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "is not a loss"));
    /* W is dense: no rows to touch */
    int32_t row = 0;
    assert_int_equal(tl_graph_touch_rows(g, tl_graph_param_index(g, W), &row, 1), TL_ERR_ARG);
    tl_graph_free(g);
}

static void test_touch_rows(void **state)
{
    (void)state;
    tl_graph *g = tl_graph_new(4, 1);
    int32_t vocab[1] = {5};
    tl_node table = tl_param(g, 5, 2, TL_INIT_NORMAL, 0.1f, "table");
    tl_node ids = tl_input_ids(g, 1, "ids");
    tl_node e = tl_embedding(g, table, ids, 1, vocab);
    assert_int_equal(tl_graph_backward(g, tl_sum(g, e)), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    int pi = tl_graph_param_index(g, table), n;
    int32_t rows[3] = {4, 1, 4};
    assert_int_equal(tl_graph_touch_rows(g, pi, rows, 3), TL_OK);
    const int32_t *t = tl_graph_touched_rows(g, pi, &n);
    assert_int_equal(n, 2); /* distinct, in first-touched order */
    assert_int_equal(t[0], 4);
    assert_int_equal(t[1], 1);
    int32_t bad = 5;
    assert_int_equal(tl_graph_touch_rows(g, pi, &bad, 1), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "row 5 outside 'table'"));
    tl_graph_zero_grad(g);
    tl_graph_touched_rows(g, pi, &n);
    assert_int_equal(n, 0);
    tl_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grains),
        cmocka_unit_test(test_check_equal),
        cmocka_unit_test(test_failure_reaches_every_rank),
        cmocka_unit_test(test_loss_denominator),
        cmocka_unit_test(test_touch_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
