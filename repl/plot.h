/* plot.h — gnuplot child processes and terminals.
 *
 * gnuplot runs as a child process (posix_spawn, its own process group so
 * Ctrl-C at the prompt does not kill it) reading commands from a socket pair
 * on its stdin. Writes use send(MSG_NOSIGNAL), so a gnuplot that exits or
 * crashes never raises SIGPIPE in towerlab; the process-wide SIGPIPE
 * disposition is left alone. Only pids started here are ever waited for.
 *
 * Two ways to use it:
 * - tl_plot_run(): one figure, one process. Writes the script, closes stdin,
 *   collects stdout (text or svg) and stderr, waits for the exit (bounded by
 *   a timeout). Window terminals are detached instead: the window stays open
 *   and the process is reaped later by tl_plot_reap().
 * - tl_plot_open()/tl_plot_send()/tl_plot_close(): one long-lived process for
 *   live plots. tl_plot_send() never blocks: it sends a frame only when
 *   gnuplot has consumed the previous one, otherwise reports TL_PLOT_BUSY.
 *
 * This module uses libc only (no Lua, no engine), so a C test can link it.
 * Not thread-safe: call from the REPL thread.
 */
#ifndef TL_PLOT_H
#define TL_PLOT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Return codes (0 = success). */
enum {
    TL_PLOT_OK = 0,
    TL_PLOT_ENOTFOUND = -1, /* no gnuplot executable */
    TL_PLOT_ECRASH = -2,    /* gnuplot died from a signal or timed out */
    TL_PLOT_EERROR = -3,    /* gnuplot reported an error (message in err) */
    TL_PLOT_ESYS = -4       /* pipe/spawn/memory failure */
};

/* ---- script buffers ---------------------------------------------------- */

/* A growable text buffer. Zero-initialise; free with tl_plot_buf_free.
 * On allocation failure `oom` is set and later appends are dropped. */
typedef struct {
    char *data;
    size_t len, cap;
    int oom;
} tl_plot_buf;

void tl_plot_buf_printf(tl_plot_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void tl_plot_buf_vprintf(tl_plot_buf *b, const char *fmt, va_list ap);
void tl_plot_buf_add(tl_plot_buf *b, const char *s, size_t n);
/* Append a string literal. */
#define tl_plot_buf_add_lit(b, s) tl_plot_buf_add((b), (s), sizeof(s) - 1)
/* A number in gnuplot data syntax ("%.9g"; NaN/Inf as "NaN", a missing point). */
void tl_plot_buf_num(tl_plot_buf *b, double v);
/* `s` as a gnuplot single-quoted string (quotes doubled, newlines dropped). */
void tl_plot_buf_quote(tl_plot_buf *b, const char *s);
void tl_plot_buf_reset(tl_plot_buf *b);
void tl_plot_buf_free(tl_plot_buf *b);

/* ---- gnuplot and terminals --------------------------------------------- */

/* Use `path` as the gnuplot executable (NULL: back to the default, which is
 * $TL_GNUPLOT when set, else "gnuplot" searched in $PATH). Clears the cached
 * terminal list. */
void tl_plot_set_gnuplot(const char *path);

/* The resolved gnuplot executable, or NULL with a message in err. The
 * returned string is static, valid until the next call. */
const char *tl_plot_gnuplot(char *err, size_t errlen);

/* 1 if this gnuplot has terminal `name`, 0 if not, TL_PLOT_E* if gnuplot
 * cannot be run. The list is queried once (GPVAL_TERMINALS) and cached. */
int tl_plot_has_terminal(const char *name);

/* 1 when $DISPLAY or $WAYLAND_DISPLAY is set (and non-empty). */
int tl_plot_have_display(void);

/* The first window terminal this gnuplot has ("qt", "wxt", "x11"), or NULL. */
const char *tl_plot_window_terminal(void);

/* 1 for qt, wxt, x11. */
int tl_plot_is_window(const char *terminal);

/* Append "set terminal ...\nset output ...\n" for `terminal` ("dumb", "svg",
 * "png", "pdf", "qt", "wxt", "x11") at the given size (pixels; characters
 * for dumb; 0 = default), writing to `file` (NULL: stdout or the window).
 * `color` selects ANSI colours for dumb. png/pdf use the cairo terminals
 * when present. Returns TL_PLOT_OK or TL_PLOT_EERROR (unknown terminal or
 * not available in this gnuplot) with a message in err. */
int tl_plot_terminal_cmd(tl_plot_buf *b, const char *terminal, int width, int height,
                         const char *file, int color, char *err, size_t errlen);

/* Columns of the terminal on stdout ($COLUMNS, else 80 when not a tty). */
int tl_plot_tty_columns(void);

/* ---- one-shot figures --------------------------------------------------- */

enum {
    TL_PLOT_CAPTURE = 1, /* collect stdout into *out (dumb text, svg) */
    TL_PLOT_WINDOW = 2   /* window terminal: -persist, inherit stdio, detach */
};

/* Run gnuplot on `script` (len bytes). With TL_PLOT_CAPTURE, *out receives
 * a malloc'd NUL-terminated copy of gnuplot's stdout (caller frees) and
 * *out_len its length; otherwise out may be NULL. Returns TL_PLOT_OK or a
 * TL_PLOT_E* code with a message in err. gnuplot's own error text (stderr)
 * is part of the message. Waits at most `timeout_s` seconds, then kills. */
int tl_plot_run(const char *script, size_t len, int flags, double timeout_s, char **out,
                size_t *out_len, char *err, size_t errlen);

/* Reap finished detached children (non-blocking). Called by every entry point. */
void tl_plot_reap(void);

/* ---- long-lived process (live plots) ------------------------------------ */

typedef struct tl_plot tl_plot;

/* Start gnuplot. flags: TL_PLOT_WINDOW as above; otherwise stdout is read
 * back through a non-blocking pipe (tl_plot_drain). NULL on failure with
 * *code set to a TL_PLOT_E* value and a message in err. */
tl_plot *tl_plot_open(int flags, int *code, char *err, size_t errlen);

enum {
    TL_PLOT_SENT = 1, /* the frame was handed to gnuplot (maybe partly buffered) */
    TL_PLOT_BUSY = 0  /* gnuplot still busy with the previous frame: skipped */
};
/* Send one frame without blocking. Returns TL_PLOT_SENT, TL_PLOT_BUSY, or
 * TL_PLOT_ECRASH when gnuplot has exited (message in tl_plot_error()). A
 * frame that does not fit the socket buffer at once is kept and finished by
 * later calls, so gnuplot never sees half a frame followed by another. */
int tl_plot_send(tl_plot *p, const char *frame, size_t n);

/* 1 when a frame sent now would go out at once (nothing pending, gnuplot
 * has read everything sent so far), 0 when busy, TL_PLOT_ECRASH when gone.
 * Lets callers skip building a frame that tl_plot_send would drop. */
int tl_plot_ready(tl_plot *p);

/* tl_plot_ready, waiting up to timeout_s for gnuplot to read what it was
 * sent (a frame that must not be skipped, such as a fit's last). */
int tl_plot_wait_ready(tl_plot *p, double timeout_s);

/* Copy what gnuplot printed on stdout so far to `to` (non-blocking), and
 * keep stderr's last line for tl_plot_error(). Returns bytes copied. */
size_t tl_plot_drain(tl_plot *p, FILE *to);

/* Read gnuplot's stdout into `out` until `marker` appears (the frame ended
 * with `set print "-"; print "<marker>"`), sending what is still pending.
 * On TL_PLOT_OK `out` holds the text before the marker, form feeds removed;
 * TL_PLOT_ECRASH when gnuplot is gone or `timeout_s` passed. */
int tl_plot_wait_output(tl_plot *p, const char *marker, double timeout_s, tl_plot_buf *out);

/* 1 while the child is running. */
int tl_plot_alive(tl_plot *p);

/* Last error text (gnuplot's stderr or exit status); "" when none. */
const char *tl_plot_error(const tl_plot *p);

/* Finish: close gnuplot's stdin, wait up to `timeout_s` for it to exit while
 * copying its stdout to `to` (may be NULL), then kill it. Window processes
 * are detached instead. Frees p; NULL is a no-op. */
void tl_plot_close(tl_plot *p, FILE *to, double timeout_s);

#endif
