/* repl.c — the interactive prompt: GNU Readline's callback interface with a
 * select() loop, so that Ctrl-C at the prompt (EINTR) can clear the line
 * without longjmp out of readline. Multi-line input, expression printing
 * and incomplete-statement detection follow lua.c.
 *
 * The whole file belongs to the program only: towerlab.so is built from the
 * same sources with -DTL_LUA_MODULE and does not link readline. */
#ifndef TL_LUA_MODULE

#include "repl.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "l_util.h"
#include "run.h"

#define PROMPT "> "
#define PROMPT2 ">> "
#define HISTORY_MAX 2000
#define EOFMARK "<eof>"

static lua_State *repl_L;          /* for the completer */
static char *history_path;         /* NULL: no history file */
static char *ready_line;           /* line handed over by readline */
static int line_done;              /* on_line was called (ready_line NULL: EOF) */
static volatile sig_atomic_t got_winch;

static char **completions; /* current candidates, NULL-terminated */

/* ---- history ---------------------------------------------------------------- */

static void history_open(void)
{
    const char *env = getenv("TOWERLAB_HISTORY");
    const char *home = getenv("HOME");
    if (env && *env) {
        history_path = strdup(env);
    } else if (home && *home) {
        size_t n = strlen(home) + sizeof "/.towerlab_history";
        history_path = malloc(n);
        if (history_path) snprintf(history_path, n, "%s/.towerlab_history", home);
    }
    using_history();
    if (!history_path) return;
    if (read_history(history_path) != 0) {
        /* append_history() does not create the file, so create it now. */
        FILE *f = fopen(history_path, "a");
        if (f) fclose(f);
    } else {
        history_truncate_file(history_path, HISTORY_MAX);
    }
}

/* Record one input line, saved at once so a crash or os.exit() keeps it. */
static void history_add(const char *line)
{
    if (!*line) return;
    HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
    if (last && strcmp(last->line, line) == 0) return;
    add_history(line);
    if (history_path) append_history(1, history_path);
}

/* ---- completion ------------------------------------------------------------- */

static void free_completions(void)
{
    if (!completions) return;
    for (char **p = completions; *p; p++) free(*p);
    free(completions);
    completions = NULL;
}

/* Calls the private Lua completer (repl/lua/complete.lua) on `text`. */
static int collect(lua_State *L)
{
    const char *text = lua_tostring(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, TL_PRIVATE_KEY);
    lua_getfield(L, -1, "complete");
    lua_pushstring(L, text);
    lua_call(L, 1, 1);
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, -1);
    char **list = calloc((size_t)n + 1, sizeof *list);
    if (!list) return 0;
    completions = list;
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        const char *s = lua_tostring(L, -1);
        list[i] = strdup(s ? s : "");
        lua_pop(L, 1);
        if (!list[i]) break;
    }
    return 0;
}

static char *generator(const char *text, int state)
{
    static int next;
    (void)text;
    if (state == 0) next = 0;
    if (!completions || !completions[next]) return NULL;
    return strdup(completions[next++]);
}

static char **attempt_completion(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    if (rl_completion_quote_character) return NULL; /* inside a string: file names */
    rl_attempted_completion_over = 1;
    rl_completion_append_character = '\0';
    free_completions();
    lua_State *L = repl_L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, collect);
    lua_pushstring(L, text);
    int status = lua_pcall(L, 1, 0, 0);
    lua_settop(L, top);
    if (status != LUA_OK || !completions || !completions[0]) {
        free_completions();
        return NULL;
    }
    char **m = rl_completion_matches(text, generator);
    free_completions();
    return m;
}

/* ---- evaluation --------------------------------------------------------------- */

/* A syntax error ending in "<eof>" means the chunk is incomplete (lua.c). */
static int incomplete(lua_State *L, int status)
{
    if (status != LUA_ERRSYNTAX) return 0;
    size_t n;
    const char *msg = lua_tolstring(L, -1, &n);
    size_t m = sizeof EOFMARK - 1;
    if (n >= m && strcmp(msg + n - m, EOFMARK) == 0) {
        lua_pop(L, 1);
        return 1;
    }
    return 0;
}

static int ends_with_semicolon(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n')) n--;
    return n > 0 && s[n - 1] == ';';
}

/* Run the function at the top; print its results unless `quiet`. */
static void run_and_print(lua_State *L, int quiet)
{
    int base = lua_gettop(L) - 1;
    int status = tl_docall_prompt(L, 0, LUA_MULTRET);
    if (status != LUA_OK) {
        fflush(stdout);
        tl_report(L, NULL, status);
        return;
    }
    int n = lua_gettop(L) - base;
    if (n > 0 && !quiet) {
        luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
        lua_getfield(L, LUA_REGISTRYINDEX, TL_LIB_KEY);
        lua_getfield(L, -1, "show");
        lua_remove(L, -2);
        if (!lua_isfunction(L, -1)) {
            lua_pop(L, 1);
            lua_getglobal(L, "print");
        }
        lua_insert(L, base + 1);
        status = tl_docall(L, n, 0);
        if (status != LUA_OK) {
            lua_pushfstring(L, "error printing the result: %s", lua_tostring(L, -1));
            lua_remove(L, -2);
            tl_report(L, NULL, status);
        }
    }
    lua_settop(L, base);
    fflush(stdout);
}

/* ?x — help for the text after '?', evaluated by tl.help. */
static void do_help(lua_State *L, const char *what)
{
    while (*what == ' ' || *what == '\t') what++;
    lua_getfield(L, LUA_REGISTRYINDEX, TL_LIB_KEY);
    lua_getfield(L, -1, "help");
    lua_remove(L, -2);
    int n = 0;
    if (*what) {
        lua_pushstring(L, what);
        n = 1;
    }
    tl_report(L, NULL, tl_docall_prompt(L, n, 0));
    fflush(stdout);
}

/* Process one complete input line. *chunk holds the unfinished statement of
 * earlier lines (NULL when none); it is kept when the input is still
 * incomplete and freed otherwise. */
static void handle_line(lua_State *L, char **chunk, const char *line)
{
    int top = lua_gettop(L);
    if (!*chunk) {
        if (line[0] == '?') {
            do_help(L, line + 1);
            return;
        }
        if (line[strspn(line, " \t")] == '\0') return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (*chunk) {
        luaL_addstring(&b, *chunk);
        luaL_addchar(&b, '\n');
        luaL_addstring(&b, line);
    } else if (line[0] == '=') {
        luaL_addstring(&b, "return ");
        luaL_addstring(&b, line + 1);
    } else {
        luaL_addstring(&b, line);
    }
    luaL_pushresult(&b);
    const char *code = lua_tostring(L, -1);
    int quiet = ends_with_semicolon(code);

    /* An expression first: "return " .. code. */
    const char *ret = lua_pushfstring(L, "return %s", code);
    int status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
    if (status == LUA_OK) {
        lua_remove(L, -2);
    } else {
        lua_pop(L, 2); /* error message and the "return" string */
        status = luaL_loadbuffer(L, code, strlen(code), "=stdin");
        if (incomplete(L, status)) {
            free(*chunk);
            *chunk = strdup(code);
            lua_settop(L, top);
            return;
        }
    }
    free(*chunk);
    *chunk = NULL;
    if (status != LUA_OK) {
        tl_report(L, NULL, status);
        lua_settop(L, top);
        return;
    }
    lua_remove(L, -2); /* the code string */
    run_and_print(L, quiet);
    lua_settop(L, top);
}

/* ---- the loop ------------------------------------------------------------------ */

static void on_line(char *line)
{
    ready_line = line;
    line_done = 1;
    rl_callback_handler_remove(); /* restores the terminal while the command runs */
}

static void on_sigwinch(int sig)
{
    (void)sig;
    got_winch = 1;
}

static const char lua_breaks[] = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";

/* Inside an unfinished string only the quote starts the word, so a file
 * name with '/', '-' or '.' completes as a whole. */
static char *word_breaks(void)
{
    char quote = 0;
    for (int i = 0; i < rl_point && rl_line_buffer[i]; i++) {
        char c = rl_line_buffer[i];
        if (quote && c == '\\' && i + 1 < rl_point) i++;
        else if (quote && c == quote) quote = 0;
        else if (!quote && (c == '"' || c == '\'')) quote = c;
    }
    return (char *)(quote ? "\"'" : lua_breaks);
}

static void setup_readline(lua_State *L)
{
    const char *breaks = lua_breaks;
    repl_L = L;
    rl_readline_name = "towerlab";
    rl_catch_signals = 0; /* our SIGINT handler (run.c) decides */
    rl_catch_sigwinch = 0;
    rl_attempted_completion_function = attempt_completion;
    rl_basic_word_break_characters = breaks;
    rl_completer_word_break_characters = breaks;
    rl_completer_quote_characters = "\"'";
    rl_completion_word_break_hook = word_breaks;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigwinch;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGWINCH, &sa, NULL);
}

/* Wait for one line; returns it (malloc'd) or NULL at end of input. Ctrl-C
 * clears the line being edited and drops an unfinished statement. */
static char *read_line(char **chunk)
{
    line_done = 0;
    ready_line = NULL;
    tl_sigint_pending = 0;
    fflush(stdout);
    rl_callback_handler_install(*chunk ? PROMPT2 : PROMPT, on_line);
    int fd = fileno(rl_instream ? rl_instream : stdin);
    while (!line_done) {
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(fd, &fds);
        int r = select(fd + 1, &fds, NULL, NULL, NULL);
        if (tl_sigint_pending) {
            tl_sigint_pending = 0;
            rl_callback_sigcleanup();
            rl_replace_line("", 1);
            rl_callback_handler_remove();
            fputs("\n", rl_outstream ? rl_outstream : stdout);
            free(*chunk);
            *chunk = NULL;
            rl_callback_handler_install(PROMPT, on_line);
            continue;
        }
        if (got_winch) {
            got_winch = 0;
            rl_resize_terminal();
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            rl_callback_handler_remove();
            return NULL;
        }
        rl_callback_read_char();
    }
    return ready_line;
}

int tl_repl_run(lua_State *L)
{
    setup_readline(L);
    history_open();
    char *chunk = NULL;
    for (;;) {
        char *line = read_line(&chunk);
        if (!line) break;
        history_add(line);
        handle_line(L, &chunk, line);
        free(line);
    }
    free(chunk);
    fputs("\n", stdout);
    fflush(stdout);
    free(history_path);
    history_path = NULL;
    return 0;
}

#endif /* TL_LUA_MODULE */
