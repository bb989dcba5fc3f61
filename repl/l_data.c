/* l_data.c — Lua binding of the data pipeline (engine/data.h): tl.data.csv
 * and the dataset and split userdata (the built-in datasets are l_datasets.c).
 *
 * Schema translation allocates only Lua memory (userdata scratch anchored in
 * a table on the stack), so argument errors can be raised at any point
 * without leaking. The engine call happens after all checks, into a dataset
 * userdata created beforehand, so nothing is lost if Lua runs out of memory.
 */
#include "l_data.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l_leakage.h"
#include "l_util.h"

typedef struct {
    tl_dataset *d;
} dataset_ud;

typedef struct {
    dataset_ud *owner;
    int which; /* 0 train, 1 valid, 2 test, 3 all */
} split_ud;

/* Datasets that a running m:fit reads, with a count (fits nest when a
 * callback fits another model). d:close refuses them and their __gc leaves
 * them alone. A fixed table: each fit holds at most two. */
#define BUSY_DATASETS 64
static struct {
    const tl_dataset *d;
    int count;
} busy_datasets[BUSY_DATASETS];

int tl_lua_dataset_busy(const tl_dataset *d)
{
    for (int i = 0; d && i < BUSY_DATASETS; i++)
        if (busy_datasets[i].d == d && busy_datasets[i].count > 0) return 1;
    return 0;
}

int tl_lua_dataset_hold(const tl_dataset *d)
{
    int free_slot = -1;
    for (int i = 0; i < BUSY_DATASETS; i++) {
        if (busy_datasets[i].d == d && busy_datasets[i].count > 0) {
            busy_datasets[i].count++;
            return 1;
        }
        if (busy_datasets[i].count == 0 && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) return 0;
    busy_datasets[free_slot].d = d;
    busy_datasets[free_slot].count = 1;
    return 1;
}

void tl_lua_dataset_release(const tl_dataset *d)
{
    for (int i = 0; i < BUSY_DATASETS; i++)
        if (busy_datasets[i].d == d && busy_datasets[i].count > 0) {
            if (--busy_datasets[i].count == 0) busy_datasets[i].d = NULL;
            return;
        }
}

static const char *const SPLITS[4] = {"train", "valid", "test", "all"};


/* uservalues of a dataset: 1 = the options table it was loaded with (for
 * like=), 2 = cache of its split userdata (so d.train == d.train) */
enum { UV_OPTS = 1, UV_SPLITS = 2 };

static dataset_ud *to_dataset(lua_State *L, int idx) { return luaL_checkudata(L, idx, TL_DATASET_MT); }

tl_dataset *tl_lua_check_dataset(lua_State *L, int idx)
{
    dataset_ud *u = to_dataset(L, idx);
    if (!u->d) luaL_argerror(L, idx, "dataset is closed");
    return u->d;
}

tl_dataset *tl_lua_test_dataset(lua_State *L, int idx)
{
    dataset_ud *u = luaL_testudata(L, idx, TL_DATASET_MT);
    return u ? u->d : NULL;
}

static split_ud *to_split(lua_State *L, int idx)
{
    split_ud *u = luaL_checkudata(L, idx, TL_SPLIT_MT);
    if (!u->owner || !u->owner->d) luaL_argerror(L, idx, "the split's dataset is closed");
    return u;
}

const tl_split *tl_lua_check_split(lua_State *L, int idx)
{
    split_ud *u = to_split(L, idx);
    return tl_dataset_split(u->owner->d, SPLITS[u->which]);
}

tl_dataset *tl_lua_split_dataset(lua_State *L, int idx) { return to_split(L, idx)->owner->d; }

/* Push a new, empty dataset userdata (filled by the caller). */
static dataset_ud *new_dataset_ud(lua_State *L)
{
    dataset_ud *u = lua_newuserdatauv(L, sizeof *u, 2);
    u->d = NULL;
    luaL_setmetatable(L, TL_DATASET_MT);
    return u;
}

tl_dataset **tl_lua_new_dataset(lua_State *L) { return &new_dataset_ud(L)->d; }

void tl_lua_report_skipped(const tl_dataset *d, const char *fn, const char *one, const char *many)
{
    const uint64_t *lines;
    int nl;
    size_t n = tl_dataset_skipped(d, &lines, &nl);
    if (!n) return;
    fprintf(stderr, "%s: skipped %zu %s of %s (line%s", fn, n, n == 1 ? one : many, tl_dataset_source(d),
            nl == 1 ? "" : "s");
    for (int i = 0; i < nl; i++) fprintf(stderr, "%s %llu", i ? "," : "", (unsigned long long)lines[i]);
    fprintf(stderr, "%s)\n", (size_t)nl < n ? ", ..." : "");
}

/* ---- schema translation ---------------------------------------------------- */

/* Scratch memory that lives as long as the anchor table at `anchor`. */
static void *scratch(lua_State *L, int anchor, size_t bytes)
{
    void *p = lua_newuserdatauv(L, bytes ? bytes : 1, 0);
    memset(p, 0, bytes ? bytes : 1);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    return p;
}

/* The value at the top as a string kept alive by the anchor table (numbers
 * are converted: positive=1 means "1"); pops it. NULL when not a string or
 * number. */
static const char *anchored_string(lua_State *L, int anchor)
{
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
        lua_pop(L, 1);
        return NULL;
    }
    if (t == LUA_TNUMBER) {
        /* integers print without ".0": 1 → "1" */
        if (lua_isinteger(L, -1)) lua_pushfstring(L, "%I", lua_tointeger(L, -1));
        else lua_pushstring(L, luaL_tolstring(L, -1, NULL)), lua_remove(L, -2);
        lua_remove(L, -2);
    }
    const char *s = lua_tostring(L, -1);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    return s;
}

/* A list of strings in field `key` of table idx (a single string is a list of
 * one). Returns the count; *out is scratch. */
static int string_list(lua_State *L, int idx, int anchor, const char *fn, const char *key,
                       const char *const **out, int allow_numbers)
{
    int t = lua_getfield(L, idx, key);
    *out = NULL;
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (t == LUA_TSTRING || (allow_numbers && t == LUA_TNUMBER)) {
        const char **v = scratch(L, anchor, sizeof *v);
        v[0] = anchored_string(L, anchor);
        *out = v;
        return 1;
    }
    if (t != LUA_TTABLE)
        return luaL_error(L, "%s: field '%s' must be a %s or a list of them, got %s", fn, key,
                          allow_numbers ? "string/number" : "string", luaL_typename(L, -1));
    int n = (int)lua_rawlen(L, -1);
    const char **v = scratch(L, anchor, sizeof *v * (size_t)(n + 1));
    for (int i = 1; i <= n; i++) {
        int et = lua_rawgeti(L, -1, i);
        if (et != LUA_TSTRING && !(allow_numbers && et == LUA_TNUMBER))
            return luaL_error(L, "%s: field '%s' item %d must be a string, got %s", fn, key, i,
                              luaL_typename(L, -1));
        v[i - 1] = anchored_string(L, anchor);
    }
    lua_pop(L, 1);
    *out = v;
    return n;
}

static const char *const CSV_FIELDS[] = {"path",  "header", "columns", "skip",  "sep",      "categorical",
                                         "numeric", "labels", "id",    "weight", "split",   "seed",
                                         "like",  "on_bad", "cache",   "missing", "min_count", "transform",
                                         "name",  "skipinitialspace", "sketch", NULL};
static const char *const TRANSFORMS[] = {"standard", "log1p", "none", "quantile", NULL};

/* A categorical item {name, multi=, pooling=, max_len=, keep=, min_count=, hash=}
 * (multi= makes it a multi-valued field) at stack index it into *b. */
static void parse_bag_item(lua_State *L, int it, const char *where, tl_data_bag_col *b)
{
    static const char *const pools[] = {"sum", "mean", "max", NULL};
    static const char *const keeps[] = {"last", "first", NULL};
    b->sep = tl_lua_opt_string(L, it, where, "multi", NULL);
    if (!*b->sep || strlen(b->sep) > 8 || strchr(b->sep, '"') || strchr(b->sep, '\n'))
        luaL_error(L, "%s: multi= must be 1 to 8 characters without quotes or newlines", where);
    b->pooling = (tl_pooling)tl_lua_opt_enum(L, it, where, "pooling", pools, TL_POOL_SUM);
    b->max_len = (int)tl_lua_opt_int(L, it, where, "max_len", 0, 1, TL_DATA_MAX_BAG_LEN);
    b->keep_first = tl_lua_opt_enum(L, it, where, "keep", keeps, 0);
    b->min_count = (int)tl_lua_opt_int(L, it, where, "min_count", 0, 1, INT32_MAX);
    b->hash_buckets = (int)tl_lua_opt_int(L, it, where, "hash", 0, 1, INT32_MAX - 1);
}

static void parse_categorical(lua_State *L, int opts, int anchor, const char *fn, tl_data_schema *s)
{
    int t = lua_getfield(L, opts, "categorical");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "%s: field 'categorical' must be a list of column names, got %s", fn, luaL_typename(L, -1));
    int list = lua_gettop(L);
    int n = (int)lua_rawlen(L, list), nc = 0, nb = 0;
    tl_data_cat_col *c = scratch(L, anchor, sizeof *c * (size_t)(n + 1));
    tl_data_bag_col *bags = scratch(L, anchor, sizeof *bags * (size_t)(n + 1));
    for (int i = 1; i <= n; i++) {
        int et = lua_rawgeti(L, list, i);
        if (et == LUA_TSTRING) {
            c[nc++].name = anchored_string(L, anchor);
            continue;
        }
        if (et != LUA_TTABLE)
            luaL_error(L, "%s: field 'categorical' item %d must be a column name or {name, min_count=, hash=} or "
                          "{name, multi=, pooling=, max_len=}, got %s",
                       fn, i, luaL_typename(L, -1));
        int it = lua_gettop(L);
        static const char *const allowed[] = {"min_count", "hash", "multi", "pooling", "max_len", "keep", NULL};
        char where[64];
        snprintf(where, sizeof where, "%s: categorical item %d", fn, i);
        tl_lua_check_fields(L, it, where, allowed);
        int multi = lua_getfield(L, it, "multi") != LUA_TNIL;
        lua_pop(L, 1);
        if (!multi)
            for (const char *const *k = allowed + 3; *k; k++) {
                if (lua_getfield(L, it, *k) != LUA_TNIL)
                    luaL_error(L, "%s: %s= needs multi= (the separator of a multi-valued field's values)", where, *k);
                lua_pop(L, 1);
            }
        if (lua_rawgeti(L, it, 1) != LUA_TSTRING)
            luaL_error(L, "%s: field 'categorical' item %d must start with the column name", fn, i);
        const char *name = anchored_string(L, anchor);
        if (multi) {
            if (nb == TL_DATA_MAX_BAGS) luaL_error(L, "%s: more than %d multi-valued fields", fn, TL_DATA_MAX_BAGS);
            bags[nb].name = name;
            parse_bag_item(L, it, where, &bags[nb++]);
        } else {
            c[nc].name = name;
            c[nc].min_count = (int)tl_lua_opt_int(L, it, where, "min_count", 0, 1, INT32_MAX);
            c[nc++].hash_buckets = (int)tl_lua_opt_int(L, it, where, "hash", 0, 1, INT32_MAX - 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    s->cat = c;
    s->n_cat = nc;
    s->bag = bags;
    s->n_bag = nb;
}

static void parse_numeric(lua_State *L, int opts, int anchor, const char *fn, tl_data_schema *s)
{
    int def = tl_lua_opt_enum(L, opts, fn, "transform", TRANSFORMS, TL_NUM_STANDARD);
    int t = lua_getfield(L, opts, "numeric");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "%s: field 'numeric' must be a list of column names, got %s", fn, luaL_typename(L, -1));
    int list = lua_gettop(L);
    int n = (int)lua_rawlen(L, list);
    tl_data_num_col *c = scratch(L, anchor, sizeof *c * (size_t)(n + 1));
    for (int i = 1; i <= n; i++) {
        int et = lua_rawgeti(L, list, i);
        c[i - 1].transform = (tl_num_transform)def;
        if (et == LUA_TSTRING) {
            c[i - 1].name = anchored_string(L, anchor);
            continue;
        }
        if (et != LUA_TTABLE)
            luaL_error(L, "%s: field 'numeric' item %d must be a column name or {name, transform=, buckets=}, got %s",
                       fn, i, luaL_typename(L, -1));
        int it = lua_gettop(L);
        static const char *const allowed[] = {"transform", "buckets", NULL};
        char where[64];
        snprintf(where, sizeof where, "%s: numeric item %d", fn, i);
        tl_lua_check_fields(L, it, where, allowed);
        if (lua_rawgeti(L, it, 1) != LUA_TSTRING)
            luaL_error(L, "%s: field 'numeric' item %d must start with the column name", fn, i);
        c[i - 1].name = anchored_string(L, anchor);
        c[i - 1].transform = (tl_num_transform)tl_lua_opt_enum(L, it, where, "transform", TRANSFORMS, def);
        c[i - 1].buckets = (int)tl_lua_opt_int(L, it, where, "buckets", 10, 2, 1000000);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    s->num = c;
    s->n_num = n;
}

static void parse_labels(lua_State *L, int opts, int anchor, const char *fn, tl_data_schema *s)
{
    int t = lua_getfield(L, opts, "labels");
    if (t != LUA_TTABLE)
        luaL_error(L, "%s: field 'labels' must be a table {task = {column=, positive= | threshold= | regression=true}}, got %s",
                   fn, luaL_typename(L, -1));
    int tab = lua_gettop(L);
    /* tasks in sorted name order: Lua's pairs order is not stable across runs */
    lua_newtable(L);
    int names = lua_gettop(L);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, tab)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: field 'labels' must map task names to tables, got a %s key", fn, luaL_typename(L, -1));
        lua_pushvalue(L, -1);
        lua_rawseti(L, names, ++n);
    }
    if (n == 0) luaL_error(L, "%s: field 'labels' is empty: give at least one task", fn);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, names);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    tl_data_label *l = scratch(L, anchor, sizeof *l * (size_t)n);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, names, i + 1);
        const char *task = lua_tostring(L, -1);
        l[i].task = anchored_string(L, anchor);
        char where[160];
        snprintf(where, sizeof where, "%s: labels.%s", fn, task);
        if (lua_getfield(L, tab, task) != LUA_TTABLE)
            luaL_error(L, "%s must be a table {column=, positive= | threshold= | regression=true}, got %s", where,
                       luaL_typename(L, -1));
        int it = lua_gettop(L);
        static const char *const allowed[] = {"column",     "positive", "negative", "threshold",
                                              "regression", "keep",     "unknown",  NULL};
        tl_lua_check_fields(L, it, where, allowed);
        const char *col = tl_lua_opt_string(L, it, where, "column", NULL);
        if (!col) luaL_error(L, "%s: field 'column' is required (the source column)", where);
        l[i].column = col;
        int np = string_list(L, it, anchor, where, "positive", &l[i].positive, 1);
        int nn = string_list(L, it, anchor, where, "negative", &l[i].negative, 1);
        int has_thr = lua_getfield(L, it, "threshold") != LUA_TNIL;
        lua_pop(L, 1);
        int reg = tl_lua_opt_bool(L, it, where, "regression", 0);
        if ((np > 0) + has_thr + reg != 1)
            luaL_error(L, "%s: give exactly one of positive=, threshold= or regression=true", where);
        if (nn && !np) luaL_error(L, "%s: negative= needs positive=", where);
        static const char *const unknown[] = {"error", "negative", NULL};
        int unk_given = lua_getfield(L, it, "unknown") != LUA_TNIL;
        lua_pop(L, 1);
        l[i].unknown_negative = tl_lua_opt_enum(L, it, where, "unknown", unknown, 0);
        if (unk_given && !np) luaL_error(L, "%s: unknown= needs positive=", where);
        if (l[i].unknown_negative && nn)
            luaL_error(L, "%s: give negative= (the listed 0 values) or unknown=\"negative\" (every other value), "
                          "not both", where);
        l[i].n_positive = np;
        l[i].n_negative = nn;
        if (has_thr) {
            l[i].kind = TL_LABEL_THRESHOLD;
            l[i].threshold = tl_lua_opt_number(L, it, where, "threshold", 0, -HUGE_VAL, HUGE_VAL);
        } else if (reg) {
            l[i].kind = TL_LABEL_REGRESSION;
        }
        l[i].keep = tl_lua_opt_bool(L, it, where, "keep", 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    s->labels = l;
    s->n_labels = n;
}

/* split = {train=0.8, valid=0.1, test=0.1} (ratios)
 *       | {modulo=10, train={0,...,7}, valid={8}, test={9}} (row index residues)
 *       | {valid="v.csv", test="t.csv"} (separate files; path is the train file) */
static void parse_split(lua_State *L, int opts, const char *fn, tl_data_schema *s)
{
    int t = lua_getfield(L, opts, "split");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "%s: field 'split' must be a table, e.g. {train=0.8, valid=0.1, test=0.1}, got %s", fn,
                   luaL_typename(L, -1));
    int sp = lua_gettop(L);
    static const char *const allowed[] = {"train", "valid", "test", "modulo", "hash", NULL};
    char where[64];
    snprintf(where, sizeof where, "%s: split", fn);
    int hash_given = lua_getfield(L, sp, "hash") != LUA_TNIL;
    lua_pop(L, 1);
    tl_lua_check_fields(L, sp, where, allowed);
    int has_mod = lua_getfield(L, sp, "modulo") != LUA_TNIL;
    lua_pop(L, 1);
    int vt = lua_getfield(L, sp, "valid"), tt = lua_getfield(L, sp, "test");
    lua_pop(L, 2);
    if (has_mod) {
        s->split = TL_SPLIT_MODULO;
        s->modulo = (int)tl_lua_opt_int(L, sp, where, "modulo", 10, 1, TL_MODULO_MAX);
        for (int k = 0; k < s->modulo; k++) s->modulo_to[k] = TL_TO_DROP;
        for (int k = 0; k < 3; k++) {
            int ft = lua_getfield(L, sp, SPLITS[k]);
            if (ft == LUA_TNIL) {
                lua_pop(L, 1);
                continue;
            }
            if (ft != LUA_TTABLE)
                luaL_error(L, "%s: field '%s' must be a list of residues in 0..%d, got %s", where, SPLITS[k],
                           s->modulo - 1, luaL_typename(L, -1));
            int n = (int)lua_rawlen(L, -1);
            for (int i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, i);
                int ok;
                lua_Integer r = lua_tointegerx(L, -1, &ok);
                if (!ok || r < 0 || r >= s->modulo)
                    luaL_error(L, "%s: field '%s' item %d must be an integer residue in 0..%d", where, SPLITS[k], i,
                               s->modulo - 1);
                if (s->modulo_to[r] != TL_TO_DROP)
                    luaL_error(L, "%s: residue %d is in two splits", where, (int)r);
                s->modulo_to[r] = (int8_t)k;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    } else if (vt == LUA_TSTRING || tt == LUA_TSTRING) {
        s->split = TL_SPLIT_FILES;
        int trt = lua_getfield(L, sp, "train");
        lua_pop(L, 1);
        if (trt != LUA_TNIL) luaL_error(L, "%s: with files, the train file is 'path' (drop split.train)", where);
        s->valid_path = tl_lua_opt_string(L, sp, where, "valid", NULL);
        s->test_path = tl_lua_opt_string(L, sp, where, "test", NULL);
    } else {
        s->split = TL_SPLIT_RATIO;
        for (int k = 0; k < 3; k++) s->ratio[k] = tl_lua_opt_number(L, sp, where, SPLITS[k], 0, 0, 1);
        double sum = s->ratio[0] + s->ratio[1] + s->ratio[2];
        if (fabs(sum - 1) > 1e-6) luaL_error(L, "%s: ratios must sum to 1, got %f", where, sum);
        if (!(s->ratio[0] > 0)) luaL_error(L, "%s: field 'train' must be > 0", where);
        s->split_by_hash = tl_lua_opt_bool(L, sp, where, "hash", 0);
    }
    if (hash_given && s->split != TL_SPLIT_RATIO)
        luaL_error(L, "%s: hash= goes with ratios (train=, valid=, test=)", where);
    lua_pop(L, 1);
}

/* Translate the options table at `opts` into *s (memory anchored at `anchor`). */
static void parse_schema(lua_State *L, int opts, int anchor, const char *fn, tl_data_schema *s)
{
    tl_data_schema_init(s);
    tl_lua_check_fields(L, opts, fn, CSV_FIELDS);
    s->path = tl_lua_opt_string(L, opts, fn, "path", NULL);
    if (!s->path) luaL_error(L, "%s: field 'path' is required (a .csv, .tsv or .gz file)", fn);
    s->sep = tl_lua_opt_string(L, opts, fn, "sep", NULL);
    if (!s->sep) {
        size_t n = strlen(s->path);
        int tsv = (n >= 4 && strcmp(s->path + n - 4, ".tsv") == 0) ||
                  (n >= 7 && strcmp(s->path + n - 7, ".tsv.gz") == 0);
        s->sep = tsv ? "\t" : ",";
    } else if (strlen(s->sep) != 1 && strcmp(s->sep, ", ") != 0 && strcmp(s->sep, "::") != 0) {
        luaL_error(L, "%s: field 'sep' must be a single character (or \", \" or \"::\"), got \"%s\"", fn, s->sep);
    } else if (s->sep[0] == '"' || s->sep[0] == '\n') {
        luaL_error(L, "%s: field 'sep' cannot be a quote or a newline", fn);
    }
    s->n_columns = string_list(L, opts, anchor, fn, "columns", &s->columns, 0);
    s->header = tl_lua_opt_bool(L, opts, fn, "header", s->n_columns == 0);
    if (!s->header && s->n_columns == 0)
        luaL_error(L, "%s: with header=false give the column names: columns={...}", fn);
    if (s->header && s->n_columns > 0)
        luaL_error(L, "%s: give either header=true or columns={...}, not both", fn);
    s->skip = (int)tl_lua_opt_int(L, opts, fn, "skip", 0, 0, INT32_MAX);
    s->skip_initial_space = tl_lua_opt_bool(L, opts, fn, "skipinitialspace", 0);
    s->quantile_sketch = tl_lua_opt_bool(L, opts, fn, "sketch", 0);
    if (s->skip_initial_space && s->sep[0] == ' ')
        luaL_error(L, "%s: skipinitialspace=true needs a separator that does not start with a space", fn);
    s->missing = NULL;
    if (lua_getfield(L, opts, "missing") != LUA_TNIL) {
        lua_pop(L, 1);
        s->n_missing = string_list(L, opts, anchor, fn, "missing", &s->missing, 0);
        if (!s->missing) s->missing = scratch(L, anchor, sizeof(char *)); /* {} : nothing is missing */
    } else {
        lua_pop(L, 1);
    }
    s->min_count = (int)tl_lua_opt_int(L, opts, fn, "min_count", 1, 1, INT32_MAX);
    parse_categorical(L, opts, anchor, fn, s);
    parse_numeric(L, opts, anchor, fn, s);
    parse_labels(L, opts, anchor, fn, s);
    s->id = tl_lua_opt_string(L, opts, fn, "id", NULL);
    s->weight = tl_lua_opt_string(L, opts, fn, "weight", NULL);
    parse_split(L, opts, fn, s);
    s->seed = (uint64_t)tl_lua_opt_int(L, opts, fn, "seed", 1, 0, LUA_MAXINTEGER);
    static const char *const bad[] = {"error", "skip", NULL};
    s->on_bad = (tl_bad_policy)tl_lua_opt_enum(L, opts, fn, "on_bad", bad, TL_BAD_ERROR);
    s->name = tl_lua_opt_string(L, opts, fn, "name", NULL);
    int ct = lua_getfield(L, opts, "cache");
    if (ct == LUA_TNIL || ct == LUA_TBOOLEAN) {
        s->cache = ct == LUA_TNIL || lua_toboolean(L, -1);
    } else if (ct == LUA_TSTRING) {
        s->cache = 1;
        s->cache_dir = lua_tostring(L, -1);
    } else {
        luaL_error(L, "%s: field 'cache' must be a boolean or a directory, got %s", fn, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

void tl_lua_csv_schema(lua_State *L, int opts, int anchor, const char *fn, tl_data_schema *s)
{
    parse_schema(L, opts, anchor, fn, s);
}

/* tl.data.csv{...} */
static int l_csv(lua_State *L)
{
    static const char *fn = "tl.data.csv";
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    tl_dataset *like = NULL;
    if (lua_getfield(L, 1, "like") != LUA_TNIL) { /* 2: the first dataset, kept on the stack */
        if (!luaL_testudata(L, 2, TL_DATASET_MT))
            luaL_error(L, "%s: field 'like' must be a dataset from tl.data.csv, got %s", fn, luaL_typename(L, 2));
        like = tl_lua_check_dataset(L, 2);
        /* 3: the first load's options; a dataset of shards has none, so this
         * call names the columns (categorical=, numeric=, labels=) itself */
        int saved_opts = lua_getiuservalue(L, 2, UV_OPTS) == LUA_TTABLE;
        int named = lua_getfield(L, 1, "categorical") != LUA_TNIL;
        lua_pop(L, 1);
        if (!saved_opts && !named)
            luaL_error(L, "%s: field 'like' is a dataset without its load's options (of shards): give the "
                          "columns (categorical=, numeric=, labels=) as the conversion did", fn);
        if (lua_getfield(L, 1, "split") != LUA_TNIL)
            luaL_error(L, "%s: with like=, all rows of the file go to d.all: drop 'split'", fn);
        lua_pop(L, 1);
        /* the first load's options, with this call's fields on top */
        lua_newtable(L); /* 4 */
        for (int from = saved_opts ? 3 : 1; from >= 1; from -= 2) {
            lua_pushnil(L);
            while (lua_next(L, from)) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, 4);
            }
        }
        lua_pushnil(L);
        lua_setfield(L, 4, "like");
        lua_pushnil(L);
        lua_setfield(L, 4, "split");
        lua_replace(L, 1);
        lua_settop(L, 2);
    }
    lua_newtable(L); /* 3: anchor */
    int anchor = lua_gettop(L);
    tl_data_schema s;
    parse_schema(L, 1, anchor, fn, &s);
    if (like) s.cache = 0;
    dataset_ud *u = new_dataset_ud(L);
    int ud = lua_gettop(L);
    tl_status st = tl_data_csv_load(&s, like, &u->d);
    if (st) return tl_lua_raise_status(L, fn, st);
    /* remember the options (without like) for later like= loads */
    lua_newtable(L);
    int saved = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, saved);
    }
    lua_pushnil(L);
    lua_setfield(L, -2, "like");
    lua_setiuservalue(L, ud, UV_OPTS);
    tl_lua_note_alloc(L, tl_dataset_bytes(u->d));
    tl_lua_report_skipped(u->d, fn, "bad row", "bad rows");
    if (!like) tl_lua_leakage_warn(u->d, &s);
    lua_pushvalue(L, ud);
    return 1;
}

/* ---- dataset methods -------------------------------------------------------- */

/* A dataset a running fit reads is not freed: only lua_close from inside a
 * progress callback can collect it then, and the process is ending. */
static int d_gc(lua_State *L)
{
    dataset_ud *u = to_dataset(L, 1);
    if (tl_lua_dataset_busy(u->d)) return 0;
    tl_dataset_free(u->d);
    u->d = NULL;
    return 0;
}

static void push_rate(lua_State *L, const tl_split *s, const tl_dataset *d, int t)
{
    double r = s ? tl_split_label_mean(s, d, t) : (double)NAN;
    if (isnan(r)) lua_pushnil(L);
    else lua_pushnumber(L, r);
}

static void add_task_summary(luaL_Buffer *b, const tl_dataset *d, const tl_split *s)
{
    if (!tl_dataset_labeled(d)) {
        for (int t = 0; t < tl_dataset_n_tasks(d); t++) {
            luaL_addstring(b, t ? ", " : "");
            luaL_addstring(b, tl_dataset_task_name(d, t));
        }
        luaL_addstring(b, " (no labels: rows to score with m:predict)");
        return;
    }
    for (int t = 0; t < tl_dataset_n_tasks(d); t++) {
        double r = tl_split_label_mean(s, d, t);
        char buf[160];
        if (tl_dataset_task_type(d, t) == TL_TASK_BINARY)
            snprintf(buf, sizeof buf, "%s%s %.2f%%", t ? ", " : "", tl_dataset_task_name(d, t), 100 * r);
        else
            snprintf(buf, sizeof buf, "%s%s mean %.4g", t ? ", " : "", tl_dataset_task_name(d, t), r);
        luaL_addstring(b, buf);
    }
}

/* "; hashed: a 1000 values, 4.1% collide in 100000 buckets, ..." (the
 * first 4 hashed fields whose counts are known). */
static void add_hash_summary(luaL_Buffer *b, const tl_dataset *d)
{
    int shown = 0, more = 0;
    for (int f = 0; f < tl_dataset_n_cat(d); f++) {
        uint32_t nv, nc;
        if (!tl_dataset_hash_collisions(d, f, &nv, &nc)) continue;
        if (shown == 4) {
            more++;
            continue;
        }
        char buf[200];
        snprintf(buf, sizeof buf, "%s%s %u values, %.1f%% collide in %d buckets", shown ? ", " : "; hashed: ",
                 tl_dataset_cat_name(d, f), nv, nv ? 100.0 * nc / nv : 0.0, tl_dataset_vocab(d)[f] - 1);
        luaL_addstring(b, buf);
        shown++;
    }
    if (more) {
        char buf[40];
        snprintf(buf, sizeof buf, ", %d more (d:fields())", more);
        luaL_addstring(b, buf);
    }
}

static int d_tostring(lua_State *L)
{
    dataset_ud *u = to_dataset(L, 1);
    if (!u->d) {
        lua_pushliteral(L, "dataset (closed)");
        return 1;
    }
    const tl_dataset *d = u->d;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char buf[256];
    const tl_split *all = tl_dataset_split(d, "all");
    snprintf(buf, sizeof buf, "dataset %s: %zu rows", tl_dataset_source(d), all->n);
    luaL_addstring(&b, buf);
    if (tl_dataset_split(d, "train")) {
        snprintf(buf, sizeof buf, " (train %zu, valid %zu, test %zu)", tl_dataset_split(d, "train")->n,
                 tl_dataset_split(d, "valid")->n, tl_dataset_split(d, "test")->n);
        luaL_addstring(&b, buf);
    }
    if (tl_dataset_n_bag(d))
        snprintf(buf, sizeof buf, "; %d categorical, %d multi-valued, %d numeric; tasks: ", tl_dataset_n_cat(d),
                 tl_dataset_n_bag(d), tl_dataset_n_num(d));
    else
        snprintf(buf, sizeof buf, "; %d categorical, %d numeric; tasks: ", tl_dataset_n_cat(d), tl_dataset_n_num(d));
    luaL_addstring(&b, buf);
    const tl_split *tr = tl_dataset_split(d, "train");
    add_task_summary(&b, d, tr ? tr : all);
    luaL_addstring(&b, tr && tl_dataset_labeled(d) ? " on train" : "");
    size_t sk = tl_dataset_skipped(d, NULL, NULL);
    if (sk) {
        snprintf(buf, sizeof buf, "; %zu bad row%s skipped", sk, sk == 1 ? "" : "s");
        luaL_addstring(&b, buf);
    }
    add_hash_summary(&b, d);
    for (int f = 0; f < tl_dataset_n_bag(d); f++)
        if (tl_dataset_bag_truncated(d, f)) {
            char tb[200];
            snprintf(tb, sizeof tb, "; %s: %llu rows truncated to %d values", tl_dataset_bag_name(d, f),
                     (unsigned long long)tl_dataset_bag_truncated(d, f), tl_dataset_bag_len(d, f));
            luaL_addstring(&b, tb);
        }
    if (tl_dataset_from_cache(d)) luaL_addstring(&b, "; from cache");
    luaL_pushresult(&b);
    return 1;
}

static int push_split(lua_State *L, int dsidx, int which)
{
    dataset_ud *u = to_dataset(L, dsidx);
    if (!u->d) return luaL_error(L, "dataset is closed");
    if (!tl_dataset_split(u->d, SPLITS[which])) {
        lua_pushnil(L);
        return 1;
    }
    if (lua_getiuservalue(L, dsidx, UV_SPLITS) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, dsidx, UV_SPLITS);
    }
    if (lua_rawgeti(L, -1, which + 1) == LUA_TUSERDATA) return 1;
    lua_pop(L, 1);
    split_ud *s = lua_newuserdatauv(L, sizeof *s, 1);
    s->owner = u;
    s->which = which;
    luaL_setmetatable(L, TL_SPLIT_MT);
    lua_pushvalue(L, dsidx);
    lua_setiuservalue(L, -2, 1); /* the split keeps its dataset alive */
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, which + 1);
    return 1;
}

static int d_tasks(lua_State *L, const tl_dataset *d)
{
    const tl_split *tr = tl_dataset_split(d, "train");
    if (!tr) tr = tl_dataset_split(d, "all");
    lua_createtable(L, tl_dataset_n_tasks(d), 0);
    for (int t = 0; t < tl_dataset_n_tasks(d); t++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, tl_dataset_task_name(d, t));
        lua_setfield(L, -2, "name");
        lua_pushstring(L, tl_dataset_task_type(d, t) == TL_TASK_BINARY ? "binary" : "regression");
        lua_setfield(L, -2, "type");
        push_rate(L, tr, d, t);
        lua_setfield(L, -2, tl_dataset_task_type(d, t) == TL_TASK_BINARY ? "rate" : "mean");
        lua_rawseti(L, -2, t + 1);
    }
    return 1;
}

/* d:fields() → {categorical = {{name=, vocab=, kind=}, ...},
 *               numeric = {{name=, transform=, mean=, std=}, ...}} */
static int d_fields(lua_State *L)
{
    const tl_dataset *d = tl_lua_check_dataset(L, 1);
    lua_createtable(L, 0, 2);
    lua_createtable(L, tl_dataset_n_cat(d), 0);
    for (int f = 0; f < tl_dataset_n_cat(d); f++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, tl_dataset_cat_name(d, f));
        lua_setfield(L, -2, "name");
        lua_pushinteger(L, tl_dataset_vocab(d)[f]);
        lua_setfield(L, -2, "vocab");
        lua_pushstring(L, tl_dataset_cat_kind(d, f));
        lua_setfield(L, -2, "kind");
        uint32_t nv, nc;
        if (tl_dataset_hash_collisions(d, f, &nv, &nc)) {
            lua_pushinteger(L, nv);
            lua_setfield(L, -2, "values");
            lua_pushnumber(L, nv ? (double)nc / nv : 0.0);
            lua_setfield(L, -2, "collisions");
        }
        lua_rawseti(L, -2, f + 1);
    }
    lua_setfield(L, -2, "categorical");
    lua_createtable(L, tl_dataset_n_num(d), 0);
    for (int j = 0; j < tl_dataset_n_num(d); j++) {
        double mean, sd;
        lua_createtable(L, 0, 4);
        lua_pushstring(L, tl_dataset_num_name(d, j));
        lua_setfield(L, -2, "name");
        lua_pushstring(L, tl_dataset_num_transform(d, j, &mean, &sd));
        lua_setfield(L, -2, "transform");
        lua_pushnumber(L, mean);
        lua_setfield(L, -2, "mean");
        lua_pushnumber(L, sd);
        lua_setfield(L, -2, "std");
        lua_rawseti(L, -2, j + 1);
    }
    lua_setfield(L, -2, "numeric");
    static const char *const pools[] = {"sum", "mean", "max"};
    lua_createtable(L, tl_dataset_n_bag(d), 0);
    for (int b = 0; b < tl_dataset_n_bag(d); b++) {
        lua_createtable(L, 0, 6);
        lua_pushstring(L, tl_dataset_bag_name(d, b));
        lua_setfield(L, -2, "name");
        lua_pushinteger(L, tl_dataset_bag_vocab(d, b));
        lua_setfield(L, -2, "vocab");
        lua_pushstring(L, tl_dataset_bag_kind(d, b));
        lua_setfield(L, -2, "kind");
        lua_pushinteger(L, tl_dataset_bag_len(d, b));
        lua_setfield(L, -2, "max_len");
        lua_pushstring(L, pools[tl_dataset_bag_pool(d, b)]);
        lua_setfield(L, -2, "pooling");
        lua_pushinteger(L, (lua_Integer)tl_dataset_bag_truncated(d, b));
        lua_setfield(L, -2, "truncated");
        lua_rawseti(L, -2, b + 1);
    }
    lua_setfield(L, -2, "bags");
    return 1;
}

/* d:vocab(field) → list of the strings of ids 2.. (id 0 = unseen, 1 = missing) */
static int d_vocab(lua_State *L)
{
    const tl_dataset *d = tl_lua_check_dataset(L, 1);
    const char *name = luaL_checkstring(L, 2);
    for (int f = 0; f < tl_dataset_n_cat(d); f++)
        if (strcmp(tl_dataset_cat_name(d, f), name) == 0) {
            lua_newtable(L);
            int k = 0;
            for (int32_t id = 0; id < tl_dataset_vocab(d)[f]; id++) {
                const char *s = tl_dataset_vocab_string(d, f, id);
                if (!s) continue;
                lua_pushstring(L, s);
                lua_rawseti(L, -2, ++k);
            }
            return 1;
        }
    return luaL_error(L, "dataset:vocab: no categorical field '%s'", name);
}

static int d_close(lua_State *L)
{
    if (tl_lua_dataset_busy(to_dataset(L, 1)->d))
        return luaL_error(L, "d:close: the dataset is in use by a running m:fit (called from its "
                             "progress callback)");
    return d_gc(L);
}

static int d_index(lua_State *L)
{
    dataset_ud *u = to_dataset(L, 1);
    const char *k = luaL_checkstring(L, 2);
    for (int i = 0; i < 4; i++)
        if (strcmp(k, SPLITS[i]) == 0) return push_split(L, 1, i);
    if (luaL_getmetafield(L, 1, "__methods") == LUA_TTABLE && lua_getfield(L, -1, k) != LUA_TNIL) return 1;
    if (!u->d) return luaL_error(L, "dataset is closed");
    const tl_dataset *d = u->d;
    if (strcmp(k, "tasks") == 0) return d_tasks(L, d);
    if (strcmp(k, "source") == 0) {
        lua_pushstring(L, tl_dataset_source(d));
        return 1;
    }
    if (strcmp(k, "from_cache") == 0) {
        lua_pushboolean(L, tl_dataset_from_cache(d));
        return 1;
    }
    if (strcmp(k, "labeled") == 0) {
        lua_pushboolean(L, tl_dataset_labeled(d));
        return 1;
    }
    if (strcmp(k, "skipped") == 0) {
        const uint64_t *lines;
        int nl;
        size_t n = tl_dataset_skipped(d, &lines, &nl);
        lua_createtable(L, nl, 1);
        lua_pushinteger(L, (lua_Integer)n);
        lua_setfield(L, -2, "count");
        for (int i = 0; i < nl; i++) {
            lua_pushinteger(L, (lua_Integer)lines[i]);
            lua_rawseti(L, -2, i + 1);
        }
        return 1;
    }
    return luaL_error(L, "dataset has no field '%s' (fields: train, valid, test, all, tasks, source, from_cache, "
                         "labeled, skipped; methods: fields, vocab, close)",
                      k);
}

/* ---- split methods ---------------------------------------------------------- */

static int s_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)tl_lua_check_split(L, 1)->n);
    return 1;
}

/* s:labels() → {task = {y1, y2, ...}} (1-based, split order) */
static int s_labels(lua_State *L)
{
    const tl_split *s = tl_lua_check_split(L, 1);
    const tl_dataset *d = tl_lua_split_dataset(L, 1);
    if (!tl_dataset_labeled(d))
        return luaL_error(L, "split:labels: the dataset has no labels (read with like= from a file without "
                             "label columns)");
    int nt = tl_dataset_n_tasks(d);
    lua_createtable(L, 0, nt);
    for (int t = 0; t < nt; t++) {
        lua_createtable(L, (int)(s->n < INT32_MAX ? s->n : INT32_MAX), 0);
        for (size_t i = 0; i < s->n; i++) {
            lua_pushnumber(L, (lua_Number)s->labels[i * (size_t)nt + (size_t)t]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, tl_dataset_task_name(d, t));
    }
    return 1;
}

/* s:rows() → the 0-based source row index of each row (1-based list) */
static int s_rows(lua_State *L)
{
    const tl_split *s = tl_lua_check_split(L, 1);
    lua_createtable(L, (int)(s->n < INT32_MAX ? s->n : INT32_MAX), 0);
    for (size_t i = 0; i < s->n; i++) {
        lua_pushinteger(L, s->row ? (lua_Integer)s->row[i] : (lua_Integer)i);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int s_tostring(lua_State *L)
{
    split_ud *u = luaL_checkudata(L, 1, TL_SPLIT_MT);
    if (!u->owner || !u->owner->d) {
        lua_pushliteral(L, "split (dataset closed)");
        return 1;
    }
    const tl_dataset *d = u->owner->d;
    const tl_split *s = tl_dataset_split(d, SPLITS[u->which]);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char buf[160];
    snprintf(buf, sizeof buf, "split %s: %zu rows; ", s->name, s->n);
    luaL_addstring(&b, buf);
    add_task_summary(&b, d, s);
    luaL_pushresult(&b);
    return 1;
}

static int s_index(lua_State *L)
{
    split_ud *u = luaL_checkudata(L, 1, TL_SPLIT_MT);
    const char *k = luaL_checkstring(L, 2);
    if (luaL_getmetafield(L, 1, "__methods") == LUA_TTABLE && lua_getfield(L, -1, k) != LUA_TNIL) return 1;
    if (strcmp(k, "name") == 0) {
        lua_pushstring(L, SPLITS[u->which]);
        return 1;
    }
    if (strcmp(k, "dataset") == 0) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    return luaL_error(L, "split has no field '%s' (fields: name, dataset; methods: size, labels, rows)", k);
}

/* ---- registration ------------------------------------------------------------ */

static const char *const DOC_CSV =
    "tl.data.csv{path=, ...} -> dataset\n"
    "Load a CSV/TSV file (.gz read through zlib) by a schema:\n"
    "  path='x.csv'          the file (the train file with split={valid=,test=} files)\n"
    "  header=true           first line names the columns; or columns={'a','b',...}\n"
    "  skip=0                leading lines to skip\n"
    "  sep=','               one character ('\\t' default for .tsv), or ', ' or '::'; ', ' means\n"
    "                        exactly a comma and one space (UCI census files)\n"
    "  skipinitialspace=false  true: spaces after each separator are skipped (pandas/Python\n"
    "                        csv), so sep=',' reads 'a,  b' and 'a, \"b,c\"'\n"
    "  categorical={'a', {'b', min_count=5}, {'c', hash=100000}}  ids from the train split:\n"
    "                        0 = unseen/rare, 1 = missing, 2.. = values (hash: buckets, last = missing)\n"
    "                        the collision rate of hashed fields is in print(d) and d:fields()\n"
    "  categorical={{'tags', multi='|', pooling='mean'}, {'hist', multi=',', max_len=50}}\n"
    "                        multi-valued fields: the values split on multi= share one\n"
    "                        vocabulary (min_count=, hash= as above) and one embedding table,\n"
    "                        pooled per row by pooling='sum' (default) | 'mean' | 'max'; an\n"
    "                        empty field is an empty bag (pooled to zeros), an empty value\n"
    "                        ('a||b') a bad row. max_len= slots per row (default: the longest\n"
    "                        row, at most 256); a longer row keeps its last max_len values\n"
    "                        (keep='first': the first), counted in d:fields().bags[i].truncated\n"
    "  numeric={'age', {'x', transform='log1p'}, {'y', transform='quantile', buckets=10}}\n"
    "  transform='standard'  default: standard (train mean/std) | log1p | none | quantile\n"
    "  sketch=false          quantile edges from a one-pass KLL sketch (rank error ~0.2%) instead\n"
    "                        of a sort; always above 16,777,216 training values\n"
    "  labels={ctr={column='click', positive='1'}, good={column='r', threshold=4},\n"
    "          rating={column='r', regression=true}}  positive may be a list; negative=\n"
    "                        lists the 0 values (others are then errors); without it the\n"
    "                        first other value is the negative one and a third value is an\n"
    "                        error, unless unknown='negative' (every other value is 0);\n"
    "                        keep=true keeps the source column as a feature (dropped by default)\n"
    "  id='user'             group column for GAUC;  weight='w' sample weights\n"
    "  split={train=0.8, valid=0.1, test=0.1} (random, by seed; exact sizes) |\n"
    "        {train=0.8, valid=0.1, test=0.1, hash=true} (each row by a hash of seed and its\n"
    "        row index: sizes near the ratios; as tl.data.convert streams a CSV spec) |\n"
    "        {modulo=10, train={0,...,7}, valid={8}, test={9}} (row index i % modulo) |\n"
    "        {valid='v.csv', test='t.csv'} (files). Without split: rows in d.all.\n"
    "  seed=1  on_bad='error'|'skip'  missing={'', '?'}  min_count=1\n"
    "  cache=true            binary cache next to the file (or cache='dir'); stale or\n"
    "                        corrupt caches are rebuilt\n"
    "  like=d                read with d's options, vocabularies and statistics; the file\n"
    "                        may lack every label column (rows to score: d.labeled = false,\n"
    "                        only m:predict accepts it)\n"
    "Text: RFC 4180 quotes (\"a,b\", \"\" is one quote; a quoted field may span lines), CRLF,\n"
    "a UTF-8 BOM and a last line without newline are read. Bad input raises an error\n"
    "naming file:line, column and what was expected (a record spanning lines adds\n"
    "'(record from line N)'); on_bad='skip' skips such rows, prints how many and\n"
    "keeps the count and first lines in d.skipped.";

void tl_lua_open_data(lua_State *L, int tl)
{
    static const luaL_Reg dmeta[] = {{"__gc", d_gc}, {"__close", d_close}, {"__tostring", d_tostring},
                                     {"__index", d_index}, {NULL, NULL}};
    static const luaL_Reg dmethods[] = {{"fields", d_fields}, {"vocab", d_vocab}, {"close", d_close}, {NULL, NULL}};
    static const luaL_Reg smeta[] = {{"__len", s_len}, {"__tostring", s_tostring}, {"__index", s_index},
                                     {NULL, NULL}};
    static const luaL_Reg smethods[] = {{"size", s_len}, {"labels", s_labels}, {"rows", s_rows}, {NULL, NULL}};
    if (luaL_newmetatable(L, TL_DATASET_MT)) {
        luaL_setfuncs(L, dmeta, 0);
        luaL_newlib(L, dmethods);
        lua_setfield(L, -2, "__methods");
        lua_pushliteral(L, TL_DATASET_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_getfield(L, -1, "__methods");
    lua_getfield(L, -1, "fields");
    tl_lua_doc(L, "dataset:fields", -1,
               "d:fields() -> {categorical={{name=, vocab=, kind=}...}, numeric={{name=, transform=, mean=, std=}...},\n"
               "  bags={{name=, vocab=, kind=, max_len=, pooling=, truncated=}...}}\n"
               "hashed fields also give values= (distinct training values) and collisions= (the share of\n"
               "them that landed in a bucket an earlier value held), when known (not from the cache).");
    lua_pop(L, 1);
    lua_getfield(L, -1, "vocab");
    tl_lua_doc(L, "dataset:vocab", -1, "d:vocab(field) -> the value of each id from 2 on (0 = unseen, 1 = missing)");
    lua_pop(L, 3);
    if (luaL_newmetatable(L, TL_SPLIT_MT)) {
        luaL_setfuncs(L, smeta, 0);
        luaL_newlib(L, smethods);
        lua_setfield(L, -2, "__methods");
    }
    lua_getfield(L, -1, "__methods");
    lua_getfield(L, -1, "labels");
    tl_lua_doc(L, "split:labels", -1, "s:labels() -> {task = {y1, y2, ...}}: each row's label (1-based)");
    lua_pop(L, 3);

    lua_newtable(L); /* tl.data */
    lua_pushcfunction(L, l_csv);
    tl_lua_doc(L, "tl.data.csv", -1, DOC_CSV);
    lua_setfield(L, -2, "csv");
    lua_setfield(L, tl, "data");
}
