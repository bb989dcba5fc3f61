/* l_plot_out.h — where a figure goes and how it runs (repl/l_plot_out.c),
 * shared by the figures (l_plot.c), the history figure (l_plot_hist.c) and
 * the live plots (l_plot_live.c): the output options, the default terminal,
 * running gnuplot (repl/plot.h) and reporting its failures, and the scratch
 * buffers and script pieces every figure uses. */
#ifndef TL_L_PLOT_OUT_H
#define TL_L_PLOT_OUT_H

#include <lua.h>

#include "plot.h"

#define TL_LUA_PLOT_TIMEOUT 60.0 /* seconds for one figure */

/* Terminal names of the terminal= option (NULL-terminated): auto, dumb, svg,
 * png, pdf, qt, wxt, x11. */
extern const char *const tl_lua_plot_terminals[];

/* Where a figure goes, from its options (tl_lua_plot_get_out). */
typedef struct {
    int mode;         /* file, svg string, text, script, print or window (l_plot_out.c) */
    const char *term; /* terminal name for tl_plot_terminal_cmd */
    const char *file;
    int width, height;
    const char *title;
} tl_lua_plot_out;

/* Push a new empty script buffer (freed by the GC) and return it. */
tl_plot_buf *tl_lua_plot_buf_new(lua_State *L);
/* The options table: argument `arg` (nil or none: a fresh empty table pushed
 * on the stack), checked against `allowed`. Returns its absolute index. */
int tl_lua_plot_opts(lua_State *L, int arg, const char *fn, const char *const *allowed);
/* Read file/format/terminal/width/height/title from the options table. */
void tl_lua_plot_get_out(lua_State *L, int opts, const char *fn, tl_lua_plot_out *o,
                         const char *def_title);
/* The terminal a file name asks for by its extension (svg, png, pdf), or NULL. */
const char *tl_lua_plot_file_terminal(const char *file);
/* The terminal for terminal= option index `term` (-1: the default set by
 * tl.plot.terminal), with "auto" resolved to a window or dumb. */
const char *tl_lua_plot_terminal_choice(int term);
/* Push nil and "fn: message" (returns 2). The first not-found and the first
 * crash message are also printed (stderr), so a plot in a script never fails
 * silently; later ones are only returned. */
int tl_lua_plot_failure(lua_State *L, const char *fn, int code, const char *err);
/* Run the figure: terminal set-up + body. Pushes the results: file name,
 * svg text or dumb text; nothing when the figure was printed or shown in a
 * window; nil, message on failure. Returns the number of results. */
int tl_lua_plot_finish(lua_State *L, const char *fn, const tl_lua_plot_out *o,
                       const tl_plot_buf *body, int def_w, int def_h, int dumb_h);

/* 1 when value idx can be indexed without raising: a table, or a userdata
 * whose metatable has __index (a model). */
int tl_lua_plot_indexable(lua_State *L, int idx);

/* The gnuplot point type of series i: filled circle, square, triangle, ...,
 * distinct letters on the dumb terminal. */
int tl_lua_plot_point_type(int i);
/* Append the common figure preamble (utf8, grid, no enhanced text). */
void tl_lua_plot_preamble(tl_plot_buf *b);

/* tl.plot.terminal([name]) -> name, resolved */
int tl_lua_plot_terminal(lua_State *L);
/* tl.plot.gnuplot([path]) -> path | nil, message */
int tl_lua_plot_gnuplot(lua_State *L);

/* Register the script buffer metatable. */
void tl_lua_plot_out_register(lua_State *L);

#endif
