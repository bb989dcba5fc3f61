/* data/dataset.h — a loaded dataset: its layout, splits and vocabularies.
 * Read-only accessors; datasets are made by the loaders (csv.h, datasets.h,
 * synthetic_data.h) and freed here.
 */
#ifndef TL_DATA_DATASET_H
#define TL_DATA_DATASET_H

#include "data_types.h"

/* Layout shared by all splits. */
int tl_dataset_n_cat(const tl_dataset *d);
int tl_dataset_n_num(const tl_dataset *d);
int tl_dataset_n_tasks(const tl_dataset *d);
const int32_t *tl_dataset_vocab(const tl_dataset *d);        /* n_cat sizes */
const char *tl_dataset_cat_name(const tl_dataset *d, int f);
const char *tl_dataset_num_name(const tl_dataset *d, int j);
const char *tl_dataset_task_name(const tl_dataset *d, int t);
tl_task_type tl_dataset_task_type(const tl_dataset *d, int t);
/* A split by name ("train", "valid", "test", "all"); NULL when absent. */
const tl_split *tl_dataset_split(const tl_dataset *d, const char *name);
void tl_dataset_free(tl_dataset *d);

/* ---- additions beyond the contract ------------------------------------- */

/* Fill order[0..s->n) with a permutation of the split's rows drawn from rng
 * (seed the rng with seed and epoch for per-epoch shuffling). Never fails for
 * a valid split; returns TL_ERR_ARG on NULL arguments. */
tl_status tl_split_shuffle(const tl_split *s, tl_rng *rng, uint32_t *order);
/* Same, with the rng seeded from (seed, epoch): epoch e of a run with seed s
 * always sees the same order. */
tl_status tl_split_epoch_order(const tl_split *s, uint64_t seed, int epoch, uint32_t *order);

/* The view of rows from .. from+n of s (a chunk to predict or write), with
 * n_cat ids, n_num numbers and n_tasks labels a row. */
tl_split tl_split_rows(const tl_split *s, size_t from, size_t n, int n_cat, int n_num, int n_tasks);

/* Positive rate (binary) or mean (regression) of task t over the split. */
double tl_split_label_mean(const tl_split *s, const tl_dataset *d, int t);

/* Vocabulary of categorical field f: the string for id (NULL for ids without
 * one: out-of-vocabulary, missing, hash buckets, quantile buckets). */
const char *tl_dataset_vocab_string(const tl_dataset *d, int f, int32_t id);
/* Fingerprint of categorical field f's encoding (kind, size, the vocabulary
 * strings in id order, hash buckets, quantile edges): two datasets whose
 * field has the same fingerprint give its ids the same meaning. 0 for a bad f
 * and for a dataset whose ids have no known values (kind "ids"). */
uint64_t tl_dataset_vocab_fingerprint(const tl_dataset *d, int f);
/* The same for multi-valued field b. */
uint64_t tl_dataset_bag_fingerprint(const tl_dataset *d, int b);
/* 1 when field fa of a and field fb of b differ, with what differs written
 * to msg ("here" = a, "there" = b; e.g. the first id whose value differs);
 * 0 when they are the same. */
int tl_dataset_vocab_diff(const tl_dataset *a, int fa, const tl_dataset *b, int fb, char *msg, size_t cap);
/* How field f was encoded: "vocab", "hash" or "quantile"; "ids" for a
 * dataset of shards written without their encodings (the synthetic Ali-CCP
 * stream's, or of an older towerlab): the ids are all that is known. */
const char *tl_dataset_cat_kind(const tl_dataset *d, int f);
/* Bucket edges of quantile field f, ascending, their count in *n: a value x
 * gets id 1 + (number of edges <= x), a missing one id 0. NULL (and *n = 0)
 * for other fields. */
const float *tl_dataset_quantile_edges(const tl_dataset *d, int f, int *n);
/* Numeric column j's transform ("standard", "log1p", "none", "flag") and the
 * training-split mean/std used for it. */
const char *tl_dataset_num_transform(const tl_dataset *d, int j, double *mean, double *std);
/* Where the dataset came from ("census-income.test.gz", "synthetic", ...). */
const char *tl_dataset_source(const tl_dataset *d);
/* 0 when the dataset was read with like= from a file without its label
 * columns (rows to score): its labels are NaN and it can only be predicted. */
int tl_dataset_labeled(const tl_dataset *d);
/* 1 when the dataset was read from its binary cache. */
int tl_dataset_from_cache(const tl_dataset *d);
/* Rows skipped with on_bad = skip, and the line numbers of the first few
 * (up to 8, in `lines`, which may be NULL). Returns the total count. */
size_t tl_dataset_skipped(const tl_dataset *d, const uint64_t **lines, int *n_lines);
/* Hashed field f: 1 with *values = its distinct training values and
 * *collided = how many of them share a bucket with an earlier one (the
 * collision rate is collided / values); 0 when f is not hashed or the
 * counts are not known (loaded from the cache, or with like=). */
int tl_dataset_hash_collisions(const tl_dataset *d, int f, uint32_t *values, uint32_t *collided);
/* Multi-valued fields (tl_data_bag_col): their count, and field b's name,
 * id count, slots per row (tl_split.bag holds them in field order), pooling,
 * encoding ("vocab" or "hash"), the string of an id (NULL as for
 * tl_dataset_vocab_string), and the rows read whose values did not fit in
 * its slots (truncated to the first or last ones). NULL / 0 for a bad b. */
int tl_dataset_n_bag(const tl_dataset *d);
const char *tl_dataset_bag_name(const tl_dataset *d, int b);
int32_t tl_dataset_bag_vocab(const tl_dataset *d, int b);
int tl_dataset_bag_len(const tl_dataset *d, int b);
tl_pooling tl_dataset_bag_pool(const tl_dataset *d, int b);
const char *tl_dataset_bag_kind(const tl_dataset *d, int b);
const char *tl_dataset_bag_string(const tl_dataset *d, int b, int32_t id);
uint64_t tl_dataset_bag_truncated(const tl_dataset *d, int b);
/* 1 when a longer row of bag field b keeps its first values (keep='first'), 0 the last. */
int tl_dataset_bag_keep_first(const tl_dataset *d, int b);
/* tl_dataset_vocab_diff for bag field ba of a and bb of b. */
int tl_dataset_bag_diff(const tl_dataset *a, int ba, const tl_dataset *b, int bb, char *msg, size_t cap);
/* Bytes held by the dataset's arrays (for the Lua GC). */
size_t tl_dataset_bytes(const tl_dataset *d);

#endif
