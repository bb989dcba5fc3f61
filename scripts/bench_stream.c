/* bench_stream.c — large-data path (issue 24): the Ali-CCP-shaped synthetic
 * stream into shards, dataset → shards conversion, and training on a shard
 * stream against the same model on the same rows in memory. Each mode prints
 * "key value" lines; peak RSS is getrusage's, so run each mode in its own
 * process (scripts/bench_stream.sh does).
 *
 *   bench_stream gen DIR TRAIN_ROWS [THREADS]     synthetic ccp → DIR (+1% valid, test)
 *   bench_stream rowgen ROWS                      the generator alone, one thread
 *   bench_stream convert DIR ROWS                 synthetic pair dataset → DIR
 *   bench_stream read DIR                         one shuffled epoch of DIR's train split
 *   bench_stream train DIR stream|memory EPOCHS [THREADS]
 *                                                 an MMoE on DIR's train split
 *   bench_stream csvgen FILE ROWS                 a CSV of ROWS impressions (below)
 *   bench_stream csvconv FILE DIR stream|hashed|memory
 *                                                 FILE → shards in DIR: streamed
 *                                                 (tl_shards_convert_csv; hashed: user
 *                                                 hashed too) or loaded whole, then
 *                                                 converted
 *
 * The CSV: user (Zipf-like over 1 M ids), item (over 2 M, hash=2^20), 6
 * categorical fields of 10..10,000 values, a multi-valued field of up to 5
 * tags (over 1,000), 3 numbers (one in 10 quantile buckets, from the
 * sketch), click and buy labels; a ratio split 0.98/0.01/0.01 by hash (so
 * both ways give the same shards). About 56 bytes a row.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "data.h"
#include "model.h"
#include "parallel.h"
#include "synthetic.h"
#include "bench_clock.h"

static void rss(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak_rss_mb %.1f\n", (double)ru.ru_maxrss / 1024.0);
}

static int die(const char *what)
{
    fprintf(stderr, "bench_stream: %s: %s\n", what, tl_errmsg());
    return 1;
}

static int gen(const char *dir, uint64_t n)
{
    tl_synth_ccp_params p;
    tl_synth_ccp_defaults(&p);
    uint64_t rows[3] = {n, n / 100 ? n / 100 : 1, n / 100 ? n / 100 : 1};
    double t0 = bench_clock(CLOCK_MONOTONIC), c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
    if (tl_data_synth_ccp_shards(&p, rows, dir, 0, NULL, NULL) != TL_OK) return die("gen");
    double t = bench_clock(CLOCK_MONOTONIC) - t0, c = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0, all = (double)(rows[0] + rows[1] + rows[2]);
    printf("gen_rows %.0f\ngen_rows_per_s %.0f\ngen_cpu_rows_per_s %.0f\n", all, all / t, all / c);
    rss();
    return 0;
}

static int rowgen(uint64_t n)
{
    tl_synth_ccp_params p;
    tl_synth_ccp_defaults(&p);
    tl_synth_ccp *g;
    if (tl_synth_ccp_new(&p, &g) != TL_OK) return die("rowgen");
    int32_t cat[TL_SYNTH_CCP_CAT], bag[64];
    float num[4], lab[2];
    double sum = 0, c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
    for (uint64_t i = 0; i < n; i++) {
        tl_synth_ccp_row(g, i, cat, bag, num, lab);
        sum += (double)lab[0];
    }
    double c = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("rowgen_cpu_rows_per_s %.0f\nrowgen_ctr %.4f\n", (double)n / c, sum / (double)n);
    tl_synth_ccp_free(g);
    return 0;
}

static int convert(const char *dir, uint64_t n)
{
    tl_synth_pair_params p;
    tl_synth_pair_defaults(&p);
    p.rows = (size_t)n;
    tl_dataset *d;
    if (tl_data_synthetic_pair(&p, &d) != TL_OK) return die("dataset");
    double t0 = bench_clock(CLOCK_MONOTONIC);
    if (tl_shards_convert(d, dir, 0, NULL, NULL) != TL_OK) return die("convert");
    printf("convert_rows_per_s %.0f\n", (double)n / (bench_clock(CLOCK_MONOTONIC) - t0));
    tl_dataset_free(d);
    return 0;
}

static int read_epoch(const char *dir)
{
    tl_shards *sh;
    tl_stream *s;
    if (tl_shards_open(dir, &sh) != TL_OK || tl_stream_open(sh, 0, 1, 0, TL_STREAM_SHUFFLE, &s) != TL_OK ||
        tl_stream_reserve(s, 2048) != TL_OK)
        return die("open");
    double t0 = bench_clock(CLOCK_MONOTONIC), sum = 0;
    uint64_t n = 0;
    for (;;) {
        tl_split b;
        int got;
        if (tl_stream_next(s, 2048, &b, NULL, &got) != TL_OK) return die("read");
        if (!got) break;
        for (int i = 0; i < got; i++) sum += (double)b.labels[i * 2];
        n += (uint64_t)got;
    }
    double t = bench_clock(CLOCK_MONOTONIC) - t0;
    printf("read_rows %llu\nread_rows_per_s %.0f\nread_ctr %.4f\n", (unsigned long long)n, (double)n / t, sum / (double)n);
    rss();
    tl_stream_close(s);
    tl_shards_close(sh);
    return 0;
}

static int train(const char *dir, int stream, int epochs)
{
    tl_shards *sh;
    tl_dataset *layout, *mem = NULL;
    if (tl_shards_open(dir, &sh) != TL_OK) return die("open");
    if (tl_shards_load(sh, (int[3]){0, 1, 0}, 0, &layout) != TL_OK) return die("valid");
    if (!stream && tl_shards_load(sh, (int[3]){1, 0, 0}, 0, &mem) != TL_OK) return die("load");
    tl_model_config c;
    tl_model_config_defaults(&c);
    tl_mlp_spec tower = {1, {64}, 0};
    c.backbone.kind = TL_BACKBONE_MMOE;
    c.backbone.expert = (tl_mlp_spec){1, {128}, 0};
    c.backbone.experts = 4;
    c.emb_dim = 8;
    c.max_batch = 2048;
    c.seed = 1;
    tl_model *m;
    if (tl_model_config_from_dataset(&c, layout, &tower) != TL_OK || tl_model_new(&c, &m) != TL_OK)
        return die("model");
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = epochs;
    o.batch = 2048;
    tl_stream *s = NULL;
    if (stream && tl_stream_open(sh, 0, 1, 0, TL_STREAM_SHUFFLE, &s) != TL_OK) return die("stream");
    double t0 = bench_clock(CLOCK_MONOTONIC), c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
    tl_status st = stream ? tl_model_fit_stream(m, s, NULL, &o)
                          : tl_model_fit(m, tl_dataset_split(mem, "train"), NULL, &o);
    if (st != TL_OK) return die("fit");
    double t = bench_clock(CLOCK_MONOTONIC) - t0, cpu = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0, rows = (double)tl_shards_rows(sh, 0) * epochs;
    printf("train_%s_cpu_rows_per_s %.0f\n", stream ? "stream" : "memory", rows / cpu);
    tl_task_eval ev[TL_MAX_TASKS];
    if (tl_model_evaluate(m, tl_dataset_split(layout, "valid"), 10, ev, NULL) != TL_OK) return die("evaluate");
    printf("train_%s_rows_per_s %.0f\ntrain_%s_valid_auc_click %.4f\n", stream ? "stream" : "memory", rows / t,
           stream ? "stream" : "memory", ev[0].bin.auc);
    rss();
    tl_stream_close(s);
    tl_model_free(m);
    tl_dataset_free(mem);
    tl_dataset_free(layout);
    tl_shards_close(sh);
    return 0;
}

static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
    return *x >> 24;
}

/* A skewed id below n: small ids are common (log-uniform). */
static uint64_t skewed(uint64_t *x, double n)
{
    double u = (double)(lcg(x) & 0xffffff) / 16777216.0;
    return (uint64_t)(exp(u * log(n + 1)) - 1);
}

static int csvgen(const char *path, uint64_t n)
{
    FILE *f = fopen(path, "w");
    if (!f) return die("csvgen: cannot create the file");
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    fputs("user,item,c1,c2,c3,c4,c5,c6,tags,price,age,score,click,buy\n", f);
    uint64_t x = 42;
    for (uint64_t r = 0; r < n; r++) {
        uint64_t u = skewed(&x, 1e6), it = skewed(&x, 2e6);
        fprintf(f, "u%llu,i%llu", (unsigned long long)u, (unsigned long long)it);
        static const double card[6] = {10, 30, 100, 300, 1000, 10000};
        for (int k = 0; k < 6; k++) fprintf(f, ",%llu", (unsigned long long)skewed(&x, card[k]));
        fputc(',', f);
        int nt = (int)(lcg(&x) % 6);
        for (int k = 0; k < nt; k++) fprintf(f, "%st%llu", k ? "|" : "", (unsigned long long)skewed(&x, 1000));
        int click = lcg(&x) % 25 == 0, buy = click && lcg(&x) % 20 == 0;
        fprintf(f, ",%.2f,%llu,%.3f,%d,%d\n", (double)(lcg(&x) % 100000) / 100.0, (unsigned long long)(lcg(&x) % 3650),
                (double)(lcg(&x) % 1000) / 1000.0, click, buy);
    }
    if (fclose(f) != 0) return die("csvgen: write failed");
    return 0;
}

static int csvconv(const char *path, const char *dir, int stream, int hashed)
{
    tl_data_cat_col cats[] = {{"user", 0, hashed ? 1 << 20 : 0}, {"item", 0, 1 << 20}, {"c1", 0, 0}, {"c2", 0, 0},
                              {"c3", 0, 0},   {"c4", 0, 0},         {"c5", 0, 0}, {"c6", 0, 0}};
    static const tl_data_num_col nums[] = {
        {"price", TL_NUM_LOG1P, 0}, {"age", TL_NUM_STANDARD, 0}, {"score", TL_NUM_QUANTILE, 10}};
    static const tl_data_bag_col bags[] = {{"tags", "|", TL_POOL_MEAN, 5, 0, 0, 0}};
    static const char *const pos[] = {"1"};
    static const tl_data_label lab[] = {
        {.task = "click", .column = "click", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1},
        {.task = "buy", .column = "buy", .kind = TL_LABEL_POSITIVE, .positive = pos, .n_positive = 1}};
    tl_data_schema s;
    tl_data_schema_init(&s);
    s.path = path;
    s.cat = cats;
    s.n_cat = 8;
    s.num = nums;
    s.n_num = 3;
    s.bag = bags;
    s.n_bag = 1;
    s.labels = lab;
    s.n_labels = 2;
    s.split = TL_SPLIT_RATIO;
    s.ratio[0] = 0.98;
    s.ratio[1] = s.ratio[2] = 0.01;
    s.split_by_hash = 1;
    s.quantile_sketch = 1; /* the stream's edges above 2^20 values: the same shards both ways */
    double t0 = bench_clock(CLOCK_MONOTONIC), c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
    uint64_t rows = 0;
    if (stream) {
        tl_convert_report r;
        if (tl_shards_convert_csv(&s, dir, 0, NULL, NULL, &r) != TL_OK) return die("csvconv");
        rows = r.rows[0] + r.rows[1] + r.rows[2];
    } else {
        tl_dataset *d;
        if (tl_data_csv_load(&s, NULL, &d) != TL_OK) return die("csv load");
        if (tl_shards_convert(d, dir, 0, NULL, NULL) != TL_OK) return die("convert");
        rows = tl_dataset_split(d, "all")->n;
        tl_dataset_free(d);
    }
    double t = bench_clock(CLOCK_MONOTONIC) - t0, c = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0;
    const char *m = !stream ? "csv_memory" : hashed ? "csv_hashed" : "csv_stream";
    printf("%s_rows %llu\n%s_rows_per_s %.0f\n%s_cpu_rows_per_s %.0f\n", m, (unsigned long long)rows, m,
           (double)rows / t, m, (double)rows / c);
    rss();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: see the comment at the top of scripts/bench_stream.c\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "rowgen") == 0) return rowgen(strtoull(argv[2], NULL, 10));
    if (strcmp(mode, "read") == 0) return read_epoch(argv[2]);
    if (argc < 4) return 2;
    if (strcmp(mode, "gen") == 0) {
        if (argc > 4) tl_set_threads(atoi(argv[4]));
        return gen(argv[2], strtoull(argv[3], NULL, 10));
    }
    if (strcmp(mode, "convert") == 0) return convert(argv[2], strtoull(argv[3], NULL, 10));
    if (strcmp(mode, "csvgen") == 0) return csvgen(argv[2], strtoull(argv[3], NULL, 10));
    if (strcmp(mode, "csvconv") == 0) {
        if (argc < 5) return 2;
        return csvconv(argv[2], argv[3], strcmp(argv[4], "memory") != 0, strcmp(argv[4], "hashed") == 0);
    }
    if (strcmp(mode, "train") == 0) {
        if (argc < 5) return 2;
        if (argc > 5) tl_set_threads(atoi(argv[5]));
        return train(argv[2], strcmp(argv[3], "stream") == 0, atoi(argv[4]));
    }
    return 2;
}
