/* data.h — datasets: schema-driven CSV/TSV(.gz) loading, vocabularies,
 * splits, binary cache, and the built-in datasets.
 *
 * CONTRACT FOR THE REST OF THE ENGINE (training loop, metrics, bindings):
 * a dataset has a fixed feature layout (categorical fields with vocabulary
 * sizes, numeric columns) and tasks; its rows are held column-parsed in
 * row-major arrays and exposed as splits (train / valid / test / all).
 */
#ifndef TL_DATA_H
#define TL_DATA_H

#include "core.h"
#include "synthetic.h"

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
} tl_split;

typedef struct tl_dataset tl_dataset;

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

/* Positive rate (binary) or mean (regression) of task t over the split. */
double tl_split_label_mean(const tl_split *s, const tl_dataset *d, int t);

/* Vocabulary of categorical field f: the string for id (NULL for ids without
 * one: out-of-vocabulary, missing, hash buckets, quantile buckets). */
const char *tl_dataset_vocab_string(const tl_dataset *d, int f, int32_t id);
/* Fingerprint of categorical field f's encoding (kind, size, the vocabulary
 * strings in id order, hash buckets, quantile edges): two datasets whose
 * field has the same fingerprint give its ids the same meaning. 0 for a bad f. */
uint64_t tl_dataset_vocab_fingerprint(const tl_dataset *d, int f);
/* 1 when field fa of a and field fb of b differ, with what differs written
 * to msg ("here" = a, "there" = b; e.g. the first id whose value differs);
 * 0 when they are the same. */
int tl_dataset_vocab_diff(const tl_dataset *a, int fa, const tl_dataset *b, int fb, char *msg, size_t cap);
/* How field f was encoded: "vocab", "hash" or "quantile". */
const char *tl_dataset_cat_kind(const tl_dataset *d, int f);
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
/* Bytes held by the dataset's arrays (for the Lua GC). */
size_t tl_dataset_bytes(const tl_dataset *d);

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

typedef struct {
    const char *name;
    tl_num_transform transform;
    int buckets;               /* TL_NUM_QUANTILE: number of buckets (default 10) */
} tl_data_num_col;

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
 * defaults). Features are only the columns listed in `cat` and `num`;
 * columns in no role are ignored.
 *
 * Text rules: fields may be quoted ("a,b", "" inside quotes is one quote; a
 * quoted field may not span lines); "\r\n" line ends are accepted; blank
 * lines are not rows. Categorical ids: 0 = a value not in the training split
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
} tl_data_schema;

/* Zero *s and set the defaults: sep ",", header 1, min_count 1, seed 1, no
 * split, errors on bad rows, no cache, missing values "" and "?". */
void tl_data_schema_init(tl_data_schema *s);

/* Load a CSV/TSV file described by `schema`. With `like` non-NULL the file is
 * read with like's vocabularies, statistics and layout (the schema's columns
 * must be the same; the split is ignored and all rows go to "all"); the file
 * may then lack every label column (rows to score, tl_dataset_labeled = 0). On
 * success *out owns a new dataset (free with tl_dataset_free). On failure
 * *out is NULL and the message names file, line, column and what was expected. */
tl_status tl_data_csv_load(const tl_data_schema *schema, const tl_dataset *like, tl_dataset **out);

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

/* The MMoE-paper synthetic data (synthetic.h): dim numeric features x,
 * regression tasks y1 and y2; 8:1:1 split in generation order. */
tl_status tl_data_synthetic(const tl_synthetic_params *p, tl_dataset **out);

/* The user/item task pair of synthetic.h as a dataset: categorical user_id,
 * item_id, user_segment, item_category, context; numeric user_activity,
 * item_price, x (standardised on train); binary tasks a and b; random 8:1:1
 * split by p->seed. */
tl_status tl_data_synthetic_pair(const tl_synth_pair_params *p, tl_dataset **out);

#endif
