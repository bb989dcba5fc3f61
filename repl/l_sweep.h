/* l_sweep.h — the process pool behind tl.sweep (repl/l_sweep.c; the rest of
 * tl.sweep is repl/lua/sweep.lua). */
#ifndef TL_L_SWEEP_H
#define TL_L_SWEEP_H

#include <lua.h>

/* Add sweep_exec, getpid and mkdirs to the private functions (TL_PRIVATE_KEY).
 * `tl` is the tl table's absolute index. */
void tl_lua_open_sweep(lua_State *L, int tl);

#endif
