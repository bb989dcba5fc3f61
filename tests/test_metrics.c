/* test_metrics.c — metrics and calibrators: hand-computed cases, properties
 * (monotone isotonic, parameter recovery), and the scikit-learn reference
 * values in tests/fixtures/metrics.txt (made by make_metrics_fixtures.py). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

#define FIXTURE "tests/fixtures/metrics.txt"

/* ---- helpers ------------------------------------------------------------- */

static void near(double got, double want, double rel, const char *what)
{
    int ok = (isnan(want) && isnan(got)) ||
             fabs(got - want) <= rel * fabs(want) + 1e-9;
    if (!ok) fail_msg("%s: got %.12g, want %.12g", what, got, want);
}

static void check_ok(tl_status st)
{
    if (st != TL_OK) fail_msg("status %s: %s", tl_status_name(st), tl_errmsg());
}

/* ---- fixture ------------------------------------------------------------- */

/* The format of tests/support.h ("name rows cols" then the values); read here
 * directly so this test does not depend on the gradient-check support code. */

typedef struct {
    char name[64];
    size_t n;
    double *v;
} fx_entry;

static fx_entry *fx;
static size_t fx_n;

static int fx_load(void **state)
{
    (void)state;
    FILE *f = fopen(FIXTURE, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s (run from the project root)\n", FIXTURE);
        return -1;
    }
    size_t cap = 0;
    char name[64];
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (c == '#' || c == '\n') {
            while (c != '\n' && c != EOF) c = fgetc(f);
            continue;
        }
        ungetc(c, f);
        size_t rows, cols;
        if (fscanf(f, "%63s %zu %zu", name, &rows, &cols) != 3) break;
        size_t n = rows * cols;
        if (fx_n == cap) {
            cap = cap ? 2 * cap : 64;
            fx = realloc(fx, cap * sizeof *fx);
        }
        fx_entry *e = &fx[fx_n++];
        snprintf(e->name, sizeof e->name, "%s", name);
        e->n = n;
        e->v = malloc((n ? n : 1) * sizeof(double));
        char tok[64];
        for (size_t i = 0; i < n; i++) {
            if (fscanf(f, "%63s", tok) != 1) {
                fclose(f);
                return -1;
            }
            e->v[i] = strtod(tok, NULL);
        }
    }
    fclose(f);
    return fx_n ? 0 : -1;
}

static int fx_unload(void **state)
{
    (void)state;
    for (size_t i = 0; i < fx_n; i++) free(fx[i].v);
    free(fx);
    fx = NULL;
    fx_n = 0;
    return 0;
}

static const double *fxd(const char *name, size_t *n)
{
    for (size_t i = 0; i < fx_n; i++)
        if (strcmp(fx[i].name, name) == 0) {
            if (n) *n = fx[i].n;
            return fx[i].v;
        }
    fail_msg("fixture has no array '%s'", name);
    return NULL;
}

static double fx1(const char *name) { return fxd(name, NULL)[0]; }

/* Fixture array as floats (caller frees). */
static float *fxf(const char *name, size_t *n)
{
    size_t m;
    const double *d = fxd(name, &m);
    float *f = malloc(m * sizeof *f);
    for (size_t i = 0; i < m; i++) f[i] = (float)d[i];
    if (n) *n = m;
    return f;
}

static int32_t *fxi(const char *name)
{
    size_t m;
    const double *d = fxd(name, &m);
    int32_t *g = malloc(m * sizeof *g);
    for (size_t i = 0; i < m; i++) g[i] = (int32_t)d[i];
    return g;
}

/* ---- AUC ----------------------------------------------------------------- */

static void test_auc_hand(void **state)
{
    (void)state;
    double a;
    unsigned notes = 0;
    const float p1[] = {0.1f, 0.4f, 0.35f, 0.8f}, y1[] = {0, 0, 1, 1};
    check_ok(tl_metric_auc(p1, y1, NULL, NULL, 4, NULL, &a, &notes));
    near(a, 0.75, 0, "auc");
    assert_int_equal(notes, 0);

    /* ties count half; weights are pair weights */
    const float p2[] = {0.5f, 0.5f, 0.5f, 0.9f}, y2[] = {0, 1, 0, 1};
    check_ok(tl_metric_auc(p2, y2, NULL, NULL, 4, NULL, &a, NULL));
    near(a, 0.75, 0, "auc ties");
    const float w2[] = {1, 2, 3, 1};
    check_ok(tl_metric_auc(p2, y2, w2, NULL, 4, NULL, &a, NULL));
    near(a, 8.0 / 12.0, 1e-15, "weighted auc ties");

    /* integer weights = repeated rows */
    const float p3[] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.9f};
    const float y3[] = {0, 1, 1, 0, 0, 0, 1};
    check_ok(tl_metric_auc(p3, y3, NULL, NULL, 7, NULL, &a, NULL));
    near(a, 8.0 / 12.0, 1e-15, "repeated rows");

    /* -0 and +0 tie; negative scores sort below positive ones */
    const float p4[] = {-0.0f, 0.0f, -3.0f, 2.0f}, y4[] = {1, 0, 0, 1};
    check_ok(tl_metric_auc(p4, y4, NULL, NULL, 4, NULL, &a, NULL));
    near(a, (0.5 + 1 + 1 + 1) / 4.0, 0, "signed zero tie");
}

static void test_auc_masked_value(void **state)
{
    (void)state;
    /* Computed by hand: rows kept {0.1 n, 0.4 n, 0.8 p}: the positive beats both. */
    const float p[] = {0.1f, 0.4f, 0.35f, 0.8f}, y[] = {0, 0, 1, 1};
    const uint8_t m[] = {1, 1, 0, 1};
    double a;
    check_ok(tl_metric_auc(p, y, NULL, m, 4, NULL, &a, NULL));
    assert_true(a == 1.0);
}

static void test_auc_single_class(void **state)
{
    (void)state;
    const float p[] = {0.2f, 0.3f, 0.4f}, y[] = {1, 1, 1};
    double a = 0;
    unsigned notes = 0;
    check_ok(tl_metric_auc(p, y, NULL, NULL, 3, NULL, &a, &notes));
    assert_true(isnan(a));
    assert_true(notes & TL_NOTE_ONE_CLASS);
    assert_non_null(strstr(tl_metric_notes_str(notes), "one class"));

    const uint8_t none[] = {0, 0, 0};
    notes = 0;
    check_ok(tl_metric_auc(p, y, NULL, none, 3, NULL, &a, &notes));
    assert_true(isnan(a));
    assert_true(notes & TL_NOTE_EMPTY);

    /* positives all weight zero: one class by weight */
    const float y2[] = {0, 1, 0}, w[] = {1, 0, 1};
    notes = 0;
    check_ok(tl_metric_auc(p, y2, w, NULL, 3, NULL, &a, &notes));
    assert_true(isnan(a));
    assert_true(notes & TL_NOTE_ONE_CLASS);
}

static void test_auc_bad_input(void **state)
{
    (void)state;
    const float p[] = {0.2f, 0.3f, 0.4f}, y[] = {1, 0, 0.5f};
    double a;
    assert_int_equal(tl_metric_auc(p, y, NULL, NULL, 3, NULL, &a, NULL), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "label at row 2"));
    const uint8_t m[] = {1, 1, 0};
    check_ok(tl_metric_auc(p, y, NULL, m, 3, NULL, &a, NULL)); /* masked row unchecked */

    const float pn[] = {0.2f, NAN, 0.4f}, y2[] = {1, 0, 0};
    assert_int_equal(tl_metric_auc(pn, y2, NULL, NULL, 3, NULL, &a, NULL), TL_ERR_NUMERIC);
    assert_non_null(strstr(tl_errmsg(), "row 1"));
    const float wneg[] = {1, -1, 1};
    assert_int_equal(tl_metric_auc(p, y2, wneg, NULL, 3, NULL, &a, NULL), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "weight at row 1"));
}

static void test_auc_nomem(void **state)
{
    (void)state;
    const float p[] = {0.2f, 0.3f, 0.4f}, y[] = {1, 0, 0};
    double a = 0;
    tl_fault_inject_nth(2);
    tl_status st = tl_metric_auc(p, y, NULL, NULL, 3, NULL, &a, NULL);
    tl_fault_inject_nth(0);
    assert_int_equal(st, TL_ERR_NOMEM);
    assert_true(isnan(a));
}

static void test_gauc_hand(void **state)
{
    (void)state;
    /* g1: (0.2 n, 0.8 p) → 1; g2: (0.3 p, 0.6 n, 0.9 p) → 0.5; g3 one row;
     * g4 two negatives. GAUC = (2·1 + 3·0.5) / 5 = 0.7. Rows interleaved. */
    const float p[] = {0.3f, 0.2f, 0.5f, 0.6f, 0.4f, 0.8f, 0.9f, 0.1f};
    const float y[] = {1, 0, 1, 0, 0, 1, 1, 0};
    const int32_t g[] = {2, 1, 3, 2, 4, 1, 2, 4};
    double a;
    size_t used;
    unsigned notes = 0;
    check_ok(tl_metric_gauc(p, y, g, NULL, NULL, 8, NULL, &a, &used, &notes));
    near(a, 0.7, 1e-15, "gauc");
    assert_int_equal(used, 2);
    assert_true(notes & TL_NOTE_GROUPS_SKIPPED);
    assert_false(notes & TL_NOTE_ONE_CLASS);

    /* weights: group weight = Σ w; g1 weight 2+2, g2 weight 1+1+1 */
    const float w[] = {1, 2, 5, 1, 1, 2, 1, 1};
    check_ok(tl_metric_gauc(p, y, g, w, NULL, 8, NULL, &a, &used, NULL));
    near(a, (4 * 1.0 + 3 * 0.5) / 7.0, 1e-15, "weighted gauc");

    /* every group one class → NaN */
    const int32_t g1[] = {0, 1, 2, 3, 4, 5, 6, 7};
    notes = 0;
    check_ok(tl_metric_gauc(p, y, g1, NULL, NULL, 8, NULL, &a, &used, &notes));
    assert_true(isnan(a));
    assert_int_equal(used, 0);
    assert_true(notes & TL_NOTE_ONE_CLASS);
    assert_true(notes & TL_NOTE_GROUPS_SKIPPED);
}

static void test_multi_auc_hand(void **state)
{
    (void)state;
    /* ++ 0.9, +- 0.7, -+ 0.8, -- 0.1 */
    const float p[] = {0.9f, 0.7f, 0.8f, 0.1f};
    const float ya[] = {1, 1, 0, 0}, yb[] = {1, 0, 1, 0};
    double a, pairs[3];
    unsigned notes = 0;
    check_ok(tl_metric_multi_auc(p, ya, yb, NULL, NULL, NULL, 4, NULL, &a, pairs, &notes));
    near(a, 2.0 / 3.0, 1e-15, "multi-auc A");
    near(pairs[0], 1, 0, "pair 0");
    near(pairs[1], 0, 0, "pair 1");
    near(pairs[2], 1, 0, "pair 2");
    assert_int_equal(notes, 0);
    check_ok(tl_metric_multi_auc(p, ya, yb, TL_MULTI_AUC_ORDER_B, NULL, NULL, 4, NULL, &a, pairs,
                                 NULL));
    near(a, 1.0, 0, "multi-auc B");
    check_ok(tl_metric_multi_auc(p, ya, yb, TL_MULTI_AUC_ORDER_A_NEG, NULL, NULL, 4, NULL, &a,
                                 pairs, NULL));
    /* +- 0.7 vs ++ 0.9 → 0; ++ vs -- → 1; -- 0.1 vs -+ 0.8 → 0 */
    near(a, 1.0 / 3.0, 1e-15, "multi-auc A_NEG");

    /* drop -+ (nested tasks): the chain ++ > +- > -- is compared; with -- at
     * 0.75 above +- at 0.7 its second pair is 0, so the mean is 1/2 (the old
     * rule, which dropped both pairs next to the empty group, gave 1) */
    const float pn[] = {0.9f, 0.7f, 0.8f, 0.75f};
    const uint8_t m[] = {1, 1, 0, 1};
    notes = 0;
    check_ok(tl_metric_multi_auc(pn, ya, yb, NULL, NULL, m, 4, NULL, &a, pairs, &notes));
    near(a, 0.5, 0, "multi-auc with an empty group chained over");
    near(pairs[0], 1, 0, "chained pair 0: ++ over +-");
    near(pairs[1], 0, 0, "chained pair 1: +- over --");
    assert_true(isnan(pairs[2]));
    assert_true(notes & TL_NOTE_PAIRS_SKIPPED);

    const tl_quad bad[4] = {TL_QUAD_PP, TL_QUAD_PP, TL_QUAD_NP, TL_QUAD_NN};
    assert_int_equal(tl_metric_multi_auc(p, ya, yb, bad, NULL, NULL, 4, NULL, &a, NULL, NULL),
                     TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "permutation"));
}

/* ---- pointwise ------------------------------------------------------------ */

static void test_pointwise_hand(void **state)
{
    (void)state;
    const float p[] = {0.5f, 0.9f}, y[] = {1, 0};
    double v;
    check_ok(tl_metric_logloss(p, y, NULL, NULL, 2, &v, NULL));
    near(v, (log(2.0) + log(10.0)) / 2, 1e-6, "logloss");
    check_ok(tl_metric_brier(p, y, NULL, NULL, 2, &v, NULL));
    near(v, (0.25 + 0.81) / 2, 1e-6, "brier");
    /* p = 0 and 1 are clipped, not infinite */
    const float p0[] = {0.0f, 1.0f}, y0[] = {1, 0};
    check_ok(tl_metric_logloss(p0, y0, NULL, NULL, 2, &v, NULL));
    assert_true(isfinite(v) && v > 15);

    const float rp[] = {1, 2, 4}, ry[] = {1, 4, 1}, rw[] = {1, 1, 2};
    check_ok(tl_metric_mse(rp, ry, NULL, NULL, 3, &v, NULL));
    near(v, 13.0 / 3, 1e-15, "mse");
    check_ok(tl_metric_rmse(rp, ry, NULL, NULL, 3, &v, NULL));
    near(v, sqrt(13.0 / 3), 1e-15, "rmse");
    check_ok(tl_metric_mae(rp, ry, rw, NULL, 3, &v, NULL));
    near(v, (0 + 2 + 2 * 3) / 4.0, 1e-15, "weighted mae");
    unsigned notes = 0;
    const uint8_t none[] = {0, 0, 0};
    check_ok(tl_metric_mse(rp, ry, NULL, none, 3, &v, &notes));
    assert_true(isnan(v) && (notes & TL_NOTE_EMPTY));
    const float bad[] = {0.5f, 1.5f};
    assert_int_equal(tl_metric_logloss(bad, y, NULL, NULL, 2, &v, NULL), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "prediction at row 1"));

    /* streaming in two batches equals one call */
    tl_metric_sums s = {0};
    const float bp[] = {0.1f, 0.7f, 0.4f, 0.95f, 0.3f}, by[] = {0, 1, 1, 1, 0};
    check_ok(tl_metric_sums_add_binary(&s, bp, by, NULL, NULL, 2));
    check_ok(tl_metric_sums_add_binary(&s, bp + 2, by + 2, NULL, NULL, 3));
    check_ok(tl_metric_logloss(bp, by, NULL, NULL, 5, &v, NULL));
    near(tl_metric_sums_logloss(&s), v, 1e-14, "streamed logloss");
    near(tl_metric_sums_pcoc(&s), (0.1 + 0.7 + 0.4 + 0.95 + 0.3) / 3, 1e-6, "pcoc");
    double r = 3.0 / 5, h = -(r * log(r) + (1 - r) * log(1 - r));
    near(tl_metric_sums_ne(&s), v / h, 1e-12, "ne");
}

/* ---- calibration ----------------------------------------------------------- */

static void test_bins_hand(void **state)
{
    (void)state;
    /* 0.5 lies on an inner edge → lower bin (index 4); 0 → bin 0; 1 → bin 9 */
    float p[13];
    float y[13] = {0};
    for (int i = 0; i < 10; i++) {
        p[i] = 0.25f;
        y[i] = i < 3;
    }
    p[10] = 0.5f;
    p[11] = 0.0f;
    p[12] = 1.0f;
    y[12] = 1;
    tl_calib_bin b[10];
    double ece, mce;
    unsigned notes = 0;
    check_ok(tl_metric_calibration_bins(p, y, NULL, NULL, 13, 10, TL_BINS_UNIFORM, NULL, b, &ece,
                                        &mce, &notes));
    assert_int_equal(b[2].count, 10);
    assert_int_equal(b[4].count, 1);
    assert_int_equal(b[5].count, 0);
    assert_int_equal(b[0].count, 1);
    assert_int_equal(b[9].count, 1);
    assert_true(isnan(b[5].mean_pred) && isnan(b[5].rate));
    assert_true(notes & TL_NOTE_EMPTY_BINS);
    near(b[5].lo, 0.5, 1e-15, "edge");
    near(b[2].rate, 0.3, 1e-15, "rate");
    near(b[2].ci_lo, 0.10779126740630149, 1e-6, "wilson lo");
    near(b[2].ci_hi, 0.60322185093652198, 1e-6, "wilson hi");
    /* gaps: bin2 |0.3-0.25|=0.05 (10 rows), bin4 0.5, bin0 0, bin9 0 */
    near(ece, (10 * 0.05 + 0.5) / 13, 1e-6, "ece");
    near(mce, 0.5, 1e-6, "mce");

    assert_int_equal(tl_metric_calibration_bins(p, y, NULL, NULL, 13, 0, TL_BINS_UNIFORM, NULL, b,
                                                &ece, &mce, NULL),
                     TL_ERR_ARG);
}

static void test_slope_and_field(void **state)
{
    (void)state;
    /* Calibrated predictions drawn from their own probabilities: slope ≈ 1,
     * intercept ≈ 0. */
    enum { N = 40000 };
    float *p = malloc(N * sizeof *p), *y = malloc(N * sizeof *y);
    tl_rng r;
    tl_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) {
        p[i] = 1.0f / (1.0f + expf(-2.0f * tl_rng_normal(&r)));
        y[i] = tl_rng_uniform(&r) < p[i];
    }
    double a, b;
    unsigned notes = 0;
    check_ok(tl_metric_calibration_slope(p, y, NULL, NULL, N, &a, &b, &notes));
    assert_true(fabs(a - 1) < 0.05 && fabs(b) < 0.05);
    assert_int_equal(notes & TL_NOTE_NOT_CONVERGED, 0);

    /* separable → not converged, NaN */
    const float sp[] = {0.1f, 0.2f, 0.8f, 0.9f}, sy[] = {0, 0, 1, 1};
    notes = 0;
    check_ok(tl_metric_calibration_slope(sp, sy, NULL, NULL, 4, &a, &b, &notes));
    assert_true(isnan(a) && isnan(b));
    assert_true(notes & TL_NOTE_NOT_CONVERGED);

    /* field CE: v0: P=0.2+0.4=0.6, Y=1; v1: P=0.5, Y=0 → (0.4 + 0.5) / 1 */
    const float fp[] = {0.2f, 0.4f, 0.5f}, fy[] = {1, 0, 0};
    const int32_t f[] = {7, 7, -2};
    double fce;
    check_ok(tl_metric_field_calibration(fp, fy, f, NULL, NULL, 3, NULL, &fce, NULL));
    near(fce, 0.9, 1e-6, "field ce");
    const float fy0[] = {0, 0, 0};
    notes = 0;
    check_ok(tl_metric_field_calibration(fp, fy0, f, NULL, NULL, 3, NULL, &fce, &notes));
    assert_true(isnan(fce) && (notes & TL_NOTE_NO_POSITIVES));
    free(p);
    free(y);
}

/* ---- calibrators ----------------------------------------------------------- */

static void test_isotonic_hand_and_monotone(void **state)
{
    (void)state;
    const float x[] = {0.4f, 0.1f, 0.3f, 0.2f}, y[] = {1, 0, 0, 1};
    tl_calibrator *c;
    check_ok(tl_calibrator_fit(TL_CALIB_ISOTONIC, x, y, NULL, NULL, 4, &c));
    const float *kx, *ky;
    assert_int_equal(tl_calibrator_knots(c, &kx, &ky), 4);
    near(tl_calibrator_apply1(c, 0.05), 0, 0, "below range");
    near(tl_calibrator_apply1(c, 0.15), 0.25, 1e-6, "between blocks");
    near(tl_calibrator_apply1(c, 0.25), 0.5, 1e-6, "inside block");
    near(tl_calibrator_apply1(c, 0.9), 1, 0, "above range");
    tl_calibrator_free(c);

    enum { N = 3000 };
    float *p = malloc(N * sizeof *p), *l = malloc(N * sizeof *l), *g = malloc(N * sizeof *g);
    tl_rng r;
    tl_rng_seed(&r, 9);
    for (int i = 0; i < N; i++) {
        p[i] = tl_rng_uniform(&r);
        l[i] = tl_rng_uniform(&r) < 0.2f + 0.6f * p[i] * p[i];
        g[i] = (float)i / (N - 1);
    }
    check_ok(tl_calibrator_fit(TL_CALIB_ISOTONIC, p, l, NULL, NULL, N, &c));
    check_ok(tl_calibrator_apply(c, g, g, N));
    for (int i = 1; i < N; i++) assert_true(g[i] >= g[i - 1]);
    assert_true(g[0] >= 0 && g[N - 1] <= 1 && g[N - 1] > g[0]);
    tl_calibrator_free(c);
    free(p);
    free(l);
    free(g);
}

static void test_platt_and_temperature_recover(void **state)
{
    (void)state;
    enum { N = 100000 };
    float *p = malloc(N * sizeof *p), *y = malloc(N * sizeof *y), *y2 = malloc(N * sizeof *y2);
    tl_rng r;
    tl_rng_seed(&r, 1234);
    for (int i = 0; i < N; i++) {
        double z = 2.0 * (double)tl_rng_normal(&r);
        p[i] = (float)(1 / (1 + exp(-z)));
        double zf = log((double)p[i]) - log1p(-(double)p[i]);
        y[i] = tl_rng_uniform_double(&r) < 1 / (1 + exp(-(0.6 * zf - 0.4)));
        y2[i] = tl_rng_uniform_double(&r) < 1 / (1 + exp(-zf / 2.5));
    }
    tl_calibrator *c;
    check_ok(tl_calibrator_fit(TL_CALIB_PLATT, p, y, NULL, NULL, N, &c));
    double a, b;
    tl_calibrator_platt_params(c, &a, &b);
    if (fabs(a - 0.6) > 0.03 || fabs(b + 0.4) > 0.03) fail_msg("platt a=%g b=%g", a, b);
    near(tl_calibrator_apply1(c, 0.5), 1 / (1 + exp(-b)), 1e-6, "platt at 0.5");
    tl_calibrator_free(c);

    check_ok(tl_calibrator_fit(TL_CALIB_TEMPERATURE, p, y2, NULL, NULL, N, &c));
    double t = tl_calibrator_temperature(c);
    if (fabs(t - 2.5) > 0.1) fail_msg("temperature T=%g", t);
    tl_calibrator_free(c);

    /* anti-correlated → no positive temperature */
    for (int i = 0; i < N; i++) y2[i] = 1 - y2[i];
    assert_int_equal(tl_calibrator_fit(TL_CALIB_TEMPERATURE, p, y2, NULL, NULL, N, &c),
                     TL_ERR_NUMERIC);
    assert_null(c);
    assert_non_null(strstr(tl_errmsg(), "temperature"));
    /* one class */
    for (int i = 0; i < N; i++) y2[i] = 1;
    assert_int_equal(tl_calibrator_fit(TL_CALIB_PLATT, p, y2, NULL, NULL, N, &c), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "both classes"));
    free(p);
    free(y);
    free(y2);
}

/* Platt on raw scores: scores far beyond ±16 (where sigmoid then logit in
 * float ties them) recover the generating slope and map to distinct
 * probabilities; on moderate scores the fit agrees with the fit on their
 * probabilities; scores that rank the labels backwards give the monotone
 * optimum a = 0, b = logit(mean label), flagged as clamped. */
static void test_platt_raw_scores(void **state)
{
    (void)state;
    enum { N = 40000 };
    float *r = malloc(N * sizeof *r), *p = malloc(N * sizeof *p), *y = malloc(N * sizeof *y);
    tl_rng g;
    tl_rng_seed(&g, 77);
    for (int i = 0; i < N; i++) {
        r[i] = 30.0f + 8.0f * tl_rng_normal(&g); /* mostly beyond 16 */
        y[i] = tl_rng_uniform_double(&g) < 1 / (1 + exp(-(0.25 * (double)r[i] - 7.5)));
    }
    tl_calibrator *c;
    int clamped = -1;
    check_ok(tl_calibrator_fit_scores(TL_CALIB_PLATT, r, y, NULL, NULL, N, &c, &clamped));
    assert_int_equal(clamped, 0);
    double a, b;
    tl_calibrator_platt_params(c, &a, &b);
    if (fabs(a - 0.25) > 0.02 || fabs(b + 7.5) > 0.6) fail_msg("platt on scores a=%g b=%g", a, b);
    double p20 = tl_calibrator_apply_score(c, 20.0), p30 = tl_calibrator_apply_score(c, 30.0);
    assert_true(p20 < p30 && p30 < 0.9);
    near(p30, 1 / (1 + exp(-((double)(float)a * 30.0 + (double)(float)b))), 1e-12, "platt score at 30");
    assert_true(isnan(tl_calibrator_apply_score(c, NAN)));
    tl_calibrator_free(c);

    /* moderate scores: the same fit as on the probabilities */
    for (int i = 0; i < N; i++) {
        r[i] = 2.0f * tl_rng_normal(&g);
        p[i] = (float)(1 / (1 + exp(-(double)r[i])));
        y[i] = tl_rng_uniform_double(&g) < 1 / (1 + exp(-(0.6 * (double)r[i] - 0.4)));
    }
    tl_calibrator *cp;
    check_ok(tl_calibrator_fit_scores(TL_CALIB_PLATT, r, y, NULL, NULL, N, &c, NULL));
    check_ok(tl_calibrator_fit(TL_CALIB_PLATT, p, y, NULL, NULL, N, &cp));
    double a2, b2;
    tl_calibrator_platt_params(c, &a, &b);
    tl_calibrator_platt_params(cp, &a2, &b2);
    near(a, a2, 1e-4, "platt slope, scores vs probabilities");
    near(b, b2, 1e-4, "platt intercept, scores vs probabilities");
    tl_calibrator_free(c);
    tl_calibrator_free(cp);

    /* backwards: clamped to a = 0, b = logit(mean y) */
    double sy = 0.0;
    for (int i = 0; i < N; i++) {
        y[i] = 1.0f - y[i];
        sy += (double)y[i];
    }
    check_ok(tl_calibrator_fit_scores(TL_CALIB_PLATT, r, y, NULL, NULL, N, &c, &clamped));
    assert_int_equal(clamped, 1);
    tl_calibrator_platt_params(c, &a, &b);
    assert_true(a == 0.0);
    near(b, (double)(float)log(sy / (N - sy)), 1e-7, "clamped intercept");
    near(tl_calibrator_apply_score(c, 5.0), sy / N, 1e-6, "clamped: the base rate");
    tl_calibrator_free(c);
    /* non-finite scores are refused */
    r[3] = INFINITY;
    assert_int_equal(tl_calibrator_fit_scores(TL_CALIB_PLATT, r, y, NULL, NULL, N, &c, NULL), TL_ERR_NUMERIC);
    assert_null(c);
    free(r);
    free(p);
    free(y);
}

static void test_serialize(void **state)
{
    (void)state;
    const float p[] = {0.1f, 0.3f, 0.35f, 0.6f, 0.8f, 0.2f, 0.7f, 0.9f};
    const float y[] = {0, 0, 1, 0, 1, 1, 1, 1};
    for (int k = 0; k < 3; k++) {
        tl_calibrator *c, *d;
        check_ok(tl_calibrator_fit((tl_calib_kind)k, p, y, NULL, NULL, 8, &c));
        size_t len = tl_calibrator_serial_len(c);
        float buf[64];
        assert_true(len <= 64);
        assert_int_equal(tl_calibrator_serialize(c, buf, len - 1), TL_ERR_ARG);
        check_ok(tl_calibrator_serialize(c, buf, len));
        check_ok(tl_calibrator_deserialize(buf, len, &d));
        assert_int_equal(tl_calibrator_kind(d), k);
        for (int i = 0; i <= 100; i++) {
            double q = i / 100.0;
            assert_true(tl_calibrator_apply1(c, q) == tl_calibrator_apply1(d, q));
        }
        char s[128];
        assert_non_null(strstr(tl_calibrator_describe(d, s, sizeof s), tl_calib_kind_name(k)));
        tl_calibrator_free(d);
        /* corruptions are refused */
        float bad[64];
        memcpy(bad, buf, len * sizeof(float));
        bad[0] = 99;
        assert_int_equal(tl_calibrator_deserialize(bad, len, &d), TL_ERR_FORMAT);
        assert_null(d);
        assert_int_equal(tl_calibrator_deserialize(buf, len - 1, &d), TL_ERR_FORMAT);
        memcpy(bad, buf, len * sizeof(float));
        bad[3] = NAN;
        assert_int_equal(tl_calibrator_deserialize(bad, len, &d), TL_ERR_FORMAT);
        if (k == TL_CALIB_ISOTONIC) {
            memcpy(bad, buf, len * sizeof(float));
            float t = bad[4];
            bad[4] = bad[5];
            bad[5] = t;
            assert_int_equal(tl_calibrator_deserialize(bad, len, &d), TL_ERR_FORMAT);
        }
        tl_calibrator_free(c);
    }
    tl_calib_kind kind;
    check_ok(tl_calib_kind_parse("isotonic", &kind));
    assert_int_equal(kind, TL_CALIB_ISOTONIC);
    assert_int_equal(tl_calib_kind_parse("plat", &kind), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "platt, isotonic, temperature"));
}

/* ---- eval ----------------------------------------------------------------- */

static void test_eval_binary(void **state)
{
    (void)state;
    size_t n;
    float *p = fxf("a.pred", &n), *y = fxf("a.label", NULL), *w = fxf("a.weight", NULL);
    float *pa = fxf("a.partner", NULL);
    int32_t *g = fxi("a.group"), *f = fxi("a.field");
    /* labels as an n x 2 block (task, partner), as a dataset stores them */
    float *lab = malloc(2 * n * sizeof *lab);
    for (size_t i = 0; i < n; i++) {
        lab[2 * i] = y[i];
        lab[2 * i + 1] = pa[i];
    }
    tl_calib_bin bins[10];
    tl_eval_opts o = {.task = "ctr", .label_stride = 2, .weight = w, .group = g, .field = f,
                      .partner = lab + 1, .partner_stride = 2, .n_bins = 10, .bins = bins};
    tl_metric_ws *ws = tl_metric_ws_new();
    tl_binary_eval e;
    check_ok(tl_metrics_eval_binary(p, lab, n, &o, ws, &e));
    assert_int_equal(e.rows, n);
    near(e.auc, fx1("a.auc_w"), 1e-9, "eval auc");
    near(e.gauc, fx1("a.gauc_w"), 1e-9, "eval gauc");
    near(e.multi_auc, fx1("a.multi_auc_A_w"), 1e-9, "eval multi-auc");
    near(e.logloss, fx1("a.logloss_w"), 1e-9, "eval logloss");
    near(e.brier, fx1("a.brier_w"), 1e-9, "eval brier");
    near(e.pcoc, fxd("a.pcoc", NULL)[1], 1e-9, "eval pcoc");
    near(e.ne, fx1("a.ne_w"), 1e-9, "eval ne");
    near(e.ece, fx1("a.u10w.ece"), 1e-9, "eval ece");
    near(e.mce, fx1("a.u10w.mce"), 1e-9, "eval mce");
    near(e.slope, fxd("a.slope_w", NULL)[0], 1e-5, "eval slope");
    near(e.intercept, fxd("a.slope_w", NULL)[1], 1e-5, "eval intercept");
    near(e.field_ce, fx1("a.fce_w"), 1e-9, "eval field ce");
    near(bins[3].rate, fxd("a.u10w.rate", NULL)[3], 1e-9, "eval bin rate");

    /* a second call with the grown workspace allocates nothing */
    uint64_t before = tl_alloc_count();
    check_ok(tl_metrics_eval_binary(p, lab, n, &o, ws, &e));
    assert_int_equal(tl_alloc_count(), before);
    o.bins = NULL;
    check_ok(tl_metrics_eval_binary(p, lab, n, &o, ws, &e));
    before = tl_alloc_count();
    check_ok(tl_metrics_eval_binary(p, lab, n, &o, ws, &e));
    assert_int_equal(tl_alloc_count(), before);

    /* task space: only rows where the partner is positive */
    tl_eval_opts o2 = {.task = "cvr", .label_stride = 2, .space = lab + 1, .space_stride = 2};
    check_ok(tl_metrics_eval_binary(p, lab, n, &o2, ws, &e));
    near(e.auc, fx1("a.auc_mask"), 1e-9, "task-space auc");
    assert_true(isnan(e.gauc) && isnan(e.multi_auc) && isnan(e.field_ce));

    /* messages name the task */
    lab[6] = 0.5f;
    assert_int_equal(tl_metrics_eval_binary(p, lab, n, &o, ws, &e), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "task 'ctr': label at row 3"));

    /* single class: NaN AUC with a note, the rest still computed */
    for (size_t i = 0; i < n; i++) lab[2 * i] = 0;
    check_ok(tl_metrics_eval_binary(p, lab, n, &o, ws, &e));
    assert_true(isnan(e.auc) && (e.notes & TL_NOTE_ONE_CLASS) && isfinite(e.logloss));
    tl_metric_ws_free(ws);
    free(p);
    free(y);
    free(w);
    free(pa);
    free(g);
    free(f);
    free(lab);
}

static void test_eval_regression(void **state)
{
    (void)state;
    size_t n;
    float *p = fxf("r.pred", &n), *y = fxf("r.label", NULL), *w = fxf("r.weight", NULL);
    tl_regression_eval e;
    check_ok(tl_metrics_eval_regression(p, y, n, NULL, &e));
    near(e.mse, fxd("r.mse", NULL)[0], 1e-9, "mse");
    near(e.rmse, sqrt(fxd("r.mse", NULL)[0]), 1e-9, "rmse");
    near(e.mae, fxd("r.mae", NULL)[0], 1e-9, "mae");
    tl_eval_opts o = {.task = "watch_time", .weight = w};
    check_ok(tl_metrics_eval_regression(p, y, n, &o, &e));
    near(e.mse, fxd("r.mse", NULL)[1], 1e-9, "weighted mse");
    near(e.mae, fxd("r.mae", NULL)[1], 1e-9, "weighted mae");
    y[4] = INFINITY;
    assert_int_equal(tl_metrics_eval_regression(p, y, n, &o, &e), TL_ERR_NUMERIC);
    assert_non_null(strstr(tl_errmsg(), "task 'watch_time': label at row 4"));
    free(p);
    free(y);
    free(w);
}

/* ---- against the scikit-learn fixture ------------------------------------ */

static void test_fixture_ranking(void **state)
{
    (void)state;
    size_t n;
    float *p = fxf("a.pred", &n), *y = fxf("a.label", NULL), *w = fxf("a.weight", NULL);
    float *pa = fxf("a.partner", NULL);
    int32_t *g = fxi("a.group");
    uint8_t *m = malloc(n);
    for (size_t i = 0; i < n; i++) m[i] = pa[i] == 1.0f;
    double v;
    size_t used;
    check_ok(tl_metric_auc(p, y, NULL, NULL, n, NULL, &v, NULL));
    near(v, fx1("a.auc"), 1e-9, "auc");
    check_ok(tl_metric_auc(p, y, w, NULL, n, NULL, &v, NULL));
    near(v, fx1("a.auc_w"), 1e-9, "weighted auc");
    check_ok(tl_metric_auc(p, y, NULL, m, n, NULL, &v, NULL));
    near(v, fx1("a.auc_mask"), 1e-9, "masked auc");
    check_ok(tl_metric_auc(p, y, w, m, n, NULL, &v, NULL));
    near(v, fx1("a.auc_mask_w"), 1e-9, "masked weighted auc");
    unsigned notes = 0;
    check_ok(tl_metric_gauc(p, y, g, NULL, NULL, n, NULL, &v, &used, &notes));
    near(v, fxd("a.gauc", NULL)[0], 1e-9, "gauc");
    assert_int_equal(used, (size_t)fxd("a.gauc", NULL)[1]);
    assert_true(notes & TL_NOTE_GROUPS_SKIPPED);
    check_ok(tl_metric_gauc(p, y, g, w, NULL, n, NULL, &v, &used, NULL));
    near(v, fxd("a.gauc_w", NULL)[0], 1e-9, "weighted gauc");

    static const struct { const char *name; const tl_quad *order; } orders[] = {
        {"A", TL_MULTI_AUC_ORDER_A}, {"B", TL_MULTI_AUC_ORDER_B}, {"ANEG", TL_MULTI_AUC_ORDER_A_NEG}};
    for (int k = 0; k < 3; k++)
        for (int weighted = 0; weighted < 2; weighted++) {
            char name[64];
            snprintf(name, sizeof name, "a.multi_auc_%s%s", orders[k].name, weighted ? "_w" : "");
            const double *want = fxd(name, NULL);
            double pairs[3];
            check_ok(tl_metric_multi_auc(p, y, pa, orders[k].order, weighted ? w : NULL, NULL, n,
                                         NULL, &v, pairs, NULL));
            near(v, want[0], 1e-9, name);
            for (int j = 0; j < 3; j++) near(pairs[j], want[1 + j], 1e-9, name);
        }
    free(p);
    free(y);
    free(w);
    free(pa);
    free(g);
    free(m);
}

static void test_fixture_pointwise(void **state)
{
    (void)state;
    size_t n;
    float *p = fxf("a.pred", &n), *y = fxf("a.label", NULL), *w = fxf("a.weight", NULL);
    int32_t *f = fxi("a.field");
    double v;
    check_ok(tl_metric_logloss(p, y, NULL, NULL, n, &v, NULL));
    near(v, fx1("a.logloss"), 1e-9, "logloss");
    check_ok(tl_metric_logloss(p, y, w, NULL, n, &v, NULL));
    near(v, fx1("a.logloss_w"), 1e-9, "weighted logloss");
    check_ok(tl_metric_brier(p, y, NULL, NULL, n, &v, NULL));
    near(v, fx1("a.brier"), 1e-9, "brier");
    check_ok(tl_metric_brier(p, y, w, NULL, n, &v, NULL));
    near(v, fx1("a.brier_w"), 1e-9, "weighted brier");
    tl_metric_sums s = {0}, sw = {0};
    check_ok(tl_metric_sums_add_binary(&s, p, y, NULL, NULL, n));
    check_ok(tl_metric_sums_add_binary(&sw, p, y, w, NULL, n));
    near(tl_metric_sums_pcoc(&s), fxd("a.pcoc", NULL)[0], 1e-9, "pcoc");
    near(tl_metric_sums_pcoc(&sw), fxd("a.pcoc", NULL)[1], 1e-9, "weighted pcoc");
    near(tl_metric_sums_ne(&s), fx1("a.ne"), 1e-9, "ne");
    near(tl_metric_sums_ne(&sw), fx1("a.ne_w"), 1e-9, "weighted ne");
    check_ok(tl_metric_field_calibration(p, y, f, NULL, NULL, n, NULL, &v, NULL));
    near(v, fx1("a.fce"), 1e-9, "field ce");
    check_ok(tl_metric_field_calibration(p, y, f, w, NULL, n, NULL, &v, NULL));
    near(v, fx1("a.fce_w"), 1e-9, "weighted field ce");
    float *rp = fxf("r.pred", &n), *ry = fxf("r.label", NULL), *rw = fxf("r.weight", NULL);
    check_ok(tl_metric_mse(rp, ry, rw, NULL, n, &v, NULL));
    near(v, fxd("r.mse", NULL)[1], 1e-9, "weighted mse");
    check_ok(tl_metric_rmse(rp, ry, NULL, NULL, n, &v, NULL));
    near(v, sqrt(fxd("r.mse", NULL)[0]), 1e-9, "rmse");
    check_ok(tl_metric_mae(rp, ry, rw, NULL, n, &v, NULL));
    near(v, fxd("r.mae", NULL)[1], 1e-9, "weighted mae");
    free(p);
    free(y);
    free(w);
    free(f);
    free(rp);
    free(ry);
    free(rw);
}

/* Compare every bin (empty ones included) with the fixture table, and the
 * non-empty ones with sklearn's calibration_curve when it is there. */
static void check_bins(const char *prefix, const float *p, const float *y, const float *w,
                       size_t n, int nb, tl_bin_strategy strategy, int has_sk)
{
    char name[96];
    tl_calib_bin *b = malloc((size_t)nb * sizeof *b);
    double ece, mce;
    unsigned notes = 0;
    check_ok(tl_metric_calibration_bins(p, y, w, NULL, n, nb, strategy, NULL, b, &ece, &mce,
                                        &notes));
    const double *edges = (snprintf(name, sizeof name, "%s.edges", prefix), fxd(name, NULL));
    const double *count = (snprintf(name, sizeof name, "%s.count", prefix), fxd(name, NULL));
    const double *mean = (snprintf(name, sizeof name, "%s.mean", prefix), fxd(name, NULL));
    const double *rate = (snprintf(name, sizeof name, "%s.rate", prefix), fxd(name, NULL));
    const double *lo = (snprintf(name, sizeof name, "%s.ci_lo", prefix), fxd(name, NULL));
    const double *hi = (snprintf(name, sizeof name, "%s.ci_hi", prefix), fxd(name, NULL));
    int empty = 0;
    for (int k = 0; k < nb; k++) {
        snprintf(name, sizeof name, "%s bin %d", prefix, k);
        near(b[k].lo, edges[k], 1e-12, name);
        near(b[k].hi, edges[k + 1], 1e-12, name);
        if ((double)b[k].count != count[k])
            fail_msg("%s: count %zu, want %g", name, b[k].count, count[k]);
        near(b[k].mean_pred, mean[k], 1e-9, name);
        near(b[k].rate, rate[k], 1e-9, name);
        near(b[k].ci_lo, lo[k], 1e-9, name);
        near(b[k].ci_hi, hi[k], 1e-9, name);
        empty |= b[k].count == 0;
    }
    assert_int_equal(!!(notes & TL_NOTE_EMPTY_BINS), empty);
    near(ece, (snprintf(name, sizeof name, "%s.ece", prefix), fx1(name)), 1e-9, "ece");
    near(mce, (snprintf(name, sizeof name, "%s.mce", prefix), fx1(name)), 1e-9, "mce");
    if (has_sk) {
        size_t ns;
        const double *skr = (snprintf(name, sizeof name, "%s.sk_rate", prefix), fxd(name, &ns));
        const double *skm = (snprintf(name, sizeof name, "%s.sk_mean", prefix), fxd(name, NULL));
        size_t j = 0;
        for (int k = 0; k < nb; k++) {
            if (b[k].count == 0) continue;
            assert_true(j < ns);
            near(b[k].rate, skr[j], 1e-9, "sklearn prob_true");
            near(b[k].mean_pred, skm[j], 1e-7, "sklearn prob_pred");
            j++;
        }
        assert_int_equal(j, ns);
    }
    free(b);
}

static void test_fixture_bins(void **state)
{
    (void)state;
    size_t n;
    float *p = fxf("a.pred", &n), *y = fxf("a.label", NULL), *w = fxf("a.weight", NULL);
    check_bins("a.u10", p, y, NULL, n, 10, TL_BINS_UNIFORM, 1);
    check_bins("a.q10", p, y, NULL, n, 10, TL_BINS_QUANTILE, 1);
    check_bins("a.q7", p, y, NULL, n, 7, TL_BINS_QUANTILE, 0);
    check_bins("a.u10w", p, y, w, n, 10, TL_BINS_UNIFORM, 0);
    free(p);
    free(y);
    free(w);
    p = fxf("e.pred", &n);
    y = fxf("e.label", NULL);
    check_bins("e.u10", p, y, NULL, n, 10, TL_BINS_UNIFORM, 1);
    double v;
    check_ok(tl_metric_auc(p, y, NULL, NULL, n, NULL, &v, NULL));
    near(v, fx1("e.auc"), 1e-9, "auc e");
    free(p);
    free(y);
}

static void test_fixture_fits(void **state)
{
    (void)state;
    size_t n;
    float *p = fxf("a.pred", &n), *y = fxf("a.label", NULL), *w = fxf("a.weight", NULL);
    double a, b;
    check_ok(tl_metric_calibration_slope(p, y, NULL, NULL, n, &a, &b, NULL));
    near(a, fxd("a.slope", NULL)[0], 1e-5, "slope");
    near(b, fxd("a.slope", NULL)[1], 1e-5, "intercept");
    check_ok(tl_metric_calibration_slope(p, y, w, NULL, n, &a, &b, NULL));
    near(a, fxd("a.slope_w", NULL)[0], 1e-5, "weighted slope");
    near(b, fxd("a.slope_w", NULL)[1], 1e-5, "weighted intercept");

    tl_calibrator *c;
    check_ok(tl_calibrator_fit(TL_CALIB_PLATT, p, y, w, NULL, n, &c));
    tl_calibrator_platt_params(c, &a, &b);
    near(a, fxd("a.slope_w", NULL)[0], 1e-5, "platt a");
    near(b, fxd("a.slope_w", NULL)[1], 1e-5, "platt b");
    tl_calibrator_free(c);
    check_ok(tl_calibrator_fit(TL_CALIB_TEMPERATURE, p, y, NULL, NULL, n, &c));
    near(tl_calibrator_temperature(c), fx1("a.temp"), 1e-5, "temperature");
    tl_calibrator_free(c);
    check_ok(tl_calibrator_fit(TL_CALIB_TEMPERATURE, p, y, w, NULL, n, &c));
    near(tl_calibrator_temperature(c), fx1("a.temp_w"), 1e-5, "weighted temperature");
    tl_calibrator_free(c);

    size_t ng;
    float *grid = fxf("a.iso_grid", &ng);
    float *out = malloc(ng * sizeof *out);
    for (int weighted = 0; weighted < 2; weighted++) {
        check_ok(tl_calibrator_fit(TL_CALIB_ISOTONIC, p, y, weighted ? w : NULL, NULL, n, &c));
        check_ok(tl_calibrator_apply(c, grid, out, ng));
        const double *want = fxd(weighted ? "a.iso_w" : "a.iso", NULL);
        for (size_t i = 0; i < ng; i++) near(out[i], want[i], 1e-5, "isotonic");
        if (weighted) assert_int_equal(tl_calibrator_knots(c, NULL, NULL), (size_t)fx1("a.iso_w_knots"));
        tl_calibrator_free(c);
    }
    free(out);
    free(grid);
    free(p);
    free(y);
    free(w);

    p = fxf("p.pred", &n);
    y = fxf("p.label", NULL);
    check_ok(tl_calibrator_fit(TL_CALIB_PLATT, p, y, NULL, NULL, n, &c));
    tl_calibrator_platt_params(c, &a, &b);
    near(a, fxd("p.platt", NULL)[0], 1e-5, "platt a (logistic data)");
    near(b, fxd("p.platt", NULL)[1], 1e-5, "platt b (logistic data)");
    tl_calibrator_free(c);
    free(p);
    free(y);
}

int main(void)
{
    const struct CMUnitTest hand[] = {
        cmocka_unit_test(test_auc_hand),
        cmocka_unit_test(test_auc_masked_value),
        cmocka_unit_test(test_auc_single_class),
        cmocka_unit_test(test_auc_bad_input),
        cmocka_unit_test(test_auc_nomem),
        cmocka_unit_test(test_gauc_hand),
        cmocka_unit_test(test_multi_auc_hand),
        cmocka_unit_test(test_pointwise_hand),
        cmocka_unit_test(test_bins_hand),
        cmocka_unit_test(test_slope_and_field),
        cmocka_unit_test(test_isotonic_hand_and_monotone),
        cmocka_unit_test(test_platt_and_temperature_recover),
        cmocka_unit_test(test_platt_raw_scores),
        cmocka_unit_test(test_serialize),
    };
    const struct CMUnitTest fixture[] = {
        cmocka_unit_test(test_eval_binary),
        cmocka_unit_test(test_eval_regression),
        cmocka_unit_test(test_fixture_ranking),
        cmocka_unit_test(test_fixture_pointwise),
        cmocka_unit_test(test_fixture_bins),
        cmocka_unit_test(test_fixture_fits),
    };
    int failed = cmocka_run_group_tests_name("metrics", hand, NULL, NULL);
    failed += cmocka_run_group_tests_name("metrics vs sklearn fixture", fixture, fx_load, fx_unload);
    return failed ? 1 : 0;
}
