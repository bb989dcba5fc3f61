/* fuzz.h — the harness entry points (fuzz/fuzz_<name>.c).
 *
 * Each tl_fuzz_<name> runs one input through the code under test and
 * returns 0; it never keeps state between calls that changes the result.
 * libFuzzer calls them from LLVMFuzzerTestOneInput (built with
 * -DTL_LIBFUZZER by `make fuzz`); tests/test_fuzz_replay.c calls them on
 * every file of fuzz/corpus/<name>/ and fuzz/crashes/<name>/. */
#ifndef TL_FUZZ_H
#define TL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int tl_fuzz_csv(const uint8_t *data, size_t size);
int tl_fuzz_checkpoint(const uint8_t *data, size_t size);
int tl_fuzz_kernel_msg(const uint8_t *data, size_t size);

/* A private scratch directory for the process (created on first use, under
 * /dev/shm when it exists, removed at exit), or NULL. */
static const char *tl_fuzz_tmpdir(void) __attribute__((unused));
static char tl_fuzz_dir_[64];

/* Harnesses unlink their files after each input, so the directory is empty. */
static void tl_fuzz_rmdir_(void) { rmdir(tl_fuzz_dir_); }

static const char *tl_fuzz_tmpdir(void)
{
    if (tl_fuzz_dir_[0]) return tl_fuzz_dir_;
    struct stat st;
    snprintf(tl_fuzz_dir_, sizeof tl_fuzz_dir_, "%s/tlfuzz.XXXXXX",
             stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
    if (!mkdtemp(tl_fuzz_dir_)) {
        tl_fuzz_dir_[0] = '\0';
        return NULL;
    }
    atexit(tl_fuzz_rmdir_);
    return tl_fuzz_dir_;
}

/* Write n bytes to path; 0 or -1. */
static int tl_fuzz_write(const char *path, const void *p, size_t n) __attribute__((unused));
static int tl_fuzz_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

#ifdef TL_LIBFUZZER
#define TL_FUZZ_ENTRY(fn)                                                   \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);           \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fn(data, size); }
#else
#define TL_FUZZ_ENTRY(fn)
#endif

#endif
