/* dist.c — the collectives of a tl_dist with their accounting and the
 * record exchange that keeps a rank that failed from leaving the others
 * waiting, grain ownership and the cross-rank checksum (dist.h). */
#include "dist.h"

#include <stdint.h>
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

tl_status tl_dist_init(tl_dist *d)
{
    d->origin = -1;
    if (d->recs) return TL_OK;
    /* the gathers that ride in the records never grow the buffer */
    size_t cap = (size_t)d->size * TL_DIST_BODY > 4096 ? (size_t)d->size * TL_DIST_BODY : 4096;
    d->recs = tl_malloc((size_t)d->size * sizeof(tl_dist_record), "the group's records");
    d->counts = tl_malloc((size_t)d->size * sizeof *d->counts, "the group's counts");
    d->buf = tl_malloc(cap, "the group's receive buffer");
    d->cap = cap;
    if (!d->recs || !d->counts || !d->buf) {
        tl_dist_release(d);
        return TL_ERR_NOMEM;
    }
    return TL_OK;
}

void tl_dist_release(tl_dist *d)
{
    tl_free(d->recs);
    tl_free(d->buf);
    tl_free(d->counts);
    d->recs = d->buf = NULL;
    d->counts = NULL;
    d->cap = 0;
}

static const tl_dist_record *rec(const tl_dist *d, int q) { return (const tl_dist_record *)d->recs + q; }

/* The record exchange that opens a guarded collective: this rank's record
 * (what it is doing, its status with tl_errmsg(), the length it sends next,
 * and n bytes of it when they fit) and every rank's into d->recs. */
static tl_status exchange(tl_dist *d, int kind, tl_status st, uint64_t len, const void *inl, size_t n)
{
    if (!d->recs) return tl_fail(TL_ERR_STATE, "rank %d: the group has no buffers (tl_dist_init)", d->rank);
    tl_dist_record me;
    memset(&me, 0, sizeof me);
    me.kind = kind;
    me.status = (int32_t)st;
    me.origin = st == TL_OK ? -1 : d->origin >= 0 ? d->origin : d->rank;
    me.len = len;
    me.cap = d->cap;
    if (st != TL_OK) snprintf(me.body, sizeof me.body, "%s", tl_errmsg());
    else if (n) memcpy(me.body, inl, n);
    double t0 = now_s();
    tl_status s = d->allgather(d->ud, &me, sizeof me, d->recs);
    account(d, t0, sizeof me * (size_t)d->size);
    return s;
}

/* The failed rank to name: the first whose failure began on it, else the
 * first that failed; -1 when none did. */
static int failed_rank(const tl_dist *d)
{
    int fail = -1;
    for (int q = 0; q < d->size; q++)
        if (rec(d, q)->status != TL_OK && (fail < 0 || (rec(d, q)->origin == q && rec(d, fail)->origin != fail)))
            fail = q;
    return fail;
}

/* After the exchange of a guarded collective of `kind`: TL_OK when every
 * rank is well and in the same kind of call; else the same failure on every
 * rank, naming the rank where it began (remembered in d->origin). */
static tl_status verdict(tl_dist *d, int kind)
{
    int fail = failed_rank(d), away = -1;
    for (int q = 0; q < d->size && away < 0; q++)
        if (rec(d, q)->kind != kind) away = q;
    if (fail >= 0) {
        const tl_dist_record *r = rec(d, fail);
        d->origin = r->origin >= 0 ? r->origin : fail;
        return tl_fail((tl_status)r->status, "rank %d %s: %.*s", d->origin,
                       r->status == TL_ERR_CANCELLED ? "stopped" : "failed", TL_DIST_BODY, r->body);
    }
    if (away >= 0) {
        d->origin = d->rank;
        return tl_fail(TL_ERR_STATE,
                       "rank %d ended its part while rank %d was in a collective (did the ranks run "
                       "different calls, such as fits of different epochs or max_steps?)",
                       away, d->rank);
    }
    d->origin = -1;
    return TL_OK;
}

/* Every rank's length as the callers expect it (counts; NULL: n on every
 * rank): a mismatch is a call that the ranks made differently. */
static tl_status same_lengths(const tl_dist *d, const size_t *counts, size_t n)
{
    for (int q = 0; q < d->size; q++) {
        uint64_t want = counts ? counts[q] : n;
        if (rec(d, q)->len != want)
            return tl_fail(TL_ERR_STATE, "rank %d sends %llu bytes where %llu were expected (a collective "
                           "the ranks called differently)", q, (unsigned long long)rec(d, q)->len,
                           (unsigned long long)want);
    }
    return TL_OK;
}

/* After a gather's exchange: when any rank's receive buffer is below
 * `total` bytes, every rank takes part in the growth (the records say who
 * must grow), and it fails on every rank when it fails on one. */
static tl_status grow(tl_dist *d, size_t total)
{
    int need = 0;
    for (int q = 0; q < d->size; q++) need |= rec(d, q)->cap < total;
    if (!need) return TL_OK;
    size_t cap = d->cap > 4096 ? d->cap : 4096;
    while (cap < total) cap = cap > SIZE_MAX / 2 ? total : 2 * cap;
    unsigned char *q = d->cap < total ? tl_malloc(cap, "the group's receive buffer") : NULL;
    tl_status st = d->cap >= total || q ? TL_OK : TL_ERR_NOMEM;
    if (q) {
        tl_free(d->buf);
        d->buf = q;
        d->cap = cap;
    }
    tl_status s = exchange(d, TL_DIST_GROW, st, 0, NULL, 0);
    return s == TL_OK ? verdict(d, TL_DIST_GROW) : s;
}

tl_status tl_dist_allgather(tl_dist *d, const void *send, size_t n, const void **out)
{
    double t0 = now_s();
    if (d->size == 1) {
        *out = send;
        account(d, t0, n);
        return TL_OK;
    }
    size_t total = n * (size_t)d->size;
    int inl = n <= TL_DIST_BODY; /* in the records: no second exchange, the buffer big enough (tl_dist_init) */
    tl_status s = exchange(d, TL_DIST_GATHER, TL_OK, n, send, inl ? n : 0);
    if (s == TL_OK) s = verdict(d, TL_DIST_GATHER);
    if (s == TL_OK) s = same_lengths(d, NULL, n);
    if (s == TL_OK && !inl) s = grow(d, total);
    if (s != TL_OK) return s;
    if (inl) {
        for (int q = 0; q < d->size; q++) memcpy(d->buf + (size_t)q * n, rec(d, q)->body, n);
    } else {
        t0 = now_s();
        s = d->allgather(d->ud, send, n, d->buf);
        account(d, t0, total);
        if (s != TL_OK) return s;
    }
    *out = d->buf;
    return TL_OK;
}

tl_status tl_dist_allgatherv(tl_dist *d, const void *send, size_t n, const void **out, const size_t **counts)
{
    double t0 = now_s();
    if (d->size == 1) {
        static _Thread_local size_t one;
        one = n;
        *out = send;
        *counts = &one;
        account(d, t0, n);
        return TL_OK;
    }
    tl_status s = exchange(d, TL_DIST_GATHER, TL_OK, n, NULL, 0);
    if (s == TL_OK) s = verdict(d, TL_DIST_GATHER);
    if (s != TL_OK) return s;
    size_t total = 0;
    for (int q = 0; q < d->size; q++) total += d->counts[q] = (size_t)rec(d, q)->len;
    if ((s = grow(d, total ? total : 1)) != TL_OK) return s;
    t0 = now_s();
    s = d->allgatherv(d->ud, send, d->buf, d->counts);
    account(d, t0, total);
    if (s != TL_OK) return s;
    *out = d->buf;
    *counts = d->counts;
    return TL_OK;
}

tl_status tl_dist_allgatherv_known(tl_dist *d, const void *send, void *recv, const size_t *counts)
{
    if (d->size > 1) {
        tl_status s = exchange(d, TL_DIST_GATHER, TL_OK, counts[d->rank], NULL, 0);
        if (s == TL_OK) s = verdict(d, TL_DIST_GATHER);
        if (s == TL_OK) s = same_lengths(d, counts, 0);
        if (s != TL_OK) return s;
    }
    return tl_dist_allgatherv_unguarded(d, send, recv, counts);
}

tl_status tl_dist_agree(tl_dist *d, tl_status st, const char *what)
{
    if (d->size == 1) return st;
    /* again until every rank is here: a rank that failed on its own meets
     * the others in the exchange of the collective they entered next, and
     * they come here after it */
    for (int here = 0; !here;) {
        tl_status s = exchange(d, TL_DIST_FINAL, st, 0, NULL, 0);
        if (s != TL_OK) {
            d->origin = -1;
            return s;
        }
        here = 1;
        for (int q = 0; q < d->size; q++) here &= rec(d, q)->kind == TL_DIST_FINAL;
    }
    d->origin = -1;
    int fail = failed_rank(d), same = fail >= 0, stopped = fail >= 0;
    for (int q = 0; q < d->size && fail >= 0; q++) {
        const tl_dist_record *r = rec(d, q);
        same &= r->status == rec(d, fail)->status && strncmp(r->body, rec(d, fail)->body, TL_DIST_BODY) == 0;
        stopped &= r->status == TL_ERR_CANCELLED;
    }
    if (fail < 0) return TL_OK;
    if (same || stopped) return st; /* every rank failed alike, or stopped: its own message */
    const tl_dist_record *r = rec(d, fail);
    return tl_fail((tl_status)r->status, "%s: rank %d %s: %.*s", what, r->origin >= 0 ? r->origin : fail,
                   r->status == TL_ERR_CANCELLED ? "stopped" : "failed", TL_DIST_BODY, r->body);
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
    static _Thread_local tl_dist one = {0, 1, NULL, NULL, NULL, NULL, NULL, 0.0, 0, 0, NULL, NULL, 0, NULL, -1};
    return &one;
}

tl_status tl_dist_allgatherv_unguarded(tl_dist *d, const void *send, void *recv, const size_t *counts)
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
    const void *got = NULL;
    tl_status s = tl_dist_allgather(d, &value, sizeof value, &got);
    if (s != TL_OK) return s;
    const unsigned char *all = got;
    uint64_t v0, v;
    memcpy(&v0, all, sizeof v0);
    char msg[512];
    int len = 0, bad = 0;
    for (int r = 1; r < d->size; r++) {
        memcpy(&v, all + (size_t)r * sizeof v, sizeof v);
        if (v == v0) continue;
        if (!bad) len += snprintf(msg + len, sizeof msg - (size_t)len, "rank 0 %016llx", (unsigned long long)v0);
        bad++;
        if (len < (int)sizeof msg - 40)
            len += snprintf(msg + len, sizeof msg - (size_t)len, ", rank %d %016llx", r, (unsigned long long)v);
    }
    if (!bad) return TL_OK;
    return tl_fail(TL_ERR_NUMERIC, "%s differ between ranks at step %lld: %s (%d of %d ranks differ from rank 0)",
                   what, (long long)step, msg, bad, d->size);
}
