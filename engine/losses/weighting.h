/* losses/weighting.h — engine-internal: loss weighting strategies.
 *
 * Every strategy multiplies task k's loss term by a graph scalar coef_k, so
 * the user's weight (m.weights.task = w) and the strategy's factor can change
 * between steps without rebuilding:
 *   fixed        total = sum_k w_k L_k
 *   uncertainty  total = sum_k w_k (0.5 exp(-s_k) L_k + 0.5 s_k), s_k = log sigma_k^2
 *                learned (Kendall et al. 2018, in LibMTL's form)
 *   dwa          w_k * K softmax_k(r_k / T), r_k = L_k(e-1) / L_k(e-2) from epoch
 *                mean losses (Liu et al. 2019); factor 1 for the first two epochs
 *   gradnorm     w_k * g_k, g_k learned so that the gradient norms of w_k g_k L_k on
 *                the last shared layer follow mean norm * (relative inverse
 *                training rate)^alpha (Chen et al. 2018); sum g_k = K
 *   pcgrad       per-task gradients of the shared parameters (embeddings and
 *                backbone) are projected off each other's normal plane when they
 *                conflict (Yu et al. 2020); tower gradients are summed as usual;
 *                at='rep': the same projections on the Gram matrix of the
 *                gradients at the representations (losses/gram.c tl_gram_pcgrad)
 *   rlw          w_k * lambda_k, lambda drawn every step from the model's RNG:
 *                softmax of K standard normals (LibMTL), or Dirichlet(1,...,1)
 *                with rlw_dirichlet (Lin et al. 2022)
 *   gls          total = (prod_k L_k)^(1/K) (Chennupati et al. 2019)
 *   famo         total = sum_k z_k log(L_k + 1e-8) / c, z = softmax(xi),
 *                c = sum_k z_k / (L_k + 1e-8) held constant; after the
 *                optimizer step the losses of the same batch are measured again
 *                and xi takes one Adam step (lr famo_lr, weight decay famo_gamma)
 *                on the softmax Jacobian times the log-loss decrease (Liu et al.
 *                2023, Cranial-XIX/FAMO; defaults 0.025, 1e-3: famo.py's w_lr and
 *                the authors' NYUv2/CelebA/QM9 run scripts' gamma, as LibMTL; the
 *                official code's clip of the shared gradient to norm 1 is left
 *                to the optimizer's clip_norm)
 *   db_mtl       per-task gradients of log(L_k + 1e-8) on the shared
 *                parameters, an EMA of them (buffer = g + beta / step^sigma
 *                (buffer - g), beta 0.9, sigma 0), each scaled to the largest
 *                buffer norm and summed (Lin et al. 2023, LibMTL DB_MTL); the
 *                towers get the log-loss gradients
 *   stch         epochs 1..stch_warmup train on sum_k log L_k; epoch
 *                stch_warmup+1 does too and averages the losses (the nadir point
 *                n); then total = mu K log sum_k exp(log(L_k / n_k) / mu)
 *                (Lin et al. 2024, Xi-L/STCH and LibMTL: mu 1, warm-up 4)
 *   imtl_l       total = sum_k w_k (exp(s_k) L_k - s_k), s_k learned (Liu et al.
 *                2021, the loss-scale half of IMTL, as LibMTL's IMTL)
 *   graddrop     the per-task gradients at the representations the towers read
 *                are masked by sign: P = (1 + sum_k G_k / sum_k |G_k|) / 2 with
 *                G_k = sum over the batch of g_k * sign(rep); one uniform draw u
 *                per column keeps the positive parts where P > u and the negative
 *                ones where P < u; g_k (leak + (1 - leak) mask_k) flows on into the
 *                shared part (Chen et al. 2020, LibMTL: leak 0)
 * The user's weight w_k multiplies each method's coefficient on L_k (the
 * formulas above are with w = 1); the methods read the raw task losses.
 * GradNorm, PCGrad and DB-MTL run one backward pass per task; GradDrop one
 * pass per task through the towers and one through the shared part.
 *
 * The strategy is attached to a model through its hook table (hooks.h): it
 * owns the coefficient scalars, the learned loss scales and the factors, and
 * writes them to the checkpoint section WGHT. model.c reaches it through the
 * functions below too.
 */
#ifndef TL_WEIGHTING_H
#define TL_WEIGHTING_H

#include "dist.h"
#include "hooks.h"

typedef struct tl_weighting_state tl_weighting_state;

/* Check the options of c->weighting (TL_ERR_ARG naming the bad one); the
 * model runs it with tl_model_config_check. */
tl_status tl_weighting_check(const tl_model_config *c);

extern const tl_hook tl_weighting_hook;

/* Push user weights x factors into the coefficient scalars (after the user
 * changed a weight). */
void tl_weighting_apply(tl_weighting_state *w, const tl_model_view *v);
/* Task k's effective weight: user weight x factor (x exp(-s_k)/2 under
 * uncertainty weighting, x exp(s_k) under imtl_l); for methods that combine
 * task gradients, the coefficient of task k's gradient in the shared
 * direction at the last step. */
float tl_weighting_effective(const tl_weighting_state *w, const tl_model_view *v, int k);
/* Backward of task k's loss alone with coefficient 1 on the raw loss
 * (learned loss scales undone), after a forward run; the coefficients are
 * restored after. For diagnostics. */
tl_status tl_weighting_task_backward(tl_weighting_state *w, const tl_model_view *v, int k);

/* 1 when the model can switch from its method to v->cfg->weighting between
 * fits (not to or from a method that learns loss scales in the graph), else
 * 0 with the reason in *why. */
int tl_weighting_can_switch(const tl_weighting_state *w, tl_weighting to, const char **why);
/* After the model changed cfg->weighting or cfg->wopt: the new method with
 * its state reset (factors 1, histories and learned logits cleared) and its
 * buffers allocated. The loss scales of uncertainty/imtl_l are parameters
 * and stay. */
tl_status tl_weighting_switch(tl_weighting_state *w, const tl_model_view *v);
/* How a method trains under data parallelism (models/model_fit.c), as its
 * row in weighting.c declares it:
 *   TL_DP_REFUSED  not known to work: fit refuses it, naming it (the zero
 *                  value, so that a new row states its behaviour);
 *   TL_DP_GRAINS   the step's gradient is a sum over rows with coefficients
 *                  fixed before the forward run (fixed, uncertainty, DWA,
 *                  RLW, IMTL-L): any number of grains, summed in grain
 *                  order, the backward hook run on each grain;
 *   TL_DP_REDUCES  the backward hook needs the whole batch's task losses or
 *                  combines the task gradients nonlinearly: one grain per
 *                  rank, the task losses summed over the ranks before the
 *                  hook, which sums every gradient it combines over the
 *                  ranks (hooks.h reduce_grads; the partial Gram matrices
 *                  and column sums at the representations in rank order)
 *                  before combining, so every rank applies the method to the
 *                  same numbers. */
typedef enum { TL_DP_REFUSED, TL_DP_GRAINS, TL_DP_REDUCES } tl_weighting_dp;
tl_weighting_dp tl_weighting_dp_mode(const tl_model_config *c);
/* 1 when c's graph adds a gradient no row carries (the learned loss scales'
 * 0.5 s_k or -s_k), which every grain's run adds once: the grain sum must
 * keep it once. */
int tl_weighting_rows_free(const tl_model_config *c);
/* Bytes of the buffers method `m` keeps for a graph of `param_floats`
 * parameters (per-task gradients), for the memory budget. */
uint64_t tl_weighting_memory(const tl_model_config *c, uint64_t param_floats);

/* The methods' formulas, exposed for the tests. */
/* lambda[K]: RLW's weights for one step, from rng. */
void tl_weighting_rlw_draw(tl_rng *rng, int K, int dirichlet, double *lambda);
/* coef[k] = d/dL_k (prod L)^(1/K). */
void tl_weighting_gls(const double *L, int K, double *coef);
/* FAMO's loss coefficients at logits xi, and one update of xi (Adam moments
 * m1, m2, step count *t) from the losses before and after a step. */
void tl_weighting_famo_coef(const double *xi, const double *L, int K, double *coef);
void tl_weighting_famo_update(double *xi, double *m1, double *m2, int64_t *t, const double *before,
                              const double *after, int K, double lr, double gamma);
/* STCH's coefficients d/dL_k mu K logsumexp_k(log(L_k / n_k) / mu). */
void tl_weighting_stch(const double *L, const double *nadir, int K, double mu, double *coef);
/* GradDrop's mask for one column: G[k] = sum over the batch of g_k sign(rep);
 * keep[k] = 1 where task k's part is kept, u the uniform draw. */
void tl_weighting_graddrop_mask(const double *G, int K, double u, int *keep);


/* ---- internals, for the method files (weighting_loss.c, weighting_grad.c,
 * weighting_gram.c) and the tests ----------------------------------------------
 * A method is one row of the table in weighting.c (in tl_weighting order; the
 * names and one-line descriptions are model_config.c's list): a
 * tl_weighting_method with the points of fitting it acts at. A method that
 * needs the task gradients of the parameters (per_task_grads) gets K backward
 * passes through tl_weighting_task_grads; one that needs them at the
 * representations (rep_grads) gets them from tl_weighting_rep_grads; a Gram
 * method (solve) gets either, by the option at. */
typedef struct tl_weighting_method tl_weighting_method;

/* How a method's learned loss scales s_k enter the graph (built once:
 * a model cannot switch to or from them). */
typedef enum { TL_SCALES_NONE, TL_SCALES_UNCERTAINTY, TL_SCALES_IMTL } tl_weighting_scales;

struct tl_weighting_state {
    const tl_weighting_method *m;
    tl_weighting_scales scales;    /* what the graph was built with */
    tl_node coef[TL_MAX_TASKS];    /* scalar multiplying task k's loss term */
    tl_node logvar[TL_MAX_TASKS];  /* learned loss scale s_k (uncertainty, imtl_l) */
    float factor[TL_MAX_TASKS];    /* strategy multiplier, 1 otherwise */
    double gn_initial[TL_MAX_TASKS];
    int gn_have_initial;
    double dwa_hist[2][TL_MAX_TASKS];
    int dwa_epochs;
    float *task_grads;             /* per-task-gradient methods: n_tasks x param floats */
    float *w_grad_before;          /* GradNorm: last_shared's gradient before a task pass */
    float *gn_sum;                 /* GradNorm under data parallelism: the reduced task passes' sum */
    float *db_ema;                 /* DB-MTL: n_tasks x shared floats */
    /* What m:history() records for methods that combine gradients: the
     * coefficient of each task's gradient in the shared direction */
    float shown[TL_MAX_TASKS];
    int has_shown;
    /* state kept across steps, checkpointed by the methods that use it */
    double vec[4][TL_MAX_TASKS];   /* FAMO: logits, Adam moments, last losses; STCH: loss
                                      sums; Nash-MTL: the last solution (vec[0]) */
    double ema[TL_MAX_TASKS * TL_MAX_TASKS]; /* GradVac: the cosine targets */
    int64_t count;                 /* FAMO: Adam steps; STCH: steps summed; DB-MTL: steps */
    int epochs;                    /* STCH: epochs done */
    /* the representations the towers read, for the rep_grads methods: the
     * graph's nodes before n_below are the shared part */
    int n_below;
    tl_node rep[TL_MAX_TASKS];
    float *rep_grads;              /* n_tasks x max_batch x rep columns */
    double *rep_cols;              /* n_tasks x rep columns (GradDrop) */
};

struct tl_weighting_method {
    tl_weighting_dp dp;            /* under data parallelism (TL_DP_REFUSED: not yet) */
    int per_task_grads;            /* keeps K task gradients (memory: K x parameters) */
    int rep_grads;                 /* needs the task gradients at the representations */
    tl_weighting_scales scales;
    /* buffers beyond the common ones (after the graph is planned, or a switch) */
    tl_status (*setup)(tl_weighting_state *w, const tl_model_view *v);
    void (*epoch_begin)(tl_weighting_state *w, const tl_model_view *v);
    void (*step_begin)(tl_weighting_state *w, const tl_model_view *v);
    /* NULL: one backward pass of the weighted total */
    tl_status (*backward)(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f);
    tl_status (*step_end)(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f);
    tl_status (*epoch_end)(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f);
    /* The Gram family (weighting_gram.c): the weights alpha[K] of the task
     * gradients from their K x K Gram matrix (row-major); *shared_scale
     * multiplies the shared direction (1 unless the method clips it). */
    tl_status (*solve)(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                       double *alpha, double *shared_scale);
    /* the method's own checkpoint fields, after the common ones; load checks
     * their ranges (r->bad) */
    void (*codec)(tl_weighting_state *w, int K, tl_codec *c);
    void (*check)(const tl_weighting_state *w, int K, tl_rbuf *r);
};

/* The method families' rows (weighting.c lists them in enum order). */
extern const tl_weighting_method tl_wm_fixed, tl_wm_uncertainty, tl_wm_gradnorm, tl_wm_dwa,
    tl_wm_pcgrad, tl_wm_rlw, tl_wm_gls, tl_wm_famo, tl_wm_db_mtl, tl_wm_stch, tl_wm_imtl_l,
    tl_wm_graddrop, tl_wm_mgda, tl_wm_cagrad, tl_wm_nash_mtl, tl_wm_imtl_g, tl_wm_imtl,
    tl_wm_aligned_mtl, tl_wm_upgrad, tl_wm_gradvac;

/* Whether method m under options o keeps per-task gradients of the
 * parameters, or takes them at the representations. */
int tl_weighting_uses_task_grads(const tl_weighting_method *m, const tl_weighting_opts *o);
int tl_weighting_uses_rep_grads(const tl_weighting_method *m, const tl_weighting_opts *o);
/* The Gram family's backward (weighting_gram.c). */
tl_status tl_weighting_gram_backward(tl_weighting_state *w, const tl_model_view *v,
                                     const tl_fit_point *f);
/* The spans of the shared parameters this step wrote: a dense parameter
 * whole, an embedding table by its touched rows (its other rows keep a zero
 * gradient, which the sparse optimizers rely on): fn(off, len, ctx). */
void tl_weighting_shared_spans(const tl_model_view *v, void (*fn)(size_t off, size_t len, void *ctx),
                               void *ctx);

/* Backward of task k's term alone (the AITM constraint rides with the last
 * task) with coefficient user weight x scale, accumulating into the parameter
 * gradients; coefficients restored. */
tl_status tl_weighting_task_pass(tl_weighting_state *w, const tl_model_view *v, int k, float scale);
/* K task passes (scale[k], NULL = the factors): task k's full gradient into
 * w->task_grads + k * pf; the parameter gradients hold the last task's after.
 * *shared_end: the end of the shared parameters (the first n_shared_params,
 * one contiguous span). */
tl_status tl_weighting_task_grads(tl_weighting_state *w, const tl_model_view *v, const float *scale,
                                  size_t *pf, size_t *shared_end);
/* The same, cheaper, for methods that change only the shared gradient: after
 * each pass the shared spans this step wrote (tl_weighting_shared_spans) are
 * moved to w->task_grads + k * pf (the rest of that row is stale) and
 * cleared, so the towers' gradients add up in the parameter gradients and
 * the shared spans are zero after. */
tl_status tl_weighting_shared_grads(tl_weighting_state *w, const tl_model_view *v, const float *scale,
                                    size_t *pf);
/* The rep_grads methods' first half: for each task k the backward pass of its
 * term alone (coefficient user weight x factor) through the towers only, its
 * gradient at rep[k] copied to w->rep_grads + k * (rows x cols); the towers'
 * parameter gradients accumulate every task's. */
tl_status tl_weighting_rep_grads(tl_weighting_state *w, const tl_model_view *v, int *rows, int *cols);
/* The second half: seed[k] (rows x cols each, may alias rep_grads) as the
 * gradient at rep[k], then one backward pass through the shared part. */
tl_status tl_weighting_rep_backward(tl_weighting_state *w, const tl_model_view *v, const float *seed);
/* Under data parallelism (v->reduce_grads set, the REDUCES methods only):
 * the parameter gradients of the pass just run summed over the ranks
 * (reduce_grads). The pass's coefficients were user weight x scale on task
 * `task` alone, or (task < 0) user weight x factor on every task: the
 * learned loss scales' rows-free gradient they gave (tl_weighting_rows_free)
 * is in every rank's pass, so the ranks but 0 take theirs out first and the
 * sum holds it once. Nothing in one process. */
tl_status tl_weighting_reduce(tl_weighting_state *w, const tl_model_view *v, int task, float scale);
/* Under data parallelism: x[n] replaced by its sum over the ranks, added in
 * rank order (the same bits on every rank); `what` names it in an error.
 * Nothing in one process. */
tl_status tl_weighting_dp_sum(const tl_model_view *v, double *x, int n, const char *what);
/* Set the coefficients to user weight x factor[k], then the one backward
 * pass of the total (summed over the ranks under data parallelism). */
tl_status tl_weighting_backward_with(tl_weighting_state *w, const tl_model_view *v,
                                     const double *factor);
void tl_weighting_softmax(const double *x, int K, double *z);

#endif
