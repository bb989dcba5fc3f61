/* test_plot.c — the gnuplot process module (repl/plot.c) on its own: sends
 * never block on a gnuplot that stops reading, a gnuplot that exits early
 * raises no SIGPIPE, hung children are killed at the timeout, and errors
 * carry gnuplot's message. plot.c is libc-only and not in libtowerlab.a, so
 * it is compiled into this test directly (first: it defines _GNU_SOURCE). */
#include "../repl/plot.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

/* An executable shell script standing in for gnuplot. */
static char g_fakes[16][64];
static int g_nfakes;

static char *fake_gnuplot(const char *body) {
    assert_true(g_nfakes < 16);
    char *p = g_fakes[g_nfakes++];
    snprintf(p, 64, "/tmp/tl_fake_gnuplot_XXXXXX");
    int fd = mkstemp(p);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(p, 0700);
    return p;
}

static int have_gnuplot(void) {
    char err[256];
    tl_plot_set_gnuplot(NULL);
    return tl_plot_gnuplot(err, sizeof err) != NULL;
}

static void test_buf_quote_and_num(void **state) {
    (void)state;
    tl_plot_buf b = {0};
    tl_plot_buf_quote(&b, "it's\nx");
    tl_plot_buf_add(&b, " ", 1);
    tl_plot_buf_num(&b, NAN);
    tl_plot_buf_add(&b, " ", 1);
    tl_plot_buf_num(&b, 0.25);
    assert_string_equal(b.data, "'it''s x' NaN 0.25");
    tl_plot_buf_free(&b);
}

static void test_not_found(void **state) {
    (void)state;
    char err[512];
    tl_plot_set_gnuplot("/nonexistent/gnuplot");
    int rc = tl_plot_run("plot x\n", 7, TL_PLOT_CAPTURE, 5, NULL, NULL, err, sizeof err);
    assert_int_equal(rc, TL_PLOT_ENOTFOUND);
    assert_non_null(strstr(err, "install gnuplot-nox"));
    int code = 0;
    assert_null(tl_plot_open(0, &code, err, sizeof err));
    assert_int_equal(code, TL_PLOT_ENOTFOUND);
    tl_plot_set_gnuplot(NULL);
}

/* The child exits without reading a 4 MB script: with SIGPIPE at its
 * default (terminate) this test would die if a write raised it. */
static void test_early_exit_raises_no_sigpipe(void **state) {
    (void)state;
    signal(SIGPIPE, SIG_DFL);
    size_t n = 4u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, '#', n);
    big[n - 1] = '\n';
    char err[512];
    tl_plot_set_gnuplot(fake_gnuplot("exit 0"));
    int rc = tl_plot_run(big, n, TL_PLOT_CAPTURE, 5, NULL, NULL, err, sizeof err);
    assert_int_equal(rc, TL_PLOT_ECRASH);
    assert_non_null(strstr(err, "before finishing"));
    tl_plot_set_gnuplot(fake_gnuplot("kill -SEGV $$"));
    rc = tl_plot_run(big, n, TL_PLOT_CAPTURE, 5, NULL, NULL, err, sizeof err);
    assert_int_equal(rc, TL_PLOT_ECRASH);
    assert_non_null(strstr(err, "signal 11"));
    free(big);
    tl_plot_set_gnuplot(NULL);
}

static void test_hung_child_is_killed_at_timeout(void **state) {
    (void)state;
    char err[512];
    tl_plot_set_gnuplot(fake_gnuplot("exec sleep 30"));
    double t0 = now_s();
    int rc = tl_plot_run("plot x\n", 7, TL_PLOT_CAPTURE, 0.3, NULL, NULL, err, sizeof err);
    double dt = now_s() - t0;
    assert_int_equal(rc, TL_PLOT_ECRASH);
    assert_non_null(strstr(err, "did not finish"));
    assert_true(dt < 2.0);
    tl_plot_set_gnuplot(NULL);
}

/* A gnuplot that never reads: every send returns at once, later frames are
 * skipped (BUSY) instead of queued, and close kills it at the timeout. */
static void test_send_never_blocks(void **state) {
    (void)state;
    char err[512];
    int code;
    tl_plot_set_gnuplot(fake_gnuplot("exec sleep 30"));
    tl_plot *p = tl_plot_open(0, &code, err, sizeof err);
    assert_non_null(p);
    size_t n = 256 * 1024;
    char *frame = malloc(n);
    assert_non_null(frame);
    memset(frame, '#', n);
    frame[n - 1] = '\n';
    int sent = 0, busy = 0;
    double worst = 0;
    for (int i = 0; i < 200; i++) {
        double t0 = now_s();
        int r = tl_plot_send(p, frame, n);
        double dt = now_s() - t0;
        if (dt > worst) worst = dt;
        if (r == TL_PLOT_SENT) sent++;
        else if (r == TL_PLOT_BUSY) busy++;
        else fail_msg("send failed: %d", r);
    }
    assert_int_equal(sent, 1);
    assert_int_equal(busy, 199);
    assert_true(worst < 0.05);
    double t0 = now_s();
    tl_plot_close(p, NULL, 0.2);
    assert_true(now_s() - t0 < 2.0);
    free(frame);
    tl_plot_set_gnuplot(NULL);
}

static void test_live_process_reports_death(void **state) {
    (void)state;
    char err[512];
    int code;
    tl_plot_set_gnuplot(fake_gnuplot("exit 3"));
    tl_plot *p = tl_plot_open(0, &code, err, sizeof err);
    assert_non_null(p);
    for (int i = 0; i < 200 && tl_plot_alive(p); i++) sleep_ms(5);
    assert_int_equal(tl_plot_send(p, "plot x\n", 7), TL_PLOT_ECRASH);
    assert_non_null(strstr(tl_plot_error(p), "gnuplot"));
    tl_plot_close(p, NULL, 0.1);
    tl_plot_set_gnuplot(NULL);
}

static void test_real_gnuplot_dumb_and_error(void **state) {
    (void)state;
    if (!have_gnuplot()) {
        print_message("SKIP test_real_gnuplot_dumb_and_error: gnuplot not installed (apt-get install gnuplot-nox)\n");
        skip();
    }
    char err[512], *out = NULL;
    size_t len = 0;
    tl_plot_buf b = {0};
    assert_int_equal(tl_plot_terminal_cmd(&b, "dumb", 60, 15, NULL, 0, err, sizeof err), TL_PLOT_OK);
    tl_plot_buf_printf(&b, "set title 'TitleXYZ'\nplot x\n");
    int rc = tl_plot_run(b.data, b.len, TL_PLOT_CAPTURE, 20, &out, &len, err, sizeof err);
    assert_int_equal(rc, TL_PLOT_OK);
    assert_non_null(strstr(out, "TitleXYZ"));
    assert_null(strstr(out, "tl_plot: done"));
    free(out);
    static const char bad[] = "set terminal dumb\nfrobnicate\n";
    rc = tl_plot_run(bad, sizeof bad - 1, TL_PLOT_CAPTURE, 20, &out, &len, err, sizeof err);
    assert_int_equal(rc, TL_PLOT_EERROR);
    assert_non_null(strstr(err, "invalid command"));
    assert_int_equal(tl_plot_has_terminal("svg"), 1);
    assert_int_equal(tl_plot_has_terminal("sv"), 0);
    tl_plot_buf_reset(&b);
    assert_int_equal(tl_plot_terminal_cmd(&b, "jpeg", 0, 0, NULL, 0, err, sizeof err), TL_PLOT_EERROR);
    assert_non_null(strstr(err, "unknown terminal"));
    tl_plot_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_quote_and_num),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_early_exit_raises_no_sigpipe),
        cmocka_unit_test(test_hung_child_is_killed_at_timeout),
        cmocka_unit_test(test_send_never_blocks),
        cmocka_unit_test(test_live_process_reports_death),
        cmocka_unit_test(test_real_gnuplot_dumb_and_error),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int i = 0; i < g_nfakes; i++) unlink(g_fakes[i]);
    return rc;
}
