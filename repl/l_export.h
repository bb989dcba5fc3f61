/* l_export.h — m:export (repl/l_export.c): a trained model as an ONNX file
 * or a C99 file (or header) for serving, with its vocabularies as JSON. */
#ifndef TL_L_EXPORT_H
#define TL_L_EXPORT_H

#include <lua.h>

/* Add m:export to the model methods and its help text. */
void tl_lua_open_export(lua_State *L, int tl);

#endif
