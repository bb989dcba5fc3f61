/* c_bench.c — latency of an exported C model (tests/export/bench.sh):
 * single-row calls (p50, p99 over `reps` calls) and batches of 1024 rows
 * (rows/s). Rows are the first `n` lines of the driver input format of
 * c_driver.c, read from stdin. Built with -DPREDICT=<name>_predict. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int PREDICT(const int32_t *ids, const float *numeric, size_t n, float *out);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    size_t n, F, R, K, B = 1024, reps = 20000;
    if (scanf("%zu %zu %zu %zu", &n, &F, &R, &K) != 4) return 2;
    int32_t *ids = malloc((B * F + 1) * sizeof *ids);
    float *num = malloc((B * R + 1) * sizeof *num), *out = malloc((B * K + 1) * sizeof *out);
    double *lat = malloc(reps * sizeof *lat);
    if (!ids || !num || !out || !lat) return 2;
    for (size_t r = 0; r < B; r++) {
        size_t s = r % n;
        for (size_t f = 0; f < F; f++)
            if (r < n && scanf("%d", &ids[r * F + f]) != 1) return 2;
        for (size_t j = 0; j < R; j++) {
            char tok[64];
            if (r < n && scanf("%63s", tok) != 1) return 2;
            if (r < n) num[r * R + j] = strtof(tok, NULL);
        }
        if (r >= n) {
            for (size_t f = 0; f < F; f++) ids[r * F + f] = ids[s * F + f];
            for (size_t j = 0; j < R; j++) num[r * R + j] = num[s * R + j];
        }
    }
    for (size_t i = 0; i < reps; i++) {
        size_t r = i % n;
        double t0 = now();
        PREDICT(ids + r * F, num + r * R, 1, out);
        lat[i] = now() - t0;
    }
    qsort(lat, reps, sizeof *lat, cmp);
    double t0 = now();
    int batches = 50;
    for (int b = 0; b < batches; b++) PREDICT(ids, num, B, out);
    double dt = now() - t0;
    printf("{\"p50_us\": %.2f, \"p99_us\": %.2f, \"rows_per_s\": %.0f}\n", 1e6 * lat[reps / 2],
           1e6 * lat[reps * 99 / 100], (double)batches * (double)B / dt);
    return 0;
}
