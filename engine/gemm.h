/* gemm.h — single-precision GEMMs on the engine's worker pool.
 *
 * OpenBLAS runs every call on one thread (core.c pins it to 1); the engine
 * splits a product into row or column blocks and runs them on its own pool
 * (parallel.h). One pool instead of two means no third thread spinning on a
 * 2-core machine, independent GEMMs (experts, groups) run side by side with
 * no barrier inside each, and the passes around a GEMM (bias, activation)
 * run on the same rows in the same chunk.
 *
 * The split depends only on the shape and the thread count, so a given
 * thread count gives the same bits on every run. (OpenBLAS's kernels round
 * a block's last rows differently from its middle ones, so the bits can
 * differ between thread counts, as they did with OpenBLAS's own threads.)
 */
#ifndef TL_GEMM_H
#define TL_GEMM_H

#include <stddef.h>

/* Multiply-adds worth a thread of their own: below this a product runs on
 * the calling thread (waking a worker costs a few microseconds). */
#define TL_GEMM_GRAIN (1 << 17)

/* Row-major C[m x n] = op(A) op(B) + beta C, with op(A) [m x k] and op(B)
 * [k x n]; trans_a / trans_b non-zero mean A / B are stored transposed. Split
 * over the pool along m or n (whichever is larger), every block a plain
 * cblas_sgemm. */
void tl_gemm(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc);

/* The same on the calling thread only (for callers that split work
 * themselves). */
void tl_gemm_serial(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc);

/* How many parts a product of `macs` multiply-adds over `units` splittable
 * rows or columns should use: 1 .. the thread count. */
int tl_gemm_parts(size_t units, double macs);

#endif
