/* export/onnx.c — the ONNX writer: one emitter per lowered op kind.
 *
 * Field numbers are those of onnx/onnx.proto (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto, ValueInfoProto, TypeProto). Every
 * lowered node i produces the value "v<i>" (the graph inputs keep their
 * names); the emitters add temporaries "t<j>" and constants "c<j>". */
#include "onnx.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/bag.h"

/* TensorProto.DataType */
enum { DT_FLOAT = 1, DT_INT32 = 6, DT_INT64 = 7, DT_BOOL = 9, DT_DOUBLE = 11 };
/* AttributeProto.AttributeType */
enum { AT_FLOAT = 1, AT_INT = 2, AT_INTS = 7 };

typedef struct {
    tl_pb nodes, inits;
    int tmp;
    int opset;
    const tl_xgraph *x;
} writer;

typedef struct {
    char s[TL_X_BAG_NAME_MAX + 8]; /* "bag.<field>" (lower.c limits the field's name) */
} name;

/* Multi-valued field b's input. */
static name bag_input(const tl_xgraph *x, int b)
{
    name r;
    snprintf(r.s, sizeof r.s, "bag.%s", x->bag_name[b]);
    return r;
}

static name vname(const writer *w, int i)
{
    name r;
    if (w->x->nodes[i].op == TL_X_IDS)
        snprintf(r.s, sizeof r.s, "ids");
    else if (w->x->nodes[i].op == TL_X_BAG_IDS)
        r = bag_input(w->x, w->x->nodes[i].k);
    else
        snprintf(r.s, sizeof r.s, "v%d", i);
    return r;
}

static name fresh(writer *w, char c)
{
    name r;
    snprintf(r.s, sizeof r.s, "%c%d", c, w->tmp++);
    return r;
}

/* ---- attributes and nodes ---------------------------------------------- */

typedef struct {
    tl_pb a[3];
    int n;
} attrs;

static void attr_int(attrs *at, const char *nm, int64_t v)
{
    tl_pb *b = &at->a[at->n++];
    tl_pb_str(b, 1, nm);
    tl_pb_int(b, 3, v);
    tl_pb_int(b, 20, AT_INT);
}

static void attr_ints(attrs *at, const char *nm, const int64_t *v, int n)
{
    tl_pb *b = &at->a[at->n++];
    tl_pb_str(b, 1, nm);
    for (int i = 0; i < n; i++) tl_pb_int(b, 8, v[i]);
    tl_pb_int(b, 20, AT_INTS);
}

/* A node op(in...) -> out, taking the attributes (freed). */
static void node(writer *w, const char *op, const char *const *in, int nin, const char *out,
                 attrs *at)
{
    tl_pb n = {0};
    for (int i = 0; i < nin; i++) tl_pb_str(&n, 1, in[i]);
    tl_pb_str(&n, 2, out);
    tl_pb_str(&n, 4, op);
    for (int i = 0; at && i < at->n; i++) {
        tl_pb_msg(&n, 5, &at->a[i]);
        tl_pb_free(&at->a[i]);
    }
    tl_pb_msg(&w->nodes, 1, &n);
    tl_pb_free(&n);
}

static name op1(writer *w, const char *op, const char *a, attrs *at)
{
    name o = fresh(w, 't');
    node(w, op, &a, 1, o.s, at);
    return o;
}

static name op2(writer *w, const char *op, const char *a, const char *b)
{
    name o = fresh(w, 't');
    const char *in[2] = {a, b};
    node(w, op, in, 2, o.s, NULL);
    return o;
}

/* ---- constants ---------------------------------------------------------- */

static void tensor_head(tl_pb *t, const char *nm, const int64_t *dims, int nd, int dt)
{
    for (int i = 0; i < nd; i++) tl_pb_int(t, 1, dims[i]);
    tl_pb_int(t, 2, dt);
    tl_pb_str(t, 8, nm);
}

/* raw_data is little-endian; so is every machine this builds on (checked). */
static void init_raw(writer *w, const char *nm, const int64_t *dims, int nd, int dt,
                     const void *data, size_t bytes)
{
    tl_pb t = {0};
    tensor_head(&t, nm, dims, nd, dt);
    tl_pb_lenbytes(&t, 9, data, bytes);
    tl_pb_msg(&w->inits, 5, &t);
    tl_pb_free(&t);
}

static size_t count(const int64_t *dims, int nd)
{
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)dims[i];
    return n;
}

static name cfloat(writer *w, const int64_t *dims, int nd, const float *v)
{
    name c = fresh(w, 'c');
    init_raw(w, c.s, dims, nd, DT_FLOAT, v, count(dims, nd) * sizeof(float));
    return c;
}

static name cdouble(writer *w, const int64_t *dims, int nd, const double *v)
{
    name c = fresh(w, 'c');
    init_raw(w, c.s, dims, nd, DT_DOUBLE, v, count(dims, nd) * sizeof(double));
    return c;
}

static name cint64(writer *w, const int64_t *dims, int nd, const int64_t *v)
{
    name c = fresh(w, 'c');
    init_raw(w, c.s, dims, nd, DT_INT64, v, count(dims, nd) * sizeof(int64_t));
    return c;
}

static name cbool(writer *w, const int64_t *dims, int nd, const uint8_t *v)
{
    name c = fresh(w, 'c');
    init_raw(w, c.s, dims, nd, DT_BOOL, v, count(dims, nd));
    return c;
}

static name cints(writer *w, int n, const int64_t *v)
{
    int64_t d = n;
    return cint64(w, &d, 1, v);
}

static name cscalar(writer *w, float v) { return cfloat(w, NULL, 0, &v); }
static name cscalard(writer *w, double v) { return cdouble(w, NULL, 0, &v); }

/* Reshape a to [0 (the batch), d1 (, d2)]. */
static name reshape(writer *w, const char *a, int64_t d1, int64_t d2)
{
    int64_t s[3] = {0, d1, d2};
    name sh = cints(w, d2 ? 3 : 2, s);
    return op2(w, "Reshape", a, sh.s);
}

static name transpose(writer *w, const char *a, int64_t p0, int64_t p1, int64_t p2)
{
    attrs at = {0};
    int64_t perm[3] = {p0, p1, p2};
    attr_ints(&at, "perm", perm, 3);
    return op1(w, "Transpose", a, &at);
}

/* act(a); act is not TL_ACT_NONE. */
static name activation(writer *w, const char *a, tl_act act)
{
    static const char *const ops[] = {NULL, "Relu", "Sigmoid", "Tanh"};
    return op1(w, ops[act], a, NULL);
}

/* out = act(a) written into the node's value name (Identity when no act). */
static void finish(writer *w, int i, const char *a, tl_act act)
{
    name out = vname(w, i);
    static const char *const ops[] = {"Identity", "Relu", "Sigmoid", "Tanh"};
    node(w, ops[act], &a, 1, out.s, NULL);
}

/* ---- emitters ----------------------------------------------------------- */

static void emit_numeric(writer *w, int i)
{
    const tl_xgraph *x = w->x;
    int nn = x->n_num;
    int64_t row[2] = {1, nn};
    int64_t *src = tl_malloc((size_t)nn * sizeof *src, "ONNX numeric");
    float *mu = tl_malloc((size_t)nn * 3 * sizeof *mu, "ONNX numeric");
    uint8_t *mask = tl_malloc((size_t)nn * 2, "ONNX numeric");
    if (!src || !mu || !mask) {
        w->nodes.oom = 1;
        goto done;
    }
    float *sub = mu + nn, *mul = mu + 2 * nn;
    uint8_t *logm = mask, *flagm = mask + nn;
    for (int j = 0; j < nn; j++) {
        const tl_xnum *c = &x->num[j];
        int flag = c->kind == TL_X_NUM_FLAG;
        src[j] = c->src;
        mu[j] = flag ? 0.0f : c->mu;
        int std = !flag && c->transform == TL_NUM_STANDARD;
        sub[j] = std ? c->mu : 0.0f;
        mul[j] = std ? c->inv : 1.0f;
        logm[j] = !flag && c->transform == TL_NUM_LOG1P;
        flagm[j] = (uint8_t)flag;
    }
    attrs at = {0};
    attr_int(&at, "axis", 1);
    name idx = cints(w, nn, src);
    const char *gin[2] = {"numeric", idx.s};
    name xs = fresh(w, 't');
    node(w, "Gather", gin, 2, xs.s, &at);
    name isn = op1(w, "IsNaN", xs.s, NULL);
    name one = cscalar(w, 1.0f);
    name lg = op2(w, "Mul", op1(w, "Sign", xs.s, NULL).s,
                  op1(w, "Log", op2(w, "Add", op1(w, "Abs", xs.s, NULL).s, one.s).s, NULL).s);
    name lm = cbool(w, row, 2, logm);
    const char *w1[3] = {lm.s, lg.s, xs.s};
    name t = fresh(w, 't');
    node(w, "Where", w1, 3, t.s, NULL);
    name fill = cfloat(w, row, 2, mu);
    const char *w2[3] = {isn.s, fill.s, t.s};
    name t2 = fresh(w, 't');
    node(w, "Where", w2, 3, t2.s, NULL);
    name y = op2(w, "Mul", op2(w, "Sub", t2.s, cfloat(w, row, 2, sub).s).s, cfloat(w, row, 2, mul).s);
    attrs cast = {0};
    attr_int(&cast, "to", DT_FLOAT);
    name fl = op1(w, "Cast", isn.s, &cast);
    name fm = cbool(w, row, 2, flagm);
    const char *w3[3] = {fm.s, fl.s, y.s};
    node(w, "Where", w3, 3, vname(w, i).s, NULL);
done:
    tl_free(src);
    tl_free(mu);
    tl_free(mask);
}

/* The fields' tables are one table: field f's id i is row offsets[f] + i.
 * An id outside 0 .. size_f - 1 would read another field's rows (or fail in
 * the runtime), so it becomes the field's id 0 (unseen value) first. */
static void emit_embedding(writer *w, int i, const tl_xnode *n)
{
    const tl_xnode *ids = &w->x->nodes[n->in[1]], *tab = &w->x->nodes[n->in[0]];
    int F = ids->cols, dim = tab->cols;
    int32_t offs[TL_MAX_FIELDS], size[TL_MAX_FIELDS], zero = 0;
    for (int f = 0; f < F; f++) offs[f] = (int32_t)n->offsets[f];
    for (int f = 0; f < F; f++) size[f] = (f + 1 < F ? offs[f + 1] : tab->rows) - offs[f];
    int64_t dims[2] = {1, F}, one[2] = {1, 1};
    name c = fresh(w, 'c'), sz = fresh(w, 'c'), z = fresh(w, 'c');
    init_raw(w, c.s, dims, 2, DT_INT32, offs, (size_t)F * sizeof *offs);
    init_raw(w, sz.s, dims, 2, DT_INT32, size, (size_t)F * sizeof *size);
    init_raw(w, z.s, one, 2, DT_INT32, &zero, sizeof zero);
    name in = vname(w, n->in[1]);
    name ge = op2(w, "GreaterOrEqual", in.s, z.s), lt = op2(w, "Less", in.s, sz.s);
    name ok = op2(w, "And", ge.s, lt.s);
    const char *sel[3] = {ok.s, in.s, z.s};
    name safe = fresh(w, 't');
    node(w, "Where", sel, 3, safe.s, NULL);
    name idx = op2(w, "Add", safe.s, c.s);
    name g = op2(w, "Gather", vname(w, n->in[0]).s, idx.s);
    finish(w, i, reshape(w, g.s, (int64_t)F * dim, 0).s, TL_ACT_NONE);
}

static name cint32(writer *w, int32_t v)
{
    int64_t one[2] = {1, 1};
    name c = fresh(w, 'c');
    init_raw(w, c.s, one, 2, DT_INT32, &v, sizeof v);
    return c;
}

/* ops/bag.c's pooling. ids [N, L] int32: -1 is an empty slot; any other id
 * outside 0 .. V - 1 becomes id 0 (the unseen value, or bucket 0), as for the
 * single-valued fields (emit_embedding). Rows of the table [N, L, D] are
 * masked by the slots present: sum (ReduceSum over L), mean (that sum times
 * 1 / max(count, 1), the engine's 1 / count), max (ReduceMax over L with the
 * empty slots at -inf, then 0 for a row with no id, as the engine gives). */
static void emit_embedding_bag(writer *w, int i, const tl_xnode *n)
{
    int32_t V = n->vocab[0];
    name in = vname(w, n->in[1]), tab = vname(w, n->in[0]);
    name zero = cint32(w, 0), size = cint32(w, V), pad = cint32(w, -1);
    name present = op1(w, "Not", op2(w, "Equal", in.s, pad.s).s, NULL);
    name ok = op2(w, "And", op2(w, "GreaterOrEqual", in.s, zero.s).s, op2(w, "Less", in.s, size.s).s);
    const char *sel[3] = {ok.s, in.s, zero.s};
    name safe = fresh(w, 't');
    node(w, "Where", sel, 3, safe.s, NULL);
    name g = op2(w, "Gather", tab.s, safe.s); /* [N, L, D] */
    int64_t ax1 = 1, ax2 = 2;
    attrs cf = {0};
    attr_int(&cf, "to", DT_FLOAT);
    name maskf = op1(w, "Cast", present.s, &cf); /* [N, L] */
    name cnt = fresh(w, 't');                      /* [N, 1] */
    {
        attrs kd = {0};
        attr_int(&kd, "keepdims", 1);
        const char *rin[2] = {maskf.s, cints(w, 1, &ax1).s};
        node(w, "ReduceSum", rin, 2, cnt.s, &kd);
    }
    name out;
    if (n->start == TL_BAG_MAX) {
        name p3 = op2(w, "Unsqueeze", present.s, cints(w, 1, &ax2).s);
        const char *win[3] = {p3.s, g.s, cscalar(w, -INFINITY).s};
        name masked = fresh(w, 't');
        node(w, "Where", win, 3, masked.s, NULL);
        attrs at = {0};
        attr_ints(&at, "axes", &ax1, 1);
        attr_int(&at, "keepdims", 0);
        name mx = op1(w, "ReduceMax", masked.s, &at);
        name has = op2(w, "Greater", cnt.s, cscalar(w, 0.0f).s);
        const char *hin[3] = {has.s, mx.s, cscalar(w, 0.0f).s};
        out = fresh(w, 't');
        node(w, "Where", hin, 3, out.s, NULL);
    } else {
        name m3 = op2(w, "Unsqueeze", maskf.s, cints(w, 1, &ax2).s);
        attrs kd = {0};
        attr_int(&kd, "keepdims", 0);
        const char *rin[2] = {op2(w, "Mul", g.s, m3.s).s, cints(w, 1, &ax1).s};
        out = fresh(w, 't');
        node(w, "ReduceSum", rin, 2, out.s, &kd);
        if (n->start == TL_BAG_MEAN) {
            name one = cscalar(w, 1.0f);
            name inv = op2(w, "Div", one.s, op2(w, "Max", cnt.s, one.s).s);
            out = op2(w, "Mul", out.s, inv.s);
        }
    }
    finish(w, i, out.s, TL_ACT_NONE);
}

static void emit_linear(writer *w, int i, const tl_xnode *n)
{
    name x = vname(w, n->in[0]), W = vname(w, n->in[1]);
    name y;
    if (n->nin == 3) {
        name bias = vname(w, n->in[2]);
        const char *in[3] = {x.s, W.s, bias.s};
        y = fresh(w, 't');
        node(w, "Gemm", in, 3, y.s, NULL);
    } else {
        y = op2(w, "MatMul", x.s, W.s);
    }
    finish(w, i, y.s, n->act);
}

/* grouped: x [N, G*k] -> [G, N, k] x W [G, k, m] -> [N, G*m]. */
static void emit_grouped(writer *w, int i, const tl_xnode *n)
{
    const tl_xnode *xn = &w->x->nodes[n->in[0]];
    int G = n->k, k = xn->cols / G, m = n->cols / G;
    name x3 = transpose(w, reshape(w, vname(w, n->in[0]).s, G, k).s, 1, 0, 2);
    int64_t s[3] = {G, k, m};
    name W3 = op2(w, "Reshape", vname(w, n->in[1]).s, cints(w, 3, s).s);
    name y = transpose(w, op2(w, "MatMul", x3.s, W3.s).s, 1, 0, 2);
    y = reshape(w, y.s, (int64_t)G * m, 0);
    if (n->nin == 3) y = op2(w, "Add", y.s, vname(w, n->in[2]).s);
    finish(w, i, y.s, n->act);
}

/* token: x [N, T*k] -> [N, T, k] x W [k, m] (+ b) -> [N, T*m]. */
static void emit_token_linear(writer *w, int i, const tl_xnode *n)
{
    const tl_xnode *xn = &w->x->nodes[n->in[0]];
    int T = n->k, k = xn->cols / T, m = n->cols / T;
    name y = op2(w, "MatMul", reshape(w, vname(w, n->in[0]).s, T, k).s, vname(w, n->in[1]).s);
    if (n->nin == 3) y = op2(w, "Add", y.s, vname(w, n->in[2]).s);
    if (n->act != TL_ACT_NONE) y = activation(w, y.s, n->act);
    finish(w, i, reshape(w, y.s, (int64_t)T * m, 0).s, TL_ACT_NONE);
}

/* gate_mix: experts stacked [N, K, d] weighted by gate [N, K, 1], summed over K. */
static void emit_gate_mix(writer *w, int i, const tl_xnode *n)
{
    int d = n->cols, nb = n->nin - 1;
    name parts[TL_X_MAX_IN];
    for (int b = 0; b < nb; b++) {
        const tl_xnode *src = &w->x->nodes[n->in[1 + b]];
        int first = n->blocks[2 * b], cnt = n->blocks[2 * b + 1];
        name s = vname(w, n->in[1 + b]);
        if (first != 0 || cnt * d != src->cols) {
            int64_t st = (int64_t)first * d, en = (int64_t)(first + cnt) * d, ax = 1;
            name c1 = cints(w, 1, &st), c2 = cints(w, 1, &en), c3 = cints(w, 1, &ax);
            const char *in[4] = {s.s, c1.s, c2.s, c3.s};
            name sl = fresh(w, 't');
            node(w, "Slice", in, 4, sl.s, NULL);
            s = sl;
        }
        parts[b] = reshape(w, s.s, cnt, d);
    }
    name e = parts[0];
    if (nb > 1) {
        const char *in[TL_X_MAX_IN];
        for (int b = 0; b < nb; b++) in[b] = parts[b].s;
        attrs at = {0};
        attr_int(&at, "axis", 1);
        e = fresh(w, 't');
        node(w, "Concat", in, nb, e.s, &at);
    }
    int64_t two = 2, one = 1;
    name g3 = op2(w, "Unsqueeze", vname(w, n->in[0]).s, cints(w, 1, &two).s);
    name p = op2(w, "Mul", e.s, g3.s);
    attrs at = {0};
    attr_int(&at, "keepdims", 0);
    name ax = cints(w, 1, &one);
    const char *in[2] = {p.s, ax.s};
    node(w, "ReduceSum", in, 2, vname(w, i).s, &at);
}

static void emit_attention(writer *w, int i, const tl_xnode *n)
{
    int T = n->k, d = n->cols / T;
    name q = reshape(w, vname(w, n->in[0]).s, T, d), k = reshape(w, vname(w, n->in[1]).s, T, d);
    name v = reshape(w, vname(w, n->in[2]).s, T, d);
    name s = op2(w, "MatMul", q.s, transpose(w, k.s, 0, 2, 1).s);
    s = op2(w, "Mul", s.s, cscalar(w, 1.0f / sqrtf((float)d)).s);
    attrs at = {0};
    attr_int(&at, "axis", -1);
    name a = op1(w, "Softmax", s.s, &at);
    finish(w, i, reshape(w, op2(w, "MatMul", a.s, v.s).s, (int64_t)T * d, 0).s, TL_ACT_NONE);
}

/* Calibrators in double, as tl_calibrator_apply1 computes them. */
static void emit_calibrate(writer *w, int i, const tl_xnode *n)
{
    attrs at = {0};
    attr_int(&at, "to", DT_DOUBLE);
    name p = op1(w, "Cast", vname(w, n->in[0]).s, &at);
    name y;
    tl_calib_kind kind = tl_calibrator_kind(n->cal);
    if (kind != TL_CALIB_ISOTONIC) {
        name c = op2(w, "Max", op2(w, "Min", p.s, cscalard(w, 1.0 - TL_METRIC_EPS).s).s,
                     cscalard(w, TL_METRIC_EPS).s);
        name lg = op2(w, "Sub", op1(w, "Log", c.s, NULL).s,
                      op1(w, "Log", op2(w, "Sub", cscalard(w, 1.0).s, c.s).s, NULL).s);
        name z;
        if (kind == TL_CALIB_PLATT) {
            double a, b;
            tl_calibrator_platt_params(n->cal, &a, &b);
            z = op2(w, "Add", op2(w, "Mul", lg.s, cscalard(w, a).s).s, cscalard(w, b).s);
        } else {
            z = op2(w, "Div", lg.s, cscalard(w, tl_calibrator_temperature(n->cal)).s);
        }
        y = op1(w, "Sigmoid", z.s, NULL);
    } else {
        const float *kx, *ky;
        size_t k = tl_calibrator_knots(n->cal, &kx, &ky);
        double *X = tl_malloc(k * 3 * sizeof *X, "ONNX isotonic");
        if (!X) {
            w->nodes.oom = 1;
            return;
        }
        double *Y = X + k, *S = X + 2 * k;
        for (size_t j = 0; j < k; j++) {
            X[j] = kx[j];
            Y[j] = ky[j];
            S[j] = j + 1 < k ? ((double)ky[j + 1] - (double)ky[j]) / ((double)kx[j + 1] - (double)kx[j]) : 0.0;
        }
        int64_t kk = (int64_t)k, row[2] = {1, kk};
        name pc = op2(w, "Min", op2(w, "Max", p.s, cscalard(w, X[0]).s).s, cscalard(w, X[k - 1]).s);
        name cx = cdouble(w, &kk, 1, X), cy = cdouble(w, &kk, 1, Y), cs = cdouble(w, &kk, 1, S);
        /* lo = (knots <= p) - 1 = k - 1 - (knots > p), clamped to 0 .. max(k-2, 0) */
        attrs ci = {0};
        attr_int(&ci, "to", DT_INT64);
        name gt = op1(w, "Cast", op2(w, "Less", pc.s, cdouble(w, row, 2, X).s).s, &ci);
        int64_t one = 1, km1 = kk - 1, zero = 0, hi = kk > 1 ? kk - 2 : 0;
        name ax = cints(w, 1, &one);
        const char *rin[2] = {gt.s, ax.s};
        name cnt = fresh(w, 't');
        node(w, "ReduceSum", rin, 2, cnt.s, NULL);
        name lo = op2(w, "Sub", cint64(w, NULL, 0, &km1).s, cnt.s);
        lo = op2(w, "Min", op2(w, "Max", lo.s, cint64(w, NULL, 0, &zero).s).s,
                 cint64(w, NULL, 0, &hi).s);
        name x0 = op2(w, "Gather", cx.s, lo.s), y0 = op2(w, "Gather", cy.s, lo.s);
        name s = op2(w, "Gather", cs.s, lo.s);
        y = op2(w, "Add", y0.s, op2(w, "Mul", op2(w, "Sub", pc.s, x0.s).s, s.s).s);
        tl_free(X);
    }
    attrs cf = {0};
    attr_int(&cf, "to", DT_FLOAT);
    const char *yin = y.s;
    node(w, "Cast", &yin, 1, vname(w, i).s, &cf);
}

static void emit(writer *w, int i)
{
    const tl_xnode *n = &w->x->nodes[i];
    name out = vname(w, i);
    name a = n->nin > 0 ? vname(w, n->in[0]) : out, b = n->nin > 1 ? vname(w, n->in[1]) : out;
    const char *ab[2] = {a.s, b.s};
    static const char *const simple[TL_X_COUNT] = {
        [TL_X_MATMUL] = "MatMul", [TL_X_ADD] = "Add", [TL_X_SUB] = "Sub", [TL_X_MUL] = "Mul",
        [TL_X_RELU] = "Relu", [TL_X_SIGMOID] = "Sigmoid", [TL_X_TANH] = "Tanh", [TL_X_EXP] = "Exp",
        [TL_X_SOFTPLUS] = "Softplus"};
    switch (n->op) {
    case TL_X_IDS:
    case TL_X_BAG_IDS: return; /* graph inputs */
    case TL_X_EMBEDDING_BAG: emit_embedding_bag(w, i, n); return;
    case TL_X_CONST: {
        int64_t dims[2] = {n->rows, n->cols};
        init_raw(w, out.s, dims, 2, DT_FLOAT, n->data, (size_t)n->rows * n->cols * sizeof(float));
        return;
    }
    case TL_X_NUMERIC: emit_numeric(w, i); return;
    case TL_X_EMBEDDING: emit_embedding(w, i, n); return;
    case TL_X_LINEAR: emit_linear(w, i, n); return;
    case TL_X_GROUPED_LINEAR: emit_grouped(w, i, n); return;
    case TL_X_TOKEN_LINEAR: emit_token_linear(w, i, n); return;
    case TL_X_GATE_MIX: emit_gate_mix(w, i, n); return;
    case TL_X_ATTENTION: emit_attention(w, i, n); return;
    case TL_X_CALIBRATE: emit_calibrate(w, i, n); return;
    case TL_X_SCALE: {
        name c = cscalar(w, n->f);
        const char *in[2] = {a.s, c.s};
        node(w, "Mul", in, 2, out.s, NULL);
        return;
    }
    case TL_X_SOFTMAX:
    case TL_X_LOG_SOFTMAX: {
        attrs at = {0};
        attr_int(&at, "axis", 1);
        node(w, n->op == TL_X_SOFTMAX ? "Softmax" : "LogSoftmax", ab, 1, out.s, &at);
        return;
    }
    case TL_X_CONCAT: {
        const char *in[TL_X_MAX_IN];
        name nm[TL_X_MAX_IN];
        for (int j = 0; j < n->nin; j++) in[j] = (nm[j] = vname(w, n->in[j])).s;
        attrs at = {0};
        attr_int(&at, "axis", 1);
        node(w, "Concat", in, n->nin, out.s, &at);
        return;
    }
    case TL_X_SLICE: {
        int64_t st = n->start, en = (int64_t)n->start + n->cols, ax = 1;
        name c1 = cints(w, 1, &st), c2 = cints(w, 1, &en), c3 = cints(w, 1, &ax);
        const char *in[4] = {a.s, c1.s, c2.s, c3.s};
        node(w, "Slice", in, 4, out.s, NULL);
        return;
    }
    case TL_X_ROW_SUM: {
        int64_t ax = 1;
        name c = cints(w, 1, &ax);
        const char *in[2] = {a.s, c.s};
        node(w, "ReduceSum", in, 2, out.s, NULL);
        return;
    }
    default:
        node(w, simple[n->op], ab, n->nin, out.s, NULL);
        return;
    }
}

/* ---- the model ---------------------------------------------------------- */

static void value_info(tl_pb *g, int field, const char *nm, int dt, int64_t cols)
{
    tl_pb dim0 = {0}, dim1 = {0}, shape = {0}, tt = {0}, type = {0}, vi = {0};
    tl_pb_str(&dim0, 2, "N");
    tl_pb_int(&dim1, 1, cols);
    tl_pb_msg(&shape, 1, &dim0);
    tl_pb_msg(&shape, 1, &dim1);
    tl_pb_int(&tt, 1, dt);
    tl_pb_msg(&tt, 2, &shape);
    tl_pb_msg(&type, 1, &tt);
    tl_pb_str(&vi, 1, nm);
    tl_pb_msg(&vi, 2, &type);
    tl_pb_msg(g, field, &vi);
    tl_pb *all[] = {&dim0, &dim1, &shape, &tt, &type, &vi};
    for (size_t j = 0; j < sizeof all / sizeof *all; j++) tl_pb_free(all[j]);
}

tl_status tl_export_onnx_encode(const tl_xgraph *x, const tl_model_config *cfg, int opset,
                                tl_pb *out)
{
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1)
        return tl_fail(TL_ERR_STATE, "export: the ONNX writer needs a little-endian machine");
    for (int b = 0; b < x->n_bag; b++)
        for (int o = 0; o < x->n_out; o++)
            if (strcmp(bag_input(x, b).s, cfg->tasks[x->task[o]].name) == 0)
                return tl_fail(TL_ERR_ARG, "export: multi-valued field '%s': its ONNX input '%s' has the name "
                               "of a task's output; rename the task or the field", x->bag_name[b],
                               bag_input(x, b).s);
    writer w = {{0}, {0}, 0, opset, x};
    int has_ids = 0, has_num = 0;
    for (int i = 0; i < x->n; i++) {
        has_ids |= x->nodes[i].op == TL_X_IDS;
        has_num |= x->nodes[i].op == TL_X_NUMERIC;
        emit(&w, i);
    }
    tl_pb g = {0};
    tl_pb_bytes(&g, w.nodes.p, w.nodes.n);
    tl_pb_str(&g, 2, "towerlab");
    tl_pb_bytes(&g, w.inits.p, w.inits.n);
    if (has_ids) value_info(&g, 11, "ids", DT_INT32, x->n_cat);
    if (has_num) value_info(&g, 11, "numeric", DT_FLOAT, x->n_raw);
    for (int b = 0; b < x->n_bag; b++) value_info(&g, 11, bag_input(x, b).s, DT_INT32, x->bag_len[b]);
    for (int o = 0; o < x->n_out; o++) {
        /* the outputs are Identity copies named by their task */
        tl_pb n = {0};
        tl_pb_str(&n, 1, vname(&w, x->out[o]).s);
        tl_pb_str(&n, 2, cfg->tasks[x->task[o]].name);
        tl_pb_str(&n, 4, "Identity");
        tl_pb_msg(&g, 1, &n);
        tl_pb_free(&n);
        value_info(&g, 12, cfg->tasks[x->task[o]].name, DT_FLOAT, 1);
    }
    tl_pb ops = {0};
    tl_pb_str(&ops, 1, "");
    tl_pb_int(&ops, 2, opset);
    memset(out, 0, sizeof *out);
    tl_pb_int(out, 1, 8); /* IR version 8 */
    tl_pb_str(out, 2, "towerlab");
    tl_pb_str(out, 3, "1");
    tl_pb_msg(out, 7, &g);
    tl_pb_msg(out, 8, &ops);
    int oom = w.nodes.oom || w.inits.oom || g.oom || out->oom;
    tl_pb_free(&w.nodes);
    tl_pb_free(&w.inits);
    tl_pb_free(&g);
    tl_pb_free(&ops);
    if (oom) {
        tl_pb_free(out);
        return tl_fail(TL_ERR_NOMEM, "export: out of memory writing the ONNX model");
    }
    return TL_OK;
}
