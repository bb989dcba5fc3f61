/* metrics.c — see metrics.h for the contracts.
 *
 * Everything that ranks sorts items {key, weight, label} with a stable LSD
 * radix sort on the key bytes that vary, so a whole split sorts in a few
 * linear passes and tied keys keep row order (results are deterministic).
 * The key's low 32 bits encode the prediction, the high 32 bits an optional
 * group/field id; the item carries everything the metric needs, so no pass
 * after the sort reads the input columns in random order. */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "metrics_internal.h"

#define DNAN ((double)NAN)

/* ---- notes --------------------------------------------------------------- */

const char *tl_metric_notes_str(unsigned notes)
{
    static _Thread_local char buf[512];
    static const struct { unsigned bit; const char *text; } names[] = {
        {TL_NOTE_ONE_CLASS, "only one class present (AUC undefined, NaN)"},
        {TL_NOTE_EMPTY, "no rows selected or total weight 0 (NaN)"},
        {TL_NOTE_GROUPS_SKIPPED, "GAUC skipped groups with a single class"},
        {TL_NOTE_PAIRS_SKIPPED, "Multi-AUC skipped group pairs with an empty group"},
        {TL_NOTE_NO_POSITIVES, "no positive labels (PCOC / NE / field CE undefined, NaN)"},
        {TL_NOTE_NOT_CONVERGED, "calibration slope fit did not converge (NaN)"},
        {TL_NOTE_EMPTY_BINS, "some reliability bins are empty"},
    };
    size_t len = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        if (!(notes & names[k].bit)) continue;
        int w = snprintf(buf + len, sizeof buf - len, "%s%s", len ? "; " : "", names[k].text);
        if (w < 0 || (size_t)w >= sizeof buf - len) break;
        len += (size_t)w;
    }
    return buf;
}

static void note(unsigned *notes, unsigned bit)
{
    if (notes) *notes |= bit;
}

/* ---- columns ------------------------------------------------------------- */

tl_status tl_metric_check_view(const view *v, int pk, int lk, const char *who)
{
    if (v->n && (!v->pred || !v->label))
        return tl_fail(TL_ERR_ARG, "%s: %s is NULL", who, v->pred ? "label" : "pred");
    for (size_t i = 0; i < v->n; i++) {
        if (v->mask && !v->mask[i]) continue;
        if (v->space) {
            float s = v->space[i * v->ss];
            if (s != 0.0f && s != 1.0f)
                return tl_fail(TL_ERR_ARG, "%s: task-space label at row %zu is %g, expected 0 or 1",
                               who, i, (double)s);
            if (s == 0.0f) continue;
        }
        float p = v_p(v, i);
        if (!isfinite(p))
            return tl_fail(TL_ERR_NUMERIC, "%s: prediction at row %zu is %g", who, i, (double)p);
        if (pk == PRED_PROB && (p < 0.0f || p > 1.0f))
            return tl_fail(TL_ERR_ARG, "%s: prediction at row %zu is %g, expected a probability in [0, 1]",
                           who, i, (double)p);
        float y = v->label[i * v->ls];
        if (lk == LAB_BIN && y != 0.0f && y != 1.0f)
            return tl_fail(TL_ERR_ARG, "%s: label at row %zu is %g, expected 0 or 1", who, i,
                           (double)y);
        if (lk == LAB_UNIT && !(y >= 0.0f && y <= 1.0f))
            return tl_fail(TL_ERR_ARG, "%s: label at row %zu is %g, expected a value in [0, 1]",
                           who, i, (double)y);
        if (lk == LAB_ANY && !isfinite(y))
            return tl_fail(TL_ERR_NUMERIC, "%s: label at row %zu is %g", who, i, (double)y);
        if (v->partner) {
            float b = v->partner[i * v->bs];
            if (b != 0.0f && b != 1.0f)
                return tl_fail(TL_ERR_ARG, "%s: partner label at row %zu is %g, expected 0 or 1",
                               who, i, (double)b);
        }
        if (v->weight && !(v->weight[i] >= 0.0f && isfinite(v->weight[i])))
            return tl_fail(TL_ERR_ARG, "%s: weight at row %zu is %g, expected a finite value >= 0",
                           who, i, (double)v->weight[i]);
    }
    return TL_OK;
}

/* ---- workspace and sorting ------------------------------------------------ */

tl_metric_ws *tl_metric_ws_new(void)
{
    return tl_calloc(1, sizeof(tl_metric_ws), "metrics workspace");
}

void tl_metric_ws_free(tl_metric_ws *ws)
{
    if (!ws) return;
    tl_free(ws->a);
    tl_free(ws->b);
    tl_free(ws->d);
    tl_free(ws->bins);
    tl_free(ws);
}

static tl_status ws_items(tl_metric_ws *ws, size_t n)
{
    if (n <= ws->cap) return TL_OK;
    if (n > SIZE_MAX / sizeof(item) / 2) return tl_fail(TL_ERR_NOMEM, "metrics: %zu rows is too many", n);
    item *a = tl_realloc(ws->a, n * sizeof(item), "metrics sort buffer");
    if (!a) return TL_ERR_NOMEM;
    ws->a = a;
    item *b = tl_realloc(ws->b, n * sizeof(item), "metrics sort buffer");
    if (!b) return TL_ERR_NOMEM;
    ws->b = b;
    ws->cap = n;
    return TL_OK;
}

tl_status tl_metric_ws_doubles(tl_metric_ws *ws, size_t n)
{
    if (n <= ws->dcap) return TL_OK;
    double *d = tl_realloc(ws->d, n * sizeof(double), "metrics scratch");
    if (!d) return TL_ERR_NOMEM;
    ws->d = d;
    ws->dcap = n;
    return TL_OK;
}

static tl_status ws_bins(tl_metric_ws *ws, size_t n)
{
    if (n <= ws->bcap) return TL_OK;
    tl_calib_bin *b = tl_realloc(ws->bins, n * sizeof(tl_calib_bin), "metrics bins");
    if (!b) return TL_ERR_NOMEM;
    ws->bins = b;
    ws->bcap = n;
    return TL_OK;
}

/* Order-preserving map of a float to an unsigned key (+0 and -0 equal). */
static inline uint64_t float_key(float f)
{
    uint32_t u;
    if (f == 0.0f) f = 0.0f;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? (uint64_t)(~u) : (uint64_t)(u | 0x80000000u);
}

static inline uint64_t int_key(int32_t g) { return (uint64_t)((uint32_t)g ^ 0x80000000u); }

/* Stable ascending sort of a[0..n) by key; tmp has room for n. Byte
 * positions where every key agrees cost one counting pass and no move. */
static void radix_sort(item *a, item *tmp, size_t n)
{
    item *src = a, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 8) {
        size_t cnt[256] = {0};
        for (size_t i = 0; i < n; i++) cnt[(src[i].key >> shift) & 255u]++;
        if (n == 0 || cnt[(src[0].key >> shift) & 255u] == n) continue;
        size_t sum = 0;
        for (int b = 0; b < 256; b++) {
            size_t c = cnt[b];
            cnt[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) dst[cnt[(src[i].key >> shift) & 255u]++] = src[i];
        item *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof(item));
}

static inline int quad_of(const view *v, size_t row);

tl_status tl_metric_sort_items(const view *v, tl_metric_ws *ws, int ids, int ys, int positive_w,
                            size_t *m_out)
{
    tl_status st = ws_items(ws, v->n);
    if (st) return st;
    size_t m = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (!v_sel(v, i)) continue;
        float w = v->weight ? v->weight[i] : 1.0f;
        if (positive_w && !(w > 0.0f)) continue;
        uint64_t key = float_key(v_p(v, i));
        if (ids == ID_GROUP) key |= int_key(v->group[i * v->gs]) << 32;
        else if (ids == ID_FIELD) key |= int_key(v->field[i * v->fs]) << 32;
        ws->a[m++] = (item){key, w, ys == Y_QUAD ? (float)quad_of(v, i) : v->label[i * v->ls]};
    }
    radix_sort(ws->a, ws->b, m);
    *m_out = m;
    return TL_OK;
}

static tl_status sort_by_pred(const view *v, tl_metric_ws *ws, size_t *m_out)
{
    return tl_metric_sort_items(v, ws, ID_NONE, Y_LABEL, 0, m_out);
}

/* ---- ranking ------------------------------------------------------------- */

/* Weighted AUC over items a[0..m) sorted by key, ascending (equal keys are
 * tied scores): items with y == hi rank "above", y == lo "below", others are
 * ignored. Sets *wpos and *wneg to the class weights; NaN when one is 0. */
static double auc_sorted(const item *a, size_t m, float hi, float lo, double *wpos, double *wneg)
{
    double below = 0.0, num = 0.0, tp = 0.0;
    size_t i = 0;
    while (i < m) {
        size_t j = i;
        double rp = 0.0, rn = 0.0;
        for (; j < m && a[j].key == a[i].key; j++) {
            if (a[j].y == hi) rp += (double)a[j].w;
            else if (a[j].y == lo) rn += (double)a[j].w;
        }
        num += rp * (below + 0.5 * rn);
        below += rn;
        tp += rp;
        i = j;
    }
    *wpos = tp;
    *wneg = below;
    if (tp <= 0.0 || below <= 0.0) return DNAN;
    return num / (tp * below);
}

static tl_status auc_view(const view *v, tl_metric_ws *ws, double *out, unsigned *notes)
{
    size_t m;
    tl_status st = sort_by_pred(v, ws, &m);
    if (st) return st;
    double wp, wn;
    *out = auc_sorted(ws->a, m, 1.0f, 0.0f, &wp, &wn);
    if (isnan(*out)) note(notes, (wp + wn > 0.0) ? TL_NOTE_ONE_CLASS : TL_NOTE_EMPTY);
    return TL_OK;
}

/* Run `body` with a workspace: the caller's, or a temporary one. */
#define WITH_WS(ws, call)                                                  \
    do {                                                                   \
        tl_metric_ws *own_ = NULL;                                         \
        if (!(ws)) {                                                       \
            own_ = tl_metric_ws_new();                                     \
            if (!own_) return TL_ERR_NOMEM;                                \
        }                                                                  \
        tl_status st_ = call((ws) ? (ws) : own_);                          \
        tl_metric_ws_free(own_);                                           \
        return st_;                                                        \
    } while (0)

tl_status tl_metric_auc(const float *pred, const float *label, const float *weight,
                        const uint8_t *mask, size_t n, tl_metric_ws *ws, double *out,
                        unsigned *notes)
{
    view v = view_simple(pred, label, weight, mask, n);
    *out = DNAN;
    tl_status st = tl_metric_check_view(&v, PRED_SCORE, LAB_BIN, "auc");
    if (st) return st;
#define CALL(w) auc_view(&v, (w), out, notes)
    WITH_WS(ws, CALL);
#undef CALL
}

static tl_status gauc_view(const view *v, tl_metric_ws *ws, double *out, size_t *used_out,
                           unsigned *notes)
{
    size_t m;
    tl_status st = tl_metric_sort_items(v, ws, ID_GROUP, Y_LABEL, 0, &m);
    if (st) return st;
    double num = 0.0, den = 0.0;
    size_t used = 0, skipped = 0;
    size_t i = 0;
    while (i < m) {
        size_t j = i;
        while (j < m && (ws->a[j].key >> 32) == (ws->a[i].key >> 32)) j++;
        double wp, wn;
        double g = auc_sorted(ws->a + i, j - i, 1.0f, 0.0f, &wp, &wn);
        if (isnan(g)) {
            if (wp + wn > 0.0) skipped++;
        } else {
            num += (wp + wn) * g;
            den += wp + wn;
            used++;
        }
        i = j;
    }
    if (used_out) *used_out = used;
    if (skipped) note(notes, TL_NOTE_GROUPS_SKIPPED);
    if (used == 0) {
        *out = DNAN;
        note(notes, m ? TL_NOTE_ONE_CLASS : TL_NOTE_EMPTY);
    } else {
        *out = num / den;
    }
    return TL_OK;
}

tl_status tl_metric_gauc(const float *pred, const float *label, const int32_t *group,
                         const float *weight, const uint8_t *mask, size_t n,
                         tl_metric_ws *ws, double *out, size_t *n_groups_used,
                         unsigned *notes)
{
    view v = view_simple(pred, label, weight, mask, n);
    v.group = group;
    *out = DNAN;
    if (n_groups_used) *n_groups_used = 0;
    if (n && !group) return tl_fail(TL_ERR_ARG, "gauc: group column is NULL");
    tl_status st = tl_metric_check_view(&v, PRED_SCORE, LAB_BIN, "gauc");
    if (st) return st;
#define CALL(w) gauc_view(&v, (w), out, n_groups_used, notes)
    WITH_WS(ws, CALL);
#undef CALL
}

const tl_quad TL_MULTI_AUC_ORDER_A[4] = {TL_QUAD_PP, TL_QUAD_PN, TL_QUAD_NP, TL_QUAD_NN};
const tl_quad TL_MULTI_AUC_ORDER_B[4] = {TL_QUAD_PP, TL_QUAD_NP, TL_QUAD_PN, TL_QUAD_NN};
const tl_quad TL_MULTI_AUC_ORDER_A_NEG[4] = {TL_QUAD_PN, TL_QUAD_PP, TL_QUAD_NN, TL_QUAD_NP};

static inline int quad_of(const view *v, size_t row)
{
    int ya = v_y(v, row) == 1.0, yb = v->partner[row * v->bs] == 1.0f;
    return (ya ? 0 : 2) + (yb ? 0 : 1);
}

static tl_status check_order(const tl_quad order[4], const char *who)
{
    int seen = 0;
    for (int k = 0; k < 4; k++) {
        if ((int)order[k] < 0 || (int)order[k] > 3 || (seen & (1 << order[k])))
            return tl_fail(TL_ERR_ARG, "%s: order must be a permutation of the four groups ++, +-, -+, --",
                           who);
        seen |= 1 << order[k];
    }
    return TL_OK;
}

static tl_status multi_auc_view(const view *v, const tl_quad order[4], tl_metric_ws *ws,
                                double *out, double pair_auc[3], unsigned *notes)
{
    size_t m;
    tl_status st = tl_metric_sort_items(v, ws, ID_NONE, Y_QUAD, 0, &m);
    if (st) return st;
    /* The groups present, in order. An empty group (for nested tasks -+
     * always is) is chained over: its neighbours are compared with each
     * other, as the quadruplet loss does, instead of dropping both pairs. */
    double present[4] = {0.0, 0.0, 0.0, 0.0};
    for (size_t i = 0; i < m; i++) present[(int)ws->a[i].y] += (double)ws->a[i].w;
    int chain[4], nc = 0;
    for (int k = 0; k < 4; k++)
        if (present[order[k]] > 0.0) chain[nc++] = (int)order[k];
    if (nc > 0 && nc < 4) note(notes, TL_NOTE_PAIRS_SKIPPED);
    double sum = 0.0;
    int used = 0;
    if (pair_auc) pair_auc[0] = pair_auc[1] = pair_auc[2] = DNAN;
    for (int k = 0; k + 1 < nc; k++) {
        double wp, wn;
        double a = auc_sorted(ws->a, m, (float)chain[k], (float)chain[k + 1], &wp, &wn);
        if (pair_auc) pair_auc[k] = a;
        sum += a;
        used++;
    }
    if (used) {
        *out = sum / used;
    } else {
        *out = DNAN;
        note(notes, m ? TL_NOTE_ONE_CLASS : TL_NOTE_EMPTY);
    }
    return TL_OK;
}

tl_status tl_metric_multi_auc(const float *pred, const float *label_a, const float *label_b,
                              const tl_quad order[4], const float *weight,
                              const uint8_t *mask, size_t n, tl_metric_ws *ws, double *out,
                              double pair_auc[3], unsigned *notes)
{
    view v = view_simple(pred, label_a, weight, mask, n);
    v.partner = label_b;
    *out = DNAN;
    if (pair_auc) pair_auc[0] = pair_auc[1] = pair_auc[2] = DNAN;
    if (!order) order = TL_MULTI_AUC_ORDER_A;
    tl_status st = check_order(order, "multi_auc");
    if (st) return st;
    if (n && !label_b) return tl_fail(TL_ERR_ARG, "multi_auc: partner label column is NULL");
    st = tl_metric_check_view(&v, PRED_SCORE, LAB_BIN, "multi_auc");
    if (st) return st;
#define CALL(w) multi_auc_view(&v, order, (w), out, pair_auc, notes)
    WITH_WS(ws, CALL);
#undef CALL
}

/* ---- pointwise ------------------------------------------------------------ */

static inline double clip_p(double p)
{
    return p < TL_METRIC_EPS ? TL_METRIC_EPS : p > 1.0 - TL_METRIC_EPS ? 1.0 - TL_METRIC_EPS : p;
}

static inline double bce(double p, double y)
{
    p = clip_p(p);
    return -(y * log(p) + (1.0 - y) * log1p(-p));
}

static void sums_add(tl_metric_sums *s, const view *v, int binary)
{
    for (size_t i = 0; i < v->n; i++) {
        if (!v_sel(v, i)) continue;
        double w = v_w(v, i), p = v_p(v, i), y = v_y(v, i), d = p - y;
        s->rows++;
        s->w += w;
        s->wp += w * p;
        s->wy += w * y;
        s->wse += w * d * d;
        s->wae += w * fabs(d);
        if (binary) s->wll += w * bce(p, y);
    }
}

tl_status tl_metric_sums_add_binary(tl_metric_sums *s, const float *pred, const float *label,
                                    const float *weight, const uint8_t *mask, size_t n)
{
    view v = view_simple(pred, label, weight, mask, n);
    tl_status st = tl_metric_check_view(&v, PRED_PROB, LAB_UNIT, "metric sums");
    if (st) return st;
    sums_add(s, &v, 1);
    return TL_OK;
}

tl_status tl_metric_sums_add_regression(tl_metric_sums *s, const float *pred,
                                        const float *label, const float *weight,
                                        const uint8_t *mask, size_t n)
{
    view v = view_simple(pred, label, weight, mask, n);
    tl_status st = tl_metric_check_view(&v, PRED_ANY, LAB_ANY, "metric sums");
    if (st) return st;
    sums_add(s, &v, 0);
    return TL_OK;
}

double tl_metric_sums_logloss(const tl_metric_sums *s) { return s->w > 0 ? s->wll / s->w : DNAN; }
double tl_metric_sums_mse(const tl_metric_sums *s) { return s->w > 0 ? s->wse / s->w : DNAN; }
double tl_metric_sums_mae(const tl_metric_sums *s) { return s->w > 0 ? s->wae / s->w : DNAN; }
double tl_metric_sums_pcoc(const tl_metric_sums *s) { return s->wy > 0 ? s->wp / s->wy : DNAN; }

double tl_metric_sums_ne(const tl_metric_sums *s)
{
    if (!(s->w > 0)) return DNAN;
    double r = s->wy / s->w;
    if (r <= 0.0 || r >= 1.0) return DNAN;
    double h = -(r * log(r) + (1.0 - r) * log1p(-r));
    return (s->wll / s->w) / h;
}

enum { PT_LOGLOSS, PT_BRIER, PT_MSE, PT_RMSE, PT_MAE };

static tl_status pointwise(int what, const float *pred, const float *label, const float *weight,
                           const uint8_t *mask, size_t n, double *out, unsigned *notes)
{
    static const char *names[] = {"logloss", "brier", "mse", "rmse", "mae"};
    view v = view_simple(pred, label, weight, mask, n);
    int binary = what == PT_LOGLOSS || what == PT_BRIER;
    *out = DNAN;
    tl_status st = tl_metric_check_view(&v, binary ? PRED_PROB : PRED_ANY, binary ? LAB_UNIT : LAB_ANY,
                              names[what]);
    if (st) return st;
    tl_metric_sums s = {0};
    sums_add(&s, &v, binary);
    switch (what) {
    case PT_LOGLOSS: *out = tl_metric_sums_logloss(&s); break;
    case PT_BRIER:
    case PT_MSE: *out = tl_metric_sums_mse(&s); break;
    case PT_RMSE: *out = sqrt(tl_metric_sums_mse(&s)); break;
    default: *out = tl_metric_sums_mae(&s); break;
    }
    if (isnan(*out)) note(notes, TL_NOTE_EMPTY);
    return TL_OK;
}

tl_status tl_metric_logloss(const float *pred, const float *label, const float *weight,
                            const uint8_t *mask, size_t n, double *out, unsigned *notes)
{
    return pointwise(PT_LOGLOSS, pred, label, weight, mask, n, out, notes);
}
tl_status tl_metric_brier(const float *pred, const float *label, const float *weight,
                          const uint8_t *mask, size_t n, double *out, unsigned *notes)
{
    return pointwise(PT_BRIER, pred, label, weight, mask, n, out, notes);
}
tl_status tl_metric_mse(const float *pred, const float *label, const float *weight,
                        const uint8_t *mask, size_t n, double *out, unsigned *notes)
{
    return pointwise(PT_MSE, pred, label, weight, mask, n, out, notes);
}
tl_status tl_metric_rmse(const float *pred, const float *label, const float *weight,
                         const uint8_t *mask, size_t n, double *out, unsigned *notes)
{
    return pointwise(PT_RMSE, pred, label, weight, mask, n, out, notes);
}
tl_status tl_metric_mae(const float *pred, const float *label, const float *weight,
                        const uint8_t *mask, size_t n, double *out, unsigned *notes)
{
    return pointwise(PT_MAE, pred, label, weight, mask, n, out, notes);
}

/* ---- calibration ---------------------------------------------------------- */

#define WILSON_Z 1.959963984540054

/* numpy.percentile(x, q*100) with the default "linear" method, on sorted
 * x[0..m), reproducing numpy's lerp so edges match sklearn bit for bit. */
static double quantile_sorted(const item *a, size_t m, double q)
{
    double vi = q * (double)(m - 1);
    double lo = floor(vi);
    size_t i = (size_t)lo;
    if (i >= m - 1) i = m - 1;
    size_t j = i + 1 < m ? i + 1 : m - 1;
    double t = vi - lo;
    double xa = key_pred(a[i].key), xb = key_pred(a[j].key), d = xb - xa;
    return t >= 0.5 ? xb - d * (1.0 - t) : xa + d * t;
}

/* Bin index for p with inner edges e[1..nb-1] (a value on an edge goes to
 * the lower bin, like numpy.searchsorted(side="left")). */
static int bin_of(double p, const double *edges, int nb)
{
    int lo = 0, hi = nb - 1; /* answer in [0, nb-1]: count of inner edges < p */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (edges[mid + 1] < p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static tl_status bins_view(const view *v, int nb, tl_bin_strategy strategy, tl_metric_ws *ws,
                           tl_calib_bin *bins, double *ece, double *mce, unsigned *notes)
{
    if (ece) *ece = DNAN;
    if (mce) *mce = DNAN;
    tl_status st = tl_metric_ws_doubles(ws, 3 * (size_t)nb + 1);
    if (st) return st;
    double *edges = ws->d, *wsum2 = ws->d + nb + 1, *wyp = ws->d + 2 * nb + 1;
    size_t m = 0;
    if (strategy == TL_BINS_QUANTILE) {
        st = sort_by_pred(v, ws, &m);
        if (st) return st;
        for (int k = 0; k <= nb; k++) {
            /* np.linspace(0, 1, nb+1) * 100 / 100, as sklearn passes it */
            double q = k == nb ? 1.0 : ((double)k * (1.0 / nb)) * 100.0 / 100.0;
            edges[k] = m ? quantile_sorted(ws->a, m, q) : DNAN;
        }
    } else {
        for (int k = 0; k <= nb; k++) edges[k] = k == nb ? 1.0 : (double)k * (1.0 / nb);
    }
    for (int b = 0; b < nb; b++) {
        bins[b] = (tl_calib_bin){.lo = edges[b], .hi = edges[b + 1]};
        wsum2[b] = 0.0;
        wyp[b] = 0.0;
    }
    double wtot = 0.0;
    for (size_t i = 0; i < v->n; i++) {
        if (!v_sel(v, i)) continue;
        double p = v_p(v, i), w = v_w(v, i);
        tl_calib_bin *b = &bins[bin_of(p, edges, nb)];
        b->count++;
        b->weight += w;
        b->mean_pred += w * p;
        b->rate += w * v_y(v, i);
        wsum2[b - bins] += w * w;
        wtot += w;
    }
    double e = 0.0, mx = 0.0;
    int empty = 0;
    for (int k = 0; k < nb; k++) {
        tl_calib_bin *b = &bins[k];
        if (!(b->weight > 0.0)) {
            empty |= b->count == 0;
            b->mean_pred = b->rate = b->ci_lo = b->ci_hi = DNAN;
            continue;
        }
        b->mean_pred /= b->weight;
        b->rate /= b->weight;
        double ne = b->weight * b->weight / wsum2[k], r = b->rate, z2 = WILSON_Z * WILSON_Z;
        double den = 1.0 + z2 / ne;
        double centre = (r + z2 / (2.0 * ne)) / den;
        double half = WILSON_Z / den * sqrt(r * (1.0 - r) / ne + z2 / (4.0 * ne * ne));
        b->ci_lo = fmax(0.0, centre - half);
        b->ci_hi = fmin(1.0, centre + half);
        double gap = fabs(b->rate - b->mean_pred);
        e += b->weight * gap;
        if (gap > mx) mx = gap;
    }
    if (empty) note(notes, TL_NOTE_EMPTY_BINS);
    if (!(wtot > 0.0)) {
        note(notes, TL_NOTE_EMPTY);
        return TL_OK;
    }
    if (ece) *ece = e / wtot;
    if (mce) *mce = mx;
    return TL_OK;
}

tl_status tl_metric_calibration_bins(const float *pred, const float *label, const float *weight,
                                     const uint8_t *mask, size_t n, int n_bins,
                                     tl_bin_strategy strategy, tl_metric_ws *ws,
                                     tl_calib_bin *bins, double *ece, double *mce,
                                     unsigned *notes)
{
    view v = view_simple(pred, label, weight, mask, n);
    if (ece) *ece = DNAN;
    if (mce) *mce = DNAN;
    if (n_bins < 1 || !bins)
        return tl_fail(TL_ERR_ARG, "calibration: need n_bins >= 1 and a bins array (got %d)", n_bins);
    if (strategy != TL_BINS_UNIFORM && strategy != TL_BINS_QUANTILE)
        return tl_fail(TL_ERR_ARG, "calibration: unknown bin strategy %d", (int)strategy);
    tl_status st = tl_metric_check_view(&v, PRED_PROB, LAB_UNIT, "calibration");
    if (st) return st;
#define CALL(w) bins_view(&v, n_bins, strategy, (w), bins, ece, mce, notes)
    WITH_WS(ws, CALL);
#undef CALL
}

static tl_status slope_view(const view *v, tl_metric_ws *ws, double *slope, double *intercept,
                            unsigned *notes)
{
    lrows r;
    *slope = *intercept = DNAN;
    tl_status st = tl_calib_logit_rows(v, ws, 0, &r);
    if (st) return st;
    if (!(r.wpos > 0.0) || !(r.wneg > 0.0)) {
        note(notes, TL_NOTE_NOT_CONVERGED | (r.m ? TL_NOTE_ONE_CLASS : TL_NOTE_EMPTY));
        return TL_OK;
    }
    double a, b;
    if (tl_calib_fit_logistic(&r, 1, &a, &b) != TL_OK) {
        note(notes, TL_NOTE_NOT_CONVERGED);
        return TL_OK;
    }
    *slope = a;
    *intercept = b;
    return TL_OK;
}

tl_status tl_metric_calibration_slope(const float *pred, const float *label, const float *weight,
                                      const uint8_t *mask, size_t n, double *slope,
                                      double *intercept, unsigned *notes)
{
    view v = view_simple(pred, label, weight, mask, n);
    *slope = *intercept = DNAN;
    tl_status st = tl_metric_check_view(&v, PRED_PROB, LAB_UNIT, "calibration slope");
    if (st) return st;
#define CALL(w) slope_view(&v, (w), slope, intercept, notes)
    tl_metric_ws *ws = NULL;
    WITH_WS(ws, CALL);
#undef CALL
}

static tl_status field_view(const view *v, tl_metric_ws *ws, double *out, unsigned *notes)
{
    size_t m;
    tl_status st = tl_metric_sort_items(v, ws, ID_FIELD, Y_LABEL, 0, &m);
    if (st) return st;
    double num = 0.0, ysum = 0.0;
    size_t i = 0;
    while (i < m) {
        double pv = 0.0, yv = 0.0;
        size_t j = i;
        for (; j < m && (ws->a[j].key >> 32) == (ws->a[i].key >> 32); j++) {
            double w = ws->a[j].w;
            pv += w * key_pred(ws->a[j].key);
            yv += w * (double)ws->a[j].y;
        }
        num += fabs(pv - yv);
        ysum += yv;
        i = j;
    }
    if (ysum > 0.0) {
        *out = num / ysum;
    } else {
        *out = DNAN;
        note(notes, m ? TL_NOTE_NO_POSITIVES : TL_NOTE_EMPTY);
    }
    return TL_OK;
}

tl_status tl_metric_field_calibration(const float *pred, const float *label,
                                      const int32_t *field, const float *weight,
                                      const uint8_t *mask, size_t n, tl_metric_ws *ws,
                                      double *out, unsigned *notes)
{
    view v = view_simple(pred, label, weight, mask, n);
    v.field = field;
    *out = DNAN;
    if (n && !field) return tl_fail(TL_ERR_ARG, "field calibration: field column is NULL");
    tl_status st = tl_metric_check_view(&v, PRED_PROB, LAB_UNIT, "field calibration");
    if (st) return st;
#define CALL(w) field_view(&v, (w), out, notes)
    WITH_WS(ws, CALL);
#undef CALL
}

/* ---- one-call evaluation ------------------------------------------------- */

static view view_eval(const float *pred, const float *label, size_t n, const tl_eval_opts *o)
{
    view v = view_simple(pred, label, NULL, NULL, n);
    if (!o) return v;
#define STRIDE(s) ((s) ? (s) : 1)
    v.ps = STRIDE(o->pred_stride);
    v.ls = STRIDE(o->label_stride);
    v.weight = o->weight;
    v.mask = o->mask;
    v.space = o->space;
    v.ss = STRIDE(o->space_stride);
    v.group = o->group;
    v.gs = STRIDE(o->group_stride);
    v.field = o->field;
    v.fs = STRIDE(o->field_stride);
    v.partner = o->partner;
    v.bs = STRIDE(o->partner_stride);
#undef STRIDE
    return v;
}

static tl_status eval_binary_ws(const view *v, const tl_eval_opts *o, tl_metric_ws *ws,
                                tl_binary_eval *out)
{
    unsigned *notes = &out->notes;
    tl_metric_sums s = {0};
    sums_add(&s, v, 1);
    out->rows = s.rows;
    out->weight = s.w;
    out->base_rate = s.w > 0 ? s.wy / s.w : DNAN;
    out->logloss = tl_metric_sums_logloss(&s);
    out->brier = tl_metric_sums_mse(&s);
    out->pcoc = tl_metric_sums_pcoc(&s);
    out->ne = tl_metric_sums_ne(&s);
    if (!(s.w > 0)) note(notes, TL_NOTE_EMPTY);
    else if (!(s.wy > 0)) note(notes, TL_NOTE_NO_POSITIVES);

    tl_status st = auc_view(v, ws, &out->auc, notes);
    if (!st && v->partner)
        st = multi_auc_view(v, o && o->order ? o->order : TL_MULTI_AUC_ORDER_A, ws,
                            &out->multi_auc, out->multi_auc_pairs, notes);
    if (!st && v->group) st = gauc_view(v, ws, &out->gauc, &out->gauc_groups, notes);
    if (!st && v->field) st = field_view(v, ws, &out->field_ce, notes);
    if (st) return st;

    int nb = o && o->n_bins ? o->n_bins : 10;
    tl_calib_bin *bins = o ? o->bins : NULL;
    if (!bins) {
        st = ws_bins(ws, (size_t)nb);
        if (st) return st;
        bins = ws->bins;
    }
    st = bins_view(v, nb, o ? o->strategy : TL_BINS_UNIFORM, ws, bins, &out->ece, &out->mce, notes);
    if (st) return st;
    return slope_view(v, ws, &out->slope, &out->intercept, notes);
}

tl_status tl_metrics_eval_binary(const float *pred, const float *label, size_t n,
                                 const tl_eval_opts *opts, tl_metric_ws *ws,
                                 tl_binary_eval *out)
{
    const char *task = opts && opts->task ? opts->task : "?";
    *out = (tl_binary_eval){0};
    out->base_rate = out->auc = out->gauc = out->multi_auc = out->logloss = out->ne = DNAN;
    out->brier = out->pcoc = out->ece = out->mce = out->slope = out->intercept = DNAN;
    out->field_ce = DNAN;
    out->multi_auc_pairs[0] = out->multi_auc_pairs[1] = out->multi_auc_pairs[2] = DNAN;
    if (opts && opts->n_bins < 0)
        return tl_fail(TL_ERR_ARG, "task '%s': n_bins must be >= 1 (got %d)", task, opts->n_bins);
    if (opts && opts->strategy != TL_BINS_UNIFORM && opts->strategy != TL_BINS_QUANTILE)
        return tl_fail(TL_ERR_ARG, "task '%s': unknown bin strategy %d", task, (int)opts->strategy);
    if (opts && opts->order) {
        tl_status st = check_order(opts->order, "multi_auc");
        if (st) return tl_fail_context(st, "task '%s'", task);
    }
    view v = view_eval(pred, label, n, opts);
    char who[160];
    snprintf(who, sizeof who, "task '%s'", task);
    tl_status st = tl_metric_check_view(&v, PRED_PROB, LAB_BIN, who);
    if (st) return st;
    tl_metric_ws *own = NULL;
    if (!ws) {
        own = tl_metric_ws_new();
        if (!own) return tl_fail_context(TL_ERR_NOMEM, "%s", who);
    }
    st = eval_binary_ws(&v, opts, ws ? ws : own, out);
    tl_metric_ws_free(own);
    if (st) return tl_fail_context(st, "%s", who);
    return TL_OK;
}

tl_status tl_metrics_eval_regression(const float *pred, const float *label, size_t n,
                                     const tl_eval_opts *opts, tl_regression_eval *out)
{
    const char *task = opts && opts->task ? opts->task : "?";
    char who[160];
    snprintf(who, sizeof who, "task '%s'", task);
    *out = (tl_regression_eval){0};
    out->mse = out->rmse = out->mae = out->mean_pred = out->mean_label = DNAN;
    view v = view_eval(pred, label, n, opts);
    v.group = v.field = NULL;
    v.partner = NULL;
    tl_status st = tl_metric_check_view(&v, PRED_ANY, LAB_ANY, who);
    if (st) return st;
    tl_metric_sums s = {0};
    sums_add(&s, &v, 0);
    out->rows = s.rows;
    out->weight = s.w;
    if (!(s.w > 0)) {
        out->notes |= TL_NOTE_EMPTY;
        return TL_OK;
    }
    out->mse = s.wse / s.w;
    out->rmse = sqrt(out->mse);
    out->mae = s.wae / s.w;
    out->mean_pred = s.wp / s.w;
    out->mean_label = s.wy / s.w;
    return TL_OK;
}

