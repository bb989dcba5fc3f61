/* calibrate.h — calibrators: Platt, isotonic and temperature maps fitted
 * on (prediction, label) rows, applied to new predictions, and serialised
 * for checkpoints. They are fitted objects, not metrics; metrics.h includes
 * this header, and its common rules (weight, mask, label ranges, messages)
 * hold here too. The logistic fit behind Platt and temperature also gives
 * the calibration slope of metrics.h.
 */
#ifndef TL_CALIBRATE_H
#define TL_CALIBRATE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* Where a probability enters a log or a logit it is clipped to
 * [TL_METRIC_EPS, 1 - TL_METRIC_EPS] (metrics and calibrators alike). */
#define TL_METRIC_EPS 1e-7

/* ---- calibrators -------------------------------------------------------- */

typedef enum {
    TL_CALIB_PLATT,       /* σ(a · logit(p) + b); a, b by Newton on weighted BCE */
    TL_CALIB_ISOTONIC,    /* weighted pool-adjacent-violators, see below */
    TL_CALIB_TEMPERATURE  /* σ(logit(p) / T), T > 0 by 1-D Newton on weighted BCE */
} tl_calib_kind;

/* Isotonic: rows of weight 0 are dropped, predictions sorted, tied
 * predictions pooled (weighted mean label), then PAV gives non-decreasing
 * blocks. The fitted function is
 * constant over each block's prediction range [x_first, x_last], linear
 * between the last point of one block and the first of the next, and
 * constant beyond the ends — the same function as sklearn's
 * IsotonicRegression(out_of_bounds="clip"). It is stored as the knots
 * (x_first, y), (x_last, y) of every block. */
typedef struct tl_calibrator tl_calibrator;

/* Name ("platt", "isotonic", "temperature") and parse (TL_ERR_ARG on an
 * unknown name, listing the choices). */
const char *tl_calib_kind_name(tl_calib_kind k);
tl_status tl_calib_kind_parse(const char *name, tl_calib_kind *out);

/* Fit a calibrator of `kind` on (pred, label) rows (labels in [0, 1];
 * weight/mask as everywhere). On success *out is a new calibrator owned by
 * the caller (free with tl_calibrator_free). On failure *out = NULL and the
 * message says why: no rows, one class (Platt/temperature), a fit that
 * diverged (separable data), or T not positive (predictions anti-correlated
 * with labels). Parameters are stored as float so a serialise/deserialise
 * round trip is exact. */
tl_status tl_calibrator_fit(tl_calib_kind kind, const float *pred, const float *label,
                            const float *weight, const uint8_t *mask, size_t n,
                            tl_calibrator **out);

/* tl_calibrator_fit on raw scores (logits) r instead of probabilities, for
 * scores whose sigmoid saturates in float (r beyond ±16 would tie): Platt
 * σ(a·r + b), temperature σ(r / T), isotonic on r itself. Apply it with
 * tl_calibrator_apply_score. The Platt slope is kept monotone: when the
 * unconstrained fit has a <= 0 (the scores rank the labels backwards) the
 * result is the best fit with a >= 0, a = 0 and b = logit(weighted mean
 * label), a calibrator that maps every score to the base rate, and
 * *clamped = 1 (clamped may be NULL; 0 otherwise). Scores must be finite. */
tl_status tl_calibrator_fit_scores(tl_calib_kind kind, const float *score, const float *label,
                                   const float *weight, const uint8_t *mask, size_t n,
                                   tl_calibrator **out, int *clamped);
/* A calibrator fitted by tl_calibrator_fit_scores at score r (NaN in, NaN out). */
double tl_calibrator_apply_score(const tl_calibrator *c, double r);

/* Map n probabilities: out[i] = f(in[i]); in == out is allowed. Inputs are
 * clipped to [TL_METRIC_EPS, 1 - TL_METRIC_EPS] before a logit. A NaN input
 * is TL_ERR_NUMERIC naming the index (out is then partly written). */
tl_status tl_calibrator_apply(const tl_calibrator *c, const float *in, float *out, size_t n);
/* One value (NaN in, NaN out). */
double tl_calibrator_apply1(const tl_calibrator *c, double p);

tl_calib_kind tl_calibrator_kind(const tl_calibrator *c);
/* Parameters: Platt {a, b}; temperature {T}; isotonic: the knots
 * x[0..k), y[0..k) (returned pointers owned by the calibrator). */
void tl_calibrator_platt_params(const tl_calibrator *c, double *a, double *b);
double tl_calibrator_temperature(const tl_calibrator *c);
size_t tl_calibrator_knots(const tl_calibrator *c, const float **x, const float **y);
/* One-line description: "platt a=1.02 b=-0.31" into buf; returns buf. */
char *tl_calibrator_describe(const tl_calibrator *c, char *buf, size_t size);

void tl_calibrator_free(tl_calibrator *c);

/* Serialised form, a flat float array (for checkpoints):
 *   [0] TL_CALIB_SERIAL_VERSION, [1] kind, [2] m = number of values that follow,
 *   then Platt: a, b;  temperature: T;  isotonic: k, x[0..k), y[0..k).
 * tl_calibrator_serial_len gives the total length. serialize writes it into
 * buf (cap floats; TL_ERR_ARG if too small). deserialize reads buf[0..n)
 * and returns a new calibrator in *out (caller frees); a wrong version,
 * kind, length, non-finite or non-monotone content is TL_ERR_FORMAT. */
#define TL_CALIB_SERIAL_VERSION 1
size_t tl_calibrator_serial_len(const tl_calibrator *c);
tl_status tl_calibrator_serialize(const tl_calibrator *c, float *buf, size_t cap);
tl_status tl_calibrator_deserialize(const float *buf, size_t n, tl_calibrator **out);

#endif
