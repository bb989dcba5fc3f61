/* data/hash.h — the hash behind string interning, hash buckets, vocabulary
 * fingerprints and the cache's key and checksum (xxhash64-style rounds: fast
 * on long buffers and short keys). Inline: it runs once per field read.
 * Changing a bit of it changes every cache key and hash-bucket id.
 */
#ifndef TL_DATA_HASH_H
#define TL_DATA_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define XXH_P1 0x9E3779B185EBCA87ULL
#define XXH_P2 0xC2B2AE3D27D4EB4FULL
#define XXH_P3 0x165667B19E3779F9ULL
#define XXH_P4 0x85EBCA77C2B2AE63ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint64_t xround(uint64_t acc, uint64_t in)
{
    acc += in * XXH_P2;
    return rotl64(acc, 31) * XXH_P1;
}
static inline uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= XXH_P2;
    h ^= h >> 29;
    h *= XXH_P3;
    h ^= h >> 32;
    return h;
}

static inline uint64_t hash_bytes(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h;
    size_t len = n;
    if (n >= 32) {
        uint64_t a = seed + XXH_P1 + XXH_P2, b = seed + XXH_P2, c = seed, d = seed - XXH_P1;
        do {
            a = xround(a, rd64(p));
            b = xround(b, rd64(p + 8));
            c = xround(c, rd64(p + 16));
            d = xround(d, rd64(p + 24));
            p += 32;
            n -= 32;
        } while (n >= 32);
        h = rotl64(a, 1) + rotl64(b, 7) + rotl64(c, 12) + rotl64(d, 18);
        h = (h ^ xround(0, a)) * XXH_P1 + XXH_P4;
        h = (h ^ xround(0, b)) * XXH_P1 + XXH_P4;
        h = (h ^ xround(0, c)) * XXH_P1 + XXH_P4;
        h = (h ^ xround(0, d)) * XXH_P1 + XXH_P4;
    } else {
        h = seed + XXH_P3;
    }
    h += (uint64_t)len;
    while (n >= 8) {
        h ^= xround(0, rd64(p));
        h = rotl64(h, 27) * XXH_P1 + XXH_P4;
        p += 8;
        n -= 8;
    }
    if (n) {
        /* a byte loop: memcpy of a variable length is a libc call here */
        uint64_t w = 0;
        for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
        h ^= xround(0, w);
        h = rotl64(h, 27) * XXH_P1 + XXH_P4;
    }
    return fmix64(h);
}

/* Equality of two short byte strings without a libc call. */
static inline int bytes_eq(const char *a, const char *b, size_t n)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    while (n >= 8) {
        if (rd64(x) != rd64(y)) return 0;
        x += 8;
        y += 8;
        n -= 8;
    }
    while (n--)
        if (*x++ != *y++) return 0;
    return 1;
}

#endif
