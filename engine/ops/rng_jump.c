/* ops/rng_jump.c — skip ahead in tl_rng's stream (xoshiro256**, core.c), so
 * that a pass drawing one number per element (dropout) can start each chunk
 * at its own place in the stream and give every element the draw a serial
 * pass gives it.
 *
 * xoshiro256's state update is a linear map T on GF(2)^256. Its
 * characteristic polynomial P (degree 256, found once by Berlekamp-Massey on
 * 512 bits of the stream) satisfies P(T) = 0, so T^k = (x^k mod P)(T): the
 * state k steps ahead is the XOR of the states T^i s for the set bits i of
 * x^k mod P, which takes 256 steps of the generator. The polynomials
 * x^(2^j) mod P for j < 64 are kept (2 KB); a jump by k applies one per set
 * bit of k. This is the method of the generator's own jump() (Vigna), for
 * any k. */
#include <pthread.h>
#include <string.h>

#include "ops.h"

typedef struct {
    uint64_t w[4]; /* bit i of w[i / 64] is the coefficient of x^i, i < 256 */
} poly256;

static poly256 jump_poly[64]; /* x^(2^j) mod P */
static pthread_once_t jump_once = PTHREAD_ONCE_INIT;

/* P's coefficients of x^0 .. x^255 (x^256's is 1), from Berlekamp-Massey on
 * the lowest state bit of a stream from a fixed seed: a sequence of linear
 * complexity 256, whose minimal polynomial is then T's characteristic
 * polynomial. */
static poly256 char_poly(void)
{
    enum { N = 512 };
    uint8_t bit[N], c[N + 1] = {1}, b[N + 1] = {1}, t[N + 1];
    tl_rng g = {{0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL, 1}};
    for (int i = 0; i < N; i++) {
        bit[i] = (uint8_t)(g.s[0] & 1);
        tl_rng_next(&g); /* the state update; the output is not needed */
    }
    int L = 0, m = 1;
    for (int n = 0; n < N; n++) {
        uint8_t d = bit[n];
        for (int i = 1; i <= L; i++) d ^= (uint8_t)(c[i] & bit[n - i]);
        if (!d) {
            m++;
            continue;
        }
        memcpy(t, c, sizeof c);
        for (int i = 0; i + m <= N; i++) c[i + m] ^= b[i];
        if (2 * L <= n) {
            L = n + 1 - L;
            memcpy(b, t, sizeof b);
            m = 1;
        } else {
            m++;
        }
    }
    /* c(x) = 1 + c1 x + ... + cL x^L; P(x) = x^L c(1/x), L = 256 */
    poly256 p = {{0, 0, 0, 0}};
    for (int i = 0; i < 256; i++)
        if (c[256 - i]) p.w[i / 64] |= 1ULL << (i % 64);
    return p;
}

/* a^2 mod P over GF(2): spread the bits, then fold the high half down. */
static poly256 square_mod(const poly256 *a, const poly256 *p)
{
    uint64_t r[8] = {0};
    for (int i = 0; i < 256; i++)
        if (a->w[i / 64] >> (i % 64) & 1) r[(2 * i) / 64] |= 1ULL << ((2 * i) % 64);
    for (int i = 511; i >= 256; i--) {
        if (!(r[i / 64] >> (i % 64) & 1)) continue;
        r[i / 64] ^= 1ULL << (i % 64); /* x^i = x^(i-256) x^256 = x^(i-256) (P - x^256) */
        int sh = i - 256;
        for (int j = 0; j < 256; j++)
            if (p->w[j / 64] >> (j % 64) & 1) r[(j + sh) / 64] ^= 1ULL << ((j + sh) % 64);
    }
    poly256 out = {{r[0], r[1], r[2], r[3]}};
    return out;
}

static void jump_init(void)
{
    poly256 p = char_poly(), x = {{2, 0, 0, 0}};
    jump_poly[0] = x;
    for (int j = 1; j < 64; j++) jump_poly[j] = square_mod(&jump_poly[j - 1], &p);
}

/* s = q(T) s. */
static void apply(tl_rng *r, const poly256 *q)
{
    const uint64_t *s = r->s;
    uint64_t acc[4] = {0, 0, 0, 0};
    for (int i = 0; i < 256; i++) {
        if (q->w[i / 64] >> (i % 64) & 1) {
            acc[0] ^= s[0];
            acc[1] ^= s[1];
            acc[2] ^= s[2];
            acc[3] ^= s[3];
        }
        tl_rng_next(r);
    }
    memcpy(r->s, acc, sizeof acc);
}

void tl__rng_jump(tl_rng *r, uint64_t k)
{
    /* a few steps cost less than a polynomial's 256 */
    if (k < 256) {
        while (k--) tl_rng_next(r);
        return;
    }
    pthread_once(&jump_once, jump_init);
    for (int j = 0; k; j++, k >>= 1)
        if (k & 1) apply(r, &jump_poly[j]);
}
