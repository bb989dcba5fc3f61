/* l_plot_hist.c — the history store behind tl.plot.history and the live
 * plots (see l_plot_hist.h): series read from m:history() tables, read
 * incrementally so a live plot only reads what is new, and the history
 * figure's gnuplot script. */
#include "l_plot_hist.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "l_plot_out.h"
#include "l_util.h"

#define HIST_MT "tl.plot.hist"
#define MAX_POINTS 1000 /* per series: longer series are averaged in buckets */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

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
struct tl_lua_plot_hist {
    size_t seen[3];   /* entries read from steps, epochs, diagnostics */
    double last_x[3]; /* x of the last entry read from each list */
    int x_is_step[SRC_N];
    hseries *s;
    size_t ns, cap;
    char **keys; /* series keys in order of appearance: colours */
    size_t nkeys, kcap;
    int oom;
};

static void hstore_clear(tl_lua_plot_hist *h)
{
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

static int hist_gc(lua_State *L)
{
    hstore_clear(luaL_checkudata(L, 1, HIST_MT));
    return 0;
}

tl_lua_plot_hist *tl_lua_plot_hist_new(lua_State *L)
{
    tl_lua_plot_hist *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, HIST_MT);
    return h;
}

static size_t key_color(tl_lua_plot_hist *h, const char *key)
{
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

static hseries *series_get(tl_lua_plot_hist *h, int src, const char *field, const char *key)
{
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

static void series_add(tl_lua_plot_hist *h, int src, const char *field, const char *key, double x,
                       double y)
{
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
static const char *next_key(lua_State *L)
{
    lua_pushvalue(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
        return lua_tostring(L, -1);
    return NULL;
}

/* Read one entry of steps/epochs/diagnostics (table at `e`). */
/* The x of entry `e` (number i of its list): its step, else (epochs) its
 * epoch, else i. *is_step tells which. */
static double entry_x(lua_State *L, int e, int list, lua_Integer i, int *is_step)
{
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

static void read_entry(lua_State *L, tl_lua_plot_hist *h, int list, int e, lua_Integer i)
{
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
                    series_add(h, valid ? SRC_VALID : src, field, key, x,
                               (double)lua_tonumber(L, -2));
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
static int continues(lua_State *L, const tl_lua_plot_hist *h, int idx, const size_t *len)
{
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
void tl_lua_plot_hist_read(lua_State *L, tl_lua_plot_hist *h, int idx, const char *fn)
{
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
static int find_metric(const tl_lua_plot_hist *h, const char *m, int *src, const char **field)
{
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
static void list_metrics(lua_State *L, const tl_lua_plot_hist *h)
{
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
void tl_lua_plot_hist_panels(lua_State *L, const tl_lua_plot_hist *h, int opts, const char *fn,
                             int strict)
{
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
int tl_lua_plot_hist_script(lua_State *L, tl_lua_plot_hist *h, int panels, const char *title,
                            size_t max_points, tl_plot_buf *b)
{
    int np = (int)lua_rawlen(L, panels);
    if (np == 0) return 0;
    tl_lua_plot_preamble(b);
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
        tl_plot_buf_add_lit(b, "EOD\n");
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
    tl_plot_buf_add_lit(b, "\nset lmargin 10\nset rmargin 3\nset key top right\n"
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
        tl_plot_buf_add_lit(b, "set title ");
        tl_plot_buf_quote(b, t);
        if (h->x_is_step[src] && xmin < xmax)
            tl_plot_buf_printf(b, "\nset xrange [%.9g:%.9g]", xmin, xmax);
        else
            tl_plot_buf_add_lit(b, "\nset autoscale x");
        tl_plot_buf_printf(b, "\nset xlabel '%s'\nset ylabel ",
                           h->x_is_step[src] ? "step" : "epoch");
        tl_plot_buf_quote(b, m);
        tl_plot_buf_add_lit(b, "\nplot ");
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
                tl_plot_buf_printf(
                    b, "%s$s%zu using 1:2 with linespoints pt %d ps 0.6 pi %zu lc %zu title ",
                    first ? "" : ", \\\n  ", i, tl_lua_plot_point_type((int)k),
                    pts ? (size_t)1 : (shown / 8 > 1 ? shown / 8 : 1), color);
                tl_plot_buf_quote(b, s->key[0] ? s->key : s->field);
                first = 0;
            }
        tl_plot_buf_add_lit(b, "\n");
        lua_pop(L, 1);
    }
    tl_plot_buf_add_lit(b, "unset multiplot\n");
    return np;
}

/* Push the history table for argument `arg`: a history table as is, or the
 * result of obj:history() for a model. */
void tl_lua_plot_hist_push(lua_State *L, int arg, const char *fn)
{
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
    if (tl_lua_plot_indexable(L, arg)) {
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

static const char *const HIST_FIELDS[] = {"metrics",  "file",  "title",  "format",
                                          "terminal", "width", "height", NULL};

/* tl.plot.history(h_or_model, opts) */
int tl_lua_plot_history(lua_State *L)
{
    const char *fn = "tl.plot.history";
    int opts = tl_lua_plot_opts(L, 2, fn, HIST_FIELDS);
    tl_lua_plot_out o;
    tl_lua_plot_get_out(L, opts, fn, &o, "Training history");
    tl_lua_plot_hist_push(L, 1, fn);
    int hidx = lua_gettop(L);
    tl_lua_plot_hist *h = tl_lua_plot_hist_new(L);
    tl_lua_plot_hist_read(L, h, hidx, fn);
    if (h->oom) return luaL_error(L, "%s: out of memory reading the history", fn);
    tl_lua_plot_hist_panels(L, h, opts, fn, 1);
    int panels = lua_gettop(L);
    tl_plot_buf *b = tl_lua_plot_buf_new(L);
    int np = tl_lua_plot_hist_script(L, h, panels, o.title, MAX_POINTS, b);
    if (np == 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: the history has no data to plot yet", fn);
        return 2;
    }
    return tl_lua_plot_finish(L, fn, &o, b, 800, 60 + 260 * np, 2 + 18 * np);
}

size_t tl_lua_plot_hist_points(const tl_lua_plot_hist *h)
{
    size_t pts = 0;
    for (size_t i = 0; i < h->ns; i++) pts += h->s[i].n;
    return pts;
}

void tl_lua_plot_hist_register(lua_State *L)
{
    luaL_newmetatable(L, HIST_MT);
    lua_pushcfunction(L, hist_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}
