/* l_plot.h — tl.plot (repl/l_plot.c): calibration, history, compare, gates,
 * live and terminal figures drawn by gnuplot (repl/plot.h). */
#ifndef TL_L_PLOT_H
#define TL_L_PLOT_H

#include <lua.h>

/* Add tl.plot to the tl table at absolute index `tl`, with help texts. */
void tl_lua_open_plot(lua_State *L, int tl);

#endif
