/* diagnose.h — looking inside multi-task training: gate and expert
 * utilisation of mixture-of-experts backbones and a label-leakage check of a
 * dataset's features, through the model's public interface (model.h). The
 * per-task gradient diagnostics are a strategy of the model's (task_grads.h,
 * included here for its record).
 *
 * Gates are found by name: tl_build_gate names each gate's softmax node like
 * its parameters' prefix ("gate<k>" for MMoE and DSelect-k, "gate" for OMoE,
 * "ple<l>.gate<k>", "stem<l>.gate<k>", "adatt<l>.gate<k>" for PLE, STEM and
 * AdaTT). All functions leave the model's parameters,
 * optimizer state and dropout RNG as they found them.
 */
#ifndef TL_DIAGNOSE_H
#define TL_DIAGNOSE_H

#include "model.h"
#include "task_grads.h"

/* ---- gates ------------------------------------------------------------------ */

/* The backbones with gates, for messages. */
#define TL_DIAGNOSE_GATED "omoe, mmoe, ple, dselect_k, stem and adatt"

/* Columns of the gate matrix: E experts for MMoE/OMoE/DSelect-k; for PLE,
 * STEM and AdaTT the level's K*P task-specific experts (task k's in columns
 * k*P..) followed by its S shared experts. 0 when the backbone has no gates
 * (shared_bottom, cross_stitch, esmm, aitm). `level` is 1-based; 0 = the
 * last level (ignored without levels). */
int tl_diagnose_gate_experts(const tl_model *m, int level);

typedef struct {
    int level;     /* PLE/STEM/AdaTT level, 1-based; 0 = the last one */
    int field;     /* categorical field to break the means down by; -1 = none */
} tl_gate_opts;

/* Run the model forward (evaluation mode) over every row of s and average the
 * gate softmax of each task: weights[k*E + e] = mean over rows of task k's
 * gate weight on expert e (E = tl_diagnose_gate_experts; a PLE task puts 0 on
 * other tasks' specific experts, a STEM or AdaTT task weighs them all; OMoE's
 * one gate is every task's gate; DSelect-k's is its selectors' mixture), so
 * each task's row sums to 1. entropy[k] = mean over rows of -sum_e g log g
 * (nats). With o->field >= 0, by_field (vocab[field] x n_tasks x E) and
 * count (vocab[field]) receive the same means per id of that field (0 and
 * count 0 for ids absent from s). All output buffers are the caller's; by_field
 * and count may be NULL when o->field < 0. Fails with TL_ERR_ARG when the
 * backbone has no gates or the level/field is out of range. */
tl_status tl_diagnose_gates(tl_model *m, const tl_split *s, const tl_gate_opts *o, double *weights,
                            double *entropy, double *by_field, double *count);

/* Collapse check after training, on s (a validation split): experts whose
 * mean gate weight (over the first 65536 rows of s) is below 1% for every
 * task (0.1/E with E > 10 experts, where a uniform gate is already below
 * 1%), and (MMoE/OMoE) pairs of
 * experts whose outputs over one batch of s (at most the model's batch rows)
 * have cosine similarity > 0.99. Writes one line describing what was found
 * into msg ("" when nothing, when the backbone has no gates, or for DSelect-k,
 * whose gates leave experts unused by design); returns
 * TL_OK unless a forward run fails. */
tl_status tl_diagnose_collapse(tl_model *m, const tl_split *s, char *msg, size_t cap);

/* Per-task gradients, their norms and conflicts: task_grads.h (fit's
 * diagnostics=N, tl_model_task_gradient, tl_model_history_diagnostics). */

/* ---- label leakage ------------------------------------------------------------- */

typedef struct {
    int task;
    int numeric;          /* 0: categorical field `field`; 1: numeric column `field` */
    int field;
    const char *feature;  /* the feature's name (owned by the dataset) */
    double auc;           /* single-feature AUC, max(AUC, 1 - AUC); NaN when undefined */
    int source;           /* the feature is the task's label source column */
    int leak;             /* source, or auc > the threshold */
} tl_leak_row;

/* Single-feature AUC of every feature for every binary task on split s (the
 * training split). Numeric features score by their value; a categorical
 * field scores a row by its id's label rate, cross-fitted on two halves of s
 * (rows of even index are scored by the rates of the odd ones and the other
 * way round, shrunk towards the overall rate by 10 pseudo-rows) so that an
 * id column with one row per id does not look predictive. label_columns (may
 * be NULL, or hold NULL entries) gives each task's source column name: a
 * feature of that name is flagged as source. Rows come grouped by task, then
 * by AUC descending; *out is allocated (tl_diagnose_leakage_free). Regression
 * tasks are skipped. Splits above 100000 rows are subsampled by a stride. */
tl_status tl_diagnose_leakage(const tl_dataset *d, const tl_split *s,
                              const char *const *label_columns, double threshold,
                              tl_leak_row **out, size_t *n);
void tl_diagnose_leakage_free(tl_leak_row *rows);

#endif
