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

/* ---- a user/item pair of binary tasks with a set relation (CrossDistil's
 * premise: two feedback types on the same item whose relation you control)
 *
 * Generative model, all draws from one tl_rng seeded with `seed`, in this order:
 *  1. Popularity: user ranks get weight (r+1)^-0.6, item ranks (r+1)^-0.9
 *     (Zipf-ish), ranks assigned to ids by a random permutation.
 *  2. Per user u: segment g_u uniform in 0..7, activity v_u ~ N(0,1), and for
 *     each task k = 1, 2 a bias b_ku ~ N(0, 0.5^2) and factors p_ku ~ N(0, I_K).
 *     Per item i: category c_i uniform in 0..19, price x_i ~ N(0,1), and per
 *     task b_ki ~ N(0, 0.5^2), q_ki ~ N(0, I_K). Per task: a segment x category
 *     table E_k ~ N(0, 0.5^2), context effects h_k[0..3] ~ N(0, 0.3^2), and
 *     weights w_k (activity), m_k (price), n_k (row feature) ~ N(0, 0.5^2).
 *  3. Per row: user and item by popularity, context uniform in 0..3,
 *     a row feature t ~ N(0,1), and
 *       s_k = p_ku.q_ki / sqrt(K) + b_ku + b_ki + E_k[g_u][c_i] + h_k[context]
 *             + w_k v_u + m_k x_i + n_k t.
 *  4. s_1 and s_2 are standardised over the rows; s_2 is made orthogonal to
 *     s_1 over the rows (residual of its regression on s_1, standardised
 *     again): e_1, e_2. The latent scores are
 *       z_a = e_1,   z_b = rho e_1 + sqrt(1 - rho^2) e_2,
 *     so their empirical correlation over the rows is rho (to rounding), and
 *     both are functions of the features (user, item, their side features,
 *     context, t) that a model can learn.
 *  5. Labels (after all of the above: a second rng stream seeded from seed):
 *       y_a ~ Bernoulli(sigmoid(beta_a + scale z_a)),
 *     non-nested: y_b ~ Bernoulli(sigmoid(beta_b + scale z_b)) independently;
 *     nested:     y_b = y_a * Bernoulli(sigmoid(beta_b + scale z_b)), so no row
 *                 has y_a = 0 and y_b = 1.
 *     beta_a solves mean_rows sigmoid(beta_a + scale z_a) = rate_a by bisection;
 *     beta_b solves the same for rate_b over all rows (non-nested) or over the
 *     rows with y_a = 1 (nested: rate_b is P(b | a)).
 * Same parameters, same bytes. At the defaults (200k rows, rho 0.6) the
 * oracle AUC of z is about 0.86 and an MMoE (4 experts [64], emb 8, 8 epochs)
 * reaches about 0.80 / 0.77: learnable, with room left. */
typedef struct {
    size_t rows;       /* default 200000 */
    int users, items;  /* default 2000, 500 (about 100 rows a user at 200k rows) */
    int factors;       /* K, default 4 */
    double rho;        /* correlation of z_a and z_b, in [-1, 1] (default 0.6) */
    int nested;        /* 1: b only where a (default 0) */
    double rate_a;     /* positive rate of a (default 0.3) */
    double rate_b;     /* of b: overall, or among a-positives when nested (default 0.3) */
    double scale;      /* logit scale of the latent scores (default 2) */
    uint64_t seed;     /* default 1 */
} tl_synth_pair_params;

/* Caller-owned arrays of `rows` entries each (any may be NULL to skip it). */
typedef struct {
    int32_t *user, *item;         /* 0 .. users-1, 0 .. items-1 */
    int32_t *segment, *category;  /* the user's segment 0..7, the item's category 0..19 */
    int32_t *context;             /* 0..3 */
    float *activity, *price, *t;  /* the user's, the item's, the row's numeric feature */
    float *za, *zb;               /* latent scores */
    float *ya, *yb;               /* 0/1 labels */
} tl_synth_pair_out;

void tl_synth_pair_defaults(tl_synth_pair_params *p);
/* rows in 1 .. 2^32-1, users and items in 1 .. 10^7, factors in 1 .. 256,
 * |rho| <= 1, rates in (0, 1), scale in [0, 100]. TL_ERR_ARG names the field. */
tl_status tl_synth_pair_check(const tl_synth_pair_params *p);
tl_status tl_synth_pair_generate(const tl_synth_pair_params *p, const tl_synth_pair_out *o);

/* ---- a stream at Ali-CCP's shape (issue 24) --------------------------------
 * Impressions with 21 single-valued categorical fields (named after Ali-CCP's
 * feature fields: user 101, 121.., item 205, 206, 207, 216, combinations 508..,
 * context), 3 multi-valued fields (210 intention nodes, 109_14 and 150_14 the
 * user's recent categories and brands, read as sequences with mean pooling),
 * 2 numeric features (log price, age in years) and two tasks: click, and
 * purchase only after a click.
 * Ids in each field are Zipf-distributed (id 0 the most frequent). Labels come
 * from per-id latent effects (a hash of field and id, so they are the same
 * wherever an id appears): P(click) = ctr * exp(z - s^2/2), P(buy | click) =
 * cvr * exp(z' - s'^2/2), z' sharing half its variance with z, both capped at
 * 0.95; so the rates are about ctr and cvr. Row i depends only on (seed, i):
 * any range of rows can be made on its own (threads, resume). */
#define TL_SYNTH_CCP_CAT 21
#define TL_SYNTH_CCP_BAGS 3
#define TL_SYNTH_CCP_NUM 2

typedef struct {
    double ctr;        /* default 0.04 */
    double cvr;        /* purchases per click, default 0.005 */
    double zipf;       /* Zipf exponent of the ids, default 1.1 */
    double id_scale;   /* multiplies the large fields' id counts (default 1: user 400k, item 500k) */
    double signal;     /* std of the click logit's latent part, default 1 */
    uint64_t seed;     /* default 1 */
} tl_synth_ccp_params;

typedef struct {
    const char *name;
    int32_t vocab;     /* ids 0 .. vocab-1 */
    int max_len;       /* multi-valued fields: up to this many ids a row (1 for the others) */
} tl_synth_ccp_field;

typedef struct tl_synth_ccp tl_synth_ccp;

void tl_synth_ccp_defaults(tl_synth_ccp_params *p);
/* ctr, cvr in (0, 0.5], zipf in [0.5, 3], id_scale in [1e-4, 100], signal in [0, 3]. */
tl_status tl_synth_ccp_new(const tl_synth_ccp_params *p, tl_synth_ccp **out);
void tl_synth_ccp_free(tl_synth_ccp *g);
/* Field i of kind 0 (single-valued, i < TL_SYNTH_CCP_CAT) or 1 (multi-valued,
 * i < TL_SYNTH_CCP_BAGS); the numeric features are "price" and "age_days". */
const tl_synth_ccp_field *tl_synth_ccp_field_info(const tl_synth_ccp *g, int kind, int i);
/* Row i: cat[TL_SYNTH_CCP_CAT], bag[sum of max_len] (-1 fills a field's
 * unused slots), num[TL_SYNTH_CCP_NUM], lab[2] = {click, purchase}. */
void tl_synth_ccp_row(const tl_synth_ccp *g, uint64_t i, int32_t *cat, int32_t *bag, float *num, float *lab);

#endif
