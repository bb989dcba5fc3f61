/* test_data_bags.c — multi-valued and sequence fields in the CSV loader
 * (data_types.h tl_data_bag_col): the slot layout of tl_split.bag, the
 * shared vocabulary, min_count and hash buckets, truncation (last or first
 * values, counted), empty bags, like=, bad input naming file, line, column
 * and field, and the binary cache (its key covers every parsing option). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "support.h"

static char *tmp;
static char path_buf[4][512];

static int setup(void **state)
{
    (void)state;
    tmp = tlt_tempdir_new();
    tl_clear_error();
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tlt_tempdir_free(tmp);
    tmp = NULL;
    return 0;
}

static const char *write_file(const char *name, const char *text)
{
    static int k;
    char *p = path_buf[k++ & 3];
    snprintf(p, 512, "%s/%s", tmp, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    return p;
}

static const char *const POS[] = {"1"};
static const tl_data_label LABEL = {"y", "y", TL_LABEL_POSITIVE, POS, 1, NULL, 0, 0, 0.0, 0};

static void schema(tl_data_schema *s, const char *path, const tl_data_bag_col *bags, int n_bag)
{
    tl_data_schema_init(s);
    s->path = path;
    s->bag = bags;
    s->n_bag = n_bag;
    s->labels = &LABEL;
    s->n_labels = 1;
}

/* The ids of row i's slots of bag field b (of a dataset with one split "all"). */
static const int32_t *slots(const tl_dataset *d, size_t i, int b)
{
    const tl_split *a = tl_dataset_split(d, "all");
    size_t off = 0;
    for (int k = 0; k < b; k++) off += (size_t)tl_dataset_bag_len(d, k);
    return a->bag + i * (size_t)a->bag_slots + off;
}

static int32_t id_of(const tl_dataset *d, int b, const char *value)
{
    for (int32_t id = 0; id < tl_dataset_bag_vocab(d, b); id++) {
        const char *s = tl_dataset_bag_string(d, b, id);
        if (s && strcmp(s, value) == 0) return id;
    }
    return -2;
}

static void test_slot_layout_and_vocabulary(void **state)
{
    (void)state;
    const char *p = write_file("a.csv", "tags,hist,y\n"
                                        "x|y,1;2;3,1\n"
                                        "y,3;4,0\n"
                                        ",5,1\n"
                                        "z|x|y,1;2;3;4;5;6,0\n");
    tl_data_bag_col b[2] = {{"tags", "|", TL_POOL_MEAN, 0, 0, 0, 0}, {"hist", ";", TL_POOL_SUM, 3, 0, 0, 0}};
    tl_data_schema s;
    schema(&s, p, b, 2);
    tl_dataset *d;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_n_bag(d), 2);
    assert_int_equal(tl_dataset_n_cat(d), 0);
    /* tags: the longest row (3 values); x, y, z after ids 0 (unseen) and 1 */
    assert_int_equal(tl_dataset_bag_len(d, 0), 3);
    assert_int_equal(tl_dataset_bag_vocab(d, 0), 5);
    assert_int_equal(tl_dataset_bag_pool(d, 0), TL_POOL_MEAN);
    assert_string_equal(tl_dataset_bag_kind(d, 0), "vocab");
    const tl_split *all = tl_dataset_split(d, "all");
    assert_int_equal(all->bag_slots, 3 + 3);
    int32_t x = id_of(d, 0, "x"), y = id_of(d, 0, "y"), z = id_of(d, 0, "z");
    assert_true(x >= 2 && y >= 2 && z >= 2 && x != y && y != z);
    const int32_t want0[3] = {x, y, -1}, want2[3] = {-1, -1, -1}, want3[3] = {z, x, y};
    assert_memory_equal(slots(d, 0, 0), want0, sizeof want0);
    assert_memory_equal(slots(d, 2, 0), want2, sizeof want2); /* empty field: an empty bag */
    assert_memory_equal(slots(d, 3, 0), want3, sizeof want3);
    assert_int_equal(tl_dataset_bag_truncated(d, 0), 0);
    /* hist: max_len 3, the last 3 values kept; one row truncated */
    assert_int_equal(tl_dataset_bag_len(d, 1), 3);
    assert_int_equal(tl_dataset_bag_truncated(d, 1), 1);
    const int32_t *h3 = slots(d, 3, 1);
    assert_int_equal(h3[0], id_of(d, 1, "4"));
    assert_int_equal(h3[1], id_of(d, 1, "5"));
    assert_int_equal(h3[2], id_of(d, 1, "6"));
    assert_int_equal(slots(d, 2, 1)[0], id_of(d, 1, "5"));
    assert_int_equal(slots(d, 2, 1)[1], -1);
    tl_dataset_free(d);

    /* keep_first: the first max_len values */
    b[1].keep_first = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    h3 = slots(d, 3, 1);
    assert_int_equal(h3[0], id_of(d, 1, "1"));
    assert_int_equal(h3[2], id_of(d, 1, "3"));
    assert_int_equal(tl_dataset_bag_truncated(d, 1), 1);
    tl_dataset_free(d);
}

static void test_min_count_hash_and_like(void **state)
{
    (void)state;
    const char *p = write_file("b.csv", "tags,y\n"
                                        "a|b,1\n"
                                        "a|c,0\n"
                                        "a,1\n");
    tl_data_bag_col b = {"tags", "|", TL_POOL_SUM, 0, 0, 2, 0};
    tl_data_schema s;
    schema(&s, p, &b, 1);
    tl_dataset *d;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    /* min_count 2 over every value of the field: only a (3 times) */
    assert_int_equal(tl_dataset_bag_vocab(d, 0), 3);
    assert_int_equal(slots(d, 0, 0)[0], id_of(d, 0, "a"));
    assert_int_equal(slots(d, 0, 0)[1], 0); /* b: rare, the unseen id */

    /* like=: d's vocabulary and slots; a longer row is cut to d's 2 slots */
    const char *q = write_file("c.csv", "tags,y\n"
                                        "c|a|a,1\n");
    tl_data_schema s2;
    schema(&s2, q, &b, 1);
    tl_dataset *e;
    assert_int_equal(tl_data_csv_load(&s2, d, &e), TL_OK);
    assert_int_equal(tl_dataset_bag_len(e, 0), 2);
    assert_int_equal(tl_dataset_bag_truncated(e, 0), 1);
    assert_int_equal(slots(e, 0, 0)[0], id_of(d, 0, "a"));
    assert_int_equal(slots(e, 0, 0)[1], id_of(d, 0, "a"));
    tl_dataset_free(e);
    tl_dataset_free(d);

    /* hash buckets: ids 0 .. buckets-1, the field's values hashed alike */
    b.min_count = 0;
    b.hash_buckets = 7;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_string_equal(tl_dataset_bag_kind(d, 0), "hash");
    assert_int_equal(tl_dataset_bag_vocab(d, 0), 8);
    assert_int_equal(slots(d, 0, 0)[0], slots(d, 1, 0)[0]); /* a in rows 1 and 2 */
    for (size_t i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) assert_true(slots(d, i, 0)[j] >= -1 && slots(d, i, 0)[j] < 7);
    tl_dataset_free(d);
}

static void test_bad_input(void **state)
{
    (void)state;
    const char *p = write_file("bad.csv", "k,tags,y\n"
                                          "1,a|b,1\n"
                                          "2,a||b,0\n");
    tl_data_bag_col b = {"tags", "|", TL_POOL_SUM, 0, 0, 0, 0};
    tl_data_schema s;
    schema(&s, p, &b, 1);
    tl_dataset *d;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_PARSE);
    assert_null(d);
    assert_non_null(strstr(tl_errmsg(), "bad.csv:3"));
    assert_non_null(strstr(tl_errmsg(), "column 2 ('tags')"));
    assert_non_null(strstr(tl_errmsg(), "multi-valued field 'tags': value 2 is empty"));
    /* a separator at the end is an empty last value; on_bad = skip skips the row */
    p = write_file("bad2.csv", "tags,y\n"
                               "a|,1\n"
                               "a,1\n"
                               "b,0\n");
    schema(&s, p, &b, 1);
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_PARSE);
    assert_non_null(strstr(tl_errmsg(), "bad2.csv:2: column 1 ('tags'): multi-valued field 'tags': value 2 is empty"));
    s.on_bad = TL_BAD_SKIP;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_OK);
    assert_int_equal(tl_dataset_skipped(d, NULL, NULL), 1);
    assert_int_equal(tl_dataset_split(d, "all")->n, 2);
    assert_int_equal(slots(d, 0, 0)[0], id_of(d, 0, "a"));
    tl_dataset_free(d);
    /* the column must exist; a field cannot be multi- and single-valued; max_len in range */
    tl_data_bag_col nb = {"nope", "|", TL_POOL_SUM, 0, 0, 0, 0};
    schema(&s, p, &nb, 1);
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "multi-valued column 'nope', which does not exist"));
    tl_data_cat_col c = {"tags", 0, 0};
    schema(&s, p, &b, 1);
    s.cat = &c;
    s.n_cat = 1;
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "'tags' is both multi-valued and single-valued"));
    tl_data_bag_col lb = {"tags", "|", TL_POOL_SUM, TL_DATA_MAX_BAG_LEN + 1, 0, 0, 0};
    schema(&s, p, &lb, 1);
    assert_int_equal(tl_data_csv_load(&s, NULL, &d), TL_ERR_ARG);
    assert_non_null(strstr(tl_errmsg(), "max_len must be in 1 .. 256"));
}

/* One value of categorical field 0 in a load with options set by `opt`. */
static const char *first_value(const char *p, int opt, tl_dataset **d)
{
    static const tl_data_cat_col cat = {"a", 0, 0};
    static const tl_data_bag_col bag = {"tags", "|", TL_POOL_SUM, 0, 0, 0, 0};
    static const tl_data_bag_col bag_semi = {"tags", ";", TL_POOL_SUM, 0, 0, 0, 0};
    tl_data_schema s;
    schema(&s, p, opt == 3 ? &bag_semi : &bag, 1);
    s.cat = &cat;
    s.n_cat = 1;
    s.cache = 1;
    s.skip_initial_space = opt == 1;
    s.max_rows = opt == 2 ? 1 : 0;
    assert_int_equal(tl_data_csv_load(&s, NULL, d), TL_OK);
    return tl_dataset_vocab_string(*d, 0, 2);
}

/* The cache key covers skip_initial_space, max_rows and the bag fields:
 * a load with another option reads the file again instead of the cache. */
static void test_cache_key_covers_every_option(void **state)
{
    (void)state;
    const char *p = write_file("k.csv", "a,tags,y\n"
                                        " v,x|y;z,1\n"
                                        "w,x,0\n");
    char path[512];
    snprintf(path, sizeof path, "%s", p);
    tl_dataset *d;
    assert_string_equal(first_value(path, 0, &d), " v");
    assert_int_equal(tl_dataset_from_cache(d), 0);
    assert_int_equal(tl_dataset_bag_vocab(d, 0), 2 + 2); /* x, y;z */
    tl_dataset_free(d);
    assert_string_equal(first_value(path, 0, &d), " v"); /* the same options: from the cache, bags too */
    assert_int_equal(tl_dataset_from_cache(d), 1);
    assert_int_equal(tl_dataset_bag_vocab(d, 0), 2 + 2);
    assert_int_equal(tl_dataset_bag_len(d, 0), 2);
    assert_int_equal(slots(d, 0, 0)[1], id_of(d, 0, "y;z"));
    tl_dataset_free(d);
    assert_string_equal(first_value(path, 1, &d), "v"); /* skip_initial_space */
    assert_int_equal(tl_dataset_from_cache(d), 0);
    tl_dataset_free(d);
    assert_non_null(first_value(path, 2, &d)); /* max_rows = 1 */
    assert_int_equal(tl_dataset_split(d, "all")->n, 1);
    tl_dataset_free(d);
    assert_non_null(first_value(path, 3, &d)); /* another separator inside the bag */
    assert_int_equal(tl_dataset_bag_vocab(d, 0), 2 + 3); /* x|y, z, x */
    assert_int_equal(tl_dataset_from_cache(d), 0);
    assert_int_equal(id_of(d, 0, "y;z"), -2);
    tl_dataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_slot_layout_and_vocabulary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_count_hash_and_like, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_key_covers_every_option, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
