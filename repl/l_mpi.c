/* l_mpi.c — tl.mpi over Open MPI. Values travel as a byte string of our own
 * format (tags below), so any MPI moves them as MPI_BYTE: numbers (integer
 * or float, exact bits), strings, booleans and tables of them, nested. A
 * function, userdata or thread is refused with the key path where it sits.
 * MPI is initialised only when a launcher (mpirun, srun) started us, so a
 * plain `towerlab script.lua` never touches the MPI runtime. */
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "dist.h"
#include "l_model.h"
#include "l_mpi.h"
#include "l_util.h"
#include "model.h"

#ifdef TL_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_mpi = 0, g_all_print = 0, g_all_write = 0;
static pid_t g_pid; /* the rank's own process: a forked sweep run is not a rank */
static volatile sig_atomic_t g_in_fit;

/* SIGUSR1 (which mpirun forwards to every rank) and SIGTERM (Slurm's
 * scancel, mpirun's own stop): during a data-parallel fit they raise the
 * engine's cancellation flag, and the ranks agree to stop at the next step
 * (rank 0 saves fit{checkpoint=}); at any other time they keep their
 * default action (the process ends). */
#if defined(TL_HAVE_MPI) && !defined(TL_LUA_MODULE)
static void on_stop_signal(int sig)
{
    if (g_in_fit) {
        tl_cancel_request();
        return;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}
#endif

/* Test only (tests/mpi/test_dp_fail_alloc.sh), not part of tl.mpi: the
 * n-th engine allocation of this process's next data-parallel fit fails
 * (core.h tl_fault_inject_nth), set by private.mpi_test_fault(n). */
static uint64_t g_fault_nth;
static int g_fault_fired;

void tl_lua_mpi_fit_running(int on)
{
    g_in_fit = on;
    if (on && g_fault_nth) {
        tl_fault_inject_nth(g_fault_nth);
    } else if (!on && g_fault_nth) {
        g_fault_fired = tl_fault_injected();
        tl_fault_inject_nth(0);
        g_fault_nth = 0;
    }
}

/* private.mpi_test_fault(n): arm the fault for the next data-parallel fit
 * (n >= 1; 0 disarms); private.mpi_test_fault(): whether the last armed
 * fault happened. */
static int l_test_fault(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_pushboolean(L, g_fault_fired);
        return 1;
    }
    lua_Integer n = luaL_checkinteger(L, 1);
    g_fault_nth = n > 0 ? (uint64_t)n : 0;
    g_fault_fired = 0;
    return 0;
}

int tl_lua_mpi_quiet(void) { return g_rank != 0 && !g_all_print; }

/* A forked sweep run is not a rank: it writes its own files. */
int tl_lua_mpi_writes(void) { return g_rank == 0 || g_all_write || !g_mpi || getpid() != g_pid; }

/* ---- serialiser ------------------------------------------------------------ */
enum { T_FALSE = 'f', T_TRUE = 't', T_INT = 'i', T_FLT = 'd', T_STR = 's', T_TAB = 'T', T_END = 'e' };
#define MAX_DEPTH 64

typedef struct {
    unsigned char *p;
    size_t n, cap;
    char err[400];
} sbuf;

static int put(sbuf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            snprintf(b->err, sizeof b->err, "out of memory");
            return -1;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

static int put_tag(sbuf *b, int tag)
{
    unsigned char c = (unsigned char)tag;
    return put(b, &c, 1);
}

/* Append the key at stack index -2 (during lua_next) to path. */
static void path_push(lua_State *L, char *path, size_t cap)
{
    size_t len = strlen(path);
    if (lua_type(L, -2) == LUA_TSTRING)
        snprintf(path + len, cap - len, ".%s", lua_tostring(L, -2));
    else if (lua_isinteger(L, -2))
        snprintf(path + len, cap - len, "[%lld]", (long long)lua_tointeger(L, -2));
    else if (lua_type(L, -2) == LUA_TNUMBER)
        snprintf(path + len, cap - len, "[%.17g]", lua_tonumber(L, -2));
    else
        snprintf(path + len, cap - len, "[%s]", luaL_typename(L, -2));
}

/* The value at stack index idx (absolute) into b; path names it ("value" at
 * the top). A table's keys must be strings, numbers or booleans. */
static int ser(lua_State *L, int idx, sbuf *b, char *path, size_t cap, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return put_tag(b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            int64_t v = (int64_t)lua_tointeger(L, idx);
            return put_tag(b, T_INT) || put(b, &v, sizeof v) ? -1 : 0;
        } else {
            double v = (double)lua_tonumber(L, idx);
            return put_tag(b, T_FLT) || put(b, &v, sizeof v) ? -1 : 0;
        }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        uint64_t n = len;
        return put_tag(b, T_STR) || put(b, &n, sizeof n) || put(b, s, len) ? -1 : 0;
    }
    case LUA_TTABLE: {
        if (depth >= MAX_DEPTH) {
            snprintf(b->err, sizeof b->err, "%s: tables nested deeper than %d (a cycle?)", path, MAX_DEPTH);
            return -1;
        }
        if (!lua_checkstack(L, 4)) {
            snprintf(b->err, sizeof b->err, "%s: Lua stack overflow", path);
            return -1;
        }
        if (put_tag(b, T_TAB)) return -1;
        size_t len = strlen(path);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            int kt = lua_type(L, -2);
            path_push(L, path, cap);
            if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
                snprintf(b->err, sizeof b->err, "%s: a %s key cannot be sent (keys: strings, numbers, booleans)",
                         path, lua_typename(L, kt));
                return -1;
            }
            /* the key copied first: ser must not convert the lua_next key in place */
            lua_pushvalue(L, -2);
            if (ser(L, lua_gettop(L), b, path, cap, depth + 1) ||
                ser(L, lua_gettop(L) - 1, b, path, cap, depth + 1))
                return -1;
            lua_pop(L, 2);
            path[len] = '\0';
        }
        return put_tag(b, T_END);
    }
    default:
        snprintf(b->err, sizeof b->err, "%s: a %s cannot be sent (only numbers, strings, booleans and tables of them)",
                 path, luaL_typename(L, idx));
        return -1;
    }
}

/* Serialise the value at idx into a malloc'd buffer (*out, *n); raises a Lua
 * error naming `fn` and the key path on a value that cannot be sent. */
static void serialise(lua_State *L, int idx, const char *fn, unsigned char **out, size_t *n)
{
    sbuf b = {0};
    char path[256] = "value";
    int top = lua_gettop(L);
    if (lua_isnone(L, idx)) lua_pushnil(L), idx = lua_gettop(L);
    if (lua_isnil(L, idx)) {
        free(b.p);
        luaL_error(L, "%s: value: nil cannot be sent (send a table, number, string or boolean)", fn);
    }
    if (ser(L, lua_absindex(L, idx), &b, path, sizeof path, 0)) {
        lua_settop(L, top);
        free(b.p);
        luaL_error(L, "%s: %s", fn, b.err);
    }
    lua_settop(L, top);
    *out = b.p;
    *n = b.n;
}

typedef struct {
    const unsigned char *p;
    size_t n, at;
} rbuf;

static int get(rbuf *r, void *dst, size_t n)
{
    if (r->n - r->at < n) return -1;
    memcpy(dst, r->p + r->at, n);
    r->at += n;
    return 0;
}

/* Push one value from r; -1 on a malformed buffer (a bug, never user input). */
static int des(lua_State *L, rbuf *r, int depth)
{
    unsigned char tag;
    if (depth > MAX_DEPTH + 1 || !lua_checkstack(L, 4) || get(r, &tag, 1)) return -1;
    switch (tag) {
    case T_FALSE: lua_pushboolean(L, 0); return 0;
    case T_TRUE: lua_pushboolean(L, 1); return 0;
    case T_INT: {
        int64_t v;
        if (get(r, &v, sizeof v)) return -1;
        lua_pushinteger(L, (lua_Integer)v);
        return 0;
    }
    case T_FLT: {
        double v;
        if (get(r, &v, sizeof v)) return -1;
        lua_pushnumber(L, (lua_Number)v);
        return 0;
    }
    case T_STR: {
        uint64_t n;
        if (get(r, &n, sizeof n) || r->n - r->at < n) return -1;
        lua_pushlstring(L, (const char *)r->p + r->at, (size_t)n);
        r->at += (size_t)n;
        return 0;
    }
    case T_TAB:
        lua_newtable(L);
        for (;;) {
            if (r->at >= r->n) return -1;
            if (r->p[r->at] == T_END) {
                r->at++;
                return 0;
            }
            if (des(L, r, depth + 1) || des(L, r, depth + 1)) return -1;
            lua_rawset(L, -3);
        }
    default:
        return -1;
    }
}

/* Push the value in buf (n bytes) and free buf; raises on a malformed
 * buffer (a bug, never user input: only serialise writes these). */
static void push_free(lua_State *L, const char *fn, unsigned char *buf, size_t n)
{
    rbuf r = {buf, n, 0};
    int top = lua_gettop(L);
    int bad = des(L, &r, 0) || r.at != n;
    free(buf);
    if (bad) {
        lua_settop(L, top);
        luaL_error(L, "%s: received a malformed value (%d bytes)", fn, (int)n);
    }
}

/* ---- MPI ------------------------------------------------------------------- */
#ifdef TL_HAVE_MPI
static void mpi_check(lua_State *L, int rc, const char *fn)
{
    if (rc != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(rc, msg, &len);
        luaL_error(L, "%s: rank %d: MPI error: %s", fn, g_rank, msg);
    }
}

/* A launcher's environment: Open MPI's mpirun, or a PMI/PMIx one (srun). */
static int launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

/* At exit. A rank that fails (a Lua error ends the script, os.exit(1))
 * while the others wait in a collective would leave them waiting, and
 * MPI_Finalize would wait for them: MPI_Abort ends every rank instead
 * (mpirun then reports the exit code). A clean exit finalizes. */
static void mpi_exit(int status, void *arg)
{
    (void)arg;
    int fin = 0;
    if (getpid() != g_pid) return; /* a forked child: the rank is its parent */
    MPI_Finalized(&fin);
    if (fin) return;
    if (status != 0 && g_size > 1) {
        fprintf(stderr, "towerlab: rank %d of %d failed (exit status %d): stopping every rank (MPI_Abort)\n",
                g_rank, g_size, status);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    MPI_Finalize();
}
#endif

/* ---- the engine's tl_dist over MPI_COMM_WORLD (dist.h) ------------------------- */
#ifdef TL_HAVE_MPI
static tl_status dist_fail(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return tl_fail(TL_ERR_IO, "%s: rank %d: MPI error: %s", what, g_rank, msg);
}

static tl_status dist_allgather(void *ud, const void *send, size_t n, void *recv)
{
    (void)ud;
    if (n > INT32_MAX) return tl_fail(TL_ERR_ARG, "MPI_Allgather: %zu bytes above the 2 GiB limit", n);
    int rc = MPI_Allgather(send, (int)n, MPI_BYTE, recv, (int)n, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? TL_OK : dist_fail(rc, "MPI_Allgather");
}

/* The counts and displacements of MPI_Allgatherv and MPI_Alltoallv (4 per
 * rank), allocated with the group (tl_lua_open_mpi): a rank never fails on
 * its own between the engine's record exchange and the collective. */
static int *g_ints;

static tl_status dist_allgatherv(void *ud, const void *send, void *recv, const size_t *counts)
{
    (void)ud;
    int *c = g_ints, *offs = c + g_size;
    size_t total = 0;
    for (int r = 0; r < g_size; r++) {
        offs[r] = (int)total;
        c[r] = (int)counts[r];
        total += counts[r];
    }
    if (total > INT32_MAX) return tl_fail(TL_ERR_ARG, "MPI_Allgatherv: %zu bytes in all, above the 2 GiB limit", total);
    int rc = MPI_Allgatherv(send, c[g_rank], MPI_BYTE, recv, c, offs, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? TL_OK : dist_fail(rc, "MPI_Allgatherv");
}

static tl_status dist_broadcast(void *ud, void *buf, size_t n, int root)
{
    (void)ud;
    if (n > INT32_MAX) return tl_fail(TL_ERR_ARG, "MPI_Bcast: %zu bytes above the 2 GiB limit", n);
    int rc = MPI_Bcast(buf, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? TL_OK : dist_fail(rc, "MPI_Bcast");
}

static tl_status dist_alltoallv(void *ud, const void *send, const size_t *send_counts, void *recv,
                                const size_t *recv_counts)
{
    (void)ud;
    int *c = g_ints, *sd = c + g_size, *rc_ = c + 2 * g_size, *rd = c + 3 * g_size;
    size_t st = 0, rt = 0;
    for (int r = 0; r < g_size; r++) {
        c[r] = (int)send_counts[r], sd[r] = (int)st, st += send_counts[r];
        rc_[r] = (int)recv_counts[r], rd[r] = (int)rt, rt += recv_counts[r];
    }
    if (st > INT32_MAX || rt > INT32_MAX) return tl_fail(TL_ERR_ARG, "MPI_Alltoallv: more than 2 GiB in all");
    int rc = MPI_Alltoallv(send, c, sd, MPI_BYTE, recv, rc_, rd, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? TL_OK : dist_fail(rc, "MPI_Alltoallv");
}
#endif

static tl_dist g_dist;

tl_dist *tl_lua_mpi_dist(void)
{
#ifdef TL_HAVE_MPI
    if (!g_mpi || getpid() != g_pid) return NULL;
    if (!g_dist.allgather) {
        g_dist.rank = g_rank;
        g_dist.size = g_size;
        g_dist.allgather = dist_allgather;
        g_dist.allgatherv = dist_allgatherv;
        g_dist.broadcast = dist_broadcast;
        g_dist.alltoallv = dist_alltoallv;
    }
    return &g_dist;
#else
    return NULL;
#endif
}

/* tl.mpi.stats([reset]): {seconds, bytes, calls} spent in the engine's
 * collectives (data-parallel fit, distributed predict) on this rank. */
static int l_stats(lua_State *L)
{
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, g_dist.comm_seconds);
    lua_setfield(L, -2, "seconds");
    lua_pushinteger(L, (lua_Integer)g_dist.comm_bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushinteger(L, (lua_Integer)g_dist.comm_calls);
    lua_setfield(L, -2, "calls");
    if (lua_toboolean(L, 1)) g_dist.comm_seconds = 0, g_dist.comm_bytes = g_dist.comm_calls = 0;
    return 1;
}

/* tl.mpi.wtime(): wall-clock seconds (a monotonic clock), for timing. */
static int l_wtime(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
    return 1;
}

/* tl.mpi.distribute(m [, on=true]): m:predict and m:evaluate share their
 * rows among the ranks (every rank must call them together; each gets the
 * one-process numbers). Off again with on=false. */
static int l_distribute(lua_State *L)
{
    tl_lua_model *lm = tl_lua_check_model_ud(L, 1);
    int on = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    if (!lm->m) return luaL_error(L, "tl.mpi.distribute: the model is closed");
    tl_model_set_dist(lm->m, on ? tl_lua_mpi_dist() : NULL);
    return 0;
}

static int check_root(lua_State *L, int arg, const char *fn)
{
    lua_Integer root = luaL_optinteger(L, arg, 0);
    if (root < 0 || root >= g_size)
        luaL_error(L, "%s: root %I is not a rank (0..%d)", fn, root, g_size - 1);
    return (int)root;
}

/* tl.mpi.barrier(): every rank waits for every other. */
static int l_barrier(lua_State *L)
{
#ifdef TL_HAVE_MPI
    if (g_mpi) mpi_check(L, MPI_Barrier(MPI_COMM_WORLD), "tl.mpi.barrier");
#else
    (void)L;
#endif
    return 0;
}

/* tl.mpi.broadcast(v [, root=0]): root's v on every rank (the others' v is
 * ignored and may be nil). */
static int l_broadcast(lua_State *L)
{
    const char *fn = "tl.mpi.broadcast";
    int root = check_root(L, 2, fn);
    unsigned char *buf = NULL;
    size_t n = 0;
    if (g_rank == root) serialise(L, 1, fn, &buf, &n);
#ifdef TL_HAVE_MPI
    if (g_mpi) {
        unsigned long long len = n;
        mpi_check(L, MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD), fn);
        if (len > (unsigned long long)INT32_MAX) {
            free(buf);
            luaL_error(L, "%s: value of %.0f bytes is above the 2 GiB MPI limit", fn, (double)len);
        }
        if (g_rank != root) {
            buf = malloc(len ? len : 1);
            if (!buf) luaL_error(L, "%s: out of memory", fn);
        }
        n = (size_t)len;
        int rc = MPI_Bcast(buf, (int)len, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) free(buf);
        mpi_check(L, rc, fn);
    }
#endif
    /* a copy even on the root and with one process: every rank gets the
     * same kind of value (a fresh table), and errors show without mpirun */
    push_free(L, fn, buf, n);
    return 1;
}

/* Gather every rank's serialised v: on the ranks that receive (root, or all
 * when root < 0) a table {[1] = rank 0's v, ...}; nil on the others. */
static int gather(lua_State *L, const char *fn, int root)
{
    unsigned char *buf = NULL;
    size_t n = 0;
    (void)root; /* without MPI only the one-process world */
    serialise(L, 1, fn, &buf, &n);
    if (!g_mpi) {
        lua_createtable(L, 1, 0);
        push_free(L, fn, buf, n);
        lua_rawseti(L, -2, 1);
        return 1;
    }
#ifdef TL_HAVE_MPI
    if (n > (size_t)INT32_MAX) {
        free(buf);
        luaL_error(L, "%s: value of %.0f bytes is above the 2 GiB MPI limit", fn, (double)n);
    }
    int len = (int)n, recv = root < 0 || g_rank == root;
    int *lens = malloc(sizeof(int) * 2 * (size_t)g_size);
    if (!lens) {
        free(buf);
        luaL_error(L, "%s: out of memory", fn);
    }
    int *offs = lens + g_size;
    int rc = root < 0 ? MPI_Allgather(&len, 1, MPI_INT, lens, 1, MPI_INT, MPI_COMM_WORLD)
                      : MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, root, MPI_COMM_WORLD);
    unsigned char *all = NULL;
    if (rc == MPI_SUCCESS && recv) {
        long long total = 0;
        for (int i = 0; i < g_size; i++) offs[i] = (int)total, total += lens[i];
        if (total > INT32_MAX) {
            free(buf), free(lens);
            luaL_error(L, "%s: %.0f bytes in all is above the 2 GiB MPI limit", fn, (double)total);
        }
        all = malloc(total ? (size_t)total : 1);
        if (!all) {
            free(buf), free(lens);
            luaL_error(L, "%s: out of memory", fn);
        }
    }
    if (rc == MPI_SUCCESS)
        rc = root < 0 ? MPI_Allgatherv(buf, len, MPI_BYTE, all, lens, offs, MPI_BYTE, MPI_COMM_WORLD)
                      : MPI_Gatherv(buf, len, MPI_BYTE, all, lens, offs, MPI_BYTE, root, MPI_COMM_WORLD);
    free(buf);
    if (rc != MPI_SUCCESS) free(all), free(lens);
    mpi_check(L, rc, fn);
    if (!recv) {
        free(lens);
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, g_size, 0);
    for (int i = 0; i < g_size; i++) {
        rbuf r = {all + offs[i], (size_t)lens[i], 0};
        if (des(L, &r, 0) || r.at != r.n) {
            free(all), free(lens);
            luaL_error(L, "%s: received a malformed value from rank %d", fn, i);
        }
        lua_rawseti(L, -2, i + 1);
    }
    free(all), free(lens);
#endif
    return 1;
}

/* tl.mpi.gather(v [, root=0]): on root {rank 0's v, rank 1's v, ...}
 * (index rank+1); nil elsewhere. */
static int l_gather(lua_State *L)
{
    return gather(L, "tl.mpi.gather", check_root(L, 2, "tl.mpi.gather"));
}

/* tl.mpi.allgather(v): the gather table on every rank. */
static int l_allgather(lua_State *L)
{
    return gather(L, "tl.mpi.allgather", -1);
}

/* tl.mpi.all_ranks_print([on]): with on, let every rank print the training
 * log (default: rank 0 only); returns the setting. */
static int l_all_ranks_print(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TBOOLEAN);
        g_all_print = lua_toboolean(L, 1);
    }
    lua_pushboolean(L, g_all_print);
    return 1;
}

/* tl.mpi.all_ranks_write([on]): with on, m:save, m:export and the plots
 * write their files on every rank (default: rank 0 only); returns the
 * setting. */
static int l_all_ranks_write(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TBOOLEAN);
        g_all_write = lua_toboolean(L, 1);
    }
    lua_pushboolean(L, g_all_write);
    return 1;
}

/* ---- distributed tl.sweep (private.sweep_exec_mpi) ---------------------------
 * Rank 0 schedules, the other ranks run: a worker asks for a job (READY),
 * gets its number (TASK; 0 = no more), runs it in a forked process through
 * private.sweep_exec (so a run that crashes or is killed loses only itself:
 * its row fails) and sends the result line (RESULT), which rank 0 hands to
 * done() (the CSV row, the progress line). Jobs go out in order as workers
 * free up. */
#ifdef TL_HAVE_MPI
enum { TAG_READY = 7101, TAG_TASK, TAG_RESULT };

static int job_wrap(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_call(L, 1, 1);
    return 1;
}

static int done_wrap(lua_State *L) /* (i, line, err, wall): kept in the upvalue table */
{
    lua_settop(L, 4);
    lua_pushvalue(L, 2);
    lua_setfield(L, lua_upvalueindex(1), "line");
    lua_pushvalue(L, 3);
    lua_setfield(L, lua_upvalueindex(1), "err");
    lua_pushvalue(L, 4);
    lua_setfield(L, lua_upvalueindex(1), "wall");
    return 0;
}

/* Worker: run job `task` (the job function at index 3) in a forked process;
 * the result message is [ok byte][wall double][int32 task][text]. */
static void sweep_run_one(lua_State *L, int32_t task)
{
    lua_newtable(L); /* what done_wrap keeps */
    int res = lua_gettop(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, TL_PRIVATE_KEY);
    lua_getfield(L, -1, "sweep_exec");
    lua_pushinteger(L, 1);
    lua_pushinteger(L, 2); /* jobs > 1: the run goes to a forked worker */
    lua_pushvalue(L, 3);
    lua_pushinteger(L, task);
    lua_pushcclosure(L, job_wrap, 2);
    lua_pushvalue(L, res);
    lua_pushcclosure(L, done_wrap, 1);
    int st = lua_pcall(L, 4, 1, 0);
    size_t len = 0;
    const char *text;
    char ok = 0;
    double wall = 0.0;
    if (st != LUA_OK) {
        text = lua_tolstring(L, -1, &len);
    } else {
        lua_getfield(L, res, "wall");
        wall = lua_tonumber(L, -1);
        lua_getfield(L, res, "line");
        ok = lua_isstring(L, -1);
        if (!ok) lua_getfield(L, res, "err");
        text = lua_tolstring(L, -1, &len);
        if (!text) text = "the run gave no result", len = strlen(text);
    }
    size_t n = 1 + sizeof wall + sizeof task + len;
    unsigned char *msg = malloc(n);
    if (!msg) luaL_error(L, "tl.sweep: rank %d: out of memory", g_rank);
    msg[0] = (unsigned char)ok;
    memcpy(msg + 1, &wall, sizeof wall);
    memcpy(msg + 1 + sizeof wall, &task, sizeof task);
    memcpy(msg + 1 + sizeof wall + sizeof task, text, len);
    int rc = MPI_Send(msg, (int)n, MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD);
    free(msg);
    mpi_check(L, rc, "tl.sweep");
    lua_settop(L, 4);
}

/* private.sweep_exec_mpi(n, jobs, job, done) -> "done" | "interrupted" (on
 * rank 0; "done" on the workers, which call no done()). */
static int l_sweep_exec_mpi(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    lua_settop(L, 4);
    if (!g_mpi || g_size < 2) return luaL_error(L, "tl.sweep: sweep_exec_mpi needs more than one rank");
    if (g_rank != 0) {
        mpi_check(L, MPI_Send(NULL, 0, MPI_BYTE, 0, TAG_READY, MPI_COMM_WORLD), "tl.sweep");
        for (;;) {
            int32_t task = 0;
            mpi_check(L, MPI_Recv(&task, 1, MPI_INT32_T, 0, TAG_TASK, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "tl.sweep");
            if (task == 0) break;
            sweep_run_one(L, task);
        }
        lua_pushliteral(L, "done");
        return 1;
    }
    int live = g_size - 1, stop = 0;
    lua_Integer next = 1;
    while (live > 0) {
        int flag = 0;
        MPI_Status ms;
        mpi_check(L, MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &ms), "tl.sweep");
        if (!flag) { /* Ctrl-C: no new jobs, the running ones finish */
            if (tl_cancelled()) stop = 1;
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
            continue;
        }
        int len = 0;
        MPI_Get_count(&ms, MPI_BYTE, &len);
        unsigned char *msg = malloc(len > 0 ? (size_t)len : 1);
        if (!msg) return luaL_error(L, "tl.sweep: out of memory");
        int rc = MPI_Recv(msg, len, MPI_BYTE, ms.MPI_SOURCE, ms.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) free(msg);
        mpi_check(L, rc, "tl.sweep");
        if (ms.MPI_TAG == TAG_RESULT && len >= (int)(1 + sizeof(double) + sizeof(int32_t))) {
            double wall;
            int32_t task;
            memcpy(&wall, msg + 1, sizeof wall);
            memcpy(&task, msg + 1 + sizeof wall, sizeof task);
            const char *text = (const char *)msg + 1 + sizeof wall + sizeof task;
            size_t tlen = (size_t)len - 1 - sizeof wall - sizeof task;
            lua_pushvalue(L, 4);
            lua_pushinteger(L, task);
            if (msg[0]) lua_pushlstring(L, text, tlen), lua_pushnil(L);
            else lua_pushnil(L), lua_pushlstring(L, text, tlen);
            lua_pushnumber(L, wall);
            free(msg);
            lua_call(L, 4, 0); /* an error in done() ends the script: MPI_Abort at exit */
        } else {
            free(msg);
        }
        if (tl_cancelled()) stop = 1;
        int32_t task = !stop && next <= n ? (int32_t)next++ : 0;
        if (task == 0) live--;
        mpi_check(L, MPI_Send(&task, 1, MPI_INT32_T, ms.MPI_SOURCE, TAG_TASK, MPI_COMM_WORLD), "tl.sweep");
    }
    if (stop) lua_pushliteral(L, "interrupted");
    else lua_pushliteral(L, "done");
    return 1;
}
#endif

void tl_lua_open_mpi(lua_State *L, int tl)
{
#ifdef TL_HAVE_MPI
    int init = 0;
    MPI_Initialized(&init);
    if (!init && launched()) {
        if (MPI_Init(NULL, NULL) == MPI_SUCCESS) {
            init = 1;
            on_exit(mpi_exit, NULL);
        } else {
            fprintf(stderr, "tl.mpi: MPI_Init failed; running as one process\n");
        }
    }
    if (init) {
#ifndef TL_LUA_MODULE /* a Lua module leaves the host's signals alone */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
#endif
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
        g_pid = getpid();
        MPI_Comm_size(MPI_COMM_WORLD, &g_size);
        g_mpi = 1;
        /* the engine's receive buffers, before any script runs: a rank that
         * cannot have them ends here, and mpi_exit stops every rank */
        g_dist.rank = g_rank;
        g_dist.size = g_size;
        if (!g_ints) g_ints = malloc(4 * sizeof(int) * (size_t)g_size);
        if (!g_ints) tl_fail(TL_ERR_NOMEM, "out of memory for the collectives' counts");
        if (!g_ints || tl_dist_init(&g_dist) != TL_OK) {
            fprintf(stderr, "towerlab: rank %d: %s\n", g_rank, tl_errmsg());
            exit(1);
        }
    }
#endif
    luaL_getsubtable(L, LUA_REGISTRYINDEX, TL_PRIVATE_KEY);
    lua_pushcfunction(L, l_test_fault);
    lua_setfield(L, -2, "mpi_test_fault");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"barrier", l_barrier},     {"broadcast", l_broadcast},
                                   {"gather", l_gather},       {"allgather", l_allgather},
                                   {"all_ranks_print", l_all_ranks_print},
                                   {"all_ranks_write", l_all_ranks_write}, {"stats", l_stats},
                                   {"distribute", l_distribute}, {"wtime", l_wtime}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushinteger(L, g_rank);
    lua_setfield(L, -2, "rank");
    lua_pushinteger(L, g_size);
    lua_setfield(L, -2, "size");
#ifdef TL_HAVE_MPI
    lua_pushboolean(L, 1);
#else
    lua_pushboolean(L, 0);
#endif
    lua_setfield(L, -2, "available"); /* built with MPI (whether or not launched by mpirun) */
    lua_pushboolean(L, g_mpi);
    lua_setfield(L, -2, "active");
    lua_setfield(L, tl, "mpi");
#ifdef TL_HAVE_MPI
    if (g_mpi && g_size > 1) { /* tl.sweep hands its runs to the ranks */
        luaL_getsubtable(L, LUA_REGISTRYINDEX, TL_PRIVATE_KEY);
        lua_pushcfunction(L, l_sweep_exec_mpi);
        lua_setfield(L, -2, "sweep_exec_mpi");
        lua_pop(L, 1);
    }
#endif
}
