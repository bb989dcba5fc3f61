/* export/pb.c — protocol-buffers wire encoding (pb.h). */
#include "pb.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

void tl_pb_free(tl_pb *b)
{
    tl_free(b->p);
    memset(b, 0, sizeof *b);
}

/* Room for n more bytes; 0 once an allocation has failed. */
static int reserve(tl_pb *b, size_t n)
{
    if (b->oom) return 0;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = tl_realloc(b->p, cap, "ONNX buffer");
        if (!p) {
            b->oom = 1;
            return 0;
        }
        b->p = p;
        b->cap = cap;
    }
    return 1;
}

void tl_pb_bytes(tl_pb *b, const void *data, size_t n)
{
    if (n == 0 || !reserve(b, n)) return;
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

void tl_pb_printf(tl_pb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0 || !reserve(b, (size_t)n + 1)) return; /* + vsnprintf's NUL, not kept */
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void tl_pb_varint(tl_pb *b, uint64_t v)
{
    uint8_t buf[10];
    int n = 0;
    do {
        buf[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) buf[n] |= 0x80;
        n++;
    } while (v);
    tl_pb_bytes(b, buf, (size_t)n);
}

static void key(tl_pb *b, int field, int wire) { tl_pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }

void tl_pb_int(tl_pb *b, int field, int64_t v)
{
    key(b, field, 0);
    tl_pb_varint(b, (uint64_t)v); /* negative int64: ten bytes, two's complement */
}

void tl_pb_float(tl_pb *b, int field, float v)
{
    uint8_t le[4];
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int i = 0; i < 4; i++) le[i] = (uint8_t)(u >> (8 * i));
    key(b, field, 5);
    tl_pb_bytes(b, le, 4);
}

void tl_pb_lenbytes(tl_pb *b, int field, const void *data, size_t n)
{
    key(b, field, 2);
    tl_pb_varint(b, n);
    tl_pb_bytes(b, data, n);
}

void tl_pb_str(tl_pb *b, int field, const char *s) { tl_pb_lenbytes(b, field, s, strlen(s)); }

void tl_pb_msg(tl_pb *b, int field, const tl_pb *sub)
{
    if (sub->oom) b->oom = 1;
    tl_pb_lenbytes(b, field, sub->p, sub->n);
}
