/* tensor.h — float32 tensors of up to 4 dimensions, contiguous, row-major,
 * and the initialisers shared by tensors and graph parameters.
 *
 * A tensor either owns its data (tl_tensor_new) or views memory owned by
 * someone else (tl_tensor_view: a graph's parameter block, an input buffer);
 * tl_tensor_free releases the data only when it owns it.
 */
#ifndef TL_TENSOR_H
#define TL_TENSOR_H

#include "core.h"

#define TL_MAX_DIMS 4

typedef struct {
    int ndim;
    int64_t shape[TL_MAX_DIMS];
    float *data;
    int owns;
} tl_tensor;

typedef enum {
    TL_INIT_ZEROS,
    TL_INIT_CONSTANT,       /* every element = scale */
    TL_INIT_UNIFORM,        /* U(-scale, scale) */
    TL_INIT_NORMAL,         /* N(0, scale^2) */
    TL_INIT_XAVIER_UNIFORM, /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)) */
    TL_INIT_XAVIER_NORMAL,  /* N(0, 2 / (fan_in + fan_out)) */
    TL_INIT_HE_UNIFORM,     /* U(-a, a), a = sqrt(6 / fan_in) */
    TL_INIT_HE_NORMAL       /* N(0, 2 / fan_in) */
} tl_init;

/* New zero-filled tensor. Fails (NULL, TL_ERR_SHAPE/NOMEM recorded) for ndim
 * outside 1..4, a non-positive dimension, more than 2^60 elements, or more
 * bytes than the available memory (tl_memory_check). */
tl_tensor *tl_tensor_new(int ndim, const int64_t *shape);
/* A non-owning view of `data` with the given shape. */
tl_tensor *tl_tensor_view(float *data, int ndim, const int64_t *shape);
void tl_tensor_free(tl_tensor *t);
int64_t tl_tensor_numel(const tl_tensor *t);
/* "[2, 3]" into buf; returns buf. */
char *tl_tensor_shape_str(const tl_tensor *t, char *buf, size_t n);

/* Fill data[rows*cols] of a (fan_in = rows, fan_out = cols) matrix. For
 * tensors of other rank, fan_in = shape[0] and fan_out = numel / shape[0]. */
tl_status tl_init_fill(float *data, int64_t rows, int64_t cols, tl_init init,
                       float scale, tl_rng *rng);
tl_status tl_tensor_init(tl_tensor *t, tl_init init, float scale, tl_rng *rng);

#endif
