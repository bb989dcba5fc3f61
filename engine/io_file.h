/* io_file.h — whole files for io.c: written atomically (a temporary file
 * beside the target, fsync'ed, renamed over it) and read whole, with
 * messages that name the path and the errno text.
 *
 * Split from io.c, which is about the checkpoint format; checkpoints and
 * prediction files both go through here.
 */
#ifndef TL_IO_FILE_H
#define TL_IO_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core.h"

/* Write p[0..n) to path through a temporary file in the same directory,
 * flushed and fsync'ed, renamed over path, the directory fsync'ed. On
 * failure TL_ERR_IO (TL_ERR_NOMEM when memory runs out) with the path and the
 * errno text; the temporary is removed and a file at path left untouched.
 * Signals with a handler do not stop it (EINTR and short writes are
 * resumed); a process killed before the rename leaves path as it was and a
 * stale path.tmp.XXXXXX, which nothing reads. A symbolic link at path is
 * followed: the file at the end of the chain is replaced and the link kept.
 * A directory, device or FIFO there is refused (TL_ERR_IO) and left alone. */
tl_status tl_io_write_atomic(const char *path, const uint8_t *p, size_t n);
/* Stale temporaries of killed saves, <target>.tmp.XXXXXX last changed before
 * `t` (the process's start in seconds since the epoch, with its fraction,
 * given by the program once), are removed by the next save to the same
 * target. */
void tl_io_set_process_start(double t);

/* Read the whole regular file at path into a new buffer (*out, tl_free;
 * *n bytes). Opened without blocking and refused unless a regular file. */
tl_status tl_io_read_file(const char *path, uint8_t **out, size_t *n);

/* The process's umask, read without changing it (umask(2) can only set it,
 * which would race with other threads): /proc/self/status, else 022. For
 * files written through a temporary of mode 0600 (mkstemp). */
mode_t tl_io_umask(void);
/* TL_ERR_IO with "path: what: errno text", and a hint when the disk or a
 * file size limit ran out. Returns TL_ERR_IO. */
tl_status tl_io_fail(const char *path, const char *what, int err);

#endif
