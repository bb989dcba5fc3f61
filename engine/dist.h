/* dist.h — a group of processes that train one model together (data
 * parallelism: models/model_fit.c, distributed prediction: models/model_eval.c).
 *
 * The engine has no MPI. The program fills this table with its collectives
 * (repl/l_mpi.c: MPI_Allgather, MPI_Allgatherv, MPI_Bcast on MPI_BYTE) and
 * gives it to the model. Every rank calls the same collectives in the same
 * order; a collective that fails returns an error status with a message
 * (tl_fail) and the caller gives up the step on every rank.
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
} tl_dist;

/* A group of one (this process): grains without MPI (a fit{grains=G} in one
 * process gives the bits of G grains over any number of ranks). */
tl_dist *tl_dist_local(void);

/* Every rank's n bytes into *out (size * n bytes, malloc'd here, the caller
 * frees it with tl_free). */
tl_status tl_dist_allgather(tl_dist *d, const void *send, size_t n, void **out);
/* Every rank's variable-length send (n bytes): *out (malloc'd) holds them
 * concatenated in rank order, counts[size] (malloc'd, caller frees both)
 * their lengths. */
tl_status tl_dist_allgatherv(tl_dist *d, const void *send, size_t n, void **out, size_t **counts);
tl_status tl_dist_broadcast(tl_dist *d, void *buf, size_t n, int root);
/* The table's allgatherv and alltoallv with counts every rank knows already
 * (no exchange of sizes); recv is the caller's. */
tl_status tl_dist_allgatherv_known(tl_dist *d, const void *send, void *recv, const size_t *counts);
tl_status tl_dist_alltoallv(tl_dist *d, const void *send, const size_t *send_counts, void *recv,
                            const size_t *recv_counts);

/* The grains [*first, *end) of `grains` that `rank` of `size` computes:
 * contiguous blocks in rank order (tl_parallel_chunk's split), so that the
 * concatenation of the ranks' grains is grain order. */
void tl_dist_grains(int grains, int size, int rank, int *first, int *end);

/* A 64-bit FNV-1a hash of n bytes (the parameter checksum). */
uint64_t tl_dist_hash(const void *p, size_t n, uint64_t h);

/* TL_OK when every rank's `value` equals rank 0's; else TL_ERR_NUMERIC with
 * "<what> differ between ranks at step S: rank 0 <hash>, rank r <hash>, ..."
 * naming every rank that differs (the same message on every rank). */
tl_status tl_dist_check_equal(tl_dist *d, uint64_t value, const char *what, int64_t step);

#endif
