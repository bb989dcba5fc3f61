/* l_spec.h — the spec builders (repl/l_spec.c): tl.mlp, the backbones,
 * tl.dml, tl.crossdistil and tl.optim.*, and the readers that turn a spec
 * table into its engine configuration. Every reader raises a Lua error that
 * names `fn` and the field on a wrong value; none allocates C memory. */
#ifndef TL_L_SPEC_H
#define TL_L_SPEC_H

#include <lua.h>

#include "model.h"

/* Add tl.mlp, tl.shared_bottom, tl.omoe, tl.mmoe, tl.ple, tl.esmm, tl.aitm,
 * tl.dml, tl.crossdistil and tl.optim to the tl table at absolute index `tl`,
 * with their help texts. */
void tl_lua_open_spec(lua_State *L, int tl);

/* The kind of the spec table at idx ("mmoe", "mlp", "adam", ...), or NULL
 * when the value is not a spec. */
const char *tl_lua_spec_kind(lua_State *L, int idx);

/* An MLP (tl.mlp{...} or a plain array of widths) at idx into *s; `field`
 * names it in errors, `dropout` is the default when the spec sets none. */
void tl_lua_read_mlp(lua_State *L, int idx, const char *fn, const char *field, tl_mlp_spec *s,
                     float dropout);
/* A backbone spec (tl.mmoe{...}, ...) at idx into *b (errors name tl.model). */
void tl_lua_read_backbone(lua_State *L, int idx, tl_backbone_spec *b);
/* An optimizer spec (tl.optim.adam{...}) at idx into *oc. */
void tl_lua_read_optim(lua_State *L, int idx, const char *fn, tl_optim_config *oc);
/* tl.dml{...} at idx into *d. */
void tl_lua_read_dml(lua_State *L, int idx, tl_dml_spec *d);
/* tl.crossdistil{...} at idx into c's distillation settings; pair names are
 * resolved against c's tasks when c has tasks (tl.model), and only
 * type-checked otherwise (tl.crossdistil). */
void tl_lua_read_distill(lua_State *L, int idx, tl_model_config *c);

/* Index of task `name` in a configuration, or -1. */
int tl_lua_config_task_index(const tl_model_config *c, const char *name);
/* "a, b, c": the task names, for messages (a static buffer). */
const char *tl_lua_config_task_list(const tl_model_config *c);

#endif
