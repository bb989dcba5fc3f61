/* calibrate.c — see calibrate.h. Platt and temperature are Newton fits of
 * a logistic map on logit(p) (or raw scores), isotonic is weighted PAV over
 * the rows sorted by prediction (metrics_internal.h: the same view, checks
 * and sort as the metrics). The logistic fit here also serves metrics.c's
 * calibration slope. */
#include "calibrate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "metrics_internal.h"

#define DNAN ((double)NAN)

/* The clip of metrics.c's logloss, before every logit here. */
static inline double clip_p(double p)
{
    return p < TL_METRIC_EPS ? TL_METRIC_EPS : p > 1.0 - TL_METRIC_EPS ? 1.0 - TL_METRIC_EPS : p;
}

/* ---- the logistic fit ----------------------------------------------------- */

static inline double sigmoid(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static inline double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static inline double logit_clip(double p)
{
    p = clip_p(p);
    return log(p) - log1p(-p);
}

tl_status tl_calib_logit_rows(const view *v, tl_metric_ws *ws, int raw, lrows *r)
{
    tl_status st = tl_metric_ws_doubles(ws, 3 * (v->n ? v->n : 1));
    if (st) return st;
    double *z = ws->d, *w = ws->d + v->n, *y = ws->d + 2 * v->n;
    size_t m = 0;
    r->wpos = r->wneg = 0.0;
    for (size_t i = 0; i < v->n; i++) {
        if (!v_sel(v, i) || !(v_w(v, i) > 0.0)) continue;
        z[m] = raw ? (double)v_p(v, i) : logit_clip(v_p(v, i));
        w[m] = v_w(v, i);
        y[m] = v_y(v, i);
        r->wpos += w[m] * y[m];
        r->wneg += w[m] * (1.0 - y[m]);
        m++;
    }
    *r = (lrows){z, w, y, m, r->wpos, r->wneg};
    return TL_OK;
}

/* Weighted BCE of σ(a z + b) against y. */
static double logistic_loss(const lrows *r, double a, double b)
{
    double s = 0.0;
    for (size_t i = 0; i < r->m; i++) {
        double t = a * r->z[i] + b;
        s += r->w[i] * (softplus(t) - r->y[i] * t);
    }
    return s;
}

tl_status tl_calib_fit_logistic(const lrows *r, int use_b, double *a_out, double *b_out)
{
    double a = 1.0, b = 0.0;
    double loss = logistic_loss(r, a, b);
    for (int it = 0; it < 100; it++) {
        double ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
        for (size_t i = 0; i < r->m; i++) {
            double z = r->z[i], q = sigmoid(a * z + b), d = r->w[i] * (q - r->y[i]);
            double h = r->w[i] * q * (1.0 - q);
            ga += d * z;
            gb += d;
            haa += h * z * z;
            hab += h * z;
            hbb += h;
        }
        double da, db = 0.0;
        if (use_b) {
            double det = haa * hbb - hab * hab;
            if (!(det > 1e-300 * (1.0 + haa * hbb))) return TL_ERR_NUMERIC;
            da = (hbb * ga - hab * gb) / det;
            db = (haa * gb - hab * ga) / det;
        } else {
            if (!(haa > 1e-300)) return TL_ERR_NUMERIC;
            da = ga / haa;
        }
        /* Step halving keeps every step a descent step. */
        double t = 1.0, na = a, nb = b, nl = loss;
        for (int h = 0; h < 60; h++) {
            na = a - t * da;
            nb = b - t * db;
            nl = logistic_loss(r, na, nb);
            if (nl <= loss) break;
            t *= 0.5;
        }
        double step = fabs(na - a) + fabs(nb - b);
        a = na;
        b = nb;
        loss = nl;
        if (!isfinite(a) || !isfinite(b) || fabs(a) > 1e6 || fabs(b) > 1e6) return TL_ERR_NUMERIC;
        if (step < 1e-12 * (1.0 + fabs(a) + fabs(b))) {
            *a_out = a;
            *b_out = b;
            return TL_OK;
        }
    }
    return TL_ERR_NUMERIC;
}

/* ---- calibrators ---------------------------------------------------------- */

struct tl_calibrator {
    tl_calib_kind kind;
    float a, b;   /* Platt */
    float t;      /* temperature */
    size_t k;     /* isotonic knots */
    float *x, *y;
};

static const char *const calib_names[] = {"platt", "isotonic", "temperature"};

const char *tl_calib_kind_name(tl_calib_kind k)
{
    return (unsigned)k < 3 ? calib_names[k] : "?";
}

tl_status tl_calib_kind_parse(const char *name, tl_calib_kind *out)
{
    for (int k = 0; k < 3; k++)
        if (name && strcmp(name, calib_names[k]) == 0) {
            *out = (tl_calib_kind)k;
            return TL_OK;
        }
    return tl_fail(TL_ERR_ARG, "unknown calibrator '%s' (expected one of: platt, isotonic, temperature)",
                   name ? name : "(null)");
}

static tl_calibrator *calib_alloc(tl_calib_kind kind, size_t k)
{
    tl_calibrator *c = tl_calloc(1, sizeof *c, "calibrator");
    if (!c) return NULL;
    c->kind = kind;
    c->t = 1.0f;
    c->a = 1.0f;
    if (k) {
        c->x = tl_malloc(k * sizeof(float), "isotonic knots");
        c->y = c->x ? tl_malloc(k * sizeof(float), "isotonic knots") : NULL;
        if (!c->y) {
            tl_calibrator_free(c);
            return NULL;
        }
        c->k = k;
    }
    return c;
}

void tl_calibrator_free(tl_calibrator *c)
{
    if (!c) return;
    tl_free(c->x);
    tl_free(c->y);
    tl_free(c);
}

/* Weighted PAV on the selected rows with weight > 0. */
static tl_status fit_isotonic(const view *v, tl_calibrator **out)
{
    tl_status st;
    tl_metric_ws *ws = tl_metric_ws_new();
    if (!ws) return TL_ERR_NOMEM;
    size_t m;
    st = tl_metric_sort_items(v, ws, ID_NONE, Y_LABEL, 1, &m);
    if (st) goto done;
    if (m == 0) {
        st = tl_fail(TL_ERR_ARG, "isotonic: no rows with positive weight to fit on");
        goto done;
    }
    /* Blocks: sum w, sum w y, first x, last x; a stack in ws->d. */
    st = tl_metric_ws_doubles(ws, 4 * m);
    if (st) goto done;
    double *bw = ws->d, *bwy = ws->d + m, *bx0 = ws->d + 2 * m, *bx1 = ws->d + 3 * m;
    size_t nb = 0;
    size_t i = 0;
    while (i < m) {
        /* pool tied predictions first, as sklearn does */
        double w = 0.0, wy = 0.0, x = key_pred(ws->a[i].key);
        size_t j = i;
        for (; j < m && ws->a[j].key == ws->a[i].key; j++) {
            double wr = ws->a[j].w;
            w += wr;
            wy += wr * (double)ws->a[j].y;
        }
        bw[nb] = w;
        bwy[nb] = wy;
        bx0[nb] = bx1[nb] = x;
        nb++;
        while (nb > 1 && bwy[nb - 2] * bw[nb - 1] >= bwy[nb - 1] * bw[nb - 2]) {
            bw[nb - 2] += bw[nb - 1];
            bwy[nb - 2] += bwy[nb - 1];
            bx1[nb - 2] = bx1[nb - 1];
            nb--;
        }
        i = j;
    }
    size_t k = 0;
    for (size_t b = 0; b < nb; b++) k += bx1[b] > bx0[b] ? 2 : 1;
    tl_calibrator *c = calib_alloc(TL_CALIB_ISOTONIC, k);
    if (!c) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    k = 0;
    for (size_t b = 0; b < nb; b++) {
        float y = (float)(bwy[b] / bw[b]);
        c->x[k] = (float)bx0[b];
        c->y[k++] = y;
        if (bx1[b] > bx0[b]) {
            c->x[k] = (float)bx1[b];
            c->y[k++] = y;
        }
    }
    /* Rounding the block means to float must not break monotonicity. */
    for (size_t q = 1; q < k; q++)
        if (c->y[q] < c->y[q - 1]) c->y[q] = c->y[q - 1];
    *out = c;
done:
    tl_metric_ws_free(ws);
    return st;
}

/* Platt (a, b) or temperature (a = 1/T, b = 0) by Newton on weighted BCE,
 * on logit(pred) or (raw) on pred as scores. With raw, a Platt slope a <= 0
 * is replaced by the best monotone fit, a = 0 and b = logit(mean label)
 * (*clamped = 1): the loss is convex in (a, b), so when its minimum has
 * a < 0 the minimum over a >= 0 lies on a = 0. */
static tl_status fit_parametric(const view *v, tl_calib_kind kind, tl_metric_ws *ws, int raw,
                                double *a, double *b, int *clamped)
{
    const char *who = tl_calib_kind_name(kind);
    lrows r;
    tl_status st = tl_calib_logit_rows(v, ws, raw, &r);
    if (st) return st;
    if (!(r.wpos > 0.0) || !(r.wneg > 0.0))
        return tl_fail(TL_ERR_ARG, "%s: need both classes to fit (positive weight %g, negative weight %g)",
                       who, r.wpos, r.wneg);
    if (kind == TL_CALIB_TEMPERATURE) {
        /* The loss is convex in u = 1/T; a minimum at u > 0 needs a negative
         * slope at u = 0. */
        double g0 = 0.0;
        for (size_t i = 0; i < r.m; i++) g0 += r.w[i] * r.z[i] * (0.5 - r.y[i]);
        if (!(g0 < 0.0))
            return tl_fail(TL_ERR_NUMERIC,
                           "temperature: predictions are not positively related to the labels (no finite T > 0)");
    }
    if (raw && kind == TL_CALIB_PLATT) {
        /* min over b of the loss is convex in a and its slope at a = 0 is
         * dL/da at (0, b0): not negative means the best a >= 0 is 0 (this
         * also covers scores that separate the labels backwards, where the
         * unconstrained fit runs away) */
        double b0 = log(r.wpos) - log(r.wneg), q0 = sigmoid(b0), ga = 0.0;
        for (size_t i = 0; i < r.m; i++) ga += r.w[i] * (q0 - r.y[i]) * r.z[i];
        if (!(ga < 0.0)) {
            *a = 0.0;
            *b = b0;
            *clamped = 1;
            return TL_OK;
        }
    }
    if (tl_calib_fit_logistic(&r, kind == TL_CALIB_PLATT, a, b) != TL_OK)
        return tl_fail(TL_ERR_NUMERIC, "%s: fit did not converge (separable or degenerate data)", who);
    if (raw && kind == TL_CALIB_PLATT && !(*a > 0.0)) {
        *a = 0.0;
        *b = log(r.wpos) - log(r.wneg);
        *clamped = 1;
    }
    if (kind == TL_CALIB_TEMPERATURE && !(*a > 0.0))
        return tl_fail(TL_ERR_NUMERIC, "temperature: fitted 1/T = %g is not positive", *a);
    return TL_OK;
}

static tl_status calibrator_fit(tl_calib_kind kind, int raw, const float *pred, const float *label,
                                const float *weight, const uint8_t *mask, size_t n,
                                tl_calibrator **out, int *clamped)
{
    *out = NULL;
    if ((unsigned)kind > TL_CALIB_TEMPERATURE)
        return tl_fail(TL_ERR_ARG, "calibrator: unknown kind %d", (int)kind);
    view v = view_simple(pred, label, weight, mask, n);
    const char *who = tl_calib_kind_name(kind);
    tl_status st = tl_metric_check_view(&v, raw ? PRED_SCORE : PRED_PROB, LAB_UNIT, who);
    if (st) return st;
    if (kind == TL_CALIB_ISOTONIC) return fit_isotonic(&v, out);
    tl_metric_ws *ws = tl_metric_ws_new();
    if (!ws) return TL_ERR_NOMEM;
    double a, b = 0.0;
    st = fit_parametric(&v, kind, ws, raw, &a, &b, clamped);
    tl_metric_ws_free(ws);
    if (st) return st;
    tl_calibrator *c = calib_alloc(kind, 0);
    if (!c) return TL_ERR_NOMEM;
    if (kind == TL_CALIB_PLATT) {
        c->a = (float)a;
        c->b = (float)b;
    } else {
        c->t = (float)(1.0 / a);
    }
    *out = c;
    return TL_OK;
}

tl_status tl_calibrator_fit(tl_calib_kind kind, const float *pred, const float *label,
                            const float *weight, const uint8_t *mask, size_t n,
                            tl_calibrator **out)
{
    int clamped = 0;
    return calibrator_fit(kind, 0, pred, label, weight, mask, n, out, &clamped);
}

tl_status tl_calibrator_fit_scores(tl_calib_kind kind, const float *score, const float *label,
                                   const float *weight, const uint8_t *mask, size_t n,
                                   tl_calibrator **out, int *clamped)
{
    int c = 0;
    tl_status st = calibrator_fit(kind, 1, score, label, weight, mask, n, out, &c);
    if (clamped) *clamped = c;
    return st;
}

/* The isotonic function at x (knots in the space the calibrator was fitted in). */
static double isotonic_at(const tl_calibrator *c, double p);

double tl_calibrator_apply_score(const tl_calibrator *c, double r)
{
    if (isnan(r)) return DNAN;
    switch (c->kind) {
    case TL_CALIB_PLATT: return sigmoid((double)c->a * r + (double)c->b);
    case TL_CALIB_TEMPERATURE: return sigmoid(r / (double)c->t);
    case TL_CALIB_ISOTONIC: break;
    }
    return isotonic_at(c, r);
}

double tl_calibrator_apply1(const tl_calibrator *c, double p)
{
    if (isnan(p)) return DNAN;
    switch (c->kind) {
    case TL_CALIB_PLATT: return sigmoid((double)c->a * logit_clip(p) + (double)c->b);
    case TL_CALIB_TEMPERATURE: return sigmoid(logit_clip(p) / (double)c->t);
    case TL_CALIB_ISOTONIC: break;
    }
    return isotonic_at(c, p);
}

static double isotonic_at(const tl_calibrator *c, double p)
{
    const float *x = c->x, *y = c->y;
    size_t k = c->k;
    if (p <= (double)x[0]) return y[0];
    if (p >= (double)x[k - 1]) return y[k - 1];
    size_t lo = 0, hi = k - 1; /* x[lo] < p < x[hi] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((double)x[mid] <= p) lo = mid;
        else hi = mid;
    }
    double x0 = x[lo], x1 = x[hi], y0 = y[lo], y1 = y[hi];
    return y0 + (p - x0) * ((y1 - y0) / (x1 - x0));
}

tl_status tl_calibrator_apply(const tl_calibrator *c, const float *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isnan(in[i]))
            return tl_fail(TL_ERR_NUMERIC, "calibrator apply: input %zu is NaN", i);
        out[i] = (float)tl_calibrator_apply1(c, in[i]);
    }
    return TL_OK;
}

tl_calib_kind tl_calibrator_kind(const tl_calibrator *c) { return c->kind; }

void tl_calibrator_platt_params(const tl_calibrator *c, double *a, double *b)
{
    *a = c->a;
    *b = c->b;
}

double tl_calibrator_temperature(const tl_calibrator *c) { return c->t; }

size_t tl_calibrator_knots(const tl_calibrator *c, const float **x, const float **y)
{
    if (x) *x = c->x;
    if (y) *y = c->y;
    return c->k;
}

char *tl_calibrator_describe(const tl_calibrator *c, char *buf, size_t size)
{
    switch (c->kind) {
    case TL_CALIB_PLATT:
        snprintf(buf, size, "platt a=%.6g b=%.6g", (double)c->a, (double)c->b);
        break;
    case TL_CALIB_TEMPERATURE: snprintf(buf, size, "temperature T=%.6g", (double)c->t); break;
    case TL_CALIB_ISOTONIC:
        snprintf(buf, size, "isotonic %zu knots on [%.6g, %.6g] -> [%.6g, %.6g]", c->k,
                 (double)c->x[0], (double)c->x[c->k - 1], (double)c->y[0], (double)c->y[c->k - 1]);
        break;
    }
    return buf;
}

static size_t payload_len(const tl_calibrator *c)
{
    switch (c->kind) {
    case TL_CALIB_PLATT: return 2;
    case TL_CALIB_TEMPERATURE: return 1;
    case TL_CALIB_ISOTONIC: break;
    }
    return 1 + 2 * c->k;
}

size_t tl_calibrator_serial_len(const tl_calibrator *c) { return 3 + payload_len(c); }

tl_status tl_calibrator_serialize(const tl_calibrator *c, float *buf, size_t cap)
{
    size_t len = tl_calibrator_serial_len(c);
    if (cap < len)
        return tl_fail(TL_ERR_ARG, "calibrator serialize: buffer holds %zu floats, need %zu", cap, len);
    if (c->k > (1u << 24))
        return tl_fail(TL_ERR_ARG, "calibrator serialize: %zu knots do not fit a float count", c->k);
    buf[0] = TL_CALIB_SERIAL_VERSION;
    buf[1] = (float)c->kind;
    buf[2] = (float)payload_len(c);
    switch (c->kind) {
    case TL_CALIB_PLATT:
        buf[3] = c->a;
        buf[4] = c->b;
        break;
    case TL_CALIB_TEMPERATURE: buf[3] = c->t; break;
    case TL_CALIB_ISOTONIC:
        buf[3] = (float)c->k;
        memcpy(buf + 4, c->x, c->k * sizeof(float));
        memcpy(buf + 4 + c->k, c->y, c->k * sizeof(float));
        break;
    }
    return TL_OK;
}

tl_status tl_calibrator_deserialize(const float *buf, size_t n, tl_calibrator **out)
{
    *out = NULL;
    if (n < 3 || buf[0] != TL_CALIB_SERIAL_VERSION)
        return tl_fail(TL_ERR_FORMAT, "calibrator: not a version %d calibrator record (%zu floats)",
                       TL_CALIB_SERIAL_VERSION, n);
    if (!(buf[1] == 0.0f || buf[1] == 1.0f || buf[1] == 2.0f))
        return tl_fail(TL_ERR_FORMAT, "calibrator: unknown kind %g", (double)buf[1]);
    tl_calib_kind kind = (tl_calib_kind)(int)buf[1];
    if (!(buf[2] >= 1.0f) || (double)buf[2] != floor((double)buf[2]) ||
        (double)buf[2] > (double)(n - 3))
        return tl_fail(TL_ERR_FORMAT, "calibrator: record length %g does not fit %zu floats",
                       (double)buf[2], n);
    size_t m = (size_t)buf[2];
    for (size_t i = 3; i < 3 + m; i++)
        if (!isfinite(buf[i])) return tl_fail(TL_ERR_FORMAT, "calibrator: value %zu is not finite", i);
    size_t k = 0;
    if (kind == TL_CALIB_ISOTONIC) {
        if (!(buf[3] >= 1.0f) || (double)buf[3] != floor((double)buf[3]) ||
            (double)m != 1.0 + 2.0 * (double)buf[3])
            return tl_fail(TL_ERR_FORMAT, "calibrator: isotonic record of length %zu with %g knots",
                           m, (double)buf[3]);
        k = (size_t)buf[3];
        if (m != 1 + 2 * k)
            return tl_fail(TL_ERR_FORMAT, "calibrator: isotonic record with %zu knots has length %zu", k, m);
        for (size_t i = 1; i < k; i++)
            if (!(buf[4 + i] > buf[3 + i]) || !(buf[4 + k + i] >= buf[3 + k + i]))
                return tl_fail(TL_ERR_FORMAT, "calibrator: isotonic knots not increasing at %zu", i);
    } else if (m != (kind == TL_CALIB_PLATT ? 2u : 1u)) {
        return tl_fail(TL_ERR_FORMAT, "calibrator: %s record has length %zu", calib_names[kind], m);
    } else if (kind == TL_CALIB_TEMPERATURE && !(buf[3] > 0.0f)) {
        return tl_fail(TL_ERR_FORMAT, "calibrator: temperature %g is not positive", (double)buf[3]);
    }
    tl_calibrator *c = calib_alloc(kind, k);
    if (!c) return TL_ERR_NOMEM;
    if (kind == TL_CALIB_PLATT) {
        c->a = buf[3];
        c->b = buf[4];
    } else if (kind == TL_CALIB_TEMPERATURE) {
        c->t = buf[3];
    } else {
        memcpy(c->x, buf + 4, k * sizeof(float));
        memcpy(c->y, buf + 4 + k, k * sizeof(float));
    }
    *out = c;
    return TL_OK;
}
