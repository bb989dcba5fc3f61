/* fuzz_kernel_msg.c — the Jupyter kernel's check of a received message
 * (repl/kernel_wire.c, through tl_kernel_parse_for_fuzz in kernel.c): delimiter search,
 * HMAC-SHA256 verification and JSON decoding of arbitrary frames.
 *
 * Input: one flags byte, then the frames separated by '\n' (so seeds are
 * readable: "<IDS|MSG>", signature, header, parent, metadata, content, one
 * per line). Flags: bit 0 verifies under the key "fuzz-key" (else no key);
 * bit 1 makes the harness sign the four JSON frames itself and put the
 * signature after the delimiter, so that with a key the JSON decoding is
 * reached too. At most 100 frames (the kernel keeps 64).
 * Outcome: stage "check" with status 0 (dropped) or -1 (error) when the
 * kernel would not accept the message; stage "" and status 1 when it would. */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz.h"
#include "kernel.h"

#define KEY "fuzz-key"
#define MAXF 100

int tl_fuzz_kernel_msg(const uint8_t *data, size_t size, tl_fuzz_outcome *out)
{
    tl_fuzz_begin(out);
    if (size < 1) return tl_fuzz_fail(out, "input", -1, "empty input");
    const unsigned flags = data[0];
    const void *frame[MAXF];
    size_t len[MAXF];
    int n = 0;
    size_t start = 1;
    for (size_t i = 1; i <= size && n < MAXF; i++) {
        if (i == size || data[i] == '\n') {
            frame[n] = data + start;
            len[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    char hex[65];
    if (flags & 2) {
        int delim = -1;
        for (int i = 0; i < n && delim < 0; i++)
            if (len[i] == 9 && memcmp(frame[i], "<IDS|MSG>", 9) == 0) delim = i;
        if (delim >= 0 && n >= delim + 6) {
            unsigned char msg_md[32];
            unsigned int mdlen = 0;
            size_t total = 0;
            for (int i = 0; i < 4; i++) total += len[delim + 2 + i];
            unsigned char *cat = malloc(total ? total : 1);
            if (!cat) return tl_fuzz_fail(out, "input", -1, "out of memory");
            size_t at = 0;
            for (int i = 0; i < 4; i++) {
                if (len[delim + 2 + i]) memcpy(cat + at, frame[delim + 2 + i], len[delim + 2 + i]);
                at += len[delim + 2 + i];
            }
            int ok = HMAC(EVP_sha256(), KEY, (int)strlen(KEY), cat, total, msg_md, &mdlen) != NULL;
            free(cat);
            if (ok && mdlen == 32) {
                static const char digits[] = "0123456789abcdef";
                for (int i = 0; i < 32; i++) {
                    hex[2 * i] = digits[msg_md[i] >> 4];
                    hex[2 * i + 1] = digits[msg_md[i] & 15];
                }
                hex[64] = '\0';
                frame[delim + 1] = hex;
                len[delim + 1] = 64;
            }
        }
    }
    int r = tl_kernel_parse_for_fuzz(frame, len, n, (flags & 1) ? KEY : NULL);
    if (r != 1) return tl_fuzz_fail(out, "check", r, r == 0 ? "dropped" : "error");
    if (out) out->status = 1;
    return 1;
}

TL_FUZZ_ENTRY(tl_fuzz_kernel_msg)
