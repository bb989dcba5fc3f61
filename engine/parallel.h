/* parallel.h — a small persistent worker pool for the engine's element-wise
 * passes (bias and activation, their gradients, gate mixing, optimizer
 * updates). GEMMs keep their own threads inside OpenBLAS.
 *
 * The pool uses tl_get_threads() threads: the caller plus threads - 1
 * workers, created on the first call that needs them and joined by
 * tl_parallel_shutdown (also run at exit) or when tl_set_threads changes the
 * count. Idle workers spin for a moment, then yield their core (for up to
 * 2 ms, like OpenBLAS's threads), then sleep on a condition variable; they
 * block every signal, so Ctrl-C reaches the main thread.
 * Nothing here goes through tl_malloc: starting the pool allocates nothing
 * the allocation counter sees, and running a job allocates nothing at all.
 *
 * Partition: tl_parallel_for splits [0, n) into `parts` contiguous chunks of
 * (nearly) equal size, parts = min(threads, n / grain) but at least 1. The
 * chunks depend only on (n, grain, threads), never on timing: chunk p is
 * [p*q + min(p, r), (p+1)*q + min(p+1, r)) with q = n / parts, r = n % parts.
 * A function that keeps per-part partial results and combines them in part
 * order therefore gives the same bits on every run with the same thread
 * count. When the pool cannot run a job in parallel (a nested call, a call
 * from a second thread while a job runs, a worker that could not be
 * started), the caller runs the same chunks itself, in order.
 *
 * After a fork the child starts with no workers (it creates its own on first
 * use).
 */
#ifndef TL_PARALLEL_H
#define TL_PARALLEL_H

#include <stddef.h>

#define TL_PARALLEL_MAX_THREADS 64
/* The least work, in floats touched, worth giving a thread of its own: below
 * about this much a pass costs less than waking a worker. */
#define TL_PARALLEL_GRAIN 32768

/* Threads used by the engine's GEMMs and parallel passes (gemm.h and this
 * pool; OpenBLAS itself runs one thread per call): n > 0 sets the count,
 * n <= 0 keeps it; it starts at OPENBLAS_NUM_THREADS or the cores. A given
 * count gives the same bits on every run; with 1 the passes run in their
 * serial order. The count lives here, with the pool it sizes. */
void tl_set_threads(int n);
int tl_get_threads(void);

/* Rows per chunk for a pass touching `per_row` floats (or float-sized units
 * of work) per row: about TL_PARALLEL_GRAIN per chunk. */
static inline size_t tl_parallel_row_grain(size_t per_row)
{
    return per_row ? (TL_PARALLEL_GRAIN + per_row - 1) / per_row : TL_PARALLEL_GRAIN;
}

/* Work on indices [begin, end) of a job; `part` is the chunk's number,
 * 0 .. parts-1 (for per-part scratch). Must not fail: record problems in ctx. */
typedef void (*tl_parallel_fn)(void *ctx, size_t begin, size_t end, int part);

/* Number of chunks tl_parallel_for(n, grain, ...) uses now: 0 when n == 0,
 * else min(threads, n / grain) clamped to 1..TL_PARALLEL_MAX_THREADS
 * (grain 0 counts as 1). */
int tl_parallel_parts(size_t n, size_t grain);
/* Run fn over [0, n) in tl_parallel_parts(n, grain) chunks, chunk 0 on the
 * calling thread; returns when every chunk is done. */
void tl_parallel_for(size_t n, size_t grain, tl_parallel_fn fn, void *ctx);
/* The same with the number of chunks given (clamped to 1 .. min(n,
 * TL_PARALLEL_MAX_THREADS)), for callers that size per-part scratch from
 * tl_parallel_parts first: a thread count changed in between cannot change
 * the split. */
void tl_parallel_run(size_t n, int parts, tl_parallel_fn fn, void *ctx);
/* Bounds of chunk `part` of [0, n) split into `parts`. */
void tl_parallel_chunk(size_t n, int parts, int part, size_t *begin, size_t *end);
/* Before a pass overwrites all of [p, p + bytes): with more than one thread,
 * drop the bytes from every core's cache by storing zeros around them with
 * non-temporal stores (the contents are undefined until the pass writes
 * them). For rows the other thread last read (a layer's input, which every
 * thread's dW GEMM reads whole): a plain store to a line another core holds
 * waits for that core to drop its copy, and on the 2-core EPYC VM this runs
 * on, in windows where its two vCPUs sit far apart, rewriting 712 KB of such
 * lines took 280-440 us against 50 us after a claim (README "Performance").
 * No-op on one thread and off x86. Changes no value. */
void tl_parallel_claim(void *p, size_t bytes);
/* Join every worker (the next parallel call starts them again). */
void tl_parallel_shutdown(void);
/* Workers currently running (for tests). */
int tl_parallel_workers(void);

#endif
