/* io.c — checkpoint writing and reading (layout in io.h).
 *
 * The whole file is assembled in one buffer, checksummed, and written to a
 * temporary file that replaces the target by rename(2). Reading loads the
 * file into memory, checks magic, version, length and CRC before looking at
 * any section, then reads every value through a bounds-checked cursor. */
#include "io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "codec.h"
#include "io_file.h"
#include "models/model_io.h"

static const uint8_t magic[8] = {0x89, 'T', 'L', 'M', 0x0d, 0x0a, 0x1a, 0x0a};
#define HEADER_SIZE 24u
#define SECTION_HEADER 16u

enum { S_CONF, S_PARM, S_OPTM, S_TRNS, S_WGHT, S_HSTP, S_HEPO, S_CALB, S_COUNT };

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

/* Start a section; returns the offset of its payload (to close it). */
static size_t begin_section(tl_wbuf *b, uint32_t tag)
{
    tl_put_u32(b, tag);
    tl_put_u32(b, TL_IO_CRITICAL);
    tl_put_u64(b, 0);
    return b->n;
}

static void end_section(tl_wbuf *b, size_t payload)
{
    if (!b->nomem) tl_enc_u64(b->p + payload - 8, (uint64_t)(b->n - payload));
}

/* ---- CONF: the configuration ---------------------------------------------- */

static void x_mlp(tl_codec *c, tl_mlp_spec *s)
{
    tl_codec_int(c, &s->n);
    if (tl_codec_refuse(c, s->n < 0 || s->n > TL_MAX_LAYERS, "has an MLP with a layer count out of range"))
        return;
    for (int i = 0; i < s->n && i < TL_MAX_LAYERS; i++) tl_codec_int(c, &s->units[i]);
    tl_codec_f32(c, &s->dropout);
}

static void x_task(tl_codec *c, tl_task_spec *t)
{
    tl_codec_str(c, t->name, sizeof t->name);
    TL_CODEC_ENUM(c, t->type);
    if (tl_codec_refuse(c, t->type != TL_TASK_BINARY && t->type != TL_TASK_REGRESSION,
                 "has an unknown task type"))
        return;
    x_mlp(c, &t->tower);
    tl_codec_f32(c, &t->weight);
}

static void x_distill(tl_codec *c, tl_distill_spec *ds, int n_tasks)
{
    tl_codec_int(c, &ds->enabled);
    tl_codec_int(c, &ds->n_pairs);
    if (tl_codec_refuse(c, ds->n_pairs < 0 || ds->n_pairs > TL_MAX_TASKS,
                 "has a distillation pair count out of range"))
        return;
    for (int i = 0; i < ds->n_pairs && i < TL_MAX_TASKS && tl_codec_ok(c); i++) {
        tl_codec_int(c, &ds->pairs[i][0]);
        tl_codec_int(c, &ds->pairs[i][1]);
        tl_codec_int(c, &ds->flip[i]);
        for (int j = 0; j < 2; j++)
            tl_codec_refuse(c, ds->pairs[i][j] < 0 || ds->pairs[i][j] >= n_tasks,
                     "has a distillation pair naming an unknown task");
    }
    tl_codec_int(c, &ds->order);
    tl_codec_f32(c, &ds->aux);
    tl_codec_f32(c, &ds->kd);
    tl_codec_int(c, &ds->bce_on_aux);
    TL_CODEC_ENUM(c, ds->calibrate);
    tl_codec_int(c, &ds->calib_valid);
    TL_CODEC_ENUM(c, ds->correct);
    tl_codec_f32(c, &ds->lambda);
    tl_codec_int(c, &ds->teacher_grad);
    tl_codec_int(c, &ds->teacher_shared);
    tl_codec_i64(c, &ds->warmup);
    tl_codec_int(c, &ds->max_pairs);
    tl_codec_int(c, &ds->naive);
}

/* The weighting methods' options, after a 1 (files without them: the
 * defaults). */
static void x_weighting_opts(tl_codec *c, tl_weighting_opts *o)
{
    unsigned have = 1;
    tl_codec_u32_tail(c, &have, 0u);
    if (!have) {
        tl_weighting_opts_defaults(o);
        return;
    }
    TL_CODEC_ENUM(c, o->at);
    tl_codec_int(c, &o->rlw_dirichlet);
    tl_codec_f32(c, &o->famo_lr);
    tl_codec_f32(c, &o->famo_gamma);
    tl_codec_f32(c, &o->db_beta);
    tl_codec_f32(c, &o->db_beta_sigma);
    tl_codec_f32(c, &o->stch_mu);
    tl_codec_int(c, &o->stch_warmup);
    tl_codec_f32(c, &o->graddrop_leak);
    tl_codec_f32(c, &o->cagrad_c);
    tl_codec_int(c, &o->cagrad_rescale);
    tl_codec_f32(c, &o->nash_max_norm);
    tl_codec_f32(c, &o->gradvac_beta);
}

/* DSelect-k's fields, ESMM over a backbone and STEM's gate layers, added after
 * the rest: older files read the defaults. */
static void x_backbone_tail(tl_codec *c, tl_backbone_spec *b)
{
    unsigned gamma, entropy;
    memcpy(&gamma, &b->gamma, sizeof gamma);
    memcpy(&entropy, &b->entropy, sizeof entropy);
    tl_codec_int_tail(c, &b->select_k, 2);
    tl_codec_u32_tail(c, &gamma, 0x3f800000u); /* 1.0f */
    tl_codec_u32_tail(c, &entropy, 0u);
    tl_codec_int_tail(c, &b->esmm, 0);
    tl_codec_int_tail(c, &b->gate.n, 0);
    if (tl_codec_refuse(c, b->gate.n < 0 || b->gate.n > TL_MAX_LAYERS, "has an MLP with a layer count out of range"))
        return;
    for (int i = 0; i < b->gate.n; i++) tl_codec_int_tail(c, &b->gate.units[i], 0);
    unsigned drop;
    memcpy(&drop, &b->gate.dropout, sizeof drop);
    tl_codec_u32_tail(c, &drop, 0u);
    if (tl_codec_reading(c)) memcpy(&b->gate.dropout, &drop, sizeof drop);
    if (tl_codec_reading(c)) {
        memcpy(&b->gamma, &gamma, sizeof gamma);
        memcpy(&b->entropy, &entropy, sizeof entropy);
    }
}

/* The multi-valued fields, added last: older files have none. */
static void x_bags(tl_codec *c, tl_model_config *cfg)
{
    tl_codec_int_tail(c, &cfg->n_bag, 0);
    if (tl_codec_refuse(c, cfg->n_bag < 0 || cfg->n_bag > TL_MAX_BAGS, "has a multi-valued field count out of range"))
        return;
    for (int b = 0; b < cfg->n_bag && tl_codec_ok(c); b++) {
        tl_codec_str(c, cfg->bag_name[b], sizeof cfg->bag_name[b]);
        tl_codec_int(c, &cfg->bag_vocab[b]);
        tl_codec_int(c, &cfg->bag_len[b]);
        tl_codec_int(c, &cfg->bag_pool[b]);
    }
}

static void x_field_fps(tl_codec *c, tl_model_config *cfg)
{
    tl_codec_int_tail(c, &cfg->n_field_fp, 0);
    if (tl_codec_refuse(c, cfg->n_field_fp != 0 && cfg->n_field_fp != cfg->n_cat + cfg->n_bag,
                        "has a field fingerprint count other than its fields'"))
        return;
    for (int f = 0; f < cfg->n_field_fp && tl_codec_ok(c); f++) tl_codec_u64(c, &cfg->field_fp[f]);
}

/* Reading starts from zeros; the fields are range-checked afterwards
 * (check_config_fields), the counts that index arrays here. */
static void x_config(tl_codec *c, tl_model_config *cfg)
{
    if (tl_codec_reading(c)) memset(cfg, 0, sizeof *cfg);
    tl_backbone_spec *bb = &cfg->backbone;
    TL_CODEC_ENUM(c, bb->kind);
    x_mlp(c, &bb->bottom);
    x_mlp(c, &bb->expert);
    tl_codec_int(c, &bb->experts);
    tl_codec_int(c, &bb->levels);
    tl_codec_int(c, &bb->shared);
    tl_codec_int(c, &bb->specific);
    tl_codec_f32(c, &bb->constraint);
    tl_codec_int(c, &bb->transfer_dim);
    tl_codec_int(c, &cfg->n_tasks);
    if (tl_codec_refuse(c, cfg->n_tasks < 1 || cfg->n_tasks > TL_MAX_TASKS, "has a task count out of range"))
        return;
    for (int k = 0; k < cfg->n_tasks && tl_codec_ok(c); k++) x_task(c, &cfg->tasks[k]);
    tl_codec_int(c, &cfg->n_cat);
    if (tl_codec_refuse(c, cfg->n_cat < 0 || cfg->n_cat > TL_MAX_FIELDS,
                 "has a categorical field count out of range"))
        return;
    for (int f = 0; f < cfg->n_cat && tl_codec_ok(c); f++) tl_codec_int(c, &cfg->vocab[f]);
    tl_codec_int(c, &cfg->n_num);
    tl_codec_int(c, &cfg->emb_dim);
    TL_CODEC_ENUM(c, cfg->weighting);
    tl_codec_f32(c, &cfg->gradnorm_alpha);
    tl_codec_f32(c, &cfg->dwa_temperature);
    tl_codec_int(c, &cfg->max_batch);
    tl_codec_u64(c, &cfg->seed);
    tl_dml_spec *dm = &cfg->dml;
    tl_codec_int(c, &dm->enabled);
    tl_codec_int(c, &dm->ctfm);
    tl_codec_int(c, &dm->gkd);
    tl_codec_int(c, &dm->stop_grad);
    tl_codec_int(c, &dm->gkd_layers);
    tl_codec_f32(c, &dm->dropout);
    x_distill(c, &cfg->distill, cfg->n_tasks);
    if (!tl_codec_ok(c)) return;
    for (int k = 0; k < cfg->n_tasks; k++) {
        tl_codec_int(c, &cfg->tasks[k].space);
        tl_codec_refuse(c, cfg->tasks[k].space < -1 || cfg->tasks[k].space >= cfg->n_tasks,
                 "has a task space naming an unknown task");
    }
    /* fields added later go last: older files lack them */
    tl_codec_int_tail(c, &cfg->distill.calib_every, 0);
    tl_codec_u32_tail(c, &cfg->dml.gkd_tasks, 0u);
    x_weighting_opts(c, &cfg->wopt);
    x_backbone_tail(c, &cfg->backbone);
    x_bags(c, cfg);
    x_field_fps(c, cfg);
}

static void check_mlp_fields(tl_rbuf *r, const tl_mlp_spec *s, const char *what)
{
    char f[64];
    for (int i = 0; i < s->n; i++) {
        snprintf(f, sizeof f, "%s.units[%d]", what, i + 1);
        tl_codec_want_int(r, f, s->units[i], 1, 1 << 16);
    }
    snprintf(f, sizeof f, "%s.dropout", what);
    tl_codec_want_real(r, f, s->dropout, 0.0, 1.0, 1);
}

static void check_config_fields(tl_rbuf *r, const tl_model_config *c)
{
    const tl_backbone_spec *b = &c->backbone;
    char f[64];
    tl_codec_want_int(r, "backbone.kind", (long long)b->kind, 0, TL_BACKBONE_COUNT - 1);
    check_mlp_fields(r, &b->bottom, "backbone.bottom");
    check_mlp_fields(r, &b->expert, "backbone.expert");
    if (b->kind == TL_BACKBONE_OMOE || b->kind == TL_BACKBONE_MMOE)
        tl_codec_want_int(r, "backbone.experts", b->experts, 1, 1024);
    if (b->kind == TL_BACKBONE_PLE) {
        tl_codec_want_int(r, "backbone.levels", b->levels, 1, 8);
        tl_codec_want_int(r, "backbone.shared", b->shared, 0, 256);
        tl_codec_want_int(r, "backbone.specific", b->specific, 0, 256);
    }
    tl_codec_want_real(r, "backbone.constraint", b->constraint, 0.0, 1e6, 0);
    tl_codec_want_int(r, "backbone.transfer_dim", b->transfer_dim, 0, 1 << 16);
    tl_codec_want_int(r, "backbone.esmm", b->esmm, 0, 1);
    check_mlp_fields(r, &b->gate, "backbone.gate");
    if (b->kind == TL_BACKBONE_DSELECT_K) {
        tl_codec_want_int(r, "backbone.select_k", b->select_k, 1, 1024);
        tl_codec_want_real(r, "backbone.gamma", b->gamma, 1e-6, 1e6, 0);
        tl_codec_want_real(r, "backbone.entropy", b->entropy, 0.0, 1e6, 0);
    }
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
        tl_codec_want_real(r, f, t->weight, 0.0, 3.0e38, 0);
        snprintf(f, sizeof f, "tasks[%d].space", k + 1);
        tl_codec_want_int(r, f, t->space, -1, c->n_tasks - 1);
        if (!r->bad && t->space == k) {
            snprintf(r->msg, sizeof r->msg, "has field %s naming its own task", f);
            r->bad = r->msg;
        }
    }
    for (int i = 0; i < c->n_cat; i++) {
        snprintf(f, sizeof f, "vocab[%d]", i + 1);
        tl_codec_want_int(r, f, c->vocab[i], 1, INT32_MAX);
    }
    tl_codec_want_int(r, "n_num", c->n_num, 0, 1 << 24);
    if (c->n_cat > 0) tl_codec_want_int(r, "emb_dim", c->emb_dim, 1, 4096);
    tl_codec_want_int(r, "weighting", (long long)c->weighting, 0, TL_WEIGHTING_COUNT - 1);
    tl_codec_want_real(r, "gradnorm_alpha", c->gradnorm_alpha, 0.0, 1e6, 0);
    tl_codec_want_real(r, "dwa_temperature", c->dwa_temperature, 1e-30, 1e6, 0);
    tl_codec_want_int(r, "max_batch", c->max_batch, 1, 1 << 20);
    const tl_dml_spec *dm = &c->dml;
    tl_codec_want_int(r, "dml.enabled", dm->enabled, 0, 1);
    if (dm->enabled) {
        tl_codec_want_int(r, "dml.ctfm", dm->ctfm, 0, 1);
        tl_codec_want_int(r, "dml.gkd", dm->gkd, 0, 1);
        tl_codec_want_int(r, "dml.stop_grad", dm->stop_grad, 0, 1);
        tl_codec_want_int(r, "dml.gkd_layers", dm->gkd_layers, 1, TL_MAX_LAYERS);
        tl_codec_want_real(r, "dml.dropout", dm->dropout, 0.0, 1.0, 1);
    }
    const tl_distill_spec *ds = &c->distill;
    tl_codec_want_int(r, "distill.enabled", ds->enabled, 0, 1);
    if (!ds->enabled) return;
    tl_codec_want_int(r, "distill.n_pairs", ds->n_pairs, 1, TL_MAX_TASKS);
    for (int p = 0; p < ds->n_pairs; p++) {
        snprintf(f, sizeof f, "distill.flip[%d]", p + 1);
        tl_codec_want_int(r, f, ds->flip[p], -1, 1);
        if (!r->bad && ds->pairs[p][0] == ds->pairs[p][1]) {
            snprintf(r->msg, sizeof r->msg, "has distillation pair %d naming one task twice", p + 1);
            r->bad = r->msg;
        }
    }
    tl_codec_want_int(r, "distill.order", ds->order, 0, 2);
    tl_codec_want_real(r, "distill.aux", ds->aux, 0.0, 1e6, 0);
    tl_codec_want_real(r, "distill.kd", ds->kd, 0.0, 1.0, 0);
    tl_codec_want_int(r, "distill.bce_on_aux", ds->bce_on_aux, 0, 1);
    tl_codec_want_int(r, "distill.calibrate", (long long)ds->calibrate, TL_DISTILL_PLATT, TL_DISTILL_ISOTONIC);
    tl_codec_want_int(r, "distill.calib_valid", ds->calib_valid, 0, 1);
    tl_codec_want_int(r, "distill.correct", (long long)ds->correct, TL_CORRECT_NONE, TL_CORRECT_CLIP);
    tl_codec_want_real(r, "distill.lambda", ds->lambda, 0.0, 1.0, 0);
    tl_codec_want_int(r, "distill.teacher_grad", ds->teacher_grad, 0, 1);
    tl_codec_want_int(r, "distill.teacher_shared", ds->teacher_shared, 0, 1);
    tl_codec_want_int(r, "distill.warmup", ds->warmup, 0, INT64_MAX / 2);
    tl_codec_want_int(r, "distill.max_pairs", ds->max_pairs, 1, 1 << 30);
    tl_codec_want_int(r, "distill.naive", ds->naive, 0, 1);
    tl_codec_want_int(r, "distill.calib_every", ds->calib_every, 0, INT32_MAX);
    tl_codec_want_int(r, "dml.gkd_tasks", (long long)c->dml.gkd_tasks, 0, (1LL << c->n_tasks) - 1);
}


/* ---- CONF and PARM ---------------------------------------------------------
 * The sections io.c reads and writes itself: the configuration a model is
 * rebuilt from, and the parameters, through the graph. The model's other
 * sections are its own (models/model_io.h). A read returns TL_ERR_FORMAT with
 * r->bad saying why when the section is corrupted (the caller names the
 * section), or another status with its own message. */

static void conf_write(tl_codec *c, tl_model *m)
{
    tl_model_config cfg = *tl_model_config_get(m);
    x_config(c, &cfg);
}

static void parm_write(tl_codec *c, tl_model *m)
{
    int np = tl_graph_param_count(tl_model_graph(m));
    float *params = tl_graph_params(tl_model_graph(m), NULL);
    tl_put_u32(c->w, (uint32_t)np);
    for (int i = 0; i < np; i++) {
        const tl_param_info *p = tl_graph_param(tl_model_graph(m), i);
        tl_put_str(c->w, p->name ? p->name : "");
        tl_put_i32(c->w, p->rows);
        tl_put_i32(c->w, p->cols);
        tl_put_f32s(c->w, params + p->offset, (size_t)p->rows * (size_t)p->cols);
    }
}

static tl_status parm_read(tl_codec *c, tl_model *m, const char *path)
{
    tl_rbuf *r = c->r;
    uint32_t np = tl_get_u32(r);
    if (!r->bad && np != (uint32_t)tl_graph_param_count(tl_model_graph(m)))
        return tl_fail(TL_ERR_FORMAT, "%s: checkpoint has %u parameters; its configuration builds %d",
                       path, np, tl_graph_param_count(tl_model_graph(m)));
    float *params = tl_graph_params(tl_model_graph(m), NULL);
    for (uint32_t i = 0; i < np && !r->bad; i++) {
        const tl_param_info *p = tl_graph_param(tl_model_graph(m), (int)i);
        char name[256];
        tl_get_str(r, name, sizeof name);
        int32_t rows = tl_get_i32(r), cols = tl_get_i32(r);
        if (r->bad) break;
        if (strcmp(name, p->name ? p->name : "") != 0 || rows != p->rows || cols != p->cols)
            return tl_fail(TL_ERR_FORMAT, "%s: parameter %u is '%s' [%d x %d] in the checkpoint; "
                                          "the configuration builds '%s' [%d x %d]",
                           path, i + 1, name, (int)rows, (int)cols, p->name, p->rows, p->cols);
        tl_get_f32s(r, params + p->offset, (size_t)p->rows * (size_t)p->cols);
    }
    return r->bad ? TL_ERR_FORMAT : TL_OK;
}

/* The codec table: every section this version writes, in file order. CONF
 * has no read here: tl_model_load_limit reads it first, to build the model
 * the other sections are read into. CONF, PARM and TRNS must be present. */
typedef struct {
    uint32_t tag;
    void (*write)(tl_codec *c, tl_model *m);
    tl_status (*read)(tl_codec *c, tl_model *m, const char *path);
    int required;
} section_codec;

static const section_codec sections[S_COUNT] = {
    [S_CONF] = {TL_CODEC_TAG('C', 'O', 'N', 'F'), conf_write, NULL, 1},
    [S_PARM] = {TL_CODEC_TAG('P', 'A', 'R', 'M'), parm_write, parm_read, 1},
    [S_OPTM] = {TL_CODEC_TAG('O', 'P', 'T', 'M'), tl_model_io_optm_write, tl_model_io_optm_read, 0},
    [S_TRNS] = {TL_CODEC_TAG('T', 'R', 'N', 'S'), tl_model_io_trns_write, tl_model_io_trns_read, 1},
    [S_WGHT] = {TL_CODEC_TAG('W', 'G', 'H', 'T'), tl_model_io_wght_write, tl_model_io_wght_read, 0},
    [S_HSTP] = {TL_CODEC_TAG('H', 'S', 'T', 'P'), tl_model_io_hstp_write, tl_model_io_hstp_read, 0},
    [S_HEPO] = {TL_CODEC_TAG('H', 'E', 'P', 'O'), tl_model_io_hepo_write, tl_model_io_hepo_read, 0},
    [S_CALB] = {TL_CODEC_TAG('C', 'A', 'L', 'B'), tl_model_io_calb_write, tl_model_io_calb_read, 0},
};

static tl_status bad_section(const char *path, int which, const char *why)
{
    uint32_t t = sections[which].tag;
    return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: section %c%c%c%c %s", path,
                   (char)(t & 0xff), (char)(t >> 8 & 0xff), (char)(t >> 16 & 0xff),
                   (char)(t >> 24), why);
}

static void encode(tl_wbuf *b, tl_model *m)
{
    uint8_t *h = tl_wbuf_take(b, HEADER_SIZE);
    if (h) {
        memcpy(h, magic, 8);
        tl_enc_u32(h + 8, TL_IO_FORMAT_VERSION);
        tl_enc_u32(h + 12, 0);
        tl_enc_u64(h + 16, 0); /* length, patched at the end */
    }
    tl_codec c = {b, NULL};
    for (int i = 0; i < S_COUNT && !b->nomem; i++) {
        size_t off = begin_section(b, sections[i].tag);
        sections[i].write(&c, m);
        end_section(b, off);
    }
    uint8_t *crc = tl_wbuf_take(b, 4);
    if (!crc) return;
    tl_enc_u64(b->p + 16, (uint64_t)b->n);
    tl_enc_u32(crc, crc_of(b->p, b->n - 4));
}

/* Restore every section after CONF into m, in file order. */
static tl_status restore(tl_model *m, const char *path, tl_rbuf *sec, const int *have)
{
    for (int i = 0; i < S_COUNT; i++) {
        if (!sections[i].read || !have[i]) continue;
        tl_codec c = {NULL, &sec[i]};
        tl_status s = sections[i].read(&c, m, path);
        if (s == TL_ERR_FORMAT && sec[i].bad) return bad_section(path, i, sec[i].bad);
        if (s != TL_OK) return s;
    }
    return TL_OK;
}

tl_status tl_model_save(tl_model *m, const char *path)
{
    if (!m || !path || !path[0]) return tl_fail(TL_ERR_ARG, "save: needs a model and a path");
    tl_wbuf b = {0};
    encode(&b, m);
    if (b.nomem) {
        tl_free(b.p);
        return tl_fail_context(TL_ERR_NOMEM, "save %s", path);
    }
    tl_status s = tl_io_write_atomic(path, b.p, b.n);
    tl_free(b.p);
    return s;
}

/* Check header, length and CRC, then split the body into sections. */
static tl_status parse(const char *path, const uint8_t *p, size_t n, tl_rbuf *sec, int *have)
{
    if (n < 8 && memcmp(p, magic, n) == 0)
        return tl_fail(TL_ERR_FORMAT, "%s: truncated checkpoint (%zu bytes)", path, n);
    if (n < 8 || memcmp(p, magic, 8) != 0)
        return tl_fail(TL_ERR_FORMAT, "%s: not a towerlab checkpoint (bad magic)", path);
    if (n < HEADER_SIZE)
        return tl_fail(TL_ERR_FORMAT, "%s: truncated checkpoint (%zu bytes)", path, n);
    uint32_t version = tl_dec_u32(p + 8);
    if (version > TL_IO_FORMAT_VERSION)
        return tl_fail(TL_ERR_FORMAT, "%s: checkpoint format version %u is newer than this build "
                                      "of towerlab reads (up to %u); upgrade towerlab",
                       path, version, TL_IO_FORMAT_VERSION);
    if (version == 0)
        return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: format version 0", path);
    uint64_t len = tl_dec_u64(p + 16);
    if ((uint64_t)n < len)
        return tl_fail(TL_ERR_FORMAT, "%s: truncated checkpoint (%zu of %llu bytes)", path, n,
                       (unsigned long long)len);
    if ((uint64_t)n > len || len < HEADER_SIZE + 4)
        return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: %zu bytes but the header "
                                      "records %llu", path, n, (unsigned long long)len);
    uint32_t want = tl_dec_u32(p + n - 4), got = crc_of(p, n - 4);
    if (want != got)
        return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: checksum mismatch (CRC32 %08x, "
                                      "recorded %08x)", path, got, want);
    size_t pos = HEADER_SIZE, end = n - 4;
    while (pos < end) {
        if (end - pos < SECTION_HEADER)
            return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: section header at byte %zu "
                                          "runs past the end", path, pos);
        uint32_t tag = tl_dec_u32(p + pos), flags = tl_dec_u32(p + pos + 4);
        uint64_t size = tl_dec_u64(p + pos + 8);
        pos += SECTION_HEADER;
        if (size > (uint64_t)(end - pos))
            return tl_fail(TL_ERR_FORMAT, "%s: corrupted checkpoint: section at byte %zu runs "
                                          "past the end", path, pos - SECTION_HEADER);
        int which = -1;
        for (int i = 0; i < S_COUNT; i++)
            if (sections[i].tag == tag) which = i;
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
    for (int i = 0; i < S_COUNT; i++)
        if (sections[i].required && !have[i]) return bad_section(path, i, "is missing");
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
    for (int f = 0; f < c->n_bag; f++)
        n += (double)(c->bag_vocab[f] > 0 ? c->bag_vocab[f] : 0) * (c->emb_dim > 0 ? c->emb_dim : 0);
    const tl_backbone_spec *b = &c->backbone;
    const tl_mlp_spec *first = NULL; /* the layers that tl_rbuf_take the input vector */
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
    tl_status s = tl_io_read_file(path, &p, &n);
    if (s != TL_OK) return s;

    tl_rbuf sec[S_COUNT];
    int have[S_COUNT] = {0};
    memset(sec, 0, sizeof sec);
    tl_model *m = NULL;
    if ((s = parse(path, p, n, sec, have)) != TL_OK) goto done;

    tl_model_config cfg;
    tl_codec conf = {NULL, &sec[S_CONF]};
    x_config(&conf, &cfg);
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
        tl_status st = tl_io_fail(path, "cannot create a temporary file next to it", errno);
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        tl_free(buf);
        tl_free(tmp);
        return st;
    }
    (void)fchmod(fd, 0666 & ~tl_io_umask());
    tl_status st = TL_OK;
    fprintf(f, "row");
    for (size_t k = 0; k < K; k++) fprintf(f, ",%s", c->tasks[k].name);
    fputc('\n', f);
    for (size_t from = 0; from < s->n && st == TL_OK; from += chunk) {
        tl_split part = tl_split_rows(s, from, s->n - from < chunk ? s->n - from : chunk, c->n_cat, c->n_num,
                                      c->n_tasks);
        st = calibrated ? tl_model_predict_calibrated(m, &part, buf) : tl_model_predict(m, &part, buf);
        for (size_t i = 0; i < part.n && st == TL_OK; i++) {
            /* the row's 1-based data row in its source file, or its place in the split */
            unsigned long long id = s->row ? (unsigned long long)s->row[from + i] + 1
                                           : (unsigned long long)(from + i) + 1;
            fprintf(f, "%llu", id);
            for (size_t k = 0; k < K; k++) fprintf(f, ",%.9g", (double)buf[i * K + k]);
            fputc('\n', f);
        }
        if (st == TL_OK && ferror(f)) st = tl_io_fail(path, "write failed", errno);
    }
    int err = 0;
    if (fflush(f) != 0 && st == TL_OK) err = errno;
    if (fclose(f) != 0 && st == TL_OK && !err) err = errno;
    if (st == TL_OK && err) st = tl_io_fail(path, "write failed", err);
    if (st == TL_OK && rename(tmp, path) != 0) st = tl_io_fail(path, "cannot replace it", errno);
    if (st != TL_OK) unlink(tmp);
    tl_free(buf);
    tl_free(tmp);
    return st;
}

