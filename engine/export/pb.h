/* export/pb.h — the protocol-buffers wire format, written by hand for the
 * ONNX writer (export/onnx.c): varints, keys and length-delimited fields
 * into a growing buffer. A failed allocation is sticky (oom) and checked
 * once at the end. */
#ifndef TL_EXPORT_PB_H
#define TL_EXPORT_PB_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} tl_pb;

void tl_pb_free(tl_pb *b);
void tl_pb_bytes(tl_pb *b, const void *data, size_t n);
/* printf-formatted text appended (no terminating NUL), of any length: the
 * C and JSON writers build their files in the same buffer. */
void tl_pb_printf(tl_pb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tl_pb_varint(tl_pb *b, uint64_t v);
/* Field `field` as a varint (wire type 0). */
void tl_pb_int(tl_pb *b, int field, int64_t v);
/* Field `field` as a 32-bit float (wire type 5). */
void tl_pb_float(tl_pb *b, int field, float v);
/* Length-delimited fields (wire type 2): bytes, a string, an embedded message. */
void tl_pb_lenbytes(tl_pb *b, int field, const void *data, size_t n);
void tl_pb_str(tl_pb *b, int field, const char *s);
void tl_pb_msg(tl_pb *b, int field, const tl_pb *sub);

#endif
