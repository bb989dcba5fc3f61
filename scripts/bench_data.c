/* bench_data.c — census load speed: cold (text → dataset, no cache), cold
 * with the cache written, and from the cache. One thread.
 *
 *   cc -O2 -Iengine scripts/bench_data.c engine/libtowerlab.a -lz -lm ... -o bench_data
 *   ./bench_data [census dir] [repeats]
 *
 * Targets (issue 6): cold < 0.3 s, cached < 0.03 s for the 99,762 rows.
 * The cache is written to a temporary copy's directory, never to data/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data.h"
#include "parallel.h"
#include "bench_clock.h"

/* Run one load; returns wall seconds (CPU seconds in *cpu) or -1 on failure
 * (message printed). */
static double run(const char *dir, int cache, int expect_cached, size_t *rows, double *cpu)
{
    tl_dataset *d = NULL;
    double t0 = bench_clock(CLOCK_MONOTONIC), c0 = bench_clock(CLOCK_THREAD_CPUTIME_ID);
    tl_status st = tl_data_census_ex(dir, 0, cache, &d);
    double t = bench_clock(CLOCK_MONOTONIC) - t0;
    *cpu = bench_clock(CLOCK_THREAD_CPUTIME_ID) - c0;
    if (st) {
        fprintf(stderr, "bench_data: %s\n", tl_errmsg());
        return -1;
    }
    if (expect_cached >= 0 && tl_dataset_from_cache(d) != expect_cached) {
        fprintf(stderr, "bench_data: expected %s load\n", expect_cached ? "a cached" : "an uncached");
        tl_dataset_free(d);
        return -1;
    }
    *rows = tl_dataset_split(d, "all")->n;
    tl_dataset_free(d);
    return t;
}

static int report(const char *what, double *t, double *c, int n, size_t rows, double target)
{
    qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
    qsort(c, (size_t)n, sizeof *c, bench_cmp_double);
    double med = t[n / 2], cmed = c[n / 2];
    printf("%-26s wall best %.4f s median %.4f s | cpu median %.4f s | %9.0f rows/s | target < %.2f s %s\n",
           what, t[0], med, cmed, (double)rows / med, target, med < target ? "ok" : "SLOW");
    return med < target;
}

int main(int argc, char **argv)
{
    const char *src = argc > 1 ? argv[1] : "data/census_income_kdd";
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (reps < 1 || reps > 1000) reps = 5;
    tl_set_threads(1);
    /* a private copy, so the cache files land in a temporary directory */
    char dir[] = "/tmp/tl_bench_data_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_data: mkdtemp");
        return 1;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp '%s/census-income.test.gz' '%s/'", src, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_data: cannot copy %s/census-income.test.gz\n", src);
        return 1;
    }
    double *t = calloc((size_t)reps, sizeof *t), *c = calloc((size_t)reps, sizeof *c);
    size_t rows = 0;
    int ok = 1, fail = 0;
    for (int i = 0; i < reps && !fail; i++) fail |= (t[i] = run(dir, 0, 0, &rows, &c[i])) < 0;
    if (!fail) ok &= report("census cold (no cache)", t, c, reps, rows, 0.3);
    for (int i = 0; i < reps && !fail; i++) {
        snprintf(cmd, sizeof cmd, "rm -f '%s'/*.tlcache", dir);
        fail |= system(cmd) != 0;
        fail |= (t[i] = run(dir, 1, 0, &rows, &c[i])) < 0;
    }
    if (!fail) report("census cold + cache write", t, c, reps, rows, 1.0);
    for (int i = 0; i < reps && !fail; i++) fail |= (t[i] = run(dir, 1, 1, &rows, &c[i])) < 0;
    if (!fail) ok &= report("census from cache", t, c, reps, rows, 0.03);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_data: could not remove %s\n", dir);
    free(t);
    free(c);
    return fail ? 1 : ok ? 0 : 2;
}
