/* l_plot.c — tl.plot: the calibration, compare and gates figures, tl.plot.svg
 * and the tl.plot table itself. The history figure and its store are
 * l_plot_hist.c, live plots l_plot_live.c, output options and running
 * gnuplot l_plot_out.c.
 *
 * Each figure is a gnuplot script built from plain Lua tables (data goes
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

#include "l_plot.h"

#include "l_plot_hist.h"
#include "l_plot_live.h"
#include "l_plot_out.h"
#include "l_util.h"
#include "plot.h"

/* ---- reading Lua values ------------------------------------------------- */

/* t[key] as a number when it is one; NAN when absent. Raises for other types. */
static double field_num(lua_State *L, int t, const char *key, const char *fn, const char *where)
{
    int ty = lua_getfield(L, t, key);
    double v = NAN;
    if (ty == LUA_TNUMBER)
        v = (double)lua_tonumber(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "%s: %s.%s must be a number, got %s", fn, where, key, luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* The "perfect calibration" diagonal: linetype -1 is the terminal's
 * foreground (ANSI default colour on dumb: visible on dark and light
 * terminals; a gray was drawn in ANSI black). */
#define PERFECT_LINE "plot x with lines lt -1 dt 3 title 'perfect'"

/* ---- calibration --------------------------------------------------------- */

static const char *const CAL_FIELDS[] = {"tasks",    "file",  "title",  "format",
                                         "terminal", "width", "height", NULL};

/* 1 when the value at idx looks like one task's result: a table with bins. */
static int has_bins(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    int t = lua_getfield(L, idx, "bins");
    lua_pop(L, 1);
    return t == LUA_TTABLE;
}

/* Sort strings on the Lua stack? Simpler: collect names into a table and sort
 * with table.sort semantics (byte order). */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Write the curve ($c<id>: mean_pred rate ci_lo ci_hi, non-empty bins) and
 * histogram ($h<id>: centre count width) of one task. Returns whether any
 * bin has a confidence interval; *npts gets the curve's point count. */
static int write_bins(lua_State *L, tl_plot_buf *b, int res, const char *task, const char *id,
                      const char *fn, int *npts, double *xmin, double *xmax)
{
    char where[160];
    lua_getfield(L, res, "bins");
    int bins = lua_gettop(L);
    lua_Integer nb = (lua_Integer)lua_rawlen(L, bins);
    int any_ci = 0;
    *npts = 0;
    tl_plot_buf_printf(b, "$c%s << EOD\n", id);
    tl_plot_buf *hist = tl_lua_plot_buf_new(L);
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
        double cl = field_num(L, bin, "ci_lo", fn, where),
               ch = field_num(L, bin, "ci_hi", fn, where);
        lua_pop(L, 1);
        if (isfinite(lo) && lo < *xmin) *xmin = lo;
        if (isfinite(hi) && hi > *xmax) *xmax = hi;
        if (isfinite(lo) && isfinite(hi)) {
            tl_plot_buf_num(hist, (lo + hi) / 2);
            tl_plot_buf_add_lit(hist, " ");
            tl_plot_buf_num(hist, isfinite(count) ? count : 0);
            tl_plot_buf_add_lit(hist, " ");
            tl_plot_buf_num(hist, hi - lo);
            tl_plot_buf_add_lit(hist, "\n");
        }
        /* Empty bins have no observed rate: leave them out of the curve. */
        if (!(count > 0) || !isfinite(mp) || !isfinite(rate)) continue;
        if (isfinite(cl) && isfinite(ch)) any_ci = 1;
        tl_plot_buf_printf(b, "%.9g %.9g ", mp, rate);
        tl_plot_buf_num(b, isfinite(cl) ? cl : rate);
        tl_plot_buf_add_lit(b, " ");
        tl_plot_buf_num(b, isfinite(ch) ? ch : rate);
        tl_plot_buf_add_lit(b, "\n");
        (*npts)++;
    }
    tl_plot_buf_add_lit(b, "EOD\n");
    tl_plot_buf_add_lit(hist, "EOD\n");
    tl_plot_buf_add(b, hist->data, hist->len);
    lua_pop(L, 2); /* hist, bins */
    return any_ci;
}

/* Collect task names of result table `res` (those with bins) into a sorted
 * array of strings anchored in a new Lua table left on the stack. */
static const char **result_tasks(lua_State *L, int res, int *n)
{
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

/* The task names of opts.tasks (the table at the top), each checked to have
 * bins in every result res[0..nres): a userdata array of ntasks strings left
 * on the stack (the strings stay referenced by opts.tasks). */
static const char **option_tasks(lua_State *L, const int *res, int nres, const char *fn,
                                 int *ntasks_out)
{
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "%s: field 'tasks' must be a list of task names, got %s", fn,
                   luaL_typename(L, -1));
    int tt = lua_gettop(L);
    int ntasks = (int)lua_rawlen(L, tt);
    const char **tasks = lua_newuserdatauv(L, sizeof(char *) * (size_t)(ntasks + 1), 0);
    for (int i = 0; i < ntasks; i++) {
        if (lua_rawgeti(L, tt, i + 1) != LUA_TSTRING)
            luaL_error(L, "%s: field 'tasks' must be a list of task names, item %d is %s", fn,
                       i + 1, luaL_typename(L, -1));
        tasks[i] = lua_tostring(L, -1);
        lua_pop(L, 1); /* still referenced by opts.tasks */
        for (int r = 0; r < nres; r++) {
            lua_getfield(L, res[r], tasks[i]);
            int ok = has_bins(L, -1);
            lua_pop(L, 1);
            if (!ok)
                luaL_error(L, "%s: task '%s' (field 'tasks') has no result with bins%s", fn,
                           tasks[i], nres == 2 ? (r ? " in 'after'" : " in 'before'") : "");
        }
    }
    *ntasks_out = ntasks;
    return tasks;
}

/* tl.plot.calibration(r, opts) */
static int l_calibration(lua_State *L)
{
    const char *fn = "tl.plot.calibration";
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(
            L, "%s: argument 1 must be an evaluation result table (task -> {bins=...}), got %s", fn,
            luaL_typename(L, 1));
    int opts = tl_lua_plot_opts(L, 2, fn, CAL_FIELDS);
    tl_lua_plot_out o;
    tl_lua_plot_get_out(L, opts, fn, &o, "Calibration");

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
        tasks = option_tasks(L, res, nres, fn, &ntasks);
    } else {
        tasks = result_tasks(L, main_res, &ntasks);
        if (ntasks == 0)
            return luaL_error(
                L,
                "%s: argument 1 must be an evaluation result table (task -> {bins=...}), "
                "got a table where no task has bins",
                fn);
    }

    tl_plot_buf *b = tl_lua_plot_buf_new(L);
    tl_lua_plot_preamble(b);
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

    tl_plot_buf_add_lit(b, "set multiplot title ");
    tl_plot_buf_quote(b, o.title);
    tl_plot_buf_printf(b,
                       "\nset lmargin 10\nset rmargin 3\n"
                       "set size 1,0.66\nset origin 0,0.30\n"
                       "set xrange [%.9g:%.9g]\nset yrange [0:1]\n"
                       "set ylabel 'observed rate'\nset format x ''\nset key top left\n",
                       xmin, xmax);
    tl_plot_buf_add_lit(b, PERFECT_LINE);
    for (int r = 0; r < nres; r++)
        for (int i = 0; i < ntasks; i++) {
            if (npts[r][i] == 0) continue;
            char title[256];
            lua_getfield(L, res[r], tasks[i]);
            double ece = field_num(L, lua_gettop(L), "ece", fn, tasks[i]);
            lua_pop(L, 1);
            const char *tag = nres == 2 ? (r ? " after" : " before") : "";
            if (isfinite(ece))
                snprintf(title, sizeof title, "%s%s (ECE %.4f)", tasks[i], tag, ece);
            else
                snprintf(title, sizeof title, "%s%s", tasks[i], tag);
            tl_plot_buf_printf(
                b, ", \\\n  $c%d_%d using 1:2%s with %s lc %d pt %d ps 0.6 dt %d title ", r, i + 1,
                any_ci[r][i] ? ":3:4" : "", any_ci[r][i] ? "yerrorlines" : "linespoints", i + 1,
                tl_lua_plot_point_type(i), nres == 2 && r == 0 ? 2 : 1);
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
    tl_plot_buf_add_lit(b, "\nunset multiplot\n");
    return tl_lua_plot_finish(L, fn, &o, b, 800, 700, 40);
}

/* ---- compare ------------------------------------------------------------- */

static const char *const CMP_FIELDS[] = {"x",      "y",      "group",    "file",
                                         "title",  "format", "terminal", "width",
                                         "height", "xlabel", "ylabel",   NULL};

/* Index of the value at the top in the distinct-values table `set` (value →
 * index) and list `list`; adds it when new. Pops the value. */
static int distinct_index(lua_State *L, int set, int list, int *n)
{
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
static int cmp_xpos(const void *a, const void *b)
{
    double x = g_sort_xpos[*(const int *)a], y = g_sort_xpos[*(const int *)b];
    return x < y   ? -1
           : x > y ? 1
                   : (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

typedef struct {
    int g, x, i;
} cmp_row;

static int cmp_rows(const void *a, const void *b)
{
    const cmp_row *p = a, *q = b;
    if (p->g != q->g) return p->g < q->g ? -1 : 1;
    if (p->x != q->x) return p->x < q->x ? -1 : 1;
    return (p->i > q->i) - (p->i < q->i);
}

/* The data blocks $g1..$g<ng>: one point per (group, x) run of the sorted
 * rows `ord`: x, the mean and the standard deviation of the finite y, count. */
static void write_groups(tl_plot_buf *b, const cmp_row *ord, int nrows, int ng, const double *ry,
                         const double *xpos, const int *xorder)
{
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
                    if (isfinite(ry[ord[k].i]))
                        sum2 += (ry[ord[k].i] - mean) * (ry[ord[k].i] - mean);
                double sd = cnt > 1 ? sqrt(sum2 / (cnt - 1)) : 0.0;
                tl_plot_buf_printf(b, "%.9g %.9g %.9g %d\n", xpos[xorder[ord[next].x]], mean, sd,
                                   cnt);
            }
            next = end;
        }
        tl_plot_buf_add_lit(b, "EOD\n");
    }
}

/* Category names as x tics (the x values are not numbers). */
static void write_xtics(lua_State *L, tl_plot_buf *b, int xlist, int nx)
{
    tl_plot_buf_add_lit(b, "set xtics (");
    for (int j = 0; j < nx; j++) {
        lua_rawgeti(L, xlist, j + 1);
        lua_pushvalue(L, -1);
        const char *s = luaL_tolstring(L, -1, NULL);
        if (j) tl_plot_buf_add_lit(b, ", ");
        tl_plot_buf_quote(b, s);
        tl_plot_buf_printf(b, " %d", j + 1);
        lua_pop(L, 3);
    }
    tl_plot_buf_printf(b, ")\nset xrange [0.5:%g]\n", nx + 0.5);
}

/* The plot command: one line with error bars per group. */
static void write_group_lines(lua_State *L, tl_plot_buf *b, int ng, const char *gf, int glist,
                              const char *yf)
{
    tl_plot_buf_add_lit(b, "plot ");
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
                           g > 1 ? ", \\\n  " : "", g, g, tl_lua_plot_point_type(g - 1));
        tl_plot_buf_quote(b, title);
    }
}

/* tl.plot.compare(results, opts) */
static int l_compare(lua_State *L)
{
    const char *fn = "tl.plot.compare";
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, "%s: argument 1 must be a list of result rows (tables), got %s", fn,
                          luaL_typename(L, 1));
    int opts = tl_lua_plot_opts(L, 2, fn, CMP_FIELDS);
    const char *xf = tl_lua_opt_string(L, opts, fn, "x", NULL);
    const char *yf = tl_lua_opt_string(L, opts, fn, "y", NULL);
    const char *gf = tl_lua_opt_string(L, opts, fn, "group", NULL);
    if (!xf)
        return luaL_error(L, "%s: field 'x' (the column to put on the x axis) is required", fn);
    if (!yf) return luaL_error(L, "%s: field 'y' (the metric to plot) is required", fn);
    char deftitle[200];
    snprintf(deftitle, sizeof deftitle, "%s by %s", yf, xf);
    tl_lua_plot_out o;
    tl_lua_plot_get_out(L, opts, fn, &o, deftitle);
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
            return luaL_error(L, "%s: row %d must be a table, got %s", fn, i + 1,
                              luaL_typename(L, -1));
        int row = lua_gettop(L);
        int xt = lua_getfield(L, row, xf);
        if (xt != LUA_TNUMBER && xt != LUA_TSTRING && xt != LUA_TBOOLEAN)
            return luaL_error(L, "%s: row %d field '%s' (x) must be a number or string, got %s", fn,
                              i + 1, xf, luaL_typename(L, -1));
        if (xt != LUA_TNUMBER) numeric_x = 0;
        if (xt == LUA_TNUMBER && isnan((double)lua_tonumber(L, -1)))
            return luaL_error(
                L, "%s: row %d field '%s' (x) is nan; give every row a number or a string", fn,
                i + 1, xf);
        rx[i] = distinct_index(L, xset, xlist, &nx);
        if (lua_getfield(L, row, yf) != LUA_TNUMBER)
            return luaL_error(L, "%s: row %d field '%s' (y) must be a number, got %s", fn, i + 1,
                              yf, luaL_typename(L, -1));
        ry[i] = (double)lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (gf) {
            int gt = lua_getfield(L, row, gf);
            if (gt != LUA_TNUMBER && gt != LUA_TSTRING && gt != LUA_TBOOLEAN)
                return luaL_error(
                    L, "%s: row %d field '%s' (group) must be a number or string, got %s", fn,
                    i + 1, gf, luaL_typename(L, -1));
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

    tl_plot_buf *b = tl_lua_plot_buf_new(L);
    tl_lua_plot_preamble(b);
    write_groups(b, ord, nrows, ng, ry, xpos, xorder);
    tl_plot_buf_add_lit(b, "set title ");
    tl_plot_buf_quote(b, o.title);
    tl_plot_buf_add_lit(b, "\nset xlabel ");
    tl_plot_buf_quote(b, xlabel);
    tl_plot_buf_add_lit(b, "\nset ylabel ");
    tl_plot_buf_quote(b, ylabel);
    tl_plot_buf_add_lit(
        b,
        "\nset key outside right top\nset offsets graph 0.05, graph 0.05, graph 0.1, graph 0.1\n");
    if (!numeric_x) write_xtics(L, b, xlist, nx);
    write_group_lines(L, b, ng, gf, glist, yf);
    tl_plot_buf_add_lit(b, "\n");
    return tl_lua_plot_finish(L, fn, &o, b, 800, 500, 26);
}

/* ---- gates --------------------------------------------------------------- */

static const char *const GATE_FIELDS[] = {"file",  "title",  "format", "terminal",
                                          "width", "height", NULL};

/* tl.plot.gates({tasks=, experts=, weights=}, opts) */
static int l_gates(lua_State *L)
{
    const char *fn = "tl.plot.gates";
    if (tl_lua_plot_indexable(L, 1)) {
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
                          "%s: argument 1 must be a gate table {tasks={...}, experts=n, "
                          "weights={{...},...}}, got %s",
                          fn, luaL_typename(L, 1));
    int opts = tl_lua_plot_opts(L, 2, fn, GATE_FIELDS);
    tl_lua_plot_out o;
    tl_lua_plot_get_out(L, opts, fn, &o, "Mean gate weights");
    if (lua_getfield(L, 1, "tasks") != LUA_TTABLE)
        return luaL_error(L, "%s: field 'tasks' must be a list of task names, got %s", fn,
                          luaL_typename(L, -1));
    int tasks = lua_gettop(L);
    int nt = (int)lua_rawlen(L, tasks);
    if (nt == 0) return luaL_error(L, "%s: field 'tasks' is empty", fn);
    lua_Integer ne = tl_lua_opt_int(L, 1, fn, "experts", 0, 1, 100000);
    if (lua_getfield(L, 1, "weights") != LUA_TTABLE)
        return luaL_error(L, "%s: field 'weights' must be a list of rows (one per task), got %s",
                          fn, luaL_typename(L, -1));
    int w = lua_gettop(L);
    if ((int)lua_rawlen(L, w) != nt)
        return luaL_error(L, "%s: field 'weights' has %d rows but there are %d tasks", fn,
                          (int)lua_rawlen(L, w), nt);
    tl_plot_buf *b = tl_lua_plot_buf_new(L);
    tl_lua_plot_preamble(b);
    tl_plot_buf_add_lit(b, "$g << EOD\n");
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
    tl_plot_buf_add_lit(b, "EOD\nset title ");
    tl_plot_buf_quote(b, o.title);
    tl_plot_buf_printf(b,
                       "\nunset grid\nset xlabel 'expert'\nset ylabel 'task'\n"
                       "set xrange [-0.5:%g]\nset yrange [%g:-0.5]\n"
                       "set palette defined (0 'white', 1 '#2166ac')\nset cbrange [0:*]\n"
                       "set xtics 1\nset ytics (",
                       (double)ne - 0.5, nt - 0.5);
    for (int t = 1; t <= nt; t++) {
        if (lua_rawgeti(L, tasks, t) != LUA_TSTRING)
            return luaL_error(L, "%s: tasks[%d] must be a string, got %s", fn, t,
                              luaL_typename(L, -1));
        if (t > 1) tl_plot_buf_add_lit(b, ", ");
        tl_plot_buf_quote(b, lua_tostring(L, -1));
        tl_plot_buf_printf(b, " %d", t - 1);
        lua_pop(L, 1);
    }
    tl_plot_buf_add_lit(b, ")\nset format x '%.0f'\nset xtics ('1' 0");
    for (lua_Integer e = 2; e <= ne; e++)
        tl_plot_buf_printf(b, ", '%lld' %lld", (long long)e, (long long)(e - 1));
    tl_plot_buf_add_lit(b, ")\nplot $g matrix with image notitle, "
                           "$g matrix using 1:2:(sprintf('%.2f', $3)) with labels notitle\n");
    int gw = 260 + 80 * (int)ne, gh = 180 + 60 * nt;
    return tl_lua_plot_finish(L, fn, &o, b, gw < 640 ? 640 : gw, gh < 360 ? 360 : gh, 8 + 3 * nt);
}

/* ---- svg ----------------------------------------------------------------- */

static const struct {
    const char *name;
    lua_CFunction f;
} KINDS[] = {{"calibration", l_calibration},
             {"history", tl_lua_plot_history},
             {"compare", l_compare},
             {"gates", l_gates},
             {NULL, NULL}};

/* tl.plot.svg(kind, data, opts) -> svg text */
static int l_svg(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    int k;
    for (k = 0; KINDS[k].name && strcmp(KINDS[k].name, kind) != 0; k++) {}
    if (!KINDS[k].name)
        return luaL_error(
            L, "tl.plot.svg: argument 1 must be calibration, history, compare or gates, got '%s'",
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
     "opts: tasks={...}, title=, file=\"x.svg|png|pdf\", "
     "format=\"svg_string\"|\"text\"|\"script\",\n"
     "terminal=, width=, height=."},
    {"history", tl_lua_plot_history,
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
    {"live", tl_lua_plot_live,
     "tl.plot.live([opts]) -> live plot | nil, message\n"
     "lp:update(h_or_model [, force]) redraws the history plot at most every\n"
     "opts.interval seconds (default 0.5); other calls return false at once. Frames are\n"
     "sent without waiting for gnuplot (skipped while it is busy); text (dumb) frames\n"
     "are printed as soon as drawn, each from the start of a line. lp.frames,\n"
     "lp.skipped, lp.calls count them; lp:close() ends it. opts: interval=, metrics=,\n"
     "title=, file=, terminal=, width=, height=."},
    {"terminal", tl_lua_plot_terminal,
     "tl.plot.terminal([name]) -> name, resolved\n"
     "Get or set the default terminal: auto (window when a display is present, else\n"
     "dumb text), dumb, svg, png, pdf, qt, wxt, x11. file= always picks by extension."},
    {"svg", l_svg,
     "tl.plot.svg(kind, data [, opts]) -> svg text\n"
     "Render calibration/history/compare/gates to an SVG string (notebooks)."},
    {"gnuplot", tl_lua_plot_gnuplot,
     "tl.plot.gnuplot([path]) -> path | nil, message\n"
     "The gnuplot executable in use ($TL_GNUPLOT or gnuplot in $PATH); a path sets it,\n"
     "nil restores the default."},
    {NULL, NULL, NULL}};

void tl_lua_open_plot(lua_State *L, int tl)
{
    tl = lua_absindex(L, tl);
    tl_lua_plot_out_register(L);
    tl_lua_plot_hist_register(L);
    tl_lua_plot_live_register(L);

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
               "lp:close(): tl_lua_plot_finish the live plot (dumb output is printed, a window "
               "stays open).");
    tl_lua_doc(L, "plot.live:stats", 0,
               "lp:stats() -> {frames=, skipped=, calls=, closed=, terminal=, points=,\n"
               "seconds= (time spent drawing, past the throttle)}");
    lua_setfield(L, tl, "plot");
}
