/* l_tensor.h — Lua tensors (metatable "tl.tensor") over engine/tensor.h.
 *
 * Indices are 1-based in Lua and 0-based in C; the conversion happens only in
 * l_tensor.c. */
#ifndef TL_L_TENSOR_H
#define TL_L_TENSOR_H

#include <lua.h>

#include "tensor.h"

#define TL_TENSOR_MT "tl.tensor"

/* The tensor at `idx`, or raise a Lua argument error (also for a closed one). */
tl_tensor *tl_lua_check_tensor(lua_State *L, int idx);
/* The tensor at `idx`, or NULL when the value is not a live tensor. */
tl_tensor *tl_lua_test_tensor(lua_State *L, int idx);
/* Push a userdata that takes ownership of `owned` (freed by __gc/__close).
 * On allocation failure inside Lua the tensor is freed before the error. */
void tl_lua_push_tensor(lua_State *L, tl_tensor *owned);

void tl_lua_open_tensor(lua_State *L, int tl);

#endif
