/* fuzz_csv.c — tl_data_csv_load on arbitrary file contents.
 *
 * Input: one mode byte, then the file. The mode byte picks
 *   bits 0-1  the schema: 0 header CSV shaped like tests/data's Ali-CCP
 *             sample, 1 census rows (no header, ", " separator, column
 *             names given), 2 a tab-separated file with group id, weight,
 *             quoted fields and a skipped line, 3 "::"-separated, no header
 *   bit 2     write the file gzip-compressed (name ends in .gz)
 *   bit 3     on success, read the file again with the dataset as `like`
 *   bit 4     bad rows are skipped instead of failing the load
 *   bits 5-6  split: none, ratio 0.6/0.2/0.2, modulo 3, by files (the same
 *             file as train, valid and test)
 *   bit 7     skip spaces at the start of every field (skip_initial_space)
 * The loader reads files only, so the input goes to a scratch file.
 * Outcome stages: "input" (too short or long, or the scratch file), "load",
 * "reload" (the `like` load of bit 3). */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "data.h"
#include "fuzz.h"

static const char *const POS[] = {"1", "50000+.", "yes"};
static const char *const NEG[] = {"0", "- 50000.", "no"};
static const char *const MISSING[] = {"", "?", "NA"};
static const char *const NEVER[] = {"Never married"};

static const char *const CENSUS_COLS[] = {"age", "class_worker", "ind", "occ", "education", "wage", "hs",
                                          "marital", "major_ind", "major_occ", "race", "sex", "income"};

static void schema_for(int which, tl_data_schema *s)
{
    static const tl_data_cat_col cat0[] = {{"101", 0, 0}, {"121", 2, 0}, {"205", 0, 8}, {"301", 0, 0}};
    static const tl_data_num_col num0[] = {
        {"D508", TL_NUM_STANDARD, 0}, {"D509", TL_NUM_LOG1P, 0}, {"109_14", TL_NUM_QUANTILE, 4}, {"D853", TL_NUM_NONE, 0}};
    /* Labels with designated initializers: tl_data_label grows fields. */
    static const tl_data_label lab0[] = {
        {.task = "click", .column = "click", .kind = TL_LABEL_POSITIVE, .positive = POS, .n_positive = 1},
        {.task = "purchase", .column = "purchase", .kind = TL_LABEL_THRESHOLD, .threshold = 0.5}};
    /* marital is a feature and the column of "married" (keep) */
    static const tl_data_cat_col cat1[] = {{"class_worker", 0, 0}, {"education", 3, 0}, {"marital", 0, 0},
                                           {"sex", 0, 4}};
    static const tl_data_num_col num1[] = {{"age", TL_NUM_STANDARD, 0}, {"wage", TL_NUM_QUANTILE, 3}};
    static const tl_data_label lab1[] = {
        {.task = "income", .column = "income", .kind = TL_LABEL_POSITIVE, .positive = POS + 1, .n_positive = 1,
         .negative = NEG + 1, .n_negative = 1},
        {.task = "married", .column = "marital", .kind = TL_LABEL_POSITIVE, .positive = NEVER, .n_positive = 1,
         .unknown_negative = 1, .keep = 1}};
    static const tl_data_cat_col cat2[] = {{"user", 0, 0}, {"item", 0, 16}};
    static const tl_data_num_col num2[] = {{"x", TL_NUM_LOG1P, 0}, {"z", TL_NUM_STANDARD, 0}};
    static const tl_data_label lab2[] = {
        {.task = "ctr", .column = "y1", .kind = TL_LABEL_POSITIVE, .positive = POS, .n_positive = 3,
         .negative = NEG, .n_negative = 3},
        {.task = "value", .column = "y2", .kind = TL_LABEL_REGRESSION}};
    static const char *const cols3[] = {"u", "i", "r", "t"};
    static const tl_data_cat_col cat3[] = {{"u", 0, 0}, {"i", 0, 0}};
    static const tl_data_num_col num3[] = {{"t", TL_NUM_QUANTILE, 5}};
    static const tl_data_label lab3[] = {{.task = "like", .column = "r", .kind = TL_LABEL_THRESHOLD, .threshold = 4},
                                         {.task = "rating", .column = "r", .kind = TL_LABEL_REGRESSION}};
    switch (which) {
    case 0:
        s->cat = cat0, s->n_cat = 4, s->num = num0, s->n_num = 4, s->labels = lab0, s->n_labels = 2;
        break;
    case 1:
        s->header = 0, s->sep = ", ", s->columns = CENSUS_COLS, s->n_columns = 13;
        s->cat = cat1, s->n_cat = 4, s->num = num1, s->n_num = 2, s->labels = lab1, s->n_labels = 2;
        break;
    case 2:
        s->sep = "\t", s->skip = 1, s->id = "user", s->weight = "w", s->missing = MISSING, s->n_missing = 3;
        s->cat = cat2, s->n_cat = 2, s->num = num2, s->n_num = 2, s->labels = lab2, s->n_labels = 2;
        break;
    default:
        s->header = 0, s->sep = "::", s->columns = cols3, s->n_columns = 4, s->min_count = 2;
        s->cat = cat3, s->n_cat = 2, s->num = num3, s->n_num = 1, s->labels = lab3, s->n_labels = 2;
        break;
    }
}

static int write_gz(const char *path, const uint8_t *p, size_t n)
{
    gzFile g = gzopen(path, "wb1");
    if (!g) return -1;
    int ok = n == 0 || gzwrite(g, p, (unsigned)n) == (int)n;
    return gzclose(g) == Z_OK && ok ? 0 : -1;
}

int tl_fuzz_csv(const uint8_t *data, size_t size, tl_fuzz_outcome *out)
{
    tl_fuzz_begin(out);
    if (size < 1 || size > (1u << 20)) return tl_fuzz_fail(out, "input", TL_ERR_ARG, "size");
    const char *dir = tl_fuzz_tmpdir();
    if (!dir) return tl_fuzz_fail(out, "input", TL_ERR_IO, "no scratch directory");
    const unsigned mode = data[0];
    char path[128];
    snprintf(path, sizeof path, "%s/in.csv%s", dir, (mode & 4) ? ".gz" : "");
    int w = (mode & 4) ? write_gz(path, data + 1, size - 1) : tl_fuzz_write(path, data + 1, size - 1);
    if (w != 0) tl_fuzz_fail(out, "input", TL_ERR_IO, "cannot write the scratch file");
    if (w == 0) {
        tl_data_schema s;
        tl_data_schema_init(&s);
        s.path = path;
        schema_for((int)(mode & 3), &s);
        if (mode & 16) s.on_bad = TL_BAD_SKIP;
        if (mode & 128) s.skip_initial_space = 1;
        switch ((mode >> 5) & 3) {
        case 1:
            s.split = TL_SPLIT_RATIO, s.ratio[0] = 0.6, s.ratio[1] = 0.2, s.ratio[2] = 0.2;
            break;
        case 2:
            s.split = TL_SPLIT_MODULO, s.modulo = 3;
            s.modulo_to[0] = TL_TO_TRAIN, s.modulo_to[1] = TL_TO_VALID, s.modulo_to[2] = TL_TO_TEST;
            break;
        case 3:
            s.split = TL_SPLIT_FILES, s.valid_path = path, s.test_path = path;
            break;
        default:
            break;
        }
        tl_dataset *d = NULL;
        tl_status st = tl_data_csv_load(&s, NULL, &d);
        if (st != TL_OK) {
            tl_fuzz_fail(out, "load", st, tl_errmsg());
        } else {
            const tl_split *all = tl_dataset_split(d, "train");
            if (all && all->n) (void)tl_split_label_mean(all, d, 0);
            if (mode & 8) {
                tl_dataset *again = NULL;
                st = tl_data_csv_load(&s, d, &again);
                if (st == TL_OK) tl_dataset_free(again);
                else tl_fuzz_fail(out, "reload", st, tl_errmsg());
            }
            tl_dataset_free(d);
        }
    }
    unlink(path);
    tl_clear_error();
    return out ? out->status : 0;
}

TL_FUZZ_ENTRY(tl_fuzz_csv)
