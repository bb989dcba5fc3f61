/* test_data.c — the data pipeline: CSV parsing, vocabularies, transforms,
 * labels, splits, the binary cache, bad input, and the built-in datasets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "support.h"

static char *tmp;  /* per-test temporary directory */
static char path_buf[4][512];

static int setup(void **state)
{
    (void)state;
    tmp = tlt_tempdir_new();
    tl_clear_error();
    tl_cancel_clear();
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tlt_tempdir_free(tmp);
    tmp = NULL;
    return 0;
}

/* Write `text` to tmp/name (gzip-compressed when name ends in .gz); returns
 * the path (one of 4 rotating buffers). */
static const char *write_file(const char *name, const char *text)
{
    static int k;
    char *p = path_buf[k++ & 3];
    snprintf(p, 512, "%s/%s", tmp, name);
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, ".gz") == 0) {
        gzFile g = gzopen(p, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, text, (unsigned)strlen(text)), (int)strlen(text));
        assert_int_equal(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
    }
    return p;
}

static int contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) {
        printf("message \"%s\" lacks \"%s\"\n", hay, needle);
        return 0;
    }
    return 1;
}

static const char *const POS1[] = {"1"};
static const char *const NEG0[] = {"0"};

/* A small schema over columns a (cat), x (num), y (label 1/0). */
static void small_schema(tl_data_schema *s, const char *path, tl_data_cat_col *cat, tl_data_num_col *num,
                         tl_data_label *lab)
{
    tl_data_schema_init(s);
    s->path = path;
    cat[0] = (tl_data_cat_col){"a", 0, 0};
    num[0] = (tl_data_num_col){"x", TL_NUM_STANDARD, 0};
    lab[0] = (tl_data_label){.task = "y", .column = "y", .kind = TL_LABEL_POSITIVE, .positive = POS1,
                             .n_positive = 1, .negative = NEG0, .n_negative = 1};
    s->cat = cat;
    s->n_cat = 1;
    s->num = num;
    s->n_num = 1;
    s->labels = lab;
    s->n_labels = 1;
}

static tl_status load_small(const char *path, tl_bad_policy on_bad, tl_dataset **d)
{
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, path, cat, num, lab);
    s.on_bad = on_bad;
    return tl_data_csv_load(&s, NULL, d);
}

/* ---- parsing ---------------------------------------------------------------- */

static void test_basic_csv(void **state)
{
    (void)state;
    const char *p = write_file("b.csv", "a,x,y\nred,1,1\nblue,2,0\nred,3,1\n");
    tl_dataset *d = NULL;
    assert_int_equal(load_small(p, TL_BAD_ERROR, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    assert_non_null(all);
    assert_null(tl_dataset_split(d, "train")); /* no split asked for */
    assert_int_equal(all->n, 3);
    assert_int_equal(tl_dataset_n_cat(d), 1);
    assert_int_equal(tl_dataset_n_num(d), 1);
    assert_int_equal(tl_dataset_vocab(d)[0], 4); /* OOV, missing, red, blue */
    assert_int_equal(all->cat[0], 2);
    assert_int_equal(all->cat[1], 3);
    assert_int_equal(all->cat[2], 2);
    assert_string_equal(tl_dataset_vocab_string(d, 0, 2), "red");
    assert_string_equal(tl_dataset_vocab_string(d, 0, 3), "blue");
    /* standardised: mean 2, population std sqrt(2/3) */
    double sd = sqrt(2.0 / 3.0);
    assert_true(fabs((double)all->num[0] + 1.0 / sd) < 1e-5);
    assert_float_equal(all->num[1], 0.0, 1e-6);
    assert_true(fabs((double)all->num[2] - 1.0 / sd) < 1e-5);
    assert_float_equal(all->labels[0], 1.0, 0);
    assert_float_equal(all->labels[1], 0.0, 0);
    assert_int_equal(all->row[2], 2);
    assert_null(all->group);
    assert_null(all->weight);
    tl_dataset_free(d);
}

static void test_quotes_crlf_tsv_gzip(void **state)
{
    (void)state;
    /* quoted separators, doubled quotes, CRLF, no final newline */
    const char *p = write_file("q.csv", "a,x,y\r\n\"r,ed\",1,1\r\n\"say \"\"hi\"\"\",2,0\r\n\"\",3,1");
    tl_dataset *d = NULL;
    assert_int_equal(load_small(p, TL_BAD_ERROR, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    assert_int_equal(all->n, 3);
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[0]), "r,ed");
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[1]), "say \"hi\"");
    assert_int_equal(all->cat[2], 1); /* "" is missing */
    tl_dataset_free(d);

    /* TSV through gzip gives the same as the plain CSV */
    const char *g = write_file("t.tsv.gz", "a\tx\ty\nred\t1\t1\nblue\t2\t0\n");
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, g, cat, num, lab);
    s.sep = "\t";
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    all = tl_dataset_split(d, "all");
    assert_int_equal(all->n, 2);
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[1]), "blue");
    assert_float_equal(all->labels[1], 0.0, 0);
    tl_dataset_free(d);
}

static void test_census_style_sep_columns_skip(void **state)
{
    (void)state;
    const char *p = write_file("c.txt", "# comment line\n5, Not in universe, ?, - 50000.\n7, Private, 3, 50000+.\n");
    static const char *const cols[] = {"x", "a", "n2", "y"};
    static const char *const pos[] = {"50000+."}, *const neg[] = {"- 50000."};
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = p;
    s.sep = ", ";
    s.header = 0;
    s.columns = cols;
    s.n_columns = 4;
    s.skip = 1;
    tl_data_cat_col cat[1] = {{"a", 0, 0}};
    tl_data_num_col num[2] = {{"x", TL_NUM_NONE, 0}, {"n2", TL_NUM_NONE, 0}};
    tl_data_label lab[1] = {{.task = "inc", .column = "y", .positive = pos, .n_positive = 1, .negative = neg,
                             .n_negative = 1}};
    s.cat = cat;
    s.n_cat = 1;
    s.num = num;
    s.n_num = 2;
    s.labels = lab;
    s.n_labels = 1;
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    assert_int_equal(all->n, 2);
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[0]), "Not in universe");
    /* n2 had a missing value: imputed with the mean (3) and flagged */
    assert_int_equal(tl_dataset_n_num(d), 3);
    assert_string_equal(tl_dataset_num_name(d, 2), "n2_missing");
    assert_float_equal(all->num[0 * 3 + 1], 3.0, 0);
    assert_float_equal(all->num[0 * 3 + 2], 1.0, 0);
    assert_float_equal(all->num[1 * 3 + 1], 3.0, 0);
    assert_float_equal(all->num[1 * 3 + 2], 0.0, 0);
    assert_float_equal(all->labels[0], 0.0, 0);
    assert_float_equal(all->labels[1], 1.0, 0);
    tl_dataset_free(d);
}

static void test_labels_threshold_regression_drop_keep(void **state)
{
    (void)state;
    const char *p = write_file("l.csv", "a,r,click\nu,4.5,1\nv,2,0\nu,3.5,0\n");
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = p;
    tl_data_cat_col cat[1] = {{"a", 0, 0}};
    tl_data_num_col num[1] = {{"r", TL_NUM_NONE, 0}};
    tl_data_label lab[3] = {
        {.task = "good", .column = "r", .kind = TL_LABEL_THRESHOLD, .threshold = 3.5},
        {.task = "rating", .column = "r", .kind = TL_LABEL_REGRESSION},
        {.task = "ctr", .column = "click", .kind = TL_LABEL_POSITIVE, .positive = POS1, .n_positive = 1},
    };
    s.cat = cat;
    s.n_cat = 1;
    s.num = num;
    s.n_num = 1;
    s.labels = lab;
    s.n_labels = 3;
    tl_dataset *d = NULL;
    /* issue 25 item 19: r is a label column; listed as a feature it was
     * silently dropped, now it is an error */
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "column 'r' is listed as numeric, but it is the label column of task"));
    assert_true(contains(tl_errmsg(), "keep=true"));
    s.n_num = 0;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_n_num(d), 0);
    assert_int_equal(tl_dataset_n_tasks(d), 3);
    assert_int_equal(tl_dataset_task_type(d, 0), TL_TASK_BINARY);
    assert_int_equal(tl_dataset_task_type(d, 1), TL_TASK_REGRESSION);
    const tl_split *all = tl_dataset_split(d, "all");
    static const float want[9] = {1, 4.5f, 1, 0, 2, 0, 1, 3.5f, 0};
    assert_true(tlt_close_f("labels", all->labels, want, 9, 0, 1e-7));
    tl_dataset_free(d);
    lab[0].keep = 1; /* keep r as a feature */
    s.n_num = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_n_num(d), 1);
    assert_string_equal(tl_dataset_num_name(d, 0), "r");
    tl_dataset_free(d);
}

static void test_hash_quantile_log1p_id_weight(void **state)
{
    (void)state;
    const char *p = write_file("h.csv", "uid,a,x,w,y\n"
                                        "u1,p,0,1,1\nu2,q,1,2,0\nu1,r,2,1,0\nu3,s,3,1,1\n"
                                        "u2,?,4,0.5,0\nu1,p,5,1,0\nu3,q,6,1,1\nu2,p,7,1,0\n");
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = p;
    tl_data_cat_col cat[1] = {{"a", 0, 3}};
    tl_data_num_col num[2] = {{"x", TL_NUM_QUANTILE, 4}, {"w", TL_NUM_LOG1P, 0}};
    tl_data_label lab[1] = {{.task = "y", .column = "y", .positive = POS1, .n_positive = 1}};
    s.cat = cat;
    s.n_cat = 1;
    s.num = num;
    s.n_num = 2;
    s.labels = lab;
    s.n_labels = 1;
    s.id = "uid";
    s.weight = "w";
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    assert_int_equal(tl_dataset_n_cat(d), 2);
    assert_string_equal(tl_dataset_cat_kind(d, 0), "hash");
    assert_int_equal(tl_dataset_vocab(d)[0], 4);   /* 3 buckets + missing */
    assert_int_equal(all->cat[4 * 2 + 0], 3);      /* '?' → the missing id */
    assert_int_equal(all->cat[0 * 2 + 0], all->cat[5 * 2 + 0]); /* same string, same bucket */
    assert_string_equal(tl_dataset_cat_kind(d, 1), "quantile");
    assert_string_equal(tl_dataset_cat_name(d, 1), "x");
    assert_int_equal(tl_dataset_vocab(d)[1], 5);   /* missing + 4 buckets (3 edges: 2, 4, 6) */
    static const int32_t bucket[8] = {1, 1, 2, 2, 3, 3, 4, 4};
    for (int i = 0; i < 8; i++) assert_int_equal(all->cat[i * 2 + 1], bucket[i]);
    assert_int_equal(tl_dataset_n_num(d), 1);
    assert_float_equal(all->num[1], log1pf(2.0f), 1e-6);
    assert_non_null(all->group);
    assert_int_equal(all->group[0], all->group[2]);
    assert_int_not_equal(all->group[0], all->group[1]);
    assert_non_null(all->weight);
    assert_float_equal(all->weight[4], 0.5, 0);
    tl_dataset_free(d);
}

/* The collision rate of hashed fields: distinct training values and how many
 * share a bucket with an earlier one, known at load (not from the cache,
 * not with like=). */
static void test_hash_collisions(void **state)
{
    (void)state;
    const char *p = write_file("hc.csv", "a,x,y\np,0,1\nq,1,0\nr,2,0\ns,3,1\n?,4,0\np,5,0\nt,6,1\n");
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    s.split = TL_SPLIT_MODULO;
    s.modulo = 7;
    for (int k = 0; k < 7; k++) s.modulo_to[k] = k < 6 ? TL_TO_TRAIN : TL_TO_TEST; /* t is not a train value */
    cat[0].hash_buckets = 3;
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    uint32_t nv = 0, nc = 0;
    assert_int_equal(tl_dataset_hash_collisions(d, 0, &nv, &nc), 1);
    assert_int_equal(nv, 4);
    /* independently: the buckets of p, q, r, s (rows 0-3) */
    const tl_split *tr = tl_dataset_split(d, "train");
    int distinct = 0;
    for (int i = 0; i < 4; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= tr->cat[j] == tr->cat[i];
        distinct += !seen;
    }
    assert_int_equal(nc, 4 - distinct);
    assert_true(nc >= 1); /* 4 values, 3 buckets */
    tl_dataset *u = NULL;
    assert_int_equal(tl_data_csv_load(&s, d, &u), TL_OK);
    assert_int_equal(tl_dataset_hash_collisions(u, 0, &nv, &nc), 0);
    tl_dataset_free(u);
    tl_dataset_free(d);
    cat[0].hash_buckets = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_hash_collisions(d, 0, &nv, &nc), 1);
    assert_int_equal(nc, 3);
    tl_dataset_free(d);
    cat[0].hash_buckets = 1 << 30;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_hash_collisions(d, 0, &nv, &nc), 1);
    assert_int_equal(nc, 0);
    tl_dataset_free(d);
    /* a vocabulary field has no collision counts */
    cat[0].hash_buckets = 0;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_hash_collisions(d, 0, &nv, &nc), 0);
    tl_dataset_free(d);
}

/* The KLL sketch (data/sketch.h): rank error within 2.5/k on a million
 * values in random, sorted and reversed order, bounded memory, exact and
 * deterministic answers where it promises them. */
static void test_quantile_sketch(void **state)
{
    (void)state;
    const size_t n = 1000000;
    const int k = 200;
    uint32_t *v = malloc(n * sizeof *v);
    assert_non_null(v);
    double rank[99];
    float got[99], again[99];
    for (int q = 0; q < 99; q++) rank[q] = floor((q + 1) * (double)n / 100);
    for (int order = 0; order < 3; order++)
        for (uint64_t seed = 1; seed <= 2; seed++) {
            tl_rng g;
            tl_rng_seed(&g, 77 + seed);
            for (size_t i = 0; i < n; i++) v[i] = (uint32_t)(order == 2 ? n - 1 - i : i);
            if (order == 0) tl_rng_shuffle_u32(&g, v, n);
            tl_sketch *s = NULL;
            assert_int_equal(tl_sketch_new(k, seed, &s), TL_OK);
            size_t most = 0;
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(tl_sketch_add(s, (float)v[i]), TL_OK);
                if (tl_sketch_retained(s) > most) most = tl_sketch_retained(s);
            }
            assert_int_equal(tl_sketch_count(s), n);
            assert_true(most <= 3 * (size_t)k + 64); /* bounded, whatever n */
            assert_int_equal(tl_sketch_quantiles(s, rank, 99, got), TL_OK);
            for (int q = 0; q < 99; q++) { /* value i has rank i */
                double err = fabs((double)got[q] - rank[q]) / (double)n;
                if (err > 2.5 / k) fail_msg("order %d seed %d: rank %.0f answered %.0f (error %.4f > %.4f)", order,
                                            (int)seed, rank[q], (double)got[q], err, 2.5 / k);
            }
            tl_sketch_free(s);
            /* the same values, order and seed: the same answers */
            assert_int_equal(tl_sketch_new(k, seed, &s), TL_OK);
            for (size_t i = 0; i < n; i++) assert_int_equal(tl_sketch_add(s, (float)v[i]), TL_OK);
            assert_int_equal(tl_sketch_quantiles(s, rank, 99, again), TL_OK);
            assert_memory_equal(got, again, sizeof got);
            tl_sketch_free(s);
        }
    free(v);
    /* up to k values: exact */
    tl_sketch *s = NULL;
    assert_int_equal(tl_sketch_new(k, 3, &s), TL_OK);
    double r3[3] = {0, 100, 199};
    float o3[3];
    assert_int_equal(tl_sketch_quantiles(s, r3, 3, o3), TL_ERR_ARG); /* empty */
    for (int i = 0; i < k; i++) assert_int_equal(tl_sketch_add(s, (float)((i * 37) % k)), TL_OK);
    assert_int_equal(tl_sketch_quantiles(s, r3, 3, o3), TL_OK);
    assert_float_equal(o3[0], 0, 0);
    assert_float_equal(o3[1], 100, 0);
    assert_float_equal(o3[2], 199, 0);
    tl_sketch_free(s);
    /* one value many times */
    assert_int_equal(tl_sketch_new(16, 3, &s), TL_OK);
    for (int i = 0; i < 100000; i++) assert_int_equal(tl_sketch_add(s, 2.5f), TL_OK);
    assert_int_equal(tl_sketch_quantiles(s, r3, 3, o3), TL_OK);
    assert_float_equal(o3[1], 2.5, 0);
    tl_sketch_free(s);
    assert_int_equal(tl_sketch_new(4, 1, &s), TL_ERR_ARG);
}

/* Quantile edges: a sort up to TL_DATA_SKETCH_ROWS values, the sketch when
 * the schema asks (quantile_sketch): the same edges while the sketch is
 * exact, and buckets of about equal size beyond. */
static void test_quantile_edges_sketch(void **state)
{
    (void)state;
    const int n = 20000;
    char *text = malloc((size_t)n * 24 + 16);
    assert_non_null(text);
    size_t o = (size_t)sprintf(text, "a,x,y\n");
    for (int i = 0; i < n; i++) o += (size_t)sprintf(text + o, "r,%d,%d\n", (i * 7919) % n, i & 1);
    const char *p = write_file("qs.csv", text);
    free(text);
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    num[0] = (tl_data_num_col){"x", TL_NUM_QUANTILE, 10};
    tl_dataset *exact = NULL, *sk = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &exact), TL_OK);
    s.quantile_sketch = 1;
    s.cache = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &sk), TL_OK);
    assert_false(tl_dataset_from_cache(sk)); /* not cached */
    const tl_split *a = tl_dataset_split(exact, "all"), *b = tl_dataset_split(sk, "all");
    assert_int_equal(tl_dataset_vocab(exact)[1], 11);
    assert_int_equal(tl_dataset_vocab(sk)[1], 11);
    int differ = 0;
    size_t cnt[12] = {0};
    for (int i = 0; i < n; i++) {
        differ += a->cat[2 * i + 1] != b->cat[2 * i + 1];
        cnt[b->cat[2 * i + 1]]++;
    }
    assert_true(differ > 0); /* the sketch really ran: not the sort's edges */
    for (int id = 1; id <= 10; id++)
        if (fabs((double)cnt[id] - n / 10.0) > 2 * 2.5 / TL_DATA_SKETCH_K * n)
            fail_msg("bucket %d holds %zu rows, expected %d +- %.0f", id, cnt[id], n / 10,
                     2 * 2.5 / TL_DATA_SKETCH_K * n);
    tl_dataset_free(exact);
    tl_dataset_free(sk);
    /* few values: the sketch is exact, the same edges as the sort */
    p = write_file("qs2.csv", "a,x,y\nr,5,1\nr,1,0\nr,4,1\nr,2,0\nr,3,1\nr,9,0\nr,7,1\nr,8,0\n");
    s.path = p;
    s.quantile_sketch = 0;
    assert_int_equal(tl_data_csv_load(&s, NULL, &exact), TL_OK);
    s.quantile_sketch = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &sk), TL_OK);
    assert_int_equal(tl_dataset_vocab_fingerprint(exact, 1), tl_dataset_vocab_fingerprint(sk, 1));
    tl_dataset_free(exact);
    tl_dataset_free(sk);
}

/* ---- splits and vocabularies --------------------------------------------------- */

static void test_vocab_from_train_only(void **state)
{
    (void)state;
    /* rows i%4==3 go to test; "only_test" appears there only, "rare" once in train */
    const char *p = write_file("v.csv", "a,x,y\n"
                                        "c,1,1\nc,1,0\nrare,1,0\nonly_test,1,1\n"
                                        "c,2,1\nd,2,0\nd,2,0\nonly_test,9,1\n");
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    s.split = TL_SPLIT_MODULO;
    s.modulo = 4;
    s.modulo_to[0] = s.modulo_to[1] = s.modulo_to[2] = TL_TO_TRAIN;
    s.modulo_to[3] = TL_TO_TEST;
    s.min_count = 2;
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    const tl_split *tr = tl_dataset_split(d, "train"), *te = tl_dataset_split(d, "test");
    assert_int_equal(tr->n, 6);
    assert_int_equal(te->n, 2);
    assert_int_equal(tl_dataset_split(d, "valid")->n, 0);
    assert_int_equal(tl_dataset_vocab(d)[0], 4); /* OOV, missing, c, d */
    for (size_t i = 0; i < te->n; i++) assert_int_equal(te->cat[i], 0); /* only_test → OOV */
    assert_int_equal(tr->cat[2], 0);                                    /* rare → OOV (min_count 2) */
    assert_int_equal(te->row[0], 3);
    assert_int_equal(te->row[1], 7);
    /* statistics from train only: x's train mean is 1.5 whatever test holds */
    double mean, sd;
    assert_string_equal(tl_dataset_num_transform(d, 0, &mean, &sd), "standard");
    assert_float_equal(mean, 1.5, 1e-9);
    assert_float_equal(sd, 0.5, 1e-9);
    tl_dataset_free(d);
}

static void test_ratio_split_and_shuffle(void **state)
{
    (void)state;
    char *text = malloc(200000);
    assert_non_null(text);
    size_t k = (size_t)sprintf(text, "a,x,y\n");
    for (int i = 0; i < 1000; i++) k += (size_t)sprintf(text + k, "v%d,%d,%d\n", i % 7, i, i % 3 == 0);
    const char *p = write_file("r.csv", text);
    free(text);
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.7;
    s.ratio[1] = 0.2;
    s.ratio[2] = 0.1;
    s.seed = 7;
    tl_dataset *d1 = NULL, *d2 = NULL, *d3 = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d1), TL_OK);
    assert_int_equal(tl_data_csv_load(&s, NULL, &d2), TL_OK);
    s.seed = 8;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d3), TL_OK);
    const tl_split *t1 = tl_dataset_split(d1, "train"), *t2 = tl_dataset_split(d2, "train"),
                   *t3 = tl_dataset_split(d3, "train");
    assert_int_equal(t1->n, 700);
    assert_int_equal(tl_dataset_split(d1, "valid")->n, 200);
    assert_int_equal(tl_dataset_split(d1, "test")->n, 100);
    assert_memory_equal(t1->row, t2->row, 700 * sizeof *t1->row); /* same seed, same split */
    assert_true(memcmp(t1->row, t3->row, 700 * sizeof *t1->row) != 0);
    for (size_t i = 1; i < t1->n; i++) assert_true(t1->row[i] > t1->row[i - 1]); /* file order kept */
    /* a permutation, the same for the same (seed, epoch), different across epochs */
    uint32_t *o1 = malloc(700 * 4), *o2 = malloc(700 * 4), *o3 = malloc(700 * 4);
    char seen[700] = {0};
    assert_int_equal(tl_split_epoch_order(t1, 3, 0, o1), TL_OK);
    assert_int_equal(tl_split_epoch_order(t1, 3, 0, o2), TL_OK);
    assert_int_equal(tl_split_epoch_order(t1, 3, 1, o3), TL_OK);
    for (int i = 0; i < 700; i++) {
        assert_true(o1[i] < 700);
        assert_false(seen[o1[i]]);
        seen[o1[i]] = 1;
    }
    assert_memory_equal(o1, o2, 700 * 4);
    assert_true(memcmp(o1, o3, 700 * 4) != 0);
    free(o1);
    free(o2);
    free(o3);
    tl_dataset_free(d1);
    tl_dataset_free(d2);
    tl_dataset_free(d3);
}

static void test_split_by_files_and_like(void **state)
{
    (void)state;
    const char *tr = write_file("tr.csv", "a,x,y\nred,1,1\nblue,3,0\n");
    const char *va = write_file("va.csv", "a,x,y\ngreen,5,1\n");
    const char *te = write_file("te.csv", "y,x,a\n0,7,blue\n"); /* other column order: mapped by header */
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, tr, cat, num, lab);
    s.split = TL_SPLIT_FILES;
    s.valid_path = va;
    s.test_path = te;
    tl_dataset *d = NULL, *l = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "train")->n, 2);
    assert_int_equal(tl_dataset_split(d, "valid")->n, 1);
    assert_int_equal(tl_dataset_split(d, "test")->n, 1);
    assert_int_equal(tl_dataset_split(d, "valid")->cat[0], 0);              /* green unseen in train */
    assert_string_equal(tl_dataset_vocab_string(d, 0, tl_dataset_split(d, "test")->cat[0]), "blue");
    assert_float_equal(tl_dataset_split(d, "test")->num[0], 5.0, 1e-6); /* (7 - train mean 2) / train std 1 */
    /* like: a new file read with d's vocabulary and statistics */
    const char *nw = write_file("new.csv", "a,x,y\nblue,2,1\npurple,4,0\n");
    tl_data_schema s2 = s;
    s2.path = nw;
    s2.split = TL_SPLIT_NONE;
    assert_int_equal(tl_data_csv_load(&s2, d, &l), TL_OK);
    const tl_split *all = tl_dataset_split(l, "all");
    assert_int_equal(all->n, 2);
    assert_int_equal(tl_dataset_vocab(l)[0], tl_dataset_vocab(d)[0]);
    assert_int_equal(all->cat[0], tl_dataset_split(d, "train")->cat[1]); /* blue keeps its id */
    assert_int_equal(all->cat[1], 0);
    assert_float_equal(all->num[0], 0.0, 1e-6); /* d's train mean is 2 */
    assert_true(tl_dataset_labeled(l));
    tl_dataset_free(l);
    tl_dataset_free(d);
}

/* issue 19 item 6: with like=, a file to score may lack the label columns;
 * the features are read as for a labelled file, the labels are NaN. Without
 * like=, or with only some label columns, it is an error. */
static void test_like_without_label_columns(void **state)
{
    (void)state;
    tl_data_schema s;
    tl_data_cat_col cat[2];
    tl_data_num_col num[1];
    tl_data_label lab[2];
    small_schema(&s, write_file("tr.csv", "a,x,y,z\nred,1,1,0\nblue,3,0,1\n"), cat, num, lab);
    lab[1] = lab[0];
    lab[1].task = "z";
    lab[1].column = "z";
    s.n_labels = 2;
    tl_dataset *d = NULL, *l = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_true(tl_dataset_labeled(d));
    tl_data_schema s2 = s;
    s2.path = write_file("score.csv", "x,a\n2,blue\n4,purple\n");
    assert_int_equal(tl_data_csv_load(&s2, d, &l), TL_OK);
    assert_false(tl_dataset_labeled(l));
    const tl_split *all = tl_dataset_split(l, "all");
    assert_int_equal(all->n, 2);
    assert_int_equal(tl_dataset_n_tasks(l), 2);
    assert_int_equal(all->cat[0], tl_dataset_split(d, "all")->cat[1]); /* blue keeps its id */
    assert_int_equal(all->cat[1], 0);
    assert_float_equal(all->num[0], 0.0, 1e-6);
    for (int i = 0; i < 4; i++) assert_true(isnan(all->labels[i]));
    tl_dataset_free(l);
    /* some label columns but not all */
    s2.path = write_file("half.csv", "x,a,y\n2,blue,1\n");
    assert_int_equal(tl_data_csv_load(&s2, d, &l), TL_ERR_ARG);
    assert_null(l);
    assert_true(contains(tl_errmsg(), "half.csv: label column 'z' (task 'z') is missing"));
    /* without like= the label columns are required */
    s2.path = write_file("score2.csv", "x,a\n2,blue\n");
    assert_int_equal(tl_data_csv_load(&s2, NULL, &l), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "schema names label column 'y', which does not exist"));
    tl_dataset_free(d);
}

/* ---- bad input ------------------------------------------------------------------ */

static void expect_error(const char *path, tl_status code, const char *msg1, const char *msg2)
{
    tl_dataset *d = (tl_dataset *)1;
    tl_status st = load_small(path, TL_BAD_ERROR, &d);
    assert_int_equal(st, code);
    assert_null(d);
    assert_true(contains(tl_errmsg(), msg1));
    if (msg2) assert_true(contains(tl_errmsg(), msg2));
}

static void test_error_ragged(void **state)
{
    (void)state;
    const char *p = write_file("rag.csv", "a,x,y\nred,1,1\nblue,2\n");
    char want[600];
    snprintf(want, sizeof want, "%s:3:", p);
    expect_error(p, TL_ERR_PARSE, want, "expected 3 fields, got 2");
}

static void test_error_text_in_numeric(void **state)
{
    (void)state;
    const char *p = write_file("num.csv", "a,x,y\nred,1,1\nblue,abc,0\n");
    char want[600];
    snprintf(want, sizeof want, "%s:3: column 2 ('x'): expected a number, got \"abc\"", p);
    expect_error(p, TL_ERR_PARSE, want, NULL);
}

static void test_error_unknown_label(void **state)
{
    (void)state;
    const char *p = write_file("lab.csv", "a,x,y\nred,1,1\nblue,2,yes\n");
    expect_error(p, TL_ERR_PARSE, ":3: column 3 ('y'): unknown label value \"yes\"", "task 'y'");
    /* without a list of negatives, a positive value that never occurs is a typo */
    const char *q = write_file("lab2.csv", "a,x,y\nred,1,0\n");
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, q, cat, num, lab);
    lab[0].n_negative = 0;
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "no row has the positive value \"1\""));
}

/* issue 19 item 5: without negative=, a value that is neither positive nor
 * the column's one other value was silently 0; now it is an error naming
 * file, line and value, and unknown_negative maps it to 0 on request. */
static void test_error_unknown_label_without_negatives(void **state)
{
    (void)state;
    const char *p = write_file("click.csv", "a,x,y\nred,1,1\nblue,2,0\nred,3,yes\ngreen,4,0\n");
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    lab[0].n_negative = 0;
    lab[0].negative = NULL;
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_PARSE);
    assert_null(d);
    assert_true(contains(tl_errmsg(), "click.csv:4: column 3 ('y'): unknown label value \"yes\" for task 'y'"));
    assert_true(contains(tl_errmsg(), "\"1\" (positive) and \"0\" (taken as negative)"));
    assert_true(contains(tl_errmsg(), "unknown=\"negative\""));
    /* on_bad = skip drops the row instead */
    s.on_bad = TL_BAD_SKIP;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "all")->n, 3);
    tl_dataset_free(d);
    /* the option: every value that is not positive is 0 */
    s.on_bad = TL_BAD_ERROR;
    lab[0].unknown_negative = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    assert_int_equal(all->n, 4);
    assert_true(all->labels[2] == 0.0f);
    assert_true(all->labels[0] == 1.0f);
    tl_dataset_free(d);
    /* a plain 0/1 column still loads without negative= */
    lab[0].unknown_negative = 0;
    s.path = write_file("ok.csv", "a,x,y\nred,1,1\nblue,2,0\nred,3,0\n");
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "all")->n, 3);
    tl_dataset_free(d);
}

static void test_error_empty_and_missing_file(void **state)
{
    (void)state;
    expect_error(write_file("empty.csv", ""), TL_ERR_PARSE, "empty.csv: empty file", NULL);
    expect_error(write_file("hdr.csv", "a,x,y\n\n"), TL_ERR_PARSE, "hdr.csv: empty file (no data rows)", NULL);
    char p[600];
    snprintf(p, sizeof p, "%s/nope.csv", tmp);
    expect_error(p, TL_ERR_IO, "cannot open", "nope.csv': No such file or directory");
}

static void test_error_corrupt_gzip(void **state)
{
    (void)state;
    char *text = malloc(400000);
    assert_non_null(text);
    size_t k = (size_t)sprintf(text, "a,x,y\n");
    for (int i = 0; i < 20000; i++) k += (size_t)sprintf(text + k, "v%d,%d,%d\n", i * 7919 % 1000, i, i & 1);
    const char *p = write_file("z.csv.gz", text);
    free(text);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    /* garbage in the middle of the deflate stream */
    fseek(f, size / 2, SEEK_SET);
    for (int i = 0; i < 64; i++) fputc(0xA5 ^ i, f);
    fclose(f);
    expect_error(p, TL_ERR_FORMAT, "z.csv.gz: corrupt or truncated gzip stream near line", NULL);
    /* truncated */
    assert_int_equal(truncate(p, size / 3), 0);
    expect_error(p, TL_ERR_FORMAT, "z.csv.gz: corrupt or truncated gzip stream", NULL);
}

static void test_error_unknown_column(void **state)
{
    (void)state;
    const char *p = write_file("col.csv", "a,xx,y\nred,1,1\n");
    expect_error(p, TL_ERR_ARG, "col.csv: schema names numeric column 'x', which does not exist",
                 "(columns: a, xx, y)");
}

static void test_error_quote(void **state)
{
    (void)state;
    /* a quote left open reads on to the end of the file: the error names where it opened */
    const char *p = write_file("uq.csv", "a,x,y\n\"red,1,1\nblue,2,0\n");
    expect_error(p, TL_ERR_PARSE, "uq.csv:2: column 1: the quoted field is never closed",
                 "reaches the end of the file at line 3");
    p = write_file("mq.csv", "a,x,y\nred,1,1\n\"bl\"ue,2,0\n");
    expect_error(p, TL_ERR_PARSE, "mq.csv:3: column 1: malformed quoted field (text after its closing quote)", NULL);
}

/* RFC 4180: quoted fields spanning lines, with doubled quotes, CRLF, a BOM
 * and no final newline; the rows after a multi-line record keep their
 * line numbers and data-row indices. */
static void test_rfc4180_multiline(void **state)
{
    (void)state;
    const char *p = write_file("ml.csv", "\xEF\xBB\xBF" "a,x,y\r\n"
                                         "\"two\r\nlines\",1,1\r\n"
                                         "\"say \"\"hi\"\"\n\n,\"\"after a blank line\",2,0\r\n"
                                         "plain,3,1\r\n"
                                         "\"last\nno newline\",4,0");
    tl_dataset *d = NULL;
    assert_int_equal(load_small(p, TL_BAD_ERROR, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    assert_int_equal(all->n, 4);
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[0]), "two\nlines");
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[1]), "say \"hi\"\n\n,\"after a blank line");
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[2]), "plain");
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[3]), "last\nno newline");
    assert_float_equal(all->labels[2], 1.0, 0);
    assert_float_equal(all->labels[3], 0.0, 0);
    assert_int_equal(all->row[3], 3);
    tl_dataset_free(d);

    /* an error inside a record spanning lines 2-4: the line of the bad field and the record's first line */
    p = write_file("mlbad.csv", "a,x,y\n\"multi\nline\",7q,1\nred,1,1\n");
    expect_error(p, TL_ERR_PARSE, "mlbad.csv:3 (record from line 2): column 2 ('x'): expected a number, got \"7q\"",
                 NULL);
    p = write_file("mlbad2.csv", "a,x,y\nred,1,1\n\"a\nb\nc\",2,maybe\n");
    expect_error(p, TL_ERR_PARSE, "mlbad2.csv:5 (record from line 3): column 3 ('y'): unknown label value \"maybe\"",
                 NULL);
    p = write_file("mlrag.csv", "a,x,y\n\"a\nb\",2\nred,1,1\n");
    expect_error(p, TL_ERR_PARSE, "mlrag.csv:2 (record from line 2): expected 3 fields, got 2", NULL);

    /* on_bad = skip counts a multi-line record once, by the line it starts on */
    p = write_file("mlskip.csv", "a,x,y\nred,1,1\n\"bad\nrow\",zz,0\n\"good\nrow\",3,0\nblue,x,1\n");
    assert_int_equal(load_small(p, TL_BAD_SKIP, &d), TL_OK);
    all = tl_dataset_split(d, "all");
    assert_int_equal(all->n, 2);
    const uint64_t *lines;
    int nl;
    assert_int_equal(tl_dataset_skipped(d, &lines, &nl), 2);
    assert_int_equal(nl, 2);
    assert_int_equal(lines[0], 3);
    assert_int_equal(lines[1], 7);
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[1]), "good\nrow");
    assert_int_equal(all->row[1], 2);
    tl_dataset_free(d);

    /* a header name may be quoted across lines too */
    p = write_file("mlhead.csv", "\"a\",x,\"y\"\nred,1,1\nblue,2,0\n");
    assert_int_equal(load_small(p, TL_BAD_ERROR, &d), TL_OK);
    tl_dataset_free(d);
}

/* skip_initial_space: "a, b" with sep "," reads "b"; a quoted field after
 * the spaces is quoted; sep ", " instead needs exactly one space. */
static void test_skip_initial_space(void **state)
{
    (void)state;
    const char *text = "a, x,   y\nred, 1, 1\n  blue,2,    0\n\"r,ed\",  3, 1\ngreen,  \"4\",0\n";
    const char *p = write_file("sp.csv", text);
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    tl_dataset *d = NULL;
    /* without the option the label field " 1" is not the positive value "1" */
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "sp.csv:2: column 3 ('y'): unknown label value \" 1\""));
    s.skip_initial_space = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    assert_int_equal(all->n, 4);
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[0]), "red");
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[1]), "blue");
    assert_string_equal(tl_dataset_vocab_string(d, 0, all->cat[2]), "r,ed");
    assert_float_equal(all->labels[1], 0.0, 0);
    assert_float_equal(all->labels[2], 1.0, 0);
    tl_dataset_free(d);
    /* a quoted field opened after spaces may span lines */
    p = write_file("sp2.csv", "a,x,y\nred,  \"1\n\",1\n");
    s.path = p;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "sp2.csv:2 (record from line 2): column 2 ('x'): expected a number"));
    /* sep ", " is the two-character separator of the census files: "a,b" is one field */
    p = write_file("sp3.csv", "a, x, y\nred, 1, 1\nblue,2, 0\n");
    small_schema(&s, p, cat, num, lab);
    s.sep = ", ";
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "sp3.csv:3: expected 3 fields, got 2"));
    s.sep = ",";
    s.skip_initial_space = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "all")->n, 2);
    tl_dataset_free(d);
    s.sep = " ";
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "separator that does not start with a space"));
}

static void test_on_bad_skip(void **state)
{
    (void)state;
    const char *p = write_file("skip.csv", "a,x,y\nred,1,1\nblue,2\nred,zz,0\ngreen,4,0\nred,5,maybe\n");
    tl_dataset *d = NULL;
    assert_int_equal(load_small(p, TL_BAD_SKIP, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "all")->n, 2);
    const uint64_t *lines;
    int nl;
    assert_int_equal(tl_dataset_skipped(d, &lines, &nl), 3);
    assert_int_equal(nl, 3);
    assert_int_equal(lines[0], 3);
    assert_int_equal(lines[1], 4);
    assert_int_equal(lines[2], 6);
    assert_int_equal(tl_dataset_split(d, "all")->row[1], 3); /* data-row index counts skipped rows */
    tl_dataset_free(d);
    /* every row bad: an error, not an empty dataset */
    const char *q = write_file("allbad.csv", "a,x,y\nred\nblue\n");
    assert_int_equal(load_small(q, TL_BAD_SKIP, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "every one of the 2 data rows is bad (first at line 2)"));
}

static void test_schema_errors(void **state)
{
    (void)state;
    const char *p = write_file("s.csv", "a,x,y\nred,1,1\n");
    tl_data_schema s;
    tl_data_cat_col cat[2];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    tl_dataset *d = NULL;
    s.n_labels = 0;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "no labels"));
    s.n_labels = 1;
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.5;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "split ratios must sum to 1"));
    s.split = TL_SPLIT_NONE;
    cat[1] = cat[0];
    s.n_cat = 2;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "column 'a' is listed twice"));
    assert_null(d);
}

/* Every allocation failing in turn: a clean TL_ERR_NOMEM, no leak, no crash. */
static void test_fault_injection(void **state)
{
    (void)state;
    const char *p = write_file("f.csv", "a,x,y\nred,1,1\nblue,,0\nred,3,1\n");
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[2] = {{"x", TL_NUM_STANDARD, 0}, {"x", TL_NUM_QUANTILE, 2}};
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    s.cache = 1;
    s.cache_dir = tmp;
    int failures = 0;
    for (uint64_t k = 1; k < 400; k++) {
        tl_dataset *d = NULL;
        tl_fault_inject_nth(k);
        tl_status st = tl_data_csv_load(&s, NULL, &d);
        int injected = tl_fault_injected();
        tl_fault_inject_nth(0);
        if (!injected) {
            assert_int_equal(st, TL_OK);
            tl_dataset_free(d);
            break;
        }
        failures++;
        if (st == TL_OK) tl_dataset_free(d); /* a failed cache write is not an error */
        else assert_null(d);
    }
    assert_true(failures > 20);
}

/* ---- the binary cache ------------------------------------------------------------ */

static void same_dataset(const tl_dataset *a, const tl_dataset *b)
{
    assert_int_equal(tl_dataset_n_cat(a), tl_dataset_n_cat(b));
    assert_int_equal(tl_dataset_n_num(a), tl_dataset_n_num(b));
    assert_int_equal(tl_dataset_n_tasks(a), tl_dataset_n_tasks(b));
    int nc = tl_dataset_n_cat(a), nn = tl_dataset_n_num(a), nt = tl_dataset_n_tasks(a);
    assert_memory_equal(tl_dataset_vocab(a), tl_dataset_vocab(b), sizeof(int32_t) * (size_t)nc);
    for (int f = 0; f < nc; f++) {
        assert_string_equal(tl_dataset_cat_name(a, f), tl_dataset_cat_name(b, f));
        for (int32_t id = 0; id < tl_dataset_vocab(a)[f]; id++) {
            const char *x = tl_dataset_vocab_string(a, f, id), *y = tl_dataset_vocab_string(b, f, id);
            assert_true((x == NULL) == (y == NULL));
            if (x) assert_string_equal(x, y);
        }
    }
    for (int t = 0; t < nt; t++) assert_string_equal(tl_dataset_task_name(a, t), tl_dataset_task_name(b, t));
    static const char *const names[] = {"train", "valid", "test", "all"};
    for (int k = 0; k < 4; k++) {
        const tl_split *x = tl_dataset_split(a, names[k]), *y = tl_dataset_split(b, names[k]);
        assert_true((x == NULL) == (y == NULL));
        if (!x) continue;
        assert_int_equal(x->n, y->n);
        assert_memory_equal(x->cat, y->cat, x->n * (size_t)nc * 4);
        assert_memory_equal(x->num, y->num, x->n * (size_t)nn * 4);
        assert_memory_equal(x->labels, y->labels, x->n * (size_t)nt * 4);
        assert_memory_equal(x->row, y->row, x->n * 4);
        assert_true((x->group == NULL) == (y->group == NULL));
        if (x->group) assert_memory_equal(x->group, y->group, x->n * 4);
    }
}

static char *find_cache(void)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls %s/*.tlcache 2>/dev/null", tmp);
    FILE *f = popen(cmd, "r");
    static char line[700];
    char *r = f && fgets(line, sizeof line, f) ? line : NULL;
    if (f) pclose(f);
    if (r) line[strcspn(line, "\n")] = 0;
    return r;
}

static void test_cache_round_trip(void **state)
{
    (void)state;
    const char *p = write_file("cache.csv", "uid,a,x,y\nu1,red,1,1\nu2,blue,,0\nu1,red,3,1\nu3,green,4,0\n");
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[2] = {{"x", TL_NUM_STANDARD, 0}, {"x", TL_NUM_QUANTILE, 2}};
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    s.n_num = 2;
    s.id = "uid";
    s.split = TL_SPLIT_MODULO;
    s.modulo = 2;
    s.modulo_to[0] = TL_TO_TRAIN;
    s.modulo_to[1] = TL_TO_VALID;
    s.cache = 1;
    s.cache_dir = tmp;
    tl_dataset *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &a), TL_OK);
    assert_false(tl_dataset_from_cache(a));
    char *cp = find_cache();
    assert_non_null(cp);
    assert_int_equal(tl_data_csv_load(&s, NULL, &b), TL_OK);
    assert_true(tl_dataset_from_cache(b));
    same_dataset(a, b);
    tl_dataset_free(b);

    /* corrupt: one flipped byte in the payload → rebuilt, same data */
    FILE *f = fopen(cp, "r+b");
    assert_non_null(f);
    fseek(f, 200, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
    assert_int_equal(tl_data_csv_load(&s, NULL, &b), TL_OK);
    assert_false(tl_dataset_from_cache(b));
    same_dataset(a, b);
    tl_dataset_free(b);
    /* truncated → rebuilt */
    struct stat sb;
    assert_int_equal(stat(cp, &sb), 0);
    assert_int_equal(truncate(cp, sb.st_size - 9), 0);
    assert_int_equal(tl_data_csv_load(&s, NULL, &b), TL_OK);
    assert_false(tl_dataset_from_cache(b));
    same_dataset(a, b);
    tl_dataset_free(b);
    assert_int_equal(tl_data_csv_load(&s, NULL, &b), TL_OK);
    assert_true(tl_dataset_from_cache(b));
    tl_dataset_free(b);

    /* stale: the source changed → rebuilt from the new text */
    write_file("cache.csv", "uid,a,x,y\nu1,red,1,1\nu2,blue,,0\nu1,red,3,1\nu3,green,5,0\n");
    assert_int_equal(tl_data_csv_load(&s, NULL, &c), TL_OK);
    assert_false(tl_dataset_from_cache(c));
    assert_int_equal(tl_dataset_split(c, "valid")->n, 2);
    assert_float_equal(tl_dataset_split(a, "valid")->num[1], 2.0, 1e-6); /* (4 - 2) / 1 */
    assert_float_equal(tl_dataset_split(c, "valid")->num[1], 3.0, 1e-6); /* (5 - 2) / 1 */
    tl_dataset_free(c);
    /* another schema gets its own cache file, not the first one's */
    s.seed = 99;
    lab[0].keep = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &c), TL_OK);
    assert_false(tl_dataset_from_cache(c));
    tl_dataset_free(c);
    tl_dataset_free(a);
}

/* A ratio split by hash (split_by_hash): each row by (seed, its row index);
 * the cache key tells it from the permutation split. */
static void test_split_by_hash(void **state)
{
    (void)state;
    char text[8192] = "a,x,y\n";
    for (int r = 0; r < 300; r++) snprintf(text + strlen(text), sizeof text - strlen(text), "v%d,%d,%d\n", r % 5, r, r % 2);
    const char *p = write_file("hsplit.csv", text);
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, p, cat, num, lab);
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.6;
    s.ratio[1] = 0.2;
    s.ratio[2] = 0.2;
    s.cache = 1;
    s.cache_dir = tmp;
    tl_dataset *perm, *h, *h2;
    assert_int_equal(tl_data_csv_load(&s, NULL, &perm), TL_OK);
    assert_int_equal(tl_dataset_split(perm, "valid")->n, 60); /* exact counts */
    s.split_by_hash = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &h), TL_OK);
    assert_false(tl_dataset_from_cache(h)); /* not the permutation's cache */
    assert_int_equal(tl_data_csv_load(&s, NULL, &h2), TL_OK);
    assert_true(tl_dataset_from_cache(h2));
    tl_dataset_free(h2);
    /* each row is where tl_data_hash_split puts its row index */
    const char *nm[3] = {"train", "valid", "test"};
    size_t n = 0;
    for (int k = 0; k < 3; k++) {
        const tl_split *sp = tl_dataset_split(h, nm[k]);
        for (size_t i = 0; i < sp->n; i++) assert_int_equal(tl_data_hash_split(&s, sp->row[i]), k);
        n += sp->n;
    }
    assert_int_equal(n, 300);
    assert_true(tl_dataset_split(h, "valid")->n != 60 || tl_dataset_split(h, "test")->n != 60);
    tl_dataset_free(h);
    tl_dataset_free(perm);
}

/* ---- issue 25 items 14-16, 19: hostile files -------------------------------------- */

static void test_error_float32_overflow(void **state)
{
    (void)state;
    expect_error(write_file("big.csv", "a,x,y\nred,1,1\nblue,3.5e38,0\n"), TL_ERR_PARSE,
                 "big.csv:3: column 2 ('x'): \"3.5e38\" overflows float32", NULL);
    expect_error(write_file("big2.csv", "a,x,y\nred,-1e308,1\nblue,3,0\n"), TL_ERR_PARSE,
                 "big2.csv:2: column 2 ('x'): \"-1e308\" overflows float32", NULL);
    /* the largest float32 itself loads */
    tl_dataset *d = NULL;
    assert_int_equal(load_small(write_file("max.csv", "a,x,y\nred,3.4e38,1\nblue,3,0\n"), TL_BAD_ERROR, &d), TL_OK);
    tl_dataset_free(d);
    /* a weight and a regression label */
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[2];
    small_schema(&s, write_file("w.csv", "a,x,y,w,r\nred,1,1,1,2\nblue,2,0,1e39,3\n"), cat, num, lab);
    s.weight = "w";
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "w.csv:3: column 4 ('w'): \"1e39\" overflows float32"));
    s.weight = NULL;
    s.path = write_file("r.csv", "a,x,y,r\nred,1,1,2\nblue,2,0,-4e38\n");
    lab[1] = (tl_data_label){.task = "r", .column = "r", .kind = TL_LABEL_REGRESSION};
    s.n_labels = 2;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "r.csv:3: column 4 ('r'): \"-4e38\" overflows float32"));
    /* a threshold label only compares the number: no overflow */
    lab[1] = (tl_data_label){.task = "r", .column = "r", .kind = TL_LABEL_THRESHOLD, .threshold = 1};
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    tl_dataset_free(d);
}

static void test_bom_and_cr_only(void **state)
{
    (void)state;
    tl_dataset *d = NULL;
    assert_int_equal(load_small(write_file("bom.csv", "\xEF\xBB\xBF" "a,x,y\nred,1,1\nblue,2,0\n"), TL_BAD_ERROR, &d),
                     TL_OK);
    assert_string_equal(tl_dataset_cat_name(d, 0), "a");
    assert_string_equal(tl_dataset_vocab_string(d, 0, 2), "red");
    tl_dataset_free(d);
    expect_error(write_file("mac.csv", "a,x,y\rred,1,1\rblue,2,0\r"), TL_ERR_PARSE,
                 "mac.csv:1: the line holds a carriage return", "CR-only");
    /* CRLF is still fine */
    assert_int_equal(load_small(write_file("crlf.csv", "a,x,y\r\nred,1,1\r\nblue,2,0\r\n"), TL_BAD_ERROR, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "all")->n, 2);
    tl_dataset_free(d);
}

static void test_duplicate_header_and_nul(void **state)
{
    (void)state;
    expect_error(write_file("dup.csv", "a,x,a,y\nred,1,blue,1\nblue,2,red,0\n"), TL_ERR_PARSE,
                 "dup.csv: column name 'a' appears twice in the header (columns 1 and 3)", NULL);
    /* a duplicate that no role uses is harmless */
    tl_dataset *d = NULL;
    assert_int_equal(load_small(write_file("dup2.csv", "a,q,x,q,y\nred,1,1,2,1\nblue,2,2,3,0\n"), TL_BAD_ERROR, &d),
                     TL_OK);
    tl_dataset_free(d);
    static const char nul[] = "a,x,y\nred,1,1\nbl\0ue,2,0\n";
    char p[600];
    snprintf(p, sizeof p, "%s/nul.csv", tmp);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(nul, 1, sizeof nul - 1, f), sizeof nul - 1);
    fclose(f);
    expect_error(p, TL_ERR_PARSE, "nul.csv:3: column 1 ('a'): the field holds a NUL byte", NULL);
}

static void test_task_limits_and_label_features(void **state)
{
    (void)state;
    _Static_assert(TL_DATA_MAX_TASKS == 8 && TL_DATA_TASK_NAME_MAX == 32, "data.h limits = model.h's");
    const char *p = write_file("t.csv", "a,x,y\nred,1,1\nblue,2,0\n");
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[9];
    char names[9][40];
    small_schema(&s, p, cat, num, lab);
    for (int t = 0; t < 9; t++) {
        snprintf(names[t], sizeof names[t], "t%d", t);
        lab[t] = lab[0];
        lab[t].task = names[t];
    }
    s.n_labels = 9;
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "9 tasks; a model takes at most 8"));
    s.n_labels = 8;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    tl_dataset_free(d);
    s.n_labels = 1;
    lab[0].task = "a_task_name_of_exactly_32_bytes_";
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "is 32 bytes; a model takes at most 31"));
    lab[0].task = "a_task_name_of_exactly_31_bytes";
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    tl_dataset_free(d);
    /* the label column among the categorical features */
    lab[0].task = "y";
    cat[0].name = "y";
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "column 'y' is listed as categorical, but it is the label column of task 'y'"));
}

/* issue 25 item 16: same vocabulary sizes, other values */
static void test_vocab_fingerprint(void **state)
{
    (void)state;
    tl_dataset *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(load_small(write_file("fa.csv", "a,x,y\nred,1,1\nblue,2,0\n"), TL_BAD_ERROR, &a), TL_OK);
    assert_int_equal(load_small(write_file("fb.csv", "a,x,y\nred,1,1\ngreen,2,0\n"), TL_BAD_ERROR, &b), TL_OK);
    assert_int_equal(tl_dataset_vocab(a)[0], tl_dataset_vocab(b)[0]);
    assert_true(tl_dataset_vocab_fingerprint(a, 0) != tl_dataset_vocab_fingerprint(b, 0));
    char msg[400];
    assert_int_equal(tl_dataset_vocab_diff(b, 0, a, 0, msg, sizeof msg), 1);
    assert_true(contains(msg, "field 'a' has the same number of ids (4) but other values: id 3 is \"green\" here "
                              "and \"blue\" there"));
    /* like= shares the vocabulary */
    tl_data_schema s;
    tl_data_cat_col cat[1];
    tl_data_num_col num[1];
    tl_data_label lab[1];
    small_schema(&s, write_file("fc.csv", "a,x,y\ngreen,1,1\nred,2,0\n"), cat, num, lab);
    assert_int_equal(tl_data_csv_load(&s, a, &c), TL_OK);
    assert_int_equal(tl_dataset_vocab_diff(c, 0, a, 0, msg, sizeof msg), 0);
    assert_true(tl_dataset_vocab_fingerprint(a, 0) == tl_dataset_vocab_fingerprint(c, 0));
    assert_int_equal(tl_dataset_vocab_fingerprint(a, 5), 0);
    tl_dataset_free(a);
    tl_dataset_free(b);
    tl_dataset_free(c);
}

/* ---- built-in datasets -------------------------------------------------------------- */

static size_t count_pos(const tl_split *s, int n_tasks, int t)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) k += s->labels[i * (size_t)n_tasks + (size_t)t] == 1.0f;
    return k;
}

static int census_present(void)
{
    struct stat sb;
    return stat("data/census_income_kdd/census-income.test.gz", &sb) == 0;
}

static void test_census(void **state)
{
    (void)state;
    if (!census_present()) {
        print_message("SKIP test_census: data/census_income_kdd is not in this checkout\n");
        skip();
    }
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_census_ex("data/census_income_kdd", 0, 0, &d), TL_OK);
    const tl_split *tr = tl_dataset_split(d, "train"), *va = tl_dataset_split(d, "valid"),
                   *te = tl_dataset_split(d, "test"), *all = tl_dataset_split(d, "all");
    assert_int_equal(tr->n, 79810);
    assert_int_equal(va->n, 9976);
    assert_int_equal(te->n, 9976);
    assert_int_equal(all->n, 99762);
    assert_int_equal(tl_dataset_n_tasks(d), 2);
    assert_string_equal(tl_dataset_task_name(d, 0), "income");
    assert_string_equal(tl_dataset_task_name(d, 1), "never_married");
    /* positives per SOURCE.md: income 6,186 (6.20 %), never married 43,143 (43.25 %) */
    assert_int_equal(count_pos(all, 2, 0), 6186);
    assert_int_equal(count_pos(all, 2, 1), 43143);
    assert_int_equal(count_pos(tr, 2, 0), 4923);
    assert_int_equal(count_pos(tr, 2, 1), 34559);
    assert_int_equal(count_pos(va, 2, 0), 612);
    assert_int_equal(count_pos(te, 2, 1), 4260);
    /* the split follows the row index: i%10 */
    assert_int_equal(tr->row[8], 10);
    assert_int_equal(va->row[1], 18);
    assert_int_equal(te->row[0], 9);
    /* label columns and instance_weight dropped; 7 standardised numerics */
    assert_int_equal(tl_dataset_n_num(d), 7);
    assert_int_equal(tl_dataset_n_cat(d), 32);
    for (int f = 0; f < tl_dataset_n_cat(d); f++) {
        assert_string_not_equal(tl_dataset_cat_name(d, f), "marital_stat");
        assert_string_not_equal(tl_dataset_cat_name(d, f), "income_50k");
        assert_string_not_equal(tl_dataset_cat_name(d, f), "instance_weight");
        for (size_t i = 0; i < all->n; i++) {
            int32_t v = all->cat[i * 32 + (size_t)f];
            assert_true(v >= 0 && v < tl_dataset_vocab(d)[f]);
        }
    }
    double mean, sd;
    assert_string_equal(tl_dataset_num_transform(d, 0, &mean, &sd), "standard");
    assert_string_equal(tl_dataset_num_name(d, 0), "age");
    double m = 0;
    for (size_t i = 0; i < tr->n; i++) m += (double)tr->num[i * 7];
    assert_true(fabs(m / (double)tr->n) < 1e-4); /* standardised on train */
    tl_dataset_free(d);

    assert_int_equal(tl_data_census_ex("data/census_income_kdd", 1, 0, &d), TL_OK);
    assert_int_equal(tl_dataset_n_tasks(d), 3);
    assert_int_equal(tl_dataset_n_cat(d), 31);
    assert_int_equal(count_pos(tl_dataset_split(d, "all"), 3, 2), 14687); /* 14.72 % */
    tl_dataset_free(d);
}

static void test_census_cache_and_env(void **state)
{
    (void)state;
    if (!census_present()) {
        print_message("SKIP test_census_cache_and_env: data/census_income_kdd is not in this checkout\n");
        skip();
    }
    /* copy the file into tmp/census_income_kdd and load it from there */
    char dir[600], cmd[1400];
    snprintf(dir, sizeof dir, "%s/census_income_kdd", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp data/census_income_kdd/census-income.test.gz %s/", dir, dir);
    assert_int_equal(system(cmd), 0);
    tl_dataset *a = NULL, *b = NULL;
    assert_int_equal(tl_data_census(dir, 0, &a), TL_OK);
    assert_false(tl_dataset_from_cache(a));
    assert_int_equal(tl_data_census(dir, 0, &b), TL_OK);
    assert_true(tl_dataset_from_cache(b));
    same_dataset(a, b);
    tl_dataset_free(a);
    tl_dataset_free(b);
    /* the engine reads no environment variable (the REPL resolves
     * TOWERLAB_DATA): NULL is ./data/census_income_kdd whatever it says */
    setenv("TOWERLAB_DATA", "/nonexistent-dir", 1);
    assert_int_equal(tl_data_census_ex(NULL, 0, 0, &a), TL_OK);
    tl_dataset_free(a);
    unsetenv("TOWERLAB_DATA");
    assert_int_equal(tl_data_census("/nonexistent-dir", 0, &a), TL_ERR_IO);
    assert_true(contains(tl_errmsg(), "no census-income.test.gz in '/nonexistent-dir'"));
}

static void test_census_cancel(void **state)
{
    (void)state;
    if (!census_present()) {
        print_message("SKIP test_census_cancel: data/census_income_kdd is not in this checkout\n");
        skip();
    }
    tl_dataset *d = NULL;
    tl_cancel_request();
    tl_status st = tl_data_census_ex("data/census_income_kdd", 0, 0, &d);
    tl_cancel_clear();
    assert_int_equal(st, TL_ERR_CANCELLED);
    assert_null(d);
    assert_true(contains(tl_errmsg(), "cancelled"));
}

/* The rechub samples: header-ful CSV, 23 sparse + 8 dense columns, 2 labels. */
static void test_rechub_samples(void **state)
{
    (void)state;
    static const char *const sparse[] = {"101", "121", "122", "124", "125", "126", "127", "128",
                                         "129", "205", "206", "207", "210", "216", "508", "509",
                                         "702", "853", "301", "109_14", "110_14", "127_14", "150_14"};
    static const char *const dense[] = {"D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"};
    tl_data_cat_col cat[23];
    tl_data_num_col num[8];
    for (int i = 0; i < 23; i++) cat[i] = (tl_data_cat_col){sparse[i], 0, 0};
    for (int i = 0; i < 8; i++) num[i] = (tl_data_num_col){dense[i], TL_NUM_NONE, 0};
    tl_data_label lab[2] = {
        {.task = "ctr", .column = "click", .positive = POS1, .n_positive = 1, .negative = NEG0, .n_negative = 1},
        {.task = "ctcvr", .column = "purchase", .positive = POS1, .n_positive = 1, .negative = NEG0,
         .n_negative = 1},
    };
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = "tests/data/rechub_mtl_samples/ali_ccp_train_sample.csv";
    s.cat = cat;
    s.n_cat = 23;
    s.num = num;
    s.n_num = 8;
    s.labels = lab;
    s.n_labels = 2;
    s.split = TL_SPLIT_FILES;
    s.valid_path = "tests/data/rechub_mtl_samples/ali_ccp_val_sample.csv";
    s.test_path = "tests/data/rechub_mtl_samples/ali_ccp_test_sample.csv";
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    const tl_split *tr = tl_dataset_split(d, "train");
    assert_int_equal(tr->n, 100);
    assert_int_equal(tl_dataset_split(d, "valid")->n, 50);
    assert_int_equal(tl_dataset_split(d, "test")->n, 50);
    assert_int_equal(count_pos(tr, 2, 0), 7);
    assert_int_equal(count_pos(tr, 2, 1), 1);
    assert_int_equal(count_pos(tl_dataset_split(d, "valid"), 2, 0), 3);
    assert_int_equal(count_pos(tl_dataset_split(d, "test"), 2, 0), 2);
    assert_float_equal(tr->num[0], 0.4734, 1e-6);
    assert_float_equal(tr->num[4], 0.07556, 1e-6);
    tl_dataset_free(d);

    /* AliExpress: search_id as the GAUC group, 16 categorical + 63 numeric */
    tl_data_cat_col ac[16];
    tl_data_num_col an[63];
    char names[79][24];
    for (int i = 0; i < 16; i++) {
        snprintf(names[i], 24, "categorical_%d", i + 1);
        ac[i] = (tl_data_cat_col){names[i], 0, 0};
    }
    for (int i = 0; i < 63; i++) {
        snprintf(names[16 + i], 24, "numerical_%d", i + 1);
        an[i] = (tl_data_num_col){names[16 + i], TL_NUM_STANDARD, 0};
    }
    tl_data_label al[2] = {
        {.task = "ctr", .column = "click", .positive = POS1, .n_positive = 1, .negative = NEG0, .n_negative = 1},
        {.task = "cvr", .column = "conversion", .positive = POS1, .n_positive = 1, .negative = NEG0,
         .n_negative = 1},
    };
    tl_data_schema_init(&s);
    s.path = "tests/data/rechub_mtl_samples/aliexpress_train_sample.csv";
    s.cat = ac;
    s.n_cat = 16;
    s.num = an;
    s.n_num = 63;
    s.labels = al;
    s.n_labels = 2;
    s.id = "search_id";
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    assert_int_equal(all->n, 100);
    assert_int_equal(count_pos(all, 2, 0), 60);
    assert_int_equal(count_pos(all, 2, 1), 2);
    assert_non_null(all->group);
    tl_dataset_free(d);
}

/* ---- Ali-CCP and AliExpress (engine/data/alibaba.h) ------------------------- */

static int cat_field(const tl_dataset *d, const char *name)
{
    for (int f = 0; f < tl_dataset_n_cat(d); f++)
        if (strcmp(tl_dataset_cat_name(d, f), name) == 0) return f;
    fail_msg("no categorical field '%s'", name);
    return -1;
}

static int num_field(const tl_dataset *d, const char *name)
{
    for (int j = 0; j < tl_dataset_n_num(d); j++)
        if (strcmp(tl_dataset_num_name(d, j), name) == 0) return j;
    fail_msg("no numeric column '%s'", name);
    return -1;
}

/* The id of row i's field f, as its string ("<oov>", "<missing>"). */
static const char *cat_str(const tl_dataset *d, const tl_split *s, size_t i, int f)
{
    int32_t id = s->cat[i * (size_t)tl_dataset_n_cat(d) + (size_t)f];
    if (id == 0) return "<oov>";
    if (id == 1) return "<missing>";
    return tl_dataset_vocab_string(d, f, id);
}

/* tests/data/aliccp_release (make_fixture.py says what each line tests). */
static void test_aliccp_release(void **state)
{
    (void)state;
    tl_alibaba_params p;
    tl_alibaba_defaults(&p);
    p.dir = "tests/data/aliccp_release";
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_aliccp(&p, &d), TL_OK);
    const tl_split *tr = tl_dataset_split(d, "train"), *va = tl_dataset_split(d, "valid"),
                   *te = tl_dataset_split(d, "test");
    assert_int_equal(tr->n, 5);
    assert_int_equal(va->n + te->n, 4);
    assert_string_equal(tl_dataset_source(d), "ali_ccp");
    assert_int_equal(tl_dataset_n_tasks(d), 2);
    assert_string_equal(tl_dataset_task_name(d, 0), "click");
    assert_string_equal(tl_dataset_task_name(d, 1), "conversion");
    assert_int_equal(tl_dataset_n_cat(d), 23);
    /* the conversion without click (line 4) is left out and counted */
    const uint64_t *lines;
    int nl;
    assert_int_equal(tl_dataset_skipped(d, &lines, &nl), 1);
    assert_int_equal(lines[0], 4);
    static const float click[5] = {1, 0, 1, 0, 1}, conv[5] = {0, 0, 1, 0, 0};
    static const uint32_t rows[5] = {0, 1, 2, 4, 5};
    for (size_t i = 0; i < 5; i++) {
        assert_float_equal(tr->labels[2 * i], click[i], 0);
        assert_float_equal(tr->labels[2 * i + 1], conv[i], 0);
        assert_int_equal(tr->row[i], rows[i]);
    }
    int f101 = cat_field(d, "101"), f205 = cat_field(d, "205"), f210 = cat_field(d, "210"),
        f121 = cat_field(d, "121"), f150 = cat_field(d, "150_14");
    /* the common features joined: sample 5's own 101 is overridden by c2's */
    assert_string_equal(cat_str(d, tr, 0, f101), "u1");
    assert_string_equal(cat_str(d, tr, 2, f101), "u2");
    assert_string_equal(cat_str(d, tr, 3, f101), "u2");
    assert_string_equal(cat_str(d, tr, 3, f121), "a2");
    assert_int_equal(tl_dataset_vocab(d)[f101], 4); /* oov, missing, u1, u2: uX and u9 are not train values */
    assert_string_equal(cat_str(d, tr, 0, f205), "i1");
    assert_string_equal(cat_str(d, tr, 4, f205), "i4");
    assert_string_equal(cat_str(d, tr, 1, f210), "t2"); /* a repeated field keeps its last value */
    assert_string_equal(cat_str(d, tr, 0, f210), "<missing>");
    assert_int_equal(tl_dataset_vocab(d)[f210], 3);
    assert_string_equal(cat_str(d, tr, 0, f150), "<missing>");
    /* test rows: ids of the train vocabulary, unseen values are OOV */
    size_t n_oov = 0, n_u1 = 0;
    for (int k = 0; k < 2; k++) {
        const tl_split *s = k ? te : va;
        for (size_t i = 0; i < s->n; i++) {
            n_oov += strcmp(cat_str(d, s, i, f205), "<oov>") == 0;
            n_u1 += strcmp(cat_str(d, s, i, f101), "u1") == 0;
        }
    }
    assert_int_equal(n_oov, 1); /* i5 */
    assert_int_equal(n_u1, 2);
    /* dense: D508 from the samples (0.7, 0.1, then missing), D109_14 from c1 */
    int j508 = num_field(d, "D508"), j109 = num_field(d, "D109_14");
    double mean, sd;
    tl_dataset_num_transform(d, j508, &mean, &sd);
    assert_true(fabs(mean - 0.4) < 1e-6);
    tl_dataset_num_transform(d, j109, &mean, &sd);
    assert_true(fabs(mean - 0.5) < 1e-6);
    (void)num_field(d, "D508_missing");
    tl_dataset_free(d);

    /* the valid share and its seed */
    p.valid = 1;
    assert_int_equal(tl_data_aliccp(&p, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "valid")->n, 4);
    tl_dataset_free(d);
    /* max_rows and hash buckets */
    p.valid = 0.5;
    p.max_rows = 2;
    p.hash_buckets = 7;
    assert_int_equal(tl_data_aliccp(&p, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "train")->n, 2);
    assert_int_equal(tl_dataset_vocab(d)[0], 8);
    assert_string_equal(tl_dataset_cat_kind(d, 0), "hash");
    tl_dataset_free(d);
}

static void test_aliccp_release_errors(void **state)
{
    (void)state;
    tl_alibaba_params p;
    tl_alibaba_defaults(&p);
    p.dir = tmp;
    tl_dataset *d = (tl_dataset *)1;
    assert_int_equal(tl_data_aliccp(&p, &d), TL_ERR_IO);
    assert_null(d);
    assert_true(contains(tl_errmsg(), "no Ali-CCP in"));
    write_file("sample_skeleton_train.csv", "1,0,0,c1,1,205\x02i1\x03" "1.0\n2,1,0,c9,1,205\x02i2\x03" "1.0\n");
    assert_int_equal(tl_data_aliccp(&p, &d), TL_ERR_IO);
    assert_true(contains(tl_errmsg(), "has only part of the release: common_features_train.csv"));
    write_file("common_features_train.csv", "c1,1,101\x02u1\x03" "1.0\n");
    write_file("sample_skeleton_test.csv", "3,1,0,c1,1,205\x02i1\x03" "1.0\n");
    write_file("common_features_test.csv.gz", "c1,1,101\x02u1\x03" "1.0\n");
    assert_int_equal(tl_data_aliccp(&p, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "sample_skeleton_train.csv: data row 2: its common_feature_index 'c9' is not in"));
    write_file("sample_skeleton_train.csv", "1,0,0,c1,1,205\x02i1\x03" "1.0\n2,1,0,c1,1,205\x02i2\x01\n");
    assert_int_equal(tl_data_aliccp(&p, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "sample_skeleton_train.csv:2: feature 1: expected field_id \\x02 feature_id \\x03 value"));
    write_file("sample_skeleton_train.csv", "1,0,0,c1,1,205\x02i1\x03" "1.0\n2,yes,0,c1,1,205\x02i2\x03" "1\n");
    assert_int_equal(tl_data_aliccp(&p, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "sample_skeleton_train.csv:2: column 2 (click): expected 0 or 1, got \"yes\""));
    write_file("sample_skeleton_train.csv", "1,0,0,c1,1,508\x02" "b\x03" "big\n");
    assert_int_equal(tl_data_aliccp(&p, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "sample_skeleton_train.csv:1: feature 1 (field 508): expected a float32 value"));
    write_file("sample_skeleton_train.csv", "1,0,0,c1,1\n");
    assert_int_equal(tl_data_aliccp(&p, &d), TL_ERR_PARSE);
    assert_true(contains(tl_errmsg(), "sample_skeleton_train.csv:1: expected 6 fields"));
    /* the fixed file loads, with the test common file read through zlib */
    write_file("sample_skeleton_train.csv", "1,1,0,c1,1,205\x02i1\x03" "1.0\n2,0,0,c1,1,205\x02i2\x03" "1\n");
    assert_int_equal(tl_data_aliccp(&p, &d), TL_OK);
    tl_dataset_free(d);
}

/* torch-rechub's preprocessed Ali-CCP and AliExpress samples (tests/data
 * copy of ../shared/data/rechub_mtl_samples; counts from its SOURCE.md). */
static void test_alibaba_rechub_layouts(void **state)
{
    (void)state;
    tl_alibaba_params p;
    tl_alibaba_defaults(&p);
    p.dir = "tests/data/rechub_mtl_samples";
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_aliccp(&p, &d), TL_OK);
    const tl_split *tr = tl_dataset_split(d, "train"), *va = tl_dataset_split(d, "valid"),
                   *te = tl_dataset_split(d, "test");
    assert_int_equal(tr->n, 100);
    assert_int_equal(va->n, 50);
    assert_int_equal(te->n, 50);
    assert_int_equal(count_pos(tr, 2, 0), 7);
    assert_int_equal(count_pos(tr, 2, 1), 1);
    assert_int_equal(count_pos(va, 2, 0), 3);
    assert_int_equal(count_pos(te, 2, 1), 1);
    assert_int_equal(tl_dataset_n_cat(d), 23);
    assert_string_equal(tl_dataset_task_name(d, 1), "conversion");
    assert_int_equal(tl_dataset_skipped(d, NULL, NULL), 0);
    (void)num_field(d, "D853");
    tl_dataset_free(d);

    assert_int_equal(tl_data_aliexpress(&p, &d), TL_OK);
    tr = tl_dataset_split(d, "train");
    va = tl_dataset_split(d, "valid");
    te = tl_dataset_split(d, "test");
    assert_int_equal(tr->n, 100);
    assert_int_equal(va->n + te->n, 20);
    assert_int_equal(count_pos(tr, 2, 0), 60);
    assert_int_equal(count_pos(tr, 2, 1), 2);
    assert_int_equal(count_pos(va, 2, 0) + count_pos(te, 2, 0), 10);
    assert_int_equal(tl_dataset_n_cat(d), 16);
    assert_int_equal(tl_dataset_n_num(d) >= 63, 1);
    assert_string_equal(tl_dataset_cat_name(d, 0), "categorical_1");
    tl_dataset_free(d);
}

/* tests/data/aliexpress_mtreclib: MTReclib's train.csv/test.csv. */
static void test_aliexpress_mtreclib(void **state)
{
    (void)state;
    tl_alibaba_params p;
    tl_alibaba_defaults(&p);
    p.dir = "tests/data/aliexpress_mtreclib";
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_aliexpress(&p, &d), TL_OK);
    const tl_split *tr = tl_dataset_split(d, "train");
    assert_int_equal(tr->n, 5);
    const uint64_t *lines;
    int nl;
    assert_int_equal(tl_dataset_skipped(d, &lines, &nl), 1);
    assert_int_equal(lines[0], 5); /* row 4 (line 5): conversion without click */
    assert_int_equal(tl_dataset_split(d, "valid")->n + tl_dataset_split(d, "test")->n, 4);
    assert_string_equal(cat_str(d, tr, 0, 0), "7");
    assert_string_equal(cat_str(d, tr, 3, 0), "8");
    assert_int_equal(tl_dataset_vocab(d)[0], 4); /* 7, 8 (9 was only in the dropped row) */
    assert_int_equal(tl_dataset_n_num(d), 63);
    tl_dataset_free(d);
    p.dir = tmp;
    assert_int_equal(tl_data_aliexpress(&p, &d), TL_ERR_IO);
    assert_true(contains(tl_errmsg(), "no AliExpress in"));
    p.dir = "tests/data/aliexpress_mtreclib";
    p.valid = 2;
    assert_int_equal(tl_data_aliexpress(&p, &d), TL_ERR_ARG);
}

static void test_movielens(void **state)
{
    (void)state;
    struct stat sb;
    const char *dir = "../shared/data/movielens_100k";
    if (stat(dir, &sb) != 0) {
        print_message("SKIP test_movielens: %s is absent (read from ../shared, never shipped)\n", dir);
        skip();
    }
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_movielens(dir, 1, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    assert_int_equal(all->n, 100000);
    assert_int_equal(tl_dataset_split(d, "train")->n, 80000);
    assert_int_equal(tl_dataset_split(d, "valid")->n, 10000);
    assert_int_equal(tl_dataset_split(d, "test")->n, 10000);
    /* SOURCE.md: positive rate 0.5537, mean rating 3.5299 */
    assert_float_equal(tl_split_label_mean(all, d, 0), 0.55375, 1e-9); /* 55,375 of 100,000 */
    assert_float_equal(tl_split_label_mean(all, d, 1), 3.5299, 5e-5);
    assert_int_equal(tl_dataset_task_type(d, 1), TL_TASK_REGRESSION);
    assert_non_null(all->group);
    assert_string_equal(tl_dataset_cat_name(d, 0), "user_id");
    tl_dataset_free(d);
    assert_int_equal(tl_data_movielens("/nonexistent", 1, &d), TL_ERR_IO);
    assert_true(contains(tl_errmsg(), "no MovieLens data in '/nonexistent'"));
}

static void test_movielens_1m(void **state)
{
    (void)state;
    struct stat sb;
    const char *dir = "../shared/data/movielens_1m";
    if (stat(dir, &sb) != 0) {
        print_message("SKIP test_movielens_1m: %s is absent (read from ../shared, never shipped)\n", dir);
        skip();
    }
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_movielens(NULL, 1, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all");
    /* SOURCE.md (the ratings prefix): 487,650 ratings, positive 0.5724, mean 3.5719 */
    assert_int_equal(all->n, 487650);
    assert_float_equal(tl_split_label_mean(all, d, 0), 0.5724, 5e-5);
    assert_float_equal(tl_split_label_mean(all, d, 1), 3.5719, 5e-5);
    tl_dataset_free(d);
}

/* The DML authors' Amazon Video Games files, read from ../shared (skipped when absent). */
static void test_amazon_video_games(void **state)
{
    (void)state;
    struct stat sb;
    const char *dir = "../shared/data/amazon_video_games_dml";
    if (stat(dir, &sb) != 0) {
        print_message("SKIP test_amazon_video_games: %s is absent (read from ../shared, never shipped)\n", dir);
        skip();
    }
    tl_dataset *d = NULL, *e = NULL, *f = NULL;
    assert_int_equal(tl_data_amazon_video_games(dir, 1, &d), TL_OK);
    const tl_split *all = tl_dataset_split(d, "all"), *tr = tl_dataset_split(d, "train");
    assert_int_equal(all->n, 92712); /* val + test: 46,356 each */
    assert_int_equal(tr->n, 74170);
    assert_int_equal(tl_dataset_split(d, "valid")->n, 9271);
    assert_int_equal(tl_dataset_split(d, "test")->n, 9271);
    assert_int_equal(tl_dataset_n_tasks(d), 2);
    assert_string_equal(tl_dataset_task_name(d, 0), "rated");
    assert_string_equal(tl_dataset_task_name(d, 1), "like");
    assert_int_equal(tl_dataset_n_cat(d), 2);
    assert_int_equal(tl_dataset_n_num(d), 0);
    assert_string_equal(tl_dataset_cat_name(d, 0), "user_id");
    assert_string_equal(tl_dataset_cat_name(d, 1), "item_id");
    assert_non_null(all->group);
    /* the seed-1 split, pinned: long runs depend on it staying the same */
    assert_int_equal(tr->row[0], 0);
    assert_int_equal(tr->row[1], 2);
    assert_int_equal(tr->row[2], 5);
    assert_int_equal(tl_dataset_split(d, "test")->row[0], 1);
    /* counted with awk over both files: rated 46,246, like 34,864 */
    assert_int_equal(count_pos(all, 2, 0), 46246);
    assert_int_equal(count_pos(all, 2, 1), 34864);
    /* nested: no row with like = 1 and rated = 0 */
    for (size_t i = 0; i < all->n; i++)
        assert_false(all->labels[2 * i + 1] == 1.0f && all->labels[2 * i] != 1.0f);
    /* every source row once: row indices through val + test are a permutation */
    uint8_t *seen = calloc(all->n, 1);
    assert_non_null(seen);
    for (size_t i = 0; i < all->n; i++) {
        assert_true(all->row[i] < all->n);
        assert_false(seen[all->row[i]]);
        seen[all->row[i]] = 1;
    }
    free(seen);
    /* the split is deterministic in the seed, and the seed matters */
    assert_int_equal(tl_data_amazon_video_games(dir, 1, &e), TL_OK);
    same_dataset(d, e);
    assert_int_equal(tl_data_amazon_video_games(dir, 2, &f), TL_OK);
    assert_int_equal(tl_dataset_split(f, "train")->n, 74170);
    assert_true(memcmp(tr->row, tl_dataset_split(f, "train")->row, sizeof *tr->row * tr->n) != 0);
    tl_dataset_free(d);
    tl_dataset_free(e);
    tl_dataset_free(f);
    assert_int_equal(tl_data_amazon_video_games("/nonexistent", 1, &d), TL_ERR_IO);
    assert_null(d);
    assert_true(contains(tl_errmsg(), "no Video_Games_val.txt in '/nonexistent'"));
}

static void test_synthetic_dataset(void **state)
{
    (void)state;
    tl_synthetic_params p;
    tl_synthetic_defaults(&p);
    p.n = 1000;
    p.dim = 8;
    tl_dataset *d = NULL;
    assert_int_equal(tl_data_synthetic(&p, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "train")->n, 800);
    assert_int_equal(tl_dataset_split(d, "valid")->n, 100);
    assert_int_equal(tl_dataset_split(d, "test")->n, 100);
    assert_int_equal(tl_dataset_n_num(d), 8);
    assert_int_equal(tl_dataset_n_cat(d), 0);
    assert_int_equal(tl_dataset_task_type(d, 0), TL_TASK_REGRESSION);
    tl_dataset_free(d);
    p.dim = 1;
    assert_int_equal(tl_data_synthetic(&p, &d), TL_ERR_ARG);
    assert_true(contains(tl_errmsg(), "dim"));
}

/* The task-pair generator as a dataset: layout, split, nesting, determinism. */
static void test_synthetic_pair_dataset(void **state)
{
    (void)state;
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    p.rows = 20000;
    p.nested = 1;
    p.rho = 0.3;
    tl_dataset *d = NULL, *e = NULL;
    assert_int_equal(tl_data_synthetic_pair(&p, &d), TL_OK);
    assert_int_equal(tl_dataset_split(d, "train")->n, 16000);
    assert_int_equal(tl_dataset_split(d, "valid")->n, 2000);
    assert_int_equal(tl_dataset_split(d, "test")->n, 2000);
    assert_int_equal(tl_dataset_n_cat(d), 5);
    assert_int_equal(tl_dataset_n_num(d), 3);
    assert_string_equal(tl_dataset_cat_name(d, 0), "user_id");
    assert_string_equal(tl_dataset_cat_name(d, 1), "item_id");
    assert_string_equal(tl_dataset_num_name(d, 1), "item_price");
    assert_string_equal(tl_dataset_task_name(d, 0), "a");
    assert_string_equal(tl_dataset_task_name(d, 1), "b");
    const tl_split *all = tl_dataset_split(d, "all");
    size_t nb = 0;
    for (size_t i = 0; i < all->n; i++) {
        assert_false(all->labels[2 * i] == 0.0f && all->labels[2 * i + 1] == 1.0f);
        nb += all->labels[2 * i + 1] == 1.0f;
    }
    assert_true(nb > 0);
    assert_int_equal(tl_data_synthetic_pair(&p, &e), TL_OK);
    same_dataset(d, e);
    tl_dataset_free(d);
    tl_dataset_free(e);
    p.rho = 2;
    assert_int_equal(tl_data_synthetic_pair(&p, &d), TL_ERR_ARG);
    assert_null(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_csv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quotes_crlf_tsv_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_census_style_sep_columns_skip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_threshold_regression_drop_keep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_quantile_log1p_id_weight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_collisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quantile_sketch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quantile_edges_sketch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vocab_from_train_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratio_split_and_shuffle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_by_files_and_like, setup, teardown),
        cmocka_unit_test_setup_teardown(test_like_without_label_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_ragged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_text_in_numeric, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_unknown_label, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_unknown_label_without_negatives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_empty_and_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_corrupt_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_unknown_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_quote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc4180_multiline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skip_initial_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_bad_skip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_float32_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bom_and_cr_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_header_and_nul, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_limits_and_label_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vocab_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_injection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_by_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_census, setup, teardown),
        cmocka_unit_test_setup_teardown(test_census_cache_and_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_census_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rechub_samples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aliccp_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aliccp_release_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alibaba_rechub_layouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aliexpress_mtreclib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_movielens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_movielens_1m, setup, teardown),
        cmocka_unit_test_setup_teardown(test_amazon_video_games, setup, teardown),
        cmocka_unit_test_setup_teardown(test_synthetic_dataset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_synthetic_pair_dataset, setup, teardown),
    };
    return cmocka_run_group_tests_name("data", tests, NULL, NULL);
}
