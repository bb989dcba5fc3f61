/* l_datasets.h — tl.datasets (repl/l_datasets.c): the built-in datasets and
 * the places their files are looked for. */
#ifndef TL_L_DATASETS_H
#define TL_L_DATASETS_H

#include <lua.h>

/* Add tl.datasets = {census, synthetic, movielens, amazon_video_games,
 * synthetic_pair} to the tl table at absolute index `tl`, with help texts.
 * Needs the dataset metatable (tl_lua_open_data first). */
void tl_lua_open_datasets(lua_State *L, int tl);

#endif
