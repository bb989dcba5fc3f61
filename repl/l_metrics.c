/* l_metrics.c — tl.metrics: evaluation metrics and calibrators over Lua
 * arrays (engine/metrics.h).
 *
 * Arrays are Lua sequences of numbers (1-based) or tl.tensor values (read
 * flat). They are copied into float buffers held by userdata on the Lua
 * stack, so a Lua error at any point leaks nothing. Undefined metrics (one
 * class, no rows) come back as NaN plus a note string as second result. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l_metrics.h"

#include "l_tensor.h"
#include "l_util.h"
#include "metrics.h"

#define CALIB_MT "tl.metrics.calibrator"

/* ---- arrays ----------------------------------------------------------------- */

/* Describe the value at idx for messages: "string", "table", ... */
static const char *tname(lua_State *L, int idx) { return luaL_typename(L, idx); }

/* Length of the array at idx (Lua sequence or tensor), or -1 if not one. */
static lua_Integer array_len(lua_State *L, int idx)
{
    tl_tensor *t = tl_lua_test_tensor(L, idx);
    if (t) return (lua_Integer)tl_tensor_numel(t);
    if (lua_type(L, idx) == LUA_TTABLE) return (lua_Integer)lua_rawlen(L, idx);
    return -1;
}

/* `what` names the value in messages: "argument 2" or "field 'weight'". */
static void arg_error(lua_State *L, const char *fn, const char *what, const char *kind,
                      lua_Integer n, lua_Integer want, const char *ref)
{
    if (want >= 0 && n >= 0)
        luaL_error(L, "%s: %s must be an array of %s the same length as %s (got %I vs %I)", fn,
                   what, kind, ref, n, want);
    luaL_error(L, "%s: %s must be an array of %s, got %s", fn, what, kind, ref);
}

/* Copy the array at idx into a new float buffer (a userdata pushed on the
 * stack). want >= 0 requires that length; `ref` names the reference argument. */
static float *check_floats(lua_State *L, int idx, const char *fn, const char *what,
                           lua_Integer want, const char *ref, size_t *n_out)
{
    idx = lua_absindex(L, idx);
    lua_Integer n = array_len(L, idx);
    if (n < 0) arg_error(L, fn, what, "numbers", -1, -1, tname(L, idx));
    if (want >= 0 && n != want) arg_error(L, fn, what, "numbers", n, want, ref);
    float *buf = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(float), 0);
    tl_tensor *t = tl_lua_test_tensor(L, idx);
    if (t) {
        memcpy(buf, t->data, (size_t)n * sizeof(float));
    } else {
        for (lua_Integer i = 1; i <= n; i++) {
            int isnum;
            lua_rawgeti(L, idx, i);
            lua_Number v = lua_tonumberx(L, -1, &isnum);
            if (!isnum || lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, "%s: %s must be an array of numbers (element %I is a %s)", fn, what, i,
                           tname(L, -1));
            buf[i - 1] = (float)v;
            lua_pop(L, 1);
        }
    }
    if (n_out) *n_out = (size_t)n;
    return buf;
}

/* Integer ids (group / field), int32 range. */
static int32_t *check_ids(lua_State *L, int idx, const char *fn, const char *what, lua_Integer want,
                          const char *ref)
{
    idx = lua_absindex(L, idx);
    lua_Integer n = lua_type(L, idx) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, idx) : -1;
    if (n < 0) arg_error(L, fn, what, "integers", -1, -1, tname(L, idx));
    if (n != want) arg_error(L, fn, what, "integers", n, want, ref);
    int32_t *buf = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(int32_t), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        int isint;
        lua_rawgeti(L, idx, i);
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < INT32_MIN || v > INT32_MAX)
            luaL_error(L, "%s: %s must be an array of integers (element %I is %s)", fn, what, i,
                       lua_type(L, -1) == LUA_TNUMBER ? "not an int32 integer" : tname(L, -1));
        buf[i - 1] = (int32_t)v;
        lua_pop(L, 1);
    }
    return buf;
}

/* Mask: booleans, or numbers (non-zero keeps the row). */
static uint8_t *check_mask(lua_State *L, int idx, const char *fn, lua_Integer want)
{
    idx = lua_absindex(L, idx);
    lua_Integer n = lua_type(L, idx) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, idx) : -1;
    if (n < 0) arg_error(L, fn, "field 'mask'", "booleans", -1, -1, tname(L, idx));
    if (n != want) arg_error(L, fn, "field 'mask'", "booleans", n, want, "argument 1");
    uint8_t *buf = lua_newuserdatauv(L, (size_t)(n ? n : 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, idx, i);
        if (t == LUA_TBOOLEAN) buf[i - 1] = (uint8_t)lua_toboolean(L, -1);
        else if (t == LUA_TNUMBER) buf[i - 1] = lua_tonumber(L, -1) != 0;
        else
            luaL_error(L, "%s: field 'mask' must be an array of booleans (element %I is a %s)", fn, i,
                       tname(L, -1));
        lua_pop(L, 1);
    }
    return buf;
}

/* Optional columns of the options table at `o` (0 when absent). */
typedef struct {
    const float *weight;
    const uint8_t *mask;
    const int32_t *group, *field;
    const float *partner;
} opt_cols;

static void read_opt_cols(lua_State *L, int o, const char *fn, lua_Integer n, opt_cols *c)
{
    memset(c, 0, sizeof *c);
    if (!o || lua_isnoneornil(L, o)) return;
    if (lua_getfield(L, o, "weight") != LUA_TNIL)
        c->weight = check_floats(L, -1, fn, "field 'weight'", n, "argument 1", NULL);
    else
        lua_pushnil(L);
    lua_remove(L, -2);
    if (lua_getfield(L, o, "mask") != LUA_TNIL) c->mask = check_mask(L, -1, fn, n);
    else lua_pushnil(L);
    lua_remove(L, -2);
    if (lua_getfield(L, o, "group") != LUA_TNIL)
        c->group = check_ids(L, -1, fn, "field 'group'", n, "argument 1");
    else
        lua_pushnil(L);
    lua_remove(L, -2);
    if (lua_getfield(L, o, "field") != LUA_TNIL)
        c->field = check_ids(L, -1, fn, "field 'field'", n, "argument 1");
    else
        lua_pushnil(L);
    lua_remove(L, -2);
    if (lua_getfield(L, o, "partner") != LUA_TNIL)
        c->partner = check_floats(L, -1, fn, "field 'partner'", n, "argument 1", NULL);
    else
        lua_pushnil(L);
    lua_remove(L, -2);
}

/* Options table at idx: nil/none → 0, a table → its absolute index. */
static int opt_table(lua_State *L, int idx, const char *fn, const char *const *allowed)
{
    if (lua_isnoneornil(L, idx)) return 0;
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: argument %d must be an options table, got %s", fn, idx, tname(L, idx));
    tl_lua_check_fields(L, idx, fn, allowed);
    return lua_absindex(L, idx);
}

/* Raise "<fn>: <engine message>" with the engine's own prefix ("auc: ")
 * dropped and its 0-based "row N" shown as the 1-based "element N+1" of the
 * Lua arrays. */
static int raise_status(lua_State *L, const char *fn, tl_status st)
{
    const char *msg = tl_errmsg();
    if (!*msg) msg = tl_status_name(st);
    const char *colon = strstr(msg, ": ");
    if (colon && colon[2] && (size_t)(colon - msg) < 48) msg = colon + 2;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, fn);
    luaL_addstring(&b, ": ");
    while (*msg) {
        if (strncmp(msg, "row ", 4) == 0 && msg[4] >= '0' && msg[4] <= '9') {
            char *end;
            unsigned long long r = strtoull(msg + 4, &end, 10);
            char num[48];
            snprintf(num, sizeof num, "element %llu", r + 1);
            luaL_addstring(&b, num);
            msg = end;
        } else {
            luaL_addchar(&b, *msg++);
        }
    }
    luaL_pushresult(&b);
    return lua_error(L);
}

/* Push value and note (or nil); returns 2. */
static int push_value_note(lua_State *L, double v, unsigned notes)
{
    lua_pushnumber(L, v);
    if (notes) lua_pushstring(L, tl_metric_notes_str(notes));
    else lua_pushnil(L);
    return 2;
}

/* ---- metrics ---------------------------------------------------------------- */

static const char *const base_fields[] = {"weight", "mask", NULL};

static int l_auc(lua_State *L)
{
    const char *fn = "tl.metrics.auc";
    lua_settop(L, 3); /* absent arguments become nil below our buffers */
    size_t n;
    const float *p = check_floats(L, 1, fn, "argument 1", -1, NULL, &n);
    const float *y = check_floats(L, 2, fn, "argument 2", (lua_Integer)n, "argument 1", NULL);
    int o = opt_table(L, 3, fn, base_fields);
    opt_cols c;
    read_opt_cols(L, o, fn, (lua_Integer)n, &c);
    double v;
    unsigned notes = 0;
    tl_status st = tl_metric_auc(p, y, c.weight, c.mask, n, NULL, &v, &notes);
    if (st) return raise_status(L, fn, st);
    return push_value_note(L, v, notes);
}

static int l_gauc(lua_State *L)
{
    const char *fn = "tl.metrics.gauc";
    lua_settop(L, 4); /* absent arguments become nil below our buffers */
    size_t n;
    const float *p = check_floats(L, 1, fn, "argument 1", -1, NULL, &n);
    const float *y = check_floats(L, 2, fn, "argument 2", (lua_Integer)n, "argument 1", NULL);
    const int32_t *g = check_ids(L, 3, fn, "argument 3", (lua_Integer)n, "argument 1");
    int o = opt_table(L, 4, fn, base_fields);
    opt_cols c;
    read_opt_cols(L, o, fn, (lua_Integer)n, &c);
    double v;
    size_t used;
    unsigned notes = 0;
    tl_status st = tl_metric_gauc(p, y, g, c.weight, c.mask, n, NULL, &v, &used, &notes);
    if (st) return raise_status(L, fn, st);
    push_value_note(L, v, notes);
    lua_pushinteger(L, (lua_Integer)used);
    return 3;
}

static const char *const quad_names[] = {"++", "+-", "-+", "--", NULL};

/* opts.order: a table of the four group names, highest first, or one of the
 * names "A", "B", "A_neg". */
static void read_order(lua_State *L, int o, const char *fn, tl_quad order[4])
{
    memcpy(order, TL_MULTI_AUC_ORDER_A, 4 * sizeof(tl_quad));
    if (!o) return;
    int t = lua_getfield(L, o, "order");
    if (t == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        if (strcmp(s, "A") == 0) memcpy(order, TL_MULTI_AUC_ORDER_A, 4 * sizeof(tl_quad));
        else if (strcmp(s, "B") == 0) memcpy(order, TL_MULTI_AUC_ORDER_B, 4 * sizeof(tl_quad));
        else if (strcmp(s, "A_neg") == 0) memcpy(order, TL_MULTI_AUC_ORDER_A_NEG, 4 * sizeof(tl_quad));
        else luaL_error(L, "%s: field 'order' must be \"A\", \"B\", \"A_neg\" or a table of the four groups, got '%s'", fn, s);
    } else if (t == LUA_TTABLE) {
        if (lua_rawlen(L, -1) != 4)
            luaL_error(L, "%s: field 'order' must list the four groups \"++\", \"+-\", \"-+\", \"--\" (got %d items)",
                       fn, (int)lua_rawlen(L, -1));
        int seen = 0;
        for (int k = 0; k < 4; k++) {
            lua_rawgeti(L, -1, k + 1);
            const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
            int q = -1;
            for (int j = 0; quad_names[j]; j++)
                if (strcmp(s, quad_names[j]) == 0) q = j;
            if (q < 0 || (seen & (1 << q)))
                luaL_error(L, "%s: field 'order' must be a permutation of \"++\", \"+-\", \"-+\", \"--\" (item %d)", fn, k + 1);
            seen |= 1 << q;
            order[k] = (tl_quad)q;
            lua_pop(L, 1);
        }
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: field 'order' must be a string or a table, got %s", fn, tname(L, -1));
    }
    lua_pop(L, 1);
}

static int l_multi_auc(lua_State *L)
{
    static const char *const fields[] = {"weight", "mask", "order", NULL};
    const char *fn = "tl.metrics.multi_auc";
    lua_settop(L, 4); /* absent arguments become nil below our buffers */
    size_t n;
    const float *p = check_floats(L, 1, fn, "argument 1", -1, NULL, &n);
    const float *ya = check_floats(L, 2, fn, "argument 2", (lua_Integer)n, "argument 1", NULL);
    const float *yb = check_floats(L, 3, fn, "argument 3", (lua_Integer)n, "argument 1", NULL);
    int o = opt_table(L, 4, fn, fields);
    opt_cols c;
    read_opt_cols(L, o, fn, (lua_Integer)n, &c);
    tl_quad order[4];
    read_order(L, o, fn, order);
    double v, pairs[3];
    unsigned notes = 0;
    tl_status st = tl_metric_multi_auc(p, ya, yb, order, c.weight, c.mask, n, NULL, &v, pairs, &notes);
    if (st) return raise_status(L, fn, st);
    push_value_note(L, v, notes);
    lua_createtable(L, 3, 0);
    for (int k = 0; k < 3; k++) {
        lua_pushnumber(L, pairs[k]);
        lua_rawseti(L, -2, k + 1);
    }
    return 3;
}

typedef tl_status (*pointwise_fn)(const float *, const float *, const float *, const uint8_t *,
                                  size_t, double *, unsigned *);

static int pointwise(lua_State *L, const char *fn, pointwise_fn f)
{
    lua_settop(L, 3); /* absent arguments become nil below our buffers */
    size_t n;
    const float *p = check_floats(L, 1, fn, "argument 1", -1, NULL, &n);
    const float *y = check_floats(L, 2, fn, "argument 2", (lua_Integer)n, "argument 1", NULL);
    int o = opt_table(L, 3, fn, base_fields);
    opt_cols c;
    read_opt_cols(L, o, fn, (lua_Integer)n, &c);
    double v;
    unsigned notes = 0;
    tl_status st = f(p, y, c.weight, c.mask, n, &v, &notes);
    if (st) return raise_status(L, fn, st);
    return push_value_note(L, v, notes);
}

static int l_logloss(lua_State *L) { return pointwise(L, "tl.metrics.logloss", tl_metric_logloss); }
static int l_brier(lua_State *L) { return pointwise(L, "tl.metrics.brier", tl_metric_brier); }
static int l_mse(lua_State *L) { return pointwise(L, "tl.metrics.mse", tl_metric_mse); }
static int l_rmse(lua_State *L) { return pointwise(L, "tl.metrics.rmse", tl_metric_rmse); }
static int l_mae(lua_State *L) { return pointwise(L, "tl.metrics.mae", tl_metric_mae); }

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* evaluate / calibration: everything of tl_metrics_eval_binary as a table. */
static int evaluate(lua_State *L, const char *fn)
{
    static const char *const fields[] = {"bins", "strategy", "weight", "mask", "group",
                                         "field", "partner", "order", "task", NULL};
    static const char *const strategies[] = {"uniform", "quantile", NULL};
    lua_settop(L, 3); /* absent arguments become nil below our buffers */
    size_t n;
    const float *p = check_floats(L, 1, fn, "argument 1", -1, NULL, &n);
    const float *y = check_floats(L, 2, fn, "argument 2", (lua_Integer)n, "argument 1", NULL);
    int o = opt_table(L, 3, fn, fields);
    opt_cols c;
    read_opt_cols(L, o, fn, (lua_Integer)n, &c);
    tl_quad order[4];
    read_order(L, o, fn, order);
    int nb = o ? (int)tl_lua_opt_int(L, o, fn, "bins", 10, 1, 10000) : 10;
    int strategy = o ? tl_lua_opt_enum(L, o, fn, "strategy", strategies, 0) : 0;
    const char *task = o ? tl_lua_opt_string(L, o, fn, "task", "?") : "?";
    tl_calib_bin *bins = lua_newuserdatauv(L, (size_t)nb * sizeof(tl_calib_bin), 0);
    tl_eval_opts eo = {.task = task, .weight = c.weight, .mask = c.mask, .group = c.group,
                       .field = c.field, .partner = c.partner, .order = order, .n_bins = nb,
                       .strategy = strategy ? TL_BINS_QUANTILE : TL_BINS_UNIFORM, .bins = bins};
    tl_binary_eval e;
    tl_status st = tl_metrics_eval_binary(p, y, n, &eo, NULL, &e);
    if (st) return raise_status(L, fn, st);
    lua_createtable(L, 0, 24);
    lua_pushinteger(L, (lua_Integer)e.rows);
    lua_setfield(L, -2, "rows");
    set_num(L, "weight", e.weight);
    set_num(L, "base_rate", e.base_rate);
    set_num(L, "auc", e.auc);
    set_num(L, "logloss", e.logloss);
    set_num(L, "ne", e.ne);
    set_num(L, "brier", e.brier);
    set_num(L, "pcoc", e.pcoc);
    set_num(L, "ece", e.ece);
    set_num(L, "mce", e.mce);
    set_num(L, "slope", e.slope);
    set_num(L, "intercept", e.intercept);
    if (c.group) {
        set_num(L, "gauc", e.gauc);
        lua_pushinteger(L, (lua_Integer)e.gauc_groups);
        lua_setfield(L, -2, "gauc_groups");
    }
    if (c.field) set_num(L, "field_ce", e.field_ce);
    if (c.partner) set_num(L, "multi_auc", e.multi_auc);
    lua_pushstring(L, eo.strategy == TL_BINS_QUANTILE ? "quantile" : "uniform");
    lua_setfield(L, -2, "strategy");
    if (e.notes) {
        lua_pushstring(L, tl_metric_notes_str(e.notes));
        lua_setfield(L, -2, "notes");
    }
    lua_createtable(L, nb, 0);
    for (int k = 0; k < nb; k++) {
        const tl_calib_bin *b = &bins[k];
        lua_createtable(L, 0, 8);
        set_num(L, "lo", b->lo);
        set_num(L, "hi", b->hi);
        lua_pushinteger(L, (lua_Integer)b->count);
        lua_setfield(L, -2, "count");
        set_num(L, "weight", b->weight);
        set_num(L, "mean_pred", b->mean_pred);
        set_num(L, "rate", b->rate);
        set_num(L, "ci_lo", b->ci_lo);
        set_num(L, "ci_hi", b->ci_hi);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "bins");
    return 1;
}

static int l_calibration(lua_State *L) { return evaluate(L, "tl.metrics.calibration"); }
static int l_evaluate(lua_State *L) { return evaluate(L, "tl.metrics.evaluate"); }

/* ---- calibrators ------------------------------------------------------------- */

typedef struct {
    tl_calibrator *c;
} l_calib;

static l_calib *check_calib(lua_State *L, int idx)
{
    l_calib *u = luaL_checkudata(L, idx, CALIB_MT);
    if (!u->c) luaL_argerror(L, idx, "calibrator is closed");
    return u;
}

static int l_calibrator(lua_State *L)
{
    static const char *const fields[] = {"weight", "mask", NULL};
    const char *fn = "tl.metrics.calibrator";
    lua_settop(L, 4); /* absent arguments become nil below our buffers */
    size_t n;
    const float *p = check_floats(L, 1, fn, "argument 1", -1, NULL, &n);
    const float *y = check_floats(L, 2, fn, "argument 2", (lua_Integer)n, "argument 1", NULL);
    const char *kind_name = luaL_optstring(L, 3, "platt");
    tl_calib_kind kind;
    if (tl_calib_kind_parse(kind_name, &kind) != TL_OK)
        return luaL_error(L, "%s: argument 3 must be \"platt\", \"isotonic\" or \"temperature\", got '%s'",
                          fn, kind_name);
    int o = opt_table(L, 4, fn, fields);
    opt_cols c;
    read_opt_cols(L, o, fn, (lua_Integer)n, &c);
    /* The userdata exists before the fit so the result has an owner at once. */
    l_calib *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->c = NULL;
    luaL_setmetatable(L, CALIB_MT);
    tl_status st = tl_calibrator_fit(kind, p, y, c.weight, c.mask, n, &u->c);
    if (st) return raise_status(L, fn, st);
    tl_lua_note_alloc(L, tl_calibrator_serial_len(u->c) * sizeof(float));
    return 1;
}

static int l_calib_apply(lua_State *L)
{
    l_calib *u = check_calib(L, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_pushnumber(L, tl_calibrator_apply1(u->c, lua_tonumber(L, 2)));
        return 1;
    }
    size_t n;
    const float *p = check_floats(L, 2, "calibrator:apply", "argument 1", -1, NULL, &n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushnumber(L, (lua_Number)(float)tl_calibrator_apply1(u->c, p[i]));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int l_calib_params(lua_State *L)
{
    l_calib *u = check_calib(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, tl_calib_kind_name(tl_calibrator_kind(u->c)));
    lua_setfield(L, -2, "kind");
    switch (tl_calibrator_kind(u->c)) {
    case TL_CALIB_PLATT: {
        double a, b;
        tl_calibrator_platt_params(u->c, &a, &b);
        set_num(L, "a", a);
        set_num(L, "b", b);
        break;
    }
    case TL_CALIB_TEMPERATURE: set_num(L, "T", tl_calibrator_temperature(u->c)); break;
    case TL_CALIB_ISOTONIC: {
        const float *x, *y;
        size_t k = tl_calibrator_knots(u->c, &x, &y);
        for (int j = 0; j < 2; j++) {
            const float *v = j ? y : x;
            lua_createtable(L, (int)k, 0);
            for (size_t i = 0; i < k; i++) {
                lua_pushnumber(L, v[i]);
                lua_rawseti(L, -2, (lua_Integer)i + 1);
            }
            lua_setfield(L, -2, j ? "y" : "x");
        }
        break;
    }
    }
    return 1;
}

static int l_calib_serialize(lua_State *L)
{
    l_calib *u = check_calib(L, 1);
    size_t len = tl_calibrator_serial_len(u->c);
    float *buf = lua_newuserdatauv(L, len * sizeof(float), 0);
    tl_status st = tl_calibrator_serialize(u->c, buf, len);
    if (st) return raise_status(L, "calibrator:serialize", st);
    lua_createtable(L, (int)len, 0);
    for (size_t i = 0; i < len; i++) {
        lua_pushnumber(L, buf[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int l_load_calibrator(lua_State *L)
{
    const char *fn = "tl.metrics.load_calibrator";
    lua_settop(L, 1); /* absent arguments become nil below our buffers */
    size_t n;
    const float *buf = check_floats(L, 1, fn, "argument 1", -1, NULL, &n);
    l_calib *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->c = NULL;
    luaL_setmetatable(L, CALIB_MT);
    tl_status st = tl_calibrator_deserialize(buf, n, &u->c);
    if (st) return raise_status(L, fn, st);
    return 1;
}

static int l_calib_tostring(lua_State *L)
{
    l_calib *u = luaL_checkudata(L, 1, CALIB_MT);
    char buf[160];
    if (!u->c) lua_pushliteral(L, "calibrator (closed)");
    else lua_pushfstring(L, "calibrator %s", tl_calibrator_describe(u->c, buf, sizeof buf));
    return 1;
}

static int l_calib_gc(lua_State *L)
{
    l_calib *u = luaL_checkudata(L, 1, CALIB_MT);
    tl_calibrator_free(u->c);
    u->c = NULL;
    return 0;
}

static const luaL_Reg calib_methods[] = {{"apply", l_calib_apply},
                                         {"params", l_calib_params},
                                         {"serialize", l_calib_serialize},
                                         {NULL, NULL}};

static const luaL_Reg calib_meta[] = {
    {"__tostring", l_calib_tostring}, {"__gc", l_calib_gc}, {"__close", l_calib_gc}, {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"auc", l_auc},           {"gauc", l_gauc},
    {"multi_auc", l_multi_auc}, {"logloss", l_logloss},
    {"brier", l_brier},       {"mse", l_mse},
    {"rmse", l_rmse},         {"mae", l_mae},
    {"calibration", l_calibration}, {"evaluate", l_evaluate},
    {"calibrator", l_calibrator}, {"load_calibrator", l_load_calibrator},
    {NULL, NULL}};

static const char *const docs[][2] = {
    {"auc", "tl.metrics.auc(pred, label [, {weight=, mask=}]) -> auc, note\n"
            "  exact ROC AUC (ties count half; weights = weighted pairs). One class: nan and a note."},
    {"gauc", "tl.metrics.gauc(pred, label, group [, {weight=, mask=}]) -> gauc, note, groups_used\n"
             "  AUC per group (integer ids), mean weighted by group impressions (Σ weight);\n"
             "  groups with one class are skipped."},
    {"multi_auc", "tl.metrics.multi_auc(pred, label_a, label_b [, {order=, weight=, mask=}]) -> v, note, pairs\n"
                  "  CrossDistil Multi-AUC: mean AUC of adjacent groups in the order (highest first)\n"
                  "  order = {\"++\",\"+-\",\"-+\",\"--\"} (default, groups by (label_a,label_b)),\n"
                  "  or \"A\", \"B\" (++ > -+ > +- > --), \"A_neg\" (+- > ++ > -- > -+)."},
    {"logloss", "tl.metrics.logloss(pred, label [, {weight=, mask=}]) -> mean BCE (p clipped to [1e-7, 1-1e-7])"},
    {"brier", "tl.metrics.brier(pred, label [, opts]) -> mean (p - y)^2"},
    {"mse", "tl.metrics.mse(pred, label [, {weight=, mask=}]) -> mean squared error"},
    {"rmse", "tl.metrics.rmse(pred, label [, opts]) -> sqrt(mse)"},
    {"mae", "tl.metrics.mae(pred, label [, opts]) -> mean absolute error"},
    {"calibration", "tl.metrics.calibration(pred, label [, {bins=10, strategy=\"uniform\"|\"quantile\",\n"
                    "    weight=, mask=, field=, group=, partner=, order=}]) -> table\n"
                    "  {ece, mce, pcoc, brier, slope, intercept, ne, logloss, auc, base_rate, rows,\n"
                    "   field_ce (with field=), gauc (with group=), multi_auc (with partner=), notes,\n"
                    "   bins = {{lo, hi, count, weight, mean_pred, rate, ci_lo, ci_hi}, ...}}\n"
                    "  empty bins have count 0 and nan means; ci = 95% Wilson interval."},
    {"evaluate", "tl.metrics.evaluate(pred, label [, opts]): the same table as tl.metrics.calibration"},
    {"calibrator", "tl.metrics.calibrator(pred, label [, \"platt\"|\"isotonic\"|\"temperature\" [, {weight=, mask=}]])\n"
                   "  -> calibrator c: c:apply(p or array), c:params(), c:serialize() -> array of numbers\n"
                   "  platt: sigmoid(a*logit(p)+b); temperature: sigmoid(logit(p)/T);\n"
                   "  isotonic: PAV, linear between blocks (as sklearn's IsotonicRegression)"},
    {"load_calibrator", "tl.metrics.load_calibrator(array) -> calibrator from c:serialize()"},
    {NULL, NULL}};

void tl_lua_open_metrics(lua_State *L, int tl)
{
    tl = lua_absindex(L, tl);
    if (luaL_newmetatable(L, CALIB_MT)) {
        luaL_setfuncs(L, calib_meta, 0);
        luaL_newlib(L, calib_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_getfield(L, -1, "__index");
    static const char *const method_docs[][2] = {
        {"apply", "calibrator:apply(p) -> calibrated probability; apply(array) -> new array"},
        {"params", "calibrator:params() -> {kind=, a=, b=} | {kind=, T=} | {kind=, x={...}, y={...}}"},
        {"serialize", "calibrator:serialize() -> flat array of numbers (tl.metrics.load_calibrator reads it)"},
        {NULL, NULL}};
    for (int i = 0; method_docs[i][0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "calibrator:%s", method_docs[i][0]);
        lua_getfield(L, -1, method_docs[i][0]);
        tl_lua_doc(L, name, -1, method_docs[i][1]);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);

    luaL_newlib(L, funcs);
    for (int i = 0; docs[i][0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "tl.metrics.%s", docs[i][0]);
        lua_getfield(L, -1, docs[i][0]);
        tl_lua_doc(L, name, -1, docs[i][1]);
        lua_pop(L, 1);
    }
    tl_lua_doc(L, "tl.metrics", -1,
               "tl.metrics: auc, gauc, multi_auc, logloss, brier, mse, rmse, mae,\n"
               "  calibration/evaluate (ece, mce, pcoc, brier, slope, intercept, ne, bins),\n"
               "  calibrator(pred, label, kind), load_calibrator(array). help(tl.metrics.auc) etc.\n"
               "  Arrays are Lua arrays (1-based) or tensors; undefined values are nan plus a note.");
    lua_setfield(L, tl, "metrics");
}
