/* losses/distill.h — engine-internal: the two papers' additions to a model
 * graph. DML (CTFM + GKD) changes tower inputs and logits; CrossDistil adds
 * teacher towers, the quadruplet ranking loss, calibrators and the distilled
 * student loss. Both attach to any backbone (model.c calls them while
 * building). */
#ifndef TL_DISTILL_H
#define TL_DISTILL_H

#include "models/model_impl.h"

/* CTFM: h[k] (tower inputs, all of width d) <- h[k] + attention over tasks. */
tl_status tl_dml_build_ctfm(tl_model *m, tl_node *h);
/* GKD: logit[k] += v_k . (a_k * u_k) from the towers' last hidden layers t[k]. */
tl_status tl_dml_build_gkd(tl_model *m, const tl_node *t, tl_node *logit);

/* After the task losses exist: teachers, auxiliary and calibration losses
 * (added to m->extra), and the students' distilled objectives
 * (m->objective[k]). h[k] are the tower inputs. */
tl_status tl_distill_build(tl_model *m, const tl_node *h, const tl_node *logit);
/* Before each training step: alpha is 0 during warm-up. */
void tl_distill_step_begin(tl_model *m);
/* At an epoch end: refit calibrators that are fitted outside the graph
 * (isotonic, or calib_data = "valid"). */
tl_status tl_distill_epoch_end(tl_model *m, const tl_split *train, const tl_split *valid);
void tl_distill_free(tl_model *m);
/* Teacher score r of task k -> calibrated probability (no error correction). */
float tl_distill_calibrate(tl_model *m, int k, float r);

#endif
