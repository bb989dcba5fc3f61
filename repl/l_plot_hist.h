/* l_plot_hist.h — the history store (repl/l_plot_hist.c): series of a
 * model's history ({steps=, epochs=, diagnostics=} from m:history()), read
 * incrementally, and the history figure's script. Used by tl.plot.history
 * and the live plots (l_plot_live.c). */
#ifndef TL_L_PLOT_HIST_H
#define TL_L_PLOT_HIST_H

#include <lua.h>
#include <stddef.h>

#include "plot.h"

typedef struct tl_lua_plot_hist tl_lua_plot_hist;

/* Push a new empty store (a userdata freed by the GC) and return it. */
tl_lua_plot_hist *tl_lua_plot_hist_new(lua_State *L);
/* Bring the store up to date with the history table at `idx`: only entries
 * appended since the last call are read; a table that does not continue the
 * previous one starts over. */
void tl_lua_plot_hist_read(lua_State *L, tl_lua_plot_hist *h, int idx, const char *fn);
/* Push the panel list (a table of metric names): opts.metrics replaces the
 * defaults (loss, the validation metric, weight); positional names in opts
 * are added. With strict, a named metric without data is an error;
 * otherwise it is skipped (live plots before the first epoch). */
void tl_lua_plot_hist_panels(lua_State *L, const tl_lua_plot_hist *h, int opts, const char *fn,
                             int strict);
/* Append the history figure (no terminal set-up) for the panels in the table
 * at `panels` to b, at most max_points per series. Returns the number of
 * panels drawn. */
int tl_lua_plot_hist_script(lua_State *L, tl_lua_plot_hist *h, int panels, const char *title,
                            size_t max_points, tl_plot_buf *b);
/* Push the history table for argument `arg`: a history table as is, or the
 * result of obj:history() for a model. */
void tl_lua_plot_hist_push(lua_State *L, int arg, const char *fn);
/* Points held over all series. */
size_t tl_lua_plot_hist_points(const tl_lua_plot_hist *h);

/* tl.plot.history(h_or_model [, opts]) */
int tl_lua_plot_history(lua_State *L);

/* Register the store's metatable. */
void tl_lua_plot_hist_register(lua_State *L);

#endif
