/* main.c — the towerlab program: options, script mode, the embedded
 * interpreter and Ctrl-C handling (after lua.c). The prompt itself is repl.c. */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "parallel.h"
#include "kernel.h"
#include "l_util.h"
#include "repl.h"

int luaopen_towerlab(lua_State *L);

static const char *progname = "towerlab";

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

static void install_sigint(void)
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

/* ---- options -------------------------------------------------------------- */

static void usage(FILE *out, const char *badoption)
{
    if (badoption) fprintf(out, "%s: unrecognized option '%s'\n", progname, badoption);
    fprintf(out,
            "usage: %s [options] [script [args]]\n"
            "Available options are:\n"
            "  -e stat        execute string 'stat'\n"
            "  -i             enter interactive mode after executing 'script'\n"
            "  -l mod         require library 'mod' into global 'mod'\n"
            "  -l g=mod       require library 'mod' into global 'g'\n"
            "  -v, --version  show version information\n"
            "  -h, --help     show this help and exit\n"
            "  --threads N    use N BLAS/engine threads\n"
            "  --seed N       default seed (tl.seed) for models and random tensors\n"
            "  --kernel FILE  serve a Jupyter kernel (FILE: the connection file)\n"
            "  --             stop handling options\n"
            "  -              stop handling options and execute stdin\n"
            "Without a script or -e: the interactive prompt at a terminal (help() lists\n"
            "the topics), else the program read from stdin.\n",
            progname);
}

#ifndef TL_BUILD_ARCH
#define TL_BUILD_ARCH "unknown target"
#endif

/* "towerlab 0.1.0 (Lua 5.4.4; built for native)" or "... portable x86-64-v2". */
static void print_version(void)
{
    printf("towerlab %s (%s; built for %s)\n", TL_VERSION, LUA_RELEASE, TL_BUILD_ARCH);
    fflush(stdout);
}

typedef struct {
    int script;      /* index in argv of the script, 0 when none */
    int interactive; /* -i */
    int version;     /* -v */
    int help;        /* -h, --help */
    int has_e;       /* some -e */
    long long seed;
    int has_seed;
    int threads;
    const char *kernel; /* --kernel connection file */
} options;

static int parse_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return 0;
    *out = v;
    return 1;
}

/* Parse argv like lua.c; returns 0 on success, -1 after printing usage. */
static int parse_args(int argc, char **argv, options *o)
{
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') break;
        if (strcmp(a, "-") == 0) break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            o->help = 1;
            return 0;
        } else if (strcmp(a, "-i") == 0) {
            o->interactive = 1;
            o->version = 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
            o->version = 1;
        } else if (strcmp(a, "-e") == 0 || strcmp(a, "-l") == 0) {
            if (a[1] == 'e') o->has_e = 1;
            if (++i >= argc) {
                fprintf(stderr, "%s: '%s' needs argument\n", progname, a);
                usage(stderr, NULL);
                return -1;
            }
        } else if (strncmp(a, "-e", 2) == 0 || strncmp(a, "-l", 2) == 0) {
            if (a[1] == 'e') o->has_e = 1;
        } else if (strcmp(a, "--kernel") == 0) {
            if (++i >= argc) {
                fprintf(stderr, "%s: '%s' needs a connection file\n", progname, a);
                usage(stderr, NULL);
                return -1;
            }
            o->kernel = argv[i];
        } else if (strcmp(a, "--threads") == 0 || strcmp(a, "--seed") == 0) {
            long long v;
            if (i + 1 >= argc || !parse_int(argv[i + 1], &v) ||
                (a[2] == 't' ? (v < 1 || v > 4096) : v < 0)) {
                fprintf(stderr, "%s: '%s' needs %s\n", progname, a,
                        a[2] == 't' ? "a thread count in 1..4096" : "a non-negative integer");
                usage(stderr, NULL);
                return -1;
            }
            if (a[2] == 't') {
                o->threads = (int)v;
            } else {
                o->seed = v;
                o->has_seed = 1;
            }
            i++;
        } else {
            usage(stderr, a);
            return -1;
        }
    }
    o->script = i < argc ? i : 0;
    return 0;
}

/* arg table as lua.c builds it: arg[0] = script, arg[1..] its arguments,
 * negative indices the interpreter and its options. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script)
{
    /* without a script arg[0] is the program name */
    int narg = script ? argc - (script + 1) : argc - 1;
    lua_createtable(L, narg, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status)
{
    if (status == LUA_OK) status = tl_docall(L, 0, 0);
    return tl_report(L, progname, status);
}

static int dostring(lua_State *L, const char *s, const char *name)
{
    return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l [g=]mod: global g (default mod) = require(mod). */
static int dolibrary(lua_State *L, const char *spec)
{
    char *copy = strdup(spec);
    if (!copy) return tl_report(L, progname, (lua_pushliteral(L, "out of memory"), LUA_ERRMEM));
    char *eq = strchr(copy, '=');
    const char *global = copy, *mod = copy;
    if (eq) {
        *eq = '\0';
        mod = eq + 1;
    }
    lua_getglobal(L, "require");
    lua_pushstring(L, mod);
    int status = tl_docall(L, 1, 1);
    if (status == LUA_OK) lua_setglobal(L, global);
    free(copy);
    return tl_report(L, progname, status);
}

/* Run -e and -l options in order. */
static int runargs(lua_State *L, char **argv, int n)
{
    for (int i = 1; i < n; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || (a[1] != 'e' && a[1] != 'l')) {
            if (strcmp(a, "--threads") == 0 || strcmp(a, "--seed") == 0 || strcmp(a, "--kernel") == 0) i++;
            continue;
        }
        const char *extra = a[2] ? a + 2 : argv[++i];
        int status = a[1] == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
        if (status != LUA_OK) return 0;
    }
    return 1;
}

static int pushargs(lua_State *L)
{
    if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
    int n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -n - 1);
    return n;
}

static int handle_script(lua_State *L, char **argv)
{
    const char *fname = argv[0];
    if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL; /* stdin */
    int status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        int n = pushargs(L);
        status = tl_docall(L, n, 0);
    }
    return tl_report(L, progname, status);
}

/* ~/.towerlabrc for interactive sessions, unless TL_NO_RC is set. */
static void run_rc(lua_State *L)
{
    const char *no = getenv("TL_NO_RC");
    const char *home = getenv("HOME");
    if ((no && *no && strcmp(no, "0") != 0) || !home) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/.towerlabrc", home);
    if (access(path, R_OK) != 0) return;
    dochunk(L, luaL_loadfile(L, path));
}

/* Everything runs inside this protected function, as in lua.c, so that an
 * out-of-memory error while setting up is reported, not fatal. */
static int pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = lua_touserdata(L, 2);
    options o = {0};
    if (parse_args(argc, argv, &o) != 0) return 0;
    if (o.help) {
        usage(stdout, NULL);
        fflush(stdout);
        lua_pushboolean(L, 1);
        return 1;
    }
    luaL_checkversion(L);
    luaL_openlibs(L);
    luaL_requiref(L, "towerlab", luaopen_towerlab, 0);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "tl");
    lua_getfield(L, -1, "help");
    lua_setglobal(L, "help");
    if (o.has_seed) {
        lua_pushinteger(L, (lua_Integer)o.seed);
        lua_setfield(L, -2, "seed");
    }
    lua_pop(L, 1);
    if (o.threads) tl_set_threads(o.threads);
    create_arg_table(L, argv, argc, o.script);
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCGEN, 0, 0);
    if (o.version) print_version();
    if (!runargs(L, argv, o.script ? o.script : argc)) return 0;
    if (o.kernel) {
        run_rc(L);
        lua_pushboolean(L, tl_kernel_run(L, o.kernel) == 0);
        return 1;
    }
    if (o.script && handle_script(L, argv + o.script) != LUA_OK) return 0;
    if (o.interactive) {
        run_rc(L);
        tl_repl_run(L);
    } else if (o.script == 0 && !o.has_e && !o.version) {
        if (isatty(STDIN_FILENO)) {
            print_version();
            run_rc(L);
            tl_repl_run(L);
        } else if (dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK) {
            return 0;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

int main(int argc, char **argv)
{
    if (argv[0] && argv[0][0]) progname = argv[0];
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "%s: cannot create state: not enough memory\n", progname);
        return EXIT_FAILURE;
    }
    install_sigint();
    /* Over a file-size limit (ulimit -f) write() then fails with EFBIG and
     * m:save reports it, instead of SIGXFSZ ending the session. */
    signal(SIGXFSZ, SIG_IGN);
    lua_gc(L, LUA_GCSTOP);
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int status = lua_pcall(L, 2, 1, 0);
    int result = lua_toboolean(L, -1);
    tl_report(L, progname, status);
    lua_close(L);
    return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
