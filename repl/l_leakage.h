/* l_leakage.h — the label-leakage warning of tl.data.csv (repl/l_leakage.c),
 * over engine/diagnose.h. No Lua state: tl.data.csv (l_data.c) calls it and
 * d:leakage (l_diagnose.c) uses the same threshold. */
#ifndef TL_L_LEAKAGE_H
#define TL_L_LEAKAGE_H

#include "data.h"

/* Single-feature AUC (max(AUC, 1-AUC)) above which a feature leaks a label. */
#define TL_LUA_LEAK_THRESHOLD 0.99

/* Print a warning on stderr for each feature of dataset d that leaks a label
 * on its training split (or all rows): a kept label source column, or a
 * single-feature AUC above TL_LUA_LEAK_THRESHOLD. `s` is the schema the
 * dataset was loaded with (for keep=). Silent when the check cannot run. */
void tl_lua_leakage_warn(const tl_dataset *d, const tl_data_schema *s);

#endif
