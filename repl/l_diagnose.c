/* l_diagnose.c — Lua bindings of engine/diagnose.h: m:gates(split [, opts]),
 * d:leakage([split] [, opts]). (The warnings tl.data.csv prints when it builds
 * a dataset are l_leakage.c; fit{diagnostics=N} and the collapse warning
 * after fit live in l_fit.c, m:history().diagnostics in l_results.c.) */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "l_diagnose.h"

#include "diagnose.h"
#include "l_data.h"
#include "l_leakage.h"
#include "l_model.h"
#include "l_util.h"

#define LEAKAGE_MT "tl.leakage"


/* ---- m:gates ------------------------------------------------------------------ */

/* The display name of id `id` of field f. Pushes it. */
static void push_value_name(lua_State *L, const tl_dataset *d, int f, int32_t id)
{
    const char *v = tl_dataset_vocab_string(d, f, id);
    const char *kind = tl_dataset_cat_kind(d, f);
    if (v) lua_pushstring(L, v);
    else if (kind && strcmp(kind, "vocab") == 0 && id == 0) lua_pushliteral(L, "<unseen>");
    else if (kind && strcmp(kind, "vocab") == 0 && id == 1) lua_pushliteral(L, "<missing>");
    else lua_pushfstring(L, "#%d", (int)id);
}

/* {tasks=, experts=, weights={{...}}, entropy={task=}, rows=} from means. */
static void push_gate_table(lua_State *L, const tl_model_config *c, int E, const double *w,
                            const double *ent, double rows)
{
    lua_createtable(L, 0, 6);
    lua_createtable(L, c->n_tasks, 0);
    for (int k = 0; k < c->n_tasks; k++) {
        lua_pushstring(L, c->tasks[k].name);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "tasks");
    lua_pushinteger(L, E);
    lua_setfield(L, -2, "experts");
    lua_createtable(L, c->n_tasks, 0);
    for (int k = 0; k < c->n_tasks; k++) {
        lua_createtable(L, E, 0);
        for (int e = 0; e < E; e++) {
            lua_pushnumber(L, w[(size_t)k * (size_t)E + (size_t)e]);
            lua_rawseti(L, -2, e + 1);
        }
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "weights");
    if (ent) {
        lua_createtable(L, 0, c->n_tasks);
        for (int k = 0; k < c->n_tasks; k++) {
            lua_pushnumber(L, ent[k]);
            lua_setfield(L, -2, c->tasks[k].name);
        }
        lua_setfield(L, -2, "entropy");
    }
    lua_pushinteger(L, (lua_Integer)rows);
    lua_setfield(L, -2, "rows");
}

/* m:gates([split] [, {field=, level=}]) */
static int l_gates(lua_State *L)
{
    const char *fn = "m:gates";
    tl_model *m = tl_lua_check_model(L, 1);
    const tl_model_config *c = tl_model_config_get(m);
    if (lua_istable(L, 2) && lua_isnoneornil(L, 3)) { /* m:gates{field=} */
        lua_pushnil(L);
        lua_insert(L, 2);
    }
    lua_settop(L, 3);
    if (lua_isnil(L, 2)) { /* the model's dataset's validation split */
        if (lua_getfield(L, 1, "data") == LUA_TUSERDATA) lua_getfield(L, -1, "valid");
        else lua_pushnil(L);
        if (lua_isnil(L, -1))
            return luaL_error(L, "%s: argument 1 must be a split (e.g. d.valid)", fn);
        lua_replace(L, 2);
        lua_settop(L, 3);
    }
    const tl_split *s = tl_lua_check_split(L, 2);
    const tl_dataset *d = tl_lua_split_dataset(L, 2);
    if (tl_dataset_n_cat(d) != c->n_cat || tl_dataset_n_num(d) != c->n_num)
        return luaL_error(L, "%s: the split has %d categorical and %d numeric features; the model "
                             "was built for %d and %d", fn, tl_dataset_n_cat(d), tl_dataset_n_num(d),
                          c->n_cat, c->n_num);
    tl_gate_opts o = {0, -1};
    if (!lua_isnil(L, 3)) {
        static const char *const fields[] = {"field", "level", NULL};
        luaL_checktype(L, 3, LUA_TTABLE);
        tl_lua_check_fields(L, 3, fn, fields);
        o.level = (int)tl_lua_opt_int(L, 3, fn, "level", 0, 0, 8);
        const char *field = tl_lua_opt_string(L, 3, fn, "field", NULL);
        if (field) {
            for (int f = 0; f < c->n_cat && o.field < 0; f++)
                if (strcmp(tl_dataset_cat_name(d, f), field) == 0) o.field = f;
            if (o.field < 0)
                return luaL_error(L, "%s: field '%s' is not a categorical field of the data "
                                     "(see d:fields())", fn, field);
        }
    }
    int E = tl_diagnose_gate_experts(m, o.level);
    if (E == 0)
        return luaL_error(L, "%s: backbone %s has no gates (%s have)", fn,
                          tl_backbone_name(c->backbone.kind), TL_DIAGNOSE_GATED);
    size_t KE = (size_t)c->n_tasks * (size_t)E;
    size_t V = o.field >= 0 ? (size_t)c->vocab[o.field] : 0;
    /* userdata buffers: freed by the GC even when an error is raised */
    double *w = lua_newuserdatauv(L, (KE + (size_t)c->n_tasks + V * KE + V) * sizeof(double), 0);
    double *ent = w + KE, *by = ent + c->n_tasks, *cnt = by + V * KE;
    tl_status st = tl_diagnose_gates(m, s, &o, w, ent, V ? by : NULL, V ? cnt : NULL);
    if (st != TL_OK) return tl_lua_raise_status(L, fn, st);
    push_gate_table(L, c, E, w, ent, (double)s->n);
    lua_pushstring(L, tl_backbone_name(c->backbone.kind));
    lua_setfield(L, -2, "backbone");
    tl_backbone_kind kind = c->backbone.kind;
    if (kind == TL_BACKBONE_PLE || kind == TL_BACKBONE_STEM || kind == TL_BACKBONE_ADATT) {
        lua_pushinteger(L, o.level > 0 ? o.level : c->backbone.levels);
        lua_setfield(L, -2, "level");
    }
    if (o.field >= 0) {
        lua_pushstring(L, tl_dataset_cat_name(d, o.field));
        lua_setfield(L, -2, "field");
        lua_newtable(L);
        for (size_t id = 0; id < V; id++) {
            if (cnt[id] <= 0.0) continue;
            push_value_name(L, d, o.field, (int32_t)id);
            push_gate_table(L, c, E, by + id * KE, NULL, cnt[id]);
            lua_rawset(L, -3);
        }
        lua_setfield(L, -2, "by_field");
    }
    return 1;
}

/* ---- leakage -------------------------------------------------------------------- */

/* Push the result list {{task=, feature=, kind=, auc=, source=, leak=}...}. */
static void push_leakage(lua_State *L, const tl_dataset *d, const tl_leak_row *r, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 6);
        lua_pushstring(L, tl_dataset_task_name(d, r[i].task));
        lua_setfield(L, -2, "task");
        lua_pushstring(L, r[i].feature ? r[i].feature : "?");
        lua_setfield(L, -2, "feature");
        lua_pushstring(L, r[i].numeric ? "numeric" : "categorical");
        lua_setfield(L, -2, "kind");
        lua_pushnumber(L, r[i].auc);
        lua_setfield(L, -2, "auc");
        lua_pushboolean(L, r[i].source);
        lua_setfield(L, -2, "source");
        lua_pushboolean(L, r[i].leak);
        lua_setfield(L, -2, "leak");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, LEAKAGE_MT);
}

/* tostring(d:leakage()): one block per task, features by AUC. */
static int l_leakage_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "single-feature AUC per task (max(AUC, 1-AUC); ! = leakage suspected)");
    char prev[128] = "";
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        int e = lua_gettop(L);
        lua_getfield(L, e, "task");
        lua_getfield(L, e, "feature");
        lua_getfield(L, e, "auc");
        lua_getfield(L, e, "leak");
        lua_getfield(L, e, "source");
        char task[128], line[256];
        snprintf(task, sizeof task, "%s", lua_isstring(L, e + 1) ? lua_tostring(L, e + 1) : "?");
        const char *feature = lua_isstring(L, e + 2) ? lua_tostring(L, e + 2) : "?";
        double auc = (double)lua_tonumber(L, e + 3);
        int leak = lua_toboolean(L, e + 4), source = lua_toboolean(L, e + 5);
        int len = 0;
        if (strcmp(prev, task) != 0) {
            len = snprintf(line, sizeof line, "\n%s", task);
            snprintf(prev, sizeof prev, "%s", task);
        }
        if (isnan(auc))
            snprintf(line + len, sizeof line - (size_t)len, "\n  %c %-28s    n/a", leak ? '!' : ' ', feature);
        else
            snprintf(line + len, sizeof line - (size_t)len, "\n  %c %-28s %6.4f%s", leak ? '!' : ' ', feature,
                     auc, source ? "  (label source column)" : "");
        lua_settop(L, e - 1);
        luaL_addstring(&b, line);
    }
    luaL_pushresult(&b);
    return 1;
}

/* Each task's label source column from the options a dataset was loaded
 * with (uservalue 1 of tl.data.csv datasets): cols[t] = labels[task].column
 * when labels[task].keep is true, else NULL. Leaves the options table on the
 * stack, which keeps the strings alive. */
static void source_columns(lua_State *L, int ds, const tl_dataset *d, const char **cols)
{
    int K = tl_dataset_n_tasks(d);
    for (int t = 0; t < K; t++) cols[t] = NULL;
    if (lua_getiuservalue(L, ds, 1) != LUA_TTABLE || lua_getfield(L, -1, "labels") != LUA_TTABLE)
        return; /* not loaded by tl.data.csv: no source columns */
    int labels = lua_gettop(L);
    for (int t = 0; t < K; t++) {
        if (lua_getfield(L, labels, tl_dataset_task_name(d, t)) == LUA_TTABLE) {
            int keep = lua_getfield(L, -1, "keep") != LUA_TNIL && lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (keep) {
                if (lua_getfield(L, -1, "column") == LUA_TSTRING)
                    cols[t] = lua_tostring(L, -1); /* kept alive by the options table */
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1); /* labels[task] */
    }
}

/* d:leakage([split] [, {threshold=0.99}]) */
static int l_leakage(lua_State *L)
{
    const char *fn = "d:leakage";
    tl_dataset *d = tl_lua_check_dataset(L, 1);
    if (lua_istable(L, 2) && lua_isnoneornil(L, 3)) {
        lua_pushnil(L);
        lua_insert(L, 2);
    }
    lua_settop(L, 3);
    const tl_split *s = NULL;
    if (lua_isnil(L, 2)) {
        s = tl_dataset_split(d, "train");
        if (!s) s = tl_dataset_split(d, "all");
    } else if (lua_type(L, 2) == LUA_TSTRING) {
        s = tl_dataset_split(d, lua_tostring(L, 2));
        if (!s) return luaL_error(L, "%s: the dataset has no split '%s'", fn, lua_tostring(L, 2));
    } else {
        s = tl_lua_check_split(L, 2);
        if (tl_lua_split_dataset(L, 2) != d)
            return luaL_error(L, "%s: argument 1 must be a split of this dataset", fn);
    }
    double thr = TL_LUA_LEAK_THRESHOLD;
    if (!lua_isnil(L, 3)) {
        static const char *const fields[] = {"threshold", NULL};
        luaL_checktype(L, 3, LUA_TTABLE);
        tl_lua_check_fields(L, 3, fn, fields);
        thr = tl_lua_opt_number(L, 3, fn, "threshold", TL_LUA_LEAK_THRESHOLD, 0.5, 1.0);
    }
    if (!tl_dataset_labeled(d))
        return luaL_error(L, "%s: the dataset has no labels (read with like= from a file without label columns)",
                          fn);
    const char *cols[TL_MAX_TASKS];
    if (tl_dataset_n_tasks(d) > TL_MAX_TASKS) return luaL_error(L, "%s: too many tasks", fn);
    source_columns(L, 1, d, cols);
    tl_leak_row *rows = NULL;
    size_t n = 0;
    tl_status st = tl_diagnose_leakage(d, s, cols, thr, &rows, &n);
    if (st != TL_OK) return tl_lua_raise_status(L, fn, st);
    push_leakage(L, d, rows, n);
    tl_diagnose_leakage_free(rows);
    return 1;
}

void tl_lua_open_diagnose(lua_State *L, int tl)
{
    (void)tl;
    tl_lua_model_method(L, "gates", l_gates);
    luaL_getmetatable(L, TL_MODEL_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, "gates");
    tl_lua_doc(L, "m:gates", -1,
               "m:gates([split] [, {field=, level=}]) -> {tasks=, experts=, weights=, entropy=, rows=}\n"
               "Mean gate weight of each expert per task over the split (default: the model's\n"
               "data.valid), from a forward pass in evaluation mode: weights[t][e] (each task's\n"
               "row sums to 1), entropy[task] = mean gate entropy in nats (log E = uniform).\n"
               "MMoE/OMoE/PLE only; PLE shows level= (default the last) with the tasks'\n"
               "specific experts first, then the shared ones. field=\"name\" adds\n"
               "by_field[value] = the same table over that field's rows. tl.plot.gates(m, split)\n"
               "draws it.");
    lua_pop(L, 3);

    if (luaL_newmetatable(L, LEAKAGE_MT)) {
        lua_pushcfunction(L, l_leakage_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_getmetatable(L, TL_DATASET_MT);
    if (lua_getfield(L, -1, "__methods") == LUA_TTABLE) {
        lua_pushcfunction(L, l_leakage);
        tl_lua_doc(L, "dataset:leakage", -1,
                   "d:leakage([split] [, {threshold=0.99}]) -> {{task=, feature=, kind=, auc=, source=, leak=}...}\n"
                   "Single-feature AUC of every feature for every binary task on the split (default\n"
                   "train), max(AUC, 1-AUC): numeric features score by value, categorical ones by\n"
                   "their id's label rate (cross-fitted on two halves of the split). leak = the\n"
                   "feature is the task's label source column (keep=true) or AUC > threshold.\n"
                   "Sorted by task, then AUC descending; printing it shows a table. tl.data.csv\n"
                   "warns about such features when it builds a dataset.");
        lua_setfield(L, -2, "leakage");
    }
    lua_pop(L, 2);
}
