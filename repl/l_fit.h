/* l_fit.h — m:fit (repl/l_fit.c): training with a progress line, a live
 * plot, a progress callback, checkpoints and Ctrl-C. */
#ifndef TL_L_FIT_H
#define TL_L_FIT_H

#include <lua.h>

/* Add m:fit to the model metatable (registered first by tl_lua_open_model)
 * with its help text. `tl` is the tl table's absolute index (unused). */
void tl_lua_open_fit(lua_State *L, int tl);

#endif
