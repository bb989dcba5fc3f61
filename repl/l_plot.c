/* l_plot.c — tl.plot: calibration, history, compare, gates, live, terminal.
 *
 * Each figure is a gnuplot script built here from plain Lua tables (data goes
 * inline as `$name << EOD` datablocks) and handed to repl/plot.c. Scratch
 * memory lives in userdata with __gc, so an argument error raised halfway
 * through building a script leaks nothing.
 */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "l_plot.h"

#include "l_util.h"
#include "plot.h"

#define LIVE_MT "tl.plot.live"
#define BUF_MT "tl.plot.buf"
#define HIST_MT "tl.plot.hist"
#define MAX_POINTS 1000  /* per series: longer series are averaged in buckets */
#define LIVE_POINTS 400  /* per series in live frames: cheap to format */
#define RUN_TIMEOUT 60.0 /* seconds for one figure */
#define add_lit(b, s) tl_plot_buf_add((b), (s), sizeof(s) - 1)

static char g_default_term[8] = "auto";
static int g_warned;       /* the "gnuplot not found" message is printed once */
static int g_warned_crash; /* and so is the first crash */

static const char *const TERMINALS[] = {"auto", "dumb", "svg", "png", "pdf", "qt", "wxt", "x11", NULL};
static const char *const FORMATS[] = {"svg_string", "text", "script", NULL};

/* ---- scratch buffers owned by Lua --------------------------------------- */

static int buf_gc(lua_State *L) {
    tl_plot_buf_free(luaL_checkudata(L, 1, BUF_MT));
    return 0;
}

/* Push a new empty script buffer (freed by the GC) and return it. */
static tl_plot_buf *buf_new(lua_State *L) {
    tl_plot_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, BUF_MT);
    return b;
}

/* ---- reading Lua values ------------------------------------------------- */

/* t[key] as a number when it is one; NAN when absent. Raises for other types. */
static double field_num(lua_State *L, int t, const char *key, const char *fn, const char *where) {
    int ty = lua_getfield(L, t, key);
    double v = NAN;
    if (ty == LUA_TNUMBER) v = (double)lua_tonumber(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "%s: %s.%s must be a number, got %s", fn, where, key, luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* The options table: argument `arg` (nil or none → a fresh empty table left on
 * the stack at the same index semantics). Returns its absolute index. */
static int opts_arg(lua_State *L, int arg, const char *fn, const char *const *allowed) {
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

/* ---- output: terminal, file, format -------------------------------------- */

enum { OUT_FILE, OUT_SVG_STRING, OUT_TEXT, OUT_SCRIPT, OUT_PRINT, OUT_WINDOW };

typedef struct {
    int mode;
    const char *term; /* terminal name for tl_plot_terminal_cmd */
    const char *file;
    int width, height;
    const char *title;
} out_spec;

static const char *ext_terminal(const char *file) {
    const char *dot = strrchr(file, '.');
    if (!dot) return NULL;
    if (!strcmp(dot, ".svg")) return "svg";
    if (!strcmp(dot, ".png")) return "png";
    if (!strcmp(dot, ".pdf")) return "pdf";
    return NULL;
}

/* "auto" → the window terminal when there is a display and gnuplot has one,
 * else dumb (also for headless CI: nothing ever waits for a window). */
static const char *resolve_auto(const char *t) {
    if (strcmp(t, "auto") != 0) return t;
    if (tl_plot_have_display()) {
        const char *w = tl_plot_window_terminal();
        if (w) return w;
    }
    return "dumb";
}

/* Read file/format/terminal/width/height/title from the options table. */
static void get_out(lua_State *L, int opts, const char *fn, out_spec *o, const char *def_title) {
    memset(o, 0, sizeof *o);
    o->file = tl_lua_opt_string(L, opts, fn, "file", NULL);
    int fmt = tl_lua_opt_enum(L, opts, fn, "format", FORMATS, -1);
    int term = tl_lua_opt_enum(L, opts, fn, "terminal", TERMINALS, -1);
    o->width = (int)tl_lua_opt_int(L, opts, fn, "width", 0, 0, 100000);
    o->height = (int)tl_lua_opt_int(L, opts, fn, "height", 0, 0, 100000);
    o->title = tl_lua_opt_string(L, opts, fn, "title", def_title);
    if (o->file) {
        o->term = ext_terminal(o->file);
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
    o->term = resolve_auto(term >= 0 ? TERMINALS[term] : g_default_term);
    if (!strcmp(o->term, "dumb")) o->mode = OUT_PRINT;
    else if (!strcmp(o->term, "svg")) o->mode = OUT_SVG_STRING;
    else if (tl_plot_is_window(o->term)) o->mode = OUT_WINDOW;
    else luaL_error(L, "%s: terminal '%s' needs a file (file=\"plot.%s\")", fn, o->term, o->term);
}

/* Push nil and "fn: message". The first not-found and the first crash
 * message are also printed (stderr), so a plot in a script never fails
 * silently; later ones are only returned. */
static int push_failure(lua_State *L, const char *fn, int code, const char *err) {
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
static int finish(lua_State *L, const char *fn, const out_spec *o, const tl_plot_buf *body,
                  int def_w, int def_h, int dumb_h) {
    char err[1024];
    if (o->mode == OUT_SCRIPT) { /* the gnuplot commands without a terminal: tests, debugging */
        lua_pushlstring(L, body->data ? body->data : "", body->len);
        return 1;
    }
    tl_plot_buf *s = buf_new(L);
    int dumb = !strcmp(o->term, "dumb");
    int w = o->width ? o->width : (dumb ? 0 : def_w);
    int h = o->height ? o->height : (dumb ? dumb_h : def_h);
    int color = o->mode == OUT_PRINT && tl_lua_stdout_is_tty();
    int rc = tl_plot_terminal_cmd(s, o->term, w, h, o->mode == OUT_FILE ? o->file : NULL, color,
                                  err, sizeof err);
    if (rc == TL_PLOT_OK) {
        tl_plot_buf_add(s, body->data ? body->data : "", body->len);
        if (o->mode == OUT_FILE) add_lit(s, "unset output\n");
    } else if (tl_plot_gnuplot(err, sizeof err) == NULL) {
        rc = TL_PLOT_ENOTFOUND; /* the terminal query failed because gnuplot is missing */
    }
    if (rc != TL_PLOT_OK) return push_failure(L, fn, rc, err);
    if (s->oom || body->oom) return luaL_error(L, "%s: out of memory building the plot", fn);

    int flags = o->mode == OUT_WINDOW ? TL_PLOT_WINDOW : TL_PLOT_CAPTURE;
    char *out = NULL;
    size_t out_len = 0;
    rc = tl_plot_run(s->data, s->len, flags, RUN_TIMEOUT, &out, &out_len, err, sizeof err);
    if (rc != TL_PLOT_OK) {
        free(out);
        return push_failure(L, fn, rc, err);
    }
    if (o->mode == OUT_PRINT || o->mode == OUT_TEXT) { /* dumb starts each page with a form feed */
        size_t k = 0;
        for (size_t i = 0; i < out_len; i++)
            if (out[i] != '\f') out[k++] = out[i];
        out_len = k;
    }
    switch (o->mode) {
    case OUT_FILE:
        lua_pushstring(L, o->file);
        break;
    case OUT_SVG_STRING:
    case OUT_TEXT:
        lua_pushlstring(L, out, out_len);
        break;
    case OUT_PRINT: /* printed: nothing to return (the prompt would echo `true`) */
        fflush(stdout);
        fwrite(out, 1, out_len, stdout);
        fflush(stdout);
        free(out);
        return 0;
    default: /* a window: nothing to return either */
        free(out);
        return 0;
    }
    free(out);
    return 1;
}

/* Point types per task or group: filled circle, square, triangle, diamond,
 * inverted triangle, pentagon. On the dumb terminal they print as distinct
 * letters (G, E, I, M, K, O), so curves differ without colour. */
static const int POINT_TYPES[] = {7, 5, 9, 13, 11, 15};
#define N_POINT_TYPES ((int)(sizeof POINT_TYPES / sizeof *POINT_TYPES))
static int point_type(int i) { return POINT_TYPES[(i % N_POINT_TYPES + N_POINT_TYPES) % N_POINT_TYPES]; }

/* The "perfect calibration" diagonal: linetype -1 is the terminal's
 * foreground (ANSI default colour on dumb: visible on dark and light
 * terminals; a gray was drawn in ANSI black). */
#define PERFECT_LINE "plot x with lines lt -1 dt 3 title 'perfect'"

/* Common figure preamble: no enhanced text, so task names keep underscores. */
static void preamble(tl_plot_buf *b) {
    tl_plot_buf_printf(b, "set encoding utf8\nset grid\nset key noautotitle\n");
}

/* ---- calibration --------------------------------------------------------- */

static const char *const CAL_FIELDS[] = {"tasks", "file", "title", "format", "terminal",
                                         "width", "height", NULL};

/* 1 when the value at idx looks like one task's result: a table with bins. */
static int has_bins(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    int t = lua_getfield(L, idx, "bins");
    lua_pop(L, 1);
    return t == LUA_TTABLE;
}

/* Sort strings on the Lua stack? Simpler: collect names into a table and sort
 * with table.sort semantics (byte order). */
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Write the curve ($c<id>: mean_pred rate ci_lo ci_hi, non-empty bins) and
 * histogram ($h<id>: centre count width) of one task. Returns whether any
 * bin has a confidence interval; *npts gets the curve's point count. */
static int write_bins(lua_State *L, tl_plot_buf *b, int res, const char *task, const char *id,
                      const char *fn, int *npts, double *xmin, double *xmax) {
    char where[160];
    lua_getfield(L, res, "bins");
    int bins = lua_gettop(L);
    lua_Integer nb = (lua_Integer)lua_rawlen(L, bins);
    int any_ci = 0;
    *npts = 0;
    tl_plot_buf_printf(b, "$c%s << EOD\n", id);
    tl_plot_buf *hist = buf_new(L);
    tl_plot_buf_printf(hist, "$h%s << EOD\n", id);
    for (lua_Integer i = 1; i <= nb; i++) {
        snprintf(where, sizeof where, "r.%s.bins[%lld]", task, (long long)i);
        if (lua_rawgeti(L, bins, i) != LUA_TTABLE)
            luaL_error(L, "%s: %s must be a table {lo=,hi=,count=,mean_pred=,rate=}, got %s", fn,
                       where, luaL_typename(L, -1));
        int bin = lua_gettop(L);
        double lo = field_num(L, bin, "lo", fn, where), hi = field_num(L, bin, "hi", fn, where);
        double count = field_num(L, bin, "count", fn, where);
        double mp = field_num(L, bin, "mean_pred", fn, where);
        double rate = field_num(L, bin, "rate", fn, where);
        double cl = field_num(L, bin, "ci_lo", fn, where), ch = field_num(L, bin, "ci_hi", fn, where);
        lua_pop(L, 1);
        if (isfinite(lo) && lo < *xmin) *xmin = lo;
        if (isfinite(hi) && hi > *xmax) *xmax = hi;
        if (isfinite(lo) && isfinite(hi)) {
            tl_plot_buf_num(hist, (lo + hi) / 2);
            add_lit(hist, " ");
            tl_plot_buf_num(hist, isfinite(count) ? count : 0);
            add_lit(hist, " ");
            tl_plot_buf_num(hist, hi - lo);
            add_lit(hist, "\n");
        }
        /* Empty bins have no observed rate: leave them out of the curve. */
        if (!(count > 0) || !isfinite(mp) || !isfinite(rate)) continue;
        if (isfinite(cl) && isfinite(ch)) any_ci = 1;
        tl_plot_buf_printf(b, "%.9g %.9g ", mp, rate);
        tl_plot_buf_num(b, isfinite(cl) ? cl : rate);
        add_lit(b, " ");
        tl_plot_buf_num(b, isfinite(ch) ? ch : rate);
        add_lit(b, "\n");
        (*npts)++;
    }
    add_lit(b, "EOD\n");
    add_lit(hist, "EOD\n");
    tl_plot_buf_add(b, hist->data, hist->len);
    lua_pop(L, 2); /* hist, bins */
    return any_ci;
}

/* Collect task names of result table `res` (those with bins) into a sorted
 * array of strings anchored in a new Lua table left on the stack. */
static const char **result_tasks(lua_State *L, int res, int *n) {
    lua_newtable(L);
    int names = lua_gettop(L);
    int k = 0;
    lua_pushnil(L);
    while (lua_next(L, res)) {
        if (lua_type(L, -2) == LUA_TSTRING && has_bins(L, -1)) {
            lua_pushvalue(L, -2);
            lua_rawseti(L, names, ++k);
        }
        lua_pop(L, 1);
    }
    const char **v = lua_newuserdatauv(L, sizeof(char *) * (size_t)(k + 1), 0);
    lua_setfield(L, names, "__mem");
    for (int i = 0; i < k; i++) {
        lua_rawgeti(L, names, i + 1);
        v[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    qsort(v, (size_t)k, sizeof *v, cmp_str);
    *n = k;
    return v;
}

/* tl.plot.calibration(r, opts) */
static int l_calibration(lua_State *L) {
    const char *fn = "tl.plot.calibration";
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L,
                          "%s: argument 1 must be an evaluation result table (task -> {bins=...}), got %s",
                          fn, luaL_typename(L, 1));
    int opts = opts_arg(L, 2, fn, CAL_FIELDS);
    out_spec o;
    get_out(L, opts, fn, &o, "Calibration");

    /* {before=r1, after=r2} draws both; otherwise one result. */
    int res[2], nres = 0;
    lua_getfield(L, 1, "before");
    lua_getfield(L, 1, "after");
    int before_after = lua_type(L, -2) == LUA_TTABLE && lua_type(L, -1) == LUA_TTABLE &&
                       !has_bins(L, -2) && !has_bins(L, -1);
    if (before_after) {
        res[0] = lua_absindex(L, -2);
        res[1] = lua_absindex(L, -1);
        nres = 2;
    } else {
        lua_pop(L, 2);
        res[0] = 1;
        nres = 1;
    }
    int main_res = res[nres - 1];

    /* Tasks: opts.tasks, else every key with bins (sorted). */
    int ntasks = 0;
    const char **tasks;
    if (lua_getfield(L, opts, "tasks") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TTABLE)
            return luaL_error(L, "%s: field 'tasks' must be a list of task names, got %s", fn,
                              luaL_typename(L, -1));
        int tt = lua_gettop(L);
        ntasks = (int)lua_rawlen(L, tt);
        tasks = lua_newuserdatauv(L, sizeof(char *) * (size_t)(ntasks + 1), 0);
        for (int i = 0; i < ntasks; i++) {
            if (lua_rawgeti(L, tt, i + 1) != LUA_TSTRING)
                return luaL_error(L, "%s: field 'tasks' must be a list of task names, item %d is %s",
                                  fn, i + 1, luaL_typename(L, -1));
            tasks[i] = lua_tostring(L, -1);
            lua_pop(L, 1); /* still referenced by opts.tasks */
            for (int r = 0; r < nres; r++) {
                lua_getfield(L, res[r], tasks[i]);
                int ok = has_bins(L, -1);
                lua_pop(L, 1);
                if (!ok)
                    return luaL_error(L, "%s: task '%s' (field 'tasks') has no result with bins%s",
                                      fn, tasks[i], nres == 2 ? (r ? " in 'after'" : " in 'before'") : "");
            }
        }
    } else {
        tasks = result_tasks(L, main_res, &ntasks);
        if (ntasks == 0)
            return luaL_error(L,
                              "%s: argument 1 must be an evaluation result table (task -> {bins=...}), "
                              "got a table where no task has bins",
                              fn);
    }

    tl_plot_buf *b = buf_new(L);
    preamble(b);
    double xmin = 0, xmax = 1;
    int any_ci[2][64] = {{0}}, npts[2][64] = {{0}};
    if (ntasks > 64) return luaL_error(L, "%s: at most 64 tasks per figure, got %d", fn, ntasks);
    for (int r = 0; r < nres; r++)
        for (int i = 0; i < ntasks; i++) {
            char id[32];
            snprintf(id, sizeof id, "%d_%d", r, i + 1);
            lua_getfield(L, res[r], tasks[i]);
            int tr = lua_gettop(L);
            any_ci[r][i] = write_bins(L, b, tr, tasks[i], id, fn, &npts[r][i], &xmin, &xmax);
            lua_pop(L, 1);
        }

    add_lit(b, "set multiplot title ");
    tl_plot_buf_quote(b, o.title);
    tl_plot_buf_printf(b, "\nset lmargin 10\nset rmargin 3\n"
                          "set size 1,0.66\nset origin 0,0.30\n"
                          "set xrange [%.9g:%.9g]\nset yrange [0:1]\n"
                          "set ylabel 'observed rate'\nset format x ''\nset key top left\n",
                       xmin, xmax);
    add_lit(b, PERFECT_LINE);
    for (int r = 0; r < nres; r++)
        for (int i = 0; i < ntasks; i++) {
            if (npts[r][i] == 0) continue;
            char title[256];
            lua_getfield(L, res[r], tasks[i]);
            double ece = field_num(L, lua_gettop(L), "ece", fn, tasks[i]);
            lua_pop(L, 1);
            const char *tag = nres == 2 ? (r ? " after" : " before") : "";
            if (isfinite(ece)) snprintf(title, sizeof title, "%s%s (ECE %.4f)", tasks[i], tag, ece);
            else snprintf(title, sizeof title, "%s%s", tasks[i], tag);
            tl_plot_buf_printf(b, ", \\\n  $c%d_%d using 1:2%s with %s lc %d pt %d ps 0.6 dt %d title ",
                               r, i + 1, any_ci[r][i] ? ":3:4" : "",
                               any_ci[r][i] ? "yerrorlines" : "linespoints", i + 1, point_type(i),
                               nres == 2 && r == 0 ? 2 : 1);
            tl_plot_buf_quote(b, title);
        }
    tl_plot_buf_printf(b, "\nunset title\nset size 1,0.30\nset origin 0,0\nset format x '%%g'\n"
                          "set yrange [0:*]\nset xlabel 'predicted probability'\n"
                          "set ylabel 'count'\nset style fill transparent solid 0.35 noborder\n"
                          "unset key\nplot ");
    for (int r = nres - 1, first = 1; r >= 0; r--)
        for (int i = 0; i < ntasks; i++) {
            if (r == nres - 1)
                tl_plot_buf_printf(b, "%s$h%d_%d using 1:2:3 with boxes lc %d notitle",
                                   first ? "" : ", \\\n  ", r, i + 1, i + 1);
            else
                tl_plot_buf_printf(b, ", \\\n  $h%d_%d using 1:2 with histeps dt 2 lc %d notitle",
                                   r, i + 1, i + 1);
            first = 0;
        }
    add_lit(b, "\nunset multiplot\n");
    return finish(L, fn, &o, b, 800, 700, 40);
}

/* ---- history store ------------------------------------------------------- */

enum { SRC_STEPS, SRC_VALID, SRC_EPOCHS, SRC_DIAG, SRC_N };
static const char *const LISTS[] = {"steps", "epochs", "diagnostics"};

typedef struct {
    int src;
    char *field; /* metric: loss, weight, auc, grad_norm, ... */
    char *key;   /* task or pair; "" for a scalar */
    double *x, *y;
    size_t n, cap;
} hseries;

/* Everything read from a history table so far. The lists are append-only,
 * so live plots read only entries added since the last frame. */
typedef struct {
    size_t seen[3];     /* entries read from steps, epochs, diagnostics */
    double last_x[3];   /* x of the last entry read from each list */
    int x_is_step[SRC_N];
    hseries *s;
    size_t ns, cap;
    char **keys; /* series keys in order of appearance: colours */
    size_t nkeys, kcap;
    int oom;
} hstore;

static void hstore_clear(hstore *h) {
    for (size_t i = 0; i < h->ns; i++) {
        free(h->s[i].field);
        free(h->s[i].key);
        free(h->s[i].x);
        free(h->s[i].y);
    }
    free(h->s);
    for (size_t i = 0; i < h->nkeys; i++) free(h->keys[i]);
    free(h->keys);
    memset(h, 0, sizeof *h);
}

static int hist_gc(lua_State *L) {
    hstore_clear(luaL_checkudata(L, 1, HIST_MT));
    return 0;
}

static hstore *hstore_new(lua_State *L) {
    hstore *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, HIST_MT);
    return h;
}

static size_t key_color(hstore *h, const char *key) {
    for (size_t i = 0; i < h->nkeys; i++)
        if (!strcmp(h->keys[i], key)) return i + 1;
    if (h->nkeys == h->kcap) {
        size_t cap = h->kcap ? h->kcap * 2 : 16;
        char **k = realloc(h->keys, cap * sizeof *k);
        if (!k) return 1;
        h->keys = k;
        h->kcap = cap;
    }
    char *d = strdup(key);
    if (!d) return 1;
    h->keys[h->nkeys++] = d;
    return h->nkeys;
}

static hseries *series_get(hstore *h, int src, const char *field, const char *key) {
    for (size_t i = 0; i < h->ns; i++) {
        hseries *s = &h->s[i];
        if (s->src == src && !strcmp(s->field, field) && !strcmp(s->key, key)) return s;
    }
    if (h->ns == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        hseries *ns = realloc(h->s, cap * sizeof *ns);
        if (!ns) return NULL;
        h->s = ns;
        h->cap = cap;
    }
    hseries *s = &h->s[h->ns];
    memset(s, 0, sizeof *s);
    s->src = src;
    s->field = strdup(field);
    s->key = strdup(key);
    if (!s->field || !s->key) {
        free(s->field);
        free(s->key);
        return NULL;
    }
    h->ns++;
    key_color(h, key[0] ? key : field);
    return s;
}

static void series_add(hstore *h, int src, const char *field, const char *key, double x, double y) {
    hseries *s = series_get(h, src, field, key);
    if (!s) {
        h->oom = 1;
        return;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (nx) s->x = nx;
        double *ny = nx ? realloc(s->y, cap * sizeof *ny) : NULL;
        if (ny) s->y = ny;
        if (!nx || !ny) {
            h->oom = 1;
            return;
        }
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}

/* The key at -2 of a lua_next iteration as a string (numbers converted on a
 * copy, so the iteration is not disturbed); NULL for other types. Pushes one
 * value either way. */
static const char *next_key(lua_State *L) {
    lua_pushvalue(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) return lua_tostring(L, -1);
    return NULL;
}

/* Read one entry of steps/epochs/diagnostics (table at `e`). */
/* The x of entry `e` (number i of its list): its step, else (epochs) its
 * epoch, else i. *is_step tells which. */
static double entry_x(lua_State *L, int e, int list, lua_Integer i, int *is_step) {
    double x = NAN;
    *is_step = 0;
    if (lua_getfield(L, e, "step") == LUA_TNUMBER) {
        x = (double)lua_tonumber(L, -1);
        *is_step = 1;
    }
    lua_pop(L, 1);
    if (isnan(x) && list == 1) {
        if (lua_getfield(L, e, "epoch") == LUA_TNUMBER) x = (double)lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    return isnan(x) ? (double)i : x;
}

static void read_entry(lua_State *L, hstore *h, int list, int e, lua_Integer i) {
    int src = list == 0 ? SRC_STEPS : list == 1 ? SRC_EPOCHS : SRC_DIAG;
    int is_step;
    double x = entry_x(L, e, list, i, &is_step);
    if (is_step) h->x_is_step[src] = 1;
    if (list == 1) h->x_is_step[SRC_VALID] = h->x_is_step[SRC_EPOCHS];
    h->last_x[list] = x;

    lua_pushnil(L);
    while (lua_next(L, e)) {
        const char *field = next_key(L);
        int vt = lua_type(L, -2);
        if (!field || !strcmp(field, "step") || !strcmp(field, "epoch")) {
            lua_pop(L, 2);
            continue;
        }
        if (vt == LUA_TNUMBER) {
            series_add(h, src, field, "", x, (double)lua_tonumber(L, -2));
        } else if (vt == LUA_TTABLE) {
            int inner = lua_absindex(L, -2);
            int valid = list == 1 && !strcmp(field, "valid");
            lua_pushnil(L);
            while (lua_next(L, inner)) {
                const char *key = next_key(L);
                if (key && lua_type(L, -2) == LUA_TNUMBER) {
                    series_add(h, valid ? SRC_VALID : src, field, key, x, (double)lua_tonumber(L, -2));
                } else if (key && valid && lua_type(L, -2) == LUA_TTABLE) {
                    /* valid[task] = {auc=, logloss=}: one panel per metric */
                    int m = lua_absindex(L, -2);
                    lua_pushnil(L);
                    while (lua_next(L, m)) {
                        const char *metric = next_key(L);
                        if (metric && lua_type(L, -2) == LUA_TNUMBER)
                            series_add(h, SRC_VALID, metric, key, x, (double)lua_tonumber(L, -2));
                        lua_pop(L, 2);
                    }
                }
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 2);
    }
}

/* 1 when the table at idx continues what the store has read: at least as
 * long, and the last entry read has the same x (m:history() builds a new
 * table each time, so identity says nothing). */
static int continues(lua_State *L, const hstore *h, int idx, const size_t *len) {
    for (int l = 0; l < 3; l++) {
        if (len[l] < h->seen[l]) return 0;
        if (h->seen[l] == 0) continue;
        lua_getfield(L, idx, LISTS[l]);
        int ok = 0, is_step;
        if (lua_rawgeti(L, -1, (lua_Integer)h->seen[l]) == LUA_TTABLE)
            ok = entry_x(L, lua_gettop(L), l, (lua_Integer)h->seen[l], &is_step) == h->last_x[l];
        lua_pop(L, 2);
        if (!ok) return 0;
    }
    return 1;
}

/* Bring the store up to date with the history table at `idx`: only entries
 * appended since the last call are read; a table that does not continue
 * the previous one starts over. */
static void hstore_read(lua_State *L, hstore *h, int idx, const char *fn) {
    idx = lua_absindex(L, idx);
    size_t len[3] = {0, 0, 0};
    int present[3] = {0, 0, 0};
    for (int l = 0; l < 3; l++) {
        int t = lua_getfield(L, idx, LISTS[l]);
        if (t == LUA_TTABLE) {
            len[l] = lua_rawlen(L, -1);
            present[l] = 1;
        } else if (t != LUA_TNIL) {
            luaL_error(L, "%s: history field '%s' must be a list of tables, got %s", fn, LISTS[l],
                       luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    if (!continues(L, h, idx, len)) hstore_clear(h);
    for (int l = 0; l < 3; l++) {
        if (!present[l]) continue;
        lua_getfield(L, idx, LISTS[l]);
        int list = lua_gettop(L);
        for (size_t i = h->seen[l] + 1; i <= len[l]; i++) {
            if (lua_rawgeti(L, list, (lua_Integer)i) != LUA_TTABLE)
                luaL_error(L, "%s: history.%s[%d] must be a table, got %s", fn, LISTS[l], (int)i,
                           luaL_typename(L, -1));
            read_entry(L, h, l, lua_gettop(L), (lua_Integer)i);
            lua_pop(L, 1);
            h->seen[l] = i;
        }
        lua_pop(L, 1);
    }
}

/* Where metric `m` lives: the first source with a non-empty series of that
 * field. "loss" falls back to the epochs' train_loss. */
static int find_metric(const hstore *h, const char *m, int *src, const char **field) {
    static const int order[] = {SRC_STEPS, SRC_VALID, SRC_EPOCHS, SRC_DIAG};
    for (int pass = 0; pass < 2; pass++) {
        const char *f = pass == 0 ? m : (!strcmp(m, "loss") ? "train_loss" : NULL);
        if (!f) break;
        for (int o = 0; o < 4; o++)
            for (size_t i = 0; i < h->ns; i++)
                if (h->s[i].src == order[o] && h->s[i].n > 0 && !strcmp(h->s[i].field, f)) {
                    *src = order[o];
                    *field = h->s[i].field;
                    return 1;
                }
    }
    return 0;
}

/* Comma-separated distinct field names with data, for error messages. */
static void list_metrics(lua_State *L, const hstore *h) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int first = 1;
    for (size_t i = 0; i < h->ns; i++) {
        int dup = 0;
        for (size_t j = 0; j < i; j++) dup |= !strcmp(h->s[j].field, h->s[i].field);
        if (dup) continue;
        if (!first) luaL_addstring(&b, ", ");
        luaL_addstring(&b, h->s[i].field);
        first = 0;
    }
    if (first) luaL_addstring(&b, "none");
    luaL_pushresult(&b);
}

/* Panel list: `metrics` (table at idx, or 0) replaces the defaults (loss, the
 * validation metric, weight); positional names in opts are added. Pushes
 * a Lua table of metric names. With strict, a named metric without data
 * is an error; otherwise it is skipped (live plots before the first epoch). */
static void history_panels(lua_State *L, const hstore *h, int opts, const char *fn, int strict) {
    lua_newtable(L);
    int out = lua_gettop(L), n = 0;
    lua_newtable(L);
    int req = lua_gettop(L), nreq = 0, ndefault = 0;
    int mt = lua_getfield(L, opts, "metrics");
    if (mt == LUA_TTABLE) {
        int m = lua_gettop(L);
        for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, m); i++) {
            if (lua_rawgeti(L, m, i) != LUA_TSTRING)
                luaL_error(L, "%s: field 'metrics' item %d must be a string, got %s", fn, (int)i,
                           luaL_typename(L, -1));
            lua_rawseti(L, req, ++nreq);
        }
    } else if (mt == LUA_TNIL) {
        const char *vm = NULL;
        for (size_t i = 0; i < h->ns && !vm; i++)
            if (h->s[i].src == SRC_VALID && !strcmp(h->s[i].field, "auc")) vm = "auc";
        for (size_t i = 0; i < h->ns && !vm; i++)
            if (h->s[i].src == SRC_VALID) vm = h->s[i].field;
        const char *defs[] = {"loss", vm, "weight"};
        for (int i = 0; i < 3; i++)
            if (defs[i]) {
                lua_pushstring(L, defs[i]);
                lua_rawseti(L, req, ++nreq);
            }
        ndefault = nreq;
    } else {
        luaL_error(L, "%s: field 'metrics' must be a list of metric names, got %s", fn,
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, opts); i++) {
        if (lua_rawgeti(L, opts, i) != LUA_TSTRING)
            luaL_error(L, "%s: option %d must be a metric name (string), got %s", fn, (int)i,
                       luaL_typename(L, -1));
        lua_rawseti(L, req, ++nreq);
    }
    int src;
    const char *field;
    for (int i = 1; i <= nreq; i++) {
        lua_rawgeti(L, req, i);
        const char *m = lua_tostring(L, -1);
        if (find_metric(h, m, &src, &field)) {
            int dup = 0;
            for (int j = 1; j <= n && !dup; j++) {
                lua_rawgeti(L, out, j);
                dup = !strcmp(lua_tostring(L, -1), m);
                lua_pop(L, 1);
            }
            if (!dup) {
                lua_pushvalue(L, -1);
                lua_rawseti(L, out, ++n);
            }
        } else if (strict && i > ndefault) {
            /* Defaults without data are skipped quietly; named ones are errors. */
            list_metrics(L, h);
            luaL_error(L, "%s: no data for metric '%s' in the history (available: %s)", fn, m,
                       lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }
    lua_settop(L, out);
}

/* Append the history figure (no terminal set-up) for panels in the table
 * at `panels` to b. Returns the number of panels drawn. */
static int history_script(lua_State *L, hstore *h, int panels, const char *title, size_t max_points,
                          tl_plot_buf *b) {
    int np = (int)lua_rawlen(L, panels);
    if (np == 0) return 0;
    preamble(b);
    int id = 0;
    for (size_t i = 0; i < h->ns; i++) {
        hseries *s = &h->s[i];
        if (s->n == 0) continue;
        tl_plot_buf_printf(b, "$s%zu << EOD\n", i);
        size_t bucket = (s->n + max_points - 1) / max_points;
        for (size_t j = 0; j < s->n; j += bucket) {
            double sx = 0, sy = 0;
            size_t k, cnt = 0;
            for (k = j; k < j + bucket && k < s->n; k++)
                if (isfinite(s->y[k])) {
                    sx += s->x[k];
                    sy += s->y[k];
                    cnt++;
                }
            if (!cnt) continue;
            tl_plot_buf_printf(b, "%.9g %.9g\n", sx / (double)cnt, sy / (double)cnt);
        }
        add_lit(b, "EOD\n");
        id++;
    }
    qsort(h->keys, h->nkeys, sizeof *h->keys, cmp_str);
    /* Panels against steps share one x range, so they line up. */
    double xmin = INFINITY, xmax = -INFINITY;
    for (size_t i = 0; i < h->ns; i++)
        if (h->x_is_step[h->s[i].src])
            for (size_t j = 0; j < h->s[i].n; j++) {
                if (h->s[i].x[j] < xmin) xmin = h->s[i].x[j];
                if (h->s[i].x[j] > xmax) xmax = h->s[i].x[j];
            }
    tl_plot_buf_printf(b, "set multiplot layout %d,1 title ", np);
    tl_plot_buf_quote(b, title);
    add_lit(b, "\nset lmargin 10\nset rmargin 3\nset key top right\n"
               "set offsets 0, 0, graph 0.05, graph 0.05\n");
    for (int p = 1; p <= np; p++) {
        lua_rawgeti(L, panels, p);
        const char *m = lua_tostring(L, -1);
        int src;
        const char *field;
        if (!find_metric(h, m, &src, &field)) {
            lua_pop(L, 1);
            continue;
        }
        static const char *const what[] = {"train", "valid", "per epoch", "diagnostics"};
        char t[200];
        snprintf(t, sizeof t, "%s (%s)", field, what[src]);
        add_lit(b, "set title ");
        tl_plot_buf_quote(b, t);
        if (h->x_is_step[src] && xmin < xmax) tl_plot_buf_printf(b, "\nset xrange [%.9g:%.9g]", xmin, xmax);
        else add_lit(b, "\nset autoscale x");
        tl_plot_buf_printf(b, "\nset xlabel '%s'\nset ylabel ", h->x_is_step[src] ? "step" : "epoch");
        tl_plot_buf_quote(b, m);
        add_lit(b, "\nplot ");
        int first = 1;
        /* Series in name order, coloured by name: stable from run to run
         * (table iteration order is not). */
        for (size_t k = 0; k < h->nkeys; k++)
        for (size_t i = 0; i < h->ns; i++) {
            hseries *s = &h->s[i];
            if (s->src != src || s->n == 0 || strcmp(s->field, field) != 0) continue;
            if (strcmp(s->key[0] ? s->key : s->field, h->keys[k]) != 0) continue;
            size_t color = k + 1;
            /* Long series: a marker every eighth of the line, so series
             * differ by shape (letters on the dumb terminal) too. */
            size_t shown = s->n < max_points ? s->n : max_points;
            int pts = src == SRC_VALID || src == SRC_EPOCHS || s->n < 30;
            tl_plot_buf_printf(b, "%s$s%zu using 1:2 with linespoints pt %d ps 0.6 pi %zu lc %zu title ",
                               first ? "" : ", \\\n  ", i, point_type((int)k),
                               pts ? (size_t)1 : (shown / 8 > 1 ? shown / 8 : 1), color);
            tl_plot_buf_quote(b, s->key[0] ? s->key : s->field);
            first = 0;
        }
        add_lit(b, "\n");
        lua_pop(L, 1);
    }
    add_lit(b, "unset multiplot\n");
    return np;
}

/* 1 when value idx can be indexed without raising: a table, or a userdata
 * whose metatable has __index (a model). */
static int indexable(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TTABLE) return 1;
    if (lua_type(L, idx) != LUA_TUSERDATA || luaL_getmetafield(L, idx, "__index") == LUA_TNIL)
        return 0;
    lua_pop(L, 1);
    return 1;
}

/* Push the history table for argument `arg`: a history table as is, or the
 * result of obj:history() for a model. */
static void push_history(lua_State *L, int arg, const char *fn) {
    int t = lua_type(L, arg);
    if (t == LUA_TTABLE) {
        lua_getfield(L, arg, "steps");
        lua_getfield(L, arg, "epochs");
        int plain = !lua_isnil(L, -1) || !lua_isnil(L, -2);
        lua_pop(L, 2);
        if (plain) {
            lua_pushvalue(L, arg);
            return;
        }
    }
    if (indexable(L, arg)) {
        if (lua_getfield(L, arg, "history") == LUA_TFUNCTION) {
            lua_pushvalue(L, arg);
            lua_call(L, 1, 1);
            if (lua_type(L, -1) == LUA_TTABLE) return;
            luaL_error(L, "%s: model:history() returned %s, expected a history table", fn,
                       luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    luaL_error(L,
               "%s: argument 1 must be a model or a history table {steps=..., epochs=...}, got %s",
               fn, t == LUA_TTABLE ? "a table without steps or epochs" : luaL_typename(L, arg));
}

static const char *const HIST_FIELDS[] = {"metrics", "file", "title", "format", "terminal",
                                          "width", "height", NULL};

/* tl.plot.history(h_or_model, opts) */
static int l_history(lua_State *L) {
    const char *fn = "tl.plot.history";
    int opts = opts_arg(L, 2, fn, HIST_FIELDS);
    out_spec o;
    get_out(L, opts, fn, &o, "Training history");
    push_history(L, 1, fn);
    int hidx = lua_gettop(L);
    hstore *h = hstore_new(L);
    hstore_read(L, h, hidx, fn);
    if (h->oom) return luaL_error(L, "%s: out of memory reading the history", fn);
    history_panels(L, h, opts, fn, 1);
    int panels = lua_gettop(L);
    tl_plot_buf *b = buf_new(L);
    int np = history_script(L, h, panels, o.title, MAX_POINTS, b);
    if (np == 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: the history has no data to plot yet", fn);
        return 2;
    }
    return finish(L, fn, &o, b, 800, 60 + 260 * np, 2 + 18 * np);
}

/* ---- compare ------------------------------------------------------------- */

static const char *const CMP_FIELDS[] = {"x", "y", "group", "file", "title", "format", "terminal",
                                         "width", "height", "xlabel", "ylabel", NULL};

/* Index of the value at the top in the distinct-values table `set` (value →
 * index) and list `list`; adds it when new. Pops the value. */
static int distinct_index(lua_State *L, int set, int list, int *n) {
    lua_pushvalue(L, -1);
    if (lua_rawget(L, set) == LUA_TNUMBER) {
        int i = (int)lua_tointeger(L, -1);
        lua_pop(L, 2);
        return i;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushinteger(L, ++*n);
    lua_rawset(L, set);
    lua_rawseti(L, list, *n);
    return *n;
}

/* Sorting for compare: x values by position, rows by (group, x rank, row). */
static const double *g_sort_xpos;
static int cmp_xpos(const void *a, const void *b) {
    double x = g_sort_xpos[*(const int *)a], y = g_sort_xpos[*(const int *)b];
    return x < y ? -1 : x > y ? 1 : (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

typedef struct {
    int g, x, i;
} cmp_row;

static int cmp_rows(const void *a, const void *b) {
    const cmp_row *p = a, *q = b;
    if (p->g != q->g) return p->g < q->g ? -1 : 1;
    if (p->x != q->x) return p->x < q->x ? -1 : 1;
    return (p->i > q->i) - (p->i < q->i);
}

/* tl.plot.compare(results, opts) */
static int l_compare(lua_State *L) {
    const char *fn = "tl.plot.compare";
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, "%s: argument 1 must be a list of result rows (tables), got %s", fn,
                          luaL_typename(L, 1));
    int opts = opts_arg(L, 2, fn, CMP_FIELDS);
    const char *xf = tl_lua_opt_string(L, opts, fn, "x", NULL);
    const char *yf = tl_lua_opt_string(L, opts, fn, "y", NULL);
    const char *gf = tl_lua_opt_string(L, opts, fn, "group", NULL);
    if (!xf) return luaL_error(L, "%s: field 'x' (the column to put on the x axis) is required", fn);
    if (!yf) return luaL_error(L, "%s: field 'y' (the metric to plot) is required", fn);
    char deftitle[200];
    snprintf(deftitle, sizeof deftitle, "%s by %s", yf, xf);
    out_spec o;
    get_out(L, opts, fn, &o, deftitle);
    const char *xlabel = tl_lua_opt_string(L, opts, fn, "xlabel", xf);
    const char *ylabel = tl_lua_opt_string(L, opts, fn, "ylabel", yf);

    int nrows = (int)lua_rawlen(L, 1);
    if (nrows == 0) return luaL_error(L, "%s: argument 1 has no rows", fn);
    lua_newtable(L);
    int xset = lua_gettop(L);
    lua_newtable(L);
    int xlist = lua_gettop(L);
    lua_newtable(L);
    int gset = lua_gettop(L);
    lua_newtable(L);
    int glist = lua_gettop(L);
    int nx = 0, ng = 0, numeric_x = 1;
    int *rx = lua_newuserdatauv(L, sizeof(int) * (size_t)nrows * 2, 0), *rg = rx + nrows;
    double *ry = lua_newuserdatauv(L, sizeof(double) * (size_t)nrows, 0);
    for (int i = 0; i < nrows; i++) {
        if (lua_rawgeti(L, 1, i + 1) != LUA_TTABLE)
            return luaL_error(L, "%s: row %d must be a table, got %s", fn, i + 1, luaL_typename(L, -1));
        int row = lua_gettop(L);
        int xt = lua_getfield(L, row, xf);
        if (xt != LUA_TNUMBER && xt != LUA_TSTRING && xt != LUA_TBOOLEAN)
            return luaL_error(L, "%s: row %d field '%s' (x) must be a number or string, got %s", fn,
                              i + 1, xf, luaL_typename(L, -1));
        if (xt != LUA_TNUMBER) numeric_x = 0;
        if (xt == LUA_TNUMBER && isnan((double)lua_tonumber(L, -1)))
            return luaL_error(L, "%s: row %d field '%s' (x) is nan; give every row a number or a string",
                              fn, i + 1, xf);
        rx[i] = distinct_index(L, xset, xlist, &nx);
        if (lua_getfield(L, row, yf) != LUA_TNUMBER)
            return luaL_error(L, "%s: row %d field '%s' (y) must be a number, got %s", fn, i + 1, yf,
                              luaL_typename(L, -1));
        ry[i] = (double)lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (gf) {
            int gt = lua_getfield(L, row, gf);
            if (gt != LUA_TNUMBER && gt != LUA_TSTRING && gt != LUA_TBOOLEAN)
                return luaL_error(L, "%s: row %d field '%s' (group) must be a number or string, got %s",
                                  fn, i + 1, gf, luaL_typename(L, -1));
            if (gt == LUA_TNUMBER && isnan((double)lua_tonumber(L, -1)))
                return luaL_error(L, "%s: row %d field '%s' (group) is nan", fn, i + 1, gf);
            rg[i] = distinct_index(L, gset, glist, &ng);
        } else {
            rg[i] = 1;
            ng = 1;
        }
        lua_pop(L, 1);
    }
    /* x positions: the numbers themselves, or 1..nx for categories. */
    double *xpos = lua_newuserdatauv(L, sizeof(double) * (size_t)nx, 0);
    int *xorder = lua_newuserdatauv(L, sizeof(int) * (size_t)nx, 0);
    int *xrank = lua_newuserdatauv(L, sizeof(int) * (size_t)nx, 0);
    for (int j = 0; j < nx; j++) {
        lua_rawgeti(L, xlist, j + 1);
        xpos[j] = numeric_x ? (double)lua_tonumber(L, -1) : j + 1;
        lua_pop(L, 1);
        xorder[j] = j;
    }
    g_sort_xpos = xpos;
    qsort(xorder, (size_t)nx, sizeof *xorder, cmp_xpos);
    for (int j = 0; j < nx; j++) xrank[xorder[j]] = j;

    /* One sort of the rows by (group, x rank); each run of equal keys is
     * one point: O(n log n), not a scan of every row per (group, x). */
    cmp_row *ord = lua_newuserdatauv(L, sizeof(cmp_row) * (size_t)nrows, 0);
    for (int i = 0; i < nrows; i++) {
        ord[i].g = rg[i];
        ord[i].x = xrank[rx[i] - 1];
        ord[i].i = i;
    }
    qsort(ord, (size_t)nrows, sizeof *ord, cmp_rows);

    tl_plot_buf *b = buf_new(L);
    preamble(b);
    int next = 0;
    for (int g = 1; g <= ng; g++) {
        tl_plot_buf_printf(b, "$g%d << EOD\n", g);
        while (next < nrows && ord[next].g == g) {
            int end = next;
            while (end < nrows && ord[end].g == g && ord[end].x == ord[next].x) end++;
            double sum = 0, sum2 = 0;
            int cnt = 0;
            for (int k = next; k < end; k++)
                if (isfinite(ry[ord[k].i])) {
                    sum += ry[ord[k].i];
                    cnt++;
                }
            if (cnt) {
                double mean = sum / cnt;
                for (int k = next; k < end; k++)
                    if (isfinite(ry[ord[k].i])) sum2 += (ry[ord[k].i] - mean) * (ry[ord[k].i] - mean);
                double sd = cnt > 1 ? sqrt(sum2 / (cnt - 1)) : 0.0;
                tl_plot_buf_printf(b, "%.9g %.9g %.9g %d\n", xpos[xorder[ord[next].x]], mean, sd, cnt);
            }
            next = end;
        }
        add_lit(b, "EOD\n");
    }
    add_lit(b, "set title ");
    tl_plot_buf_quote(b, o.title);
    add_lit(b, "\nset xlabel ");
    tl_plot_buf_quote(b, xlabel);
    add_lit(b, "\nset ylabel ");
    tl_plot_buf_quote(b, ylabel);
    add_lit(b, "\nset key outside right top\nset offsets graph 0.05, graph 0.05, graph 0.1, graph 0.1\n");
    if (!numeric_x) {
        add_lit(b, "set xtics (");
        for (int j = 0; j < nx; j++) {
            lua_rawgeti(L, xlist, j + 1);
            lua_pushvalue(L, -1);
            const char *s = luaL_tolstring(L, -1, NULL);
            if (j) add_lit(b, ", ");
            tl_plot_buf_quote(b, s);
            tl_plot_buf_printf(b, " %d", j + 1);
            lua_pop(L, 3);
        }
        tl_plot_buf_printf(b, ")\nset xrange [0.5:%g]\n", nx + 0.5);
    }
    add_lit(b, "plot ");
    for (int g = 1; g <= ng; g++) {
        char title[200];
        if (gf) {
            lua_rawgeti(L, glist, g);
            lua_pushvalue(L, -1);
            snprintf(title, sizeof title, "%s=%s", gf, luaL_tolstring(L, -1, NULL));
            lua_pop(L, 3);
        } else {
            snprintf(title, sizeof title, "%s", yf);
        }
        tl_plot_buf_printf(b, "%s$g%d using 1:2:3 with yerrorlines lc %d pt %d ps 0.7 title ",
                           g > 1 ? ", \\\n  " : "", g, g, point_type(g - 1));
        tl_plot_buf_quote(b, title);
    }
    add_lit(b, "\n");
    return finish(L, fn, &o, b, 800, 500, 26);
}

/* ---- gates --------------------------------------------------------------- */

static const char *const GATE_FIELDS[] = {"file", "title", "format", "terminal", "width", "height",
                                          NULL};

/* tl.plot.gates({tasks=, experts=, weights=}, opts) */
static int l_gates(lua_State *L) {
    const char *fn = "tl.plot.gates";
    if (indexable(L, 1)) {
        int no_weights = lua_getfield(L, 1, "weights") == LUA_TNIL;
        lua_pop(L, 1);
        if (no_weights && lua_getfield(L, 1, "gates") == LUA_TFUNCTION) { /* a model: m:gates() */
            lua_pushvalue(L, 1);
            lua_call(L, 1, 1);
            lua_replace(L, 1);
        } else if (no_weights) {
            lua_pop(L, 1);
        }
    }
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L,
                          "%s: argument 1 must be a gate table {tasks={...}, experts=n, weights={{...},...}}, got %s",
                          fn, luaL_typename(L, 1));
    int opts = opts_arg(L, 2, fn, GATE_FIELDS);
    out_spec o;
    get_out(L, opts, fn, &o, "Mean gate weights");
    if (lua_getfield(L, 1, "tasks") != LUA_TTABLE)
        return luaL_error(L, "%s: field 'tasks' must be a list of task names, got %s", fn,
                          luaL_typename(L, -1));
    int tasks = lua_gettop(L);
    int nt = (int)lua_rawlen(L, tasks);
    if (nt == 0) return luaL_error(L, "%s: field 'tasks' is empty", fn);
    lua_Integer ne = tl_lua_opt_int(L, 1, fn, "experts", 0, 1, 100000);
    if (lua_getfield(L, 1, "weights") != LUA_TTABLE)
        return luaL_error(L, "%s: field 'weights' must be a list of rows (one per task), got %s", fn,
                          luaL_typename(L, -1));
    int w = lua_gettop(L);
    if ((int)lua_rawlen(L, w) != nt)
        return luaL_error(L, "%s: field 'weights' has %d rows but there are %d tasks", fn,
                          (int)lua_rawlen(L, w), nt);
    tl_plot_buf *b = buf_new(L);
    preamble(b);
    add_lit(b, "$g << EOD\n");
    for (int t = 1; t <= nt; t++) {
        if (lua_rawgeti(L, w, t) != LUA_TTABLE)
            return luaL_error(L, "%s: weights[%d] must be a list of numbers, got %s", fn, t,
                              luaL_typename(L, -1));
        int row = lua_gettop(L);
        if (ne == 0) ne = (lua_Integer)lua_rawlen(L, row);
        if ((lua_Integer)lua_rawlen(L, row) != ne || ne == 0)
            return luaL_error(L, "%s: weights[%d] has %d values, expected %d (experts)", fn, t,
                              (int)lua_rawlen(L, row), (int)ne);
        for (lua_Integer e = 1; e <= ne; e++) {
            if (lua_rawgeti(L, row, e) != LUA_TNUMBER)
                return luaL_error(L, "%s: weights[%d][%d] must be a number, got %s", fn, t, (int)e,
                                  luaL_typename(L, -1));
            tl_plot_buf_num(b, (double)lua_tonumber(L, -1));
            tl_plot_buf_add(b, e < ne ? " " : "\n", 1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    add_lit(b, "EOD\nset title ");
    tl_plot_buf_quote(b, o.title);
    tl_plot_buf_printf(b, "\nunset grid\nset xlabel 'expert'\nset ylabel 'task'\n"
                          "set xrange [-0.5:%g]\nset yrange [%g:-0.5]\n"
                          "set palette defined (0 'white', 1 '#2166ac')\nset cbrange [0:*]\n"
                          "set xtics 1\nset ytics (",
                       (double)ne - 0.5, nt - 0.5);
    for (int t = 1; t <= nt; t++) {
        if (lua_rawgeti(L, tasks, t) != LUA_TSTRING)
            return luaL_error(L, "%s: tasks[%d] must be a string, got %s", fn, t,
                              luaL_typename(L, -1));
        if (t > 1) add_lit(b, ", ");
        tl_plot_buf_quote(b, lua_tostring(L, -1));
        tl_plot_buf_printf(b, " %d", t - 1);
        lua_pop(L, 1);
    }
    add_lit(b, ")\nset format x '%.0f'\nset xtics ('1' 0");
    for (lua_Integer e = 2; e <= ne; e++) tl_plot_buf_printf(b, ", '%lld' %lld", (long long)e, (long long)(e - 1));
    add_lit(b, ")\nplot $g matrix with image notitle, "
                       "$g matrix using 1:2:(sprintf('%.2f', $3)) with labels notitle\n");
    int gw = 260 + 80 * (int)ne, gh = 180 + 60 * nt;
    return finish(L, fn, &o, b, gw < 640 ? 640 : gw, gh < 360 ? 360 : gh, 8 + 3 * nt);
}

/* ---- terminal, gnuplot --------------------------------------------------- */

/* tl.plot.terminal([name]) -> name, resolved */
static int l_terminal(lua_State *L) {
    const char *fn = "tl.plot.terminal";
    if (!lua_isnoneornil(L, 1)) {
        if (lua_type(L, 1) != LUA_TSTRING)
            return luaL_error(L, "%s: argument 1 must be a terminal name (auto, dumb, svg, png, pdf, qt, wxt, x11), got %s",
                              fn, luaL_typename(L, 1));
        const char *name = lua_tostring(L, 1);
        int i;
        for (i = 0; TERMINALS[i] && strcmp(TERMINALS[i], name) != 0; i++) {
        }
        if (!TERMINALS[i])
            return luaL_error(L, "%s: unknown terminal '%s' (expected auto, dumb, svg, png, pdf, qt, wxt or x11)",
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
static int l_gnuplot(lua_State *L) {
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

/* ---- svg ----------------------------------------------------------------- */

static const struct {
    const char *name;
    lua_CFunction f;
} KINDS[] = {{"calibration", l_calibration}, {"history", l_history}, {"compare", l_compare},
             {"gates", l_gates}, {NULL, NULL}};

/* tl.plot.svg(kind, data, opts) -> svg text */
static int l_svg(lua_State *L) {
    const char *kind = luaL_checkstring(L, 1);
    int k;
    for (k = 0; KINDS[k].name && strcmp(KINDS[k].name, kind) != 0; k++) {
    }
    if (!KINDS[k].name)
        return luaL_error(L, "tl.plot.svg: argument 1 must be calibration, history, compare or gates, got '%s'",
                          kind);
    lua_settop(L, 3);
    lua_newtable(L); /* shallow copy of opts with format = "svg_string" */
    if (lua_type(L, 3) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, 4);
        }
    } else if (!lua_isnil(L, 3)) {
        return luaL_error(L, "tl.plot.svg: argument 3 must be an options table, got %s",
                          luaL_typename(L, 3));
    }
    lua_pushliteral(L, "svg_string");
    lua_setfield(L, 4, "format");
    lua_pushnil(L);
    lua_setfield(L, 4, "file");
    lua_pushcfunction(L, KINDS[k].f);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 4);
    lua_call(L, 2, 2);
    return 2;
}

/* ---- live ---------------------------------------------------------------- */

typedef struct {
    tl_plot *p;
    hstore *h;   /* owned by the Lua userdata in the uservalue slot 1 */
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

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static tl_live *check_live(lua_State *L, int idx) { return luaL_checkudata(L, idx, LIVE_MT); }

static void live_close(tl_live *lp, int print) {
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

static int live_gc(lua_State *L) {
    live_close(check_live(L, 1), 0);
    return 0;
}

static const char *const LIVE_FIELDS[] = {"interval", "metrics", "file", "title", "terminal",
                                          "width", "height", NULL};

/* tl.plot.live(opts) -> live plot | nil, message */
static int l_live(lua_State *L) {
    const char *fn = "tl.plot.live";
    int opts = opts_arg(L, 1, fn, LIVE_FIELDS);
    double interval = tl_lua_opt_number(L, opts, fn, "interval", 0.5, 0.0, 86400.0);
    const char *file = tl_lua_opt_string(L, opts, fn, "file", NULL);
    int term = tl_lua_opt_enum(L, opts, fn, "terminal", TERMINALS, -1);
    int w = (int)tl_lua_opt_int(L, opts, fn, "width", 0, 0, 100000);
    int hgt = (int)tl_lua_opt_int(L, opts, fn, "height", 0, 0, 100000);
    const char *title = tl_lua_opt_string(L, opts, fn, "title", "Training");
    const char *t;
    if (file) {
        t = ext_terminal(file);
        if (!t) return luaL_error(L, "%s: field 'file' must end in .svg, .png or .pdf, got '%s'", fn, file);
    } else {
        t = resolve_auto(term >= 0 ? TERMINALS[term] : g_default_term);
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
    lp->h = hstore_new(L);
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

    char err[1024];
    tl_plot_buf *setup = buf_new(L);
    int dumb = !strcmp(t, "dumb");
    int rc = tl_plot_terminal_cmd(setup, t, w, hgt ? hgt : (dumb ? 56 : 840), NULL,
                                  dumb && tl_lua_stdout_is_tty(), err, sizeof err);
    if (rc != TL_PLOT_OK && tl_plot_gnuplot(err, sizeof err) == NULL) rc = TL_PLOT_ENOTFOUND;
    if (rc != TL_PLOT_OK) {
        lp->closed = 1;
        return push_failure(L, fn, rc, err);
    }
    lp->p = tl_plot_open(tl_plot_is_window(t) ? TL_PLOT_WINDOW : 0, &rc, err, sizeof err);
    if (!lp->p) {
        lp->closed = 1;
        return push_failure(L, fn, rc, err);
    }
    lp->setup = strdup(setup->data);
    if (!lp->setup) return luaL_error(L, "%s: out of memory", fn);
    lua_pushvalue(L, ud);
    return 1;
}

#define LIVE_MARKER "__towerlab_live_frame_end__"

/* Wait for the text frame just sent and print it. At a terminal the line is
 * cleared first: fit's progress bar may be on it ("\r" without "\n"). */
static void print_text_frame(tl_live *lp) {
    tl_plot_buf out = {0};
    int rc = tl_plot_wait_output(lp->p, LIVE_MARKER, RUN_TIMEOUT, &out);
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
static int live_update(lua_State *L) {
    tl_live *lp = check_live(L, 1);
    lp->calls++;
    if (lp->closed) {
        lua_pushboolean(L, 0);
        return 1;
    }
    double now = mono_now();
    if (now - lp->last < lp->interval && !lua_toboolean(L, 3)) {
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
    push_history(L, 2, fn);
    int hidx = lua_gettop(L);
    hstore_read(L, lp->h, hidx, fn); /* new entries only: never wasted */
    if (tl_plot_ready(lp->p) != 1) { /* still drawing: skip building this frame */
        lp->skipped++;
        lp->seconds += mono_now() - now;
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_getiuservalue(L, 1, 2);
    history_panels(L, lp->h, lua_gettop(L), fn, 0);
    int panels = lua_gettop(L);
    tl_plot_buf_reset(&lp->frame);
    tl_plot_buf *b = &lp->frame;
    if (lp->setup) tl_plot_buf_add(b, lp->setup, strlen(lp->setup));
    add_lit(b, "reset\n");
    if (lp->file) {
        add_lit(b, "set output ");
        tl_plot_buf_quote(b, lp->file);
        add_lit(b, "\n");
    }
    /* A screen has a few hundred pixels (or 80 columns) per panel. */
    int np = history_script(L, lp->h, panels, lp->title,
                            strcmp(lp->term, "dumb") ? LIVE_POINTS : 200, b);
    if (lp->file) add_lit(b, "unset output\n");
    /* Text frames are printed as soon as gnuplot has drawn them, not at the
     * next update (a stale frame), and start on a line of their own. */
    int text = !lp->file && !strcmp(lp->term, "dumb");
    if (text) add_lit(b, "set print '-'\nprint '" LIVE_MARKER "'\nunset print\n");
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
    }
    else if (r == TL_PLOT_BUSY) lp->skipped++;
    lua_pushboolean(L, r == TL_PLOT_SENT);
    return 1;
}

/* live:close() — waits briefly for the last frame (dumb output is printed). */
static int live_close_m(lua_State *L) {
    tl_live *lp = check_live(L, 1);
    live_close(lp, 1);
    return 0;
}

/* live:stats() -> {frames=, skipped=, calls=, closed=, terminal=, points=,
 * seconds=} (points: values read from the history so far; seconds: time
 * spent in update() past the throttle). */
static int live_stats(lua_State *L) {
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
    lua_Integer pts = 0;
    for (size_t i = 0; i < lp->h->ns; i++) pts += (lua_Integer)lp->h->s[i].n;
    lua_pushinteger(L, pts);
    lua_setfield(L, -2, "points");
    return 1;
}

static int live_index(lua_State *L) {
    tl_live *lp = check_live(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "frames")) lua_pushinteger(L, lp->frames);
    else if (!strcmp(k, "skipped")) lua_pushinteger(L, lp->skipped);
    else if (!strcmp(k, "calls")) lua_pushinteger(L, lp->calls);
    else if (!strcmp(k, "closed")) lua_pushboolean(L, lp->closed);
    else if (!strcmp(k, "terminal")) lua_pushstring(L, lp->term);
    else if (!strcmp(k, "interval")) lua_pushnumber(L, lp->interval);
    else if (!strcmp(k, "update")) lua_pushcfunction(L, live_update);
    else if (!strcmp(k, "close")) lua_pushcfunction(L, live_close_m);
    else if (!strcmp(k, "stats")) lua_pushcfunction(L, live_stats);
    else lua_pushnil(L);
    return 1;
}

static int live_tostring(lua_State *L) {
    tl_live *lp = check_live(L, 1);
    lua_pushfstring(L, "live plot (%s, every %f s, %d frames%s)", lp->term, (lua_Number)lp->interval,
                    (int)lp->frames, lp->closed ? ", closed" : "");
    return 1;
}

/* ---- registration -------------------------------------------------------- */

static const struct {
    const char *name;
    lua_CFunction f;
    const char *doc;
} FUNCS[] = {
    {"calibration", l_calibration,
     "tl.plot.calibration(r [, opts]) -> file | text, or nil, message\n"
     "(nothing when the figure is printed or shown in a window)\n"
     "Reliability diagram of an evaluation result r (r[task].bins from m:evaluate):\n"
     "one curve per task (mean prediction vs observed rate, empty bins skipped) with\n"
     "ci_lo/ci_hi error bars, the diagonal, and a histogram of bin counts below.\n"
     "r = {before=r1, after=r2} draws both (dashed before, solid after).\n"
     "opts: tasks={...}, title=, file=\"x.svg|png|pdf\", format=\"svg_string\"|\"text\"|\"script\",\n"
     "terminal=, width=, height=."},
    {"history", l_history,
     "tl.plot.history(model_or_history [, opts]) -> file | text, or nil, message\n"
     "(nothing when the figure is printed or shown in a window)\n"
     "One panel per metric against step/epoch: per-task training loss, validation\n"
     "metric (auc) and loss weight by default. opts.metrics={...} chooses panels;\n"
     "names listed in opts ({\"grad_norm\",\"grad_cos\"}) add panels (from h.diagnostics).\n"
     "Also: title=, file=, format=, terminal=, width=, height=."},
    {"compare", l_compare,
     "tl.plot.compare(rows, {x=, y= [, group=]} ) -> file | text, or nil, message\n"
     "(nothing when the figure is printed or shown in a window)\n"
     "Sweep results: mean of y per value of x, one line per group value, error bars =\n"
     "std over rows sharing x and group; groups differ by colour and point type. Rows\n"
     "with a nan x or group are an error. Also: title=, xlabel=, ylabel=, file=, format=."},
    {"gates", l_gates,
     "tl.plot.gates({tasks={...}, experts=n, weights={{...},...}} [, opts])\n"
     "Heat map of mean gate weights: rows = tasks, columns = experts. A model with a\n"
     ":gates() method is accepted too. opts: title=, file=, format=, terminal=."},
    {"live", l_live,
     "tl.plot.live([opts]) -> live plot | nil, message\n"
     "lp:update(h_or_model [, force]) redraws the history plot at most every\n"
     "opts.interval seconds (default 0.5); other calls return false at once. Frames are\n"
     "sent without waiting for gnuplot (skipped while it is busy); text (dumb) frames\n"
     "are printed as soon as drawn, each from the start of a line. lp.frames,\n"
     "lp.skipped, lp.calls count them; lp:close() ends it. opts: interval=, metrics=,\n"
     "title=, file=, terminal=, width=, height=."},
    {"terminal", l_terminal,
     "tl.plot.terminal([name]) -> name, resolved\n"
     "Get or set the default terminal: auto (window when a display is present, else\n"
     "dumb text), dumb, svg, png, pdf, qt, wxt, x11. file= always picks by extension."},
    {"svg", l_svg,
     "tl.plot.svg(kind, data [, opts]) -> svg text\n"
     "Render calibration/history/compare/gates to an SVG string (notebooks)."},
    {"gnuplot", l_gnuplot,
     "tl.plot.gnuplot([path]) -> path | nil, message\n"
     "The gnuplot executable in use ($TL_GNUPLOT or gnuplot in $PATH); a path sets it,\n"
     "nil restores the default."},
    {NULL, NULL, NULL}};


void tl_lua_open_plot(lua_State *L, int tl) {
    tl = lua_absindex(L, tl);
    luaL_newmetatable(L, BUF_MT);
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, HIST_MT);
    lua_pushcfunction(L, hist_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, LIVE_MT);
    lua_pushcfunction(L, live_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, live_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, live_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, live_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_newtable(L);
    int t = lua_gettop(L);
    for (int i = 0; FUNCS[i].name; i++) {
        char name[64];
        snprintf(name, sizeof name, "tl.plot.%s", FUNCS[i].name);
        lua_pushcfunction(L, FUNCS[i].f);
        tl_lua_doc(L, name, -1, FUNCS[i].doc);
        lua_setfield(L, t, FUNCS[i].name);
    }
    tl_lua_doc(L, "tl.plot", t,
               "tl.plot: gnuplot figures — calibration, history, compare, gates, live,\n"
               "terminal, svg, gnuplot. Each takes file=\"x.svg|png|pdf\" to write a file\n"
               "and returns nil, message (training goes on) when gnuplot is missing.");
    tl_lua_doc(L, "plot.live:update", 0,
               "lp:update(h_or_model [, force]) -> boolean: redraw the history plot when\n"
               "`interval` seconds have passed since the last frame (force: now); otherwise\n"
               "return false at once. Never waits for gnuplot: a busy gnuplot skips the frame.");
    tl_lua_doc(L, "plot.live:close", 0,
               "lp:close(): finish the live plot (dumb output is printed, a window stays open).");
    tl_lua_doc(L, "plot.live:stats", 0,
               "lp:stats() -> {frames=, skipped=, calls=, closed=, terminal=, points=,\n"
               "seconds= (time spent drawing, past the throttle)}");
    lua_setfield(L, tl, "plot");
}
