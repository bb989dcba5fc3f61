/* l_diagnose.h — Lua bindings of engine/diagnose.h (repl/l_diagnose.c):
 * m:gates, d:leakage, and the leakage warnings tl.data.csv prints. */
#ifndef TL_L_DIAGNOSE_H
#define TL_L_DIAGNOSE_H

#include <lua.h>

#include "data.h"

/* Add m:gates and d:leakage to the model and dataset metatables (both must
 * be registered first) and the tl.leakage result metatable. `tl` is the tl
 * table's absolute index (unused today). */
void tl_lua_open_diagnose(lua_State *L, int tl);

/* Print a warning on stderr for each feature of the dataset at `ds` that
 * leaks a label on its training split (or all rows): a kept label source
 * column, or a single-feature AUC above 0.99. `s` is the schema the dataset
 * was loaded with (for keep=). Never raises for a leak; silent when the
 * check cannot run. */
void tl_lua_leakage_warn(lua_State *L, int ds, const tl_data_schema *s);

#endif
