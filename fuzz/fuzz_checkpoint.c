/* fuzz_checkpoint.c — tl_model_load on arbitrary checkpoint files, and then
 * everything a REPL user does with what it loaded.
 *
 * Input: the file's bytes. A mutated checkpoint nearly always fails the
 * CRC32 check, which would hide everything behind it, so each input is
 * loaded twice: as given (header and checksum checks), and with the
 * header's length field and the trailing CRC32 rewritten to match (the
 * section parser, configuration decoding, tl_model_new and the restore of
 * parameters, optimizer, RNG, history and calibrators). Seeds are real
 * checkpoints written by tl_model_save (scripts in fuzz/README.md).
 *
 * A model that loads then goes through, in order (each a stage of the
 * outcome, fuzz.h):
 *   print     tostring(m) and m:history() in a Lua state with the tl library
 *             (the model's __tostring in repl/l_model.c, the path `print(m)` takes)
 *   evaluate  tl_model_predict, tl_model_evaluate (with reliability bins),
 *             the calibrated variants, and the CrossDistil teachers, on 16
 *             synthetic rows with the model's feature layout
 *   fit       two training steps on those rows (valid = the same rows)
 *   save      tl_model_save to a scratch file
 *   reload    tl_model_load of that file
 *   roundtrip the reloaded model predicts the same bits as the saved one
 *             (a difference aborts under libFuzzer, so it is reported)
 * The stage "load" is the last tl_model_load attempted (the fixed-up copy
 * when it differs from the input). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "io.h"
#include "l_model.h"

#define HEADER 24
#define ROWS 16

/* repl/l_tl.c: the tl library's opener (no header declares it yet). */
int luaopen_towerlab(lua_State *L);

/* One Lua state with the tl library for every input (made on first use). */
static lua_State *lua_state(void)
{
    static lua_State *L;
    if (L) return L;
    L = luaL_newstate();
    if (!L) return NULL;
    luaL_openlibs(L);
    luaL_requiref(L, "towerlab", luaopen_towerlab, 0);
    lua_setglobal(L, "tl");
    return L;
}

static const char PRINT_CHUNK[] = "local m = ...\n"
                                  "local s = tostring(m)\n"
                                  "local h = m:history()\n"
                                  "return #s + (type(h) == 'table' and 1 or 0)\n";

/* The print stage: the model userdata owns m from here on (freed by its
 * __gc at the lua_gc below; m stays valid until then). */
static int print_model(lua_State *L, tl_model *m, tl_fuzz_outcome *out)
{
    if (luaL_loadbuffer(L, PRINT_CHUNK, sizeof PRINT_CHUNK - 1, "=fuzz_print") != LUA_OK)
        return tl_fuzz_fail(out, "print", -1, lua_tostring(L, -1));
    tl_lua_push_model(L, m, 0);
    lua_pushvalue(L, -1);
    lua_insert(L, 1); /* keep the model alive below the call */
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) return tl_fuzz_fail(out, "print", -1, lua_tostring(L, -1));
    return 0;
}

/* ROWS rows with the model's layout: every id inside its field's vocabulary,
 * binary labels alternating 0/1 (the tasks out of phase), regression labels
 * in [0, 1.5). Returns 0, or -1 when no dataset could have this layout. */
typedef struct {
    tl_split s;
    int32_t cat[ROWS * TL_MAX_FIELDS];
    float labels[ROWS * TL_MAX_TASKS];
    uint32_t row[ROWS];
    float *num;
} rows_t;

static int make_rows(const tl_model_config *c, rows_t *r)
{
    if (c->n_cat < 0 || c->n_cat > TL_MAX_FIELDS || c->n_num < 0 || c->n_tasks < 1 ||
        c->n_tasks > TL_MAX_TASKS)
        return -1;
    for (int f = 0; f < c->n_cat; f++)
        if (c->vocab[f] < 1) return -1;
    r->num = calloc((size_t)ROWS * (size_t)(c->n_num ? c->n_num : 1), sizeof(float));
    if (!r->num) return -1;
    for (int i = 0; i < ROWS; i++) {
        for (int f = 0; f < c->n_cat; f++) r->cat[i * c->n_cat + f] = (int32_t)((i * 7 + f) % c->vocab[f]);
        for (int j = 0; j < c->n_num; j++) r->num[(size_t)i * (size_t)c->n_num + (size_t)j] = (float)((i + j) % 5) - 2.0f;
        for (int t = 0; t < c->n_tasks; t++)
            r->labels[i * c->n_tasks + t] = c->tasks[t].type == TL_TASK_BINARY ? (float)(((i >> t) + i) & 1)
                                                                               : 0.1f * (float)(i % 15);
        r->row[i] = (uint32_t)i;
    }
    memset(&r->s, 0, sizeof r->s);
    r->s.name = "train";
    r->s.n = ROWS;
    r->s.cat = r->cat;
    r->s.num = r->num;
    r->s.labels = r->labels;
    r->s.row = r->row;
    return 0;
}

static int evaluate(tl_model *m, const rows_t *r, float *pred, tl_fuzz_outcome *out)
{
    const tl_model_config *c = tl_model_config_get(m);
    tl_task_eval ev[TL_MAX_TASKS];
    tl_calib_bin bins[TL_MAX_TASKS * 4];
    float tmp[ROWS * TL_MAX_TASKS];
    tl_status st;
    if ((st = tl_model_predict(m, &r->s, pred)) != TL_OK) return tl_fuzz_fail(out, "evaluate", st, tl_errmsg());
    if ((st = tl_model_evaluate(m, &r->s, 4, ev, bins)) != TL_OK)
        return tl_fuzz_fail(out, "evaluate", st, tl_errmsg());
    if ((st = tl_model_predict_calibrated(m, &r->s, tmp)) != TL_OK)
        return tl_fuzz_fail(out, "evaluate", st, tl_errmsg());
    if ((st = tl_model_evaluate_calibrated(m, &r->s, 4, ev, bins)) != TL_OK)
        return tl_fuzz_fail(out, "evaluate", st, tl_errmsg());
    if (c->distill.enabled && !c->distill.naive) {
        for (int cal = 0; cal < 2; cal++)
            if ((st = tl_model_predict_teachers(m, &r->s, cal, tmp)) != TL_OK)
                return tl_fuzz_fail(out, "evaluate", st, tl_errmsg());
    }
    return 0;
}

/* Everything after a successful load of m (which this function consumes). */
static void use(tl_model *m, const char *dir, tl_fuzz_outcome *out)
{
    lua_State *L = lua_state();
    if (!L) {
        tl_model_free(m);
        tl_fuzz_fail(out, "print", -1, "no Lua state");
        return;
    }
    int failed = print_model(L, m, out);
    rows_t *r = calloc(1, sizeof *r);
    const tl_model_config *c = tl_model_config_get(m);
    float pred[ROWS * TL_MAX_TASKS], again[ROWS * TL_MAX_TASKS];
    if (!failed && r && make_rows(c, r) == 0) {
        tl_status st;
        tl_fit_options o;
        tl_fit_defaults(&o);
        o.epochs = 1;
        o.max_steps = 2;
        o.batch = c->max_batch < 8 ? c->max_batch : 8;
        if (evaluate(m, r, pred, out) != 0) {
        } else if ((st = tl_model_fit(m, &r->s, &r->s, &o)) != TL_OK && st != TL_ERR_NUMERIC) {
            tl_fuzz_fail(out, "fit", st, tl_errmsg());
        } else if ((st = tl_model_predict(m, &r->s, pred)) != TL_OK) {
            tl_fuzz_fail(out, "evaluate", st, tl_errmsg());
        } else {
            char path[160];
            snprintf(path, sizeof path, "%s/resaved.tlm", dir);
            tl_model *m2 = NULL;
            if ((st = tl_model_save(m, path)) != TL_OK) {
                tl_fuzz_fail(out, "save", st, tl_errmsg());
            } else if ((st = tl_model_load(path, &m2)) != TL_OK) {
                tl_fuzz_fail(out, "reload", st, tl_errmsg());
            } else {
                st = tl_model_predict(m2, &r->s, again);
                size_t n = (size_t)ROWS * (size_t)c->n_tasks * sizeof(float);
                if (st != TL_OK) tl_fuzz_fail(out, "reload", st, tl_errmsg());
                else if (memcmp(pred, again, n) != 0) {
                    tl_fuzz_fail(out, "roundtrip", -1, "the reloaded model predicts other bits");
#ifdef TL_LIBFUZZER
                    abort();
#endif
                }
                tl_model_free(m2);
            }
            unlink(path);
        }
    }
    if (r) free(r->num);
    free(r);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT, 0); /* frees m */
}

static void load(const char *dir, const char *path, const uint8_t *p, size_t n, tl_fuzz_outcome *out)
{
    tl_fuzz_begin(out);
    if (tl_fuzz_write(path, p, n) != 0) {
        tl_fuzz_fail(out, "input", TL_ERR_IO, "cannot write the scratch file");
        return;
    }
    tl_model *m = NULL;
    tl_status st = tl_model_load(path, &m);
    unlink(path);
    if (st == TL_OK) use(m, dir, out);
    else tl_fuzz_fail(out, "load", st, tl_errmsg());
    tl_clear_error();
}

int tl_fuzz_checkpoint(const uint8_t *data, size_t size, tl_fuzz_outcome *out)
{
    tl_fuzz_begin(out);
    if (size > (8u << 20)) return tl_fuzz_fail(out, "input", TL_ERR_ARG, "larger than 8 MB");
    const char *dir = tl_fuzz_tmpdir();
    if (!dir) return tl_fuzz_fail(out, "input", TL_ERR_IO, "no scratch directory");
    char path[128];
    snprintf(path, sizeof path, "%s/in.tlm", dir);
    load(dir, path, data, size, out);
    if (size < HEADER + 4) return out ? out->status : 0;
    uint8_t *fixed = malloc(size);
    if (!fixed) return out ? out->status : 0;
    memcpy(fixed, data, size);
    for (int i = 0; i < 8; i++) fixed[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    uint32_t crc = (uint32_t)crc32(0L, fixed, (uInt)(size - 4));
    for (int i = 0; i < 4; i++) fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    if (memcmp(fixed, data, size) != 0) load(dir, path, fixed, size, out);
    free(fixed);
    return out ? out->status : 0;
}

TL_FUZZ_ENTRY(tl_fuzz_checkpoint)
