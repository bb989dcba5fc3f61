/* kernel.h — `towerlab --kernel connection.json`: a Jupyter kernel speaking
 * the messaging protocol 5.3 over ZeroMQ, every message signed and verified
 * with HMAC-SHA256.
 *
 * Threads: the calling (main) thread owns the Lua state and the shell and
 * stdin sockets; one I/O thread owns iopub, control and heartbeat and
 * forwards what the code prints (fd 1 and 2 point into pipes while a cell
 * runs) as `stream` messages. Everything the main thread publishes goes
 * through the I/O thread in order, after the output printed before it.
 * SIGINT (Jupyter's interrupt_mode "signal") and interrupt_request on the
 * control socket both go through run.c's Ctrl-C handler: the running cell
 * stops at the next Lua instruction or engine batch.
 *
 * Only the program links this file (libzmq, jansson, libcrypto); towerlab.so
 * does not. */
#ifndef TL_KERNEL_H
#define TL_KERNEL_H

#include <lua.h>

/* The largest frame (one part of a message) the kernel accepts on any of
 * its sockets: 64 MiB. A peer that sends a larger one is disconnected by
 * ZeroMQ as soon as the frame's length is read, so nothing of it is
 * buffered; Jupyter front ends reconnect at once. Cells, completions and
 * comm messages are far smaller. */
#define TL_KERNEL_MAX_FRAME ((int64_t)64 << 20)

/* Serve the kernel described by the JSON connection file until a
 * shutdown_request. `L` has the tl library loaded (global `tl`). Returns 0
 * after a clean shutdown, 1 when the connection file or the sockets cannot
 * be set up (the reason is printed to stderr). */
int tl_kernel_run(lua_State *L, const char *connection_file);

/* For fuzz/fuzz_kernel_msg.c and its replay test: run the check every
 * received message goes through (delimiter, HMAC-SHA256 under `key`, "" or
 * NULL for none, JSON frames) on n frames copied from frames[i] (sizes[i]
 * bytes). Returns 1 when the kernel would accept the message, 0 when it
 * would drop it, -1 on bad arguments or while a kernel runs. */
int tl_kernel_parse_for_fuzz(const void *const *frames, const size_t *sizes, int n, const char *key);

#endif
