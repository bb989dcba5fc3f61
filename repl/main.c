/* main.c — the towerlab program: options, script mode and the embedded
 * interpreter (after lua.c). Running code and Ctrl-C are run.c; the prompt is repl.c. */
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
#include "l_tl.h"
#include "repl.h"
#include "run.h"

static const char *progname = "towerlab";

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
    tl_sigint_install();
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
