/* test_shards.c — sharded binary rows (data/shards.h): round trip, the
 * shuffled stream's determinism, resume after an interruption, checksums,
 * conversion of a dataset, resume refusing another dataset or generator run
 * (convert.tls), and peak RSS independent of the row count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "data/shards.h"
#include "model.h"
#include "synthetic.h"
#include <time.h>
#include "support.h"

/* 2 categorical, 1 bag of 3, 2 numeric, 2 tasks, weights. Row i: cat
 * {i % 7, i % 1000}, bag {i % 5, -1, -1}, num {i, -i}, labels {i % 2, i % 3 == 0},
 * weight 1 + i % 4. */
static void make_layout(tl_shard_layout *l)
{
    assert_int_equal(tl_shard_layout_init(l, 2, 2, 2, 1), TL_OK);
    const char *cn[] = {"a", "b"}, *nn[] = {"x", "y"}, *tn[] = {"click", "buy"};
    for (int i = 0; i < 2; i++) {
        l->cat_name[i] = strdup(cn[i]);
        l->num_name[i] = strdup(nn[i]);
        l->task_name[i] = strdup(tn[i]);
    }
    l->vocab[0] = 7;
    l->vocab[1] = 1000;
    l->bag_name[0] = strdup("tags");
    l->bag_vocab[0] = 5;
    l->bag_len[0] = 3;
    l->bag_pool[0] = TL_POOL_MEAN;
    l->has_weight = 1;
}

static void free_layout(tl_shard_layout *l)
{
    /* names were strdup'ed: free them with free, then the arrays */
    for (int i = 0; i < l->n_cat; i++) free(l->cat_name[i]), l->cat_name[i] = NULL;
    for (int i = 0; i < l->n_num; i++) free(l->num_name[i]), l->num_name[i] = NULL;
    for (int i = 0; i < l->n_tasks; i++) free(l->task_name[i]), l->task_name[i] = NULL;
    for (int i = 0; i < l->n_bag; i++) free(l->bag_name[i]), l->bag_name[i] = NULL;
    tl_shard_layout_free(l);
}

static void pack(uint32_t *w, uint32_t i)
{
    int32_t c[2] = {(int32_t)(i % 7), (int32_t)(i % 1000)}, b[3] = {(int32_t)(i % 5), -1, -1};
    float f[5] = {(float)i, -(float)i, (float)(i % 2), (float)(i % 3 == 0), (float)(1 + i % 4)};
    memcpy(w, c, 8);
    memcpy(w + 2, b, 12);
    memcpy(w + 5, f, 20);
}

/* Write rows [from, to) of the train split (and n_valid valid rows when
 * from == 0), finishing when `finish`. */
static tl_status write_rows(const char *dir, uint32_t from, uint32_t to, uint32_t n_valid, size_t per_shard,
                            int finish, uint64_t done[3])
{
    tl_shard_layout l;
    make_layout(&l);
    tl_shard_writer *w;
    tl_status st = tl_shard_writer_open(dir, &l, per_shard, &w, done);
    free_layout(&l);
    if (st != TL_OK) return st;
    uint32_t row[10];
    for (uint32_t i = from; i < to && st == TL_OK; i++) {
        pack(row, i);
        st = tl_shard_writer_row(w, 0, row);
    }
    for (uint32_t i = 0; i < n_valid && st == TL_OK; i++) {
        pack(row, 100000 + i);
        st = tl_shard_writer_row(w, 1, row);
    }
    if (st == TL_OK && finish) st = tl_shard_writer_finish(w);
    tl_shard_writer_close(w);
    return st;
}

/* One epoch's x values (row ids) in stream order; returns the count. */
static size_t epoch_ids(tl_stream *s, int epoch, uint32_t *ids, size_t cap, int batch)
{
    assert_int_equal(tl_stream_begin(s, epoch), TL_OK);
    assert_int_equal(tl_stream_reserve(s, batch), TL_OK);
    size_t n = 0;
    for (;;) {
        tl_split b;
        const int32_t *bags;
        int got;
        assert_int_equal(tl_stream_next(s, batch, &b, &bags, &got), TL_OK);
        if (!got) break;
        for (int r = 0; r < got; r++) {
            uint32_t i = (uint32_t)b.num[r * 2];
            assert_true(n < cap);
            ids[n++] = i;
            /* every part of the row travels together */
            assert_int_equal(b.cat[r * 2], (int32_t)(i % 7));
            assert_int_equal(b.cat[r * 2 + 1], (int32_t)(i % 1000));
            assert_int_equal(bags[r * 3], (int32_t)(i % 5));
            assert_int_equal(bags[r * 3 + 1], -1);
            assert_true(b.num[r * 2 + 1] == -(float)i);
            assert_true(b.labels[r * 2] == (float)(i % 2));
            assert_true(b.weight[r] == (float)(1 + i % 4));
        }
    }
    return n;
}

static int is_permutation(const uint32_t *ids, size_t n)
{
    char *seen = calloc(n, 1);
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        if (ids[i] >= n || seen[ids[i]]) ok = 0;
        else seen[ids[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_round_trip_and_deterministic_stream(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    uint64_t done[3];
    assert_int_equal(write_rows(dir, 0, 1000, 50, 128, 1, done), TL_OK);
    assert_int_equal(done[0], 0);
    tl_shards *sh;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    assert_int_equal(tl_shards_rows(sh, 0), 1000);
    assert_int_equal(tl_shards_rows(sh, 1), 50);
    assert_int_equal(tl_shards_count(sh, 0), 8);
    assert_string_equal(tl_shards_layout(sh)->bag_name[0], "tags");
    assert_int_equal(tl_shards_layout(sh)->bag_pool[0], TL_POOL_MEAN);

    uint32_t a[1000], b[1000], c[1000], d[1000];
    tl_stream *s1, *s2, *s3;
    assert_int_equal(tl_stream_open(sh, 0, 7, 100, TL_STREAM_SHUFFLE | TL_STREAM_BAGS, &s1), TL_OK);
    assert_int_equal(tl_stream_open(sh, 0, 7, 100, TL_STREAM_SHUFFLE | TL_STREAM_BAGS, &s2), TL_OK);
    assert_int_equal(tl_stream_open(sh, 0, 8, 100, TL_STREAM_SHUFFLE | TL_STREAM_BAGS, &s3), TL_OK);
    assert_int_equal(epoch_ids(s1, 0, a, 1000, 64), 1000);
    assert_int_equal(epoch_ids(s2, 0, b, 1000, 37), 1000); /* batch size does not change the sequence */
    assert_true(is_permutation(a, 1000));
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(epoch_ids(s3, 0, c, 1000, 64), 1000);
    assert_memory_not_equal(a, c, sizeof a);
    assert_int_equal(epoch_ids(s1, 1, d, 1000, 64), 1000); /* another epoch, another order */
    assert_true(is_permutation(d, 1000));
    assert_memory_not_equal(a, d, sizeof a);
    assert_int_equal(epoch_ids(s2, 1, b, 1000, 64), 1000);
    assert_memory_equal(d, b, sizeof d);
    /* the buffer mixes rows across shards: not shard-sized runs of consecutive ids */
    int runs = 0;
    for (int i = 1; i < 1000; i++) runs += a[i] == a[i - 1] + 1;
    assert_true(runs < 100);
    tl_stream_close(s1);
    tl_stream_close(s2);
    tl_stream_close(s3);
    /* without the bags in the buffer: the same rows in the same order */
    tl_stream *s4;
    assert_int_equal(tl_stream_open(sh, 0, 7, 100, TL_STREAM_SHUFFLE, &s4), TL_OK);
    assert_int_equal(tl_stream_reserve(s4, 64), TL_OK);
    size_t k = 0;
    for (;;) {
        tl_split bt;
        const int32_t *bg = (const int32_t *)1;
        int got;
        assert_int_equal(tl_stream_next(s4, 64, &bt, &bg, &got), TL_OK);
        assert_null(bg);
        if (!got) break;
        for (int r = 0; r < got; r++, k++) {
            assert_int_equal((uint32_t)bt.num[r * 2], a[k]);
            assert_int_equal(bt.cat[r * 2 + 1], (int32_t)(a[k] % 1000));
            assert_true(bt.weight[r] == (float)(1 + a[k] % 4));
        }
    }
    assert_int_equal(k, 1000);
    tl_stream_close(s4);

    tl_stream *s0;
    assert_int_equal(tl_stream_open(sh, 0, 7, 100, TL_STREAM_BAGS, &s0), TL_OK); /* shuffle off: file order */
    assert_int_equal(epoch_ids(s0, 0, a, 1000, 64), 1000);
    for (uint32_t i = 0; i < 1000; i++) assert_int_equal(a[i], i);
    tl_stream_close(s0);

    tl_dataset *ds;
    assert_int_equal(tl_shards_load(sh, (int[3]){0, 1, 0}, 0, &ds), TL_OK);
    const tl_split *v = tl_dataset_split(ds, "valid");
    assert_int_equal(v->n, 50);
    assert_int_equal(tl_dataset_split(ds, "train")->n, 0);
    assert_true(v->num[49 * 2] == 100049.0f);
    assert_int_equal(v->cat[49 * 2 + 1], (int32_t)(100049 % 1000));
    assert_true(v->weight[3] == (float)(1 + 100003 % 4));
    assert_int_equal(tl_dataset_vocab(ds)[1], 1000);
    assert_string_equal(tl_dataset_task_name(ds, 1), "buy");
    tl_dataset_free(ds);
    assert_int_equal(tl_shards_load(sh, (int[3]){1, 1, 0}, 100, &ds), TL_ERR_ARG); /* above max_rows */
    tl_shards_close(sh);
    tlt_tempdir_free(dir);
}

static char *path_of(const char *dir, const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static void test_interrupted_conversion_resumes(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    uint64_t done[3];
    /* interrupted after 1000 rows: 7 complete shards of 128, the 8th partial */
    assert_int_equal(write_rows(dir, 0, 1000, 0, 128, 0, done), TL_OK);
    struct stat sb;
    assert_int_equal(stat(path_of(dir, "train-00006.tls"), &sb), 0);
    assert_int_not_equal(stat(path_of(dir, "train-00007.tls"), &sb), 0);
    assert_int_not_equal(stat(path_of(dir, "train-00007.tls.tmp"), &sb), 0); /* Ctrl-C path removes it */
    tl_shards *sh;
    assert_int_equal(tl_shards_open(dir, &sh), TL_ERR_STATE); /* not readable until complete */
    assert_non_null(strstr(tl_errmsg(), "did not finish"));

    /* kill -9 leaves a .tmp; a corrupted complete shard 3 is found by its checksum */
    FILE *f = fopen(path_of(dir, "train-00007.tls.tmp"), "w");
    fputs("partial", f);
    fclose(f);
    flip_byte(path_of(dir, "train-00003.tls"), 72 + 40);
    tl_shard_layout l;
    make_layout(&l);
    tl_shard_writer *w;
    assert_int_equal(tl_shard_writer_open(dir, &l, 128, &w, done), TL_OK);
    free_layout(&l);
    assert_int_equal(done[0], 3 * 128); /* shards 0..2 kept, 3.. deleted */
    assert_int_not_equal(stat(path_of(dir, "train-00003.tls"), &sb), 0);
    assert_int_not_equal(stat(path_of(dir, "train-00005.tls"), &sb), 0);
    assert_int_not_equal(stat(path_of(dir, "train-00007.tls.tmp"), &sb), 0);
    tl_shard_writer_close(w);

    /* the producer skips done rows and goes on */
    assert_int_equal(write_rows(dir, 3 * 128, 1000, 0, 128, 1, done), TL_OK);
    assert_int_equal(done[0], 3 * 128);
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    tl_stream *s;
    uint32_t ids[1000];
    assert_int_equal(tl_stream_open(sh, 0, 1, 0, TL_STREAM_BAGS, &s), TL_OK);
    assert_int_equal(epoch_ids(s, 0, ids, 1000, 100), 1000);
    for (uint32_t i = 0; i < 1000; i++) assert_int_equal(ids[i], i);
    tl_stream_close(s);
    tl_shards_close(sh);
    /* complete: a second conversion into it is refused */
    assert_int_equal(write_rows(dir, 0, 10, 0, 128, 1, done), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "complete"));

    /* another layout is refused, not overwritten */
    char *dir2 = tlt_tempdir_new();
    assert_int_equal(write_rows(dir2, 0, 300, 0, 128, 0, done), TL_OK);
    make_layout(&l);
    l.vocab[0] = 8;
    assert_int_equal(tl_shard_writer_open(dir2, &l, 128, &w, done), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "another layout"));
    free_layout(&l);
    tlt_tempdir_free(dir2);
    tlt_tempdir_free(dir);
}

static void test_corrupted_or_truncated_shard_named(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    uint64_t done[3];
    assert_int_equal(write_rows(dir, 0, 1000, 0, 128, 1, done), TL_OK);
    flip_byte(path_of(dir, "train-00002.tls"), 72 + 1000);
    tl_shards *sh;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK); /* headers are fine */
    tl_stream *s;
    assert_int_equal(tl_stream_open(sh, 0, 1, 0, TL_STREAM_BAGS, &s), TL_OK);
    assert_int_equal(tl_stream_reserve(s, 1000), TL_OK);
    tl_split b;
    int got;
    assert_int_equal(tl_stream_next(s, 1000, &b, NULL, &got), TL_ERR_FORMAT);
    assert_non_null(strstr(tl_errmsg(), "train-00002.tls"));
    assert_non_null(strstr(tl_errmsg(), "checksum"));
    tl_stream_close(s);
    tl_shards_close(sh);

    assert_int_equal(truncate(path_of(dir, "train-00001.tls"), 72 + 100), 0);
    assert_int_equal(tl_shards_open(dir, &sh), TL_ERR_FORMAT);
    assert_non_null(strstr(tl_errmsg(), "train-00001.tls"));
    assert_non_null(strstr(tl_errmsg(), "truncated"));
    flip_byte(path_of(dir, "train-00000.tls"), 20); /* header */
    assert_int_equal(tl_shards_open(dir, &sh), TL_ERR_FORMAT);
    assert_non_null(strstr(tl_errmsg(), "train-00000.tls"));
    tlt_tempdir_free(dir);
}

static int stop_at_65536(void *ud, uint64_t done, uint64_t total)
{
    (void)total;
    (void)ud;
    return done >= 65536 && done < total;
}

/* "name bytes crc\n" of every file in dir, sorted by name (static buffer). */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static const char *dir_digest(const char *dir)
{
    static char out[65536];
    char *names[512];
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            assert_true(n < 512);
            names[n++] = strdup(e->d_name);
        }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    size_t at = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(path_of(dir, names[i]), "rb");
        assert_non_null(f);
        unsigned char buf[65536];
        size_t got, bytes = 0;
        uLong crc = crc32(0L, Z_NULL, 0);
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
            crc = crc32(crc, buf, (uInt)got);
            bytes += got;
        }
        fclose(f);
        at += (size_t)snprintf(out + at, sizeof out - at, "%s %zu %08lx\n", names[i], bytes, crc);
        assert_true(at < sizeof out);
        free(names[i]);
    }
    return out;
}

/* A dataset conversion resumed with another dataset of the same layout is
 * refused (one label differs, in rows the stopped run had not written yet)
 * and its shards are kept; resumed with the same one it is byte-identical to
 * an uninterrupted conversion. */
static void test_convert_dataset_resume_refuses_another(void **state)
{
    (void)state;
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    p.rows = 100000;
    tl_dataset *d;
    assert_int_equal(tl_data_synthetic_pair(&p, &d), TL_OK);
    char *dir = tlt_tempdir_new(), *ref = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert(d, ref, 10000, NULL, NULL), TL_OK);
    assert_int_equal(access(path_of(ref, "convert.tls"), F_OK), -1); /* the record goes with the manifest */
    assert_int_equal(tl_shards_convert(d, dir, 10000, stop_at_65536, NULL), TL_ERR_CANCELLED);
    assert_int_equal(access(path_of(dir, "convert.tls"), F_OK), 0);
    char *kept = strdup(dir_digest(dir));
    assert_non_null(strstr(kept, "train-00005.tls"));

    tl_split *tr = (tl_split *)tl_dataset_split(d, "train");
    size_t K = (size_t)tl_dataset_n_tasks(d), last = (tr->n - 1) * K;
    tr->labels[last] = 1.0f - tr->labels[last];
    assert_int_equal(tl_shards_convert(d, dir, 10000, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "cannot resume the conversion in"));
    assert_non_null(strstr(tl_errmsg(), "other rows of the dataset, i.e. another dataset: hash "));
    assert_non_null(strstr(tl_errmsg(), "(the stopped conversion's "));
    assert_string_equal(dir_digest(dir), kept); /* nothing deleted or written */
    /* another rows_per_shard: named */
    tr->labels[last] = 1.0f - tr->labels[last];
    assert_int_equal(tl_shards_convert(d, dir, 20000, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), ": rows_per_shard 20000 (the stopped conversion's 10000)"));
    assert_string_equal(dir_digest(dir), kept);

    assert_int_equal(tl_shards_convert(d, dir, 10000, NULL, NULL), TL_OK);
    assert_string_equal(dir_digest(dir), dir_digest(ref));
    free(kept);
    tl_dataset_free(d);
    tlt_tempdir_free(dir);
    tlt_tempdir_free(ref);
}

static void test_convert_dataset_resumes_bit_exact(void **state)
{
    (void)state;
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    p.rows = 100000;
    tl_dataset *d, *back;
    assert_int_equal(tl_data_synthetic_pair(&p, &d), TL_OK);
    char *dir = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert(d, dir, 10000, stop_at_65536, NULL), TL_ERR_CANCELLED);
    assert_non_null(strstr(tl_errmsg(), "resume"));
    assert_int_equal(tl_shards_convert(d, dir, 10000, NULL, NULL), TL_OK);
    tl_shards *sh;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    assert_int_equal(tl_shards_load(sh, (int[3]){1, 1, 1}, 0, &back), TL_OK);
    for (int k = 0; k < 3; k++) {
        const char *nm = (const char *[]){"train", "valid", "test"}[k];
        const tl_split *a = tl_dataset_split(d, nm), *b = tl_dataset_split(back, nm);
        assert_int_equal(a->n, b->n);
        assert_memory_equal(a->cat, b->cat, a->n * (size_t)tl_dataset_n_cat(d) * 4);
        assert_memory_equal(a->num, b->num, a->n * (size_t)tl_dataset_n_num(d) * 4);
        assert_memory_equal(a->labels, b->labels, a->n * (size_t)tl_dataset_n_tasks(d) * 4);
    }
    assert_int_equal(tl_dataset_n_cat(back), tl_dataset_n_cat(d));
    assert_string_equal(tl_dataset_cat_name(back, 1), tl_dataset_cat_name(d, 1));
    tl_dataset_free(back);
    tl_shards_close(sh);
    tl_dataset_free(d);
    tlt_tempdir_free(dir);
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* 2 M rows of 26 words (208 MB on disk) streamed through a 65536-row buffer:
 * peak RSS stays far below the data's size. */
static void test_peak_rss_bounded(void **state)
{
    (void)state;
    const uint32_t N = 2000000;
    tl_shard_layout l;
    assert_int_equal(tl_shard_layout_init(&l, 20, 4, 2, 0), TL_OK);
    char nm[16];
    for (int i = 0; i < 20; i++) {
        snprintf(nm, sizeof nm, "c%d", i);
        l.cat_name[i] = strdup(nm);
        l.vocab[i] = 1 << 20;
    }
    for (int i = 0; i < 4; i++) snprintf(nm, sizeof nm, "x%d", i), l.num_name[i] = strdup(nm);
    l.task_name[0] = strdup("ctr");
    l.task_name[1] = strdup("cvr");
    char *dir = tlt_tempdir_new();
    tl_shard_writer *w;
    uint64_t done[3];
    assert_int_equal(tl_shard_writer_open(dir, &l, 0, &w, done), TL_OK);
    uint32_t row[26];
    for (uint32_t i = 0; i < N; i++) {
        for (int f = 0; f < 20; f++) row[f] = (i * 2654435761u + (uint32_t)f) & 0xfffff;
        float x[6] = {(float)i, 1, 2, 3, 0, 1};
        memcpy(row + 20, x, sizeof x);
        assert_int_equal(tl_shard_writer_row(w, 0, row), TL_OK);
    }
    assert_int_equal(tl_shard_writer_finish(w), TL_OK);
    tl_shard_writer_close(w);
    free_layout(&l);
    long before = peak_rss_kb();
    tl_shards *sh;
    tl_stream *s;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    assert_int_equal(tl_stream_open(sh, 0, 3, 65536, TL_STREAM_SHUFFLE, &s), TL_OK);
    assert_int_equal(tl_stream_reserve(s, 1024), TL_OK);
    uint64_t n = 0;
    double sum = 0;
    for (int e = 0; e < 2; e++) {
        assert_int_equal(tl_stream_begin(s, e), TL_OK);
        for (;;) {
            tl_split b;
            int got;
            assert_int_equal(tl_stream_next(s, 1024, &b, NULL, &got), TL_OK);
            if (!got) break;
            for (int r = 0; r < got; r++) sum += (double)b.num[r * 4];
            n += (uint64_t)got;
        }
    }
    assert_int_equal(n, 2ull * N);
    assert_true(sum == 2.0 * ((double)N * (N - 1) / 2)); /* every row once per epoch */
    long after = peak_rss_kb();
    printf("peak RSS %ld kB before streaming, %ld kB after streaming 2 epochs of %u rows (%llu MB of shards)\n",
           before, after, N, (unsigned long long)N * 104 / 1000000);
    assert_true(after < 100 * 1024); /* the shards are 208 MB */
    tl_stream_close(s);
    tl_shards_close(sh);
    tlt_tempdir_free(dir);
}

static tl_model *small_model(const tl_dataset *d)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    tl_mlp_spec tower = {1, {8}, 0};
    c.backbone.kind = TL_BACKBONE_MMOE;
    c.backbone.expert = (tl_mlp_spec){1, {16}, 0};
    c.backbone.experts = 2;
    c.emb_dim = 4;
    c.max_batch = 64;
    c.seed = 3;
    assert_int_equal(tl_model_config_from_dataset(&c, d, &tower), TL_OK);
    tl_model *m;
    assert_int_equal(tl_model_new(&c, &m), TL_OK);
    return m;
}

/* With shuffling off, a stream fit takes the same steps on the same batches
 * as the in-memory fit: the parameters are bit-identical. With shuffling on
 * it learns (valid AUC well above 0.5) and early stopping restores the best. */
static void test_stream_fit_matches_in_memory(void **state)
{
    (void)state;
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    p.rows = 20000;
    tl_dataset *d;
    assert_int_equal(tl_data_synthetic_pair(&p, &d), TL_OK);
    char *dir = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert(d, dir, 3000, NULL, NULL), TL_OK);
    tl_shards *sh;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    tl_stream *s;
    assert_int_equal(tl_stream_open(sh, 0, 1, 0, TL_STREAM_BAGS, &s), TL_OK);
    tl_model *a = small_model(d), *b = small_model(d);
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = 2;
    o.batch = 64;
    o.shuffle = 0;
    const tl_split *valid = tl_dataset_split(d, "valid");
    assert_int_equal(tl_model_fit(a, tl_dataset_split(d, "train"), valid, &o), TL_OK);
    assert_int_equal(tl_model_fit_stream(b, s, valid, &o), TL_OK);
    size_t na, nb;
    float *pa = tl_graph_params(tl_model_graph(a), &na), *pb = tl_graph_params(tl_model_graph(b), &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na * sizeof *pa);
    const tl_epoch_record *ea, *eb;
    assert_int_equal(tl_model_history_epochs(a, &ea), 2);
    assert_int_equal(tl_model_history_epochs(b, &eb), 2);
    assert_true(ea[1].monitor == eb[1].monitor);
    assert_true(ea[1].train_loss[0] == eb[1].train_loss[0]);
    tl_stream_close(s);
    tl_model_free(a);

    /* shuffled stream, another model: it learns; max_steps stops mid-epoch */
    tl_model *c = small_model(d);
    assert_int_equal(tl_stream_open(sh, 0, 9, 2048, TL_STREAM_SHUFFLE, &s), TL_OK);
    o.epochs = 3;
    o.patience = 2;
    assert_int_equal(tl_model_fit_stream(c, s, valid, &o), TL_OK);
    tl_task_eval ev[TL_MAX_TASKS];
    assert_int_equal(tl_model_evaluate(c, valid, 10, ev, NULL), TL_OK);
    printf("stream fit: valid AUC a %.4f b %.4f\n", ev[0].bin.auc, ev[1].bin.auc);
    assert_true(ev[0].bin.auc > 0.6 && ev[1].bin.auc > 0.6);
    o.max_steps = 10;
    int64_t step = tl_model_steps(c);
    assert_int_equal(tl_model_fit_stream(c, s, valid, &o), TL_OK);
    assert_int_equal(tl_model_steps(c), step + 10);
    assert_int_equal(tl_model_history_epochs(c, &ea), 3); /* the cut epoch is not closed */
    /* Ctrl-C */
    tl_cancel_request();
    o.max_steps = 0;
    assert_int_equal(tl_model_fit_stream(c, s, valid, &o), TL_ERR_CANCELLED);
    tl_cancel_clear();
    tl_stream_close(s);
    tl_model_free(b);
    tl_model_free(c);
    tl_shards_close(sh);
    tl_dataset_free(d);
    tlt_tempdir_free(dir);
}

/* The Ali-CCP-shaped generator: rates near ctr / cvr, Zipf ids, seeded. */
static void test_synth_ccp_rates_zipf_seeded(void **state)
{
    (void)state;
    tl_synth_ccp_params p;
    tl_synth_ccp_defaults(&p);
    tl_synth_ccp *g, *g2;
    assert_int_equal(tl_synth_ccp_new(&p, &g), TL_OK);
    p.seed = 2;
    assert_int_equal(tl_synth_ccp_new(&p, &g2), TL_OK);
    int32_t cat[TL_SYNTH_CCP_CAT], bag[40], cat2[TL_SYNTH_CCP_CAT], bag2[40];
    float num[2], lab[2], num2[2], lab2[2];
    const uint64_t N = 1000000;
    uint64_t clicks = 0, buys = 0, id0 = 0, id9 = 0, id999 = 0, same = 0, bag_n = 0;
    for (uint64_t i = 0; i < N; i++) {
        tl_synth_ccp_row(g, i, cat, bag, num, lab);
        clicks += lab[0] > 0.5f;
        buys += lab[1] > 0.5f;
        assert_true(lab[1] <= lab[0]); /* purchase only after a click */
        id0 += cat[0] == 0;
        id9 += cat[0] == 9;
        id999 += cat[0] == 999;
        for (int j = 0; j < 10; j++) bag_n += bag[j] >= 0;
        assert_true(bag[0] >= 0 && bag[0] < 100000);
        if (i < 1000) {
            tl_synth_ccp_row(g2, i, cat2, bag2, num2, lab2);
            same += memcmp(cat, cat2, sizeof cat) == 0;
        }
    }
    double ctr = (double)clicks / N, cvr = (double)buys / (double)clicks;
    printf("synthetic ccp: CTR %.4f, CVR of clicks %.4f, field 101 ids 0/9/999: %llu %llu %llu, mean tags %.2f\n",
           ctr, cvr, (unsigned long long)id0, (unsigned long long)id9, (unsigned long long)id999,
           (double)bag_n / N);
    assert_true(ctr > 0.035 && ctr < 0.045);
    assert_true(cvr > 0.0035 && cvr < 0.0065);
    /* Zipf with s = 1.1: frequency ~ (1 + rank)^-1.1 */
    double r1 = (double)id0 / (double)id9, r2 = (double)id9 / (double)id999;
    assert_true(r1 > 6 && r1 < 25);
    assert_true(r2 > 80 && r2 < 400);
    assert_true(same < 10); /* another seed, other rows */
    /* row i is a function of (seed, i) */
    tl_synth_ccp_row(g, 12345, cat, bag, num, lab);
    tl_synth_ccp_row(g, 12345, cat2, bag2, num2, lab2);
    assert_memory_equal(cat, cat2, sizeof cat);
    assert_memory_equal(bag, bag2, sizeof bag);
    tl_synth_ccp_free(g);
    tl_synth_ccp_free(g2);
    p.zipf = 1.0;
    assert_int_equal(tl_synth_ccp_new(&p, &g), TL_ERR_ARG);
}

static int stop_at_131072(void *ud, uint64_t done, uint64_t total)
{
    (void)ud;
    return done >= 131072 && done < total;
}

/* Straight into shards: interrupted, resumed, and the stream's rows are the
 * generator's rows. */
static void test_synth_ccp_shards_resume(void **state)
{
    (void)state;
    tl_synth_ccp_params p;
    tl_synth_ccp_defaults(&p);
    p.seed = 5;
    uint64_t rows[3] = {300000, 20000, 10000};
    char *dir = tlt_tempdir_new();
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, dir, 50000, stop_at_131072, NULL), TL_ERR_CANCELLED);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, dir, 50000, NULL, NULL), TL_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("synthetic ccp into shards: %.0f rows/s (the resumed part)\n", (double)(330000 - 100000) / sec);
    tl_shards *sh;
    assert_int_equal(tl_shards_open(dir, &sh), TL_OK);
    assert_int_equal(tl_shards_rows(sh, 0), 300000);
    assert_int_equal(tl_shards_rows(sh, 1), 20000);
    const tl_shard_layout *l = tl_shards_layout(sh);
    assert_int_equal(l->n_cat, 21);
    assert_int_equal(l->n_bag, 3);
    assert_string_equal(l->bag_name[1], "109_14");
    tl_synth_ccp *g;
    assert_int_equal(tl_synth_ccp_new(&p, &g), TL_OK);
    tl_stream *s;
    assert_int_equal(tl_stream_open(sh, 0, 1, 0, TL_STREAM_BAGS, &s), TL_OK);
    assert_int_equal(tl_stream_reserve(s, 1000), TL_OK);
    int32_t cat[TL_SYNTH_CCP_CAT], bag[40];
    float num[2], lab[2];
    uint64_t i = 0;
    for (;;) {
        tl_split b;
        const int32_t *bags;
        int got;
        assert_int_equal(tl_stream_next(s, 1000, &b, &bags, &got), TL_OK);
        if (!got) break;
        for (int r = 0; r < got; r += 97, i += 97) {
            tl_synth_ccp_row(g, i, cat, bag, num, lab);
            assert_memory_equal(b.cat + r * 21, cat, sizeof cat);
            assert_memory_equal(bags + r * 40, bag, sizeof bag);
            assert_true(b.labels[r * 2] == lab[0] && b.labels[r * 2 + 1] == lab[1]);
        }
        i += (uint64_t)got - (uint64_t)((got + 96) / 97) * 97;
    }
    assert_int_equal(i, 300000);
    tl_stream_close(s);
    tl_synth_ccp_free(g);
    tl_shards_close(sh);
    tlt_tempdir_free(dir);
}

/* A generation resumed with another seed, other rows or another parameter is
 * refused naming it, its shards kept; resumed with the same ones it is
 * byte-identical to an uninterrupted one. */
static void test_synth_ccp_resume_refuses_another(void **state)
{
    (void)state;
    tl_synth_ccp_params p;
    tl_synth_ccp_defaults(&p);
    p.seed = 7;
    uint64_t rows[3] = {150000, 10000, 10000};
    char *dir = tlt_tempdir_new(), *ref = tlt_tempdir_new();
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, ref, 20000, NULL, NULL), TL_OK);
    assert_int_equal(access(path_of(ref, "convert.tls"), F_OK), -1);
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, dir, 20000, stop_at_131072, NULL), TL_ERR_CANCELLED);
    char *kept = strdup(dir_digest(dir));
    assert_non_null(strstr(kept, "train-00005.tls"));

    p.seed = 8;
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, dir, 20000, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "cannot resume the conversion in"));
    assert_non_null(strstr(tl_errmsg(), ": seed 8 (the stopped conversion's 7)"));
    assert_string_equal(dir_digest(dir), kept);
    p.seed = 7;
    uint64_t more[3] = {160000, 10000, 10000};
    assert_int_equal(tl_data_synth_ccp_shards(&p, more, dir, 20000, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), ": rows of train, valid, test 160000 10000 10000 (the stopped conversion's "
                                        "150000 10000 10000)"));
    p.ctr = 0.05;
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, dir, 20000, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), ": ctr 0.05 (the stopped conversion's 0.04)"));
    p.ctr = 0.04;
    p.zipf = 1.2;
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, dir, 20000, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), ": zipf 1.2 (the stopped conversion's 1.1)"));
    p.zipf = 1.1;
    assert_string_equal(dir_digest(dir), kept);

    /* shards without the record (another producer): not resumed */
    char *bare = tlt_tempdir_new();
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, bare, 20000, stop_at_131072, NULL), TL_ERR_CANCELLED);
    assert_int_equal(unlink(path_of(bare, "convert.tls")), 0);
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, bare, 20000, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "without the record of the conversion"));
    tlt_tempdir_free(bare);

    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, dir, 20000, NULL, NULL), TL_OK);
    assert_string_equal(dir_digest(dir), dir_digest(ref));
    assert_int_equal(tl_data_synth_ccp_shards(&p, rows, dir, 20000, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "complete conversion"));
    free(kept);
    tlt_tempdir_free(dir);
    tlt_tempdir_free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peak_rss_bounded),
        cmocka_unit_test(test_round_trip_and_deterministic_stream),
        cmocka_unit_test(test_interrupted_conversion_resumes),
        cmocka_unit_test(test_corrupted_or_truncated_shard_named),
        cmocka_unit_test(test_convert_dataset_resumes_bit_exact),
        cmocka_unit_test(test_stream_fit_matches_in_memory),
        cmocka_unit_test(test_synth_ccp_rates_zipf_seeded),
        cmocka_unit_test(test_synth_ccp_shards_resume),
        cmocka_unit_test(test_synth_ccp_resume_refuses_another),
        cmocka_unit_test(test_convert_dataset_resume_refuses_another),
    };
    return cmocka_run_group_tests_name("shards", tests, NULL, NULL);
}
