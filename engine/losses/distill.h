/* losses/distill.h — engine-internal: CrossDistil's additions to a model
 * graph: teacher towers, the quadruplet ranking loss, calibrators and the
 * distilled student loss. It attaches to any backbone but ESMM (model.c calls
 * it while building and fitting); not yet behind the hook table (hooks.h),
 * so it still reaches into the model's internals. DML is losses/dml.c. */
#ifndef TL_DISTILL_H
#define TL_DISTILL_H

#include "model.h"
#include "models/model_impl.h"


/* After the task losses exist: teachers, auxiliary and calibration losses
 * (added to m->extra), and the students' distilled objectives
 * (m->objective[k]). h[k] are the tower inputs. */
tl_status tl_distill_build(tl_model *m, const tl_node *h, const tl_node *logit);
/* Before each training step: alpha is 0 during warm-up. */
void tl_distill_step_begin(tl_model *m);
/* At an epoch end: refit calibrators that are fitted outside the graph
 * (isotonic, or calib_data = "valid"). */
tl_status tl_distill_epoch_end(tl_model *m, const tl_split *train, const tl_split *valid);
/* CrossDistil, after each training step (losses/distill.c): every
 * calib_every steps, refit the calibrators fitted outside the graph on at
 * most TL_DISTILL_CALIB_ROWS rows of the calibration split (valid with
 * calib_data = "valid" when given, else train). TL_OK when there is nothing
 * to do; on failure the calibrators are those of the last good fit. */
tl_status tl_distill_step_end(tl_model *m, const tl_split *train, const tl_split *valid);
void tl_distill_free(tl_model *m);
/* Teacher score r of task k -> calibrated probability (no error correction). */
float tl_distill_calibrate(tl_model *m, int k, float r);

#endif
