/* export/c_source.h — a lowered model (lower.h) as one C99 file: the
 * weights as static const float arrays and
 *
 *   int <name>_predict(const int32_t *ids, const float *numeric, size_t n, float *out);
 *
 * ids is n x n_cat (row-major), numeric n x n_raw (raw values, NaN =
 * missing), out n x n_outputs (task order of the export). A model with
 * multi-valued fields takes one more argument after ids, `const int32_t
 * *bags`: n x bag_slots, each field's slots side by side in field order,
 * -1 in the empty ones (tl_split.bag's layout). Returns 0, or -1 when an id
 * is outside its field's vocabulary (nothing is read out of bounds; rows
 * before the bad one are written). It needs only libm,
 * allocates nothing (each row's activations live on the stack) and keeps no
 * state, so any number of threads may call it at once. */
#ifndef TL_EXPORT_C_SOURCE_H
#define TL_EXPORT_C_SOURCE_H

#include "lower.h"
#include "pb.h"

/* `name` must be a C identifier of at most 48 bytes. */
tl_status tl_export_c_check_name(const char *name);
/* Append the file's text to out (out->oom on allocation failure). header = 1:
 * an include guard and every function static inline. */
tl_status tl_export_c_encode(const tl_xgraph *x, const tl_model_config *cfg, const char *name,
                             int header, tl_pb *out);

#endif
