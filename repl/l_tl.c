/* l_tl.c — the `tl` library: luaopen_towerlab creates the table and calls
 * every binding module's opener. It is the entry point both of the embedded
 * interpreter (main.c) and of the plain Lua module towerlab.so. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "l_tl.h"

#include "core.h"
#include "l_data.h"
#include "l_datasets.h"
#include "l_diagnose.h"
#include "l_export.h"
#include "l_fit.h"
#include "l_io.h"
#include "l_metrics.h"
#include "l_model.h"
#include "l_mpi.h"
#include "l_plot.h"
#include "l_results.h"
#include "l_spec.h"
#include "l_sweep.h"
#include "l_tensor.h"
#include "parallel.h"
#include "l_util.h"

/* The repl/lua files, embedded as C strings by the Makefile ($(BUILD)/gen/lua_embed.c),
 * sorted by file name. */
struct tl_lua_chunk {
    const char *name;
    const char *src;
    size_t len;
};
extern const struct tl_lua_chunk tl_lua_chunks[];
extern const int tl_lua_nchunks;

/* tl.threads([n]): with n > 0 set the BLAS/engine thread count; returns the
 * count in effect. */
static int l_threads(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        lua_Integer n = luaL_checkinteger(L, 1);
        luaL_argcheck(L, n >= 1 && n <= 4096, 1, "thread count must be in 1..4096");
        tl_set_threads((int)n);
    }
    lua_pushinteger(L, tl_get_threads());
    return 1;
}

/* tl.cancelled(): true when Ctrl-C was pressed during the current command
 * (Lua loops that poll can stop cleanly). */
static int l_cancelled(lua_State *L)
{
    lua_pushboolean(L, tl_cancelled());
    return 1;
}

/* private.stdout_is_tty() and private.terminal_rows() (0 when unknown), for
 * help()'s pager. */
static int l_stdout_is_tty(lua_State *L)
{
    lua_pushboolean(L, tl_lua_stdout_is_tty());
    return 1;
}

static int l_terminal_rows(lua_State *L)
{
    struct winsize ws;
    int rows = 0;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) rows = ws.ws_row;
    lua_pushinteger(L, rows);
    return 1;
}

/* tl.seed lives outside the tl table (registry TL_SEED_KEY) so that
 * assignments pass through __newindex and are checked: an integer (or a
 * float with an integral value) in the signed 64-bit range. */
#define TL_SEED_KEY "tl.seed.value"

static int l_tl_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "seed") == 0) {
        lua_getfield(L, LUA_REGISTRYINDEX, TL_SEED_KEY);
        return 1;
    }
    return 0;
}

static int l_tl_newindex(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "seed") == 0) {
        int ok = 0;
        lua_Integer v = lua_tointegerx(L, 3, &ok);
        if (!ok || lua_type(L, 3) != LUA_TNUMBER) {
            if (lua_type(L, 3) == LUA_TNUMBER) {
                lua_Number x = lua_tonumber(L, 3);
                if (x != x) return luaL_error(L, "tl.seed must be an integer, got nan");
                return luaL_error(L, "tl.seed must be an integer, got %s", luaL_tolstring(L, 3, NULL));
            }
            return luaL_error(L, "tl.seed must be an integer, got %s", luaL_typename(L, 3));
        }
        lua_pushinteger(L, v);
        lua_setfield(L, LUA_REGISTRYINDEX, TL_SEED_KEY);
        return 0;
    }
    lua_rawset(L, 1);
    return 0;
}

/* Run the embedded Lua chunks with (tl, docs by name, docs by value,
 * private table). The private table (registry TL_PRIVATE_KEY) holds functions
 * the program uses but users need not see (the tab completer). */
static void run_chunks(lua_State *L, int tl)
{
    for (int i = 0; i < tl_lua_nchunks; i++) {
        const struct tl_lua_chunk *c = &tl_lua_chunks[i];
        char chunkname[96];
        strcpy(chunkname, "=[towerlab] ");
        strncat(chunkname, c->name, sizeof chunkname - strlen(chunkname) - 1);
        if (luaL_loadbufferx(L, c->src, c->len, chunkname, "t") != LUA_OK) lua_error(L);
        lua_pushvalue(L, tl);
        tl_lua_push_docs(L);
        luaL_getsubtable(L, LUA_REGISTRYINDEX, TL_PRIVATE_KEY);
        lua_call(L, 4, 0);
    }
}

int luaopen_towerlab(lua_State *L)
{
    lua_newtable(L);
    int tl = lua_gettop(L);
    lua_pushvalue(L, tl);
    lua_setfield(L, LUA_REGISTRYINDEX, TL_LIB_KEY);

    lua_pushliteral(L, TL_VERSION);
    lua_setfield(L, tl, "version");
    lua_pushinteger(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, TL_SEED_KEY);
    static const luaL_Reg meta[] = {{"__index", l_tl_index}, {"__newindex", l_tl_newindex},
                                    {NULL, NULL}};
    lua_createtable(L, 0, 2);
    luaL_setfuncs(L, meta, 0);
    lua_createtable(L, 1, 0); /* for the REPL's completion: tl.se<TAB> */
    lua_pushliteral(L, "seed");
    lua_rawseti(L, -2, 1);
    lua_setfield(L, -2, "__fields");
    lua_setmetatable(L, tl);
    static const luaL_Reg fns[] = {{"threads", l_threads}, {"cancelled", l_cancelled}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);

    tl_lua_doc(L, "tl", tl,
               "towerlab: multi-task recommender learning.\n"
               "help(x) or ?x shows the documentation of x; help() lists the topics.");
    tl_lua_doc(L, "tl.version", 0, "tl.version: the towerlab version string (" TL_VERSION ")");
    tl_lua_doc(L, "tl.seed", 0,
               "tl.seed = n: the default seed of builders and random tensors (default 1; an\n"
               "integer: tl.seed = 0/0 or 'x' is an error);\n"
               "`towerlab --seed N` sets it. Each call without seed= draws the next seed of\n"
               "a stream that restarts when a draw sees a changed tl.seed, so re-running\n"
               "the same commands is reproducible.");
    lua_getfield(L, tl, "threads");
    tl_lua_doc(L, "tl.threads", -1,
               "tl.threads([n]) -> count: set (n >= 1) and/or get the number of BLAS and\n"
               "engine threads; `towerlab --threads N` sets it at start-up.");
    lua_pop(L, 1);
    lua_getfield(L, tl, "cancelled");
    tl_lua_doc(L, "tl.cancelled", -1,
               "tl.cancelled() -> boolean: Ctrl-C was pressed during this command.");
    lua_pop(L, 1);

    static const luaL_Reg private_fns[] = {{"stdout_is_tty", l_stdout_is_tty},
                                           {"terminal_rows", l_terminal_rows},
                                           {NULL, NULL}};
    luaL_getsubtable(L, LUA_REGISTRYINDEX, TL_PRIVATE_KEY);
    luaL_setfuncs(L, private_fns, 0);
    lua_pop(L, 1);

    tl_lua_open_tensor(L, tl);
    tl_lua_open_data(L, tl);
    tl_lua_open_datasets(L, tl);
    tl_lua_open_metrics(L, tl);
    tl_lua_open_plot(L, tl);
    tl_lua_open_spec(L, tl);
    tl_lua_open_model(L, tl);
    tl_lua_open_fit(L, tl);
    tl_lua_open_results(L, tl);
    tl_lua_open_io(L, tl);
    tl_lua_open_sweep(L, tl);
    tl_lua_open_diagnose(L, tl);
    tl_lua_open_mpi(L, tl);
    tl_lua_open_export(L, tl);

    run_chunks(L, tl);
    lua_settop(L, tl);
    return 1;
}
