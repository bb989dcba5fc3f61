/* repl.h — the interactive loop (repl.c). Commands run through run.h. */
#ifndef TL_REPL_H
#define TL_REPL_H

#include <lua.h>

/* Run the read-eval-print loop until Ctrl-D or os.exit(). Returns the exit
 * status (0). */
int tl_repl_run(lua_State *L);

#endif
