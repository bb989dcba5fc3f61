/* fuzz.h — the harness entry points (fuzz/fuzz_<name>.c).
 *
 * Each tl_fuzz_<name> runs one input through the code under test, fills
 * *out (may be NULL) with what the input came to, and returns out->status;
 * it never keeps state between calls that changes the result. libFuzzer
 * calls them from LLVMFuzzerTestOneInput (built with -DTL_LIBFUZZER by
 * `make fuzz`), which returns 0 whatever the outcome; tests/test_fuzz_replay.c
 * calls them on every file of fuzz/corpus/<name>/, fuzz/crashes/<name>/ and
 * fuzz/regressions/<name>/ and compares each outcome with the one
 * fuzz/replay_manifest.txt expects for that file. */
#ifndef TL_FUZZ_H
#define TL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The outcome of one input: the first stage that failed ("" when every stage
 * passed), its status (a tl_status for csv and checkpoint; for kernel_msg the
 * check's result: 1 accepted, 0 dropped, -1 error) and the error message
 * (tl_errmsg() or the Lua error) at that point, "" when none. */
typedef struct {
    char stage[16];
    int status;
    char message[768];
} tl_fuzz_outcome;

int tl_fuzz_csv(const uint8_t *data, size_t size, tl_fuzz_outcome *out);
int tl_fuzz_checkpoint(const uint8_t *data, size_t size, tl_fuzz_outcome *out);
int tl_fuzz_kernel_msg(const uint8_t *data, size_t size, tl_fuzz_outcome *out);

/* Record the failure of `stage` with status st and message msg (NULL: "")
 * in *out (may be NULL), unless an earlier stage failed already; returns st. */
static int tl_fuzz_fail(tl_fuzz_outcome *out, const char *stage, int st, const char *msg)
    __attribute__((unused));
static int tl_fuzz_fail(tl_fuzz_outcome *out, const char *stage, int st, const char *msg)
{
    if (!out || out->stage[0]) return st;
    snprintf(out->stage, sizeof out->stage, "%s", stage);
    out->status = st;
    snprintf(out->message, sizeof out->message, "%s", msg ? msg : "");
    return st;
}

/* Start an outcome: no stage failed, status 0. */
static void tl_fuzz_begin(tl_fuzz_outcome *out) __attribute__((unused));
static void tl_fuzz_begin(tl_fuzz_outcome *out)
{
    if (out) memset(out, 0, sizeof *out);
}

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
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)            \
    {                                                                       \
        (void)fn(data, size, NULL);                                         \
        return 0;                                                           \
    }
#else
#define TL_FUZZ_ENTRY(fn)
#endif

#endif
