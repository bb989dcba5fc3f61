/* core.h — status codes, error messages, allocation, RNG and cancellation.
 *
 * Every engine function that can fail returns a tl_status. On failure it has
 * stored a human-readable message (naming file/line/column, shape or task)
 * retrievable with tl_errmsg() until the next failing call in the same thread.
 * Nothing in the engine ends the process: bad input always comes back as a status.
 */
#ifndef TL_CORE_H
#define TL_CORE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    TL_OK = 0,
    TL_ERR_ARG,       /* bad argument (wrong value, unknown name) */
    TL_ERR_SHAPE,     /* incompatible tensor shapes */
    TL_ERR_NOMEM,     /* allocation failed */
    TL_ERR_IO,        /* file missing, unreadable, write failed */
    TL_ERR_PARSE,     /* malformed input data */
    TL_ERR_NUMERIC,   /* NaN or Inf where a finite number is required */
    TL_ERR_CANCELLED, /* the cancellation flag was raised */
    TL_ERR_STATE,     /* call not valid in the object's current state */
    TL_ERR_FORMAT     /* file format: wrong magic, version, checksum */
} tl_status;

/* Record a formatted message for `code` and return `code`, so callers can
 * write `return tl_fail(TL_ERR_ARG, "...", ...)`. */
tl_status tl_fail(tl_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepend context to the current message ("while loading x.csv: ...").
 * Returns `code` unchanged. */
tl_status tl_fail_context(tl_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The message of the last failure in this thread ("" when none). */
const char *tl_errmsg(void);
/* A short name for a status code ("argument error", ...). */
const char *tl_status_name(tl_status s);
void tl_clear_error(void);

/* Allocation. All engine memory goes through these so that tests can count
 * allocations (no allocation inside a training step) and inject failures.
 * tl_malloc/tl_calloc record TL_ERR_NOMEM with `what` in the message and
 * return NULL on failure. tl_free(NULL) is a no-op. */
void *tl_malloc(size_t bytes, const char *what);
void *tl_calloc(size_t count, size_t size, const char *what);
void *tl_realloc(void *p, size_t bytes, const char *what);
void tl_free(void *p);
/* 64-byte aligned allocation for tensors and arenas; free with tl_free_aligned. */
void *tl_malloc_aligned(size_t bytes, const char *what);
void tl_free_aligned(void *p);
char *tl_strdup(const char *s, const char *what);

/* Number of successful allocations since start (monotonic). */
uint64_t tl_alloc_count(void);
/* Fault injection: make the k-th allocation from now fail (k >= 1); 0 turns
 * injection off. Returns whether an injected failure has happened since. */
void tl_fault_inject_nth(uint64_t k);
int tl_fault_injected(void);

/* Memory budget. Shapes a user writes (a tensor, a model's layers and
 * vocabularies) can ask for more memory than the machine has; the engine
 * checks such requests before allocating instead of growing until the OOM
 * killer ends the session. The program tells the engine how much memory is
 * available (repl/ reads /proc/meminfo's MemAvailable; the engine reads no
 * environment). 0 = unknown: only an explicit limit applies. */
void tl_memory_set_available(uint64_t bytes);
uint64_t tl_memory_available(void);
/* TL_OK when `bytes` fit: under `limit` when limit > 0, else under the
 * available memory (when known). Otherwise TL_ERR_NOMEM with a message
 * "<what> needs 68.3 GB; 23.0 GB available (MemAvailable)" (or "...; the
 * limit is ..." for an explicit limit). */
tl_status tl_memory_check(uint64_t bytes, uint64_t limit, const char *what);
/* "1.5 GB" / "12.0 MB" / "512 bytes" (decimal units) into buf; returns buf. */
char *tl_memory_str(uint64_t bytes, char *buf, size_t n);

/* xoshiro256** — small, fast, and the same bits on every platform for a seed. */
typedef struct { uint64_t s[4]; } tl_rng;

void tl_rng_seed(tl_rng *r, uint64_t seed);
uint64_t tl_rng_next(tl_rng *r);
/* Uniform in [0, 1) with 24 random bits (exact in float). */
float tl_rng_uniform(tl_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double tl_rng_uniform_double(tl_rng *r);
/* Standard normal by Box–Muller (no cached second value, so state is simple). */
float tl_rng_normal(tl_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t tl_rng_below(tl_rng *r, uint64_t n);
/* Fisher–Yates shuffle of idx[0..n). */
void tl_rng_shuffle_u32(tl_rng *r, uint32_t *idx, size_t n);

/* Cancellation. Long-running loops call tl_cancelled() between units of work
 * (batches, rows) and return TL_ERR_CANCELLED leaving state consistent. The
 * REPL's SIGINT handler calls tl_cancel_request(), which is async-signal-safe. */
void tl_cancel_request(void);
int tl_cancelled(void);
void tl_cancel_clear(void);

#define TL_VERSION "0.1.0"

#endif
