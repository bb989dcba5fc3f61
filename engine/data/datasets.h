/* data/datasets.h — the built-in real datasets: UCI Census-Income (KDD),
 * MovieLens (1M and 100K) and Amazon Video Games as the DML authors
 * preprocessed it. The engine takes their folders as arguments.
 */
#ifndef TL_DATA_DATASETS_H
#define TL_DATA_DATASETS_H

#include "data_types.h"

/* UCI Census-Income (KDD), census-income.test.gz from `dir` (NULL:
 * ./data/census_income_kdd; the engine reads no environment variable, the
 * REPL resolves $TOWERLAB_DATA and the program's own data folder). Tasks income and
 * never_married (+ education = bachelors or higher when with_education);
 * split by row index i: i%10<8 train, 8 valid, 9 test. Uses the cache. */
tl_status tl_data_census(const char *dir, int with_education, tl_dataset **out);
/* Like tl_data_census with caching on or off (cache=0 for cold benchmarks). */
tl_status tl_data_census_ex(const char *dir, int with_education, int cache, tl_dataset **out);

/* MovieLens from `dir` (ML-1M layout: ratings.dat[.gz] or the ratings prefix,
 * users.dat, movies.dat; or ML-100K: u.data[.gz], u.user, u.item). NULL dir:
 * ../shared/data/movielens_1m. Tasks like (rating >= 4) and rating
 * (regression); features user, movie, gender, age, occupation, zip prefix,
 * first genre, year; group = user; random 8:1:1 split with `seed`. */
tl_status tl_data_movielens(const char *dir, uint64_t seed, tl_dataset **out);

/* Amazon Video Games (5-core) as preprocessed by the DML authors (Ren et al.
 * 2023): Video_Games_val.txt and Video_Games_test.txt from `dir` (no header,
 * rated,like,user_id,item_id; 46,356 rows each), read in place and
 * concatenated (val then test; tl_split.row counts through both), then split
 * 8:1:1 at random by `seed`. Tasks rated and like (binary, nested: like => rated,
 * checked); categorical user_id and item_id; group = user_id. */
tl_status tl_data_amazon_video_games(const char *dir, uint64_t seed, tl_dataset **out);

#endif
