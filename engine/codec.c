/* codec.c — the byte codec of checkpoint sections (codec.h). */
#include "codec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- writing -------------------------------------------------------------- */

uint8_t *tl_wbuf_take(tl_wbuf *b, size_t k)
{
    if (b->nomem) return NULL;
    if (k > SIZE_MAX / 2 - b->n) {
        tl_fail(TL_ERR_NOMEM, "checkpoint larger than memory allows");
        b->nomem = 1;
        return NULL;
    }
    if (b->n + k > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + k) cap *= 2;
        uint8_t *p = tl_realloc(b->p, cap, "checkpoint buffer");
        if (!p) {
            b->nomem = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    uint8_t *at = b->p + b->n;
    b->n += k;
    return at;
}

void tl_enc_u32(uint8_t *d, uint32_t v)
{
    for (int i = 0; i < 4; i++) d[i] = (uint8_t)(v >> (8 * i));
}

void tl_enc_u64(uint8_t *d, uint64_t v)
{
    for (int i = 0; i < 8; i++) d[i] = (uint8_t)(v >> (8 * i));
}

void tl_put_u32(tl_wbuf *b, uint32_t v)
{
    uint8_t *d = tl_wbuf_take(b, 4);
    if (d) tl_enc_u32(d, v);
}

void tl_put_u64(tl_wbuf *b, uint64_t v)
{
    uint8_t *d = tl_wbuf_take(b, 8);
    if (d) tl_enc_u64(d, v);
}

void tl_put_i32(tl_wbuf *b, int32_t v) { tl_put_u32(b, (uint32_t)v); }
void tl_put_i64(tl_wbuf *b, int64_t v) { tl_put_u64(b, (uint64_t)v); }

void tl_put_f32(tl_wbuf *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    tl_put_u32(b, u);
}

void tl_put_f64(tl_wbuf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    tl_put_u64(b, u);
}

void tl_put_f32s(tl_wbuf *b, const float *v, size_t n)
{
    if (n > SIZE_MAX / 4) {
        b->nomem = 1;
        tl_fail(TL_ERR_NOMEM, "checkpoint larger than memory allows");
        return;
    }
    uint8_t *d = tl_wbuf_take(b, n * 4);
    if (!d) return;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        tl_enc_u32(d + 4 * i, u);
    }
}

void tl_put_str(tl_wbuf *b, const char *s)
{
    size_t n = strlen(s);
    tl_put_u32(b, (uint32_t)n);
    uint8_t *d = tl_wbuf_take(b, n);
    if (d) memcpy(d, s, n);
}

/* ---- reading -------------------------------------------------------------- */

static const uint8_t *rbuf_take(tl_rbuf *r, size_t k)
{
    if (r->bad) return NULL;
    if (k > r->n - r->pos) {
        r->bad = "ends early";
        return NULL;
    }
    const uint8_t *at = r->p + r->pos;
    r->pos += k;
    return at;
}

uint32_t tl_dec_u32(const uint8_t *d)
{
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

uint64_t tl_dec_u64(const uint8_t *d)
{
    return (uint64_t)tl_dec_u32(d) | (uint64_t)tl_dec_u32(d + 4) << 32;
}

uint32_t tl_get_u32(tl_rbuf *r)
{
    const uint8_t *d = rbuf_take(r, 4);
    return d ? tl_dec_u32(d) : 0;
}

uint64_t tl_get_u64(tl_rbuf *r)
{
    const uint8_t *d = rbuf_take(r, 8);
    return d ? tl_dec_u64(d) : 0;
}

int32_t tl_get_i32(tl_rbuf *r) { return (int32_t)tl_get_u32(r); }
int64_t tl_get_i64(tl_rbuf *r) { return (int64_t)tl_get_u64(r); }

float tl_get_f32(tl_rbuf *r)
{
    uint32_t u = tl_get_u32(r);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

double tl_get_f64(tl_rbuf *r)
{
    uint64_t u = tl_get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

void tl_get_f32s(tl_rbuf *r, float *dst, size_t n)
{
    if (r->bad) return;
    if (n > (r->n - r->pos) / 4) {
        r->bad = "ends early";
        return;
    }
    const uint8_t *d = rbuf_take(r, n * 4);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = tl_dec_u32(d + 4 * i);
        memcpy(&dst[i], &u, 4);
    }
}

/* A string of at most cap-1 bytes into dst (NUL-terminated). */
void tl_get_str(tl_rbuf *r, char *dst, size_t cap)
{
    uint32_t n = tl_get_u32(r);
    dst[0] = '\0';
    if (r->bad) return;
    if (n >= cap) {
        r->bad = "has a name that is too long";
        return;
    }
    const uint8_t *d = rbuf_take(r, n);
    if (!d) return;
    memcpy(dst, d, n);
    dst[n] = '\0';
    if (strlen(dst) != n) r->bad = "has a name with a NUL byte";
}

/* ---- the field codec ------------------------------------------------------- */

int tl_codec_reading(const tl_codec *c) { return c->w == NULL; }
/* Writing, or reading with nothing wrong so far. */
int tl_codec_ok(const tl_codec *c) { return c->w || !c->r->bad; }

/* Reading: mark the section bad with `why` when `refused`. 1 when the
* section is bad (the caller stops), 0 otherwise and always when writing. */
int tl_codec_refuse(tl_codec *c, int refused, const char *why)
{
    if (c->w) return 0;
    if (!c->r->bad && refused) c->r->bad = why;
    return c->r->bad != NULL;
}

void tl_codec_u32(tl_codec *c, uint32_t *v)
{
    if (c->w) tl_put_u32(c->w, *v);
    else *v = tl_get_u32(c->r);
}

void tl_codec_u64(tl_codec *c, uint64_t *v)
{
    if (c->w) tl_put_u64(c->w, *v);
    else *v = tl_get_u64(c->r);
}

void tl_codec_int(tl_codec *c, int *v)
{
    if (c->w) tl_put_i32(c->w, *v);
    else *v = tl_get_i32(c->r);
}

void tl_codec_i64(tl_codec *c, int64_t *v)
{
    if (c->w) tl_put_i64(c->w, *v);
    else *v = tl_get_i64(c->r);
}

void tl_codec_f32(tl_codec *c, float *v)
{
    if (c->w) tl_put_f32(c->w, *v);
    else *v = tl_get_f32(c->r);
}

void tl_codec_f64(tl_codec *c, double *v)
{
    if (c->w) tl_put_f64(c->w, *v);
    else *v = tl_get_f64(c->r);
}

void tl_codec_f32s(tl_codec *c, float *v, size_t n)
{
    if (c->w) tl_put_f32s(c->w, v, n);
    else tl_get_f32s(c->r, v, n);
}

void tl_codec_str(tl_codec *c, char *s, size_t cap)
{
    if (c->w) tl_put_str(c->w, s);
    else tl_get_str(c->r, s, cap);
}

/* Fields added to a section later, at its end: an older file lacks them and
* reads as `absent`. */
void tl_codec_int_tail(tl_codec *c, int *v, int absent)
{
    if (c->w) tl_put_i32(c->w, *v);
    else *v = !c->r->bad && c->r->n - c->r->pos >= 4 ? tl_get_i32(c->r) : absent;
}

void tl_codec_u32_tail(tl_codec *c, unsigned *v, unsigned absent)
{
    if (c->w) tl_put_u32(c->w, *v);
    else *v = !c->r->bad && c->r->n - c->r->pos >= 4 ? tl_get_u32(c->r) : absent;
}

void tl_codec_rng(tl_codec *c, tl_rng *g)
{
    for (int i = 0; i < 4; i++) tl_codec_u64(c, &g->s[i]);
}

/* ---- field ranges ---------------------------------------------------------- */

void tl_codec_want_int(tl_rbuf *r, const char *field, long long v, long long lo, long long hi)
{
    if (r->bad || (v >= lo && v <= hi)) return;
    snprintf(r->msg, sizeof r->msg, "has field %s = %lld outside %lld..%lld", field, v, lo, hi);
    r->bad = r->msg;
}

/* lo <= v <= hi (hi_open: v < hi), finite. */
void tl_codec_want_real(tl_rbuf *r, const char *field, double v, double lo, double hi, int hi_open)
{
    if (r->bad) return;
    if (isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi)) return;
    snprintf(r->msg, sizeof r->msg, "has field %s = %g outside [%g, %g%s", field, v, lo, hi,
             hi_open ? ")" : "]");
    r->bad = r->msg;
}
