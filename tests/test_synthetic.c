/* test_synthetic.c — the MMoE-paper generator (synthetic.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_linear_correlation_is_cosine),
        cmocka_unit_test(test_monotone_with_sinusoids),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests_name("synthetic", tests, NULL, NULL);
}
