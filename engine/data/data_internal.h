/* data/data_internal.h — what the pieces of engine/data/ share and nothing
 * outside data/ may include: the dataset's layout, the line reader, raw rows
 * and their string tables, the resolved schema ("plan"), and the entry points
 * of the pipeline.
 *
 * Loading is two stages. Reading (csv.c, or a built-in loader in datasets.c)
 * streams the text through zlib one buffer at a time and keeps only parsed
 * columns ("raw" rows: categorical values as indices into per-column string
 * tables, numbers as floats, NaN = missing). Finishing (finish.c) assigns
 * splits, builds vocabularies and statistics from the training rows only,
 * and packs the final arrays with the rows of each split contiguous (train,
 * valid, test), so a split is a plain view. cache.c stores finished
 * datasets; schema.c checks a schema and resolves it into a plan.
 */
#ifndef TL_DATA_INTERNAL_H
#define TL_DATA_INTERNAL_H

#include <stdint.h>
#include <zlib.h>

#include "data_types.h"
#include "hash.h"

enum { CAT_VOCAB = 0, CAT_HASH, CAT_QUANT };
enum { NUM_FLAG = 4 };                            /* a "<col>_missing" 0/1 column */
enum { ID_OOV = 0, ID_MISSING = 1, ID_FIRST = 2 }; /* vocabulary ids */
#define MAX_SKIP_LINES 8
#define CANCEL_EVERY 65536

/* ---- string tables (strtab.c): interning, first-appearance order ---------- */

typedef struct {
    uint32_t *slot; /* entry index + 1, 0 = empty */
    uint32_t mask;
    uint32_t n, cap;
    uint64_t *off;  /* offsets into blob */
    uint32_t *len;
    uint32_t *hash;
    char *blob;
    size_t blen, bcap;
} strtab;

static inline const char *st_str(const strtab *t, uint32_t i) { return t->blob + t->off[i]; }

static inline int64_t st_find(const strtab *t, const char *s, size_t n, uint32_t h)
{
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t e = t->slot[i];
        if (!e) return -1;
        e--;
        if (t->hash[e] == h && t->len[e] == n && bytes_eq(t->blob + t->off[e], s, n)) return e;
    }
}

tl_status tl_strtab_init(strtab *t);
void tl_strtab_free(strtab *t);
/* Intern s[0..n) and store its index in *idx. */
tl_status tl_strtab_intern(strtab *t, const char *s, size_t n, int32_t *idx);

/* ---- the dataset (dataset.c) ---------------------------------------------- */

typedef struct {
    char *name;
    int kind;          /* CAT_VOCAB, CAT_HASH, CAT_QUANT */
    int32_t size;      /* vocabulary size (ids 0 .. size-1) */
    int32_t buckets;   /* CAT_HASH: hash buckets; CAT_QUANT: requested buckets */
    uint32_t n_str;    /* CAT_VOCAB: strings of ids ID_FIRST .. */
    uint64_t *str_off; /* n_str + 1 offsets into str_blob */
    char *str_blob;
    uint32_t n_edges;  /* CAT_QUANT: bucket edges */
    float *edges;
    /* CAT_HASH, when computed at load (not kept by the cache, not for like=
     * loads): distinct training values, and how many of them landed in a
     * bucket an earlier value already held */
    int hash_known;
    uint32_t hash_values, hash_collided;
} dcat;

/* A multi-valued field: its encoding (kind CAT_VOCAB or CAT_HASH; a
 * vocabulary has no "missing" id, but keeps the id numbering of single
 * fields), its slots per row, pooling, and the rows read whose values did
 * not fit in len (truncated). */
typedef struct {
    dcat c;
    int len;
    int pool;          /* tl_pooling */
    int keep_first;
    uint64_t truncated;
} dbag;

typedef struct {
    char *name;
    int transform;     /* tl_num_transform or NUM_FLAG */
    double mean, std;  /* of the transformed training values */
} dnum;

struct tl_dataset {
    char *source;
    int n_cat, n_num, n_tasks;
    dcat *cat;
    dnum *num;
    char **task_name;
    tl_task_type *task_type;
    int32_t *vocab;
    size_t n;          /* rows kept (all splits) */
    int32_t *catv;
    float *numv, *labv, *wt;
    int32_t *grp;
    uint32_t *row;
    int has_splits;
    size_t split_n[3];
    tl_split sp[4];    /* train, valid, test, all */
    size_t skipped;
    uint64_t skip_lines[MAX_SKIP_LINES];
    int n_skip_lines;
    int from_cache;
    int ids_only; /* from shards without an encodings record: ids, no values */
    int unlabeled;     /* read with like= from a file without label columns: labels are NaN */
    int n_bag;         /* multi-valued fields, their ids n x bag_slots (tl_split.bag) */
    dbag *bag;
    int bag_slots;
    int32_t *bagv;
};

/* "train", "valid", "test", "all": the names of tl_dataset.sp[0..3]. */
extern const char *const tl_data_split_names[4];

/* A new dataset with its per-field and per-task arrays (zeroed) in *out; on
 * failure *out may hold a partial dataset for tl_dataset_free. */
tl_status tl_data_alloc(tl_dataset **out, int n_cat, int n_num, int n_tasks);
/* Room for n_bag multi-valued fields (zeroed) in d. */
tl_status tl_data_alloc_bags(tl_dataset *d, int n_bag);
/* Point d->sp at the rows of each split (train, valid, test contiguous). */
void tl_data_set_views(tl_dataset *d);

/* ---- line reader and fields (reader.c) ------------------------------------ */

/* Bytes readable past the end of every buffer, so the field splitter can
 * load 16 bytes at a time without checking the end of the line. */
#define LR_PAD 64

typedef struct {
    gzFile gz;
    const char *path;
    char *buf;
    size_t cap, len, pos;
    int eof;
    uint64_t line; /* 1-based number of the line last returned */
} lreader;

/* Open path (plain or gzip) for reading lines; on failure nothing is held. */
tl_status tl_lreader_open(lreader *r, const char *path);
void tl_lreader_close(lreader *r);
/* Next line (without "\n" or "\r\n") in *line and *len, NUL-terminated and
 * writable; *got = 0 at end of file. */
tl_status tl_lreader_next(lreader *r, char **line, size_t *len, int *got);

typedef struct {
    const char *p;
    uint32_t n;
} field;

/* Split line[0..len) on sep (quotes: RFC 4180, "" inside quotes is one ";
 * a quoted field may hold newlines when the caller joined the lines of its
 * record, see tl_data_quote_scan). With trim, spaces at the start of every
 * field are skipped (Python csv's skipinitialspace), so that `a, "b"` has a
 * quoted second field. Stores up to maxf fields, returns the number found
 * (which may exceed maxf), or -1 - column (1-based) for a malformed quoted
 * field. Modifies line, which must have LR_PAD readable bytes after it (as
 * from tl_lreader_next). */
int tl_data_split_fields(char *line, size_t len, const char *sep, size_t seplen, int trim, field *f, int maxf);

/* Where a record's text leaves the quotes: open = 1 when it ends inside a
 * quoted field (the record goes on with the next line), col = the 1-based
 * column reached. Zero it for a new record. */
typedef struct {
    int open;
    int col;
} quote_state;
/* Advance *q over text[0..len), the next piece of a record (the line break
 * between pieces is not included: it cannot hold a quote). */
void tl_data_quote_scan(const char *text, size_t len, const char *sep, size_t seplen, int trim, quote_state *q);
/* Parse a finite decimal number; leading/trailing spaces allowed. Returns 0
 * on text. Exact fast path for short decimals, strtod for the rest. */
int tl_data_parse_number(const char *s, size_t n, double *out);

/* ---- raw rows (strtab.c) -------------------------------------------------- */

typedef struct {
    int n_cat, n_num, n_lab, has_group, has_weight;
    strtab *tab;      /* n_cat value tables */
    strtab gtab;      /* group ids */
    size_t n, cap;
    int32_t *cat;     /* n x n_cat, -1 = missing */
    float *num;       /* n x n_num, NaN = missing */
    float *lab;       /* n x n_lab */
    int32_t *grp;
    float *wt;
    uint32_t *row;
    int8_t *tag;      /* split: 0 train, 1 valid, 2 test, -1 dropped */
    size_t skipped;
    uint64_t skip_lines[MAX_SKIP_LINES];
    int n_skip_lines;
    uint64_t *npos;   /* per label: positives seen (unknown-value check) */
    char **neg;       /* per label without negative=: the negative value seen first */
    uint32_t *neg_len;
    /* multi-valued fields: value tables, each row's values (bval from boff[r],
     * field by field, bcnt[r * n_bag + b] of field b after truncation), and
     * per field the rows truncated */
    int n_bag;
    strtab *btab;
    uint64_t *boff;
    uint16_t *bcnt;
    int32_t *bval;
    size_t bv_n, bv_cap;
    uint64_t *btrunc;
    int allow_unlabeled; /* like= loads: a file may lack every label column (for scoring) */
    int unlabeled;       /* it did: labels are NaN */
} rawset;

tl_status tl_rawset_init(rawset *r, int n_cat, int n_num, int n_lab, int has_group, int has_weight);
/* Value tables for n_bag multi-valued fields (after tl_rawset_init). */
tl_status tl_rawset_init_bags(rawset *r, int n_bag);
/* Room for n more bag values. */
tl_status tl_rawset_reserve_bag_values(rawset *r, size_t n);
void tl_rawset_free(rawset *r);
/* Room for row r->n. */
tl_status tl_rawset_reserve(rawset *r);
/* Count a skipped bad row (on_bad = skip), keeping the first line numbers. */
void tl_rawset_note_skip(rawset *r, uint64_t line);

/* ---- the resolved schema (schema.c) --------------------------------------- */

/* The schema with label source columns dropped from the features. */
typedef struct {
    int n_cat, n_num;
    const tl_data_cat_col **cat;
    const tl_data_num_col **num;   /* standard/log1p/none first, then quantile */
    int n_num_plain;
    int n_bag;
    const tl_data_bag_col **bag;
    int *bag_cap;                  /* values kept per row: max_len, like='s length, or
                                      TL_DATA_MAX_BAG_LEN */
} plan;

/* Check s's columns and labels (messages start with fn) and resolve them into
 * *p; free *p with tl_data_plan_free even on failure. */
tl_status tl_data_plan_make(const tl_data_schema *s, const char *fn, plan *p);
void tl_data_plan_free(plan *p);
/* Check s's path, separator, header and split (messages start with fn). */
tl_status tl_data_schema_check(const tl_data_schema *s, const char *fn);

/* ---- reading and finishing (csv.c, finish.c) ------------------------------ */

/* Read one CSV file into rs, tagging rows with `tag` (or by modulo). */
tl_status tl_data_read_csv(const tl_data_schema *s, const plan *p, const char *path, int8_t tag, rawset *rs);

/* The seed of hash buckets: a value's bucket is hash_bytes(value, seed) % buckets. */
#define TL_DATA_HASH_SEED 0x746c

/* Reading for the streaming conversion (convert.c): the same parser, but a
 * hashed field (single or multi-valued) stores its bucket (not an index into
 * a string table: nothing is kept per distinct value), and every chunk_rows
 * kept rows (and at the end of the file) chunk() gets them and rs's rows are
 * emptied (rs->n = rs->bv_n = 0; string tables, label state and skip counts
 * carry on). bytes = the file's (compressed) bytes read so far. */
typedef struct {
    size_t chunk_rows;
    tl_status (*chunk)(void *ud, rawset *rs, uint64_t bytes);
    void *ud;
} csv_stream;
tl_status tl_data_read_csv_stream(const tl_data_schema *s, const plan *p, const char *path, int8_t tag, rawset *rs,
                                  const csv_stream *cs);

/* How the caller describes what it read (CSV schema or a built-in loader). */
typedef struct {
    const plan *p;
    const tl_data_schema *s;
    const tl_dataset *like;
    const char *source;
} finish_args;

/* Pieces of finishing the streaming conversion shares (finish.c). */
struct tl_sketch;
#define TL_DATA_SKETCH_SEED 0x736b65746368ULL /* + the column's index in the plan */
/* x under a numeric transform (log1p; others leave it). */
float tl_data_num_value(int transform, float x);
/* The encoding of one categorical or multi-valued column (kind, size,
 * vocabulary strings, or hash buckets; like's encoding lc when not NULL) from
 * its string table t and the training counts of its values, and map[i] = the
 * id of value i of t. */
tl_status tl_data_build_vocab(const strtab *t, const uint32_t *counts, const tl_data_cat_col *col,
                              const tl_data_schema *s, const dcat *lc, dcat *out, int32_t *map);
/* out's collision count from the buckets (map) of the n values of a hashed
 * field whose training counts are > 0. */
tl_status tl_data_hash_collisions(uint32_t n, const uint32_t *counts, const int32_t *map, dcat *out);
/* Quantile field c's edges (B buckets) from its k training values: vals
 * (sorted here) when sk is NULL, else the sketch that saw them. */
tl_status tl_data_quantile_edges(float *vals, size_t k, const struct tl_sketch *sk, int B, dcat *c);

/* TL_SPLIT_RATIO by hash (split_by_hash, the streaming conversion): the
 * split of the data row at 0-based index `row` (csv.h's tl_data_hash_split). */
int tl_data_split_of_row(const tl_data_schema *s, uint64_t row);

/* rs → dataset. Tasks come from s->labels (types from the label kinds). On
 * success *out owns a new dataset; rs is left for the caller to free. */
tl_status tl_data_finish(rawset *rs, const finish_args *a, tl_dataset **out);

/* ---- files (datasets.c) ---------------------------------------------------- */

/* "dir/name" in a new string (the caller frees it), NULL without memory. */
char *tl_data_path_join(const char *dir, const char *name);
/* 1 when p is a regular file. */
int tl_data_file_exists(const char *p);

/* ---- the binary cache (cache.c) ------------------------------------------- */

/* The cache key of s and its source files in *key and the cache file's path
 * in *cpath (the caller frees it), creating s->cache_dir (one level); *hit is
 * the cached dataset when a valid cache exists, else NULL. Fails only when a
 * source file cannot be read or memory runs out. */
tl_status tl_data_cache_lookup(const tl_data_schema *s, uint64_t *key, char **cpath, tl_dataset **hit);
/* Best effort: a cache that cannot be written costs speed, not correctness. */
void tl_data_cache_write(const char *cpath, uint64_t key, const tl_dataset *d);

/* The encodings record of a shard directory (cache.c): every field's encoding
 * of e (vocabulary strings, hash buckets, quantile edges, numeric statistics,
 * multi-valued fields), without rows, written atomically to path and bound to
 * the shards' layout fingerprint. */
tl_status tl_data_encodings_write(const char *path, uint64_t fingerprint, const tl_dataset *e);
/* The record at path into d, a dataset of the shards' layout (tl_shards_load):
 * its fields' encodings replace d's; d is unchanged on failure. */
tl_status tl_data_encodings_read(const char *path, uint64_t fingerprint, tl_dataset *d);

#endif
