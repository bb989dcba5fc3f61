/* data/synthetic_data.c — the synthetic generators of synthetic.h packed as
 * datasets: the MMoE-paper regression pair directly, the user/item task pair
 * through raw rows and finishing like a loaded file.
 */
#include "synthetic_data.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "dataset.h"
#include "parallel.h"
#include "schema.h"

/* ---- synthetic ------------------------------------------------------------ */

tl_status tl_data_synthetic(const tl_synthetic_params *p, tl_dataset **out)
{
    if (!out) return tl_fail(TL_ERR_ARG, "synthetic: NULL output");
    *out = NULL;
    tl_status st = tl_synthetic_check(p);
    if (st) return st;
    tl_dataset *d = NULL;
    if ((st = tl_data_alloc(&d, 0, p->dim, 2))) goto fail;
    d->n = p->n;
    d->has_splits = 1;
    d->split_n[0] = (size_t)llround(0.8 * (double)p->n);
    d->split_n[1] = (size_t)llround(0.1 * (double)p->n);
    if (d->split_n[0] + d->split_n[1] > p->n) d->split_n[1] = p->n - d->split_n[0];
    d->split_n[2] = p->n - d->split_n[0] - d->split_n[1];
    d->source = tl_strdup("synthetic", "dataset source");
    d->catv = tl_malloc(sizeof(int32_t), "categorical features");
    d->numv = tl_malloc(sizeof(float) * p->n * (size_t)p->dim, "synthetic features");
    d->labv = tl_malloc(sizeof(float) * p->n * 2, "synthetic labels");
    d->row = tl_malloc(sizeof(uint32_t) * p->n, "row indices");
    if (!d->source || !d->catv || !d->numv || !d->labv || !d->row) {
        st = TL_ERR_NOMEM;
        goto fail;
    }
    for (int j = 0; j < p->dim; j++) {
        char nm[32];
        snprintf(nm, sizeof nm, "x%d", j + 1);
        d->num[j].transform = TL_NUM_NONE;
        d->num[j].mean = 0;
        d->num[j].std = 1;
        if (!(d->num[j].name = tl_strdup(nm, "column name"))) {
            st = TL_ERR_NOMEM;
            goto fail;
        }
    }
    for (int t = 0; t < 2; t++) {
        d->task_type[t] = TL_TASK_REGRESSION;
        if (!(d->task_name[t] = tl_strdup(t ? "y2" : "y1", "task name"))) {
            st = TL_ERR_NOMEM;
            goto fail;
        }
    }
    if ((st = tl_synthetic_generate(p, d->numv, d->labv))) goto fail;
    for (size_t i = 0; i < p->n; i++) d->row[i] = (uint32_t)i;
    tl_data_set_views(d);
    *out = d;
    return TL_OK;
fail:
    tl_dataset_free(d);
    return st;
}

/* The user/item task pair (synthetic.h): categorical user_id, item_id,
 * user_segment, item_category, context; numeric user_activity, item_price, x
 * (standardised on train); tasks a and b; random 8:1:1 split by the seed. */
tl_status tl_data_synthetic_pair(const tl_synth_pair_params *p, tl_dataset **out)
{
    static const char *fn = "synthetic_pair";
    if (!out) return tl_fail(TL_ERR_ARG, "%s: NULL output", fn);
    *out = NULL;
    tl_status st = tl_synth_pair_check(p);
    if (st) return st;
    const size_t n = p->rows;
    rawset rs;
    memset(&rs, 0, sizeof rs);
    plan pl;
    memset(&pl, 0, sizeof pl);
    int32_t *ci = tl_malloc(sizeof(int32_t) * 5 * n, "synthetic_pair columns");
    float *cf = tl_malloc(sizeof(float) * 5 * n, "synthetic_pair columns");
    if (!ci || !cf) {
        st = TL_ERR_NOMEM;
        goto done;
    }
    tl_synth_pair_out o = {ci, ci + n, ci + 2 * n, ci + 3 * n, ci + 4 * n, cf, cf + n, cf + 2 * n,
                           NULL, NULL, cf + 3 * n, cf + 4 * n};
    if ((st = tl_synth_pair_generate(p, &o))) goto done;
    static const char *const cats[5] = {"user_id", "item_id", "user_segment", "item_category", "context"};
    static const char *const nums[3] = {"user_activity", "item_price", "x"};
    tl_data_cat_col cat[5];
    tl_data_num_col num[3];
    for (int k = 0; k < 5; k++) cat[k] = (tl_data_cat_col){cats[k], 0, 0};
    for (int k = 0; k < 3; k++) num[k] = (tl_data_num_col){nums[k], TL_NUM_STANDARD, 0};
    static const char *const pos[] = {"1"}, *const neg[] = {"0"};
    tl_data_label lab[2] = {
        {.task = "a", .column = "a", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1, .negative = neg,
         .n_negative = 1},
        {.task = "b", .column = "b", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1, .negative = neg,
         .n_negative = 1},
    };
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = "synthetic_pair";
    s.cat = cat;
    s.n_cat = 5;
    s.num = num;
    s.n_num = 3;
    s.labels = lab;
    s.n_labels = 2;
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.8;
    s.ratio[1] = 0.1;
    s.ratio[2] = 0.1;
    s.seed = p->seed;
    if ((st = tl_data_plan_make(&s, fn, &pl))) goto done;
    if ((st = tl_rawset_init(&rs, 5, 3, 2, 0, 0))) goto done;
    for (size_t i = 0; i < n; i++) {
        if ((st = tl_rawset_reserve(&rs))) goto done;
        for (int k = 0; k < 5; k++) {
            char buf[16];
            int len = snprintf(buf, sizeof buf, "%d", (int)ci[(size_t)k * n + i]);
            if ((st = tl_strtab_intern(&rs.tab[k], buf, (size_t)len, &rs.cat[i * 5 + (size_t)k]))) goto done;
        }
        for (int k = 0; k < 3; k++) rs.num[i * 3 + (size_t)k] = cf[(size_t)k * n + i];
        rs.lab[i * 2] = cf[3 * n + i];
        rs.lab[i * 2 + 1] = cf[4 * n + i];
        rs.row[i] = (uint32_t)i;
        rs.n++;
    }
    char src[96];
    snprintf(src, sizeof src, "synthetic_pair(rho=%g, %s)", p->rho, p->nested ? "nested" : "not nested");
    finish_args fa = {&pl, &s, NULL, src};
    st = tl_data_finish(&rs, &fa, out);
done:
    tl_rawset_free(&rs);
    tl_data_plan_free(&pl);
    tl_free(ci);
    tl_free(cf);
    return st;
}

/* ---- the Ali-CCP-shaped stream into shards --------------------------------------- */

#define CCP_CHUNK 65536

/* The layout of the stream's rows in shards. */
static tl_status ccp_layout(const tl_synth_ccp *g, tl_shard_layout *l)
{
    tl_status st = tl_shard_layout_init(l, TL_SYNTH_CCP_CAT, TL_SYNTH_CCP_NUM, 2, TL_SYNTH_CCP_BAGS);
    static const char *const num[TL_SYNTH_CCP_NUM] = {"price", "age_days"};
    static const char *const task[2] = {"click", "purchase"};
    for (int f = 0; st == TL_OK && f < TL_SYNTH_CCP_CAT; f++) {
        const tl_synth_ccp_field *fi = tl_synth_ccp_field_info(g, 0, f);
        l->vocab[f] = fi->vocab;
        if (!(l->cat_name[f] = tl_strdup(fi->name, "layout name"))) st = TL_ERR_NOMEM;
    }
    for (int b = 0; st == TL_OK && b < TL_SYNTH_CCP_BAGS; b++) {
        const tl_synth_ccp_field *fi = tl_synth_ccp_field_info(g, 1, b);
        l->bag_vocab[b] = fi->vocab;
        l->bag_len[b] = fi->max_len;
        l->bag_pool[b] = TL_POOL_MEAN;
        if (!(l->bag_name[b] = tl_strdup(fi->name, "layout name"))) st = TL_ERR_NOMEM;
    }
    for (int j = 0; st == TL_OK && j < TL_SYNTH_CCP_NUM; j++)
        if (!(l->num_name[j] = tl_strdup(num[j], "layout name"))) st = TL_ERR_NOMEM;
    for (int t = 0; st == TL_OK && t < 2; t++) {
        l->task_type[t] = TL_TASK_BINARY;
        if (!(l->task_name[t] = tl_strdup(task[t], "layout name"))) st = TL_ERR_NOMEM;
    }
    if (st != TL_OK) tl_shard_layout_free(l);
    return st;
}

struct ccp_job {
    const tl_synth_ccp *g;
    uint64_t first;   /* stream index of the chunk's row 0 */
    size_t words, nbag;
    uint32_t *rows;
};

static void ccp_rows(void *ctx, size_t i0, size_t i1, int part)
{
    const struct ccp_job *j = ctx;
    (void)part;
    for (size_t i = i0; i < i1; i++) {
        uint32_t *w = j->rows + i * j->words;
        int32_t *cat = (int32_t *)w, *bag = cat + TL_SYNTH_CCP_CAT;
        float *num = (float *)(w + TL_SYNTH_CCP_CAT + j->nbag);
        tl_synth_ccp_row(j->g, j->first + i, cat, bag, num, num + TL_SYNTH_CCP_NUM);
    }
}

/* Generation (on the worker pool) and writing (checksums, system calls)
 * overlap: a writer thread takes filled chunks from two slots while the next
 * chunk is made. Only the writer thread touches the shard writer; the
 * calling thread allocates nothing while it runs (core.c's allocation
 * counter is not atomic). Errors in the writer thread carry their message
 * back (messages are per thread). */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tl_shard_writer *w;
    size_t words;
    uint32_t *buf[2];
    size_t n[2];
    int split[2], full[2], quit;
    tl_status st;
    char msg[512];
} ccp_pipe;

static void *ccp_writer(void *arg)
{
    ccp_pipe *q = arg;
    for (int k = 0;; k ^= 1) {
        pthread_mutex_lock(&q->mu);
        while (!q->full[k] && !q->quit) pthread_cond_wait(&q->cv, &q->mu);
        int have = q->full[k], failed = q->st != TL_OK;
        pthread_mutex_unlock(&q->mu);
        if (!have) break;
        tl_status st = TL_OK;
        for (size_t r = 0; !failed && r < q->n[k] && st == TL_OK; r++)
            st = tl_shard_writer_row(q->w, q->split[k], q->buf[k] + r * q->words);
        pthread_mutex_lock(&q->mu);
        if (st != TL_OK && q->st == TL_OK) {
            q->st = st;
            snprintf(q->msg, sizeof q->msg, "%s", tl_errmsg());
        }
        q->full[k] = 0;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
    return NULL;
}

/* The shortest decimal of x that reads back as x. */
static void exact_g(char *out, size_t cap, double x)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, x);
        if (strtod(out, NULL) == x) return;
    }
}

/* The record of a generation (tl_shards_record_check, shards.h): the seed,
 * the rows asked for (the valid and test rows follow the train rows in the
 * stream), the rows per shard and every parameter that changes rows. */
static tl_status ccp_record(const tl_synth_ccp_params *p, const uint64_t rows[3], const char *dir,
                            size_t rows_per_shard)
{
    const char *name[5] = {"ctr", "cvr", "zipf", "id_scale", "signal"};
    const double v[5] = {p->ctr, p->cvr, p->zipf, p->id_scale, p->signal};
    char rec[1024];
    int n = snprintf(rec, sizeof rec, "writer synthetic_ccp\nseed %llu\nrows %llu %llu %llu\nrows_per_shard %zu\n",
                     (unsigned long long)p->seed, (unsigned long long)rows[0], (unsigned long long)rows[1],
                     (unsigned long long)rows[2], rows_per_shard ? rows_per_shard : (size_t)262144);
    for (int k = 0; k < 5; k++) {
        char g[32];
        exact_g(g, sizeof g, v[k]);
        n += snprintf(rec + n, sizeof rec - (size_t)n, "%s %s\n", name[k], g);
    }
    return tl_shards_record_check(dir, rec, "run it again with the stopped run's seed, rows and parameters");
}

tl_status tl_data_synth_ccp_shards(const tl_synth_ccp_params *p, const uint64_t rows[3], const char *dir,
                                   size_t rows_per_shard, tl_shard_progress progress, void *ud)
{
    tl_synth_ccp *g;
    tl_status st = tl_synth_ccp_new(p, &g);
    if (st != TL_OK) return st;
    tl_shard_layout l;
    if ((st = ccp_layout(g, &l)) != TL_OK) {
        tl_synth_ccp_free(g);
        return st;
    }
    uint64_t done[3], total = rows[0] + rows[1] + rows[2], at = 0, base = 0;
    ccp_pipe q;
    memset(&q, 0, sizeof q);
    st = ccp_record(p, rows, dir, rows_per_shard);
    if (st == TL_OK) st = tl_shard_writer_open(dir, &l, rows_per_shard, &q.w, done);
    struct ccp_job job = {g, 0, tl_shard_layout_words(&l), 0, NULL};
    for (int b = 0; b < TL_SYNTH_CCP_BAGS; b++) job.nbag += (size_t)l.bag_len[b];
    q.words = job.words;
    for (int k = 0; k < 2 && st == TL_OK; k++)
        if (!(q.buf[k] = tl_malloc(CCP_CHUNK * job.words * 4, "synthetic rows"))) st = TL_ERR_NOMEM;
    pthread_t tid;
    int started = 0;
    if (st == TL_OK) {
        pthread_mutex_init(&q.mu, NULL);
        pthread_cond_init(&q.cv, NULL);
        if (pthread_create(&tid, NULL, ccp_writer, &q) != 0) st = tl_fail(TL_ERR_STATE, "synthetic ccp: no writer thread");
        else started = 1;
    }
    int slot = 0;
    for (int k = 0; st == TL_OK && k < 3; base += rows[k], k++) {
        if (done[k] > rows[k]) {
            st = tl_fail(TL_ERR_STATE, "synthetic ccp: %s holds more rows than asked for; delete it", dir);
            break;
        }
        at += done[k];
        for (uint64_t i = done[k]; st == TL_OK && i < rows[k];) {
            if (tl_cancelled() || (progress && progress(ud, at, total))) {
                st = tl_fail(TL_ERR_CANCELLED, "synthetic ccp into %s interrupted after %llu of %llu rows; the "
                                               "complete shards are kept: run it again to resume",
                             dir, (unsigned long long)at, (unsigned long long)total);
                break;
            }
            pthread_mutex_lock(&q.mu);
            while (q.full[slot] && q.st == TL_OK) pthread_cond_wait(&q.cv, &q.mu);
            int failed = q.st != TL_OK;
            pthread_mutex_unlock(&q.mu);
            if (failed) break;
            size_t n = rows[k] - i < CCP_CHUNK ? (size_t)(rows[k] - i) : CCP_CHUNK;
            job.first = base + i;
            job.rows = q.buf[slot];
            tl_parallel_for(n, 1024, ccp_rows, &job);
            pthread_mutex_lock(&q.mu);
            q.n[slot] = n;
            q.split[slot] = k;
            q.full[slot] = 1;
            pthread_cond_broadcast(&q.cv);
            pthread_mutex_unlock(&q.mu);
            slot ^= 1;
            i += n;
            at += n;
        }
    }
    if (started) {
        pthread_mutex_lock(&q.mu);
        q.quit = 1;
        pthread_cond_broadcast(&q.cv);
        pthread_mutex_unlock(&q.mu);
        pthread_join(tid, NULL);
        pthread_cond_destroy(&q.cv);
        pthread_mutex_destroy(&q.mu);
        /* a writer error outranks a stop asked for while it happened */
        if (q.st != TL_OK) st = tl_fail(q.st, "%s", q.msg);
    }
    if (st == TL_OK) st = tl_shard_writer_finish(q.w);
    if (st == TL_OK && progress) progress(ud, total, total);
    tl_shard_writer_close(q.w);
    tl_free(q.buf[0]);
    tl_free(q.buf[1]);
    tl_shard_layout_free(&l);
    tl_synth_ccp_free(g);
    return st;
}
