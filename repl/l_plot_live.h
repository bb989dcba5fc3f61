/* l_plot_live.h — tl.plot.live (repl/l_plot_live.c): a live history plot that
 * m:fit{plot=true} (or a progress callback) updates while training. */
#ifndef TL_L_PLOT_LIVE_H
#define TL_L_PLOT_LIVE_H

#include <lua.h>

/* tl.plot.live([opts]) -> live plot | nil, message */
int tl_lua_plot_live(lua_State *L);

/* Register the live plot metatable (lp:update, lp:close, lp:stats). */
void tl_lua_plot_live_register(lua_State *L);

#endif
