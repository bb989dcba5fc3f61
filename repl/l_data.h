/* l_data.h — Lua binding of engine/data.h: tl.data.csv, tl.datasets.*, and
 * the dataset ("tl.dataset") and split ("tl.split") userdata. */
#ifndef TL_L_DATA_H
#define TL_L_DATA_H

#include <lua.h>

#include "data.h"

#define TL_DATASET_MT "tl.dataset"
#define TL_SPLIT_MT "tl.split"

/* Add tl.data = {csv} to the tl table at absolute index `tl`, the dataset
 * and split metatables, and their help texts. */
void tl_lua_open_data(lua_State *L, int tl);
/* Print "fn: skipped N <one|many> of <source> (lines a, b, ...)" to stderr
 * when d has skipped rows (on_bad='skip', or a loader's left-out rows). */
void tl_lua_report_skipped(const tl_dataset *d, const char *fn, const char *one, const char *many);

/* The tl.data.csv options table at opts as a schema in *s (the options'
 * checks and errors of tl.data.csv, messages starting with fn; like= is not
 * read): strings and arrays stay alive while the table at `anchor` does. */
void tl_lua_csv_schema(lua_State *L, int opts, int anchor, const char *fn, tl_data_schema *s);

/* Push a new dataset userdata, still empty, and return its slot for the
 * engine to fill (tl.datasets.*: tl_data_census_ex(..., slot)). The
 * userdata owns what is put there. */
tl_dataset **tl_lua_new_dataset(lua_State *L);

/* The dataset at idx; raises a Lua argument error when idx is not an open
 * dataset. The dataset stays owned by its userdata. */
tl_dataset *tl_lua_check_dataset(lua_State *L, int idx);
/* The dataset at idx, or NULL when idx is not a dataset or it is closed. */
tl_dataset *tl_lua_test_dataset(lua_State *L, int idx);
/* The split at idx; raises when idx is not a split or its dataset is closed.
 * The split stays valid while the split userdata (which keeps its dataset
 * alive) is reachable. */
const tl_split *tl_lua_check_split(lua_State *L, int idx);
/* The dataset a split userdata at idx belongs to (raises like check_split). */
tl_dataset *tl_lua_split_dataset(lua_State *L, int idx);

/* Datasets a running m:fit reads: d:close refuses a held dataset and its
 * __gc leaves it to the fit. Holds nest (a progress callback may fit another
 * model on the same data); each hold is released once. hold returns 0 when
 * the table of held datasets is full (deeper nesting than any real use). */
int tl_lua_dataset_hold(const tl_dataset *d);
void tl_lua_dataset_release(const tl_dataset *d);
/* 1 while d is held. */
int tl_lua_dataset_busy(const tl_dataset *d);

#endif
