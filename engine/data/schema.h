/* data/schema.h — the loading schema's defaults (the schema's types are in
 * data_types.h; schema.c also resolves a schema into the columns to read).
 */
#ifndef TL_DATA_SCHEMA_H
#define TL_DATA_SCHEMA_H

#include "data_types.h"

/* Zero *s and set the defaults: sep ",", header 1, min_count 1, seed 1, no
 * split, errors on bad rows, no cache, missing values "" and "?". */
void tl_data_schema_init(tl_data_schema *s);

#endif
