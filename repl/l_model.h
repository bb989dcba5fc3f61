/* l_model.h — the model userdata ("tl.model") for other binding modules
 * (checkpoints: tl.load creates models, m:save reads them). */
#ifndef TL_L_MODEL_H
#define TL_L_MODEL_H

#include <lua.h>

#include "data.h"
#include "model.h"

#define TL_MODEL_MT "tl.model"

/* The open model at idx; raises a Lua error otherwise. */
tl_model *tl_lua_check_model(lua_State *L, int idx);
/* Push a new model userdata owning m. data_idx (0 for none) is the dataset
 * userdata kept alive with it (its layout is checked by fit/evaluate). */
void tl_lua_push_model(lua_State *L, tl_model *m, int data_idx);
/* Add a method to every model object (m:name(...)). */
void tl_lua_model_method(lua_State *L, const char *name, lua_CFunction fn);

/* Add tl.model, the spec builders and the model metatable to the tl table at
 * absolute index `tl`, with their help texts. */
void tl_lua_open_model(lua_State *L, int tl);

#endif
