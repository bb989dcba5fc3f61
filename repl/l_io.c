/* l_io.c — checkpoints from Lua: tl.load(path) and m:save(path). */
#include <lauxlib.h>
#include <lua.h>
#include <time.h>

#include "l_io.h"

#include "io.h"
#include "l_model.h"
#include "l_mpi.h"
#include "l_util.h"

/* tl.load(path [, {max_memory=}]) -> model. Raises "tl.load: <engine
 * message>" on failure. */
static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    uint64_t max_memory = 0;
    if (!lua_isnoneornil(L, 2)) {
        static const char *const fields[] = {"max_memory", NULL};
        luaL_checktype(L, 2, LUA_TTABLE);
        tl_lua_check_fields(L, 2, "tl.load", fields);
        max_memory = tl_lua_opt_bytes(L, 2, "tl.load", "max_memory");
    }
    tl_model *m = NULL;
    tl_lua_memory_refresh();
    tl_status s = tl_model_load_limit(path, max_memory, &m);
    if (s != TL_OK) return tl_lua_raise_status(L, "tl.load", s);
    tl_lua_push_model(L, m, 0);
    return 1;
}

/* m:save(path) -> m. Atomic: a failed save leaves an existing file intact.
 * Under mpirun only rank 0 writes (tl_lua_mpi_writes). */
static int l_save(lua_State *L)
{
    tl_model *m = tl_lua_check_model(L, 1);
    const char *path = luaL_checkstring(L, 2);
    tl_status s = tl_lua_mpi_writes() ? tl_model_save(m, path) : TL_OK;
    if (s != TL_OK) return tl_lua_raise_status(L, "m:save", s);
    lua_settop(L, 1);
    return 1;
}

void tl_lua_open_io(lua_State *L, int tl)
{
    /* the state opens as the program starts: temporaries of saves killed
     * before then are stale */
    static int started;
    struct timespec now;
    if (!started && clock_gettime(CLOCK_REALTIME, &now) == 0) {
        tl_io_set_process_start((double)now.tv_sec + 1e-9 * (double)now.tv_nsec);
        started = 1;
    }
    lua_pushcfunction(L, l_load);
    lua_setfield(L, tl, "load");
    tl_lua_model_method(L, "save", l_save);
    lua_getfield(L, tl, "load");
    tl_lua_doc(L, "tl.load", -1,
               "tl.load(path [, {max_memory=\"64G\"}]) -> model: read a checkpoint written by m:save. The model comes\n"
               "back with its configuration, parameters, optimizer state, loss weights,\n"
               "weighting state and history, and continues training exactly where it\n"
               "stopped (m:fit on a split with the same feature layout). A truncated or\n"
               "corrupted file, a wrong magic or a newer format version is an error saying\n"
               "which, and so is a field out of range (named with its section); nothing in\n"
               "the file is ever executed. A FIFO or device is refused without blocking. The\n"
               "model's memory is checked as tl.model checks it (max_memory= overrides).");
    lua_pop(L, 1);
    luaL_getmetatable(L, TL_MODEL_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, "save");
    tl_lua_doc(L, "m:save", lua_gettop(L),
               "m:save(path) -> m: write a checkpoint (versioned, CRC32-checked). The file is\n"
               "written to a temporary file in the same directory and renamed, so a crash or\n"
               "a full disk leaves the previous checkpoint whole. Ctrl-C takes effect after\n"
               "the file is complete. A process killed while saving (kill -9, power loss)\n"
               "may leave a stale path.tmp.XXXXXX beside it: never read, and removed by the\n"
               "next save to path from a later process. A symbolic link at path is followed;\n"
               "a directory, device or FIFO there is refused. Load with tl.load(path).\n"
               "Under mpirun only rank 0 writes (tl.mpi.all_ranks_write(true): every rank).");
    lua_pop(L, 3);
}
