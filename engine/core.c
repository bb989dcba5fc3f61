/* core.c — errors, allocation with counting and fault injection, RNG,
 * cancellation flag, thread count. */
#include "core.h"

#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define TL_ERRMSG_MAX 1024

static _Thread_local char errmsg[TL_ERRMSG_MAX];

tl_status tl_fail(tl_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return code;
}

tl_status tl_fail_context(tl_status code, const char *fmt, ...)
{
    char prefix[256], old[TL_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    size_t n = (size_t)snprintf(errmsg, sizeof errmsg, "%s: ", prefix);
    if (n < sizeof errmsg) snprintf(errmsg + n, sizeof errmsg - n, "%.*s", (int)(sizeof errmsg - n - 1), old);
    return code;
}

const char *tl_errmsg(void) { return errmsg; }
void tl_clear_error(void) { errmsg[0] = '\0'; }

const char *tl_status_name(tl_status s)
{
    switch (s) {
    case TL_OK: return "ok";
    case TL_ERR_ARG: return "argument error";
    case TL_ERR_SHAPE: return "shape error";
    case TL_ERR_NOMEM: return "out of memory";
    case TL_ERR_IO: return "i/o error";
    case TL_ERR_PARSE: return "parse error";
    case TL_ERR_NUMERIC: return "numeric error";
    case TL_ERR_CANCELLED: return "cancelled";
    case TL_ERR_STATE: return "state error";
    case TL_ERR_FORMAT: return "format error";
    }
    return "unknown error";
}

/* ---- allocation ---------------------------------------------------------- */

/* Atomic: worker threads allocate too (scratch buffers), and a plain ++
 * from two threads is a data race. Relaxed: only the counts matter. */
static _Atomic uint64_t alloc_count;
static _Atomic uint64_t fault_at;      /* alloc_attempts value that fails; 0 = off */
static _Atomic uint64_t alloc_attempts;
static _Atomic int fault_happened;

static void count_alloc(void) { atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed); }

static int should_fail(void)
{
    uint64_t n = atomic_fetch_add_explicit(&alloc_attempts, 1, memory_order_relaxed) + 1;
    uint64_t at = atomic_load_explicit(&fault_at, memory_order_relaxed);
    if (at && n == at) {
        atomic_store_explicit(&fault_happened, 1, memory_order_relaxed);
        return 1;
    }
    return 0;
}

void tl_fault_inject_nth(uint64_t k)
{
    atomic_store_explicit(&fault_happened, 0, memory_order_relaxed);
    uint64_t now = atomic_load_explicit(&alloc_attempts, memory_order_relaxed);
    atomic_store_explicit(&fault_at, k ? now + k : 0, memory_order_relaxed);
}

int tl_fault_injected(void) { return atomic_load_explicit(&fault_happened, memory_order_relaxed); }
uint64_t tl_alloc_count(void) { return atomic_load_explicit(&alloc_count, memory_order_relaxed); }

void *tl_malloc(size_t bytes, const char *what)
{
    void *p = should_fail() ? NULL : malloc(bytes ? bytes : 1);
    if (!p) {
        tl_fail(TL_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes,
                what ? what : "?");
        return NULL;
    }
    count_alloc();
    return p;
}

void *tl_calloc(size_t count, size_t size, const char *what)
{
    if (size && count > SIZE_MAX / size) {
        tl_fail(TL_ERR_NOMEM, "allocation size overflow for %s (%zu x %zu)",
                what ? what : "?", count, size);
        return NULL;
    }
    void *p = should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        tl_fail(TL_ERR_NOMEM, "out of memory allocating %zu x %zu bytes for %s",
                count, size, what ? what : "?");
        return NULL;
    }
    count_alloc();
    return p;
}

void *tl_realloc(void *old, size_t bytes, const char *what)
{
    void *p = should_fail() ? NULL : realloc(old, bytes ? bytes : 1);
    if (!p) {
        tl_fail(TL_ERR_NOMEM, "out of memory growing %s to %zu bytes",
                what ? what : "?", bytes);
        return NULL;
    }
    count_alloc();
    return p;
}

void tl_free(void *p) { free(p); }

void *tl_malloc_aligned(size_t bytes, const char *what)
{
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (should_fail() || posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        tl_fail(TL_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes,
                what ? what : "?");
        return NULL;
    }
    count_alloc();
    return p;
}

void tl_free_aligned(void *p) { free(p); }

char *tl_strdup(const char *s, const char *what)
{
    size_t n = strlen(s) + 1;
    char *d = tl_malloc(n, what);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- RNG: xoshiro256** seeded through splitmix64 ------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void tl_rng_seed(tl_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tl_rng_next(tl_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float tl_rng_uniform(tl_rng *r) { return (float)(tl_rng_next(r) >> 40) * 0x1.0p-24f; }

double tl_rng_uniform_double(tl_rng *r) { return (double)(tl_rng_next(r) >> 11) * 0x1.0p-53; }

float tl_rng_normal(tl_rng *r)
{
    double u1 = tl_rng_uniform_double(r), u2 = tl_rng_uniform_double(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t tl_rng_below(tl_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = tl_rng_next(r); while (x >= limit);
    return x % n;
}

void tl_rng_shuffle_u32(tl_rng *r, uint32_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)tl_rng_below(r, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

/* ---- cancellation -------------------------------------------------------- */

static volatile sig_atomic_t cancel_flag;

void tl_cancel_request(void) { cancel_flag = 1; }
int tl_cancelled(void) { return cancel_flag != 0; }
void tl_cancel_clear(void) { cancel_flag = 0; }

/* ---- memory budget ----------------------------------------------------------- */

static uint64_t memory_available; /* set by the program; 0 = unknown */

void tl_memory_set_available(uint64_t bytes) { memory_available = bytes; }
uint64_t tl_memory_available(void) { return memory_available; }

char *tl_memory_str(uint64_t bytes, char *buf, size_t n)
{
    double b = (double)bytes;
    if (b >= 1e12) snprintf(buf, n, "%.1f TB", b / 1e12);
    else if (b >= 1e9) snprintf(buf, n, "%.1f GB", b / 1e9);
    else if (b >= 1e6) snprintf(buf, n, "%.1f MB", b / 1e6);
    else if (b >= 1e3) snprintf(buf, n, "%.1f kB", b / 1e3);
    else snprintf(buf, n, "%llu bytes", (unsigned long long)bytes);
    return buf;
}

tl_status tl_memory_check(uint64_t bytes, uint64_t limit, const char *what)
{
    uint64_t cap = limit ? limit : memory_available;
    if (cap == 0 || bytes <= cap) return TL_OK;
    char need[32], have[32];
    tl_memory_str(bytes, need, sizeof need);
    tl_memory_str(cap, have, sizeof have);
    if (limit)
        return tl_fail(TL_ERR_NOMEM, "%s needs %s; the limit is %s (max_memory)", what, need, have);
    return tl_fail(TL_ERR_NOMEM, "%s needs %s; %s available (MemAvailable)", what, need, have);
}
