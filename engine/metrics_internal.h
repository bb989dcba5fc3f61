/* metrics_internal.h — what metrics.c and calibrate.c share, for no other
 * file: the column view every metric and fit reads, the workspace's items
 * and scratch, sorting by prediction, and the logistic fit (calibrate.c)
 * behind Platt, temperature and the calibration slope. Includes no header of
 * either module, so that metrics.h may include calibrate.h.
 */
#ifndef TL_METRICS_INTERNAL_H
#define TL_METRICS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core.h"

/* ---- columns (metrics.c) -------------------------------------------------- */

/* All columns a metric may read, with strides; public functions build one. */
typedef struct {
    size_t n;
    const float *pred;
    size_t ps;
    const float *label;
    size_t ls;
    const float *weight;
    const uint8_t *mask;
    const float *space;
    size_t ss;
    const int32_t *group;
    size_t gs;
    const int32_t *field;
    size_t fs;
    const float *partner;
    size_t bs;
} view;

static inline view view_simple(const float *pred, const float *label, const float *weight,
                        const uint8_t *mask, size_t n)
{
    view v = {0};
    v.n = n;
    v.pred = pred;
    v.ps = 1;
    v.label = label;
    v.ls = 1;
    v.weight = weight;
    v.mask = mask;
    v.ss = v.gs = v.fs = v.bs = 1;
    return v;
}

static inline int v_sel(const view *v, size_t i)
{
    return (!v->mask || v->mask[i]) && (!v->space || v->space[i * v->ss] == 1.0f);
}
static inline double v_w(const view *v, size_t i) { return v->weight ? (double)v->weight[i] : 1.0; }
static inline float v_p(const view *v, size_t i) { return v->pred[i * v->ps]; }
static inline double v_y(const view *v, size_t i) { return (double)v->label[i * v->ls]; }

enum { PRED_SCORE, PRED_PROB, PRED_ANY };
enum { LAB_BIN, LAB_UNIT, LAB_ANY };

/* Check the selected rows: finite predictions (in [0,1] for PRED_PROB),
 * labels of the required kind, weights finite and >= 0, task-space and
 * partner labels 0/1, and that the needed columns exist. `who` prefixes
 * the message. */
tl_status tl_metric_check_view(const view *v, int pk, int lk, const char *who);

/* ---- workspace and sorting (metrics.c) ------------------------------------ */

typedef struct tl_metric_ws tl_metric_ws; /* as in metrics.h */

typedef struct {
    uint64_t key; /* (id key << 32) | prediction key */
    float w;      /* sample weight */
    float y;      /* label, or the CrossDistil group (0..3) for Multi-AUC */
} item;

struct tl_metric_ws {
    item *a, *b;     /* items and radix scratch */
    size_t cap;      /* items in each */
    double *d;       /* double scratch (bins, PAV blocks) */
    size_t dcap;
    struct tl_calib_bin *bins; /* metrics.h */
    size_t bcap;
};

/* The workspace's life (declared in metrics.h too, which calibrate.c may not
 * include: metrics.h includes calibrate.h). */
tl_metric_ws *tl_metric_ws_new(void);
void tl_metric_ws_free(tl_metric_ws *ws);
/* Room for n doubles in ws->d. */
tl_status tl_metric_ws_doubles(tl_metric_ws *ws, size_t n);

/* The prediction encoded in the low 32 bits of an item key. */
static inline double key_pred(uint64_t key)
{
    uint32_t k = (uint32_t)key, u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

enum { ID_NONE, ID_GROUP, ID_FIELD };
enum { Y_LABEL, Y_QUAD };

/* Selected rows into ws->a sorted by (id, prediction) ascending. `ids`
 * picks the high key part, `ys` what goes into item.y; positive_w keeps
 * only rows of weight > 0. */
tl_status tl_metric_sort_items(const view *v, tl_metric_ws *ws, int ids, int ys, int positive_w, size_t *m_out);

/* ---- the logistic fit (calibrate.c) --------------------------------------- */

/* The selected rows of weight > 0 as z = logit(p), w, y (doubles in the
 * workspace), computed once so the Newton passes do no logs of their own. */
typedef struct {
    const double *z, *w, *y;
    size_t m;
    double wpos, wneg; /* Σ w y, Σ w (1 - y) */
} lrows;

/* The selected rows of v with weight > 0 into r (doubles in ws->d). raw: the
 * predictions are scores (logits) and enter as they are, without a sigmoid,
 * clip and logit that would tie every score beyond ±16. */
tl_status tl_calib_logit_rows(const view *v, tl_metric_ws *ws, int raw, lrows *r);
/* Newton with step halving for σ(a·z + b) (use_b) or σ(a·z) (b stays 0).
 * Starts at a = 1, b = 0 (the identity map). Returns TL_OK when the Newton
 * step became negligible; TL_ERR_NUMERIC when the Hessian is singular, the
 * parameters run away (separable data) or 100 iterations pass. */
tl_status tl_calib_fit_logistic(const lrows *r, int use_b, double *a_out, double *b_out);

#endif
