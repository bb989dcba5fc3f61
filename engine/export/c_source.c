/* export/c_source.c — the C99 writer: one emitter per lowered op kind, each
 * writing the loop that computes its node for one row into the local array
 * v<i>; constants are static const arrays <name>_c<i>, printed as
 * hexadecimal float literals so that they are the model's exact bits. The
 * arithmetic follows the engine's forward functions (same formulas, float;
 * calibrators in double), so results differ from m:predict only by the
 * order of the GEMM sums. */
#include "c_source.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/bag.h"

typedef struct {
    tl_pb *b;
    const tl_xgraph *x;
    const char *nm;
    const char *fn; /* "static " or "static inline " */
} cw;

tl_status tl_export_c_check_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    int ok = n > 0 && n <= 48 && (isalpha((unsigned char)name[0]) || name[0] == '_');
    for (size_t i = 0; ok && i < n; i++) ok = isalnum((unsigned char)name[i]) || name[i] == '_';
    return ok ? TL_OK
              : tl_fail(TL_ERR_ARG, "export: C name '%s' is not an identifier of 1..48 letters, "
                        "digits and _ (name= option)", name ? name : "");
}

/* An operand of node i: the row array v<j>, or the constant <name>_c<j>. */
static const char *ref(const cw *w, int j, char *buf, size_t n)
{
    if (w->x->nodes[j].op == TL_X_CONST)
        snprintf(buf, n, "%s_c%d", w->nm, j);
    else
        snprintf(buf, n, "v%d", j);
    return buf;
}

/* A field name inside a comment: letters, digits and " _-.," as they are,
 * any other byte as _ (a name could hold a comment's end or a line break). */
static void comment_text(cw *w, const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char ch = isalnum(*c) || strchr(" _-.,", *c) ? (char)*c : '_';
        tl_pb_bytes(w->b, &ch, 1);
    }
}

static void floats(cw *w, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tl_pb_printf(w->b, "%a%s", (double)v[i], i + 1 < n ? "f," : "f");
        if (i % 6 == 5) tl_pb_printf(w->b, "\n    ");
    }
}

static void emit_const(cw *w, int i, const tl_xnode *n)
{
    tl_pb_printf(w->b, "static const float %s_c%d[%zu] = {\n    ", w->nm, i, (size_t)n->rows * (size_t)n->cols);
    floats(w, n->data, (size_t)n->rows * (size_t)n->cols);
    tl_pb_printf(w->b, "};\n");
}

/* The row helpers the nodes use (only those: an unused static function is
 * a warning under -Wall -Werror). */
static void emit_helpers(cw *w)
{
    const char *p = w->nm, *f = w->fn;
    int lin = 0, act = 0, soft = 0, param = 0, iso = 0;
    for (int i = 0; i < w->x->n; i++) {
        const tl_xnode *n = &w->x->nodes[i];
        lin |= n->op == TL_X_LINEAR || n->op == TL_X_MATMUL || n->op == TL_X_GROUPED_LINEAR ||
               n->op == TL_X_TOKEN_LINEAR;
        act |= n->op == TL_X_RELU || n->op == TL_X_SIGMOID || n->op == TL_X_TANH;
        soft |= n->op == TL_X_SOFTMAX || n->op == TL_X_LOG_SOFTMAX;
        if (n->op == TL_X_CALIBRATE) {
            iso |= tl_calibrator_kind(n->cal) == TL_CALIB_ISOTONIC;
            param |= tl_calibrator_kind(n->cal) != TL_CALIB_ISOTONIC;
        }
    }
    if (act || lin) tl_pb_printf(w->b, "%sfloat %s_act(float x, int act)\n{\n"
           "    if (act == 1) return x > 0.0f ? x : 0.0f;\n"
           "    if (act == 2) {\n"
           "        if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));\n"
           "        float e = expf(x);\n"
           "        return e / (1.0f + e);\n"
           "    }\n"
           "    if (act == 3) return tanhf(x);\n"
           "    return x;\n}\n\n", f, p);
    /* Rows go through the graph in tiles of up to TILE rows, and the linear
     * layer reads each weight row once per tile. restrict and inline: GCC
     * -O2 vectorizes the inner loop only when it needs no aliasing check and
     * knows the trip count (the call's constant m). Outputs never alias
     * inputs: every node has its own buffer. Each output is summed in the
     * same order for any tile size. */
    if (lin) tl_pb_printf(w->b, "/* y[q][m] = act(x[q][k] W[k x m] + b), rows q < nr; x and y rows ldx and ldy apart */\n"
           "static inline void %s_linear(const float *restrict x, int ldx, int k, const float *restrict W,\n"
           "    const float *restrict b, int m, float *restrict y, int ldy, int act, int nr)\n{\n"
           "    for (int q = 0; q < nr; q++)\n"
           "        for (int j = 0; j < m; j++) y[q * ldy + j] = b ? b[j] : 0.0f;\n"
           "    /* blocks of 256 outputs: the tile's block of y stays in L1 while k weight rows pass */\n"
           "    for (int j0 = 0; j0 < m; j0 += 256) {\n"
           "        int jn = m - j0 < 256 ? m - j0 : 256;\n"
           "        for (int i = 0; i < k; i++) {\n"
           "            const float *wr = W + (size_t)i * (size_t)m + j0;\n"
           "            for (int q = 0; q < nr; q++) {\n"
           "                float xi = x[q * ldx + i], *yq = y + q * ldy + j0;\n"
           "                if (jn == 256)\n"
           "                    for (int j = 0; j < 256; j++) yq[j] += xi * wr[j];\n"
           "                else\n"
           "                    for (int j = 0; j < jn; j++) yq[j] += xi * wr[j];\n"
           "            }\n"
           "        }\n"
           "    }\n"
           "    if (act)\n"
           "        for (int q = 0; q < nr; q++)\n"
           "            for (int j = 0; j < m; j++) y[q * ldy + j] = %s_act(y[q * ldy + j], act);\n}\n\n", p, p);
    if (soft) tl_pb_printf(w->b, "%svoid %s_softmax(const float *x, int n, float *y, int log_out)\n{\n"
           "    float mx = -INFINITY, z = 0.0f;\n"
           "    for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;\n"
           "    for (int j = 0; j < n; j++) z += expf(x[j] - mx);\n"
           "    for (int j = 0; j < n; j++) y[j] = log_out ? x[j] - mx - logf(z) : expf(x[j] - mx) / z;\n}\n\n",
        f, p);
    if (param) tl_pb_printf(w->b, "%sdouble %s_logit(double q)\n{\n"
           "    q = q < 1e-7 ? 1e-7 : q > 1.0 - 1e-7 ? 1.0 - 1e-7 : q;\n"
           "    return log(q) - log1p(-q);\n}\n\n"
           "%sdouble %s_sigmoid(double z)\n{\n"
           "    if (z >= 0) return 1.0 / (1.0 + exp(-z));\n"
           "    double e = exp(z);\n"
           "    return e / (1.0 + e);\n}\n\n", f, p, f, p);
    if (iso) tl_pb_printf(w->b, "%sdouble %s_isotonic(const float *x, const float *y, size_t k, double q)\n{\n"
           "    if (q <= (double)x[0]) return y[0];\n"
           "    if (q >= (double)x[k - 1]) return y[k - 1];\n"
           "    size_t lo = 0, hi = k - 1;\n"
           "    while (hi - lo > 1) {\n"
           "        size_t mid = (lo + hi) / 2;\n"
           "        if ((double)x[mid] <= q) lo = mid;\n"
           "        else hi = mid;\n"
           "    }\n"
           "    double x0 = x[lo], x1 = x[hi], y0 = y[lo], y1 = y[hi];\n"
           "    return y0 + (q - x0) * ((y1 - y0) / (x1 - x0));\n}\n\n", f, p);
}

/* A graph input or a constant: no row array of its own. */
static int no_rows(const tl_xnode *n)
{
    return n->op == TL_X_CONST || n->op == TL_X_IDS || n->op == TL_X_BAG_IDS;
}

/* Rows per tile of the predict loop: each weight row is read once per tile. */
#define TILE 8

/* Linear layers with constant weights run on a whole tile at once; every
 * other node row by row. */
static int tiled(const tl_xgraph *x, const tl_xnode *n)
{
    if (n->op == TL_X_GROUPED_LINEAR || n->op == TL_X_TOKEN_LINEAR) return 1;
    return (n->op == TL_X_LINEAR || n->op == TL_X_MATMUL) && x->nodes[n->in[1]].op == TL_X_CONST;
}

/* ops/bag.c's forward for row q, in its order and arithmetic: bid = the row's
 * slots of the field (validated: -1 or an id of the table `table`). */
static void emit_bag(cw *w, int i, const tl_xnode *n, const char *table)
{
    int L = n->k, D = n->cols, pool = n->start;
    if (pool != TL_BAG_SUM) tl_pb_printf(w->b, "            int cnt = 0;\n");
    tl_pb_printf(w->b, "            memset(v%d, 0, %d * sizeof(float));\n"
           "            for (int s = 0; s < %d; s++) {\n"
           "                if (bid[s] < 0) continue; /* -1: an empty slot */\n"
           "                const float *e = %s + (size_t)bid[s] * %d;\n", i, D, L, table, D);
    if (pool == TL_BAG_MAX)
        tl_pb_printf(w->b, "                if (cnt == 0) memcpy(v%d, e, %d * sizeof(float));\n"
               "                else for (int j = 0; j < %d; j++) v%d[j] = e[j] > v%d[j] ? e[j] : v%d[j];\n",
            i, D, D, i, i, i);
    else
        tl_pb_printf(w->b, "                for (int j = 0; j < %d; j++) v%d[j] += e[j];\n", D, i);
    if (pool != TL_BAG_SUM) tl_pb_printf(w->b, "                cnt++;\n");
    tl_pb_printf(w->b, "            }\n");
    if (pool == TL_BAG_MEAN)
        tl_pb_printf(w->b, "            if (cnt > 1) {\n"
               "                float inv = 1.0f / (float)cnt;\n"
               "                for (int j = 0; j < %d; j++) v%d[j] *= inv;\n"
               "            }\n", D, i);
}

static const char *const ops_c[] = {[TL_X_ADD] = "+", [TL_X_SUB] = "-", [TL_X_MUL] = "*"};

/* The statement(s) computing node i: for a tiled node (see tiled) on the
 * whole tile t<i>, for any other into v<i>, row q of the tile. */
static tl_status emit_node(cw *w, int i, const tl_xnode *n)
{
    const tl_xgraph *x = w->x;
    char a[64] = "", b[64] = "", c[64] = "";
    if (n->nin > 0) ref(w, n->in[0], a, sizeof a);
    if (n->nin > 1) ref(w, n->in[1], b, sizeof b);
    if (n->nin > 2) ref(w, n->in[2], c, sizeof c);
    int cols = n->cols;
    const char *p = w->nm;
    switch (n->op) {
    case TL_X_IDS:
    case TL_X_BAG_IDS:
    case TL_X_CONST: return TL_OK;
    case TL_X_EMBEDDING_BAG: emit_bag(w, i, n, a); return TL_OK;
    case TL_X_NUMERIC:
        for (int j = 0; j < x->n_num; j++) {
            const tl_xnum *u = &x->num[j];
            if (u->kind == TL_X_NUM_FLAG) {
                tl_pb_printf(w->b, "        v%d[%d] = isnan(xr[%d]) ? 1.0f : 0.0f;\n", i, j, u->src);
                continue;
            }
            const char *t = u->transform == TL_NUM_LOG1P
                                ? "(xr[%d] < 0 ? -log1pf(-xr[%d]) : log1pf(xr[%d]))" : "xr[%d]";
            char tb[96];
            snprintf(tb, sizeof tb, t, u->src, u->src, u->src);
            tl_pb_printf(w->b, "        v%d[%d] = isnan(xr[%d]) ? %af : %s;\n", i, j, u->src, (double)u->mu, tb);
            if (u->transform == TL_NUM_STANDARD)
                tl_pb_printf(w->b, "        v%d[%d] = (v%d[%d] - %af) * %af;\n", i, j, i, j, (double)u->mu,
                    (double)u->inv);
        }
        return TL_OK;
    case TL_X_EMBEDDING: {
        int F = x->nodes[n->in[1]].cols, dim = x->nodes[n->in[0]].cols;
        for (int f = 0; f < F; f++)
            tl_pb_printf(w->b, "        memcpy(v%d + %d, %s + ((size_t)%lld + (size_t)id[%d]) * %d, %d * sizeof(float));\n",
                i, f * dim, a, (long long)n->offsets[f], f, dim, dim * 1);
        return TL_OK;
    }
    case TL_X_LINEAR:
    case TL_X_MATMUL: { /* on the whole tile: t<in>, t<i> */
        if (x->nodes[n->in[1]].op != TL_X_CONST) break;
        int k = x->nodes[n->in[0]].cols;
        tl_pb_printf(w->b, "        %s_linear(t%d[0], %d, %d, %s, %s, %d, t%d[0], %d, %d, nr);\n", p, n->in[0], k, k,
            b, n->nin == 3 ? c : "NULL", cols, i, cols, n->op == TL_X_LINEAR ? (int)n->act : 0);
        return TL_OK;
    }
    case TL_X_GROUPED_LINEAR:
    case TL_X_TOKEN_LINEAR: {
        int G = n->k, K = x->nodes[n->in[0]].cols, k = K / G, m = cols / G;
        char bias[80] = "NULL";
        if (n->nin == 3) {
            if (n->op == TL_X_GROUPED_LINEAR) snprintf(bias, sizeof bias, "%s + g * %d", c, m);
            else snprintf(bias, sizeof bias, "%s", c);
        }
        tl_pb_printf(w->b, "        for (int g = 0; g < %d; g++)\n"
               "            %s_linear(t%d[0] + g * %d, %d, %d, %s + (size_t)g * %d, %s, %d, t%d[0] + g * %d, %d, %d, nr);\n",
            G, p, n->in[0], k, K, k, b, n->op == TL_X_GROUPED_LINEAR ? k * m : 0, bias, m, i, m, cols, (int)n->act);
        return TL_OK;
    }
    case TL_X_ADD:
    case TL_X_SUB:
    case TL_X_MUL: {
        const char *idx = n->bcast == TL_X_BC_SAME || n->bcast == TL_X_BC_ROW ? "j" : "0";
        tl_pb_printf(w->b, "        for (int j = 0; j < %d; j++) v%d[j] = %s[j] %s %s[%s];\n", cols, i, a,
            ops_c[n->op], b, idx);
        return TL_OK;
    }
    case TL_X_SCALE:
        tl_pb_printf(w->b, "        for (int j = 0; j < %d; j++) v%d[j] = %af * %s[j];\n", cols, i, (double)n->f, a);
        return TL_OK;
    case TL_X_RELU:
    case TL_X_SIGMOID:
    case TL_X_TANH:
        tl_pb_printf(w->b, "        for (int j = 0; j < %d; j++) v%d[j] = %s_act(%s[j], %d);\n", cols, i, p, a,
            n->op == TL_X_RELU ? 1 : n->op == TL_X_SIGMOID ? 2 : 3);
        return TL_OK;
    case TL_X_EXP:
        tl_pb_printf(w->b, "        for (int j = 0; j < %d; j++) v%d[j] = expf(%s[j]);\n", cols, i, a);
        return TL_OK;
    case TL_X_SOFTPLUS:
        tl_pb_printf(w->b, "        for (int j = 0; j < %d; j++) v%d[j] = (%s[j] > 0.0f ? %s[j] : 0.0f) + "
               "log1pf(expf(-fabsf(%s[j])));\n", cols, i, a, a, a);
        return TL_OK;
    case TL_X_SOFTMAX:
    case TL_X_LOG_SOFTMAX:
        tl_pb_printf(w->b, "        %s_softmax(%s, %d, v%d, %d);\n", p, a, cols, i, n->op == TL_X_LOG_SOFTMAX);
        return TL_OK;
    case TL_X_CONCAT: {
        int at = 0;
        for (int j = 0; j < n->nin; j++) {
            int cj = x->nodes[n->in[j]].cols;
            tl_pb_printf(w->b, "        memcpy(v%d + %d, %s, %d * sizeof(float));\n", i, at,
                ref(w, n->in[j], a, sizeof a), cj);
            at += cj;
        }
        return TL_OK;
    }
    case TL_X_SLICE:
        tl_pb_printf(w->b, "        memcpy(v%d, %s + %d, %d * sizeof(float));\n", i, a, n->start, cols);
        return TL_OK;
    case TL_X_ROW_SUM:
        tl_pb_printf(w->b, "        v%d[0] = 0.0f;\n        for (int j = 0; j < %d; j++) v%d[0] += %s[j];\n", i,
            x->nodes[n->in[0]].cols, i, a);
        return TL_OK;
    case TL_X_GATE_MIX: {
        int e = 0;
        for (int bl = 0; bl + 1 < n->nin; bl++) {
            char s[64];
            ref(w, n->in[1 + bl], s, sizeof s);
            for (int q = 0; q < n->blocks[2 * bl + 1]; q++, e++)
                tl_pb_printf(w->b, "        for (int j = 0; j < %d; j++) v%d[j] %s %s[%d] * %s[%d + j];\n", cols, i,
                    e == 0 ? "=" : "+=", a, e, s, (n->blocks[2 * bl] + q) * cols);
        }
        return TL_OK;
    }
    case TL_X_ATTENTION: {
        int T = n->k, d = cols / T;
        tl_pb_printf(w->b, "        for (int t = 0; t < %d; t++) {\n"
               "            float at[%d], mx = -INFINITY, z = 0.0f;\n"
               "            for (int j = 0; j < %d; j++) {\n"
               "                float s = 0.0f;\n"
               "                for (int c = 0; c < %d; c++) s += %s[t * %d + c] * %s[j * %d + c];\n"
               "                at[j] = s * %af;\n"
               "                mx = at[j] > mx ? at[j] : mx;\n"
               "            }\n"
               "            for (int j = 0; j < %d; j++) z += (at[j] = expf(at[j] - mx));\n"
               "            for (int j = 0; j < %d; j++) at[j] /= z;\n"
               "            for (int c = 0; c < %d; c++) v%d[t * %d + c] = 0.0f;\n"
               "            for (int j = 0; j < %d; j++)\n"
               "                for (int c = 0; c < %d; c++) v%d[t * %d + c] += at[j] * %s[j * %d + c];\n"
               "        }\n",
            T, T, T, d, a, d, b, d, (double)(1.0f / sqrtf((float)d)), T, T, d, i, d, T, d, i, d, c, d);
        return TL_OK;
    }
    case TL_X_CALIBRATE: {
        tl_calib_kind kind = tl_calibrator_kind(n->cal);
        if (kind == TL_CALIB_PLATT) {
            double pa, pb;
            tl_calibrator_platt_params(n->cal, &pa, &pb);
            tl_pb_printf(w->b, "        v%d[0] = (float)%s_sigmoid(%a * %s_logit((double)%s[0]) + %a);\n", i, p, pa,
                p, a, pb);
        } else if (kind == TL_CALIB_TEMPERATURE) {
            tl_pb_printf(w->b, "        v%d[0] = (float)%s_sigmoid(%s_logit((double)%s[0]) / %a);\n", i, p, p, a,
                tl_calibrator_temperature(n->cal));
        } else {
            const float *kx, *ky;
            size_t k = tl_calibrator_knots(n->cal, &kx, &ky);
            tl_pb_printf(w->b, "        v%d[0] = (float)%s_isotonic(%s_k%dx, %s_k%dy, %zu, (double)%s[0]);\n", i, p, p,
                i, p, i, k, a);
        }
        return TL_OK;
    }
    default: break;
    }
    return tl_fail(TL_ERR_ARG, "export: node %d (op %d) has no C form", i, (int)n->op);
}

/* Floats of one row's activations: the predict function's stack per row. */
static size_t stack_floats(const tl_xgraph *x)
{
    size_t n = 0;
    for (int i = 0; i < x->n; i++)
        if (!no_rows(&x->nodes[i])) n += (size_t)x->nodes[i].cols;
    return n;
}

tl_status tl_export_c_encode(const tl_xgraph *x, const tl_model_config *cfg, const char *name,
                             int header, tl_pb *b)
{
    cw w = {b, x, name, header ? "static inline " : "static "};
    const char *p = name;
    tl_pb_printf(w.b, "/* %s — generated by towerlab (m:export); do not edit.\n"
            " * %s, outputs:", header ? "header" : "C99 source", tl_backbone_name(cfg->backbone.kind));
    for (int o = 0; o < x->n_out; o++) tl_pb_printf(w.b, " %s", cfg->tasks[x->task[o]].name);
    const char *bags_arg = x->n_bag ? "const int32_t *bags, " : "";
    tl_pb_printf(w.b, ".\n *\n * int %s_predict(const int32_t *ids, %sconst float *numeric, size_t n, float *out);\n"
            " * ids: n x %d encoded ids; numeric: n x %d raw values (NaN = missing);\n",
        p, bags_arg, x->n_cat, x->n_raw);
    if (x->n_bag) {
        tl_pb_printf(w.b, " * bags: n x %d ids of the multi-valued fields, each field's slots side by side\n"
                " * (-1 = an empty slot, anywhere in the field's slots):\n", x->bag_slots);
        static const char *const pools[] = {"sum", "mean", "max"};
        for (int f = 0; f < x->n_bag; f++) {
            tl_pb_printf(w.b, " *   slots %d..%d: ", x->bag_off[f], x->bag_off[f] + x->bag_len[f] - 1);
            comment_text(&w, x->bag_name[f]);
            tl_pb_printf(w.b, " (%d ids, %s pooling)\n", (int)x->bag_vocab[f], pools[x->bag_pool[f]]);
        }
    }
    tl_pb_printf(w.b, " * out: n x %d. Returns 0, or -1 for an id outside its vocabulary.\n"
            " * Needs only libm (cc -std=c99 ... -lm); thread-safe; allocates nothing;\n"
            " * uses %zu KiB of stack (tiles of %d rows). */\n",
        x->n_out, (stack_floats(x) * TILE * sizeof(float) + 1023) / 1024, TILE);
    if (header) tl_pb_printf(w.b, "#ifndef %s_MODEL_H\n#define %s_MODEL_H\n", p, p);
    tl_pb_printf(w.b, "#include <math.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <string.h>\n\n");
    tl_pb_printf(w.b, "#define %s_N_IDS %d\n#define %s_N_NUMERIC %d\n#define %s_N_OUT %d\n", p, x->n_cat, p,
        x->n_raw, p, x->n_out);
    if (x->n_bag) tl_pb_printf(w.b, "#define %s_N_BAG_SLOTS %d\n", p, x->bag_slots);
    tl_pb_printf(w.b, "\n");
    for (int o = 0; o < x->n_out; o++)
        tl_pb_printf(w.b, "/* output %d: %s */\n", o, cfg->tasks[x->task[o]].name);
    tl_pb_printf(w.b, "\n");
    int has_ids = 0, has_bags = 0;
    for (int i = 0; i < x->n; i++) {
        const tl_xnode *n = &x->nodes[i];
        if (n->op == TL_X_CONST) emit_const(&w, i, n);
        if (n->op == TL_X_IDS) has_ids = 1;
        if (n->op == TL_X_BAG_IDS) has_bags = 1;
        if (n->op == TL_X_CALIBRATE && tl_calibrator_kind(n->cal) == TL_CALIB_ISOTONIC) {
            const float *kx, *ky;
            size_t k = tl_calibrator_knots(n->cal, &kx, &ky);
            tl_pb_printf(w.b, "static const float %s_k%dx[%zu] = {\n    ", p, i, k);
            floats(&w, kx, k);
            tl_pb_printf(w.b, "};\nstatic const float %s_k%dy[%zu] = {\n    ", p, i, k);
            floats(&w, ky, k);
            tl_pb_printf(w.b, "};\n");
        }
    }
    if (has_ids) {
        tl_pb_printf(w.b, "static const int32_t %s_vocab[%d] = {", p, x->n_cat);
        for (int f = 0; f < x->n_cat; f++) tl_pb_printf(w.b, "%s%d", f ? ", " : "", (int)cfg->vocab[f]);
        tl_pb_printf(w.b, "};\n");
    }
    tl_pb_printf(w.b, "\n");
    emit_helpers(&w);
    tl_pb_printf(w.b, "%sint %s_predict(const int32_t *ids, %sconst float *numeric, size_t n, float *out)\n{\n",
        header ? "static inline " : "", p, bags_arg);
    if (!has_ids) tl_pb_printf(w.b, "    (void)ids;\n");
    if (x->n_bag && !has_bags) tl_pb_printf(w.b, "    (void)bags;\n");
    if (x->n_raw == 0) tl_pb_printf(w.b, "    (void)numeric;\n");
    tl_pb_printf(w.b, "    for (size_t r0 = 0; r0 < n; r0 += %d) {\n"
            "        int nr = n - r0 < %d ? (int)(n - r0) : %d;\n", TILE, TILE, TILE);
    if (has_ids)
        tl_pb_printf(w.b, "        for (size_t q = r0; q < r0 + (size_t)nr; q++)\n"
                "            for (int f = 0; f < %d; f++)\n"
                "                if (ids[q * %d + f] < 0 || ids[q * %d + f] >= %s_vocab[f]) return -1;\n",
            x->n_cat, x->n_cat, x->n_cat, p);
    if (has_bags) /* -1 is an empty slot; every other id in its field's vocabulary */
        for (int f = 0; f < x->n_bag; f++)
            tl_pb_printf(w.b, "        for (size_t q = r0; q < r0 + (size_t)nr; q++)\n"
                    "            for (int s = %d; s < %d; s++)\n"
                    "                if (bags[q * %d + s] < -1 || bags[q * %d + s] >= %d) return -1;\n",
                x->bag_off[f], x->bag_off[f] + x->bag_len[f], x->bag_slots, x->bag_slots, (int)x->bag_vocab[f]);
    for (int i = 0; i < x->n; i++) {
        const tl_xnode *n = &x->nodes[i];
        if (no_rows(n)) continue;
        if (!n->batched) return tl_fail(TL_ERR_ARG, "export: node %d is computed from constants only; "
                                                    "the C writer has no form for it", i);
        tl_pb_printf(w.b, "        float t%d[%d][%d];\n", i, TILE, n->cols);
    }
    for (int i = 0; i < x->n; i++) {
        const tl_xnode *n = &x->nodes[i];
        if (no_rows(n)) continue;
        tl_status st;
        if (tiled(x, n)) {
            st = emit_node(&w, i, n);
        } else { /* one row at a time: v<j> names row q of t<j> */
            tl_pb_printf(w.b, "        for (int q = 0; q < nr; q++) {\n            float *const v%d = t%d[q];\n", i, i);
            for (int k = 0; k < n->nin; k++) {
                int j = n->in[k], seen = 0;
                for (int e = 0; e < k; e++) seen |= n->in[e] == j;
                if (!seen && !no_rows(&x->nodes[j]))
                    tl_pb_printf(w.b, "            const float *const v%d = t%d[q];\n", j, j);
            }
            if (n->op == TL_X_EMBEDDING)
                tl_pb_printf(w.b, "            const int32_t *id = ids + (r0 + (size_t)q) * %d;\n", x->n_cat);
            if (n->op == TL_X_EMBEDDING_BAG)
                tl_pb_printf(w.b, "            const int32_t *bid = bags + (r0 + (size_t)q) * %d + %d;\n", x->bag_slots,
                    x->bag_off[x->nodes[n->in[1]].k]);
            if (n->op == TL_X_NUMERIC)
                tl_pb_printf(w.b, "            const float *xr = numeric + (r0 + (size_t)q) * %d;\n", x->n_raw);
            st = emit_node(&w, i, n);
            tl_pb_printf(w.b, "        }\n");
        }
        if (st) return st;
    }
    for (int o = 0; o < x->n_out; o++)
        tl_pb_printf(w.b, "        for (int q = 0; q < nr; q++) out[(r0 + (size_t)q) * %d + %d] = t%d[q][0];\n",
            x->n_out, o, x->out[o]);
    tl_pb_printf(w.b, "    }\n    return 0;\n}\n");
    if (header) tl_pb_printf(w.b, "#endif\n");
    return TL_OK;
}
