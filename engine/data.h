/* data.h — datasets: schema-driven CSV/TSV(.gz) loading, vocabularies,
 * splits, binary cache, and the built-in datasets.
 *
 * CONTRACT FOR THE REST OF THE ENGINE (training loop, metrics, bindings):
 * a dataset has a fixed feature layout (categorical fields with vocabulary
 * sizes, numeric columns) and tasks; its rows are held column-parsed in
 * row-major arrays and exposed as splits (train / valid / test / all).
 *
 * This header gathers the public headers of engine/data/, one per piece:
 *   data_types.h      tasks, splits, the dataset handle, the loading schema
 *   dataset.h         a dataset's layout, splits and vocabularies; free
 *   schema.h          the schema's defaults
 *   csv.h             loading a CSV/TSV(.gz) file (through the binary cache)
 *   datasets.h        Census-Income, MovieLens, Amazon Video Games
 *   alibaba.h         Ali-CCP (the release or torch-rechub's CSV), AliExpress
 *   sketch.h          a streaming quantile sketch (KLL) for quantile buckets
 *   synthetic_data.h  the synthetic generators (synthetic.h) as datasets
 * The pieces' shared internals are in data/data_internal.h.
 */
#ifndef TL_DATA_H
#define TL_DATA_H

#include "data/alibaba.h"
#include "data/csv.h"
#include "data/data_types.h"
#include "data/dataset.h"
#include "data/datasets.h"
#include "data/schema.h"
#include "data/sketch.h"
#include "data/synthetic_data.h"

#endif
