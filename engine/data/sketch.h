/* data/sketch.h — a streaming quantile sketch: KLL (Karnin, Lang, Liberty,
 * "Optimal Quantile Approximation in Streams", FOCS 2016), in the compactor
 * form of Liberty's reference implementation (capacity k (2/3)^depth + 1).
 *
 * One pass over the values, memory bounded by about 3k floats whatever the
 * count; a value's estimated rank is off by at most about 2/k of the count
 * with high probability (tests/test_data.c measures up to about 1.8/k on a
 * million values in random, sorted and reversed order, and checks 2.5/k). The compactions' coin flips come from the seed:
 * the same values in the same order with the same seed give the same
 * answers. While fewer than k + 1 values were added the answers are exact.
 */
#ifndef TL_DATA_SKETCH_H
#define TL_DATA_SKETCH_H

#include "core.h"

typedef struct tl_sketch tl_sketch;

/* A new empty sketch with accuracy parameter k (8 .. 65536) in *out. */
tl_status tl_sketch_new(int k, uint64_t seed, tl_sketch **out);
void tl_sketch_free(tl_sketch *s);
/* Add one value (the caller leaves out NaN). */
tl_status tl_sketch_add(tl_sketch *s, float x);
/* Values added. */
uint64_t tl_sketch_count(const tl_sketch *s);
/* Values held now (the memory bound). */
size_t tl_sketch_retained(const tl_sketch *s);
/* out[i] = the value at 0-based rank rank[i] of the sorted values added:
 * the smallest held value whose estimated count of values <= it exceeds
 * rank[i] (the last value for ranks past the end). Fails only on no memory
 * or an empty sketch. */
tl_status tl_sketch_quantiles(const tl_sketch *s, const double *rank, int n, float *out);

#endif
