/* export/export.c — the export entry points (export.h) and the vocabulary
 * JSON writer. */
#include "export.h"

#include <stdio.h>
#include <string.h>

#include "export/c_source.h"
#include "export/onnx.h"
#include "export/pb.h"
#include "io_file.h"

static tl_status write_buf(const char *what, const char *path, tl_pb *b)
{
    if (b->oom) {
        tl_pb_free(b);
        return tl_fail(TL_ERR_NOMEM, "export: out of memory writing %s", what);
    }
    tl_status st = tl_io_write_atomic(path, b->p, b->n);
    tl_pb_free(b);
    return st ? tl_fail_context(st, "export") : TL_OK;
}

tl_status tl_export_onnx(tl_model *m, const tl_dataset *d, const tl_export_options *o, int opset,
                         const char *path)
{
    if (opset < 13 || opset > 17)
        return tl_fail(TL_ERR_ARG, "export: opset %d unsupported (13..17)", opset);
    tl_xgraph x;
    tl_status st = tl_export_lower(m, d, o, &x);
    if (st) return st;
    tl_pb b;
    st = tl_export_onnx_encode(&x, tl_model_config_get(m), opset, &b);
    tl_export_xgraph_free(&x);
    return st ? st : write_buf("the ONNX model", path, &b);
}

tl_status tl_export_c(tl_model *m, const tl_dataset *d, const tl_export_options *o,
                      const char *name, int header, const char *path)
{
    tl_status st = tl_export_c_check_name(name);
    if (st) return st;
    tl_xgraph x;
    if ((st = tl_export_lower(m, d, o, &x)) != TL_OK) return st;
    tl_pb b = {0};
    st = tl_export_c_encode(&x, tl_model_config_get(m), name, header, &b);
    tl_export_xgraph_free(&x);
    if (st) {
        tl_pb_free(&b);
        return st;
    }
    return write_buf("the C file", path, &b);
}

/* ---- JSON --------------------------------------------------------------- */

/* A JSON string, prefix then s: bytes as they are, except quote, backslash
 * and control characters, which are escaped (the prefix has none). */
static void jstr_pre(tl_pb *b, const char *prefix, const char *s)
{
    tl_pb_bytes(b, "\"", 1);
    tl_pb_bytes(b, prefix, strlen(prefix));
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            tl_pb_bytes(b, e, 2);
        } else if (*p < 0x20) {
            tl_pb_printf(b, "\\u%04x", *p);
        } else {
            tl_pb_bytes(b, p, 1);
        }
    }
    tl_pb_bytes(b, "\"", 1);
}

static void jstr(tl_pb *b, const char *s) { jstr_pre(b, "", s); }

static void json_field(tl_pb *b, const tl_dataset *d, int f)
{
    const char *kind = tl_dataset_cat_kind(d, f);
    int32_t size = tl_dataset_vocab(d)[f];
    tl_pb_printf(b, "    {\"name\": ");
    jstr(b, tl_dataset_cat_name(d, f));
    tl_pb_printf(b, ", \"kind\": \"%s\", \"size\": %d", kind, (int)size);
    if (strcmp(kind, "vocab") == 0) {
        tl_pb_printf(b, ", \"oov\": 0, \"missing\": 1, \"first\": 2,\n     \"values\": [");
        for (int32_t id = 2; id < size; id++) {
            const char *v = tl_dataset_vocab_string(d, f, id);
            if (id > 2) tl_pb_bytes(b, ", ", 2);
            jstr(b, v ? v : "");
        }
        tl_pb_bytes(b, "]", 1);
    } else if (strcmp(kind, "hash") == 0) {
        tl_pb_printf(b, ", \"buckets\": %d, \"missing\": %d, \"hash\": \"towerlab-xxh64\", \"seed\": %d",
                (int)size - 1, (int)size - 1, 0x746c);
    } else if (strcmp(kind, "quantile") == 0) { /* float edges in %.9g, which reads back to the same float */
        int n;
        const float *e = tl_dataset_quantile_edges(d, f, &n);
        tl_pb_printf(b, ", \"missing\": 0, \"first\": 1,\n     \"edges\": [");
        for (int i = 0; i < n; i++) tl_pb_printf(b, i ? ", %.9g" : "%.9g", (double)e[i]);
        tl_pb_bytes(b, "]", 1);
    } /* "ids" (shards written without their encodings): the size is all there is */
    tl_pb_bytes(b, "}", 1);
}

/* Multi-valued field b: its input, slots, pooling and truncation, then the
 * encoding of each value (as a single field's, without a missing id: a
 * missing or empty field is an empty bag, all slots -1). */
static void json_bag(tl_pb *b, const tl_xgraph *x, const tl_dataset *d, int f)
{
    static const char *const pools[] = {"sum", "mean", "max"};
    const char *kind = tl_dataset_bag_kind(d, f);
    int32_t size = tl_dataset_bag_vocab(d, f);
    tl_pb_printf(b, "    {\"name\": ");
    jstr(b, x->bag_name[f]);
    tl_pb_printf(b, ", \"input\": ");
    jstr_pre(b, "bag.", x->bag_name[f]);
    tl_pb_printf(b, ", \"kind\": \"%s\", \"size\": %d, \"slots\": %d, \"offset\": %d, \"pad\": -1,\n     "
            "\"pooling\": \"%s\", \"keep\": \"%s\"", kind, (int)size, x->bag_len[f], x->bag_off[f],
            pools[x->bag_pool[f]], tl_dataset_bag_keep_first(d, f) ? "first" : "last");
    if (strcmp(kind, "vocab") == 0) {
        tl_pb_printf(b, ", \"oov\": 0, \"first\": 2,\n     \"values\": [");
        for (int32_t id = 2; id < size; id++) {
            const char *v = tl_dataset_bag_string(d, f, id);
            if (id > 2) tl_pb_bytes(b, ", ", 2);
            jstr(b, v ? v : "");
        }
        tl_pb_bytes(b, "]", 1);
    } else if (strcmp(kind, "hash") == 0) {
        tl_pb_printf(b, ", \"buckets\": %d, \"hash\": \"towerlab-xxh64\", \"seed\": %d", (int)size - 1, 0x746c);
    }
    tl_pb_bytes(b, "}", 1);
}

tl_status tl_export_vocab_json(tl_model *m, const tl_dataset *d, const tl_export_options *o,
                               const char *path)
{
    tl_xgraph x;
    tl_status st = tl_export_lower(m, d, o, &x);
    if (st) return st;
    const tl_model_config *c = tl_model_config_get(m);
    tl_pb b = {0};
    tl_pb_printf(&b, "{\n  \"format\": \"towerlab-vocab\", \"version\": 1,\n  \"ids\": [\n");
    for (int f = 0; f < x.n_cat; f++) {
        json_field(&b, d, f);
        tl_pb_printf(&b, f + 1 < x.n_cat ? ",\n" : "\n");
    }
    tl_pb_printf(&b, "  ],\n  \"bags\": [%s", x.n_bag ? "\n" : "");
    for (int f = 0; f < x.n_bag; f++) {
        json_bag(&b, &x, d, f);
        tl_pb_printf(&b, f + 1 < x.n_bag ? ",\n" : "\n  ");
    }
    tl_pb_printf(&b, "],\n  \"numeric\": [\n");
    for (int j = 0, r = 0; j < x.n_num; j++) {
        const tl_xnum *n = &x.num[j];
        if (n->kind == TL_X_NUM_FLAG) continue;
        double mean, sd;
        const char *t = tl_dataset_num_transform(d, j, &mean, &sd);
        int flagged = 0;
        for (int i = 0; i < x.n_num; i++) flagged |= x.num[i].kind == TL_X_NUM_FLAG && x.num[i].src == r;
        tl_pb_printf(&b, "    {\"name\": ");
        jstr(&b, x.raw_names[r]);
        tl_pb_printf(&b, ", \"column\": %d, \"transform\": \"%s\", \"mean\": %.9g, \"std\": %.9g, "
                "\"missing_flag\": %s}%s\n", r, t, mean, sd, flagged ? "true" : "false",
                r + 1 < x.n_raw ? "," : "");
        r++;
    }
    tl_pb_printf(&b, "  ],\n  \"outputs\": [\n");
    for (int k = 0; k < x.n_out; k++) {
        const tl_task_spec *ts = &c->tasks[x.task[k]];
        tl_pb_printf(&b, "    {\"name\": ");
        jstr(&b, ts->name);
        tl_pb_printf(&b, ", \"type\": \"%s\", \"calibrated\": %s}%s\n",
                ts->type == TL_TASK_BINARY ? "binary" : "regression",
                x.nodes[x.out[k]].op == TL_X_CALIBRATE ? "true" : "false",
                k + 1 < x.n_out ? "," : "");
    }
    tl_pb_printf(&b, "  ]\n}\n");
    tl_export_xgraph_free(&x);
    return write_buf("the vocabulary JSON", path, &b);
}
