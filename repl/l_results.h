/* l_results.h — results of a model (repl/l_results.c): m:evaluate,
 * m:predict, m:history, m:teachers, tl.calibrate and the calibrated
 * predictor, and the printing of result tables. */
#ifndef TL_L_RESULTS_H
#define TL_L_RESULTS_H

#include <lua.h>

/* Add tl.calibrate to the tl table at absolute index `tl`, the methods to the
 * model metatable (registered first by tl_lua_open_model) and the result,
 * calibrated and before/after metatables, with their help texts. */
void tl_lua_open_results(lua_State *L, int tl);

#endif
