/* test_shards_csv.c — the streaming CSV conversion (tl_shards_convert_csv,
 * data/convert.c): byte for byte the shards of tl_data_csv_load +
 * tl_shards_convert for the same schema (splits none, modulo, files, a ratio
 * split by hash; vocabularies with min_count, hashed fields, quantile
 * buckets exact and sketched, missing flags, multi-valued and sequence
 * fields, weights and group ids, RFC 4180 records spanning lines, CRLF),
 * gzip input, bad rows named by file, line and column or skipped and
 * counted (also when only pass 2 meets them: the file changed), and an
 * interrupted conversion resumed to the same bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "data/shards.h"
#include "support.h"

static char *path_of(const char *dir, const char *name)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Row r of the test file: values chosen to exercise every encoding. */
static void csv_row(FILE *f, int r, int bad, int crlf)
{
    const char *eol = crlf && r % 3 == 0 ? "\r\n" : "\n";
    char tags[64] = "", hist[96] = "";
    int nt = r % 4;
    for (int i = 0; i < nt; i++)
        snprintf(tags + strlen(tags), sizeof tags - strlen(tags), "%st%d", i ? "|" : "", (r * 7 + i) % 9);
    int nh = r % 6;
    for (int i = 0; i < nh; i++)
        snprintf(hist + strlen(hist), sizeof hist - strlen(hist), "%sh%d", i ? ";" : "", (r + i * 13) % 40);
    /* u: a vocabulary (some values rare), c: quoted, some with a line break inside */
    fprintf(f, "u%d,", r % 17 == 0 ? 1000 + r : r % 11);
    if (r % 10 == 4) fprintf(f, "\"c, %d\nsecond line\",", r % 3);
    else fprintf(f, "\"c%d\",", r % 5);
    fprintf(f, "id%d,", r * 31 % 97);
    if (r % 9 == 0) fprintf(f, ",");
    else fprintf(f, "%g,", (double)(r % 23) * 0.5 - 3);
    fprintf(f, "%d,%g,", r % 13, (double)((r * 37) % 101));
    fprintf(f, "%s,%s,", tags, hist);
    if (bad) fprintf(f, "notanumber,");
    else fprintf(f, "%g,", 0.5 + (double)(r % 4));
    fprintf(f, "g%d,%s,%g%s", r % 29, (r % 5 < 2) ? "yes" : "no", (double)(r % 7) / 3.0, eol);
}

static const char *HEADER = "u,c,h,x,z,q,tags,hist,w,g,click,r\n";

/* Write n rows (bad rows at the given indices) to path, plain or gzip. */
static void write_csv(const char *path, int n, const int *bad, int n_bad, int gz)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fputs(HEADER, f);
    for (int r = 0; r < n; r++) {
        int b = 0;
        for (int i = 0; i < n_bad; i++) b |= bad[i] == r;
        csv_row(f, r, b, 1);
    }
    fclose(f);
    if (gz) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, text, (unsigned)len), (int)len);
        gzclose(g);
    } else {
        FILE *o = fopen(path, "wb");
        assert_non_null(o);
        assert_int_equal(fwrite(text, 1, len, o), len);
        fclose(o);
    }
    free(text);
}

static const tl_data_cat_col CATS[] = {{"u", 2, 0}, {"c", 0, 0}, {"h", 0, 16}};
static const tl_data_num_col NUMS[] = {
    {"x", TL_NUM_STANDARD, 0}, {"z", TL_NUM_LOG1P, 0}, {"q", TL_NUM_QUANTILE, 5}};
static const tl_data_bag_col BAGS[] = {{"tags", "|", TL_POOL_MEAN, 0, 0, 1, 0},
                                       {"hist", ";", TL_POOL_SUM, 3, 0, 0, 8}};
static const char *const POS[] = {"yes"};
static const tl_data_label LABELS[] = {
    {.task = "click", .column = "click", .kind = TL_LABEL_POSITIVE, .positive = POS, .n_positive = 1},
    {.task = "r", .column = "r", .kind = TL_LABEL_REGRESSION}};

static void schema(tl_data_schema *s, const char *path)
{
    tl_data_schema_init(s);
    s->path = path;
    s->cat = CATS;
    s->n_cat = 3;
    s->num = NUMS;
    s->n_num = 3;
    s->bag = BAGS;
    s->n_bag = 2;
    s->labels = LABELS;
    s->n_labels = 2;
    s->weight = "w";
    s->id = "g";
    s->cache = 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Every file of a is in b with the same bytes, and both have as many files. */
static void assert_same_dirs(const char *a, const char *b)
{
    int na = 0, nb = 0;
    DIR *d = opendir(a);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        na++;
        size_t la, lb;
        char *x = slurp(path_of(a, e->d_name), &la), *y = slurp(path_of(b, e->d_name), &lb);
        if (!y) fail_msg("%s is in %s, not in %s", e->d_name, a, b);
        if (la != lb || memcmp(x, y, la) != 0) fail_msg("%s differs between %s and %s", e->d_name, a, b);
        free(x);
        free(y);
    }
    closedir(d);
    d = opendir(b);
    while ((e = readdir(d))) nb += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(na, nb);
}

/* In memory (load + tl_shards_convert) and streamed: the same files. */
static void check_same(const tl_data_schema *s, const tl_data_schema *stream_s, size_t per, tl_convert_report *rep)
{
    char *a = tlt_tempdir_new(), *b = tlt_tempdir_new();
    tl_dataset *d;
    if (tl_data_csv_load(s, NULL, &d) != TL_OK) fail_msg("load: %s", tl_errmsg());
    assert_int_equal(tl_shards_convert(d, a, per, NULL, NULL), TL_OK);
    tl_convert_report r;
    if (tl_shards_convert_csv(stream_s, b, per, NULL, NULL, &r) != TL_OK) fail_msg("convert: %s", tl_errmsg());
    assert_same_dirs(a, b);
    const char *nm[3] = {"train", "valid", "test"};
    int has = tl_dataset_split(d, "train") != NULL;
    for (int k = 0; k < 3; k++) {
        const tl_split *sp = has ? tl_dataset_split(d, nm[k]) : k == 0 ? tl_dataset_split(d, "all") : NULL;
        assert_int_equal(r.rows[k], sp ? sp->n : 0);
    }
    assert_int_equal(r.skipped, tl_dataset_skipped(d, NULL, NULL));
    assert_true(r.rows[0] > 0);
    if (rep) *rep = r;
    tl_dataset_free(d);
    tlt_tempdir_free(a);
    tlt_tempdir_free(b);
}

static void test_same_shards_as_in_memory(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    char *p = strdup(path_of(dir, "t.csv")), *v = strdup(path_of(dir, "v.csv")), *t = strdup(path_of(dir, "te.csv"));
    write_csv(p, 700, NULL, 0, 0);
    tl_data_schema s;
    /* no split: every row is train */
    schema(&s, p);
    check_same(&s, &s, 64, NULL);
    /* modulo residues, one dropped */
    schema(&s, p);
    s.split = TL_SPLIT_MODULO;
    s.modulo = 10;
    for (int k = 0; k < 10; k++) s.modulo_to[k] = k < 6 ? TL_TO_TRAIN : k == 6 ? TL_TO_DROP : k < 9 ? TL_TO_VALID : TL_TO_TEST;
    tl_convert_report rep;
    check_same(&s, &s, 50, &rep);
    assert_int_equal(rep.n_hashed, 2); /* h and hist */
    assert_string_equal(rep.hashed[0].name, "h");
    assert_true(rep.hashed[0].values >= 1 && rep.hashed[0].values <= 97);
    /* the sketch's edges */
    s.quantile_sketch = 1;
    check_same(&s, &s, 50, NULL);
    /* separate files */
    write_csv(v, 90, NULL, 0, 0);
    write_csv(t, 45, NULL, 0, 0);
    schema(&s, p);
    s.split = TL_SPLIT_FILES;
    s.valid_path = v;
    s.test_path = t;
    check_same(&s, &s, 1000, NULL);
    /* ratios: the stream splits by hash, as split_by_hash in memory */
    schema(&s, p);
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.7;
    s.ratio[1] = 0.2;
    s.ratio[2] = 0.1;
    s.seed = 5;
    tl_data_schema h = s;
    h.split_by_hash = 1;
    check_same(&h, &s, 100, &rep);
    /* the hashed split is near the ratios, and another seed moves rows */
    assert_true(rep.rows[0] > 420 && rep.rows[0] < 560);
    assert_true(rep.rows[1] > 90 && rep.rows[1] < 190);
    assert_int_equal(rep.rows[0] + rep.rows[1] + rep.rows[2], 700);
    h.seed = s.seed = 6;
    tl_convert_report rep6;
    check_same(&h, &s, 100, &rep6);
    assert_true(rep6.rows[0] != rep.rows[0] || rep6.rows[1] != rep.rows[1]);
    free(p);
    free(v);
    free(t);
    tlt_tempdir_free(dir);
}

/* A row's split by hash depends on (seed, its row index) only: the rows
 * before it do not move it. */
static void test_hash_split_is_per_row(void **state)
{
    (void)state;
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.8;
    s.ratio[1] = 0.1;
    s.ratio[2] = 0.1;
    s.seed = 1;
    int n[3] = {0};
    for (uint64_t r = 0; r < 100000; r++) n[tl_data_hash_split(&s, r)]++;
    assert_true(abs(n[0] - 80000) < 600 && abs(n[1] - 10000) < 400 && abs(n[2] - 10000) < 400);
    int a = tl_data_hash_split(&s, 12345);
    s.seed = 2;
    int moved = 0;
    for (uint64_t r = 0; r < 1000; r++) {
        s.seed = 1;
        int x = tl_data_hash_split(&s, r);
        s.seed = 2;
        moved += x != tl_data_hash_split(&s, r);
    }
    assert_true(moved > 100);
    s.seed = 1;
    assert_int_equal(tl_data_hash_split(&s, 12345), a);
}

static void test_gzip_input(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    char *p = strdup(path_of(dir, "t.csv")), *g = strdup(path_of(dir, "t.csv.gz"));
    write_csv(p, 300, NULL, 0, 0);
    write_csv(g, 300, NULL, 0, 1);
    tl_data_schema s, sg;
    schema(&s, p);
    schema(&sg, g);
    s.name = sg.name = "t"; /* the source name is not in the shards, but keep the runs alike */
    check_same(&s, &sg, 40, NULL);
    free(p);
    free(g);
    tlt_tempdir_free(dir);
}

static void test_bad_rows(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    char *p = strdup(path_of(dir, "bad.csv"));
    int bad[2] = {123, 250};
    write_csv(p, 400, bad, 2, 0);
    tl_data_schema s;
    schema(&s, p);
    char *out = tlt_tempdir_new();
    tl_convert_report r;
    assert_int_equal(tl_shards_convert_csv(&s, out, 100, NULL, NULL, &r), TL_ERR_PARSE);
    /* data row 123 is on line 2 + 123 + the line breaks inside quotes before it (rows 4, 14, ... 114: 12) */
    const char *msg = tl_errmsg();
    char want[1200];
    snprintf(want, sizeof want, "%s:%d: column 9 ('w'): expected a weight >= 0, got \"notanumber\"", p, 2 + 123 + 12);
    if (!strstr(msg, want)) fail_msg("message: %s\nwanted: %s", msg, want);
    assert_false(tl_shards_complete(out));
    /* skipped and counted, as in memory */
    s.on_bad = TL_BAD_SKIP;
    tl_convert_report rep;
    check_same(&s, &s, 100, &rep);
    assert_int_equal(rep.skipped, 2);
    assert_int_equal(rep.n_skip_lines, 2);
    assert_int_equal(rep.skip_lines[0], 2 + 123 + 12);
    assert_int_equal(rep.rows[0], 398);
    /* a multi-valued field with an empty value: named with its line and column */
    write_csv(p, 50, NULL, 0, 0);
    FILE *f = fopen(p, "a");
    fputs("u1,c1,id1,1,2,3,t1||t2,,1,g1,yes,0\n", f);
    fclose(f);
    s.on_bad = TL_BAD_ERROR;
    char *out2 = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert_csv(&s, out2, 100, NULL, NULL, NULL), TL_ERR_PARSE);
    msg = tl_errmsg();
    if (!strstr(msg, "column 7 ('tags')")) fail_msg("message: %s", msg);
    assert_non_null(strstr(msg, "value 2 is empty"));
    snprintf(want, sizeof want, "%s:%d: column 7", p, 2 + 50 + 5);
    if (!strstr(msg, want)) fail_msg("message: %s\nwanted: %s", msg, want);
    tlt_tempdir_free(out2);
    tlt_tempdir_free(out);
    free(p);
    tlt_tempdir_free(dir);
}

static int stop_in_pass2(void *ud, int pass, uint64_t done, uint64_t total)
{
    (void)total;
    int *calls = ud;
    ++*calls;
    return pass == 2 && done >= 131072 && done < total;
}

static int count_pass(void *ud, int pass, uint64_t done, uint64_t total)
{
    int *seen = ud;
    seen[pass - 1]++;
    assert_true(done <= total || pass == 1);
    return 0;
}

/* Stopped in pass 2 (the progress callback, as Ctrl-C), then a complete
 * shard damaged and a .tmp left as kill -9 would: the next run keeps the
 * shards that verify, writes the rest, and the directory has the bytes of
 * an uninterrupted conversion. */
/* The schema of write_big's and write_rows' files: categorical a (and, with
 * n_cat 2, b hashed into 64 buckets), numeric x, binary label y. */
static void axy_schema(tl_data_schema *s, const char *path, int n_cat)
{
    static const tl_data_cat_col cats[] = {{"a", 0, 0}, {"b", 0, 64}};
    static const tl_data_num_col nums[] = {{"x", TL_NUM_STANDARD, 0}};
    static const char *const pos[] = {"1"};
    static const tl_data_label lab[] = {
        {.task = "y", .column = "y", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1}};
    tl_data_schema_init(s);
    s->path = path;
    s->cat = cats;
    s->n_cat = n_cat;
    s->num = nums;
    s->n_num = 1;
    s->labels = lab;
    s->n_labels = 1;
}

static void write_big(const char *p, int flip)
{
    FILE *f = fopen(p, "wb");
    fputs("a,b,x,y\n", f);
    for (int r = 0; r < 200000; r++)
        fprintf(f, "a%d,b%d,%d,%d\n", r % 1000, r % 7, r % 100, ((r % 7) == 3) != (r == flip));
    fclose(f);
}

static void test_interrupted_conversion_resumes(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    char *p = strdup(path_of(dir, "big.csv"));
    write_big(p, -1);
    tl_data_schema s;
    axy_schema(&s, p, 2);
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.9;
    s.ratio[1] = 0.05;
    s.ratio[2] = 0.05;
    s.seed = 7;
    char *whole = tlt_tempdir_new(), *cut = tlt_tempdir_new();
    int seen[2] = {0, 0};
    assert_int_equal(tl_shards_convert_csv(&s, whole, 10000, count_pass, seen, NULL), TL_OK);
    assert_true(seen[0] >= 3 && seen[1] >= 3); /* progress in both passes */
    int calls = 0;
    assert_int_equal(tl_shards_convert_csv(&s, cut, 10000, stop_in_pass2, &calls, NULL), TL_ERR_CANCELLED);
    assert_non_null(strstr(tl_errmsg(), "pass 2 of 2"));
    assert_non_null(strstr(tl_errmsg(), "resume"));
    assert_false(tl_shards_complete(cut));
    assert_int_equal(access(path_of(cut, "train-00010.tls"), F_OK), 0);
    assert_int_equal(access(path_of(cut, "train-00011.tls"), F_OK), -1);
    /* another seed, or other data (one label flipped mid-file: same size, first and last
     * 64 KB, rows and encodings), does not resume these shards: refused, nothing deleted */
    tl_data_schema s8 = s;
    s8.seed = 8;
    assert_int_equal(tl_shards_convert_csv(&s8, cut, 10000, NULL, NULL, NULL), TL_ERR_STATE);
    if (!strstr(tl_errmsg(), "cannot resume the conversion in") || !strstr(tl_errmsg(), ": seed 8 (the stopped conversion's 7)"))
        fail_msg("message: %s", tl_errmsg());
    tl_data_schema sp = s;
    sp.split = TL_SPLIT_NONE;
    assert_int_equal(tl_shards_convert_csv(&sp, cut, 10000, NULL, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "split none (the stopped conversion's ratio 0.9 0.05 0.05)"));
    write_big(p, 100000);
    assert_int_equal(tl_shards_convert_csv(&s, cut, 10000, NULL, NULL, NULL), TL_ERR_STATE);
    if (!strstr(tl_errmsg(), "other rows read in pass 1, i.e. other data: hash ")) fail_msg("message: %s", tl_errmsg());
    assert_int_equal(access(path_of(cut, "train-00010.tls"), F_OK), 0);
    write_big(p, -1);
    /* as kill -9 leaves it: a .tmp, and (a disk error) a damaged last shard */
    FILE *t = fopen(path_of(cut, "train-00011.tls.tmp"), "wb");
    fputs("partial", t);
    fclose(t);
    FILE *c = fopen(path_of(cut, "train-00010.tls"), "r+b");
    fseek(c, 1000, SEEK_SET);
    fputc(0x55, c);
    fclose(c);
    tl_convert_report r;
    assert_int_equal(tl_shards_convert_csv(&s, cut, 10000, NULL, NULL, &r), TL_OK);
    assert_int_equal(r.resumed[0], 100000); /* shards 0..9 kept, 10 rewritten */
    assert_same_dirs(whole, cut);
    assert_int_equal(access(path_of(cut, "convert.tls"), F_OK), -1); /* the record goes with the manifest */
    /* shards without the record (another producer, or a build before it): not resumed */
    char *bare = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert_csv(&s, bare, 10000, stop_in_pass2, &calls, NULL), TL_ERR_CANCELLED);
    assert_int_equal(unlink(path_of(bare, "convert.tls")), 0);
    assert_int_equal(tl_shards_convert_csv(&s, bare, 10000, NULL, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "without the record of the conversion"));
    tlt_tempdir_free(bare);
    /* finished: refused before reading anything */
    assert_int_equal(tl_shards_convert_csv(&s, cut, 10000, NULL, NULL, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "complete conversion"));
    tlt_tempdir_free(whole);
    tlt_tempdir_free(cut);
    free(p);
    tlt_tempdir_free(dir);
}

/* The file replaced (renamed over) while pass 1 reads it: pass 1 goes on
 * with the old file, pass 2 reads the new one. */
typedef struct {
    const char *path, *replacement;
    int done;
} swap;

static int swap_in_pass1(void *ud, int pass, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    swap *w = ud;
    if (pass == 1 && !w->done) {
        assert_int_equal(rename(w->replacement, w->path), 0);
        w->done = 1;
    }
    return 0;
}

static void write_rows(const char *path, int n, int bad_row, const char *bad_x)
{
    FILE *f = fopen(path, "wb");
    fputs("a,x,y\n", f);
    for (int r = 0; r < n; r++) {
        if (r == bad_row) fprintf(f, "a%d,%s,%d\n", r % 50, bad_x, r % 3 == 0);
        else fprintf(f, "a%d,%d,%d\n", r % 50, r % 10, r % 3 == 0);
    }
    fclose(f);
}

/* A bad row that only pass 2 meets (the file changed) is named by file,
 * line and column; skipped, the counts differ: "the file changed". */
static void test_bad_row_in_pass2(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    char *p = strdup(path_of(dir, "c.csv")), *q = strdup(path_of(dir, "c2.csv"));
    tl_data_schema s;
    axy_schema(&s, p, 1);
    write_rows(p, 150000, -1, NULL);
    write_rows(q, 150000, 140000, "oops");
    swap w = {p, q, 0};
    char *out = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert_csv(&s, out, 50000, swap_in_pass1, &w, NULL), TL_ERR_PARSE);
    assert_true(w.done);
    char want[1200];
    snprintf(want, sizeof want, "%s:%d: column 2 ('x'): expected a number, got \"oops\"", p, 140000 + 2);
    if (!strstr(tl_errmsg(), want)) fail_msg("message: %s\nwanted: %s", tl_errmsg(), want);
    assert_non_null(strstr(tl_errmsg(), "the file changed after pass 1"));
    assert_false(tl_shards_complete(out));
    /* the shards pass 2 wrote (encoded with the old file's vocabularies) are gone */
    assert_int_equal(access(path_of(out, "train-00000.tls"), F_OK), -1);
    /* skipped in pass 2 only: the rows do not add up */
    write_rows(p, 150000, -1, NULL);
    write_rows(q, 150000, 140000, "oops");
    w.done = 0;
    s.on_bad = TL_BAD_SKIP;
    char *out2 = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert_csv(&s, out2, 50000, swap_in_pass1, &w, NULL), TL_ERR_STATE);
    assert_non_null(strstr(tl_errmsg(), "changed between the two passes"));
    assert_false(tl_shards_complete(out2));
    assert_int_equal(access(path_of(out2, "train-00000.tls"), F_OK), -1);
    tlt_tempdir_free(out2);
    tlt_tempdir_free(out);
    free(p);
    free(q);
    tlt_tempdir_free(dir);
}

/* Automatic hashing (auto_hash): a field whose table grows past the
 * threshold in pass 1 (here after the first chunk of 8192 rows, its values
 * met before and after the switch) gets the shards of hash_buckets = the
 * power of two >= 4 x auto_hash from the start, in memory as streamed; a
 * field with its own min_count stays a vocabulary; below the threshold
 * nothing changes. */
static void write_auto_csv(const char *path, int n)
{
    FILE *f = fopen(path, "wb");
    fputs("a,b,k,tags,x,y\n", f);
    for (int r = 0; r < n; r++)
        fprintf(f, "a%d,b%d,k%d,t%d|t%d,%d,%d\n", r < 10000 ? r % 300 : r * 7 % 2000, r % 20, r % 200, r % 150,
                (r * 3) % 170, r % 10, r % 3 == 0);
    fclose(f);
}

static void test_auto_hash(void **state)
{
    (void)state;
    char *dir = tlt_tempdir_new();
    char *p = strdup(path_of(dir, "auto.csv"));
    write_auto_csv(p, 20000);
    tl_data_cat_col cats[] = {{"a", 0, 0}, {"b", 0, 0}, {"k", 1, 0}};
    tl_data_bag_col bags[] = {{"tags", "|", TL_POOL_SUM, 2, 0, 0, 0}};
    static const tl_data_num_col nums[] = {{"x", TL_NUM_STANDARD, 0}};
    static const char *const pos[] = {"1"};
    static const tl_data_label lab[] = {{.task = "y", .column = "y", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1}};
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = p;
    s.cat = cats;
    s.n_cat = 3;
    s.bag = bags;
    s.n_bag = 1;
    s.num = nums;
    s.n_num = 1;
    s.labels = lab;
    s.n_labels = 1;
    s.split = TL_SPLIT_MODULO;
    s.modulo = 10;
    for (int k = 0; k < 10; k++) s.modulo_to[k] = k < 8 ? TL_TO_TRAIN : k == 8 ? TL_TO_VALID : TL_TO_TEST;
    /* below the threshold: the vocabulary shards of the in-memory path */
    tl_data_schema au = s;
    au.auto_hash = 100000;
    tl_convert_report rep;
    check_same(&s, &au, 5000, &rep);
    assert_int_equal(rep.n_hashed, 0);
    /* past it: a and tags hashed into 256 buckets (4 x 50 = 200 -> 256) */
    au.auto_hash = 50;
    tl_data_cat_col hcats[3] = {{"a", 0, 256}, {"b", 0, 0}, {"k", 1, 0}};
    tl_data_bag_col hbags[1] = {{"tags", "|", TL_POOL_SUM, 2, 0, 0, 256}};
    tl_data_schema hs = s;
    hs.cat = hcats;
    hs.bag = hbags;
    check_same(&hs, &au, 5000, &rep);
    assert_int_equal(rep.n_hashed, 2);
    assert_string_equal(rep.hashed[0].name, "a");
    assert_int_equal(rep.hashed[0].buckets, 256);
    assert_int_equal(rep.hashed[0].auto_at, 300); /* the first chunk's distinct values (all splits) */
    assert_int_equal(rep.hashed[0].auto_rows, 8192);
    assert_true(rep.hashed[0].values > 0 && rep.hashed[0].collided > 0 && rep.hashed[0].collided < rep.hashed[0].values);
    assert_string_equal(rep.hashed[1].name, "tags");
    assert_int_equal(rep.hashed[1].auto_at, 170);
    /* the explicit conversion reports the same fields, not as automatic */
    char *o = tlt_tempdir_new();
    tl_convert_report er;
    assert_int_equal(tl_shards_convert_csv(&hs, o, 5000, NULL, NULL, &er), TL_OK);
    assert_int_equal(er.n_hashed, 2);
    assert_int_equal(er.hashed[0].auto_at, 0);
    assert_int_equal(er.hashed[0].values, rep.hashed[0].values);
    assert_int_equal(er.hashed[0].collided, rep.hashed[0].collided);
    /* chosen buckets */
    au.auto_hash_buckets = 1000;
    hcats[0].hash_buckets = hbags[0].hash_buckets = 1000;
    check_same(&hs, &au, 5000, &rep);
    assert_int_equal(rep.hashed[0].buckets, 1000);
    /* b (20 values) and k (min_count given: a vocabulary asked for) are not hashed, and
     * max_vocab still guards k */
    au.max_vocab = 100;
    char *o2 = tlt_tempdir_new();
    assert_int_equal(tl_shards_convert_csv(&au, o2, 5000, NULL, NULL, NULL), TL_ERR_ARG);
    if (!strstr(tl_errmsg(), "field 'k' has more than 100 distinct values")) fail_msg("message: %s", tl_errmsg());
    tlt_tempdir_free(o2);
    tlt_tempdir_free(o);
    free(p);
    tlt_tempdir_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_shards_as_in_memory),
        cmocka_unit_test(test_hash_split_is_per_row),
        cmocka_unit_test(test_gzip_input),
        cmocka_unit_test(test_bad_rows),
        cmocka_unit_test(test_interrupted_conversion_resumes),
        cmocka_unit_test(test_bad_row_in_pass2),
        cmocka_unit_test(test_auto_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
