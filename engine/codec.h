/* codec.h — the byte codec of checkpoint sections: a growing write buffer, a
 * bounds-checked read cursor, and field functions that do either.
 *
 * Integers and floats are little-endian, floats IEEE-754 bits, strings a u32
 * length then the bytes. A section's fields are listed once, in a function
 * that writes them when the codec has a write buffer and reads them otherwise
 * (tl_codec_*), so its byte layout is written down in one place; io.c's
 * section table pairs each tag with its write and read. Split from io.c so a
 * section's owner can describe its own fields.
 *
 * Failures are sticky: a write buffer that ran out of memory (nomem) ignores
 * further writes; a read cursor that hit a problem (bad, a phrase such as
 * "ends early" that completes "section XXXX ...") reads zeros from then on.
 */
#ifndef TL_CODEC_H
#define TL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int nomem; /* an allocation failed (message recorded) */
} tl_wbuf;

typedef struct {
    const uint8_t *p;
    size_t n, pos;
    const char *bad; /* first problem, or NULL */
    char msg[160];   /* a field's message, when bad points here */
} tl_rbuf;

/* A section tag: four ASCII characters, the first in the lowest byte. */
#define TL_CODEC_TAG(a, b, c, d) \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

/* Counters a later fit adds to: bounded so that they cannot overflow. */
#define TL_CODEC_MAX_STEPS ((int64_t)1 << 62)
#define TL_CODEC_MAX_EPOCH (1 << 30)

/* Writing when w is non-NULL, reading from r otherwise. */
typedef struct {
    tl_wbuf *w;
    tl_rbuf *r;
} tl_codec;

/* ---- writing ---------------------------------------------------------------- */

/* k more bytes at the end of b (NULL once b->nomem). */
uint8_t *tl_wbuf_take(tl_wbuf *b, size_t k);
void tl_enc_u32(uint8_t *d, uint32_t v);
void tl_enc_u64(uint8_t *d, uint64_t v);
void tl_put_u32(tl_wbuf *b, uint32_t v);
void tl_put_u64(tl_wbuf *b, uint64_t v);
void tl_put_i32(tl_wbuf *b, int32_t v);
void tl_put_i64(tl_wbuf *b, int64_t v);
void tl_put_f32(tl_wbuf *b, float v);
void tl_put_f64(tl_wbuf *b, double v);
void tl_put_f32s(tl_wbuf *b, const float *v, size_t n);
void tl_put_str(tl_wbuf *b, const char *s);

/* ---- reading ---------------------------------------------------------------- */

uint32_t tl_dec_u32(const uint8_t *d);
uint64_t tl_dec_u64(const uint8_t *d);
uint32_t tl_get_u32(tl_rbuf *r);
uint64_t tl_get_u64(tl_rbuf *r);
int32_t tl_get_i32(tl_rbuf *r);
int64_t tl_get_i64(tl_rbuf *r);
float tl_get_f32(tl_rbuf *r);
double tl_get_f64(tl_rbuf *r);
void tl_get_f32s(tl_rbuf *r, float *dst, size_t n);
/* A string of at most cap-1 bytes into dst (NUL-terminated). */
void tl_get_str(tl_rbuf *r, char *dst, size_t cap);

/* ---- the field codec ---------------------------------------------------------- */

int tl_codec_reading(const tl_codec *c);
/* Writing, or reading with nothing wrong so far. */
int tl_codec_ok(const tl_codec *c);
/* Reading: mark the section bad with `why` when `refused`. 1 when the
 * section is bad (the caller stops), 0 otherwise and always when writing.
 * Counts that index arrays are checked with it before they are used. */
int tl_codec_refuse(tl_codec *c, int refused, const char *why);
void tl_codec_u32(tl_codec *c, uint32_t *v);
void tl_codec_u64(tl_codec *c, uint64_t *v);
void tl_codec_int(tl_codec *c, int *v); /* as i32 */
void tl_codec_i64(tl_codec *c, int64_t *v);
void tl_codec_f32(tl_codec *c, float *v);
void tl_codec_f64(tl_codec *c, double *v);
void tl_codec_f32s(tl_codec *c, float *v, size_t n);
/* Reading: at most cap-1 bytes. */
void tl_codec_str(tl_codec *c, char *s, size_t cap);
/* Fields added to a section later, at its end: an older file lacks them and
 * reads as `absent`. */
void tl_codec_int_tail(tl_codec *c, int *v, int absent);
void tl_codec_u32_tail(tl_codec *c, unsigned *v, unsigned absent);
void tl_codec_rng(tl_codec *c, tl_rng *g);

/* An enum field, stored as u32. */
#define TL_CODEC_ENUM(c, field)                 \
    do {                                        \
        uint32_t e_ = (uint32_t)(field);        \
        tl_codec_u32((c), &e_);                 \
        if (tl_codec_reading(c)) (field) = e_;  \
    } while (0)

/* ---- field ranges --------------------------------------------------------------
 * A checkpoint's CRC says the bytes are the ones written, not that a writer
 * (or a hand) put sane values in them: every field is range-checked before a
 * model is built from it, and the first one out of range is named in r->bad
 * ("has field lr = -1 outside [1e-30, 1e+30]"). No-ops once r is bad. */

void tl_codec_want_int(tl_rbuf *r, const char *field, long long v, long long lo, long long hi);
/* lo <= v <= hi (hi_open: v < hi), finite. */
void tl_codec_want_real(tl_rbuf *r, const char *field, double v, double lo, double hi, int hi_open);

#endif
