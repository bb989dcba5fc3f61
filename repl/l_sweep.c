/* l_sweep.c — the process pool behind tl.sweep (the Lua side, grids, CSV and
 * summaries, is repl/lua/sweep.lua).
 *
 * private.sweep_exec(n, jobs, job, done) -> "done" | "interrupted"
 *   Runs job(i) for i = 1..n. With jobs == 1 in this process; otherwise in up
 *   to `jobs` forked worker processes at a time. A worker inherits the whole
 *   Lua state, calls job(i) (which returns one line of text: the encoded
 *   result), writes the line to a pipe and _exit()s. The parent polls the
 *   pipes, reaps the workers and calls done(i, line, err, wall_seconds) for
 *   each finished job, in finishing order: `line` is the worker's line, or nil
 *   with `err` describing a worker that died without one (signal, exit).
 *   A worker that fails to produce a string sends "error<TAB>message" itself.
 *
 *   Ctrl-C (the engine's cancellation flag, tl_cancelled()) stops launching
 *   new jobs, sends SIGTERM to the running workers and reaps them (SIGKILL
 *   after 2 s), clears the flag and the pending Lua interrupt hook, and
 *   returns "interrupted": the caller reports it. A job finished in-process
 *   while the flag was raised is discarded (its run was cut short).
 *   An error raised by done() (other than the interrupt) stops the workers
 *   the same way and is re-raised.
 *
 * private.getpid() -> the process id (tests signal the sweeping process).
 * private.mkdirs(dir) -> true | nil, message: mkdir -p (for out="runs/x").
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "l_sweep.h"

#include "core.h"
#include "l_util.h"
#include "parallel.h"

#define POOL_MT "tl.sweep.pool"

typedef struct {
    pid_t pid; /* 0: free slot */
    int fd;    /* read end of the worker's pipe */
    int job;
    char *buf;
    size_t len, cap;
    double t0;
} worker;

typedef struct {
    pid_t owner; /* the process that forked the workers */
    int n;
    worker *w;
} pool;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void free_slot(worker *w)
{
    if (w->fd >= 0) close(w->fd);
    free(w->buf);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

static void wait_pid(pid_t pid, int *st)
{
    while (waitpid(pid, st, 0) < 0 && errno == EINTR) {
    }
}

/* SIGTERM every running worker, give them 2 s, SIGKILL the rest, reap all. */
static void stop_all(pool *p)
{
    if (!p->w || p->owner != getpid()) return;
    int any = 0;
    for (int i = 0; i < p->n; i++)
        if (p->w[i].pid > 0) {
            kill(p->w[i].pid, SIGTERM);
            any = 1;
        }
    if (any) {
        double deadline = now_seconds() + 2.0;
        for (;;) {
            int left = 0;
            for (int i = 0; i < p->n; i++) {
                worker *w = &p->w[i];
                if (w->pid <= 0) continue;
                int st;
                pid_t r = waitpid(w->pid, &st, WNOHANG);
                if (r == w->pid || (r < 0 && errno == ECHILD)) {
                    free_slot(w);
                } else {
                    left++;
                }
            }
            if (!left) break;
            if (now_seconds() > deadline) {
                for (int i = 0; i < p->n; i++)
                    if (p->w[i].pid > 0) {
                        int st;
                        kill(p->w[i].pid, SIGKILL);
                        wait_pid(p->w[i].pid, &st);
                        free_slot(&p->w[i]);
                    }
                break;
            }
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    for (int i = 0; i < p->n; i++) free_slot(&p->w[i]);
}

static int pool_gc(lua_State *L)
{
    pool *p = luaL_checkudata(L, 1, POOL_MT);
    if (p->w && p->owner == getpid()) {
        stop_all(p);
        free(p->w);
    }
    p->w = NULL;
    p->n = 0;
    return 0;
}

static int write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t k = write(fd, s, len);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        s += k;
        len -= (size_t)k;
    }
    return 0;
}

/* "error<TAB>message" with \ TAB LF CR escaped (the format sweep.lua decodes). */
static void write_error_line(int fd, const char *msg)
{
    write_all(fd, "error\t", 6);
    for (const char *c = msg; *c; c++) {
        const char *e = NULL;
        if (*c == '\\') e = "\\\\";
        else if (*c == '\t') e = "\\t";
        else if (*c == '\n') e = "\\n";
        else if (*c == '\r') e = "\\r";
        if (e) write_all(fd, e, 2);
        else write_all(fd, c, 1);
    }
    write_all(fd, "\n", 1);
}

/* The worker: run job(i), send its line, leave without running atexit
 * handlers or flushing the parent's buffers (they were flushed before fork). */
static void worker_main(lua_State *L, int job_idx, int i, int fd, pid_t parent)
{
    /* A killed parent (kill -9, OOM) takes its workers with it: their rows
     * could not be recorded, and a resumed sweep would run them again. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1); /* the parent died before prctl */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    lua_sethook(L, NULL, 0, 0);
    tl_cancel_clear();
    tl_set_threads(1); /* `jobs` workers share the cores */
    lua_pushvalue(L, job_idx);
    lua_pushinteger(L, i);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        write_all(fd, s, len);
        write_all(fd, "\n", 1);
    } else {
        const char *msg = lua_tostring(L, -1);
        write_error_line(fd, msg ? msg : "the job returned no result line");
    }
    close(fd);
    fflush(stdout);
    fflush(stderr);
    _exit(0);
}

/* Call done(i, line, err, wall) under pcall; returns the pcall status (the
 * error message is left on the stack when it fails). */
static int call_done(lua_State *L, int done_idx, int i, const char *line, size_t len,
                     const char *err, double wall)
{
    lua_pushvalue(L, done_idx);
    lua_pushinteger(L, i);
    if (line) lua_pushlstring(L, line, len);
    else lua_pushnil(L);
    if (err) lua_pushstring(L, err);
    else lua_pushnil(L);
    lua_pushnumber(L, wall);
    int st = lua_pcall(L, 4, 0, 0);
    return st;
}

static int interrupted(lua_State *L, pool *p)
{
    if (p) stop_all(p);
    lua_sethook(L, NULL, 0, 0); /* the REPL's pending "interrupted!" hook */
    tl_cancel_clear();
    lua_pushliteral(L, "interrupted");
    return 1;
}

/* A Ctrl-C delivered inside a run is caught by the job's pcall, which clears
 * the engine's flag (tl_lua_interrupt_delivered): the delivery count tells. */
static int run_inprocess(lua_State *L, int n)
{
    for (int i = 1; i <= n; i++) {
        if (tl_cancelled()) return interrupted(L, NULL);
        double t0 = now_seconds();
        unsigned long seen = tl_lua_interrupt_count();
        lua_pushvalue(L, 3);
        lua_pushinteger(L, i);
        int st = lua_pcall(L, 1, 1, 0);
        double wall = now_seconds() - t0;
        if (tl_cancelled() || tl_lua_interrupt_count() != seen) return interrupted(L, NULL);
        const char *line = NULL, *err = NULL;
        size_t len = 0;
        if (st == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
            line = lua_tolstring(L, -1, &len);
        } else {
            err = lua_tostring(L, -1);
            if (!err) err = "the job returned no result line";
        }
        if (call_done(L, 4, i, line, len, err, wall) != LUA_OK) {
            if (tl_cancelled()) return interrupted(L, NULL);
            return lua_error(L);
        }
        lua_pop(L, 1);
    }
    lua_pushliteral(L, "done");
    return 1;
}

/* Start job i in a free slot. Returns 0, or -1 with errno set. */
static int spawn(lua_State *L, pool *p, worker *w, int i)
{
    int fds[2];
    if (pipe(fds) < 0) return -1;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    fflush(NULL); /* the worker must not repeat buffered output */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        for (int k = 0; k < p->n; k++)
            if (p->w[k].pid > 0 && p->w[k].fd >= 0) close(p->w[k].fd);
        worker_main(L, 3, i, fds[1], p->owner);
    }
    close(fds[1]);
    w->pid = pid;
    w->fd = fds[0];
    w->job = i;
    w->len = 0;
    w->t0 = now_seconds();
    return 0;
}

/* A worker's pipe reached end of file: reap it and report. Returns the
 * call_done status, or -2 when the worker died of SIGINT (Ctrl-C). */
static int finish(lua_State *L, pool *p, worker *w)
{
    int st = 0;
    close(w->fd);
    w->fd = -1;
    wait_pid(w->pid, &st);
    w->pid = 0;
    double wall = now_seconds() - w->t0;
    int job = w->job;
    char err[160];
    const char *line = NULL, *emsg = NULL;
    size_t len = w->len;
    if (len > 0) {
        line = w->buf;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    } else if (WIFSIGNALED(st)) {
        if (WTERMSIG(st) == SIGINT) {
            free_slot(w);
            return -2;
        }
        snprintf(err, sizeof err, "worker killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
        emsg = err;
    } else if (WIFEXITED(st)) {
        snprintf(err, sizeof err, "worker exited with status %d without a result", WEXITSTATUS(st));
        emsg = err;
    } else {
        emsg = "worker ended without a result";
    }
    /* push the line before freeing the buffer */
    int r;
    if (line) {
        lua_pushlstring(L, line, len);
        free_slot(w);
        size_t l2;
        const char *s = lua_tolstring(L, -1, &l2);
        r = call_done(L, 4, job, s, l2, NULL, wall);
        if (r == LUA_OK) lua_pop(L, 1);
        else lua_remove(L, -2);
    } else {
        free_slot(w);
        r = call_done(L, 4, job, NULL, 0, emsg, wall);
    }
    (void)p;
    return r;
}

static int l_sweep_exec(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer jobs = luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    luaL_argcheck(L, jobs >= 1 && jobs <= 1024, 2, "jobs must be in 1..1024");
    luaL_argcheck(L, n >= 0 && n <= 100000000, 1, "bad job count");
    lua_settop(L, 4);
    if (jobs == 1) return run_inprocess(L, (int)n);

    pool *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    luaL_setmetatable(L, POOL_MT);
    p->owner = getpid();
    p->n = (int)jobs;
    p->w = calloc((size_t)jobs, sizeof *p->w);
    if (!p->w) return luaL_error(L, "tl.sweep: out of memory");
    for (int k = 0; k < p->n; k++) p->w[k].fd = -1;
    struct pollfd *pfd = lua_newuserdatauv(L, sizeof *pfd * (size_t)jobs, 0);
    int *slot_of = lua_newuserdatauv(L, sizeof(int) * (size_t)jobs, 0);

    int next = 1, active = 0;
    for (;;) {
        if (tl_cancelled()) return interrupted(L, p);
        for (int k = 0; k < p->n && next <= n; k++) {
            if (p->w[k].pid != 0) continue;
            if (spawn(L, p, &p->w[k], next) < 0) {
                int e = errno;
                stop_all(p);
                return luaL_error(L, "tl.sweep: cannot start a worker process: %s", strerror(e));
            }
            next++;
            active++;
        }
        if (active == 0) break;
        int np = 0;
        for (int k = 0; k < p->n; k++)
            if (p->w[k].pid > 0) {
                pfd[np].fd = p->w[k].fd;
                pfd[np].events = POLLIN;
                pfd[np].revents = 0;
                slot_of[np++] = k;
            }
        int r = poll(pfd, (nfds_t)np, 200);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            stop_all(p);
            return luaL_error(L, "tl.sweep: poll failed: %s", strerror(e));
        }
        for (int q = 0; q < np; q++) {
            if (!pfd[q].revents) continue;
            worker *w = &p->w[slot_of[q]];
            if (w->cap - w->len < 4096) {
                size_t cap = w->cap ? w->cap * 2 : 8192;
                char *b = realloc(w->buf, cap);
                if (!b) {
                    stop_all(p);
                    return luaL_error(L, "tl.sweep: out of memory reading a worker's result");
                }
                w->buf = b;
                w->cap = cap;
            }
            ssize_t k = read(w->fd, w->buf + w->len, w->cap - w->len);
            if (k > 0) {
                w->len += (size_t)k;
                continue;
            }
            if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            active--;
            int st = finish(L, p, w);
            if (st == -2) return interrupted(L, p);
            if (st != LUA_OK) {
                if (tl_cancelled()) return interrupted(L, p);
                stop_all(p);
                return lua_error(L);
            }
        }
    }
    lua_pushliteral(L, "done");
    return 1;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_mkdirs(lua_State *L)
{
    size_t len;
    const char *dir = luaL_checklstring(L, 1, &len);
    char *p = malloc(len + 1);
    if (!p) return luaL_error(L, "tl.sweep: out of memory");
    memcpy(p, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) < 0 && errno != EEXIST) {
            int e = errno;
            lua_pushnil(L);
            lua_pushfstring(L, "cannot create directory %s: %s", p, strerror(e));
            free(p);
            return 2;
        }
        p[i] = c;
    }
    free(p);
    lua_pushboolean(L, 1);
    return 1;
}

void tl_lua_open_sweep(lua_State *L, int tl)
{
    (void)tl;
    if (luaL_newmetatable(L, POOL_MT)) {
        lua_pushcfunction(L, pool_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg private_fns[] = {{"sweep_exec", l_sweep_exec},
                                           {"getpid", l_getpid},
                                           {"mkdirs", l_mkdirs},
                                           {NULL, NULL}};
    luaL_getsubtable(L, LUA_REGISTRYINDEX, TL_PRIVATE_KEY);
    luaL_setfuncs(L, private_fns, 0);
    lua_pop(L, 1);
}
