/* l_tensor.c — Lua tensors over engine/tensor.h.
 *
 * A tensor userdata holds a pointer to an engine tensor (NULL once closed).
 * t[i] on a tensor of rank > 1 is a view of row i: a non-owning engine tensor
 * whose userdata keeps the parent alive through its user value. Lua indices
 * are 1-based; every conversion to C's 0-based offsets happens here. */
#include "l_tensor.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "l_util.h"

typedef struct {
    tl_tensor *t;
} tensor_ud;

static tensor_ud *to_ud(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, TL_TENSOR_MT);
}

tl_tensor *tl_lua_check_tensor(lua_State *L, int idx)
{
    tensor_ud *u = to_ud(L, idx);
    if (!u->t) luaL_argerror(L, idx, "tensor is closed");
    return u->t;
}

tl_tensor *tl_lua_test_tensor(lua_State *L, int idx)
{
    tensor_ud *u = luaL_testudata(L, idx, TL_TENSOR_MT);
    return u ? u->t : NULL;
}

static int make_ud(lua_State *L)
{
    tl_tensor *t = lua_touserdata(L, 1);
    tensor_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->t = NULL;
    luaL_setmetatable(L, TL_TENSOR_MT);
    u->t = t;
    return 1;
}

void tl_lua_push_tensor(lua_State *L, tl_tensor *owned)
{
    /* Protected, so that a memory error cannot leak the engine tensor. */
    lua_pushcfunction(L, make_ud);
    lua_pushlightuserdata(L, owned);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        tl_tensor_free(owned);
        lua_error(L);
    }
    if (owned && owned->data) tl_lua_note_alloc(L, (size_t)tl_tensor_numel(owned) * sizeof(float));
}

/* ---- construction ------------------------------------------------------- */

/* Read a shape from the arguments starting at `first`: either integers
 * (zeros(2, 3)) or one table ({2, 3}). Returns ndim. */
static int get_shape(lua_State *L, int first, const char *fn, int64_t shape[TL_MAX_DIMS])
{
    int top = lua_gettop(L), ndim = 0;
    if (lua_type(L, first) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, first);
        if (n < 1 || n > TL_MAX_DIMS)
            return luaL_error(L, "%s: shape must have 1 to %d dimensions, got %I", fn,
                              TL_MAX_DIMS, n);
        for (int i = 0; i < (int)n; i++) {
            lua_rawgeti(L, first, i + 1);
            int ok = 0;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok || v < 1)
                return luaL_error(L, "%s: shape[%d] must be a positive integer, got %s", fn,
                                  i + 1, luaL_tolstring(L, -1, NULL));
            shape[ndim++] = v;
            lua_pop(L, 1);
        }
        return ndim;
    }
    for (int i = first; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
        if (ndim == TL_MAX_DIMS)
            return luaL_error(L, "%s: at most %d dimensions", fn, TL_MAX_DIMS);
        int ok = 0;
        lua_Integer v = lua_tointegerx(L, i, &ok);
        if (!ok || v < 1)
            return luaL_error(L, "%s: dimension %d must be a positive integer, got %s", fn,
                              ndim + 1, luaL_tolstring(L, i, NULL));
        shape[ndim++] = v;
    }
    if (ndim == 0) return luaL_error(L, "%s: expected a shape (integers or a table)", fn);
    return ndim;
}

/* New tensor of `shape`, pushed; raises on engine failure. */
static tl_tensor *push_new(lua_State *L, const char *fn, int ndim, const int64_t *shape)
{
    double bytes = sizeof(float);
    for (int i = 0; i < ndim; i++) bytes *= (double)shape[i];
    if (bytes >= 64e6) tl_lua_memory_refresh(); /* a big one: check against MemAvailable now */
    tl_tensor *t = tl_tensor_new(ndim, shape);
    if (!t) tl_lua_raise_status(L, fn, TL_ERR_SHAPE);
    tl_lua_push_tensor(L, t);
    return t;
}

static int l_zeros(lua_State *L)
{
    int64_t shape[TL_MAX_DIMS];
    int ndim = get_shape(L, 1, "tl.tensor.zeros", shape);
    push_new(L, "tl.tensor.zeros", ndim, shape);
    return 1;
}

static int l_ones(lua_State *L)
{
    int64_t shape[TL_MAX_DIMS];
    int ndim = get_shape(L, 1, "tl.tensor.ones", shape);
    tl_tensor *t = push_new(L, "tl.tensor.ones", ndim, shape);
    int64_t n = tl_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = 1.0f;
    return 1;
}

static const char *const random_fields[] = {"seed", "scale", NULL};

/* randn / rand: shape, then an optional options table {seed=, scale=}. */
static int random_tensor(lua_State *L, const char *fn, tl_init init)
{
    int64_t shape[TL_MAX_DIMS];
    int ndim = get_shape(L, 1, fn, shape);
    int opts = lua_gettop(L); /* a trailing table after the shape */
    if (opts < 2 || lua_type(L, opts) != LUA_TTABLE) opts = 0;
    lua_Integer seed = 0;
    double scale = 1.0;
    if (opts) {
        tl_lua_check_fields(L, opts, fn, random_fields);
        lua_getfield(L, opts, "seed");
        int has_seed = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (has_seed)
            seed = tl_lua_opt_int(L, opts, fn, "seed", 0, 0, LUA_MAXINTEGER);
        else
            seed = tl_lua_next_seed(L);
        scale = tl_lua_opt_number(L, opts, fn, "scale", 1.0, 0.0, HUGE_VAL);
    } else {
        seed = tl_lua_next_seed(L);
    }
    tl_tensor *t = push_new(L, fn, ndim, shape);
    tl_rng rng;
    tl_rng_seed(&rng, (uint64_t)seed);
    tl_status s = tl_tensor_init(t, init, (float)scale, &rng);
    if (s != TL_OK) return tl_lua_raise_status(L, fn, s);
    return 1;
}

static int l_randn(lua_State *L) { return random_tensor(L, "tl.tensor.randn", TL_INIT_NORMAL); }
static int l_rand(lua_State *L) { return random_tensor(L, "tl.tensor.rand", TL_INIT_UNIFORM); }

/* Infer the shape of nested tables {{1,2},{3,4}}: follow the first elements. */
static int infer_shape(lua_State *L, int idx, int64_t shape[TL_MAX_DIMS])
{
    int ndim = 0;
    lua_pushvalue(L, idx);
    while (lua_type(L, -1) == LUA_TTABLE) {
        if (ndim == TL_MAX_DIMS) {
            luaL_error(L, "tl.tensor: nesting deeper than %d dimensions", TL_MAX_DIMS);
        }
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        if (n == 0) luaL_error(L, "tl.tensor: empty table at dimension %d", ndim + 1);
        shape[ndim++] = n;
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    return ndim;
}

/* Copy nested tables at `idx` (level `dim`) into data; checks ragged rows. */
static void fill_from(lua_State *L, int idx, const tl_tensor *t, int dim, float **out,
                      char *path, size_t pathlen)
{
    int64_t n = (int64_t)lua_rawlen(L, idx);
    if (n != t->shape[dim])
        luaL_error(L, "tl.tensor: row%s has %I elements, expected %I", path, (lua_Integer)n,
                   (lua_Integer)t->shape[dim]);
    for (int64_t i = 0; i < n; i++) {
        int ty = lua_rawgeti(L, idx, (lua_Integer)i + 1);
        size_t used = strlen(path);
        snprintf(path + used, pathlen - used, "[%lld]", (long long)i + 1);
        if (dim + 1 < t->ndim) {
            if (ty != LUA_TTABLE)
                luaL_error(L, "tl.tensor: element%s must be a table, got %s", path,
                           luaL_typename(L, -1));
            fill_from(L, lua_gettop(L), t, dim + 1, out, path, pathlen);
        } else {
            int ok = 0;
            lua_Number v = lua_tonumberx(L, -1, &ok);
            if (!ok || ty != LUA_TNUMBER)
                luaL_error(L, "tl.tensor: element%s must be a number, got %s", path,
                           luaL_typename(L, -1));
            *(*out)++ = (float)v;
        }
        path[used] = '\0';
        lua_pop(L, 1);
    }
}

/* tl.tensor{...}: called through the tl.tensor table's __call. */
static int l_tensor_call(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TUSERDATA && tl_lua_test_tensor(L, 2)) {
        const tl_tensor *src = tl_lua_check_tensor(L, 2);
        tl_tensor *t = push_new(L, "tl.tensor", src->ndim, src->shape);
        memcpy(t->data, src->data, (size_t)tl_tensor_numel(src) * sizeof(float));
        return 1;
    }
    luaL_argexpected(L, lua_type(L, 2) == LUA_TTABLE, 1, "table of numbers");
    int64_t shape[TL_MAX_DIMS];
    int ndim = infer_shape(L, 2, shape);
    if (ndim == 0) return luaL_error(L, "tl.tensor: expected a table of numbers");
    tl_tensor *t = push_new(L, "tl.tensor", ndim, shape);
    float *p = t->data;
    char path[96] = "";
    fill_from(L, 2, t, 0, &p, path, sizeof path);
    return 1;
}

/* ---- access -------------------------------------------------------------- */

static void shape_str(const tl_tensor *t, char *buf, size_t n)
{
    tl_tensor_shape_str(t, buf, n);
}

/* Convert the Lua indices at first..first+t->ndim-1 to a flat C offset. */
static int64_t flat_offset(lua_State *L, const tl_tensor *t, int first, const char *fn)
{
    int nargs = lua_gettop(L) - first + 1;
    if (nargs < t->ndim) {
        char b[64];
        shape_str(t, b, sizeof b);
        luaL_error(L, "%s: expected %d indices for a tensor of shape %s, got %d", fn, t->ndim,
                   b, nargs < 0 ? 0 : nargs);
    }
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++) {
        lua_Integer i = luaL_checkinteger(L, first + d);
        if (i < 1 || i > t->shape[d])
            luaL_error(L, "%s: index %I out of range for dimension %d of size %I", fn, i, d + 1,
                       (lua_Integer)t->shape[d]);
        off = off * t->shape[d] + (i - 1);
    }
    return off;
}

static int l_get(lua_State *L)
{
    const tl_tensor *t = tl_lua_check_tensor(L, 1);
    int64_t off = flat_offset(L, t, 2, "tensor:get");
    lua_pushnumber(L, (lua_Number)t->data[off]);
    return 1;
}

static int l_set(lua_State *L)
{
    tl_tensor *t = tl_lua_check_tensor(L, 1);
    int top = lua_gettop(L);
    if (top != t->ndim + 2) {
        char b[64];
        shape_str(t, b, sizeof b);
        return luaL_error(L, "tensor:set: expected %d indices and a value for a tensor of shape %s",
                          t->ndim, b);
    }
    lua_Number v = luaL_checknumber(L, top);
    lua_settop(L, top - 1);
    int64_t off = flat_offset(L, t, 2, "tensor:set");
    t->data[off] = (float)v;
    lua_settop(L, 1);
    return 1;
}

static int l_shape(lua_State *L)
{
    const tl_tensor *t = tl_lua_check_tensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
        lua_pushinteger(L, (lua_Integer)t->shape[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

static int l_dim(lua_State *L)
{
    lua_pushinteger(L, tl_lua_check_tensor(L, 1)->ndim);
    return 1;
}

static int l_numel(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)tl_tensor_numel(tl_lua_check_tensor(L, 1)));
    return 1;
}

static int l_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)tl_lua_check_tensor(L, 1)->shape[0]);
    return 1;
}

static const float *push_table_rec(lua_State *L, const tl_tensor *t, int dim, const float *p)
{
    lua_createtable(L, (int)t->shape[dim], 0);
    for (int64_t i = 0; i < t->shape[dim]; i++) {
        if (dim + 1 < t->ndim) {
            p = push_table_rec(L, t, dim + 1, p);
        } else {
            lua_pushnumber(L, (lua_Number)*p++);
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return p;
}

static int l_totable(lua_State *L)
{
    const tl_tensor *t = tl_lua_check_tensor(L, 1);
    luaL_checkstack(L, t->ndim + 4, "tensor:totable");
    push_table_rec(L, t, 0, t->data);
    return 1;
}

static int l_fill(lua_State *L)
{
    tl_tensor *t = tl_lua_check_tensor(L, 1);
    float v = (float)luaL_checknumber(L, 2);
    int64_t n = tl_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = v;
    lua_settop(L, 1);
    return 1;
}

static int l_clone(lua_State *L)
{
    const tl_tensor *src = tl_lua_check_tensor(L, 1);
    tl_tensor *t = push_new(L, "tensor:clone", src->ndim, src->shape);
    memcpy(t->data, src->data, (size_t)tl_tensor_numel(src) * sizeof(float));
    return 1;
}

static int l_sum(lua_State *L)
{
    const tl_tensor *t = tl_lua_check_tensor(L, 1);
    int64_t n = tl_tensor_numel(t);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)t->data[i];
    lua_pushnumber(L, (lua_Number)s);
    return 1;
}

/* t[i]: a number for rank 1, a view of row i otherwise; t.method otherwise. */
static int l_index(lua_State *L)
{
    const tl_tensor *t = tl_lua_check_tensor(L, 1);
    if (lua_type(L, 2) != LUA_TNUMBER) {
        luaL_getmetatable(L, TL_TENSOR_MT);
        lua_getfield(L, -1, "__methods");
        lua_pushvalue(L, 2);
        lua_rawget(L, -2);
        return 1;
    }
    int ok = 0;
    lua_Integer i = lua_tointegerx(L, 2, &ok);
    if (!ok) return luaL_error(L, "tensor: index must be an integer, got %s", luaL_tolstring(L, 2, NULL));
    if (i < 1 || i > t->shape[0])
        return luaL_error(L, "tensor: index %I out of range for dimension 1 of size %I", i,
                          (lua_Integer)t->shape[0]);
    if (t->ndim == 1) {
        lua_pushnumber(L, (lua_Number)t->data[i - 1]);
        return 1;
    }
    int64_t row = tl_tensor_numel(t) / t->shape[0];
    tl_tensor *v = tl_tensor_view(t->data + (i - 1) * row, t->ndim - 1, t->shape + 1);
    if (!v) return tl_lua_raise_status(L, "tensor", TL_ERR_NOMEM);
    tl_lua_push_tensor(L, v);
    lua_pushvalue(L, 1); /* the view keeps its parent alive */
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int l_newindex(lua_State *L)
{
    tl_tensor *t = tl_lua_check_tensor(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    if (t->ndim != 1)
        return luaL_error(L, "tensor: t[i] = v needs a rank-1 tensor; use t:set(...) for rank %d",
                          t->ndim);
    if (i < 1 || i > t->shape[0])
        return luaL_error(L, "tensor: index %I out of range for dimension 1 of size %I", i,
                          (lua_Integer)t->shape[0]);
    t->data[i - 1] = (float)luaL_checknumber(L, 3);
    return 0;
}

static int l_gc(lua_State *L)
{
    tensor_ud *u = to_ud(L, 1);
    tl_tensor_free(u->t);
    u->t = NULL;
    return 0;
}

/* Append "%g"-style number padded to a column. */
static void add_num(luaL_Buffer *b, float v)
{
    char s[32];
    snprintf(s, sizeof s, " %10.4g", (double)v);
    luaL_addstring(b, s);
}

enum { EDGE = 3 }; /* rows/columns shown at each corner */

static void add_row(luaL_Buffer *b, const float *row, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        if (n > 2 * EDGE && j == EDGE) {
            luaL_addstring(b, "        ...");
            j = n - EDGE;
        }
        add_num(b, row[j]);
    }
}

static int l_tostring(lua_State *L)
{
    tensor_ud *u = to_ud(L, 1);
    if (!u->t) {
        lua_pushliteral(L, "tl.tensor (closed)");
        return 1;
    }
    const tl_tensor *t = u->t;
    char sh[96];
    shape_str(t, sh, sizeof sh);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "tl.tensor");
    luaL_addstring(&b, sh);
    if (!t->owns) luaL_addstring(&b, " (view)");
    int64_t cols = t->shape[t->ndim - 1];
    int64_t rows = t->ndim >= 2 ? t->shape[t->ndim - 2] : 1;
    if (t->ndim > 2) luaL_addstring(&b, "\n first matrix [1, ..., :, :]:");
    for (int64_t i = 0; i < rows; i++) {
        if (rows > 2 * EDGE && i == EDGE) {
            luaL_addstring(&b, "\n ...");
            i = rows - EDGE;
        }
        luaL_addchar(&b, '\n');
        add_row(&b, t->data + i * cols, cols);
    }
    luaL_pushresult(&b);
    return 1;
}

static const char *const method_docs[][2] = {
    {"get", "t:get(i, j, ...) -> number at 1-based indices (one per dimension)"},
    {"set", "t:set(i, j, ..., v) stores v at 1-based indices; returns t"},
    {"shape", "t:shape() -> {d1, ..., dk}"},
    {"dim", "t:dim() -> rank k"},
    {"numel", "t:numel() -> number of elements"},
    {"totable", "t:totable() -> nested Lua tables of numbers"},
    {"fill", "t:fill(v) sets every element to v; returns t"},
    {"clone", "t:clone() -> an owning copy (also of a row view)"},
    {"sum", "t:sum() -> sum of all elements (accumulated in double)"},
    {NULL, NULL}};

static const luaL_Reg methods[] = {
    {"get", l_get},     {"set", l_set},     {"shape", l_shape}, {"dim", l_dim},
    {"numel", l_numel}, {"totable", l_totable}, {"fill", l_fill}, {"clone", l_clone},
    {"sum", l_sum},     {NULL, NULL}};

static const luaL_Reg meta[] = {
    {"__index", l_index}, {"__newindex", l_newindex}, {"__len", l_len},
    {"__tostring", l_tostring}, {"__gc", l_gc}, {"__close", l_gc}, {NULL, NULL}};

static const luaL_Reg ctors[] = {
    {"zeros", l_zeros}, {"ones", l_ones}, {"randn", l_randn}, {"rand", l_rand}, {NULL, NULL}};

void tl_lua_open_tensor(lua_State *L, int tl)
{
    tl = lua_absindex(L, tl);
    /* __index is a function (numbers index rows), so the methods live in
     * __methods where tab completion finds them too. */
    if (luaL_newmetatable(L, TL_TENSOR_MT)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__methods");
    }
    lua_getfield(L, -1, "__methods");
    for (int i = 0; method_docs[i][0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "tensor:%s", method_docs[i][0]);
        lua_getfield(L, -1, method_docs[i][0]);
        tl_lua_doc(L, name, -1, method_docs[i][1]);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);

    luaL_newlib(L, ctors);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_tensor_call);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, tl, "tensor");
    tl_lua_doc(L, "tl.tensor", -1,
               "tl.tensor{{1,2},{3,4}}  new float32 tensor from nested tables (rank 1..4)\n"
               "tl.tensor(t)            copy of tensor t\n"
               "tl.tensor.zeros(2,3), .ones(...), .randn(2,3,{seed=,scale=}), .rand(...)\n"
               "  shape as integers or one table {2,3}; seed defaults to a stream from tl.seed\n"
               "methods: t:shape() t:dim() t:numel() t:get(i,j) t:set(i,j,v) t:totable()\n"
               "         t:fill(v) t:clone() t:sum(); #t rows; t[i] row view or number (1-based)");
    lua_getfield(L, -1, "zeros");
    tl_lua_doc(L, "tl.tensor.zeros", -1, "tl.tensor.zeros(d1, ..., dk) or zeros{d1,...}: zero tensor");
    lua_pop(L, 1);
    lua_getfield(L, -1, "randn");
    tl_lua_doc(L, "tl.tensor.randn", -1,
               "tl.tensor.randn(d1, ..., {seed=, scale=}): N(0, scale^2) entries");
    lua_pop(L, 2);
}
