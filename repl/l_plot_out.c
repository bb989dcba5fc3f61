/* l_plot_out.c — where a figure goes and how it runs (see l_plot_out.h):
 * options (file=, format=, terminal=, width=, height=, title=), the default
 * terminal, running gnuplot and reporting its failures, and the scratch
 * buffers and script pieces every figure shares. Split from l_plot.c so that
 * the history store and the live plots build on it without the figures. */
#include "l_plot_out.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l_mpi.h"
#include "l_util.h"

#define BUF_MT "tl.plot.buf"

static char g_default_term[8] = "auto";
static int g_warned;       /* the "gnuplot not found" message is printed once */
static int g_warned_crash; /* and so is the first crash */

const char *const tl_lua_plot_terminals[] = {"auto", "dumb", "svg", "png", "pdf",
                                             "qt",   "wxt",  "x11", NULL};
static const char *const FORMATS[] = {"svg_string", "text", "script", NULL};

enum { OUT_FILE, OUT_SVG_STRING, OUT_TEXT, OUT_SCRIPT, OUT_PRINT, OUT_WINDOW };

static int buf_gc(lua_State *L)
{
    tl_plot_buf_free(luaL_checkudata(L, 1, BUF_MT));
    return 0;
}

/* Push a new empty script buffer (freed by the GC) and return it. */
tl_plot_buf *tl_lua_plot_buf_new(lua_State *L)
{
    tl_plot_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, BUF_MT);
    return b;
}

/* The options table: argument `arg` (nil or none → a fresh empty table left on
 * the stack at the same index semantics). Returns its absolute index. */
int tl_lua_plot_opts(lua_State *L, int arg, const char *fn, const char *const *allowed)
{
    if (lua_isnoneornil(L, arg)) {
        lua_newtable(L);
        return lua_gettop(L);
    }
    if (lua_type(L, arg) != LUA_TTABLE)
        luaL_error(L, "%s: argument %d must be an options table, got %s", fn, arg,
                   luaL_typename(L, arg));
    tl_lua_check_fields(L, arg, fn, allowed);
    return lua_absindex(L, arg);
}

const char *tl_lua_plot_file_terminal(const char *file)
{
    const char *dot = strrchr(file, '.');
    if (!dot) return NULL;
    if (!strcmp(dot, ".svg")) return "svg";
    if (!strcmp(dot, ".png")) return "png";
    if (!strcmp(dot, ".pdf")) return "pdf";
    return NULL;
}

/* "auto" → the window terminal when there is a display and gnuplot has one,
 * else dumb (also for headless CI: nothing ever waits for a window). */
static const char *resolve_auto(const char *t)
{
    if (strcmp(t, "auto") != 0) return t;
    if (tl_plot_have_display()) {
        const char *w = tl_plot_window_terminal();
        if (w) return w;
    }
    return "dumb";
}

/* Read file/format/terminal/width/height/title from the options table. */
void tl_lua_plot_get_out(lua_State *L, int opts, const char *fn, tl_lua_plot_out *o,
                         const char *def_title)
{
    memset(o, 0, sizeof *o);
    o->file = tl_lua_opt_string(L, opts, fn, "file", NULL);
    int fmt = tl_lua_opt_enum(L, opts, fn, "format", FORMATS, -1);
    int term = tl_lua_opt_enum(L, opts, fn, "terminal", tl_lua_plot_terminals, -1);
    o->width = (int)tl_lua_opt_int(L, opts, fn, "width", 0, 0, 100000);
    o->height = (int)tl_lua_opt_int(L, opts, fn, "height", 0, 0, 100000);
    o->title = tl_lua_opt_string(L, opts, fn, "title", def_title);
    if (o->file) {
        o->term = tl_lua_plot_file_terminal(o->file);
        if (!o->term)
            luaL_error(L, "%s: field 'file' must end in .svg, .png or .pdf, got '%s'", fn, o->file);
        o->mode = OUT_FILE;
        return;
    }
    if (fmt == 0) {
        o->mode = OUT_SVG_STRING;
        o->term = "svg";
        return;
    }
    if (fmt == 1 || fmt == 2) {
        o->mode = fmt == 1 ? OUT_TEXT : OUT_SCRIPT;
        o->term = "dumb";
        return;
    }
    o->term = resolve_auto(term >= 0 ? tl_lua_plot_terminals[term] : g_default_term);
    if (!strcmp(o->term, "dumb"))
        o->mode = OUT_PRINT;
    else if (!strcmp(o->term, "svg"))
        o->mode = OUT_SVG_STRING;
    else if (tl_plot_is_window(o->term))
        o->mode = OUT_WINDOW;
    else
        luaL_error(L, "%s: terminal '%s' needs a file (file=\"plot.%s\")", fn, o->term, o->term);
}

/* Push nil and "fn: message". The first not-found and the first crash
 * message are also printed (stderr), so a plot in a script never fails
 * silently; later ones are only returned. */
int tl_lua_plot_failure(lua_State *L, const char *fn, int code, const char *err)
{
    lua_pushnil(L);
    if (code == TL_PLOT_ENOTFOUND) {
        lua_pushfstring(L, "tl.plot: %s", err);
        if (!g_warned) {
            fprintf(stderr, "%s\n", lua_tostring(L, -1));
            fflush(stderr);
            g_warned = 1;
        }
    } else {
        lua_pushfstring(L, "%s: %s", fn, err);
        if (code == TL_PLOT_ECRASH && !g_warned_crash) {
            fprintf(stderr, "%s\n", lua_tostring(L, -1));
            fflush(stderr);
            g_warned_crash = 1;
        }
    }
    return 2;
}

/* Run the figure: terminal set-up + body. Pushes the results: file name,
 * svg text or dumb text; nothing when the figure was printed or shown in a
 * window; nil, message on failure. */
int tl_lua_plot_finish(lua_State *L, const char *fn, const tl_lua_plot_out *o,
                       const tl_plot_buf *body, int def_w, int def_h, int dumb_h)
{
    char err[1024];
    if (o->mode == OUT_SCRIPT) { /* the gnuplot commands without a terminal: tests, debugging */
        lua_pushlstring(L, body->data ? body->data : "", body->len);
        return 1;
    }
    /* under mpirun rank 0 writes the file and prints or shows the figure */
    if (o->mode == OUT_FILE && !tl_lua_mpi_writes()) {
        lua_pushstring(L, o->file);
        return 1;
    }
    if ((o->mode == OUT_PRINT || o->mode == OUT_WINDOW) && tl_lua_mpi_quiet()) return 0;
    tl_plot_buf *s = tl_lua_plot_buf_new(L);
    int dumb = !strcmp(o->term, "dumb");
    int w = o->width ? o->width : (dumb ? 0 : def_w);
    int h = o->height ? o->height : (dumb ? dumb_h : def_h);
    int color = o->mode == OUT_PRINT && tl_lua_stdout_is_tty();
    int rc = tl_plot_terminal_cmd(s, o->term, w, h, o->mode == OUT_FILE ? o->file : NULL, color,
                                  err, sizeof err);
    if (rc == TL_PLOT_OK) {
        tl_plot_buf_add(s, body->data ? body->data : "", body->len);
        if (o->mode == OUT_FILE) tl_plot_buf_add_lit(s, "unset output\n");
    } else if (tl_plot_gnuplot(err, sizeof err) == NULL) {
        rc = TL_PLOT_ENOTFOUND; /* the terminal query failed because gnuplot is missing */
    }
    if (rc != TL_PLOT_OK) return tl_lua_plot_failure(L, fn, rc, err);
    if (s->oom || body->oom) return luaL_error(L, "%s: out of memory building the plot", fn);

    int flags = o->mode == OUT_WINDOW ? TL_PLOT_WINDOW : TL_PLOT_CAPTURE;
    char *out = NULL;
    size_t out_len = 0;
    rc = tl_plot_run(s->data, s->len, flags, TL_LUA_PLOT_TIMEOUT, &out, &out_len, err, sizeof err);
    if (rc != TL_PLOT_OK) {
        free(out);
        return tl_lua_plot_failure(L, fn, rc, err);
    }
    if (o->mode == OUT_PRINT || o->mode == OUT_TEXT) { /* dumb starts each page with a form feed */
        size_t k = 0;
        for (size_t i = 0; i < out_len; i++)
            if (out[i] != '\f') out[k++] = out[i];
        out_len = k;
    }
    switch (o->mode) {
    case OUT_FILE: lua_pushstring(L, o->file); break;
    case OUT_SVG_STRING:
    case OUT_TEXT: lua_pushlstring(L, out, out_len); break;
    case OUT_PRINT: /* printed: nothing to return (the prompt would echo `true`) */
        fflush(stdout);
        fwrite(out, 1, out_len, stdout);
        fflush(stdout);
        free(out);
        return 0;
    default: /* a window: nothing to return either */ free(out); return 0;
    }
    free(out);
    return 1;
}

/* Point types per task or group: filled circle, square, triangle, diamond,
 * inverted triangle, pentagon. On the dumb terminal they print as distinct
 * letters (G, E, I, M, K, O), so curves differ without colour. */
static const int POINT_TYPES[] = {7, 5, 9, 13, 11, 15};
#define N_POINT_TYPES ((int)(sizeof POINT_TYPES / sizeof *POINT_TYPES))
int tl_lua_plot_point_type(int i)
{
    return POINT_TYPES[(i % N_POINT_TYPES + N_POINT_TYPES) % N_POINT_TYPES];
}

/* Common figure preamble: no enhanced text, so task names keep underscores. */
void tl_lua_plot_preamble(tl_plot_buf *b)
{
    tl_plot_buf_printf(b, "set encoding utf8\nset grid\nset key noautotitle\n");
}

/* 1 when value idx can be indexed without raising: a table, or a userdata
 * whose metatable has __index (a model). */
int tl_lua_plot_indexable(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TTABLE) return 1;
    if (lua_type(L, idx) != LUA_TUSERDATA || luaL_getmetafield(L, idx, "__index") == LUA_TNIL)
        return 0;
    lua_pop(L, 1);
    return 1;
}

const char *tl_lua_plot_terminal_choice(int term)
{
    return resolve_auto(term >= 0 ? tl_lua_plot_terminals[term] : g_default_term);
}

/* tl.plot.terminal([name]) -> name, resolved */
int tl_lua_plot_terminal(lua_State *L)
{
    const char *fn = "tl.plot.terminal";
    if (!lua_isnoneornil(L, 1)) {
        if (lua_type(L, 1) != LUA_TSTRING)
            return luaL_error(L,
                              "%s: argument 1 must be a terminal name (auto, dumb, svg, png, pdf, "
                              "qt, wxt, x11), got %s",
                              fn, luaL_typename(L, 1));
        const char *name = lua_tostring(L, 1);
        int i;
        for (i = 0; tl_lua_plot_terminals[i] && strcmp(tl_lua_plot_terminals[i], name) != 0; i++) {}
        if (!tl_lua_plot_terminals[i])
            return luaL_error(
                L, "%s: unknown terminal '%s' (expected auto, dumb, svg, png, pdf, qt, wxt or x11)",
                fn, name);
        if (tl_plot_is_window(name) && tl_plot_has_terminal(name) != 1) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s: this gnuplot has no '%s' terminal (window terminals: %s)", fn,
                            name, tl_plot_window_terminal() ? tl_plot_window_terminal() : "none");
            return 2;
        }
        snprintf(g_default_term, sizeof g_default_term, "%s", name);
    }
    lua_pushstring(L, g_default_term);
    lua_pushstring(L, resolve_auto(g_default_term));
    return 2;
}

/* tl.plot.gnuplot([path]) -> path | nil, message */
int tl_lua_plot_gnuplot(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        tl_plot_set_gnuplot(luaL_checkstring(L, 1));
        g_warned = 0;
    } else if (lua_gettop(L) >= 1) {
        tl_plot_set_gnuplot(NULL);
        g_warned = 0;
    }
    char err[512];
    const char *p = tl_plot_gnuplot(err, sizeof err);
    if (!p) {
        lua_pushnil(L);
        lua_pushfstring(L, "tl.plot: %s", err);
        return 2;
    }
    lua_pushstring(L, p);
    return 1;
}

void tl_lua_plot_out_register(lua_State *L)
{
    luaL_newmetatable(L, BUF_MT);
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}
