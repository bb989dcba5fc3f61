/* run.c — protected calls, Ctrl-C and error reports for the program (see
 * run.h). Taken out of main.c so that repl.c and kernel.c run code the same
 * way without depending on main.c. The whole file belongs to the program
 * only: towerlab.so (-DTL_LUA_MODULE) does not install signal handlers. */
#ifndef TL_LUA_MODULE

#include "run.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "l_util.h"

/* ---- Ctrl-C ---------------------------------------------------------------
 * The handler does no work itself: it raises the engine's cancellation flag
 * and, while Lua runs, sets a hook that raises an error at the next Lua
 * instruction (lua.c's scheme; lua_sethook is signal-safe). At the prompt it
 * only records the signal for repl.c. Three Ctrl-C during one command that
 * are not delivered (a C call that never checks) restore the default action.
 *
 * Engine work that sees the flag stops and fails with its own message
 * ("m:fit: training interrupted at epoch 3, step 1200; ..."). That error
 * delivers the interrupt: the hook, which would otherwise fire when the error
 * calls msghandler and replace the message by a bare "interrupted!", then
 * only removes itself, and msghandler adds no traceback to it. */

volatile sig_atomic_t tl_sigint_pending;
static lua_State *volatile running_L; /* non-NULL while a command runs */
static volatile sig_atomic_t interrupts;  /* Ctrl-C not delivered yet */
static volatile sig_atomic_t interrupted; /* some Ctrl-C during this command */
static const char stop_msg[] = "interrupted!";

static int msghandler(lua_State *L);

/* The interrupt is delivered by the error raised here (or by the error
 * already on its way): tl_lua_interrupt_delivered clears the engine's flag at
 * the next Lua instruction, so a script that catches it with pcall can go on
 * (m:evaluate would otherwise fail with "predict interrupted"). */
static void lstop(lua_State *L, lua_Debug *ar)
{
    lua_sethook(L, NULL, 0, 0);
    interrupts = 0;
    tl_lua_interrupt_delivered(L);
    if (ar->event == LUA_HOOKCALL && lua_getinfo(L, "f", ar)) {
        int handler = lua_tocfunction(L, -1) == msghandler;
        lua_pop(L, 1);
        if (handler) return; /* an error is already on its way */
    }
    luaL_error(L, "%s", stop_msg);
}

static void on_sigint(int sig)
{
    lua_State *L = running_L;
    if (!L) {
        tl_sigint_pending = 1;
        return;
    }
    tl_cancel_request();
    interrupted = 1;
    if (++interrupts >= 3) {
        static const char msg[] = "\ntowerlab: not responding to Ctrl-C; quitting\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    lua_sethook(L, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void tl_sigint_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: the prompt's select() must wake up */
    sigaction(SIGINT, &sa, NULL);
}

/* ---- calls and reports ---------------------------------------------------- */

/* 1 while a command typed at the prompt runs (tl_docall_prompt). */
static int at_prompt;

/* At the prompt: 1 when no user-written Lua code is on the stack, only the
 * typed chunk, C functions and towerlab's own Lua code. A traceback would
 * then only repeat the line just typed ("stdin:1: in main chunk"). A
 * function, or a file run with dofile, is user code: its traceback stays. */
static int simple_error(lua_State *L)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "S", &ar)) continue;
        if (strcmp(ar.what, "C") == 0 || strncmp(ar.source, "=[towerlab]", 11) == 0) continue;
        if (strcmp(ar.what, "main") == 0 && strcmp(ar.source, "=stdin") == 0) continue;
        return 0;
    }
    return 1;
}

/* Without its position prefix ("stdin:1: "), at the prompt. */
static const char *strip_position(const char *msg)
{
    const char *c = strchr(msg, ':');
    if (!c || c == msg || c[1] < '0' || c[1] > '9') return msg;
    c++;
    while (*c >= '0' && *c <= '9') c++;
    return (c[0] == ':' && c[1] == ' ') ? c + 2 : msg;
}

/* The calm line for a fit stopped by Ctrl-C at the prompt; NULL when `msg`
 * is not fit's "training interrupted at epoch E, step S" error. */
static const char *calm_fit_stop(lua_State *L, const char *msg)
{
    const char *p = strstr(msg, "training interrupted at epoch ");
    long long e, st;
    if (!p || sscanf(p, "training interrupted at epoch %lld, step %lld", &e, &st) != 2) return NULL;
    return lua_pushfstring(L, "interrupted at epoch %I, step %I \xe2\x80\x94 continue with m:fit{...}",
                           (lua_Integer)e, (lua_Integer)st);
}

static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    /* An error that C code raised after Ctrl-C says where the work stopped:
     * a traceback would only bury that line. The hook's own "interrupted!"
     * keeps it: it shows where the Lua code was. */
    size_t n = strlen(msg), k = sizeof stop_msg - 1;
    int hook_stop = n >= k && strcmp(msg + n - k, stop_msg) == 0;
    if (interrupted && !hook_stop) {
        if (at_prompt) {
            const char *calm = calm_fit_stop(L, msg);
            if (!calm) lua_pushstring(L, strip_position(msg));
        }
        return 1;
    }
    /* Scripts keep the traceback; the prompt only when user code is involved. */
    if (at_prompt && !hook_stop && simple_error(L)) return 1;
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int tl_docall(lua_State *L, int narg, int nres)
{
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    tl_cancel_clear();
    lua_sethook(L, NULL, 0, 0);
    interrupts = 0;
    interrupted = 0;
    running_L = L;
    int status = lua_pcall(L, narg, nres, base);
    running_L = NULL;
    lua_sethook(L, NULL, 0, 0);
    lua_remove(L, base);
    return status;
}

int tl_docall_prompt(lua_State *L, int narg, int nres)
{
    int was = at_prompt;
    at_prompt = 1;
    int status = tl_docall(L, narg, nres);
    at_prompt = was;
    return status;
}

int tl_report(lua_State *L, const char *prog, int status)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (!msg) msg = "(error object is not a string)";
        if (prog) fprintf(stderr, "%s: ", prog);
        fprintf(stderr, "%s\n", msg);
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

#endif /* TL_LUA_MODULE */
