/* l_model.h — the model userdata ("tl.model") for other binding modules
 * (checkpoints: tl.load creates models, m:save reads them). */
#ifndef TL_L_MODEL_H
#define TL_L_MODEL_H

#include <lua.h>
#include <stdint.h>

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

void tl_lua_open_model(lua_State *L, int tl);

/* 1 while a running m:fit reads dataset d (d:close refuses it, its __gc
 * leaves it to the fit). */
int tl_lua_dataset_busy(const tl_dataset *d);

/* Read /proc/meminfo's MemAvailable and pass it to the engine's memory
 * budget (tl_memory_set_available); left unchanged when it cannot be read.
 * Called before big allocations (a model, a large tensor). */
void tl_lua_memory_refresh(void);
/* Optional field of the table at idx holding bytes: a number or a string
 * with a decimal unit ("64G", "512M", "2TB"); 0 when absent. Raises on a
 * bad value, naming fn and field. */
uint64_t tl_lua_opt_bytes(lua_State *L, int idx, const char *fn, const char *field);

#endif
