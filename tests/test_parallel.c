/* test_parallel.c — the worker pool (engine/parallel.h) and the passes that
 * use it: every index covered exactly once, the documented partition, nested
 * and concurrent calls, many tiny jobs, fork, signals staying with the main
 * thread; the engine's parallel passes giving the same bits with 1 and 2
 * threads where no GEMM is involved, bias gradients the documented per-part
 * sums; GEMMs split over the pool (gemm.h) exact on exactly representable
 * inputs at every thread count, both split directions, every transpose;
 * training with 2 threads repeating bit for bit, allocating nothing per
 * step, and agreeing with 1 thread; dropout's stream split over chunks by
 * jumping ahead, the same bits at every thread count. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gemm.h"
#include "graph.h"
#include "ops/ops.h"
#include "optim.h"
#include "parallel.h"
#include "support.h"

static int saved_threads;

static int setup(void **state)
{
    (void)state;
    saved_threads = tl_get_threads();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tl_set_threads(saved_threads);
    return 0;
}

/* ---- the pool ---------------------------------------------------------------- */

#define MAX_N 5000

struct cover {
    atomic_int hits[MAX_N];
    atomic_int calls[TL_PARALLEL_MAX_THREADS];
    size_t begin[TL_PARALLEL_MAX_THREADS], end[TL_PARALLEL_MAX_THREADS];
};

static void cover_fn(void *ctx, size_t b, size_t e, int part)
{
    struct cover *c = ctx;
    for (size_t i = b; i < e; i++) atomic_fetch_add(&c->hits[i], 1);
    atomic_fetch_add(&c->calls[part], 1);
    c->begin[part] = b;
    c->end[part] = e;
}

static void test_covers_every_index_once(void **state)
{
    (void)state;
    static struct cover c;
    const int threads[] = {1, 2, 3, 4, 7};
    const size_t ns[] = {0, 1, 2, 3, 5, 7, 64, 127, 1000, 1001, 4097, MAX_N};
    const size_t grains[] = {0, 1, 2, 3, 64, 333, 1000, 100000};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        tl_set_threads(threads[t]);
        assert_int_equal(tl_get_threads(), threads[t]);
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t b = 0; b < sizeof grains / sizeof *grains; b++) {
                size_t n = ns[a], grain = grains[b];
                memset(&c, 0, sizeof c);
                int parts = tl_parallel_parts(n, grain);
                size_t want = n == 0 ? 0 : n / (grain ? grain : 1);
                want = want < 1 ? (n ? 1 : 0) : want > (size_t)threads[t] ? (size_t)threads[t] : want;
                assert_int_equal(parts, (int)want);
                tl_parallel_for(n, grain, cover_fn, &c);
                for (size_t i = 0; i < n; i++)
                    if (atomic_load(&c.hits[i]) != 1) {
                        print_message("threads %d n %zu grain %zu: index %zu hit %d times\n",
                                      threads[t], n, grain, i, atomic_load(&c.hits[i]));
                        fail();
                    }
                size_t next = 0;
                for (int p = 0; p < parts; p++) {
                    size_t lo, hi;
                    tl_parallel_chunk(n, parts, p, &lo, &hi);
                    assert_int_equal(atomic_load(&c.calls[p]), 1);
                    assert_int_equal(c.begin[p], lo); /* the documented partition */
                    assert_int_equal(c.end[p], hi);
                    assert_int_equal(lo, next);          /* contiguous, in part order */
                    assert_true(hi - lo >= n / (size_t)parts && hi - lo <= n / (size_t)parts + 1);
                    next = hi;
                }
                assert_int_equal(next, n);
                for (int p = parts; p < TL_PARALLEL_MAX_THREADS; p++)
                    assert_int_equal(atomic_load(&c.calls[p]), 0);
            }
    }
    tl_set_threads(3);
    tl_parallel_for(3000, 1, cover_fn, &c);
    assert_int_equal(tl_parallel_workers(), 2);
    tl_set_threads(1); /* fewer threads: the workers are joined */
    assert_int_equal(tl_parallel_workers(), 0);
}

/* A float sum with per-part partials added in part order: the same bits on
 * every run, and the bits of the serial sum over the same chunks. */
struct psum {
    const float *x;
    float partial[TL_PARALLEL_MAX_THREADS];
};

static void psum_fn(void *ctx, size_t b, size_t e, int part)
{
    struct psum *s = ctx;
    float acc = 0.0f;
    for (size_t i = b; i < e; i++) acc += s->x[i] * s->x[i];
    s->partial[part] = acc;
}

static float psum_run(const float *x, size_t n)
{
    struct psum s = {.x = x};
    int parts = tl_parallel_parts(n, 1000);
    tl_parallel_for(n, 1000, psum_fn, &s);
    float total = 0.0f;
    for (int p = 0; p < parts; p++) total += s.partial[p];
    return total;
}

static void test_partials_repeat(void **state)
{
    (void)state;
    size_t n = 100003;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    tl_rng r;
    tl_rng_seed(&r, 5);
    tlt_fill_uniform(x, n, -3.0f, 3.0f, &r);
    tl_set_threads(2);
    assert_int_equal(tl_parallel_parts(n, 1000), 2);
    float first = psum_run(x, n);
    for (int rep = 0; rep < 200; rep++) {
        float again = psum_run(x, n);
        assert_memory_equal(&again, &first, sizeof first);
    }
    size_t lo, hi;
    float serial = 0.0f;
    for (int p = 0; p < 2; p++) {
        tl_parallel_chunk(n, 2, p, &lo, &hi);
        float acc = 0.0f;
        for (size_t i = lo; i < hi; i++) acc += x[i] * x[i];
        serial += acc;
    }
    assert_memory_equal(&serial, &first, sizeof first);
    free(x);
}

/* A call from inside a job, and calls from two threads at once, run their
 * chunks on the calling thread: still every index once. */
struct nest {
    struct cover *inner[TL_PARALLEL_MAX_THREADS];
};

static void nest_fn(void *ctx, size_t b, size_t e, int part)
{
    struct nest *s = ctx;
    (void)b;
    (void)e;
    tl_parallel_for(MAX_N, 10, cover_fn, s->inner[part]);
}

static void *other_thread(void *arg)
{
    for (int rep = 0; rep < 50; rep++) tl_parallel_for(MAX_N, 10, cover_fn, (struct cover *)arg + rep % 2);
    return NULL;
}

static void test_nested_and_concurrent(void **state)
{
    (void)state;
    tl_set_threads(2);
    struct cover *c = calloc(4, sizeof *c);
    assert_non_null(c);
    struct nest s = {{&c[0], &c[1]}};
    tl_parallel_for(2, 1, nest_fn, &s);
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < MAX_N; i++) assert_int_equal(atomic_load(&c[k].hits[i]), 1);

    memset(c, 0, 4 * sizeof *c);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &c[2]), 0);
    for (int rep = 0; rep < 50; rep++) tl_parallel_for(MAX_N, 10, cover_fn, &c[rep % 2]);
    pthread_join(t, NULL);
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < MAX_N; i++) assert_int_equal(atomic_load(&c[k].hits[i]), 25);
    free(c);
}

/* Many small jobs back to back, of a few microseconds or less: workers are
 * often late and the caller runs their chunks itself; each chunk still runs
 * exactly once. */
static void add_fn(void *ctx, size_t b, size_t e, int part)
{
    atomic_long *sum = ctx;
    for (size_t i = b; i < e; i++) {
        for (volatile size_t spin = 0; spin < (i % 4) * 300; spin++) continue;
        atomic_fetch_add(sum, (long)(i + 1) * (part + 1));
    }
}

static void test_many_small_jobs(void **state)
{
    (void)state;
    for (int t = 2; t <= 3; t++) {
        tl_set_threads(t);
        for (int rep = 0; rep < 20000; rep++) {
            size_t n = 2 + (size_t)rep % 7;
            atomic_long sum = 0;
            tl_parallel_for(n, 1, add_fn, &sum);
            long want = 0;
            int parts = tl_parallel_parts(n, 1);
            for (int p = 0; p < parts; p++) {
                size_t lo, hi;
                tl_parallel_chunk(n, parts, p, &lo, &hi);
                for (size_t i = lo; i < hi; i++) want += (long)(i + 1) * (p + 1);
            }
            if (atomic_load(&sum) != want) {
                print_message("threads %d, job %d: sum %ld, want %ld\n", t, rep, atomic_load(&sum), want);
                fail();
            }
        }
    }
}

/* A forked child has none of the parent's workers; it starts its own. */
static void test_fork(void **state)
{
    (void)state;
    static struct cover c;
    tl_set_threads(2);
    tl_parallel_for(MAX_N, 10, cover_fn, &c);
    assert_int_equal(tl_parallel_workers(), 1);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int ok = tl_parallel_workers() == 0;
        memset(&c, 0, sizeof c);
        tl_parallel_for(MAX_N, 10, cover_fn, &c);
        ok = ok && tl_parallel_workers() == 1;
        for (size_t i = 0; i < MAX_N; i++) ok = ok && atomic_load(&c.hits[i]) == 1;
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    memset(&c, 0, sizeof c);
    tl_parallel_for(MAX_N, 10, cover_fn, &c); /* the parent's pool still works */
    for (size_t i = 0; i < MAX_N; i++) assert_int_equal(atomic_load(&c.hits[i]), 1);
}

/* Workers block signals: a process-directed signal (Ctrl-C) runs its handler
 * on the main thread. */
static pthread_t handler_thread;
static volatile sig_atomic_t handled;

static void on_signal(int sig)
{
    (void)sig;
    handler_thread = pthread_self();
    handled = 1;
}

static void test_signals_reach_main_thread(void **state)
{
    (void)state;
    static struct cover c;
    tl_set_threads(4);
    tl_parallel_for(MAX_N, 10, cover_fn, &c);
    assert_int_equal(tl_parallel_workers(), 3);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    for (int rep = 0; rep < 20; rep++) {
        handled = 0;
        kill(getpid(), SIGUSR1);
        for (int w = 0; w < 1000 && !handled; w++) usleep(1000);
        assert_true(handled);
        assert_true(pthread_equal(handler_thread, pthread_self()));
    }
    sigaction(SIGUSR1, &old, NULL);
}

/* ---- GEMMs on the pool ------------------------------------------------------ */

/* C = op(A) op(B) + beta C in double, for checking. */
static void naive_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                       int ldb, float beta, float *c, int ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int l = 0; l < k; l++)
                s += (double)(ta ? a[(size_t)l * lda + i] : a[(size_t)i * lda + l]) *
                     (double)(tb ? b[(size_t)j * ldb + l] : b[(size_t)l * ldb + j]);
            float *cij = c + (size_t)i * ldc + j;
            *cij = (float)(s + (beta != 0.0f ? (double)*cij : 0.0));
        }
}

static void fill_grid(float *x, size_t n, int q, tl_rng *r);

/* Every transpose, split by rows (m >= n) and by columns, odd sizes and
 * leading dimensions wider than the matrices, beta 0 and 1, at 1, 2 and 3
 * threads: on multiples of 1/8 every partial sum is exact, so the pool's
 * split must give exactly the double-precision result. */
static void test_gemm_split(void **state)
{
    (void)state;
    const int shapes[][3] = {{1024, 144, 256}, {97, 1000, 131}, {517, 33, 300}, {3, 5, 7}, {640, 640, 64}};
    tl_rng r;
    tl_rng_seed(&r, 5);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int bi = 0; bi < 2; bi++) {
                    float beta = (float)bi;
                    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
                    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb,
                           nc = (size_t)m * ldc;
                    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
                    float *c0 = malloc(nc * sizeof *c0), *want = malloc(nc * sizeof *want);
                    float *got = malloc(nc * sizeof *got);
                    assert_true(a && b && c0 && want && got);
                    fill_grid(a, na, 8, &r);
                    fill_grid(b, nb, 8, &r);
                    fill_grid(c0, nc, 8, &r);
                    memcpy(want, c0, nc * sizeof *want);
                    naive_gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, want, ldc);
                    for (int t = 1; t <= 3; t++) {
                        tl_set_threads(t);
                        memcpy(got, c0, nc * sizeof *got);
                        tl_gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, got, ldc);
                        if (memcmp(got, want, nc * sizeof *got) != 0)
                            fail_msg("gemm %dx%dx%d ta=%d tb=%d beta=%g threads=%d differs", m, n, k,
                                     ta, tb, (double)beta, t);
                    }
                    free(a);
                    free(b);
                    free(c0);
                    free(want);
                    free(got);
                }
    }
    /* the big shapes really were split, on workers; the tiny one was not */
    assert_int_equal(tl_parallel_workers(), 2); /* started by the 3-thread runs */
    tl_set_threads(2);
    assert_int_equal(tl_gemm_parts(1024, 1024.0 * 144 * 256), 2);
    assert_int_equal(tl_gemm_parts(3, 3.0 * 5 * 7), 1);
    float x[4] = {1, 2, 3, 4}, y[4];
    tl_gemm(0, 0, 2, 2, 2, x, 2, x, 2, 0.0f, y, 2);
    assert_int_equal(tl_parallel_workers(), 0); /* stayed on the calling thread */
}

/* On real-valued inputs, a given thread count repeats its bits, and other
 * counts agree to rounding. */
static void test_gemm_repeats(void **state)
{
    (void)state;
    int m = 1000, n = 300, k = 257;
    float *a = malloc((size_t)m * k * sizeof *a), *b = malloc((size_t)k * n * sizeof *b);
    float *c[3];
    assert_true(a && b);
    tl_rng r;
    tl_rng_seed(&r, 9);
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = tl_rng_normal(&r);
    for (size_t i = 0; i < (size_t)k * n; i++) b[i] = tl_rng_normal(&r);
    const int threads[3] = {2, 2, 1};
    for (int i = 0; i < 3; i++) {
        tl_set_threads(threads[i]);
        c[i] = malloc((size_t)m * n * sizeof *c[i]);
        assert_non_null(c[i]);
        tl_gemm(0, 1, m, n, k, a, k, b, k, 0.0f, c[i], n); /* b read as [n x k] */
    }
    assert_memory_equal(c[0], c[1], (size_t)m * n * sizeof *c[0]);
    assert_true(tlt_close_f("gemm 1 vs 2 threads", c[0], c[2], (size_t)m * n, 1e-5, 1e-4));
    for (int i = 0; i < 3; i++) free(c[i]);
    free(a);
    free(b);
}

/* ---- the engine's passes -------------------------------------------------------- */

/* Multiples of 1/q in [-1, 1], so that short dot products are exact in float
 * and a GEMM gives the same bits however it is split. */
static void fill_grid(float *x, size_t n, int q, tl_rng *r)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)tl_rng_below(r, (uint64_t)(2 * q + 1)) - q) / (float)q;
}

static void fill_params(tl_graph *g, uint64_t seed)
{
    tl_rng r;
    tl_rng_seed(&r, seed);
    for (int i = 0; i < tl_graph_param_count(g); i++) {
        const tl_param_info *p = tl_graph_param(g, i);
        fill_grid(tl_graph_params(g, NULL) + p->offset, (size_t)p->rows * (size_t)p->cols, 8, &r);
    }
}

/* Gate mixing with several blocks (PLE's shape: two blocks of one fresh
 * source, a second source, a single-block mix that overwrites), linear layers
 * with each activation and a bias, grouped layers: forward values and the
 * gradients our passes make (gate, experts, biases) give the same bits with 1
 * and 2 threads. Parameters are fixed-row nodes of 512 rows, enough for the
 * passes to split. */
typedef struct {
    tl_graph *g;
    tl_node loss, mix1, mix2, mix3, lin[3], grp, bias[3], gbias, gate, src;
} pass_graph;

static pass_graph build_passes(void)
{
    pass_graph m;
    int R = 512, d = 64;
    tl_graph *g = m.g = tl_graph_new(1, 9);
    assert_non_null(g);
    m.gate = tl_scale(g, tl_param(g, R, 6, TL_INIT_ZEROS, 0, "gate"), 1.0f); /* fresh gradient */
    tl_node pa = tl_param(g, R, 6 * d, TL_INIT_ZEROS, 0, "pa");
    tl_node pb = tl_param(g, R, 2 * d, TL_INIT_ZEROS, 0, "pb");
    m.src = tl_scale(g, pa, 1.0f); /* a fresh intermediate gradient */
    tl_node src[2] = {m.src, pb};
    int first[2] = {0, 0}, count[2] = {4, 2};
    m.mix1 = tl__gate_mix_blocks(g, m.gate, 2, src, first, count, d);
    tl_node src2[2] = {m.src, m.src};
    int first2[2] = {4, 0}, count2[2] = {2, 4};
    m.mix2 = tl__gate_mix_blocks(g, m.gate, 2, src2, first2, count2, d);
    m.mix3 = tl_gate_mix(g, m.gate, tl_scale(g, pa, 0.5f), 6);
    tl_node x = tl_param(g, R, 128, TL_INIT_ZEROS, 0, "x");
    const tl_act acts[3] = {TL_ACT_RELU, TL_ACT_SIGMOID, TL_ACT_TANH};
    tl_node sum = tl_sum(g, tl_mul(g, tl_add(g, m.mix1, m.mix2), tl_param(g, R, d, TL_INIT_ZEROS, 0, "c0")));
    sum = tl_add(g, sum, tl_sum(g, tl_mul(g, m.mix3, tl_param(g, R, d, TL_INIT_ZEROS, 0, "c1"))));
    for (int a = 0; a < 3; a++) {
        m.bias[a] = tl_param(g, 1, 256, TL_INIT_ZEROS, 0, "b");
        m.lin[a] = tl_linear(g, x, tl_param(g, 128, 256, TL_INIT_ZEROS, 0, "w"), m.bias[a], acts[a]);
        sum = tl_add(g, sum, tl_sum(g, tl_mul(g, m.lin[a], tl_param(g, R, 256, TL_INIT_ZEROS, 0, "c"))));
    }
    m.gbias = tl_param(g, 1, 4 * 64, TL_INIT_ZEROS, 0, "gb");
    m.grp = tl_grouped_linear(g, x, tl_param(g, 128, 64, TL_INIT_ZEROS, 0, "gw"), m.gbias, 4,
                              TL_ACT_SIGMOID);
    m.loss = tl_add(g, sum, tl_sum(g, tl_mul(g, m.grp, tl_param(g, R, 256, TL_INIT_ZEROS, 0, "gc"))));
    if (tl_graph_status(g) != TL_OK) print_message("%s\n", tl_graph_errmsg(g));
    assert_int_equal(tl_graph_status(g), TL_OK);
    assert_int_equal(tl_graph_backward(g, m.loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    fill_params(g, 17);
    return m;
}

static size_t node_len(const tl_graph *g, tl_node a)
{
    return (size_t)tl_node_rows(g, a) * (size_t)tl_node_cols(g, a);
}

/* A bias gradient as linear.c documents it, after `runs` backward runs: the
 * rows' activation gradients summed in row order, or with the rows split in
 * `parts` chunks, per-chunk sums (from 0) added in chunk order. */
static void expect_bias_grad(const float *y, const float *dy, int rows, int cols, tl_act act,
                             int parts, int runs, float *out)
{
    float *partial = calloc((size_t)parts * (size_t)cols, sizeof *partial);
    assert_non_null(partial);
    memset(out, 0, (size_t)cols * sizeof *out);
    for (int run = 0; run < runs; run++) {
        memset(partial, 0, (size_t)parts * (size_t)cols * sizeof *partial);
        for (int p = 0; p < parts; p++) {
            size_t lo, hi;
            tl_parallel_chunk((size_t)rows, parts, p, &lo, &hi);
            float *acc = parts == 1 ? out : partial + (size_t)p * (size_t)cols;
            for (size_t i = lo; i < hi; i++)
                for (int c = 0; c < cols; c++) {
                    float yv = y[i * (size_t)cols + (size_t)c], d = dy[i * (size_t)cols + (size_t)c];
                    float dz = act == TL_ACT_RELU ? (yv > 0.0f ? d : 0.0f)
                             : act == TL_ACT_SIGMOID ? d * yv * (1.0f - yv) : d * (1.0f - yv * yv);
                    acc[c] += dz;
                }
        }
        if (parts > 1)
            for (int p = 0; p < parts; p++)
                for (int c = 0; c < cols; c++) out[c] += partial[(size_t)p * (size_t)cols + (size_t)c];
    }
    free(partial);
}

/* The values and gradients our passes make alone, bias gradients excepted
 * (`ours` floats), then every parameter gradient (`all` floats in total). */
typedef struct {
    float *v;
    size_t ours, all;
} pass_out;

static pass_out run_passes(int threads)
{
    tl_set_threads(threads);
    pass_graph m = build_passes();
    tl_graph *g = m.g;
    assert_int_equal(tl_graph_forward(g, 1), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK);
    assert_int_equal(tl_graph_backward_run(g), TL_OK); /* the second run adds */
    tl_node vals[] = {m.mix1, m.mix2, m.mix3, m.lin[0], m.lin[1], m.lin[2], m.grp};
    tl_node grads[] = {m.gate, m.src};
    size_t nv = sizeof vals / sizeof *vals, ng = sizeof grads / sizeof *grads, pf;
    float *pg = tl_graph_grads(g, &pf);
    pass_out o = {NULL, 0, 0};
    for (size_t i = 0; i < nv; i++) o.ours += node_len(g, vals[i]);
    for (size_t i = 0; i < ng; i++) o.ours += node_len(g, grads[i]);
    o.all = o.ours + pf;
    o.v = malloc(o.all * sizeof *o.v);
    assert_non_null(o.v);
    float *at = o.v;
    for (size_t i = 0; i < nv; i++, at += node_len(g, vals[i - 1]))
        memcpy(at, tl_graph_value(g, vals[i]), node_len(g, vals[i]) * sizeof(float));
    for (size_t i = 0; i < ng; i++, at += node_len(g, grads[i - 1]))
        memcpy(at, tl_graph_grad(g, grads[i]), node_len(g, grads[i]) * sizeof(float));
    memcpy(at, pg, pf * sizeof(float));

    /* bias gradients: exactly the documented sums for this thread count */
    const tl_act acts[4] = {TL_ACT_RELU, TL_ACT_SIGMOID, TL_ACT_TANH, TL_ACT_SIGMOID};
    tl_node outs[4] = {m.lin[0], m.lin[1], m.lin[2], m.grp}, bias[4] = {m.bias[0], m.bias[1], m.bias[2], m.gbias};
    float want[256];
    for (int l = 0; l < 4; l++) {
        int rows = tl_node_rows(g, outs[l]), cols = tl_node_cols(g, outs[l]);
        assert_int_equal(cols, 256);
        int parts = tl_parallel_parts((size_t)rows, (TL_PARALLEL_GRAIN + 255) / 256);
        assert_int_equal(parts, threads); /* the pass did split */
        expect_bias_grad(tl_graph_value(g, outs[l]), tl_graph_grad(g, outs[l]), rows, cols, acts[l],
                         parts, 2, want);
        assert_memory_equal(tl_graph_grad(g, bias[l]), want, sizeof want);
    }
    if (threads > 1) assert_int_equal(tl_parallel_workers(), threads - 1);
    tl_graph_free(g);
    return o;
}

static void test_passes_same_bits(void **state)
{
    (void)state;
    pass_out one = run_passes(1), two = run_passes(2), again = run_passes(2);
    assert_int_equal(one.all, two.all);
    assert_memory_equal(two.v, again.v, two.all * sizeof *two.v);
    size_t diff = 0;
    for (size_t i = 0; i < one.ours; i++) diff += memcmp(&one.v[i], &two.v[i], sizeof(float)) != 0;
    if (diff) print_message("%zu of %zu values differ between 1 and 2 threads\n", diff, one.ours);
    assert_int_equal(diff, 0);
    /* the rest: weight gradients, sums of 512 terms from OpenBLAS, agree closely */
    assert_true(tlt_close_f("weight gradients", two.v + one.ours, one.v + one.ours,
                            one.all - one.ours, 1e-4, 1e-4));
    free(one.v);
    free(two.v);
    free(again.v);
}

/* The optimizer on a graph without GEMMs: dense and sparse parameters, Adam
 * with clipping, AdamW, SGD, Adagrad give the same bits with 1 and 2 threads.
 * The sizes put the split between the threads inside the embedding's rows. */
static const int32_t VOCAB[3] = {3000, 5000, 2000};

static void optim_run(int threads, tl_optim_kind kind, float **params, size_t *n, float *norm)
{
    tl_set_threads(threads);
    int B = 512, D = 64;
    tl_graph *g = tl_graph_new(B, 4);
    assert_non_null(g);
    tl_node ids = tl_input_ids(g, 3, "ids"), c = tl_input(g, 3 * D, "c");
    tl_node dense = tl_param(g, 300, 300, TL_INIT_UNIFORM, 0.1f, "dense");
    tl_node table = tl_param(g, 10000, D, TL_INIT_UNIFORM, 0.1f, "table");
    tl_node dense2 = tl_param(g, 1, 70001, TL_INIT_UNIFORM, 0.1f, "dense2");
    tl_node loss = tl_add(g, tl_sum(g, tl_mul(g, tl_embedding(g, table, ids, 3, VOCAB), c)),
                          tl_add(g, tl_sum(g, tl_mul(g, dense, dense)),
                                 tl_sum(g, tl_tanh(g, dense2))));
    assert_int_equal(tl_graph_backward(g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    tl_optim_config cfg = tl_optim_defaults(kind);
    cfg.clip_norm = kind == TL_OPTIM_ADAM ? 5.0f : 0.0f;
    cfg.momentum = kind == TL_OPTIM_SGD ? 0.9f : 0.0f;
    cfg.weight_decay = kind == TL_OPTIM_ADAGRAD ? 0.01f : cfg.weight_decay;
    tl_optim *o = tl_optim_new(g, &cfg);
    assert_non_null(o);
    tl_rng r;
    tl_rng_seed(&r, 8);
    uint64_t before = 0;
    for (int step = 0; step < 6; step++) {
        int32_t *id = tl_graph_ids(g, ids);
        for (int i = 0; i < B; i++)
            for (int f = 0; f < 3; f++) id[i * 3 + f] = (int32_t)tl_rng_below(&r, (uint64_t)VOCAB[f]);
        tlt_fill_uniform(tl_graph_input(g, c), (size_t)B * 3 * D, -1.0f, 1.0f, &r);
        assert_int_equal(tl_graph_forward(g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        int nrows;
        tl_graph_touched_rows(g, tl_graph_param_index(g, table), &nrows);
        size_t total = 90000 + (size_t)nrows * D + 70001;
        assert_true(total / 2 > 90000 && total / 2 < 90000 + (size_t)nrows * D);
        if (step == 1) before = tl_alloc_count();
        assert_int_equal(tl_optim_step(o), TL_OK);
    }
    assert_int_equal(tl_alloc_count(), before);
    *norm = tl_optim_last_grad_norm(o);
    float *p = tl_graph_params(g, n);
    *params = malloc(*n * sizeof **params);
    assert_non_null(*params);
    memcpy(*params, p, *n * sizeof **params);
    tl_optim_free(o);
    tl_graph_free(g);
}

static void test_optim_same_bits(void **state)
{
    (void)state;
    const tl_optim_kind kinds[4] = {TL_OPTIM_ADAM, TL_OPTIM_ADAMW, TL_OPTIM_SGD, TL_OPTIM_ADAGRAD};
    for (int k = 0; k < 4; k++) {
        float *a, *b, na, nb;
        size_t n1, n2;
        optim_run(1, kinds[k], &a, &n1, &na);
        optim_run(2, kinds[k], &b, &n2, &nb);
        assert_int_equal(n1, n2);
        assert_memory_equal(&na, &nb, sizeof na);
        if (memcmp(a, b, n1 * sizeof *a) != 0) {
            print_message("%s: parameters differ between 1 and 2 threads\n", tl_optim_name(kinds[k]));
            fail();
        }
        free(a);
        free(b);
    }
}

/* ---- dropout's split stream ------------------------------------------------------ */

/* tl__rng_jump(k) lands where k draws do: small k (stepped), powers of two,
 * k with many set bits (one polynomial per bit). */
static void test_rng_jump(void **state)
{
    (void)state;
    const uint64_t ks[] = {0, 1, 255, 256, 257, 4096 + 255, 98304, 100003, 65535 * 3};
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        tl_rng a, b;
        tl_rng_seed(&a, 1000 + i);
        b = a;
        tl__rng_jump(&a, ks[i]);
        for (uint64_t j = 0; j < ks[i]; j++) tl_rng_next(&b);
        if (memcmp(&a, &b, sizeof a) != 0) {
            print_message("jump by %llu differs from stepping\n", (unsigned long long)ks[i]);
            fail();
        }
    }
}

/* Dropout split over 1, 2, 3 and 7 threads: the mask is tl_rng_uniform's
 * stream, one draw per element in order, whatever the split; the graph's RNG
 * ends where those draws leave it; the gradient is the same bits. 512 x 97
 * floats: up to 6 chunks, none starting at a multiple of 256 draws. */
static void test_dropout_split(void **state)
{
    (void)state;
    const int R = 512, C = 97;
    const float p = 0.4f;
    const size_t n = (size_t)R * C;
    float *ref_y = NULL, *ref_g = NULL;
    const int threads[] = {1, 2, 3, 7};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        tl_set_threads(threads[t]);
        tl_graph *g = tl_graph_new(1, 5);
        assert_non_null(g);
        tl_node a = tl_param(g, R, C, TL_INIT_UNIFORM, 1.0f, "a");
        tl_node y = tl_dropout(g, tl_scale(g, a, 2.0f), p);
        tl_node loss = tl_sum(g, tl_mul(g, y, tl_param(g, R, C, TL_INIT_UNIFORM, 1.0f, "c")));
        assert_int_equal(tl_graph_backward(g, loss), TL_OK);
        assert_int_equal(tl_graph_plan(g), TL_OK);
        tl_rng rng = *tl_graph_rng(g);
        for (int run = 0; run < 2; run++) { /* the second run continues the stream */
            assert_int_equal(tl_graph_forward(g, 1), TL_OK);
            assert_int_equal(tl_graph_backward_run(g), TL_OK);
            const float *A = tl_graph_params(g, NULL) + tl_graph_param(g, 0)->offset;
            const float *Y = tl_graph_value(g, y);
            for (size_t i = 0; i < n; i++) {
                float m = tl_rng_uniform(&rng) < 1.0f - p ? 1.0f / (1.0f - p) : 0.0f;
                if (Y[i] != 2.0f * A[i] * m) {
                    print_message("threads %d run %d: element %zu is not draw %zu's\n", threads[t], run, i, i);
                    fail();
                }
            }
            assert_memory_equal(&rng, tl_graph_rng(g), sizeof rng);
        }
        const float *Y = tl_graph_value(g, y), *G = tl_graph_grads(g, NULL) + tl_graph_param(g, 0)->offset;
        if (!ref_y) {
            ref_y = malloc(n * sizeof *ref_y);
            ref_g = malloc(n * sizeof *ref_g);
            assert_true(ref_y && ref_g);
            memcpy(ref_y, Y, n * sizeof *ref_y);
            memcpy(ref_g, G, n * sizeof *ref_g);
        } else {
            assert_memory_equal(Y, ref_y, n * sizeof *Y);
            assert_memory_equal(G, ref_g, n * sizeof *G);
        }
        tl_graph_free(g);
    }
    free(ref_y);
    free(ref_g);
}

/* ---- training ------------------------------------------------------------------- */

/* An MMoE-like model big enough for every pass to split: embedding and dense
 * input, 4 experts (one GEMM, then a grouped layer), two softmax gates, two
 * towers, Adam with clipping. Returns the parameters after `steps` steps. */
static float *train(int threads, int steps, size_t *n)
{
    tl_set_threads(threads);
    int B = 256, E = 4, d = 64;
    static const int32_t vocab[2] = {500, 300};
    tl_graph *g = tl_graph_new(B, 21);
    assert_non_null(g);
    tl_node ids = tl_input_ids(g, 2, "ids"), num = tl_input(g, 8, "num");
    tl_node y[2] = {tl_input(g, 1, "y1"), tl_input(g, 1, "y2")};
    tl_node table = tl_param(g, 800, 8, TL_INIT_UNIFORM, 0.05f, "table");
    tl_node parts[2] = {tl_embedding(g, table, ids, 2, vocab), num};
    tl_node x = tl_concat(g, 2, parts);
    tl_node h = tl_linear(g, x, tl_param(g, 24, E * 128, TL_INIT_XAVIER_UNIFORM, 0, "e1.w"),
                          tl_param(g, 1, E * 128, TL_INIT_UNIFORM, 0.1f, "e1.b"), TL_ACT_RELU);
    tl_node ex = tl_grouped_linear(g, h, tl_param(g, E * 128, d, TL_INIT_XAVIER_UNIFORM, 0, "e2.w"),
                                   tl_param(g, 1, E * d, TL_INIT_UNIFORM, 0.1f, "e2.b"), E,
                                   TL_ACT_RELU);
    tl_node loss = TL_NONE;
    for (int k = 0; k < 2; k++) {
        tl_node gate = tl_softmax(g, tl_linear(g, x, tl_param(g, 24, E, TL_INIT_XAVIER_UNIFORM, 0, "g.w"),
                                               tl_param(g, 1, E, TL_INIT_ZEROS, 0, "g.b"), TL_ACT_NONE));
        tl_node t = tl_linear(g, tl_gate_mix(g, gate, ex, E),
                              tl_param(g, d, 128, TL_INIT_XAVIER_UNIFORM, 0, "t.w"),
                              tl_param(g, 1, 128, TL_INIT_UNIFORM, 0.1f, "t.b"),
                              k ? TL_ACT_TANH : TL_ACT_SIGMOID);
        tl_node logit = tl_linear(g, t, tl_param(g, 128, 1, TL_INIT_XAVIER_UNIFORM, 0, "o.w"),
                                  tl_param(g, 1, 1, TL_INIT_ZEROS, 0, "o.b"), TL_ACT_NONE);
        tl_node l = tl_bce_logits(g, logit, y[k], TL_NONE);
        loss = loss == TL_NONE ? l : tl_add(g, loss, l);
    }
    assert_int_equal(tl_graph_status(g), TL_OK);
    assert_int_equal(tl_graph_backward(g, loss), TL_OK);
    assert_int_equal(tl_graph_plan(g), TL_OK);
    tl_optim_config cfg = tl_optim_defaults(TL_OPTIM_ADAM);
    cfg.lr = 3e-3f;
    cfg.clip_norm = 1.0f;
    tl_optim *o = tl_optim_new(g, &cfg);
    assert_non_null(o);
    tl_rng r;
    tl_rng_seed(&r, 77);
    uint64_t before = 0;
    for (int s = 0; s < steps; s++) {
        int32_t *id = tl_graph_ids(g, ids);
        float *xn = tl_graph_input(g, num);
        for (int i = 0; i < B; i++) {
            id[2 * i] = (int32_t)tl_rng_below(&r, 500);
            id[2 * i + 1] = (int32_t)tl_rng_below(&r, 300);
            for (int j = 0; j < 8; j++) xn[i * 8 + j] = tl_rng_normal(&r);
            tl_graph_input(g, y[0])[i] = xn[i * 8] > 0.0f;
            tl_graph_input(g, y[1])[i] = xn[i * 8] + xn[i * 8 + 1] > 0.5f;
        }
        assert_int_equal(tl_graph_set_batch(g, s % 3 == 2 ? B - 37 : B), TL_OK);
        assert_int_equal(tl_graph_forward(g, 1), TL_OK);
        assert_int_equal(tl_graph_backward_run(g), TL_OK);
        assert_int_equal(tl_optim_step(o), TL_OK);
        if (s == 0) before = tl_alloc_count();
    }
    if (steps > 0) assert_int_equal(tl_alloc_count(), before); /* no allocation per step */
    if (threads > 1) assert_true(tl_parallel_workers() >= 1);
    float *p = tl_graph_params(g, n);
    float *copy = malloc(*n * sizeof *copy);
    assert_non_null(copy);
    memcpy(copy, p, *n * sizeof *copy);
    tl_optim_free(o);
    tl_graph_free(g);
    return copy;
}

static void test_training_repeats(void **state)
{
    (void)state;
    size_t n1, n2, n3;
    float *a = train(2, 30, &n1), *b = train(2, 30, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * sizeof *a);
    float *c = train(1, 30, &n3);
    assert_int_equal(n1, n3);
    /* OpenBLAS may split a GEMM differently with another thread count */
    assert_true(tlt_close_f("1 vs 2 threads", a, c, n1, 1e-4, 1e-5));
    size_t moved = 0;
    float *init = train(1, 0, &n3);
    for (size_t i = 0; i < n1; i++) moved += a[i] != init[i];
    assert_true(moved > n1 / 2); /* the comparison is about trained parameters */
    free(a);
    free(b);
    free(c);
    free(init);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_covers_every_index_once),
        cmocka_unit_test(test_partials_repeat),
        cmocka_unit_test(test_nested_and_concurrent),
        cmocka_unit_test(test_many_small_jobs),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_signals_reach_main_thread),
        cmocka_unit_test(test_gemm_split),
        cmocka_unit_test(test_gemm_repeats),
        cmocka_unit_test(test_passes_same_bits),
        cmocka_unit_test(test_optim_same_bits),
        cmocka_unit_test(test_rng_jump),
        cmocka_unit_test(test_dropout_split),
        cmocka_unit_test(test_training_repeats),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
