/* l_model.c — the model object: tl.model (a configuration read from specs,
 * l_spec.c), the "tl.model" userdata with its lifetime, m.weights, m.tasks
 * and friends, print(m), m:params, and the split check every method uses.
 * fit is l_fit.c, evaluate/predict/history l_results.c. */
#include "l_model.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "l_data.h"
#include "l_spec.h"
#include "l_util.h"

tl_lua_model *tl_lua_check_model_ud(lua_State *L, int idx)
{
    tl_lua_model *lm = luaL_checkudata(L, idx, TL_MODEL_MT);
    if (!lm->m) luaL_error(L, "model has been closed");
    return lm;
}

/* __gc cannot raise: a model collected while its fit runs (only lua_close
 * from inside a progress callback can do that) is left to the fit, which
 * frees it when it returns. */
static int l_model_gc(lua_State *L)
{
    tl_lua_model *lm = luaL_checkudata(L, 1, TL_MODEL_MT);
    if (lm->busy) {
        lm->free_pending = 1;
        return 0;
    }
    tl_model_free(lm->m);
    lm->m = NULL;
    return 0;
}

/* m:close() and __close: refused while the model trains (from a progress
 * callback), since the running fit still uses it. */
static int l_model_close(lua_State *L)
{
    tl_lua_model *lm = luaL_checkudata(L, 1, TL_MODEL_MT);
    if (lm->busy) return luaL_error(L, "m:close: the model is training (called from its fit's "
                                       "progress callback); stop the fit by returning false first");
    return l_model_gc(L);
}

static const char *const model_fields[] = {"data", "backbone", "towers", "tower", "weights", "tasks",
                                           "weighting", "emb", "seed", "batch", "alpha",
                                           "temperature", "distill", "mutual", "max_memory", NULL};

/* lua_next over a table keyed by task name (at the top of the stack, after a
 * pushed key): the next entry's task index with its value on top, or -1 at the
 * end. An unknown task name is an error naming `field`. */
static int next_task(lua_State *L, const tl_model_config *c, const char *field)
{
    if (!lua_next(L, -2)) return -1;
    const char *t = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int k = t ? tl_lua_config_task_index(c, t) : -1;
    if (k < 0)
        luaL_error(L, "tl.model: %s: unknown task '%s' (the dataset's tasks are %s)", field,
                   t ? t : luaL_typename(L, -2), tl_lua_config_task_list(c));
    return k;
}

/* A loss weight above TL_WEIGHT_WARN: accepted, with a warning on stderr. */
static void warn_big_weight(const char *where, const char *task, double w)
{
    if (w > TL_WEIGHT_WARN)
        fprintf(stderr, "%s: warning: loss weight %g of task '%s' is above %g; the weighted loss "
                        "and its gradients may overflow or swamp every other signal, and the task "
                        "then stops learning (useful weights are about 0.01 to 100)\n",
                where, w, task, TL_WEIGHT_WARN);
}

/* The options each method reads (weighting={"name", option=...}), and where
 * they go in the configuration. */
typedef struct {
    const char *method, *key;
    int kind;   /* 0 number (float), 1 integer, 2 at ("params"|"rep"), 3 dist (rlw) */
    size_t off; /* in tl_model_config */
    double lo, hi;
} weighting_option;

#define WOPT(m, k, kind, field, lo, hi) {m, k, kind, offsetof(tl_model_config, field), lo, hi}
static const weighting_option weighting_options[] = {
    WOPT("gradnorm", "alpha", 0, gradnorm_alpha, 0, 100),
    WOPT("dwa", "temperature", 0, dwa_temperature, 1e-3, 1e3),
    WOPT("rlw", "dist", 3, wopt.rlw_dirichlet, 0, 1),
    WOPT("famo", "lr", 0, wopt.famo_lr, 1e-12, 1e3),
    WOPT("famo", "gamma", 0, wopt.famo_gamma, 0, 1e3),
    WOPT("db_mtl", "beta", 0, wopt.db_beta, 0, 0.999999),
    WOPT("db_mtl", "sigma", 0, wopt.db_beta_sigma, 0, 100),
    WOPT("stch", "mu", 0, wopt.stch_mu, 1e-6, 1e6),
    WOPT("stch", "warmup", 1, wopt.stch_warmup, 0, 100000),
    WOPT("graddrop", "leak", 0, wopt.graddrop_leak, 0, 1),
    WOPT("pcgrad", "at", 2, wopt.at, 0, 1),
    WOPT("mgda", "at", 2, wopt.at, 0, 1),
    WOPT("cagrad", "at", 2, wopt.at, 0, 1),
    WOPT("cagrad", "c", 0, wopt.cagrad_c, 0, 1e3),
    WOPT("cagrad", "rescale", 1, wopt.cagrad_rescale, 0, 2),
    WOPT("nash_mtl", "at", 2, wopt.at, 0, 1),
    WOPT("nash_mtl", "max_norm", 0, wopt.nash_max_norm, 0, 1e30),
    WOPT("imtl_g", "at", 2, wopt.at, 0, 1),
    WOPT("imtl", "at", 2, wopt.at, 0, 1),
    WOPT("aligned_mtl", "at", 2, wopt.at, 0, 1),
    WOPT("upgrad", "at", 2, wopt.at, 0, 1),
    WOPT("gradvac", "at", 2, wopt.at, 0, 1),
    WOPT("gradvac", "beta", 0, wopt.gradvac_beta, 0, 1),
};
#undef WOPT

/* weighting="name" or {"name", option=...} at idx: the method and its
 * options into c (options not given keep c's values). */
static void read_weighting(lua_State *L, int idx, const char *fn, tl_model_config *c)
{
    idx = lua_absindex(L, idx);
    const char *name = NULL;
    if (lua_type(L, idx) == LUA_TSTRING) {
        name = lua_tostring(L, idx);
    } else if (lua_istable(L, idx)) {
        lua_rawgeti(L, idx, 1);
        name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        lua_pop(L, 1); /* the table keeps the string */
    }
    if (!name)
        luaL_error(L, "%s: weighting must be a method name or {\"name\", option=...} (e.g. "
                      "{\"famo\", lr=0.025}), got %s", fn, luaL_typename(L, idx));
    tl_weighting w;
    if (tl_weighting_parse(name, &w) != TL_OK) luaL_error(L, "%s: %s", fn, tl_errmsg());
    c->weighting = w;
    if (!lua_istable(L, idx)) return;
    char wfn[80];
    snprintf(wfn, sizeof wfn, "%s: weighting '%s'", fn, name);
    const char *keys[16];
    int n = 0;
    for (size_t i = 0; i < sizeof weighting_options / sizeof *weighting_options; i++)
        if (strcmp(weighting_options[i].method, name) == 0) keys[n++] = weighting_options[i].key;
    keys[n] = NULL;
    tl_lua_check_fields(L, idx, wfn, keys);
    for (size_t i = 0; i < sizeof weighting_options / sizeof *weighting_options; i++) {
        const weighting_option *o = &weighting_options[i];
        if (strcmp(o->method, name) != 0) continue;
        char *f = (char *)c + o->off;
        static const char *const dists[] = {"normal", "dirichlet", NULL}, *const ats[] = {"params", "rep", NULL};
        if (o->kind == 0) *(float *)f = (float)tl_lua_opt_number(L, idx, wfn, o->key, *(float *)f, o->lo, o->hi);
        else if (o->kind == 1) *(int *)f = (int)tl_lua_opt_int(L, idx, wfn, o->key, *(int *)f, (lua_Integer)o->lo, (lua_Integer)o->hi);
        else if (o->kind == 2) *(tl_weighting_at *)f = (tl_weighting_at)tl_lua_opt_enum(L, idx, wfn, o->key, ats, (int)*(tl_weighting_at *)f);
        else *(int *)f = tl_lua_opt_enum(L, idx, wfn, o->key, dists, *(int *)f);
    }
}

/* m:set_weighting("name") or m:set_weighting{"name", option=...} or
 * m:set_weighting("name", {option=...}): the options not given take their
 * defaults. */
static int l_model_set_weighting(lua_State *L)
{
    tl_lua_model *lm = tl_lua_check_model_ud(L, 1);
    const char *fn = "m:set_weighting";
    if (lm->busy) return luaL_error(L, "%s: the model is training (called from its fit's progress "
                                       "callback); switch between fits", fn);
    tl_model_config c = *tl_model_config_get(lm->m), d;
    tl_model_config_defaults(&d);
    c.wopt = d.wopt;
    c.gradnorm_alpha = d.gradnorm_alpha;
    c.dwa_temperature = d.dwa_temperature;
    if (lua_type(L, 2) == LUA_TSTRING && lua_istable(L, 3)) { /* ("name", {opts}) */
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, 2);
        lua_rawseti(L, -2, 1);
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
        lua_replace(L, 2);
    }
    read_weighting(L, 2, fn, &c);
    tl_status s = tl_model_set_weighting(lm->m, &c);
    if (s != TL_OK) return tl_lua_raise_status(L, fn, s);
    lua_settop(L, 1);
    return 1;
}

/* tl.model{data=d, backbone=tl.mmoe{}, towers={t=tl.mlp{64}}, weights={t=1}, ...} */
static int l_model_new(lua_State *L)
{
    const char *fn = "tl.model";
    luaL_checktype(L, 1, LUA_TTABLE);
    tl_lua_check_fields(L, 1, fn, model_fields);
    lua_getfield(L, 1, "data");
    if (lua_isnil(L, -1)) luaL_error(L, "tl.model: field 'data' is required (a dataset, e.g. tl.datasets.census())");
    tl_dataset *d = tl_lua_check_dataset(L, -1);
    int data_idx = lua_gettop(L);

    tl_model_config c;
    tl_model_config_defaults(&c);
    tl_mlp_spec tower = {1, {64}, 0.0f};
    lua_getfield(L, 1, "tower");
    if (!lua_isnil(L, -1)) tl_lua_read_mlp(L, -1, fn, "tower", &tower, 0.0f);
    lua_pop(L, 1);
    if (tl_model_config_from_dataset(&c, d, &tower) != TL_OK)
        return tl_lua_raise_status(L, fn, TL_ERR_ARG);
    lua_getfield(L, 1, "backbone");
    if (!lua_isnil(L, -1)) tl_lua_read_backbone(L, -1, &c.backbone);
    lua_pop(L, 1);

    lua_getfield(L, 1, "towers");
    const char *towers_kind = lua_isnil(L, -1) ? NULL : tl_lua_spec_kind(L, -1);
    if (towers_kind && strcmp(towers_kind, "mlp") == 0) { /* towers=tl.mlp{...}: every task's */
        for (int k = 0; k < c.n_tasks; k++) tl_lua_read_mlp(L, -1, fn, "towers", &c.tasks[k].tower, 0.0f);
    } else if (towers_kind) {
        luaL_error(L, "tl.model: field 'towers' must be a table keyed by task name "
                      "(towers={%s=tl.mlp{64}}) or one tl.mlp{...} for every task (as tower=), "
                      "got a %s spec", c.tasks[0].name, towers_kind);
    } else if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        if (lua_rawlen(L, -1) > 0)
            luaL_error(L, "tl.model: field 'towers' is a list; it must be keyed by task name "
                          "(towers={%s=tl.mlp{64}}); for the same tower on every task use "
                          "tower=tl.mlp{...} or towers=tl.mlp{...}", c.tasks[0].name);
        lua_pushnil(L);
        for (int k; (k = next_task(L, &c, "towers")) >= 0;) {
            tl_lua_read_mlp(L, -1, fn, "towers", &c.tasks[k].tower, 0.0f);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "weights");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_pushnil(L);
        for (int k; (k = next_task(L, &c, "weights")) >= 0;) {
            if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) >= 0))
                luaL_error(L, "tl.model: weights.%s must be a number >= 0, got %s", c.tasks[k].name,
                           luaL_typename(L, -1));
            c.tasks[k].weight = (float)lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    /* tasks={cvr={space="ctr", weight=1, tower=tl.mlp{...}}}: per-task options */
    lua_getfield(L, 1, "tasks");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_pushnil(L);
        for (int k; (k = next_task(L, &c, "tasks")) >= 0;) {
            const char *t = c.tasks[k].name;
            if (!lua_istable(L, -1))
                luaL_error(L, "tl.model: tasks.%s must be a table {space=, weight=, tower=}, got %s", t,
                           luaL_typename(L, -1));
            int ti = lua_gettop(L);
            static const char *const task_fields[] = {"space", "weight", "tower", NULL};
            char tfn[64];
            snprintf(tfn, sizeof tfn, "tl.model: tasks.%s", t);
            tl_lua_check_fields(L, ti, tfn, task_fields);
            const char *sp = tl_lua_opt_string(L, ti, tfn, "space", NULL);
            if (sp) {
                int s = tl_lua_config_task_index(&c, sp);
                if (s < 0 || s == k || c.tasks[s].type != TL_TASK_BINARY)
                    luaL_error(L, "%s: space must name another binary task, got '%s'", tfn, sp);
                c.tasks[k].space = s;
            }
            c.tasks[k].weight = (float)tl_lua_opt_number(L, ti, tfn, "weight", c.tasks[k].weight, 0, 1e9);
            lua_getfield(L, ti, "tower");
            if (!lua_isnil(L, -1)) tl_lua_read_mlp(L, -1, tfn, "tower", &c.tasks[k].tower, 0.0f);
            lua_pop(L, 2);
        }
    }
    lua_pop(L, 1);
    c.emb_dim = (int)tl_lua_opt_int(L, 1, fn, "emb", c.emb_dim, 1, 4096);
    c.max_batch = (int)tl_lua_opt_int(L, 1, fn, "batch", c.max_batch, 1, 1 << 20);
    c.gradnorm_alpha = (float)tl_lua_opt_number(L, 1, fn, "alpha", c.gradnorm_alpha, 0, 100);
    c.dwa_temperature = (float)tl_lua_opt_number(L, 1, fn, "temperature", c.dwa_temperature, 1e-3, 1e3);
    lua_getfield(L, 1, "weighting");
    if (!lua_isnil(L, -1)) read_weighting(L, -1, fn, &c);
    lua_pop(L, 1);
    lua_getfield(L, 1, "mutual");
    if (!lua_isnil(L, -1)) tl_lua_read_dml(L, -1, &c.dml);
    lua_pop(L, 1);
    lua_getfield(L, 1, "distill");
    if (!lua_isnil(L, -1)) tl_lua_read_distill(L, -1, &c);
    lua_pop(L, 1);
    lua_getglobal(L, "tl");
    lua_Integer default_seed = 1;
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "seed");
        if (lua_isinteger(L, -1)) default_seed = lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    c.seed = (uint64_t)tl_lua_opt_int(L, 1, fn, "seed", default_seed, 0, INT64_MAX);
    c.max_memory = tl_lua_opt_bytes(L, 1, fn, "max_memory");

    for (int k = 0; k < c.n_tasks; k++) warn_big_weight(fn, c.tasks[k].name, c.tasks[k].weight);
    tl_model *m;
    tl_lua_memory_refresh();
    tl_status s = tl_model_new(&c, &m);
    if (s != TL_OK) return tl_lua_raise_status(L, fn, s);
    tl_lua_push_model(L, m, data_idx);
    return 1;
}

void tl_lua_push_model(lua_State *L, tl_model *m, int data_idx)
{
    if (data_idx) data_idx = lua_absindex(L, data_idx);
    tl_lua_model *lm = lua_newuserdatauv(L, sizeof *lm, 1);
    lm->m = m;
    lm->busy = lm->free_pending = 0;
    luaL_setmetatable(L, TL_MODEL_MT);
    if (data_idx) {
        lua_pushvalue(L, data_idx);
        lua_setiuservalue(L, -2, 1);
    }
    tl_lua_note_alloc(L, tl_model_param_count(m) * sizeof(float) * 4);
}

tl_model *tl_lua_check_model(lua_State *L, int idx) { return tl_lua_check_model_ud(L, idx)->m; }

void tl_lua_model_method(lua_State *L, const char *name, lua_CFunction fn)
{
    luaL_getmetatable(L, TL_MODEL_MT);
    lua_getfield(L, -1, "methods");
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
    lua_pop(L, 2);
}

void tl_lua_check_model_encodings(lua_State *L, tl_model *m, const tl_dataset *d, const char *fn, const char *what)
{
    const tl_model_config *c = tl_model_config_get(m);
    /* another layout: the layout checks say more */
    if (tl_dataset_n_cat(d) != c->n_cat || tl_dataset_n_bag(d) != c->n_bag) return;
    for (int b = 0; b < c->n_bag; b++)
        if (strncmp(tl_dataset_bag_name(d, b), c->bag_name[b], strlen(c->bag_name[b])) != 0) return;
    for (int f = 0; f < c->n_field_fp; f++) {
        int bag = f >= c->n_cat;
        uint64_t want = c->field_fp[f];
        uint64_t got = bag ? tl_dataset_bag_fingerprint(d, f - c->n_cat) : tl_dataset_vocab_fingerprint(d, f);
        if (want && got && want != got)
            luaL_error(L, "%s: %s: the ids of %sfield '%s' mean other values than in the data the model was "
                          "trained on (the checkpoint records each field's encoding; build the data with like= "
                          "the training dataset, or convert it the same way)",
                       fn, what, bag ? "multi-valued " : "",
                       bag ? tl_dataset_bag_name(d, f - c->n_cat) : tl_dataset_cat_name(d, f));
    }
}

/* Split at idx; checks it has the model's feature layout. */
const tl_split *tl_lua_check_model_split(lua_State *L, int idx, tl_model *m, const char *fn,
                                         const char *field)
{
    if (lua_isnil(L, idx)) luaL_error(L, "%s: field '%s' is required (a split such as d.train)", fn, field);
    const tl_split *s = tl_lua_check_split(L, idx);
    tl_dataset *d = tl_lua_split_dataset(L, idx);
    const tl_model_config *c = tl_model_config_get(m);
    if (d) {
        int ok = tl_dataset_n_cat(d) == c->n_cat && tl_dataset_n_num(d) == c->n_num &&
                 tl_dataset_n_tasks(d) == c->n_tasks;
        for (int f = 0; ok && f < c->n_cat; f++) ok = tl_dataset_vocab(d)[f] <= c->vocab[f];
        ok = ok && tl_dataset_n_bag(d) == c->n_bag;
        for (int b = 0; ok && b < c->n_bag; b++)
            ok = tl_dataset_bag_vocab(d, b) <= c->bag_vocab[b] && tl_dataset_bag_len(d, b) == c->bag_len[b];
        if (!ok && tl_dataset_n_bag(d) + c->n_bag > 0)
            luaL_error(L, "%s: field '%s': the split's dataset does not have the model's multi-valued fields "
                          "(%d here, %d in the model, with their sizes and slots; build the data with like= "
                          "the model's dataset)",
                       fn, field, tl_dataset_n_bag(d), c->n_bag);
        if (!ok)
            luaL_error(L, "%s: field '%s': the split's dataset has %d categorical, %d numeric "
                          "features and %d tasks; the model was built for %d, %d and %d (build "
                          "the data with like= the model's dataset)",
                       fn, field, tl_dataset_n_cat(d), tl_dataset_n_num(d), tl_dataset_n_tasks(d),
                       c->n_cat, c->n_num, c->n_tasks);
        /* same sizes are not enough: the ids must mean the same values as in
         * the data the model was built on (its dataset, when still open; arg
         * 1 is the model or a calibrated predictor {model = m}) */
        int top = lua_gettop(L);
        tl_lua_model *owner = luaL_testudata(L, 1, TL_MODEL_MT);
        if (owner) lua_pushvalue(L, 1);
        else if (lua_istable(L, 1) && lua_getfield(L, 1, "model") != LUA_TNIL) owner = luaL_testudata(L, -1, TL_MODEL_MT);
        tl_dataset *md = NULL;
        if (owner && owner->m == m && lua_getiuservalue(L, -1, 1) != LUA_TNONE) md = tl_lua_test_dataset(L, -1);
        lua_settop(L, top);
        char diff[400];
        for (int f = 0; md && md != d && f < c->n_cat && f < tl_dataset_n_cat(md); f++) {
            if (strcmp(tl_dataset_cat_name(d, f), tl_dataset_cat_name(md, f)) != 0)
                luaL_error(L, "%s: field '%s': categorical field %d is '%s' in the split's dataset and '%s' in "
                              "the model's (build the data with like= the model's dataset)",
                           fn, field, f + 1, tl_dataset_cat_name(d, f), tl_dataset_cat_name(md, f));
            if (tl_dataset_vocab_diff(d, f, md, f, diff, sizeof diff))
                luaL_error(L, "%s: field '%s': the split's ids mean other values than in the model's data: %s "
                              "(here = the split's dataset, there = the model's; build the data with like= "
                              "the model's dataset)",
                           fn, field, diff);
        }
        for (int b = 0; md && md != d && b < c->n_bag && b < tl_dataset_n_bag(md); b++)
            if (tl_dataset_bag_diff(d, b, md, b, diff, sizeof diff))
                luaL_error(L, "%s: field '%s': the split's multi-valued ids mean other values than in the model's "
                              "data: %s (build the data with like= the model's dataset)",
                           fn, field, diff);
        if (!md) tl_lua_check_model_encodings(L, m, d, fn, field);
        size_t fl = strlen(fn);
        if (!tl_dataset_labeled(d) && !(fl >= 8 && strcmp(fn + fl - 8, ":predict") == 0))
            luaL_error(L, "%s: field '%s': the split's dataset has no labels (read with like= from a file "
                          "without label columns): only m:predict takes it",
                       fn, field);
    }
    return s;
}

/* ---- m.weights proxy ---------------------------------------------------------------- */

/* The model behind the proxy at argument 1 (raises when 1 is not a proxy). */
static tl_model *weights_model(lua_State *L)
{
    luaL_checkudata(L, 1, "tl.weights");
    lua_getiuservalue(L, 1, 1);
    tl_model *m = tl_lua_check_model_ud(L, -1)->m;
    lua_pop(L, 1);
    return m;
}

static int weights_task(lua_State *L, tl_model *m, const char *t)
{
    int k = tl_model_task_index(m, t);
    if (k < 0) luaL_error(L, "m.weights: unknown task '%s'", t);
    return k;
}

static int l_weights_index(lua_State *L)
{
    tl_model *m = weights_model(L);
    const char *t = luaL_checkstring(L, 2);
    int k = weights_task(L, m, t);
    lua_pushnumber(L, tl_model_get_weight(m, k));
    return 1;
}

static int l_weights_newindex(lua_State *L)
{
    tl_model *m = weights_model(L);
    const char *t = luaL_checkstring(L, 2);
    int k = weights_task(L, m, t);
    if (!lua_isnumber(L, 3)) return luaL_error(L, "m.weights.%s must be a number, got %s", t, luaL_typename(L, 3));
    tl_status s = tl_model_set_weight(m, k, (float)lua_tonumber(L, 3));
    if (s != TL_OK) return tl_lua_raise_status(L, "m.weights", s);
    warn_big_weight("m.weights", t, (double)tl_model_get_weight(m, k));
    return 0;
}

static int l_weights_tostring(lua_State *L)
{
    tl_model *m = weights_model(L);
    const tl_model_config *c = tl_model_config_get(m);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "weights {");
    for (int k = 0; k < c->n_tasks; k++) {
        char s[96];
        snprintf(s, sizeof s, "%s%s=%g", k ? ", " : " ", c->tasks[k].name, (double)c->tasks[k].weight);
        luaL_addstring(&b, s);
    }
    luaL_addstring(&b, " }");
    luaL_pushresult(&b);
    return 1;
}

static int l_weights_pairs_next(lua_State *L)
{
    tl_model *m = weights_model(L);
    const tl_model_config *c = tl_model_config_get(m);
    int k = lua_isnil(L, 2) ? 0 : tl_model_task_index(m, luaL_checkstring(L, 2)) + 1;
    if (k >= c->n_tasks) return 0;
    lua_pushstring(L, c->tasks[k].name);
    lua_pushnumber(L, c->tasks[k].weight);
    return 2;
}

static int l_weights_pairs(lua_State *L)
{
    lua_pushcfunction(L, l_weights_pairs_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* ---- model __index / __tostring ----------------------------------------------------- */

static void mlp_str(char *buf, size_t n, const tl_mlp_spec *s)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < s->n && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ", %d" : "%d", s->units[i]);
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "]");
    if (s->dropout > 0.0f && k < n) snprintf(buf + k, n - k, " dropout %g", (double)s->dropout);
}

/* How print(m) names CrossDistil pair p's order. Before the first fit an
 * order="auto" pair shows the sign the fit will take from the train split of
 * the model's data (when it has one). */
static void order_str(lua_State *L, tl_model *m, int p, char *buf, size_t n)
{
    const tl_model_config *c = tl_model_config_get(m);
    int o = tl_model_distill_order(m, p);
    if (o > 0) {
        snprintf(buf, n, "%s relation%s", o == 2 ? "negative" : "positive",
                 c->distill.order == 0 ? ", from label correlation" : "");
        return;
    }
    const tl_split *tr = NULL;
    if (lua_getiuservalue(L, 1, 1) != LUA_TNIL) {
        tl_dataset *d = tl_lua_check_dataset(L, -1);
        tr = tl_dataset_split(d, "train");
        if (!tr) tr = tl_dataset_split(d, "all");
    }
    lua_pop(L, 1);
    if (tr)
        snprintf(buf, n, "%s relation on the data's train labels; auto, fixed by the first fit",
                 tl_distill_auto_order(tr, c->n_tasks, c->distill.pairs[p][0], c->distill.pairs[p][1]) == 2
                     ? "negative" : "positive");
    else
        snprintf(buf, n, "relation auto, fixed by the first fit");
}

static int l_model_tostring(lua_State *L)
{
    tl_model *m = tl_lua_check_model_ud(L, 1)->m;
    const tl_model_config *c = tl_model_config_get(m);
    const tl_backbone_spec *b = &c->backbone;
    char line[512], u[128];
    luaL_Buffer buf;
    luaL_buffinit(L, &buf);
    switch (b->kind) {
    case TL_BACKBONE_SHARED_BOTTOM:
        mlp_str(u, sizeof u, &b->bottom);
        snprintf(line, sizeof line, "model  shared_bottom  bottom %s\n", u);
        break;
    case TL_BACKBONE_OMOE:
    case TL_BACKBONE_MMOE:
        mlp_str(u, sizeof u, &b->expert);
        snprintf(line, sizeof line, "model  %s  %d experts %s\n", tl_backbone_name(b->kind), b->experts, u);
        break;
    case TL_BACKBONE_PLE:
        mlp_str(u, sizeof u, &b->expert);
        snprintf(line, sizeof line, "model  ple  %d level(s), %d shared + %d specific experts per task %s\n",
                 b->levels, b->shared, b->specific, u);
        break;
    case TL_BACKBONE_AITM:
        snprintf(line, sizeof line, "model  aitm  constraint weight %g\n", (double)b->constraint);
        break;
    case TL_BACKBONE_STEM:
    case TL_BACKBONE_ADATT: {
        char gt[128] = "";
        mlp_str(u, sizeof u, &b->expert);
        if (b->kind == TL_BACKBONE_STEM && b->gate.n > 0) {
            char gu[100];
            mlp_str(gu, sizeof gu, &b->gate);
            snprintf(gt, sizeof gt, ", gates %s", gu);
        }
        snprintf(line, sizeof line, "model  %s  %d level(s), %d shared + %d specific experts per task %s%s\n",
                 tl_backbone_name(b->kind), b->levels, b->shared, b->specific, u, gt);
        break;
    }
    case TL_BACKBONE_CROSS_STITCH:
        mlp_str(u, sizeof u, &b->bottom);
        snprintf(line, sizeof line, "model  cross_stitch  task columns %s\n", u);
        break;
    case TL_BACKBONE_DSELECT_K:
        mlp_str(u, sizeof u, &b->expert);
        snprintf(line, sizeof line, "model  dselect_k  %d experts %s, k=%d, gamma %g, entropy %g\n",
                 b->experts, u, b->select_k, (double)b->gamma, (double)b->entropy);
        break;
    default:
        snprintf(line, sizeof line, "model  %s\n", tl_backbone_name(b->kind));
    }
    luaL_addstring(&buf, line);
    if (b->esmm) luaL_addstring(&buf, "  head    esmm: pCTCVR = pCTR x pCVR, both losses over every row\n");
    snprintf(line, sizeof line, "  input   %d categorical fields (emb %d), %d numeric\n", c->n_cat,
             c->emb_dim, c->n_num);
    luaL_addstring(&buf, line);
    for (int f = 0; f < c->n_bag; f++) {
        static const char *const pools[] = {"sum", "mean", "max"};
        snprintf(line, sizeof line, "  bag     %s: %d ids, %d slots, %s pooling\n", c->bag_name[f],
                 (int)c->bag_vocab[f], c->bag_len[f], pools[c->bag_pool[f]]);
        luaL_addstring(&buf, line);
    }
    for (int k = 0; k < c->n_tasks; k++) {
        mlp_str(u, sizeof u, &c->tasks[k].tower);
        char space[64] = "";
        if (c->tasks[k].space >= 0)
            snprintf(space, sizeof space, "   on rows where %s = 1", c->tasks[c->tasks[k].space].name);
        snprintf(line, sizeof line, "  task    %-16s %-10s tower %-18s weight %g%s\n", c->tasks[k].name,
                 c->tasks[k].type == TL_TASK_BINARY ? "binary" : "regression", u,
                 (double)c->tasks[k].weight, space);
        luaL_addstring(&buf, line);
    }
    if (c->dml.enabled) {
        char gkd[160] = "on";
        if (!c->dml.gkd) snprintf(gkd, sizeof gkd, "off");
        for (int k = 0, n = 0; c->dml.gkd && c->dml.gkd_tasks && k < c->n_tasks; k++)
            if (c->dml.gkd_tasks >> k & 1u) {
                size_t l = strlen(gkd);
                snprintf(gkd + l, sizeof gkd - l, "%s%s", n++ ? ", " : " (tasks ", c->tasks[k].name);
            }
        if (c->dml.gkd && c->dml.gkd_tasks) strncat(gkd, ")", sizeof gkd - strlen(gkd) - 1);
        snprintf(line, sizeof line, "  mutual  DML: ctfm %s, gkd %s, stop_grad %s, dropout %g\n",
                 c->dml.ctfm ? "on" : "off", gkd, c->dml.stop_grad ? "on" : "off", (double)c->dml.dropout);
        luaL_addstring(&buf, line);
    }
    if (c->distill.enabled && c->distill.naive) {
        snprintf(line, sizeof line, "  distill naive KD between paired students (kd %g, warmup %lld)\n",
                 (double)c->distill.kd, (long long)c->distill.warmup);
        luaL_addstring(&buf, line);
    } else if (c->distill.enabled) {
        const tl_distill_spec *ds = &c->distill;
        static const char *corr[] = {"none", "blend", "clip"};
        for (int p = 0; p < ds->n_pairs; p++) {
            char order[128], every[48] = "";
            order_str(L, m, p, order, sizeof order);
            if (ds->calib_every > 0) snprintf(every, sizeof every, " (refit every %d steps)", ds->calib_every);
            snprintf(line, sizeof line, "  distill CrossDistil %s <-> %s (%s): aux %g, kd %g, "
                     "%s calibrator on %s%s, correct %s (lambda %g), warmup %lld\n",
                     c->tasks[ds->pairs[p][0]].name, c->tasks[ds->pairs[p][1]].name, order,
                     (double)ds->aux, (double)ds->kd, ds->calibrate == TL_DISTILL_ISOTONIC ? "isotonic" : "platt",
                     ds->calib_valid ? "valid" : "train", every, corr[ds->correct], (double)ds->lambda,
                     (long long)ds->warmup);
            luaL_addstring(&buf, line);
        }
    }
    snprintf(line, sizeof line, "  weighting %s%s   parameters %zu   trained %d epochs, %lld steps",
             tl_weighting_name(c->weighting), c->wopt.at == TL_AT_REP ? " (at rep)" : "",
             tl_model_param_count(m), tl_model_epochs_done(m),
             (long long)tl_model_steps(m));
    luaL_addstring(&buf, line);
    luaL_pushresult(&buf);
    return 1;
}

static int l_model_params(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)tl_model_param_count(tl_lua_check_model_ud(L, 1)->m));
    return 1;
}

static int l_model_index(lua_State *L)
{
    tl_model *m = tl_lua_check_model_ud(L, 1)->m;
    const char *k = luaL_checkstring(L, 2);
    const tl_model_config *c = tl_model_config_get(m);
    if (strcmp(k, "weights") == 0) {
        lua_newuserdatauv(L, 0, 1);
        lua_pushvalue(L, 1);
        lua_setiuservalue(L, -2, 1);
        luaL_setmetatable(L, "tl.weights");
        return 1;
    }
    if (strcmp(k, "tasks") == 0) {
        lua_createtable(L, c->n_tasks, 0);
        for (int t = 0; t < c->n_tasks; t++) {
            lua_pushstring(L, c->tasks[t].name);
            lua_rawseti(L, -2, t + 1);
        }
        return 1;
    }
    if (strcmp(k, "backbone") == 0) {
        lua_pushstring(L, tl_backbone_name(c->backbone.kind));
        return 1;
    }
    if (strcmp(k, "weighting") == 0) {
        lua_pushstring(L, tl_weighting_name(c->weighting));
        return 1;
    }
    if (strcmp(k, "data") == 0) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    luaL_getmetatable(L, TL_MODEL_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

void tl_lua_open_model(lua_State *L, int tl)
{
    luaL_newmetatable(L, TL_MODEL_MT);
    static const luaL_Reg meta[] = {{"__gc", l_model_gc},             {"__close", l_model_close},
                                    {"__tostring", l_model_tostring}, {"__index", l_model_index},
                                    {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    /* fit, evaluate, ... are added by their modules (tl_lua_model_method) */
    static const luaL_Reg methods[] = {{"params", l_model_params}, {"close", l_model_close},
                                       {"set_weighting", l_model_set_weighting}, {NULL, NULL}};
    luaL_newlib(L, methods);
    static const tl_lua_doc_entry method_docs[] = {
        {"set_weighting", "m:set_weighting",
         "m:set_weighting(\"famo\") or m:set_weighting{\"famo\", lr=0.01} or\n"
         "m:set_weighting(\"famo\", {lr=0.01}) -> m: switch the loss-weighting method between fits\n"
         "(options not given take their defaults; the methods: help(tl.model), tl.weightings).\n"
         "The method's state starts afresh (factors 1; DWA's epoch losses, GradNorm's initial\n"
         "losses, FAMO's logits, STCH's warm-up and DB-MTL's gradient EMA cleared); the loss\n"
         "weights, parameters and optimizer state are kept; m:save stores the method in use.\n"
         "Not to or from uncertainty and imtl_l: their loss scales are built into the graph."},
    };
    tl_lua_docs(L, -1, method_docs, sizeof method_docs / sizeof *method_docs);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__methods"); /* the REPL completes m:<TAB> from it */
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);

    luaL_newmetatable(L, "tl.weights");
    static const luaL_Reg weights_meta[] = {{"__index", l_weights_index},
                                            {"__newindex", l_weights_newindex},
                                            {"__tostring", l_weights_tostring},
                                            {"__pairs", l_weights_pairs},
                                            {NULL, NULL}};
    luaL_setfuncs(L, weights_meta, 0);
    lua_pop(L, 1);

    lua_pushcfunction(L, l_model_new);
    lua_setfield(L, tl, "model");
    /* tl.weightings: {{name=, about=, options={...}}, ...}, the engine's list */
    lua_createtable(L, TL_WEIGHTING_COUNT, 0);
    for (int i = 0; i < TL_WEIGHTING_COUNT; i++) {
        const char *n = tl_weighting_name((tl_weighting)i);
        lua_createtable(L, 0, 3);
        lua_pushstring(L, n);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, tl_weighting_about((tl_weighting)i));
        lua_setfield(L, -2, "about");
        lua_newtable(L);
        int j = 0;
        for (size_t o = 0; o < sizeof weighting_options / sizeof *weighting_options; o++)
            if (strcmp(weighting_options[o].method, n) == 0) {
                lua_pushstring(L, weighting_options[o].key);
                lua_rawseti(L, -2, ++j);
            }
        lua_setfield(L, -2, "options");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, tl, "weightings");
    static const tl_lua_doc_entry docs[] = {
        {"model", "tl.model",
         "tl.model{data=d, backbone=tl.mmoe{...}, towers={task=tl.mlp{64}}, tower=tl.mlp{64},\n"
         "         weights={task=1}, weighting=\"fixed\" or {\"famo\", lr=0.025} (tl.weightings),\n"
         "         emb=16, batch=1024, seed=1, alpha=1.5 (gradnorm), temperature=2 (dwa), max_memory=}\n"
         "towers=tl.mlp{...} gives every task that tower (like tower=). Before allocating, the\n"
         "model's memory (parameters, gradients, Adam state, best-weights copy, activations) is\n"
         "checked against the available memory (MemAvailable); max_memory=\"64G\" (or bytes)\n"
         "sets the limit instead.\n"
         "Build a multi-task model for dataset d: embeddings of its categorical fields plus its\n"
         "numeric features feed the backbone; each task gets its own tower. Methods: m:fit{...},\n"
         "m:evaluate(split), m:predict(split), m:history(), m.weights.<task> = w (next step)."},
    };
    tl_lua_docs(L, tl, docs, sizeof docs / sizeof *docs);
}
