/* losses/weighting_impl.h — internals of the loss-weighting strategy, shared by
 * weighting.c (the hook, the method table, the per-task gradient passes) and
 * the method families (weighting_loss.c: the loss coefficients;
 * weighting_grad.c: the task gradients). Only losses/ includes it.
 *
 * A method is one row of the table in weighting.c: a tl_weighting_method with
 * the points of fitting it acts at. A method that needs the task gradients of
 * the parameters (per_task_grads) gets K backward passes through
 * tl_weighting_task_grads; one that needs them at the representations
 * (rep_grads) gets them from tl_weighting_rep_grads; a Gram method (solve)
 * gets either, by the option at. */
#ifndef TL_WEIGHTING_IMPL_H
#define TL_WEIGHTING_IMPL_H

#include "weighting.h"

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
};

struct tl_weighting_method {
    const char *name;
    const char *about;             /* one line for help texts */
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
/* The rep_grads methods' first half: for each task k the backward pass of its
 * term alone (coefficient user weight x factor) through the towers only, its
 * gradient at rep[k] copied to w->rep_grads + k * (rows x cols); the towers'
 * parameter gradients accumulate every task's. */
tl_status tl_weighting_rep_grads(tl_weighting_state *w, const tl_model_view *v, int *rows, int *cols);
/* The second half: seed[k] (rows x cols each, may alias rep_grads) as the
 * gradient at rep[k], then one backward pass through the shared part. */
tl_status tl_weighting_rep_backward(tl_weighting_state *w, const tl_model_view *v, const float *seed);
/* Set the coefficients to user weight x factor[k], then the one backward
 * pass of the total. */
tl_status tl_weighting_backward_with(tl_weighting_state *w, const tl_model_view *v,
                                     const double *factor);
void tl_weighting_softmax(const double *x, int K, double *z);

#endif
