/* l_datasets.c — tl.datasets: the built-in datasets (census, synthetic,
 * movielens, amazon_video_games, synthetic_pair) and where their files are
 * looked for. The engine reads them (engine/data.h, synthetic.h); the
 * dataset userdata is l_data.c's. */
#ifdef TL_LUA_MODULE
#define _GNU_SOURCE /* dladdr: where towerlab.so was loaded from */
#include <dlfcn.h>
#endif
#include "l_datasets.h"

#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "l_data.h"
#include "l_util.h"

/* The directory of the program (/proc/self/exe), or of towerlab.so when
 * the engine was loaded by another Lua with require "towerlab", in dir;
 * returns 0 when it cannot be found. */
static int program_dir(char dir[PATH_MAX])
{
#ifdef TL_LUA_MODULE
    Dl_info info;
    if (!dladdr((void *)program_dir, &info) || !info.dli_fname || !realpath(info.dli_fname, dir)) return 0;
#else
    ssize_t n = readlink("/proc/self/exe", dir, PATH_MAX - 1);
    if (n <= 0) return 0;
    dir[n] = 0;
#endif
    char *slash = strrchr(dir, '/');
    if (!slash) return 0;
    *slash = 0;
    return 1;
}

/* Where the built-in datasets are looked for, so that a script finds them
 * from any working directory (the engine reads no environment variable):
 *   shipped data (census):            $TOWERLAB_DATA, <exe dir>/data,
 *                                     <exe dir>/../data, <exe dir>/../share/towerlab/data,
 *                                     ./data
 *   shared data (movielens, amazon):  $TOWERLAB_DATA, <exe dir>/../shared/data,
 *                                     <exe dir>/../../shared/data, ../shared/data
 * <exe dir> is the directory of /proc/self/exe (the "/.." ones serve build
 * trees such as build-san/ inside the project; ../share/towerlab/data is
 * where `make install PREFIX=p` puts data/ for p/bin/towerlab). Loaded as a
 * Lua module, <exe dir> is towerlab.so's directory, and the shipped data is
 * also looked for in <so dir>/../../../share/towerlab/data (p/lib/lua/5.4/).
 * Pushes and returns the first existing directory <candidate>/<sub>;
 * raises, listing every place tried, when there is none. */
static const char *find_dataset_dir(lua_State *L, const char *fn, const char *sub, int shared)
{
    char exe[PATH_MAX];
    int n = program_dir(exe);
    const char *env = getenv("TOWERLAB_DATA");
    const char *bases[7];
    int nb = 0;
    if (env && *env) {
        /* a mistyped TOWERLAB_DATA must not quietly fall back to other data */
        struct stat eb;
        int missing = stat(env, &eb) != 0;
        if (missing || !S_ISDIR(eb.st_mode))
            luaL_error(L, "%s: TOWERLAB_DATA is '%s', which is not a directory (%s); fix or unset it", fn, env,
                       missing ? strerror(errno) : "not a folder");
        bases[nb++] = env;
    }
    int first_exe = nb;
    if (n > 0) {
        bases[nb++] = shared ? "../shared/data" : "data";
        bases[nb++] = shared ? "../../shared/data" : "../data";
        if (!shared) bases[nb++] = "../share/towerlab/data";
#ifdef TL_LUA_MODULE
        if (!shared) bases[nb++] = "../../../share/towerlab/data";
#endif
    }
    int last_exe = nb;
    bases[nb++] = shared ? "../shared/data" : "data";
    luaL_Buffer tried;
    int top = lua_gettop(L);
    luaL_buffinit(L, &tried);
    for (int i = 0; i < nb; i++) {
        if (i >= first_exe && i < last_exe) lua_pushfstring(L, "%s/%s/%s", exe, bases[i], sub);
        else lua_pushfstring(L, "%s/%s", bases[i], sub);
        struct stat sb;
        if (stat(lua_tostring(L, -1), &sb) == 0 && S_ISDIR(sb.st_mode)) {
            const char *dir = lua_tostring(L, -1);
            lua_replace(L, top + 1); /* over the buffer's slot */
            lua_settop(L, top + 1);
            return dir;
        }
        luaL_addstring(&tried, i ? ", " : "");
        luaL_addvalue(&tried);
    }
    luaL_pushresult(&tried);
    luaL_error(L, "%s: no %s folder found (looked in %s%s); pass its directory, or set TOWERLAB_DATA to the "
                  "directory holding %s/",
               fn, sub, lua_tostring(L, -1), env && *env ? "" : "; TOWERLAB_DATA is not set", sub);
    return NULL;
}

/* tl.datasets.census([dir] or {path=, education=, cache=}) */
static int l_census(lua_State *L)
{
    static const char *fn = "tl.datasets.census";
    const char *dir = NULL;
    int edu = 0, cache = 1;
    if (lua_type(L, 1) == LUA_TSTRING) {
        dir = lua_tostring(L, 1);
    } else if (lua_type(L, 1) == LUA_TTABLE) {
        static const char *const allowed[] = {"path", "education", "cache", NULL};
        tl_lua_check_fields(L, 1, fn, allowed);
        dir = tl_lua_opt_string(L, 1, fn, "path", NULL);
        edu = tl_lua_opt_bool(L, 1, fn, "education", 0);
        cache = tl_lua_opt_bool(L, 1, fn, "cache", 1);
    } else if (!lua_isnoneornil(L, 1)) {
        return luaL_error(L, "%s: argument must be a directory or {path=, education=, cache=}, got %s", fn,
                          luaL_typename(L, 1));
    }
    if (!dir) dir = find_dataset_dir(L, fn, "census_income_kdd", 0);
    tl_dataset **u = tl_lua_new_dataset(L);
    tl_status st = tl_data_census_ex(dir, edu, cache, u);
    if (st) return tl_lua_raise_status(L, fn, st);
    tl_lua_note_alloc(L, tl_dataset_bytes(*u));
    return 1;
}

/* tl.datasets.synthetic{n=, dim=, corr=, m=, scale=, noise=, seed=} */
static int l_synthetic(lua_State *L)
{
    static const char *fn = "tl.datasets.synthetic";
    tl_synthetic_params p;
    tl_synthetic_defaults(&p);
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        static const char *const allowed[] = {"n", "dim", "corr", "m", "scale", "noise", "seed", NULL};
        tl_lua_check_fields(L, 1, fn, allowed);
        p.n = (size_t)tl_lua_opt_int(L, 1, fn, "n", (lua_Integer)p.n, 1, UINT32_MAX);
        p.dim = (int)tl_lua_opt_int(L, 1, fn, "dim", p.dim, 2, 100000);
        p.corr = tl_lua_opt_number(L, 1, fn, "corr", p.corr, -1, 1);
        p.m = (int)tl_lua_opt_int(L, 1, fn, "m", p.m, 0, 1000);
        p.scale = tl_lua_opt_number(L, 1, fn, "scale", p.scale, 0, 1e6);
        p.noise_std = tl_lua_opt_number(L, 1, fn, "noise", p.noise_std, 0, 1e6);
        p.seed = (uint64_t)tl_lua_opt_int(L, 1, fn, "seed", (lua_Integer)p.seed, 0, LUA_MAXINTEGER);
    }
    tl_dataset **u = tl_lua_new_dataset(L);
    tl_status st = tl_data_synthetic(&p, u);
    if (st) return tl_lua_raise_status(L, fn, st);
    tl_lua_note_alloc(L, tl_dataset_bytes(*u));
    return 1;
}

/* tl.datasets.movielens([dir] or {path=, version="1m"|"100k", seed=}) */
static int l_movielens(lua_State *L)
{
    static const char *fn = "tl.datasets.movielens";
    const char *dir = NULL;
    lua_Integer seed = 1;
    if (lua_type(L, 1) == LUA_TSTRING) {
        dir = lua_tostring(L, 1);
    } else if (lua_type(L, 1) == LUA_TTABLE) {
        static const char *const allowed[] = {"path", "version", "seed", NULL};
        static const char *const versions[] = {"1m", "100k", NULL};
        tl_lua_check_fields(L, 1, fn, allowed);
        dir = tl_lua_opt_string(L, 1, fn, "path", NULL);
        int v = tl_lua_opt_enum(L, 1, fn, "version", versions, 0);
        if (!dir) dir = find_dataset_dir(L, fn, v ? "movielens_100k" : "movielens_1m", 1);
        seed = tl_lua_opt_int(L, 1, fn, "seed", 1, 0, LUA_MAXINTEGER);
    } else if (!lua_isnoneornil(L, 1)) {
        return luaL_error(L, "%s: argument must be a directory or {path=, version=, seed=}, got %s", fn,
                          luaL_typename(L, 1));
    }
    if (!dir) dir = find_dataset_dir(L, fn, "movielens_1m", 1);
    tl_dataset **u = tl_lua_new_dataset(L);
    tl_status st = tl_data_movielens(dir, (uint64_t)seed, u);
    if (st) return tl_lua_raise_status(L, fn, st);
    tl_lua_note_alloc(L, tl_dataset_bytes(*u));
    return 1;
}

/* tl.datasets.synthetic_pair{rho=, nested=, rows=, users=, items=, factors=, rate_a=, rate_b=, scale=, seed=} */
static int l_synthetic_pair(lua_State *L)
{
    static const char *fn = "tl.datasets.synthetic_pair";
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        static const char *const allowed[] = {"rho",    "nested", "rows",  "users", "items", "factors",
                                              "rate_a", "rate_b", "scale", "seed",  NULL};
        tl_lua_check_fields(L, 1, fn, allowed);
        p.rho = tl_lua_opt_number(L, 1, fn, "rho", p.rho, -1, 1);
        p.nested = tl_lua_opt_bool(L, 1, fn, "nested", p.nested);
        p.rows = (size_t)tl_lua_opt_int(L, 1, fn, "rows", (lua_Integer)p.rows, 1, UINT32_MAX);
        p.users = (int)tl_lua_opt_int(L, 1, fn, "users", p.users, 1, 10000000);
        p.items = (int)tl_lua_opt_int(L, 1, fn, "items", p.items, 1, 10000000);
        p.factors = (int)tl_lua_opt_int(L, 1, fn, "factors", p.factors, 1, 256);
        p.rate_a = tl_lua_opt_number(L, 1, fn, "rate_a", p.rate_a, 1e-9, 1 - 1e-9);
        p.rate_b = tl_lua_opt_number(L, 1, fn, "rate_b", p.rate_b, 1e-9, 1 - 1e-9);
        p.scale = tl_lua_opt_number(L, 1, fn, "scale", p.scale, 0, 100);
        p.seed = (uint64_t)tl_lua_opt_int(L, 1, fn, "seed", (lua_Integer)p.seed, 0, LUA_MAXINTEGER);
    }
    tl_dataset **u = tl_lua_new_dataset(L);
    tl_status st = tl_data_synthetic_pair(&p, u);
    if (st) return tl_lua_raise_status(L, fn, st);
    tl_lua_note_alloc(L, tl_dataset_bytes(*u));
    return 1;
}

/* tl.datasets.amazon_video_games([dir] or {path=, seed=}) */
static int l_amazon(lua_State *L)
{
    static const char *fn = "tl.datasets.amazon_video_games";
    const char *dir = NULL;
    lua_Integer seed = 1;
    if (lua_type(L, 1) == LUA_TSTRING) {
        dir = lua_tostring(L, 1);
    } else if (lua_type(L, 1) == LUA_TTABLE) {
        static const char *const allowed[] = {"path", "seed", NULL};
        tl_lua_check_fields(L, 1, fn, allowed);
        dir = tl_lua_opt_string(L, 1, fn, "path", NULL);
        seed = tl_lua_opt_int(L, 1, fn, "seed", 1, 0, LUA_MAXINTEGER);
    } else if (!lua_isnoneornil(L, 1)) {
        return luaL_error(L, "%s: argument must be a directory or {path=, seed=}, got %s", fn, luaL_typename(L, 1));
    }
    if (!dir) dir = find_dataset_dir(L, fn, "amazon_video_games_dml", 1);
    tl_dataset **u = tl_lua_new_dataset(L);
    tl_status st = tl_data_amazon_video_games(dir, (uint64_t)seed, u);
    if (st) return tl_lua_raise_status(L, fn, st);
    tl_lua_note_alloc(L, tl_dataset_bytes(*u));
    return 1;
}

/* tl.datasets.aliccp / aliexpress([dir] or {path=, hash=, rows=, valid=, seed=}) */
static int alibaba(lua_State *L, const char *fn, const char *sub,
                   tl_status (*load)(const tl_alibaba_params *, tl_dataset **))
{
    tl_alibaba_params p;
    tl_alibaba_defaults(&p);
    if (lua_type(L, 1) == LUA_TSTRING) {
        p.dir = lua_tostring(L, 1);
    } else if (lua_type(L, 1) == LUA_TTABLE) {
        static const char *const allowed[] = {"path", "hash", "rows", "valid", "seed", NULL};
        tl_lua_check_fields(L, 1, fn, allowed);
        p.dir = tl_lua_opt_string(L, 1, fn, "path", NULL);
        p.hash_buckets = (int)tl_lua_opt_int(L, 1, fn, "hash", 0, 0, INT32_MAX - 1);
        p.max_rows = (size_t)tl_lua_opt_int(L, 1, fn, "rows", 0, 0, UINT32_MAX);
        p.valid = tl_lua_opt_number(L, 1, fn, "valid", p.valid, 0, 1);
        p.seed = (uint64_t)tl_lua_opt_int(L, 1, fn, "seed", (lua_Integer)p.seed, 0, LUA_MAXINTEGER);
    } else if (!lua_isnoneornil(L, 1)) {
        return luaL_error(L, "%s: argument must be a directory or {path=, hash=, rows=, valid=, seed=}, got %s", fn,
                          luaL_typename(L, 1));
    }
    if (!p.dir) p.dir = find_dataset_dir(L, fn, sub, 1);
    tl_dataset **u = tl_lua_new_dataset(L);
    tl_status st = load(&p, u);
    if (st) return tl_lua_raise_status(L, fn, st);
    tl_lua_note_alloc(L, tl_dataset_bytes(*u));
    tl_lua_report_skipped(*u, fn, "sample with a conversion but no click (left out)",
                          "samples with a conversion but no click (left out)");
    return 1;
}

static int l_aliccp(lua_State *L) { return alibaba(L, "tl.datasets.aliccp", "ali_ccp", tl_data_aliccp); }
static int l_aliexpress(lua_State *L) { return alibaba(L, "tl.datasets.aliexpress", "aliexpress", tl_data_aliexpress); }

void tl_lua_open_datasets(lua_State *L, int tl)
{
    static const luaL_Reg fns[] = {
        {"census", l_census},
        {"synthetic", l_synthetic},
        {"movielens", l_movielens},
        {"amazon_video_games", l_amazon},
        {"synthetic_pair", l_synthetic_pair},
        {"aliccp", l_aliccp},
        {"aliexpress", l_aliexpress},
        {NULL, NULL}};
    static const tl_lua_doc_entry docs[] = {
        {"census", "tl.datasets.census",
         "tl.datasets.census([dir] or {path=, education=false, cache=true}) -> dataset\n"
         "UCI Census-Income (KDD), census-income.test.gz (99,762 rows) from dir, else the\n"
         "first census_income_kdd/ in $TOWERLAB_DATA, <program dir>/data, <program dir>/../data,\n"
         "<program dir>/../share/towerlab/data (make install PREFIX=), ./data; from plain Lua\n"
         "(require 'towerlab') <program dir> is towerlab.so's, and <prefix>/share/towerlab/data too.\n"
         "Tasks income (50000+.) and never_married (marital_stat); education=true adds\n"
         "education (bachelors or higher). Source columns and instance_weight dropped.\n"
         "Split by row index i: i%10<8 train (79,810), 8 valid (9,976), 9 test (9,976)."},
        {"synthetic", "tl.datasets.synthetic",
         "tl.datasets.synthetic{n=10000, dim=100, corr=0.5, m=10, scale=1, noise=0.1, seed=1} -> dataset\n"
         "MMoE paper (Ma et al. 2018, 4.2) generator: two regression tasks y1, y2 whose\n"
         "correlation is set by corr = cos(w1, w2), with m sinusoid terms; 8:1:1 split."},
        {"movielens", "tl.datasets.movielens",
         "tl.datasets.movielens([dir] or {path=, version='1m'|'100k', seed=1}) -> dataset\n"
         "MovieLens read in place (never copied) from dir, default the first movielens_1m/\n"
         "(or _100k) in $TOWERLAB_DATA, <program dir>/../shared/data, ../shared/data.\n"
         "Tasks like (rating >= 4, binary) and rating (regression); features\n"
         "user_id, movie_id, gender, age, occupation, zip (3 chars), genre (first), year;\n"
         "group = user; random 8:1:1 split by seed."},
        {"amazon_video_games", "tl.datasets.amazon_video_games",
         "tl.datasets.amazon_video_games([dir] or {path=, seed=1}) -> dataset\n"
         "Amazon Video Games (5-core) as preprocessed by the DML authors (Ren et al. 2023):\n"
         "their Video_Games_val.txt and Video_Games_test.txt (92,712 rows, an i.i.d. 20 %\n"
         "sample of their data) read in place (never copied) from dir, default the first\n"
         "amazon_video_games_dml/ in $TOWERLAB_DATA, <program dir>/../shared/data,\n"
         "../shared/data; concatenated and re-split 8:1:1 at random\n"
         "by seed (default 1): train 74,170, valid 9,271, test 9,271. Tasks rated and like\n"
         "(binary, nested: like => rated); features user_id, item_id; group = user_id."},
        {"synthetic_pair", "tl.datasets.synthetic_pair",
         "tl.datasets.synthetic_pair{rho=0.6, nested=false, rows=200000, seed=1, users=2000,\n"
         "    items=500, factors=4, rate_a=0.3, rate_b=0.3, scale=2} -> dataset\n"
         "User/item interactions with two binary tasks a and b whose latent scores z_a, z_b\n"
         "(made from user/item factors and side features) have correlation rho over the rows;\n"
         "y = Bernoulli(sigmoid(bias + scale z)). nested=true: b only where a (rate_b is then\n"
         "P(b | a)). Zipf-ish user and item popularity. Features user_id, item_id,\n"
         "user_segment, item_category, context; numeric user_activity, item_price, x.\n"
         "Random 8:1:1 split by seed. Same arguments, same bytes (engine/synthetic.h)."},
        {"aliccp", "tl.datasets.aliccp",
         "tl.datasets.aliccp([dir] or {path=, hash=0, rows=0, valid=0.5, seed=1}) -> dataset\n"
         "Ali-CCP (Ma et al., ESMM, SIGIR 2018; Tianchi dataset 408) read in place from dir\n"
         "(default: the first ali_ccp/ in $TOWERLAB_DATA, <program dir>/../shared/data,\n"
         "../shared/data). Either the release: sample_skeleton_{train,test}.csv and\n"
         "common_features_{train,test}.csv (or .csv.gz), joined on common_feature_index; or\n"
         "torch-rechub's ali_ccp_{train,val,test}.csv. Tasks click and conversion (only after a\n"
         "click: a conversion without click is left out, counted in d.skipped). Features: the\n"
         "23 fields of the AITM/ESMM protocol (101 ... 150_14) and D109_14 ... D853, the\n"
         "values of 8 of them. hash=N hashes every field into N buckets; rows=N reads the\n"
         "first N samples of each file; valid= is the share of the test file going to valid."},
        {"aliexpress", "tl.datasets.aliexpress",
         "tl.datasets.aliexpress([dir] or {path=, hash=0, rows=0, valid=0.5, seed=1}) -> dataset\n"
         "AliExpress (Tianchi dataset 74690), one country: train.csv and test.csv as in\n"
         "MTReclib's AliExpress_<country>/ (or torch-rechub's aliexpress_{train,test}.csv):\n"
         "search_id, categorical_1..16, numerical_1..63, click, conversion. Default dir: the\n"
         "first aliexpress/ in $TOWERLAB_DATA, <program dir>/../shared/data, ../shared/data.\n"
         "Tasks click and conversion (only after a click); the test file is split into\n"
         "valid and test (valid=, seed=)."},
    };
    luaL_newlib(L, fns);
    tl_lua_docs(L, -1, docs, sizeof docs / sizeof *docs);
    lua_setfield(L, tl, "datasets");
}
