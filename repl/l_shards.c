/* l_shards.c — sharded data from Lua: tl.data.convert (a dataset into
 * shards), tl.data.synthetic_ccp (the Ali-CCP-shaped stream straight into
 * shards), tl.data.shards (open them: a stream of the train split, the valid
 * and test splits in memory) and m:fit{data=sh} (tl_model_fit_stream), with
 * progress lines: redrawn in place at a terminal, one line every `log_every`
 * seconds otherwise. */
#include "l_shards.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "diagnose.h"
#include "dist.h"
#include "io.h"
#include "l_data.h"
#include "l_leakage.h"
#include "l_model.h"
#include "l_mpi.h"
#include "l_spec.h"
#include "l_util.h"
#include "model.h"

#define TL_SHARDS_MT "tl.shards"

typedef struct {
    tl_shards *sh;
    tl_stream *st;
    uint64_t seed;
    size_t buffer;
    int shuffle;
    int busy;
} shards_ud;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- progress lines ---------------------------------------------------------- */

typedef struct {
    const char *what;
    int tty, quiet;
    double t0, last, every;
    uint64_t at0;       /* rows done when the run started (a resume) */
    int open;           /* a line is drawn at a terminal */
} progress_line;

static void progress_init(progress_line *p, const char *what, int quiet, double every)
{
    memset(p, 0, sizeof *p);
    p->what = what;
    p->quiet = quiet;
    p->tty = tl_lua_stdout_is_tty();
    p->t0 = p->last = now();
    p->every = every;
    p->at0 = UINT64_MAX;
}

static void eta_str(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%d:%02d:%02d", (int)(s / 3600), (int)fmod(s / 60, 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%d:%02d", (int)(s / 60), (int)fmod(s, 60));
}

/* "<what> 1234567/10000000 rows (12%)  850123 rows/s  ETA 0:10<tail>" */
static void progress_show(progress_line *p, uint64_t done, uint64_t total, const char *tail, int final)
{
    if (p->quiet) return;
    double t = now();
    if (p->at0 == UINT64_MAX) p->at0 = done;
    if (!final && (done == p->at0 || t - p->last < (p->tty ? 0.2 : p->every))) return; /* no rate yet, or not due */
    p->last = t;
    double rate = t > p->t0 ? (double)(done - p->at0) / (t - p->t0) : 0;
    char eta[32];
    eta_str(eta, sizeof eta, final ? t - p->t0 : rate > 0 && total ? (double)(total - done) / rate : (double)NAN);
    printf("%s%s %llu/%llu rows (%d%%)  %.0f rows/s  %s %s%s", p->tty ? "\r\033[K" : "", p->what ? p->what : "",
           (unsigned long long)done, (unsigned long long)total, total ? (int)(100 * done / total) : 0, rate,
           final ? "took" : "ETA", eta, tail ? tail : "");
    if (!p->tty || final) printf("\n");
    p->open = p->tty && !final;
    fflush(stdout);
}

static void progress_close(progress_line *p)
{
    if (p->open) printf("\n");
    p->open = 0;
}

static int convert_progress(void *ud, uint64_t done, uint64_t total)
{
    progress_line *p = ud;
    progress_show(p, done, total, NULL, done == total);
    return 0;
}

/* ---- the shards object --------------------------------------------------------- */

static shards_ud *check_shards(lua_State *L, int idx)
{
    shards_ud *u = luaL_checkudata(L, idx, TL_SHARDS_MT);
    if (!u->sh) luaL_error(L, "shards: the object is closed");
    return u;
}

int tl_lua_is_shards(lua_State *L, int idx) { return luaL_testudata(L, idx, TL_SHARDS_MT) != NULL; }

static int sh_close(lua_State *L)
{
    shards_ud *u = luaL_checkudata(L, 1, TL_SHARDS_MT);
    if (u->busy) return luaL_error(L, "shards: in use by m:fit");
    tl_stream_close(u->st);
    tl_shards_close(u->sh);
    u->st = NULL;
    u->sh = NULL;
    return 0;
}

static int sh_gc(lua_State *L)
{
    shards_ud *u = luaL_checkudata(L, 1, TL_SHARDS_MT);
    tl_stream_close(u->st);
    tl_shards_close(u->sh);
    u->st = NULL;
    u->sh = NULL;
    return 0;
}

static const char *const split_names[3] = {"train", "valid", "test"};

static int sh_tostring(lua_State *L)
{
    shards_ud *u = check_shards(L, 1);
    const tl_shard_layout *l = tl_shards_layout(u->sh);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char line[512];
    snprintf(line, sizeof line, "shards %s: train %llu rows in %d shards, valid %llu, test %llu; %d categorical, %d "
                                "multi-valued, %d numeric; tasks",
             tl_shards_dir(u->sh), (unsigned long long)tl_shards_rows(u->sh, 0), tl_shards_count(u->sh, 0),
             (unsigned long long)tl_shards_rows(u->sh, 1), (unsigned long long)tl_shards_rows(u->sh, 2), l->n_cat,
             l->n_bag, l->n_num);
    luaL_addstring(&b, line);
    for (int t = 0; t < l->n_tasks; t++) {
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, l->task_name[t]);
    }
    snprintf(line, sizeof line, "; shuffle buffer %zu rows, seed %llu", u->shuffle ? u->buffer : 0,
             (unsigned long long)u->seed);
    luaL_addstring(&b, line);
    luaL_pushresult(&b);
    return 1;
}

static int sh_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)tl_shards_rows(check_shards(L, 1)->sh, 0));
    return 1;
}

/* sh.data (the in-memory valid and test rows, with the layout for tl.model),
 * sh.valid, sh.test, sh.dir, sh.rows, sh.train (the object itself); methods. */
static int sh_index(lua_State *L)
{
    shards_ud *u = check_shards(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "data") == 0 || strcmp(k, "valid") == 0 || strcmp(k, "test") == 0) {
        lua_getiuservalue(L, 1, 1);
        if (strcmp(k, "data") != 0) lua_getfield(L, -1, k);
        return 1;
    }
    if (strcmp(k, "train") == 0) {
        lua_pushvalue(L, 1);
        return 1;
    }
    if (strcmp(k, "dir") == 0) {
        lua_pushstring(L, tl_shards_dir(u->sh));
        return 1;
    }
    if (strcmp(k, "rows") == 0) {
        lua_newtable(L);
        for (int s = 0; s < 3; s++) {
            lua_pushinteger(L, (lua_Integer)tl_shards_rows(u->sh, s));
            lua_setfield(L, -2, split_names[s]);
        }
        return 1;
    }
    luaL_getmetatable(L, TL_SHARDS_MT);
    lua_getfield(L, -1, "__methods");
    lua_getfield(L, -1, k);
    return 1;
}

static const char *const open_fields[] = {"dir", "seed", "buffer", "shuffle", "max_memory_rows", NULL};

/* Push a shards object for dir (options table at opt, or 0). */
static int push_shards(lua_State *L, const char *dir, int opt)
{
    const char *fn = "tl.data.shards";
    uint64_t seed = opt ? (uint64_t)tl_lua_opt_int(L, opt, fn, "seed", 1, 0, INT64_MAX) : 1;
    size_t buffer = opt ? (size_t)tl_lua_opt_int(L, opt, fn, "buffer", 65536, 2, 1 << 26) : 65536;
    int shuffle = opt ? tl_lua_opt_bool(L, opt, fn, "shuffle", 1) : 1;
    uint64_t max_rows = opt ? (uint64_t)tl_lua_opt_int(L, opt, fn, "max_memory_rows", 20000000, 0, INT64_MAX)
                            : 20000000;
    shards_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, TL_SHARDS_MT);
    int ui = lua_gettop(L);
    u->seed = seed;
    u->buffer = buffer;
    u->shuffle = shuffle;
    tl_status st = tl_shards_open(dir, &u->sh);
    if (st != TL_OK) return tl_lua_raise_status(L, fn, st);
    tl_dataset **slot = tl_lua_new_dataset(L);
    if ((st = tl_shards_load(u->sh, (int[3]){0, 1, 1}, max_rows, slot)) != TL_OK) return tl_lua_raise_status(L, fn, st);
    tl_lua_note_alloc(L, tl_dataset_bytes(*slot));
    lua_setiuservalue(L, ui, 1);
    /* a model built on sh.data has the multi-valued fields: the stream keeps them */
    int flags = (shuffle ? TL_STREAM_SHUFFLE : 0) | (tl_shards_layout(u->sh)->n_bag ? TL_STREAM_BAGS : 0);
    if ((st = tl_stream_open(u->sh, 0, seed, buffer, flags, &u->st)) != TL_OK) return tl_lua_raise_status(L, fn, st);
    tl_lua_note_alloc(L, tl_stream_bytes(u->st));
    lua_settop(L, ui);
    return 1;
}

/* tl.data.shards{dir=, seed=1, buffer=65536, shuffle=true} or tl.data.shards(dir) */
static int l_shards(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) return push_shards(L, lua_tostring(L, 1), 0);
    luaL_checktype(L, 1, LUA_TTABLE);
    tl_lua_check_fields(L, 1, "tl.data.shards", open_fields);
    const char *dir = tl_lua_opt_string(L, 1, "tl.data.shards", "dir", NULL);
    if (!dir) return luaL_error(L, "tl.data.shards: field 'dir' is required (a directory of shards)");
    return push_shards(L, dir, 1);
}

static const char *const convert_fields[] = {"rows_per_shard", "verbose", "log_every", "seed", "buffer", "shuffle",
                                             "stream", "max_vocab", "auto_hash", "hash_buckets", NULL};

/* Two progress lines, one a pass. */
typedef struct {
    progress_line line[2];
    int pass;
} csv_progress;

static int csv_convert_progress(void *ud, int pass, uint64_t done, uint64_t total)
{
    csv_progress *p = ud;
    if (pass != p->pass) {
        if (p->pass) progress_close(&p->line[p->pass - 1]);
        p->pass = pass;
        p->line[pass - 1].t0 = p->line[pass - 1].last = now();
    }
    progress_show(&p->line[pass - 1], done, total, pass == 1 ? "  (rows estimated from the bytes)" : NULL,
                  pass == 2 && done == total);
    return 0;
}

/* The second result of a CSV conversion: {rows=, resumed=, skipped=, skipped_lines=, hashed={...}}. */
static void push_report(lua_State *L, const tl_convert_report *r)
{
    lua_newtable(L);
    const char *keys[2] = {"rows", "resumed"};
    for (int w = 0; w < 2; w++) {
        lua_newtable(L);
        for (int k = 0; k < 3; k++) {
            lua_pushinteger(L, (lua_Integer)(w ? r->resumed[k] : r->rows[k]));
            lua_setfield(L, -2, split_names[k]);
        }
        lua_setfield(L, -2, keys[w]);
    }
    lua_pushinteger(L, (lua_Integer)r->skipped);
    lua_setfield(L, -2, "skipped");
    lua_newtable(L);
    for (int i = 0; i < r->n_skip_lines; i++) {
        lua_pushinteger(L, (lua_Integer)r->skip_lines[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "skipped_lines");
    lua_newtable(L);
    for (int i = 0; i < r->n_hashed; i++) {
        const tl_convert_hashed *h = &r->hashed[i];
        lua_newtable(L);
        lua_pushinteger(L, h->buckets);
        lua_setfield(L, -2, "buckets");
        lua_pushinteger(L, h->values);
        lua_setfield(L, -2, "values");
        lua_pushnumber(L, h->values ? (double)h->collided / h->values : 0.0);
        lua_setfield(L, -2, "collisions");
        lua_pushboolean(L, h->auto_at != 0);
        lua_setfield(L, -2, "auto");
        if (h->auto_at) {
            lua_pushinteger(L, (lua_Integer)h->auto_at);
            lua_setfield(L, -2, "auto_at");
            lua_pushinteger(L, (lua_Integer)h->auto_rows);
            lua_setfield(L, -2, "auto_rows");
        }
        lua_setfield(L, -2, h->name);
    }
    lua_setfield(L, -2, "hashed");
}

/* What a CSV conversion prints: skipped rows (stderr, as tl.data.csv) and
 * the hashed fields' estimated collision rates. */
static void print_report(const tl_convert_report *r, const char *source, int quiet)
{
    if (r->skipped) {
        fprintf(stderr, "tl.data.convert: skipped %zu bad row%s of %s (line%s", r->skipped, r->skipped == 1 ? "" : "s",
                source, r->n_skip_lines == 1 ? "" : "s");
        for (int i = 0; i < r->n_skip_lines; i++)
            fprintf(stderr, "%s %llu", i ? "," : "", (unsigned long long)r->skip_lines[i]);
        fprintf(stderr, "%s)\n", (size_t)r->n_skip_lines < r->skipped ? ", ..." : "");
    }
    for (int i = 0; i < r->n_hashed && !quiet; i++) {
        const tl_convert_hashed *h = &r->hashed[i];
        if (h->auto_at)
            printf("tl.data.convert: field '%s' hashed automatically: %u distinct values after %llu rows (> "
                   "auto_hash), %d buckets, ~%.1f%% of its ~%u values collide\n",
                   h->name, h->auto_at, (unsigned long long)h->auto_rows, (int)h->buckets,
                   h->values ? 100.0 * h->collided / h->values : 0.0, h->values);
    }
    if (quiet || !r->n_hashed) return;
    printf("hashed (estimated from the buckets used):");
    for (int i = 0; i < r->n_hashed && i < 4; i++) {
        const tl_convert_hashed *h = &r->hashed[i];
        printf("%s %s ~%u values, ~%.1f%% collide in %d buckets", i ? "," : "", h->name, h->values,
               h->values ? 100.0 * h->collided / h->values : 0.0, (int)h->buckets);
    }
    printf("%s\n", r->n_hashed > 4 ? ", ..." : "");
    fflush(stdout);
}

/* tl.data.csv's label-leakage warning (l_leakage.c) for a streamed
 * conversion: its training rows are on disk, so on the valid split in memory
 * (else test). */
static void leakage_warn(const tl_dataset *d, const tl_data_schema *schema)
{
    const tl_split *s = tl_dataset_split(d, "valid");
    if (!s || s->n == 0) s = tl_dataset_split(d, "test");
    int K = tl_dataset_n_tasks(d);
    if (!s || s->n == 0 || K > TL_MAX_TASKS) return;
    const char *cols[TL_MAX_TASKS] = {NULL};
    for (int t = 0; t < K; t++)
        for (int i = 0; i < schema->n_labels; i++)
            if (schema->labels[i].keep && strcmp(schema->labels[i].task, tl_dataset_task_name(d, t)) == 0)
                cols[t] = schema->labels[i].column;
    tl_leak_row *rows = NULL;
    size_t n = 0;
    if (tl_diagnose_leakage(d, s, cols, TL_LUA_LEAK_THRESHOLD, &rows, &n) != TL_OK) {
        tl_clear_error();
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const tl_leak_row *r = &rows[i];
        if (!r->leak) continue;
        if (r->source)
            fprintf(stderr, "tl.data.convert: warning: feature '%s' is the label source column of task '%s' (kept "
                            "with keep=true): label leakage\n",
                    r->feature, tl_dataset_task_name(d, r->task));
        else
            fprintf(stderr, "tl.data.convert: warning: feature '%s' predicts task '%s' almost perfectly on the %s "
                            "split (single-feature AUC %.4f): label leakage?\n",
                    r->feature, tl_dataset_task_name(d, r->task), s->name, r->auc);
    }
    tl_diagnose_leakage_free(rows);
}

/* tl.data.convert with a tl.data.csv spec at 1: streamed (tl_shards_convert_csv). */
static int convert_csv(lua_State *L, const char *dir, int opt, size_t per, int quiet, double every)
{
    const char *fn = "tl.data.convert";
    lua_newtable(L);
    int anchor = lua_gettop(L);
    tl_data_schema s;
    tl_lua_csv_schema(L, 1, anchor, fn, &s);
    s.max_vocab = opt ? (size_t)tl_lua_opt_int(L, opt, fn, "max_vocab", 10000000, 0, INT64_MAX) : 10000000;
    /* auto_hash = N distinct values (default 1e6), or false: never */
    s.auto_hash = 1000000;
    if (opt && lua_getfield(L, opt, "auto_hash") != LUA_TNIL) {
        if (lua_isboolean(L, -1)) {
            if (lua_toboolean(L, -1)) luaL_error(L, "%s: auto_hash= is a number of distinct values or false", fn);
            s.auto_hash = 0;
        } else {
            s.auto_hash = (size_t)tl_lua_opt_int(L, opt, fn, "auto_hash", 1000000, 1, INT32_MAX - 1);
        }
    }
    if (opt) lua_pop(L, 1);
    s.auto_hash_buckets = opt ? (int)tl_lua_opt_int(L, opt, fn, "hash_buckets", 0, 1, INT32_MAX - 1) : 0;
    csv_progress p;
    memset(&p, 0, sizeof p);
    progress_init(&p.line[0], "convert: pass 1/2, reading", quiet, every);
    progress_init(&p.line[1], "convert: pass 2/2, writing", quiet, every);
    tl_convert_report *r = lua_newuserdatauv(L, sizeof *r, 0);
    int ri = lua_gettop(L);
    tl_status st = tl_shards_convert_csv(&s, dir, per, csv_convert_progress, &p, r);
    if (p.pass) progress_close(&p.line[p.pass - 1]);
    if (st == TL_ERR_CANCELLED && tl_cancelled()) lua_sethook(L, NULL, 0, 0);
    if (st != TL_OK) return tl_lua_raise_status(L, fn, st);
    const char *base = strrchr(s.path, '/');
    print_report(r, s.name ? s.name : base ? base + 1 : s.path, quiet);
    push_shards(L, dir, opt);
    lua_getiuservalue(L, -1, 1);
    leakage_warn(tl_lua_check_dataset(L, -1), &s);
    lua_pop(L, 1);
    push_report(L, r);
    lua_remove(L, ri);
    return 2;
}

/* tl.data.convert(d or csv_spec, dir [, {rows_per_shard=262144, verbose=true, log_every=10, stream=true,
 *                                       max_vocab=1e7}])
 *   -> shards (and, for a csv spec streamed, a report) */
static int l_convert(lua_State *L)
{
    const char *fn = "tl.data.convert";
    const char *dir = luaL_checkstring(L, 2);
    int opt = lua_istable(L, 3) ? 3 : 0;
    if (opt) tl_lua_check_fields(L, opt, fn, convert_fields);
    size_t per = opt ? (size_t)tl_lua_opt_int(L, opt, fn, "rows_per_shard", 262144, 1, 1 << 30) : 262144;
    int quiet = opt ? !tl_lua_opt_bool(L, opt, fn, "verbose", 1) : 0;
    double every = opt ? tl_lua_opt_number(L, opt, fn, "log_every", 10, 0, 1e9) : 10;
    int stream = opt ? tl_lua_opt_bool(L, opt, fn, "stream", 1) : 1;
    if (lua_type(L, 1) == LUA_TTABLE) {
        int has_like = lua_getfield(L, 1, "like") != LUA_TNIL;
        lua_pop(L, 1);
        if (stream && !has_like) return convert_csv(L, dir, opt, per, quiet, every);
        /* like= (rows read with another dataset's encodings) or stream=false:
         * load it with tl.data.csv, then convert the dataset */
        lua_getfield(L, LUA_REGISTRYINDEX, TL_LIB_KEY);
        lua_getfield(L, -1, "data");
        lua_getfield(L, -1, "csv");
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
        lua_replace(L, 1);
        lua_pop(L, 2);
    }
    tl_dataset *d = tl_lua_check_dataset(L, 1);
    progress_line p;
    progress_init(&p, "convert", quiet, every);
    tl_status st = tl_shards_convert(d, dir, per, convert_progress, &p);
    progress_close(&p);
    if (st == TL_ERR_CANCELLED && tl_cancelled()) lua_sethook(L, NULL, 0, 0);
    if (st != TL_OK) return tl_lua_raise_status(L, fn, st);
    return push_shards(L, dir, opt);
}

static const char *const ccp_fields[] = {"dir",   "rows",   "valid",    "test",  "seed",      "ctr",
                                         "cvr",   "zipf",   "id_scale", "signal", "rows_per_shard",
                                         "verbose", "log_every", "buffer", "shuffle", NULL};

/* tl.data.synthetic_ccp{dir=, rows=1e6, valid=rows/100, test=rows/100, seed=1, ctr=0.04, cvr=0.005, ...} */
static int l_synthetic_ccp(lua_State *L)
{
    const char *fn = "tl.data.synthetic_ccp";
    luaL_checktype(L, 1, LUA_TTABLE);
    tl_lua_check_fields(L, 1, fn, ccp_fields);
    const char *dir = tl_lua_opt_string(L, 1, fn, "dir", NULL);
    if (!dir) return luaL_error(L, "%s: field 'dir' is required (where the shards go)", fn);
    tl_synth_ccp_params p;
    tl_synth_ccp_defaults(&p);
    uint64_t rows[3];
    rows[0] = (uint64_t)tl_lua_opt_int(L, 1, fn, "rows", 1000000, 1, INT64_MAX);
    rows[1] = (uint64_t)tl_lua_opt_int(L, 1, fn, "valid", (lua_Integer)(rows[0] / 100 ? rows[0] / 100 : 1), 0, INT64_MAX);
    rows[2] = (uint64_t)tl_lua_opt_int(L, 1, fn, "test", (lua_Integer)(rows[0] / 100 ? rows[0] / 100 : 1), 0, INT64_MAX);
    p.seed = (uint64_t)tl_lua_opt_int(L, 1, fn, "seed", 1, 0, INT64_MAX);
    p.ctr = tl_lua_opt_number(L, 1, fn, "ctr", p.ctr, 1e-9, 0.5);
    p.cvr = tl_lua_opt_number(L, 1, fn, "cvr", p.cvr, 1e-9, 0.5);
    p.zipf = tl_lua_opt_number(L, 1, fn, "zipf", p.zipf, 0.5, 3);
    p.id_scale = tl_lua_opt_number(L, 1, fn, "id_scale", p.id_scale, 1e-4, 100);
    p.signal = tl_lua_opt_number(L, 1, fn, "signal", p.signal, 0, 3);
    size_t per = (size_t)tl_lua_opt_int(L, 1, fn, "rows_per_shard", 262144, 1, 1 << 30);
    progress_line pl;
    progress_init(&pl, "synthetic_ccp", !tl_lua_opt_bool(L, 1, fn, "verbose", 1),
                  tl_lua_opt_number(L, 1, fn, "log_every", 10, 0, 1e9));
    tl_status st = tl_data_synth_ccp_shards(&p, rows, dir, per, convert_progress, &pl);
    progress_close(&pl);
    if (st == TL_ERR_CANCELLED && tl_cancelled()) lua_sethook(L, NULL, 0, 0);
    if (st != TL_OK) return tl_lua_raise_status(L, fn, st);
    return push_shards(L, dir, 1);
}

/* ---- m:fit{data=sh} --------------------------------------------------------------- */

typedef struct {
    const tl_model_config *c;
    progress_line line;
    uint64_t rows, batch;
    int quiet;
    lua_State *L;
    tl_model *m;
    int callback_idx;      /* progress=function(p): false or "stop" stops */
    const char *ckpt_path; /* checkpoint=: saved at epoch ends, every `ckpt_every` steps and at a stop */
    int64_t ckpt_every;
    int ckpt_here;         /* rank 0 of a data-parallel fit writes */
    char error[512];
} fit_line;

/* progress=function(p): p = {kind=, epoch=, step=, loss={task=...}};
 * returning false or "stop" stops the fit (its place is kept). */
static int stream_callback(fit_line *x, const tl_progress *p)
{
    lua_State *L = x->L;
    lua_pushvalue(L, x->callback_idx);
    lua_newtable(L);
    lua_pushstring(L, p->kind == TL_PROGRESS_EPOCH ? "epoch" : "step");
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, p->epoch);
    lua_setfield(L, -2, "epoch");
    lua_pushinteger(L, p->step);
    lua_setfield(L, -2, "step");
    lua_newtable(L);
    for (int k = 0; k < x->c->n_tasks; k++) {
        lua_pushnumber(L, p->loss[k]);
        lua_setfield(L, -2, x->c->tasks[k].name);
    }
    lua_setfield(L, -2, "loss");
    return tl_lua_progress_call(L, x->error, sizeof x->error);
}

static int stream_progress(void *ud, const tl_progress *p)
{
    fit_line *x = ud;
    /* as m:fit on a split: no step checkpoint at an epoch's last batch (the
     * epoch-end call that follows saves it closed) */
    if (x->ckpt_path && x->ckpt_here &&
        (p->kind == TL_PROGRESS_EPOCH || (x->ckpt_every > 0 && p->step % x->ckpt_every == 0 &&
                                          p->batch_in_epoch < p->batches_per_epoch)) &&
        tl_model_save(x->m, x->ckpt_path) != TL_OK) {
        snprintf(x->error, sizeof x->error, "checkpoint: %s", tl_errmsg());
        return 1;
    }
    if (x->callback_idx && !tl_cancelled() && stream_callback(x, p)) return 1;
    if (x->quiet) return 0;
    char tail[256];
    int n = snprintf(tail, sizeof tail, "  loss");
    for (int k = 0; k < x->c->n_tasks && n < (int)sizeof tail - 40; k++)
        n += snprintf(tail + n, sizeof tail - (size_t)n, " %s %.4f", x->c->tasks[k].name, p->loss[k]);
    if (p->kind == TL_PROGRESS_STEP) {
        uint64_t done = (uint64_t)p->batch_in_epoch * x->batch;
        char what[48];
        snprintf(what, sizeof what, "  epoch %d/%d", p->epoch, p->epochs);
        x->line.what = what;
        progress_show(&x->line, done < x->rows ? done : x->rows, x->rows, tail, 0);
        x->line.what = NULL;
        return 0;
    }
    progress_close(&x->line);
    printf("%sepoch %d/%d  step %lld  %.0f rows/s %s", x->line.tty ? "\r\033[K" : "", p->epoch, p->epochs,
           (long long)p->step, (double)x->rows / (now() - x->line.t0), tail);
    if (p->valid && isfinite(p->monitor)) {
        printf("  | valid");
        for (int k = 0; k < x->c->n_tasks; k++)
            printf(" %s %s %.4f", x->c->tasks[k].name, x->c->tasks[k].type == TL_TASK_BINARY ? "auc" : "rmse",
                   p->valid[k]);
        if (p->improved) printf("  *");
    }
    printf("\n");
    fflush(stdout);
    x->line.t0 = x->line.last = now();
    x->line.at0 = UINT64_MAX;
    return 0;
}

static const char *const fit_fields[] = {"data",    "valid",     "epochs",  "patience",     "batch",
                                         "optim",   "verbose",   "max_steps", "monitor",    "restore_best",
                                         "log_every", "dp", "grains", "check_every", "checkpoint", "every",
                                         "progress", "diagnostics", NULL};

int tl_lua_fit_shards(lua_State *L)
{
    const char *fn = "m:fit";
    tl_lua_model *lm = tl_lua_check_model_ud(L, 1);
    if (lm->busy) return luaL_error(L, "m:fit: the model is training");
    tl_lua_check_fields(L, 2, fn, fit_fields);
    lua_getfield(L, 2, "data");
    shards_ud *u = check_shards(L, -1);
    if (u->busy) return luaL_error(L, "m:fit: the shards are in use by another fit");
    tl_fit_options o;
    tl_fit_defaults(&o);
    lua_getfield(L, 2, "valid");
    const tl_split *valid = lua_isnil(L, -1) ? NULL : tl_lua_check_model_split(L, -1, lm->m, fn, "valid");
    const tl_dataset *valid_d = valid ? tl_lua_split_dataset(L, -1) : NULL;
    o.epochs = (int)tl_lua_opt_int(L, 2, fn, "epochs", 1, 1, 1000000);
    o.patience = (int)tl_lua_opt_int(L, 2, fn, "patience", 0, 0, 1000000);
    o.batch = (int)tl_lua_opt_int(L, 2, fn, "batch", tl_model_config_get(lm->m)->max_batch, 1, 1 << 20);
    if (o.batch > tl_graph_max_batch(tl_model_graph(lm->m))) tl_lua_memory_refresh();
    o.max_steps = tl_lua_opt_int(L, 2, fn, "max_steps", 0, 0, INT64_MAX);
    o.restore_best = tl_lua_opt_bool(L, 2, fn, "restore_best", 1);
    o.diagnostics = (int)tl_lua_opt_int(L, 2, fn, "diagnostics", 0, 0, INT32_MAX);
    const char *monitor = tl_lua_opt_string(L, 2, fn, "monitor", NULL);
    if (monitor && (o.monitor_task = tl_model_task_index(lm->m, monitor)) < 0)
        return luaL_error(L, "%s: field 'monitor' names unknown task '%s'", fn, monitor);
    lua_getfield(L, 2, "optim");
    if (!lua_isnil(L, -1)) tl_lua_read_optim(L, -1, fn, &o.optim);
    else if (tl_model_optim(lm->m)) o.optim = *tl_optim_get_config(tl_model_optim(lm->m));
    lua_pop(L, 1);
    /* under mpirun data-parallel by default, as m:fit on a split; each
     * grain reads shard files of its own */
    tl_dist *dist = tl_lua_mpi_dist();
    o.grains = (int)tl_lua_opt_int(L, 2, fn, "grains", 0, 0, 1 << 20);
    o.check_every = (int)tl_lua_opt_int(L, 2, fn, "check_every", 100, 0, INT32_MAX);
    if (!dist && o.grains > 1) dist = tl_dist_local();
    o.dist = tl_lua_opt_bool(L, 2, fn, "dp", dist && (dist->size > 1 || o.grains > 1)) ? dist : NULL;
    fit_line x;
    memset(&x, 0, sizeof x);
    x.c = tl_model_config_get(lm->m);
    x.quiet = !tl_lua_opt_bool(L, 2, fn, "verbose", 1) || tl_lua_mpi_quiet(); /* rank 0 prints */
    progress_init(&x.line, NULL, x.quiet, tl_lua_opt_number(L, 2, fn, "log_every", 10, 0, 1e9));
    x.rows = tl_shards_rows(u->sh, 0);
    x.batch = (uint64_t)o.batch;
    x.L = L;
    x.m = lm->m;
    lua_getfield(L, 2, "progress");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TFUNCTION);
        x.callback_idx = lua_gettop(L);
    }
    x.ckpt_path = tl_lua_opt_string(L, 2, fn, "checkpoint", NULL);
    x.ckpt_every = tl_lua_opt_int(L, 2, fn, "every", 0, 0, INT64_MAX);
    x.ckpt_here = !o.dist || o.dist->rank == 0;
    if (x.ckpt_every > 0 && !x.ckpt_path) return luaL_error(L, "%s: field 'every' needs field 'checkpoint' (a file path)", fn);
    o.progress = stream_progress;
    o.progress_ud = &x;
    o.progress_every = x.quiet && !x.callback_idx && !x.ckpt_every ? 0 : 1;
    if (valid_d && !tl_lua_dataset_hold(valid_d)) return luaL_error(L, "%s: too many nested fits", fn);
    lm->busy = u->busy = 1;
    if (o.dist) tl_lua_mpi_fit_running(1);
    tl_status s = tl_model_fit_stream(lm->m, u->st, valid, &o);
    if (o.dist) tl_lua_mpi_fit_running(0);
    lm->busy = u->busy = 0;
    /* stopped (Ctrl-C, a signal on every rank, the callback): the model
     * keeps its place in the stream, and a checkpoint saves it */
    if (s == TL_ERR_CANCELLED && x.ckpt_path && x.ckpt_here && !x.error[0]) {
        char stopmsg[512];
        snprintf(stopmsg, sizeof stopmsg, "%s", tl_errmsg());
        if (tl_model_save(lm->m, x.ckpt_path) != TL_OK)
            snprintf(x.error, sizeof x.error, "checkpoint at the stop: %s", tl_errmsg());
        else
            tl_fail(TL_ERR_CANCELLED, "%s; saved to %s", stopmsg, x.ckpt_path);
    }
    if (valid_d) tl_lua_dataset_release(valid_d);
    progress_close(&x.line);
    if (lm->free_pending) {
        tl_model_free(lm->m);
        lm->m = NULL;
        return 0;
    }
    if (s == TL_ERR_CANCELLED && tl_cancelled()) lua_sethook(L, NULL, 0, 0);
    if (x.error[0]) return luaL_error(L, "%s: %s", fn, x.error);
    if (s != TL_OK) return tl_lua_raise_status(L, fn, s);
    return 0;
}

/* ---- registration ------------------------------------------------------------------ */

static const char DOC_SHARDS[] =
    "tl.data.shards{dir=, seed=1, buffer=65536, shuffle=true, max_memory_rows=2e7} or tl.data.shards(dir)\n"
    "Open a directory of shards (tl.data.convert, tl.data.synthetic_ccp). sh.train streams the train\n"
    "split from disk (m:fit{data=sh, valid=sh.valid}): each epoch reads the shards in an order drawn\n"
    "from (seed, epoch) through a shuffle buffer of `buffer` rows, so memory does not grow with the\n"
    "rows. sh.valid and sh.test are in memory; sh.data is their dataset (tl.model{data=sh.data}),\n"
    "with the fields' encodings tl.data.convert recorded (encodings.tle): m:export and like= use them.\n"
    "#sh = train rows; sh.rows = {train=, valid=, test=}. Each shard's checksum is verified when it\n"
    "is first read; a damaged or truncated shard is an error naming its file.\n"
    "m:fit{data=sh, checkpoint=path, every=N, progress=function(p) end}: a fit stopped mid-epoch\n"
    "(Ctrl-C, the callback returning false, max_steps) keeps its place in the stream, and a checkpoint\n"
    "(saved at epoch ends, every N steps and at the stop) too: the next m:fit on the same shards,\n"
    "seed, buffer, batch and grains reads past the rows done and continues the epoch, with the bits\n"
    "of an uninterrupted fit (another stream is refused, naming what differs).";

static const char DOC_CONVERT[] =
    "tl.data.convert(d, dir [, {rows_per_shard=262144, verbose=true, log_every=10}]) -> shards\n"
    "tl.data.convert({path=, ...tl.data.csv options}, dir [, {..., stream=true, max_vocab=1e7,\n"
    "                auto_hash=1e6, hash_buckets=}])\n"
    "  -> shards, report\n"
    "Write dataset d's train, valid and test splits as shards in dir (see tl.data.shards), with a\n"
    "progress line (rows/s, ETA; one line per log_every seconds when stdout is not a terminal).\n"
    "Shards are written to a temporary name, fsynced and renamed; an interrupted conversion\n"
    "(Ctrl-C or a killed process) resumes after its last complete shard when run again with\n"
    "the same data (convert.tls records a hash of its rows; another dataset is refused).\n"
    "A finished directory is refused: delete it to convert again.\n"
    "A CSV spec (tl.data.csv's options) is streamed, memory not growing with the rows: pass 1 reads\n"
    "the file(s) for the vocabularies, statistics, quantile edges and row counts, pass 2 reads them\n"
    "again and writes the encoded rows; it returns the shards and a report {rows=, resumed=,\n"
    "skipped=, skipped_lines=, hashed={field={values=, collisions=, buckets=, auto=}}}. The ids are\n"
    "tl.data.csv's, but a ratio split puts each row by a hash of (seed, its row index), as\n"
    "split={..., hash=true} does in tl.data.csv. Vocabulary fields keep each distinct value in\n"
    "memory; hash= fields nothing per value (use it for ids with millions of values). A field\n"
    "without hash= or its own min_count= whose distinct values pass auto_hash (1e6; false: never)\n"
    "is hashed automatically into hash_buckets buckets (default the power of two >= 4 x auto_hash,\n"
    "4194304), reported with auto=true, auto_at= (values seen) and printed; a vocabulary field with\n"
    "more than max_vocab (1e7) distinct values stops the conversion, naming it. A resumed conversion\n"
    "must be the stopped one (spec, seed, files, data: convert.tls), else it is refused.\n"
    "stream=false (and a spec with like=) loads the file with tl.data.csv first instead.";

static const char DOC_CCP[] =
    "tl.data.synthetic_ccp{dir=, rows=1e6, valid=rows/100, test=rows/100, seed=1, ctr=0.04, cvr=0.005,\n"
    "                      zipf=1.1, id_scale=1, signal=1, rows_per_shard=262144} -> shards\n"
    "Impressions at Ali-CCP's shape straight into shards: 21 categorical fields with Zipf ids\n"
    "(Ali-CCP's field names: 101 user, 205 item, 206 category, ...), 3 multi-valued fields (210,\n"
    "109_14, 150_14; up to 10, 20, 10 ids), numeric price and age_days, tasks click and purchase\n"
    "(purchase only after a click; CTR ~ ctr, purchases per click ~ cvr). Row i depends only on\n"
    "(seed, i); an interrupted run resumes when run again with the same seed, rows and options\n"
    "(convert.tls), else it is refused. The model does not read multi-valued fields yet.";

void tl_lua_open_shards(lua_State *L, int tl)
{
    static const luaL_Reg meta[] = {{"__gc", sh_gc},   {"__close", sh_close}, {"__tostring", sh_tostring},
                                    {"__len", sh_len}, {"__index", sh_index}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"close", sh_close}, {NULL, NULL}};
    if (luaL_newmetatable(L, TL_SHARDS_MT)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__methods");
        lua_pushliteral(L, TL_SHARDS_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_getfield(L, tl, "data");
    lua_pushcfunction(L, l_shards);
    tl_lua_doc(L, "tl.data.shards", -1, DOC_SHARDS);
    lua_setfield(L, -2, "shards");
    lua_pushcfunction(L, l_convert);
    tl_lua_doc(L, "tl.data.convert", -1, DOC_CONVERT);
    lua_setfield(L, -2, "convert");
    lua_pushcfunction(L, l_synthetic_ccp);
    tl_lua_doc(L, "tl.data.synthetic_ccp", -1, DOC_CCP);
    lua_setfield(L, -2, "synthetic_ccp");
    lua_pop(L, 1);
}
