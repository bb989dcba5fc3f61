/* losses/gram.h — gradient-based loss weighting solved on the Gram matrix.
 *
 * Every solver reads the T x T Gram matrix G (row-major, double,
 * G[i*T + j] = <g_i, g_j>) of the per-task gradients g_1..g_T of the shared
 * parameters (or of the shared representation, for the "-UB" variants) and
 * writes weights alpha[T] such that the aggregated update direction is
 *
 *     d = sum_k alpha[k] * g_k        (a descent direction: params -= lr * d)
 *
 * The solvers never see the gradients themselves, so their cost is O(T^3)
 * whatever the parameter count. 1 <= T <= TL_GRAM_MAX_TASKS. They allocate
 * nothing (stack workspaces) and are deterministic (GradVac and PCGrad draw
 * their task orders from the caller's tl_rng).
 *
 * Input checks, common to all: G must be finite, symmetric up to rounding
 * (|G_ij - G_ji| <= 1e-6 * max_k G_kk; the symmetric part is used) and have a
 * non-negative diagonal; otherwise TL_ERR_NUMERIC / TL_ERR_ARG naming the
 * method and the entry. Degenerate G (zero gradients, rank deficiency, zero
 * in the convex hull) gets the fallback documented at each function; no
 * solver ever writes a NaN or Inf into alpha: on failure alpha holds the
 * uniform weights 1/T (Nash-MTL: the previous weights; alpha is untouched
 * only when T is out of range or a pointer is NULL).
 *
 * References (read, then reimplemented): LibMTL (median-research-group),
 * TorchJD (SimplexLab), AvivNavon/nash-mtl, Cranial-XIX/CAGrad.
 */
#ifndef TL_LOSSES_GRAM_H
#define TL_LOSSES_GRAM_H

#include "core.h"

#define TL_GRAM_MAX_TASKS 16

typedef struct {
    double cagrad_c;        /* CAGrad ball radius c (paper's reported runs: 0.4) */
    int cagrad_rescale;     /* 0: none, 1: d / (1 + c^2) (official), 2: d / (1 + c) */
    double nash_max_norm;   /* Nash-MTL clips |d| to this (1.0); <= 0: no clip */
    int nash_iters;         /* Nash-MTL: cap on Newton steps (100; the official code
                               caps its convex-concave steps at 20), see tl_gram_nash */
    double upgrad_norm_eps; /* UPGrad: trace(G) below this gives the mean (1e-4) */
    double upgrad_reg_eps;  /* UPGrad: ridge added to trace-normalised G (1e-4) */
    double gradvac_beta;    /* GradVac EMA rate of the cosine targets (LibMTL: 0.5) */
} tl_gram_params;

/* The authors' published defaults (see each field). */
tl_gram_params tl_gram_defaults(void);

/* MGDA (Sener & Koltun 2018): alpha on the simplex minimising |d|^2 =
 * alpha^T G alpha, i.e. d is the min-norm point of the convex hull of the
 * g_k. Exact (closed form for T = 2, active-set QP otherwise). No gradient
 * normalisation (LibMTL mgda_gn='none'); normalise G first for the others.
 * G = 0: uniform alpha (every alpha gives d = 0). */
tl_status tl_gram_mgda(const double *G, int T, double *alpha);

/* CAGrad (Liu et al. 2021): with g0 = mean_k g_k, d maximises min_k <g_k, d>
 * over the ball |d - g0| <= c |g0|. Solved through its dual
 * min_{w in simplex} <g_w, g0> + c|g0| |g_w|, d = g0 + (c|g0| / |g_w|) g_w,
 * then rescaled per p->cagrad_rescale; alpha_k = (1/T + lambda w_k) / rescale.
 * p = NULL: tl_gram_defaults(). g0 = 0: alpha = 1/T (d = 0). When the
 * optimum needs g_w -> 0 (0 on the boundary of the hull, the ball reaching
 * the orthogonal complement of the gradients spanning it) d = g0 is kept. */
tl_status tl_gram_cagrad(const double *G, int T, const tl_gram_params *p, double *alpha);

/* Nash-MTL (Navon et al. 2022): alpha > 0 with (G alpha)_k = 1 / alpha_k
 * (the Nash bargaining solution; then |d|^2 = T), found by damped Newton on
 * the convex potential 1/2 a^T G a - sum log a_k, whose stationary point it
 * is (the official code's convex-concave ECOS steps reach the same point;
 * tests/fixtures/gram checks that). `prev`
 * (T doubles, caller owned) is the warm start and receives the solution: fill
 * it with 0 (or 1.0) before the first call; any non-positive or non-finite
 * entry gives the cold start a_k ~ 1/|g_k|. Should the step cap be reached
 * the last iterate is returned (as the official code does after 20 steps).
 * *shared_scale (may be NULL) receives min(1, max_norm / (|d| + 1e-6)): the
 * official code clips only the shared parameters' gradient to max_norm, the
 * task-specific gradients keep the weights alpha unscaled. No solution exists
 * when 0 is in the convex hull of the g_k (or some g_k = 0): TL_ERR_NUMERIC,
 * prev unchanged and alpha = prev (the official code also keeps the previous
 * weights when its solver fails), so a caller may choose to continue. */
tl_status tl_gram_nash(const double *G, int T, const tl_gram_params *p, double *prev,
                       double *alpha, double *shared_scale);

/* IMTL-G (Liu et al. 2021): alpha with sum alpha = 1 such that d has equal
 * projections onto every unit task gradient u_k = g_k / |g_k| (LibMTL's
 * closed form). A zero g_k or a singular system (e.g. two parallel task
 * gradients): TL_ERR_NUMERIC with a message, alpha = 1/T. T = 1: alpha = 1.
 * T gradients spanning exactly T - 1 dimensions: d = 0 (the only direction
 * with equal projections). */
tl_status tl_gram_imtl_g(const double *G, int T, double *alpha);

/* Aligned-MTL (Senushkin et al. 2023): with G = V diag(l) V^T (rank r,
 * eigenvalues below max(l) * T * FLT_EPSILON dropped, as LibMTL), the
 * balancing matrix B = sqrt(l_min) V_r diag(1/sqrt(l)) V_r^T gives the
 * aligned gradients g'_i = sum_j B_ij g_j the Gram matrix l_min V_r V_r^T:
 * every non-zero singular value is sqrt(l_min), a condition number of 1
 * (orthogonal, equal norms when G has full rank); alpha = column sums of B
 * (d = sum_i g'_i). B (T*T, may be NULL) receives that matrix. G = 0: alpha = 1/T, B = I/T (d = 0). */
tl_status tl_gram_aligned(const double *G, int T, double *alpha, double *B);

/* UPGrad (TorchJD, Quinton & Rey 2024): each g_i / T projected onto the dual
 * cone of {g_j} (v_i = argmin v^T G' v s.t. v >= e_i / T, G' = G / trace(G)
 * + reg_eps I), alpha = sum_i v_i. Hence <d, g_j> >= 0 for all j (up to the
 * ridge: >= -reg_eps * alpha_j * trace G). trace(G) < norm_eps: alpha = 1/T,
 * as TorchJD. p = NULL: defaults. */
tl_status tl_gram_upgrad(const double *G, int T, const tl_gram_params *p, double *alpha);

/* GradVac (Wang et al. 2021, LibMTL's form): for each task i and the other
 * tasks j in random order, when cos(g'_i, g_j) < ema[i*T+j] the running g'_i
 * gets a multiple of g_j that lifts the cosine exactly to the target; then
 * ema[i*T+j] = (1 - beta) ema + beta * cos (cosine before the lift).
 * d = sum_i g'_i (so the weights are near 1, not 1/T, as LibMTL). ema (T*T,
 * caller owned) starts at zeros and carries the state between steps; rng
 * draws the orders. A zero g_j or g'_i is skipped (cosine taken as 0); a
 * target of 1 (an infinite lift) is skipped too. */
tl_status tl_gram_gradvac(const double *G, int T, const tl_gram_params *p, double *ema,
                          tl_rng *rng, double *alpha);

/* PCGrad (Yu et al. 2020, LibMTL's form) on the Gram matrix: for each task
 * i, g'_i = g_i, then for every task j (itself included) in random order,
 * when <g'_i, g_j> < 0 remove that component: g'_i -= <g'_i,g_j>/|g_j|^2 g_j.
 * d = sum_i g'_i (weights near 1). For T = 2, <d, g_k> >= 0; for T > 2 not
 * guaranteed. */
tl_status tl_gram_pcgrad(const double *G, int T, tl_rng *rng, double *alpha);

/* G[i*T + j] += <g_i, g_j> for the float gradient blocks g_i = grads + i *
 * stride (n floats each), accumulated in double (products exact, a fixed
 * summation order: the same bits every run). Zero G first; call once per
 * parameter block when the shared gradients are not contiguous. Non-finite
 * gradients give a non-finite G, which every solver refuses with a message. */
tl_status tl_gram_accumulate(double *G, int T, const float *grads, size_t n, size_t stride);

/* cos[k] = <d, g_k> / (|d| |g_k|) for d = sum alpha_j g_j, for logging
 * (0 where |d| or |g_k| is 0). Also returns |d| in *dnorm (may be NULL). */
tl_status tl_gram_cosines(const double *G, int T, const double *alpha, double *cos,
                          double *dnorm);

#endif
