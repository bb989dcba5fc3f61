/* test_gram.c — the Gram-matrix solvers of losses/gram.h against the
 * property that defines each method, on explicit task gradients g_k in R^n
 * (seeded random sets: independent, conflicting, rank-deficient; T = 2, 3, 5).
 * Every property checker returns its worst violation; each test also feeds
 * the checker a deliberately wrong answer and asserts that it is rejected,
 * so no check passes vacuously. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "losses/gram.h"
#include "support.h"

#define NMAX 200
#define TMAX TL_GRAM_MAX_TASKS

typedef struct {
    int T, n;
    double g[TMAX][NMAX];
    double G[TMAX * TMAX];
    double gmax2; /* max_k |g_k|^2: the scale of every tolerance */
} gset;

static double dot(const double *a, const double *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void finish(gset *s)
{
    s->gmax2 = 0.0;
    for (int i = 0; i < s->T; i++) {
        for (int j = 0; j < s->T; j++)
            s->G[i * s->T + j] = dot(s->g[i], s->g[j], s->n);
        if (s->G[i * s->T + i] > s->gmax2)
            s->gmax2 = s->G[i * s->T + i];
    }
}

/* kind 0: independent Gaussian gradients of different norms; kind 1:
 * conflicting (g_2 ~ -0.8 g_1, others mixed); kind 2: a shared component
 * (no conflict); kind 3: rank-deficient (all in a 2-dimensional subspace). */
static void make_set(gset *s, int T, int n, int kind, uint64_t seed)
{
    tl_rng r;
    tl_rng_seed(&r, seed);
    s->T = T;
    s->n = n;
    double base[NMAX], b2[NMAX];
    for (int i = 0; i < n; i++) {
        base[i] = tl_rng_normal(&r);
        b2[i] = tl_rng_normal(&r);
    }
    for (int k = 0; k < T; k++) {
        double scale = 0.2 + 3.0 * tl_rng_uniform_double(&r);
        double c1 = 2.0 * tl_rng_uniform_double(&r) - 1.0, c2 = 2.0 * tl_rng_uniform_double(&r) - 1.0;
        for (int i = 0; i < n; i++) {
            double e = tl_rng_normal(&r);
            double v;
            switch (kind) {
            case 1: v = (k == 0 ? base[i] : k == 1 ? -0.8 * base[i] + 0.3 * e : 0.5 * e - c1 * base[i]); break;
            case 2: v = 2.0 * base[i] + e; break;
            case 3: v = c1 * base[i] + c2 * b2[i]; break;
            default: v = e;
            }
            s->g[k][i] = scale * v;
        }
    }
    finish(s);
}

static void direction(const gset *s, const double *alpha, double *d)
{
    for (int i = 0; i < s->n; i++) {
        d[i] = 0.0;
        for (int k = 0; k < s->T; k++)
            d[i] += alpha[k] * s->g[k][i];
    }
}

typedef struct {
    int T, n, kind;
    uint64_t seed;
} setspec;

static const setspec SETS[] = {
    {2, 20, 0, 1}, {2, 50, 1, 2}, {2, 200, 2, 3}, {3, 20, 0, 4}, {3, 80, 1, 5},
    {3, 200, 3, 6}, {5, 50, 0, 7}, {5, 120, 1, 8}, {5, 200, 2, 9}, {5, 30, 3, 10},
};
#define NSETS ((int)(sizeof SETS / sizeof SETS[0]))

static void get_set(gset *s, int i)
{
    make_set(s, SETS[i].T, SETS[i].n, SETS[i].kind, SETS[i].seed);
}

/* ---- MGDA ------------------------------------------------------------------ */

/* KKT of min |d|^2 over the simplex: alpha >= 0, sum 1, <d, g_k> >= |d|^2
 * with equality where alpha_k > 0. Worst violation relative to max |g|^2. */
static double mgda_violation(const gset *s, const double *alpha)
{
    double d[NMAX], worst = 0.0, sum = 0.0;
    direction(s, alpha, d);
    double dd = dot(d, d, s->n);
    for (int k = 0; k < s->T; k++) {
        sum += alpha[k];
        if (-alpha[k] > worst)
            worst = -alpha[k];
        double gap = dot(d, s->g[k], s->n) - dd;
        if (-gap / s->gmax2 > worst)
            worst = -gap / s->gmax2;
        if (alpha[k] > 1e-9 && fabs(gap) / s->gmax2 > worst)
            worst = fabs(gap) / s->gmax2;
    }
    return fmax(worst, fabs(sum - 1.0));
}

static void test_mgda_min_norm(void **state)
{
    (void)state;
    for (int c = 0; c < NSETS; c++) {
        gset s;
        get_set(&s, c);
        double alpha[TMAX];
        assert_int_equal(tl_gram_mgda(s.G, s.T, alpha), TL_OK);
        double v = mgda_violation(&s, alpha);
        if (v > 1e-8)
            printf("mgda set %d: KKT violation %g\n", c, v);
        assert_true(v <= 1e-8);
        /* no random point of the simplex is shorter */
        double d[NMAX];
        direction(&s, alpha, d);
        double best = dot(d, d, s.n);
        tl_rng r;
        tl_rng_seed(&r, 100 + (uint64_t)c);
        for (int t = 0; t < 2000; t++) {
            double w[TMAX], sum = 0.0, e[NMAX];
            for (int k = 0; k < s.T; k++)
                sum += (w[k] = -log(1.0 - tl_rng_uniform_double(&r)));
            for (int k = 0; k < s.T; k++)
                w[k] /= sum;
            direction(&s, w, e);
            assert_true(dot(e, e, s.n) >= best - 1e-10 * s.gmax2);
        }
        /* the checker rejects the uniform weights on conflicting sets */
        if (SETS[c].kind == 1) {
            double u[TMAX];
            for (int k = 0; k < s.T; k++)
                u[k] = 1.0 / s.T;
            assert_true(mgda_violation(&s, u) > 1e-3);
        }
        /* T = 2: brute force over gamma */
        if (s.T == 2) {
            double bmin = INFINITY, bg = 0.0;
            for (int i = 0; i <= 100000; i++) {
                double gm = i / 100000.0, w[2] = {gm, 1.0 - gm}, e[NMAX];
                direction(&s, w, e);
                double nn = dot(e, e, s.n);
                if (nn < bmin) {
                    bmin = nn;
                    bg = gm;
                }
            }
            assert_true(fabs(bg - alpha[0]) <= 2e-5);
            assert_true(best <= bmin + 1e-12 * s.gmax2);
        }
    }
}

static void test_mgda_degenerate(void **state)
{
    (void)state;
    gset s;
    /* 0 in the hull: g_2 = -g_1, g_3 random: d = 0 */
    make_set(&s, 3, 40, 0, 21);
    for (int i = 0; i < s.n; i++)
        s.g[1][i] = -0.5 * s.g[0][i];
    finish(&s);
    double alpha[TMAX], d[NMAX];
    assert_int_equal(tl_gram_mgda(s.G, 3, alpha), TL_OK);
    direction(&s, alpha, d);
    assert_true(dot(d, d, s.n) <= 1e-8 * s.gmax2);
    assert_true(mgda_violation(&s, alpha) <= 1e-8);
    /* more tasks than dimensions */
    make_set(&s, 5, 3, 0, 22);
    assert_int_equal(tl_gram_mgda(s.G, 5, alpha), TL_OK);
    assert_true(mgda_violation(&s, alpha) <= 1e-8);
    /* all zero: uniform */
    double Z[9] = {0};
    assert_int_equal(tl_gram_mgda(Z, 3, alpha), TL_OK);
    for (int k = 0; k < 3; k++)
        assert_true(alpha[k] == 1.0 / 3);
}

/* ---- CAGrad ---------------------------------------------------------------- */

static double min_inner(const gset *s, const double *d)
{
    double m = INFINITY;
    for (int k = 0; k < s->T; k++)
        m = fmin(m, dot(s->g[k], d, s->n));
    return m;
}

static void mean_grad(const gset *s, double *g0)
{
    for (int i = 0; i < s->n; i++) {
        g0[i] = 0.0;
        for (int k = 0; k < s->T; k++)
            g0[i] += s->g[k][i] / s->T;
    }
}

/* max_k of min_k <g_k, d> over d in the ball |d - g0| <= r, sampled: random
 * points (uniform directions, radius r) plus random perturbations of d0 kept
 * on the sphere. The objective is concave, so a local maximum is global. */
static double cagrad_best_sampled(const gset *s, const double *g0, double r, const double *d0,
                                  uint64_t seed)
{
    tl_rng rng;
    tl_rng_seed(&rng, seed);
    double best = -INFINITY;
    for (int t = 0; t < 6000; t++) {
        double e[NMAX], d[NMAX], en = 0.0;
        double eps = t < 2000 ? 1.0 : t < 4000 ? 1e-2 : 1e-4;
        for (int i = 0; i < s->n; i++) {
            e[i] = tl_rng_normal(&rng);
            en += e[i] * e[i];
        }
        en = sqrt(en);
        double dn = 0.0;
        for (int i = 0; i < s->n; i++) {
            d[i] = (t < 2000 ? 0.0 : d0[i] - g0[i]) + eps * r * e[i] / en;
            dn += d[i] * d[i];
        }
        dn = sqrt(dn);
        for (int i = 0; i < s->n; i++)
            d[i] = g0[i] + r * d[i] / dn;
        best = fmax(best, min_inner(s, d));
    }
    return best;
}

/* CAGrad's dual for T = 2 by golden section on w in [0, 1]:
 * F(w) = <g_w, g0> + r |g_w|; its minimum equals the primal optimum. */
static double cagrad_dual_t2(const gset *s, const double *g0, double r)
{
    double a = 0.0, b = 1.0, gr = (sqrt(5.0) - 1.0) / 2.0;
    double F[2];
    for (int it = 0; it < 200; it++) {
        double x[2] = {b - gr * (b - a), a + gr * (b - a)};
        for (int j = 0; j < 2; j++) {
            double w[2] = {x[j], 1.0 - x[j]}, gw[NMAX];
            direction(s, w, gw);
            F[j] = dot(gw, g0, s->n) + r * sqrt(dot(gw, gw, s->n));
        }
        if (F[0] < F[1])
            b = x[1];
        else
            a = x[0];
    }
    return fmin(F[0], F[1]);
}

static void test_cagrad_dual_ball(void **state)
{
    (void)state;
    tl_gram_params p = tl_gram_defaults();
    assert_true(p.cagrad_c == 0.4 && p.cagrad_rescale == 1);
    for (int c = 0; c < NSETS; c++) {
        gset s;
        get_set(&s, c);
        double alpha[TMAX], d[NMAX], g0[NMAX], diff[NMAX];
        p.cagrad_rescale = 0;
        assert_int_equal(tl_gram_cagrad(s.G, s.T, &p, alpha), TL_OK);
        direction(&s, alpha, d);
        mean_grad(&s, g0);
        for (int i = 0; i < s.n; i++)
            diff[i] = d[i] - g0[i];
        double r = p.cagrad_c * sqrt(dot(g0, g0, s.n));
        double dist = sqrt(dot(diff, diff, s.n));
        /* inside the ball, on its boundary (c > 0 and g0 != 0) */
        assert_true(dist <= r * (1.0 + 1e-9));
        assert_true(dist >= r * (1.0 - 1e-6));
        double v = min_inner(&s, d);
        double sampled = cagrad_best_sampled(&s, g0, r, d, 300 + (uint64_t)c);
        if (sampled > v + 1e-9 * s.gmax2)
            printf("cagrad set %d: sampled %.12g beats %.12g\n", c, sampled, v);
        assert_true(sampled <= v + 1e-9 * s.gmax2);
        if (s.T == 2) {
            double dual = cagrad_dual_t2(&s, g0, r);
            assert_true(fabs(dual - v) <= 1e-8 * s.gmax2);
        }
        /* a wrong answer (d = g0, plain averaging) is rejected on conflicts */
        if (SETS[c].kind == 1)
            assert_true(cagrad_best_sampled(&s, g0, r, d, 1) > min_inner(&s, g0) + 1e-4 * s.gmax2);
        /* rescale 1 and 2 divide the weights by 1 + c^2 and 1 + c */
        double a1[TMAX], a2[TMAX];
        p.cagrad_rescale = 1;
        assert_int_equal(tl_gram_cagrad(s.G, s.T, &p, a1), TL_OK);
        p.cagrad_rescale = 2;
        assert_int_equal(tl_gram_cagrad(s.G, s.T, &p, a2), TL_OK);
        for (int k = 0; k < s.T; k++) {
            assert_true(fabs(a1[k] * (1.0 + 0.16) - alpha[k]) <= 1e-9 * fabs(alpha[k]) + 1e-12);
            assert_true(fabs(a2[k] * 1.4 - alpha[k]) <= 1e-9 * fabs(alpha[k]) + 1e-12);
        }
    }
    /* c = 0 is plain averaging */
    gset s;
    get_set(&s, 4);
    p.cagrad_c = 0.0;
    p.cagrad_rescale = 0;
    double alpha[TMAX];
    assert_int_equal(tl_gram_cagrad(s.G, s.T, &p, alpha), TL_OK);
    for (int k = 0; k < s.T; k++)
        assert_true(fabs(alpha[k] - 1.0 / s.T) <= 1e-15);
}

/* ---- Nash-MTL -------------------------------------------------------------- */

static double nash_residual(const double *G, int T, const double *alpha)
{
    double worst = 0.0;
    for (int i = 0; i < T; i++) {
        double ga = 0.0;
        for (int j = 0; j < T; j++)
            ga += G[i * T + j] * alpha[j];
        worst = fmax(worst, fabs(alpha[i] * ga - 1.0));
    }
    return worst;
}

static void test_nash_bargaining(void **state)
{
    (void)state;
    tl_gram_params p = tl_gram_defaults();
    for (int c = 0; c < NSETS; c++) {
        gset s;
        get_set(&s, c);
        double prev[TMAX], alpha[TMAX], scale;
        for (int k = 0; k < s.T; k++)
            prev[k] = 1.0;
        tl_status st = tl_gram_nash(s.G, s.T, &p, prev, alpha, &scale);
        if (SETS[c].kind == 3 && s.T > 2) {
            /* T gradients in a plane with T > 2 may have 0 in their hull */
            if (st != TL_OK)
                continue;
        }
        assert_int_equal(st, TL_OK);
        double res = nash_residual(s.G, s.T, alpha);
        if (res > 1e-9)
            printf("nash set %d: residual %g\n", c, res);
        assert_true(res <= 1e-9);
        for (int k = 0; k < s.T; k++) {
            assert_true(alpha[k] > 0.0);
            assert_true(prev[k] == alpha[k]);
        }
        /* |d|^2 = sum_k alpha_k (G alpha)_k = T; clip to max_norm 1 */
        assert_true(fabs(scale - 1.0 / (sqrt((double)s.T) + 1e-6)) <= 1e-9);
        /* a max_norm above |d| = sqrt(T) leaves the gradient alone */
        tl_gram_params q = p;
        q.nash_max_norm = 5.0;
        double p5[TMAX], a5[TMAX], sc5;
        for (int k = 0; k < s.T; k++)
            p5[k] = 1.0;
        assert_int_equal(tl_gram_nash(s.G, s.T, &q, p5, a5, &sc5), TL_OK);
        assert_true(sc5 == 1.0);
        /* warm start: one more call stays at the solution */
        double again[TMAX];
        assert_int_equal(tl_gram_nash(s.G, s.T, &p, prev, again, NULL), TL_OK);
        for (int k = 0; k < s.T; k++)
            assert_true(fabs(again[k] - alpha[k]) <= 1e-10 * alpha[k]);
        /* the cold start (prev = 0) finds the same point */
        double cold[TMAX] = {0}, ac[TMAX];
        assert_int_equal(tl_gram_nash(s.G, s.T, &p, cold, ac, NULL), TL_OK);
        for (int k = 0; k < s.T; k++)
            assert_true(fabs(ac[k] - alpha[k]) <= 1e-10 * alpha[k]);
        /* scaling G by 4 halves alpha */
        double G4[TMAX * TMAX], a4[TMAX], p4[TMAX];
        for (int i = 0; i < s.T * s.T; i++)
            G4[i] = 4.0 * s.G[i];
        for (int k = 0; k < s.T; k++)
            p4[k] = 1.0;
        assert_int_equal(tl_gram_nash(G4, s.T, &p, p4, a4, NULL), TL_OK);
        for (int k = 0; k < s.T; k++)
            assert_true(fabs(2.0 * a4[k] - alpha[k]) <= 1e-9 * alpha[k]);
        /* the checker rejects MGDA's direction scaled to |d|^2 = T */
        double m[TMAX], mm = 0.0;
        assert_int_equal(tl_gram_mgda(s.G, s.T, m), TL_OK);
        for (int i = 0; i < s.T; i++)
            for (int j = 0; j < s.T; j++)
                mm += m[i] * s.G[i * s.T + j] * m[j];
        for (int k = 0; k < s.T; k++)
            m[k] *= sqrt(s.T / mm);
        assert_true(nash_residual(s.G, s.T, m) > 1e-3);
    }
}

static void test_nash_no_solution(void **state)
{
    (void)state;
    gset s;
    make_set(&s, 2, 30, 0, 31);
    for (int i = 0; i < s.n; i++)
        s.g[1][i] = -2.0 * s.g[0][i];
    finish(&s);
    double prev[2] = {0.7, 1.3}, alpha[2], scale = -1.0;
    assert_int_equal(tl_gram_nash(s.G, 2, NULL, prev, alpha, &scale), TL_ERR_NUMERIC);
    assert_non_null(strstr(tl_errmsg(), "convex hull"));
    assert_true(alpha[0] == 0.7 && alpha[1] == 1.3 && prev[0] == 0.7 && scale == 1.0);
    /* a zero task gradient */
    make_set(&s, 3, 30, 0, 32);
    memset(s.g[2], 0, sizeof s.g[2]);
    finish(&s);
    double p3[3] = {1, 1, 1}, a3[3];
    assert_int_equal(tl_gram_nash(s.G, 3, NULL, p3, a3, NULL), TL_ERR_NUMERIC);
    for (int k = 0; k < 3; k++)
        assert_true(isfinite(a3[k]));
}

/* ---- IMTL-G ---------------------------------------------------------------- */

/* spread of <d, g_k / |g_k|> over k, relative to max |g_k| (d = 0 is the
 * answer when T gradients span T - 1 dimensions) */
static double imtl_spread(const gset *s, const double *alpha)
{
    double d[NMAX], lo = INFINITY, hi = -INFINITY;
    direction(s, alpha, d);
    for (int k = 0; k < s->T; k++) {
        double pr = dot(d, s->g[k], s->n) / sqrt(dot(s->g[k], s->g[k], s->n));
        lo = fmin(lo, pr);
        hi = fmax(hi, pr);
    }
    return (hi - lo) / sqrt(s->gmax2);
}

static void test_imtl_g_equal_projections(void **state)
{
    (void)state;
    for (int c = 0; c < NSETS; c++) {
        gset s;
        get_set(&s, c);
        double alpha[TMAX], sum = 0.0;
        tl_status st = tl_gram_imtl_g(s.G, s.T, alpha);
        if (st != TL_OK)
            printf("imtl set %d: %s\n", c, tl_errmsg());
        if (SETS[c].kind == 3 && s.T > 3) {
            /* T - 1 > rank 2: (U D^T) is singular */
            assert_int_equal(st, TL_ERR_NUMERIC);
            continue;
        }
        assert_int_equal(st, TL_OK);
        for (int k = 0; k < s.T; k++)
            sum += alpha[k];
        assert_true(fabs(sum - 1.0) <= 1e-12);
        double sp = imtl_spread(&s, alpha);
        if (sp > 1e-9)
            printf("imtl set %d: spread %g\n", c, sp);
        assert_true(sp <= 1e-9);
        double u[TMAX];
        for (int k = 0; k < s.T; k++)
            u[k] = 1.0 / s.T;
        assert_true(imtl_spread(&s, u) > 1e-3); /* norms differ in every set */
    }
    gset s;
    make_set(&s, 3, 30, 0, 41);
    memset(s.g[1], 0, sizeof s.g[1]);
    finish(&s);
    double alpha[3];
    assert_int_equal(tl_gram_imtl_g(s.G, 3, alpha), TL_ERR_NUMERIC);
    assert_non_null(strstr(tl_errmsg(), "task 1"));
    for (int k = 0; k < 3; k++)
        assert_true(alpha[k] == 1.0 / 3);
}

/* ---- Aligned-MTL ----------------------------------------------------------- */

/* The aligned gradients g'_i = sum_j B_ij g_j, built as vectors: their Gram
 * matrix A must satisfy A A = l A (all non-zero eigenvalues equal l: a
 * condition number of 1) with trace A = rank * l. Returns the worst of
 * |A A - l A| / l^2 and reports l and the numerical rank trace(A) / l. */
static double aligned_violation(const gset *s, const double *B, double *l_out, double *rank_out)
{
    double a[TMAX][NMAX], A[TMAX * TMAX];
    int T = s->T;
    for (int i = 0; i < T; i++)
        for (int x = 0; x < s->n; x++) {
            a[i][x] = 0.0;
            for (int j = 0; j < T; j++)
                a[i][x] += B[i * T + j] * s->g[j][x];
        }
    double lmax = 0.0;
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) {
            A[i * T + j] = dot(a[i], a[j], s->n);
            if (i == j)
                lmax = fmax(lmax, A[i * T + j]);
        }
    /* l: the largest eigenvalue, by power iteration */
    double v[TMAX], l = 0.0;
    for (int i = 0; i < T; i++)
        v[i] = 1.0 + 0.1 * i;
    for (int it = 0; it < 500; it++) {
        double w[TMAX], nn = 0.0;
        for (int i = 0; i < T; i++) {
            w[i] = 0.0;
            for (int j = 0; j < T; j++)
                w[i] += A[i * T + j] * v[j];
            nn += w[i] * w[i];
        }
        nn = sqrt(nn);
        l = nn;
        for (int i = 0; i < T; i++)
            v[i] = w[i] / nn;
    }
    double worst = 0.0, tr = 0.0;
    for (int i = 0; i < T; i++) {
        tr += A[i * T + i];
        for (int j = 0; j < T; j++) {
            double aa = 0.0;
            for (int k = 0; k < T; k++)
                aa += A[i * T + k] * A[k * T + j];
            worst = fmax(worst, fabs(aa - l * A[i * T + j]) / (l * l));
        }
    }
    *l_out = l;
    *rank_out = tr / l;
    (void)lmax;
    return worst;
}

static void test_aligned_condition_one(void **state)
{
    (void)state;
    for (int c = 0; c < NSETS; c++) {
        gset s;
        get_set(&s, c);
        double alpha[TMAX], B[TMAX * TMAX], l, rank;
        assert_int_equal(tl_gram_aligned(s.G, s.T, alpha, B), TL_OK);
        double v = aligned_violation(&s, B, &l, &rank);
        if (v > 1e-8)
            printf("aligned set %d: |AA - lA| %g\n", c, v);
        assert_true(v <= 1e-8);
        int want = SETS[c].kind == 3 ? 2 : s.T;
        assert_true(fabs(rank - want) <= 1e-8);
        /* l is the smallest non-zero eigenvalue of G: with full rank, no
         * more than any |g_k|^2 (Rayleigh quotient) */
        for (int k = 0; k < s.T && want == s.T; k++)
            assert_true(l <= s.G[k * s.T + k] * (1.0 + 1e-9));
        /* alpha = column sums of B, and d = sum_i g'_i */
        for (int j = 0; j < s.T; j++) {
            double cs = 0.0;
            for (int i = 0; i < s.T; i++)
                cs += B[i * s.T + j];
            assert_true(fabs(cs - alpha[j]) <= 1e-12 * (1.0 + fabs(cs)));
        }
        /* the checker rejects the unaligned system B = I */
        double I[TMAX * TMAX] = {0};
        for (int k = 0; k < s.T; k++)
            I[k * s.T + k] = 1.0;
        assert_true(aligned_violation(&s, I, &l, &rank) > 1e-3);
    }
    /* LibMTL's rank tolerance (max eigenvalue * T * FLT_EPSILON): a third
     * gradient within 1e-5 of the first adds an eigenvalue ~1e-10 * max,
     * dropped, so the aligned system has rank 2 */
    gset s;
    make_set(&s, 3, 40, 0, 71);
    tl_rng r;
    tl_rng_seed(&r, 72);
    for (int i = 0; i < s.n; i++)
        s.g[2][i] = s.g[0][i] + 1e-5 * (double)tl_rng_normal(&r);
    finish(&s);
    double a3[3], B3[9], l, rank;
    assert_int_equal(tl_gram_aligned(s.G, 3, a3, B3), TL_OK);
    assert_true(aligned_violation(&s, B3, &l, &rank) <= 1e-6);
    assert_true(fabs(rank - 2.0) <= 1e-6);
    double Z[4] = {0}, alpha[2], B[4];
    assert_int_equal(tl_gram_aligned(Z, 2, alpha, B), TL_OK);
    assert_true(alpha[0] == 0.5 && alpha[1] == 0.5 && B[0] == 0.5 && B[1] == 0.0);
}

/* ---- UPGrad and PCGrad ----------------------------------------------------- */

/* most negative <d, g_k> relative to max |g|^2 (0 when none is negative) */
static double worst_conflict(const gset *s, const double *alpha)
{
    double d[NMAX], worst = 0.0;
    direction(s, alpha, d);
    for (int k = 0; k < s->T; k++)
        worst = fmin(worst, dot(d, s->g[k], s->n) / s->gmax2);
    return -worst;
}

static void test_upgrad_no_conflict(void **state)
{
    (void)state;
    tl_gram_params p = tl_gram_defaults();
    assert_true(p.upgrad_norm_eps == 1e-4 && p.upgrad_reg_eps == 1e-4);
    int rejected = 0;
    for (int c = 0; c < NSETS; c++) {
        gset s;
        get_set(&s, c);
        double alpha[TMAX], tr = 0.0;
        for (int k = 0; k < s.T; k++)
            tr += s.G[k * s.T + k];
        p = tl_gram_defaults();
        assert_int_equal(tl_gram_upgrad(s.G, s.T, &p, alpha), TL_OK);
        /* the ridge allows <d, g_k> >= -reg_eps alpha_k trace G */
        double d[NMAX];
        direction(&s, alpha, d);
        for (int k = 0; k < s.T; k++)
            assert_true(dot(d, s.g[k], s.n) >= -p.upgrad_reg_eps * alpha[k] * tr * (1 + 1e-9) - 1e-12 * tr);
        /* without the ridge: none negative */
        p.upgrad_reg_eps = 0.0;
        assert_int_equal(tl_gram_upgrad(s.G, s.T, &p, alpha), TL_OK);
        double w = worst_conflict(&s, alpha);
        if (w > 1e-10)
            printf("upgrad set %d: <d, g_k> = %g |g|^2\n", c, -w);
        assert_true(w <= 1e-10);
        /* no conflicting pair: UPGrad is the mean */
        int conflict = 0;
        for (int i = 0; i < s.T * s.T; i++)
            conflict |= s.G[i] < 0.0;
        if (!conflict)
            for (int k = 0; k < s.T; k++)
                assert_true(fabs(alpha[k] - 1.0 / s.T) <= 1e-12);
        double u[TMAX];
        for (int k = 0; k < s.T; k++)
            u[k] = 1.0 / s.T;
        rejected += worst_conflict(&s, u) > 1e-3;
    }
    assert_true(rejected >= 2); /* the mean conflicts on the conflicting sets */
    /* tiny gradients (trace < norm_eps): the mean, as TorchJD */
    double G[4] = {1e-5, -1e-5, -1e-5, 2e-5}, alpha[2];
    assert_int_equal(tl_gram_upgrad(G, 2, NULL, alpha), TL_OK);
    assert_true(alpha[0] == 0.5 && alpha[1] == 0.5);
    /* G = 0 with norm_eps = reg_eps = 0: still the mean, no 0/0 */
    tl_gram_params z = tl_gram_defaults();
    z.upgrad_norm_eps = z.upgrad_reg_eps = 0.0;
    double Z[4] = {0};
    assert_int_equal(tl_gram_upgrad(Z, 2, &z, alpha), TL_OK);
    assert_true(alpha[0] == 0.5 && alpha[1] == 0.5);
}

static void test_pcgrad_two_tasks(void **state)
{
    (void)state;
    for (int c = 0; c < NSETS; c++) {
        if (SETS[c].T != 2)
            continue;
        gset s;
        get_set(&s, c);
        tl_rng r;
        tl_rng_seed(&r, 5);
        double alpha[TMAX];
        assert_int_equal(tl_gram_pcgrad(s.G, 2, &r, alpha), TL_OK);
        assert_true(worst_conflict(&s, alpha) <= 1e-12);
    }
}

/* PCGrad and GradVac on the Gram matrix equal the same algorithm on the
 * vectors (LibMTL's loops), drawing the same task orders. */
static void pcgrad_vectors(const gset *s, tl_rng *r, double *d)
{
    int T = s->T, n = s->n;
    memset(d, 0, sizeof(double) * (size_t)n);
    for (int i = 0; i < T; i++) {
        double pc[NMAX];
        uint32_t idx[TMAX];
        memcpy(pc, s->g[i], sizeof(double) * (size_t)n);
        for (int j = 0; j < T; j++)
            idx[j] = (uint32_t)j;
        tl_rng_shuffle_u32(r, idx, (size_t)T);
        for (int a = 0; a < T; a++) {
            const double *gj = s->g[idx[a]];
            double gij = dot(pc, gj, n);
            if (gij < 0.0)
                for (int x = 0; x < n; x++)
                    pc[x] -= gij / dot(gj, gj, n) * gj[x];
        }
        for (int x = 0; x < n; x++)
            d[x] += pc[x];
    }
}

static void gradvac_vectors(const gset *s, double beta, double *ema, tl_rng *r, double *d)
{
    int T = s->T, n = s->n;
    memset(d, 0, sizeof(double) * (size_t)n);
    for (int i = 0; i < T; i++) {
        double pc[NMAX];
        uint32_t idx[TMAX];
        int m = 0;
        memcpy(pc, s->g[i], sizeof(double) * (size_t)n);
        for (int j = 0; j < T; j++)
            if (j != i)
                idx[m++] = (uint32_t)j;
        tl_rng_shuffle_u32(r, idx, (size_t)m);
        for (int a = 0; a < m; a++) {
            int j = (int)idx[a];
            const double *gj = s->g[j];
            double pn = sqrt(dot(pc, pc, n)), gn = sqrt(dot(gj, gj, n));
            double rho = dot(pc, gj, n) / (pn * gn), phi = ema[i * T + j];
            if (rho < phi) {
                double w = pn * (phi * sqrt(1 - rho * rho) - rho * sqrt(1 - phi * phi)) /
                           (gn * sqrt(1 - phi * phi));
                for (int x = 0; x < n; x++)
                    pc[x] += w * gj[x];
            }
            ema[i * T + j] = (1 - beta) * phi + beta * rho;
        }
        for (int x = 0; x < n; x++)
            d[x] += pc[x];
    }
}

static double rel_diff(const double *a, const double *b, int n)
{
    double num = 0.0, den = 0.0;
    for (int i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}

static void test_pcgrad_gradvac_match_vectors(void **state)
{
    (void)state;
    tl_gram_params p = tl_gram_defaults();
    assert_true(p.gradvac_beta == 0.5);
    for (int c = 0; c < NSETS; c++) {
        gset s;
        get_set(&s, c);
        tl_rng r1, r2;
        double alpha[TMAX], d[NMAX], dv[NMAX];
        tl_rng_seed(&r1, 77 + (uint64_t)c);
        r2 = r1;
        assert_int_equal(tl_gram_pcgrad(s.G, s.T, &r1, alpha), TL_OK);
        direction(&s, alpha, d);
        pcgrad_vectors(&s, &r2, dv);
        assert_true(rel_diff(d, dv, s.n) <= 1e-10);
        /* GradVac over three steps with targets carried in ema */
        double ema[TMAX * TMAX] = {0}, emav[TMAX * TMAX] = {0};
        for (int step = 0; step < 3; step++) {
            assert_int_equal(tl_gram_gradvac(s.G, s.T, &p, ema, &r1, alpha), TL_OK);
            direction(&s, alpha, d);
            gradvac_vectors(&s, p.gradvac_beta, emav, &r2, dv);
            assert_true(rel_diff(d, dv, s.n) <= 1e-10);
            for (int i = 0; i < s.T * s.T; i++)
                assert_true(fabs(ema[i] - emav[i]) <= 1e-12);
        }
    }
}

static double cosine(const double *a, const double *b, int n)
{
    return dot(a, b, n) / sqrt(dot(a, a, n) * dot(b, b, n));
}

static void test_gradvac_reaches_target(void **state)
{
    (void)state;
    tl_gram_params p = tl_gram_defaults();
    int lifted = 0;
    for (int c = 0; c < NSETS; c++) {
        if (SETS[c].T != 2)
            continue;
        gset s;
        get_set(&s, c);
        double rho = cosine(s.g[0], s.g[1], s.n);
        /* targets above the current cosine for both orders */
        double t12 = fmin(0.9, rho + 0.3), t21 = fmin(0.95, rho + 0.5);
        double ema[4] = {0.0, t12, t21, 0.0}, alpha[2];
        tl_rng r;
        tl_rng_seed(&r, 9);
        assert_int_equal(tl_gram_gradvac(s.G, 2, &p, ema, &r, alpha), TL_OK);
        /* T = 2: g'_1 = g_1 + w_1 g_2, g'_2 = g_2 + w_2 g_1, alpha = (1+w_2, 1+w_1) */
        double pc1[NMAX], pc2[NMAX], w1 = alpha[1] - 1.0, w2 = alpha[0] - 1.0;
        for (int i = 0; i < s.n; i++) {
            pc1[i] = s.g[0][i] + w1 * s.g[1][i];
            pc2[i] = s.g[1][i] + w2 * s.g[0][i];
        }
        if (rho < t12) {
            assert_true(fabs(cosine(pc1, s.g[1], s.n) - t12) <= 1e-10);
            assert_true(fabs(cosine(pc2, s.g[0], s.n) - t21) <= 1e-10);
            lifted++;
            /* PCGrad's projection (target 0) is a different answer */
            double pj[NMAX], g12 = dot(s.g[0], s.g[1], s.n);
            for (int i = 0; i < s.n; i++)
                pj[i] = s.g[0][i] - fmin(g12, 0.0) / dot(s.g[1], s.g[1], s.n) * s.g[1][i];
            assert_true(fabs(cosine(pj, s.g[1], s.n) - t12) > 1e-2);
        }
        /* EMA of the cosine before the lift */
        assert_true(fabs(ema[1] - (0.5 * t12 + 0.5 * rho)) <= 1e-12);
        assert_true(fabs(ema[2] - (0.5 * t21 + 0.5 * rho)) <= 1e-12);
        /* EMA rate: beta weighs the new cosine */
        double e2[4] = {0.0, t12, t21, 0.0}, a2[2];
        tl_gram_params q = p;
        q.gradvac_beta = 0.25;
        assert_int_equal(tl_gram_gradvac(s.G, 2, &q, e2, &r, a2), TL_OK);
        assert_true(fabs(e2[1] - (0.75 * t12 + 0.25 * rho)) <= 1e-12);
        /* targets already met (below the cosine): nothing changes */
        double low[4] = {0.0, fmax(-1.0, rho - 0.1), fmax(-1.0, rho - 0.1), 0.0};
        assert_int_equal(tl_gram_gradvac(s.G, 2, &p, low, &r, alpha), TL_OK);
        assert_true(alpha[0] == 1.0 && alpha[1] == 1.0);
    }
    assert_true(lifted >= 3);
}

/* ---- many tasks ------------------------------------------------------------ */

/* 150 random sets with T = 2..16 and n from T/2 to 60 (rank-deficient when
 * n < T): every solver succeeds (or reports the documented degenerate
 * case), writes finite weights, and keeps its defining property. */
static void test_many_tasks(void **state)
{
    (void)state;
    int nash_ok = 0, imtl_ok = 0;
    for (int c = 0; c < 150; c++) {
        int T = 2 + c % 15, ns[4] = {T / 2 + 1, T, 3 * T, 60};
        int n = ns[(c / 15) % 4], kind = (c / 3) % 4;
        if (n > NMAX)
            n = NMAX;
        gset s;
        make_set(&s, T, n, kind, 1000 + (uint64_t)c);
        double alpha[TMAX];
        assert_int_equal(tl_gram_mgda(s.G, T, alpha), TL_OK);
        double v = mgda_violation(&s, alpha);
        if (v > 1e-7)
            printf("many: set %d (T %d n %d kind %d) mgda %g\n", c, T, n, kind, v);
        assert_true(v <= 1e-7);
        double d[NMAX], mn;
        direction(&s, alpha, d);
        mn = dot(d, d, s.n);

        tl_gram_params p = tl_gram_defaults();
        p.cagrad_rescale = 0;
        assert_int_equal(tl_gram_cagrad(s.G, T, &p, alpha), TL_OK);
        double g0[NMAX], diff[NMAX];
        direction(&s, alpha, d);
        mean_grad(&s, g0);
        for (int i = 0; i < n; i++)
            diff[i] = d[i] - g0[i];
        double r = p.cagrad_c * sqrt(dot(g0, g0, n));
        assert_true(sqrt(dot(diff, diff, n)) <= r * (1.0 + 1e-9) + 1e-12 * sqrt(s.gmax2));
        if (c % 5 == 0 || kind == 3) {
            double val = min_inner(&s, d), best = cagrad_best_sampled(&s, g0, r, d, 7 + (uint64_t)c);
            if (best > val + 1e-9 * s.gmax2)
                printf("many: set %d (T %d n %d) cagrad sampled %.12g beats %.12g\n", c, T, n,
                       best, val);
            assert_true(best <= val + 1e-9 * s.gmax2);
        }

        double prev[TMAX];
        for (int k = 0; k < T; k++)
            prev[k] = 1.0;
        tl_status st = tl_gram_nash(s.G, T, NULL, prev, alpha, NULL);
        for (int k = 0; k < T; k++)
            assert_true(isfinite(alpha[k]));
        if (st == TL_OK) {
            double res = nash_residual(s.G, T, alpha);
            if (res > 1e-8)
                printf("many: set %d (T %d n %d kind %d) nash residual %g (min-norm %g)\n", c,
                       T, n, kind, res, mn / s.gmax2);
            assert_true(res <= 1e-8);
            nash_ok++;
        } else {
            assert_int_equal(st, TL_ERR_NUMERIC);
            assert_true(mn <= 1e-6 * s.gmax2);
        }

        st = tl_gram_imtl_g(s.G, T, alpha);
        for (int k = 0; k < T; k++)
            assert_true(isfinite(alpha[k]));
        if (st == TL_OK) {
            assert_true(imtl_spread(&s, alpha) <= 1e-7);
            imtl_ok++;
        } else {
            assert_int_equal(st, TL_ERR_NUMERIC);
        }

        double B[TMAX * TMAX], l, rank;
        assert_int_equal(tl_gram_aligned(s.G, T, alpha, B), TL_OK);
        assert_true(aligned_violation(&s, B, &l, &rank) <= 1e-7);

        p = tl_gram_defaults();
        p.upgrad_reg_eps = 0.0;
        assert_int_equal(tl_gram_upgrad(s.G, T, &p, alpha), TL_OK);
        assert_true(worst_conflict(&s, alpha) <= 1e-9);
        assert_int_equal(tl_gram_upgrad(s.G, T, NULL, alpha), TL_OK);
        for (int k = 0; k < T; k++)
            assert_true(isfinite(alpha[k]) && alpha[k] >= 1.0 / T - 1e-12);
    }
    assert_true(nash_ok >= 50 && imtl_ok >= 50);
}

/* Gradients of any scale get the same weights (no absolute tolerances),
 * Nash-MTL's scaled by 1/sqrt(s); UPGrad's norm_eps is absolute by design. */
static void test_scale_invariance(void **state)
{
    (void)state;
    const double scales[] = {1e-24, 1e-12, 1e6, 1e24};
    for (int c = 0; c < NSETS; c++) {
        gset s;
        get_set(&s, c);
        int T = s.T;
        double ref[9][TMAX];
        for (int si = -1; si < 4; si++) {
            double f = si < 0 ? 1.0 : scales[si], G[TMAX * TMAX], a[9][TMAX];
            for (int i = 0; i < T * T; i++)
                G[i] = f * s.G[i];
            double prev[TMAX] = {0}, ema[TMAX * TMAX] = {0};
            tl_rng r;
            tl_rng_seed(&r, 4);
            int ok[9];
            ok[0] = tl_gram_mgda(G, T, a[0]) == TL_OK;
            ok[1] = tl_gram_cagrad(G, T, NULL, a[1]) == TL_OK;
            ok[2] = tl_gram_nash(G, T, NULL, prev, a[2], NULL) == TL_OK;
            ok[3] = tl_gram_imtl_g(G, T, a[3]) == TL_OK;
            ok[4] = tl_gram_aligned(G, T, a[4], NULL) == TL_OK;
            ok[5] = tl_gram_gradvac(G, T, NULL, ema, &r, a[5]) == TL_OK;
            ok[6] = tl_gram_gradvac(G, T, NULL, ema, &r, a[6]) == TL_OK; /* second step */
            ok[7] = tl_gram_pcgrad(G, T, &r, a[7]) == TL_OK;
            ok[8] = f >= 1.0 ? tl_gram_upgrad(G, T, NULL, a[8]) == TL_OK : 1;
            for (int m = 0; m < 9; m++) {
                if (m == 8 && f < 1.0)
                    continue;
                for (int k = 0; k < T; k++) {
                    double v = m == 2 ? a[m][k] * sqrt(f) : a[m][k];
                    if (si < 0) {
                        ref[m][k] = ok[m] ? v : (double)NAN;
                        continue;
                    }
                    if (isnan(ref[m][k])) {
                        assert_false(ok[m]);
                        continue;
                    }
                    assert_true(ok[m]);
                    if (fabs(v - ref[m][k]) > 1e-8 * (fabs(ref[m][k]) + 1e-3))
                        printf("scale %g set %d method %d task %d: %.15g vs %.15g\n", f, c, m, k,
                               v, ref[m][k]);
                    assert_true(fabs(v - ref[m][k]) <= 1e-8 * (fabs(ref[m][k]) + 1e-3));
                }
            }
        }
    }
}

/* ---- reference fixture (numpy/scipy, tests/fixtures/gram/make_gram.py) ---- */

static void test_reference_fixture(void **state)
{
    (void)state;
    tlt_fixture *fx = tlt_fixture_load("tests/fixtures/gram/gram_reference.txt");
    assert_non_null(fx);
    const tlt_array *cases = tlt_fixture_get(fx, "cases", 0, 2);
    assert_non_null(cases);
    for (int c = 0; c < cases->rows; c++) {
        int T = (int)cases->v[2 * c], id = (int)cases->v[2 * c + 1];
        char name[64];
        snprintf(name, sizeof name, "G_%d", id);
        const tlt_array *G = tlt_fixture_get(fx, name, T, T);
        assert_non_null(G);
        const char *methods[] = {"mgda", "cagrad", "imtl", "aligned", "upgrad", "nash"};
        for (int m = 0; m < 6; m++) {
            snprintf(name, sizeof name, "%s_%d", methods[m], id);
            const tlt_array *ref = tlt_fixture_get(fx, name, 1, T);
            assert_non_null(ref);
            double alpha[TMAX], prev[TMAX] = {0};
            tl_status st = m == 0   ? tl_gram_mgda(G->v, T, alpha)
                           : m == 1 ? tl_gram_cagrad(G->v, T, NULL, alpha)
                           : m == 2 ? tl_gram_imtl_g(G->v, T, alpha)
                           : m == 3 ? tl_gram_aligned(G->v, T, alpha, NULL)
                           : m == 4 ? tl_gram_upgrad(G->v, T, NULL, alpha)
                                    : tl_gram_nash(G->v, T, NULL, prev, alpha, NULL);
            assert_int_equal(st, TL_OK);
            /* MGDA and CAGrad references are iterative (LibMTL's Frank-Wolfe,
             * SLSQP with CAGrad's 1e-8 guards): 1e-6 of the largest weight;
             * the closed forms and UPGrad's exact QP: 1e-12; Nash-MTL's
             * convex-concave steps stop early (their rule): 1e-3 */
            double amax = 0.0, worst = 0.0;
            for (int k = 0; k < T; k++) {
                amax = fmax(amax, fabs(ref->v[k]));
                worst = fmax(worst, fabs(alpha[k] - ref->v[k]));
            }
            double tol = (m == 0 || m == 1) ? 1e-6 : m == 5 ? 1e-3 : 1e-12;
            if (worst > tol * amax)
                printf("fixture case %d %s: worst %g (of %g)\n", id, methods[m], worst, amax);
            assert_true(worst <= tol * amax);
        }
    }
    tlt_fixture_free(fx);
}

/* ---- bad input ------------------------------------------------------------- */

typedef tl_status (*solver_fn)(const double *G, int T, double *alpha);

static tl_status run_cagrad(const double *G, int T, double *a) { return tl_gram_cagrad(G, T, NULL, a); }
static tl_status run_upgrad(const double *G, int T, double *a) { return tl_gram_upgrad(G, T, NULL, a); }
static tl_status run_aligned(const double *G, int T, double *a) { return tl_gram_aligned(G, T, a, NULL); }
static tl_status run_nash(const double *G, int T, double *a)
{
    double prev[TMAX];
    for (int k = 0; k < TMAX; k++)
        prev[k] = 1.0;
    return tl_gram_nash(G, T, NULL, prev, a, NULL);
}
static tl_status run_gradvac(const double *G, int T, double *a)
{
    double ema[TMAX * TMAX] = {0};
    tl_rng r;
    tl_rng_seed(&r, 1);
    return tl_gram_gradvac(G, T, NULL, ema, &r, a);
}
static tl_status run_pcgrad(const double *G, int T, double *a)
{
    tl_rng r;
    tl_rng_seed(&r, 1);
    return tl_gram_pcgrad(G, T, &r, a);
}

static void test_bad_input(void **state)
{
    (void)state;
    solver_fn fns[] = {tl_gram_mgda, run_cagrad, run_nash, tl_gram_imtl_g,
                       run_aligned, run_upgrad, run_gradvac, run_pcgrad};
    const char *names[] = {"mgda", "cagrad", "nash", "imtl_g", "aligned", "upgrad", "gradvac", "pcgrad"};
    gset s;
    make_set(&s, 3, 20, 0, 51);
    for (int f = 0; f < 8; f++) {
        double G[9], alpha[TMAX];
        memcpy(G, s.G, sizeof G);
        G[5] = NAN;
        G[7] = NAN;
        assert_int_equal(fns[f](G, 3, alpha), TL_ERR_NUMERIC);
        assert_non_null(strstr(tl_errmsg(), names[f]));
        assert_non_null(strstr(tl_errmsg(), "(1,2)"));
        for (int k = 0; k < 3; k++)
            assert_true(isfinite(alpha[k]));
        memcpy(G, s.G, sizeof G);
        G[1] += 1e-3 * s.gmax2;
        assert_int_equal(fns[f](G, 3, alpha), TL_ERR_ARG);
        assert_non_null(strstr(tl_errmsg(), "not symmetric"));
        memcpy(G, s.G, sizeof G);
        G[4] = -1.0;
        assert_int_equal(fns[f](G, 3, alpha), TL_ERR_ARG);
        assert_int_equal(fns[f](s.G, 0, alpha), TL_ERR_ARG);
        assert_int_equal(fns[f](s.G, TMAX + 1, alpha), TL_ERR_ARG);
        /* rounding-level asymmetry is accepted */
        memcpy(G, s.G, sizeof G);
        G[1] *= 1.0 + 1e-9;
        assert_int_equal(fns[f](G, 3, alpha), TL_OK);
        for (int k = 0; k < 3; k++)
            assert_true(isfinite(alpha[k]));
    }
    double alpha[3];
    assert_int_equal(tl_gram_mgda(s.G, 3, NULL), TL_ERR_ARG);
    assert_int_equal(tl_gram_mgda(NULL, 3, alpha), TL_ERR_ARG);
    assert_int_equal(tl_gram_nash(s.G, 3, NULL, NULL, alpha, NULL), TL_ERR_ARG);
    assert_int_equal(tl_gram_nash(s.G, 3, NULL, alpha, NULL, NULL), TL_ERR_ARG);
    assert_int_equal(tl_gram_cosines(s.G, 3, NULL, alpha, NULL), TL_ERR_ARG);
    tl_gram_params p = tl_gram_defaults();
    p.cagrad_rescale = 3;
    assert_int_equal(tl_gram_cagrad(s.G, 3, &p, alpha), TL_ERR_ARG);
    p = tl_gram_defaults();
    p.gradvac_beta = 1.5;
    double ema[9] = {0};
    tl_rng r;
    tl_rng_seed(&r, 1);
    assert_int_equal(tl_gram_gradvac(s.G, 3, &p, ema, &r, alpha), TL_ERR_ARG);
    ema[1] = 2.0;
    assert_int_equal(tl_gram_gradvac(s.G, 3, NULL, ema, &r, alpha), TL_ERR_ARG);
}

/* The solvers allocate nothing, the Gram matrix of float gradients is
 * accumulated in double, and T = 1 is the task gradient itself. */
static void test_no_alloc_single_task(void **state)
{
    (void)state;
    gset s;
    make_set(&s, 5, 60, 1, 61);
    uint64_t before = tl_alloc_count();
    double alpha[TMAX], prev[TMAX] = {1, 1, 1, 1, 1}, ema[TMAX * TMAX] = {0}, cs[TMAX], dn;
    tl_rng r;
    tl_rng_seed(&r, 3);
    assert_int_equal(tl_gram_mgda(s.G, 5, alpha), TL_OK);
    assert_int_equal(tl_gram_cagrad(s.G, 5, NULL, alpha), TL_OK);
    assert_int_equal(tl_gram_nash(s.G, 5, NULL, prev, alpha, NULL), TL_OK);
    assert_int_equal(tl_gram_imtl_g(s.G, 5, alpha), TL_OK);
    assert_int_equal(tl_gram_aligned(s.G, 5, alpha, NULL), TL_OK);
    assert_int_equal(tl_gram_upgrad(s.G, 5, NULL, alpha), TL_OK);
    assert_int_equal(tl_gram_gradvac(s.G, 5, NULL, ema, &r, alpha), TL_OK);
    assert_int_equal(tl_gram_pcgrad(s.G, 5, &r, alpha), TL_OK);
    assert_int_equal(tl_gram_cosines(s.G, 5, alpha, cs, &dn), TL_OK);
    assert_true(tl_alloc_count() == before);
    /* cosines against the vectors */
    double d[NMAX];
    direction(&s, alpha, d);
    assert_true(fabs(dn - sqrt(dot(d, d, s.n))) <= 1e-12 * dn);
    for (int k = 0; k < 5; k++)
        assert_true(fabs(cs[k] - cosine(d, s.g[k], s.n)) <= 1e-12);
    /* the Gram matrix of float gradients, in two blocks, matches double */
    float fg[5 * 64];
    double Gf[25] = {0};
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < 60; i++)
            fg[k * 64 + i] = (float)s.g[k][i];
    before = tl_alloc_count();
    assert_int_equal(tl_gram_accumulate(Gf, 5, fg, 25, 64), TL_OK);
    assert_int_equal(tl_gram_accumulate(Gf, 5, fg + 25, 35, 64), TL_OK);
    assert_true(tl_alloc_count() == before);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            double e = 0.0;
            for (int x = 0; x < 60; x++)
                e += (double)fg[i * 64 + x] * (double)fg[j * 64 + x];
            assert_true(fabs(Gf[i * 5 + j] - e) <= 1e-12 * s.gmax2);
            assert_true(Gf[i * 5 + j] == Gf[j * 5 + i]);
        }
    assert_int_equal(tl_gram_accumulate(Gf, 5, fg, 65, 64), TL_ERR_ARG);
    double G1[1] = {2.5};
    assert_int_equal(tl_gram_mgda(G1, 1, alpha), TL_OK);
    assert_true(alpha[0] == 1.0);
    assert_int_equal(tl_gram_imtl_g(G1, 1, alpha), TL_OK);
    assert_true(alpha[0] == 1.0);
    assert_int_equal(tl_gram_upgrad(G1, 1, NULL, alpha), TL_OK);
    assert_true(fabs(alpha[0] - 1.0) <= 1e-15);
    prev[0] = 1.0;
    assert_int_equal(tl_gram_nash(G1, 1, NULL, prev, alpha, NULL), TL_OK);
    assert_true(fabs(alpha[0] - 1.0 / sqrt(2.5)) <= 1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mgda_min_norm),
        cmocka_unit_test(test_mgda_degenerate),
        cmocka_unit_test(test_cagrad_dual_ball),
        cmocka_unit_test(test_nash_bargaining),
        cmocka_unit_test(test_nash_no_solution),
        cmocka_unit_test(test_imtl_g_equal_projections),
        cmocka_unit_test(test_aligned_condition_one),
        cmocka_unit_test(test_upgrad_no_conflict),
        cmocka_unit_test(test_pcgrad_two_tasks),
        cmocka_unit_test(test_pcgrad_gradvac_match_vectors),
        cmocka_unit_test(test_gradvac_reaches_target),
        cmocka_unit_test(test_many_tasks),
        cmocka_unit_test(test_scale_invariance),
        cmocka_unit_test(test_reference_fixture),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_no_alloc_single_task),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
