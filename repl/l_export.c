/* l_export.c — m:export(path [, opts]) (engine/export/export.h).
 *
 *   m:export("model.onnx", {opset=17, tasks={"ctr"}, calibrated=true})
 *   m:export("model.c", {name="ctr_model"})   -- or "model.h": the same as a header
 *
 * Writes the file and the vocabularies beside it (<path without extension>
 * .vocab.json); returns both paths. */
#include "l_export.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "export/export.h"
#include "l_data.h"
#include "l_model.h"
#include "l_mpi.h"
#include "l_util.h"

#define FN "m:export"

static const char *ends(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0 ? s + n - k : NULL;
}

/* Bit k for each task named in opts.tasks (0 = every task). */
static unsigned opt_tasks(lua_State *L, int opts, tl_model *m)
{
    unsigned bits = 0;
    if (lua_getfield(L, opts, "tasks") == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) luaL_error(L, FN ": field 'tasks' must be a list of task names");
    lua_Integer n = luaL_len(L, -1);
    if (n == 0) luaL_error(L, FN ": field 'tasks' is empty");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, -1, i);
        const char *t = lua_tostring(L, -1);
        int k = t ? tl_model_task_index(m, t) : -1;
        if (k < 0) luaL_error(L, FN ": tasks[%d] = %s is not a task of the model", (int)i, t ? t : "?");
        bits |= 1u << k;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return bits;
}

/* The dataset: opts.data, or the one the model was built on. */
static const tl_dataset *export_data(lua_State *L, int opts)
{
    const tl_dataset *d = NULL;
    if (opts && lua_getfield(L, opts, "data") != LUA_TNIL) {
        d = tl_lua_check_dataset(L, -1);
        lua_pop(L, 1);
        return d;
    }
    if (opts) lua_pop(L, 1);
    lua_getfield(L, 1, "data");
    d = tl_lua_test_dataset(L, -1);
    lua_pop(L, 1);
    if (!d)
        luaL_error(L, FN ": the model has no dataset (loaded with tl.load?): pass {data=d}, the data "
                   "it was trained on (its vocabularies and numeric statistics are exported)");
    return d;
}

static int l_model_export(lua_State *L)
{
    tl_lua_model *u = tl_lua_check_model_ud(L, 1);
    if (u->busy) return luaL_error(L, FN ": the model is training");
    tl_model *m = u->m;
    const char *path = luaL_checkstring(L, 2);
    int opts = lua_isnoneornil(L, 3) ? 0 : 3;
    if (opts) luaL_checktype(L, 3, LUA_TTABLE);
    static const char *const fields[] = {"opset", "tasks", "calibrated", "data", "name", NULL};
    if (opts) tl_lua_check_fields(L, opts, FN, fields);
    const char *ext = ends(path, ".onnx");
    int kind = ext ? 0 : (ext = ends(path, ".c")) ? 1 : (ext = ends(path, ".h")) ? 2 : -1;
    if (kind < 0)
        return luaL_error(L, FN ": '%s': the file name must end in .onnx, .c or .h", path);
    tl_export_options o = {0, 0};
    int opset = 17;
    const char *name = NULL;
    if (opts) {
        o.tasks = opt_tasks(L, opts, m);
        o.calibrated = tl_lua_opt_bool(L, opts, FN, "calibrated", 0);
        opset = (int)tl_lua_opt_int(L, opts, FN, "opset", 17, 1, 1000);
        name = tl_lua_opt_string(L, opts, FN, "name", NULL);
        if (kind == 0 && name) return luaL_error(L, FN ": field 'name' is for .c and .h files");
    }
    const tl_dataset *d = export_data(L, opts);
    tl_lua_check_model_encodings(L, m, d, FN, "field 'data'");
    /* the C prefix defaults to the file's base name */
    if (kind && !name) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        lua_pushlstring(L, base, (size_t)(ext - base));
        name = lua_tostring(L, -1);
    }
    tl_status st = TL_OK;
    int here = tl_lua_mpi_writes(); /* under mpirun rank 0 writes */
    if (here && kind == 0)
        st = tl_export_onnx(m, d, &o, opset, path);
    else if (here)
        st = tl_export_c(m, d, &o, name, kind == 2, path);
    if (st) return tl_lua_raise_status(L, FN, st);
    lua_pushlstring(L, path, (size_t)(ext - path));
    lua_pushstring(L, ".vocab.json");
    lua_concat(L, 2);
    const char *json = lua_tostring(L, -1);
    if (here && (st = tl_export_vocab_json(m, d, &o, json)) != TL_OK) return tl_lua_raise_status(L, FN, st);
    lua_pushstring(L, path);
    lua_insert(L, -2);
    return 2;
}

void tl_lua_open_export(lua_State *L, int tl)
{
    (void)tl;
    tl_lua_model_method(L, "export", l_model_export);
    luaL_getmetatable(L, TL_MODEL_MT);
    lua_getfield(L, -1, "methods");
    static const tl_lua_doc_entry docs[] = {
        {"export", "m:export",
         "m:export(\"model.onnx\" [, {opset=17, tasks={\"ctr\",...}, calibrated=false, data=d}])\n"
         "m:export(\"model.c\" | \"model.h\" [, {name=\"model\", tasks=, calibrated=, data=}])\n"
         "  -> path, vocab_path\n"
         "Write a trained model for serving: a standard ONNX model (IR 8, opset 13..17, dynamic\n"
         "batch) or one dependency-free C99 file with <name>_predict(ids, numeric, n, out); and\n"
         "<path>.vocab.json beside it, the vocabularies a server encodes raw values with. Inputs:\n"
         "the encoded ids and the raw numeric columns (normalisation is in the model), and per\n"
         "multi-valued field its ids padded with -1 (ONNX input \"bag.<field>\"; the C function\n"
         "then takes (ids, bags, numeric, n, out)); outputs:\n"
         "each task's probability (or value). calibrated=true applies tl.calibrate's calibrators.\n"
         "data= is the model's dataset (default: the one it was built on). README: Serving a model."},
    };
    tl_lua_docs(L, lua_gettop(L), docs, sizeof docs / sizeof *docs);
    lua_pop(L, 2);
}
