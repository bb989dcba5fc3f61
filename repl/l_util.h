/* l_util.h — helpers shared by every Lua binding file (repl/l_*.c).
 *
 * Conventions:
 * - Each binding module's header (l_<module>.h) declares its opener
 *   `void tl_lua_open_<module>(lua_State *L, int tl)`, which adds its
 *   functions/tables to the `tl` table at absolute index `tl`. repl/l_tl.c
 *   (luaopen_towerlab) includes them all and calls them in order, so a
 *   renamed or missing opener fails the build.
 * - Programming errors raise Lua errors whose message names the function, the
 *   field and what was expected:
 *     tl.mmoe: field 'experts' must be a positive integer, got string
 *   Free any C memory *before* raising (lua_error longjmps).
 * - Expected failures (file missing) raise too when they come from the engine
 *   with a tl_status, using the engine's message: tl_lua_raise_status().
 */
#ifndef TL_L_UTIL_H
#define TL_L_UTIL_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

#include "core.h"

/* Raise a Lua error "<fn>: <engine message>" for a failed engine status. */
int tl_lua_raise_status(lua_State *L, const char *fn, tl_status s);

/* Check that the table at `idx` has no keys outside `allowed` (NULL-terminated
 * list); otherwise raise "<fn>: unknown field 'x' (expected one of: a, b, c)". */
void tl_lua_check_fields(lua_State *L, int idx, const char *fn, const char *const *allowed);

/* Typed optional fields of the options table at `idx`. When the field is
 * absent or nil the default is returned; when present with a wrong type or
 * out of range raise "<fn>: field '<key>' must be <what>, got <type/value>". */
lua_Integer tl_lua_opt_int(lua_State *L, int idx, const char *fn, const char *key,
                           lua_Integer def, lua_Integer min, lua_Integer max);
double tl_lua_opt_number(lua_State *L, int idx, const char *fn, const char *key,
                         double def, double min, double max);
int tl_lua_opt_bool(lua_State *L, int idx, const char *fn, const char *key, int def);
/* Returns a string owned by Lua (valid while the table holds it) or `def`. */
const char *tl_lua_opt_string(lua_State *L, int idx, const char *fn, const char *key,
                              const char *def);
/* Like opt_string, but the value must be one of `choices` (NULL-terminated);
 * returns its index, or `def` when absent. */
int tl_lua_opt_enum(lua_State *L, int idx, const char *fn, const char *key,
                    const char *const *choices, int def);

/* Register documentation for `name` ("tl.data.csv", "model:fit"): help(x)
 * and ?x show it. `value_idx` (0 for none) is the Lua value the text belongs
 * to, so help(tl.data.csv) finds it by identity. */
void tl_lua_doc(lua_State *L, const char *name, int value_idx, const char *text);

/* One help text of a table of functions: t[field] is documented as topic. */
typedef struct {
    const char *field, *topic, *text;
} tl_lua_doc_entry;
/* tl_lua_doc for each of the n entries, on the fields of the table at `t`. */
void tl_lua_docs(lua_State *L, int t, const tl_lua_doc_entry *docs, size_t n);

/* Tell the Lua GC about `bytes` of engine memory owned by a userdata, so big
 * models and datasets are collected promptly (lua_gc step). */
void tl_lua_note_alloc(lua_State *L, size_t bytes);

/* Ctrl-C: the error being raised delivers the interrupt (the hook's
 * "interrupted!", or an engine call that stopped with TL_ERR_CANCELLED). The
 * engine's cancellation flag is cleared at the next Lua instruction, that is
 * once the error has been caught: a script that catches it with pcall can use
 * the engine again, while C code that checks tl_cancelled() right after its
 * own lua_pcall (fit's progress callback) still sees it. Each call counts one
 * delivery (tl_lua_interrupt_count), so callers that run Lua in between can
 * tell that an interrupt happened. */
void tl_lua_interrupt_delivered(lua_State *L);
unsigned long tl_lua_interrupt_count(void);

/* Progress output: 1 when stdout is an interactive terminal (progress bars
 * redraw in place), 0 otherwise (one line per epoch, or quiet). */
int tl_lua_stdout_is_tty(void);

/* Registry keys of the documentation tables filled by tl_lua_doc: names maps
 * "tl.data.csv" -> text; values (weak keys) maps a documented value -> name. */
#define TL_DOCS_NAMES "tl.docs.names"
#define TL_DOCS_VALUES "tl.docs.values"
/* The default seed for builders and random initialisers: the n-th call
 * since a call saw a changed tl.seed returns a value derived from (tl.seed, n), so
 * a session (or script) run twice draws the same numbers, and two calls
 * draw different ones. tl.seed is read from the tl table (default 1). */
lua_Integer tl_lua_next_seed(lua_State *L);
/* Registry key of the tl table (set by luaopen_towerlab). */
#define TL_LIB_KEY "tl.lib"
/* Registry key of the table of functions the embedded Lua code gives the
 * program without making them public (e.g. "complete"). */
#define TL_PRIVATE_KEY "tl.private"

/* Push the two documentation tables (names, then values), creating them. */
void tl_lua_push_docs(lua_State *L);

/* Read /proc/meminfo's MemAvailable and pass it to the engine's memory
 * budget (tl_memory_set_available); left unchanged when it cannot be read.
 * Called before big allocations (a model, a large tensor). */
void tl_lua_memory_refresh(void);
/* Optional field of the table at idx holding bytes: a number or a string
 * with a decimal unit ("64G", "512M", "2TB"); 0 when absent. Raises on a
 * bad value, naming fn and field. */
uint64_t tl_lua_opt_bytes(lua_State *L, int idx, const char *fn, const char *field);

/* Call the progress callback with its argument table (both on the stack;
 * popped): 1 to stop (it returned false or "stop", or it raised: the message
 * into error), 0 to go on. Ctrl-C inside it is handed back to the engine's
 * cancellation flag (0: the fit loop reports the interrupt). */
int tl_lua_progress_call(lua_State *L, char *error, size_t cap);

#endif
