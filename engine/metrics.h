/* metrics.h — evaluation metrics for binary and regression tasks: AUC,
 * GAUC, Multi-AUC, logloss, MSE/RMSE/MAE, reliability bins, ECE, MCE, PCOC,
 * Brier, calibration slope/intercept, normalised entropy, field-level
 * calibration error. The Platt, isotonic and temperature calibrators are in
 * calibrate.h, which this header includes.
 *
 * Common rules
 * - Every metric is computed globally over the rows it is given (a whole
 *   split), never averaged over batches. Sums are accumulated in double.
 * - Row selection and weighting, the same in every function:
 *     weight  NULL, or one sample weight per row (finite, >= 0);
 *     mask    NULL, or one byte per row: the row counts iff mask[i] != 0.
 *   A weight enters AUC-type metrics as weighted pair counts: a (pos i,
 *   neg j) pair counts w_i * w_j. Rows with weight 0 count nowhere (but are
 *   still in "rows" counts of bins).
 * - Binary labels: the AUC family (AUC, GAUC, Multi-AUC, and the eval
 *   functions) require labels exactly 0 or 1; logloss, Brier, bins and the
 *   calibration fits accept any label in [0, 1]. Predictions must be finite;
 *   probabilities must lie in [0, 1].
 * - Undefined values (one class, no rows, zero total weight) are NaN, never
 *   an error: the function returns TL_OK, stores NaN and sets a bit in
 *   `*notes` (a tl_metric_note mask; `notes` may be NULL). Print them with
 *   tl_metric_notes_str(). Errors (TL_ERR_ARG / TL_ERR_NUMERIC / NOMEM) are
 *   for bad input: NaN prediction, label not 0/1, negative weight; the
 *   message names the row and the argument.
 * - Where a probability enters a log or a logit it is clipped to
 *   [TL_METRIC_EPS, 1 - TL_METRIC_EPS] (float predictions reach 0 and 1).
 * - Functions that sort take an optional workspace `ws` (tl_metric_ws_new):
 *   pass one to reuse its buffers across calls (no allocation once it has
 *   grown to the split size: about 56 bytes per row); pass NULL to allocate
 *   once per call. No function allocates per sample.
 * - Messages name the function ("auc: label at row 3 ...", rows 0-based) or,
 *   in the eval functions, the task ("task 'ctr': ...").
 */
#ifndef TL_METRICS_H
#define TL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "calibrate.h" /* the calibrators, and TL_METRIC_EPS */
#include "core.h"

/* Bits reported through `unsigned *notes`. */
enum {
    TL_NOTE_ONE_CLASS = 1u << 0,      /* only one class present: AUC-type value is NaN */
    TL_NOTE_EMPTY = 1u << 1,          /* no rows selected or total weight 0: NaN */
    TL_NOTE_GROUPS_SKIPPED = 1u << 2, /* GAUC: some groups had one class and were skipped */
    TL_NOTE_PAIRS_SKIPPED = 1u << 3,  /* Multi-AUC: some adjacent group pairs were empty */
    TL_NOTE_NO_POSITIVES = 1u << 4,   /* Σ w·y = 0: PCOC / NE are NaN */
    TL_NOTE_NOT_CONVERGED = 1u << 5,  /* slope/intercept fit failed (separable, one class) */
    TL_NOTE_EMPTY_BINS = 1u << 6      /* some reliability bins hold no rows */
};

/* A static, human-readable description of the notes bits ("only one class
 * present (AUC undefined); ..."); "" when notes == 0. The returned string is
 * a thread-local buffer valid until the next call in this thread. */
const char *tl_metric_notes_str(unsigned notes);

/* Workspace: sort and scratch buffers that grow on demand and are reused. */
typedef struct tl_metric_ws tl_metric_ws;

/* New empty workspace; NULL with TL_ERR_NOMEM recorded on failure. */
tl_metric_ws *tl_metric_ws_new(void);
/* Free a workspace and its buffers. NULL is a no-op. */
void tl_metric_ws_free(tl_metric_ws *ws);

/* ---- ranking ------------------------------------------------------------ */

/* Exact ROC AUC = P(score_pos > score_neg) + 0.5 P(equal), over weighted
 * (pos, neg) pairs; O(n log n) by one sort of the scores. `pred` is any
 * finite score. One class or no rows: *out = NaN and TL_NOTE_ONE_CLASS /
 * TL_NOTE_EMPTY. */
tl_status tl_metric_auc(const float *pred, const float *label, const float *weight,
                        const uint8_t *mask, size_t n, tl_metric_ws *ws, double *out,
                        unsigned *notes);

/* Group AUC (DIN, FuxiCTR): rows are grouped by group[i] (a user id);
 *   GAUC = Σ_g W_g AUC_g / Σ_g W_g,  W_g = Σ weight of the group's rows
 * (impression count when weight is NULL). Groups whose rows have one class
 * are skipped (TL_NOTE_GROUPS_SKIPPED). No group with both classes: NaN and
 * TL_NOTE_ONE_CLASS. *n_groups_used (may be NULL) receives the number of
 * groups that entered the mean. */
tl_status tl_metric_gauc(const float *pred, const float *label, const int32_t *group,
                         const float *weight, const uint8_t *mask, size_t n,
                         tl_metric_ws *ws, double *out, size_t *n_groups_used,
                         unsigned *notes);

/* CrossDistil groups of a sample by (y_A, y_B). */
typedef enum { TL_QUAD_PP = 0, TL_QUAD_PN = 1, TL_QUAD_NP = 2, TL_QUAD_NN = 3 } tl_quad;

/* Target orders, highest first, in (y_A, y_B) coordinates:
 *   TL_MULTI_AUC_ORDER_A      ++ > +- > -+ > --   (task A, partner B)
 *   TL_MULTI_AUC_ORDER_B      ++ > -+ > +- > --   (task B scored, partner A)
 *   TL_MULTI_AUC_ORDER_A_NEG  +- > ++ > -- > -+   (task A, B negatively related:
 *                                                  A's order with B's label flipped) */
extern const tl_quad TL_MULTI_AUC_ORDER_A[4];
extern const tl_quad TL_MULTI_AUC_ORDER_B[4];
extern const tl_quad TL_MULTI_AUC_ORDER_A_NEG[4];

/* Multi-AUC (CrossDistil): rows fall into the four groups of tl_quad by
 * (label_a, label_b); `order` (a permutation of the four, highest first;
 * NULL = TL_MULTI_AUC_ORDER_A) gives the target ranking of `pred`.
 *   Multi-AUC = mean over k = 0..2 of AUC(order[k] above order[k+1])
 * where each pairwise AUC is the weighted-pair AUC of the two groups
 * (ties half). An empty group is chained over: the adjacent non-empty
 * groups are compared (for nested tasks, where -+ is empty: ++ > +- and
 * +- > --) and TL_NOTE_PAIRS_SKIPPED is noted; one group or none: NaN and
 * TL_NOTE_ONE_CLASS. pair_auc (may be NULL) receives the pairwise AUCs of
 * the chain in order (NaN past its end).
 * A bad order is TL_ERR_ARG. */
tl_status tl_metric_multi_auc(const float *pred, const float *label_a, const float *label_b,
                              const tl_quad order[4], const float *weight,
                              const uint8_t *mask, size_t n, tl_metric_ws *ws, double *out,
                              double pair_auc[3], unsigned *notes);

/* ---- pointwise (streaming) ---------------------------------------------- */

/* Additive sums: feed batches with tl_metric_sums_add_* and read the metrics
 * at the end (they equal the whole-split values; no allocation). Zero-init
 * the struct (= {0}) before the first add. */
typedef struct {
    size_t rows;    /* rows selected by the mask */
    double w;       /* Σ w */
    double wp;      /* Σ w p */
    double wy;      /* Σ w y */
    double wll;     /* Σ w · BCE(p, y) (binary) */
    double wse;     /* Σ w (p - y)^2 */
    double wae;     /* Σ w |p - y| */
} tl_metric_sums;

/* Add rows of a binary task (p in [0,1], y in [0,1]) or of a regression task
 * (any finite p, y; wll is not updated). On bad input returns an error and
 * leaves `s` unchanged. */
tl_status tl_metric_sums_add_binary(tl_metric_sums *s, const float *pred, const float *label,
                                    const float *weight, const uint8_t *mask, size_t n);
tl_status tl_metric_sums_add_regression(tl_metric_sums *s, const float *pred,
                                        const float *label, const float *weight,
                                        const uint8_t *mask, size_t n);

/* Read-outs of sums (NaN when Σ w = 0): */
double tl_metric_sums_logloss(const tl_metric_sums *s);  /* Σ w BCE / Σ w */
double tl_metric_sums_mse(const tl_metric_sums *s);      /* Σ w (p-y)^2 / Σ w; Brier for binary */
double tl_metric_sums_mae(const tl_metric_sums *s);
double tl_metric_sums_pcoc(const tl_metric_sums *s);     /* Σ w p / Σ w y (NaN if Σ w y = 0) */
/* Normalised entropy: logloss / H(r), r = Σ w y / Σ w, H the binary entropy;
 * NaN when r is 0 or 1. */
double tl_metric_sums_ne(const tl_metric_sums *s);

/* One-call versions over a whole split; *out = NaN + TL_NOTE_EMPTY if no rows. */
tl_status tl_metric_logloss(const float *pred, const float *label, const float *weight,
                            const uint8_t *mask, size_t n, double *out, unsigned *notes);
tl_status tl_metric_brier(const float *pred, const float *label, const float *weight,
                          const uint8_t *mask, size_t n, double *out, unsigned *notes);
tl_status tl_metric_mse(const float *pred, const float *label, const float *weight,
                        const uint8_t *mask, size_t n, double *out, unsigned *notes);
tl_status tl_metric_rmse(const float *pred, const float *label, const float *weight,
                         const uint8_t *mask, size_t n, double *out, unsigned *notes);
tl_status tl_metric_mae(const float *pred, const float *label, const float *weight,
                        const uint8_t *mask, size_t n, double *out, unsigned *notes);

/* ---- calibration -------------------------------------------------------- */

typedef enum {
    TL_BINS_UNIFORM,  /* n equal-width bins on [0, 1] */
    TL_BINS_QUANTILE  /* edges = quantiles of the selected predictions (numpy's
                         linear-interpolation percentile, unweighted); tied
                         predictions can make bins empty */
} tl_bin_strategy;

/* One reliability bin. A prediction equal to an inner edge falls in the
 * lower bin, i.e. bins are [lo0, hi0], (lo1, hi1], ... as in sklearn's
 * calibration_curve. Empty bins are reported with count 0 and NaN means. */
typedef struct tl_calib_bin {
    double lo, hi;        /* edges */
    size_t count;         /* rows in the bin (unweighted) */
    double weight;        /* Σ w of its rows */
    double mean_pred;     /* Σ w p / Σ w */
    double rate;          /* observed rate Σ w y / Σ w */
    double ci_lo, ci_hi;  /* 95 % Wilson interval of `rate`, n = Kish effective
                             size (Σw)^2 / Σw^2 (= count when unweighted) */
} tl_calib_bin;

/* Fill bins[0..n_bins) (caller-owned, n_bins >= 1) and, through the
 * optional pointers, ECE = Σ_b (W_b / W) |rate_b - mean_pred_b| and
 * MCE = max over non-empty bins of |rate_b - mean_pred_b|. No rows: NaN and
 * TL_NOTE_EMPTY; empty bins set TL_NOTE_EMPTY_BINS. */
tl_status tl_metric_calibration_bins(const float *pred, const float *label, const float *weight,
                                     const uint8_t *mask, size_t n, int n_bins,
                                     tl_bin_strategy strategy, tl_metric_ws *ws,
                                     tl_calib_bin *bins, double *ece, double *mce,
                                     unsigned *notes);

/* Calibration slope and intercept: the weighted logistic regression
 *   P(y = 1) = σ(slope · logit(p) + intercept)
 * fitted by Newton/IRLS in double (no regularisation; rows of weight 0
 * play no part). Perfect calibration
 * gives slope 1, intercept 0. One class, separable data or no convergence:
 * both NaN and TL_NOTE_NOT_CONVERGED (TL_NOTE_ONE_CLASS when one class). */
tl_status tl_metric_calibration_slope(const float *pred, const float *label, const float *weight,
                                      const uint8_t *mask, size_t n, double *slope,
                                      double *intercept, unsigned *notes);

/* Field-level calibration error over a categorical field (field[i] = the
 * row's value id): with P_v = Σ w p and Y_v = Σ w y over the rows of value v,
 *   FCE = Σ_v |P_v - Y_v| / Σ_v Y_v
 * i.e. the mean of the relative errors |P_v - Y_v| / Y_v weighted by Y_v
 * (values without positives add their |P_v| to the numerator, so they are
 * not dropped). Σ_v Y_v = 0: NaN and TL_NOTE_NO_POSITIVES. */
tl_status tl_metric_field_calibration(const float *pred, const float *label,
                                      const int32_t *field, const float *weight,
                                      const uint8_t *mask, size_t n, tl_metric_ws *ws,
                                      double *out, unsigned *notes);

/* ---- one-call evaluation of a task -------------------------------------- */

/* Columns and options for the eval functions. Zero-initialise and set what
 * you have; every pointer may be NULL. Strides (0 means 1) let the columns
 * be read straight from row-major n x k blocks (labels n x n_tasks,
 * categorical ids n x n_cat). */
typedef struct {
    const char *task;          /* name used in messages ("task 'ctr': ...") */
    size_t pred_stride, label_stride;
    const float *weight;       /* per-row sample weights */
    const uint8_t *mask;       /* rows to use */
    const float *space;        /* task space: use only rows with space[i*space_stride] == 1
                                  (e.g. CVR over clicked rows); combined with mask */
    size_t space_stride;
    const int32_t *group;      /* GAUC ids (binary only) */
    size_t group_stride;
    const int32_t *field;      /* field-level calibration ids (binary only) */
    size_t field_stride;
    const float *partner;      /* partner task labels for Multi-AUC (binary only) */
    size_t partner_stride;
    const tl_quad *order;      /* Multi-AUC order; NULL = TL_MULTI_AUC_ORDER_A */
    int n_bins;                /* reliability bins; 0 means 10 */
    tl_bin_strategy strategy;
    tl_calib_bin *bins;        /* caller array of n_bins to receive the bins, or NULL */
} tl_eval_opts;

/* Every binary metric of a task. Values that do not apply (no group column,
 * ...) or are undefined are NaN; `notes` says why for the undefined ones. */
typedef struct {
    size_t rows;               /* rows selected */
    double weight;             /* their Σ w */
    double base_rate;          /* Σ w y / Σ w */
    double auc, gauc, multi_auc, logloss, ne;
    double brier, pcoc, ece, mce, slope, intercept, field_ce;
    size_t gauc_groups;        /* groups that entered GAUC */
    double multi_auc_pairs[3];
    unsigned notes;            /* TL_NOTE_* bits */
} tl_binary_eval;

typedef struct {
    size_t rows;
    double weight;
    double mse, rmse, mae;
    double mean_pred, mean_label;
    unsigned notes;
} tl_regression_eval;

/* Evaluate a binary task: pred[i*pred_stride] are probabilities, labels 0/1.
 * Fills *out (the bins too when opts->bins is set). opts may be NULL. On
 * error *out is unspecified and the message starts with the task name. */
tl_status tl_metrics_eval_binary(const float *pred, const float *label, size_t n,
                                 const tl_eval_opts *opts, tl_metric_ws *ws,
                                 tl_binary_eval *out);

/* Evaluate a regression task (any finite pred and label). Uses task, strides,
 * weight, mask and space of opts (which may be NULL). */
tl_status tl_metrics_eval_regression(const float *pred, const float *label, size_t n,
                                     const tl_eval_opts *opts, tl_regression_eval *out);

#endif
