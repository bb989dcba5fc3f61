/* synthetic.c — MMoE-paper synthetic data; see synthetic.h. */
#include "synthetic.h"

#include <math.h>

void tl_synthetic_defaults(tl_synthetic_params *p)
{
    p->n = 10000;
    p->dim = 100;
    p->corr = 0.5;
    p->m = 10;
    p->scale = 1.0;
    p->noise_std = 0.1;
    p->seed = 1;
}

tl_status tl_synthetic_check(const tl_synthetic_params *p)
{
    if (!p) return tl_fail(TL_ERR_ARG, "synthetic: NULL parameters");
    if (p->n < 1 || p->n > ((size_t)1 << 32) - 1)
        return tl_fail(TL_ERR_ARG, "synthetic: n must be in 1 .. 2^32-1, got %zu", p->n);
    if (p->dim < 2 || p->dim > 100000)
        return tl_fail(TL_ERR_ARG, "synthetic: dim must be in 2 .. 100000, got %d", p->dim);
    if (!(p->corr >= -1.0 && p->corr <= 1.0))
        return tl_fail(TL_ERR_ARG, "synthetic: corr must be in [-1, 1], got %g", p->corr);
    if (p->m < 0 || p->m > 1000)
        return tl_fail(TL_ERR_ARG, "synthetic: m must be in 0 .. 1000, got %d", p->m);
    if (!(p->scale >= 0 && isfinite(p->scale)))
        return tl_fail(TL_ERR_ARG, "synthetic: scale must be finite and >= 0, got %g", p->scale);
    if (!(p->noise_std >= 0 && isfinite(p->noise_std)))
        return tl_fail(TL_ERR_ARG, "synthetic: noise_std must be finite and >= 0, got %g", p->noise_std);
    return TL_OK;
}

/* Unit vector orthogonal to `u1` (if given) by Gram-Schmidt on a Gaussian draw;
 * a draw parallel to u1 is astronomically unlikely but retried anyway. */
static void random_unit(tl_rng *r, double *v, const double *u1, int d)
{
    for (;;) {
        for (int i = 0; i < d; i++) v[i] = (double)tl_rng_normal(r);
        if (u1) {
            double dot = 0;
            for (int i = 0; i < d; i++) dot += v[i] * u1[i];
            for (int i = 0; i < d; i++) v[i] -= dot * u1[i];
        }
        double nn = 0;
        for (int i = 0; i < d; i++) nn += v[i] * v[i];
        if (nn > 1e-12) {
            double inv = 1.0 / sqrt(nn);
            for (int i = 0; i < d; i++) v[i] *= inv;
            return;
        }
    }
}

tl_status tl_synthetic_generate(const tl_synthetic_params *p, float *x, float *y)
{
    tl_status st = tl_synthetic_check(p);
    if (st) return st;
    if (!x || !y) return tl_fail(TL_ERR_ARG, "synthetic: NULL output buffer");
    int d = p->dim, m = p->m;
    double *w = tl_malloc(sizeof(double) * (size_t)(4 * d + 2 * m + 2), "synthetic weights");
    if (!w) return TL_ERR_NOMEM;
    double *u1 = w, *u2 = w + d, *w1 = w + 2 * d, *w2 = w + 3 * d;
    double *alpha = w + 4 * d, *beta = alpha + m;
    tl_rng r;
    tl_rng_seed(&r, p->seed);
    random_unit(&r, u1, NULL, d);
    random_unit(&r, u2, u1, d);
    double c = p->scale, q = sqrt(1.0 - p->corr * p->corr);
    for (int i = 0; i < d; i++) {
        w1[i] = c * u1[i];
        w2[i] = c * (p->corr * u1[i] + q * u2[i]);
    }
    for (int i = 0; i < m; i++) alpha[i] = (double)tl_rng_normal(&r);
    for (int i = 0; i < m; i++) beta[i] = (double)tl_rng_normal(&r);
    for (size_t row = 0; row < p->n; row++) {
        float *xr = x + row * (size_t)d;
        double a1 = 0, a2 = 0;
        for (int i = 0; i < d; i++) {
            xr[i] = tl_rng_normal(&r);
            a1 += w1[i] * (double)xr[i];
            a2 += w2[i] * (double)xr[i];
        }
        double y1 = a1, y2 = a2;
        for (int i = 0; i < m; i++) {
            y1 += sin(alpha[i] * a1 + beta[i]);
            y2 += sin(alpha[i] * a2 + beta[i]);
        }
        y1 += p->noise_std * (double)tl_rng_normal(&r);
        y2 += p->noise_std * (double)tl_rng_normal(&r);
        y[2 * row] = (float)y1;
        y[2 * row + 1] = (float)y2;
    }
    tl_free(w);
    return TL_OK;
}
