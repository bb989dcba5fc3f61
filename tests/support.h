/* support.h — helpers shared by the C test programs (linked into each):
 * a central-difference gradient checker for planned graphs, a reader for the
 * reference fixtures in tests/fixtures/NAME.txt, a temporary directory, and
 * float array comparison reporting the worst element.
 *
 * Helpers print what went wrong to stdout (cmocka's message stream) and return
 * a result for the test to assert on; none of them asserts by itself.
 */
#ifndef TL_TEST_SUPPORT_H
#define TL_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"

/* ---- gradient checking ---------------------------------------------------- */

typedef struct {
    double eps;        /* finite-difference step */
    double atol, rtol; /* pass when |a - n| <= atol + rtol * max(|a|, |n|) */
    double kink;       /* a failing point is a kink (skipped) when the one-sided
                          differences l, r disagree by more than kink * |a - n|: a
                          slope jump inside the step gives |l - r| = 2 |a - n|, a
                          wrong gradient on a smooth function gives |l - r| ~ f'' eps */
    int max_per_param; /* > 0: check a random subset of at most this many elements */
    int training;      /* forward mode; the dropout RNG is rewound before every run */
    uint64_t seed;     /* for choosing the subset */
} tlt_gradcheck_opts;

typedef struct {
    int checked;  /* points compared */
    int skipped;  /* points at kinks */
    int failed;   /* points outside the tolerance */
    double worst; /* largest |a - n| / (atol + rtol * max(|a|, |n|)) seen */
} tlt_gradcheck_result;

/* eps 1e-2, atol 1e-3, rtol 1e-2, kink 1, all elements, evaluation mode. */
tlt_gradcheck_opts tlt_gradcheck_defaults(void);

/* Compare, for every element of every parameter of the planned graph g (which
 * must have had tl_graph_backward(g, loss) called), the analytical gradient of
 * the 1x1 node `loss` with the central difference (f(x+e) - f(x-e)) / 2e. The
 * caller has filled inputs and set the batch. Prints parameter name, index and
 * both values for each failure (first 10). Parameters are restored exactly;
 * gradients are left as one backward run made them. Returns r->failed, or -1
 * when a run fails (message printed). `o` may be NULL for the defaults. */
int tlt_gradcheck(tl_graph *g, tl_node loss, const tlt_gradcheck_opts *o,
                  tlt_gradcheck_result *r);

/* The data and gradient of parameter node p inside the parameter blocks. */
float *tlt_param(tl_graph *g, tl_node p);
float *tlt_param_grad(tl_graph *g, tl_node p);

/* Fill x[n] with U(lo, hi) from rng. */
void tlt_fill_uniform(float *x, size_t n, float lo, float hi, tl_rng *rng);

/* ---- comparison ------------------------------------------------------------ */

/* 1 when |got[i] - want[i]| <= atol + rtol * max(|got[i]|, |want[i]|) for all
 * i; otherwise prints `what`, the count of bad elements and the worst one
 * (index and both values) and returns 0. NaN never compares equal. */
int tlt_close(const char *what, const float *got, const double *want, size_t n, double rtol,
              double atol);
int tlt_close_f(const char *what, const float *got, const float *want, size_t n, double rtol,
                double atol);

/* ---- fixtures ---------------------------------------------------------------- */

/* Text format of tests/fixtures/NAME.txt: '#' starts a comment line; each array
 * is a header line "name rows cols" followed by rows*cols numbers (row-major,
 * whitespace-separated, any line breaks). Names are unique, at most 63 chars. */
typedef struct {
    char name[64];
    int rows, cols;
    double *v;
} tlt_array;

typedef struct {
    int n;
    tlt_array *a;
} tlt_fixture;

/* Load a fixture file; NULL (message printed) when missing or malformed. */
tlt_fixture *tlt_fixture_load(const char *path);
void tlt_fixture_free(tlt_fixture *f);
/* The array called `name`, or NULL (message printed). When rows/cols are
 * > 0 the shape must match too. */
const tlt_array *tlt_fixture_get(const tlt_fixture *f, const char *name, int rows, int cols);
/* Copy an array into floats. */
void tlt_array_to_float(const tlt_array *a, float *out);

/* ---- temporary directory ---------------------------------------------------- */

/* A new empty directory under $TMPDIR (or /tmp); malloc'd path, NULL on
 * failure. tlt_tempdir_free removes it with its contents and frees the path. */
char *tlt_tempdir_new(void);
void tlt_tempdir_free(char *dir);

#endif
