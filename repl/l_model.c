/* l_model.c — Lua bindings of engine/model.h: tl.model, the backbone and
 * tower builders (tl.shared_bottom, tl.omoe, tl.mmoe, tl.ple, tl.esmm,
 * tl.aitm, tl.mlp), tl.optim.*, and the model object (fit, evaluate, predict,
 * history, weights).
 *
 * Builders return plain tables tagged by a metatable, so scripts can inspect
 * and copy them; tl.model turns them into an engine configuration. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diagnose.h"
#include "l_data.h"
#include "l_model.h"
#include "l_util.h"
#include "io.h"
#include "model.h"

#define MODEL_MT TL_MODEL_MT
#define SPEC_MT "tl.spec"
#define RESULT_MT "tl.result"

typedef struct {
    tl_model *m;
    int busy;          /* inside m:fit: close and fit refuse, __gc defers */
    int free_pending;  /* collected while busy (lua_close from a callback): freed by fit */
} l_model;

/* ---- specs: tl.mlp, backbones, optimizers ------------------------------------ */

static void push_spec(lua_State *L, const char *kind)
{
    luaL_setmetatable(L, SPEC_MT);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
}

/* Read an array of positive layer widths at table index idx (1..n). */
static void read_units(lua_State *L, int idx, const char *fn, const char *field, tl_mlp_spec *s)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n > TL_MAX_LAYERS) luaL_error(L, "%s: %s has %d layers; at most %d", fn, field, (int)n, TL_MAX_LAYERS);
    s->n = (int)n;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        int isnum;
        lua_Integer u = lua_tointegerx(L, -1, &isnum);
        if (!isnum || u < 1 || u > 65536)
            luaL_error(L, "%s: %s[%d] must be a positive integer (layer width), got %s", fn, field,
                       i, isnum ? lua_tostring(L, -1) : luaL_typename(L, -1));
        s->units[i - 1] = (int)u;
        lua_pop(L, 1);
    }
}

/* tl.mlp{128, 80, dropout=0.5} */
static int l_mlp(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    tl_mlp_spec s = {0};
    read_units(L, 1, "tl.mlp", "layer list", &s);
    lua_pushnil(L);
    while (lua_next(L, 1)) { /* only the array part and 'dropout' are allowed */
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "dropout") == 0) continue;
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= s.n) continue;
        luaL_error(L, "tl.mlp: unknown field '%s' (expected layer widths and dropout)",
                   lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
    }
    double p = tl_lua_opt_number(L, 1, "tl.mlp", "dropout", 0.0, 0.0, 0.999);
    lua_newtable(L);
    push_spec(L, "mlp");
    lua_newtable(L);
    for (int i = 0; i < s.n; i++) {
        lua_pushinteger(L, s.units[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "units");
    lua_pushnumber(L, p);
    lua_setfield(L, -2, "dropout");
    return 1;
}

/* Copy allowed fields of the options table at 1 into a new spec table. */
static int make_spec(lua_State *L, const char *kind, const char *fn, const char *const *allowed)
{
    if (lua_isnoneornil(L, 1)) lua_newtable(L), lua_replace(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    tl_lua_check_fields(L, 1, fn, allowed);
    lua_newtable(L);
    push_spec(L, kind);
    for (int i = 0; allowed[i]; i++) {
        lua_getfield(L, 1, allowed[i]);
        lua_setfield(L, -2, allowed[i]);
    }
    return 1;
}

static const char *const dml_fields[] = {"ctfm", "gkd", "stop_grad", "gkd_layers", "dropout",
                                         "gkd_tasks", NULL};
static const char *const distill_fields[] = {"pairs", "aux", "kd", "bce_on_aux", "calibrate",
                                             "calib_data", "correct", "lambda", "teacher_grad",
                                             "warmup", "order", "teacher", "max_pairs", "naive",
                                             "calib_every", NULL};
static const char *const sb_fields[] = {"bottom", "dropout", NULL};
static const char *const moe_fields[] = {"experts", "expert", "dropout", NULL};
static const char *const ple_fields[] = {"levels", "shared", "specific", "expert", "dropout", NULL};
static const char *const esmm_fields[] = {NULL};
static const char *const aitm_fields[] = {"constraint", NULL};

static void read_backbone(lua_State *L, int idx, tl_backbone_spec *b);
static void read_optim(lua_State *L, int idx, const char *fn, tl_optim_config *oc);

/* A backbone spec, validated now so a typo fails where it is written. */
static int backbone_spec(lua_State *L, const char *kind, const char *fn, const char *const *allowed)
{
    make_spec(L, kind, fn, allowed);
    tl_model_config c;
    tl_model_config_defaults(&c);
    read_backbone(L, -1, &c.backbone);
    return 1;
}

static void read_dml(lua_State *L, int idx, tl_dml_spec *d);
static void read_distill(lua_State *L, int idx, tl_model_config *c);

static int l_dml(lua_State *L)
{
    make_spec(L, "dml", "tl.dml", dml_fields);
    tl_model_config c; /* no tasks yet: gkd_tasks names are resolved by tl.model */
    tl_model_config_defaults(&c);
    read_dml(L, -1, &c.dml);
    return 1;
}

static int l_crossdistil(lua_State *L)
{
    make_spec(L, "crossdistil", "tl.crossdistil", distill_fields);
    tl_model_config c;
    tl_model_config_defaults(&c);
    read_distill(L, -1, &c); /* checks types; task names are resolved by tl.model */
    return 1;
}

static int l_shared_bottom(lua_State *L) { return backbone_spec(L, "shared_bottom", "tl.shared_bottom", sb_fields); }
static int l_omoe(lua_State *L) { return backbone_spec(L, "omoe", "tl.omoe", moe_fields); }
static int l_mmoe(lua_State *L) { return backbone_spec(L, "mmoe", "tl.mmoe", moe_fields); }
static int l_ple(lua_State *L) { return backbone_spec(L, "ple", "tl.ple", ple_fields); }
static int l_esmm(lua_State *L) { return backbone_spec(L, "esmm", "tl.esmm", esmm_fields); }
static int l_aitm(lua_State *L) { return backbone_spec(L, "aitm", "tl.aitm", aitm_fields); }

static const char *const optim_fields[] = {"lr", "momentum", "nesterov", "beta1", "beta2", "eps",
                                           "l2", "weight_decay", "clip", "schedule", NULL};

static int optim_spec(lua_State *L, const char *kind)
{
    char fn[32];
    snprintf(fn, sizeof fn, "tl.optim.%s", kind);
    make_spec(L, kind, fn, optim_fields);
    tl_optim_config oc;
    read_optim(L, -1, fn, &oc); /* validate now */
    return 1;
}

static int l_sgd(lua_State *L) { return optim_spec(L, "sgd"); }
static int l_adam(lua_State *L) { return optim_spec(L, "adam"); }
static int l_adamw(lua_State *L) { return optim_spec(L, "adamw"); }
static int l_adagrad(lua_State *L) { return optim_spec(L, "adagrad"); }

/* Spec table at idx -> kind string (or NULL when not a spec). */
static const char *spec_kind(lua_State *L, int idx)
{
    if (!lua_istable(L, idx) || !luaL_testudata(L, idx, SPEC_MT)) {
        if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return NULL;
        luaL_getmetatable(L, SPEC_MT);
        int same = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (!same) return NULL;
    }
    lua_getfield(L, idx, "kind");
    const char *k = lua_tostring(L, -1);
    lua_pop(L, 1);
    return k;
}

/* schedule={"cosine", steps=N, min_lr=0, warmup=0} | {"step", every=N, gamma=0.1, warmup=0}
 * | {"warmup", steps=N}: the learning-rate schedule of an optimizer spec. */
static void read_schedule(lua_State *L, int idx, tl_optim_config *oc)
{
    const char *fn = "tl.optim: schedule";
    lua_getfield(L, idx, "schedule");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1) || lua_rawgeti(L, -1, 1) != LUA_TSTRING)
        luaL_error(L, "%s must be a table such as {\"cosine\", steps=10000, warmup=500}, "
                      "{\"step\", every=1000, gamma=0.5} or {\"warmup\", steps=500}", fn);
    const char *kind = lua_tostring(L, -1);
    lua_pop(L, 1);
    int t = lua_gettop(L);
    static const char *const step_fields[] = {"every", "gamma", "warmup", NULL};
    static const char *const cos_fields[] = {"steps", "min_lr", "warmup", NULL};
    static const char *const warm_fields[] = {"steps", NULL};
    const char *const *allowed = strcmp(kind, "step") == 0     ? step_fields
                                 : strcmp(kind, "cosine") == 0 ? cos_fields
                                                               : warm_fields;
    lua_pushnil(L);
    while (lua_next(L, t)) { /* [1] is the kind; the rest must be named fields */
        lua_pop(L, 1);
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) == 1) continue;
        int ok = 0;
        for (int i = 0; allowed[i] && lua_type(L, -1) == LUA_TSTRING; i++)
            ok |= strcmp(lua_tostring(L, -1), allowed[i]) == 0;
        if (!ok)
            luaL_error(L, "%s \"%s\": unknown field '%s'", fn, kind,
                       lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
    }
    if (strcmp(kind, "step") == 0) {
        oc->schedule = TL_SCHEDULE_STEP;
        oc->step_size = tl_lua_opt_int(L, t, fn, "every", 0, 1, INT64_MAX / 4);
        if (oc->step_size == 0) luaL_error(L, "%s \"step\" needs every= (steps between decays)", fn);
        oc->gamma = (float)tl_lua_opt_number(L, t, fn, "gamma", 0.1, 1e-12, 1e6);
        oc->warmup = tl_lua_opt_int(L, t, fn, "warmup", 0, 0, INT64_MAX / 4);
    } else if (strcmp(kind, "cosine") == 0) {
        oc->schedule = TL_SCHEDULE_COSINE;
        oc->total = tl_lua_opt_int(L, t, fn, "steps", 0, 1, INT64_MAX / 4);
        if (oc->total == 0) luaL_error(L, "%s \"cosine\" needs steps= (the decay's length)", fn);
        oc->min_lr = (float)tl_lua_opt_number(L, t, fn, "min_lr", 0.0, 0.0, oc->lr);
        oc->warmup = tl_lua_opt_int(L, t, fn, "warmup", 0, 0, INT64_MAX / 4);
    } else if (strcmp(kind, "warmup") == 0) {
        oc->warmup = tl_lua_opt_int(L, t, fn, "steps", 0, 1, INT64_MAX / 4);
        if (oc->warmup == 0) luaL_error(L, "%s \"warmup\" needs steps=", fn);
    } else {
        luaL_error(L, "%s: unknown kind '%s' (expected step, cosine or warmup)", fn, kind);
    }
    lua_pop(L, 1);
}

static void read_optim(lua_State *L, int idx, const char *fn, tl_optim_config *oc)
{
    idx = lua_absindex(L, idx);
    const char *kind = spec_kind(L, idx);
    tl_optim_kind k;
    if (!kind || tl_optim_parse(kind, &k) != TL_OK)
        luaL_error(L, "%s: field 'optim' must be an optimizer from tl.optim (e.g. "
                      "tl.optim.adam{lr=1e-3}), got %s", fn, luaL_typename(L, idx));
    *oc = tl_optim_defaults(k);
    oc->lr = (float)tl_lua_opt_number(L, idx, "tl.optim", "lr", oc->lr, 1e-12, 1e6);
    oc->momentum = (float)tl_lua_opt_number(L, idx, "tl.optim", "momentum", oc->momentum, 0, 0.9999);
    oc->nesterov = tl_lua_opt_bool(L, idx, "tl.optim", "nesterov", 0);
    oc->beta1 = (float)tl_lua_opt_number(L, idx, "tl.optim", "beta1", oc->beta1, 0, 0.9999999);
    oc->beta2 = (float)tl_lua_opt_number(L, idx, "tl.optim", "beta2", oc->beta2, 0, 0.9999999);
    oc->eps = (float)tl_lua_opt_number(L, idx, "tl.optim", "eps", oc->eps, 0, 1);
    double wd = tl_lua_opt_number(L, idx, "tl.optim", "weight_decay", oc->weight_decay, 0, 1e3);
    oc->weight_decay = (float)tl_lua_opt_number(L, idx, "tl.optim", "l2", wd, 0, 1e3);
    oc->clip_norm = (float)tl_lua_opt_number(L, idx, "tl.optim", "clip", 0, 0, 1e12);
    read_schedule(L, idx, oc);
}

/* Read an MLP spec (tl.mlp{...} or a plain array of widths) at idx. */
static void read_mlp(lua_State *L, int idx, const char *fn, const char *field, tl_mlp_spec *s,
                     float dropout)
{
    idx = lua_absindex(L, idx);
    memset(s, 0, sizeof *s);
    s->dropout = dropout;
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: field '%s' must be tl.mlp{...} or a list of layer widths, got %s", fn,
                   field, luaL_typename(L, idx));
    const char *kind = spec_kind(L, idx);
    if (kind && strcmp(kind, "mlp") == 0) {
        lua_getfield(L, idx, "units");
        read_units(L, lua_gettop(L), fn, field, s);
        lua_pop(L, 1);
        lua_getfield(L, idx, "dropout");
        if (lua_tonumber(L, -1) > 0) s->dropout = (float)lua_tonumber(L, -1);
        lua_pop(L, 1);
    } else if (kind) {
        luaL_error(L, "%s: field '%s' must be tl.mlp{...}, got a %s spec", fn, field, kind);
    } else {
        read_units(L, idx, fn, field, s);
    }
}

static void read_backbone(lua_State *L, int idx, tl_backbone_spec *b)
{
    idx = lua_absindex(L, idx);
    const char *kind = spec_kind(L, idx);
    tl_backbone_kind k;
    if (!kind || tl_backbone_parse(kind, &k) != TL_OK)
        luaL_error(L, "tl.model: field 'backbone' must be a backbone such as tl.mmoe{} or "
                      "tl.shared_bottom{}, got %s", kind ? kind : luaL_typename(L, idx));
    char fn[32];
    snprintf(fn, sizeof fn, "tl.%s", kind);
    b->kind = k;
    float p = (float)tl_lua_opt_number(L, idx, fn, "dropout", 0.0, 0.0, 0.999);
    b->bottom.dropout = b->expert.dropout = p;
    lua_getfield(L, idx, "bottom");
    if (!lua_isnil(L, -1)) read_mlp(L, -1, fn, "bottom", &b->bottom, p);
    lua_pop(L, 1);
    lua_getfield(L, idx, "expert");
    if (!lua_isnil(L, -1)) read_mlp(L, -1, fn, "expert", &b->expert, p);
    lua_pop(L, 1);
    b->experts = (int)tl_lua_opt_int(L, idx, fn, "experts", b->experts, 1, 1024);
    b->levels = (int)tl_lua_opt_int(L, idx, fn, "levels", b->levels, 1, 8);
    b->shared = (int)tl_lua_opt_int(L, idx, fn, "shared", b->shared, 0, 256);
    b->specific = (int)tl_lua_opt_int(L, idx, fn, "specific", b->specific, 0, 256);
    b->constraint = (float)tl_lua_opt_number(L, idx, fn, "constraint", b->constraint, 0.0, 1e6);
}


/* Index of task `name` in a configuration, or -1. */
static int config_task_index(const tl_model_config *c, const char *name)
{
    for (int k = 0; k < c->n_tasks; k++)
        if (strcmp(c->tasks[k].name, name) == 0) return k;
    return -1;
}

/* "a, b, c": the task names, for messages (static buffer). */
static const char *config_task_list(const tl_model_config *c)
{
    static char buf[TL_MAX_TASKS * (TL_TASK_NAME_MAX + 2)];
    buf[0] = '\0';
    for (int k = 0; k < c->n_tasks; k++) {
        if (k) strcat(buf, ", ");
        strcat(buf, c->tasks[k].name);
    }
    return buf;
}


static void read_dml(lua_State *L, int idx, tl_dml_spec *d)
{
    const char *fn = "tl.dml";
    idx = lua_absindex(L, idx);
    const char *kind = spec_kind(L, idx);
    if (!kind || strcmp(kind, "dml") != 0)
        luaL_error(L, "tl.model: field 'mutual' must be tl.dml{...}, got %s",
                   kind ? kind : luaL_typename(L, idx));
    d->enabled = 1;
    d->ctfm = tl_lua_opt_bool(L, idx, fn, "ctfm", 1);
    d->gkd = tl_lua_opt_bool(L, idx, fn, "gkd", 1);
    d->stop_grad = tl_lua_opt_bool(L, idx, fn, "stop_grad", 1);
    d->gkd_layers = (int)tl_lua_opt_int(L, idx, fn, "gkd_layers", 1, 1, TL_MAX_LAYERS);
    d->dropout = (float)tl_lua_opt_number(L, idx, fn, "dropout", 0.0, 0.0, 0.999);
    if (!d->ctfm && !d->gkd) luaL_error(L, "tl.dml: ctfm and gkd are both off; enable at least one");
    /* d is always the dml member of a configuration (l_dml's, tl.model's):
     * its tasks resolve gkd_tasks; without tasks the names are only checked */
    const tl_model_config *c = (const tl_model_config *)(const void *)((const char *)d -
                                                                       offsetof(tl_model_config, dml));
    d->gkd_tasks = 0;
    lua_getfield(L, idx, "gkd_tasks");
    if (!lua_isnil(L, -1)) {
        if (!d->gkd) luaL_error(L, "tl.dml: gkd_tasks is set but gkd is off");
        if (!lua_istable(L, -1) || lua_rawlen(L, -1) < 1)
            luaL_error(L, "tl.dml: field 'gkd_tasks' must be a non-empty list of task names, e.g. "
                          "{\"like\"}, got %s", lua_istable(L, -1) ? "an empty table" : luaL_typename(L, -1));
        int n = (int)lua_rawlen(L, -1);
        for (int i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
                luaL_error(L, "tl.dml: gkd_tasks[%d] must be a task name, got %s", i, luaL_typename(L, -1));
            const char *t = lua_tostring(L, -1);
            if (c->n_tasks) {
                int k = config_task_index(c, t);
                if (k < 0)
                    luaL_error(L, "tl.dml: gkd_tasks[%d] names unknown task '%s' (the dataset's tasks "
                                  "are %s)", i, t, config_task_list(c));
                d->gkd_tasks |= 1u << k;
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* Reads tl.crossdistil{...}; pair names are resolved against c's tasks when
 * c has tasks (tl.model), and only type-checked otherwise (tl.crossdistil). */
static void read_distill(lua_State *L, int idx, tl_model_config *c)
{
    const char *fn = "tl.crossdistil";
    idx = lua_absindex(L, idx);
    const char *kind = spec_kind(L, idx);
    if (!kind || strcmp(kind, "crossdistil") != 0)
        luaL_error(L, "tl.model: field 'distill' must be tl.crossdistil{...}, got %s",
                   kind ? kind : luaL_typename(L, idx));
    tl_distill_spec *ds = &c->distill;
    ds->enabled = 1;
    ds->aux = (float)tl_lua_opt_number(L, idx, fn, "aux", ds->aux, 0.0, 1e6);
    ds->kd = (float)tl_lua_opt_number(L, idx, fn, "kd", ds->kd, 0.0, 1.0);
    ds->bce_on_aux = tl_lua_opt_bool(L, idx, fn, "bce_on_aux", 0);
    static const char *const cal[] = {"platt", "isotonic", NULL};
    static const char *const cdata[] = {"train", "valid", NULL};
    static const char *const corr[] = {"none", "blend", "clip", NULL};
    static const char *const order[] = {"auto", "positive", "negative", NULL};
    static const char *const teacher[] = {"separate", "shared", NULL};
    ds->calibrate = (tl_distill_calib)tl_lua_opt_enum(L, idx, fn, "calibrate", cal, TL_DISTILL_PLATT);
    ds->calib_valid = tl_lua_opt_enum(L, idx, fn, "calib_data", cdata, 1);
    ds->calib_every = (int)tl_lua_opt_int(L, idx, fn, "calib_every", 0, 0, INT32_MAX);
    ds->correct = (tl_distill_correct)tl_lua_opt_enum(L, idx, fn, "correct", corr, TL_CORRECT_BLEND);
    ds->lambda = (float)tl_lua_opt_number(L, idx, fn, "lambda", ds->lambda, 0.0, 1.0);
    ds->teacher_grad = tl_lua_opt_bool(L, idx, fn, "teacher_grad", 0);
    ds->warmup = tl_lua_opt_int(L, idx, fn, "warmup", 0, 0, INT64_MAX);
    ds->order = tl_lua_opt_enum(L, idx, fn, "order", order, 0); /* auto: resolved by m:fit */
    ds->teacher_shared = tl_lua_opt_enum(L, idx, fn, "teacher", teacher, 0);
    ds->max_pairs = (int)tl_lua_opt_int(L, idx, fn, "max_pairs", ds->max_pairs, 1, 1 << 30);
    ds->naive = tl_lua_opt_bool(L, idx, fn, "naive", 0);
    lua_getfield(L, idx, "pairs");
    if (!lua_istable(L, -1))
        luaL_error(L, "tl.crossdistil: field 'pairs' must be a list of task-name pairs, e.g. "
                      "{{\"income\", \"never_married\"}}, got %s", luaL_typename(L, -1));
    int np = (int)lua_rawlen(L, -1);
    if (np < 1 || np > TL_MAX_TASKS)
        luaL_error(L, "tl.crossdistil: field 'pairs' must hold 1..%d pairs, got %d", TL_MAX_TASKS, np);
    ds->n_pairs = np;
    for (int p = 1; p <= np; p++) {
        lua_rawgeti(L, -1, p);
        for (int s = 1; s <= 2; s++) {
            if (!lua_istable(L, -1) || lua_rawgeti(L, -1, s) != LUA_TSTRING)
                luaL_error(L, "tl.crossdistil: pairs[%d] must be two task names", p);
            const char *t = lua_tostring(L, -1);
            int k = c->n_tasks ? config_task_index(c, t) : 0;
            if (k < 0)
                luaL_error(L, "tl.crossdistil: pairs[%d] names unknown task '%s' (the dataset's "
                              "tasks are %s)", p, t, config_task_list(c));
            ds->pairs[p - 1][s - 1] = k;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* ---- the model object ----------------------------------------------------------- */

static l_model *check_model(lua_State *L, int idx)
{
    l_model *lm = luaL_checkudata(L, idx, MODEL_MT);
    if (!lm->m) luaL_error(L, "model has been closed");
    return lm;
}

/* __gc cannot raise: a model collected while its fit runs (only lua_close
 * from inside a progress callback can do that) is left to the fit, which
 * frees it when it returns. */
static int l_model_gc(lua_State *L)
{
    l_model *lm = luaL_checkudata(L, 1, MODEL_MT);
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
    l_model *lm = luaL_checkudata(L, 1, MODEL_MT);
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
    int k = t ? config_task_index(c, t) : -1;
    if (k < 0)
        luaL_error(L, "tl.model: %s: unknown task '%s' (the dataset's tasks are %s)", field,
                   t ? t : luaL_typename(L, -2), config_task_list(c));
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
    if (!lua_isnil(L, -1)) read_mlp(L, -1, fn, "tower", &tower, 0.0f);
    lua_pop(L, 1);
    if (tl_model_config_from_dataset(&c, d, &tower) != TL_OK)
        return tl_lua_raise_status(L, fn, TL_ERR_ARG);
    lua_getfield(L, 1, "backbone");
    if (!lua_isnil(L, -1)) read_backbone(L, -1, &c.backbone);
    lua_pop(L, 1);

    lua_getfield(L, 1, "towers");
    const char *towers_kind = lua_isnil(L, -1) ? NULL : spec_kind(L, -1);
    if (towers_kind && strcmp(towers_kind, "mlp") == 0) { /* towers=tl.mlp{...}: every task's */
        for (int k = 0; k < c.n_tasks; k++) read_mlp(L, -1, fn, "towers", &c.tasks[k].tower, 0.0f);
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
            read_mlp(L, -1, fn, "towers", &c.tasks[k].tower, 0.0f);
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
                int s = config_task_index(&c, sp);
                if (s < 0 || s == k || c.tasks[s].type != TL_TASK_BINARY)
                    luaL_error(L, "%s: space must name another binary task, got '%s'", tfn, sp);
                c.tasks[k].space = s;
            }
            c.tasks[k].weight = (float)tl_lua_opt_number(L, ti, tfn, "weight", c.tasks[k].weight, 0, 1e9);
            lua_getfield(L, ti, "tower");
            if (!lua_isnil(L, -1)) read_mlp(L, -1, tfn, "tower", &c.tasks[k].tower, 0.0f);
            lua_pop(L, 2);
        }
    }
    lua_pop(L, 1);
    static const char *const weightings[] = {"fixed", "uncertainty", "gradnorm", "dwa", "pcgrad", NULL};
    c.weighting = (tl_weighting)tl_lua_opt_enum(L, 1, fn, "weighting", weightings, TL_WEIGHTING_FIXED);
    c.emb_dim = (int)tl_lua_opt_int(L, 1, fn, "emb", c.emb_dim, 1, 4096);
    c.max_batch = (int)tl_lua_opt_int(L, 1, fn, "batch", c.max_batch, 1, 1 << 20);
    c.gradnorm_alpha = (float)tl_lua_opt_number(L, 1, fn, "alpha", c.gradnorm_alpha, 0, 100);
    c.dwa_temperature = (float)tl_lua_opt_number(L, 1, fn, "temperature", c.dwa_temperature, 1e-3, 1e3);
    lua_getfield(L, 1, "mutual");
    if (!lua_isnil(L, -1)) read_dml(L, -1, &c.dml);
    lua_pop(L, 1);
    lua_getfield(L, 1, "distill");
    if (!lua_isnil(L, -1)) read_distill(L, -1, &c);
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
    l_model *lm = lua_newuserdatauv(L, sizeof *lm, 1);
    lm->m = m;
    lm->busy = lm->free_pending = 0;
    luaL_setmetatable(L, MODEL_MT);
    if (data_idx) {
        lua_pushvalue(L, data_idx);
        lua_setiuservalue(L, -2, 1);
    }
    tl_lua_note_alloc(L, tl_model_param_count(m) * sizeof(float) * 4);
}

tl_model *tl_lua_check_model(lua_State *L, int idx) { return check_model(L, idx)->m; }

void tl_lua_model_method(lua_State *L, const char *name, lua_CFunction fn)
{
    luaL_getmetatable(L, MODEL_MT);
    lua_getfield(L, -1, "methods");
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
    lua_pop(L, 2);
}

/* Split at idx; checks it has the model's feature layout. */
static const tl_split *check_model_split(lua_State *L, int idx, tl_model *m, const char *fn,
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
        l_model *owner = luaL_testudata(L, 1, MODEL_MT);
        if (owner) lua_pushvalue(L, 1);
        else if (lua_istable(L, 1) && lua_getfield(L, 1, "model") != LUA_TNIL) owner = luaL_testudata(L, -1, MODEL_MT);
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
        size_t fl = strlen(fn);
        if (!tl_dataset_labeled(d) && !(fl >= 8 && strcmp(fn + fl - 8, ":predict") == 0))
            luaL_error(L, "%s: field '%s': the split's dataset has no labels (read with like= from a file "
                          "without label columns): only m:predict takes it",
                       fn, field);
    }
    return s;
}

/* ---- fit with progress, live plot and Ctrl-C --------------------------------------- */

typedef struct {
    lua_State *L;
    tl_model *m;
    int quiet, tty;
    int callback_idx;   /* Lua progress function or 0 */
    int live_idx;       /* live plot object or 0 */
    int model_idx;
    int bar_open;          /* a progress bar is drawn on the current line */
    const char *ckpt_path; /* fit{checkpoint=...}: saved at epoch ends and every ckpt_every steps */
    int64_t ckpt_every;
    char error[512];    /* error raised inside a Lua callback */
} fit_ctx;

static void push_history(lua_State *L, tl_model *m);

/* Call obj:update(history) on the live plot; errors are reported once. */
/* lp:update(m [, force]) on every step: the live plot throttles itself (a
 * call that is not due costs well under a microsecond) and asks the model for
 * its history only when it draws, reading just the new entries. */
static void live_update(fit_ctx *x, int force)
{
    lua_State *L = x->L;
    lua_getfield(L, x->live_idx, "update");
    lua_pushvalue(L, x->live_idx);
    lua_pushvalue(L, x->model_idx);
    lua_pushboolean(L, force);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        fprintf(stderr, "plot: %s (live plot disabled)\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        x->live_idx = 0;
    }
}

static int fit_progress(void *ud, const tl_progress *p)
{
    fit_ctx *x = ud;
    lua_State *L = x->L;
    const tl_model_config *c = tl_model_config_get(x->m);
    /* A step checkpoint is not taken at an epoch's last batch: the epoch is
     * not closed yet, and the epoch-end call that follows saves it closed. */
    if (x->ckpt_path &&
        (p->kind == TL_PROGRESS_EPOCH || (x->ckpt_every > 0 && p->step % x->ckpt_every == 0 &&
                                          p->batch_in_epoch < p->batches_per_epoch)) &&
        tl_model_save(x->m, x->ckpt_path) != TL_OK) {
        snprintf(x->error, sizeof x->error, "checkpoint: %s", tl_errmsg());
        return 1;
    }
    /* After Ctrl-C no Lua runs here: the REPL's pending hook would fail the
     * call with a bare "interrupted!". The engine stops at its next check
     * and says where. */
    int cancelled = tl_cancelled();
    if (x->live_idx && !cancelled) live_update(x, p->kind == TL_PROGRESS_EPOCH);
    if (!x->quiet) {
        if (p->kind == TL_PROGRESS_STEP && x->tty) {
            printf("\r  epoch %d/%d  %3d%%  step %lld  loss", p->epoch, p->epochs,
                   100 * p->batch_in_epoch / (p->batches_per_epoch ? p->batches_per_epoch : 1),
                   (long long)p->step);
            for (int k = 0; k < c->n_tasks; k++) printf(" %s %.4f", c->tasks[k].name, p->loss[k]);
            printf("   ");
            fflush(stdout);
            x->bar_open = 1;
        } else if (p->kind == TL_PROGRESS_EVAL) {
            printf("%s  step %lld  valid", x->tty ? "\r\033[K" : "", (long long)p->step);
            for (int k = 0; k < c->n_tasks; k++)
                printf(" %s %s %.4f", c->tasks[k].name,
                       c->tasks[k].type == TL_TASK_BINARY ? "auc" : "rmse", p->valid[k]);
            printf("\n");
            fflush(stdout);
            x->bar_open = 0;
        } else if (p->kind == TL_PROGRESS_EPOCH) {
            printf("%sepoch %d/%d  step %lld  loss", x->tty ? "\r\033[K" : "", p->epoch, p->epochs,
                   (long long)p->step);
            for (int k = 0; k < c->n_tasks; k++) printf(" %s %.4f", c->tasks[k].name, p->loss[k]);
            if (p->valid && isfinite(p->monitor)) {
                printf("  | valid");
                for (int k = 0; k < c->n_tasks; k++)
                    printf(" %s %s %.4f", c->tasks[k].name,
                           c->tasks[k].type == TL_TASK_BINARY ? "auc" : "rmse", p->valid[k]);
                if (p->improved) printf("  *");
            }
            printf("\n");
            fflush(stdout);
            x->bar_open = 0;
        }
    }
    if (x->callback_idx && !cancelled) {
        lua_pushvalue(L, x->callback_idx);
        lua_newtable(L);
        lua_pushstring(L, p->kind == TL_PROGRESS_EPOCH ? "epoch" : p->kind == TL_PROGRESS_EVAL ? "eval" : "step");
        lua_setfield(L, -2, "kind");
        lua_pushinteger(L, p->epoch);
        lua_setfield(L, -2, "epoch");
        lua_pushinteger(L, p->step);
        lua_setfield(L, -2, "step");
        lua_newtable(L);
        for (int k = 0; k < c->n_tasks; k++) {
            lua_pushnumber(L, p->loss[k]);
            lua_setfield(L, -2, c->tasks[k].name);
        }
        lua_setfield(L, -2, "loss");
        if (p->valid) {
            lua_newtable(L);
            for (int k = 0; k < c->n_tasks; k++) {
                lua_pushnumber(L, p->valid[k]);
                lua_setfield(L, -2, c->tasks[k].name);
            }
            lua_setfield(L, -2, "valid");
        }
        unsigned long interrupts = tl_lua_interrupt_count();
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            /* Ctrl-C inside the callback: the engine reports it. A delivered
             * interrupt has cleared the flag (an engine call inside the
             * callback saw it), so raise it again for the fit loop. */
            if (tl_cancelled() || tl_lua_interrupt_count() != interrupts) {
                tl_cancel_request();
                lua_pop(L, 1);
                return 0;
            }
            snprintf(x->error, sizeof x->error, "progress callback failed: %s", lua_tostring(L, -1));
            lua_pop(L, 1);
            return 1;
        }
        /* returning false (or "stop") ends training, like Ctrl-C */
        int stop = (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) ||
                   (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "stop") == 0);
        lua_pop(L, 1);
        return stop;
    }
    return 0;
}

static const char *const fit_fields[] = {"data", "valid", "epochs", "patience", "batch",
                                         "optim", "plot", "verbose", "max_steps", "monitor",
                                         "progress", "seed", "shuffle", "restore_best",
                                         "checkpoint", "every", "eval_every", "diagnostics", NULL};

/* m:fit{data=d.train, valid=d.valid, epochs=10, patience=3, batch=1024,
 *       optim=tl.optim.adam{lr=1e-3}, plot=false, verbose=auto} */
static int l_model_fit(lua_State *L)
{
    const char *fn = "m:fit";
    l_model *lm = check_model(L, 1);
    if (lm->busy)
        return luaL_error(L, "m:fit: the model is training (m:fit called from its own fit's "
                             "progress callback)");
    luaL_checktype(L, 2, LUA_TTABLE);
    tl_lua_check_fields(L, 2, fn, fit_fields);
    tl_fit_options o;
    tl_fit_defaults(&o);
    lua_getfield(L, 2, "data");
    const tl_split *train = check_model_split(L, -1, lm->m, fn, "data");
    const tl_dataset *train_d = tl_lua_split_dataset(L, -1);
    lua_getfield(L, 2, "valid");
    const tl_split *valid = lua_isnil(L, -1) ? NULL : check_model_split(L, -1, lm->m, fn, "valid");
    const tl_dataset *valid_d = valid ? tl_lua_split_dataset(L, -1) : NULL;
    o.epochs = (int)tl_lua_opt_int(L, 2, fn, "epochs", 10, 1, 1000000);
    o.patience = (int)tl_lua_opt_int(L, 2, fn, "patience", 0, 0, 1000000);
    o.batch = (int)tl_lua_opt_int(L, 2, fn, "batch", tl_model_config_get(lm->m)->max_batch, 1,
                                  1 << 20);
    if (o.batch > tl_graph_max_batch(tl_model_graph(lm->m))) tl_lua_memory_refresh();
    o.max_steps = tl_lua_opt_int(L, 2, fn, "max_steps", 0, 0, INT64_MAX);
    o.seed = (uint64_t)tl_lua_opt_int(L, 2, fn, "seed", 0, 0, INT64_MAX);
    o.shuffle = tl_lua_opt_bool(L, 2, fn, "shuffle", 1);
    o.restore_best = tl_lua_opt_bool(L, 2, fn, "restore_best", 1);
    o.eval_every = (int)tl_lua_opt_int(L, 2, fn, "eval_every", 0, 0, INT32_MAX);
    o.diagnostics = (int)tl_lua_opt_int(L, 2, fn, "diagnostics", 0, 0, INT32_MAX);
    const char *monitor = tl_lua_opt_string(L, 2, fn, "monitor", NULL);
    if (monitor && (o.monitor_task = tl_model_task_index(lm->m, monitor)) < 0)
        luaL_error(L, "%s: field 'monitor' names unknown task '%s'", fn, monitor);
    lua_getfield(L, 2, "optim");
    if (!lua_isnil(L, -1))
        read_optim(L, -1, fn, &o.optim);
    else if (tl_model_optim(lm->m))
        o.optim = *tl_optim_get_config(tl_model_optim(lm->m)); /* keep the running optimizer */
    lua_pop(L, 1);

    fit_ctx x;
    memset(&x, 0, sizeof x);
    x.L = L;
    x.m = lm->m;
    x.tty = tl_lua_stdout_is_tty();
    /* at a terminal a progress line redrawn in place; elsewhere (a pipe, a
     * log file) one line per epoch */
    x.quiet = !tl_lua_opt_bool(L, 2, fn, "verbose", 1);
    lua_getfield(L, 2, "progress");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TFUNCTION);
        x.callback_idx = lua_gettop(L);
    }
    if (tl_lua_opt_bool(L, 2, fn, "plot", 0)) {
        lua_getglobal(L, "tl");
        lua_getfield(L, -1, "plot");
        if (lua_istable(L, -1)) lua_getfield(L, -1, "live");
        else lua_pushnil(L);
        if (lua_isfunction(L, -1)) {
            lua_newtable(L);
            if (lua_pcall(L, 1, 1, 0) == LUA_OK && !lua_isnil(L, -1)) x.live_idx = lua_gettop(L);
            else if (!lua_isnil(L, -1)) fprintf(stderr, "plot: %s\n", lua_tostring(L, -1));
        } else {
            fprintf(stderr, "m:fit: plot=true but tl.plot.live is not available\n");
        }
    }
    x.ckpt_path = tl_lua_opt_string(L, 2, fn, "checkpoint", NULL);
    x.ckpt_every = tl_lua_opt_int(L, 2, fn, "every", 0, 0, INT64_MAX);
    if (x.ckpt_every > 0 && !x.ckpt_path)
        luaL_error(L, "%s: field 'every' needs field 'checkpoint' (a file path)", fn);
    o.progress = fit_progress;
    o.progress_ud = &x;
    /* step callbacks only when something consumes them: a progress bar, a
     * live plot or a user callback */
    o.progress_every = (!x.quiet && x.tty) || x.live_idx || x.callback_idx || x.ckpt_every ? 1 : 0;
    x.model_idx = 1;

    /* The model and the datasets of its splits are busy while the engine
     * runs: a callback's m:close(), m:fit or d:close() is refused. Nothing
     * below raises until they are released. */
    if (!tl_lua_dataset_hold(train_d)) return luaL_error(L, "%s: too many nested fits", fn);
    if (valid_d && !tl_lua_dataset_hold(valid_d)) {
        tl_lua_dataset_release(train_d);
        return luaL_error(L, "%s: too many nested fits", fn);
    }
    lm->busy = 1;
    tl_status s = tl_model_fit(lm->m, train, valid, &o);
    lm->busy = 0;
    tl_lua_dataset_release(train_d);
    if (valid_d) tl_lua_dataset_release(valid_d);
    if (lm->free_pending) {
        tl_model_free(lm->m);
        lm->m = NULL;
        return 0;
    }
    /* Ctrl-C: the error raised below delivers it, once. Without the REPL's
     * pending "interrupted!" hook a pcall around fit catches it like any
     * error, and the last plot update below runs. */
    if (s == TL_ERR_CANCELLED && tl_cancelled()) lua_sethook(L, NULL, 0, 0);
    if (x.live_idx) live_update(&x, 1);
    if (x.error[0]) luaL_error(L, "%s: %s", fn, x.error);
    if (x.bar_open) printf("\n"); /* stopped mid-epoch: end the progress bar's line */
    if (s != TL_OK) return tl_lua_raise_status(L, fn, s);
    if (valid) { /* experts that collapsed: one warning line */
        char msg[512];
        if (tl_diagnose_collapse(lm->m, valid, msg, sizeof msg) == TL_OK && msg[0])
            fprintf(stderr, "m:fit: warning: %s (see m:gates(split))\n", msg);
    }
    return 0; /* nothing to print at the prompt: the progress lines said it */
}

/* ---- results ------------------------------------------------------------------------ */

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* Calibrators fitted before further training are kept (refitting needs a
 * validation split the model does not know, and a silent refit would change
 * results), but using them says so, once per call, on stderr. */
static void warn_stale_calibrators(tl_model *m, const char *fn)
{
    const tl_model_config *c = tl_model_config_get(m);
    char names[TL_MAX_TASKS * (TL_TASK_NAME_MAX + 2)] = "";
    int64_t age = 0;
    for (int k = 0; k < c->n_tasks; k++) {
        int64_t a = tl_model_calibrator_age(m, k);
        if (a <= 0) continue;
        if (names[0]) strcat(names, ", ");
        strcat(names, c->tasks[k].name);
        if (a > age) age = a;
    }
    if (age > 0)
        fprintf(stderr, "%s: warning: the calibrators of %s are stale: fitted %lld training steps "
                        "ago, before the model trained further; refit them with tl.calibrate(m, "
                        "d.valid)\n", fn, names, (long long)age);
}

/* Push the evaluation result table of model m on split s. */
static void push_evaluation(lua_State *L, tl_model *m, const tl_split *s, int nb, int calibrated,
                            const char *fn)
{
    const tl_model_config *c = tl_model_config_get(m);
    tl_task_eval ev[TL_MAX_TASKS];
    tl_calib_bin *bins = lua_newuserdatauv(L, sizeof(tl_calib_bin) * (size_t)nb * (size_t)c->n_tasks, 0);
    if (calibrated) warn_stale_calibrators(m, fn);
    tl_status st = calibrated ? tl_model_evaluate_calibrated(m, s, nb, ev, bins)
                              : tl_model_evaluate(m, s, nb, ev, bins);
    if (st != TL_OK) tl_lua_raise_status(L, fn, st);
    lua_newtable(L);
    luaL_setmetatable(L, RESULT_MT);
    for (int k = 0; k < c->n_tasks; k++) {
        lua_newtable(L);
        if (ev[k].type == TL_TASK_BINARY) {
            const tl_binary_eval *b = &ev[k].bin;
            set_num(L, "rows", (double)b->rows);
            set_num(L, "auc", b->auc);
            if (!isnan(b->multi_auc)) set_num(L, "multi_auc", b->multi_auc);
            if (s->group) set_num(L, "gauc", b->gauc);
            set_num(L, "logloss", b->logloss);
            set_num(L, "ne", b->ne);
            set_num(L, "brier", b->brier);
            set_num(L, "pcoc", b->pcoc);
            set_num(L, "ece", b->ece);
            set_num(L, "mce", b->mce);
            set_num(L, "slope", b->slope);
            set_num(L, "intercept", b->intercept);
            set_num(L, "base_rate", b->base_rate);
            if (b->notes) {
                lua_pushstring(L, tl_metric_notes_str(b->notes));
                lua_setfield(L, -2, "notes");
            }
            lua_newtable(L);
            for (int i = 0; i < nb; i++) {
                const tl_calib_bin *bi = &bins[(size_t)k * (size_t)nb + (size_t)i];
                lua_newtable(L);
                set_num(L, "lo", bi->lo);
                set_num(L, "hi", bi->hi);
                lua_pushinteger(L, (lua_Integer)bi->count);
                lua_setfield(L, -2, "count");
                set_num(L, "mean_pred", bi->mean_pred);
                set_num(L, "rate", bi->rate);
                set_num(L, "ci_lo", bi->ci_lo);
                set_num(L, "ci_hi", bi->ci_hi);
                lua_rawseti(L, -2, i + 1);
            }
            lua_setfield(L, -2, "bins");
        } else {
            const tl_regression_eval *r = &ev[k].reg;
            set_num(L, "rows", (double)r->rows);
            set_num(L, "mse", r->mse);
            set_num(L, "rmse", r->rmse);
            set_num(L, "mae", r->mae);
        }
        lua_setfield(L, -2, c->tasks[k].name);
    }
    lua_remove(L, -2); /* the bins buffer */
}

/* m:evaluate(split [, {bins=10, calibrated=false}]) -> {task = {auc=, logloss=, ...}} */
static int l_model_evaluate(lua_State *L)
{
    l_model *lm = check_model(L, 1);
    const tl_split *s = check_model_split(L, 2, lm->m, "m:evaluate", "argument 1");
    int nb = 10, calibrated = 0;
    if (lua_istable(L, 3)) {
        static const char *const fields[] = {"bins", "calibrated", "space", NULL};
        tl_lua_check_fields(L, 3, "m:evaluate", fields);
        nb = (int)tl_lua_opt_int(L, 3, "m:evaluate", "bins", 10, 1, 1000);
        calibrated = tl_lua_opt_bool(L, 3, "m:evaluate", "calibrated", 0);
        /* space=false: tasks with a space are judged on every row */
        tl_model_set_eval_in_space(lm->m, tl_lua_opt_bool(L, 3, "m:evaluate", "space", 1));
    }
    push_evaluation(L, lm->m, s, nb, calibrated, "m:evaluate");
    tl_model_set_eval_in_space(lm->m, 1);
    return 1;
}

/* tl.calibrate(m, split, kind) -> calibrated predictor: fits per-task output
 * calibrators on split (a validation split), attaches them to m (saved with
 * it) and returns {model=m, kind=} whose :evaluate(split) shows before and
 * after, and :predict(split) gives calibrated probabilities. */
static int l_calibrate(lua_State *L)
{
    tl_model *m = check_model(L, 1)->m;
    const tl_split *s = check_model_split(L, 2, m, "tl.calibrate", "argument 2");
    static const char *const kinds[] = {"platt", "isotonic", "temperature", NULL};
    static const tl_calib_kind ck[] = {TL_CALIB_PLATT, TL_CALIB_ISOTONIC, TL_CALIB_TEMPERATURE};
    int kind = luaL_checkoption(L, 3, "isotonic", kinds);
    tl_status st = tl_model_calibrate(m, s, ck[kind]);
    if (st != TL_OK) return tl_lua_raise_status(L, "tl.calibrate", st);
    lua_newtable(L);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "model");
    lua_pushstring(L, kinds[kind]);
    lua_setfield(L, -2, "kind");
    luaL_setmetatable(L, "tl.calibrated");
    return 1;
}

static tl_model *calibrated_model(lua_State *L)
{
    int ok = lua_istable(L, 1) && lua_getmetatable(L, 1);
    if (ok) {
        luaL_getmetatable(L, "tl.calibrated");
        ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    if (!ok) luaL_typeerror(L, 1, "calibrated predictor (from tl.calibrate)");
    lua_getfield(L, 1, "model");
    tl_model *m = check_model(L, -1)->m;
    lua_pop(L, 1);
    return m;
}

/* cp:evaluate(split [, {bins=10}]) -> {before = r, after = r} */
static int l_calibrated_evaluate(lua_State *L)
{
    tl_model *m = calibrated_model(L);
    const tl_split *s = check_model_split(L, 2, m, "cp:evaluate", "argument 1");
    int nb = lua_istable(L, 3) ? (int)tl_lua_opt_int(L, 3, "cp:evaluate", "bins", 10, 1, 1000) : 10;
    lua_newtable(L);
    luaL_setmetatable(L, "tl.before_after");
    push_evaluation(L, m, s, nb, 0, "cp:evaluate");
    lua_setfield(L, -2, "before");
    push_evaluation(L, m, s, nb, 1, "cp:evaluate");
    lua_setfield(L, -2, "after");
    return 1;
}

static int l_before_after_tostring(lua_State *L)
{
    lua_getfield(L, 1, "before");
    const char *before = luaL_tolstring(L, -1, NULL);
    lua_getfield(L, 1, "after");
    const char *after = luaL_tolstring(L, -1, NULL);
    lua_pushfstring(L, "before calibration\n%s\n\nafter calibration\n%s", before, after);
    return 1;
}

static void push_predictions(lua_State *L, tl_model *m, const tl_split *s, int calibrated);

static int predict_to_file(lua_State *L, tl_model *m, const tl_split *s, int calibrated,
                           const char *fn);

static int l_calibrated_predict(lua_State *L)
{
    tl_model *m = calibrated_model(L);
    const tl_split *s = check_model_split(L, 2, m, "cp:predict", "argument 1");
    if (!lua_isnoneornil(L, 3)) return predict_to_file(L, m, s, 1, "cp:predict");
    push_predictions(L, m, s, 1);
    return 1;
}

static int l_calibrated_tostring(lua_State *L)
{
    tl_model *m = calibrated_model(L);
    const tl_model_config *c = tl_model_config_get(m);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "calibrated predictor:");
    for (int k = 0; k < c->n_tasks; k++) {
        char d[160];
        const tl_calibrator *cal = tl_model_calibrator(m, k);
        snprintf(d, sizeof d, "\n  %-16s %s", c->tasks[k].name,
                 cal ? tl_calibrator_describe(cal, d + 40, sizeof d - 40) : "(none)");
        luaL_addstring(&b, d);
        if (tl_model_calibrator_age(m, k) > 0) {
            snprintf(d, sizeof d, "   (stale: fitted %lld steps ago)",
                     (long long)tl_model_calibrator_age(m, k));
            luaL_addstring(&b, d);
        }
    }
    luaL_pushresult(&b);
    return 1;
}

/* m:predict(split, {file=path}) / cp:predict(split, {file=path}) -> rows
 * written: predictions straight to a CSV file (row id, one column per task),
 * with no Lua table of the rows. */
static int predict_to_file(lua_State *L, tl_model *m, const tl_split *s, int calibrated,
                           const char *fn)
{
    static const char *const fields[] = {"file", NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    tl_lua_check_fields(L, 3, fn, fields);
    const char *path = tl_lua_opt_string(L, 3, fn, "file", NULL);
    if (!path) return luaL_error(L, "%s: field 'file' is required in the options (a CSV path)", fn);
    if (calibrated) warn_stale_calibrators(m, fn);
    tl_status st = tl_model_predict_csv(m, s, calibrated, path);
    if (st != TL_OK) return tl_lua_raise_status(L, fn, st);
    lua_pushinteger(L, (lua_Integer)s->n);
    return 1;
}

/* m:predict(split) -> {task = {p1, p2, ...}} (1-based like the split's rows);
 * m:predict(split, {file="pred.csv"}) -> rows written to the file. */
static int l_model_predict(lua_State *L)
{
    l_model *lm = check_model(L, 1);
    const tl_split *s = check_model_split(L, 2, lm->m, "m:predict", "argument 1");
    if (!lua_isnoneornil(L, 3)) return predict_to_file(L, lm->m, s, 0, "m:predict");
    push_predictions(L, lm->m, s, 0);
    return 1;
}

static void push_predictions(lua_State *L, tl_model *m, const tl_split *s, int calibrated)
{
    int K = tl_model_config_get(m)->n_tasks;
    if (calibrated) warn_stale_calibrators(m, "cp:predict");
    float *out = lua_newuserdatauv(L, s->n * (size_t)K * sizeof(float), 0);
    tl_status st = calibrated ? tl_model_predict_calibrated(m, s, out) : tl_model_predict(m, s, out);
    if (st != TL_OK) tl_lua_raise_status(L, "predict", st);
    lua_newtable(L);
    for (int k = 0; k < K; k++) {
        lua_createtable(L, (int)s->n, 0);
        for (size_t i = 0; i < s->n; i++) {
            lua_pushnumber(L, out[i * (size_t)K + (size_t)k]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, tl_model_config_get(m)->tasks[k].name);
    }
    lua_remove(L, -2); /* the prediction buffer */
}

static void push_task_numbers(lua_State *L, const tl_model_config *c, const float *v)
{
    lua_createtable(L, 0, c->n_tasks);
    for (int k = 0; k < c->n_tasks; k++) {
        lua_pushnumber(L, v[k]);
        lua_setfield(L, -2, c->tasks[k].name);
    }
}

/* A list of epoch records (epochs or mid-epoch evaluations) as Lua tables. */
static void push_epoch_records(lua_State *L, const tl_model_config *c, const tl_epoch_record *er,
                               size_t ne)
{
    lua_createtable(L, (int)ne, 0);
    for (size_t i = 0; i < ne; i++) {
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, er[i].epoch);
        lua_setfield(L, -2, "epoch");
        lua_pushinteger(L, er[i].step);
        lua_setfield(L, -2, "step");
        lua_createtable(L, 0, c->n_tasks);
        for (int k = 0; k < c->n_tasks; k++) {
            lua_pushnumber(L, er[i].train_loss[k]);
            lua_setfield(L, -2, c->tasks[k].name);
        }
        lua_setfield(L, -2, "train_loss");
        if (isfinite(er[i].monitor)) {
            lua_createtable(L, 0, c->n_tasks);
            for (int k = 0; k < c->n_tasks; k++) {
                lua_createtable(L, 0, 2);
                int bin = c->tasks[k].type == TL_TASK_BINARY;
                set_num(L, bin ? "auc" : "rmse", er[i].valid_metric[k]);
                set_num(L, bin ? "logloss" : "mse", er[i].valid_logloss[k]);
                lua_setfield(L, -2, c->tasks[k].name);
            }
            lua_setfield(L, -2, "valid");
            set_num(L, "monitor", er[i].monitor);
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static void push_history(lua_State *L, tl_model *m)
{
    const tl_model_config *c = tl_model_config_get(m);
    const tl_step_record *sr;
    const tl_epoch_record *er;
    size_t ns = tl_model_history_steps(m, &sr), ne = tl_model_history_epochs(m, &er);
    lua_createtable(L, 0, 2);
    lua_createtable(L, (int)ns, 0);
    for (size_t i = 0; i < ns; i++) {
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, sr[i].step);
        lua_setfield(L, -2, "step");
        lua_pushinteger(L, sr[i].epoch);
        lua_setfield(L, -2, "epoch");
        push_task_numbers(L, c, sr[i].loss);
        lua_setfield(L, -2, "loss");
        push_task_numbers(L, c, sr[i].weight);
        lua_setfield(L, -2, "weight");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "steps");
    push_epoch_records(L, c, er, ne);
    lua_setfield(L, -2, "epochs");
    const tl_epoch_record *ev;
    size_t nv = tl_model_history_evals(m, &ev);
    if (nv) {
        push_epoch_records(L, c, ev, nv);
        lua_setfield(L, -2, "evals");
    }
    const tl_diag_record *dr;
    size_t nd = tl_model_history_diagnostics(m, &dr);
    if (nd == 0) return;
    lua_createtable(L, (int)nd, 0);
    for (size_t i = 0; i < nd; i++) {
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, dr[i].step);
        lua_setfield(L, -2, "step");
        lua_pushinteger(L, dr[i].epoch);
        lua_setfield(L, -2, "epoch");
        push_task_numbers(L, c, dr[i].grad_norm);
        lua_setfield(L, -2, "grad_norm");
        push_task_numbers(L, c, dr[i].weight);
        lua_setfield(L, -2, "weight");
        lua_createtable(L, 0, c->n_tasks * (c->n_tasks - 1) / 2);
        for (int a = 0; a < c->n_tasks; a++)
            for (int b = a + 1; b < c->n_tasks; b++) {
                lua_pushfstring(L, "%s|%s", c->tasks[a].name, c->tasks[b].name);
                lua_pushnumber(L, dr[i].grad_cos[a][b]);
                lua_rawset(L, -3);
            }
        lua_setfield(L, -2, "grad_cos");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "diagnostics");
}

static int l_model_history(lua_State *L)
{
    push_history(L, check_model(L, 1)->m);
    return 1;
}

/* ---- m.weights proxy ---------------------------------------------------------------- */

/* The model behind the proxy at argument 1 (raises when 1 is not a proxy). */
static tl_model *weights_model(lua_State *L)
{
    luaL_checkudata(L, 1, "tl.weights");
    lua_getiuservalue(L, 1, 1);
    tl_model *m = check_model(L, -1)->m;
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
    tl_model *m = check_model(L, 1)->m;
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
    default:
        snprintf(line, sizeof line, "model  %s\n", tl_backbone_name(b->kind));
    }
    luaL_addstring(&buf, line);
    snprintf(line, sizeof line, "  input   %d categorical fields (emb %d), %d numeric\n", c->n_cat,
             c->emb_dim, c->n_num);
    luaL_addstring(&buf, line);
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
    snprintf(line, sizeof line, "  weighting %s   parameters %zu   trained %d epochs, %lld steps",
             tl_weighting_name(c->weighting), tl_model_param_count(m), tl_model_epochs_done(m),
             (long long)tl_model_steps(m));
    luaL_addstring(&buf, line);
    luaL_pushresult(&buf);
    return 1;
}

/* m:teachers(split) -> {task = {auc=, multi_auc=, logloss=, ece=, pcoc=,
 * order=}}: the CrossDistil teacher towers judged on their own (ranking by raw
 * score, calibration after the calibrator); order is the pair's order
 * ("positive", "negative", or "auto" before the first fit, when Multi-AUC
 * takes the sign of the labels' correlation on `split`, as m:evaluate does). */
static int l_model_teachers(lua_State *L)
{
    l_model *lm = check_model(L, 1);
    const tl_model_config *c = tl_model_config_get(lm->m);
    if (!c->distill.enabled || c->distill.naive)
        return luaL_error(L, "m:teachers: the model has no CrossDistil teacher towers");
    const tl_split *s = check_model_split(L, 2, lm->m, "m:teachers", "argument 1");
    int K = c->n_tasks;
    float *raw = lua_newuserdatauv(L, s->n * (size_t)K * sizeof(float), 0);
    float *cal = lua_newuserdatauv(L, s->n * (size_t)K * sizeof(float), 0);
    if (tl_model_teacher_calibrator_age(lm->m) > 0)
        fprintf(stderr, "m:teachers: warning: the teachers' fitted calibrators are %lld steps older "
                        "than the teachers (the last fit stopped mid-epoch); they are refit at the "
                        "next epoch end\n", (long long)tl_model_teacher_calibrator_age(lm->m));
    tl_status st = tl_model_predict_teachers(lm->m, s, 0, raw);
    if (st == TL_OK) st = tl_model_predict_teachers(lm->m, s, 1, cal);
    if (st != TL_OK) return tl_lua_raise_status(L, "m:teachers", st);
    for (size_t i = 0; i < s->n * (size_t)K; i++) /* ranking is the same; metrics want [0, 1] */
        if (!isnan(raw[i])) raw[i] = 1.0f / (1.0f + expf(-raw[i]));
    lua_newtable(L);
    luaL_setmetatable(L, RESULT_MT);
    const tl_distill_spec *ds = &c->distill;
    for (int p = 0; p < ds->n_pairs; p++)
        for (int side = 0; side < 2; side++) {
            int k = ds->pairs[p][side], partner = ds->pairs[p][1 - side];
            tl_eval_opts o;
            memset(&o, 0, sizeof o);
            o.task = c->tasks[k].name;
            o.pred_stride = o.label_stride = o.partner_stride = (size_t)K;
            o.weight = s->weight;
            o.partner = s->labels + partner;
            int order = tl_model_distill_order(lm->m, p);
            int neg = order ? order == 2 : tl_split_label_correlation(s, K, k, partner) < 0.0;
            o.order = neg ? TL_MULTI_AUC_ORDER_A_NEG : TL_MULTI_AUC_ORDER_A;
            tl_binary_eval er, ec;
            st = tl_metrics_eval_binary(raw + k, s->labels + k, s->n, &o, NULL, &er);
            if (st == TL_OK) {
                o.partner = NULL;
                st = tl_metrics_eval_binary(cal + k, s->labels + k, s->n, &o, NULL, &ec);
            }
            if (st != TL_OK) return tl_lua_raise_status(L, "m:teachers", st);
            lua_newtable(L);
            set_num(L, "auc", er.auc);
            set_num(L, "multi_auc", er.multi_auc);
            set_num(L, "logloss", ec.logloss);
            set_num(L, "ece", ec.ece);
            set_num(L, "pcoc", ec.pcoc);
            lua_pushstring(L, order == 2 ? "negative" : order == 1 ? "positive" : "auto");
            lua_setfield(L, -2, "order");
            lua_setfield(L, -2, c->tasks[k].name);
        }
    return 1;
}

static int l_model_params(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)tl_model_param_count(check_model(L, 1)->m));
    return 1;
}

static const luaL_Reg model_methods[] = {
    {"fit", l_model_fit},         {"evaluate", l_model_evaluate}, {"predict", l_model_predict},
    {"history", l_model_history}, {"params", l_model_params},     {"close", l_model_close},
    {"teachers", l_model_teachers},
    {NULL, NULL}};

static int l_model_index(lua_State *L)
{
    tl_model *m = check_model(L, 1)->m;
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
    luaL_getmetatable(L, MODEL_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

/* tl.result __tostring: one row per task. */
static int l_result_tostring(lua_State *L)
{
    static const char *const cols[] = {"auc", "multi_auc", "gauc", "logloss", "ece", "pcoc", "brier", "rmse", "mae", NULL};
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char s[64];
    snprintf(s, sizeof s, "%-16s", "task");
    luaL_addstring(&b, s);
    int present[16] = {0};
    for (int j = 0; cols[j]; j++) {
        lua_pushnil(L);
        while (lua_next(L, 1)) {
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, cols[j]);
                if (!lua_isnil(L, -1)) present[j] = 1;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        if (present[j]) {
            snprintf(s, sizeof s, "%10s", cols[j]);
            luaL_addstring(&b, s);
        }
    }
    /* rows in sorted task order */
    lua_newtable(L);
    int names = lua_gettop(L), n = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, names, ++n);
        }
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, names);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, names, i);
        const char *t = lua_tostring(L, -1);
        snprintf(s, sizeof s, "\n%-16s", t);
        luaL_addstring(&b, s);
        lua_gettable(L, 1);
        for (int j = 0; cols[j]; j++) {
            if (!present[j]) continue;
            lua_getfield(L, -1, cols[j]);
            if (lua_isnumber(L, -1)) snprintf(s, sizeof s, "%10.4f", lua_tonumber(L, -1));
            else snprintf(s, sizeof s, "%10s", "-");
            lua_pop(L, 1);
            luaL_addstring(&b, s);
        }
        lua_pop(L, 1);
    }
    luaL_pushresult(&b);
    return 1;
}

void tl_lua_open_model(lua_State *L, int tl)
{
    luaL_newmetatable(L, SPEC_MT);
    lua_pop(L, 1);
    luaL_newmetatable(L, RESULT_MT);
    lua_pushcfunction(L, l_result_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newmetatable(L, MODEL_MT);
    lua_pushcfunction(L, l_model_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_model_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_model_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_model_index);
    lua_setfield(L, -2, "__index");
    luaL_newlib(L, model_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__methods"); /* the REPL completes m:<TAB> from it */
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);

    luaL_newmetatable(L, "tl.calibrated");
    lua_newtable(L);
    lua_pushcfunction(L, l_calibrated_evaluate);
    lua_setfield(L, -2, "evaluate");
    lua_pushcfunction(L, l_calibrated_predict);
    lua_setfield(L, -2, "predict");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__methods");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_calibrated_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newmetatable(L, "tl.before_after");
    lua_pushcfunction(L, l_before_after_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newmetatable(L, "tl.weights");
    lua_pushcfunction(L, l_weights_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_weights_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, l_weights_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_weights_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {{"model", l_model_new},     {"mlp", l_mlp},
                                   {"shared_bottom", l_shared_bottom}, {"omoe", l_omoe},
                                   {"mmoe", l_mmoe},           {"ple", l_ple},
                                   {"esmm", l_esmm},           {"aitm", l_aitm},
                                   {"dml", l_dml},             {"crossdistil", l_crossdistil},
                                   {"calibrate", l_calibrate},
                                   {NULL, NULL}};
    for (const luaL_Reg *r = fns; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, tl, r->name);
    }
    static const luaL_Reg optims[] = {{"sgd", l_sgd}, {"adam", l_adam}, {"adamw", l_adamw},
                                      {"adagrad", l_adagrad}, {NULL, NULL}};
    luaL_newlib(L, optims);
    lua_setfield(L, tl, "optim");

    /* help texts: (field of tl or of the model's methods, topic, text) */
    static const struct {
        const char *field, *topic, *text;
    } tl_docs[] = {
        {"model", "tl.model",
         "tl.model{data=d, backbone=tl.mmoe{...}, towers={task=tl.mlp{64}}, tower=tl.mlp{64},\n"
         "         weights={task=1}, weighting=\"fixed\"|\"uncertainty\"|\"gradnorm\"|\"dwa\"|\"pcgrad\",\n"
         "         emb=16, batch=1024, seed=1, alpha=1.5 (gradnorm), temperature=2 (dwa), max_memory=}\n"
         "towers=tl.mlp{...} gives every task that tower (like tower=). Before allocating, the\n"
         "model's memory (parameters, gradients, Adam state, best-weights copy, activations) is\n"
         "checked against the available memory (MemAvailable); max_memory=\"64G\" (or bytes)\n"
         "sets the limit instead.\n"
         "Build a multi-task model for dataset d: embeddings of its categorical fields plus its\n"
         "numeric features feed the backbone; each task gets its own tower. Methods: m:fit{...},\n"
         "m:evaluate(split), m:predict(split), m:history(), m.weights.<task> = w (next step)."},
        {"mmoe", "tl.mmoe",
         "tl.mmoe{experts=8, expert={256,128}, dropout=0}  Multi-gate Mixture-of-Experts (Ma et al.\n"
         "KDD 2018): experts share the input; one softmax gate per task mixes them."},
        {"omoe", "tl.omoe",
         "tl.omoe{experts=8, expert={256,128}}  one gate shared by all tasks."},
        {"ple", "tl.ple",
         "tl.ple{levels=1, shared=4, specific=2, expert={256,128}}  Progressive Layered Extraction\n"
         "(Tang et al. RecSys 2020): CGC levels of shared and task-specific experts. shared=0 (task\n"
         "experts only) and specific=0 (shared experts only) are PLE's ablations; not both."},
        {"shared_bottom", "tl.shared_bottom",
         "tl.shared_bottom{bottom={256,128}, dropout=0}  one shared MLP below the towers."},
        {"esmm", "tl.esmm",
         "tl.esmm{}  ESMM (Ma et al. SIGIR 2018): two binary tasks, CTR then CTCVR; pCTCVR = pCTR x pCVR,\n"
         "both losses over the entire space."},
        {"aitm", "tl.aitm",
         "tl.aitm{constraint=0.6}  AITM (Xi et al. KDD 2021): sequential tasks pass information through\n"
         "attention; the label constraint max(p_t - p_{t-1}, 0) is weighted by `constraint`."},
        {"mlp", "tl.mlp",
         "tl.mlp{128, 80, dropout=0.5}  a tower: ReLU layers of the given widths."},
        {"calibrate", "tl.calibrate",
         "tl.calibrate(m, d.valid, \"isotonic\"|\"platt\"|\"temperature\") -> cp\n"
         "Fit one output calibrator per binary task on the model's predictions over a validation\n"
         "split and attach them to m (m:save keeps them). cp:evaluate(d.test) -> {before=r, after=r};\n"
         "cp:predict(split) gives calibrated probabilities; m:evaluate(split, {calibrated=true}) too.\n"
         "tl.plot.calibration(cp:evaluate(d.test)) draws both."},
        {"dml", "tl.dml",
         "tl.dml{ctfm=true, gkd=true, stop_grad=true, gkd_layers=1, dropout=0, gkd_tasks=nil}\n"
         "Deep Mutual Learning across task towers (Ren et al. 2023), for tl.model{..., mutual=tl.dml{}}:\n"
         "CTFM lets each tower input attend over all tasks' inputs (keys/values through a stop-gradient\n"
         "unless stop_grad=false: the paper's 'nostop' ablation); GKD adds a gated correction to each\n"
         "logit from the stop-gradient concatenation of all towers' last hidden layers. Attaches to\n"
         "shared_bottom, omoe, mmoe and ple. gkd_tasks={\"like\"}: GKD on these tasks' logits only (the\n"
         "global experience still reads every tower); default every task."},
        {"crossdistil", "tl.crossdistil",
         "tl.crossdistil{pairs={{\"a\",\"b\"}}, aux=1, kd=0.5, bce_on_aux=false, calibrate=\"platt\"|\"isotonic\",\n"
         "  calib_data=\"valid\"|\"train\", calib_every=0, correct=\"blend\"|\"clip\"|\"none\", lambda=0.2,\n"
         "  teacher_grad=false, warmup=0, order=\"auto\"|\"positive\"|\"negative\", teacher=\"separate\"|\"shared\",\n"
         "  max_pairs=262144, naive=false}\n"
         "Cross-task knowledge distillation (Yang et al. AAAI 2022), for tl.model{..., distill=...}: per-task\n"
         "teacher towers ranked by the quadruplet BPR loss over the groups ++ > +- > -+ > -- (pairs weighted\n"
         "by w_i w_j from sample weights; rows outside either task's space left out), a monotone calibrator\n"
         "(platt trained in the graph on train batches, or fitted at epoch ends), and the student loss\n"
         "(1-kd) BCE(y, y^) + kd BCE(p~, y^) after warmup steps. calib_every=N also refits a fitted\n"
         "calibrator every N steps, on at most 16384 evenly spread rows of calib_data (0: epoch ends only;\n"
         "until one is fitted, p~ = sigmoid(teacher score)). order=\"auto\" flips the partner label when the\n"
         "pair's labels correlate negatively on the first m:fit's train split (print(m) and m:teachers\n"
         "show it). m:teachers(split) judges the teachers on their own. naive=true: the baseline that\n"
         "distils the other task's prediction p (1 - p when the pair is negatively related), without\n"
         "teachers. With an empty group (nested tasks) the ranking terms chain the adjacent non-empty\n"
         "groups. calibrate=\"platt\" with calib_data=\"valid\" fits sigmoid(a r + b) on the raw teacher\n"
         "score r; a fitted a <= 0 is clamped to a = 0 (the base rate)."},
        {"optim", "tl.optim",
         "tl.optim.adam{lr=1e-3, l2=0, clip=0}, .adamw{lr, weight_decay}, .sgd{lr, momentum, nesterov},\n"
         ".adagrad{lr}. Embedding rows are updated lazily: only rows seen in the batch.\n"
         "schedule= (every optimizer): {\"cosine\", steps=N, min_lr=0, warmup=0},\n"
         "{\"step\", every=N, gamma=0.1, warmup=0} (lr x gamma every N steps) or {\"warmup\", steps=N}\n"
         "(linear from lr/N to lr over N steps, then lr). warmup=W first ramps linearly over W steps;\n"
         "the schedule counts the optimizer's steps over the model's life and is saved with it, so a\n"
         "resumed fit continues it exactly. m:fit without optim= keeps the running optimizer."},
    }, method_docs[] = {
        {"fit", "m:fit",
         "m:fit{data=d.train, valid=d.valid, epochs=10, patience=0, batch=, optim=tl.optim.adam{},\n"
         "      monitor=task, max_steps=, plot=false, verbose=true, progress=function(p) end}\n"
         "Train; with valid and patience, stop early on the validation metric (mean over tasks of AUC\n"
         "for binary, -MSE for regression, or the monitored task's) and restore the best weights.\n"
         "Ctrl-C stops cleanly; the model can continue. verbose: a progress line at a terminal, one\n"
         "line per epoch when stdout is a pipe or file; verbose=false prints nothing. A batch above\n"
         "the model's batch= replans its activations (checked against the memory budget).\n"
         "diagnostics=N: every N steps record per-task gradient norms on the shared parameters,\n"
         "their pairwise cosines and the effective loss weights into m:history().diagnostics\n"
         "(tl.plot.history(m, {\"grad_norm\", \"grad_cos\"})). With valid, a warning names experts\n"
         "that no task uses or that give nearly identical outputs (see m:gates).\n"
         "eval_every=N: also validate every N steps (m:history().evals). checkpoint=path, every=N:\n"
         "save at epoch ends and every N steps (tl.load(path) resumes exactly). seed=, shuffle=,\n"
         "restore_best=true. A progress function gets {kind=\"step\"|\"eval\"|\"epoch\", epoch,\n"
         "step, loss, valid} and stops training by returning false."},
        {"evaluate", "m:evaluate",
         "m:evaluate(split [, {bins=10, calibrated=false, space=true}]) -> r; r.<task>.auc, .multi_auc,\n"
         ".gauc, .logloss, .ece, .pcoc, .brier, .bins\n"
         "(binary) or .mse, .rmse, .mae (regression)."},
        {"predict", "m:predict",
         "m:predict(split) -> p; p.<task>[i] is the prediction for row i.\n"
         "m:predict(split, {file=\"pred.csv\"}) -> n: write the predictions to a CSV file instead\n"
         "(header row,<task>,...; row = the row's 1-based data row in its source file), in chunks,\n"
         "without a Lua table of the rows; cp:predict(split, {file=}) writes calibrated ones."},
        {"history", "m:history",
         "m:history() -> {steps={{step,epoch,loss={},weight={}}...}, epochs={{epoch,step,train_loss={},valid={}}...},\n"
         "               diagnostics={{step,epoch,grad_norm={},grad_cos={[\"a|b\"]=},weight={}}...}}\n"
         "(diagnostics only after fit{diagnostics=N})."},
    };
    for (size_t i = 0; i < sizeof tl_docs / sizeof *tl_docs; i++) {
        lua_getfield(L, tl, tl_docs[i].field);
        tl_lua_doc(L, tl_docs[i].topic, lua_gettop(L), tl_docs[i].text);
        lua_pop(L, 1);
    }
    luaL_getmetatable(L, MODEL_MT);
    lua_getfield(L, -1, "methods");
    for (size_t i = 0; i < sizeof method_docs / sizeof *method_docs; i++) {
        lua_getfield(L, -1, method_docs[i].field);
        tl_lua_doc(L, method_docs[i].topic, lua_gettop(L), method_docs[i].text);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
}
