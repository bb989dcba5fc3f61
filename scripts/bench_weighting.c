/* bench_weighting.c — the cost of every loss-weighting method per training
 * step, relative to fixed weights, on the B1 configuration (bench_b1.c: 8
 * categorical fields x vocab 10,000 x emb 16 plus 16 dense features, 2
 * binary tasks, batch 1024, Adam) with Shared-Bottom [256, 128] and MMoE (8
 * experts [256, 128]), towers [64]. The issue 23 target: < 1.5x fixed for
 * T = 2.
 *
 * Machines here are shared and drift within minutes, so each round times
 * every method once, each right after a timing of fixed weights, and a
 * method's ratio is the median over rounds of (its time) / (that fixed
 * time). Times are process
 * CPU seconds (every thread), steadier than wall time on a loaded machine;
 * wall milliseconds per step are printed too.
 *
 * Output: "key value" lines read by scripts/bench.sh:
 *   wt_<backbone>_<method>[_rep]_cpu_ratio, ..._ms (wall ms per step, median)
 * usage: bench_weighting [threads] [rounds] [steps per timing] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "losses/weighting.h"
#include "model.h"
#include "parallel.h"
#include "bench_clock.h"

#define N_ROWS (1024 * 16)
#define FIELDS 8
#define VOCAB 10000
#define DENSE 16
#define MAX_ROUNDS 16

typedef struct {
    tl_weighting w;
    tl_weighting_at at;
    char name[48];
    tl_model *m[2]; /* per backbone */
    double cpu[2][MAX_ROUNDS], wall[2][MAX_ROUNDS];
} variant;

static tl_model *build(tl_backbone_kind kind, tl_weighting w, tl_weighting_at at)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    c.backbone.kind = kind;
    c.backbone.bottom = (tl_mlp_spec){2, {256, 128}, 0.0f};
    c.backbone.expert = (tl_mlp_spec){2, {256, 128}, 0.0f};
    c.backbone.experts = 8;
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
    c.weighting = w;
    c.wopt.at = at;
    tl_model *m;
    if (tl_model_new(&c, &m) != TL_OK) {
        fprintf(stderr, "bench_weighting: %s: %s\n", tl_weighting_name(w), tl_errmsg());
        return NULL;
    }
    return m;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 2 ? atoi(argv[2]) : 3;
    int steps = argc > 3 ? atoi(argv[3]) : 8;
    if (rounds < 1) rounds = 1;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    if (steps < 1) steps = 1;
    tl_set_threads(threads);

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

    /* every method; at='rep' too where the configuration check accepts it */
    variant *v = calloc(2 * TL_WEIGHTING_COUNT, sizeof *v);
    int nv = 0;
    const tl_backbone_kind kinds[2] = {TL_BACKBONE_SHARED_BOTTOM, TL_BACKBONE_MMOE};
    const char *bnames[2] = {"shared_bottom", "mmoe"};
    for (int w = 0; w < TL_WEIGHTING_COUNT; w++)
        for (int at = 0; at < 2; at++) {
            tl_model_config c;
            tl_model_config_defaults(&c);
            c.weighting = (tl_weighting)w;
            c.wopt.at = at ? TL_AT_REP : TL_AT_PARAMS;
            if (at && tl_weighting_check(&c) != TL_OK) continue;
            variant *x = &v[nv++];
            x->w = (tl_weighting)w;
            x->at = c.wopt.at;
            snprintf(x->name, sizeof x->name, "%s%s", tl_weighting_name(x->w), at ? "_rep" : "");
        }
    tl_fit_options o;
    tl_fit_defaults(&o);
    o.epochs = 1000;
    o.optim = tl_optim_defaults(TL_OPTIM_ADAM);
    o.optim.lr = 1e-3f;
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < nv; i++) {
            if (!(v[i].m[b] = build(kinds[b], v[i].w, v[i].at))) return 1;
            o.max_steps = 2; /* warm-up: buffers touched, caches filled */
            if (tl_model_fit(v[i].m[b], &s, NULL, &o) != TL_OK) {
                fprintf(stderr, "bench_weighting: %s: %s\n", v[i].name, tl_errmsg());
                return 1;
            }
        }
        o.max_steps = steps;
        /* each method right after a fixed-weights timing (v[0]): the ratio
         * of the pair, so that drift and cache state hit both */
        double fixed_cpu[TL_WEIGHTING_COUNT * 2][MAX_ROUNDS];
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < nv; i++)
                for (int pass = 0; pass < 2; pass++) {
                    variant *x = &v[pass ? i : 0];
                    double c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID), w0 = bench_clock(CLOCK_MONOTONIC);
                    if (tl_model_fit(x->m[b], &s, NULL, &o) != TL_OK) {
                        fprintf(stderr, "bench_weighting: %s: %s\n", x->name, tl_errmsg());
                        return 1;
                    }
                    double c1 = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0;
                    if (!pass) {
                        fixed_cpu[i][r] = c1;
                        continue;
                    }
                    v[i].cpu[b][r] = c1;
                    v[i].wall[b][r] = bench_clock(CLOCK_MONOTONIC) - w0;
                }
        for (int i = 0; i < nv; i++) {
            double ratio[MAX_ROUNDS], ms[MAX_ROUNDS];
            for (int r = 0; r < rounds; r++) {
                ratio[r] = v[i].cpu[b][r] / fixed_cpu[i][r];
                ms[r] = 1e3 * v[i].wall[b][r] / steps;
            }
            printf("wt_%s_%s_cpu_ratio %.3f\nwt_%s_%s_ms %.2f\n", bnames[b], v[i].name, bench_median(ratio, rounds),
                   bnames[b], v[i].name, bench_median(ms, rounds));
            fflush(stdout);
            tl_model_free(v[i].m[b]);
        }
    }
    free(v);
    free(s.cat);
    free(s.num);
    free(s.labels);
    return 0;
}
