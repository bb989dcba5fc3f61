/* l_tl.h — the `tl` library's entry point (repl/l_tl.c), for the program
 * (main.c) and the plain Lua module towerlab.so (require "towerlab"). */
#ifndef TL_L_TL_H
#define TL_L_TL_H

#include <lua.h>

/* Create the tl table, call every binding module's opener (l_tensor.h,
 * l_data.h, ...), run the embedded repl/lua chunks and return 1 (the table). */
int luaopen_towerlab(lua_State *L);

#endif
