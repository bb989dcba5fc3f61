/* bench_clock.h — the clocks and the median the benchmark programs share
 * (scripts/bench_*.c). Header-only: each benchmark is one program. */
#ifndef TL_BENCH_CLOCK_H
#define TL_BENCH_CLOCK_H

#include <stdlib.h>
#include <time.h>

/* Seconds on clock id: CLOCK_MONOTONIC for wall time; CLOCK_PROCESS_CPUTIME_ID
 * (every thread) or CLOCK_THREAD_CPUTIME_ID (the caller) for CPU time, which
 * on a busy machine measures the work where wall time also measures the
 * neighbours. */
static inline double bench_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
