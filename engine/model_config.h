/* model_config.h — a model's configuration: backbone, tasks, feature layout,
 * weighting, DML and CrossDistil switches. Plain data (no pointers), so it can
 * be printed, copied and stored in a checkpoint as it is.
 *
 * Split from model.h so that the graph builders (models/) and the training
 * strategies read the configuration without depending on the model, which
 * depends on them. The functions that fill and check it are here too
 * (model_config.c).
 */
#ifndef TL_MODEL_CONFIG_H
#define TL_MODEL_CONFIG_H

#include <stdint.h>

#include "data.h"

#define TL_MAX_TASKS 8
#define TL_MAX_LAYERS 8
#define TL_MAX_FIELDS 256
#define TL_TASK_NAME_MAX 32
#define TL_MAX_BAGS TL_DATA_MAX_BAGS

typedef enum {
    TL_BACKBONE_SHARED_BOTTOM,
    TL_BACKBONE_OMOE,
    TL_BACKBONE_MMOE,
    TL_BACKBONE_PLE,
    TL_BACKBONE_ESMM,
    TL_BACKBONE_AITM,
    TL_BACKBONE_STEM,         /* Su et al. AAAI 2024: shared and task-specific embeddings */
    TL_BACKBONE_ADATT,        /* Li et al. KDD 2023: adaptive task-to-task fusion */
    TL_BACKBONE_CROSS_STITCH, /* Misra et al. CVPR 2016 */
    TL_BACKBONE_DSELECT_K,    /* Hazimeh et al. NeurIPS 2021 */
    TL_BACKBONE_COUNT
} tl_backbone_kind;

/* A stack of fully connected ReLU layers. */
typedef struct {
    int n;
    int units[TL_MAX_LAYERS];
    float dropout;
} tl_mlp_spec;

typedef struct {
    tl_backbone_kind kind;
    tl_mlp_spec bottom;  /* shared-bottom: the shared layers; cross_stitch: each task column's */
    tl_mlp_spec expert;  /* omoe/mmoe/ple/stem/adatt/dselect_k: layers of each expert */
    int experts;         /* omoe/mmoe/dselect_k: number of experts */
    int levels;          /* ple/stem/adatt: levels */
    int shared;          /* ple/stem/adatt: shared experts per level */
    int specific;        /* ple/stem/adatt: task-specific experts per task and level */
    float constraint;    /* aitm: weight of the label-constraint loss */
    int transfer_dim;    /* aitm: width of the information-transfer vectors */
    int select_k;        /* dselect_k: single-expert selectors per gate (the k of top-k) */
    float gamma;         /* dselect_k: width of the smooth-step's cubic part */
    float entropy;       /* dselect_k: weight of the selectors' entropy regulariser (0 = off) */
    tl_mlp_spec gate;    /* stem: hidden ReLU layers of each gate before its softmax layer (the
                            authors' [128, 64]; default none: one linear layer) */
    int esmm;            /* 1: ESMM's entire-space head (pCTCVR = pCTR x pCVR) over this
                            backbone (kind is then not TL_BACKBONE_ESMM, whose towers read
                            the embedding) */
} tl_backbone_spec;

typedef enum {
    TL_WEIGHTING_FIXED,
    TL_WEIGHTING_UNCERTAINTY, /* Kendall et al. 2018 */
    TL_WEIGHTING_GRADNORM,    /* Chen et al. 2018 */
    TL_WEIGHTING_DWA,         /* Liu et al. 2019 */
    TL_WEIGHTING_PCGRAD,      /* Yu et al. 2020 */
    TL_WEIGHTING_RLW,         /* Lin et al. 2022 */
    TL_WEIGHTING_GLS,         /* Chennupati et al. 2019 */
    TL_WEIGHTING_FAMO,        /* Liu et al. 2023 */
    TL_WEIGHTING_DB_MTL,      /* Lin et al. 2023 */
    TL_WEIGHTING_STCH,        /* Lin et al. 2024 */
    TL_WEIGHTING_IMTL_L,      /* Liu et al. 2021, the loss half */
    TL_WEIGHTING_GRADDROP,    /* Chen et al. 2020 */
    TL_WEIGHTING_MGDA,        /* Sener & Koltun 2018 (at='rep': MGDA-UB) */
    TL_WEIGHTING_CAGRAD,      /* Liu et al. 2021 */
    TL_WEIGHTING_NASH_MTL,    /* Navon et al. 2022 */
    TL_WEIGHTING_IMTL_G,      /* Liu et al. 2021, the gradient half */
    TL_WEIGHTING_IMTL,        /* IMTL-G on the losses of IMTL-L */
    TL_WEIGHTING_ALIGNED_MTL, /* Senushkin et al. 2023 */
    TL_WEIGHTING_UPGRAD,      /* Quinton & Rey 2024 (TorchJD) */
    TL_WEIGHTING_GRADVAC,     /* Wang et al. 2021 */
    TL_WEIGHTING_COUNT
} tl_weighting;

/* Where the gradient methods take the per-task gradients: of the shared
 * parameters (one backward pass per task) or of the representations the
 * towers read (the "-UB" variants: one backward pass through the shared
 * part). */
typedef enum { TL_AT_PARAMS, TL_AT_REP } tl_weighting_at;

/* The methods' hyperparameters (defaults: the authors' code, see
 * losses/weighting.h). GradNorm's alpha and DWA's temperature are the
 * config's gradnorm_alpha and dwa_temperature. */
typedef struct {
    tl_weighting_at at;
    int rlw_dirichlet;   /* rlw: 0 softmax of N(0,1) draws (LibMTL), 1 Dirichlet(1,...,1) */
    float famo_lr;       /* famo: learning rate of the weight logits (0.025) */
    float famo_gamma;    /* famo: their weight decay (1e-3) */
    float db_beta;       /* db_mtl: EMA factor of the log-loss gradients (0.9) */
    float db_beta_sigma; /* db_mtl: beta / step^sigma (0) */
    float stch_mu;       /* stch: smoothing (1) */
    int stch_warmup;     /* stch: epochs on the log losses before the nadir point (4) */
    float graddrop_leak; /* graddrop: leak (0) */
    float cagrad_c;      /* cagrad: radius of the ball around the mean gradient (0.4) */
    int cagrad_rescale;  /* cagrad: 0 none, 1 d / (1 + c^2) (official), 2 d / (1 + c) */
    float nash_max_norm; /* nash_mtl: the shared direction clipped to this norm (1; 0 off) */
    float gradvac_beta;  /* gradvac: EMA rate of the cosine targets (0.5) */
} tl_weighting_opts;

/* Deep Mutual Learning across task towers (Ren et al. 2023, PAPERS.md §1). */
typedef struct {
    int enabled;
    int ctfm;          /* cross-task feature mining: attention over the tasks' tower inputs */
    int gkd;           /* global knowledge distillation: gated logit correction */
    int stop_grad;     /* CTFM keys/values read a stop-gradient copy (the paper's default) */
    int gkd_layers;    /* layers of GKD's gate (1 in the paper) */
    float dropout;     /* on the attention output and GKD's global experience */
    unsigned gkd_tasks; /* bit k set: task k's logit gets GKD; 0 (the default) = every task */
} tl_dml_spec;

typedef enum { TL_DISTILL_PLATT, TL_DISTILL_ISOTONIC } tl_distill_calib;
typedef enum { TL_CORRECT_NONE, TL_CORRECT_BLEND, TL_CORRECT_CLIP } tl_distill_correct;

/* calib_every's refits read at most this many rows of the calibration split:
 * rows floor(i n / TL_DISTILL_CALIB_ROWS), i = 0.., evenly spread and the same
 * at every refit (no random state, so a resumed fit refits identically).
 * Epoch-end fits read every row. */
#define TL_DISTILL_CALIB_ROWS 16384

/* CrossDistil (Yang et al. AAAI 2022, PAPERS.md §2; [RECON] parts behind
 * switches). For each pair (A, B) both tasks get a teacher tower trained by
 * the quadruplet ranking loss (over the rows in both tasks' spaces, each pair
 * of rows weighted by the product of their sample weights); a monotone
 * calibrator turns teacher scores into probabilities that are distilled into
 * the student towers. */
typedef struct {
    int enabled;
    int n_pairs;
    int pairs[TL_MAX_TASKS][2];   /* task indices */
    int flip[TL_MAX_TASKS];       /* per pair: partner label enters flipped (negative relation);
                                     -1 (the default) while order is auto and no fit has
                                     resolved it; tl_model_new sets it from order 1 or 2 */
    int order;                    /* 0 auto (label correlation sign on the first fit's train
                                     split), 1 positive, 2 negative */
    float aux;                    /* beta: weight of the auxiliary ranking loss */
    float kd;                     /* alpha: weight of the distillation term in the student loss */
    int bce_on_aux;               /* also BCE on the teacher score with the own label */
    tl_distill_calib calibrate;
    int calib_valid;              /* 1: calibrator fitted on the validation split at epoch ends */
    int calib_every;              /* fitted calibrators: also refit every N training steps, on at
                                     most TL_DISTILL_CALIB_ROWS rows; 0 = at epoch ends only */
    tl_distill_correct correct;
    float lambda;                 /* blend weight towards the label */
    int teacher_grad;             /* 1: no stop-gradient on the distilled soft label */
    int teacher_shared;           /* 1: teacher trains the shared layers ("shared"); 0: "separate" */
    int64_t warmup;               /* steps before alpha > 0 */
    int max_pairs;                /* pair subsampling above this many pairs per term */
    int naive;                    /* baseline: no teachers; each student distils the other
                                     task's raw prediction (the paper's "naive KD") */
} tl_distill_spec;

typedef struct {
    char name[TL_TASK_NAME_MAX];
    tl_task_type type;
    tl_mlp_spec tower;
    float weight;        /* loss weight; changeable between steps */
    int space;           /* task space: train and evaluate only on rows where task
                            `space` is positive (e.g. CVR on clicks); -1 = all rows */
} tl_task_spec;

typedef struct {
    tl_backbone_spec backbone;
    int n_tasks;
    tl_task_spec tasks[TL_MAX_TASKS];
    /* feature layout (from the dataset) */
    int n_cat;
    int32_t vocab[TL_MAX_FIELDS];
    int n_num;
    /* multi-valued fields (from the dataset, after the categorical ones): each
     * its own table of bag_vocab[b] rows, bag_len[b] id slots per row, pooled
     * by bag_pool[b] (tl_pooling) into one emb_dim vector (ops/bag.h) */
    int n_bag;
    int32_t bag_vocab[TL_MAX_BAGS];
    int bag_len[TL_MAX_BAGS];
    int bag_pool[TL_MAX_BAGS];
    char bag_name[TL_MAX_BAGS][TL_TASK_NAME_MAX]; /* for messages, cut to 31 bytes */
    /* the encodings of the dataset the model was built on, categorical fields
     * then multi-valued ones (tl_dataset_vocab_fingerprint, _bag_fingerprint),
     * kept in checkpoints so a reloaded model refuses data whose ids mean other
     * values; n_field_fp = 0 (older checkpoints) or a 0 entry: not known */
    int n_field_fp;
    uint64_t field_fp[TL_MAX_FIELDS + TL_MAX_BAGS];
    int emb_dim;
    tl_weighting weighting;
    float gradnorm_alpha; /* default 1.5 */
    float dwa_temperature; /* default 2 */
    tl_weighting_opts wopt;
    int max_batch;        /* graph rows; batches up to this size */
    uint64_t seed;
    tl_dml_spec dml;
    tl_distill_spec distill;
    uint64_t max_memory;  /* bytes the model may take (tl_model_memory); 0 = the available
                             memory (tl_memory_set_available). Not saved in checkpoints. */
} tl_model_config;

/* Sensible defaults: MMoE with 8 experts of [256, 128], towers [64], emb 16,
 * fixed weights 1, batch 1024, seed 1. Tasks and features are left empty. */
void tl_model_config_defaults(tl_model_config *c);
/* Fill the feature layout and tasks (names, types, weight 1, tower = `tower`)
 * from a dataset. */
tl_status tl_model_config_from_dataset(tl_model_config *c, const tl_dataset *d,
                                       const tl_mlp_spec *tower);
tl_status tl_backbone_parse(const char *name, tl_backbone_kind *out);
const char *tl_backbone_name(tl_backbone_kind k);
/* 1 when the model has ESMM's CTCVR head: the esmm backbone, or esmm over another. */
int tl_backbone_is_esmm(const tl_backbone_spec *b);
/* The weighting names (the one list: the bindings, the messages and the
 * method table in losses/weighting.c read it); tl_weighting_name(i) for i in
 * 0..TL_WEIGHTING_COUNT-1 lists them, tl_weighting_about(i) says what each
 * does in one line. */
tl_status tl_weighting_parse(const char *name, tl_weighting *out);
const char *tl_weighting_name(tl_weighting w);
const char *tl_weighting_about(tl_weighting w);
/* The methods' options at the authors' defaults. */
void tl_weighting_opts_defaults(tl_weighting_opts *o);

/* The checks tl_model_new runs: TL_ERR_ARG with a message naming the bad
 * field (unknown task count, ESMM without 2 binary tasks, ...); the
 * weighting methods' options are checked by the model too
 * (losses/weighting.h: tl_weighting_check). */
tl_status tl_model_config_check(const tl_model_config *c);

#endif
