/* dist.c — the collectives of a tl_dist with their accounting, grain
 * ownership and the cross-rank checksum (dist.h). */
#include "dist.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "parallel.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void account(tl_dist *d, double t0, size_t bytes)
{
    d->comm_seconds += now_s() - t0;
    d->comm_bytes += bytes;
    d->comm_calls++;
}

tl_status tl_dist_allgather(tl_dist *d, const void *send, size_t n, void **out)
{
    size_t total = n * (size_t)d->size;
    unsigned char *recv = tl_malloc(total ? total : 1, "gathered bytes");
    if (!recv) return TL_ERR_NOMEM;
    double t0 = now_s();
    tl_status s = d->size == 1 ? (memcpy(recv, send, n), TL_OK) : d->allgather(d->ud, send, n, recv);
    account(d, t0, total);
    if (s != TL_OK) {
        tl_free(recv);
        return s;
    }
    *out = recv;
    return TL_OK;
}

tl_status tl_dist_allgatherv(tl_dist *d, const void *send, size_t n, void **out, size_t **counts)
{
    uint64_t mine = n;
    uint64_t *lens = NULL;
    tl_status s = tl_dist_allgather(d, &mine, sizeof mine, (void **)&lens);
    if (s != TL_OK) return s;
    size_t *c = tl_malloc((size_t)d->size * sizeof *c, "gathered counts");
    if (!c) {
        tl_free(lens);
        return TL_ERR_NOMEM;
    }
    size_t total = 0;
    for (int r = 0; r < d->size; r++) total += c[r] = (size_t)lens[r];
    tl_free(lens);
    unsigned char *recv = tl_malloc(total ? total : 1, "gathered bytes");
    if (!recv) {
        tl_free(c);
        return TL_ERR_NOMEM;
    }
    double t0 = now_s();
    s = d->size == 1 ? (memcpy(recv, send, n), TL_OK) : d->allgatherv(d->ud, send, recv, c);
    account(d, t0, total);
    if (s != TL_OK) {
        tl_free(recv);
        tl_free(c);
        return s;
    }
    *out = recv;
    *counts = c;
    return TL_OK;
}

tl_status tl_dist_broadcast(tl_dist *d, void *buf, size_t n, int root)
{
    if (d->size == 1) return TL_OK;
    double t0 = now_s();
    tl_status s = d->broadcast(d->ud, buf, n, root);
    account(d, t0, d->rank == root ? 0 : n);
    return s;
}

tl_dist *tl_dist_local(void)
{
    /* size 1: the tl_dist_* calls copy and never call the table */
    static _Thread_local tl_dist one = {0, 1, NULL, NULL, NULL, NULL, NULL, 0.0, 0, 0};
    return &one;
}

tl_status tl_dist_allgatherv_known(tl_dist *d, const void *send, void *recv, const size_t *counts)
{
    size_t total = 0, before = 0;
    for (int r = 0; r < d->size; r++) {
        if (r < d->rank) before += counts[r];
        total += counts[r];
    }
    double t0 = now_s();
    tl_status s = d->size == 1 ? (memcpy((unsigned char *)recv + before, send, counts[d->rank]), TL_OK)
                               : d->allgatherv(d->ud, send, recv, counts);
    account(d, t0, total);
    return s;
}

tl_status tl_dist_alltoallv(tl_dist *d, const void *send, const size_t *send_counts, void *recv,
                            const size_t *recv_counts)
{
    size_t total = 0;
    for (int r = 0; r < d->size; r++) total += recv_counts[r];
    double t0 = now_s();
    tl_status s = d->size == 1 ? (memcpy(recv, send, send_counts[0]), TL_OK)
                               : d->alltoallv(d->ud, send, send_counts, recv, recv_counts);
    account(d, t0, total);
    return s;
}

void tl_dist_grains(int grains, int size, int rank, int *first, int *end)
{
    if (grains < size) { /* fewer grains than ranks: one each, the rest idle */
        *first = rank < grains ? rank : grains;
        *end = rank < grains ? rank + 1 : grains;
        return;
    }
    size_t b, e;
    tl_parallel_chunk((size_t)grains, size, rank, &b, &e);
    *first = (int)b;
    *end = (int)e;
}

uint64_t tl_dist_hash(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    if (!h) h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

tl_status tl_dist_check_equal(tl_dist *d, uint64_t value, const char *what, int64_t step)
{
    uint64_t *all = NULL;
    tl_status s = tl_dist_allgather(d, &value, sizeof value, (void **)&all);
    if (s != TL_OK) return s;
    char msg[512];
    int len = 0, bad = 0;
    for (int r = 1; r < d->size; r++) {
        if (all[r] == all[0]) continue;
        if (!bad)
            len += snprintf(msg + len, sizeof msg - (size_t)len, "rank 0 %016llx", (unsigned long long)all[0]);
        bad++;
        if (len < (int)sizeof msg - 40)
            len += snprintf(msg + len, sizeof msg - (size_t)len, ", rank %d %016llx", r, (unsigned long long)all[r]);
    }
    tl_free(all);
    if (!bad) return TL_OK;
    return tl_fail(TL_ERR_NUMERIC, "%s differ between ranks at step %lld: %s (%d of %d ranks differ from rank 0)",
                   what, (long long)step, msg, bad, d->size);
}
