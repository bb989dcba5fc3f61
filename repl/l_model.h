/* l_model.h — the model userdata ("tl.model", repl/l_model.c) for the other
 * binding modules: fit (l_fit.c), results (l_results.c), checkpoints
 * (l_io.c: tl.load creates models, m:save reads them) and diagnostics. */
#ifndef TL_L_MODEL_H
#define TL_L_MODEL_H

#include <lua.h>

#include "data.h"
#include "model.h"

#define TL_MODEL_MT "tl.model"

/* The model userdata. busy: inside m:fit (close and fit refuse, __gc
 * defers); free_pending: collected while busy (lua_close from a progress
 * callback), so the fit frees the model when the engine returns. */
typedef struct {
    tl_model *m;
    int busy;
    int free_pending;
} tl_lua_model;

/* The open model userdata at idx; raises a Lua error otherwise. */
tl_lua_model *tl_lua_check_model_ud(lua_State *L, int idx);
/* The split at idx, checked to have the feature layout and the ids of the
 * data model m was built on (argument 1, the model or a calibrated predictor
 * {model = m}, tells which dataset that was); `field` names it in errors. A
 * split without labels is refused unless fn ends in ":predict". */
const tl_split *tl_lua_check_model_split(lua_State *L, int idx, tl_model *m, const char *fn,
                                         const char *field);

/* Raises when a field of d has another encoding than the data model m was
 * built on (its configuration's fingerprints, kept in checkpoints); fields
 * whose encoding either side does not know pass. `what` names d in errors. */
void tl_lua_check_model_encodings(lua_State *L, tl_model *m, const tl_dataset *d, const char *fn, const char *what);

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
