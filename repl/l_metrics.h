/* l_metrics.h — tl.metrics (repl/l_metrics.c): evaluation metrics and
 * calibrators over Lua arrays or tensors (engine/metrics.h). */
#ifndef TL_L_METRICS_H
#define TL_L_METRICS_H

#include <lua.h>

/* Add tl.metrics to the tl table at absolute index `tl`, with help texts. */
void tl_lua_open_metrics(lua_State *L, int tl);

#endif
