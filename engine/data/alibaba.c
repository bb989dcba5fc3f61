/* data/alibaba.c — Ali-CCP (the release's sample_skeleton + common_features
 * files joined on common_feature_index, or torch-rechub's preprocessed CSV)
 * and AliExpress (MTReclib's / torch-rechub's CSV), read into raw rows and
 * finished like a CSV load.
 */
#include "alibaba.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data_internal.h"
#include "schema.h"

enum { CCP_NF = 23, CCP_ND = 8, AE_NC = 16, AE_NN = 63 };
static const char *const CCP_FIELDS[CCP_NF] = {"101", "121", "122", "124", "125", "126", "127", "128",
                                              "129", "205", "206", "207", "210", "216", "508", "509",
                                              "702", "853", "301", "109_14", "110_14", "127_14", "150_14"};
static const char *const CCP_DENSE[CCP_ND] = {"109_14", "110_14", "127_14", "150_14", "508", "509", "702", "853"};
static const char *const CCP_DNAMES[CCP_ND] = {"D109_14", "D110_14", "D127_14", "D150_14",
                                               "D508",    "D509",    "D702",    "D853"};
static const char *const POS[] = {"1", "1.0"}, *const NEG[] = {"0", "0.0"};

void tl_alibaba_defaults(tl_alibaba_params *p)
{
    memset(p, 0, sizeof *p);
    p->valid = 0.5;
    p->seed = 1;
}

/* The first of names (each tried as given and with .gz) in dir, or NULL
 * (*st = TL_ERR_NOMEM when memory ran out). The caller frees it. */
static char *find_file(const char *dir, const char *const *names, int n, tl_status *st)
{
    for (int i = 0; i < n; i++)
        for (int gz = 0; gz < 2; gz++) {
            char name[96];
            snprintf(name, sizeof name, "%s%s", names[i], gz ? ".gz" : "");
            char *p = tl_data_path_join(dir, name);
            if (!p) {
                *st = TL_ERR_NOMEM;
                return NULL;
            }
            if (tl_data_file_exists(p)) return p;
            tl_free(p);
        }
    return NULL;
}

/* The schema and plan both datasets are finished with. */
typedef struct {
    tl_data_cat_col cat[AE_NC + CCP_NF];
    tl_data_num_col num[AE_NN];
    tl_data_label lab[2];
    char names[AE_NC + AE_NN][24];
    tl_data_schema s;
    plan p;
} ali_schema;

static tl_status make_schema(ali_schema *a, const tl_alibaba_params *par, int aliexpress, const char *conv_col,
                             const char *fn)
{
    memset(a, 0, sizeof *a);
    tl_data_schema *s = &a->s;
    tl_data_schema_init(s);
    int nc = aliexpress ? AE_NC : CCP_NF, nn = aliexpress ? AE_NN : CCP_ND;
    for (int k = 0; k < nc; k++) {
        const char *name = CCP_FIELDS[k % CCP_NF];
        if (aliexpress) {
            snprintf(a->names[k], sizeof a->names[k], "categorical_%d", k + 1);
            name = a->names[k];
        }
        a->cat[k] = (tl_data_cat_col){name, 0, par->hash_buckets};
    }
    for (int j = 0; j < nn; j++) {
        const char *name = CCP_DNAMES[j % CCP_ND];
        if (aliexpress) {
            snprintf(a->names[AE_NC + j], sizeof a->names[0], "numerical_%d", j + 1);
            name = a->names[AE_NC + j];
        }
        a->num[j] = (tl_data_num_col){name, TL_NUM_STANDARD, 0};
    }
    a->lab[0] = (tl_data_label){.task = "click", .column = "click", .kind = TL_LABEL_POSITIVE, .positive = POS,
                                .n_positive = 2, .negative = NEG, .n_negative = 2};
    a->lab[1] = (tl_data_label){.task = "conversion", .column = conv_col, .kind = TL_LABEL_POSITIVE,
                                .positive = POS, .n_positive = 2, .negative = NEG, .n_negative = 2};
    s->path = par->dir;
    s->cat = a->cat;
    s->n_cat = nc;
    s->num = a->num;
    s->n_num = nn;
    s->labels = a->lab;
    s->n_labels = 2;
    s->split = TL_SPLIT_FILES;
    s->max_rows = par->max_rows;
    return tl_data_plan_make(s, fn, &a->p);
}

/* Rows first .. rs->n (the test file's) go to valid with probability
 * `valid`, else to test, drawn in file order from `seed`. */
static void split_test(rawset *rs, size_t first, double valid, uint64_t seed)
{
    tl_rng g;
    tl_rng_seed(&g, seed);
    for (size_t r = first; r < rs->n; r++)
        if (rs->tag[r] >= 0) rs->tag[r] = tl_rng_uniform_double(&g) < valid ? TL_TO_VALID : TL_TO_TEST;
}

/* Leave out rows first .. rs->n with conversion = 1 and click = 0 (labels
 * 0 and 1), counted as skipped at line row + header_lines + 1. */
static void drop_unclicked_conversions(rawset *rs, size_t first, int header_lines)
{
    for (size_t r = first; r < rs->n; r++)
        if (rs->tag[r] >= 0 && rs->lab[2 * r] == 0.0f && rs->lab[2 * r + 1] == 1.0f) {
            rs->tag[r] = TL_TO_DROP;
            tl_rawset_note_skip(rs, (uint64_t)rs->row[r] + (uint64_t)header_lines + 1);
        }
}

static tl_status finish(rawset *rs, ali_schema *a, const char *source, tl_dataset **out)
{
    finish_args fa = {&a->p, &a->s, NULL, source};
    return tl_data_finish(rs, &fa, out);
}

/* ---- Ali-CCP, the release ------------------------------------------------- */

static int field_index(const char *const *names, int n, const char *s, size_t len)
{
    for (int k = 0; k < n; k++)
        if (strlen(names[k]) == len && memcmp(names[k], s, len) == 0) return k;
    return -1;
}

/* The feature list text[0..n): entries field \x02 id \x03 value joined by
 * \x01. The id of each of the 23 fields goes to cat[k] (interned in
 * rs->tab[k]; the last wins when a field repeats), the value of each dense
 * field to num[j]; other fields are ignored. */
static tl_status parse_features(rawset *rs, const char *text, size_t n, int32_t *cat, float *num, const char *path,
                                uint64_t line)
{
    const char *p = text, *end = text + n;
    for (int entry = 1; p < end; entry++) {
        const char *e = memchr(p, '\x01', (size_t)(end - p));
        if (!e) e = end;
        const char *a = memchr(p, '\x02', (size_t)(e - p));
        const char *b = a ? memchr(a + 1, '\x03', (size_t)(e - a - 1)) : NULL;
        if (!b)
            return tl_fail(TL_ERR_PARSE,
                           "%s:%llu: feature %d: expected field_id \\x02 feature_id \\x03 value (entries separated "
                           "by \\x01), got %zu bytes without %s",
                           path, (unsigned long long)line, entry, (size_t)(e - p), a ? "\\x03" : "\\x02");
        size_t flen = (size_t)(a - p);
        int k = field_index(CCP_FIELDS, CCP_NF, p, flen);
        if (k >= 0) {
            if (b == a + 1) {
                cat[k] = -1;
            } else {
                tl_status st = tl_strtab_intern(&rs->tab[k], a + 1, (size_t)(b - a - 1), &cat[k]);
                if (st) return st;
            }
        }
        int j = field_index(CCP_DENSE, CCP_ND, p, flen);
        if (j >= 0) {
            double v;
            if (!tl_data_parse_number(b + 1, (size_t)(e - b - 1), &v) || fabs(v) > (double)FLT_MAX)
                return tl_fail(TL_ERR_PARSE, "%s:%llu: feature %d (field %s): expected a float32 value after \\x03, "
                               "got \"%.*s\"", path, (unsigned long long)line, entry, CCP_DENSE[j],
                               (int)(e - b - 1 > 40 ? 40 : e - b - 1), b + 1);
            num[j] = (float)v;
        }
        p = e + 1;
    }
    return TL_OK;
}

static int parse_flag(const field *f, float *v)
{
    if (f->n != 1 || (f->p[0] != '0' && f->p[0] != '1')) return 0;
    *v = (float)(f->p[0] - '0');
    return 1;
}

/* The samples of one file (rows first ..) and the common_feature_index of
 * each (interned in cidx; rc[r - first] for row r). */
typedef struct {
    strtab cidx;
    size_t first;
    uint32_t *rc;
    size_t rc_cap;
} commons;

static tl_status read_skeleton(const char *path, size_t max_rows, rawset *rs, commons *cm)
{
    lreader lr;
    tl_status st = tl_lreader_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got;
    field f[7];
    uint64_t data_row = 0;
    while (!(st = tl_lreader_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        if (max_rows && data_row >= max_rows) break;
        if ((++data_row & (CANCEL_EVERY - 1)) == 0 && tl_cancelled()) {
            st = tl_fail(TL_ERR_CANCELLED, "%s: loading cancelled at line %llu", path, (unsigned long long)lr.line);
            break;
        }
        int nf = tl_data_split_fields(line, len, ",", 1, 0, f, 7);
        if (nf != 6) {
            st = tl_fail(TL_ERR_PARSE,
                         "%s:%llu: expected 6 fields (sample_id,click,conversion,common_feature_index,feature_num,"
                         "features), got %d",
                         path, (unsigned long long)lr.line, nf);
            break;
        }
        float y[2];
        int bad = !parse_flag(&f[1], &y[0]) ? 1 : !parse_flag(&f[2], &y[1]) ? 2 : 0;
        if (bad) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column %d (%s): expected 0 or 1, got \"%.*s\"", path,
                         (unsigned long long)lr.line, bad + 1, bad == 1 ? "click" : "conversion",
                         (int)(f[bad].n > 40 ? 40 : f[bad].n), f[bad].p);
            break;
        }
        if (y[0] == 0.0f && y[1] == 1.0f) { /* a conversion without a click: left out (ESMM, AITM) */
            tl_rawset_note_skip(rs, lr.line);
            continue;
        }
        if ((st = tl_rawset_reserve(rs))) break;
        const size_t r = rs->n;
        if (r - cm->first == cm->rc_cap) {
            size_t cap = cm->rc_cap ? cm->rc_cap * 2 : 4096;
            uint32_t *nr = tl_realloc(cm->rc, cap * sizeof *nr, "common feature indices");
            if (!nr) {
                st = TL_ERR_NOMEM;
                break;
            }
            cm->rc = nr;
            cm->rc_cap = cap;
        }
        int32_t *cat = &rs->cat[r * CCP_NF];
        float *num = &rs->num[r * CCP_ND];
        for (int k = 0; k < CCP_NF; k++) cat[k] = -1;
        for (int j = 0; j < CCP_ND; j++) num[j] = NAN;
        if ((st = parse_features(rs, f[5].p, f[5].n, cat, num, path, lr.line))) break;
        int32_t ci;
        if ((st = tl_strtab_intern(&cm->cidx, f[3].p, f[3].n, &ci))) break;
        cm->rc[r - cm->first] = (uint32_t)ci;
        rs->lab[2 * r] = y[0];
        rs->lab[2 * r + 1] = y[1];
        rs->npos[0] += y[0] == 1.0f;
        rs->npos[1] += y[1] == 1.0f;
        rs->row[r] = (uint32_t)(data_row - 1);
        rs->tag[r] = TL_TO_TRAIN;
        rs->n++;
    }
    if (!st && data_row == 0) st = tl_fail(TL_ERR_PARSE, "%s: empty file (no samples)", path);
    tl_lreader_close(&lr);
    return st;
}

/* The common features of the indices in cm->cidx from path, then joined
 * into rows first .. rs->n (a common value overrides the sample's). */
static tl_status join_common(const char *path, const char *skel_path, rawset *rs, const commons *cm)
{
    const uint32_t nidx = cm->cidx.n;
    int32_t *ccat = tl_malloc(sizeof *ccat * ((size_t)nidx * CCP_NF + 1), "common features");
    float *cnum = tl_malloc(sizeof *cnum * ((size_t)nidx * CCP_ND + 1), "common features");
    uint8_t *seen = tl_calloc((size_t)nidx + 1, 1, "common features");
    lreader lr;
    tl_status st = !ccat || !cnum || !seen ? TL_ERR_NOMEM : tl_lreader_open(&lr, path);
    if (st) goto done;
    char *line;
    size_t len;
    int got;
    field f[4];
    uint64_t n_lines = 0;
    while (!(st = tl_lreader_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        if ((++n_lines & (CANCEL_EVERY - 1)) == 0 && tl_cancelled()) {
            st = tl_fail(TL_ERR_CANCELLED, "%s: loading cancelled at line %llu", path, (unsigned long long)lr.line);
            break;
        }
        /* the index is the text before the first comma: only lines in use are split */
        const char *comma = memchr(line, ',', len);
        size_t ilen = comma ? (size_t)(comma - line) : len;
        int64_t e = st_find(&cm->cidx, line, ilen, (uint32_t)hash_bytes(line, ilen, 0));
        if (e < 0) continue;
        if (tl_data_split_fields(line, len, ",", 1, 0, f, 4) != 3) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected 3 fields (common_feature_index,feature_num,features)", path,
                         (unsigned long long)lr.line);
            break;
        }
        int32_t *cat = &ccat[(size_t)e * CCP_NF];
        float *num = &cnum[(size_t)e * CCP_ND];
        for (int k = 0; k < CCP_NF; k++) cat[k] = -1;
        for (int j = 0; j < CCP_ND; j++) num[j] = NAN;
        if ((st = parse_features(rs, f[2].p, f[2].n, cat, num, path, lr.line))) break;
        seen[e] = 1;
    }
    tl_lreader_close(&lr);
    for (size_t r = cm->first; r < rs->n && !st; r++) {
        uint32_t e = cm->rc[r - cm->first];
        if (!seen[e]) {
            st = tl_fail(TL_ERR_PARSE, "%s: data row %llu: its common_feature_index '%s' is not in %s", skel_path,
                         (unsigned long long)rs->row[r] + 1, st_str(&cm->cidx, e), path);
            break;
        }
        for (int k = 0; k < CCP_NF; k++)
            if (ccat[(size_t)e * CCP_NF + (size_t)k] >= 0) rs->cat[r * CCP_NF + (size_t)k] = ccat[(size_t)e * CCP_NF + (size_t)k];
        for (int j = 0; j < CCP_ND; j++)
            if (!isnan(cnum[(size_t)e * CCP_ND + (size_t)j])) rs->num[r * CCP_ND + (size_t)j] = cnum[(size_t)e * CCP_ND + (size_t)j];
    }
done:
    tl_free(ccat);
    tl_free(cnum);
    tl_free(seen);
    return st;
}

/* One of the release's two parts (train or test) into rs. */
static tl_status read_release_part(const char *skel, const char *common, size_t max_rows, rawset *rs)
{
    commons cm;
    memset(&cm, 0, sizeof cm);
    cm.first = rs->n;
    tl_status st = tl_strtab_init(&cm.cidx);
    if (!st) st = read_skeleton(skel, max_rows, rs, &cm);
    if (!st) st = join_common(common, skel, rs, &cm);
    tl_strtab_free(&cm.cidx);
    tl_free(cm.rc);
    return st;
}

static tl_status aliccp_release(const tl_alibaba_params *par, char *const files[4], tl_dataset **out)
{
    static const char *fn = "aliccp";
    ali_schema a;
    rawset rs;
    memset(&rs, 0, sizeof rs);
    tl_status st = make_schema(&a, par, 0, "conversion", fn);
    if (!st) st = tl_rawset_init(&rs, CCP_NF, CCP_ND, 2, 0, 0);
    if (!st) st = read_release_part(files[0], files[1], par->max_rows, &rs);
    size_t first = rs.n;
    if (!st) st = read_release_part(files[2], files[3], par->max_rows, &rs);
    if (!st) {
        split_test(&rs, first, par->valid, par->seed);
        st = finish(&rs, &a, "ali_ccp", out);
    }
    tl_rawset_free(&rs);
    tl_data_plan_free(&a.p);
    return st;
}

/* ---- the CSV layouts (torch-rechub's Ali-CCP, AliExpress) ----------------- */

/* Read train (and valid, when given) and test with the schema; the test
 * file is split into valid and test when there is no valid file. */
static tl_status read_csv_layout(const tl_alibaba_params *par, ali_schema *a, const char *train, const char *valid,
                                 const char *test, const char *source, tl_dataset **out)
{
    rawset rs;
    tl_status st = tl_rawset_init(&rs, a->p.n_cat, a->p.n_num, 2, 0, 0);
    if (!st) st = tl_data_read_csv(&a->s, &a->p, train, TL_TO_TRAIN, &rs);
    if (!st && valid) st = tl_data_read_csv(&a->s, &a->p, valid, TL_TO_VALID, &rs);
    size_t first = rs.n;
    if (!st) st = tl_data_read_csv(&a->s, &a->p, test, TL_TO_TEST, &rs);
    if (!st) {
        if (!valid) split_test(&rs, first, par->valid, par->seed);
        drop_unclicked_conversions(&rs, 0, 1);
        st = finish(&rs, a, source, out);
    }
    tl_rawset_free(&rs);
    return st;
}

static tl_status check_params(const tl_alibaba_params *p, tl_dataset **out, const char *fn)
{
    if (!out) return tl_fail(TL_ERR_ARG, "%s: NULL output", fn);
    *out = NULL;
    if (!p || !p->dir) return tl_fail(TL_ERR_ARG, "%s: no directory", fn);
    if (!(p->valid >= 0 && p->valid <= 1)) return tl_fail(TL_ERR_ARG, "%s: valid must be in [0, 1], got %g", fn, p->valid);
    if (p->hash_buckets < 0) return tl_fail(TL_ERR_ARG, "%s: hash buckets must be >= 0", fn);
    return TL_OK;
}

tl_status tl_data_aliccp(const tl_alibaba_params *par, tl_dataset **out)
{
    static const char *fn = "aliccp";
    tl_status st = check_params(par, out, fn);
    if (st) return st;
    static const char *const release[4] = {"sample_skeleton_train.csv", "common_features_train.csv",
                                           "sample_skeleton_test.csv", "common_features_test.csv"};
    static const char *const train[2] = {"ali_ccp_train.csv", "ali_ccp_train_sample.csv"};
    static const char *const val[2] = {"ali_ccp_val.csv", "ali_ccp_val_sample.csv"};
    static const char *const test[2] = {"ali_ccp_test.csv", "ali_ccp_test_sample.csv"};
    char *files[4] = {NULL, NULL, NULL, NULL};
    int nfound = 0;
    for (int i = 0; i < 4; i++) nfound += (files[i] = find_file(par->dir, &release[i], 1, &st)) != NULL;
    if (st) goto done;
    if (nfound == 4) {
        st = aliccp_release(par, files, out);
        goto done;
    }
    if (nfound > 0) {
        st = tl_fail(TL_ERR_IO, "%s: '%s' has only part of the release: %s%s%s%s missing", fn, par->dir,
                     files[0] ? "" : "sample_skeleton_train.csv ", files[1] ? "" : "common_features_train.csv ",
                     files[2] ? "" : "sample_skeleton_test.csv ", files[3] ? "" : "common_features_test.csv ");
        goto done;
    }
    files[0] = find_file(par->dir, train, 2, &st);
    files[1] = st ? NULL : find_file(par->dir, val, 2, &st);
    files[2] = st ? NULL : find_file(par->dir, test, 2, &st);
    if (st) goto done;
    if (!files[0] || !files[2]) {
        st = tl_fail(TL_ERR_IO,
                     "%s: no Ali-CCP in '%s' (expected the release's sample_skeleton_{train,test}.csv and "
                     "common_features_{train,test}.csv, or torch-rechub's ali_ccp_{train,val,test}.csv)",
                     fn, par->dir);
        goto done;
    }
    ali_schema a;
    if (!(st = make_schema(&a, par, 0, "purchase", fn)))
        st = read_csv_layout(par, &a, files[0], files[1], files[2], "ali_ccp", out);
    tl_data_plan_free(&a.p);
done:
    for (int i = 0; i < 4; i++) tl_free(files[i]);
    return st;
}

tl_status tl_data_aliexpress(const tl_alibaba_params *par, tl_dataset **out)
{
    static const char *fn = "aliexpress";
    tl_status st = check_params(par, out, fn);
    if (st) return st;
    static const char *const train[3] = {"train.csv", "aliexpress_train.csv", "aliexpress_train_sample.csv"};
    static const char *const test[3] = {"test.csv", "aliexpress_test.csv", "aliexpress_test_sample.csv"};
    char *tr = find_file(par->dir, train, 3, &st);
    char *te = st ? NULL : find_file(par->dir, test, 3, &st);
    if (!st && (!tr || !te))
        st = tl_fail(TL_ERR_IO,
                     "%s: no AliExpress in '%s' (expected train.csv and test.csv, as in MTReclib's AliExpress_<country>/, "
                     "or torch-rechub's aliexpress_{train,test}.csv)",
                     fn, par->dir);
    if (!st) {
        ali_schema a;
        if (!(st = make_schema(&a, par, 1, "conversion", fn)))
            st = read_csv_layout(par, &a, tr, NULL, te, "aliexpress", out);
        tl_data_plan_free(&a.p);
    }
    tl_free(tr);
    tl_free(te);
    return st;
}
