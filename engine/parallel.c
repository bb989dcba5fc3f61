/* parallel.c — the worker pool behind tl_parallel_for (see parallel.h).
 *
 * One slot per worker: the caller fills a worker's slot, marks it posted
 * (release) and bumps the slot's sequence number; the worker, seeing a new
 * number, takes the chunk by a compare-and-swap on the slot's state
 * (acquire), runs it and decrements `pending`. The caller, done with its own
 * chunk, takes and runs any chunk still posted, so a worker that is asleep or
 * has no core costs no waiting. A slot is only refilled after `pending`
 * reached 0. Idle workers wait (spin, then yield) for a while, then sleep on
 * `wake`; a caller whose workers are not done waits the same way, then
 * sleeps on `done`. Every sleep is decided under `mu`, so no wake-up is
 * lost. */
#include "parallel.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#define HAVE_STREAM 1
#else
#define cpu_relax() ((void)0)
#endif


static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A waiting thread (an idle worker, a caller whose workers are not done)
 * spins for SPIN_NS, then yields its core for up to YIELD_NS (as OpenBLAS's
 * own idle threads do: a GEMM thread sharing the core loses little), then
 * sleeps. */
#define SPIN_NS 2000
#define YIELD_NS 2000000

struct backoff {
    int i, yielding;
    int64_t t0;
};

/* One step of waiting; 1 when it is time to sleep. */
static int backoff_step(struct backoff *b)
{
    if (b->i++ == 0) b->t0 = now_ns();
    if (!b->yielding) {
        if ((b->i & 15) == 0 && now_ns() - b->t0 > SPIN_NS) b->yielding = 1;
        cpu_relax();
        return 0;
    }
    if (now_ns() - b->t0 > YIELD_NS) return 1;
    sched_yield();
    return 0;
}

enum { SLOT_FREE, SLOT_POSTED, SLOT_TAKEN };

struct slot {
    _Alignas(64) atomic_uint seq; /* bumped by the caller to post a chunk */
    atomic_int state;             /* SLOT_*: whoever takes a posted chunk runs it */
    tl_parallel_fn fn;
    void *ctx;
    size_t begin, end;
    int part;
    unsigned seen0; /* seq when the worker was started */
};

static struct {
    pthread_mutex_t job; /* held by the caller for a whole parallel job */
    pthread_mutex_t mu;  /* guards the sleep decisions below */
    pthread_cond_t wake, done;
    int sleepers;        /* workers waiting on wake */
    int caller_waiting;  /* the caller waits on done */
    atomic_int stop;
    atomic_int pending;  /* chunks posted and not finished */
    int nworkers;
    pthread_t tid[TL_PARALLEL_MAX_THREADS];
    struct slot slot[TL_PARALLEL_MAX_THREADS];
} P = {
    .job = PTHREAD_MUTEX_INITIALIZER,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

static pthread_once_t once = PTHREAD_ONCE_INIT;


/* ---- the thread count --------------------------------------------------------- */

extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);

/* The engine's thread count. It starts as OpenBLAS's own default (from
 * OPENBLAS_NUM_THREADS or the core count); OpenBLAS itself is then pinned to
 * one thread, because the engine splits GEMMs over its own pool (gemm.h):
 * one pool, not two competing for the cores. */
static int engine_threads;
static pthread_once_t threads_once = PTHREAD_ONCE_INIT;

static void threads_init(void)
{
    engine_threads = openblas_get_num_threads();
    if (engine_threads < 1) engine_threads = 1;
    openblas_set_num_threads(1);
}

/* Workers beyond the new count are joined here, missing ones start on
 * first use. */
void tl_set_threads(int n)
{
    if (n <= 0) return;
    pthread_once(&threads_once, threads_init);
    engine_threads = n;
    if (tl_parallel_workers() > n - 1) tl_parallel_shutdown();
}

int tl_get_threads(void)
{
    pthread_once(&threads_once, threads_init);
    return engine_threads;
}

/* ---- partition -------------------------------------------------------------- */

static int thread_count(void)
{
    int t = tl_get_threads();
    return t < 1 ? 1 : t > TL_PARALLEL_MAX_THREADS ? TL_PARALLEL_MAX_THREADS : t;
}

int tl_parallel_parts(size_t n, size_t grain)
{
    if (n == 0) return 0;
    size_t parts = n / (grain ? grain : 1), t = (size_t)thread_count();
    return parts < 1 ? 1 : parts > t ? (int)t : (int)parts;
}

void tl_parallel_chunk(size_t n, int parts, int part, size_t *begin, size_t *end)
{
    size_t q = n / (size_t)parts, r = n % (size_t)parts, p = (size_t)part;
    *begin = p * q + (p < r ? p : r);
    *end = *begin + q + (p < r ? 1 : 0);
}

/* ---- workers ---------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct slot *s = arg;
    unsigned seen = s->seen0;
    for (;;) {
        unsigned seq;
        struct backoff bo = {0, 0, 0};
        for (;;) {
            seq = atomic_load_explicit(&s->seq, memory_order_acquire);
            if (seq != seen || atomic_load_explicit(&P.stop, memory_order_relaxed)) break;
            if (backoff_step(&bo)) {
                pthread_mutex_lock(&P.mu);
                P.sleepers++;
                while ((seq = atomic_load_explicit(&s->seq, memory_order_acquire)) == seen &&
                       !atomic_load_explicit(&P.stop, memory_order_relaxed))
                    pthread_cond_wait(&P.wake, &P.mu);
                P.sleepers--;
                pthread_mutex_unlock(&P.mu);
                break;
            }
        }
        if (seq == seen) return NULL; /* stop, and nothing posted */
        seen = seq;
        int posted = SLOT_POSTED; /* else the caller ran the chunk already */
        if (!atomic_compare_exchange_strong_explicit(&s->state, &posted, SLOT_TAKEN,
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue;
        s->fn(s->ctx, s->begin, s->end, s->part);
        if (atomic_fetch_sub_explicit(&P.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&P.mu);
            if (P.caller_waiting) pthread_cond_signal(&P.done);
            pthread_mutex_unlock(&P.mu);
        }
    }
}

/* fork: hold both locks across it; the child has none of the parent's
 * workers, so it starts over with fresh locks and no workers. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&P.job);
    pthread_mutex_lock(&P.mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&P.job);
}

static void atfork_child(void)
{
    pthread_mutex_init(&P.job, NULL);
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.wake, NULL);
    pthread_cond_init(&P.done, NULL);
    P.nworkers = P.sleepers = P.caller_waiting = 0;
    atomic_store(&P.stop, 0);
    atomic_store(&P.pending, 0);
}

static void pool_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    atexit(tl_parallel_shutdown);
}

/* Start workers until there are `want`; called with P.job held. Returns the
 * number running (fewer when the system refuses a thread). */
static int start_workers(int want)
{
    if (P.nworkers >= want) return P.nworkers;
    pthread_once(&once, pool_init);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* inherited: signals stay with the caller */
    while (P.nworkers < want) {
        struct slot *s = &P.slot[P.nworkers];
        s->seen0 = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (pthread_create(&P.tid[P.nworkers], NULL, worker_main, s) != 0) break;
        P.nworkers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return P.nworkers;
}

static void stop_workers(void)
{
    pthread_mutex_lock(&P.mu);
    atomic_store(&P.stop, 1);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    for (int w = 0; w < P.nworkers; w++) pthread_join(P.tid[w], NULL);
    P.nworkers = 0;
    atomic_store(&P.stop, 0);
}

void tl_parallel_shutdown(void)
{
    pthread_mutex_lock(&P.job);
    stop_workers();
    pthread_mutex_unlock(&P.job);
}

int tl_parallel_workers(void)
{
    pthread_mutex_lock(&P.job);
    int n = P.nworkers;
    pthread_mutex_unlock(&P.job);
    return n;
}

void tl_parallel_claim(void *p, size_t bytes)
{
#ifdef HAVE_STREAM
    if (bytes < 4096 || thread_count() < 2) return;
    char *c = p, *e = c + bytes;
    char *a = (char *)(((uintptr_t)c + 15) & ~(uintptr_t)15);
    __m128 z = _mm_setzero_ps();
    for (; a + 16 <= e; a += 16) _mm_stream_ps((float *)(void *)a, z);
    _mm_sfence();
#else
    (void)p;
    (void)bytes;
#endif
}

/* ---- jobs ------------------------------------------------------------------- */

static void run_serial(size_t n, int parts, tl_parallel_fn fn, void *ctx)
{
    for (int p = 0; p < parts; p++) {
        size_t b, e;
        tl_parallel_chunk(n, parts, p, &b, &e);
        fn(ctx, b, e, p);
    }
}

void tl_parallel_for(size_t n, size_t grain, tl_parallel_fn fn, void *ctx)
{
    tl_parallel_run(n, tl_parallel_parts(n, grain), fn, ctx);
}

void tl_parallel_run(size_t n, int parts, tl_parallel_fn fn, void *ctx)
{
    if (n == 0) return;
    if (parts > TL_PARALLEL_MAX_THREADS) parts = TL_PARALLEL_MAX_THREADS;
    if ((size_t)parts > n) parts = (int)n;
    if (parts <= 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    /* busy: a nested call, or another thread's job */
    if (pthread_mutex_trylock(&P.job) != 0) {
        run_serial(n, parts, fn, ctx);
        return;
    }
    if (start_workers(parts - 1) < parts - 1) {
        pthread_mutex_unlock(&P.job);
        run_serial(n, parts, fn, ctx);
        return;
    }
    atomic_store_explicit(&P.pending, parts - 1, memory_order_relaxed);
    for (int p = 1; p < parts; p++) {
        struct slot *s = &P.slot[p - 1];
        s->fn = fn;
        s->ctx = ctx;
        s->part = p;
        tl_parallel_chunk(n, parts, p, &s->begin, &s->end);
        atomic_store_explicit(&s->state, SLOT_POSTED, memory_order_release);
        atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
    }
    pthread_mutex_lock(&P.mu);
    if (P.sleepers) pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);

    size_t b, e;
    tl_parallel_chunk(n, parts, 0, &b, &e);
    fn(ctx, b, e, 0);
    /* A worker that has not started yet (asleep, or its core taken by
     * another process) would only be waited for: run its chunk here. */
    for (int p = parts - 1; p >= 1; p--) {
        struct slot *s = &P.slot[p - 1];
        int posted = SLOT_POSTED;
        if (atomic_compare_exchange_strong_explicit(&s->state, &posted, SLOT_TAKEN,
                                                    memory_order_acq_rel, memory_order_relaxed)) {
            s->fn(s->ctx, s->begin, s->end, s->part);
            atomic_fetch_sub_explicit(&P.pending, 1, memory_order_release);
        }
    }

    struct backoff bo = {0, 0, 0};
    while (atomic_load_explicit(&P.pending, memory_order_acquire) != 0) {
        if (backoff_step(&bo)) {
            pthread_mutex_lock(&P.mu);
            P.caller_waiting = 1;
            while (atomic_load_explicit(&P.pending, memory_order_acquire) != 0)
                pthread_cond_wait(&P.done, &P.mu);
            P.caller_waiting = 0;
            pthread_mutex_unlock(&P.mu);
            break;
        }
    }
    pthread_mutex_unlock(&P.job);
}
