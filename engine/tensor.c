/* tensor.c — tensor allocation and initialisers. */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Elements of a tensor at most: its bytes fit in a size_t and in an int64. */
#define TL_TENSOR_MAX_NUMEL ((int64_t)1 << 60)

static tl_status check_shape(int ndim, const int64_t *shape)
{
    if (ndim < 1 || ndim > TL_MAX_DIMS)
        return tl_fail(TL_ERR_SHAPE, "tensor rank %d outside 1..%d", ndim, TL_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0 || shape[i] > ((int64_t)1 << 40))
            return tl_fail(TL_ERR_SHAPE, "tensor dimension %d is %lld; must be positive",
                           i + 1, (long long)shape[i]);
    /* Each dimension is bounded, their product is not: check it before it wraps. */
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (n > TL_TENSOR_MAX_NUMEL / shape[i]) {
            char buf[128];
            tl_tensor t = {ndim, {0}, NULL, 0};
            for (int j = 0; j < ndim; j++) t.shape[j] = shape[j];
            return tl_fail(TL_ERR_SHAPE, "tensor %s has more than 2^60 elements",
                           tl_tensor_shape_str(&t, buf, sizeof buf));
        }
        n *= shape[i];
    }
    return TL_OK;
}

static tl_tensor *alloc_header(int ndim, const int64_t *shape)
{
    if (check_shape(ndim, shape) != TL_OK) return NULL;
    tl_tensor *t = tl_calloc(1, sizeof *t, "tensor");
    if (!t) return NULL;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    return t;
}

tl_tensor *tl_tensor_new(int ndim, const int64_t *shape)
{
    tl_tensor *t = alloc_header(ndim, shape);
    if (!t) return NULL;
    int64_t n = tl_tensor_numel(t);
    char what[160], sh[128];
    snprintf(what, sizeof what, "tensor %s", tl_tensor_shape_str(t, sh, sizeof sh));
    if (tl_memory_check((uint64_t)n * sizeof(float), 0, what) != TL_OK) {
        tl_free(t);
        return NULL;
    }
    t->data = tl_malloc_aligned((size_t)n * sizeof(float), "tensor data");
    if (!t->data) {
        tl_free(t);
        return NULL;
    }
    memset(t->data, 0, (size_t)n * sizeof(float));
    t->owns = 1;
    return t;
}

tl_tensor *tl_tensor_view(float *data, int ndim, const int64_t *shape)
{
    tl_tensor *t = alloc_header(ndim, shape);
    if (t) t->data = data;
    return t;
}

void tl_tensor_free(tl_tensor *t)
{
    if (!t) return;
    if (t->owns) tl_free_aligned(t->data);
    tl_free(t);
}

int64_t tl_tensor_numel(const tl_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

char *tl_tensor_shape_str(const tl_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

tl_status tl_init_fill(float *data, int64_t rows, int64_t cols, tl_init init,
                       float scale, tl_rng *rng)
{
    int64_t n = rows * cols;
    double fan_in = (double)rows, fan_out = (double)cols;
    float a;
    switch (init) {
    case TL_INIT_ZEROS:
        memset(data, 0, (size_t)n * sizeof(float));
        return TL_OK;
    case TL_INIT_CONSTANT:
        for (int64_t i = 0; i < n; i++) data[i] = scale;
        return TL_OK;
    case TL_INIT_UNIFORM:
        a = scale;
        break;
    case TL_INIT_XAVIER_UNIFORM:
        a = (float)sqrt(6.0 / (fan_in + fan_out));
        break;
    case TL_INIT_HE_UNIFORM:
        a = (float)sqrt(6.0 / fan_in);
        break;
    case TL_INIT_NORMAL:
        for (int64_t i = 0; i < n; i++) data[i] = scale * tl_rng_normal(rng);
        return TL_OK;
    case TL_INIT_XAVIER_NORMAL:
        a = (float)sqrt(2.0 / (fan_in + fan_out));
        for (int64_t i = 0; i < n; i++) data[i] = a * tl_rng_normal(rng);
        return TL_OK;
    case TL_INIT_HE_NORMAL:
        a = (float)sqrt(2.0 / fan_in);
        for (int64_t i = 0; i < n; i++) data[i] = a * tl_rng_normal(rng);
        return TL_OK;
    default:
        return tl_fail(TL_ERR_ARG, "unknown initialiser %d", (int)init);
    }
    for (int64_t i = 0; i < n; i++) data[i] = a * (2.0f * tl_rng_uniform(rng) - 1.0f);
    return TL_OK;
}

tl_status tl_tensor_init(tl_tensor *t, tl_init init, float scale, tl_rng *rng)
{
    int64_t n = tl_tensor_numel(t);
    return tl_init_fill(t->data, t->shape[0], n / t->shape[0], init, scale, rng);
}
