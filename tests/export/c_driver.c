/* c_driver.c — runs an exported C model (m:export("x.c")) on rows read from
 * stdin, for the parity test (tests/lua/test_export.lua). Built with
 *   cc -std=c99 -Wall -Werror -DPREDICT=<name>_predict c_driver.c x.c -lm
 * Input: "n F R K", then n rows of F ids and R raw numbers ("nan" = missing).
 * Output: n lines of K outputs (%.9g), or "status <s>" when predict fails. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int PREDICT(const int32_t *ids, const float *numeric, size_t n, float *out);

int main(void)
{
    size_t n, F, R, K;
    if (scanf("%zu %zu %zu %zu", &n, &F, &R, &K) != 4) return 2;
    int32_t *ids = malloc((n * F + 1) * sizeof *ids);
    float *num = malloc((n * R + 1) * sizeof *num), *out = malloc((n * K + 1) * sizeof *out);
    if (!ids || !num || !out) return 2;
    for (size_t r = 0; r < n; r++) {
        for (size_t f = 0; f < F; f++)
            if (scanf("%d", &ids[r * F + f]) != 1) return 2;
        for (size_t j = 0; j < R; j++) {
            char tok[64];
            if (scanf("%63s", tok) != 1) return 2;
            num[r * R + j] = strtof(tok, NULL);
        }
    }
    int s = PREDICT(ids, num, n, out);
    if (s != 0) {
        printf("status %d\n", s);
    } else {
        for (size_t r = 0; r < n; r++)
            for (size_t k = 0; k < K; k++) printf("%.9g%c", (double)out[r * K + k], k + 1 < K ? ' ' : '\n');
    }
    free(ids);
    free(num);
    free(out);
    return 0;
}
