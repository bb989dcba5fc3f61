/* run.h — running Lua code for the program (repl/run.c): protected calls
 * with a traceback handler, Ctrl-C handling and error reports. main.c (scripts,
 * -e), repl.c (the prompt) and kernel.c (notebook cells) all run code through
 * it; it knows none of them.
 *
 * Only the program links it: towerlab.so is built from the same sources with
 * -DTL_LUA_MODULE and leaves signals to its host. */
#ifndef TL_RUN_H
#define TL_RUN_H

#include <lua.h>
#include <signal.h>

/* Set by the SIGINT handler while the prompt waits for input; repl.c clears it. */
extern volatile sig_atomic_t tl_sigint_pending;

/* Install the SIGINT handler (without SA_RESTART, so that the prompt's
 * select() wakes up). Called once by main before any Lua code runs. */
void tl_sigint_install(void);

/* Call the function below `narg` arguments at the top in protected mode with
 * a traceback handler. While it runs, Ctrl-C stops Lua code (a hook raises
 * "interrupted!") and engine work (tl_cancel_request). The cancellation flag
 * and any stale hook are cleared first. Returns a lua_pcall status; on error
 * the message is at the top, with a traceback unless C code raised it after
 * Ctrl-C (then it says where the work stopped: "m:fit: training interrupted
 * at epoch 3, step 1200; ..."). */
int tl_docall(lua_State *L, int narg, int nres);

/* tl_docall for a command typed at the prompt: an error raised without user
 * Lua functions on the stack (a bad argument to tl.mmoe, a nil global) shows
 * its message without a traceback, and fit stopped by Ctrl-C says
 * "interrupted at epoch E, step S — continue with m:fit{...}". */
int tl_docall_prompt(lua_State *L, int narg, int nres);

/* Print the error message at the top (if status != LUA_OK) to stderr,
 * prefixed with `progname` when not NULL, and pop it. Returns status. */
int tl_report(lua_State *L, const char *progname, int status);

#endif
