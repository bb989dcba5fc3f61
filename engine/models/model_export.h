/* models/model_export.h — what the exporters (engine/export/) read of a
 * model: its graph, the input nodes and each task's prediction node. The
 * model's record stays private to models/; this is the one window onto it
 * that serving needs. */
#ifndef TL_MODEL_EXPORT_H
#define TL_MODEL_EXPORT_H

#include "graph.h"
#include "model.h"

typedef struct {
    const tl_model_config *cfg;
    tl_graph *g;
    tl_node ids, num;            /* TL_NONE without categorical / numeric features */
    int n_bag;                   /* multi-valued fields: their id inputs (cfg->bag_len[b] slots) */
    tl_node bag_ids[TL_MAX_BAGS];
    tl_node pred[TL_MAX_TASKS];  /* probability (binary) or value (regression); CrossDistil:
                                    the students; ESMM: pCTR, pCTCVR */
    int64_t steps;               /* training steps taken */
} tl_model_export_view;

/* Fill v from m (never fails for a built model). */
void tl_model_export_view_get(tl_model *m, tl_model_export_view *v);

#endif
