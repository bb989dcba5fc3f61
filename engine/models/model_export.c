/* models/model_export.c — the exporters' view of a model (model_export.h). */
#include "model_export.h"

#include "model_impl.h"

void tl_model_export_view_get(tl_model *m, tl_model_export_view *v)
{
    v->cfg = &m->cfg;
    v->g = m->g;
    v->ids = m->ids;
    v->num = m->num;
    v->n_bag = m->cfg.n_bag;
    for (int b = 0; b < TL_MAX_BAGS; b++) v->bag_ids[b] = b < m->cfg.n_bag ? m->bag_ids[b] : TL_NONE;
    for (int k = 0; k < TL_MAX_TASKS; k++) v->pred[k] = k < m->cfg.n_tasks ? m->pred[k] : TL_NONE;
    v->steps = m->step;
}
