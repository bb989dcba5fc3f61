/* test_synthetic.c — the MMoE-paper generator (synthetic.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synthetic.h"

static double corr(const float *y, size_t n)
{
    double m1 = 0, m2 = 0;
    for (size_t i = 0; i < n; i++) m1 += (double)y[2 * i], m2 += (double)y[2 * i + 1];
    m1 /= (double)n;
    m2 /= (double)n;
    double c = 0, v1 = 0, v2 = 0;
    for (size_t i = 0; i < n; i++) {
        double a = (double)y[2 * i] - m1, b = (double)y[2 * i + 1] - m2;
        c += a * b;
        v1 += a * a;
        v2 += b * b;
    }
    return c / sqrt(v1 * v2);
}

static void gen(const tl_synthetic_params *p, float **x, float **y)
{
    *x = malloc(sizeof(float) * p->n * (size_t)p->dim);
    *y = malloc(sizeof(float) * p->n * 2);
    assert_non_null(*x);
    assert_non_null(*y);
    assert_int_equal(tl_synthetic_generate(p, *x, *y), TL_OK);
}

static void test_deterministic(void **state)
{
    (void)state;
    tl_synthetic_params p;
    tl_synthetic_defaults(&p);
    p.n = 500;
    float *x1, *y1, *x2, *y2, *x3, *y3;
    gen(&p, &x1, &y1);
    gen(&p, &x2, &y2);
    p.seed = 2;
    gen(&p, &x3, &y3);
    assert_memory_equal(x1, x2, sizeof(float) * 500 * 100);
    assert_memory_equal(y1, y2, sizeof(float) * 500 * 2);
    assert_true(memcmp(y1, y3, sizeof(float) * 500 * 2) != 0);
    free(x1), free(y1), free(x2), free(y2), free(x3), free(y3);
}

/* Without sinusoids and noise, y_k = w_k.x with x ~ N(0, I): the label
 * correlation is the cosine between w1 and w2, i.e. corr itself. */
static void test_linear_correlation_is_cosine(void **state)
{
    (void)state;
    static const double ps[] = {-0.5, 0.0, 0.5, 0.9, 1.0};
    for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
        tl_synthetic_params p;
        tl_synthetic_defaults(&p);
        p.n = 20000;
        p.dim = 20;
        p.m = 0;
        p.noise_std = 0;
        p.corr = ps[k];
        float *x, *y;
        gen(&p, &x, &y);
        double c = corr(y, p.n);
        assert_true(fabs(c - ps[k]) < 0.03);
        free(x), free(y);
    }
}

/* With the paper's sinusoids, higher corr still gives more correlated tasks. */
static void test_monotone_with_sinusoids(void **state)
{
    (void)state;
    double prev = -2;
    static const double ps[] = {0.0, 0.5, 0.9};
    for (size_t k = 0; k < 3; k++) {
        tl_synthetic_params p;
        tl_synthetic_defaults(&p);
        p.n = 20000;
        p.corr = ps[k];
        float *x, *y;
        gen(&p, &x, &y);
        double c = corr(y, p.n);
        assert_true(c > prev + 0.1);
        prev = c;
        for (size_t i = 0; i < p.n * 2; i++) assert_true(isfinite(y[i]));
        free(x), free(y);
    }
}

static void test_bad_params(void **state)
{
    (void)state;
    tl_synthetic_params p;
    tl_synthetic_defaults(&p);
    p.corr = 1.5;
    assert_int_equal(tl_synthetic_check(&p), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "corr must be in [-1, 1], got 1.5"));
    tl_synthetic_defaults(&p);
    p.n = 0;
    assert_int_equal(tl_synthetic_check(&p), TL_ERR_ARG);
    tl_synthetic_defaults(&p);
    p.noise_std = -1;
    assert_int_equal(tl_synthetic_check(&p), TL_ERR_ARG);
    float x[200], y[4];
    tl_synthetic_defaults(&p);
    p.n = 2;
    assert_int_equal(tl_synthetic_generate(&p, NULL, y), TL_ERR_ARG);
    assert_int_equal(tl_synthetic_generate(&p, x, y), TL_OK);
}

/* ---- the user/item task pair ----------------------------------------------- */

typedef struct {
    int32_t *ci; /* user, item, segment, category, context */
    float *cf;   /* activity, price, t, za, zb, ya, yb */
    tl_synth_pair_out o;
} pair_buf;

static void pair_gen(const tl_synth_pair_params *p, pair_buf *b)
{
    size_t n = p->rows;
    b->ci = malloc(sizeof(int32_t) * 5 * n);
    b->cf = malloc(sizeof(float) * 7 * n);
    assert_non_null(b->ci);
    assert_non_null(b->cf);
    tl_synth_pair_out o = {b->ci,         b->ci + n,     b->ci + 2 * n, b->ci + 3 * n, b->ci + 4 * n, b->cf,
                           b->cf + n,     b->cf + 2 * n, b->cf + 3 * n, b->cf + 4 * n, b->cf + 5 * n, b->cf + 6 * n};
    b->o = o;
    assert_int_equal(tl_synth_pair_generate(p, &b->o), TL_OK);
}

static void pair_free(pair_buf *b)
{
    free(b->ci);
    free(b->cf);
}

static double corr2(const float *a, const float *b, size_t n)
{
    double ma = 0, mb = 0;
    for (size_t i = 0; i < n; i++) ma += (double)a[i], mb += (double)b[i];
    ma /= (double)n;
    mb /= (double)n;
    double c = 0, va = 0, vb = 0;
    for (size_t i = 0; i < n; i++) {
        double x = (double)a[i] - ma, y = (double)b[i] - mb;
        c += x * y;
        va += x * x;
        vb += y * y;
    }
    return c / sqrt(va * vb);
}

static double mean_f(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m += (double)a[i];
    return m / (double)n;
}

/* Every rho the study uses, nested and not: the latent scores' empirical
 * correlation is rho, the labels' correlation follows its sign and order,
 * the base rates are the ones asked for, nested has no (-,+) rows. */
static void test_pair_rho_nested_rates(void **state)
{
    (void)state;
    static const double rhos[5] = {-0.5, 0, 0.3, 0.6, 0.9};
    for (int nested = 0; nested < 2; nested++) {
        double prev_label_corr = -2;
        for (int k = 0; k < 5; k++) {
            tl_synth_pair_params p;
            tl_synth_pair_defaults(&p);
            p.rows = 40000;
            p.rho = rhos[k];
            p.nested = nested;
            pair_buf b;
            pair_gen(&p, &b);
            size_t n = p.rows;
            assert_true(fabs(corr2(b.o.za, b.o.zb, n) - rhos[k]) < 1e-3);
            assert_true(fabs(mean_f(b.o.za, n)) < 1e-3);
            size_t na = 0, nb = 0, n01 = 0, nab = 0;
            for (size_t i = 0; i < n; i++) {
                assert_true(b.o.ya[i] == 0.0f || b.o.ya[i] == 1.0f);
                assert_true(b.o.yb[i] == 0.0f || b.o.yb[i] == 1.0f);
                na += b.o.ya[i] == 1.0f;
                nb += b.o.yb[i] == 1.0f;
                n01 += b.o.ya[i] == 0.0f && b.o.yb[i] == 1.0f;
                nab += b.o.ya[i] == 1.0f && b.o.yb[i] == 1.0f;
            }
            /* binomial noise around the solved rate: sd ~ 0.0023 at 40k rows */
            assert_true(fabs((double)na / (double)n - p.rate_a) < 0.012);
            if (nested) {
                assert_int_equal(n01, 0);
                assert_true(fabs((double)nab / (double)na - p.rate_b) < 0.02);
            } else {
                assert_true(n01 > 0);
                assert_true(fabs((double)nb / (double)n - p.rate_b) < 0.012);
            }
            /* non-nested: the labels' correlation; nested: within the a-positive
             * rows, how b follows z_a */
            double lc;
            if (!nested) {
                lc = corr2(b.o.ya, b.o.yb, n);
            } else {
                float *za1 = malloc(sizeof(float) * na), *yb1 = malloc(sizeof(float) * na);
                assert_non_null(za1);
                assert_non_null(yb1);
                size_t m = 0;
                for (size_t i = 0; i < n; i++)
                    if (b.o.ya[i] == 1.0f) za1[m] = b.o.za[i], yb1[m++] = b.o.yb[i];
                lc = corr2(za1, yb1, m);
                free(za1);
                free(yb1);
            }
            printf("nested %d rho %g: label relation %.4f\n", nested, rhos[k], lc);
            assert_true(lc > prev_label_corr); /* grows with rho */
            if (rhos[k] < 0) assert_true(lc < -0.05);
            if (rhos[k] == 0) assert_true(fabs(lc) < 0.03);
            if (rhos[k] > 0.5) assert_true(lc > 0.1);
            prev_label_corr = lc;
            pair_free(&b);
        }
    }
}

/* Same seed, same bytes; another seed, other data; ids in range; popular
 * users and items are far more frequent than the mean (Zipf-ish). */
static void test_pair_deterministic_ids_popularity(void **state)
{
    (void)state;
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    assert_int_equal(p.rows, 200000);
    p.rows = 50000;
    pair_buf a, b, c;
    pair_gen(&p, &a);
    pair_gen(&p, &b);
    assert_memory_equal(a.ci, b.ci, sizeof(int32_t) * 5 * p.rows);
    assert_memory_equal(a.cf, b.cf, sizeof(float) * 7 * p.rows);
    p.seed = 2;
    pair_gen(&p, &c);
    assert_true(memcmp(a.ci, c.ci, sizeof(int32_t) * p.rows) != 0);
    assert_true(memcmp(a.cf + 3 * p.rows, c.cf + 3 * p.rows, sizeof(float) * p.rows) != 0);
    uint32_t *uc = calloc((size_t)p.users, sizeof *uc), *ic = calloc((size_t)p.items, sizeof *ic);
    assert_non_null(uc);
    assert_non_null(ic);
    for (size_t i = 0; i < p.rows; i++) {
        assert_true(a.o.user[i] >= 0 && a.o.user[i] < p.users);
        assert_true(a.o.item[i] >= 0 && a.o.item[i] < p.items);
        assert_true(a.o.segment[i] >= 0 && a.o.segment[i] < 8);
        assert_true(a.o.category[i] >= 0 && a.o.category[i] < 20);
        assert_true(a.o.context[i] >= 0 && a.o.context[i] < 4);
        uc[a.o.user[i]]++;
        ic[a.o.item[i]]++;
    }
    uint32_t umax = 0, imax = 0;
    for (int u = 0; u < p.users; u++) umax = uc[u] > umax ? uc[u] : umax;
    for (int i = 0; i < p.items; i++) imax = ic[i] > imax ? ic[i] : imax;
    assert_true((double)umax > 20.0 * (double)p.rows / p.users);
    assert_true((double)imax > 20.0 * (double)p.rows / p.items);
    /* a user's side features are the user's: the same user, the same segment */
    for (size_t i = 1; i < p.rows; i++)
        for (size_t j = 0; j < i && j < 64; j++)
            if (a.o.user[i] == a.o.user[j]) {
                assert_int_equal(a.o.segment[i], a.o.segment[j]);
                assert_true(a.o.activity[i] == a.o.activity[j]);
            }
    free(uc);
    free(ic);
    pair_free(&a);
    pair_free(&b);
    pair_free(&c);
}

static void test_pair_bad_params(void **state)
{
    (void)state;
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    p.rho = 1.5;
    assert_int_equal(tl_synth_pair_check(&p), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "rho"));
    tl_synth_pair_defaults(&p);
    p.rate_b = 1;
    assert_int_equal(tl_synth_pair_check(&p), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "rate_b"));
    tl_synth_pair_defaults(&p);
    p.users = 0;
    assert_int_equal(tl_synth_pair_check(&p), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "users"));
    tl_synth_pair_out o;
    memset(&o, 0, sizeof o);
    tl_synth_pair_defaults(&p);
    p.rows = 10;
    assert_int_equal(tl_synth_pair_generate(&p, &o), TL_OK); /* every output optional */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_linear_correlation_is_cosine),
        cmocka_unit_test(test_monotone_with_sinusoids),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_pair_rho_nested_rates),
        cmocka_unit_test(test_pair_deterministic_ids_popularity),
        cmocka_unit_test(test_pair_bad_params),
    };
    return cmocka_run_group_tests_name("synthetic", tests, NULL, NULL);
}
