/* io_file.c — atomic file replacement and whole-file reads (io_file.h). */
#include "io_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The process's umask, read without changing it (umask(2) can only set it,
 * which would race with other threads): /proc/self/status, else 022. */
mode_t tl_io_umask(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    unsigned mask = 022;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &mask) == 1) break;
    if (f) fclose(f);
    return (mode_t)(mask & 0777);
}

/* "path: what: errno text", with what the limit is when the disk or a
 * limit ran out (ulimit -f gives EFBIG once SIGXFSZ is ignored). */
tl_status tl_io_fail(const char *path, const char *what, int err)
{
    const char *hint = err == EFBIG || err == EDQUOT ? " (disk quota / file size limit reached; "
                                                       "the previous file is intact)"
                       : err == ENOSPC ? " (disk full; the previous file is intact)"
                                       : "";
    return tl_fail(TL_ERR_IO, "%s: %s: %s%s", path, what, strerror(err), hint);
}

static double process_start; /* tl_io_set_process_start; 0 = no clean-up of temporaries */

void tl_io_set_process_start(double t) { process_start = t; }

#define MAX_SYMLINKS 40

/* The file a save to `path` writes: path itself, or the end of its chain of
 * symbolic links (so that a link is followed, not replaced). A new string
 * (tl_free), or NULL with the error recorded and its status in *status. */
static char *resolve_target(const char *path, tl_status *status)
{
    *status = TL_ERR_NOMEM;
    char *cur = tl_strdup(path, "checkpoint file name");
    for (int hops = 0; cur; hops++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
        if (hops == MAX_SYMLINKS) {
            tl_free(cur);
            *status = tl_io_fail(path, "cannot follow its symbolic links", ELOOP);
            return NULL;
        }
        size_t cap = (size_t)st.st_size + 1 > 256 ? (size_t)st.st_size + 1 : 256;
        char *link = tl_malloc(cap, "symbolic link");
        ssize_t k = link ? readlink(cur, link, cap - 1) : -1;
        if (k < 0) {
            if (link) *status = tl_io_fail(path, "cannot read its symbolic link", errno);
            tl_free(link);
            tl_free(cur);
            return NULL;
        }
        link[k] = '\0';
        char *slash = strrchr(cur, '/');
        if (link[0] == '/' || !slash) {
            tl_free(cur);
            cur = link;
        } else { /* relative to the link's directory */
            size_t dir = (size_t)(slash - cur) + 1;
            char *next = tl_malloc(dir + (size_t)k + 1, "checkpoint file name");
            if (next) {
                memcpy(next, cur, dir);
                memcpy(next + dir, link, (size_t)k + 1);
            }
            tl_free(link);
            tl_free(cur);
            cur = next;
        }
    }
    return NULL;
}

/* Remove `target`.tmp.XXXXXX files that a killed save left: regular files
 * of exactly that name pattern whose last change is older than this process
 * (a save in progress elsewhere keeps writing, so its file is newer). Only
 * when tl_io_set_process_start was called. Failures are ignored. */
static void remove_stale_temporaries(const char *target)
{
    if (process_start == 0) return;
    const char *slash = strrchr(target, '/');
    const char *base = slash ? slash + 1 : target;
    size_t dirlen = slash ? (size_t)(slash - target) + 1 : 0, blen = strlen(base);
    char *dirname = tl_malloc(dirlen + 2, "directory name");
    if (!dirname) {
        tl_clear_error();
        return;
    }
    if (dirlen) memcpy(dirname, target, dirlen);
    else dirname[dirlen++] = '.';
    dirname[dirlen] = '\0';
    DIR *dir = opendir(dirname);
    struct dirent *e;
    while (dir && (e = readdir(dir)) != NULL) {
        const char *nm = e->d_name;
        if (strncmp(nm, base, blen) != 0 || strncmp(nm + blen, ".tmp.", 5) != 0 ||
            strlen(nm + blen + 5) != 6)
            continue;
        struct stat st;
        if (fstatat(dirfd(dir), nm, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec < process_start)
            (void)unlinkat(dirfd(dir), nm, 0);
    }
    if (dir) closedir(dir);
    tl_free(dirname);
}

/* Write p[0..n) to path through a temporary file in the same directory.
 * Signals with a handler do not stop it (EINTR and short writes are resumed);
 * a process killed before the rename leaves path as it was and a stale
 * path.tmp.XXXXXX, which nothing reads and the next save to path in a later
 * process removes. A symbolic link at path is followed (the file it points to
 * is replaced); anything at the end that is not a regular file (a device, a
 * FIFO, a directory) is refused and left alone. */
tl_status tl_io_write_atomic(const char *user_path, const uint8_t *p, size_t n)
{
    tl_status rs;
    char *path = resolve_target(user_path, &rs);
    if (!path) return rs;
    struct stat tst;
    if (stat(path, &tst) == 0 && !S_ISREG(tst.st_mode)) {
        tl_status s = S_ISDIR(tst.st_mode)
                          ? tl_io_fail(user_path, "cannot replace it", EISDIR)
                          : tl_fail(TL_ERR_IO, "%s: not a regular file (a device or FIFO); m:save "
                                               "writes only regular files", user_path);
        tl_free(path);
        return s;
    }
    remove_stale_temporaries(path);
    size_t len = strlen(path);
    char *tmp = tl_malloc(len + 16, "checkpoint file name");
    if (!tmp) {
        tl_free(path);
        return TL_ERR_NOMEM;
    }
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        tl_status s = tl_io_fail(user_path, "cannot create a temporary file next to it", errno);
        tl_free(tmp);
        tl_free(path);
        return s;
    }
    const char *what = NULL;
    int err = 0;
    (void)fchmod(fd, 0666 & ~tl_io_umask()); /* as open(2) would make it; mkstemp gives 0600 */
    for (size_t done = 0; done < n && !what;) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err = w < 0 ? errno : ENOSPC;
            what = "write failed";
        } else {
            done += (size_t)w;
        }
    }
    if (!what) {
        int r;
        while ((r = fsync(fd)) != 0 && errno == EINTR) {}
        if (r != 0) {
            err = errno;
            what = "fsync failed";
        }
    }
    /* After EINTR Linux has closed fd, and fsync has already made the data
     * durable: only other errors count. */
    if (close(fd) != 0 && errno != EINTR && !what) {
        err = errno;
        what = "close failed";
    }
    if (!what && rename(tmp, path) != 0) {
        err = errno;
        what = "cannot replace it";
    }
    tl_free(path);
    if (what) {
        unlink(tmp);
        tl_free(tmp);
        return tl_io_fail(user_path, what, err);
    }
    /* Make the rename itself durable: fsync the directory. */
    char *slash = strrchr(tmp, '/');
    if (!slash)
        strcpy(tmp, ".");
    else
        slash[slash == tmp ? 1 : 0] = '\0';
    int dfd = open(tmp, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        int r;
        while ((r = fsync(dfd)) != 0 && errno == EINTR) {}
        if (r != 0 && errno != EINVAL) {
            err = errno;
            what = "replaced, but fsync of its directory failed (the new file may not survive a power loss)";
        }
        close(dfd);
    }
    tl_free(tmp);
    return what ? tl_io_fail(user_path, what, err) : TL_OK;
}

/* Read the whole file into a new buffer. The file is opened without
 * blocking (a FIFO or a device at path would otherwise wait forever for a
 * writer) and refused unless it is a regular file. */
tl_status tl_io_read_file(const char *path, uint8_t **out, size_t *n)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return tl_io_fail(path, "cannot open", errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        tl_status s = tl_io_fail(path, "cannot stat", errno);
        close(fd);
        return s;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tl_fail(TL_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)(SIZE_MAX / 2)) {
        close(fd);
        return tl_fail(TL_ERR_NOMEM, "%s: file too large to load", path);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *p = tl_malloc(size ? size : 1, "checkpoint file");
    if (!p) {
        close(fd);
        return tl_fail_context(TL_ERR_NOMEM, "%s", path);
    }
    size_t got = 0;
    int err = 0;
    while (got < size) {
        ssize_t k = read(fd, p + got, size - got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) err = errno;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    if (got != size) {
        tl_free(p);
        return err ? tl_io_fail(path, "read failed", err)
                   : tl_fail(TL_ERR_IO, "%s: file shrank while being read", path);
    }
    *out = p;
    *n = size;
    return TL_OK;
}
