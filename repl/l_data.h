/* l_data.h — Lua binding of engine/data.h: tl.data.csv, tl.datasets.*, and
 * the dataset ("tl.dataset") and split ("tl.split") userdata. */
#ifndef TL_L_DATA_H
#define TL_L_DATA_H

#include <lua.h>

#include "data.h"

#define TL_DATASET_MT "tl.dataset"
#define TL_SPLIT_MT "tl.split"

/* Add tl.data = {csv} and tl.datasets = {census, synthetic, movielens,
 * amazon_video_games, synthetic_pair} to the
 * tl table at absolute index `tl`, and register their help texts. */
void tl_lua_open_data(lua_State *L, int tl);

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

#endif
