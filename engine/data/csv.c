/* data/csv.c — reading CSV/TSV(.gz) files into raw rows: the header or the
 * given column names, the column map, each row's fields parsed by the
 * schema's roles (bad rows refused or skipped), and tl_data_csv_load, which
 * reads the files of a schema, finishes them and goes through the cache.
 */
#include "csv.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data_internal.h"

static int is_missing(const tl_data_schema *s, const char *v, size_t n)
{
    if (!s->missing) return n == 0 || (n == 1 && v[0] == '?');
    for (int i = 0; i < s->n_missing; i++)
        if (strlen(s->missing[i]) == n && memcmp(s->missing[i], v, n) == 0) return 1;
    return 0;
}

static int in_list(const char *const *list, int n, const char *v, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(list[i]) == len && memcmp(list[i], v, len) == 0) return 1; /* v may hold NUL bytes */
    return 0;
}

/* Column index of each name the plan uses, for one file. */
typedef struct {
    int ncols;
    int *cat, *num, *lab, *bag;
    int id, weight;
} colmap;

static void colmap_free(colmap *m)
{
    tl_free(m->cat);
    tl_free(m->num);
    tl_free(m->lab);
    tl_free(m->bag);
}

static int find_col(char *const *names, int n, const char *name)
{
    for (int c = 0; c < n; c++)
        if (strcmp(names[c], name) == 0) return c;
    return -1;
}

/* A column the schema uses must be named once. */
static tl_status check_unique(const char *path, const tl_data_schema *s, char *const *names, int n, int c)
{
    if (c < 0) return TL_OK;
    for (int k = c + 1; k < n; k++)
        if (strcmp(names[k], names[c]) == 0)
            return tl_fail(TL_ERR_PARSE, "%s: column name '%s' appears twice in the %s (columns %d and %d)", path,
                           names[c], s->header ? "header" : "column names", c + 1, k + 1);
    return TL_OK;
}

static tl_status missing_col(const char *path, const char *role, const char *name, char *const *names, int n)
{
    char list[400];
    size_t k = 0;
    list[0] = 0;
    for (int c = 0; c < n && k < sizeof list - 40; c++) {
        int w = snprintf(list + k, sizeof list - k, "%s%s", c ? ", " : "", names[c]);
        if (w < 0 || (size_t)w >= sizeof list - k) break; /* a long name filled the list */
        k += (size_t)w;
        if (k >= sizeof list - 40 && c + 1 < n) {
            snprintf(list + k, sizeof list - k, ", ... (%d in all)", n);
            break;
        }
    }
    return tl_fail(TL_ERR_ARG, "%s: schema names %s column '%s', which does not exist (columns: %s)", path, role,
                   name, list);
}

static tl_status colmap_make(const tl_data_schema *s, const plan *p, const char *path, char *const *names,
                             int ncols, rawset *rs, colmap *m)
{
    memset(m, 0, sizeof *m);
    m->ncols = ncols;
    m->id = m->weight = -1;
    m->cat = tl_calloc((size_t)p->n_cat + 1, sizeof(int), "column map");
    m->num = tl_calloc((size_t)p->n_num + 1, sizeof(int), "column map");
    m->lab = tl_calloc((size_t)s->n_labels + 1, sizeof(int), "column map");
    m->bag = tl_calloc((size_t)p->n_bag + 1, sizeof(int), "column map");
    if (!m->cat || !m->num || !m->lab || !m->bag) return TL_ERR_NOMEM;
    for (int k = 0; k < p->n_cat; k++)
        if ((m->cat[k] = find_col(names, ncols, p->cat[k]->name)) < 0)
            return missing_col(path, "categorical", p->cat[k]->name, names, ncols);
    for (int k = 0; k < p->n_num; k++)
        if ((m->num[k] = find_col(names, ncols, p->num[k]->name)) < 0)
            return missing_col(path, "numeric", p->num[k]->name, names, ncols);
    for (int k = 0; k < p->n_bag; k++)
        if ((m->bag[k] = find_col(names, ncols, p->bag[k]->name)) < 0)
            return missing_col(path, "multi-valued", p->bag[k]->name, names, ncols);
    tl_status st = TL_OK;
    for (int k = 0; k < p->n_cat && !st; k++) st = check_unique(path, s, names, ncols, m->cat[k]);
    for (int k = 0; k < p->n_num && !st; k++) st = check_unique(path, s, names, ncols, m->num[k]);
    for (int k = 0; k < p->n_bag && !st; k++) st = check_unique(path, s, names, ncols, m->bag[k]);
    if (st) return st;
    int n_found = 0;
    for (int t = 0; t < s->n_labels; t++) {
        n_found += (m->lab[t] = find_col(names, ncols, s->labels[t].column)) >= 0;
        if ((st = check_unique(path, s, names, ncols, m->lab[t]))) return st;
    }
    if (n_found == 0 && rs->allow_unlabeled) {
        rs->unlabeled = 1; /* rows to score: no labels at all */
    } else if (rs->unlabeled && n_found > 0) {
        return tl_fail(TL_ERR_ARG, "%s: has label columns, but the files before it had none", path);
    } else {
        for (int t = 0; t < s->n_labels; t++)
            if (m->lab[t] < 0) {
                if (rs->allow_unlabeled)
                    return tl_fail(TL_ERR_ARG,
                                   "%s: label column '%s' (task '%s') is missing; a file to score may lack "
                                   "every label column, not only some",
                                   path, s->labels[t].column, s->labels[t].task);
                return missing_col(path, "label", s->labels[t].column, names, ncols);
            }
    }
    if (s->id && (m->id = find_col(names, ncols, s->id)) < 0) return missing_col(path, "id", s->id, names, ncols);
    if (s->weight && (m->weight = find_col(names, ncols, s->weight)) < 0)
        return missing_col(path, "weight", s->weight, names, ncols);
    if ((st = check_unique(path, s, names, ncols, m->id))) return st;
    return check_unique(path, s, names, ncols, m->weight);
}

static void free_names(char **names, int n)
{
    for (int c = 0; c < n && names; c++) tl_free(names[c]);
    tl_free(names);
}

/* The first line holding a CR inside it: CR-only (classic Mac) line ends make
 * the whole file one line. */
static tl_status check_cr(const char *path, uint64_t line, const char *p, size_t len)
{
    if (!memchr(p, '\r', len)) return TL_OK;
    return tl_fail(TL_ERR_PARSE,
                   "%s:%llu: the line holds a carriage return (CR) inside it: the file seems to have CR-only "
                   "(classic Mac) line endings; convert it to LF or CRLF line endings",
                   path, (unsigned long long)line);
}

/* A record is at most this long when a quoted field makes it span lines, so
 * that a quote left open does not read the rest of a large file into memory. */
#define MAX_RECORD ((size_t)1 << 26)

/* One file being read: its reader, column names, fields and column map. */
typedef struct {
    const tl_data_schema *s;
    const plan *p;
    const char *path;
    lreader lr;
    size_t seplen;
    int ncols;
    char **names;
    field *f;
    int32_t *last; /* per categorical column: the previous row's value */
    int32_t *bagtmp; /* one bag field's values of the current row, before truncation */
    size_t bagtmp_cap;
    colmap m;
    const csv_stream *cs; /* streaming (convert.c): hashed fields direct, rows in chunks; or NULL */
    /* the current record: its text, the line it starts on, and for a record
     * spanning lines (joined in rec) the offsets where its lines 2.. start */
    const char *text;
    uint64_t line;
    char *rec;
    size_t rec_cap;
    size_t *brk;
    size_t n_brk, brk_cap;
    char locbuf[4200];
} csvfile;

static void csv_close(csvfile *c)
{
    tl_free(c->rec);
    tl_free(c->brk);
    tl_free(c->last);
    tl_free(c->bagtmp);
    colmap_free(&c->m);
    free_names(c->names, c->ncols);
    tl_free(c->f);
    tl_lreader_close(&c->lr);
}

/* "path:line" of the byte `at` of the current record (NULL: its first
 * line); a record spanning lines adds " (record from line N)". Valid until
 * the next call. */
static const char *loc(csvfile *c, const char *at)
{
    uint64_t line = c->line;
    if (c->n_brk && at) {
        size_t off = (size_t)(at - c->text);
        for (size_t k = 0; k < c->n_brk && c->brk[k] <= off; k++) line++;
    }
    if (c->n_brk)
        snprintf(c->locbuf, sizeof c->locbuf, "%s:%llu (record from line %llu)", c->path, (unsigned long long)line,
                 (unsigned long long)c->line);
    else
        snprintf(c->locbuf, sizeof c->locbuf, "%s:%llu", c->path, (unsigned long long)line);
    return c->locbuf;
}

/* Room for n bytes (and the splitter's padding) in c->rec. */
static tl_status rec_room(csvfile *c, size_t n)
{
    if (n + LR_PAD <= c->rec_cap) return TL_OK;
    size_t cap = c->rec_cap ? c->rec_cap : 4096;
    while (cap < n + LR_PAD) cap *= 2;
    char *nr = tl_realloc(c->rec, cap, "record buffer");
    if (!nr) return TL_ERR_NOMEM;
    c->rec = nr;
    c->rec_cap = cap;
    return TL_OK;
}

/* The next record in *text and *len (NUL-terminated, writable, padded like
 * a line), *got = 0 at the end of the file. A record is one line unless a
 * quoted field is still open at its end: then the following lines are
 * joined to it with "\n" until the field closes (RFC 4180). */
static tl_status next_record(csvfile *c, char **text, size_t *len, int *got)
{
    tl_status st = tl_lreader_next(&c->lr, text, len, got);
    c->n_brk = 0;
    c->line = c->lr.line;
    c->text = *text;
    if (st || !*got || !memchr(*text, '"', *len)) return st;
    const tl_data_schema *s = c->s;
    quote_state q = {0, 0};
    tl_data_quote_scan(*text, *len, s->sep, c->seplen, s->skip_initial_space, &q);
    if (!q.open) return TL_OK;
    size_t n = *len;
    if ((st = rec_room(c, n + 1))) return st;
    memcpy(c->rec, *text, n);
    while (q.open) {
        char *more;
        size_t mlen;
        int mgot;
        if ((st = tl_lreader_next(&c->lr, &more, &mlen, &mgot))) return st;
        if (!mgot)
            return tl_fail(TL_ERR_PARSE,
                           "%s:%llu: column %d: the quoted field is never closed (the record starting there "
                           "reaches the end of the file at line %llu)",
                           c->path, (unsigned long long)c->line, q.col, (unsigned long long)c->lr.line);
        if (n + 1 + mlen > MAX_RECORD)
            return tl_fail(TL_ERR_PARSE,
                           "%s:%llu: column %d: the quoted field is still open at line %llu, after %zu MiB: "
                           "a closing quote is missing",
                           c->path, (unsigned long long)c->line, q.col, (unsigned long long)c->lr.line,
                           MAX_RECORD >> 20);
        if (c->n_brk == c->brk_cap) {
            size_t cap = c->brk_cap ? c->brk_cap * 2 : 16;
            size_t *nb = tl_realloc(c->brk, cap * sizeof *nb, "record lines");
            if (!nb) return TL_ERR_NOMEM;
            c->brk = nb;
            c->brk_cap = cap;
        }
        if ((st = rec_room(c, n + 1 + mlen))) return st;
        c->rec[n++] = '\n';
        c->brk[c->n_brk++] = n;
        memcpy(c->rec + n, more, mlen);
        tl_data_quote_scan(c->rec + n, mlen, s->sep, c->seplen, s->skip_initial_space, &q);
        n += mlen;
    }
    memset(c->rec + n, 0, LR_PAD);
    *text = c->rec;
    *len = n;
    c->text = c->rec;
    return TL_OK;
}

/* A number the float32 arrays cannot hold is refused, not stored as inf. */
static tl_status overflow_err(csvfile *c, int col, const field *x)
{
    return tl_fail(TL_ERR_PARSE, "%s: column %d ('%s'): \"%.*s\" overflows float32 (|x| <= %.4g)", loc(c, x->p),
                   col + 1, c->names[col], (int)(x->n > 60 ? 60 : x->n), x->p, (double)FLT_MAX);
}

/* The header line split into trimmed column names. */
static tl_status header_names(csvfile *c, char *line, size_t len)
{
    const tl_data_schema *s = c->s;
    if (memchr(line, 0, len))
        return tl_fail(TL_ERR_PARSE, "%s: the header line holds a NUL byte", loc(c, NULL));
    /* Split once: unescaping "" rewrites the line in place, so a second
     * pass would see other fields. Every field but the last ends at a
     * separator, which bounds the count. */
    size_t maxf = 1;
    for (size_t i = 0; i < len; i++) maxf += line[i] == s->sep[0];
    if (maxf > (size_t)1 << 30)
        return tl_fail(TL_ERR_PARSE, "%s: header line has too many columns", loc(c, NULL));
    c->f = tl_calloc(maxf, sizeof *c->f, "header fields");
    if (!c->f) return TL_ERR_NOMEM;
    int nf = tl_data_split_fields(line, len, s->sep, c->seplen, s->skip_initial_space, c->f, (int)maxf);
    if (nf < 0)
        return tl_fail(TL_ERR_PARSE, "%s: column %d: malformed quoted field in the header (text after its closing quote)",
                       loc(c, NULL), -nf - 1);
    c->names = tl_calloc((size_t)nf, sizeof *c->names, "column names");
    if (!c->names) return TL_ERR_NOMEM;
    c->ncols = nf;
    for (int k = 0; k < nf; k++) {
        const field *x = &c->f[k];
        uint32_t a = 0, b = x->n;
        while (a < b && x->p[a] == ' ') a++;
        while (b > a && x->p[b - 1] == ' ') b--;
        c->names[k] = tl_malloc(b - a + 1, "column name");
        if (!c->names[k]) return TL_ERR_NOMEM;
        memcpy(c->names[k], x->p + a, b - a);
        c->names[k][b - a] = 0;
    }
    return TL_OK;
}

/* Skip the leading lines and take the column names from the header or the
 * schema; c->f gets room for one row's fields. */
static tl_status read_columns(csvfile *c)
{
    const tl_data_schema *s = c->s;
    char *line;
    size_t len;
    int got = 0;
    tl_status st;
    for (int i = 0; i < s->skip; i++) {
        if ((st = tl_lreader_next(&c->lr, &line, &len, &got))) return st;
        if (!got) break;
    }
    if (s->header) {
        do {
            if ((st = next_record(c, &line, &len, &got))) return st;
        } while (got && len == 0);
        if (!got) return tl_fail(TL_ERR_PARSE, "%s: empty file (expected a header line)", c->path);
        if ((st = check_cr(c->path, c->line, line, len))) return st;
        return header_names(c, line, len);
    }
    c->ncols = s->n_columns;
    c->names = tl_calloc((size_t)c->ncols, sizeof *c->names, "column names");
    if (!c->names) return TL_ERR_NOMEM;
    for (int k = 0; k < c->ncols; k++)
        if (!s->columns[k] || !(c->names[k] = tl_strdup(s->columns[k], "column name")))
            return s->columns[k] ? TL_ERR_NOMEM : tl_fail(TL_ERR_ARG, "%s: column %d has no name", c->path, k + 1);
    c->f = tl_calloc((size_t)c->ncols, sizeof *c->f, "fields");
    return c->f ? TL_OK : TL_ERR_NOMEM;
}

/* The row parsers below return TL_ERR_PARSE (message set) for a bad row,
 * which on_bad = skip skips; any other failure (interning: TL_ERR_ARG or
 * TL_ERR_NOMEM) ends the load. */

static tl_status field_err(csvfile *c, int col, const char *what, const field *x)
{
    return tl_fail(TL_ERR_PARSE, "%s: column %d ('%s'): expected %s, got \"%.*s\"", loc(c, x->p), col + 1,
                   c->names[col], what, (int)(x->n > 60 ? 60 : x->n), x->p);
}

static tl_status parse_cats(csvfile *c, rawset *rs, size_t r)
{
    const int n_cat = c->p->n_cat;
    for (int k = 0; k < n_cat; k++) {
        const field *x = &c->f[c->m.cat[k]];
        int32_t *dst = &rs->cat[r * (size_t)n_cat + (size_t)k];
        const strtab *tb = &rs->tab[k];
        int32_t li = c->last[k];
        if (is_missing(c->s, x->p, x->n)) {
            *dst = -1;
        } else if (c->cs && c->p->cat[k]->hash_buckets > 0) {
            /* streaming: the bucket itself, no table of the values */
            *dst = (int32_t)(hash_bytes(x->p, x->n, TL_DATA_HASH_SEED) % (uint64_t)c->p->cat[k]->hash_buckets);
        } else if (li >= 0 && tb->len[li] == x->n && bytes_eq(st_str(tb, li), x->p, x->n)) {
            *dst = li; /* same value as this column's previous row: common, and skips the hash */
        } else {
            tl_status st = tl_strtab_intern(&rs->tab[k], x->p, x->n, dst);
            if (st) return st;
            c->last[k] = *dst;
        }
    }
    return TL_OK;
}

static tl_status parse_nums(csvfile *c, rawset *rs, size_t r)
{
    const int n_num = c->p->n_num;
    for (int k = 0; k < n_num; k++) {
        const int col = c->m.num[k];
        const field *x = &c->f[col];
        double v;
        if (is_missing(c->s, x->p, x->n)) v = NAN;
        else if (!tl_data_parse_number(x->p, x->n, &v)) return field_err(c, col, "a number", x);
        else if (fabs(v) > (double)FLT_MAX) return overflow_err(c, col, x);
        rs->num[r * (size_t)n_num + (size_t)k] = (float)v;
    }
    return TL_OK;
}

static tl_status empty_value(csvfile *c, int col, const char *name, uint32_t pos, const field *x)
{
    return tl_fail(TL_ERR_PARSE,
                   "%s: column %d ('%s'): multi-valued field '%s': value %u is empty (\"%.*s\"); an empty "
                   "field is an empty bag, an empty value between separators is an error",
                   loc(c, x->p), col + 1, c->names[col], name, (unsigned)pos, (int)(x->n > 60 ? 60 : x->n), x->p);
}

/* Bag field k's values of row r: split on its separator, interned, the
 * window of cap values kept (the first or the last ones). */
static tl_status parse_bag(csvfile *c, rawset *rs, size_t r, int k)
{
    const tl_data_bag_col *bc = c->p->bag[k];
    const int col = c->m.bag[k];
    const field *x = &c->f[col];
    const size_t bsl = strlen(bc->sep);
    size_t n = 0;
    uint16_t *cnt = &rs->bcnt[r * (size_t)rs->n_bag + (size_t)k];
    *cnt = 0;
    if (x->n == 0 || is_missing(c->s, x->p, x->n)) return TL_OK; /* an empty bag */
    for (uint32_t a = 0, pos = 1;; pos++) {
        uint32_t e = a;
        while (e < x->n && !(e + bsl <= x->n && memcmp(x->p + e, bc->sep, bsl) == 0)) e++;
        if (e == a) return empty_value(c, col, bc->name, pos, x);
        if (n == c->bagtmp_cap) {
            size_t cap = c->bagtmp_cap ? c->bagtmp_cap * 2 : 64;
            int32_t *nb = tl_realloc(c->bagtmp, cap * sizeof *nb, "bag values");
            if (!nb) return TL_ERR_NOMEM;
            c->bagtmp = nb;
            c->bagtmp_cap = cap;
        }
        if (c->cs && bc->hash_buckets > 0) {
            c->bagtmp[n++] = (int32_t)(hash_bytes(x->p + a, e - a, TL_DATA_HASH_SEED) % (uint64_t)bc->hash_buckets);
        } else {
            tl_status st = tl_strtab_intern(&rs->btab[k], x->p + a, e - a, &c->bagtmp[n++]);
            if (st) return st;
        }
        if (e >= x->n) break;
        a = e + (uint32_t)bsl;
        if (a >= x->n) return empty_value(c, col, bc->name, pos + 1, x); /* a separator at the end */
    }
    size_t cap = (size_t)c->p->bag_cap[k], from = 0;
    if (n > cap) {
        rs->btrunc[k]++;
        if (!bc->keep_first) from = n - cap;
        n = cap;
    }
    tl_status st = tl_rawset_reserve_bag_values(rs, n);
    if (st) return st;
    memcpy(rs->bval + rs->bv_n, c->bagtmp + from, n * sizeof *rs->bval);
    rs->bv_n += n;
    *cnt = (uint16_t)n;
    return TL_OK;
}

/* Every bag field of row r; a bad row leaves no values behind. */
static tl_status parse_bags(csvfile *c, rawset *rs, size_t r)
{
    if (!rs->n_bag) return TL_OK;
    size_t at = rs->bv_n;
    uint64_t trunc[TL_DATA_MAX_BAGS];
    memcpy(trunc, rs->btrunc, sizeof *trunc * (size_t)rs->n_bag);
    rs->boff[r] = at;
    tl_status st = TL_OK;
    for (int k = 0; k < rs->n_bag && !st; k++) st = parse_bag(c, rs, r, k);
    if (st) {
        rs->bv_n = at;
        memcpy(rs->btrunc, trunc, sizeof *trunc * (size_t)rs->n_bag);
    }
    return st;
}

/* Without negative=, the first value that is not positive is the negative
 * one; another is an error unless unknown_negative maps it to 0 too. */
static tl_status check_negative(csvfile *c, rawset *rs, int t, const field *x)
{
    const tl_data_label *l = &c->s->labels[t];
    const int col = c->m.lab[t];
    if (!rs->neg[t]) {
        if (!(rs->neg[t] = tl_malloc((size_t)x->n + 1, "label value"))) return TL_ERR_NOMEM;
        memcpy(rs->neg[t], x->p, x->n);
        rs->neg[t][x->n] = 0;
        rs->neg_len[t] = x->n;
    } else if (rs->neg_len[t] != x->n || memcmp(rs->neg[t], x->p, x->n) != 0) {
        return tl_fail(TL_ERR_PARSE,
                       "%s: column %d ('%s'): unknown label value \"%.*s\" for task '%s': the "
                       "column already has \"%s\" (positive) and \"%.*s\" (taken as negative); list "
                       "the 0 values with negative=, or map every other value to 0 with "
                       "unknown=\"negative\"",
                       loc(c, x->p), col + 1, c->names[col], (int)(x->n > 60 ? 60 : x->n),
                       x->p, l->task, l->positive[0], (int)(rs->neg_len[t] > 60 ? 60 : rs->neg_len[t]), rs->neg[t]);
    }
    return TL_OK;
}

/* Task t's label from its field in *v. */
static tl_status parse_label(csvfile *c, rawset *rs, int t, double *v)
{
    const tl_data_label *l = &c->s->labels[t];
    const int col = c->m.lab[t];
    const field *x = &c->f[col];
    *v = 0;
    if (is_missing(c->s, x->p, x->n))
        return tl_fail(TL_ERR_PARSE, "%s: column %d ('%s'): missing label for task '%s'", loc(c, x->p), col + 1,
                       c->names[col], l->task);
    if (l->kind == TL_LABEL_POSITIVE) {
        if (in_list(l->positive, l->n_positive, x->p, x->n)) *v = 1;
        else if (l->n_negative > 0 && !in_list(l->negative, l->n_negative, x->p, x->n))
            return tl_fail(TL_ERR_PARSE,
                           "%s: column %d ('%s'): unknown label value \"%.*s\" for task '%s' "
                           "(expected \"%s\" or \"%s\")",
                           loc(c, x->p), col + 1, c->names[col],
                           (int)(x->n > 60 ? 60 : x->n), x->p, l->task, l->positive[0], l->negative[0]);
        else if (l->n_negative == 0 && !l->unknown_negative) return check_negative(c, rs, t, x);
        return TL_OK;
    }
    if (!tl_data_parse_number(x->p, x->n, v))
        return tl_fail(TL_ERR_PARSE, "%s: column %d ('%s'): expected a number for task '%s', got \"%.*s\"",
                       loc(c, x->p), col + 1, c->names[col], l->task,
                       (int)(x->n > 60 ? 60 : x->n), x->p);
    if (l->kind == TL_LABEL_THRESHOLD) *v = *v >= l->threshold ? 1 : 0;
    else if (fabs(*v) > (double)FLT_MAX) return overflow_err(c, col, x);
    return TL_OK;
}

static tl_status parse_labels(csvfile *c, rawset *rs, size_t r)
{
    const int n_lab = c->s->n_labels;
    for (int t = 0; t < n_lab; t++) {
        double v = NAN; /* rows to score have no labels */
        if (!rs->unlabeled) {
            tl_status st = parse_label(c, rs, t, &v);
            if (st) return st;
        }
        rs->lab[r * (size_t)n_lab + (size_t)t] = (float)v;
    }
    return TL_OK;
}

/* The group id and the weight. */
static tl_status parse_id_weight(csvfile *c, rawset *rs, size_t r)
{
    if (c->m.id >= 0) {
        const field *x = &c->f[c->m.id];
        tl_status st = tl_strtab_intern(&rs->gtab, x->p, x->n, &rs->grp[r]);
        if (st) return st;
    }
    if (c->m.weight >= 0) {
        const int col = c->m.weight;
        const field *x = &c->f[col];
        double v;
        if (!tl_data_parse_number(x->p, x->n, &v) || v < 0) return field_err(c, col, "a weight >= 0", x);
        if (v > (double)FLT_MAX) return overflow_err(c, col, x);
        rs->wt[r] = (float)v;
    }
    return TL_OK;
}

/* Parse one line into row rs->n (not yet counted). */
static tl_status parse_row(csvfile *c, char *line, size_t len, rawset *rs)
{
    const int ncols = c->ncols;
    const char *nul = memchr(line, 0, len);
    int nf = tl_data_split_fields(line, len, c->s->sep, c->seplen, c->s->skip_initial_space, c->f, ncols);
    if (nul && nf == ncols) {
        /* unquoting moved bytes left: find the field that holds it now */
        int col = ncols;
        for (int k = 0; k < ncols; k++)
            if (memchr(c->f[k].p, 0, c->f[k].n)) {
                col = k + 1;
                break;
            }
        return tl_fail(TL_ERR_PARSE, "%s: column %d ('%s'): the field holds a NUL byte", loc(c, c->f[col - 1].p), col,
                       c->names[col - 1]);
    }
    if (nf < 0)
        return tl_fail(TL_ERR_PARSE, "%s: column %d: malformed quoted field (text after its closing quote)",
                       loc(c, -nf - 2 < ncols ? c->f[-nf - 2].p : NULL), -nf - 1);
    if (nf != ncols)
        return tl_fail(TL_ERR_PARSE, "%s: expected %d fields, got %d (ragged row)", loc(c, NULL), ncols, nf);
    const size_t r = rs->n;
    tl_status st = parse_cats(c, rs, r);
    if (!st) st = parse_nums(c, rs, r);
    if (!st) st = parse_labels(c, rs, r);
    if (!st) st = parse_id_weight(c, rs, r);
    if (!st) st = parse_bags(c, rs, r);
    return st;
}

/* Every data line of the file into rs (after read_columns). */
static tl_status read_rows(csvfile *c, int8_t tag, rawset *rs)
{
    const tl_data_schema *s = c->s;
    const int n_lab = s->n_labels;
    uint64_t data_row = 0;
    size_t rows_in_file = 0;
    char *line;
    size_t len;
    int got;
    tl_status st;
    for (;;) {
        if ((st = next_record(c, &line, &len, &got))) return st;
        if (!got) break;
        if (len == 0) continue; /* blank lines are not rows */
        if (s->max_rows && data_row >= s->max_rows) break;
        if (data_row == 0 && !s->header && (st = check_cr(c->path, c->line, line, len))) return st;
        uint64_t row_index = data_row++;
        if ((data_row & (CANCEL_EVERY - 1)) == 0 && tl_cancelled())
            return tl_fail(TL_ERR_CANCELLED, "%s: loading cancelled at line %llu", c->path,
                           (unsigned long long)c->lr.line);
        int8_t rtag = tag;
        if (s->split == TL_SPLIT_MODULO) {
            rtag = s->modulo_to[row_index % (uint64_t)s->modulo];
            if (rtag == TL_TO_DROP) continue; /* the protocol leaves these rows out */
        }
        if ((st = tl_rawset_reserve(rs))) return st;
        st = parse_row(c, line, len, rs);
        if (st == TL_ERR_PARSE && s->on_bad == TL_BAD_SKIP) {
            tl_clear_error();
            tl_rawset_note_skip(rs, c->line);
            continue;
        }
        if (st) return st;
        const size_t r = rs->n;
        for (int t = 0; t < n_lab; t++) rs->npos[t] += rs->lab[r * (size_t)n_lab + (size_t)t] == 1.0f;
        rs->row[r] = (uint32_t)row_index;
        rs->tag[r] = rtag;
        rs->n++;
        rows_in_file++;
        if (c->cs && rs->n >= c->cs->chunk_rows) {
            if ((st = c->cs->chunk(c->cs->ud, rs, (uint64_t)gzoffset(c->lr.gz)))) return st;
            rs->n = 0;
            rs->bv_n = 0;
        }
    }
    if (c->cs && rs->n) {
        if ((st = c->cs->chunk(c->cs->ud, rs, (uint64_t)gzoffset(c->lr.gz)))) return st;
        rs->n = 0;
        rs->bv_n = 0;
    }
    if (data_row == 0) return tl_fail(TL_ERR_PARSE, "%s: empty file (no data rows)", c->path);
    if (rows_in_file == 0 && s->split != TL_SPLIT_MODULO)
        return tl_fail(TL_ERR_PARSE, "%s: every one of the %llu data rows is bad (first at line %llu)", c->path,
                       (unsigned long long)data_row, (unsigned long long)(rs->n_skip_lines ? rs->skip_lines[0] : 0));
    return TL_OK;
}

tl_status tl_data_read_csv(const tl_data_schema *s, const plan *p, const char *path, int8_t tag, rawset *rs)
{
    return tl_data_read_csv_stream(s, p, path, tag, rs, NULL);
}

tl_status tl_data_read_csv_stream(const tl_data_schema *s, const plan *p, const char *path, int8_t tag, rawset *rs,
                                  const csv_stream *cs)
{
    csvfile c;
    memset(&c, 0, sizeof c);
    c.cs = cs;
    c.s = s;
    c.p = p;
    c.path = path;
    c.seplen = strlen(s->sep);
    tl_status st = tl_lreader_open(&c.lr, path);
    if (st) return st;
    if ((st = read_columns(&c))) goto done;
    if ((st = colmap_make(s, p, path, c.names, c.ncols, rs, &c.m))) goto done;
    c.last = tl_malloc(sizeof *c.last * ((size_t)p->n_cat + 1), "column memo");
    if (!c.last) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    for (int k = 0; k < p->n_cat; k++) c.last[k] = -1;
    st = read_rows(&c, tag, rs);
done:
    csv_close(&c);
    return st;
}

int tl_data_hash_split(const tl_data_schema *s, uint64_t row) { return tl_data_split_of_row(s, row); }

/* ---- CSV loading ---------------------------------------------------------- */

/* With like=, a bag field keeps as many values per row as like's slots. */
static tl_status like_bag_caps(const tl_dataset *like, plan *p)
{
    for (int k = 0; k < p->n_bag; k++) {
        int b = 0;
        while (b < like->n_bag && strcmp(like->bag[b].c.name, p->bag[k]->name) != 0) b++;
        if (b == like->n_bag)
            return tl_fail(TL_ERR_ARG, "like: the first dataset has no multi-valued field '%s'", p->bag[k]->name);
        p->bag_cap[k] = like->bag[b].len;
    }
    return TL_OK;
}

tl_status tl_data_csv_load(const tl_data_schema *s, const tl_dataset *like, tl_dataset **out)
{
    static const char *fn = "tl_data_csv_load";
    if (!out) return tl_fail(TL_ERR_ARG, "%s: NULL output", fn);
    *out = NULL;
    tl_status st = tl_data_schema_check(s, fn);
    if (st) return st;
    plan p;
    if ((st = tl_data_plan_make(s, fn, &p))) {
        tl_data_plan_free(&p);
        return st;
    }
    const char *base = strrchr(s->path, '/');
    const char *source = s->name ? s->name : base ? base + 1 : s->path;
    const int use_cache = s->cache && !like;
    char *cpath = NULL;
    uint64_t key = 0;
    rawset rs;
    memset(&rs, 0, sizeof rs);
    if (use_cache && ((st = tl_data_cache_lookup(s, &key, &cpath, out)) || *out)) goto done;
    if ((st = tl_rawset_init(&rs, p.n_cat, p.n_num, s->n_labels, s->id != NULL, s->weight != NULL))) goto done;
    if (p.n_bag && (st = tl_rawset_init_bags(&rs, p.n_bag))) goto done;
    if (like && (st = like_bag_caps(like, &p))) goto done;
    rs.allow_unlabeled = like != NULL;
    if ((st = tl_data_read_csv(s, &p, s->path, TL_TO_TRAIN, &rs))) goto done;
    if (s->split == TL_SPLIT_FILES && !like) {
        if (s->valid_path && (st = tl_data_read_csv(s, &p, s->valid_path, TL_TO_VALID, &rs))) goto done;
        if (s->test_path && (st = tl_data_read_csv(s, &p, s->test_path, TL_TO_TEST, &rs))) goto done;
    }
    finish_args fa = {&p, s, like, source};
    if ((st = tl_data_finish(&rs, &fa, out))) goto done;
    if (use_cache) tl_data_cache_write(cpath, key, *out);
done:
    tl_rawset_free(&rs);
    tl_data_plan_free(&p);
    tl_free(cpath);
    return st;
}
