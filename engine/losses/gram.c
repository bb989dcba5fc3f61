/* losses/gram.c — gradient-based loss weighting on the T x T Gram matrix.
 *
 * Small dense linear algebra for T <= 16 lives here (Cholesky, pivoted
 * elimination, cyclic Jacobi eigensolver, an active-set QP), all on stack
 * arrays: the solvers allocate nothing and run in microseconds.
 */
#include "gram.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define MAXT TL_GRAM_MAX_TASKS

tl_gram_params tl_gram_defaults(void)
{
    tl_gram_params p;
    p.cagrad_c = 0.4;       /* CAGrad's NYUv2/Cityscapes runs (run.sh); LibMTL uses 0.5 */
    p.cagrad_rescale = 1;   /* official utils.py and LibMTL */
    p.nash_max_norm = 1.0;  /* nash-mtl NashMTL(max_norm=1.0) */
    p.nash_iters = 100;     /* Newton steps (nash-mtl: optim_niter = 20 CCP steps) */
    p.upgrad_norm_eps = 1e-4; /* TorchJD QuadprogProjector */
    p.upgrad_reg_eps = 1e-4;
    p.gradvac_beta = 0.5;   /* LibMTL --GradVac_beta */
    return p;
}

static void fill_uniform(double *alpha, int T)
{
    for (int k = 0; k < T; k++)
        alpha[k] = 1.0 / T;
}

/* Validate G and copy its symmetric part into S. Returns the largest
 * diagonal entry in *dmax. out (the result array) must not be NULL; on
 * failure it is made uniform when `fill`. */
static tl_status check_gram(const char *who, const double *G, int T, double *S, double *dmax,
                            double *out, int fill)
{
    if (T < 1 || T > MAXT)
        return tl_fail(TL_ERR_ARG, "%s: %d tasks; the Gram solvers take 1..%d", who, T, MAXT);
    if (!G || !out)
        return tl_fail(TL_ERR_ARG, "%s: %s is NULL", who, G ? "the output array" : "G");
    double *alpha = fill ? out : NULL;
    double m = 0.0;
    for (int i = 0; i < T * T; i++) {
        if (!isfinite(G[i])) {
            if (alpha)
                fill_uniform(alpha, T);
            return tl_fail(TL_ERR_NUMERIC, "%s: Gram matrix entry (%d,%d) is %g (task gradients "
                           "not finite)", who, i / T, i % T, G[i]);
        }
    }
    for (int i = 0; i < T; i++) {
        if (G[i * T + i] < 0.0) {
            if (alpha)
                fill_uniform(alpha, T);
            return tl_fail(TL_ERR_ARG, "%s: Gram matrix diagonal (%d,%d) = %g is negative (a "
                           "squared norm)", who, i, i, G[i * T + i]);
        }
        if (G[i * T + i] > m)
            m = G[i * T + i];
    }
    for (int i = 0; i < T; i++) {
        for (int j = i; j < T; j++) {
            double a = G[i * T + j], b = G[j * T + i];
            if (fabs(a - b) > 1e-6 * m) {
                if (alpha)
                    fill_uniform(alpha, T);
                return tl_fail(TL_ERR_ARG, "%s: Gram matrix not symmetric: (%d,%d) = %g but "
                               "(%d,%d) = %g", who, i, j, a, j, i, b);
            }
            S[i * T + j] = S[j * T + i] = 0.5 * (a + b);
        }
    }
    *dmax = m;
    return TL_OK;
}

/* In-place Cholesky A = L L^T of the n x n matrix (leading dimension ld);
 * returns 0 when a pivot is not positive. */
static int cholesky(double *A, int n, int ld)
{
    for (int j = 0; j < n; j++) {
        double d = A[j * ld + j];
        for (int k = 0; k < j; k++)
            d -= A[j * ld + k] * A[j * ld + k];
        if (!(d > 0.0))
            return 0;
        d = sqrt(d);
        A[j * ld + j] = d;
        for (int i = j + 1; i < n; i++) {
            double s = A[i * ld + j];
            for (int k = 0; k < j; k++)
                s -= A[i * ld + k] * A[j * ld + k];
            A[i * ld + j] = s / d;
        }
    }
    return 1;
}

/* Solve L L^T x = b in place (b becomes x). */
static void chol_solve(const double *L, int n, int ld, double *b)
{
    for (int i = 0; i < n; i++) {
        double s = b[i];
        for (int k = 0; k < i; k++)
            s -= L[i * ld + k] * b[k];
        b[i] = s / L[i * ld + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        double s = b[i];
        for (int k = i + 1; k < n; k++)
            s -= L[k * ld + i] * b[k];
        b[i] = s / L[i * ld + i];
    }
}

/* Solve the general n x n system A x = b (A destroyed, b becomes x) by
 * Gaussian elimination with partial pivoting; returns 0 when a pivot is
 * below tol (singular to working precision). */
static int lu_solve(double *A, int n, double *b, double tol)
{
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(A[r * n + c]) > fabs(A[p * n + c]))
                p = r;
        if (!(fabs(A[p * n + c]) > tol))
            return 0;
        if (p != c) {
            for (int k = 0; k < n; k++) {
                double t = A[c * n + k];
                A[c * n + k] = A[p * n + k];
                A[p * n + k] = t;
            }
            double t = b[c];
            b[c] = b[p];
            b[p] = t;
        }
        for (int r = c + 1; r < n; r++) {
            double f = A[r * n + c] / A[c * n + c];
            for (int k = c; k < n; k++)
                A[r * n + k] -= f * A[c * n + k];
            b[r] -= f * b[c];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        double s = b[r];
        for (int k = r + 1; k < n; k++)
            s -= A[r * n + k] * b[k];
        b[r] = s / A[r * n + r];
    }
    return 1;
}

/* Symmetric eigendecomposition by cyclic Jacobi rotations: A (destroyed)
 * = V diag(w) V^T, eigenvectors in the columns of V. Accurate to working
 * precision for the small matrices here. */
static void jacobi_eigen(double *A, int n, double *w, double *V)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            V[i * n + j] = i == j ? 1.0 : 0.0;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, tot = 0.0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                tot += A[i * n + j] * A[i * n + j];
                if (i != j)
                    off += A[i * n + j] * A[i * n + j];
            }
        if (off <= 1e-30 * tot || off == 0.0)
            break;
        for (int p = 0; p < n - 1; p++) {
            for (int q = p + 1; q < n; q++) {
                double apq = A[p * n + q];
                if (apq == 0.0)
                    continue;
                double theta = (A[q * n + q] - A[p * n + p]) / (2.0 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < n; k++) {
                    double akp = A[k * n + p], akq = A[k * n + q];
                    A[k * n + p] = c * akp - s * akq;
                    A[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {
                    double apk = A[p * n + k], aqk = A[q * n + k];
                    A[p * n + k] = c * apk - s * aqk;
                    A[q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = V[k * n + p], vkq = V[k * n + q];
                    V[k * n + p] = c * vkp - s * vkq;
                    V[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    for (int i = 0; i < n; i++)
        w[i] = A[i * n + i];
}

/* Primal active-set method (Nocedal & Wright, Alg. 16.3) for
 *     min 1/2 x^T Q x + c^T x   s.t.  x >= lo  [and sum x = 1 when simplex]
 * with Q positive definite (callers add a ridge). x must hold a feasible
 * start; on return it is the exact minimiser. Returns 0 when the iteration
 * cap is hit (cycling; not seen in practice). */
static int qp_active_set(const double *Q, const double *c, const double *lo, int n, int simplex,
                         double *x)
{
    int active[MAXT];
    double qmax = 0.0, cmax = 0.0;
    for (int i = 0; i < n; i++) {
        active[i] = !simplex || x[i] <= lo[i];
        if (active[i])
            x[i] = lo[i];
        qmax = fmax(qmax, Q[i * n + i]);
        cmax = fmax(cmax, fabs(c[i]));
    }
    if (simplex) {
        int nf = 0;
        for (int i = 0; i < n; i++)
            nf += !active[i];
        if (nf == 0)
            return 0;
    }
    for (int it = 0; it < 50 * n + 50; it++) {
        int F[MAXT], nf = 0;
        double L[MAXT * MAXT], y0[MAXT], y1[MAXT], lam = 0.0;
        for (int i = 0; i < n; i++)
            if (!active[i])
                F[nf++] = i;
        for (int a = 0; a < nf; a++) {
            double r = -c[F[a]];
            for (int j = 0; j < n; j++)
                if (active[j])
                    r -= Q[F[a] * n + j] * lo[j];
            y0[a] = r;
            y1[a] = 1.0;
            for (int b = 0; b < nf; b++)
                L[a * MAXT + b] = Q[F[a] * n + F[b]];
        }
        if (nf > 0) {
            if (!cholesky(L, nf, MAXT))
                return 0;
            chol_solve(L, nf, MAXT, y0);
            if (simplex) {
                double fixed = 0.0, s0 = 0.0, s1 = 0.0;
                for (int j = 0; j < n; j++)
                    if (active[j])
                        fixed += lo[j];
                chol_solve(L, nf, MAXT, y1);
                for (int a = 0; a < nf; a++) {
                    s0 += y0[a];
                    s1 += y1[a];
                }
                lam = (1.0 - fixed - s0) / s1;
                for (int a = 0; a < nf; a++)
                    y0[a] += lam * y1[a];
            }
        }
        /* y0 is the equality-constrained minimiser on the free set; step to it
         * or to the first bound in the way. */
        double t = 1.0, xmax = 1.0;
        int block = -1;
        for (int a = 0; a < nf; a++) {
            double p = y0[a] - x[F[a]];
            if (fabs(x[F[a]]) > xmax)
                xmax = fabs(x[F[a]]);
            if (p < 0.0) {
                double ta = (lo[F[a]] - x[F[a]]) / p;
                if (ta < t) {
                    t = ta > 0.0 ? ta : 0.0;
                    block = F[a];
                }
            }
        }
        if (block >= 0) {
            for (int a = 0; a < nf; a++)
                x[F[a]] += t * (y0[a] - x[F[a]]);
            active[block] = 1;
            x[block] = lo[block];
            continue;
        }
        for (int a = 0; a < nf; a++)
            x[F[a]] = y0[a];
        /* Stationary on the working set: release the bound with the most
         * negative multiplier, or stop. */
        int worst = -1;
        double most = -1e-12 * (qmax * xmax + cmax);
        for (int i = 0; i < n; i++) {
            if (!active[i])
                continue;
            double g = c[i] - lam;
            for (int j = 0; j < n; j++)
                g += Q[i * n + j] * x[j];
            if (g < most) {
                most = g;
                worst = i;
            }
        }
        if (worst < 0)
            return 1;
        active[worst] = 0;
    }
    return 0;
}

/* alpha on the simplex minimising 1/2 alpha^T S alpha + q^T alpha (q may be
 * NULL), S PSD: a ridge of 1e-10 * ridge_scale keeps the QP strictly convex
 * when the gradients are rank-deficient. */
static int simplex_qp(const double *S, const double *q, int T, double ridge_scale, double *alpha)
{
    double Q[MAXT * MAXT], c[MAXT], lo[MAXT];
    for (int i = 0; i < T; i++) {
        for (int j = 0; j < T; j++)
            Q[i * T + j] = S[i * T + j] + (i == j ? 1e-10 * ridge_scale : 0.0);
        c[i] = q ? q[i] : 0.0;
        lo[i] = 0.0;
        alpha[i] = 1.0 / T;
    }
    return qp_active_set(Q, c, lo, T, 1, alpha);
}

static double trace_mean(const double *S, int T)
{
    double t = 0.0;
    for (int i = 0; i < T; i++)
        t += S[i * T + i];
    return t / T;
}

static double quad(const double *S, int T, const double *a, const double *b)
{
    double s = 0.0;
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++)
            s += a[i] * S[i * T + j] * b[j];
    return s;
}

tl_status tl_gram_mgda(const double *G, int T, double *alpha)
{
    double S[MAXT * MAXT], dmax;
    tl_status st = check_gram("mgda", G, T, S, &dmax, alpha, 1);
    if (st != TL_OK)
        return st;
    if (dmax == 0.0 || T == 1) {
        fill_uniform(alpha, T);
        return TL_OK;
    }
    if (T == 2) {
        /* min over gamma in [0,1] of |gamma g1 + (1-gamma) g2|^2 */
        double den = S[0] + S[3] - 2.0 * S[1];
        double gamma = den > 0.0 ? (S[3] - S[1]) / den : 0.5;
        gamma = gamma < 0.0 ? 0.0 : gamma > 1.0 ? 1.0 : gamma;
        alpha[0] = gamma;
        alpha[1] = 1.0 - gamma;
        return TL_OK;
    }
    if (!simplex_qp(S, NULL, T, trace_mean(S, T), alpha)) {
        fill_uniform(alpha, T);
        return tl_fail(TL_ERR_NUMERIC, "mgda: min-norm QP did not converge (%d tasks)", T);
    }
    return TL_OK;
}

/* CAGrad dual over w in the simplex: F(w) = <g_w, g0> + r |g_w|, r = c |g0|.
 * Since r |x| = min_{s>0} r |x|^2 / (2s) + r s / 2, min F = min_s Phi(s) with
 *     Phi(s) = min_w <g_w, g0> + r/(2s) |g_w|^2 + r s / 2,
 * a simplex QP for each trial s, and Phi is convex (the quadratic-over-linear
 * term is jointly convex in (g_w, s)). Its slope is (r/2)(1 - (|g_w(s)|/s)^2),
 * so h(s) = |g_w(s)| - s is positive below the optimal s* = |g_w*| and
 * negative above: s* is bracketed by stepping down from max_k |g_k| (where
 * h <= 0, as |g_w| <= max |g_k|) and found by regula falsi (Illinois). */
static int cagrad_w(const double *S, int T, const double *Sb, double r, double s, double scale,
                    double *w, double *h)
{
    double Q[MAXT * MAXT];
    for (int i = 0; i < T * T; i++)
        Q[i] = S[i] * (r / s);
    if (!simplex_qp(Q, Sb, T, scale * r / s, w))
        return 0;
    double n2 = quad(S, T, w, w);
    *h = sqrt(n2 > 0.0 ? n2 : 0.0) - s;
    return 1;
}

/* w* and lambda = r / |g_w*| (0 when no s > 1e-8 max |g_k| has h > 0: then
 * the optimum has g_w -> 0, which needs 0 on the boundary of the hull and a
 * ball reaching the plane it spans; d = g0 is kept there). */
static int cagrad_dual(const double *S, int T, const double *Sb, double r, double dmax,
                       double *w, double *lambda)
{
    double scale = trace_mean(S, T), hi = sqrt(dmax), hhi, lo, hlo;
    if (!cagrad_w(S, T, Sb, r, hi, scale, w, &hhi))
        return 0;
    *lambda = 0.0;
    if (hhi >= 0.0) {
        *lambda = r / (hi + hhi);
        return 1;
    }
    for (lo = hi / 4.0;; lo /= 4.0) {
        if (lo < 1e-8 * sqrt(dmax))
            return cagrad_w(S, T, Sb, r, hi, scale, w, &hhi); /* fallback, w unused */
        if (!cagrad_w(S, T, Sb, r, lo, scale, w, &hlo))
            return 0;
        if (hlo > 0.0)
            break;
        hi = lo;
        hhi = hlo;
    }
    double s = lo, h = hlo;
    int side = 0;
    for (int it = 0; it < 200; it++) {
        s = (lo * hhi - hi * hlo) / (hhi - hlo);
        if (!(s > lo && s < hi))
            s = 0.5 * (lo + hi);
        if (!cagrad_w(S, T, Sb, r, s, scale, w, &h))
            return 0;
        if (fabs(h) <= 1e-14 * s || hi - lo <= 1e-15 * hi)
            break;
        if (h > 0.0) {
            lo = s;
            hlo = h;
            if (side == 1)
                hhi *= 0.5;
            side = 1;
        } else {
            hi = s;
            hhi = h;
            if (side == -1)
                hlo *= 0.5;
            side = -1;
        }
    }
    *lambda = r / (s + h); /* s + h = |g_w| at the last trial */
    return 1;
}

tl_status tl_gram_cagrad(const double *G, int T, const tl_gram_params *p, double *alpha)
{
    double S[MAXT * MAXT], dmax;
    tl_status st = check_gram("cagrad", G, T, S, &dmax, alpha, 1);
    if (st != TL_OK)
        return st;
    tl_gram_params d = tl_gram_defaults();
    if (!p)
        p = &d;
    if (!(p->cagrad_c >= 0.0) || p->cagrad_rescale < 0 || p->cagrad_rescale > 2) {
        fill_uniform(alpha, T);
        return tl_fail(TL_ERR_ARG, "cagrad: c = %g must be >= 0 and rescale = %d one of 0, 1, 2",
                       p->cagrad_c, p->cagrad_rescale);
    }
    double b[MAXT], Sb[MAXT];
    fill_uniform(b, T);
    for (int i = 0; i < T; i++) {
        Sb[i] = 0.0;
        for (int j = 0; j < T; j++)
            Sb[i] += S[i * T + j] * b[j];
    }
    double g0sq = quad(S, T, b, b);
    double r = p->cagrad_c * sqrt(g0sq > 0.0 ? g0sq : 0.0);
    double lambda = 0.0, w[MAXT];
    fill_uniform(w, T);
    if (r > 1e-12 * sqrt(dmax) && !cagrad_dual(S, T, Sb, r, dmax, w, &lambda)) {
        fill_uniform(alpha, T);
        return tl_fail(TL_ERR_NUMERIC, "cagrad: dual QP did not converge (%d tasks)", T);
    }
    double resc = p->cagrad_rescale == 1   ? 1.0 + p->cagrad_c * p->cagrad_c
                  : p->cagrad_rescale == 2 ? 1.0 + p->cagrad_c
                                           : 1.0;
    for (int k = 0; k < T; k++)
        alpha[k] = (b[k] + lambda * w[k]) / resc;
    return TL_OK;
}

/* Nash-MTL. The bargaining solution solves G alpha = 1/alpha, alpha > 0: the
 * stationary point of the strictly convex potential
 *     P(a) = 1/2 a^T Gn a - sum_k log a_k
 * (on the Frobenius-normalised Gn = G / |G|_F, as the official code, then
 * alpha = a / sqrt(|G|_F)). The official code approaches it by up to 20
 * convex-concave steps solved by ECOS; damped Newton on P reaches the same
 * point to rounding in a few steps from the warm start. P is bounded below
 * iff 0 is not in the convex hull of the g_k, which is checked first through
 * MGDA's min-norm point. */
static void nash_newton(const double *Gn, int T, int iters, double *a)
{
    for (int it = 0; it < iters; it++) {
        double g[MAXT], H[MAXT * MAXT], step[MAXT];
        int done = 1;
        for (int i = 0; i < T; i++) {
            double ga = 0.0, mag = 0.0;
            for (int j = 0; j < T; j++) {
                ga += Gn[i * T + j] * a[j];
                mag += fabs(Gn[i * T + j] * a[j]);
                H[i * T + j] = Gn[i * T + j];
            }
            g[i] = ga - 1.0 / a[i];
            H[i * T + i] += 1.0 / (a[i] * a[i]);
            /* converged when a_i (Gn a)_i = 1 up to the rounding of its sum */
            if (fabs(a[i] * ga - 1.0) > 1e-13 + 8.0 * T * DBL_EPSILON * a[i] * mag)
                done = 0;
            step[i] = -g[i];
        }
        if (done || !cholesky(H, T, T))
            return;
        chol_solve(H, T, T, step);
        /* stay inside a > 0, then backtrack on P (Armijo) */
        double t = 1.0, slope = 0.0, res = 0.0;
        for (int i = 0; i < T; i++) {
            if (step[i] < 0.0 && -0.99 * a[i] / step[i] < t)
                t = -0.99 * a[i] / step[i];
            slope += g[i] * step[i];
            res = fmax(res, fabs(a[i] * (g[i] + 1.0 / a[i]) - 1.0));
        }
        double p0 = 0.5 * quad(Gn, T, a, a), an[MAXT];
        for (int i = 0; i < T; i++)
            p0 -= log(a[i]);
        for (int ls = 0; ls < 60; ls++) {
            double p1;
            for (int i = 0; i < T; i++)
                an[i] = a[i] + t * step[i];
            p1 = 0.5 * quad(Gn, T, an, an);
            for (int i = 0; i < T; i++)
                p1 -= log(an[i]);
            /* near the solution P's decrease is below its rounding: full steps */
            if (res < 1e-3 || p1 <= p0 + 1e-4 * t * slope)
                break;
            t *= 0.5;
        }
        memcpy(a, an, sizeof(double) * (size_t)T);
    }
}

tl_status tl_gram_nash(const double *G, int T, const tl_gram_params *p, double *prev,
                       double *alpha, double *shared_scale)
{
    double S[MAXT * MAXT], dmax;
    tl_gram_params dp = tl_gram_defaults();
    if (!p)
        p = &dp;
    if (shared_scale)
        *shared_scale = 1.0;
    if (!prev || !alpha)
        return tl_fail(TL_ERR_ARG, "nash: %s is NULL", prev ? "alpha" : "prev (the warm start)");
    tl_status st = check_gram("nash", G, T, S, &dmax, alpha, 0);
    int warm = 1;
    for (int k = 0; k < T && k < MAXT; k++) {
        alpha[k] = prev[k];
        if (!(prev[k] > 0.0) || !isfinite(prev[k]))
            warm = 0;
    }
    if (!warm)
        for (int k = 0; k < T && k < MAXT; k++)
            alpha[k] = 1.0;
    if (st != TL_OK)
        return st;
    double m[MAXT];
    if (dmax > 0.0 && tl_gram_mgda(S, T, m) != TL_OK)
        return tl_fail_context(TL_ERR_NUMERIC, "nash: ");
    double mn = dmax > 0.0 ? quad(S, T, m, m) : 0.0;
    if (!(mn > 1e-10 * dmax))
        return tl_fail(TL_ERR_NUMERIC, "nash: no bargaining solution: 0 is in the convex hull of "
                       "the %d task gradients (min-norm |d|^2 = %g, max |g_k|^2 = %g); weights "
                       "kept", T, mn, dmax);
    double fro = 0.0;
    for (int i = 0; i < T * T; i++)
        fro += S[i] * S[i];
    fro = sqrt(fro);
    double Gn[MAXT * MAXT], a[MAXT];
    for (int i = 0; i < T * T; i++)
        Gn[i] = S[i] / fro;
    /* cold start 1/|g_k| (exact for orthogonal gradients); either start is
     * rescaled so that a^T Gn a = T, which the solution satisfies */
    for (int k = 0; k < T; k++)
        a[k] = warm ? alpha[k] : 1.0 / sqrt(Gn[k * T + k]);
    double aga = quad(Gn, T, a, a);
    double sc = aga > 0.0 ? sqrt(T / aga) : 1.0;
    for (int k = 0; k < T; k++)
        a[k] *= sc;
    nash_newton(Gn, T, p->nash_iters > 0 ? p->nash_iters : 100, a);
    double s = 1.0 / sqrt(fro);
    for (int k = 0; k < T; k++) {
        if (!(a[k] > 0.0) || !isfinite(a[k] * s))
            return tl_fail(TL_ERR_NUMERIC, "nash: solver left the positive orthant (task %d: "
                           "%g); weights kept", k, a[k] * s);
    }
    for (int k = 0; k < T; k++)
        alpha[k] = prev[k] = a[k] * s;
    if (shared_scale && p->nash_max_norm > 0.0) {
        double dn = quad(S, T, alpha, alpha);
        dn = sqrt(dn > 0.0 ? dn : 0.0);
        double cl = p->nash_max_norm / (dn + 1e-6); /* torch clip_grad_norm_ */
        *shared_scale = cl < 1.0 ? cl : 1.0;
    }
    return TL_OK;
}

tl_status tl_gram_imtl_g(const double *G, int T, double *alpha)
{
    double S[MAXT * MAXT], dmax;
    tl_status st = check_gram("imtl_g", G, T, S, &dmax, alpha, 1);
    if (st != TL_OK)
        return st;
    if (T == 1) {
        alpha[0] = 1.0;
        return TL_OK;
    }
    double nrm[MAXT];
    for (int k = 0; k < T; k++) {
        if (!(S[k * T + k] > 0.0)) {
            fill_uniform(alpha, T);
            return tl_fail(TL_ERR_NUMERIC, "imtl_g: task %d's gradient is zero (no unit "
                           "direction to equalise)", k);
        }
        nrm[k] = sqrt(S[k * T + k]);
    }
    /* <u_a, g_b> = S_ab / |g_a|. With D rows g_0 - g_j and U rows u_0 - u_j
     * (j = 1..T-1), LibMTL's alpha_{1..} = (g_0 U^T)(D U^T)^-1, i.e. the
     * solution x of (U D^T) x = U g_0. */
    int n = T - 1;
    double A[(MAXT - 1) * (MAXT - 1)], r[MAXT - 1], amax = 0.0;
#define UG(a, b) (S[(a) * T + (b)] / nrm[a])
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            A[i * n + j] = UG(0, 0) - UG(0, j + 1) - UG(i + 1, 0) + UG(i + 1, j + 1);
            if (fabs(A[i * n + j]) > amax)
                amax = fabs(A[i * n + j]);
        }
        r[i] = UG(0, 0) - UG(i + 1, 0);
    }
#undef UG
    if (!lu_solve(A, n, r, 1e-12 * amax)) {
        fill_uniform(alpha, T);
        return tl_fail(TL_ERR_NUMERIC, "imtl_g: singular system (two task gradients parallel or "
                       "linearly dependent; %d tasks)", T);
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        alpha[i + 1] = r[i];
        sum += r[i];
    }
    alpha[0] = 1.0 - sum;
    for (int k = 0; k < T; k++) {
        if (!isfinite(alpha[k])) {
            fill_uniform(alpha, T);
            return tl_fail(TL_ERR_NUMERIC, "imtl_g: weight of task %d not finite", k);
        }
    }
    return TL_OK;
}

tl_status tl_gram_aligned(const double *G, int T, double *alpha, double *B)
{
    double S[MAXT * MAXT], dmax;
    tl_status st = check_gram("aligned", G, T, S, &dmax, alpha, 1);
    if (st != TL_OK)
        return st;
    double Bm[MAXT * MAXT];
    if (dmax == 0.0) {
        fill_uniform(alpha, T);
        for (int i = 0; i < T * T; i++)
            Bm[i] = (i / T == i % T) ? 1.0 / T : 0.0;
    } else {
        double A[MAXT * MAXT], l[MAXT], V[MAXT * MAXT], lmax = 0.0;
        memcpy(A, S, sizeof(double) * (size_t)(T * T));
        jacobi_eigen(A, T, l, V);
        for (int k = 0; k < T; k++)
            if (l[k] > lmax)
                lmax = l[k];
        /* LibMTL's rank tolerance, in torch's default (float32) epsilon */
        double tol = lmax * T * (double)FLT_EPSILON, lmin = lmax;
        for (int k = 0; k < T; k++)
            if (l[k] > tol && l[k] < lmin)
                lmin = l[k];
        for (int i = 0; i < T; i++) {
            for (int j = 0; j < T; j++) {
                double s = 0.0;
                for (int k = 0; k < T; k++)
                    if (l[k] > tol)
                        s += V[i * T + k] * V[j * T + k] / sqrt(l[k]);
                Bm[i * T + j] = sqrt(lmin) * s;
            }
        }
        for (int j = 0; j < T; j++) {
            alpha[j] = 0.0;
            for (int i = 0; i < T; i++)
                alpha[j] += Bm[i * T + j];
        }
    }
    if (B)
        memcpy(B, Bm, sizeof(double) * (size_t)(T * T));
    return TL_OK;
}

tl_status tl_gram_upgrad(const double *G, int T, const tl_gram_params *p, double *alpha)
{
    double S[MAXT * MAXT], dmax;
    tl_status st = check_gram("upgrad", G, T, S, &dmax, alpha, 1);
    if (st != TL_OK)
        return st;
    tl_gram_params dp = tl_gram_defaults();
    if (!p)
        p = &dp;
    if (!(p->upgrad_norm_eps >= 0.0) || !(p->upgrad_reg_eps >= 0.0)) {
        fill_uniform(alpha, T);
        return tl_fail(TL_ERR_ARG, "upgrad: norm_eps = %g and reg_eps = %g must be >= 0",
                       p->upgrad_norm_eps, p->upgrad_reg_eps);
    }
    /* TorchJD: G / trace(G), or 0 when the trace is below norm_eps, plus
     * reg_eps I. With reg_eps = 0 the QP still needs a positive definite
     * matrix: a ridge of 1e-12 (of I when G was zeroed: v = u either way). */
    double tr = trace_mean(S, T) * T, Q[MAXT * MAXT], zero[MAXT];
    int zeroed = tr < p->upgrad_norm_eps || tr == 0.0;
    double ridge = p->upgrad_reg_eps > 0.0 ? p->upgrad_reg_eps : zeroed ? 1.0 : 1e-12;
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++)
            Q[i * T + j] = (zeroed ? 0.0 : S[i * T + j] / tr) + (i == j ? ridge : 0.0);
    for (int k = 0; k < T; k++) {
        alpha[k] = 0.0;
        zero[k] = 0.0;
    }
    for (int i = 0; i < T; i++) {
        double u[MAXT], v[MAXT];
        for (int k = 0; k < T; k++)
            u[k] = v[k] = (k == i) ? 1.0 / T : 0.0;
        if (!qp_active_set(Q, zero, u, T, 0, v)) {
            fill_uniform(alpha, T);
            return tl_fail(TL_ERR_NUMERIC, "upgrad: projection QP of task %d did not converge", i);
        }
        for (int k = 0; k < T; k++)
            alpha[k] += v[k];
    }
    return TL_OK;
}

/* The other tasks (or all, with self) in an order drawn from rng. */
static void task_order(tl_rng *rng, int T, int skip, uint32_t *idx, int *n)
{
    *n = 0;
    for (int j = 0; j < T; j++)
        if (j != skip)
            idx[(*n)++] = (uint32_t)j;
    tl_rng_shuffle_u32(rng, idx, (size_t)*n);
}

/* <c, g_j> and |c|^2 for the running combination c (coefficients on g_k) */
static double coef_dot(const double *S, int T, const double *c, int j)
{
    double s = 0.0;
    for (int k = 0; k < T; k++)
        s += c[k] * S[k * T + j];
    return s;
}

tl_status tl_gram_gradvac(const double *G, int T, const tl_gram_params *p, double *ema,
                          tl_rng *rng, double *alpha)
{
    double S[MAXT * MAXT], dmax;
    tl_status st = check_gram("gradvac", G, T, S, &dmax, alpha, 1);
    if (st != TL_OK)
        return st;
    tl_gram_params dp = tl_gram_defaults();
    if (!p)
        p = &dp;
    if (!ema || !rng) {
        fill_uniform(alpha, T);
        return tl_fail(TL_ERR_ARG, "gradvac: %s is NULL", ema ? "rng" : "ema (T*T state)");
    }
    double beta = p->gradvac_beta;
    if (!(beta >= 0.0 && beta <= 1.0)) {
        fill_uniform(alpha, T);
        return tl_fail(TL_ERR_ARG, "gradvac: beta = %g must be in [0, 1]", beta);
    }
    for (int i = 0; i < T * T; i++) {
        if (!(ema[i] >= -1.0 && ema[i] <= 1.0)) {
            fill_uniform(alpha, T);
            return tl_fail(TL_ERR_ARG, "gradvac: ema state (%d,%d) = %g is not a cosine "
                           "(zero the state before the first step)", i / T, i % T, ema[i]);
        }
    }
    for (int k = 0; k < T; k++)
        alpha[k] = 0.0;
    for (int i = 0; i < T; i++) {
        double c[MAXT];
        uint32_t idx[MAXT];
        int n;
        for (int k = 0; k < T; k++)
            c[k] = k == i ? 1.0 : 0.0;
        task_order(rng, T, i, idx, &n);
        for (int a = 0; a < n; a++) {
            int j = (int)idx[a];
            double cn2 = quad(S, T, c, c), gj = sqrt(S[j * T + j]);
            double cn = sqrt(cn2 > 0.0 ? cn2 : 0.0);
            double rho = 0.0;
            if (cn > 0.0 && gj > 0.0) {
                rho = coef_dot(S, T, c, j) / (cn * gj);
                rho = rho > 1.0 ? 1.0 : rho < -1.0 ? -1.0 : rho;
            }
            double phi = ema[i * T + j];
            double sphi = sqrt(1.0 - phi * phi);
            /* a target of 1 would need an infinite lift: skipped */
            if (rho < phi && cn > 0.0 && gj > 0.0 && sphi > 1e-12) {
                double w = cn * (phi * sqrt(1.0 - rho * rho) - rho * sphi) / (gj * sphi);
                c[j] += w;
            }
            ema[i * T + j] = (1.0 - beta) * phi + beta * rho;
        }
        for (int k = 0; k < T; k++)
            alpha[k] += c[k];
    }
    return TL_OK;
}

tl_status tl_gram_pcgrad(const double *G, int T, tl_rng *rng, double *alpha)
{
    double S[MAXT * MAXT], dmax;
    tl_status st = check_gram("pcgrad", G, T, S, &dmax, alpha, 1);
    if (st != TL_OK)
        return st;
    if (!rng) {
        fill_uniform(alpha, T);
        return tl_fail(TL_ERR_ARG, "pcgrad: rng is NULL");
    }
    for (int k = 0; k < T; k++)
        alpha[k] = 0.0;
    for (int i = 0; i < T; i++) {
        double c[MAXT];
        uint32_t idx[MAXT];
        int n;
        for (int k = 0; k < T; k++)
            c[k] = k == i ? 1.0 : 0.0;
        task_order(rng, T, -1, idx, &n);
        for (int a = 0; a < n; a++) {
            int j = (int)idx[a];
            double gij = coef_dot(S, T, c, j);
            if (gij < 0.0 && S[j * T + j] > 0.0)
                c[j] -= gij / S[j * T + j];
        }
        for (int k = 0; k < T; k++)
            alpha[k] += c[k];
    }
    return TL_OK;
}

/* <a, b> of float vectors in double, eight lanes in a fixed order (the
 * compiler vectorises it; the same bits every run). cblas_dsdot is not used:
 * OpenBLAS's kernel rounds the products to float (5e-8 relative error). */
static double fdot(const float *a, const float *b, size_t n)
{
    double acc[8] = {0};
    size_t x = 0;
    for (; x + 8 <= n; x += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)a[x + k] * (double)b[x + k];
    double s = 0.0;
    for (; x < n; x++)
        s += (double)a[x] * (double)b[x];
    for (int k = 0; k < 8; k++)
        s += acc[k];
    return s;
}

tl_status tl_gram_accumulate(double *G, int T, const float *grads, size_t n, size_t stride)
{
    if (T < 1 || T > MAXT)
        return tl_fail(TL_ERR_ARG, "gram: %d tasks; the Gram solvers take 1..%d", T, MAXT);
    if (!G || (!grads && n > 0))
        return tl_fail(TL_ERR_ARG, "gram: %s is NULL", G ? "grads" : "G");
    if (T > 1 && stride < n)
        return tl_fail(TL_ERR_ARG, "gram: stride %zu is shorter than the block (%zu floats)",
                       stride, n);
    for (int i = 0; i < T; i++) {
        for (int j = i; j < T; j++) {
            double s = fdot(grads + (size_t)i * stride, grads + (size_t)j * stride, n);
            G[i * T + j] += s;
            if (j != i)
                G[j * T + i] += s;
        }
    }
    return TL_OK;
}

tl_status tl_gram_cosines(const double *G, int T, const double *alpha, double *cos,
                          double *dnorm)
{
    double S[MAXT * MAXT], dmax;
    tl_status st = check_gram("cosines", G, T, S, &dmax, cos, 0);
    if (st != TL_OK)
        return st;
    if (!alpha)
        return tl_fail(TL_ERR_ARG, "cosines: alpha is NULL");
    for (int k = 0; k < T; k++)
        if (!isfinite(alpha[k]))
            return tl_fail(TL_ERR_NUMERIC, "cosines: weight of task %d is %g", k, alpha[k]);
    double d2 = quad(S, T, alpha, alpha);
    double dn = sqrt(d2 > 0.0 ? d2 : 0.0);
    for (int k = 0; k < T; k++) {
        double gk = sqrt(S[k * T + k]);
        cos[k] = (dn > 0.0 && gk > 0.0) ? coef_dot(S, T, alpha, k) / (dn * gk) : 0.0;
    }
    if (dnorm)
        *dnorm = dn;
    return TL_OK;
}
