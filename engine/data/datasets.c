/* data/datasets.c — the built-in real datasets: Census-Income (KDD) through
 * the CSV loader, Amazon Video Games (the DML authors' files) and MovieLens
 * (1M or 100K) through readers of their own, all finished like a CSV load.
 */
#include "datasets.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "csv.h"
#include "data_internal.h"
#include "schema.h"

/* ---- census --------------------------------------------------------------- */

static const char *const CENSUS_COLS[42] = {
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour", "hs_college",
    "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses", "stock_dividends", "tax_filer_stat",
    "region_prev_res", "state_prev_res", "det_hh_fam_stat", "det_hh_summ", "instance_weight", "mig_chg_msa",
    "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father",
    "country_mother", "country_self", "citizenship", "own_or_self", "vet_question", "vet_benefits",
    "weeks_worked", "year", "income_50k"};
static const int CENSUS_NUMERIC[] = {0, 5, 16, 17, 18, 30, 39};

char *tl_data_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = tl_malloc(n, "path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int tl_data_file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

tl_status tl_data_census_ex(const char *dir, int with_education, int cache, tl_dataset **out)
{
    if (!out) return tl_fail(TL_ERR_ARG, "census: NULL output");
    *out = NULL;
    char *path = NULL;
    if (!dir) dir = "data/census_income_kdd"; /* the REPL finds the real place (repl/l_data.c) */
    static const char *const files[] = {"census-income.test.gz", "census-income.test"};
    for (int i = 0; i < 2 && !path; i++) {
        char *p = tl_data_path_join(dir, files[i]);
        if (!p) return TL_ERR_NOMEM;
        if (tl_data_file_exists(p)) path = p;
        else tl_free(p);
    }
    if (!path) {
        tl_status st = tl_fail(TL_ERR_IO, "census: no census-income.test.gz in '%s' (pass the directory holding it)",
                               dir);
        return st;
    }
    tl_data_cat_col cat[42];
    tl_data_num_col num[8];
    int nc = 0, nn = 0;
    for (int c = 0; c < 41; c++) {
        int isnum = 0;
        for (size_t k = 0; k < sizeof CENSUS_NUMERIC / sizeof *CENSUS_NUMERIC; k++) isnum |= CENSUS_NUMERIC[k] == c;
        if (c == 24) continue; /* instance_weight: UCI says ignore it */
        if (c == 7 || (c == 4 && with_education)) continue; /* label columns are not features */
        if (isnum) num[nn++] = (tl_data_num_col){CENSUS_COLS[c], TL_NUM_STANDARD, 0};
        else cat[nc++] = (tl_data_cat_col){CENSUS_COLS[c], 0, 0};
    }
    static const char *const inc_pos[] = {"50000+."}, *const inc_neg[] = {"- 50000."};
    static const char *const nm_pos[] = {"Never married"};
    static const char *const edu_pos[] = {"Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)",
                                          "Prof school degree (MD DDS DVM LLB JD)", "Doctorate degree(PhD EdD)"};
    tl_data_label labels[3] = {
        {.task = "income", .column = "income_50k", .kind = TL_LABEL_POSITIVE, .positive = inc_pos,
         .n_positive = 1, .negative = inc_neg, .n_negative = 1},
        {.task = "never_married", .column = "marital_stat", .kind = TL_LABEL_POSITIVE, .positive = nm_pos,
         .n_positive = 1, .unknown_negative = 1},
        {.task = "education", .column = "education", .kind = TL_LABEL_POSITIVE, .positive = edu_pos,
         .n_positive = 4, .unknown_negative = 1},
    };
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = path;
    s.name = "census-income.test";
    s.sep = ", ";
    s.header = 0;
    s.columns = CENSUS_COLS;
    s.n_columns = 42;
    s.cat = cat;
    s.n_cat = nc;
    s.num = num;
    s.n_num = nn;
    s.labels = labels;
    s.n_labels = with_education ? 3 : 2;
    s.split = TL_SPLIT_MODULO;
    s.modulo = 10;
    for (int k = 0; k < 10; k++) s.modulo_to[k] = k < 8 ? TL_TO_TRAIN : k == 8 ? TL_TO_VALID : TL_TO_TEST;
    s.cache = cache;
    tl_status st = tl_data_csv_load(&s, NULL, out);
    tl_free(path);
    return st;
}

tl_status tl_data_census(const char *dir, int with_education, tl_dataset **out)
{
    return tl_data_census_ex(dir, with_education, 1, out);
}

/* ---- Amazon Video Games (the DML authors' preprocessing) ------------------ */

tl_status tl_data_amazon_video_games(const char *dir, uint64_t seed, tl_dataset **out)
{
    static const char *fn = "amazon_video_games";
    if (!out) return tl_fail(TL_ERR_ARG, "%s: NULL output", fn);
    *out = NULL;
    if (!dir) return tl_fail(TL_ERR_ARG, "%s: no directory", fn);
    static const char *const files[2] = {"Video_Games_val.txt", "Video_Games_test.txt"};
    char *paths[2] = {NULL, NULL};
    tl_status st = TL_OK;
    rawset rs;
    memset(&rs, 0, sizeof rs);
    plan p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < 2; i++) {
        if (!(paths[i] = tl_data_path_join(dir, files[i]))) {
            st = TL_ERR_NOMEM;
            goto done;
        }
        if (!tl_data_file_exists(paths[i])) {
            st = tl_fail(TL_ERR_IO,
                         "%s: no %s in '%s' (the DML authors' Video_Games_val.txt and Video_Games_test.txt; "
                         "pass their directory with path=)",
                         fn, files[i], dir);
            goto done;
        }
    }
    static const char *const cols[4] = {"rated", "like", "user_id", "item_id"};
    static const char *const pos[] = {"1.0", "1"}, *const neg[] = {"0.0", "0"};
    tl_data_cat_col cat[2] = {{"user_id", 0, 0}, {"item_id", 0, 0}};
    tl_data_label lab[2] = {
        {.task = "rated", .column = "rated", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 2,
         .negative = neg, .n_negative = 2},
        {.task = "like", .column = "like", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 2,
         .negative = neg, .n_negative = 2},
    };
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = paths[0];
    s.header = 0;
    s.columns = cols;
    s.n_columns = 4;
    s.cat = cat;
    s.n_cat = 2;
    s.labels = lab;
    s.n_labels = 2;
    s.id = "user_id";
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.8;
    s.ratio[1] = 0.1;
    s.ratio[2] = 0.1;
    s.seed = seed;
    if ((st = tl_data_plan_make(&s, fn, &p))) goto done;
    if ((st = tl_rawset_init(&rs, p.n_cat, p.n_num, 2, 1, 0))) goto done;
    for (int i = 0; i < 2; i++) {
        size_t first = rs.n;
        if ((st = tl_data_read_csv(&s, &p, paths[i], TL_TO_TRAIN, &rs))) goto done;
        /* rows count through the concatenation val + test */
        for (size_t r = first; r < rs.n; r++) {
            if (rs.lab[2 * r + 1] == 1.0f && rs.lab[2 * r] != 1.0f) {
                st = tl_fail(TL_ERR_PARSE, "%s: %s: data row %llu has like = 1 but rated = 0 (the tasks are nested)",
                             fn, paths[i], (unsigned long long)rs.row[r] + 1);
                goto done;
            }
            rs.row[r] += (uint32_t)first;
        }
    }
    finish_args fa = {&p, &s, NULL, "amazon_video_games_dml"};
    st = tl_data_finish(&rs, &fa, out);
done:
    tl_rawset_free(&rs);
    tl_data_plan_free(&p);
    tl_free(paths[0]);
    tl_free(paths[1]);
    return st;
}

/* ---- MovieLens ------------------------------------------------------------ */

typedef struct {
    char gender[4], age[8], occ[32], zip[4];
    int present;
} ml_user;

typedef struct {
    char genre[24], year[8];
    int present;
} ml_movie;

static void copy_field(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static int parse_id(const field *f, uint32_t max, uint32_t *out)
{
    double v;
    if (!tl_data_parse_number(f->p, f->n, &v) || v < 0 || v > max || v != floor(v)) return 0;
    *out = (uint32_t)v;
    return 1;
}

#define ML_MAX_ID 10000000u

/* Grow a table indexed by id so that id fits. */
static tl_status ml_grow(void **tab, size_t *cap, size_t elem, uint32_t id)
{
    if (id < *cap) return TL_OK;
    size_t nc = *cap ? *cap : 1024;
    while (nc <= id) nc *= 2;
    char *nt = tl_realloc(*tab, nc * elem, "movielens table");
    if (!nt) return TL_ERR_NOMEM;
    memset(nt + *cap * elem, 0, (nc - *cap) * elem);
    *tab = nt;
    *cap = nc;
    return TL_OK;
}

typedef struct {
    ml_user *users;
    size_t n_users;
    ml_movie *movies;
    size_t n_movies;
    char genres[32][24];
    int n_genres;
} ml_tables;

/* users.dat (UserID::Gender::Age::Occupation::Zip) or u.user
 * (user id|age|gender|occupation|zip). */
static tl_status ml_read_users(const char *path, int is_1m, ml_tables *t)
{
    lreader lr;
    tl_status st = tl_lreader_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got;
    field f[6];
    const char *sep = is_1m ? "::" : "|";
    while (!(st = tl_lreader_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        uint32_t id;
        int nf = tl_data_split_fields(line, len, sep, strlen(sep), 0, f, 6);
        if (nf != 5) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected 5 fields, got %d", path, (unsigned long long)lr.line, nf);
            break;
        }
        if (!parse_id(&f[0], ML_MAX_ID, &id)) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 1: expected a user id, got \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[0].n > 40 ? 40 : f[0].n), f[0].p);
            break;
        }
        if ((st = ml_grow((void **)&t->users, &t->n_users, sizeof *t->users, id))) break;
        ml_user *u = &t->users[id];
        const field *g = is_1m ? &f[1] : &f[2], *a = is_1m ? &f[2] : &f[1];
        copy_field(u->gender, sizeof u->gender, g->p, g->n);
        copy_field(u->age, sizeof u->age, a->p, a->n);
        copy_field(u->occ, sizeof u->occ, f[3].p, f[3].n);
        copy_field(u->zip, sizeof u->zip, f[4].p, f[4].n); /* first 3 characters: a coarse region */
        u->present = 1;
    }
    tl_lreader_close(&lr);
    return st;
}

/* movies.dat (MovieID::Title (Year)::G1|G2) or u.item (id|title|date|video
 * date|url|19 genre flags). The first genre is the movie's genre. */
static tl_status ml_read_movies(const char *path, int is_1m, ml_tables *t)
{
    lreader lr;
    tl_status st = tl_lreader_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got;
    field f[32];
    while (!(st = tl_lreader_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        uint32_t id;
        const char *title, *genre = "", *year = "";
        size_t tn, gn = 0, yn = 0;
        if (is_1m) {
            /* titles may hold "::"-free text with ':'; split on the first and last "::" */
            char *a = strstr(line, "::"), *b = NULL;
            for (char *q = a ? strstr(a + 2, "::") : NULL; q; q = strstr(q + 2, "::")) b = q;
            if (!a || !b) {
                st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected MovieID::Title::Genres", path,
                             (unsigned long long)lr.line);
                break;
            }
            f[0].p = line;
            f[0].n = (uint32_t)(a - line);
            title = a + 2;
            tn = (size_t)(b - title);
            genre = b + 2;
            const char *bar = strchr(genre, '|');
            gn = bar ? (size_t)(bar - genre) : strlen(genre);
            if (tn >= 6 && title[tn - 1] == ')' && title[tn - 6] == '(') {
                year = title + tn - 5;
                yn = 4;
            }
        } else {
            int nf = tl_data_split_fields(line, len, "|", 1, 0, f, 32);
            if (nf != 24) {
                st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected 24 fields, got %d", path, (unsigned long long)lr.line,
                             nf);
                break;
            }
            if (f[2].n >= 4) {
                year = f[2].p + f[2].n - 4;
                yn = 4;
            }
            for (int g = 0; g < 19; g++)
                if (f[5 + g].n == 1 && f[5 + g].p[0] == '1') {
                    genre = g < t->n_genres ? t->genres[g] : "";
                    gn = strlen(genre);
                    break;
                }
        }
        if (!parse_id(&f[0], ML_MAX_ID, &id)) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 1: expected a movie id, got \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[0].n > 40 ? 40 : f[0].n), f[0].p);
            break;
        }
        if ((st = ml_grow((void **)&t->movies, &t->n_movies, sizeof *t->movies, id))) break;
        ml_movie *m = &t->movies[id];
        copy_field(m->genre, sizeof m->genre, genre, gn);
        copy_field(m->year, sizeof m->year, year, yn);
        m->present = 1;
    }
    tl_lreader_close(&lr);
    return st;
}

/* u.genre: "name|index" lines. */
static tl_status ml_read_genres(const char *path, ml_tables *t)
{
    lreader lr;
    tl_status st = tl_lreader_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got;
    field f[3];
    while (!(st = tl_lreader_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        uint32_t g;
        if (tl_data_split_fields(line, len, "|", 1, 0, f, 3) != 2 || !parse_id(&f[1], 31, &g)) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected name|index", path, (unsigned long long)lr.line);
            break;
        }
        copy_field(t->genres[g], sizeof t->genres[g], f[0].p, f[0].n);
        if ((int)g + 1 > t->n_genres) t->n_genres = (int)g + 1;
    }
    tl_lreader_close(&lr);
    return st;
}

static tl_status ml_read_ratings(const char *path, int is_1m, const ml_tables *t, rawset *rs)
{
    lreader lr;
    tl_status st = tl_lreader_open(&lr, path);
    if (st) return st;
    char *line;
    size_t len;
    int got;
    field f[5];
    const char *sep = is_1m ? "::" : "\t";
    uint64_t data_row = 0;
    while (!(st = tl_lreader_next(&lr, &line, &len, &got)) && got) {
        if (!len) continue;
        if ((++data_row & (CANCEL_EVERY - 1)) == 0 && tl_cancelled()) {
            st = tl_fail(TL_ERR_CANCELLED, "%s: loading cancelled at line %llu", path, (unsigned long long)lr.line);
            break;
        }
        int nf = tl_data_split_fields(line, len, sep, strlen(sep), 0, f, 5);
        uint32_t u, m, r;
        if (nf != 4) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: expected 4 fields, got %d (ragged row)", path,
                         (unsigned long long)lr.line, nf);
            break;
        }
        if (!parse_id(&f[0], ML_MAX_ID, &u) || u >= t->n_users || !t->users[u].present) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 1: unknown user id \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[0].n > 40 ? 40 : f[0].n), f[0].p);
            break;
        }
        if (!parse_id(&f[1], ML_MAX_ID, &m) || m >= t->n_movies || !t->movies[m].present) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 2: unknown movie id \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[1].n > 40 ? 40 : f[1].n), f[1].p);
            break;
        }
        if (!parse_id(&f[2], 5, &r) || r < 1) {
            st = tl_fail(TL_ERR_PARSE, "%s:%llu: column 3: expected a rating 1..5, got \"%.*s\"", path,
                         (unsigned long long)lr.line, (int)(f[2].n > 40 ? 40 : f[2].n), f[2].p);
            break;
        }
        if ((st = tl_rawset_reserve(rs))) break;
        size_t i = rs->n;
        const ml_user *us = &t->users[u];
        const ml_movie *mv = &t->movies[m];
        const char *vals[8] = {NULL, NULL, us->gender, us->age, us->occ, us->zip, mv->genre, mv->year};
        size_t lens[8] = {f[0].n, f[1].n, 0, 0, 0, 0, 0, 0};
        vals[0] = f[0].p;
        vals[1] = f[1].p;
        for (int k = 0; k < 8 && !st; k++) {
            size_t n = k < 2 ? lens[k] : strlen(vals[k]);
            if (n == 0) rs->cat[i * 8 + (size_t)k] = -1;
            else st = tl_strtab_intern(&rs->tab[k], vals[k], n, &rs->cat[i * 8 + (size_t)k]);
        }
        if (!st) st = tl_strtab_intern(&rs->gtab, f[0].p, f[0].n, &rs->grp[i]);
        if (st) break;
        rs->lab[i * 2] = r >= 4 ? 1.0f : 0.0f;
        rs->lab[i * 2 + 1] = (float)r;
        rs->row[i] = (uint32_t)(data_row - 1);
        rs->n++;
    }
    if (!st && data_row == 0) st = tl_fail(TL_ERR_PARSE, "%s: empty file (no ratings)", path);
    tl_lreader_close(&lr);
    return st;
}

tl_status tl_data_movielens(const char *dir, uint64_t seed, tl_dataset **out)
{
    if (!out) return tl_fail(TL_ERR_ARG, "movielens: NULL output");
    *out = NULL;
    if (!dir) dir = "../shared/data/movielens_1m";
    static const char *const r1m[] = {"ratings.dat", "ratings.dat.gz", "ratings_prefix_users0001-2999.dat.gz"};
    static const char *const r100k[] = {"u.data", "u.data.gz"};
    char *users = NULL, *movies = NULL, *genres = NULL, *ratings = NULL;
    ml_tables t;
    memset(&t, 0, sizeof t);
    rawset rs;
    memset(&rs, 0, sizeof rs);
    tl_status st = TL_OK;
    int is_1m = 0;
    if (!(users = tl_data_path_join(dir, "users.dat"))) return TL_ERR_NOMEM;
    if (tl_data_file_exists(users)) {
        is_1m = 1;
        movies = tl_data_path_join(dir, "movies.dat");
        for (int i = 0; i < 3 && !ratings; i++) {
            char *p = tl_data_path_join(dir, r1m[i]);
            if (p && tl_data_file_exists(p)) ratings = p;
            else tl_free(p);
        }
    } else {
        tl_free(users);
        users = tl_data_path_join(dir, "u.user");
        movies = tl_data_path_join(dir, "u.item");
        genres = tl_data_path_join(dir, "u.genre");
        for (int i = 0; i < 2 && !ratings && users && tl_data_file_exists(users); i++) {
            char *p = tl_data_path_join(dir, r100k[i]);
            if (p && tl_data_file_exists(p)) ratings = p;
            else tl_free(p);
        }
    }
    if (!users || !movies || (!is_1m && !genres)) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    if (!ratings) {
        st = tl_fail(TL_ERR_IO,
                     "movielens: no MovieLens data in '%s' (expected ML-1M users.dat, movies.dat and ratings.dat[.gz], "
                     "or ML-100K u.user, u.item, u.genre and u.data[.gz])",
                     dir);
        goto done;
    }
    if (!is_1m && (st = ml_read_genres(genres, &t))) goto done;
    if ((st = ml_read_users(users, is_1m, &t))) goto done;
    if ((st = ml_read_movies(movies, is_1m, &t))) goto done;
    if ((st = tl_rawset_init(&rs, 8, 0, 2, 1, 0))) goto done;
    if ((st = ml_read_ratings(ratings, is_1m, &t, &rs))) goto done;
    {
        static const char *const names[8] = {"user_id", "movie_id", "gender", "age",
                                              "occupation", "zip", "genre", "year"};
        tl_data_cat_col cat[8];
        for (int k = 0; k < 8; k++) cat[k] = (tl_data_cat_col){names[k], 0, 0};
        tl_data_label labels[2] = {
            {.task = "like", .column = "rating", .kind = TL_LABEL_THRESHOLD, .threshold = 4},
            {.task = "rating", .column = "rating", .kind = TL_LABEL_REGRESSION},
        };
        tl_data_schema s;
        tl_data_schema_init(&s);
        s.path = ratings;
        s.cat = cat;
        s.n_cat = 8;
        s.labels = labels;
        s.n_labels = 2;
        s.split = TL_SPLIT_RATIO;
        s.ratio[0] = 0.8;
        s.ratio[1] = 0.1;
        s.ratio[2] = 0.1;
        s.seed = seed;
        plan p;
        if ((st = tl_data_plan_make(&s, "movielens", &p))) {
            tl_data_plan_free(&p);
            goto done;
        }
        const char *base = strrchr(ratings, '/');
        finish_args fa = {&p, &s, NULL, base ? base + 1 : ratings};
        st = tl_data_finish(&rs, &fa, out);
        tl_data_plan_free(&p);
    }
done:
    tl_rawset_free(&rs);
    tl_free(t.users);
    tl_free(t.movies);
    tl_free(users);
    tl_free(movies);
    tl_free(genres);
    tl_free(ratings);
    return st;
}
