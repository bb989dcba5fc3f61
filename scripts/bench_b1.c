/* bench_b1.c — benchmark B1 (see README "Performance"): training and inference
 * throughput of Shared-Bottom, MMoE and PLE on 8 categorical fields x vocab
 * 10,000 x emb 16 plus 16 dense features, 2 binary tasks, Adam lr 1e-3, batch
 * 1024, float32, from seeded random data. Also measures the machine's sgemm
 * rate so each result can be shown as a fraction of the compute bound.
 *
 * Each model runs in a child process, so that its peak resident memory
 * (ru_maxrss from wait4: warm-up, timed training and inference) is its own.
 *
 * Output: one line per measurement, "key value", read by scripts/bench.sh.
 * usage: bench_b1 [threads] [reps] [model]   (model: only that one, for profiling) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gemm.h"
#include "model.h"

#define N_ROWS (1024 * 24)
#define FIELDS 8
#define VOCAB 10000
#define DENSE 16

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

extern void openblas_set_num_threads(int);

/* GFLOP/s of a [1024 x 144] x [144 x 2048] sgemm, the size of MMoE's first
 * layer: the better of OpenBLAS's own threads and the engine's split over its
 * pool (gemm.h), so the compute bound is the most this machine does. */
static double sgemm_rate(int threads)
{
    int m = 1024, k = 144, n = 2048, reps = 40;
    float *a = calloc((size_t)m * k, 4), *b = calloc((size_t)k * n, 4), *c = calloc((size_t)m * n, 4);
    for (int i = 0; i < m * k; i++) a[i] = (float)(i % 7) * 0.1f;
    for (int i = 0; i < k * n; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = 0.0;
    for (int way = 0; way < 2; way++) {
        openblas_set_num_threads(way == 0 ? threads : 1);
        for (int r = 0; r < 4; r++) { /* the first is a warm-up */
            double t = now();
            for (int i = 0; i < reps; i++) {
                if (way == 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n,
                                0.0f, c, n);
                else
                    tl_gemm(0, 0, m, n, k, a, k, b, n, 0.0f, c, n);
            }
            double rate = 2.0 * m * n * k * reps / (now() - t) / 1e9;
            if (r > 0 && rate > best) best = rate;
        }
    }
    openblas_set_num_threads(1); /* as the engine keeps it (core.c) */
    free(a);
    free(b);
    free(c);
    return best;
}

/* Forward GEMM FLOPs per sample of the three B1 models. */
static double flops_forward(tl_backbone_kind kind)
{
    double in = FIELDS * 16 + DENSE, towers = 2 * 2.0 * (128 * 64 + 64);
    switch (kind) {
    case TL_BACKBONE_SHARED_BOTTOM:
        return 2.0 * (in * 256 + 256 * 128) + towers;
    case TL_BACKBONE_MMOE:
        return 8 * 2.0 * (in * 256 + 256 * 128) + 2 * 2.0 * in * 8 + towers;
    default: /* PLE: 4 shared + 2x2 specific experts, 2 gates over 6 */
        return 8 * 2.0 * (in * 256 + 256 * 128) + 2 * 2.0 * in * 6 + towers;
    }
}

/* Build one B1 model, warm up, then time `reps` training epochs and
 * inference passes; prints its lines. Returns the process exit status. */
static int run_model(tl_backbone_kind kind, const char *name, const tl_split *s, float *pred,
                     int reps, double gflops)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    c.backbone.kind = kind;
    c.backbone.bottom = (tl_mlp_spec){2, {256, 128}, 0.0f};
    c.backbone.expert = (tl_mlp_spec){2, {256, 128}, 0.0f};
    c.backbone.experts = 8;
    c.backbone.levels = 1;
    c.backbone.shared = 4;
    c.backbone.specific = 2;
    c.n_cat = FIELDS;
    for (int f = 0; f < FIELDS; f++) c.vocab[f] = VOCAB;
    c.n_num = DENSE;
    c.emb_dim = 16;
    c.n_tasks = 2;
    for (int k = 0; k < 2; k++) {
        snprintf(c.tasks[k].name, sizeof c.tasks[k].name, "task%d", k + 1);
        c.tasks[k].type = TL_TASK_BINARY;
        c.tasks[k].tower = (tl_mlp_spec){1, {64}, 0.0f};
        c.tasks[k].weight = 1.0f;
        c.tasks[k].space = -1;
    }
    c.max_batch = 1024;
    tl_model *m;
    if (tl_model_new(&c, &m) != TL_OK) {
        fprintf(stderr, "bench_b1: %s\n", tl_errmsg());
        return 1;
    }
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = 1;
    o.optim = tl_optim_defaults(TL_OPTIM_ADAM);
    o.optim.lr = 1e-3f;
    double train[16], infer[16];
    if (reps > 16) reps = 16;
    tl_model_fit(m, s, NULL, &o); /* warm-up */
    tl_model_predict(m, s, pred);
    for (int r = 0; r < reps; r++) {
        double t = now();
        if (tl_model_fit(m, s, NULL, &o) != TL_OK) {
            fprintf(stderr, "bench_b1: %s\n", tl_errmsg());
            return 1;
        }
        train[r] = N_ROWS / (now() - t);
        t = now();
        tl_model_predict(m, s, pred);
        infer[r] = N_ROWS / (now() - t);
    }
    double tr = median(train, reps), inf = median(infer, reps);
    double bound = gflops * 1e9 / (3.0 * flops_forward(kind));
    printf("%s_train %.0f\n%s_infer %.0f\n%s_train_bound %.0f\n", name, tr, name, inf, name, bound);
    fflush(stdout);
    tl_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 3;
    if (reps < 1) reps = 1;
    tl_set_threads(threads);
    double gflops = sgemm_rate(threads);
    printf("sgemm_gflops %.1f\n", gflops);

    tl_split s = {0};
    s.name = "train";
    s.n = N_ROWS;
    s.cat = malloc(sizeof(int32_t) * N_ROWS * FIELDS);
    s.num = malloc(sizeof(float) * N_ROWS * DENSE);
    s.labels = malloc(sizeof(float) * N_ROWS * 2);
    tl_rng rng;
    tl_rng_seed(&rng, 42);
    for (size_t i = 0; i < (size_t)N_ROWS * FIELDS; i++) s.cat[i] = (int32_t)tl_rng_below(&rng, VOCAB);
    for (size_t i = 0; i < (size_t)N_ROWS * DENSE; i++) s.num[i] = tl_rng_normal(&rng);
    for (size_t i = 0; i < (size_t)N_ROWS * 2; i++) s.labels[i] = tl_rng_uniform(&rng) < 0.3f;
    float *pred = malloc(sizeof(float) * N_ROWS * 2);

    const tl_backbone_kind kinds[3] = {TL_BACKBONE_SHARED_BOTTOM, TL_BACKBONE_MMOE, TL_BACKBONE_PLE};
    const char *names[3] = {"shared_bottom", "mmoe", "ple"};
    const char *only = argc > 3 ? argv[3] : NULL;
    for (int mi = 0; mi < 3; mi++) {
        if (only && strcmp(only, names[mi]) != 0) continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("bench_b1: fork");
            return 1;
        }
        if (pid == 0) _exit(run_model(kinds[mi], names[mi], &s, pred, reps, gflops));
        int status;
        struct rusage ru;
        if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "bench_b1: %s failed\n", names[mi]);
            return 1;
        }
        printf("%s_rss_mb %.0f\n", names[mi], (double)ru.ru_maxrss / 1024.0); /* ru_maxrss in KiB */
    }
    free(s.cat);
    free(s.num);
    free(s.labels);
    free(pred);
    return 0;
}
