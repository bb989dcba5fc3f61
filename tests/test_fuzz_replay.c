/* test_fuzz_replay.c — every file under fuzz/corpus/<name>/,
 * fuzz/crashes/<name>/ and fuzz/regressions/<name>/ through the fuzz
 * harnesses' entry points (fuzz/fuzz_<name>.c, tl_fuzz_<name>) without
 * libFuzzer, so that `make test` and `make check` (ASan + UBSan) replay
 * the seeds and every crash that was once found and fixed. Also checks
 * the kernel's message check accepts a correctly signed message and
 * drops a forged one, so the kernel corpus exercises both paths. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../fuzz/fuzz.h"
#include "../repl/kernel.h"

typedef int (*entry_fn)(const uint8_t *, size_t);

/* Run fn on every regular file in dir; returns how many (0 when the
 * directory does not exist). A file that cannot be read fails the test. */
static int replay_dir(const char *dir, entry_fn fn)
{
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        assert_non_null(buf);
        size_t n = fread(buf, 1, (size_t)st.st_size, f);
        fclose(f);
        assert_int_equal(n, (size_t)st.st_size);
        assert_int_equal(fn(buf, n), 0);
        free(buf);
        count++;
    }
    closedir(dp);
    return count;
}

/* Replays corpus, crashes and regressions of `name`; the corpus must hold at
 * least min_seeds files (a missing corpus would make the test vacuous). */
static void replay(const char *name, entry_fn fn, int min_seeds)
{
    char dir[256];
    snprintf(dir, sizeof dir, "fuzz/corpus/%s", name);
    int seeds = replay_dir(dir, fn);
    snprintf(dir, sizeof dir, "fuzz/crashes/%s", name);
    int crashes = replay_dir(dir, fn);
    snprintf(dir, sizeof dir, "fuzz/regressions/%s", name);
    crashes += replay_dir(dir, fn);
    printf("# %s: %d corpus files, %d crash/regression files replayed\n", name, seeds, crashes);
    assert_true(seeds >= min_seeds);
}

static void test_replay_csv(void **state)
{
    (void)state;
    replay("csv", tl_fuzz_csv, 20);
}

static void test_replay_checkpoint(void **state)
{
    (void)state;
    replay("checkpoint", tl_fuzz_checkpoint, 10);
}

static void test_replay_kernel_msg(void **state)
{
    (void)state;
    replay("kernel_msg", tl_fuzz_kernel_msg, 20);
}

/* HMAC-SHA256 under "k" of the four frames below, from python3:
 * hmac.new(b"k", b'{"msg_type":"kernel_info_request"}' + b"{}" * 3, "sha256"). */
#define SIG_K "af3dc92b941847517a9fb6b7c31c5e8e8f1a69b7cfc82a7b363bd2d52fb563a9"

static void test_kernel_check_accepts_and_drops(void **state)
{
    (void)state;
    const char *hdr = "{\"msg_type\":\"kernel_info_request\"}";
    const void *f[7] = {"id", "<IDS|MSG>", "", hdr, "{}", "{}", "{}"};
    size_t n[7];
    for (int i = 0; i < 7; i++) n[i] = strlen(f[i]);
    assert_int_equal(tl_kernel_parse_for_fuzz(f, n, 7, NULL), 1);
    assert_int_equal(tl_kernel_parse_for_fuzz(f, n, 6, NULL), 0);          /* content missing */
    assert_int_equal(tl_kernel_parse_for_fuzz(f, n, 7, "k"), 0);           /* unsigned */
    f[2] = SIG_K;
    n[2] = 64;
    assert_int_equal(tl_kernel_parse_for_fuzz(f, n, 7, "k"), 1);
    assert_int_equal(tl_kernel_parse_for_fuzz(f, n, 7, "other key"), 0);
    f[2] = "AF3DC92B941847517A9FB6B7C31C5E8E8F1A69B7CFC82A7B363BD2D52FB563A9"; /* case matters */
    assert_int_equal(tl_kernel_parse_for_fuzz(f, n, 7, "k"), 0);
    f[3] = "{\"msg_id\":1}";
    n[3] = strlen(f[3]);
    assert_int_equal(tl_kernel_parse_for_fuzz(f, n, 7, NULL), 0);          /* no msg_type */
    f[3] = "[]";
    n[3] = 2;
    assert_int_equal(tl_kernel_parse_for_fuzz(f, n, 7, NULL), 0);          /* not an object */
    assert_int_equal(tl_kernel_parse_for_fuzz(NULL, NULL, 3, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_csv),
        cmocka_unit_test(test_replay_checkpoint),
        cmocka_unit_test(test_replay_kernel_msg),
        cmocka_unit_test(test_kernel_check_accepts_and_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
