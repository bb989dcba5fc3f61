/* data/csv.h — loading a CSV/TSV(.gz) file described by a schema, through
 * the binary cache when the schema asks for it.
 */
#ifndef TL_DATA_CSV_H
#define TL_DATA_CSV_H

#include "data_types.h"

/* Load a CSV/TSV file described by `schema`. With `like` non-NULL the file is
 * read with like's vocabularies, statistics and layout (the schema's columns
 * must be the same; the split is ignored and all rows go to "all"); the file
 * may then lack every label column (rows to score, tl_dataset_labeled = 0). On
 * success *out owns a new dataset (free with tl_dataset_free). On failure
 * *out is NULL and the message names file, line, column and what was expected. */
tl_status tl_data_csv_load(const tl_data_schema *schema, const tl_dataset *like, tl_dataset **out);

/* A ratio split by hash (s->split_by_hash, and the streaming conversion):
 * the split (TL_TO_TRAIN, TL_TO_VALID or TL_TO_TEST) of the data row at
 * 0-based index `row` of the file, from a hash of (s->seed, row) against
 * s->ratio. */
int tl_data_hash_split(const tl_data_schema *s, uint64_t row);

#endif
