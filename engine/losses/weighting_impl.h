/* losses/weighting_impl.h — internals of the loss-weighting strategy, shared by
 * weighting.c (the hook, the method table, the per-task gradient step) and the
 * method families (weighting_loss.c, weighting_gram.c). Only losses/ includes it.
 *
 * A method is one row of the table in weighting.c: a tl_weighting_method with
 * the points of fitting it acts at. A method that needs the task gradients
 * (per_task_grads) gets K backward passes through tl_weighting_task_grads; a
 * Gram-matrix method only supplies `combine`, which turns the K x K Gram
 * matrix of the shared-parameter gradients into their coefficients. */
#ifndef TL_WEIGHTING_IMPL_H
#define TL_WEIGHTING_IMPL_H

#include "weighting.h"

typedef struct tl_weighting_method tl_weighting_method;

struct tl_weighting_state {
    const tl_weighting_method *m;
    tl_node coef[TL_MAX_TASKS];    /* scalar multiplying task k's loss term */
    tl_node logvar[TL_MAX_TASKS];  /* uncertainty weighting: log sigma^2 per task */
    float factor[TL_MAX_TASKS];    /* strategy multiplier (DWA, GradNorm, loss-based), 1 otherwise */
    double gn_initial[TL_MAX_TASKS];
    int gn_have_initial;
    double dwa_hist[2][TL_MAX_TASKS];
    int dwa_epochs;
    float *task_grads;             /* per-task-gradient methods: n_tasks x param floats */
    float *w_grad_before;          /* GradNorm: last_shared's gradient before a task pass */
    /* What m:history() records for methods that combine gradients: the
     * coefficient of each task's gradient in the shared direction (or, for
     * GradDrop, the direction's cosine with it) */
    float shown[TL_MAX_TASKS];
    int has_shown;
    /* state kept across steps, checkpointed by the methods that use it */
    double rho[TL_MAX_TASKS][TL_MAX_TASKS]; /* GradVac: EMA of the gradient cosines */
    double vec[4][TL_MAX_TASKS];   /* FAMO: logits, Adam moments, last losses; STCH: loss sums;
                                      Nash-MTL: the last solution */
    int64_t count;                 /* FAMO: Adam steps; STCH: steps summed */
    int epochs;                    /* STCH: epochs done */
};

struct tl_weighting_method {
    const char *name;
    int per_task_grads;            /* keeps K task gradients (memory: K x parameters) */
    int logvar;                    /* learns log-variances (uncertainty): built into the graph */
    tl_status (*planned)(tl_weighting_state *w, const tl_model_view *v);
    void (*epoch_begin)(tl_weighting_state *w, const tl_model_view *v);
    void (*step_begin)(tl_weighting_state *w, const tl_model_view *v);
    /* NULL: one backward pass of the weighted total */
    tl_status (*backward)(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f);
    tl_status (*step_end)(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f);
    tl_status (*epoch_end)(tl_weighting_state *w, const tl_model_view *v, const tl_fit_point *f);
    /* Gram family (backward = tl_weighting_gram_backward): alpha[k] multiplies
     * task k's shared gradient; G is K x K, row-major, of the shared parameters */
    tl_status (*combine)(tl_weighting_state *w, const tl_model_view *v, const double *G, int K,
                         double *alpha);
    /* the method's own checkpoint fields, after the common ones; load checks
     * their ranges (r->bad) */
    void (*codec)(tl_weighting_state *w, int K, tl_codec *c);
    void (*check)(const tl_weighting_state *w, int K, tl_rbuf *r);
};

/* The method families' rows (weighting.c lists them in enum order). */
extern const tl_weighting_method tl_wm_fixed, tl_wm_uncertainty, tl_wm_gradnorm, tl_wm_dwa,
    tl_wm_pcgrad, tl_wm_mgda, tl_wm_imtl_g, tl_wm_upgrad, tl_wm_cagrad, tl_wm_nash_mtl,
    tl_wm_aligned_mtl, tl_wm_gradvac, tl_wm_graddrop, tl_wm_rlw, tl_wm_gls, tl_wm_famo, tl_wm_stch;

/* Backward of task k's term alone (the AITM constraint rides with the last
 * task), accumulating into the parameter gradients; coefficients restored. */
tl_status tl_weighting_task_pass(tl_weighting_state *w, const tl_model_view *v, int k);
/* K task passes: task k's full gradient into w->task_grads + k * pf; the
 * parameter gradients hold the last task's after. *shared_end: the end of
 * the shared parameters (the first n_shared_params, one contiguous span). */
tl_status tl_weighting_task_grads(tl_weighting_state *w, const tl_model_view *v, size_t *pf,
                                  size_t *shared_end);
/* The Gram family's backward: task gradients, their Gram matrix on the
 * shared span, w->m->combine, then shared = sum_k alpha_k g_k and the
 * towers' gradients summed as they are. */
tl_status tl_weighting_gram_backward(tl_weighting_state *w, const tl_model_view *v,
                                     const tl_fit_point *f);

#endif
