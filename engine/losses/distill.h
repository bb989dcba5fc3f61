/* losses/distill.h — CrossDistil (Yang et al. AAAI 2022) as a strategy
 * attached to a model (hooks.h): teacher towers, the quadruplet ranking
 * loss, calibrators and the distilled student loss. It attaches to any
 * backbone but ESMM (model.c checks the configuration).
 *
 * Hooks: build (stage TL_BUILD_LOSSES: teachers, auxiliary and calibration
 * losses added to extra, the students' distilled objectives), step_begin
 * (alpha is 0 during warm-up), step_end (every calib_every steps, refit the
 * calibrators fitted outside the graph on at most TL_DISTILL_CALIB_ROWS rows
 * of the calibration split: valid with calib_data = "valid" when given, else
 * train), epoch_end (refit them on every row), free. Its fitted calibrators
 * are saved with the model's (CALB, models/model_io.c). On a failed refit the
 * calibrators are those of the last good fit.
 *
 * The state is declared here so that tests can look inside; only distill.c
 * changes it.
 */
#ifndef TL_DISTILL_H
#define TL_DISTILL_H

#include "hooks.h"
#include "metrics.h"

/* Per task: the map op's context for the calibrated, corrected soft label. */
typedef struct {
    const tl_distill_spec *spec;
    tl_calibrator *cal;            /* fitted outside the graph; NULL until the first fit */
    tl_node cal_a, cal_b;          /* in-graph Platt calibrator parameters */
    int cal_clamped;               /* the last Platt fit had slope <= 0: a = 0 (base rate) */
} tl_distill_task;

typedef struct {
    tl_node teacher[TL_MAX_TASKS], teacher_soft[TL_MAX_TASKS];
    tl_node kd_alpha, kd_keep;     /* alpha and 1 - alpha (0 / 1 during warm-up) */
    tl_distill_task task[TL_MAX_TASKS];
    /* For data parallelism (models/model_fit.c): the losses over rows that
     * a task's row weights weigh (distillation, in-graph Platt, BCE on the
     * teacher), each with its task, whose denominator is the batch's; and
     * the quadruplet losses, which pair rows across the whole batch. */
    tl_node row_loss[3 * TL_MAX_TASKS];
    int row_loss_task[3 * TL_MAX_TASKS], n_row_loss;
    tl_node quad[2 * TL_MAX_TASKS], quad_in[2 * TL_MAX_TASKS][4]; /* scores, labels a, b, weights */
    int n_quad;
} tl_distill_state;

extern const tl_hook tl_distill_hook;

/* Teacher score r of task k -> calibrated probability (no error correction). */
float tl_distill_calibrate(const tl_distill_state *d, const tl_model_view *v, int k, float r);
/* Task k's teacher score node (TL_NONE without a teacher). */
tl_node tl_distill_teacher(const tl_distill_state *d, int k);
/* Task k's calibrator fitted outside the graph (NULL when none), and setting
 * it (taking ownership; the previous one is freed) when loading. */
const tl_calibrator *tl_distill_calibrator(const tl_distill_state *d, int k);
void tl_distill_set_calibrator(tl_distill_state *d, int k, tl_calibrator *c);

#endif
