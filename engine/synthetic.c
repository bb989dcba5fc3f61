/* synthetic.c — MMoE-paper synthetic data; see synthetic.h. */
#include "synthetic.h"

#include <math.h>
#include <string.h>

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

/* ---- the user/item task pair (see synthetic.h for the generative model) --- */

enum { PAIR_SEGMENTS = 8, PAIR_CATEGORIES = 20, PAIR_CONTEXTS = 4 };

void tl_synth_pair_defaults(tl_synth_pair_params *p)
{
    p->rows = 200000;
    p->users = 2000;
    p->items = 500;
    p->factors = 4;
    p->rho = 0.6;
    p->nested = 0;
    p->rate_a = 0.3;
    p->rate_b = 0.3;
    p->scale = 2.0;
    p->seed = 1;
}

tl_status tl_synth_pair_check(const tl_synth_pair_params *p)
{
    if (!p) return tl_fail(TL_ERR_ARG, "synthetic_pair: NULL parameters");
    if (p->rows < 1 || p->rows > ((size_t)1 << 32) - 1)
        return tl_fail(TL_ERR_ARG, "synthetic_pair: rows must be in 1 .. 2^32-1, got %zu", p->rows);
    if (p->users < 1 || p->users > 10000000)
        return tl_fail(TL_ERR_ARG, "synthetic_pair: users must be in 1 .. 10^7, got %d", p->users);
    if (p->items < 1 || p->items > 10000000)
        return tl_fail(TL_ERR_ARG, "synthetic_pair: items must be in 1 .. 10^7, got %d", p->items);
    if (p->factors < 1 || p->factors > 256)
        return tl_fail(TL_ERR_ARG, "synthetic_pair: factors must be in 1 .. 256, got %d", p->factors);
    if (!(p->rho >= -1.0 && p->rho <= 1.0))
        return tl_fail(TL_ERR_ARG, "synthetic_pair: rho must be in [-1, 1], got %g", p->rho);
    if (!(p->rate_a > 0 && p->rate_a < 1))
        return tl_fail(TL_ERR_ARG, "synthetic_pair: rate_a must be in (0, 1), got %g", p->rate_a);
    if (!(p->rate_b > 0 && p->rate_b < 1))
        return tl_fail(TL_ERR_ARG, "synthetic_pair: rate_b must be in (0, 1), got %g", p->rate_b);
    if (!(p->scale >= 0 && p->scale <= 100))
        return tl_fail(TL_ERR_ARG, "synthetic_pair: scale must be in [0, 100], got %g", p->scale);
    return TL_OK;
}

/* Cumulative Zipf-ish weights (r+1)^-s over ranks, assigned to ids by a
 * random permutation: cum[id] is the running sum in id order. */
static void zipf_table(tl_rng *r, int n, double s, double *cum, uint32_t *perm)
{
    for (int i = 0; i < n; i++) perm[i] = (uint32_t)i;
    tl_rng_shuffle_u32(r, perm, (size_t)n);
    for (int i = 0; i < n; i++) cum[perm[i]] = pow((double)i + 1.0, -s); /* id perm[i] has rank i */
    for (int i = 1; i < n; i++) cum[i] += cum[i - 1];
}

static int32_t zipf_draw(tl_rng *r, const double *cum, int n)
{
    double u = tl_rng_uniform_double(r) * cum[n - 1];
    int lo = 0, hi = n - 1; /* first id with cum > u */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (cum[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return (int32_t)lo;
}

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* beta with mean over the selected rows of sigmoid(beta + scale z) = rate. */
static double solve_bias(const double *z, const float *sel, size_t n, double scale, double rate)
{
    double lo = -60, hi = 60;
    for (int it = 0; it < 60; it++) {
        double mid = 0.5 * (lo + hi), sum = 0;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (sel && sel[i] != 1.0f) continue;
            sum += sigmoid_d(mid + scale * z[i]);
            k++;
        }
        if (k == 0) return 0;
        if (sum / (double)k < rate) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* Standardise x[0..n) over the rows (a constant column becomes 0). */
static void standardise(double *x, size_t n)
{
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++) m += x[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    v /= (double)n;
    double inv = v > 1e-300 ? 1.0 / sqrt(v) : 0.0;
    for (size_t i = 0; i < n; i++) x[i] = (x[i] - m) * inv;
}

/* The per-entity blocks of n users (or items), 2 (K + 1) + 1 doubles each:
 * [activity (price), b_1, p_1[K], b_2, p_2[K]], and each one's group
 * (segment or category) out of n_groups. */
static void draw_blocks(tl_rng *r, int n, int n_groups, int K, double *blocks, int32_t *group)
{
    const size_t per = 2 * ((size_t)K + 1) + 1;
    for (int u = 0; u < n; u++) {
        double *b = blocks + per * (size_t)u;
        group[u] = (int32_t)tl_rng_below(r, (uint64_t)n_groups);
        b[0] = (double)tl_rng_normal(r);
        for (int k = 0; k < 2; k++) {
            double *t = b + 1 + (size_t)k * ((size_t)K + 1);
            t[0] = 0.5 * (double)tl_rng_normal(r);
            for (int j = 0; j < K; j++) t[1 + j] = (double)tl_rng_normal(r);
        }
    }
}

/* The two scores made e_1, e_2 orthonormal over the rows, then
 * z_a = e_1 (in s1) and z_b = rho e_1 + sqrt(1 - rho^2) e_2 (in s2). */
static void correlate(double *s1, double *s2, size_t n, double rho)
{
    standardise(s1, n);
    standardise(s2, n);
    double c = 0;
    for (size_t i = 0; i < n; i++) c += s1[i] * s2[i];
    c /= (double)n;
    for (size_t i = 0; i < n; i++) s2[i] -= c * s1[i];
    standardise(s2, n);
    const double q = sqrt(1.0 - rho * rho);
    for (size_t i = 0; i < n; i++) s2[i] = rho * s1[i] + q * s2[i];
}

tl_status tl_synth_pair_generate(const tl_synth_pair_params *p, const tl_synth_pair_out *o)
{
    tl_status st = tl_synth_pair_check(p);
    if (st) return st;
    if (!o) return tl_fail(TL_ERR_ARG, "synthetic_pair: NULL output");
    const size_t n = p->rows;
    const int U = p->users, I = p->items, K = p->factors;
    const size_t per_user = 2 * ((size_t)K + 1) + 1, per_item = 2 * ((size_t)K + 1) + 1;
    const size_t tab = 2 * ((size_t)PAIR_SEGMENTS * PAIR_CATEGORIES + PAIR_CONTEXTS + 3);
    double *ucum = tl_malloc(sizeof(double) * (size_t)U, "synthetic_pair tables");
    double *icum = tl_malloc(sizeof(double) * (size_t)I, "synthetic_pair tables");
    uint32_t *perm = tl_malloc(sizeof(uint32_t) * (size_t)(U > I ? U : I), "synthetic_pair tables");
    double *uf = tl_malloc(sizeof(double) * per_user * (size_t)U, "synthetic_pair user factors");
    double *itf = tl_malloc(sizeof(double) * per_item * (size_t)I, "synthetic_pair item factors");
    int32_t *useg = tl_malloc(sizeof(int32_t) * (size_t)U, "synthetic_pair tables");
    int32_t *icat = tl_malloc(sizeof(int32_t) * (size_t)I, "synthetic_pair tables");
    double *eff = tl_malloc(sizeof(double) * tab, "synthetic_pair tables");
    double *s1 = tl_malloc(sizeof(double) * n, "synthetic_pair scores");
    double *s2 = tl_malloc(sizeof(double) * n, "synthetic_pair scores");
    float *ya = tl_malloc(sizeof(float) * n, "synthetic_pair labels");
    if (!ucum || !icum || !perm || !uf || !itf || !useg || !icat || !eff || !s1 || !s2 || !ya) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    tl_rng r;
    tl_rng_seed(&r, p->seed);
    zipf_table(&r, U, 0.6, ucum, perm);
    zipf_table(&r, I, 0.9, icum, perm);
    draw_blocks(&r, U, PAIR_SEGMENTS, K, uf, useg);
    draw_blocks(&r, I, PAIR_CATEGORIES, K, itf, icat);
    /* per task: E[seg][cat], h[context], w, m, n */
    const size_t per_task = tab / 2;
    for (int k = 0; k < 2; k++) {
        double *e = eff + (size_t)k * per_task;
        for (size_t j = 0; j < (size_t)PAIR_SEGMENTS * PAIR_CATEGORIES; j++) e[j] = 0.5 * (double)tl_rng_normal(&r);
        for (int j = 0; j < PAIR_CONTEXTS; j++) e[PAIR_SEGMENTS * PAIR_CATEGORIES + j] = 0.3 * (double)tl_rng_normal(&r);
        for (int j = 0; j < 3; j++) e[PAIR_SEGMENTS * PAIR_CATEGORIES + PAIR_CONTEXTS + j] = 0.5 * (double)tl_rng_normal(&r);
    }
    const double inv_sqrt_k = 1.0 / sqrt((double)K);
    for (size_t row = 0; row < n; row++) {
        int32_t u = zipf_draw(&r, ucum, U), i = zipf_draw(&r, icum, I);
        int32_t ctx = (int32_t)tl_rng_below(&r, PAIR_CONTEXTS);
        float tv = tl_rng_normal(&r);
        const double *ub = uf + per_user * (size_t)u, *ib = itf + per_item * (size_t)i;
        for (int k = 0; k < 2; k++) {
            const double *pu = ub + 1 + (size_t)k * ((size_t)K + 1), *qi = ib + 1 + (size_t)k * ((size_t)K + 1);
            const double *e = eff + (size_t)k * per_task;
            double dot = 0;
            for (int j = 0; j < K; j++) dot += pu[1 + j] * qi[1 + j];
            const double *w = e + PAIR_SEGMENTS * PAIR_CATEGORIES + PAIR_CONTEXTS;
            double sc = dot * inv_sqrt_k + pu[0] + qi[0] + e[useg[u] * PAIR_CATEGORIES + icat[i]] +
                        e[PAIR_SEGMENTS * PAIR_CATEGORIES + ctx] + w[0] * ub[0] + w[1] * ib[0] + w[2] * (double)tv;
            (k ? s2 : s1)[row] = sc;
        }
        if (o->user) o->user[row] = u;
        if (o->item) o->item[row] = i;
        if (o->segment) o->segment[row] = useg[u];
        if (o->category) o->category[row] = icat[i];
        if (o->context) o->context[row] = ctx;
        if (o->activity) o->activity[row] = (float)ub[0];
        if (o->price) o->price[row] = (float)ib[0];
        if (o->t) o->t[row] = tv;
    }
    correlate(s1, s2, n, p->rho);
    if (o->za)
        for (size_t i = 0; i < n; i++) o->za[i] = (float)s1[i];
    if (o->zb)
        for (size_t i = 0; i < n; i++) o->zb[i] = (float)s2[i];
    /* labels from their own stream, so the features do not depend on them */
    tl_rng lr;
    tl_rng_seed(&lr, p->seed ^ 0x6c6162656c73ULL);
    const double beta_a = solve_bias(s1, NULL, n, p->scale, p->rate_a);
    for (size_t i = 0; i < n; i++) ya[i] = tl_rng_uniform_double(&lr) < sigmoid_d(beta_a + p->scale * s1[i]) ? 1.0f : 0.0f;
    const double beta_b = solve_bias(s2, p->nested ? ya : NULL, n, p->scale, p->rate_b);
    for (size_t i = 0; i < n; i++) {
        float yb = tl_rng_uniform_double(&lr) < sigmoid_d(beta_b + p->scale * s2[i]) ? 1.0f : 0.0f;
        if (p->nested) yb *= ya[i];
        if (o->yb) o->yb[i] = yb;
    }
    if (o->ya) memcpy(o->ya, ya, sizeof(float) * n);
done:
    tl_free(ucum);
    tl_free(icum);
    tl_free(perm);
    tl_free(uf);
    tl_free(itf);
    tl_free(useg);
    tl_free(icat);
    tl_free(eff);
    tl_free(s1);
    tl_free(s2);
    tl_free(ya);
    return st;
}

/* ---- a stream at Ali-CCP's shape ----------------------------------------------- */

#define ZIPF_CELLS 2048

/* name, ids at id_scale 1, max length, weight of its effect in the logits */
static const struct {
    const char *name;
    double vocab;
    int large, max_len;
    double w;
} ccp_spec[TL_SYNTH_CCP_CAT + TL_SYNTH_CCP_BAGS] = {
    {"101", 400000, 1, 1, 0.45}, {"121", 98, 0, 1, 0.15},     {"122", 14, 0, 1, 0.1},
    {"124", 3, 0, 1, 0.05},      {"125", 8, 0, 1, 0.05},      {"126", 4, 0, 1, 0.05},
    {"127", 4, 0, 1, 0.05},      {"128", 3, 0, 1, 0.05},      {"129", 5, 0, 1, 0.05},
    {"205", 500000, 1, 1, 0.45}, {"206", 8000, 0, 1, 0.3},    {"207", 200000, 1, 1, 0.25},
    {"216", 100000, 1, 1, 0.2},  {"301", 3, 0, 1, 0.2},       {"508", 10000, 0, 1, 0.15},
    {"509", 200000, 1, 1, 0.15}, {"702", 100000, 1, 1, 0.15}, {"853", 50000, 0, 1, 0.15},
    {"hour", 24, 0, 1, 0.1},     {"position", 10, 0, 1, 0.3}, {"device", 5, 0, 1, 0.05},
    {"210", 100000, 1, 10, 0.3}, {"109_14", 8000, 0, 20, 0.3}, {"150_14", 100000, 1, 10, 0.2},
};

struct tl_synth_ccp {
    tl_synth_ccp_params p;
    tl_synth_ccp_field f[TL_SYNTH_CCP_CAT + TL_SYNTH_CCP_BAGS];
    float *cells;          /* per field ZIPF_CELLS + 1 points of the inverse CDF */
    double inv1s, a[TL_SYNTH_CCP_CAT + TL_SYNTH_CCP_BAGS];
    double w[TL_SYNTH_CCP_CAT + TL_SYNTH_CCP_BAGS];
    double half_var;      /* signal^2 / 2: exp(z - half_var) has mean 1 for a normal z */
    double k_ctr, k_cvr;  /* ccp_calibrate's corrections */
    float *eff;           /* per field, the effects of ids below CCP_EFF_TAB (most draws) */
};
#define CCP_EFF_TAB 2048

void tl_synth_ccp_defaults(tl_synth_ccp_params *p)
{
    p->ctr = 0.04;
    p->cvr = 0.005;
    p->zipf = 1.1;
    p->id_scale = 1;
    p->signal = 1;
    p->seed = 1;
}

/* The continuous bounded Zipf (Pareto) inverse CDF on [0, n): ranks r with
 * density ~ (1 + r)^-s. */
static double zipf_inv(double u, double a, double inv1s)
{
    return pow(a * u + 1.0, inv1s) - 1.0;
}

static void ccp_calibrate(tl_synth_ccp *g);
static void effects(uint64_t seed, int f, int32_t id, double *e1, double *e2);

tl_status tl_synth_ccp_new(const tl_synth_ccp_params *p, tl_synth_ccp **out)
{
    *out = NULL;
    if (!(p->ctr > 0 && p->ctr <= 0.5) || !(p->cvr > 0 && p->cvr <= 0.5))
        return tl_fail(TL_ERR_ARG, "synthetic ccp: ctr and cvr must be in (0, 0.5], got %g and %g", p->ctr, p->cvr);
    if (!(p->zipf >= 0.5 && p->zipf <= 3) || p->zipf == 1.0)
        return tl_fail(TL_ERR_ARG, "synthetic ccp: zipf must be in [0.5, 3] and not 1, got %g", p->zipf);
    if (!(p->id_scale >= 1e-4 && p->id_scale <= 100))
        return tl_fail(TL_ERR_ARG, "synthetic ccp: id_scale must be in [1e-4, 100], got %g", p->id_scale);
    if (!(p->signal >= 0 && p->signal <= 3))
        return tl_fail(TL_ERR_ARG, "synthetic ccp: signal must be in [0, 3], got %g", p->signal);
    int nf = TL_SYNTH_CCP_CAT + TL_SYNTH_CCP_BAGS;
    tl_synth_ccp *g = tl_calloc(1, sizeof *g, "synthetic ccp");
    if (!g) return TL_ERR_NOMEM;
    g->cells = tl_malloc((size_t)nf * (ZIPF_CELLS + 1) * sizeof *g->cells, "synthetic ccp tables");
    g->eff = tl_malloc((size_t)nf * CCP_EFF_TAB * 2 * sizeof *g->eff, "synthetic ccp tables");
    if (!g->cells || !g->eff) {
        tl_synth_ccp_free(g);
        return TL_ERR_NOMEM;
    }
    g->p = *p;
    g->inv1s = 1.0 / (1.0 - p->zipf);
    double sw = 0;
    for (int i = 0; i < nf; i++) sw += ccp_spec[i].w * ccp_spec[i].w;
    for (int i = 0; i < nf; i++) {
        double v = ccp_spec[i].large ? ccp_spec[i].vocab * p->id_scale : ccp_spec[i].vocab;
        g->f[i].name = ccp_spec[i].name;
        g->f[i].vocab = v < 2 ? 2 : (int32_t)v;
        g->f[i].max_len = ccp_spec[i].max_len;
        g->w[i] = ccp_spec[i].w * p->signal / sqrt(sw); /* the logit's latent part has std `signal` */
        g->a[i] = pow((double)g->f[i].vocab + 1.0, 1.0 - p->zipf) - 1.0;
        float *c = g->cells + (size_t)i * (ZIPF_CELLS + 1);
        for (int k = 0; k <= ZIPF_CELLS; k++) c[k] = (float)zipf_inv((double)k / ZIPF_CELLS, g->a[i], g->inv1s);
        for (int id = 0; id < CCP_EFF_TAB; id++) {
            double e1, e2;
            effects(p->seed, i, id, &e1, &e2);
            g->eff[((size_t)i * CCP_EFF_TAB + (size_t)id) * 2] = (float)e1;
            g->eff[((size_t)i * CCP_EFF_TAB + (size_t)id) * 2 + 1] = (float)e2;
        }
    }
    g->half_var = 0.5 * p->signal * p->signal; /* z and zc have the same variance */
    ccp_calibrate(g);
    *out = g;
    return TL_OK;
}

void tl_synth_ccp_free(tl_synth_ccp *g)
{
    if (!g) return;
    tl_free(g->cells);
    tl_free(g->eff);
    tl_free(g);
}

const tl_synth_ccp_field *tl_synth_ccp_field_info(const tl_synth_ccp *g, int kind, int i)
{
    if (kind == 0 && i >= 0 && i < TL_SYNTH_CCP_CAT) return &g->f[i];
    if (kind == 1 && i >= 0 && i < TL_SYNTH_CCP_BAGS) return &g->f[TL_SYNTH_CCP_CAT + i];
    return NULL;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* A row's random numbers: SplitMix64 from a per-row start (inline: a row
 * takes about 45 of them, and the generator's budget is under a microsecond
 * a row). */
typedef uint64_t ccp_rng;
static inline uint64_t ccp_next(ccp_rng *r)
{
    uint64_t z = (*r += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline double ccp_uniform(ccp_rng *r) { return (double)(ccp_next(r) >> 11) * 0x1.0p-53; }
/* Uniform in [0, n) by multiply-shift (bias below 2^-32 for the small n here). */
static inline uint64_t ccp_below(ccp_rng *r, uint64_t n) { return (uint64_t)(((ccp_next(r) >> 32) * n) >> 32); }

/* A Zipf rank of field f: the table's cell, linear inside it; the last cell
 * (the tail: u above 1 - 1/ZIPF_CELLS) exactly. */
static int32_t ccp_zipf(const tl_synth_ccp *g, int f, uint64_t bits)
{
    double u = (double)(bits >> 11) * 0x1.0p-53;
    double x = u * ZIPF_CELLS;
    int k = (int)x;
    const float *c = g->cells + (size_t)f * (ZIPF_CELLS + 1);
    double r = k < ZIPF_CELLS - 1 ? (double)c[k] + (x - k) * (double)(c[k + 1] - c[k]) : zipf_inv(u, g->a[f], g->inv1s);
    int32_t id = (int32_t)r;
    return id >= g->f[f].vocab ? g->f[f].vocab - 1 : id < 0 ? 0 : id;
}

/* Two N(0, 1)-like latent effects of (field, id), from one hash: each a sum
 * of three 10-bit uniforms scaled to unit variance (bounded, cheap). */
static void effects(uint64_t seed, int f, int32_t id, double *e1, double *e2)
{
    uint64_t h = mix64(seed ^ ((uint64_t)(uint32_t)f << 32 | (uint32_t)id));
    const double k = 2.0 / 1024.0, c = 3.0 - 3.0 / 1024.0; /* centre the 10-bit grid */
    *e1 = (double)((h & 0x3ff) + (h >> 10 & 0x3ff) + (h >> 20 & 0x3ff)) * k - c;
    *e2 = (double)((h >> 30 & 0x3ff) + (h >> 40 & 0x3ff) + (h >> 50 & 0x3ff)) * k - c;
}

static inline void effect_of(const tl_synth_ccp *g, int f, int32_t id, double *e1, double *e2)
{
    if (id < CCP_EFF_TAB) {
        const float *e = g->eff + ((size_t)f * CCP_EFF_TAB + (size_t)id) * 2;
        *e1 = (double)e[0];
        *e2 = (double)e[1];
    } else {
        effects(g->p.seed, f, id, e1, e2);
    }
}

/* The row's ids and its two latent logits z (click) and zc (purchase). */
static void ccp_latent(const tl_synth_ccp *g, ccp_rng *r, int32_t *cat, int32_t *bag, double *z_out, double *zc_out)
{
    double z = 0, z2 = 0, e1, e2;
    for (int f = 0; f < TL_SYNTH_CCP_CAT; f++) {
        cat[f] = ccp_zipf(g, f, ccp_next(r));
        effect_of(g, f, cat[f], &e1, &e2);
        z += g->w[f] * e1;
        z2 += g->w[f] * e2;
    }
    for (int b = 0; b < TL_SYNTH_CCP_BAGS; b++) {
        int f = TL_SYNTH_CCP_CAT + b, L = g->f[f].max_len;
        int n = 1 + (int)ccp_below(r, (uint64_t)L);
        double s1 = 0, s2 = 0;
        for (int j = 0; j < L; j++) {
            if (j < n) {
                bag[j] = ccp_zipf(g, f, ccp_next(r));
                effect_of(g, f, bag[j], &e1, &e2);
                s1 += e1;
                s2 += e2;
            } else {
                bag[j] = -1;
            }
        }
        /* the mean of n effects has variance 1/n: rescale to 1 */
        double k = 1.0 / sqrt((double)n);
        z += g->w[f] * s1 * k;
        z2 += g->w[f] * s2 * k;
        bag += L;
    }
    *z_out = z;
    *zc_out = (z + z2) * 0.70710678118654752; /* half of its variance shared with z */
}

static void ccp_seed(const tl_synth_ccp *g, ccp_rng *r, uint64_t i)
{
    *r = g->p.seed ^ mix64(i + 0x632be59bd9b4e019ULL);
}

/* Ids repeat (Zipf), so the rows' latent logits are not normal draws: scale
 * the rates on CCP_CALIB rows of the stream so that the mean P(click) is ctr
 * and the click-weighted mean P(buy | click) is cvr. */
#define CCP_CALIB 100000
static void ccp_calibrate(tl_synth_ccp *g)
{
    int32_t cat[TL_SYNTH_CCP_CAT], bag[64];
    double sc = 0, sb = 0, z, zc;
    g->k_ctr = g->k_cvr = 1;
    for (uint64_t i = 0; i < CCP_CALIB; i++) {
        ccp_rng r;
        ccp_seed(g, &r, i);
        ccp_latent(g, &r, cat, bag, &z, &zc);
        double pc = exp(z - g->half_var);
        sc += pc;
        sb += pc * exp(zc - g->half_var);
    }
    g->k_ctr = CCP_CALIB / sc;
    g->k_cvr = sc / sb;
}

void tl_synth_ccp_row(const tl_synth_ccp *g, uint64_t i, int32_t *cat, int32_t *bag, float *num, float *lab)
{
    ccp_rng r;
    double z, zc;
    ccp_seed(g, &r, i);
    ccp_latent(g, &r, cat, bag, &z, &zc);
    double pc = g->p.ctr * g->k_ctr * exp(z - g->half_var), pb = g->p.cvr * g->k_cvr * exp(zc - g->half_var);
    pc = pc > 0.95 ? 0.95 : pc;
    pb = pb > 0.95 ? 0.95 : pb;
    /* log price ~ 3 + 0.8 N(0, 1), the normal as a sum of four uniforms (close enough here) */
    double nrm = (ccp_uniform(&r) + ccp_uniform(&r) + ccp_uniform(&r) + ccp_uniform(&r) - 2.0) * 1.7320508075688772;
    num[0] = (float)(3.0 + 0.8 * nrm);
    num[1] = (float)ccp_below(&r, 3650) / 365.0f;
    int click = ccp_uniform(&r) < pc;
    lab[0] = (float)click;
    lab[1] = (float)(click && ccp_uniform(&r) < pb);
}
