/* synthetic.h — the synthetic two-task regression data of the MMoE paper
 * (Ma et al., KDD 2018, §4.2), whose task correlation is set by the cosine
 * between the two tasks' weight vectors:
 *   u1, u2 orthogonal unit vectors in R^d;  w1 = c u1,
 *   w2 = c (p u1 + sqrt(1 - p^2) u2);  x ~ N(0, I_d);
 *   y_k = w_k.x + sum_{i=1..m} sin(alpha_i w_k.x + beta_i) + eps_k,
 *   eps_k ~ N(0, noise_std^2).
 * alpha_i, beta_i ~ N(0, 1) are drawn once from the seed, as are u1 and u2.
 */
#ifndef TL_SYNTHETIC_H
#define TL_SYNTHETIC_H

#include "core.h"

typedef struct {
    size_t n;          /* rows (default 10000) */
    int dim;           /* input dimension d (default 100) */
    double corr;       /* p = cos(w1, w2), in [-1, 1] (default 0.5) */
    int m;             /* number of sinusoid terms (default 10) */
    double scale;      /* c (default 1) */
    double noise_std;  /* default 0.1 (variance 0.01 as in the paper) */
    uint64_t seed;     /* default 1 */
} tl_synthetic_params;

void tl_synthetic_defaults(tl_synthetic_params *p);

/* Check p: n >= 1, 2 <= dim <= 100000, |corr| <= 1, 0 <= m <= 1000,
 * scale and noise_std finite and >= 0. TL_ERR_ARG names the bad field. */
tl_status tl_synthetic_check(const tl_synthetic_params *p);

/* Fill x (n x dim, row-major) and y (n x 2, row-major) — caller-owned
 * buffers — with the generator's data. Same params, same bits. */
tl_status tl_synthetic_generate(const tl_synthetic_params *p, float *x, float *y);

#endif
