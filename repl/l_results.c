/* l_results.c — what a trained model gives back: m:evaluate, m:predict (to
 * a table or a file), m:history, m:teachers, tl.calibrate with its
 * calibrated predictor, and the printing of results (tl.result). */
#include "l_results.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "diagnose.h"
#include "io.h"
#include "l_model.h"
#include "l_mpi.h"
#include "l_util.h"
#include "model.h"

#define RESULT_MT "tl.result"

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* Calibrators fitted before further training are kept (refitting needs a
 * validation split the model does not know, and a silent refit would change
 * results), but using them says so, once per call, on stderr. */
static void warn_stale_calibrators(tl_model *m, const char *fn)
{
    const tl_model_config *c = tl_model_config_get(m);
    char names[TL_MAX_TASKS * (TL_TASK_NAME_MAX + 2)] = "";
    int64_t age = 0;
    for (int k = 0; k < c->n_tasks; k++) {
        int64_t a = tl_model_calibrator_age(m, k);
        if (a <= 0) continue;
        if (names[0]) strcat(names, ", ");
        strcat(names, c->tasks[k].name);
        if (a > age) age = a;
    }
    if (age > 0)
        fprintf(stderr, "%s: warning: the calibrators of %s are stale: fitted %lld training steps "
                        "ago, before the model trained further; refit them with tl.calibrate(m, "
                        "d.valid)\n", fn, names, (long long)age);
}

/* Push the evaluation result table of model m on split s. */
static void push_evaluation(lua_State *L, tl_model *m, const tl_split *s, int nb, int calibrated,
                            const char *fn)
{
    const tl_model_config *c = tl_model_config_get(m);
    tl_task_eval ev[TL_MAX_TASKS];
    tl_calib_bin *bins = lua_newuserdatauv(L, sizeof(tl_calib_bin) * (size_t)nb * (size_t)c->n_tasks, 0);
    if (calibrated) warn_stale_calibrators(m, fn);
    tl_status st = calibrated ? tl_model_evaluate_calibrated(m, s, nb, ev, bins)
                              : tl_model_evaluate(m, s, nb, ev, bins);
    if (st != TL_OK) tl_lua_raise_status(L, fn, st);
    lua_newtable(L);
    luaL_setmetatable(L, RESULT_MT);
    for (int k = 0; k < c->n_tasks; k++) {
        lua_newtable(L);
        if (ev[k].type == TL_TASK_BINARY) {
            const tl_binary_eval *b = &ev[k].bin;
            set_num(L, "rows", (double)b->rows);
            set_num(L, "auc", b->auc);
            if (!isnan(b->multi_auc)) set_num(L, "multi_auc", b->multi_auc);
            if (s->group) set_num(L, "gauc", b->gauc);
            set_num(L, "logloss", b->logloss);
            set_num(L, "ne", b->ne);
            set_num(L, "brier", b->brier);
            set_num(L, "pcoc", b->pcoc);
            set_num(L, "ece", b->ece);
            set_num(L, "mce", b->mce);
            set_num(L, "slope", b->slope);
            set_num(L, "intercept", b->intercept);
            set_num(L, "base_rate", b->base_rate);
            if (b->notes) {
                lua_pushstring(L, tl_metric_notes_str(b->notes));
                lua_setfield(L, -2, "notes");
            }
            lua_newtable(L);
            for (int i = 0; i < nb; i++) {
                const tl_calib_bin *bi = &bins[(size_t)k * (size_t)nb + (size_t)i];
                lua_newtable(L);
                set_num(L, "lo", bi->lo);
                set_num(L, "hi", bi->hi);
                lua_pushinteger(L, (lua_Integer)bi->count);
                lua_setfield(L, -2, "count");
                set_num(L, "mean_pred", bi->mean_pred);
                set_num(L, "rate", bi->rate);
                set_num(L, "ci_lo", bi->ci_lo);
                set_num(L, "ci_hi", bi->ci_hi);
                lua_rawseti(L, -2, i + 1);
            }
            lua_setfield(L, -2, "bins");
        } else {
            const tl_regression_eval *r = &ev[k].reg;
            set_num(L, "rows", (double)r->rows);
            set_num(L, "mse", r->mse);
            set_num(L, "rmse", r->rmse);
            set_num(L, "mae", r->mae);
        }
        lua_setfield(L, -2, c->tasks[k].name);
    }
    lua_remove(L, -2); /* the bins buffer */
}

/* m:evaluate(split [, {bins=10, calibrated=false}]) -> {task = {auc=, logloss=, ...}} */
static int l_model_evaluate(lua_State *L)
{
    tl_lua_model *lm = tl_lua_check_model_ud(L, 1);
    const tl_split *s = tl_lua_check_model_split(L, 2, lm->m, "m:evaluate", "argument 1");
    int nb = 10, calibrated = 0;
    if (lua_istable(L, 3)) {
        static const char *const fields[] = {"bins", "calibrated", "space", NULL};
        tl_lua_check_fields(L, 3, "m:evaluate", fields);
        nb = (int)tl_lua_opt_int(L, 3, "m:evaluate", "bins", 10, 1, 1000);
        calibrated = tl_lua_opt_bool(L, 3, "m:evaluate", "calibrated", 0);
        /* space=false: tasks with a space are judged on every row */
        tl_model_set_eval_in_space(lm->m, tl_lua_opt_bool(L, 3, "m:evaluate", "space", 1));
    }
    push_evaluation(L, lm->m, s, nb, calibrated, "m:evaluate");
    tl_model_set_eval_in_space(lm->m, 1);
    return 1;
}

/* tl.calibrate(m, split, kind) -> calibrated predictor: fits per-task output
 * calibrators on split (a validation split), attaches them to m (saved with
 * it) and returns {model=m, kind=} whose :evaluate(split) shows before and
 * after, and :predict(split) gives calibrated probabilities. */
static int l_calibrate(lua_State *L)
{
    tl_model *m = tl_lua_check_model_ud(L, 1)->m;
    const tl_split *s = tl_lua_check_model_split(L, 2, m, "tl.calibrate", "argument 2");
    static const char *const kinds[] = {"platt", "isotonic", "temperature", NULL};
    static const tl_calib_kind ck[] = {TL_CALIB_PLATT, TL_CALIB_ISOTONIC, TL_CALIB_TEMPERATURE};
    int kind = luaL_checkoption(L, 3, "isotonic", kinds);
    tl_status st = tl_model_calibrate(m, s, ck[kind]);
    if (st != TL_OK) return tl_lua_raise_status(L, "tl.calibrate", st);
    lua_newtable(L);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "model");
    lua_pushstring(L, kinds[kind]);
    lua_setfield(L, -2, "kind");
    luaL_setmetatable(L, "tl.calibrated");
    return 1;
}

static tl_model *calibrated_model(lua_State *L)
{
    int ok = lua_istable(L, 1) && lua_getmetatable(L, 1);
    if (ok) {
        luaL_getmetatable(L, "tl.calibrated");
        ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    if (!ok) luaL_typeerror(L, 1, "calibrated predictor (from tl.calibrate)");
    lua_getfield(L, 1, "model");
    tl_model *m = tl_lua_check_model_ud(L, -1)->m;
    lua_pop(L, 1);
    return m;
}

/* cp:evaluate(split [, {bins=10}]) -> {before = r, after = r} */
static int l_calibrated_evaluate(lua_State *L)
{
    tl_model *m = calibrated_model(L);
    const tl_split *s = tl_lua_check_model_split(L, 2, m, "cp:evaluate", "argument 1");
    int nb = lua_istable(L, 3) ? (int)tl_lua_opt_int(L, 3, "cp:evaluate", "bins", 10, 1, 1000) : 10;
    lua_newtable(L);
    luaL_setmetatable(L, "tl.before_after");
    push_evaluation(L, m, s, nb, 0, "cp:evaluate");
    lua_setfield(L, -2, "before");
    push_evaluation(L, m, s, nb, 1, "cp:evaluate");
    lua_setfield(L, -2, "after");
    return 1;
}

static int l_before_after_tostring(lua_State *L)
{
    lua_getfield(L, 1, "before");
    const char *before = luaL_tolstring(L, -1, NULL);
    lua_getfield(L, 1, "after");
    const char *after = luaL_tolstring(L, -1, NULL);
    lua_pushfstring(L, "before calibration\n%s\n\nafter calibration\n%s", before, after);
    return 1;
}

static void push_predictions(lua_State *L, tl_model *m, const tl_split *s, int calibrated);

static int predict_to_file(lua_State *L, tl_model *m, const tl_split *s, int calibrated,
                           const char *fn);

static int l_calibrated_predict(lua_State *L)
{
    tl_model *m = calibrated_model(L);
    const tl_split *s = tl_lua_check_model_split(L, 2, m, "cp:predict", "argument 1");
    if (!lua_isnoneornil(L, 3)) return predict_to_file(L, m, s, 1, "cp:predict");
    push_predictions(L, m, s, 1);
    return 1;
}

static int l_calibrated_tostring(lua_State *L)
{
    tl_model *m = calibrated_model(L);
    const tl_model_config *c = tl_model_config_get(m);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "calibrated predictor:");
    for (int k = 0; k < c->n_tasks; k++) {
        char d[160];
        const tl_calibrator *cal = tl_model_calibrator(m, k);
        snprintf(d, sizeof d, "\n  %-16s %s", c->tasks[k].name,
                 cal ? tl_calibrator_describe(cal, d + 40, sizeof d - 40) : "(none)");
        luaL_addstring(&b, d);
        if (tl_model_calibrator_age(m, k) > 0) {
            snprintf(d, sizeof d, "   (stale: fitted %lld steps ago)",
                     (long long)tl_model_calibrator_age(m, k));
            luaL_addstring(&b, d);
        }
    }
    luaL_pushresult(&b);
    return 1;
}

/* A rank that does not write (under mpirun, rank 0 writes): the same
 * predictions, chunk by chunk as tl_model_predict_csv makes them, and
 * dropped, so that a model shared among the ranks (tl.mpi.distribute) takes
 * part in every chunk's exchange and a failure fails on every rank. */
static tl_status predict_discard(tl_model *m, const tl_split *s, int calibrated)
{
    const tl_model_config *c = tl_model_config_get(m);
    size_t K = (size_t)c->n_tasks, B = (size_t)c->max_batch;
    size_t chunk = (65536 + B - 1) / B * B;
    if (chunk > s->n) chunk = s->n;
    float *buf = tl_malloc((chunk ? chunk : 1) * K * sizeof(float), "prediction chunk");
    if (!buf) return TL_ERR_NOMEM;
    tl_status st = TL_OK;
    for (size_t from = 0; from < s->n && st == TL_OK; from += chunk) {
        tl_split part = tl_split_rows(s, from, s->n - from < chunk ? s->n - from : chunk, c->n_cat, c->n_num,
                                      c->n_tasks);
        st = calibrated ? tl_model_predict_calibrated(m, &part, buf) : tl_model_predict(m, &part, buf);
    }
    tl_free(buf);
    return st;
}

/* m:predict(split, {file=path}) / cp:predict(split, {file=path}) -> rows
 * written: predictions straight to a CSV file (row id, one column per task),
 * with no Lua table of the rows. Under mpirun only rank 0 writes
 * (tl_lua_mpi_writes); the other ranks predict the same rows and return the
 * same count. */
static int predict_to_file(lua_State *L, tl_model *m, const tl_split *s, int calibrated,
                           const char *fn)
{
    static const char *const fields[] = {"file", NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    tl_lua_check_fields(L, 3, fn, fields);
    const char *path = tl_lua_opt_string(L, 3, fn, "file", NULL);
    if (!path) return luaL_error(L, "%s: field 'file' is required in the options (a CSV path)", fn);
    if (calibrated) warn_stale_calibrators(m, fn);
    tl_status st = tl_lua_mpi_writes() ? tl_model_predict_csv(m, s, calibrated, path) : predict_discard(m, s, calibrated);
    if (st != TL_OK) return tl_lua_raise_status(L, fn, st);
    lua_pushinteger(L, (lua_Integer)s->n);
    return 1;
}

/* m:predict(split) -> {task = {p1, p2, ...}} (1-based like the split's rows);
 * m:predict(split, {file="pred.csv"}) -> rows written to the file. */
static int l_model_predict(lua_State *L)
{
    tl_lua_model *lm = tl_lua_check_model_ud(L, 1);
    const tl_split *s = tl_lua_check_model_split(L, 2, lm->m, "m:predict", "argument 1");
    if (!lua_isnoneornil(L, 3)) return predict_to_file(L, lm->m, s, 0, "m:predict");
    push_predictions(L, lm->m, s, 0);
    return 1;
}

static void push_predictions(lua_State *L, tl_model *m, const tl_split *s, int calibrated)
{
    int K = tl_model_config_get(m)->n_tasks;
    if (calibrated) warn_stale_calibrators(m, "cp:predict");
    float *out = lua_newuserdatauv(L, s->n * (size_t)K * sizeof(float), 0);
    tl_status st = calibrated ? tl_model_predict_calibrated(m, s, out) : tl_model_predict(m, s, out);
    if (st != TL_OK) tl_lua_raise_status(L, "predict", st);
    lua_newtable(L);
    for (int k = 0; k < K; k++) {
        lua_createtable(L, (int)s->n, 0);
        for (size_t i = 0; i < s->n; i++) {
            lua_pushnumber(L, out[i * (size_t)K + (size_t)k]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, tl_model_config_get(m)->tasks[k].name);
    }
    lua_remove(L, -2); /* the prediction buffer */
}

static void push_task_numbers(lua_State *L, const tl_model_config *c, const float *v)
{
    lua_createtable(L, 0, c->n_tasks);
    for (int k = 0; k < c->n_tasks; k++) {
        lua_pushnumber(L, v[k]);
        lua_setfield(L, -2, c->tasks[k].name);
    }
}

/* A list of epoch records (epochs or mid-epoch evaluations) as Lua tables. */
static void push_epoch_records(lua_State *L, const tl_model_config *c, const tl_epoch_record *er,
                               size_t ne)
{
    lua_createtable(L, (int)ne, 0);
    for (size_t i = 0; i < ne; i++) {
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, er[i].epoch);
        lua_setfield(L, -2, "epoch");
        lua_pushinteger(L, er[i].step);
        lua_setfield(L, -2, "step");
        lua_createtable(L, 0, c->n_tasks);
        for (int k = 0; k < c->n_tasks; k++) {
            lua_pushnumber(L, er[i].train_loss[k]);
            lua_setfield(L, -2, c->tasks[k].name);
        }
        lua_setfield(L, -2, "train_loss");
        if (isfinite(er[i].monitor)) {
            lua_createtable(L, 0, c->n_tasks);
            for (int k = 0; k < c->n_tasks; k++) {
                lua_createtable(L, 0, 2);
                int bin = c->tasks[k].type == TL_TASK_BINARY;
                set_num(L, bin ? "auc" : "rmse", er[i].valid_metric[k]);
                set_num(L, bin ? "logloss" : "mse", er[i].valid_logloss[k]);
                lua_setfield(L, -2, c->tasks[k].name);
            }
            lua_setfield(L, -2, "valid");
            set_num(L, "monitor", er[i].monitor);
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static void push_history(lua_State *L, tl_model *m)
{
    const tl_model_config *c = tl_model_config_get(m);
    const tl_step_record *sr;
    const tl_epoch_record *er;
    size_t ns = tl_model_history_steps(m, &sr), ne = tl_model_history_epochs(m, &er);
    lua_createtable(L, 0, 2);
    lua_createtable(L, (int)ns, 0);
    for (size_t i = 0; i < ns; i++) {
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, sr[i].step);
        lua_setfield(L, -2, "step");
        lua_pushinteger(L, sr[i].epoch);
        lua_setfield(L, -2, "epoch");
        push_task_numbers(L, c, sr[i].loss);
        lua_setfield(L, -2, "loss");
        push_task_numbers(L, c, sr[i].weight);
        lua_setfield(L, -2, "weight");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "steps");
    push_epoch_records(L, c, er, ne);
    lua_setfield(L, -2, "epochs");
    const tl_epoch_record *ev;
    size_t nv = tl_model_history_evals(m, &ev);
    if (nv) {
        push_epoch_records(L, c, ev, nv);
        lua_setfield(L, -2, "evals");
    }
    const tl_diag_record *dr;
    size_t nd = tl_model_history_diagnostics(m, &dr);
    if (nd == 0) return;
    lua_createtable(L, (int)nd, 0);
    for (size_t i = 0; i < nd; i++) {
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, dr[i].step);
        lua_setfield(L, -2, "step");
        lua_pushinteger(L, dr[i].epoch);
        lua_setfield(L, -2, "epoch");
        push_task_numbers(L, c, dr[i].grad_norm);
        lua_setfield(L, -2, "grad_norm");
        push_task_numbers(L, c, dr[i].weight);
        lua_setfield(L, -2, "weight");
        lua_createtable(L, 0, c->n_tasks * (c->n_tasks - 1) / 2);
        for (int a = 0; a < c->n_tasks; a++)
            for (int b = a + 1; b < c->n_tasks; b++) {
                lua_pushfstring(L, "%s|%s", c->tasks[a].name, c->tasks[b].name);
                lua_pushnumber(L, dr[i].grad_cos[a][b]);
                lua_rawset(L, -3);
            }
        lua_setfield(L, -2, "grad_cos");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "diagnostics");
}

static int l_model_history(lua_State *L)
{
    push_history(L, tl_lua_check_model_ud(L, 1)->m);
    return 1;
}

/* m:teachers(split) -> {task = {auc=, multi_auc=, logloss=, ece=, pcoc=,
 * order=}}: the CrossDistil teacher towers judged on their own (ranking by raw
 * score, calibration after the calibrator); order is the pair's order
 * ("positive", "negative", or "auto" before the first fit, when Multi-AUC
 * takes the sign of the labels' correlation on `split`, as m:evaluate does). */
static int l_model_teachers(lua_State *L)
{
    tl_lua_model *lm = tl_lua_check_model_ud(L, 1);
    const tl_model_config *c = tl_model_config_get(lm->m);
    if (!c->distill.enabled || c->distill.naive)
        return luaL_error(L, "m:teachers: the model has no CrossDistil teacher towers");
    const tl_split *s = tl_lua_check_model_split(L, 2, lm->m, "m:teachers", "argument 1");
    int K = c->n_tasks;
    float *raw = lua_newuserdatauv(L, s->n * (size_t)K * sizeof(float), 0);
    float *cal = lua_newuserdatauv(L, s->n * (size_t)K * sizeof(float), 0);
    if (tl_model_teacher_calibrator_age(lm->m) > 0)
        fprintf(stderr, "m:teachers: warning: the teachers' fitted calibrators are %lld steps older "
                        "than the teachers (the last fit stopped mid-epoch); they are refit at the "
                        "next epoch end\n", (long long)tl_model_teacher_calibrator_age(lm->m));
    tl_status st = tl_model_predict_teachers(lm->m, s, 0, raw);
    if (st == TL_OK) st = tl_model_predict_teachers(lm->m, s, 1, cal);
    if (st != TL_OK) return tl_lua_raise_status(L, "m:teachers", st);
    for (size_t i = 0; i < s->n * (size_t)K; i++) /* ranking is the same; metrics want [0, 1] */
        if (!isnan(raw[i])) raw[i] = 1.0f / (1.0f + expf(-raw[i]));
    lua_newtable(L);
    luaL_setmetatable(L, RESULT_MT);
    const tl_distill_spec *ds = &c->distill;
    for (int p = 0; p < ds->n_pairs; p++)
        for (int side = 0; side < 2; side++) {
            int k = ds->pairs[p][side], partner = ds->pairs[p][1 - side];
            tl_eval_opts o;
            memset(&o, 0, sizeof o);
            o.task = c->tasks[k].name;
            o.pred_stride = o.label_stride = o.partner_stride = (size_t)K;
            o.weight = s->weight;
            o.partner = s->labels + partner;
            int order = tl_model_distill_order(lm->m, p);
            int neg = order ? order == 2 : tl_split_label_correlation(s, K, k, partner) < 0.0;
            o.order = neg ? TL_MULTI_AUC_ORDER_A_NEG : TL_MULTI_AUC_ORDER_A;
            tl_binary_eval er, ec;
            st = tl_metrics_eval_binary(raw + k, s->labels + k, s->n, &o, NULL, &er);
            if (st == TL_OK) {
                o.partner = NULL;
                st = tl_metrics_eval_binary(cal + k, s->labels + k, s->n, &o, NULL, &ec);
            }
            if (st != TL_OK) return tl_lua_raise_status(L, "m:teachers", st);
            lua_newtable(L);
            set_num(L, "auc", er.auc);
            set_num(L, "multi_auc", er.multi_auc);
            set_num(L, "logloss", ec.logloss);
            set_num(L, "ece", ec.ece);
            set_num(L, "pcoc", ec.pcoc);
            lua_pushstring(L, order == 2 ? "negative" : order == 1 ? "positive" : "auto");
            lua_setfield(L, -2, "order");
            lua_setfield(L, -2, c->tasks[k].name);
        }
    return 1;
}

/* tl.result __tostring: one row per task. */
static int l_result_tostring(lua_State *L)
{
    static const char *const cols[] = {"auc", "multi_auc", "gauc", "logloss", "ece", "pcoc", "brier", "rmse", "mae", NULL};
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char s[64];
    snprintf(s, sizeof s, "%-16s", "task");
    luaL_addstring(&b, s);
    int present[16] = {0};
    for (int j = 0; cols[j]; j++) {
        lua_pushnil(L);
        while (lua_next(L, 1)) {
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, cols[j]);
                if (!lua_isnil(L, -1)) present[j] = 1;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        if (present[j]) {
            snprintf(s, sizeof s, "%10s", cols[j]);
            luaL_addstring(&b, s);
        }
    }
    /* rows in sorted task order */
    lua_newtable(L);
    int names = lua_gettop(L), n = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, names, ++n);
        }
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, names);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, names, i);
        const char *t = lua_tostring(L, -1);
        snprintf(s, sizeof s, "\n%-16s", t);
        luaL_addstring(&b, s);
        lua_gettable(L, 1);
        for (int j = 0; cols[j]; j++) {
            if (!present[j]) continue;
            lua_getfield(L, -1, cols[j]);
            if (lua_isnumber(L, -1)) snprintf(s, sizeof s, "%10.4f", lua_tonumber(L, -1));
            else snprintf(s, sizeof s, "%10s", "-");
            lua_pop(L, 1);
            luaL_addstring(&b, s);
        }
        lua_pop(L, 1);
    }
    luaL_pushresult(&b);
    return 1;
}

void tl_lua_open_results(lua_State *L, int tl)
{
    luaL_newmetatable(L, RESULT_MT);
    lua_pushcfunction(L, l_result_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    static const luaL_Reg calibrated_methods[] = {{"evaluate", l_calibrated_evaluate},
                                                  {"predict", l_calibrated_predict},
                                                  {NULL, NULL}};
    luaL_newmetatable(L, "tl.calibrated");
    luaL_newlib(L, calibrated_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__methods");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_calibrated_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newmetatable(L, "tl.before_after");
    lua_pushcfunction(L, l_before_after_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_pushcfunction(L, l_calibrate);
    lua_setfield(L, tl, "calibrate");
    static const luaL_Reg methods[] = {{"evaluate", l_model_evaluate}, {"predict", l_model_predict},
                                       {"history", l_model_history},   {"teachers", l_model_teachers},
                                       {NULL, NULL}};
    for (const luaL_Reg *r = methods; r->name; r++) tl_lua_model_method(L, r->name, r->func);

    static const tl_lua_doc_entry tl_docs[] = {
        {"calibrate", "tl.calibrate",
         "tl.calibrate(m, d.valid, \"isotonic\"|\"platt\"|\"temperature\") -> cp\n"
         "Fit one output calibrator per binary task on the model's predictions over a validation\n"
         "split and attach them to m (m:save keeps them). cp:evaluate(d.test) -> {before=r, after=r};\n"
         "cp:predict(split) gives calibrated probabilities; m:evaluate(split, {calibrated=true}) too.\n"
         "tl.plot.calibration(cp:evaluate(d.test)) draws both."},
    };
    tl_lua_docs(L, tl, tl_docs, sizeof tl_docs / sizeof *tl_docs);
    luaL_getmetatable(L, TL_MODEL_MT);
    lua_getfield(L, -1, "methods");
    static const tl_lua_doc_entry method_docs[] = {
        {"evaluate", "m:evaluate",
         "m:evaluate(split [, {bins=10, calibrated=false, space=true}]) -> r; r.<task>.auc, .multi_auc,\n"
         ".gauc, .logloss, .ece, .pcoc, .brier, .bins\n"
         "(binary) or .mse, .rmse, .mae (regression)."},
        {"predict", "m:predict",
         "m:predict(split) -> p; p.<task>[i] is the prediction for row i.\n"
         "m:predict(split, {file=\"pred.csv\"}) -> n: write the predictions to a CSV file instead\n"
         "(header row,<task>,...; row = the row's 1-based data row in its source file), in chunks,\n"
         "without a Lua table of the rows; cp:predict(split, {file=}) writes calibrated ones.\n"
         "Under mpirun only rank 0 writes the file (tl.mpi.all_ranks_write(true): every rank)."},
        {"history", "m:history",
         "m:history() -> {steps={{step,epoch,loss={},weight={}}...}, epochs={{epoch,step,train_loss={},valid={}}...},\n"
         "               diagnostics={{step,epoch,grad_norm={},grad_cos={[\"a|b\"]=},weight={}}...}}\n"
         "(diagnostics only after fit{diagnostics=N})."},
    };
    tl_lua_docs(L, -2, method_docs, sizeof method_docs / sizeof *method_docs);
    lua_pop(L, 2);
}
