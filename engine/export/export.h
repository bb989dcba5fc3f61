/* export/export.h — serving a trained model: an ONNX file, a dependency-free
 * C99 source file (or header), and the vocabularies as JSON beside them.
 *
 * Each call lowers the model's inference graph (lower.h) and writes the file
 * atomically (io_file.h). The model must be trained and `d` must be the data
 * it was built on (its numeric statistics go into the graph, its
 * vocabularies into the JSON file). README "Serving a model" documents the
 * inputs, outputs and the JSON format.
 */
#ifndef TL_EXPORT_H
#define TL_EXPORT_H

#include "export/lower.h"

/* ONNX, opset 13..17 (IR version 8). */
tl_status tl_export_onnx(tl_model *m, const tl_dataset *d, const tl_export_options *o, int opset,
                         const char *path);
/* C99: `name` is the C identifier prefix (<name>_predict); header = 1 writes
 * the same content as a header (include guard, every function static). */
tl_status tl_export_c(tl_model *m, const tl_dataset *d, const tl_export_options *o,
                      const char *name, int header, const char *path);
/* The JSON description of the inputs: categorical vocabularies (id of each
 * value), hash and quantile fields, the multi-valued fields (input, slots,
 * pooling, truncation and encoding), the raw numeric columns and their
 * statistics, the outputs. */
tl_status tl_export_vocab_json(tl_model *m, const tl_dataset *d, const tl_export_options *o,
                               const char *path);

#endif
