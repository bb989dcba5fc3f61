/* l_spec.c — the spec builders: tl.mlp, the backbones (tl.shared_bottom or
 * tl.hps, tl.omoe, tl.mmoe, tl.ple, tl.esmm, tl.aitm, tl.stem, tl.adatt,
 * tl.cross_stitch, tl.dselect_k), tl.dml, tl.crossdistil and
 * tl.optim.*, and the readers that turn their tables into engine
 * configurations (for tl.model in l_model.c and m:fit in l_fit.c).
 *
 * Builders return plain tables tagged by a metatable, so scripts can inspect
 * and copy them; each is validated where it is written, by the same reader
 * tl.model uses. */
#include "l_spec.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "l_util.h"

#define SPEC_MT "tl.spec"

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
static const char *const esmm_fields[] = {"backbone", NULL};
static const char *const aitm_fields[] = {"constraint", NULL};
static const char *const stem_fields[] = {"levels", "shared", "specific", "expert", "gate", "dropout", NULL};
static const char *const adatt_fields[] = {"levels", "shared", "specific", "expert", "dropout", NULL};
static const char *const cs_fields[] = {"bottom", "dropout", NULL};
static const char *const dsk_fields[] = {"experts", "expert", "k", "gamma", "entropy", "dropout", NULL};

/* A backbone spec, validated now so a typo fails where it is written. */
static int backbone_spec(lua_State *L, const char *kind, const char *fn, const char *const *allowed)
{
    make_spec(L, kind, fn, allowed);
    tl_model_config c;
    tl_model_config_defaults(&c);
    tl_lua_read_backbone(L, -1, &c.backbone);
    return 1;
}

static int l_dml(lua_State *L)
{
    make_spec(L, "dml", "tl.dml", dml_fields);
    tl_model_config c; /* no tasks yet: gkd_tasks names are resolved by tl.model */
    tl_model_config_defaults(&c);
    tl_lua_read_dml(L, -1, &c.dml);
    return 1;
}

static int l_crossdistil(lua_State *L)
{
    make_spec(L, "crossdistil", "tl.crossdistil", distill_fields);
    tl_model_config c;
    tl_model_config_defaults(&c);
    tl_lua_read_distill(L, -1, &c); /* checks types; task names are resolved by tl.model */
    return 1;
}

static int l_shared_bottom(lua_State *L) { return backbone_spec(L, "shared_bottom", "tl.shared_bottom", sb_fields); }
static int l_omoe(lua_State *L) { return backbone_spec(L, "omoe", "tl.omoe", moe_fields); }
static int l_mmoe(lua_State *L) { return backbone_spec(L, "mmoe", "tl.mmoe", moe_fields); }
static int l_ple(lua_State *L) { return backbone_spec(L, "ple", "tl.ple", ple_fields); }
static int l_esmm(lua_State *L) { return backbone_spec(L, "esmm", "tl.esmm", esmm_fields); }
static int l_aitm(lua_State *L) { return backbone_spec(L, "aitm", "tl.aitm", aitm_fields); }
static int l_hps(lua_State *L) { return backbone_spec(L, "hps", "tl.hps", sb_fields); }
static int l_stem(lua_State *L) { return backbone_spec(L, "stem", "tl.stem", stem_fields); }
static int l_adatt(lua_State *L) { return backbone_spec(L, "adatt", "tl.adatt", adatt_fields); }
static int l_cross_stitch(lua_State *L) { return backbone_spec(L, "cross_stitch", "tl.cross_stitch", cs_fields); }
static int l_dselect_k(lua_State *L) { return backbone_spec(L, "dselect_k", "tl.dselect_k", dsk_fields); }

static const char *const optim_fields[] = {"lr", "momentum", "nesterov", "beta1", "beta2", "eps",
                                           "l2", "weight_decay", "clip", "schedule", NULL};

static int optim_spec(lua_State *L, const char *kind)
{
    char fn[32];
    snprintf(fn, sizeof fn, "tl.optim.%s", kind);
    make_spec(L, kind, fn, optim_fields);
    tl_optim_config oc;
    tl_lua_read_optim(L, -1, fn, &oc); /* validate now */
    return 1;
}

static int l_sgd(lua_State *L) { return optim_spec(L, "sgd"); }
static int l_adam(lua_State *L) { return optim_spec(L, "adam"); }
static int l_adamw(lua_State *L) { return optim_spec(L, "adamw"); }
static int l_adagrad(lua_State *L) { return optim_spec(L, "adagrad"); }

/* Spec table at idx -> kind string (or NULL when not a spec). */
const char *tl_lua_spec_kind(lua_State *L, int idx)
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

void tl_lua_read_optim(lua_State *L, int idx, const char *fn, tl_optim_config *oc)
{
    idx = lua_absindex(L, idx);
    const char *kind = tl_lua_spec_kind(L, idx);
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
void tl_lua_read_mlp(lua_State *L, int idx, const char *fn, const char *field, tl_mlp_spec *s,
                     float dropout)
{
    idx = lua_absindex(L, idx);
    memset(s, 0, sizeof *s);
    s->dropout = dropout;
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: field '%s' must be tl.mlp{...} or a list of layer widths, got %s", fn,
                   field, luaL_typename(L, idx));
    const char *kind = tl_lua_spec_kind(L, idx);
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

void tl_lua_read_backbone(lua_State *L, int idx, tl_backbone_spec *b)
{
    idx = lua_absindex(L, idx);
    const char *kind = tl_lua_spec_kind(L, idx);
    tl_backbone_kind k;
    if (!kind || tl_backbone_parse(kind, &k) != TL_OK)
        luaL_error(L, "tl.model: field 'backbone' must be a backbone such as tl.mmoe{} or "
                      "tl.shared_bottom{}, got %s", kind ? kind : luaL_typename(L, idx));
    char fn[32];
    snprintf(fn, sizeof fn, "tl.%s", kind);
    if (k == TL_BACKBONE_ESMM) { /* tl.esmm{backbone=tl.stem{...}}: ESMM's head over another */
        lua_getfield(L, idx, "backbone");
        if (!lua_isnil(L, -1)) {
            const char *inner = tl_lua_spec_kind(L, -1);
            tl_backbone_kind ik;
            if (!inner || tl_backbone_parse(inner, &ik) != TL_OK || ik == TL_BACKBONE_ESMM ||
                ik == TL_BACKBONE_AITM)
                luaL_error(L, "tl.esmm: field 'backbone' must be a backbone such as tl.mmoe{} or "
                              "tl.stem{} (not esmm or aitm), got %s", inner ? inner : luaL_typename(L, -1));
            tl_lua_read_backbone(L, -1, b);
            b->esmm = 1;
            lua_pop(L, 1);
            return;
        }
        lua_pop(L, 1);
    }
    b->kind = k;
    float p = (float)tl_lua_opt_number(L, idx, fn, "dropout", 0.0, 0.0, 0.999);
    b->bottom.dropout = b->expert.dropout = p;
    lua_getfield(L, idx, "bottom");
    if (!lua_isnil(L, -1)) tl_lua_read_mlp(L, -1, fn, "bottom", &b->bottom, p);
    lua_pop(L, 1);
    lua_getfield(L, idx, "expert");
    if (!lua_isnil(L, -1)) tl_lua_read_mlp(L, -1, fn, "expert", &b->expert, p);
    lua_pop(L, 1);
    b->gate.dropout = p;
    lua_getfield(L, idx, "gate");
    if (!lua_isnil(L, -1)) tl_lua_read_mlp(L, -1, fn, "gate", &b->gate, p);
    lua_pop(L, 1);
    b->experts = (int)tl_lua_opt_int(L, idx, fn, "experts", b->experts, 1, 1024);
    b->levels = (int)tl_lua_opt_int(L, idx, fn, "levels", b->levels, 1, 8);
    b->shared = (int)tl_lua_opt_int(L, idx, fn, "shared", b->shared, 0, 256);
    b->specific = (int)tl_lua_opt_int(L, idx, fn, "specific", b->specific, 0, 256);
    b->constraint = (float)tl_lua_opt_number(L, idx, fn, "constraint", b->constraint, 0.0, 1e6);
    b->select_k = (int)tl_lua_opt_int(L, idx, fn, "k", b->select_k, 1, 1024);
    b->gamma = (float)tl_lua_opt_number(L, idx, fn, "gamma", b->gamma, 1e-6, 1e6);
    b->entropy = (float)tl_lua_opt_number(L, idx, fn, "entropy", b->entropy, 0.0, 1e6);
    if (k == TL_BACKBONE_DSELECT_K && (b->experts < 2 || b->select_k > b->experts))
        luaL_error(L, "tl.dselect_k: needs experts >= 2 and k <= experts (got experts=%d, k=%d)",
                   b->experts, b->select_k);
}

/* Index of task `name` in a configuration, or -1. */
int tl_lua_config_task_index(const tl_model_config *c, const char *name)
{
    for (int k = 0; k < c->n_tasks; k++)
        if (strcmp(c->tasks[k].name, name) == 0) return k;
    return -1;
}

/* "a, b, c": the task names, for messages (static buffer). */
const char *tl_lua_config_task_list(const tl_model_config *c)
{
    static char buf[TL_MAX_TASKS * (TL_TASK_NAME_MAX + 2)];
    buf[0] = '\0';
    for (int k = 0; k < c->n_tasks; k++) {
        if (k) strcat(buf, ", ");
        strcat(buf, c->tasks[k].name);
    }
    return buf;
}

void tl_lua_read_dml(lua_State *L, int idx, tl_dml_spec *d)
{
    const char *fn = "tl.dml";
    idx = lua_absindex(L, idx);
    const char *kind = tl_lua_spec_kind(L, idx);
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
                int k = tl_lua_config_task_index(c, t);
                if (k < 0)
                    luaL_error(L, "tl.dml: gkd_tasks[%d] names unknown task '%s' (the dataset's tasks "
                                  "are %s)", i, t, tl_lua_config_task_list(c));
                d->gkd_tasks |= 1u << k;
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* Reads tl.crossdistil{...}; pair names are resolved against c's tasks when
 * c has tasks (tl.model), and only type-checked otherwise (tl.crossdistil). */
void tl_lua_read_distill(lua_State *L, int idx, tl_model_config *c)
{
    const char *fn = "tl.crossdistil";
    idx = lua_absindex(L, idx);
    const char *kind = tl_lua_spec_kind(L, idx);
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
            int k = c->n_tasks ? tl_lua_config_task_index(c, t) : 0;
            if (k < 0)
                luaL_error(L, "tl.crossdistil: pairs[%d] names unknown task '%s' (the dataset's "
                              "tasks are %s)", p, t, tl_lua_config_task_list(c));
            ds->pairs[p - 1][s - 1] = k;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

void tl_lua_open_spec(lua_State *L, int tl)
{
    luaL_newmetatable(L, SPEC_MT);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"mlp", l_mlp},       {"shared_bottom", l_shared_bottom},
                                   {"omoe", l_omoe},     {"mmoe", l_mmoe},
                                   {"ple", l_ple},       {"esmm", l_esmm},
                                   {"aitm", l_aitm},     {"dml", l_dml},
                                   {"hps", l_hps},       {"stem", l_stem},
                                   {"adatt", l_adatt},   {"cross_stitch", l_cross_stitch},
                                   {"dselect_k", l_dselect_k},
                                   {"crossdistil", l_crossdistil}, {NULL, NULL}};
    lua_pushvalue(L, tl);
    luaL_setfuncs(L, fns, 0);
    lua_pop(L, 1);
    static const luaL_Reg optims[] = {{"sgd", l_sgd}, {"adam", l_adam}, {"adamw", l_adamw},
                                      {"adagrad", l_adagrad}, {NULL, NULL}};
    luaL_newlib(L, optims);
    lua_setfield(L, tl, "optim");

    static const tl_lua_doc_entry docs[] = {
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
         "tl.shared_bottom{bottom={256,128}, dropout=0}  one shared MLP below the towers (hard\n"
         "parameter sharing; tl.hps{} is the same backbone)."},
        {"hps", "tl.hps",
         "tl.hps{bottom={256,128}, dropout=0}  HPS, hard parameter sharing: another name for\n"
         "tl.shared_bottom (the model prints and saves it as shared_bottom)."},
        {"stem", "tl.stem",
         "tl.stem{levels=1, shared=4, specific=2, expert={256,128}, gate={}, dropout=0}  STEM (Su et al.\n"
         "AAAI 2024): an embedding table per task besides the shared one; task experts read their task's\n"
         "embeddings, shared experts the shared ones; task k's gate (on its embeddings + the shared)\n"
         "mixes all experts, the other tasks' through a stop-gradient (All Forward Task-specific\n"
         "Backward). gate= hidden ReLU layers of each gate (the authors' default {128, 64}; {} is one\n"
         "linear layer). Needs categorical fields."},
        {"adatt", "tl.adatt",
         "tl.adatt{levels=1, shared=4, specific=2, expert={256,128}, dropout=0}  AdaTT (Li et al. KDD\n"
         "2023): per level, every task unit fuses all experts (its own, other tasks', shared) with a\n"
         "softmax gate plus a learned linear residual over its own experts (unweighted when every\n"
         "unit has one expert). shared=0 is AdaTT-sp."},
        {"cross_stitch", "tl.cross_stitch",
         "tl.cross_stitch{bottom={256,128}, dropout=0}  cross-stitch networks (Misra et al. CVPR 2016):\n"
         "one column of `bottom` layers per task; after each layer a learned T x T matrix mixes the\n"
         "tasks' activations (initialised 0.9 on the diagonal, 0.1/(T-1) elsewhere)."},
        {"dselect_k", "tl.dselect_k",
         "tl.dselect_k{experts=8, expert={256,128}, k=2, gamma=1, entropy=0, dropout=0}  MMoE with\n"
         "DSelect-k gates (Hazimeh et al. NeurIPS 2021): per task, k single-expert selectors built from\n"
         "smooth-steps (width gamma) of binary codes, mixed by a softmax; per-example routing. entropy>0\n"
         "adds entropy x the selectors' entropy, summed over the batch's rows, to the loss (the\n"
         "authors' regulariser); with experts not a power of 2 the authors' reachability term is added."},
        {"esmm", "tl.esmm",
         "tl.esmm{}  ESMM (Ma et al. SIGIR 2018): two binary tasks, CTR then CTCVR; pCTCVR = pCTR x pCVR,\n"
         "both losses over the entire space. The towers read the embeddings; tl.esmm{backbone=tl.stem{}}\n"
         "puts ESMM's head over another backbone (any but esmm and aitm)."},
        {"aitm", "tl.aitm",
         "tl.aitm{constraint=0.6}  AITM (Xi et al. KDD 2021): sequential tasks pass information through\n"
         "attention; the label constraint max(p_t - p_{t-1}, 0) is weighted by `constraint`."},
        {"mlp", "tl.mlp",
         "tl.mlp{128, 80, dropout=0.5}  a tower: ReLU layers of the given widths."},
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
    };
    tl_lua_docs(L, tl, docs, sizeof docs / sizeof *docs);
}
