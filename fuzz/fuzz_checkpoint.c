/* fuzz_checkpoint.c — tl_model_load on arbitrary checkpoint files.
 *
 * Input: the file's bytes. A mutated checkpoint nearly always fails the
 * CRC32 check, which would hide everything behind it, so each input is
 * loaded twice: as given (header and checksum checks), and with the
 * header's length field and the trailing CRC32 rewritten to match (the
 * section parser, configuration decoding, tl_model_new and the restore of
 * parameters, optimizer, RNG, history and calibrators). Seeds are real
 * checkpoints written by tl_model_save (scripts in fuzz/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "io.h"

#define HEADER 24

static void load(const char *path, const uint8_t *p, size_t n)
{
    if (tl_fuzz_write(path, p, n) != 0) return;
    tl_model *m = NULL;
    if (tl_model_load(path, &m) == TL_OK) tl_model_free(m);
    unlink(path);
    tl_clear_error();
}

int tl_fuzz_checkpoint(const uint8_t *data, size_t size)
{
    if (size > (8u << 20)) return 0;
    const char *dir = tl_fuzz_tmpdir();
    if (!dir) return 0;
    char path[128];
    snprintf(path, sizeof path, "%s/in.tlm", dir);
    load(path, data, size);
    if (size < HEADER + 4) return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed) return 0;
    memcpy(fixed, data, size);
    for (int i = 0; i < 8; i++) fixed[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    uint32_t crc = (uint32_t)crc32(0L, fixed, (uInt)(size - 4));
    for (int i = 0; i < 4; i++) fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    if (memcmp(fixed, data, size) != 0) load(path, fixed, size);
    free(fixed);
    return 0;
}

TL_FUZZ_ENTRY(tl_fuzz_checkpoint)
