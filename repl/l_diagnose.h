/* l_diagnose.h — Lua bindings of engine/diagnose.h (repl/l_diagnose.c):
 * m:gates and d:leakage. The warnings tl.data.csv prints are l_leakage.h. */
#ifndef TL_L_DIAGNOSE_H
#define TL_L_DIAGNOSE_H

#include <lua.h>

/* Add m:gates and d:leakage to the model and dataset metatables (both must
 * be registered first) and the tl.leakage result metatable. `tl` is the tl
 * table's absolute index (unused today). */
void tl_lua_open_diagnose(lua_State *L, int tl);

#endif
