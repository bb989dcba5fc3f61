/* export/lower.h — a trained model's inference graph, lowered for the
 * writers (export/onnx.c, export/c_source.c).
 *
 * tl_export_lower walks the engine's graph back from each exported task's
 * prediction and keeps only what inference needs, in a topological order:
 * dropout and stop-gradient become their input, parameters and scalars
 * become constants, loss and label nodes are never reached. Each writer has
 * one emitter per op kind (tl_xop), so every backbone and strategy whose
 * inference graph uses these ops exports without code of its own.
 *
 * Numeric features enter raw (as parsed; NaN = missing): the first node
 * (TL_X_NUMERIC) reproduces tl.data.csv's normalisation from the dataset's
 * training statistics, so a server feeds the values it has. Calibrators
 * (tl.calibrate) are a TL_X_CALIBRATE node after the prediction.
 *
 * Multi-valued ("bag") fields enter as one id input each (TL_X_BAG_IDS, the
 * field's L slots with -1 in the empty ones, as tl_split.bag holds them) and
 * are pooled by TL_X_EMBEDDING_BAG exactly as ops/bag.c does: sum, mean over
 * the ids present, or element-wise max; a bag with no id gives zeros.
 */
#ifndef TL_EXPORT_LOWER_H
#define TL_EXPORT_LOWER_H

#include "calibrate.h"
#include "data.h"
#include "graph_types.h"
#include "model.h"

typedef enum {
    TL_X_IDS,            /* graph input "ids": int32 [N, n_cat] */
    TL_X_NUMERIC,        /* graph input "numeric" (raw) -> the model's numeric features */
    TL_X_CONST,          /* data: rows x cols floats */
    TL_X_EMBEDDING,      /* in: table, ids; vocab/offsets per field */
    TL_X_LINEAR,         /* act(x W + b); in: x, W [, b] */
    TL_X_GROUPED_LINEAR, /* k groups side by side; in: x, W [, b] */
    TL_X_TOKEN_LINEAR,   /* one layer over k tokens; in: x, W [, b] */
    TL_X_MATMUL,
    TL_X_ADD, TL_X_SUB, TL_X_MUL, /* b broadcast by `bcast` */
    TL_X_SCALE,          /* x * f */
    TL_X_RELU, TL_X_SIGMOID, TL_X_TANH, TL_X_EXP, TL_X_SOFTPLUS,
    TL_X_SOFTMAX, TL_X_LOG_SOFTMAX, /* over each row */
    TL_X_CONCAT,         /* columns */
    TL_X_SLICE,          /* columns start .. start+cols */
    TL_X_ROW_SUM,        /* [N, c] -> [N, 1] */
    TL_X_GATE_MIX,       /* in: gate, expert blocks; blocks = {first, count} per block */
    TL_X_ATTENTION,      /* in: q, k, v; k = tokens */
    TL_X_CALIBRATE,      /* cal applied to a probability column */
    TL_X_BAG_IDS,        /* graph input of multi-valued field k: int32 [N, L], -1 = empty slot */
    TL_X_EMBEDDING_BAG,  /* in: table, bag ids; k = slots L, start = pooling (ops/bag.h's
                            tl_bag_pool), vocab[0] = the table's rows */
    TL_X_COUNT
} tl_xop;

enum { TL_X_BC_SAME, TL_X_BC_ROW, TL_X_BC_COL, TL_X_BC_SCALAR }; /* ops/ops.h's tl_bcast */

#define TL_X_MAX_IN 17

typedef struct {
    tl_xop op;
    int batched;         /* rows = the batch (N) */
    int rows, cols;      /* rows when not batched */
    int nin;
    int in[TL_X_MAX_IN]; /* indices of earlier nodes */
    tl_act act;
    int k, start, bcast;
    float f;
    const float *data;            /* TL_X_CONST (the model's own memory) */
    const int32_t *vocab;         /* TL_X_EMBEDDING: per field */
    const int64_t *offsets;       /* TL_X_EMBEDDING: first table row per field */
    const int32_t *blocks;        /* TL_X_GATE_MIX */
    const tl_calibrator *cal;     /* TL_X_CALIBRATE */
} tl_xnode;

/* Column j of the model's numeric features from the raw input: kind VALUE
 * is v = isnan(x) ? mu : T(x) (T = sign(x) log1p(|x|) for log1p, identity
 * otherwise), then (v - mu) * inv for standard columns; kind FLAG is
 * isnan(x) as 0/1 (tl.data.csv's "<name>_missing"). x = raw column src. */
enum { TL_X_NUM_VALUE, TL_X_NUM_FLAG };
typedef struct {
    int kind, src;
    tl_num_transform transform;   /* TL_NUM_STANDARD, TL_NUM_LOG1P or TL_NUM_NONE */
    float mu, inv;
} tl_xnum;

typedef struct {
    tl_xnode *nodes;
    int n, cap;
    int n_out;
    int out[TL_MAX_TASKS];        /* node of each exported task's output */
    int task[TL_MAX_TASKS];       /* its task index */
    int n_cat, n_raw, n_num;      /* ids columns, raw numeric columns, model numeric columns */
    tl_xnum *num;                 /* n_num */
    const char **raw_names;       /* n_raw, the dataset's (valid while it lives) */
    float *consts;                /* scalars the lowering made (owned; TL_X_CONST data) */
    int n_consts;
    /* multi-valued fields (every one the model has, reached or not): name (the
     * dataset's), slots, first slot in a row of all their slots, id count, pooling */
    int n_bag, bag_slots;
    const char *bag_name[TL_MAX_BAGS];
    int bag_len[TL_MAX_BAGS], bag_off[TL_MAX_BAGS], bag_pool[TL_MAX_BAGS];
    int32_t bag_vocab[TL_MAX_BAGS];
} tl_xgraph;

/* Longest multi-valued field name the export takes (its ONNX input is "bag.<name>"). */
#define TL_X_BAG_NAME_MAX 200

typedef struct {
    unsigned tasks;      /* bit k: export task k; 0 = every task */
    int calibrated;      /* apply each binary task's attached calibrator (required) */
} tl_export_options;

/* Lower model m (trained) with dataset d's numeric statistics (d must be the
 * data m was built on). Fails with a message naming the op, input or task
 * that cannot be exported. Free with tl_export_xgraph_free. */
tl_status tl_export_lower(tl_model *m, const tl_dataset *d, const tl_export_options *o,
                          tl_xgraph *out);
void tl_export_xgraph_free(tl_xgraph *x);

#endif
