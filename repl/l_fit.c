/* l_fit.c — m:fit: options, the progress line, the live plot, the progress
 * callback, checkpoints during training and Ctrl-C. The engine runs the fit
 * loop (tl_model_fit); this file only reports on it and keeps the model and
 * its datasets busy while it runs. */
#include "l_fit.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "diagnose.h"
#include "dist.h"
#include "io.h"
#include "l_data.h"
#include "l_model.h"
#include "l_mpi.h"
#include "l_shards.h"
#include "l_spec.h"
#include "l_util.h"
#include "model.h"

typedef struct {
    lua_State *L;
    tl_model *m;
    int quiet, tty;
    int callback_idx;   /* Lua progress function or 0 */
    int live_idx;       /* live plot object or 0 */
    int model_idx;
    int bar_open;          /* a progress bar is drawn on the current line */
    const char *ckpt_path; /* fit{checkpoint=...}: saved at epoch ends and every ckpt_every steps */
    int64_t ckpt_every;
    int ckpt_here;         /* 0 on the ranks other than 0 of a data-parallel fit */
    char error[512];    /* error raised inside a Lua callback */
} fit_ctx;

/* lp:update(m [, force]) on every step: the live plot throttles itself (a
 * call that is not due costs well under a microsecond) and asks the model for
 * its history only when it draws, reading just the new entries. An error is
 * reported once and disables the live plot. */
static void live_update(fit_ctx *x, int force)
{
    lua_State *L = x->L;
    lua_getfield(L, x->live_idx, "update");
    lua_pushvalue(L, x->live_idx);
    lua_pushvalue(L, x->model_idx);
    lua_pushboolean(L, force);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        fprintf(stderr, "plot: %s (live plot disabled)\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        x->live_idx = 0;
    }
}

static int fit_progress(void *ud, const tl_progress *p)
{
    fit_ctx *x = ud;
    lua_State *L = x->L;
    const tl_model_config *c = tl_model_config_get(x->m);
    /* A step checkpoint is not taken at an epoch's last batch: the epoch is
     * not closed yet, and the epoch-end call that follows saves it closed. */
    if (x->ckpt_path && x->ckpt_here &&
        (p->kind == TL_PROGRESS_EPOCH || (x->ckpt_every > 0 && p->step % x->ckpt_every == 0 &&
                                          p->batch_in_epoch < p->batches_per_epoch)) &&
        tl_model_save(x->m, x->ckpt_path) != TL_OK) {
        snprintf(x->error, sizeof x->error, "checkpoint: %s", tl_errmsg());
        return 1;
    }
    /* After Ctrl-C no Lua runs here: the REPL's pending hook would fail the
     * call with a bare "interrupted!". The engine stops at its next check
     * and says where. */
    int cancelled = tl_cancelled();
    if (x->live_idx && !cancelled) live_update(x, p->kind == TL_PROGRESS_EPOCH);
    if (!x->quiet) {
        if (p->kind == TL_PROGRESS_STEP && x->tty) {
            printf("\r  epoch %d/%d  %3d%%  step %lld  loss", p->epoch, p->epochs,
                   100 * p->batch_in_epoch / (p->batches_per_epoch ? p->batches_per_epoch : 1),
                   (long long)p->step);
            for (int k = 0; k < c->n_tasks; k++) printf(" %s %.4f", c->tasks[k].name, p->loss[k]);
            printf("   ");
            fflush(stdout);
            x->bar_open = 1;
        } else if (p->kind == TL_PROGRESS_EVAL) {
            printf("%s  step %lld  valid", x->tty ? "\r\033[K" : "", (long long)p->step);
            for (int k = 0; k < c->n_tasks; k++)
                printf(" %s %s %.4f", c->tasks[k].name,
                       c->tasks[k].type == TL_TASK_BINARY ? "auc" : "rmse", p->valid[k]);
            printf("\n");
            fflush(stdout);
            x->bar_open = 0;
        } else if (p->kind == TL_PROGRESS_EPOCH) {
            printf("%sepoch %d/%d  step %lld  loss", x->tty ? "\r\033[K" : "", p->epoch, p->epochs,
                   (long long)p->step);
            for (int k = 0; k < c->n_tasks; k++) printf(" %s %.4f", c->tasks[k].name, p->loss[k]);
            if (p->valid && isfinite(p->monitor)) {
                printf("  | valid");
                for (int k = 0; k < c->n_tasks; k++)
                    printf(" %s %s %.4f", c->tasks[k].name,
                           c->tasks[k].type == TL_TASK_BINARY ? "auc" : "rmse", p->valid[k]);
                if (p->improved) printf("  *");
            }
            printf("\n");
            fflush(stdout);
            x->bar_open = 0;
        }
    }
    if (x->callback_idx && !cancelled) {
        lua_pushvalue(L, x->callback_idx);
        lua_newtable(L);
        lua_pushstring(L, p->kind == TL_PROGRESS_EPOCH ? "epoch" : p->kind == TL_PROGRESS_EVAL ? "eval" : "step");
        lua_setfield(L, -2, "kind");
        lua_pushinteger(L, p->epoch);
        lua_setfield(L, -2, "epoch");
        lua_pushinteger(L, p->step);
        lua_setfield(L, -2, "step");
        lua_newtable(L);
        for (int k = 0; k < c->n_tasks; k++) {
            lua_pushnumber(L, p->loss[k]);
            lua_setfield(L, -2, c->tasks[k].name);
        }
        lua_setfield(L, -2, "loss");
        if (p->valid) {
            lua_newtable(L);
            for (int k = 0; k < c->n_tasks; k++) {
                lua_pushnumber(L, p->valid[k]);
                lua_setfield(L, -2, c->tasks[k].name);
            }
            lua_setfield(L, -2, "valid");
        }
        return tl_lua_progress_call(L, x->error, sizeof x->error);
    }
    return 0;
}

static const char *const fit_fields[] = {"data", "valid", "epochs", "patience", "batch",
                                         "optim", "plot", "verbose", "max_steps", "monitor",
                                         "progress", "seed", "shuffle", "restore_best",
                                         "checkpoint", "every", "eval_every", "diagnostics",
                                         "dp", "grains", "check_every", NULL};

/* m:fit{data=d.train, valid=d.valid, epochs=10, patience=3, batch=1024,
 *       optim=tl.optim.adam{lr=1e-3}, plot=false, verbose=auto} */
static int l_model_fit(lua_State *L)
{
    const char *fn = "m:fit";
    tl_lua_model *lm = tl_lua_check_model_ud(L, 1);
    if (lm->busy)
        return luaL_error(L, "m:fit: the model is training (m:fit called from its own fit's "
                             "progress callback)");
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "data") != LUA_TNIL && tl_lua_is_shards(L, -1)) return tl_lua_fit_shards(L);
    lua_pop(L, 1);
    tl_lua_check_fields(L, 2, fn, fit_fields);
    tl_fit_options o;
    tl_fit_defaults(&o);
    lua_getfield(L, 2, "data");
    const tl_split *train = tl_lua_check_model_split(L, -1, lm->m, fn, "data");
    const tl_dataset *train_d = tl_lua_split_dataset(L, -1);
    lua_getfield(L, 2, "valid");
    const tl_split *valid = lua_isnil(L, -1) ? NULL : tl_lua_check_model_split(L, -1, lm->m, fn, "valid");
    const tl_dataset *valid_d = valid ? tl_lua_split_dataset(L, -1) : NULL;
    o.epochs = (int)tl_lua_opt_int(L, 2, fn, "epochs", 10, 1, 1000000);
    o.patience = (int)tl_lua_opt_int(L, 2, fn, "patience", 0, 0, 1000000);
    o.batch = (int)tl_lua_opt_int(L, 2, fn, "batch", tl_model_config_get(lm->m)->max_batch, 1,
                                  1 << 20);
    if (o.batch > tl_graph_max_batch(tl_model_graph(lm->m))) tl_lua_memory_refresh();
    o.max_steps = tl_lua_opt_int(L, 2, fn, "max_steps", 0, 0, INT64_MAX);
    o.seed = (uint64_t)tl_lua_opt_int(L, 2, fn, "seed", 0, 0, INT64_MAX);
    o.shuffle = tl_lua_opt_bool(L, 2, fn, "shuffle", 1);
    o.restore_best = tl_lua_opt_bool(L, 2, fn, "restore_best", 1);
    o.eval_every = (int)tl_lua_opt_int(L, 2, fn, "eval_every", 0, 0, INT32_MAX);
    o.diagnostics = (int)tl_lua_opt_int(L, 2, fn, "diagnostics", 0, 0, INT32_MAX);
    /* under mpirun (more than one rank) data-parallel by default */
    tl_dist *dist = tl_lua_mpi_dist();
    o.grains = (int)tl_lua_opt_int(L, 2, fn, "grains", 0, 0, 1 << 20);
    o.check_every = (int)tl_lua_opt_int(L, 2, fn, "check_every", 100, 0, INT32_MAX);
    if (!dist && o.grains > 1) dist = tl_dist_local(); /* grains alone: the same bits as over ranks */
    o.dist = tl_lua_opt_bool(L, 2, fn, "dp", dist && (dist->size > 1 || o.grains > 1)) ? dist : NULL;
    const char *monitor = tl_lua_opt_string(L, 2, fn, "monitor", NULL);
    if (monitor && (o.monitor_task = tl_model_task_index(lm->m, monitor)) < 0)
        luaL_error(L, "%s: field 'monitor' names unknown task '%s'", fn, monitor);
    lua_getfield(L, 2, "optim");
    if (!lua_isnil(L, -1))
        tl_lua_read_optim(L, -1, fn, &o.optim);
    else if (tl_model_optim(lm->m))
        o.optim = *tl_optim_get_config(tl_model_optim(lm->m)); /* keep the running optimizer */
    lua_pop(L, 1);

    fit_ctx x;
    memset(&x, 0, sizeof x);
    x.L = L;
    x.m = lm->m;
    x.tty = tl_lua_stdout_is_tty();
    /* at a terminal a progress line redrawn in place; elsewhere (a pipe, a
     * log file) one line per epoch */
    x.quiet = !tl_lua_opt_bool(L, 2, fn, "verbose", 1) || tl_lua_mpi_quiet(); /* rank 0 prints */
    lua_getfield(L, 2, "progress");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TFUNCTION);
        x.callback_idx = lua_gettop(L);
    }
    if (tl_lua_opt_bool(L, 2, fn, "plot", 0)) {
        lua_getglobal(L, "tl");
        lua_getfield(L, -1, "plot");
        if (lua_istable(L, -1)) lua_getfield(L, -1, "live");
        else lua_pushnil(L);
        if (lua_isfunction(L, -1)) {
            lua_newtable(L);
            if (lua_pcall(L, 1, 1, 0) == LUA_OK && !lua_isnil(L, -1)) x.live_idx = lua_gettop(L);
            else if (!lua_isnil(L, -1)) fprintf(stderr, "plot: %s\n", lua_tostring(L, -1));
        } else {
            fprintf(stderr, "m:fit: plot=true but tl.plot.live is not available\n");
        }
    }
    x.ckpt_path = tl_lua_opt_string(L, 2, fn, "checkpoint", NULL);
    x.ckpt_every = tl_lua_opt_int(L, 2, fn, "every", 0, 0, INT64_MAX);
    x.ckpt_here = !o.dist || o.dist->rank == 0; /* data-parallel: rank 0 writes */
    if (x.ckpt_every > 0 && !x.ckpt_path)
        luaL_error(L, "%s: field 'every' needs field 'checkpoint' (a file path)", fn);
    o.progress = fit_progress;
    o.progress_ud = &x;
    /* step callbacks only when something consumes them: a progress bar, a
     * live plot or a user callback */
    o.progress_every = (!x.quiet && x.tty) || x.live_idx || x.callback_idx || x.ckpt_every ? 1 : 0;
    x.model_idx = 1;

    /* The model and the datasets of its splits are busy while the engine
     * runs: a callback's m:close(), m:fit or d:close() is refused. Nothing
     * below raises until they are released. */
    if (!tl_lua_dataset_hold(train_d)) return luaL_error(L, "%s: too many nested fits", fn);
    if (valid_d && !tl_lua_dataset_hold(valid_d)) {
        tl_lua_dataset_release(train_d);
        return luaL_error(L, "%s: too many nested fits", fn);
    }
    lm->busy = 1;
    if (o.dist) tl_lua_mpi_fit_running(1);
    tl_status s = tl_model_fit(lm->m, train, valid, &o);
    if (o.dist) tl_lua_mpi_fit_running(0);
    lm->busy = 0;
    /* data-parallel and stopped (Ctrl-C, SIGUSR1/SIGTERM on every rank, a
     * callback): the ranks agree on the step, and rank 0 saves it */
    char stopmsg[512] = "";
    if (s == TL_ERR_CANCELLED && o.dist && x.ckpt_path && x.ckpt_here) {
        snprintf(stopmsg, sizeof stopmsg, "%s", tl_errmsg());
        if (tl_model_save(lm->m, x.ckpt_path) != TL_OK)
            snprintf(x.error, sizeof x.error, "checkpoint at the stop: %s", tl_errmsg());
        else
            tl_fail(TL_ERR_CANCELLED, "%s; saved to %s", stopmsg, x.ckpt_path);
    }
    tl_lua_dataset_release(train_d);
    if (valid_d) tl_lua_dataset_release(valid_d);
    if (lm->free_pending) {
        tl_model_free(lm->m);
        lm->m = NULL;
        return 0;
    }
    /* Ctrl-C: the error raised below delivers it, once. Without the REPL's
     * pending "interrupted!" hook a pcall around fit catches it like any
     * error, and the last plot update below runs. */
    if (s == TL_ERR_CANCELLED && tl_cancelled()) lua_sethook(L, NULL, 0, 0);
    if (x.live_idx) live_update(&x, 1);
    if (x.error[0]) luaL_error(L, "%s: %s", fn, x.error);
    if (x.bar_open) printf("\n"); /* stopped mid-epoch: end the progress bar's line */
    if (s != TL_OK) return tl_lua_raise_status(L, fn, s);
    if (valid) { /* experts that collapsed: one warning line */
        char msg[512];
        if (tl_diagnose_collapse(lm->m, valid, msg, sizeof msg) == TL_OK && msg[0])
            fprintf(stderr, "m:fit: warning: %s (see m:gates(split))\n", msg);
    }
    return 0; /* nothing to print at the prompt: the progress lines said it */
}

void tl_lua_open_fit(lua_State *L, int tl)
{
    (void)tl;
    tl_lua_model_method(L, "fit", l_model_fit);
    luaL_getmetatable(L, TL_MODEL_MT);
    lua_getfield(L, -1, "methods");
    static const tl_lua_doc_entry docs[] = {
        {"fit", "m:fit",
         "m:fit{data=d.train, valid=d.valid, epochs=10, patience=0, batch=, optim=tl.optim.adam{},\n"
         "      monitor=task, max_steps=, plot=false, verbose=true, progress=function(p) end}\n"
         "Train; with valid and patience, stop early on the validation metric (mean over tasks of AUC\n"
         "for binary, -MSE for regression, or the monitored task's) and restore the best weights.\n"
         "Ctrl-C stops cleanly; the model can continue. A run stopped before its end (max_steps,\n"
         "Ctrl-C, progress) and fitted again for the epochs left continues early stopping's record\n"
         "(best, its weights, patience's count; tl.load of its checkpoint too) when it validates\n"
         "alike (valid rows, monitor, patience); otherwise, and after a run that ended, a fit starts\n"
         "a new one. verbose: a progress line at a terminal, one\n"
         "line per epoch when stdout is a pipe or file; verbose=false prints nothing. A batch above\n"
         "the model's batch= replans its activations (checked against the memory budget).\n"
         "diagnostics=N: every N steps record per-task gradient norms on the shared parameters,\n"
         "their pairwise cosines and the effective loss weights into m:history().diagnostics\n"
         "(tl.plot.history(m, {\"grad_norm\", \"grad_cos\"})). With valid, a warning names experts\n"
         "that no task uses or that give nearly identical outputs (see m:gates).\n"
         "eval_every=N: also validate every N steps (m:history().evals). checkpoint=path, every=N:\n"
         "save at epoch ends and every N steps (tl.load(path) resumes exactly). seed=, shuffle=,\n"
         "restore_best=true. A progress function gets {kind=\"step\"|\"eval\"|\"epoch\", epoch,\n"
         "step, loss, valid} and stops training by returning false.\n"
         "data=sh, a tl.data.shards object: stream the train shards from disk (see tl.data.shards).\n"
         "Under mpirun (tl.mpi.size > 1) the fit is data-parallel: each rank computes its grains of\n"
         "every batch and the gradients are summed in grain order, so grains=G gives the same bits at\n"
         "every rank count (default G = ranks); rank 0 writes checkpoints; check_every=100 compares a\n"
         "parameter checksum across ranks; dp=false trains each rank on its own. With data=sh grain j\n"
         "reads only the shard files j, j+G, ... (at least G train shard files are needed).\n"},
    };
    tl_lua_docs(L, -2, docs, sizeof docs / sizeof *docs);
    lua_pop(L, 2);
}
