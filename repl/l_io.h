/* l_io.h — checkpoints from Lua (repl/l_io.c): tl.load(path) and m:save(path). */
#ifndef TL_L_IO_H
#define TL_L_IO_H

#include <lua.h>

/* Add tl.load to the tl table at absolute index `tl` and m:save to the model
 * metatable (registered first by tl_lua_open_model), with their help texts. */
void tl_lua_open_io(lua_State *L, int tl);

#endif
