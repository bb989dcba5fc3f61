/* l_plot_live.c — tl.plot.live (see l_plot_live.h): a long-lived gnuplot
 * process redrawn from the history store while m:fit runs, throttled and
 * never waiting for gnuplot. */
#include "l_plot_live.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "l_plot_hist.h"
#include "l_mpi.h"
#include "l_plot_out.h"
#include "l_util.h"
#include "plot.h"

#define LIVE_MT "tl.plot.live"
#define LIVE_POINTS 400 /* per series in live frames: cheap to format */

typedef struct {
    tl_plot *p;
    tl_lua_plot_hist *h; /* owned by the Lua userdata in the uservalue slot 1 */
    double interval, last;
    double seconds; /* time spent in update() past the throttle */
    long long frames, skipped, calls;
    int closed;
    char *file; /* svg/png/pdf rewritten each frame, or NULL */
    char *title;
    char term[8];
    tl_plot_buf frame;
    char *setup; /* terminal commands, sent with the first frame */
    char err[512];
} tl_live;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static tl_live *check_live(lua_State *L, int idx) { return luaL_checkudata(L, idx, LIVE_MT); }

static void live_close(tl_live *lp, int print)
{
    if (lp->p) {
        tl_plot_close(lp->p, print ? stdout : NULL, print ? 2.0 : 0.2);
        lp->p = NULL;
    }
    lp->closed = 1;
    free(lp->file);
    free(lp->title);
    free(lp->setup);
    lp->file = lp->title = lp->setup = NULL;
    tl_plot_buf_free(&lp->frame);
}

static int live_gc(lua_State *L)
{
    live_close(check_live(L, 1), 0);
    return 0;
}

static const char *const LIVE_FIELDS[] = {"interval", "metrics", "file",   "title",
                                          "terminal", "width",   "height", NULL};

/* tl.plot.live(opts) -> live plot | nil, message */
int tl_lua_plot_live(lua_State *L)
{
    const char *fn = "tl.plot.live";
    int opts = tl_lua_plot_opts(L, 1, fn, LIVE_FIELDS);
    double interval = tl_lua_opt_number(L, opts, fn, "interval", 0.5, 0.0, 86400.0);
    const char *file = tl_lua_opt_string(L, opts, fn, "file", NULL);
    int term = tl_lua_opt_enum(L, opts, fn, "terminal", tl_lua_plot_terminals, -1);
    int w = (int)tl_lua_opt_int(L, opts, fn, "width", 0, 0, 100000);
    int hgt = (int)tl_lua_opt_int(L, opts, fn, "height", 0, 0, 100000);
    const char *title = tl_lua_opt_string(L, opts, fn, "title", "Training");
    const char *t;
    if (file) {
        t = tl_lua_plot_file_terminal(file);
        if (!t)
            return luaL_error(L, "%s: field 'file' must end in .svg, .png or .pdf, got '%s'", fn,
                              file);
    } else {
        t = tl_lua_plot_terminal_choice(term);
        if (!strcmp(t, "svg") || !strcmp(t, "png") || !strcmp(t, "pdf"))
            return luaL_error(L, "%s: terminal '%s' needs a file (file=\"live.%s\")", fn, t, t);
    }
    /* metrics are re-read from opts on every frame: keep the table. */
    lua_getfield(L, opts, "metrics");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TTABLE)
        return luaL_error(L, "%s: field 'metrics' must be a list of metric names, got %s", fn,
                          luaL_typename(L, -1));
    lua_pop(L, 1);

    tl_live *lp = lua_newuserdatauv(L, sizeof *lp, 2);
    memset(lp, 0, sizeof *lp);
    luaL_setmetatable(L, LIVE_MT);
    int ud = lua_gettop(L);
    lp->interval = interval;
    lp->last = -1e300;
    snprintf(lp->term, sizeof lp->term, "%s", t);
    lp->h = tl_lua_plot_hist_new(L);
    lua_setiuservalue(L, ud, 1);
    lua_newtable(L); /* options for the panels: metrics list and positional names */
    lua_getfield(L, opts, "metrics");
    lua_setfield(L, -2, "metrics");
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, opts); i++) {
        lua_rawgeti(L, opts, i);
        lua_rawseti(L, -2, i);
    }
    lua_setiuservalue(L, ud, 2);
    lp->title = strdup(title);
    lp->file = file ? strdup(file) : NULL;
    if (!lp->title || (file && !lp->file)) return luaL_error(L, "%s: out of memory", fn);
    /* under mpirun rank 0 plots; the other ranks get a closed live plot,
     * so that a script runs unchanged */
    if (file ? !tl_lua_mpi_writes() : tl_lua_mpi_quiet()) {
        lp->closed = 1;
        lua_pushvalue(L, ud);
        return 1;
    }

    char err[1024];
    tl_plot_buf *setup = tl_lua_plot_buf_new(L);
    int dumb = !strcmp(t, "dumb");
    int rc = tl_plot_terminal_cmd(setup, t, w, hgt ? hgt : (dumb ? 56 : 840), NULL,
                                  dumb && tl_lua_stdout_is_tty(), err, sizeof err);
    if (rc != TL_PLOT_OK && tl_plot_gnuplot(err, sizeof err) == NULL) rc = TL_PLOT_ENOTFOUND;
    if (rc != TL_PLOT_OK) {
        lp->closed = 1;
        return tl_lua_plot_failure(L, fn, rc, err);
    }
    lp->p = tl_plot_open(tl_plot_is_window(t) ? TL_PLOT_WINDOW : 0, &rc, err, sizeof err);
    if (!lp->p) {
        lp->closed = 1;
        return tl_lua_plot_failure(L, fn, rc, err);
    }
    lp->setup = strdup(setup->data);
    if (!lp->setup) return luaL_error(L, "%s: out of memory", fn);
    lua_pushvalue(L, ud);
    return 1;
}

#define LIVE_MARKER "__towerlab_live_frame_end__"

/* Wait for the text frame just sent and print it. At a terminal the line is
 * cleared first: fit's progress bar may be on it ("\r" without "\n"). */
static void print_text_frame(tl_live *lp)
{
    tl_plot_buf out = {0};
    int rc = tl_plot_wait_output(lp->p, LIVE_MARKER, TL_LUA_PLOT_TIMEOUT, &out);
    if (rc == TL_PLOT_OK && out.len) {
        fflush(stdout);
        if (tl_lua_stdout_is_tty()) fputs("\r\033[K", stdout);
        fwrite(out.data, 1, out.len, stdout);
        fflush(stdout);
    }
    tl_plot_buf_free(&out);
}

/* live:update(h_or_model [, force]) -> true when a frame was sent.
 * Throttled: between frames it only reads the clock. */
static int live_update(lua_State *L)
{
    tl_live *lp = check_live(L, 1);
    lp->calls++;
    if (lp->closed) {
        lua_pushboolean(L, 0);
        return 1;
    }
    double now = mono_now();
    int force = lua_toboolean(L, 3);
    if (now - lp->last < lp->interval && !force) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lp->last = now;
    const char *fn = "live:update";
    if (!lp->p || !tl_plot_alive(lp->p)) {
        snprintf(lp->err, sizeof lp->err, "tl.plot.live: %s — live plot stopped, training goes on",
                 lp->p ? tl_plot_error(lp->p) : "no gnuplot");
        fprintf(stderr, "%s\n", lp->err);
        live_close(lp, 0);
        lua_pushboolean(L, 0);
        return 1;
    }
    tl_plot_drain(lp->p, stdout);
    lua_settop(L, 2);
    tl_lua_plot_hist_push(L, 2, fn);
    int hidx = lua_gettop(L);
    tl_lua_plot_hist_read(L, lp->h, hidx, fn); /* new entries only: never wasted */
    /* Still drawing: skip building this frame, unless it is one that must be
     * shown (an epoch's end, the fit's last); then wait for gnuplot. */
    if ((force ? tl_plot_wait_ready(lp->p, TL_LUA_PLOT_TIMEOUT) : tl_plot_ready(lp->p)) != 1) {
        lp->skipped++;
        lp->seconds += mono_now() - now;
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_getiuservalue(L, 1, 2);
    tl_lua_plot_hist_panels(L, lp->h, lua_gettop(L), fn, 0);
    int panels = lua_gettop(L);
    tl_plot_buf_reset(&lp->frame);
    tl_plot_buf *b = &lp->frame;
    if (lp->setup) tl_plot_buf_add(b, lp->setup, strlen(lp->setup));
    tl_plot_buf_add_lit(b, "reset\n");
    if (lp->file) {
        tl_plot_buf_add_lit(b, "set output ");
        tl_plot_buf_quote(b, lp->file);
        tl_plot_buf_add_lit(b, "\n");
    }
    /* A screen has a few hundred pixels (or 80 columns) per panel. */
    int np = tl_lua_plot_hist_script(L, lp->h, panels, lp->title,
                                     strcmp(lp->term, "dumb") ? LIVE_POINTS : 200, b);
    if (lp->file) tl_plot_buf_add_lit(b, "unset output\n");
    /* Text frames are printed as soon as gnuplot has drawn them, not at the
     * next update (a stale frame), and start on a line of their own. */
    int text = !lp->file && !strcmp(lp->term, "dumb");
    if (text) tl_plot_buf_add_lit(b, "set print '-'\nprint '" LIVE_MARKER "'\nunset print\n");
    if (np == 0 || b->oom) {
        lua_pushboolean(L, 0);
        return 1;
    }
    int r = tl_plot_send(lp->p, b->data, b->len);
    if (r == TL_PLOT_SENT && text) print_text_frame(lp);
    lp->seconds += mono_now() - now;
    if (r == TL_PLOT_SENT) {
        lp->frames++;
        free(lp->setup);
        lp->setup = NULL;
    } else if (r == TL_PLOT_BUSY)
        lp->skipped++;
    lua_pushboolean(L, r == TL_PLOT_SENT);
    return 1;
}

/* live:close() — waits briefly for the last frame (dumb output is printed). */
static int live_close_m(lua_State *L)
{
    tl_live *lp = check_live(L, 1);
    live_close(lp, 1);
    return 0;
}

/* live:stats() -> {frames=, skipped=, calls=, closed=, terminal=, points=,
 * seconds=} (points: values read from the history so far; seconds: time
 * spent in update() past the throttle). */
static int live_stats(lua_State *L)
{
    tl_live *lp = check_live(L, 1);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, lp->frames);
    lua_setfield(L, -2, "frames");
    lua_pushinteger(L, lp->skipped);
    lua_setfield(L, -2, "skipped");
    lua_pushinteger(L, lp->calls);
    lua_setfield(L, -2, "calls");
    lua_pushboolean(L, lp->closed);
    lua_setfield(L, -2, "closed");
    lua_pushstring(L, lp->term);
    lua_setfield(L, -2, "terminal");
    lua_pushnumber(L, lp->seconds);
    lua_setfield(L, -2, "seconds");
    lua_pushinteger(L, (lua_Integer)tl_lua_plot_hist_points(lp->h));
    lua_setfield(L, -2, "points");
    return 1;
}

static int live_index(lua_State *L)
{
    tl_live *lp = check_live(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "frames"))
        lua_pushinteger(L, lp->frames);
    else if (!strcmp(k, "skipped"))
        lua_pushinteger(L, lp->skipped);
    else if (!strcmp(k, "calls"))
        lua_pushinteger(L, lp->calls);
    else if (!strcmp(k, "closed"))
        lua_pushboolean(L, lp->closed);
    else if (!strcmp(k, "terminal"))
        lua_pushstring(L, lp->term);
    else if (!strcmp(k, "interval"))
        lua_pushnumber(L, lp->interval);
    else if (!strcmp(k, "update"))
        lua_pushcfunction(L, live_update);
    else if (!strcmp(k, "close"))
        lua_pushcfunction(L, live_close_m);
    else if (!strcmp(k, "stats"))
        lua_pushcfunction(L, live_stats);
    else
        lua_pushnil(L);
    return 1;
}

static int live_tostring(lua_State *L)
{
    tl_live *lp = check_live(L, 1);
    lua_pushfstring(L, "live plot (%s, every %f s, %d frames%s)", lp->term,
                    (lua_Number)lp->interval, (int)lp->frames, lp->closed ? ", closed" : "");
    return 1;
}

void tl_lua_plot_live_register(lua_State *L)
{
    static const luaL_Reg meta[] = {{"__index", live_index},
                                    {"__gc", live_gc},
                                    {"__close", live_gc},
                                    {"__tostring", live_tostring},
                                    {NULL, NULL}};
    luaL_newmetatable(L, LIVE_MT);
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
}
