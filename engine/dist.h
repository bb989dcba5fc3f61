/* dist.h — a group of processes that train one model together (data
 * parallelism: models/model_fit.c, distributed prediction: models/model_eval.c).
 *
 * The engine has no MPI. The program fills this table with its collectives
 * (repl/l_mpi.c: MPI_Allgather, MPI_Allgatherv, MPI_Bcast on MPI_BYTE),
 * calls tl_dist_init once and gives it to the model. Every rank calls the
 * same collectives in the same order; a collective that fails returns an
 * error status with a message (tl_fail) and the caller gives up the step on
 * every rank.
 *
 * Failure without a hang. A rank that fails on its own (out of memory, a
 * file it cannot read) returns, and the others must not wait for it in a
 * collective it never joins. So every guarded collective (allgather,
 * allgatherv, allgatherv_known, check_equal, agree) begins with the same
 * exchange of one fixed-size record per rank: what the rank is doing (a
 * collective, or the end of its part: tl_dist_agree), its status and, on
 * failure, its message. A rank that failed goes to tl_dist_agree; the
 * others meet it there in the record exchange of whatever guarded
 * collective they entered next, see its failure, fail too naming it, and
 * come to tl_dist_agree in turn, which repeats its exchange until every
 * rank is there. The receive buffers belong to the group; when one rank's
 * is too small for a gather every rank takes part in its growth, which
 * fails on every rank if it fails on one, so that no rank fails inside a
 * collective on its own. The unguarded calls
 * (broadcast, alltoallv, allgatherv_unguarded) cost no record: a caller may
 * use them only where no rank can have failed since the last guarded one.
 *
 * Determinism: nothing here sums numbers. Callers gather every rank's
 * partial results and combine them in a fixed order (rank or grain order),
 * never with a reduction whose order MPI chooses, so the bits do not depend
 * on the rank count or on timing.
 */
#ifndef TL_DIST_H
#define TL_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

typedef struct tl_dist {
    int rank, size;
    void *ud;
    /* recv (size * n bytes) = every rank's n bytes of send, in rank order */
    tl_status (*allgather)(void *ud, const void *send, size_t n, void *recv);
    /* recv = every rank's counts[r] bytes, concatenated in rank order; send
     * holds counts[rank] bytes */
    tl_status (*allgatherv)(void *ud, const void *send, void *recv, const size_t *counts);
    /* root's n bytes of buf into every rank's buf */
    tl_status (*broadcast)(void *ud, void *buf, size_t n, int root);
    /* send holds send_counts[q] bytes for each rank q in rank order; recv
     * gets recv_counts[q] bytes from each rank q, in rank order */
    tl_status (*alltoallv)(void *ud, const void *send, const size_t *send_counts, void *recv,
                           const size_t *recv_counts);
    /* accounting, kept by the tl_dist_* calls below */
    double comm_seconds;  /* wall time inside the collectives */
    uint64_t comm_bytes;  /* bytes received by this rank */
    uint64_t comm_calls;
    /* kept by the tl_dist_* calls (tl_dist_init): every rank's record of
     * the last guarded exchange, the gathered bytes (cap bytes) and their
     * counts; the rank where the failure this rank returns began (-1: none) */
    unsigned char *recs, *buf;
    size_t cap;
    size_t *counts;
    int origin;
} tl_dist;

/* The record every rank sends at the start of a guarded collective. */
#define TL_DIST_BODY 224
typedef struct {
    int32_t kind;            /* TL_DIST_GATHER, TL_DIST_GROW, TL_DIST_FINAL */
    int32_t status;          /* TL_OK, or this rank's failure */
    int32_t origin;          /* the rank where the failure began (-1 with TL_OK) */
    int32_t pad;
    uint64_t len;            /* the bytes this rank sends next */
    uint64_t cap;            /* its receive buffer's size: every rank grows when one must */
    char body[TL_DIST_BODY]; /* the failure's message; or, when they fit, the bytes */
} tl_dist_record;
enum { TL_DIST_GATHER = 1, TL_DIST_GROW, TL_DIST_FINAL };

/* The group's receive buffers for `size` ranks (the record exchange);
 * TL_ERR_NOMEM when they cannot be had. The program calls it once, when
 * the group starts; tl_dist_release frees them. */
tl_status tl_dist_init(tl_dist *d);
void tl_dist_release(tl_dist *d);

/* A group of one (this process): grains without MPI (a fit{grains=G} in one
 * process gives the bits of G grains over any number of ranks). */
tl_dist *tl_dist_local(void);

/* Guarded. Every rank's n bytes (the same n on every rank) into *out:
 * size * n bytes in rank order, the group's buffer, valid until the next
 * guarded call on d (the caller does not free it). In a group of one *out
 * is send. */
tl_status tl_dist_allgather(tl_dist *d, const void *send, size_t n, const void **out);
/* Guarded. Every rank's variable-length send (n bytes): *out holds them
 * concatenated in rank order, (*counts)[q] rank q's length; both the
 * group's, valid until the next guarded call on d. */
tl_status tl_dist_allgatherv(tl_dist *d, const void *send, size_t n, const void **out, const size_t **counts);
/* Guarded. The table's allgatherv with counts every rank knows already
 * (counts[rank] bytes of send); recv is the caller's. */
tl_status tl_dist_allgatherv_known(tl_dist *d, const void *send, void *recv, const size_t *counts);
/* The end of this rank's part in a run of collectives (a fit): every rank
 * gives its status. TL_OK when every rank is OK. When every rank failed
 * the same way (the same status and message: bad arguments, a refusal, a
 * failure every rank learned in the same exchange) that failure, its
 * message untouched; else the failure of the rank where it began, the
 * same on every rank: "<what>: rank 2 failed: <its message>". */
tl_status tl_dist_agree(tl_dist *d, tl_status st, const char *what);

/* Unguarded: only where no rank can have failed since the last guarded
 * collective (the group's record exchange would not have seen it). */
tl_status tl_dist_broadcast(tl_dist *d, void *buf, size_t n, int root);
tl_status tl_dist_allgatherv_unguarded(tl_dist *d, const void *send, void *recv, const size_t *counts);
tl_status tl_dist_alltoallv(tl_dist *d, const void *send, const size_t *send_counts, void *recv,
                            const size_t *recv_counts);

/* The grains [*first, *end) of `grains` that `rank` of `size` computes:
 * contiguous blocks in rank order (tl_parallel_chunk's split), so that the
 * concatenation of the ranks' grains is grain order. */
void tl_dist_grains(int grains, int size, int rank, int *first, int *end);

/* A 64-bit FNV-1a hash of n bytes (the parameter checksum). */
uint64_t tl_dist_hash(const void *p, size_t n, uint64_t h);

/* Guarded. TL_OK when every rank's `value` equals rank 0's; else TL_ERR_NUMERIC with
 * "<what> differ between ranks at step S: rank 0 <hash>, rank r <hash>, ..."
 * naming every rank that differs (the same message on every rank). */
tl_status tl_dist_check_equal(tl_dist *d, uint64_t value, const char *what, int64_t step);

#endif
