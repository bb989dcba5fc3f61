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
 * Model "paper" (or paper_mmoe, paper_ple, paper_dml, paper_crossdistil) runs
 * instead the papers' configuration (run_paper below), in this process.
 * Training does not shuffle rows (fit's shuffle=0), as the strongest PyTorch
 * loop of scripts/bench_torch.py does not: both sides see the same order.
 *
 * usage: bench_b1 [threads] [reps] [model]   (model: only that one, for profiling;
 *        "scaling": the rows/s table of scripts/bench_scaling.sh) */
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
#include "parallel.h"
#include "bench_clock.h"

#define N_ROWS (1024 * 24)
#define FIELDS 8
#define VOCAB 10000
#define DENSE 16
#define MAX_T 8 /* the most tasks the scaling run uses */

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
            double t = bench_clock(CLOCK_MONOTONIC);
            for (int i = 0; i < reps; i++) {
                if (way == 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n,
                                0.0f, c, n);
                else
                    tl_gemm(0, 0, m, n, k, a, k, b, n, 0.0f, c, n);
            }
            double rate = 2.0 * m * n * k * reps / (bench_clock(CLOCK_MONOTONIC) - t) / 1e9;
            if (r > 0 && rate > best) best = rate;
        }
    }
    openblas_set_num_threads(1); /* as the engine keeps it (core.c) */
    free(a);
    free(b);
    free(c);
    return best;
}

/* Forward GEMM FLOPs per sample of the B1 models (E experts, T tasks). */
static double flops_forward(tl_backbone_kind kind, int E, int T)
{
    double in = FIELDS * 16 + DENSE, towers = T * 2.0 * (128 * 64 + 64), expert = 2.0 * (in * 256 + 256 * 128);
    switch (kind) {
    case TL_BACKBONE_SHARED_BOTTOM:
        return expert + towers;
    case TL_BACKBONE_MMOE:
        return E * expert + T * 2.0 * in * E + towers;
    default: /* PLE: 4 shared + 2x2 specific experts, 2 gates over 6 */
        return 8 * expert + 2 * 2.0 * in * 6 + towers;
    }
}

/* ---- the papers' configuration (issue 18: DML and CrossDistil steps) ----
 * MMoE as DML and CrossDistil ran it: emb 8, 3 experts [128], towers [128, 80],
 * dropout 0.5 on experts, towers and DML's parts, batch 512, Adam 1e-3, on a
 * census-shaped input (32 categorical fields, vocab 100 each, 7 numeric; two
 * binary tasks at census's rates, 6 % and 43 %). Variants: the base, DML
 * (CTFM + GKD) and CrossDistil in full (teachers, quadruplet loss, Platt
 * calibrator fitted on valid at epoch ends, blend correction, kd 0.5). Every
 * variant fits with the same validation split (1/8 of the rows, as an 8:1:1
 * split has), so an epoch is what the papers' protocol runs. */
#define P_ROWS (512 * 48)
#define P_VALID (P_ROWS / 8)
#define P_FIELDS 32
#define P_VOCAB 100
#define P_DENSE 7

/* Training GEMM FLOPs per row of a paper row (forward + backward; embedding
 * lookups and elementwise work left out): 3x the forward FLOPs of a layer
 * whose input needs a gradient, 2x of one that reads a stop-gradient copy
 * (DML's CTFM keys and values, GKD's global experience). 0 for CrossDistil,
 * whose teachers' size depends on its options: not counted. */
static double train_flops_paper(const char *name)
{
    double in = P_FIELDS * 8 + P_DENSE, d = 128, K = 2;
    double towers = K * 2.0 * (d * 128 + 128 * 80 + 80), backbone;
    if (strcmp(name, "paper_crossdistil") == 0) return 0.0;
    if (strcmp(name, "paper_ple") == 0) /* 2 levels; level 1: 3 experts, 2 task gates over 2, a shared gate over 3 */
        backbone = 3 * 2.0 * in * d + K * 2.0 * in * 2 + 2.0 * in * 3 + 3 * 2.0 * d * d + K * 2.0 * d * 2;
    else
        backbone = 3 * 2.0 * in * d + K * 2.0 * in * 3;
    double f = 3.0 * (backbone + towers);
    if (strcmp(name, "paper_dml") == 0) /* CTFM: Q, then K and V on sg(X); GKD: u on sg(t), gate a and v */
        f += 3.0 * K * 2.0 * d * d + 2.0 * 2 * K * 2.0 * d * d + 2.0 * K * 2.0 * (K * 80) * 80 +
             3.0 * K * 2.0 * (160 * 80 + 80);
    return f;
}

static int run_paper(const char *name, const tl_split *s, const tl_split *v, int reps, double gflops)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    int ple = strcmp(name, "paper_ple") == 0;
    c.backbone.kind = ple ? TL_BACKBONE_PLE : TL_BACKBONE_MMOE;
    c.backbone.expert = (tl_mlp_spec){1, {128}, 0.5f};
    c.backbone.experts = 3;
    c.backbone.levels = 2;
    c.backbone.shared = 1;
    c.backbone.specific = 1;
    c.n_cat = P_FIELDS;
    for (int f = 0; f < P_FIELDS; f++) c.vocab[f] = P_VOCAB;
    c.n_num = P_DENSE;
    c.emb_dim = 8;
    c.n_tasks = 2;
    for (int k = 0; k < 2; k++) {
        snprintf(c.tasks[k].name, sizeof c.tasks[k].name, "task%d", k + 1);
        c.tasks[k].type = TL_TASK_BINARY;
        c.tasks[k].tower = (tl_mlp_spec){2, {128, 80}, 0.5f};
        c.tasks[k].weight = 1.0f;
        c.tasks[k].space = -1;
    }
    c.max_batch = 512;
    if (strcmp(name, "paper_dml") == 0) c.dml = (tl_dml_spec){1, 1, 1, 1, 1, 0.5f, 0u};
    if (strcmp(name, "paper_crossdistil") == 0) {
        c.distill.enabled = 1;
        c.distill.n_pairs = 1;
        c.distill.pairs[0][0] = 0;
        c.distill.pairs[0][1] = 1;
    }
    tl_model *m;
    if (tl_model_new(&c, &m) != TL_OK) {
        fprintf(stderr, "bench_b1: %s: %s\n", name, tl_errmsg());
        return 1;
    }
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = 1;
    o.batch = 512;
    o.shuffle = 0;
    o.optim = tl_optim_defaults(TL_OPTIM_ADAM);
    o.optim.lr = 1e-3f;
    double train[16], cpu[16];
    if (reps > 16) reps = 16;
    if (tl_model_fit(m, s, v, &o) != TL_OK) { /* warm-up */
        fprintf(stderr, "bench_b1: %s: %s\n", name, tl_errmsg());
        return 1;
    }
    for (int r = 0; r < reps; r++) {
        double t = bench_clock(CLOCK_MONOTONIC), c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
        if (tl_model_fit(m, s, v, &o) != TL_OK) {
            fprintf(stderr, "bench_b1: %s: %s\n", name, tl_errmsg());
            return 1;
        }
        train[r] = P_ROWS / (bench_clock(CLOCK_MONOTONIC) - t);
        cpu[r] = P_ROWS / (bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0);
    }
    printf("%s_train %.0f\n%s_cpu %.0f\n", name, bench_median(train, reps), name, bench_median(cpu, reps));
    double f = train_flops_paper(name);
    if (f > 0.0) printf("%s_train_bound %.0f\n%s_flops %.0f\n", name, gflops * 1e9 / f, name, f);
    fflush(stdout);
    tl_model_free(m);
    return 0;
}

static int paper_main(const char *only, int reps, double gflops)
{
    size_t n = P_ROWS + P_VALID;
    int32_t *cat = malloc(sizeof(int32_t) * n * P_FIELDS);
    float *num = malloc(sizeof(float) * n * P_DENSE), *labels = malloc(sizeof(float) * n * 2);
    if (!cat || !num || !labels) return 1;
    tl_rng rng;
    tl_rng_seed(&rng, 43);
    for (size_t i = 0; i < n * P_FIELDS; i++) cat[i] = (int32_t)tl_rng_below(&rng, P_VOCAB);
    for (size_t i = 0; i < n * P_DENSE; i++) num[i] = tl_rng_normal(&rng);
    for (size_t i = 0; i < n; i++) {
        labels[2 * i] = tl_rng_uniform(&rng) < 0.06f;
        labels[2 * i + 1] = tl_rng_uniform(&rng) < 0.43f;
    }
    tl_split s = {0}, v = {0};
    s.name = "train";
    s.n = P_ROWS;
    s.cat = cat;
    s.num = num;
    s.labels = labels;
    v.name = "valid";
    v.n = P_VALID;
    v.cat = cat + (size_t)P_ROWS * P_FIELDS;
    v.num = num + (size_t)P_ROWS * P_DENSE;
    v.labels = labels + (size_t)P_ROWS * 2;
    const char *names[4] = {"paper_mmoe", "paper_ple", "paper_dml", "paper_crossdistil"};
    int st = 0;
    for (int i = 0; i < 4 && !st; i++) {
        if (strcmp(only, "paper") && strcmp(only, names[i])) continue;
        /* a child per variant, so that its peak RSS is its own (as run_model's) */
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("bench_b1: fork");
            st = 1;
            break;
        }
        if (pid == 0) _exit(run_paper(names[i], &s, &v, reps, gflops));
        int status;
        struct rusage ru;
        if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "bench_b1: %s failed\n", names[i]);
            st = 1;
            break;
        }
        printf("%s_rss_mb %.0f\n", names[i], (double)ru.ru_maxrss / 1024.0); /* KiB */
    }
    free(cat);
    free(num);
    free(labels);
    return st;
}

/* Build one B1 model (MMoE with E experts; T tasks; batch B), warm up, then
 * time `reps` training epochs and inference passes; prints its lines (key
 * prefix `name`). Returns the process exit status. */
static int run_model(tl_backbone_kind kind, const char *name, const tl_split *s, float *pred,
                     int reps, double gflops, int E, int T, int B)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    c.backbone.kind = kind;
    c.backbone.bottom = (tl_mlp_spec){2, {256, 128}, 0.0f};
    c.backbone.expert = (tl_mlp_spec){2, {256, 128}, 0.0f};
    c.backbone.experts = E;
    c.backbone.levels = 1;
    c.backbone.shared = 4;
    c.backbone.specific = 2;
    c.n_cat = FIELDS;
    for (int f = 0; f < FIELDS; f++) c.vocab[f] = VOCAB;
    c.n_num = DENSE;
    c.emb_dim = 16;
    c.n_tasks = T;
    for (int k = 0; k < T; k++) {
        snprintf(c.tasks[k].name, sizeof c.tasks[k].name, "task%d", k + 1);
        c.tasks[k].type = TL_TASK_BINARY;
        c.tasks[k].tower = (tl_mlp_spec){1, {64}, 0.0f};
        c.tasks[k].weight = 1.0f;
        c.tasks[k].space = -1;
    }
    c.max_batch = B;
    tl_model *m;
    if (tl_model_new(&c, &m) != TL_OK) {
        fprintf(stderr, "bench_b1: %s\n", tl_errmsg());
        return 1;
    }
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = 1;
    o.batch = B;
    o.shuffle = 0;
    o.optim = tl_optim_defaults(TL_OPTIM_ADAM);
    o.optim.lr = 1e-3f;
    double train[16], infer[16];
    if (reps > 16) reps = 16;
    tl_model_fit(m, s, NULL, &o); /* warm-up */
    tl_model_predict(m, s, pred);
    for (int r = 0; r < reps; r++) {
        double t = bench_clock(CLOCK_MONOTONIC);
        if (tl_model_fit(m, s, NULL, &o) != TL_OK) {
            fprintf(stderr, "bench_b1: %s\n", tl_errmsg());
            return 1;
        }
        train[r] = N_ROWS / (bench_clock(CLOCK_MONOTONIC) - t);
        t = bench_clock(CLOCK_MONOTONIC);
        tl_model_predict(m, s, pred);
        infer[r] = N_ROWS / (bench_clock(CLOCK_MONOTONIC) - t);
    }
    double tr = bench_median(train, reps), inf = bench_median(infer, reps);
    double bound = gflops * 1e9 / (3.0 * flops_forward(kind, E, T));
    printf("%s_train %.0f\n%s_infer %.0f\n%s_train_bound %.0f\n", name, tr, name, inf, name, bound);
    fflush(stdout);
    tl_model_free(m);
    return 0;
}

/* Model "scaling": B1-MMoE training rows/s against the batch size (experts 8,
 * tasks 2), the number of experts (batch 1024, tasks 2) and of tasks (batch
 * 1024, experts 8), each as run_model's lines named <axis>_<value>
 * (scripts/bench_scaling.sh tabulates and plots them). */
static int scaling(const tl_split *s, float *pred, int reps, double gflops)
{
    static const int batches[] = {64, 128, 256, 512, 1024, 2048, 4096, 8192};
    static const int experts[] = {2, 4, 8, 16, 32}, tasks[] = {2, 4, 8};
    struct { const char *axis; const int *v; int n; } axes[3] = {
        {"batch", batches, 8}, {"experts", experts, 5}, {"tasks", tasks, 3}};
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < axes[a].n; i++) {
            int v = axes[a].v[i], B = a == 0 ? v : 1024, E = a == 1 ? v : 8, T = a == 2 ? v : 2;
            char name[32];
            snprintf(name, sizeof name, "%s_%d", axes[a].axis, v);
            if (run_model(TL_BACKBONE_MMOE, name, s, pred, reps, gflops, E, T, B)) return 1;
        }
    return 0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 3;
    if (reps < 1) reps = 1;
    tl_set_threads(threads);
    const char *only = argc > 3 ? argv[3] : NULL;
    double gflops = sgemm_rate(threads);
    printf("sgemm_gflops %.1f\n", gflops);
    if (only && strncmp(only, "paper", 5) == 0) return paper_main(only, reps, gflops);

    tl_split s = {0};
    s.name = "train";
    s.n = N_ROWS;
    s.cat = malloc(sizeof(int32_t) * N_ROWS * FIELDS);
    s.num = malloc(sizeof(float) * N_ROWS * DENSE);
    s.labels = malloc(sizeof(float) * N_ROWS * MAX_T);
    tl_rng rng;
    tl_rng_seed(&rng, 42);
    for (size_t i = 0; i < (size_t)N_ROWS * FIELDS; i++) s.cat[i] = (int32_t)tl_rng_below(&rng, VOCAB);
    for (size_t i = 0; i < (size_t)N_ROWS * DENSE; i++) s.num[i] = tl_rng_normal(&rng);
    float *pred = malloc(sizeof(float) * N_ROWS * MAX_T);
    if (only && strcmp(only, "scaling") == 0) {
        for (size_t i = 0; i < (size_t)N_ROWS * MAX_T; i++) s.labels[i] = tl_rng_uniform(&rng) < 0.3f;
        return scaling(&s, pred, reps, gflops);
    }
    for (size_t i = 0; i < (size_t)N_ROWS * 2; i++) s.labels[i] = tl_rng_uniform(&rng) < 0.3f;

    const tl_backbone_kind kinds[3] = {TL_BACKBONE_SHARED_BOTTOM, TL_BACKBONE_MMOE, TL_BACKBONE_PLE};
    const char *names[3] = {"shared_bottom", "mmoe", "ple"};
    for (int mi = 0; mi < 3; mi++) {
        if (only && strcmp(only, names[mi]) != 0) continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("bench_b1: fork");
            return 1;
        }
        if (pid == 0) _exit(run_model(kinds[mi], names[mi], &s, pred, reps, gflops, 8, 2, 1024));
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
