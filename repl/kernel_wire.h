/* kernel_wire.h — the Jupyter messaging wire protocol 5.3 (repl/kernel_wire.c)
 * for the kernel (kernel.c): a received message is its ZeroMQ frames, the
 * identities before "<IDS|MSG>", an HMAC-SHA256 signature and four JSON
 * frames (header, parent header, metadata, content); a sent one is built,
 * signed and sent the same way. Signing needs the connection's key, set with
 * tl_kernel_wire_set. */
#ifndef TL_KERNEL_WIRE_H
#define TL_KERNEL_WIRE_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <zmq.h>

#define TL_KERNEL_PROTOCOL "5.3"
#define TL_KERNEL_MAX_FRAMES 64

/* Sign and check with `key` (NULL or "": messages are neither signed nor
 * checked) through `mac` (an HMAC EVP_MAC), and name sent messages after
 * `session`. The strings stay owned by the caller and must outlive their
 * use; NULLs unset them. Resets the message counter. */
void tl_kernel_wire_set(const char *key, EVP_MAC *mac, const char *session);

/* A line "towerlab kernel: ..." on the log (the Jupyter server's stderr). */
void tl_kernel_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The log's file descriptor (-1: stderr). */
void tl_kernel_log_set_fd(int fd);
int tl_kernel_log_fd(void);

/* A JSON string of s[0..n) with invalid UTF-8 replaced by U+FFFD (jansson
 * and Jupyter want valid UTF-8). When `keep` is not NULL, a sequence cut off
 * at the end is left out and its length stored in *keep. Returns NULL when
 * out of memory. tl_kernel_jstr: of a NUL-terminated string. */
json_t *tl_kernel_jstr_n(const char *s, size_t n, size_t *keep);
json_t *tl_kernel_jstr(const char *s);
/* Byte offset of code point `cp` in s (clamped to the end), and back: the
 * protocol counts cursor positions in code points. */
size_t tl_kernel_cp_to_byte(const char *s, long long cp);
long long tl_kernel_byte_to_cp(const char *s, size_t b);

/* A received message. Frames stay owned here until tl_kmsg_free. */
typedef struct {
    zmq_msg_t frames[TL_KERNEL_MAX_FRAMES];
    int n, delim;
    json_t *header, *parent, *metadata, *content;
    const char *type;
} tl_kmsg;

void tl_kmsg_free(tl_kmsg *m);
/* Check the m->n frames of a received message (overflow: it had more than
 * TL_KERNEL_MAX_FRAMES): find the delimiter, verify the signature and decode
 * the four JSON frames. Returns 1 with *m complete (free with tl_kmsg_free),
 * 0 when the message was dropped (logged, *m freed). */
int tl_kmsg_check(tl_kmsg *m, int overflow, const char *where);
/* Receive one message from `sock` (ready to read). Returns 1 with *m filled
 * (free with tl_kmsg_free), 0 when nothing was there or the message was
 * dropped: malformed, or its signature does not verify (logged). */
int tl_kmsg_recv(void *sock, tl_kmsg *m, const char *where);

/* An outgoing message, serialized and signed. */
typedef struct {
    char *part[4];
    size_t len[4];
    char sig[65];
} tl_kout;

void tl_kout_free(tl_kout *o);
/* Build a message of `type` answering `parent` (a header; NULL: none).
 * Takes ownership of content. Returns 0, or -1 (logged) on failure. */
int tl_kout_build(tl_kout *o, const char *type, const json_t *parent, json_t *content);
/* Send o after the request's identities (req), or a single frame (topic);
 * `cmd` (may be NULL) goes first (the PAIR command). Returns 0 or -1. */
int tl_kout_send(void *sock, const char *cmd, const tl_kmsg *req, const char *topic,
                 const tl_kout *o);
/* Send one frame (more: others follow), retrying on EINTR. Returns 0 or -1. */
int tl_kernel_send_part(void *sock, const void *data, size_t n, int more);
/* Reply on `sock` to the request `req`. Takes content. */
void tl_kmsg_reply(void *sock, const tl_kmsg *req, const char *type, json_t *content);

#endif
