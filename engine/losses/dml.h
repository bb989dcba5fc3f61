/* losses/dml.h — Deep Mutual Learning (CTFM + GKD, PAPERS.md §1) as a
 * strategy attached to a model (hooks.h). CTFM replaces the tower inputs
 * with h_k + attention over the tasks' inputs; GKD adds v_k . (a_k * u_k)
 * to task k's logit from the towers' last hidden layers. Both attach to any
 * backbone with towers of one width (model.c checks the configuration). */
#ifndef TL_DML_H
#define TL_DML_H

#include "hooks.h"

typedef struct tl_dml_state tl_dml_state;

extern const tl_hook tl_dml_hook;

/* The concatenated tower inputs CTFM reads (TL_NONE without CTFM): the node
 * whose gradient shows what reaches each tower's input (tests). */
tl_node tl_dml_tower_inputs(const tl_dml_state *d);

#endif
