/* data/data_types.h — the types of the data API: tasks, splits, the opaque
 * dataset and the loading schema. Types only (no functions), so that the
 * public headers of data/ and its private header share them without
 * depending on each other. See data.h for the contract of the whole.
 */
#ifndef TL_DATA_TYPES_H
#define TL_DATA_TYPES_H

#include "core.h"

typedef enum { TL_TASK_BINARY, TL_TASK_REGRESSION } tl_task_type;

/* The model's limits (model.h TL_MAX_TASKS, TL_TASK_NAME_MAX), checked by the
 * loader so that a dataset no model can take is refused when it is read. */
#define TL_DATA_MAX_TASKS 8
#define TL_DATA_TASK_NAME_MAX 32 /* names up to 31 bytes */

/* One split: a view into its dataset's arrays (owned by the dataset). */
typedef struct {
    const char *name;  /* "train", "valid", "test", "all" */
    size_t n;          /* rows */
    int32_t *cat;      /* n x n_cat ids; field f's ids are in 0 .. vocab[f]-1 */
    float *num;        /* n x n_num numeric features (transformed) */
    float *labels;     /* n x n_tasks: 0/1 for binary tasks, the value for regression */
    int32_t *group;    /* n group ids for GAUC (user id), or NULL */
    float *weight;     /* n sample weights, or NULL (all 1) */
    /* Added after the contract: where each row came from. */
    uint32_t *row;     /* n 0-based data-row indices in the source file (each file
                          of a split-by-files load counts from 0) */
    /* The multi-valued fields' ids: n x bag_slots, field b's in its bag_len[b]
     * slots after the fields before it, -1 = an empty slot (the layout of a
     * shard row); NULL and 0 when the dataset has none. */
    int32_t *bag;
    int bag_slots;
} tl_split;

typedef struct tl_dataset tl_dataset;

/* ---- schema ------------------------------------------------------------ */

typedef enum {
    TL_NUM_STANDARD = 0, /* (x - mean) / std with training-split statistics */
    TL_NUM_LOG1P,        /* sign(x) * log1p(|x|) */
    TL_NUM_NONE,         /* the value as parsed */
    TL_NUM_QUANTILE      /* training-split quantile buckets → a categorical field */
} tl_num_transform;

typedef enum {
    TL_LABEL_POSITIVE = 0, /* 1 when the field is one of `positive`, else 0 */
    TL_LABEL_THRESHOLD,    /* 1 when the number is >= threshold, else 0 */
    TL_LABEL_REGRESSION    /* the number itself */
} tl_label_kind;

typedef struct {
    const char *name;          /* column name */
    int min_count;             /* values seen fewer times in train → OOV; 0 = schema default */
    int hash_buckets;          /* > 0: hash into this many buckets instead of a vocabulary */
} tl_data_cat_col;

/* Quantile bucket edges come from an exact sort of the training values up
 * to this many values, and from a streaming quantile sketch (data/sketch.h,
 * k = TL_DATA_SKETCH_K: one pass, about 3k floats, rank error about 2/k)
 * above it or when the schema asks for it (quantile_sketch). */
#define TL_DATA_SKETCH_ROWS ((size_t)1 << 24)
/* The streaming CSV conversion (tl_shards_convert_csv) holds at most this
 * many values of a quantile field for the exact sort (4 MB), and takes the
 * sketch's edges above it: with more training values than this its edges
 * are those of quantile_sketch = 1, not of the in-memory sort. */
#define TL_DATA_STREAM_EXACT_ROWS ((size_t)1 << 20)
#define TL_DATA_SKETCH_K 1024

typedef struct {
    const char *name;
    tl_num_transform transform;
    int buckets;               /* TL_NUM_QUANTILE: number of buckets (default 10) */
} tl_data_num_col;

/* A multi-valued field ("tags": a|b|c) or a sequence ("hist": the last
 * max_len values): its values share one vocabulary (or hash buckets) and
 * are pooled into one embedding (ops/bag.h). */
#define TL_DATA_MAX_BAGS 16
#define TL_DATA_MAX_BAG_LEN 256
typedef enum { TL_POOL_SUM = 0, TL_POOL_MEAN, TL_POOL_MAX } tl_pooling;

typedef struct {
    const char *name;          /* column name */
    const char *sep;           /* separator of the values inside the field ("|"), 1 to 8 chars */
    tl_pooling pooling;
    int max_len;               /* slots per row, 1 .. TL_DATA_MAX_BAG_LEN; 0: the longest row read
                                  (up to TL_DATA_MAX_BAG_LEN). A longer row keeps max_len values
                                  and is counted as truncated */
    int keep_first;            /* truncation keeps the first max_len values; 0 (the default):
                                  the last ones, the most recent of a behaviour sequence written
                                  oldest first (as DIN/Ali-CCP and KuaiRand preprocessing do) */
    int min_count;             /* as tl_data_cat_col, counted over every value of the field */
    int hash_buckets;
} tl_data_bag_col;

typedef struct {
    const char *task;          /* task name */
    const char *column;        /* source column */
    tl_label_kind kind;
    const char *const *positive; int n_positive;  /* TL_LABEL_POSITIVE */
    /* Optional: the values meaning 0. When given, any other value is an
     * "unknown label value" error. When absent, the first value seen that is
     * not positive is the negative one, and a third distinct value is an
     * error naming file, line and value, unless unknown_negative is set:
     * then every value that is not positive is 0. */
    const char *const *negative; int n_negative;
    int unknown_negative;
    double threshold;          /* TL_LABEL_THRESHOLD */
    int keep;                  /* keep the source column among the features (when any
                                  label on a column keeps it, it stays) */
} tl_data_label;

typedef enum { TL_SPLIT_NONE = 0, TL_SPLIT_RATIO, TL_SPLIT_MODULO, TL_SPLIT_FILES } tl_split_kind;
typedef enum { TL_BAD_ERROR = 0, TL_BAD_SKIP } tl_bad_policy;

/* Which split a residue goes to with TL_SPLIT_MODULO. */
enum { TL_TO_DROP = -1, TL_TO_TRAIN = 0, TL_TO_VALID = 1, TL_TO_TEST = 2 };
#define TL_MODULO_MAX 1024

/* A loading schema. Every pointer is borrowed for the duration of the call;
 * zero-initialise and fill what you need (tl_data_schema_init sets the
 * defaults). Features are only the columns listed in `cat`, `num` and `bag`;
 * columns in no role are ignored. A bag field's text is split on its sep;
 * an empty or missing field is an empty bag (its pooled embedding is zeros),
 * an empty value between separators ("a||b", "a|") is a bad row; ids as for
 * categorical fields (0 = not in training), without a missing id.
 *
 * Text rules (RFC 4180): fields may be quoted ("a,b", "" inside quotes is
 * one quote) and a quoted field may span lines (its line breaks become
 * "\n"); "\r\n" line ends are accepted, a UTF-8 byte-order mark is skipped,
 * the last line needs no newline; blank lines between records are not rows.
 * Error messages name file:line and the column; for a record spanning lines
 * the line is the one of the bad field, followed by "(record from line N)". Categorical ids: 0 = a value not in the training split
 * (or rarer than min_count), 1 = missing, 2.. = training values in order of
 * first appearance; with hash_buckets > 0, ids 0..buckets-1 and buckets for
 * missing. Quantile fields: 0 = missing, 1.. = buckets. Numeric missing
 * values get the training mean, and a 0/1 column "<name>_missing" is added
 * when the training split had any. The dataset's rows are stored split by
 * split (train, valid, test; file order within each); tl_split.row gives
 * each row's index in its source file. */
typedef struct {
    const char *path;          /* the file (.gz read through zlib), the train file for TL_SPLIT_FILES */
    const char *sep;           /* separator: one char, or a short string such as ", " or "::" */
    int header;                /* 1: first line (after `skip`) names the columns */
    const char *const *columns; int n_columns; /* column names when header = 0 */
    int skip;                  /* leading lines to skip */
    const char *const *missing; int n_missing; /* values meaning missing; default "" and "?" */
    const tl_data_cat_col *cat; int n_cat;
    const tl_data_num_col *num; int n_num;
    const tl_data_bag_col *bag; int n_bag;   /* multi-valued and sequence fields */
    const tl_data_label *labels; int n_labels;
    const char *id;            /* group-id column for GAUC, or NULL */
    const char *weight;        /* sample-weight column, or NULL */
    int min_count;             /* default min_count for categorical columns (1) */
    tl_split_kind split;
    double ratio[3];           /* TL_SPLIT_RATIO: train, valid, test (sum 1) */
    int modulo;                /* TL_SPLIT_MODULO: row index i goes to to[i % modulo] */
    int8_t modulo_to[TL_MODULO_MAX];
    const char *valid_path, *test_path;  /* TL_SPLIT_FILES */
    uint64_t seed;
    tl_bad_policy on_bad;
    int cache;                 /* 1: use/write a binary cache */
    const char *cache_dir;     /* NULL: next to the source file */
    const char *name;          /* dataset name for messages; NULL: the file name */
    int skip_initial_space;    /* 1: spaces at the start of each field are skipped (Python
                                  csv's skipinitialspace): sep="," then reads "a, b" as "a","b" */
    size_t max_rows;           /* > 0: read at most this many data rows of each file */
    int quantile_sketch;       /* 1: every quantile column's edges from the sketch, at any size;
                                  0: only above TL_DATA_SKETCH_ROWS values */
    size_t max_vocab;          /* tl_shards_convert_csv only: a vocabulary field (single or
                                  multi-valued, without hash_buckets) with more distinct values
                                  than this is an error naming it (its table is in memory); 0:
                                  no limit */
    size_t auto_hash;          /* tl_shards_convert_csv only: a single or multi-valued field without
                                  hash_buckets or its own min_count whose table of distinct values
                                  (all splits) grows past this many in pass 1 switches to hashed
                                  ids (auto_hash_buckets buckets): the values seen so far are
                                  hashed, their table freed; 0: never (max_vocab still applies) */
    int auto_hash_buckets;     /* its buckets; 0: the power of two >= 4 x auto_hash */
    int split_by_hash;         /* TL_SPLIT_RATIO: 1: each row's split from a hash of (seed, its data
                                  row index in the file) against the ratios, as the streaming
                                  conversion (tl_shards_convert_csv) splits; split sizes then follow
                                  the ratios only approximately (binomially), and a row's split does
                                  not depend on the other rows. 0: a seeded permutation of the kept
                                  rows with exactly round(ratio * rows) rows per split */
} tl_data_schema;

#endif
