/* kernel_wire.c — the Jupyter wire protocol (see kernel_wire.h): messages
 * received as ZeroMQ frames, checked and decoded; messages built, signed
 * with HMAC-SHA256 and sent; the kernel's log line. Split from kernel.c,
 * which keeps the sockets, the threads and the request handlers. Like
 * kernel.c, only the program links it (libzmq, jansson, libcrypto):
 * towerlab.so is built with -DTL_LUA_MODULE and leaves it empty. */
#ifndef TL_LUA_MODULE

#include "kernel_wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#define DELIM "<IDS|MSG>"

/* What signs and names the messages (set by tl_kernel_wire_set) and where the
 * log goes. */
static struct {
    const char *key;
    size_t keylen;
    EVP_MAC *mac;
    const char *session;
    atomic_ulong counter;
    int log_fd;
} W;

void tl_kernel_wire_set(const char *key, EVP_MAC *mac, const char *session)
{
    W.key = key;
    W.keylen = key ? strlen(key) : 0;
    W.mac = mac;
    W.session = session;
    atomic_store(&W.counter, 0);
}

/* ---- JSON strings ---------------------------------------------------------- */

/* Length of the UTF-8 sequence at s (n bytes available): 1..4 when valid,
 * 0 when a valid start is cut off by n, -1 when invalid. */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    int len;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        unsigned d = s[i];
        if (d < (i == 1 ? lo : 0x80) || d > (i == 1 ? hi : 0xBF)) return -1;
    }
    return len;
}

/* A JSON string of s[0..n) with invalid UTF-8 replaced by U+FFFD. When
 * `keep` is not NULL, a sequence cut off at the end is left out and its
 * length stored in *keep. Returns NULL when out of memory. */
json_t *tl_kernel_jstr_n(const char *s, size_t n, size_t *keep)
{
    char *buf = malloc(n * 3 + 1);
    if (!buf) return NULL;
    size_t i = 0, o = 0;
    if (keep) *keep = 0;
    while (i < n) {
        int len = utf8_seq((const unsigned char *)s + i, n - i);
        if (len == 0 && keep) {
            *keep = n - i;
            break;
        }
        if (len <= 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(buf + o, s + i, (size_t)len);
        o += (size_t)len;
        i += (size_t)len;
    }
    json_t *j = json_stringn_nocheck(buf, o);
    free(buf);
    return j;
}

json_t *tl_kernel_jstr(const char *s) { return tl_kernel_jstr_n(s, strlen(s), NULL); }

/* Byte offset of code point `cp` in s (clamped to the end), and back. */
size_t tl_kernel_cp_to_byte(const char *s, long long cp)
{
    size_t i = 0;
    for (long long k = 0; k < cp && s[i]; k++) {
        i++;
        while (s[i] && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    }
    return i;
}

long long tl_kernel_byte_to_cp(const char *s, size_t b)
{
    long long cp = 0;
    for (size_t i = 0; i < b && s[i]; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) cp++;
    return cp;
}

/* ---- messages ------------------------------------------------------------- */

void tl_kernel_log_set_fd(int fd) { W.log_fd = fd; }

int tl_kernel_log_fd(void) { return W.log_fd; }

/* A line on the kernel's real stderr (the Jupyter server's log). */
void tl_kernel_log(const char *fmt, ...)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "towerlab kernel: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = strlen(buf);
    buf[len++] = '\n';
    ssize_t w = write(W.log_fd >= 0 ? W.log_fd : STDERR_FILENO, buf, len);
    (void)w;
}

/* ISO 8601 UTC time with microseconds, as Jupyter writes it. */
static void iso_now(char out[64])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 64, "%s.%06ldZ", day, ts.tv_nsec / 1000);
}

/* Hex HMAC-SHA256 of the four parts into hex (65 bytes); "" without a key.
 * Returns 0, or -1 when OpenSSL fails. Thread-safe. */
static int sign(const char *const part[4], const size_t len[4], char hex[65])
{
    hex[0] = '\0';
    if (W.keylen == 0) return 0;
    EVP_MAC_CTX *c = EVP_MAC_CTX_new(W.mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    unsigned char md[32];
    size_t mdlen = 0;
    int ok = c && EVP_MAC_init(c, (const unsigned char *)W.key, W.keylen, params);
    for (int i = 0; i < 4 && ok; i++) ok = EVP_MAC_update(c, (const unsigned char *)part[i], len[i]);
    ok = ok && EVP_MAC_final(c, md, &mdlen, sizeof md);
    EVP_MAC_CTX_free(c);
    if (!ok || mdlen != sizeof md) return -1;
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    return 0;
}

void tl_kmsg_free(tl_kmsg *m)
{
    for (int i = 0; i < m->n; i++) zmq_msg_close(&m->frames[i]);
    json_decref(m->header);
    json_decref(m->parent);
    json_decref(m->metadata);
    json_decref(m->content);
    m->n = 0;
    m->header = m->parent = m->metadata = m->content = NULL;
}

static json_t *parse_frame(zmq_msg_t *f)
{
    json_error_t err;
    json_t *j = json_loadb(zmq_msg_data(f), zmq_msg_size(f), JSON_ALLOW_NUL, &err);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* Check the m->n frames of a received message (overflow: it had more than
 * TL_KERNEL_MAX_FRAMES): find the delimiter, verify the signature under W.key and
 * decode the four JSON frames. Returns 1 with *m complete (free with
 * kmsg_free), 0 when the message was dropped (logged, *m freed). */
int tl_kmsg_check(tl_kmsg *m, int overflow, const char *where)
{
    m->delim = -1;
    for (int i = 0; i < m->n && m->delim < 0; i++)
        if (zmq_msg_size(&m->frames[i]) == sizeof DELIM - 1 &&
            memcmp(zmq_msg_data(&m->frames[i]), DELIM, sizeof DELIM - 1) == 0)
            m->delim = i;
    if (overflow || m->delim < 0 || m->n < m->delim + 6) {
        tl_kernel_log("malformed message on %s (%d frames): dropped", where, m->n);
        tl_kmsg_free(m);
        return 0;
    }
    if (W.keylen) {
        const char *part[4];
        size_t len[4];
        for (int i = 0; i < 4; i++) {
            part[i] = zmq_msg_data(&m->frames[m->delim + 2 + i]);
            len[i] = zmq_msg_size(&m->frames[m->delim + 2 + i]);
        }
        char hex[65];
        zmq_msg_t *sig = &m->frames[m->delim + 1];
        if (sign(part, len, hex) != 0 || zmq_msg_size(sig) != 64 ||
            CRYPTO_memcmp(hex, zmq_msg_data(sig), 64) != 0) {
            tl_kernel_log("message with an invalid signature on %s: dropped", where);
            tl_kmsg_free(m);
            return 0;
        }
    }
    m->header = parse_frame(&m->frames[m->delim + 2]);
    m->parent = parse_frame(&m->frames[m->delim + 3]);
    m->metadata = parse_frame(&m->frames[m->delim + 4]);
    m->content = parse_frame(&m->frames[m->delim + 5]);
    m->type = m->header ? json_string_value(json_object_get(m->header, "msg_type")) : NULL;
    if (!m->header || !m->parent || !m->metadata || !m->content || !m->type) {
        tl_kernel_log("message with bad JSON on %s: dropped", where);
        tl_kmsg_free(m);
        return 0;
    }
    return 1;
}

/* Receive one message from `sock` (ready to read). Returns 1 with *m
 * filled (free with kmsg_free), 0 when nothing was there or the message was
 * dropped: malformed, or its signature does not verify (logged). */
int tl_kmsg_recv(void *sock, tl_kmsg *m, const char *where)
{
    memset(m, 0, sizeof *m);
    int more = 1, overflow = 0;
    while (more) {
        zmq_msg_t tmp, *f = m->n < TL_KERNEL_MAX_FRAMES ? &m->frames[m->n] : &tmp;
        zmq_msg_init(f);
        int r;
        while ((r = zmq_msg_recv(f, sock, m->n == 0 ? ZMQ_DONTWAIT : 0)) < 0 && errno == EINTR) {
        }
        if (r < 0) {
            zmq_msg_close(f);
            if (m->n == 0) return 0;
            break;
        }
        more = zmq_msg_more(f);
        if (f == &tmp) {
            zmq_msg_close(f);
            overflow = 1;
            continue;
        }
        m->n++;
    }
    return tl_kmsg_check(m, overflow, where);
}

void tl_kout_free(tl_kout *o)
{
    for (int i = 0; i < 4; i++) free(o->part[i]);
    memset(o, 0, sizeof *o);
}

/* Build a message of `type` answering `parent` (a header; NULL: none).
 * Takes ownership of content. Returns 0, or -1 (logged) on failure. */
int tl_kout_build(tl_kout *o, const char *type, const json_t *parent, json_t *content)
{
    memset(o, 0, sizeof *o);
    char id[96], date[64];
    snprintf(id, sizeof id, "%s-%lu", W.session, atomic_fetch_add(&W.counter, 1) + 1);
    iso_now(date);
    json_t *obj[4];
    obj[0] = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", id, "session", W.session,
                       "username", "towerlab", "date", date, "msg_type", type, "version", TL_KERNEL_PROTOCOL);
    obj[1] = parent ? json_incref((json_t *)parent) : json_object();
    obj[2] = json_object();
    obj[3] = content;
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        o->part[i] = obj[i] ? json_dumps(obj[i], JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (!o->part[i]) ok = 0;
        else o->len[i] = strlen(o->part[i]);
        json_decref(obj[i]);
    }
    if (ok && sign((const char *const *)o->part, o->len, o->sig) != 0) ok = 0;
    if (!ok) {
        tl_kernel_log("cannot build a %s message", type);
        tl_kout_free(o);
        return -1;
    }
    return 0;
}

int tl_kernel_send_part(void *sock, const void *data, size_t n, int more)
{
    int r;
    while ((r = zmq_send(sock, data, n, more ? ZMQ_SNDMORE : 0)) < 0 && errno == EINTR) {
    }
    return r < 0 ? -1 : 0;
}

/* Send o after `head` frames: the request's identities (req), or a single
 * frame (a topic); `cmd` (may be NULL) goes first (the PAIR command). */
int tl_kout_send(void *sock, const char *cmd, const tl_kmsg *req, const char *topic, const tl_kout *o)
{
    int rc = 0;
    if (cmd) rc |= tl_kernel_send_part(sock, cmd, strlen(cmd), 1);
    if (req)
        for (int i = 0; i < req->delim; i++)
            rc |= tl_kernel_send_part(sock, zmq_msg_data((zmq_msg_t *)&req->frames[i]),
                            zmq_msg_size((zmq_msg_t *)&req->frames[i]), 1);
    if (topic) rc |= tl_kernel_send_part(sock, topic, strlen(topic), 1);
    rc |= tl_kernel_send_part(sock, DELIM, sizeof DELIM - 1, 1);
    rc |= tl_kernel_send_part(sock, o->sig, strlen(o->sig), 1);
    for (int i = 0; i < 4; i++) rc |= tl_kernel_send_part(sock, o->part[i], o->len[i], i < 3);
    return rc;
}

/* Reply on `sock` to the request `req`. Takes content. */
void tl_kmsg_reply(void *sock, const tl_kmsg *req, const char *type, json_t *content)
{
    tl_kout o;
    if (tl_kout_build(&o, type, req->header, content) != 0) return;
    if (tl_kout_send(sock, NULL, req, NULL, &o) != 0) tl_kernel_log("cannot send %s: %s", type, zmq_strerror(errno));
    tl_kout_free(&o);
}

#endif /* TL_LUA_MODULE */
