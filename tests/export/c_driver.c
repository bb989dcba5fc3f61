/* c_driver.c — runs an exported C model (m:export("x.c")) on rows read from
 * stdin, for the parity test (tests/lua/test_export.lua). Built with
 *   cc -std=c99 -Wall -Werror -DPREDICT=<name>_predict c_driver.c x.c -lm
 * Input: "n F R K", then n rows of F ids and R raw numbers ("nan" = missing).
 * With -DBAGS (a model with multi-valued fields): "n F S R K", then n rows of
 * F ids, S bag slots (-1 = empty) and R raw numbers.
 * Output: n lines of K outputs (%.9g), or "status <s>" when predict fails. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef BAGS
int PREDICT(const int32_t *ids, const int32_t *bags, const float *numeric, size_t n, float *out);
#else
int PREDICT(const int32_t *ids, const float *numeric, size_t n, float *out);
#endif

int main(void)
{
    size_t n, F, S = 0, R, K;
#ifdef BAGS
    if (scanf("%zu %zu %zu %zu %zu", &n, &F, &S, &R, &K) != 5) return 2;
#else
    if (scanf("%zu %zu %zu %zu", &n, &F, &R, &K) != 4) return 2;
#endif
    int32_t *ids = malloc((n * F + 1) * sizeof *ids), *bags = malloc((n * S + 1) * sizeof *bags);
    float *num = malloc((n * R + 1) * sizeof *num), *out = malloc((n * K + 1) * sizeof *out);
    if (!ids || !bags || !num || !out) return 2;
    for (size_t r = 0; r < n; r++) {
        for (size_t f = 0; f < F; f++)
            if (scanf("%d", &ids[r * F + f]) != 1) return 2;
        for (size_t s = 0; s < S; s++)
            if (scanf("%d", &bags[r * S + s]) != 1) return 2;
        for (size_t j = 0; j < R; j++) {
            char tok[64];
            if (scanf("%63s", tok) != 1) return 2;
            num[r * R + j] = strtof(tok, NULL);
        }
    }
#ifdef BAGS
    int s = PREDICT(ids, bags, num, n, out);
#else
    int s = PREDICT(ids, num, n, out);
#endif
    if (s != 0) {
        printf("status %d\n", s);
    } else {
        for (size_t r = 0; r < n; r++)
            for (size_t k = 0; k < K; k++) printf("%.9g%c", (double)out[r * K + k], k + 1 < K ? ' ' : '\n');
    }
    free(ids);
    free(bags);
    free(num);
    free(out);
    return 0;
}
