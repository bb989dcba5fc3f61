/* data/reader.c — the line reader (zlib reads plain and gzip files alike),
 * field splitting (RFC 4180 quotes, an SSE2 path for lines without quotes)
 * and number parsing: the text layer under every loader.
 */
#include "data_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

tl_status tl_lreader_open(lreader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    struct stat sb;
    if (stat(path, &sb) != 0) return tl_fail(TL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return tl_fail(TL_ERR_IO, "cannot read '%s': it is a directory", path);
    r->gz = gzopen(path, "rb");
    if (!r->gz) return tl_fail(TL_ERR_IO, "cannot open '%s': %s", path, errno ? strerror(errno) : "zlib error");
    gzbuffer(r->gz, 1 << 17);
    r->cap = 1 << 20;
    r->buf = tl_malloc(r->cap + LR_PAD, "line buffer");
    if (!r->buf) {
        gzclose(r->gz);
        r->gz = NULL;
        return TL_ERR_NOMEM;
    }
    memset(r->buf + r->cap, 0, LR_PAD);
    return TL_OK;
}

void tl_lreader_close(lreader *r)
{
    if (r->gz) gzclose(r->gz);
    tl_free(r->buf);
    r->gz = NULL;
    r->buf = NULL;
}

static tl_status lr_fill(lreader *r)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->len == r->cap) {
        if (r->cap >= ((size_t)1 << 31))
            return tl_fail(TL_ERR_PARSE, "%s:%llu: line longer than 2 GiB", r->path,
                           (unsigned long long)r->line + 1);
        char *nb = tl_realloc(r->buf, r->cap * 2 + LR_PAD, "line buffer");
        if (!nb) return TL_ERR_NOMEM;
        r->buf = nb;
        r->cap *= 2;
        memset(r->buf + r->cap, 0, LR_PAD);
    }
    int want = (int)((r->cap - r->len) > (1u << 30) ? (1u << 30) : (r->cap - r->len));
    int got = gzread(r->gz, r->buf + r->len, (unsigned)want);
    int zerr = 0;
    const char *zmsg = gzerror(r->gz, &zerr);
    if (got < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR) || (got == 0 && zerr == Z_BUF_ERROR))
        return tl_fail(TL_ERR_FORMAT, "%s: corrupt or truncated gzip stream near line %llu: %s", r->path,
                       (unsigned long long)r->line + 1, zmsg && *zmsg ? zmsg : "read error");
    if (got == 0) r->eof = 1;
    r->len += (size_t)got;
    return TL_OK;
}

/* Next line (without "\n" or "\r\n") in *line and *len, NUL-terminated and
 * writable; *got = 0 at end of file. */
tl_status tl_lreader_next(lreader *r, char **line, size_t *len, int *got)
{
    for (;;) {
        char *start = r->buf + r->pos;
        size_t avail = r->len - r->pos;
        char *nl = avail ? memchr(start, '\n', avail) : NULL;
        if (nl || (r->eof && avail)) {
            size_t n = nl ? (size_t)(nl - start) : avail;
            if (!nl) {
                /* the last line has no newline: make room for the terminator */
                if (r->len == r->cap) {
                    tl_status st = lr_fill(r);
                    if (st) return st;
                    continue;
                }
            }
            start[n] = 0;
            r->pos += nl ? n + 1 : n;
            if (n && start[n - 1] == '\r') start[--n] = 0;
            r->line++;
            if (r->line == 1 && n >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
                start += 3; /* a UTF-8 byte-order mark is not part of the first name */
                n -= 3;
            }
            *line = start;
            *len = n;
            *got = 1;
            return TL_OK;
        }
        if (r->eof) {
            *got = 0;
            return TL_OK;
        }
        tl_status st = lr_fill(r);
        if (st) return st;
    }
}

/* ---- fields --------------------------------------------------------------- */

/* Split line[0..len) on sep (quotes: RFC 4180, "" inside quotes is one ").
 * Stores up to maxf fields, returns the number found (which may exceed maxf),
 * or -1 - column (1-based) for a malformed quoted field. Modifies line,
 * which must come from tl_lreader_next (readable padding after it). */

/* The next separator in [p, end), or NULL. */
static const char *find_sep(const char *p, const char *end, const char *sep, size_t seplen)
{
    for (;;) {
        const char *q = memchr(p, sep[0], (size_t)(end - p));
        if (!q || seplen == 1 || ((size_t)(end - q) >= seplen && bytes_eq(q, sep, seplen))) return q;
        p = q + 1;
    }
}

/* Walks the fields the way tl_data_split_fields does, without changing the
 * text, from the state in *q (a record continued from an earlier piece
 * starts inside a quoted field); text after a closing quote that is not a
 * separator is left for the splitter to refuse. */
void tl_data_quote_scan(const char *text, size_t len, const char *sep, size_t seplen, int trim, quote_state *q)
{
    const char *p = text, *end = text + len;
    int inside = q->open;
    if (!inside) q->col++;
    for (;;) {
        if (!inside) {
            if (trim)
                while (p < end && *p == ' ') p++;
            if (p < end && *p == '"') {
                inside = 1;
                p++;
            }
        }
        while (inside) {
            const char *c = memchr(p, '"', (size_t)(end - p));
            if (!c) {
                q->open = 1;
                return;
            }
            if (c + 1 < end && c[1] == '"') {
                p = c + 2;
                continue;
            }
            p = c + 1;
            inside = 0;
        }
        const char *s = find_sep(p, end, sep, seplen);
        if (!s) {
            q->open = 0;
            return;
        }
        p = s + seplen;
        q->col++;
    }
}

#ifdef __SSE2__
/* tl_data_split_fields for lines without quotes: find the separator's first byte 16
 * bytes at a time. Returns -2 (not a field count) when the line has a quote,
 * for the general path. Needs 16 readable bytes past line[len] (LR_PAD). */
static int split_simd(const char *line, size_t len, const char *sep, size_t seplen, int trim, field *f, int maxf)
{
    const __m128i vs = _mm_set1_epi8(sep[0]), vq = _mm_set1_epi8('"');
    const char *start = line, *end = line + len;
    int nf = 0;
    if (trim)
        while (start < end && *start == ' ') start++;
    for (size_t i = 0; i < len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(line + i));
        unsigned keep = len - i >= 16 ? 0xffffu : (1u << (len - i)) - 1;
        if ((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vq)) & keep) return -2;
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vs)) & keep;
        while (mask) {
            const char *q = line + i + (unsigned)__builtin_ctz(mask);
            mask &= mask - 1;
            if (q < start) continue; /* inside a separator just taken */
            if (seplen > 1 && ((size_t)(end - q) < seplen || !bytes_eq(q, sep, seplen))) continue;
            if (nf < maxf) {
                f[nf].p = start;
                f[nf].n = (uint32_t)(q - start);
            }
            nf++;
            start = q + seplen;
            if (trim)
                while (start < end && *start == ' ') start++;
        }
    }
    if (nf < maxf) {
        f[nf].p = start;
        f[nf].n = (uint32_t)(end - start);
    }
    return nf + 1;
}
#endif

int tl_data_split_fields(char *line, size_t len, const char *sep, size_t seplen, int trim, field *f, int maxf)
{
#ifdef __SSE2__
    int fast = split_simd(line, len, sep, seplen, trim, f, maxf);
    if (fast != -2) return fast;
#endif
    char *p = line, *end = line + len;
    int nf = 0;
    const char s0 = sep[0];
    for (;;) {
        if (trim)
            while (p < end && *p == ' ') p++;
        if (p < end && *p == '"') {
            char *w = p, *q = p + 1;
            for (;;) {
                if (q >= end) return -1 - (nf + 1);
                if (*q == '"') {
                    if (q + 1 < end && q[1] == '"') {
                        *w++ = '"';
                        q += 2;
                        continue;
                    }
                    q++;
                    break;
                }
                *w++ = *q++;
            }
            if (nf < maxf) {
                f[nf].p = p;
                f[nf].n = (uint32_t)(w - p);
            }
            nf++;
            if (q == end) return nf;
            if ((size_t)(end - q) >= seplen && bytes_eq(q, sep, seplen)) {
                p = q + seplen;
                continue;
            }
            return -1 - nf;
        }
        char *q = p;
        for (;;) {
            q = memchr(q, s0, (size_t)(end - q));
            if (!q) {
                q = end;
                break;
            }
            if (seplen == 1 || ((size_t)(end - q) >= seplen && bytes_eq(q, sep, seplen))) break;
            q++;
        }
        if (nf < maxf) {
            f[nf].p = p;
            f[nf].n = (uint32_t)(q - p);
        }
        nf++;
        if (q == end) return nf;
        p = q + seplen;
    }
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Parse a finite decimal number; leading/trailing spaces allowed. Returns 0
 * on text. Exact fast path for short decimals, strtod for the rest. */
int tl_data_parse_number(const char *s, size_t n, double *out)
{
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (!n) return 0;
    const char *p = s, *e = s + n;
    int neg = 0;
    if (*p == '-' || *p == '+') neg = *p++ == '-';
    uint64_t m = 0;
    int digits = 0, frac = 0, any = 0;
    while (p < e && *p >= '0' && *p <= '9') {
        if (digits < 19) m = m * 10 + (uint64_t)(*p - '0'), digits += m > 0;
        else frac--;
        p++;
        any = 1;
    }
    if (p < e && *p == '.') {
        p++;
        while (p < e && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                digits += m > 0;
                frac++;
            }
            p++;
            any = 1;
        }
    }
    if (any && p == e && m < (1ULL << 53) && frac >= -22 && frac <= 22) {
        double v = (double)m;
        v = frac >= 0 ? v / POW10[frac] : v * POW10[-frac];
        *out = neg ? -v : v;
        return 1;
    }
    char tmp[128];
    if (n >= sizeof tmp) return 0;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *endp;
    errno = 0;
    double v = strtod(tmp, &endp);
    if (endp != tmp + n || !isfinite(v)) return 0;
    /* reject hex floats and words strtod accepts ("0x1p3", "infinity") */
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789+-.eE", tmp[i])) return 0;
    *out = v;
    return 1;
}
