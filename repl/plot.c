/* plot.c — gnuplot child processes and terminals (see plot.h). */
#define _GNU_SOURCE /* pipe2, SOCK_CLOEXEC */
#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SIOCOUTQ
#define SIOCOUTQ TIOCOUTQ
#endif

extern char **environ;

/* ---- script buffers ---------------------------------------------------- */

static int buf_reserve(tl_plot_buf *b, size_t extra)
{
    if (b->oom) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void tl_plot_buf_add(tl_plot_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) != 0) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void tl_plot_buf_vprintf(tl_plot_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        tl_plot_buf_add(b, small, (size_t)n);
        return;
    }
    if (buf_reserve(b, (size_t)n) != 0) return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void tl_plot_buf_printf(tl_plot_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tl_plot_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void tl_plot_buf_num(tl_plot_buf *b, double v)
{
    if (!isfinite(v))
        tl_plot_buf_add(b, "NaN", 3);
    else
        tl_plot_buf_printf(b, "%.9g", v);
}

void tl_plot_buf_quote(tl_plot_buf *b, const char *s)
{
    tl_plot_buf_add(b, "'", 1);
    for (; *s; s++) {
        if (*s == '\'')
            tl_plot_buf_add(b, "''", 2);
        else if (*s == '\n' || *s == '\r')
            tl_plot_buf_add(b, " ", 1);
        else
            tl_plot_buf_add(b, s, 1);
    }
    tl_plot_buf_add(b, "'", 1);
}

void tl_plot_buf_reset(tl_plot_buf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->data) b->data[0] = '\0';
}

void tl_plot_buf_free(tl_plot_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- small helpers ------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Last non-empty lines of gnuplot's stderr, joined with "; ", into dst. */
static void tail_lines(const char *s, size_t n, char *dst, size_t dstlen)
{
    dst[0] = '\0';
    if (!s || n == 0 || dstlen == 0) return;
    /* Up to the last 2 non-blank lines; gnuplot puts the message last. */
    size_t end = n, starts[2], ends[2];
    int k = 0;
    while (end > 0 && k < 2) {
        while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == ' ' || s[end - 1] == '\t')) end--;
        if (end == 0) break;
        size_t beg = end;
        while (beg > 0 && s[beg - 1] != '\n') beg--;
        size_t b2 = beg;
        while (b2 < end && (s[b2] == ' ' || s[b2] == '\t')) b2++;
        /* The caret line ("   ^") under the echoed command says nothing. */
        if (!(end - b2 == 1 && s[b2] == '^')) {
            starts[k] = b2;
            ends[k] = end;
            k++;
        }
        end = beg;
    }
    size_t o = 0;
    for (int i = k - 1; i >= 0; i--) {
        size_t len = ends[i] - starts[i];
        if (o + len + 3 >= dstlen) len = dstlen > o + 3 ? dstlen - o - 3 : 0;
        memcpy(dst + o, s + starts[i], len);
        o += len;
        if (i > 0 && o + 2 < dstlen) {
            memcpy(dst + o, "; ", 2);
            o += 2;
        }
    }
    dst[o] = '\0';
}

/* ---- reaping detached children ----------------------------------------- */

#define MAX_DETACHED 64
static pid_t g_detached[MAX_DETACHED];
static int g_ndetached;

static void detach_pid(pid_t pid)
{
    if (g_ndetached < MAX_DETACHED) g_detached[g_ndetached++] = pid;
}

void tl_plot_reap(void)
{
    for (int i = 0; i < g_ndetached;) {
        int st;
        pid_t r = waitpid(g_detached[i], &st, WNOHANG);
        if (r == g_detached[i] || (r < 0 && errno == ECHILD))
            g_detached[i] = g_detached[--g_ndetached];
        else
            i++;
    }
}

/* ---- finding gnuplot ---------------------------------------------------- */

static char g_override[PATH_MAX];
static int g_has_override;
static char g_resolved[PATH_MAX];
static char *g_terminals; /* cached GPVAL_TERMINALS, space separated */

void tl_plot_set_gnuplot(const char *path)
{
    g_has_override = path != NULL;
    if (path) snprintf(g_override, sizeof g_override, "%s", path);
    free(g_terminals);
    g_terminals = NULL;
}

const char *tl_plot_gnuplot(char *err, size_t errlen)
{
    const char *want = "gnuplot", *source = NULL;
    if (g_has_override) {
        want = g_override;
        source = "tl.plot.gnuplot";
    } else {
        const char *env = getenv("TL_GNUPLOT");
        if (env && *env) {
            want = env;
            source = "TL_GNUPLOT";
        }
    }
    if (strchr(want, '/')) {
        if (access(want, X_OK) == 0) {
            snprintf(g_resolved, sizeof g_resolved, "%s", want);
            return g_resolved;
        }
    } else {
        const char *path = getenv("PATH");
        if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
        while (*path) {
            const char *colon = strchr(path, ':');
            size_t dl = colon ? (size_t)(colon - path) : strlen(path);
            int n = snprintf(g_resolved, sizeof g_resolved, "%.*s%s%s", (int)dl, path,
                             dl ? "/" : "", want);
            if (n > 0 && (size_t)n < sizeof g_resolved && access(g_resolved, X_OK) == 0)
                return g_resolved;
            if (!colon) break;
            path = colon + 1;
        }
    }
    if (source)
        snprintf(err, errlen,
                 "gnuplot not found at '%s' (set by %s); install gnuplot-nox — plots disabled",
                 want, source);
    else
        snprintf(err, errlen, "gnuplot not found; install gnuplot-nox — plots disabled");
    return NULL;
}

/* ---- spawning ----------------------------------------------------------- */

typedef struct {
    pid_t pid;
    int in, out, err; /* parent ends; -1 when not piped */
} child;

/* Start gnuplot with stdin on a socket pair (so writes can use MSG_NOSIGNAL).
 * Without TL_PLOT_WINDOW stdout and stderr are pipes back to us. */
static int spawn_gnuplot(int flags, child *c, char *err, size_t errlen)
{
    c->pid = -1;
    c->in = c->out = c->err = -1;
    tl_plot_reap();
    const char *path = tl_plot_gnuplot(err, errlen);
    if (!path) return TL_PLOT_ENOTFOUND;

    int sv[2] = {-1, -1}, op[2] = {-1, -1}, ep[2] = {-1, -1};
    int window = (flags & TL_PLOT_WINDOW) != 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
        (!window && (pipe2(op, O_CLOEXEC) != 0 || pipe2(ep, O_CLOEXEC) != 0))) {
        snprintf(err, errlen, "cannot create pipes for gnuplot: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            close_fd(&sv[i]);
            close_fd(&op[i]);
            close_fd(&ep[i]);
        }
        return TL_PLOT_ESYS;
    }
    /* Room for a whole frame, so live updates rarely need a second write. */
    int sndbuf = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    shutdown(sv[0], SHUT_RD);

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
    if (!window) {
        posix_spawn_file_actions_adddup2(&fa, op[1], 1);
        posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
    }
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGINT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    /* Own process group: Ctrl-C at the prompt interrupts training, not plots. */
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);
    char *argv[] = {(char *)"gnuplot", window ? (char *)"-persist" : NULL, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close_fd(&sv[1]);
    close_fd(&op[1]);
    close_fd(&ep[1]);
    if (rc != 0) {
        close_fd(&sv[0]);
        close_fd(&op[0]);
        close_fd(&ep[0]);
        if (rc == ENOENT || rc == EACCES || rc == ENOEXEC) {
            snprintf(
                err, errlen,
                "gnuplot not found: cannot run '%s' (%s); install gnuplot-nox — plots disabled",
                path, strerror(rc));
            return TL_PLOT_ENOTFOUND;
        }
        snprintf(err, errlen, "cannot start gnuplot '%s': %s", path, strerror(rc));
        return TL_PLOT_ESYS;
    }
    c->pid = pid;
    c->in = sv[0];
    c->out = op[0];
    c->err = ep[0];
    return TL_PLOT_OK;
}

/* Describe a wait status; returns the TL_PLOT code it maps to. */
static int exit_code(int st, const char *stderr_text, size_t stderr_len, char *err, size_t errlen)
{
    char tail[400];
    tail_lines(stderr_text, stderr_len, tail, sizeof tail);
    if (WIFSIGNALED(st)) {
        snprintf(err, errlen, "gnuplot crashed (signal %d)%s%s", WTERMSIG(st), tail[0] ? ": " : "",
                 tail);
        return TL_PLOT_ECRASH;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
        snprintf(err, errlen, "gnuplot could not be executed (exit status 127)");
        return TL_PLOT_ENOTFOUND;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
        snprintf(err, errlen, "gnuplot error: %s", tail[0] ? tail : "exit status != 0");
        return TL_PLOT_EERROR;
    }
    return TL_PLOT_OK;
}

/* Wait for pid until the deadline, then SIGKILL it. Returns 1 with *st when
 * it exited by itself, 0 when it was killed (or could not be waited for). */
static int wait_until(pid_t pid, double deadline, int *st)
{
    for (;;) {
        pid_t r = waitpid(pid, st, WNOHANG);
        if (r == pid) return 1;
        if (r < 0 && errno == ECHILD) { /* reaped elsewhere (a SIGCHLD handler) */
            *st = 0;
            return 1;
        }
        if (r < 0 && errno != EINTR) return 0;
        if (now_s() >= deadline) break;
        sleep_ms(2);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, st, 0) < 0 && errno == EINTR) {}
    return 0;
}

/* Read what is available on *fd into b (until EAGAIN or EOF; EOF closes). */
static void read_avail(int *fd, tl_plot_buf *b)
{
    char tmp[16384];
    for (;;) {
        ssize_t n = read(*fd, tmp, sizeof tmp);
        if (n > 0) {
            tl_plot_buf_add(b, tmp, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        close_fd(fd);
        return;
    }
}

/* ---- one-shot ----------------------------------------------------------- */

int tl_plot_run(const char *script, size_t len, int flags, double timeout_s, char **out,
                size_t *out_len, char *err, size_t errlen)
{
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    err[0] = '\0';
    child c;
    int rc = spawn_gnuplot(flags, &c, err, errlen);
    if (rc != TL_PLOT_OK) return rc;
    set_nonblock(c.in);
    if (c.out >= 0) set_nonblock(c.out);
    if (c.err >= 0) set_nonblock(c.err);

    /* gnuplot prints the marker (stderr) only if it got to the end of the
     * script: an exit status of 0 alone does not prove the figure is done. */
    static const char marker[] = "\nset print\nprint 'tl_plot: done'\n";
    char *full = malloc(len + sizeof marker);
    if (!full) {
        snprintf(err, errlen, "out of memory");
        kill(c.pid, SIGKILL);
        close_fd(&c.in);
        close_fd(&c.out);
        close_fd(&c.err);
        int st;
        waitpid(c.pid, &st, 0);
        return TL_PLOT_ESYS;
    }
    memcpy(full, script, len);
    memcpy(full + len, marker, sizeof marker - 1);
    script = full;
    len += (flags & TL_PLOT_WINDOW) ? 0 : sizeof marker - 1;

    tl_plot_buf ob = {0}, eb = {0};
    double deadline = now_s() + timeout_s;
    size_t off = 0;
    int timed_out = 0;
    /* Write and read together: gnuplot may fill its stdout pipe (a big svg)
     * before it has read all of its input. */
    for (;;) {
        if (c.in >= 0 && off == len) close_fd(&c.in);
        struct pollfd fds[3];
        int n = 0, iin = -1, iout = -1, ierr = -1;
        if (c.in >= 0) fds[iin = n++] = (struct pollfd){c.in, POLLOUT, 0};
        if (c.out >= 0) fds[iout = n++] = (struct pollfd){c.out, POLLIN, 0};
        if (c.err >= 0) fds[ierr = n++] = (struct pollfd){c.err, POLLIN, 0};
        if (n == 0) break;
        double left = deadline - now_s();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        int pr = poll(fds, (nfds_t)n, (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR) break;
        if (pr <= 0) continue;
        if (iin >= 0 && fds[iin].revents) {
            ssize_t w = send(c.in, script + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                close_fd(&c.in);
        }
        if (iout >= 0 && fds[iout].revents) read_avail(&c.out, &ob);
        if (ierr >= 0 && fds[ierr].revents) read_avail(&c.err, &eb);
        if (flags & TL_PLOT_WINDOW && c.in < 0) break;
    }
    close_fd(&c.in);
    close_fd(&c.out);
    close_fd(&c.err);

    int st = 0;
    if (flags & TL_PLOT_WINDOW) {
        /* The window outlives the call; catch only an immediate failure. */
        double d = now_s() + 0.3;
        pid_t r = 0;
        while ((r = waitpid(c.pid, &st, WNOHANG)) == 0 && now_s() < d) sleep_ms(5);
        if (r == c.pid)
            rc = exit_code(st, NULL, 0, err, errlen);
        else
            detach_pid(c.pid);
        if (rc == TL_PLOT_EERROR)
            snprintf(err, errlen, "gnuplot could not open a window (see its message above)");
    } else if (!wait_until(c.pid, timed_out ? 0 : deadline, &st) || timed_out) {
        snprintf(err, errlen, "gnuplot did not finish within %g s and was stopped", timeout_s);
        rc = TL_PLOT_ECRASH;
    } else {
        char *done = eb.data ? strstr(eb.data, "tl_plot: done") : NULL;
        if (done) eb.len = (size_t)(done - eb.data);
        rc = exit_code(st, eb.data, eb.len, err, errlen);
        if (rc == TL_PLOT_OK && !done) {
            snprintf(err, errlen, "gnuplot exited before finishing the plot");
            rc = TL_PLOT_ECRASH;
        }
    }
    if (rc == TL_PLOT_OK && (ob.oom || eb.oom)) {
        snprintf(err, errlen, "out of memory reading gnuplot output");
        rc = TL_PLOT_ESYS;
    }
    if (rc == TL_PLOT_OK && out && (flags & TL_PLOT_CAPTURE)) {
        if (!ob.data) tl_plot_buf_add(&ob, "", 0);
        if (ob.oom) {
            snprintf(err, errlen, "out of memory reading gnuplot output");
            rc = TL_PLOT_ESYS;
        } else {
            *out = ob.data;
            if (out_len) *out_len = ob.len;
            ob.data = NULL;
        }
    }
    tl_plot_buf_free(&ob);
    tl_plot_buf_free(&eb);
    free(full);
    return rc;
}

/* ---- terminals ---------------------------------------------------------- */

static int query_terminals(void)
{
    if (g_terminals) return TL_PLOT_OK; /* failures are not cached: gnuplot may appear */
    static const char q[] = "set print '-'\nprint GPVAL_TERMINALS\n";
    char err[512];
    char *out = NULL;
    int rc = tl_plot_run(q, sizeof q - 1, TL_PLOT_CAPTURE, 10.0, &out, NULL, err, sizeof err);
    if (rc != TL_PLOT_OK) return rc;
    g_terminals = out;
    return TL_PLOT_OK;
}

int tl_plot_has_terminal(const char *name)
{
    int rc = query_terminals();
    if (rc != TL_PLOT_OK) return rc;
    size_t n = strlen(name);
    for (const char *p = g_terminals; (p = strstr(p, name)) != NULL; p += n) {
        int start = p == g_terminals || p[-1] == ' ' || p[-1] == '\n';
        int end = p[n] == '\0' || p[n] == ' ' || p[n] == '\n';
        if (start && end) return 1;
    }
    return 0;
}

int tl_plot_have_display(void)
{
    const char *d = getenv("DISPLAY"), *w = getenv("WAYLAND_DISPLAY");
    return (d && *d) || (w && *w);
}

const char *tl_plot_window_terminal(void)
{
    static const char *const wins[] = {"qt", "wxt", "x11"};
    for (size_t i = 0; i < sizeof wins / sizeof wins[0]; i++)
        if (tl_plot_has_terminal(wins[i]) == 1) return wins[i];
    return NULL;
}

int tl_plot_is_window(const char *t)
{
    return t && (!strcmp(t, "qt") || !strcmp(t, "wxt") || !strcmp(t, "x11"));
}

int tl_plot_tty_columns(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int v = c ? atoi(c) : 0;
    return v >= 20 ? v : 80;
}

int tl_plot_terminal_cmd(tl_plot_buf *b, const char *t, int w, int h, const char *file, int color,
                         char *err, size_t errlen)
{
    if (!strcmp(t, "dumb")) {
        if (w <= 0) w = tl_plot_tty_columns() - 1;
        if (h <= 0) h = 24;
        tl_plot_buf_printf(b, "set terminal dumb size %d,%d noenhanced %s\n", w, h,
                           color ? "ansi" : "mono");
    } else if (!strcmp(t, "svg")) {
        tl_plot_buf_printf(b,
                           "set terminal svg size %d,%d noenhanced font 'Arial,12' "
                           "background rgb 'white'\n",
                           w > 0 ? w : 800, h > 0 ? h : 600);
    } else if (!strcmp(t, "png") || !strcmp(t, "pdf")) {
        int pdf = t[1] == 'd';
        const char *cairo = pdf ? "pdfcairo" : "pngcairo";
        int has = tl_plot_has_terminal(cairo);
        if (has < 0) {
            snprintf(err, errlen, "cannot query gnuplot terminals");
            return TL_PLOT_EERROR;
        }
        if (!has && (pdf || tl_plot_has_terminal("png") != 1)) {
            snprintf(err, errlen, "this gnuplot has no %s terminal", pdf ? "pdf" : "png");
            return TL_PLOT_EERROR;
        }
        w = w > 0 ? w : 800;
        h = h > 0 ? h : 600;
        if (pdf)
            tl_plot_buf_printf(b, "set terminal pdfcairo size %.2fin,%.2fin noenhanced\n",
                               w / 100.0, h / 100.0);
        else
            tl_plot_buf_printf(b, "set terminal %s size %d,%d noenhanced\n",
                               has ? "pngcairo" : "png", w, h);
    } else if (tl_plot_is_window(t)) {
        int has = tl_plot_has_terminal(t);
        if (has != 1) {
            snprintf(err, errlen, "this gnuplot has no %s terminal%s", t,
                     has < 0 ? "" : " (install gnuplot-qt or gnuplot-x11)");
            return TL_PLOT_EERROR;
        }
        tl_plot_buf_printf(b, "set terminal %s size %d,%d noenhanced\n", t, w > 0 ? w : 800,
                           h > 0 ? h : 600);
    } else {
        snprintf(err, errlen, "unknown terminal '%s'", t);
        return TL_PLOT_EERROR;
    }
    if (file) {
        tl_plot_buf_add(b, "set output ", 11);
        tl_plot_buf_quote(b, file);
        tl_plot_buf_add(b, "\n", 1);
    } else if (!tl_plot_is_window(t)) {
        tl_plot_buf_add(b, "set output\n", 11);
    }
    return TL_PLOT_OK;
}

/* ---- long-lived process ------------------------------------------------- */

struct tl_plot {
    child c;
    int flags;
    int dead;
    char *pending; /* unsent tail of the last frame */
    size_t pending_len, pending_off, pending_cap;
    char errmsg[512];
    tl_plot_buf errbuf; /* recent stderr */
};

tl_plot *tl_plot_open(int flags, int *code, char *err, size_t errlen)
{
    tl_plot *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        if (code) *code = TL_PLOT_ESYS;
        return NULL;
    }
    int rc = spawn_gnuplot(flags, &p->c, err, errlen);
    if (rc != TL_PLOT_OK) {
        free(p);
        if (code) *code = rc;
        return NULL;
    }
    p->flags = flags;
    set_nonblock(p->c.in);
    if (p->c.out >= 0) set_nonblock(p->c.out);
    if (p->c.err >= 0) set_nonblock(p->c.err);
    if (code) *code = TL_PLOT_OK;
    return p;
}

int tl_plot_alive(tl_plot *p)
{
    if (p->dead) return 0;
    int st;
    pid_t r = waitpid(p->c.pid, &st, WNOHANG);
    if (r == 0) return 1;
    p->dead = 1;
    if (r == p->c.pid) {
        tl_plot_drain(p, NULL);
        if (exit_code(st, p->errbuf.data, p->errbuf.len, p->errmsg, sizeof p->errmsg) == TL_PLOT_OK)
            snprintf(p->errmsg, sizeof p->errmsg, "gnuplot exited");
    } else {
        snprintf(p->errmsg, sizeof p->errmsg, "gnuplot process lost");
    }
    return 0;
}

const char *tl_plot_error(const tl_plot *p) { return p->errmsg; }

/* Send as much of the pending frame as the socket takes. 0 when all sent,
 * 1 when some is left, -1 when gnuplot is gone. */
static int flush_pending(tl_plot *p)
{
    while (p->pending_off < p->pending_len) {
        ssize_t w = send(p->c.in, p->pending + p->pending_off, p->pending_len - p->pending_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p->pending_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && errno == EAGAIN) {
            return 1;
        } else {
            return -1;
        }
    }
    p->pending_len = p->pending_off = 0;
    return 0;
}

static int mark_dead(tl_plot *p)
{
    if (tl_plot_alive(p)) { /* EPIPE but still running: stdin closed on its side */
        p->dead = 1;
        snprintf(p->errmsg, sizeof p->errmsg, "gnuplot stopped reading its input");
    }
    return TL_PLOT_ECRASH;
}

int tl_plot_ready(tl_plot *p)
{
    if (p->dead || !tl_plot_alive(p)) return TL_PLOT_ECRASH;
    int fr = flush_pending(p);
    if (fr < 0) return mark_dead(p);
    if (fr > 0) return 0;
    /* Bytes of the previous frame gnuplot has not read yet: it is still
     * drawing, so a new frame would only queue behind it. */
    int queued = 0;
    if (ioctl(p->c.in, SIOCOUTQ, &queued) == 0 && queued > 0) return 0;
    return 1;
}

int tl_plot_wait_ready(tl_plot *p, double timeout_s)
{
    struct timespec t0, t, nap = {0, 2000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int ready = tl_plot_ready(p);
        if (ready != 0) return ready;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) > timeout_s) return 0;
        nanosleep(&nap, NULL);
    }
}

int tl_plot_send(tl_plot *p, const char *frame, size_t n)
{
    int ready = tl_plot_ready(p);
    if (ready < 0) return ready;
    if (ready == 0) return TL_PLOT_BUSY;
    if (p->pending_cap < n) {
        char *np = realloc(p->pending, n);
        if (!np) return TL_PLOT_BUSY;
        p->pending = np;
        p->pending_cap = n;
    }
    memcpy(p->pending, frame, n);
    p->pending_len = n;
    p->pending_off = 0;
    if (flush_pending(p) < 0) return mark_dead(p);
    return TL_PLOT_SENT;
}

int tl_plot_wait_output(tl_plot *p, const char *marker, double timeout_s, tl_plot_buf *out)
{
    size_t mlen = strlen(marker);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (p->dead) return TL_PLOT_ECRASH;
        if (flush_pending(p) < 0) return mark_dead(p);
        if (p->c.out < 0) return TL_PLOT_ECRASH;
        read_avail(&p->c.out, out);
        if (p->c.err >= 0) read_avail(&p->c.err, &p->errbuf);
        if (out->oom) return TL_PLOT_ESYS;
        if (out->len >= mlen) {
            char *hit = NULL;
            for (size_t i = 0; i + mlen <= out->len; i++)
                if (memcmp(out->data + i, marker, mlen) == 0) {
                    hit = out->data + i;
                    break;
                }
            if (hit) {
                size_t k = 0, n = (size_t)(hit - out->data);
                for (size_t i = 0; i < n; i++)
                    if (out->data[i] != '\f') out->data[k++] = out->data[i];
                out->len = k;
                out->data[k] = '\0';
                return TL_PLOT_OK;
            }
        }
        if (!tl_plot_alive(p)) return TL_PLOT_ECRASH;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9 >
            timeout_s)
            return TL_PLOT_ECRASH;
        struct pollfd pf = {p->c.out, POLLIN, 0};
        poll(&pf, 1, 20);
    }
}

size_t tl_plot_drain(tl_plot *p, FILE *to)
{
    size_t total = 0;
    if (p->c.out >= 0) {
        tl_plot_buf ob = {0};
        read_avail(&p->c.out, &ob);
        size_t k = 0; /* the dumb terminal starts each page with a form feed */
        for (size_t i = 0; i < ob.len; i++)
            if (ob.data[i] != '\f') ob.data[k++] = ob.data[i];
        ob.len = k;
        if (ob.len && to) {
            fwrite(ob.data, 1, ob.len, to);
            fflush(to);
        }
        total = ob.len;
        tl_plot_buf_free(&ob);
    }
    if (p->c.err >= 0) {
        read_avail(&p->c.err, &p->errbuf);
        /* Keep only the recent part: warnings accumulate over a long run. */
        if (p->errbuf.len > 8192) {
            size_t keep = 4096;
            memmove(p->errbuf.data, p->errbuf.data + p->errbuf.len - keep, keep);
            p->errbuf.len = keep;
            p->errbuf.data[keep] = '\0';
        }
    }
    return total;
}

void tl_plot_close(tl_plot *p, FILE *to, double timeout_s)
{
    if (!p) return;
    double deadline = now_s() + timeout_s;
    if (!p->dead) {
        /* Finish the frame in flight so gnuplot sees whole commands. */
        while (p->c.in >= 0 && now_s() < deadline) {
            int fr = flush_pending(p);
            if (fr <= 0) break;
            struct pollfd pf = {p->c.in, POLLOUT, 0};
            poll(&pf, 1, 20);
            tl_plot_drain(p, to);
        }
    }
    close_fd(&p->c.in);
    if (p->flags & TL_PLOT_WINDOW) {
        if (tl_plot_alive(p)) detach_pid(p->c.pid);
    } else {
        while (p->c.out >= 0 && now_s() < deadline) {
            struct pollfd pf = {p->c.out, POLLIN, 0};
            poll(&pf, 1, 20);
            tl_plot_drain(p, to);
        }
        if (!p->dead) {
            int st;
            wait_until(p->c.pid, deadline, &st);
        }
    }
    close_fd(&p->c.out);
    close_fd(&p->c.err);
    free(p->pending);
    tl_plot_buf_free(&p->errbuf);
    free(p);
}
