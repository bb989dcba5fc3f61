/* l_shards.h — sharded data from Lua (repl/l_shards.c): tl.data.convert,
 * tl.data.shards, tl.data.synthetic_ccp, and m:fit on a shard stream. */
#ifndef TL_L_SHARDS_H
#define TL_L_SHARDS_H

#include <lua.h>

/* Add convert, shards and synthetic_ccp to tl.data (tl at absolute index
 * `tl`; tl.data must exist). */
void tl_lua_open_shards(lua_State *L, int tl);
/* 1 when the value at idx is a shards object (tl.data.shards). */
int tl_lua_is_shards(lua_State *L, int idx);
/* m:fit{data=sh, ...} with sh a shards object: the model at 1, the options
 * at 2. Returns what m:fit returns. */
int tl_lua_fit_shards(lua_State *L);

#endif
