/* export/onnx.h — a lowered model (lower.h) as an ONNX model: IR version 8,
 * default domain opset 13..17, dynamic batch N.
 *
 * Inputs: "ids" int32 [N, n_cat] (the encoded categorical ids, field order
 * of the dataset) and "numeric" float [N, n_raw] (the raw plain numeric
 * columns, NaN = missing); either is absent when the model has none. Each
 * multi-valued field <f> is one more input "bag.<f>" int32 [N, slots]: the
 * ids of the row's values, -1 in the empty slots (an id outside -1 .. size-1
 * reads id 0, as an out-of-range single id does).
 * Outputs: one float [N, 1] per exported task, named by the task: its
 * probability (binary) or value (regression), calibrated when asked.
 *
 * The protobuf encoding is written by hand (export/pb.c); README "Serving a
 * model" says why. */
#ifndef TL_EXPORT_ONNX_H
#define TL_EXPORT_ONNX_H

#include "lower.h"

/* Encode x for the task names of cfg into *out (tl_pb_free). */
#include "pb.h"
tl_status tl_export_onnx_encode(const tl_xgraph *x, const tl_model_config *cfg, int opset,
                                tl_pb *out);

#endif
