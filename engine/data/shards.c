/* data/shards.c — sharded binary rows: layout, writer (atomic shards,
 * resume), reader (manifest, checksums, mmap) and the shuffled stream. The
 * format is described in shards.h. About 1,100 lines in one file on
 * purpose: the writer, the reader and the stream share the shard header, its
 * checks, the file names and the row packing, which a split would have to
 * put in a private header of their own.
 */
#include "shards.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data_internal.h"
#include "dataset.h"

#define SHARD_MAGIC "TLSHARD\0"
#define SHARD_VERSION 1u
#define MANIFEST "manifest.tls"
#define ENCODINGS "encodings.tle" /* the fields' encodings (cache.c), when the writer knew them */
#define WBUF_BYTES (1u << 20)
#define DEFAULT_ROWS_PER_SHARD 262144u
#define DEFAULT_BUFFER_ROWS 65536u

static const char *const split_name[3] = {"train", "valid", "test"};
static const char *const pool_name[3] = {"sum", "mean", "max"};

typedef struct {
    char magic[8];
    uint32_t version, header_bytes;
    uint64_t fingerprint, rows;
    uint32_t words, split, index, body_crc;
    uint32_t n_cat, n_num, n_tasks, n_bag;
    uint32_t flags, header_crc;
} shard_header;
_Static_assert(sizeof(shard_header) == 72, "shard header layout");

/* ---- layout ------------------------------------------------------------------ */

tl_status tl_shard_layout_init(tl_shard_layout *l, int n_cat, int n_num, int n_tasks, int n_bag)
{
    memset(l, 0, sizeof *l);
    if (n_cat < 0 || n_num < 0 || n_tasks < 1 || n_tasks > TL_DATA_MAX_TASKS || n_bag < 0 ||
        n_bag > TL_SHARD_MAX_BAGS)
        return tl_fail(TL_ERR_ARG, "shards: bad layout (%d categorical, %d numeric, %d tasks, %d multi-valued)",
                       n_cat, n_num, n_tasks, n_bag);
    l->n_cat = n_cat;
    l->n_num = n_num;
    l->n_tasks = n_tasks;
    l->n_bag = n_bag;
    l->cat_name = tl_calloc((size_t)n_cat + 1, sizeof *l->cat_name, "shard layout");
    l->vocab = tl_calloc((size_t)n_cat + 1, sizeof *l->vocab, "shard layout");
    l->num_name = tl_calloc((size_t)n_num + 1, sizeof *l->num_name, "shard layout");
    l->task_name = tl_calloc((size_t)n_tasks + 1, sizeof *l->task_name, "shard layout");
    l->task_type = tl_calloc((size_t)n_tasks + 1, sizeof *l->task_type, "shard layout");
    l->bag_name = tl_calloc((size_t)n_bag + 1, sizeof *l->bag_name, "shard layout");
    l->bag_vocab = tl_calloc((size_t)n_bag + 1, sizeof *l->bag_vocab, "shard layout");
    l->bag_len = tl_calloc((size_t)n_bag + 1, sizeof *l->bag_len, "shard layout");
    l->bag_pool = tl_calloc((size_t)n_bag + 1, sizeof *l->bag_pool, "shard layout");
    if (!l->cat_name || !l->vocab || !l->num_name || !l->task_name || !l->task_type || !l->bag_name ||
        !l->bag_vocab || !l->bag_len || !l->bag_pool) {
        tl_shard_layout_free(l);
        return TL_ERR_NOMEM;
    }
    return TL_OK;
}

void tl_shard_layout_free(tl_shard_layout *l)
{
    if (!l) return;
    for (int i = 0; l->cat_name && i < l->n_cat; i++) tl_free(l->cat_name[i]);
    for (int i = 0; l->num_name && i < l->n_num; i++) tl_free(l->num_name[i]);
    for (int i = 0; l->task_name && i < l->n_tasks; i++) tl_free(l->task_name[i]);
    for (int i = 0; l->bag_name && i < l->n_bag; i++) tl_free(l->bag_name[i]);
    tl_free(l->cat_name);
    tl_free(l->vocab);
    tl_free(l->num_name);
    tl_free(l->task_name);
    tl_free(l->task_type);
    tl_free(l->bag_name);
    tl_free(l->bag_vocab);
    tl_free(l->bag_len);
    tl_free(l->bag_pool);
    memset(l, 0, sizeof *l);
}

static tl_status set_name(char **slot, const char *s)
{
    tl_free(*slot);
    *slot = tl_strdup(s ? s : "", "shard layout name");
    return *slot ? TL_OK : TL_ERR_NOMEM;
}

tl_status tl_shard_layout_from_dataset(tl_shard_layout *l, const tl_dataset *d)
{
    tl_status st = tl_shard_layout_init(l, tl_dataset_n_cat(d), tl_dataset_n_num(d), tl_dataset_n_tasks(d),
                                        tl_dataset_n_bag(d));
    for (int b = 0; st == TL_OK && b < l->n_bag; b++) {
        st = set_name(&l->bag_name[b], tl_dataset_bag_name(d, b));
        l->bag_vocab[b] = tl_dataset_bag_vocab(d, b);
        l->bag_len[b] = tl_dataset_bag_len(d, b);
        l->bag_pool[b] = tl_dataset_bag_pool(d, b);
    }
    for (int f = 0; st == TL_OK && f < l->n_cat; f++) {
        st = set_name(&l->cat_name[f], tl_dataset_cat_name(d, f));
        l->vocab[f] = tl_dataset_vocab(d)[f];
    }
    for (int j = 0; st == TL_OK && j < l->n_num; j++) st = set_name(&l->num_name[j], tl_dataset_num_name(d, j));
    for (int t = 0; st == TL_OK && t < l->n_tasks; t++) {
        st = set_name(&l->task_name[t], tl_dataset_task_name(d, t));
        l->task_type[t] = tl_dataset_task_type(d, t);
    }
    const tl_split *all = tl_dataset_split(d, "all");
    l->has_weight = all && all->weight != NULL;
    l->has_group = all && all->group != NULL;
    if (st != TL_OK) tl_shard_layout_free(l);
    return st;
}

static size_t bag_words(const tl_shard_layout *l)
{
    size_t w = 0;
    for (int b = 0; b < l->n_bag; b++) w += (size_t)l->bag_len[b];
    return w;
}

size_t tl_shard_layout_words(const tl_shard_layout *l)
{
    return (size_t)l->n_cat + bag_words(l) + (size_t)l->n_num + (size_t)l->n_tasks + (size_t)!!l->has_weight +
           (size_t)!!l->has_group;
}

static uint64_t hash_str(const char *s, uint64_t h) { return hash_bytes(s, strlen(s) + 1, h); }

/* The layout's fingerprint: counts, names, vocabulary sizes, task types,
 * bag specs (shard headers and the manifest carry it). */
static uint64_t layout_fingerprint(const tl_shard_layout *l)
{
    int64_t head[6] = {l->n_cat, l->n_num, l->n_tasks, l->n_bag, l->has_weight, l->has_group};
    uint64_t h = hash_bytes(head, sizeof head, 0x7368617264ULL);
    for (int f = 0; f < l->n_cat; f++) h = hash_bytes(&l->vocab[f], 4, hash_str(l->cat_name[f], h));
    for (int j = 0; j < l->n_num; j++) h = hash_str(l->num_name[j], h);
    for (int t = 0; t < l->n_tasks; t++) {
        int32_t ty = (int32_t)l->task_type[t];
        h = hash_bytes(&ty, 4, hash_str(l->task_name[t], h));
    }
    for (int b = 0; b < l->n_bag; b++) {
        int32_t v[3] = {l->bag_vocab[b], l->bag_len[b], (int32_t)l->bag_pool[b]};
        h = hash_bytes(v, sizeof v, hash_str(l->bag_name[b], h));
    }
    return h;
}

static tl_status layout_check(const tl_shard_layout *l)
{
    for (int b = 0; b < l->n_bag; b++)
        if (l->bag_len[b] < 1 || l->bag_len[b] > TL_SHARD_MAX_BAG_LEN || l->bag_vocab[b] < 1 ||
            (unsigned)l->bag_pool[b] > TL_POOL_MAX)
            return tl_fail(TL_ERR_ARG, "shards: multi-valued field '%s': length %d (1..%d), %d ids, pooling %d",
                           l->bag_name[b], l->bag_len[b], TL_SHARD_MAX_BAG_LEN, (int)l->bag_vocab[b],
                           (int)l->bag_pool[b]);
    for (int f = 0; f < l->n_cat; f++)
        if (l->vocab[f] < 1) return tl_fail(TL_ERR_ARG, "shards: field '%s' has %d ids", l->cat_name[f], (int)l->vocab[f]);
    return TL_OK;
}

/* ---- files --------------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = tl_malloc(n, "shard path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void shard_name(char *buf, size_t cap, int split, int index)
{
    snprintf(buf, cap, "%s-%05d.tls", split_name[split], index);
}

static tl_status fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return tl_fail(TL_ERR_IO, "shards: cannot open directory %s: %s", dir, strerror(errno));
    int r = fsync(fd);
    close(fd);
    return r == 0 ? TL_OK : tl_fail(TL_ERR_IO, "shards: fsync of %s failed: %s", dir, strerror(errno));
}

static uint32_t header_crc(shard_header h)
{
    h.header_crc = 0;
    return (uint32_t)crc32(0L, (const Bytef *)&h, sizeof h);
}

static uint32_t crc_bytes(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n) { /* zlib's length is 32-bit */
        uInt k = n > (1u << 30) ? 1u << 30 : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

/* Read and check the header of shard `path` against fingerprint/words (0 =
 * take any) and its file size. */
static tl_status read_header(const char *path, uint64_t fp, uint32_t words, shard_header *h, int *fd_out)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return tl_fail(TL_ERR_IO, "shard %s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    ssize_t got = pread(fd, h, sizeof *h, 0);
    tl_status st = TL_OK;
    if (fstat(fd, &sb) != 0 || got != (ssize_t)sizeof *h)
        st = tl_fail(TL_ERR_FORMAT, "shard %s: truncated (%lld bytes, no complete header)", path,
                     (long long)(got < 0 ? 0 : got));
    else if (memcmp(h->magic, SHARD_MAGIC, 8) != 0)
        st = tl_fail(TL_ERR_FORMAT, "shard %s: not a towerlab shard (bad magic)", path);
    else if (h->version != SHARD_VERSION)
        st = tl_fail(TL_ERR_FORMAT, "shard %s: format version %u, this build reads %u", path, h->version,
                     SHARD_VERSION);
    else if (h->header_crc != header_crc(*h))
        st = tl_fail(TL_ERR_FORMAT, "shard %s: header checksum mismatch (corrupted)", path);
    else if (h->header_bytes != sizeof *h || h->words == 0 || h->rows > ((uint64_t)1 << 40) / h->words)
        st = tl_fail(TL_ERR_FORMAT, "shard %s: implausible header (%u header bytes, %u words, %llu rows)", path,
                     h->header_bytes, h->words, (unsigned long long)h->rows);
    else if ((fp && h->fingerprint != fp) || (words && h->words != words))
        st = tl_fail(TL_ERR_FORMAT, "shard %s: written for another layout (fingerprint %016llx, expected %016llx)",
                     path, (unsigned long long)h->fingerprint, (unsigned long long)fp);
    else if ((uint64_t)sb.st_size != h->header_bytes + h->rows * h->words * 4ull)
        st = tl_fail(TL_ERR_FORMAT, "shard %s: truncated or padded: %lld bytes, expected %llu for %llu rows", path,
                     (long long)sb.st_size, (unsigned long long)(h->header_bytes + h->rows * h->words * 4ull),
                     (unsigned long long)h->rows);
    if (st != TL_OK || !fd_out) close(fd);
    else *fd_out = fd;
    return st;
}

/* Map a shard (read-only) after checking its header; verify its rows'
 * checksum when *verified is 0 (and set it). */
static tl_status map_shard(const char *path, uint64_t fp, uint32_t words, int *verified, shard_header *h,
                           void **map, size_t *len)
{
    int fd;
    tl_status st = read_header(path, fp, words, h, &fd);
    if (st != TL_OK) return st;
    *len = h->header_bytes + h->rows * h->words * 4ull;
    void *p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return tl_fail(TL_ERR_IO, "shard %s: mmap failed: %s", path, strerror(errno));
    madvise(p, *len, MADV_SEQUENTIAL);
    if (!*verified) {
        uint32_t crc = crc_bytes(0, (const unsigned char *)p + h->header_bytes, *len - h->header_bytes);
        if (crc != h->body_crc) {
            munmap(p, *len);
            return tl_fail(TL_ERR_FORMAT, "shard %s: checksum mismatch (corrupted rows)", path);
        }
        *verified = 1;
    }
    *map = p;
    return TL_OK;
}

/* ---- writer ---------------------------------------------------------------------- */

typedef struct {
    int fd;              /* -1: no shard open */
    int index;           /* of the shard being written */
    uint64_t rows_in;    /* rows in it */
    uint64_t total;      /* rows of the split, complete shards included */
    uint32_t crc;
    unsigned char *buf;
    size_t len;
} wsplit;

struct tl_shard_writer {
    char *dir;
    tl_shard_layout l;
    uint64_t fp;
    uint32_t words;
    size_t per_shard;
    wsplit s[3];
    int finished;
    const tl_dataset *enc; /* the fields' encodings to record, or NULL */
};

static tl_status copy_layout(tl_shard_layout *dst, const tl_shard_layout *src)
{
    tl_status st = tl_shard_layout_init(dst, src->n_cat, src->n_num, src->n_tasks, src->n_bag);
    for (int f = 0; st == TL_OK && f < src->n_cat; f++) {
        st = set_name(&dst->cat_name[f], src->cat_name[f]);
        dst->vocab[f] = src->vocab[f];
    }
    for (int j = 0; st == TL_OK && j < src->n_num; j++) st = set_name(&dst->num_name[j], src->num_name[j]);
    for (int t = 0; st == TL_OK && t < src->n_tasks; t++) {
        st = set_name(&dst->task_name[t], src->task_name[t]);
        dst->task_type[t] = src->task_type[t];
    }
    for (int b = 0; st == TL_OK && b < src->n_bag; b++) {
        st = set_name(&dst->bag_name[b], src->bag_name[b]);
        dst->bag_vocab[b] = src->bag_vocab[b];
        dst->bag_len[b] = src->bag_len[b];
        dst->bag_pool[b] = src->bag_pool[b];
    }
    dst->has_weight = src->has_weight;
    dst->has_group = src->has_group;
    if (st != TL_OK) tl_shard_layout_free(dst);
    return st;
}

/* Keep complete shards of each split from index 0 while they verify; delete
 * the rest (and .tmp files). */
static tl_status resume_scan(tl_shard_writer *w)
{
    char name[64];
    for (int k = 0; k < 3; k++) {
        int keep = 1;
        for (int i = 0;; i++) {
            shard_name(name, sizeof name, k, i);
            char *p = path_join(w->dir, name);
            if (!p) return TL_ERR_NOMEM;
            struct stat sb;
            if (stat(p, &sb) != 0) {
                tl_free(p);
                break;
            }
            if (keep) {
                shard_header h;
                memset(&h, 0, sizeof h);
                void *map;
                size_t len;
                int verified = 0;
                if (map_shard(p, w->fp, w->words, &verified, &h, &map, &len) == TL_OK && h.split == (uint32_t)k &&
                    h.index == (uint32_t)i) {
                    munmap(map, len);
                    w->s[k].total += h.rows;
                    w->s[k].index = i + 1;
                    tl_free(p);
                    continue;
                }
                if (h.fingerprint != w->fp && memcmp(h.magic, SHARD_MAGIC, 8) == 0 && h.header_crc == header_crc(h)) {
                    tl_status st = tl_fail(TL_ERR_STATE,
                                           "shards: %s holds shards of another layout (%s); delete the "
                                           "directory or use another one",
                                           w->dir, name);
                    tl_free(p);
                    return st;
                }
                keep = 0; /* this one is bad: it and every later one go */
            }
            unlink(p);
            tl_free(p);
        }
    }
    tl_clear_error();
    DIR *dd = opendir(w->dir);
    if (!dd) return tl_fail(TL_ERR_IO, "shards: cannot read directory %s: %s", w->dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(dd))) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0) {
            char *p = path_join(w->dir, e->d_name);
            if (p) unlink(p);
            tl_free(p);
        }
    }
    closedir(dd);
    return TL_OK;
}

/* ---- a producer's record, for resuming (tl_shards_record_check) ------------------ */

#define RECORD_CAP 8192

/* 1 when dir holds a complete shard file (a .tls of a split). */
static int has_shards(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int any = 0;
    while (!any && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        any = (strncmp(e->d_name, "train-", 6) == 0 || strncmp(e->d_name, "valid-", 6) == 0 ||
               strncmp(e->d_name, "test-", 5) == 0) && n > 4 && strcmp(e->d_name + n - 4, ".tls") == 0;
    }
    closedir(d);
    return any;
}

/* How a refusal names a line's key; "other ..." ones are hashes. */
static const char *record_what(const char *key)
{
    if (strcmp(key, "options") == 0) return "other field or parsing options";
    if (strcmp(key, "encodings") == 0) return "other encodings from pass 1, i.e. other data";
    if (strcmp(key, "rows") == 0) return "rows of train, valid, test";
    if (strcmp(key, "data") == 0) return "other rows read in pass 1, i.e. other data";
    if (strcmp(key, "dataset") == 0) return "other rows of the dataset, i.e. another dataset";
    return key;
}

tl_status tl_shards_record_check(const char *dir, const char *record, const char *hint)
{
    char *old = tl_malloc(RECORD_CAP, "conversion record");
    char *sp = path_join(dir, TL_SHARDS_RECORD);
    char *tp = path_join(dir, TL_SHARDS_RECORD ".tmp");
    tl_status st = old && sp && tp ? TL_OK : TL_ERR_NOMEM;
    if (!st && strlen(record) >= RECORD_CAP)
        st = tl_fail(TL_ERR_ARG, "shards: the record of the conversion into %s is too long", dir);
    if (!st && mkdir(dir, 0777) != 0 && errno != EEXIST)
        st = tl_fail(TL_ERR_IO, "shards: cannot create %s: %s", dir, strerror(errno));
    if (!st && tl_shards_complete(dir)) /* as tl_shard_writer_open: nothing to resume */
        st = tl_fail(TL_ERR_STATE, "shards: %s is a complete conversion (it has %s); delete it to convert again", dir,
                     MANIFEST);
    if (!st && has_shards(dir)) {
        FILE *f = fopen(sp, "rb");
        size_t n = f ? fread(old, 1, RECORD_CAP - 1, f) : 0;
        if (f) fclose(f);
        old[n] = 0;
        if (!f)
            st = tl_fail(TL_ERR_STATE,
                         "cannot resume a conversion in %s: it holds shards without the record of the conversion "
                         "that wrote them (%s); delete the directory or convert into another one",
                         dir, TL_SHARDS_RECORD);
        for (const char *a = old, *b = record; !st && (*a || *b);) {
            const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
            size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
            if (la != lb || memcmp(a, b, la) != 0) {
                char key[32] = "";
                sscanf(b, "%31s", key);
                size_t kl = strlen(key);
                int same_key = la > kl && lb > kl && strncmp(a, key, kl) == 0 && a[kl] == ' ';
                const char *what = record_what(key);
                int hashed = strncmp(what, "other ", 6) == 0;
                if (same_key)
                    st = tl_fail(TL_ERR_STATE,
                                 "cannot resume the conversion in %s: %s%s%.*s (the stopped conversion's %.*s); "
                                 "%s, or delete the directory",
                                 dir, what, hashed ? ": hash " : " ", (int)(lb - kl - 1), b + kl + 1,
                                 (int)(la - kl - 1), a + kl + 1, hint);
                else
                    st = tl_fail(TL_ERR_STATE,
                                 "cannot resume the conversion in %s: %.*s (the stopped conversion's %.*s); %s, or "
                                 "delete the directory",
                                 dir, (int)lb, b, (int)la, a, hint);
                break;
            }
            a += la + (ea != NULL);
            b += lb + (eb != NULL);
        }
    }
    if (!st) { /* written whole (temporary name, fsync, rename) before any shard */
        FILE *f = fopen(tp, "wb");
        if (!f) st = tl_fail(TL_ERR_IO, "shards: cannot create %s: %s", tp, strerror(errno));
        else {
            int bad = fputs(record, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
            bad |= fclose(f) != 0;
            if (bad || rename(tp, sp) != 0) st = tl_fail(TL_ERR_IO, "shards: writing %s failed", sp);
        }
    }
    tl_free(old);
    tl_free(sp);
    tl_free(tp);
    return st;
}

static void record_remove(const char *dir)
{
    char *sp = path_join(dir, TL_SHARDS_RECORD);
    if (sp) unlink(sp);
    tl_free(sp);
}

void tl_shards_remove(const char *dir)
{
    DIR *dd = opendir(dir);
    if (!dd) return;
    struct dirent *e;
    while ((e = readdir(dd))) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        int shard = (strncmp(n, "train-", 6) == 0 || strncmp(n, "valid-", 6) == 0 || strncmp(n, "test-", 5) == 0) &&
                    ((len > 4 && strcmp(n + len - 4, ".tls") == 0) || (len > 8 && strcmp(n + len - 8, ".tls.tmp") == 0));
        /* convert.tls: the producer's record of what it converts (tl_shards_record_check) */
        if (!shard && strcmp(n, MANIFEST) != 0 && strcmp(n, MANIFEST ".tmp") != 0 && strcmp(n, TL_SHARDS_RECORD) != 0 &&
            strcmp(n, TL_SHARDS_RECORD ".tmp") != 0 && strcmp(n, ENCODINGS) != 0 && strcmp(n, ENCODINGS ".tmp") != 0)
            continue;
        char *p = path_join(dir, n);
        if (p) unlink(p);
        tl_free(p);
    }
    closedir(dd);
}

int tl_shards_complete(const char *dir)
{
    char *mp = path_join(dir, MANIFEST);
    struct stat sb;
    int complete = mp && stat(mp, &sb) == 0;
    tl_free(mp);
    return complete;
}

tl_status tl_shard_writer_open(const char *dir, const tl_shard_layout *l, size_t rows_per_shard,
                               tl_shard_writer **out, uint64_t done[3])
{
    *out = NULL;
    tl_status st = layout_check(l);
    if (st != TL_OK) return st;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return tl_fail(TL_ERR_IO, "shards: cannot create %s: %s", dir, strerror(errno));
    tl_shard_writer *w = tl_calloc(1, sizeof *w, "shard writer");
    if (!w) return TL_ERR_NOMEM;
    for (int k = 0; k < 3; k++) w->s[k].fd = -1;
    w->dir = tl_strdup(dir, "shard directory");
    if (!w->dir || (st = copy_layout(&w->l, l)) != TL_OK) {
        tl_shard_writer_close(w);
        return w->dir ? st : TL_ERR_NOMEM;
    }
    w->fp = layout_fingerprint(l);
    w->words = (uint32_t)tl_shard_layout_words(l);
    w->per_shard = rows_per_shard ? rows_per_shard : DEFAULT_ROWS_PER_SHARD;
    char *mp = path_join(dir, MANIFEST);
    struct stat sb;
    int complete = mp && stat(mp, &sb) == 0;
    tl_free(mp);
    if (complete) {
        tl_shard_writer_close(w);
        return tl_fail(TL_ERR_STATE, "shards: %s is a complete conversion (it has %s); delete it to convert again",
                       dir, MANIFEST);
    }
    if ((st = resume_scan(w)) != TL_OK) {
        tl_shard_writer_close(w);
        return st;
    }
    for (int k = 0; k < 3; k++) done[k] = w->s[k].total;
    *out = w;
    return TL_OK;
}

static tl_status wflush(tl_shard_writer *w, wsplit *s)
{
    if (!s->len) return TL_OK;
    s->crc = crc_bytes(s->crc, s->buf, s->len);
    size_t off = 0;
    while (off < s->len) {
        ssize_t n = write(s->fd, s->buf + off, s->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return tl_fail(TL_ERR_IO, "shards: write to %s failed: %s", w->dir, strerror(errno));
        off += (size_t)n;
    }
    s->len = 0;
    return TL_OK;
}

static tl_status shard_begin(tl_shard_writer *w, int k)
{
    wsplit *s = &w->s[k];
    char base[64], name[72];
    shard_name(base, sizeof base, k, s->index);
    snprintf(name, sizeof name, "%s.tmp", base);
    char *p = path_join(w->dir, name);
    if (!p) return TL_ERR_NOMEM;
    s->fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    tl_status st = s->fd < 0 ? tl_fail(TL_ERR_IO, "shards: cannot create %s: %s", p, strerror(errno)) : TL_OK;
    tl_free(p);
    if (st != TL_OK) return st;
    if (!s->buf && !(s->buf = tl_malloc(WBUF_BYTES, "shard write buffer"))) return TL_ERR_NOMEM;
    memset(s->buf, 0, sizeof(shard_header)); /* the header's room, written at the end */
    if (write(s->fd, s->buf, sizeof(shard_header)) != (ssize_t)sizeof(shard_header))
        return tl_fail(TL_ERR_IO, "shards: write to %s failed: %s", w->dir, strerror(errno));
    s->len = 0;
    s->crc = 0;
    s->rows_in = 0;
    return TL_OK;
}

/* Complete the open shard of split k: header, fsync, rename, fsync dir. */
static tl_status shard_end(tl_shard_writer *w, int k)
{
    wsplit *s = &w->s[k];
    tl_status st = wflush(w, s);
    if (st != TL_OK) return st;
    shard_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SHARD_MAGIC, 8);
    h.version = SHARD_VERSION;
    h.header_bytes = sizeof h;
    h.fingerprint = w->fp;
    h.rows = s->rows_in;
    h.words = w->words;
    h.split = (uint32_t)k;
    h.index = (uint32_t)s->index;
    h.body_crc = s->crc;
    h.n_cat = (uint32_t)w->l.n_cat;
    h.n_num = (uint32_t)w->l.n_num;
    h.n_tasks = (uint32_t)w->l.n_tasks;
    h.n_bag = (uint32_t)w->l.n_bag;
    h.flags = (uint32_t)((w->l.has_weight ? 1 : 0) | (w->l.has_group ? 2 : 0));
    h.header_crc = header_crc(h);
    char name[64], tmp[72];
    shard_name(name, sizeof name, k, s->index);
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    char *pt = path_join(w->dir, tmp), *pf = path_join(w->dir, name);
    if (!pt || !pf) st = TL_ERR_NOMEM;
    else if (pwrite(s->fd, &h, sizeof h, 0) != (ssize_t)sizeof h || fsync(s->fd) != 0)
        st = tl_fail(TL_ERR_IO, "shards: writing %s failed: %s", pt, strerror(errno));
    close(s->fd);
    s->fd = -1;
    if (st == TL_OK && rename(pt, pf) != 0) st = tl_fail(TL_ERR_IO, "shards: rename to %s failed: %s", pf, strerror(errno));
    tl_free(pt);
    tl_free(pf);
    if (st == TL_OK) st = fsync_dir(w->dir);
    if (st == TL_OK) s->index++;
    return st;
}

tl_status tl_shard_writer_row(tl_shard_writer *w, int split, const void *row)
{
    if (split < 0 || split > 2 || w->finished) return tl_fail(TL_ERR_ARG, "shards: bad split %d or writer finished", split);
    wsplit *s = &w->s[split];
    tl_status st;
    if (s->fd < 0 && (st = shard_begin(w, split)) != TL_OK) return st;
    size_t bytes = (size_t)w->words * 4;
    if (s->len + bytes > WBUF_BYTES && (st = wflush(w, s)) != TL_OK) return st;
    memcpy(s->buf + s->len, row, bytes);
    s->len += bytes;
    s->rows_in++;
    s->total++;
    if (s->rows_in == w->per_shard) return shard_end(w, split);
    return TL_OK;
}

/* Pack row i of split s (of a dataset with layout l) into out. */
static void pack_split_row(const tl_shard_layout *l, const tl_split *s, size_t i, uint32_t *out)
{
    size_t nc = (size_t)l->n_cat, nn = (size_t)l->n_num, K = (size_t)l->n_tasks, nb = bag_words(l);
    memcpy(out, s->cat + i * nc, nc * 4);
    out += nc;
    if (nb) memcpy(out, s->bag + i * nb, nb * 4);
    out += nb;
    memcpy(out, s->num + i * nn, nn * 4);
    out += nn;
    memcpy(out, s->labels + i * K, K * 4);
    out += K;
    if (l->has_weight) memcpy(out++, s->weight + i, 4);
    if (l->has_group) memcpy(out++, s->group + i, 4);
}

static tl_status write_manifest(tl_shard_writer *w)
{
    char *pt = path_join(w->dir, MANIFEST ".tmp"), *pf = path_join(w->dir, MANIFEST);
    tl_status st = TL_OK;
    FILE *f = pt ? fopen(pt, "w") : NULL;
    if (!pt || !pf) st = TL_ERR_NOMEM;
    else if (!f) st = tl_fail(TL_ERR_IO, "shards: cannot create %s: %s", pt, strerror(errno));
    if (st == TL_OK) {
        const tl_shard_layout *l = &w->l;
        fprintf(f, "towerlab-shards %u\nfingerprint %016llx\nwords %u\nweight %d\ngroup %d\n", SHARD_VERSION,
                (unsigned long long)w->fp, w->words, !!l->has_weight, !!l->has_group);
        for (int i = 0; i < l->n_cat; i++) fprintf(f, "cat %d %s\n", (int)l->vocab[i], l->cat_name[i]);
        for (int i = 0; i < l->n_bag; i++)
            fprintf(f, "bag %d %d %s %s\n", (int)l->bag_vocab[i], l->bag_len[i], pool_name[l->bag_pool[i]],
                    l->bag_name[i]);
        for (int i = 0; i < l->n_num; i++) fprintf(f, "num %s\n", l->num_name[i]);
        for (int i = 0; i < l->n_tasks; i++)
            fprintf(f, "task %s %s\n", l->task_type[i] == TL_TASK_BINARY ? "binary" : "regression", l->task_name[i]);
        for (int k = 0; k < 3; k++)
            fprintf(f, "split %s %d %llu\n", split_name[k], w->s[k].index, (unsigned long long)w->s[k].total);
        if (fflush(f) != 0 || fsync(fileno(f)) != 0) st = tl_fail(TL_ERR_IO, "shards: writing %s failed", pt);
    }
    if (f && fclose(f) != 0 && st == TL_OK) st = tl_fail(TL_ERR_IO, "shards: writing %s failed", pt);
    if (st == TL_OK && rename(pt, pf) != 0) st = tl_fail(TL_ERR_IO, "shards: rename to %s failed: %s", pf, strerror(errno));
    if (st == TL_OK) st = fsync_dir(w->dir);
    tl_free(pt);
    tl_free(pf);
    return st;
}

void tl_shard_writer_set_encodings(tl_shard_writer *w, const tl_dataset *enc)
{
    w->enc = enc && !enc->ids_only ? enc : NULL;
}

/* Before the manifest, so a complete directory always has its record. */
static tl_status write_encodings(tl_shard_writer *w)
{
    char *p = path_join(w->dir, ENCODINGS);
    tl_status st = p ? tl_data_encodings_write(p, w->fp, w->enc) : TL_ERR_NOMEM;
    tl_free(p);
    return st;
}

tl_status tl_shard_writer_finish(tl_shard_writer *w)
{
    tl_status st = TL_OK;
    for (int k = 0; k < 3 && st == TL_OK; k++)
        if (w->s[k].fd >= 0) st = shard_end(w, k);
    if (st == TL_OK && w->enc) st = write_encodings(w);
    if (st == TL_OK) st = write_manifest(w);
    if (st == TL_OK) record_remove(w->dir); /* the record goes with the manifest */
    if (st == TL_OK) w->finished = 1;
    return st;
}

void tl_shard_writer_close(tl_shard_writer *w)
{
    if (!w) return;
    for (int k = 0; k < 3; k++) {
        wsplit *s = &w->s[k];
        if (s->fd >= 0) {
            close(s->fd);
            char name[64], tmp[72];
            shard_name(name, sizeof name, k, s->index);
            snprintf(tmp, sizeof tmp, "%s.tmp", name);
            char *pt = path_join(w->dir, tmp);
            if (pt) unlink(pt);
            tl_free(pt);
        }
        tl_free(s->buf);
    }
    tl_shard_layout_free(&w->l);
    tl_free(w->dir);
    tl_free(w);
}

/* The record of a dataset's conversion (tl_shards_record_check): the rows
 * per shard, each split's rows and a hash of all of them. */
static tl_status dataset_record(const tl_split *const sp[3], const tl_shard_layout *l,
                                const char *dir, size_t rows_per_shard)
{
    size_t nc = (size_t)l->n_cat, nn = (size_t)l->n_num, K = (size_t)l->n_tasks, nb = bag_words(l);
    uint64_t h = 0x64617461ULL;
    size_t n[3];
    for (int k = 0; k < 3; k++) {
        const tl_split *s = sp[k];
        n[k] = s ? s->n : 0;
        h = hash_bytes(&n[k], sizeof n[k], h);
        if (!n[k]) continue;
        h = hash_bytes(s->cat, n[k] * nc * 4, h);
        if (nb) h = hash_bytes(s->bag, n[k] * nb * 4, h);
        h = hash_bytes(s->num, n[k] * nn * 4, h);
        h = hash_bytes(s->labels, n[k] * K * 4, h);
        if (l->has_weight) h = hash_bytes(s->weight, n[k] * 4, h);
        if (l->has_group) h = hash_bytes(s->group, n[k] * 4, h);
    }
    char rec[512];
    snprintf(rec, sizeof rec, "writer dataset\nrows_per_shard %zu\nrows %zu %zu %zu\ndataset %016llx\n",
             rows_per_shard ? rows_per_shard : (size_t)DEFAULT_ROWS_PER_SHARD, n[0], n[1], n[2],
             (unsigned long long)h);
    return tl_shards_record_check(dir, rec, "convert the stopped conversion's dataset");
}

tl_status tl_shards_convert(const tl_dataset *d, const char *dir, size_t rows_per_shard, tl_shard_progress progress,
                            void *ud)
{
    tl_shard_layout l;
    tl_status st = tl_shard_layout_from_dataset(&l, d);
    if (st != TL_OK) return st;
    const tl_split *sp[3];
    int has = tl_dataset_split(d, "train") != NULL;
    for (int k = 0; k < 3; k++) sp[k] = has ? tl_dataset_split(d, split_name[k]) : k == 0 ? tl_dataset_split(d, "all") : NULL;
    uint64_t total = 0, done[3], at = 0;
    for (int k = 0; k < 3; k++) total += sp[k] ? sp[k]->n : 0;
    tl_shard_writer *w = NULL;
    st = dataset_record(sp, &l, dir, rows_per_shard);
    if (st == TL_OK) st = tl_shard_writer_open(dir, &l, rows_per_shard, &w, done);
    if (st == TL_OK) tl_shard_writer_set_encodings(w, d);
    uint32_t *row = st == TL_OK ? tl_malloc(tl_shard_layout_words(&l) * 4, "shard row") : NULL;
    if (st == TL_OK && !row) st = TL_ERR_NOMEM;
    for (int k = 0; st == TL_OK && k < 3; k++) {
        size_t n = sp[k] ? sp[k]->n : 0;
        if (done[k] > n) {
            st = tl_fail(TL_ERR_STATE, "shards: %s holds %llu %s rows, more than the dataset's %zu: another "
                                       "dataset with the same layout; delete the directory",
                         dir, (unsigned long long)done[k], split_name[k], n);
            break;
        }
        at += done[k];
        for (size_t i = (size_t)done[k]; st == TL_OK && i < n; i++, at++) {
            if ((at & (CANCEL_EVERY - 1)) == 0 &&
                (tl_cancelled() || (progress && progress(ud, at, total))))
                st = tl_fail(TL_ERR_CANCELLED, "conversion to %s interrupted after %llu of %llu rows; the "
                                               "complete shards are kept: run it again to resume",
                             dir, (unsigned long long)at, (unsigned long long)total);
            else {
                pack_split_row(&l, sp[k], i, row);
                st = tl_shard_writer_row(w, k, row);
            }
        }
    }
    if (st == TL_OK) st = tl_shard_writer_finish(w);
    if (st == TL_OK && progress) progress(ud, total, total);
    tl_shard_writer_close(w);
    tl_free(row);
    tl_shard_layout_free(&l);
    return st;
}

/* ---- reader ------------------------------------------------------------------------ */

struct tl_shards {
    char *dir;
    tl_shard_layout l;
    uint64_t fp;
    uint64_t set_fp; /* the layout's and every shard's rows and checksum (tl_shards_fingerprint) */
    uint32_t words;
    int n[3];
    uint64_t rows[3];
    uint64_t *shard_rows[3];
    int *verified[3];
    int has_encodings; /* the directory has ENCODINGS */
};

void tl_shards_close(tl_shards *sh)
{
    if (!sh) return;
    for (int k = 0; k < 3; k++) {
        tl_free(sh->shard_rows[k]);
        tl_free(sh->verified[k]);
    }
    tl_shard_layout_free(&sh->l);
    tl_free(sh->dir);
    tl_free(sh);
}

const tl_shard_layout *tl_shards_layout(const tl_shards *sh) { return &sh->l; }
const char *tl_shards_dir(const tl_shards *sh) { return sh->dir; }
uint64_t tl_shards_rows(const tl_shards *sh, int split) { return split >= 0 && split < 3 ? sh->rows[split] : 0; }
int tl_shards_count(const tl_shards *sh, int split) { return split >= 0 && split < 3 ? sh->n[split] : 0; }
uint64_t tl_shards_fingerprint(const tl_shards *sh) { return sh->set_fp; }

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (cap + 4096) * 2;
            char *b = tl_realloc(buf, cap, "manifest");
            if (!b) break;
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

/* Parse the manifest's lines into sh (two passes: counts, then values). */
static tl_status parse_manifest(tl_shards *sh, char *text, const char *path)
{
    int counts[4] = {0}; /* cat, bag, num, task */
    unsigned version = 0;
    unsigned long long fp = 0;
    int weight = 0, group = 0;
    if (sscanf(text, "towerlab-shards %u", &version) != 1)
        return tl_fail(TL_ERR_FORMAT, "%s: not a towerlab shard manifest", path);
    if (version != SHARD_VERSION)
        return tl_fail(TL_ERR_FORMAT, "%s: format version %u, this build reads %u", path, version, SHARD_VERSION);
    for (int pass = 0; pass < 2; pass++) {
        int ic = 0, ib = 0, in = 0, it = 0, lineno = 0;
        for (char *line = text; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            lineno++;
            char word[16] = "";
            int off = 0;
            sscanf(line, "%15s %n", word, &off);
            const char *rest = line + off;
            int ok = 1;
            if (strcmp(word, "fingerprint") == 0) ok = sscanf(rest, "%llx", &fp) == 1;
            else if (strcmp(word, "weight") == 0) ok = sscanf(rest, "%d", &weight) == 1;
            else if (strcmp(word, "group") == 0) ok = sscanf(rest, "%d", &group) == 1;
            else if (strcmp(word, "cat") == 0) {
                int v, o2 = 0;
                ok = sscanf(rest, "%d %n", &v, &o2) == 1 && o2 > 0;
                if (ok && pass == 1) {
                    sh->l.vocab[ic] = v;
                    if (set_name(&sh->l.cat_name[ic], rest + o2) != TL_OK) return TL_ERR_NOMEM;
                }
                ic++;
            } else if (strcmp(word, "bag") == 0) {
                int v, len, o2 = 0;
                char pool[8] = "";
                ok = sscanf(rest, "%d %d %7s %n", &v, &len, pool, &o2) == 3 && o2 > 0;
                if (ok && pass == 1) {
                    sh->l.bag_vocab[ib] = v;
                    sh->l.bag_len[ib] = len;
                    sh->l.bag_pool[ib] = strcmp(pool, "max") == 0 ? TL_POOL_MAX : strcmp(pool, "mean") == 0 ? TL_POOL_MEAN : TL_POOL_SUM;
                    if (set_name(&sh->l.bag_name[ib], rest + o2) != TL_OK) return TL_ERR_NOMEM;
                }
                ib++;
            } else if (strcmp(word, "num") == 0) {
                if (pass == 1 && set_name(&sh->l.num_name[in], rest) != TL_OK) return TL_ERR_NOMEM;
                in++;
            } else if (strcmp(word, "task") == 0) {
                char ty[16] = "";
                int o2 = 0;
                ok = sscanf(rest, "%15s %n", ty, &o2) == 1 && o2 > 0;
                if (ok && pass == 1) {
                    sh->l.task_type[it] = strcmp(ty, "regression") == 0 ? TL_TASK_REGRESSION : TL_TASK_BINARY;
                    if (set_name(&sh->l.task_name[it], rest + o2) != TL_OK) return TL_ERR_NOMEM;
                }
                it++;
            } else if (strcmp(word, "split") == 0) {
                char nm[16] = "";
                int ns;
                unsigned long long rows;
                ok = sscanf(rest, "%15s %d %llu", nm, &ns, &rows) == 3 && ns >= 0;
                for (int k = 0; ok && pass == 1 && k < 3; k++)
                    if (strcmp(nm, split_name[k]) == 0) {
                        sh->n[k] = ns;
                        sh->rows[k] = rows;
                    }
            }
            if (!ok) return tl_fail(TL_ERR_FORMAT, "%s:%d: malformed line", path, lineno);
            if (nl) *nl = '\n';
            line = nl ? nl + 1 : NULL;
        }
        if (pass == 0) {
            counts[0] = ic;
            counts[1] = ib;
            counts[2] = in;
            counts[3] = it;
            tl_status st = tl_shard_layout_init(&sh->l, counts[0], counts[2], counts[3], counts[1]);
            if (st != TL_OK) return tl_fail_context(st, "%s", path);
            sh->l.has_weight = weight;
            sh->l.has_group = group;
        }
    }
    tl_status st = layout_check(&sh->l);
    if (st != TL_OK) return tl_fail_context(st, "%s", path);
    sh->fp = layout_fingerprint(&sh->l);
    if (sh->fp != fp)
        return tl_fail(TL_ERR_FORMAT, "%s: the layout does not match its fingerprint (edited or corrupted)", path);
    sh->words = (uint32_t)tl_shard_layout_words(&sh->l);
    return TL_OK;
}

tl_status tl_shards_open(const char *dir, tl_shards **out)
{
    *out = NULL;
    tl_shards *sh = tl_calloc(1, sizeof *sh, "shards");
    if (!sh) return TL_ERR_NOMEM;
    sh->dir = tl_strdup(dir, "shard directory");
    char *mp = sh->dir ? path_join(dir, MANIFEST) : NULL;
    if (!mp) {
        tl_shards_close(sh);
        return TL_ERR_NOMEM;
    }
    size_t len;
    char *text = read_text(mp, &len);
    tl_status st = TL_OK;
    if (!text) {
        struct stat sb;
        st = stat(dir, &sb) != 0
                 ? tl_fail(TL_ERR_IO, "shards: no directory %s", dir)
                 : tl_fail(TL_ERR_STATE, "shards: %s has no %s: the conversion did not finish (run it again to resume)",
                           dir, MANIFEST);
    } else {
        st = parse_manifest(sh, text, mp);
    }
    tl_free(text);
    tl_free(mp);
    char *ep = st == TL_OK ? path_join(dir, ENCODINGS) : NULL;
    struct stat eb;
    sh->has_encodings = ep && stat(ep, &eb) == 0;
    tl_free(ep);
    char name[64];
    sh->set_fp = sh->fp;
    for (int k = 0; st == TL_OK && k < 3; k++) {
        sh->shard_rows[k] = tl_calloc((size_t)sh->n[k] + 1, sizeof *sh->shard_rows[k], "shard index");
        sh->verified[k] = tl_calloc((size_t)sh->n[k] + 1, sizeof *sh->verified[k], "shard index");
        if (!sh->shard_rows[k] || !sh->verified[k]) st = TL_ERR_NOMEM;
        uint64_t sum = 0;
        for (int i = 0; st == TL_OK && i < sh->n[k]; i++) {
            shard_name(name, sizeof name, k, i);
            char *p = path_join(dir, name);
            shard_header h;
            if (!p) st = TL_ERR_NOMEM;
            else if ((st = read_header(p, sh->fp, sh->words, &h, NULL)) == TL_OK) {
                sh->shard_rows[k][i] = h.rows;
                sum += h.rows;
                sh->set_fp = hash_bytes(&h.body_crc, 4, hash_bytes(&h.rows, 8, sh->set_fp));
            }
            tl_free(p);
        }
        if (st == TL_OK && sum != sh->rows[k])
            st = tl_fail(TL_ERR_FORMAT, "shards: %s: the %s shards hold %llu rows, the manifest says %llu", dir,
                         split_name[k], (unsigned long long)sum, (unsigned long long)sh->rows[k]);
    }
    if (st != TL_OK) {
        tl_shards_close(sh);
        return st;
    }
    *out = sh;
    return TL_OK;
}

static tl_status map_index(tl_shards *sh, int k, int i, void **map, size_t *len, const uint32_t **rows)
{
    char name[64];
    shard_name(name, sizeof name, k, i);
    char *p = path_join(sh->dir, name);
    if (!p) return TL_ERR_NOMEM;
    shard_header h;
    tl_status st = map_shard(p, sh->fp, sh->words, &sh->verified[k][i], &h, map, len);
    if (st == TL_OK && h.rows != sh->shard_rows[k][i])
        st = tl_fail(TL_ERR_FORMAT, "shard %s: changed since the directory was opened", p);
    tl_free(p);
    if (st == TL_OK) *rows = (const uint32_t *)((const char *)*map + h.header_bytes);
    return st;
}

/* Unpack n packed rows into the parts of a split at row offset `at`. */
static void unpack_rows(const tl_shard_layout *l, const uint32_t *src, size_t n, size_t at, int32_t *cat,
                        int32_t *bag, float *num, float *lab, float *wt, int32_t *grp, size_t nb)
{
    size_t nc = (size_t)l->n_cat, nn = (size_t)l->n_num, K = (size_t)l->n_tasks;
    size_t words = tl_shard_layout_words(l) - bag_words(l) + nb;
    for (size_t r = 0; r < n; r++, src += words) {
        size_t i = at + r;
        const uint32_t *p = src;
        memcpy(cat + i * nc, p, nc * 4);
        p += nc;
        if (bag) memcpy(bag + i * nb, p, nb * 4);
        p += nb;
        memcpy(num + i * nn, p, nn * 4);
        p += nn;
        memcpy(lab + i * K, p, K * 4);
        p += K;
        if (l->has_weight) memcpy(wt + i, p++, 4);
        if (l->has_group) memcpy(grp + i, p++, 4);
    }
}

tl_status tl_shards_load(tl_shards *sh, const int want[3], uint64_t max_rows, tl_dataset **out)
{
    *out = NULL;
    const tl_shard_layout *l = &sh->l;
    uint64_t n = 0;
    for (int k = 0; k < 3; k++) n += want[k] ? sh->rows[k] : 0;
    if (max_rows && n > max_rows)
        return tl_fail(TL_ERR_ARG, "shards: loading %llu rows of %s into memory is above the limit of %llu",
                       (unsigned long long)n, sh->dir, (unsigned long long)max_rows);
    tl_dataset *d;
    tl_status st = tl_data_alloc(&d, l->n_cat, l->n_num, l->n_tasks);
    size_t rows = (size_t)n ? (size_t)n : 1;
    for (int f = 0; st == TL_OK && f < l->n_cat; f++) {
        d->cat[f].kind = CAT_HASH;
        d->cat[f].size = d->vocab[f] = l->vocab[f];
        d->cat[f].buckets = l->vocab[f];
        if (!(d->cat[f].name = tl_strdup(l->cat_name[f], "dataset field"))) st = TL_ERR_NOMEM;
    }
    for (int j = 0; st == TL_OK && j < l->n_num; j++) {
        d->num[j].transform = TL_NUM_NONE;
        d->num[j].std = 1;
        if (!(d->num[j].name = tl_strdup(l->num_name[j], "dataset field"))) st = TL_ERR_NOMEM;
    }
    for (int t = 0; st == TL_OK && t < l->n_tasks; t++) {
        d->task_type[t] = l->task_type[t];
        if (!(d->task_name[t] = tl_strdup(l->task_name[t], "dataset task"))) st = TL_ERR_NOMEM;
    }
    if (st == TL_OK && l->n_bag) st = tl_data_alloc_bags(d, l->n_bag);
    for (int b = 0; st == TL_OK && b < l->n_bag; b++) {
        dbag *g = &d->bag[b];
        g->c.kind = CAT_HASH; /* ids without strings, as the single fields */
        g->c.size = l->bag_vocab[b];
        g->c.buckets = l->bag_vocab[b] - 1;
        g->len = l->bag_len[b];
        g->pool = (int)l->bag_pool[b];
        d->bag_slots += g->len;
        if (!(g->c.name = tl_strdup(l->bag_name[b], "dataset field"))) st = TL_ERR_NOMEM;
    }
    if (st == TL_OK && l->n_bag && !(d->bagv = tl_malloc(rows * (size_t)d->bag_slots * 4, "dataset rows")))
        st = TL_ERR_NOMEM;
    if (st == TL_OK) {
        d->source = tl_strdup(sh->dir, "dataset source");
        d->catv = tl_malloc(rows * ((size_t)l->n_cat + 1) * 4, "dataset rows");
        d->numv = tl_malloc(rows * ((size_t)l->n_num + 1) * 4, "dataset rows");
        d->labv = tl_malloc(rows * (size_t)l->n_tasks * 4, "dataset rows");
        d->row = tl_malloc(rows * 4, "dataset rows");
        if (l->has_weight) d->wt = tl_malloc(rows * 4, "dataset rows");
        if (l->has_group) d->grp = tl_malloc(rows * 4, "dataset rows");
        if (!d->source || !d->catv || !d->numv || !d->labv || !d->row || (l->has_weight && !d->wt) ||
            (l->has_group && !d->grp))
            st = TL_ERR_NOMEM;
    }
    size_t at = 0;
    for (int k = 0; st == TL_OK && k < 3; k++) {
        if (!want[k]) continue;
        size_t split_at = at;
        for (int i = 0; st == TL_OK && i < sh->n[k]; i++) {
            void *map;
            size_t len;
            const uint32_t *src;
            if ((st = map_index(sh, k, i, &map, &len, &src)) != TL_OK) break;
            size_t r = (size_t)sh->shard_rows[k][i];
            unpack_rows(l, src, r, at, d->catv, d->bagv, d->numv, d->labv, d->wt, d->grp, bag_words(l));
            for (size_t j = 0; j < r; j++) d->row[at + j] = (uint32_t)(at + j - split_at);
            munmap(map, len);
            at += r;
        }
        d->split_n[k] = (size_t)sh->rows[k];
    }
    if (st == TL_OK && sh->has_encodings) {
        char *ep = path_join(sh->dir, ENCODINGS);
        st = ep ? tl_data_encodings_read(ep, sh->fp, d) : TL_ERR_NOMEM;
        tl_free(ep);
    }
    d->ids_only = !sh->has_encodings;
    if (st != TL_OK) {
        tl_dataset_free(d);
        return st;
    }
    d->n = (size_t)n;
    d->has_splits = 1;
    tl_data_set_views(d);
    *out = d;
    return TL_OK;
}

/* ---- stream ---------------------------------------------------------------------------- */

struct tl_stream {
    tl_shards *sh;
    int split, shuffle;
    uint64_t seed;
    size_t words, cap;   /* words per row in the shards; shuffle-buffer rows */
    size_t bwords, nbag; /* words per buffered row, and its bag words (0 without TL_STREAM_BAGS) */
    uint32_t *buf;       /* cap x words */
    size_t nbuf;
    tl_rng rng;
    uint32_t *order;     /* shard order of the epoch */
    int next_shard;      /* in order */
    int first, stride;   /* the shard files read: first, first + stride, ... */
    int n_order;         /* how many */
    uint64_t rows;       /* their rows */
    void *map;           /* the shard being read */
    size_t map_len;
    const uint32_t *src;
    size_t src_rows, src_pos;
    int filled;          /* the buffer was filled this epoch */
    int cap_batch;
    int32_t *cat, *bag, *grp;
    float *num, *lab, *wt;
};

size_t tl_stream_bytes(const tl_stream *st)
{
    const tl_shard_layout *l = &st->sh->l;
    return st->cap * st->bwords * 4 + (size_t)st->cap_batch * (st->words + (size_t)l->n_cat + 8) * 4 +
           (size_t)(st->sh->n[st->split] + 1) * 4;
}

uint64_t tl_stream_rows(const tl_stream *st) { return st->rows; }

uint64_t tl_shards_grain_rows(const tl_shards *sh, int split, int first, int stride)
{
    uint64_t n = 0;
    for (int i = first; split >= 0 && split <= 2 && i >= 0 && stride > 0 && i < sh->n[split]; i += stride)
        n += sh->shard_rows[split][i];
    return n;
}
const tl_shard_layout *tl_stream_layout(const tl_stream *st) { return &st->sh->l; }

static void unmap_current(tl_stream *st)
{
    if (st->map) munmap(st->map, st->map_len);
    st->map = NULL;
    st->src = NULL;
    st->src_rows = st->src_pos = 0;
}

void tl_stream_close(tl_stream *st)
{
    if (!st) return;
    unmap_current(st);
    tl_free(st->buf);
    tl_free(st->order);
    tl_free(st->cat);
    tl_free(st->bag);
    tl_free(st->grp);
    tl_free(st->num);
    tl_free(st->lab);
    tl_free(st->wt);
    tl_free(st);
}

tl_status tl_stream_reserve(tl_stream *st, int max_rows)
{
    if (max_rows <= st->cap_batch) return TL_OK;
    const tl_shard_layout *l = &st->sh->l;
    size_t n = (size_t)max_rows;
    tl_free(st->cat);
    tl_free(st->bag);
    tl_free(st->grp);
    tl_free(st->num);
    tl_free(st->lab);
    tl_free(st->wt);
    st->cat = tl_malloc(n * ((size_t)l->n_cat + 1) * 4, "stream batch");
    st->bag = tl_malloc(n * (bag_words(l) + 1) * 4, "stream batch");
    st->num = tl_malloc(n * ((size_t)l->n_num + 1) * 4, "stream batch");
    st->lab = tl_malloc(n * (size_t)l->n_tasks * 4, "stream batch");
    st->wt = l->has_weight ? tl_malloc(n * 4, "stream batch") : NULL;
    st->grp = l->has_group ? tl_malloc(n * 4, "stream batch") : NULL;
    st->cap_batch = 0;
    if (!st->cat || !st->bag || !st->num || !st->lab || (l->has_weight && !st->wt) || (l->has_group && !st->grp))
        return TL_ERR_NOMEM;
    st->cap_batch = max_rows;
    return TL_OK;
}

tl_status tl_stream_open(tl_shards *sh, int split, uint64_t seed, size_t buffer_rows, int flags,
                         tl_stream **out)
{
    return tl_stream_open_part(sh, split, seed, buffer_rows, flags, 0, 1, out);
}

tl_status tl_stream_open_part(tl_shards *sh, int split, uint64_t seed, size_t buffer_rows, int flags, int first,
                              int stride, tl_stream **out)
{
    int shuffle = flags & TL_STREAM_SHUFFLE;
    *out = NULL;
    if (split < 0 || split > 2) return tl_fail(TL_ERR_ARG, "stream: bad split %d", split);
    if (sh->rows[split] == 0)
        return tl_fail(TL_ERR_ARG, "stream: %s has no %s rows", sh->dir, split_name[split]);
    if (first < 0 || stride < 1 || first >= sh->n[split])
        return tl_fail(TL_ERR_ARG, "stream: shard files %d, %d + %d, ... of %s's %d %s shards", first, first, stride,
                       sh->dir, sh->n[split], split_name[split]);
    tl_stream *st = tl_calloc(1, sizeof *st, "stream");
    if (!st) return TL_ERR_NOMEM;
    st->first = first;
    st->stride = stride;
    st->n_order = (sh->n[split] - first + stride - 1) / stride;
    st->rows = tl_shards_grain_rows(sh, split, first, stride);
    st->sh = sh;
    st->split = split;
    st->seed = seed;
    st->shuffle = shuffle;
    st->words = sh->words;
    st->nbag = flags & TL_STREAM_BAGS ? bag_words(&sh->l) : 0;
    st->bwords = st->words - bag_words(&sh->l) + st->nbag;
    st->cap = shuffle ? (buffer_rows ? buffer_rows : DEFAULT_BUFFER_ROWS) : 1;
    st->buf = tl_malloc(st->cap * st->bwords * 4, "shuffle buffer");
    st->order = tl_malloc(((size_t)sh->n[split] + 1) * 4, "shard order");
    tl_status s = st->buf && st->order ? tl_stream_reserve(st, 256) : TL_ERR_NOMEM;
    if (s == TL_OK) s = tl_stream_begin(st, 0);
    if (s != TL_OK) {
        tl_stream_close(st);
        return s;
    }
    *out = st;
    return TL_OK;
}

tl_status tl_stream_open_like(const tl_stream *like, int first, int stride, uint64_t seed, tl_stream **out)
{
    int flags = (like->shuffle ? TL_STREAM_SHUFFLE : 0) | (like->nbag ? TL_STREAM_BAGS : 0);
    return tl_stream_open_part(like->sh, like->split, seed, like->shuffle ? like->cap : 0, flags, first, stride, out);
}

tl_shards *tl_stream_shards(const tl_stream *st) { return st->sh; }
int tl_stream_split(const tl_stream *st) { return st->split; }
uint64_t tl_stream_seed(const tl_stream *st) { return st->seed; }
int tl_stream_shuffled(const tl_stream *st) { return st->shuffle != 0; }
size_t tl_stream_buffer(const tl_stream *st) { return st->cap; }

tl_status tl_stream_begin(tl_stream *st, int epoch)
{
    unmap_current(st);
    int n = st->n_order;
    for (int i = 0; i < n; i++) st->order[i] = (uint32_t)(st->first + i * st->stride);
    tl_rng_seed(&st->rng, st->seed ^ fmix64((uint64_t)(uint32_t)epoch + XXH_P3));
    if (st->shuffle) tl_rng_shuffle_u32(&st->rng, st->order, (size_t)n);
    st->next_shard = 0;
    st->nbuf = 0;
    st->filled = 0;
    return TL_OK;
}

/* The next source row, mapping the next shard when the current one is done;
 * NULL at the end of the epoch's shards (or on error: *err set). */
static const uint32_t *source_row(tl_stream *st, tl_status *err)
{
    while (st->src_pos == st->src_rows) {
        unmap_current(st);
        if (st->next_shard >= st->n_order) return NULL;
        int i = (int)st->order[st->next_shard++];
        if ((*err = map_index(st->sh, st->split, i, &st->map, &st->map_len, &st->src)) != TL_OK) return NULL;
        st->src_rows = (size_t)st->sh->shard_rows[st->split][i];
    }
    return st->src + st->src_pos++ * st->words;
}

/* Copy a shard row into a buffer row (its bag words only when kept). */
static void buffer_row(const tl_stream *st, uint32_t *dst, const uint32_t *src)
{
    if (st->bwords == st->words) {
        memcpy(dst, src, st->words * 4);
        return;
    }
    size_t nc = (size_t)st->sh->l.n_cat, skip = st->words - st->bwords;
    memcpy(dst, src, nc * 4);
    memcpy(dst + nc, src + nc + skip, (st->bwords - nc) * 4);
}

tl_status tl_stream_next(tl_stream *st, int max_rows, tl_split *batch, const int32_t **bags, int *got)
{
    *got = 0;
    if (max_rows > st->cap_batch)
        return tl_fail(TL_ERR_ARG, "stream: %d rows asked, %d reserved", max_rows, st->cap_batch);
    const tl_shard_layout *l = &st->sh->l;
    tl_status err = TL_OK;
    int32_t *bag = st->nbag ? st->bag : NULL;
    int n = 0;
    if (st->cap > 1 && !st->filled) {
        const uint32_t *r;
        while (st->nbuf < st->cap && (r = source_row(st, &err))) buffer_row(st, st->buf + st->nbuf++ * st->bwords, r);
        st->filled = 1;
        if (err != TL_OK) return err;
    }
    for (; n < max_rows; n++) {
        const uint32_t *row;
        if (st->cap <= 1) {
            if (!(row = source_row(st, &err))) break;
            unpack_rows(l, row, 1, (size_t)n, st->cat, bag, st->num, st->lab, st->wt, st->grp, bag_words(l));
            continue;
        }
        if (st->nbuf == 0) break;
        size_t j = (size_t)tl_rng_below(&st->rng, st->nbuf);
        uint32_t *slot = st->buf + j * st->bwords;
        unpack_rows(l, slot, 1, (size_t)n, st->cat, bag, st->num, st->lab, st->wt, st->grp, st->nbag);
        const uint32_t *r = source_row(st, &err);
        if (err != TL_OK) return err;
        if (r) buffer_row(st, slot, r);
        else if (j != --st->nbuf) memcpy(slot, st->buf + st->nbuf * st->bwords, st->bwords * 4);
    }
    if (err != TL_OK) return err;
    memset(batch, 0, sizeof *batch);
    batch->name = split_name[st->split];
    batch->n = (size_t)n;
    batch->cat = st->cat;
    batch->num = st->num;
    batch->labels = st->lab;
    batch->weight = st->wt;
    batch->group = st->grp;
    batch->bag = bag;
    batch->bag_slots = bag ? (int)st->nbag : 0;
    if (bags) *bags = bag;
    *got = n;
    return TL_OK;
}
