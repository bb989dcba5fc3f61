/* io.c — checkpoint writing and reading (layout in io.h).
 *
 * The whole file is assembled in one buffer, checksummed, and written to a
 * temporary file that replaces the target by rename(2). Reading loads the
 * file into memory, checks magic, version, length and CRC before looking at
 * any section, then reads every value through a bounds-checked cursor. */
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "losses/weighting.h"
#include "models/model_impl.h"

static const uint8_t magic[8] = {0x89, 'T', 'L', 'M', 0x0d, 0x0a, 0x1a, 0x0a};
#define HEADER_SIZE 24u
#define SECTION_HEADER 16u
#define TAG(a, b, c, d) \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

enum { S_CONF, S_PARM, S_OPTM, S_TRNS, S_WGHT, S_HSTP, S_HEPO, S_CALB, S_COUNT };
static const uint32_t section_tags[S_COUNT] = {
    TAG('C', 'O', 'N', 'F'), TAG('P', 'A', 'R', 'M'), TAG('O', 'P', 'T', 'M'), TAG('T', 'R', 'N', 'S'),
    TAG('W', 'G', 'H', 'T'), TAG('H', 'S', 'T', 'P'), TAG('H', 'E', 'P', 'O'), TAG('C', 'A', 'L', 'B')};

static uint32_t crc_of(const uint8_t *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* ---- writing -------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int nomem;
} wbuf;

static uint8_t *wb_take(wbuf *b, size_t k)
{
    if (b->nomem) return NULL;
    if (k > SIZE_MAX / 2 - b->n) {
        tl_fail(TL_ERR_NOMEM, "checkpoint larger than memory allows");
        b->nomem = 1;
        return NULL;
    }
    if (b->n + k > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + k) cap *= 2;
        uint8_t *p = tl_realloc(b->p, cap, "checkpoint buffer");
        if (!p) {
            b->nomem = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    uint8_t *at = b->p + b->n;
    b->n += k;
    return at;
}

static void enc_u32(uint8_t *d, uint32_t v)
{
    for (int i = 0; i < 4; i++) d[i] = (uint8_t)(v >> (8 * i));
}

static void enc_u64(uint8_t *d, uint64_t v)
{
    for (int i = 0; i < 8; i++) d[i] = (uint8_t)(v >> (8 * i));
}

static void put_u32(wbuf *b, uint32_t v)
{
    uint8_t *d = wb_take(b, 4);
    if (d) enc_u32(d, v);
}

static void put_u64(wbuf *b, uint64_t v)
{
    uint8_t *d = wb_take(b, 8);
    if (d) enc_u64(d, v);
}

static void put_i32(wbuf *b, int32_t v) { put_u32(b, (uint32_t)v); }
static void put_i64(wbuf *b, int64_t v) { put_u64(b, (uint64_t)v); }

static void put_f32(wbuf *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    put_u32(b, u);
}

static void put_f64(wbuf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64(b, u);
}

static void put_f32s(wbuf *b, const float *v, size_t n)
{
    if (n > SIZE_MAX / 4) {
        b->nomem = 1;
        tl_fail(TL_ERR_NOMEM, "checkpoint larger than memory allows");
        return;
    }
    uint8_t *d = wb_take(b, n * 4);
    if (!d) return;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        enc_u32(d + 4 * i, u);
    }
}

static void put_str(wbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_u32(b, (uint32_t)n);
    uint8_t *d = wb_take(b, n);
    if (d) memcpy(d, s, n);
}

/* Start a section; returns the offset of its payload (to close it). */
static size_t begin_section(wbuf *b, int which)
{
    put_u32(b, section_tags[which]);
    put_u32(b, TL_IO_CRITICAL);
    put_u64(b, 0);
    return b->n;
}

static void end_section(wbuf *b, size_t payload)
{
    if (!b->nomem) enc_u64(b->p + payload - 8, (uint64_t)(b->n - payload));
}

static void put_mlp(wbuf *b, const tl_mlp_spec *s)
{
    put_i32(b, s->n);
    for (int i = 0; i < s->n && i < TL_MAX_LAYERS; i++) put_i32(b, s->units[i]);
    put_f32(b, s->dropout);
}

static void put_config(wbuf *b, const tl_model_config *c)
{
    const tl_backbone_spec *bb = &c->backbone;
    put_u32(b, (uint32_t)bb->kind);
    put_mlp(b, &bb->bottom);
    put_mlp(b, &bb->expert);
    put_i32(b, bb->experts);
    put_i32(b, bb->levels);
    put_i32(b, bb->shared);
    put_i32(b, bb->specific);
    put_f32(b, bb->constraint);
    put_i32(b, bb->transfer_dim);
    put_i32(b, c->n_tasks);
    for (int k = 0; k < c->n_tasks; k++) {
        const tl_task_spec *t = &c->tasks[k];
        put_str(b, t->name);
        put_u32(b, (uint32_t)t->type);
        put_mlp(b, &t->tower);
        put_f32(b, t->weight);
    }
    put_i32(b, c->n_cat);
    for (int f = 0; f < c->n_cat; f++) put_i32(b, c->vocab[f]);
    put_i32(b, c->n_num);
    put_i32(b, c->emb_dim);
    put_u32(b, (uint32_t)c->weighting);
    put_f32(b, c->gradnorm_alpha);
    put_f32(b, c->dwa_temperature);
    put_i32(b, c->max_batch);
    put_u64(b, c->seed);
    const tl_dml_spec *dm = &c->dml;
    put_i32(b, dm->enabled);
    put_i32(b, dm->ctfm);
    put_i32(b, dm->gkd);
    put_i32(b, dm->stop_grad);
    put_i32(b, dm->gkd_layers);
    put_f32(b, dm->dropout);
    const tl_distill_spec *ds = &c->distill;
    put_i32(b, ds->enabled);
    put_i32(b, ds->n_pairs);
    for (int i = 0; i < ds->n_pairs && i < TL_MAX_TASKS; i++) {
        put_i32(b, ds->pairs[i][0]);
        put_i32(b, ds->pairs[i][1]);
        put_i32(b, ds->flip[i]);
    }
    put_i32(b, ds->order);
    put_f32(b, ds->aux);
    put_f32(b, ds->kd);
    put_i32(b, ds->bce_on_aux);
    put_u32(b, (uint32_t)ds->calibrate);
    put_i32(b, ds->calib_valid);
    put_u32(b, (uint32_t)ds->correct);
    put_f32(b, ds->lambda);
    put_i32(b, ds->teacher_grad);
    put_i32(b, ds->teacher_shared);
    put_i64(b, ds->warmup);
    put_i32(b, ds->max_pairs);
    put_i32(b, ds->naive);
    for (int k = 0; k < c->n_tasks; k++) put_i32(b, c->tasks[k].space);
    put_i32(b, ds->calib_every); /* fields added later go last: older files lack them */
    put_u32(b, c->dml.gkd_tasks);
}

static void put_rng(wbuf *b, const tl_rng *r)
{
    for (int i = 0; i < 4; i++) put_u64(b, r->s[i]);
}

static void encode(wbuf *b, tl_model *m)
{
    const tl_model_config *c = &m->cfg;
    int K = c->n_tasks;
    size_t off;

    uint8_t *h = wb_take(b, HEADER_SIZE);
    if (h) {
        memcpy(h, magic, 8);
        enc_u32(h + 8, TL_IO_FORMAT_VERSION);
        enc_u32(h + 12, 0);
        enc_u64(h + 16, 0); /* length, patched at the end */
    }

    off = begin_section(b, S_CONF);
    put_config(b, c);
    end_section(b, off);

    off = begin_section(b, S_PARM);
    int np = tl_graph_param_count(m->g);
    float *params = tl_graph_params(m->g, NULL);
    put_u32(b, (uint32_t)np);
    for (int i = 0; i < np; i++) {
        const tl_param_info *p = tl_graph_param(m->g, i);
        put_str(b, p->name ? p->name : "");
        put_i32(b, p->rows);
        put_i32(b, p->cols);
        put_f32s(b, params + p->offset, (size_t)p->rows * (size_t)p->cols);
    }
    end_section(b, off);

    off = begin_section(b, S_OPTM);
    put_u32(b, m->opt ? 1 : 0);
    if (m->opt) {
        const tl_optim_config *oc = tl_optim_get_config(m->opt);
        put_u32(b, (uint32_t)oc->kind);
        put_f32(b, oc->lr);
        put_f32(b, oc->momentum);
        put_i32(b, oc->nesterov);
        put_f32(b, oc->beta1);
        put_f32(b, oc->beta2);
        put_f32(b, oc->eps);
        put_f32(b, oc->weight_decay);
        put_f32(b, oc->clip_norm);
        put_f32(b, oc->initial_accumulator);
        put_i64(b, tl_optim_steps(m->opt));
        int nb = tl_optim_state_blocks(m->opt);
        size_t floats = 0;
        tl_optim_state(m->opt, 0, &floats);
        put_u32(b, (uint32_t)nb);
        put_u64(b, floats);
        for (int i = 0; i < nb; i++) put_f32s(b, tl_optim_state(m->opt, i, NULL), floats);
        /* added later: the learning-rate schedule */
        put_u32(b, (uint32_t)oc->schedule);
        put_f32(b, oc->gamma);
        put_i64(b, oc->warmup);
        put_i64(b, oc->step_size);
        put_i64(b, oc->total);
        put_f32(b, oc->min_lr);
    }
    end_section(b, off);

    off = begin_section(b, S_TRNS);
    put_i64(b, m->step);
    put_i32(b, m->epoch);
    put_u64(b, m->batches_in_epoch);
    put_rng(b, tl_graph_rng(m->g));
    put_rng(b, &m->rng);
    end_section(b, off);

    off = begin_section(b, S_WGHT);
    put_u32(b, (uint32_t)K);
    for (int k = 0; k < K; k++) put_f32(b, m->factor[k]);
    for (int k = 0; k < K; k++) put_f64(b, m->gn_initial[k]);
    put_i32(b, m->gn_have_initial);
    for (int e = 0; e < 2; e++)
        for (int k = 0; k < K; k++) put_f64(b, m->dwa_hist[e][k]);
    put_i32(b, m->dwa_epochs);
    end_section(b, off);

    off = begin_section(b, S_HSTP);
    put_u64(b, m->n_steps_hist);
    put_u32(b, (uint32_t)K);
    for (size_t i = 0; i < m->n_steps_hist; i++) {
        const tl_step_record *r = &m->steps_hist[i];
        put_i64(b, r->step);
        put_i32(b, r->epoch);
        put_f32s(b, r->loss, (size_t)K);
        put_f32s(b, r->weight, (size_t)K);
    }
    end_section(b, off);

    off = begin_section(b, S_HEPO);
    put_u64(b, m->n_epochs_hist);
    put_u32(b, (uint32_t)K);
    for (size_t i = 0; i < m->n_epochs_hist; i++) {
        const tl_epoch_record *r = &m->epochs_hist[i];
        put_i32(b, r->epoch);
        put_i64(b, r->step);
        for (int k = 0; k < K; k++) put_f64(b, r->train_loss[k]);
        for (int k = 0; k < K; k++) put_f64(b, r->valid_metric[k]);
        for (int k = 0; k < K; k++) put_f64(b, r->valid_logloss[k]);
        put_f64(b, r->monitor);
    }
    end_section(b, off);

    /* calibrators: per task a float count, then the calibrator's serialised
     * floats (0 = none); first the output calibrators (tl.calibrate), then the
     * CrossDistil teachers' fitted calibrators */
    off = begin_section(b, S_CALB);
    for (int k = 0; k < 2 * m->cfg.n_tasks; k++) {
        const tl_calibrator *cal = k < m->cfg.n_tasks ? tl_model_calibrator(m, k)
                                                      : m->distill_task[k - m->cfg.n_tasks].cal;
        size_t len = cal ? tl_calibrator_serial_len(cal) : 0;
        float *tmp = len ? tl_malloc(len * sizeof(float), "calibrator") : NULL;
        if (len && (!tmp || tl_calibrator_serialize(cal, tmp, len) != TL_OK)) {
            tl_free(tmp);
            b->nomem = 1;
            return;
        }
        put_u32(b, (uint32_t)len);
        put_f32s(b, tmp, len);
        tl_free(tmp);
    }
    /* added later: the steps at which they were fitted (staleness) */
    for (int k = 0; k < m->cfg.n_tasks; k++) put_i64(b, m->out_cal_step[k]);
    put_i64(b, m->distill_cal_step);
    end_section(b, off);

    uint8_t *crc = wb_take(b, 4);
    if (!crc) return;
    enc_u64(b->p + 16, (uint64_t)b->n);
    enc_u32(crc, crc_of(b->p, b->n - 4));
}

/* The process's umask, read without changing it (umask(2) can only set it,
 * which would race with other threads): /proc/self/status, else 022. */
static mode_t current_umask(void)
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
static tl_status io_fail(const char *path, const char *what, int err)
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
            *status = io_fail(path, "cannot follow its symbolic links", ELOOP);
            return NULL;
        }
        size_t cap = (size_t)st.st_size + 1 > 256 ? (size_t)st.st_size + 1 : 256;
        char *link = tl_malloc(cap, "symbolic link");
        ssize_t k = link ? readlink(cur, link, cap - 1) : -1;
        if (k < 0) {
            if (link) *status = io_fail(path, "cannot read its symbolic link", errno);
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
static tl_status write_atomic(const char *user_path, const uint8_t *p, size_t n)
{
    tl_status rs;
    char *path = resolve_target(user_path, &rs);
    if (!path) return rs;
    struct stat tst;
    if (stat(path, &tst) == 0 && !S_ISREG(tst.st_mode)) {
        tl_status s = S_ISDIR(tst.st_mode)
                          ? io_fail(user_path, "cannot replace it", EISDIR)
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
        tl_status s = io_fail(user_path, "cannot create a temporary file next to it", errno);
        tl_free(tmp);
        tl_free(path);
        return s;
    }
    const char *what = NULL;
    int err = 0;
    (void)fchmod(fd, 0666 & ~current_umask()); /* as open(2) would make it; mkstemp gives 0600 */
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
        return io_fail(user_path, what, err);
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
    return what ? io_fail(user_path, what, err) : TL_OK;
}

tl_status tl_model_save(tl_model *m, const char *path)
{
    if (!m || !path || !path[0]) return tl_fail(TL_ERR_ARG, "save: needs a model and a path");
    wbuf b = {0};
    encode(&b, m);
    if (b.nomem) {
        tl_free(b.p);
        return tl_fail_context(TL_ERR_NOMEM, "save %s", path);
    }
    tl_status s = write_atomic(path, b.p, b.n);
    tl_free(b.p);
    return s;
}

/* ---- reading -------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n, pos;
    const char *bad; /* first problem, or NULL */
    char msg[160];   /* a field's message, when bad points here */
} rbuf;

static const uint8_t *take(rbuf *r, size_t k)
{
    if (r->bad) return NULL;
    if (k > r->n - r->pos) {
        r->bad = "ends early";
        return NULL;
    }
    const uint8_t *at = r->p + r->pos;
    r->pos += k;
    return at;
}

static uint32_t dec_u32(const uint8_t *d)
{
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static uint64_t dec_u64(const uint8_t *d)
{
    return (uint64_t)dec_u32(d) | (uint64_t)dec_u32(d + 4) << 32;
}

static uint32_t get_u32(rbuf *r)
{
    const uint8_t *d = take(r, 4);
    return d ? dec_u32(d) : 0;
}

static uint64_t get_u64(rbuf *r)
{
    const uint8_t *d = take(r, 8);
    return d ? dec_u64(d) : 0;
}

static int32_t get_i32(rbuf *r) { return (int32_t)get_u32(r); }
static int64_t get_i64(rbuf *r) { return (int64_t)get_u64(r); }

static float get_f32(rbuf *r)
{
    uint32_t u = get_u32(r);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static double get_f64(rbuf *r)
{
    uint64_t u = get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

static void get_f32s(rbuf *r, float *dst, size_t n)
{
    if (r->bad) return;
    if (n > (r->n - r->pos) / 4) {
        r->bad = "ends early";
        return;
    }
    const uint8_t *d = take(r, n * 4);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = dec_u32(d + 4 * i);
        memcpy(&dst[i], &u, 4);
    }
}

/* A string of at most cap-1 bytes into dst (NUL-terminated). */
static void get_str(rbuf *r, char *dst, size_t cap)
{
    uint32_t n = get_u32(r);
    dst[0] = '\0';
    if (r->bad) return;
    if (n >= cap) {
        r->bad = "has a name that is too long";
        return;
    }
    const uint8_t *d = take(r, n);
    if (!d) return;
    memcpy(dst, d, n);
    dst[n] = '\0';
    if (strlen(dst) != n) r->bad = "has a name with a NUL byte";
}

static void get_mlp(rbuf *r, tl_mlp_spec *s)
{
    s->n = get_i32(r);
    if (!r->bad && (s->n < 0 || s->n > TL_MAX_LAYERS)) {
        r->bad = "has an MLP with a layer count out of range";
        return;
    }
    for (int i = 0; i < s->n && !r->bad; i++) s->units[i] = get_i32(r);
    s->dropout = get_f32(r);
}

static void get_config(rbuf *r, tl_model_config *c)
{
    memset(c, 0, sizeof *c);
    tl_backbone_spec *bb = &c->backbone;
    bb->kind = (tl_backbone_kind)get_u32(r);
    get_mlp(r, &bb->bottom);
    get_mlp(r, &bb->expert);
    bb->experts = get_i32(r);
    bb->levels = get_i32(r);
    bb->shared = get_i32(r);
    bb->specific = get_i32(r);
    bb->constraint = get_f32(r);
    bb->transfer_dim = get_i32(r);
    c->n_tasks = get_i32(r);
    if (!r->bad && (c->n_tasks < 1 || c->n_tasks > TL_MAX_TASKS)) {
        r->bad = "has a task count out of range";
        return;
    }
    for (int k = 0; k < c->n_tasks && !r->bad; k++) {
        tl_task_spec *t = &c->tasks[k];
        get_str(r, t->name, sizeof t->name);
        t->type = (tl_task_type)get_u32(r);
        if (!r->bad && t->type != TL_TASK_BINARY && t->type != TL_TASK_REGRESSION)
            r->bad = "has an unknown task type";
        get_mlp(r, &t->tower);
        t->weight = get_f32(r);
    }
    c->n_cat = get_i32(r);
    if (!r->bad && (c->n_cat < 0 || c->n_cat > TL_MAX_FIELDS)) {
        r->bad = "has a categorical field count out of range";
        return;
    }
    for (int f = 0; f < c->n_cat && !r->bad; f++) c->vocab[f] = get_i32(r);
    c->n_num = get_i32(r);
    c->emb_dim = get_i32(r);
    c->weighting = (tl_weighting)get_u32(r);
    c->gradnorm_alpha = get_f32(r);
    c->dwa_temperature = get_f32(r);
    c->max_batch = get_i32(r);
    c->seed = get_u64(r);
    tl_dml_spec *dm = &c->dml;
    dm->enabled = get_i32(r);
    dm->ctfm = get_i32(r);
    dm->gkd = get_i32(r);
    dm->stop_grad = get_i32(r);
    dm->gkd_layers = get_i32(r);
    dm->dropout = get_f32(r);
    tl_distill_spec *ds = &c->distill;
    ds->enabled = get_i32(r);
    ds->n_pairs = get_i32(r);
    if (!r->bad && (ds->n_pairs < 0 || ds->n_pairs > TL_MAX_TASKS)) {
        r->bad = "has a distillation pair count out of range";
        return;
    }
    for (int i = 0; i < ds->n_pairs && !r->bad; i++) {
        ds->pairs[i][0] = get_i32(r);
        ds->pairs[i][1] = get_i32(r);
        ds->flip[i] = get_i32(r);
        for (int j = 0; j < 2; j++)
            if (!r->bad && (ds->pairs[i][j] < 0 || ds->pairs[i][j] >= c->n_tasks))
                r->bad = "has a distillation pair naming an unknown task";
    }
    ds->order = get_i32(r);
    ds->aux = get_f32(r);
    ds->kd = get_f32(r);
    ds->bce_on_aux = get_i32(r);
    ds->calibrate = (tl_distill_calib)get_u32(r);
    ds->calib_valid = get_i32(r);
    ds->correct = (tl_distill_correct)get_u32(r);
    ds->lambda = get_f32(r);
    ds->teacher_grad = get_i32(r);
    ds->teacher_shared = get_i32(r);
    ds->warmup = get_i64(r);
    ds->max_pairs = get_i32(r);
    ds->naive = get_i32(r);
    for (int k = 0; k < c->n_tasks; k++) {
        c->tasks[k].space = get_i32(r);
        if (!r->bad && (c->tasks[k].space < -1 || c->tasks[k].space >= c->n_tasks))
            r->bad = "has a task space naming an unknown task";
    }
    ds->calib_every = !r->bad && r->n - r->pos >= 4 ? get_i32(r) : 0;
    c->dml.gkd_tasks = !r->bad && r->n - r->pos >= 4 ? get_u32(r) : 0u;
}

/* ---- field ranges ----------------------------------------------------------
 * A checkpoint's CRC says the bytes are the ones written, not that a writer
 * (or a hand) put sane values in them. Every field is range-checked before
 * the model is built from it; the first one out of range is named. */

static void want_int(rbuf *r, const char *field, long long v, long long lo, long long hi)
{
    if (r->bad || (v >= lo && v <= hi)) return;
    snprintf(r->msg, sizeof r->msg, "has field %s = %lld outside %lld..%lld", field, v, lo, hi);
    r->bad = r->msg;
}

/* lo <= v <= hi (hi_open: v < hi), finite. */
static void want_real(rbuf *r, const char *field, double v, double lo, double hi, int hi_open)
{
    if (r->bad) return;
    if (isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi)) return;
    snprintf(r->msg, sizeof r->msg, "has field %s = %g outside [%g, %g%s", field, v, lo, hi,
             hi_open ? ")" : "]");
    r->bad = r->msg;
}

static void check_mlp_fields(rbuf *r, const tl_mlp_spec *s, const char *what)
{
    char f[64];
    for (int i = 0; i < s->n; i++) {
        snprintf(f, sizeof f, "%s.units[%d]", what, i + 1);
        want_int(r, f, s->units[i], 1, 1 << 16);
    }
    snprintf(f, sizeof f, "%s.dropout", what);
    want_real(r, f, s->dropout, 0.0, 1.0, 1);
}

static void check_config_fields(rbuf *r, const tl_model_config *c)
{
    const tl_backbone_spec *b = &c->backbone;
    char f[64];
    want_int(r, "backbone.kind", (long long)b->kind, 0, TL_BACKBONE_COUNT - 1);
    check_mlp_fields(r, &b->bottom, "backbone.bottom");
    check_mlp_fields(r, &b->expert, "backbone.expert");
    if (b->kind == TL_BACKBONE_OMOE || b->kind == TL_BACKBONE_MMOE)
        want_int(r, "backbone.experts", b->experts, 1, 1024);
    if (b->kind == TL_BACKBONE_PLE) {
        want_int(r, "backbone.levels", b->levels, 1, 8);
        want_int(r, "backbone.shared", b->shared, 0, 256);
        want_int(r, "backbone.specific", b->specific, 0, 256);
    }
    want_real(r, "backbone.constraint", b->constraint, 0.0, 1e6, 0);
    want_int(r, "backbone.transfer_dim", b->transfer_dim, 0, 1 << 16);
    for (int k = 0; k < c->n_tasks; k++) {
        const tl_task_spec *t = &c->tasks[k];
        snprintf(f, sizeof f, "tasks[%d].name", k + 1);
        if (!t->name[0] && !r->bad) {
            snprintf(r->msg, sizeof r->msg, "has field %s empty", f);
            r->bad = r->msg;
        }
        for (int j = 0; j < k; j++)
            if (!r->bad && strcmp(c->tasks[j].name, t->name) == 0) {
                snprintf(r->msg, sizeof r->msg, "has task name '%s' twice", t->name);
                r->bad = r->msg;
            }
        snprintf(f, sizeof f, "tasks[%d].tower", k + 1);
        check_mlp_fields(r, &t->tower, f);
        snprintf(f, sizeof f, "tasks[%d].weight", k + 1);
        want_real(r, f, t->weight, 0.0, 3.0e38, 0);
        snprintf(f, sizeof f, "tasks[%d].space", k + 1);
        want_int(r, f, t->space, -1, c->n_tasks - 1);
        if (!r->bad && t->space == k) {
            snprintf(r->msg, sizeof r->msg, "has field %s naming its own task", f);
            r->bad = r->msg;
        }
    }
    for (int i = 0; i < c->n_cat; i++) {
        snprintf(f, sizeof f, "vocab[%d]", i + 1);
        want_int(r, f, c->vocab[i], 1, INT32_MAX);
    }
    want_int(r, "n_num", c->n_num, 0, 1 << 24);
    if (c->n_cat > 0) want_int(r, "emb_dim", c->emb_dim, 1, 4096);
    want_int(r, "weighting", (long long)c->weighting, 0, TL_WEIGHTING_COUNT - 1);
    want_real(r, "gradnorm_alpha", c->gradnorm_alpha, 0.0, 1e6, 0);
    want_real(r, "dwa_temperature", c->dwa_temperature, 1e-30, 1e6, 0);
    want_int(r, "max_batch", c->max_batch, 1, 1 << 20);
    const tl_dml_spec *dm = &c->dml;
    want_int(r, "dml.enabled", dm->enabled, 0, 1);
    if (dm->enabled) {
        want_int(r, "dml.ctfm", dm->ctfm, 0, 1);
        want_int(r, "dml.gkd", dm->gkd, 0, 1);
        want_int(r, "dml.stop_grad", dm->stop_grad, 0, 1);
        want_int(r, "dml.gkd_layers", dm->gkd_layers, 1, TL_MAX_LAYERS);
        want_real(r, "dml.dropout", dm->dropout, 0.0, 1.0, 1);
    }
    const tl_distill_spec *ds = &c->distill;
    want_int(r, "distill.enabled", ds->enabled, 0, 1);
    if (!ds->enabled) return;
    want_int(r, "distill.n_pairs", ds->n_pairs, 1, TL_MAX_TASKS);
    for (int p = 0; p < ds->n_pairs; p++) {
        snprintf(f, sizeof f, "distill.flip[%d]", p + 1);
        want_int(r, f, ds->flip[p], -1, 1);
        if (!r->bad && ds->pairs[p][0] == ds->pairs[p][1]) {
            snprintf(r->msg, sizeof r->msg, "has distillation pair %d naming one task twice", p + 1);
            r->bad = r->msg;
        }
    }
    want_int(r, "distill.order", ds->order, 0, 2);
    want_real(r, "distill.aux", ds->aux, 0.0, 1e6, 0);
    want_real(r, "distill.kd", ds->kd, 0.0, 1.0, 0);
    want_int(r, "distill.bce_on_aux", ds->bce_on_aux, 0, 1);
    want_int(r, "distill.calibrate", (long long)ds->calibrate, TL_DISTILL_PLATT, TL_DISTILL_ISOTONIC);
    want_int(r, "distill.calib_valid", ds->calib_valid, 0, 1);
    want_int(r, "distill.correct", (long long)ds->correct, TL_CORRECT_NONE, TL_CORRECT_CLIP);
    want_real(r, "distill.lambda", ds->lambda, 0.0, 1.0, 0);
    want_int(r, "distill.teacher_grad", ds->teacher_grad, 0, 1);
    want_int(r, "distill.teacher_shared", ds->teacher_shared, 0, 1);
    want_int(r, "distill.warmup", ds->warmup, 0, INT64_MAX / 2);
    want_int(r, "distill.max_pairs", ds->max_pairs, 1, 1 << 30);
    want_int(r, "distill.naive", ds->naive, 0, 1);
    want_int(r, "distill.calib_every", ds->calib_every, 0, INT32_MAX);
    want_int(r, "dml.gkd_tasks", (long long)c->dml.gkd_tasks, 0, (1LL << c->n_tasks) - 1);
}

/* Counters a later fit adds to: bounded so that they cannot overflow. */
#define MAX_STEPS_FIELD ((int64_t)1 << 62)
#define MAX_EPOCH_FIELD (1 << 30)

static void get_rng(rbuf *r, tl_rng *g)
{
    for (int i = 0; i < 4; i++) g->s[i] = get_u64(r);
}

static tl_status bad_section(const char *path, int which, const char *why)
{
    uint32_t t = section_tags[which];
    return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: section %c%c%c%c %s", path,
                   (char)(t & 0xff), (char)(t >> 8 & 0xff), (char)(t >> 16 & 0xff),
                   (char)(t >> 24), why);
}

/* Read the whole file into a new buffer. The file is opened without
 * blocking (a FIFO or a device at path would otherwise wait forever for a
 * writer) and refused unless it is a regular file. */
static tl_status read_file(const char *path, uint8_t **out, size_t *n)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return io_fail(path, "cannot open", errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        tl_status s = io_fail(path, "cannot stat", errno);
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
        return err ? io_fail(path, "read failed", err)
                   : tl_fail(TL_ERR_IO, "%s: file shrank while being read", path);
    }
    *out = p;
    *n = size;
    return TL_OK;
}

/* Restore everything after CONF into m. */
static tl_status restore(tl_model *m, const char *path, rbuf *sec, const int *have)
{
    const int K = m->cfg.n_tasks;
    rbuf *r;

    r = &sec[S_PARM];
    uint32_t np = get_u32(r);
    if (!r->bad && np != (uint32_t)tl_graph_param_count(m->g))
        return tl_fail(TL_ERR_FORMAT, "%s: checkpoint has %u parameters; its configuration builds %d",
                       path, np, tl_graph_param_count(m->g));
    float *params = tl_graph_params(m->g, NULL);
    for (uint32_t i = 0; i < np && !r->bad; i++) {
        const tl_param_info *p = tl_graph_param(m->g, (int)i);
        char name[256];
        get_str(r, name, sizeof name);
        int32_t rows = get_i32(r), cols = get_i32(r);
        if (r->bad) break;
        if (strcmp(name, p->name ? p->name : "") != 0 || rows != p->rows || cols != p->cols)
            return tl_fail(TL_ERR_FORMAT, "%s: parameter %u is '%s' [%d x %d] in the checkpoint; "
                                          "the configuration builds '%s' [%d x %d]",
                           path, i + 1, name, (int)rows, (int)cols, p->name, p->rows, p->cols);
        get_f32s(r, params + p->offset, (size_t)p->rows * (size_t)p->cols);
    }
    if (r->bad) return bad_section(path, S_PARM, r->bad);

    r = &sec[S_TRNS];
    int64_t step = get_i64(r);
    int32_t epoch = get_i32(r);
    uint64_t bie = get_u64(r);
    tl_rng drop, prng;
    get_rng(r, &drop);
    get_rng(r, &prng);
    want_int(r, "step", step, 0, MAX_STEPS_FIELD);
    want_int(r, "epoch", epoch, 0, MAX_EPOCH_FIELD);
    want_int(r, "batches_in_epoch", (long long)(bie > (uint64_t)INT64_MAX ? INT64_MAX : bie), 0,
             UINT32_MAX);
    if (r->bad) return bad_section(path, S_TRNS, r->bad);
    m->step = step;
    m->epoch = epoch;
    m->batches_in_epoch = (size_t)bie;
    *tl_graph_rng(m->g) = drop;
    m->rng = prng;

    if (have[S_OPTM]) {
        r = &sec[S_OPTM];
        if (get_u32(r)) {
            tl_optim_config oc;
            memset(&oc, 0, sizeof oc);
            oc.kind = (tl_optim_kind)get_u32(r);
            oc.lr = get_f32(r);
            oc.momentum = get_f32(r);
            oc.nesterov = get_i32(r);
            oc.beta1 = get_f32(r);
            oc.beta2 = get_f32(r);
            oc.eps = get_f32(r);
            oc.weight_decay = get_f32(r);
            oc.clip_norm = get_f32(r);
            oc.initial_accumulator = get_f32(r);
            int64_t steps = get_i64(r);
            uint32_t nb = get_u32(r);
            uint64_t floats = get_u64(r);
            /* The schedule follows the state blocks (files without it: none). */
            size_t sched_at = r->pos + (size_t)nb * (size_t)(floats < SIZE_MAX / 8 ? floats : 0) * 4;
            if (!r->bad && nb <= 2 && floats < SIZE_MAX / 8 && sched_at <= r->n && r->n - sched_at >= 36) {
                rbuf t = *r;
                t.pos = sched_at;
                oc.schedule = (tl_schedule_kind)get_u32(&t);
                oc.gamma = get_f32(&t);
                oc.warmup = get_i64(&t);
                oc.step_size = get_i64(&t);
                oc.total = get_i64(&t);
                oc.min_lr = get_f32(&t);
                want_int(r, "schedule", (long long)oc.schedule, TL_SCHEDULE_NONE, TL_SCHEDULE_COSINE);
                want_int(r, "warmup", oc.warmup, 0, MAX_STEPS_FIELD);
                if (oc.schedule == TL_SCHEDULE_STEP) {
                    want_int(r, "step_size", oc.step_size, 1, MAX_STEPS_FIELD);
                    want_real(r, "gamma", oc.gamma, 1e-30, 1e6, 0);
                }
                if (oc.schedule == TL_SCHEDULE_COSINE) {
                    want_int(r, "total", oc.total, 1, MAX_STEPS_FIELD);
                    want_real(r, "min_lr", oc.min_lr, 0.0, oc.lr, 0);
                }
            }
            want_int(r, "kind", (long long)oc.kind, TL_OPTIM_SGD, TL_OPTIM_ADAGRAD);
            want_real(r, "lr", oc.lr, 1e-30, 1e30, 0);
            want_real(r, "momentum", oc.momentum, 0.0, 1.0, 1);
            want_int(r, "nesterov", oc.nesterov, 0, 1);
            want_real(r, "beta1", oc.beta1, 0.0, 1.0, 1);
            want_real(r, "beta2", oc.beta2, 0.0, 1.0, 1);
            want_real(r, "eps", oc.eps, 0.0, 1e30, 0);
            want_real(r, "weight_decay", oc.weight_decay, 0.0, 1e30, 0);
            want_real(r, "clip_norm", oc.clip_norm, 0.0, 1e30, 0);
            want_real(r, "initial_accumulator", oc.initial_accumulator, 0.0, 1e30, 0);
            want_int(r, "steps", steps, 0, MAX_STEPS_FIELD);
            if (r->bad) return bad_section(path, S_OPTM, r->bad);
            tl_optim *o = tl_optim_new(m->g, &oc);
            if (!o) {
                tl_status s = strstr(tl_errmsg(), "out of memory") ? TL_ERR_NOMEM : TL_ERR_FORMAT;
                return tl_fail_context(s, "%s: optimizer", path);
            }
            size_t have_floats = 0;
            tl_optim_state(o, 0, &have_floats);
            if (nb != (uint32_t)tl_optim_state_blocks(o) || floats != (uint64_t)have_floats) {
                tl_optim_free(o);
                return bad_section(path, S_OPTM, "does not match the optimizer's state layout");
            }
            for (uint32_t b = 0; b < nb; b++) get_f32s(r, tl_optim_state(o, (int)b, NULL), have_floats);
            if (r->bad) {
                tl_optim_free(o);
                return bad_section(path, S_OPTM, r->bad);
            }
            tl_optim_set_steps(o, steps);
            tl_optim_free(m->opt);
            m->opt = o;
        }
        if (r->bad) return bad_section(path, S_OPTM, r->bad);
    }

    if (have[S_WGHT]) {
        r = &sec[S_WGHT];
        uint32_t k = get_u32(r);
        if (!r->bad && k != (uint32_t)K) r->bad = "has a task count that differs from CONF";
        for (int i = 0; i < K && !r->bad; i++) m->factor[i] = get_f32(r);
        for (int i = 0; i < K && !r->bad; i++) m->gn_initial[i] = get_f64(r);
        m->gn_have_initial = get_i32(r);
        for (int e = 0; e < 2; e++)
            for (int i = 0; i < K && !r->bad; i++) m->dwa_hist[e][i] = get_f64(r);
        m->dwa_epochs = get_i32(r);
        for (int i = 0; i < K; i++) want_real(r, "factor", m->factor[i], 0.0, 3.0e38, 0);
        want_int(r, "gn_have_initial", m->gn_have_initial, 0, 1);
        want_int(r, "dwa_epochs", m->dwa_epochs, 0, MAX_EPOCH_FIELD);
        if (r->bad) return bad_section(path, S_WGHT, r->bad);
    }
    tl_weighting_apply(m);

    if (have[S_HSTP]) {
        r = &sec[S_HSTP];
        uint64_t n = get_u64(r);
        uint32_t k = get_u32(r);
        if (!r->bad && k != (uint32_t)K) r->bad = "has a task count that differs from CONF";
        size_t rec = 12 + 8 * (size_t)K;
        if (!r->bad && n > (r->n - r->pos) / rec) r->bad = "ends early";
        if (r->bad) return bad_section(path, S_HSTP, r->bad);
        if (n > 0) {
            tl_step_record *h = tl_calloc((size_t)n, sizeof *h, "step history");
            if (!h) return tl_fail_context(TL_ERR_NOMEM, "%s", path);
            for (size_t i = 0; i < n; i++) {
                h[i].step = get_i64(r);
                h[i].epoch = get_i32(r);
                get_f32s(r, h[i].loss, (size_t)K);
                get_f32s(r, h[i].weight, (size_t)K);
            }
            m->steps_hist = h;
            m->n_steps_hist = m->cap_steps_hist = (size_t)n;
        }
    }

    if (have[S_HEPO]) {
        r = &sec[S_HEPO];
        uint64_t n = get_u64(r);
        uint32_t k = get_u32(r);
        if (!r->bad && k != (uint32_t)K) r->bad = "has a task count that differs from CONF";
        size_t rec = 20 + 24 * (size_t)K;
        if (!r->bad && n > (r->n - r->pos) / rec) r->bad = "ends early";
        if (r->bad) return bad_section(path, S_HEPO, r->bad);
        if (n > 0) {
            tl_epoch_record *h = tl_calloc((size_t)n, sizeof *h, "epoch history");
            if (!h) return tl_fail_context(TL_ERR_NOMEM, "%s", path);
            for (size_t i = 0; i < n; i++) {
                h[i].epoch = get_i32(r);
                h[i].step = get_i64(r);
                for (int j = 0; j < K; j++) h[i].train_loss[j] = get_f64(r);
                for (int j = 0; j < K; j++) h[i].valid_metric[j] = get_f64(r);
                for (int j = 0; j < K; j++) h[i].valid_logloss[j] = get_f64(r);
                h[i].monitor = get_f64(r);
            }
            m->epochs_hist = h;
            m->n_epochs_hist = m->cap_epochs_hist = (size_t)n;
        }
    }

    if (have[S_CALB]) {
        r = &sec[S_CALB];
        for (int k = 0; k < 2 * K; k++) {
            uint32_t len = get_u32(r);
            if (r->bad) return bad_section(path, S_CALB, r->bad);
            if (len == 0) continue;
            if (len > (r->n - r->pos) / 4) return bad_section(path, S_CALB, "ends early");
            float *v = tl_malloc((size_t)len * sizeof(float), "calibrator");
            if (!v) return tl_fail_context(TL_ERR_NOMEM, "%s", path);
            get_f32s(r, v, len);
            tl_calibrator *c = NULL;
            tl_status st = tl_calibrator_deserialize(v, len, &c);
            tl_free(v);
            if (st != TL_OK) return tl_fail_context(st, "%s: calibrator of task %d", path, k % K + 1);
            if (k < K) {
                tl_model_set_calibrator(m, k, c);
            } else {
                tl_calibrator_free(m->distill_task[k - K].cal);
                m->distill_task[k - K].cal = c;
            }
        }
        /* Files without the fitting steps: the calibrators count as fresh. */
        m->distill_cal_step = m->step;
        if (r->n - r->pos >= 8 * ((size_t)K + 1)) {
            for (int k = 0; k < K; k++) {
                m->out_cal_step[k] = get_i64(r);
                want_int(r, "calibrator step", m->out_cal_step[k], 0, m->step);
            }
            m->distill_cal_step = get_i64(r);
            want_int(r, "teacher calibrator step", m->distill_cal_step, 0, m->step);
            if (r->bad) return bad_section(path, S_CALB, r->bad);
        }
    }
    return TL_OK;
}

/* Check header, length and CRC, then split the body into sections. */
static tl_status parse(const char *path, const uint8_t *p, size_t n, rbuf *sec, int *have)
{
    if (n < 8 && memcmp(p, magic, n) == 0)
        return tl_fail(TL_ERR_FORMAT, "%s: truncated checkpoint (%zu bytes)", path, n);
    if (n < 8 || memcmp(p, magic, 8) != 0)
        return tl_fail(TL_ERR_FORMAT, "%s: not a towerlab checkpoint (bad magic)", path);
    if (n < HEADER_SIZE)
        return tl_fail(TL_ERR_FORMAT, "%s: truncated checkpoint (%zu bytes)", path, n);
    uint32_t version = dec_u32(p + 8);
    if (version > TL_IO_FORMAT_VERSION)
        return tl_fail(TL_ERR_FORMAT, "%s: checkpoint format version %u is newer than this build "
                                      "of towerlab reads (up to %u); upgrade towerlab",
                       path, version, TL_IO_FORMAT_VERSION);
    if (version == 0)
        return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: format version 0", path);
    uint64_t len = dec_u64(p + 16);
    if ((uint64_t)n < len)
        return tl_fail(TL_ERR_FORMAT, "%s: truncated checkpoint (%zu of %llu bytes)", path, n,
                       (unsigned long long)len);
    if ((uint64_t)n > len || len < HEADER_SIZE + 4)
        return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: %zu bytes but the header "
                                      "records %llu", path, n, (unsigned long long)len);
    uint32_t want = dec_u32(p + n - 4), got = crc_of(p, n - 4);
    if (want != got)
        return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: checksum mismatch (CRC32 %08x, "
                                      "recorded %08x)", path, got, want);
    size_t pos = HEADER_SIZE, end = n - 4;
    while (pos < end) {
        if (end - pos < SECTION_HEADER)
            return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: section header at byte %zu "
                                          "runs past the end", path, pos);
        uint32_t tag = dec_u32(p + pos), flags = dec_u32(p + pos + 4);
        uint64_t size = dec_u64(p + pos + 8);
        pos += SECTION_HEADER;
        if (size > (uint64_t)(end - pos))
            return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: section at byte %zu runs "
                                          "past the end", path, pos - SECTION_HEADER);
        int which = -1;
        for (int i = 0; i < S_COUNT; i++)
            if (section_tags[i] == tag) which = i;
        if (which < 0 && (flags & TL_IO_CRITICAL)) {
            char t[5];
            for (int i = 0; i < 4; i++) {
                char ch = (char)(tag >> (8 * i));
                t[i] = ch >= 32 && ch < 127 ? ch : '?';
            }
            t[4] = '\0';
            return tl_fail(TL_ERR_FORMAT, "%s: checkpoint needs section '%s', which this build "
                                          "of towerlab does not know; upgrade towerlab", path, t);
        }
        if (which >= 0) {
            if (have[which]) return bad_section(path, which, "appears twice");
            have[which] = 1;
            memset(&sec[which], 0, sizeof sec[which]);
            sec[which].p = p + pos;
            sec[which].n = (size_t)size;
        }
        pos += (size_t)size;
    }
    static const int required[] = {S_CONF, S_PARM, S_TRNS};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++)
        if (!have[required[i]]) return bad_section(path, required[i], "is missing");
    return TL_OK;
}

/* Weights and biases of an MLP's layers after its first (whose input width
 * depends on the rest of the model): a lower bound on its parameters. */
static double mlp_min_floats(const tl_mlp_spec *s)
{
    double n = 0;
    for (int i = 0; i < s->n && i < TL_MAX_LAYERS; i++) {
        double u = s->units[i] > 0 ? s->units[i] : 0;
        double prev = i > 0 && s->units[i - 1] > 0 ? s->units[i - 1] : 0;
        n += u + prev * u;
    }
    return n;
}

/* A lower bound on the parameter floats the configuration builds (embedding
 * tables, shared bottom or one expert, towers). Every parameter is stored in
 * PARM, so a configuration above what the section holds is corrupted, and is
 * refused before tl_model_new allocates for it (a flipped bit in a vocabulary
 * size or a width would otherwise ask for gigabytes). */
static double min_param_floats(const tl_model_config *c)
{
    double n = 0;
    for (int f = 0; f < c->n_cat; f++)
        n += (double)(c->vocab[f] > 0 ? c->vocab[f] : 0) * (c->emb_dim > 0 ? c->emb_dim : 0);
    const tl_backbone_spec *b = &c->backbone;
    const tl_mlp_spec *first = NULL; /* the layers that take the input vector */
    if (b->kind == TL_BACKBONE_SHARED_BOTTOM) first = &b->bottom;
    if (b->kind == TL_BACKBONE_OMOE || b->kind == TL_BACKBONE_MMOE || b->kind == TL_BACKBONE_PLE)
        first = &b->expert;
    /* Experts on the input: omoe/mmoe's, and PLE's first level. */
    double copies = 1;
    if (b->kind == TL_BACKBONE_OMOE || b->kind == TL_BACKBONE_MMOE) copies = b->experts > 1 ? b->experts : 1;
    if (b->kind == TL_BACKBONE_PLE)
        copies = (double)(b->shared > 0 ? b->shared : 0) + (double)(b->specific > 0 ? b->specific : 0) *
                                                                (c->n_tasks > 0 ? c->n_tasks : 0);
    if (copies < 1) copies = 1;
    /* Some layer takes the input (numeric columns and embeddings). */
    double in = (double)(c->n_num > 0 ? c->n_num : 0) + (double)(c->n_cat > 0 ? c->n_cat : 0) *
                                                            (c->emb_dim > 0 ? c->emb_dim : 0);
    n += copies * ((first ? mlp_min_floats(first) : 0) +
                   in * (first && first->n > 0 && first->units[0] > 0 ? first->units[0] : 1));
    for (int k = 0; k < c->n_tasks; k++) n += mlp_min_floats(&c->tasks[k].tower);
    return n;
}

tl_status tl_model_load(const char *path, tl_model **out) { return tl_model_load_limit(path, 0, out); }

tl_status tl_model_load_limit(const char *path, uint64_t max_memory, tl_model **out)
{
    if (!out) return tl_fail(TL_ERR_ARG, "load: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return tl_fail(TL_ERR_ARG, "load: needs a path");
    uint8_t *p = NULL;
    size_t n = 0;
    tl_status s = read_file(path, &p, &n);
    if (s != TL_OK) return s;

    rbuf sec[S_COUNT];
    int have[S_COUNT] = {0};
    memset(sec, 0, sizeof sec);
    tl_model *m = NULL;
    if ((s = parse(path, p, n, sec, have)) != TL_OK) goto done;

    tl_model_config cfg;
    get_config(&sec[S_CONF], &cfg);
    if (!sec[S_CONF].bad) check_config_fields(&sec[S_CONF], &cfg);
    if (!sec[S_CONF].bad && 4.0 * min_param_floats(&cfg) > (double)sec[S_PARM].n)
        sec[S_CONF].bad = "needs more parameters than the PARM section holds";
    if (sec[S_CONF].bad) {
        s = bad_section(path, S_CONF, sec[S_CONF].bad);
        goto done;
    }
    cfg.max_memory = max_memory;
    if ((s = tl_model_new(&cfg, &m)) != TL_OK) {
        if (s != TL_ERR_NOMEM) s = TL_ERR_FORMAT;
        s = tl_fail_context(s, "%s: the checkpoint's configuration is rejected", path);
        goto done;
    }
    if ((s = restore(m, path, sec, have)) != TL_OK) {
        tl_model_free(m);
        m = NULL;
    }
done:
    tl_free(p);
    *out = m;
    return s;
}

/* ---- predictions to a file -------------------------------------------------- */

tl_status tl_model_predict_csv(tl_model *m, const tl_split *s, int calibrated, const char *path)
{
    if (!m || !s || !path || !path[0]) return tl_fail(TL_ERR_ARG, "predict: needs a model, a split and a path");
    const tl_model_config *c = tl_model_config_get(m);
    size_t K = (size_t)c->n_tasks, B = (size_t)c->max_batch;
    /* Chunks are whole batches, so each row's prediction is the one
     * tl_model_predict gives over the whole split. */
    size_t chunk = (65536 + B - 1) / B * B;
    if (chunk > s->n) chunk = s->n;
    float *buf = tl_malloc((chunk ? chunk : 1) * K * sizeof(float), "prediction chunk");
    size_t len = strlen(path);
    char *tmp = buf ? tl_malloc(len + 16, "prediction file name") : NULL;
    if (!tmp) {
        tl_free(buf);
        return TL_ERR_NOMEM;
    }
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        tl_status st = io_fail(path, "cannot create a temporary file next to it", errno);
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        tl_free(buf);
        tl_free(tmp);
        return st;
    }
    (void)fchmod(fd, 0666 & ~current_umask());
    tl_status st = TL_OK;
    fprintf(f, "row");
    for (size_t k = 0; k < K; k++) fprintf(f, ",%s", c->tasks[k].name);
    fputc('\n', f);
    for (size_t from = 0; from < s->n && st == TL_OK; from += chunk) {
        tl_split part = *s;
        part.n = s->n - from < chunk ? s->n - from : chunk;
        part.cat = s->cat ? s->cat + from * (size_t)c->n_cat : NULL;
        part.num = s->num ? s->num + from * (size_t)c->n_num : NULL;
        part.labels = s->labels ? s->labels + from * K : NULL;
        part.group = s->group ? s->group + from : NULL;
        part.weight = s->weight ? s->weight + from : NULL;
        part.row = s->row ? s->row + from : NULL;
        st = calibrated ? tl_model_predict_calibrated(m, &part, buf) : tl_model_predict(m, &part, buf);
        for (size_t i = 0; i < part.n && st == TL_OK; i++) {
            /* the row's 1-based data row in its source file, or its place in the split */
            unsigned long long id = s->row ? (unsigned long long)s->row[from + i] + 1
                                           : (unsigned long long)(from + i) + 1;
            fprintf(f, "%llu", id);
            for (size_t k = 0; k < K; k++) fprintf(f, ",%.9g", (double)buf[i * K + k]);
            fputc('\n', f);
        }
        if (st == TL_OK && ferror(f)) st = io_fail(path, "write failed", errno);
    }
    int err = 0;
    if (fflush(f) != 0 && st == TL_OK) err = errno;
    if (fclose(f) != 0 && st == TL_OK && !err) err = errno;
    if (st == TL_OK && err) st = io_fail(path, "write failed", err);
    if (st == TL_OK && rename(tmp, path) != 0) st = io_fail(path, "cannot replace it", errno);
    if (st != TL_OK) unlink(tmp);
    tl_free(buf);
    tl_free(tmp);
    return st;
}
