/* bench_gemm.c — issue 26's small-GEMM question: would another library or the
 * engine's own kernel serve the papers' small shapes better than OpenBLAS?
 *
 * 1. Trace. The Makefile links this program with -Wl,--wrap= for tl_gemm,
 *    tl_gemm_serial, tl_parallel_run and tl_parallel_for, so every call the
 *    engine makes to them from outside their own file passes through the
 *    __wrap_ functions below (engine/ is unchanged). One training epoch of
 *    paper-config MMoE and of B1-MMoE (configured as scripts/bench_b1.c
 *    configures them) runs on one thread, where every call is a whole
 *    product; its calls / steps are the calls of one step.
 * 2. Per round: the real training step of both models, each GEMM call's
 *    time in place (one thread), the FMA peak (a register-only loop), and
 *    each traced shape alone, backends in rotating order: OpenBLAS as the
 *    engine calls it (tl_gemm_serial on 1 thread; tl_gemm, the engine's
 *    split, on 2), BLIS (bli_sgemm), LIBXSMM (JIT kernels) and a
 *    register-blocked kernel in portable C (own_gemm below), the last three
 *    on 2 threads through the same split as tl_gemm.
 * 3. Every backend's result against OpenBLAS on one thread; the step
 *    projected per backend; the share of the step two threads can split.
 *
 * Every figure printed is the median over rounds; each round's time of a
 * (shape, backend) is the fastest of 3 batches of calls (a preempted batch
 * on a shared machine is dropped rather than averaged in), in the thread's
 * CPU time on one thread (a neighbour's time slice is not counted) and in
 * wall time on two. Ratios are taken within a round, then their median.
 * Operands stay in cache between calls, as they mostly do at these sizes in
 * training (L2 1-2 MB); the in-place times show how much that matters.
 *
 * usage: bench_gemm [rounds]   (default 5)
 *        bench_gemm trace      (only the traced calls, with their strides)
 * BLIS and LIBXSMM are built in when their Debian packages are installed
 * (libblis-dev, libxsmm-dev); otherwise their columns say "-". */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "gemm.h"
#include "model.h"
#include "parallel.h"

#ifdef TL_BENCH_BLIS
#include <blis.h>
#endif
#ifdef TL_BENCH_XSMM
#include <libxsmm.h>
#endif

extern void openblas_set_num_threads(int);

typedef void (*gemm_fn)(int ta, int tb, int m, int n, int k, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc);

/* One thread: its CPU time (a neighbour's time slice is not counted); two:
 * wall time. */
static clockid_t clock_for(int threads) { return threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC; }

/* ---- trace ----------------------------------------------------------------- */

enum { PAPER, B1, N_MODELS };
static const char *model_names[N_MODELS] = {"paper MMoE", "B1-MMoE"};

typedef struct {
    int model, ta, tb, m, n, k, lda, ldb, ldc, beta0;
    double calls;  /* per training step */
    double insitu; /* CPU seconds inside the engine's calls: the current fit */
    double insitu_best[16]; /* per round: of the fastest fit, per step (1 thread) */
    float *a, *b, *c, *c0, *ref;
    size_t na, nb, nc;
    int reps;
} shape;

#define MAX_SHAPES 96
static shape shapes[MAX_SHAPES];
static int n_shapes, tracing = -1; /* the model being traced, or -1 */
static int timing = -1;             /* the model whose calls are timed in place, or -1 */
static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;

static void trace(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc, float beta)
{
    if (tracing < 0 || m <= 0 || n <= 0) return;
    shape key = {.model = tracing, .ta = ta, .tb = tb, .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb,
                 .ldc = ldc, .beta0 = beta == 0.0f};
    pthread_mutex_lock(&trace_lock);
    int i = 0;
    while (i < n_shapes && !(shapes[i].model == key.model && shapes[i].ta == ta && shapes[i].tb == tb &&
                             shapes[i].m == m && shapes[i].n == n && shapes[i].k == k &&
                             shapes[i].lda == lda && shapes[i].ldb == ldb && shapes[i].ldc == ldc &&
                             shapes[i].beta0 == key.beta0))
        i++;
    if (i == n_shapes && n_shapes < MAX_SHAPES) shapes[n_shapes++] = key;
    if (i < n_shapes) shapes[i].calls += 1.0;
    pthread_mutex_unlock(&trace_lock);
}

void __real_tl_gemm(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);
void __real_tl_gemm_serial(int, int, int, int, int, const float *, int, const float *, int, float, float *,
                           int);
void __wrap_tl_gemm(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);
void __wrap_tl_gemm_serial(int, int, int, int, int, const float *, int, const float *, int, float, float *,
                           int);

/* ---- the step's parallel regions -------------------------------------------------
 * Also wrapped: tl_parallel_run and tl_parallel_for, and tl_gemm counts as
 * one region (on one thread it skips the pool). The caller thread's
 * outermost regions, in call order: on two threads whether each is split
 * (parts > 1), on one thread its CPU time. The share of a one-thread step
 * spent in regions that two threads split bounds the second thread's gain
 * (Amdahl, with no overhead). */
#define MAX_REGIONS 8192
static int regions_mode, n_regions; /* mode 0 off, 1 CPU time (1 thread), 2 splits (2 threads) */
static double region_cpu[MAX_REGIONS];
static unsigned char region_split[MAX_REGIONS];
static pthread_t main_thread;
static _Thread_local int region_depth;

static int region_begin(int parts, double *t0)
{
    if (region_depth++ > 0 || !regions_mode || !pthread_equal(pthread_self(), main_thread)) return -1;
    if (n_regions == MAX_REGIONS) return -1;
    int i = n_regions++;
    if (regions_mode == 2) region_split[i] = parts > 1;
    else *t0 = bench_clock(CLOCK_THREAD_CPUTIME_ID);
    return i;
}

static void region_end(int i, double t0)
{
    region_depth--;
    if (i >= 0 && regions_mode == 1) region_cpu[i] = bench_clock(CLOCK_THREAD_CPUTIME_ID) - t0;
}

void __real_tl_parallel_run(size_t, int, tl_parallel_fn, void *);
void __real_tl_parallel_for(size_t, size_t, tl_parallel_fn, void *);
void __wrap_tl_parallel_run(size_t, int, tl_parallel_fn, void *);
void __wrap_tl_parallel_for(size_t, size_t, tl_parallel_fn, void *);

void __wrap_tl_parallel_run(size_t n, int parts, tl_parallel_fn fn, void *ctx)
{
    double t0 = 0.0;
    int i = region_begin((size_t)parts > n ? (int)n : parts, &t0);
    __real_tl_parallel_run(n, parts, fn, ctx);
    region_end(i, t0);
}

void __wrap_tl_parallel_for(size_t n, size_t grain, tl_parallel_fn fn, void *ctx)
{
    double t0 = 0.0;
    int parts = tl_parallel_parts(n, grain);
    int i = region_begin((size_t)parts > n ? (int)n : parts, &t0);
    __real_tl_parallel_for(n, grain, fn, ctx);
    region_end(i, t0);
}

/* In-place timing (one thread only: every call is then a whole product on
 * the caller): add the call's CPU time to its traced shape. */
static shape *find_shape(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc, float beta)
{
    for (int i = 0; i < n_shapes; i++)
        if (shapes[i].model == timing && shapes[i].ta == ta && shapes[i].tb == tb && shapes[i].m == m &&
            shapes[i].n == n && shapes[i].k == k && shapes[i].lda == lda && shapes[i].ldb == ldb &&
            shapes[i].ldc == ldc && shapes[i].beta0 == (beta == 0.0f))
            return &shapes[i];
    return NULL;
}

void __wrap_tl_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                    float beta, float *c, int ldc)
{
    trace(ta, tb, m, n, k, lda, ldb, ldc, beta);
    double t = timing >= 0 ? bench_clock(CLOCK_THREAD_CPUTIME_ID) : 0.0, t0 = 0.0;
    int region = m > 0 && n > 0 ? region_begin(tl_gemm_parts((size_t)(m >= n ? m : n), (double)m * n * k), &t0) : -1;
    __real_tl_gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    if (m > 0 && n > 0) region_end(region, t0);
    shape *s = timing >= 0 ? find_shape(ta, tb, m, n, k, lda, ldb, ldc, beta) : NULL;
    if (s) s->insitu += bench_clock(CLOCK_THREAD_CPUTIME_ID) - t;
}

void __wrap_tl_gemm_serial(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                           int ldb, float beta, float *c, int ldc)
{
    trace(ta, tb, m, n, k, lda, ldb, ldc, beta);
    double t = timing >= 0 ? bench_clock(CLOCK_THREAD_CPUTIME_ID) : 0.0;
    __real_tl_gemm_serial(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    shape *s = timing >= 0 ? find_shape(ta, tb, m, n, k, lda, ldb, ldc, beta) : NULL;
    if (s) s->insitu += bench_clock(CLOCK_THREAD_CPUTIME_ID) - t;
}

static const char *op_name(const shape *s) { return s->ta ? "TN" : s->tb ? "NT" : "NN"; }

/* ---- the two models, as bench_b1.c builds them -------------------------------- */

typedef struct {
    tl_model *m;
    tl_split s;
    tl_fit_options o;
    int rows, batch;
} model_run;

static void task_spec(tl_model_config *c, int t, tl_mlp_spec tower)
{
    snprintf(c->tasks[t].name, sizeof c->tasks[t].name, "task%d", t + 1);
    c->tasks[t].type = TL_TASK_BINARY;
    c->tasks[t].tower = tower;
    c->tasks[t].weight = 1.0f;
    c->tasks[t].space = -1;
}

static int model_setup(int which, model_run *r)
{
    tl_model_config c;
    tl_model_config_defaults(&c);
    c.backbone.kind = TL_BACKBONE_MMOE;
    c.n_tasks = 2;
    int fields, vocab, dense;
    if (which == PAPER) { /* bench_b1.c run_paper("paper_mmoe") */
        fields = 32, vocab = 100, dense = 7, r->rows = 512 * 48, r->batch = 512;
        c.backbone.expert = (tl_mlp_spec){1, {128}, 0.5f};
        c.backbone.experts = 3;
        c.emb_dim = 8;
        for (int t = 0; t < 2; t++) task_spec(&c, t, (tl_mlp_spec){2, {128, 80}, 0.5f});
    } else { /* bench_b1.c run_model(MMOE, 8 experts, 2 tasks, batch 1024) */
        fields = 8, vocab = 10000, dense = 16, r->rows = 1024 * 24, r->batch = 1024;
        c.backbone.expert = (tl_mlp_spec){2, {256, 128}, 0.0f};
        c.backbone.experts = 8;
        c.emb_dim = 16;
        for (int t = 0; t < 2; t++) task_spec(&c, t, (tl_mlp_spec){1, {64}, 0.0f});
    }
    c.n_cat = fields;
    for (int f = 0; f < fields; f++) c.vocab[f] = vocab;
    c.n_num = dense;
    c.max_batch = r->batch;
    size_t n = (size_t)r->rows;
    memset(&r->s, 0, sizeof r->s);
    r->s.name = "train";
    r->s.n = n;
    r->s.cat = malloc(sizeof(int32_t) * n * (size_t)fields);
    r->s.num = malloc(sizeof(float) * n * (size_t)dense);
    r->s.labels = malloc(sizeof(float) * n * 2);
    if (!r->s.cat || !r->s.num || !r->s.labels) return 1;
    tl_rng rng;
    tl_rng_seed(&rng, which == PAPER ? 43 : 42);
    for (size_t i = 0; i < n * (size_t)fields; i++) r->s.cat[i] = (int32_t)tl_rng_below(&rng, (uint32_t)vocab);
    for (size_t i = 0; i < n * (size_t)dense; i++) r->s.num[i] = tl_rng_normal(&rng);
    for (size_t i = 0; i < n; i++) {
        r->s.labels[2 * i] = tl_rng_uniform(&rng) < (which == PAPER ? 0.06f : 0.3f);
        r->s.labels[2 * i + 1] = tl_rng_uniform(&rng) < (which == PAPER ? 0.43f : 0.3f);
    }
    if (tl_model_new(&c, &r->m) != TL_OK) {
        fprintf(stderr, "bench_gemm: %s: %s\n", model_names[which], tl_errmsg());
        return 1;
    }
    tl_fit_defaults(&r->o);
    r->o.epochs = 1;
    r->o.batch = r->batch;
    r->o.shuffle = 0;
    r->o.optim = tl_optim_defaults(TL_OPTIM_ADAM);
    r->o.optim.lr = 1e-3f;
    return 0;
}

/* Seconds per training step: the fastest of FITS fits of FIT_STEPS steps
 * each (the first rows of the split), so that on a shared machine a
 * preempted fit is dropped; CPU time on one thread, wall time on two. On one thread with `round` >= 0, also each
 * shape's in-place GEMM seconds per step in that fastest fit. */
#define FITS 8
#define FIT_STEPS 4
static double step_seconds(model_run *r, int which, int round)
{
    size_t n = r->s.n;
    r->s.n = (size_t)r->batch * FIT_STEPS;
    double best = 1e30;
    int in_place = round >= 0 && tl_get_threads() == 1;
    for (int f = 0; f < FITS; f++) {
        for (int i = 0; i < n_shapes; i++) shapes[i].insitu = 0.0;
        timing = in_place ? which : -1;
        clockid_t id = clock_for(tl_get_threads());
        double t = bench_clock(id);
        if (tl_model_fit(r->m, &r->s, NULL, &r->o) != TL_OK) {
            fprintf(stderr, "bench_gemm: fit: %s\n", tl_errmsg());
            exit(1);
        }
        t = bench_clock(id) - t;
        timing = -1;
        if (t < best) {
            best = t;
            if (in_place)
                for (int i = 0; i < n_shapes; i++)
                    if (shapes[i].model == which) shapes[i].insitu_best[round] = shapes[i].insitu / FIT_STEPS;
        }
    }
    r->s.n = n;
    return best / FIT_STEPS;
}

/* The share of a one-thread step's CPU time spent in the regions two
 * threads split (see "the step's parallel regions"); *regions and *split
 * per step. Returns -1 when the two runs' regions do not line up. */
static double parallel_share(model_run *r, double *regions, double *split)
{
    size_t n = r->s.n;
    r->s.n = (size_t)r->batch * FIT_STEPS;
    static unsigned char split2[MAX_REGIONS];
    tl_set_threads(2);
    regions_mode = 2;
    n_regions = 0;
    int ok = tl_model_fit(r->m, &r->s, NULL, &r->o) == TL_OK, n2 = n_regions;
    memcpy(split2, region_split, (size_t)n2);
    tl_set_threads(1);
    double best = -1.0, best_total = 1e30;
    for (int f = 0; f < 3 && ok; f++) {
        regions_mode = 1;
        n_regions = 0;
        double t = bench_clock(CLOCK_THREAD_CPUTIME_ID);
        ok = tl_model_fit(r->m, &r->s, NULL, &r->o) == TL_OK;
        t = bench_clock(CLOCK_THREAD_CPUTIME_ID) - t;
        regions_mode = 0;
        if (n_regions != n2 || n2 == MAX_REGIONS) ok = 0;
        double par = 0.0;
        int ns = 0;
        for (int i = 0; i < n2 && ok; i++)
            if (split2[i]) par += region_cpu[i], ns++;
        if (ok && t < best_total) best_total = t, best = par / t, *split = (double)ns / FIT_STEPS;
    }
    regions_mode = 0;
    *regions = (double)n2 / FIT_STEPS;
    r->s.n = n;
    return ok ? best : -1.0;
}

/* ---- the own kernel: register-blocked, portable C ------------------------------
 * GCC/Clang vector extensions at the widest width the build targets (-march):
 * 16 floats with AVX-512, 8 with AVX, else 4. A micro-kernel keeps an
 * MR x NR block of C in registers (NR = 2 vectors) and runs over a panel of
 * op(B) packed to kc x NR (zero-padded, transposed when trans_b); A is read
 * in place with strides, so trans_a costs nothing. No assembly, no
 * intrinsics; -ffp-contract=fast (the Makefile's rule) turns a * b + c into
 * FMA where the target has it. */
#if defined(__AVX512F__)
#define OWN_VL 16
#define OWN_MR 8
#elif defined(__AVX__)
#define OWN_VL 8
#define OWN_MR 6
#else
#define OWN_VL 4
#define OWN_MR 6
#endif
#define OWN_NR (2 * OWN_VL)
#define OWN_KC 128
typedef float vf __attribute__((vector_size(OWN_VL * sizeof(float))));
typedef float vfu __attribute__((vector_size(OWN_VL * sizeof(float)), aligned(4))); /* unaligned access */

static void own_store(float *cr, int nr, const vf acc[2], float beta)
{
    if (nr == OWN_NR) {
        vfu *c0 = (vfu *)cr, *c1 = (vfu *)(cr + OWN_VL);
        if (beta == 0.0f) {
            *c0 = acc[0];
            *c1 = acc[1];
        } else if (beta == 1.0f) {
            *c0 += acc[0];
            *c1 += acc[1];
        } else {
            *c0 = beta * *c0 + acc[0];
            *c1 = beta * *c1 + acc[1];
        }
        return;
    }
    float t[OWN_NR];
    memcpy(t, acc, sizeof t);
    for (int j = 0; j < nr; j++) cr[j] = beta == 0.0f ? t[j] : beta * cr[j] + t[j];
}

/* C[mr x nr] = beta C + A[mr x kc] Bp[kc x NR]; A(i, p) = a[i rsa + p csa].
 * Inlined with a constant mr (own_micro's switch), so that the
 * accumulators stay in registers for every row count. */
static inline __attribute__((always_inline)) void own_tile(int mr, int nr, int kc, const float *a, size_t rsa,
                                                           size_t csa, const float *bp, float *c, int ldc,
                                                           float beta)
{
    vf acc[OWN_MR][2];
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < kc; p++) {
        vf b0 = *(const vf *)(bp + (size_t)p * OWN_NR), b1 = *(const vf *)(bp + (size_t)p * OWN_NR + OWN_VL);
        const float *ap = a + (size_t)p * csa;
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            float x = ap[(size_t)i * rsa];
            acc[i][0] += x * b0;
            acc[i][1] += x * b1;
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) own_store(c + (size_t)i * ldc, nr, acc[i], beta);
}

static void own_micro(int mr, int nr, int kc, const float *a, size_t rsa, size_t csa, const float *bp,
                      float *c, int ldc, float beta)
{
    switch (mr) {
#define OWN_CASE(r) \
    case r: own_tile(r, nr, kc, a, rsa, csa, bp, c, ldc, beta); break;
    OWN_CASE(1) OWN_CASE(2) OWN_CASE(3) OWN_CASE(4) OWN_CASE(5) OWN_CASE(6)
#if OWN_MR == 8
    OWN_CASE(7) OWN_CASE(8)
#endif
#undef OWN_CASE
    }
}

static void own_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                     float beta, float *c, int ldc);

/* Few columns (n < NR / 2 pads most of a tile with zeros): compute
 * C^T = op(B)^T op(A)^T instead, whose m' = n rows fill a tile's rows, into
 * a scratch, then add its transpose into C. */
static void own_gemm_swapped(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                             int ldb, float beta, float *c, int ldc)
{
    static _Thread_local float *t;
    static _Thread_local size_t cap;
    size_t need = (size_t)m * (size_t)n;
    if (need > cap) {
        free(t);
        t = malloc(need * sizeof(float));
        cap = t ? need : 0;
        if (!t) abort();
    }
    own_gemm(!tb, !ta, n, m, k, b, ldb, a, lda, 0.0f, t, m);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float *o = c + (size_t)i * ldc + j;
            *o = beta == 0.0f ? t[(size_t)j * m + i] : beta * *o + t[(size_t)j * m + i];
        }
}

static void own_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                     float beta, float *c, int ldc)
{
    static _Thread_local _Alignas(64) float pack[OWN_KC * OWN_NR];
    if (m <= 0 || n <= 0) return;
    if (n < OWN_NR / 2 && m > n) {
        own_gemm_swapped(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    size_t rsa = ta ? 1 : (size_t)lda, csa = ta ? (size_t)lda : 1;
    for (int p0 = 0; p0 < k; p0 += OWN_KC) {
        int kc = k - p0 < OWN_KC ? k - p0 : OWN_KC;
        float bt = p0 ? 1.0f : beta;
        for (int j0 = 0; j0 < n; j0 += OWN_NR) {
            int nr = n - j0 < OWN_NR ? n - j0 : OWN_NR;
            if (nr < OWN_NR) memset(pack, 0, sizeof pack);
            if (!tb)
                for (int p = 0; p < kc; p++)
                    memcpy(pack + (size_t)p * OWN_NR, b + (size_t)(p0 + p) * ldb + j0, (size_t)nr * sizeof(float));
            else
                for (int j = 0; j < nr; j++) {
                    const float *src = b + (size_t)(j0 + j) * ldb + p0;
                    for (int p = 0; p < kc; p++) pack[(size_t)p * OWN_NR + j] = src[p];
                }
            for (int i0 = 0; i0 < m; i0 += OWN_MR)
                own_micro(m - i0 < OWN_MR ? m - i0 : OWN_MR, nr, kc, a + i0 * rsa + (size_t)p0 * csa, rsa, csa,
                          pack, c + (size_t)i0 * ldc + j0, ldc, bt);
        }
    }
    if (k <= 0) /* C = beta C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
}

/* The FMA peak of one thread: ACC independent accumulators, no memory. */
#define PEAK_ACC 12
#define PEAK_ITERS 40000L
static double peak_loop(void)
{
    vf acc[PEAK_ACC], mul, add;
    for (int l = 0; l < OWN_VL; l++) mul[l] = 0.999999f, add[l] = 1e-7f;
    for (int i = 0; i < PEAK_ACC; i++) acc[i] = add * (float)i;
    for (long it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < PEAK_ACC; i++) acc[i] = acc[i] * mul + add;
    }
    float s = 0.0f;
    for (int i = 0; i < PEAK_ACC; i++) s += acc[i][0];
    return (double)s;
}

static void peak_part(void *ctx, size_t b, size_t e, int part)
{
    (void)b, (void)e;
    ((volatile double *)ctx)[part] = peak_loop();
}

/* GFLOP/s of the FMA loop on `threads` threads (the engine's pool): the
 * fastest of 20 runs of about 1 ms. */
static double peak_gflops(int threads)
{
    volatile double sink[8];
    double best = 1e30;
    clockid_t id = clock_for(threads);
    for (int i = 0; i < 20; i++) {
        double t = bench_clock(id);
        if (threads == 1) sink[0] = peak_loop();
        else tl_parallel_run((size_t)threads, threads, peak_part, (void *)sink);
        t = bench_clock(id) - t;
        if (t < best) best = t;
    }
    (void)sink[0];
    return 2.0 * PEAK_ACC * OWN_VL * PEAK_ITERS * threads / best / 1e9;
}

/* ---- BLIS and LIBXSMM -------------------------------------------------------------- */

#ifdef TL_BENCH_BLIS
static void blis_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                      float beta, float *c, int ldc)
{
    float one = 1.0f;
    bli_sgemm(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &one,
              (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1);
}
#endif

#ifdef TL_BENCH_XSMM
/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the
 * operands swap and trans_b becomes LIBXSMM's TRANS_A. A transpose LIBXSMM
 * has no kernel for (Debian's 1.17 JITs NN only) is done by copying the
 * operand first (counted in the time, as an integration would have to). */
static _Thread_local float *xsmm_tmp;
static _Thread_local size_t xsmm_cap;
static _Atomic int xsmm_trans_copies; /* calls that needed the copy */

static float *transposed(const float *src, int rows, int cols, int ld) /* returns [cols x rows] */
{
    size_t need = (size_t)rows * (size_t)cols;
    if (need > xsmm_cap) {
        free(xsmm_tmp);
        xsmm_tmp = malloc(need * sizeof(float));
        xsmm_cap = xsmm_tmp ? need : 0;
        if (!xsmm_tmp) abort();
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) xsmm_tmp[(size_t)j * rows + i] = src[(size_t)i * ld + j];
    return xsmm_tmp;
}

static void xsmm_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                      float beta, float *c, int ldc)
{
    libxsmm_blasint M = n, N = m, K = k, la = ldb, lb = lda, lc = ldc;
    float one = 1.0f;
    int flags = (tb ? LIBXSMM_GEMM_FLAG_TRANS_A : 0) | (ta ? LIBXSMM_GEMM_FLAG_TRANS_B : 0) |
                (beta == 0.0f ? LIBXSMM_GEMM_FLAG_BETA_0 : 0);
    libxsmm_smmfunction f = libxsmm_smmdispatch(M, N, K, &la, &lb, &lc, &one, &beta, &flags, NULL);
    if (f) {
        f(b, a, c);
        return;
    }
    /* copy the transposed operand(s) to plain layout, then an NN kernel */
    const float *a2 = a, *b2 = b;
    if (tb && ta) abort();                            /* the engine never calls TT */
    if (ta) a2 = transposed(a, k, m, lda), lb = k; /* stored [k x m] -> [m x k] */
    if (tb) b2 = transposed(b, n, k, ldb), la = n;    /* stored [n x k] -> [k x n] */
    flags = beta == 0.0f ? LIBXSMM_GEMM_FLAG_BETA_0 : 0;
    f = libxsmm_smmdispatch(M, N, K, &la, &lb, &lc, &one, &beta, &flags, NULL);
    if (!f) abort();
    xsmm_trans_copies++;
    f(b2, a2, c);
}
#endif

/* ---- the engine's split, for any backend (as gemm.c's tl_gemm) ------------------- */

struct split_job {
    gemm_fn fn;
    int ta, tb, m, n, k, lda, ldb, ldc, by_rows;
    const float *a, *b;
    float beta, *c;
};

static void split_block(void *ctx, size_t begin, size_t end, int part)
{
    const struct split_job *j = ctx;
    int len = (int)(end - begin);
    size_t o = begin;
    (void)part;
    if (j->by_rows)
        j->fn(j->ta, j->tb, len, j->n, j->k, j->ta ? j->a + o : j->a + o * (size_t)j->lda, j->lda, j->b, j->ldb,
              j->beta, j->c + o * (size_t)j->ldc, j->ldc);
    else
        j->fn(j->ta, j->tb, j->m, len, j->k, j->a, j->lda, j->tb ? j->b + o * (size_t)j->ldb : j->b + o, j->ldb,
              j->beta, j->c + o, j->ldc);
}

static void split_run(gemm_fn fn, int ta, int tb, int m, int n, int k, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc)
{
    struct split_job j = {fn, ta, tb, m, n, k, lda, ldb, ldc, m >= n, a, b, beta, c};
    size_t units = (size_t)(j.by_rows ? m : n);
    int parts = tl_gemm_parts(units, (double)m * n * k);
    if (parts <= 1) fn(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    else tl_parallel_run(units, parts, split_block, &j);
}

/* ---- backends ------------------------------------------------------------------------ */

enum { OBL, BLIS, XSMM, OWN, N_BACK };
static const char *back_names[N_BACK] = {"OpenBLAS", "BLIS", "LIBXSMM", "own C"};
static gemm_fn back_fn[N_BACK] = {
    tl_gemm_serial,
#ifdef TL_BENCH_BLIS
    blis_gemm,
#else
    NULL,
#endif
#ifdef TL_BENCH_XSMM
    xsmm_gemm,
#else
    NULL,
#endif
    own_gemm};

static void call(int back, int threads, const shape *s, float *c)
{
    if (threads == 1) back_fn[back](s->ta, s->tb, s->m, s->n, s->k, s->a, s->lda, s->b, s->ldb, s->beta0 ? 0.0f : 1.0f, c, s->ldc);
    else if (back == OBL) tl_gemm(s->ta, s->tb, s->m, s->n, s->k, s->a, s->lda, s->b, s->ldb, s->beta0 ? 0.0f : 1.0f, c, s->ldc);
    else split_run(back_fn[back], s->ta, s->tb, s->m, s->n, s->k, s->a, s->lda, s->b, s->ldb, s->beta0 ? 0.0f : 1.0f, c, s->ldc);
}

static double flops(const shape *s) { return 2.0 * s->m * s->n * s->k; }

static void fill(float *v, size_t n, tl_rng *rng)
{
    for (size_t i = 0; i < n; i++) v[i] = 2.0f * tl_rng_uniform(rng) - 1.0f;
}

static int shape_alloc(shape *s, tl_rng *rng)
{
    s->na = (size_t)(s->ta ? s->k : s->m) * (size_t)s->lda;
    s->nb = (size_t)(s->tb ? s->n : s->k) * (size_t)s->ldb;
    s->nc = (size_t)s->m * (size_t)s->ldc;
    s->a = malloc(s->na * sizeof(float));
    s->b = malloc(s->nb * sizeof(float));
    s->c = malloc(s->nc * sizeof(float));
    s->c0 = malloc(s->nc * sizeof(float));
    s->ref = malloc(s->nc * sizeof(float));
    if (!s->a || !s->b || !s->c || !s->c0 || !s->ref) return 1;
    fill(s->a, s->na, rng);
    fill(s->b, s->nb, rng);
    fill(s->c0, s->nc, rng);
    double r = 2e7 / flops(s); /* a batch of about 20 MFLOP */
    s->reps = r < 1.0 ? 1 : r > 20000.0 ? 20000 : (int)r;
    return 0;
}

/* Largest |C - ref| over the largest |ref| (C's columns [0, n) only). */
static double rel_diff(const shape *s, const float *c, int *differ)
{
    double d = 0.0, top = 0.0;
    *differ = 0;
    for (int i = 0; i < s->m; i++)
        for (int j = 0; j < s->n; j++) {
            size_t o = (size_t)i * s->ldc + j;
            double e = fabs((double)c[o] - (double)s->ref[o]);
            if (e > d) d = e;
            if (c[o] != s->ref[o]) (*differ)++;
            if (fabs((double)s->ref[o]) > top) top = fabs((double)s->ref[o]);
        }
    return top > 0.0 ? d / top : d;
}

static double time_call(int back, int threads, shape *s)
{
    double best = 1e30;
    clockid_t id = clock_for(threads);
    for (int batch = 0; batch < 3; batch++) {
        double t = bench_clock(id);
        for (int i = 0; i < s->reps; i++) call(back, threads, s, s->c);
        t = (bench_clock(id) - t) / s->reps;
        if (t < best) best = t;
    }
    return best;
}

#define MAX_ROUNDS 15
static double sec[MAX_ROUNDS][2][MAX_SHAPES][N_BACK], steps[MAX_ROUNDS][2][N_MODELS], peak[MAX_ROUNDS][2];

static double med_over(int rounds, double (*get)(int r, const void *), const void *ctx)
{
    double v[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) v[r] = get(r, ctx);
    return bench_median(v, rounds);
}

struct pick { int t, s, b, model; };
static double get_gflops(int r, const void *p)
{
    const struct pick *q = p;
    return flops(&shapes[q->s]) / sec[r][q->t][q->s][q->b] / 1e9;
}
/* GEMM seconds of one step of q->model with backend q->b (a projection: the
 * sum over the traced calls of their time alone) */
static double gemm_step(int r, int t, int model, int b)
{
    double g = 0.0;
    for (int s = 0; s < n_shapes; s++)
        if (shapes[s].model == model) g += shapes[s].calls * sec[r][t][s][b];
    return g;
}
static double get_gemm_step(int r, const void *p)
{
    const struct pick *q = p;
    return gemm_step(r, q->t, q->model, q->b);
}
/* the step with OpenBLAS's GEMM time replaced by q->b's */
static double get_proj_step(int r, const void *p)
{
    const struct pick *q = p;
    return steps[r][q->t][q->model] - gemm_step(r, q->t, q->model, OBL) + gemm_step(r, q->t, q->model, q->b);
}
static double get_step(int r, const void *p)
{
    const struct pick *q = p;
    return steps[r][q->t][q->model];
}
static double get_insitu(int r, const void *p)
{
    const struct pick *q = p;
    return shapes[q->s].insitu_best[r];
}
/* one thread: the in-place GEMM seconds of a step, each shape scaled by
 * q->b's speed over OpenBLAS's at that shape (both timed alone) */
static double insitu_step(int r, int model, int b)
{
    double g = 0.0;
    for (int s = 0; s < n_shapes; s++)
        if (shapes[s].model == model)
            g += shapes[s].insitu_best[r] * sec[r][0][s][b] / sec[r][0][s][OBL];
    return g;
}
static double get_insitu_step(int r, const void *p)
{
    const struct pick *q = p;
    return insitu_step(r, q->model, q->b);
}
/* projected step: on 1 thread from the in-place times, on 2 from the times alone */
static double get_proj1(int r, const void *p)
{
    const struct pick *q = p;
    if (q->t == 1) return get_proj_step(r, p);
    return steps[r][0][q->model] - insitu_step(r, q->model, OBL) + insitu_step(r, q->model, q->b);
}
static double get_speedup1(int r, const void *p)
{
    const struct pick *q = p;
    struct pick o = *q;
    o.b = OBL;
    return get_proj1(r, &o) / get_proj1(r, q);
}
static double get_peak(int r, const void *p) { return peak[r][*(const int *)p]; }

int main(int argc, char **argv)
{
    int only_trace = argc > 1 && strcmp(argv[1], "trace") == 0;
    int rounds = argc > 1 && !only_trace ? atoi(argv[1]) : 5;
    if (rounds < 1) rounds = 1;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    openblas_set_num_threads(1); /* as the engine keeps it (core.c) */
    main_thread = pthread_self();
#ifdef TL_BENCH_BLIS
    bli_thread_set_num_threads(1);
#endif
#ifdef TL_BENCH_XSMM
    libxsmm_init();
#endif
    printf("load average: ");
    FILE *la = fopen("/proc/loadavg", "r");
    char buf[128] = "?";
    if (la && fgets(buf, sizeof buf, la)) printf("%s", buf);
    else printf("?\n");
    if (la) fclose(la);
    if (atof(buf) > 1.5)
        printf("(a busy machine: the 2-thread figures are wall time and include the neighbours; the\n"
               " 1-thread ones are this thread's CPU time and hold under load)\n");
    printf("own kernel: %d-float vectors (%s), micro-tile %d x %d, kc %d\n", OWN_VL,
           OWN_VL == 16 ? "AVX-512" : OWN_VL == 8 ? "AVX" : "128-bit", OWN_MR, OWN_NR, OWN_KC);

    /* 1. trace one epoch of each model on one thread */
    model_run runs[N_MODELS];
    tl_set_threads(1);
    for (int m = 0; m < N_MODELS; m++) {
        if (model_setup(m, &runs[m])) return 1;
        tracing = m;
        if (tl_model_fit(runs[m].m, &runs[m].s, NULL, &runs[m].o) != TL_OK) {
            fprintf(stderr, "bench_gemm: fit: %s\n", tl_errmsg());
            return 1;
        }
        tracing = -1;
        int nsteps = runs[m].rows / runs[m].batch;
        for (int s = 0; s < n_shapes; s++)
            if (shapes[s].model == m) shapes[s].calls /= nsteps;
    }
    if (n_shapes == MAX_SHAPES) {
        fprintf(stderr, "bench_gemm: more than %d shapes\n", MAX_SHAPES);
        return 1;
    }
    if (only_trace) {
        printf("| model | calls/step | op | m | n | k | lda | ldb | ldc | beta |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for (int s = 0; s < n_shapes; s++) {
            const shape *sh = &shapes[s];
            printf("| %s | %g | %s | %d | %d | %d | %d | %d | %d | %d |\n", model_names[sh->model], sh->calls,
                   op_name(sh), sh->m, sh->n, sh->k, sh->lda, sh->ldb, sh->ldc, !sh->beta0);
        }
        return 0;
    }
    tl_rng rng;
    tl_rng_seed(&rng, 7);
    for (int s = 0; s < n_shapes; s++)
        if (shape_alloc(&shapes[s], &rng)) return 1;

    double par_share[N_MODELS], par_regions[N_MODELS], par_split[N_MODELS];
    for (int m = 0; m < N_MODELS; m++) par_share[m] = parallel_share(&runs[m], &par_regions[m], &par_split[m]);

    /* 3. agreement with OpenBLAS (1 thread) on the same inputs */
    double maxrel[2][N_BACK] = {{0}};
    int ndiff[2][N_BACK] = {{0}};
    for (int s = 0; s < n_shapes; s++) {
        shape *sh = &shapes[s];
        memcpy(sh->ref, sh->c0, sh->nc * sizeof(float));
        tl_set_threads(1);
        call(OBL, 1, sh, sh->ref);
        for (int t = 0; t < 2; t++) {
            tl_set_threads(t + 1);
            for (int b = 0; b < N_BACK; b++) {
                if (!back_fn[b]) continue;
                memcpy(sh->c, sh->c0, sh->nc * sizeof(float));
                call(b, t + 1, sh, sh->c);
                int differ;
                double d = rel_diff(sh, sh->c, &differ);
                if (d > maxrel[t][b]) maxrel[t][b] = d;
                if (differ) ndiff[t][b]++;
            }
        }
    }

    /* 2. rounds: per thread count, the real steps, the peak, every shape x backend */
    for (int r = 0; r < rounds; r++)
        for (int t = 0; t < 2; t++) {
            tl_set_threads(t + 1);
            for (int m = 0; m < N_MODELS; m++) steps[r][t][m] = step_seconds(&runs[m], m, r);
            peak[r][t] = peak_gflops(t + 1);
            for (int s = 0; s < n_shapes; s++)
                for (int i = 0; i < N_BACK; i++) {
                    int b = (i + r + s) % N_BACK;
                    sec[r][t][s][b] = back_fn[b] ? time_call(b, t + 1, &shapes[s]) : 1e30;
                }
        }

    /* ---- report ---- */
    int one = 0, two = 1;
    double pk[2] = {med_over(rounds, get_peak, &one), med_over(rounds, get_peak, &two)};
    printf("FMA peak (register-only loop, %d-float vectors): %.1f GFLOP/s on 1 thread, %.1f on 2\n", OWN_VL,
           pk[0], pk[1]);
    printf("rounds: %d; each cell the median over rounds of the fastest of 3 batches; backends rotate per round\n\n",
           rounds);
    for (int t = 0; t < 2; t++) {
        printf("%d thread%s%s: GFLOP/s (%% of the %d-thread FMA peak)\n\n", t + 1, t ? "s" : "",
               t ? " (every backend through the engine's split, gemm.c)" : "", t + 1);
        printf("| model | calls/step | op | m | n | k | MFLOP |%s", t ? "" : " OpenBLAS in training |");
        for (int b = 0; b < N_BACK; b++) printf(" %s |", back_names[b]);
        printf("\n|---|---|---|---|---|---|---|%s---|---|---|---|\n", t ? "" : "---|");
        for (int s = 0; s < n_shapes; s++) {
            shape *sh = &shapes[s];
            printf("| %s | %g | %s%s | %d | %d | %d | %.2f |", model_names[sh->model], sh->calls, op_name(sh),
                   sh->beta0 ? "" : " +C", sh->m, sh->n, sh->k, flops(sh) / 1e6);
            if (t == 0) {
                struct pick q = {0, s, OBL, 0};
                double g = flops(sh) * sh->calls / med_over(rounds, get_insitu, &q) / 1e9;
                printf(" %.1f (%.0f%%) |", g, 100.0 * g / pk[0]);
            }
            for (int b = 0; b < N_BACK; b++) {
                struct pick q = {t, s, b, 0};
                if (!back_fn[b]) {
                    printf(" - |");
                    continue;
                }
                double g = med_over(rounds, get_gflops, &q);
                printf(" %.1f (%.0f%%) |", g, 100.0 * g / pk[t]);
            }
            printf("\n");
        }
        printf("\n");
    }
    struct pick bq = {0, -1, OBL, B1};
    for (int i = 0; i < n_shapes; i++) /* the README's compute bound: B1's first layer */
        if (shapes[i].model == B1 && shapes[i].ta == 0 && shapes[i].tb == 0 && shapes[i].n == 2048) bq.s = i;
    double bounds[2] = {0.0, 0.0};
    for (int t = 0; t < 2 && bq.s >= 0; t++) {
        bq.t = t;
        bounds[t] = med_over(rounds, get_gflops, &bq);
    }
    printf("Compute bound (as the README's: OpenBLAS at B1's first layer [1024x144]x[144x2048]): %.1f GFLOP/s on 1 thread, %.1f on 2 (engine split)\n\n",
           bounds[0], bounds[1]);
    printf("Step projection: the training step with OpenBLAS's GEMM time replaced by each backend's. A\n"
           "projection, not a measured step: on 1 thread each call's time in training (measured in place)\n"
           "scaled by the backend's speed over OpenBLAS's at that shape, both timed alone; on 2 threads\n"
           "the sum over the traced calls of their times alone.\n\n");
    printf("| model | threads | GEMM GFLOP/step | step ms (measured) | %% of bound | OpenBLAS GEMM ms in training / alone | share of step |");
    for (int b = 1; b < N_BACK; b++) printf(" %s: GEMM ms, step ms, speed-up, %% of bound |", back_names[b]);
    printf(" every GEMM at the FMA peak: step ms, speed-up, %% of bound |");
    printf("\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < N_MODELS; m++)
        for (int t = 0; t < 2; t++) {
            double f = 0.0;
            for (int s = 0; s < n_shapes; s++)
                if (shapes[s].model == m) f += shapes[s].calls * flops(&shapes[s]);
            struct pick q = {t, 0, OBL, m};
            double st = med_over(rounds, get_step, &q), alone = med_over(rounds, get_gemm_step, &q);
            double inplace = t ? 0.0 : med_over(rounds, get_insitu_step, &q), bound = bounds[t];
            printf("| %s | %d | %.3f | %.2f | %.0f%% |", model_names[m], t + 1, f / 1e9, 1e3 * st,
                   100.0 * f / st / (bound * 1e9));
            if (t) printf(" - / %.2f | %.0f%% |", 1e3 * alone, 100.0 * alone / st);
            else printf(" %.2f / %.2f | %.0f%% |", 1e3 * inplace, 1e3 * alone, 100.0 * inplace / st);
            for (int b = 1; b < N_BACK; b++) {
                if (!back_fn[b]) {
                    printf(" - |");
                    continue;
                }
                q.b = b;
                double g = t ? med_over(rounds, get_gemm_step, &q) : med_over(rounds, get_insitu_step, &q);
                double sp = med_over(rounds, get_speedup1, &q), pst = med_over(rounds, get_proj1, &q);
                printf(" %.2f, %.2f, %.2fx, %.0f%% |", 1e3 * g, 1e3 * pst, sp, 100.0 * f / pst / (bound * 1e9));
            }
            double ideal = st - (t ? alone : inplace) + f / (pk[t] * 1e9); /* medians: a bound, not a round ratio */
            printf(" %.2f, %.2fx, %.0f%% |\n", 1e3 * ideal, st / ideal, 100.0 * f / ideal / (bound * 1e9));
        }
    printf("\nParallel regions of a step (one thread's CPU time; two threads' splits):\n\n");
    for (int m = 0; m < N_MODELS; m++) {
        struct pick q = {0, 0, OBL, m};
        double st = med_over(rounds, get_step, &q), p = par_share[m];
        if (p < 0.0) {
            printf("- %s: the regions of the 1- and 2-thread runs do not line up; not measured\n", model_names[m]);
            continue;
        }
        double ideal = st * ((1.0 - p) + p / 2.0), f = 0.0;
        for (int s = 0; s < n_shapes; s++)
            if (shapes[s].model == m) f += shapes[s].calls * flops(&shapes[s]);
        printf("- %s: %g regions per step, %g of them split on 2 threads, holding %.0f%% of the\n"
               "  1-thread step: with no overhead 2 threads give at most %.2fx (%.2f ms, %.0f%% of twice the\n"
               "  1-thread bound)\n",
               model_names[m], par_regions[m], par_split[m], 100.0 * p, st / ideal, 1e3 * ideal,
               100.0 * f / ideal / (2.0 * bounds[0] * 1e9));
    }
    printf("\nAgreement with OpenBLAS on 1 thread (largest |C - C_ref| / largest |C_ref| over all shapes;\n"
           "shapes whose result is not bit-identical, of %d):\n\n", n_shapes);
    printf("| threads | OpenBLAS | BLIS | LIBXSMM | own C |\n|---|---|---|---|---|\n");
    for (int t = 0; t < 2; t++) {
        printf("| %d |", t + 1);
        for (int b = 0; b < N_BACK; b++)
            if (back_fn[b]) printf(" %.1e (%d) |", maxrel[t][b], ndiff[t][b]);
            else printf(" - |");
        printf("\n");
    }
#ifdef TL_BENCH_XSMM
    if (xsmm_trans_copies) printf("\nLIBXSMM: transposed operands copied before an NN kernel (no JIT kernel for that transpose)\n");
    libxsmm_finalize();
#endif
    for (int m = 0; m < N_MODELS; m++) {
        tl_model_free(runs[m].m);
        free(runs[m].s.cat);
        free(runs[m].s.num);
        free(runs[m].s.labels);
    }
    for (int i = 0; i < n_shapes; i++) {
        free(shapes[i].a);
        free(shapes[i].b);
        free(shapes[i].c);
        free(shapes[i].c0);
        free(shapes[i].ref);
    }
    return 0;
}
