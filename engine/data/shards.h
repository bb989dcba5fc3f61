/* data/shards.h — sharded binary rows on disk, for data larger than memory.
 *
 * A shard directory holds shard files "<split>-NNNNN.tls" and a manifest
 * "manifest.tls" written last. Each shard is a header (magic, version, the
 * layout's fingerprint, split, index, row count, words per row, CRC-32 of the
 * rows and of the header) followed by its rows, one fixed-size record each:
 *   int32 cat[n_cat], int32 bag[sum of bag lengths] (-1 = empty slot),
 *   float num[n_num], float label[n_tasks], float weight (when has_weight),
 *   int32 group (when has_group)
 * (4-byte words in host byte order). A shard is written to "<name>.tmp",
 * fsynced and renamed, so a file with a shard's name is always complete; its
 * checksum is verified before its rows are trusted. When the writer knows the
 * fields' encodings (tl_shard_writer_set_encodings), "encodings.tle" (cache.c)
 * records them, written before the manifest; tl_shards_load restores them.
 *
 * Writing resumes: opening a writer on a directory without a manifest keeps
 * the complete shards of the same layout (checked by checksum, in index order
 * per split; the first bad one and every later one are deleted, as are
 * leftover .tmp files) and reports how many rows of each split they hold, so a
 * deterministic producer skips those rows and goes on. A directory of another
 * layout is refused. Reading needs the manifest: an interrupted conversion
 * cannot be read until it is resumed to its end.
 *
 * Reading streams a split: per epoch the shard order is shuffled by
 * (seed, epoch), shards are mapped one at a time and their rows go through a
 * shuffle buffer of a bounded number of rows, so memory does not grow with
 * the row count; the same seed gives the same row sequence.
 */
#ifndef TL_DATA_SHARDS_H
#define TL_DATA_SHARDS_H

#include "data_types.h"

#define TL_SHARD_MAX_BAGS TL_DATA_MAX_BAGS
#define TL_SHARD_MAX_BAG_LEN TL_DATA_MAX_BAG_LEN

/* What one row holds. Names and arrays are owned by the layout (free with
 * tl_shard_layout_free). */
typedef struct {
    int n_cat, n_num, n_tasks, n_bag;
    char **cat_name;       /* n_cat */
    int32_t *vocab;        /* n_cat id counts */
    char **num_name;       /* n_num */
    char **task_name;      /* n_tasks */
    tl_task_type *task_type;
    char **bag_name;       /* n_bag multi-valued fields */
    int32_t *bag_vocab;    /* their id counts */
    int *bag_len;          /* their maximum lengths (slots per row) */
    tl_pooling *bag_pool;
    int has_weight, has_group;
} tl_shard_layout;

/* Allocate the arrays of a layout with these counts (names empty). */
tl_status tl_shard_layout_init(tl_shard_layout *l, int n_cat, int n_num, int n_tasks, int n_bag);
/* The layout of a dataset's rows (with its multi-valued fields). */
tl_status tl_shard_layout_from_dataset(tl_shard_layout *l, const tl_dataset *d);
void tl_shard_layout_free(tl_shard_layout *l);
/* Words (4 bytes) per row. */
size_t tl_shard_layout_words(const tl_shard_layout *l);

/* ---- writing --------------------------------------------------------------- */

typedef struct tl_shard_writer tl_shard_writer;

/* Open dir (created when missing, one level) for writing rows of layout l
 * (copied), rows_per_shard rows a shard (0: 262144). done[3] receives the
 * rows of train, valid and test already in complete shards (see the header's
 * comment on resuming); 0 for a new directory. A directory that has a
 * manifest is complete: TL_ERR_STATE (delete it to convert again). */
tl_status tl_shard_writer_open(const char *dir, const tl_shard_layout *l, size_t rows_per_shard,
                               tl_shard_writer **out, uint64_t done[3]);
/* Append one packed row (tl_shard_layout_words words) to split 0..2. */
tl_status tl_shard_writer_row(tl_shard_writer *w, int split, const void *row);
/* Record the fields' encodings of enc (a dataset of the writer's layout;
 * NULL or a dataset of shards without a record: none) with the shards, so
 * tl_shards_load restores them (export, like=). enc must outlive the writer. */
void tl_shard_writer_set_encodings(tl_shard_writer *w, const tl_dataset *enc);
/* Write the last partial shards, the encodings record and the manifest.
 * After it the writer only needs closing. */
tl_status tl_shard_writer_finish(tl_shard_writer *w);
/* Close: an unfinished writer deletes its partial .tmp shards (its complete
 * shards stay, for a later resume). */
void tl_shard_writer_close(tl_shard_writer *w);

/* A producer's record, for resuming only the same conversion: its identity
 * as "key value" lines (seed, options, a hash of the input rows ...), written
 * to dir/TL_SHARDS_RECORD (temporary name, fsync, rename) before the first
 * shard and removed by tl_shard_writer_finish once the manifest is written.
 * When dir (created when missing, one level) holds complete shards, they must
 * have been written under the same record: a missing record, or one whose
 * lines differ, is TL_ERR_STATE naming the first line that differs ("cannot
 * resume the conversion in DIR: seed 8 (the stopped conversion's 7); <hint>,
 * or delete the directory"); nothing is deleted. A complete directory (a
 * manifest) is TL_ERR_STATE as in tl_shard_writer_open. Call it before
 * tl_shard_writer_open. tl_shards_convert, tl_shards_convert_csv and
 * tl_data_synth_ccp_shards (synthetic_data.h) use it. */
#define TL_SHARDS_RECORD "convert.tls"
tl_status tl_shards_record_check(const char *dir, const char *record, const char *hint);

/* Progress of a long conversion: rows done of total (0: unknown); return
 * nonzero to stop it (as Ctrl-C). Called every 65536 rows. */
typedef int (*tl_shard_progress)(void *ud, uint64_t done, uint64_t total);

/* Convert a dataset's train, valid and test splits (its "all" split as train
 * when it has none) into shards in dir, resuming an interrupted conversion
 * of the same dataset (the rows in its complete shards are skipped): its
 * record (tl_shards_record_check) holds rows_per_shard, the rows of each
 * split and a hash of every row's ids, bag ids, numbers, labels, weight and
 * group, so another dataset of the same layout is refused. Checks
 * the cancellation flag (core.h) between rows: TL_ERR_CANCELLED leaves the
 * complete shards for a resume. progress may be NULL. */
tl_status tl_shards_convert(const tl_dataset *d, const char *dir, size_t rows_per_shard, tl_shard_progress progress,
                            void *ud);

/* 1 when dir holds a finished conversion (its manifest). */
int tl_shards_complete(const char *dir);
/* Delete dir's shard files, .tmp files, manifest and a producer's record
 * (TL_SHARDS_RECORD; other files and the directory stay). */
void tl_shards_remove(const char *dir);

/* Progress of a CSV conversion: pass 1 (reading what the encodings need;
 * total = rows estimated from the bytes read) or 2 (writing shards; total =
 * the rows pass 1 counted); return nonzero to stop it (as Ctrl-C). Called
 * every 65536 rows and once at the end (done = total). */
typedef int (*tl_convert_progress)(void *ud, int pass, uint64_t done, uint64_t total);

#define TL_CONVERT_MAX_HASHED 16
typedef struct {
    char name[64];
    int32_t buckets;
    uint32_t values;   /* distinct training values, estimated from the buckets they use */
    uint32_t collided; /* of them, in a bucket another one holds: values - buckets used */
    uint32_t auto_at;  /* > 0: hashed by the automatic rule (s->auto_hash) when its table
                          reached this many distinct values, */
    uint64_t auto_rows;/* after this many rows of pass 1 */
} tl_convert_hashed;

typedef struct {
    uint64_t rows[3];      /* rows of train, valid, test */
    uint64_t resumed[3];   /* of them, found in complete shards of an interrupted run */
    size_t skipped;        /* bad rows skipped (on_bad = skip), and the first lines */
    uint64_t skip_lines[8];
    int n_skip_lines;
    int n_hashed;          /* hashed fields (single, then multi-valued; the first 16) */
    tl_convert_hashed hashed[TL_CONVERT_MAX_HASHED];
} tl_convert_report;

/* Convert the CSV file(s) of schema s into shards in dir, streaming in two
 * passes, with memory that does not grow with the rows: pass 1 reads what
 * the encodings need (vocabularies of the training rows, hashed fields'
 * bucket use, numeric statistics, quantile edges, bag lengths, label
 * checks, row counts), pass 2 reads the files again and writes each row
 * encoded into its split's shards. The ids, numbers and shards are those of
 * tl_data_csv_load + tl_shards_convert for the same schema, with two
 * exceptions: a ratio split assigns each row by a hash of (seed, its data row
 * index) (s->split_by_hash is implied; see tl_data_schema), and a quantile
 * field with more than TL_DATA_STREAM_EXACT_ROWS training values gets the
 * sketch's edges (as with quantile_sketch). Memory: the
 * string table of every vocabulary field (every distinct value, with
 * hash_buckets nothing per value), group ids' table (s->id), quantile
 * fields' values up to TL_DATA_STREAM_EXACT_ROWS each (sketch: none), a few
 * chunks of rows and one open shard buffer per split. Bad rows are errors
 * naming file:line and column, or skipped (on_bad = skip) and counted in
 * *report. With s->auto_hash, a field without hash_buckets or its own
 * min_count whose table passes auto_hash distinct values in pass 1 is hashed
 * (s->auto_hash_buckets; the shards of that hash_buckets from the start;
 * report: auto_at). Resumes an interrupted conversion as tl_shards_convert (its
 * complete shards kept, the rows they hold skipped) only when it is the same
 * conversion: dir/convert.tls, written before the first shard and removed with
 * the manifest, records the seed, split, rows_per_shard, options, each file's
 * size and CRC-32 of its first and last 64 KB, pass 1's rows and hashes of the
 * encodings and of every parsed row; another one (or shards without that
 * record) is TL_ERR_STATE naming what differs. Ctrl-C or progress
 * returning nonzero: TL_ERR_CANCELLED. A file that changes between the
 * passes (pass 2 meets a bad row, or other rows than pass 1 counted) is an
 * error, and the shards are deleted (their encodings would not be the
 * file's). report (may be NULL) gets the counts, also on
 * failure as far as they got. like= loads are not converted here. */
tl_status tl_shards_convert_csv(const tl_data_schema *s, const char *dir, size_t rows_per_shard,
                                tl_convert_progress progress, void *ud, tl_convert_report *report);

/* ---- reading --------------------------------------------------------------- */

typedef struct tl_shards tl_shards;

/* Open a complete shard directory: reads the manifest and every shard's
 * header (sizes, fingerprint); checksums are verified when a shard is first
 * read. A missing manifest, a missing, short or foreign shard is an error
 * naming the file. */
tl_status tl_shards_open(const char *dir, tl_shards **out);
void tl_shards_close(tl_shards *sh);
const tl_shard_layout *tl_shards_layout(const tl_shards *sh);
const char *tl_shards_dir(const tl_shards *sh);
uint64_t tl_shards_rows(const tl_shards *sh, int split);
int tl_shards_count(const tl_shards *sh, int split);
/* A hash of the layout and of every shard's row count and checksum (from
 * the headers read by tl_shards_open): another conversion of other rows has
 * another fingerprint. */
uint64_t tl_shards_fingerprint(const tl_shards *sh);
/* Read split (1 valid, 2 test, or 0 train) fully into a new in-memory dataset
 * whose "train", "valid" and "test" splits hold the shards' splits when
 * want[k] is set (else they are empty). The layout's names, vocabulary sizes
 * and tasks carry over (ids have no strings). Refuses more than max_rows rows
 * (0: no limit). Verifies checksums. */
tl_status tl_shards_load(tl_shards *sh, const int want[3], uint64_t max_rows, tl_dataset **out);

/* A stream of one split's rows, in batches. */
typedef struct tl_stream tl_stream;

/* Flags of tl_stream_open: shuffle (shard order and a buffer of rows;
 * without it, file order), and keep the multi-valued fields' ids (without
 * it the buffer holds rows without them, and tl_stream_next's bags is NULL). */
enum { TL_STREAM_SHUFFLE = 1, TL_STREAM_BAGS = 2 };

/* buffer_rows: the shuffle buffer (0: 65536; 1: no shuffling of rows, only of
 * shard order). */
tl_status tl_stream_open(tl_shards *sh, int split, uint64_t seed, size_t buffer_rows, int flags,
                         tl_stream **out);
/* A stream of shard files first, first + stride, ... of the split only (a
 * grain of a data-parallel fit, models/model_stream.c); the whole split is
 * first 0, stride 1 (tl_stream_open). Only those files are mapped. */
tl_status tl_stream_open_part(tl_shards *sh, int split, uint64_t seed, size_t buffer_rows, int flags, int first,
                              int stride, tl_stream **out);
/* tl_stream_open_part with the split, buffer and flags of `like`. */
tl_status tl_stream_open_like(const tl_stream *like, int first, int stride, uint64_t seed, tl_stream **out);
tl_shards *tl_stream_shards(const tl_stream *st);
int tl_stream_split(const tl_stream *st);
uint64_t tl_stream_seed(const tl_stream *st);
/* TL_STREAM_SHUFFLE was set; the shuffle buffer's rows (1 without it). */
int tl_stream_shuffled(const tl_stream *st);
size_t tl_stream_buffer(const tl_stream *st);
/* The rows of those shard files (0 when there are none). */
uint64_t tl_shards_grain_rows(const tl_shards *sh, int split, int first, int stride);
void tl_stream_close(tl_stream *st);
/* Start epoch `epoch` (its shard order and buffer draws depend on seed and
 * epoch only). */
tl_status tl_stream_begin(tl_stream *st, int epoch);
/* Up to max_rows next rows (max_rows <= the stream's batch capacity, set by
 * tl_stream_reserve) into *batch, a view of buffers the stream owns valid
 * until the next call: cat, num, labels, weight (or NULL), group (or NULL);
 * bag ids (rows x sum of bag lengths, -1 = empty) in *bags when not NULL
 * (NULL without TL_STREAM_BAGS).
 * *got = 0 at the end of the epoch. */
tl_status tl_stream_next(tl_stream *st, int max_rows, tl_split *batch, const int32_t **bags, int *got);
tl_status tl_stream_reserve(tl_stream *st, int max_rows);
uint64_t tl_stream_rows(const tl_stream *st); /* of its shard files */
const tl_shard_layout *tl_stream_layout(const tl_stream *st);
/* Bytes the stream holds (buffers; mapped shard pages excluded). */
size_t tl_stream_bytes(const tl_stream *st);

#endif
