/* test_fuzz_replay.c — every file under fuzz/corpus/<name>/,
 * fuzz/crashes/<name>/ and fuzz/regressions/<name>/ through the fuzz
 * harnesses' entry points (fuzz/fuzz_<name>.c, tl_fuzz_<name>) without
 * libFuzzer, so that `make test` and `make check` (ASan + UBSan) replay
 * the seeds and every crash that was once found and fixed. Each file's
 * outcome (the stage that failed, its status, a piece of its message) must
 * be the one fuzz/replay_manifest.txt gives for it: a seed that stops
 * loading, a crash input that starts to load, or an error message that
 * changes, fails the test. A file without an entry, or an entry without a
 * file, fails too.
 *
 * TL_FUZZ_MANIFEST_PRINT=1 build/tests/test_fuzz_replay prints every file's
 * current manifest line (the whole message) instead: the start of a new entry.
 *
 * Also checks the kernel's message check accepts a correctly signed message
 * and drops a forged one, so the kernel corpus exercises both paths. */
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

#define MANIFEST "fuzz/replay_manifest.txt"

typedef int (*entry_fn)(const uint8_t *, size_t, tl_fuzz_outcome *);

typedef struct {
    char path[256];     /* under fuzz/: "corpus/csv/census_0" */
    char outcome[48];   /* "ok", "accepted", "<stage>:<status>" */
    char message[512];  /* must occur in the message ("" only for ok/accepted) */
    int line, seen;
} entry;

static entry *entries;
static int n_entries;

/* The outcome's name: "ok" / "accepted" when no stage failed, else
 * "<stage>:<status>" with the tl_status names of core.h (the kernel check's
 * 0 is "dropped", -1 anywhere is "error"). */
static void outcome_name(const char *harness, const tl_fuzz_outcome *o, char *buf, size_t n)
{
    static const char *const names[] = {"ok",    "arg",     "shape",     "nomem", "io",
                                        "parse", "numeric", "cancelled", "state", "format"};
    if (!o->stage[0]) {
        snprintf(buf, n, "%s", strcmp(harness, "kernel_msg") == 0 ? "accepted" : "ok");
        return;
    }
    const char *s = o->status == -1 ? "error"
                    : strcmp(harness, "kernel_msg") == 0 && o->status == 0 ? "dropped"
                    : o->status >= 0 && o->status < 10 ? names[o->status] : "?";
    snprintf(buf, n, "%s:%s", o->stage, s);
}

/* The message with the harnesses' scratch directories (fuzz.h: each harness
 * file has its own, ".../tlfuzz.XXXXXX") written as $TMP, newlines as spaces. */
static void stable_message(const char *msg, char *buf, size_t n)
{
    size_t at = 0;
    for (const char *p = msg; *p && at + 1 < n;) {
        const char *q = NULL;
        if (*p == '/' && (q = strstr(p, "/tlfuzz.")) != NULL && strlen(q) >= 14) {
            /* a path up to the directory: no space or quote before it */
            const char *c = p;
            while (c < q && *c != ' ' && *c != '\'' && *c != '"') c++;
            if (c < q) q = NULL;
        }
        if (q) {
            at += (size_t)snprintf(buf + at, n - at, "$TMP");
            if (at >= n) at = n - 1;
            p = q + 14;
        } else {
            buf[at++] = *p == '\n' ? ' ' : *p;
            p++;
        }
    }
    buf[at] = '\0';
}

static void load_manifest(void)
{
    FILE *f = fopen(MANIFEST, "r");
    if (!f) fail_msg("cannot open %s", MANIFEST);
    char line[1024];
    int ln = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') continue;
        if (n_entries == cap) {
            cap = cap ? 2 * cap : 256;
            entries = realloc(entries, (size_t)cap * sizeof *entries);
            assert_non_null(entries);
        }
        entry *e = &entries[n_entries];
        memset(e, 0, sizeof *e);
        int used = 0;
        if (sscanf(line, "%255s %47s %n", e->path, e->outcome, &used) < 2)
            fail_msg("%s:%d: expected 'path outcome [message]', got '%s'", MANIFEST, ln, line);
        snprintf(e->message, sizeof e->message, "%s", line + used);
        e->line = ln;
        if (strcmp(e->outcome, "ok") != 0 && strcmp(e->outcome, "accepted") != 0 && !e->message[0])
            fail_msg("%s:%d: %s: a failing outcome needs a message substring", MANIFEST, ln, e->path);
        for (int i = 0; i < n_entries; i++)
            if (strcmp(entries[i].path, e->path) == 0)
                fail_msg("%s:%d: %s listed again (first at line %d)", MANIFEST, ln, e->path, entries[i].line);
        n_entries++;
    }
    fclose(f);
}

static entry *find_entry(const char *rel)
{
    for (int i = 0; i < n_entries; i++)
        if (strcmp(entries[i].path, rel) == 0) return &entries[i];
    return NULL;
}

/* 1 when outcome o of file rel matches e (NULL: no entry); else 0 with the
 * reason in why. */
static int check_one(const char *harness, const char *rel, const tl_fuzz_outcome *o, const entry *e,
                     char *why, size_t n)
{
    char got[48], msg[1024];
    outcome_name(harness, o, got, sizeof got);
    stable_message(o->message, msg, sizeof msg);
    if (!e) {
        snprintf(why, n, "%s: no entry in %s; its outcome now: %s %s %s", rel, MANIFEST, rel, got, msg);
        return 0;
    }
    if (strcmp(e->outcome, got) != 0) {
        snprintf(why, n, "%s (%s:%d): expected %s '%s', got %s '%s'", rel, MANIFEST, e->line, e->outcome,
                 e->message, got, msg);
        return 0;
    }
    if (e->message[0] && !strstr(msg, e->message)) {
        snprintf(why, n, "%s (%s:%d): %s as expected, but the message '%s' does not contain '%s'", rel,
                 MANIFEST, e->line, got, msg, e->message);
        return 0;
    }
    return 1;
}

static int failures;
static int print_mode;

/* Run fn on every regular file in fuzz/<kind>/<harness> (sorted); returns how
 * many (0 when the directory does not exist). */
static int replay_dir(const char *kind, const char *harness, entry_fn fn)
{
    char dir[256];
    snprintf(dir, sizeof dir, "fuzz/%s/%s", kind, harness);
    struct dirent **names;
    int k = scandir(dir, &names, NULL, alphasort);
    if (k < 0) return 0;
    int count = 0;
    for (int i = 0; i < k; i++) {
        const char *base = names[i]->d_name;
        char path[1024], rel[512];
        snprintf(path, sizeof path, "%s/%s", dir, base);
        snprintf(rel, sizeof rel, "%s/%s/%s", kind, harness, base);
        struct stat st;
        if (base[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(names[i]);
            continue;
        }
        free(names[i]);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        assert_non_null(buf);
        size_t n = fread(buf, 1, (size_t)st.st_size, f);
        fclose(f);
        assert_int_equal(n, (size_t)st.st_size);
        tl_fuzz_outcome o;
        int r = fn(buf, n, &o);
        free(buf);
        assert_int_equal(r, o.status);
        char why[2048];
        entry *e = find_entry(rel);
        if (e) e->seen = 1;
        if (print_mode) {
            char got[48], msg[1024];
            outcome_name(harness, &o, got, sizeof got);
            stable_message(o.message, msg, sizeof msg);
            printf("%s %s%s%s\n", rel, got, o.stage[0] ? " " : "", o.stage[0] ? msg : "");
        } else if (!check_one(harness, rel, &o, e, why, sizeof why)) {
            printf("# MISMATCH %s\n", why);
            failures++;
        }
        count++;
    }
    free(names);
    return count;
}

/* Replays corpus, crashes and regressions of `name`; the corpus must hold at
 * least min_seeds files (a missing corpus would make the test vacuous). */
static void replay(const char *name, entry_fn fn, int min_seeds)
{
    if (!entries) load_manifest();
    print_mode = getenv("TL_FUZZ_MANIFEST_PRINT") != NULL;
    failures = 0;
    int seeds = replay_dir("corpus", name, fn);
    int crashes = replay_dir("crashes", name, fn) + replay_dir("regressions", name, fn);
    printf("# %s: %d corpus files, %d crash/regression files replayed\n", name, seeds, crashes);
    /* entries of this harness whose file is gone */
    char mid[64];
    snprintf(mid, sizeof mid, "/%s/", name);
    for (int i = 0; i < n_entries && !print_mode; i++) {
        const char *p = entries[i].path, *slash = strchr(p, '/');
        if (!entries[i].seen && slash && strncmp(slash, mid, strlen(mid)) == 0) {
            printf("# MISMATCH %s:%d names %s, which does not exist\n", MANIFEST, entries[i].line, p);
            failures++;
        }
    }
    assert_true(seeds >= min_seeds);
    if (failures) fail_msg("%d file(s) of %s did not give the outcome %s expects (listed above)", failures, name,
                           MANIFEST);
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

/* The comparison can fail: a wrong outcome, a message that does not
 * contain the expected piece, a file with no entry. */
static void test_manifest_mismatches_are_reported(void **state)
{
    (void)state;
    tl_fuzz_outcome o;
    memset(&o, 0, sizeof o);
    snprintf(o.stage, sizeof o.stage, "load");
    o.status = 9; /* TL_ERR_FORMAT */
    snprintf(o.message, sizeof o.message, "/dev/shm/tlfuzz.Ab12Cd/in.tlm: newer format version 2");
    entry e;
    memset(&e, 0, sizeof e);
    snprintf(e.path, sizeof e.path, "corpus/checkpoint/x");
    char why[2048];

    snprintf(e.outcome, sizeof e.outcome, "load:format");
    snprintf(e.message, sizeof e.message, "$TMP/in.tlm: newer format");
    assert_int_equal(check_one("checkpoint", e.path, &o, &e, why, sizeof why), 1);

    snprintf(e.outcome, sizeof e.outcome, "ok");
    e.message[0] = '\0';
    assert_int_equal(check_one("checkpoint", e.path, &o, &e, why, sizeof why), 0);
    assert_non_null(strstr(why, "expected ok '', got load:format"));

    snprintf(e.outcome, sizeof e.outcome, "load:format");
    snprintf(e.message, sizeof e.message, "checksum");
    assert_int_equal(check_one("checkpoint", e.path, &o, &e, why, sizeof why), 0);
    assert_non_null(strstr(why, "does not contain 'checksum'"));

    assert_int_equal(check_one("checkpoint", "corpus/checkpoint/new", &o, NULL, why, sizeof why), 0);
    assert_non_null(strstr(why, "no entry"));
    assert_non_null(strstr(why, "corpus/checkpoint/new load:format $TMP/in.tlm: newer format version 2"));

    o.stage[0] = '\0';
    o.status = 1;
    snprintf(e.outcome, sizeof e.outcome, "dropped");
    assert_int_equal(check_one("kernel_msg", e.path, &o, &e, why, sizeof why), 0);
    snprintf(e.outcome, sizeof e.outcome, "accepted");
    e.message[0] = '\0';
    assert_int_equal(check_one("kernel_msg", e.path, &o, &e, why, sizeof why), 1);
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
        cmocka_unit_test(test_manifest_mismatches_are_reported),
        cmocka_unit_test(test_replay_csv),
        cmocka_unit_test(test_replay_checkpoint),
        cmocka_unit_test(test_replay_kernel_msg),
        cmocka_unit_test(test_kernel_check_accepts_and_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
